//! What a column carries, moved onto the column that replaces it (`change_type`): its indexes
//! of every kind (built concurrently during expand under a temporary name, renamed at
//! contract), the primary key and unique constraints (switched `USING INDEX`), its check
//! constraints and foreign keys (added `NOT VALID` with the trigger, validated at contract),
//! foreign keys of other tables that reference it (added `NOT VALID` and validated at contract,
//! once every row is filled), its comment, column privileges, statistics target and the
//! sequence it owns. Definitions are moved from PostgreSQL's own deparse by
//! [`crate::deparse::move_column`].

use super::{Ctx, IndexBuild, LockLevel, Problems, Statement};
use crate::db::catalog::{ConstraintInfo, IndexInfo};
use crate::deparse::{index_tail, move_column, Scope};
use crate::diagnostics::FieldPath;
use crate::sql::{fit_identifier, literal, Ident, QualifiedName};

/// The statements that carry what `old` has over to `new`.
#[derive(Debug, Clone, Default)]
pub struct Carry {
    /// Expand: the indexes on the new column.
    pub indexes: Vec<IndexBuild>,
    /// With the trigger: checks and foreign keys of the new column, `NOT VALID`.
    pub constraints: Vec<Statement>,
    /// Contract, validation group: `VALIDATE` of those; foreign keys of other tables added
    /// `NOT VALID` and validated.
    pub validate: Vec<Statement>,
    /// Contract switch, before the old column is dropped.
    pub before_drop: Vec<Statement>,
    /// Contract switch, after the new column took the old one's name.
    pub after_rename: Vec<Statement>,
    /// Rollback: the indexes, then the constraints.
    pub rollback_indexes: Vec<QualifiedName>,
    /// Rollback statements (constraints on other tables).
    pub rollback: Vec<Statement>,
}

/// The temporary name of a carried object.
fn temp_name(name: &str) -> String {
    fit_identifier(&format!("{name}_bf"))
}

/// Which part of `c`'s definition names the column; `None` for what is carried through its
/// index (primary key, unique, exclusion).
fn scope_of(c: &ConstraintInfo) -> Option<Scope> {
    match c.kind {
        'c' => Some(Scope::Check),
        'f' if c.foreign => Some(Scope::ForeignKeyReferenced),
        'f' => Some(Scope::ForeignKeyLocal),
        _ => None,
    }
}

/// What follows `USING` in index `i`'s definition moved from `old` to `new`; `None` when it
/// cannot be read, or for an exclusion constraint's index (not built concurrently).
fn moved_index(ctx: &Ctx<'_>, i: &IndexInfo, old: &str, new: &str) -> Option<String> {
    if ctx.table.is_exclusion(&i.name) {
        return None;
    }
    index_tail(&move_column(&i.definition, Scope::Index, old, new)?)
}

/// What cannot be carried over from `old`, each named (checked at `validate`).
pub fn refusals(ctx: &Ctx<'_>, old: &str, field: &FieldPath, problems: &mut Problems) {
    let table = ctx.qualified();
    let Some(col) = ctx.column(old) else { return };
    if col.identity.is_some() {
        problems.add(
            field.clone(),
            format!("column \"{old}\" of {table} is an identity column; its identity cannot be carried over to the new column"),
        );
    }
    for i in ctx.table.indexes_involving(old) {
        if moved_index(ctx, i, old, "x").is_none() {
            problems.add(
                field.clone(),
                format!("index \"{}\" on column \"{old}\" ({}) cannot be carried over to the new column; drop it first and build it again after the contract", i.name, i.definition),
            );
        }
    }
    for c in ctx.table.constraints_on(old) {
        let Some(scope) = scope_of(c) else { continue };
        if move_column(&c.definition, scope, old, "x").is_none() {
            problems.add(
                field.clone(),
                format!("constraint \"{}\" on {} ({}) cannot be carried over to the new column; drop it first", c.name, c.table, c.definition),
            );
        }
    }
}

/// The statements that carry `old`'s objects over to `new` (see the module's text), which is
/// named `after` once the switch is done (`old`'s name, or the new name of a renaming
/// `change_type`). Objects [`refusals`] reports are left out.
pub fn carry(ctx: &Ctx<'_>, old: &str, new: &str, after: &str) -> Carry {
    let mut out = Carry::default();
    for i in ctx.table.indexes_involving(old) {
        index(ctx, i, old, new, &mut out);
    }
    for c in ctx.table.constraints_on(old) {
        constraint(ctx, c, old, new, &mut out);
    }
    let Some(col) = ctx.column(old) else {
        return out;
    };
    let table = ctx.qualified();
    let column = Ident::new(after);
    if let Some(seq) = &col.owned_sequence {
        out.before_drop.push(Statement::new(
            LockLevel::AccessExclusive,
            format!("ALTER SEQUENCE {seq} OWNED BY {table}.{}", Ident::new(new)),
        ));
    }
    if let Some(text) = &col.comment {
        out.after_rename.push(Statement::new(
            LockLevel::AccessExclusive,
            format!("COMMENT ON COLUMN {table}.{column} IS {}", literal(text)),
        ));
    }
    if let Some(n) = col.statistics {
        out.after_rename.push(Statement::new(
            LockLevel::ShareUpdateExclusive,
            ctx.alter(format_args!("ALTER COLUMN {column} SET STATISTICS {n}")),
        ));
    }
    for acl in &col.grants {
        out.after_rename.extend(column_grants(acl, table, &column));
    }
    out
}

