//! Database-health probes. While any is over its threshold, or fails to run (fail closed), the
//! workers hold between chunks.

use std::time::Duration;

use tokio_postgres::Client;

use crate::db::ConnectionSpec;
use crate::plan::ThrottleSettings;
use crate::sql::Ident;
use crate::state::heartbeat;

/// A replica to measure lag on, and its connection once made.
pub struct Replica {
    /// Where it is.
    pub spec: ConnectionSpec,
    /// The connection, made on first use and again after it breaks.
    pub client: Option<Client>,
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

fn failed(probe: &str, e: &tokio_postgres::Error) -> String {
    let message = e
        .as_db_error()
        .map(|d| format!("{} ({})", d.message(), d.code().code()))
        .unwrap_or_else(|| e.to_string());
    format!("{probe} probe failed: {message}")
}

/// Runs every configured probe; `Some(reason)` when the workers must hold, naming the probe
/// and its value (`replica lag 7.2s > 5.0s`). `tick` is how often the heartbeat is written:
/// a replica's lag is the age of the heartbeat it has replayed, less one tick.
pub async fn check(
    client: &Client,
    replicas: &mut [Replica],
    table: &str,
    t: &ThrottleSettings,
    schema: &Ident,
    tick: Duration,
) -> Option<String> {
    if let Some(max) = t.max_replication_lag {
        if let Some(why) = replication_lag(client, replicas, schema, tick, max).await {
            return Some(why);
        }
    }
    if let Some(max) = t.max_lock_waiters {
        if let Some(why) = lock_waiters(client, table, max).await {
            return Some(why);
        }
    }
    if let Some(max) = t.max_transaction_age {
        if let Some(why) = transaction_age(client, max).await {
            return Some(why);
        }
    }
    if t.pause_during_autovacuum {
        if let Some(why) = autovacuum(client, table).await {
            return Some(why);
        }
    }
    if let Some(q) = &t.query {
        return custom_query(client, q).await;
    }
    None
}

/// The primary's view of its replicas' replay lag, then each `--replica-url`'s age of the
/// heartbeat.
async fn replication_lag(
    client: &Client,
    replicas: &mut [Replica],
    schema: &Ident,
    tick: Duration,
    max: Duration,
) -> Option<String> {
    let lag = client
        .query_one(
            "SELECT coalesce(max(extract(epoch FROM replay_lag)), 0)::float8 FROM pg_stat_replication",
            &[],
        )
        .await;
    match lag {
        Ok(row) => {
            let lag = Duration::from_secs_f64(row.get::<_, f64>(0).max(0.0));
            if lag > max {
                return Some(format!("replication lag {} > {}", secs(lag), secs(max)));
            }
        }
        Err(e) => return Some(failed("replication lag", &e)),
    }
    for (i, r) in replicas.iter_mut().enumerate() {
        if r.client.as_ref().map_or(true, |c| c.is_closed()) {
            match r.spec.connect().await {
                Ok(c) => r.client = Some(c),
                Err(e) => return Some(format!("replica {} lag probe failed: {e}", i + 1)),
            }
        }
        let Some(c) = &r.client else { continue };
        match heartbeat::age(c, schema).await {
            Ok(age) => {
                let age = age.unwrap_or(0.0);
                let lag = Duration::from_secs_f64((age - tick.as_secs_f64()).max(0.0));
                if lag > max {
                    return Some(format!(
                        "replica {} lag {} > {}",
                        i + 1,
                        secs(lag),
                        secs(max)
                    ));
                }
            }
            Err(e) => return Some(failed(&format!("replica {} lag", i + 1), &e)),
        }
    }

    None
}

/// Sessions waiting on locks of the table.
async fn lock_waiters(client: &Client, table: &str, max: u64) -> Option<String> {
    let row = client
        .query_one(
            "SELECT count(*)::int8 FROM pg_locks WHERE NOT granted AND relation = $1::text::regclass",
            &[&table],
        )
        .await;
    match row {
        Ok(row) => {
            let n: i64 = row.get(0);
            if n.max(0) as u64 > max {
                return Some(format!("{n} sessions waiting on locks of {table} > {max}"));
            }
        }
        Err(e) => return Some(failed("lock waiters", &e)),
    }

    None
}

/// The oldest open transaction of a client.
async fn transaction_age(client: &Client, max: Duration) -> Option<String> {
    let row = client
        .query_one(
            "SELECT coalesce(max(extract(epoch FROM now() - xact_start)), 0)::float8 FROM pg_stat_activity
              WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
            &[],
        )
        .await;
    match row {
        Ok(row) => {
            let age = Duration::from_secs_f64(row.get::<_, f64>(0).max(0.0));
            if age > max {
                return Some(format!(
                    "oldest transaction open for {} > {}",
                    secs(age),
                    secs(max)
                ));
            }
        }
        Err(e) => return Some(failed("transaction age", &e)),
    }

    None
}

/// Autovacuum working on the table.
async fn autovacuum(client: &Client, table: &str) -> Option<String> {
    let row = client
        .query_one(
            "SELECT count(*)::int8 FROM pg_stat_progress_vacuum v JOIN pg_stat_activity a USING (pid)
              WHERE v.relid = $1::text::regclass AND a.backend_type = 'autovacuum worker'",
            &[&table],
        )
        .await;
    match row {
        Ok(row) if row.get::<_, i64>(0) > 0 => {
            return Some(format!("autovacuum is working on {table}"))
        }
        Ok(_) => {}
        Err(e) => return Some(failed("autovacuum", &e)),
    }

    None
}

/// The user's throttle query: one boolean, true holds.
async fn custom_query(client: &Client, q: &str) -> Option<String> {
    match client.query(q, &[]).await {
        Ok(rows) => {
            match rows.first().map(|r| r.try_get::<_, Option<bool>>(0)) {
                Some(Ok(Some(true))) => return Some(format!("throttle query returned true: {q}")),
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    return Some(format!(
                        "throttle query probe failed: it must return one boolean ({e})"
                    ))
                }
                None => return Some(
                    "throttle query probe failed: it returned no row (it must return one boolean)"
                        .to_string(),
                ),
            }
        }
        Err(e) => return Some(failed("throttle query", &e)),
    }

    None
}
