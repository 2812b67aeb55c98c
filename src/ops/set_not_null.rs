//! `set_not_null`: NOT NULL without a long lock, through a `CHECK ... NOT VALID` (see
//! [`super::NotNullViaCheck`]). `fill` gives existing NULLs a value (backfill) and replaces NULLs
//! that the running release still writes (trigger).

use serde::Deserialize;

use super::{
    use_of, Assign, Contract, Ctx, DataCheck, Effects, ExprCheck, Forward, NotNullViaCheck,
    Operation, Problems, Rollback, Statement, Sync,
};
use crate::diagnostics::FieldPath;
use crate::sql::Ident;

/// `kind = "set_not_null"`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetNotNull {
    /// The column.
    pub column: String,
    /// The value for NULLs, over the row; without it, NULLs make contract fail at validation.
    pub fill: Option<String>,
    /// The column's copy under its new name, when a `rename_column` before this operation
    /// renames it ([`super::compose`]): filled with the column.
    #[serde(skip)]
    pub copy: Option<String>,
}

impl SetNotNull {
    fn fill_rule(&self, ctx: &Ctx<'_>) -> Option<(String, Vec<Assign>)> {
        let fill = self.fill.as_ref()?;
        let assign = |column: &str| Assign {
            column: Ident::new(column),
            expr: fill.clone(),
            type_name: ctx.type_of(&self.column),
        };
        Some((
            format!("{} IS NULL", Ident::new(&self.column)),
            std::iter::once(&self.column)
                .chain(&self.copy)
                .map(|c| assign(c))
                .collect(),
        ))
    }
}

impl Operation for SetNotNull {
    fn kind(&self) -> &'static str {
        "set_not_null"
    }

    fn attaches(&self) -> bool {
        true
    }

    fn data_checks(&self, _ctx: &Ctx<'_>) -> Vec<DataCheck> {
        if self.fill.is_some() {
            return Vec::new();
        }
        vec![DataCheck::nulls(
            FieldPath::of("column"),
            &self.column,
            " (give `fill` to write a value into them)",
        )]
    }

    fn summary(&self) -> String {
        format!("set {} NOT NULL", Ident::new(&self.column))
    }

    fn check(&self, problems: &mut Problems) {
        problems.require_text(FieldPath::of("column"), &self.column);
        if let Some(f) = &self.fill {
            problems.require_text(FieldPath::of("fill"), f);
        }
    }

    fn check_catalog(&self, ctx: &Ctx<'_>, problems: &mut Problems) {
        if ctx.column(&self.column).is_some_and(|c| c.not_null) {
            problems.add(
                FieldPath::of("column"),
                format!(
                    "column {} of {} is already NOT NULL",
                    Ident::new(&self.column),
                    ctx.qualified()
                ),
            );
        }
    }

    fn effects(&self) -> Effects {
        let used = use_of(FieldPath::of("column"), &self.column);
        if self.fill.is_some() {
            Effects {
                writes: vec![used],
                ..Effects::default()
            }
        } else {
            Effects {
                reads: vec![used],
                ..Effects::default()
            }
        }
    }

    fn expressions(&self, ctx: &Ctx<'_>) -> Vec<ExprCheck> {
        self.fill
            .iter()
            .map(|f| ExprCheck::Value {
                field: FieldPath::of("fill"),
                expr: f.clone(),
                type_name: ctx.type_of(&self.column),
            })
            .collect()
    }

    fn constraints(&self, ctx: &Ctx<'_>) -> Vec<Statement> {
        vec![NotNullViaCheck::new(ctx, &self.column).expand(ctx)]
    }

    fn sync(&self, ctx: &Ctx<'_>) -> Option<Sync> {
        let (when, assign) = self.fill_rule(ctx)?;
        Some(Sync::OnWrite {
            when: Some(when),
            assign,
            inserts_only: false,
        })
    }

    fn forward(&self, ctx: &Ctx<'_>) -> Option<Forward> {
        let (when, assign) = self.fill_rule(ctx)?;
        Some(Forward {
            when: Some(when),
            assign,
        })
    }

    fn contract(&self, ctx: &Ctx<'_>) -> Contract {
        let nn = NotNullViaCheck::new(ctx, &self.column);
        Contract {
            validate: vec![nn.validate(ctx)],
            switch: nn.switch(ctx),
            ..Contract::default()
        }
    }

    fn rollback(&self, ctx: &Ctx<'_>) -> Rollback {
        Rollback {
            indexes: Vec::new(),
            statements: vec![NotNullViaCheck::new(ctx, &self.column).drop(ctx)],
            ..Rollback::default()
        }
    }
}
