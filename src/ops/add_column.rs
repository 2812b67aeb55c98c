//! `add_column`: a new column, filled for existing rows by `up` (or by a volatile `default`).
//!
//! A constant default is added with the column in one metadata-only statement (PostgreSQL 11+
//! stores it as the value of every existing row without rewriting the table); any other default
//! or an `up` expression is added as a default for new rows and written into existing rows by the
//! throttled backfill, never by a table rewrite under `ACCESS EXCLUSIVE`.

use serde::Deserialize;

use super::add_check::AddCheck;
use super::add_foreign_key::{AddForeignKey, References};
use super::add_unique::AddUnique;
use super::{
    add_column, drop_column, Assign, Contract, Ctx, Effects, ExprCheck, Forward, LockLevel,
    NewColumn, NotNullViaCheck, Operation, Problems, Rollback, Statement, Sync,
};
use crate::diagnostics::FieldPath;
use crate::sql::Ident;

/// `kind = "add_column"`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddColumn {
    /// The new column.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Its default for new rows (an SQL expression).
    pub default: Option<String>,
    /// `false` adds NOT NULL at contract.
    #[serde(default = "yes")]
    pub nullable: bool,
    /// The value for existing rows (and for inserts that leave the column NULL), over the row.
    pub up: Option<String>,
    /// A unique constraint on the column (as `add_unique`).
    #[serde(default)]
    pub unique: bool,
    /// A check constraint: the condition, or `{ name, check }` (as `add_check`).
    pub check: Option<ColumnCheck>,
    /// A foreign key from the column (as `add_foreign_key`).
    pub references: Option<ColumnReference>,
}

/// `check = "length(bio) < 100"` or `check = { name = "bio_short", check = "..." }`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum ColumnCheck {
    /// The condition; the constraint is named `<table>_<column>_check`.
    Condition(String),
    /// A named condition.
    Named {
        /// The constraint's name.
        name: String,
        /// The condition.
        check: String,
    },
}

/// `references = { table = "users", column = "id", on_delete = "cascade" }`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ColumnReference {
    /// The referenced table (`table` or `schema.table`).
    pub table: String,
    /// Its column; default `id`.
    #[serde(default = "id")]
    pub column: String,
    /// As `add_foreign_key`'s.
    pub on_delete: Option<String>,
    /// As `add_foreign_key`'s.
    pub on_update: Option<String>,
    /// The constraint name; default `<table>_<column>_fkey`.
    pub name: Option<String>,
}

fn id() -> String {
    "id".to_string()
}

fn yes() -> bool {
    true
}

/// A default that is a plain literal: a number, a quoted string (optionally cast), a boolean
/// or NULL. Only those are certainly non-volatile, which is what makes `ADD COLUMN ... DEFAULT`
/// metadata-only.
pub fn is_constant(expr: &str) -> bool {
    let e = expr.trim();
    let e = match e.rfind("::") {
        Some(i)
            if e[i + 2..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || " _()[],\"".contains(c)) =>
        {
            e[..i].trim()
        }
        _ => e,
    };
    let lower = e.to_ascii_lowercase();
    if ["true", "false", "null"].contains(&lower.as_str()) {
        return true;
    }
    if e.len() >= 2 && e.starts_with('\'') && e.ends_with('\'') {
        // One string literal: every inner quote is doubled.
        return e[1..e.len() - 1].replace("''", "").find('\'').is_none();
    }
    let digits = e.strip_prefix('-').unwrap_or(e);
    !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
        && digits.chars().filter(|c| *c == '.').count() <= 1
}

