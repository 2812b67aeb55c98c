//! The runner: `backfill run PLAN|DIR [--release R]` runs, plan by plan in file-name order,
//! every phase that is due at release `R` and not yet done, and records each step in the state
//! schema so that a rerun, or a second runner, never runs a step twice.
//!
//! - A plan's DDL (expand, dual-write, contract) runs under a session advisory lock; a second
//!   runner waits for it, says who holds it, and then finds the steps done. The lock is let go
//!   during the backfill, which several runners may share (the checkpoints keep them apart).
//! - A transactional step and its record commit together; a step outside a transaction
//!   (`CONCURRENTLY`) is recorded right after, and rerunning it is harmless (an index left
//!   INVALID is rebuilt, a valid one is kept).
//! - Contract runs only when its release is due, when `verify` finds no row out of sync, and in
//!   a later release than the one in which the backfill finished (`--force-contract` lifts
//!   this last rule only).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::db::catalog::{self, TableInfo};
use crate::db::ConnectionSpec;
use crate::engine::{self, EngineOptions, Event, Events, Job, Keyset, Outcome, Stop};
use crate::error::{Error, Result};
use crate::executor::{run_step_recorded, ExecOptions};
use crate::metrics::Meter;
use crate::plan::Plan;
use crate::planner::{self, Phase, PhasePlan, PlannerOptions, Schedule};
use crate::progress::{self, Mode};
use crate::sql::Ident;
use crate::state;
use crate::validate::{Earlier, Rows};
use crate::version::Release;

/// How `run` runs.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// The application release being deployed (`None`: only phases without a gate).
    pub release: Option<Release>,
    /// Run contract in the release in which the backfill finished.
    pub force_contract: bool,
    /// Accept a plan edited after it started.
    pub force: bool,
    /// Workers (overrides the plan).
    pub workers: Option<u32>,
    /// First batch size (overrides the plan).
    pub batch_size: Option<u32>,
    /// Rate limit (overrides the plan).
    pub max_rows_per_second: Option<u64>,
    /// The state schema.
    pub state_schema: String,
    /// How progress is shown.
    pub mode: Mode,
    /// Health-probe thresholds from the command line, parsed.
    pub throttle: ThrottleOverrides,
    /// The command that resumes this invocation, printed after Ctrl-C (never a password).
    pub resume: String,
    /// `run --phase contract`: only the contract, asked for explicitly (the only way to run
    /// the contract of a plan without a release gate).
    pub only_contract: bool,
}

/// Health-probe settings given on the command line, parsed and checked before anything
/// touches the database; each one given replaces the plan's `[throttle]` value.
#[derive(Debug, Clone, Default)]
pub struct ThrottleOverrides {
    /// Replicas whose lag to watch.
    pub replicas: Vec<ConnectionSpec>,
    /// `max_replication_lag`.
    pub max_replication_lag: Option<Duration>,
    /// `max_lock_waiters`.
    pub max_lock_waiters: Option<u64>,
    /// `max_transaction_age`.
    pub max_transaction_age: Option<Duration>,
    /// `pause_during_autovacuum` (only ever turned on from the command line).
    pub pause_during_autovacuum: bool,
    /// `query`.
    pub query: Option<String>,
    /// `check_interval`.
    pub check_interval: Option<Duration>,
}

impl ThrottleOverrides {
    /// Applies the overrides to a plan's settings.
    pub fn apply(&self, t: &mut crate::plan::ThrottleSettings) {
        if let Some(v) = self.max_replication_lag {
            t.max_replication_lag = Some(v);
        }
        if let Some(v) = self.max_lock_waiters {
            t.max_lock_waiters = Some(v);
        }
        if let Some(v) = self.max_transaction_age {
            t.max_transaction_age = Some(v);
        }
        if self.pause_during_autovacuum {
            t.pause_during_autovacuum = true;
        }
        if let Some(q) = &self.query {
            t.query = Some(q.clone());
        }
        if let Some(v) = self.check_interval {
            t.check_interval = v;
        }
    }
}

impl RunnerOptions {
    /// The plan's `[backfill]` and `[throttle]` settings with the command line's overrides.
    pub fn engine_options(&self, plan: &Plan) -> EngineOptions {
        let mut o = EngineOptions::from_plan(plan, &self.state_schema);
        if let Some(w) = self.workers {
            o.workers = w;
        }
        if let Some(b) = self.batch_size {
            o.batch_size = b;
            o.min_batch_size = o.min_batch_size.min(b);
            o.max_batch_size = o.max_batch_size.max(b);
        }
        if let Some(r) = self.max_rows_per_second {
            o.max_rows_per_second = r;
        }
        o.force = self.force;
        self.throttle.apply(&mut o.throttle);
        o.replicas = self.throttle.replicas.clone();
        o.shared_settings = self.shared_settings();
        o
    }

    /// The settings given on the command line, keyed as `backfill set` stores them.
    fn shared_settings(&self) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::Value;
        let mut m = serde_json::Map::new();
        let dur = |d: Duration| Value::from(humantime::format_duration(d).to_string());
        if let Some(w) = self.workers {
            m.insert("workers".into(), Value::from(w));
        }
        if let Some(r) = self.max_rows_per_second {
            m.insert("max_rows_per_second".into(), Value::from(r));
        }
        if let Some(v) = self.throttle.max_replication_lag {
            m.insert("max_replication_lag".into(), dur(v));
        }
        if let Some(v) = self.throttle.max_transaction_age {
            m.insert("max_transaction_age".into(), dur(v));
        }
        if let Some(v) = self.throttle.max_lock_waiters {
            m.insert("max_lock_waiters".into(), Value::from(v));
        }
        if self.throttle.pause_during_autovacuum {
            m.insert("pause_during_autovacuum".into(), Value::Bool(true));
        }
        m
    }
}

pub use crate::state::plans::{phase_name, recorded, Recorded};

