//! What the commands that look at or steer plans from any terminal do: `status`, `verify`,
//! `pause`, `resume`, `set`, `export` and `abort`. They work through the state schema, so they
//! see and reach the processes running on other hosts. The binary's command layer parses the
//! command line, calls these and prints what they return.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_postgres::Client;

use crate::engine::Keyset;
use crate::error::{Error, Result};
use crate::executor::{run_steps, ExecOptions};
use crate::plan::Plan;
use crate::planner::{self, Phase, PlannerOptions};
use crate::runner;
use crate::sql::Ident;

use crate::state;
pub use crate::state::status::status;

/// A plan named on the command line: a file to read, or a name.
pub fn plan_name(arg: &str) -> Result<String> {
    let path = Path::new(arg);
    if path.is_file() {
        Ok(Plan::load(path)?.name)
    } else {
        Ok(arg.to_string())
    }
}

/// A plan named on the command line by its file, or by its name (then read back from the text
/// recorded when it first ran).
pub async fn plan_or_recorded(client: &Client, schema: &Ident, arg: &str) -> Result<Plan> {
    let path = Path::new(arg);
    if path.is_file() {
        return Plan::load(path);
    }
    let Some((file, source)) = state::plans::source(client, schema, arg).await? else {
        return Err(Error::Usage(format!(
            "`{arg}` is neither a plan file nor the name of a plan that has run on this database"
        )));
    };
    Ok(Plan::parse(Path::new(&file), &source)?)
}

/// What `verify` found for one plan.
#[derive(Debug)]
pub enum Verified {
    /// Expand has not run: this column it creates is missing.
    NotStarted(String),
    /// The plan moves no data.
    NoData,
    /// The rows read and those out of sync.
    Report(crate::verify::Report),
}

/// `verify` of one plan: the rows its backfill has not brought in sync, read-only, at most
/// `rate` rows per second (0: no limit).
pub async fn verify(
    client: &mut Client,
    schema: &Ident,
    plan: &Plan,
    options: &PlannerOptions,
    rate: u64,
) -> Result<Verified> {
    // The table may be missing (a plan that creates it has not run; one that renamed or
    // dropped it is in flight or done): the schedule then comes from the plan's record.
    let live = crate::db::catalog::table_info(client, &plan.table).await?;
    if let Some(missing) = live
        .as_ref()
        .and_then(|live| planner::missing_after_expand(plan, live).into_iter().next())
    {
        return Ok(Verified::NotStarted(missing));
    }
    let (schedule, catalog) = runner::schedule_for(client, schema, plan, options).await?;
    let Some(spec) = &schedule.backfill else {
        return Ok(Verified::NoData);
    };
    let report = crate::verify::verify(client, spec, &Keyset::of(&catalog)?, rate).await?;
    Ok(Verified::Report(report))
}

/// `pause` (or `resume`, `pause = false`) of the plan `name`. `Ok(false)`: its backfill has
/// finished, there is nothing to pause.
pub async fn pause(client: &Client, schema: &Ident, name: &str, pause: bool) -> Result<bool> {
    if !state::exists(client, schema).await? {
        return Err(Error::Usage(format!(
            "no plan has run on this database yet (no state schema {schema})"
        )));
    }
    let Some(finished) = state::plans::backfill_finished(client, schema, name).await? else {
        return Err(Error::Usage(format!(
            "no plan `{name}` has run on this database"
        )));
    };
    if pause && finished {
        return Ok(false);
    }
    state::plans::set_paused(client, schema, name, pause).await?;
    state::event(
        client,
        schema,
        name,
        None,
        None,
        if pause { "paused" } else { "resumed" },
        "",
    )
    .await?;
    Ok(true)
}

/// `set`: checks `key=value` pairs and stores them with the backfill of plan `name`, where
/// every process working on it picks them up. Returns the changes as `key=value, ...`.
pub async fn set(
    client: &mut Client,
    schema: &Ident,
    name: &str,
    pairs: &[String],
) -> Result<String> {
    let mut changes = serde_json::Map::new();
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(Error::Usage(format!(
                "`{pair}`: write settings as key=value"
            )));
        };
        let value =
            crate::engine::tuning::parse_setting(key.trim(), value.trim()).map_err(Error::Usage)?;
        changes.insert(key.trim().to_string(), value);
    }
    state::ensure(client, schema).await?;
    state::settings::change(client, schema, name, changes).await
}

/// `export`: writes the schedule of each plan (from its recorded catalog when it has started)
/// as `format` files into `out`; Alembic revisions are chained from `down`.
pub async fn export(
    client: &mut Client,
    schema: &Ident,
    plans: &[Plan],
    options: &PlannerOptions,
    format: crate::export::Format,
    out: &Path,
    down: Option<String>,
) -> Result<Vec<PathBuf>> {
    // Chain the plans: each plan's first revision follows the previous plan's last.
    let mut down = down;
    let mut written = Vec::new();
    for plan in plans {
        let schedule = if runner::recorded(client, schema, &plan.name)
            .await?
            .is_some()
        {
            runner::schedule_for(client, schema, plan, options).await?.0
        } else {
            crate::validate::validate(client, plan, options)
                .await?
                .schedule
        };
        written.extend(crate::export::export(
            plan,
            &schedule,
            format,
            out,
            down.as_deref(),
        )?);
        if format == crate::export::Format::Alembic {
            down = Some(crate::export::revision_id(plan, "contract"));
        }
    }
    Ok(written)
}

/// How long `abort` waits for running backfills to stop.
pub const ABORT_WAIT: Duration = Duration::from_secs(60);

/// `abort`: stops a running backfill, rolls back expand and dual-write, forgets the plan's
/// state. Refused once contract has started.
pub async fn abort(client: &mut Client, schema: &Ident, plan: &Plan) -> Result<()> {
    // Brought to this binary's version when it exists; a plan that never ran needs none.
    if state::exists(client, schema).await? {
        state::ensure(client, schema).await?;
    }
    let rec = runner::recorded(client, schema, &plan.name).await?;
    if let Some(rec) = &rec {
        if rec.started.contains(&Phase::Contract) {
            return Err(Error::Usage(format!(
                "plan `{}`: contract has started, so the old schema may already be gone (old column dropped or renamed); abort is only possible before contract. Write a new plan to go back",
                plan.name
            )));
        }
        // Ask running backfills to stop, and wait for them.
        state::plans::set_aborting(client, schema, &plan.name).await?;
        let deadline = std::time::Instant::now() + ABORT_WAIT;
        loop {
            let live = state::runners::alive(client, schema, &plan.name).await?;
            if live == 0 {
                break;
            }
            if std::time::Instant::now() > deadline {
                return Err(Error::Failed(format!(
                    "plan `{}`: {live} processes are still working on it after {}s; stop them and run abort again",
                    plan.name,
                    ABORT_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let options = PlannerOptions {
        state_schema: schema.as_str().to_string(),
    };
    let (schedule, _) = runner::schedule_for(client, schema, plan, &options).await?;
    let exec = ExecOptions::for_plan(plan, crate::metrics::Meter::none());
    runner::lock(
        &*client,
        schema,
        plan,
        &|line| println!("{line}"),
        &crate::engine::Stop::new(),
    )
    .await?;
    run_steps(client, &schedule, &schedule.rollback, "abort", &exec).await?;
    if state::exists(&*client, schema).await? {
        state::plans::forget(client, schema, &plan.name).await?;
        state::event(
            &*client,
            schema,
            &plan.name,
            None,
            None,
            "aborted",
            "expand and dual-write rolled back",
        )
        .await?;
    }
    runner::unlock(&*client, plan).await?;
    Ok(())
}
