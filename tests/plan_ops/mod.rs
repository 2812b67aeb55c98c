//! Every operation kind, applied to a real table with rows: expand, dual-write, writes by the
//! old release (old columns) and by the new one (new columns), a one-statement backfill,
//! contract; then the rows are checked one by one. The rollback path of each kind must leave
//! schema and data exactly as they were.

use std::path::Path;

use backfill::executor::{backfill_in_one_statement, count_out_of_sync, run_steps, ExecOptions};
use backfill::plan::Plan;
use backfill::planner::{Phase, PlannerOptions, Schedule};
use backfill::validate::validate;
use tokio_postgres::Client;

use crate::support::{backfill_ok, rows, snapshot, user_snapshot, TestDb};

/// One operation kind's story.
struct Scenario {
    name: &'static str,
    /// Creates and fills the table.
    setup: &'static str,
    /// The plan.
    plan: &'static str,
    /// The old release writes (old columns), after dual-write and before the backfill.
    old_writes: &'static str,
    /// The new release writes (new columns), after the backfill.
    new_writes: &'static str,
    /// Before contract: a query over the transition schema and its expected rows (the old
    /// columns must reflect what the new release wrote).
    transition: (&'static str, &'static [&'static str]),
    /// After contract: a query over the final schema and its expected rows.
    result: (&'static str, &'static [&'static str]),
}

fn exec() -> ExecOptions {
    ExecOptions {
        lock_timeout: std::time::Duration::from_secs(2),
        retries: 3,
        meter: backfill::metrics::Meter::none(),
    }
}

async fn apply(client: &mut Client, schedule: &Schedule, phase: Phase) {
    run_steps(
        client,
        schedule,
        schedule.phase(phase),
        &phase.to_string(),
        &exec(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

async fn apply_rollback(client: &mut Client, schedule: &Schedule) {
    run_steps(client, schedule, &schedule.rollback, "rollback", &exec())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

async fn plan_for(client: &mut Client, text: &str) -> Schedule {
    let plan = Plan::parse(Path::new("plans/test.toml"), text).unwrap_or_else(|e| panic!("{e}"));
    validate(client, &plan, &PlannerOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .schedule
}

async fn out_of_sync(client: &Client, schedule: &Schedule) -> i64 {
    count_out_of_sync(client, schedule)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn contract_path(s: &Scenario) {
    let db = TestDb::new(s.name).await;
    let mut client = db.connect().await;
    client.batch_execute(s.setup).await.expect("setup");
    let schedule = plan_for(&mut client, s.plan).await;

    apply(&mut client, &schedule, Phase::Expand).await;
    apply(&mut client, &schedule, Phase::DualWrite).await;
    client
        .batch_execute(s.old_writes)
        .await
        .unwrap_or_else(|e| panic!("{}: old release writes: {e}", s.name));
    if let Some(b) = &schedule.backfill {
        backfill_in_one_statement(&mut client, b)
            .await
            .unwrap_or_else(|e| panic!("{}: backfill: {e}", s.name));
        assert_eq!(
            out_of_sync(&client, &schedule).await,
            0,
            "{}: rows out of sync after the backfill",
            s.name
        );
        // Idempotent: a second run changes nothing.
        let again = backfill_in_one_statement(&mut client, b)
            .await
            .expect("rerun");
        assert_eq!(again, 0, "{}: a rerun of the backfill rewrote rows", s.name);
    }
    client
        .batch_execute(s.new_writes)
        .await
        .unwrap_or_else(|e| panic!("{}: new release writes: {e}", s.name));
    // The old release keeps running next to the new one until contract.
    client
        .batch_execute(s.old_writes)
        .await
        .unwrap_or_else(|e| panic!("{}: old release writes again: {e}", s.name));
    assert_eq!(
        out_of_sync(&client, &schedule).await,
        0,
        "{}: rows out of sync after the writes",
        s.name
    );

    let (sql, expected) = s.transition;
    assert_eq!(
        rows(&client, sql).await,
        expected,
        "{}: transition schema",
        s.name
    );

    apply(&mut client, &schedule, Phase::Contract).await;
    let (sql, expected) = s.result;
    assert_eq!(
        rows(&client, sql).await,
        expected,
        "{}: after contract",
        s.name
    );
}

async fn rollback_path(s: &Scenario) {
    let db = TestDb::new(&format!("{}_rollback", s.name)).await;
    let mut client = db.connect().await;
    client.batch_execute(s.setup).await.expect("setup");
    let before = snapshot(&client, "t", "id").await;
    let schedule = plan_for(&mut client, s.plan).await;
    apply(&mut client, &schedule, Phase::Expand).await;
    apply(&mut client, &schedule, Phase::DualWrite).await;
    if let Some(b) = &schedule.backfill {
        backfill_in_one_statement(&mut client, b)
            .await
            .expect("backfill");
    }
    assert_ne!(
        snapshot(&client, "t", "id").await,
        before,
        "{}: expand changed nothing",
        s.name
    );
    apply_rollback(&mut client, &schedule).await;
    assert_eq!(
        snapshot(&client, "t", "id").await,
        before,
        "{}: rollback",
        s.name
    );
    // Rolling back twice is harmless (every statement is IF EXISTS).
    apply_rollback(&mut client, &schedule).await;
    assert_eq!(
        snapshot(&client, "t", "id").await,
        before,
        "{}: second rollback",
        s.name
    );
}

/// Writes the scenario's plan with releases 1.4.0 (expand) and 1.5.0 (contract) to a file.
fn plan_file(s: &Scenario, suffix: &str) -> (std::path::PathBuf, String) {
    let dir = std::env::temp_dir().join(format!(
        "backfill-runner-{}-{}{suffix}",
        std::process::id(),
        s.name
    ));
    std::fs::create_dir_all(&dir).expect("plan folder");
    let path = dir.join(format!("{}.toml", s.name));
    std::fs::write(
        &path,
        format!(
            "{}\n[release]\nexpand = \"1.4.0\"\ncontract = \"1.5.0\"\n",
            s.plan
        ),
    )
    .expect("write the plan");
    let arg = path.display().to_string();
    (dir, arg)
}

/// The scenario through `backfill run` as a deploy pipeline runs it: release 1.4.0 (expand,
/// dual-write, backfill; contract refused), both application releases writing, `verify`,
/// release 1.5.0 (contract), then the rows and the final schema.
async fn runner_path(s: &Scenario) {
    let db = TestDb::new(&format!("{}_runner", s.name)).await;
    let client = db.connect().await;
    client.batch_execute(s.setup).await.expect("setup");
    let (dir, plan) = plan_file(s, "");
    let out = backfill_ok(
        &["run", &plan, "--release", "1.4.0", "--progress", "quiet"],
        Some(&db.url),
    );
    assert!(
        out.contains("contract waits for release 1.5.0"),
        "{}: contract at 1.4.0: {out}",
        s.name
    );
    for writes in [s.old_writes, s.new_writes, s.old_writes] {
        client
            .batch_execute(writes)
            .await
            .unwrap_or_else(|e| panic!("{}: application writes: {e}", s.name));
    }
    backfill_ok(&["verify", &plan], Some(&db.url));
    let (sql, expected) = s.transition;
    assert_eq!(rows(&client, sql).await, expected, "{}: transition", s.name);
    let out = backfill_ok(&["run", &plan, "--release", "1.5.0"], Some(&db.url));
    assert!(out.contains("contract done"), "{}: {out}", s.name);
    let (sql, expected) = s.result;
    assert_eq!(
        rows(&client, sql).await,
        expected,
        "{}: after contract",
        s.name
    );
    let out = backfill_ok(&["run", &plan, "--release", "1.6.0"], Some(&db.url));
    assert!(out.contains("every phase is done"), "{}: {out}", s.name);
    let _ = std::fs::remove_dir_all(dir);
}

/// `backfill run --release 1.4.0` then `backfill abort`: schema and rows exactly as before.
async fn abort_path(s: &Scenario) {
    let db = TestDb::new(&format!("{}_abort", s.name)).await;
    let client = db.connect().await;
    client.batch_execute(s.setup).await.expect("setup");
    let before = user_snapshot(&client, "t", "id").await;
    let (dir, plan) = plan_file(s, "_abort");
    backfill_ok(
        &["run", &plan, "--release", "1.4.0", "--progress", "quiet"],
        Some(&db.url),
    );
    assert_ne!(
        user_snapshot(&client, "t", "id").await,
        before,
        "{}: nothing ran",
        s.name
    );
    backfill_ok(&["abort", &plan], Some(&db.url));
    assert_eq!(
        user_snapshot(&client, "t", "id").await,
        before,
        "{}: abort",
        s.name
    );
    // A new run starts over.
    backfill_ok(
        &["run", &plan, "--release", "1.4.0", "--progress", "quiet"],
        Some(&db.url),
    );
    backfill_ok(&["verify", &plan], Some(&db.url));
    let _ = std::fs::remove_dir_all(dir);
}

const PEOPLE: &str = "CREATE TABLE t (id bigserial PRIMARY KEY, full_name text, email text, age int, score int NOT NULL DEFAULT 0);
INSERT INTO t (full_name, email, age) VALUES ('Ada Lovelace', ' Ada@Example.com', 36), ('Alan Turing', 'alan@example.com', 41), (NULL, NULL, NULL), ('Grace Hopper', 'GRACE@example.com ', -5);";

macro_rules! scenario_tests {
    ($($contract:ident, $rollback:ident, $runner:ident, $abort:ident => $scenario:expr;)+) => {
        $(
            #[tokio::test]
            async fn $contract() {
                contract_path(&$scenario).await;
            }

            #[tokio::test]
            async fn $rollback() {
                rollback_path(&$scenario).await;
            }

            #[tokio::test]
            async fn $runner() {
                runner_path(&$scenario).await;
            }

            #[tokio::test]
            async fn $abort() {
                abort_path(&$scenario).await;
            }
        )+
    };
}

mod add_check;
mod add_column;
mod add_foreign_key;
mod add_primary_key;
mod add_unique;
mod change_type;
mod compose;
mod create_enum;
mod create_index;
mod create_table;
mod drop_column;
mod drop_index;
mod drop_table;
mod merge_columns;
mod rename_column;
mod rename_table;
mod set_not_null;
mod set_replica_identity;
mod split_column;
mod sql;
mod update_rows;
