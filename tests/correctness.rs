//! The application never notices: writes of rows the backfill has not reached succeed,
//! columns derived by `up` follow the old release's writes, a new-release write is the truth
//! (`verify` agrees), and rows written past the trigger are re-walked (`--recheck`, and by the
//! contract by itself), with their keys reported.

use crate::support::{
    backfill_cmd, backfill_ok, backfill_spawn, count, finish, interrupt, rows, show, wait_walked,
    Plans, TestDb,
};

const SCORES: &str =
    "CREATE TABLE t (id bigint PRIMARY KEY, score int NOT NULL DEFAULT 0, age int);
INSERT INTO t SELECT g, g * 3, 20 FROM generate_series(1, 300) g;";

const WIDEN: &str = r#"
table = "t"
[[operations]]
kind = "change_type"
column = "score"
type = "bigint"
[release]
expand = "1.0"
contract = "2.0"
"#;

/// Issue: `UPDATE t SET age = 30` of a row the backfill has not reached failed with
/// `violates check constraint "..._score_bf_new_not_null"`. Any write of such a row now fills
/// it, while the backfill runs, and the contract ends with every row as written.
#[tokio::test]
async fn writes_of_rows_the_backfill_has_not_reached_succeed() {
    let db = TestDb::new("unreached_rows").await;
    let client = db.connect().await;
    client.batch_execute(SCORES).await.expect("setup");
    let plans = Plans::new("unreached_rows");
    let plan = plans.write("widen.toml", WIDEN);
    let child = backfill_spawn(
        &[
            "run",
            &plan,
            "--release",
            "1.0",
            "--max-rows-per-second",
            "5",
            "--batch-size",
            "5",
            "--workers",
            "1",
            "--progress",
            "quiet",
        ],
        &db.url,
    );
    wait_walked(&client, 0).await;
    // Rows near the end are far from the backfill's cursor; none of these touches `score`.
    for sql in [
        "UPDATE t SET age = 30 WHERE id = 300",
        "UPDATE t SET age = age + 1 WHERE id > 250",
        "UPDATE t SET age = age WHERE id = 299",
        "INSERT INTO t (id, age) VALUES (1000, 5)",
        "INSERT INTO t (id, score) VALUES (1001, NULL) ON CONFLICT DO NOTHING",
    ] {
        let r = client.batch_execute(sql).await;
        if sql.contains("NULL") {
            // The old schema refuses it too: NOT NULL on score.
            assert!(r.is_err(), "{sql} must fail as it did before");
        } else {
            r.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }
    assert!(
        count(&client, "SELECT count(*) FROM t WHERE score_bf_new IS NULL").await > 0,
        "the backfill must still be running for this test to mean anything"
    );
    interrupt(&child);
    let out = finish(child).await;
    assert!(
        matches!(out.status.code(), Some(130) | Some(0)),
        "{}",
        show(&out)
    );
    // The rate given on the command line was recorded for the backfill: lift it.
    backfill_ok(
        &[
            "run",
            &plan,
            "--release",
            "1.0",
            "--max-rows-per-second",
            "0",
        ],
        Some(&db.url),
    );
    backfill_ok(&["run", &plan, "--release", "2.0"], Some(&db.url));
    let got = rows(
        &client,
        "SELECT id || ':' || score || ':' || age || ':' || pg_typeof(score) FROM t WHERE id IN (1, 250, 251, 299, 300, 1000) ORDER BY id",
    )
    .await;
    assert_eq!(
        got,
        [
            "1:3:20:bigint",
            "250:750:20:bigint",
            "251:753:21:bigint",
            "299:897:21:bigint",
            "300:900:31:bigint",
            "1000:0:5:bigint",
        ]
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM t WHERE score <> id * 3 AND id <= 300"
        )
        .await,
        0
    );
}

const DOMAIN: &str = r#"
table = "users"
[[operations]]
kind = "add_column"
name = "email_domain"
type = "text"
up = "split_part(email, '@', 2)"
[release]
expand = "1.0"
contract = "2.0"
"#;

