//! Inputs and commands that can be trusted: releases are versions, exit 2 means nothing was
//! changed (every plan, every flag and the role's rights checked before the first statement),
//! least privilege as on managed PostgreSQL, plans in flight validated against their recorded
//! catalog, and expressions that name columns by the table.

use crate::support::{
    backfill_cmd, backfill_ok, count, interrupt, rows, seed_users, show, Plans, TestDb,
};

/// Whether the state schema exists.
async fn state_exists(client: &tokio_postgres::Client) -> bool {
    count(
        client,
        "SELECT count(*) FROM pg_namespace WHERE nspname = 'backfill'",
    )
    .await
        > 0
}

/// The columns of `users`, in order.
async fn user_columns(client: &tokio_postgres::Client) -> Vec<String> {
    rows(
        client,
        "SELECT attname::text FROM pg_attribute WHERE attrelid = 'users'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
    )
    .await
}

const DOMAIN: &str = r#"
table = "users"
[[operations]]
kind = "add_column"
name = "email_domain"
type = "text"
up = "split_part(users.email, '@', 2)"
[release]
expand = "1.0.0"
contract = "2.1.0"
"#;

#[tokio::test]
async fn a_word_is_not_a_release_and_nothing_runs() {
    let db = TestDb::new("trust_release_word").await;
    let client = db.connect().await;
    seed_users(&client, 50).await;
    let plans = Plans::new("release_word");
    let plan = plans.write("0001_domain.toml", DOMAIN);
    for word in ["main", "latest", "two", "1.x", "2.1.0+build"] {
        let out = backfill_cmd(&["run", &plan, "--release", word], Some(&db.url));
        assert_eq!(
            out.status.code(),
            Some(2),
            "--release {word}: {}",
            show(&out)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("is not a release"),
            "{}",
            show(&out)
        );
    }
    assert!(
        !state_exists(&client).await,
        "a refused run created the state schema"
    );
    assert_eq!(user_columns(&client).await, ["id", "full_name", "email"]);
    // Versions order as numbers, pre-releases before their release: 2.1.0-rc1 is before the
    // contract gate of 2.1.0, 2.10.0 after it.
    backfill_ok(
        &["run", &plan, "--release", "1.0.0", "--progress", "quiet"],
        Some(&db.url),
    );
    let out = backfill_ok(&["run", &plan, "--release", "2.1.0-rc1"], Some(&db.url));
    assert!(out.contains("contract waits for release 2.1.0"), "{out}");
    assert_eq!(
        user_columns(&client).await,
        ["id", "full_name", "email", "email_domain"]
    );
    backfill_ok(&["run", &plan, "--release", "2.10.0"], Some(&db.url));
    assert_eq!(
        rows(
            &client,
            "SELECT email_domain FROM users WHERE id IN (1, 50) ORDER BY id"
        )
        .await,
        ["example.org", "example.org"]
    );
}

#[tokio::test]
async fn an_invalid_last_plan_or_flag_changes_nothing() {
    let db = TestDb::new("trust_invalid_last").await;
    let client = db.connect().await;
    seed_users(&client, 50).await;
    let plans = Plans::new("invalid_last");
    plans.write("0001_domain.toml", DOMAIN);
    plans.write(
        "0002_broken.toml",
        r#"
table = "users"
[[operations]]
kind = "set_not_null"
column = "no_such_column"
fill = "''"
[release]
expand = "1.0.0"
contract = "2.1.0"
"#,
    );
    let out = backfill_cmd(&["run", &plans.dir(), "--release", "1.0.0"], Some(&db.url));
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("0002_broken.toml") && stderr.contains("no_such_column"),
        "{stderr}"
    );
    assert_eq!(user_columns(&client).await, ["id", "full_name", "email"]);
    assert!(!state_exists(&client).await);

    // A bad engine flag is refused before expand, not when the backfill starts.
    let plans = Plans::new("invalid_flag");
    let plan = plans.write("0001_domain.toml", DOMAIN);
    let out = backfill_cmd(
        &[
            "run",
            &plan,
            "--release",
            "1.0.0",
            "--max-replication-lag",
            "5 parsecs",
        ],
        Some(&db.url),
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--max-replication-lag"),
        "{}",
        show(&out)
    );
    assert_eq!(user_columns(&client).await, ["id", "full_name", "email"]);
    assert!(!state_exists(&client).await);
}

