//! The command layer, owned by the binary: clap definitions, the commands behind them, and
//! what they print. Raw flags become typed options here (releases, durations, connections,
//! throttle overrides) before anything touches the database; the library below never imports
//! this module. Output goes to stdout, problems to stderr; `main` maps the result to an exit
//! code.

mod control;
mod run;

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use backfill::db::ConnectionSpec;
use backfill::error::{Error, Result};
use backfill::plan::{load_all, Plan};
use backfill::planner::{PlannerOptions, Schedule, StepMode};
use backfill::runner::{prepare_all, Prepared};
use backfill::version::Release;

/// Zero-downtime schema changes and throttled, resumable backfills for live PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "backfill", version = version_text(), about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Log lines on stderr as text or JSON (`RUST_LOG` picks what is logged, e.g.
    /// `RUST_LOG=backfill=info`; warnings and errors by default).
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// `backfill --version`: the release and the state schema version it keeps (processes of
/// releases that keep another one must not share a state schema; a newer one migrates it).
fn version_text() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        format!(
            "{} (state schema version {})",
            env!("CARGO_PKG_VERSION"),
            backfill::state::latest_version()
        )
    })
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check plans: without a database, their format; with one, against the live catalog
    /// (tables, keys, columns, types, and every SQL expression compiled). Changes nothing.
    #[command(
        after_help = "Examples:\n  backfill validate plans/\n  backfill validate --database-url postgres://app@db/app plans/0001_split_full_name.toml"
    )]
    Validate(ValidateArgs),
    /// Show the schedule of a plan: phases, steps, the lock each statement takes and the
    /// release each phase is due at; `--sql` prints the exact SQL `run` executes.
    #[command(
        after_help = "Examples:\n  backfill plan plans/0001_split_full_name.toml --release 1.4.0\n  backfill plan plans/ --sql > migration.sql"
    )]
    Plan(PlanArgs),
    /// Run every phase of the plans that is due at `--release` and not done yet: expand,
    /// dual-write, backfill, contract, recording each step in the state schema. Rerun the same
    /// command to resume after a crash or Ctrl-C. `--phase backfill` runs only the backfill of
    /// plans whose expand and dual-write were applied by other means; `--phase contract` only
    /// the contract, asked for explicitly (the way to contract a plan without a release gate).
    #[command(
        after_help = "Examples:\n  backfill run plans/ --release 1.4.0          # expand, dual-write, backfill of plans due at 1.4.0\n  backfill run plans/ --release 1.5.0          # then contract, in the next release\n  backfill run plans/0001_split_full_name.toml --release 1.4.0 --workers 8 --max-rows-per-second 20000\n  backfill run plans/0001_split_full_name.toml --phase backfill\n  backfill run plans/0001_split_full_name.toml --phase contract"
    )]
    Run(RunArgs),
    /// Every plan's phase, backfill progress (rows, rate, ETA), the processes working on it,
    /// its last error and what waits for which release. Reads the state schema only.
    #[command(after_help = "Examples:\n  backfill status\n  backfill status plans/ --json")]
    Status(StatusArgs),
    /// Count the rows a plan's backfill has not brought in sync (read-only, in pages, throttled);
    /// print up to 10 of their keys. Exit 0 only when there are none.
    #[command(after_help = "Examples:\n  backfill verify plans/0001_split_full_name.toml")]
    Verify(VerifyArgs),
    /// Hold a plan's running backfill at its workers' next chunk boundary, from any terminal.
    #[command(
        after_help = "Examples:\n  backfill pause split_full_name\n  backfill pause plans/0001_split_full_name.toml"
    )]
    Pause(ControlArgs),
    /// Let a paused backfill go on.
    #[command(after_help = "Examples:\n  backfill resume split_full_name")]
    Resume(ControlArgs),
    /// Change settings of a running backfill from any terminal: the processes working on it
    /// pick the change up within 2 seconds.
    #[command(
        after_help = "Keys: max_rows_per_second, workers, min_batch_size, max_batch_size, max_replication_lag, max_lock_waiters, max_transaction_age, pause_during_autovacuum, max_commit_latency (\"off\" clears a threshold).\n\nExamples:\n  backfill set split_full_name max_rows_per_second=5000\n  backfill set plans/0001_split_full_name.toml workers=2 max_replication_lag=10s"
    )]
    Set(SetArgs),
    /// Write a plan's schedule as files for another migration tool: `sql` (one psql script per
    /// phase) or `alembic` (revisions for expand + dual-write and for contract); the backfill
    /// then runs out of band with `backfill run --phase backfill`.
    #[command(
        after_help = "Examples:\n  backfill export plans/0001_split_full_name.toml --format sql --out migrations/\n  backfill export plans/0001_split_full_name.toml --format alembic --out alembic/versions --down-revision 3f2a1c9d8e7b"
    )]
    Export(ExportArgs),
    /// Roll back a plan's expand and dual-write (new columns, trigger, function, NOT VALID
    /// constraints, indexes, in-place changes) while its contract has not started.
    #[command(
        after_help = "Examples:\n  backfill abort plans/0001_split_full_name.toml\n  backfill abort split_full_name"
    )]
    Abort(AbortArgs),
    /// Print a shell completion script: `backfill completions bash > /etc/bash_completion.d/backfill`.
    #[command(
        after_help = "Examples:\n  backfill completions bash > ~/.local/share/bash-completion/completions/backfill\n  backfill completions zsh > \"${fpath[1]}/_backfill\"\n  backfill completions fish > ~/.config/fish/completions/backfill.fish"
    )]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the next numbered plan of a folder for one operation kind, every field of the kind
    /// written out: those given as `field=value` set, the others commented with what they mean.
    #[command(
        after_help = "Examples:\n  backfill new rename_column --table users from=email to=email_address\n  backfill new change_type --table orders --name widen_total column=total type='numeric(14, 2)'\n  backfill new create_index --table users --dir db/plans 'columns=[\"email\"]'"
    )]
    New(NewArgs),
    /// Print the JSON Schema of the plan format, generated from the types plans are read into:
    /// editors that read `#:schema` (Taplo, Even Better TOML) complete and check plans with it.
    #[command(
        after_help = "Examples:\n  backfill schema > plans/plan.schema.json\n  # then, first line of a plan: #:schema ./plan.schema.json"
    )]
    Schema,
    /// Write man pages generated from these command-line definitions: `backfill.1` and one page
    /// per subcommand (`backfill-run.1`, ...) into `--out`, or `backfill.1` to standard output.
    #[command(
        after_help = "Examples:\n  backfill man --out /usr/local/share/man/man1\n  backfill man | man -l -"
    )]
    Man {
        /// The folder to write the pages into (created if missing).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Run the example plan on a throwaway PostgreSQL with a seeded table, through every phase,
    /// and check every row. Needs the PostgreSQL server binaries (package `postgresql`).
    #[command(after_help = "Examples:\n  backfill demo\n  backfill demo --rows 100000 --keep")]
    Demo(DemoArgs),
}

