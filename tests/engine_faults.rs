//! The engine under faults and live traffic, through the binary as a user runs it: writers
//! during the whole backfill, SIGKILL at random moments, SIGINT, a row lock held for 10 s,
//! PostgreSQL restarted mid-run, a value that cannot be converted, a plan edited after start.
//! Every test ends by checking the rows.

use std::process::{Child, Output};
use std::time::{Duration, Instant};

use backfill::db::ConnectionSpec;
use backfill::ephemeral::{Cluster, ClusterOptions};
use backfill::workload::{self, Workload};
use tokio_postgres::Client;

use crate::support::{
    backfill_cmd, backfill_spawn, backfill_state, count, json_events, out_of_sync, rows, show,
    split_plan, stage, TestDb,
};

async fn seed(client: &Client, table: &str, rows: i64) {
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (id bigserial PRIMARY KEY, full_name text, email text);
             INSERT INTO {table} (full_name, email)
               SELECT 'First' || g || ' Last' || g, 'u' || g || '@example.org' FROM generate_series(1, {rows}) g;
             ANALYZE {table};"
        ))
        .await
        .unwrap_or_else(|e| panic!("seed {table}: {e}"));
}

/// Every row of `table`: the split matches `full_name`. Returns the row count.
async fn check_rows(client: &Client, table: &str) -> i64 {
    let rows = client
        .query(
            &format!("SELECT id, full_name, first_name, last_name FROM {table}"),
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for r in &rows {
        let id: i64 = r.get(0);
        let full: Option<String> = r.get(1);
        let first: Option<String> = r.get(2);
        let last: Option<String> = r.get(3);
        let full = full.unwrap_or_default();
        let mut parts = full.split(' ');
        assert_eq!(
            (first.as_deref(), last.as_deref()),
            (
                Some(parts.next().unwrap_or("")),
                Some(parts.next().unwrap_or(""))
            ),
            "row {id}: {full:?}"
        );
    }
    rows.len() as i64
}

/// The checkpoints agree with the table: the rows seen are exactly the rows between each
/// segment's lower bound and its cursor, and all of those are in sync.
async fn check_checkpoints(client: &Client, plan: &str, table: &str) {
    // A process killed before it created the state schema has checkpointed nothing.
    if crate::support::count(
        client,
        "SELECT count(*) FROM pg_class WHERE oid = to_regclass('backfill.segments')",
    )
    .await
        == 0
    {
        return;
    }
    let row = client
        .query_one(
            &format!(
                "SELECT coalesce(sum(s.rows_seen), 0)::int8,
                        coalesce(sum((SELECT count(*) FROM {table} u
                                       WHERE u.id > coalesce(s.lower_bound[1]::int8, -9223372036854775808)
                                         AND u.id <= s.cursor[1]::int8)), 0)::int8,
                        coalesce(sum((SELECT count(*) FROM {table} u
                                       WHERE u.id > coalesce(s.lower_bound[1]::int8, -9223372036854775808)
                                         AND u.id <= s.cursor[1]::int8
                                         AND (u.first_name IS DISTINCT FROM split_part(u.full_name, ' ', 1)
                                           OR u.last_name IS DISTINCT FROM split_part(u.full_name, ' ', 2)))), 0)::int8
                   FROM backfill.segments s WHERE s.plan = $1"
            ),
            &[&plan],
        )
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let (seen, behind_cursors, wrong): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(seen, behind_cursors, "rows seen vs rows behind the cursors");
    assert_eq!(wrong, 0, "rows behind a cursor out of sync");
}

fn run_args(staged: &crate::support::Staged) -> Vec<String> {
    vec![
        "run".into(),
        staged.arg(),
        "--phase".into(),
        "backfill".into(),
        "--progress".into(),
        "json".into(),
    ]
}

fn wait_timeout(child: &mut Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                panic!("backfill did not finish within {limit:?}");
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("{e}"),
        }
    }
    let mut out = Vec::new();
    let mut err = Vec::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = std::io::Read::read_to_end(&mut s, &mut out);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = std::io::Read::read_to_end(&mut s, &mut err);
    }
    Output {
        status: child.wait().unwrap_or_else(|e| panic!("{e}")),
        stdout: out,
        stderr: err,
    }
}

