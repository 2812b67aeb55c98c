//! How many workers, chosen by measurement: the number that makes the backfill fastest is the
//! server's (its cores, its disk), not something the client can read, so the engine finds it.
//! It starts with two workers (at most the configured `workers`, which stays the ceiling),
//! and every window of a few seconds compares its rate with the window before:
//! - after adding a worker, a rate that did not rise by [`GAIN`] takes it back and waits
//!   [`SETTLE`] before trying again (the knee);
//! - otherwise, below the ceiling, it tries one more;
//! - with `max_commit_latency` set, a commit that takes longer takes a worker away, down to
//!   one, and then spaces the chunks out (a pause after each, doubled while the latency
//!   stays over, halved once it is back under).
//!
//! The commit latency is the monitor's own probe: tiny durable writes each tick ([`PROBES`] of
//! them while a target is set), which wait for the WAL flush and for a CPU as the application's
//! commits do. A window is judged by the [`QUANTILE`] of its samples, not their median: the
//! target protects the application's slow commits, and a median hid them (2.5 ms while the
//! application's p99 was 18 ms, measured on 2 cores). Windows in which the workers were held
//! (pause, throttle, rate limit) decide nothing.
//!
//! Pure: the monitor feeds it the clock, the rows walked and the probe's samples.

use std::time::{Duration, Instant};

/// The length of one measurement window.
pub const WINDOW: Duration = Duration::from_secs(5);
/// The rise in rate that keeps an added worker.
pub const GAIN: f64 = 1.05;
/// How long after the knee before another worker is tried.
pub const SETTLE: Duration = Duration::from_secs(60);
/// The first number of workers.
pub const START: u32 = 2;
/// The longest pause between two chunks of a worker.
pub const MAX_PAUSE: Duration = Duration::from_millis(500);
/// Probes a tick while a latency target is set (one otherwise, for the figures).
pub const PROBES: usize = 4;
/// The time a tick's probes may take before the rest are skipped.
pub const PROBE_BUDGET: Duration = Duration::from_millis(250);
/// The quantile of a window's probes compared with the target.
pub const QUANTILE: f64 = 0.9;

/// What the controller changes.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Workers to run.
    pub workers: u32,
    /// The pause after each chunk.
    pub pause: Duration,
    /// Why, for the progress output and the log.
    pub why: String,
}

/// The controller's state.
#[derive(Debug, Clone)]
pub struct Pace {
    ceiling: u32,
    workers: u32,
    pause: Duration,
    target: Option<Duration>,
    window_start: Instant,
    rows_at_start: i64,
    held: bool,
    latencies: Vec<Duration>,
    /// The rate before the last added worker, while that worker is on trial.
    trial: Option<f64>,
    no_more_until: Instant,
}

impl Pace {
    /// A controller for at most `ceiling` workers that keeps the probe's commit latency
    /// under `target` (`None`: no latency target).
    pub fn new(ceiling: u32, target: Option<Duration>, now: Instant, rows: i64) -> Pace {
        let ceiling = ceiling.max(1);
        Pace {
            ceiling,
            workers: START.min(ceiling),
            pause: Duration::ZERO,
            target,
            window_start: now,
            rows_at_start: rows,
            held: false,
            latencies: Vec::new(),
            trial: None,
            no_more_until: now,
        }
    }

    /// Changes the latency target (`backfill set max_commit_latency=...`).
    pub fn set_target(&mut self, target: Option<Duration>) {
        self.target = target;
    }

    /// The workers to start with.
    pub fn workers(&self) -> u32 {
        self.workers
    }

    /// The commit latency the controller keeps under.
    pub fn target(&self) -> Option<Duration> {
        self.target
    }

    /// One tick: `rows` walked by this process so far, whether the workers were held since the
    /// last tick, and the probes' commit latencies. A decision when the window closed and
    /// something changes.
    pub fn tick(
        &mut self,
        now: Instant,
        rows: i64,
        held: bool,
        latencies: &[Duration],
    ) -> Option<Decision> {
        self.held |= held;
        self.latencies.extend_from_slice(latencies);
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed < WINDOW {
            return None;
        }
        let rate = (rows - self.rows_at_start).max(0) as f64 / elapsed.as_secs_f64();
        let held = std::mem::take(&mut self.held);
        let mut latencies = std::mem::take(&mut self.latencies);
        self.window_start = now;
        self.rows_at_start = rows;
        if held {
            self.trial = None;
            return None;
        }
        latencies.sort();
        let high = latencies
            .len()
            .checked_sub(1)
            .and_then(|last| latencies.get((last as f64 * QUANTILE).round() as usize))
            .copied();
        if let (Some(m), Some(target)) = (high, self.target) {
            if m > target {
                self.trial = None;
                self.no_more_until = now + SETTLE;
                return Some(if self.workers > 1 {
                    self.workers -= 1;
                    self.decision(format!("commit latency {} ms > {} ms", ms(m), ms(target)))
                } else {
                    self.pause = (self.pause * 2)
                        .max(Duration::from_millis(5))
                        .min(MAX_PAUSE);
                    self.decision(format!(
                        "commit latency {} ms > {} ms, chunks spaced by {} ms",
                        ms(m),
                        ms(target),
                        ms(self.pause)
                    ))
                });
            }
        }
        if !self.pause.is_zero() {
            self.pause /= 2;
            if self.pause < Duration::from_millis(5) {
                self.pause = Duration::ZERO;
            }
            return Some(self.decision("commit latency back under its target".to_string()));
        }
        if let Some(before) = self.trial.take() {
            if rate < before * GAIN {
                self.workers -= 1;
                self.no_more_until = now + SETTLE;
                return Some(self.decision(format!(
                    "{:.0} rows/s with one more worker, {:.0} without: not worth it",
                    rate, before
                )));
            }
        }
        if self.workers < self.ceiling && now >= self.no_more_until && rate > 0.0 {
            self.trial = Some(rate);
            self.workers += 1;
            return Some(self.decision(format!("trying one more worker ({rate:.0} rows/s)")));
        }
        None
    }

