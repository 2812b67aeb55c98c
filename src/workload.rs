//! A simulated application: tasks that run a mix of statements against a table, each on its own
//! connection, and record every statement's latency. The demo runs one next to the backfill,
//! the benchmark measures writers' latency with it, and the fault tests use it as the
//! concurrent writers.

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
}

/// A workload that is running.
pub struct Running {
    stop: Arc<AtomicBool>,
    started: Instant,
    handles: Vec<JoinHandle<Report>>,
}

/// Starts the workload; every task connects before this returns.
pub async fn start(conn: &ConnectionSpec, workload: &Workload) -> Result<Running> {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut handles = Vec::new();
    for i in 0..workload.tasks {
        let client = conn.connect().await?;
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
            while !stop.load(Ordering::Relaxed) && !prepared.is_empty() {
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
                if !w.pause.is_zero() {
                    tokio::time::sleep(w.pause).await;
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
