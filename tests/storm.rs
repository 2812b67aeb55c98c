//! What production does to a run, over and over, with an application writing throughout:
//! SIGKILLs at seeded random moments across expand, dual-write, backfill and contract (the
//! same command restarted each time, as an orchestrator would), connections cut, half-closed,
//! stalled, slowed and refused by the fault proxy, and the server restarted with
//! `pg_ctl restart -m immediate`. Three plans on one table (a split with its backfill, a
//! concurrent index build, a check constraint whose backfill fixes the rows that break it)
//! run through release 1.0.0 (expand, dual-write, backfill) and 2.0.0 (contract).
//!
//! After every kill, and after every other fault, `status` must tell the truth (no phase shown
//! done that is not, no killed process shown alive past its lease) and the checkpoints must
//! agree with the rows (every row behind a cursor in sync, no chunk counted twice). A run that
//! is not killed must finish with exit 0 whatever else happens to it. At the end every row is
//! checked against the application's own record of what it committed, every DDL step finished
//! at most once, and the catalog equals that of the same plans run without faults.
//!
//! `BACKFILL_SOAK=1h` (or `90s`, `20m`) makes `soak_with_every_fault_at_random` go on for that
//! long, one round per seed from `BACKFILL_SOAK_SEED` (default 1), each round a fresh
//! database and a random mix of every fault; without it the test plays the fixed rounds of
//! [`FIXED_SEEDS`], the budget CI runs. Each round prints its seed and the faults it injected, in order.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backfill::ephemeral::{Cluster, ClusterOptions};
use tokio_postgres::{Client, NoTls};

use crate::support::proxy::Proxy;
use crate::support::{backfill_cmd, count, show, snapshot, split_plan};

/// splitmix64: a small seeded generator, so a round can be told again by its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// The plans, with the split's rate limit.
fn plans(rate: u64) -> [(&'static str, String); 3] {
    let release = "[release]\nexpand = \"1.0.0\"\ncontract = \"2.0.0\"\n";
    [
        (
            "0001_split.toml",
            split_plan(
                "storm_split",
                "users",
                &format!("batch_size = 200\nmax_rows_per_second = {rate}\n\n{release}"),
            ),
        ),
        (
            "0002_email_index.toml",
            format!(
                r#"name = "storm_index"
table = "users"

[[operations]]
kind = "create_index"
columns = ["email"]
name = "users_email_idx"

{release}"#
            ),
        ),
        (
            "0003_check_age.toml",
            format!(
                r#"name = "storm_check"
table = "users"

[[operations]]
kind = "add_check"
name = "users_age_plausible"
check = "age BETWEEN 0 AND 150"
fill = {{ age = "NULL" }}

[backfill]
batch_size = 500
max_rows_per_second = {rate}

{release}"#
            ),
        ),
    ]
}

const PLAN_NAMES: [&str; 3] = ["storm_split", "storm_index", "storm_check"];

/// The seeded age of row `id`: one row in 17 is out of the check's range.
fn seeded_age(id: i64) -> i64 {
    id % 170
}

fn seeded_name(id: i64) -> String {
    format!("F{id} L{id}")
}

/// Where one scenario runs: a database, the way `backfill` reaches it (through the proxy),
/// and the cluster when the scenario restarts it.
struct Site<'a> {
    /// The database, directly (the test's own checks and the application).
    url: String,
    /// The same database through the proxy (`backfill`).
    via_proxy: String,
    proxy: &'a Proxy,
    cluster: Option<&'a Cluster>,
    /// The plan folder.
    dir: PathBuf,
    /// Every run's output, appended.
    log: PathBuf,
}

/// The faults a leg injects, in a seeded order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    Kill,
    Cut,
    HalfClose,
    Stall,
    Slow,
    Refuse,
    Restart,
    /// Another session holds a transaction on the table for a while: DDL waits for it
    /// (`ALTER TABLE` for its lock, `CREATE INDEX CONCURRENTLY` for the transaction to end).
    Block,
}

/// How many of each fault a leg injects (fewer when the run finishes first).
#[derive(Debug, Clone, Copy, Default)]
struct Mix {
    kills: u32,
    cuts: u32,
    half_closes: u32,
    stalls: u32,
    slows: u32,
    refusals: u32,
    restarts: u32,
    blocks: u32,
}

impl Mix {
    fn shuffled(&self, rng: &mut Rng) -> Vec<Fault> {
        let mut all = Vec::new();
        for (n, f) in [
            (self.kills, Fault::Kill),
            (self.cuts, Fault::Cut),
            (self.half_closes, Fault::HalfClose),
            (self.stalls, Fault::Stall),
            (self.slows, Fault::Slow),
            (self.refusals, Fault::Refuse),
            (self.restarts, Fault::Restart),
            (self.blocks, Fault::Block),
        ] {
            all.extend(std::iter::repeat(f).take(n as usize));
        }
        for i in (1..all.len()).rev() {
            let j = rng.between(0, i as u64) as usize;
            all.swap(i, j);
        }
        all
    }
}

