//! The plan file format: TOML read with serde (`deny_unknown_fields` everywhere), checked
//! without a database, and every error located at its file, line and field.
//!
//! This module knows nothing about the database; [`crate::validate`] checks a plan against the
//! live catalog.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::error::{Error, Location, PlanError, PlanErrors};
use crate::ops::{OperationSpec, Problems};
use crate::sql::{fnv1a, QualifiedName};
use crate::version::Release;

/// Defaults of the `[backfill]` table, named once.
pub mod defaults {
    use std::time::Duration;

    /// Rows in the first chunk; later chunks adapt toward the target chunk time.
    pub const BATCH_SIZE: u32 = 1000;
    /// The chunk duration the batch size adapts toward: short enough that a chunk's row locks
    /// never hold up the application noticeably.
    pub const TARGET_CHUNK_TIME: Duration = Duration::from_millis(20);
    /// The smallest chunk.
    pub const MIN_BATCH_SIZE: u32 = 10;
    /// The largest chunk: bounds how many rows one chunk locks at once.
    pub const MAX_BATCH_SIZE: u32 = 20_000;
    /// Concurrent workers.
    pub const WORKERS: u32 = 4;
    /// How long a DDL statement or a chunk waits for a lock before giving up and retrying, so
    /// it never sits in the lock queue in front of the application for long.
    pub const LOCK_TIMEOUT: Duration = Duration::from_secs(2);
    /// The longest a single chunk may run.
    pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
    /// How often a DDL step that cannot get its lock is retried.
    pub const DDL_RETRIES: u32 = 10;
    /// How long a segment stays claimed by a process that stopped renewing it.
    pub const LEASE: Duration = Duration::from_secs(10);
    /// How often the health probes run.
    pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);
    /// Upper bound for `workers`.
    pub const MAX_WORKERS: u32 = 64;
}

pub use crate::diagnostics::{FieldPath, Seg};

/// `[backfill]`: how the backfill phase runs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BackfillSettings {
    /// Rows in the first chunk.
    pub batch_size: u32,
    /// The smallest chunk the batch size adapts (or shrinks after a failed chunk) to.
    pub min_batch_size: u32,
    /// The largest chunk the batch size adapts to.
    pub max_batch_size: u32,
    /// The chunk duration the batch size adapts toward.
    #[serde(with = "duration")]
    #[schemars(with = "String")]
    pub target_chunk_time: Duration,
    /// Concurrent workers.
    pub workers: u32,
    /// Rate limit in rows per second; 0 means none.
    pub max_rows_per_second: u64,
    /// `lock_timeout` of every DDL statement and chunk.
    #[serde(with = "duration")]
    #[schemars(with = "String")]
    pub lock_timeout: Duration,
    /// `statement_timeout` of every chunk.
    #[serde(with = "duration")]
    #[schemars(with = "String")]
    pub statement_timeout: Duration,
    /// How often a DDL step that cannot get its lock is retried.
    pub ddl_retries: u32,
    /// How long a process's claim on a segment lasts without its heartbeat; after that,
    /// other processes take the segment over.
    #[serde(with = "duration")]
    #[schemars(with = "String")]
    pub lease: Duration,
}

/// `[throttle]`: the database-health probes that hold the workers between chunks while any is
/// over its threshold. Unset thresholds are not probed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ThrottleSettings {
    /// How often the probes run.
    #[serde(with = "duration")]
    #[schemars(with = "String")]
    pub check_interval: Duration,
    /// The largest replication lag allowed (on the primary: `replay_lag` of
    /// `pg_stat_replication`; on each `--replica-url`: the age of the heartbeat the monitor
    /// writes on the primary every tick, as replayed there).
    #[serde(with = "opt_duration", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub max_replication_lag: Option<Duration>,
    /// The most sessions allowed to wait on locks of the table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_lock_waiters: Option<u64>,
    /// The oldest open transaction allowed (it holds back vacuum).
    #[serde(with = "opt_duration", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub max_transaction_age: Option<Duration>,
    /// Hold while autovacuum works on the table.
    pub pause_during_autovacuum: bool,
    /// The longest commit the engine lets a tiny durable write take (its probe of the
    /// application's commit latency, every tick): over it, it takes workers away down to one,
    /// then spaces the chunks out. Without it, the number of workers follows the rate only.
    #[serde(with = "opt_duration", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub max_commit_latency: Option<Duration>,
    /// A query returning one boolean: true holds the workers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        ThrottleSettings {
            check_interval: defaults::CHECK_INTERVAL,
            max_replication_lag: None,
            max_lock_waiters: None,
            max_transaction_age: None,
            pause_during_autovacuum: false,
            max_commit_latency: None,
            query: None,
        }
    }
}

