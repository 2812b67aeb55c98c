//! What people read of a backfill's progress: the row estimate of a table that was never
//! analyzed, at the start and once the walk passes it (`status`, the log lines), and the
//! workers that the progress sinks show while `backfill set workers=N` changes them.

use std::collections::BTreeMap;

use crate::support::{
    backfill_cmd, backfill_ok, backfill_spawn, count, finish, interrupt, json_events, seed_users,
    show, unsplit_rows, wait_walked, Plans, TestDb, SPLIT_USERS,
};

/// Rows of the never-analyzed table.
const ROWS: i64 = 40_000;

/// The backfill of plan `plan` as `status --json` shows it.
fn status_backfill(url: &str, plan: &str) -> serde_json::Value {
    let out = backfill_ok(&["status", "--json"], Some(url));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    v.as_array()
        .and_then(|a| a.iter().find(|p| p["plan"] == plan))
        .map(|p| p["backfill"].clone())
        .unwrap_or_else(|| panic!("no plan {plan} in {out}"))
}

/// `estimate` is within a sane factor of the table's rows.
fn near_the_truth(estimate: i64) -> bool {
    (ROWS * 4 / 5..=ROWS * 5 / 4).contains(&estimate)
}

/// A table loaded and never analyzed (reltuples -1): the planner guesses its rows per page from
/// the column types, far under the truth for short texts. The estimate is measured instead;
/// and when the walk passes an estimate (one recorded by an older binary from that guess),
/// `status` extrapolates from the segments rather than claiming 100% with rows still to walk.
#[tokio::test]
async fn a_never_analyzed_table_is_estimated_and_never_shown_done_early() {
    let db = TestDb::new("progress_never_analyzed").await;
    let client = db.connect().await;
    client
        .batch_execute(&format!(
            "CREATE TABLE users (id bigserial PRIMARY KEY, full_name text, email text, street text, city text)
               WITH (autovacuum_enabled = off);
             INSERT INTO users (full_name, email, street, city)
               SELECT 'First' || g || ' Last' || g, 'u' || g || '@example.org', g || ' Main Street', 'Springfield'
                 FROM generate_series(1, {ROWS}) g;"
        ))
        .await
        .expect("seed");
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM pg_class WHERE oid = 'users'::regclass AND (reltuples < 0 OR relpages = 0)"
        )
        .await,
        1,
        "the table must never have been analyzed for this test to mean anything"
    );
    let planned: i64 = client
        .query_one("EXPLAIN SELECT 1 FROM users", &[])
        .await
        .map(|r| r.get::<_, String>(0))
        .ok()
        .and_then(|l| {
            l.split("rows=")
                .nth(1)
                .and_then(|r| r.split(' ').next()?.parse().ok())
        })
        .unwrap_or(0);
    assert!(
        planned < ROWS * 4 / 5,
        "the planner's guess ({planned}) must be off for this test to mean anything"
    );

    let plans = Plans::new("never_analyzed");
    let plan = plans.write(
        "split.toml",
        &format!("{SPLIT_USERS}\n[backfill]\nworkers = 1\nmax_rows_per_second = 4000\n"),
    );
    let child = backfill_spawn(&["run", &plan, "--progress", "json"], &db.url);
    // Past the first of the 4 segments (10,000 rows each), well before the end.
    wait_walked(&client, 12_000).await;
    interrupt(&child);
    let out = finish(child).await;
    assert_eq!(out.status.code(), Some(130), "{}", show(&out));
    let events = json_events(&out.stdout);
    let started = events
        .iter()
        .find(|e| e["event"] == "started")
        .unwrap_or_else(|| panic!("no start: {}", show(&out)));
    let estimate = started["rows_estimate"].as_i64().unwrap_or(0);
    assert!(
        near_the_truth(estimate),
        "estimate {estimate} of {ROWS} rows"
    );

    let b = status_backfill(&db.url, "split");
    let done = b["rows_done"].as_i64().unwrap_or(0);
    assert!(done > 10_000 && done < ROWS, "{b}");
    assert_eq!(b["finished"], false, "{b}");
    assert!(b["percent"].as_f64().unwrap_or(100.0) < 100.0, "{b}");
    assert!(
        near_the_truth(b["rows_estimate"].as_i64().unwrap_or(0)),
        "{b}"
    );

    // As if the estimate had been the planner's guess: the walk has passed it.
    client
        .execute(
            "UPDATE backfill.backfills SET row_estimate = $1 WHERE plan = 'split'",
            &[&(done / 2)],
        )
        .await
        .expect("an estimate under the rows walked");
    let b = status_backfill(&db.url, "split");
    assert_eq!(b["finished"], false, "{b}");
    let percent = b["percent"].as_f64().unwrap_or(100.0);
    assert!(percent < 50.0, "{b}");
    assert!(
        near_the_truth(b["rows_estimate"].as_i64().unwrap_or(0)),
        "{b}"
    );
    let text = backfill_ok(&["status"], Some(&db.url));
    assert!(
        !text.contains("(100.0%)") && !text.contains("ETA 0s"),
        "{text}"
    );

    // The resumed run starts from the extrapolation too, says so in words, and finishes.
    let out = backfill_cmd(
        &[
            "run",
            &plan,
            "--max-rows-per-second",
            "0",
            "--progress",
            "plain",
        ],
        Some(&db.url),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let resumed = stderr
        .lines()
        .find_map(|l| l.split("resuming with 1 worker: ").nth(1))
        .unwrap_or_else(|| panic!("no resume line: {stderr}"));
    let estimate: i64 = resumed
        .split('~')
        .nth(1)
        .and_then(|r| r.split(' ').next()?.parse().ok())
        .unwrap_or(0);
    assert!(near_the_truth(estimate), "{resumed}");
    assert!(resumed.contains(" segments to go"), "{resumed}");
    let b = status_backfill(&db.url, "split");
    assert_eq!(
        (&b["finished"], &b["rows_done"], &b["percent"]),
        (&true.into(), &ROWS.into(), &100.0.into()),
        "{b}"
    );
}

