//! The engine's monitor: one task with a connection of its own that, every tick, renews this
//! process's leases on its segments, frees the segments of dead processes on this host, applies
//! the settings changed by `backfill set`, and runs the health probes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_postgres::Client;

use super::throttle::{self, Replica};
use super::{Event, Shared};
use crate::db::ConnectionSpec;
use crate::state;

/// Runs until `done` changes.
pub(super) async fn watch(
    shared: Arc<Shared>,
    conn: ConnectionSpec,
    replicas: Vec<ConnectionSpec>,
    mut done: watch::Receiver<bool>,
) {
    let mut client: Option<Client> = None;
    let mut replicas: Vec<Replica> = replicas
        .into_iter()
        .map(|spec| Replica { spec, client: None })
        .collect();
    let mut last_probe: Option<Instant> = None;
    loop {
        shared.events.meter().tick();
        let t = shared.live.throttle();
        if client.as_ref().map_or(true, |c| c.is_closed()) {
            client = conn.connect().await.ok();
        }
        match &client {
            Some(c) => {
                renew(&shared, c).await;
                settings(&shared, c).await;
                refresh_estimate(&shared, c).await;
                let tick = super::tuning::tick(t.check_interval);
                let pacing = shared.pace.lock().map(|p| p.is_some()).unwrap_or(false);
                let lag_probe = !replicas.is_empty() && t.max_replication_lag.is_some();
                let mut latencies = Vec::new();
                let heartbeat = if lag_probe || pacing {
                    // With a latency target, several probes a tick, so that a window holds
                    // enough of them for its slow tail to show (see `pace`).
                    let probes = if pacing && t.max_commit_latency.is_some() {
                        super::pace::PROBES
                    } else {
                        1
                    };
                    let mut failed = None;
                    let started = Instant::now();
                    for _ in 0..probes {
                        // Slow probes are the answer already: they never hold up the leases'
                        // renewal on the next tick.
                        if started.elapsed() > super::pace::PROBE_BUDGET {
                            break;
                        }
                        let at = Instant::now();
                        match state::heartbeat::beat(c, &shared.options.state_schema).await {
                            Ok(()) => latencies.push(at.elapsed()),
                            Err(e) => {
                                failed = Some(e);
                                break;
                            }
                        }
                    }
                    failed.filter(|_| lag_probe)
                } else {
                    None
                };
                pace(&shared, &latencies);
                if let Some(e) = heartbeat {
                    health(
                        &shared,
                        Some(format!(
                            "replica lag probe failed: cannot write the heartbeat: {e}"
                        )),
                    );
                } else if last_probe.map_or(true, |p| p.elapsed() >= t.check_interval) {
                    last_probe = Some(Instant::now());
                    let verdict = throttle::check(
                        c,
                        &mut replicas,
                        &shared.job.spec.table.to_string(),
                        &t,
                        &shared.options.state_schema,
                        tick,
                    )
                    .await;
                    health(&shared, verdict);
                }
            }
            None if probes_configured(&t) => health(
                &shared,
                Some("health probes cannot connect to the database".to_string()),
            ),
            None => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(super::tuning::tick(t.check_interval)) => {}
            _ = done.changed() => return,
        }
    }
}

/// One tick of the pace controller: the workers and the pause between chunks it asks for.
fn pace(shared: &Shared, latencies: &[Duration]) {
    let Ok(mut guard) = shared.pace.lock() else {
        return;
    };
    if shared.live.workers_pinned() {
        // `backfill set workers=N`: the user's number from now on.
        *guard = None;
        shared.live.set_pause(Duration::ZERO);
        return;
    }
    let Some(pace) = guard.as_mut() else {
        return;
    };
    pace.set_target(shared.live.throttle().max_commit_latency);
    let meter = shared.events.meter();
    meter.commit_latency(latencies.last().copied(), pace.target());
    let held = shared.live.throttled().is_some()
        || shared.options.pause.is_set()
        || shared.live.rate() > 0;
    let rows = shared.rows_seen.load(Ordering::SeqCst);
    let Some(d) = pace.tick(Instant::now(), rows, held, latencies) else {
        return;
    };
    drop(guard);
    shared.live.set_workers(d.workers);
    shared.live.set_pause(d.pause);
    tracing::info!(workers = d.workers, pause_ms = d.pause.as_millis() as u64, why = %d.why, "pace");
    shared.events.send(Event::SettingsChanged {
        changes: format!("workers={} ({})", d.workers, d.why),
        workers: d.workers,
    });
}

