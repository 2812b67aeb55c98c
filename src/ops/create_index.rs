//! `create_index`: `CREATE INDEX CONCURRENTLY` at expand (`SHARE UPDATE EXCLUSIVE`: reads and
//! writes go on while it builds). It cannot run in a transaction; an INVALID index left by an
//! interrupted build is dropped and built again by the executor.

use serde::Deserialize;

use super::{
    concurrent_index, default_index_name, uses, Ctx, DataCheck, Effects, ExprCheck, IndexBuild,
    Operation, Problems, Rollback,
};
use crate::diagnostics::FieldPath;
use crate::sql::{fit_identifier, fnv1a, ident_list, Ident};

/// Index methods PostgreSQL ships.
pub const METHODS: &[&str] = &["btree", "hash", "gist", "spgist", "gin", "brin"];

/// `kind = "create_index"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateIndex {
    /// Indexed columns (or give `expression`).
    pub columns: Option<Vec<String>>,
    /// An index expression, as in `CREATE INDEX ... ((lower(email)))`.
    pub expression: Option<String>,
    /// A unique index.
    #[serde(default)]
    pub unique: bool,
    /// A partial index's predicate.
    #[serde(rename = "where")]
    pub predicate: Option<String>,
    /// `btree` (default), `hash`, `gist`, `spgist`, `gin` or `brin`.
    pub method: Option<String>,
    /// The index name; default `<table>_<columns>_idx` (`_key` when unique).
    pub name: Option<String>,
}

impl CreateIndex {
    /// The index name.
    pub fn index_name(&self, ctx: &Ctx<'_>) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        let suffix = if self.unique { "key" } else { "idx" };
        match (&self.columns, &self.expression) {
            (Some(cols), _) => default_index_name(ctx.qualified(), cols, suffix),
            (None, Some(e)) => fit_identifier(&format!(
                "{}_expr_{:08x}_{suffix}",
                ctx.qualified().name.as_str(),
                fnv1a(e.as_bytes()) as u32
            )),
            (None, None) => String::new(),
        }
    }

    fn body(&self) -> String {
        match (&self.columns, &self.expression) {
            (Some(cols), _) => ident_list(&cols.iter().map(Ident::new).collect::<Vec<_>>()),
            (None, Some(e)) => format!("({e})"),
            (None, None) => String::new(),
        }
    }

    fn build(&self, ctx: &Ctx<'_>) -> IndexBuild {
        concurrent_index(
            ctx,
            &self.index_name(ctx),
            self.unique,
            self.method.as_deref(),
            &self.body(),
            self.predicate.as_deref(),
        )
    }
}

impl Operation for CreateIndex {
    fn kind(&self) -> &'static str {
        "create_index"
    }

    fn data_checks(&self, ctx: &Ctx<'_>) -> Vec<DataCheck> {
        match (&self.columns, self.unique) {
            (Some(columns), true) => vec![DataCheck::duplicates(
                ctx,
                FieldPath::of("columns"),
                columns,
                self.predicate.as_deref(),
            )],
            _ => Vec::new(),
        }
    }

    fn summary(&self) -> String {
        format!(
            "create {}index ({})",
            if self.unique { "unique " } else { "" },
            self.body()
        )
    }

    fn check(&self, problems: &mut Problems) {
        match (&self.columns, &self.expression) {
            (Some(_), Some(_)) => problems.add(
                FieldPath::of("expression"),
                "give either `columns` or `expression`, not both",
            ),
            (None, None) => problems.add(
                FieldPath::root(),
                "create_index needs `columns` or `expression`",
            ),
            (Some(cols), None) => {
                super::check_column_list(problems, FieldPath::of("columns"), cols)
            }
            (None, Some(e)) => problems.require_text(FieldPath::of("expression"), e),
        }
        if let Some(m) = &self.method {
            if !METHODS.contains(&m.as_str()) {
                problems.add(
                    FieldPath::of("method"),
                    format!(
                        "`{m}` is not an index method; use one of: {}",
                        METHODS.join(", ")
                    ),
                );
            }
        }
        if let Some(p) = &self.predicate {
            problems.require_text(FieldPath::of("where"), p);
        }
    }

    fn check_catalog(&self, ctx: &Ctx<'_>, problems: &mut Problems) {
        let name = self.index_name(ctx);
        if ctx.table.indexes.iter().any(|i| i.name == name && i.valid) {
            problems.add(
                FieldPath::of(if self.name.is_some() {
                    "name"
                } else {
                    "columns"
                }),
                format!("{} already has an index named \"{name}\"", ctx.qualified()),
            );
        }
    }

    fn effects(&self) -> Effects {
        Effects {
            reads: self
                .columns
                .as_ref()
                .map(|c| uses(&FieldPath::of("columns"), c))
                .unwrap_or_default(),
            ..Effects::default()
        }
    }

    fn expressions(&self, _ctx: &Ctx<'_>) -> Vec<ExprCheck> {
        // The index built on the validation copy of the table inside the rolled-back
        // transaction: it checks method, expression and predicate together.
        let field = if self.expression.is_some() {
            "expression"
        } else if self.predicate.is_some() {
            "where"
        } else {
            "columns"
        };
        vec![ExprCheck::Index {
            field: FieldPath::of(field),
            unique: self.unique,
            method: self.method.clone(),
            body: self.body(),
            predicate: self.predicate.clone(),
        }]
    }

    fn indexes(&self, ctx: &Ctx<'_>) -> Vec<IndexBuild> {
        vec![self.build(ctx)]
    }

    fn rollback(&self, ctx: &Ctx<'_>) -> Rollback {
        Rollback {
            indexes: vec![ctx.qualified().sibling(self.index_name(ctx))],
            statements: Vec::new(),
            ..Rollback::default()
        }
    }
}
