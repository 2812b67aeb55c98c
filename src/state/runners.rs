//! The processes working on a plan (`runners`): each records itself, beats every second, and
//! leaves when it ends, so `status` and a second runner see who is at work, on any host.

use tokio_postgres::Client;

use super::{host, pid, HEARTBEAT_TTL_SECONDS};
use crate::error::{Error, Result};
use crate::sql::Ident;

/// Registers this process as working on `plan` in `phase`.
pub async fn announce(
    client: &Client,
    schema: &Ident,
    plan: &str,
    phase: &str,
    workers: i32,
) -> Result<()> {
    client
        .execute(
            &format!(
                "INSERT INTO {schema}.runners (plan, host, pid, phase, workers) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (plan, host, pid) DO UPDATE SET phase = EXCLUDED.phase, workers = EXCLUDED.workers, heartbeat_at = now()"
            ),
            &[&plan, &host(), &pid(), &phase, &workers],
        )
        .await
        .map_err(|e| Error::db("recording this process", &e))?;
    Ok(())
}

/// Removes this process from the plan's runners (best effort: a dead process is recognised
/// by its stale heartbeat anyway).
pub async fn retire(client: &Client, schema: &Ident, plan: &str) {
    let _ = client
        .execute(
            &format!("DELETE FROM {schema}.runners WHERE plan = $1 AND host = $2 AND pid = $3"),
            &[&plan, &host(), &pid()],
        )
        .await;
}

/// Another process working on the plan, as `host pid N (phase)`, for the message of a runner
/// waiting for the plan's lock.
pub async fn other(client: &Client, schema: &Ident, plan: &str) -> Option<String> {
    client
        .query_opt(
            &format!(
                "SELECT host || ' pid ' || pid || coalesce(' (' || phase || ')', '') FROM {schema}.runners
                  WHERE plan = $1 AND NOT (host = $2 AND pid = $3) ORDER BY heartbeat_at DESC LIMIT 1"
            ),
            &[&plan, &host(), &pid()],
        )
        .await
        .ok()
        .flatten()
        .map(|r| r.get::<_, String>(0))
}

/// What a heartbeat reads back: the plan's flags and the backfill's progress, every process
/// together.
#[derive(Debug, Clone, Copy)]
pub struct Beat {
    /// `backfill pause` is in force.
    pub paused: bool,
    /// `backfill abort` asks the processes to stop.
    pub aborting: bool,
    /// Rows walked so far, all processes together.
    pub rows_done: i64,
    /// Segments not finished (none before the backfill starts).
    pub segments_left: Option<i64>,
}

/// Records this process's heartbeat, its rows, rate and figures (JSON, see
/// [`crate::metrics::Figures`]), and reads the plan's flags back.
pub async fn heartbeat(
    client: &Client,
    schema: &Ident,
    plan: &str,
    rate: f64,
    figures: Option<&str>,
) -> Result<Option<Beat>> {
    let row = client
        .query_opt(
            &format!(
                "WITH _bf_done AS (
                   SELECT coalesce(sum(rows_seen), 0)::int8 AS n, count(*) FILTER (WHERE NOT done) AS left_, count(*) AS segments
                     FROM {schema}.segments WHERE plan = $1),
                 _bf_me AS (
                   UPDATE {schema}.runners SET heartbeat_at = now(), rows_done = (SELECT n FROM _bf_done), rate = $4,
                          figures = coalesce($5::text::jsonb, figures)
                    WHERE plan = $1 AND host = $2 AND pid = $3)
                 SELECT p.paused, p.aborting, d.n, CASE WHEN d.segments > 0 THEN d.left_ END
                   FROM {schema}.plans p, _bf_done d WHERE p.plan = $1"
            ),
            &[&plan, &host(), &pid(), &rate, &figures],
        )
        .await
        .map_err(|e| Error::db("recording the heartbeat", &e))?;
    Ok(row.map(|r| Beat {
        paused: r.get(0),
        aborting: r.get(1),
        rows_done: r.get(2),
        segments_left: r.get(3),
    }))
}

/// How many processes with a fresh heartbeat work on the plan.
pub async fn alive(client: &Client, schema: &Ident, plan: &str) -> Result<i64> {
    Ok(client
        .query_one(
            &format!("SELECT count(*) FROM {schema}.runners WHERE plan = $1 AND heartbeat_at > now() - make_interval(secs => $2)"),
            &[&plan, &HEARTBEAT_TTL_SECONDS],
        )
        .await
        .map_err(|e| Error::db("reading the processes of a plan", &e))?
        .get(0))
}
