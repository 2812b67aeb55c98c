//! The phase planner: a plan and its table's catalog in, a [`Schedule`] out. Pure: the same
//! input gives the same SQL, so `backfill plan --sql` shows exactly what `run` executes and the
//! tests can read it without a database.
//!
//! [`build`] derives what the phases share once (`Parts`: the operations over the table as it
//! is during the transition, the sync and backfill rules, the names of the plan's objects), then
//! asks one builder per phase for its steps: `expand`, `dual_write`, `backfill` (which
//! also holds [`BackfillSpec`] and its SQL), `contract` and `rollback`; `transition` holds
//! the transition table and the checks of a plan against the catalog.

mod backfill;
mod contract;
mod dual_write;
mod expand;
mod rollback;
mod transition;

use serde::Serialize;

pub use self::backfill::{BackfillSpec, InPlace, Undo};
pub use self::transition::{
    catalog_before_expand, check_catalog, missing_after_expand, transition_table,
};
use crate::db::catalog::TableInfo;
use crate::ops::{Ctx, Forward, LockLevel, Operation, Statement, Sync};
use crate::plan::{FieldPath, Plan};
use crate::sql::{dollar_quote, literal, object_name, Ident, QualifiedName};
use crate::version::Release;

/// The session setting the backfill sets to its plan's name: that plan's dual-write trigger
/// skips rows the backfill writes (the backfill computes their new columns itself, and must
/// never make the trigger run the reverse mapping), while the triggers of other plans on the
/// same table still see the change.
pub const BYPASS_SETTING: &str = "backfill.bypass";

/// Alias of the row being backfilled in generated SQL.
const ROW: &str = "_bf_t";
/// Alias of the computed row.
const NEW_ROW: &str = "_bf_n";

/// Planner settings that do not come from the plan.
#[derive(Debug, Clone)]
pub struct PlannerOptions {
    /// The schema holding `backfill`'s own tables (undo data; state in a later release).
    pub state_schema: String,
}

impl Default for PlannerOptions {
    fn default() -> Self {
        PlannerOptions {
            state_schema: "backfill".to_string(),
        }
    }
}

/// The four phases, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Additive DDL.
    Expand,
    /// Install the sync trigger.
    DualWrite,
    /// Move the data.
    Backfill,
    /// Validate, switch, clean up.
    Contract,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Phase::Expand => "expand",
            Phase::DualWrite => "dual-write",
            Phase::Backfill => "backfill",
            Phase::Contract => "contract",
        })
    }
}

/// How a step's statements run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum StepMode {
    /// All statements in one transaction under `lock_timeout`.
    Transaction,
    /// One `CREATE INDEX CONCURRENTLY`, outside a transaction; an INVALID leftover of the same
    /// name is dropped first.
    ConcurrentIndex {
        /// The index.
        #[serde(serialize_with = "display")]
        index: QualifiedName,
    },
    /// One statement outside a transaction (`DROP INDEX CONCURRENTLY`).
    NoTransaction,
    /// The backfill: run by the engine in chunks; the statement shown is the whole-table form.
    Backfill,
}

/// One step of a phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// What it does, for humans.
    pub description: String,
    /// How it runs.
    #[serde(flatten)]
    pub mode: StepMode,
    /// The statements, with their locks.
    pub statements: Vec<Statement>,
}

/// A phase and its steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PhasePlan {
    /// Which phase.
    pub phase: Phase,
    /// The release from which it is due (`None`: no gate).
    #[serde(serialize_with = "display_opt")]
    pub due: Option<Release>,
    /// Its steps (may be empty: nothing to do in this phase).
    pub steps: Vec<Step>,
}

/// Everything `run` executes for a plan, phase by phase, plus the rollback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Schedule {
    /// The plan's name.
    pub plan: String,
    /// The table.
    #[serde(serialize_with = "display")]
    pub table: QualifiedName,
    /// The phases in order.
    pub phases: Vec<PhasePlan>,
    /// The backfill, when the plan moves data.
    pub backfill: Option<BackfillSpec>,
    /// Undo expand and dual-write (allowed until contract starts).
    pub rollback: Vec<Step>,
    /// The rows the table holds, as the catalog estimates.
    pub row_estimate: i64,
    /// For a plan that rewrites columns in place: its undo trigger ([`Undo`]) and the step that
    /// installs it. Expand installs it; the runner checks for it before the backfill, and
    /// installs it when it is missing (a backfill whose expand ran under an earlier build,
    /// which saved the old values in the chunk statement itself).
    #[serde(skip)]
    pub undo_trigger: Option<(Ident, Step)>,
}