/// `backfill demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Rows to seed.
    #[arg(long, default_value_t = backfill::demo::DEFAULT_ROWS)]
    pub rows: u64,
    /// Keep the cluster running at the end and print its URL.
    #[arg(long)]
    pub keep: bool,
}

/// `backfill status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Plan files or folders, or names of plans that ran (default: every plan in the state
    /// schema).
    pub plans: Vec<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Refresh every `--interval` (in place on a terminal; with `--json`, one line each time)
    /// until nothing is in progress: every plan shown started, no process working on it.
    /// Ctrl-C stops watching, never the run.
    #[arg(long)]
    pub watch: bool,
    /// How often `--watch` refreshes (e.g. 2s, 500ms).
    #[arg(long, default_value = "2s", requires = "watch")]
    pub interval: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub db: DbArgs,
}

/// `backfill new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The operation kind (`add_column`, `rename_column`, `change_type`, ...).
    pub kind: String,
    /// The table (`table` or `schema.table`).
    #[arg(long)]
    pub table: String,
    /// The folder of plans.
    #[arg(long, default_value = "plans")]
    pub dir: PathBuf,
    /// The file name after its number (default: `<kind>_<table>`); the plan's name is the
    /// file's.
    #[arg(long)]
    pub name: Option<String>,
    /// Fields of the operation: `field=value`, the value as TOML (`true`, `42`,
    /// `["a", "b"]`) or else a string.
    #[arg(value_name = "FIELD=VALUE")]
    pub fields: Vec<String>,
}

