//! The expand phase: additive DDL in one metadata-only transaction (the undo table, the
//! operations' new columns, and the NOT VALID constraints when no trigger follows), then the
//! statements PostgreSQL runs only outside a transaction, then each index built concurrently in
//! its own step.

use super::{ensure_schema, Parts, Step, StepMode, Undo, BYPASS_SETTING};
use crate::ops::{IndexBuild, LockLevel, Statement};
use crate::sql::{dollar_quote, literal, qualified_list, Ident};

/// The expand phase.
pub(super) fn steps(parts: &Parts<'_>) -> Vec<Step> {
    let mut expand_sql: Vec<Statement> = Vec::new();
    if let Some(u) = &parts.undo {
        expand_sql.extend(create_undo_table(parts, u));
        expand_sql.extend(save_undo(parts, u));
    }
    // What the expand transaction does, in the operations' own words.
    let mut expand_what: Vec<String> = Vec::new();
    if parts.undo.is_some() {
        expand_what.push("create the undo table and its trigger".to_string());
    }
    for (op, c) in &parts.ops {
        let sql = op.expand(c);
        if !sql.is_empty() {
            expand_what.push(op.summary());
        }
        expand_sql.extend(sql);
    }
    let mut expand_steps = Vec::new();
    if !expand_sql.is_empty() {
        expand_steps.push(Step {
            description: String::new(),
            mode: StepMode::Transaction,
            statements: expand_sql,
        });
    }
    for (op, c) in &parts.ops {
        for statement in op.standalone(c) {
            expand_steps.push(Step {
                description: format!("{}, outside a transaction", op.summary()),
                mode: StepMode::NoTransaction,
                statements: vec![statement],
            });
        }
    }
    for (op, c) in &parts.ops {
        for IndexBuild { name, create } in op.indexes(c) {
            expand_steps.push(Step {
                description: format!("build index {} concurrently", name.name),
                mode: StepMode::ConcurrentIndex { index: name },
                statements: vec![Statement::new(LockLevel::ShareUpdateExclusive, create)],
            });
        }
    }

    // NOT VALID constraints: right after the trigger when there is one (see
    // `Operation::constraints` and the dual-write phase), else at the end of expand.
    let constraints = parts.constraints();
    if parts.syncs.is_empty() && !constraints.is_empty() {
        for (op, c) in &parts.ops {
            if !op.constraints(c).is_empty() {
                expand_what.push(format!("{} (NOT VALID)", op.summary()));
            }
        }
        match expand_steps.first_mut() {
            Some(step) if step.mode == StepMode::Transaction => step.statements.extend(constraints),
            _ => expand_steps.insert(
                0,
                Step {
                    description: String::new(),
                    mode: StepMode::Transaction,
                    statements: constraints,
                },
            ),
        }
    }
    if let Some(step) = expand_steps
        .first_mut()
        .filter(|s| s.mode == StepMode::Transaction)
    {
        step.description = format!("{}, metadata only", expand_what.join("; "));
    }
    expand_steps
}

/// The state schema (when missing), the type of one saved row (the key, then the value before
/// and after the backfill of each column rewritten in place, in the columns' types during the
/// transition) and the undo table `u` of arrays of it, one row per chunk in the order written.
fn create_undo_table(parts: &Parts<'_>, u: &Undo) -> [Statement; 3] {
    let table = parts.table;
    let mut cols: Vec<String> = parts
        .catalog
        .key
        .iter()
        .map(|k| {
            format!(
                "{} {}",
                Ident::new(k),
                table
                    .column(k)
                    .map(|c| c.type_name.as_str())
                    .unwrap_or("text")
            )
        })
        .collect();
    for c in &parts.in_place {
        let t = table
            .column(c.column.as_str())
            .map(|c| c.type_name.clone())
            .unwrap_or_else(|| "text".to_string());
        cols.push(format!("{} {t}", c.before));
        cols.push(format!("{} {t}", c.after));
    }
    // `CREATE TYPE` has no `IF NOT EXISTS`: guarded so that the step can run again.
    let create_type = format!("CREATE TYPE {} AS ({})", u.row_type, cols.join(", "));
    [
        ensure_schema(&u.table.schema),
        Statement::new(
            LockLevel::None,
            format!(
                "DO {}",
                dollar_quote(
                    "bf_undo_type",
                    &format!(
                        " BEGIN IF to_regtype({}) IS NULL THEN EXECUTE {}; END IF; END ",
                        literal(&u.row_type.to_string()),
                        literal(&create_type)
                    )
                )
            ),
        ),
        Statement::new(
            LockLevel::None,
            format!(
                "CREATE TABLE IF NOT EXISTS {} (\"n\" bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \"rows\" {}[] NOT NULL)",
                u.table, u.row_type
            ),
        ),
    ]
}

/// The transition tables of the undo trigger: the rows a statement changed, before and after.
const OLD_ROWS: &str = "_bf_old";
const NEW_ROWS: &str = "_bf_new";

/// The undo trigger ([`Undo`]) and its function: after each `UPDATE` statement run with the
/// plan's bypass (the backfill's own), one row in the undo table with the statement's changed
/// rows, each as its key and the value before and after of every column rewritten in place.
/// The before and after rows are matched by key, which the backfill never rewrites (the plan
/// check refuses it). The function names no plan text: only identifiers.
pub(super) fn save_undo(parts: &Parts<'_>, u: &Undo) -> [Statement; 2] {
    let mut saved = vec![qualified_list(OLD_ROWS, &parts.key)];
    for c in &parts.in_place {
        saved.push(format!(
            "{OLD_ROWS}.{col}, {NEW_ROWS}.{col}",
            col = c.column
        ));
    }
    let body = format!(
        "\nBEGIN\n  INSERT INTO {table} (\"rows\")\n  SELECT array_agg(ROW({saved})::{row_type})\n    FROM {OLD_ROWS} JOIN {NEW_ROWS} ON ROW({okeys}) = ROW({nkeys})\n  HAVING count(*) > 0;\n  RETURN NULL;\nEND;\n",
        table = u.table,
        saved = saved.join(", "),
        row_type = u.row_type,
        okeys = qualified_list(OLD_ROWS, &parts.key),
        nkeys = qualified_list(NEW_ROWS, &parts.key),
    );
    [
        Statement::new(
            LockLevel::None,
            format!(
                "CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS {}",
                u.function,
                dollar_quote("bf_undo_save", &body)
            ),
        ),
        Statement::new(
            LockLevel::ShareRowExclusive,
            format!(
                "CREATE TRIGGER {} AFTER UPDATE ON {} REFERENCING OLD TABLE AS {OLD_ROWS} NEW TABLE AS {NEW_ROWS} FOR EACH STATEMENT WHEN (current_setting({}, true) = {}) EXECUTE FUNCTION {}()",
                u.trigger,
                parts.catalog.name,
                literal(BYPASS_SETTING),
                literal(&parts.plan.name),
                u.function
            ),
        ),
    ]
}
