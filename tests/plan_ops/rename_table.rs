//! `rename_table`: from expand to contract the old release reads and writes the old name (a
//! view over the renamed table) and the new release the new name; contract drops the view,
//! rollback renames the table back. Also here: one hostile table name taken through all three
//! kinds on tables (create, rename, drop).

use super::*;
use crate::support::{backfill_cmd, count, show, Plans};

const ACCOUNTS: &str = "CREATE TABLE t (id bigserial PRIMARY KEY, email text NOT NULL, status text NOT NULL DEFAULT 'new', seen_at timestamptz DEFAULT now());
INSERT INTO t (email) VALUES ('a@x'), ('b@x'), ('c@x');";

/// The old release writes through the old name: an insert that relies on the defaults (key,
/// status), an update, a delete; the new release through the new name.
pub(super) const RENAME_TABLE: Scenario = Scenario {
    name: "rename_table",
    setup: ACCOUNTS,
    plan: r#"
table = "t"
[[operations]]
kind = "rename_table"
to = "accounts"
"#,
    old_writes: "INSERT INTO t (email) VALUES ('old'); UPDATE t SET status = 'updated' WHERE email = 'a@x'; DELETE FROM t WHERE email = 'b@x';",
    new_writes: "INSERT INTO accounts (email, status) VALUES ('new', 'invited'); UPDATE accounts SET email = 'c2@x' WHERE email = 'c@x';",
    transition: (
        "SELECT id || ':' || email || ':' || status || ':' || (seen_at IS NOT NULL) FROM t ORDER BY id",
        &["1:a@x:updated:true", "3:c2@x:new:true", "4:old:new:true", "5:new:invited:true", "6:old:new:true"],
    ),
    result: (
        "SELECT id || ':' || email || ':' || status || ':' || (to_regclass('t') IS NULL) FROM accounts ORDER BY id",
        &["1:a@x:updated:true", "3:c2@x:new:true", "4:old:new:true", "5:new:invited:true", "6:old:new:true"],
    ),
};

scenario_tests! {
    rename_table_contract, rename_table_rollback, rename_table_runner, rename_table_abort => RENAME_TABLE;
}