impl Default for BackfillSettings {
    fn default() -> Self {
        BackfillSettings {
            batch_size: defaults::BATCH_SIZE,
            min_batch_size: defaults::MIN_BATCH_SIZE,
            max_batch_size: defaults::MAX_BATCH_SIZE,
            target_chunk_time: defaults::TARGET_CHUNK_TIME,
            workers: defaults::WORKERS,
            max_rows_per_second: 0,
            lock_timeout: defaults::LOCK_TIMEOUT,
            statement_timeout: defaults::STATEMENT_TIMEOUT,
            ddl_retries: defaults::DDL_RETRIES,
            lease: defaults::LEASE,
        }
    }
}

/// `[release]`: from which application release each phase is due.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseGates {
    /// Expand, dual-write and backfill are due from this release on.
    #[serde(default, deserialize_with = "release")]
    #[schemars(with = "Option<String>")]
    pub expand: Option<Release>,
    /// Contract is due from this release on.
    #[serde(default, deserialize_with = "release")]
    #[schemars(with = "Option<String>")]
    pub contract: Option<Release>,
}

/// A plan file: the table, its operations in order, and the settings of its backfill,
/// throttle and releases.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "backfill plan")]
struct RawPlan {
    name: Option<String>,
    table: String,
    #[serde(default)]
    operations: Vec<OperationSpec>,
    #[serde(default)]
    backfill: BackfillSettings,
    #[serde(default)]
    throttle: ThrottleSettings,
    #[serde(default)]
    release: ReleaseGates,
}

/// The JSON Schema of the plan format (draft 2020-12), generated from the types plans are
/// read into, so it cannot drift from them: `backfill schema` prints it.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(RawPlan)).unwrap_or_default()
}

/// A parsed plan that passed every check that needs no database.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The plan's name: `name`, or the file stem.
    pub name: String,
    /// The file it came from.
    pub file: PathBuf,
    /// The file's text, to locate errors and to detect edits.
    pub source: String,
    /// The table, schema-qualified.
    pub table: QualifiedName,
    /// The operations, in order.
    pub operations: Vec<OperationSpec>,
    /// `[backfill]`.
    pub backfill: BackfillSettings,
    /// `[throttle]`.
    pub throttle: ThrottleSettings,
    /// `[release]`.
    pub release: ReleaseGates,
}