    fn decision(&self, why: String) -> Decision {
        Decision {
            workers: self.workers,
            pause: self.pause,
            why,
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds one window at `rate` rows/s with `latency`, returns the decision.
    fn window(
        p: &mut Pace,
        t: &mut Instant,
        rows: &mut i64,
        rate: i64,
        latency_ms: u64,
    ) -> Option<Decision> {
        let mut last = None;
        for _ in 0..5 {
            *t += Duration::from_secs(1);
            *rows += rate;
            last = p.tick(*t, *rows, false, &[Duration::from_millis(latency_ms)]);
        }
        last
    }

    #[test]
    fn climbs_while_the_rate_rises_and_steps_back_at_the_knee() {
        let mut t = Instant::now();
        let mut rows = 0;
        let mut p = Pace::new(8, Some(Duration::from_millis(2)), t, rows);
        assert_eq!(p.workers(), 2);
        // 2 workers: 100k/s; the window decides to try a third.
        assert_eq!(
            window(&mut p, &mut t, &mut rows, 100_000, 2).map(|d| d.workers),
            Some(3)
        );
        // 3 workers: 130k/s, kept, and a fourth is tried.
        assert_eq!(
            window(&mut p, &mut t, &mut rows, 130_000, 2).map(|d| d.workers),
            Some(4)
        );
        // 4 workers: no better: back to 3, and no new trial for a while.
        assert_eq!(
            window(&mut p, &mut t, &mut rows, 131_000, 2).map(|d| d.workers),
            Some(3)
        );
        assert_eq!(window(&mut p, &mut t, &mut rows, 130_000, 2), None);
        // After the settling time it tries again.
        for _ in 0..11 {
            window(&mut p, &mut t, &mut rows, 130_000, 2);
        }
        assert_eq!(p.workers, 4);
    }

    #[test]
    fn a_slow_commit_takes_workers_away_then_spaces_the_chunks() {
        let mut t = Instant::now();
        let mut rows = 0;
        let mut p = Pace::new(4, Some(Duration::from_millis(6)), t, rows);
        assert_eq!(p.target(), Some(Duration::from_millis(6)));
        let d = window(&mut p, &mut t, &mut rows, 100_000, 20).expect("a decision");
        assert_eq!((d.workers, d.pause), (1, Duration::ZERO));
        let d = window(&mut p, &mut t, &mut rows, 60_000, 20).expect("a decision");
        assert_eq!((d.workers, d.pause), (1, Duration::from_millis(5)));
        let d = window(&mut p, &mut t, &mut rows, 50_000, 20).expect("a decision");
        assert_eq!(d.pause, Duration::from_millis(10));
        // Back under: the pause halves away before any worker is added.
        let d = window(&mut p, &mut t, &mut rows, 50_000, 2).expect("a decision");
        assert_eq!((d.workers, d.pause), (1, Duration::from_millis(5)));
        let d = window(&mut p, &mut t, &mut rows, 50_000, 2).expect("a decision");
        assert_eq!(d.pause, Duration::ZERO);
    }

    #[test]
    fn the_slow_tail_of_a_window_counts_not_its_median() {
        let mut t = Instant::now();
        let mut p = Pace::new(4, Some(Duration::from_millis(3)), t, 0);
        // Ten probes a window: seven fast, three slow. The median (1 ms) is under the target,
        // the 90th percentile (12 ms) is not, and a worker goes.
        let mut last = None;
        for tick in 1..=5u64 {
            t += Duration::from_secs(1);
            let slow = if tick <= 3 { 12 } else { 1 };
            let samples = [Duration::from_millis(slow), Duration::from_millis(1)];
            last = p.tick(t, tick as i64 * 100_000, false, &samples);
        }
        let d = last.expect("a decision");
        assert_eq!(d.workers, 1, "{d:?}");
        assert!(d.why.contains("12.0 ms > 3.0 ms"), "{d:?}");
    }

    #[test]
    fn a_held_window_decides_nothing_and_the_ceiling_holds() {
        let mut t = Instant::now();
        let mut p = Pace::new(1, None, t, 0);
        assert_eq!(p.workers(), 1);
        let mut rows = 0;
        assert_eq!(window(&mut p, &mut t, &mut rows, 100_000, 50), None);
        let mut p = Pace::new(4, None, t, 0);
        t += Duration::from_secs(6);
        assert_eq!(p.tick(t, 500_000, true, &[]), None);
        assert_eq!(p.workers(), 2);
    }
}
