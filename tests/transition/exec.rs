//! One case on a database of its own: the table and its seeded rows, then the releases in
//! order through the real binary (`backfill run DIR --release R`), with the application's
//! statements before, between and during them, and the checks after each step. A case either
//! generates its statements (recording them) or replays a recorded script, which is how a
//! failure is shrunk.

use std::collections::BTreeMap;
use std::process::Child;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::check;
use super::gen::{Gen, Stmt, Writer, CLIENTS};
use super::kinds::{Kind, CONTRACT};
use super::model::{Model, Op, Row, Val};
use crate::support::{backfill_cmd, backfill_spawn, finish, show, Plans, TestDb};

/// Statements while the backfill is held (all rows not yet backfilled).
const HELD: (i64, i64) = (20, 40);
/// At most this many statements while the backfill runs.
const DURING_MAX: usize = 60;
/// The pause before each statement while the backfill runs, so that both go on together.
const PACE: Duration = Duration::from_millis(3);
/// Statements before the first expand.
const BEFORE: (i64, i64) = (6, 12);
/// Statements while the releases of the transition write side by side.
const TRANSITION: (i64, i64) = (25, 50);
/// Seeded rows.
const SEED_ROWS: (i64, i64) = (50, 150);
/// How long the backfill may take to reach the gate.
const GATE_TIMEOUT: Duration = Duration::from_secs(60);

static CASES: AtomicUsize = AtomicUsize::new(0);

/// What a case ran: the seeded rows and the statements of each group, in order.
#[derive(Clone)]
pub struct Script {
    pub rows: Vec<(i64, Vec<(&'static str, Val)>)>,
    /// The identity's value after seeding (kept when seeded rows are shrunk away).
    pub last_id: i64,
    pub groups: Vec<Vec<Stmt>>,
}

/// What failed, where: two failures with the same signature are the same failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    /// `statement`, `affected`, `run`, `rows`, `agree`, `verify` or `catalog`.
    pub what: &'static str,
    pub at: String,
    /// The SQLSTATE of a failed statement.
    pub code: String,
}

pub struct Failure {
    pub sig: Signature,
    pub detail: String,
    /// Statements run when it showed.
    pub after: usize,
    /// The row a failed check names, and the statements (their places in the script) that
    /// reached it.
    pub row: Option<(i64, Vec<usize>)>,
}

pub struct Outcome {
    pub script: Script,
    pub failures: Vec<Failure>,
    /// False when a replayed script wrote, during a backfill, what the model cannot predict.
    pub valid: bool,
    pub notes: Vec<String>,
}

pub enum Mode {
    Generate(Gen),
    /// Replays a script, stopping at the first failure with the signature.
    Replay(Script, Option<Signature>),
}

/// A step of a case.
pub enum Slot {
    /// A group of statements by the first `n` releases.
    Writes(String, usize),
    /// `run --release` of plan `p`'s expand release: a group while its backfill is held, a
    /// group while it runs.
    Expand(usize),
    Contract,
}

/// The steps of a kind's case.
pub fn layout(kind: &Kind) -> Vec<Slot> {
    let mut out = vec![Slot::Writes("before expand".to_string(), 1)];
    for (i, p) in kind.plans.iter().enumerate() {
        out.push(Slot::Expand(i));
        out.push(Slot::Writes(format!("after release {}", p.expand), i + 2));
    }
    out.push(Slot::Contract);
    out
}

/// The labels of the groups of statements of a case, in order.
pub fn group_labels(kind: &Kind) -> Vec<String> {
    let mut out = Vec::new();
    for slot in layout(kind) {
        match slot {
            Slot::Writes(at, _) => out.push(at),
            Slot::Expand(p) => {
                let r = kind.plans[p].expand;
                out.push(held_label(r));
                out.push(during_label(r));
            }
            Slot::Contract => {}
        }
    }
    out
}

fn held_label(release: &str) -> String {
    format!("release {release} expanded, its backfill held")
}

fn during_label(release: &str) -> String {
    format!("during the backfill of release {release}")
}

/// How many statements a group has.
enum Count<'c> {
    Fixed((i64, i64)),
    /// Until the backfill exits (at most [`DURING_MAX`]).
    Until(&'c mut Child),
}

struct Case<'k> {
    kind: &'k Kind,
    db: TestDb,
    clients: Vec<Client>,
    dir: Plans,
    model: Model,
    gen: Option<Gen>,
    replay: Option<Script>,
    target: Option<Signature>,
    script: Script,
    failures: Vec<Failure>,
    valid: bool,
    stop: bool,
    ran: usize,
    notes: Vec<String>,
    /// What reached each row: its seeding, then every statement, for failure messages.
    history: BTreeMap<i64, Vec<(Option<usize>, String)>>,
}