/// Issue: a column derived by `up` was filled on INSERT only, so an old-release
/// `UPDATE users SET email = ...` after the backfill left it stale and the deploy stuck. It
/// follows every write of what it is derived from; a value the new release writes stays.
#[tokio::test]
async fn a_derived_column_follows_the_old_release_writes() {
    let db = TestDb::new("derived_follows").await;
    let client = db.connect().await;
    client
        .batch_execute(
            "CREATE TABLE users (id bigint PRIMARY KEY, email text, age int);
             INSERT INTO users VALUES (1, 'a@one.test', 1), (2, 'b@two.test', 2), (3, NULL, 3), (4, 'd@four.test', 4);",
        )
        .await
        .expect("setup");
    let plans = Plans::new("derived_follows");
    let plan = plans.write("domain.toml", DOMAIN);
    backfill_ok(&["run", &plan, "--release", "1.0"], Some(&db.url));
    client
        .batch_execute(
            "UPDATE users SET email = 'a@moved.test' WHERE id = 1;
             UPDATE users SET email = 'c@three.test' WHERE id = 3;
             UPDATE users SET email_domain = 'chosen.test' WHERE id = 4;
             UPDATE users SET age = 40 WHERE id = 4;
             UPDATE users SET email = NULL WHERE id = 2;
             INSERT INTO users (id, email) VALUES (5, 'e@five.test');
             INSERT INTO users (id, email, email_domain) VALUES (6, 'f@six.test', 'own.test');",
        )
        .await
        .expect("application writes");
    let expected = [
        "1:moved.test",
        "2:NULL",
        "3:three.test",
        "4:chosen.test",
        "5:five.test",
        "6:own.test",
    ];
    let query = "SELECT id || ':' || coalesce(email_domain, 'NULL') FROM users ORDER BY id";
    assert_eq!(rows(&client, query).await, expected);
    let out = backfill_cmd(&["verify", &plan], Some(&db.url));
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    backfill_ok(&["run", &plan, "--release", "2.0"], Some(&db.url));
    assert_eq!(rows(&client, query).await, expected);
}

const SPLIT: &str = r#"
table = "users"
[[operations]]
kind = "split_column"
column = "full_name"
down = "concat_ws(' ', first_name, last_name)"
[[operations.into]]
name = "first_name"
type = "text"
up = "split_part(full_name, ' ', 1)"
[[operations.into]]
name = "last_name"
type = "text"
up = "split_part(full_name, ' ', 2)"
[release]
expand = "1.0"
contract = "2.0"
"#;

/// Issue: a new-release `UPDATE users SET first_name = NULL, last_name = NULL` left a row that
/// `verify` reported out of sync and no command could fix. The new release's write is the
/// truth: `verify` agrees, and the contract keeps the NULLs. Rows written past the trigger
/// (replication apply, triggers disabled) are found by `verify` with their keys, brought in
/// sync by `run --phase backfill --recheck`, and by the contract itself.
#[tokio::test]
async fn new_release_writes_are_the_truth_and_stranded_rows_are_rewalked() {
    let db = TestDb::new("stranded_rows").await;
    let client = db.connect().await;
    client
        .batch_execute(
            "CREATE TABLE users (id bigint PRIMARY KEY, full_name text);
             INSERT INTO users SELECT g, 'First' || g || ' Last' || g FROM generate_series(1, 20) g;",
        )
        .await
        .expect("setup");
    let plans = Plans::new("stranded_rows");
    let plan = plans.write("split.toml", SPLIT);
    backfill_ok(&["run", &plan, "--release", "1.0"], Some(&db.url));
    client
        .batch_execute("UPDATE users SET first_name = NULL, last_name = NULL WHERE id = 6")
        .await
        .expect("new release write");
    let out = backfill_cmd(&["verify", &plan], Some(&db.url));
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    // Written past the trigger: the new columns stay empty.
    client
        .batch_execute(
            "SET session_replication_role = replica;
             INSERT INTO users (id, full_name) VALUES (21, 'Ada Lovelace'), (22, 'Alan Turing');
             UPDATE users SET full_name = 'Grace Hopper', first_name = NULL, last_name = NULL WHERE id = 7;
             SET session_replication_role = origin;",
        )
        .await
        .expect("writes past the trigger");
    let out = backfill_cmd(&["verify", &plan], Some(&db.url));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let text = show(&out);
    assert!(
        text.contains("3 out of sync") && text.contains("\"id\" = '21'"),
        "{text}"
    );

    let out = backfill_cmd(
        &[
            "run",
            &plan,
            "--phase",
            "backfill",
            "--recheck",
            "--progress",
            "quiet",
        ],
        Some(&db.url),
    );
    let text = show(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("3 rows out of sync") && text.contains("\"id\" = '7'"),
        "{text}"
    );
    let out = backfill_cmd(&["verify", &plan], Some(&db.url));
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    // One more past the trigger: the contract re-walks it before it switches.
    client
        .batch_execute(
            "SET session_replication_role = replica;
             INSERT INTO users (id, full_name) VALUES (23, 'Edsger Dijkstra');
             SET session_replication_role = origin;",
        )
        .await
        .expect("write past the trigger");
    let out = backfill_cmd(&["run", &plan, "--release", "2.0"], Some(&db.url));
    let text = show(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("\"id\" = '23'"), "{text}");
    let got = rows(
        &client,
        "SELECT id || ':' || coalesce(first_name, 'NULL') || ':' || coalesce(last_name, 'NULL') FROM users WHERE id IN (5, 6, 7, 21, 22, 23) ORDER BY id",
    )
    .await;
    assert_eq!(
        got,
        [
            "5:First5:Last5",
            "6:NULL:NULL",
            "7:Grace:Hopper",
            "21:Ada:Lovelace",
            "22:Alan:Turing",
            "23:Edsger:Dijkstra",
        ]
    );
}

