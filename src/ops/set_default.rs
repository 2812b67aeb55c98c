//! `set_default`: `ALTER COLUMN ... SET DEFAULT` (or `DROP DEFAULT`) at expand, metadata only
//! (`ACCESS EXCLUSIVE` for an instant under `lock_timeout`; existing rows keep their values, the
//! default applies to rows inserted from then on by either release). The expression is compiled
//! at `validate` as a value of the column's type. Rollback puts back the default the column had
//! when the plan first ran, or drops it when it had none.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::{
    column_exists, guarded, use_of, Ctx, Effects, ExprCheck, LockLevel, Operation, Problems,
    Rollback, Statement,
};
use crate::diagnostics::FieldPath;
use crate::sql::Ident;

/// `default =`: an SQL expression, or `false` to drop the default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewDefault {
    /// `default = "'active'"`.
    Expr(String),
    /// `default = false`.
    Drop,
}

impl<'de> Deserialize<'de> for NewDefault {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NewDefaultVisitor;

        impl Visitor<'_> for NewDefaultVisitor {
            type Value = NewDefault;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an SQL expression in a string (`default = \"0\"`), or `false` to drop the default")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<NewDefault, E> {
                Ok(NewDefault::Expr(v.to_string()))
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<NewDefault, E> {
                if v {
                    Err(E::custom("`default = true` says nothing: give an SQL expression in a string (`default = \"true\"` for a boolean column), or `false` to drop the default"))
                } else {
                    Ok(NewDefault::Drop)
                }
            }
        }

        deserializer.deserialize_any(NewDefaultVisitor)
    }
}

impl schemars::JsonSchema for NewDefault {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "NewDefault".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "An SQL expression in a string (`default = \"0\"`), or `false` to drop the default.",
            "anyOf": [{ "type": "string" }, { "const": false }]
        })
    }
}

/// `kind = "set_default"`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetDefault {
    /// The column.
    pub column: String,
    /// The new default.
    pub default: NewDefault,
}

/// `SET DEFAULT expr`, or `DROP DEFAULT` for `None`, on `column`.
fn alter_default(ctx: &Ctx<'_>, column: &str, default: Option<&str>) -> Statement {
    let column = Ident::new(column);
    Statement::new(
        LockLevel::AccessExclusive,
        match default {
            Some(expr) => ctx.alter(format_args!("ALTER COLUMN {column} SET DEFAULT {expr}")),
            None => ctx.alter(format_args!("ALTER COLUMN {column} DROP DEFAULT")),
        },
    )
}

impl Operation for SetDefault {
    fn kind(&self) -> &'static str {
        "set_default"
    }

    fn attaches(&self) -> bool {
        true
    }

    fn summary(&self) -> String {
        match &self.default {
            NewDefault::Expr(e) => {
                format!("set the default of {} to {e}", Ident::new(&self.column))
            }
            NewDefault::Drop => format!("drop the default of {}", Ident::new(&self.column)),
        }
    }

    fn check(&self, problems: &mut Problems) {
        problems.require_text(FieldPath::of("column"), &self.column);
        if let NewDefault::Expr(e) = &self.default {
            problems.require_text(FieldPath::of("default"), e);
        }
    }

    fn check_catalog(&self, ctx: &Ctx<'_>, problems: &mut Problems) {
        let Some(col) = ctx.column(&self.column) else {
            return;
        };
        let column = Ident::new(&self.column);
        let table = ctx.qualified();
        let field = FieldPath::of("column");
        if col.identity.is_some() {
            problems.add(
                field,
                format!("column {column} of {table} is an identity column: its values come from its sequence, it takes no default"),
            );
        } else if col.generated {
            problems.add(
                field,
                format!("column {column} of {table} is generated: it takes no default"),
            );
        } else if self.default == NewDefault::Drop && col.default.is_none() {
            problems.add(
                FieldPath::of("default"),
                format!("column {column} of {table} has no default to drop"),
            );
        }
    }

    fn effects(&self) -> Effects {
        Effects {
            reads: vec![use_of(FieldPath::of("column"), &self.column)],
            ..Effects::default()
        }
    }

    fn expressions(&self, ctx: &Ctx<'_>) -> Vec<ExprCheck> {
        match &self.default {
            NewDefault::Expr(e) => vec![ExprCheck::Value {
                field: FieldPath::of("default"),
                expr: e.clone(),
                type_name: ctx.type_of(&self.column),
            }],
            NewDefault::Drop => Vec::new(),
        }
    }

    fn expand(&self, ctx: &Ctx<'_>) -> Vec<Statement> {
        let new = match &self.default {
            NewDefault::Expr(e) => Some(e.as_str()),
            NewDefault::Drop => None,
        };
        vec![alter_default(ctx, &self.column, new)]
    }

    fn rollback(&self, ctx: &Ctx<'_>) -> Rollback {
        // The default as `pg_get_expr` printed it when the plan first ran. Guarded: the column
        // may be one an earlier operation of the plan adds, absent when expand never ran.
        let before = ctx.column(&self.column).and_then(|c| c.default.as_deref());
        let put_back = alter_default(ctx, &self.column, before);
        Rollback {
            put_back: vec![guarded(
                put_back.lock,
                &column_exists(ctx, &self.column, None),
                &[put_back.sql],
            )],
            ..Rollback::default()
        }
    }
}
