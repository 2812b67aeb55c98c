//! Runs a schedule's steps: every statement under `lock_timeout`, transactional steps in one
//! transaction, concurrent index builds outside any, and a step that cannot get its lock gives
//! up within `lock_timeout`, waits with jittered backoff and tries again, so it never sits in the
//! lock queue in front of the application's queries for long.
//!
//! Each statement is sent on its own through the extended protocol, which PostgreSQL refuses
//! to run when the text holds more than one statement: whatever a plan puts into a statement,
//! it cannot add another.

use std::time::Duration;

use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::planner::{BackfillSpec, Schedule, Step, StepMode};
use crate::shutdown::Stop;

/// SQLSTATEs worth retrying: the statement lost a race, not an argument.
pub const RETRYABLE: &[&str] = &[
    "55P03", // lock_not_available: lock_timeout expired
    "40001", // serialization_failure
    "40P01", // deadlock_detected
    "57P01", // admin_shutdown
];

/// First retry delay; doubles on each attempt up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// How steps run.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// `lock_timeout` of every statement.
    pub lock_timeout: Duration,
    /// Retries after the first attempt for lock timeouts and other retryable failures.
    pub retries: u32,
    /// Counts the lock waits (`Meter::none()` counts nothing).
    pub meter: crate::metrics::Meter,
}

impl ExecOptions {
    /// The DDL settings of `plan` (`lock_timeout`, `ddl_retries`), its lock waits counted by
    /// `meter`.
    pub fn for_plan(plan: &crate::plan::Plan, meter: crate::metrics::Meter) -> ExecOptions {
        ExecOptions {
            lock_timeout: plan.backfill.lock_timeout,
            retries: plan.backfill.ddl_retries,
            meter,
        }
    }
}

/// The delay before retry `attempt` (1-based): capped exponential, with up to half of it as
/// jitter so that several waiting runners do not retry in lockstep.
pub fn backoff(attempt: u32) -> Duration {
    let base = FIRST_BACKOFF
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    base / 2 + base.mul_f64(f64::from(nanos % 1000) / 2000.0)
}

/// A statement that records a step as done: run in the step's own transaction when it has one
/// (so the step and its record commit together), right after it otherwise.
pub type Record<'a> = (&'a str, &'a [&'a (dyn ToSql + Sync)]);

/// Runs one step, retrying retryable failures. `context` names the step in errors.
pub async fn run_step(
    client: &mut Client,
    step: &Step,
    table: &str,
    options: &ExecOptions,
    context: &str,
) -> Result<()> {
    run_step_recorded(client, step, table, options, context, None, &Stop::new()).await
}

/// The error of a step stopped by `stop` before it finished: nothing of it was committed.
fn interrupted(context: &str) -> Error {
    Error::Interrupted {
        progress: format!(
            "{context} was stopped; a step that had not finished is rolled back or left for the rerun to redo"
        ),
        resume: String::new(),
    }
}