/// `--recheck` goes with `--phase backfill`; elsewhere it is a usage error (exit 2).
#[tokio::test]
async fn recheck_without_the_backfill_phase_is_a_usage_error() {
    let plans = Plans::new("recheck_usage");
    let plan = plans.write("split.toml", SPLIT);
    let out = backfill_cmd(
        &["run", &plan, "--release", "1.0", "--recheck"],
        Some("postgres://nobody@127.0.0.1:1/none"),
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(show(&out).contains("--phase backfill"), "{}", show(&out));
}

/// Everything a user would list about `t`: its columns, indexes, constraints (and those of
/// other tables referencing it), comments, privileges and statistics targets.
async fn catalog_of(client: &tokio_postgres::Client, table: &str) -> Vec<String> {
    let mut out = Vec::new();
    for q in [
        format!("SELECT 'index ' || pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = '{table}'::regclass ORDER BY 1"),
        format!("SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid) || ' validated=' || convalidated FROM pg_constraint WHERE conrelid = '{table}'::regclass OR confrelid = '{table}'::regclass ORDER BY 1"),
        format!("SELECT 'column ' || attname || ' notnull=' || attnotnull || ' default=' || coalesce(pg_get_expr(d.adbin, d.adrelid), '-') || ' comment=' || coalesce(col_description(a.attrelid, a.attnum), '-') || ' acl=' || coalesce(a.attacl::text, '-') || ' stats=' || coalesce(nullif(a.attstattarget::int4, -1)::text, '-') FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum WHERE attrelid = '{table}'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attname"),
        format!("SELECT 'sequence ' || s.oid::regclass || ' owned by ' || a.attname FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid WHERE d.refobjid = '{table}'::regclass AND d.deptype = 'a' ORDER BY 1"),
    ] {
        out.extend(rows(client, &q).await);
    }
    out
}

/// Issue: change_type lost the old column's foreign key (orphans accepted, `ON DELETE
/// CASCADE` gone) and its indexes. Every kind of index, the unique constraint, the check, the
/// foreign keys from it and to it, the comment, privileges and statistics target are there
/// after the contract, on the new column, exactly as before; and they work.
#[tokio::test]
async fn change_type_carries_everything_the_column_had() {
    let db = TestDb::new("carry_over").await;
    let client = db.connect().await;
    let reader = format!("{}_reader", db.name);
    client
        .batch_execute(&format!(
            "CREATE TABLE parent (code int PRIMARY KEY);
             INSERT INTO parent SELECT g FROM generate_series(0, 100) g;
             CREATE TABLE t (
               id bigint PRIMARY KEY,
               score int NOT NULL DEFAULT 0 CONSTRAINT t_score_positive CHECK (score >= 0)
                 CONSTRAINT t_score_parent REFERENCES parent (code) ON DELETE CASCADE,
               age int,
               CONSTRAINT t_score_uniq UNIQUE (score)
             );
             CREATE INDEX t_score_partial ON t (score) WHERE age > 30;
             CREATE INDEX t_age_score ON t (age, score DESC NULLS LAST) INCLUDE (id);
             CREATE INDEX t_score_twice ON t ((score * 2));
             COMMENT ON COLUMN t.score IS 'the score';
             ALTER TABLE t ALTER COLUMN score SET STATISTICS 500;
             CREATE ROLE \"{reader}\";
             GRANT SELECT (score) ON t TO \"{reader}\";
             CREATE TABLE child (id int PRIMARY KEY, t_score int CONSTRAINT child_t REFERENCES t (score));
             INSERT INTO t SELECT g, g, 20 + g FROM generate_series(1, 50) g;
             INSERT INTO child VALUES (1, 10), (2, 11);"
        ))
        .await
        .expect("setup");
    let before = catalog_of(&client, "t").await;
    let plans = Plans::new("carry_over");
    let plan = plans.write("widen.toml", WIDEN);
    backfill_ok(&["run", &plan, "--release", "1.0"], Some(&db.url));
    client
        .batch_execute("INSERT INTO t (id, score, age) VALUES (60, 60, 1); UPDATE t SET score = 61 WHERE id = 1; INSERT INTO child VALUES (3, 61);")
        .await
        .expect("old-release writes during the transition");
    backfill_ok(&["run", &plan, "--release", "2.0"], Some(&db.url));
    let after = catalog_of(&client, "t").await;
    assert_eq!(after, before, "the catalog after contract");
    assert_eq!(
        rows(&client, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'score'").await,
        ["bigint"]
    );
    // And they work: each statement is refused by the object carried over.
    for (sql, object) in [
        ("INSERT INTO t (id, score) VALUES (100, 20)", "t_score_uniq"),
        (
            "INSERT INTO t (id, score) VALUES (101, 100000)",
            "t_score_parent",
        ),
        (
            "INSERT INTO t (id, score) VALUES (102, -1)",
            "t_score_positive",
        ),
        ("INSERT INTO child VALUES (9, 999)", "child_t"),
        ("DELETE FROM t WHERE id = 10", "child_t"),
    ] {
        let err = client.batch_execute(sql).await.expect_err(sql);
        let text = err
            .as_db_error()
            .map(|e| e.message().to_string())
            .unwrap_or_default();
        assert!(text.contains(object), "{sql}: {text}");
    }
    client
        .batch_execute("DELETE FROM parent WHERE code = 3")
        .await
        .expect("cascade");
    assert_eq!(
        count(&client, "SELECT count(*) FROM t WHERE score = 3").await,
        0
    );
    assert_eq!(
        rows(
            &client,
            &format!("SELECT has_column_privilege('{reader}', 't', 'score', 'SELECT')::text")
        )
        .await,
        ["true"]
    );
    client
        .batch_execute(&format!(
            "DROP OWNED BY \"{reader}\"; DROP ROLE \"{reader}\""
        ))
        .await
        .expect("drop the role");
}

/// Issue: changing the type of a primary-key column was refused. The new key's unique index is
/// built concurrently, and the primary key switched `USING INDEX` at contract; the sequence
/// and the foreign keys of other tables follow.
#[tokio::test]
async fn the_type_of_a_primary_key_changes() {
    let db = TestDb::new("pk_type").await;
    let client = db.connect().await;
    client
        .batch_execute(
            "CREATE TABLE users (id serial PRIMARY KEY, name text);
             CREATE TABLE orders (id serial PRIMARY KEY, user_id int REFERENCES users (id) ON DELETE CASCADE);
             INSERT INTO users (name) SELECT 'u' || g FROM generate_series(1, 100) g;
             INSERT INTO orders (user_id) SELECT g FROM generate_series(1, 100) g;",
        )
        .await
        .expect("setup");
    let before = catalog_of(&client, "users").await;
    let plans = Plans::new("pk_type");
    let plan = plans.write(
        "widen_id.toml",
        "table = \"users\"\n[[operations]]\nkind = \"change_type\"\ncolumn = \"id\"\ntype = \"bigint\"\n[release]\nexpand = \"1.0\"\ncontract = \"2.0\"\n",
    );
    backfill_ok(&["run", &plan, "--release", "1.0"], Some(&db.url));
    client
        .batch_execute("INSERT INTO users (name) VALUES ('during'); INSERT INTO orders (user_id) VALUES (101);")
        .await
        .expect("old-release writes");
    backfill_ok(&["run", &plan, "--release", "2.0"], Some(&db.url));
    assert_eq!(catalog_of(&client, "users").await, before);
    client
        .batch_execute("INSERT INTO users (name) VALUES ('after'); DELETE FROM users WHERE id = 5;")
        .await
        .expect("writes after the contract");
    assert_eq!(
        rows(&client, "SELECT id || ':' || name || ':' || pg_typeof(id) FROM users WHERE id > 100 ORDER BY id").await,
        ["101:during:bigint", "102:after:bigint"]
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM orders WHERE user_id = 5").await,
        0
    );
    assert!(client
        .batch_execute("INSERT INTO orders (user_id) VALUES (5000)")
        .await
        .is_err());
}

/// Issue: a view selecting a column the contract drops passed `validate` and expand, then the
/// contract failed with 2BP01 a release later. Dependent objects, and indexes or constraints a
/// contract would lose, are refused at `validate`, each named, before anything changes.
#[tokio::test]
async fn what_a_contract_would_break_or_lose_is_refused_at_validate() {
    let db = TestDb::new("dependents").await;
    let client = db.connect().await;
    client
        .batch_execute(
            "CREATE TABLE users (id bigint PRIMARY KEY, full_name text, score int, legacy text, age int);
             CREATE VIEW names AS SELECT id, full_name FROM users;
             CREATE INDEX users_legacy_age ON users (legacy, age);
             CREATE INDEX users_legacy ON users (legacy);
             CREATE TABLE audit (id int, who text, age int GENERATED ALWAYS AS (length(who)) STORED);
             ALTER TABLE users ADD COLUMN twice int GENERATED ALWAYS AS (score * 2) STORED;
             ALTER TABLE users ENABLE ROW LEVEL SECURITY;
             CREATE POLICY adults ON users USING (age >= 18);
             INSERT INTO users (id, full_name, score, legacy, age) VALUES (1, 'Ada Lovelace', 3, 'x', 36);",
        )
        .await
        .expect("setup");
    let plans = Plans::new("dependents");
    let cases = [
        (
            "split.toml",
            "table = \"users\"\n[[operations]]\nkind = \"split_column\"\ncolumn = \"full_name\"\ndown = \"first_name\"\ninto = [{ name = \"first_name\", type = \"text\", up = \"full_name\" }]\n".to_string(),
            vec!["view names depends on column \"full_name\""],
        ),
        (
            "widen.toml",
            "table = \"users\"\n[[operations]]\nkind = \"change_type\"\ncolumn = \"score\"\ntype = \"bigint\"\n".to_string(),
            vec!["generated column twice depends on column \"score\""],
        ),
        (
            "drop.toml",
            "table = \"users\"\n[[operations]]\nkind = \"drop_column\"\ncolumn = \"legacy\"\n[[operations]]\nkind = \"drop_column\"\ncolumn = \"age\"\n".to_string(),
            vec![
                "index \"users_legacy_age\"",
                "policy adults on table users depends on column \"age\"",
            ],
        ),
    ];
    let before = crate::support::snapshot(&client, "users", "id").await;
    for (file, text, expected) in cases {
        let path = plans.write(file, &text);
        for command in ["validate", "run"] {
            let out = backfill_cmd(&[command, &path], Some(&db.url));
            let shown = show(&out);
            assert_eq!(out.status.code(), Some(2), "{file} {command}: {shown}");
            for e in &expected {
                assert!(
                    shown.contains(e),
                    "{file} {command}: expected {e:?} in:\n{shown}"
                );
            }
        }
        // The single-column index on the dropped column goes with it: not refused.
        assert!(!show(&backfill_cmd(&["validate", &path], Some(&db.url)))
            .contains("\"users_legacy\" ("));
    }
    assert_eq!(
        crate::support::snapshot(&client, "users", "id").await,
        before,
        "nothing changed"
    );
}

/// Issue: rows that break a new constraint (orphans, duplicates, rows failing a check, NULLs)
/// surfaced when the contract's VALIDATE failed, a release later. `validate` and `run` count
/// them before any DDL and name the first keys; with a `fill` the plan goes through.
#[tokio::test]
async fn rows_that_break_a_new_constraint_are_reported_before_anything_changes() {
    let db = TestDb::new("violations").await;
    let client = db.connect().await;
    client
        .batch_execute(
            "CREATE TABLE users (id bigint PRIMARY KEY);
             INSERT INTO users SELECT generate_series(1, 10);
             CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint, reference text, total int);
             INSERT INTO orders VALUES (1, 1, 'a', 5), (2, 77, 'b', -3), (3, 2, 'a', NULL), (4, 88, 'c', 9), (5, NULL, NULL, 1);",
        )
        .await
        .expect("setup");
    let before = crate::support::snapshot(&client, "orders", "id").await;
    let plans = Plans::new("violations");
    let op = |body: &str| format!("table = \"orders\"\n[[operations]]\n{body}\n");
    let cases = [
        (
            "fk.toml",
            op("kind = \"add_foreign_key\"\ncolumns = [\"user_id\"]\nreferences = { table = \"users\", columns = [\"id\"] }"),
            "2 rows of \"public\".\"orders\" reference no row of \"public\".\"users\", for example the rows with \"id\" = '2'; \"id\" = '4'",
        ),
        (
            "unique.toml",
            op("kind = \"add_unique\"\ncolumns = [\"reference\"]"),
            "2 rows of \"public\".\"orders\" share their (\"reference\") with another row, for example the rows with \"id\" = '1'; \"id\" = '3'",
        ),
        (
            "index.toml",
            op("kind = \"create_index\"\ncolumns = [\"reference\"]\nunique = true"),
            "share their (\"reference\") with another row",
        ),
        (
            "check.toml",
            op("kind = \"add_check\"\nname = \"total_positive\"\ncheck = \"total > 0\""),
            "1 row of \"public\".\"orders\" fail the check (give `fill` to repair them), for example the row with \"id\" = '2'",
        ),
        (
            "not_null.toml",
            op("kind = \"set_not_null\"\ncolumn = \"total\""),
            "1 row of \"public\".\"orders\" have \"total\" NULL",
        ),
    ];
    for (file, text, expected) in &cases {
        let path = plans.write(file, text);
        for command in ["validate", "run"] {
            let out = backfill_cmd(&[command, &path], Some(&db.url));
            let shown = show(&out);
            assert_eq!(out.status.code(), Some(2), "{file} {command}: {shown}");
            assert!(
                shown.contains(expected),
                "{file} {command}: expected {expected:?} in:\n{shown}"
            );
        }
    }
    assert_eq!(
        crate::support::snapshot(&client, "orders", "id").await,
        before,
        "nothing changed"
    );
    // With a fill the plan goes through, and so does a partial unique index that skips them.
    for (file, text) in [
        ("fill_check.toml", op("kind = \"add_check\"\nname = \"total_positive\"\ncheck = \"total > 0\"\nfill = { total = \"abs(total)\" }")),
        ("fill_null.toml", op("kind = \"set_not_null\"\ncolumn = \"total\"\nfill = \"0\"")),
        ("partial.toml", op("kind = \"create_index\"\ncolumns = [\"reference\"]\nunique = true\nwhere = \"id > 1\"\nname = \"orders_reference_later\"")),
    ] {
        let path = plans.write(file, &text);
        backfill_ok(&["validate", &path], Some(&db.url));
    }
}

/// Issue: a table without a primary key was refused even for operations that move no data.
/// A constant default, an index, a check, NOT NULL and a foreign key run on it through the
/// contract; rows breaking a new constraint are named by their location.
#[tokio::test]
async fn a_table_without_a_key_takes_operations_that_move_no_data() {
    let db = TestDb::new("keyless").await;
    let client = db.connect().await;
    client
        .batch_execute(
            "CREATE TABLE users (id bigint PRIMARY KEY);
             INSERT INTO users SELECT generate_series(1, 5);
             CREATE TABLE log (user_id bigint, line text, n int);
             INSERT INTO log SELECT g % 5 + 1, 'line ' || g, g FROM generate_series(1, 200) g;",
        )
        .await
        .expect("setup");
    let plans = Plans::new("keyless");
    let plan = plans.write(
        "log.toml",
        r#"table = "log"
[[operations]]
kind = "add_column"
name = "level"
type = "text"
default = "'info'"
[[operations]]
kind = "create_index"
columns = ["user_id", "n"]
[[operations]]
kind = "add_check"
name = "log_n_positive"
check = "n > 0"
[[operations]]
kind = "set_not_null"
column = "line"
[[operations]]
kind = "add_foreign_key"
columns = ["user_id"]
references = { table = "users", columns = ["id"] }
[release]
expand = "1.0"
contract = "2.0"
"#,
    );
    backfill_ok(&["run", &plan, "--release", "1.0"], Some(&db.url));
    client
        .batch_execute("INSERT INTO log (user_id, line, n) VALUES (1, 'during', 201)")
        .await
        .expect("write during the transition");
    backfill_ok(&["run", &plan, "--release", "2.0"], Some(&db.url));
    assert_eq!(
        rows(&client, "SELECT conname || ' ' || convalidated FROM pg_constraint WHERE conrelid = 'log'::regclass ORDER BY 1").await,
        ["log_n_positive true", "log_user_id_fkey true"]
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM log WHERE level = 'info'").await,
        201
    );
    assert!(client
        .batch_execute("INSERT INTO log (user_id, line, n) VALUES (99, 'x', 1)")
        .await
        .is_err());
    assert!(client
        .batch_execute("INSERT INTO log (user_id, line, n) VALUES (1, NULL, 1)")
        .await
        .is_err());

    // A row that breaks a new constraint is named by its location.
    client
        .batch_execute("INSERT INTO log (user_id, line, n) VALUES (1, 'bad', 5000)")
        .await
        .expect("a row the next plan refuses");
    let check = plans.write(
        "check.toml",
        "table = \"log\"\n[[operations]]\nkind = \"add_check\"\nname = \"log_n_small\"\ncheck = \"n < 1000\"\n",
    );
    let out = backfill_cmd(&["validate", &check], Some(&db.url));
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        show(&out).contains("for example the row with ctid = '("),
        "{}",
        show(&out)
    );
    // Values rewritten in place are saved for rollback by key: that still needs one.
    let fill = plans.write(
        "fill.toml",
        "table = \"log\"\n[[operations]]\nkind = \"update_rows\"\nset = { line = \"upper(line)\" }\n",
    );
    let out = backfill_cmd(&["validate", &fill], Some(&db.url));
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        show(&out).contains("rewrites \"line\" in place"),
        "{}",
        show(&out)
    );
}