impl Plan {
    /// Reads and checks a plan file.
    pub fn load(path: &Path) -> Result<Plan, Error> {
        let source = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Plan::parse(path, &source)?)
    }

    /// Parses and checks plan text; `path` is used for the default name and in errors.
    pub fn parse(path: &Path, source: &str) -> Result<Plan, PlanErrors> {
        let raw: RawPlan = toml::from_str(source).map_err(|e| {
            if let Some(err) = operation_error(path, source) {
                return PlanErrors(vec![err]);
            }
            let span = e.span().unwrap_or(0..0);
            let (start, message) = refine_serde_error(source, span.start, e.message());
            PlanErrors(vec![PlanError {
                location: location_at(path, source, start),
                field: String::new(),
                message,
            }])
        })?;
        let mut problems = Problems::default();
        let name = match raw.name {
            Some(n) => n,
            None => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        if name.is_empty()
            || name.len() > 40
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        {
            problems.add(
                FieldPath::of("name"),
                format!("plan name `{name}` must be 1 to 40 letters, digits, `_`, `-` or `.` (it names the plan's trigger and its state)"),
            );
        }
        let table = QualifiedName::parse(&raw.table);
        if table.is_none() {
            problems.add(
                FieldPath::of("table"),
                format!(
                    "`{}` is not a table name: write \"table\" or \"schema.table\"",
                    raw.table
                ),
            );
        }
        if raw.operations.is_empty() {
            problems.add(
                FieldPath::of("operations"),
                "a plan needs at least one [[operations]] entry",
            );
        }
        check_settings(&raw.backfill, &mut problems);
        if raw.throttle.check_interval.is_zero() {
            problems.add(
                FieldPath::of("throttle").key("check_interval"),
                "must be longer than 0",
            );
        }
        if raw
            .throttle
            .query
            .as_deref()
            .is_some_and(|q| q.trim().is_empty())
        {
            problems.add(
                FieldPath::of("throttle").key("query"),
                "is empty: write a query that returns one boolean (true holds the backfill)",
            );
        }
        if let (Some(e), Some(c)) = (&raw.release.expand, &raw.release.contract) {
            if c <= e {
                problems.add(
                    FieldPath::of("release").key("contract"),
                    format!("contract release {c} must come after expand release {e}: contract runs in a later release, once no running code uses the old schema"),
                );
            }
        }
        let plan = Plan {
            name,
            file: path.to_path_buf(),
            source: source.to_string(),
            table: table.unwrap_or_else(|| QualifiedName::new("public", "")),
            operations: raw.operations,
            backfill: raw.backfill,
            throttle: raw.throttle,
            release: raw.release,
        };
        let mut op_problems = Problems::default();
        for (i, op) in plan.operations.iter().enumerate() {
            let mut own = Problems::default();
            op.op().check(&mut own);
            let base = FieldPath::of("operations").index(i);
            for p in own.0 {
                op_problems.add(base.join(&p.field), p.message);
            }
        }
        problems.0.extend(op_problems.0);
        let mut plan = plan;
        if problems.0.is_empty() {
            let operations = std::mem::take(&mut plan.operations);
            plan.operations =
                crate::ops::compose::compose(operations, plan.table.name.as_str(), &mut problems);
        }
        crate::ops::check_conflicts(&plan.operations, &mut problems);
        if problems.0.is_empty() {
            Ok(plan)
        } else {
            Err(plan.errors(problems))
        }
    }

    /// Turns problems into located errors.
    pub fn errors(&self, problems: Problems) -> PlanErrors {
        PlanErrors(
            problems
                .0
                .into_iter()
                .map(|p| PlanError {
                    location: self.locate(&p.field),
                    field: p.field.to_string(),
                    message: p.message,
                })
                .collect(),
        )
    }

    /// The file, line and column of a field (or of its nearest enclosing part that exists).
    pub fn locate(&self, field: &FieldPath) -> Location {
        let offset = span_of(&self.source, field).unwrap_or(0);
        location_at(&self.file, &self.source, offset)
    }

    /// What the plan does to its table as a whole, if anything (see
    /// [`crate::ops::Operation::table_change`]).
    pub fn table_change(&self) -> Option<crate::ops::TableChange> {
        self.operations.iter().find_map(|o| o.op().table_change())
    }

    /// Whether the plan creates its table (its first operation is `create_table`).
    pub fn creates_table(&self) -> bool {
        self.table_change() == Some(crate::ops::TableChange::Create)
    }

    /// A checksum of the file's text, to detect a plan edited after it started.
    pub fn checksum(&self) -> String {
        format!("{:016x}", fnv1a(self.source.as_bytes()))
    }
}

