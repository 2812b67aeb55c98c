//! A seeded fuzz test of hostile SQL identifiers, run through the real binary: for every
//! operation kind (and `compose`: a rename, then a change of type and NOT NULL of the renamed
//! column, whose expressions are rewritten for the columns' names), plans whose table, schema, column, constraint and index names (and plan
//! names) are built from quotes, newlines, dollar-quote tags, comment markers, backslashes,
//! semicolons, unicode, reserved words, PL/pgSQL variables, 63-byte names and so on, with the
//! plan's expressions naming columns bare or by the table's name, and backfill's state in a
//! schema of a hostile name (`--state-schema`) in some cases. Each case gets its own database
//! with a `victim` table that an injection would drop.
//!
//! Every case runs two paths on its own database. Abort: a forbidden plan name must be refused
//! (exit 2, nothing changed), then `run --release 1.0.0` and `abort`, after which support's
//! `snapshot` of the table (less the state schema's own tables) must be what it was before.
//! Contract, on the same database (on a fresh one when abort failed): `run --release 1.0.0`,
//! writes by the old and the new release through the dual-write trigger, `run --release
//! 2.0.0`, then the catalog (columns and types, constraints and their definitions, indexes, no
//! trigger, no `bf_` function, table or constraint left) and every row are compared with what
//! the plan asked for. A hostile name must either work fully or be refused up front (exit 2,
//! nothing changed, and not because backfill's own generated SQL failed to compile); any other
//! exit is a failure.
//!
//! `BACKFILL_FUZZ_SEED` (decimal or `0x` hex) picks the seed, `BACKFILL_FUZZ_CASES` the number
//! of random cases per kind (after the fixed list of the nastiest names, always tried first).
//! Each kind is its own test; it reports every case and fails at the end with all failures,
//! their plans and the seed.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use tokio_postgres::Client;

use crate::support::{connect_url, rows, server, show, snapshot, TestDb};

/// The seed when `BACKFILL_FUZZ_SEED` is not set.
const DEFAULT_SEED: u64 = 0x5eed_f00d_2026;
/// Random cases per kind when `BACKFILL_FUZZ_CASES` is not set.
const DEFAULT_CASES: usize = 2;
/// Cases of one kind run at the same time (each kind is a test of its own, and the test harness
/// runs tests in parallel too).
const CASES_AT_ONCE: usize = 3;
/// A `backfill` process that takes longer than this is killed and the case fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);

/// The kinds, in README order.
const KINDS: [&str; 20] = [
    "add_column",
    "rename_column",
    "change_type",
    "split_column",
    "merge_columns",
    "set_not_null",
    "add_check",
    "add_foreign_key",
    "add_unique",
    "create_index",
    "drop_column",
    "update_rows",
    "drop_constraint",
    "rename_constraint",
    "drop_not_null",
    "set_default",
    "set_comment",
    "drop_index",
    "create_enum",
    "compose",
];

/// Names the test itself uses (or PostgreSQL reserves) and the generator must avoid.
const RESERVED: &[&str] = &[
    "id",
    "t",
    "fuzz_r",
    "fuzz_pkey",
    "fuzz_ref_key",
    "victim",
    "victim_pkey",
    "public",
    "backfill",
    "information_schema",
    "pg_temp",
    "ctid",
    "xmin",
    "xmax",
    "cmin",
    "cmax",
    "tableoid",
];

/// The nastiest names, tried first for every kind (in this order, in the roles that allow
/// them).
fn fixed_names() -> Vec<String> {
    let mut names: Vec<String> = [
        // The order matters: the kind's own columns take the first names of each case, then the
        // table the fourth one left. First and second: the newline one shares a generated
        // comment line with a harmless one (an injection that compiles), then a PL/pgSQL
        // variable (a third column, or a bystander), and "old" for the table.
        "c\nDROP TABLE victim;\n--",
        "MixedCase",
        "tg_op",
        "$bf_sync$",
        "new",
        "old",
        "found",
        "x$bf_sync$;DROP TABLE victim;--",
        "$bf_undo$",
        "a\"b",
        "\"; DROP TABLE victim; --",
        "it's",
        "'); DROP TABLE victim; --",
        "*/ DROP TABLE victim; /*",
        "$1",
        "$$",
        "$tag$",
        "-- comment",
        "/* open",
        "close */",
        "back\\slash",
        "\\",
        "semi;colon",
        "select",
        "table",
        "user",
        "order",
        "with space",
        "1leading_digit",
        "é",
        "日本",
        "🦀 crab",
        "tab\there\r\nend",
        "%s %I %L {} {0}",
        "dot.ted",
        // The aliases and CTE names of the generated SQL.
        "_bf_t",
        "_bf_n",
        "_bf_u",
        "_bf_src",
        "_bf_changed",
        "_bf_keys",
        "_bf_last",
        "_bf_ckpt",
        "_bf_w",
        "mixedcase",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    names.push("x".repeat(63));
    names.push("日".repeat(21));
    names.push(format!("{}$bf_sync$", "y".repeat(54)));
    let nl = "c\nDROP TABLE victim;\n--";
    names.push(format!("{}{nl}", "z".repeat(63 - nl.len())));
    names.push(format!("{}x", "é".repeat(31)));
    for n in &names {
        assert!(n.len() <= 63, "fixed name {n:?} is longer than 63 bytes");
    }
    names
}

/// Pieces of random names.
const FRAGMENTS: &[&str] = &[
    "\"",
    "'",
    "\n",
    "\r\n",
    "\t",
    "$bf_sync$",
    "$bf_undo$",
    "$$",
    "$q$",
    "$1",
    "--",
    "/*",
    "*/",
    "\\",
    ";",
    "é",
    "日本",
    "🦀",
    "👩‍💻",
    "select",
    "table",
    "user",
    "order",
    "new",
    "MixedCase",
    " ",
    "%s",
    "%I",
    "{}",
    "(",
    ")",
    ",",
    ".",
    "DROP TABLE victim",
    "9",
    "x",
    "_",
    "U&\"",
    "E'",
];

/// Plan names the format allows (letters, digits, `_`, `-`, `.`, at most 40) but that are odd.
const ODD_PLAN_NAMES: &[&str] = &[
    "select",
    "a.b",
    "-",
    "--",
    "...",
    "1.0.0",
    "x-y.z_w",
    "MixedCase",
    "DROP",
    "bf_sync",
    "victim",
    "0",
    "_",
    "----------------------------------------",
];

/// Plan names the format forbids: `run` must refuse them with exit 2 and change nothing.
fn hostile_plan_names() -> Vec<String> {
    vec![
        "a\"b".to_string(),
        "it's".to_string(),
        "c\nDROP TABLE victim;\n--".to_string(),
        "$bf_sync$".to_string(),
        "é".to_string(),
        "with space".to_string(),
        "semi;colon".to_string(),
        "a".repeat(41),
        String::new(),
        "x/*".to_string(),
    ]
}

// ---------------------------------------------------------------------------------------------
// Randomness.

/// splitmix64: small, deterministic, good enough for test data.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.next() % den < num
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn env_seed() -> u64 {
    match std::env::var("BACKFILL_FUZZ_SEED") {
        Ok(s) => {
            let s = s.trim();
            let parsed = match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            };
            parsed.unwrap_or_else(|e| panic!("BACKFILL_FUZZ_SEED={s}: {e}"))
        }
        Err(_) => DEFAULT_SEED,
    }
}

fn env_cases() -> usize {
    match std::env::var("BACKFILL_FUZZ_CASES") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("BACKFILL_FUZZ_CASES={s}: {e}")),
        Err(_) => DEFAULT_CASES,
    }
}

/// The seed of one case: the run's seed (hashed, so that nearby seeds give unrelated cases),
/// the kind and the case's number.
fn case_seed(seed: u64, kind: usize, case: usize) -> u64 {
    let base = Rng::new(seed).next();
    Rng::new(base ^ ((kind as u64) << 40) ^ case as u64).next()
}

// ---------------------------------------------------------------------------------------------
// Names.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// A schema: no dots (the plan's `table` splits on the first one).
    Schema,
    /// A table: no dots.
    Table,
    /// A column: anything.
    Column,
    /// A constraint or an index: anything but the `bf_` prefix of backfill's own objects.
    Object,
}

