//! The rollback, allowed until contract starts: drop the indexes concurrently, then the trigger,
//! constraints and new columns in one transaction, then restore the values the backfill changed
//! in place where the application has not changed them since.

use super::{BackfillSpec, Parts, Step, StepMode, ROW};
use crate::ops::{LockLevel, Statement, TableChange};
use crate::sql::{dollar_quote, literal, QualifiedName};

/// The rollback steps.
pub(super) fn steps(parts: &Parts<'_>, backfill: Option<&BackfillSpec>) -> Vec<Step> {
    // A plan that creates its table rolls back by dropping it: what the operations after
    // `create_table` added to it (indexes, foreign keys) goes with it, and their own undo would
    // fail once the table is gone (abort run twice).
    if let Some((op, c)) = parts
        .ops
        .iter()
        .find(|(op, _)| op.table_change() == Some(TableChange::Create))
    {
        return vec![Step {
            description: "drop the new table, metadata only".to_string(),
            mode: StepMode::Transaction,
            statements: op.rollback(c).statements,
        }];
    }
    let mut rollback = Vec::new();
    for (op, c) in parts.ops.iter().rev() {
        for index in op.rollback(c).indexes {
            rollback.push(Step {
                description: format!("drop index {} concurrently", index.name),
                mode: StepMode::NoTransaction,
                statements: vec![Statement::new(
                    LockLevel::ShareUpdateExclusive,
                    format!("DROP INDEX CONCURRENTLY IF EXISTS {index}"),
                )],
            });
        }
    }
    // The trigger and the constraints go first: restored values may break a NOT VALID check,
    // and with the trigger gone the restore needs no bypass. The undo table goes last.
    let mut undo_ddl = Vec::new();
    if !parts.syncs.is_empty() {
        undo_ddl.push(parts.drop_trigger());
    }
    for (op, c) in parts.ops.iter().rev() {
        undo_ddl.extend(op.rollback(c).statements);
    }
    if !parts.syncs.is_empty() {
        undo_ddl.push(parts.drop_function());
    }
    if !undo_ddl.is_empty() {
        let renames = parts
            .ops
            .iter()
            .any(|(op, _)| matches!(op.table_change(), Some(TableChange::Rename { .. })));
        rollback.push(Step {
            description: if renames {
                "drop the view under the old name and rename the table back, metadata only"
            } else {
                "drop the trigger, new columns and constraints, metadata only"
            }
            .to_string(),
            mode: StepMode::Transaction,
            statements: undo_ddl,
        });
    }
    if let (Some(b), Some(u)) = (backfill, &parts.undo) {
        rollback.push(restore(b, u));
    }
    rollback
}

/// Puts back the values the backfill rewrote in place, from the undo table `u`, except where
/// the application has written the row since (the value is no longer the one the backfill
/// left); then drops the undo table.
fn restore(b: &BackfillSpec, u: &QualifiedName) -> Step {
    let sets: Vec<String> = b
        .in_place
        .iter()
        .map(|c| {
            format!(
                "{col} = CASE WHEN {ROW}.{col} IS NOT DISTINCT FROM _bf_undo.{after} THEN _bf_undo.{before} ELSE {ROW}.{col} END",
                col = c.column,
                after = c.after,
                before = c.before
            )
        })
        .collect();
    Step {
        description: "restore the values the backfill changed in place (unless the application changed them since), then drop the undo data".to_string(),
        mode: StepMode::Transaction,
        statements: vec![
            // Guarded so that a rollback interrupted after this step can run again.
            Statement::new(
                LockLevel::RowExclusive,
                format!(
                    "DO {}",
                    dollar_quote(
                        "bf_undo",
                        &format!(
                            " BEGIN IF to_regclass({}) IS NOT NULL THEN EXECUTE {}; END IF; END ",
                            literal(&u.to_string()),
                            literal(&format!(
                                "UPDATE {} AS {ROW} SET {} FROM {u} AS _bf_undo WHERE {}",
                                b.table,
                                sets.join(", "),
                                b.key_match("_bf_undo")
                            ))
                        )
                    )
                ),
            ),
            Statement::new(LockLevel::None, format!("DROP TABLE IF EXISTS {u}")),
        ],
    }
}
