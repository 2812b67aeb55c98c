//! A simulated application: tasks that run a mix of statements against a table, each on its own
//! connection, and record every statement's latency. The demo runs one next to the backfill,
//! the benchmarks measure the application's latency with it, and the fault tests use it as the
//! concurrent writers.
//!
//! Two ways to space the statements: [`start`] pauses [`Workload::pause`] after each one (a
//! closed loop: a slow statement delays the next), [`start_at_rate`] starts them on a fixed
//! schedule, so the tasks together offer a known rate (the process benchmark's 400/s).
//! Statements are any SQL taking `$1`: reads (`SELECT ... WHERE id = $1`) mix in as they are.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::db::ConnectionSpec;
use crate::error::Result;

/// Statements slower than this are listed in [`Report::slow`].
pub const SLOW: Duration = Duration::from_millis(20);

/// What the simulated application does.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Statements picked in turn (task `i` starts at statement `i`); `$1` is a random `int8`
    /// in `1..=key_max` (write `$1::int8`, and use it even when the statement needs no key).
    pub statements: Vec<String>,
    /// The largest key `$1` takes.
    pub key_max: i64,
    /// Concurrent tasks (connections).
    pub tasks: usize,
    /// Pause between two statements of a task; zero for as fast as it can.
    pub pause: Duration,
}

/// What the workload saw.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Statements run.
    pub ops: u64,
    /// Statements that failed.
    pub errors: u64,
    /// The first few errors.
    pub first_errors: Vec<String>,
    /// Every statement's latency, in microseconds, sorted.
    pub latencies_us: Vec<u64>,
    /// The statements slower than 20 ms: when each started (since the workload started), its
    /// latency and its index in [`Workload::statements`], for explaining outliers.
    pub slow: Vec<(Duration, Duration, usize)>,
    /// How long the workload ran.
    pub elapsed: Duration,
}

impl Report {
    /// The latency at quantile `q` (0..=1).
    pub fn quantile(&self, q: f64) -> Duration {
        if self.latencies_us.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies_us.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
        Duration::from_micros(self.latencies_us[i])
    }

    /// The longest latency.
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.latencies_us.last().copied().unwrap_or(0))
    }

    /// Statements run per second, over the time the workload ran.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ops as f64 / secs
        } else {
            0.0
        }
    }
}

/// A workload that is running.
pub struct Running {
    stop: Arc<AtomicBool>,
    started: Instant,
    handles: Vec<JoinHandle<Report>>,
}

/// How a task spaces its statements.
#[derive(Debug, Clone, Copy)]
enum Pace {
    /// Sleep this long after each statement (zero: none).
    After(Duration),
    /// Start a statement every this long; starts missed behind a slow statement are skipped.
    Every(Duration),
}

/// Starts the workload; every task connects before this returns. Each task pauses
/// [`Workload::pause`] after each statement.
pub async fn start(conn: &ConnectionSpec, workload: &Workload) -> Result<Running> {
    start_paced(conn, workload, Pace::After(workload.pause)).await
}

/// Starts the workload so that its tasks together start `per_second` statements a second
/// (each task one every `tasks / per_second`, the tasks evenly staggered), whatever the
/// statements' latency; [`Workload::pause`] is not used. A task held up by a slow statement
/// skips the starts it missed instead of catching up in a burst, so a stall shows both in the
/// latencies and as a lower achieved rate ([`Report::rate`]). Every task connects before this
/// returns.
pub async fn start_at_rate(
    conn: &ConnectionSpec,
    workload: &Workload,
    per_second: f64,
) -> Result<Running> {
    // At least 1 µs: a zero period would make `tokio::time::interval` panic.
    let period = Duration::from_secs_f64(workload.tasks.max(1) as f64 / per_second.max(1e-3))
        .max(Duration::from_micros(1));
    start_paced(conn, workload, Pace::Every(period)).await
}

async fn start_paced(conn: &ConnectionSpec, workload: &Workload, pace: Pace) -> Result<Running> {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut handles = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..workload.tasks {
        clients.push(conn.connect().await?);
    }
    // The schedule starts once every task is connected.
    let first = tokio::time::Instant::now();
    for (i, client) in clients.into_iter().enumerate() {
        let stop = stop.clone();
        let w = workload.clone();
        handles.push(tokio::spawn(async move {
            let mut report = Report::default();
            let mut seed =
                0x9E37_79B9_7F4A_7C15u64 ^ (i as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03);
            let mut next = i;
            let mut prepared = Vec::new();
            for s in &w.statements {
                match client.prepare(s).await {
                    Ok(p) => prepared.push(p),
                    Err(e) => {
                        report.errors += 1;
                        report.first_errors.push(format!("{s}: {e}"));
                        return report;
                    }
                }
            }
            let mut ticks = match pace {
                Pace::Every(period) => {
                    let offset = period.mul_f64(i as f64 / w.tasks.max(1) as f64);
                    let mut t = tokio::time::interval_at(first + offset, period);
                    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                    Some(t)
                }
                Pace::After(_) => None,
            };
            while !stop.load(Ordering::Relaxed) && !prepared.is_empty() {
                if let Some(t) = ticks.as_mut() {
                    t.tick().await;
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
                // xorshift64*: cheap, and deterministic per task.
                seed ^= seed >> 12;
                seed ^= seed << 25;
                seed ^= seed >> 27;
                let r = seed.wrapping_mul(0x2545_F491_4F6C_DD1D);
                let key = (r % w.key_max.max(1) as u64) as i64 + 1;
                let which = next % prepared.len();
                next += 1;
                let t = Instant::now();
                let result = client.execute(&prepared[which], &[&key]).await;
                let took = t.elapsed();
                report.latencies_us.push(took.as_micros() as u64);
                if took > SLOW {
                    report.slow.push((t.duration_since(started), took, which));
                }
                report.ops += 1;
                if let Err(e) = result {
                    report.errors += 1;
                    if report.first_errors.len() < 5 {
                        report.first_errors.push(e.to_string());
                    }
                    if client.is_closed() {
                        break;
                    }
                }
                if let Pace::After(pause) = pace {
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                }
            }
            report
        }));
    }
    Ok(Running {
        stop,
        started,
        handles,
    })
}

impl Running {
    /// Stops every task and merges their reports.
    pub async fn stop(self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Report {
            elapsed: self.started.elapsed(),
            ..Report::default()
        };
        for h in self.handles {
            if let Ok(r) = h.await {
                all.ops += r.ops;
                all.errors += r.errors;
                all.first_errors.extend(r.first_errors);
                all.latencies_us.extend(r.latencies_us);
                all.slow.extend(r.slow);
            }
        }
        all.latencies_us.sort_unstable();
        all.slow.sort();
        all
    }
}
