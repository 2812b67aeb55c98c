//! The phase planner: a plan and its table's catalog in, a [`Schedule`] out. Pure: the same
//! input gives the same SQL, so `backfill plan --sql` shows exactly what `run` executes and the
//! tests can read it without a database.

use serde::Serialize;

use crate::db::catalog::{ColumnInfo, TableInfo};
use crate::ops::{
    Assign, Ctx, Forward, IndexBuild, LockLevel, Operation, Problems, Statement, Sync,
};
use crate::plan::{FieldPath, Plan};
use crate::sql::{
    comment, dollar_quote, ident_list, literal, object_name, qualified_list, Ident, QualifiedName,
};
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

/// A column the backfill rewrites in place, and where its undo table keeps the values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InPlace {
    /// The column.
    #[serde(serialize_with = "display")]
    pub column: Ident,
    /// Undo column with the value before the backfill.
    #[serde(serialize_with = "display")]
    pub before: Ident,
    /// Undo column with the value the backfill wrote.
    #[serde(serialize_with = "display")]
    pub after: Ident,
}

/// What the engine needs to move the data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackfillSpec {
    /// The table.
    #[serde(serialize_with = "display")]
    pub table: QualifiedName,
    /// Key columns, in order.
    #[serde(serialize_with = "display_vec")]
    pub key: Vec<Ident>,
    /// Columns the backfill writes.
    #[serde(serialize_with = "display_vec")]
    pub targets: Vec<Ident>,
    /// A subquery, `LATERAL` to the row aliased `_bf_t`, that computes the row as it should be.
    pub compute: String,
    /// Columns rewritten in place, saved for rollback.
    pub in_place: Vec<InPlace>,
    /// Where those values are saved.
    #[serde(serialize_with = "display_opt")]
    pub undo_table: Option<QualifiedName>,
    /// The value of [`BYPASS_SETTING`] during the backfill: the plan's name.
    pub bypass: String,
}

impl BackfillSpec {
    /// `ROW(a.x, a.y)` over the targets.
    fn targets_of(&self, alias: &str) -> String {
        format!("ROW({})", qualified_list(alias, &self.targets))
    }

    /// `ROW(_bf_t.k1, ...) = ROW(other.k1, ...)`.
    fn key_match(&self, other: &str) -> String {
        format!(
            "ROW({}) = ROW({})",
            qualified_list(ROW, &self.key),
            qualified_list(other, &self.key)
        )
    }

    /// The condition that picks rows out of sync.
    pub fn out_of_sync(&self) -> String {
        format!(
            "{} IS DISTINCT FROM {}",
            self.targets_of(ROW),
            self.targets_of(NEW_ROW)
        )
    }

