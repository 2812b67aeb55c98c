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
    /// A child stops with its parent; triggering the child leaves the parent alone.
    parent: Option<Stop>,
}

impl Stop {
    /// A stop that has not been triggered.
    pub fn new() -> Stop {
        Stop::default()
    }

    /// A stop that is set when this one is, and can also be set on its own: the engine's,
    /// which a failed worker sets to stop the others without taking it for the user's Ctrl-C
    /// (after which nothing would be tried again).
    pub fn child(&self) -> Stop {
        Stop(Arc::new(StopInner {
            parent: Some(self.clone()),
            ..StopInner::default()
        }))
    }

    /// Stops the run.
    pub fn trigger(&self) {
        self.0.flag.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    /// Whether the run was asked to stop.
    pub fn is_set(&self) -> bool {
        self.0.flag.load(Ordering::SeqCst) || self.0.parent.as_ref().is_some_and(Stop::is_set)
    }

    /// Resolves once the run is asked to stop.
    pub async fn wait(&self) {
        let own = async {
            loop {
                let notified = self.0.notify.notified();
                if self.0.flag.load(Ordering::SeqCst) {
                    return;
                }
                notified.await;
            }
        };
        match &self.0.parent {
            Some(parent) => {
                tokio::select! {
                    () = own => {}
                    () = Box::pin(parent.wait()) => {}
                }
            }
            None => own.await,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_child_stops_with_its_parent_and_alone_without_it() {
        let parent = Stop::new();
        let child = parent.child();
        child.trigger();
        assert!(child.is_set());
        assert!(!parent.is_set(), "the child's trigger reached the parent");
        child.wait().await;

        let other = parent.child();
        let waiting = tokio::spawn({
            let other = other.clone();
            async move { other.wait().await }
        });
        parent.trigger();
        assert!(other.is_set());
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .unwrap_or_else(|_| panic!("the child did not wake with its parent"))
            .unwrap_or_else(|e| panic!("{e}"));
    }
}
