//! The `backfill run` process against the hand-written ways of changing a whole table, with an
//! application running throughout. `cargo bench --bench process`.
//!
//! A throwaway PostgreSQL with the durable defaults (fsync and synchronous commit on). For each
//! size (`BENCH_ROWS`, default `1000000,5000000`; say `10000000` there for 10M) and each method,
//! a freshly seeded, vacuumed and analyzed table `users (id bigserial, full_name, email)`, a
//! `CHECKPOINT`, then a simulated application (4 connections, 400 statements a second in all:
//! point reads, and updates of `full_name` and of `email`, of random rows) that runs from 0.5 s
//! before the method until 0.5 s after it:
//! - no change: the application alone, for the baseline latency;
//! - one busy loop, then two (`sh -c 'while :; do :; done'`, for [`BUSY`], on the same table
//!   as the application alone, no database work): what the machine's CPUs alone do to the
//!   application's latency, the floor under any method that keeps them as busy;
//! - single UPDATE: `UPDATE users SET first_name = ..., last_name = ...` (the split of plan
//!   0001, on a table that already has the columns), the reference (1.00);
//! - single UPDATE in place: `UPDATE users SET email = lower(email)`, the same change as the
//!   `update_rows` plan below, to compare that one with;
//! - PL/pgSQL keyset loop: a procedure walking the key 1,000 rows at a time, doing the split,
//!   committing after each batch (`COMMIT` inside `CALL`, PostgreSQL 11+);
//! - `backfill run` as a process (the built binary, default settings, `--release 1.0.0`), for a
//!   split plan (expand: the new columns; dual-write: the trigger; the backfill; no contract)
//!   and for an `update_rows` plan (`email = lower(email)` in place, its old values kept in the
//!   undo table). The time is from spawn to exit; its peak RSS is the process's `VmHWM`, polled
//!   every 10 ms; its CPU time is what this process's reaped children used (`/proc/self/stat`);
//!   its phases' times come from the state schema it wrote. After it, every row is checked.
//! - both plans again with `workers = 1` under `[backfill]`: the gentle setting, one chunk at
//!   a time (left out when `BENCH_PLAN_EXTRA` measures a setting of its own).
//!
//! WAL is `pg_current_wal_lsn()` after minus before the method, the application's WAL included.
//!
//! `BENCH_PLAN_EXTRA` adds TOML to both plans, to measure a setting against the defaults:
//! `BENCH_PLAN_EXTRA=$'[throttle]\nmax_commit_latency = "3ms"'`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use backfill::db::ConnectionSpec;
use backfill::ephemeral::{Cluster, ClusterOptions};
use backfill::planner::Phase;
use backfill::state::plans::phase_name;
use backfill::workload::{self, Report, Workload};
use common::BenchResult;

/// The application's rate, all connections together.
const APP_RATE: f64 = 400.0;
/// The application's connections.
const APP_TASKS: usize = 4;
/// How long the application runs alone for the baseline.
const BASELINE: Duration = Duration::from_secs(10);
/// The application runs this long before and after each method.
const MARGIN: Duration = Duration::from_millis(500);
/// How long the busy loops run.
const BUSY: Duration = Duration::from_secs(5);
/// The release the processes run at: expand, dual-write and backfill are due, contract is not.
const RELEASE: &str = "1.0.0";
/// How often a process's peak RSS is read.
const RSS_POLL: Duration = Duration::from_millis(10);
/// Clock ticks per second of `/proc/*/stat` times (`USER_HZ`, 100 on Linux everywhere).
const CLOCK_TICKS: f64 = 100.0;

/// The `[release]` table of both plans: expand at [`RELEASE`], the contract left for a later
/// release.
const RELEASES: &str = "\n[release]\nexpand = \"1.0.0\"\ncontract = \"2.0.0\"\n";

/// An in-place change of every row (the seed's emails are all mixed case), at default settings.
const UPDATE_ROWS_PLAN: &str = r#"
name = "bench_update_rows"
table = "users"

[[operations]]
kind = "update_rows"
set = { email = "lower(email)" }
where = "email <> lower(email)"
"#;

const SPLIT_UPDATE: &str = "UPDATE users SET first_name = split_part(full_name, ' ', 1), last_name = split_part(full_name, ' ', 2)";

const IN_PLACE_UPDATE: &str = "UPDATE users SET email = lower(email)";