/// `backfill verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Plan files or folders.
    #[arg(required = true)]
    pub plans: Vec<PathBuf>,
    /// Rows read per second at most (default: the plan's `max_rows_per_second`; 0: none).
    #[arg(long)]
    pub max_rows_per_second: Option<u64>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub db: DbArgs,
}

/// `backfill pause` / `backfill resume`.
#[derive(Debug, Args)]
pub struct ControlArgs {
    /// The plan: its file or its name.
    pub plan: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub db: DbArgs,
}

/// `backfill export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Plan files or folders.
    #[arg(required = true)]
    pub plans: Vec<PathBuf>,
    /// What to write.
    #[arg(long, value_enum)]
    pub format: FormatArg,
    /// The folder to write into (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Alembic: the revision the first exported revision follows.
    #[arg(long)]
    pub down_revision: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub db: DbArgs,
}

/// `backfill set`.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// The plan: its file or its name.
    pub plan: String,
    /// Settings as key=value.
    #[arg(required = true)]
    pub settings: Vec<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub db: DbArgs,
}

/// Health-probe thresholds on the command line (override the plan's `[throttle]`).
#[derive(Debug, Clone, Default, Args)]
pub struct ThrottleArgs {
    /// A replica whose lag to watch (repeatable): postgres:// URL or key=value string.
    #[arg(long = "replica-url", value_name = "URL")]
    pub replica_urls: Vec<String>,
    /// Hold while replication lag is above this (e.g. 5s).
    #[arg(long)]
    pub max_replication_lag: Option<String>,
    /// Hold while more sessions than this wait on locks of the table.
    #[arg(long)]
    pub max_lock_waiters: Option<u64>,
    /// Hold while a transaction has been open longer than this (e.g. 1h).
    #[arg(long)]
    pub max_transaction_age: Option<String>,
    /// Hold while autovacuum works on the table.
    #[arg(long)]
    pub pause_during_autovacuum: bool,
    /// Hold while this query returns true.
    #[arg(long, value_name = "SQL")]
    pub throttle_query: Option<String>,
    /// How often the probes run (e.g. 1s).
    #[arg(long)]
    pub check_interval: Option<String>,
}

impl ThrottleArgs {
    /// The flags parsed into typed overrides: a bad value is refused here, before anything
    /// touches the database.
    pub fn parse(&self) -> Result<backfill::runner::ThrottleOverrides> {
        let dur = |flag: &str, v: &Option<String>| {
            v.as_deref()
                .map(|v| {
                    backfill::plan::parse_duration(v)
                        .map_err(|e| Error::Usage(format!("--{flag} {v:?}: {e}")))
                })
                .transpose()
        };
        Ok(backfill::runner::ThrottleOverrides {
            replicas: self
                .replica_urls
                .iter()
                .map(|u| ConnectionSpec::parse(u))
                .collect::<Result<_>>()?,
            max_replication_lag: dur("max-replication-lag", &self.max_replication_lag)?,
            max_lock_waiters: self.max_lock_waiters,
            max_transaction_age: dur("max-transaction-age", &self.max_transaction_age)?,
            pause_during_autovacuum: self.pause_during_autovacuum,
            query: self.throttle_query.clone(),
            check_interval: dur("check-interval", &self.check_interval)?,
        })
    }
}

