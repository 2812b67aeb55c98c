//! The commands that look at or steer plans from any terminal: `status`, `verify`, `pause`,
//! `resume`, `set`, `export` and `abort`: arguments in, the library's `control` called, what
//! it returns printed.

use backfill::control::{self, Verified};
use backfill::db::ConnectionSpec;
use backfill::error::{Error, Result};
use backfill::plan::load_all;
use backfill::planner::PlannerOptions;
use backfill::progress::counted;
use backfill::sql::Ident;
use backfill::state::{self, status::PlanStatus};

use super::{
    connection, AbortArgs, ControlArgs, DbArgs, ExportArgs, SetArgs, StatusArgs, VerifyArgs,
};

fn need_db(db: &DbArgs, what: &str) -> Result<ConnectionSpec> {
    connection(db)?.ok_or_else(|| {
        Error::Usage(format!(
            "backfill {what} reads the database: give --database-url or set DATABASE_URL"
        ))
    })
}

/// `backfill status`.
pub async fn status_cmd(args: StatusArgs) -> Result<()> {
    let conn = need_db(&args.db, "status")?;
    let interval = backfill::plan::parse_duration(&args.interval)
        .map_err(|e| Error::Usage(format!("--interval {:?}: {e}", args.interval)))?;
    if interval.is_zero() {
        return Err(Error::Usage("--interval must be longer than 0".to_string()));
    }
    let mut client = conn.connect_patiently().await?;
    let schema = Ident::new(&args.db.state_schema);
    // Plan files and folders, or the names of plans that ran (from a host without the files).
    let (files, named): (Vec<_>, Vec<_>) = args
        .plans
        .iter()
        .cloned()
        .partition(|p| p.exists() || p.extension().is_some() || p.components().count() > 1);
    let mut names: Vec<String> = if files.is_empty() {
        Vec::new()
    } else {
        load_all(&files)?.into_iter().map(|p| p.name).collect()
    };
    names.extend(named.iter().map(|p| p.display().to_string()));
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut drawn_lines = 0;
    loop {
        let plans = match read_status(&client, &schema, &names).await {
            // A cut, a restart, a failover (during `--watch` above all): connect again and
            // read again.
            Err(e) if e.connection_lost() => {
                client = conn.connect_patiently().await?;
                read_status(&client, &schema, &names).await?
            }
            other => other?,
        };
        let text = if args.json {
            let json = if args.watch {
                serde_json::to_string(&plans)
            } else {
                serde_json::to_string_pretty(&plans)
            };
            format!("{}\n", json.unwrap_or_default())
        } else if plans.is_empty() {
            "no plan has run on this database yet\n".to_string()
        } else {
            plans.iter().map(render_status).collect()
        };
        if args.watch && terminal && !args.json && drawn_lines > 0 {
            // Back to the top of what was drawn last time, and clear it.
            print!("\x1b[{drawn_lines}A\x1b[J");
        } else if args.watch && !terminal && !args.json && drawn_lines > 0 {
            println!("--");
        }
        print!("{text}");
        std::io::Write::flush(&mut std::io::stdout()).ok();
        drawn_lines = text.lines().count();
        if !args.watch || settled(&plans) {
            return Ok(());
        }
        tokio::time::sleep(interval).await;
    }
}

/// The status of `names` (every plan when empty); plans not started when the state schema is
/// not there yet.
async fn read_status(
    client: &tokio_postgres::Client,
    schema: &Ident,
    names: &[String],
) -> Result<Vec<PlanStatus>> {
    if state::exists(client, schema).await? {
        return control::status(client, schema, names).await;
    }
    Ok(names
        .iter()
        .map(|n| PlanStatus {
            plan: n.clone(),
            started: false,
            detail: None,
        })
        .collect())
}

/// Nothing in progress: every plan shown started, and no process works on any of them (a
/// phase left running by a process that died is not in progress; what waits for a later
/// release waits for another `run`).
fn settled(plans: &[PlanStatus]) -> bool {
    !plans.is_empty()
        && plans
            .iter()
            .all(|p| p.detail.as_ref().is_some_and(|d| d.processes.is_empty()))
}

