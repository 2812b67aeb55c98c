//! `drop_constraint`: a constraint of the table dropped at expand. Dropping one relaxes what the
//! table accepts, so it goes before the new release runs (that release may write what the
//! constraint refused). It is metadata only: `ACCESS EXCLUSIVE` for an instant under
//! `lock_timeout` (a foreign key's referenced table is locked the same way, since its triggers
//! go too); the index of a primary key or unique constraint goes with it, its file unlinked at
//! commit without a scan.
//!
//! Rollback puts the constraint back from its definition as `pg_get_constraintdef` printed it
//! when the plan first ran, with its comment:
//! - a check or a foreign key `NOT VALID`: metadata only and enforced for every write from then
//!   on, but rows written while it was gone are not checked. `VALIDATE CONSTRAINT` it when
//!   convenient (a scan under `SHARE UPDATE EXCLUSIVE`: reads and writes go on).
//! - a primary key or unique constraint: its index is built again concurrently (reads and
//!   writes go on; duplicates written meanwhile make the build, and so the abort, fail, naming
//!   the key), then the constraint is attached to it with `ADD CONSTRAINT ... USING INDEX`
//!   (metadata only), deferrable as it was.
//!
//! Refused at `validate`: an exclusion constraint (its index cannot be attached `USING INDEX`,
//! so a rollback would build it under `ACCESS EXCLUSIVE`), a constraint trigger, a NOT NULL
//! constraint (`drop_not_null`), and a primary key or unique constraint that a foreign key
//! rests on (PostgreSQL refuses to drop it; `CASCADE` would drop the foreign key too).

use serde::Deserialize;

use super::{
    constraint_exists, drop_constraint, guarded, own_constraint, ConstraintUse, Ctx, Effects,
    IndexBuild, LockLevel, Operation, Problems, Rollback, Statement,
};
use crate::db::catalog::ConstraintInfo;
use crate::deparse::index_tail;
use crate::diagnostics::FieldPath;
use crate::sql::{literal, Ident};

/// `kind = "drop_constraint"`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DropConstraint {
    /// The constraint's name.
    pub name: String,
}

/// What comes after the key columns of a deferrable constraint's definition, to give it back
/// when it is attached `USING INDEX` (`pg_get_constraintdef` prints it last).
fn deferrable(definition: &str) -> &'static str {
    if definition.ends_with(" DEFERRABLE INITIALLY DEFERRED") {
        " DEFERRABLE INITIALLY DEFERRED"
    } else if definition.ends_with(" DEFERRABLE") {
        " DEFERRABLE"
    } else {
        ""
    }
}

/// The name of the index a primary key or unique constraint rests on (the constraint's own
/// name: PostgreSQL renames the two together).
fn index_name(c: &ConstraintInfo) -> &str {
    c.index.as_deref().unwrap_or(&c.name)
}

/// `CREATE UNIQUE INDEX CONCURRENTLY` of the index `c` rests on, from its definition; `None`
/// when the catalog has no readable definition of it.
fn rebuild(ctx: &Ctx<'_>, c: &ConstraintInfo) -> Option<IndexBuild> {
    let index = ctx.table.index(index_name(c))?;
    let tail = index_tail(&index.definition)?;
    let name = ctx.qualified().sibling(&index.name);
    Some(IndexBuild {
        create: format!(
            "CREATE UNIQUE INDEX CONCURRENTLY {} ON {} USING {tail}",
            name.name,
            ctx.qualified()
        ),
        name,
    })
}

impl DropConstraint {
    /// The statements that add `c` back (see the module's text), guarded so they run only while
    /// it is missing.
    fn add_back(&self, ctx: &Ctx<'_>, c: &ConstraintInfo) -> Statement {
        let name = Ident::new(&c.name);
        let (lock, add) = match c.kind {
            'p' | 'u' => (
                LockLevel::AccessExclusive,
                ctx.alter(format_args!(
                    "ADD CONSTRAINT {name} {} USING INDEX {}{}",
                    if c.kind == 'p' {
                        "PRIMARY KEY"
                    } else {
                        "UNIQUE"
                    },
                    Ident::new(index_name(c)),
                    deferrable(&c.definition)
                )),
            ),
            kind => {
                // A constraint that was NOT VALID already is printed so: it is added back once.
                let def = c
                    .definition
                    .strip_suffix(" NOT VALID")
                    .unwrap_or(&c.definition);
                (
                    // A foreign key takes SHARE ROW EXCLUSIVE on both tables; a check ACCESS
                    // EXCLUSIVE. Neither scans the table when NOT VALID.
                    if kind == 'f' {
                        LockLevel::ShareRowExclusive
                    } else {
                        LockLevel::AccessExclusive
                    },
                    ctx.alter(format_args!("ADD CONSTRAINT {name} {def} NOT VALID")),
                )
            }
        };
        let mut statements = vec![add];
        if let Some(text) = &c.comment {
            statements.push(format!(
                "COMMENT ON CONSTRAINT {name} ON {} IS {}",
                ctx.qualified(),
                literal(text)
            ));
        }
        guarded(
            lock,
            &format!("NOT {}", constraint_exists(ctx, &c.name, None)),
            &statements,
        )
    }
}