/// A line diff of two plan texts: the lines that differ, `-` old and `+` new, numbered.
pub fn diff(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    // Longest common subsequence; plan files are small.
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push(format!("  line {}: - {}", i + 1, a[i]));
            i += 1;
        } else {
            out.push(format!("  line {}: + {}", j + 1, b[j]));
            j += 1;
        }
    }
    out.join("\n")
}

/// Whether a phase gated at `due` may run at `release`.
pub fn is_due(due: Option<&Release>, release: Option<&Release>) -> bool {
    match (due, release) {
        (None, _) => true,
        (Some(d), Some(r)) => r >= d,
        (Some(_), None) => false,
    }
}

/// The catalog recorded when the plan started, without the columns that have left the table
/// since (another plan's contract dropped them) unless this plan creates them.
fn reconcile(plan: &Plan, mut recorded: TableInfo, live: Option<&TableInfo>) -> TableInfo {
    if let Some(live) = live {
        let created = planner::missing_after_expand(
            plan,
            &TableInfo {
                columns: Vec::new(),
                ..recorded.clone()
            },
        );
        recorded
            .columns
            .retain(|c| live.column(&c.name).is_some() || created.contains(&c.name));
    }
    recorded
}

/// A plan checked before anything changes: the schedule `run` will execute, the catalog it
/// was built from, and what the state schema records of it.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The schedule.
    pub schedule: Schedule,
    /// The table's catalog the schedule was built from: the one recorded when the plan first
    /// ran, or the live one for a plan that has not started.
    pub catalog: TableInfo,
    /// The plan's record, when it has started.
    pub recorded: Option<Recorded>,
    /// Things worth knowing that do not stop the plan.
    pub warnings: Vec<String>,
}

impl Prepared {
    /// Phases not finished yet, in order.
    pub fn phases_left(&self) -> Vec<Phase> {
        self.schedule
            .phases
            .iter()
            .map(|p| p.phase)
            .filter(|p| {
                !self
                    .recorded
                    .as_ref()
                    .is_some_and(|r| r.finished.contains_key(p))
            })
            .collect()
    }
}

/// Checks a plan without changing anything. A plan that has not started is validated against
/// the live catalog (every expression compiled in a transaction that is rolled back); a plan in
/// flight is rebuilt from the catalog recorded at its start (its expand has changed the live
/// table), and refused when its text changed since, unless `force`. Reads the state schema only
/// when it exists. The rows a new constraint would refuse are not counted again (see
/// [`prepare_all`], which counts them before anything changes).
pub async fn prepare(
    client: &mut Client,
    schema: &Ident,
    plan: &Plan,
    force: bool,
    options: &PlannerOptions,
) -> Result<Prepared> {
    prepare_with(
        client,
        schema,
        plan,
        force,
        options,
        &Earlier::default(),
        Rows::Uncounted,
    )
    .await
}

/// As [`prepare`], with what earlier plans of the invocation do to the table (see
/// [`crate::validate::validate_with`]), counting the rows a new constraint would refuse or
/// not.
async fn prepare_with(
    client: &mut Client,
    schema: &Ident,
    plan: &Plan,
    force: bool,
    options: &PlannerOptions,
    earlier: &Earlier,
    rows: Rows,
) -> Result<Prepared> {
    let rec = recorded(client, schema, &plan.name)
        .await?
        .filter(|r| !r.started.is_empty());
    let Some(r) = rec else {
        let v = crate::validate::validate_with(client, plan, options, earlier, rows).await?;
        return Ok(Prepared {
            schedule: v.schedule,
            catalog: v.catalog,
            recorded: None,
            warnings: v.warnings,
        });
    };
    if r.checksum != plan.checksum() && !force {
        return Err(Error::PlanEdited {
            plan: plan.name.clone(),
            file: plan.file.display().to_string(),
            diff: diff(&r.source, &plan.source),
        });
    }
    let catalog: TableInfo = serde_json::from_str(&r.catalog).map_err(|e| {
        Error::Failed(format!(
            "the recorded catalog of plan `{}` cannot be read ({e}); was it written by another version of backfill?",
            plan.name
        ))
    })?;
    let (schedule, catalog) = rebuild(client, plan, catalog, options).await?;
    Ok(Prepared {
        schedule,
        catalog,
        recorded: Some(r),
        warnings: Vec::new(),
    })
}

