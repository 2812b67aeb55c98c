//! `verify`: counts the rows the backfill would still change, walking the table by key (or by
//! physical location, for a table with no key) in read-only pages (no locks beyond `ACCESS SHARE`, no long snapshot), throttled, and keeps the
//! keys of the first ones it finds. The contract gate runs the same walk.

use std::num::NonZeroU32;

use tokio_postgres::Client;

use crate::engine::keyset::{recheck_sql, verify_sql, Keyset};
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
    /// Rows a recheck changed (0 for `verify`).
    pub fixed: i64,
}

/// Walks the whole table; `max_rows_per_second` (0: none) paces the pages.
pub async fn verify(
    client: &mut Client,
    spec: &BackfillSpec,
    keyset: &Keyset,
    max_rows_per_second: u64,
) -> Result<Report> {
    walk(client, spec, keyset, max_rows_per_second, false).await
}

/// As [`verify`], and each page that holds rows out of sync is brought in sync by the
/// backfill's own update, limited to that page's keys, in a short transaction of its own: the
/// re-walk of rows left out of sync after the backfill finished (a write that bypassed the
/// trigger: triggers disabled, `session_replication_role = replica`). `out_of_sync` and `keys`
/// are the rows found out of sync (and changed); `fixed` how many the updates changed.
pub async fn recheck(
    client: &mut Client,
    spec: &BackfillSpec,
    keyset: &Keyset,
    max_rows_per_second: u64,
) -> Result<Report> {
    walk(client, spec, keyset, max_rows_per_second, true).await
}

/// Pages of a read-only walk paced at a rate: a page holds a tenth of a second's rows (at most
/// [`PAGE`]), and each waits for its rows' worth of the rate. `verify`, the recheck and the
/// data checks of `validate` walk this way.
pub(crate) struct Pacer {
    /// Rows per page.
    pub page: i64,
    limiter: Option<governor::DefaultDirectRateLimiter>,
    burst: NonZeroU32,
}

impl Pacer {
    /// At `max_rows_per_second` (0: unpaced, pages of [`PAGE`]).
    pub fn new(max_rows_per_second: u64) -> Pacer {
        let page = if max_rows_per_second > 0 {
            PAGE.min(
                i64::try_from(max_rows_per_second / 10)
                    .unwrap_or(PAGE)
                    .max(1),
            )
        } else {
            PAGE
        };
        let burst =
            NonZeroU32::new(u32::try_from(page).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
        let limiter =
            NonZeroU32::new(u32::try_from(max_rows_per_second).unwrap_or(u32::MAX)).map(|rate| {
                governor::RateLimiter::direct(governor::Quota::per_second(rate).allow_burst(burst))
            });
        Pacer {
            page,
            limiter,
            burst,
        }
    }

    /// Waits until the next page may be read.
    pub async fn wait(&self) {
        if let Some(l) = &self.limiter {
            let _ = l.until_n_ready(self.burst).await;
        }
    }
}

async fn walk(
    client: &mut Client,
    spec: &BackfillSpec,
    keyset: &Keyset,
    max_rows_per_second: u64,
    fix: bool,
) -> Result<Report> {
    let sql = verify_sql(spec, keyset);
    let ctx = format!(
        "{} {}",
        if fix { "rechecking" } else { "verifying" },
        spec.table
    );
    let fail = |e: tokio_postgres::Error| Error::db(ctx.clone(), &e);
    let first = client.prepare(&sql.first).await.map_err(fail)?;
    let next = client.prepare(&sql.next).await.map_err(fail)?;
    let fixes = if fix {
        let f = recheck_sql(spec, keyset);
        Some((
            client.prepare(&f.first).await.map_err(fail)?,
            client.prepare(&f.next).await.map_err(fail)?,
        ))
    } else {
        None
    };
    let pacer = Pacer::new(max_rows_per_second);
    let page = pacer.page;
    let mut report = Report::default();
    let mut cursor: Option<Vec<String>> = None;
    loop {
        pacer.wait().await;
        let stmt = if cursor.is_some() { &next } else { &first };
        let row = client
            .query_one(stmt, &[&cursor, &page])
            .await
            .map_err(fail)?;
        let rows: i64 = row.get(0);
        let bad: i64 = row.get(1);
        let last: Option<Vec<String>> = row.get(2);
        let keys: String = row.get(3);
        let end: bool = row.get(4);
        report.rows += rows;
        report.out_of_sync += bad;
        if report.keys.len() < SAMPLE {
            let found: Vec<Vec<String>> = serde_json::from_str(&keys).unwrap_or_default();
            for k in found.into_iter().take(SAMPLE - report.keys.len()) {
                report.keys.push(keyset.describe(&k));
            }
        }
        if let (Some((fix_first, fix_next)), true, Some(upper)) = (&fixes, bad > 0, &last) {
            let stmt = if cursor.is_some() {
                fix_next
            } else {
                fix_first
            };
            let tx = client.transaction().await.map_err(fail)?;
            tx.execute(&spec.bypass_sql(true), &[])
                .await
                .map_err(fail)?;
            let changed: i64 = tx
                .query_one(stmt, &[&cursor, upper])
                .await
                .map_err(fail)?
                .get(0);
            tx.commit().await.map_err(fail)?;
            report.fixed += changed;
        }
        if end || last.is_none() {
            return Ok(report);
        }
        cursor = last;
    }
}