/// Runs one case.
pub async fn run_case(kind: &Kind, mode: Mode) -> Outcome {
    let mut case = Case::new(kind, mode).await;
    case.seed().await;
    for slot in layout(kind) {
        if case.stop {
            break;
        }
        match slot {
            Slot::Writes(at, n) => {
                case.group(
                    &at,
                    n,
                    Count::Fixed(if n == 1 { BEFORE } else { TRANSITION }),
                )
                .await;
                if n > 1 && !case.stop {
                    case.check_transition(&at).await;
                }
            }
            Slot::Expand(p) => case.expand(p).await,
            Slot::Contract => case.contract().await,
        }
    }
    Outcome {
        script: case.script,
        failures: case.failures,
        valid: case.valid,
        notes: case.notes,
    }
}

/// The SQLSTATE and the message of a failed statement.
fn db_error(e: &tokio_postgres::Error) -> (String, String) {
    match e.as_db_error() {
        Some(d) => (
            d.code().code().to_string(),
            format!(
                "{}: {}{}",
                d.code().code(),
                d.message(),
                d.detail().map(|x| format!(" ({x})")).unwrap_or_default()
            ),
        ),
        None => (String::new(), e.to_string()),
    }
}

impl<'k> Case<'k> {
    async fn new(kind: &'k Kind, mode: Mode) -> Case<'k> {
        let n = CASES.fetch_add(1, Ordering::SeqCst);
        let db = TestDb::new(&format!("transition_{}", kind.name)).await;
        let admin = db.connect().await;
        admin
            .batch_execute(&kind.ddl())
            .await
            .unwrap_or_else(|e| panic!("{}: creating the table: {e}", kind.name));
        let mut clients = vec![admin];
        for _ in 1..CLIENTS {
            clients.push(db.connect().await);
        }
        let (columns, defaults) = kind.old_columns();
        let plans = kind.plans.iter().map(|p| p.model.clone()).collect();
        let (gen, replay, target) = match mode {
            Mode::Generate(g) => (Some(g), None, None),
            Mode::Replay(s, t) => (None, Some(s), t),
        };
        Case {
            kind,
            dir: Plans::new(&format!("transition-{}-{n}", kind.name)),
            db,
            clients,
            model: Model::new(columns, defaults, plans),
            gen,
            replay,
            target,
            script: Script {
                rows: Vec::new(),
                last_id: 0,
                groups: Vec::new(),
            },
            failures: Vec::new(),
            valid: true,
            stop: false,
            ran: 0,
            notes: Vec::new(),
            history: BTreeMap::new(),
        }
    }

    /// The seeded rows: explicit keys, then the identity moved past them.
    async fn seed(&mut self) {
        let (rows, last_id) = match (&self.replay, &mut self.gen) {
            (Some(s), _) => (s.rows.clone(), s.last_id),
            (None, Some(g)) => {
                let n = g.rng.range(SEED_ROWS.0, SEED_ROWS.1);
                let rows = (1..=n).map(|id| (id, seed_row(self.kind, g))).collect();
                (rows, n)
            }
            (None, None) => unreachable!("a case generates or replays"),
        };
        if let Some(sql) = seed_sql(&rows) {
            self.clients[0]
                .batch_execute(&sql)
                .await
                .unwrap_or_else(|e| panic!("{}: seeding: {e}\n{sql}", self.kind.name));
        }
        self.clients[0]
            .batch_execute(&format!(
                "SELECT setval(pg_get_serial_sequence('t', 'id'), {last_id}); ANALYZE t;"
            ))
            .await
            .unwrap_or_else(|e| panic!("{}: setval: {e}", self.kind.name));
        for (id, cols) in &rows {
            let row: Row = cols.iter().cloned().collect();
            self.model.rows.insert(*id, row);
            let v: Vec<String> = cols
                .iter()
                .map(|(c, v)| format!("{c}={}", v.literal()))
                .collect();
            let line = format!("seeded: {}", v.join(", "));
            self.history.insert(*id, vec![(None, line)]);
        }
        self.script.rows = rows;
        self.script.last_id = last_id;
    }

    fn fail(&mut self, what: &'static str, at: &str, code: String, detail: String) {
        let sig = Signature {
            what,
            at: at.to_string(),
            code,
        };
        if self.target.as_ref() == Some(&sig) || what != "statement" {
            self.stop = true;
        }
        self.failures.push(Failure {
            sig,
            detail,
            after: self.ran,
            row: None,
        });
    }

    /// A failed check, with what reached the row it names.
    fn mismatch(&mut self, what: &'static str, at: &str, (id, text): check::Mismatch) {
        let mut detail = text;
        let mut row = None;
        if let Some((id, h)) = id.and_then(|id| self.history.get(&id).map(|h| (id, h))) {
            detail.push_str(&format!("\n      what reached id {id}:"));
            for (_, line) in h {
                detail.push_str(&format!("\n        {line}"));
            }
            row = Some((id, h.iter().filter_map(|(i, _)| *i).collect()));
        }
        self.fail(what, at, String::new(), detail);
        if let Some(f) = self.failures.last_mut() {
            f.row = row;
        }
    }

    /// One group of statements by the first `n` releases.
    async fn group(&mut self, at: &str, n: usize, mut count: Count<'_>) {
        self.script.groups.push(Vec::new());
        let gi = self.script.groups.len() - 1;
        if let Some(script) = &self.replay {
            let paced = matches!(count, Count::Until(_));
            for stmt in script.groups.get(gi).cloned().unwrap_or_default() {
                if self.stop {
                    break;
                }
                if paced {
                    tokio::time::sleep(PACE).await;
                }
                self.exec(stmt, at).await;
            }
            return;
        }
        let kind = self.kind;
        let writers: Vec<&Writer> = kind.writers[..n].iter().collect();
        let planned = match &count {
            Count::Fixed((lo, hi)) => self.gen_mut().rng.range(*lo, *hi) as usize,
            Count::Until(_) => DURING_MAX,
        };
        for _ in 0..planned {
            if self.stop {
                break;
            }
            if let Count::Until(child) = &mut count {
                if !matches!(child.try_wait(), Ok(None)) {
                    break;
                }
                tokio::time::sleep(PACE).await;
            }
            // Writes whose outcome depends on where the backfill is are drawn again.
            let stmt = {
                let gen = self.gen.as_mut().expect("a generating case");
                let mut stmt = gen.stmt(&writers, &self.model);
                for _ in 0..20 {
                    if !self.model.ambiguous(&stmt.op) {
                        break;
                    }
                    stmt = gen.stmt(&writers, &self.model);
                }
                stmt
            };
            if !self.model.ambiguous(&stmt.op) {
                self.exec(stmt, at).await;
            }
        }
    }

    fn gen_mut(&mut self) -> &mut Gen {
        self.gen.as_mut().expect("a generating case")
    }

    /// Sends one statement, applies it to the model when it succeeded, records it.
    async fn exec(&mut self, stmt: Stmt, at: &str) {
        if self.model.ambiguous(&stmt.op) {
            // Only a shrunk script gets here: its outcome cannot be predicted.
            self.valid = false;
            self.stop = true;
            return;
        }
        let sql = stmt.sql();
        let client = &self.clients[stmt.client % CLIENTS];
        self.ran += 1;
        let result = match &stmt.op {
            Op::Insert(_) => client
                .query_one(&sql, &[])
                .await
                .map(|r| (Some(r.get::<_, i64>(0)), 1)),
            _ => client.execute(&sql, &[]).await.map(|n| (None, n)),
        };
        let who = format!("connection {}, release {}", stmt.client + 1, stmt.writer);
        let reached = match (&stmt.op, &result) {
            (Op::Insert(_), Ok((Some(id), _))) => vec![*id],
            (Op::Insert(_), _) => Vec::new(),
            (Op::Update(f, _) | Op::Delete(f), _) => self.model.matching(f),
        };
        let outcome = match &result {
            Ok(_) => String::new(),
            Err(e) => format!(" -- failed: {}", db_error(e).1),
        };
        for id in reached {
            let line = format!("#{} [{at}] {who}: {sql}{outcome}", self.ran);
            self.history
                .entry(id)
                .or_default()
                .push((Some(self.ran - 1), line));
        }
        match result {
            Ok((id, changed)) => {
                let expected = match &stmt.op {
                    Op::Insert(_) => 1,
                    Op::Update(f, _) | Op::Delete(f) => self.model.matching(f).len() as u64,
                };
                self.model.apply(&stmt.op, id);
                if changed != expected {
                    let d = format!(
                        "{who}: `{sql}` reached {changed} rows; the model expected {expected}"
                    );
                    self.fail("affected", at, String::new(), d);
                }
            }
            Err(e) => {
                let (code, msg) = db_error(&e);
                self.fail("statement", at, code, format!("{who}: `{sql}`: {msg}"));
            }
        }
        if let Some(g) = self.script.groups.last_mut() {
            g.push(stmt);
        }
    }

    /// Takes the advisory lock the backfill takes before it splits the table (`backfill plan
    /// <name>`), so the backfill waits there, after expand and dual-write are in place.
    async fn hold(&self, plan: &str) -> Client {
        let gate = self.db.connect().await;
        gate.execute(
            "SELECT pg_advisory_lock(hashtext('backfill plan ' || $1::text))",
            &[&plan],
        )
        .await
        .unwrap_or_else(|e| panic!("taking the gate: {e}"));
        gate
    }

    /// `backfill run DIR --release R` of plan `p`: while the backfill waits at the gate, a
    /// group of statements on rows not backfilled yet; then the backfill goes on while another
    /// group writes; then the checks.
    async fn expand(&mut self, p: usize) {
        let kind = self.kind;
        let plan = &kind.plans[p];
        self.dir.write(plan.file, &plan.toml);
        let gate = if plan.backfills {
            Some(self.hold(&plan.model.name).await)
        } else {
            None
        };
        let dir = self.dir.dir();
        let args = ["run", &dir, "--release", plan.expand, "--progress", "quiet"];
        let mut child = backfill_spawn(&args, &self.db.url);
        let held = match &gate {
            Some(g) => wait_held(g, &mut child).await,
            None => false,
        };
        self.model.expand(p);
        let n = p + 2;
        if held {
            self.group(&held_label(plan.expand), n, Count::Fixed(HELD))
                .await;
            if let Some(g) = &gate {
                let _ = g.batch_execute("SELECT pg_advisory_unlock_all()").await;
            }
            self.model.backfill(p);
            let at = during_label(plan.expand);
            self.group(&at, n, Count::Until(&mut child)).await;
        }
        if self.stop {
            let _ = child.kill();
        }
        let out = finish(child).await;
        drop(gate);
        if self.stop {
            return;
        }
        self.model.backfill_done();
        if !out.status.success() {
            let at = format!("run --release {}", plan.expand);
            return self.fail("run", &at, String::new(), show(&out));
        }
        if !held {
            if plan.backfills {
                self.notes.push(format!(
                    "the backfill of {} was never held at the gate: its statements ran after it",
                    plan.expand
                ));
            }
            self.model.backfill(p);
            self.model.backfill_done();
            self.group(&held_label(plan.expand), n, Count::Fixed(HELD))
                .await;
            self.group(&during_label(plan.expand), n, Count::Fixed((0, 0)))
                .await;
        }
        if !self.stop {
            self.check_transition(&format!("after run --release {}", plan.expand))
                .await;
        }
    }

    /// The table equals the model, every plan in flight's predicate holds, and `verify`
    /// finds no row out of sync.
    async fn check_transition(&mut self, at: &str) {
        let names: Vec<&str> = std::iter::once(self.model.table)
            .chain(self.model.views.iter().copied())
            .collect();
        for name in names {
            if let Err(e) = check::rows(&self.clients[0], &self.model, name).await {
                return self.mismatch("rows", at, e);
            }
        }
        let active: Vec<usize> = (0..self.kind.plans.len())
            .filter(|p| self.model.is_active(*p))
            .collect();
        for p in &active {
            let pred = self.kind.plans[*p].agree;
            if let Err(e) = check::agree(&self.clients[0], self.model.table, pred).await {
                return self.mismatch("agree", at, e);
            }
        }
        let files: Vec<String> = active
            .iter()
            .filter(|p| self.kind.plans[**p].backfills)
            .map(|p| format!("{}/{}", self.dir.dir(), self.kind.plans[*p].file))
            .collect();
        if files.is_empty() {
            return;
        }
        let mut args = vec!["verify".to_string()];
        args.extend(files);
        let url = self.db.url.clone();
        let out = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            backfill_cmd(&args, Some(&url))
        })
        .await
        .expect("join verify");
        if !out.status.success() {
            self.fail("verify", at, String::new(), show(&out));
        }
    }

    /// `backfill run DIR --release 1.5.0`: every plan contracts; then the rows and the catalog.
    async fn contract(&mut self) {
        let dir = self.dir.dir();
        let child = backfill_spawn(
            &["run", &dir, "--release", CONTRACT, "--progress", "quiet"],
            &self.db.url,
        );
        let out = finish(child).await;
        let at = format!("run --release {CONTRACT} (contract)");
        if !out.status.success() {
            return self.fail("run", &at, String::new(), show(&out));
        }
        for p in 0..self.kind.plans.len() {
            self.model.contract(p);
        }
        let table = self.model.table;
        if let Err(e) = check::rows(&self.clients[0], &self.model, table).await {
            return self.mismatch("rows", &at, e);
        }
        match check::catalog(&self.clients[0], table).await {
            Err(e) => self.fail("catalog", &at, String::new(), e),
            Ok(got) => {
                if let Some(d) = check::catalog_diff(&got, &self.kind.final_catalog()) {
                    self.fail(
                        "catalog",
                        &at,
                        String::new(),
                        format!("the catalog of {table}:{d}"),
                    );
                }
            }
        }
    }
}