/// [`prepare`] for every plan, with every plan problem of every plan gathered into one error,
/// and the rights of the connected role checked for each (see [`crate::privileges`]). Nothing
/// is changed.
pub async fn prepare_all(
    client: &mut Client,
    schema: &Ident,
    plans: &[Plan],
    force: bool,
    options: &PlannerOptions,
    check_rights: bool,
) -> Result<Vec<Prepared>> {
    if check_rights {
        crate::privileges::check_state_access(client, plans, schema).await?;
    }
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    let mut denied: Option<Error> = None;
    // What the plans before each one do to its table: the columns they add, the table they
    // create or rename to its name. A later plan may use them.
    let mut added: BTreeMap<String, Earlier> = BTreeMap::new();
    // Tables an earlier plan renames (to what, by which plan): a plan after it that has not
    // started would find a view under the old name once the rename's expand ran.
    let mut renamed: BTreeMap<String, (String, String)> = BTreeMap::new();
    for plan in plans {
        let table = plan.table.to_string();
        let earlier = added.get(&table).cloned().unwrap_or_default();
        match prepare_with(
            client,
            schema,
            plan,
            force,
            options,
            &earlier,
            Rows::Counted,
        )
        .await
        {
            Ok(p) if p.recorded.is_none() && renamed.contains_key(&table) => {
                let (to, by) = &renamed[&table];
                let mut problems = crate::ops::Problems::default();
                problems.add(
                    crate::plan::FieldPath::of("table"),
                    format!(
                        "plan `{by}` before this one renames {} to {to}: write this plan for {to}",
                        plan.table
                    ),
                );
                errors.extend(plan.errors(problems).0);
            }
            Ok(p) => {
                if check_rights {
                    let checked = crate::privileges::check(
                        client,
                        plan,
                        &p.catalog,
                        &p.schedule,
                        &p.phases_left(),
                        schema,
                    )
                    .await;
                    denied = match (denied, checked) {
                        (None, Err(e)) => Some(e),
                        (
                            Some(Error::Privileges {
                                plan: a,
                                role,
                                mut missing,
                            }),
                            Err(Error::Privileges {
                                plan: b,
                                missing: more,
                                ..
                            }),
                        ) => {
                            for m in more {
                                if !missing.contains(&m) {
                                    missing.push(m);
                                }
                            }
                            Some(Error::Privileges {
                                plan: format!("{a}`, `{b}"),
                                role,
                                missing,
                            })
                        }
                        (d, Ok(())) => d,
                        (d, Err(_)) => d,
                    };
                }
                let after = planner::transition_table(plan, &p.catalog);
                let new_columns = after.columns.iter().skip(p.catalog.columns.len()).cloned();
                let entry = added.entry(table).or_default();
                entry.columns.extend(new_columns);
                match plan.table_change() {
                    Some(crate::ops::TableChange::Create) => {
                        entry.table = Some(TableInfo::absent(plan.table.clone()));
                    }
                    Some(crate::ops::TableChange::Rename { to }) => {
                        // Plans after it may be written for the new name.
                        let columns = entry.columns.clone();
                        let name = plan.table.sibling(to);
                        renamed.insert(
                            plan.table.to_string(),
                            (name.to_string(), plan.name.clone()),
                        );
                        added.insert(
                            name.to_string(),
                            Earlier {
                                table: Some(TableInfo {
                                    name,
                                    ..p.catalog.clone()
                                }),
                                columns,
                            },
                        );
                    }
                    _ => {}
                }
                ok.push(p)
            }
            Err(Error::Plan(e)) => errors.extend(e.0),
            Err(other) => return Err(other),
        }
    }
    if !errors.is_empty() {
        return Err(crate::error::PlanErrors(errors).into());
    }
    match denied {
        Some(e) => Err(e),
        None => Ok(ok),
    }
}

/// Records the plan (its text, checksum and, on its first run, the catalog it was planned
/// from) and returns its schedule. The plan is prepared again under its lock: another runner
/// may have started it since it was checked, and an earlier plan of this invocation may have
/// changed the table (a contract that dropped a column).
async fn register(
    client: &mut Client,
    schema: &Ident,
    plan: &Plan,
    force: bool,
    options: &PlannerOptions,
) -> Result<(Schedule, TableInfo)> {
    let prepared = prepare(client, schema, plan, force, options).await?;
    let started = prepared.recorded.is_some();
    let catalog_json = serde_json::to_string(&prepared.catalog).map_err(|e| {
        Error::Failed(format!(
            "cannot record the catalog of plan `{}`: {e}",
            plan.name
        ))
    })?;
    state::plans::record(
        client,
        schema,
        &state::plans::PlanRecord {
            name: &plan.name,
            file: &plan.file.display().to_string(),
            checksum: &plan.checksum(),
            source: &plan.source,
            catalog: &catalog_json,
            table: &plan.table.to_string(),
            expand_release: plan.release.expand.as_ref().map(|r| r.to_string()),
            contract_release: plan.release.contract.as_ref().map(|r| r.to_string()),
            keep_catalog: started,
        },
    )
    .await?;
    Ok((prepared.schedule, prepared.catalog))
}

/// The key of a plan's DDL lock.
fn ddl_lock_key(plan: &Plan) -> String {
    format!("backfill ddl {}", plan.name)
}

/// The plan's DDL lock: a session advisory lock on the control connection. Waits for it,
/// saying once who holds it.
pub(crate) async fn lock(
    client: &Client,
    schema: &Ident,
    plan: &Plan,
    say: &dyn Fn(String),
    stop: &Stop,
) -> Result<()> {
    let fail = |e: tokio_postgres::Error| Error::db(format!("locking plan `{}`", plan.name), &e);
    let mut told = false;
    loop {
        let got: bool = client
            .query_one(
                "SELECT pg_try_advisory_lock(hashtext($1::text))",
                &[&ddl_lock_key(plan)],
            )
            .await
            .map_err(fail)?
            .get(0);
        if got {
            return Ok(());
        }
        if !told {
            let holder = state::runners::other(client, schema, &plan.name)
                .await
                .unwrap_or_else(|| "another backfill run".to_string());
            say(format!(
                "plan {}: waiting: {holder} holds the plan's lock; its steps will not run twice",
                plan.name
            ));
            told = true;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
            () = stop.wait() => {
                return Err(Error::Interrupted {
                    progress: format!("plan `{}` was waiting for its lock; nothing of it ran", plan.name),
                    resume: String::new(),
                })
            }
        }
    }
}

/// Lets go of the plan's DDL lock.
pub(crate) async fn unlock(client: &Client, plan: &Plan) -> Result<()> {
    client
        .query_one(
            "SELECT pg_advisory_unlock(hashtext($1::text))",
            &[&ddl_lock_key(plan)],
        )
        .await
        .map_err(|e| Error::db(format!("unlocking plan `{}`", plan.name), &e))?;
    Ok(())
}

/// A started plan's schedule, built from the catalog recorded at its start, less the columns
/// that have left the table since (see [`reconcile`]).
async fn rebuild(
    client: &Client,
    plan: &Plan,
    recorded: TableInfo,
    options: &PlannerOptions,
) -> Result<(Schedule, TableInfo)> {
    let live = catalog::table_info(client, &plan.table).await?;
    let catalog = reconcile(plan, recorded, live.as_ref());
    Ok((planner::build(plan, &catalog, options), catalog))
}

