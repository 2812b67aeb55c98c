//! `backfill demo`: a throwaway PostgreSQL, a seeded `users` table, a simulated application
//! writing to it the whole time, and the example plan `plans/0001_split_full_name.toml` run by
//! the runner through release 1.4.0 (expand, dual-write, backfill, with progress bars) and
//! release 1.5.0 (contract), with `verify` and a check of every row in between, and a summary
//! (rows, time, rate, the application's latency before and during the backfill, its errors).
//! The cluster is removed at the end unless `--keep`.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::db::ConnectionSpec;
use crate::engine::Stop;
use crate::ephemeral::{Cluster, ClusterOptions};
use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::planner::PlannerOptions;
use crate::progress;
use crate::runner::{self, RunnerOptions};
use crate::version::Release;
use crate::workload::{self, Workload};

/// The schema of the examples.
pub const SCHEMA: &str = include_str!("../plans/schema.sql");
/// The plan the demo runs.
pub const PLAN: &str = include_str!("../plans/0001_split_full_name.toml");
/// The first and last names of seeded row `g`, as SQL over `g`: the seed writes them into
/// `full_name` and the final check expects them back in `first_name` and `last_name`.
const FIRST_NAME: &str =
    "(ARRAY['Ada','Alan','Grace','Edsger','Barbara','Donald','Ken','Frances'])[1 + g % 8]";
const LAST_NAME: &str =
    "(ARRAY['Lovelace','Turing','Hopper','Dijkstra','Liskov','Knuth','Thompson','Allen'])[1 + (g / 8) % 8]";

/// Rows seeded by default.
pub const DEFAULT_ROWS: u64 = 1_000_000;

/// What the demo does.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Rows to seed.
    pub rows: u64,
    /// Keep the cluster running and print its URL.
    pub keep: bool,
}

fn say(line: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line.as_ref());
    let _ = out.flush();
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

fn release(text: &str) -> Result<Release> {
    text.parse()
        .map_err(|e| Error::Usage(format!("release {text}: {e}")))
}

/// The state schema the demo's runner uses.
const STATE_SCHEMA: &str = "backfill";

