//! The database checks of one environment: db-tls, db-connect, db-stamp, db-migrations.

use std::str::FromStr;

use config_core::{RawValue, is_placeholder, redact_url};
use db::DbError;
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgSslMode};

use super::{CONNECT_WAIT_SECS, Check, DATABASE_CHECKS_TIMEOUT, URL_KEY, raw_bool};
use crate::checks::{CheckResult, Status, ids, list, plural};
use crate::config::AppConfig;

impl Check<'_> {
    /// `database.url` when it is set to something that parses, with its source; or why not.
    pub(super) fn database_url(&self) -> Result<(SecretString, PgConnectOptions, String), String> {
        let resolution = self
            .resolution
            .ok_or_else(|| "the configuration could not be resolved".to_owned())?;
        let resolved = resolution
            .values
            .get(URL_KEY)
            .ok_or_else(|| "database.url is not set".to_owned())?;
        let RawValue::Text(url) = &resolved.value else {
            return Err(format!(
                "database.url is not a single value [{}]",
                resolved.source
            ));
        };
        let text = url.expose_secret().trim();
        if is_placeholder(text) {
            return Err(format!(
                "database.url is not set to a real value [{}]",
                resolved.source
            ));
        }
        let options = PgConnectOptions::from_str(text).map_err(|_| {
            format!(
                "database.url is not a valid PostgreSQL URL [{}]",
                resolved.source
            )
        })?;
        Ok((
            SecretString::from(text.to_owned()),
            options,
            resolved.source.to_string(),
        ))
    }

    pub(super) fn tls(&self) -> CheckResult {
        let (url, options, source) = match self.database_url() {
            Ok(found) => found,
            Err(reason) => return CheckResult::skip(ids::DB_TLS, self.scope, reason),
        };
        let shown = redact_url(url.expose_secret());
        if let Some(socket) = options.get_socket() {
            return CheckResult::pass(
                ids::DB_TLS,
                self.scope,
                format!(
                    "{shown} connects over the unix socket in {}",
                    socket.display()
                ),
            );
        }
        if is_local_host(options.get_host()) {
            return CheckResult::pass(
                ids::DB_TLS,
                self.scope,
                format!("{shown} connects to this machine ({})", options.get_host()),
            );
        }
        let mode = options.get_ssl_mode();
        if matches!(
            mode,
            PgSslMode::Require | PgSslMode::VerifyCa | PgSslMode::VerifyFull
        ) {
            return CheckResult::pass(
                ids::DB_TLS,
                self.scope,
                format!("{shown} uses TLS (sslmode={})", ssl_mode_name(mode)),
            );
        }
        CheckResult::new(
            ids::DB_TLS,
            self.scope,
            self.strict(),
            format!(
                "{shown} reaches the remote host {} without TLS (sslmode={})",
                options.get_host(),
                ssl_mode_name(mode)
            ),
        )
        .with_fix(format!(
            "add sslmode=verify-full (or require) to DATABASE_URL [{source}]"
        ))
    }

    /// db-connect, db-stamp and db-migrations, and the schema fingerprint.
    pub(super) async fn database(
        &self,
        config: Option<&AppConfig>,
    ) -> (Vec<CheckResult>, Result<db::SchemaFingerprint, String>) {
        let skip_all = |reason: &str| {
            [
                ids::DB_CONNECT,
                ids::DB_ROLE,
                ids::DB_STAMP,
                ids::DB_MIGRATIONS,
                ids::DB_BACKUP,
            ]
            .map(|id| CheckResult::skip(id, self.scope, reason))
            .to_vec()
        };
        let (url, source) = match self.database_url() {
            Ok((url, _, source)) => (url, source),
            Err(reason) => {
                let reason = if config.is_none() {
                    format!("{reason} (the configuration does not load)")
                } else {
                    reason
                };
                return (skip_all(&reason), Err(reason));
            }
        };
        let (require_tls, auto_migrate) = match (config, self.resolution) {
            (Some(config), _) => (config.database.require_tls, config.database.auto_migrate),
            (None, Some(resolution)) => (
                raw_bool(resolution, "database.require_tls").unwrap_or(true),
                raw_bool(resolution, "database.auto_migrate").unwrap_or(false),
            ),
            (None, None) => (true, false),
        };
        let database = db::DatabaseConfig {
            url: url.clone(),
            migration_url: None,
            prepared_statements: true,
            ssl_root_cert: config.and_then(|config| config.database.ssl_root_cert.clone()),
            pool: db::PoolConfig {
                min_connections: 0,
                max_connections: 2,
                max_lifetime_secs: 1800,
            },
            acquire_timeout_secs: 3,
            connect_wait_secs: CONNECT_WAIT_SECS,
            require_tls,
            tls_verify: true,
            auto_migrate: false,
        };
        let shown = redact_url(url.expose_secret());
        let checks = async {
            let pool = match db::connect(&database, |_| {}).await {
                Ok(pool) => pool,
                Err(err) => {
                    let reason = err.to_string();
                    let mut results = vec![
                        CheckResult::fail(ids::DB_CONNECT, self.scope, &reason)
                            .with_fix(self.connect_fix(&err, &source)),
                    ];
                    let skipped = format!("the database is unreachable ({shown})");
                    results.push(CheckResult::skip(ids::DB_ROLE, self.scope, &skipped));
                    results.push(CheckResult::skip(ids::DB_STAMP, self.scope, &skipped));
                    results.push(CheckResult::skip(ids::DB_MIGRATIONS, self.scope, &skipped));
                    results.push(CheckResult::skip(ids::DB_BACKUP, self.scope, &skipped));
                    return (
                        results,
                        Err(format!("its database is unreachable: {reason}")),
                    );
                }
            };
            let mut results = vec![CheckResult::pass(
                ids::DB_CONNECT,
                self.scope,
                format!("connected to {shown}"),
            )];
            results.push(self.role(&pool).await);
            results.push(self.stamp(&pool, &source).await);
            results.push(self.migrations(&pool, auto_migrate).await);
            let max_age_hours = config.map_or(26, |config| config.backup.max_age_hours);
            results.push(self.backup_age(&pool, max_age_hours).await);
            let fingerprint = db::fingerprint(&pool)
                .await
                .map_err(|err| format!("cannot fingerprint its database: {err}"));
            pool.close().await;
            (results, fingerprint)
        };
        match tokio::time::timeout(DATABASE_CHECKS_TIMEOUT, checks).await {
            Ok(done) => done,
            Err(_) => {
                let reason = format!(
                    "the database checks did not finish within {} s ({shown})",
                    DATABASE_CHECKS_TIMEOUT.as_secs()
                );
                let mut results = skip_all(&reason);
                results[0] = CheckResult::fail(ids::DB_CONNECT, self.scope, &reason);
                (results, Err(reason))
            }
        }
    }

    pub(super) fn connect_fix(&self, err: &DbError, source: &str) -> String {
        let environment = self.environment;
        let expected = db::database_name(environment);
        let role = db::role_name(environment);
        let setup = if self.invocation.xtask {
            format!("cargo xtask setup-db --env {environment}")
        } else {
            format!(
                "from a source checkout: cargo xtask setup-db --env {environment} --admin-url postgres://postgres@HOST/postgres"
            )
        };
        match err {
            DbError::Unavailable { .. } | DbError::Connect { .. } => format!(
                "start PostgreSQL (systemctl start postgresql) or fix the host and port of DATABASE_URL [{source}]"
            ),
            DbError::AuthenticationFailed { .. } => {
                if self.invocation.xtask {
                    format!(
                        "fix the password in DATABASE_URL [{source}], or set a new one: cargo xtask setup-db --env {environment} --reset-password"
                    )
                } else {
                    format!("fix the user and password in DATABASE_URL [{source}]")
                }
            }
            DbError::DatabaseMissing { .. } | DbError::AccessDenied { .. } => format!(
                "{environment} uses database {expected} as role {role}: point DATABASE_URL [{source}] there, or provision it ({setup})"
            ),
            DbError::PlaintextRefused { .. } => {
                format!("add sslmode=verify-full to DATABASE_URL [{source}]")
            }
            DbError::InvalidUrl { .. } => {
                format!("fix DATABASE_URL [{source}]: postgres://user:password@host:port/database")
            }
            _ => format!("check DATABASE_URL [{source}] and the server's log"),
        }
    }

    /// The login role's attributes: SUPERUSER/BYPASSRLS fail where serving refuses them.
    pub(super) async fn role(&self, pool: &sqlx::PgPool) -> CheckResult {
        let role = match db::role_attributes(pool).await {
            Ok(role) => role,
            Err(err) => return CheckResult::fail(ids::DB_ROLE, self.scope, err.to_string()),
        };
        let fix = format!(
            "ALTER ROLE {} NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB (as an administrator), or connect as {}",
            role.name,
            db::role_name(self.environment)
        );
        if !role.dangerous().is_empty() {
            let status = if self.environment.is_strict() {
                Status::Fail
            } else {
                Status::Warn
            };
            CheckResult::new(
                ids::DB_ROLE,
                self.scope,
                status,
                format!("{role}: serving refuses it in staging and production"),
            )
            .with_fix(fix)
        } else if !role.needless().is_empty() {
            CheckResult::warn(
                ids::DB_ROLE,
                self.scope,
                format!("{role}: serving does not need it"),
            )
            .with_fix(fix)
        } else {
            // What tenancy could put in place (migration V7, `setup-db`): docs/tenancy.md.
            let tenancy = match db::tenancy_state(pool).await {
                Ok(state) => format!("; {state}"),
                Err(err) => format!("; row-level security state unknown: {err}"),
            };
            CheckResult::pass(ids::DB_ROLE, self.scope, format!("{role}{tenancy}"))
        }
    }

    pub(super) async fn stamp(&self, pool: &sqlx::PgPool, source: &str) -> CheckResult {
        let environment = self.environment;
        match db::check_stamp(pool, environment).await {
            Ok(stamp) => CheckResult::pass(ids::DB_STAMP, self.scope, stamp.to_string()),
            Err(err @ DbError::WrongEnvironment { .. }) => {
                let expected = db::database_name(environment);
                let fix = match &err {
                    DbError::WrongEnvironment {
                        database, stamped, ..
                    } if database == expected => format!(
                        "{database} carries {stamped}'s stamp: find out whose data it holds and restore {environment}'s own database if it is a copy; never re-stamp another environment's database"
                    ),
                    _ => format!(
                        "point DATABASE_URL [{source}] at the {environment} database ({expected}); never re-stamp another environment's database"
                    ),
                };
                CheckResult::fail(ids::DB_STAMP, self.scope, err.to_string()).with_fix(fix)
            }
            Err(err @ DbError::Unstamped { .. }) => {
                CheckResult::fail(ids::DB_STAMP, self.scope, err.to_string()).with_fix(format!(
                    "if it is the new, empty {environment} database: {}",
                    self.invocation.command(environment, "migrate --stamp")
                ))
            }
            Err(err) => CheckResult::fail(ids::DB_STAMP, self.scope, err.to_string()),
        }
    }

    pub(super) async fn migrations(&self, pool: &sqlx::PgPool, auto_migrate: bool) -> CheckResult {
        let migrate = self.invocation.command(self.environment, "migrate");
        match db::pending(pool).await {
            Ok(pending) if pending.is_empty() => {
                CheckResult::pass(ids::DB_MIGRATIONS, self.scope, "no pending migrations")
            }
            Ok(pending) => {
                let names: Vec<String> = pending.iter().map(ToString::to_string).collect();
                let what = format!(
                    "{} pending: {}",
                    plural(pending.len(), "migration"),
                    list(&names, 6)
                );
                if auto_migrate {
                    CheckResult::warn(
                        ids::DB_MIGRATIONS,
                        self.scope,
                        format!("{what} (applied at the next start: database.auto_migrate)"),
                    )
                    .with_fix(migrate)
                } else {
                    CheckResult::fail(ids::DB_MIGRATIONS, self.scope, what).with_fix(migrate)
                }
            }
            Err(err) => CheckResult::fail(ids::DB_MIGRATIONS, self.scope, err.to_string()),
        }
    }

    /// db-backup: the age of the last good backup, as `cognitive-memory-mcp backup` recorded it
    /// in `lifecycle_status`, and whether the last attempt failed. Overdue is a FAIL in staging
    /// and production; never backed up is a WARN (a new installation).
    pub(super) async fn backup_age(&self, pool: &sqlx::PgPool, max_age_hours: u32) -> CheckResult {
        let backup = match crate::lifecycle::read_status(pool).await {
            Ok(status) => status.backup,
            Err(err) => return CheckResult::fail(ids::DB_BACKUP, self.scope, err.to_string()),
        };
        let command = self.invocation.command(self.environment, "backup");
        let failed = backup
            .last_error
            .as_deref()
            .map(|err| {
                format!(
                    "; the last attempt ({}) failed: {err}",
                    backup.last_attempt_at.as_deref().unwrap_or("?")
                )
            })
            .unwrap_or_default();
        let (Some(at), Some(age)) = (&backup.last_good_at, backup.last_good_age_secs) else {
            return CheckResult::warn(
                ids::DB_BACKUP,
                self.scope,
                format!("no good backup recorded yet{failed}"),
            )
            .with_fix(format!(
                "{command} (daily: the cognitive-memory-backup.timer)"
            ));
        };
        let hours = age as f64 / 3600.0;
        let what = format!(
            "last good backup {at}, {hours:.1} h ago ({}){failed}",
            backup.last_good_file.as_deref().unwrap_or("?")
        );
        if age > i64::from(max_age_hours) * 3600 {
            let result = if self.environment.is_strict() {
                CheckResult::fail(
                    ids::DB_BACKUP,
                    self.scope,
                    format!("{what}: older than backup.max_age_hours ({max_age_hours})"),
                )
            } else {
                CheckResult::warn(
                    ids::DB_BACKUP,
                    self.scope,
                    format!("{what}: older than backup.max_age_hours ({max_age_hours})"),
                )
            };
            result.with_fix(format!("{command}; then look at `systemctl status cognitive-memory-backup` and `journalctl -u cognitive-memory-backup`"))
        } else if backup.last_error.is_some() {
            CheckResult::warn(ids::DB_BACKUP, self.scope, what).with_fix(format!(
                "journalctl -u cognitive-memory-backup; then {command}"
            ))
        } else {
            CheckResult::pass(ids::DB_BACKUP, self.scope, what)
        }
    }
}

/// A unix socket directory, `localhost`, 127.0.0.0/8 or ::1.
pub(super) fn is_local_host(host: &str) -> bool {
    host.starts_with('/')
        || host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

fn ssl_mode_name(mode: PgSslMode) -> &'static str {
    match mode {
        PgSslMode::Disable => "disable",
        PgSslMode::Allow => "allow",
        PgSslMode::Prefer => "prefer",
        PgSslMode::Require => "require",
        PgSslMode::VerifyCa => "verify-ca",
        PgSslMode::VerifyFull => "verify-full",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_hosts() {
        for host in [
            "localhost",
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
            "/run/postgresql",
        ] {
            assert!(is_local_host(host), "{host}");
        }
        for host in ["db.internal", "10.0.0.1", "::2"] {
            assert!(!is_local_host(host), "{host}");
        }
    }
}
