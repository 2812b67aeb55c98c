//! Keyset pagination over a table's key (one column or several) and the SQL of a chunk.
//!
//! Key values travel as `text[]` (one element per key column) and are cast back to the
//! column's type inside the statement, so one code path serves bigint, int, uuid, text,
//! timestamps and composite keys, and the checkpoints in the state schema are plain arrays.
//! PostgreSQL's text forms of these types read back to the same value.
//!
//! A table with no key at all is walked by physical location instead ([`Keyset::physical`]):
//! the key is the system column `ctid`, a segment is a range of heap pages, and a chunk is the
//! rows of a window of whole pages read by a TID range scan (PostgreSQL 14+), sized from the
//! table's rows per page so it holds about the batch size. The chunk's `WHERE` still picks only
//! rows out of sync, so a row the backfill or the application moves to another page (every
//! write of a row brings it in sync through the trigger) is not written twice.

use crate::db::catalog::TableInfo;
use crate::error::{Error, Result};
use crate::planner::BackfillSpec;
use crate::sql::{literal, Ident, QualifiedName};
use crate::state::segments::{self, ChunkCounts};

/// The row alias in generated SQL (the planner's expressions use the same one).
const ROW: &str = "_bf_t";

/// The chunk statement's checkpoint CTE.
const CKPT: &str = "_bf_ckpt";

/// The key the engine walks by: its columns and their types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyset {
    /// Key columns, in key order.
    pub columns: Vec<Ident>,
    /// Their types as `format_type` prints them.
    pub types: Vec<String>,
    /// Walked by `ctid` page windows: the table has no key.
    pub physical: bool,
}

/// `'(0,0)'`: before the first row of a heap (row numbers start at 1).
const HEAP_START: &str = "'(0,0)'::tid";

impl Keyset {
    /// The key of a table: its primary key, or a unique index on NOT NULL columns; for a table
    /// with neither, its physical location ([`Keyset::physical`]).
    pub fn of(table: &TableInfo) -> Result<Keyset> {
        if table.key.is_empty() {
            return Ok(Keyset::physical());
        }
        let mut types = Vec::new();
        for k in &table.key {
            let col = table.column(k).ok_or_else(|| {
                Error::Usage(format!("key column \"{k}\" of {} is missing", table.name))
            })?;
            types.push(col.type_name.clone());
        }
        Ok(Keyset {
            columns: table.key_idents(),
            types,
            physical: false,
        })
    }

    /// The walk by physical location: `ctid`, in page windows.
    pub fn physical() -> Keyset {
        Keyset {
            columns: vec![Ident::new("ctid")],
            types: vec!["tid".to_string()],
            physical: true,
        }
    }

    /// A single key column of an integer type: split evenly between min and max.
    pub fn is_integer(&self) -> bool {
        !self.physical
            && self.columns.len() == 1
            && matches!(self.types[0].as_str(), "smallint" | "integer" | "bigint")
    }

    fn cols(&self, alias: &str) -> Vec<String> {
        self.columns
            .iter()
            .map(|c| format!("{alias}.{c}"))
            .collect()
    }

    /// `a.k1, a.k2`.
    pub fn list(&self, alias: &str) -> String {
        self.cols(alias).join(", ")
    }