/// `backfill abort`.
#[derive(Debug, Args)]
pub struct AbortArgs {
    /// The plan: its file or its name.
    pub plan: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub db: DbArgs,
}

/// `--progress`: how progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressArg {
    /// Bars on a terminal, log lines otherwise.
    Auto,
    /// Live bars on stderr.
    Bars,
    /// A log line every few seconds on stderr.
    Plain,
    /// One JSON object per event on stdout.
    Json,
    /// Nothing but errors.
    Quiet,
}

impl From<ProgressArg> for backfill::progress::Mode {
    fn from(a: ProgressArg) -> Self {
        use backfill::progress::Mode;
        match a {
            ProgressArg::Auto => Mode::Auto,
            ProgressArg::Bars => Mode::Bars,
            ProgressArg::Plain => Mode::Plain,
            ProgressArg::Json => Mode::Json,
            ProgressArg::Quiet => Mode::Quiet,
        }
    }
}

/// `--format` of `export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    /// psql scripts, one per phase.
    Sql,
    /// Alembic revision files.
    Alembic,
}

impl From<FormatArg> for backfill::export::Format {
    fn from(a: FormatArg) -> Self {
        match a {
            FormatArg::Sql => backfill::export::Format::Sql,
            FormatArg::Alembic => backfill::export::Format::Alembic,
        }
    }
}

/// The phases `run` can run on their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RunPhase {
    /// Move the data (after expand and dual-write).
    Backfill,
    /// Only the contract (verify, validate, switch, drop the old schema), explicitly: the way
    /// to contract a plan without a release gate.
    Contract,
}

/// `backfill run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Plan files or folders of plans (run in file-name order).
    #[arg(required = true)]
    pub plans: Vec<PathBuf>,
    /// The application release being deployed: phases gated at or before it are due.
    /// Without it, only phases without a release gate run.
    #[arg(long, conflicts_with = "phase")]
    pub release: Option<String>,
    /// Run only this phase: `backfill` (its expand and dual-write applied by other means) or
    /// `contract` (asked for explicitly; the only way for a plan without a contract release).
    #[arg(long, value_enum)]
    pub phase: Option<RunPhase>,
    /// With `--phase backfill`: after the backfill (or when it finished long ago), walk the
    /// whole table again and bring every row still out of sync in sync, reporting their keys.
    #[arg(long)]
    pub recheck: bool,
    /// Run contract in the release in which the backfill finished (only that gate is lifted).
    #[arg(long)]
    pub force_contract: bool,
    /// Workers (overrides the plan's `workers`).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(backfill::plan::defaults::MAX_WORKERS)))]
    pub workers: Option<u32>,
    /// First batch size (overrides the plan's `batch_size`).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: Option<u32>,
    /// Rate limit in rows per second, 0 for none (overrides the plan's).
    #[arg(long)]
    pub max_rows_per_second: Option<u64>,
    /// Go on with a plan whose file changed since it started.
    #[arg(long)]
    pub force: bool,
    /// How to show progress (`json`: one object per event on stdout).
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressArg,
    /// Same as `--progress json`.
    #[arg(long)]
    pub json: bool,
    /// Serve Prometheus metrics on this address while the run lasts (`127.0.0.1:9187`):
    /// rows, rate, estimate, segments, chunk latency, batch size, retries by SQLSTATE,
    /// throttle, workers, DDL lock waits, phase.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub throttle: ThrottleArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub db: DbArgs,
}

/// Where the database is.
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// PostgreSQL connection: a postgres:// URL or a libpq key=value string.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// The schema for backfill's own tables.
    #[arg(long, default_value = "backfill")]
    pub state_schema: String,
}

