//! An ephemeral PostgreSQL for the whole test binary ([`backfill::ephemeral`]: `initdb` into a
//! temporary folder, a free port, the Unix socket in that folder, `fsync=off`; run as the
//! `postgres` user when the tests run as root). Each test gets its own database. A watchdog
//! process stops the server and removes the folder as soon as the test binary exits, whether the
//! tests passed, failed or were killed.
//!
//! `BACKFILL_TEST_DATABASE_URL` points the suite at an existing server instead (a URL to a
//! database from which `CREATE DATABASE` works).

#![allow(dead_code)]

use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use backfill::ephemeral::{Cluster, ClusterOptions};
use tokio_postgres::{Client, NoTls};

pub mod proxy;

/// The server the tests create their databases on.
pub struct Server {
    host: String,
    port: u16,
    user: String,
    /// The suite's own cluster (never dropped: its watchdog removes it when the binary exits).
    pub cluster: Option<Cluster>,
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
            cluster: None,
        });
    }
    let cluster = Cluster::start(&ClusterOptions {
        unsafe_fast: true,
        watchdog: true,
    })
    .map_err(|e| e.to_string())?;
    let config: tokio_postgres::Config = cluster
        .url("postgres")
        .parse()
        .map_err(|e| format!("{e}"))?;
    Ok(Server {
        host: "127.0.0.1".to_string(),
        port: config.get_ports().first().copied().unwrap_or(5432),
        user: "postgres".to_string(),
        cluster: Some(cluster),
    })
}

impl Server {
    /// Where it listens.
    pub fn addr(&self) -> std::net::SocketAddr {
        use std::net::ToSocketAddrs;
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .unwrap_or_else(|| panic!("cannot resolve {}:{}", self.host, self.port))
    }

    /// Connection string of database `db` through a proxy listening on `port` of 127.0.0.1.
    pub fn url_through(&self, port: u16, db: &str) -> String {
        format!("host=127.0.0.1 port={port} user={} dbname={db}", self.user)
    }

