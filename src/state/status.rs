//! What `status` reads: every plan's phases, backfill progress, processes, last error and a
//! contract refused, as JSON objects (the command layer prints them as text or JSON).

use serde_json::{json, Value};
use tokio_postgres::Client;

use super::{phase_name, HEARTBEAT_TTL_SECONDS};
use crate::error::{Error, Result};
use crate::planner::Phase;
use crate::sql::{Ident, QualifiedName};

/// The status of `names` (every recorded plan when empty), as JSON objects.
pub async fn status(client: &Client, schema: &Ident, names: &[String]) -> Result<Vec<Value>> {
    let fail = |e: tokio_postgres::Error| Error::db("reading the state schema", &e);
    let rows = client
        .query(
            &format!(
                "SELECT plan, file, table_name, expand_release, contract_release, paused, last_error
                   FROM {schema}.plans WHERE cardinality($1::text[]) = 0 OR plan = ANY($1) ORDER BY file, plan"
            ),
            &[&names],
        )
        .await
        .map_err(fail)?;
    let mut out = Vec::new();
    for name in names {
        if !rows.iter().any(|r| r.get::<_, String>(0) == *name) {
            out.push(json!({ "plan": name, "started": false }));
        }
    }
    for r in &rows {
        let plan: String = r.get(0);
        let expand_release: Option<String> = r.get(3);
        let contract_release: Option<String> = r.get(4);
        let phases = client
            .query(
                &format!("SELECT phase, release, finished_at IS NOT NULL, to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), host, pid FROM {schema}.phases WHERE plan = $1"),
                &[&plan],
            )
            .await
            .map_err(fail)?;
        let mut phase_list = Vec::new();
        let mut current: Option<&str> = None;
        for phase in [
            Phase::Expand,
            Phase::DualWrite,
            Phase::Backfill,
            Phase::Contract,
        ] {
            let name = phase_name(phase);
            let gate = if phase == Phase::Contract {
                contract_release.clone()
            } else {
                expand_release.clone()
            };
            let row = phases.iter().find(|p| p.get::<_, String>(0) == name);
            let (status, release, at, by) = match row {
                Some(p) if p.get::<_, bool>(2) => (
                    "done",
                    p.get::<_, Option<String>>(1),
                    p.get::<_, Option<String>>(3),
                    Some(format!(
                        "{} pid {}",
                        p.get::<_, Option<String>>(4).unwrap_or_default(),
                        p.get::<_, Option<i32>>(5).unwrap_or(0)
                    )),
                ),
                Some(_) => ("running", None, None, None),
                None => ("pending", None, None, None),
            };
            if status != "done" && current.is_none() {
                current = Some(name);
            }
            phase_list.push(json!({
                "phase": name, "status": status, "release": release, "finished_at": at,
                "by": by, "due_from": gate,
            }));
        }
        let backfill = client
            .query_opt(
                &format!(
                    "SELECT b.row_estimate, coalesce(sum(s.rows_seen), 0)::int8, count(s.*) FILTER (WHERE NOT s.done), count(s.*), b.finished_at IS NOT NULL
                       FROM {schema}.backfills b LEFT JOIN {schema}.segments s ON s.plan = b.plan
                      WHERE b.plan = $1 GROUP BY b.row_estimate, b.finished_at"
                ),
                &[&plan],
            )
            .await
            .map_err(fail)?;
        let processes = client
            .query(
                &format!(
                    "SELECT host, pid, phase, workers, rows_done, rate, extract(epoch FROM now() - heartbeat_at)::float8
                       FROM {schema}.runners WHERE plan = $1 AND heartbeat_at > now() - make_interval(secs => $2)
                      ORDER BY host, pid"
                ),
                &[&plan, &HEARTBEAT_TTL_SECONDS],
            )
            .await
            .map_err(fail)?;
        // `+ 0.0`: an empty sum of floats is -0.0.
        let rate: f64 = processes
            .iter()
            .filter_map(|p| p.get::<_, Option<f64>>(5))
            .sum::<f64>()
            + 0.0;
        let paused: bool = r.get(5);
        let table: String = r.get(2);
        let table = QualifiedName::from_quoted(&table)
            .map(|q| q.plain())
            .unwrap_or(table);
        let backfill_json = backfill.map(|b| {
            let done: i64 = b.get(1);
            let finished: bool = b.get(4);
            // The estimate was taken at the start; the rows walked are the truth once done.
            let estimate: i64 = if finished {
                done
            } else {
                b.get::<_, i64>(0).max(done)
            };
            let left = (estimate - done).max(0) as f64;
            let moving = rate >= 1.0 && !finished && !paused;
            json!({
                "rows_done": done,
                "rows_estimate": estimate,
                "percent": if estimate > 0 { 100.0 * done as f64 / estimate as f64 } else { 100.0 },
                "segments_left": b.get::<_, i64>(2),
                "segments": b.get::<_, i64>(3),
                "finished": finished,
                "rows_per_second": if paused { 0.0 } else { rate },
                "eta_seconds": if moving { Some(left / rate) } else { None },
            })
        });
        let refused: Option<String> = client
            .query_opt(
                &format!(
                    "SELECT detail FROM {schema}.events WHERE plan = $1 AND phase = 'contract' AND kind = 'refused'
                        AND NOT EXISTS (SELECT FROM {schema}.phases WHERE plan = $1 AND phase = 'contract')
                      ORDER BY id DESC LIMIT 1"
                ),
                &[&plan],
            )
            .await
            .map_err(fail)?
            .map(|row| row.get(0));
        if let (Some(why), Some(contract)) = (&refused, phase_list.last_mut()) {
            contract["refused"] = json!(why);
        }
        out.push(json!({
            "plan": plan,
            "started": true,
            "file": r.get::<_, String>(1),
            "table": table,
            "phase": current.unwrap_or("done"),
            "phases": phase_list,
            "paused": paused,
            "backfill": backfill_json,
            "processes": processes.iter().map(|p| json!({
                "host": p.get::<_, String>(0),
                "pid": p.get::<_, i32>(1),
                "phase": p.get::<_, Option<String>>(2),
                "workers": p.get::<_, Option<i32>>(3),
                "rows_done": p.get::<_, Option<i64>>(4),
                "rows_per_second": p.get::<_, Option<f64>>(5),
                "heartbeat_seconds_ago": p.get::<_, Option<f64>>(6),
            })).collect::<Vec<_>>(),
            "last_error": r.get::<_, Option<String>>(6),
        }));
    }
    Ok(out)
}