/// The schedule of a plan for `abort` and `verify`: from the catalog recorded when it
/// started; for a plan that never ran through `run`, from the live catalog without the columns
/// expand creates.
pub async fn schedule_for(
    client: &mut Client,
    schema: &Ident,
    plan: &Plan,
    options: &PlannerOptions,
) -> Result<(Schedule, TableInfo)> {
    if let Some(r) = recorded(client, schema, &plan.name).await? {
        if let Ok(catalog) = serde_json::from_str::<TableInfo>(&r.catalog) {
            return rebuild(client, plan, catalog, options).await;
        }
    }
    if plan.creates_table() && catalog::table_info(client, &plan.table).await?.is_some() {
        // Its rollback drops the table: never one this plan is not known to have created.
        return Err(Error::Usage(format!(
            "plan `{}` has no record on this database, so table {} is not known to be the one it creates; abort drops only a table the plan created through `backfill run` (drop it yourself if that is what you mean)",
            plan.name, plan.table
        )));
    }
    let live = crate::validate::table_of(client, plan).await?;
    let before = planner::catalog_before_expand(plan, &live);
    let problems = planner::check_catalog(plan, &before, true);
    if !problems.0.is_empty() {
        return Err(plan.errors(problems).into());
    }
    Ok((planner::build(plan, &before, options), before))
}

/// Runs every due phase of every plan.
pub async fn run_plans(
    conn: &ConnectionSpec,
    plans: &[Plan],
    options: &RunnerOptions,
    stop: Stop,
) -> Result<()> {
    let json = options.mode == Mode::Json;
    let say = move |line: String| {
        if json {
            println!(
                "{}",
                serde_json::json!({ "event": "runner", "message": line, "ts": progress::now_rfc3339() })
            );
        } else {
            println!("{line}");
        }
    };
    // Every plan of the invocation is checked, and the role's rights with it, before the
    // first statement that changes anything (the state schema included): exit 2 means
    // nothing was changed.
    let schema = Ident::new(&options.state_schema);
    let popts = PlannerOptions {
        state_schema: options.state_schema.clone(),
    };
    let mut lost = 0;
    loop {
        let result = async {
            let mut client = conn.connect_patiently().await?;
            prepare_all(&mut client, &schema, plans, options.force, &popts, true).await
        }
        .await;
        match result {
            Err(e) if e.connection_lost() && lost < RECONNECTS && !stop.is_set() => {
                lost += 1;
                tracing::warn!(attempt = lost, error = %e, "the connection was lost while checking the plans; connecting again");
            }
            other => break other.map(drop)?,
        }
    }
    for plan in plans {
        if stop.is_set() {
            break;
        }
        run_plan_patiently(conn, plan, options, stop.clone(), &say)
            .await
            .map_err(|e| match e {
                Error::Interrupted { progress, resume } if resume.is_empty() => {
                    Error::Interrupted {
                        progress,
                        resume: options.resume.clone(),
                    }
                }
                other => other,
            })?;
    }
    if stop.is_set() {
        return Err(Error::Interrupted {
            progress: "stopped between two plans".to_string(),
            resume: options.resume.clone(),
        });
    }
    Ok(())
}

/// How many times in a row a run connects again after losing its connection to the server
/// before giving up: the count starts over whenever a phase finishes.
pub const RECONNECTS: u32 = 10;

/// [`run_plan`], again from what is recorded each time the connection to the server was lost
/// (a cut, a restart, a failover: any statement of the runner, the events log, verify or a
/// backfill whose workers' retries ran out), as rerunning the command would: finished
/// phases and steps are skipped and the backfill goes on from its checkpoints.
async fn run_plan_patiently(
    conn: &ConnectionSpec,
    plan: &Plan,
    options: &RunnerOptions,
    stop: Stop,
    say: &dyn Fn(String),
) -> Result<()> {
    let schema = Ident::new(&options.state_schema);
    let gave_up = |times: u32, last: String| Error::ConnectionLost {
        plan: plan.name.clone(),
        times,
        last,
        resume: options.resume.clone(),
    };
    let mut lost = 0;
    let mut finished = None;
    loop {
        let e = match run_plan(conn, plan, options, stop.clone(), say).await {
            Err(e) if e.connection_lost() => e,
            // Connecting again (patiently) failed inside the run: the server stayed out of
            // reach.
            Err(e @ Error::Connect(_)) => return Err(gave_up(lost + 1, e.to_string())),
            other => return other,
        };
        // Ctrl-C while the connection is away: stop here, and say how to go on.
        let interrupted = || Error::Interrupted {
            progress: format!(
                "plan `{}`: stopped while connecting again after losing the connection ({e})",
                plan.name
            ),
            resume: options.resume.clone(),
        };
        if stop.is_set() {
            return Err(interrupted());
        }
        let connected = tokio::select! {
            c = conn.connect_patiently() => c,
            () = stop.wait() => return Err(interrupted()),
        };
        let client = match connected {
            Ok(client) => client,
            // The server stayed out of reach: say what was lost, and how to go on.
            Err(again) => return Err(gave_up(lost + 1, format!("{e}; connecting again: {again}"))),
        };
        // Progress since the last loss starts the count over.
        let now = recorded(&client, &schema, &plan.name)
            .await
            .ok()
            .flatten()
            .map(|r| r.finished.len());
        if now != finished {
            lost = 0;
            finished = now;
        }
        lost += 1;
        if lost > RECONNECTS {
            return Err(gave_up(lost, e.to_string()));
        }
        tracing::warn!(plan = %plan.name, attempt = lost, error = %e, "the connection to the database was lost; connecting again and going on from what is recorded");
        say(format!(
            "plan {}: lost the connection to the database ({e}); going on from what is recorded",
            plan.name
        ));
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(200 << lost.min(4))) => {}
            () = stop.wait() => return Err(interrupted()),
        }
    }
}