/// Runs `sql` as the test server's superuser on the test database.
async fn admin(db: &TestDb, sql: &str) {
    db.connect()
        .await
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The test database's URL for another role (the suite's server trusts local connections).
fn url_as(db: &TestDb, role: &str) -> String {
    format!("{} user={role}", db.url.replace(" user=postgres", ""))
}

#[tokio::test]
async fn least_privilege_is_checked_before_anything_changes() {
    let db = TestDb::new("trust_privileges").await;
    let client = db.connect().await;
    let n = std::process::id();
    let (owner, stranger) = (format!("bf_owner_{n}"), format!("bf_stranger_{n}"));
    // A table owner who may not create objects in the table's schema (PostgreSQL 15: only the
    // database owner may create in `public`), as on managed PostgreSQL; a role that does not
    // own the table but may read and write it, as an application role.
    admin(
        &db,
        &format!(
            "DROP ROLE IF EXISTS \"{owner}\"; DROP ROLE IF EXISTS \"{stranger}\";
             CREATE ROLE \"{owner}\" LOGIN; CREATE ROLE \"{stranger}\" LOGIN;
             REVOKE CREATE ON SCHEMA public FROM PUBLIC;
             GRANT CREATE ON DATABASE \"{}\" TO \"{stranger}\";",
            db.name
        ),
    )
    .await;
    seed_users(&client, 300).await;
    admin(
        &db,
        &format!(
            "ALTER TABLE users OWNER TO \"{owner}\"; GRANT SELECT, UPDATE, INSERT ON users TO \"{stranger}\";"
        ),
    )
    .await;
    let plans = Plans::new("privileges");
    let plan = plans.write(
        "0001_split.toml",
        &format!(
            "{}\n[release]\nexpand = \"1.0.0\"\ncontract = \"2.0.0\"\n",
            crate::support::SPLIT_USERS
        ),
    );

    // Not the owner: refused with the table, its owner and the GRANT that helps; nothing made.
    let out = backfill_cmd(
        &["run", &plan, "--release", "1.0.0"],
        Some(&url_as(&db, &stranger)),
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("does not own table \"public\".\"users\"") && stderr.contains(&owner),
        "{stderr}"
    );
    assert!(!state_exists(&client).await, "{stderr}");
    assert_eq!(user_columns(&client).await, ["id", "full_name", "email"]);

    // The owner, without the right to create schemas: refused before anything, with the way out.
    let out = backfill_cmd(
        &["run", &plan, "--release", "1.0.0"],
        Some(&url_as(&db, &owner)),
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("CREATE SCHEMA \"backfill\" AUTHORIZATION"),
        "{stderr}"
    );
    assert!(!state_exists(&client).await);

    // A state schema where the owner may only look (USAGE without CREATE): refused up front,
    // each right checked on its own.
    admin(
        &db,
        &format!("CREATE SCHEMA backfill; GRANT USAGE ON SCHEMA backfill TO \"{owner}\""),
    )
    .await;
    let out = backfill_cmd(
        &["run", &plan, "--release", "1.0.0"],
        Some(&url_as(&db, &owner)),
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("GRANT USAGE, CREATE ON SCHEMA \"backfill\""),
        "{}",
        show(&out)
    );
    assert_eq!(user_columns(&client).await, ["id", "full_name", "email"]);
    admin(&db, "DROP SCHEMA backfill").await;

    // An administrator creates the state schema for the owner: the whole plan runs as the
    // owner, who never needs to create anything in `public`.
    admin(
        &db,
        &format!("CREATE SCHEMA backfill AUTHORIZATION \"{owner}\""),
    )
    .await;
    backfill_ok(
        &["run", &plan, "--release", "1.0.0", "--progress", "quiet"],
        Some(&url_as(&db, &owner)),
    );
    // The application (another role) keeps writing through the trigger.
    let app = crate::support::connect_url(&url_as(&db, &stranger)).await;
    app.batch_execute("UPDATE users SET full_name = 'Ada Lovelace' WHERE id = 7; INSERT INTO users (id, full_name) VALUES (1000, 'Alan Turing')")
        .await
        .expect("the application writes during dual-write");
    backfill_ok(
        &["run", &plan, "--release", "2.0.0"],
        Some(&url_as(&db, &owner)),
    );
    assert_eq!(
        rows(
            &client,
            "SELECT first_name || '|' || last_name FROM users WHERE id IN (1, 7, 300, 1000) ORDER BY id"
        )
        .await,
        ["First1|Last1", "Ada|Lovelace", "First300|Last300", "Alan|Turing"]
    );

    // The state schema belongs to the owner: another role is refused up front, by name.
    let plans2 = Plans::new("privileges2");
    let plan2 = plans2.write("0002_domain.toml", DOMAIN);
    let out = backfill_cmd(
        &["run", &plan2, "--release", "1.0.0"],
        Some(&url_as(&db, &stranger)),
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not own table"), "{stderr}");
    assert!(
        stderr.contains("GRANT USAGE, CREATE ON SCHEMA \"backfill\""),
        "{stderr}"
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'email_domain'").await,
        0
    );
}

#[tokio::test]
async fn validate_and_plan_follow_a_plan_in_flight() {
    let db = TestDb::new("trust_in_flight").await;
    let client = db.connect().await;
    seed_users(&client, 100).await;
    let plans = Plans::new("in_flight");
    let plan = plans.write(
        "0001_split.toml",
        &format!(
            "{}\n[release]\nexpand = \"1.4.0\"\ncontract = \"1.5.0\"\n",
            crate::support::SPLIT_USERS
                .replace("split_part(full_name", "split_part(users.full_name")
        ),
    );
    backfill_ok(
        &["run", &plan, "--release", "1.4.0", "--progress", "quiet"],
        Some(&db.url),
    );
    // A deploy pipeline validates plans/ on every deploy: a plan in flight is fine.
    let out = backfill_ok(&["validate", &plans.dir()], Some(&db.url));
    assert!(
        out.contains("in flight (expand, dual-write, backfill done)"),
        "{out}"
    );
    let out = backfill_ok(&["plan", &plan, "--release", "1.5.0"], Some(&db.url));
    assert!(out.contains("expand (done at 1.4.0)"), "{out}");
    assert!(
        out.contains("contract (due at 1.5.0 (from 1.5.0))"),
        "{out}"
    );
    assert!(
        out.contains("DROP COLUMN"),
        "the contract is previewed: {out}"
    );
    backfill_ok(&["run", &plan, "--release", "1.5.0"], Some(&db.url));
    assert_eq!(
        rows(
            &client,
            "SELECT first_name || ' ' || last_name FROM users WHERE id = 42"
        )
        .await,
        ["First42 Last42"]
    );
}

#[tokio::test]
async fn ctrl_c_prints_the_whole_invocation_and_stops_a_lock_wait_at_once() {
    let db = TestDb::new("trust_ctrl_c").await;
    let client = db.connect().await;
    seed_users(&client, 20_000).await;
    let plans = Plans::new("ctrl_c");
    plans.write(
        "0001_split.toml",
        &format!(
            "{}\n[release]\nexpand = \"1.0.0\"\ncontract = \"2.0.0\"\n",
            crate::support::SPLIT_USERS
        ),
    );
    plans.write("0002_domain.toml", DOMAIN);
    // A slow backfill, interrupted in the middle: the resume command is this invocation.
    let url_with_password = format!("{} password=s3cr3t", db.url);
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_backfill"))
        .args([
            "run",
            &plans.dir(),
            "--release",
            "1.0.0",
            "--workers",
            "2",
            "--max-rows-per-second",
            "2000",
            "--max-transaction-age",
            "1h",
            "--progress",
            "plain",
            "--database-url",
            &url_with_password,
        ])
        .env_remove("DATABASE_URL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start backfill");
    crate::support::wait_walked(&client, 1000).await;
    interrupt(&child);
    let out = crate::support::finish(child).await;
    assert_eq!(out.status.code(), Some(130), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let resume = stderr
        .lines()
        .find_map(|l| l.split_once("Resume with: ").map(|(_, r)| r.to_string()))
        .unwrap_or_else(|| panic!("no resume command: {stderr}"));
    assert!(
        resume.starts_with(&format!(
            "backfill run {} --release 1.0.0 --workers 2 --max-rows-per-second 2000 --max-transaction-age 1h --progress plain",
            plans.dir()
        )),
        "{resume}"
    );
    assert!(
        !stderr.contains("s3cr3t"),
        "the password was printed: {stderr}"
    );
    // The printed command, run as printed, finishes both plans of the folder.
    let words: Vec<&str> = resume
        .split(" (with the same database")
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .collect();
    backfill_ok(&words, Some(&db.url));
    assert_eq!(
        user_columns(&client).await,
        [
            "id",
            "full_name",
            "email",
            "first_name",
            "last_name",
            "email_domain"
        ]
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM users WHERE first_name IS NULL OR email_domain IS NULL"
        )
        .await,
        0
    );

    // A DDL step waiting for its lock behind an open transaction: one Ctrl-C ends it at once.
    let plans = Plans::new("ctrl_c_lock");
    let plan = plans.write(
        "0003_age.toml",
        "table = \"users\"\n[[operations]]\nkind = \"add_column\"\nname = \"age\"\ntype = \"int\"\n[backfill]\nlock_timeout = \"5s\"\n",
    );
    let blocker = db.connect().await;
    blocker
        .batch_execute("BEGIN; SET application_name = 'the-blocker'; SELECT count(*) FROM users;")
        .await
        .expect("hold ACCESS SHARE");
    let child = crate::support::backfill_spawn(&["run", &plan, "--progress", "plain"], &db.url);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let t = std::time::Instant::now();
    interrupt(&child);
    let out = crate::support::finish(child).await;
    let took = t.elapsed();
    assert_eq!(out.status.code(), Some(130), "{}", show(&out));
    assert!(
        took < std::time::Duration::from_secs(3),
        "the lock wait went on for {took:?} after Ctrl-C"
    );
    blocker.batch_execute("COMMIT").await.expect("commit");
    assert!(!user_columns(&client).await.contains(&"age".to_string()));
}

#[tokio::test]
async fn a_lock_that_never_comes_names_who_holds_it() {
    let db = TestDb::new("trust_lock_holder").await;
    let client = db.connect().await;
    seed_users(&client, 10).await;
    let plans = Plans::new("lock_holder");
    let plan = plans.write(
        "0001_age.toml",
        "table = \"users\"\n[[operations]]\nkind = \"add_column\"\nname = \"age\"\ntype = \"int\"\n[backfill]\nlock_timeout = \"200ms\"\nddl_retries = 1\n",
    );
    let blocker = db.connect().await;
    blocker
        .batch_execute("SET application_name = 'the-blocker'; BEGIN; SELECT count(*) FROM users;")
        .await
        .expect("hold ACCESS SHARE");
    let out = backfill_cmd(&["run", &plan], Some(&db.url));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("held by pid")
            && stderr.contains("the-blocker")
            && stderr.contains("idle in transaction"),
        "{stderr}"
    );
    blocker.batch_execute("COMMIT").await.expect("commit");

    // A connection that cannot be made names where it was going.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let out = backfill_cmd(
        &["status"],
        Some(&format!(
            "host=127.0.0.1 port={port} user=nobody dbname=nowhere password=pw"
        )),
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}")) && stderr.contains("nowhere"),
        "{stderr}"
    );
    assert!(!stderr.contains("pw"), "{stderr}");
}

