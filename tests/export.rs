//! `backfill export`: the SQL files run with psql and the Alembic revisions run with Alembic
//! itself (installed with pip into a virtualenv in the target folder) against the test server.

use std::path::{Path, PathBuf};
use std::process::Command;
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

/// A virtualenv with Alembic and psycopg2, made once per target folder.
fn alembic() -> PathBuf {
    static VENV: OnceLock<Mutex<Option<PathBuf>>> = OnceLock::new();
    let lock = VENV.get_or_init(|| Mutex::new(None));
    let mut guard = lock.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = guard.as_ref() {
        return p.clone();
    }
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("alembic-venv");
    let bin = venv.join("bin");
    if !bin.join("alembic").is_file() {
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
            ])
            .output()
            .expect("run pip");
        assert!(
            out.status.success(),
            "pip install alembic psycopg2-binary: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    *guard = Some(bin.clone());
    bin
}

fn run_alembic(bin: &Path, dir: &Path, args: &[&str]) {
    let out = Command::new(bin.join("alembic"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run alembic");
    assert!(
        out.status.success(),
        "alembic {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn alembic_revisions_upgrade_downgrade_and_upgrade_with_alembic() {
    let bin = alembic();
    let db = TestDb::new("export_alembic").await;
    let client = db.connect().await;
    users(&client).await;
    let before = snapshot_filter(user_snapshot(&client, "users", "id").await);
    let dir = Folder::new("alembic");
    run_alembic(&bin, &dir.0, &["init", "migrations"]);
    let ini = dir.0.join("alembic.ini");
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
