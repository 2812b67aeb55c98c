//! The backfill engine: a throttled, keyset-paginated, resumable worker pool.
//!
//! - The key space is split into segments ([`segments`]): integer keys evenly between min and
//!   max, other and composite keys at boundaries sampled from the table. Segments and their
//!   checkpoints live in the state schema, created once per backfill; later runs resume them.
//! - `workers` tasks share one queue of segments; each walks its segment by keyset in chunks
//!   ([`keyset::chunk_sql`]): one statement per chunk rewrites the rows still out of sync and
//!   advances the segment's checkpoint in the same commit.
//! - A governor limiter caps rows per second; each worker's batch size adapts toward the
//!   target chunk time ([`sizing`]).
//! - Unless given, the number of workers is found by measurement ([`pace`]): from 2 up to the
//!   configured ceiling while the rate rises, fewer while a commit takes longer than
//!   `max_commit_latency`.
//! - A chunk that fails for a passing reason (lock timeout, statement timeout, serialization
//!   failure, lost connection) goes back to the queue with a smaller batch and a jittered
//!   exponential delay, and the worker takes another segment meanwhile. A chunk that fails on
//!   the data stops the run with the offending row's key.
//! - [`Stop`] lets chunks in flight commit and starts no new ones.
//!
//! Memory does not depend on the table: the engine holds one cursor per segment.

pub mod events;
pub mod keyset;
mod monitor;
pub mod pace;
pub mod segments;
pub mod sizing;
pub mod throttle;
pub mod tuning;
mod worker;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

use crate::db::catalog::TableInfo;
use crate::db::ConnectionSpec;
use crate::error::{Error, Result};
use crate::plan::{Plan, ThrottleSettings};
use crate::planner::{BackfillSpec, BYPASS_SETTING};
use crate::sql::Ident;
use crate::state;

pub use events::{Event, Events};
pub use keyset::Keyset;

/// How many times one segment's chunk is retried after passing failures before the run gives
/// up. With the capped backoff this rides out about a minute of outage.
pub const CHUNK_RETRIES: u32 = 10;

/// How many times the workers are sent back over segments that the database still shows as
/// not done after they all finished.
pub const MAX_ROUNDS: u32 = 3;

/// How the engine runs.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Concurrent workers in this process.
    pub workers: u32,
    /// The first batch size.
    pub batch_size: u32,
    /// The smallest batch.
    pub min_batch_size: u32,
    /// The largest batch.
    pub max_batch_size: u32,
    /// The chunk duration the batch size adapts toward.
    pub target_chunk_time: Duration,
    /// Rows per second over all workers of this process; 0 for no limit.
    pub max_rows_per_second: u64,
    /// `lock_timeout` of every chunk.
    pub lock_timeout: Duration,
    /// `statement_timeout` of every chunk.
    pub statement_timeout: Duration,
    /// Retries of a failing chunk.
    pub retries: u32,
    /// The state schema.
    pub state_schema: Ident,
    /// Continue a backfill whose plan file changed since it started.
    pub force: bool,
    /// Holds the workers between chunks while set (`backfill pause`).
    pub pause: Pause,
    /// The health probes.
    pub throttle: ThrottleSettings,
    /// Replicas whose lag the probes measure.
    pub replicas: Vec<ConnectionSpec>,
    /// How long a claim on a segment outlives this process's last heartbeat.
    pub lease: Duration,
    /// Settings given on this process's command line, as `backfill set` stores them: recorded
    /// with the backfill when it starts, so every process that joins it (on any host) runs
    /// with them too, and they stay for later runs.
    pub shared_settings: serde_json::Map<String, serde_json::Value>,
}