#[tokio::test]
async fn contract_without_a_release_gate_is_a_separate_explicit_step() {
    let db = TestDb::new("trust_contract_explicit").await;
    let client = db.connect().await;
    seed_users(&client, 200).await;
    let plans = Plans::new("contract_explicit");
    let plan = plans.write("0001_split.toml", crate::support::SPLIT_USERS);
    let out = backfill_ok(&["run", &plan, "--progress", "quiet"], Some(&db.url));
    assert!(out.contains("--phase contract"), "{out}");
    // The old column is still there for the old release.
    assert!(user_columns(&client)
        .await
        .contains(&"full_name".to_string()));
    let out = backfill_ok(&["run", &plan], Some(&db.url));
    assert!(
        out.contains("--phase contract"),
        "a rerun contracted: {out}"
    );
    assert!(user_columns(&client)
        .await
        .contains(&"full_name".to_string()));
    backfill_ok(&["run", &plan, "--phase", "contract"], Some(&db.url));
    assert_eq!(
        user_columns(&client).await,
        ["id", "email", "first_name", "last_name"]
    );
    assert_eq!(
        rows(
            &client,
            "SELECT first_name || ' ' || last_name FROM users WHERE id = 200"
        )
        .await,
        ["First200 Last200"]
    );
}

#[tokio::test]
async fn a_joining_process_runs_with_the_settings_of_the_first() {
    let db = TestDb::new("trust_shared_settings").await;
    let client = db.connect().await;
    seed_users(&client, 6000).await;
    let staged = crate::support::stage(&db, "shared", crate::support::SPLIT_USERS).await;
    let first = crate::support::backfill_spawn(
        &[
            "run",
            &staged.arg(),
            "--phase",
            "backfill",
            "--max-rows-per-second",
            "300",
            "--progress",
            "quiet",
        ],
        &db.url,
    );
    crate::support::wait_walked(&client, 10).await;
    let settings = rows(&client, "SELECT settings FROM backfill.backfills").await;
    assert!(
        settings[0].contains("\"max_rows_per_second\":300")
            || settings[0].contains("\"max_rows_per_second\": 300"),
        "{settings:?}"
    );
    // A second process joins without the flag: it must not run unthrottled.
    let second = crate::support::backfill_spawn(
        &[
            "run",
            &staged.arg(),
            "--phase",
            "backfill",
            "--progress",
            "quiet",
        ],
        &db.url,
    );
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let (seen, _) = crate::support::backfill_state(&client, "shared").await;
    assert!(
        seen < 4000,
        "{seen} rows walked in ~3.5 s at 300 rows/s per process"
    );
    // Lift the limit for everyone; both finish.
    backfill_ok(&["set", "shared", "max_rows_per_second=0"], Some(&db.url));
    for child in [first, second] {
        let out = crate::support::finish(child).await;
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    }
    assert_eq!(
        crate::support::out_of_sync(&client, &staged.schedule).await,
        0
    );
}

