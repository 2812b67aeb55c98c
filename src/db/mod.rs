//! Talking to PostgreSQL: connecting as libpq would and reading the catalog.
//!
//! A connection comes from `--database-url`/`DATABASE_URL` (a `postgres://` URL or a libpq
//! `key=value` string); what it leaves out is taken from the `PG*` environment variables
//! (`PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`, `PGPASSWORD`, `PGSSLMODE`, `PGSSLROOTCERT`,
//! `PGAPPNAME`), then from the password file (`PGPASSFILE` or `~/.pgpass`), then libpq's
//! defaults. Without a URL, the `PG*` variables alone are enough. TLS follows `sslmode` (see
//! [`tls`]). The text is kept out of every message, since it may hold a password.

pub mod catalog;
pub mod pgpass;
pub mod tls;

use std::path::PathBuf;
use std::time::Duration;

use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{connection_lost_code, Error, Result};
use tls::SslMode;

/// Where to connect and how.
#[derive(Clone)]
pub struct ConnectionSpec {
    config: Config,
    ssl: SslMode,
    root_cert: Option<PathBuf>,
}

impl std::fmt::Debug for ConnectionSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectionSpec(<hidden>)")
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The `key=value` pairs of a libpq connection string, values as written (a quoted value keeps
/// its quotes and escapes); a key without `=` has no value.
fn key_value_pairs(text: &str) -> Vec<(String, Option<String>)> {
    let mut chars = text.chars().peekable();
    let mut pairs = Vec::new();
    while chars.peek().is_some() {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek() != Some(&'=') {
            if !key.is_empty() {
                pairs.push((key, None));
            }
            continue;
        }
        chars.next();
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut raw = String::new();
        if chars.peek() == Some(&'\'') {
            raw.push('\'');
            chars.next();
            while let Some(c) = chars.next() {
                raw.push(c);
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        raw.push(n);
                    }
                } else if c == '\'' {
                    break;
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                raw.push(c);
                chars.next();
            }
        }
        pairs.push((key, Some(raw)));
    }
    pairs
}

/// Takes `sslmode` and `sslrootcert` out of a URL's query or a `key=value` string: libpq's
/// modes go further than the driver's.
fn take_tls_params(text: &str) -> (String, Option<String>, Option<String>) {
    let (mut mode, mut root) = (None, None);
    if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        let Some((base, query)) = text.split_once('?') else {
            return (text.to_string(), None, None);
        };
        let mut kept = Vec::new();
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("sslmode", v)) => mode = Some(v.to_string()),
                Some(("sslrootcert", v)) => root = Some(v.to_string()),
                _ => kept.push(pair),
            }
        }
        let rest = if kept.is_empty() {
            String::new()
        } else {
            format!("?{}", kept.join("&"))
        };
        return (format!("{base}{rest}"), mode, root);
    }
    let mut kept = Vec::new();
    let pairs = key_value_pairs(text);
    for (key, raw) in pairs {
        let unquoted = raw.as_deref().map(|r| {
            r.strip_prefix('\'')
                .and_then(|r| r.strip_suffix('\''))
                .unwrap_or(r)
                .replace("\\'", "'")
                .replace("\\\\", "\\")
        });
        match key.as_str() {
            "sslmode" => mode = unquoted,
            "sslrootcert" => root = unquoted,
            _ => kept.push(match raw {
                Some(r) => format!("{key}={r}"),
                None => key,
            }),
        }
    }
    (kept.join(" "), mode, root)
}

impl ConnectionSpec {
    /// Parses a URL or `key=value` string and fills in what it leaves out as libpq would. The
    /// error names what is wrong without echoing the text.
    pub fn parse(text: &str) -> Result<Self> {
        let (rest, mode, root) = take_tls_params(text.trim());
        let config: Config = if rest.is_empty() {
            Config::new()
        } else {
            rest.parse().map_err(|e: tokio_postgres::Error| {
                Error::Usage(format!(
                    "the database URL is not valid ({}); write postgres://user@host:port/database or host=... dbname=...",
                    redact(&e.to_string())
                ))
            })?
        };
        Self::complete(config, mode, root)
    }

