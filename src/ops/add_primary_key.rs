//! `add_primary_key`: a primary key without blocking writes. The unique index is built
//! concurrently at expand (enforced for new writes once valid); key columns that may be NULL
//! get a `CHECK (col IS NOT NULL) NOT VALID` with it. At contract the checks are validated
//! (scans under `SHARE UPDATE EXCLUSIVE`), `SET NOT NULL` is proved from them without a scan,
//! and `ADD CONSTRAINT ... PRIMARY KEY USING INDEX` attaches the key to the index, metadata
//! only. Existing NULLs or duplicates are reported at `validate`, before anything changes.

use serde::Deserialize;

use super::{
    check_column_list, concurrent_index, uses, Contract, Ctx, DataCheck, Effects, IndexBuild,
    IndexShape, LockLevel, NotNullViaCheck, Operation, Problems, Rollback, Statement,
};
use crate::diagnostics::FieldPath;
use crate::sql::{fit_identifier, ident_list, Ident};

/// `kind = "add_primary_key"`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddPrimaryKey {
    /// The key's columns, in order.
    pub columns: Vec<String>,
    /// The constraint (and index) name; default `<table>_pkey`.
    pub name: Option<String>,
}

impl AddPrimaryKey {
    fn index_name(&self, ctx: &Ctx<'_>) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| fit_identifier(&format!("{}_pkey", ctx.qualified().name.as_str())))
    }

    /// Key columns that may hold NULL today.
    fn nullable<'a>(&'a self, ctx: &'a Ctx<'_>) -> impl Iterator<Item = &'a String> + 'a {
        self.columns
            .iter()
            .filter(move |c| ctx.column(c).is_some_and(|c| !c.not_null))
    }
}

impl Operation for AddPrimaryKey {
    fn kind(&self) -> &'static str {
        "add_primary_key"
    }

    fn attaches(&self) -> bool {
        true
    }

    fn summary(&self) -> String {
        format!(
            "add primary key ({})",
            ident_list(&self.columns.iter().map(Ident::new).collect::<Vec<_>>())
        )
    }

    fn check(&self, problems: &mut Problems) {
        check_column_list(problems, FieldPath::of("columns"), &self.columns);
        if let Some(n) = &self.name {
            problems.require_text(FieldPath::of("name"), n);
        }
    }

    fn check_catalog(&self, ctx: &Ctx<'_>, problems: &mut Problems) {
        if let Some(pk) = ctx
            .table
            .constraints
            .iter()
            .find(|c| c.kind == 'p' && !c.foreign)
        {
            problems.add(
                FieldPath::of("columns"),
                format!(
                    "{} already has a primary key, \"{}\"; drop it first (`drop_constraint`)",
                    ctx.qualified(),
                    pk.name
                ),
            );
        }
        let name = self.index_name(ctx);
        if ctx.table.indexes.iter().any(|i| i.name == name)
            || ctx.table.constraints.iter().any(|c| c.name == name)
        {
            problems.add(
                FieldPath::of(if self.name.is_some() {
                    "name"
                } else {
                    "columns"
                }),
                format!(
                    "{} already has an index or constraint named \"{name}\"",
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

    fn data_checks(&self, ctx: &Ctx<'_>) -> Vec<DataCheck> {
        let mut out = vec![DataCheck::duplicates(
            ctx,
            FieldPath::of("columns"),
            &self.columns,
            None,
        )];
        for (i, c) in self.columns.iter().enumerate() {
            if ctx.column(c).is_some_and(|c| !c.not_null) {
                out.push(DataCheck::nulls(
                    FieldPath::of("columns").index(i),
                    c,
                    ", which a primary key refuses",
                ));
            }
        }
        out
    }

    fn constraints(&self, ctx: &Ctx<'_>) -> Vec<Statement> {
        self.nullable(ctx)
            .map(|c| NotNullViaCheck::new(ctx, c).expand(ctx))
            .collect()
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
        let mut contract = Contract::default();
        for c in self.nullable(ctx) {
            let nn = NotNullViaCheck::new(ctx, c);
            contract.validate.push(nn.validate(ctx));
            contract.switch.extend(nn.switch(ctx));
        }
        contract.switch.push(Statement::new(
            LockLevel::AccessExclusive,
            ctx.alter(format_args!(
                "ADD CONSTRAINT {name} PRIMARY KEY USING INDEX {name}"
            )),
        ));
        contract
    }

    fn rollback(&self, ctx: &Ctx<'_>) -> Rollback {
        Rollback {
            indexes: vec![ctx.qualified().sibling(self.index_name(ctx))],
            statements: self
                .nullable(ctx)
                .map(|c| NotNullViaCheck::new(ctx, c).drop(ctx))
                .collect(),
            ..Rollback::default()
        }
    }
}