#[tokio::test]
async fn status_pause_and_abort_say_what_is_true() {
    let db = TestDb::new("trust_status").await;
    let client = db.connect().await;
    seed_users(&client, 30_000).await;
    // A table rewritten by an earlier change: its estimate must not count dead rows.
    client
        .batch_execute("UPDATE users SET email = email || ''; UPDATE users SET email = email || ''; ANALYZE users;")
        .await
        .expect("bloat");
    let plans = Plans::new("status");
    let plan = plans.write(
        "0001_split.toml",
        &format!(
            "{}\n[release]\nexpand = \"1.0.0\"\ncontract = \"2.0.0\"\n",
            crate::support::SPLIT_USERS
        ),
    );
    // Workers walk distinct segments: no segment seen by two workers of one process.
    let out = backfill_ok(
        &[
            "run",
            &plan,
            "--release",
            "1.0.0",
            "--workers",
            "4",
            "--batch-size",
            "500",
            "--progress",
            "json",
        ],
        Some(&db.url),
    );
    let events = crate::support::json_events(out.as_bytes());
    let mut walkers: std::collections::BTreeMap<i64, std::collections::BTreeSet<i64>> =
        Default::default();
    for e in events.iter().filter(|e| e["event"] == "chunk") {
        walkers
            .entry(e["segment"].as_i64().unwrap_or(-1))
            .or_default()
            .insert(e["worker"].as_i64().unwrap_or(-1));
        crate::support::event_secs(e);
    }
    assert!(walkers.len() > 4, "{walkers:?}");
    assert!(
        walkers.values().all(|w| w.len() == 1),
        "a segment walked by two workers: {walkers:?}"
    );
    let status: serde_json::Value =
        serde_json::from_str(&backfill_ok(&["status", "--json"], Some(&db.url)))
            .expect("status JSON");
    let p = &status[0];
    assert_eq!(p["table"], "public.users");
    assert_eq!(p["backfill"]["rows_done"], 30_000);
    assert_eq!(p["backfill"]["rows_estimate"], 30_000);
    assert_eq!(p["backfill"]["percent"], 100.0);
    let started = events
        .iter()
        .find(|e| e["event"] == "started")
        .expect("started");
    let estimate = started["rows_estimate"].as_i64().unwrap_or(0);
    assert!(
        (27_000..=33_000).contains(&estimate),
        "estimate {estimate} for 30000 rows"
    );
    let text = backfill_ok(&["status"], Some(&db.url));
    assert!(
        text.contains("(100.0%)") && text.contains("finished"),
        "{text}"
    );
    let out = backfill_ok(&["pause", "0001_split"], Some(&db.url));
    assert!(out.contains("nothing to pause"), "{out}");
    assert!(!backfill_ok(&["status"], Some(&db.url)).contains("PAUSED"));

    let out = backfill_ok(&["run", &plan, "--release", "2.0.0-rc1"], Some(&db.url));
    assert!(out.contains("waits for release 2.0.0"), "{out}");

    // abort takes the plan's name, like pause.
    backfill_ok(&["abort", "0001_split"], Some(&db.url));
    assert_eq!(user_columns(&client).await, ["id", "full_name", "email"]);

    // A contract refused in the release of its backfill says so in status, not "waits".
    let plan = plans.write(
        "0002_domain.toml",
        &DOMAIN.replace("contract = \"2.1.0\"", "contract = \"1.1.0\""),
    );
    let out = backfill_ok(&["run", &plan, "--release", "1.1.0"], Some(&db.url));
    assert!(out.contains("contract refused"), "{out}");
    let text = backfill_ok(&["status", &plan], Some(&db.url));
    assert!(!text.contains("waits for release 1.1.0"), "{text}");
    let text = backfill_ok(&["status", &plan], Some(&db.url));
    assert!(
        text.contains("contract    refused: the backfill finished in release 1.1.0"),
        "{text}"
    );
}