/// Issue part 6: a table with no key is walked by physical location (ctid page windows) when
/// a backfill is needed: new columns filled, a type changed, while an application updates,
/// inserts and deletes rows, through a Ctrl-C and a SIGKILL, then verified and contracted.
/// Every row is checked against a shadow column the application keeps.
#[tokio::test]
async fn a_table_without_a_key_is_walked_by_physical_location() {
    let db = TestDb::new("keyless_walk").await;
    let client = db.connect().await;
    client
        .batch_execute(
            "CREATE TABLE events (n int NOT NULL, name text, score int NOT NULL, expect int NOT NULL);
             INSERT INTO events SELECT g, CASE WHEN g % 10 = 0 THEN NULL ELSE 'name ' || g END, g * 3, g * 3
               FROM generate_series(1, 6000) g;
             -- Empty pages in the middle: windows with no rows are walked all the same.
             DELETE FROM events WHERE n BETWEEN 2000 AND 3500;
             ANALYZE events;",
        )
        .await
        .expect("setup");
    let plans = Plans::new("keyless_walk");
    let plan = plans.write(
        "events.toml",
        r#"table = "events"
[[operations]]
kind = "change_type"
column = "score"
type = "bigint"
[[operations]]
kind = "add_column"
name = "name_len"
type = "int"
up = "length(name)"
[release]
expand = "1.0"
contract = "2.0"
"#,
    );
    let slow = [
        "run",
        &plan,
        "--release",
        "1.0",
        "--max-rows-per-second",
        "400",
        "--batch-size",
        "40",
        "--workers",
        "2",
        "--progress",
        "quiet",
    ];
    // The application, throughout: updates of any column (moving rows to other pages),
    // inserts without the new columns, deletes.
    let app = {
        let url = db.url.clone();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let c = crate::support::connect_url(&url).await;
            let mut i: i64 = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let k = i * 37 % 6000;
                let sql = match i % 5 {
                    0 => format!(
                        "UPDATE events SET score = score + 1, expect = expect + 1 WHERE n = {k}"
                    ),
                    1 => format!("UPDATE events SET name = 'renamed ' || n WHERE n = {k}"),
                    2 => format!(
                        "INSERT INTO events (n, name, score, expect) VALUES ({}, 'new', {k}, {k})",
                        10_000 + i
                    ),
                    3 => format!("DELETE FROM events WHERE n = {}", k + 1),
                    _ => format!("UPDATE events SET name = NULL WHERE n = {k}"),
                };
                c.batch_execute(&sql)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            i
        });
        (stop, task)
    };
    let child = backfill_spawn(&slow, &db.url);
    wait_walked(&client, 300).await;
    interrupt(&child);
    let out = finish(child).await;
    assert!(
        matches!(out.status.code(), Some(130) | Some(0)),
        "{}",
        show(&out)
    );
    let mut child = backfill_spawn(&slow, &db.url);
    wait_walked(&client, 1500).await;
    child.kill().expect("SIGKILL");
    let _ = finish(child).await;
    backfill_ok(
        &[
            "run",
            &plan,
            "--release",
            "1.0",
            "--max-rows-per-second",
            "0",
        ],
        Some(&db.url),
    );
    app.0.store(true, std::sync::atomic::Ordering::Relaxed);
    let statements = app.1.await.expect("application");
    assert!(statements > 50, "the application wrote during the backfill");
    let verify = backfill_ok(&["verify", &plan], Some(&db.url));
    assert!(verify.contains(", 0 out of sync"), "{verify}");
    backfill_ok(&["run", &plan, "--release", "2.0"], Some(&db.url));
    assert_eq!(
        rows(&client, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'events'::regclass AND attname IN ('score', 'name_len') ORDER BY attname").await,
        ["integer", "bigint"]
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM events WHERE score IS DISTINCT FROM expect OR name_len IS DISTINCT FROM length(name)").await,
        0,
        "{:?}",
        rows(&client, "SELECT n || ':' || score || ':' || expect || ':' || coalesce(name_len::text, '-') || ':' || coalesce(name, '-') FROM events WHERE score IS DISTINCT FROM expect OR name_len IS DISTINCT FROM length(name) LIMIT 10").await
    );
    // No row lost or doubled: the original rows left are those the application did not delete.
    assert_eq!(
        count(&client, "SELECT count(*) - count(DISTINCT n) FROM events").await,
        0
    );
    assert!(count(&client, "SELECT count(*) FROM events WHERE n < 2000").await > 1500);
}

