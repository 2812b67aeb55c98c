//! `change_type`: the column in its new type is built beside the old one (a hidden column kept
//! in sync by the trigger and filled by the backfill), then swapped in at contract: the old
//! column is dropped and the new one renamed into its place, with the old default and NOT NULL.
//!
//! The swap is metadata only. What the old column carries is carried over ([`super::carry`]):
//! its indexes are built on the hidden column during expand, its checks and foreign keys
//! added `NOT VALID` with the trigger and validated at contract, and the switch renames them,
//! along with the comment, privileges, statistics target and owned sequence.
//!
//! With `rename_to` the new column is visible under its new name from expand on (the old
//! release writes the old column, the new release the new one, the trigger keeps them in
//! sync) and contract only drops the old column. `not_null`, `fill` and `default` give the
//! column in its new type its NOT NULL and default. A plan's `rename_column`, `set_not_null`,
//! `drop_not_null` and `set_default` of the same column are composed into these fields
//! ([`super::compose`]).

use serde::Deserialize;

use super::drop_not_null::DropNotNull;
use super::set_default::NewDefault;
use super::{
    add_column, carry, drop_column, use_of, Assign, Contract, Ctx, DataCheck, Effects, ExprCheck,
    Forward, IndexBuild, LockLevel, NewColumn, NotNullViaCheck, Operation, Problems, Removal,
    Rollback, Statement, Sync,
};
use crate::diagnostics::FieldPath;
use crate::sql::{fit_identifier, Ident};

/// The column that holds `column` in its new type during the transition: `rename_to`, else
/// `temp_column`, else `<column>_bf_new`.
pub fn temp_name(column: &str, rename_to: Option<&str>, temp_column: Option<&str>) -> String {
    rename_to
        .or(temp_column)
        .map(str::to_string)
        .unwrap_or_else(|| fit_identifier(&format!("{column}_bf_new")))
}

/// `kind = "change_type"`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
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
    /// The default of the column in its new type (`false`: none); default: the old default,
    /// cast.
    pub default: Option<NewDefault>,
    /// The name of the hidden column during the transition.
    pub temp_column: Option<String>,
    /// A new name for the column: the column in its new type has it from expand on.
    pub rename_to: Option<String>,
    /// `true`: NOT NULL in the new type; `false`: nullable; default: as the old column.
    pub not_null: Option<bool>,
    /// The new value, over the row, where `up` gives NULL.
    pub fill: Option<String>,
}

impl ChangeType {
    /// The hidden column that holds the new type until contract.
    pub fn temp(&self) -> String {
        temp_name(
            &self.column,
            self.rename_to.as_deref(),
            self.temp_column.as_deref(),
        )
    }

    /// What `column` carries, moved onto the new column.
    fn carried(&self, ctx: &Ctx<'_>) -> carry::Carry {
        carry::carry(ctx, &self.column, &self.temp(), self.final_name())
    }

    /// Whether the old column is NOT NULL.
    fn old_not_null(&self, ctx: &Ctx<'_>) -> bool {
        ctx.column(&self.column).is_some_and(|c| c.not_null)
    }

    /// The column's name after contract.
    fn final_name(&self) -> &str {
        self.rename_to.as_deref().unwrap_or(&self.column)
    }

    /// `up` as written (a cast of the column without it).
    fn up_expr(&self) -> String {
        self.up
            .clone()
            .unwrap_or_else(|| Ident::new(&self.column).to_string())
    }

    fn up(&self) -> Assign {
        let expr = match &self.fill {
            Some(fill) => format!(
                "COALESCE(CAST(({}) AS {t}), CAST(({fill}) AS {t}))",
                self.up_expr(),
                t = self.type_name
            ),
            None => self.up_expr(),
        };
        Assign {
            column: Ident::new(self.temp()),
            expr,
            type_name: self.type_name.clone(),
        }
    }

    fn not_null(&self, ctx: &Ctx<'_>) -> Option<NotNullViaCheck> {
        self.not_null
            .unwrap_or(self.old_not_null(ctx))
            .then(|| NotNullViaCheck::new(ctx, &self.temp()))
    }
}

