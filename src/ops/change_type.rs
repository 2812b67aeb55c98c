//! `change_type`: the column in its new type is built beside the old one (a hidden column kept
//! in sync by the trigger and filled by the backfill), then swapped in at contract: the old
//! column is dropped and the new one renamed into its place, with the old default and NOT NULL.
//!
//! The swap is metadata only. What the old column carries is carried over ([`super::carry`]):
//! its indexes are built on the hidden column during expand, its checks and foreign keys
//! added `NOT VALID` with the trigger and validated at contract, and the switch renames them,
//! along with the comment, privileges, statistics target and owned sequence.

use serde::Deserialize;

use super::{
    add_column, carry, drop_column, use_of, Assign, Contract, Ctx, Effects, ExprCheck, Forward,
    IndexBuild, LockLevel, NewColumn, NotNullViaCheck, Operation, Problems, Removal, Rollback,
    Statement, Sync,
};
use crate::diagnostics::FieldPath;
use crate::sql::{fit_identifier, Ident};

/// `kind = "change_type"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeType {
    /// The column.
    pub column: String,
    /// The new type.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Old value to new, over the row; default: a cast of the column.
    pub up: Option<String>,
    /// New value to old, over the row (the hidden column stands for the new value); default: a
    /// cast back.
    pub down: Option<String>,
    /// The default of the column in its new type; default: the old default, cast.
    pub default: Option<String>,
    /// The name of the hidden column during the transition.
    pub temp_column: Option<String>,
}

impl ChangeType {
    /// The hidden column that holds the new type until contract.
    pub fn temp(&self) -> String {
        self.temp_column
            .clone()
            .unwrap_or_else(|| fit_identifier(&format!("{}_bf_new", self.column)))
    }

    fn up(&self) -> Assign {
        Assign {
            column: Ident::new(self.temp()),
            expr: self
                .up
                .clone()
                .unwrap_or_else(|| Ident::new(&self.column).to_string()),
            type_name: self.type_name.clone(),
        }
    }

    fn not_null(&self, ctx: &Ctx<'_>) -> Option<NotNullViaCheck> {
        ctx.column(&self.column)
            .filter(|c| c.not_null)
            .map(|_| NotNullViaCheck::new(ctx, &self.temp()))
    }
}

