//! Talking to PostgreSQL: connecting and reading the catalog.

pub mod catalog;

use tokio_postgres::{Client, Config, NoTls};

use crate::error::{Error, Result};

/// Where to connect: a `postgres://` URL or a libpq `key=value` string. The text is kept out of
/// every message, since it may hold a password.
#[derive(Clone)]
pub struct ConnectionSpec {
    config: Config,
}

impl std::fmt::Debug for ConnectionSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectionSpec(<hidden>)")
    }
}

impl ConnectionSpec {
    /// Parses a URL or `key=value` string. The error names what is wrong without echoing it.
    pub fn parse(text: &str) -> Result<Self> {
        let mut config: Config = text.parse().map_err(|e: tokio_postgres::Error| {
            Error::Usage(format!(
                "the database URL is not valid ({}); write postgres://user@host:port/database or host=... dbname=...",
                redact(&e.to_string())
            ))
        })?;
        if config.get_application_name().is_none() {
            config.application_name("backfill");
        }
        Ok(ConnectionSpec { config })
    }

    /// The driver configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The database name, for messages.
    pub fn dbname(&self) -> Option<&str> {
        self.config.get_dbname()
    }

    /// Opens one connection; the connection task runs on the current tokio runtime.
    pub async fn connect(&self) -> Result<Client> {
        let (client, connection) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|e| Error::Connect(redact(&e.to_string())))?;
        tokio::spawn(async move {
            // The error surfaces on the client's next query; nothing to do here.
            let _ = connection.await;
        });
        Ok(client)
    }
}

/// Drivers may echo parts of a connection string in errors; cut anything after `password`.
fn redact(message: &str) -> String {
    match message.to_ascii_lowercase().find("password") {
        Some(i) => format!("{}password <hidden>", &message[..i]),
        None => message.to_string(),
    }
}
