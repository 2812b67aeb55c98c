//! One worker: takes a segment from the queue and walks it chunk by chunk.

use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{Object, Pool};

use super::sizing::Sizing;
use super::{Event, Shared, Task};
use crate::error::Error;
use crate::executor::backoff;
use crate::sql::literal;
use crate::state::{self, CHECKPOINT_MOVED};

/// How a walk over a segment ended.
enum Walk {
    /// The segment is done.
    Done,
    /// The run is stopping, or this worker is no longer wanted; the segment keeps its
    /// checkpoint and goes back to the queue.
    Stopped,
    /// Another process took the segment over (this process's lease ran out).
    Lost,
    /// A chunk failed for a reason that passes: retry later, smaller.
    Transient(String, Option<String>),
    /// The run must stop.
    Fatal(Error),
}

/// How an error from a chunk is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Lock timeout, statement timeout, serialization failure, deadlock, lost connection,
    /// server shutting down or starting: retry.
    Transient,
    /// The segment's checkpoint moved under the chunk: reload it.
    Moved,
    /// The data or the plan's expression: find the row and stop.
    Data,
    /// Anything else: stop.
    Fatal,
}

fn classify(e: &tokio_postgres::Error) -> Class {
    let Some(db) = e.as_db_error() else {
        // No SQLSTATE: the connection broke (I/O error, closed by the server).
        return Class::Transient;
    };
    let code = db.code().code();
    if code == CHECKPOINT_MOVED {
        return Class::Moved;
    }
    match code {
        "55P03" | "40001" | "40P01" | "57014" | "57P01" | "57P02" | "57P03" | "53300" | "53400"
        | "58000" => Class::Transient,
        c if c.starts_with("08") => Class::Transient,
        c if c.starts_with("22") || c.starts_with("23") || c.starts_with("2F") => Class::Data,
        "P0001" | "P0002" | "P0003" | "P0004" => Class::Data,
        _ => Class::Fatal,
    }
}

fn sqlstate(e: &tokio_postgres::Error) -> Option<String> {
    e.as_db_error().map(|d| d.code().code().to_string())
}

fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

/// The worker: says it started, walks segments, says it stopped.
pub(super) async fn run(id: u32, shared: Arc<Shared>, pool: Pool) {
    let o = &shared.options;
    let (min, max) = shared.live.batch_bounds();
    let mut sizing = Sizing::new(o.batch_size, min, max, o.target_chunk_time);
    shared.events.send(Event::WorkerStarted { worker: id });
    walk_segments(id, &shared, &pool, &mut sizing).await;
    shared.events.send(Event::WorkerStopped { worker: id });
}

/// Segment after segment until the queue is empty, the run stops, or this worker is no
/// longer wanted.
async fn walk_segments(id: u32, shared: &Arc<Shared>, pool: &Pool, sizing: &mut Sizing) {
    while let Some(mut task) = shared.next_task(id, pool).await {
        match walk(id, shared, pool, &mut task, sizing).await {
            Walk::Done => {
                shared.finish(task.segment);
                shared.events.send(Event::SegmentDone {
                    worker: id,
                    segment: task.segment,
                });
            }
            Walk::Stopped => shared.requeue(task),
            Walk::Lost => shared.finish(task.segment),
            Walk::Transient(reason, sqlstate) => {
                task.attempts += 1;
                shared.retries.fetch_add(1, Ordering::SeqCst);
                if task.attempts > shared.options.retries {
                    shared.finish(task.segment);
                    shared.fail(Error::Database {
                        context: format!(
                            "backfill of {}: segment {} failed {} times in a row",
                            shared.job.spec.table, task.segment, task.attempts
                        ),
                        message: reason,
                        // No SQLSTATE: the connection broke, so the runner may connect again.
                        code: Some(
                            sqlstate
                                .unwrap_or_else(|| crate::error::CONNECTION_FAILURE.to_string()),
                        ),
                    });
                    break;
                }
                sizing.shrink();
                let wait = backoff(task.attempts);
                tracing::warn!(worker = id, segment = task.segment, attempt = task.attempts, wait_ms = wait.as_millis() as u64, reason = %reason, "chunk failed; segment requeued");
                shared.events.send(Event::Retry {
                    worker: id,
                    segment: task.segment,
                    attempt: task.attempts,
                    wait_ms: wait.as_millis() as u64,
                    batch: sizing.batch(),
                    reason,
                    sqlstate,
                });
                task.not_before = Instant::now() + wait;
                shared.requeue(task);
            }
            Walk::Fatal(e) => {
                tracing::error!(worker = id, segment = task.segment, error = %e, "backfill stops");
                shared.finish(task.segment);
                shared.fail(e);
                break;
            }
        }
    }
}