fn fits(role: Role, name: &str) -> bool {
    if name.is_empty()
        || name.len() > 63
        || name.contains('\0')
        || name.trim().is_empty()
        || RESERVED.contains(&name)
    {
        return false;
    }
    match role {
        Role::Column => true,
        Role::Object => !name.starts_with("bf_"),
        Role::Table | Role::Schema => {
            // The plan's `table` is trimmed (a table named " t" cannot be named in a plan: it is
            // refused with exit 2, which is allowed but tests nothing else).
            !name.contains('.')
                && !name.starts_with("bf_")
                && !name.starts_with("pg_")
                && name.trim() == name
        }
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

fn random_name(rng: &mut Rng, fixed: &[String]) -> String {
    if rng.chance(1, 4) {
        // A fixed name as it is.
        return rng.pick(fixed).clone();
    }
    let mut s = String::new();
    if rng.chance(1, 3) {
        let f: &String = rng.pick(fixed);
        s.push_str(f);
    }
    for _ in 0..1 + rng.below(4) {
        let f: &&str = rng.pick(FRAGMENTS);
        s.push_str(f);
        if rng.chance(1, 2) {
            let c = *rng.pick(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789");
            s.push(c as char);
        }
    }
    cut(&mut s, 63);
    if rng.chance(1, 5) {
        // Exactly 63 bytes.
        let wide = rng.chance(1, 2);
        while s.len() < 63 {
            if wide && s.len() + 2 <= 63 {
                s.push('é');
            } else {
                s.push('x');
            }
        }
    }
    s
}

/// Hands out distinct names for one case: first from the queue of fixed names (the first one
/// that fits the role), then random ones.
struct Gen {
    rng: Rng,
    queue: Vec<String>,
    all_fixed: Vec<String>,
    used: HashSet<String>,
}

impl Gen {
    fn name(&mut self, role: Role) -> String {
        if let Some(i) = self
            .queue
            .iter()
            .position(|n| fits(role, n) && !self.used.contains(n))
        {
            let n = self.queue.remove(i);
            self.used.insert(n.clone());
            return n;
        }
        loop {
            let n = random_name(&mut self.rng, &self.all_fixed);
            if fits(role, &n) && !self.used.contains(&n) {
                self.used.insert(n.clone());
                return n;
            }
        }
    }

    /// Like [`Gen::name`], but skips the first `skip` fixed names that fit (when there are
    /// more).
    fn name_after(&mut self, role: Role, skip: usize) -> String {
        let fitting: Vec<usize> = self
            .queue
            .iter()
            .enumerate()
            .filter(|(_, n)| fits(role, n) && !self.used.contains(*n))
            .map(|(i, _)| i)
            .collect();
        match fitting.get(skip).or(fitting.last()) {
            Some(&i) => {
                let n = self.queue.remove(i);
                self.used.insert(n.clone());
                n
            }
            None => self.name(role),
        }
    }

    /// A name that is free, or `None`.
    fn claim(&mut self, name: String, role: Role) -> Option<String> {
        (fits(role, &name) && self.used.insert(name.clone())).then_some(name)
    }
}

// ---------------------------------------------------------------------------------------------
// Quoting, as the user (and PostgreSQL) would.

/// An SQL identifier: double-quoted, embedded `"` doubled.
fn qi(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// An SQL string literal (`standard_conforming_strings` is on).
fn lit(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn toml_list(items: &[String]) -> String {
    let parts: Vec<String> = items.iter().map(|s| toml_str(s)).collect();
    format!("[{}]", parts.join(", "))
}

/// An inline table `{ "key" = "value", ... }`.
fn toml_map(pairs: &[(&str, String)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{} = {}", toml_str(k), toml_str(v)))
        .collect();
    format!("{{ {} }}", parts.join(", "))
}

/// The keywords PostgreSQL's `quote_ident` quotes (all but the unreserved ones).
static KEYWORDS: OnceLock<HashSet<String>> = OnceLock::new();

async fn load_keywords(client: &Client) {
    if KEYWORDS.get().is_none() {
        let words = rows(
            client,
            "SELECT word::text FROM pg_get_keywords() WHERE catcode <> 'U'",
        )
        .await;
        let _ = KEYWORDS.set(words.into_iter().collect());
    }
}

/// `quote_ident` as PostgreSQL's deparser (`pg_get_constraintdef`, `pg_get_indexdef`) prints
/// names: bare when lower-case letters, digits and `_` (not starting with a digit) and not a
/// keyword, else double-quoted.
fn pg_quote(name: &str) -> String {
    let keywords = KEYWORDS.get().expect("keywords loaded");
    let safe = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !keywords.contains(name);
    if safe {
        name.to_string()
    } else {
        qi(name)
    }
}

fn pg_quote_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| pg_quote(n))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------------
// Cases.

/// A column of the table the case creates (besides `id` and the bystanders).
struct Col {
    name: String,
    decl: String,
    /// SQL literals for rows 1, 2 and 3.
    values: [String; 3],
}

fn col(name: &str, decl: &str, values: [&str; 3]) -> Col {
    Col {
        name: name.to_string(),
        decl: decl.to_string(),
        values: values.map(|v| v.to_string()),
    }
}

/// What one kind contributes to a case.
#[derive(Default)]
struct Spec {
    cols: Vec<Col>,
    /// SQL run after the table exists (a referenced table).
    extra_setup: String,
    /// The operation's TOML lines (after `[[operations]]`).
    op: String,
    /// Writes by the old and the new release between expand and contract (through the
    /// dual-write trigger): rows inserted or updated, (column, SQL literal) each.
    writes: Vec<Write>,
    /// Columns after contract besides `id` and the bystanders: name, type, NOT NULL.
    final_cols: Vec<(String, &'static str, bool)>,
    /// Values of those columns per row id after contract.
    final_rows: Vec<(i64, Vec<(String, Value)>)>,
    /// Constraints after contract besides the primary key: name, definition.
    constraints: Vec<(String, String)>,
    /// Indexes after contract besides the primary key's: name, definition.
    indexes: Vec<(String, String)>,
    /// Column comments after contract: column, text.
    comments: Vec<(String, String)>,
}

enum Write {
    Insert(i64, Vec<(String, String)>),
    Update(i64, Vec<(String, String)>),
}

fn ins(id: i64, pairs: &[(&str, &str)]) -> Write {
    Write::Insert(
        id,
        pairs
            .iter()
            .map(|(c, v)| (c.to_string(), v.to_string()))
            .collect(),
    )
}

fn upd(id: i64, pairs: &[(&str, &str)]) -> Write {
    Write::Update(
        id,
        pairs
            .iter()
            .map(|(c, v)| (c.to_string(), v.to_string()))
            .collect(),
    )
}

fn s(v: &str) -> Value {
    Value::from(v)
}

fn n(v: i64) -> Value {
    Value::from(v)
}

fn vals(cols: &[&str], rows: &[(i64, Vec<Value>)]) -> Vec<(i64, Vec<(String, Value)>)> {
    rows.iter()
        .map(|(id, vs)| {
            (
                *id,
                cols.iter()
                    .map(|c| c.to_string())
                    .zip(vs.iter().cloned())
                    .collect(),
            )
        })
        .collect()
}

/// One generated case.
struct Case {
    kind: &'static str,
    label: String,
    schema: String,
    table: String,
    /// How the plan writes the table (`schema.table` or `table`).
    plan_table: String,
    plan_name: String,
    /// A name the format forbids, tried first on the abort path.
    bad_plan_name: String,
    bystanders: Vec<String>,
    /// `[backfill] workers`.
    workers: usize,
    /// `--state-schema`, when not the default.
    state_schema: Option<String>,
    spec: Spec,
}

impl Case {
    /// The schema of backfill's own state.
    fn state_schema(&self) -> &str {
        self.state_schema.as_deref().unwrap_or("backfill")
    }

    fn table_sql(&self) -> String {
        format!("{}.{}", qi(&self.schema), qi(&self.table))
    }

    fn plan_text(&self, name: &str) -> String {
        format!(
            "name = {}\ntable = {}\n\n[[operations]]\nkind = {}\n{}\n[backfill]\nworkers = {}\n\n[release]\nexpand = \"1.0.0\"\ncontract = \"2.0.0\"\n",
            toml_str(name),
            toml_str(&self.plan_table),
            // `compose`: a rename, then more changes of the renamed column (`spec.op`).
            toml_str(if self.kind == "compose" {
                "rename_column"
            } else {
                self.kind
            }),
            self.spec.op,
            self.workers
        )
    }

    fn setup_sql(&self) -> String {
        let mut sql = String::from(
            "CREATE TABLE public.victim (id int PRIMARY KEY, note text);\nINSERT INTO public.victim VALUES (1, 'still here');\n",
        );
        if self.schema != "public" {
            let _ = writeln!(sql, "CREATE SCHEMA {};", qi(&self.schema));
        }
        let mut decls = vec!["id bigint".to_string()];
        for c in &self.spec.cols {
            decls.push(format!("{} {}", qi(&c.name), c.decl));
        }
        for b in &self.bystanders {
            decls.push(format!("{} text", qi(b)));
        }
        decls.push("CONSTRAINT fuzz_pkey PRIMARY KEY (id)".to_string());
        let _ = writeln!(
            sql,
            "CREATE TABLE {} (\n  {}\n);",
            self.table_sql(),
            decls.join(",\n  ")
        );
        for id in 1..=3i64 {
            let mut names = vec!["id".to_string()];
            let mut values = vec![id.to_string()];
            for c in &self.spec.cols {
                names.push(qi(&c.name));
                values.push(c.values[(id - 1) as usize].clone());
            }
            for b in &self.bystanders {
                names.push(qi(b));
                values.push(lit(&format!("v{id}")));
            }
            let _ = writeln!(
                sql,
                "INSERT INTO {} ({}) VALUES ({});",
                self.table_sql(),
                names.join(", "),
                values.join(", ")
            );
        }
        sql.push_str(&self.spec.extra_setup);
        let _ = writeln!(sql, "ANALYZE {};", self.table_sql());
        sql
    }

    fn write_sql(&self) -> Vec<String> {
        self.spec
            .writes
            .iter()
            .map(|w| match w {
                Write::Insert(id, pairs) => {
                    let mut names = vec!["id".to_string()];
                    let mut values = vec![id.to_string()];
                    for (c, v) in pairs {
                        names.push(qi(c));
                        values.push(v.clone());
                    }
                    for b in &self.bystanders {
                        names.push(qi(b));
                        values.push(lit(&format!("v{id}")));
                    }
                    format!(
                        "INSERT INTO {} ({}) VALUES ({})",
                        self.table_sql(),
                        names.join(", "),
                        values.join(", ")
                    )
                }
                Write::Update(id, pairs) => {
                    let sets: Vec<String> = pairs
                        .iter()
                        .map(|(c, v)| format!("{} = {v}", qi(c)))
                        .collect();
                    format!(
                        "UPDATE {} SET {} WHERE id = {id}",
                        self.table_sql(),
                        sets.join(", ")
                    )
                }
            })
            .collect()
    }

    /// Columns after contract, sorted by name: name, type, NOT NULL.
    fn expected_columns(&self) -> Vec<(String, String, bool)> {
        let mut out = vec![("id".to_string(), "bigint".to_string(), true)];
        for b in &self.bystanders {
            out.push((b.clone(), "text".to_string(), false));
        }
        for (name, ty, nn) in &self.spec.final_cols {
            out.push((name.clone(), ty.to_string(), *nn));
        }
        out.sort();
        out
    }

    fn expected_constraints(&self) -> Vec<(String, String, bool)> {
        let mut out = vec![(
            "fuzz_pkey".to_string(),
            "PRIMARY KEY (id)".to_string(),
            true,
        )];
        for (name, def) in &self.spec.constraints {
            out.push((name.clone(), def.clone(), true));
        }
        out.sort();
        out
    }

    fn expected_indexes(&self) -> Vec<(String, String, bool)> {
        let mut out = vec![(
            "fuzz_pkey".to_string(),
            format!(
                "CREATE UNIQUE INDEX fuzz_pkey ON {} USING btree (id)",
                self.deparsed_table()
            ),
            true,
        )];
        for (name, def) in &self.spec.indexes {
            out.push((name.clone(), def.clone(), true));
        }
        out.sort();
        out
    }

    /// The table as `pg_get_indexdef` prints it (always schema-qualified).
    fn deparsed_table(&self) -> String {
        format!("{}.{}", pg_quote(&self.schema), pg_quote(&self.table))
    }

    fn expected_rows(&self) -> Vec<Value> {
        self.spec
            .final_rows
            .iter()
            .map(|(id, cols)| {
                let mut m = serde_json::Map::new();
                m.insert("id".to_string(), n(*id));
                for b in &self.bystanders {
                    m.insert(b.clone(), s(&format!("v{id}")));
                }
                for (c, v) in cols {
                    m.insert(c.clone(), v.clone());
                }
                Value::Object(m)
            })
            .collect()
    }

    fn describe(&self) -> String {
        let mut out = format!(
            "{} (BACKFILL_FUZZ_SEED={:#x})\n--- names: schema {:?}, table {:?}, bystanders {:?}, --state-schema {:?}\n--- setup SQL:\n{}--- plan:\n{}",
            self.label,
            env_seed(),
            self.schema,
            self.table,
            self.bystanders,
            self.state_schema,
            self.setup_sql(),
            self.plan_text(&self.plan_name)
        );
        out.push_str("--- transition writes:\n");
        for w in self.write_sql() {
            let _ = writeln!(out, "{w};");
        }
        out
    }
}

/// Builds the kind-specific part of a case.
fn build_spec(kind: &str, g: &mut Gen, schema: &str, table: &str, deparsed: &str) -> Spec {
    let mut spec = Spec::default();
    // Columns in the plan's expressions: quoted, and in a third of the cases qualified by the
    // table's name (README: "named bare or by the table's name").
    let qualify = g.rng.chance(1, 3);
    let x = |column: &str| {
        if qualify {
            format!("{}.{}", qi(table), qi(column))
        } else {
            qi(column)
        }
    };
    let default_name = |g: &mut Gen, cols: &[String], suffix: &str| -> Option<String> {
        if !g.rng.chance(1, 3) {
            return None;
        }
        let name = format!("{table}_{}_{suffix}", cols.join("_"));
        if name.len() > 63 {
            return None;
        }
        g.claim(name, Role::Object)
    };
    match kind {
        "add_column" => {
            let a = g.name(Role::Column);
            let new = g.name(Role::Column);
            let nullable = g.rng.chance(1, 2);
            spec.cols = vec![col(&a, "text", ["'a1'", "'a2'", "'a3'"])];
            spec.op = format!(
                "name = {}\ntype = \"text\"\nup = {}\n{}",
                toml_str(&new),
                toml_str(&format!("{} || '-x'", x(&a))),
                if nullable { "" } else { "nullable = false\n" }
            );
            spec.writes = vec![
                ins(4, &[(&a, "'a4'")]),
                upd(2, &[(&a, "'u2'")]),
                ins(5, &[(&a, "'a5'"), (&new, "'n5'")]),
            ];
            spec.final_cols = vec![(a.clone(), "text", false), (new.clone(), "text", !nullable)];
            spec.final_rows = vals(
                &[&a, &new],
                &[
                    (1, vec![s("a1"), s("a1-x")]),
                    // The derived column follows the old release's write of its source.
                    (2, vec![s("u2"), s("u2-x")]),
                    (3, vec![s("a3"), s("a3-x")]),
                    (4, vec![s("a4"), s("a4-x")]),
                    (5, vec![s("a5"), s("n5")]),
                ],
            );
        }
        "rename_column" => {
            let from = g.name(Role::Column);
            let to = g.name(Role::Column);
            spec.cols = vec![col(&from, "text", ["'f1'", "'f2'", "'f3'"])];
            spec.op = format!("from = {}\nto = {}\n", toml_str(&from), toml_str(&to));
            spec.writes = vec![
                ins(4, &[(&from, "'f4'")]),
                upd(2, &[(&from, "'u2'")]),
                upd(3, &[(&to, "'w3'")]),
                ins(5, &[(&to, "'n5'")]),
            ];
            spec.final_cols = vec![(to.clone(), "text", false)];
            spec.final_rows = vals(
                &[&to],
                &[
                    (1, vec![s("f1")]),
                    (2, vec![s("u2")]),
                    (3, vec![s("w3")]),
                    (4, vec![s("f4")]),
                    (5, vec![s("n5")]),
                ],
            );
        }
        "change_type" => {
            let c = g.name(Role::Column);
            let not_null = g.rng.chance(1, 2);
            let temp = g.rng.chance(1, 2).then(|| g.name(Role::Column));
            let mut op = format!("column = {}\ntype = \"bigint\"\n", toml_str(&c));
            if let Some(t) = &temp {
                let _ = writeln!(op, "temp_column = {}", toml_str(t));
                if g.rng.chance(1, 2) {
                    let _ = writeln!(
                        op,
                        "up = {}\ndown = {}",
                        toml_str(&format!("CAST({} AS bigint)", x(&c))),
                        toml_str(&format!("CAST({} AS text)", x(t)))
                    );
                }
            }
            spec.op = op;
            spec.cols = vec![col(
                &c,
                if not_null { "text NOT NULL" } else { "text" },
                ["'10'", "'20'", "'30'"],
            )];
            // The hidden column, when its name is known (README: `<column>_bf_new`).
            let hidden = temp
                .clone()
                .or_else(|| (c.len() + 7 <= 63).then(|| format!("{c}_bf_new")));
            spec.writes = vec![ins(4, &[(&c, "'40'")]), upd(2, &[(&c, "'25'")])];
            let mut rows = vec![
                (1, vec![n(10)]),
                (2, vec![n(25)]),
                (3, vec![n(30)]),
                (4, vec![n(40)]),
            ];
            if let Some(h) = &hidden {
                spec.writes.push(upd(3, &[(h, "35")]));
                spec.writes.push(ins(5, &[(h, "50")]));
                rows[2] = (3, vec![n(35)]);
                rows.push((5, vec![n(50)]));
            }
            spec.final_cols = vec![(c.clone(), "bigint", not_null)];
            spec.final_rows = vals(&[&c], &rows);
        }
        "split_column" => {
            let src = g.name(Role::Column);
            let n1 = g.name(Role::Column);
            let n2 = g.name(Role::Column);
            let nullable = g.rng.chance(1, 2);
            spec.cols = vec![col(&src, "text", ["'p1 q1'", "'p2 q2'", "'p3 q3'"])];
            spec.op = format!(
                "column = {}\ninto = [\n  {{ name = {}, type = \"text\", up = {}{} }},\n  {{ name = {}, type = \"text\", up = {} }},\n]\ndown = {}\n",
                toml_str(&src),
                toml_str(&n1),
                toml_str(&format!("split_part({}, ' ', 1)", x(&src))),
                if nullable { "" } else { ", nullable = false" },
                toml_str(&n2),
                toml_str(&format!("split_part({}, ' ', 2)", x(&src))),
                toml_str(&format!("concat_ws(' ', {}, {})", x(&n1), x(&n2))),
            );
            spec.writes = vec![
                ins(4, &[(&src, "'p4 q4'")]),
                upd(2, &[(&src, "'u2 v2'")]),
                upd(3, &[(&n1, "'w3'"), (&n2, "'z3'")]),
                ins(5, &[(&n1, "'n5'"), (&n2, "'m5'")]),
            ];
            spec.final_cols = vec![(n1.clone(), "text", !nullable), (n2.clone(), "text", false)];
            spec.final_rows = vals(
                &[&n1, &n2],
                &[
                    (1, vec![s("p1"), s("q1")]),
                    (2, vec![s("u2"), s("v2")]),
                    (3, vec![s("w3"), s("z3")]),
                    (4, vec![s("p4"), s("q4")]),
                    (5, vec![s("n5"), s("m5")]),
                ],
            );
        }
        "merge_columns" => {
            let m1 = g.name(Role::Column);
            let m2 = g.name(Role::Column);
            let new = g.name(Role::Column);
            spec.cols = vec![
                col(&m1, "text", ["'m1'", "'m2'", "'m3'"]),
                col(&m2, "text", ["'n1'", "'n2'", "'n3'"]),
            ];
            spec.op = format!(
                "columns = {}\ninto = {{ name = {}, type = \"text\", up = {} }}\ndown = {}\n",
                toml_list(&[m1.clone(), m2.clone()]),
                toml_str(&new),
                toml_str(&format!("{} || ' ' || {}", x(&m1), x(&m2))),
                toml_map(&[
                    (&m1, format!("split_part({}, ' ', 1)", x(&new))),
                    (&m2, format!("split_part({}, ' ', 2)", x(&new))),
                ]),
            );
            spec.writes = vec![
                ins(4, &[(&m1, "'m4'"), (&m2, "'n4'")]),
                upd(2, &[(&m1, "'u2'")]),
                upd(3, &[(&new, "'w3 z3'")]),
                ins(5, &[(&new, "'a5 b5'")]),
            ];
            spec.final_cols = vec![(new.clone(), "text", false)];
            spec.final_rows = vals(
                &[&new],
                &[
                    (1, vec![s("m1 n1")]),
                    (2, vec![s("u2 n2")]),
                    (3, vec![s("w3 z3")]),
                    (4, vec![s("m4 n4")]),
                    (5, vec![s("a5 b5")]),
                ],
            );
        }
        "set_not_null" => {
            let c = g.name(Role::Column);
            let a = g.name(Role::Column);
            spec.cols = vec![
                col(&c, "text", ["'c1'", "'c2'", "NULL"]),
                col(&a, "text", ["'a1'", "'a2'", "'a3'"]),
            ];
            spec.op = format!(
                "column = {}\nfill = {}\n",
                toml_str(&c),
                toml_str(&format!("{} || '-f'", x(&a)))
            );
            spec.writes = vec![
                ins(4, &[(&a, "'a4'"), (&c, "NULL")]),
                upd(2, &[(&c, "NULL")]),
                ins(5, &[(&a, "'a5'"), (&c, "'c5'")]),
            ];
            spec.final_cols = vec![(c.clone(), "text", true), (a.clone(), "text", false)];
            spec.final_rows = vals(
                &[&c, &a],
                &[
                    (1, vec![s("c1"), s("a1")]),
                    (2, vec![s("a2-f"), s("a2")]),
                    (3, vec![s("a3-f"), s("a3")]),
                    (4, vec![s("a4-f"), s("a4")]),
                    (5, vec![s("c5"), s("a5")]),
                ],
            );
        }
        "add_check" => {
            let b = g.name(Role::Column);
            let k = g.name(Role::Object);
            spec.cols = vec![col(&b, "bigint", ["1", "2", "-3"])];
            spec.op = format!(
                "name = {}\ncheck = {}\nfill = {}\n",
                toml_str(&k),
                toml_str(&format!("{} > 0", x(&b))),
                toml_map(&[(&b, format!("abs({})", x(&b)))])
            );
            spec.writes = vec![
                ins(4, &[(&b, "-4")]),
                upd(2, &[(&b, "-2")]),
                ins(5, &[(&b, "5")]),
            ];
            spec.final_cols = vec![(b.clone(), "bigint", false)];
            spec.final_rows = vals(
                &[&b],
                &[
                    (1, vec![n(1)]),
                    (2, vec![n(2)]),
                    (3, vec![n(3)]),
                    (4, vec![n(4)]),
                    (5, vec![n(5)]),
                ],
            );
            spec.constraints = vec![(k, format!("CHECK (({} > 0))", pg_quote(&b)))];
        }
        "add_foreign_key" => {
            let two = g.rng.chance(1, 2);
            let mut cols = vec![g.name(Role::Column)];
            if two {
                cols.push(g.name(Role::Column));
            }
            let ref_table = g.name(Role::Table);
            let ref_schema = match g.rng.below(3) {
                0 => "public".to_string(),
                1 => schema.to_string(),
                _ => g.name(Role::Schema),
            };
            let mut ref_cols = vec![g.name(Role::Column)];
            if two {
                ref_cols.push(g.name(Role::Column));
            }
            let rq = format!("{}.{}", qi(&ref_schema), qi(&ref_table));
            if ref_schema != "public" && ref_schema != schema {
                let _ = writeln!(spec.extra_setup, "CREATE SCHEMA {};", qi(&ref_schema));
            }
            let ref_decls: Vec<String> = ref_cols
                .iter()
                .map(|c| format!("{} bigint NOT NULL", qi(c)))
                .collect();
            let ref_list: Vec<String> = ref_cols.iter().map(|c| qi(c)).collect();
            let _ = writeln!(
                spec.extra_setup,
                "CREATE TABLE {rq} ({}, CONSTRAINT fuzz_ref_key UNIQUE ({}));\nINSERT INTO {rq} SELECT {} FROM generate_series(1, 3) g;",
                ref_decls.join(", "),
                ref_list.join(", "),
                if two { "g, g * 10" } else { "g" }
            );
            spec.cols = vec![col(&cols[0], "bigint", ["1", "2", "3"])];
            if two {
                spec.cols.push(col(&cols[1], "bigint", ["10", "20", "30"]));
            }
            let actions = [
                ("no_action", ""),
                ("restrict", "RESTRICT"),
                ("cascade", "CASCADE"),
                ("set_null", "SET NULL"),
                ("set_default", "SET DEFAULT"),
            ];
            let on_delete = g.rng.chance(1, 2).then(|| *g.rng.pick(&actions));
            let on_update = g.rng.chance(1, 2).then(|| *g.rng.pick(&actions));
            let name = match default_name(g, &cols, "fkey") {
                Some(d) => (d, false),
                None => (g.name(Role::Object), true),
            };
            let mut op = format!(
                "columns = {}\nreferences = {{ table = {}, columns = {} }}\n",
                toml_list(&cols),
                toml_str(&if ref_schema == "public" && g.rng.chance(1, 2) {
                    ref_table.clone()
                } else {
                    format!("{ref_schema}.{ref_table}")
                }),
                toml_list(&ref_cols)
            );
            if name.1 {
                let _ = writeln!(op, "name = {}", toml_str(&name.0));
            }
            if let Some((a, _)) = on_delete {
                let _ = writeln!(op, "on_delete = {}", toml_str(a));
            }
            if let Some((a, _)) = on_update {
                let _ = writeln!(op, "on_update = {}", toml_str(a));
            }
            spec.op = op;
            spec.writes = vec![if two {
                ins(4, &[(&cols[0], "2"), (&cols[1], "20")])
            } else {
                ins(4, &[(&cols[0], "2")])
            }];
            let deparsed_ref = if ref_schema == "public" {
                pg_quote(&ref_table)
            } else {
                format!("{}.{}", pg_quote(&ref_schema), pg_quote(&ref_table))
            };
            let mut def = format!(
                "FOREIGN KEY ({}) REFERENCES {deparsed_ref}({})",
                pg_quote_list(&cols),
                pg_quote_list(&ref_cols)
            );
            for (clause, action) in [("ON UPDATE", on_update), ("ON DELETE", on_delete)] {
                if let Some((_, sql)) = action {
                    if !sql.is_empty() {
                        let _ = write!(def, " {clause} {sql}");
                    }
                }
            }
            spec.constraints = vec![(name.0, def)];
            spec.final_cols = cols.iter().map(|c| (c.clone(), "bigint", false)).collect();
            let names: Vec<&str> = cols.iter().map(String::as_str).collect();
            let row = |i: i64| {
                if two {
                    vec![n(i), n(i * 10)]
                } else {
                    vec![n(i)]
                }
            };
            spec.final_rows = vals(
                &names,
                &[(1, row(1)), (2, row(2)), (3, row(3)), (4, row(2))],
            );
        }
        "add_unique" => {
            let two = g.rng.chance(1, 2);
            let mut cols = vec![g.name(Role::Column)];
            spec.cols = vec![col(&cols[0], "text", ["'u1'", "'u2'", "'u3'"])];
            if two {
                cols.push(g.name(Role::Column));
                spec.cols.push(col(&cols[1], "bigint", ["1", "2", "3"]));
            }
            let (name, explicit) = match default_name(g, &cols, "key") {
                Some(d) => (d, false),
                None => (g.name(Role::Object), true),
            };
            spec.op = format!("columns = {}\n", toml_list(&cols));
            if explicit {
                let _ = writeln!(spec.op, "name = {}", toml_str(&name));
            }
            spec.writes = vec![if two {
                ins(4, &[(&cols[0], "'u4'"), (&cols[1], "4")])
            } else {
                ins(4, &[(&cols[0], "'u4'")])
            }];
            spec.final_cols = vec![(cols[0].clone(), "text", false)];
            if two {
                spec.final_cols.push((cols[1].clone(), "bigint", false));
            }
            let names: Vec<&str> = cols.iter().map(String::as_str).collect();
            let row = |i: i64| {
                if two {
                    vec![s(&format!("u{i}")), n(i)]
                } else {
                    vec![s(&format!("u{i}"))]
                }
            };
            spec.final_rows = vals(
                &names,
                &[(1, row(1)), (2, row(2)), (3, row(3)), (4, row(4))],
            );
            spec.constraints = vec![(name.clone(), format!("UNIQUE ({})", pg_quote_list(&cols)))];
            spec.indexes = vec![(
                name.clone(),
                format!(
                    "CREATE UNIQUE INDEX {} ON {deparsed} USING btree ({})",
                    pg_quote(&name),
                    pg_quote_list(&cols)
                ),
            )];
        }
        "create_index" => {
            let a = g.name(Role::Column);
            let b = g.name(Role::Column);
            spec.cols = vec![
                col(&a, "text", ["'a1'", "'a2'", "'a3'"]),
                col(&b, "bigint", ["1", "2", "3"]),
            ];
            let unique = g.rng.chance(1, 3);
            let body = g.rng.below(3);
            let partial = g.rng.chance(1, 2);
            let (cols, body_sql) = match body {
                0 => (Some(vec![a.clone()]), pg_quote(&a)),
                1 => (
                    Some(vec![a.clone(), b.clone()]),
                    pg_quote_list(&[a.clone(), b.clone()]),
                ),
                _ => (None, format!("lower({})", pg_quote(&a))),
            };
            let hash = body == 0 && !unique && g.rng.chance(1, 3);
            let method = if hash {
                Some("hash")
            } else if g.rng.chance(1, 3) {
                Some("btree")
            } else {
                None
            };
            let suffix = if unique { "key" } else { "idx" };
            let (name, explicit) = match cols.as_ref().and_then(|c| default_name(g, c, suffix)) {
                Some(d) => (d, false),
                None => (g.name(Role::Object), true),
            };
            let mut op = match &cols {
                Some(c) => format!("columns = {}\n", toml_list(c)),
                None => format!("expression = {}\n", toml_str(&format!("lower({})", qi(&a)))),
            };
            if unique {
                op.push_str("unique = true\n");
            }
            if partial {
                let _ = writeln!(op, "where = {}", toml_str(&format!("{} > 0", x(&b))));
            }
            if let Some(m) = method {
                let _ = writeln!(op, "method = {}", toml_str(m));
            }
            if explicit {
                let _ = writeln!(op, "name = {}", toml_str(&name));
            }
            spec.op = op;
            spec.writes = vec![ins(4, &[(&a, "'a4'"), (&b, "4")])];
            spec.final_cols = vec![(a.clone(), "text", false), (b.clone(), "bigint", false)];
            spec.final_rows = vals(
                &[&a, &b],
                &[
                    (1, vec![s("a1"), n(1)]),
                    (2, vec![s("a2"), n(2)]),
                    (3, vec![s("a3"), n(3)]),
                    (4, vec![s("a4"), n(4)]),
                ],
            );
            let mut def = format!(
                "CREATE {}INDEX {} ON {deparsed} USING {} ({body_sql})",
                if unique { "UNIQUE " } else { "" },
                pg_quote(&name),
                method.unwrap_or("btree")
            );
            if partial {
                let _ = write!(def, " WHERE ({} > 0)", pg_quote(&b));
            }
            spec.indexes = vec![(name, def)];
        }
        "drop_column" => {
            let d = g.name(Role::Column);
            let a = g.name(Role::Column);
            spec.cols = vec![
                col(&d, "text", ["'d1'", "'d2'", "'d3'"]),
                col(&a, "text", ["'a1'", "'a2'", "'a3'"]),
            ];
            spec.op = format!("column = {}\n", toml_str(&d));
            if g.rng.chance(1, 2) {
                let _ = writeln!(
                    spec.op,
                    "down = {}",
                    toml_str(&format!("{} || '-d'", x(&a)))
                );
            }
            spec.writes = vec![ins(4, &[(&a, "'a4'")]), upd(2, &[(&a, "'u2'")])];
            spec.final_cols = vec![(a.clone(), "text", false)];
            spec.final_rows = vals(
                &[&a],
                &[
                    (1, vec![s("a1")]),
                    (2, vec![s("u2")]),
                    (3, vec![s("a3")]),
                    (4, vec![s("a4")]),
                ],
            );
        }
        "update_rows" => {
            // Idempotent, as a backfill must be: a row once updated no longer matches `where`.
            let a = g.name(Role::Column);
            let b = g.name(Role::Column);
            spec.cols = vec![
                col(&a, "text", ["'A1'", "'a2'", "'a3'"]),
                col(&b, "bigint", ["1", "2", "3"]),
            ];
            spec.op = format!(
                "set = {}\nwhere = {}\n",
                toml_map(&[
                    (&a, format!("upper({})", x(&a))),
                    (&b, format!("{} * 10", x(&b))),
                ]),
                toml_str(&format!("{} <> upper({})", x(&a), x(&a)))
            );
            spec.writes = vec![
                ins(4, &[(&a, "'a4'"), (&b, "4")]),
                upd(1, &[(&a, "'x1'")]),
                ins(5, &[(&a, "'B5'"), (&b, "5")]),
            ];
            spec.final_cols = vec![(a.clone(), "text", false), (b.clone(), "bigint", false)];
            spec.final_rows = vals(
                &[&a, &b],
                &[
                    (1, vec![s("X1"), n(10)]),
                    (2, vec![s("A2"), n(20)]),
                    (3, vec![s("A3"), n(30)]),
                    (4, vec![s("A4"), n(40)]),
                    (5, vec![s("B5"), n(5)]),
                ],
            );
        }
        "drop_index" => {
            let a = g.name(Role::Column);
            let k = g.name(Role::Object);
            spec.cols = vec![col(&a, "text", ["'i1'", "'i2'", "'i3'"])];
            let _ = writeln!(
                spec.extra_setup,
                "CREATE INDEX {} ON {}.{} ({});",
                qi(&k),
                qi(schema),
                qi(table),
                qi(&a)
            );
            spec.op = format!("name = {}\n", toml_str(&k));
            spec.writes = vec![ins(4, &[(&a, "'i4'")]), upd(2, &[(&a, "'u2'")])];
            spec.final_cols = vec![(a.clone(), "text", false)];
            spec.final_rows = vals(
                &[&a],
                &[
                    (1, vec![s("i1")]),
                    (2, vec![s("u2")]),
                    (3, vec![s("i3")]),
                    (4, vec![s("i4")]),
                ],
            );
            // Gone after contract: `spec.indexes` lists none.
        }
        "compose" => {
            // A rename, then a change of type and NOT NULL of the renamed column, written with
            // its new name: composed into one new column, expressions rewritten.
            let from = g.name(Role::Column);
            let to = g.name(Role::Column);
            spec.cols = vec![col(&from, "text", ["'10'", "'20'", "'30'"])];
            spec.op = format!(
                "from = {}\nto = {}\n[[operations]]\nkind = \"change_type\"\ncolumn = {}\ntype = \"bigint\"\nup = {}\n[[operations]]\nkind = \"set_not_null\"\ncolumn = {}\nfill = {}\n",
                toml_str(&from),
                toml_str(&to),
                toml_str(&to),
                toml_str(&format!("CAST({} AS bigint) -- {}\n", x(&to), qi(&to))),
                toml_str(&to),
                toml_str(&format!("length({})", lit(&to))),
            );
            spec.writes = vec![
                ins(4, &[(&from, "'40'")]),
                upd(2, &[(&from, "'25'")]),
                upd(3, &[(&to, "35")]),
                ins(5, &[(&to, "50")]),
                ins(6, &[(&from, "NULL")]),
            ];
            spec.final_cols = vec![(to.clone(), "bigint", true)];
            spec.final_rows = vals(
                &[&to],
                &[
                    (1, vec![n(10)]),
                    (2, vec![n(25)]),
                    (3, vec![n(35)]),
                    (4, vec![n(40)]),
                    (5, vec![n(50)]),
                    (6, vec![n(to.chars().count() as i64)]),
                ],
            );
        }
        "create_enum" => {
            // A type and labels with hostile names, used by a column of the same plan.
            let ty = g.name(Role::Object);
            let c = g.name(Role::Column);
            let (l1, l2) = (g.name(Role::Object), g.name(Role::Object));
            spec.op = format!(
                "name = {}\nvalues = {}\n[[operations]]\nkind = \"add_column\"\nname = {}\ntype = {}\n",
                toml_str(&ty),
                toml_list(&[l1.clone(), l2.clone()]),
                toml_str(&c),
                toml_str(&format!("{}.{}", qi(schema), qi(&ty))),
            );
            let lit = |v: &str| format!("'{}'", v.replace('\'', "''"));
            spec.writes = vec![upd(2, &[(&c, &lit(&l2))]), ins(4, &[(&c, &lit(&l1))])];
            spec.final_cols = vec![(c.clone(), "enum", false)];
            spec.final_rows = vals(
                &[&c],
                &[
                    (1, vec![Value::Null]),
                    (2, vec![s(&l2)]),
                    (3, vec![Value::Null]),
                    (4, vec![s(&l1)]),
                ],
            );
        }
        "drop_constraint" => {
            // A unique constraint: abort builds its index again and attaches it, so the table
            // comes back exactly (a check would come back NOT VALID).
            let c = g.name(Role::Column);
            let k = g.name(Role::Object);
            spec.cols = vec![col(&c, "text", ["'d1'", "'d2'", "'d3'"])];
            let _ = writeln!(
                spec.extra_setup,
                "ALTER TABLE {}.{} ADD CONSTRAINT {} UNIQUE ({});",
                qi(schema),
                qi(table),
                qi(&k),
                qi(&c)
            );
            spec.op = format!("name = {}\n", toml_str(&k));
            // Duplicates are allowed once it is gone.
            spec.writes = vec![ins(4, &[(&c, "'d1'")]), upd(2, &[(&c, "'d3'")])];
            spec.final_cols = vec![(c.clone(), "text", false)];
            spec.final_rows = vals(
                &[&c],
                &[
                    (1, vec![s("d1")]),
                    (2, vec![s("d3")]),
                    (3, vec![s("d3")]),
                    (4, vec![s("d1")]),
                ],
            );
        }
        "rename_constraint" => {
            let b = g.name(Role::Column);
            let from = g.name(Role::Object);
            let to = g.name(Role::Object);
            spec.cols = vec![col(&b, "bigint", ["1", "2", "3"])];
            let _ = writeln!(
                spec.extra_setup,
                "ALTER TABLE {}.{} ADD CONSTRAINT {} CHECK ({} > 0);",
                qi(schema),
                qi(table),
                qi(&from),
                qi(&b)
            );
            spec.op = format!("from = {}\nto = {}\n", toml_str(&from), toml_str(&to));
            spec.writes = vec![ins(4, &[(&b, "4")]), upd(2, &[(&b, "5")])];
            spec.final_cols = vec![(b.clone(), "bigint", false)];
            spec.final_rows = vals(
                &[&b],
                &[
                    (1, vec![n(1)]),
                    (2, vec![n(5)]),
                    (3, vec![n(3)]),
                    (4, vec![n(4)]),
                ],
            );
            spec.constraints = vec![(to, format!("CHECK (({} > 0))", pg_quote(&b)))];
        }
        "drop_not_null" => {
            let c = g.name(Role::Column);
            spec.cols = vec![col(&c, "text NOT NULL", ["'n1'", "'n2'", "'n3'"])];
            spec.op = format!("column = {}\n", toml_str(&c));
            spec.writes = vec![ins(4, &[(&c, "NULL")]), upd(2, &[(&c, "NULL")])];
            spec.final_cols = vec![(c.clone(), "text", false)];
            spec.final_rows = vals(
                &[&c],
                &[
                    (1, vec![s("n1")]),
                    (2, vec![Value::Null]),
                    (3, vec![s("n3")]),
                    (4, vec![Value::Null]),
                ],
            );
        }
        "set_default" => {
            let c = g.name(Role::Column);
            let a = g.name(Role::Column);
            spec.cols = vec![
                col(&c, "text DEFAULT 'old'", ["'c1'", "'c2'", "'c3'"]),
                col(&a, "text", ["'a1'", "'a2'", "'a3'"]),
            ];
            spec.op = format!(
                "column = {}\ndefault = {}\n",
                toml_str(&c),
                toml_str("'it''s \\ $$ -- new'")
            );
            spec.writes = vec![ins(4, &[(&a, "'a4'")])];
            spec.final_cols = vec![(c.clone(), "text", false), (a.clone(), "text", false)];
            spec.final_rows = vals(
                &[&c, &a],
                &[
                    (1, vec![s("c1"), s("a1")]),
                    (2, vec![s("c2"), s("a2")]),
                    (3, vec![s("c3"), s("a3")]),
                    (4, vec![s("it's \\ $$ -- new"), s("a4")]),
                ],
            );
        }
        "set_comment" => {
            let c = g.name(Role::Column);
            // Another hostile name, as the comment's text.
            let text = g.name(Role::Column);
            spec.cols = vec![col(&c, "text", ["'c1'", "'c2'", "'c3'"])];
            spec.op = format!("column = {}\ncomment = {}\n", toml_str(&c), toml_str(&text));
            spec.writes = vec![ins(4, &[(&c, "'c4'")])];
            spec.final_cols = vec![(c.clone(), "text", false)];
            spec.final_rows = vals(
                &[&c],
                &[
                    (1, vec![s("c1")]),
                    (2, vec![s("c2")]),
                    (3, vec![s("c3")]),
                    (4, vec![s("c4")]),
                ],
            );
            spec.comments = vec![(c, text)];
        }
        other => panic!("unknown kind {other}"),
    }
    spec
}

/// Builds one case of `kind`.
fn build_case(kind: &'static str, g: &mut Gen, label: String, bad_plan_name: String) -> Case {
    // The table takes the fourth fixed name that fits it: the first ones go to the kind's own
    // columns, where the generated trigger and backfill SQL quote them.
    let fixed = !g.queue.is_empty();
    let table = g.name_after(Role::Table, 3);
    let schema = if !fixed && g.rng.chance(1, 2) {
        "public".to_string()
    } else {
        g.name_after(Role::Schema, 3)
    };
    let deparsed = format!("{}.{}", pg_quote(&schema), pg_quote(&table));
    let spec = build_spec(kind, g, &schema, &table, &deparsed);
    // Fixed cases use up more of the fixed names per case: a hostile schema, three bystanders.
    let count = if fixed { 3 } else { g.rng.below(3) };
    let mut bystanders: Vec<String> = (0..count).map(|_| g.name(Role::Column)).collect();
    if !fixed && g.rng.chance(1, 5) {
        // A column named like its table.
        bystanders.push(table.clone());
    }
    // backfill's own state in a schema with a hostile name (`--state-schema`).
    let state_schema = (fixed || g.rng.chance(1, 3)).then(|| g.name(Role::Schema));
    let plan_table = if schema == "public" && g.rng.chance(1, 2) {
        table.clone()
    } else {
        format!("{schema}.{table}")
    };
    let plan_name = g.rng.pick(ODD_PLAN_NAMES).to_string();
    let workers = if fixed { 1 } else { 1 + g.rng.below(4) };
    Case {
        kind,
        label,
        schema,
        table,
        plan_table,
        plan_name,
        bad_plan_name,
        bystanders,
        workers,
        state_schema,
        spec,
    }
}

// ---------------------------------------------------------------------------------------------
// Running.

static FILES: AtomicUsize = AtomicUsize::new(0);

/// A plan file in a temporary folder, removed on drop.
struct PlanFile(PathBuf);

impl PlanFile {
    fn new(text: &str) -> PlanFile {
        let n = FILES.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("backfill-hostile-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the plan folder");
        let path = dir.join("plan.toml");
        std::fs::write(&path, text).expect("write the plan");
        PlanFile(path)
    }

    fn arg(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for PlanFile {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Runs the binary as support's `backfill_cmd` does (DATABASE_URL set to the test database),
/// killed after [`COMMAND_TIMEOUT`].
async fn backfill(case: &Case, args: &[&str], url: &str) -> Result<Output, String> {
    let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    if let Some(schema) = &case.state_schema {
        // `=`: a value starting with `-` would read as a flag.
        args.push(format!("--state-schema={schema}"));
    }
    let child = Command::new(env!("CARGO_BIN_EXE_backfill"))
        .args(&args)
        .env_remove("DATABASE_URL")
        .env("DATABASE_URL", url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start backfill: {e}"))?;
    let pid = child.id();
    let wait = tokio::task::spawn_blocking(move || child.wait_with_output());
    match tokio::time::timeout(COMMAND_TIMEOUT, wait).await {
        Ok(Ok(Ok(out))) => Ok(out),
        Ok(Ok(Err(e))) => Err(format!("waiting for backfill: {e}")),
        Ok(Err(e)) => Err(format!("waiting for backfill: {e}")),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            Err(format!(
                "backfill {args:?} did not finish within {COMMAND_TIMEOUT:?} (killed)"
            ))
        }
    }
}

/// support's `snapshot` of the case's table, without the state schema's own tables and
/// functions (an abort keeps the plan's history there) but with any undo table left behind.
async fn snap(client: &Client, case: &Case) -> Vec<String> {
    let table = case.table_sql();
    let lines = snapshot(client, &table, "id").await;
    // The state schema's own tables and functions stay after an abort (the plan's history);
    // an undo table left there does not.
    let state = case.state_schema();
    let prefixes = [format!("relation {state}."), format!("function {state}.")];
    lines
        .into_iter()
        .filter(|l| {
            !prefixes.iter().any(|p| {
                l.strip_prefix(p.as_str())
                    .is_some_and(|rest| !rest.contains("_undo"))
            })
        })
        .collect()
}

fn diff(before: &[String], after: &[String]) -> String {
    let mut out = String::new();
    for l in before.iter().filter(|l| !after.contains(l)) {
        let _ = writeln!(out, "  - {l:?}");
    }
    for l in after.iter().filter(|l| !before.contains(l)) {
        let _ = writeln!(out, "  + {l:?}");
    }
    out
}

/// The victim table must still hold its row.
async fn victim_ok(client: &Client) -> Result<(), String> {
    let r = client
        .query("SELECT note FROM public.victim ORDER BY id", &[])
        .await
        .map_err(|e| format!("the victim table is gone or broken: {e}"))?;
    let notes: Vec<String> = r.iter().map(|r| r.get::<_, String>(0)).collect();
    if notes != ["still here"] {
        return Err(format!("the victim table was changed: {notes:?}"));
    }
    Ok(())
}

fn first_error(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    stderr
        .lines()
        .find(|l| l.contains("error"))
        .or_else(|| stderr.lines().next())
        .unwrap_or("")
        .chars()
        .take(300)
        .collect()
}

#[derive(Debug)]
enum Outcome {
    Passed,
    Refused(String),
    Failed(String),
}

/// A run that exits 2 must have changed nothing.
async fn refused(
    client: &Client,
    case: &Case,
    before: &[String],
    out: &Output,
    what: &str,
) -> Outcome {
    let after = snap(client, case).await;
    if after != before {
        return Outcome::Failed(format!(
            "{what}: exit 2 (refused) but the database changed:\n{}{}",
            diff(before, &after),
            show(out)
        ));
    }
    if let Err(e) = victim_ok(client).await {
        return Outcome::Failed(format!("{what}: exit 2: {e}"));
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("generated SQL does not compile") {
        // Not a refusal of the name: backfill's own SQL breaks on it (a quoting bug).
        return Outcome::Failed(format!(
            "{what}: exit 2, but because backfill's own generated SQL does not compile with these names:\n{}",
            show(out)
        ));
    }
    Outcome::Refused(format!("{what}: {}", first_error(out)))
}

/// A case's database: the victim, the table with its rows, and its snapshot before any run.
struct Db {
    db: TestDb,
    client: Client,
    before: Vec<String>,
}

async fn connect_and_setup(case: &Case) -> Result<Db, String> {
    let db = TestDb::new(&format!("hostile_{}", case.kind)).await;
    let client = db.connect().await;
    load_keywords(&client).await;
    client
        .batch_execute(&case.setup_sql())
        .await
        .map_err(|e| format!("TEST SETUP failed (a bug of the test, not of backfill): {e:?}"))?;
    let before = snap(&client, case).await;
    Ok(Db { db, client, before })
}

/// A forbidden plan name first (must be refused), then expand and abort: everything as before.
async fn abort_path(case: &Case, db: &Db) -> Outcome {
    let Db { db, client, before } = db;
    let bad = PlanFile::new(&case.plan_text(&case.bad_plan_name));
    let bad_arg = bad.arg();
    let out = match backfill(
        case,
        &["run", &bad_arg, "--release", "1.0.0", "--progress", "quiet"],
        &db.url,
    )
    .await
    {
        Ok(o) => o,
        Err(e) => {
            return Outcome::Failed(format!("run with plan name {:?}: {e}", case.bad_plan_name))
        }
    };
    if out.status.code() != Some(2) {
        return Outcome::Failed(format!(
            "plan name {:?} (forbidden by the format) was not refused with exit 2:\n{}",
            case.bad_plan_name,
            show(&out)
        ));
    }
    if let Outcome::Failed(f) = refused(
        client,
        case,
        before,
        &out,
        &format!("plan name {:?}", case.bad_plan_name),
    )
    .await
    {
        return Outcome::Failed(f);
    }
    let plan = PlanFile::new(&case.plan_text(&case.plan_name));
    let arg = plan.arg();
    let out = match backfill(
        case,
        &["run", &arg, "--release", "1.0.0", "--progress", "quiet"],
        &db.url,
    )
    .await
    {
        Ok(o) => o,
        Err(e) => return Outcome::Failed(format!("run --release 1.0.0: {e}")),
    };
    match out.status.code() {
        Some(0) => {}
        Some(2) => return refused(client, case, before, &out, "run --release 1.0.0").await,
        _ => {
            return Outcome::Failed(format!(
                "run --release 1.0.0 failed half way:\n{}\n--- database after it:\n{}",
                show(&out),
                diff(before, &snap(client, case).await)
            ))
        }
    }
    let out = match backfill(case, &["abort", &arg], &db.url).await {
        Ok(o) => o,
        Err(e) => return Outcome::Failed(format!("abort: {e}")),
    };
    if out.status.code() != Some(0) {
        return Outcome::Failed(format!(
            "abort after a successful expand:\n{}\n--- database after it:\n{}",
            show(&out),
            diff(before, &snap(client, case).await)
        ));
    }
    if let Err(e) = victim_ok(client).await {
        return Outcome::Failed(format!("after abort: {e}"));
    }
    let after = snap(client, case).await;
    if &after != before {
        return Outcome::Failed(format!(
            "abort did not restore the table:\n{}",
            diff(before, &after)
        ));
    }
    Outcome::Passed
}

/// Expand, writes through the trigger, contract, then the catalog and the rows.
async fn contract_path(case: &Case, db: &Db) -> Outcome {
    let Db { db, client, before } = db;
    let plan = PlanFile::new(&case.plan_text(&case.plan_name));
    let arg = plan.arg();
    let out = match backfill(
        case,
        &["run", &arg, "--release", "1.0.0", "--progress", "quiet"],
        &db.url,
    )
    .await
    {
        Ok(o) => o,
        Err(e) => return Outcome::Failed(format!("run --release 1.0.0: {e}")),
    };
    match out.status.code() {
        Some(0) => {}
        Some(2) => return refused(client, case, before, &out, "run --release 1.0.0").await,
        _ => {
            return Outcome::Failed(format!(
                "run --release 1.0.0 (expand, dual-write, backfill) failed half way:\n{}\n--- database after it:\n{}",
                show(&out),
                diff(before, &snap(client, case).await)
            ))
        }
    }
    if let Err(e) = victim_ok(client).await {
        return Outcome::Failed(format!("after run --release 1.0.0: {e}"));
    }
    for sql in case.write_sql() {
        if let Err(e) = client.batch_execute(&sql).await {
            return Outcome::Failed(format!(
                "a write through the dual-write trigger failed: {sql}\n  {e:?}"
            ));
        }
        if let Err(e) = victim_ok(client).await {
            return Outcome::Failed(format!("after the write {sql}: {e}"));
        }
    }
    let out = match backfill(
        case,
        &["run", &arg, "--release", "2.0.0", "--progress", "quiet"],
        &db.url,
    )
    .await
    {
        Ok(o) => o,
        Err(e) => return Outcome::Failed(format!("run --release 2.0.0: {e}")),
    };
    if out.status.code() != Some(0) {
        return Outcome::Failed(format!(
            "run --release 2.0.0 (contract) after a successful expand:\n{}",
            show(&out)
        ));
    }
    let mut problems = Vec::new();
    if let Err(e) = victim_ok(client).await {
        problems.push(e);
    }
    let table = case.table_sql();
    match catalog(client, &table, case.state_schema()).await {
        Err(e) => problems.push(format!("reading the catalog of {table}: {e}")),
        Ok(c) => {
            if c.columns != case.expected_columns() {
                problems.push(format!(
                    "columns (name, type, NOT NULL):\n  expected {:?}\n  found    {:?}",
                    case.expected_columns(),
                    c.columns
                ));
            }
            if c.constraints != case.expected_constraints() {
                problems.push(format!(
                    "constraints (name, definition, validated):\n  expected {:?}\n  found    {:?}",
                    case.expected_constraints(),
                    c.constraints
                ));
            }
            if c.indexes != case.expected_indexes() {
                problems.push(format!(
                    "indexes (name, definition, valid):\n  expected {:?}\n  found    {:?}",
                    case.expected_indexes(),
                    c.indexes
                ));
            }
            for (column, text) in &case.spec.comments {
                let found = client
                    .query_one(
                        "SELECT col_description(attrelid, attnum) FROM pg_attribute WHERE attrelid = $1::text::regclass AND attname = $2",
                        &[&table, column],
                    )
                    .await
                    .map(|r| r.get::<_, Option<String>>(0));
                if !matches!(&found, Ok(Some(t)) if t == text) {
                    problems.push(format!(
                        "comment of column {column:?}: expected {text:?}, found {found:?}"
                    ));
                }
            }
            if !c.triggers.is_empty() {
                problems.push(format!("triggers left on the table: {:?}", c.triggers));
            }
            if !c.leftovers.is_empty() {
                problems.push(format!(
                    "backfill's objects left after contract: {:?}",
                    c.leftovers
                ));
            }
        }
    }
    match table_rows(client, &table).await {
        Err(e) => problems.push(format!("reading the rows: {e}")),
        Ok(found) => {
            let expected = case.expected_rows();
            if found.len() != expected.len() {
                problems.push(format!(
                    "{} rows, expected {}:\n  expected {expected:?}\n  found    {found:?}",
                    found.len(),
                    expected.len()
                ));
            } else {
                for (e, f) in expected.iter().zip(&found) {
                    if e != f {
                        problems.push(format!("row:\n  expected {e}\n  found    {f}"));
                    }
                }
            }
        }
    }
    if problems.is_empty() {
        Outcome::Passed
    } else {
        Outcome::Failed(format!("after contract: {}", problems.join("\n")))
    }
}

struct Catalog {
    columns: Vec<(String, String, bool)>,
    constraints: Vec<(String, String, bool)>,
    indexes: Vec<(String, String, bool)>,
    triggers: Vec<String>,
    leftovers: Vec<String>,
}

async fn catalog(
    client: &Client,
    table: &str,
    state: &str,
) -> Result<Catalog, tokio_postgres::Error> {
    let triple =
        |r: &tokio_postgres::Row| -> (String, String, bool) { (r.get(0), r.get(1), r.get(2)) };
    let mut columns: Vec<_> = client
        .query(
            "SELECT attname::text, CASE WHEN (SELECT typtype FROM pg_type WHERE oid = atttypid) = 'e' THEN 'enum' ELSE format_type(atttypid, atttypmod) END, attnotnull FROM pg_attribute WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped",
            &[&table],
        )
        .await?
        .iter()
        .map(triple)
        .collect();
    columns.sort();
    let mut constraints: Vec<_> = client
        .query(
            "SELECT conname::text, pg_get_constraintdef(oid), convalidated FROM pg_constraint WHERE conrelid = $1::text::regclass",
            &[&table],
        )
        .await?
        .iter()
        .map(triple)
        .collect();
    constraints.sort();
    let mut indexes: Vec<_> = client
        .query(
            "SELECT c.relname::text, pg_get_indexdef(i.indexrelid), i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = $1::text::regclass",
            &[&table],
        )
        .await?
        .iter()
        .map(triple)
        .collect();
    indexes.sort();
    let triggers = client
        .query(
            "SELECT tgname::text FROM pg_trigger WHERE tgrelid = $1::text::regclass AND NOT tgisinternal ORDER BY 1",
            &[&table],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let leftovers = client
        .query(
            "SELECT 'function ' || n.nspname || '.' || p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND (p.proname LIKE 'bf\\_%' OR n.nspname <> $1)
             UNION ALL
             SELECT 'relation ' || n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND c.relname LIKE 'bf\\_%'
             UNION ALL
             SELECT 'constraint ' || conname FROM pg_constraint WHERE conname LIKE 'bf\\_%'
             ORDER BY 1",
            &[&state],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(Catalog {
        columns,
        constraints,
        indexes,
        triggers,
        leftovers,
    })
}

async fn table_rows(client: &Client, table: &str) -> Result<Vec<Value>, String> {
    let sql = format!("SELECT to_jsonb(fuzz_r.*)::text FROM {table} AS fuzz_r ORDER BY id");
    let r = client.query(&sql, &[]).await.map_err(|e| format!("{e}"))?;
    r.iter()
        .map(|row| {
            let text: String = row.get(0);
            serde_json::from_str(&text).map_err(|e| format!("{text}: {e}"))
        })
        .collect()
}

/// Runs one case: the abort path, then the contract path on the same database (abort must
/// have left it as it was; when it did not, on a fresh one). Each path runs in a task of its
/// own, so that a panic in a helper becomes a failure of the case instead of ending the kind.
async fn run_case(case: Case) -> (Case, Outcome, Outcome) {
    let case = std::sync::Arc::new(case);
    let c = case.clone();
    let first = tokio::spawn(async move {
        let db = match connect_and_setup(&c).await {
            Ok(db) => db,
            Err(e) => return (Outcome::Failed(e), None),
        };
        let outcome = abort_path(&c, &db).await;
        let reusable = matches!(outcome, Outcome::Passed);
        (outcome, reusable.then_some(db))
    })
    .await;
    let (abort, db) = match first {
        Ok(x) => x,
        Err(e) => (
            Outcome::Failed(format!("abort path panicked: {}", panic_message(e))),
            None,
        ),
    };
    let contract = match &abort {
        Outcome::Refused(why) => Outcome::Refused(why.clone()),
        _ => {
            let c = case.clone();
            let second = tokio::spawn(async move {
                let db = match db {
                    Some(db) => db,
                    None => match connect_and_setup(&c).await {
                        Ok(db) => db,
                        Err(e) => return Outcome::Failed(e),
                    },
                };
                contract_path(&c, &db).await
            })
            .await;
            match second {
                Ok(o) => o,
                Err(e) => Outcome::Failed(format!("contract path panicked: {}", panic_message(e))),
            }
        }
    };
    let case = std::sync::Arc::try_unwrap(case)
        .unwrap_or_else(|_| panic!("the case is still shared after its tasks ended"));
    (case, contract, abort)
}

fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(p) => p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "(no message)".to_string()),
        Err(e) => e.to_string(),
    }
}

/// All cases of one kind: the fixed names until each has been used once, then the random
/// cases. Prints every outcome; fails at the end with every failure.
async fn fuzz_kind(kind: &'static str) {
    let seed = env_seed();
    let random_cases = env_cases();
    let k = KINDS
        .iter()
        .position(|x| *x == kind)
        .unwrap_or_else(|| panic!("unknown kind {kind}"));
    let fixed = fixed_names();
    let bad_names = hostile_plan_names();
    let started = std::time::Instant::now();
    // The expected definitions are printed the way the server quotes names.
    load_keywords(&connect_url(&server().url("postgres")).await).await;
    let mut cases = Vec::new();
    let mut queue = fixed.clone();
    let mut i = 0;
    while !queue.is_empty() && i < fixed.len() {
        let mut g = Gen {
            rng: Rng::new(case_seed(seed, k, i)),
            queue: std::mem::take(&mut queue),
            all_fixed: fixed.clone(),
            used: HashSet::new(),
        };
        let case = build_case(
            kind,
            &mut g,
            format!("{kind} fixed case #{i}"),
            bad_names[(i + k) % bad_names.len()].clone(),
        );
        queue = g.queue;
        cases.push(case);
        i += 1;
    }
    for r in 0..random_cases {
        let mut rng = Rng::new(case_seed(seed, k, 1_000_000 + r));
        let bad = rng.pick(&bad_names).clone();
        let mut g = Gen {
            rng,
            queue: Vec::new(),
            all_fixed: fixed.clone(),
            used: HashSet::new(),
        };
        cases.push(build_case(
            kind,
            &mut g,
            format!("{kind} random case #{r}"),
            bad,
        ));
    }
    let total = cases.len();
    let mut failures = Vec::new();
    let mut report = String::new();
    // A few cases at a time: most of a case is waiting on processes and the server.
    let mut results = Vec::new();
    let mut set = tokio::task::JoinSet::new();
    for (i, case) in cases.into_iter().enumerate() {
        if set.len() >= CASES_AT_ONCE {
            if let Some(r) = set.join_next().await {
                results.push(r.unwrap_or_else(|e| panic!("a case task failed: {e}")));
            }
        }
        set.spawn(async move { (i, run_case(case).await) });
    }
    while let Some(r) = set.join_next().await {
        results.push(r.unwrap_or_else(|e| panic!("a case task failed: {e}")));
    }
    results.sort_by_key(|(i, _)| *i);
    for (_, (case, a, b)) in results {
        for (path, o) in [("contract", &a), ("abort", &b)] {
            match o {
                Outcome::Passed => {
                    let _ = writeln!(report, "  PASS    {} [{path}]", case.label);
                }
                Outcome::Refused(why) => {
                    let _ = writeln!(
                        report,
                        "  REFUSED {} [{path}] (exit 2, nothing changed): {why}",
                        case.label
                    );
                }
                Outcome::Failed(why) => {
                    let _ = writeln!(report, "  FAIL    {} [{path}]", case.label);
                    failures.push(format!(
                        "=== FAIL {} [{path}]\n{why}\n{}",
                        case.label,
                        case.describe()
                    ));
                }
            }
        }
    }
    println!(
        "hostile_names {kind}: seed {seed:#x}, {total} cases ({random_cases} random), {:.1}s\n{report}",
        started.elapsed().as_secs_f64()
    );
    if !failures.is_empty() {
        for f in &failures {
            println!("{f}");
        }
        panic!(
            "hostile_names {kind}: {} of {} paths failed; see above. Again: BACKFILL_FUZZ_SEED={seed:#x} BACKFILL_FUZZ_CASES={random_cases} cargo test --test tests hostile_names::{kind} -- --nocapture",
            failures.len(),
            total * 2
        );
    }
}

#[tokio::test]
async fn add_column() {
    fuzz_kind("add_column").await;
}

#[tokio::test]
async fn rename_column() {
    fuzz_kind("rename_column").await;
}

#[tokio::test]
async fn change_type() {
    fuzz_kind("change_type").await;
}

#[tokio::test]
async fn split_column() {
    fuzz_kind("split_column").await;
}

#[tokio::test]
async fn merge_columns() {
    fuzz_kind("merge_columns").await;
}

#[tokio::test]
async fn set_not_null() {
    fuzz_kind("set_not_null").await;
}

#[tokio::test]
async fn add_check() {
    fuzz_kind("add_check").await;
}

#[tokio::test]
async fn add_foreign_key() {
    fuzz_kind("add_foreign_key").await;
}

#[tokio::test]
async fn add_unique() {
    fuzz_kind("add_unique").await;
}

#[tokio::test]
async fn create_index() {
    fuzz_kind("create_index").await;
}

#[tokio::test]
async fn drop_column() {
    fuzz_kind("drop_column").await;
}

#[tokio::test]
async fn update_rows() {
    fuzz_kind("update_rows").await;
}

#[tokio::test]
async fn drop_constraint() {
    fuzz_kind("drop_constraint").await;
}

#[tokio::test]
async fn rename_constraint() {
    fuzz_kind("rename_constraint").await;
}

#[tokio::test]
async fn drop_not_null() {
    fuzz_kind("drop_not_null").await;
}

#[tokio::test]
async fn set_default() {
    fuzz_kind("set_default").await;
}

#[tokio::test]
async fn set_comment() {
    fuzz_kind("set_comment").await;
}

/// The generator's own rules: every name fits PostgreSQL (no NUL, at most 63 bytes), table and
/// schema names have no dot, and the TOML escaping round-trips.
#[test]
fn generator_rules() {
    let fixed = fixed_names();
    let mut rng = Rng::new(env_seed());
    for _ in 0..2000 {
        let n = random_name(&mut rng, &fixed);
        assert!(n.len() <= 63 && !n.contains('\0'), "{n:?}");
    }
    for n in fixed.iter().chain(hostile_plan_names().iter()) {
        let doc = format!("k = {}\n", toml_str(n));
        let parsed: BTreeMap<String, String> =
            toml::from_str(&doc).unwrap_or_else(|e| panic!("{doc}: {e}"));
        assert_eq!(parsed.get("k"), Some(n));
    }
}

#[tokio::test]
async fn drop_index() {
    fuzz_kind("drop_index").await;
}

#[tokio::test]
async fn create_enum() {
    fuzz_kind("create_enum").await;
}

#[tokio::test]
async fn compose() {
    fuzz_kind("compose").await;
}
