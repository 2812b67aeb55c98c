//! `backfill run`: loads the plans, checks each against the live catalog, and runs the asked
//! phase. Ctrl-C (or SIGTERM) once lets the chunks in flight commit and exits 130 with the
//! command that resumes; a second Ctrl-C exits at once (open transactions roll back on the
//! server, and since a chunk and its checkpoint commit together, the checkpoints stay right).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use crate::cli::{connection, RunArgs, RunPhase};
use backfill::engine::{self, Events, Outcome, Stop};
use backfill::error::{Error, Result, EXIT_INTERRUPTED};
use backfill::plan::load_all;
use backfill::progress::{self, Mode};
use backfill::verify;

/// The process-wide stop, triggered by Ctrl-C / SIGTERM.
fn interrupts() -> Stop {
    static STOP: OnceLock<Stop> = OnceLock::new();
    STOP.get_or_init(|| {
        let stop = Stop::new();
        let handler_stop = stop.clone();
        let presses = AtomicU32::new(0);
        let installed = ctrlc::set_handler(move || {
            if presses.fetch_add(1, Ordering::SeqCst) == 0 {
                say(
                    "interrupt: letting the chunks in flight commit (press Ctrl-C again to stop at once)",
                );
                handler_stop.trigger();
            } else {
                say("stopping at once; uncommitted chunks roll back, checkpoints hold");
                progress::leave_bars();
                std::process::exit(i32::from(EXIT_INTERRUPTED));
            }
        });
        if let Err(e) = installed {
            eprintln!("warning: cannot catch Ctrl-C ({e}); an interrupt will stop at once");
        }
        stop
    })
    .clone()
}

/// Says `line` on stderr: above the progress bars while they are drawn (printed across them,
/// it would be erased by their next redraw and leave a stale copy of them behind), else on a
/// line of its own after the `^C` the terminal echoed.
fn say(line: &str) {
    if !progress::eprint_above_bars(line) {
        eprintln!("\n{line}");
    }
}

/// Runs `backfill run`.
pub async fn run_cmd(args: RunArgs) -> Result<()> {
    let plans = load_all(&args.plans)?;
    if let Some(addr) = args.metrics_addr {
        backfill::metrics::serve(addr)?;
    }
    let conn = connection(&args.db)?.ok_or_else(|| {
        Error::Usage(
            "backfill run needs the database: give --database-url or set DATABASE_URL".to_string(),
        )
    })?;
    let mode = if args.json {
        Mode::Json
    } else {
        args.progress.into()
    };
    let release = args
        .release
        .as_deref()
        .map(|r| r.parse::<backfill::version::Release>())
        .transpose()
        .map_err(|e| Error::Usage(format!("--release: {e}")))?;
    let options = backfill::runner::RunnerOptions {
        release,
        force_contract: args.force_contract,
        force: args.force,
        workers: args.workers,
        batch_size: args.batch_size,
        max_rows_per_second: args.max_rows_per_second,
        state_schema: args.db.state_schema.clone(),
        mode,
        throttle: args.throttle.parse()?,
        resume: resume_command(),
        only_contract: args.phase == Some(RunPhase::Contract),
    };
    if args.recheck && args.phase != Some(RunPhase::Backfill) {
        return Err(Error::Usage(
            "--recheck goes with --phase backfill: `backfill run PLAN --phase backfill --recheck` (the contract rechecks by itself)".to_string(),
        ));
    }
    if args.phase != Some(RunPhase::Backfill) {
        return backfill::runner::run_plans(&conn, &plans, &options, interrupts()).await;
    }
    let client = conn.connect().await?;
    // Check every plan, and the role's rights, before running any.
    let schema = backfill::sql::Ident::new(&args.db.state_schema);
    backfill::privileges::check_state_access(&client, &plans, &schema).await?;
    let mut jobs = Vec::new();
    for plan in &plans {
        match args.phase {
            None | Some(RunPhase::Contract) => {}
            Some(RunPhase::Backfill) => {
                if let Some(job) =
                    backfill::runner::backfill_only_job(&client, plan, &args.db.state_schema)
                        .await?
                {
                    jobs.push((plan, job));
                } else if mode != Mode::Json {
                    eprintln!("plan `{}` moves no data: nothing to backfill", plan.name);
                }
            }
        }
    }
    drop(client);
    let stop = interrupts();
    for (plan, job) in jobs {
        let engine_options = options.engine_options(plan);
        let (spec, keyset) = (job.spec.clone(), job.keyset.clone());
        let rate = engine_options.max_rows_per_second;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let sink = tokio::spawn(progress::render(mode, rx));
        let meter = backfill::metrics::Meter::new(&plan.name);
        meter.phase("backfill");
        let events = Events::new(tx).metered(meter);
        let result = engine::backfill(&conn, job, engine_options, events, stop.clone()).await;
        let _ = sink.await;
        match result? {
            Outcome::Finished(_) if args.recheck => {
                let mut client = conn.connect().await?;
                let report = verify::recheck(&mut client, &spec, &keyset, rate).await?;
                if mode == Mode::Json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "event": "recheck",
                            "plan": plan.name,
                            "rows": report.rows,
                            "out_of_sync": report.out_of_sync,
                            "fixed": report.fixed,
                            "keys": report.keys,
                        })
                    );
                } else {
                    eprintln!(
                        "plan {}: {}",
                        plan.name,
                        backfill::runner::recheck_detail(&report)
                    );
                }
            }
            Outcome::Finished(_) => {}
            Outcome::Interrupted(s) => {
                return Err(Error::Interrupted {
                    progress: format!(
                        "plan `{}`: {} of ~{} walked",
                        plan.name,
                        progress::counted(s.rows_done, "row", "rows"),
                        s.rows_estimate
                    ),
                    resume: resume_command(),
                })
            }
        }
    }
    Ok(())
}

/// The command that resumes: this invocation's own arguments, word for word (every plan,
/// flag and setting), without `--database-url` (it may hold a password; the resumed command
/// finds the database the same way, through `DATABASE_URL` or the `PG*` variables) and with
/// passwords taken out of `--replica-url` values.
pub fn resume_command() -> String {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut words = vec!["backfill".to_string()];
    let mut dropped_url = false;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--database-url" {
            dropped_url = true;
            i += 2;
            continue;
        }
        if a.starts_with("--database-url=") {
            dropped_url = true;
            i += 1;
            continue;
        }
        if a == "--replica-url" {
            words.push(a.clone());
            if let Some(v) = args.get(i + 1) {
                words.push(shell_word(&backfill::db::without_password(v)));
            }
            i += 2;
            continue;
        }
        if let Some(v) = a.strip_prefix("--replica-url=") {
            words.push(shell_word(&format!(
                "--replica-url={}",
                backfill::db::without_password(v)
            )));
            i += 1;
            continue;
        }
        words.push(shell_word(a));
        i += 1;
    }
    let mut text = words.join(" ");
    if dropped_url {
        text.push_str(" (with the same database: set DATABASE_URL or the PG* variables)");
    }
    text
}

fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}
