//! Several changes of one column in one plan, composed into one operation: their scenarios
//! through every path (contract, rollback, runner, abort), and what cannot be composed.

use super::*;

/// `rename_column` then `change_type` of the new name: one new column, under the new name and
/// in the new type from expand on; the new release writes it, the old one the old column.
pub(super) const RENAME_THEN_CHANGE_TYPE: Scenario = Scenario {
    name: "rename_then_change_type",
    setup: PEOPLE,
    plan: r#"
table = "t"
[[operations]]
kind = "rename_column"
from = "score"
to = "points"
[[operations]]
kind = "change_type"
column = "points"
type = "bigint"
up = "points::bigint * 10"
down = "(points_bf_new / 10)::int"
"#,
    old_writes: "INSERT INTO t (id, score) VALUES (10, 7) ON CONFLICT (id) DO UPDATE SET score = 8; UPDATE t SET score = 5 WHERE id = 2;",
    new_writes: "UPDATE t SET points = 90 WHERE id = 1; INSERT INTO t (id, points) VALUES (11, 120);",
    transition: ("SELECT id || ':' || score || ':' || points || ':' || pg_typeof(points) FROM t ORDER BY id", &["1:9:90:bigint", "2:5:50:bigint", "3:0:0:bigint", "4:0:0:bigint", "10:8:80:bigint", "11:12:120:bigint"]),
    result: ("SELECT id || ':' || points || ':' || pg_typeof(points) || ':' || (SELECT attnotnull::text FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'points') || ':' || (SELECT column_default FROM information_schema.columns WHERE table_name = 't' AND column_name = 'points') || ':' || (SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'score' AND NOT attisdropped) FROM t ORDER BY id", &["1:90:bigint:true:0:0", "2:50:bigint:true:0:0", "3:0:bigint:true:0:0", "4:0:bigint:true:0:0", "10:80:bigint:true:0:0", "11:120:bigint:true:0:0"]),
};

/// `change_type` of a nullable column, then `set_not_null` with `fill` and `set_default` of
/// it: NULLs written by the old release get the fill in the new column; contract leaves the
/// column NOT NULL with the new default.
pub(super) const CHANGE_TYPE_THEN_NOT_NULL: Scenario = Scenario {
    name: "change_type_then_not_null",
    setup: PEOPLE,
    plan: r#"
table = "t"
[[operations]]
kind = "change_type"
column = "age"
type = "bigint"
[[operations]]
kind = "set_not_null"
column = "age"
fill = "0"
[[operations]]
kind = "set_default"
column = "age"
default = "18"
"#,
    old_writes: "INSERT INTO t (id, age) VALUES (10, NULL) ON CONFLICT (id) DO UPDATE SET age = NULL; UPDATE t SET age = 50 WHERE id = 2;",
    new_writes: "UPDATE t SET age_bf_new = 7 WHERE id = 1; INSERT INTO t (id, age_bf_new) VALUES (11, 30);",
    transition: ("SELECT id || ':' || coalesce(age::text, 'NULL') || ':' || age_bf_new FROM t ORDER BY id", &["1:7:7", "2:50:50", "3:NULL:0", "4:-5:-5", "10:NULL:0", "11:30:30"]),
    result: ("SELECT id || ':' || age || ':' || pg_typeof(age) || ':' || (SELECT attnotnull::text FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'age') || ':' || (SELECT column_default FROM information_schema.columns WHERE table_name = 't' AND column_name = 'age') FROM t ORDER BY id", &["1:7:bigint:true:18", "2:50:bigint:true:18", "3:0:bigint:true:18", "4:-5:bigint:true:18", "10:0:bigint:true:18", "11:30:bigint:true:18"]),
};

/// `set_not_null` with `fill` before `change_type`, and `rename_column` after it: the fill is
/// in the old type and goes through `up`; the column ends renamed, in its new type, NOT NULL.
pub(super) const NOT_NULL_CHANGE_TYPE_RENAME: Scenario = Scenario {
    name: "not_null_change_type_rename",
    setup: PEOPLE,
    plan: r#"
table = "t"
[[operations]]
kind = "set_not_null"
column = "email"
fill = "'UNKNOWN'"
[[operations]]
kind = "change_type"
column = "email"
type = "varchar(100)"
up = "lower(trim(email))"
[[operations]]
kind = "rename_column"
from = "email"
to = "contact"
"#,
    old_writes: "INSERT INTO t (id, email) VALUES (10, NULL) ON CONFLICT (id) DO UPDATE SET email = NULL; UPDATE t SET email = 'X@Y.org' WHERE id = 2;",
    new_writes: "UPDATE t SET contact = 'ada@lovelace.org' WHERE id = 1; INSERT INTO t (id, contact) VALUES (11, 'new@example.com');",
    transition: ("SELECT id || ':' || coalesce(email, 'NULL') || ':' || contact FROM t ORDER BY id", &["1:ada@lovelace.org:ada@lovelace.org", "2:X@Y.org:x@y.org", "3:NULL:unknown", "4:GRACE@example.com :grace@example.com", "10:NULL:unknown", "11:new@example.com:new@example.com"]),
    result: ("SELECT id || ':' || contact || ':' || pg_typeof(contact) || ':' || (SELECT attnotnull::text FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'contact') || ':' || (SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'email' AND NOT attisdropped) FROM t ORDER BY id", &["1:ada@lovelace.org:character varying:true:0", "2:x@y.org:character varying:true:0", "3:unknown:character varying:true:0", "4:grace@example.com:character varying:true:0", "10:unknown:character varying:true:0", "11:new@example.com:character varying:true:0"]),
};

