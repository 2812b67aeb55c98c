//! Golden files of what PostgreSQL runs and what users read (STYLE.md habits 12 and 16), checked
//! without a database:
//!
//! - `tests/golden/<plan stem>.sql`: the schedule of every example plan in `plans/` (phases,
//!   steps, locks, every statement, the rollback, the backfill's statements and the engine's
//!   chunk statements), planned by the pure planner from the committed catalog fixtures in
//!   `tests/golden/catalog/<schema>.<table>.json`;
//! - `tests/golden/broken/<stem>.txt`: the error `Plan::load` renders for every plan of the
//!   broken corpus (`tests/broken/`) whose header says `needs-db: false`.
//!
//! A change to the generated SQL shows up here as a diff, to be reviewed in the commit that makes
//! it. To accept the new output, bless it and review the changed files:
//!
//! ```text
//! BACKFILL_BLESS=1 cargo test --test tests golden
//! ```
//!
//! The catalog fixtures come from a real database built from `plans/schema.sql` (run again when
//! that schema or `db::catalog` changes):
//!
//! ```text
//! cargo test --test tests golden::write_catalog_fixtures -- --ignored
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use backfill::db::catalog::TableInfo;
use backfill::engine::keyset::{chunk_sql, Keyset};
use backfill::plan::Plan;
use backfill::planner::{self, PlannerOptions, Schedule, Step, StepMode};
use backfill::sql::{Ident, QualifiedName};

/// Set to rewrite the expected files instead of comparing with them.
const BLESS: &str = "BACKFILL_BLESS";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn golden_dir() -> PathBuf {
    root().join("tests/golden")
}

/// The files of `dir` ending in `.ext`, sorted by name.
fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    out.sort();
    out
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A path relative to the crate's root, so that golden files do not depend on the checkout.
fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The fixture file of a table's catalog.
fn catalog_file(table: &QualifiedName) -> PathBuf {
    golden_dir().join("catalog").join(format!(
        "{}.{}.json",
        table.schema.as_str(),
        table.name.as_str()
    ))
}

