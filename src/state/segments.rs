//! The engine's progress: `backfills` (one row per backfill: plan, checksum, key, estimate,
//! shared settings) and `segments` (one row per segment of its key space: bounds, cursor,
//! counters, the process that holds it and its lease).
//!
//! The engine reads and writes them only through these functions. A chunk's checkpoint is the
//! one exception to a call of its own: it commits in the chunk's statement, so this module
//! gives the statement its checkpoint CTE ([`checkpoint_cte`]) and its guard ([`guard_call`]).
//!
//! Functions that the engine runs inside a larger step (preparing a backfill, claiming,
//! leases) return the driver's error, so that the caller names the step; the others name
//! what failed themselves.

use std::time::Duration;

use serde_json::{Map, Value};
use tokio_postgres::{Client, GenericClient};

use super::CHECKPOINT_GUARD;
use crate::error::{Error, Result};
use crate::sql::{Ident, QualifiedName};

type PgResult<T> = std::result::Result<T, tokio_postgres::Error>;

/// A backfill's recorded start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backfill {
    /// The plan file's checksum when the backfill started (or when last forced on).
    pub checksum: String,
    /// The row estimate recorded at the start.
    pub row_estimate: i64,
}

/// A segment still to walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Its number.
    pub segment: i32,
    /// The last key done (`None`: nothing done yet).
    pub cursor: Option<Vec<String>>,
    /// The last key of the segment.
    pub upper: Vec<String>,
}

/// A segment's checkpoint as read back after it moved under a chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The last key done.
    pub cursor: Option<Vec<String>>,
    /// Whether the segment is done.
    pub done: bool,
    /// Whether the owner asked about still holds it.
    pub ours: bool,
    /// The segment's last key (a split moves it).
    pub upper: Vec<String>,
}

/// (exclusive lower, inclusive upper) bounds of a segment, as `text[]` key values.
pub type Bounds = (Option<Vec<String>>, Vec<String>);

fn backfills(schema: &Ident) -> QualifiedName {
    super::table(schema, "backfills")
}

fn segments(schema: &Ident) -> QualifiedName {
    super::table(schema, "segments")
}

/// Takes the transaction-level advisory lock that serializes the start of plan `plan`'s
/// backfill, so that two processes starting at once record one split.
pub async fn lock_plan(client: &impl GenericClient, plan: &str) -> PgResult<()> {
    client
        .query_one(
            "SELECT pg_advisory_xact_lock(hashtext('backfill plan ' || $1::text))",
            &[&plan],
        )
        .await
        .map(|_| ())
}

/// The backfill of plan `plan` as recorded when it started; `None` before its first run.
pub async fn load_backfill(
    client: &impl GenericClient,
    schema: &Ident,
    plan: &str,
) -> PgResult<Option<Backfill>> {
    let backfills = backfills(schema);
    Ok(client
        .query_opt(
            &format!("SELECT checksum, row_estimate FROM {backfills} WHERE plan = $1"),
            &[&plan],
        )
        .await?
        .map(|row| Backfill {
            checksum: row.get(0),
            row_estimate: row.get(1),
        }))
}

/// Records a new checksum for plan `plan`'s backfill (its file changed and the run was forced).
pub async fn set_checksum(
    client: &impl GenericClient,
    schema: &Ident,
    plan: &str,
    checksum: &str,
) -> PgResult<()> {
    let backfills = backfills(schema);
    client
        .execute(
            &format!("UPDATE {backfills} SET checksum = $2 WHERE plan = $1"),
            &[&plan, &checksum],
        )
        .await
        .map(|_| ())
}

/// A backfill to record at its start.
#[derive(Debug, Clone, Copy)]
pub struct NewBackfill<'a> {
    /// The plan's name.
    pub plan: &'a str,
    /// The plan file's checksum.
    pub checksum: &'a str,
    /// The table, as its quoted qualified name.
    pub table: &'a str,
    /// The key columns the table is walked by, in key order.
    pub key_columns: &'a [String],
    /// About how many rows the table holds.
    pub row_estimate: i64,
}