/// Runs the demo.
pub async fn run(options: &DemoOptions) -> Result<()> {
    let started = Instant::now();
    say("starting a throwaway PostgreSQL ...");
    let cluster = Cluster::start(&ClusterOptions {
        unsafe_fast: false,
        watchdog: !options.keep,
    })?;
    say(format!("  cluster in {}", cluster.dir().display()));
    let spec = seed(&cluster, options.rows).await?;
    let mut client = spec.connect().await?;
    let plan = write_plan(&cluster)?;

    // The simulated application: the old release writes full_name the whole time.
    let old_release = Workload {
        statements: vec![
            "UPDATE users SET full_name = 'App' || $1::int8 || ' Update' WHERE id = $1".into(),
            "INSERT INTO users (full_name, email, age) VALUES ('App' || $1::int8 || ' Insert', 'app@example.com', 30)".into(),
            "UPDATE users SET email = 'app' || $1::int8 || '@example.com' WHERE id = $1".into(),
        ],
        key_max: (options.rows as i64).max(1),
        tasks: 4,
        pause: Duration::from_millis(5),
    };
    say("the application (old release: writes full_name) runs alone for 3s ...");
    let app = workload::start(&spec, &old_release).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = app.stop().await;

    say("release 1.4.0, with the application writing throughout");
    let app = workload::start(&spec, &old_release).await?;
    let t = Instant::now();
    let result = release_run(&spec, &plan, "1.4.0").await;
    let release_time = t.elapsed();
    let during = app.stop().await;
    result?;

    // The new release writes first_name/last_name; the old one still runs next to it.
    let new_release = Workload {
        statements: vec![
            "UPDATE users SET first_name = 'New' || $1::int8, last_name = 'Release' WHERE id = $1".into(),
            "INSERT INTO users (first_name, last_name, email) VALUES ('New' || $1::int8, 'Insert', 'new@example.com')".into(),
        ],
        ..old_release.clone()
    };
    say("releases 1.4.0 (old) and its successor (new: writes first_name, last_name) run side by side for 2s ...");
    let (a, b) = (
        workload::start(&spec, &old_release).await?,
        workload::start(&spec, &new_release).await?,
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (mixed_old, mixed_new) = (a.stop().await, b.stop().await);

    let wrong = check_rows(&mut client, &plan).await?;
    say("release 1.5.0");
    release_run(&spec, &plan, "1.5.0").await?;

    let reports = [&before, &during, &mixed_old, &mixed_new];
    summary(&client, &plan, release_time, &reports, wrong, started).await?;
    let errors: u64 = reports.iter().map(|r| r.errors).sum();
    if errors != 0 {
        let first: Vec<String> = reports
            .iter()
            .flat_map(|r| r.first_errors.clone())
            .take(3)
            .collect();
        return Err(Error::Environment(format!(
            "the simulated application saw {errors} errors: {}",
            first.join("; ")
        )));
    }
    if options.keep {
        say(format!(
            "the cluster keeps running: psql '{}'  (stop it with: pg_ctl -D {}/data stop)",
            cluster.uri("demo"),
            cluster.dir().display()
        ));
    } else {
        drop(cluster);
        say("the throwaway cluster is stopped and removed");
    }
    Ok(())
}

/// Creates the demo database with the examples' tables and `rows` users, settled as a
/// production table would be; returns how to connect to it.
async fn seed(cluster: &Cluster, rows: u64) -> Result<ConnectionSpec> {
    let admin = ConnectionSpec::parse(&cluster.url("postgres"))?
        .connect()
        .await?;
    admin
        .batch_execute("CREATE DATABASE demo")
        .await
        .map_err(|e| Error::db("creating the demo database", &e))?;
    let settings = crate::db::server_settings(
        &admin,
        &[
            "fsync",
            "synchronous_commit",
            "shared_buffers",
            "wal_init_zero",
        ],
    )
    .await?;
    say(format!(
        "  server: {settings} (a new cluster has no WAL files to recycle)"
    ));
    let spec = ConnectionSpec::parse(&cluster.url("demo"))?;
    let client = spec.connect().await?;
    say(format!("seeding users with {rows} rows ..."));
    let t = Instant::now();
    client
        .batch_execute(SCHEMA)
        .await
        .map_err(|e| Error::db("creating the demo tables", &e))?;
    client
        .execute(
            &format!(
                "INSERT INTO users (full_name, email, age)
                 SELECT {FIRST_NAME} || ' ' || {LAST_NAME}, 'user' || g || '@example.com', 18 + g % 60
                   FROM generate_series(1, $1::bigint) g"
            ),
            &[&(rows as i64)],
        )
        .await
        .map_err(|e| Error::db("seeding users", &e))?;
    // Settle the fresh table as a production one would be: vacuumed (hint bits, visibility
    // map) and checkpointed, so the bulk load's own I/O does not run during the demo.
    for sql in ["VACUUM (ANALYZE) users", "CHECKPOINT"] {
        client
            .batch_execute(sql)
            .await
            .map_err(|e| Error::db("settling the seeded table", &e))?;
    }
    say(format!("  done in {}", secs(t.elapsed())));
    Ok(spec)
}

/// The plan, as a file the runner reads (its path shows in messages and in the state).
fn write_plan(cluster: &Cluster) -> Result<Plan> {
    let plans_dir = cluster.dir().join("plans");
    std::fs::create_dir_all(&plans_dir).map_err(|source| Error::Write {
        path: plans_dir.clone(),
        source,
    })?;
    let plan_path = plans_dir.join("0001_split_full_name.toml");
    std::fs::write(&plan_path, PLAN).map_err(|source| Error::Write {
        path: plan_path.clone(),
        source,
    })?;
    let plan = Plan::load(&plan_path)?;
    say(format!(
        "plan {}: {}",
        plan.name,
        plan.operations
            .iter()
            .map(|o| o.op().summary())
            .collect::<Vec<_>>()
            .join("; ")
    ));
    Ok(plan)
}

/// `backfill run` of the plan at `release`, by the runner itself.
async fn release_run(spec: &ConnectionSpec, plan: &Plan, at: &str) -> Result<()> {
    let options = RunnerOptions {
        release: Some(release(at)?),
        force_contract: false,
        force: false,
        workers: None,
        batch_size: None,
        max_rows_per_second: None,
        state_schema: STATE_SCHEMA.to_string(),
        mode: progress::Mode::Auto,
        throttle: crate::runner::ThrottleOverrides::default(),
        // The demo's cluster goes away with it: there is nothing to resume.
        resume: "backfill demo".to_string(),
        only_contract: false,
    };
    runner::run_plans(spec, std::slice::from_ref(plan), &options, Stop::new()).await
}

/// `verify`, and every row checked while both columns exist (the split matches
/// `full_name`); an error when any is wrong, so the contract does not run. Returns the rows
/// found wrong (0).
async fn check_rows(client: &mut tokio_postgres::Client, plan: &Plan) -> Result<i64> {
    let keyset = crate::engine::Keyset::of(
        &crate::db::catalog::table_info(client, &plan.table)
            .await?
            .ok_or_else(|| Error::Environment("the demo table is gone".into()))?,
    )?;
    let (schedule, _) = runner::schedule_for(
        client,
        &crate::sql::Ident::new(STATE_SCHEMA),
        plan,
        &PlannerOptions::default(),
    )
    .await?;
    let verify = match &schedule.backfill {
        Some(b) => crate::verify::verify(client, b, &keyset, 0).await?,
        None => crate::verify::Report::default(),
    };
    say(format!(
        "verify     {} rows read, {} out of sync",
        verify.rows, verify.out_of_sync
    ));
    let wrong: i64 = client
        .query_one(
            "SELECT count(*) FROM users WHERE first_name IS DISTINCT FROM split_part(full_name, ' ', 1) OR last_name IS DISTINCT FROM split_part(full_name, ' ', 2)",
            &[],
        )
        .await
        .map_err(|e| Error::db("checking the rows", &e))?
        .get(0);
    if verify.out_of_sync != 0 || wrong != 0 {
        return Err(Error::Environment(format!(
            "{} rows out of sync, {wrong} rows wrong; contract is not run",
            verify.out_of_sync
        )));
    }
    Ok(wrong)
}

/// The summary: rows, backfill time and rate, the application's latency before and during
/// the release, its statements and errors, rows wrong, total time.
async fn summary(
    client: &tokio_postgres::Client,
    plan: &Plan,
    release_time: Duration,
    reports: &[&workload::Report; 4],
    wrong: i64,
    started: Instant,
) -> Result<()> {
    let [before, during, ..] = *reports;
    let (seen, changed, seconds) = crate::state::plans::backfill_totals(
        client,
        &crate::sql::Ident::new(STATE_SCHEMA),
        &plan.name,
    )
    .await?;
    let errors: u64 = reports.iter().map(|r| r.errors).sum();
    let ops: u64 = reports.iter().map(|r| r.ops).sum();
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    say("summary");
    say(format!("  rows backfilled   {changed} (of {seen} walked)"));
    say(format!(
        "  backfill          {seconds:.2}s ({:.0} rows/s), release 1.4.0 in {}",
        seen as f64 / seconds.max(1e-3),
        secs(release_time)
    ));
    say(format!(
        "  app p99 latency   {} before, {} during release 1.4.0 (max {} / {}; {ops} statements)",
        ms(before.quantile(0.99)),
        ms(during.quantile(0.99)),
        ms(before.max()),
        ms(during.max()),
    ));
    say(format!("  app errors        {errors}"));
    say(format!("  rows wrong        {wrong}"));
    say(format!("  total             {}", secs(started.elapsed())));
    Ok(())
}
