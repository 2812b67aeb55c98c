//! Inputs and commands that can be trusted: releases are versions, exit 2 means nothing was
//! changed (every plan, every flag and the role's rights checked before the first statement),
//! least privilege as on managed PostgreSQL, plans in flight validated against their recorded
//! catalog, and expressions that name columns by the table.

use crate::support::{backfill_cmd, backfill_ok, count, rows, seed_users, show, Plans, TestDb};

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
