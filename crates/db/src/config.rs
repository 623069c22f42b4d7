//! The `database` section of the configuration, owned here because this crate consumes it.

use config_core::{Config, Validator};
use secrecy::{ExposeSecret, SecretString};

use sqlx::postgres::PgConnectOptions;

use crate::connect::{is_local, is_plaintext_to_remote};

/// How to reach and prepare the environment's PostgreSQL database. `Debug` is safe: the URL is a
/// [`SecretString`] and prints as redacted.
#[derive(Debug, Config)]
#[config(validate = validate_database)]
pub struct DatabaseConfig {
    /// PostgreSQL connection URL (`postgres://user:password@host:port/database?sslmode=…`). Its
    /// password is rotated without a restart by `cargo xtask rotate-db-password` and a reload
    /// (docs/systemd-deployment.md, "Rotating secrets without a restart").
    #[config(alias = "DATABASE_URL", redact = "url")]
    pub url: SecretString,
    /// A direct connection URL (no pooler) for migrations, stamping and the session advisory
    /// locks they take. Set it when `database.url` goes through a pooler in transaction mode
    /// (PgBouncer), where session locks do not hold; unset, `database.url` is used.
    #[config(redact = "url")]
    pub migration_url: Option<SecretString>,
    /// Use named prepared statements, cached per connection. Set false behind a pooler in
    /// transaction mode (PgBouncer before 1.21, or without `max_prepared_statements`): every query
    /// then uses the unnamed statement, which such a pooler can multiplex.
    #[config(default = "true")]
    pub prepared_statements: bool,
    /// File with the root CA certificate(s), PEM, that the server's certificate must chain to
    /// (for `sslmode=verify-full`/`verify-ca`); applies to `url` and `migration_url`. The same as
    /// `sslrootcert=` in the URL, but kept out of the secret.
    pub ssl_root_cert: Option<String>,
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
    /// Require TLS that authenticates the server (`sslmode=verify-full` with `sslrootcert`) for
    /// remote hosts: `sslmode=require`/`prefer` is a warning in staging and an error in production
    /// unless this is set to false knowingly.
    #[config(default = "true")]
    pub tls_verify: bool,
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
    /// Seconds after which an idle pooled connection is closed and replaced by a new one; 0 keeps
    /// connections as long as they work. Bounds how long connections opened before a password
    /// rotation (still logged in with the old password) or before a server failover live on.
    #[config(default = "1800")]
    pub max_lifetime_secs: u64,
}

fn validate_database(db: &DatabaseConfig, v: &mut Validator<'_>) {
    if db.pool.max_connections == 0 || db.pool.min_connections > db.pool.max_connections {
        v.error(
            "pool.max_connections",
            "must be at least 1 and at least pool.min_connections",
        );
    }
    validate_url("url", &db.url, db.require_tls, db.tls_verify, v);
    if let Some(url) = &db.migration_url {
        validate_url("migration_url", url, db.require_tls, db.tls_verify, v);
    }
    if let Some(path) = &db.ssl_root_cert
        && let Err(err) = std::fs::File::open(path)
    {
        v.error(
            "ssl_root_cert",
            format!(
                "cannot be read ({}); mount the provider's root CA file there",
                err.kind()
            ),
        );
    }
}

fn validate_url(
    key: &str,
    url: &SecretString,
    require_tls: bool,
    tls_verify: bool,
    v: &mut Validator<'_>,
) {
    let url = url.expose_secret();
    // Placeholders are already reported, as an error or a warning depending on the environment.
    if config_core::is_placeholder(url) {
        return;
    }
    let url = url.trim();
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        v.error(
            key,
            "must be a URL starting with postgres:// or postgresql://",
        );
        return;
    }
    // The driver's own parser, so that what is checked here is what `connect` will do.
    match url.parse::<sqlx::postgres::PgConnectOptions>() {
        Err(_) => v.error(key, "is not a valid PostgreSQL URL (postgres://user:password@host:port/database)"),
        Ok(options) if require_tls && is_plaintext_to_remote(&options) => v.strict(
            key,
            "connects to a remote host without TLS; add ?sslmode=verify-full (or require), or set database.require_tls: false knowingly",
        ),
        Ok(options) => {
            check_verified_tls(key, tls_verify, &options, v);
            check_password(key, url, &options, v);
        }
    }
}

/// `sslmode=require`/`prefer` encrypt but accept any certificate: a man in the middle can read
/// the password and every memory. Staging warns, production refuses, unless `tls_verify: false`.
fn check_verified_tls(
    key: &str,
    tls_verify: bool,
    options: &PgConnectOptions,
    v: &mut Validator<'_>,
) {
    use sqlx::postgres::PgSslMode;
    let environment = v.environment();
    if !tls_verify || !environment.is_strict() || is_local(options) {
        return;
    }
    let mode = match options.get_ssl_mode() {
        PgSslMode::Prefer => "prefer",
        PgSslMode::Require => "require",
        PgSslMode::VerifyCa => "verify-ca",
        _ => return,
    };
    let message = format!(
        "sslmode={mode} to the remote host {} does not verify the server's certificate (verify-ca checks the CA but not the host name); use sslmode=verify-full&sslrootcert=/path/to/ca.pem, or set database.tls_verify: false knowingly",
        options.get_host()
    );
    if environment == config_core::Environment::Production {
        v.error(key, message);
    } else {
        v.warning(key, message);
    }
}

/// The password in the URL: long enough, not a default, not the role name.
fn check_password(key: &str, url: &str, options: &PgConnectOptions, v: &mut Validator<'_>) {
    let Ok(parsed) = url::Url::parse(url) else {
        return;
    };
    let from_query = parsed
        .query_pairs()
        .find(|(key, _)| key == "password")
        .map(|(_, value)| SecretString::from(value.into_owned()));
    let from_userinfo = parsed.password().map(|p| {
        SecretString::from(
            percent_encoding::percent_decode_str(p)
                .decode_utf8_lossy()
                .into_owned(),
        )
    });
    let Some(password) = from_query.or(from_userinfo) else {
        return;
    };
    if let Some(weakness) =
        config_core::password_weakness(password.expose_secret(), Some(options.get_username()))
    {
        v.strict(key, weakness);
    }
}
