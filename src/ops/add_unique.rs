//! `add_unique`: a unique constraint without blocking writes. The unique index is built
//! concurrently at expand (`SHARE UPDATE EXCLUSIVE`; enforced for new writes as soon as it is
//! valid), and the constraint is attached to it at contract with `ADD CONSTRAINT ... UNIQUE
//! USING INDEX`, a metadata-only change.

use serde::Deserialize;

use super::{
    check_column_list, concurrent_index, default_index_name, uses, Contract, Ctx, DataCheck,
    Effects, IndexBuild, IndexShape, LockLevel, Operation, Problems, Rollback, Statement,
};
use crate::diagnostics::FieldPath;
use crate::sql::{ident_list, Ident};

/// `kind = "add_unique"`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddUnique {
    /// The columns that must be unique together.
    pub columns: Vec<String>,
    /// The constraint (and index) name; default `<table>_<columns>_key`.
    pub name: Option<String>,
}

impl AddUnique {
    fn index_name(&self, ctx: &Ctx<'_>) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| default_index_name(ctx.qualified(), &self.columns, "key"))
    }
}

impl Operation for AddUnique {
    fn data_checks(&self, ctx: &Ctx<'_>) -> Vec<DataCheck> {
        vec![DataCheck::duplicates(
            ctx,
            FieldPath::of("columns"),
            &self.columns,
            None,
        )]
    }

    fn kind(&self) -> &'static str {
        "add_unique"
    }

    fn attaches(&self) -> bool {
        true
    }

    fn summary(&self) -> String {
        format!(
            "add unique ({})",
            ident_list(&self.columns.iter().map(Ident::new).collect::<Vec<_>>())
        )
    }

    fn check(&self, problems: &mut Problems) {
        check_column_list(problems, FieldPath::of("columns"), &self.columns);
    }

    fn check_catalog(&self, ctx: &Ctx<'_>, problems: &mut Problems) {
        let name = self.index_name(ctx);
        if ctx.table.constraints.iter().any(|c| c.name == name) {
            problems.add(
                FieldPath::of(if self.name.is_some() {
                    "name"
                } else {
                    "columns"
                }),
                format!(
                    "{} already has a constraint named \"{name}\"",
                    ctx.qualified()
                ),
            );
        }
    }

    fn effects(&self) -> Effects {
        Effects {
            reads: uses(&FieldPath::of("columns"), &self.columns),
            ..Effects::default()
        }
    }

    fn indexes(&self, ctx: &Ctx<'_>) -> Vec<IndexBuild> {
        let cols: Vec<Ident> = self.columns.iter().map(Ident::new).collect();
        vec![concurrent_index(
            ctx,
            &self.index_name(ctx),
            IndexShape {
                unique: true,
                method: None,
                body: &ident_list(&cols),
                include: &[],
                predicate: None,
            },
        )]
    }

    fn contract(&self, ctx: &Ctx<'_>) -> Contract {
        let name = Ident::new(self.index_name(ctx));
        Contract {
            validate: Vec::new(),
            switch: vec![Statement::new(
                LockLevel::AccessExclusive,
                ctx.alter(format_args!(
                    "ADD CONSTRAINT {name} UNIQUE USING INDEX {name}"
                )),
            )],
            ..Contract::default()
        }
    }

    fn rollback(&self, ctx: &Ctx<'_>) -> Rollback {
        Rollback {
            indexes: vec![ctx.qualified().sibling(self.index_name(ctx))],
            statements: Vec::new(),
            ..Rollback::default()
        }
    }
}