impl EngineOptions {
    /// The plan's `[backfill]` settings.
    pub fn from_plan(plan: &Plan, state_schema: &str) -> EngineOptions {
        let b = &plan.backfill;
        EngineOptions {
            workers: b.workers,
            batch_size: b.batch_size,
            min_batch_size: b.min_batch_size,
            max_batch_size: b.max_batch_size,
            target_chunk_time: b.target_chunk_time,
            max_rows_per_second: b.max_rows_per_second,
            lock_timeout: b.lock_timeout,
            statement_timeout: b.statement_timeout,
            retries: CHUNK_RETRIES,
            state_schema: Ident::new(state_schema),
            force: false,
            pause: Pause::default(),
            throttle: plan.throttle.clone(),
            replicas: Vec::new(),
            lease: b.lease,
            shared_settings: serde_json::Map::new(),
        }
    }
}

/// What to backfill.
#[derive(Debug, Clone)]
pub struct Job {
    /// The plan's name: the key of its state.
    pub plan: String,
    /// The plan file, for messages.
    pub file: String,
    /// The plan file's checksum.
    pub checksum: String,
    /// The backfill the planner built.
    pub spec: BackfillSpec,
    /// The key the table is walked by.
    pub keyset: Keyset,
}

impl Job {
    /// The job of a plan whose table is `table` (the live catalog).
    pub fn new(plan: &Plan, spec: BackfillSpec, table: &TableInfo) -> Result<Job> {
        Ok(Job {
            plan: plan.name.clone(),
            file: plan.file.display().to_string(),
            checksum: plan.checksum(),
            spec,
            keyset: Keyset::of(table)?,
        })
    }
}

/// How a run ended when it did not fail.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every segment is done.
    Finished(Summary),
    /// Stopped by [`Stop`] after the chunks in flight committed.
    Interrupted(Summary),
}

/// Counters of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Rows walked by every run of this backfill.
    pub rows_done: i64,
    /// Rows expected in all: the estimate recorded when the backfill started, or what the
    /// segments' progress says once the walk passed it.
    pub rows_estimate: i64,
    /// Rows walked by this run.
    pub rows_seen: i64,
    /// Rows rewritten by this run.
    pub rows_changed: i64,
    /// Chunks retried in this run.
    pub retries: u64,
    /// This run's duration.
    pub elapsed: Duration,
}

pub use crate::shutdown::{Pause, Stop};

/// A segment waiting in the queue or being walked.
#[derive(Debug, Clone)]
struct Task {
    segment: i32,
    cursor: Option<Vec<String>>,
    upper: Vec<String>,
    attempts: u32,
    not_before: Instant,
}

#[derive(Debug, Default)]
struct Queue {
    ready: Vec<Task>,
    in_flight: usize,
    /// Segments this process holds (waiting or walked): not to be claimed again by it.
    held: std::collections::BTreeSet<i32>,
    /// The segments walked now, by number: where their walk is, and where it ends (a split
    /// moves the end; the walker reads it before each chunk).
    walking: std::collections::HashMap<i32, Walking>,
}

/// A segment a worker walks now.
#[derive(Debug, Clone)]
struct Walking {
    /// The last key its chunks committed.
    cursor: Option<Vec<String>>,
    /// Its last key.
    upper: Vec<String>,
    /// The walker's batch size.
    batch: u32,
    /// Rows its walker saw since it took it.
    seen: i64,
    /// A look at what is left of it (keys without arithmetic) found too little to split.
    too_small: bool,
}

/// The most keys read to find the middle of a walked segment of a key without arithmetic
/// ([`keyset::middle_key_sql`]): two segments' worth. Past them, the split point is half way
/// through those, which still leaves the larger part to the idle worker.
const MIDDLE_READ: i64 = 2 * segments::ROWS_PER_SEGMENT;

/// A walked segment is split only when at least this many of its walker's batches are left,
/// so that each half holds at least two.
pub const SPLIT_MIN_BATCHES: i64 = 4;