fn render_status(p: &PlanStatus) -> String {
    let name = &p.plan;
    let Some(d) = &p.detail else {
        return format!("plan {name}: not started\n");
    };
    let mut out = format!(
        "plan {name} on {} ({}): {}{}\n",
        d.table,
        d.file,
        d.phase,
        if d.paused { ", PAUSED" } else { "" }
    );
    for ph in &d.phases {
        let line = match ph.status.as_str() {
            "done" => format!(
                "done{} {}",
                ph.release
                    .as_deref()
                    .map(|r| format!(" at release {r}"))
                    .unwrap_or_default(),
                ph.finished_at.as_deref().unwrap_or("")
            ),
            "running" => "running".to_string(),
            _ => match (&ph.refused, &ph.due_from) {
                (Some(why), _) => format!("refused: {why}"),
                (None, Some(r)) => format!("waits for release {r}"),
                (None, None) => "not started (no release gate)".to_string(),
            },
        };
        out.push_str(&format!("  {:<11} {line}\n", ph.phase));
    }
    if let Some(b) = &d.backfill {
        let pace = if b.finished {
            "finished".to_string()
        } else if d.paused {
            "paused".to_string()
        } else {
            let eta = b
                .eta_seconds
                .map(|s| format!(", ETA {:.0}s", s))
                .unwrap_or_default();
            format!("{:.0} rows/s{eta}", b.rows_per_second)
        };
        out.push_str(&format!(
            "  progress    {} of ~{} rows ({:.1}%), {} of {} left, {pace}\n",
            b.rows_done,
            b.rows_estimate,
            b.percent,
            b.segments_left,
            counted(b.segments, "segment", "segments")
        ));
    }
    for pr in &d.processes {
        out.push_str(&format!("  process     {}\n", process_line(pr)));
    }
    if let Some(e) = &d.last_error {
        out.push_str(&format!("  last error  {e}\n"));
    }
    out
}

/// One process of `status`: what it does, and its live figures while it backfills.
fn process_line(pr: &backfill::state::status::ProcessStatus) -> String {
    let f = pr.figures.as_ref();
    let workers = f.map_or(pr.workers.unwrap_or(0), |f| f.workers as i32);
    let mut line = format!(
        "{} pid {}: {}",
        pr.host,
        pr.pid,
        pr.phase.as_deref().unwrap_or("-")
    );
    if pr.phase.as_deref() == Some("backfill") {
        line.push_str(&format!(
            ", {}, {:.0} rows/s",
            counted(workers.max(0), "worker", "workers"),
            pr.rows_per_second.unwrap_or(0.0)
        ));
        if let Some(f) = f {
            if f.batch_size > 0 {
                line.push_str(&format!(", batch {}", f.batch_size));
            }
            if let (Some(p50), Some(p99)) = (f.chunk_p50_ms, f.chunk_p99_ms) {
                line.push_str(&format!(", chunks p50 {p50:.0} ms, p99 {p99:.0} ms"));
            }
            let retries: u64 = f.retries.values().sum();
            if retries > 0 {
                line.push_str(&format!(", {}", counted(retries, "retry", "retries")));
            }
            if let Some(why) = &f.throttle_detail {
                line.push_str(&format!(", throttled: {why}"));
            }
        }
    } else if let Some(f) = f.filter(|f| f.ddl_lock_waits > 0) {
        line.push_str(&format!(
            ", {} ({:.0}s)",
            counted(f.ddl_lock_waits, "lock wait", "lock waits"),
            f.ddl_lock_wait_seconds
        ));
    }
    line.push_str(&format!(
        ", heartbeat {:.1}s ago",
        pr.heartbeat_seconds_ago.unwrap_or(0.0)
    ));
    line
}

