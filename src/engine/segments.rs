//! Segments of the key space, recorded in the state schema.
//!
//! A new backfill splits its table's key space once: integer keys evenly between the smallest
//! and the largest key, other and composite keys at the bucket boundaries of a `TABLESAMPLE`
//! of the table (sorted and cut in the database, so only the boundaries come back), a table
//! walked by physical location into ranges of the pages it has. The last
//! segment ends at the largest key that exists when the backfill starts: rows inserted later
//! are kept in sync by the dual-write trigger, and the backfill does not chase them. Later runs
//! read the recorded segments and resume from their cursors.

use tokio_postgres::Client;

use super::keyset::{self, Keyset};
use super::{EngineOptions, Job};
use crate::error::{Error, Result};
use crate::sql::QualifiedName;
use crate::state::segments::{self as store, NewBackfill};

pub use crate::state::segments::Pending;

/// About this many rows per segment (several segments per worker either way).
pub const ROWS_PER_SEGMENT: i64 = 50_000;
/// Segments per worker at least, so a fast worker never waits on a slow one.
pub const SEGMENTS_PER_WORKER: u32 = 4;
/// At most this many segments.
pub const MAX_SEGMENTS: u32 = 2_000;
/// Rows in the sample that places boundaries of non-integer keys.
pub const SAMPLE_ROWS: f64 = 30_000.0;

/// The backfill's segments as this run finds them.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Segments in all.
    pub total: u32,
    /// Those not done, in key order.
    pub pending: Vec<Pending>,
    /// Rows walked by earlier runs.
    pub rows_done: i64,
    /// The rows expected in all: the estimate recorded at the start, or, once earlier runs
    /// walked past it, extrapolated from the segments ([`store::estimate`]).
    pub rows_estimate: i64,
    /// Whether an earlier run started this backfill.
    pub resumed: bool,
}

/// How many segments for a table of `rows` rows and `workers` workers.
pub fn segment_count(rows: i64, workers: u32) -> u32 {
    let by_rows = u32::try_from(rows.max(0) / ROWS_PER_SEGMENT).unwrap_or(MAX_SEGMENTS);
    by_rows
        .max(workers.max(1) * SEGMENTS_PER_WORKER)
        .min(MAX_SEGMENTS)
}

/// Reads the backfill's segments, creating them on its first run. Refuses a plan whose file
/// changed since the backfill started unless `options.force`.
pub async fn prepare(client: &mut Client, job: &Job, options: &EngineOptions) -> Result<Prepared> {
    let ctx = format!("preparing the backfill of {}", job.spec.table);
    let fail = |e: tokio_postgres::Error| Error::db(ctx.clone(), &e);
    let schema = &options.state_schema;
    let tx = client.transaction().await.map_err(fail)?;
    store::lock_plan(&tx, &job.plan).await.map_err(fail)?;
    let existing = store::load_backfill(&tx, schema, &job.plan)
        .await
        .map_err(fail)?;
    let (resumed, rows_estimate) = match existing {
        Some(backfill) => {
            let recorded = backfill.checksum;
            if recorded != job.checksum {
                if !options.force {
                    return Err(Error::PlanChanged {
                        plan: job.plan.clone(),
                        file: job.file.clone(),
                        recorded,
                        now: job.checksum.clone(),
                    });
                }
                store::set_checksum(&tx, schema, &job.plan, &job.checksum)
                    .await
                    .map_err(fail)?;
            }
            (true, backfill.row_estimate)
        }
        None => {
            let mut estimate = estimate_rows(&tx, &job.spec.table).await?;
            if job.keyset.is_integer() {
                // An integer key cannot hold more rows than its span: a cheap, exact bound
                // where the statistics lag behind a rewrite.
                let row = tx
                    .query_one(
                        &keyset::integer_bounds_sql(&job.spec.table, &job.keyset),
                        &[],
                    )
                    .await
                    .map_err(fail)?;
                if let (Some(min), Some(max)) =
                    (row.get::<_, Option<i64>>(0), row.get::<_, Option<i64>>(1))
                {
                    estimate = estimate.min(max.saturating_sub(min).saturating_add(1));
                }
            }
            let bounds = split(&tx, job, segment_count(estimate, options.workers), estimate)
                .await
                .map_err(|e| match e {
                    Error::Database { message, code, .. } => Error::Database {
                        context: ctx.clone(),
                        message,
                        code,
                    },
                    other => other,
                })?;
            let key_columns: Vec<String> = job.keyset.columns.iter().map(|c| c.0.clone()).collect();
            store::create_backfill(
                &tx,
                schema,
                NewBackfill {
                    plan: &job.plan,
                    checksum: &job.checksum,
                    table: &job.spec.table.to_string(),
                    key_columns: &key_columns,
                    row_estimate: estimate,
                },
                &bounds,
            )
            .await
            .map_err(fail)?;
            (false, estimate)
        }
    };
    tx.commit().await.map_err(fail)?;
    let total = store::total(&*client, schema, &job.plan)
        .await
        .map_err(fail)?;
    let (pending, rows_done) = load(client, job, options).await?;
    let rows_estimate = if resumed {
        // Earlier runs may have walked past the estimate taken at the start.
        let progress = store::progress(&*client, schema, &job.plan)
            .await
            .map_err(fail)?;
        store::estimate(rows_estimate, &progress)
    } else {
        rows_estimate
    };
    Ok(Prepared {
        total: total as u32,
        pending,
        rows_done,
        rows_estimate,
        resumed,
    })
}

