//! The kinds that change only the catalog (`drop_constraint`, `rename_constraint`,
//! `drop_not_null`, `set_default`, `set_comment`), through the binary on a real database: each
//! run through release 1.0.0 (expand) and 2.0.0 (contract) with the application writing in
//! between, then the catalog and the rows; `abort` after expand puts the catalog back as it was
//! (a check or foreign key comes back NOT VALID, as documented); hostile names; bad input
//! refused with exit 2, its file, line and field, and nothing changed.

use std::path::Path;
use std::process::Command;

use tokio_postgres::Client;

use crate::support::{backfill_cmd, backfill_ok, count, rows, show, Plans, TestDb};

/// `users` with a check, a deferrable unique key and a foreign key (each with or without a
/// comment), a default, comments on the table and a column; `teams` it references and `orders`
/// that references it.
const SETUP: &str = "
CREATE TABLE teams (id bigserial PRIMARY KEY, code text NOT NULL);
CREATE TABLE users (
  id       bigserial PRIMARY KEY,
  email    text NOT NULL CONSTRAINT users_email_key UNIQUE DEFERRABLE INITIALLY DEFERRED,
  age      int CONSTRAINT users_age_check CHECK (age >= 0),
  status   text DEFAULT 'new',
  nickname text,
  team_id  bigint CONSTRAINT users_team_fkey REFERENCES teams (id) ON DELETE SET NULL
);
COMMENT ON TABLE users IS 'people who sign in';
COMMENT ON COLUMN users.email IS 'the login';
COMMENT ON CONSTRAINT users_age_check ON users IS 'no negative ages';
COMMENT ON CONSTRAINT users_email_key ON users IS 'one account per address';
INSERT INTO teams (code) VALUES ('a'), ('b');
INSERT INTO users (email, age, status, team_id)
  SELECT 'u' || g || '@example.org', g, CASE WHEN g % 2 = 0 THEN 'new' ELSE 'old' END, 1 + g % 2
    FROM generate_series(1, 40) g;
CREATE TABLE orders (id bigserial PRIMARY KEY, user_id bigint CONSTRAINT orders_user_fkey REFERENCES users (id), note text);
INSERT INTO orders (user_id, note) SELECT g, 'n' || g FROM generate_series(1, 10) g;
";

/// A string in TOML, whatever it holds.
fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A plan on `table` with expand at 1.0.0 and contract at 2.0.0.
fn plan(table: &str, operations: &str) -> String {
    format!(
        "table = {}\n{operations}\n[release]\nexpand = \"1.0.0\"\ncontract = \"2.0.0\"\n",
        toml_str(table)
    )
}

/// Everything these kinds touch, and every row: the table's comment; each column with its
/// type, NOT NULL, default and comment; each constraint with its definition, whether it is
/// validated and its comment; each index; the rows. `table` is the table as SQL names it.
async fn catalog(client: &Client, table: &str) -> Vec<String> {
    let reg = format!("'{}'::regclass", table.replace('\'', "''"));
    let queries = [
        format!("SELECT 'table comment=' || coalesce(obj_description({reg}, 'pg_class'), '-')"),
        format!("SELECT 'column ' || attname || ' ' || format_type(atttypid, atttypmod) || ' notnull=' || attnotnull || ' default=' || coalesce(pg_get_expr(d.adbin, d.adrelid), '-') || ' comment=' || coalesce(col_description(attrelid, attnum), '-') FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum WHERE attrelid = {reg} AND attnum > 0 AND NOT attisdropped ORDER BY attnum"),
        format!("SELECT 'constraint ' || conname || ' ' || pg_get_constraintdef(oid) || ' validated=' || convalidated || ' comment=' || coalesce(obj_description(oid, 'pg_constraint'), '-') FROM pg_constraint WHERE conrelid = {reg} ORDER BY conname"),
        format!("SELECT 'index ' || pg_get_indexdef(indexrelid) || ' valid=' || indisvalid || ' immediate=' || indimmediate FROM pg_index WHERE indrelid = {reg} ORDER BY 1"),
        format!("SELECT 'row ' || t::text FROM {table} t ORDER BY 1"),
    ];
    let mut out = Vec::new();
    for q in queries {
        out.extend(rows(client, &q).await);
    }
    out
}

