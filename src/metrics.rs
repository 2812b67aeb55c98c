//! A run's live figures, for dashboards and for `status`: one [`Meter`] per plan a process
//! runs. The engine and the runner report to it (chunks, retries, throttle, phase, DDL lock
//! waits); every change is published as Prometheus metrics through the `metrics` facade (a
//! no-op unless `run --metrics-addr` installed the exporter with [`serve`]), and the runner's
//! heartbeat stores [`Meter::figures`] with this process's row in the state schema, where
//! `status --json` reads them. Both are the same numbers: [`publish`] sets every metric from
//! the figures.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Upper bounds of the chunk-duration histogram's buckets, in seconds.
pub const CHUNK_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How far back this process's rate looks.
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// What a process is doing for one plan, as `status --json` shows it and the Prometheus
/// endpoint serves it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// The phase it works on.
    pub phase: Option<String>,
    /// Backfill workers wanted in this process.
    pub workers: u32,
    /// Rows this process walked.
    pub rows_walked: i64,
    /// Rows this process rewrote (the others were in sync already).
    pub rows_changed: i64,
    /// Rows walked by every process and run of the backfill.
    pub rows_done: i64,
    /// The backfill's row estimate.
    pub rows_estimate: i64,
    /// This process's rate over the last seconds (0 while paused or throttled).
    pub rows_per_second: f64,
    /// Time left at the rate of every process together, while the backfill moves.
    pub eta_seconds: Option<f64>,
    /// Segments of the key space.
    pub segments: i64,
    /// Segments not finished, in every process.
    pub segments_left: i64,
    /// The batch size of the last chunk.
    pub batch_size: u32,
    /// Chunks committed by this process.
    pub chunks: u64,
    /// Their total duration.
    pub chunk_seconds_sum: f64,
    /// Chunks per bucket of [`CHUNK_BUCKETS`] (not cumulative; the last counts longer ones).
    pub chunk_buckets: Vec<u64>,
    /// Median chunk duration, the upper bound of its bucket (filled in by
    /// [`Meter::figures`]).
    pub chunk_p50_ms: Option<f64>,
    /// 99th percentile chunk duration, the upper bound of its bucket.
    pub chunk_p99_ms: Option<f64>,
    /// Chunks retried, by SQLSTATE (`connection` when the connection broke).
    pub retries: BTreeMap<String, u64>,
    /// Whether a health probe holds the workers.
    pub throttled: bool,
    /// The probe that holds them (`replication_lag`, `lock_waiters`, `transaction_age`,
    /// `autovacuum`, `query`, `probe_failed`).
    pub throttle_reason: Option<String>,
    /// What the probe said: `replication lag 7.2s > 5.0s`.
    pub throttle_detail: Option<String>,
    /// Time workers waited for the rate limit.
    pub rate_limited_seconds: f64,
    /// `backfill pause` is in force.
    pub paused: bool,
    /// DDL statements that gave up on their lock (`lock_timeout`) and were retried.
    pub ddl_lock_waits: u64,
    /// Time spent in those attempts and their back-off.
    pub ddl_lock_wait_seconds: f64,
    /// The last commit latency of the engine's probe (a tiny durable write, every tick), while
    /// the engine chooses its number of workers.
    pub commit_latency_ms: Option<f64>,
    /// `max_commit_latency`, the latency the engine keeps that under, when set.
    pub commit_latency_target_ms: Option<f64>,
}

/// The live figures of one plan in this process. Cheap to clone; [`Meter::none`] records
/// nothing.
#[derive(Debug, Clone, Default)]
pub struct Meter(Option<Arc<Mutex<Inner>>>);

#[derive(Debug)]
struct Inner {
    plan: String,
    figures: Figures,
    /// (when, rows walked) samples of the last [`RATE_WINDOW`].
    samples: VecDeque<(Instant, i64)>,
    /// The rate of every process together, from the heartbeat.
    all_rate: f64,
    /// Phases this meter has published (to set the old ones to 0).
    phases: Vec<String>,
    /// Throttle reasons published (idem).
    reasons: Vec<String>,
}

impl Meter {
    /// The meter of `plan`.
    pub fn new(plan: &str) -> Meter {
        let figures = Figures {
            chunk_buckets: vec![0; CHUNK_BUCKETS.len() + 1],
            ..Figures::default()
        };
        Meter(Some(Arc::new(Mutex::new(Inner {
            plan: plan.to_string(),
            figures,
            samples: VecDeque::new(),
            all_rate: 0.0,
            phases: Vec::new(),
            reasons: Vec::new(),
        }))))
    }

