//! `add_column`: a new column, filled for existing rows by `up` (or by a volatile `default`).
//!
//! A constant default is added with the column in one metadata-only statement (PostgreSQL 11+
//! stores it as the value of every existing row without rewriting the table); any other default
//! or an `up` expression is added as a default for new rows and written into existing rows by the
//! throttled backfill, never by a table rewrite under `ACCESS EXCLUSIVE`.

use serde::Deserialize;

use super::{
    add_column, drop_column, Assign, Contract, Ctx, Effects, ExprCheck, Forward, LockLevel,
    NewColumn, NotNullViaCheck, Operation, Problems, Rollback, Statement, Sync,
};
use crate::diagnostics::FieldPath;
use crate::sql::Ident;

/// `kind = "add_column"`.
#[derive(Debug, Clone, Deserialize)]
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
        format!("add column {} {}", Ident::new(&self.name), self.type_name)
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

    fn expressions(&self, _ctx: &Ctx<'_>) -> Vec<ExprCheck> {
        let mut out = Vec::new();
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
        out
    }

    fn constraints(&self, ctx: &Ctx<'_>) -> Vec<Statement> {
        if self.nullable {
            return Vec::new();
        }
        vec![NotNullViaCheck::new(ctx, &self.name).expand(ctx)]
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
        if self.nullable {
            return Contract::default();
        }
        let nn = NotNullViaCheck::new(ctx, &self.name);
        Contract {
            validate: vec![nn.validate(ctx)],
            switch: nn.switch(ctx),
        }
    }

    fn rollback(&self, ctx: &Ctx<'_>) -> Rollback {
        Rollback {
            indexes: Vec::new(),
            statements: vec![drop_column(ctx, &self.name)],
            ..Rollback::default()
        }
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
