//! The integration suite: one binary (so it builds once), one ephemeral PostgreSQL for all of
//! it, one database per test.

mod support;

mod catalog_ops;
mod cli;
mod connect;
mod correctness;
mod engine_faults;
mod engine_keys;
mod ephemeral_cleanup;
mod export;
mod faults;
mod golden;
mod hostile_names;
mod metrics;
mod plan_errors;
mod plan_examples;
mod plan_ops;
mod progress;
mod runner;
mod storm;
mod throttle;
mod transition;
mod trust;
