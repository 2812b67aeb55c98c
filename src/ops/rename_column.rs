//! `rename_column`: the new name appears at expand as a copy kept in sync both ways, so the old
//! release (writing `from`) and the new release (writing `to`) run side by side.
//!
//! At contract the copy is dropped and the original column renamed in the same short
//! transaction: the column keeps its indexes, constraints, default and statistics, and no index
//! has to be rebuilt.

use serde::Deserialize;

use super::{
    add_column, drop_column, use_of, Assign, Contract, Ctx, Effects, Forward, LockLevel, NewColumn,
    Operation, Problems, Removal, Rollback, Statement, Sync,
};
use crate::diagnostics::FieldPath;
use crate::sql::Ident;

/// `kind = "rename_column"`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameColumn {
    /// The current name.
    pub from: String,
    /// The new name.
    pub to: String,
}

impl RenameColumn {
    fn up(&self, ctx: &Ctx<'_>) -> Assign {
        Assign {
            column: Ident::new(&self.to),
            expr: Ident::new(&self.from).to_string(),
            type_name: ctx.type_of(&self.from),
        }
    }
}

impl Operation for RenameColumn {
    fn kind(&self) -> &'static str {
        "rename_column"
    }

    fn summary(&self) -> String {
        format!(
            "rename column {} to {}",
            Ident::new(&self.from),
            Ident::new(&self.to)
        )
    }

    fn check(&self, problems: &mut Problems) {
        problems.require_text(FieldPath::of("from"), &self.from);
        problems.require_text(FieldPath::of("to"), &self.to);
        if self.from == self.to {
            problems.add(
                FieldPath::of("to"),
                "the new name is the same as the old one",
            );
        }
    }

    fn removal(&self) -> Removal {
        Removal::Kept
    }

    fn renames_column(&self) -> Option<(&str, &str)> {
        Some((&self.from, &self.to))
    }

    fn effects(&self) -> Effects {
        Effects {
            creates: vec![NewColumn {
                name: self.to.clone(),
                type_name: None,
                type_of: Some(self.from.clone()),
                visible: true,
                field: FieldPath::of("to"),
            }],
            removes: vec![use_of(FieldPath::of("from"), &self.from)],
            ..Effects::default()
        }
    }

    fn expand(&self, ctx: &Ctx<'_>) -> Vec<Statement> {
        vec![add_column(ctx, &self.to, &ctx.type_of(&self.from))]
    }

    fn sync(&self, ctx: &Ctx<'_>) -> Option<Sync> {
        Some(Sync::TwoWay {
            old: vec![Ident::new(&self.from)],
            new: vec![Ident::new(&self.to)],
            up: vec![self.up(ctx)],
            down: vec![Assign {
                column: Ident::new(&self.from),
                expr: Ident::new(&self.to).to_string(),
                type_name: ctx.type_of(&self.from),
            }],
            required: false,
        })
    }

    fn forward(&self, ctx: &Ctx<'_>) -> Option<Forward> {
        self.sync(ctx)?.two_way_forward()
    }

    fn contract(&self, ctx: &Ctx<'_>) -> Contract {
        Contract {
            validate: Vec::new(),
            switch: vec![
                drop_column(ctx, &self.to),
                Statement::new(
                    LockLevel::AccessExclusive,
                    ctx.alter(format_args!(
                        "RENAME COLUMN {} TO {}",
                        Ident::new(&self.from),
                        Ident::new(&self.to)
                    )),
                ),
            ],
            ..Contract::default()
        }
    }

    fn rollback(&self, ctx: &Ctx<'_>) -> Rollback {
        Rollback {
            indexes: Vec::new(),
            statements: vec![drop_column(ctx, &self.to)],
            ..Rollback::default()
        }
    }
}