/// The committed catalog of a table, as `db::catalog::table_info` read it.
fn catalog(table: &QualifiedName) -> TableInfo {
    let file = catalog_file(table);
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; write the catalog fixtures with `cargo test --test tests golden::write_catalog_fixtures -- --ignored`",
            file.display()
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

fn example_plans() -> Vec<PathBuf> {
    files(&root().join("plans"), "toml")
}

// ---------------------------------------------------------------------------------------------
// Rendering.

/// Descriptions and names on one comment line, whatever they contain.
fn one_line(text: &str) -> String {
    text.replace('\r', "\\r").replace('\n', "\\n")
}

fn mode(mode: &StepMode) -> String {
    match mode {
        StepMode::Transaction => "in one transaction".to_string(),
        StepMode::ConcurrentIndex { index } => {
            format!("outside a transaction, concurrent build of index {index}")
        }
        StepMode::NoTransaction => "outside a transaction".to_string(),
        StepMode::Backfill => "backfill, run by the engine in chunks".to_string(),
    }
}

fn render_steps(out: &mut String, steps: &[Step]) {
    if steps.is_empty() {
        out.push_str("-- (no steps)\n\n");
    }
    for (i, step) in steps.iter().enumerate() {
        let _ = writeln!(out, "-- step {}: {}", i + 1, one_line(&step.description));
        let _ = writeln!(out, "-- mode: {}", mode(&step.mode));
        for s in &step.statements {
            let _ = writeln!(out, "-- lock: {}\n{};", s.lock, s.sql);
        }
        out.push('\n');
    }
}

/// The schedule as text: everything PostgreSQL would run for the plan, in order. `created`:
/// the plan creates its table, planned from no catalog.
fn render(plan_file: &Path, schedule: &Schedule, table: &TableInfo, created: bool) -> String {
    let options = PlannerOptions::default();
    let mut out = String::new();
    let against = if created {
        "no catalog (the plan creates its table)".to_string()
    } else {
        format!(
            "tests/golden/catalog/{}",
            catalog_file(&table.name)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        )
    };
    let _ = writeln!(
        out,
        "-- Golden file: the schedule of {} against {against}.\n-- Bless a reviewed change with BACKFILL_BLESS=1 cargo test --test tests golden\n",
        relative(plan_file),
    );
    let _ = writeln!(
        out,
        "-- plan {} on {} (row estimate {})\n",
        one_line(&schedule.plan),
        schedule.table,
        schedule.row_estimate
    );
    for phase in &schedule.phases {
        let due = match &phase.due {
            Some(r) => format!("due from release {r}"),
            None => "no release gate".to_string(),
        };
        let _ = writeln!(out, "-- ==== phase {} ({due})\n", phase.phase);
        render_steps(&mut out, &phase.steps);
    }
    out.push_str("-- ==== rollback\n\n");
    render_steps(&mut out, &schedule.rollback);
    match &schedule.backfill {
        None => out.push_str("-- ==== backfill spec: none (the plan moves no data)\n"),
        Some(spec) => {
            let list = |v: &[Ident]| {
                v.iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = writeln!(out, "-- ==== backfill spec\n");
            let _ = writeln!(out, "-- table: {}", spec.table);
            let _ = writeln!(out, "-- key: {}", list(&spec.key));
            let _ = writeln!(out, "-- targets: {}", list(&spec.targets));
            for c in &spec.in_place {
                let _ = writeln!(
                    out,
                    "-- in place: {} (undo columns {}, {})",
                    c.column, c.before, c.after
                );
            }
            if let Some(u) = &spec.undo {
                let _ = writeln!(
                    out,
                    "-- undo table: {} (rows of type {})",
                    u.table, u.row_type
                );
            }
            let _ = writeln!(out, "-- bypass: {}\n", one_line(&spec.bypass));
            let _ = writeln!(out, "-- whole-table update\n{};\n", spec.update_sql(None));
            let _ = writeln!(
                out,
                "-- rows out of sync (read-only)\n{};\n",
                spec.count_out_of_sync_sql()
            );
            let _ = writeln!(
                out,
                "-- the trigger's bypass, per transaction\n{};\n",
                spec.bypass_sql(true)
            );
            let keyset = Keyset::of(table).unwrap_or_else(|e| panic!("{e}"));
            let chunk = chunk_sql(spec, &keyset, &Ident::new(options.state_schema.as_str()));
            for (what, sql) in [
                ("a segment's first chunk", &chunk.first),
                ("every later chunk", &chunk.next),
                (
                    "the keys of a first chunk (naming a bad row)",
                    &chunk.keys_first,
                ),
                (
                    "the keys of a later chunk (naming a bad row)",
                    &chunk.keys_next,
                ),
            ] {
                let _ = writeln!(out, "-- engine: {what}\n{sql};\n");
            }
        }
    }
    // One newline at the end of the file.
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Comparing and blessing.

/// Line diff (longest common subsequence) of expected and actual, `-`/`+` lines with a few
/// lines of context, like `diff -u` without the hunk headers.
fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    // lcs[i][j]: length of the LCS of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            // Removed lines before added ones, as `diff` shows them.
            ops.push(('-', a[i]));
            i += 1;
        } else {
            ops.push(('+', b[j]));
            j += 1;
        }
    }
    const CONTEXT: usize = 3;
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k].0 != ' ').collect();
    let mut out = String::new();
    let mut last_shown: Option<usize> = None;
    for (k, (tag, line)) in ops.iter().enumerate() {
        let near = changed.iter().any(|&c| c.abs_diff(k) <= CONTEXT);
        if !near {
            continue;
        }
        if last_shown.is_some_and(|l| l + 1 < k) || (last_shown.is_none() && k > 0) {
            out.push_str("  ...\n");
        }
        let _ = writeln!(out, "{tag} {line}");
        last_shown = Some(k);
    }
    if expected.ends_with('\n') != actual.ends_with('\n') {
        out.push_str("  (the files differ in their final newline)\n");
    }
    out
}

fn blessing() -> bool {
    std::env::var_os(BLESS).is_some_and(|v| v == "1")
}

/// Compares `actual` with the golden file at `path`, or writes it when blessing. Returns a
/// readable description of the mismatch.
fn check(path: &Path, actual: &str) -> Option<String> {
    if blessing() {
        let current = std::fs::read_to_string(path).ok();
        if current.as_deref() != Some(actual) {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            }
            std::fs::write(path, actual).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            eprintln!("blessed {}", relative(path));
        }
        return None;
    }
    match std::fs::read_to_string(path) {
        Err(e) => Some(format!(
            "{}: {e} (a new golden file: bless it)",
            relative(path)
        )),
        Ok(expected) if expected == actual => None,
        Ok(expected) => Some(format!(
            "{} differs (- expected, + actual):\n{}",
            relative(path),
            diff(&expected, actual)
        )),
    }
}

/// Fails with every mismatch at once and the way to bless them.
fn assert_golden(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{}\n\n{} golden file(s) differ. If the change is intended, rewrite them with\n  {BLESS}=1 cargo test --test tests golden\nand review the diff of tests/golden/ in the same commit.",
        failures.join("\n\n"),
        failures.len()
    );
}