impl Schedule {
    /// The steps of one phase.
    pub fn phase(&self, phase: Phase) -> &[Step] {
        self.phases
            .iter()
            .find(|p| p.phase == phase)
            .map(|p| p.steps.as_slice())
            .unwrap_or(&[])
    }
}

/// The name of the plan's dual-write trigger.
pub fn trigger_name(plan: &Plan) -> Ident {
    trigger_names(plan, &PlannerOptions::default()).1
}

/// The trigger function and trigger of a plan. The function lives in the state schema, beside
/// the plan's other objects: the table's owner then needs no right to create objects in the
/// table's own schema (on PostgreSQL 15 and later nobody but the database owner may create in
/// `public` by default), and a trigger calls its function by identity, so the application's
/// roles need no rights on the state schema.
fn trigger_names(plan: &Plan, options: &PlannerOptions) -> (QualifiedName, Ident) {
    let name = object_name(&[&plan.name, "sync"]);
    (
        QualifiedName::new(options.state_schema.clone(), name.clone()),
        Ident::new(name),
    )
}

/// `CREATE SCHEMA` of the state schema, run only when it does not exist: `CREATE SCHEMA IF NOT
/// EXISTS` checks the right to create schemas before it looks, and a role that uses a schema
/// an administrator created for it has no such right.
/// `DROP INDEX CONCURRENTLY IF EXISTS`, a step of its own outside a transaction (contract's
/// `drop_index`, rollback of an index expand built).
fn drop_index_step(index: &QualifiedName) -> Step {
    Step {
        description: format!("drop index {} concurrently", index.name),
        mode: StepMode::NoTransaction,
        statements: vec![Statement::new(
            LockLevel::ShareUpdateExclusive,
            format!("DROP INDEX CONCURRENTLY IF EXISTS {index}"),
        )],
    }
}

fn ensure_schema(schema: &Ident) -> Statement {
    Statement::new(
        LockLevel::None,
        format!(
            "DO {}",
            dollar_quote(
                "bf_schema",
                &format!(
                    " BEGIN IF to_regnamespace({}) IS NULL THEN EXECUTE {}; END IF; END ",
                    literal(&schema.to_string()),
                    literal(&format!("CREATE SCHEMA {schema}"))
                )
            )
        ),
    )
}

/// Drops the undo trigger's function, the undo table, then its row type (the trigger itself
/// goes with the other triggers, in the transaction that takes the table's lock).
fn drop_undo(u: &Undo) -> [Statement; 3] {
    [
        Statement::new(
            LockLevel::None,
            format!("DROP FUNCTION IF EXISTS {}()", u.function),
        ),
        Statement::new(LockLevel::None, format!("DROP TABLE IF EXISTS {}", u.table)),
        Statement::new(
            LockLevel::None,
            format!("DROP TYPE IF EXISTS {}", u.row_type),
        ),
    ]
}

/// The undo table of a plan and the type of its saved rows.
fn undo_store(plan: &Plan, options: &PlannerOptions) -> Undo {
    Undo {
        table: QualifiedName::new(
            options.state_schema.clone(),
            object_name(&[&plan.name, "undo"]),
        ),
        row_type: QualifiedName::new(
            options.state_schema.clone(),
            object_name(&[&plan.name, "undo", "row"]),
        ),
        function: QualifiedName::new(
            options.state_schema.clone(),
            object_name(&[&plan.name, "undo", "save"]),
        ),
        trigger: Ident::new(object_name(&[&plan.name, "undo", "save"])),
    }
}

/// What the phase builders share, derived once from the plan and its catalog.
struct Parts<'a> {
    /// The plan.
    plan: &'a Plan,
    /// The live catalog, before expand.
    catalog: &'a TableInfo,
    /// The table during the transition: the live columns plus those expand creates.
    table: &'a TableInfo,
    /// Each operation with what it may look at, in plan order.
    ops: Vec<(&'a dyn Operation, Ctx<'a>)>,
    /// The operations' backfill rules, in plan order.
    forwards: Vec<Forward>,
    /// The operations' trigger rules, each with the comment that names its operation.
    syncs: Vec<(String, Sync)>,
    /// The dual-write function, in the state schema.
    function: QualifiedName,
    /// The dual-write trigger.
    trigger: Ident,
    /// The table's key.
    key: Vec<Ident>,
    /// Columns the backfill rewrites in place.
    in_place: Vec<InPlace>,
    /// The undo table, when there are such columns.
    undo: Option<Undo>,
}