    /// A meter that records nothing.
    pub fn none() -> Meter {
        Meter(None)
    }

    fn with(&self, f: impl FnOnce(&mut Inner)) {
        if let Some(inner) = &self.0 {
            if let Ok(mut inner) = inner.lock() {
                f(&mut inner);
                publish(&mut inner);
            }
        }
    }

    /// This process works on `phase` now.
    pub fn phase(&self, phase: &str) {
        self.with(|i| {
            i.figures.phase = Some(phase.to_string());
            if !i.phases.iter().any(|p| p == phase) {
                i.phases.push(phase.to_string());
            }
        });
    }

    /// The backfill starts (or resumes) here.
    pub fn started(
        &self,
        workers: u32,
        segments: i64,
        segments_left: i64,
        estimate: i64,
        done: i64,
    ) {
        self.with(|i| {
            let f = &mut i.figures;
            f.workers = workers;
            f.segments = segments;
            f.segments_left = segments_left;
            f.rows_estimate = estimate;
            f.rows_done = done;
        });
    }

    /// The rows expected in all, extrapolated once the walk passed the first estimate.
    pub fn estimate(&self, rows: i64) {
        self.with(|i| i.figures.rows_estimate = rows.max(i.figures.rows_done));
    }

    /// A chunk committed.
    pub fn chunk(
        &self,
        rows: i64,
        changed: i64,
        batch: u32,
        took: Duration,
        limited: Duration,
        rows_done: i64,
    ) {
        self.with(|i| {
            let f = &mut i.figures;
            f.rows_walked += rows;
            f.rows_changed += changed;
            f.rows_done = f.rows_done.max(rows_done);
            f.rows_estimate = f.rows_estimate.max(f.rows_done);
            f.batch_size = batch;
            f.chunks += 1;
            f.chunk_seconds_sum += took.as_secs_f64();
            f.rate_limited_seconds += limited.as_secs_f64();
            let bucket = CHUNK_BUCKETS
                .iter()
                .position(|&le| took.as_secs_f64() <= le)
                .unwrap_or(CHUNK_BUCKETS.len());
            if let Some(n) = f.chunk_buckets.get_mut(bucket) {
                *n += 1;
            }
            metrics::histogram!("backfill_chunk_duration_seconds", "plan" => i.plan.clone())
                .record(took.as_secs_f64());
        });
    }

    /// A chunk failed for a passing reason and will be retried.
    pub fn retry(&self, sqlstate: Option<&str>, batch: u32) {
        self.with(|i| {
            let key = sqlstate.unwrap_or("connection").to_string();
            *i.figures.retries.entry(key).or_insert(0) += 1;
            i.figures.batch_size = batch;
        });
    }

    /// A health probe holds the workers (`Some`), or none does.
    pub fn throttled(&self, detail: Option<&str>) {
        self.with(|i| {
            let f = &mut i.figures;
            f.throttled = detail.is_some();
            f.throttle_detail = detail.map(str::to_string);
            f.throttle_reason = detail.map(|d| probe_of(d).to_string());
            if let Some(r) = &f.throttle_reason {
                if !i.reasons.contains(r) {
                    i.reasons.push(r.clone());
                }
            }
        });
    }

    /// `backfill pause` is in force, or no longer.
    pub fn paused(&self, paused: bool) {
        self.with(|i| i.figures.paused = paused);
    }

    /// Workers wanted changed (`backfill set workers=N`).
    pub fn workers(&self, workers: u32) {
        self.with(|i| i.figures.workers = workers);
    }

    /// A segment finished here.
    pub fn segment_done(&self) {
        self.with(|i| i.figures.segments_left = (i.figures.segments_left - 1).max(0));
    }

    /// A walked segment was split in two: one more segment, and one more left.
    pub fn segment_split(&self) {
        self.with(|i| {
            i.figures.segments += 1;
            i.figures.segments_left += 1;
        });
    }

    /// A DDL statement could not get its lock in time; it waited `waited` before its retry.
    pub fn ddl_lock_wait(&self, waited: Duration) {
        self.with(|i| {
            i.figures.ddl_lock_waits += 1;
            i.figures.ddl_lock_wait_seconds += waited.as_secs_f64();
        });
    }