    /// From the `PG*` environment variables alone, when at least one names a server or a
    /// database.
    pub fn from_env() -> Result<Option<Self>> {
        let any = ["PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER"]
            .iter()
            .any(|v| env(v).is_some());
        if !any {
            return Ok(None);
        }
        Self::complete(Config::new(), None, None).map(Some)
    }

    /// `--database-url`/`DATABASE_URL` when given, else the `PG*` environment.
    pub fn resolve(url: Option<&str>) -> Result<Option<Self>> {
        match url {
            Some(u) => Self::parse(u).map(Some),
            None => Self::from_env(),
        }
    }

    fn complete(mut config: Config, mode: Option<String>, root: Option<String>) -> Result<Self> {
        if config.get_hosts().is_empty() {
            match env("PGHOST") {
                Some(hosts) => {
                    for h in hosts.split(',') {
                        config.host(h);
                    }
                }
                None => {
                    let socket = std::path::Path::new("/var/run/postgresql");
                    if socket.is_dir() {
                        config.host_path(socket);
                    } else {
                        config.host("localhost");
                    }
                }
            }
        }
        if config.get_ports().is_empty() {
            if let Some(p) = env("PGPORT") {
                let port: u16 = p
                    .parse()
                    .map_err(|_| Error::Usage(format!("PGPORT `{p}` is not a port number")))?;
                config.port(port);
            }
        }
        if config.get_user().is_none() {
            let user = env("PGUSER")
                .or_else(|| env("USER"))
                .unwrap_or_else(|| "postgres".to_string());
            config.user(&user);
        }
        if config.get_dbname().is_none() {
            let db = env("PGDATABASE")
                .or_else(|| config.get_user().map(str::to_string))
                .unwrap_or_else(|| "postgres".to_string());
            config.dbname(&db);
        }
        if config.get_password().is_none() {
            let password = env("PGPASSWORD").or_else(|| {
                let host = match config.get_hosts().first() {
                    Some(Host::Tcp(h)) => h.clone(),
                    _ => "localhost".to_string(),
                };
                let port = config.get_ports().first().copied().unwrap_or(5432);
                pgpass::lookup(
                    &host,
                    port,
                    config.get_dbname().unwrap_or_default(),
                    config.get_user().unwrap_or_default(),
                )
            });
            if let Some(p) = password {
                config.password(p);
            }
        }
        if config.get_application_name().is_none() {
            let name = env("PGAPPNAME").unwrap_or_else(|| "backfill".to_string());
            config.application_name(&name);
        }
        // `jit = off` on every connection: everything this tool runs is a short statement, a
        // chunk or a page of `verify`, and on a large table their estimated cost passes
        // `jit_above_cost` (a generic plan cannot know how few keys a chunk holds). Compiling
        // then costs 20-40 ms a statement: at 5M rows the chunks' batch sizing shrank to its
        // minimum and update_rows crawled at 700 rows/s (111k without), and `verify` took 16.6 s
        // instead of 10.1.
        add_options(&mut config, "-c jit=off");
        let ssl = match mode.or_else(|| env("PGSSLMODE")) {
            Some(m) => SslMode::parse(&m)?,
            None => SslMode::Prefer,
        };
        config.ssl_mode(ssl.driver());
        let root_cert = root.or_else(|| env("PGSSLROOTCERT")).map(PathBuf::from);
        Ok(ConnectionSpec {
            config,
            ssl,
            root_cert,
        })
    }

