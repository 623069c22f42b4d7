//! The `database` section of the configuration, owned here because this crate consumes it.

use config_core::{Config, Validator};
use secrecy::{ExposeSecret, SecretString};

use crate::connect::is_plaintext_to_remote;

/// How to reach and prepare the environment's PostgreSQL database. `Debug` is safe: the URL is a
/// [`SecretString`] and prints as redacted.
#[derive(Debug, Config)]
#[config(validate = validate_database)]
pub struct DatabaseConfig {
    /// PostgreSQL connection URL (`postgres://user:password@host:port/database?sslmode=…`).
    #[config(alias = "DATABASE_URL", redact = "url")]
    pub url: SecretString,
    /// Connection pool sizes.
    #[config(section)]
    pub pool: PoolConfig,
    /// Seconds a request waits for a free pooled connection.
    #[config(default = "5")]
    pub acquire_timeout_secs: u64,
    /// Seconds start-up keeps retrying an unreachable database before giving up (exit 75).
    #[config(default = "30")]
    pub connect_wait_secs: u64,
    /// Refuse plain-text connections to hosts other than localhost and unix sockets.
    #[config(default = "true")]
    pub require_tls: bool,
    /// Apply pending migrations at start-up (development and test); elsewhere they must be applied with `migrate`.
    #[config(default = "false")]
    pub auto_migrate: bool,
}

/// Connection pool bounds.
#[derive(Debug, Config)]
pub struct PoolConfig {
    /// Connections kept open while idle.
    #[config(default = "1")]
    pub min_connections: u32,
    /// Most connections open at once.
    #[config(default = "10")]
    pub max_connections: u32,
}

fn validate_database(db: &DatabaseConfig, v: &mut Validator<'_>) {
    if db.pool.max_connections == 0 || db.pool.min_connections > db.pool.max_connections {
        v.error(
            "pool.max_connections",
            "must be at least 1 and at least pool.min_connections",
        );
    }
    let url = db.url.expose_secret();
    // Placeholders are already reported, as an error or a warning depending on the environment.
    if config_core::is_placeholder(url) {
        return;
    }
    let url = url.trim();
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        v.error(
            "url",
            "must be a URL starting with postgres:// or postgresql://",
        );
        return;
    }
    // The driver's own parser, so that what is checked here is what `connect` will do.
    match url.parse::<sqlx::postgres::PgConnectOptions>() {
        Err(_) => v.error("url", "is not a valid PostgreSQL URL (postgres://user:password@host:port/database)"),
        Ok(options) if db.require_tls && is_plaintext_to_remote(&options) => v.strict(
            "url",
            "connects to a remote host without TLS; add ?sslmode=verify-full (or require), or set database.require_tls: false knowingly",
        ),
        Ok(_) => {}
    }
}