/// Records the start of a backfill and its segments, numbered from 0 in the order of
/// `bounds`, each with its cursor at its lower bound.
pub async fn create_backfill(
    client: &impl GenericClient,
    schema: &Ident,
    new: NewBackfill<'_>,
    bounds: &[Bounds],
) -> PgResult<()> {
    let backfills = backfills(schema);
    let segments = segments(schema);
    let NewBackfill {
        plan,
        checksum,
        table,
        key_columns,
        row_estimate,
    } = new;
    client
        .execute(
            &format!("INSERT INTO {backfills} (plan, checksum, table_name, key_columns, row_estimate) VALUES ($1, $2, $3, $4, $5)"),
            &[&plan, &checksum, &table, &key_columns, &row_estimate],
        )
        .await?;
    let insert = client
        .prepare(&format!(
            "INSERT INTO {segments} (plan, segment, lower_bound, upper_bound, cursor) VALUES ($1, $2, $3, $4, $3)"
        ))
        .await?;
    for (i, (lower, upper)) in bounds.iter().enumerate() {
        client
            .execute(&insert, &[&plan, &(i as i32), lower, upper])
            .await?;
    }
    Ok(())
}

/// How many segments plan `plan`'s backfill has, done or not.
pub async fn total(client: &impl GenericClient, schema: &Ident, plan: &str) -> PgResult<i64> {
    let segments = segments(schema);
    Ok(client
        .query_one(
            &format!("SELECT count(*) FROM {segments} WHERE plan = $1"),
            &[&plan],
        )
        .await?
        .get(0))
}

/// The segments not done, in key order, and the rows walked so far (by every run).
pub async fn pending(client: &Client, schema: &Ident, plan: &str) -> Result<(Vec<Pending>, i64)> {
    let segments = segments(schema);
    let rows = client
        .query(
            &format!("SELECT segment, cursor, upper_bound, done, rows_seen FROM {segments} WHERE plan = $1 ORDER BY segment"),
            &[&plan],
        )
        .await
        .map_err(|e| Error::db("reading the backfill's segments", &e))?;
    let mut pending = Vec::new();
    let mut rows_done = 0i64;
    for r in &rows {
        rows_done += r.get::<_, i64>(4);
        if !r.get::<_, bool>(3) {
            pending.push(Pending {
                segment: r.get(0),
                cursor: r.get(1),
                upper: r.get(2),
            });
        }
    }
    Ok((pending, rows_done))
}

/// One segment's part of the walk, as the estimates read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Rows walked in it, by every run.
    pub rows_seen: i64,
    /// Whether it is done.
    pub done: bool,
}

/// Every segment's progress of plan `plan`'s backfill, in key order.
pub async fn progress(
    client: &impl GenericClient,
    schema: &Ident,
    plan: &str,
) -> PgResult<Vec<Progress>> {
    let segments = segments(schema);
    Ok(client
        .query(
            &format!("SELECT rows_seen, done FROM {segments} WHERE plan = $1 ORDER BY segment"),
            &[&plan],
        )
        .await?
        .iter()
        .map(|r| Progress {
            rows_seen: r.get(0),
            done: r.get(1),
        })
        .collect())
}

/// The rows the walk will have seen once every segment is done, extrapolated from the
/// segments: the segments of a split hold about as many rows each (equal spans of an integer
/// key, equal shares of a sample of other keys, equal ranges of pages), so a segment not done
/// is counted at the average of the segments done (at what it has seen, when that is more).
/// Before any segment is done, the average is the rows seen per segment started (a lower
/// bound: those are partly walked). `None` when nothing was walked yet.
pub fn extrapolate(segments: &[Progress]) -> Option<i64> {
    let (done_n, done_rows) = segments
        .iter()
        .filter(|s| s.done)
        .fold((0i64, 0i64), |(n, r), s| (n + 1, r + s.rows_seen));
    let average = if done_n > 0 {
        done_rows as f64 / done_n as f64
    } else {
        let started = segments.iter().filter(|s| s.rows_seen > 0).count();
        if started == 0 {
            return None;
        }
        segments.iter().map(|s| s.rows_seen as f64).sum::<f64>() / started as f64
    };
    let left: f64 = segments
        .iter()
        .filter(|s| !s.done)
        .map(|s| (s.rows_seen as f64).max(average))
        .sum();
    Some((done_rows as f64 + left).round() as i64)
}

/// The rows a backfill that is not finished is expected to walk in all: the estimate taken at
/// its start while the rows walked are under it, then (the table held more than it seemed)
/// [`extrapolate`]d from the segments, never under the rows walked.
pub fn estimate(recorded: i64, segments: &[Progress]) -> i64 {
    let done: i64 = segments.iter().map(|s| s.rows_seen).sum();
    if done < recorded {
        return recorded;
    }
    extrapolate(segments).unwrap_or(done).max(done)
}