/// Through the binary, with roles as an application has them: between releases the old
/// release (a role granted the table) inserts relying on the defaults, updates, deletes and
/// upserts through the old name with `RETURNING`, the new release through the new name; a role
/// granted one column still reads that column (and only it) through the old name. After
/// contract every row is there under the new name and the old name is gone.
#[tokio::test]
async fn rename_table_both_names_read_and_write() {
    let db = TestDb::new("rename_table_both_names").await;
    let mut client = db.connect().await;
    let app = format!("{}_app", db.name);
    let reader = format!("{}_reader", db.name);
    client
        .batch_execute(&format!(
            "{ACCOUNTS}
             CREATE ROLE \"{app}\"; CREATE ROLE \"{reader}\";
             GRANT SELECT, INSERT, UPDATE, DELETE ON t TO \"{app}\";
             GRANT USAGE ON SEQUENCE t_id_seq TO \"{app}\";
             GRANT SELECT (email) ON t TO \"{reader}\";"
        ))
        .await
        .expect("setup");
    let plans = Plans::new("rename_table_both_names");
    let plan = plans.write(
        "rename.toml",
        &format!(
            "{}[release]\nexpand = \"1.4.0\"\ncontract = \"1.5.0\"\n",
            RENAME_TABLE.plan
        ),
    );
    let shown = backfill_ok(&["plan", &plan, "--sql"], Some(&db.url));
    assert!(
        shown.contains(&format!(
            "GRANT DELETE, INSERT, SELECT, UPDATE ON \"public\".\"t\" TO \"{app}\""
        )),
        "{shown}"
    );
    assert!(
        shown.contains(&format!(
            "GRANT SELECT (\"email\") ON \"public\".\"t\" TO \"{reader}\""
        )),
        "{shown}"
    );
    let out = backfill_ok(
        &["run", &plan, "--release", "1.4.0", "--progress", "quiet"],
        Some(&db.url),
    );
    assert!(out.contains("contract waits for release 1.5.0"), "{out}");
    assert_eq!(
        rows(&client, "SELECT relkind::text FROM pg_class WHERE oid IN ('t'::regclass, 'accounts'::regclass) ORDER BY relname").await,
        ["r", "v"]
    );

    let tx = client.transaction().await.expect("begin");
    tx.batch_execute(&format!("SET LOCAL ROLE \"{app}\""))
        .await
        .expect("role");
    let one = |sql: &'static str| {
        let tx = &tx;
        async move {
            tx.query(sql, &[])
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        one("INSERT INTO t (email) VALUES ('old') RETURNING id || ':' || status || ':' || (seen_at IS NOT NULL)").await,
        ["4:new:true"],
        "the old release's insert gets the table's defaults"
    );
    assert_eq!(
        one("UPDATE t SET status = 'updated' WHERE email = 'a@x' RETURNING id || ':' || status")
            .await,
        ["1:updated"]
    );
    assert_eq!(
        one("DELETE FROM t WHERE email = 'b@x' RETURNING id::text").await,
        ["2"]
    );
    assert_eq!(
        one("INSERT INTO t (id, email) VALUES (3, 'c@x') ON CONFLICT (id) DO UPDATE SET status = 'upserted' RETURNING id || ':' || status").await,
        ["3:upserted"]
    );
    assert_eq!(
        one("INSERT INTO accounts (email, status) VALUES ('new', 'invited') RETURNING id || ':' || status").await,
        ["5:invited"],
        "the new release writes the new name"
    );
    assert_eq!(
        one("UPDATE accounts SET email = 'a2@x' WHERE id = 1 RETURNING email").await,
        ["a2@x"]
    );
    assert_eq!(
        one("SELECT string_agg(id || ':' || email, ',' ORDER BY id) FROM t").await,
        ["1:a2@x,3:c@x,4:old,5:new"],
        "each release sees the other's writes"
    );
    tx.commit().await.expect("commit");

    let tx = client.transaction().await.expect("begin");
    tx.batch_execute(&format!("SET LOCAL ROLE \"{reader}\""))
        .await
        .expect("role");
    let emails: Vec<String> = tx
        .query("SELECT email FROM t ORDER BY email", &[])
        .await
        .expect("the column grant follows the old name")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(emails, ["a2@x", "c@x", "new", "old"]);
    assert!(tx.query("SELECT status FROM t", &[]).await.is_err());
    drop(tx);

    // A plan written for the old name now finds a view there, and says so.
    let later = plans.write(
        "later.toml",
        "table = \"t\"\n[[operations]]\nkind = \"create_index\"\ncolumns = [\"email\"]\n",
    );
    let out = backfill_cmd(&["validate", &later], Some(&db.url));
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        show(&out).contains("\"public\".\"t\" is a view, not a table"),
        "{}",
        show(&out)
    );

    backfill_ok(&["verify", &plan], Some(&db.url));
    let status = backfill_ok(&["status"], Some(&db.url));
    assert!(status.contains("rename"), "{status}");
    let out = backfill_ok(&["run", &plan, "--release", "1.5.0"], Some(&db.url));
    assert!(out.contains("contract done"), "{out}");
    assert_eq!(
        rows(
            &client,
            "SELECT id || ':' || email || ':' || status FROM accounts ORDER BY id"
        )
        .await,
        [
            "1:a2@x:updated",
            "3:c@x:upserted",
            "4:old:new",
            "5:new:invited"
        ]
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM pg_class WHERE relname = 't'").await,
        0
    );
    // The indexes, constraints and sequence kept their names; the grants are the table's.
    assert_eq!(
        rows(
            &client,
            "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = 'accounts'::regclass"
        )
        .await,
        ["t_pkey"]
    );
    assert_eq!(
        count(
            &client,
            &format!("SELECT count(*) FROM information_schema.role_table_grants WHERE table_name = 'accounts' AND grantee = '{app}'")
        )
        .await,
        4
    );
    let out = backfill_ok(&["run", &plan, "--release", "1.6.0"], Some(&db.url));
    assert!(out.contains("every phase is done"), "{out}");
}