/// A row the backfill cannot convert, in a table walked by location, is named by its page;
/// once fixed, the same command goes on from the checkpoints.
#[tokio::test]
async fn a_bad_row_of_a_table_without_a_key_is_named_by_its_page() {
    let db = TestDb::new("keyless_bad_row").await;
    let client = db.connect().await;
    client
        .batch_execute(
            "CREATE TABLE k (id int, v text);
             INSERT INTO k SELECT g, g::text FROM generate_series(1, 3000) g;
             UPDATE k SET v = 'oops' WHERE id = 2500;
             ANALYZE k;",
        )
        .await
        .expect("setup");
    let plans = Plans::new("keyless_bad_row");
    let plan = plans.write(
        "k.toml",
        "table = \"k\"\n[[operations]]\nkind = \"change_type\"\ncolumn = \"v\"\ntype = \"int\"\nup = \"v::int\"\n[release]\nexpand = \"1.0\"\ncontract = \"2.0\"\n",
    );
    let out = backfill_cmd(&["run", &plan, "--release", "1.0"], Some(&db.url));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let page = rows(
        &client,
        "SELECT ((ctid::text::point)[0])::int8::text FROM k WHERE id = 2500",
    )
    .await;
    assert!(
        show(&out).contains(&format!("\"ctid\" between '({},", page[0])),
        "{}",
        show(&out)
    );
    assert!(count(&client, "SELECT count(*) FROM k WHERE v_bf_new IS NOT NULL").await > 0);
    client
        .batch_execute("UPDATE k SET v = '2500' WHERE id = 2500")
        .await
        .expect("fix the row");
    backfill_ok(&["run", &plan, "--release", "1.0"], Some(&db.url));
    backfill_ok(&["run", &plan, "--release", "2.0"], Some(&db.url));
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM k WHERE v IS DISTINCT FROM id"
        )
        .await,
        0
    );
    assert_eq!(count(&client, "SELECT count(*) FROM k").await, 3000);
}