/// Records that plan `plan`'s backfill finished (the first time only).
pub async fn mark_finished(client: &Client, schema: &Ident, plan: &str) -> Result<()> {
    let backfills = backfills(schema);
    client
        .execute(
            &format!(
                "UPDATE {backfills} SET finished_at = coalesce(finished_at, now()) WHERE plan = $1"
            ),
            &[&plan],
        )
        .await
        .map_err(|e| Error::db("recording the end of the backfill", &e))?;
    Ok(())
}

/// Merges `given` over the settings stored with plan `plan`'s backfill (as `backfill set`
/// does) and returns every stored setting.
pub async fn share_settings(
    client: &Client,
    schema: &Ident,
    plan: &str,
    given: &Map<String, Value>,
) -> Result<Map<String, Value>> {
    let backfills = backfills(schema);
    let given = Value::Object(given.clone()).to_string();
    let row = client
        .query_one(
            &format!(
                "UPDATE {backfills} SET settings = (settings::jsonb || $2::text::jsonb)::text WHERE plan = $1 RETURNING settings"
            ),
            &[&plan, &given],
        )
        .await
        .map_err(|e| Error::db(format!("recording the settings of plan `{plan}`"), &e))?;
    Ok(serde_json::from_str(&row.get::<_, String>(0)).unwrap_or_default())
}

/// The settings stored with plan `plan`'s backfill; `None` when it has no row or its settings
/// are not a JSON object.
pub async fn read_settings(
    client: &Client,
    schema: &Ident,
    plan: &str,
) -> PgResult<Option<Map<String, Value>>> {
    let backfills = backfills(schema);
    let Some(row) = client
        .query_opt(
            &format!("SELECT settings FROM {backfills} WHERE plan = $1"),
            &[&plan],
        )
        .await?
    else {
        return Ok(None);
    };
    let text: String = row.get(0);
    Ok(match serde_json::from_str(&text) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    })
}

/// Claims for `owner`, under a lease of `lease`, the first free segment of plan `plan` not in
/// `held`: never claimed, its owner's lease ran out, or `owner`'s own (a crash took back the
/// commit that finished it). Rows locked by another claim are skipped (`FOR UPDATE SKIP
/// LOCKED`); `None` when no segment is free.
pub async fn claim(
    client: &Client,
    schema: &Ident,
    plan: &str,
    owner: &str,
    lease: Duration,
    held: &[i32],
) -> PgResult<Option<Pending>> {
    let segments = segments(schema);
    let row = client
        .query_opt(
            &format!(
                "UPDATE {segments} s SET owner = $2, lease_until = now() + make_interval(secs => $3)
                       FROM (SELECT plan, segment FROM {segments}
                              WHERE plan = $1 AND NOT done AND segment <> ALL($4)
                                AND (owner IS NULL OR lease_until IS NULL OR lease_until < now() OR owner = $2)
                              ORDER BY segment LIMIT 1 FOR UPDATE SKIP LOCKED) c
                      WHERE s.plan = c.plan AND s.segment = c.segment
                  RETURNING s.segment, s.cursor, s.upper_bound"
            ),
            &[&plan, &owner, &lease.as_secs_f64(), &held],
        )
        .await?;
    Ok(row.map(|r| Pending {
        segment: r.get(0),
        cursor: r.get(1),
        upper: r.get(2),
    }))
}

/// Where [`split`] cuts a walked segment.
#[derive(Debug, Clone, Copy)]
pub struct Cut<'a> {
    /// The segment as its walker last reported it.
    pub walked: &'a Pending,
    /// The key the segment ends at from now on.
    pub at: &'a [String],
    /// The condition that the walk has not reached `at` (see [`split`]).
    pub before_point: &'a str,
}