/// On a table with row security the old name applies the policies to the caller, as the
/// table does: each role sees and changes only its own rows through either name.
#[tokio::test]
async fn rename_table_keeps_row_security() {
    let db = TestDb::new("rename_table_row_security").await;
    let mut client = db.connect().await;
    let (alice, bob) = (format!("{}_alice", db.name), format!("{}_bob", db.name));
    client
        .batch_execute(&format!(
            "CREATE TABLE t (id bigserial PRIMARY KEY, owner_name text NOT NULL DEFAULT current_user, note text);
             CREATE ROLE \"{alice}\"; CREATE ROLE \"{bob}\";
             GRANT SELECT, INSERT, UPDATE, DELETE ON t TO \"{alice}\", \"{bob}\";
             GRANT USAGE ON SEQUENCE t_id_seq TO \"{alice}\", \"{bob}\";
             ALTER TABLE t ENABLE ROW LEVEL SECURITY;
             CREATE POLICY own ON t USING (owner_name = current_user);
             INSERT INTO t (owner_name, note) VALUES ('{alice}', 'a1'), ('{bob}', 'b1');"
        ))
        .await
        .expect("setup");
    let plans = Plans::new("rename_table_row_security");
    let plan = plans.write(
        "rename.toml",
        &format!(
            "{}[release]\nexpand = \"1.4.0\"\ncontract = \"1.5.0\"\n",
            RENAME_TABLE.plan
        ),
    );
    let shown = backfill_ok(&["plan", &plan, "--sql"], Some(&db.url));
    assert!(shown.contains("WITH (security_invoker = true)"), "{shown}");
    backfill_ok(
        &["run", &plan, "--release", "1.4.0", "--progress", "quiet"],
        Some(&db.url),
    );
    for (role, mine) in [(&alice, "a1"), (&bob, "b1")] {
        let tx = client.transaction().await.expect("begin");
        tx.batch_execute(&format!("SET LOCAL ROLE \"{role}\"; INSERT INTO t (note) VALUES ('via old'); UPDATE t SET note = note || '!'"))
            .await
            .expect("writes through the old name");
        for name in ["t", "accounts"] {
            let notes: Vec<String> = tx
                .query(&format!("SELECT note FROM {name} ORDER BY id"), &[])
                .await
                .expect("read")
                .iter()
                .map(|r| r.get(0))
                .collect();
            assert_eq!(
                notes,
                [format!("{mine}!"), "via old!".to_string()],
                "{role} through {name}"
            );
        }
        tx.commit().await.expect("commit");
    }
    assert_eq!(count(&client, "SELECT count(*) FROM accounts").await, 4);
}

