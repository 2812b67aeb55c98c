//! `rename_table`: from expand to contract the table answers to both names. Expand renames it
//! and creates, in the same short transaction (`ACCESS EXCLUSIVE`, metadata only), a view under
//! the old name: `CREATE VIEW <old> AS SELECT * FROM <new>`. A view over one table with every
//! column and no condition is automatically updatable, so the old release goes on reading and
//! writing through the old name (`INSERT` with the table's defaults and identities for the
//! columns it leaves out, `UPDATE`, `DELETE`, `RETURNING`, `ON CONFLICT`) while the new release
//! uses the new one. Contract drops the view; rollback drops it and renames the table back.
//!
//! - The view gets the table's grants (table and column privileges, the owner's included), so
//!   every role that used the old name still may, and no other. It reads the table with the
//!   rights of its owner (the role that runs expand: the table's owner or a member of it).
//! - On a table with row security the view is `security_invoker` instead (PostgreSQL 15 and
//!   later), so the policies apply to the caller through the old name as they do on the table;
//!   a role then needs the table's privileges on every column to use the old name (PostgreSQL
//!   checks the view's whole column list on the table), a role with column privileges only
//!   does not get through it.
//! - `SELECT *` is expanded when the view is made: a column a later plan adds to the table does
//!   not show through the old name (the old release does not know it anyway).
//! - What the old name cannot do as a view: `TRUNCATE`, `COPY ... FROM` (and `COPY <old> TO`),
//!   `ALTER TABLE`, `pg_get_serial_sequence(<old>, ...)`. Indexes, constraints, triggers and
//!   sequences keep their names.

use serde::Deserialize;

use super::{carry::column_grants, TableChange};
use super::{Contract, Ctx, Effects, LockLevel, Operation, Problems, Rollback, Statement};
use crate::diagnostics::FieldPath;
use crate::sql::{dollar_quote, literal, Ident, QualifiedName, MAX_IDENTIFIER_BYTES};

/// Table privileges a view takes, as `aclexplode` names them.
const VIEW_PRIVILEGES: &[&str] = &[
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "TRUNCATE",
    "REFERENCES",
    "TRIGGER",
    "MAINTAIN",
];

/// `kind = "rename_table"`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameTable {
    /// The new name, in the table's schema.
    pub to: String,
}

impl RenameTable {
    /// The table under its new name.
    fn renamed(&self, ctx: &Ctx<'_>) -> QualifiedName {
        ctx.qualified().sibling(&self.to)
    }
}

impl Operation for RenameTable {
    fn kind(&self) -> &'static str {
        "rename_table"
    }

    fn summary(&self) -> String {
        format!(
            "rename the table to {} (the old name stays, as a view, until contract)",
            Ident::new(&self.to)
        )
    }

    fn check(&self, problems: &mut Problems) {
        let field = FieldPath::of("to");
        problems.require_text(field.clone(), &self.to);
        if self.to.contains('.') {
            problems.add(
                field.clone(),
                format!(
                    "`{}`: write the new name without a schema (the table stays in its schema)",
                    self.to
                ),
            );
        }
        if self.to.len() > MAX_IDENTIFIER_BYTES {
            problems.add(
                field,
                format!(
                    "`{}` is longer than {MAX_IDENTIFIER_BYTES} bytes: PostgreSQL would cut it",
                    self.to
                ),
            );
        }
    }

    fn effects(&self) -> Effects {
        Effects::default()
    }

    fn table_change(&self) -> Option<TableChange> {
        Some(TableChange::Rename {
            to: self.to.clone(),
        })
    }

    fn new_relations(&self, ctx: &Ctx<'_>) -> Vec<(FieldPath, QualifiedName)> {
        if ctx.qualified().name.as_str() == self.to {
            // Its own name: said by `check_catalog`.
            return Vec::new();
        }
        vec![(FieldPath::of("to"), self.renamed(ctx))]
    }

    fn check_catalog(&self, ctx: &Ctx<'_>, problems: &mut Problems) {
        if ctx.qualified().name.as_str() == self.to {
            problems.add(
                FieldPath::of("to"),
                format!("{} already has this name", ctx.qualified()),
            );
        }
    }

    fn expand(&self, ctx: &Ctx<'_>) -> Vec<Statement> {
        let old = ctx.qualified();
        let new = self.renamed(ctx);
        let mut out = vec![
            Statement::new(
                LockLevel::AccessExclusive,
                format!("ALTER TABLE {old} RENAME TO {}", new.name),
            ),
            // Taken in the same transaction as the rename: no statement ever finds the old
            // name missing.
            Statement::new(
                LockLevel::AccessShare,
                format!(
                    "CREATE VIEW {old}{} AS SELECT * FROM {new}",
                    if ctx.table.row_security {
                        " WITH (security_invoker = true)"
                    } else {
                        ""
                    }
                ),
            ),
        ];
        // One GRANT per grantee (and grant option), in the catalog's order.
        let mut grants: Vec<((&str, bool), Vec<&str>)> = Vec::new();
        for g in &ctx.table.grants {
            if !VIEW_PRIVILEGES.contains(&g.privilege.as_str()) {
                continue;
            }
            let to = (g.grantee.as_str(), g.grantable);
            match grants.iter_mut().find(|(k, _)| *k == to) {
                Some((_, privileges)) => privileges.push(&g.privilege),
                None => grants.push((to, vec![&g.privilege])),
            }
        }
        for ((grantee, grantable), privileges) in grants {
            let grantee = if grantee.is_empty() {
                "PUBLIC".to_string()
            } else {
                Ident::new(grantee).to_string()
            };
            out.push(Statement::new(
                LockLevel::None,
                format!(
                    "GRANT {} ON {old} TO {grantee}{}",
                    privileges.join(", "),
                    if grantable { " WITH GRANT OPTION" } else { "" }
                ),
            ));
        }
        for c in &ctx.table.columns {
            for acl in &c.grants {
                out.extend(column_grants(acl, old, &Ident::new(&c.name)));
            }
        }
        out
    }

    fn contract(&self, ctx: &Ctx<'_>) -> Contract {
        Contract {
            switch: vec![Statement::new(
                LockLevel::AccessExclusive,
                format!("DROP VIEW IF EXISTS {}", ctx.qualified()),
            )],
            ..Contract::default()
        }
    }

    fn rollback(&self, ctx: &Ctx<'_>) -> Rollback {
        let old = ctx.qualified();
        let new = self.renamed(ctx);
        // Guarded, so that it is harmless before expand ran and when run twice: the view goes
        // only if the old name is a view, the table is renamed back only if the old name is
        // free and the new one taken.
        let body = format!(
            " BEGIN IF EXISTS (SELECT FROM pg_class WHERE oid = to_regclass({old_lit}) AND relkind = 'v') THEN EXECUTE {drop}; END IF; IF to_regclass({old_lit}) IS NULL AND to_regclass({new_lit}) IS NOT NULL THEN EXECUTE {rename}; END IF; END ",
            old_lit = literal(&old.to_string()),
            new_lit = literal(&new.to_string()),
            drop = literal(&format!("DROP VIEW {old}")),
            rename = literal(&format!("ALTER TABLE {new} RENAME TO {}", old.name)),
        );
        Rollback {
            indexes: Vec::new(),
            statements: vec![Statement::new(
                LockLevel::AccessExclusive,
                format!("DO {}", dollar_quote("bf_rename", &body)),
            )],
            ..Rollback::default()
        }
    }
}