impl AddColumn {
    /// The constraints the column comes with, as the kinds that add them, each with the field
    /// of the plan it comes from.
    fn constraint_ops(&self, ctx: &Ctx<'_>) -> Vec<(&'static str, Box<dyn Operation>)> {
        let mut out: Vec<(&'static str, Box<dyn Operation>)> = Vec::new();
        if self.unique {
            out.push((
                "unique",
                Box::new(AddUnique {
                    columns: vec![self.name.clone()],
                    name: None,
                }),
            ));
        }
        if let Some(c) = &self.check {
            let (name, check) = match c {
                ColumnCheck::Condition(check) => (
                    crate::sql::fit_identifier(&format!(
                        "{}_{}_check",
                        ctx.qualified().name.as_str(),
                        self.name
                    )),
                    check.clone(),
                ),
                ColumnCheck::Named { name, check } => (name.clone(), check.clone()),
            };
            out.push((
                "check",
                Box::new(AddCheck {
                    name,
                    check,
                    fill: Default::default(),
                }),
            ));
        }
        if let Some(fk) = self.foreign_key() {
            out.push(("references", Box::new(fk)));
        }
        out
    }

    /// `references` as the `add_foreign_key` that adds it.
    fn foreign_key(&self) -> Option<AddForeignKey> {
        let r = self.references.as_ref()?;
        Some(AddForeignKey {
            columns: vec![self.name.clone()],
            references: References {
                table: r.table.clone(),
                columns: vec![r.column.clone()],
            },
            on_delete: r.on_delete.clone(),
            on_update: r.on_update.clone(),
            name: r.name.clone(),
        })
    }

    /// Problems of a constraint operation, reported on the field it comes from.
    fn under(field: &str, found: Problems, problems: &mut Problems) {
        for p in found.0 {
            problems.add(FieldPath::of(field), p.message);
        }
    }

    /// The expression that fills existing rows, if any.
    fn fill(&self) -> Option<&str> {
        match (&self.up, &self.default) {
            (Some(up), _) => Some(up),
            (None, Some(d)) if !is_constant(d) => Some(d),
            _ => None,
        }
    }
}

impl Operation for AddColumn {
    fn kind(&self) -> &'static str {
        "add_column"
    }

    fn summary(&self) -> String {
        let mut with: Vec<&str> = Vec::new();
        if self.unique {
            with.push("unique");
        }
        if self.check.is_some() {
            with.push("a check");
        }
        if self.references.is_some() {
            with.push("a foreign key");
        }
        format!(
            "add column {} {}{}",
            Ident::new(&self.name),
            self.type_name,
            if with.is_empty() {
                String::new()
            } else {
                format!(" with {}", with.join(", "))
            }
        )
    }

    fn check(&self, problems: &mut Problems) {
        problems.require_text(FieldPath::of("name"), &self.name);
        problems.require_text(FieldPath::of("type"), &self.type_name);
        if let Some(up) = &self.up {
            problems.require_text(FieldPath::of("up"), up);
        }
        if let Some(d) = &self.default {
            problems.require_text(FieldPath::of("default"), d);
        }
        if !self.nullable && self.up.is_none() && self.default.is_none() {
            problems.add(
                FieldPath::of("nullable"),
                "a NOT NULL column needs `default` or `up`: existing rows and inserts by the running release have no value for it",
            );
        }
        match &self.check {
            Some(ColumnCheck::Condition(c)) => problems.require_text(FieldPath::of("check"), c),
            Some(ColumnCheck::Named { name, check }) => {
                problems.require_text(FieldPath::of("check").key("name"), name);
                problems.require_text(FieldPath::of("check").key("check"), check);
            }
            None => {}
        }
        // `references` as add_foreign_key checks it, each problem on this operation's field
        // (the referencing column is this one, whose name is checked above).
        if let Some(fk) = self.foreign_key() {
            let mut found = Problems::default();
            fk.check(&mut found);
            let r = FieldPath::of("references");
            for p in found.0 {
                let field = p.field.to_string();
                let at = if field.starts_with("references.columns") {
                    r.key("column")
                } else if field.starts_with("columns") {
                    continue;
                } else if field.starts_with("references.") {
                    p.field
                } else {
                    r.join(&p.field)
                };
                problems.add(at, p.message);
            }
        }
    }

    fn check_catalog(&self, ctx: &Ctx<'_>, problems: &mut Problems) {
        for (field, op) in self.constraint_ops(ctx) {
            let mut found = Problems::default();
            op.check_catalog(ctx, &mut found);
            Self::under(field, found, problems);
        }
    }

    fn references(&self) -> Option<crate::ops::Reference> {
        self.foreign_key()?.references()
    }

    fn indexes(&self, ctx: &Ctx<'_>) -> Vec<crate::ops::IndexBuild> {
        self.constraint_ops(ctx)
            .iter()
            .flat_map(|(_, op)| op.indexes(ctx))
            .collect()
    }

    fn effects(&self) -> Effects {
        Effects {
            creates: vec![NewColumn {
                name: self.name.clone(),
                type_name: Some(self.type_name.clone()),
                type_of: None,
                visible: true,
                field: FieldPath::of("name"),
            }],
            ..Effects::default()
        }
    }

