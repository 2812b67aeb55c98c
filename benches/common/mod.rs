//! What both benchmarks share: their error type and exit, the sizes asked for, the split plan,
//! a freshly seeded `users` table per method, and how durations are printed.

#![allow(dead_code)]

use std::time::Duration;

use backfill::db::ConnectionSpec;
use backfill::ephemeral::Cluster;

pub type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Plan 0001's split of `users.full_name`, at default settings, without `[release]`.
pub const SPLIT_PLAN: &str = r#"
name = "bench_split"
table = "users"

[[operations]]
kind = "split_column"
column = "full_name"
into = [
  { name = "first_name", type = "text", up = "split_part(full_name, ' ', 1)" },
  { name = "last_name",  type = "text", up = "split_part(full_name, ' ', 2)" },
]
down = "concat_ws(' ', first_name, last_name)"
"#;

/// Runs `run` and exits 1 with its error (and PostgreSQL's message) when it fails.
pub fn main_with(run: fn() -> BenchResult<()>) {
    if let Err(e) = run() {
        let detail = e
            .downcast_ref::<tokio_postgres::Error>()
            .and_then(|e| e.as_db_error())
            .map(|d| format!(": {}", d.message()))
            .unwrap_or_default();
        eprintln!("benchmark failed: {e}{detail}");
        std::process::exit(1);
    }
}

/// The table sizes of `BENCH_ROWS` (default `1000000,5000000`).
pub fn sizes() -> BenchResult<Vec<i64>> {
    let sizes: Vec<i64> = std::env::var("BENCH_ROWS")
        .unwrap_or_else(|_| "1000000,5000000".to_string())
        .split(',')
        .filter_map(|s| s.trim().replace('_', "").parse().ok())
        .collect();
    if sizes.is_empty() {
        return Err("BENCH_ROWS names no size (e.g. BENCH_ROWS=1000000,5000000)".into());
    }
    Ok(sizes)
}

/// A new database `bench` holding `users (id bigserial, full_name, email{extra})` with `rows`
/// rows (`email` from `email_prefix`: `user` or `User`, `example.org` in the case given), run
/// through `setup`, vacuumed, analyzed and checkpointed.
pub async fn fresh_users(
    cluster: &Cluster,
    admin: &tokio_postgres::Client,
    rows: i64,
    extra: &str,
    email: (&str, &str),
    setup: Option<&str>,
) -> BenchResult<ConnectionSpec> {
    admin
        .batch_execute("DROP DATABASE IF EXISTS bench WITH (FORCE)")
        .await?;
    admin.batch_execute("CREATE DATABASE bench").await?;
    let db = ConnectionSpec::parse(&cluster.url("bench"))?;
    let client = db.connect().await?;
    let (user, domain) = email;
    client
        .batch_execute(&format!(
            "CREATE TABLE users (id bigserial PRIMARY KEY, full_name text, email text{extra});
             INSERT INTO users (full_name, email)
               SELECT 'First' || g || ' Last' || g, '{user}' || g || '@{domain}'
                 FROM generate_series(1, {rows}) g;"
        ))
        .await?;
    if let Some(sql) = setup {
        client.batch_execute(sql).await?;
    }
    client.batch_execute("VACUUM ANALYZE users").await?;
    client.batch_execute("CHECKPOINT").await?;
    Ok(db)
}

/// Milliseconds with one decimal.
pub fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}
