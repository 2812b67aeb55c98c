//! The plans' records: `plans` (text, checksum, the catalog at the first run, gates, flags,
//! last error), `phases` (the release each finished at) and `steps` (each DDL step done).

use std::collections::BTreeMap;

use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::planner::Phase;
use crate::sql::Ident;

/// What a plan's state records.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    /// Phases started, with the release at which each finished (`Some(None)`: finished without
    /// a release; absent from `finished`: not finished).
    pub started: Vec<Phase>,
    /// Finished phases and the release given when each finished.
    pub finished: BTreeMap<Phase, Option<String>>,
    /// The recorded plan text.
    pub source: String,
    /// Its checksum.
    pub checksum: String,
    /// The table's catalog when the plan first ran (JSON of
    /// [`crate::db::catalog::TableInfo`]): every later phase, `verify` and `abort` build the
    /// schedule from it, so they run exactly what was planned whatever expand and contract
    /// have changed since.
    pub catalog: String,
}

/// The phase names as stored.
pub fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Expand => "expand",
        Phase::DualWrite => "dual-write",
        Phase::Backfill => "backfill",
        Phase::Contract => "contract",
    }
}

fn phase_of(name: &str) -> Option<Phase> {
    [
        Phase::Expand,
        Phase::DualWrite,
        Phase::Backfill,
        Phase::Contract,
    ]
    .into_iter()
    .find(|p| phase_name(*p) == name)
}

/// Reads a plan's record; `None` when it never ran (or the state schema does not exist).
pub async fn recorded(client: &Client, schema: &Ident, plan: &str) -> Result<Option<Recorded>> {
    let fail =
        |e: tokio_postgres::Error| Error::db(format!("reading the state of plan `{plan}`"), &e);
    if !super::exists(client, schema).await? {
        return Ok(None);
    }
    let Some(row) = client
        .query_opt(
            &format!("SELECT source, checksum, catalog FROM {schema}.plans WHERE plan = $1"),
            &[&plan],
        )
        .await
        .map_err(fail)?
    else {
        return Ok(None);
    };
    let mut rec = Recorded {
        source: row.get(0),
        checksum: row.get(1),
        catalog: row.get(2),
        ..Recorded::default()
    };
    for r in client
        .query(
            &format!("SELECT phase, release, finished_at IS NOT NULL FROM {schema}.phases WHERE plan = $1"),
            &[&plan],
        )
        .await
        .map_err(fail)?
    {
        let Some(phase) = phase_of(r.get(0)) else {
            continue;
        };
        rec.started.push(phase);
        if r.get::<_, bool>(2) {
            rec.finished.insert(phase, r.get(1));
        }
    }
    Ok(Some(rec))
}

/// Plans on `table` (as written in SQL) other than `except` that are in flight: a phase started,
/// the contract not finished. Empty when the state schema does not exist.
pub async fn in_flight_on(
    client: &Client,
    schema: &Ident,
    table: &crate::sql::QualifiedName,
    except: &str,
) -> Result<Vec<String>> {
    if !super::exists(client, schema).await? {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            &format!(
                "SELECT p.plan FROM {schema}.plans p
                  WHERE p.table_name = $1 AND p.plan <> $2
                    AND EXISTS (SELECT FROM {schema}.phases ph WHERE ph.plan = p.plan)
                    AND NOT EXISTS (SELECT FROM {schema}.phases ph
                                     WHERE ph.plan = p.plan AND ph.phase = 'contract' AND ph.finished_at IS NOT NULL)
                  ORDER BY p.plan"
            ),
            &[&table.to_string(), &except],
        )
        .await
        .map_err(|e| Error::db(format!("reading the plans in flight on {table}"), &e))?;
    Ok(rows.into_iter().map(|r| r.get(0)).collect())
}