/// Walks one segment from its cursor.
async fn walk(id: u32, shared: &Shared, pool: &Pool, task: &mut Task, sizing: &mut Sizing) -> Walk {
    loop {
        if shared.stop.is_set() || id > shared.live.workers() {
            return Walk::Stopped;
        }
        if shared.live.throttled().is_some() {
            tokio::select! {
                _ = shared.live.wait_healthy() => continue,
                _ = shared.stop.wait() => return Walk::Stopped,
            }
        }
        let (min, max) = shared.live.batch_bounds();
        sizing.set_bounds(min, max);
        if shared.options.pause.is_set() {
            tokio::select! {
                _ = shared.options.pause.wait_cleared() => continue,
                _ = shared.stop.wait() => return Walk::Stopped,
                // `backfill set workers=N` during the pause: fewer workers end now, not at
                // the resume.
                _ = tokio::time::sleep(super::monitor::CLAIM_POLL) => continue,
            }
        }
        let batch = sizing.batch().max(1);
        let waited = Instant::now();
        let pause = shared.live.pause();
        if !pause.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shared.stop.wait() => return Walk::Stopped,
            }
        }
        if let Some(limiter) = shared.live.limiter() {
            let n = NonZeroU32::new(batch).unwrap_or(NonZeroU32::MIN);
            tokio::select! {
                r = limiter.until_n_ready(n) => {
                    if r.is_err() {
                        // More than the burst: cannot happen, the batch is capped to it.
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                _ = shared.stop.wait() => return Walk::Stopped,
            }
        }
        let throttled = waited.elapsed();
        let mut client = match pool.get().await {
            Ok(c) => c,
            Err(deadpool_postgres::PoolError::Backend(e)) => {
                // The server's own words (starting up, too many connections), not "db error".
                return Walk::Transient(
                    format!("cannot get a connection: {}", describe(&e)),
                    sqlstate(&e),
                );
            }
            Err(e) => return Walk::Transient(format!("cannot get a connection: {e}"), None),
        };
        // A split may have moved the segment's end since the last chunk.
        if let Some(upper) = shared.upper_of(task.segment) {
            task.upper = upper;
        }
        let sql = shared.sql.chunk(task.cursor.is_some());
        let started = Instant::now();
        let result = match client.prepare_cached(sql).await {
            Ok(stmt) => {
                client
                    .query_one(
                        &stmt,
                        &[
                            &shared.job.plan,
                            &task.segment,
                            &i64::from(batch),
                            &task.cursor,
                            &task.upper,
                        ],
                    )
                    .await
            }
            Err(e) => Err(e),
        };
        let took = started.elapsed();
        let row = match result {
            Ok(row) => row,
            Err(e) => match classify(&e) {
                Class::Transient => return Walk::Transient(describe(&e), sqlstate(&e)),
                Class::Moved => match reload(shared, &client, task).await {
                    Ok(Reloaded::Done) => return Walk::Done,
                    Ok(Reloaded::Ours) => continue,
                    Ok(Reloaded::Taken) => return Walk::Lost,
                    Err(e) => return Walk::Transient(describe(&e), sqlstate(&e)),
                },
                Class::Data => {
                    return Walk::Fatal(locate_bad_row(shared, &mut client, task, batch, &e).await)
                }
                Class::Fatal => {
                    return Walk::Fatal(Error::db(
                        format!(
                            "backfill of {}, segment {}",
                            shared.job.spec.table, task.segment
                        ),
                        &e,
                    ))
                }
            },
        };
        let seen: i64 = row.get(0);
        let changed: i64 = row.get(1);
        let cursor: Option<Vec<String>> = row.get(2);
        let done: bool = row.get(3);
        task.cursor = cursor;
        shared.walked(task.segment, &task.cursor, batch, seen);
        task.attempts = 0;
        sizing.observe(seen.max(0) as u64, took);
        let total = shared.rows_done.fetch_add(seen, Ordering::SeqCst) + seen;
        shared.rows_seen.fetch_add(seen, Ordering::SeqCst);
        shared.rows_changed.fetch_add(changed, Ordering::SeqCst);
        shared.events.send(Event::Chunk {
            worker: id,
            segment: task.segment,
            rows: seen,
            changed,
            batch,
            ms: took.as_millis() as u64,
            throttled_ms: throttled.as_millis() as u64,
            rows_done: total,
        });
        if done {
            return Walk::Done;
        }
    }
}