/// A check counted page by page of the key: rows on several pages (10,000 keys each) are all
/// counted, and the first ten are named in key order, paced by the plan's rate.
#[tokio::test]
async fn rows_breaking_a_check_are_counted_across_pages() {
    let db = TestDb::new("violations_paged").await;
    let client = db.connect().await;
    client
        .batch_execute(
            "CREATE TABLE m (id bigint PRIMARY KEY, total int);
             INSERT INTO m SELECT g, CASE WHEN g IN (3, 9999, 10000, 10001, 24999) OR g BETWEEN 20001 AND 20020 THEN -g ELSE g END
               FROM generate_series(1, 25000) g;",
        )
        .await
        .expect("setup");
    let plans = Plans::new("violations_paged");
    let plan = plans.write(
        "check.toml",
        "table = \"m\"\n[[operations]]\nkind = \"add_check\"\nname = \"total_positive\"\ncheck = \"total > 0\"\n[backfill]\nmax_rows_per_second = 200000\n",
    );
    let out = backfill_cmd(&["validate", &plan], Some(&db.url));
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let keys: Vec<String> = [
        3, 9999, 10000, 10001, 20001, 20002, 20003, 20004, 20005, 20006,
    ]
    .iter()
    .map(|k| format!("\"id\" = '{k}'"))
    .collect();
    assert!(
        show(&out).contains(&format!(
            "25 rows of \"public\".\"m\" fail the check (give `fill` to repair them), for example the rows with {}; the contract",
            keys.join("; ")
        )),
        "{}",
        show(&out)
    );
}