/// The segments not done, in key order, and the rows walked so far.
pub async fn load(
    client: &Client,
    job: &Job,
    options: &EngineOptions,
) -> Result<(Vec<Pending>, i64)> {
    store::pending(client, &options.state_schema, &job.plan).await
}

/// The table's rows, as well as they can be told without reading the table: from the
/// statistics when the table has been analyzed or vacuumed, else by counting the rows of a
/// thousand of its pages (see [`measure_rows`]).
///
/// With statistics: the live rows as the statistics system counts them (`n_live_tup`, kept by
/// every insert and delete, so a table bloated by earlier rewrites is not overestimated), else
/// the planner's estimate from `EXPLAIN` (it scales the density the last `ANALYZE` or `VACUUM`
/// measured by the table's current size, which counts dead rows after a rewrite).
pub async fn estimate_rows(
    client: &impl tokio_postgres::GenericClient,
    table: &QualifiedName,
) -> Result<i64> {
    let ctx = || format!("estimating the rows of {table}");
    let stats = client
        .query_one(
            "SELECT c.reltuples::float8, c.relpages::int8, s.n_live_tup,
                    current_setting('server_version_num')::int4
               FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_stat_all_tables s ON s.relid = c.oid
              WHERE c.oid = $1::text::regclass",
            &[&table.to_string()],
        )
        .await
        .map_err(|e| Error::db(ctx(), &e))?;
    let (reltuples, relpages): (f64, i64) = (stats.get(0), stats.get(1));
    let live: Option<i64> = stats.get(2);
    if reltuples < 0.0 || relpages == 0 {
        // Never analyzed nor vacuumed (reltuples -1, or 0 over 0 pages before PostgreSQL 14):
        // the planner would guess the rows per page from the column types (a text column
        // counts 32 bytes), half the truth on a table of short texts, and the statistics
        // system's count is lost after a crash or a failover. Count instead.
        return measure_rows(client, table, stats.get(3)).await;
    }
    // The smaller of the two: each overcounts in its own way (statistics not yet flushed
    // after a bulk change, the planner's density scaled over dead rows).
    // The first line is the top node (a Gather over a parallel scan on big tables).
    let rows = client
        .query(&format!("EXPLAIN SELECT 1 FROM {table}"), &[])
        .await
        .map_err(|e| Error::db(ctx(), &e))?;
    let planned = rows
        .first()
        .and_then(|r| plan_rows(&r.get::<_, String>(0)))
        .unwrap_or(0);
    Ok(match live.filter(|n| *n > 0) {
        Some(n) if planned > 0 => n.min(planned),
        Some(n) => n,
        None => planned,
    })
}

/// Pages read at most to estimate the rows of a table without statistics (8 MB of 8 kB
/// pages): every row of a smaller table is counted; a 1M-row table (16,000 pages) is
/// estimated within about 1% in 15 ms.
pub const ESTIMATE_PAGES: i64 = 1_000;
/// Windows those pages are read in, spread evenly over a bigger table, so that a table whose
/// rows per page change along its length (old rows updated, new rows wider) is measured
/// over its whole length.
pub const ESTIMATE_WINDOWS: i64 = 100;

/// The rows of a table, counted in at most [`ESTIMATE_PAGES`] of its heap pages (all of them
/// on a smaller table) and scaled to its size: [`ESTIMATE_WINDOWS`] windows of pages read by
/// TID range scans, or a random `TABLESAMPLE SYSTEM` of as many pages before PostgreSQL 14.
/// Only rows visible now are counted, so dead rows left by earlier rewrites are not.
async fn measure_rows(
    client: &impl tokio_postgres::GenericClient,
    table: &QualifiedName,
    server_version: i32,
) -> Result<i64> {
    let fail = |e: tokio_postgres::Error| Error::db(format!("estimating the rows of {table}"), &e);
    let pages: i64 = client
        .query_one(&keyset::heap_pages_sql(table), &[])
        .await
        .map_err(fail)?
        .get(0);
    if pages <= 0 {
        return Ok(0);
    }
    if pages > ESTIMATE_PAGES && server_version < 140_000 {
        let percent = 100.0 * ESTIMATE_PAGES as f64 / pages as f64;
        let n: i64 = client
            .query_one(&keyset::sampled_count_sql(table), &[&percent])
            .await
            .map_err(fail)?
            .get(0);
        return Ok((n as f64 * 100.0 / percent).round() as i64);
    }
    let (windows, width) = if pages <= ESTIMATE_PAGES {
        (1, pages)
    } else {
        (ESTIMATE_WINDOWS, ESTIMATE_PAGES / ESTIMATE_WINDOWS)
    };
    let n: i64 = client
        .query_one(
            &keyset::window_count_sql(table),
            &[&pages, &windows, &width],
        )
        .await
        .map_err(fail)?
        .get(0);
    Ok(scale(n, windows * width, pages))
}

