//! Every operation kind, applied to a real table with rows: expand, dual-write, writes by the
//! old release (old columns) and by the new one (new columns), a one-statement backfill,
//! contract; then the rows are checked one by one. The rollback path of each kind must leave
//! schema and data exactly as they were.

use std::path::Path;

use backfill::executor::{backfill_in_one_statement, count_out_of_sync, run_steps, ExecOptions};
use backfill::plan::Plan;
use backfill::planner::{Phase, PlannerOptions, Schedule};
use backfill::validate::validate;
use tokio_postgres::Client;

use crate::support::{backfill_ok, rows, snapshot, TestDb};

/// One operation kind's story.
struct Scenario {
    name: &'static str,
    /// Creates and fills the table.
    setup: &'static str,
    /// The plan.
    plan: &'static str,
    /// The old release writes (old columns), after dual-write and before the backfill.
    old_writes: &'static str,
    /// The new release writes (new columns), after the backfill.
    new_writes: &'static str,
    /// Before contract: a query over the transition schema and its expected rows (the old
    /// columns must reflect what the new release wrote).
    transition: (&'static str, &'static [&'static str]),
    /// After contract: a query over the final schema and its expected rows.
    result: (&'static str, &'static [&'static str]),
}

fn exec() -> ExecOptions {
    ExecOptions {
        lock_timeout: std::time::Duration::from_secs(2),
        retries: 3,
    }
}

async fn apply(client: &mut Client, schedule: &Schedule, phase: Phase) {
    run_steps(
        client,
        schedule,
        schedule.phase(phase),
        &phase.to_string(),
        &exec(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

async fn apply_rollback(client: &mut Client, schedule: &Schedule) {
    run_steps(client, schedule, &schedule.rollback, "rollback", &exec())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

async fn plan_for(client: &mut Client, text: &str) -> Schedule {
    let plan = Plan::parse(Path::new("plans/test.toml"), text).unwrap_or_else(|e| panic!("{e}"));
    validate(client, &plan, &PlannerOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .schedule
}

async fn out_of_sync(client: &Client, schedule: &Schedule) -> i64 {
    count_out_of_sync(client, schedule)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn contract_path(s: &Scenario) {
    let db = TestDb::new(s.name).await;
    let mut client = db.connect().await;
    client.batch_execute(s.setup).await.expect("setup");
    let schedule = plan_for(&mut client, s.plan).await;

    apply(&mut client, &schedule, Phase::Expand).await;
    apply(&mut client, &schedule, Phase::DualWrite).await;
    client
        .batch_execute(s.old_writes)
        .await
        .unwrap_or_else(|e| panic!("{}: old release writes: {e}", s.name));
    if let Some(b) = &schedule.backfill {
        backfill_in_one_statement(&mut client, b)
            .await
            .unwrap_or_else(|e| panic!("{}: backfill: {e}", s.name));
        assert_eq!(
            out_of_sync(&client, &schedule).await,
            0,
            "{}: rows out of sync after the backfill",
            s.name
        );
        // Idempotent: a second run changes nothing.
        let again = backfill_in_one_statement(&mut client, b)
            .await
            .expect("rerun");
        assert_eq!(again, 0, "{}: a rerun of the backfill rewrote rows", s.name);
    }
    client
        .batch_execute(s.new_writes)
        .await
        .unwrap_or_else(|e| panic!("{}: new release writes: {e}", s.name));
    // The old release keeps running next to the new one until contract.
    client
        .batch_execute(s.old_writes)
        .await
        .unwrap_or_else(|e| panic!("{}: old release writes again: {e}", s.name));
    assert_eq!(
        out_of_sync(&client, &schedule).await,
        0,
        "{}: rows out of sync after the writes",
        s.name
    );

    let (sql, expected) = s.transition;
    assert_eq!(
        rows(&client, sql).await,
        expected,
        "{}: transition schema",
        s.name
    );

    apply(&mut client, &schedule, Phase::Contract).await;
    let (sql, expected) = s.result;
    assert_eq!(
        rows(&client, sql).await,
        expected,
        "{}: after contract",
        s.name
    );
}

async fn rollback_path(s: &Scenario) {
    let db = TestDb::new(&format!("{}_rollback", s.name)).await;
    let mut client = db.connect().await;
    client.batch_execute(s.setup).await.expect("setup");
    let before = snapshot(&client, "t", "id").await;
    let schedule = plan_for(&mut client, s.plan).await;
    apply(&mut client, &schedule, Phase::Expand).await;
    apply(&mut client, &schedule, Phase::DualWrite).await;
    if let Some(b) = &schedule.backfill {
        backfill_in_one_statement(&mut client, b)
            .await
            .expect("backfill");
    }
    assert_ne!(
        snapshot(&client, "t", "id").await,
        before,
        "{}: expand changed nothing",
        s.name
    );
    apply_rollback(&mut client, &schedule).await;
    assert_eq!(
        snapshot(&client, "t", "id").await,
        before,
        "{}: rollback",
        s.name
    );
    // Rolling back twice is harmless (every statement is IF EXISTS).
    apply_rollback(&mut client, &schedule).await;
    assert_eq!(
        snapshot(&client, "t", "id").await,
        before,
        "{}: second rollback",
        s.name
    );
}

/// Writes the scenario's plan with releases 1.4.0 (expand) and 1.5.0 (contract) to a file.
fn plan_file(s: &Scenario, suffix: &str) -> (std::path::PathBuf, String) {
    let dir = std::env::temp_dir().join(format!(
        "backfill-runner-{}-{}{suffix}",
        std::process::id(),
        s.name
    ));
    std::fs::create_dir_all(&dir).expect("plan folder");
    let path = dir.join(format!("{}.toml", s.name));
    std::fs::write(
        &path,
        format!(
            "{}\n[release]\nexpand = \"1.4.0\"\ncontract = \"1.5.0\"\n",
            s.plan
        ),
    )
    .expect("write the plan");
    let arg = path.display().to_string();
    (dir, arg)
}

/// The scenario through `backfill run` as a deploy pipeline runs it: release 1.4.0 (expand,
/// dual-write, backfill; contract refused), both application releases writing, `verify`,
/// release 1.5.0 (contract), then the rows and the final schema.
async fn runner_path(s: &Scenario) {
    let db = TestDb::new(&format!("{}_runner", s.name)).await;
    let client = db.connect().await;
    client.batch_execute(s.setup).await.expect("setup");
    let (dir, plan) = plan_file(s, "");
    let out = backfill_ok(
        &["run", &plan, "--release", "1.4.0", "--progress", "quiet"],
        Some(&db.url),
    );
    assert!(
        out.contains("contract waits for release 1.5.0"),
        "{}: contract at 1.4.0: {out}",
        s.name
    );
    for writes in [s.old_writes, s.new_writes, s.old_writes] {
        client
            .batch_execute(writes)
            .await
            .unwrap_or_else(|e| panic!("{}: application writes: {e}", s.name));
    }
    backfill_ok(&["verify", &plan], Some(&db.url));
    let (sql, expected) = s.transition;
    assert_eq!(rows(&client, sql).await, expected, "{}: transition", s.name);
    let out = backfill_ok(&["run", &plan, "--release", "1.5.0"], Some(&db.url));
    assert!(out.contains("contract done"), "{}: {out}", s.name);
    let (sql, expected) = s.result;
    assert_eq!(
        rows(&client, sql).await,
        expected,
        "{}: after contract",
        s.name
    );
    let out = backfill_ok(&["run", &plan, "--release", "1.6.0"], Some(&db.url));
    assert!(out.contains("every phase is done"), "{}: {out}", s.name);
    let _ = std::fs::remove_dir_all(dir);
}

/// A snapshot without backfill's own state tables (they stay after an abort, as a log).
pub async fn user_snapshot(client: &Client, table: &str, key: &str) -> Vec<String> {
    snapshot(client, table, key)
        .await
        .into_iter()
        .filter(|l| {
            !((l.starts_with("relation backfill.") || l.starts_with("function backfill."))
                && !l.contains("_undo"))
        })
        .collect()
}

/// `backfill run --release 1.4.0` then `backfill abort`: schema and rows exactly as before.
async fn abort_path(s: &Scenario) {
    let db = TestDb::new(&format!("{}_abort", s.name)).await;
    let client = db.connect().await;
    client.batch_execute(s.setup).await.expect("setup");
    let before = user_snapshot(&client, "t", "id").await;
    let (dir, plan) = plan_file(s, "_abort");
    backfill_ok(
        &["run", &plan, "--release", "1.4.0", "--progress", "quiet"],
        Some(&db.url),
    );
    assert_ne!(
        user_snapshot(&client, "t", "id").await,
        before,
        "{}: nothing ran",
        s.name
    );
    backfill_ok(&["abort", &plan], Some(&db.url));
    assert_eq!(
        user_snapshot(&client, "t", "id").await,
        before,
        "{}: abort",
        s.name
    );
    // A new run starts over.
    backfill_ok(
        &["run", &plan, "--release", "1.4.0", "--progress", "quiet"],
        Some(&db.url),
    );
    backfill_ok(&["verify", &plan], Some(&db.url));
    let _ = std::fs::remove_dir_all(dir);
}

const PEOPLE: &str = "CREATE TABLE t (id bigserial PRIMARY KEY, full_name text, email text, age int, score int NOT NULL DEFAULT 0);
INSERT INTO t (full_name, email, age) VALUES ('Ada Lovelace', ' Ada@Example.com', 36), ('Alan Turing', 'alan@example.com', 41), (NULL, NULL, NULL), ('Grace Hopper', 'GRACE@example.com ', -5);";

const ADD_COLUMN: Scenario = Scenario {
    name: "add_column",
    setup: PEOPLE,
    plan: r#"
table = "t"
[[operations]]
kind = "add_column"
name = "initials"
type = "text"
up = "upper(left(split_part(full_name, ' ', 1), 1) || left(split_part(full_name, ' ', 2), 1))"
"#,
    old_writes:
        "INSERT INTO t (id, full_name) VALUES (10, 'Edsger Dijkstra') ON CONFLICT (id) DO NOTHING;",
    new_writes: "INSERT INTO t (id, full_name, initials) VALUES (11, 'Barbara Liskov', 'BL');",
    transition: (
        "SELECT id || ':' || coalesce(initials, 'NULL') FROM t ORDER BY id",
        &["1:AL", "2:AT", "3:NULL", "4:GH", "10:ED", "11:BL"],
    ),
    result: (
        "SELECT id || ':' || coalesce(initials, 'NULL') FROM t ORDER BY id",
        &["1:AL", "2:AT", "3:NULL", "4:GH", "10:ED", "11:BL"],
    ),
};

const ADD_COLUMN_NOT_NULL_DEFAULT: Scenario = Scenario {
    name: "add_column_not_null_default",
    setup: PEOPLE,
    plan: r#"
table = "t"
[[operations]]
kind = "add_column"
name = "status"
type = "text"
default = "'active'"
nullable = false
"#,
    old_writes: "INSERT INTO t (id, full_name) VALUES (10, 'Edsger Dijkstra') ON CONFLICT (id) DO NOTHING;",
    new_writes: "INSERT INTO t (id, full_name, status) VALUES (11, 'Barbara Liskov', 'invited'); UPDATE t SET status = 'blocked' WHERE id = 2;",
    transition: ("SELECT id || ':' || status FROM t ORDER BY id", &["1:active", "2:blocked", "3:active", "4:active", "10:active", "11:invited"]),
    result: ("SELECT id || ':' || status || ':' || (SELECT attnotnull::text FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'status') FROM t ORDER BY id", &["1:active:true", "2:blocked:true", "3:active:true", "4:active:true", "10:active:true", "11:invited:true"]),
};

const RENAME_COLUMN: Scenario = Scenario {
    name: "rename_column",
    setup: PEOPLE,
    plan: r#"
table = "t"
[[operations]]
kind = "rename_column"
from = "email"
to = "email_address"
"#,
    old_writes: "INSERT INTO t (id, email) VALUES (10, 'old@example.com') ON CONFLICT (id) DO UPDATE SET email = 'old2@example.com'; UPDATE t SET email = 'alan@turing.org' WHERE id = 2;",
    new_writes: "INSERT INTO t (id, email_address) VALUES (11, 'new@example.com'); UPDATE t SET email_address = 'ada@lovelace.org' WHERE id = 1;",
    transition: ("SELECT id || ':' || coalesce(email, 'NULL') || ':' || coalesce(email_address, 'NULL') FROM t ORDER BY id", &["1:ada@lovelace.org:ada@lovelace.org", "2:alan@turing.org:alan@turing.org", "3:NULL:NULL", "4:GRACE@example.com :GRACE@example.com ", "10:old2@example.com:old2@example.com", "11:new@example.com:new@example.com"]),
    result: ("SELECT id || ':' || coalesce(email_address, 'NULL') FROM t ORDER BY id", &["1:ada@lovelace.org", "2:alan@turing.org", "3:NULL", "4:GRACE@example.com ", "10:old2@example.com", "11:new@example.com"]),
};

const CHANGE_TYPE: Scenario = Scenario {
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

const SPLIT_COLUMN: Scenario = Scenario {
    name: "split_column",
    setup: PEOPLE,
    plan: r#"
name = "split_full_name"
table = "t"
[[operations]]
kind = "split_column"
column = "full_name"
into = [
  { name = "first_name", type = "text", up = "split_part(full_name, ' ', 1)" },
  { name = "last_name",  type = "text", up = "split_part(full_name, ' ', 2)" },
]
down = "concat_ws(' ', first_name, last_name)"
"#,
    old_writes: "INSERT INTO t (id, full_name) VALUES (10, 'Edsger Dijkstra') ON CONFLICT (id) DO UPDATE SET full_name = 'Edsger W'; UPDATE t SET full_name = 'Alan Mathison' WHERE id = 2;",
    new_writes: "INSERT INTO t (id, first_name, last_name) VALUES (11, 'Barbara', 'Liskov'); UPDATE t SET last_name = 'Byron' WHERE id = 1;",
    transition: ("SELECT id || ':' || coalesce(full_name, 'NULL') || ':' || coalesce(first_name, 'NULL') || ':' || coalesce(last_name, 'NULL') FROM t ORDER BY id", &["1:Ada Byron:Ada:Byron", "2:Alan Mathison:Alan:Mathison", "3:NULL:NULL:NULL", "4:Grace Hopper:Grace:Hopper", "10:Edsger W:Edsger:W", "11:Barbara Liskov:Barbara:Liskov"]),
    result: ("SELECT id || ':' || coalesce(first_name, 'NULL') || ':' || coalesce(last_name, 'NULL') || ':' || (SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'full_name' AND NOT attisdropped) FROM t ORDER BY id", &["1:Ada:Byron:0", "2:Alan:Mathison:0", "3:NULL:NULL:0", "4:Grace:Hopper:0", "10:Edsger:W:0", "11:Barbara:Liskov:0"]),
};

const MERGE_COLUMNS: Scenario = Scenario {
    name: "merge_columns",
    setup: "CREATE TABLE t (id bigserial PRIMARY KEY, first_name text, last_name text);
INSERT INTO t (first_name, last_name) VALUES ('Ada', 'Lovelace'), ('Alan', 'Turing'), (NULL, NULL);",
    plan: r#"
table = "t"
[[operations]]
kind = "merge_columns"
columns = ["first_name", "last_name"]
into = { name = "full_name", type = "text", up = "concat_ws(' ', first_name, last_name)" }
down = { first_name = "split_part(full_name, ' ', 1)", last_name = "split_part(full_name, ' ', 2)" }
"#,
    old_writes: "INSERT INTO t (id, first_name, last_name) VALUES (10, 'Edsger', 'Dijkstra') ON CONFLICT (id) DO UPDATE SET last_name = 'W'; UPDATE t SET last_name = 'Byron' WHERE id = 1;",
    new_writes: "INSERT INTO t (id, full_name) VALUES (11, 'Barbara Liskov'); UPDATE t SET full_name = 'Alan Mathison' WHERE id = 2;",
    transition: ("SELECT id || ':' || coalesce(first_name, 'NULL') || ':' || coalesce(last_name, 'NULL') || ':' || full_name FROM t ORDER BY id", &["1:Ada:Byron:Ada Byron", "2:Alan:Mathison:Alan Mathison", "3:NULL:NULL:", "10:Edsger:W:Edsger W", "11:Barbara:Liskov:Barbara Liskov"]),
    result: ("SELECT id || ':' || full_name FROM t ORDER BY id", &["1:Ada Byron", "2:Alan Mathison", "3:", "10:Edsger W", "11:Barbara Liskov"]),
};

const SET_NOT_NULL: Scenario = Scenario {
    name: "set_not_null",
    setup: PEOPLE,
    plan: r#"
table = "t"
[[operations]]
kind = "set_not_null"
column = "email"
fill = "'unknown+' || id || '@invalid'"
"#,
    old_writes: "INSERT INTO t (id, email) VALUES (10, NULL) ON CONFLICT (id) DO UPDATE SET email = NULL; UPDATE t SET email = NULL WHERE id = 2;",
    new_writes: "INSERT INTO t (id, email) VALUES (11, 'new@example.com');",
    transition: ("SELECT id || ':' || email FROM t ORDER BY id", &["1: Ada@Example.com", "2:unknown+2@invalid", "3:unknown+3@invalid", "4:GRACE@example.com ", "10:unknown+10@invalid", "11:new@example.com"]),
    result: ("SELECT id || ':' || email || ':' || (SELECT attnotnull::text FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'email') FROM t ORDER BY id", &["1: Ada@Example.com:true", "2:unknown+2@invalid:true", "3:unknown+3@invalid:true", "4:GRACE@example.com :true", "10:unknown+10@invalid:true", "11:new@example.com:true"]),
};

const ADD_CHECK: Scenario = Scenario {
    name: "add_check",
    setup: PEOPLE,
    plan: r#"
table = "t"
[[operations]]
kind = "add_check"
name = "t_age_positive"
check = "age >= 0"
fill = { age = "0" }
"#,
    old_writes: "INSERT INTO t (id, age) VALUES (10, -1) ON CONFLICT (id) DO UPDATE SET age = -2; UPDATE t SET age = -3 WHERE id = 2;",
    new_writes: "INSERT INTO t (id, age) VALUES (11, 30);",
    transition: ("SELECT id || ':' || coalesce(age::text, 'NULL') FROM t ORDER BY id", &["1:36", "2:0", "3:NULL", "4:0", "10:0", "11:30"]),
    result: ("SELECT id || ':' || coalesce(age::text, 'NULL') || ':' || (SELECT convalidated::text FROM pg_constraint WHERE conname = 't_age_positive') FROM t ORDER BY id", &["1:36:true", "2:0:true", "3:NULL:true", "4:0:true", "10:0:true", "11:30:true"]),
};

const ADD_FOREIGN_KEY: Scenario = Scenario {
    name: "add_foreign_key",
    setup: "CREATE TABLE users (id bigint PRIMARY KEY, name text);
INSERT INTO users VALUES (1, 'ada'), (2, 'alan');
CREATE TABLE t (id bigserial PRIMARY KEY, user_id bigint);
INSERT INTO t (user_id) VALUES (1), (2), (NULL);",
    plan: r#"
table = "t"
[[operations]]
kind = "add_foreign_key"
columns = ["user_id"]
references = { table = "users", columns = ["id"] }
on_delete = "set_null"
"#,
    old_writes: "INSERT INTO t (id, user_id) VALUES (10, 2) ON CONFLICT (id) DO NOTHING;",
    new_writes: "DELETE FROM users WHERE id = 1;",
    transition: ("SELECT id || ':' || coalesce(user_id::text, 'NULL') FROM t ORDER BY id", &["1:NULL", "2:2", "3:NULL", "10:2"]),
    result: ("SELECT id || ':' || coalesce(user_id::text, 'NULL') || ':' || (SELECT convalidated::text FROM pg_constraint WHERE conname = 't_user_id_fkey') FROM t ORDER BY id", &["1:NULL:true", "2:2:true", "3:NULL:true", "10:2:true"]),
};

const ADD_UNIQUE: Scenario = Scenario {
    name: "add_unique",
    setup: PEOPLE,
    plan: r#"
table = "t"
[[operations]]
kind = "add_unique"
columns = ["email"]
"#,
    old_writes: "INSERT INTO t (id, email) VALUES (10, 'x@example.com') ON CONFLICT (id) DO NOTHING;",
    new_writes: "INSERT INTO t (id, email) VALUES (11, 'y@example.com');",
    transition: ("SELECT id || ':' || coalesce(email, 'NULL') FROM t ORDER BY id", &["1: Ada@Example.com", "2:alan@example.com", "3:NULL", "4:GRACE@example.com ", "10:x@example.com", "11:y@example.com"]),
    result: ("SELECT conname || ':' || contype::text FROM pg_constraint WHERE conrelid = 't'::regclass AND contype = 'u'", &["t_email_key:u"]),
};

const CREATE_INDEX: Scenario = Scenario {
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

const DROP_COLUMN: Scenario = Scenario {
    name: "drop_column",
    setup: "CREATE TABLE t (id bigserial PRIMARY KEY, name text, legacy_code text NOT NULL);
INSERT INTO t (name, legacy_code) VALUES ('a', 'A1'), ('b', 'B2');",
    plan: r#"
table = "t"
[[operations]]
kind = "drop_column"
column = "legacy_code"
down = "'none'"
"#,
    old_writes: "INSERT INTO t (id, name, legacy_code) VALUES (10, 'c', 'C3') ON CONFLICT (id) DO NOTHING;",
    new_writes: "INSERT INTO t (id, name) VALUES (11, 'd');",
    transition: ("SELECT id || ':' || name || ':' || legacy_code FROM t ORDER BY id", &["1:a:A1", "2:b:B2", "10:c:C3", "11:d:none"]),
    result: ("SELECT id || ':' || name || ':' || (SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'legacy_code' AND NOT attisdropped) FROM t ORDER BY id", &["1:a:0", "2:b:0", "10:c:0", "11:d:0"]),
};

const UPDATE_ROWS: Scenario = Scenario {
    name: "update_rows",
    setup: PEOPLE,
    plan: r#"
table = "t"
[[operations]]
kind = "update_rows"
set = { email = "lower(trim(email))" }
where = "email <> lower(trim(email))"
"#,
    old_writes: "INSERT INTO t (id, email) VALUES (10, 'MiXeD@Example.com') ON CONFLICT (id) DO UPDATE SET email = ' Again@Example.com';",
    new_writes: "UPDATE t SET email = 'Alan@Example.com' WHERE id = 2;",
    transition: ("SELECT id || ':' || coalesce(email, 'NULL') FROM t ORDER BY id", &["1:ada@example.com", "2:alan@example.com", "3:NULL", "4:grace@example.com", "10:again@example.com"]),
    result: ("SELECT id || ':' || coalesce(email, 'NULL') FROM t ORDER BY id", &["1:ada@example.com", "2:alan@example.com", "3:NULL", "4:grace@example.com", "10:again@example.com"]),
};

/// The README's second example: three operations on one column, composed in order.
const NORMALIZE_EMAILS: Scenario = Scenario {
    name: "normalize_emails",
    setup: PEOPLE,
    plan: r#"
table = "t"
[[operations]]
kind = "update_rows"
set = { email = "lower(trim(email))" }
where = "email <> lower(trim(email))"
[[operations]]
kind = "set_not_null"
column = "email"
fill = "'unknown+' || id || '@invalid'"
[[operations]]
kind = "create_index"
columns = ["email"]
unique = true
"#,
    old_writes: "INSERT INTO t (id, email) VALUES (10, NULL) ON CONFLICT (id) DO UPDATE SET email = ' X@Example.com';",
    new_writes: "INSERT INTO t (id, email) VALUES (11, 'Y@EXAMPLE.COM');",
    transition: ("SELECT id || ':' || email FROM t ORDER BY id", &["1:ada@example.com", "2:alan@example.com", "3:unknown+3@invalid", "4:grace@example.com", "10:x@example.com", "11:y@example.com"]),
    result: ("SELECT id || ':' || email || ':' || (SELECT attnotnull::text FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'email') || ':' || (SELECT indisunique::text FROM pg_index WHERE indexrelid = 't_email_key'::regclass) FROM t ORDER BY id", &["1:ada@example.com:true:true", "2:alan@example.com:true:true", "3:unknown+3@invalid:true:true", "4:grace@example.com:true:true", "10:x@example.com:true:true", "11:y@example.com:true:true"]),
};

macro_rules! scenario_tests {
    ($($contract:ident, $rollback:ident, $runner:ident, $abort:ident => $scenario:expr;)+) => {
        $(
            #[tokio::test]
            async fn $contract() {
                contract_path(&$scenario).await;
            }

            #[tokio::test]
            async fn $rollback() {
                rollback_path(&$scenario).await;
            }

            #[tokio::test]
            async fn $runner() {
                runner_path(&$scenario).await;
            }

            #[tokio::test]
            async fn $abort() {
                abort_path(&$scenario).await;
            }
        )+
    };
}

scenario_tests! {
    add_column_contract, add_column_rollback, add_column_runner, add_column_abort => ADD_COLUMN;
    add_column_not_null_contract, add_column_not_null_rollback, add_column_not_null_runner, add_column_not_null_abort => ADD_COLUMN_NOT_NULL_DEFAULT;
    rename_column_contract, rename_column_rollback, rename_column_runner, rename_column_abort => RENAME_COLUMN;
    change_type_contract, change_type_rollback, change_type_runner, change_type_abort => CHANGE_TYPE;
    split_column_contract, split_column_rollback, split_column_runner, split_column_abort => SPLIT_COLUMN;
    merge_columns_contract, merge_columns_rollback, merge_columns_runner, merge_columns_abort => MERGE_COLUMNS;
    set_not_null_contract, set_not_null_rollback, set_not_null_runner, set_not_null_abort => SET_NOT_NULL;
    add_check_contract, add_check_rollback, add_check_runner, add_check_abort => ADD_CHECK;
    add_foreign_key_contract, add_foreign_key_rollback, add_foreign_key_runner, add_foreign_key_abort => ADD_FOREIGN_KEY;
    add_unique_contract, add_unique_rollback, add_unique_runner, add_unique_abort => ADD_UNIQUE;
    create_index_contract, create_index_rollback, create_index_runner, create_index_abort => CREATE_INDEX;
    drop_column_contract, drop_column_rollback, drop_column_runner, drop_column_abort => DROP_COLUMN;
    update_rows_contract, update_rows_rollback, update_rows_runner, update_rows_abort => UPDATE_ROWS;
    normalize_emails_contract, normalize_emails_rollback, normalize_emails_runner, normalize_emails_abort => NORMALIZE_EMAILS;
}

/// A split over many rows: every row is checked against the mapping computed here, in Rust.
#[tokio::test]
async fn split_backfills_every_row_of_a_larger_table() {
    let db = TestDb::new("split_larger").await;
    let mut client = db.connect().await;
    client
        .batch_execute(
            "CREATE TABLE t (id bigserial PRIMARY KEY, full_name text);
             INSERT INTO t (full_name) SELECT 'First' || g || ' Last' || (g * 7) FROM generate_series(1, 20000) g;
             DELETE FROM t WHERE id % 97 = 0;",
        )
        .await
        .expect("setup");
    let schedule = plan_for(&mut client, SPLIT_COLUMN.plan).await;
    apply(&mut client, &schedule, Phase::Expand).await;
    apply(&mut client, &schedule, Phase::DualWrite).await;
    let spec = schedule.backfill.as_ref().expect("a backfill");
    let changed = backfill_in_one_statement(&mut client, spec)
        .await
        .expect("backfill");
    let total: i64 = client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(changed as i64, total);
    let all = client
        .query("SELECT id, first_name, last_name FROM t ORDER BY id", &[])
        .await
        .expect("rows");
    assert_eq!(all.len() as i64, total);
    for row in all {
        let id: i64 = row.get(0);
        assert_ne!(id % 97, 0);
        assert_eq!(
            row.get::<_, Option<String>>(1),
            Some(format!("First{id}")),
            "row {id}"
        );
        assert_eq!(
            row.get::<_, Option<String>>(2),
            Some(format!("Last{}", id * 7)),
            "row {id}"
        );
    }
}

/// Two plans on the same table: the backfill of one must not bypass the other's trigger.
#[tokio::test]
async fn a_backfill_still_fires_the_triggers_of_other_plans() {
    let db = TestDb::new("two_plans").await;
    let mut client = db.connect().await;
    client.batch_execute(PEOPLE).await.expect("setup");
    let rename = plan_for(
        &mut client,
        RENAME_COLUMN
            .plan
            .replace("table = \"t\"", "name = \"rename\"\ntable = \"t\"")
            .as_str(),
    )
    .await;
    apply(&mut client, &rename, Phase::Expand).await;
    apply(&mut client, &rename, Phase::DualWrite).await;
    backfill_in_one_statement(&mut client, rename.backfill.as_ref().expect("backfill"))
        .await
        .expect("backfill rename");
    let normalize = plan_for(&mut client, UPDATE_ROWS.plan).await;
    apply(&mut client, &normalize, Phase::Expand).await;
    apply(&mut client, &normalize, Phase::DualWrite).await;
    backfill_in_one_statement(&mut client, normalize.backfill.as_ref().expect("backfill"))
        .await
        .expect("backfill normalize");
    assert_eq!(
        rows(&client, "SELECT id || ':' || coalesce(email, 'NULL') || ':' || coalesce(email_address, 'NULL') FROM t ORDER BY id").await,
        ["1:ada@example.com:ada@example.com", "2:alan@example.com:alan@example.com", "3:NULL:NULL", "4:grace@example.com:grace@example.com"]
    );
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
