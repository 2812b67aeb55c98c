//! `sql`: the escape hatch. One statement the plan gives as it is, run in the expand
//! transaction (with `down`, run by abort and rollback) or in the contract's switch
//! transaction, under `lock_timeout` like every statement. `backfill` does not know what it
//! locks or changes: `validate`, `plan` and `run` say so, and `plan` shows it as unchecked.

use serde::Deserialize;

use super::{Contract, Ctx, Effects, LockLevel, Operation, Problems, Rollback, Statement};
use crate::diagnostics::FieldPath;
use crate::sql::{one_line, statement_count};

/// When a `sql` operation runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SqlPhase {
    /// In the expand transaction (needs `down`).
    #[default]
    Expand,
    /// In the contract's switch transaction (cannot be undone).
    Contract,
}

/// `kind = "sql"`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sql {
    /// `expand` (default) or `contract`.
    #[serde(default)]
    pub phase: SqlPhase,
    /// The statement.
    pub up: String,
    /// Its undo, run by abort and rollback; required at expand.
    pub down: Option<String>,
}

/// Checks that `text` is exactly one statement.
fn one_statement(problems: &mut Problems, field: FieldPath, text: &str) {
    if text.trim().is_empty() {
        problems.add(field, "must not be empty");
        return;
    }
    match statement_count(text) {
        None => problems.add(
            field,
            "a quote, dollar quote or comment is not closed",
        ),
        Some(0) => problems.add(field, "holds no statement"),
        Some(1) => {}
        Some(n) => problems.add(
            field,
            format!("holds {n} statements; give each its own `sql` operation (one statement each, so each one's failure is named)"),
        ),
    }
}

impl Sql {
    fn phase_name(&self) -> &'static str {
        match self.phase {
            SqlPhase::Expand => "expand",
            SqlPhase::Contract => "contract",
        }
    }
}

impl Operation for Sql {
    fn kind(&self) -> &'static str {
        "sql"
    }

    fn summary(&self) -> String {
        let text = one_line(self.up.trim());
        let short: String = text.chars().take(60).collect();
        format!(
            "unchecked SQL: {short}{}",
            if short.len() < text.len() { "..." } else { "" }
        )
    }

    fn check(&self, problems: &mut Problems) {
        one_statement(problems, FieldPath::of("up"), &self.up);
        match (self.phase, &self.down) {
            (SqlPhase::Expand, None) => problems.add(
                FieldPath::of("down"),
                "is required with phase = \"expand\": abort and rollback run it to undo `up`",
            ),
            (SqlPhase::Expand, Some(d)) => one_statement(problems, FieldPath::of("down"), d),
            (SqlPhase::Contract, Some(_)) => problems.add(
                FieldPath::of("down"),
                "a contract cannot be undone (abort and rollback stop before it); remove `down`, or use phase = \"expand\"",
            ),
            (SqlPhase::Contract, None) => {}
        }
    }

    fn effects(&self) -> Effects {
        Effects::default()
    }

    fn notice(&self) -> Option<String> {
        Some(format!(
            "runs SQL that backfill does not check, in the {} transaction under lock_timeout: what it locks and changes is its own",
            self.phase_name()
        ))
    }

    fn expand(&self, _ctx: &Ctx<'_>) -> Vec<Statement> {
        match self.phase {
            // Its lock is unknown: shown as the strongest.
            SqlPhase::Expand => vec![Statement::new(LockLevel::AccessExclusive, self.up.trim())],
            SqlPhase::Contract => Vec::new(),
        }
    }

    fn contract(&self, _ctx: &Ctx<'_>) -> Contract {
        match self.phase {
            SqlPhase::Contract => Contract {
                switch: vec![Statement::new(LockLevel::AccessExclusive, self.up.trim())],
                ..Contract::default()
            },
            SqlPhase::Expand => Contract::default(),
        }
    }

    fn rollback(&self, _ctx: &Ctx<'_>) -> Rollback {
        match (&self.phase, &self.down) {
            (SqlPhase::Expand, Some(down)) => Rollback {
                statements: vec![Statement::new(LockLevel::AccessExclusive, down.trim())],
                ..Rollback::default()
            },
            _ => Rollback::default(),
        }
    }
}