    /// The engine's commit-latency probe: its last sample and its target.
    pub fn commit_latency(&self, sample: Option<Duration>, target: Option<Duration>) {
        self.with(|i| {
            if let Some(s) = sample {
                i.figures.commit_latency_ms = Some(s.as_secs_f64() * 1000.0);
            }
            i.figures.commit_latency_target_ms = target.map(|t| t.as_secs_f64() * 1000.0);
        });
    }

    /// What the heartbeat read of every process: rows walked, segments left, their rate.
    pub fn shared(&self, rows_done: i64, segments_left: Option<i64>, rate: f64) {
        self.with(|i| {
            let f = &mut i.figures;
            f.rows_done = f.rows_done.max(rows_done);
            f.rows_estimate = f.rows_estimate.max(f.rows_done);
            if let Some(left) = segments_left {
                f.segments_left = left;
            }
            i.all_rate = rate;
        });
    }

    /// Brings the rate and the ETA up to now (the heartbeat calls it every second).
    pub fn tick(&self) {
        self.with(|i| {
            let now = Instant::now();
            i.samples.push_back((now, i.figures.rows_walked));
            while i
                .samples
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
            {
                i.samples.pop_front();
            }
            let f = &mut i.figures;
            f.rows_per_second = match (i.samples.front(), i.samples.back()) {
                _ if f.paused => 0.0,
                (Some((t0, n0)), Some((t1, n1))) if t1 > t0 => {
                    (n1 - n0).max(0) as f64 / t1.duration_since(*t0).as_secs_f64()
                }
                _ => 0.0,
            };
            let rate = i.all_rate.max(f.rows_per_second);
            let left = (f.rows_estimate - f.rows_done).max(0) as f64;
            let moving = rate >= 1.0 && !f.paused && f.segments_left > 0;
            f.eta_seconds = moving.then(|| left / rate);
        });
    }

    /// The figures now, with the chunk percentiles read off the histogram.
    pub fn figures(&self) -> Option<Figures> {
        let inner = self.0.as_ref()?;
        let mut f = inner.lock().ok().map(|i| i.figures.clone())?;
        f.chunk_p50_ms = quantile(&f.chunk_buckets, 0.5);
        f.chunk_p99_ms = quantile(&f.chunk_buckets, 0.99);
        Some(f)
    }
}

/// The upper bound of the bucket holding quantile `q` of `buckets`, in ms (`None`: no chunk
/// yet; the overflow bucket reports the last bound).
fn quantile(buckets: &[u64], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, n) in buckets.iter().enumerate() {
        seen += n;
        if seen >= rank {
            let le = CHUNK_BUCKETS
                .get(i)
                .or(CHUNK_BUCKETS.last())
                .copied()
                .unwrap_or(0.0);
            return Some(le * 1000.0);
        }
    }
    None
}

/// The probe a throttle reason comes from (the reasons of [`crate::engine::throttle`]).
pub fn probe_of(reason: &str) -> &'static str {
    if reason.contains("probe failed") || reason.contains("cannot connect") {
        "probe_failed"
    } else if reason.starts_with("replica") {
        "replication_lag"
    } else if reason.contains("waiting on locks") {
        "lock_waiters"
    } else if reason.starts_with("oldest transaction") {
        "transaction_age"
    } else if reason.starts_with("autovacuum") {
        "autovacuum"
    } else if reason.starts_with("throttle query") {
        "query"
    } else {
        "other"
    }
}

