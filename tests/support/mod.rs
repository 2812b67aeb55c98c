//! An ephemeral PostgreSQL for the whole test binary: `initdb` into a temporary folder, a free
//! port, the Unix socket in that folder, `fsync=off`; run as the `postgres` user when the tests
//! run as root. Each test gets its own database. A watchdog process stops the server and removes
//! the folder as soon as the test binary exits, whether the tests passed, failed or were killed.
//!
//! `BACKFILL_TEST_DATABASE_URL` points the suite at an existing server instead (a URL to a
//! database from which `CREATE DATABASE` works).

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use tokio_postgres::{Client, NoTls};

/// A running server the tests can create databases on.
pub struct Server {
    /// URL of the maintenance database (`postgres`), without a database name swap.
    host: String,
    port: u16,
    user: String,
    /// The cluster folder when the suite owns the server.
    pub dir: Option<PathBuf>,
    /// Folder of the PostgreSQL binaries.
    pub bin: Option<PathBuf>,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The suite's server, started on first use.
pub fn server() -> &'static Server {
    match SERVER.get_or_init(start) {
        Ok(s) => s,
        Err(e) => panic!("cannot start the test PostgreSQL: {e}"),
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Finds the folder holding `initdb`: on `PATH`, else the newest `/usr/lib/postgresql/*/bin`.
pub fn find_bin() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("postgres").is_file() {
                return Some(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b)
}

/// A command for a PostgreSQL binary, as the `postgres` user when we are root.
pub fn pg_command(bin: &Path, program: &str) -> Command {
    let exe = bin.join(program);
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(exe);
        c
    } else {
        Command::new(exe)
    }
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

fn start() -> Result<Server, String> {
    if let Ok(url) = std::env::var("BACKFILL_TEST_DATABASE_URL") {
        let config: tokio_postgres::Config = url.parse().map_err(|e| format!("{e}"))?;
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".to_string(),
        };
        return Ok(Server {
            host,
            port: config.get_ports().first().copied().unwrap_or(5432),
            user: config.get_user().unwrap_or("postgres").to_string(),
            dir: None,
            bin: find_bin(),
        });
    }
    let bin = find_bin().ok_or(
        "no PostgreSQL binaries (initdb) on PATH or in /usr/lib/postgresql/*/bin: apt-get install -y postgresql",
    )?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("backfill-test-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if is_root() {
        let ok = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            return Err("cannot chown the cluster folder to the postgres user".into());
        }
    }
    // The watchdog first, so the folder goes away even if initdb or the start fails.
    let data = dir.join("data");
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} -D '{data}' -m immediate stop >/dev/null 2>&1; rm -rf '{dir}'",
        pid = std::process::id(),
        stop = if is_root() {
            format!("runuser -u postgres -- '{}'", bin.join("pg_ctl").display())
        } else {
            format!("'{}'", bin.join("pg_ctl").display())
        },
        data = data.display(),
        dir = dir.display(),
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("watchdog: {e}"))?;

    let out = pg_command(&bin, "initdb")
        .arg("-D")
        .arg(&data)
        .args([
            "--auth=trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let port = free_port()?;
    let options = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400 -c shared_buffers=128MB",
        dir.display()
    );
    let status = pg_command(&bin, "pg_ctl")
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(dir.join("server.log"))
        .args(["-w", "-t", "60", "-o", &options, "start"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("pg_ctl: {e}"))?;
    if !status.success() {
        let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
        return Err(format!("the server did not start:\n{log}"));
    }
    Ok(Server {
        host: "127.0.0.1".to_string(),
        port,
        user: "postgres".to_string(),
        dir: Some(dir),
        bin: Some(bin),
    })
}

impl Server {
    /// URL of database `db`.
    pub fn url(&self, db: &str) -> String {
        format!(
            "host={} port={} user={} dbname={db}",
            self.host, self.port, self.user
        )
    }
}

/// A database of one test.
pub struct TestDb {
    /// Its name.
    pub name: String,
    /// Its connection string.
    pub url: String,
}

impl TestDb {
    /// A fresh database named after the test.
    pub async fn new(test: &str) -> TestDb {
        let server = server();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let clean: String = test
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        let name = format!("t_{clean}_{n}_{}", std::process::id());
        let admin = connect_url(&server.url("postgres")).await;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\" TEMPLATE template0"))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        TestDb {
            url: server.url(&name),
            name,
        }
    }

    /// A new connection to the test database.
    pub async fn connect(&self) -> Client {
        connect_url(&self.url).await
    }
}

/// Connects and spawns the connection task.
pub async fn connect_url(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// The rows of a query that returns one text column.
pub async fn rows(client: &Client, sql: &str) -> Vec<String> {
    client
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| {
            r.get::<_, Option<String>>(0)
                .unwrap_or_else(|| "NULL".into())
        })
        .collect()
}

/// Runs the `backfill` binary as a user would.
pub fn backfill_cmd(args: &[&str], database_url: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_backfill"));
    cmd.args(args)
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null());
    if let Some(url) = database_url {
        cmd.env("DATABASE_URL", url);
    }
    cmd.output().expect("run the backfill binary")
}

/// A snapshot of everything a user would compare after a rollback: the table's columns,
/// constraints, indexes and triggers, the functions and tables outside the system schemas, and
/// every row.
pub async fn snapshot(client: &Client, table: &str, key: &str) -> Vec<String> {
    let mut out = Vec::new();
    let queries = [
        format!("SELECT 'column ' || attname || ' ' || format_type(atttypid, atttypmod) || ' notnull=' || attnotnull || ' default=' || coalesce(pg_get_expr(d.adbin, d.adrelid), '-') FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum WHERE attrelid = '{table}'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum"),
        format!("SELECT 'constraint ' || conname || ' ' || pg_get_constraintdef(oid) || ' validated=' || convalidated FROM pg_constraint WHERE conrelid = '{table}'::regclass ORDER BY conname"),
        format!("SELECT 'index ' || pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = '{table}'::regclass ORDER BY 1"),
        format!("SELECT 'trigger ' || tgname FROM pg_trigger WHERE tgrelid = '{table}'::regclass AND NOT tgisinternal ORDER BY 1"),
        "SELECT 'function ' || n.nspname || '.' || p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1".to_string(),
        "SELECT 'relation ' || n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND c.relkind IN ('r', 'i', 'S', 'v') ORDER BY 1".to_string(),
        format!("SELECT 'row ' || t::text FROM {table} t ORDER BY {key}"),
    ];
    for q in queries {
        out.extend(rows(client, &q).await);
    }
    out
}