/// Where to split a segment of an integer key that its walker has walked up to `cursor`, and
/// the keys left after the cursor: half way between the cursor and the end, when at least
/// [`SPLIT_MIN_BATCHES`] batches of keys are left.
pub fn split_point(cursor: Option<&[String]>, upper: &[String], batch: u32) -> Option<(i64, i64)> {
    let cursor: i64 = cursor?.first()?.parse().ok()?;
    let upper: i64 = upper.first()?.parse().ok()?;
    // In 128 bits: the span of a bigint key can pass i64::MAX.
    let left = i128::from(upper) - i128::from(cursor);
    if left < i128::from(SPLIT_MIN_BATCHES) * i128::from(batch.max(1)) {
        return None;
    }
    let at = i64::try_from(i128::from(cursor) + left / 2).ok()?;
    Some((at, i64::try_from(left).unwrap_or(i64::MAX)))
}

/// A walked segment as it stands, to split it.
fn pending(segment: i32, w: &Walking) -> state::segments::Pending {
    state::segments::Pending {
        segment,
        cursor: w.cursor.clone(),
        upper: w.upper.clone(),
    }
}

/// What the workers share.
struct Shared {
    job: Job,
    options: EngineOptions,
    sql: keyset::ChunkSql,
    /// This process's name on the segments it claims: `host:pid:nonce`.
    owner: String,
    /// Segments this process claimed and waits to retry, and how many it walks now.
    queue: Mutex<Queue>,
    /// Held while a worker claims a segment (see [`Shared::next_task`]).
    claiming: tokio::sync::Mutex<()>,
    /// Woken when a segment leaves a worker (done or given back), so that a worker waiting
    /// for work looks again at once.
    wake: tokio::sync::Notify,
    /// Settings that `backfill set` changes, and the probes' verdict.
    live: tuning::Tuning,
    stop: Stop,
    /// Set when a worker failed: the run stops and reports it.
    failure: Mutex<Option<Error>>,
    events: Events,
    rows_done: AtomicI64,
    /// Rows expected in all (see [`Event::Estimate`]).
    rows_estimate: AtomicI64,
    rows_seen: AtomicI64,
    rows_changed: AtomicI64,
    retries: AtomicU64,
    /// No segment is left anywhere: workers that end now are not replaced.
    finished: AtomicBool,
    /// Chooses the number of workers, unless it was given.
    pace: Mutex<Option<pace::Pace>>,
}

impl Queue {
    /// A worker starts walking `task`.
    fn walk(&mut self, task: &Task) {
        self.walking.insert(
            task.segment,
            Walking {
                cursor: task.cursor.clone(),
                upper: task.upper.clone(),
                batch: 1,
                seen: 0,
                too_small: false,
            },
        );
    }
}

impl Shared {
    /// The next segment for worker `id`: one of ours whose retry delay has passed, else a free
    /// one claimed in the database (`FOR UPDATE SKIP LOCKED`, under a lease), else half of
    /// what is left of a segment another worker of this process walks (see [`Shared::split`];
    /// not for a walk by location), so that no worker idles at the end of the walk while
    /// another walks a whole segment alone. Waits while the segments left are
    /// delayed, walked by other workers or held by other processes (whose leases may run out);
    /// `None` when none is left, when the run stops, or when fewer workers are wanted.
    async fn next_task(&self, id: u32, pool: &Pool) -> Option<Task> {
        loop {
            // Registered before looking, so a segment that leaves a worker meanwhile wakes it.
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if self.stop.is_set() || id > self.live.workers() {
                return None;
            }
            let (ours_waiting, in_flight) = {
                let mut q = self.queue.lock().ok()?;
                let now = Instant::now();
                if let Some(i) = q.ready.iter().position(|t| t.not_before <= now) {
                    let task = q.ready.remove(i);
                    q.in_flight += 1;
                    q.walk(&task);
                    return Some(task);
                }
                (q.ready.len(), q.in_flight)
            };
            // One claim at a time in this process: a claim accepts a segment this process
            // owns but holds nowhere, so two workers claiming at once would both take the
            // segment the first one just claimed, before it shows among the held ones.
            let claiming = self.claiming.lock().await;
            let held: Vec<i32> = self
                .queue
                .lock()
                .map(|q| q.held.iter().copied().collect())
                .unwrap_or_default();
            let mut claimed = self.claim(pool, &held).await;
            if let Ok(None) = claimed {
                claimed = Ok(self.split(pool).await);
            }
            if let Ok(Some(task)) = &claimed {
                if let Ok(mut q) = self.queue.lock() {
                    q.in_flight += 1;
                    q.held.insert(task.segment);
                    q.walk(task);
                }
            }
            drop(claiming);
            match claimed {
                Ok(Some(task)) => return Some(task),
                Ok(None) if ours_waiting == 0 && in_flight == 0 => {
                    if let Ok(0) = self.left(pool).await {
                        self.finished.store(true, Ordering::SeqCst);
                        return None;
                    }
                }
                Ok(None) | Err(_) => {}
            }
            tokio::select! {
                _ = tokio::time::sleep(monitor::CLAIM_POLL) => {}
                _ = woken => {}
                _ = self.stop.wait() => return None,
            }
        }
    }

