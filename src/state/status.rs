//! What `status` reads: every plan's phases, backfill progress, processes, last error and a
//! contract refused, as typed records (the command layer prints them as text, or as JSON
//! through serde).

use serde::Serialize;
use tokio_postgres::{Client, Row};

use super::{phase_name, HEARTBEAT_TTL_SECONDS};
use crate::error::{Error, Result};
use crate::planner::Phase;
use crate::sql::{Ident, QualifiedName};

/// One plan's status. A plan named on the command line that never ran has `started: false`
/// and nothing else.
#[derive(Debug, Clone, Serialize)]
pub struct PlanStatus {
    /// The plan's name.
    pub plan: String,
    /// Whether it has run on this database.
    pub started: bool,
    /// The rest, for a plan that has run.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub detail: Option<PlanDetail>,
}

/// The status of a plan that has run.
#[derive(Debug, Clone, Serialize)]
pub struct PlanDetail {
    /// Its file when it last ran.
    pub file: String,
    /// Its table, `schema.table` without quotes.
    pub table: String,
    /// The first phase not done (`done` when every one is).
    pub phase: String,
    /// Every phase.
    pub phases: Vec<PhaseStatus>,
    /// `backfill pause` is in force.
    pub paused: bool,
    /// The backfill's progress, once it started.
    pub backfill: Option<BackfillStatus>,
    /// The processes working on it now (fresh heartbeat).
    pub processes: Vec<ProcessStatus>,
    /// The last error of a run, until a phase finishes after it.
    pub last_error: Option<String>,
}

/// One phase of a plan.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseStatus {
    /// `expand`, `dual-write`, `backfill`, `contract`.
    pub phase: String,
    /// `done`, `running` or `pending`.
    pub status: String,
    /// The release it finished at.
    pub release: Option<String>,
    /// When it finished, RFC 3339 in UTC.
    pub finished_at: Option<String>,
    /// The process that finished it (`host pid N`).
    pub by: Option<String>,
    /// The release it is due from.
    pub due_from: Option<String>,
    /// Why its contract was refused, while it has not started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// A backfill's progress.
#[derive(Debug, Clone, Serialize)]
pub struct BackfillStatus {
    /// Rows walked, every process together.
    pub rows_done: i64,
    /// The estimate taken at the start (the rows walked, once finished).
    pub rows_estimate: i64,
    /// `rows_done` of `rows_estimate`, in percent.
    pub percent: f64,
    /// Segments not walked yet.
    pub segments_left: i64,
    /// Every segment.
    pub segments: i64,
    /// Whether every segment is done.
    pub finished: bool,
    /// The rate of every process together (0 while paused).
    pub rows_per_second: f64,
    /// The time left at that rate, while it moves.
    pub eta_seconds: Option<f64>,
}

/// A process working on a plan.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessStatus {
    /// Its host (`BACKFILL_HOST` or the machine's name).
    pub host: String,
    /// Its pid.
    pub pid: i32,
    /// The phase it works on.
    pub phase: Option<String>,
    /// Its workers.
    pub workers: Option<i32>,
    /// Rows walked as it last saw them.
    pub rows_done: Option<i64>,
    /// Its rate.
    pub rows_per_second: Option<f64>,
    /// Seconds since its last heartbeat.
    pub heartbeat_seconds_ago: Option<f64>,
    /// Its live figures as of that heartbeat: the same numbers its `--metrics-addr`
    /// endpoint serves.
    pub figures: Option<crate::metrics::Figures>,
}

/// The status of `names` (every recorded plan when empty).
pub async fn status(client: &Client, schema: &Ident, names: &[String]) -> Result<Vec<PlanStatus>> {
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
    let mut out: Vec<PlanStatus> = names
        .iter()
        .filter(|n| !rows.iter().any(|r| r.get::<_, String>(0) == **n))
        .map(|n| PlanStatus {
            plan: n.clone(),
            started: false,
            detail: None,
        })
        .collect();
    for r in &rows {
        out.push(plan_status(client, schema, r).await?);
    }
    Ok(out)
}

fn fail(e: tokio_postgres::Error) -> Error {
    Error::db("reading the state schema", &e)
}

async fn plan_status(client: &Client, schema: &Ident, r: &Row) -> Result<PlanStatus> {
    let plan: String = r.get(0);
    let paused: bool = r.get(5);
    let mut phases = phases(client, schema, &plan, r.get(3), r.get(4)).await?;
    if let Some(contract) = phases.last_mut() {
        contract.refused = refused(client, schema, &plan).await?;
    }
    let processes = processes(client, schema, &plan).await?;
    // `+ 0.0`: an empty sum of floats is -0.0.
    let rate: f64 = processes
        .iter()
        .filter_map(|p| p.rows_per_second)
        .sum::<f64>()
        + 0.0;
    let backfill = backfill(client, schema, &plan, rate, paused).await?;
    let table: String = r.get(2);
    let table = QualifiedName::from_quoted(&table)
        .map(|q| q.plain())
        .unwrap_or(table);
    let phase = phases
        .iter()
        .find(|p| p.status != "done")
        .map_or_else(|| "done".to_string(), |p| p.phase.clone());
    Ok(PlanStatus {
        plan,
        started: true,
        detail: Some(PlanDetail {
            file: r.get(1),
            table,
            phase,
            phases,
            paused,
            backfill,
            processes,
            last_error: r.get(6),
        }),
    })
}