/// A name that is taken, a name with a schema, the same name: exit 2, the field named, nothing
/// changed.
#[tokio::test]
async fn rename_table_mistakes_are_refused() {
    let db = TestDb::new("rename_table_mistakes").await;
    let client = db.connect().await;
    client
        .batch_execute(&format!(
            "{ACCOUNTS} CREATE TABLE accounts (id int); CREATE TYPE mood AS ENUM ('ok');"
        ))
        .await
        .expect("setup");
    let before = snapshot(&client, "t", "id").await;
    let plans = Plans::new("rename_table_mistakes");
    for (file, to, expected) in [
        (
            "taken.toml",
            "accounts",
            "operations[0].to: \"public\".\"accounts\" already exists (a table); pick another name",
        ),
        (
            "type.toml",
            "mood",
            "operations[0].to: \"public\".\"mood\" already exists (a type)",
        ),
        (
            "schema.toml",
            "app.accounts",
            "operations[0].to: `app.accounts`: write the new name without a schema",
        ),
        (
            "same.toml",
            "t",
            "operations[0].to: \"public\".\"t\" already has this name",
        ),
        ("empty.toml", "", "operations[0].to: must not be empty"),
    ] {
        let path = plans.write(
            file,
            &format!("table = \"t\"\n[[operations]]\nkind = \"rename_table\"\nto = \"{to}\"\n"),
        );
        for command in ["validate", "run"] {
            let out = backfill_cmd(&[command, &path], Some(&db.url));
            let shown = show(&out);
            assert_eq!(out.status.code(), Some(2), "{file}: {shown}");
            assert!(shown.contains(expected), "{file}: {expected:?} in {shown}");
        }
    }
    let path = plans.write(
        "two.toml",
        "table = \"t\"\n[[operations]]\nkind = \"rename_table\"\nto = \"users\"\n[[operations]]\nkind = \"create_index\"\ncolumns = [\"email\"]\n",
    );
    let out = backfill_cmd(&["validate", &path], Some(&db.url));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        show(&out).contains("rename_table changes the table as a whole: give it a plan of its own"),
        "{}",
        show(&out)
    );
    assert_eq!(snapshot(&client, "t", "id").await, before);
}