/// Runs the binary in the background for as long as `f` takes, then waits for it.
async fn run_during<F: std::future::Future<Output = ()>>(
    args: &[String],
    url: &str,
    during: F,
) -> Output {
    let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let mut child = backfill_spawn(&refs, url);
    during.await;
    tokio::task::spawn_blocking(move || wait_timeout(&mut child, Duration::from_secs(120)))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn concurrent_writers_through_old_and_new_columns_leave_nothing_out_of_sync() {
    let db = TestDb::new("faults_writers").await;
    let client = db.connect().await;
    seed(&client, "users", 20_000).await;
    let staged = stage(
        &db,
        "writers",
        &split_plan(
            "writers",
            "users",
            "max_rows_per_second = 8000\nbatch_size = 200",
        ),
    )
    .await;
    let conn = ConnectionSpec::parse(&db.url).unwrap_or_else(|e| panic!("{e}"));
    let app = workload::start(
        &conn,
        &Workload {
            statements: vec![
                // The old release: writes full_name.
                "INSERT INTO users (full_name, email) VALUES ('Old' || $1::int8 || ' Insert', 'x')".into(),
                "UPDATE users SET full_name = 'Old' || $1::int8 || ' Update' WHERE id = $1".into(),
                // The new release: writes first_name and last_name.
                "INSERT INTO users (first_name, last_name, email) VALUES ('New' || $1::int8, 'Insert', 'y')".into(),
                "UPDATE users SET first_name = 'New' || $1::int8, last_name = 'Update' WHERE id = $1".into(),
                "DELETE FROM users WHERE id = $1::int8 + 7".into(),
            ],
            key_max: 20_000,
            tasks: 4,
            pause: Duration::from_millis(1),
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let out = run_during(&run_args(&staged), &db.url, async {}).await;
    let report = app.stop().await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        report.ops > 500,
        "the writers ran: {} statements",
        report.ops
    );
    assert_eq!(report.errors, 0, "writer errors: {:?}", report.first_errors);
    assert_eq!(out_of_sync(&client, &staged.schedule).await, 0);
    let n = check_rows(&client, "users").await;
    assert!(n > 19_000, "{n} rows");
}

#[tokio::test]
async fn a_writer_inserting_as_fast_as_it_can_does_not_keep_the_backfill_running() {
    let db = TestDb::new("faults_inserter").await;
    let client = db.connect().await;
    seed(&client, "users", 30_000).await;
    let staged = stage(
        &db,
        "inserter",
        &split_plan("inserter", "users", "workers = 2"),
    )
    .await;
    let conn = ConnectionSpec::parse(&db.url).unwrap_or_else(|e| panic!("{e}"));
    let app = workload::start(
        &conn,
        &Workload {
            statements: vec![
                "INSERT INTO users (full_name, email) SELECT 'Fast' || $1::int8 || ' Insert', 'f' FROM generate_series(1, 20)".into(),
            ],
            key_max: 1_000_000,
            tasks: 2,
            pause: Duration::ZERO,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let out = run_during(&run_args(&staged), &db.url, async {}).await;
    let report = app.stop().await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(report.errors, 0, "{:?}", report.first_errors);
    // The backfill walked the rows that existed when it started, not the new ones.
    let (seen, left) = backfill_state(&client, "inserter").await;
    assert_eq!(left, 0);
    let at_start = crate::support::rows(
        &client,
        "SELECT count(*)::text FROM users WHERE id <= (SELECT max(upper_bound[1]::int8) FROM backfill.segments WHERE plan = 'inserter')",
    )
    .await;
    assert_eq!(vec![seen.to_string()], at_start);
    let n = check_rows(&client, "users").await;
    assert!(
        n > 30_000,
        "the writer inserted while the backfill ran ({n} rows)"
    );
}

/// A small deterministic generator for the kill delays.
fn delays(seed: u64) -> impl Iterator<Item = Duration> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    std::iter::from_fn(move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        Some(Duration::from_millis(100 + (s >> 33) % 1400))
    })
}

/// Kills, reruns and checks one seed; true when a kill landed in the middle of the backfill.
async fn kill_and_rerun(db: &TestDb, seed: u64) -> bool {
    let client = db.connect().await;
    let table = format!("users_{seed}");
    let plan = format!("kill_{seed}");
    seed_table(&client, &table).await;
    let staged = stage(
        db,
        &plan,
        &split_plan(
            &plan,
            &table,
            "max_rows_per_second = 12000\nbatch_size = 300",
        ),
    )
    .await;
    let args = run_args(&staged);
    let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let mut mid_run = false;
    for delay in delays(seed).take(2) {
        let mut child = backfill_spawn(&refs, &db.url);
        tokio::time::sleep(delay).await;
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        check_checkpoints(&client, &plan, &table).await;
        let (seen, _) = backfill_state(&client, &plan).await;
        mid_run |= seen > 0 && seen < 24_000;
    }
    let out = backfill_cmd(&refs, Some(&db.url));
    assert_eq!(out.status.code(), Some(0), "seed {seed}: {}", show(&out));
    let n = check_rows(&client, &table).await;
    let (seen, left) = backfill_state(&client, &plan).await;
    assert_eq!(left, 0, "seed {seed}");
    assert_eq!(seen, n, "seed {seed}: rows seen vs rows in the table");
    check_checkpoints(&client, &plan, &table).await;
    mid_run
}

async fn seed_table(client: &Client, table: &str) {
    seed(client, table, 24_000).await;
}

/// Kills and reruns five seeds in one database; most kills must land half way.
async fn kill_seeds(test: &str, seeds: std::ops::RangeInclusive<u64>) {
    let db = TestDb::new(test).await;
    let mut mid_run = 0;
    for seed in seeds {
        mid_run += usize::from(kill_and_rerun(&db, seed).await);
    }
    assert!(
        mid_run >= 3,
        "only {mid_run} of 5 seeds killed a run half way"
    );
}

#[tokio::test]
async fn sigkill_at_random_moments_then_rerun_seeds_1_to_5() {
    kill_seeds("faults_kill_a", 1..=5).await;
}

#[tokio::test]
async fn sigkill_at_random_moments_then_rerun_seeds_6_to_10() {
    kill_seeds("faults_kill_b", 6..=10).await;
}

#[tokio::test]
async fn sigint_once_exits_130_with_consistent_checkpoints_and_the_rerun_finishes() {
    let db = TestDb::new("faults_sigint").await;
    let client2 = db.connect().await;
    seed(&client2, "users", 30_000).await;
    let staged = stage(
        &db,
        "sigint",
        &split_plan("sigint", "users", "max_rows_per_second = 6000"),
    )
    .await;
    let args = [
        "run".to_string(),
        staged.arg(),
        "--phase".into(),
        "backfill".into(),
    ];
    let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let mut child = backfill_spawn(&refs, &db.url);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success());
    let out =
        tokio::task::spawn_blocking(move || wait_timeout(&mut child, Duration::from_secs(30)))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{}", show(&out));
    assert!(
        stderr.contains("Resume with: backfill run") && stderr.contains("--phase backfill"),
        "{stderr}"
    );
    let (seen, left) = backfill_state(&client2, "sigint").await;
    assert!(
        seen > 0 && seen < 30_000,
        "interrupted half way: {seen} rows seen"
    );
    assert!(left > 0);
    check_checkpoints(&client2, "sigint", "users").await;
    let out = backfill_cmd(&refs, Some(&db.url));
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(check_rows(&client2, "users").await, 30_000);
    assert_eq!(backfill_state(&client2, "sigint").await, (30_000, 0));
}

#[tokio::test]
async fn a_row_locked_for_10s_holds_up_only_its_chunk() {
    let db = TestDb::new("faults_row_lock").await;
    let client = db.connect().await;
    seed(&client, "users", 20_000).await;
    let staged = stage(
        &db,
        "rowlock",
        &split_plan("rowlock", "users", "lock_timeout = \"500ms\"\nworkers = 2"),
    )
    .await;
    let mut holder = db.connect().await;
    let tx = holder.transaction().await.unwrap_or_else(|e| panic!("{e}"));
    tx.execute("SELECT 1 FROM users WHERE id = 7777 FOR UPDATE", &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let watcher = db.connect().await;
    let out = run_during(&run_args(&staged), &db.url, async {
        tokio::time::sleep(Duration::from_secs(8)).await;
        // Every other segment is done while the lock is still held.
        let (_, left) = backfill_state(&watcher, "rowlock").await;
        assert_eq!(left, 1, "segments left while the row is locked");
        tokio::time::sleep(Duration::from_secs(2)).await;
        tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
    })
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let events = json_events(&out.stdout);
    let retries: Vec<_> = events.iter().filter(|e| e["event"] == "retry").collect();
    assert!(
        retries
            .iter()
            .any(|e| e["reason"].as_str().unwrap_or("").contains("55P03")),
        "no lock-timeout retry in the progress output: {retries:?}"
    );
    assert_eq!(check_rows(&client, "users").await, 20_000);
    assert_eq!(backfill_state(&client, "rowlock").await, (20_000, 0));
}

#[tokio::test]
async fn postgres_restarted_in_the_middle_of_a_run() {
    let cluster = Cluster::start(&ClusterOptions {
        unsafe_fast: true,
        watchdog: true,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let admin = crate::support::connect_url(&cluster.url("postgres")).await;
    admin
        .batch_execute("CREATE DATABASE restart")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let db = TestDb {
        name: "restart".into(),
        url: cluster.url("restart"),
    };
    let client = db.connect().await;
    seed(&client, "users", 30_000).await;
    let staged = stage(
        &db,
        "restart",
        &split_plan("restart", "users", "max_rows_per_second = 10000"),
    )
    .await;
    let out = run_during(&run_args(&staged), &db.url, async {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        cluster.restart().unwrap_or_else(|e| panic!("{e}"));
    })
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let events = json_events(&out.stdout);
    assert!(
        events.iter().any(|e| e["event"] == "retry"),
        "the workers reconnected: {events:?}"
    );
    let client = db.connect().await;
    assert_eq!(check_rows(&client, "users").await, 30_000);
    assert_eq!(backfill_state(&client, "restart").await, (30_000, 0));
    cluster.stop();
}

#[tokio::test]
async fn a_value_that_cannot_be_converted_stops_the_run_at_its_row() {
    let db = TestDb::new("faults_bad_value").await;
    let client = db.connect().await;
    client
        .batch_execute(
            "CREATE TABLE k (id bigint PRIMARY KEY, payload text NOT NULL);
             INSERT INTO k SELECT g, g::text FROM generate_series(1, 5000) g;
             UPDATE k SET payload = 'twelve' WHERE id = 3456;",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let plan = r#"
name = "bad_value"
table = "k"

[[operations]]
kind = "add_column"
name = "n"
type = "int"
up = "payload::int"

[backfill]
workers = 1
batch_size = 1000
"#;
    let staged = stage(&db, "bad_value", plan).await;
    let args = ["run", &staged.arg(), "--phase", "backfill"];
    let out = backfill_cmd(&args, Some(&db.url));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stderr.contains(r#""id" = '3456'"#), "{stderr}");
    assert!(
        stderr.contains("22P02") && stderr.contains("twelve"),
        "{stderr}"
    );
    // Rows before the bad one are done; it and the rows after it in its chunk are not.
    let done =
        crate::support::rows(&client, "SELECT count(*)::text FROM k WHERE n IS NOT NULL").await;
    let done: i64 = done[0].parse().unwrap_or(-1);
    assert!((0..3456).contains(&done), "{done} rows filled");
    let wrong = crate::support::rows(
        &client,
        "SELECT count(*)::text FROM k WHERE n IS NOT NULL AND n <> id",
    )
    .await;
    assert_eq!(wrong, ["0"]);
    // Fix the row; the rerun finishes.
    client
        .batch_execute("UPDATE k SET payload = '3456' WHERE id = 3456")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let out = backfill_cmd(&args, Some(&db.url));
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let wrong = crate::support::rows(
        &client,
        "SELECT count(*)::text FROM k WHERE n IS DISTINCT FROM id",
    )
    .await;
    assert_eq!(wrong, ["0"]);
    assert_eq!(backfill_state(&client, "bad_value").await, (5000, 0));
}

#[tokio::test]
async fn a_plan_edited_after_its_backfill_started_is_refused_unless_forced() {
    let db = TestDb::new("faults_edited").await;
    let client = db.connect().await;
    seed(&client, "users", 3000).await;
    let staged = stage(&db, "edited", &split_plan("edited", "users", "workers = 2")).await;
    let args = ["run", &staged.arg(), "--phase", "backfill"];
    let out = backfill_cmd(&args, Some(&db.url));
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = std::fs::read_to_string(&staged.path).unwrap_or_default();
    std::fs::write(&staged.path, text.replace("workers = 2", "workers = 3"))
        .unwrap_or_else(|e| panic!("{e}"));
    let out = backfill_cmd(&args, Some(&db.url));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        stderr.contains("changed since its backfill started") && stderr.contains("--force"),
        "{stderr}"
    );
    let forced = ["run", &staged.arg(), "--phase", "backfill", "--force"];
    let out = backfill_cmd(&forced, Some(&db.url));
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(check_rows(&client, "users").await, 3000);
}

/// A `notes` table of `rows` mixed-case emails (`User<id>@Example.COM`, `touched` false), and
/// the plan `name` that lowers them in place, staged (expand and dual-write run), with
/// `backfill` as its `[backfill]` settings.
async fn stage_lower_emails(
    db: &TestDb,
    name: &str,
    rows: i64,
    backfill: &str,
) -> crate::support::Staged {
    let client = db.connect().await;
    client
        .execute(
            "CREATE TABLE notes (id bigint PRIMARY KEY, email text NOT NULL, touched bool NOT NULL DEFAULT false)",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .execute(
            "INSERT INTO notes SELECT g, 'User' || g || '@Example.COM' FROM generate_series(1, $1::int8) g",
            &[&rows],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let plan = format!(
        "table = \"notes\"\n[[operations]]\nkind = \"update_rows\"\nset = {{ email = \"lower(email)\" }}\nwhere = \"email <> lower(email)\"\n[backfill]\n{backfill}\n"
    );
    stage(db, name, &plan).await
}

/// An in-place chunk saves the old values of the rows it writes, for rollback. A row written by
/// another session after the chunk's snapshot and before the chunk writes it must be backfilled
/// from that write (not from the version the snapshot saw), and the rollback must put that write
/// back: PostgreSQL rechecks the row's latest version and hands the undo trigger the version the
/// chunk overwrote. The writer here skips the table's triggers, as a logical replication apply
/// does (`session_replication_role = replica`), so the row is still out of sync after its write
/// and its own write saves nothing.
#[tokio::test]
async fn a_row_written_during_an_in_place_chunk_keeps_the_applications_write() {
    let db = TestDb::new("faults_in_place_race").await;
    let client = db.connect().await;
    let staged = stage_lower_emails(
        &db,
        "inplace_race",
        40,
        "workers = 1\nbatch_size = 100\nlock_timeout = \"60s\"",
    )
    .await;
    // Another session holds row 1: the chunk of the first segment (rows 1 to 10 of 4 segments),
    // its snapshot taken, waits there before it writes any row.
    let mut holder = db.connect().await;
    let tx = holder.transaction().await.unwrap_or_else(|e| panic!("{e}"));
    tx.execute("SELECT 1 FROM notes WHERE id = 1 FOR UPDATE", &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let app = db.connect().await;
    let out = run_during(&run_args(&staged), &db.url, async {
        let waiting = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%\\_bf\\_changed%'";
        let deadline = Instant::now() + Duration::from_secs(60);
        while count(&app, waiting).await == 0 {
            assert!(Instant::now() < deadline, "the chunk never waited for row 1");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Row 5, which the waiting chunk read in its snapshot but has not written.
        app.batch_execute(
            "SET session_replication_role = replica; UPDATE notes SET email = 'Changed5@Example.COM' WHERE id = 5; RESET session_replication_role;",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
    })
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let expect = |rolled_back: bool| -> Vec<String> {
        (1..=40)
            .map(|g| match (g, rolled_back) {
                (5, false) => "5 changed5@example.com".to_string(),
                (5, true) => "5 Changed5@Example.COM".to_string(),
                (_, false) => format!("{g} user{g}@example.com"),
                (_, true) => format!("{g} User{g}@Example.COM"),
            })
            .collect()
    };
    let table = "SELECT id || ' ' || email FROM notes ORDER BY id";
    assert_eq!(rows(&client, table).await, expect(false));
    // The rollback puts back what the backfill overwrote: row 5 as the other session left it.
    let mut admin = db.connect().await;
    backfill::executor::run_steps(
        &mut admin,
        &staged.schedule,
        &staged.schedule.rollback,
        "rollback",
        &backfill::executor::ExecOptions {
            lock_timeout: Duration::from_secs(5),
            retries: 3,
            meter: backfill::metrics::Meter::none(),
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rows(&client, table).await, expect(true));
}

/// A backfill that rewrites a column in place, whose expand ran under an earlier build (whose
/// chunks saved the old values themselves, so expand installed no undo trigger): the rerun
/// installs the trigger before its first chunk, and the rollback puts every value back. The
/// first run stops at a row the plan's expression cannot compute, after expand and dual-write
/// are recorded; the trigger is dropped before the rerun.
#[tokio::test]
async fn an_in_place_backfill_started_without_the_undo_trigger_gets_it_before_its_first_chunk() {
    let db = TestDb::new("faults_undo_trigger_installed").await;
    let client = db.connect().await;
    client
        .batch_execute(
            "CREATE TABLE notes (id bigint PRIMARY KEY, n int NOT NULL, label text NOT NULL);
             INSERT INTO notes SELECT g, CASE WHEN g = 30 THEN 0 ELSE g END, 'l' || g FROM generate_series(1, 200) g;",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = std::env::temp_dir().join(format!("backfill-undo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let path = dir.join("relabel.toml");
    std::fs::write(
        &path,
        r#"
table = "notes"
[[operations]]
kind = "update_rows"
set = { label = "CASE WHEN 1 / n >= 0 THEN upper(label) END" }
where = "label <> upper(label)"
[backfill]
workers = 1
batch_size = 20
"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let plan = path.display().to_string();
    let first = backfill_cmd(&["run", &plan], Some(&db.url));
    assert_eq!(first.status.code(), Some(1), "{}", show(&first));
    assert!(
        show(&first).contains("division by zero"),
        "{}",
        show(&first)
    );
    let table = "SELECT id || ' ' || label FROM notes ORDER BY id";
    // What an earlier build's expand left: the undo table, no undo trigger. The application
    // mends row 30, and the dual-write trigger rewrites its label as it writes it.
    client
        .batch_execute(
            "DROP TRIGGER bf_relabel_undo_save ON notes; UPDATE notes SET n = 1 WHERE id = 30;",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let second = backfill_cmd(&["run", &plan], Some(&db.url));
    assert_eq!(second.status.code(), Some(0), "{}", show(&second));
    assert!(
        show(&second).contains("install the undo trigger"),
        "{}",
        show(&second)
    );
    let all = |upper: bool| -> Vec<String> {
        (1..=200)
            .map(|g| match (g, upper) {
                (30, _) | (_, true) => format!("{g} L{g}"),
                (_, false) => format!("{g} l{g}"),
            })
            .collect()
    };
    assert_eq!(rows(&client, table).await, all(true));
    // Every row the backfill rewrote is saved once; row 30 was in sync already.
    let saved = count(
        &client,
        "SELECT count(*) FROM backfill.bf_relabel_undo, unnest(rows)",
    )
    .await;
    assert_eq!(saved, 199);
    let abort = backfill_cmd(&["abort", &plan], Some(&db.url));
    assert_eq!(abort.status.code(), Some(0), "{}", show(&abort));
    // Back as before the backfill; row 30 keeps the application's write.
    assert_eq!(rows(&client, table).await, all(false));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `run --phase backfill` of an in-place plan whose undo trigger is missing refuses to start:
/// exit 2, the trigger named, no row changed.
#[tokio::test]
async fn a_backfill_only_run_without_the_undo_trigger_is_refused() {
    let db = TestDb::new("faults_undo_trigger_missing").await;
    let client = db.connect().await;
    let staged = stage_lower_emails(&db, "no_undo_trigger", 40, "").await;
    client
        .batch_execute("DROP TRIGGER bf_no_undo_trigger_undo_save ON notes")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let table = "SELECT id || ' ' || email FROM notes ORDER BY id";
    let before = rows(&client, table).await;
    let args = run_args(&staged);
    let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let out = backfill_cmd(&refs, Some(&db.url));
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        show(&out).contains("the undo trigger \"bf_no_undo_trigger_undo_save\" is not installed"),
        "{}",
        show(&out)
    );
    assert_eq!(rows(&client, table).await, before);
}

/// An in-place backfill with the application writing the same rows throughout, then rolled
/// back: every row the application wrote keeps its write (as its dual-write trigger left it),
/// and every other row is back to its value from before the backfill.
#[tokio::test]
async fn an_in_place_backfill_rolled_back_under_writers_keeps_every_application_write() {
    let db = TestDb::new("faults_in_place_writers").await;
    let client = db.connect().await;
    let staged = stage_lower_emails(
        &db,
        "inplace_writers",
        3000,
        "workers = 2\nbatch_size = 40\nmax_batch_size = 80",
    )
    .await;
    let app = db.connect().await;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut writes = 0u64;
            let mut id: i64 = 1;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                // Scattered over the table, ahead of and behind the workers.
                id = (id * 7919 + 13) % 3000 + 1;
                app.execute(
                    "UPDATE notes SET email = 'App' || id || '@MiXed.ORG', touched = true WHERE id = $1",
                    &[&id],
                )
                .await
                .unwrap_or_else(|e| panic!("{e}"));
                writes += 1;
            }
            writes
        })
    };
    let out = run_during(&run_args(&staged), &db.url, async {}).await;
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let writes = writer.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        writes > 0,
        "the application wrote nothing during the backfill"
    );
    let table = "SELECT id || ' ' || email || ' ' || touched FROM notes ORDER BY id";
    let expect = |rolled_back: bool, touched: &[bool]| -> Vec<String> {
        (1..=3000usize)
            .map(|g| match (touched[g - 1], rolled_back) {
                (true, _) => format!("{g} app{g}@mixed.org true"),
                (false, false) => format!("{g} user{g}@example.com false"),
                (false, true) => format!("{g} User{g}@Example.COM false"),
            })
            .collect()
    };
    let touched: Vec<bool> = client
        .query("SELECT touched FROM notes ORDER BY id", &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows(&client, table).await, expect(false, &touched));
    let abort = backfill_cmd(&["abort", &staged.arg()], Some(&db.url));
    assert_eq!(abort.status.code(), Some(0), "{}", show(&abort));
    assert_eq!(rows(&client, table).await, expect(true, &touched));
}