    /// Splits a segment a worker of this process walks (the one with the most keys left for an
    /// integer key, [`Shared::integer_split_point`]; the one whose walker has seen the fewest
    /// rows for any other, [`Shared::middle_split_point`]) and returns its second half,
    /// claimed in the database; `None` for a walk by location, when no walk
    /// has enough left, or when the segment moved meanwhile (its walker passed the point,
    /// finished it, or lost it). The walker reads its new end before its next chunk. A chunk
    /// of it in flight when the split commits cannot commit past the point: its checkpoint only
    /// moves while the segment's end is the one the chunk was given, so it rolls back and runs
    /// again within the new end.
    async fn split(&self, pool: &Pool) -> Option<Task> {
        let keyset = &self.job.keyset;
        if keyset.physical {
            return None;
        }
        let (walked, at) = if keyset.is_integer() {
            self.integer_split_point()?
        } else {
            self.middle_split_point(pool).await?
        };
        let mut client = pool.get().await.ok()?;
        let new = state::segments::split(
            &mut client,
            &self.options.state_schema,
            &self.job.plan,
            &self.owner,
            self.options.lease,
            state::segments::Cut {
                walked: &walked,
                at: &at,
                before_point: &keyset::before_point_sql(&self.job.spec.table, keyset),
            },
        )
        .await;
        let new = match new {
            Ok(Some(new)) => new,
            Ok(None) => return None,
            Err(e) => {
                tracing::debug!(segment = walked.segment, error = %e, "splitting a segment failed");
                return None;
            }
        };
        if let Ok(mut q) = self.queue.lock() {
            // The walker, or its segment back in the queue, ends at the split from now on.
            if let Some(w) = q.walking.get_mut(&walked.segment) {
                w.upper.clone_from(&at);
            }
            for t in q.ready.iter_mut().filter(|t| t.segment == walked.segment) {
                t.upper.clone_from(&at);
            }
        }
        self.events.send(Event::SegmentSplit {
            segment: walked.segment,
            new: new.segment,
        });
        Some(Task {
            segment: new.segment,
            cursor: new.cursor,
            upper: new.upper,
            attempts: 0,
            not_before: Instant::now(),
        })
    }

    /// For an integer key: the walked segment with the most keys left, and the key half way
    /// through them (see [`split_point`]).
    fn integer_split_point(&self) -> Option<(state::segments::Pending, Vec<String>)> {
        let q = self.queue.lock().ok()?;
        q.walking
            .iter()
            .filter_map(|(segment, w)| {
                let (at, left) = split_point(w.cursor.as_deref(), &w.upper, w.batch)?;
                Some((left, *segment, w, at))
            })
            .max_by_key(|(left, segment, ..)| (*left, -*segment))
            .map(|(_, segment, w, at)| (pending(segment, w), vec![at.to_string()]))
    }