/// Waits until the backfill waits at the gate (true) or the process exits (false).
async fn wait_held(gate: &Client, child: &mut Child) -> bool {
    let deadline = Instant::now() + GATE_TIMEOUT;
    let sql = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return false;
        }
        let waiting: i64 = gate
            .query_one(sql, &[])
            .await
            .map(|r| r.get(0))
            .unwrap_or(0);
        if waiting > 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the backfill did not reach the gate within {GATE_TIMEOUT:?}");
}

/// One seeded row: the kind's columns and the bystanders.
fn seed_row(kind: &Kind, g: &mut Gen) -> Vec<(&'static str, Val)> {
    use super::gen::Vals;
    let mut cols = (kind.seed)(g);
    cols.push(("n", g.value(Vals::Int(0, 50))));
    let u = if g.rng.chance(1, 4) {
        Val::Null
    } else {
        g.value(Vals::Unique)
    };
    cols.push(("u", u));
    let c = if g.rng.chance(1, 6) {
        Val::Null
    } else {
        g.value(Vals::Text)
    };
    cols.push(("c", c));
    cols
}

/// The INSERT of the seeded rows (`None` when there are none).
pub fn seed_sql(rows: &[(i64, Vec<(&'static str, Val)>)]) -> Option<String> {
    let (_, first) = rows.first()?;
    let names: Vec<&str> = first.iter().map(|(c, _)| *c).collect();
    let values: Vec<String> = rows
        .iter()
        .map(|(id, cols)| {
            let v: Vec<String> = cols.iter().map(|(_, v)| v.literal()).collect();
            format!("({id}, {})", v.join(", "))
        })
        .collect();
    Some(format!(
        "INSERT INTO t (id, {}) VALUES\n  {};",
        names.join(", "),
        values.join(",\n  ")
    ))
}