fn check_settings(s: &BackfillSettings, problems: &mut Problems) {
    let at = |k: &str| FieldPath::of("backfill").key(k);
    if s.min_batch_size == 0 {
        problems.add(at("min_batch_size"), "must be at least 1");
    }
    if s.max_batch_size < s.min_batch_size {
        problems.add(
            at("max_batch_size"),
            format!("must be at least min_batch_size ({})", s.min_batch_size),
        );
    }
    if s.batch_size < s.min_batch_size || s.batch_size > s.max_batch_size {
        problems.add(
            at("batch_size"),
            format!(
                "must be between min_batch_size ({}) and max_batch_size ({})",
                s.min_batch_size, s.max_batch_size
            ),
        );
    }
    if s.workers == 0 || s.workers > defaults::MAX_WORKERS {
        problems.add(
            at("workers"),
            format!("must be between 1 and {}", defaults::MAX_WORKERS),
        );
    }
    for (key, d) in [
        ("lease", s.lease),
        ("target_chunk_time", s.target_chunk_time),
        ("lock_timeout", s.lock_timeout),
        ("statement_timeout", s.statement_timeout),
    ] {
        if d.is_zero() {
            problems.add(
                at(key),
                "must be longer than 0 (0 would mean no limit in PostgreSQL)",
            );
        }
    }
}

/// Reads plans from files and folders; a folder gives its `*.toml` files in file-name order.
/// Every file is read and checked before any error is returned, so all problems show at once.
pub fn load_all(paths: &[PathBuf]) -> Result<Vec<Plan>, Error> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(Error::Usage(format!(
                    "{}: the folder holds no plan (*.toml) files",
                    path.display()
                )));
            }
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    let mut plans = Vec::new();
    let mut errors = Vec::new();
    for file in &files {
        match Plan::load(file) {
            Ok(p) => plans.push(p),
            Err(Error::Plan(e)) => errors.extend(e.0),
            Err(other) => return Err(other),
        }
    }
    for (i, p) in plans.iter().enumerate() {
        if let Some(first) = plans[..i].iter().find(|q| q.name == p.name) {
            errors.push(PlanError {
                location: p.locate(&FieldPath::of("name")),
                field: "name".to_string(),
                message: format!(
                    "plan name `{}` is already used by {}: each plan needs its own name",
                    p.name,
                    first.file.display()
                ),
            });
        }
    }
    if errors.is_empty() {
        Ok(plans)
    } else {
        Err(PlanErrors(errors).into())
    }
}

/// 1-based line and column of a byte offset.
fn location_at(file: &Path, source: &str, offset: usize) -> Location {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    Location {
        file: file.to_path_buf(),
        line,
        column: source[line_start..offset].chars().count() + 1,
    }
}

/// serde reports an unknown field at the table that holds it (for operations, whose kind is read
/// first, the whole `[[operations]]` entry); point at the offending key itself when it can be
/// found after the reported position, and name the known kinds for an unknown `kind`.
fn refine_serde_error(source: &str, start: usize, message: &str) -> (usize, String) {
    let message = message.trim().to_string();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some(name) = rest.split('`').next() {
            let tail = &source[start.min(source.len())..];
            for (offset, line) in line_offsets(tail) {
                let key = line.trim_start();
                if key.starts_with(name) && key[name.len()..].trim_start().starts_with('=') {
                    return (start + offset + (line.len() - key.len()), message);
                }
            }
        }
    }
    (start, message)
}

/// serde reads an operation through its `kind` first, and the toml crate then reports errors
/// inside any operation at the first `[[operations]]`; read each operation on its own to name
/// the right one, and the right key for an unknown field.
fn operation_error(path: &Path, source: &str) -> Option<PlanError> {
    use serde::de::IntoDeserializer;
    let doc: toml::Table = toml::from_str(source).ok()?;
    let ops = doc.get("operations")?.as_array()?;
    for (i, op) in ops.iter().enumerate() {
        let Err(e) = OperationSpec::deserialize(op.clone().into_deserializer()) else {
            continue;
        };
        let message = e.message().trim().to_string();
        let mut field = FieldPath::of("operations").index(i);
        if let Some(name) = message
            .strip_prefix("unknown field `")
            .and_then(|r| r.split('`').next())
        {
            field = field.key(name);
        } else if message.starts_with("unknown variant") {
            field = field.key("kind");
        }
        let offset = span_of(source, &field).unwrap_or(0);
        return Some(PlanError {
            location: location_at(path, source, offset),
            field: field.to_string(),
            message,
        });
    }
    None
}

