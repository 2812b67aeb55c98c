//! `set_replica_identity`: at expand, metadata only; abort puts back what the table had.

use super::*;

const REPLICATED: &str =
    "CREATE TABLE t (id bigserial PRIMARY KEY, email text NOT NULL, nick text);
CREATE UNIQUE INDEX t_email_key ON t (email);
CREATE UNIQUE INDEX t_nick_key ON t (nick);
INSERT INTO t (email, nick) VALUES ('a@example.com', 'a'), ('b@example.com', NULL);";

const IDENTITY: &str = "SELECT c.relreplident::text || ' ' || coalesce((SELECT ic.relname::text FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid WHERE i.indrelid = c.oid AND i.indisreplident), '-') FROM pg_class c WHERE c.oid = 't'::regclass";

pub(super) const SET_REPLICA_IDENTITY: Scenario = Scenario {
    name: "set_replica_identity",
    setup: REPLICATED,
    plan: r#"
table = "t"
[[operations]]
kind = "set_replica_identity"
identity = "index"
index = "t_email_key"
"#,
    old_writes: "INSERT INTO t (email) VALUES ('old' || clock_timestamp() || '@example.com');",
    new_writes: "UPDATE t SET nick = 'new' WHERE id = 2;",
    transition: (IDENTITY, &["i t_email_key"]),
    result: (IDENTITY, &["i t_email_key"]),
};

#[tokio::test]
async fn set_replica_identity_contract() {
    contract_path(&SET_REPLICA_IDENTITY).await;
}

#[tokio::test]
async fn set_replica_identity_runner() {
    runner_path(&SET_REPLICA_IDENTITY).await;
}

/// FULL, then abort: back to what the table had (an index); an index on a column that allows
/// NULL and a word that is not an identity are refused at validate.
#[tokio::test]
async fn set_replica_identity_abort_and_mistakes() {
    let db = TestDb::new("set_replica_identity_abort").await;
    let client = db.connect().await;
    client.batch_execute(REPLICATED).await.expect("setup");
    client
        .batch_execute("ALTER TABLE t REPLICA IDENTITY USING INDEX t_email_key")
        .await
        .expect("an identity to come back to");
    let plans = crate::support::Plans::new("set_replica_identity_abort");
    let full = plans.write(
        "full.toml",
        "table = \"t\"\n[[operations]]\nkind = \"set_replica_identity\"\nidentity = \"full\"\n[release]\nexpand = \"1.0\"\ncontract = \"2.0\"\n",
    );
    backfill_ok(
        &["run", &full, "--release", "1.0", "--progress", "quiet"],
        Some(&db.url),
    );
    assert_eq!(rows(&client, IDENTITY).await, ["f -"]);
    backfill_ok(&["abort", &full], Some(&db.url));
    assert_eq!(rows(&client, IDENTITY).await, ["i t_email_key"]);
    for (file, op, expected) in [
        (
            "nullable.toml",
            "identity = \"index\"\nindex = \"t_nick_key\"",
            "operations[0].index: index \"t_nick_key\" covers column \"nick\", which allows NULL",
        ),
        (
            "word.toml",
            "identity = \"everything\"",
            "operations[0].identity: `everything` is not one of: default, full, nothing, index",
        ),
    ] {
        let path = plans.write(
            file,
            &format!("table = \"t\"\n[[operations]]\nkind = \"set_replica_identity\"\n{op}\n"),
        );
        let out = crate::support::backfill_cmd(&["run", &path], Some(&db.url));
        let shown = crate::support::show(&out);
        assert_eq!(out.status.code(), Some(2), "{file}: {shown}");
        assert!(shown.contains(expected), "{file}: {expected:?} in {shown}");
    }
    assert_eq!(rows(&client, IDENTITY).await, ["i t_email_key"]);
}