    /// Where this connects, for messages: `host:port` (each host tried), the database and the
    /// user; never the password.
    pub fn target(&self) -> String {
        let ports = self.config.get_ports();
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let port = ports
                    .get(i)
                    .or_else(|| ports.first())
                    .copied()
                    .unwrap_or(5432);
                match h {
                    tokio_postgres::config::Host::Tcp(h) => format!("{h}:{port}"),
                    tokio_postgres::config::Host::Unix(p) => {
                        format!("{}/.s.PGSQL.{port}", p.display())
                    }
                }
            })
            .collect();
        format!(
            "{} (database {}, user {})",
            if hosts.is_empty() {
                "localhost:5432".to_string()
            } else {
                hosts.join(", ")
            },
            self.config.get_dbname().unwrap_or("?"),
            self.config.get_user().unwrap_or("?")
        )
    }

    /// The driver configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The database name, for messages.
    pub fn dbname(&self) -> Option<&str> {
        self.config.get_dbname()
    }

    /// The TLS connector for this connection's `sslmode`.
    pub fn tls(&self) -> Result<MakeRustlsConnect> {
        tls::connector(self.ssl, self.root_cert.as_deref())
    }

    /// Opens one connection; the connection task runs on the current tokio runtime.
    pub async fn connect(&self) -> Result<Client> {
        self.attempt(self.tls()?)
            .await
            .map_err(|e| self.connect_failed(&e))
    }

    /// Connects, riding out a server it cannot reach for up to [`REACH_FOR`] (refused, reset,
    /// timed out, starting up or shutting down: a restart, a crash, a failover, a load
    /// balancer dropping connections), waiting 0.2 s and doubling to 3.2 s between tries. A
    /// server that answers and refuses (a password, a missing database) fails at once, as
    /// [`ConnectionSpec::connect`].
    pub async fn connect_patiently(&self) -> Result<Client> {
        let tls = self.tls()?;
        let deadline = std::time::Instant::now() + REACH_FOR;
        let mut tries = 0;
        loop {
            match self.attempt(tls.clone()).await {
                Ok(client) => return Ok(client),
                Err(e)
                    if e.code().map_or(true, |c| connection_lost_code(c.code()))
                        && std::time::Instant::now() < deadline =>
                {
                    tries += 1;
                    tracing::warn!(attempt = tries, error = %redact(&connect_error(&e)), "cannot reach the database; trying again");
                    tokio::time::sleep(Duration::from_millis(200 << tries.min(4))).await;
                }
                Err(e) => return Err(self.connect_failed(&e)),
            }
        }
    }

    /// One try, with the driver's own error.
    async fn attempt(
        &self,
        tls: MakeRustlsConnect,
    ) -> std::result::Result<Client, tokio_postgres::Error> {
        tracing::debug!(database = ?self.config.get_dbname(), sslmode = ?self.ssl, "connecting");
        let (client, connection) = self.config.connect(tls).await?;
        tokio::spawn(async move {
            // The error surfaces on the client's next query; nothing to do here.
            let _ = connection.await;
        });
        Ok(client)
    }

    /// A failed connection as the user reads it: where, and why (never a password).
    fn connect_failed(&self, e: &tokio_postgres::Error) -> Error {
        Error::Connect(format!("{}: {}", self.target(), redact(&connect_error(e))))
    }
}

/// Adds `more` (`-c name=value ...`) to the startup `options` of `config`, after the ones it
/// has, so that on a setting given twice `more` wins.
pub fn add_options(config: &mut Config, more: &str) {
    let options = match config.get_options() {
        Some(own) => format!("{own} {more}"),
        None => more.to_string(),
    };
    config.options(options);
}

/// `name=value, ...` of the server settings `names`, as the server reports them
/// (`current_setting`): how a throwaway cluster is set, for the demo and the benchmarks.
pub async fn server_settings(client: &Client, names: &[&str]) -> Result<String> {
    let mut settings = Vec::new();
    for name in names {
        let value: String = client
            .query_one("SELECT current_setting($1)", &[name])
            .await
            .map_err(|e| Error::db(format!("reading the setting {name}"), &e))?
            .get(0);
        settings.push(format!("{name}={value}"));
    }
    Ok(settings.join(", "))
}

/// How long [`ConnectionSpec::connect_patiently`] keeps trying a server it cannot reach.
pub const REACH_FOR: Duration = Duration::from_secs(30);