#[tokio::test]
async fn a_plan_may_use_what_an_earlier_plan_of_the_folder_adds() {
    let db = TestDb::new("trust_dependent_plans").await;
    let client = db.connect().await;
    seed_users(&client, 500).await;
    let plans = Plans::new("dependent");
    plans.write(
        "0001_nick.toml",
        "table = \"users\"\n[[operations]]\nkind = \"add_column\"\nname = \"nick\"\ntype = \"text\"\nup = \"lower(full_name)\"\n[release]\nexpand = \"1.0.0\"\n",
    );
    plans.write(
        "0002_nick_index.toml",
        "table = \"users\"\n[[operations]]\nkind = \"create_index\"\ncolumns = [\"nick\"]\nname = \"users_nick_idx\"\n[release]\nexpand = \"1.0.0\"\n",
    );
    backfill_ok(&["validate", &plans.dir()], Some(&db.url));
    backfill_ok(
        &[
            "run",
            &plans.dir(),
            "--release",
            "1.0.0",
            "--progress",
            "quiet",
        ],
        Some(&db.url),
    );
    assert_eq!(
        rows(&client, "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = 'users'::regclass AND indisvalid AND NOT indisprimary").await,
        ["users_nick_idx"]
    );
    assert_eq!(
        rows(&client, "SELECT nick FROM users WHERE id = 500").await,
        ["first500 last500"]
    );
    // An explicit contract that is refused is a failure, not a quiet success.
    let plans2 = Plans::new("dependent_contract");
    let plan = plans2.write("0003_split.toml", crate::support::SPLIT_USERS);
    let out = backfill_cmd(&["run", &plan, "--phase", "contract"], Some(&db.url));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("contract refused: the backfill has not finished"),
        "{}",
        show(&out)
    );
}

