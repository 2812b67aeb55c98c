//! What production does to connections, through a fault-injecting proxy
//! (`support::proxy`): the run rides it out, and the rows are right at the end.

use std::time::Duration;

use crate::support::proxy::Proxy;
use crate::support::{
    backfill_ok, backfill_spawn, count, finish, seed_users, server, show, unsplit_rows, wait_for,
    wait_walked, Plans, TestDb, SPLIT_USERS,
};

/// After a plan `0001_index` that builds one index on `users`: no index left invalid, and its
/// expand step recorded once.
async fn no_invalid_index_and_one_record(client: &tokio_postgres::Client) {
    assert_eq!(
        count(
            client,
            "SELECT count(*) FROM pg_index WHERE indrelid = 'users'::regclass AND NOT indisvalid"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            client,
            "SELECT count(*) FROM backfill.steps WHERE plan = '0001_index' AND phase = 'expand'"
        )
        .await,
        1
    );
}

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
    // `status --watch` from another terminal, through the same proxy: cut with the run.
    let watch = backfill_spawn(
        &[
            "status",
            "0001_split",
            "--watch",
            "--json",
            "--interval",
            "500ms",
        ],
        &url,
    );
    proxy.cut();
    wait_walked(&client, 25_000).await;
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.stall_for(Duration::from_secs(3));
    let out = finish(child).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(unsplit_rows(&client).await, 0);
    // The watch rode out the cuts and ended on its own once the run was gone.
    let watched = finish(watch).await;
    assert_eq!(watched.status.code(), Some(0), "{}", show(&watched));
    let last = String::from_utf8_lossy(&watched.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .to_string();
    let json: serde_json::Value =
        serde_json::from_str(&last).unwrap_or_else(|e| panic!("{e}: {last}"));
    assert_eq!(json[0]["phases"][2]["status"], "done", "{json:#}");
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
    wait_for(
        &client,
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'CREATE INDEX CONCURRENTLY%' AND state = 'active'",
        "the index build",
    )
    .await;
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
    no_invalid_index_and_one_record(&client).await;
}

/// The index built, its record held back by a lock on the state's steps table, and the
/// session ended by the server right then (`pg_terminate_backend`, as an operator or a
/// failover would; a proxy cut would leave the server's session waiting, and it would commit
/// the record itself): the build committed, its record did not. The run connects again, finds
/// the index valid, builds nothing, records the step once when the lock goes, and goes on;
/// the index is the one built before the cut.
#[tokio::test]
async fn a_session_ended_between_a_concurrent_index_build_and_its_record_does_not_build_it_twice() {
    let db = TestDb::new("faults_record").await;
    let client = db.connect().await;
    seed_users(&client, 20_000).await;
    let plans = Plans::new("faults_record");
    let plan = plans.write(
        "0001_index.toml",
        "table = \"users\"\n[[operations]]\nkind = \"create_index\"\ncolumns = [\"email\"]\nname = \"users_email_idx\"\n[release]\nexpand = \"1.0.0\"\n",
    );
    // Nothing due at 0.1.0: the state schema is made, nothing else.
    backfill_ok(&["run", &plan, "--release", "0.1.0"], Some(&db.url));
    let mut holder = db.connect().await;
    let hold = holder.transaction().await.unwrap_or_else(|e| panic!("{e}"));
    hold.batch_execute("LOCK TABLE backfill.steps IN EXCLUSIVE MODE")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let child = backfill_spawn(
        &["run", &plan, "--release", "1.0.0", "--progress", "plain"],
        &db.url,
    );
    let waiting = "wait_event_type = 'Lock' AND query LIKE 'INSERT INTO \"backfill\".steps %'";
    let recording = format!("SELECT count(*) FROM pg_stat_activity WHERE {waiting}");
    wait_for(&client, &recording, "the record waiting after the build").await;
    let index_oid = "SELECT coalesce((SELECT oid::int8 FROM pg_class WHERE oid = to_regclass('users_email_idx') AND EXISTS (SELECT FROM pg_index WHERE indexrelid = pg_class.oid AND indisvalid)), 0)";
    let built = count(&client, index_oid).await;
    assert!(built > 0, "the index is not valid before the cut");
    let ended = count(
        &client,
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE {waiting} AND pg_terminate_backend(pid)"
        ),
    )
    .await;
    assert_eq!(ended, 1);
    // Connected again, the step found not recorded: it looks, builds nothing, and waits on
    // the same lock to record it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    wait_for(
        &client,
        &recording,
        "the record waiting again after the cut",
    )
    .await;
    hold.rollback().await.unwrap_or_else(|e| panic!("{e}"));
    let out = finish(child).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(
        count(&client, index_oid).await,
        built,
        "the index was built again: {}",
        show(&out)
    );
    no_invalid_index_and_one_record(&client).await;
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM backfill.events WHERE plan = '0001_index' AND kind = 'step finished'"
        )
        .await,
        1
    );
}

/// The server out of reach for good in the middle of the backfill: the workers' retries run
/// out, the run tries to connect for its 30 s, then fails with exit 1 and a message that says
/// what was lost and the command that resumes; that command, once the server is back,
/// finishes with every row right.
#[tokio::test]
async fn a_server_gone_for_good_fails_the_run_with_the_command_that_resumes() {
    let db = TestDb::new("faults_gone").await;
    let client = db.connect().await;
    seed_users(&client, 60_000).await;
    let plans = Plans::new("faults_gone");
    let plan = plans.write("0001_split.toml", SPLIT_USERS);
    let proxy = Proxy::start(server().addr());
    let url = proxy.url(&db);
    let args = [
        "run",
        &plan,
        "--max-rows-per-second",
        "5000",
        "--progress",
        "plain",
    ];
    let child = backfill_spawn(&args, &url);
    wait_walked(&client, 5_000).await;
    proxy.refuse_for(Duration::from_secs(3600));
    proxy.cut();
    let out = finish(child).await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("lost the connection to the database")
            && stderr.contains("Resume with: backfill run")
            && stderr.contains("--max-rows-per-second 5000"),
        "{stderr}"
    );
    assert!(
        unsplit_rows(&client).await > 0,
        "the backfill was not cut short"
    );
    proxy.refuse_for(Duration::ZERO);
    let out = crate::support::backfill_cmd(&args, Some(&url));
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(unsplit_rows(&client).await, 0);
}

/// `backfill verify` through the proxy, cut twice while it walks: it reads again on a new
/// connection and reports the table in sync, exit 0.
#[tokio::test]
async fn verify_cut_while_it_walks_reads_again_and_reports() {
    let db = TestDb::new("faults_verify").await;
    let client = db.connect().await;
    seed_users(&client, 100_000).await;
    let plans = Plans::new("faults_verify");
    let plan = plans.write("0001_split.toml", SPLIT_USERS);
    backfill_ok(&["run", &plan, "--progress", "quiet"], Some(&db.url));
    let proxy = Proxy::start(server().addr());
    let verify = backfill_spawn(
        &["verify", &plan, "--max-rows-per-second", "25000"],
        &proxy.url(&db),
    );
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        proxy.cut();
    }
    let out = finish(verify).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("100000 rows read, 0 out of sync"),
        "{}",
        show(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("connection was lost during verify"),
        "the cuts did not land during the walk: {}",
        show(&out)
    );
}