async fn setup(test: &str) -> (TestDb, Client) {
    let db = TestDb::new(test).await;
    let client = db.connect().await;
    client.batch_execute(SETUP).await.expect("setup");
    (db, client)
}

fn run(db: &TestDb, plan: &str, release: &str) -> String {
    backfill_ok(
        &["run", plan, "--release", release, "--progress", "quiet"],
        Some(&db.url),
    )
}

async fn exec(client: &Client, sql: &str) {
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// `run` again, then a write that breaks what `abort` puts back (`breaking`): `abort` fails
/// naming `names`; after `fix`, `abort` again finishes and the catalog is `expected`.
async fn abort_fails_until_fixed(
    db: &TestDb,
    client: &Client,
    file: &str,
    (breaking, names, fix): (&str, &str, &str),
    expected: &[String],
) {
    run(db, file, "1.0.0");
    exec(client, breaking).await;
    let out = backfill_cmd(&["abort", file], Some(&db.url));
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(names),
        "{}",
        show(&out)
    );
    exec(client, fix).await;
    backfill_ok(&["abort", file], Some(&db.url));
    assert_eq!(catalog(client, "users").await, expected);
}

/// The original rows of `users`, as they were seeded.
async fn seeded_users(client: &Client) -> Vec<String> {
    rows(
        client,
        "SELECT t::text FROM users t WHERE id <= 40 ORDER BY id",
    )
    .await
}

async fn state_schema_exists(client: &Client) -> bool {
    count(
        client,
        "SELECT count(*) FROM pg_namespace WHERE nspname = 'backfill'",
    )
    .await
        > 0
}

const DROP_CONSTRAINTS: &str = r#"
[[operations]]
kind = "drop_constraint"
name = "users_age_check"
[[operations]]
kind = "drop_constraint"
name = "users_email_key"
[[operations]]
kind = "drop_constraint"
name = "users_team_fkey"
"#;

#[tokio::test]
async fn drop_constraint_through_expand_and_contract() {
    let (db, client) = setup("drop_constraint_contract").await;
    let seeded = seeded_users(&client).await;
    let plans = Plans::new("drop_constraint_contract");
    let file = plans.write("drop.toml", &plan("users", DROP_CONSTRAINTS));
    let out = run(&db, &file, "1.0.0");
    assert!(out.contains("contract waits for release 2.0.0"), "{out}");
    assert_eq!(
        rows(
            &client,
            "SELECT conname::text FROM pg_constraint WHERE conrelid = 'users'::regclass ORDER BY 1"
        )
        .await,
        ["users_pkey"]
    );
    // The unique key's index went with it.
    assert_eq!(
        rows(&client, "SELECT to_regclass('users_email_key')::text").await,
        ["NULL"]
    );
    // The new release writes what the constraints refused.
    exec(
        &client,
        "INSERT INTO users (email, age, team_id) VALUES ('u1@example.org', -1, 99)",
    )
    .await;
    let out = run(&db, &file, "2.0.0");
    assert!(out.contains("contract done"), "{out}");
    assert_eq!(
        rows(
            &client,
            "SELECT conname::text FROM pg_constraint WHERE conrelid = 'users'::regclass ORDER BY 1"
        )
        .await,
        ["users_pkey"]
    );
    assert_eq!(seeded_users(&client).await, seeded);
    assert_eq!(count(&client, "SELECT count(*) FROM users").await, 41);
}

