//! `add_primary_key`: the unique index built concurrently and NOT NULL proved by validated
//! checks, the key attached at contract; NULLs and duplicates reported before anything changes.

use super::*;

const NO_KEY: &str = "CREATE TABLE t (tenant_id int, id bigint, payload text);
INSERT INTO t SELECT g % 3, g, 'p' || g FROM generate_series(1, 20) g;";

pub(super) const ADD_PRIMARY_KEY: Scenario = Scenario {
    name: "add_primary_key",
    setup: NO_KEY,
    plan: r#"
table = "t"
[[operations]]
kind = "add_primary_key"
columns = ["tenant_id", "id"]
"#,
    old_writes: "INSERT INTO t VALUES (1, 100 + (SELECT count(*) FROM t), 'old');",
    new_writes: "UPDATE t SET payload = 'new' WHERE id = 1;",
    transition: (
        "SELECT indisvalid::text || ' ' || indisunique::text FROM pg_index WHERE indexrelid = 't_pkey'::regclass",
        &["true true"],
    ),
    result: (
        "SELECT pg_get_constraintdef(c.oid) || ' ' || (SELECT string_agg(attname || '=' || attnotnull, ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 't'::regclass AND attnum > 0 AND NOT attisdropped) FROM pg_constraint c WHERE conrelid = 't'::regclass",
        &["PRIMARY KEY (tenant_id, id) tenant_id=true,id=true,payload=false"],
    ),
};

scenario_tests! {
    add_primary_key_contract, add_primary_key_rollback, add_primary_key_runner, add_primary_key_abort => ADD_PRIMARY_KEY;
}

/// NULLs and duplicates in the key columns, and a table that has a key already: exit 2 with
/// the rows named, nothing changed.
#[tokio::test]
async fn add_primary_key_mistakes_are_refused() {
    let db = TestDb::new("add_primary_key_mistakes").await;
    let client = db.connect().await;
    client
        .batch_execute(
            "CREATE TABLE t (tenant_id int, id bigint, payload text);
             INSERT INTO t VALUES (1, 1, 'a'), (1, 1, 'dup'), (NULL, 2, 'null');
             CREATE TABLE k (id int PRIMARY KEY);",
        )
        .await
        .expect("setup");
    let before = snapshot(&client, "t", "id").await;
    let plans = crate::support::Plans::new("add_primary_key_mistakes");
    let plan = plans.write(
        "t.toml",
        "table = \"t\"\n[[operations]]\nkind = \"add_primary_key\"\ncolumns = [\"tenant_id\", \"id\"]\n",
    );
    let out = crate::support::backfill_cmd(&["run", &plan], Some(&db.url));
    let shown = crate::support::show(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(
        shown.contains("operations[0].columns: 2 rows of \"public\".\"t\" share their (\"tenant_id\", \"id\") with another row"),
        "{shown}"
    );
    assert!(
        shown.contains("operations[0].columns[0]: 1 row of \"public\".\"t\" have \"tenant_id\" NULL, which a primary key refuses, for example the row with ctid = '(0,3)'"),
        "{shown}"
    );
    assert_eq!(snapshot(&client, "t", "id").await, before);
    let keyed = plans.write(
        "k.toml",
        "table = \"k\"\n[[operations]]\nkind = \"add_primary_key\"\ncolumns = [\"id\"]\n",
    );
    let out = crate::support::backfill_cmd(&["validate", &keyed], Some(&db.url));
    let shown = crate::support::show(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(
        shown.contains("already has a primary key, \"k_pkey\""),
        "{shown}"
    );
}
