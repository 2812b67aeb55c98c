//! Shutdown and holding, injected as values (mini-redis's habit): the engine, the executor
//! and the runner take a [`Stop`] and never look at signals themselves; the command layer
//! triggers it from Ctrl-C, tests trigger it directly.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// Asks a run to stop: chunks in flight commit, no new chunk starts. Cheap to clone; safe to
/// trigger from a signal handler's thread.
#[derive(Debug, Clone, Default)]
pub struct Stop(Arc<StopInner>);

#[derive(Debug, Default)]
struct StopInner {
    flag: AtomicBool,
    notify: Notify,
}

impl Stop {
    /// A stop that has not been triggered.
    pub fn new() -> Stop {
        Stop::default()
    }

    /// Stops the run.
    pub fn trigger(&self) {
        self.0.flag.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    /// Whether the run was asked to stop.
    pub fn is_set(&self) -> bool {
        self.0.flag.load(Ordering::SeqCst)
    }

    /// Resolves once the run is asked to stop.
    pub async fn wait(&self) {
        loop {
            let notified = self.0.notify.notified();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }
}

/// Holds the workers at their next chunk boundary while set; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Pause(Arc<StopInner>);

impl Pause {
    /// Pauses (`true`) or resumes (`false`).
    pub fn set(&self, paused: bool) {
        self.0.flag.store(paused, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    /// Whether the workers are held.
    pub fn is_set(&self) -> bool {
        self.0.flag.load(Ordering::SeqCst)
    }

    /// Resolves once the pause is lifted.
    pub async fn wait_cleared(&self) {
        loop {
            let notified = self.0.notify.notified();
            if !self.is_set() {
                return;
            }
            notified.await;
        }
    }
}
