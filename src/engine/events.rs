//! What the engine reports. The engine never writes to the terminal: it sends these on a
//! channel and a sink ([`crate::progress`]) draws bars, writes log lines or JSON.

use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc::UnboundedSender;

use crate::metrics::Meter;

/// One thing that happened during a backfill.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The backfill starts (or resumes).
    Started {
        /// The plan.
        plan: String,
        /// The table.
        table: String,
        /// Workers in this process.
        workers: u32,
        /// Segments of the key space.
        segments: u32,
        /// Segments still to do.
        segments_left: u32,
        /// Rows expected in all: the table's rows as estimated when the backfill started (or,
        /// for a run that resumes past that estimate, extrapolated from the segments).
        rows_estimate: i64,
        /// Rows already walked by earlier runs.
        rows_done: i64,
        /// Whether this run continues an earlier one.
        resumed: bool,
        /// The rate limit, rows per second (0: none).
        max_rows_per_second: u64,
    },
    /// A chunk committed.
    Chunk {
        /// The worker (1-based).
        worker: u32,
        /// The segment.
        segment: i32,
        /// Rows walked.
        rows: i64,
        /// Rows rewritten (the others were already in sync).
        changed: i64,
        /// The batch size asked for.
        batch: u32,
        /// How long the statement took.
        ms: u64,
        /// How long the worker waited for the rate limiter before it.
        throttled_ms: u64,
        /// Rows walked by every run so far.
        rows_done: i64,
    },
    /// A chunk failed for a reason that passes (lock timeout, lost connection, ...): it is
    /// retried later with a smaller batch while the worker goes on with another segment.
    Retry {
        /// The worker.
        worker: u32,
        /// The segment.
        segment: i32,
        /// Consecutive failures of this segment's chunk.
        attempt: u32,
        /// Wait before the segment is tried again.
        wait_ms: u64,
        /// The batch size of the retry.
        batch: u32,
        /// What went wrong, with the SQLSTATE.
        reason: String,
        /// The SQLSTATE (none when the connection broke).
        sqlstate: Option<String>,
    },
    /// A segment is finished.
    SegmentDone {
        /// The worker.
        worker: u32,
        /// The segment.
        segment: i32,
    },
    /// A worker with no segment left to claim took the second half of what was left of
    /// segment `segment`, walked by another worker of this process, as the new segment `new`.
    SegmentSplit {
        /// The segment split, which now ends where `new` starts.
        segment: i32,
        /// The new segment.
        new: i32,
    },
    /// A worker started: at the start, or `backfill set workers=N` asked for more.
    WorkerStarted {
        /// The worker (1-based).
        worker: u32,
    },
    /// A worker ended: no segment is left for it, the run stops, or `backfill set workers=N`
    /// asked for fewer.
    WorkerStopped {
        /// The worker.
        worker: u32,
    },
    /// The rows expected in all changed: the walk passed the estimate taken at the start (the
    /// table held more than its statistics said), and the rest is extrapolated from the
    /// segments' progress.
    Estimate {
        /// Rows expected in all, every run together.
        rows_estimate: i64,
    },
    /// A health probe is over its threshold (or failed): workers hold between chunks.
    Throttled {
        /// The probe and its value: `replica 1 lag 7.2s > 5.0s`.
        reason: String,
    },
    /// Every probe is back under its threshold.
    Unthrottled {},
    /// `backfill set` changed settings of the running backfill.
    SettingsChanged {
        /// What changed: `max_rows_per_second=500, workers=2`.
        changes: String,
        /// Workers wanted in this process now.
        workers: u32,
    },
    /// `backfill pause` from some terminal: workers hold at their next chunk boundary.
    Paused {
        /// The plan.
        plan: String,
    },
    /// `backfill resume`: workers go on.
    Resumed {
        /// The plan.
        plan: String,
    },
    /// Every segment is done.
    Finished {
        /// Rows walked by every run.
        rows_done: i64,
        /// Rows walked by this run.
        rows_seen: i64,
        /// Rows rewritten by this run.
        rows_changed: i64,
        /// Seconds this run took.
        seconds: f64,
        /// Retried chunks in this run.
        retries: u64,
    },
    /// Stopped early; the checkpoints hold.
    Interrupted {
        /// Rows walked by every run.
        rows_done: i64,
        /// Rows walked by this run.
        rows_seen: i64,
    },
    /// Stopped on an error.
    Failed {
        /// The error.
        message: String,
    },
}

/// Where events go, and the meter they update; sending never blocks and a closed sink is not
/// an error.
#[derive(Debug, Clone)]
pub struct Events {
    tx: Option<UnboundedSender<Event>>,
    meter: Meter,
}

impl Events {
    /// Sends to `tx`.
    pub fn new(tx: UnboundedSender<Event>) -> Events {
        Events {
            tx: Some(tx),
            meter: Meter::none(),
        }
    }

    /// Discards every event.
    pub fn none() -> Events {
        Events {
            tx: None,
            meter: Meter::none(),
        }
    }

    /// The same, also counted on `meter`.
    pub fn metered(self, meter: Meter) -> Events {
        Events { meter, ..self }
    }

    /// The meter the events update.
    pub fn meter(&self) -> &Meter {
        &self.meter
    }

    /// Reports one event.
    pub fn send(&self, event: Event) {
        record(&self.meter, &event);
        if let Some(tx) = &self.tx {
            let _ = tx.send(event);
        }
    }
}

/// What an event changes in the figures.
fn record(meter: &Meter, event: &Event) {
    match event {
        Event::Started {
            workers,
            segments,
            segments_left,
            rows_estimate,
            rows_done,
            ..
        } => meter.started(
            *workers,
            i64::from(*segments),
            i64::from(*segments_left),
            *rows_estimate,
            *rows_done,
        ),
        Event::Chunk {
            rows,
            changed,
            batch,
            ms,
            throttled_ms,
            rows_done,
            ..
        } => meter.chunk(
            *rows,
            *changed,
            *batch,
            Duration::from_millis(*ms),
            Duration::from_millis(*throttled_ms),
            *rows_done,
        ),
        Event::Retry {
            sqlstate, batch, ..
        } => meter.retry(sqlstate.as_deref(), *batch),
        Event::SegmentDone { .. } => meter.segment_done(),
        Event::SegmentSplit { .. } => meter.segment_split(),
        Event::Throttled { reason } => meter.throttled(Some(reason)),
        Event::Unthrottled {} => meter.throttled(None),
        Event::SettingsChanged { workers, .. } => meter.workers(*workers),
        Event::Paused { .. } => meter.paused(true),
        Event::Resumed { .. } => meter.paused(false),
        Event::Finished { rows_done, .. } | Event::Interrupted { rows_done, .. } => {
            meter.shared(*rows_done, None, 0.0);
            meter.tick();
        }
        Event::Estimate { rows_estimate } => meter.estimate(*rows_estimate),
        Event::Failed { .. } | Event::WorkerStarted { .. } | Event::WorkerStopped { .. } => {}
    }
}
