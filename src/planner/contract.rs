//! The contract phase: validations (each its own transaction, weak locks), then one switch
//! transaction (drop the trigger, drop or rename columns, SET NOT NULL through the validated
//! check, attach unique indexes; `rename_column` last), indexes dropped concurrently, then the cleanup of the plan's
//! own objects.

use super::{Parts, Step, StepMode};
use crate::ops::Statement;

/// The contract phase.
pub(super) fn steps(parts: &Parts<'_>) -> Vec<Step> {
    let mut contract_steps = Vec::new();
    let mut switch = Vec::new();
    let mut drops = Vec::new();
    let mut renames = Vec::new();
    switch.extend(parts.drop_triggers());
    for (op, c) in &parts.ops {
        let contract = op.contract(c);
        for v in contract.validate {
            contract_steps.push(Step {
                // Named by its operation: `run` prints it while the scan runs.
                description: format!(
                    "validate for {}; scans without blocking writes",
                    op.summary()
                ),
                mode: StepMode::Transaction,
                statements: vec![v],
            });
        }
        // A column renamed at contract is renamed last: the other operations' statements
        // name it as it is during the transition.
        if op.renames_column().is_some() {
            renames.extend(contract.switch);
        } else {
            switch.extend(contract.switch);
        }
        drops.extend(contract.drop_indexes);
    }
    switch.extend(renames);
    if !switch.is_empty() {
        contract_steps.push(Step {
            description: "switch to the new schema, metadata only".to_string(),
            mode: StepMode::Transaction,
            statements: switch,
        });
    }
    contract_steps.extend(drops.iter().map(super::drop_index_step));
    let cleanup = cleanup_statements(parts);
    if !cleanup.is_empty() {
        contract_steps.push(Step {
            description: "drop the sync function and the undo data".to_string(),
            mode: StepMode::Transaction,
            statements: cleanup,
        });
    }
    contract_steps
}

/// The plan's own objects, once the switch no longer needs them: the trigger function and the
/// undo table.
fn cleanup_statements(parts: &Parts<'_>) -> Vec<Statement> {
    let mut out = Vec::new();
    if !parts.syncs.is_empty() {
        out.push(parts.drop_function());
    }
    if let Some(u) = &parts.undo {
        out.extend(super::drop_undo(u));
    }
    out
}
