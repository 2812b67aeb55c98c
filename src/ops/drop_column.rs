//! `drop_column`: the column stays until contract, so the old release keeps working; the new
//! release no longer writes it, so `down` fills it for rows the new release inserts (needed
//! when the column is NOT NULL without a default). Dropped at contract (metadata only).

use serde::Deserialize;

use super::{
    drop_column, use_of, Assign, Contract, Ctx, Effects, ExprCheck, Operation, Problems, Removal,
    Sync,
};
use crate::diagnostics::FieldPath;
use crate::sql::Ident;

/// `kind = "drop_column"`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DropColumn {
    /// The column.
    pub column: String,
    /// Its value for rows inserted without it, over the row.
    pub down: Option<String>,
}

impl Operation for DropColumn {
    fn kind(&self) -> &'static str {
        "drop_column"
    }

    fn summary(&self) -> String {
        format!("drop column {}", Ident::new(&self.column))
    }

    fn check(&self, problems: &mut Problems) {
        problems.require_text(FieldPath::of("column"), &self.column);
        if let Some(d) = &self.down {
            problems.require_text(FieldPath::of("down"), d);
        }
    }

    fn check_catalog(&self, ctx: &Ctx<'_>, problems: &mut Problems) {
        if let Some(c) = ctx.column(&self.column) {
            if c.not_null && c.default.is_none() && c.identity.is_none() && self.down.is_none() {
                problems.add(
                    FieldPath::of("column"),
                    format!(
                        "column {} of {} is NOT NULL without a default: give `down` so rows the new release inserts without it get a value",
                        Ident::new(&self.column),
                        ctx.qualified()
                    ),
                );
            }
        }
    }

    fn removal(&self) -> Removal {
        Removal::Dropped
    }

    fn effects(&self) -> Effects {
        Effects {
            removes: vec![use_of(FieldPath::of("column"), &self.column)],
            ..Effects::default()
        }
    }

    fn expressions(&self, ctx: &Ctx<'_>) -> Vec<ExprCheck> {
        self.down
            .iter()
            .map(|d| ExprCheck::Value {
                field: FieldPath::of("down"),
                expr: d.clone(),
                type_name: ctx.type_of(&self.column),
            })
            .collect()
    }

    fn sync(&self, ctx: &Ctx<'_>) -> Option<Sync> {
        let down = self.down.as_ref()?;
        Some(Sync::OnWrite {
            when: Some(format!("{} IS NULL", Ident::new(&self.column))),
            assign: vec![Assign {
                column: Ident::new(&self.column),
                expr: down.clone(),
                type_name: ctx.type_of(&self.column),
            }],
            inserts_only: true,
        })
    }

    fn contract(&self, ctx: &Ctx<'_>) -> Contract {
        Contract {
            validate: Vec::new(),
            switch: vec![drop_column(ctx, &self.column)],
            ..Contract::default()
        }
    }
}