/// A plan written for the new name after the rename in the same folder is checked against the
/// renamed table before the rename ran, so the folder runs in one go.
#[tokio::test]
async fn rename_table_then_a_later_plan_on_the_new_name() {
    let db = TestDb::new("rename_table_later_plan").await;
    let client = db.connect().await;
    client.batch_execute(ACCOUNTS).await.expect("setup");
    let plans = Plans::new("rename_table_later_plan");
    plans.write(
        "0001_rename.toml",
        &format!(
            "{}[release]\nexpand = \"1.4.0\"\ncontract = \"1.5.0\"\n",
            RENAME_TABLE.plan
        ),
    );
    plans.write(
        "0002_accounts_email_index.toml",
        "table = \"accounts\"\n[[operations]]\nkind = \"create_index\"\ncolumns = [\"email\"]\n[release]\nexpand = \"1.5.0\"\ncontract = \"1.6.0\"\n",
    );
    // A plan after the rename that is still written for the old name would find a view
    // there once the rename ran: refused up front, nothing run.
    let stale = plans.write(
        "0003_t_email_index.toml",
        "table = \"t\"\n[[operations]]\nkind = \"create_index\"\ncolumns = [\"email\"]\n",
    );
    let before = snapshot(&client, "t", "id").await;
    let out = backfill_cmd(&["run", &plans.dir(), "--release", "1.4.0"], Some(&db.url));
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        show(&out).contains("0003_t_email_index.toml:1:1: table: plan `0001_rename` before this one renames \"public\".\"t\" to \"public\".\"accounts\": write this plan for \"public\".\"accounts\""),
        "{}",
        show(&out)
    );
    assert_eq!(snapshot(&client, "t", "id").await, before);
    std::fs::remove_file(stale).expect("remove the stale plan");

    backfill_ok(&["validate", &plans.dir()], Some(&db.url));
    backfill_ok(
        &[
            "run",
            &plans.dir(),
            "--release",
            "1.4.0",
            "--progress",
            "quiet",
        ],
        Some(&db.url),
    );
    backfill_ok(
        &[
            "run",
            &plans.dir(),
            "--release",
            "1.5.0",
            "--progress",
            "quiet",
        ],
        Some(&db.url),
    );
    assert_eq!(
        rows(
            &client,
            "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = 'accounts'::regclass ORDER BY 1"
        )
        .await,
        ["accounts_email_idx", "t_pkey"]
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM pg_class WHERE relname = 't'").await,
        0
    );
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// An SQL identifier.
fn sql_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A table whose name holds a quote, a space and `--` (and columns as bad) through
/// `create_table`, `rename_table` (to another such name) and `drop_table`, each across two
/// releases, with a `victim` table an injection would drop.
#[tokio::test]
async fn table_kinds_take_a_hostile_table_name() {
    let db = TestDb::new("table_kinds_hostile").await;
    let client = db.connect().await;
    client
        .batch_execute("CREATE TABLE victim (id int); INSERT INTO victim VALUES (1);")
        .await
        .expect("setup");
    let first = "we\"ird --name";
    let second = "it's \"new\" -- name; DROP TABLE victim";
    let (key, text) = ("i\"d --", "b'o\"dy; --");
    let plans = Plans::new("table_kinds_hostile");
    let releases = "[release]\nexpand = \"1.4.0\"\ncontract = \"1.5.0\"\n";
    let create = plans.write(
        "create.toml",
        &format!(
            "table = {}\n[[operations]]\nkind = \"create_table\"\ncolumns = [{{ name = {}, type = \"bigint\", identity = true }}, {{ name = {}, type = \"text\", default = \"'x'\" }}]\nprimary_key = [{}]\nchecks = [{{ name = {}, check = {} }}]\n{releases}",
            toml_str(first),
            toml_str(key),
            toml_str(text),
            toml_str(key),
            toml_str("c\"k --"),
            toml_str(&format!("length({}) < 100", sql_ident(text))),
        ),
    );
    let rename = plans.write(
        "rename.toml",
        &format!(
            "table = {}\n[[operations]]\nkind = \"rename_table\"\nto = {}\n{releases}",
            toml_str(first),
            toml_str(second)
        ),
    );
    let drop = plans.write(
        "drop.toml",
        &format!(
            "table = {}\n[[operations]]\nkind = \"drop_table\"\n{releases}",
            toml_str(second)
        ),
    );
    let (a, b) = (sql_ident(first), sql_ident(second));
    let (k, t) = (sql_ident(key), sql_ident(text));
    for release in ["1.4.0", "1.5.0"] {
        backfill_ok(
            &["run", &create, "--release", release, "--progress", "quiet"],
            Some(&db.url),
        );
    }
    client
        .batch_execute(&format!(
            "INSERT INTO {a} DEFAULT VALUES; INSERT INTO {a} ({t}) VALUES ('y');"
        ))
        .await
        .expect("writes");
    backfill_ok(
        &["run", &rename, "--release", "1.4.0", "--progress", "quiet"],
        Some(&db.url),
    );
    client
        .batch_execute(&format!(
            "INSERT INTO {a} DEFAULT VALUES; UPDATE {b} SET {t} = 'z' WHERE {k} = 1;"
        ))
        .await
        .expect("both names");
    backfill_ok(
        &["run", &rename, "--release", "1.5.0", "--progress", "quiet"],
        Some(&db.url),
    );
    assert_eq!(
        rows(
            &client,
            &format!("SELECT {k} || ':' || {t} FROM {b} ORDER BY {k}")
        )
        .await,
        ["1:z", "2:y", "3:x"]
    );
    assert_eq!(
        count(
            &client,
            &format!(
                "SELECT count(*) FROM pg_class WHERE relname = '{}'",
                first.replace('\'', "''")
            )
        )
        .await,
        0
    );
    for release in ["1.4.0", "1.5.0"] {
        backfill_ok(
            &["run", &drop, "--release", release, "--progress", "quiet"],
            Some(&db.url),
        );
    }
    assert_eq!(
        count(
            &client,
            &format!(
                "SELECT count(*) FROM pg_class WHERE relname = '{}'",
                second.replace('\'', "''")
            )
        )
        .await,
        0
    );
    assert_eq!(count(&client, "SELECT count(*) FROM victim").await, 1);
}