    /// Connection string of database `db`.
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

/// Runs the `backfill` binary, asserts it exits 0 (showing its output when not), and returns
/// its standard output.
pub fn backfill_ok(args: &[&str], database_url: Option<&str>) -> String {
    let out = backfill_cmd(args, database_url);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "backfill {args:?}:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A snapshot of everything a user would compare after a rollback: the table's columns,
/// constraints, indexes and triggers, the functions and tables outside the system schemas, and
/// every row.
pub async fn snapshot(client: &Client, table: &str, key: &str) -> Vec<String> {
    let mut out = Vec::new();
    // The table's name inside string literals, its quotes doubled.
    let reg = format!("'{}'", table.replace('\'', "''"));
    let queries = [
        format!("SELECT 'column ' || attname || ' ' || format_type(atttypid, atttypmod) || ' notnull=' || attnotnull || ' default=' || coalesce(pg_get_expr(d.adbin, d.adrelid), '-') FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum WHERE attrelid = {reg}::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum"),
        format!("SELECT 'constraint ' || conname || ' ' || pg_get_constraintdef(oid) || ' validated=' || convalidated FROM pg_constraint WHERE conrelid = {reg}::regclass ORDER BY conname"),
        format!("SELECT 'index ' || pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = {reg}::regclass ORDER BY 1"),
        format!("SELECT 'trigger ' || tgname FROM pg_trigger WHERE tgrelid = {reg}::regclass AND NOT tgisinternal ORDER BY 1"),
        "SELECT 'function ' || n.nspname || '.' || p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1".to_string(),
        "SELECT 'relation ' || n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND c.relkind IN ('r', 'i', 'S', 'v') ORDER BY 1".to_string(),
        format!("SELECT 'row ' || t::text FROM {table} t ORDER BY {key}"),
    ];
    for q in queries {
        out.extend(rows(client, &q).await);
    }
    out
}

static STAGED: AtomicUsize = AtomicUsize::new(0);

/// A plan written to a temporary folder and staged on a test database: validated, and its
/// expand and dual-write phases applied, ready for `backfill run --phase backfill`. The folder
/// goes away on drop.
pub struct Staged {
    /// The folder.
    pub dir: std::path::PathBuf,
    /// The plan file.
    pub path: std::path::PathBuf,
    /// The schedule the plan was staged with.
    pub schedule: backfill::planner::Schedule,
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Staged {
    /// The plan file as an argument.
    pub fn arg(&self) -> String {
        self.path.display().to_string()
    }
}

/// Writes `plan` as `<name>.toml`, validates it against `db` and runs expand and dual-write.
pub async fn stage(db: &TestDb, name: &str, plan: &str) -> Staged {
    use backfill::executor::{run_steps, ExecOptions};
    use backfill::planner::{Phase, PlannerOptions};
    let n = STAGED.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("backfill-test-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the plan folder");
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, plan).expect("write the plan");
    let parsed = backfill::plan::Plan::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let mut client = db.connect().await;
    let schedule = backfill::validate::validate(&mut client, &parsed, &PlannerOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .schedule;
    let exec = ExecOptions {
        lock_timeout: std::time::Duration::from_secs(5),
        retries: 3,
        meter: backfill::metrics::Meter::none(),
    };
    for phase in [Phase::Expand, Phase::DualWrite] {
        run_steps(
            &mut client,
            &schedule,
            schedule.phase(phase),
            &phase.to_string(),
            &exec,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }
    Staged {
        dir,
        path,
        schedule,
    }
}

/// A `backfill` process started in the background, as a user would start it.
pub fn backfill_spawn(args: &[&str], database_url: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_backfill"))
        .args(args)
        .env("DATABASE_URL", database_url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the backfill binary")
}

/// The JSON events a `--progress json` run printed.
pub fn json_events(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON event {l}: {e}")))
        .collect()
}

/// The time of a JSON event (`ts`, RFC 3339) in seconds since the epoch.
pub fn event_secs(e: &serde_json::Value) -> f64 {
    let ts = e["ts"]
        .as_str()
        .unwrap_or_else(|| panic!("event without ts: {e}"));
    humantime::parse_rfc3339(ts)
        .unwrap_or_else(|err| panic!("ts {ts} is not RFC 3339: {err}"))
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Rows the backfill would still change.
pub async fn out_of_sync(client: &Client, schedule: &backfill::planner::Schedule) -> i64 {
    backfill::executor::count_out_of_sync(client, schedule)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The state of a plan's backfill: (rows seen over all segments, segments not done).
pub async fn backfill_state(client: &Client, plan: &str) -> (i64, i64) {
    let row = client
        .query_one(
            "SELECT coalesce(sum(rows_seen), 0)::int8, count(*) FILTER (WHERE NOT done) FROM backfill.segments WHERE plan = $1",
            &[&plan],
        )
        .await
        .unwrap_or_else(|e| panic!("reading the segments: {e}"));
    (row.get(0), row.get(1))
}

/// The split of `full_name` of plan 0001, as TOML: the `[[operations]]` entry alone.
macro_rules! split_operation {
    () => {
        r#"
[[operations]]
kind = "split_column"
column = "full_name"
into = [
  { name = "first_name", type = "text", up = "split_part(full_name, ' ', 1)" },
  { name = "last_name",  type = "text", up = "split_part(full_name, ' ', 2)" },
]
down = "concat_ws(' ', first_name, last_name)"
"#
    };
}

/// The example split of `users.full_name` (plan 0001 without `[backfill]` and `[release]`).
pub const SPLIT_USERS: &str = concat!("\ntable = \"users\"", split_operation!());

/// The same split as plan `name` on `table`, with `backfill` as its `[backfill]` settings
/// (tables after them, such as `[release]`, may follow).
pub fn split_plan(name: &str, table: &str, backfill: &str) -> String {
    format!(
        "name = \"{name}\"\ntable = \"{table}\"\n{}\n[backfill]\n{backfill}\n",
        split_operation!()
    )
}

/// Rows whose `first_name` and `last_name` are not what [`SPLIT_USERS`] computes from
/// `full_name`.
pub async fn unsplit_rows(client: &Client) -> i64 {
    count(
        client,
        "SELECT count(*) FROM users WHERE first_name IS DISTINCT FROM split_part(full_name, ' ', 1)
            OR last_name IS DISTINCT FROM split_part(full_name, ' ', 2)",
    )
    .await
}

/// Creates `users (id bigserial, full_name, email)` with `n` rows: row `g` is
/// `First<g> Last<g>`, `u<g>@example.org`.
pub async fn seed_users(client: &Client, n: i64) {
    client
        .batch_execute(&format!(
            "CREATE TABLE users (id bigserial PRIMARY KEY, full_name text, email text);
             INSERT INTO users (full_name, email)
               SELECT 'First' || g || ' Last' || g, 'u' || g || '@example.org' FROM generate_series(1, {n}) g;
             ANALYZE users;"
        ))
        .await
        .unwrap_or_else(|e| panic!("seeding users: {e}"));
}

/// The one `int8` a query returns.
pub async fn count(client: &Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// Exit code and output of a finished `backfill`, for assertion messages.
pub fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Sends SIGINT to a background `backfill`, as Ctrl-C does.
pub fn interrupt(child: &std::process::Child) {
    let ok = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(ok.success());
}

/// Waits (without blocking the runtime) for a background `backfill` to exit.
pub async fn finish(child: std::process::Child) -> Output {
    tokio::task::spawn_blocking(move || child.wait_with_output().expect("wait for backfill"))
        .await
        .expect("join")
}

/// Waits until a backfill has started and walked more than `rows` rows (all plans together);
/// fails after 30 s.
/// Polls `sql` (a count) every 5 ms until it is above zero; fails after 60 s, saying `what`
/// was never seen.
pub async fn wait_for(client: &Client, sql: &str, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while count(client, sql).await == 0 {
        assert!(std::time::Instant::now() < deadline, "{what}: never seen");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

pub async fn wait_walked(client: &Client, rows: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let ready = client
            .query_one("SELECT to_regclass('backfill.segments') IS NOT NULL", &[])
            .await
            .map(|r| r.get::<_, bool>(0))
            .unwrap_or(false);
        if ready
            && count(
                client,
                "SELECT coalesce(sum(rows_seen), 0)::int8 FROM backfill.segments",
            )
            .await
                > rows
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the backfill did not start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A folder of plan files, removed on drop.
pub struct Plans(std::path::PathBuf);

impl Plans {
    pub fn new(test: &str) -> Plans {
        let dir =
            std::env::temp_dir().join(format!("backfill-plans-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("plan folder");
        Plans(dir)
    }

    pub fn write(&self, file: &str, text: &str) -> String {
        let path = self.0.join(file);
        std::fs::write(&path, text).expect("write plan");
        path.display().to_string()
    }

    pub fn dir(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for Plans {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A snapshot without backfill's own state tables (they stay after an abort, as a log).
pub async fn user_snapshot(client: &Client, table: &str, key: &str) -> Vec<String> {
    snapshot(client, table, key)
        .await
        .into_iter()
        .filter(|l| {
            !((l.starts_with("relation backfill.") || l.starts_with("function backfill."))
                && !l.contains("_undo"))
        })
        .collect()
}
