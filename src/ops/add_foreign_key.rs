//! `add_foreign_key`: added `NOT VALID` at expand (brief `SHARE ROW EXCLUSIVE` on both tables,
//! no scan; enforced for new writes from then on) and validated at contract, which scans under
//! `SHARE UPDATE EXCLUSIVE` on the table and `ROW SHARE` on the referenced one, so writes go on.

use serde::Deserialize;

use super::{
    check_column_list, column_list, drop_constraint, uses, validate_constraint, Contract, Ctx,
    DataCheck, Effects, LockLevel, Operation, Problems, Reference, Rollback, Statement,
};
use crate::diagnostics::FieldPath;
use crate::sql::{Ident, QualifiedName};

/// The referenced side of a foreign key.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct References {
    /// The referenced table (`table` or `schema.table`).
    pub table: String,
    /// Its columns, in the order of the plan's `columns`.
    pub columns: Vec<String>,
}

/// `kind = "add_foreign_key"`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddForeignKey {
    /// The referencing columns.
    pub columns: Vec<String>,
    /// The referenced table and columns.
    pub references: References,
    /// `no_action` (default), `restrict`, `cascade`, `set_null` or `set_default`.
    pub on_delete: Option<String>,
    /// Same values as `on_delete`.
    pub on_update: Option<String>,
    /// The constraint name; default `<table>_<columns>_fkey`.
    pub name: Option<String>,
}

const ACTIONS: &[(&str, &str)] = &[
    ("no_action", "NO ACTION"),
    ("restrict", "RESTRICT"),
    ("cascade", "CASCADE"),
    ("set_null", "SET NULL"),
    ("set_default", "SET DEFAULT"),
];

fn action(name: &str) -> Option<&'static str> {
    ACTIONS.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
}

impl AddForeignKey {
    /// The constraint name.
    pub fn constraint(&self, ctx: &Ctx<'_>) -> Ident {
        Ident::new(
            self.name.clone().unwrap_or_else(|| {
                super::default_index_name(ctx.qualified(), &self.columns, "fkey")
            }),
        )
    }
}

impl Operation for AddForeignKey {
    fn kind(&self) -> &'static str {
        "add_foreign_key"
    }

    fn attaches(&self) -> bool {
        true
    }

    fn summary(&self) -> String {
        format!(
            "add foreign key ({}) references {} ({})",
            column_list(&self.columns),
            self.references.table,
            column_list(&self.references.columns),
        )
    }

    fn check(&self, problems: &mut Problems) {
        check_column_list(problems, FieldPath::of("columns"), &self.columns);
        let r = FieldPath::of("references");
        if QualifiedName::parse(&self.references.table).is_none() {
            problems.add(
                r.key("table"),
                format!("`{}` is not a table name", self.references.table),
            );
        }
        check_column_list(problems, r.key("columns"), &self.references.columns);
        if self.references.columns.len() != self.columns.len() {
            problems.add(
                r.key("columns"),
                format!(
                    "names {} columns but `columns` names {}: they pair up one to one",
                    self.references.columns.len(),
                    self.columns.len()
                ),
            );
        }
        for (field, value) in [
            ("on_delete", &self.on_delete),
            ("on_update", &self.on_update),
        ] {
            if let Some(v) = value {
                if action(v).is_none() {
                    problems.add(
                        FieldPath::of(field),
                        format!(
                            "`{v}` is not an action; use one of: {}",
                            ACTIONS
                                .iter()
                                .map(|(k, _)| *k)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                }
            }
        }
    }

    fn effects(&self) -> Effects {
        Effects {
            reads: uses(&FieldPath::of("columns"), &self.columns),
            ..Effects::default()
        }
    }

    fn data_checks(&self, ctx: &Ctx<'_>) -> Vec<DataCheck> {
        let Some(target) = QualifiedName::parse(&self.references.table) else {
            return Vec::new();
        };
        let row = ctx.table.alias().to_string();
        let matches: Vec<String> = self
            .columns
            .iter()
            .zip(&self.references.columns)
            .map(|(l, r)| format!("_bf_r.{} = {row}.{}", Ident::new(r), Ident::new(l)))
            .collect();
        let present: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("{row}.{} IS NOT NULL", Ident::new(c)))
            .collect();
        vec![DataCheck {
            field: FieldPath::of("columns"),
            what: format!("reference no row of {target}"),
            condition: format!(
                "{} AND NOT EXISTS (SELECT FROM {target} AS _bf_r WHERE {})",
                present.join(" AND "),
                matches.join(" AND ")
            ),
            columns: self.columns.clone(),
            per_row: true,
        }]
    }

    fn references(&self) -> Option<Reference> {
        Some(Reference {
            field: FieldPath::of("references"),
            table: QualifiedName::parse(&self.references.table)?,
            columns: self.references.columns.clone(),
            local_columns: self.columns.clone(),
        })
    }

    fn expand(&self, ctx: &Ctx<'_>) -> Vec<Statement> {
        let Some(target) = QualifiedName::parse(&self.references.table) else {
            return Vec::new();
        };
        let mut sql = format!(
            "ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {target} ({})",
            self.constraint(ctx),
            column_list(&self.columns),
            column_list(&self.references.columns),
        );
        for (clause, value) in [
            ("ON DELETE", &self.on_delete),
            ("ON UPDATE", &self.on_update),
        ] {
            if let Some(a) = value.as_deref().and_then(action) {
                sql.push_str(&format!(" {clause} {a}"));
            }
        }
        sql.push_str(" NOT VALID");
        vec![Statement::new(LockLevel::ShareRowExclusive, ctx.alter(sql))]
    }

    fn contract(&self, ctx: &Ctx<'_>) -> Contract {
        Contract {
            validate: vec![validate_constraint(ctx, &self.constraint(ctx))],
            switch: Vec::new(),
            ..Contract::default()
        }
    }

    fn rollback(&self, ctx: &Ctx<'_>) -> Rollback {
        Rollback {
            indexes: Vec::new(),
            statements: vec![drop_constraint(ctx, &self.constraint(ctx))],
            ..Rollback::default()
        }
    }
}