/// `backfill validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Plan files or folders of plans.
    #[arg(required = true)]
    pub plans: Vec<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub db: DbArgs,
}

/// `backfill plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Plan files or folders of plans.
    #[arg(required = true)]
    pub plans: Vec<PathBuf>,
    /// Print the exact SQL, as a script with each statement's lock in a comment.
    #[arg(long, conflicts_with = "json")]
    pub sql: bool,
    /// Print the schedule as JSON.
    #[arg(long)]
    pub json: bool,
    /// Mark which phases are due at this application release.
    #[arg(long)]
    pub release: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub db: DbArgs,
}

/// `backfill man`.
fn man_cmd(out: Option<&std::path::Path>) -> Result<()> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let Some(dir) = out else {
        let stdout = std::path::PathBuf::from("standard output");
        return match clap_mangen::Man::new(cmd).render(&mut std::io::stdout()) {
            // `backfill man | head`: the reader had enough.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => other.map_err(|source| Error::Write {
                path: stdout,
                source,
            }),
        };
    };
    let written = |source| Error::Write {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(written)?;
    clap_mangen::generate_to(cmd, dir).map_err(written)?;
    println!("wrote the man pages into {}", dir.display());
    Ok(())
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Validate(args) => validate_cmd(args).await,
        Command::Plan(args) => plan_cmd(args).await,
        Command::Run(args) => run::run_cmd(args).await,
        Command::Status(args) => control::status_cmd(args).await,
        Command::Verify(args) => control::verify_cmd(args).await,
        Command::Pause(args) => control::pause_cmd(args, true).await,
        Command::Resume(args) => control::pause_cmd(args, false).await,
        Command::Abort(args) => control::abort_cmd(args).await,
        Command::Set(args) => control::set_cmd(args).await,
        Command::Export(args) => control::export_cmd(args).await,
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "backfill", &mut std::io::stdout());
            Ok(())
        }
        Command::Man { out } => man_cmd(out.as_deref()),
        Command::New(args) => {
            let fields = args
                .fields
                .iter()
                .map(|f| {
                    f.split_once('=')
                        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                        .ok_or_else(|| Error::Usage(format!("`{f}`: write fields as field=value")))
                })
                .collect::<Result<Vec<_>>>()?;
            let path = backfill::scaffold::write(&backfill::scaffold::NewPlan {
                kind: args.kind,
                table: args.table,
                dir: args.dir,
                name: args.name,
                fields,
            })?;
            println!("wrote {}", path.display());
            Ok(())
        }
        Command::Schema => {
            let schema = backfill::plan::json_schema();
            println!(
                "{}",
                serde_json::to_string_pretty(&schema).unwrap_or_default()
            );
            Ok(())
        }
        Command::Demo(args) => {
            backfill::demo::run(&backfill::demo::DemoOptions {
                rows: args.rows,
                keep: args.keep,
            })
            .await
        }
    }
}

pub(crate) fn connection(db: &DbArgs) -> Result<Option<ConnectionSpec>> {
    ConnectionSpec::resolve(db.database_url.as_deref())
}

fn options(db: &DbArgs) -> PlannerOptions {
    PlannerOptions {
        state_schema: db.state_schema.clone(),
    }
}