async fn run_plan(
    conn: &ConnectionSpec,
    plan: &Plan,
    options: &RunnerOptions,
    stop: Stop,
    say: &dyn Fn(String),
) -> Result<()> {
    let schema = Ident::new(&options.state_schema);
    let mut client = conn.connect_patiently().await?;
    state::ensure(&mut client, &schema).await?;
    lock(&client, &schema, plan, say, &stop).await?;
    let result = run_locked(conn, &mut client, plan, options, stop, say, &schema).await;
    if let Err(e) = &result {
        let _ =
            state::plans::set_last_error(&client, &schema, &plan.name, Some(&e.to_string())).await;
        let _ = state::event(
            &client,
            &schema,
            &plan.name,
            None,
            None,
            "failed",
            &e.to_string(),
        )
        .await;
    }
    state::runners::retire(&client, &schema, &plan.name).await;
    let _ = unlock(&client, plan).await;
    result
}

/// One plan's run under its lock: what every phase needs to know.
struct PlanRun<'a> {
    conn: &'a ConnectionSpec,
    plan: &'a Plan,
    options: &'a RunnerOptions,
    stop: Stop,
    say: &'a dyn Fn(String),
    schema: &'a Ident,
    schedule: Schedule,
    live: TableInfo,
    /// This process's figures for the plan (metrics endpoint, `status --json`).
    meter: Meter,
}

/// What to do with a phase.
enum Gate {
    /// Run it.
    Run,
    /// Not this time (done, or not asked for): look at the next phase.
    Skip,
    /// Stop here: this phase and those after it wait (the reason has been said).
    Stop,
}

async fn run_locked(
    conn: &ConnectionSpec,
    client: &mut Client,
    plan: &Plan,
    options: &RunnerOptions,
    stop: Stop,
    say: &dyn Fn(String),
    schema: &Ident,
) -> Result<()> {
    let popts = PlannerOptions {
        state_schema: options.state_schema.clone(),
    };
    let (schedule, live) = register(client, schema, plan, options.force, &popts).await?;
    let run = PlanRun {
        conn,
        plan,
        options,
        stop,
        say,
        schema,
        schedule,
        live,
        meter: Meter::new(&plan.name),
    };
    let mut ran = Vec::new();
    for pp in &run.schedule.phases {
        match run.gate(client, pp, ran.is_empty()).await? {
            Gate::Skip => continue,
            Gate::Stop => return Ok(()),
            Gate::Run => {}
        }
        run.phase(client, pp.phase).await?;
        ran.push(pp.phase);
    }
    state::plans::set_last_error(client, schema, &plan.name, None).await?;
    if ran.is_empty() {
        say(format!("plan {}: every phase is done", plan.name));
    }
    Ok(())
}