/// Sets every Prometheus metric of the plan from its figures.
fn publish(i: &mut Inner) {
    let f = &i.figures;
    let plan = i.plan.clone();
    let gauge = |name: &'static str, v: f64| {
        metrics::gauge!(name, "plan" => plan.clone()).set(v);
    };
    let counter = |name: &'static str, v: u64| {
        metrics::counter!(name, "plan" => plan.clone()).absolute(v);
    };
    for p in &i.phases {
        let on = f.phase.as_deref() == Some(p.as_str());
        metrics::gauge!("backfill_phase", "plan" => plan.clone(), "phase" => p.clone())
            .set(if on { 1.0 } else { 0.0 });
    }
    gauge("backfill_workers", f64::from(f.workers));
    counter("backfill_rows_walked_total", f.rows_walked.max(0) as u64);
    counter("backfill_rows_changed_total", f.rows_changed.max(0) as u64);
    gauge("backfill_rows_done", f.rows_done as f64);
    gauge("backfill_rows_estimate", f.rows_estimate as f64);
    gauge("backfill_rows_per_second", f.rows_per_second);
    gauge("backfill_eta_seconds", f.eta_seconds.unwrap_or(0.0));
    gauge("backfill_segments", f.segments as f64);
    gauge("backfill_segments_left", f.segments_left as f64);
    gauge("backfill_batch_size", f64::from(f.batch_size));
    for (state, n) in &f.retries {
        metrics::counter!("backfill_chunk_retries_total", "plan" => plan.clone(), "sqlstate" => state.clone())
            .absolute(*n);
    }
    gauge("backfill_throttled", if f.throttled { 1.0 } else { 0.0 });
    for r in &i.reasons {
        let on = f.throttle_reason.as_deref() == Some(r.as_str());
        metrics::gauge!("backfill_throttle_reason", "plan" => plan.clone(), "reason" => r.clone())
            .set(if on { 1.0 } else { 0.0 });
    }
    gauge("backfill_rate_limited_seconds", f.rate_limited_seconds);
    gauge("backfill_paused", if f.paused { 1.0 } else { 0.0 });
    counter("backfill_ddl_lock_waits_total", f.ddl_lock_waits);
    if let Some(ms) = f.commit_latency_ms {
        gauge("backfill_commit_latency_seconds", ms / 1000.0);
    }
    if let Some(ms) = f.commit_latency_target_ms {
        gauge("backfill_commit_latency_target_seconds", ms / 1000.0);
    }
    gauge("backfill_ddl_lock_wait_seconds", f.ddl_lock_wait_seconds);
}

/// Serves every meter of this process as Prometheus text on `addr` (any path), until the
/// process ends. Once per process.
pub fn serve(addr: SocketAddr) -> Result<()> {
    // Bind here first: the exporter binds in its background task, where a taken port would
    // only be logged.
    let probe = std::net::TcpListener::bind(addr)
        .map_err(|e| Error::Usage(format!("--metrics-addr {addr}: cannot listen there: {e}")))?;
    drop(probe);
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full("backfill_chunk_duration_seconds".into()),
            &CHUNK_BUCKETS,
        )
        .and_then(|b| b.install())
        .map_err(|e| Error::Failed(format!("cannot serve metrics on {addr}: {e}")))?;
    describe();
    Ok(())
}

/// The metrics' help texts.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!(
        "backfill_phase",
        "1 for the phase this process works on, per plan"
    );
    describe_gauge!(
        "backfill_workers",
        "backfill workers wanted in this process"
    );
    describe_counter!("backfill_rows_walked_total", "rows this process walked");
    describe_counter!("backfill_rows_changed_total", "rows this process rewrote");
    describe_gauge!(
        "backfill_rows_done",
        "rows walked by every process and run of the backfill"
    );
    describe_gauge!("backfill_rows_estimate", "the backfill's row estimate");
    describe_gauge!(
        "backfill_rows_per_second",
        "this process's rows per second, last 10 s"
    );
    describe_gauge!(
        "backfill_eta_seconds",
        Unit::Seconds,
        "time left at the rate of every process (0: not moving)"
    );
    describe_gauge!("backfill_segments", "segments of the key space");
    describe_gauge!(
        "backfill_segments_left",
        "segments not finished, every process"
    );
    describe_histogram!(
        "backfill_chunk_duration_seconds",
        Unit::Seconds,
        "duration of each committed chunk"
    );
    describe_gauge!("backfill_batch_size", "batch size of the last chunk");
    describe_counter!(
        "backfill_chunk_retries_total",
        "chunks retried, by SQLSTATE"
    );
    describe_gauge!(
        "backfill_throttled",
        "1 while a health probe holds the workers"
    );
    describe_gauge!(
        "backfill_throttle_reason",
        "1 for the probe holding the workers"
    );
    describe_gauge!(
        "backfill_rate_limited_seconds",
        Unit::Seconds,
        "time workers waited for the rate limit"
    );
    describe_gauge!("backfill_paused", "1 while `backfill pause` is in force");
    describe_counter!(
        "backfill_ddl_lock_waits_total",
        "DDL statements that hit lock_timeout and were retried"
    );
    describe_gauge!(
        "backfill_commit_latency_seconds",
        Unit::Seconds,
        "the engine's last commit-latency probe (a tiny durable write)"
    );
    describe_gauge!(
        "backfill_commit_latency_target_seconds",
        Unit::Seconds,
        "max_commit_latency: the commit latency the engine keeps under by taking workers away"
    );
    describe_gauge!(
        "backfill_ddl_lock_wait_seconds",
        Unit::Seconds,
        "time spent in DDL attempts that hit lock_timeout, with their back-off"
    );
}
