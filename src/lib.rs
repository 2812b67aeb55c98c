//! `backfill`: zero-downtime schema changes and throttled, resumable backfills for live
//! PostgreSQL databases.
//!
//! A map of the modules, in the order data flows through them:
//! - [`diagnostics`]: field paths and problems, below both `plan` and `ops`;
//! - [`plan`]: the TOML plan format, parsed and checked without a database, errors located at
//!   file, line and field;
//! - [`ops`]: the operation catalog, one file per kind behind one trait; each kind *describes*
//!   its expand, dual-write, backfill, contract and rollback;
//! - [`planner`]: plan + catalog → [`planner::Schedule`], pure;
//! - [`db`]: connecting and catalog introspection;
//! - [`validate`]: the plan against the live catalog, expressions compiled in a transaction
//!   that is rolled back;
//! - [`privileges`]: the rights a plan needs, checked before anything changes;
//! - [`executor`]: runs a schedule's steps under `lock_timeout`, retrying lock timeouts;
//! - [`engine`]: the backfill: segments, workers, keyset chunks with their checkpoints in
//!   [`state`], throttle and adaptive batches; [`progress`] shows its events;
//! - [`control`]: what `status`, `verify`, `pause`, `set`, `export` and `abort` do, for the
//!   binary's command layer (which owns clap and the terminal; nothing here imports it);
//! - [`demo`] and [`ephemeral`]: the demo on a throwaway cluster;
//! - [`shutdown`]: the stop and pause signals, passed down as values;
//! - [`sql`], [`version`], [`error`]: quoting and names, release order, error types.

pub mod control;
pub mod db;
pub mod demo;
pub mod diagnostics;
pub mod engine;
pub mod ephemeral;
pub mod error;
pub mod executor;
pub mod export;
pub mod ops;
pub mod plan;
pub mod planner;
pub mod privileges;
pub mod progress;
pub mod runner;
pub mod shutdown;
pub mod sql;
pub mod state;
pub mod validate;
pub mod verify;
pub mod version;
pub mod workload;

pub use error::{Error, Result};