impl PlanRun<'_> {
    /// Whether `pp` runs now: done phases are skipped; a phase not due, and a contract that
    /// has no gate (unless asked for with `--phase contract`) or that its gates refuse, stop
    /// the plan here.
    async fn gate(&self, client: &mut Client, pp: &PhasePlan, first: bool) -> Result<Gate> {
        let (plan, options, say) = (self.plan, self.options, self.say);
        let phase = pp.phase;
        // Another runner may have moved on while this one waited for the lock.
        let rec = recorded(client, self.schema, &plan.name)
            .await?
            .unwrap_or_default();
        if rec.finished.contains_key(&phase) {
            return Ok(Gate::Skip);
        }
        if options.only_contract && phase != Phase::Contract {
            // Checked below: contract refuses to run before the backfill finished.
            return Ok(Gate::Skip);
        }
        let explicit = options.only_contract && phase == Phase::Contract;
        if phase == Phase::Contract && !pp.steps.is_empty() && pp.due.is_none() && !explicit {
            say(format!(
                "plan {}: contract has no release gate, and it drops or replaces what the old application release uses: run it on its own, once no instance of that release runs: {}",
                plan.name,
                contract_command(plan)
            ));
            return Ok(Gate::Stop);
        }
        if let (true, Some(due)) = (explicit, &pp.due) {
            say(format!(
                "plan {}: --phase contract: contracting now, as asked; its release gate ({due}) is not consulted, the backfill's end and verify are",
                plan.name
            ));
        }
        let release = options.release.as_ref();
        if !is_due(pp.due.as_ref(), release) && !explicit {
            let due = pp.due.as_ref().map(|d| d.to_string()).unwrap_or_default();
            let now = release
                .map(|r| format!("this is {r}"))
                .unwrap_or_else(|| "no --release given".to_string());
            say(format!(
                "plan {}: {} waits for release {due} ({now}){}",
                plan.name,
                phase_name(phase),
                if first { "; nothing to do now" } else { "" }
            ));
            return Ok(Gate::Stop);
        }
        if phase == Phase::Contract {
            return self.contract_gate(client, &rec).await;
        }
        Ok(Gate::Run)
    }

    /// The contract's own gates: the backfill finished in an earlier release (or
    /// `--force-contract`), and `verify` finds no row out of sync.
    async fn contract_gate(&self, client: &mut Client, rec: &Recorded) -> Result<Gate> {
        let (plan, options, say) = (self.plan, self.options, self.say);
        let release = options.release.as_ref();
        if let Some(refusal) = contract_refusal(rec, release, options.force_contract) {
            say(format!("plan {}: contract refused: {refusal}", plan.name));
            state::event(
                &*client,
                self.schema,
                &plan.name,
                Some(phase_name(Phase::Contract)),
                None,
                "refused",
                &refusal,
            )
            .await?;
            if options.only_contract {
                // Asked for explicitly: a pipeline must not take it as done.
                return Err(Error::Failed(format!(
                    "plan `{}`: contract refused: {refusal}",
                    plan.name
                )));
            }
            return Ok(Gate::Stop);
        }
        if options.force_contract && contract_refusal(rec, release, false).is_some() {
            say(format!(
                "plan {}: --force-contract: contracting in the release in which the backfill finished; make sure no instance of the old application release is still running",
                plan.name
            ));
        }
        if let Some(spec) = &self.schedule.backfill {
            let keyset = Keyset::of(&self.live)?;
            let rate = plan.backfill.max_rows_per_second;
            // verify's walk, bringing in sync the rows it finds out of sync (written past the
            // trigger since the backfill: triggers disabled, replication apply) with the
            // backfill's own update, page by page; then verify again if it found any.
            let mut report = crate::verify::recheck(client, spec, &keyset, rate).await?;
            if report.out_of_sync > 0 {
                let detail = recheck_detail(&report);
                say(format!("plan {}: {detail}", plan.name));
                state::event(
                    &*client,
                    self.schema,
                    &plan.name,
                    Some("backfill"),
                    None,
                    "rechecked",
                    &detail,
                )
                .await?;
                report = crate::verify::verify(client, spec, &keyset, rate).await?;
            }
            if report.out_of_sync > 0 {
                return Err(Error::OutOfSync {
                    plan: plan.name.clone(),
                    table: plan.table.to_string(),
                    count: report.out_of_sync,
                    keys: report.keys,
                });
            }
            say(format!(
                "plan {}: verify: {}, none out of sync",
                plan.name,
                progress::counted(report.rows, "row", "rows")
            ));
        }
        Ok(Gate::Run)
    }

    /// Runs one phase and records it: started, its steps (or the backfill, without the
    /// plan's lock, shared with other runners), finished at this release.
    async fn phase(&self, client: &mut Client, phase: Phase) -> Result<()> {
        let (plan, schema) = (self.plan, self.schema);
        let name = phase_name(phase);
        let release_text = self.options.release.as_ref().map(|r| r.to_string());
        state::plans::start_phase(client, schema, &plan.name, phase).await?;
        state::event(
            &*client,
            schema,
            &plan.name,
            Some(name),
            None,
            "started",
            "",
        )
        .await?;
        tracing::info!(plan = %plan.name, phase = name, release = ?release_text, "phase started");
        state::runners::announce(client, schema, &plan.name, name, 0).await?;
        self.meter.phase(name);
        let t = Instant::now();
        let detail = if phase == Phase::Backfill {
            self.ensure_undo_trigger(client).await?;
            unlock(client, plan).await?;
            let result = backfill(
                self.conn,
                client,
                plan,
                &self.schedule,
                &self.live,
                self.options,
                self.stop.clone(),
                schema,
                self.meter.clone(),
            )
            .await;
            // A failed backfill records nothing more: its error goes up as it is.
            let detail = result?;
            // The main connection sat idle through the backfill: a load balancer, a failover or
            // a restart may have cut it, and with it the session lock. A new one takes the lock
            // again before anything else is recorded.
            if client.is_closed() {
                tracing::warn!(plan = %plan.name, "the main connection was lost during the backfill; connecting again");
                *client = self.conn.connect_patiently().await?;
            }
            lock(client, schema, plan, self.say, &Stop::new()).await?;
            detail
        } else {
            self.ddl_steps(client, phase).await?
        };
        let first =
            state::plans::finish_phase(client, schema, &plan.name, phase, release_text.as_deref())
                .await?;
        // An error of an earlier run (an interrupt, a lost lock) is history once a phase
        // finishes after it.
        state::plans::set_last_error(client, schema, &plan.name, None).await?;
        // Several runners may share a backfill; the first to see it end records it.
        if first {
            state::event(
                &*client,
                schema,
                &plan.name,
                Some(name),
                None,
                "finished",
                &detail,
            )
            .await?;
        }
        (self.say)(format!(
            "plan {}: {name} done in {:.1}s{}",
            plan.name,
            t.elapsed().as_secs_f64(),
            if detail.is_empty() {
                String::new()
            } else {
                format!(" ({detail})")
            }
        ));
        Ok(())
    }

    /// Before the first chunk of a plan that rewrites columns in place: its undo trigger, which
    /// saves what the chunks overwrite, is on the table. Expand installs it; a backfill whose
    /// expand ran under an earlier build (whose chunks saved the values themselves) gets it
    /// here, under the plan's DDL lock, `lock_timeout` and retries.
    async fn ensure_undo_trigger(&self, client: &mut Client) -> Result<()> {
        let Some((trigger, step)) = &self.schedule.undo_trigger else {
            return Ok(());
        };
        let table = self.schedule.table.to_string();
        if trigger_installed(client, &table, trigger).await? {
            return Ok(());
        }
        let exec = ExecOptions::for_plan(self.plan, self.meter.clone());
        let context = format!("plan {}: {}", self.plan.name, step.description);
        run_step_recorded(client, step, &table, &exec, &context, None, &self.stop).await?;
        (self.say)(format!("plan {}: {}", self.plan.name, step.description));
        Ok(())
    }

    /// A DDL phase's steps, with a heartbeat so `status` shows this process while a step
    /// waits for its lock.
    async fn ddl_steps(&self, client: &mut Client, phase: Phase) -> Result<String> {
        let exec = ExecOptions::for_plan(self.plan, self.meter.clone());
        let (done_tx, done_rx) = tokio::sync::watch::channel(false);
        let beat = tokio::spawn(heartbeat(
            self.conn.clone(),
            self.schema.clone(),
            self.plan.name.clone(),
            engine::Pause::default(),
            Stop::new(),
            Events::none().metered(self.meter.clone()),
            done_rx,
        ));
        let result = run_phase_steps(
            client,
            self.plan,
            &self.schedule,
            phase,
            &exec,
            self.schema,
            self.say,
            &self.stop,
        )
        .await;
        let _ = done_tx.send(true);
        let _ = beat.await;
        result
    }
}