fn index(ctx: &Ctx<'_>, i: &IndexInfo, old: &str, new: &str, out: &mut Carry) {
    let Some(tail) = moved_index(ctx, i, old, new) else {
        return;
    };
    let temp = ctx.qualified().sibling(temp_name(&i.name));
    out.indexes.push(IndexBuild {
        create: format!(
            "CREATE {}INDEX CONCURRENTLY {} ON {} USING {tail}",
            if i.unique { "UNIQUE " } else { "" },
            temp.name,
            ctx.qualified()
        ),
        name: temp.clone(),
    });
    out.rollback_indexes.push(temp.clone());
    let old_name = Ident::new(&i.name);
    let kind = ctx
        .table
        .constraints
        .iter()
        .find(|c| c.name == i.name && matches!(c.kind, 'p' | 'u'))
        .map(|c| c.kind);
    out.after_rename.push(match kind {
        // The old constraint went with the old column; the index becomes the new one.
        Some(k) => Statement::new(
            LockLevel::AccessExclusive,
            ctx.alter(format_args!(
                "ADD CONSTRAINT {old_name} {} USING INDEX {}",
                if k == 'p' { "PRIMARY KEY" } else { "UNIQUE" },
                temp.name
            )),
        ),
        None => Statement::new(
            LockLevel::AccessExclusive,
            format!("ALTER INDEX {temp} RENAME TO {old_name}"),
        ),
    });
}

fn constraint(ctx: &Ctx<'_>, c: &ConstraintInfo, old: &str, new: &str, out: &mut Carry) {
    let name = Ident::new(&c.name);
    let temp = Ident::new(temp_name(&c.name));
    let on_other = c.foreign;
    let Some(def) = scope_of(c).and_then(|scope| move_column(&c.definition, scope, old, new))
    else {
        return;
    };
    let table = if on_other {
        c.table.clone()
    } else {
        ctx.qualified().to_string()
    };
    let add = Statement::new(
        LockLevel::ShareRowExclusive,
        format!("ALTER TABLE {table} ADD CONSTRAINT {temp} {def} NOT VALID"),
    );
    let validate = Statement::new(
        LockLevel::ShareUpdateExclusive,
        format!("ALTER TABLE {table} VALIDATE CONSTRAINT {temp}"),
    );
    let rename = Statement::new(
        LockLevel::AccessExclusive,
        format!("ALTER TABLE {table} RENAME CONSTRAINT {temp} TO {name}"),
    );
    let drop_temp = Statement::new(
        LockLevel::AccessExclusive,
        format!("ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {temp}"),
    );
    if on_other {
        // Added at contract, when every row has its new value: a row of the other table
        // written during the transition may reference a row the backfill has not filled.
        out.validate.push(add);
        out.validate.push(validate);
        out.before_drop.push(Statement::new(
            LockLevel::AccessExclusive,
            format!("ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}"),
        ));
    } else {
        out.constraints.push(add);
        out.validate.push(validate);
    }
    out.rollback.push(drop_temp);
    out.after_rename.push(rename);
}

/// `GRANT priv (column) ON table TO grantee` for one column `aclitem` (`alice=rw/owner`;
/// an empty grantee is `PUBLIC`, `*` after a letter the grant option).
pub fn column_grants(acl: &str, table: &QualifiedName, column: &Ident) -> Vec<Statement> {
    let Some((grantee, rest)) = acl.split_once('=') else {
        return Vec::new();
    };
    let privileges = rest.split('/').next().unwrap_or("");
    let grantee = match grantee.trim_matches('"') {
        "" => "PUBLIC".to_string(),
        g => Ident::new(g.replace("\"\"", "\"")).to_string(),
    };
    let mut out = Vec::new();
    let mut chars = privileges.chars().peekable();
    while let Some(c) = chars.next() {
        let with_option = chars.peek() == Some(&'*');
        if with_option {
            chars.next();
        }
        let privilege = match c {
            'r' => "SELECT",
            'a' => "INSERT",
            'w' => "UPDATE",
            'x' => "REFERENCES",
            _ => continue,
        };
        out.push(Statement::new(
            LockLevel::None,
            format!(
                "GRANT {privilege} ({column}) ON {table} TO {grantee}{}",
                if with_option {
                    " WITH GRANT OPTION"
                } else {
                    ""
                }
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_grants_are_read_from_aclitems() {
        let table = QualifiedName::new("public", "t");
        let col = Ident::new("c");
        let sql: Vec<String> = column_grants("alice=r*w/owner", &table, &col)
            .into_iter()
            .chain(column_grants("=r/owner", &table, &col))
            .map(|s| s.sql)
            .collect();
        assert_eq!(
            sql,
            [
                "GRANT SELECT (\"c\") ON \"public\".\"t\" TO \"alice\" WITH GRANT OPTION",
                "GRANT UPDATE (\"c\") ON \"public\".\"t\" TO \"alice\"",
                "GRANT SELECT (\"c\") ON \"public\".\"t\" TO PUBLIC",
            ]
        );
    }
}