impl Operation for DropConstraint {
    fn kind(&self) -> &'static str {
        "drop_constraint"
    }

    fn summary(&self) -> String {
        format!("drop constraint {}", Ident::new(&self.name))
    }

    fn check(&self, problems: &mut Problems) {
        problems.require_text(FieldPath::of("name"), &self.name);
    }

    fn check_catalog(&self, ctx: &Ctx<'_>, problems: &mut Problems) {
        let field = FieldPath::of("name");
        let Some(c) = own_constraint(ctx, &field, &self.name, problems) else {
            return;
        };
        let table = ctx.qualified();
        let name = Ident::new(&c.name);
        match c.kind {
            'c' | 'f' => {}
            'p' | 'u' => {
                let index = index_name(c);
                for fk in ctx
                    .table
                    .constraints
                    .iter()
                    .filter(|f| f.kind == 'f' && f.index.as_deref() == Some(index))
                {
                    problems.add(
                        field.clone(),
                        format!(
                            "foreign key {} of {} references {table} through {name}: PostgreSQL refuses to drop it (CASCADE would drop the foreign key too). Drop the foreign key first, in an earlier plan",
                            Ident::new(&fk.name),
                            fk.table
                        ),
                    );
                }
                if rebuild(ctx, c).is_none() {
                    problems.add(
                        field,
                        format!(
                            "the index of constraint {name} of {table} cannot be read from the catalog, so a rollback could not build it again; drop it by hand"
                        ),
                    );
                }
            }
            'x' => problems.add(
                field,
                format!(
                    "{name} of {table} is an exclusion constraint: a rollback could only add it back by building its index under ACCESS EXCLUSIVE (an exclusion constraint cannot be attached to an index built concurrently). Drop it by hand"
                ),
            ),
            'n' => problems.add(
                field,
                format!("{name} of {table} is a NOT NULL constraint: use kind = \"drop_not_null\""),
            ),
            _ => problems.add(
                field,
                format!("{name} of {table} is a constraint trigger, which this kind does not drop; use DROP TRIGGER by hand"),
            ),
        }
    }

    fn effects(&self) -> Effects {
        Effects::default()
    }

    fn constraint_uses(&self) -> Vec<ConstraintUse> {
        vec![ConstraintUse {
            name: self.name.clone(),
            field: FieldPath::of("name"),
            drops: true,
        }]
    }

    fn expand(&self, ctx: &Ctx<'_>) -> Vec<Statement> {
        vec![drop_constraint(ctx, &Ident::new(&self.name))]
    }

    fn rollback(&self, ctx: &Ctx<'_>) -> Rollback {
        // Planned from the catalog recorded when the plan first ran, which still has it.
        let Some(c) = ctx.table.constraint(&self.name) else {
            return Rollback::default();
        };
        // A check or foreign key that was valid is validated again, in a transaction of its
        // own (a scan under SHARE UPDATE EXCLUSIVE: reads and writes go on).
        let was_valid = matches!(c.kind, 'c' | 'f') && !c.definition.ends_with(" NOT VALID");
        let not_valid = constraint_exists(ctx, &c.name, Some("NOT convalidated"));
        Rollback {
            rebuild: match c.kind {
                'p' | 'u' => rebuild(ctx, c).into_iter().collect(),
                _ => Vec::new(),
            },
            put_back: vec![self.add_back(ctx, c)],
            validate: was_valid
                .then(|| {
                    guarded(
                        LockLevel::ShareUpdateExclusive,
                        &not_valid,
                        &[ctx.alter(format_args!("VALIDATE CONSTRAINT {}", Ident::new(&c.name)))],
                    )
                })
                .into_iter()
                .collect(),
            ..Rollback::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deferrability_is_read_from_the_end_of_the_definition() {
        assert_eq!(
            deferrable("UNIQUE (email) DEFERRABLE INITIALLY DEFERRED"),
            " DEFERRABLE INITIALLY DEFERRED"
        );
        assert_eq!(deferrable("PRIMARY KEY (id) DEFERRABLE"), " DEFERRABLE");
        assert_eq!(deferrable("UNIQUE (\"DEFERRABLE\")"), "");
    }
}