    /// Data-modifying CTEs (to follow `WITH`) that bring the rows matching `filter` (a
    /// condition over `_bf_t`, e.g. a keyset range) in sync; the last one, `_bf_changed`,
    /// returns one row per row changed.
    ///
    /// Without in-place columns it is a plain `UPDATE` whose new values and out-of-sync test are
    /// correlated subqueries on the row: a row the application changes concurrently is re-read
    /// by PostgreSQL (`EvalPlanQual`) and both are computed again on its latest version, and
    /// only rows that differ are locked and written, so a rerun over finished rows writes
    /// nothing. With in-place columns the old values must be saved to the undo table, which a
    /// plain `UPDATE` cannot return: the rows out of sync are first locked (`FOR UPDATE`, which
    /// also re-reads a concurrently changed row), then updated and saved.
    pub fn update_ctes(&self, filter: &str) -> String {
        let Some(undo) = &self.undo_table else {
            return format!(
                "_bf_changed AS (\n  UPDATE {table} AS {ROW}\n     SET ({cols}) = (SELECT {news} FROM ({compute}) AS {NEW_ROW})\n   WHERE ({filter})\n     AND EXISTS (SELECT FROM ({compute}) AS {NEW_ROW} WHERE {out})\n  RETURNING 1\n)",
                table = self.table,
                cols = ident_list(&self.targets),
                news = qualified_list(NEW_ROW, &self.targets),
                compute = self.compute,
                out = self.out_of_sync(),
            );
        };
        let mut sql = format!(
            "_bf_src AS (\n  SELECT {keys}, {news}{befores}\n    FROM {table} AS {ROW}\n    CROSS JOIN LATERAL ({compute}) AS {NEW_ROW}\n   WHERE ({filter}) AND {out}\n     FOR UPDATE OF {ROW}\n),\n_bf_changed AS (\n  UPDATE {table} AS _bf_u\n     SET {sets}\n    FROM _bf_src\n   WHERE ROW({ukeys}) = ROW({skeys})\n  RETURNING _bf_src.*\n)",
            keys = qualified_list(ROW, &self.key),
            news = qualified_list(NEW_ROW, &self.targets),
            befores = self
                .in_place
                .iter()
                .map(|c| format!(", {ROW}.{} AS {}", c.column, c.before))
                .collect::<String>(),
            table = self.table,
            compute = self.compute,
            out = self.out_of_sync(),
            sets = self
                .targets
                .iter()
                .map(|t| format!("{t} = _bf_src.{t}"))
                .collect::<Vec<_>>()
                .join(", "),
            ukeys = qualified_list("_bf_u", &self.key),
            skeys = qualified_list("_bf_src", &self.key),
        );
        let cols: Vec<Ident> = self
            .key
            .iter()
            .cloned()
            .chain(
                self.in_place
                    .iter()
                    .flat_map(|c| [c.before.clone(), c.after.clone()]),
            )
            .collect();
        let values: Vec<String> = self
            .key
            .iter()
            .map(|k| k.to_string())
            .chain(
                self.in_place
                    .iter()
                    .flat_map(|c| [c.before.to_string(), c.column.to_string()]),
            )
            .collect();
        let keep_latest: Vec<String> = self
            .in_place
            .iter()
            .map(|c| format!("{a} = EXCLUDED.{a}", a = c.after))
            .collect();
        sql.push_str(&format!(
            ",\n_bf_undo AS (\n  INSERT INTO {undo} ({cols})\n  SELECT {values} FROM _bf_changed\n  ON CONFLICT ({key}) DO UPDATE SET {keep}\n)",
            cols = ident_list(&cols),
            values = values.join(", "),
            key = ident_list(&self.key),
            keep = keep_latest.join(", "),
        ));
        sql
    }

    /// One statement that brings the rows matching `filter` in sync (see [`Self::update_ctes`])
    /// and returns the number of rows changed.
    pub fn update_sql(&self, filter: Option<&str>) -> String {
        format!(
            "WITH {}\nSELECT count(*) FROM _bf_changed",
            self.update_ctes(filter.unwrap_or("true"))
        )
    }

    /// Counts rows out of sync (read-only).
    pub fn count_out_of_sync_sql(&self) -> String {
        format!(
            "SELECT count(*) FROM {} AS {ROW} CROSS JOIN LATERAL ({}) AS {NEW_ROW} WHERE {}",
            self.table,
            self.compute,
            self.out_of_sync()
        )
    }