/// What a segment's checkpoint says after it moved under a chunk.
enum Reloaded {
    /// It is done.
    Done,
    /// Still ours: go on from the new cursor.
    Ours,
    /// Another process owns it now.
    Taken,
}

/// Re-reads a segment's checkpoint after another process moved it.
async fn reload(
    shared: &Shared,
    client: &Object,
    task: &mut Task,
) -> Result<Reloaded, tokio_postgres::Error> {
    let checkpoint = state::segments::read_back(
        client,
        &shared.options.state_schema,
        &shared.job.plan,
        task.segment,
        &shared.owner,
    )
    .await?;
    task.cursor = checkpoint.cursor;
    // A split of this segment committed after this worker last read its end.
    shared.set_upper(task.segment, &checkpoint.upper);
    task.upper = checkpoint.upper;
    Ok(if checkpoint.done {
        Reloaded::Done
    } else if checkpoint.ours {
        Reloaded::Ours
    } else {
        Reloaded::Taken
    })
}

/// A chunk failed on the data: find the first row that fails by bisecting the chunk (each try
/// in a transaction that is rolled back) and name it.
async fn locate_bad_row(
    shared: &Shared,
    client: &mut Object,
    task: &Task,
    batch: u32,
    error: &tokio_postgres::Error,
) -> Error {
    let table = shared.job.spec.table.to_string();
    let code = error.as_db_error().map(|d| d.code().code().to_string());
    let message = describe(error);
    let sql = shared.sql.chunk(task.cursor.is_some());
    // `lo` rows pass, `hi` rows fail.
    let (mut lo, mut hi) = (0u32, batch);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match try_chunk(shared, client, sql, task, mid).await {
            Ok(true) => lo = mid,
            Ok(false) => hi = mid,
            Err(_) => break,
        }
    }
    let keys_sql = if task.cursor.is_some() {
        &shared.sql.keys_next
    } else {
        &shared.sql.keys_first
    };
    let key = match client
        .query(keys_sql, &[&task.cursor, &task.upper, &i64::from(hi)])
        .await
    {
        Ok(rows) => {
            let keyset = &shared.job.keyset;
            match (rows.first(), rows.last()) {
                // A physical walk bisects by pages: the row is on the last one.
                (Some(f), Some(l)) if keyset.physical && rows.len() > 1 => format!(
                    "\"ctid\" between {} and {} (one row of that page)",
                    literal(&f.get::<_, Vec<String>>(0).concat()),
                    literal(&l.get::<_, Vec<String>>(0).concat())
                ),
                (_, Some(r)) => keyset.describe(&r.get::<_, Vec<String>>(0)),
                _ => "a key after the segment's checkpoint".to_string(),
            }
        }
        Err(e) => format!(
            "a key in the next {hi} rows (cannot read it: {})",
            describe(&e)
        ),
    };
    Error::Data {
        table,
        key,
        message,
        code,
    }
}

/// Runs the chunk with `rows` rows and rolls it back: Ok(true) when it passes.
async fn try_chunk(
    shared: &Shared,
    client: &mut Object,
    sql: &str,
    task: &Task,
    rows: u32,
) -> Result<bool, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let result = tx
        .query_one(
            sql,
            &[
                &shared.job.plan,
                &task.segment,
                &i64::from(rows),
                &task.cursor,
                &task.upper,
            ],
        )
        .await;
    tx.rollback().await?;
    match result {
        Ok(_) => Ok(true),
        Err(e) if classify(&e) == Class::Data => Ok(false),
        Err(e) => Err(e),
    }
}