/// The driver's error with its cause (a TLS failure says why).
fn connect_error(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(&format!(": {more}"));
        }
        source = s.source();
    }
    text
}

/// A connection string without its password (`postgres://u:secret@h/db?password=x` →
/// `postgres://u@h/db`, `password = 'a b'` dropped from a key=value string), for commands
/// printed back to the user.
pub fn without_password(text: &str) -> String {
    let text = text.trim();
    for scheme in ["postgresql://", "postgres://"] {
        if let Some(rest) = text.strip_prefix(scheme) {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let (authority, tail) = rest.split_at(end);
            let authority = match authority.rsplit_once('@') {
                Some((userinfo, host)) => {
                    let user = userinfo.split(':').next().unwrap_or_default();
                    format!("{user}@{host}")
                }
                None => authority.to_string(),
            };
            let (path, query) = match tail.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (tail, None),
            };
            let kept: Vec<&str> = query
                .into_iter()
                .flat_map(|q| q.split('&'))
                .filter(|p| !p.is_empty() && !p.to_ascii_lowercase().starts_with("password"))
                .collect();
            let query = if kept.is_empty() {
                String::new()
            } else {
                format!("?{}", kept.join("&"))
            };
            return format!("{scheme}{authority}{path}{query}");
        }
    }
    key_value_pairs(text)
        .into_iter()
        .filter(|(key, _)| !key.eq_ignore_ascii_case("password"))
        .map(|(key, raw)| match raw {
            Some(r) => format!("{key}={r}"),
            None => key,
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Drivers may echo parts of a connection string in errors: hide every `password=` value.
fn redact(message: &str) -> String {
    let lower = message.to_ascii_lowercase();
    let mut out = String::new();
    let mut i = 0;
    while let Some(at) = lower[i..].find("password=") {
        let start = i + at + "password=".len();
        out.push_str(&message[i..start]);
        out.push_str("<hidden>");
        let end = message[start..]
            .find(|c: char| c.is_whitespace() || c == '&')
            .map_or(message.len(), |e| start + e);
        i = end;
    }
    out.push_str(&message[i..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_come_out_of_urls_and_key_value_strings() {
        let (rest, mode, root) = take_tls_params(
            "postgres://u@h:5/db?sslmode=verify-full&application_name=x&sslrootcert=/r.crt",
        );
        assert_eq!(rest, "postgres://u@h:5/db?application_name=x");
        assert_eq!(mode.as_deref(), Some("verify-full"));
        assert_eq!(root.as_deref(), Some("/r.crt"));
        let (rest, mode, root) = take_tls_params(
            "host=h password='a b\\'c' sslmode = verify-ca sslrootcert='/x y.crt' dbname=d",
        );
        assert_eq!(rest, "host=h password='a b\\'c' dbname=d");
        assert_eq!(mode.as_deref(), Some("verify-ca"));
        assert_eq!(root.as_deref(), Some("/x y.crt"));
    }

    #[test]
    fn printed_connection_strings_lose_their_password() {
        for (given, printed) in [
            (
                "postgres://u:secret@h:5/db?sslmode=require",
                "postgres://u@h:5/db?sslmode=require",
            ),
            ("postgres://u@h/db?password=secret", "postgres://u@h/db"),
            (
                "postgresql://u:s@h?password=x&application_name=a",
                "postgresql://u@h?application_name=a",
            ),
            ("postgres://h/db", "postgres://h/db"),
            ("host=h password = 'a b\\'c' dbname=d", "host=h dbname=d"),
            ("host=h password=secret user=u", "host=h user=u"),
        ] {
            let out = without_password(given);
            assert_eq!(out, printed, "{given}");
            assert!(!out.contains("secret") && !out.contains("a b"), "{out}");
        }
    }

    #[test]
    fn messages_never_carry_the_password() {
        assert_eq!(
            redact("bad password=secret host=h"),
            "bad password=<hidden> host=h"
        );
        assert_eq!(
            redact("password authentication failed for user \"u\""),
            "password authentication failed for user \"u\""
        );
    }
}