/// `rename_column`, then `set_not_null` with `fill` and `set_default` of the new name: done on
/// the column itself, which contract renames with its NOT NULL and default; the copy under the
/// new name is filled with it.
pub(super) const RENAME_THEN_NOT_NULL: Scenario = Scenario {
    name: "rename_then_not_null",
    setup: PEOPLE,
    plan: r#"
table = "t"
[[operations]]
kind = "rename_column"
from = "full_name"
to = "name"
[[operations]]
kind = "set_not_null"
column = "name"
fill = "'anonymous'"
[[operations]]
kind = "set_default"
column = "name"
default = "'anonymous'"
"#,
    old_writes: "INSERT INTO t (id) VALUES (10) ON CONFLICT (id) DO UPDATE SET full_name = NULL; UPDATE t SET full_name = 'Alan M. Turing' WHERE id = 2;",
    new_writes: "INSERT INTO t (id, name) VALUES (11, NULL); UPDATE t SET name = 'Ada King' WHERE id = 1;",
    transition: ("SELECT id || ':' || full_name || ':' || name FROM t ORDER BY id", &["1:Ada King:Ada King", "2:Alan M. Turing:Alan M. Turing", "3:anonymous:anonymous", "4:Grace Hopper:Grace Hopper", "10:anonymous:anonymous", "11:anonymous:anonymous"]),
    result: ("SELECT id || ':' || name || ':' || (SELECT attnotnull::text FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'name') || ':' || (SELECT column_default FROM information_schema.columns WHERE table_name = 't' AND column_name = 'name') FROM t ORDER BY id", &["1:Ada King:true:'anonymous'::text", "2:Alan M. Turing:true:'anonymous'::text", "3:anonymous:true:'anonymous'::text", "4:Grace Hopper:true:'anonymous'::text", "10:anonymous:true:'anonymous'::text", "11:anonymous:true:'anonymous'::text"]),
};

/// `change_type` of a NOT NULL column with a default, then `drop_not_null` and `set_default =
/// false` of it: the old column is made nullable at expand (the new release may write NULL,
/// which the trigger copies there), and the column ends nullable without a default.
pub(super) const CHANGE_TYPE_THEN_NULLABLE: Scenario = Scenario {
    name: "change_type_then_nullable",
    setup: PEOPLE,
    plan: r#"
table = "t"
[[operations]]
kind = "change_type"
column = "score"
type = "bigint"
[[operations]]
kind = "drop_not_null"
column = "score"
[[operations]]
kind = "set_default"
column = "score"
default = false
"#,
    old_writes: "INSERT INTO t (id, score) VALUES (10, 7) ON CONFLICT (id) DO UPDATE SET score = 8; UPDATE t SET score = 5 WHERE id = 2;",
    new_writes: "UPDATE t SET score_bf_new = NULL WHERE id = 1; INSERT INTO t (id, score_bf_new) VALUES (11, 120);",
    transition: ("SELECT id || ':' || coalesce(score::text, 'NULL') || ':' || coalesce(score_bf_new::text, 'NULL') FROM t ORDER BY id", &["1:NULL:NULL", "2:5:5", "3:0:0", "4:0:0", "10:8:8", "11:120:120"]),
    result: ("SELECT id || ':' || coalesce(score::text, 'NULL') || ':' || pg_typeof(score) || ':' || (SELECT attnotnull::text FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'score') || ':' || coalesce((SELECT column_default FROM information_schema.columns WHERE table_name = 't' AND column_name = 'score'), '-') FROM t ORDER BY id", &["1:NULL:bigint:false:-", "2:5:bigint:false:-", "3:0:bigint:false:-", "4:0:bigint:false:-", "10:8:bigint:false:-", "11:120:bigint:false:-"]),
};