/// `--progress json` says when each worker starts and stops, which is what the bars draw their
/// worker lines from: after `backfill set workers=1` the others stop (and walk no more), after
/// `workers=2` one comes back, and every worker has stopped when the run finishes.
#[tokio::test]
async fn the_workers_shown_follow_backfill_set_workers() {
    let db = TestDb::new("progress_workers").await;
    let client = db.connect().await;
    seed_users(&client, 30_000).await;
    let plans = Plans::new("progress_workers");
    let plan = plans.write(
        "workers.toml",
        &format!("{SPLIT_USERS}\n[backfill]\nworkers = 4\nbatch_size = 200\nmax_rows_per_second = 3000\n"),
    );
    // `--workers 4`: four from the start (the plan's number alone is a ceiling).
    let child = backfill_spawn(
        &["run", &plan, "--workers", "4", "--progress", "json"],
        &db.url,
    );
    wait_walked(&client, 1_000).await;
    backfill_ok(&["set", "workers", "workers=1"], Some(&db.url));
    wait_walked(&client, 10_000).await;
    backfill_ok(&["set", "workers", "workers=2"], Some(&db.url));
    let out = finish(child).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let events = json_events(&out.stdout);

    // Replay the events as the bars do: the workers running after each one.
    let mut running: BTreeMap<u64, bool> = BTreeMap::new();
    let mut after_one = None;
    let mut after_two = None;
    for e in &events {
        let worker = e["worker"].as_u64().unwrap_or(0);
        match e["event"].as_str().unwrap_or("") {
            "worker_started" => {
                assert!(
                    running.insert(worker, true) != Some(true),
                    "started twice: {e}"
                );
            }
            "worker_stopped" => {
                assert_eq!(
                    running.insert(worker, false),
                    Some(true),
                    "not running: {e}"
                );
            }
            "chunk" => assert_eq!(
                running.get(&worker),
                Some(&true),
                "a stopped worker walked: {e}"
            ),
            "settings_changed" if e["changes"] == "workers=1" => after_one = Some(()),
            "settings_changed" if e["changes"] == "workers=2" => after_two = Some(()),
            "finished" => {
                assert!(
                    running.values().all(|r| !r),
                    "still running at the end: {running:?}"
                )
            }
            _ => {}
        }
        // Once `workers=1` is seen and before `workers=2`, workers 2-4 stop and none starts.
        if after_one.is_some() && after_two.is_none() && e["event"] == "worker_started" {
            assert_eq!(worker, 1, "a worker started while one was wanted: {e}");
        }
    }
    assert!(after_one.is_some() && after_two.is_some(), "{}", show(&out));
    let started = |w: u64| {
        events
            .iter()
            .filter(|e| e["event"] == "worker_started" && e["worker"] == w)
            .count()
    };
    // Workers 1-4 at the start, then worker 2 again (or 2 and 1, if 1 had ended meanwhile).
    assert_eq!((started(3), started(4)), (1, 1), "{}", show(&out));
    assert!(started(2) >= 2, "{}", show(&out));
    assert!(events.iter().any(|e| e["event"] == "finished"));
}