#[tokio::test]
async fn abort_puts_dropped_constraints_back() {
    let (db, client) = setup("drop_constraint_abort").await;
    let before = catalog(&client, "users").await;
    let plans = Plans::new("drop_constraint_abort");
    let file = plans.write("drop.toml", &plan("users", DROP_CONSTRAINTS));
    run(&db, &file, "1.0.0");
    assert_ne!(catalog(&client, "users").await, before);
    backfill_ok(&["abort", &file], Some(&db.url));
    // The check and the foreign key come back NOT VALID (metadata only), then are validated in
    // transactions of their own; the unique key on its index built again, deferrable, with its
    // comment: exactly as before.
    let expected = before.clone();
    assert_eq!(catalog(&client, "users").await, expected);

    // A row the check refuses, written while it was gone: the validation, and so `abort`,
    // fails naming it; once the row is fixed, abort again finishes the job.
    abort_fails_until_fixed(
        &db,
        &client,
        &file,
        (
            "UPDATE users SET age = -1 WHERE id = 1",
            "users_age_check",
            "UPDATE users SET age = 1 WHERE id = 1",
        ),
        &expected,
    )
    .await;

    // Duplicates written while the key was gone: the index cannot be built again, and abort
    // says so; once they are fixed, abort again finishes the job.
    abort_fails_until_fixed(
        &db,
        &client,
        &file,
        (
            "INSERT INTO users (id, email, age) VALUES (1000, 'u1@example.org', 1)",
            "users_email_key",
            "DELETE FROM users WHERE id = 1000",
        ),
        &expected,
    )
    .await;
    assert_eq!(count(&client, "SELECT count(*) FROM users").await, 40);
}

#[tokio::test]
async fn drop_constraint_refuses_what_a_foreign_key_rests_on() {
    let (db, client) = setup("drop_constraint_refused").await;
    let before = catalog(&client, "users").await;
    let plans = Plans::new("drop_constraint_refused");
    let file = plans.write(
        "drop_pkey.toml",
        &plan(
            "users",
            "[[operations]]\nkind = \"drop_constraint\"\nname = \"users_pkey\"\n",
        ),
    );
    let out = backfill_cmd(&["run", &file, "--release", "1.0.0"], Some(&db.url));
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{file}:4:1: operations[0].name: "))
            && stderr.contains("foreign key \"orders_user_fkey\" of public.orders references \"public\".\"users\" through \"users_pkey\""),
        "{stderr}"
    );
    assert_eq!(catalog(&client, "users").await, before);
    assert!(!state_schema_exists(&client).await);

    // A plan that moves data may not drop the key its backfill walks by.
    let file = plans.write(
        "drop_key.toml",
        &plan(
            "orders",
            "[[operations]]\nkind = \"update_rows\"\nset = { note = \"upper(note)\" }\n[[operations]]\nkind = \"drop_constraint\"\nname = \"orders_pkey\"\n",
        ),
    );
    let out = backfill_cmd(&["validate", &file], Some(&db.url));
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("operations[1].name: constraint \"orders_pkey\" holds the key"),
        "{}",
        show(&out)
    );
}

#[tokio::test]
async fn drop_a_foreign_key_and_abort() {
    let (db, client) = setup("drop_fk_abort").await;
    let before = catalog(&client, "orders").await;
    let plans = Plans::new("drop_fk_abort");
    let file = plans.write(
        "drop_fk.toml",
        &plan(
            "orders",
            "[[operations]]\nkind = \"drop_constraint\"\nname = \"orders_user_fkey\"\n",
        ),
    );
    run(&db, &file, "1.0.0");
    assert_eq!(
        rows(
            &client,
            "SELECT count(*)::text FROM pg_constraint WHERE conname = 'orders_user_fkey'"
        )
        .await,
        ["0"]
    );
    backfill_ok(&["abort", &file], Some(&db.url));
    assert_eq!(catalog(&client, "orders").await, before);
    // Enforced again for every write.
    assert!(client
        .batch_execute("INSERT INTO orders (user_id) VALUES (12345)")
        .await
        .is_err());
}

const RENAMES: &str = r#"
[[operations]]
kind = "rename_constraint"
from = "users_email_key"
to = "users_email_unique"
[[operations]]
kind = "rename_constraint"
from = "users_age_check"
to = "users_age_not_negative"
"#;

