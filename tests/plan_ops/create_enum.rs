//! `create_enum` and `add_enum_value`: a type created at expand and used by a later operation
//! of the same plan, a value added outside a transaction and written by the new release.

use super::*;

pub(super) const ENUMS: Scenario = Scenario {
    name: "create_enum",
    setup: PEOPLE,
    plan: r#"
table = "t"
[[operations]]
kind = "create_enum"
name = "t_status"
values = ["active", "suspended"]
[[operations]]
kind = "add_enum_value"
type = "t_status"
value = "deleted"
after = "suspended"
[[operations]]
kind = "add_column"
name = "status"
type = "t_status"
default = "'active'"
"#,
    old_writes: "INSERT INTO t (full_name) VALUES ('old release');",
    new_writes: "UPDATE t SET status = 'deleted' WHERE id = 1;",
    transition: (
        "SELECT enum_range(NULL::t_status)::text",
        &["{active,suspended,deleted}"],
    ),
    result: (
        "SELECT id || ':' || status FROM t ORDER BY id",
        &[
            "1:deleted",
            "2:active",
            "3:active",
            "4:active",
            "5:active",
            "6:active",
        ],
    ),
};

scenario_tests! {
    create_enum_contract, create_enum_rollback, create_enum_runner, create_enum_abort => ENUMS;
}

/// After abort the type is gone too; a value already there is no error (IF NOT EXISTS); a
/// missing type, an `after` label that does not exist and a type created twice are named at
/// validate, with nothing changed.
#[tokio::test]
async fn enum_types_after_abort_and_mistakes() {
    let db = TestDb::new("create_enum_mistakes").await;
    let client = db.connect().await;
    client.batch_execute(PEOPLE).await.expect("setup");
    let (dir, plan) = plan_file(&ENUMS, "_types");
    backfill_ok(
        &["run", &plan, "--release", "1.4.0", "--progress", "quiet"],
        Some(&db.url),
    );
    backfill_ok(&["abort", &plan], Some(&db.url));
    assert_eq!(
        rows(
            &client,
            "SELECT count(*)::text FROM pg_type WHERE typname = 't_status'"
        )
        .await,
        ["0"]
    );
    let _ = std::fs::remove_dir_all(dir);

    client
        .batch_execute("CREATE TYPE mood AS ENUM ('sad', 'ok')")
        .await
        .expect("a type");
    let plans = crate::support::Plans::new("create_enum_mistakes");
    for (file, ops, expected) in [
        (
            "missing.toml",
            "kind = \"add_enum_value\"\ntype = \"nope\"\nvalue = \"x\"",
            "operations[0].type: PostgreSQL says: type \"public.nope\" does not exist",
        ),
        (
            "after.toml",
            "kind = \"add_enum_value\"\ntype = \"mood\"\nvalue = \"happy\"\nafter = \"glad\"",
            "operations[0].after: PostgreSQL says: \"glad\" is not an existing enum label",
        ),
        (
            "twice.toml",
            "kind = \"create_enum\"\nname = \"mood\"\nvalues = [\"a\"]",
            "operations[0].name: PostgreSQL says: type \"mood\" already exists",
        ),
        (
            "empty.toml",
            "kind = \"create_enum\"\nname = \"m2\"\nvalues = []",
            "operations[0].values: must name at least one value",
        ),
    ] {
        let path = plans.write(file, &format!("table = \"t\"\n[[operations]]\n{ops}\n"));
        let out = crate::support::backfill_cmd(&["run", &path], Some(&db.url));
        let shown = crate::support::show(&out);
        assert_eq!(out.status.code(), Some(2), "{file}: {shown}");
        assert!(shown.contains(expected), "{file}: {expected:?} in {shown}");
    }
    assert_eq!(
        rows(&client, "SELECT enum_range(NULL::mood)::text").await,
        ["{sad,ok}"]
    );
    // A value that is already there: nothing to do, no error.
    let again = plans.write(
        "again.toml",
        "table = \"t\"\n[[operations]]\nkind = \"add_enum_value\"\ntype = \"mood\"\nvalue = \"ok\"\n",
    );
    backfill_ok(&["run", &again, "--progress", "quiet"], Some(&db.url));
    assert_eq!(
        rows(&client, "SELECT enum_range(NULL::mood)::text").await,
        ["{sad,ok}"]
    );
}
