//! The backfill phase: which columns the backfill writes (and which of them in place, saved to
//! the undo table for rollback), the subquery that computes a row as it should be, and the SQL
//! the engine runs over ranges of keys ([`BackfillSpec`]).

use serde::Serialize;

use super::{
    display, display_opt, display_vec, Parts, Step, StepMode, BYPASS_SETTING, NEW_ROW, ROW,
};
use crate::db::catalog::TableInfo;
use crate::ops::{Forward, LockLevel, Statement};
use crate::sql::{fit_identifier, ident_list, literal, qualified_list, Ident, QualifiedName};

/// A column the backfill rewrites in place, and where its undo table keeps the values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InPlace {
    /// The column.
    #[serde(serialize_with = "display")]
    pub column: Ident,
    /// Undo column with the value before the backfill.
    #[serde(serialize_with = "display")]
    pub before: Ident,
    /// Undo column with the value the backfill wrote.
    #[serde(serialize_with = "display")]
    pub after: Ident,
}

/// What the engine needs to move the data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackfillSpec {
    /// The table.
    #[serde(serialize_with = "display")]
    pub table: QualifiedName,
    /// Key columns, in order.
    #[serde(serialize_with = "display_vec")]
    pub key: Vec<Ident>,
    /// Columns the backfill writes.
    #[serde(serialize_with = "display_vec")]
    pub targets: Vec<Ident>,
    /// A subquery, `LATERAL` to the row aliased `_bf_t`, that computes the row as it should be.
    pub compute: String,
    /// Columns rewritten in place, saved for rollback.
    pub in_place: Vec<InPlace>,
    /// Where those values are saved.
    #[serde(serialize_with = "display_opt")]
    pub undo_table: Option<QualifiedName>,
    /// The value of [`BYPASS_SETTING`] during the backfill: the plan's name.
    pub bypass: String,
}

impl BackfillSpec {
    /// `ROW(a.x, a.y)` over the targets.
    fn targets_of(&self, alias: &str) -> String {
        format!("ROW({})", qualified_list(alias, &self.targets))
    }

    /// `ROW(_bf_t.k1, ...) = ROW(other.k1, ...)`.
    pub(super) fn key_match(&self, other: &str) -> String {
        format!(
            "ROW({}) = ROW({})",
            qualified_list(ROW, &self.key),
            qualified_list(other, &self.key)
        )
    }

    /// The condition that picks rows out of sync.
    pub fn out_of_sync(&self) -> String {
        format!(
            "{} IS DISTINCT FROM {}",
            self.targets_of(ROW),
            self.targets_of(NEW_ROW)
        )
    }

    /// Data-modifying CTEs (to follow `WITH`) that bring the rows matching `filter` (a
    /// condition over `_bf_t`, e.g. a keyset range) in sync; the last one, `_bf_changed`,
    /// returns one row per row changed.
    ///
    /// Without in-place columns it is a plain `UPDATE` whose new values and out-of-sync test are
    /// correlated subqueries on the row: a row the application changes concurrently is re-read
    /// by PostgreSQL (`EvalPlanQual`) and both are computed again on its latest version, and
    /// only rows that differ are locked and written, so a rerun over finished rows writes
    /// nothing. With in-place columns the old values must be saved to the undo table, which a
    /// plain `UPDATE` cannot return: the rows out of sync are first locked (`FOR UPDATE`, which
    /// also re-reads a concurrently changed row), then updated and saved.
    pub fn update_ctes(&self, filter: &str) -> String {
        let Some(undo) = &self.undo_table else {
            return format!(
                "_bf_changed AS (\n  UPDATE {table} AS {ROW}\n     SET ({cols}) = (SELECT {news} FROM ({compute}) AS {NEW_ROW})\n   WHERE ({filter})\n     AND EXISTS (SELECT FROM ({compute}) AS {NEW_ROW} WHERE {out})\n  RETURNING 1\n)",
                table = self.table,
                cols = ident_list(&self.targets),
                news = qualified_list(NEW_ROW, &self.targets),
                compute = self.compute,
                out = self.out_of_sync(),
            );
        };
        let mut sql = format!(
            "_bf_src AS (\n  SELECT {keys}, {news}{befores}\n    FROM {table} AS {ROW}\n    CROSS JOIN LATERAL ({compute}) AS {NEW_ROW}\n   WHERE ({filter}) AND {out}\n     FOR UPDATE OF {ROW}\n),\n_bf_changed AS (\n  UPDATE {table} AS _bf_u\n     SET {sets}\n    FROM _bf_src\n   WHERE ROW({ukeys}) = ROW({skeys})\n  RETURNING _bf_src.*\n)",
            keys = qualified_list(ROW, &self.key),
            news = qualified_list(NEW_ROW, &self.targets),
            befores = self
                .in_place
                .iter()
                .map(|c| format!(", {ROW}.{} AS {}", c.column, c.before))
                .collect::<String>(),
            table = self.table,
            compute = self.compute,
            out = self.out_of_sync(),
            sets = self
                .targets
                .iter()
                .map(|t| format!("{t} = _bf_src.{t}"))
                .collect::<Vec<_>>()
                .join(", "),
            ukeys = qualified_list("_bf_u", &self.key),
            skeys = qualified_list("_bf_src", &self.key),
        );
        let cols: Vec<Ident> = self
            .key
            .iter()
            .cloned()
            .chain(
                self.in_place
                    .iter()
                    .flat_map(|c| [c.before.clone(), c.after.clone()]),
            )
            .collect();
        let values: Vec<String> = self
            .key
            .iter()
            .map(|k| k.to_string())
            .chain(
                self.in_place
                    .iter()
                    .flat_map(|c| [c.before.to_string(), c.column.to_string()]),
            )
            .collect();
        let keep_latest: Vec<String> = self
            .in_place
            .iter()
            .map(|c| format!("{a} = EXCLUDED.{a}", a = c.after))
            .collect();
        sql.push_str(&format!(
            ",\n_bf_undo AS (\n  INSERT INTO {undo} ({cols})\n  SELECT {values} FROM _bf_changed\n  ON CONFLICT ({key}) DO UPDATE SET {keep}\n)",
            cols = ident_list(&cols),
            values = values.join(", "),
            key = ident_list(&self.key),
            keep = keep_latest.join(", "),
        ));
        sql
    }

