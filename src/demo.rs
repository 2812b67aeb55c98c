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

/// Runs the demo.
pub async fn run(options: &DemoOptions) -> Result<()> {
    let started = Instant::now();
    say("starting a throwaway PostgreSQL ...");
    let cluster = Cluster::start(&ClusterOptions {
        unsafe_fast: false,
        watchdog: !options.keep,
    })?;
    say(format!("  cluster in {}", cluster.dir().display()));
    let admin = ConnectionSpec::parse(&cluster.url("postgres"))?
        .connect()
        .await?;
    admin
        .batch_execute("CREATE DATABASE demo")
        .await
        .map_err(|e| Error::db("creating the demo database", &e))?;
    let spec = ConnectionSpec::parse(&cluster.url("demo"))?;
    let mut client = spec.connect().await?;

    say(format!("seeding users with {} rows ...", options.rows));
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
            &[&(options.rows as i64)],
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

    // The plan, as a file the runner reads (its path shows in messages and in the state).
    let plans_dir = cluster.dir().join("plans");
    std::fs::create_dir_all(&plans_dir).map_err(|source| Error::Io {
        path: plans_dir.clone(),
        source,
    })?;
    let plan_path = plans_dir.join("0001_split_full_name.toml");
    std::fs::write(&plan_path, PLAN).map_err(|source| Error::Io {
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

    // The simulated application: the old release writes full_name the whole time.
    let rows = options.rows as i64;
    let old_release = Workload {
        statements: vec![
            "UPDATE users SET full_name = 'App' || $1::int8 || ' Update' WHERE id = $1".into(),
            "INSERT INTO users (full_name, email, age) VALUES ('App' || $1::int8 || ' Insert', 'app@example.com', 30)".into(),
            "UPDATE users SET email = 'app' || $1::int8 || '@example.com' WHERE id = $1".into(),
        ],
        key_max: rows.max(1),
        tasks: 4,
        pause: Duration::from_millis(5),
    };
    say("the application (old release: writes full_name) runs alone for 3s ...");
    let app = workload::start(&spec, &old_release).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = app.stop().await;

    let runner = RunnerOptions {
        release: None,
        force_contract: false,
        force: false,
        workers: None,
        batch_size: None,
        max_rows_per_second: None,
        state_schema: "backfill".to_string(),
        mode: progress::Mode::Auto,
        throttle: crate::runner::ThrottleOverrides::default(),
        // The demo's cluster goes away with it: there is nothing to resume.
        resume: "backfill demo".to_string(),
        only_contract: false,
    };
    say("release 1.4.0, with the application writing throughout");
    let app = workload::start(&spec, &old_release).await?;
    let t = Instant::now();
    let result = runner::run(
        &spec,
        std::slice::from_ref(&plan),
        &RunnerOptions {
            release: Some(release("1.4.0")?),
            ..runner.clone()
        },
        Stop::new(),
    )
    .await;
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

    let keyset = crate::engine::Keyset::of(
        &crate::db::catalog::table_info(&client, &plan.table)
            .await?
            .ok_or_else(|| Error::Environment("the demo table is gone".into()))?,
    )?;
    let (schedule, _) = runner::schedule_for(
        &mut client,
        &crate::sql::Ident::new("backfill"),
        &plan,
        &PlannerOptions::default(),
    )
    .await?;
    let verify = match &schedule.backfill {
        Some(b) => crate::verify::verify(&client, b, &keyset, 0).await?,
        None => crate::verify::Report::default(),
    };
    say(format!(
        "verify     {} rows read, {} out of sync",
        verify.rows, verify.out_of_sync
    ));
    // Every row, checked while both columns exist: the split matches full_name.
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

    say("release 1.5.0");
    runner::run(
        &spec,
        std::slice::from_ref(&plan),
        &RunnerOptions {
            release: Some(release("1.5.0")?),
            ..runner
        },
        Stop::new(),
    )
    .await?;

    let stats = client
        .query_one(
            "SELECT (SELECT coalesce(sum(rows_seen), 0)::int8 FROM backfill.segments WHERE plan = $1),
                    (SELECT coalesce(sum(rows_changed), 0)::int8 FROM backfill.segments WHERE plan = $1),
                    (SELECT extract(epoch FROM finished_at - started_at)::float8 FROM backfill.phases WHERE plan = $1 AND phase = 'backfill')",
            &[&plan.name],
        )
        .await
        .map_err(|e| Error::db("reading the backfill's record", &e))?;
    let (seen, changed, seconds): (i64, i64, Option<f64>) =
        (stats.get(0), stats.get(1), stats.get(2));
    let seconds = seconds.unwrap_or(0.0);
    let errors = before.errors + during.errors + mixed_old.errors + mixed_new.errors;
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    say("summary");
    say(format!("  rows backfilled   {changed} (of {seen} walked)"));
    say(format!(
        "  backfill          {seconds:.2}s ({:.0} rows/s), release 1.4.0 in {}",
        seen as f64 / seconds.max(1e-3),
        secs(release_time)
    ));
    say(format!(
        "  app p99 latency   {} before, {} during release 1.4.0 (max {} / {}; {} statements)",
        ms(before.quantile(0.99)),
        ms(during.quantile(0.99)),
        ms(before.max()),
        ms(during.max()),
        before.ops + during.ops + mixed_old.ops + mixed_new.ops
    ));
    say(format!("  app errors        {errors}"));
    say(format!("  rows wrong        {wrong}"));
    say(format!("  total             {}", secs(started.elapsed())));
    if errors != 0 {
        let first: Vec<String> = [&before, &during, &mixed_old, &mixed_new]
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