fn probes_configured(t: &crate::plan::ThrottleSettings) -> bool {
    t.max_replication_lag.is_some()
        || t.max_lock_waiters.is_some()
        || t.max_transaction_age.is_some()
        || t.pause_during_autovacuum
        || t.query.is_some()
}

fn health(shared: &Shared, verdict: Option<String>) {
    if shared.live.set_health(verdict.clone()) {
        match &verdict {
            Some(reason) => tracing::info!(%reason, "throttled"),
            None => tracing::info!("no longer throttled"),
        }
        shared.events.send(match verdict {
            Some(reason) => Event::Throttled { reason },
            None => Event::Unthrottled {},
        });
    }
}

/// Renews the leases of this process's segments and frees those of dead processes on this
/// host (their pid is gone), so a rerun after a crash does not wait for the leases to run out.
async fn renew(shared: &Shared, client: &Client) {
    let (schema, plan) = (&shared.options.state_schema, &shared.job.plan);
    let _ =
        state::segments::renew_leases(client, schema, plan, &shared.owner, shared.options.lease)
            .await;
    let Ok(owners) = state::segments::other_owners(client, schema, plan, &shared.owner).await
    else {
        return;
    };
    let host = state::host();
    for owner in owners {
        if owner_is_dead(&owner, &host) {
            let _ = state::segments::free_owner(client, schema, plan, &owner).await;
        }
    }
}

/// An owner is `host:pid:nonce`; it is dead when it is on this host and its pid is gone.
pub fn owner_is_dead(owner: &str, host: &str) -> bool {
    let mut parts = owner.rsplitn(3, ':');
    let (_nonce, pid, owner_host) = (parts.next(), parts.next(), parts.next());
    match (owner_host, pid.and_then(|p| p.parse::<u32>().ok())) {
        (Some(h), Some(pid)) if h == host => {
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                && std::path::Path::new("/proc/self").exists()
        }
        _ => false,
    }
}

/// Once the walk has passed the rows expected, extrapolates them from the segments' progress
/// (see [`state::segments::estimate`]) and reports the new total, so that no one is shown 100%
/// and no time left while segments are left.
pub(super) async fn refresh_estimate(shared: &Shared, client: &Client) {
    let expected = shared.rows_estimate.load(Ordering::SeqCst);
    if shared.rows_done.load(Ordering::SeqCst) < expected {
        return;
    }
    let Ok(progress) =
        state::segments::progress(client, &shared.options.state_schema, &shared.job.plan).await
    else {
        return;
    };
    let rows = state::segments::estimate(expected, &progress);
    if rows > expected {
        shared.rows_estimate.store(rows, Ordering::SeqCst);
        shared.events.send(Event::Estimate {
            rows_estimate: rows,
        });
    }
}

/// Applies what `backfill set` stored.
async fn settings(shared: &Shared, client: &Client) {
    let Ok(Some(map)) =
        state::segments::read_settings(client, &shared.options.state_schema, &shared.job.plan)
            .await
    else {
        return;
    };
    if let Some(changes) = shared.live.apply(&map) {
        tracing::info!(%changes, "settings changed");
        shared.events.send(Event::SettingsChanged {
            changes,
            workers: shared.live.workers(),
        });
    }
}

/// How long to wait between two claims when every free segment is taken.
pub const CLAIM_POLL: Duration = Duration::from_millis(250);
