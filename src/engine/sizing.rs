//! The batch size: adapts toward a target chunk duration.
//!
//! pt-online-schema-change keeps an exponentially weighted average of rows per second and sizes
//! the next chunk as rate × `--chunk-time`; GitLab's batched migrations grow or shrink the batch
//! by at most 20 % per job depending on how the last job's duration compared with the target.
//! This combines both and adds what they lack:
//! - the rate is an exponentially weighted average of *rows per second of chunk time*, so one
//!   slow or fast chunk moves the size a little, and a segment's short last chunk counts for
//!   what it is;
//! - growth is bounded (× [`MAX_GROWTH`] per chunk) so the size approaches the target from
//!   below instead of overshooting into long row locks, while shrinking is immediate when a
//!   chunk takes more than twice the target (a lock wait, a burst of traffic);
//! - a chunk that failed (lock timeout, statement timeout) halves the size and the average, so
//!   the retry is smaller and growth starts again from there;
//! - all within the plan's `min_batch_size`..`max_batch_size` and never more rows than the rate
//!   limit allows in one second.

use std::time::Duration;

/// Weight of the newest chunk in the average.
pub const ALPHA: f64 = 0.3;
/// The most the batch grows from one chunk to the next.
pub const MAX_GROWTH: f64 = 1.5;

/// The adaptive batch size of one worker.
#[derive(Debug, Clone)]
pub struct Sizing {
    batch: f64,
    min: u32,
    max: u32,
    target: Duration,
    rate: Option<f64>,
}

impl Sizing {
    /// Starts at `first`, within `min..=max`, adapting toward `target` per chunk.
    pub fn new(first: u32, min: u32, max: u32, target: Duration) -> Sizing {
        let min = min.max(1);
        let max = max.max(min);
        Sizing {
            batch: f64::from(first.clamp(min, max)),
            min,
            max,
            target,
            rate: None,
        }
    }

    /// Changes the bounds (a cap from the rate limit, or new settings); the size follows.
    pub fn set_bounds(&mut self, min: u32, max: u32) {
        self.min = min.max(1);
        self.max = max.max(self.min);
        self.batch = self.batch.clamp(f64::from(self.min), f64::from(self.max));
    }

    /// The size of the next chunk.
    pub fn batch(&self) -> u32 {
        self.batch.round() as u32
    }

    /// Feeds back a chunk that saw `rows` rows in `took`.
    pub fn observe(&mut self, rows: u64, took: Duration) {
        if rows == 0 {
            return;
        }
        let secs = took.as_secs_f64().max(1e-4);
        let sample = rows as f64 / secs;
        let rate = match self.rate {
            None => sample,
            Some(r) => ALPHA * sample + (1.0 - ALPHA) * r,
        };
        self.rate = Some(rate);
        let ideal = rate * self.target.as_secs_f64();
        let next = if took > self.target * 2 {
            // Far too slow: go straight to what this chunk's own rate allows.
            ideal.min(sample * self.target.as_secs_f64())
        } else {
            ideal.min(self.batch * MAX_GROWTH)
        };
        self.batch = next.clamp(f64::from(self.min), f64::from(self.max));
    }

    /// A chunk failed (lock or statement timeout): halve the size and the rate estimate.
    pub fn shrink(&mut self) {
        self.batch = (self.batch / 2.0).clamp(f64::from(self.min), f64::from(self.max));
        self.rate = self.rate.map(|r| r / 2.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn grows_toward_the_target_without_overshooting() {
        // 100 rows per ms, target 50 ms: 5000 rows.
        let mut s = Sizing::new(100, 10, 100_000, MS * 50);
        let mut sizes = Vec::new();
        for _ in 0..20 {
            let b = s.batch();
            s.observe(
                u64::from(b),
                Duration::from_secs_f64(f64::from(b) / 100_000.0),
            );
            sizes.push(s.batch());
        }
        assert!(sizes.windows(2).all(|w| w[1] >= w[0]), "{sizes:?}");
        assert!(sizes
            .windows(2)
            .all(|w| f64::from(w[1]) <= f64::from(w[0]) * MAX_GROWTH + 1.0));
        let last = *sizes.last().unwrap_or(&0);
        assert!((4500..=5000).contains(&last), "{sizes:?}");
    }

    #[test]
    fn a_slow_chunk_shrinks_at_once_and_stays_in_bounds() {
        let mut s = Sizing::new(5000, 10, 10_000, MS * 50);
        s.observe(5000, MS * 50);
        assert_eq!(s.batch(), 5000);
        // A lock wait: 5000 rows took 1 s.
        s.observe(5000, MS * 1000);
        assert!(s.batch() <= 250, "{}", s.batch());
        for _ in 0..10 {
            s.shrink();
        }
        assert_eq!(s.batch(), 10);
        let mut fast = Sizing::new(5000, 10, 8000, MS * 50);
        for _ in 0..10 {
            fast.observe(u64::from(fast.batch()), MS);
        }
        assert_eq!(fast.batch(), 8000);
    }

    #[test]
    fn bounds_from_a_rate_limit_cap_the_size() {
        let mut s = Sizing::new(5000, 10, 10_000, MS * 50);
        s.set_bounds(10, 300);
        assert_eq!(s.batch(), 300);
        s.observe(300, MS);
        assert_eq!(s.batch(), 300);
    }
}