scenario_tests! {
    change_type_then_nullable_contract, change_type_then_nullable_rollback, change_type_then_nullable_runner, change_type_then_nullable_abort => CHANGE_TYPE_THEN_NULLABLE;
    rename_then_change_type_contract, rename_then_change_type_rollback, rename_then_change_type_runner, rename_then_change_type_abort => RENAME_THEN_CHANGE_TYPE;
    change_type_then_not_null_contract, change_type_then_not_null_rollback, change_type_then_not_null_runner, change_type_then_not_null_abort => CHANGE_TYPE_THEN_NOT_NULL;
    not_null_change_type_rename_contract, not_null_change_type_rename_rollback, not_null_change_type_rename_runner, not_null_change_type_rename_abort => NOT_NULL_CHANGE_TYPE_RENAME;
    rename_then_not_null_contract, rename_then_not_null_rollback, rename_then_not_null_runner, rename_then_not_null_abort => RENAME_THEN_NOT_NULL;
}

fn parse_err(text: &str) -> String {
    match Plan::parse(Path::new("plans/compose.toml"), text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// What stays on a column cannot go on the copy a `rename_column` drops at contract: the plan
/// is refused, naming the column to use instead.
#[test]
fn an_index_on_a_renamed_copy_is_refused_with_the_name_to_use() {
    let err = parse_err(
        "table = \"t\"\n[[operations]]\nkind = \"rename_column\"\nfrom = \"email\"\nto = \"contact\"\n[[operations]]\nkind = \"create_index\"\ncolumns = [\"contact\"]\n",
    );
    assert!(
        err.contains("plans/compose.toml:8")
            && err.contains("\"contact\" is a copy of \"email\"")
            && err.contains("name \"email\" here"),
        "{err}"
    );
}

/// The same index on the old name is built on the column, which contract renames with it.
#[tokio::test]
async fn an_index_on_the_old_name_stays_through_the_rename() {
    let db = TestDb::new("compose_index_rename").await;
    let mut client = db.connect().await;
    client.batch_execute(PEOPLE).await.expect("setup");
    let schedule = plan_for(
        &mut client,
        "table = \"t\"\n[[operations]]\nkind = \"rename_column\"\nfrom = \"email\"\nto = \"contact\"\n[[operations]]\nkind = \"create_index\"\nname = \"t_contact_idx\"\ncolumns = [\"email\"]\n",
    )
    .await;
    for phase in [Phase::Expand, Phase::DualWrite] {
        apply(&mut client, &schedule, phase).await;
    }
    if let Some(b) = &schedule.backfill {
        backfill_in_one_statement(&mut client, b)
            .await
            .expect("backfill");
    }
    apply(&mut client, &schedule, Phase::Contract).await;
    assert_eq!(
        rows(
            &client,
            "SELECT indexdef FROM pg_indexes WHERE indexname = 't_contact_idx'"
        )
        .await,
        ["CREATE INDEX t_contact_idx ON public.t USING btree (contact)"]
    );
}

/// `plan --sql` of a composed plan: one new column under the new name, the other operations
/// named where they are written.
#[test]
fn composed_operations_keep_their_place_in_the_plan() {
    let plan = Plan::parse(
        Path::new("plans/compose.toml"),
        "table = \"t\"\n[[operations]]\nkind = \"rename_column\"\nfrom = \"score\"\nto = \"points\"\n[[operations]]\nkind = \"change_type\"\ncolumn = \"points\"\ntype = \"bigint\"\n[[operations]]\nkind = \"set_not_null\"\ncolumn = \"points\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let summaries: Vec<String> = plan.operations.iter().map(|o| o.op().summary()).collect();
    assert_eq!(
        summaries,
        [
            "rename column \"score\" to \"points\" (done by operations[1])",
            "change the type of \"score\" to bigint, renamed to \"points\", NOT NULL",
            "set \"points\" NOT NULL (done by operations[1])",
        ]
    );
}

/// An expression the rename cannot be carried into (an unclosed quote) is refused with its
/// file, line and field, before anything runs.
#[test]
fn an_expression_that_cannot_be_rewritten_is_refused_with_its_field() {
    let err = parse_err(
        "table = \"t\"\n[[operations]]\nkind = \"rename_column\"\nfrom = \"score\"\nto = \"points\"\n[[operations]]\nkind = \"change_type\"\ncolumn = \"points\"\ntype = \"bigint\"\nup = \"points || 'x\"\n",
    );
    assert!(
        err.contains("plans/compose.toml:10:")
            && err.contains("operations[1].up")
            && err.contains("cannot be read"),
        "{err}"
    );
}