    /// One statement that brings the rows matching `filter` in sync (see [`Self::update_ctes`])
    /// and returns the number of rows changed.
    pub fn update_sql(&self, filter: Option<&str>) -> String {
        format!(
            "WITH {}\nSELECT count(*) FROM _bf_changed",
            self.update_ctes(filter.unwrap_or("true"))
        )
    }

    /// Counts rows out of sync (read-only).
    pub fn count_out_of_sync_sql(&self) -> String {
        format!(
            "SELECT count(*) FROM {} AS {ROW} CROSS JOIN LATERAL ({}) AS {NEW_ROW} WHERE {}",
            self.table,
            self.compute,
            self.out_of_sync()
        )
    }

    /// `SELECT set_config(...)`: the statement that makes this plan's trigger skip the
    /// backfill's own writes for the rest of the transaction (`is_local`) or session.
    pub fn bypass_sql(&self, local: bool) -> String {
        format!(
            "SELECT set_config({}, {}, {local})",
            literal(BYPASS_SETTING),
            literal(&self.bypass)
        )
    }
}

/// Columns the backfill rewrites in place: live columns (not created by expand), whose values
/// before the backfill go to the undo table.
pub(super) fn in_place_columns(catalog: &TableInfo, forwards: &[Forward]) -> Vec<InPlace> {
    let mut in_place: Vec<InPlace> = Vec::new();
    for f in forwards {
        for a in &f.assign {
            if catalog.column(a.column.as_str()).is_some()
                && !in_place.iter().any(|c| c.column == a.column)
            {
                in_place.push(InPlace {
                    column: a.column.clone(),
                    before: Ident::new(fit_identifier(&format!("before_{}", a.column.as_str()))),
                    after: Ident::new(fit_identifier(&format!("after_{}", a.column.as_str()))),
                });
            }
        }
    }
    in_place
}

/// The backfill, when an operation moves data: every column some operation assigns, once, in
/// plan order, computed over the row as the table has it during the transition.
pub(super) fn spec(parts: &Parts<'_>) -> Option<BackfillSpec> {
    if parts.forwards.is_empty() {
        return None;
    }
    let mut targets: Vec<Ident> = Vec::new();
    for f in &parts.forwards {
        for a in &f.assign {
            if !targets.contains(&a.column) {
                targets.push(a.column.clone());
            }
        }
    }
    let columns: Vec<Ident> = parts
        .table
        .columns
        .iter()
        .map(|c| Ident::new(&c.name))
        .collect();
    Some(BackfillSpec {
        table: parts.catalog.name.clone(),
        key: parts.key.clone(),
        targets,
        compute: compute_chain(&columns, &parts.forwards, parts.catalog.alias()),
        in_place: parts.in_place.clone(),
        undo_table: parts.undo.clone(),
        bypass: parts.plan.name.clone(),
    })
}

/// The backfill phase: one step, run by the engine in chunks; the statement shown is the
/// whole-table form.
pub(super) fn steps(backfill: Option<&BackfillSpec>) -> Vec<Step> {
    backfill
        .iter()
        .map(|b| Step {
            description: format!(
                "backfill {} in chunks of rows by key ({})",
                ident_list(&b.targets),
                ident_list(&b.key)
            ),
            mode: StepMode::Backfill,
            statements: vec![Statement::new(LockLevel::RowExclusive, b.update_sql(None))],
        })
        .collect()
}

/// The row as the backfill should leave it: one nested subquery per operation, each aliased
/// with the table's own name so plan expressions read the row by bare column names, each seeing
/// the row as the operations before it left it. PostgreSQL flattens the nesting into plain
/// expressions, so it costs nothing at run time.
fn compute_chain(columns: &[Ident], forwards: &[Forward], alias: &Ident) -> String {
    let mut sql = format!("SELECT {ROW}.*");
    for f in forwards {
        let projection: Vec<String> = columns
            .iter()
            .map(|c| match f.assign.iter().find(|a| &a.column == c) {
                Some(a) => match &f.when {
                    Some(w) => format!("CASE WHEN ({w}) THEN {} ELSE {c} END AS {c}", a.cast()),
                    None => format!("{} AS {c}", a.cast()),
                },
                None => c.to_string(),
            })
            .collect();
        sql = format!("SELECT {} FROM ({sql}) AS {alias}", projection.join(", "));
    }
    sql
}