/// A plan as `run` records it.
#[derive(Debug)]
pub struct PlanRecord<'a> {
    /// The plan's name.
    pub name: &'a str,
    /// Its file.
    pub file: &'a str,
    /// Its text's checksum.
    pub checksum: &'a str,
    /// Its text.
    pub source: &'a str,
    /// The catalog it was planned from (JSON).
    pub catalog: &'a str,
    /// Its table, as written in SQL.
    pub table: &'a str,
    /// Its expand gate.
    pub expand_release: Option<String>,
    /// Its contract gate.
    pub contract_release: Option<String>,
    /// Keep the catalog recorded earlier (the plan has started): only the text changes.
    pub keep_catalog: bool,
}

/// Records a plan (inserted on its first run, its text updated later).
pub async fn record(client: &Client, schema: &Ident, p: &PlanRecord<'_>) -> Result<()> {
    client
        .execute(
            &format!(
                "INSERT INTO {schema}.plans AS p (plan, file, checksum, source, catalog, table_name, expand_release, contract_release)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (plan) DO UPDATE SET file = EXCLUDED.file, checksum = EXCLUDED.checksum, source = EXCLUDED.source,
                   catalog = CASE WHEN $9 THEN p.catalog ELSE EXCLUDED.catalog END,
                   expand_release = EXCLUDED.expand_release, contract_release = EXCLUDED.contract_release, updated_at = now()"
            ),
            &[
                &p.name,
                &p.file,
                &p.checksum,
                &p.source,
                &p.catalog,
                &p.table,
                &p.expand_release,
                &p.contract_release,
                &p.keep_catalog,
            ],
        )
        .await
        .map_err(|e| Error::db(format!("recording plan `{}`", p.name), &e))?;
    Ok(())
}

/// Sets (or, with `None`, clears) the plan's last error.
pub async fn set_last_error(
    client: &Client,
    schema: &Ident,
    plan: &str,
    error: Option<&str>,
) -> Result<()> {
    client
        .execute(
            &format!(
                "UPDATE {schema}.plans SET last_error = $2, updated_at = now() WHERE plan = $1"
            ),
            &[&plan, &error],
        )
        .await
        .map_err(|e| Error::db("recording the plan", &e))?;
    Ok(())
}

/// Records that this process starts `phase` (the first to start it is recorded).
pub async fn start_phase(client: &Client, schema: &Ident, plan: &str, phase: Phase) -> Result<()> {
    client
        .execute(
            &format!(
                "INSERT INTO {schema}.phases (plan, phase, host, pid) VALUES ($1, $2, $3, $4) ON CONFLICT (plan, phase) DO NOTHING"
            ),
            &[&plan, &phase_name(phase), &super::host(), &super::pid()],
        )
        .await
        .map_err(|e| Error::db("recording a phase", &e))?;
    Ok(())
}

/// Records that `phase` finished at `release`; `true` for the first process to record it
/// (several runners may share a backfill).
pub async fn finish_phase(
    client: &Client,
    schema: &Ident,
    plan: &str,
    phase: Phase,
    release: Option<&str>,
) -> Result<bool> {
    let n = client
        .execute(
            &format!("UPDATE {schema}.phases SET finished_at = now(), release = $3 WHERE plan = $1 AND phase = $2 AND finished_at IS NULL"),
            &[&plan, &phase_name(phase), &release],
        )
        .await
        .map_err(|e| Error::db("recording a phase", &e))?;
    Ok(n > 0)
}