/// Splits segment `cut.walked.segment` of plan `plan` at key `cut.at`, so that two workers walk what
/// is left of it: the segment now ends at `at`, and a new segment (numbered after every
/// other), claimed by `owner` under a lease of `lease`, walks from after `at` to the segment's
/// end `walked.upper`. Only while `owner` holds the segment, it is not done, still ends there,
/// and its cursor is before `at` (`before_point`, a condition over the segment's row `_bf_s`
/// and `at` as `$5`, in the key's order; checked on the row locked, after any chunk of it in
/// flight committed); `None` otherwise. Splits of one plan are serialized by its advisory lock,
/// so two processes never number their new segments alike.
pub async fn split(
    client: &mut Client,
    schema: &Ident,
    plan: &str,
    owner: &str,
    lease: Duration,
    cut: Cut<'_>,
) -> PgResult<Option<Pending>> {
    let segments = segments(schema);
    let Cut {
        walked,
        at,
        before_point,
    } = cut;
    let (segment, upper) = (walked.segment, &walked.upper);
    let tx = client.transaction().await?;
    lock_plan(&tx, plan).await?;
    let ahead = tx
        .query_opt(
            &format!(
                "SELECT 1 FROM {segments} AS _bf_s
                  WHERE _bf_s.plan = $1 AND _bf_s.segment = $2 AND NOT _bf_s.done AND _bf_s.owner = $3
                    AND _bf_s.upper_bound = $4 AND {before_point}
                    FOR UPDATE OF _bf_s"
            ),
            &[&plan, &segment, &owner, &upper, &at],
        )
        .await?;
    if ahead.is_none() {
        return Ok(None);
    }
    let new: i32 = tx
        .query_one(
            &format!(
                "INSERT INTO {segments} (plan, segment, lower_bound, upper_bound, cursor, owner, lease_until)
                 SELECT $1, max(segment) + 1, $2, $3, $2, $4, now() + make_interval(secs => $5)
                   FROM {segments} WHERE plan = $1
                 RETURNING segment"
            ),
            &[&plan, &at, &upper, &owner, &lease.as_secs_f64()],
        )
        .await?
        .get(0);
    tx.execute(
        &format!("UPDATE {segments} SET upper_bound = $3 WHERE plan = $1 AND segment = $2"),
        &[&plan, &segment, &at],
    )
    .await?;
    tx.commit().await?;
    Ok(Some(Pending {
        segment: new,
        cursor: Some(at.to_vec()),
        upper: upper.clone(),
    }))
}

/// Segments of plan `plan` not done, whoever holds them.
pub async fn left(client: &Client, schema: &Ident, plan: &str) -> PgResult<i64> {
    let segments = segments(schema);
    Ok(client
        .query_one(
            &format!("SELECT count(*) FROM {segments} WHERE plan = $1 AND NOT done"),
            &[&plan],
        )
        .await?
        .get(0))
}

/// Gives back the segments of plan `plan` that `owner` holds and has not finished, so others
/// (or a rerun) take them at once.
pub async fn release(client: &Client, schema: &Ident, plan: &str, owner: &str) -> PgResult<()> {
    let segments = segments(schema);
    client
        .execute(
            &format!("UPDATE {segments} SET owner = NULL, lease_until = NULL WHERE plan = $1 AND owner = $2 AND NOT done"),
            &[&plan, &owner],
        )
        .await
        .map(|_| ())
}

/// Extends to `lease` from now the leases `owner` holds on plan `plan`'s unfinished segments.
pub async fn renew_leases(
    client: &Client,
    schema: &Ident,
    plan: &str,
    owner: &str,
    lease: Duration,
) -> PgResult<()> {
    let segments = segments(schema);
    client
        .execute(
            &format!("UPDATE {segments} SET lease_until = now() + make_interval(secs => $3) WHERE plan = $1 AND owner = $2 AND NOT done"),
            &[&plan, &owner, &lease.as_secs_f64()],
        )
        .await
        .map(|_| ())
}

