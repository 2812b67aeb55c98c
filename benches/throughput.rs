//! Throughput of the backfill engine against the single `UPDATE` of the same table, and the
//! latency a concurrent application sees meanwhile. `cargo bench --bench throughput`.
//!
//! A throwaway PostgreSQL with the durable defaults (fsync and synchronous commit on). For each
//! size (`BENCH_ROWS`, default `1000000,5000000`) and each method, a freshly seeded, vacuumed
//! table `users (id bigserial, full_name, email)` gets `first_name` and `last_name` split from
//! `full_name` (the example plan 0001), while a simulated application (4 connections, a row
//! update through the old column or an insert every 5 ms each) runs next to it:
//! - no backfill: the application alone, for the baseline latency;
//! - single UPDATE: `UPDATE users SET first_name = ..., last_name = ...`, the reference;
//! - engine, 1/2/4 workers: `backfill`'s engine with the plan's defaults, the dual-write
//!   trigger installed (as in a real run). `BENCH_CHUNK_MS` overrides `target_chunk_time`;
//!   `BENCH_TRACE=1` lists the app's statements and the chunks slower than 20 ms, with when.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use backfill::db::ConnectionSpec;
use backfill::engine::{self, EngineOptions, Events, Job, Outcome, Stop};
use backfill::ephemeral::{Cluster, ClusterOptions};
use backfill::executor::{run_steps, ExecOptions};
use backfill::plan::Plan;
use backfill::planner::{Phase, PlannerOptions};
use backfill::validate::validate;
use backfill::workload::{self, Report, Workload};
use common::{ms, BenchResult};

struct Row {
    rows: i64,
    method: String,
    seconds: Option<f64>,
    report: Report,
}

fn main() {
    common::main_with(run);
}

fn run() -> BenchResult<()> {
    let sizes = common::sizes()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let cluster = Cluster::start(&ClusterOptions {
            unsafe_fast: false,
            watchdog: true,
        })?;
        let admin = ConnectionSpec::parse(&cluster.url("postgres"))?
            .connect()
            .await?;
        let version: String = admin.query_one("SHOW server_version", &[]).await?.get(0);
        let mut table = Vec::new();
        for &rows in &sizes {
            eprintln!("{rows} rows: no backfill");
            let db = fresh(&cluster, &admin, rows, false).await?;
            let app = workload::start(&db, &app_workload(rows)).await?;
            tokio::time::sleep(Duration::from_secs(5)).await;
            table.push(Row {
                rows,
                method: "no backfill (app alone)".into(),
                seconds: None,
                report: app.stop().await,
            });

            eprintln!("{rows} rows: single UPDATE");
            let db = fresh(&cluster, &admin, rows, false).await?;
            let client = db.connect().await?;
            let app = workload::start(&db, &app_workload(rows)).await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let t = Instant::now();
            client
                .batch_execute("UPDATE users SET first_name = split_part(full_name, ' ', 1), last_name = split_part(full_name, ' ', 2)")
                .await?;
            let seconds = t.elapsed().as_secs_f64();
            tokio::time::sleep(Duration::from_millis(500)).await;
            table.push(Row {
                rows,
                method: "single UPDATE (reference)".into(),
                seconds: Some(seconds),
                report: app.stop().await,
            });

            for workers in [1u32, 2, 4] {
                eprintln!("{rows} rows: engine, {workers} workers");
                let db = fresh(&cluster, &admin, rows, true).await?;
                let mut client = db.connect().await?;
                let plan = Plan::parse(Path::new("bench_split.toml"), common::SPLIT_PLAN)?;
                let validated = validate(&mut client, &plan, &PlannerOptions::default()).await?;
                let schedule = &validated.schedule;
                let exec = ExecOptions {
                    lock_timeout: Duration::from_secs(2),
                    retries: 5,
                    meter: backfill::metrics::Meter::none(),
                };
                for phase in [Phase::Expand, Phase::DualWrite] {
                    run_steps(&mut client, schedule, schedule.phase(phase), "bench", &exec)
                        .await?;
                }
                let spec = schedule.backfill.clone().ok_or("the plan moves no data")?;
                let job = Job::new(&plan, spec, &validated.catalog)?;
                let mut options = EngineOptions::from_plan(&plan, "backfill");
                options.workers = workers;
                if let Some(ms) = std::env::var("BENCH_CHUNK_MS").ok().and_then(|v| v.parse().ok()) {
                    options.target_chunk_time = Duration::from_millis(ms);
                }
                let app = workload::start(&db, &app_workload(rows)).await?;
                tokio::time::sleep(Duration::from_millis(500)).await;
                let t = Instant::now();
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let chunks = tokio::spawn(async move {
                    // Chunks slower than the app's slow-statement mark: (end since start, ms).
                    let mut slow = Vec::new();
                    while let Some(e) = rx.recv().await {
                        if let engine::Event::Chunk { ms, worker, .. } = e {
                            if ms > 20 {
                                slow.push((t.elapsed(), ms, worker));
                            }
                        }
                    }
                    slow
                });
                let outcome = engine::backfill(&db, job, options, Events::new(tx), Stop::new()).await?;
                let seconds = t.elapsed().as_secs_f64();
                tokio::time::sleep(Duration::from_millis(500)).await;
                let report = app.stop().await;
                let slow_chunks = chunks.await?;
                if std::env::var("BENCH_TRACE").is_ok() {
                    // The app started 0.5 s before the engine.
                    for (at, took, which) in &report.slow {
                        eprintln!("  app statement {which} at {:.3}s took {} ms", at.as_secs_f64() - 0.5, took.as_millis());
                    }
                    for (end, ms, w) in &slow_chunks {
                        eprintln!("  chunk of worker {w} ended at {:.3}s took {ms} ms", end.as_secs_f64());
                    }
                }
                if !matches!(outcome, Outcome::Finished(_)) {
                    return Err("the engine did not finish".into());
                }
                table.push(Row {
                    rows,
                    method: format!("engine, {workers} worker{}", if workers > 1 { "s" } else { "" }),
                    seconds: Some(seconds),
                    report,
                });
            }
        }
        cluster.stop();
        print_table(&table, &version);
        Ok(())
    })
}

