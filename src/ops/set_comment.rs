//! `set_comment`: `COMMENT ON COLUMN` (or `COMMENT ON TABLE` when no column is given) at
//! expand. `COMMENT` takes `SHARE UPDATE EXCLUSIVE`, so reads and writes go on while it runs.
//! The text is a value, but `COMMENT` takes no bind parameter: it goes in as a string literal
//! ([`crate::sql::literal`]). An empty comment removes the comment, as in PostgreSQL. Rollback
//! puts back the comment there was when the plan first ran, or none.

use serde::Deserialize;

use super::{
    column_exists, guarded, use_of, Ctx, Effects, LockLevel, Operation, Problems, Rollback,
    Statement,
};
use crate::diagnostics::FieldPath;
use crate::sql::{literal, Ident};

/// `kind = "set_comment"`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetComment {
    /// The column; the table itself when absent.
    pub column: Option<String>,
    /// The text; empty removes the comment.
    pub comment: String,
}

impl SetComment {
    /// `COMMENT ON ... IS text` (`IS NULL` for `None` or an empty text).
    fn comment_on(&self, ctx: &Ctx<'_>, text: Option<&str>) -> Statement {
        let object = match &self.column {
            Some(c) => format!("COLUMN {}.{}", ctx.qualified(), Ident::new(c)),
            None => format!("TABLE {}", ctx.qualified()),
        };
        let value = match text {
            Some(t) if !t.is_empty() => literal(t),
            _ => "NULL".to_string(),
        };
        Statement::new(
            LockLevel::ShareUpdateExclusive,
            format!("COMMENT ON {object} IS {value}"),
        )
    }
}

impl Operation for SetComment {
    fn kind(&self) -> &'static str {
        "set_comment"
    }

    fn attaches(&self) -> bool {
        true
    }

    fn summary(&self) -> String {
        // The text stays out: summaries describe steps on one line.
        match &self.column {
            Some(c) => format!("set the comment of column {}", Ident::new(c)),
            None => "set the comment of the table".to_string(),
        }
    }

    fn check(&self, problems: &mut Problems) {
        if let Some(c) = &self.column {
            problems.require_text(FieldPath::of("column"), c);
        }
    }

    fn effects(&self) -> Effects {
        Effects {
            reads: self
                .column
                .iter()
                .map(|c| use_of(FieldPath::of("column"), c))
                .collect(),
            ..Effects::default()
        }
    }

    fn expand(&self, ctx: &Ctx<'_>) -> Vec<Statement> {
        vec![self.comment_on(ctx, Some(&self.comment))]
    }

    fn rollback(&self, ctx: &Ctx<'_>) -> Rollback {
        // The comment as it was when the plan first ran.
        let before = match &self.column {
            Some(c) => ctx.column(c).and_then(|c| c.comment.as_deref()),
            None => ctx.table.comment.as_deref(),
        };
        let put_back = self.comment_on(ctx, before);
        let put_back = match &self.column {
            // The column may be one an earlier operation of the plan adds, absent when expand
            // never ran.
            Some(c) => guarded(put_back.lock, &column_exists(ctx, c, None), &[put_back.sql]),
            None => put_back,
        };
        Rollback {
            put_back: vec![put_back],
            ..Rollback::default()
        }
    }
}
