//! `verify`: counts the rows the backfill would still change, walking the table by key in
//! read-only pages (no locks beyond `ACCESS SHARE`, no long snapshot), throttled, and keeps the
//! keys of the first ones it finds. The contract gate runs the same walk.

use std::num::NonZeroU32;

use tokio_postgres::Client;

use crate::engine::keyset::{verify_sql, Keyset};
use crate::error::{Error, Result};
use crate::planner::BackfillSpec;

/// Rows read per page.
pub const PAGE: i64 = 10_000;
/// Keys of rows out of sync kept for the report.
pub const SAMPLE: usize = 10;

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    /// Rows read.
    pub rows: i64,
    /// Rows out of sync.
    pub out_of_sync: i64,
    /// Up to [`SAMPLE`] of their keys, described (`id = '42'`).
    pub keys: Vec<String>,
}

/// Walks the whole table; `max_rows_per_second` (0: none) paces the pages.
pub async fn verify(
    client: &Client,
    spec: &BackfillSpec,
    keyset: &Keyset,
    max_rows_per_second: u64,
) -> Result<Report> {
    let sql = verify_sql(spec, keyset);
    let ctx = format!("verifying {}", spec.table);
    let fail = |e: tokio_postgres::Error| Error::db(ctx.clone(), &e);
    let first = client.prepare(&sql.first).await.map_err(fail)?;
    let next = client.prepare(&sql.next).await.map_err(fail)?;
    let page = if max_rows_per_second > 0 {
        PAGE.min(
            i64::try_from(max_rows_per_second / 10)
                .unwrap_or(PAGE)
                .max(1),
        )
    } else {
        PAGE
    };
    let limiter =
        NonZeroU32::new(u32::try_from(max_rows_per_second).unwrap_or(u32::MAX)).map(|rate| {
            governor::RateLimiter::direct(
                governor::Quota::per_second(rate)
                    .allow_burst(NonZeroU32::new(page as u32).unwrap_or(NonZeroU32::MIN)),
            )
        });
    let mut report = Report::default();
    let mut cursor: Option<Vec<String>> = None;
    loop {
        if let Some(l) = &limiter {
            let _ = l
                .until_n_ready(NonZeroU32::new(page as u32).unwrap_or(NonZeroU32::MIN))
                .await;
        }
        let stmt = if cursor.is_some() { &next } else { &first };
        let row = client
            .query_one(stmt, &[&cursor, &page])
            .await
            .map_err(fail)?;
        let rows: i64 = row.get(0);
        let bad: i64 = row.get(1);
        let last: Option<Vec<String>> = row.get(2);
        let keys: String = row.get(3);
        report.rows += rows;
        report.out_of_sync += bad;
        if report.keys.len() < SAMPLE {
            let found: Vec<Vec<String>> = serde_json::from_str(&keys).unwrap_or_default();
            for k in found.into_iter().take(SAMPLE - report.keys.len()) {
                report.keys.push(keyset.describe(&k));
            }
        }
        if rows < page || last.is_none() {
            return Ok(report);
        }
        cursor = last;
    }
}
