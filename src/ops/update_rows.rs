//! `update_rows`: a pure data change, `SET col = expr WHERE cond`, done by the throttled
//! backfill in short chunks instead of one long `UPDATE`. With `sync_writes` (the default) the
//! trigger applies the same change to rows the application writes meanwhile, so the table is
//! consistent when the backfill ends. The values it overwrites are kept so that a rollback can
//! restore them.

use serde::Deserialize;

use super::{Assign, Ctx, Effects, ExprCheck, Forward, Operation, Problems, Sync};
use crate::diagnostics::FieldPath;
use crate::ops::ExprMap;
use crate::sql::Ident;

/// `kind = "update_rows"`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRows {
    /// New values per column, over the row.
    pub set: ExprMap,
    /// Which rows; default all.
    #[serde(rename = "where")]
    pub predicate: Option<String>,
    /// Apply the change to rows the application writes during the transition.
    #[serde(default = "yes")]
    pub sync_writes: bool,
}

fn yes() -> bool {
    true
}

impl UpdateRows {
    fn assign(&self, ctx: &Ctx<'_>) -> Vec<Assign> {
        self.set
            .iter()
            .map(|(col, expr)| Assign {
                column: Ident::new(col),
                expr: expr.clone(),
                type_name: ctx.type_of(col),
            })
            .collect()
    }
}

impl Operation for UpdateRows {
    fn kind(&self) -> &'static str {
        "update_rows"
    }

    fn summary(&self) -> String {
        let cols: Vec<String> = self.set.keys().map(|c| Ident::new(c).to_string()).collect();
        match &self.predicate {
            Some(p) => format!("update {} where {p}", cols.join(", ")),
            None => format!("update {} in every row", cols.join(", ")),
        }
    }

    fn check(&self, problems: &mut Problems) {
        if self.set.is_empty() {
            problems.add(FieldPath::of("set"), "must set at least one column");
        }
        for (col, expr) in &self.set {
            problems.require_text(FieldPath::of("set").key(col), expr);
        }
        if let Some(p) = &self.predicate {
            problems.require_text(FieldPath::of("where"), p);
        }
    }

    fn effects(&self) -> Effects {
        Effects {
            writes: self
                .set
                .keys()
                .map(|c| super::use_of(FieldPath::of("set").key(c), c))
                .collect(),
            ..Effects::default()
        }
    }

    fn expressions(&self, ctx: &Ctx<'_>) -> Vec<ExprCheck> {
        let mut out: Vec<ExprCheck> = self
            .predicate
            .iter()
            .map(|p| ExprCheck::Condition {
                field: FieldPath::of("where"),
                expr: p.clone(),
            })
            .collect();
        for (col, expr) in &self.set {
            out.push(ExprCheck::Value {
                field: FieldPath::of("set").key(col),
                expr: expr.clone(),
                type_name: ctx.type_of(col),
            });
        }
        out
    }

    fn sync(&self, ctx: &Ctx<'_>) -> Option<Sync> {
        if !self.sync_writes {
            return None;
        }
        Some(Sync::OnWrite {
            when: self.predicate.clone(),
            assign: self.assign(ctx),
            inserts_only: false,
        })
    }

    fn forward(&self, ctx: &Ctx<'_>) -> Option<Forward> {
        Some(Forward {
            when: self.predicate.clone(),
            assign: self.assign(ctx),
        })
    }
}