impl Operation for ChangeType {
    fn kind(&self) -> &'static str {
        "change_type"
    }

    fn summary(&self) -> String {
        let mut s = format!(
            "change the type of {} to {}",
            Ident::new(&self.column),
            self.type_name
        );
        if let Some(to) = &self.rename_to {
            s.push_str(&format!(", renamed to {}", Ident::new(to)));
        }
        match self.not_null {
            Some(true) => s.push_str(", NOT NULL"),
            Some(false) => s.push_str(", nullable"),
            None => {}
        }
        s
    }

    fn check(&self, problems: &mut Problems) {
        problems.require_text(FieldPath::of("column"), &self.column);
        problems.require_text(FieldPath::of("type"), &self.type_name);
        for (field, v) in [
            ("up", &self.up),
            ("down", &self.down),
            ("temp_column", &self.temp_column),
            ("rename_to", &self.rename_to),
            ("fill", &self.fill),
        ] {
            if let Some(v) = v {
                problems.require_text(FieldPath::of(field), v);
            }
        }
        if let Some(NewDefault::Expr(d)) = &self.default {
            problems.require_text(FieldPath::of("default"), d);
        }
        if self.rename_to.is_some() && self.temp_column.is_some() {
            problems.add(
                FieldPath::of("temp_column"),
                "with `rename_to` the column in its new type has its new name from expand on: leave out `temp_column`",
            );
        }
        if self.rename_to.as_deref() == Some(self.column.as_str()) {
            problems.add(
                FieldPath::of("rename_to"),
                "the new name is the same as the old one",
            );
        }
        if self.fill.is_some() && self.not_null != Some(true) {
            problems.add(
                FieldPath::of("fill"),
                "`fill` replaces NULLs for a NOT NULL column: add `not_null = true`",
            );
        }
    }

    fn data_checks(&self, ctx: &Ctx<'_>) -> Vec<DataCheck> {
        let nullable = ctx.column(&self.column).is_some_and(|c| !c.not_null);
        if self.not_null == Some(true) && self.fill.is_none() && nullable {
            vec![DataCheck::nulls(
                FieldPath::of("not_null"),
                &self.column,
                " (give `fill` to write a value into them)",
            )]
        } else {
            Vec::new()
        }
    }

    fn effects(&self) -> Effects {
        Effects {
            creates: vec![NewColumn {
                name: self.temp(),
                type_name: Some(self.type_name.clone()),
                type_of: None,
                visible: self.rename_to.is_some(),
                field: FieldPath::of(if self.rename_to.is_some() {
                    "rename_to"
                } else if self.temp_column.is_some() {
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
        if let Some(relax) = self.relax(ctx) {
            let mut own = Problems::default();
            relax.check_catalog(ctx, &mut own);
            for p in own.0 {
                problems.add(FieldPath::of("not_null"), p.message);
            }
        }
    }

    fn removal(&self) -> Removal {
        Removal::Carried
    }

    fn indexes(&self, ctx: &Ctx<'_>) -> Vec<IndexBuild> {
        self.carried(ctx).indexes
    }

    fn expressions(&self, ctx: &Ctx<'_>) -> Vec<ExprCheck> {
        let mut out = vec![ExprCheck::Value {
            field: FieldPath::of(if self.up.is_some() { "up" } else { "type" }),
            expr: self.up_expr(),
            type_name: self.type_name.clone(),
        }];
        if let Some(fill) = &self.fill {
            out.push(ExprCheck::Value {
                field: FieldPath::of("fill"),
                expr: fill.clone(),
                type_name: self.type_name.clone(),
            });
        }
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
        let mut out = vec![add_column(ctx, &self.temp(), &self.type_name)];
        // The new release may write NULL, which the trigger copies to the old column.
        out.extend(self.relax(ctx).map(|r| r.expand(ctx)).unwrap_or_default());
        out
    }

    fn constraints(&self, ctx: &Ctx<'_>) -> Vec<Statement> {
        self.not_null(ctx)
            .map(|nn| nn.expand(ctx))
            .into_iter()
            .chain(self.carried(ctx).constraints)
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
            required: self.not_null(ctx).is_some(),
        })
    }

    fn forward(&self, ctx: &Ctx<'_>) -> Option<Forward> {
        self.sync(ctx)?.two_way_forward()
    }

    fn contract(&self, ctx: &Ctx<'_>) -> Contract {
        let column = Ident::new(self.final_name());
        let carried = self.carried(ctx);
        let mut switch = carried.before_drop;
        switch.push(drop_column(ctx, &self.column));
        if self.rename_to.is_none() {
            switch.push(Statement::new(
                LockLevel::AccessExclusive,
                ctx.alter(format_args!(
                    "RENAME COLUMN {} TO {column}",
                    Ident::new(self.temp())
                )),
            ));
        }
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
        let carried = self.carried(ctx);
        let mut statements = carried.rollback;
        statements.push(drop_column(ctx, &self.temp()));
        let relaxed = self.relax(ctx).map(|r| r.rollback(ctx)).unwrap_or_default();
        Rollback {
            indexes: carried.rollback_indexes,
            statements,
            ..relaxed
        }
    }
}

impl ChangeType {
    /// `not_null = false` on a NOT NULL column: the old column is made nullable at expand,
    /// as `drop_not_null` does.
    fn relax(&self, ctx: &Ctx<'_>) -> Option<DropNotNull> {
        (self.not_null == Some(false) && self.old_not_null(ctx)).then(|| DropNotNull {
            column: self.column.clone(),
        })
    }

    fn down_expr(&self) -> String {
        self.down
            .clone()
            .unwrap_or_else(|| Ident::new(self.temp()).to_string())
    }

    fn new_default(&self, ctx: &Ctx<'_>) -> Option<String> {
        match &self.default {
            Some(NewDefault::Expr(d)) => Some(d.clone()),
            Some(NewDefault::Drop) => None,
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
