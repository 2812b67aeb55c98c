//! `rename_constraint`: a constraint of the table renamed at expand (`ACCESS EXCLUSIVE` for an
//! instant under `lock_timeout`, metadata only). Applications do not name constraints in the
//! statements they run, so both releases work with either name and nothing waits for contract.
//! The index of a primary key, unique or exclusion constraint is renamed with it (PostgreSQL
//! keeps the two names equal). Rollback renames it back, when it still has the new name and
//! the old one is free.

use serde::Deserialize;

use super::{
    constraint_exists, guarded, own_constraint, ConstraintUse, Ctx, Effects, LockLevel, Operation,
    Problems, Rollback, Statement,
};
use crate::diagnostics::FieldPath;
use crate::sql::{Ident, MAX_IDENTIFIER_BYTES};

/// `kind = "rename_constraint"`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameConstraint {
    /// The current name.
    pub from: String,
    /// The new name.
    pub to: String,
}

impl RenameConstraint {
    fn rename(ctx: &Ctx<'_>, from: &str, to: &str) -> String {
        ctx.alter(format_args!(
            "RENAME CONSTRAINT {} TO {}",
            Ident::new(from),
            Ident::new(to)
        ))
    }
}

impl Operation for RenameConstraint {
    fn kind(&self) -> &'static str {
        "rename_constraint"
    }

    fn summary(&self) -> String {
        format!(
            "rename constraint {} to {}",
            Ident::new(&self.from),
            Ident::new(&self.to)
        )
    }

    fn check(&self, problems: &mut Problems) {
        problems.require_text(FieldPath::of("from"), &self.from);
        problems.require_text(FieldPath::of("to"), &self.to);
        if self.from == self.to {
            problems.add(
                FieldPath::of("to"),
                "the new name is the same as the old one",
            );
        }
        if self.to.len() > MAX_IDENTIFIER_BYTES {
            problems.add(
                FieldPath::of("to"),
                format!("is {} bytes long; PostgreSQL would cut it to {MAX_IDENTIFIER_BYTES}: choose a shorter name", self.to.len()),
            );
        }
    }

    fn check_catalog(&self, ctx: &Ctx<'_>, problems: &mut Problems) {
        let table = ctx.qualified();
        let Some(c) = own_constraint(ctx, &FieldPath::of("from"), &self.from, problems) else {
            return;
        };
        let to = Ident::new(&self.to);
        if ctx.table.constraint(&self.to).is_some() {
            problems.add(
                FieldPath::of("to"),
                format!("{table} already has a constraint named {to}"),
            );
        } else if matches!(c.kind, 'p' | 'u' | 'x') && ctx.table.index(&self.to).is_some() {
            problems.add(
                FieldPath::of("to"),
                format!(
                    "{table} already has an index named {to}, and renaming {} renames its index too",
                    Ident::new(&self.from)
                ),
            );
        }
    }

    fn effects(&self) -> Effects {
        Effects::default()
    }

    fn constraint_uses(&self) -> Vec<ConstraintUse> {
        [("from", &self.from), ("to", &self.to)]
            .into_iter()
            .map(|(field, name)| ConstraintUse {
                name: name.clone(),
                field: FieldPath::of(field),
                drops: false,
            })
            .collect()
    }

    fn expand(&self, ctx: &Ctx<'_>) -> Vec<Statement> {
        vec![Statement::new(
            LockLevel::AccessExclusive,
            Self::rename(ctx, &self.from, &self.to),
        )]
    }

    fn rollback(&self, ctx: &Ctx<'_>) -> Rollback {
        Rollback {
            put_back: vec![guarded(
                LockLevel::AccessExclusive,
                &format!(
                    "{} AND NOT {}",
                    constraint_exists(ctx, &self.to, None),
                    constraint_exists(ctx, &self.from, None)
                ),
                &[Self::rename(ctx, &self.to, &self.from)],
            )],
            ..Rollback::default()
        }
    }
}