#[tokio::test]
async fn rename_constraint_through_expand_contract_and_abort() {
    let (db, client) = setup("rename_constraint").await;
    let before = catalog(&client, "users").await;
    let plans = Plans::new("rename_constraint");
    let file = plans.write("rename.toml", &plan("users", RENAMES));
    run(&db, &file, "1.0.0");
    assert_eq!(
        rows(&client, "SELECT conname || ' ' || coalesce(conindid::regclass::text, '-') || ' ' || coalesce(obj_description(oid, 'pg_constraint'), '-') FROM pg_constraint WHERE conrelid = 'users'::regclass ORDER BY 1").await,
        [
            "users_age_not_negative - no negative ages",
            "users_email_unique users_email_unique one account per address",
            "users_pkey users_pkey -",
            "users_team_fkey teams_pkey -",
        ]
    );
    backfill_ok(&["abort", &file], Some(&db.url));
    assert_eq!(catalog(&client, "users").await, before);

    // Both releases: still enforced under the new names.
    run(&db, &file, "1.0.0");
    assert!(client
        .batch_execute("INSERT INTO users (email, age) VALUES ('x@example.org', -3)")
        .await
        .is_err());
    exec(
        &client,
        "INSERT INTO users (email, age) VALUES ('x@example.org', 3)",
    )
    .await;
    let out = run(&db, &file, "2.0.0");
    assert!(out.contains("contract done"), "{out}");
    assert_eq!(
        rows(
            &client,
            "SELECT conname::text FROM pg_constraint WHERE conrelid = 'users'::regclass ORDER BY 1"
        )
        .await,
        [
            "users_age_not_negative",
            "users_email_unique",
            "users_pkey",
            "users_team_fkey"
        ]
    );
    assert_eq!(count(&client, "SELECT count(*) FROM users").await, 41);

    // The new name is taken.
    let taken = plans.write(
        "taken.toml",
        &plan(
            "users",
            "[[operations]]\nkind = \"rename_constraint\"\nfrom = \"users_team_fkey\"\nto = \"users_pkey\"\n",
        ),
    );
    let out = backfill_cmd(&["validate", &taken], Some(&db.url));
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!(
            "{taken}:5:1: operations[0].to: \"public\".\"users\" already has a constraint named \"users_pkey\""
        )),
        "{}",
        show(&out)
    );
}

const DROP_NOT_NULL: &str = r#"
[[operations]]
kind = "drop_not_null"
column = "email"
"#;

#[tokio::test]
async fn drop_not_null_through_expand_and_contract() {
    let (db, client) = setup("drop_not_null_contract").await;
    let seeded = seeded_users(&client).await;
    let plans = Plans::new("drop_not_null_contract");
    let file = plans.write("nullable.toml", &plan("users", DROP_NOT_NULL));
    run(&db, &file, "1.0.0");
    let nullable = "SELECT (NOT attnotnull)::text FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'email'";
    assert_eq!(rows(&client, nullable).await, ["true"]);
    exec(&client, "INSERT INTO users (email, age) VALUES (NULL, 5)").await;
    let out = run(&db, &file, "2.0.0");
    assert!(out.contains("contract done"), "{out}");
    assert_eq!(rows(&client, nullable).await, ["true"]);
    assert_eq!(seeded_users(&client).await, seeded);
}

#[tokio::test]
async fn drop_not_null_abort_sets_it_back_through_a_validated_check() {
    let (db, client) = setup("drop_not_null_abort").await;
    let before = catalog(&client, "users").await;
    let plans = Plans::new("drop_not_null_abort");
    let file = plans.write("nullable.toml", &plan("users", DROP_NOT_NULL));
    run(&db, &file, "1.0.0");
    assert_ne!(catalog(&client, "users").await, before);
    backfill_ok(&["abort", &file], Some(&db.url));
    // NOT NULL again, and no check of backfill's left.
    assert_eq!(catalog(&client, "users").await, before);

    // A NULL written meanwhile: the validation fails, abort says which check; fixed, it goes on.
    abort_fails_until_fixed(
        &db,
        &client,
        &file,
        (
            "INSERT INTO users (id, email, age) VALUES (1000, NULL, 5)",
            "bf_users_email_not_null",
            "DELETE FROM users WHERE id = 1000",
        ),
        &before,
    )
    .await;

    // A column of the primary key keeps NOT NULL: refused.
    let pk = plans.write(
        "pk.toml",
        &plan(
            "users",
            "[[operations]]\nkind = \"drop_not_null\"\ncolumn = \"id\"\n",
        ),
    );
    let out = backfill_cmd(&["validate", &pk], Some(&db.url));
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("operations[0].column: column \"id\" of \"public\".\"users\" is part of the primary key \"users_pkey\""),
        "{}",
        show(&out)
    );
}

