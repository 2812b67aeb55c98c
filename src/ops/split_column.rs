//! `split_column`: one column becomes several. The new columns are added at expand and kept in
//! sync with the old one both ways (`up` per new column, one `down` back); the old column is
//! dropped at contract.

use serde::Deserialize;

use super::{
    add_column, drop_column, use_of, Assign, Contract, Ctx, Effects, ExprCheck, Forward, NewColumn,
    NotNullViaCheck, Operation, Problems, Rollback, Statement, Sync,
};
use crate::diagnostics::FieldPath;
use crate::sql::Ident;

/// A new column of a split or merge.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewColumnSpec {
    /// Its name.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Its value from the old column(s), over the row.
    pub up: String,
    /// `false` adds NOT NULL at contract.
    #[serde(default = "yes")]
    pub nullable: bool,
}

fn yes() -> bool {
    true
}

impl NewColumnSpec {
    /// Checks the fields under `at`.
    pub fn check(&self, at: &FieldPath, problems: &mut Problems) {
        problems.require_text(at.key("name"), &self.name);
        problems.require_text(at.key("type"), &self.type_name);
        problems.require_text(at.key("up"), &self.up);
    }

    /// The `up` assignment.
    pub fn up(&self) -> Assign {
        Assign {
            column: Ident::new(&self.name),
            expr: self.up.clone(),
            type_name: self.type_name.clone(),
        }
    }

    /// The column this spec creates.
    pub fn created(&self, at: &FieldPath) -> NewColumn {
        NewColumn {
            name: self.name.clone(),
            type_name: Some(self.type_name.clone()),
            type_of: None,
            visible: true,
            field: at.key("name"),
        }
    }

    /// The `up` expression to compile.
    pub fn expression(&self, at: &FieldPath) -> ExprCheck {
        ExprCheck::Value {
            field: at.key("up"),
            expr: self.up.clone(),
            type_name: self.type_name.clone(),
        }
    }
}

/// Expand, contract and rollback shared by split and merge: add the new columns (with NOT NULL
/// checks where asked), validate and set NOT NULL at contract, drop the old columns.
pub fn new_columns_expand(ctx: &Ctx<'_>, new: &[&NewColumnSpec]) -> Vec<Statement> {
    new.iter()
        .map(|c| add_column(ctx, &c.name, &c.type_name))
        .collect()
}

/// See [`new_columns_expand`].
pub fn new_columns_constraints(ctx: &Ctx<'_>, new: &[&NewColumnSpec]) -> Vec<Statement> {
    new.iter()
        .filter(|c| !c.nullable)
        .map(|c| NotNullViaCheck::new(ctx, &c.name).expand(ctx))
        .collect()
}

/// See [`new_columns_expand`].
pub fn new_columns_contract(ctx: &Ctx<'_>, new: &[&NewColumnSpec], old: &[String]) -> Contract {
    let mut contract = Contract::default();
    for c in new.iter().filter(|c| !c.nullable) {
        let nn = NotNullViaCheck::new(ctx, &c.name);
        contract.validate.push(nn.validate(ctx));
        contract.switch.extend(nn.switch(ctx));
    }
    contract
        .switch
        .extend(old.iter().map(|o| drop_column(ctx, o)));
    contract
}

/// See [`new_columns_expand`].
pub fn new_columns_rollback(ctx: &Ctx<'_>, new: &[&NewColumnSpec]) -> Rollback {
    Rollback {
        indexes: Vec::new(),
        statements: new.iter().map(|c| drop_column(ctx, &c.name)).collect(),
        ..Rollback::default()
    }
}

/// `kind = "split_column"`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitColumn {
    /// The column to split.
    pub column: String,
    /// The new columns.
    pub into: Vec<NewColumnSpec>,
    /// The old column from the new ones, over the row: used when the new release writes.
    pub down: String,
}

impl SplitColumn {
    fn new_refs(&self) -> Vec<&NewColumnSpec> {
        self.into.iter().collect()
    }
}

impl Operation for SplitColumn {
    fn kind(&self) -> &'static str {
        "split_column"
    }

    fn summary(&self) -> String {
        let names: Vec<String> = self
            .into
            .iter()
            .map(|c| Ident::new(&c.name).to_string())
            .collect();
        format!(
            "split column {} into {}",
            Ident::new(&self.column),
            names.join(", ")
        )
    }

    fn check(&self, problems: &mut Problems) {
        problems.require_text(FieldPath::of("column"), &self.column);
        problems.require_text(FieldPath::of("down"), &self.down);
        if self.into.is_empty() {
            problems.add(FieldPath::of("into"), "must list at least one new column");
        }
        for (i, c) in self.into.iter().enumerate() {
            c.check(&FieldPath::of("into").index(i), problems);
        }
    }

    fn effects(&self) -> Effects {
        Effects {
            creates: self
                .into
                .iter()
                .enumerate()
                .map(|(i, c)| c.created(&FieldPath::of("into").index(i)))
                .collect(),
            removes: vec![use_of(FieldPath::of("column"), &self.column)],
            ..Effects::default()
        }
    }

    fn expressions(&self, ctx: &Ctx<'_>) -> Vec<ExprCheck> {
        let mut out: Vec<ExprCheck> = self
            .into
            .iter()
            .enumerate()
            .map(|(i, c)| c.expression(&FieldPath::of("into").index(i)))
            .collect();
        out.push(ExprCheck::Value {
            field: FieldPath::of("down"),
            expr: self.down.clone(),
            type_name: ctx.type_of(&self.column),
        });
        out
    }

    fn expand(&self, ctx: &Ctx<'_>) -> Vec<Statement> {
        new_columns_expand(ctx, &self.new_refs())
    }

    fn constraints(&self, ctx: &Ctx<'_>) -> Vec<Statement> {
        new_columns_constraints(ctx, &self.new_refs())
    }

    fn sync(&self, ctx: &Ctx<'_>) -> Option<Sync> {
        Some(Sync::TwoWay {
            old: vec![Ident::new(&self.column)],
            new: self.into.iter().map(|c| Ident::new(&c.name)).collect(),
            up: self.into.iter().map(|c| c.up()).collect(),
            down: vec![Assign {
                column: Ident::new(&self.column),
                expr: self.down.clone(),
                type_name: ctx.type_of(&self.column),
            }],
            required: false,
        })
    }

    fn forward(&self, ctx: &Ctx<'_>) -> Option<Forward> {
        self.sync(ctx)?.two_way_forward()
    }

    fn contract(&self, ctx: &Ctx<'_>) -> Contract {
        new_columns_contract(ctx, &self.new_refs(), std::slice::from_ref(&self.column))
    }

    fn rollback(&self, ctx: &Ctx<'_>) -> Rollback {
        new_columns_rollback(ctx, &self.new_refs())
    }
}
