//! Error types of the library. Every error names the objects involved (file and line, or table
//! and column) and says what to do; `main` maps them to exit codes with [`Error::exit_code`].

use std::fmt;
use std::path::PathBuf;

/// Exit code: everything asked for was done.
pub const EXIT_OK: u8 = 0;
/// Exit code: a step failed (database error, data that cannot be converted, ...).
pub const EXIT_FAILED: u8 = 1;
/// Exit code: bad input (plan file, command line, plan against the live catalog); nothing was
/// changed in the database.
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit code: interrupted by Ctrl-C, with checkpoints saved.
pub const EXIT_INTERRUPTED: u8 = 130;

/// Where in a plan file something is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The plan file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// One problem in a plan: where it is, which field, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    /// File, line and column.
    pub location: Location,
    /// The field as a path (`operations[0].into[1].up`), empty for the file as a whole.
    pub field: String,
    /// What is wrong and, where it helps, what to do.
    pub message: String,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.location, self.message)
        } else {
            write!(f, "{}: {}: {}", self.location, self.field, self.message)
        }
    }
}

/// All problems found in one or more plans (validation reports every problem, not the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanErrors(pub Vec<PlanError>);

impl fmt::Display for PlanErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PlanErrors {}

/// Everything that can go wrong in the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A plan is invalid (syntax, fields, or against the live catalog).
    #[error("{0}")]
    Plan(#[from] PlanErrors),

    /// A plan file or folder could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },

    /// A file or folder asked for (`--out`) could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },

    /// The command line or configuration is wrong in a way clap cannot see.
    #[error("{0}")]
    Usage(String),

    /// Something went wrong that is not the user's input: a worker that crashed, a pool that
    /// could not be built, a state record that cannot be read, processes that would not stop.
    #[error("{0}")]
    Failed(String),

    /// Something this machine lacks (PostgreSQL binaries for the demo, a free port, ...).
    #[error("{0}")]
    Environment(String),

    /// Connecting to the database failed. The message never contains the password.
    #[error("cannot connect to the database at {0}")]
    Connect(String),

    /// A statement failed.
    #[error("{context}: {message}")]
    Database {
        /// What was being done (`expand step 1 of plan "split_full_name"`).
        context: String,
        /// PostgreSQL's message with its SQLSTATE and detail.
        message: String,
        /// The SQLSTATE, when the server sent one.
        code: Option<String>,
    },

    /// A DDL statement could not get its lock within `lock_timeout` after every retry.
    #[error("{context}: could not get the lock on {table} after {attempts} attempts of {lock_timeout_ms} ms each; {}", if holders.is_empty() { "a long transaction is holding it: find it in pg_stat_activity and retry".to_string() } else { format!("held by {holders}: end that transaction (or wait for it) and retry") })]
    LockTimeout {
        /// What was being done.
        context: String,
        /// The table.
        table: String,
        /// How many attempts were made.
        attempts: u32,
        /// The lock timeout of each attempt.
        lock_timeout_ms: u64,
        /// The sessions seen holding locks on the table (see [`crate::executor::blockers`]).
        holders: String,
    },

    /// The backfill stopped on a row whose new value cannot be computed or written.
    #[error("backfill of {table} stopped at the row with {key}: {message}. Rows before it are done and checkpointed; fix that row or the plan's expression and run the same command again")]
    Data {
        /// The table.
        table: String,
        /// The offending row's key, as `id = 42`.
        key: String,
        /// PostgreSQL's message with its SQLSTATE.
        message: String,
        /// The SQLSTATE.
        code: Option<String>,
    },

    /// The plan file changed since its backfill started.
    #[error("plan `{plan}` ({file}) changed since its backfill started (checksum {recorded}, now {now}); the rows done so far were computed by the old plan. Revert the file, or rerun with --force to continue from the checkpoints with the new plan")]
    PlanChanged {
        /// The plan.
        plan: String,
        /// Its file.
        file: String,
        /// The checksum recorded when the backfill started.
        recorded: String,
        /// The file's checksum now.
        now: String,
    },

    /// A plan file changed after its plan started running.
    #[error("plan `{plan}` ({file}) was edited after it started running; what changed:\n{diff}\nThe phases done so far followed the recorded version: revert the file, abort the plan and start again, or rerun with --force to go on with the new text")]
    PlanEdited {
        /// The plan.
        plan: String,
        /// Its file.
        file: String,
        /// The changed lines: `- old` and `+ new`, with line numbers.
        diff: String,
    },

    /// `verify` (or the contract gate) found rows the backfill has not brought in sync.
    #[error("plan `{plan}`: {count} rows of {table} out of sync{}", if keys.is_empty() { String::new() } else { format!(", for example the rows with {}", keys.join("; ")) })]
    OutOfSync {
        /// The plan.
        plan: String,
        /// The table.
        table: String,
        /// Rows out of sync.
        count: i64,
        /// Keys of the first of them.
        keys: Vec<String>,
    },

    /// The connected role lacks rights a plan needs; found before anything changed.
    #[error("role \"{role}\" may not run plan `{plan}`; nothing was changed:\n{}", missing.iter().map(|m| format!("  - {m}")).collect::<Vec<_>>().join("\n"))]
    Privileges {
        /// The plan.
        plan: String,
        /// The connected role.
        role: String,
        /// Each missing right, with the GRANT that gives it.
        missing: Vec<String>,
    },

    /// Stopped from another terminal (`backfill abort`).
    #[error("{0}")]
    Stopped(String),

    /// The connection to the server was lost more often than a run rides out.
    #[error("plan `{plan}`: lost the connection to the database and gave up (losses in a row without a phase finishing: {times}); the last: {last}. Every finished step and chunk is recorded. Resume with: {resume}")]
    ConnectionLost {
        /// The plan.
        plan: String,
        /// How many times.
        times: u32,
        /// The last error.
        last: String,
        /// The command that resumes.
        resume: String,
    },

    /// Stopped by Ctrl-C (or SIGTERM) after the chunks in flight committed.
    #[error(
        "interrupted: {progress}; every finished chunk is checkpointed. Resume with: {resume}"
    )]
    Interrupted {
        /// Rows done of the estimate.
        progress: String,
        /// The command that resumes.
        resume: String,
    },
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Plan(_)
            | Error::Usage(_)
            | Error::Io { .. }
            | Error::Write { .. }
            | Error::PlanChanged { .. }
            | Error::Privileges { .. }
            | Error::PlanEdited { .. } => EXIT_BAD_INPUT,
            Error::Interrupted { .. } => EXIT_INTERRUPTED,
            Error::Connect(_)
            | Error::ConnectionLost { .. }
            | Error::Data { .. }
            | Error::OutOfSync { .. }
            | Error::Stopped(_)
            | Error::Database { .. }
            | Error::LockTimeout { .. }
            | Error::Failed(_)
            | Error::Environment(_) => EXIT_FAILED,
        }
    }

    /// Wraps a driver error with what was being done, keeping PostgreSQL's SQLSTATE, message,
    /// detail and hint.
    pub fn db(context: impl Into<String>, err: &tokio_postgres::Error) -> Error {
        let context = context.into();
        match err.as_db_error() {
            Some(db) => {
                let mut message = format!("{} ({})", db.message(), db.code().code());
                if let Some(detail) = db.detail() {
                    message.push_str(&format!("; detail: {detail}"));
                }
                if let Some(hint) = db.hint() {
                    message.push_str(&format!("; hint: {hint}"));
                }
                Error::Database {
                    context,
                    message,
                    code: Some(db.code().code().to_string()),
                }
            }
            None => Error::Database {
                context,
                message: err.to_string(),
                code: transport_lost(err).then(|| CONNECTION_FAILURE.to_string()),
            },
        }
    }

    /// Whether the connection to the server was lost (a cut, a reset, a restart, a
    /// failover), so that connecting again and resuming from what is recorded is the cure:
    /// SQLSTATE class 08, `57P01`-`57P03` (shut down, crashed, starting up), or
    /// [`CONNECTION_FAILURE`] given to a broken socket.
    pub fn connection_lost(&self) -> bool {
        self.sqlstate().is_some_and(connection_lost_code)
    }

    /// The SQLSTATE of a database error, if any.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Error::Database { code, .. } | Error::Data { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The SQLSTATE given to an error without one that a broken connection caused
/// (`connection_failure`, as drivers of other languages report a lost socket).
pub const CONNECTION_FAILURE: &str = "08006";

/// Whether `code` says the connection was lost rather than the statement refused.
pub fn connection_lost_code(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
}

/// A driver error without SQLSTATE that a broken connection caused: closed, or an I/O error.
fn transport_lost(err: &tokio_postgres::Error) -> bool {
    err.is_closed()
        || std::error::Error::source(err)
            .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some())
}