/// `backfill verify`.
pub async fn verify_cmd(args: VerifyArgs) -> Result<()> {
    let conn = need_db(&args.db, "verify")?;
    let plans = load_all(&args.plans)?;
    let mut client = conn.connect_patiently().await?;
    let options = PlannerOptions {
        state_schema: args.db.state_schema.clone(),
    };
    let schema = Ident::new(&args.db.state_schema);
    let mut first_error = None;
    for plan in &plans {
        let rate = args
            .max_rows_per_second
            .unwrap_or(plan.backfill.max_rows_per_second);
        // It only reads: a walk cut short (a cut, a restart, a failover) starts again on a
        // new connection, as many times as a run would.
        let mut lost = 0;
        let verified = loop {
            match control::verify(&mut client, &schema, plan, &options, rate).await {
                Err(e) if e.connection_lost() && lost < backfill::runner::RECONNECTS => {
                    lost += 1;
                    tracing::warn!(plan = %plan.name, attempt = lost, error = %e, "the connection was lost during verify; connecting again and reading again");
                    client = conn.connect_patiently().await?;
                }
                other => break other?,
            }
        };
        match verified {
            // One plan of a folder not started yet is no reason to skip the others.
            Verified::NotStarted(missing) => println!(
                "plan {}: expand has not run on {} (column \"{missing}\" is missing): nothing to verify yet",
                plan.name, plan.table
            ),
            Verified::NoData => println!("plan {}: moves no data; nothing to verify", plan.name),
            Verified::Report(report) => {
                println!(
                    "plan {}: {} read, {} out of sync",
                    plan.name,
                    counted(report.rows, "row", "rows"),
                    report.out_of_sync
                );
                for k in &report.keys {
                    println!("  out of sync: {k}");
                }
                if report.out_of_sync > 0 && first_error.is_none() {
                    first_error = Some(Error::OutOfSync {
                        plan: plan.name.clone(),
                        table: plan.table.to_string(),
                        count: report.out_of_sync,
                        keys: report.keys,
                    });
                }
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// `backfill pause` / `backfill resume`.
pub async fn pause_cmd(args: ControlArgs, pause: bool) -> Result<()> {
    let conn = need_db(&args.db, if pause { "pause" } else { "resume" })?;
    let name = control::plan_name(&args.plan)?;
    let client = conn.connect().await?;
    let schema = Ident::new(&args.db.state_schema);
    if !control::pause(&client, &schema, &name, pause).await? {
        println!("plan {name}: its backfill has finished; there is nothing to pause");
        return Ok(());
    }
    println!(
        "plan {name}: {}",
        if pause {
            "paused; running workers hold at their next chunk boundary (backfill resume to go on)"
        } else {
            "resumed"
        }
    );
    Ok(())
}

/// `backfill set`.
pub async fn set_cmd(args: SetArgs) -> Result<()> {
    let conn = need_db(&args.db, "set")?;
    let name = control::plan_name(&args.plan)?;
    let mut client = conn.connect().await?;
    let schema = Ident::new(&args.db.state_schema);
    let described = control::set(&mut client, &schema, &name, &args.settings).await?;
    println!("plan {name}: {described}; running processes pick it up within 2 seconds");
    Ok(())
}

/// `backfill export`.
pub async fn export_cmd(args: ExportArgs) -> Result<()> {
    let conn = need_db(&args.db, "export")?;
    let plans = load_all(&args.plans)?;
    let mut client = conn.connect().await?;
    let schema = Ident::new(&args.db.state_schema);
    let options = PlannerOptions {
        state_schema: args.db.state_schema.clone(),
    };
    let files = control::export(
        &mut client,
        &schema,
        &plans,
        &options,
        args.format.into(),
        &args.out,
        args.down_revision.clone(),
    )
    .await?;
    for f in &files {
        println!("wrote {}", f.display());
    }
    Ok(())
}

/// `backfill abort`.
pub async fn abort_cmd(args: AbortArgs) -> Result<()> {
    let conn = need_db(&args.db, "abort")?;
    let mut client = conn.connect().await?;
    let schema = Ident::new(&args.db.state_schema);
    let plan = control::plan_or_recorded(&client, &schema, &args.plan).await?;
    control::abort(&mut client, &schema, &plan).await?;
    println!(
        "plan {}: aborted; {} is back to its schema and data from before the plan (a new run starts over)",
        plan.name, plan.table
    );
    Ok(())
}
