//! `create_index`: its scenarios through every path (contract, rollback, runner, abort).

use super::*;

pub(super) const CREATE_INDEX: Scenario = Scenario {
    name: "create_index",
    setup: PEOPLE,
    plan: r#"
table = "t"
[[operations]]
kind = "create_index"
expression = "lower(email)"
where = "email IS NOT NULL"
name = "t_email_lower_idx"
"#,
    old_writes: "INSERT INTO t (id, email) VALUES (10, 'X@example.com') ON CONFLICT (id) DO NOTHING;",
    new_writes: "",
    transition: ("SELECT indisvalid::text FROM pg_index WHERE indexrelid = 't_email_lower_idx'::regclass", &["true"]),
    result: ("SELECT pg_get_indexdef('t_email_lower_idx'::regclass)", &["CREATE INDEX t_email_lower_idx ON public.t USING btree (lower(email)) WHERE (email IS NOT NULL)"]),
};

scenario_tests! {
    create_index_contract, create_index_rollback, create_index_runner, create_index_abort => CREATE_INDEX;
}

const EVENTS: &str = "CREATE TABLE t (id bigserial PRIMARY KEY, tenant_id int, created_at timestamptz, payload_size int, deleted_at timestamptz, email text);
INSERT INTO t (tenant_id, created_at, payload_size, email) SELECT g % 3, now() - g * interval '1 hour', g * 10, 'u' || g || '@example.com' FROM generate_series(1, 20) g;";

/// The issue's formats as written: columns with order, nulls and operator class, `INCLUDE`,
/// method and predicate.
pub(super) const CREATE_INDEX_COLUMNS: Scenario = Scenario {
    name: "create_index_columns",
    setup: EVENTS,
    plan: r#"
table = "t"
[[operations]]
kind = "create_index"
columns = [{ name = "created_at", order = "desc", nulls = "last" }, "tenant_id"]
include = ["payload_size"]
method = "btree"
where = "deleted_at IS NULL"
[[operations]]
kind = "create_index"
columns = [{ name = "email", opclass = "text_pattern_ops" }]
"#,
    old_writes: "INSERT INTO t (tenant_id, created_at, email) VALUES (1, now(), 'late@example.com');",
    new_writes: "",
    transition: (
        "SELECT count(*)::text FROM pg_index WHERE indrelid = 't'::regclass AND indisvalid",
        &["3"],
    ),
    result: (
        "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = 't'::regclass AND NOT indisprimary ORDER BY 1",
        &[
            "CREATE INDEX t_created_at_tenant_id_idx ON public.t USING btree (created_at DESC NULLS LAST, tenant_id) INCLUDE (payload_size) WHERE (deleted_at IS NULL)",
            "CREATE INDEX t_email_idx ON public.t USING btree (email text_pattern_ops)",
        ],
    ),
};

scenario_tests! {
    create_index_columns_contract, create_index_columns_rollback, create_index_columns_runner, create_index_columns_abort => CREATE_INDEX_COLUMNS;
}

/// A wrong word in a column's table, an operator class that does not exist (quoted, so plan
/// text never runs as SQL), or an `INCLUDE` column that does not exist: exit 2, the field
/// named, nothing changed.
#[tokio::test]
async fn create_index_column_mistakes_are_named() {
    let db = TestDb::new("create_index_mistakes").await;
    let client = db.connect().await;
    client.batch_execute(EVENTS).await.expect("setup");
    let before = snapshot(&client, "t", "id").await;
    let plans = crate::support::Plans::new("create_index_mistakes");
    for (file, op, expected) in [
        (
            "order.toml",
            r#"columns = [{ name = "created_at", order = "down" }]"#,
            "operations[0].columns[0].order: `down` is not one of: asc, desc",
        ),
        (
            "opclass.toml",
            r#"columns = [{ name = "email", opclass = "text_pattern_ops; DROP TABLE t" }]"#,
            "operations[0].columns",
        ),
        (
            "include.toml",
            r#"columns = ["email"]
include = ["nope"]"#,
            "operations[0].include[0]",
        ),
    ] {
        let path = plans.write(
            file,
            &format!("table = \"t\"\n[[operations]]\nkind = \"create_index\"\n{op}\n"),
        );
        let out = crate::support::backfill_cmd(&["validate", &path], Some(&db.url));
        let shown = crate::support::show(&out);
        assert_eq!(out.status.code(), Some(2), "{file}: {shown}");
        assert!(shown.contains(expected), "{file}: {expected:?} in {shown}");
    }
    assert_eq!(snapshot(&client, "t", "id").await, before);
}