/// What a recheck found and did, for humans and the event log.
pub fn recheck_detail(r: &crate::verify::Report) -> String {
    if r.out_of_sync == 0 {
        return format!(
            "recheck: {}, none out of sync",
            progress::counted(r.rows, "row", "rows")
        );
    }
    format!(
        "recheck: {} out of sync after the backfill, {} brought in sync{}",
        progress::counted(r.out_of_sync, "row", "rows"),
        r.fixed,
        if r.keys.is_empty() {
            String::new()
        } else {
            format!(" (the rows with {})", r.keys.join("; "))
        }
    )
}

/// The command that runs a plan's contract on its own.
fn contract_command(plan: &Plan) -> String {
    format!("backfill run {} --phase contract", plan.file.display())
}

/// Why contract may not run now, if it may not.
fn contract_refusal(rec: &Recorded, release: Option<&Release>, force: bool) -> Option<String> {
    let Some(backfilled) = rec.finished.get(&Phase::Backfill) else {
        return Some("the backfill has not finished".to_string());
    };
    if force {
        return None;
    }
    let (Some(done_at), Some(now)) = (backfilled.as_deref(), release) else {
        return None;
    };
    let Ok(done) = done_at.parse::<Release>() else {
        return Some(format!(
            "the backfill finished at `{done_at}`, which is not a release (recorded by an older backfill?); give --force-contract once no instance of the old release runs"
        ));
    };
    (now <= &done).then(|| {
        format!(
            "the backfill finished in release {done}; contract runs in a later release, once no instance of the release before it can still be writing the old columns (--force-contract to run it now)"
        )
    })
}

#[allow(clippy::too_many_arguments)]
async fn run_phase_steps(
    client: &mut Client,
    plan: &Plan,
    schedule: &Schedule,
    phase: Phase,
    exec: &ExecOptions,
    schema: &Ident,
    say: &dyn Fn(String),
    stop: &Stop,
) -> Result<String> {
    let name = phase_name(phase);
    let done = state::plans::steps_done(client, schema, &plan.name, phase).await?;
    let steps = schedule.phase(phase);
    let record_sql = state::plans::step_record_sql(schema);
    let table = schedule.table.to_string();
    let (host, pid) = (state::host(), state::pid());
    for (i, step) in steps.iter().enumerate() {
        let n = i as i32 + 1;
        if done.contains(&n) {
            state::event(
                &*client,
                schema,
                &plan.name,
                Some(name),
                Some(n),
                "skipped",
                "done by an earlier run",
            )
            .await?;
            continue;
        }
        state::event(
            &*client,
            schema,
            &plan.name,
            Some(name),
            Some(n),
            "step started",
            &step.description,
        )
        .await?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
            [&plan.name, &name, &n, &step.description, &host, &pid];
        let context = format!("plan {}: {name} step {n} ({})", plan.name, step.description);
        // A lost connection ends the step with the run: `run_plan_patiently` connects again
        // and comes back here, where a step whose record committed is skipped and any other
        // runs again (a transactional step rolled back; the others are written to be run
        // again, an invalid index left by a cut build is rebuilt).
        let result = run_step_recorded(
            client,
            step,
            &table,
            exec,
            &context,
            Some((&record_sql, &params)),
            stop,
        )
        .await;
        if let Err(e) = result {
            let _ = state::event(
                &*client,
                schema,
                &plan.name,
                Some(name),
                Some(n),
                "step failed",
                &e.to_string(),
            )
            .await;
            return Err(e);
        }
        state::event(
            &*client,
            schema,
            &plan.name,
            Some(name),
            Some(n),
            "step finished",
            &step.description,
        )
        .await?;
        say(format!(
            "plan {}: {name} step {n}: {}",
            plan.name, step.description
        ));
    }
    Ok(progress::counted(steps.len() as u64, "step", "steps"))
}

/// The backfill phase: the engine, with a heartbeat that records this process's progress and
/// picks up `pause`, `resume` and `abort` from other terminals.
#[allow(clippy::too_many_arguments)]
async fn backfill(
    conn: &ConnectionSpec,
    client: &Client,
    plan: &Plan,
    schedule: &Schedule,
    live: &TableInfo,
    options: &RunnerOptions,
    stop: Stop,
    schema: &Ident,
    meter: Meter,
) -> Result<String> {
    let Some(spec) = schedule.backfill.clone() else {
        return Ok("no data to move".to_string());
    };
    let job = Job::new(plan, spec, live)?;
    let eo = options.engine_options(plan);
    state::runners::announce(client, schema, &plan.name, "backfill", eo.workers as i32).await?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let sink = tokio::spawn(progress::render(options.mode, rx));
    let events = Events::new(tx).metered(meter);
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let heartbeat = tokio::spawn(heartbeat(
        conn.clone(),
        schema.clone(),
        plan.name.clone(),
        eo.pause.clone(),
        stop.clone(),
        events.clone(),
        done_rx,
    ));
    let result = engine::backfill(conn, job, eo, events, stop).await;
    let _ = done_tx.send(true);
    let aborted = heartbeat.await.unwrap_or(false);
    let _ = sink.await;
    match result? {
        Outcome::Finished(s) => Ok(format!(
            "{} walked, {} changed",
            progress::counted(s.rows_seen, "row", "rows"),
            s.rows_changed
        )),
        Outcome::Interrupted(s) if aborted => Err(Error::Stopped(format!(
            "plan `{}`: aborted from another terminal after {}; `backfill abort` rolls it back",
            plan.name,
            progress::counted(s.rows_done, "row", "rows")
        ))),
        Outcome::Interrupted(s) => {
            state::event(
                client,
                schema,
                &plan.name,
                Some("backfill"),
                None,
                "interrupted",
                &format!("{} done", progress::counted(s.rows_done, "row", "rows")),
            )
            .await?;
            Err(Error::Interrupted {
                progress: format!(
                    "plan `{}`: {} of ~{} walked",
                    plan.name,
                    progress::counted(s.rows_done, "row", "rows"),
                    s.rows_estimate
                ),
                resume: options.resume.clone(),
            })
        }
    }
}

