//! The replica heartbeat (`heartbeat`): one row holding the primary's time, written every
//! tick by the engine's monitor and read on each replica to measure its lag.

use tokio_postgres::Client;

use crate::sql::Ident;

/// Writes the heartbeat the replicas' lag is measured by: the primary's time, in the state
/// schema, every tick (as gh-ost and pt-heartbeat do). `pg_last_xact_replay_timestamp()` alone
/// overstates the lag after any quiet spell, such as the backfill's own throttled pauses.
pub async fn beat(client: &Client, schema: &Ident) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            &format!("INSERT INTO {schema}.heartbeat (id, at) VALUES (1, clock_timestamp()) ON CONFLICT (id) DO UPDATE SET at = EXCLUDED.at"),
            &[],
        )
        .await
        .map(|_| ())
}

/// The age in seconds of the heartbeat `client` sees (on a replica: the last one it replayed);
/// `None` when none was written yet.
pub async fn age(client: &Client, schema: &Ident) -> Result<Option<f64>, tokio_postgres::Error> {
    Ok(client
        .query_one(
            &format!("SELECT extract(epoch FROM clock_timestamp() - max(at))::float8 FROM {schema}.heartbeat"),
            &[],
        )
        .await?
        .get(0))
}
