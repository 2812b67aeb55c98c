//! `backfill demo`: a throwaway PostgreSQL, a seeded `users` table, and the example plan
//! `plans/0001_split_full_name.toml` through release 1.4.0 (expand, dual-write, backfill) and
//! release 1.5.0 (contract), then a check of every row and a summary. The cluster is removed at
//! the end unless `--keep`.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::db::ConnectionSpec;
use crate::engine::{self, EngineOptions, Events, Job, Outcome, Stop};
use crate::ephemeral::{Cluster, ClusterOptions};
use crate::error::{Error, Result};
use crate::executor::{count_out_of_sync, run_steps, ExecOptions};
use crate::plan::Plan;
use crate::planner::{Phase, PlannerOptions};
use crate::progress;
use crate::validate::validate;

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
    client
        .batch_execute("ANALYZE users")
        .await
        .map_err(|e| Error::db("analyzing users", &e))?;
    say(format!("  done in {}", secs(t.elapsed())));

    let plan = Plan::parse(Path::new("plans/0001_split_full_name.toml"), PLAN)?;
    let validated = validate(&mut client, &plan, &PlannerOptions::default()).await?;
    let schedule = validated.schedule;
    let catalog = validated.catalog;
    say(format!(
        "plan {}: {} (validated against the live catalog)",
        plan.name,
        plan.operations
            .iter()
            .map(|o| o.op().summary())
            .collect::<Vec<_>>()
            .join("; ")
    ));
    let exec = ExecOptions {
        lock_timeout: plan.backfill.lock_timeout,
        retries: plan.backfill.ddl_retries,
    };
    let mut backfill_time = Duration::ZERO;
    let mut changed = 0;
    for (release, phases) in [
        (
            "1.4.0",
            &[Phase::Expand, Phase::DualWrite, Phase::Backfill][..],
        ),
        ("1.5.0", &[Phase::Contract][..]),
    ] {
        say(format!("release {release}"));
        for &phase in phases {
            let t = Instant::now();
            if phase == Phase::Backfill {
                if let Some(b) = &schedule.backfill {
                    let job = Job::new(&plan, b.clone(), &catalog)?;
                    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                    let sink = tokio::spawn(progress::render(progress::Mode::Auto, rx));
                    let outcome = engine::run(
                        &spec,
                        job,
                        EngineOptions::from_plan(&plan, "backfill"),
                        Events::new(tx),
                        Stop::new(),
                    )
                    .await;
                    let _ = sink.await;
                    match outcome? {
                        Outcome::Finished(s) => changed = s.rows_changed.max(0) as u64,
                        Outcome::Interrupted(_) => {
                            return Err(Error::Environment(
                                "the demo's backfill was interrupted".into(),
                            ))
                        }
                    }
                    backfill_time = t.elapsed();
                }
            } else {
                run_steps(
                    &mut client,
                    &schedule,
                    schedule.phase(phase),
                    &phase.to_string(),
                    &exec,
                )
                .await?;
            }
            say(format!("  {phase:<10} done in {}", secs(t.elapsed())));
            if phase == Phase::Backfill {
                let out_of_sync = count_out_of_sync(&client, &schedule).await?;
                say(format!("  verify     {out_of_sync} rows out of sync"));
                if out_of_sync != 0 {
                    return Err(Error::Environment(format!(
                        "verify found {out_of_sync} rows out of sync; contract is not run"
                    )));
                }
            }
        }
    }

    // Every row, checked against the mapping.
    let wrong: i64 = client
        .query_one(
            // Row `id` was seeded as row `g = id` of the fresh table's sequence.
            &format!(
                "SELECT count(*) FROM (SELECT first_name, last_name, id AS g FROM users) u
                  WHERE first_name IS DISTINCT FROM {FIRST_NAME} OR last_name IS DISTINCT FROM {LAST_NAME}"
            ),
            &[],
        )
        .await
        .map_err(|e| Error::db("checking the rows", &e))?
        .get(0);
    let rate = changed as f64 / backfill_time.as_secs_f64().max(1e-9);
    say("summary");
    say(format!("  rows backfilled   {changed}"));
    say(format!(
        "  backfill          {} ({:.0} rows/s, in keyset chunks with checkpoints)",
        secs(backfill_time),
        rate
    ));
    say(format!("  rows wrong        {wrong}"));
    say(format!("  total             {}", secs(started.elapsed())));
    if wrong != 0 {
        return Err(Error::Environment(format!(
            "{wrong} rows do not have the expected first_name/last_name"
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