    /// `SELECT set_config(...)`: the statement that makes this plan's trigger skip the
    /// backfill's own writes for the rest of the transaction (`is_local`) or session.
    pub fn bypass_sql(&self, local: bool) -> String {
        format!(
            "SELECT set_config({}, {}, {local})",
            literal(BYPASS_SETTING),
            literal(&self.bypass)
        )
    }
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

/// The table as it is during the transition: the live columns plus those expand creates.
pub fn transition_table(plan: &Plan, catalog: &TableInfo) -> TableInfo {
    let mut table = catalog.clone();
    for op in &plan.operations {
        for c in op.op().effects().creates {
            if table.column(&c.name).is_some() {
                continue;
            }
            let type_name = match (&c.type_name, &c.type_of) {
                (Some(t), _) => t.clone(),
                (None, Some(src)) => table
                    .column(src)
                    .map(|s| s.type_name.clone())
                    .unwrap_or_else(|| "text".to_string()),
                (None, None) => "text".to_string(),
            };
            table.columns.push(ColumnInfo {
                name: c.name,
                type_name,
                not_null: false,
                default: None,
                identity: None,
                generated: false,
            });
        }
    }
    table
}

/// Columns the plan's expand creates.
fn created_columns(plan: &Plan) -> Vec<String> {
    plan.operations
        .iter()
        .flat_map(|o| o.op().effects().creates.into_iter().map(|c| c.name))
        .collect()
}

/// The catalog as it was before the plan's expand ran: without the columns expand creates.
/// The planner builds the same schedule from it after expand as before, so a later process
/// (the backfill, the contract) runs exactly the SQL the first one planned.
pub fn catalog_before_expand(plan: &Plan, catalog: &TableInfo) -> TableInfo {
    let created = created_columns(plan);
    let mut table = catalog.clone();
    table.columns.retain(|c| !created.contains(&c.name));
    table
}

/// Columns the plan's expand creates that the table does not have: non-empty while expand has
/// not run.
pub fn missing_after_expand(plan: &Plan, catalog: &TableInfo) -> Vec<String> {
    created_columns(plan)
        .into_iter()
        .filter(|c| catalog.column(c).is_none())
        .collect()
}

/// The name of the plan's dual-write trigger.
pub fn trigger_name(plan: &Plan) -> Ident {
    trigger_names(plan, &PlannerOptions::default()).1
}

/// Checks the plan against the live catalog of its table: the key, every column named, and
/// each operation's own checks. Type names, expressions and referenced tables need the
/// database and are checked by [`crate::validate`].
///
/// `in_flight`: the plan's expand has run (the catalog passed in is the live one without the
/// columns expand created); the operations' own checks, which are about the catalog before the
/// plan (an index or constraint of that name already exists), are skipped.
pub fn check_catalog(plan: &Plan, catalog: &TableInfo, in_flight: bool) -> Problems {
    let mut problems = Problems::default();
    if catalog.key.is_empty() {
        problems.add(
            FieldPath::of("table"),
            format!(
                "table {} has neither a primary key nor a unique index on NOT NULL columns: the backfill walks the table by key. Add a primary key first",
                catalog.name
            ),
        );
    }
    let transition = transition_table(plan, catalog);
    let mut created_so_far: Vec<String> = Vec::new();
    for (i, spec) in plan.operations.iter().enumerate() {
        let op = spec.op();
        let base = FieldPath::of("operations").index(i);
        let effects = op.effects();
        let exists =
            |name: &str| catalog.column(name).is_some() || created_so_far.iter().any(|c| c == name);
        for c in &effects.creates {
            if catalog.column(&c.name).is_some() {
                problems.add(
                    base.join(&c.field),
                    format!(
                        "column \"{}\" already exists in table {}",
                        c.name, catalog.name
                    ),
                );
            }
        }
        let all_uses = effects.reads.iter().map(|u| (u, false)).chain(
            effects
                .writes
                .iter()
                .chain(effects.removes.iter())
                .map(|u| (u, true)),
        );
        for (u, changes) in all_uses {
            if !exists(&u.name) {
                problems.add(
                    base.join(&u.field),
                    format!(
                        "column \"{}\" does not exist in table {}",
                        u.name, catalog.name
                    ),
                );
                continue;
            }
            if changes && catalog.key.contains(&u.name) {
                problems.add(
                    base.join(&u.field),
                    format!("column \"{}\" is part of the key of {}, which the backfill walks by; it cannot be changed or dropped", u.name, catalog.name),
                );
            }
            if let Some(col) = catalog.column(&u.name) {
                if changes && (col.generated || col.identity == Some('a')) {
                    problems.add(
                        base.join(&u.field),
                        format!(
                            "column \"{}\" of {} is generated; it cannot be written",
                            u.name, catalog.name
                        ),
                    );
                }
            }
        }
        let ctx = Ctx {
            plan: &plan.name,
            table: &transition,
            position: i,
            path: &base,
        };
        let mut own = Problems::default();
        if !in_flight {
            op.check_catalog(&ctx, &mut own);
        }
        for p in own.0 {
            problems.add(base.join(&p.field), p.message);
        }
        created_so_far.extend(effects.creates.into_iter().map(|c| c.name));
    }
    problems
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

/// The undo table of a plan.
fn undo_table(plan: &Plan, options: &PlannerOptions) -> QualifiedName {
    QualifiedName::new(
        options.state_schema.clone(),
        object_name(&[&plan.name, "undo"]),
    )
}

/// Builds the schedule. The catalog must have passed [`check_catalog`].
pub fn build(plan: &Plan, catalog: &TableInfo, options: &PlannerOptions) -> Schedule {
    let table = transition_table(plan, catalog);
    let paths: Vec<FieldPath> = (0..plan.operations.len())
        .map(|i| FieldPath::of("operations").index(i))
        .collect();
    let ops: Vec<(&dyn Operation, Ctx<'_>)> = plan
        .operations
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            (
                spec.op(),
                Ctx {
                    plan: &plan.name,
                    table: &table,
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
    let key = catalog.key_idents();

    // Columns the backfill rewrites in place: live columns (not created by expand).
    let mut in_place: Vec<InPlace> = Vec::new();
    for f in &forwards {
        for a in &f.assign {
            if catalog.column(a.column.as_str()).is_some()
                && !in_place.iter().any(|c| c.column == a.column)
            {
                in_place.push(InPlace {
                    column: a.column.clone(),
                    before: Ident::new(crate::sql::fit_identifier(&format!(
                        "before_{}",
                        a.column.as_str()
                    ))),
                    after: Ident::new(crate::sql::fit_identifier(&format!(
                        "after_{}",
                        a.column.as_str()
                    ))),
                });
            }
        }
    }
    let undo = (!in_place.is_empty()).then(|| undo_table(plan, options));

    // Expand.
    let mut expand_sql: Vec<Statement> = Vec::new();
    if let Some(u) = &undo {
        expand_sql.push(ensure_schema(&u.schema));
        let mut cols: Vec<String> = catalog
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
        for c in &in_place {
            let t = table
                .column(c.column.as_str())
                .map(|c| c.type_name.clone())
                .unwrap_or_else(|| "text".to_string());
            cols.push(format!("{} {t}", c.before));
            cols.push(format!("{} {t}", c.after));
        }
        expand_sql.push(Statement::new(
            LockLevel::None,
            format!(
                "CREATE TABLE IF NOT EXISTS {u} ({}, PRIMARY KEY ({}))",
                cols.join(", "),
                ident_list(&key)
            ),
        ));
    }
    // What the expand transaction does, in the operations' own words.
    let mut expand_what: Vec<String> = Vec::new();
    if undo.is_some() {
        expand_what.push("create the undo table".to_string());
    }
    for (op, c) in &ops {
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
    for (op, c) in &ops {
        for IndexBuild { name, create } in op.indexes(c) {
            expand_steps.push(Step {
                description: format!("build index {} concurrently", name.name),
                mode: StepMode::ConcurrentIndex { index: name },
                statements: vec![Statement::new(LockLevel::ShareUpdateExclusive, create)],
            });
        }
    }

    // NOT VALID constraints: right after the trigger when there is one (see
    // `Operation::constraints`), else at the end of expand.
    let constraints: Vec<Statement> = ops.iter().flat_map(|(op, c)| op.constraints(c)).collect();
    if syncs.is_empty() && !constraints.is_empty() {
        for (op, c) in &ops {
            if !op.constraints(c).is_empty() {
                expand_what.push(format!("{} (NOT VALID)", op.summary()));
            }
        }
        match expand_steps.first_mut() {
            Some(step) if step.mode == StepMode::Transaction => {
                step.statements.extend(constraints.clone())
            }
            _ => expand_steps.insert(
                0,
                Step {
                    description: String::new(),
                    mode: StepMode::Transaction,
                    statements: constraints.clone(),
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

    // Dual-write.
    let mut dual_steps = Vec::new();
    if !syncs.is_empty() {
        dual_steps.push(Step {
            description: format!("install the sync trigger {trigger}"),
            mode: StepMode::Transaction,
            statements: vec![
                ensure_schema(&function.schema),
                Statement::new(
                    LockLevel::None,
                    trigger_function(&function, catalog.alias(), &syncs),
                ),
                Statement::new(
                    LockLevel::ShareRowExclusive,
                    format!(
                        "CREATE TRIGGER {trigger} BEFORE INSERT OR UPDATE ON {} FOR EACH ROW WHEN (current_setting({}, true) IS DISTINCT FROM {}) EXECUTE FUNCTION {function}()",
                        catalog.name,
                        literal(BYPASS_SETTING),
                        literal(&plan.name)
                    ),
                ),
            ]
            .into_iter()
            .chain(constraints)
            .collect(),
        });
    }

    // Backfill.
    let backfill = (!forwards.is_empty()).then(|| {
        let mut targets: Vec<Ident> = Vec::new();
        for f in &forwards {
            for a in &f.assign {
                if !targets.contains(&a.column) {
                    targets.push(a.column.clone());
                }
            }
        }
        let columns: Vec<Ident> = table.columns.iter().map(|c| Ident::new(&c.name)).collect();
        BackfillSpec {
            table: catalog.name.clone(),
            key: key.clone(),
            targets,
            compute: compute_chain(&columns, &forwards, catalog.alias()),
            in_place: in_place.clone(),
            undo_table: undo.clone(),
            bypass: plan.name.clone(),
        }
    });
    let backfill_steps = backfill
        .iter()
        .map(|b| Step {
            description: format!(
                "backfill {} in chunks of rows by key ({})",
                ident_list(&b.targets),
                ident_list(&b.key)
            ),
            mode: StepMode::Backfill,
            statements: vec![Statement::new(LockLevel::RowExclusive, b.update_sql(None))],
        })
        .collect();

    // Contract.
    let mut contract_steps = Vec::new();
    let mut switch = Vec::new();
    if !syncs.is_empty() {
        switch.push(Statement::new(
            LockLevel::AccessExclusive,
            format!("DROP TRIGGER IF EXISTS {trigger} ON {}", catalog.name),
        ));
    }
    for (op, c) in &ops {
        let contract = op.contract(c);
        for v in contract.validate {
            contract_steps.push(Step {
                description: "validate a constraint (scans without blocking writes)".to_string(),
                mode: StepMode::Transaction,
                statements: vec![v],
            });
        }
        switch.extend(contract.switch);
    }
    if !switch.is_empty() {
        contract_steps.push(Step {
            description: "switch to the new schema, metadata only".to_string(),
            mode: StepMode::Transaction,
            statements: switch,
        });
    }
    let cleanup = cleanup_statements(&syncs, &function, undo.as_ref());
    if !cleanup.is_empty() {
        contract_steps.push(Step {
            description: "drop the sync function and the undo data".to_string(),
            mode: StepMode::Transaction,
            statements: cleanup.clone(),
        });
    }

    // Rollback.
    let mut rollback = Vec::new();
    for (op, c) in ops.iter().rev() {
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
    if !syncs.is_empty() {
        undo_ddl.push(Statement::new(
            LockLevel::AccessExclusive,
            format!("DROP TRIGGER IF EXISTS {trigger} ON {}", catalog.name),
        ));
    }
    for (op, c) in ops.iter().rev() {
        undo_ddl.extend(op.rollback(c).statements);
    }
    if !syncs.is_empty() {
        undo_ddl.push(Statement::new(
            LockLevel::None,
            format!("DROP FUNCTION IF EXISTS {function}()"),
        ));
    }
    if !undo_ddl.is_empty() {
        rollback.push(Step {
            description: "drop the trigger, new columns and constraints, metadata only".to_string(),
            mode: StepMode::Transaction,
            statements: undo_ddl,
        });
    }
    if let (Some(b), Some(u)) = (&backfill, &undo) {
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
        rollback.push(Step {
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
        });
    }

    Schedule {
        plan: plan.name.clone(),
        table: catalog.name.clone(),
        phases: vec![
            PhasePlan {
                phase: Phase::Expand,
                due: plan.release.expand.clone(),
                steps: expand_steps,
            },
            PhasePlan {
                phase: Phase::DualWrite,
                due: plan.release.expand.clone(),
                steps: dual_steps,
            },
            PhasePlan {
                phase: Phase::Backfill,
                due: plan.release.expand.clone(),
                steps: backfill_steps,
            },
            PhasePlan {
                phase: Phase::Contract,
                due: plan.release.contract.clone(),
                steps: contract_steps,
            },
        ],
        backfill,
        rollback,
        row_estimate: catalog.row_estimate,
    }
}

fn cleanup_statements(
    syncs: &[(String, Sync)],
    function: &QualifiedName,
    undo: Option<&QualifiedName>,
) -> Vec<Statement> {
    let mut out = Vec::new();
    if !syncs.is_empty() {
        out.push(Statement::new(
            LockLevel::None,
            format!("DROP FUNCTION IF EXISTS {function}()"),
        ));
    }
    if let Some(u) = undo {
        out.push(Statement::new(
            LockLevel::None,
            format!("DROP TABLE IF EXISTS {u}"),
        ));
    }
    out
}

/// `CAST((expr) AS type)`.
fn cast(a: &Assign) -> String {
    format!("CAST(({}) AS {})", a.expr, a.type_name)
}

/// The row as the backfill should leave it: one nested subquery per operation, each aliased
/// with the table's own name so plan expressions read the row by bare column names, each seeing
/// the row as the operations before it left it. PostgreSQL flattens the nesting into plain
/// expressions, so it costs nothing at run time.
fn compute_chain(columns: &[Ident], forwards: &[Forward], alias: &Ident) -> String {
    let mut sql = format!("SELECT {ROW}.*");
    for f in forwards {
        let projection: Vec<String> = columns
            .iter()
            .map(|c| match f.assign.iter().find(|a| &a.column == c) {
                Some(a) => match &f.when {
                    Some(w) => format!("CASE WHEN ({w}) THEN {} ELSE {c} END AS {c}", cast(a)),
                    None => format!("{} AS {c}", cast(a)),
                },
                None => c.to_string(),
            })
            .collect();
        sql = format!("SELECT {} FROM ({sql}) AS {alias}", projection.join(", "));
    }
    sql
}

/// `SELECT e1, e2 INTO NEW."a", NEW."b" FROM (SELECT NEW.*) AS "table";`
fn select_into(assign: &[Assign], when: Option<&str>, alias: &Ident) -> String {
    let values: Vec<String> = assign
        .iter()
        .map(|a| match when {
            Some(w) => format!("CASE WHEN ({w}) THEN {} ELSE {} END", cast(a), a.column),
            None => cast(a),
        })
        .collect();
    let targets: Vec<String> = assign.iter().map(|a| format!("NEW.{}", a.column)).collect();
    format!(
        "SELECT {} INTO {} FROM (SELECT NEW.*) AS {alias};",
        values.join(", "),
        targets.join(", ")
    )
}

fn row_of(record: &str, cols: &[Ident]) -> String {
    format!("ROW({})", qualified_list(record, cols))
}

/// The plan's dual-write function: one block per operation, in plan order, each seeing the row
/// as the blocks before it left it.
fn trigger_function(name: &QualifiedName, alias: &Ident, syncs: &[(String, Sync)]) -> String {
    let mut body = String::new();
    for (what, sync) in syncs {
        body.push_str(&format!("  {}\n", comment(what)));
        match sync {
            Sync::TwoWay { old, new, up, down } => {
                let up = select_into(up, None, alias);
                let down = if down.is_empty() {
                    "NULL;".to_string()
                } else {
                    select_into(down, None, alias)
                };
                body.push_str(&format!(
                    "  IF TG_OP = 'INSERT' THEN\n    -- The old release inserts without the new columns; the new release fills them.\n    IF {new_null} IS NULL THEN\n      {up}\n    ELSE\n      {down}\n    END IF;\n  ELSIF {old_new} IS DISTINCT FROM {old_old} THEN\n    -- The old release wrote: derive the new columns, unless the writer set them too.\n    IF {new_new} IS NOT DISTINCT FROM {new_old} THEN\n      {up}\n    END IF;\n  ELSIF {new_new} IS DISTINCT FROM {new_old} THEN\n    -- The new release wrote: derive the old columns.\n    {down}\n  END IF;\n",
                    new_null = row_of("NEW", new),
                    old_new = row_of("NEW", old),
                    old_old = row_of("OLD", old),
                    new_new = row_of("NEW", new),
                    new_old = row_of("OLD", new),
                ));
            }
            Sync::OnWrite {
                when,
                assign,
                inserts_only,
            } => {
                let stmt = select_into(assign, when.as_deref(), alias);
                if *inserts_only {
                    body.push_str(&format!(
                        "  IF TG_OP = 'INSERT' THEN\n    {stmt}\n  END IF;\n"
                    ));
                } else {
                    body.push_str(&format!("  {stmt}\n"));
                }
            }
        }
    }
    format!(
        "CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS {}",
        // `use_column`: a column named like a PL/pgSQL variable (`new`, `old`, `tg_op`,
        // `found`) is the column inside queries, never an ambiguous reference that would make
        // every write of the application fail.
        dollar_quote(
            "bf_sync",
            &format!("\n#variable_conflict use_column\nBEGIN\n{body}  RETURN NEW;\nEND;\n")
        )
    )
}

fn display<T: std::fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn display_opt<T: std::fmt::Display, S: serde::Serializer>(
    v: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

fn display_vec<T: std::fmt::Display, S: serde::Serializer>(
    v: &[T],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|x| x.to_string()))
}