    /// `a.k1 DESC, a.k2 DESC`.
    fn list_desc(&self, alias: &str) -> String {
        self.cols(alias)
            .iter()
            .map(|c| format!("{c} DESC"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `ARRAY[a.k1::text, a.k2::text]`.
    pub fn to_text(&self, alias: &str) -> String {
        format!(
            "ARRAY[{}]",
            self.cols(alias)
                .iter()
                .map(|c| format!("{c}::text"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }

    /// The key of `alias` compared with `op` to the `text[]` parameter `$param`, written so
    /// that the primary key's btree serves it (a row comparison for composite keys).
    pub fn compare_param(&self, alias: &str, op: &str, param: usize) -> String {
        self.compare_array(alias, op, &format!("${param}::text[]"))
    }

    /// The key of `alias` compared with `op` to a key held in the `text[]` expression `array`
    /// (a parameter, a segment's cursor), each element cast to its column's type.
    fn compare_array(&self, alias: &str, op: &str, array: &str) -> String {
        let values: Vec<String> = self
            .types
            .iter()
            .enumerate()
            .map(|(i, t)| format!("({array})[{}]::{t}", i + 1))
            .collect();
        self.compare(alias, op, &values)
    }

    fn compare(&self, alias: &str, op: &str, values: &[String]) -> String {
        if self.columns.len() == 1 {
            format!("{}.{} {op} {}", alias, self.columns[0], values[0])
        } else {
            format!("ROW({}) {op} ROW({})", self.list(alias), values.join(", "))
        }
    }

    /// Describes a key value for messages: `id = 42`, `(a, b) = (1, x)`.
    pub fn describe(&self, values: &[String]) -> String {
        if self.columns.len() == 1 {
            format!(
                "{} = {}",
                self.columns[0],
                values.first().map(|v| literal(v)).unwrap_or_default()
            )
        } else {
            format!(
                "({}) = ({})",
                self.columns
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                values
                    .iter()
                    .map(|v| literal(v))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    }
}

/// The statements of a chunk, prepared once per connection.
///
/// Parameters of both `first` (a segment's first chunk, no lower bound) and `next` (after the
/// cursor): `$1` plan, `$2` segment, `$3` batch size, `$4` the cursor (`text[]`, `NULL` before the
/// first chunk), `$5` the segment's inclusive upper bound (`text[]`). One row comes back: rows
/// seen, rows changed, the new cursor, and whether the segment is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkSql {
    /// The segment's first chunk.
    pub first: String,
    /// Every later chunk.
    pub next: String,
    /// The keys of the chunk, in order (`$1` cursor or `NULL`, `$2` upper, `$3` limit): used
    /// after a data error to name the offending row.
    pub keys_first: String,
    /// As `keys_first`, after the cursor.
    pub keys_next: String,
}

impl ChunkSql {
    /// The chunk statement of a segment: its first chunk or a later one (`after_cursor`).
    pub fn chunk(&self, after_cursor: bool) -> &str {
        if after_cursor {
            &self.next
        } else {
            &self.first
        }
    }
}

/// Builds the chunk statements.
///
/// One statement per chunk, one round trip, one implicit transaction: the next `$3` keys of the
/// segment after the cursor are read by the key's index (`_bf_keys`, never `OFFSET`), the rows
/// between the cursor and the last of them that are out of sync are rewritten (the planner's
/// `update_ctes`), and the segment's checkpoint advances in the same statement (the state
/// store's [`segments::checkpoint_cte`]). The checkpoint only moves if it still holds the
/// cursor the chunk started from; otherwise the guard ([`segments::guard_call`]) raises
/// `BF001` and the whole chunk rolls back, so a chunk is never counted twice even if two
/// processes work on one segment.
pub fn chunk_sql(spec: &BackfillSpec, keyset: &Keyset, state_schema: &Ident) -> ChunkSql {
    if keyset.physical {
        return physical_chunk_sql(spec, state_schema);
    }
    let build = |lower: bool| {
        let lower_cond = if lower {
            keyset.compare_param(ROW, ">", 4)
        } else {
            "true".to_string()
        };
        let upper_cond = keyset.compare_param(ROW, "<=", 5);
        let last: Vec<String> = keyset
            .columns
            .iter()
            .map(|c| format!("(SELECT {c} FROM _bf_last)"))
            .collect();
        // Over the alias the update names its rows by.
        let filter = |t: &str| {
            let after_cursor = if lower {
                keyset.compare_param(t, ">", 4)
            } else {
                "true".to_string()
            };
            format!("{after_cursor} AND {}", keyset.compare(t, "<=", &last))
        };
        let last_text = format!("SELECT {} FROM _bf_last AS {ROW}", keyset.to_text(ROW));
        let checkpoint = segments::checkpoint_cte(
            state_schema,
            CKPT,
            ChunkCounts {
                last: &last_text,
                seen: "SELECT count(*) FROM _bf_keys",
                changed: "SELECT count(*) FROM _bf_changed",
                done: "(SELECT count(*) FROM _bf_keys) < $3",
            },
        );
        format!(
            "WITH _bf_keys AS MATERIALIZED (\n  SELECT {keys} FROM {table} AS {ROW}\n   WHERE {lower_cond} AND {upper_cond}\n   ORDER BY {keys}\n   LIMIT $3\n),\n_bf_last AS MATERIALIZED (\n  SELECT {bare} FROM _bf_keys AS {ROW} ORDER BY {desc} LIMIT 1\n),\n{update},\n{checkpoint}\n{result}",
            keys = keyset.list(ROW),
            table = spec.table,
            bare = keyset.list(ROW),
            desc = keyset.list_desc(ROW),
            update = spec.update_ctes(&filter),
            result = chunk_result(state_schema),
        )
    };
    let keys = |lower: bool| {
        format!(
            "SELECT {text} FROM {table} AS {ROW}\n WHERE {lower} AND {upper}\n ORDER BY {keys}\n LIMIT $3",
            text = keyset.to_text(ROW),
            table = spec.table,
            lower = if lower {
                keyset.compare_param(ROW, ">", 1)
            } else {
                "$1::text[] IS NULL".to_string()
            },
            upper = keyset.compare_param(ROW, "<=", 2),
            keys = keyset.list(ROW),
        )
    };
    ChunkSql {
        first: build(false),
        next: build(true),
        keys_first: keys(false),
        keys_next: keys(true),
    }
}

/// The last clause of a chunk statement: rows seen, rows changed, the new cursor and whether
/// the segment is done, or `BF001` from the guard when the checkpoint did not move.
fn chunk_result(state_schema: &Ident) -> String {
    format!(
        "SELECT (SELECT count(*) FROM _bf_keys) AS seen, (SELECT count(*) FROM _bf_changed) AS changed, _bf_c.cursor, coalesce(_bf_c.done, false) AS done\n  FROM (SELECT 1) AS _bf_one LEFT JOIN {CKPT} AS _bf_c ON true\n WHERE {}",
        segments::guard_call(state_schema, "_bf_c.done IS NOT NULL")
    )
}

/// Rows per heap page assumed before the table has statistics.
const DEFAULT_ROWS_PER_PAGE: u32 = 100;

/// The `_bf_w` CTE of a physical walk: `lo`, the exclusive lower bound (the `text[]` cursor in
/// parameter `$cursor`, or the heap's start), and `hi`, the exclusive upper bound: the first
/// page after a window of about `$size` rows at the table's rows per page.
fn window_cte(table: &QualifiedName, cursor: usize, size: usize) -> String {
    let tid = format!("(${cursor}::text[])[1]::tid");
    format!(
        "_bf_w AS MATERIALIZED (\n  SELECT coalesce({tid}, {HEAP_START}) AS lo,\n         format('(%s,0)', coalesce(({tid}::text::point)[0]::int8, 0) + greatest(1, ceil(${size}::int8::float8 / (SELECT CASE WHEN c.relpages > 0 AND c.reltuples > 0 THEN greatest(1, c.reltuples / c.relpages) ELSE {DEFAULT_ROWS_PER_PAGE} END FROM pg_catalog.pg_class AS c WHERE c.oid = {}::regclass)))::int8)::tid AS hi\n)",
        literal(&table.to_string())
    )
}

/// The rows of `alias` in the window of [`window_cte`] (a TID range scan).
fn in_window(alias: &str) -> String {
    format!(
        "{alias}.\"ctid\" > (SELECT lo FROM _bf_w) AND {alias}.\"ctid\" < (SELECT hi FROM _bf_w)"
    )
}

/// `ctid <= ($param::text[])[1]::tid`: at or before an inclusive bound.
fn tid_at_most(alias: &str, param: usize) -> String {
    format!("{alias}.\"ctid\" <= (${param}::text[])[1]::tid")
}

/// The chunk statements of a physical walk (same parameters and result as [`chunk_sql`]): the
/// rows of a window of whole pages after the cursor, up to the segment's bound; the cursor moves
/// to the window's end (`(page,0)`, before any row of that page) and the segment is done when the
/// window reaches its bound. A window of pages holding no rows (after deletes) is walked all
/// the same.
fn physical_chunk_sql(spec: &BackfillSpec, state_schema: &Ident) -> ChunkSql {
    let filter = |t: &str| format!("{} AND {}", in_window(t), tid_at_most(t, 5));
    let checkpoint = segments::checkpoint_cte(
        state_schema,
        CKPT,
        ChunkCounts {
            last: "SELECT ARRAY[hi::text] FROM _bf_w",
            seen: "SELECT count(*) FROM _bf_keys",
            changed: "SELECT count(*) FROM _bf_changed",
            done: "(SELECT hi FROM _bf_w) >= ($5::text[])[1]::tid",
        },
    );
    let chunk = format!(
        "WITH {window},\n_bf_keys AS MATERIALIZED (\n  SELECT FROM {table} AS {ROW} WHERE {keys}\n),\n{update},\n{checkpoint}\n{result}",
        window = window_cte(&spec.table, 4, 3),
        table = spec.table,
        keys = filter(ROW),
        update = spec.update_ctes(&filter),
        result = chunk_result(state_schema),
    );
    // The rows of the window's last page (within the bound): after bisection, the offending
    // row is one of them.
    let keys = format!(
        "WITH {window}\nSELECT ARRAY[{ROW}.\"ctid\"::text] FROM {table} AS {ROW}\n WHERE {in_window} AND {upper}\n   AND {ROW}.\"ctid\" >= format('(%s,0)', (least((SELECT hi FROM _bf_w), ($2::text[])[1]::tid)::text::point)[0]::int8 - 1)::tid\n ORDER BY {ROW}.\"ctid\"",
        window = window_cte(&spec.table, 1, 3),
        table = spec.table,
        in_window = in_window(ROW),
        upper = tid_at_most(ROW, 2),
    );
    ChunkSql {
        first: chunk.clone(),
        next: chunk,
        keys_first: keys.clone(),
        keys_next: keys,
    }
}

/// The read-only statements of `verify`: `$1` the cursor (`text[]`, `NULL` at the start), `$2`
/// the batch size. One row back: rows read, rows out of sync, the last key read (`text[]`, the
/// page's inclusive upper bound), up to 10 keys of rows out of sync as a JSON array of
/// `text[]`, and whether the walk reached the end of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifySql {
    /// From the start of the table.
    pub first: String,
    /// After the cursor.
    pub next: String,
}

/// The columns every verify page returns, from its rows in `_bf_s` (`_bf_k` the key as
/// `text[]`, `_bf_bad`, `_bf_rn` the order), its last key and its end condition.
fn verify_result(last: &str, end: &str) -> String {
    format!(
        "SELECT (SELECT count(*) FROM _bf_s)::int8,\n       (SELECT count(*) FROM _bf_s WHERE _bf_bad)::int8,\n       ({last}),\n       (SELECT coalesce(json_agg(_bf_k ORDER BY _bf_rn), '[]')::text FROM (SELECT _bf_k, _bf_rn FROM _bf_s WHERE _bf_bad ORDER BY _bf_rn LIMIT 10) AS _bf_b),\n       {end}"
    )
}

/// Builds the verify statements: keyset pages by the key's index (or page windows of a
/// physical walk, up to the table's size when the page is read), the planner's out-of-sync test
/// on each row, counted in the database.
pub fn verify_sql(spec: &BackfillSpec, keyset: &Keyset) -> VerifySql {
    if keyset.physical {
        let sql = format!(
            "WITH {window},\n_bf_s AS MATERIALIZED (\n  SELECT ARRAY[{ROW}.\"ctid\"::text] AS _bf_k, {out} AS _bf_bad, row_number() OVER (ORDER BY {ROW}.\"ctid\") AS _bf_rn\n    FROM {table} AS {ROW} CROSS JOIN LATERAL ({compute}) AS _bf_n\n   WHERE {in_window}\n)\n{result}",
            window = window_cte(&spec.table, 1, 2),
            out = spec.out_of_sync(),
            table = spec.table,
            compute = spec.compute,
            in_window = in_window(ROW),
            result = verify_result(
                "SELECT ARRAY[hi::text] FROM _bf_w",
                &format!(
                    "(SELECT hi FROM _bf_w) >= format('(%s,0)', {})::tid",
                    heap_pages(&spec.table)
                ),
            ),
        );
        return VerifySql {
            first: sql.clone(),
            next: sql,
        };
    }
    let build = |lower: bool| {
        format!(
            "WITH _bf_s AS MATERIALIZED (\n  SELECT {text} AS _bf_k, {out} AS _bf_bad, row_number() OVER (ORDER BY {keys}) AS _bf_rn\n    FROM {table} AS {ROW} CROSS JOIN LATERAL ({compute}) AS _bf_n\n   WHERE {lower}\n   ORDER BY {keys}\n   LIMIT $2\n)\n{result}",
            text = keyset.to_text(ROW),
            out = spec.out_of_sync(),
            keys = keyset.list(ROW),
            table = spec.table,
            compute = spec.compute,
            lower = if lower {
                keyset.compare_param(ROW, ">", 1)
            } else {
                "$1::text[] IS NULL".to_string()
            },
            result = verify_result(
                "SELECT _bf_k FROM _bf_s ORDER BY _bf_rn DESC LIMIT 1",
                "(SELECT count(*) FROM _bf_s) < $2"
            ),
        )
    };
    VerifySql {
        first: build(false),
        next: build(true),
    }
}

/// The statements of a recheck: the backfill's update (rows out of sync only) over one page
/// that `verify` read, `$1` the page's exclusive lower key (`text[]`, `NULL` at the start),
/// `$2` its inclusive upper key. One row back: the rows changed.
pub fn recheck_sql(spec: &BackfillSpec, keyset: &Keyset) -> VerifySql {
    if keyset.physical {
        let sql = spec.update_sql(Some(&|t: &str| {
            format!(
                "{t}.\"ctid\" > coalesce(($1::text[])[1]::tid, {HEAP_START}) AND {}",
                tid_at_most(t, 2)
            )
        }));
        return VerifySql {
            first: sql.clone(),
            next: sql,
        };
    }
    let upper = |t: &str| keyset.compare_param(t, "<=", 2);
    VerifySql {
        first: spec.update_sql(Some(&|t: &str| {
            format!("$1::text[] IS NULL AND {}", upper(t))
        })),
        next: spec.update_sql(Some(&|t: &str| {
            format!("{} AND {}", keyset.compare_param(t, ">", 1), upper(t))
        })),
    }
}

/// The number of heap pages of a table now: a physical walk's segments cover them (rows
/// inserted later are kept in sync by the trigger).
pub fn heap_pages_sql(table: &QualifiedName) -> String {
    format!("SELECT {}", heap_pages(table))
}

/// The expression of a table's heap pages now.
fn heap_pages(table: &QualifiedName) -> String {
    format!(
        "pg_catalog.pg_relation_size({}::regclass) / current_setting('block_size')::int8",
        literal(&table.to_string())
    )
}

/// The rows in `$2` windows of `$3` heap pages each, spread evenly over the table's first `$1`
/// pages (all `int8`): each window is read by a TID range scan (PostgreSQL 14+), so the cost
/// is the pages of the windows, whatever the table's size. One window over every page counts
/// the whole table.
pub fn window_count_sql(table: &QualifiedName) -> String {
    let start = "w * $1::int8 / $2::int8";
    format!(
        "SELECT coalesce(sum(c.n), 0)::int8 FROM generate_series(0, $2::int8 - 1) AS w, \
         LATERAL (SELECT count(*) AS n FROM {table} \
         WHERE ctid >= format('(%s,0)', {start})::tid AND ctid < format('(%s,0)', {start} + $3::int8)::tid) AS c"
    )
}

/// The rows of a `TABLESAMPLE SYSTEM` of `$1` percent of the table's pages (`float8`), for
/// servers without TID range scans: noisier than [`window_count_sql`] (the pages are drawn at
/// random), as cheap.
pub fn sampled_count_sql(table: &QualifiedName) -> String {
    format!("SELECT count(*)::int8 FROM {table} TABLESAMPLE SYSTEM ($1::float8)")
}

/// `(p,0)` as text: the bound before every row of page `p`.
pub fn page_bound(page: i64) -> String {
    format!("({page},0)")
}

/// `SELECT min(k)::int8, max(k)::int8`: the bounds of an integer key (two index probes).
pub fn integer_bounds_sql(table: &QualifiedName, keyset: &Keyset) -> String {
    let k = &keyset.columns[0];
    format!("SELECT min({k})::int8, max({k})::int8 FROM {table}")
}

/// The largest key (`text[]`), by the key's index.
pub fn max_key_sql(table: &QualifiedName, keyset: &Keyset) -> String {
    format!(
        "SELECT {} FROM {table} AS {ROW} ORDER BY {} LIMIT 1",
        keyset.to_text(ROW),
        keyset.list_desc(ROW)
    )
}

/// The key half way through what a walked segment has left, for keys without arithmetic
/// (see [`crate::engine::split_point`] for integers): `$1` the walker's cursor, `$2` the
/// segment's end (both `text[]`), `$3` the most keys to read (by the key's index, in its
/// order). One row: the keys read, and the middle one of them (`text[]`, `NULL` when none).
pub fn middle_key_sql(table: &QualifiedName, keyset: &Keyset) -> String {
    format!(
        "WITH _bf_left AS MATERIALIZED (\n  SELECT {keys} FROM {table} AS {ROW}\n   WHERE {after} AND {upper}\n   ORDER BY {keys}\n   LIMIT $3\n)\nSELECT (SELECT count(*) FROM _bf_left)::int8,\n       (SELECT _bf_k FROM (SELECT {text} AS _bf_k, row_number() OVER (ORDER BY {keys}) AS _bf_rn FROM _bf_left AS {ROW}) AS _bf_m\n         WHERE _bf_rn = (SELECT count(*) FROM _bf_left) / 2 + 1)",
        keys = keyset.list(ROW),
        after = keyset.compare_param(ROW, ">", 1),
        upper = keyset.compare_param(ROW, "<=", 2),
        text = keyset.to_text(ROW),
    )
}

/// The condition, over the segment row `_bf_s` of [`crate::state::segments::split`] and the
/// split point `$5` (`text[]`), that the segment's walk has not reached the point. In the
/// key's own order: an integer compared as a number, any other key through the table's row
/// at the point (a text key in its column's collation), which must still exist.
pub fn before_point_sql(table: &QualifiedName, keyset: &Keyset) -> String {
    if keyset.is_integer() {
        return "(_bf_s.cursor)[1]::bigint < ($5::text[])[1]::bigint".to_string();
    }
    format!(
        "EXISTS (SELECT FROM {table} AS {ROW} WHERE {at} AND {after})",
        at = keyset.compare_param(ROW, "=", 5),
        after = keyset.compare_array(ROW, ">", "_bf_s.cursor"),
    )
}

/// Boundaries of `$1` buckets of a sample of about `percent` % of the table's pages: the last
/// key of each bucket, in key order (`text[]`).
pub fn sample_bounds_sql(table: &QualifiedName, keyset: &Keyset, percent: f64) -> String {
    format!(
        "SELECT DISTINCT ON (_bf_bucket) {text}\n  FROM (SELECT {keys}, ntile($1) OVER (ORDER BY {keys}) AS _bf_bucket\n          FROM {table} AS {ROW} TABLESAMPLE SYSTEM ({percent})) AS {ROW}\n ORDER BY _bf_bucket, {desc}",
        text = keyset.to_text(ROW),
        keys = keyset.list(ROW),
        desc = keyset.list_desc(ROW),
        percent = format_args!("{percent:.6}"),
    )
}

/// Splits `[min, max]` into at most `n` contiguous ranges of equal width: (exclusive lower,
/// inclusive upper), the first without a lower bound.
pub fn split_integers(min: i64, max: i64, n: u32) -> Vec<(Option<i64>, i64)> {
    if max < min {
        return Vec::new();
    }
    let span = i128::from(max) - i128::from(min) + 1;
    let n = i128::from(n.max(1)).min(span);
    let width = (span + n - 1) / n;
    let mut out = Vec::new();
    let mut lower: Option<i64> = None;
    let mut upper = i128::from(min) - 1;
    while upper < i128::from(max) {
        upper = (upper + width).min(i128::from(max));
        // In range by construction: min - 1 < upper <= max.
        let u = upper as i64;
        out.push((lower, u));
        lower = Some(u);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_split_covers_the_range_without_overlap() {
        for (min, max, n) in [(1, 100, 4), (1, 1, 16), (-5, 7, 3), (1, 10, 16), (0, 99, 7)] {
            let parts = split_integers(min, max, n);
            assert!(parts.len() as u32 <= n);
            assert_eq!(parts[0].0, None);
            assert_eq!(parts.last().map(|p| p.1), Some(max));
            for w in parts.windows(2) {
                assert_eq!(w[1].0, Some(w[0].1), "{parts:?}");
                assert!(w[1].1 > w[0].1);
            }
        }
        assert!(split_integers(5, 4, 3).is_empty());
        let extreme = split_integers(i64::MIN, i64::MAX, 4);
        assert_eq!(extreme.len(), 4);
        assert_eq!(extreme[3].1, i64::MAX);
    }

    #[test]
    fn composite_keys_compare_as_rows() {
        let k = Keyset {
            columns: vec![Ident::new("a"), Ident::new("b")],
            types: vec!["integer".into(), "text".into()],
            physical: false,
        };
        assert_eq!(
            k.compare_param("t", ">", 4),
            r#"ROW(t."a", t."b") > ROW(($4::text[])[1]::integer, ($4::text[])[2]::text)"#
        );
        assert_eq!(
            k.describe(&["1".into(), "it's".into()]),
            r#"("a", "b") = ('1', 'it''s')"#
        );
        assert!(!k.is_integer());
    }
}
