//! `drop_not_null`: `ALTER COLUMN ... DROP NOT NULL` at expand. It relaxes what the table
//! accepts, so it goes before the new release runs (that release may write NULLs); it is
//! metadata only (`ACCESS EXCLUSIVE` for an instant under `lock_timeout`).
//!
//! Rollback puts NOT NULL back without a long lock, the way `set_not_null` adds it (see
//! [`super::NotNullViaCheck`]): a `CHECK (column IS NOT NULL) NOT VALID` (instant), its
//! `VALIDATE` in a transaction of its own (a scan under `SHARE UPDATE EXCLUSIVE`: reads and
//! writes go on), then `SET NOT NULL`, which PostgreSQL proves from the validated check without
//! a scan, and the check is dropped. When rows written meanwhile hold NULL the validation fails
//! and so does `abort`, naming the check: give those rows a value and run `abort` again.

use serde::Deserialize;

use super::{
    column_exists, constraint_exists, guarded, use_of, Ctx, Effects, LockLevel, NotNullViaCheck,
    Operation, Problems, Rollback, Statement,
};
use crate::diagnostics::FieldPath;
use crate::sql::Ident;

/// `kind = "drop_not_null"`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DropNotNull {
    /// The column.
    pub column: String,
}

impl Operation for DropNotNull {
    fn kind(&self) -> &'static str {
        "drop_not_null"
    }

    fn attaches(&self) -> bool {
        true
    }

    fn summary(&self) -> String {
        format!("drop NOT NULL on {}", Ident::new(&self.column))
    }

    fn check(&self, problems: &mut Problems) {
        problems.require_text(FieldPath::of("column"), &self.column);
    }

    fn check_catalog(&self, ctx: &Ctx<'_>, problems: &mut Problems) {
        let Some(col) = ctx.column(&self.column) else {
            return;
        };
        let column = Ident::new(&self.column);
        let table = ctx.qualified();
        let field = FieldPath::of("column");
        if !col.not_null {
            problems.add(
                field,
                format!("column {column} of {table} is already nullable"),
            );
        } else if col.identity.is_some() {
            problems.add(
                field,
                format!(
                    "column {column} of {table} is an identity column, which is always NOT NULL"
                ),
            );
        } else if let Some(pk) = ctx
            .table
            .constraints
            .iter()
            .find(|c| c.kind == 'p' && !c.foreign && c.columns.contains(&self.column))
        {
            problems.add(
                field,
                format!(
                    "column {column} of {table} is part of the primary key {}, which keeps it NOT NULL: drop the primary key first, in an earlier plan",
                    Ident::new(&pk.name)
                ),
            );
        }
    }

    fn effects(&self) -> Effects {
        Effects {
            reads: vec![use_of(FieldPath::of("column"), &self.column)],
            ..Effects::default()
        }
    }

    fn expand(&self, ctx: &Ctx<'_>) -> Vec<Statement> {
        vec![Statement::new(
            LockLevel::AccessExclusive,
            ctx.alter(format_args!(
                "ALTER COLUMN {} DROP NOT NULL",
                Ident::new(&self.column)
            )),
        )]
    }

    fn rollback(&self, ctx: &Ctx<'_>) -> Rollback {
        let nn = NotNullViaCheck::new(ctx, &self.column);
        let check = constraint_exists(ctx, nn.constraint.as_str(), None);
        // Only while the column is nullable: when expand never ran, or the rollback finished
        // already, nothing is added.
        let nullable = column_exists(ctx, &self.column, Some("NOT attnotnull"));
        Rollback {
            put_back: vec![guarded(
                LockLevel::AccessExclusive,
                &format!("{nullable} AND NOT {check}"),
                &[nn.expand(ctx).sql],
            )],
            validate: vec![guarded(
                LockLevel::ShareUpdateExclusive,
                &check,
                &[nn.validate(ctx).sql],
            )],
            after_validate: vec![guarded(
                LockLevel::AccessExclusive,
                &check,
                &nn.switch(ctx)
                    .into_iter()
                    .map(|s| s.sql)
                    .collect::<Vec<_>>(),
            )],
            ..Rollback::default()
        }
    }
}