/// The pace controller through the binary: with `max_commit_latency` far below any real
/// commit, it takes the workers down to one, then spaces the chunks out, and says so in the
/// events; interrupted, the run finishes on a rerun with every row in sync.
#[tokio::test]
async fn a_commit_latency_limit_takes_workers_away_then_spaces_the_chunks() {
    let db = TestDb::new("pace_latency").await;
    let client = db.connect().await;
    seed_users(&client, 1_000_000).await;
    let plans = Plans::new("pace_latency");
    let plan = plans.write(
        "pace.toml",
        &format!(
            "{SPLIT_USERS}\n[backfill]\nworkers = 4\nbatch_size = 10\nmax_batch_size = 10\n[throttle]\nmax_commit_latency = \"1us\"\n"
        ),
    );
    let child = backfill_spawn(&["run", &plan, "--progress", "json"], &db.url);
    // Two windows of the controller: down to one worker, then the chunks spaced out.
    wait_walked(&client, 0).await;
    tokio::time::sleep(std::time::Duration::from_secs(13)).await;
    interrupt(&child);
    let out = finish(child).await;
    assert_eq!(out.status.code(), Some(130), "{}", show(&out));
    let events = json_events(&out.stdout);
    assert_eq!(
        events
            .iter()
            .find(|e| e["event"] == "started")
            .map(|e| e["workers"].clone()),
        Some(2.into()),
        "{}",
        show(&out)
    );
    let changes: Vec<String> = events
        .iter()
        .filter(|e| e["event"] == "settings_changed")
        .map(|e| format!("{} {}", e["workers"], e["changes"].as_str().unwrap_or("")))
        .collect();
    assert!(
        changes
            .first()
            .is_some_and(|c| c.starts_with("1 workers=1 (commit latency")),
        "{changes:?}\n{}",
        show(&out)
    );
    assert!(
        changes.iter().any(|c| c.contains("chunks spaced by")),
        "{changes:?}\n{}",
        show(&out)
    );
    // No worker above the first walks once it is down to one.
    let down = events
        .iter()
        .position(|e| e["event"] == "settings_changed")
        .unwrap_or(0);
    let stopped_2 = events[down..]
        .iter()
        .position(|e| e["event"] == "worker_stopped" && e["worker"] == 2)
        .map(|i| i + down)
        .unwrap_or_else(|| panic!("worker 2 never stopped: {}", show(&out)));
    assert!(events[stopped_2..]
        .iter()
        .all(|e| e["event"] != "chunk" || e["worker"] == 1));
    // The rerun, with the number of workers given and bigger chunks, finishes it.
    backfill_ok(
        &[
            "set",
            "pace",
            "max_batch_size=20000",
            "max_commit_latency=off",
        ],
        Some(&db.url),
    );
    let out = backfill_cmd(
        &["run", &plan, "--workers", "4", "--progress", "quiet"],
        Some(&db.url),
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(unsplit_rows(&client).await, 0);
}