#[tokio::test]
async fn set_default_through_expand_contract_and_abort() {
    let (db, client) = setup("set_default").await;
    let seeded = seeded_users(&client).await;
    let before = catalog(&client, "users").await;
    let plans = Plans::new("set_default");
    let set = plans.write(
        "set.toml",
        &plan(
            "users",
            "[[operations]]\nkind = \"set_default\"\ncolumn = \"status\"\ndefault = \"'active'\"\n[[operations]]\nkind = \"set_default\"\ncolumn = \"nickname\"\ndefault = \"'it''s ' || 'me'\"\n",
        ),
    );
    run(&db, &set, "1.0.0");
    exec(
        &client,
        "INSERT INTO users (id, email) VALUES (1000, 'new@example.org')",
    )
    .await;
    assert_eq!(
        rows(
            &client,
            "SELECT status || '/' || nickname FROM users WHERE id = 1000"
        )
        .await,
        ["active/it's me"]
    );
    exec(&client, "DELETE FROM users WHERE id = 1000").await;
    backfill_ok(&["abort", &set], Some(&db.url));
    assert_eq!(catalog(&client, "users").await, before);

    run(&db, &set, "1.0.0");
    let out = run(&db, &set, "2.0.0");
    assert!(out.contains("contract done"), "{out}");
    assert_eq!(
        rows(&client, "SELECT attname || '=' || pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum WHERE d.adrelid = 'users'::regclass AND attname IN ('status', 'nickname') ORDER BY 1").await,
        ["nickname=('it''s '::text || 'me'::text)", "status='active'::text"]
    );
    assert_eq!(seeded_users(&client).await, seeded);

    // `default = false` drops it; abort puts the one there was back.
    let (db2, client2) = setup("set_default_drop").await;
    let before = catalog(&client2, "users").await;
    let drop = plans.write(
        "drop.toml",
        &plan(
            "users",
            "[[operations]]\nkind = \"set_default\"\ncolumn = \"status\"\ndefault = false\n",
        ),
    );
    run(&db2, &drop, "1.0.0");
    assert_eq!(
        rows(&client2, "SELECT count(*)::text FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum WHERE d.adrelid = 'users'::regclass AND attname = 'status'").await,
        ["0"]
    );
    backfill_ok(&["abort", &drop], Some(&db2.url));
    assert_eq!(catalog(&client2, "users").await, before);
}

/// A default and a comment on a column the same plan adds: abort before expand ran changes
/// nothing (the column is not there yet), abort after it drops the column.
#[tokio::test]
async fn default_and_comment_of_a_column_the_plan_adds() {
    let (db, client) = setup("catalog_new_column").await;
    let before = catalog(&client, "users").await;
    let plans = Plans::new("catalog_new_column");
    let file = plans.write(
        "new.toml",
        &plan(
            "users",
            "[[operations]]\nkind = \"add_column\"\nname = \"plan\"\ntype = \"text\"\n[[operations]]\nkind = \"set_default\"\ncolumn = \"plan\"\ndefault = \"'free'\"\n[[operations]]\nkind = \"set_comment\"\ncolumn = \"plan\"\ncomment = \"what they pay for\"\n",
        ),
    );
    backfill_ok(&["abort", &file], Some(&db.url));
    assert_eq!(catalog(&client, "users").await, before);
    run(&db, &file, "1.0.0");
    exec(
        &client,
        "INSERT INTO users (id, email) VALUES (1000, 'n@example.org')",
    )
    .await;
    assert_eq!(
        rows(&client, "SELECT plan || '/' || col_description('users'::regclass, 7) FROM users WHERE id = 1000").await,
        ["free/what they pay for"]
    );
    exec(&client, "DELETE FROM users WHERE id = 1000").await;
    backfill_ok(&["abort", &file], Some(&db.url));
    assert_eq!(catalog(&client, "users").await, before);
}

/// A comment with everything that could end a literal or start a statement.
const HOSTILE_TEXT: &str = "it's a \\ back\\slash, $$ dollars $$, $x$ tags $x$, -- not a comment\nsecond line; DROP TABLE victim; '";

