//! `backfill export`: the SQL files run with psql and the Alembic revisions run with Alembic
//! itself (installed with pip into a virtualenv in the target folder) against the test server.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use tokio_postgres::Client;

use crate::support::user_snapshot;
use crate::support::{backfill_ok, rows, TestDb};

const PLAN: &str = r#"
table = "users"
[[operations]]
kind = "split_column"
column = "full_name"
into = [
  { name = "first_name", type = "text", up = "split_part(full_name, ' ', 1)" },
  { name = "last_name",  type = "text", up = "split_part(full_name, ' ', 2)" },
]
down = "concat_ws(' ', first_name, last_name)"
[[operations]]
kind = "create_index"
columns = ["email"]
"#;

struct Folder(PathBuf);

impl Folder {
    fn new(name: &str) -> Folder {
        let dir =
            std::env::temp_dir().join(format!("backfill-export-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("folder");
        Folder(dir)
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn users(client: &Client) {
    client
        .batch_execute(
            "CREATE TABLE users (id bigserial PRIMARY KEY, full_name text, email text);
             INSERT INTO users (full_name, email)
               SELECT 'First' || g || ' Last' || g, 'u' || g || '@example.org' FROM generate_series(1, 2000) g;",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

fn snapshot_filter(lines: Vec<String>) -> Vec<String> {
    lines
        .into_iter()
        .filter(|l| !l.contains("alembic_version"))
        .collect()
}

fn psql(url: &str, file: &Path) {
    let out = Command::new("psql")
        .arg(url)
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-f"])
        .arg(file)
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql -f {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn check_split(client: &Client) {
    assert_eq!(
        rows(client, "SELECT count(*)::text FROM users WHERE first_name IS DISTINCT FROM 'First' || id OR last_name IS DISTINCT FROM 'Last' || id").await,
        ["0"]
    );
    assert_eq!(
        rows(client, "SELECT count(*)::text FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'full_name' AND NOT attisdropped").await,
        ["0"],
        "contract dropped full_name"
    );
}

#[tokio::test]
async fn sql_files_run_with_psql() {
    let db = TestDb::new("export_sql").await;
    let client = db.connect().await;
    users(&client).await;
    let before = user_snapshot(&client, "users", "id").await;
    let dir = Folder::new("sql");
    let plan = dir.0.join("split.toml");
    std::fs::write(&plan, PLAN).expect("plan");
    let out_dir = dir.0.join("out");
    let plan_arg = plan.display().to_string();
    let out_arg = out_dir.display().to_string();
    let out = backfill_ok(
        &["export", &plan_arg, "--format", "sql", "--out", &out_arg],
        Some(&db.url),
    );
    for phase in ["expand", "dual-write", "contract", "rollback"] {
        assert!(out.contains(&format!("split.{phase}.sql")), "{out}");
    }
    let expand = std::fs::read_to_string(out_dir.join("split.expand.sql")).unwrap_or_default();
    assert!(
        expand.contains("-- lock: ACCESS EXCLUSIVE")
            && expand.contains("CREATE INDEX CONCURRENTLY"),
        "{expand}"
    );
    // Rollback path first, on a copy of the database.
    let copy = TestDb::new("export_sql_rollback").await;
    let copy_client = copy.connect().await;
    users(&copy_client).await;
    let copy_before = user_snapshot(&copy_client, "users", "id").await;
    psql(&copy.url, &out_dir.join("split.expand.sql"));
    psql(&copy.url, &out_dir.join("split.dual-write.sql"));
    assert_ne!(
        user_snapshot(&copy_client, "users", "id").await,
        copy_before
    );
    psql(&copy.url, &out_dir.join("split.rollback.sql"));
    assert_eq!(
        user_snapshot(&copy_client, "users", "id").await,
        copy_before
    );
    // Forward path.
    psql(&db.url, &out_dir.join("split.expand.sql"));
    // Running a file twice is harmless.
    psql(&db.url, &out_dir.join("split.expand.sql"));
    psql(&db.url, &out_dir.join("split.dual-write.sql"));
    client
        .batch_execute(
            "INSERT INTO users (full_name, email) VALUES ('Ada Lovelace', 'ada@example.org')",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    backfill_ok(
        &[
            "run",
            &plan_arg,
            "--phase",
            "backfill",
            "--progress",
            "quiet",
        ],
        Some(&db.url),
    );
    backfill_ok(&["verify", &plan_arg], Some(&db.url));
    psql(&db.url, &out_dir.join("split.contract.sql"));
    assert_eq!(
        rows(
            &client,
            "SELECT first_name || ' ' || last_name FROM users WHERE id = 2001"
        )
        .await,
        ["Ada Lovelace"]
    );
    client
        .batch_execute("DELETE FROM users WHERE id = 2001")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    check_split(&client).await;
    drop(before);
}

/// A virtualenv with Alembic, psycopg2 and jsonschema, made once per target folder; its `bin`.
pub(crate) fn alembic() -> PathBuf {
    static VENV: OnceLock<Mutex<Option<PathBuf>>> = OnceLock::new();
    let lock = VENV.get_or_init(|| Mutex::new(None));
    let mut guard = lock.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = guard.as_ref() {
        return p.clone();
    }
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("alembic-venv");
    let bin = venv.join("bin");
    if !bin.join("alembic").is_file() || !bin.join("jsonschema").is_file() {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok,
            "python3 -m venv failed (the export test needs python3 with venv and pip)"
        );
        let out = Command::new(bin.join("pip"))
            .args([
                "install",
                "--quiet",
                "alembic>=1.12",
                "psycopg2-binary>=2.9",
                "jsonschema>=4.18",
            ])
            .output()
            .expect("run pip");
        assert!(
            out.status.success(),
            "pip install alembic psycopg2-binary jsonschema: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    *guard = Some(bin.clone());
    bin
}

/// `alembic <args>` in `dir`; the statements the migrations sent, as [`RECORD_HOOK`] recorded
/// them, without Alembic's own on `alembic_version`.
fn run_alembic(bin: &Path, dir: &Path, args: &[&str]) -> Vec<String> {
    let log = dir.join("statements.jsonl");
    let _ = std::fs::remove_file(&log);
    let out = Command::new(bin.join("alembic"))
        .args(args)
        .current_dir(dir)
        .env("BACKFILL_TEST_STATEMENTS", &log)
        .output()
        .expect("run alembic");
    assert!(
        out.status.success(),
        "alembic {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<String>(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .filter(|s| !s.contains("alembic_version"))
        .collect()
}

/// Put into each project's `env.py` after `from alembic import context`: with
/// `BACKFILL_TEST_STATEMENTS` set, every statement a migration sends is appended to that file,
/// one JSON string a line. Left out: what is sent before the migration context is configured
/// (the dialect's queries on connect) and statements with parameters (Alembic's check for its
/// version table).
const RECORD_HOOK: &str = r#"

import json as _bf_json
import os as _bf_os

from sqlalchemy import event as _bf_event
from sqlalchemy.engine import Engine as _BfEngine

if _bf_os.environ.get("BACKFILL_TEST_STATEMENTS"):

    @_bf_event.listens_for(_BfEngine, "before_cursor_execute")
    def _bf_record(conn, cursor, statement, parameters, ctx, executemany):
        try:
            context.get_context()
        except Exception:
            return
        if parameters:
            return
        with open(_bf_os.environ["BACKFILL_TEST_STATEMENTS"], "a") as f:
            f.write(_bf_json.dumps(statement) + "\n")
"#;

/// `alembic <args> --sql` started in `dir`: offline mode, which prints the SQL instead of
/// connecting. Collect it with [`offline_sql`].
fn alembic_offline(bin: &Path, dir: &Path, args: &[&str]) -> std::process::Child {
    Command::new(bin.join("alembic"))
        .args(args)
        .arg("--sql")
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run alembic")
}

/// What an [`alembic_offline`] printed.
fn offline_sql(child: std::process::Child, what: &str) -> String {
    let out = child.wait_with_output().expect("run alembic");
    assert!(
        out.status.success(),
        "alembic --sql ({what}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether `printed` (offline) holds exactly the statements `sent` (online), in order, each
/// ended for psql (`;`, a `;` on the next line, or `\gset` for a build check), with nothing
/// else but Alembic's own (`BEGIN;`, `COMMIT;`, `-- Running ...`, statements on
/// `alembic_version`) and psql's `\if`/`\endif`. A block under `\if` that online did not send
/// (the index was valid, as the check found) is skipped whole.
fn same_statements(sent: &[String], printed: &str) -> Result<(), String> {
    let mut rest = printed;
    let mut next = sent.iter().peekable();
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        if let Some(after) = next.peek().and_then(|s| rest.strip_prefix(s.trim_start())) {
            rest = [";", "\n;", " \\gset"]
                .iter()
                .find_map(|end| after.strip_prefix(end))
                .ok_or_else(|| {
                    format!(
                        "not ended for psql: {}",
                        after.chars().take(80).collect::<String>()
                    )
                })?;
            next.next();
            continue;
        }
        let line = rest.lines().next().unwrap_or_default();
        if let Some(block) = rest.strip_prefix("\\if :bf_build") {
            let starts = next
                .peek()
                .is_some_and(|s| block.trim_start().starts_with(s.trim_start()));
            rest = if starts {
                block
            } else {
                let end = block.find("\n\\endif").ok_or("\\if without \\endif")?;
                &block[end..]
            };
            continue;
        }
        if matches!(line, "BEGIN;" | "COMMIT;" | "\\endif") || line.starts_with("-- Running ") {
            rest = &rest[line.len()..];
            continue;
        }
        let statement = rest.find(";\n").map_or(rest, |end| &rest[..=end]);
        if statement.contains("alembic_version") {
            rest = &rest[statement.len()..];
            continue;
        }
        return Err(format!(
            "printed but not sent: {:?}\nnext sent: {:?}",
            statement.chars().take(300).collect::<String>(),
            next.peek()
        ));
    }
    match next.next() {
        Some(s) => Err(format!("sent but not printed: {s:?}")),
        None => Ok(()),
    }
}

/// `alembic init migrations` in `dir`, with `sqlalchemy.url` set to `db`.
fn alembic_project(bin: &Path, dir: &Path, db: &TestDb) {
    run_alembic(bin, dir, &["init", "migrations"]);
    let env = dir.join("migrations").join("env.py");
    let text = std::fs::read_to_string(&env).unwrap_or_default();
    let import = "from alembic import context\n";
    assert!(text.contains(import), "{text}");
    std::fs::write(
        &env,
        text.replacen(import, &format!("{import}{RECORD_HOOK}"), 1),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let ini = dir.join("alembic.ini");
    let cfg: tokio_postgres::Config = db.url.parse().unwrap_or_else(|e| panic!("{e}"));
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    let text = std::fs::read_to_string(&ini).unwrap_or_default();
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("sqlalchemy.url") {
                format!(
                    "sqlalchemy.url = postgresql+psycopg2://postgres@127.0.0.1:{port}/{}",
                    db.name
                )
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&ini, text).unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn alembic_revisions_upgrade_downgrade_and_upgrade_with_alembic() {
    let bin = alembic();
    let db = TestDb::new("export_alembic").await;
    let client = db.connect().await;
    users(&client).await;
    let before = snapshot_filter(user_snapshot(&client, "users", "id").await);
    let dir = Folder::new("alembic");
    alembic_project(&bin, &dir.0, &db);
    let plan = dir.0.join("split.toml");
    std::fs::write(&plan, PLAN).unwrap_or_else(|e| panic!("{e}"));
    let plan_arg = plan.display().to_string();
    let versions = dir.0.join("migrations").join("versions");
    let versions_arg = versions.display().to_string();
    let out = backfill_ok(
        &[
            "export",
            &plan_arg,
            "--format",
            "alembic",
            "--out",
            &versions_arg,
        ],
        Some(&db.url),
    );
    let mut revs: Vec<String> = out
        .lines()
        .filter_map(|l| l.strip_prefix("wrote "))
        .filter_map(|p| {
            Path::new(p)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
        })
        .collect();
    assert_eq!(revs.len(), 2, "{out}");
    let expand_rev = revs
        .iter()
        .find(|r| r.ends_with("_expand.py"))
        .map(|r| r[..12].to_string())
        .unwrap_or_default();
    let source = std::fs::read_to_string(versions.join(&revs[0])).unwrap_or_default();
    assert!(
        source.contains("autocommit_block") || revs[1].ends_with("_contract.py"),
        "{source}"
    );
    revs.sort();

    run_alembic(&bin, &dir.0, &["upgrade", &expand_rev]);
    assert_eq!(
        rows(&client, "SELECT tgname::text FROM pg_trigger WHERE tgrelid = 'users'::regclass AND NOT tgisinternal").await,
        ["bf_split_sync"]
    );
    assert_eq!(
        rows(&client, "SELECT indisvalid::text FROM pg_index WHERE indrelid = 'users'::regclass AND NOT indisprimary").await,
        ["true"],
        "the CONCURRENTLY index, built in an autocommit block"
    );
    run_alembic(&bin, &dir.0, &["downgrade", "base"]);
    assert_eq!(
        snapshot_filter(user_snapshot(&client, "users", "id").await),
        before
    );
    run_alembic(&bin, &dir.0, &["upgrade", &expand_rev]);
    backfill_ok(
        &[
            "run",
            &plan_arg,
            "--phase",
            "backfill",
            "--progress",
            "quiet",
        ],
        Some(&db.url),
    );
    backfill_ok(&["verify", &plan_arg], Some(&db.url));
    run_alembic(&bin, &dir.0, &["upgrade", "head"]);
    check_split(&client).await;
}

/// Everything a user sees of the `public` schema: relations (kind, replica identity, comment),
/// columns (type, NOT NULL, default, comment), constraints, indexes, triggers, views, enum
/// types, extended statistics, functions, and every table's rows.
async fn public_snapshot(client: &Client) -> Vec<String> {
    let queries = [
        "SELECT 'relation ' || c.relname || ' ' || c.relkind::text || ' identity=' || c.relreplident::text || ' comment=' || coalesce(obj_description(c.oid, 'pg_class'), '-') FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'v', 'S', 'i') ORDER BY 1",
        "SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' notnull=' || a.attnotnull || ' default=' || coalesce(pg_get_expr(d.adbin, d.adrelid), '-') || ' comment=' || coalesce(col_description(c.oid, a.attnum), '-') FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped ORDER BY c.relname, a.attnum",
        "SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid) || ' validated=' || convalidated FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1",
        "SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1",
        "SELECT 'trigger ' || tgrelid::regclass || ' ' || tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1",
        "SELECT 'view ' || viewname || ' ' || definition FROM pg_views WHERE schemaname = 'public' ORDER BY 1",
        "SELECT 'enum ' || t.typname || ' ' || string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid GROUP BY t.typname ORDER BY 1",
        "SELECT 'statistics ' || stxname FROM pg_statistic_ext ORDER BY 1",
        // Functions, but those of backfill's state (made by `backfill run` only).
        "SELECT 'function ' || n.nspname || '.' || p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND p.proname NOT IN ('checkpoint_guard', 'rows_guard') ORDER BY 1",
    ];
    let mut out = Vec::new();
    for q in queries {
        out.extend(rows(client, q).await);
    }
    for table in rows(client, "SELECT quote_ident(relname) FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' ORDER BY 1").await {
        out.extend(
            rows(client, &format!("SELECT '{table} ' || t::text FROM {table} t ORDER BY 1"))
                .await,
        );
    }
    out
}

/// Rows for the example schema's tables, so that the backfills have work.
const EXAMPLE_ROWS: &str = "
INSERT INTO users (full_name, email, age, nickname, score, legacy_code, street, city)
  SELECT 'First' || g || ' Last' || g, CASE WHEN g % 7 = 0 THEN NULL ELSE ' U' || g || '@Example.org ' END,
         CASE WHEN g % 5 = 0 THEN NULL ELSE g % 90 END, 'nick' || g, g, 'L' || g, g || ' Main St', 'City' || (g % 3)
    FROM generate_series(1, 300) g;
INSERT INTO orders (user_id, reference, total)
  SELECT g, 'REF-' || g, CASE WHEN g % 9 = 0 THEN NULL ELSE g * 1.5 END FROM generate_series(1, 300) g;
INSERT INTO events (tenant_id, id, payload) SELECT g % 4, g, 'p' || g FROM generate_series(1, 200) g;
INSERT INTO legacy_events (kind, payload, created_at) SELECT 'k' || g, '{}', '2026-01-01' FROM generate_series(1, 20) g;
";

/// How a plan's schedule is applied by another tool: psql scripts, or Alembic revisions.
#[derive(Clone, Copy, PartialEq)]
enum Format {
    Sql,
    Alembic,
}

/// The lines of `x` that `y` lacks (the first ten).
fn only_in(x: &[String], y: &[String]) -> Vec<String> {
    x.iter()
        .filter(|l| !y.contains(l))
        .take(10)
        .cloned()
        .collect()
}

/// Every example plan (together they use every kind) through [`plans_through`].
async fn every_example_plan_through(format: Format) {
    let plans_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans");
    let mut plans: Vec<PathBuf> = std::fs::read_dir(&plans_dir)
        .expect("plans")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    plans.sort();
    plans_through(format, &plans, "examples").await;
}

/// Each plan on a fresh database with the example schema and rows, exported as `format`: its
/// expand and dual-write applied by the other tool (psql scripts, or `alembic upgrade` to the
/// expand revision), then rolled back by it (the rollback script, or `alembic downgrade
/// base`), which must leave the database as it was; then expand and dual-write again, the
/// backfill out of band with `backfill run --phase backfill`, and the contract (its script, or
/// `alembic upgrade head`). The database then equals one where `backfill run` did both
/// releases.
///
/// Alembic revisions also go through offline mode, on a third database: `alembic upgrade
/// <expand> --sql`, `alembic downgrade <expand>:base --sql` and `alembic upgrade
/// <expand>:head --sql` print scripts that `psql -v ON_ERROR_STOP=1` runs down the same path,
/// to the same database; each prints exactly the statements its online run sent.
async fn plans_through(format: Format, plans: &[PathBuf], label: &str) {
    let bin = (format == Format::Alembic).then(alembic);
    let tag = if bin.is_some() { "alembic" } else { "sql" };
    let dir = Folder::new(&format!("{label}_{tag}"));
    for plan in plans {
        let plan_arg = plan.display().to_string();
        let stem = plan
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let exported = TestDb::new(&format!("export_{tag}_{}", &stem[..4])).await;
        let ran = TestDb::new(&format!("export_{tag}_{}_run", &stem[..4])).await;
        let offline = match bin {
            Some(_) => Some(TestDb::new(&format!("export_{tag}_{}_offline", &stem[..4])).await),
            None => None,
        };
        let (a, b) = (exported.connect().await, ran.connect().await);
        let c = match &offline {
            Some(db) => Some(db.connect().await),
            None => None,
        };
        for client in [&a, &b].into_iter().chain(c.as_ref()) {
            client
                .batch_execute(crate::plan_examples::EXAMPLE_SCHEMA)
                .await
                .expect("schema");
            client.batch_execute(EXAMPLE_ROWS).await.expect("rows");
        }
        let loaded = backfill::plan::Plan::load(plan).unwrap_or_else(|e| panic!("{e}"));
        let shown = backfill_ok(&["plan", &plan_arg, "--sql"], Some(&exported.url));
        let backfills = shown
            .split("===== backfill")
            .nth(1)
            .and_then(|rest| rest.split("===== contract").next())
            .is_some_and(|phase| phase.contains("-- step:"));
        let project = dir.0.join(&stem);
        std::fs::create_dir_all(&project).expect("folder");
        let out = match &bin {
            Some(bin) => {
                alembic_project(bin, &project, &exported);
                project.join("migrations").join("versions")
            }
            None => project.join("out"),
        };
        let out_arg = out.display().to_string();
        let written = backfill_ok(
            &["export", &plan_arg, "--format", tag, "--out", &out_arg],
            Some(&exported.url),
        );
        let expand_rev = written
            .lines()
            .filter_map(|l| l.strip_prefix("wrote "))
            .filter_map(|p| {
                Path::new(p)
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
            })
            .find(|f| f.ends_with("_expand.py"))
            .map(|f| f[..12].to_string());
        let script = |phase: &str| {
            let f = out.join(format!("{}.{phase}.sql", loaded.name));
            f.is_file().then_some(f)
        };
        if bin.is_some() {
            assert!(
                expand_rev.is_some(),
                "{stem}: no expand revision: {written}"
            );
        } else {
            assert!(
                script("expand").is_some() && script("rollback").is_some(),
                "{stem}: no expand or rollback script in {}",
                out.display()
            );
        }
        // Offline mode needs no database: printed while the online path runs.
        let printing = match (&bin, &expand_rev) {
            (Some(bin), Some(rev)) => Some([
                ("expand", alembic_offline(bin, &project, &["upgrade", rev])),
                (
                    "rollback",
                    alembic_offline(bin, &project, &["downgrade", &format!("{rev}:base")]),
                ),
                (
                    "contract",
                    alembic_offline(bin, &project, &["upgrade", &format!("{rev}:head")]),
                ),
            ]),
            _ => None,
        };
        // Applies phases with the other tool; with Alembic, the statements it sent.
        let apply = |phases: &[&str]| match &bin {
            Some(bin) => {
                let target = match phases {
                    ["rollback"] => "base",
                    ["contract"] => "head",
                    _ => expand_rev.as_deref().unwrap_or("base"),
                };
                let verb = if target == "base" {
                    "downgrade"
                } else {
                    "upgrade"
                };
                run_alembic(bin, &project, &[verb, target])
            }
            None => {
                for phase in phases {
                    if let Some(f) = script(phase) {
                        psql(&exported.url, &f);
                    }
                }
                Vec::new()
            }
        };
        let before = snapshot_filter(public_snapshot(&a).await);
        let sent_expand = apply(&["expand", "dual-write"]);
        let sent_rollback = apply(&["rollback"]);
        let after = snapshot_filter(public_snapshot(&a).await);
        assert!(
            after == before,
            "{stem} ({tag}): the rollback after expand and dual-write left {:?}, lost {:?}",
            only_in(&after, &before),
            only_in(&before, &after)
        );
        apply(&["expand", "dual-write"]);
        if backfills {
            backfill_ok(
                &[
                    "run",
                    &plan_arg,
                    "--phase",
                    "backfill",
                    "--progress",
                    "quiet",
                ],
                Some(&exported.url),
            );
        }
        let sent_contract = apply(&["contract"]);
        // The same plan through `backfill run`, release by release.
        let expand = loaded.release.expand.as_ref().map(|r| r.to_string());
        let contract = loaded.release.contract.as_ref().map(|r| r.to_string());
        let mut run = vec!["run", plan_arg.as_str(), "--progress", "quiet"];
        if let Some(r) = &expand {
            run.extend(["--release", r.as_str()]);
        }
        backfill_ok(&run, Some(&ran.url));
        let mut run = vec!["run", plan_arg.as_str(), "--progress", "quiet"];
        match &contract {
            Some(r) => run.extend(["--release", r.as_str()]),
            None => run.extend(["--phase", "contract"]),
        }
        backfill_ok(&run, Some(&ran.url));
        let left = snapshot_filter(public_snapshot(&a).await);
        let right = snapshot_filter(public_snapshot(&b).await);
        assert!(
            left == right,
            "{stem} ({tag}): only after the export: {:?}\nonly after `backfill run`: {:?}",
            only_in(&left, &right),
            only_in(&right, &left)
        );
        let (Some(printing), Some(c), Some(offline)) = (printing, &c, &offline) else {
            continue;
        };
        let mut files = Vec::new();
        for ((what, child), sent) in
            printing
                .into_iter()
                .zip([&sent_expand, &sent_rollback, &sent_contract])
        {
            let text = offline_sql(child, what);
            if let Err(e) = same_statements(sent, &text) {
                panic!("{stem}: `alembic --sql` ({what}) is not what online sent: {e}\n{text}");
            }
            let file = project.join(format!("offline.{what}.sql"));
            std::fs::write(&file, &text).unwrap_or_else(|e| panic!("{e}"));
            files.push(file);
        }
        let before = snapshot_filter(public_snapshot(c).await);
        psql(&offline.url, &files[0]);
        psql(&offline.url, &files[1]);
        let after = snapshot_filter(public_snapshot(c).await);
        assert!(
            after == before,
            "{stem} (alembic --sql): the rollback after expand and dual-write left {:?}, lost {:?}",
            only_in(&after, &before),
            only_in(&before, &after)
        );
        // Offline, an upgrade from base creates alembic_version, and a downgrade to base
        // leaves it since Alembic fixed its issue #1822 (older versions drop it): a second
        // upgrade from base needs it gone.
        c.batch_execute("DROP TABLE IF EXISTS alembic_version")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        psql(&offline.url, &files[0]);
        if backfills {
            backfill_ok(
                &[
                    "run",
                    &plan_arg,
                    "--phase",
                    "backfill",
                    "--progress",
                    "quiet",
                ],
                Some(&offline.url),
            );
        }
        psql(&offline.url, &files[2]);
        let left = snapshot_filter(public_snapshot(c).await);
        assert!(
            left == right,
            "{stem} (alembic --sql): only after the offline scripts: {:?}\nonly after `backfill run`: {:?}",
            only_in(&left, &right),
            only_in(&right, &left)
        );
    }
}

#[tokio::test]
async fn every_example_plan_exports_to_psql_scripts_that_match_backfill_run() {
    every_example_plan_through(Format::Sql).await;
}

/// Online and offline (`alembic upgrade --sql` run by psql).
#[tokio::test]
async fn every_example_plan_exports_to_alembic_revisions_that_match_backfill_run() {
    every_example_plan_through(Format::Alembic).await;
}

/// Text that the tools between the revision and PostgreSQL may read: `%` (Python formatting,
/// pyformat paramstyles), `:name` (bind parameters; psql variables, which psql leaves alone in
/// strings and dollar quotes), a tab (`op.execute` offline turns tabs into spaces), and
/// statements whose last line is a `--` comment (a `;` after it would be commented out); in a
/// trigger function, a backfill, a concurrent index build and `sql` operations at expand,
/// rollback and contract.
const HAZARDS: &str = r#"
table = "users"

[[operations]]
kind = "add_column"
name = "label"
type = "text"
up = "'50% :DBNAME\t%(x)s ' || (id % 7)::text"

[[operations]]
kind = "create_index"
columns = ["city"]

[[operations]]
kind = "sql"
phase = "expand"
up = "COMMENT ON COLUMN users.city IS 'a :city, 100%, %s, a\ttab' -- the last line is a comment"
down = "COMMENT ON COLUMN users.city IS NULL -- so is the undo's"

[[operations]]
kind = "sql"
phase = "contract"
up = "COMMENT ON COLUMN users.street IS '%(street)s :street' -- at contract too"
"#;

/// Through psql scripts, and Alembic online and offline.
#[tokio::test]
async fn percent_colons_tabs_and_trailing_comments_survive_every_export() {
    let dir = Folder::new("hazards");
    let plan = dir.0.join("9001_text_hazards.toml");
    std::fs::write(&plan, HAZARDS).unwrap_or_else(|e| panic!("{e}"));
    plans_through(Format::Sql, std::slice::from_ref(&plan), "hazards").await;
    plans_through(Format::Alembic, &[plan], "hazards").await;
}