fn line_offsets(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut offset = 0;
    text.split_inclusive('\n').map(move |line| {
        let here = offset;
        offset += line.len();
        (here, line.trim_end_matches(['\n', '\r']))
    })
}

/// The byte offset where `field` (or its deepest existing ancestor) starts in `source`.
fn span_of(source: &str, field: &FieldPath) -> Option<usize> {
    use toml::de::{DeTable, DeValue};
    let doc = DeTable::parse(source).ok()?;
    let mut best = None;
    let mut current: Option<&DeValue<'_>> = None;
    let mut table: Option<&DeTable<'_>> = Some(doc.get_ref());
    for seg in &field.0 {
        let next = match (seg, table, current) {
            (Seg::Key(k), Some(t), _) => t
                .iter()
                .find(|(key, _)| key.get_ref().as_ref() == k.as_str())
                .map(|(key, v)| (key.span().start, v)),
            (Seg::Index(i), _, Some(DeValue::Array(a))) => a.get(*i).map(|v| (v.span().start, v)),
            _ => None,
        };
        let Some((start, value)) = next else { break };
        best = Some(start);
        current = Some(value.get_ref());
        table = match value.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => None,
        };
    }
    best
}

mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

/// Parses `"250ms"`, `"2s"`, `"1m"`, `"1h 30m"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        format!("`{text}` is not a duration ({e}): write it like \"250ms\", \"2s\" or \"1m\"")
    })
}

mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }
}

fn release<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Release>, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map(Some).map_err(serde::de::Error::custom)
}

pub use crate::ops::ExprMap;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Plan, PlanErrors> {
        Plan::parse(Path::new("plans/0001_test.toml"), text)
    }

    #[test]
    fn example_plan_parses_with_defaults() {
        let plan = parse(
            r#"
table = "users"
[[operations]]
kind = "set_not_null"
column = "email"
"#,
        )
        .expect("valid");
        assert_eq!(plan.name, "0001_test");
        assert_eq!(plan.table.to_string(), "\"public\".\"users\"");
        assert_eq!(plan.backfill, BackfillSettings::default());
    }

    #[test]
    fn errors_point_at_the_line_of_the_field() {
        let err = parse(
            "table = \"users\"\n[[operations]]\nkind = \"set_not_null\"\ncolumn = \"email\"\nfil = \"x\"\n",
        )
        .expect_err("unknown field");
        assert_eq!(err.0[0].location.line, 5, "{err}");
        assert!(err.0[0].message.contains("unknown field `fil`"), "{err}");

        let err = parse("table = \"users\"\n[[operations]]\nkind = \"set_not_null\"\ncolumn = \"email\"\n[backfill]\nlock_timeout = \"2 parsecs\"\n")
            .expect_err("bad duration");
        assert_eq!(err.0[0].location.line, 6, "{err}");
        assert!(err.0[0].message.contains("not a duration"), "{err}");
    }

    #[test]
    fn field_paths_locate_nested_fields() {
        let text = "table = \"users\"\n\n[[operations]]\nkind = \"x\"\n\n[[operations]]\nkind = \"split_column\"\ninto = [\n  { name = \"a\" },\n  { name = \"b\" },\n]\n";
        let path = FieldPath::of("operations")
            .index(1)
            .key("into")
            .index(1)
            .key("name");
        let offset = span_of(text, &path).expect("found");
        let loc = location_at(Path::new("f.toml"), text, offset);
        assert_eq!((loc.line, loc.column), (10, 5));
        assert_eq!(path.to_string(), "operations[1].into[1].name");
    }
}