#[tokio::test]
async fn set_comment_through_expand_contract_and_abort() {
    let (db, client) = setup("set_comment").await;
    exec(&client, "CREATE TABLE victim (x int)").await;
    let before = catalog(&client, "users").await;
    let plans = Plans::new("set_comment");
    let file = plans.write(
        "comment.toml",
        &plan(
            "users",
            &format!(
                "[[operations]]\nkind = \"set_comment\"\ncomment = {text}\n[[operations]]\nkind = \"set_comment\"\ncolumn = \"email\"\ncomment = {text}\n[[operations]]\nkind = \"set_comment\"\ncolumn = \"nickname\"\ncomment = \"how friends call them\"\n",
                text = toml_str(HOSTILE_TEXT)
            ),
        ),
    );
    run(&db, &file, "1.0.0");
    let comments = "SELECT coalesce(obj_description('users'::regclass, 'pg_class'), '-') UNION ALL SELECT coalesce(col_description('users'::regclass, 2), '-') UNION ALL SELECT coalesce(col_description('users'::regclass, 5), '-')";
    assert_eq!(
        rows(&client, comments).await,
        [HOSTILE_TEXT, HOSTILE_TEXT, "how friends call them"]
    );
    backfill_ok(&["abort", &file], Some(&db.url));
    assert_eq!(catalog(&client, "users").await, before);

    run(&db, &file, "1.0.0");
    let out = run(&db, &file, "2.0.0");
    assert!(out.contains("contract done"), "{out}");
    assert_eq!(
        rows(&client, comments).await,
        [HOSTILE_TEXT, HOSTILE_TEXT, "how friends call them"]
    );
    assert_eq!(count(&client, "SELECT count(*) FROM victim").await, 0);
    // An empty comment removes it.
    let clear = plans.write(
        "clear.toml",
        &plan(
            "users",
            "[[operations]]\nkind = \"set_comment\"\ncolumn = \"email\"\ncomment = \"\"\n",
        ),
    );
    run(&db, &clear, "1.0.0");
    assert_eq!(
        rows(
            &client,
            "SELECT coalesce(col_description('users'::regclass, 2), '-')"
        )
        .await,
        ["-"]
    );
}

/// Names with quotes, spaces, comment markers, dollar-quote tags and backslashes, in every
/// role these kinds give them.
mod hostile {
    pub const TABLE: &str = "we\"ird -- t $$";
    pub const EMAIL: &str = "e\"mail -- $$ x";
    pub const STATUS: &str = "st'at\\us $x$";
    pub const CHECK: &str = "chk \"q\" -- $x$ 'c";
    pub const UNIQUE: &str = "uq \"u\" $$ 'x";
    pub const RENAMED: &str = "uq2 \"v\" -- $y$ \\";
}