/// Changing the type of a column that another table's foreign key references alters that
/// table at contract: its owner's right is checked before anything changes.
#[tokio::test]
async fn carrying_a_foreign_key_needs_the_other_tables_owner() {
    let db = TestDb::new("trust_carry_owner").await;
    let client = db.connect().await;
    let owner = format!("bf_carry_owner_{}", std::process::id());
    admin(
        &db,
        &format!(
            "DROP ROLE IF EXISTS \"{owner}\"; CREATE ROLE \"{owner}\" LOGIN;
             GRANT CREATE ON DATABASE \"{}\" TO \"{owner}\";
             CREATE TABLE accounts (id int PRIMARY KEY, name text);
             INSERT INTO accounts SELECT g, 'a' || g FROM generate_series(1, 50) g;
             CREATE TABLE orders (id int PRIMARY KEY, account_id int REFERENCES accounts (id));
             INSERT INTO orders SELECT g, g FROM generate_series(1, 50) g;
             ALTER TABLE accounts OWNER TO \"{owner}\";",
            db.name
        ),
    )
    .await;
    let plans = Plans::new("carry_owner");
    let plan = plans.write(
        "widen.toml",
        "table = \"accounts\"\n[[operations]]\nkind = \"change_type\"\ncolumn = \"id\"\ntype = \"bigint\"\n[release]\nexpand = \"1.0\"\ncontract = \"2.0\"\n",
    );
    let out = backfill_cmd(
        &["run", &plan, "--release", "1.0"],
        Some(&url_as(&db, &owner)),
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        show(&out).contains(
            "moves foreign key \"orders_account_id_fkey\" of public.orders onto the new column"
        ),
        "{}",
        show(&out)
    );
    assert!(!state_exists(&client).await);
    assert_eq!(
        rows(&client, "SELECT attname::text FROM pg_attribute WHERE attrelid = 'accounts'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum").await,
        ["id", "name"]
    );
    // Owning both, the indexes carried onto the new column are built in the table's schema:
    // that takes CREATE on it, checked up front too.
    admin(&db, &format!("ALTER TABLE orders OWNER TO \"{owner}\"")).await;
    let out = backfill_cmd(
        &["run", &plan, "--release", "1.0"],
        Some(&url_as(&db, &owner)),
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        show(&out).contains(&format!("building index \"public\".\"accounts_pkey_bf\" takes CREATE on schema \"public\", where its table is: GRANT CREATE ON SCHEMA \"public\" TO \"{owner}\"")),
        "{}",
        show(&out)
    );
    assert!(!state_exists(&client).await);
    admin(
        &db,
        &format!("GRANT CREATE ON SCHEMA public TO \"{owner}\""),
    )
    .await;
    backfill_ok(
        &["run", &plan, "--release", "1.0", "--progress", "quiet"],
        Some(&url_as(&db, &owner)),
    );
    backfill_ok(
        &["run", &plan, "--release", "2.0", "--progress", "quiet"],
        Some(&url_as(&db, &owner)),
    );
    assert_eq!(
        rows(&client, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'accounts'::regclass AND attname = 'id'").await,
        ["bigint"]
    );
    assert!(client
        .batch_execute("INSERT INTO orders VALUES (51, 999)")
        .await
        .is_err());
}