/// The other owners (not `owner`) whose leases on plan `plan`'s unfinished segments still run.
pub async fn other_owners(
    client: &Client,
    schema: &Ident,
    plan: &str,
    owner: &str,
) -> PgResult<Vec<String>> {
    let segments = segments(schema);
    Ok(client
        .query(
            &format!("SELECT DISTINCT owner FROM {segments} WHERE plan = $1 AND NOT done AND owner IS NOT NULL AND owner <> $2 AND lease_until > now()"),
            &[&plan, &owner],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Ends now the leases of `owner` (a dead process) on plan `plan`'s unfinished segments, so
/// that they can be claimed at once.
pub async fn free_owner(client: &Client, schema: &Ident, plan: &str, owner: &str) -> PgResult<()> {
    let segments = segments(schema);
    client
        .execute(
            &format!("UPDATE {segments} SET lease_until = now() WHERE plan = $1 AND owner = $2 AND NOT done"),
            &[&plan, &owner],
        )
        .await
        .map(|_| ())
}

/// Reads back segment `segment`'s checkpoint, its end, and whether `owner` still holds it.
pub async fn read_back(
    client: &Client,
    schema: &Ident,
    plan: &str,
    segment: i32,
    owner: &str,
) -> PgResult<Checkpoint> {
    let segments = segments(schema);
    let row = client
        .query_one(
            &format!("SELECT cursor, done, owner IS NOT DISTINCT FROM $3, upper_bound FROM {segments} WHERE plan = $1 AND segment = $2"),
            &[&plan, &segment, &owner],
        )
        .await?;
    Ok(Checkpoint {
        cursor: row.get(0),
        done: row.get(1),
        ours: row.get(2),
        upper: row.get(3),
    })
}

/// What a chunk statement gives its checkpoint: SQL subqueries (without their parentheses)
/// over the statement's own CTEs.
#[derive(Debug, Clone, Copy)]
pub struct ChunkCounts<'a> {
    /// The last key of the chunk as `text[]` (no row: the segment had no key left).
    pub last: &'a str,
    /// The rows the chunk walked.
    pub seen: &'a str,
    /// The rows the chunk rewrote.
    pub changed: &'a str,
    /// Whether the segment is done after this chunk (a condition).
    pub done: &'a str,
}

/// The data-modifying CTE `name AS (...)` of a chunk statement that advances the segment's
/// checkpoint in the chunk's own commit. The statement's parameters are `$1` plan, `$2`
/// segment, `$3` batch size, `$4` the cursor the chunk started from and `$5` the segment's end
/// (both `text[]`): the row only moves if its cursor is still `$4` and its end still `$5` (a
/// split moves the end, see [`split`]), and the segment is done when `done` holds (for a keyset
/// walk: the chunk saw fewer than `$3` rows). The CTE returns the new `cursor` and `done`, or no
/// row when the checkpoint had moved (see [`guard_call`]).
pub fn checkpoint_cte(schema: &Ident, name: &str, counts: ChunkCounts<'_>) -> String {
    let segments = segments(schema);
    let ChunkCounts {
        last,
        seen,
        changed,
        done,
    } = counts;
    format!(
        "{name} AS (\n  UPDATE {segments}\n     SET cursor = coalesce(({last}), cursor),\n         rows_seen = rows_seen + ({seen}),\n         rows_changed = rows_changed + ({changed}),\n         done = {done},\n         updated_at = now()\n   WHERE plan = $1 AND segment = $2 AND cursor IS NOT DISTINCT FROM $4::text[] AND upper_bound = $5::text[]\n  RETURNING cursor, done\n)"
    )
}

/// The call of the checkpoint guard on `ok` (an SQL condition, true when the checkpoint CTE
/// advanced its row) for plan `$1` and segment `$2`: when `ok` is false it raises
/// [`super::CHECKPOINT_MOVED`], rolling the whole chunk back.
pub fn guard_call(schema: &Ident, ok: &str) -> String {
    let guard = QualifiedName::new(schema.as_str(), CHECKPOINT_GUARD);
    format!("{guard}({ok}, $1, $2)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(list: &[(i64, bool)]) -> Vec<Progress> {
        list.iter()
            .map(|&(rows_seen, done)| Progress { rows_seen, done })
            .collect()
    }

    #[test]
    fn segments_not_done_count_as_the_average_done_one() {
        // 4 segments of 1000 rows: two done, one half walked, one untouched.
        let s = segs(&[(1000, true), (1000, true), (500, false), (0, false)]);
        assert_eq!(extrapolate(&s), Some(4000));
        // A segment walked past the average counts what it has seen.
        let s = segs(&[(1000, true), (1500, false), (0, false)]);
        assert_eq!(extrapolate(&s), Some(3500));
    }

    #[test]
    fn before_any_segment_is_done_the_started_ones_say_a_lower_bound() {
        // 500 per segment started: 600 + 500 + 500 + 500.
        let s = segs(&[(600, false), (400, false), (0, false), (0, false)]);
        assert_eq!(extrapolate(&s), Some(2100));
        assert_eq!(extrapolate(&segs(&[(0, false), (0, false)])), None);
        assert_eq!(extrapolate(&[]), None);
    }

    #[test]
    fn the_recorded_estimate_holds_until_the_walk_passes_it() {
        let s = segs(&[(1000, true), (1000, true), (500, false), (0, false)]);
        // 2500 walked of an estimate of 3000: the estimate stands.
        assert_eq!(estimate(3000, &s), 3000);
        // Of an estimate of 2000 (a never-analyzed table): extrapolated, not 2500 of 2500.
        assert_eq!(estimate(2000, &s), 4000);
        // Nothing to extrapolate from: at least the rows walked.
        assert_eq!(estimate(0, &segs(&[(0, false)])), 0);
        // Never under the rows walked.
        assert_eq!(estimate(10, &segs(&[(30, true), (20, false)])), 60);
    }
}