fn qi(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

async fn hostile_setup(test: &str) -> (TestDb, Client) {
    use hostile::*;
    let db = TestDb::new(test).await;
    let client = db.connect().await;
    exec(
        &client,
        &format!(
            "CREATE TABLE victim (x int);
             CREATE TABLE {t} (id bigserial PRIMARY KEY, {e} text NOT NULL CONSTRAINT {u} UNIQUE, {s} text DEFAULT 'x''y', n int CONSTRAINT {c} CHECK (n >= 0));
             COMMENT ON CONSTRAINT {c} ON {t} IS 'c''s';
             COMMENT ON COLUMN {t}.{e} IS 'was';
             INSERT INTO {t} ({e}, n) SELECT 'e' || g, g FROM generate_series(1, 20) g;",
            t = qi(TABLE),
            e = qi(EMAIL),
            s = qi(STATUS),
            c = qi(CHECK),
            u = qi(UNIQUE),
        ),
    )
    .await;
    (db, client)
}

fn hostile_plan() -> String {
    use hostile::*;
    plan(
        TABLE,
        &format!(
            "[[operations]]\nkind = \"drop_constraint\"\nname = {c}\n[[operations]]\nkind = \"rename_constraint\"\nfrom = {u}\nto = {r}\n[[operations]]\nkind = \"drop_not_null\"\ncolumn = {e}\n[[operations]]\nkind = \"set_default\"\ncolumn = {s}\ndefault = {d}\n[[operations]]\nkind = \"set_comment\"\ncolumn = {e}\ncomment = {text}\n[[operations]]\nkind = \"set_comment\"\ncomment = {text}\n",
            c = toml_str(CHECK),
            u = toml_str(UNIQUE),
            r = toml_str(RENAMED),
            e = toml_str(EMAIL),
            s = toml_str(STATUS),
            d = toml_str("'$$ -- '' \\'"),
            text = toml_str(HOSTILE_TEXT),
        ),
    )
}

#[tokio::test]
async fn hostile_names_through_both_releases_and_abort() {
    use hostile::*;
    let table = qi(TABLE);
    let plans = Plans::new("catalog_hostile");
    let file = plans.write("hostile.toml", &hostile_plan());

    let (db, client) = hostile_setup("catalog_hostile_abort").await;
    let before = catalog(&client, &table).await;
    backfill_ok(&["validate", &file], Some(&db.url));
    run(&db, &file, "1.0.0");
    assert_ne!(catalog(&client, &table).await, before);
    backfill_ok(&["abort", &file], Some(&db.url));
    assert_eq!(catalog(&client, &table).await, before);

    let (db, client) = hostile_setup("catalog_hostile_contract").await;
    run(&db, &file, "1.0.0");
    exec(
        &client,
        &format!(
            "INSERT INTO {table} (id, {}, n) VALUES (100, NULL, -1)",
            qi(EMAIL)
        ),
    )
    .await;
    let out = run(&db, &file, "2.0.0");
    assert!(out.contains("contract done"), "{out}");
    let reg = format!("'{}'::regclass", table.replace('\'', "''"));
    assert_eq!(
        rows(
            &client,
            &format!("SELECT conname::text FROM pg_constraint WHERE conrelid = {reg} ORDER BY 1")
        )
        .await,
        [RENAMED.to_string(), format!("{TABLE}_pkey")]
    );
    assert_eq!(
        rows(&client, &format!("SELECT {} || '|' || coalesce(col_description({reg}, 2), '-') || '|' || obj_description({reg}, 'pg_class') FROM {table} WHERE id = 100", qi(STATUS))).await,
        [format!("$$ -- ' \\|{HOSTILE_TEXT}|{HOSTILE_TEXT}")]
    );
    assert_eq!(
        count(&client, &format!("SELECT count(*) FROM {table}")).await,
        21
    );
    assert_eq!(count(&client, "SELECT count(*) FROM victim").await, 0);
}

#[tokio::test]
async fn bad_input_is_refused_with_its_place_and_nothing_changes() {
    let (db, client) = setup("catalog_bad_input").await;
    let before = catalog(&client, "users").await;
    let plans = Plans::new("catalog_bad_input");
    let missing = plans.write(
        "missing.toml",
        &plan(
            "users",
            "[[operations]]\nkind = \"drop_constraint\"\nname = \"users_nope_check\"\n[[operations]]\nkind = \"rename_constraint\"\nfrom = \"orders_user_fkey\"\nto = \"x\"\n[[operations]]\nkind = \"drop_not_null\"\ncolumn = \"nope\"\n[[operations]]\nkind = \"set_comment\"\ncolumn = \"gone\"\ncomment = \"x\"\n",
        ),
    );
    let out = backfill_cmd(&["run", &missing, "--release", "1.0.0"], Some(&db.url));
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        format!("{missing}:4:1: operations[0].name: \"public\".\"users\" has no constraint named \"users_nope_check\""),
        format!("{missing}:7:1: operations[1].from: \"public\".\"users\" has no constraint named \"orders_user_fkey\" (a foreign key of public.orders that references it has that name"),
        format!("{missing}:11:1: operations[2].column: column \"nope\" does not exist in table \"public\".\"users\""),
        format!("{missing}:14:1: operations[3].column: column \"gone\" does not exist in table \"public\".\"users\""),
    ] {
        assert!(stderr.contains(&expected), "{expected}\n{stderr}");
    }

    let bad_default = plans.write(
        "bad_default.toml",
        &plan(
            "users",
            "[[operations]]\nkind = \"set_default\"\ncolumn = \"status\"\ndefault = \"nonsense(\"\n",
        ),
    );
    let out = backfill_cmd(&["run", &bad_default, "--release", "1.0.0"], Some(&db.url));
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{bad_default}:5:1: operations[0].default: "))
            && stderr.contains("syntax error"),
        "{stderr}"
    );

    // A constraint that change_type would carry over, and so bring back at contract.
    let carried = plans.write(
        "carried.toml",
        &plan(
            "users",
            "[[operations]]\nkind = \"change_type\"\ncolumn = \"age\"\ntype = \"bigint\"\n[[operations]]\nkind = \"drop_constraint\"\nname = \"users_age_check\"\n",
        ),
    );
    let out = backfill_cmd(&["validate", &carried], Some(&db.url));
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("{carried}:8:1: operations[1].name: conflicting operations: constraint \"users_age_check\" is on column \"age\", which operations[0] carries over")),
        "{}",
        show(&out)
    );

    // Without a database: a constraint named twice, `default = true`, an empty name.
    let local = plans.write(
        "local.toml",
        &plan(
            "users",
            "[[operations]]\nkind = \"drop_constraint\"\nname = \"users_age_check\"\n[[operations]]\nkind = \"rename_constraint\"\nfrom = \"users_age_check\"\nto = \"\"\n",
        ),
    );
    let out = backfill_cmd(&["validate", &local], None);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{local}:7:1: operations[1].from: conflicting operations: constraint \"users_age_check\" is already dropped or renamed by operations[0]"))
            && stderr.contains(&format!("{local}:8:1: operations[1].to: must not be empty")),
        "{stderr}"
    );
    let truthy = plans.write(
        "truthy.toml",
        &plan(
            "users",
            "[[operations]]\nkind = \"set_default\"\ncolumn = \"status\"\ndefault = true\n",
        ),
    );
    let out = backfill_cmd(&["validate", &truthy], None);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`default = true` says nothing"),
        "{}",
        show(&out)
    );

    assert_eq!(catalog(&client, "users").await, before);
    assert!(!state_schema_exists(&client).await);
}

