//! `add_enum_value`: `ALTER TYPE ... ADD VALUE IF NOT EXISTS` at expand, outside a transaction
//! (a value added in a transaction cannot be used until it commits), so the new release may
//! write it from expand on. PostgreSQL cannot remove an enum value: abort and rollback leave it
//! (a value nobody writes changes nothing).

use serde::Deserialize;

use super::create_enum::{check_type_name, type_name};
use super::{Ctx, Effects, LockLevel, Operation, Problems, Statement};
use crate::diagnostics::FieldPath;
use crate::sql::literal;

/// `kind = "add_enum_value"`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddEnumValue {
    /// The enum type.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Its schema; default: the table's.
    pub schema: Option<String>,
    /// The new label.
    pub value: String,
    /// Put it after this label.
    pub after: Option<String>,
    /// Put it before this label.
    pub before: Option<String>,
}

impl AddEnumValue {
    fn alter(&self, ctx: &Ctx<'_>) -> String {
        let mut sql = format!(
            "ALTER TYPE {} ADD VALUE IF NOT EXISTS {}",
            type_name(ctx, self.schema.as_deref(), &self.type_name),
            literal(&self.value)
        );
        if let Some(a) = &self.after {
            sql.push_str(&format!(" AFTER {}", literal(a)));
        } else if let Some(b) = &self.before {
            sql.push_str(&format!(" BEFORE {}", literal(b)));
        }
        sql
    }
}

impl Operation for AddEnumValue {
    fn kind(&self) -> &'static str {
        "add_enum_value"
    }

    fn summary(&self) -> String {
        format!(
            "add value {} to enum type \"{}\"",
            literal(&self.value),
            self.type_name
        )
    }

    fn check(&self, problems: &mut Problems) {
        check_type_name(
            problems,
            FieldPath::of("type"),
            &self.type_name,
            self.schema.as_deref(),
        );
        problems.require_text(FieldPath::of("value"), &self.value);
        if self.value.len() > 63 {
            problems.add(
                FieldPath::of("value"),
                "is longer than PostgreSQL's 63 bytes for an enum label",
            );
        }
        if self.after.is_some() && self.before.is_some() {
            problems.add(
                FieldPath::of("before"),
                "give `after` or `before`, not both",
            );
        }
    }

    fn effects(&self) -> Effects {
        Effects::default()
    }

    /// Tried at validate (PostgreSQL 12+ accepts it in a transaction block): a missing type, a
    /// type that is not an enum, or an `after`/`before` label that does not exist is named on
    /// the field.
    fn trial(&self, ctx: &Ctx<'_>) -> Vec<(FieldPath, String)> {
        let field = if self.after.is_some() {
            "after"
        } else if self.before.is_some() {
            "before"
        } else {
            "type"
        };
        vec![(FieldPath::of(field), self.alter(ctx))]
    }

    fn standalone(&self, ctx: &Ctx<'_>) -> Vec<Statement> {
        vec![Statement::new(LockLevel::None, self.alter(ctx))]
    }
}