/// As [`run_step`], and records the step with `record` (see [`Record`]). When `stop` is
/// triggered, a statement waiting for its lock (or the wait between two attempts) ends within
/// moments: the statement is cancelled on the server, its transaction rolls back, and the step
/// ends with [`Error::Interrupted`].
pub async fn run_step_recorded(
    client: &mut Client,
    step: &Step,
    table: &str,
    options: &ExecOptions,
    context: &str,
    record: Option<Record<'_>>,
    stop: &Stop,
) -> Result<()> {
    let mut attempt = 0;
    tracing::info!(step = context, "running");
    loop {
        if stop.is_set() {
            return Err(interrupted(context));
        }
        let cancel = client.cancel_token();
        let result = {
            let once = run_step_once(client, step, options, context, record);
            tokio::pin!(once);
            tokio::select! {
            r = &mut once => r,
            () = stop.wait() => {
                // Cancel the statement waiting (or working) on the server, then let the step
                // end on its own: a cancelled statement rolls its transaction back, and a step
                // that was already committing finishes with its record. A cancel request needs
                // no authentication, and servers take it without TLS.
                let _ = cancel.cancel_query(tokio_postgres::NoTls).await;
                let _ = once.await;
                return Err(interrupted(context));
            }
            }
        };
        match result {
            Err(e) if is_retryable(&e) && attempt < options.retries => {
                attempt += 1;
                let wait = backoff(attempt);
                let blocker = if e.sqlstate() == Some("55P03") {
                    options.meter.ddl_lock_wait(options.lock_timeout + wait);
                    blockers(client, table).await
                } else {
                    String::new()
                };
                tracing::warn!(step = context, attempt, wait_ms = wait.as_millis() as u64, error = %e, %blocker, "could not run; waiting and trying again");
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = stop.wait() => return Err(interrupted(context)),
                }
            }
            Err(e) if e.sqlstate() == Some("55P03") => {
                return Err(Error::LockTimeout {
                    context: context.to_string(),
                    table: table.to_string(),
                    attempts: attempt + 1,
                    lock_timeout_ms: options.lock_timeout.as_millis() as u64,
                    holders: blockers(client, table).await,
                })
            }
            other => return other,
        }
    }
}

/// The sessions holding locks on `table` (other than this one), oldest transaction first, for
/// the messages of a step that cannot get its lock: `pid 4242 (user app, application psql,
/// idle in transaction for 35s: UPDATE users ...)`. Empty when none is seen or the lookup fails.
pub async fn blockers(client: &Client, table: &str) -> String {
    let rows = client
        .query(
            "SELECT format('pid %s (user %s, application %s, %s for %ss: %s)', a.pid,
                           coalesce(a.usename::text, '?'),
                           coalesce(nullif(a.application_name, ''), '-'), coalesce(a.state, 'state unknown'),
                           coalesce(round(extract(epoch FROM now() - coalesce(a.xact_start, a.query_start)))::int8, 0),
                           coalesce(left(regexp_replace(a.query, '[[:space:]]+', ' ', 'g'), 80), 'query hidden'))
               FROM pg_stat_activity a
              WHERE a.pid IN (SELECT l.pid FROM pg_locks l
                               WHERE l.relation = to_regclass($1) AND l.granted AND l.pid <> pg_backend_pid())
              ORDER BY a.xact_start NULLS LAST LIMIT 3",
            &[&table],
        )
        .await;
    match rows {
        Ok(rows) => rows
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
            .join("; "),
        Err(_) => String::new(),
    }
}

/// Runs `steps` of `schedule` in order (a phase's steps, or the rollback); `what` names them in
/// errors (`expand` gives `expand step 2`).
pub async fn run_steps(
    client: &mut Client,
    schedule: &Schedule,
    steps: &[Step],
    what: &str,
    options: &ExecOptions,
) -> Result<()> {
    let table = schedule.table.to_string();
    for (i, step) in steps.iter().enumerate() {
        run_step(
            client,
            step,
            &table,
            options,
            &format!("{what} step {}", i + 1),
        )
        .await?;
    }
    Ok(())
}

/// Rows the backfill would still change (read-only); 0 for a plan without a backfill.
pub async fn count_out_of_sync(client: &Client, schedule: &Schedule) -> Result<i64> {
    let Some(b) = &schedule.backfill else {
        return Ok(0);
    };
    let row = client
        .query_one(&b.count_out_of_sync_sql(), &[])
        .await
        .map_err(|e| Error::db(format!("counting rows out of sync in {}", b.table), &e))?;
    Ok(row.get(0))
}

fn is_retryable(e: &Error) -> bool {
    e.sqlstate().is_some_and(|s| RETRYABLE.contains(&s))
}