/// The backfill's `UPDATE` of one operation names its rows by the table's own name (the new
/// values are computed inline, not in subqueries). A table named like the chunk statement's
/// own CTEs, with a column named like the table, and expressions that name the table, a bare
/// column and that column: every row is split, across many chunks, and a rerun changes nothing.
#[tokio::test]
async fn one_operation_on_a_table_named_like_the_chunks_own_names() {
    let db = TestDb::new("inline_names").await;
    let client = db.connect().await;
    client
        .batch_execute(
            r#"CREATE TABLE "_bf_last" (id bigint PRIMARY KEY, full_name text, "_bf_last" text);
               INSERT INTO "_bf_last" SELECT g, 'F' || g || ' L' || g, 'x' || g FROM generate_series(1, 700) g;
               INSERT INTO "_bf_last" VALUES (701, NULL, NULL), (702, 'alone', 'y');"#,
        )
        .await
        .expect("setup");
    let plan_text = r#"
table = "_bf_last"
[[operations]]
kind = "split_column"
column = "full_name"
down = "concat_ws(' ', first_name, last_name)"
[[operations.into]]
name = "first_name"
type = "text"
up = "split_part(\"_bf_last\".full_name, ' ', 1) || \"_bf_last\".\"_bf_last\""
[[operations.into]]
name = "last_name"
type = "text"
up = "split_part(full_name, ' ', 2)"
[backfill]
workers = 2
batch_size = 50
min_batch_size = 10
max_batch_size = 50
[release]
expand = "1.0"
contract = "2.0"
"#;
    let plans = Plans::new("inline_names");
    let plan = plans.write("split.toml", plan_text);
    backfill_ok(&["run", &plan, "--release", "1.0"], Some(&db.url));
    let query = r#"SELECT id || ':' || coalesce(first_name, 'NULL') || ':' || coalesce(last_name, 'NULL') FROM "_bf_last" ORDER BY id"#;
    let mut expected: Vec<String> = (1..=700).map(|g| format!("{g}:F{g}x{g}:L{g}")).collect();
    expected.push("701:NULL:NULL".to_string());
    expected.push("702:aloney:".to_string());
    assert_eq!(rows(&client, query).await, expected);
    let out = backfill_cmd(&["verify", &plan], Some(&db.url));
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    backfill_ok(&["run", &plan, "--release", "2.0"], Some(&db.url));
    assert_eq!(rows(&client, query).await, expected);
}
