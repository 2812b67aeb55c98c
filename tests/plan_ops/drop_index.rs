//! `drop_index`: nothing at expand (the old release may still use the index), `DROP INDEX
//! CONCURRENTLY` at contract; refused at validate for a missing index or one that implements a
//! constraint.

use super::*;

const INDEXED: &str = "CREATE TABLE t (id bigserial PRIMARY KEY, email text UNIQUE, age int);
CREATE INDEX t_age_idx ON t (age);
INSERT INTO t (email, age) SELECT 'u' || g || '@example.com', g FROM generate_series(1, 30) g;";

pub(super) const DROP_INDEX: Scenario = Scenario {
    name: "drop_index",
    setup: INDEXED,
    plan: r#"
table = "t"
[[operations]]
kind = "drop_index"
name = "t_age_idx"
"#,
    old_writes:
        "INSERT INTO t (email, age) VALUES ('old' || clock_timestamp() || '@example.com', 99);",
    new_writes: "UPDATE t SET age = age + 1 WHERE id = 1;",
    transition: (
        "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = 't'::regclass ORDER BY 1",
        &["t_age_idx", "t_email_key", "t_pkey"],
    ),
    result: (
        "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = 't'::regclass ORDER BY 1",
        &["t_email_key", "t_pkey"],
    ),
};

#[tokio::test]
async fn drop_index_contract() {
    contract_path(&DROP_INDEX).await;
}

#[tokio::test]
async fn drop_index_runner() {
    runner_path(&DROP_INDEX).await;
}

/// Before contract nothing changed, so abort leaves the index where it is; the SQL the plan
/// shows and exports drops it outside a transaction.
#[tokio::test]
async fn drop_index_abort_and_sql() {
    let db = TestDb::new("drop_index_abort").await;
    let client = db.connect().await;
    client.batch_execute(INDEXED).await.expect("setup");
    let (dir, plan) = plan_file(&DROP_INDEX, "_abort");
    backfill_ok(
        &["run", &plan, "--release", "1.4.0", "--progress", "quiet"],
        Some(&db.url),
    );
    backfill_ok(&["abort", &plan], Some(&db.url));
    let (sql, expected) = DROP_INDEX.transition;
    assert_eq!(rows(&client, sql).await, expected);
    let shown = backfill_ok(&["plan", &plan, "--sql"], Some(&db.url));
    assert!(
        shown.contains("DROP INDEX CONCURRENTLY IF EXISTS \"public\".\"t_age_idx\""),
        "{shown}"
    );
    let out = dir.join("sql");
    backfill_ok(
        &[
            "export",
            &plan,
            "--format",
            "sql",
            "--out",
            &out.display().to_string(),
        ],
        Some(&db.url),
    );
    let contract =
        std::fs::read_to_string(out.join("drop_index.contract.sql")).expect("contract.sql");
    let at = contract
        .find("DROP INDEX CONCURRENTLY IF EXISTS \"public\".\"t_age_idx\"")
        .unwrap_or_else(|| panic!("{contract}"));
    // Not inside a BEGIN ... COMMIT block.
    let before = &contract[..at];
    assert!(
        before.matches("BEGIN;").count() == before.matches("COMMIT;").count(),
        "{contract}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn drop_index_mistakes_are_refused() {
    let db = TestDb::new("drop_index_mistakes").await;
    let client = db.connect().await;
    client.batch_execute(INDEXED).await.expect("setup");
    let before = snapshot(&client, "t", "id").await;
    let plans = crate::support::Plans::new("drop_index_mistakes");
    for (file, name, expected) in [
        (
            "missing.toml",
            "t_nope_idx",
            "has no index named \"t_nope_idx\" (its indexes: \"t_age_idx\", \"t_email_key\", \"t_pkey\")",
        ),
        (
            "constraint.toml",
            "t_email_key",
            "index \"t_email_key\" implements a constraint of \"public\".\"t\"; drop the constraint with `kind = \"drop_constraint\"`",
        ),
    ] {
        let path = plans.write(
            file,
            &format!("table = \"t\"\n[[operations]]\nkind = \"drop_index\"\nname = \"{name}\"\n"),
        );
        for command in ["validate", "run"] {
            let out = crate::support::backfill_cmd(&[command, &path], Some(&db.url));
            let shown = crate::support::show(&out);
            assert_eq!(out.status.code(), Some(2), "{file}: {shown}");
            assert!(shown.contains("operations[0].name"), "{file}: {shown}");
            assert!(shown.contains(expected), "{file}: {expected:?} in {shown}");
        }
    }
    assert_eq!(snapshot(&client, "t", "id").await, before);
    assert_eq!(count_indexes(&client).await, 3, "nothing dropped");
}

async fn count_indexes(client: &tokio_postgres::Client) -> i64 {
    crate::support::count(
        client,
        "SELECT count(*) FROM pg_index WHERE indrelid = 't'::regclass",
    )
    .await
}