/// `lock_timeout` for the session, or for the transaction (`local`), as a bound value.
async fn set_lock_timeout(
    client: &impl tokio_postgres::GenericClient,
    options: &ExecOptions,
    local: bool,
) -> std::result::Result<(), tokio_postgres::Error> {
    let ms = format!("{}ms", options.lock_timeout.as_millis().max(1));
    client
        .execute("SELECT set_config('lock_timeout', $1, $2)", &[&ms, &local])
        .await
        .map(|_| ())
}

async fn run_step_once(
    client: &mut Client,
    step: &Step,
    options: &ExecOptions,
    context: &str,
    record: Option<Record<'_>>,
) -> Result<()> {
    let fail = |e: tokio_postgres::Error| Error::db(context, &e);
    match &step.mode {
        StepMode::Transaction => {
            let tx = client.transaction().await.map_err(fail)?;
            set_lock_timeout(&tx, options, true).await.map_err(fail)?;
            for s in &step.statements {
                tx.execute(s.sql.as_str(), &[]).await.map_err(fail)?;
            }
            if let Some((sql, params)) = record {
                tx.execute(sql, params).await.map_err(fail)?;
            }
            return tx.commit().await.map_err(fail);
        }
        StepMode::Backfill => {
            return Err(Error::Usage(format!(
                "{context}: the backfill step is run by the engine, not as DDL"
            )))
        }
        StepMode::ConcurrentIndex { index } => {
            set_lock_timeout(&*client, options, false)
                .await
                .map_err(fail)?;
            // An index left INVALID by an interrupted build: drop it and build again. A valid
            // one means an earlier attempt finished: nothing to build.
            let row = client
                .query_opt(
                    "SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass($1)",
                    &[&index.to_string()],
                )
                .await
                .map_err(fail)?;
            let build = match row.map(|r| r.get::<_, bool>(0)) {
                Some(true) => false,
                Some(false) => {
                    client
                        .execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {index}"), &[])
                        .await
                        .map_err(fail)?;
                    true
                }
                None => true,
            };
            if build {
                for s in &step.statements {
                    client.execute(s.sql.as_str(), &[]).await.map_err(fail)?;
                }
            }
        }
        StepMode::NoTransaction => {
            set_lock_timeout(&*client, options, false)
                .await
                .map_err(fail)?;
            for s in &step.statements {
                client.execute(s.sql.as_str(), &[]).await.map_err(fail)?;
            }
        }
    }
    reset(client, context).await?;
    // Outside a transaction the record follows the step; rerunning such a step is harmless.
    if let Some((sql, params)) = record {
        client.execute(sql, params).await.map_err(fail)?;
    }
    Ok(())
}

async fn reset(client: &Client, context: &str) -> Result<()> {
    client
        .execute("RESET lock_timeout", &[])
        .await
        .map(|_| ())
        .map_err(|e| Error::db(context, &e))
}

/// Runs the whole backfill as one statement in one transaction (no chunks, no throttle): the
/// reference form, used by tests of the operation catalog and as the single-`UPDATE` baseline.
/// Returns the number of rows changed.
pub async fn backfill_in_one_statement(client: &mut Client, spec: &BackfillSpec) -> Result<u64> {
    let ctx = format!("backfill of {}", spec.table);
    let fail = |e: tokio_postgres::Error| Error::db(ctx.clone(), &e);
    let tx = client.transaction().await.map_err(fail)?;
    tx.execute(&spec.bypass_sql(true), &[])
        .await
        .map_err(fail)?;
    let row = tx
        .query_one(&spec.update_sql(None), &[])
        .await
        .map_err(fail)?;
    tx.commit().await.map_err(fail)?;
    Ok(row.get::<_, i64>(0).max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let first = backoff(1);
        assert!(
            first >= FIRST_BACKOFF / 2 && first <= FIRST_BACKOFF,
            "{first:?}"
        );
        let fourth = backoff(4);
        assert!(
            fourth >= FIRST_BACKOFF * 4 && fourth <= FIRST_BACKOFF * 8,
            "{fourth:?}"
        );
        assert!(backoff(30) <= MAX_BACKOFF);
    }
}
