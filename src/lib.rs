//! `backfill`: zero-downtime schema changes and throttled, resumable backfills for live
//! PostgreSQL databases.
//!
//! A map of the modules, from the bottom up. The one rule between layers: nothing imports
//! upward, and nothing here imports the command layer (`src/cli/`, owned by the binary: clap,
//! the commands, what they print), so the compiler keeps the rule.
//!
//! - [`error`], [`diagnostics`], [`sql`], [`lexer`], [`deparse`], [`rewrite`], [`version`],
//!   [`shutdown`], [`metrics`]: error types; field paths and problems; identifier quoting, literals,
//!   comments, dollar quotes and object names; SQL text in tokens; PostgreSQL's printed
//!   definitions moved to another column; columns renamed in plan expressions; release order;
//!   the stop and pause signals, passed down as values; a run's live figures and their
//!   Prometheus endpoint;
//! - [`plan`]: the TOML plan format, parsed and checked without a database, errors located at
//!   file, line and field;
//! - [`ops`]: the operation catalog, one file per kind behind one trait; each kind *describes*
//!   its expand, dual-write, backfill, contract and rollback as statements with their locks;
//! - [`planner`]: plan + catalog → [`planner::Schedule`], pure, one builder per phase;
//! - [`db`]: connecting (URL, `PG*`, pgpass, TLS) and catalog introspection;
//! - [`state`]: the state schema, its migrations and the only SQL written against it, behind
//!   typed functions (plans, phases, steps, runners, segments, settings, events, status);
//! - [`validate`] and [`privileges`]: the plan against the live catalog (expressions compiled
//!   in a transaction that is rolled back) and the role's rights, before anything changes;
//! - [`executor`]: runs a schedule's steps, one statement per call, under `lock_timeout`,
//!   retrying lock timeouts, stopping at once on [`shutdown::Stop`];
//! - [`engine`]: the backfill: segments, workers, keyset chunks committed with their
//!   checkpoints, throttle, adaptive batches; it emits events that [`progress`] renders;
//! - [`verify`]: rows out of sync, read-only, in keyset pages, and the recheck that brings
//!   them in sync;
//! - [`runner`]: `run` across releases: every plan prepared and checked first, then each due
//!   phase under the plan's lock, recorded in [`state`];
//! - [`control`]: what `status`, `verify`, `pause`, `set`, `export` and `abort` do;
//! - [`export`]: the schedule as psql scripts or Alembic revisions; [`scaffold`]: `new`, the
//!   next numbered plan with every field of its kind written out from the plan schema;
//! - [`demo`], [`ephemeral`], [`workload`]: the demo on a throwaway cluster with a simulated
//!   application (also used by the tests and the benchmark).

pub mod control;
pub mod db;
pub mod demo;
pub mod deparse;
pub mod diagnostics;
pub mod engine;
pub mod ephemeral;
pub mod error;
pub mod executor;
pub mod export;
pub mod lexer;
pub mod metrics;
pub mod ops;
pub mod plan;
pub mod planner;
pub mod privileges;
pub mod progress;
pub mod rewrite;
pub mod runner;
pub mod scaffold;
pub mod shutdown;
pub mod sql;
pub mod state;
pub mod validate;
pub mod verify;
pub mod version;
pub mod workload;

pub use error::{Error, Result};
