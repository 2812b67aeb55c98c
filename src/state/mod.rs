//! The state store: `backfill`'s own schema in the target database (`--state-schema` renames
//! it). It is created on first use and upgraded by its own numbered migrations, applied in
//! order, each in one transaction, under an advisory lock so that two processes starting at
//! once do not both apply them.
//!
//! Version 1 holds the engine's progress: one row per backfill (plan, checksum, key) and one
//! row per segment of its key space with the segment's cursor and counters. A chunk's data
//! change and its segment's checkpoint commit in the same statement (see
//! [`crate::engine::keyset`]), guarded by [`CHECKPOINT_GUARD`].

use tokio_postgres::Client;

pub mod heartbeat;
pub mod plans;
pub mod runners;
pub mod segments;
pub mod settings;
pub mod status;

pub use plans::{phase_name, recorded, Recorded};

use crate::error::{Error, Result};
use crate::sql::{literal, Ident, QualifiedName};

/// SQLSTATE raised by the checkpoint guard when a segment's cursor moved under a chunk
/// (another process advanced it): the chunk rolls back and the worker reloads the segment.
pub const CHECKPOINT_MOVED: &str = "BF001";

/// The function that guards checkpoints, inside the state schema.
pub const CHECKPOINT_GUARD: &str = "checkpoint_guard";

