//! The model: the table as the tester expects it, row by row, computed in Rust by applying to
//! each statement the semantics the dual-write trigger promises, and to each phase what the
//! backfill and the contract promise. The generated statements and their SQL live here too, as
//! the model applies them.
//!
//! The semantics, per kind of sync (O: the old columns, N: the new ones; a row is *unfilled*
//! when N is all NULL and O differs from `down(N)`):
//! - TwoWay (rename, change_type, split, merge). INSERT: some N given → `O := down(row)`; else
//!   an unfilled row gets `N := up(row)`. UPDATE: O changed and N not → `N := up(NEW)`; N
//!   changed → `O := down(NEW)`; neither, and the row is unfilled → `N := up(NEW)`. Backfill:
//!   unfilled rows get `N := up(row)`. One test of "unfilled" for the trigger, the backfill and
//!   `verify`: an INSERT whose O already is `down(NULLs)` (split: `''`; merge: both names NULL)
//!   keeps N NULL, as the same row seeded before the trigger keeps them through the backfill.
//! - Derived (add_column with `up`): INSERT with the column NULL → `up`. UPDATE: the column is
//!   NULL after the write (left NULL, or set to NULL by the writer), or the writer left it
//!   unchanged and `up(NEW)` differs from `up(OLD)` → `up(NEW)`. NULL always means "derive
//!   it", as for the INSERT and for the backfill (which fills NULLs) and `verify` (which counts
//!   them): otherwise a NULL the new release writes would stay or not depending on whether
//!   the backfill had passed the row yet.
//! - InsertDefault (drop_column with `down`): an INSERT without the column gets `down`.
//! - Fill (update_rows, set_not_null, add_check): every row written, and every row the backfill
//!   walks, that matches `when` gets `set`.
//! - TwoWay `required` (a change_type made NOT NULL, as `compose` builds it): the new columns
//!   are NOT NULL from expand on, so a row is unfilled whenever they are all NULL, whatever
//!   the old ones hold.
//! - NoTrigger (catalog-only kinds, rename_table, add_column without `up`): rows stay as
//!   written. What such a plan changes that the model sees is at expand: the defaults INSERTs
//!   get (`set_default`), and the table's name (`rename_table`: the old name a view over it
//!   until contract).
//!
//! Triggers of several plans fire in name order, each on the row the previous ones left; a
//! backfill's updates fire the other plans' triggers, not its own.

use std::collections::{BTreeMap, BTreeSet};

/// A value of a column: every column of the test table is `text` or an integer type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Val {
    Null,
    Int(i64),
    Text(String),
}

static NULL: Val = Val::Null;

impl Val {
    /// A text value.
    pub fn text(s: &str) -> Val {
        Val::Text(s.to_string())
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Val::Null)
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Val::Text(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Val::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The value as an SQL literal (strings with their quotes doubled;
    /// `standard_conforming_strings` is on, so backslashes are plain characters).
    pub fn literal(&self) -> String {
        match self {
            Val::Null => "NULL".to_string(),
            Val::Int(i) => i.to_string(),
            Val::Text(s) => format!("'{}'", s.replace('\'', "''")),
        }
    }

    /// The value as PostgreSQL prints `value::text`.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Val::Null => None,
            Val::Int(i) => Some(i.to_string()),
            Val::Text(s) => Some(s.clone()),
        }
    }
}

/// A row: column name to value (the key `id` is the map's key in [`Model::rows`]).
pub type Row = BTreeMap<&'static str, Val>;

/// A column's value in a row (NULL when the row has no such column).
pub fn get<'a>(row: &'a Row, col: &str) -> &'a Val {
    row.get(col).unwrap_or(&NULL)
}