async fn validate_cmd(args: ValidateArgs) -> Result<()> {
    let plans = load_all(&args.plans)?;
    let mut out = std::io::stdout().lock();
    match connection(&args.db)? {
        None => {
            for p in &plans {
                let _ = writeln!(
                    out,
                    "ok  {}: plan `{}` on {}, {}; format checked (give --database-url to check it against the database)",
                    p.file.display(),
                    p.name,
                    p.table,
                    backfill::progress::counted(p.operations.len(), "operation", "operations")
                );
            }
        }
        Some(spec) => {
            let mut client = spec.connect().await?;
            let schema = backfill::sql::Ident::new(&args.db.state_schema);
            let prepared = prepare_all(
                &mut client,
                &schema,
                &plans,
                false,
                &options(&args.db),
                false,
            )
            .await?;
            for (plan, p) in plans.iter().zip(&prepared) {
                for w in &p.warnings {
                    eprintln!("warning: {w}");
                }
                let state = match &p.recorded {
                    Some(r) => format!(
                        "in flight ({}), checked against the catalog recorded when it started",
                        phases_done(r)
                    ),
                    None => "valid against the database".to_string(),
                };
                let _ = writeln!(
                    out,
                    "ok  {}: plan `{}` on {} (~{} rows), {}; {state}",
                    plan.file.display(),
                    plan.name,
                    plan.table,
                    p.catalog.row_estimate,
                    backfill::progress::counted(
                        plan.operations.len() as u64,
                        "operation",
                        "operations"
                    ),
                );
            }
        }
    }
    Ok(())
}

/// `expand, dual-write done`, or `nothing done yet`.
fn phases_done(r: &backfill::runner::Recorded) -> String {
    let done: Vec<String> = r.finished.keys().map(|p| p.to_string()).collect();
    if done.is_empty() {
        "nothing done yet".to_string()
    } else {
        format!("{} done", done.join(", "))
    }
}

async fn plan_cmd(args: PlanArgs) -> Result<()> {
    let release = args
        .release
        .as_deref()
        .map(|r| r.parse::<Release>())
        .transpose()
        .map_err(|e| Error::Usage(e.to_string()))?;
    let plans = load_all(&args.plans)?;
    let spec = connection(&args.db)?.ok_or_else(|| {
        Error::Usage(
            "backfill plan reads the table's catalog to write the exact SQL: give --database-url or set DATABASE_URL (backfill validate checks a plan without a database)".to_string(),
        )
    })?;
    let mut client = spec.connect().await?;
    let schema = backfill::sql::Ident::new(&args.db.state_schema);
    let prepared = prepare_all(
        &mut client,
        &schema,
        &plans,
        false,
        &options(&args.db),
        false,
    )
    .await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let all: Vec<serde_json::Value> = plans
            .iter()
            .zip(&prepared)
            .map(|(plan, p)| schedule_json(plan, p, release.as_ref()))
            .collect();
        let text = serde_json::to_string_pretty(&all).unwrap_or_default();
        let _ = writeln!(out, "{text}");
        return Ok(());
    }
    for (plan, p) in plans.iter().zip(&prepared) {
        let text = if args.sql {
            render_sql(plan, &p.schedule)
        } else {
            render_human(plan, p, release.as_ref())
        };
        let _ = write!(out, "{text}");
    }
    Ok(())
}

/// The release a phase finished at, when the plan's record says it did.
fn finished_at(p: &Prepared, phase: backfill::planner::Phase) -> Option<String> {
    p.recorded
        .as_ref()
        .and_then(|r| r.finished.get(&phase))
        .map(|release| release.clone().unwrap_or_else(|| "no release".to_string()))
}

fn due_note(due: Option<&Release>, release: Option<&Release>) -> String {
    match (due, release) {
        (None, _) => "no release gate".to_string(),
        (Some(d), None) => format!("due from release {d}"),
        (Some(d), Some(r)) if r >= d => format!("due at {r} (from {d})"),
        (Some(d), Some(r)) => format!("waits for release {d} (now {r})"),
    }
}

fn schedule_json(plan: &Plan, p: &Prepared, release: Option<&Release>) -> serde_json::Value {
    let mut value = serde_json::to_value(&p.schedule).unwrap_or_default();
    if let Some(phases) = value.get_mut("phases").and_then(|v| v.as_array_mut()) {
        for (v, phase) in phases.iter_mut().zip(&p.schedule.phases) {
            let due = backfill::runner::is_due(phase.due.as_ref(), release);
            v["due_now"] = serde_json::Value::Bool(due);
            let done = finished_at(p, phase.phase);
            v["done"] = serde_json::Value::Bool(done.is_some());
            v["done_at_release"] = serde_json::json!(done);
        }
    }
    value["file"] = serde_json::Value::String(plan.file.display().to_string());
    value["in_flight"] = serde_json::Value::Bool(p.recorded.is_some());
    value["warnings"] = serde_json::json!(p.warnings);
    value
}

