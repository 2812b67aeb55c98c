//! `run --metrics-addr`: the Prometheus endpoint scraped during a real run, held by a row lock
//! and by an old transaction from other sessions, checked against the state schema and
//! against the figures `status --json` shows for the same process.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::Child;
use std::time::{Duration, Instant};

use crate::support::{
    backfill_ok, backfill_spawn, count, finish, seed_users, show, unsplit_rows, Plans, TestDb,
    SPLIT_USERS,
};

/// A free port on loopback.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// One scrape: `metric{labels}` → value; `None` while nothing listens.
fn scrape(port: u16) -> Option<BTreeMap<String, f64>> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    // HTTP/1.0: the body is not chunked and ends with the connection.
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    Some(
        body.lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                Some((name.to_string(), value.parse().ok()?))
            })
            .collect(),
    )
}

fn get(m: &BTreeMap<String, f64>, key: &str) -> f64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("no {key} in the scrape: {m:#?}"))
}

/// Scrapes until `ready` holds; fails after 60 s with the last scrape, or when the run
/// ended, with its output.
async fn scrape_until(
    port: u16,
    run: &mut Child,
    what: &str,
    ready: impl Fn(&BTreeMap<String, f64>) -> bool,
) -> BTreeMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    loop {
        if let Ok(Some(status)) = run.try_wait() {
            let mut err = String::new();
            if let Some(e) = run.stderr.as_mut() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("{what}: the run ended first ({status}): {err}");
        }
        if let Some(m) = tokio::task::spawn_blocking(move || scrape(port))
            .await
            .unwrap_or(None)
        {
            if ready(&m) {
                return m;
            }
            last = Some(m);
        }
        assert!(
            Instant::now() < deadline,
            "{what}: never seen; last scrape {last:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// This process's figures in `status --json`, once its heartbeat carries `ready`.
async fn status_figures(
    url: &str,
    plan: &str,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = backfill_ok(&["status", plan, "--json"], Some(url));
        let json: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("status --json: {e}: {out}"));
        let figures = json[0]["processes"][0]["figures"].clone();
        if ready(&figures) {
            return figures;
        }
        assert!(
            Instant::now() < deadline,
            "status never showed it: {json:#}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn metrics_are_served_during_a_run_and_status_json_shows_the_same_figures() {
    let db = TestDb::new("metrics_scrape").await;
    let client = db.connect().await;
    seed_users(&client, 20_000).await;
    let plans = Plans::new("metrics_scrape");
    let plan = plans.write("0001_split.toml", SPLIT_USERS);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    // A transaction that read the table holds expand's `ALTER TABLE` back: lock waits.
    let mut reader = db.connect().await;
    let read = reader.transaction().await.unwrap_or_else(|e| panic!("{e}"));
    read.batch_execute("SELECT count(*) FROM users")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut child = backfill_spawn(
        &[
            "run",
            &plan,
            "--workers",
            "2",
            "--max-rows-per-second",
            "2000",
            "--metrics-addr",
            &addr,
            "--progress",
            "plain",
        ],
        &db.url,
    );
    let key = |name: &str| format!("{name}{{plan=\"0001_split\"}}");

    let m = scrape_until(port, &mut child, "a DDL lock wait", |m| {
        m.get(&key("backfill_ddl_lock_waits_total"))
            .copied()
            .unwrap_or(0.0)
            >= 1.0
    })
    .await;
    assert_eq!(
        get(&m, "backfill_phase{plan=\"0001_split\",phase=\"expand\"}"),
        1.0
    );
    assert!(get(&m, &key("backfill_ddl_lock_wait_seconds")) >= 1.0);
    let figures = status_figures(&db.url, "0001_split", |f| {
        f["ddl_lock_waits"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    assert_eq!(figures["phase"], "expand");
    let text = backfill_ok(&["status", "0001_split"], Some(&db.url));
    assert!(text.contains("lock wait"), "{text}");
    read.commit().await.unwrap_or_else(|e| panic!("{e}"));

    // Walking: the phase, the workers and the key space as they are.
    let m = scrape_until(port, &mut child, "rows walked", |m| {
        m.get(&key("backfill_rows_walked_total"))
            .copied()
            .unwrap_or(0.0)
            > 0.0
    })
    .await;
    let walked_in_db = count(
        &client,
        "SELECT coalesce(sum(rows_seen), 0)::int8 FROM backfill.segments",
    )
    .await;
    let walked = get(&m, &key("backfill_rows_walked_total"));
    assert!(
        walked <= walked_in_db as f64,
        "the endpoint counts {walked} rows walked, the checkpoints only {walked_in_db}"
    );
    assert_eq!(
        get(&m, "backfill_phase{plan=\"0001_split\",phase=\"backfill\"}"),
        1.0
    );
    assert_eq!(
        get(&m, "backfill_phase{plan=\"0001_split\",phase=\"expand\"}"),
        0.0
    );
    assert_eq!(get(&m, &key("backfill_workers")), 2.0);
    let segments = count(
        &client,
        "SELECT count(*) FROM backfill.segments WHERE plan = '0001_split'",
    )
    .await;
    assert_eq!(get(&m, &key("backfill_segments")), segments as f64);
    let estimate = get(&m, &key("backfill_rows_estimate"));
    assert!(
        (15_000.0..=25_000.0).contains(&estimate),
        "estimate {estimate} for 20000 rows"
    );
    let chunks = get(&m, &key("backfill_chunk_duration_seconds_count"));
    assert!(chunks >= 1.0);
    assert_eq!(
        get(
            &m,
            "backfill_chunk_duration_seconds_bucket{plan=\"0001_split\",le=\"+Inf\"}"
        ),
        chunks
    );
    assert!(get(&m, &key("backfill_batch_size")) >= 1.0);
    assert!(get(&m, &key("backfill_rows_changed_total")) <= walked);

    // A row near the end of the key space, locked while the workers are at the start: the
    // chunk that reaches it times out (55P03) and is retried.
    let mut locker = db.connect().await;
    let lock = locker.transaction().await.unwrap_or_else(|e| panic!("{e}"));
    lock.batch_execute("SELECT * FROM users WHERE id = 19990 FOR UPDATE")
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // The locked row: retries by SQLSTATE, in the endpoint and in `status --json`.
    let m = scrape_until(port, &mut child, "a retry on the locked row", |m| {
        m.get("backfill_chunk_retries_total{plan=\"0001_split\",sqlstate=\"55P03\"}")
            .copied()
            .unwrap_or(0.0)
            >= 1.0
    })
    .await;
    let figures = status_figures(&db.url, "0001_split", |f| {
        f["retries"]["55P03"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    assert_eq!(figures["phase"], "backfill");
    assert_eq!(figures["workers"], 2);
    let status_walked = figures["rows_walked"].as_i64().unwrap_or(-1);
    assert!(
        status_walked >= 0 && status_walked as f64 >= walked,
        "status shows {status_walked} walked, an earlier scrape {walked}"
    );
    assert!(get(&m, &key("backfill_rows_walked_total")) >= walked);

    // An old transaction (the same one) holds the workers once `set` asks for it: the
    // throttle and its reason, in both.
    backfill_ok(
        &["set", "0001_split", "max_transaction_age=1s"],
        Some(&db.url),
    );
    let m = scrape_until(
        port,
        &mut child,
        "throttled by the transaction's age",
        |m| m.get(&key("backfill_throttled")).copied() == Some(1.0),
    )
    .await;
    assert_eq!(
        get(
            &m,
            "backfill_throttle_reason{plan=\"0001_split\",reason=\"transaction_age\"}"
        ),
        1.0
    );
    let figures = status_figures(&db.url, "0001_split", |f| f["throttled"] == true).await;
    assert_eq!(figures["throttle_reason"], "transaction_age");
    assert!(figures["throttle_detail"]
        .as_str()
        .unwrap_or("")
        .starts_with("oldest transaction open for"));
    let text = backfill_ok(&["status", "0001_split"], Some(&db.url));
    assert!(
        text.contains("throttled: oldest transaction open for"),
        "{text}"
    );
    assert!(text.contains("2 workers"), "{text}");

    // The threshold cleared: unthrottled, while the locked row still keeps the run from
    // finishing (so the scrape cannot miss it).
    backfill_ok(
        &["set", "0001_split", "max_transaction_age=off"],
        Some(&db.url),
    );
    let m = scrape_until(port, &mut child, "unthrottled", |m| {
        m.get(&key("backfill_throttled")).copied() == Some(0.0)
    })
    .await;
    assert_eq!(
        get(
            &m,
            "backfill_throttle_reason{plan=\"0001_split\",reason=\"transaction_age\"}"
        ),
        0.0
    );
    let figures = status_figures(&db.url, "0001_split", |f| f["throttled"] == false).await;
    assert_eq!(figures["phase"], "backfill");

    // Let go: the run finishes, with every row in sync.
    lock.rollback().await.unwrap_or_else(|e| panic!("{e}"));
    let out = finish(child).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(unsplit_rows(&client).await, 0);
    // The endpoint ends with the process.
    assert!(scrape(port).is_none(), "still served after the run");
}

/// A taken address is a usage error before anything runs.
#[tokio::test]
async fn a_taken_metrics_address_is_refused_before_anything_runs() {
    let db = TestDb::new("metrics_taken").await;
    let client = db.connect().await;
    seed_users(&client, 10).await;
    let plans = Plans::new("metrics_taken");
    let plan = plans.write("0001_split.toml", SPLIT_USERS);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let addr = taken
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|e| panic!("{e}"));
    let out = crate::support::backfill_cmd(&["run", &plan, "--metrics-addr", &addr], Some(&db.url));
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("--metrics-addr {addr}")),
        "{}",
        show(&out)
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'backfill'"
        )
        .await,
        0,
        "the state schema was created"
    );
}
