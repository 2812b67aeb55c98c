//! `create_enum`: `CREATE TYPE ... AS ENUM` at expand (no table is locked), in the table's
//! schema unless `schema` gives another; later operations of the plan may use it. Rollback drops
//! it (refused by PostgreSQL while a column still has the type, so drop those first).

use serde::Deserialize;

use super::{Ctx, Effects, LockLevel, Operation, Problems, Rollback, Statement};
use crate::diagnostics::FieldPath;
use crate::sql::{literal, Ident, QualifiedName};

/// `kind = "create_enum"`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEnum {
    /// The type's name (any characters: it is quoted).
    pub name: String,
    /// Its schema; default: the table's.
    pub schema: Option<String>,
    /// Its labels, in order.
    pub values: Vec<String>,
}

/// A type of a plan: `name` in `schema`, by default the table's.
pub fn type_name(ctx: &Ctx<'_>, schema: Option<&str>, name: &str) -> QualifiedName {
    match schema {
        Some(s) => QualifiedName::new(s, name),
        None => ctx.qualified().sibling(name),
    }
}

/// Checks a type's name and schema fields.
pub fn check_type_name(
    problems: &mut Problems,
    field: FieldPath,
    name: &str,
    schema: Option<&str>,
) {
    problems.require_text(field, name);
    if let Some(s) = schema {
        problems.require_text(FieldPath::of("schema"), s);
    }
}

impl CreateEnum {
    fn create(&self, ctx: &Ctx<'_>) -> String {
        format!(
            "CREATE TYPE {} AS ENUM ({})",
            type_name(ctx, self.schema.as_deref(), &self.name),
            self.values
                .iter()
                .map(|v| literal(v))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

impl Operation for CreateEnum {
    fn kind(&self) -> &'static str {
        "create_enum"
    }

    fn summary(&self) -> String {
        format!("create enum type {}", Ident::new(&self.name))
    }

    fn check(&self, problems: &mut Problems) {
        check_type_name(
            problems,
            FieldPath::of("name"),
            &self.name,
            self.schema.as_deref(),
        );
        if self.values.is_empty() {
            problems.add(FieldPath::of("values"), "must name at least one value");
        }
        for (i, v) in self.values.iter().enumerate() {
            if v.is_empty() {
                problems.add(FieldPath::of("values").index(i), "must not be empty");
            } else if v.len() > 63 {
                problems.add(
                    FieldPath::of("values").index(i),
                    "is longer than PostgreSQL's 63 bytes for an enum label",
                );
            } else if self.values[..i].contains(v) {
                problems.add(
                    FieldPath::of("values").index(i),
                    format!("value \"{v}\" is named twice"),
                );
            }
        }
    }

    fn effects(&self) -> Effects {
        Effects::default()
    }

    fn creates_types(&self, table: &QualifiedName) -> Vec<QualifiedName> {
        vec![match &self.schema {
            Some(s) => QualifiedName::new(s, &self.name),
            None => table.sibling(&self.name),
        }]
    }

    fn trial(&self, ctx: &Ctx<'_>) -> Vec<(FieldPath, String)> {
        vec![(FieldPath::of("name"), self.create(ctx))]
    }

    fn expand(&self, ctx: &Ctx<'_>) -> Vec<Statement> {
        vec![Statement::new(LockLevel::None, self.create(ctx))]
    }

    fn rollback(&self, ctx: &Ctx<'_>) -> Rollback {
        Rollback {
            statements: vec![Statement::new(
                LockLevel::None,
                format!(
                    "DROP TYPE IF EXISTS {}",
                    type_name(ctx, self.schema.as_deref(), &self.name)
                ),
            )],
            ..Rollback::default()
        }
    }
}