/// What a scenario did, for its summary line.
#[derive(Debug, Default)]
struct Tally {
    injected: BTreeMap<&'static str, u32>,
    /// The phase each kill interrupted (the first phase `status` does not show done).
    kills_in: BTreeMap<String, u32>,
    runs: u32,
    /// Every fault in order, with the time since its run started: the sequence to tell again.
    sequence: Vec<String>,
}

impl Tally {
    fn count(&mut self, f: Fault) {
        let name = match f {
            Fault::Kill => "kills",
            Fault::Cut => "connection cuts",
            Fault::HalfClose => "half-closes",
            Fault::Stall => "stalls",
            Fault::Slow => "slowdowns",
            Fault::Refuse => "refusals",
            Fault::Restart => "server restarts",
            Fault::Block => "transactions holding the table",
        };
        *self.injected.entry(name).or_default() += 1;
    }

    /// `15 connection cuts, 4 kills, ...`
    fn faults(&self) -> String {
        self.injected
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn get(&self, name: &str) -> u32 {
        self.injected.get(name).copied().unwrap_or(0)
    }
}

/// The simulated application: two tasks writing through the release of the moment, each on
/// its own rows, reconnecting when the connection is lost, keeping a record of what it
/// committed (and of what it cannot know: a write whose commit the lost connection hid).
#[derive(Default)]
struct Ledger {
    /// Row → the values it may have now (`None`: absent).
    rows: HashMap<i64, Vec<Option<String>>>,
    ops: u64,
    lost: u64,
    /// Errors other than a lost connection: none is acceptable.
    unexpected: Vec<String>,
}

/// 0: the old release only; 1: the old and the new (the sync trigger is in place); 2: the new
/// release only (before the contract).
const OLD: u8 = 0;
const BOTH: u8 = 1;
const NEW: u8 = 2;

struct App {
    ledger: Arc<Mutex<Ledger>>,
    release: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

async fn try_connect(url: &str) -> Option<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.ok()?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Some(client)
}

/// Whether the application's error is the connection's, not the statement's.
fn lost_connection(e: &tokio_postgres::Error) -> bool {
    e.code()
        .map_or(true, |c| backfill::error::connection_lost_code(c.code()))
}

impl App {
    fn start(url: &str, rows: i64, seed: u64) -> App {
        let mut ledger = Ledger::default();
        for id in 1..=rows {
            ledger.rows.insert(id, vec![Some(seeded_name(id))]);
        }
        let ledger = Arc::new(Mutex::new(ledger));
        let release = Arc::new(AtomicU8::new(OLD));
        let stop = Arc::new(AtomicBool::new(false));
        let next_id = Arc::new(AtomicI64::new(1_000_000));
        const TASKS: i64 = 2;
        let tasks = (0..TASKS)
            .map(|task| {
                let (url, ledger, release, stop, next_id) = (
                    url.to_string(),
                    ledger.clone(),
                    release.clone(),
                    stop.clone(),
                    next_id.clone(),
                );
                tokio::spawn(async move {
                    let mut rng = Rng(seed ^ (task as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407));
                    let mut client: Option<Client> = None;
                    let mut n = 0u64;
                    while !stop.load(Ordering::SeqCst) {
                        let Some(c) = client.as_ref().filter(|c| !c.is_closed()) else {
                            client = try_connect(&url).await;
                            if client.is_none() {
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                            continue;
                        };
                        n += 1;
                        let (first, last) = (format!("N{task}x{n}"), format!("M{task}x{n}"));
                        let name = format!("{first} {last}");
                        let mode = release.load(Ordering::SeqCst);
                        let new = mode == NEW || (mode == BOTH && rng.chance(50));
                        // This task's own rows only: the ledger knows the order of its writes.
                        let (id, insert) = if rng.chance(20) {
                            (next_id.fetch_add(1, Ordering::SeqCst), true)
                        } else {
                            let id = rng.between(1, (rows / TASKS) as u64) as i64 * TASKS - task;
                            (id.max(1), false)
                        };
                        let result = match (insert, new) {
                            (false, false) => {
                                c.execute(
                                    "UPDATE users SET full_name = $2 WHERE id = $1",
                                    &[&id, &name],
                                )
                                .await
                            }
                            (false, true) => {
                                c.execute(
                                    "UPDATE users SET first_name = $2, last_name = $3 WHERE id = $1",
                                    &[&id, &first, &last],
                                )
                                .await
                            }
                            (true, false) => {
                                c.execute(
                                    "INSERT INTO users (id, full_name, email) VALUES ($1, $2, $3)",
                                    &[&id, &name, &format!("app{id}@example.org")],
                                )
                                .await
                            }
                            (true, true) => {
                                c.execute(
                                    "INSERT INTO users (id, first_name, last_name, email) VALUES ($1, $2, $3, $4)",
                                    &[&id, &first, &last, &format!("app{id}@example.org")],
                                )
                                .await
                            }
                        };
                        let lost = {
                            let mut l = ledger.lock().unwrap_or_else(|e| e.into_inner());
                            l.ops += 1;
                            match result {
                                Ok(_) => {
                                    l.rows.insert(id, vec![Some(name)]);
                                    false
                                }
                                Err(e) if lost_connection(&e) => {
                                    l.lost += 1;
                                    let may = l.rows.entry(id).or_insert_with(|| vec![None]);
                                    may.push(Some(name));
                                    true
                                }
                                Err(e) => {
                                    let what = format!(
                                        "{} row {id} ({}): {e:?}",
                                        if insert { "insert" } else { "update" },
                                        if new { "new release" } else { "old release" }
                                    );
                                    l.unexpected.push(what);
                                    false
                                }
                            }
                        };
                        if lost {
                            client = None;
                        }
                        tokio::time::sleep(Duration::from_millis(rng.between(4, 12))).await;
                    }
                })
            })
            .collect();
        App {
            ledger,
            release,
            stop,
            tasks,
        }
    }

    async fn stop(self) -> Ledger {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            let _ = t.await;
        }
        Arc::try_unwrap(self.ledger)
            .ok()
            .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
            .unwrap_or_default()
    }
}

/// The table the plans change.
async fn seed_table(client: &Client, rows: i64) {
    client
        .batch_execute(&format!(
            "CREATE TABLE users (id bigint PRIMARY KEY, full_name text, email text, age int);
             INSERT INTO users SELECT g, 'F' || g || ' L' || g, 'u' || g || '@example.org', g % 170
               FROM generate_series(1, {rows}) g;
             ANALYZE users;"
        ))
        .await
        .unwrap_or_else(|e| panic!("seeding users: {e}"));
}

fn write_plans(dir: &Path, rate: u64) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for (file, text) in plans(rate) {
        std::fs::write(dir.join(file), text).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
}

/// `backfill run DIR --release R`, its output appended to the scenario's log.
fn spawn_run(site: &Site<'_>, release: &str) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&site.log)
        .unwrap_or_else(|e| panic!("{}: {e}", site.log.display()));
    let err = log
        .try_clone()
        .unwrap_or_else(|e| panic!("{}: {e}", site.log.display()));
    Command::new(env!("CARGO_BIN_EXE_backfill"))
        .args([
            "run",
            &site.dir.display().to_string(),
            "--release",
            release,
            "--progress",
            "plain",
        ])
        .env("DATABASE_URL", &site.via_proxy)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("starting backfill: {e}"))
}

