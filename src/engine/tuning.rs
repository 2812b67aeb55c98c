//! What can change while a backfill runs: the rate limit, the number of workers, the batch
//! bounds and the throttle thresholds (`backfill set`, read by the monitor), and the health
//! verdict of the probes.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::Notify;

use crate::plan::{parse_duration, ThrottleSettings};

/// The keys `backfill set` accepts, with what each takes.
pub const KEYS: &[(&str, &str)] = &[
    ("max_rows_per_second", "rows per second, 0 for no limit"),
    ("workers", "1 to 64"),
    ("min_batch_size", "rows, at least 1"),
    ("max_batch_size", "rows, at least 1"),
    ("max_replication_lag", "a duration (\"5s\"), or \"off\""),
    ("max_lock_waiters", "a count, or \"off\""),
    ("max_transaction_age", "a duration (\"1h\"), or \"off\""),
    ("pause_during_autovacuum", "true or false"),
    ("max_commit_latency", "a duration (\"5ms\"), or \"off\""),
];

/// Checks one `key=value` of `backfill set` and returns it as stored.
pub fn parse_setting(key: &str, value: &str) -> Result<Value, String> {
    let count = |min: u64, max: u64| -> Result<Value, String> {
        match value.replace('_', "").parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(Value::from(n)),
            _ => Err(format!(
                "{key} must be a whole number from {min} to {max}, not `{value}`"
            )),
        }
    };
    let off = value.eq_ignore_ascii_case("off") || value.eq_ignore_ascii_case("none");
    match key {
        "max_rows_per_second" => count(0, u64::from(u32::MAX)),
        "workers" => count(1, u64::from(crate::plan::defaults::MAX_WORKERS)),
        "min_batch_size" | "max_batch_size" => count(1, 10_000_000),
        "max_lock_waiters" if off => Ok(Value::Null),
        "max_lock_waiters" => count(0, 1_000_000),
        "max_replication_lag" | "max_transaction_age" | "max_commit_latency" if off => {
            Ok(Value::Null)
        }
        "max_replication_lag" | "max_transaction_age" | "max_commit_latency" => {
            parse_duration(value)
                .map(|_| Value::from(value))
                .map_err(|e| format!("{key}: {e}"))
        }
        "pause_during_autovacuum" => match value {
            "true" | "on" | "yes" => Ok(Value::Bool(true)),
            "false" | "off" | "no" => Ok(Value::Bool(false)),
            _ => Err(format!("{key} must be true or false, not `{value}`")),
        },
        _ => Err(format!(
            "unknown setting `{key}`; these can be changed while a backfill runs: {}",
            KEYS.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// The limiter of `rate` rows per second: a burst of one chunk (a tenth of a second's rows),
/// so chunks are paced evenly.
pub fn limiter(rate: u64) -> Option<Arc<governor::DefaultDirectRateLimiter>> {
    let per_second = NonZeroU32::new(u32::try_from(rate).unwrap_or(u32::MAX))?;
    let burst = NonZeroU32::new(chunk_cap(rate)).unwrap_or(NonZeroU32::MIN);
    Some(Arc::new(governor::RateLimiter::direct(
        governor::Quota::per_second(per_second).allow_burst(burst),
    )))
}

/// The most rows one chunk may take under a rate limit of `rate` rows per second.
pub fn chunk_cap(rate: u64) -> u32 {
    u32::try_from((rate / 10).max(1)).unwrap_or(u32::MAX)
}

/// The settings in effect and the health verdict, shared by the workers and the monitor.
#[derive(Debug)]
pub struct Tuning {
    rate: AtomicU64,
    limiter: RwLock<Option<Arc<governor::DefaultDirectRateLimiter>>>,
    workers: AtomicU32,
    min_batch: AtomicU32,
    max_batch: AtomicU32,
    throttle: Mutex<ThrottleSettings>,
    health: Mutex<Option<String>>,
    healthy: Notify,
    applied: Mutex<Map<String, Value>>,
    /// The pause after each chunk the pace controller asks for, in microseconds.
    pause_us: AtomicU64,
}

impl Tuning {
    /// The starting settings.
    pub fn new(
        rate: u64,
        workers: u32,
        min_batch: u32,
        max_batch: u32,
        throttle: ThrottleSettings,
    ) -> Tuning {
        Tuning {
            rate: AtomicU64::new(rate),
            limiter: RwLock::new(limiter(rate)),
            workers: AtomicU32::new(workers.max(1)),
            min_batch: AtomicU32::new(min_batch.max(1)),
            max_batch: AtomicU32::new(max_batch.max(min_batch.max(1))),
            throttle: Mutex::new(throttle),
            health: Mutex::new(None),
            healthy: Notify::new(),
            applied: Mutex::new(Map::new()),
            pause_us: AtomicU64::new(0),
        }
    }

    /// Rows per second allowed (0: no limit).
    pub fn rate(&self) -> u64 {
        self.rate.load(Ordering::SeqCst)
    }

    /// The rate limiter in effect.
    pub fn limiter(&self) -> Option<Arc<governor::DefaultDirectRateLimiter>> {
        self.limiter.read().ok().and_then(|l| l.clone())
    }

    /// Workers wanted in this process.
    pub fn workers(&self) -> u32 {
        self.workers.load(Ordering::SeqCst)
    }

    /// Whether the number of workers was given (command line, `backfill set`): the pace
    /// controller then leaves it alone.
    pub fn workers_pinned(&self) -> bool {
        self.applied
            .lock()
            .map(|a| a.contains_key("workers"))
            .unwrap_or(true)
    }

    /// The pace controller's number of workers.
    pub fn set_workers(&self, workers: u32) {
        self.workers.store(workers.max(1), Ordering::SeqCst);
    }

    /// The pause after each chunk.
    pub fn pause(&self) -> Duration {
        Duration::from_micros(self.pause_us.load(Ordering::SeqCst))
    }

    /// Sets the pause after each chunk.
    pub fn set_pause(&self, pause: Duration) {
        self.pause_us.store(
            u64::try_from(pause.as_micros()).unwrap_or(u64::MAX),
            Ordering::SeqCst,
        );
    }

    /// The batch bounds, the upper one capped by the rate limit.
    pub fn batch_bounds(&self) -> (u32, u32) {
        let (min, max) = (
            self.min_batch.load(Ordering::SeqCst),
            self.max_batch.load(Ordering::SeqCst),
        );
        match self.rate() {
            0 => (min, max),
            r => (min.min(chunk_cap(r)), max.min(chunk_cap(r))),
        }
    }

    /// The throttle thresholds in effect.
    pub fn throttle(&self) -> ThrottleSettings {
        self.throttle.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Why the workers must hold, if they must.
    pub fn throttled(&self) -> Option<String> {
        self.health.lock().ok().and_then(|h| h.clone())
    }

    /// Records the probes' verdict; true when it changed.
    pub fn set_health(&self, reason: Option<String>) -> bool {
        let Ok(mut h) = self.health.lock() else {
            return false;
        };
        let changed = *h != reason;
        let clear = reason.is_none();
        *h = reason;
        drop(h);
        if clear {
            self.healthy.notify_waiters();
        }
        changed
    }

    /// Resolves once the probes find the database healthy.
    pub async fn wait_healthy(&self) {
        loop {
            let notified = self.healthy.notified();
            if self.throttled().is_none() {
                return;
            }
            notified.await;
        }
    }

    /// Applies the stored overrides of `backfill set`; returns a description of what changed.
    pub fn apply(&self, settings: &Map<String, Value>) -> Option<String> {
        let Ok(mut applied) = self.applied.lock() else {
            return None;
        };
        let mut changes = Vec::new();
        for (key, value) in settings {
            if applied.get(key) == Some(value) {
                continue;
            }
            let as_u64 = value.as_u64();
            match (key.as_str(), as_u64) {
                ("max_rows_per_second", Some(r)) => {
                    self.rate.store(r, Ordering::SeqCst);
                    if let Ok(mut l) = self.limiter.write() {
                        *l = limiter(r);
                    }
                }
                ("workers", Some(w)) => self
                    .workers
                    .store(u32::try_from(w).unwrap_or(1).max(1), Ordering::SeqCst),
                ("min_batch_size", Some(b)) => self
                    .min_batch
                    .store(u32::try_from(b).unwrap_or(1).max(1), Ordering::SeqCst),
                ("max_batch_size", Some(b)) => self
                    .max_batch
                    .store(u32::try_from(b).unwrap_or(1).max(1), Ordering::SeqCst),
                _ => {
                    if let Ok(mut t) = self.throttle.lock() {
                        let dur = value.as_str().and_then(|s| parse_duration(s).ok());
                        match key.as_str() {
                            "max_replication_lag" => t.max_replication_lag = dur,
                            "max_transaction_age" => t.max_transaction_age = dur,
                            "max_commit_latency" => t.max_commit_latency = dur,
                            "max_lock_waiters" => t.max_lock_waiters = as_u64,
                            "pause_during_autovacuum" => {
                                t.pause_during_autovacuum = value.as_bool().unwrap_or(false)
                            }
                            _ => continue,
                        }
                    }
                }
            }
            applied.insert(key.clone(), value.clone());
            changes.push(format!("{key}={}", value_text(value)));
        }
        (!changes.is_empty()).then(|| changes.join(", "))
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "off".to_string(),
        other => other.to_string(),
    }
}

/// The monitor's tick for a probe interval `d`: at most a second (so leases are renewed and
/// `backfill set` is picked up within 2 s), at least 100 ms.
pub fn tick(d: Duration) -> Duration {
    d.min(Duration::from_secs(1))
        .max(Duration::from_millis(100))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_and_applied_once() {
        assert_eq!(parse_setting("workers", "8"), Ok(Value::from(8u64)));
        assert!(parse_setting("workers", "0").is_err());
        assert!(
            matches!(parse_setting("worker", "2"), Err(e) if e.contains("max_rows_per_second"))
        );
        assert_eq!(parse_setting("max_replication_lag", "off"), Ok(Value::Null));
        assert!(parse_setting("max_replication_lag", "soon").is_err());
        let live = Tuning::new(0, 4, 10, 1000, ThrottleSettings::default());
        let mut m = Map::new();
        m.insert("max_rows_per_second".into(), Value::from(500u64));
        m.insert("max_replication_lag".into(), Value::from("2s"));
        let changed = live.apply(&m);
        assert_eq!(
            changed.as_deref(),
            Some("max_replication_lag=2s, max_rows_per_second=500")
        );
        assert_eq!(live.apply(&m), None);
        assert_eq!(live.rate(), 500);
        assert_eq!(live.batch_bounds(), (10, 50));
        assert_eq!(
            live.throttle().max_replication_lag,
            Some(Duration::from_secs(2))
        );
    }
}