impl<'a> Parts<'a> {
    /// `table` is the transition table of `plan` over `catalog`, `paths` the operations' paths.
    fn new(
        plan: &'a Plan,
        catalog: &'a TableInfo,
        table: &'a TableInfo,
        paths: &'a [FieldPath],
        options: &PlannerOptions,
    ) -> Parts<'a> {
        let ops: Vec<(&dyn Operation, Ctx<'_>)> = plan
            .operations
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                (
                    spec.op(),
                    Ctx {
                        plan: &plan.name,
                        table,
                        position: i,
                        path: &paths[i],
                    },
                )
            })
            .collect();
        let forwards: Vec<Forward> = ops.iter().filter_map(|(op, c)| op.forward(c)).collect();
        let syncs: Vec<(String, Sync)> = ops
            .iter()
            .filter_map(|(op, c)| {
                op.sync(c)
                    .map(|s| (format!("{}: {}", c.path, op.summary()), s))
            })
            .collect();
        let (function, trigger) = trigger_names(plan, options);
        let in_place = backfill::in_place_columns(catalog, &forwards);
        let undo = (!in_place.is_empty()).then(|| undo_store(plan, options));
        Parts {
            plan,
            catalog,
            table,
            ops,
            forwards,
            syncs,
            function,
            trigger,
            key: catalog.key_idents(),
            in_place,
            undo,
        }
    }

    /// The operations' NOT VALID constraints, in plan order: in the dual-write transaction after
    /// the trigger when there is one (see `Operation::constraints`), else at the end of expand.
    fn constraints(&self) -> Vec<Statement> {
        self.ops
            .iter()
            .flat_map(|(op, c)| op.constraints(c))
            .collect()
    }

    /// `DROP TRIGGER` of the plan's triggers on the table: the dual-write trigger, then the
    /// undo trigger (contract's switch, rollback). Empty when the plan has neither.
    fn drop_triggers(&self) -> Vec<Statement> {
        let sync = (!self.syncs.is_empty()).then_some(&self.trigger);
        let undo = self.undo.as_ref().map(|u| &u.trigger);
        sync.into_iter()
            .chain(undo)
            .map(|t| {
                Statement::new(
                    LockLevel::AccessExclusive,
                    format!("DROP TRIGGER IF EXISTS {t} ON {}", self.catalog.name),
                )
            })
            .collect()
    }

    /// `DROP FUNCTION` of the plan's trigger function (contract's cleanup, rollback).
    fn drop_function(&self) -> Statement {
        Statement::new(
            LockLevel::None,
            format!("DROP FUNCTION IF EXISTS {}()", self.function),
        )
    }
}

/// Builds the schedule. The catalog must have passed [`check_catalog`].
pub fn build(plan: &Plan, catalog: &TableInfo, options: &PlannerOptions) -> Schedule {
    let table = transition_table(plan, catalog);
    let paths: Vec<FieldPath> = (0..plan.operations.len())
        .map(|i| FieldPath::of("operations").index(i))
        .collect();
    let parts = Parts::new(plan, catalog, &table, &paths, options);
    let backfill = backfill::spec(&parts);
    let phase = |phase, due: &Option<Release>, steps| PhasePlan {
        phase,
        due: due.clone(),
        steps,
    };
    let expand_due = &plan.release.expand;
    Schedule {
        plan: plan.name.clone(),
        table: catalog.name.clone(),
        phases: vec![
            phase(Phase::Expand, expand_due, expand::steps(&parts)),
            phase(Phase::DualWrite, expand_due, dual_write::steps(&parts)),
            phase(
                Phase::Backfill,
                expand_due,
                backfill::steps(backfill.as_ref()),
            ),
            phase(
                Phase::Contract,
                &plan.release.contract,
                contract::steps(&parts),
            ),
        ],
        rollback: rollback::steps(&parts, backfill.as_ref()),
        backfill,
        row_estimate: catalog.row_estimate,
        undo_trigger: parts.undo.as_ref().map(|u| {
            (
                u.trigger.clone(),
                Step {
                    description: format!("install the undo trigger {}", u.trigger),
                    mode: StepMode::Transaction,
                    statements: expand::save_undo(&parts, u).to_vec(),
                },
            )
        }),
    }
}

/// Serializes a name (or any value) as its SQL text.
fn display<T: std::fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// As [`display`], `null` when absent.
fn display_opt<T: std::fmt::Display, S: serde::Serializer>(
    v: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

/// As [`display`], for each item of a list.
fn display_vec<T: std::fmt::Display, S: serde::Serializer>(
    v: &[T],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|x| x.to_string()))
}
