//! `create_index`: `CREATE INDEX CONCURRENTLY` at expand (`SHARE UPDATE EXCLUSIVE`: reads and
//! writes go on while it builds). It cannot run in a transaction; an INVALID index left by an
//! interrupted build is dropped and built again by the executor.

use serde::Deserialize;

use super::{
    concurrent_index, default_index_name, uses, Ctx, DataCheck, Effects, ExprCheck, IndexBuild,
    IndexShape, Operation, Problems, Rollback,
};
use crate::diagnostics::FieldPath;
use crate::sql::{fit_identifier, fnv1a, Ident};

/// Index methods PostgreSQL ships.
pub const METHODS: &[&str] = &["btree", "hash", "gist", "spgist", "gin", "brin"];

/// One indexed column: its name, or a table with the name and how it is indexed.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum IndexColumn {
    /// `"email"`.
    Name(String),
    /// `{ name = "created_at", order = "desc", nulls = "last", opclass = "...", collation = "C" }`.
    Spec(ColumnSpec),
}

/// How a column is indexed.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    /// The column.
    pub name: String,
    /// `asc` (default) or `desc`.
    pub order: Option<String>,
    /// `first` or `last` (default: last ascending, first descending).
    pub nulls: Option<String>,
    /// An operator class (`text_pattern_ops`, `schema.my_ops`).
    pub opclass: Option<String>,
    /// A collation (`C`, `und-x-icu`).
    pub collation: Option<String>,
}

impl IndexColumn {
    /// The column's name.
    pub fn name(&self) -> &str {
        match self {
            IndexColumn::Name(n) => n,
            IndexColumn::Spec(s) => &s.name,
        }
    }

    /// `"created_at" COLLATE "C" "text_pattern_ops" DESC NULLS LAST`: every part an
    /// identifier (quoted) or one of a few keywords checked by [`CreateIndex::check`].
    fn sql(&self) -> String {
        let IndexColumn::Spec(s) = self else {
            return Ident::new(self.name()).to_string();
        };
        let mut out = Ident::new(&s.name).to_string();
        if let Some(c) = &s.collation {
            out.push_str(&format!(" COLLATE {}", qualified_ident(c)));
        }
        if let Some(o) = &s.opclass {
            out.push_str(&format!(" {}", qualified_ident(o)));
        }
        if let Some(o) = &s.order {
            out.push_str(&format!(" {}", o.to_ascii_uppercase()));
        }
        if let Some(n) = &s.nulls {
            out.push_str(&format!(" NULLS {}", n.to_ascii_uppercase()));
        }
        out
    }
}

/// `a` or `schema.a`, each part quoted (a name with a dot in it cannot be written here).
fn qualified_ident(name: &str) -> String {
    name.split('.')
        .map(|p| Ident::new(p).to_string())
        .collect::<Vec<_>>()
        .join(".")
}

/// `kind = "create_index"`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIndex {
    /// Indexed columns, names or `{ name, order, nulls, opclass, collation }` (or give
    /// `expression`).
    pub columns: Option<Vec<IndexColumn>>,
    /// Columns stored in the index without being keys (`INCLUDE`).
    #[serde(default)]
    pub include: Vec<String>,
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
            (Some(_), _) => default_index_name(ctx.qualified(), &self.column_names(), suffix),
            (None, Some(e)) => fit_identifier(&format!(
                "{}_expr_{:08x}_{suffix}",
                ctx.qualified().name.as_str(),
                fnv1a(e.as_bytes()) as u32
            )),
            (None, None) => String::new(),
        }
    }

    /// The indexed columns' names.
    pub fn column_names(&self) -> Vec<String> {
        self.columns
            .iter()
            .flatten()
            .map(|c| c.name().to_string())
            .collect()
    }

    fn body(&self) -> String {
        match (&self.columns, &self.expression) {
            (Some(cols), _) => cols
                .iter()
                .map(IndexColumn::sql)
                .collect::<Vec<_>>()
                .join(", "),
            (None, Some(e)) => format!("({e})"),
            (None, None) => String::new(),
        }
    }

    fn build(&self, ctx: &Ctx<'_>) -> IndexBuild {
        concurrent_index(
            ctx,
            &self.index_name(ctx),
            IndexShape {
                unique: self.unique,
                method: self.method.as_deref(),
                body: &self.body(),
                include: &self.include,
                predicate: self.predicate.as_deref(),
            },
        )
    }
}

/// `order`, `nulls`, `opclass` and `collation` of one column.
fn check_spec(problems: &mut Problems, at: FieldPath, spec: &ColumnSpec) {
    let one_of =
        |problems: &mut Problems, field: &str, value: &Option<String>, allowed: &[&str]| {
            if let Some(v) = value {
                if !allowed.contains(&v.to_ascii_lowercase().as_str()) {
                    problems.add(
                        at.key(field),
                        format!("`{v}` is not one of: {}", allowed.join(", ")),
                    );
                }
            }
        };
    one_of(problems, "order", &spec.order, &["asc", "desc"]);
    one_of(problems, "nulls", &spec.nulls, &["first", "last"]);
    for (field, value) in [("opclass", &spec.opclass), ("collation", &spec.collation)] {
        if let Some(v) = value {
            if v.split('.').any(|p| p.trim().is_empty()) || v.split('.').count() > 2 {
                problems.add(
                    at.key(field),
                    format!("`{v}` is not a name (or schema.name)"),
                );
            }
        }
    }
}

impl Operation for CreateIndex {
    fn kind(&self) -> &'static str {
        "create_index"
    }

    fn attaches(&self) -> bool {
        true
    }

    fn data_checks(&self, ctx: &Ctx<'_>) -> Vec<DataCheck> {
        match (&self.columns, self.unique) {
            (Some(_), true) => vec![DataCheck::duplicates(
                ctx,
                FieldPath::of("columns"),
                &self.column_names(),
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
                super::check_column_list(problems, FieldPath::of("columns"), &self.column_names());
                for (i, c) in cols.iter().enumerate() {
                    if let IndexColumn::Spec(s) = c {
                        check_spec(problems, FieldPath::of("columns").index(i), s);
                    }
                }
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
        if !self.include.is_empty() {
            super::check_column_list(problems, FieldPath::of("include"), &self.include);
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
            reads: uses(&FieldPath::of("columns"), &self.column_names())
                .into_iter()
                .chain(uses(&FieldPath::of("include"), &self.include))
                .collect(),
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
            include: self.include.clone(),
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
