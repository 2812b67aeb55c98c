//! `sql`: one unchecked statement at expand (undone by `down`) or at contract.

use super::*;

pub(super) const SQL: Scenario = Scenario {
    name: "sql",
    setup: PEOPLE,
    plan: r#"
table = "t"
[[operations]]
kind = "sql"
phase = "expand"
up = "CREATE STATISTICS t_age_score (dependencies) ON age, score FROM t"
down = "DROP STATISTICS IF EXISTS t_age_score"
[[operations]]
kind = "sql"
phase = "contract"
up = """
COMMENT ON TABLE t IS 'contracted; -- not a comment $$ nor a quote
second line'"""
"#,
    old_writes: "",
    new_writes: "",
    transition: (
        "SELECT stxname::text FROM pg_statistic_ext WHERE stxrelid = 't'::regclass",
        &["t_age_score"],
    ),
    result: (
        "SELECT obj_description('t'::regclass, 'pg_class')",
        &["contracted; -- not a comment $$ nor a quote\nsecond line"],
    ),
};

#[tokio::test]
async fn sql_contract() {
    contract_path(&SQL).await;
}

#[tokio::test]
async fn sql_runner() {
    runner_path(&SQL).await;
}

/// Abort runs `down`; `plan` shows the statement as unchecked and warns; more than one
/// statement, a missing `down` at expand and a `down` at contract are refused at validate.
#[tokio::test]
async fn sql_abort_and_mistakes() {
    let db = TestDb::new("sql_abort").await;
    let client = db.connect().await;
    client.batch_execute(PEOPLE).await.expect("setup");
    let (dir, plan) = plan_file(&SQL, "_abort");
    let shown = backfill_ok(&["plan", &plan], Some(&db.url));
    assert!(
        shown.contains("unchecked SQL: CREATE STATISTICS"),
        "{shown}"
    );
    assert!(
        shown.contains("runs SQL that backfill does not check"),
        "{shown}"
    );
    backfill_ok(
        &["run", &plan, "--release", "1.4.0", "--progress", "quiet"],
        Some(&db.url),
    );
    let (sql, expected) = SQL.transition;
    assert_eq!(rows(&client, sql).await, expected);
    backfill_ok(&["abort", &plan], Some(&db.url));
    assert!(rows(&client, sql).await.is_empty());
    let _ = std::fs::remove_dir_all(dir);

    let plans = crate::support::Plans::new("sql_mistakes");
    for (file, op, expected) in [
        (
            "two.toml",
            "up = \"CREATE STATISTICS s1 ON age, score FROM t; DROP TABLE t\"\ndown = \"DROP STATISTICS s1\"",
            "operations[0].up: holds 2 statements",
        ),
        (
            "nodown.toml",
            "up = \"CREATE STATISTICS s1 ON age, score FROM t\"",
            "operations[0].down: is required with phase = \"expand\"",
        ),
        (
            "contractdown.toml",
            "phase = \"contract\"\nup = \"DROP TABLE t\"\ndown = \"SELECT 1\"",
            "operations[0].down: a contract cannot be undone",
        ),
        (
            "open.toml",
            "up = \"COMMENT ON TABLE t IS 'open\"\ndown = \"SELECT 1\"",
            "operations[0].up: a quote, dollar quote or comment is not closed",
        ),
    ] {
        let path = plans.write(
            file,
            &format!("table = \"t\"\n[[operations]]\nkind = \"sql\"\n{op}\n"),
        );
        let out = crate::support::backfill_cmd(&["run", &path], Some(&db.url));
        let shown = crate::support::show(&out);
        assert_eq!(out.status.code(), Some(2), "{file}: {shown}");
        assert!(shown.contains(expected), "{file}: {expected:?} in {shown}");
    }
    assert_eq!(
        crate::support::count(&client, "SELECT count(*) FROM t").await,
        4,
        "nothing changed"
    );
}