/// The keyset loop: each batch is the next 1,000 keys, committed before the next.
const LOOP_PROCEDURE: &str = r#"
CREATE PROCEDURE split_in_batches(batch int) LANGUAGE plpgsql AS $$
DECLARE
  done_to bigint := 0;
  upto bigint;
BEGIN
  LOOP
    SELECT max(id) INTO upto FROM (SELECT id FROM users WHERE id > done_to ORDER BY id LIMIT batch) b;
    EXIT WHEN upto IS NULL;
    UPDATE users SET first_name = split_part(full_name, ' ', 1), last_name = split_part(full_name, ' ', 2)
     WHERE id > done_to AND id <= upto;
    done_to := upto;
    COMMIT;
  END LOOP;
END
$$;
"#;

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Alone,
    BusyOne,
    BusyTwo,
    Update,
    UpdateInPlace,
    Loop,
    ProcessSplit,
    ProcessUpdateRows,
    ProcessSplitOneWorker,
    ProcessUpdateRowsOneWorker,
}

impl Method {
    const ALL: [Method; 10] = [
        Method::Alone,
        Method::BusyOne,
        Method::BusyTwo,
        Method::Update,
        Method::UpdateInPlace,
        Method::Loop,
        Method::ProcessSplit,
        Method::ProcessUpdateRows,
        Method::ProcessSplitOneWorker,
        Method::ProcessUpdateRowsOneWorker,
    ];

    fn label(self) -> &'static str {
        match self {
            Method::Alone => "no change (app alone)",
            Method::BusyOne => "one busy loop, no database work",
            Method::BusyTwo => "two busy loops, no database work",
            Method::Update => "single UPDATE, split (reference)",
            Method::UpdateInPlace => "single UPDATE, in place (email)",
            Method::Loop => "PL/pgSQL keyset loop, COMMIT every 1,000",
            Method::ProcessSplit => "`backfill run`, split plan",
            Method::ProcessUpdateRows => "`backfill run`, update_rows plan",
            Method::ProcessSplitOneWorker => "`backfill run`, split plan, `workers = 1`",
            Method::ProcessUpdateRowsOneWorker => "`backfill run`, update_rows plan, `workers = 1`",
        }
    }

    /// A `backfill run` with `workers = 1`.
    fn one_worker(self) -> bool {
        matches!(
            self,
            Method::ProcessSplitOneWorker | Method::ProcessUpdateRowsOneWorker
        )
    }

    /// The busy loops this method runs beside the application, for [`BUSY`].
    fn busy_loops(self) -> usize {
        match self {
            Method::BusyOne => 1,
            Method::BusyTwo => 2,
            _ => 0,
        }
    }

    /// The table a method starts from.
    fn table(self) -> Table {
        match self {
            Method::Update | Method::Loop => Table::WithNewColumns,
            _ => Table::AsDeployed,
        }
    }
}

/// The shape of the seeded table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Table {
    /// `id, full_name, email`: what the plans start from.
    AsDeployed,
    /// Also `first_name, last_name`, for the hand-written split.
    WithNewColumns,
}

/// What a `backfill run` process used.
#[derive(Debug, Clone, Default)]
struct ProcessFigures {
    /// The highest `VmHWM` seen, in kB.
    peak_rss_kb: u64,
    /// User and system CPU time.
    cpu_seconds: f64,
    /// Each phase: its name, its start and end, in seconds since the spawn.
    phases: Vec<(String, f64, f64)>,
}

impl ProcessFigures {
    fn phase(&self, name: &str) -> Option<f64> {
        self.phases
            .iter()
            .find(|(p, _, _)| p == name)
            .map(|(_, start, end)| end - start)
    }
}

struct Row {
    rows: i64,
    /// Which round of `BENCH_REPEAT` (from 0).
    round: usize,
    method: Method,
    seconds: Option<f64>,
    wal_bytes: Option<i64>,
    report: Report,
    process: Option<ProcessFigures>,
}

fn main() {
    common::main_with(run);
}

