//! What the commands that look at or steer plans from any terminal do: `status`, `verify`,
//! `pause`, `resume`, `set`, `export` and `abort`. They work through the state schema, so they
//! see and reach the processes running on other hosts. The binary's command layer parses the
//! command line, calls these and prints what they return.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use tokio_postgres::Client;

use crate::db::catalog;
use crate::engine::Keyset;
use crate::error::{Error, Result};
use crate::executor::{run_steps, ExecOptions};
use crate::plan::Plan;
use crate::planner::{self, Phase, PlannerOptions};
use crate::runner::{self, phase_name};
use crate::sql::{Ident, QualifiedName};
use crate::state::{self, HEARTBEAT_TTL_SECONDS};

/// The status of `names` (every recorded plan when empty), as JSON objects.
pub async fn status(client: &Client, schema: &Ident, names: &[String]) -> Result<Vec<Value>> {
    let fail = |e: tokio_postgres::Error| Error::db("reading the state schema", &e);
    let rows = client
        .query(
            &format!(
                "SELECT plan, file, table_name, expand_release, contract_release, paused, last_error
                   FROM {schema}.plans WHERE cardinality($1::text[]) = 0 OR plan = ANY($1) ORDER BY file, plan"
            ),
            &[&names],
        )
        .await
        .map_err(fail)?;
    let mut out = Vec::new();
    for name in names {
        if !rows.iter().any(|r| r.get::<_, String>(0) == *name) {
            out.push(json!({ "plan": name, "started": false }));
        }
    }
    for r in &rows {
        let plan: String = r.get(0);
        let expand_release: Option<String> = r.get(3);
        let contract_release: Option<String> = r.get(4);
        let phases = client
            .query(
                &format!("SELECT phase, release, finished_at IS NOT NULL, to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), host, pid FROM {schema}.phases WHERE plan = $1"),
                &[&plan],
            )
            .await
            .map_err(fail)?;
        let mut phase_list = Vec::new();
        let mut current: Option<&str> = None;
        for phase in [
            Phase::Expand,
            Phase::DualWrite,
            Phase::Backfill,
            Phase::Contract,
        ] {
            let name = phase_name(phase);
            let gate = if phase == Phase::Contract {
                contract_release.clone()
            } else {
                expand_release.clone()
            };
            let row = phases.iter().find(|p| p.get::<_, String>(0) == name);
            let (status, release, at, by) = match row {
                Some(p) if p.get::<_, bool>(2) => (
                    "done",
                    p.get::<_, Option<String>>(1),
                    p.get::<_, Option<String>>(3),
                    Some(format!(
                        "{} pid {}",
                        p.get::<_, Option<String>>(4).unwrap_or_default(),
                        p.get::<_, Option<i32>>(5).unwrap_or(0)
                    )),
                ),
                Some(_) => ("running", None, None, None),
                None => ("pending", None, None, None),
            };
            if status != "done" && current.is_none() {
                current = Some(name);
            }
            phase_list.push(json!({
                "phase": name, "status": status, "release": release, "finished_at": at,
                "by": by, "due_from": gate,
            }));
        }
        let backfill = client
            .query_opt(
                &format!(
                    "SELECT b.row_estimate, coalesce(sum(s.rows_seen), 0)::int8, count(s.*) FILTER (WHERE NOT s.done), count(s.*), b.finished_at IS NOT NULL
                       FROM {schema}.backfills b LEFT JOIN {schema}.segments s ON s.plan = b.plan
                      WHERE b.plan = $1 GROUP BY b.row_estimate, b.finished_at"
                ),
                &[&plan],
            )
            .await
            .map_err(fail)?;
        let processes = client
            .query(
                &format!(
                    "SELECT host, pid, phase, workers, rows_done, rate, extract(epoch FROM now() - heartbeat_at)::float8
                       FROM {schema}.runners WHERE plan = $1 AND heartbeat_at > now() - make_interval(secs => $2)
                      ORDER BY host, pid"
                ),
                &[&plan, &HEARTBEAT_TTL_SECONDS],
            )
            .await
            .map_err(fail)?;
        // `+ 0.0`: an empty sum of floats is -0.0.
        let rate: f64 = processes
            .iter()
            .filter_map(|p| p.get::<_, Option<f64>>(5))
            .sum::<f64>()
            + 0.0;
        let paused: bool = r.get(5);
        let table: String = r.get(2);
        let table = QualifiedName::from_quoted(&table)
            .map(|q| q.plain())
            .unwrap_or(table);
        let backfill_json = backfill.map(|b| {
            let done: i64 = b.get(1);
            let finished: bool = b.get(4);
            // The estimate was taken at the start; the rows walked are the truth once done.
            let estimate: i64 = if finished {
                done
            } else {
                b.get::<_, i64>(0).max(done)
            };
            let left = (estimate - done).max(0) as f64;
            let moving = rate >= 1.0 && !finished && !paused;
            json!({
                "rows_done": done,
                "rows_estimate": estimate,
                "percent": if estimate > 0 { 100.0 * done as f64 / estimate as f64 } else { 100.0 },
                "segments_left": b.get::<_, i64>(2),
                "segments": b.get::<_, i64>(3),
                "finished": finished,
                "rows_per_second": if paused { 0.0 } else { rate },
                "eta_seconds": if moving { Some(left / rate) } else { None },
            })
        });
        let refused: Option<String> = client
            .query_opt(
                &format!(
                    "SELECT detail FROM {schema}.events WHERE plan = $1 AND phase = 'contract' AND kind = 'refused'
                        AND NOT EXISTS (SELECT FROM {schema}.phases WHERE plan = $1 AND phase = 'contract')
                      ORDER BY id DESC LIMIT 1"
                ),
                &[&plan],
            )
            .await
            .map_err(fail)?
            .map(|row| row.get(0));
        if let (Some(why), Some(contract)) = (&refused, phase_list.last_mut()) {
            contract["refused"] = json!(why);
        }
        out.push(json!({
            "plan": plan,
            "started": true,
            "file": r.get::<_, String>(1),
            "table": table,
            "phase": current.unwrap_or("done"),
            "phases": phase_list,
            "paused": paused,
            "backfill": backfill_json,
            "processes": processes.iter().map(|p| json!({
                "host": p.get::<_, String>(0),
                "pid": p.get::<_, i32>(1),
                "phase": p.get::<_, Option<String>>(2),
                "workers": p.get::<_, Option<i32>>(3),
                "rows_done": p.get::<_, Option<i64>>(4),
                "rows_per_second": p.get::<_, Option<f64>>(5),
                "heartbeat_seconds_ago": p.get::<_, Option<f64>>(6),
            })).collect::<Vec<_>>(),
            "last_error": r.get::<_, Option<String>>(6),
        }));
    }
    Ok(out)
}

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
    let row = if state::exists(client, schema).await? {
        client
            .query_opt(
                &format!("SELECT file, source FROM {schema}.plans WHERE plan = $1"),
                &[&arg],
            )
            .await
            .map_err(|e| Error::db(format!("reading plan `{arg}`"), &e))?
    } else {
        None
    };
    let Some(row) = row else {
        return Err(Error::Usage(format!(
            "`{arg}` is neither a plan file nor the name of a plan that has run on this database"
        )));
    };
    let (file, source): (String, String) = (row.get(0), row.get(1));
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
    let Some(live) = catalog::table_info(client, &plan.table).await? else {
        return Err(Error::Usage(format!(
            "plan `{}`: table {} does not exist",
            plan.name, plan.table
        )));
    };
    if let Some(missing) = planner::missing_after_expand(plan, &live)
        .into_iter()
        .next()
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
    let Some(row) = client
        .query_opt(
            &format!(
                "SELECT EXISTS (SELECT FROM {schema}.phases WHERE plan = $1 AND phase = 'backfill' AND finished_at IS NOT NULL)
                   FROM {schema}.plans WHERE plan = $1"
            ),
            &[&name],
        )
        .await
        .map_err(|e| Error::db("pausing", &e))?
    else {
        return Err(Error::Usage(format!(
            "no plan `{name}` has run on this database"
        )));
    };
    if pause && row.get::<_, bool>(0) {
        return Ok(false);
    }
    client
        .execute(
            &format!("UPDATE {schema}.plans SET paused = $2, updated_at = now() WHERE plan = $1"),
            &[&name, &pause],
        )
        .await
        .map_err(|e| Error::db("pausing", &e))?;
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
            crate::engine::live::parse_setting(key.trim(), value.trim()).map_err(Error::Usage)?;
        changes.insert(key.trim().to_string(), value);
    }
    state::ensure(client, schema).await?;
    let fail = |e: tokio_postgres::Error| Error::db("changing settings", &e);
    let tx = client.transaction().await.map_err(fail)?;
    let Some(row) = tx
        .query_opt(
            &format!("SELECT settings FROM {schema}.backfills WHERE plan = $1 FOR UPDATE"),
            &[&name],
        )
        .await
        .map_err(fail)?
    else {
        return Err(Error::Usage(format!(
            "plan `{name}` has no backfill on this database yet: settings apply to a backfill that has started"
        )));
    };
    let mut settings: serde_json::Map<String, Value> =
        serde_json::from_str(&row.get::<_, String>(0)).unwrap_or_default();
    let described: Vec<String> = changes
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                if v.is_null() {
                    "off".to_string()
                } else {
                    v.to_string().trim_matches('"').to_string()
                }
            )
        })
        .collect();
    settings.extend(changes);
    if let (Some(min), Some(max)) = (
        settings.get("min_batch_size").and_then(Value::as_u64),
        settings.get("max_batch_size").and_then(Value::as_u64),
    ) {
        if min > max {
            return Err(Error::Usage(format!(
                "min_batch_size ({min}) would be above max_batch_size ({max})"
            )));
        }
    }
    tx.execute(
        &format!("UPDATE {schema}.backfills SET settings = $2 WHERE plan = $1"),
        &[&name, &Value::Object(settings).to_string()],
    )
    .await
    .map_err(fail)?;
    tx.commit().await.map_err(fail)?;
    state::event(
        &*client,
        schema,
        name,
        Some("backfill"),
        None,
        "settings",
        &described.join(", "),
    )
    .await?;
    Ok(described.join(", "))
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
        client
            .execute(
                &format!("UPDATE {schema}.plans SET aborting = true WHERE plan = $1"),
                &[&plan.name],
            )
            .await
            .map_err(|e| Error::db("aborting", &e))?;
        let deadline = std::time::Instant::now() + ABORT_WAIT;
        loop {
            let live: i64 = client
                .query_one(
                    &format!("SELECT count(*) FROM {schema}.runners WHERE plan = $1 AND heartbeat_at > now() - make_interval(secs => $2)"),
                    &[&plan.name, &HEARTBEAT_TTL_SECONDS],
                )
                .await
                .map_err(|e| Error::db("aborting", &e))?
                .get(0);
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
    let exec = ExecOptions {
        lock_timeout: plan.backfill.lock_timeout,
        retries: plan.backfill.ddl_retries,
    };
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
        // One statement per table: a state schema's name may hold a `;`.
        for table in ["plans", "backfills", "runners"] {
            client
                .execute(
                    &format!(
                        "DELETE FROM {} WHERE plan = $1",
                        state::table(schema, table)
                    ),
                    &[&plan.name],
                )
                .await
                .map_err(|e| Error::db("forgetting the plan's state", &e))?;
        }
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
