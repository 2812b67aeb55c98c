//! A seeded, randomized transition tester: for each operation kind (rename_column,
//! change_type, split_column, merge_columns, add_column with `up`, drop_column with `down`,
//! update_rows, set_not_null with `fill`, add_check with `fill`), for a plan whose changes of
//! one column the tool composes into one change_type (`compose`: rename_column, change_type,
//! set_not_null with `fill` and set_default of one column), for a plan of catalog-only kinds
//! (`metadata`: drop_not_null, set_default, set_comment, create_index with column options,
//! `include` and `where`, drop_index, drop_constraint, rename_constraint, set_replica_identity,
//! sql), for rename_table (the old release writes through the old name, a view, the new one
//! through the new name), for add_column with `unique`, `check` and `references`
//! (`add_column_constraints`), and for two plans in flight on one table (a rename, then a
//! column derived from the renamed one, both expanded before either contracts), it takes a
//! table `t` with bystanders (a NOT NULL column with a default and a check, a column under a
//! unique index, one with a default, an index and a comment), seeds 50–150 rows full of NULLs,
//! empty strings, spaces and quotes, writes the plan, and runs the releases through the real
//! binary (`backfill run DIR --release 1.4.0`, then `1.5.0`) while an application writes
//! through three connections, its statements interleaved: the old release (against the old
//! schema: INSERTs with and without each column, UPDATEs of any subset of columns to values,
//! NULLs or themselves, of one row or of `id % k = r`, DELETEs) from the start, the new
//! release (writing the new columns instead of the old ones, values the new schema accepts and
//! the old one may not) once expand is done. Statements go one at a time, round the
//! connections, so the model knows their order. Each `run` that backfills is held at the start
//! of its backfill (by the advisory lock `backfill plan <name>` the backfill takes before it
//! splits the table; a note says so when it was never held) while both releases write rows
//! that are not backfilled yet; then the backfill goes on, in small rate-limited chunks, while
//! they keep writing. There, writes whose outcome depends on whether the backfill has reached
//! the row yet (a new-release write of some new columns only, or of values all NULL or equal
//! to what the backfill writes) are not generated; every other write ends the same either way.
//!
//! It checks, with the seed, the kind and the statements in every message:
//! - no statement fails that its own release's schema accepts (each failure is listed), and
//!   every UPDATE and DELETE reaches the rows the model expects;
//! - during the transition, after each `run` and each group of statements, every row, read
//!   through each name of the table (its old name too, while that is a view), equals a
//!   model computed in Rust (`transition/model.rs`, which spells out the semantics: the
//!   dual-write trigger's applied to each statement, the backfill's to each row), every row
//!   satisfies the plan's per-row predicate (old and new representations agree), and
//!   `backfill verify` passes;
//! - after contract, the table equals the model row by row, and the catalog is the expected
//!   one: the columns with their types, NOT NULL and defaults, the constraints, indexes,
//!   comments, replica identity and extended statistics, the tables and views of the schema,
//!   and nothing left behind (trigger, `bf_` function, table or constraint).
//!
//! A failing case is shrunk: replayed on fresh databases with seeded rows and statements
//! removed, keeping every removal after which the same failure still shows, for a bounded time;
//! the shortest script found is printed as SQL with the seed to run it again.
//!
//! Environment: `BACKFILL_TRANSITION_SEED` (decimal or `0x` hex; a fixed seed by default, so
//! CI is deterministic), `BACKFILL_TRANSITION_CASES` (cases per kind, 2 by default; more cases
//! run more seeds), `BACKFILL_TRANSITION_SHRINK_SECS` (time to shrink one failing case, 45 by
//! default; 0 prints the whole script instead).

mod check;
mod exec;
mod gen;
mod kinds;
mod model;
mod shrink;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use exec::{run_case, Mode, Outcome};
use gen::{Gen, Rng};
use kinds::Kind;

/// The seed when `BACKFILL_TRANSITION_SEED` is not set.
const DEFAULT_SEED: u64 = 0x7a5e_2026_0b1f;
/// Cases per kind when `BACKFILL_TRANSITION_CASES` is not set.
const DEFAULT_CASES: usize = 2;
/// Seconds to shrink a failing case when `BACKFILL_TRANSITION_SHRINK_SECS` is not set.
const DEFAULT_SHRINK_SECS: u64 = 45;

/// The cases, in the order their seeds are derived.
const KINDS: [&str; 14] = [
    "rename_column",
    "change_type",
    "split_column",
    "merge_columns",
    "add_column",
    "drop_column",
    "update_rows",
    "set_not_null",
    "add_check",
    "two_plans",
    "compose",
    "metadata",
    "rename_table",
    "add_column_constraints",
];

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(s) => {
            let s = s.trim();
            let parsed = match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            };
            parsed.unwrap_or_else(|e| panic!("{name}={s}: {e}"))
        }
        Err(_) => default,
    }
}

/// The seed of one case: the run's seed (hashed, so that nearby seeds give unrelated cases),
/// the kind and the case's number.
fn case_seed(seed: u64, kind: usize, case: usize) -> u64 {
    let base = Rng::new(seed).next();
    Rng::new(base ^ ((kind as u64) << 40) ^ case as u64).next()
}