impl Operation for ChangeType {
    fn kind(&self) -> &'static str {
        "change_type"
    }

    fn summary(&self) -> String {
        format!(
            "change the type of {} to {}",
            Ident::new(&self.column),
            self.type_name
        )
    }

    fn check(&self, problems: &mut Problems) {
        problems.require_text(FieldPath::of("column"), &self.column);
        problems.require_text(FieldPath::of("type"), &self.type_name);
        for (field, v) in [
            ("up", &self.up),
            ("down", &self.down),
            ("default", &self.default),
            ("temp_column", &self.temp_column),
        ] {
            if let Some(v) = v {
                problems.require_text(FieldPath::of(field), v);
            }
        }
    }

    fn effects(&self) -> Effects {
        Effects {
            creates: vec![NewColumn {
                name: self.temp(),
                type_name: Some(self.type_name.clone()),
                type_of: None,
                visible: false,
                field: FieldPath::of(if self.temp_column.is_some() {
                    "temp_column"
                } else {
                    "column"
                }),
            }],
            removes: vec![use_of(FieldPath::of("column"), &self.column)],
            ..Effects::default()
        }
    }

    fn check_catalog(&self, ctx: &Ctx<'_>, problems: &mut Problems) {
        carry::refusals(ctx, &self.column, &FieldPath::of("column"), problems);
    }

    fn removal(&self) -> Removal {
        Removal::Carried
    }

    fn indexes(&self, ctx: &Ctx<'_>) -> Vec<IndexBuild> {
        carry::carry(ctx, &self.column, &self.temp()).indexes
    }

    fn expressions(&self, ctx: &Ctx<'_>) -> Vec<ExprCheck> {
        let up = self.up();
        let mut out = vec![ExprCheck::Value {
            field: FieldPath::of(if self.up.is_some() { "up" } else { "type" }),
            expr: up.expr,
            type_name: self.type_name.clone(),
        }];
        out.push(ExprCheck::Value {
            field: FieldPath::of(if self.down.is_some() { "down" } else { "type" }),
            expr: self.down_expr(),
            type_name: ctx.type_of(&self.column),
        });
        if let Some(d) = self.new_default(ctx) {
            out.push(ExprCheck::Value {
                field: FieldPath::of(if self.default.is_some() {
                    "default"
                } else {
                    "column"
                }),
                expr: d,
                type_name: self.type_name.clone(),
            });
        }
        out
    }

    fn expand(&self, ctx: &Ctx<'_>) -> Vec<Statement> {
        vec![add_column(ctx, &self.temp(), &self.type_name)]
    }

    fn constraints(&self, ctx: &Ctx<'_>) -> Vec<Statement> {
        self.not_null(ctx)
            .map(|nn| nn.expand(ctx))
            .into_iter()
            .chain(carry::carry(ctx, &self.column, &self.temp()).constraints)
            .collect()
    }

    fn sync(&self, ctx: &Ctx<'_>) -> Option<Sync> {
        Some(Sync::TwoWay {
            old: vec![Ident::new(&self.column)],
            new: vec![Ident::new(self.temp())],
            up: vec![self.up()],
            down: vec![Assign {
                column: Ident::new(&self.column),
                expr: self.down_expr(),
                type_name: ctx.type_of(&self.column),
            }],
        })
    }

    fn forward(&self, ctx: &Ctx<'_>) -> Option<Forward> {
        self.sync(ctx)?.two_way_forward()
    }

    fn contract(&self, ctx: &Ctx<'_>) -> Contract {
        let column = Ident::new(&self.column);
        let carried = carry::carry(ctx, &self.column, &self.temp());
        let mut switch = carried.before_drop;
        switch.push(drop_column(ctx, &self.column));
        switch.push(Statement::new(
            LockLevel::AccessExclusive,
            ctx.alter(format_args!(
                "RENAME COLUMN {} TO {column}",
                Ident::new(self.temp())
            )),
        ));
        if let Some(d) = self.new_default(ctx) {
            switch.push(Statement::new(
                LockLevel::AccessExclusive,
                ctx.alter(format_args!("ALTER COLUMN {column} SET DEFAULT {d}")),
            ));
        }
        let mut validate = Vec::new();
        if let Some(nn) = self.not_null(ctx) {
            validate.push(nn.validate(ctx));
            // After the rename the check's column has the old name; SET NOT NULL goes there.
            let renamed = NotNullViaCheck {
                constraint: nn.constraint.clone(),
                column: column.clone(),
            };
            switch.extend(renamed.switch(ctx));
        }
        validate.extend(carried.validate);
        // A primary key switched USING INDEX needs the NOT NULL set just above.
        switch.extend(carried.after_rename);
        Contract {
            validate,
            switch,
            ..Contract::default()
        }
    }

    fn rollback(&self, ctx: &Ctx<'_>) -> Rollback {
        let carried = carry::carry(ctx, &self.column, &self.temp());
        let mut statements = carried.rollback;
        statements.push(drop_column(ctx, &self.temp()));
        Rollback {
            indexes: carried.rollback_indexes,
            statements,
            ..Rollback::default()
        }
    }
}

impl ChangeType {
    fn down_expr(&self) -> String {
        self.down
            .clone()
            .unwrap_or_else(|| Ident::new(self.temp()).to_string())
    }

    fn new_default(&self, ctx: &Ctx<'_>) -> Option<String> {
        match &self.default {
            Some(d) => Some(d.clone()),
            None => ctx
                .column(&self.column)
                .and_then(|c| c.default.clone())
                .map(|d| {
                    // A number stays as written (PostgreSQL fits it to any numeric type), so
                    // the catalog reads as before; anything else is cast.
                    let number = d.trim_start_matches('-');
                    if !number.is_empty() && number.chars().all(|c| c.is_ascii_digit() || c == '.')
                    {
                        d
                    } else {
                        format!("CAST(({d}) AS {})", self.type_name)
                    }
                }),
        }
    }
}