    /// For any other key: the walked segment whose walker has seen the fewest rows (segments
    /// start out alike, so it likely has the most left), and the middle of the keys it has
    /// left, read by the key's index ([`keyset::middle_key_sql`]), when at least
    /// [`SPLIT_MIN_BATCHES`] of its walker's batches are left. A segment found too small is
    /// not looked at again.
    async fn middle_split_point(
        &self,
        pool: &Pool,
    ) -> Option<(state::segments::Pending, Vec<String>)> {
        let (segment, w) = {
            let q = self.queue.lock().ok()?;
            q.walking
                .iter()
                .filter(|(_, w)| w.cursor.is_some() && !w.too_small)
                .min_by_key(|(segment, w)| (w.seen, **segment))
                .map(|(segment, w)| (*segment, w.clone()))
        }?;
        let client = pool.get().await.ok()?;
        let row = client
            .query_one(
                &keyset::middle_key_sql(&self.job.spec.table, &self.job.keyset),
                &[&w.cursor, &w.upper, &MIDDLE_READ],
            )
            .await;
        let (left, at): (i64, Option<Vec<String>>) = match row {
            Ok(row) => (row.get(0), row.get(1)),
            Err(e) => {
                tracing::debug!(segment, error = %e, "finding the middle of a segment failed");
                return None;
            }
        };
        match at {
            Some(at) if left >= SPLIT_MIN_BATCHES * i64::from(w.batch.max(1)) => {
                Some((pending(segment, &w), at))
            }
            _ => {
                if let Ok(mut q) = self.queue.lock() {
                    if let Some(w) = q.walking.get_mut(&segment) {
                        w.too_small = true;
                    }
                }
                None
            }
        }
    }

    /// The end of segment `segment` as a split left it (`None`: not walked by this process).
    fn upper_of(&self, segment: i32) -> Option<Vec<String>> {
        let q = self.queue.lock().ok()?;
        q.walking.get(&segment).map(|w| w.upper.clone())
    }

    /// Segment `segment` ends at `upper`, as the database says after its checkpoint moved (a
    /// split by this process that committed before the walker read the new end).
    fn set_upper(&self, segment: i32, upper: &[String]) {
        if let Ok(mut q) = self.queue.lock() {
            if let Some(w) = q.walking.get_mut(&segment) {
                w.upper = upper.to_vec();
            }
        }
    }

    /// Records where the walk of segment `segment` is after a chunk, for [`Shared::split`].
    fn walked(&self, segment: i32, cursor: &Option<Vec<String>>, batch: u32, seen: i64) {
        if let Ok(mut q) = self.queue.lock() {
            if let Some(w) = q.walking.get_mut(&segment) {
                w.cursor.clone_from(cursor);
                w.batch = batch;
                w.seen += seen;
            }
        }
    }