/// The report of a failed case, its first failure shrunk.
async fn report(kind: &Kind, label: &str, outcome: &Outcome, budget: Duration) -> String {
    let mut r = format!("=== FAIL {label}: {} failures\n", outcome.failures.len());
    for f in &outcome.failures {
        let _ = writeln!(r, "  [{} at {}] {}", f.sig.what, f.sig.at, f.detail);
    }
    let first = &outcome.failures[0];
    let statements: usize = outcome.script.groups.iter().map(Vec::len).sum();
    if budget.is_zero() {
        let _ = writeln!(
            r,
            "--- the whole script ({statements} statements):\n{}",
            shrink::render(kind, &outcome.script)
        );
        return r;
    }
    let s = shrink::shrink(kind, &outcome.script, first, budget).await;
    let kept: usize = s.script.groups.iter().map(Vec::len).sum();
    let _ = writeln!(
        r,
        "--- shortest script found that fails again with [{} at {}{}]: {kept} of {statements} statements, {} of {} seeded rows ({} replays, {:.0}s{}):\n{}",
        first.sig.what,
        first.sig.at,
        if first.sig.code.is_empty() { String::new() } else { format!(", SQLSTATE {}", first.sig.code) },
        s.script.rows.len(),
        outcome.script.rows.len(),
        s.replays,
        s.elapsed.as_secs_f64(),
        if s.reproduced { "" } else { "; no replay reproduced it: timing-dependent? this is the whole script" },
        shrink::render(kind, &s.script)
    );
    r
}

/// Runs a kind's cases; fails at the end with every failed case.
async fn check_kind(name: &str) {
    let seed = env_number("BACKFILL_TRANSITION_SEED", DEFAULT_SEED);
    let cases = env_number("BACKFILL_TRANSITION_CASES", DEFAULT_CASES as u64) as usize;
    let budget = Duration::from_secs(env_number(
        "BACKFILL_TRANSITION_SHRINK_SECS",
        DEFAULT_SHRINK_SECS,
    ));
    let k = KINDS
        .iter()
        .position(|x| *x == name)
        .unwrap_or_else(|| panic!("unknown kind {name}"));
    let kind = Kind::named(name);
    let mut failed = Vec::new();
    for case in 0..cases {
        let s = case_seed(seed, k, case);
        let label = format!("transition {name} case #{case} (case seed {s:#x})");
        let started = Instant::now();
        let outcome = run_case(&kind, Mode::Generate(Gen::new(s))).await;
        let statements: usize = outcome.script.groups.iter().map(Vec::len).sum();
        for n in &outcome.notes {
            println!("note: {label}: {n}");
        }
        if outcome.failures.is_empty() {
            let sizes: Vec<usize> = outcome.script.groups.iter().map(Vec::len).collect();
            println!(
                "PASS {label}: {} seeded rows, {statements} statements (by step: {sizes:?}), {:.1}s",
                outcome.script.rows.len(),
                started.elapsed().as_secs_f64()
            );
            continue;
        }
        let r = report(&kind, &label, &outcome, budget).await;
        println!("{r}");
        failed.push(label);
    }
    assert!(
        failed.is_empty(),
        "{} of {cases} cases failed (see above): {failed:?}\nAgain: BACKFILL_TRANSITION_SEED={seed:#x} BACKFILL_TRANSITION_CASES={cases} cargo test --test tests transition::{name} -- --nocapture",
        failed.len()
    );
}

#[tokio::test]
async fn rename_column() {
    check_kind("rename_column").await;
}

#[tokio::test]
async fn change_type() {
    check_kind("change_type").await;
}

#[tokio::test]
async fn split_column() {
    check_kind("split_column").await;
}

#[tokio::test]
async fn merge_columns() {
    check_kind("merge_columns").await;
}

#[tokio::test]
async fn add_column() {
    check_kind("add_column").await;
}

#[tokio::test]
async fn drop_column() {
    check_kind("drop_column").await;
}

#[tokio::test]
async fn update_rows() {
    check_kind("update_rows").await;
}

#[tokio::test]
async fn set_not_null() {
    check_kind("set_not_null").await;
}

#[tokio::test]
async fn add_check() {
    check_kind("add_check").await;
}

/// A rename and a column derived from the renamed one, both in flight.
#[tokio::test]
async fn two_plans() {
    check_kind("two_plans").await;
}

/// A rename, a type change, NOT NULL and a default of one column, composed into one change.
#[tokio::test]
async fn compose() {
    check_kind("compose").await;
}

/// Catalog-only kinds, create_index, drop_index, set_replica_identity and sql in one plan.
#[tokio::test]
async fn metadata() {
    check_kind("metadata").await;
}

/// Both names of the table work from expand to contract.
#[tokio::test]
async fn rename_table() {
    check_kind("rename_table").await;
}

/// add_column with unique, check and references.
#[tokio::test]
async fn add_column_constraints() {
    check_kind("add_column_constraints").await;
}

/// The model's SQL functions agree with PostgreSQL's on the values the generator draws.
#[tokio::test]
async fn model_functions_match_postgres() {
    model_functions().await;
}

async fn model_functions() {
    use model::{concat_ws, split_part, trim, Val};
    let db = crate::support::TestDb::new("transition_model_functions").await;
    let client = db.connect().await;
    let mut g = Gen::new(env_number("BACKFILL_TRANSITION_SEED", DEFAULT_SEED));
    for _ in 0..200 {
        let a = g.value(gen::Vals::Name);
        let b = if g.rng.chance(1, 4) {
            Val::Null
        } else {
            g.value(gen::Vals::Word)
        };
        let sql = format!(
            "SELECT split_part({a}, ' ', 1), split_part({a}, ' ', 2), concat_ws(' ', {a}, {b}::text), trim({a})",
            a = a.literal(),
            b = b.literal()
        );
        let row = client
            .query_one(&sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let want = [
            split_part(&a, 1),
            split_part(&a, 2),
            concat_ws(&[&a, &b]),
            trim(&a),
        ];
        for (i, w) in want.iter().enumerate() {
            assert_eq!(
                row.get::<_, Option<String>>(i),
                w.as_text(),
                "{sql} column {i}"
            );
        }
    }
}