/// Every second: records this process's progress, follows `pause`/`resume`, and stops the
/// engine on `abort`. Returns whether an abort stopped it.
async fn heartbeat(
    conn: ConnectionSpec,
    schema: Ident,
    plan: String,
    pause: engine::Pause,
    stop: Stop,
    events: Events,
    mut done: tokio::sync::watch::Receiver<bool>,
) -> bool {
    let mut client: Option<Client> = None;
    let mut last: Option<(Instant, i64)> = None;
    let mut rate = 0.0f64;
    loop {
        if client.as_ref().map_or(true, |c| c.is_closed()) {
            client = conn.connect().await.ok();
        }
        if let Some(c) = &client {
            let figures = events
                .meter()
                .figures()
                .and_then(|f| serde_json::to_string(&f).ok());
            let beat = state::runners::heartbeat(c, &schema, &plan, rate, figures.as_deref()).await;
            if let Ok(Some(b)) = beat {
                let (paused, aborting, n) = (b.paused, b.aborting, b.rows_done);
                let now = Instant::now();
                if let Some((t, before)) = last {
                    let secs = now.duration_since(t).as_secs_f64().max(1e-3);
                    let sample = (n - before).max(0) as f64 / secs;
                    rate = if rate == 0.0 {
                        sample
                    } else {
                        0.5 * sample + 0.5 * rate
                    };
                }
                last = Some((now, n));
                if paused {
                    // Nothing moves: `status` shows no rate that only decays.
                    rate = 0.0;
                }
                events.meter().shared(n, b.segments_left, rate);
                if paused != pause.is_set() {
                    pause.set(paused);
                    events.send(if paused {
                        Event::Paused { plan: plan.clone() }
                    } else {
                        Event::Resumed { plan: plan.clone() }
                    });
                }
                if aborting {
                    pause.set(false);
                    stop.trigger();
                    return true;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = done.changed() => return false,
        }
    }
}

/// Whether `table` has a trigger named `trigger`.
async fn trigger_installed(client: &Client, table: &str, trigger: &Ident) -> Result<bool> {
    client
        .query_opt(
            "SELECT 1 FROM pg_trigger WHERE tgrelid = $1::text::regclass AND tgname = $2",
            &[&table, &trigger.as_str()],
        )
        .await
        .map(|row| row.is_some())
        .map_err(|e| Error::db(format!("looking for trigger {trigger} on {table}"), &e))
}

/// `run --phase backfill`: the backfill of `plan`, whose expand and dual-write were applied by
/// other means, checked against the live catalog: expand and dual-write must have
/// run. `None` when the plan moves no data.
pub async fn backfill_only_job(
    client: &Client,
    plan: &Plan,
    state_schema: &str,
) -> Result<Option<Job>> {
    let live = crate::validate::table_of(client, plan).await?;
    let before: TableInfo = planner::catalog_before_expand(plan, &live);
    let problems = planner::check_catalog(plan, &before, true);
    if !problems.0.is_empty() {
        return Err(plan.errors(problems).into());
    }
    let missing = planner::missing_after_expand(plan, &live);
    if !missing.is_empty() {
        return Err(Error::Usage(format!(
            "plan `{}`: expand has not run on {} (column {} is missing); run the expand and dual-write phases first",
            plan.name,
            plan.table,
            missing
                .iter()
                .map(|c| format!("\"{c}\""))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let options = PlannerOptions {
        state_schema: state_schema.to_string(),
    };
    let schedule = planner::build(plan, &before, &options);
    let Some(spec) = schedule.backfill.clone() else {
        return Ok(None);
    };
    crate::privileges::check(
        client,
        plan,
        &before,
        &schedule,
        &[planner::Phase::Backfill],
        &Ident::new(state_schema),
    )
    .await?;
    let table = plan.table.to_string();
    if !schedule.phase(planner::Phase::DualWrite).is_empty() {
        let trigger = planner::trigger_name(plan);
        if !trigger_installed(client, &table, &trigger).await? {
            return Err(Error::Usage(format!(
                "plan `{}`: the dual-write trigger {trigger} is not installed on {}; run the dual-write phase first, or rows the application writes during the backfill would be left out of sync",
                plan.name, plan.table
            )));
        }
    }
    if let Some((trigger, _)) = &schedule.undo_trigger {
        if !trigger_installed(client, &table, trigger).await? {
            return Err(Error::Usage(format!(
                "plan `{}`: the undo trigger {trigger} is not installed on {}; run the expand phase first, or the values the backfill rewrites in place could not be put back by a rollback",
                plan.name, plan.table
            )));
        }
    }
    Ok(Some(Job::new(plan, spec, &live)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_shows_changed_lines_with_numbers() {
        let d = diff("a\nb\nc\n", "a\nB\nc\nd\n");
        assert_eq!(d, "  line 2: - b\n  line 2: + B\n  line 4: + d");
    }

    #[test]
    fn contract_waits_for_a_later_release_than_the_backfill() {
        let mut rec = Recorded::default();
        let r = |s: &str| s.parse::<Release>().ok();
        assert!(contract_refusal(&rec, r("1.5.0").as_ref(), false).is_some());
        rec.finished.insert(Phase::Backfill, Some("1.4.0".into()));
        assert!(contract_refusal(&rec, r("1.4.0").as_ref(), false).is_some());
        assert!(contract_refusal(&rec, r("1.4.0").as_ref(), true).is_none());
        assert!(contract_refusal(&rec, r("1.5.0").as_ref(), false).is_none());
        assert!(is_due(None, None));
        assert!(!is_due(r("1.5.0").as_ref(), None));
        assert!(is_due(r("1.5.0").as_ref(), r("1.10.0").as_ref()));
    }
}
