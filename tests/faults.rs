//! What production does to connections, through a fault-injecting proxy
//! (`support::proxy`): the run rides it out, and the rows are right at the end.

use std::time::Duration;

use crate::support::proxy::Proxy;
use crate::support::{
    backfill_ok, backfill_spawn, count, finish, seed_users, server, show, unsplit_rows,
    wait_walked, Plans, TestDb, SPLIT_USERS,
};

/// Connections refused for 2 s when the run starts (a server restarting, a failover): the
/// run waits for the server instead of failing at once.
#[tokio::test]
async fn a_run_started_while_connections_are_refused_waits_for_the_server() {
    let db = TestDb::new("faults_refused").await;
    let client = db.connect().await;
    seed_users(&client, 5_000).await;
    let plans = Plans::new("faults_refused");
    let plan = plans.write("0001_split.toml", SPLIT_USERS);
    let proxy = Proxy::start(server().addr());
    proxy.refuse_for(Duration::from_secs(2));
    let out = crate::support::backfill_cmd(
        &["run", &plan, "--progress", "plain"],
        Some(&proxy.url(&db)),
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(proxy.accepted() > 1, "it never retried");
    assert_eq!(unsplit_rows(&client).await, 0);
}

/// Every connection cut during the backfill (a load balancer dropping them, a failover): the
/// workers retry, the monitor and the heartbeat connect again, and the main connection,
/// idle through the backfill and holding the plan's lock, is made again and takes the lock
/// back; the run finishes and every row is right. Then a stall of 3 s, and the contract.
#[tokio::test]
async fn connections_cut_during_the_backfill_do_not_fail_the_run() {
    let db = TestDb::new("faults_cut").await;
    let client = db.connect().await;
    seed_users(&client, 60_000).await;
    let plans = Plans::new("faults_cut");
    let plan = plans.write("0001_split.toml", SPLIT_USERS);
    let proxy = Proxy::start(server().addr());
    let url = proxy.url(&db);
    let child = backfill_spawn(
        &[
            "run",
            &plan,
            "--max-rows-per-second",
            "10000",
            "--progress",
            "plain",
        ],
        &url,
    );
    wait_walked(&client, 5_000).await;
    proxy.cut();
    wait_walked(&client, 25_000).await;
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.stall_for(Duration::from_secs(3));
    let out = finish(child).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(unsplit_rows(&client).await, 0);
    let status = backfill_ok(&["status", "0001_split", "--json"], Some(&db.url));
    let json: serde_json::Value = serde_json::from_str(&status).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(json[0]["phases"][2]["status"], "done", "{json:#}");
    assert_eq!(json[0]["backfill"]["rows_done"], 60_000, "{json:#}");
    // The contract, through the same proxy.
    let out = crate::support::backfill_cmd(
        &["run", &plan, "--phase", "contract", "--progress", "plain"],
        Some(&url),
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'full_name' AND NOT attisdropped"
        )
        .await,
        0
    );
}

/// The connection cut while `CREATE INDEX CONCURRENTLY` runs: the run connects again, takes
/// the plan's lock back, finds the index valid (the server finished it) or invalid (dropped
/// and built again), records the step once, and goes on.
#[tokio::test]
async fn a_connection_cut_during_a_concurrent_index_build_does_not_fail_the_run() {
    let db = TestDb::new("faults_index").await;
    let client = db.connect().await;
    seed_users(&client, 1_000_000).await;
    let plans = Plans::new("faults_index");
    let plan = plans.write(
        "0001_index.toml",
        "table = \"users\"\n[[operations]]\nkind = \"create_index\"\ncolumns = [\"email\", \"full_name\"]\n",
    );
    let proxy = Proxy::start(server().addr());
    let child = backfill_spawn(&["run", &plan, "--progress", "plain"], &proxy.url(&db));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let building = count(
            &client,
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'CREATE INDEX CONCURRENTLY%' AND state = 'active'",
        )
        .await;
        if building > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the index build never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    proxy.cut();
    let out = finish(child).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
              WHERE i.indrelid = 'users'::regclass AND i.indisvalid AND NOT i.indisprimary"
        )
        .await,
        1,
        "{}",
        show(&out)
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM pg_index WHERE indrelid = 'users'::regclass AND NOT indisvalid"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM backfill.steps WHERE plan = '0001_index' AND phase = 'expand'"
        )
        .await,
        1
    );
}