fn run() -> BenchResult<()> {
    let sizes = common::sizes()?;
    let repeat: usize = match std::env::var("BENCH_REPEAT") {
        Ok(n) => n
            .parse()
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| format!("BENCH_REPEAT must be a whole number from 1, not `{n}`"))?,
        Err(_) => 1,
    };
    let binary = Path::new(env!("CARGO_BIN_EXE_backfill"));
    if !binary.is_file() {
        return Err(format!("no backfill binary at {}", binary.display()).into());
    }
    let work = std::env::temp_dir().join(format!("backfill-bench-process-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    // `BENCH_PLAN_EXTRA`: TOML added to both plans, to measure a setting against the defaults
    // (e.g. `[throttle]` and `max_commit_latency = "3ms"` on the next line).
    let extra = std::env::var("BENCH_PLAN_EXTRA").unwrap_or_default();
    if !extra.is_empty() {
        println!("both plans with: {}", extra.replace('\n', " "));
    }
    // Each plan as it is, then with one worker (the gentle setting), unless `BENCH_PLAN_EXTRA`
    // measures a setting of its own.
    let plan_file = |file: &str, text: &str, tail: &str| -> BenchResult<PathBuf> {
        let path = work.join(file);
        std::fs::write(&path, format!("{text}{RELEASES}\n{tail}\n"))?;
        Ok(path)
    };
    let one_worker = "[backfill]\nworkers = 1";
    let split_plan = plan_file("bench_split.toml", common::SPLIT_PLAN, &extra)?;
    let update_rows_plan = plan_file("bench_update_rows.toml", UPDATE_ROWS_PLAN, &extra)?;
    let split_one = plan_file("bench_split_1.toml", common::SPLIT_PLAN, one_worker)?;
    let update_rows_one = plan_file("bench_update_rows_1.toml", UPDATE_ROWS_PLAN, one_worker)?;
    let methods: Vec<Method> = Method::ALL
        .into_iter()
        .filter(|m| extra.is_empty() || !m.one_worker())
        .collect();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let cluster = Cluster::start(&ClusterOptions {
            unsafe_fast: false,
            watchdog: true,
        })?;
        let admin = ConnectionSpec::parse(&cluster.url("postgres"))?
            .connect()
            .await?;
        let machine = machine(&admin).await?;
        let mut table = Vec::new();
        let mut last_db: Option<ConnectionSpec> = None;
        for &rows in &sizes {
            for (round, method) in
                (0..repeat).flat_map(|round| methods.iter().map(move |&m| (round, m)))
            {
                eprintln!("{rows} rows, round {}: {}", round + 1, method.label());
                // The busy loops change nothing: they share the table of the application
                // alone, which ran just before them.
                let db = match last_db.take() {
                    Some(db) if method.busy_loops() > 0 => db,
                    _ => fresh(&cluster, &admin, rows, method.table()).await?,
                };
                let url = cluster.url("bench");
                let row = match method {
                    Method::Alone => {
                        let app = workload::start_at_rate(&db, &app_workload(rows), APP_RATE)
                            .await?;
                        tokio::time::sleep(BASELINE).await;
                        Row {
                            rows,
                            round,
                            method,
                            seconds: None,
                            wal_bytes: None,
                            report: stopped(app).await?,
                            process: None,
                        }
                    }
                    Method::BusyOne | Method::BusyTwo => {
                        measure_busy(&db, rows, method).await?
                    }
                    Method::Update | Method::UpdateInPlace | Method::Loop => {
                        let sql = match method {
                            Method::Update => SPLIT_UPDATE,
                            Method::UpdateInPlace => IN_PLACE_UPDATE,
                            _ => "CALL split_in_batches(1000)",
                        };
                        measure_sql(&db, rows, method, sql).await?
                    }
                    Method::ProcessSplit
                    | Method::ProcessUpdateRows
                    | Method::ProcessSplitOneWorker
                    | Method::ProcessUpdateRowsOneWorker => {
                        let split = matches!(
                            method,
                            Method::ProcessSplit | Method::ProcessSplitOneWorker
                        );
                        let (plan, name, out_of_sync) = if split {
                            (
                                if method.one_worker() { &split_one } else { &split_plan },
                                "bench_split",
                                "first_name IS DISTINCT FROM split_part(full_name, ' ', 1) OR last_name IS DISTINCT FROM split_part(full_name, ' ', 2)",
                            )
                        } else {
                            (
                                if method.one_worker() {
                                    &update_rows_one
                                } else {
                                    &update_rows_plan
                                },
                                "bench_update_rows",
                                "email <> lower(email)",
                            )
                        };
                        let row = measure_process(&db, &url, rows, method, plan, name, &work).await?;
                        let client = db.connect().await?;
                        let wrong: i64 = client
                            .query_one(
                                &format!("SELECT count(*) FROM users WHERE {out_of_sync}"),
                                &[],
                            )
                            .await?
                            .get(0);
                        if wrong != 0 {
                            return Err(format!(
                                "{}: {wrong} rows out of sync after the run",
                                method.label()
                            )
                            .into());
                        }
                        row
                    }
                };
                table.push(Row { round, ..row });
                last_db = Some(db);
            }
        }
        cluster.stop();
        print_tables(&table, &machine, repeat);
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// A database `bench` with a freshly seeded, vacuumed and analyzed `users` table and the loop's
/// procedure, checkpointed so that every method starts with no dirty buffers.
async fn fresh(
    cluster: &Cluster,
    admin: &tokio_postgres::Client,
    rows: i64,
    table: Table,
) -> BenchResult<ConnectionSpec> {
    let (extra, setup) = match table {
        Table::AsDeployed => ("", None),
        Table::WithNewColumns => (", first_name text, last_name text", Some(LOOP_PROCEDURE)),
    };
    common::fresh_users(cluster, admin, rows, extra, ("User", "Example.org"), setup).await
}

/// Reads of one row, updates of `full_name` (the split's source) and of `email` (the in-place
/// change's column), of random rows, in turn.
fn app_workload(rows: i64) -> Workload {
    Workload {
        statements: vec![
            "SELECT id, full_name, email FROM users WHERE id = $1".into(),
            "UPDATE users SET full_name = 'App' || $1::int8 || ' Update' WHERE id = $1".into(),
            "SELECT id, full_name, email FROM users WHERE id = $1".into(),
            "UPDATE users SET email = 'App' || $1::int8 || '@Example.org' WHERE id = $1".into(),
        ],
        key_max: rows,
        tasks: APP_TASKS,
        pause: Duration::ZERO,
    }
}

/// Stops the application; its errors are part of the result, but a workload that could not
/// even prepare its statements is a broken benchmark.
async fn stopped(app: workload::Running) -> BenchResult<Report> {
    let report = app.stop().await;
    if report.ops == 0 {
        return Err(format!(
            "the application ran nothing: {}",
            report.first_errors.join("; ")
        )
        .into());
    }
    Ok(report)
}

async fn wal_lsn(client: &tokio_postgres::Client) -> BenchResult<String> {
    Ok(client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await?
        .get(0))
}

async fn wal_since(client: &tokio_postgres::Client, lsn: &str) -> BenchResult<i64> {
    Ok(client
        .query_one(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::int8",
            &[&lsn],
        )
        .await?
        .get(0))
}

/// One statement on its own connection, the application running around it.
async fn measure_sql(
    db: &ConnectionSpec,
    rows: i64,
    method: Method,
    sql: &str,
) -> BenchResult<Row> {
    let client = db.connect().await?;
    let app = workload::start_at_rate(db, &app_workload(rows), APP_RATE).await?;
    tokio::time::sleep(MARGIN).await;
    let lsn = wal_lsn(&client).await?;
    let t = Instant::now();
    client.batch_execute(sql).await?;
    let seconds = t.elapsed().as_secs_f64();
    let wal = wal_since(&client, &lsn).await?;
    tokio::time::sleep(MARGIN).await;
    Ok(Row {
        rows,
        round: 0,
        method,
        seconds: Some(seconds),
        wal_bytes: Some(wal),
        report: stopped(app).await?,
        process: None,
    })
}

/// Busy loops on the machine for [`BUSY`], the application running around them.
async fn measure_busy(db: &ConnectionSpec, rows: i64, method: Method) -> BenchResult<Row> {
    let app = workload::start_at_rate(db, &app_workload(rows), APP_RATE).await?;
    tokio::time::sleep(MARGIN).await;
    let mut loops = BusyLoops(Vec::new());
    for _ in 0..method.busy_loops() {
        loops.0.push(
            Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .stdin(Stdio::null())
                .spawn()?,
        );
    }
    tokio::time::sleep(BUSY).await;
    drop(loops);
    tokio::time::sleep(MARGIN).await;
    Ok(Row {
        rows,
        round: 0,
        method,
        seconds: None,
        wal_bytes: None,
        report: stopped(app).await?,
        process: None,
    })
}

/// Busy loops, killed when dropped, however the benchmark ends.
struct BusyLoops(Vec<std::process::Child>);

impl Drop for BusyLoops {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `backfill run <plan> --release 1.0.0` as a user runs it, the application running around it.
async fn measure_process(
    db: &ConnectionSpec,
    url: &str,
    rows: i64,
    method: Method,
    plan: &Path,
    name: &str,
    work: &Path,
) -> BenchResult<Row> {
    let client = db.connect().await?;
    let app = workload::start_at_rate(db, &app_workload(rows), APP_RATE).await?;
    tokio::time::sleep(MARGIN).await;
    let lsn = wal_lsn(&client).await?;
    let spawned_at: f64 = client
        .query_one("SELECT extract(epoch FROM clock_timestamp())::float8", &[])
        .await?
        .get(0);
    let (seconds, mut figures) = run_process(url, plan, work).await?;
    let wal = wal_since(&client, &lsn).await?;
    tokio::time::sleep(MARGIN).await;
    let report = stopped(app).await?;
    figures.phases = client
        .query(
            "SELECT phase,
                    extract(epoch FROM started_at)::float8 - $2,
                    extract(epoch FROM finished_at)::float8 - $2
               FROM backfill.phases
              WHERE plan = $1 AND finished_at IS NOT NULL
              ORDER BY started_at",
            &[&name, &spawned_at],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    Ok(Row {
        rows,
        round: 0,
        method,
        seconds: Some(seconds),
        wal_bytes: Some(wal),
        report,
        process: Some(figures),
    })
}

/// Spawns the binary, follows its peak RSS until it exits, and returns its wall time and what
/// it used; a failed run is an error carrying its output.
async fn run_process(url: &str, plan: &Path, work: &Path) -> BenchResult<(f64, ProcessFigures)> {
    let out_path = work.join("run.out");
    let err_path = work.join("run.err");
    let cpu_before = children_cpu_seconds()?;
    let t = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_backfill"))
        .arg("run")
        .arg(plan)
        .args(["--release", RELEASE])
        .env("DATABASE_URL", url)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path)?)
        .stderr(std::fs::File::create(&err_path)?)
        .spawn()?;
    let status_path = PathBuf::from(format!("/proc/{}/status", child.id()));
    let mut peak_rss_kb = 0;
    let status = loop {
        // VmHWM is the high-water mark: its last reading before the exit is the peak, short of
        // growth in the last poll interval.
        if let Some(kb) = peak_rss(&status_path) {
            peak_rss_kb = peak_rss_kb.max(kb);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        tokio::time::sleep(RSS_POLL).await;
    };
    let seconds = t.elapsed().as_secs_f64();
    let cpu_seconds = children_cpu_seconds()? - cpu_before;
    if !status.success() {
        let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
        let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
        return Err(format!(
            "backfill run {} failed ({status}):\n{stdout}{stderr}",
            plan.display()
        )
        .into());
    }
    Ok((
        seconds,
        ProcessFigures {
            peak_rss_kb,
            cpu_seconds,
            phases: Vec::new(),
        },
    ))
}

/// `VmHWM` of `/proc/<pid>/status`, in kB; none once the process is gone (or a zombie).
fn peak_rss(status_path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(status_path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
}

/// User and system CPU time of this process's children that it has waited for
/// (`cutime` + `cstime` of `/proc/self/stat`).
fn children_cpu_seconds() -> BenchResult<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name (which may hold spaces) start at field 3, `state`.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or("unexpected /proc/self/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> BenchResult<f64> {
        Ok(fields
            .get(n - 3)
            .ok_or("short /proc/self/stat")?
            .parse::<f64>()?)
    };
    Ok((field(16)? + field(17)?) / CLOCK_TICKS)
}

/// The machine and server settings the figures depend on.
async fn machine(admin: &tokio_postgres::Client) -> BenchResult<String> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let settings = backfill::db::server_settings(
        admin,
        &[
            "server_version",
            "fsync",
            "synchronous_commit",
            "full_page_writes",
            "shared_buffers",
            "max_wal_size",
            "wal_init_zero",
        ],
    )
    .await?;
    Ok(format!("{cpu}, {cores} cores; {settings}"))
}

fn secs(s: Option<f64>) -> String {
    s.map(|s| format!("{s:.2}")).unwrap_or_else(|| "-".into())
}

/// The median of `values` (the mean of the middle two for an even count); `None` when empty.
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// `median`, and with more than one value `median (min–max)`, at `decimals`.
fn spread(values: Vec<f64>, decimals: usize) -> String {
    let Some(mid) = median(values.clone()) else {
        return "-".into();
    };
    if values.len() < 2 {
        return format!("{mid:.decimals$}");
    }
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{mid:.decimals$} ({lo:.decimals$}–{hi:.decimals$})")
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One line per size and method: with `BENCH_REPEAT` rounds, the median over the rounds (and
/// the range of the ratios), each ratio taken within its round (the method against the same
/// round's `UPDATE`, the application's latency against the same round's application alone).
fn print_tables(rows: &[Row], machine: &str, repeat: usize) {
    println!("\n{machine}");
    println!(
        "app: {APP_TASKS} connections, {APP_RATE:.0} statements/s in all (point reads, updates of full_name and of email)"
    );
    if repeat > 1 {
        println!(
            "{repeat} rounds: each figure is the median of the rounds; (min–max) of the ratios"
        );
    }
    println!(
        "\n| rows | method | seconds | rows/s | vs UPDATE | WAL MB | app p50 ms | app p99 ms | app max ms | app p99 vs alone | app max vs alone | app stmt/s | app errors | peak RSS MB |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut groups: Vec<(i64, Method)> = Vec::new();
    for r in rows {
        if !groups.contains(&(r.rows, r.method)) {
            groups.push((r.rows, r.method));
        }
    }
    for (size, method) in groups {
        let runs: Vec<&Row> = rows
            .iter()
            .filter(|r| r.rows == size && r.method == method)
            .collect();
        let same_round = |r: &Row, m: Method| {
            rows.iter()
                .find(|x| x.rows == r.rows && x.round == r.round && x.method == m)
        };
        let seconds: Vec<f64> = runs.iter().filter_map(|r| r.seconds).collect();
        let ratios: Vec<f64> = runs
            .iter()
            .filter_map(|r| Some(same_round(r, Method::Update)?.seconds? / r.seconds?))
            .collect();
        let versus_alone = |f: fn(&Report) -> Duration| -> Vec<f64> {
            runs.iter()
                .filter(|r| r.method != Method::Alone)
                .filter_map(|r| {
                    let alone = millis(f(&same_round(r, Method::Alone)?.report));
                    (alone > 0.0).then(|| millis(f(&r.report)) / alone)
                })
                .collect()
        };
        let of = |f: fn(&Row) -> Option<f64>| median(runs.iter().filter_map(|r| f(r)).collect());
        let fixed = |v: Option<f64>, decimals: usize| {
            v.map(|v| format!("{v:.decimals$}"))
                .unwrap_or_else(|| "-".into())
        };
        let errors: u64 = runs.iter().map(|r| r.report.errors).sum();
        let rss = runs
            .iter()
            .filter_map(|r| r.process.as_ref().map(|p| p.peak_rss_kb))
            .max()
            .map(|kb| format!("{:.1}", kb as f64 / 1024.0))
            .unwrap_or_else(|| "-".into());
        println!(
            "| {size} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {errors} | {rss} |",
            method.label(),
            fixed(median(seconds.clone()), 2),
            fixed(median(seconds).map(|s| size as f64 / s), 0),
            spread(ratios, 2),
            fixed(of(|r| r.wal_bytes.map(|b| b as f64 / 1e6)), 0),
            fixed(of(|r| Some(millis(r.report.quantile(0.5)))), 1),
            fixed(of(|r| Some(millis(r.report.quantile(0.99)))), 1),
            fixed(of(|r| Some(millis(r.report.max()))), 1),
            spread(versus_alone(|r| r.quantile(0.99)), 1),
            spread(versus_alone(|r| r.max()), 1),
            fixed(of(|r| Some(r.report.rate())), 0),
        );
    }

    println!("\nWhere the processes' time goes (seconds; before: start, connect, state schema, validation, registration; after: from the last phase's end to the exit):\n");
    println!(
        "| rows | round | plan | total | before | expand | dual-write | backfill | after | backfill rows/s | process CPU s |"
    );
    println!("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let (Some(p), Some(total)) = (&r.process, r.seconds) else {
            continue;
        };
        let before = p.phases.first().map(|(_, start, _)| *start);
        let after = p.phases.last().map(|(_, _, end)| total - end);
        let backfill = p.phase(phase_name(Phase::Backfill));
        let backfill_rate = backfill
            .filter(|s| *s > 0.0)
            .map(|s| format!("{:.0}", r.rows as f64 / s))
            .unwrap_or_else(|| "-".into());
        println!(
            "| {} | {} | {} | {total:.2} | {} | {} | {} | {} | {} | {backfill_rate} | {:.2} |",
            r.rows,
            r.round + 1,
            r.method.label(),
            secs(before),
            secs(p.phase(phase_name(Phase::Expand))),
            secs(p.phase(phase_name(Phase::DualWrite))),
            secs(backfill),
            secs(after),
            p.cpu_seconds
        );
    }
}