fn render_human(plan: &Plan, p: &Prepared, release: Option<&Release>) -> String {
    let s = &p.schedule;
    let mut out = format!(
        "plan {} on {} (~{}) from {}\n",
        s.plan,
        s.table,
        backfill::progress::counted(s.row_estimate.max(0) as u64, "row", "rows"),
        plan.file.display()
    );
    if let Some(r) = &p.recorded {
        out.push_str(&format!(
            "  in flight: {}; planned from the catalog recorded when it started\n",
            phases_done(r)
        ));
    }
    for (i, op) in plan.operations.iter().enumerate() {
        out.push_str(&format!("  operations[{i}]: {}\n", op.op().summary()));
    }
    for phase in &s.phases {
        let note = match finished_at(p, phase.phase) {
            Some(at) => format!("done at {at}"),
            None => due_note(phase.due.as_ref(), release),
        };
        out.push_str(&format!("\n{} ({note})\n", phase.phase));
        if phase.steps.is_empty() {
            out.push_str("  nothing to do\n");
        }
        for (i, step) in phase.steps.iter().enumerate() {
            out.push_str(&format!("  {}. {}\n", i + 1, step.description));
            for st in &step.statements {
                let first = st.sql.lines().next().unwrap_or_default();
                let more = if st.sql.lines().count() > 1 {
                    " ..."
                } else {
                    ""
                };
                out.push_str(&format!("     [{}] {first}{more}\n", st.lock));
            }
        }
    }
    out.push_str("\nrollback (until contract starts)\n");
    for (i, step) in s.rollback.iter().enumerate() {
        out.push_str(&format!("  {}. {}\n", i + 1, step.description));
    }
    for w in &p.warnings {
        out.push_str(&format!("\nwarning: {w}\n"));
    }
    out.push_str("\n(--sql prints every statement in full)\n");
    out
}

/// The schedule as an SQL script: each phase and step in a comment, each statement with its
/// lock. Statements that cannot run in a transaction are marked.
pub fn render_sql(plan: &Plan, s: &Schedule) -> String {
    let mut out = format!(
        "{}\n-- every statement runs under SET lock_timeout = {}ms\n",
        backfill::sql::comment(&format!(
            "plan {} on {} ({})",
            s.plan,
            s.table,
            plan.file.display()
        )),
        plan.backfill.lock_timeout.as_millis()
    );
    let section = |title: String, steps: &[backfill::planner::Step], out: &mut String| {
        out.push_str(&format!("\n-- ===== {title} =====\n"));
        for step in steps {
            let how = match step.mode {
                StepMode::Transaction => "one transaction",
                StepMode::ConcurrentIndex { .. } | StepMode::NoTransaction => {
                    "outside a transaction"
                }
                StepMode::Backfill => {
                    "run by the engine in keyset chunks; shown here as one statement"
                }
            };
            out.push_str(&format!(
                "{}\n",
                backfill::sql::comment(&format!("step: {} ({how})", step.description))
            ));
            for st in &step.statements {
                out.push_str(&format!("-- lock: {}\n{};\n", st.lock, st.sql));
            }
        }
    };
    for phase in &s.phases {
        let due = phase
            .due
            .as_ref()
            .map(|d| format!(" (due from release {d})"))
            .unwrap_or_default();
        section(format!("{}{due}", phase.phase), &phase.steps, &mut out);
    }
    section(
        "rollback (instead of contract)".to_string(),
        &s.rollback,
        &mut out,
    );
    out
}
