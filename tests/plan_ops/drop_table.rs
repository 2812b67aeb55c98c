//! `drop_table`: nothing at expand (the old release still reads and writes the table), `DROP
//! TABLE` at contract; refused at validate while other objects depend on the table. Before
//! contract nothing changed, so the rollback path is written out here.

use super::*;
use crate::support::{backfill_cmd, count, show, Plans};

const EVENTS: &str = "CREATE TABLE t (id bigserial PRIMARY KEY, kind text NOT NULL, payload jsonb);
INSERT INTO t (kind) SELECT 'k' || g FROM generate_series(1, 20) g;";

pub(super) const DROP_TABLE: Scenario = Scenario {
    name: "drop_table",
    setup: EVENTS,
    plan: r#"
table = "t"
[[operations]]
kind = "drop_table"
"#,
    old_writes: "INSERT INTO t (kind) VALUES ('old'); UPDATE t SET payload = '{}' WHERE id = 1;",
    new_writes: "",
    transition: ("SELECT count(*)::text FROM t", &["22"]),
    result: (
        "SELECT (to_regclass('t') IS NULL AND to_regtype('t') IS NULL)::text",
        &["true"],
    ),
};

#[tokio::test]
async fn drop_table_contract() {
    contract_path(&DROP_TABLE).await;
}

#[tokio::test]
async fn drop_table_runner() {
    runner_path(&DROP_TABLE).await;
}

