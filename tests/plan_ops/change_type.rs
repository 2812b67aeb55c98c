//! `change_type`: its scenarios through every path (contract, rollback, runner, abort).

use super::*;

pub(super) const CHANGE_TYPE: Scenario = Scenario {
    name: "change_type",
    setup: PEOPLE,
    plan: r#"
table = "t"
[[operations]]
kind = "change_type"
column = "score"
type = "bigint"
up = "score::bigint * 10"
down = "(score_bf_new / 10)::int"
"#,
    old_writes: "INSERT INTO t (id, score) VALUES (10, 7) ON CONFLICT (id) DO UPDATE SET score = 8; UPDATE t SET score = 5 WHERE id = 2;",
    new_writes: "UPDATE t SET score_bf_new = 90 WHERE id = 1; INSERT INTO t (id, score_bf_new) VALUES (11, 120);",
    transition: ("SELECT id || ':' || score || ':' || score_bf_new FROM t ORDER BY id", &["1:9:90", "2:5:50", "3:0:0", "4:0:0", "10:8:80", "11:12:120"]),
    result: ("SELECT id || ':' || score || ':' || pg_typeof(score) || ':' || (SELECT attnotnull::text FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'score') FROM t ORDER BY id", &["1:90:bigint:true", "2:50:bigint:true", "3:0:bigint:true", "4:0:bigint:true", "10:80:bigint:true", "11:120:bigint:true"]),
};

scenario_tests! {
    change_type_contract, change_type_rollback, change_type_runner, change_type_abort => CHANGE_TYPE;
}

/// An expression that fails on the data stops the backfill with PostgreSQL's message, and the
/// transaction leaves every row as it was.
#[tokio::test]
async fn a_cast_that_fails_on_the_data_changes_nothing() {
    let db = TestDb::new("bad_cast").await;
    let mut client = db.connect().await;
    client
        .batch_execute("CREATE TABLE t (id bigserial PRIMARY KEY, code text); INSERT INTO t (code) VALUES ('1'), ('2'), ('x3');")
        .await
        .expect("setup");
    let schedule = plan_for(
        &mut client,
        "table = \"t\"\n[[operations]]\nkind = \"change_type\"\ncolumn = \"code\"\ntype = \"int\"\n",
    )
    .await;
    apply(&mut client, &schedule, Phase::Expand).await;
    let err = backfill_in_one_statement(&mut client, schedule.backfill.as_ref().expect("backfill"))
        .await
        .expect_err("x3 is not an integer");
    assert!(
        err.to_string()
            .contains("invalid input syntax for type integer"),
        "{err}"
    );
    assert_eq!(
        rows(
            &client,
            "SELECT id || ':' || coalesce(code_bf_new::text, 'NULL') FROM t ORDER BY id"
        )
        .await,
        ["1:NULL", "2:NULL", "3:NULL"]
    );
}