    fn expressions(&self, ctx: &Ctx<'_>) -> Vec<ExprCheck> {
        let mut out: Vec<ExprCheck> = self
            .constraint_ops(ctx)
            .iter()
            .filter(|(field, _)| *field == "check")
            .flat_map(|(_, op)| op.expressions(ctx))
            .map(|e| match e {
                ExprCheck::Condition { expr, .. } => ExprCheck::Condition {
                    field: FieldPath::of("check"),
                    expr,
                },
                other => other,
            })
            .collect();
        for (field, e) in [("up", &self.up), ("default", &self.default)] {
            if let Some(expr) = e {
                out.push(ExprCheck::Value {
                    field: FieldPath::of(field),
                    expr: expr.clone(),
                    type_name: self.type_name.clone(),
                });
            }
        }
        out
    }

    fn expand(&self, ctx: &Ctx<'_>) -> Vec<Statement> {
        let col = Ident::new(&self.name);
        let mut out = Vec::new();
        match &self.default {
            Some(d) if self.up.is_none() && is_constant(d) => out.push(Statement::new(
                LockLevel::AccessExclusive,
                ctx.alter(format_args!(
                    "ADD COLUMN IF NOT EXISTS {col} {} DEFAULT {d}",
                    self.type_name
                )),
            )),
            Some(d) => {
                out.push(add_column(ctx, &self.name, &self.type_name));
                out.push(Statement::new(
                    LockLevel::AccessExclusive,
                    ctx.alter(format_args!("ALTER COLUMN {col} SET DEFAULT {d}")),
                ));
            }
            None => out.push(add_column(ctx, &self.name, &self.type_name)),
        }
        for (_, op) in self.constraint_ops(ctx) {
            out.extend(op.expand(ctx));
        }
        out
    }

    fn constraints(&self, ctx: &Ctx<'_>) -> Vec<Statement> {
        let mut out: Vec<Statement> = self
            .constraint_ops(ctx)
            .iter()
            .flat_map(|(_, op)| op.constraints(ctx))
            .collect();
        if !self.nullable {
            out.push(NotNullViaCheck::new(ctx, &self.name).expand(ctx));
        }
        out
    }

    fn sync(&self, _ctx: &Ctx<'_>) -> Option<Sync> {
        let up = self.up.as_ref()?;
        Some(Sync::Derived {
            assign: vec![self.assign(up)],
        })
    }

    fn forward(&self, _ctx: &Ctx<'_>) -> Option<Forward> {
        let fill = self.fill()?;
        Some(Forward {
            when: Some(format!("{} IS NULL", Ident::new(&self.name))),
            assign: vec![self.assign(fill)],
        })
    }

    fn contract(&self, ctx: &Ctx<'_>) -> Contract {
        let mut contract = Contract::default();
        if !self.nullable {
            let nn = NotNullViaCheck::new(ctx, &self.name);
            contract.validate.push(nn.validate(ctx));
            contract.switch.extend(nn.switch(ctx));
        }
        for (_, op) in self.constraint_ops(ctx) {
            let c = op.contract(ctx);
            contract.validate.extend(c.validate);
            contract.switch.extend(c.switch);
            contract.drop_indexes.extend(c.drop_indexes);
        }
        contract
    }

    fn rollback(&self, ctx: &Ctx<'_>) -> Rollback {
        // The column's constraints and indexes go with it; a concurrently built index is
        // dropped concurrently first (it may be INVALID after an interrupted build).
        let mut rollback = Rollback {
            indexes: Vec::new(),
            statements: vec![drop_column(ctx, &self.name)],
            ..Rollback::default()
        };
        for (_, op) in self.constraint_ops(ctx) {
            rollback.indexes.extend(op.rollback(ctx).indexes);
        }
        rollback
    }
}

impl AddColumn {
    fn assign(&self, expr: &str) -> Assign {
        Assign {
            column: Ident::new(&self.name),
            expr: expr.to_string(),
            type_name: self.type_name.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_constant;

    #[test]
    fn constants_are_recognised() {
        for c in [
            "0",
            "-1.5",
            "'x'",
            "'it''s'",
            "'a'::text",
            "true",
            "NULL",
            "'{}'::jsonb",
        ] {
            assert!(is_constant(c), "{c}");
        }
        for v in [
            "now()",
            "gen_random_uuid()",
            "'a' || 'b'",
            "1 + 1",
            "'x'::text || ''",
            "",
        ] {
            assert!(!is_constant(v), "{v}");
        }
    }
}
