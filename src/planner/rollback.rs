//! The rollback, allowed until contract starts: drop the indexes concurrently and build again
//! those of dropped constraints, then the trigger, constraints and new columns in one
//! transaction with what expand changed put back, then restore the values the backfill changed
//! in place where the application has not changed them since, then validate what was put back
//! `NOT VALID` and must be valid again.

use super::{BackfillSpec, Parts, Step, StepMode, Undo, ROW};
use crate::ops::{IndexBuild, LockLevel, Rollback, Statement, TableChange};
use crate::sql::{dollar_quote, ident_list, literal, qualified_list, Ident};

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
    // In reverse plan order: each operation's undo sees the table as the later ones left it.
    let undo: Vec<(String, Rollback)> = parts
        .ops
        .iter()
        .rev()
        .map(|(op, c)| (op.summary(), op.rollback(c)))
        .collect();
    let mut rollback = Vec::new();
    for (_, r) in &undo {
        rollback.extend(r.indexes.iter().map(super::drop_index_step));
    }
    for (_, r) in &undo {
        for IndexBuild { name, create } in &r.rebuild {
            rollback.push(Step {
                description: format!("build index {} again concurrently", name.name),
                mode: StepMode::ConcurrentIndex {
                    index: name.clone(),
                },
                statements: vec![Statement::new(
                    LockLevel::ShareUpdateExclusive,
                    create.clone(),
                )],
            });
        }
    }
    // The trigger and the constraints go first: restored values may break a NOT VALID check,
    // and with the trigger gone the restore needs no bypass. The undo table goes last.
    let mut undo_ddl = parts.drop_triggers();
    let mut drops = !undo_ddl.is_empty();
    let mut put_back = Vec::new();
    for (summary, r) in &undo {
        drops |= !r.statements.is_empty();
        undo_ddl.extend(r.statements.iter().cloned());
        if !r.put_back.is_empty() {
            put_back.push(summary.as_str());
            undo_ddl.extend(r.put_back.iter().cloned());
        }
    }
    if !parts.syncs.is_empty() {
        undo_ddl.push(parts.drop_function());
    }
    if !undo_ddl.is_empty() {
        let renames = parts
            .ops
            .iter()
            .any(|(op, _)| matches!(op.table_change(), Some(TableChange::Rename { .. })));
        let what = match (renames, drops, put_back.is_empty()) {
            (true, _, _) => {
                "drop the view under the old name and rename the table back".to_string()
            }
            (false, false, false) => format!("undo: {}", put_back.join("; ")),
            (false, true, false) => format!(
                "drop the trigger, new columns and constraints; undo: {}",
                put_back.join("; ")
            ),
            (false, _, true) => "drop the trigger, new columns and constraints".to_string(),
        };
        rollback.push(Step {
            description: format!("{what}, metadata only"),
            mode: StepMode::Transaction,
            statements: undo_ddl,
        });
    }
    if let (Some(b), Some(u)) = (backfill, &parts.undo) {
        rollback.push(restore(b, u));
    }
    // Once the values are back: what was put back NOT VALID and must hold for every row.
    for (summary, r) in &undo {
        for v in &r.validate {
            rollback.push(Step {
                description: format!(
                    "validate what undoing {summary} put back; scans without blocking writes"
                ),
                mode: StepMode::Transaction,
                statements: vec![v.clone()],
            });
        }
    }
    let after: Vec<Statement> = undo
        .iter()
        .flat_map(|(_, r)| r.after_validate.iter().cloned())
        .collect();
    if !after.is_empty() {
        rollback.push(Step {
            description:
                "SET NOT NULL again, proven by the validated checks (no scan), metadata only"
                    .to_string(),
            mode: StepMode::Transaction,
            statements: after,
        });
    }
    rollback
}

/// Puts back the values the backfill rewrote in place, from the undo table `u`, except where
/// the application has written the row since (the value is no longer the one the backfill
/// left); then drops the undo table and its row type. A row saved by more than one chunk (a
/// recheck after the backfill) goes back to the value before the first, if it still holds
/// the value after the last.
fn restore(b: &BackfillSpec, u: &Undo) -> Step {
    let sets: Vec<String> = b
        .in_place
        .iter()
        .map(|c| {
            format!(
                "{col} = CASE WHEN {ROW}.{col} IS NOT DISTINCT FROM _bf_after.{after} THEN _bf_undo.{before} ELSE {ROW}.{col} END",
                col = c.column,
                after = c.after,
                before = c.before
            )
        })
        .collect();
    let keys = qualified_list("_bf_r", &b.key);
    // Each saved row with the chunk it came from, one `DISTINCT ON` for the first `before`
    // and one for the last `after` of each key.
    let saved = |columns: Vec<&Ident>, order: &str| {
        format!(
            "SELECT DISTINCT ON ({keys}) {keys}, {} FROM {} AS _bf_c CROSS JOIN LATERAL unnest(_bf_c.\"rows\") AS _bf_r ORDER BY {keys}, _bf_c.\"n\" {order}",
            columns
                .iter()
                .map(|c| format!("_bf_r.{c}"))
                .collect::<Vec<_>>()
                .join(", "),
            u.table
        )
    };
    let first = saved(b.in_place.iter().map(|c| &c.before).collect(), "ASC");
    let last = saved(b.in_place.iter().map(|c| &c.after).collect(), "DESC");
    let mut statements = vec![
        // Guarded so that a rollback interrupted after this step can run again.
        Statement::new(
            LockLevel::RowExclusive,
            format!(
                "DO {}",
                dollar_quote(
                    "bf_undo",
                    &format!(
                        " BEGIN IF to_regclass({}) IS NOT NULL THEN EXECUTE {}; END IF; END ",
                        literal(&u.table.to_string()),
                        literal(&format!(
                            "UPDATE {} AS {ROW} SET {} FROM ({first}) AS _bf_undo JOIN ({last}) AS _bf_after USING ({}) WHERE {}",
                            b.table,
                            sets.join(", "),
                            ident_list(&b.key),
                            b.key_match("_bf_undo")
                        ))
                    )
                )
            ),
        ),
    ];
    statements.extend(super::drop_undo(u));
    Step {
        description: "restore the values the backfill changed in place (unless the application changed them since), then drop the undo data".to_string(),
        mode: StepMode::Transaction,
        statements,
    }
}
