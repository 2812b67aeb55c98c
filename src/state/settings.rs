//! Settings of a running backfill (`backfill set`, and the command-line settings a process
//! shares with those that join it): stored with the backfill, read by every process's monitor.

use serde_json::{Map, Value};
use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::sql::Ident;

/// Merges `changes` into the settings of plan `name`'s backfill, in one transaction that
/// refuses bounds that would cross, and logs them; returns them as `key=value, ...`.
pub async fn change(
    client: &mut Client,
    schema: &Ident,
    name: &str,
    changes: Map<String, Value>,
) -> Result<String> {
    let fail = |e: tokio_postgres::Error| Error::db("changing settings", &e);
    let tx = client.transaction().await.map_err(fail)?;
    let Some(row) = tx
        .query_opt(
            &format!("SELECT settings FROM {schema}.backfills WHERE plan = $1 FOR UPDATE"),
            &[&name],
        )
        .await
        .map_err(fail)?
    else {
        return Err(Error::Usage(format!(
            "plan `{name}` has no backfill on this database yet: settings apply to a backfill that has started"
        )));
    };
    let mut settings: Map<String, Value> =
        serde_json::from_str(&row.get::<_, String>(0)).unwrap_or_default();
    let described: Vec<String> = changes
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                if v.is_null() {
                    "off".to_string()
                } else {
                    v.to_string().trim_matches('"').to_string()
                }
            )
        })
        .collect();
    settings.extend(changes);
    if let (Some(min), Some(max)) = (
        settings.get("min_batch_size").and_then(Value::as_u64),
        settings.get("max_batch_size").and_then(Value::as_u64),
    ) {
        if min > max {
            return Err(Error::Usage(format!(
                "min_batch_size ({min}) would be above max_batch_size ({max})"
            )));
        }
    }
    tx.execute(
        &format!("UPDATE {schema}.backfills SET settings = $2 WHERE plan = $1"),
        &[&name, &Value::Object(settings).to_string()],
    )
    .await
    .map_err(fail)?;
    tx.commit().await.map_err(fail)?;
    super::event(
        &*client,
        schema,
        name,
        Some("backfill"),
        None,
        "settings",
        &described.join(", "),
    )
    .await?;
    Ok(described.join(", "))
}