/// `plan --sql` and `export --format sql|alembic`: the exported expand and rollback scripts run
/// with psql and bring the catalog back; the rollback changes nothing before expand, or when
/// run a second time.
#[tokio::test]
async fn plan_and_exported_sql() {
    let (db, client) = setup("catalog_export").await;
    let before = catalog(&client, "users").await;
    let plans = Plans::new("catalog_export");
    let file = plans.write(
        "all.toml",
        &plan(
            "users",
            "[[operations]]\nkind = \"drop_constraint\"\nname = \"users_email_key\"\n[[operations]]\nkind = \"rename_constraint\"\nfrom = \"users_age_check\"\nto = \"users_age_ok\"\n[[operations]]\nkind = \"drop_not_null\"\ncolumn = \"email\"\n[[operations]]\nkind = \"set_default\"\ncolumn = \"status\"\ndefault = \"'active'\"\n[[operations]]\nkind = \"set_comment\"\ncomment = \"who signs in\"\n",
        ),
    );
    let sql = backfill_ok(&["plan", &file, "--sql"], Some(&db.url));
    assert!(
        sql.contains("ALTER TABLE \"public\".\"users\" RENAME CONSTRAINT \"users_age_check\" TO \"users_age_ok\";")
            && sql.contains("CREATE UNIQUE INDEX CONCURRENTLY \"users_email_key\" ON \"public\".\"users\" USING btree (email)"),
        "{sql}"
    );
    let out_dir = Path::new(&plans.dir()).join("out");
    let out_arg = out_dir.display().to_string();
    backfill_ok(
        &["export", &file, "--format", "sql", "--out", &out_arg],
        Some(&db.url),
    );
    backfill_ok(
        &["export", &file, "--format", "alembic", "--out", &out_arg],
        Some(&db.url),
    );
    let psql = |name: &str| {
        let out = Command::new("psql")
            .arg(&db.url)
            .args(["-v", "ON_ERROR_STOP=1", "-q", "-f"])
            .arg(out_dir.join(name))
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql -f {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // Before expand the rollback finds nothing to undo.
    psql("all.rollback.sql");
    assert_eq!(catalog(&client, "users").await, before);
    psql("all.expand.sql");
    assert_ne!(catalog(&client, "users").await, before);
    psql("all.rollback.sql");
    assert_eq!(catalog(&client, "users").await, before);
    psql("all.rollback.sql");
    assert_eq!(catalog(&client, "users").await, before);
}
