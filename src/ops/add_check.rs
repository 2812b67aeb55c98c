//! `add_check`: a CHECK constraint added `NOT VALID` (instant, enforced for new writes) and
//! validated at contract under `SHARE UPDATE EXCLUSIVE`, which lets reads and writes go on.
//! `fill` repairs rows that violate it: existing ones in the backfill, written ones in the
//! trigger.

use serde::Deserialize;

use super::{
    drop_constraint, uses, validate_constraint, Assign, Contract, Ctx, DataCheck, Effects,
    ExprCheck, Forward, LockLevel, Operation, Problems, Rollback, Statement, Sync,
};
use crate::diagnostics::FieldPath;
use crate::ops::ExprMap;
use crate::sql::Ident;

/// `kind = "add_check"`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddCheck {
    /// The constraint's name.
    pub name: String,
    /// The boolean condition.
    pub check: String,
    /// For rows that violate the check: new values per column, over the row.
    #[serde(default)]
    pub fill: ExprMap,
}

impl AddCheck {
    fn rule(&self, ctx: &Ctx<'_>) -> Option<(String, Vec<Assign>)> {
        if self.fill.is_empty() {
            return None;
        }
        Some((
            format!("NOT ({})", self.check),
            self.fill
                .iter()
                .map(|(col, expr)| Assign {
                    column: Ident::new(col),
                    expr: expr.clone(),
                    type_name: ctx.type_of(col),
                })
                .collect(),
        ))
    }
}

impl Operation for AddCheck {
    fn kind(&self) -> &'static str {
        "add_check"
    }

    fn attaches(&self) -> bool {
        true
    }

    fn summary(&self) -> String {
        format!("add check {} ({})", Ident::new(&self.name), self.check)
    }

    fn check(&self, problems: &mut Problems) {
        problems.require_text(FieldPath::of("name"), &self.name);
        problems.require_text(FieldPath::of("check"), &self.check);
        for (col, expr) in &self.fill {
            problems.require_text(FieldPath::of("fill").key(col), expr);
        }
    }

    fn check_catalog(&self, ctx: &Ctx<'_>, problems: &mut Problems) {
        if ctx.table.constraints.iter().any(|c| c.name == self.name) {
            problems.add(
                FieldPath::of("name"),
                format!(
                    "{} already has a constraint named {}",
                    ctx.qualified(),
                    Ident::new(&self.name)
                ),
            );
        }
    }

    fn effects(&self) -> Effects {
        let cols: Vec<String> = self.fill.keys().cloned().collect();
        let mut writes = uses(&FieldPath::of("fill"), &cols);
        for (w, c) in writes.iter_mut().zip(&cols) {
            w.field = FieldPath::of("fill").key(c);
        }
        Effects {
            writes,
            ..Effects::default()
        }
    }

    fn expressions(&self, ctx: &Ctx<'_>) -> Vec<ExprCheck> {
        let mut out = vec![ExprCheck::Condition {
            field: FieldPath::of("check"),
            expr: self.check.clone(),
        }];
        for (col, expr) in &self.fill {
            out.push(ExprCheck::Value {
                field: FieldPath::of("fill").key(col),
                expr: expr.clone(),
                type_name: ctx.type_of(col),
            });
        }
        out
    }

    fn constraints(&self, ctx: &Ctx<'_>) -> Vec<Statement> {
        vec![Statement::new(
            LockLevel::AccessExclusive,
            ctx.alter(format_args!(
                "ADD CONSTRAINT {} CHECK ({}) NOT VALID",
                Ident::new(&self.name),
                self.check
            )),
        )]
    }

    fn data_checks(&self, ctx: &Ctx<'_>) -> Vec<DataCheck> {
        if !self.fill.is_empty() {
            return Vec::new();
        }
        let columns = ctx.table.columns.iter().map(|c| c.name.clone()).collect();
        vec![DataCheck {
            field: FieldPath::of("check"),
            what: "fail the check (give `fill` to repair them)".to_string(),
            condition: format!("({}) IS FALSE", self.check),
            columns,
            per_row: true,
        }]
    }

    fn sync(&self, ctx: &Ctx<'_>) -> Option<Sync> {
        let (when, assign) = self.rule(ctx)?;
        Some(Sync::OnWrite {
            when: Some(when),
            assign,
            inserts_only: false,
        })
    }

    fn forward(&self, ctx: &Ctx<'_>) -> Option<Forward> {
        let (when, assign) = self.rule(ctx)?;
        Some(Forward {
            when: Some(when),
            assign,
        })
    }

    fn contract(&self, ctx: &Ctx<'_>) -> Contract {
        Contract {
            validate: vec![validate_constraint(ctx, &Ident::new(&self.name))],
            switch: Vec::new(),
            ..Contract::default()
        }
    }

    fn rollback(&self, ctx: &Ctx<'_>) -> Rollback {
        Rollback {
            indexes: Vec::new(),
            statements: vec![drop_constraint(ctx, &Ident::new(&self.name))],
            ..Rollback::default()
        }
    }
}