/// Golden files that no longer belong to any input (a plan renamed or removed).
/// Deleted instead when blessing.
fn stale(dir: &Path, ext: &str, expected: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for p in files(dir, ext) {
        if expected.contains(&stem(&p)) {
            continue;
        }
        if blessing() {
            std::fs::remove_file(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            eprintln!("deleted {}", relative(&p));
        } else {
            out.push(format!(
                "{}: no longer produced by any input (bless to delete it)",
                relative(&p)
            ));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[test]
fn golden_schedules_of_the_example_plans() {
    let plans = example_plans();
    assert!(plans.len() >= 10, "only {} example plans", plans.len());
    let mut failures = Vec::new();
    let mut stems = Vec::new();
    for file in &plans {
        let plan = Plan::load(file).unwrap_or_else(|e| panic!("{e}"));
        let created = plan.creates_table();
        let table = if created {
            TableInfo::absent(plan.table.clone())
        } else {
            catalog(&plan.table)
        };
        // The same checks `validate` runs before planning, minus those that need a database.
        let problems = planner::check_catalog(&plan, &table, false);
        assert!(
            problems.0.is_empty(),
            "{}: {:?}",
            relative(file),
            problems.0
        );
        let schedule = planner::build(&plan, &table, &PlannerOptions::default());
        let text = render(file, &schedule, &table, created);
        let name = stem(file);
        if let Some(f) = check(&golden_dir().join(format!("{name}.sql")), &text) {
            failures.push(f);
        }
        stems.push(name);
    }
    failures.extend(stale(&golden_dir(), "sql", &stems));
    assert_golden(failures);
}

/// The value of a `# key: value` header line of a broken plan.
fn header(text: &str, key: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix('#'))
        .find_map(|l| l.trim().strip_prefix(key).map(|v| v.trim().to_string()))
}

#[test]
fn golden_errors_of_the_broken_plans() {
    let mut failures = Vec::new();
    let mut stems = Vec::new();
    for file in files(&root().join("tests/broken"), "toml") {
        let text = std::fs::read_to_string(&file).expect("read a broken plan");
        if header(&text, "needs-db:").as_deref() != Some("false") {
            continue;
        }
        let rendered = match Plan::load(&file) {
            Ok(_) => {
                failures.push(format!(
                    "{}: says needs-db: false, but Plan::load accepts it",
                    relative(&file)
                ));
                continue;
            }
            // The file's path as the crate's root sees it, so the text is the same everywhere.
            Err(e) => e.to_string().replace(&format!("{}/", root().display()), ""),
        };
        let name = stem(&file);
        let golden = golden_dir().join("broken").join(format!("{name}.txt"));
        if let Some(f) = check(&golden, &format!("{rendered}\n")) {
            failures.push(f);
        }
        stems.push(name);
    }
    assert!(
        stems.len() >= 20,
        "only {} offline broken plans",
        stems.len()
    );
    failures.extend(stale(&golden_dir().join("broken"), "txt", &stems));
    assert_golden(failures);
}

#[test]
fn golden_diff_is_readable() {
    let d = diff("a\nb\nc\n", "a\nB\nc\n");
    assert_eq!(d, "  a\n- b\n+ B\n  c\n");
    assert_eq!(diff("x\n", "x\n"), "");
}

/// Writes the catalog fixtures from a database built from `plans/schema.sql`: one JSON file per
/// table the example plans use. Needs PostgreSQL, hence ignored; run it when the example schema
/// or the catalog reader changes, and review the fixtures with the golden files they change.
#[tokio::test]
#[ignore = "needs PostgreSQL; writes tests/golden/catalog/"]
async fn write_catalog_fixtures() {
    use crate::plan_examples::EXAMPLE_SCHEMA;
    use crate::support::TestDb;

    let db = TestDb::new("golden_fixtures").await;
    let client = db.connect().await;
    client
        .batch_execute(EXAMPLE_SCHEMA)
        .await
        .expect("plans/schema.sql");
    let mut tables: Vec<QualifiedName> = Vec::new();
    for file in example_plans() {
        let plan = Plan::load(&file).unwrap_or_else(|e| panic!("{e}"));
        // A table a plan creates is not in the schema; its plan is planned from no catalog.
        if !plan.creates_table() && !tables.contains(&plan.table) {
            tables.push(plan.table);
        }
    }
    tables.sort_by_key(|t| (t.schema.as_str().to_string(), t.name.as_str().to_string()));
    let dir = golden_dir().join("catalog");
    std::fs::create_dir_all(&dir).expect("create tests/golden/catalog");
    for table in &tables {
        let info = backfill::db::catalog::table_info(&client, table)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("{table} is not in plans/schema.sql"));
        let json = serde_json::to_string_pretty(&info).expect("serialize the catalog");
        let file = catalog_file(table);
        std::fs::write(&file, format!("{json}\n"))
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        eprintln!("wrote {}", relative(&file));
    }
}