fn vals(row: &Row, cols: &[&'static str]) -> Vec<Val> {
    cols.iter().map(|c| get(row, c).clone()).collect()
}

fn assign(row: &mut Row, cols: &[&'static str], values: Vec<Val>) {
    for (c, v) in cols.iter().zip(values) {
        row.insert(c, v);
    }
}

fn all_null(values: &[Val]) -> bool {
    values.iter().all(Val::is_null)
}

/// PostgreSQL's `split_part(v, ' ', n)`.
pub fn split_part(v: &Val, n: usize) -> Val {
    match v.as_str() {
        Some(s) => Val::text(s.split(' ').nth(n - 1).unwrap_or("")),
        None => Val::Null,
    }
}

/// PostgreSQL's `concat_ws(' ', parts...)`: NULLs skipped, never NULL.
pub fn concat_ws(parts: &[&Val]) -> Val {
    Val::Text(
        parts
            .iter()
            .filter_map(|v| v.as_str())
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// PostgreSQL's `trim(v)`: spaces only.
pub fn trim(v: &Val) -> Val {
    match v.as_str() {
        Some(s) => Val::text(s.trim_matches(' ')),
        None => Val::Null,
    }
}

/// What a plan's dual-write trigger and backfill do to a row.
#[derive(Clone, Copy)]
pub enum Sync {
    /// rename, change_type, split, merge: old columns and new ones, kept in sync both ways.
    /// `required`: the new columns are NOT NULL from expand on (a `change_type` with
    /// `not_null`), so NULL there never is a value the new release wrote: a row whose new
    /// columns are all NULL is unfilled whatever its old columns hold.
    TwoWay {
        old: &'static [&'static str],
        new: &'static [&'static str],
        up: fn(&Row) -> Vec<Val>,
        down: fn(&Row) -> Vec<Val>,
        required: bool,
    },
    /// add_column with `up`: the column follows what it is derived from.
    Derived {
        col: &'static str,
        up: fn(&Row) -> Val,
    },
    /// drop_column with `down`: inserts without the column get `down`.
    InsertDefault {
        col: &'static str,
        down: fn(&Row) -> Val,
    },
    /// update_rows, set_not_null, add_check: every row written (and every row the backfill
    /// walks) that matches `when` gets `set`.
    Fill {
        col: &'static str,
        when: fn(&Row) -> bool,
        set: fn(&Row) -> Val,
    },
    /// No trigger (catalog-only kinds, rename_table, add_column without `up`): writes and
    /// the backfill leave rows as written.
    NoTrigger,
}

impl Sync {
    /// A TwoWay row whose new columns were never written: all NULL while the old ones differ
    /// from what `down` makes of them (or, `required`, all NULL).
    fn unfilled(
        row: &Row,
        old: &[&'static str],
        new: &[&'static str],
        down: fn(&Row) -> Vec<Val>,
        required: bool,
    ) -> bool {
        all_null(&vals(row, new)) && (required || vals(row, old) != down(row))
    }

    /// The trigger on INSERT. TwoWay: a row with some new column given gets its old columns
    /// from `down`; one without any gets its new columns from `up` when it is unfilled, as
    /// the backfill would fill it. A row whose old columns already are what `down` makes of
    /// NULLs (split: `''`; merge: both NULL) keeps NULL new columns, exactly like such a row
    /// inserted before the trigger existed, which the backfill leaves alone: one test of
    /// "unfilled" for the trigger, the backfill and `verify`.
    pub fn on_insert(&self, row: &mut Row) {
        match self {
            Sync::TwoWay {
                old,
                new,
                up,
                down,
                required,
            } => {
                if !all_null(&vals(row, new)) {
                    let v = down(row);
                    assign(row, old, v);
                } else if Self::unfilled(row, old, new, *down, *required) {
                    let v = up(row);
                    assign(row, new, v);
                }
            }
            Sync::Derived { col, up } | Sync::InsertDefault { col, down: up } => {
                if get(row, col).is_null() {
                    let v = up(row);
                    row.insert(col, v);
                }
            }
            Sync::Fill { col, when, set } => {
                if when(row) {
                    let v = set(row);
                    row.insert(col, v);
                }
            }
            Sync::NoTrigger => {}
        }
    }

    /// The trigger on UPDATE: `old_row` as it was, `row` as the statement (and the triggers
    /// that fired before) left it.
    pub fn on_update(&self, old_row: &Row, row: &mut Row) {
        match self {
            Sync::TwoWay {
                old,
                new,
                up,
                down,
                required,
            } => {
                let old_changed = vals(row, old) != vals(old_row, old);
                let new_changed = vals(row, new) != vals(old_row, new);
                if !new_changed && (old_changed || Self::unfilled(row, old, new, *down, *required))
                {
                    let v = up(row);
                    assign(row, new, v);
                } else if new_changed {
                    let v = down(row);
                    assign(row, old, v);
                }
            }
            Sync::Derived { col, up } => {
                let left = get(row, col) == get(old_row, col);
                if get(row, col).is_null() || (left && up(row) != up(old_row)) {
                    let v = up(row);
                    row.insert(col, v);
                }
            }
            Sync::InsertDefault { .. } | Sync::NoTrigger => {}
            Sync::Fill { .. } => self.on_insert(row),
        }
    }

    /// The row as the backfill leaves it.
    pub fn backfill(&self, row: &Row) -> Row {
        let mut out = row.clone();
        match self {
            Sync::TwoWay {
                old,
                new,
                up,
                down,
                required,
            } => {
                if Self::unfilled(row, old, new, *down, *required) {
                    assign(&mut out, new, up(row));
                }
            }
            Sync::Derived { col, up } => {
                if get(row, col).is_null() {
                    out.insert(col, up(row));
                }
            }
            Sync::InsertDefault { .. } | Sync::NoTrigger => {}
            Sync::Fill { .. } => self.on_insert(&mut out),
        }
        out
    }

    /// The new columns of a TwoWay plan.
    pub fn new_columns(&self) -> &'static [&'static str] {
        match self {
            Sync::TwoWay { new, .. } => new,
            _ => &[],
        }
    }
}

/// A plan as the model sees it.
#[derive(Clone)]
pub struct PlanModel {
    /// The plan's name (its trigger is `bf_<name>_sync`; triggers fire in name order).
    pub name: String,
    pub sync: Sync,
    /// Columns expand adds.
    pub adds: &'static [&'static str],
    /// Columns contract drops, then renames (from, to).
    pub drops: &'static [&'static str],
    pub renames: &'static [(&'static str, &'static str)],
    /// Defaults expand sets (`set_default`): INSERTs of every release that leave the column
    /// out get them from then on.
    pub defaults: Vec<(&'static str, Val)>,
    /// The table's new name (`rename_table`): from expand on the table has it and the old
    /// name is a view over it; contract drops the view.
    pub rename_table: Option<&'static str>,
}

impl PlanModel {
    /// A plan named `name` that adds, drops and renames nothing.
    pub fn new(name: &str, sync: Sync) -> PlanModel {
        PlanModel {
            name: name.to_string(),
            sync,
            adds: &[],
            drops: &[],
            renames: &[],
            defaults: Vec::new(),
            rename_table: None,
        }
    }
}

/// Which rows a statement reaches.
#[derive(Clone, Debug)]
pub enum Filter {
    Id(i64),
    /// `id % k = r`.
    Mod(i64, i64),
}

/// One `SET` item.
#[derive(Clone, Debug)]
pub enum SetVal {
    Val(Val),
    /// `col = col`.
    Same,
}

/// A statement of the application.
#[derive(Clone, Debug)]
pub enum Op {
    Insert(Vec<(&'static str, Val)>),
    Update(Filter, Vec<(&'static str, SetVal)>),
    Delete(Filter),
}

impl Filter {
    fn sql(&self) -> String {
        match self {
            Filter::Id(id) => format!("id = {id}"),
            Filter::Mod(k, r) => format!("id % {k} = {r}"),
        }
    }
}

impl Op {
    /// The statement's SQL, against `table` (a name the generator wrote, no quoting needed).
    pub fn sql(&self, table: &str) -> String {
        match self {
            Op::Insert(cols) if cols.is_empty() => {
                format!("INSERT INTO {table} DEFAULT VALUES RETURNING id")
            }
            Op::Insert(cols) => {
                let names: Vec<&str> = cols.iter().map(|(c, _)| *c).collect();
                let values: Vec<String> = cols.iter().map(|(_, v)| v.literal()).collect();
                format!(
                    "INSERT INTO {table} ({}) VALUES ({}) RETURNING id",
                    names.join(", "),
                    values.join(", ")
                )
            }
            Op::Update(filter, sets) => {
                let sets: Vec<String> = sets
                    .iter()
                    .map(|(c, s)| match s {
                        SetVal::Val(v) => format!("{c} = {}", v.literal()),
                        SetVal::Same => format!("{c} = {c}"),
                    })
                    .collect();
                format!(
                    "UPDATE {table} SET {} WHERE {}",
                    sets.join(", "),
                    filter.sql()
                )
            }
            Op::Delete(filter) => format!("DELETE FROM {table} WHERE {}", filter.sql()),
        }
    }
}

/// The table as expected.
pub struct Model {
    /// The table's name (`t`, until a `rename_table` expands).
    pub table: &'static str,
    /// Old names of the table that are views over it until contract.
    pub views: Vec<&'static str>,
    pub rows: BTreeMap<i64, Row>,
    /// The table's columns but `id`, in the order the checks read them.
    pub columns: Vec<&'static str>,
    pub defaults: BTreeMap<&'static str, Val>,
    pub plans: Vec<PlanModel>,
    /// The plans whose trigger is installed, in firing order.
    active: Vec<usize>,
    /// Rows a TwoWay backfill running right now may or may not have reached yet, with the
    /// plan: a write of the new columns that is all NULL, partial, or equal to what the
    /// backfill writes would end differently before and after the backfill's chunk, so the
    /// generator avoids those on these rows (see [`Model::ambiguous`]).
    pending: BTreeMap<i64, usize>,
}

impl Model {
    pub fn new(
        columns: Vec<&'static str>,
        defaults: BTreeMap<&'static str, Val>,
        plans: Vec<PlanModel>,
    ) -> Model {
        Model {
            table: "t",
            views: Vec::new(),
            rows: BTreeMap::new(),
            columns,
            defaults,
            plans,
            active: Vec::new(),
            pending: BTreeMap::new(),
        }
    }

    /// The rows a filter reaches, in key order.
    pub fn matching(&self, f: &Filter) -> Vec<i64> {
        match f {
            Filter::Id(id) => self
                .rows
                .contains_key(id)
                .then_some(*id)
                .into_iter()
                .collect(),
            Filter::Mod(k, r) => self
                .rows
                .keys()
                .copied()
                .filter(|id| id % k == *r)
                .collect(),
        }
    }

    /// Applies a statement that succeeded (`id`: the key an INSERT returned).
    pub fn apply(&mut self, op: &Op, id: Option<i64>) {
        match op {
            Op::Insert(cols) => {
                let mut row: Row = self
                    .columns
                    .iter()
                    .map(|c| (*c, self.defaults.get(c).cloned().unwrap_or(Val::Null)))
                    .collect();
                row.insert("id", Val::Int(id.unwrap_or(0)));
                for (c, v) in cols {
                    row.insert(c, v.clone());
                }
                for p in &self.active {
                    self.plans[*p].sync.on_insert(&mut row);
                }
                row.remove("id");
                self.rows.insert(id.unwrap_or(0), row);
            }
            Op::Update(filter, sets) => {
                for id in self.matching(filter) {
                    self.update_row(id, sets);
                }
            }
            Op::Delete(filter) => {
                for id in self.matching(filter) {
                    self.rows.remove(&id);
                    self.pending.remove(&id);
                }
            }
        }
    }

    fn update_row(&mut self, id: i64, sets: &[(&'static str, SetVal)]) {
        let Some(before) = self.rows.get(&id) else {
            return;
        };
        let mut old = before.clone();
        old.insert("id", Val::Int(id));
        let mut row = old.clone();
        for (c, s) in sets {
            if let SetVal::Val(v) = s {
                row.insert(c, v.clone());
            }
        }
        for p in &self.active {
            self.plans[*p].sync.on_update(&old, &mut row);
        }
        row.remove("id");
        self.rows.insert(id, row);
        self.pending.remove(&id);
    }

    /// Expand and dual-write of plan `p`: its columns (NULL in every row), its defaults, the
    /// table's new name, its trigger.
    pub fn expand(&mut self, p: usize) {
        for c in self.plans[p].adds {
            self.columns.push(c);
            for row in self.rows.values_mut() {
                row.insert(c, Val::Null);
            }
        }
        for (c, v) in &self.plans[p].defaults {
            self.defaults.insert(c, v.clone());
        }
        if let Some(to) = self.plans[p].rename_table {
            self.views.push(self.table);
            self.table = to;
        }
        self.active.push(p);
        let plans = &self.plans;
        self.active
            .sort_by(|a, b| plans[*a].name.cmp(&plans[*b].name));
    }

    /// The backfill of plan `p`, applied at once: with the dual-write semantics every row ends
    /// the same whether a write reaches it before or after the backfill's chunk, except for
    /// the writes [`Model::ambiguous`] names, which the generator avoids until
    /// [`Model::backfill_done`]. The backfill's own updates fire the other plans' triggers.
    pub fn backfill(&mut self, p: usize) {
        let ids: Vec<i64> = self.rows.keys().copied().collect();
        for id in ids {
            let mut old = self.rows[&id].clone();
            old.insert("id", Val::Int(id));
            let mut row = self.plans[p].sync.backfill(&old);
            if row == old {
                continue;
            }
            for q in self.active.iter().filter(|q| **q != p) {
                self.plans[*q].sync.on_update(&old, &mut row);
            }
            row.remove("id");
            self.rows.insert(id, row);
            if matches!(self.plans[p].sync, Sync::TwoWay { .. }) {
                self.pending.insert(id, p);
            }
        }
    }

    /// The backfill finished: every write is unambiguous again.
    pub fn backfill_done(&mut self) {
        self.pending.clear();
    }

    /// Whether a statement writes the new columns of a row that a running TwoWay backfill
    /// may not have reached yet in a way whose outcome depends on that: a write of some but
    /// not all new columns, or of all of them with values that are all NULL or equal to what
    /// the backfill writes.
    pub fn ambiguous(&self, op: &Op) -> bool {
        let Op::Update(filter, sets) = op else {
            return false;
        };
        self.matching(filter).into_iter().any(|id| {
            let Some(p) = self.pending.get(&id) else {
                return false;
            };
            let new = self.plans[*p].sync.new_columns();
            let written: BTreeMap<&str, &Val> = sets
                .iter()
                .filter_map(|(c, s)| match s {
                    SetVal::Val(v) if new.contains(c) => Some((*c, v)),
                    _ => None,
                })
                .collect();
            if written.is_empty() {
                return false;
            }
            let w: Vec<Val> = new
                .iter()
                .filter_map(|c| written.get(c).map(|v| (*v).clone()))
                .collect();
            w.len() < new.len() || all_null(&w) || w == vals(&self.rows[&id], new)
        })
    }

    /// Contract of plan `p`: its trigger goes, its old columns are dropped, the new ones
    /// renamed in, the view under the table's old name dropped.
    pub fn contract(&mut self, p: usize) {
        self.active.retain(|q| *q != p);
        if self.plans[p].rename_table.is_some() {
            self.views.clear();
        }
        let (drops, renames) = (self.plans[p].drops, self.plans[p].renames);
        let gone: BTreeSet<&str> = drops.iter().copied().collect();
        self.columns.retain(|c| !gone.contains(c));
        for row in self.rows.values_mut() {
            row.retain(|c, _| !gone.contains(c));
        }
        for &(from, to) in renames {
            for c in self.columns.iter_mut() {
                if *c == from {
                    *c = to;
                }
            }
            for row in self.rows.values_mut() {
                if let Some(v) = row.remove(from) {
                    row.insert(to, v);
                }
            }
        }
    }

    /// Whether plan `p`'s trigger is installed.
    pub fn is_active(&self, p: usize) -> bool {
        self.active.contains(&p)
    }
}