/// The migrations, in order; `{s}` stands for the quoted schema. Never edit one that has
/// shipped: add the next.
const MIGRATIONS: &[&str] = &[
    // 1: the engine's backfills and segments.
    r#"
CREATE TABLE {s}.backfills (
  plan          text PRIMARY KEY,
  checksum      text NOT NULL,
  table_name    text NOT NULL,
  key_columns   text[] NOT NULL,
  row_estimate  bigint NOT NULL,
  started_at    timestamptz NOT NULL DEFAULT now(),
  finished_at   timestamptz
);
CREATE TABLE {s}.segments (
  plan          text NOT NULL REFERENCES {s}.backfills ON DELETE CASCADE,
  segment       int NOT NULL,
  lower_bound   text[],
  upper_bound   text[] NOT NULL,
  cursor        text[],
  rows_seen     bigint NOT NULL DEFAULT 0,
  rows_changed  bigint NOT NULL DEFAULT 0,
  done          boolean NOT NULL DEFAULT false,
  updated_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (plan, segment)
);
CREATE FUNCTION {s}.checkpoint_guard(ok boolean, plan text, segment int) RETURNS boolean
LANGUAGE plpgsql AS $fn$
BEGIN
  IF NOT ok THEN
    RAISE EXCEPTION 'segment % of backfill % moved on: another process checkpointed it', segment, plan
      USING ERRCODE = 'BF001';
  END IF;
  RETURN true;
END
$fn$;
"#,
    // 2: plans across releases, their phases and steps, the processes working on them, and an
    // append-only log of events.
    r#"
CREATE TABLE {s}.plans (
  plan              text PRIMARY KEY,
  file              text NOT NULL,
  checksum          text NOT NULL,
  source            text NOT NULL,
  catalog           text NOT NULL,
  table_name        text NOT NULL,
  expand_release    text,
  contract_release  text,
  paused            boolean NOT NULL DEFAULT false,
  aborting          boolean NOT NULL DEFAULT false,
  last_error        text,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE {s}.phases (
  plan         text NOT NULL REFERENCES {s}.plans ON DELETE CASCADE,
  phase        text NOT NULL,
  release      text,
  started_at   timestamptz NOT NULL DEFAULT now(),
  finished_at  timestamptz,
  host         text,
  pid          int,
  PRIMARY KEY (plan, phase)
);
CREATE TABLE {s}.steps (
  plan         text NOT NULL REFERENCES {s}.plans ON DELETE CASCADE,
  phase        text NOT NULL,
  step         int NOT NULL,
  description  text NOT NULL,
  finished_at  timestamptz NOT NULL DEFAULT now(),
  host         text,
  pid          int,
  PRIMARY KEY (plan, phase, step)
);
CREATE TABLE {s}.runners (
  plan          text NOT NULL,
  host          text NOT NULL,
  pid           int NOT NULL,
  phase         text,
  workers       int,
  rows_done     bigint,
  rate          double precision,
  started_at    timestamptz NOT NULL DEFAULT now(),
  heartbeat_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (plan, host, pid)
);
CREATE TABLE {s}.events (
  id      bigserial PRIMARY KEY,
  at      timestamptz NOT NULL DEFAULT clock_timestamp(),
  plan    text NOT NULL,
  phase   text,
  step    int,
  kind    text NOT NULL,
  detail  text,
  host    text,
  pid     int
);
CREATE INDEX events_plan ON {s}.events (plan, id);
"#,
    // 3: segments claimed by processes under a lease (several processes on several hosts share
    // one backfill), and settings changed at run time by `backfill set`.
    r#"
ALTER TABLE {s}.segments ADD COLUMN owner text, ADD COLUMN lease_until timestamptz;
ALTER TABLE {s}.backfills ADD COLUMN settings text NOT NULL DEFAULT '{}';
CREATE TABLE {s}.heartbeat (id int PRIMARY KEY, at timestamptz NOT NULL);
"#,
    // 4: each process's live figures (`status --json`, the same as its metrics endpoint).
    r#"
ALTER TABLE {s}.runners ADD COLUMN figures jsonb;
"#,
    // 5: the guard of in-place chunks that read their rows without locks. Chunks no longer
    // call it (the undo trigger saves the rows the chunk's plain `UPDATE` wrote); it stays for
    // a process of an earlier build that shares the backfill.
    r#"
CREATE FUNCTION {s}.rows_guard(ok boolean, plan text, segment int) RETURNS boolean
LANGUAGE plpgsql AS $fn$
BEGIN
  IF NOT ok THEN
    RAISE EXCEPTION 'a row of segment % of backfill % was written by another session during the chunk', segment, plan
      USING ERRCODE = 'BF002';
  END IF;
  RETURN true;
END
$fn$;
"#,
];

/// How long a process's heartbeat counts as alive.
pub const HEARTBEAT_TTL_SECONDS: f64 = 10.0;

/// This machine's name, for the state's records of who did what: `BACKFILL_HOST` when set
/// (containers often have meaningless host names), else the kernel's host name.
pub fn host() -> String {
    if let Some(h) = std::env::var("BACKFILL_HOST")
        .ok()
        .filter(|h| !h.is_empty())
    {
        return h;
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".to_string())
}

/// This process's id, as PostgreSQL's `int`.
pub fn pid() -> i32 {
    i32::try_from(std::process::id()).unwrap_or(i32::MAX)
}

/// Whether the state schema holds the runner's tables (read-only commands never create it).
pub async fn exists(client: &Client, schema: &Ident) -> Result<bool> {
    let row = client
        .query_one(
            // From the catalog, not `to_regclass`: a role without rights on the schema may
            // still ask whether it exists.
            "SELECT EXISTS (SELECT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                             WHERE n.nspname = $1 AND c.relname = 'plans')",
            &[&schema.as_str()],
        )
        .await
        .map_err(|e| Error::db(format!("looking for the state schema {schema}"), &e))?;
    Ok(row.get(0))
}

/// Appends to the events log.
pub async fn event(
    client: &impl tokio_postgres::GenericClient,
    schema: &Ident,
    plan: &str,
    phase: Option<&str>,
    step: Option<i32>,
    kind: &str,
    detail: &str,
) -> Result<()> {
    client
        .execute(
            &format!("INSERT INTO {schema}.events (plan, phase, step, kind, detail, host, pid) VALUES ($1, $2, $3, $4, $5, $6, $7)"),
            &[&plan, &phase, &step, &kind, &detail, &host(), &pid()],
        )
        .await
        .map_err(|e| Error::db("writing to the events log", &e))?;
    Ok(())
}

/// The latest schema version this binary knows.
pub fn latest_version() -> i32 {
    MIGRATIONS.len() as i32
}

/// A table of the state schema.
pub fn table(schema: &Ident, name: &str) -> QualifiedName {
    QualifiedName::new(schema.as_str(), name)
}

/// Creates the state schema or brings it to the latest version. Refuses a schema written by a
/// newer `backfill`.
pub async fn ensure(client: &mut Client, schema: &Ident) -> Result<()> {
    let ctx = format!("preparing the state schema {schema}");
    let fail = |e: tokio_postgres::Error| Error::db(ctx.clone(), &e);
    let tx = client.transaction().await.map_err(fail)?;
    tx.query_one(
        "SELECT pg_advisory_xact_lock(hashtext('backfill state ' || $1::text))",
        &[&schema.as_str()],
    )
    .await
    .map_err(fail)?;
    tx.batch_execute("SET LOCAL lock_timeout = '10s'")
        .await
        .map_err(fail)?;
    // `CREATE SCHEMA IF NOT EXISTS` checks the right to create schemas before it looks, and a
    // role using a schema an administrator made for it has no such right: look first.
    let missing: bool = tx
        .query_one(
            "SELECT to_regnamespace(quote_ident($1)) IS NULL",
            &[&schema.as_str()],
        )
        .await
        .map_err(fail)?
        .get(0);
    if missing {
        tx.execute(&format!("CREATE SCHEMA {schema}"), &[])
            .await
            .map_err(fail)?;
    }
    tx.execute(
        &format!("CREATE TABLE IF NOT EXISTS {schema}.migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"),
        &[],
    )
    .await
    .map_err(fail)?;
    let current: i32 = tx
        .query_one(
            &format!("SELECT coalesce(max(version), 0) FROM {schema}.migrations"),
            &[],
        )
        .await
        .map_err(fail)?
        .get(0);
    if current > latest_version() {
        return Err(Error::Usage(format!(
            "the state schema {schema} is at version {current}, written by a newer backfill (this one knows up to {}); upgrade backfill",
            latest_version()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = i as i32 + 1;
        tx.batch_execute(&sql.replace("{s}", &schema.to_string()))
            .await
            .map_err(fail)?;
        tx.execute(
            &format!(
                "INSERT INTO {schema}.migrations (version) VALUES ({})",
                literal(&version.to_string())
            ),
            &[],
        )
        .await
        .map_err(fail)?;
    }
    tx.commit().await.map_err(fail)
}