/// The last lines of the scenario's log, for a failure's message.
fn log_tail(site: &Site) -> String {
    let text = std::fs::read_to_string(&site.log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// What the kill storm and the others check after each fault. `killed`: the pids killed,
/// and when.
async fn check_invariants(client: &Client, site: &Site<'_>, killed: &[(u32, Instant)], rows: i64) {
    check_status(client, site, killed).await;
    check_checkpoints(client, rows).await;
}

/// Every plan `status --json` shows; the command must succeed.
fn status_json(url: &str) -> Vec<serde_json::Value> {
    let out = backfill_cmd(&["status", "--json"], Some(url));
    assert_eq!(out.status.code(), Some(0), "status: {}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("status --json: {e}: {text}"))
}

/// Plan `name` in what [`status_json`] read.
fn plan_in<'a>(plans: &'a [serde_json::Value], name: &str) -> Option<&'a serde_json::Value> {
    plans.iter().find(|p| p["plan"] == name)
}

/// `status --json` tells the truth: a phase it shows done is done in the catalog and the
/// rows, and no process killed longer ago than the heartbeat's lease is shown working.
async fn check_status(client: &Client, site: &Site<'_>, killed: &[(u32, Instant)]) {
    let lease = Duration::from_secs_f64(backfill::state::HEARTBEAT_TTL_SECONDS + 2.0);
    for p in &status_json(&site.url) {
        let name = p["plan"].as_str().unwrap_or("");
        for proc in p["processes"].as_array().into_iter().flatten() {
            let pid = proc["pid"].as_u64().unwrap_or(0) as u32;
            if let Some((_, at)) = killed.iter().find(|(k, _)| *k == pid) {
                assert!(
                    at.elapsed() < lease,
                    "status shows process {pid} working on {name}, killed {:?} ago: {p:#}",
                    at.elapsed()
                );
            }
        }
        let done: Vec<&str> = p["phases"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|ph| ph["status"] == "done")
            .filter_map(|ph| ph["phase"].as_str())
            .collect();
        let contracted = done.contains(&"contract");
        for &phase in &done {
            if let Some(wrong) = phase_untrue(client, name, phase, contracted).await {
                panic!("status shows {name} {phase} done, but {wrong}: {p:#}");
            }
        }
    }
}

async fn has_column(client: &Client, column: &str) -> bool {
    count(
        client,
        &format!("SELECT count(*) FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = '{column}' AND NOT attisdropped"),
    )
    .await
        == 1
}

/// Why `phase` of `plan` is not done in the database, if it is not (what a phase added that
/// the contract removes is only looked for before the contract).
async fn phase_untrue(
    client: &Client,
    plan: &str,
    phase: &str,
    contracted: bool,
) -> Option<String> {
    let split_trigger = "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'users'::regclass AND tgname = 'bf_storm_split_sync'";
    let check_trigger = "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'users'::regclass AND tgname = 'bf_storm_check_sync'";
    let check = "SELECT count(*) FROM pg_constraint WHERE conrelid = 'users'::regclass AND conname = 'users_age_plausible'";
    let full_name = has_column(client, "full_name").await;
    let wrong = match (plan, phase) {
        ("storm_split", "expand") => {
            !(has_column(client, "first_name").await && has_column(client, "last_name").await)
        }
        ("storm_split", "dual-write") => !contracted && count(client, split_trigger).await != 1,
        ("storm_split", "backfill") => {
            full_name
                && count(
                    client,
                    "SELECT count(*) FROM users WHERE (first_name, last_name) IS DISTINCT FROM (split_part(full_name, ' ', 1), split_part(full_name, ' ', 2))",
                )
                .await
                    != 0
        }
        ("storm_split", "contract") => full_name || count(client, split_trigger).await != 0,
        ("storm_index", "expand") => {
            count(
                client,
                "SELECT count(*) FROM pg_index WHERE indexrelid = to_regclass('users_email_idx') AND indisvalid",
            )
            .await
                != 1
        }
        // Expand makes the undo table; the constraint comes NOT VALID with the trigger that
        // keeps writes inside it, in dual-write.
        ("storm_check", "expand") => {
            !contracted
                && count(
                    client,
                    "SELECT count(*) FROM pg_class WHERE oid = to_regclass('backfill.bf_storm_check_undo')",
                )
                .await
                    != 1
        }
        ("storm_check", "dual-write") => {
            count(client, check).await != 1
                || (!contracted && count(client, check_trigger).await != 1)
        }
        ("storm_check", "backfill") => {
            count(
                client,
                "SELECT count(*) FROM users WHERE NOT (age BETWEEN 0 AND 150)",
            )
            .await
                != 0
        }
        ("storm_check", "contract") => {
            count(client, &format!("{check} AND convalidated")).await != 1
                || count(client, check_trigger).await != 0
        }
        _ => false,
    };
    wrong.then(|| format!("the database does not show it ({plan} {phase})"))
}

/// The split's checkpoints agree with the rows: every row behind a cursor is in sync, and the
/// rows counted never exceed the rows behind the cursors (a chunk counted twice would), by
/// at most the rows the application inserted behind a cursor after it passed.
async fn check_checkpoints(client: &Client, rows: i64) {
    let segments = count(
        client,
        "SELECT count(*) FROM pg_class WHERE oid = to_regclass('backfill.segments')",
    )
    .await;
    // The state schema (its segments table too) comes before the split's expand, and the
    // contract drops `full_name`.
    if segments == 0
        || !has_column(client, "first_name").await
        || !has_column(client, "full_name").await
    {
        return;
    }
    let row = client
        .query_one(
            "SELECT coalesce(sum(s.rows_seen), 0)::int8,
                    coalesce(sum((SELECT count(*) FROM users u
                                   WHERE u.id > coalesce(s.lower_bound[1]::int8, -9223372036854775808)
                                     AND u.id <= s.cursor[1]::int8)), 0)::int8,
                    coalesce(sum((SELECT count(*) FROM users u
                                   WHERE u.id > coalesce(s.lower_bound[1]::int8, -9223372036854775808)
                                     AND u.id <= s.cursor[1]::int8
                                     AND (u.first_name, u.last_name) IS DISTINCT FROM
                                         (split_part(u.full_name, ' ', 1), split_part(u.full_name, ' ', 2)))), 0)::int8
               FROM backfill.segments s WHERE s.plan = 'storm_split'",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let (seen, behind, wrong): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(wrong, 0, "rows behind a cursor out of sync");
    let inserted = count(
        client,
        &format!("SELECT count(*) FROM users WHERE id > {rows}"),
    )
    .await;
    assert!(
        seen <= behind && behind - seen <= inserted,
        "{seen} rows counted, {behind} behind the cursors, {inserted} inserted by the application"
    );
}

/// Every row against the application's ledger, and the seeded ages against the check.
async fn check_rows(client: &Client, ledger: &Ledger, rows: i64) -> i64 {
    assert!(
        ledger.unexpected.is_empty(),
        "the application's writes failed: {:#?}",
        ledger.unexpected
    );
    let got = client
        .query(
            "SELECT id, concat_ws(' ', first_name, last_name), age FROM users ORDER BY id",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut seen = std::collections::HashSet::new();
    let mut wrong = Vec::new();
    for r in &got {
        let (id, name, age): (i64, String, Option<i32>) = (r.get(0), r.get(1), r.get(2));
        seen.insert(id);
        match ledger.rows.get(&id) {
            Some(may) if may.contains(&Some(name.clone())) => {}
            may => wrong.push(format!("row {id}: {name:?}, expected one of {may:?}")),
        }
        let want_age = (id <= rows)
            .then(|| seeded_age(id))
            .filter(|a| (0..=150).contains(a));
        if age.map(i64::from) != want_age {
            wrong.push(format!("row {id}: age {age:?}, expected {want_age:?}"));
        }
    }
    for (id, may) in &ledger.rows {
        if !seen.contains(id) && !may.contains(&None) {
            wrong.push(format!("row {id} is missing (expected one of {may:?})"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} rows wrong, the first: {:#?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );
    got.len() as i64
}

/// No DDL step finished twice, the catalog equals `reference`, nothing of the transition is
/// left.
async fn check_catalog(client: &Client, reference: &[String]) {
    let twice = crate::support::rows(
        client,
        "SELECT plan || ' ' || phase || ' step ' || step || ': ' || count(*) FROM backfill.events
          WHERE kind = 'step finished' GROUP BY plan, phase, step HAVING count(*) > 1",
    )
    .await;
    assert!(twice.is_empty(), "DDL steps finished twice: {twice:?}");
    assert_eq!(
        catalog(client).await,
        reference,
        "the catalog after the storm"
    );
}

/// The table's columns, constraints, indexes and triggers, and the functions and relations
/// outside the system schemas: [`snapshot`] without the rows.
async fn catalog(client: &Client) -> Vec<String> {
    snapshot(client, "users", "id")
        .await
        .into_iter()
        .filter(|l| !l.starts_with("row "))
        .collect()
}

/// Both releases run without faults on database `db` (made here, at `db_url`, and dropped):
/// the catalog to expect.
async fn reference_catalog(admin: &Client, db_url: &str, db: &str, dir: &Path) -> Vec<String> {
    admin
        .batch_execute(&format!("CREATE DATABASE \"{db}\" TEMPLATE template0"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let client = crate::support::connect_url(db_url).await;
    seed_table(&client, 500).await;
    for release in ["1.0.0", "2.0.0"] {
        let out = backfill_cmd(
            &[
                "run",
                &dir.display().to_string(),
                "--release",
                release,
                "--progress",
                "quiet",
            ],
            Some(db_url),
        );
        assert_eq!(out.status.code(), Some(0), "reference run: {}", show(&out));
    }
    let catalog = catalog(&client).await;
    drop(client);
    let _ = admin
        .batch_execute(&format!("DROP DATABASE \"{db}\" WITH (FORCE)"))
        .await;
    catalog
}

/// Waits for a run, at most `limit`.
async fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One release's run under `faults`: the command is started again after each kill, as an
/// orchestrator would; any other fault must not end a run. Returns when a run exits 0.
#[allow(clippy::too_many_arguments)]
async fn leg(
    site: &Site<'_>,
    client: &mut Client,
    app: &App,
    release: &str,
    faults: Vec<Fault>,
    rng: &mut Rng,
    tally: &mut Tally,
    killed: &mut Vec<(u32, Instant)>,
    rows: i64,
) {
    let mut faults = faults.into_iter().peekable();
    loop {
        let mut child = spawn_run(site, release);
        tally.runs += 1;
        let started = Instant::now();
        let status = loop {
            let Some(&fault) = faults.peek() else {
                match wait_exit(&mut child, Duration::from_secs(300)).await {
                    Some(s) => break s,
                    None => panic!("the run did not end in 300 s:\n{}", log_tail(site)),
                }
            };
            let delay = match fault {
                // Most land in the backfill; one in three early, where the runner starts,
                // takes its lock and runs its DDL.
                Fault::Kill if rng.chance(35) => rng.between(20, 300),
                Fault::Kill => rng.between(300, 1200),
                _ => rng.between(150, 1000),
            };
            let wake = Instant::now() + Duration::from_millis(delay);
            let mut ended = None;
            while Instant::now() < wake {
                if let Ok(Some(s)) = child.try_wait() {
                    ended = Some(s);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if let Some(s) = ended {
                break s;
            }
            faults.next();
            tally.count(fault);
            tally.sequence.push(format!(
                "{release} run {} +{}ms {fault:?}",
                tally.runs,
                started.elapsed().as_millis()
            ));
            match fault {
                Fault::Kill => {
                    let pid = child.id();
                    let _ = child.kill();
                    let _ = child.wait();
                    killed.push((pid, Instant::now()));
                    let phase = in_progress(site, release).await;
                    *tally.kills_in.entry(phase).or_default() += 1;
                }
                Fault::Cut => site.proxy.cut(),
                Fault::HalfClose => site.proxy.half_close(),
                Fault::Stall => site
                    .proxy
                    .stall_for(Duration::from_millis(rng.between(500, 3000))),
                Fault::Slow => site.proxy.slow_for(
                    Duration::from_millis(rng.between(5, 50)),
                    Duration::from_millis(rng.between(1000, 3000)),
                ),
                Fault::Refuse => {
                    site.proxy
                        .refuse_for(Duration::from_millis(rng.between(500, 3000)));
                    site.proxy.cut();
                }
                Fault::Block => {
                    let url = site.url.clone();
                    let hold = Duration::from_millis(rng.between(1000, 4000));
                    tokio::spawn(async move {
                        let Some(mut c) = try_connect(&url).await else {
                            return;
                        };
                        let Ok(tx) = c.transaction().await else {
                            return;
                        };
                        let _ = tx.query("SELECT 1 FROM users WHERE id = 1", &[]).await;
                        tokio::time::sleep(hold).await;
                        let _ = tx.commit().await;
                    });
                }
                Fault::Restart => {
                    let cluster = site
                        .cluster
                        .unwrap_or_else(|| panic!("a restart needs the scenario's own cluster"));
                    cluster.restart().unwrap_or_else(|e| panic!("restart: {e}"));
                }
            }
            // A restart ends the test's own session too, whether it noticed yet or not.
            if client.is_closed() || fault == Fault::Restart {
                *client = reconnect(&site.url).await;
            }
            follow_release(client, app).await;
            check_invariants(client, site, killed, rows).await;
            if fault == Fault::Kill {
                break child.wait().unwrap_or_else(|e| panic!("{e}"));
            }
        };
        if client.is_closed() {
            *client = reconnect(&site.url).await;
        }
        follow_release(client, app).await;
        if status.code() == Some(0) {
            return;
        }
        // Killed (no exit code): start it again. Anything else is a failed run.
        assert!(
            status.code().is_none(),
            "a run ended with {status} under {:?}:\n{}",
            tally.sequence.last(),
            log_tail(site)
        );
    }
}

async fn reconnect(url: &str) -> Client {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(c) = try_connect(url).await {
            return c;
        }
        assert!(Instant::now() < deadline, "the server did not come back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Lets the application write through the new release once the split's trigger is in place.
async fn follow_release(client: &Client, app: &App) {
    if app.release.load(Ordering::SeqCst) == OLD
        && count(
            client,
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'users'::regclass AND tgname = 'bf_storm_split_sync'",
        )
        .await
            == 1
    {
        app.release.store(BOTH, Ordering::SeqCst);
    }
}

/// The first plan and phase `status` does not show done at `release`, e.g. `storm_split
/// backfill` (a contract waiting for 2.0.0 counts as done at 1.0.0).
async fn in_progress(site: &Site<'_>, release: &str) -> String {
    let plans = status_json(&site.url);
    for name in PLAN_NAMES {
        let Some(plan) = plan_in(&plans, name) else {
            return format!("{name} start");
        };
        let phase = plan["phase"].as_str().unwrap_or("?");
        if phase != "done" && !(phase == "contract" && release == "1.0.0") {
            return format!("{name} {phase}");
        }
    }
    "done".to_string()
}

/// One scenario: a fresh database, the application, release 1.0.0 under `first`, release
/// 2.0.0 (the application on the new release only) under `second`, then every check.
struct Scenario {
    name: String,
    seed: u64,
    rows: i64,
    rate: u64,
    first: Mix,
    second: Mix,
}

async fn play(s: &Scenario, cluster: Option<&Cluster>) -> Tally {
    // A database directly, and the scenario's through a proxy on `port`.
    let url_of = |db: &str| match cluster {
        Some(c) => c.url(db),
        None => crate::support::server().url(db),
    };
    let url = url_of(&s.name);
    let target = match cluster {
        Some(_) => addr_of(&url),
        None => crate::support::server().addr(),
    };
    let via_proxy =
        |port: u16| format!("host=127.0.0.1 port={port} user=postgres dbname={}", s.name);
    let admin = crate::support::connect_url(&url_of("postgres")).await;
    admin
        .batch_execute(&format!(
            "CREATE DATABASE \"{}\" TEMPLATE template0",
            s.name
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let dir =
        std::env::temp_dir().join(format!("backfill-storm-{}-{}", std::process::id(), s.name));
    let _ = std::fs::remove_dir_all(&dir);
    write_plans(&dir.join("plans"), s.rate);
    let reference_db = format!("{}_ref", s.name);
    let reference = reference_catalog(
        &admin,
        &url_of(&reference_db),
        &reference_db,
        &dir.join("plans"),
    )
    .await;
    let proxy = Proxy::start(target);
    let site = Site {
        via_proxy: via_proxy(proxy.port),
        url: url.clone(),
        proxy: &proxy,
        cluster,
        dir: dir.join("plans"),
        log: dir.join("runs.log"),
    };
    let mut client = crate::support::connect_url(&url).await;
    seed_table(&client, s.rows).await;
    let app = App::start(&url, s.rows, s.seed);
    let mut rng = Rng(s.seed);
    let mut tally = Tally::default();
    let mut killed = Vec::new();
    println!("storm {}: seed {}", s.name, s.seed);
    let first = s.first.shuffled(&mut rng);
    leg(
        &site,
        &mut client,
        &app,
        "1.0.0",
        first,
        &mut rng,
        &mut tally,
        &mut killed,
        s.rows,
    )
    .await;
    // Everything before the contract is done and true.
    let plans = status_json(&url);
    for name in PLAN_NAMES {
        assert_eq!(
            plan_in(&plans, name).map(|p| p["phase"].clone()),
            Some(serde_json::json!("contract")),
            "after release 1.0.0: {plans:#?}"
        );
    }
    // The old release is gone before the contract.
    app.release.store(NEW, Ordering::SeqCst);
    let second = s.second.shuffled(&mut rng);
    leg(
        &site,
        &mut client,
        &app,
        "2.0.0",
        second,
        &mut rng,
        &mut tally,
        &mut killed,
        s.rows,
    )
    .await;
    let ledger = app.stop().await;
    if client.is_closed() {
        client = reconnect(&url).await;
    }
    let after = Instant::now();
    // No process shown working once the lease of the last killed one is over.
    loop {
        let plans = status_json(&url);
        let working: Vec<_> = plans
            .iter()
            .flat_map(|p| p["processes"].as_array().cloned().unwrap_or_default())
            .collect();
        for name in PLAN_NAMES {
            assert_eq!(
                plan_in(&plans, name).map(|p| p["phase"].clone()),
                Some(serde_json::json!("done")),
                "after release 2.0.0: {plans:#?}"
            );
        }
        if working.is_empty() {
            break;
        }
        assert!(
            after.elapsed().as_secs_f64() < backfill::state::HEARTBEAT_TTL_SECONDS + 2.0,
            "processes still shown working after every run ended: {working:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    check_status(&client, &site, &killed).await;
    let n = check_rows(&client, &ledger, s.rows).await;
    check_catalog(&client, &reference).await;
    println!(
        "storm {}: seed {}: {} in {} runs over {n} rows ({} application writes, {} lost with their connection); kills landed in {:?}; 0 rows wrong",
        s.name,
        s.seed,
        tally.faults(),
        tally.runs,
        ledger.ops,
        ledger.lost,
        tally.kills_in,
    );
    drop(client);
    let _ = admin
        .batch_execute(&format!("DROP DATABASE \"{}\" WITH (FORCE)", s.name))
        .await;
    let _ = std::fs::remove_dir_all(&dir);
    tally
}

/// The TCP address in a `host=... port=...` connection string of the scenario's cluster.
fn addr_of(url: &str) -> std::net::SocketAddr {
    let config: tokio_postgres::Config = url.parse().unwrap_or_else(|e| panic!("{e}"));
    let port = config.get_ports().first().copied().unwrap_or(5432);
    std::net::SocketAddr::from(([127, 0, 0, 1], port))
}

/// A cluster of the scenario's own, to restart: durable (`fsync` and `synchronous_commit`
/// on), so that a commit the application saw survives the crash, as on a real server.
fn own_cluster() -> Cluster {
    Cluster::start(&ClusterOptions {
        unsafe_fast: false,
        watchdog: true,
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn a_kill_storm_across_every_phase_leaves_every_row_and_the_catalog_right() {
    let tally = play(
        &Scenario {
            name: "storm_kills".into(),
            seed: 7,
            // 80,000 rows to walk at 8,000 rows/s in release 1.0.0: enough for dozens of
            // kills at about half a second each, whatever the machine's speed.
            rows: 40_000,
            rate: 8_000,
            first: Mix {
                kills: 30,
                blocks: 6,
                ..Mix::default()
            },
            second: Mix {
                kills: 8,
                blocks: 2,
                ..Mix::default()
            },
        },
        None,
    )
    .await;
    assert!(
        tally.get("kills") >= 24,
        "only {} kills landed before the runs finished: {:?}",
        tally.get("kills"),
        tally.sequence
    );
    let in_backfill: u32 = tally
        .kills_in
        .iter()
        .filter(|(k, _)| k.ends_with("backfill"))
        .map(|(_, v)| v)
        .sum();
    assert!(in_backfill >= 5, "kills landed in {:?}", tally.kills_in);
}

#[tokio::test]
async fn connections_cut_half_closed_stalled_slowed_and_refused_never_fail_a_run() {
    let tally = play(
        &Scenario {
            name: "storm_network".into(),
            seed: 11,
            rows: 30_000,
            rate: 8_000,
            first: Mix {
                cuts: 12,
                half_closes: 4,
                stalls: 3,
                slows: 3,
                refusals: 3,
                ..Mix::default()
            },
            second: Mix {
                cuts: 3,
                half_closes: 1,
                refusals: 1,
                ..Mix::default()
            },
        },
        None,
    )
    .await;
    assert_eq!(tally.runs, 2, "every run must finish on its own");
    assert!(tally.get("connection cuts") >= 6, "{:?}", tally.sequence);
}

#[tokio::test]
async fn a_server_restarted_again_and_again_with_immediate_shutdown_never_fails_a_run() {
    let cluster = own_cluster();
    let tally = play(
        &Scenario {
            name: "storm_restarts".into(),
            seed: 13,
            rows: 30_000,
            rate: 8_000,
            first: Mix {
                restarts: 4,
                ..Mix::default()
            },
            second: Mix {
                restarts: 1,
                ..Mix::default()
            },
        },
        Some(&cluster),
    )
    .await;
    assert_eq!(tally.runs, 2, "every run must finish on its own");
    assert!(tally.get("server restarts") >= 3, "{:?}", tally.sequence);
    cluster.stop();
}

/// `BACKFILL_SOAK=1h` (`s`, `m`, `h`): rounds of every fault at random until then.
fn soak_budget() -> Option<Duration> {
    let v = std::env::var("BACKFILL_SOAK").ok()?;
    let v = v.trim();
    let (n, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len()));
    let n: u64 = n
        .parse()
        .unwrap_or_else(|_| panic!("BACKFILL_SOAK={v}: a number and s, m or h"));
    Some(Duration::from_secs(match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => panic!("BACKFILL_SOAK={v}: a number and s, m or h"),
    }))
}

/// The rounds the suite plays without `BACKFILL_SOAK`: 1, and the seeds whose rounds found
/// something (208: the checkpoints read before the split's expand made its columns; 302: a
/// check constraint looked for after expand, which only dual-write adds).
const FIXED_SEEDS: [u64; 3] = [1, 208, 302];

#[tokio::test]
async fn soak_with_every_fault_at_random() {
    let budget = soak_budget();
    let first_seed: u64 = std::env::var("BACKFILL_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let cluster = own_cluster();
    let started = Instant::now();
    let mut total = Tally::default();
    let mut rows = 0;
    // Without a budget: the fixed rounds, the seeds of earlier soaks' findings kept among them.
    let mut fixed = FIXED_SEEDS.iter().copied();
    let mut next = first_seed;
    let mut played = Vec::new();
    loop {
        let seed = match budget {
            Some(_) => {
                next += 1;
                next - 1
            }
            None => match fixed.next() {
                Some(s) => s,
                None => break,
            },
        };
        played.push(seed);
        let mut rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D));
        let mut mix = || Mix {
            kills: rng.between(0, 8) as u32,
            cuts: rng.between(0, 6) as u32,
            half_closes: rng.between(0, 2) as u32,
            stalls: rng.between(0, 2) as u32,
            slows: rng.between(0, 2) as u32,
            refusals: rng.between(0, 2) as u32,
            restarts: rng.between(0, 2) as u32,
            blocks: rng.between(0, 2) as u32,
        };
        let (first, second) = (mix(), mix());
        let scenario = Scenario {
            name: format!("soak_{seed}"),
            seed,
            rows: 20_000,
            rate: 10_000,
            first,
            second,
        };
        let tally = play(&scenario, Some(&cluster)).await;
        rows += scenario.rows;
        for (k, v) in tally.injected {
            *total.injected.entry(k).or_default() += v;
        }
        total.runs += tally.runs;
        if budget.is_some_and(|b| started.elapsed() >= b) {
            break;
        }
    }
    let seeds = match (played.first(), played.last()) {
        (Some(a), Some(b)) if played.windows(2).all(|w| w[1] == w[0] + 1) => format!("{a}..={b}"),
        _ => format!("{played:?}"),
    };
    println!(
        "soak: {} rounds (seeds {seeds}), {} in {} runs over {rows} rows, {:.0} s: 0 rows wrong",
        played.len(),
        total.faults(),
        total.runs,
        started.elapsed().as_secs_f64()
    );
    cluster.stop();
}