/// The steps of `phase` recorded as done.
pub async fn steps_done(
    client: &Client,
    schema: &Ident,
    plan: &str,
    phase: Phase,
) -> Result<Vec<i32>> {
    Ok(client
        .query(
            &format!("SELECT step FROM {schema}.steps WHERE plan = $1 AND phase = $2"),
            &[&plan, &phase_name(phase)],
        )
        .await
        .map_err(|e| Error::db("reading the steps done", &e))?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// The statement that records a step as done, with its parameters in this order: plan,
/// phase, step, description, host, pid. The executor runs it inside the step's own
/// transaction, so a step and its record commit together.
pub fn step_record_sql(schema: &Ident) -> String {
    format!(
        "INSERT INTO {schema}.steps (plan, phase, step, description, host, pid) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING"
    )
}

/// The file and text recorded for the plan `name`, when it has run.
pub async fn source(
    client: &Client,
    schema: &Ident,
    name: &str,
) -> Result<Option<(String, String)>> {
    if !super::exists(client, schema).await? {
        return Ok(None);
    }
    Ok(client
        .query_opt(
            &format!("SELECT file, source FROM {schema}.plans WHERE plan = $1"),
            &[&name],
        )
        .await
        .map_err(|e| Error::db(format!("reading plan `{name}`"), &e))?
        .map(|r| (r.get(0), r.get(1))))
}

/// Whether the plan's backfill has finished; `None` when no plan of that name has run.
pub async fn backfill_finished(
    client: &Client,
    schema: &Ident,
    name: &str,
) -> Result<Option<bool>> {
    Ok(client
        .query_opt(
            &format!(
                "SELECT EXISTS (SELECT FROM {schema}.phases WHERE plan = $1 AND phase = 'backfill' AND finished_at IS NOT NULL)
                   FROM {schema}.plans WHERE plan = $1"
            ),
            &[&name],
        )
        .await
        .map_err(|e| Error::db("reading the plan", &e))?
        .map(|r| r.get(0)))
}

/// Sets the plan's pause flag (workers hold at their next chunk while it is set).
pub async fn set_paused(client: &Client, schema: &Ident, name: &str, paused: bool) -> Result<()> {
    client
        .execute(
            &format!("UPDATE {schema}.plans SET paused = $2, updated_at = now() WHERE plan = $1"),
            &[&name, &paused],
        )
        .await
        .map_err(|e| Error::db("pausing", &e))?;
    Ok(())
}

/// Asks every process working on the plan to stop (`abort`).
pub async fn set_aborting(client: &Client, schema: &Ident, name: &str) -> Result<()> {
    client
        .execute(
            &format!("UPDATE {schema}.plans SET aborting = true WHERE plan = $1"),
            &[&name],
        )
        .await
        .map_err(|e| Error::db("aborting", &e))?;
    Ok(())
}

/// Forgets the plan's state (its record, backfill and processes; the events log keeps its
/// story). One statement per table: a state schema's name may hold a `;`.
pub async fn forget(client: &Client, schema: &Ident, name: &str) -> Result<()> {
    for table in ["plans", "backfills", "runners"] {
        client
            .execute(
                &format!(
                    "DELETE FROM {} WHERE plan = $1",
                    super::table(schema, table)
                ),
                &[&name],
            )
            .await
            .map_err(|e| Error::db("forgetting the plan's state", &e))?;
    }
    Ok(())
}

/// A finished backfill's totals: rows walked, rows changed, and how long the phase took in
/// seconds (0 when it has not finished).
pub async fn backfill_totals(
    client: &Client,
    schema: &Ident,
    plan: &str,
) -> Result<(i64, i64, f64)> {
    let row = client
        .query_one(
            &format!(
                "SELECT (SELECT coalesce(sum(rows_seen), 0)::int8 FROM {schema}.segments WHERE plan = $1),
                        (SELECT coalesce(sum(rows_changed), 0)::int8 FROM {schema}.segments WHERE plan = $1),
                        (SELECT extract(epoch FROM finished_at - started_at)::float8 FROM {schema}.phases WHERE plan = $1 AND phase = 'backfill')"
            ),
            &[&plan],
        )
        .await
        .map_err(|e| Error::db("reading the backfill's record", &e))?;
    Ok((
        row.get(0),
        row.get(1),
        row.get::<_, Option<f64>>(2).unwrap_or(0.0),
    ))
}