/// A database with a freshly seeded, vacuumed `users` table (`with_columns`: without the new
/// columns, for the engine's expand to add; else with them, for the single UPDATE).
async fn fresh(
    cluster: &Cluster,
    admin: &tokio_postgres::Client,
    rows: i64,
    for_engine: bool,
) -> BenchResult<ConnectionSpec> {
    let extra = if for_engine {
        ""
    } else {
        ", first_name text, last_name text"
    };
    common::fresh_users(cluster, admin, rows, extra, ("user", "example.org"), None).await
}

fn app_workload(rows: i64) -> Workload {
    Workload {
        statements: vec![
            "UPDATE users SET full_name = 'App' || $1::int8 || ' Update' WHERE id = $1".into(),
            "INSERT INTO users (full_name, email) VALUES ('App' || $1::int8 || ' Insert', 'app@example.org')".into(),
            "UPDATE users SET email = 'app' || $1::int8 || '@example.org' WHERE id = $1".into(),
        ],
        key_max: rows,
        tasks: 4,
        pause: Duration::from_millis(5),
    }
}

fn print_table(rows: &[Row], version: &str) {
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
    println!("\n{cpu}, {cores} cores, PostgreSQL {version}, fsync and synchronous_commit on");
    println!("app: 4 connections, one update or insert every 5 ms each\n");
    println!(
        "| rows | method | seconds | rows/s | vs UPDATE | app p50 ms | app p99 ms | app max ms | app errors |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let reference = rows
            .iter()
            .find(|x| x.rows == r.rows && x.method.starts_with("single UPDATE"))
            .and_then(|x| x.seconds);
        let (secs, rate, ratio) = match (r.seconds, reference) {
            (Some(s), Some(refs)) => (
                format!("{s:.2}"),
                format!("{:.0}", r.rows as f64 / s),
                format!("{:.2}", refs / s),
            ),
            (Some(s), None) => (
                format!("{s:.2}"),
                format!("{:.0}", r.rows as f64 / s),
                "-".into(),
            ),
            _ => ("-".into(), "-".into(), "-".into()),
        };
        println!(
            "| {} | {} | {secs} | {rate} | {ratio} | {} | {} | {} | {} |",
            r.rows,
            r.method,
            ms(r.report.quantile(0.5)),
            ms(r.report.quantile(0.99)),
            ms(r.report.max()),
            r.report.errors
        );
    }
}
