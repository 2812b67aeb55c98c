//! Health-aware throttling, `backfill set`, and several processes sharing one backfill: a real
//! streaming replica made to lag, a custom throttle query switched on and off (and failing),
//! an old transaction, the rate changed from another terminal, and three processes on three
//! "hosts" with one killed half way.

use std::time::{Duration, Instant};

use backfill::ephemeral::{Cluster, ClusterOptions};
use tokio_postgres::Client;

use crate::support::{
    backfill_ok, backfill_spawn, backfill_state, count, finish, json_events, seed_users, show,
    stage, wait_walked, TestDb, SPLIT_USERS,
};

async fn wrong_rows(client: &Client) -> i64 {
    count(
        client,
        "SELECT count(*) FROM users WHERE first_name IS DISTINCT FROM 'First' || id OR last_name IS DISTINCT FROM 'Last' || id",
    )
    .await
}

const SEEN: &str =
    "SELECT coalesce(sum(rows_seen), 0)::int8 FROM backfill.segments WHERE plan = 'throttled'";

/// The rows walked do not move for a while: the workers hold.
async fn holds(client: &Client) -> i64 {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let a = count(client, SEEN).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let b = count(client, SEEN).await;
    assert_eq!(a, b, "rows moved while throttled");
    a
}

#[tokio::test]
async fn a_lagging_replica_holds_the_backfill_until_it_replays_again() {
    let primary = Cluster::start(&ClusterOptions {
        unsafe_fast: true,
        watchdog: true,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let admin = crate::support::connect_url(&primary.url("postgres")).await;
    admin
        .batch_execute("CREATE DATABASE app")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let db = TestDb {
        name: "app".into(),
        url: primary.url("app"),
    };
    let client = db.connect().await;
    seed_users(&client, 20_000).await;
    let staged = stage(&db, "throttled", SPLIT_USERS).await;
    let replica = primary.replica().unwrap_or_else(|e| panic!("{e}"));
    let standby = crate::support::connect_url(&replica.url("app")).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(&standby, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'first_name'").await == 0 {
        assert!(Instant::now() < deadline, "the replica did not catch up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A transaction replayed on the replica, so its replay timestamp is known.
    client
        .batch_execute("CREATE TABLE marker (x int); INSERT INTO marker VALUES (1)")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    while count(
        &standby,
        "SELECT count(*) FROM pg_class WHERE relname = 'marker'",
    )
    .await
        == 0
    {
        assert!(Instant::now() < deadline, "the replica did not catch up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    standby
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let child = backfill_spawn(
        &[
            "run",
            &staged.arg(),
            "--phase",
            "backfill",
            "--progress",
            "json",
            "--max-rows-per-second",
            "8000",
            "--replica-url",
            &replica.url("app"),
            "--max-replication-lag",
            "1s",
        ],
        &db.url,
    );
    wait_walked(&client, -1).await;
    let held = holds(&client).await;
    assert!(held < 20_000, "finished although the replica lagged");
    standby
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let out = finish(child).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let events = json_events(&out.stdout);
    assert!(
        events.iter().any(|e| e["event"] == "throttled"
            && e["reason"]
                .as_str()
                .unwrap_or("")
                .starts_with("replica 1 lag")),
        "no replica-lag throttle event: {events:?}"
    );
    assert!(events.iter().any(|e| e["event"] == "unthrottled"));
    assert_eq!(wrong_rows(&client).await, 0);
    assert_eq!(backfill_state(&client, "throttled").await, (20_000, 0));
    // After catch-up the replica has every row right too.
    let deadline = Instant::now() + Duration::from_secs(60);
    while wrong_rows(&standby).await != 0 {
        assert!(Instant::now() < deadline, "the replica did not catch up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(replica);
    drop(primary);
}

#[tokio::test]
async fn a_throttle_query_switched_on_and_off_and_a_failing_probe_fails_closed() {
    let db = TestDb::new("throttle_query").await;
    let client = db.connect().await;
    seed_users(&client, 20_000).await;
    client
        .batch_execute("CREATE TABLE flag (v text); INSERT INTO flag VALUES ('boom');")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let staged = stage(
        &db,
        "throttled",
        &format!(
            "{SPLIT_USERS}\n[backfill]\nmax_rows_per_second = 8000\n[throttle]\ncheck_interval = \"200ms\"\nquery = \"SELECT CASE v WHEN 'on' THEN true WHEN 'off' THEN false ELSE v::int > 0 END FROM flag\"\n"
        ),
    )
    .await;
    let child = backfill_spawn(
        &[
            "run",
            &staged.arg(),
            "--phase",
            "backfill",
            "--progress",
            "json",
        ],
        &db.url,
    );
    wait_walked(&client, -1).await;
    // The probe fails: the workers hold (fail closed).
    holds(&client).await;
    client
        .batch_execute("UPDATE flag SET v = 'on'")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    holds(&client).await;
    client
        .batch_execute("UPDATE flag SET v = 'off'")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let out = finish(child).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let reasons: Vec<String> = json_events(&out.stdout)
        .iter()
        .filter(|e| e["event"] == "throttled")
        .map(|e| e["reason"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("throttle query probe failed") && r.contains("boom")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("throttle query returned true")),
        "{reasons:?}"
    );
    assert_eq!(wrong_rows(&client).await, 0);
    assert_eq!(backfill_state(&client, "throttled").await, (20_000, 0));
}

#[tokio::test]
async fn an_old_transaction_holds_the_backfill() {
    let db = TestDb::new("throttle_txn_age").await;
    let client = db.connect().await;
    seed_users(&client, 10_000).await;
    let staged = stage(&db, "throttled", SPLIT_USERS).await;
    let mut old = db.connect().await;
    let tx = old.transaction().await.unwrap_or_else(|e| panic!("{e}"));
    tx.batch_execute("SELECT 1")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let child = backfill_spawn(
        &[
            "run",
            &staged.arg(),
            "--phase",
            "backfill",
            "--progress",
            "json",
            "--max-transaction-age",
            "1s",
        ],
        &db.url,
    );
    wait_walked(&client, -1).await;
    let held = holds(&client).await;
    assert!(held < 10_000);
    tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
    let out = finish(child).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(json_events(&out.stdout)
        .iter()
        .any(|e| e["event"] == "throttled"
            && e["reason"]
                .as_str()
                .unwrap_or("")
                .starts_with("oldest transaction open for")));
    assert_eq!(wrong_rows(&client).await, 0);
}

/// Rows per second over chunk events whose timestamps fall in `[from, to)`.
fn rate(events: &[serde_json::Value], from: f64, to: f64) -> f64 {
    let rows: i64 = events
        .iter()
        .filter(|e| e["event"] == "chunk")
        .filter(|e| {
            let ts = crate::support::event_secs(e);
            ts >= from && ts < to
        })
        .map(|e| e["rows"].as_i64().unwrap_or(0))
        .sum();
    rows as f64 / (to - from)
}

#[tokio::test]
async fn set_changes_the_rate_of_a_running_backfill_within_2s() {
    let db = TestDb::new("throttle_set").await;
    let client = db.connect().await;
    seed_users(&client, 40_000).await;
    let staged = stage(
        &db,
        "throttled",
        &format!("{SPLIT_USERS}\n[backfill]\nmax_rows_per_second = 2000\n"),
    )
    .await;
    let child = backfill_spawn(
        &[
            "run",
            &staged.arg(),
            "--phase",
            "backfill",
            "--progress",
            "json",
        ],
        &db.url,
    );
    wait_walked(&client, -1).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let asked = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let out = backfill_ok(
        &["set", "throttled", "max_rows_per_second=20000"],
        Some(&db.url),
    );
    assert!(out.contains("max_rows_per_second=20000"), "{out}");
    let out = finish(child).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let events = json_events(&out.stdout);
    let changed = events
        .iter()
        .find(|e| e["event"] == "settings_changed")
        .unwrap_or_else(|| panic!("no settings_changed event: {events:?}"));
    assert_eq!(changed["changes"], "max_rows_per_second=20000");
    let at = crate::support::event_secs(changed);
    assert!(at - asked < 2.0, "picked up {:.2}s after set", at - asked);
    let before = rate(&events, asked - 2.0, asked);
    let after = rate(&events, at + 0.3, at + 1.3);
    assert!(before < 2600.0, "rate before: {before:.0} rows/s");
    assert!(
        after > 6000.0,
        "rate after: {after:.0} rows/s (before {before:.0})"
    );
    assert_eq!(wrong_rows(&client).await, 0);
}

#[tokio::test]
async fn three_processes_share_a_backfill_and_take_over_a_killed_one() {
    let db = TestDb::new("throttle_three").await;
    let client = db.connect().await;
    seed_users(&client, 60_000).await;
    let plans = std::env::temp_dir().join(format!("backfill-three-{}", std::process::id()));
    std::fs::create_dir_all(&plans).unwrap_or_else(|e| panic!("{e}"));
    let plan = plans.join("throttled.toml");
    std::fs::write(
        &plan,
        format!(
            "{SPLIT_USERS}\n[backfill]\nworkers = 2\nmax_rows_per_second = 5000\nlease = \"2s\"\n"
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let plan_arg = plan.display().to_string();
    let spawn = |host: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_backfill"))
            .args(["run", &plan_arg, "--progress", "json"])
            .env("DATABASE_URL", &db.url)
            .env("BACKFILL_HOST", host)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let a = spawn("host-a");
    let mut b = spawn("host-b");
    let c = spawn("host-c");
    wait_walked(&client, -1).await;
    // All three work on it; status lists each of them.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = backfill_ok(&["status", "--json"], Some(&db.url));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}"));
        let hosts: Vec<String> = v[0]["processes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["phase"] == "backfill")
            .map(|p| p["host"].as_str().unwrap_or("").to_string())
            .collect();
        if hosts.len() == 3 {
            assert_eq!(hosts, ["host-a", "host-b", "host-c"]);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "status never listed 3 processes: {out}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let owned_by_b = "SELECT count(*) FROM backfill.segments WHERE plan = 'throttled' AND NOT done AND owner LIKE 'host-b:%'";
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(&client, owned_by_b).await == 0 {
        assert!(Instant::now() < deadline, "host-b never held a segment");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = b.kill(); // SIGKILL, half way
    let _ = b.wait();
    assert!(
        count(&client, owned_by_b).await > 0,
        "host-b held segments when it died"
    );
    let (oa, oc) = (finish(a).await, finish(c).await);
    assert_eq!(oa.status.code(), Some(0), "{}", show(&oa));
    assert_eq!(oc.status.code(), Some(0), "{}", show(&oc));
    assert_eq!(count(&client, owned_by_b).await, 0);
    assert_eq!(wrong_rows(&client).await, 0);
    assert_eq!(backfill_state(&client, "throttled").await, (60_000, 0));
    let _ = std::fs::remove_dir_all(&plans);
}
