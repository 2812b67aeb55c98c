//! The corpus of broken plans in `tests/broken/`: each must be refused by `backfill validate`
//! with exit code 2 and a message naming the file and the line (from the file's header), and
//! the database must be left exactly as it was.

use std::path::{Path, PathBuf};

use crate::support::{backfill_cmd, rows, TestDb};

const FIXTURE: &str = "CREATE TABLE users (id bigserial PRIMARY KEY, full_name text, email text, age int, nickname text NOT NULL DEFAULT '');
CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint, total numeric(12,2));
CREATE TABLE nokey (a int, b text);
INSERT INTO users (full_name, email, age) VALUES ('Ada Lovelace', 'ada@example.com', 36);";

struct Case {
    file: PathBuf,
    line: Option<usize>,
    message: String,
    needs_db: bool,
}

fn header(text: &str, key: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix('#'))
        .find_map(|l| l.trim().strip_prefix(key).map(|v| v.trim().to_string()))
}

fn corpus() -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/broken");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/broken")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file).expect("read");
            let line = header(&text, "expect-line:").expect("expect-line header");
            Case {
                line: line.parse().ok(),
                message: header(&text, "expect-message:").expect("expect-message header"),
                needs_db: header(&text, "needs-db:").expect("needs-db header") == "true",
                file,
            }
        })
        .collect()
}

/// Everything in the database a failed validation must not touch.
async fn fingerprint(client: &tokio_postgres::Client) -> Vec<String> {
    rows(
        client,
        "SELECT format('%s.%s %s', n.nspname, c.relname, c.relkind) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') ORDER BY 1",
    )
    .await
    .into_iter()
    .chain(rows(client, "SELECT format('%s %s', attrelid::regclass, attname) FROM pg_attribute WHERE attrelid IN ('users'::regclass, 'orders'::regclass, 'nokey'::regclass) AND attnum > 0 ORDER BY 1").await)
    .chain(rows(client, "SELECT conname::text FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1").await)
    .chain(rows(client, "SELECT tgname::text FROM pg_trigger ORDER BY 1").await)
    .chain(rows(client, "SELECT proname::text FROM pg_proc WHERE pronamespace <> 'pg_catalog'::regnamespace AND pronamespace <> 'information_schema'::regnamespace ORDER BY 1").await)
    .chain(rows(client, "SELECT u::text FROM users u ORDER BY id").await)
    .collect()
}

#[tokio::test]
async fn every_broken_plan_is_refused_with_its_file_and_line() {
    let cases = corpus();
    assert!(cases.len() >= 20, "the corpus has {} plans", cases.len());
    let db = TestDb::new("broken_plans").await;
    let client = db.connect().await;
    client.batch_execute(FIXTURE).await.expect("fixture");
    let before = fingerprint(&client).await;
    let mut failures = Vec::new();
    for case in &cases {
        let file = case.file.to_string_lossy().to_string();
        // With the database every case must fail; without it, only those that need none.
        let mut runs = vec![Some(db.url.as_str())];
        if !case.needs_db {
            runs.push(None);
        }
        for url in runs {
            let out = backfill_cmd(&["validate", &file], url);
            let stderr = String::from_utf8_lossy(&out.stderr);
            let first = stderr.lines().next().unwrap_or_default();
            let located = match case.line {
                Some(line) => first.contains(&format!("{file}:{line}:")),
                None => first.contains(&file),
            };
            if out.status.code() != Some(2) || !located || !stderr.contains(&case.message) {
                failures.push(format!(
                    "{file} (database: {}): exit {:?}, expected line {:?} and `{}`, got:\n{stderr}",
                    url.is_some(),
                    out.status.code(),
                    case.line,
                    case.message
                ));
            }
        }
        if case.needs_db {
            let out = backfill_cmd(&["validate", &file], None);
            if out.status.code() != Some(0) {
                failures.push(format!(
                    "{file}: needs-db says the format is fine, but without a database: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert_eq!(
        fingerprint(&client).await,
        before,
        "validation changed the database"
    );
}

#[tokio::test]
async fn all_problems_of_a_folder_are_reported_at_once() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/broken");
    let out = backfill_cmd(&["validate", &dir.to_string_lossy()], None);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let offline = corpus().iter().filter(|c| !c.needs_db).count();
    let reported = corpus()
        .iter()
        .filter(|c| stderr.contains(&*c.file.file_name().unwrap_or_default().to_string_lossy()))
        .count();
    assert!(
        reported >= offline,
        "only {reported} of {offline} files reported:\n{stderr}"
    );
}
