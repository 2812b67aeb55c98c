//! `merge_columns`: several columns become one. The new column is added at expand and kept in
//! sync both ways (`up` from the old columns, a `down` per old column); the old columns are
//! dropped at contract.

use serde::Deserialize;

use super::split_column::{
    new_columns_constraints, new_columns_contract, new_columns_expand, new_columns_rollback,
    NewColumnSpec,
};
use super::{
    check_column_list, uses, Assign, Contract, Ctx, Effects, ExprCheck, Forward, Operation,
    Problems, Rollback, Statement, Sync,
};
use crate::diagnostics::FieldPath;
use crate::ops::ExprMap;
use crate::sql::Ident;

/// `kind = "merge_columns"`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MergeColumns {
    /// The columns to merge.
    pub columns: Vec<String>,
    /// The new column.
    pub into: NewColumnSpec,
    /// For each old column, its value from the new one (used when the new release writes).
    #[serde(default)]
    pub down: ExprMap,
}

impl Operation for MergeColumns {
    fn kind(&self) -> &'static str {
        "merge_columns"
    }

    fn summary(&self) -> String {
        let names: Vec<String> = self
            .columns
            .iter()
            .map(|c| Ident::new(c).to_string())
            .collect();
        format!(
            "merge columns {} into {}",
            names.join(", "),
            Ident::new(&self.into.name)
        )
    }

    fn check(&self, problems: &mut Problems) {
        check_column_list(problems, FieldPath::of("columns"), &self.columns);
        self.into.check(&FieldPath::of("into"), problems);
        for (col, expr) in &self.down {
            let at = FieldPath::of("down").key(col);
            if !self.columns.contains(col) {
                problems.add(
                    at.clone(),
                    format!("\"{col}\" is not one of the merged columns"),
                );
            }
            problems.require_text(at, expr);
        }
    }

    fn check_catalog(&self, ctx: &Ctx<'_>, problems: &mut Problems) {
        for (i, col) in self.columns.iter().enumerate() {
            if let Some(c) = ctx.column(col) {
                if c.not_null && c.default.is_none() && !self.down.contains_key(col) {
                    problems.add(
                        FieldPath::of("columns").index(i),
                        format!(
                            "column {} of {} is NOT NULL without a default: give `down.{col}` so rows the new release inserts get a value",
                            Ident::new(col),
                            ctx.qualified()
                        ),
                    );
                }
            }
        }
    }

    fn effects(&self) -> Effects {
        Effects {
            creates: vec![self.into.created(&FieldPath::of("into"))],
            removes: uses(&FieldPath::of("columns"), &self.columns),
            ..Effects::default()
        }
    }

    fn expressions(&self, ctx: &Ctx<'_>) -> Vec<ExprCheck> {
        let mut out = vec![self.into.expression(&FieldPath::of("into"))];
        for (col, expr) in &self.down {
            out.push(ExprCheck::Value {
                field: FieldPath::of("down").key(col),
                expr: expr.clone(),
                type_name: ctx.type_of(col),
            });
        }
        out
    }

    fn expand(&self, ctx: &Ctx<'_>) -> Vec<Statement> {
        new_columns_expand(ctx, &[&self.into])
    }

    fn constraints(&self, ctx: &Ctx<'_>) -> Vec<Statement> {
        new_columns_constraints(ctx, &[&self.into])
    }

    fn sync(&self, ctx: &Ctx<'_>) -> Option<Sync> {
        Some(Sync::TwoWay {
            old: self.columns.iter().map(Ident::new).collect(),
            new: vec![Ident::new(&self.into.name)],
            up: vec![self.into.up()],
            down: self
                .columns
                .iter()
                .filter_map(|c| {
                    self.down.get(c).map(|expr| Assign {
                        column: Ident::new(c),
                        expr: expr.clone(),
                        type_name: ctx.type_of(c),
                    })
                })
                .collect(),
            required: false,
        })
    }

    fn forward(&self, ctx: &Ctx<'_>) -> Option<Forward> {
        self.sync(ctx)?.two_way_forward()
    }

    fn contract(&self, ctx: &Ctx<'_>) -> Contract {
        new_columns_contract(ctx, &[&self.into], &self.columns)
    }

    fn rollback(&self, ctx: &Ctx<'_>) -> Rollback {
        new_columns_rollback(ctx, &[&self.into])
    }
}
