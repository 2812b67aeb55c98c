//! The example plans in `plans/` (one per operation kind) are valid against a live database
//! with the tables they describe, and `backfill plan` shows their schedule.

use std::path::Path;

use backfill::ops::KINDS;
use backfill::plan::load_all;

use crate::support::{backfill_ok, TestDb};

/// The schema the examples are written for.
pub const EXAMPLE_SCHEMA: &str = include_str!("../plans/schema.sql");

#[tokio::test]
async fn every_example_plan_is_valid_against_the_example_schema() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans");
    let plans = load_all(std::slice::from_ref(&dir)).expect("examples parse");
    for kind in KINDS {
        assert!(
            plans
                .iter()
                .any(|p| p.operations.iter().any(|o| o.op().kind() == *kind)),
            "no example plan uses kind {kind}"
        );
    }
    let db = TestDb::new("examples").await;
    let client = db.connect().await;
    client.batch_execute(EXAMPLE_SCHEMA).await.expect("schema");
    let stdout = backfill_ok(&["validate", &dir.to_string_lossy()], Some(&db.url));
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        plans.len(),
        "{stdout}"
    );
}