/// Before contract nothing changed: abort leaves the table and its rows as they were; `plan
/// --sql` and `export` drop it at contract only.
#[tokio::test]
async fn drop_table_abort_and_sql() {
    let db = TestDb::new("drop_table_abort").await;
    let client = db.connect().await;
    client.batch_execute(EVENTS).await.expect("setup");
    let before = user_snapshot(&client, "t", "id").await;
    let (dir, plan) = plan_file(&DROP_TABLE, "_abort");
    let out = backfill_ok(
        &["run", &plan, "--release", "1.4.0", "--progress", "quiet"],
        Some(&db.url),
    );
    assert!(out.contains("contract waits for release 1.5.0"), "{out}");
    assert_eq!(user_snapshot(&client, "t", "id").await, before);
    backfill_ok(&["abort", &plan], Some(&db.url));
    assert_eq!(user_snapshot(&client, "t", "id").await, before);
    let shown = backfill_ok(&["plan", &plan, "--sql"], Some(&db.url));
    let validate = backfill_cmd(&["validate", &plan], Some(&db.url));
    assert!(
        show(&validate).contains("contract drops table \"public\".\"t\""),
        "{}",
        show(&validate)
    );
    let at = shown
        .find("DROP TABLE IF EXISTS \"public\".\"t\"")
        .unwrap_or_else(|| panic!("{shown}"));
    assert!(
        shown[..at].contains("contract"),
        "dropped at contract: {shown}"
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
        std::fs::read_to_string(out.join("drop_table.contract.sql")).expect("contract.sql");
    assert!(
        contract.contains("DROP TABLE IF EXISTS \"public\".\"t\""),
        "{contract}"
    );
    let expand = std::fs::read_to_string(out.join("drop_table.expand.sql")).expect("expand.sql");
    assert!(!expand.contains("DROP TABLE"), "{expand}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Views (one selecting every column, one selecting none), a materialized view, a function with
/// an SQL body, a rule of another table and another table's foreign key depend on the table:
/// `validate` and `run` refuse with exit 2, every one named, and nothing changes. Without them,
/// the plan passes.
#[tokio::test]
async fn drop_table_refused_while_objects_depend_on_it() {
    let db = TestDb::new("drop_table_dependents").await;
    let client = db.connect().await;
    client
        .batch_execute(&format!(
            "{EVENTS}
             CREATE VIEW t_all AS SELECT * FROM t;
             CREATE VIEW t_count AS SELECT count(*) AS n FROM t;
             CREATE MATERIALIZED VIEW t_kinds AS SELECT DISTINCT kind FROM t;
             CREATE FUNCTION t_total() RETURNS bigint LANGUAGE sql BEGIN ATOMIC SELECT count(*) FROM t; END;
             CREATE TABLE other (id int PRIMARY KEY, t_id bigint CONSTRAINT other_t_fkey REFERENCES t);
             CREATE RULE other_log AS ON INSERT TO other DO ALSO SELECT 1 FROM t;"
        ))
        .await
        .expect("setup");
    let before = snapshot(&client, "t", "id").await;
    let plans = Plans::new("drop_table_dependents");
    let plan = plans.write(
        "drop_t.toml",
        &format!(
            "{}[release]\nexpand = \"1.4.0\"\ncontract = \"1.5.0\"\n",
            DROP_TABLE.plan
        ),
    );
    for command in ["validate", "run"] {
        let args: Vec<&str> = if command == "run" {
            vec!["run", &plan, "--release", "1.5.0"]
        } else {
            vec!["validate", &plan]
        };
        let out = backfill_cmd(&args, Some(&db.url));
        let shown = show(&out);
        assert_eq!(out.status.code(), Some(2), "{command}: {shown}");
        for named in [
            "view t_all depends on \"public\".\"t\"",
            "view t_count depends on \"public\".\"t\"",
            "materialized view t_kinds depends on \"public\".\"t\"",
            "function t_total() depends on \"public\".\"t\"",
            "rule other_log on table other depends on \"public\".\"t\"",
            "foreign key \"other_t_fkey\" of public.other references \"public\".\"t\"",
        ] {
            assert!(shown.contains(named), "{command}: {named:?} in {shown}");
        }
        assert!(shown.contains("drop_t.toml:"), "{shown}");
        assert!(shown.contains("operations[0].kind"), "{shown}");
    }
    assert_eq!(
        snapshot(&client, "t", "id").await,
        before,
        "nothing changed"
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'backfill'"
        )
        .await,
        0
    );
    client
        .batch_execute(
            "DROP VIEW t_all, t_count; DROP MATERIALIZED VIEW t_kinds; DROP FUNCTION t_total(); DROP RULE other_log ON other; ALTER TABLE other DROP CONSTRAINT other_t_fkey;",
        )
        .await
        .expect("drop the dependents");
    backfill_ok(&["validate", &plan], Some(&db.url));
}

/// Another plan on the table is in flight: dropping the table would take its trigger and
/// columns away. Refused (exit 2, the plan named) until that plan is done.
#[tokio::test]
async fn drop_table_refused_while_another_plan_is_in_flight() {
    let db = TestDb::new("drop_table_in_flight").await;
    let client = db.connect().await;
    client.batch_execute(EVENTS).await.expect("setup");
    let plans = Plans::new("drop_table_in_flight");
    let other = plans.write(
        "0001_add_source.toml",
        "table = \"t\"\n[[operations]]\nkind = \"add_column\"\nname = \"source\"\ntype = \"text\"\nup = \"'legacy'\"\n[release]\nexpand = \"1.4.0\"\ncontract = \"1.5.0\"\n",
    );
    backfill_ok(
        &["run", &other, "--release", "1.4.0", "--progress", "quiet"],
        Some(&db.url),
    );
    let drop = plans.write(
        "0002_drop_t.toml",
        "table = \"t\"\n[[operations]]\nkind = \"drop_table\"\n",
    );
    let out = backfill_cmd(&["validate", &drop], Some(&db.url));
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        show(&out).contains("plan `0001_add_source` on \"public\".\"t\" is in flight"),
        "{}",
        show(&out)
    );
    backfill_ok(
        &["run", &other, "--release", "1.5.0", "--progress", "quiet"],
        Some(&db.url),
    );
    backfill_ok(&["validate", &drop], Some(&db.url));
}
