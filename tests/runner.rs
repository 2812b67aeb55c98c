//! `backfill run` across releases as a deploy pipeline uses it, and the commands that steer it
//! from other terminals: two plans in flight on one table, two runners at once, a DDL step
//! behind a long transaction, an edited plan, `status --json` during a run, pause and resume,
//! verify, the contract gates, and abort from each phase before contract.

use std::time::{Duration, Instant};

use backfill::db::ConnectionSpec;
use backfill::workload::{self, Workload};

use crate::support::{
    backfill_cmd, backfill_ok, backfill_spawn, count, finish, rows, seed_users, show,
    user_snapshot, wait_walked, Plans, TestDb, SPLIT_USERS,
};

#[tokio::test]
async fn two_plans_on_one_table_at_different_phases() {
    let db = TestDb::new("runner_two_plans").await;
    let client = db.connect().await;
    seed_users(&client, 3000).await;
    let plans = Plans::new("two_plans");
    plans.write(
        "0001_split.toml",
        &format!("{SPLIT_USERS}\n[release]\nexpand = \"1.4.0\"\ncontract = \"1.6.0\"\n"),
    );
    plans.write(
        "0002_domain.toml",
        r#"
table = "users"
[[operations]]
kind = "add_column"
name = "email_domain"
type = "text"
up = "lower(split_part(email, '@', 2))"
[release]
expand = "1.5.0"
contract = "1.6.0"
"#,
    );
    let out = backfill_ok(
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
    assert!(
        out.contains("0001_split: contract waits for release 1.6.0"),
        "{out}"
    );
    assert!(
        out.contains("0002_domain: expand waits for release 1.5.0"),
        "{out}"
    );
    // The old release writes full_name, the new one first/last name.
    client
        .batch_execute(
            "INSERT INTO users (full_name, email) VALUES ('Ada Lovelace', 'ada@Math.org');
             UPDATE users SET first_name = 'Grace', last_name = 'Hopper' WHERE id = 5;",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let out = backfill_ok(
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
    assert!(out.contains("0002_domain: backfill done"), "{out}");
    assert!(
        out.contains("0002_domain: contract waits for release 1.6.0"),
        "{out}"
    );
    // Both triggers are in place; writes go through both.
    let triggers = rows(
        &client,
        "SELECT tgname::text FROM pg_trigger WHERE tgrelid = 'users'::regclass AND NOT tgisinternal ORDER BY 1",
    )
    .await;
    assert_eq!(triggers, ["bf_0001_split_sync", "bf_0002_domain_sync"]);
    client
        .batch_execute(
            "INSERT INTO users (full_name, email) VALUES ('Alan Turing', 'alan@Bletchley.uk');
             UPDATE users SET first_name = 'Barbara', last_name = 'Liskov' WHERE id = 6;",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    backfill_ok(&["verify", &plans.dir()], Some(&db.url));
    let out = backfill_ok(
        &[
            "run",
            &plans.dir(),
            "--release",
            "1.6.0",
            "--progress",
            "quiet",
        ],
        Some(&db.url),
    );
    assert!(out.contains("0001_split: contract done"), "{out}");
    assert!(out.contains("0002_domain: contract done"), "{out}");
    let wrong = count(
        &client,
        "SELECT count(*) FROM users WHERE email_domain IS DISTINCT FROM lower(split_part(email, '@', 2))",
    )
    .await;
    assert_eq!(wrong, 0);
    assert_eq!(
        rows(&client, "SELECT first_name || ' ' || last_name || ' ' || email_domain FROM users WHERE id IN (5, 6, 3001, 3002) ORDER BY id").await,
        ["Grace Hopper example.org", "Barbara Liskov example.org", "Ada Lovelace math.org", "Alan Turing bletchley.uk"]
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM users WHERE first_name IS NULL OR last_name IS NULL"
        )
        .await,
        0
    );
    let cols = rows(&client, "SELECT string_agg(attname::text, ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'users'::regclass AND attnum > 0 AND NOT attisdropped").await;
    assert_eq!(cols, ["id,email,first_name,last_name,email_domain"]);
}

#[tokio::test]
async fn two_runners_started_together_run_each_step_once() {
    let db = TestDb::new("runner_twice").await;
    let client = db.connect().await;
    seed_users(&client, 20_000).await;
    let plans = Plans::new("twice");
    let plan = plans.write(
        "twice.toml",
        &format!("{SPLIT_USERS}\n[[operations]]\nkind = \"create_index\"\ncolumns = [\"email\"]\n[backfill]\nmax_rows_per_second = 20000\n"),
    );
    let args = ["run", plan.as_str(), "--progress", "quiet"];
    let a = backfill_spawn(&args, &db.url);
    let b = backfill_spawn(&args, &db.url);
    let (oa, ob) = (finish(a).await, finish(b).await);
    assert_eq!(oa.status.code(), Some(0), "{}", show(&oa));
    assert_eq!(ob.status.code(), Some(0), "{}", show(&ob));
    // Without a release gate, the contract is a step of its own.
    backfill_ok(
        &["run", plan.as_str(), "--phase", "contract"],
        Some(&db.url),
    );
    let steps = rows(
        &client,
        "SELECT phase || ' ' || step || ' x' || count(*) FROM backfill.events WHERE plan = 'twice' AND kind = 'step finished' GROUP BY phase, step ORDER BY 1",
    )
    .await;
    assert_eq!(
        steps,
        [
            "contract 1 x1",
            "contract 2 x1",
            "dual-write 1 x1",
            "expand 1 x1",
            "expand 2 x1"
        ]
    );
    let phases = rows(
        &client,
        "SELECT phase || ' x' || count(*) FROM backfill.events WHERE plan = 'twice' AND kind = 'finished' GROUP BY phase ORDER BY 1",
    )
    .await;
    assert_eq!(
        phases,
        ["backfill x1", "contract x1", "dual-write x1", "expand x1"]
    );
    assert_eq!(count(&client, "SELECT count(*) FROM users WHERE first_name IS DISTINCT FROM split_part('First' || id || ' Last' || id, ' ', 1)").await, 0);
}

#[tokio::test]
async fn a_long_transaction_delays_expand_without_piling_up_writers() {
    let db = TestDb::new("runner_blocked_ddl").await;
    let client = db.connect().await;
    seed_users(&client, 2000).await;
    let plans = Plans::new("blocked");
    let plan = plans.write(
        "blocked.toml",
        &format!("{SPLIT_USERS}\n[backfill]\nlock_timeout = \"200ms\"\nddl_retries = 30\n"),
    );
    // A long transaction that read the table holds ACCESS SHARE until it ends.
    let mut holder = db.connect().await;
    let tx = holder.transaction().await.unwrap_or_else(|e| panic!("{e}"));
    tx.query("SELECT count(*) FROM users", &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let conn = ConnectionSpec::parse(&db.url).unwrap_or_else(|e| panic!("{e}"));
    let app = workload::start(
        &conn,
        &Workload {
            statements: vec!["UPDATE users SET email = 'w' || $1::int8 WHERE id = $1".into()],
            key_max: 2000,
            tasks: 3,
            pause: Duration::from_millis(5),
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let mut child = backfill_spawn(&["run", &plan, "--progress", "quiet"], &db.url);
    let held = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // While the step waits for its lock, status shows who is on it.
    let out = backfill_ok(&["status", &plan, "--json"], Some(&db.url));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v[0]["phases"][0]["status"], "running", "{out}");
    assert_eq!(v[0]["processes"][0]["phase"], "expand", "{out}");
    assert_eq!(v[0]["processes"][0]["pid"], child.id(), "{out}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        child.try_wait().ok().flatten().is_none(),
        "expand ran through a held lock"
    );
    tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
    let out = finish(child).await;
    let report = app.stop().await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(held.elapsed() >= Duration::from_secs(5));
    assert_eq!(report.errors, 0, "{:?}", report.first_errors);
    // Queued behind a waiting ALTER, writers wait at most its lock_timeout per attempt, never
    // the 5 s the transaction held the table.
    assert!(
        report.max() < Duration::from_millis(2500),
        "writers piled up behind the DDL: max {:?}",
        report.max()
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM users WHERE first_name IS NULL"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn a_plan_edited_after_it_started_is_refused_with_what_changed() {
    let db = TestDb::new("runner_edited").await;
    let client = db.connect().await;
    seed_users(&client, 100).await;
    let plans = Plans::new("edited");
    let text = format!("{SPLIT_USERS}\n[release]\nexpand = \"1.4.0\"\ncontract = \"1.5.0\"\n");
    let plan = plans.write("edited.toml", &text);
    backfill_ok(
        &["run", &plan, "--release", "1.4.0", "--progress", "quiet"],
        Some(&db.url),
    );
    plans.write("edited.toml", &text.replace("' ', 2)", "' ', 3)"));
    let out = backfill_cmd(&["run", &plan, "--release", "1.5.0"], Some(&db.url));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr.contains("was edited after it started"), "{stderr}");
    assert!(
        stderr.contains("line 8: -")
            && stderr.contains("' ', 2)")
            && stderr.contains("line 8: +")
            && stderr.contains("' ', 3)"),
        "{stderr}"
    );
    assert_eq!(count(&client, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'full_name' AND NOT attisdropped").await, 1, "contract ran");
}

#[tokio::test]
async fn status_json_follows_a_run_in_another_process() {
    let db = TestDb::new("runner_status").await;
    let client = db.connect().await;
    seed_users(&client, 30_000).await;
    let plans = Plans::new("status");
    let plan = plans.write(
        "status.toml",
        &format!("{SPLIT_USERS}\n[backfill]\nmax_rows_per_second = 8000\n[release]\nexpand = \"1.4.0\"\ncontract = \"1.5.0\"\n"),
    );
    let child = backfill_spawn(
        &["run", &plan, "--release", "1.4.0", "--progress", "quiet"],
        &db.url,
    );
    let pid = child.id();
    // Wait until the backfill is under way and its heartbeat recorded progress.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let out = backfill_ok(&["status", &plan, "--json"], Some(&db.url));
        let v: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        let p = v[0].clone();
        if p["phase"] == "backfill"
            && p["backfill"]["rows_done"].as_i64().unwrap_or(0) > 0
            && !p["processes"].as_array().map_or(true, |a| a.is_empty())
        {
            break p;
        }
        assert!(Instant::now() < deadline, "no progress in status: {out}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status["plan"], "status");
    assert_eq!(status["phases"][0]["status"], "done");
    assert_eq!(status["phases"][0]["release"], "1.4.0");
    assert_eq!(status["phases"][2]["status"], "running");
    assert_eq!(status["phases"][3]["due_from"], "1.5.0");
    let procs = status["processes"].as_array().cloned().unwrap_or_default();
    assert_eq!(procs.len(), 1, "{status}");
    assert_eq!(procs[0]["pid"], pid);
    assert_eq!(procs[0]["phase"], "backfill");
    let done = status["backfill"]["rows_done"].as_i64().unwrap_or(0);
    assert!(done > 0 && done < 30_000, "{status}");
    let out = finish(child).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let out = backfill_ok(&["status", "--json"], Some(&db.url));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v[0]["phase"], "contract");
    assert_eq!(v[0]["backfill"]["rows_done"], 30_000);
    assert_eq!(v[0]["processes"].as_array().map(|a| a.len()), Some(0));
    let text = backfill_ok(&["status"], Some(&db.url));
    assert!(
        text.contains("contract    waits for release 1.5.0"),
        "{text}"
    );
    drop(client);
}

/// `status --watch` from another terminal: it refreshes while a run works on the plan (on a
/// pipe, each refresh after a `--` line), and ends by itself, exit 0, once nothing is in
/// progress; `--json` prints one line per refresh.
#[tokio::test]
async fn status_watch_follows_a_run_and_ends_with_it() {
    let db = TestDb::new("runner_status_watch").await;
    let client = db.connect().await;
    seed_users(&client, 20_000).await;
    let plans = Plans::new("status_watch");
    let plan = plans.write(
        "watch.toml",
        &format!("{SPLIT_USERS}\n[backfill]\nmax_rows_per_second = 8000\n[release]\nexpand = \"1.4.0\"\ncontract = \"1.5.0\"\n"),
    );
    let run = backfill_spawn(
        &["run", &plan, "--release", "1.4.0", "--progress", "quiet"],
        &db.url,
    );
    // Watch once the run is under way (a plan not started yet is waited for, not "done").
    let deadline = Instant::now() + Duration::from_secs(30);
    while !backfill_ok(&["status", &plan], Some(&db.url)).contains("process") {
        assert!(Instant::now() < deadline, "the run never showed up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let watch = backfill_spawn(
        &["status", &plan, "--watch", "--interval", "300ms"],
        &db.url,
    );
    let json = backfill_spawn(
        &["status", &plan, "--watch", "--interval", "300ms", "--json"],
        &db.url,
    );
    let out = finish(run).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let watched = finish(watch).await;
    assert_eq!(watched.status.code(), Some(0), "{}", show(&watched));
    let text = String::from_utf8_lossy(&watched.stdout);
    let refreshes = text.lines().filter(|l| *l == "--").count();
    assert!(refreshes >= 2, "{text}");
    let last = text.rsplit("--\n").next().unwrap_or_default();
    assert!(
        last.contains("20000 of ~") && last.contains("finished") && !last.contains("process "),
        "{last}"
    );
    let json = finish(json).await;
    assert_eq!(json.status.code(), Some(0), "{}", show(&json));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&json.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.len() >= 2, "{lines:?}");
    assert_eq!(
        lines.last().map(|v| v[0]["backfill"]["rows_done"].clone()),
        Some(20_000.into())
    );
    // A bad interval is refused before anything is read.
    let out = backfill_cmd(&["status", "--watch", "--interval", "soon"], Some(&db.url));
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    drop(client);
}

#[tokio::test]
async fn pause_and_resume_from_another_terminal() {
    let db = TestDb::new("runner_pause").await;
    let client = db.connect().await;
    seed_users(&client, 30_000).await;
    let plans = Plans::new("pause");
    let plan = plans.write(
        "pause.toml",
        &format!("{SPLIT_USERS}\n[backfill]\nmax_rows_per_second = 10000\n"),
    );
    let child = backfill_spawn(&["run", &plan, "--progress", "json"], &db.url);
    let seen =
        "SELECT coalesce(sum(rows_seen), 0)::int8 FROM backfill.segments WHERE plan = 'pause'";
    wait_walked(&client, 0).await;
    backfill_ok(&["pause", "pause"], Some(&db.url));
    // Within the heartbeat and a chunk, the workers hold.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let a = count(&client, seen).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let b = count(&client, seen).await;
    assert_eq!(a, b, "rows moved while paused");
    assert!(a < 30_000, "finished before the pause");
    backfill_ok(&["resume", &plan], Some(&db.url));
    let out = finish(child).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(r#""event":"paused""#) && stdout.contains(r#""event":"resumed""#),
        "{stdout}"
    );
    assert_eq!(count(&client, seen).await, 30_000);
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM users WHERE last_name IS DISTINCT FROM 'Last' || id"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn verify_names_rows_out_of_sync_and_gates_contract() {
    let db = TestDb::new("runner_verify").await;
    let client = db.connect().await;
    seed_users(&client, 500).await;
    let plans = Plans::new("verify");
    let plan = plans.write(
        "verify.toml",
        &format!("{SPLIT_USERS}\n[release]\nexpand = \"1.4.0\"\ncontract = \"1.5.0\"\n"),
    );
    backfill_ok(
        &["run", &plan, "--release", "1.4.0", "--progress", "quiet"],
        Some(&db.url),
    );
    let out = backfill_ok(&["verify", &plan], Some(&db.url));
    assert!(out.contains("500 rows read, 0 out of sync"), "{out}");
    // Unfill two rows behind the trigger's back (as a writer that bypasses it would).
    client
        .batch_execute(
            "SET backfill.bypass = 'verify'; UPDATE users SET first_name = NULL, last_name = NULL WHERE id IN (42, 7); RESET backfill.bypass;",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let out = backfill_cmd(&["verify", &plan], Some(&db.url));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stdout.contains("2 out of sync"), "{stdout}");
    assert!(
        stdout.contains(r#""id" = '7'"#) && stdout.contains(r#""id" = '42'"#),
        "{stdout}"
    );
    // The contract re-walks them first (naming them), then verifies and switches.
    let out = backfill_ok(&["run", &plan, "--release", "1.5.0"], Some(&db.url));
    assert!(
        out.contains("recheck: 2 rows out of sync after the backfill, 2 brought in sync")
            && out.contains(r#""id" = '7'"#)
            && out.contains(r#""id" = '42'"#),
        "{out}"
    );
    assert!(out.contains("contract done"), "{out}");
    assert_eq!(
        rows(
            &client,
            "SELECT first_name || ' ' || last_name FROM users WHERE id IN (7, 42) ORDER BY id"
        )
        .await,
        ["First7 Last7", "First42 Last42"]
    );
}

/// A database that asks for JIT on every statement (`jit_above_cost = 0`) does not get it in
/// backfill's sessions: at 5M rows compiling each chunk cost more than running it, and the
/// backfill crawled. The plan's own expression reads the setting of the session it runs in, so
/// the rows record what the chunks' sessions had, and `verify` (whose session computes the
/// same expression) finds them in sync only if its own session has JIT off too.
#[tokio::test]
async fn backfill_sessions_run_without_jit_whatever_the_database_asks() {
    let db = TestDb::new("runner_no_jit").await;
    let client = db.connect().await;
    client
        .batch_execute(&format!(
            "ALTER DATABASE \"{db}\" SET jit = on;
             ALTER DATABASE \"{db}\" SET jit_above_cost = 0;
             CREATE TABLE notes (id bigint PRIMARY KEY, jit text);
             INSERT INTO notes SELECT g, 'unset' FROM generate_series(1, 2000) g;",
            db = db.name
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // A new session of this database does get JIT: the setting is live.
    let other = db.connect().await;
    assert_eq!(rows(&other, "SHOW jit").await, ["on"]);
    let plans = Plans::new("no_jit");
    let plan = plans.write(
        "no_jit.toml",
        r#"
table = "notes"
[[operations]]
kind = "update_rows"
set = { jit = "current_setting('jit')" }
[release]
expand = "1.0.0"
contract = "2.0.0"
"#,
    );
    backfill_ok(
        &["run", &plan, "--release", "1.0.0", "--progress", "quiet"],
        Some(&db.url),
    );
    assert_eq!(
        rows(
            &client,
            "SELECT jit || ' ' || count(*) FROM notes GROUP BY jit ORDER BY jit"
        )
        .await,
        ["off 2000"]
    );
    let out = backfill_ok(&["verify", &plan], Some(&db.url));
    assert!(out.contains("2000 rows read, 0 out of sync"), "{out}");
}

#[tokio::test]
async fn contract_waits_for_a_release_after_the_backfill_unless_forced() {
    let db = TestDb::new("runner_same_release").await;
    let client = db.connect().await;
    seed_users(&client, 200).await;
    let plans = Plans::new("same_release");
    let plan = plans.write(
        "same.toml",
        &format!("{SPLIT_USERS}\n[release]\nexpand = \"1.4.0\"\ncontract = \"1.5.0\"\n"),
    );
    // Deploying 1.5.0 straight away: expand, dual-write, backfill run, contract must wait.
    let out = backfill_ok(
        &["run", &plan, "--release", "1.5.0", "--progress", "quiet"],
        Some(&db.url),
    );
    assert!(out.contains("backfill done"), "{out}");
    assert!(
        out.contains("contract refused: the backfill finished in release 1.5.0"),
        "{out}"
    );
    assert_eq!(count(&client, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'full_name' AND NOT attisdropped").await, 1);
    let out = backfill_ok(
        &["run", &plan, "--release", "1.5.0", "--force-contract"],
        Some(&db.url),
    );
    assert!(
        out.contains("--force-contract") && out.contains("contract done"),
        "{out}"
    );
    assert_eq!(count(&client, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'full_name' AND NOT attisdropped").await, 0);
    // After contract, abort is refused with the reason.
    let out = backfill_cmd(&["abort", &plan], Some(&db.url));
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("contract has started"),
        "{}",
        show(&out)
    );
}

#[tokio::test]
async fn abort_from_an_expand_and_from_a_backfill_in_progress() {
    for (case, rate) in [("expand", 0), ("backfill", 5000)] {
        let db = TestDb::new(&format!("runner_abort_{case}")).await;
        let client = db.connect().await;
        seed_users(&client, 20_000).await;
        let before = user_snapshot(&client, "users", "id").await;
        let plans = Plans::new(&format!("abort_{case}"));
        let plan = plans.write(
            "abortme.toml",
            &format!("{SPLIT_USERS}\n[[operations]]\nkind = \"create_index\"\ncolumns = [\"email\"]\n[backfill]\nlock_timeout = \"200ms\"\nddl_retries = 50\nmax_rows_per_second = {rate}\n"),
        );
        let mut holder = db.connect().await;
        let mut child = if case == "expand" {
            // A transaction with an old snapshot makes CREATE INDEX CONCURRENTLY wait (and,
            // under lock_timeout, fail and retry): the run is stuck in expand, after its first
            // step added the columns, with an index build in flight.
            let tx = holder.transaction().await.unwrap_or_else(|e| panic!("{e}"));
            tx.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; SELECT 1")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let mut child = backfill_spawn(&["run", &plan, "--progress", "quiet"], &db.url);
            let deadline = Instant::now() + Duration::from_secs(30);
            while count(&client, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'first_name'").await == 0 {
                assert!(Instant::now() < deadline, "expand did not run");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            tokio::time::sleep(Duration::from_millis(700)).await;
            let _ = child.kill();
            let _ = child.wait();
            tx.rollback().await.unwrap_or_else(|e| panic!("{e}"));
            child
        } else {
            let child = backfill_spawn(&["run", &plan, "--progress", "quiet"], &db.url);
            wait_walked(&client, 2000).await;
            child
        };
        // Abort from another terminal; a running backfill stops first.
        let out = backfill_cmd(&["abort", &plan], Some(&db.url));
        assert_eq!(out.status.code(), Some(0), "{case}: {}", show(&out));
        let run = child.wait().expect("wait");
        if case == "backfill" {
            assert_eq!(run.code(), Some(1), "{case}: the run stops when aborted");
        }
        assert_eq!(
            user_snapshot(&client, "users", "id").await,
            before,
            "{case}: abort"
        );
        let events = rows(
            &client,
            "SELECT kind FROM backfill.events WHERE plan = 'abortme' AND kind = 'aborted'",
        )
        .await;
        assert_eq!(events, ["aborted"], "{case}");
        drop(holder);
    }
}