    /// Claims a free segment: never claimed, its owner's lease ran out, or ours but not held
    /// (a crash took back the commit that finished it).
    async fn claim(&self, pool: &Pool, held: &[i32]) -> std::result::Result<Option<Task>, String> {
        let client = pool.get().await.map_err(|e| e.to_string())?;
        let claimed = state::segments::claim(
            &client,
            &self.options.state_schema,
            &self.job.plan,
            &self.owner,
            self.options.lease,
            held,
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok(claimed.map(|p| Task {
            segment: p.segment,
            cursor: p.cursor,
            upper: p.upper,
            attempts: 0,
            not_before: Instant::now(),
        }))
    }

    /// Segments not done, in every process.
    async fn left(&self, pool: &Pool) -> std::result::Result<i64, String> {
        let client = pool.get().await.map_err(|e| e.to_string())?;
        state::segments::left(&client, &self.options.state_schema, &self.job.plan)
            .await
            .map_err(|e| e.to_string())
    }

    /// A walked segment leaves the queue.
    fn finish(&self, segment: i32) {
        if let Ok(mut q) = self.queue.lock() {
            q.in_flight = q.in_flight.saturating_sub(1);
            q.held.remove(&segment);
            q.walking.remove(&segment);
        }
        self.wake.notify_waiters();
    }

    /// A segment goes back to the queue (failed chunk, or stopping).
    fn requeue(&self, mut task: Task) {
        if let Ok(mut q) = self.queue.lock() {
            q.in_flight = q.in_flight.saturating_sub(1);
            if let Some(w) = q.walking.remove(&task.segment) {
                task.upper = w.upper;
            }
            q.ready.push(task);
        }
        self.wake.notify_waiters();
    }

    /// Records the first failure and stops every worker.
    fn fail(&self, error: Error) {
        if let Ok(mut f) = self.failure.lock() {
            if f.is_none() {
                self.events.send(Event::Failed {
                    message: error.to_string(),
                });
                *f = Some(error);
            }
        }
        self.stop.trigger();
    }
}

/// Runs (or resumes) the backfill of `job` until every segment is done, the run is stopped,
/// or a chunk fails for good.
pub async fn backfill(
    conn: &ConnectionSpec,
    job: Job,
    options: EngineOptions,
    events: Events,
    stop: Stop,
) -> Result<Outcome> {
    let started = Instant::now();
    let mut control = conn.connect_patiently().await?;
    state::ensure(&mut control, &options.state_schema).await?;
    let prepared = segments::prepare(&mut control, &job, &options).await?;
    let stored = segments::share_settings(&control, &job, &options).await?;
    drop(control);
    let total_segments = prepared.total;
    let workers = options.workers.max(1);
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let shared = Arc::new(Shared {
        sql: keyset::chunk_sql(&job.spec, &job.keyset, &options.state_schema),
        owner: format!("{}:{}:{nonce:x}", state::host(), std::process::id()),
        job,
        queue: Mutex::new(Queue::default()),
        claiming: tokio::sync::Mutex::new(()),
        wake: tokio::sync::Notify::new(),
        live: tuning::Tuning::new(
            options.max_rows_per_second,
            workers,
            options.min_batch_size,
            options.max_batch_size,
            options.throttle.clone(),
        ),
        // A failed worker stops the others through this one, not the caller's.
        stop: stop.child(),
        failure: Mutex::new(None),
        events: events.clone(),
        rows_done: AtomicI64::new(prepared.rows_done),
        rows_estimate: AtomicI64::new(prepared.rows_estimate),
        rows_seen: AtomicI64::new(0),
        rows_changed: AtomicI64::new(0),
        retries: AtomicU64::new(0),
        finished: AtomicBool::new(false),
        pace: Mutex::new(None),
        options,
    });

    // What this process or another one recorded (command-line settings, `backfill set`)
    // applies from the first chunk on.
    shared.live.apply(&stored);
    // Unless the number of workers was given, it is found by measurement, up to `workers`.
    if !shared.live.workers_pinned() {
        let target = shared.live.throttle().max_commit_latency;
        let pace = pace::Pace::new(workers, target, Instant::now(), 0);
        shared.live.set_workers(pace.workers());
        if let Ok(mut p) = shared.pace.lock() {
            *p = Some(pace);
        }
    }
    events.send(Event::Started {
        plan: shared.job.plan.clone(),
        table: shared.job.spec.table.to_string(),
        workers: shared.live.workers(),
        segments: total_segments,
        segments_left: prepared.pending.len() as u32,
        rows_estimate: prepared.rows_estimate,
        rows_done: prepared.rows_done,
        resumed: prepared.resumed,
        max_rows_per_second: shared.options.max_rows_per_second,
    });
    let pool = pool(conn, &shared)?;
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let monitor = tokio::spawn(monitor::watch(
        shared.clone(),
        conn.clone(),
        shared.options.replicas.clone(),
        done_rx,
    ));
    let result = walk(conn, &shared, &pool, prepared.pending.len(), &stop).await;
    let _ = done_tx.send(true);
    let _ = monitor.await;
    release(&pool, &shared).await;
    if matches!(result, Ok(true)) {
        // The resume message says how far the walk got of the rows expected.
        if let Ok(client) = pool.get().await {
            monitor::refresh_estimate(&shared, &client).await;
        }
    }
    pool.close();
    let interrupted = result?;

    let summary = Summary {
        rows_done: shared.rows_done.load(Ordering::SeqCst),
        rows_estimate: shared.rows_estimate.load(Ordering::SeqCst),
        rows_seen: shared.rows_seen.load(Ordering::SeqCst),
        rows_changed: shared.rows_changed.load(Ordering::SeqCst),
        retries: shared.retries.load(Ordering::SeqCst),
        elapsed: started.elapsed(),
    };
    Ok(outcome(&events, summary, interrupted))
}

/// Sends the workers over the segments until none is left in the database (after a crash
/// some may have lost their commits: at most [`MAX_ROUNDS`] rounds), the run is stopped
/// (`Ok(true)`), or a worker failed.
async fn walk(
    conn: &ConnectionSpec,
    shared: &Arc<Shared>,
    pool: &Pool,
    mut pending: usize,
    stop: &Stop,
) -> Result<bool> {
    let mut rounds = 0;
    loop {
        if pending > 0 {
            supervise(shared, pool).await;
        }
        let failure = shared.failure.lock().ok().and_then(|mut f| f.take());
        if let Some(e) = failure {
            return Err(e);
        }
        // Read back what the database holds: a segment a worker saw finish may have lost its
        // commit in a crash (with `synchronous_commit = off`).
        let (left, rows_done) = close(conn, &shared.job, &shared.options).await?;
        shared.rows_done.store(rows_done, Ordering::SeqCst);
        if left.is_empty() {
            return Ok(false);
        }
        if stop.is_set() {
            return Ok(true);
        }
        rounds += 1;
        if rounds > MAX_ROUNDS {
            return Err(Error::Database {
                context: format!("backfill of {}", shared.job.spec.table),
                message: format!(
                    "{} segments are still not done after {MAX_ROUNDS} rounds: their commits are being lost (a server crash with synchronous_commit = off?)",
                    left.len()
                ),
                code: None,
            });
        }
        shared.finished.store(false, Ordering::SeqCst);
        pending = left.len();
    }
}

/// The run's last event and its outcome.
fn outcome(events: &Events, summary: Summary, interrupted: bool) -> Outcome {
    if interrupted {
        events.send(Event::Interrupted {
            rows_done: summary.rows_done,
            rows_seen: summary.rows_seen,
        });
        return Outcome::Interrupted(summary);
    }
    events.send(Event::Finished {
        rows_done: summary.rows_done,
        rows_seen: summary.rows_seen,
        rows_changed: summary.rows_changed,
        seconds: summary.elapsed.as_secs_f64(),
        retries: summary.retries,
    });
    Outcome::Finished(summary)
}

/// Keeps the wanted number of workers running (`backfill set workers=N` changes it) until
/// none is left: a worker ends when no segment is left, when the run stops, or when its number
/// is above the wanted count.
async fn supervise(shared: &Arc<Shared>, pool: &Pool) {
    let mut handles: Vec<Option<tokio::task::JoinHandle<()>>> = Vec::new();
    loop {
        let wanted = shared.live.workers() as usize;
        let more = !shared.finished.load(Ordering::SeqCst) && !shared.stop.is_set();
        if handles.len() < wanted {
            handles.resize_with(wanted, || None);
        }
        if more {
            for (i, h) in handles.iter_mut().enumerate().take(wanted) {
                if h.is_none() {
                    let id = i as u32 + 1;
                    *h = Some(tokio::spawn(worker::run(id, shared.clone(), pool.clone())));
                }
            }
        }
        if handles.iter().all(|h| h.is_none()) && !more {
            return;
        }
        // The first worker to end, at once (the last one's end is the end of the walk), or a
        // look at the wanted number of workers every 100 ms.
        let ended = std::future::poll_fn(|cx| {
            for (i, h) in handles.iter_mut().enumerate() {
                if let Some(j) = h {
                    if let std::task::Poll::Ready(r) =
                        std::future::Future::poll(std::pin::Pin::new(j), cx)
                    {
                        return std::task::Poll::Ready((i, r));
                    }
                }
            }
            std::task::Poll::Pending
        });
        tokio::select! {
            (i, r) = ended => {
                handles[i] = None;
                if let Err(e) = r {
                    shared.fail(Error::Failed(format!("a backfill worker crashed: {e}")));
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

/// Gives back the segments this process still holds, so others (or a rerun) take them at once.
async fn release(pool: &Pool, shared: &Shared) {
    if let Ok(client) = pool.get().await {
        let _ = state::segments::release(
            &client,
            &shared.options.state_schema,
            &shared.job.plan,
            &shared.owner,
        )
        .await;
    }
}

/// Reads the segments left and the rows done, and records the end when no segment is left,
/// on a new connection (the server may have restarted during the run), retrying like a chunk.
async fn close(
    conn: &ConnectionSpec,
    job: &Job,
    options: &EngineOptions,
) -> Result<(Vec<segments::Pending>, i64)> {
    let mut attempt = 0;
    loop {
        let result = async {
            let client = conn.connect().await?;
            let (left, rows_done) = segments::load(&client, job, options).await?;
            if left.is_empty() {
                segments::mark_finished(&client, job, options).await?;
            }
            Ok::<_, Error>((left, rows_done))
        }
        .await;
        match result {
            Err(_) if attempt < options.retries => {
                attempt += 1;
                tokio::time::sleep(crate::executor::backoff(attempt)).await;
            }
            other => return other,
        }
    }
}

/// The workers' pool: every connection starts with the chunk's `lock_timeout` and
/// `statement_timeout`, asynchronous commit, and the plan's trigger bypass (after the options
/// every connection has, see [`ConnectionSpec::parse`]), so each chunk is one statement.
fn pool(conn: &ConnectionSpec, shared: &Shared) -> Result<Pool> {
    let mut config = conn.config().clone();
    // `synchronous_commit = off`: a chunk commits its rows and its checkpoint together, so a
    // crash that loses the last commits loses both, and the resume redoes those chunks (the
    // walk reads back what the database holds, see `walk`). The chunks then stop waiting for
    // their WAL flush, and the application's commits stop queueing behind theirs.
    crate::db::add_options(
        &mut config,
        &format!(
            "-c synchronous_commit=off -c lock_timeout={} -c statement_timeout={} -c {}={}",
            shared.options.lock_timeout.as_millis().max(1),
            shared.options.statement_timeout.as_millis().max(1),
            BYPASS_SETTING,
            escape_option(&shared.job.spec.bypass)
        ),
    );
    let manager = Manager::from_config(
        config,
        conn.tls()?,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(shared.options.workers.max(1) as usize)
        .build()
        .map_err(|e| Error::Failed(format!("cannot build the connection pool: {e}")))
}

/// Escapes a value for the startup `options` parameter (spaces and backslashes).
fn escape_option(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        if c == ' ' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::split_point;

    fn key(k: i64) -> Vec<String> {
        vec![k.to_string()]
    }

    #[test]
    fn a_walk_is_split_half_way_between_its_cursor_and_its_end() {
        assert_eq!(
            split_point(Some(&key(100)), &key(900), 100),
            Some((500, 800))
        );
        assert_eq!(split_point(Some(&key(-50)), &key(50), 10), Some((0, 100)));
    }

    #[test]
    fn a_walk_with_fewer_than_four_batches_left_or_no_cursor_is_not_split() {
        assert_eq!(split_point(Some(&key(100)), &key(499), 100), None);
        assert_eq!(
            split_point(Some(&key(100)), &key(500), 100),
            Some((300, 400))
        );
        assert_eq!(split_point(None, &key(1_000_000), 100), None);
        assert_eq!(split_point(Some(&key(10)), &key(5), 1), None);
    }

    #[test]
    fn a_split_of_the_whole_bigint_range_does_not_overflow() {
        let split = split_point(Some(&key(i64::MIN + 1)), &key(i64::MAX - 1), 1);
        assert_eq!(split, Some((-1, i64::MAX)));
    }
}