/// `counted` rows in `read` of `pages` pages, scaled to every page.
fn scale(counted: i64, read: i64, pages: i64) -> i64 {
    if read <= 0 || read >= pages {
        return counted;
    }
    (counted as f64 * pages as f64 / read as f64).round() as i64
}

/// `rows=N` of an `EXPLAIN` line.
fn plan_rows(line: &str) -> Option<i64> {
    let rest = &line[line.find("rows=")? + 5..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// (exclusive lower, inclusive upper) bounds of up to `n` segments; none for an empty table.
async fn split(
    client: &impl tokio_postgres::GenericClient,
    job: &Job,
    n: u32,
    estimate: i64,
) -> Result<Vec<(Option<Vec<String>>, Vec<String>)>> {
    let table = &job.spec.table;
    let ks: &Keyset = &job.keyset;
    let ctx = format!("splitting the key space of {table}");
    let fail = |e: tokio_postgres::Error| Error::db(ctx.clone(), &e);
    if ks.physical {
        // Ranges of the heap's pages as they are now: (p,0) bounds, before every row of page p.
        let pages: i64 = client
            .query_one(&keyset::heap_pages_sql(table), &[])
            .await
            .map_err(fail)?
            .get(0);
        return Ok(keyset::split_integers(0, pages - 1, n)
            .into_iter()
            .map(|(l, u)| {
                (
                    l.map(|l| vec![keyset::page_bound(l + 1)]),
                    vec![keyset::page_bound(u + 1)],
                )
            })
            .collect());
    }
    if ks.is_integer() {
        let row = client
            .query_one(&keyset::integer_bounds_sql(table, ks), &[])
            .await
            .map_err(fail)?;
        let (Some(min), Some(max)) = (row.get::<_, Option<i64>>(0), row.get::<_, Option<i64>>(1))
        else {
            return Ok(Vec::new());
        };
        return Ok(keyset::split_integers(min, max, n)
            .into_iter()
            .map(|(l, u)| (l.map(|l| vec![l.to_string()]), vec![u.to_string()]))
            .collect());
    }
    let Some(max) = client
        .query_opt(&keyset::max_key_sql(table, ks), &[])
        .await
        .map_err(fail)?
        .map(|r| r.get::<_, Vec<String>>(0))
    else {
        return Ok(Vec::new());
    };
    let percent = (100.0 * SAMPLE_ROWS / (estimate.max(1) as f64)).clamp(0.0001, 100.0);
    let bounds: Vec<Vec<String>> = if n > 1 {
        client
            .query(
                &keyset::sample_bounds_sql(table, ks, percent),
                &[&i32::try_from(n).unwrap_or(i32::MAX)],
            )
            .await
            .map_err(fail)?
            .iter()
            .map(|r| r.get(0))
            .collect()
    } else {
        Vec::new()
    };
    // Every bucket's last key but the last bucket's, then the table's largest key.
    let mut out = Vec::new();
    let mut lower: Option<Vec<String>> = None;
    for upper in bounds
        .into_iter()
        .rev()
        .skip(1)
        .rev()
        .filter(|b| *b != max)
        .chain(std::iter::once(max.clone()))
    {
        out.push((lower.clone(), upper.clone()));
        lower = Some(upper);
    }
    Ok(out)
}

/// Records that the backfill finished.
pub async fn mark_finished(client: &Client, job: &Job, options: &EngineOptions) -> Result<()> {
    store::mark_finished(client, &options.state_schema, &job.plan).await
}

/// Records the settings given on this process's command line with the backfill (merged over
/// what is there, as `backfill set` does) and returns every stored setting.
pub async fn share_settings(
    client: &Client,
    job: &Job,
    options: &EngineOptions,
) -> Result<serde_json::Map<String, serde_json::Value>> {
    store::share_settings(
        client,
        &options.state_schema,
        &job.plan,
        &options.shared_settings,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_rows_reads_the_top_node() {
        assert_eq!(
            plan_rows("Gather  (cost=1000.00..63696.12 rows=5000016 width=4)"),
            Some(5_000_016)
        );
        assert_eq!(
            plan_rows("Seq Scan on users  (cost=0.00..1.01 rows=1 width=4)"),
            Some(1)
        );
        assert_eq!(plan_rows("Result"), None);
    }

    #[test]
    fn rows_counted_in_some_pages_are_scaled_to_all() {
        assert_eq!(scale(6_140, 1_000, 16_292), 100_033);
        // Every page read: the count is exact.
        assert_eq!(scale(300, 40, 40), 300);
        assert_eq!(scale(0, 0, 0), 0);
    }

    #[test]
    fn several_segments_per_worker_and_a_cap() {
        assert_eq!(segment_count(0, 4), 16);
        assert_eq!(segment_count(5_000_000, 4), 100);
        assert_eq!(segment_count(i64::MAX, 4), MAX_SEGMENTS);
    }
}