async fn phases(
    client: &Client,
    schema: &Ident,
    plan: &str,
    expand_release: Option<String>,
    contract_release: Option<String>,
) -> Result<Vec<PhaseStatus>> {
    let rows = client
        .query(
            &format!("SELECT phase, release, finished_at IS NOT NULL, to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), host, pid FROM {schema}.phases WHERE plan = $1"),
            &[&plan],
        )
        .await
        .map_err(fail)?;
    let mut out = Vec::new();
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
        let row = rows.iter().find(|p| p.get::<_, String>(0) == name);
        let done = row.is_some_and(|p| p.get::<_, bool>(2));
        out.push(PhaseStatus {
            phase: name.to_string(),
            status: match (row, done) {
                (Some(_), true) => "done",
                (Some(_), false) => "running",
                (None, _) => "pending",
            }
            .to_string(),
            release: row.filter(|_| done).and_then(|p| p.get(1)),
            finished_at: row.filter(|_| done).and_then(|p| p.get(3)),
            by: row.filter(|_| done).map(|p| {
                format!(
                    "{} pid {}",
                    p.get::<_, Option<String>>(4).unwrap_or_default(),
                    p.get::<_, Option<i32>>(5).unwrap_or(0)
                )
            }),
            due_from: gate,
            refused: None,
        });
    }
    Ok(out)
}

/// Why the contract was last refused, while it has not started.
async fn refused(client: &Client, schema: &Ident, plan: &str) -> Result<Option<String>> {
    Ok(client
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
        .and_then(|row| row.get(0)))
}

async fn processes(client: &Client, schema: &Ident, plan: &str) -> Result<Vec<ProcessStatus>> {
    Ok(client
        .query(
            &format!(
                "SELECT host, pid, phase, workers, rows_done, rate, extract(epoch FROM now() - heartbeat_at)::float8, figures::text
                   FROM {schema}.runners WHERE plan = $1 AND heartbeat_at > now() - make_interval(secs => $2)
                  ORDER BY host, pid"
            ),
            &[&plan, &HEARTBEAT_TTL_SECONDS],
        )
        .await
        .map_err(fail)?
        .iter()
        .map(|p| ProcessStatus {
            host: p.get(0),
            pid: p.get(1),
            phase: p.get(2),
            workers: p.get(3),
            rows_done: p.get(4),
            rows_per_second: p.get(5),
            heartbeat_seconds_ago: p.get(6),
            figures: p
                .get::<_, Option<String>>(7)
                .and_then(|f| serde_json::from_str(&f).ok()),
        })
        .collect())
}

async fn backfill(
    client: &Client,
    schema: &Ident,
    plan: &str,
    rate: f64,
    paused: bool,
) -> Result<Option<BackfillStatus>> {
    let row = client
        .query_opt(
            &format!(
                "SELECT row_estimate, finished_at IS NOT NULL FROM {schema}.backfills WHERE plan = $1"
            ),
            &[&plan],
        )
        .await
        .map_err(fail)?;
    let Some(b) = row else {
        return Ok(None);
    };
    let (recorded, finished): (i64, bool) = (b.get(0), b.get(1));
    let segments = super::segments::progress(client, schema, plan)
        .await
        .map_err(fail)?;
    let done: i64 = segments.iter().map(|s| s.rows_seen).sum();
    let left_segments = segments.iter().filter(|s| !s.done).count() as i64;
    // The rows walked are the truth once done; until then the estimate taken at the start, or
    // once the walk passed it, what the segments' progress says (never the rows walked so far
    // as if they were all: a never-analyzed table is often underestimated).
    let estimate = if finished {
        done
    } else {
        super::segments::estimate(recorded, &segments)
    };
    let left = (estimate - done).max(0) as f64;
    let moving = rate >= 1.0 && !finished && !paused && left > 0.0;
    let percent = if finished {
        100.0
    } else if estimate > 0 {
        // Not 100% while a segment is left, however close.
        (100.0 * done as f64 / estimate as f64).min(99.9)
    } else {
        0.0
    };
    Ok(Some(BackfillStatus {
        rows_done: done,
        rows_estimate: estimate,
        percent,
        segments_left: left_segments,
        segments: segments.len() as i64,
        finished,
        rows_per_second: if paused { 0.0 } else { rate },
        eta_seconds: moving.then(|| left / rate),
    }))
}
