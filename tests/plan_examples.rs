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

/// Plans broken in their shape (not TOML, an unknown kind, a missing or misspelled field, a
/// value of the wrong type): an editor with the schema flags them as they are typed.
const SHAPE_BROKEN: &[&str] = &[
    "01_toml_syntax_error.toml",
    "02_unknown_kind.toml",
    "03_split_without_down.toml",
    "04_misspelled_field.toml",
    "05_workers_not_a_number.toml",
    "30_unknown_top_level_field.toml",
];

/// `backfill schema` checked by a JSON Schema validator (Python's `jsonschema`, draft
/// 2020-12): every example plan is valid, every plan of the suite broken in its shape is not.
#[test]
fn the_plan_schema_accepts_every_example_and_refuses_broken_shapes() {
    let bin = crate::export::alembic();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::temp_dir().join(format!("backfill-schema-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("folder");
    let schema = dir.join("plan.schema.json");
    std::fs::write(&schema, backfill_ok(&["schema"], None)).expect("schema");
    let script = r#"
import json, sys, tomllib, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
v = jsonschema.Draft202012Validator(schema)
for path in sys.argv[2:]:
    try:
        doc = tomllib.load(open(path, 'rb'))
    except Exception:
        print(path, 'invalid: not TOML')
        continue
    errors = list(v.iter_errors(doc))
    print(path, 'valid' if not errors else 'invalid: ' + errors[0].message[:120])
"#;
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(root.join("plans"))
        .expect("plans")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let examples = files.len();
    files.extend(
        SHAPE_BROKEN
            .iter()
            .map(|f| root.join("tests/broken").join(f)),
    );
    let out = std::process::Command::new(bin.join("python"))
        .arg("-c")
        .arg(script)
        .arg(&schema)
        .args(&files)
        .output()
        .expect("run python");
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), files.len(), "{text}");
    for (i, line) in lines.iter().enumerate() {
        if i < examples {
            assert!(
                line.ends_with(" valid"),
                "an example plan is refused: {line}"
            );
        } else {
            assert!(line.contains(" invalid: "), "a broken plan passes: {line}");
        }
    }
}
