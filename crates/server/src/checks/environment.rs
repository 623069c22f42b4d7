//! Checks of one environment: its configuration loads, its secrets are supplied, private and
//! real, and its database is reachable (briefly), encrypted or local, stamped for it and
//! migrated. Also gathers what the checks across environments compare ([`EnvironmentFacts`]).

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use config_core::{
    ConfigValue, EnvSnapshot, Environment, KeySpec, RawValue, Report as ConfigReport, Resolution,
    Source, is_placeholder, redact_url,
};
use db::DbError;
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgSslMode};

use super::repository::problem_text;
use super::{CheckResult, Invocation, Scope, Status, ids, list, plural};
use crate::config::{self, AppConfig, ConfigSource};

/// How long the database checks wait for an unreachable server (whatever the configuration says).
const CONNECT_WAIT_SECS: u64 = 2;
/// An upper bound for all database checks of one environment together.
const DATABASE_CHECKS_TIMEOUT: Duration = Duration::from_secs(15);
const TOKEN_KEY: &str = "server.auth.token";
const URL_KEY: &str = "database.url";

/// The results of one environment's checks and what the cross-environment checks need.
#[derive(Debug)]
pub struct EnvironmentChecks {
    pub results: Vec<CheckResult>,
    pub facts: EnvironmentFacts,
}

/// What is compared across environments. `Debug` shows no secret (they are `SecretString`s).
#[derive(Debug)]
pub struct EnvironmentFacts {
    pub environment: Environment,
    pub(crate) secrets: Vec<SecretItem>,
    pub(crate) database: Option<DatabaseIdentity>,
    /// The database's schema, or why there is none.
    pub(crate) fingerprint: Result<db::SchemaFingerprint, String>,
}

/// One secret value, with how messages name it.
#[derive(Debug)]
pub(crate) struct SecretItem {
    /// `MCP_AUTH_TOKEN`, `DATABASE_URL password`.
    pub label: String,
    /// Where it was set (`.env.production:3`).
    pub source: String,
    pub value: SecretString,
}

/// Which database a `database.url` names.
#[derive(Debug, Clone)]
pub(crate) struct DatabaseIdentity {
    /// Host (any local form as `local`), port and database: equal keys are the same database.
    pub key: String,
    /// `127.0.0.1:5432/cognitive_memory`.
    pub shown: String,
    /// The database name alone.
    pub name: String,
    pub source: String,
}

/// Every check of `environment`, loading its configuration from `source` (whose
/// `environment_flag`, or `ENVIRONMENT` in `env`, must select `environment`).
pub async fn check_environment(
    source: &ConfigSource,
    environment: Environment,
    env: &EnvSnapshot,
    invocation: &Invocation,
) -> EnvironmentChecks {
    let scope = Scope::Environment(environment);
    let (config, resolution, report) =
        match config_core::load::<AppConfig>(&config::options(source, env)) {
            Ok(loaded) => {
                let report = loaded.resolution.report.clone();
                (Some(loaded.config), Some(loaded.resolution), report)
            }
            Err(failure) => (None, failure.resolution.map(|r| *r), failure.report),
        };
    let check = Check {
        scope,
        environment,
        root: &source.root,
        env,
        invocation,
        resolution: resolution.as_ref(),
    };
    let mut results = vec![check.config(&report)];
    results.push(check.env_file());
    results.push(check.secret_file_mode());
    results.push(check.secrets());
    results.push(check.tls());
    let (database_results, fingerprint) = check.database(config.as_ref()).await;
    results.extend(database_results);
    let facts = EnvironmentFacts {
        environment,
        secrets: check.secret_items(),
        database: check.database_identity(),
        fingerprint,
    };
    EnvironmentChecks { results, facts }
}

struct Check<'a> {
    scope: Scope,
    environment: Environment,
    root: &'a Path,
    env: &'a EnvSnapshot,
    invocation: &'a Invocation,
    resolution: Option<&'a Resolution>,
}

impl Check<'_> {
    /// A file below the configuration root as the loader shows it.
    fn shown(&self, name: &str) -> String {
        if self.root == Path::new(".") || self.root.as_os_str().is_empty() {
            name.to_owned()
        } else {
            self.root.join(name).display().to_string()
        }
    }

    fn env_file_name(&self) -> String {
        format!(".env.{}", self.environment)
    }

    /// FAIL in staging and production, WARN elsewhere.
    fn strict(&self) -> Status {
        if self.environment.is_strict() {
            Status::Fail
        } else {
            Status::Warn
        }
    }

    fn config(&self, report: &ConfigReport) -> CheckResult {
        let errors: Vec<String> = report.errors().map(problem_text).collect();
        let warnings: Vec<String> = report.warnings().map(problem_text).collect();
        let fix = format!(
            "{} lists every problem with its source",
            self.invocation.command(self.environment, "config check")
        );
        if !errors.is_empty() {
            let counts = if warnings.is_empty() {
                plural(errors.len(), "error")
            } else {
                format!(
                    "{}, {}",
                    plural(errors.len(), "error"),
                    plural(warnings.len(), "warning")
                )
            };
            let mut reason = format!("does not load: {counts}: {}", list(&errors, 6));
            if !warnings.is_empty() && errors.len() < 6 {
                reason.push_str(&format!(
                    "; warnings: {}",
                    list(&warnings, 6 - errors.len())
                ));
            }
            CheckResult::fail(ids::CONFIG, self.scope, reason).with_fix(fix)
        } else if !warnings.is_empty() {
            CheckResult::warn(
                ids::CONFIG,
                self.scope,
                format!(
                    "loads with {}: {}",
                    plural(warnings.len(), "warning"),
                    list(&warnings, 6)
                ),
            )
            .with_fix(fix)
        } else {
            let files: Vec<String> = self
                .resolution
                .map(|r| {
                    r.files
                        .iter()
                        .filter(|f| f.present)
                        .map(|f| f.path.display().to_string())
                        .collect()
                })
                .unwrap_or_default();
            let files = if files.is_empty() {
                "no files".to_owned()
            } else {
                files.join(", ")
            };
            CheckResult::pass(
                ids::CONFIG,
                self.scope,
                format!("loads and validates (read {files})"),
            )
        }
    }

    /// The secret keys that must have a value here: those without default or `Option`, the
    /// token while HTTP authentication is on, and those a `require:` list names.
    fn required_secrets(&self) -> Vec<&KeySpec> {
        let Some(resolution) = self.resolution else {
            return Vec::new();
        };
        let auth_required = raw_bool(resolution, "server.auth.required").unwrap_or(true);
        let http = raw_text(resolution, "server.transport")
            .is_none_or(|t| t.trim().eq_ignore_ascii_case("http"));
        resolution
            .schema
            .keys
            .iter()
            .filter(|key| key.secret)
            .filter(|key| {
                key.required()
                    || (key.path == TOKEN_KEY && auth_required && http)
                    || resolution.report.problems.iter().any(|p| {
                        p.key.as_deref() == Some(key.path.as_str())
                            && p.message.contains("required here by")
                    })
            })
            .collect()
    }

    fn env_file(&self) -> CheckResult {
        let name = self.env_file_name();
        let shown = self.shown(&name);
        if self.root.join(&name).is_file() {
            return CheckResult::pass(ids::ENV_FILE, self.scope, format!("{shown} is present"));
        }
        let Some(resolution) = self.resolution else {
            return CheckResult::skip(
                ids::ENV_FILE,
                self.scope,
                format!("{shown} is absent; the configuration could not be resolved"),
            );
        };
        let required = self.required_secrets();
        let (supplied, missing): (Vec<&KeySpec>, Vec<&KeySpec>) = required
            .iter()
            .partition(|key| raw_text(resolution, &key.path).is_some_and(|t| !t.trim().is_empty()));
        if missing.is_empty() {
            let sources: Vec<String> = supplied
                .iter()
                .filter_map(|key| resolution.values.get(&key.path))
                .map(|r| r.source.to_string())
                .collect();
            let from = if sources.is_empty() {
                "none is required".to_owned()
            } else {
                format!("required secrets come from {}", sources.join(", "))
            };
            return CheckResult::pass(
                ids::ENV_FILE,
                self.scope,
                format!("{shown} is absent; {from}"),
            );
        }
        let names: Vec<&str> = missing.iter().map(|k| k.main_var()).collect();
        let others: Vec<&str> = missing
            .iter()
            .filter(|k| k.path != URL_KEY)
            .map(|k| k.main_var())
            .collect();
        let fix = if self.invocation.xtask && !self.environment.is_strict() {
            let mut fix = format!(
                "cargo xtask setup-db --env {} (writes {name} with DATABASE_URL)",
                self.environment
            );
            if !others.is_empty() {
                fix.push_str(&format!(", then add {} to it", others.join(", ")));
            }
            fix
        } else {
            format!(
                "(umask 077; {} > {shown}), then set {} in it",
                self.invocation.command(self.environment, "config template"),
                names.join(", ")
            )
        };
        CheckResult::fail(
            ids::ENV_FILE,
            self.scope,
            format!(
                "{shown} is absent and {} not supplied otherwise (environment, *_FILE, credentials)",
                if names.len() == 1 {
                    format!("{} is", names[0])
                } else {
                    format!("{} are", names.join(", "))
                }
            ),
        )
        .with_fix(fix)
    }

    /// `.env`, `.env.<environment>`, the targets of `*_FILE` variables and the files in
    /// `$CREDENTIALS_DIRECTORY`, as (path, shown).
    fn secret_files(&self) -> Vec<(PathBuf, String)> {
        let mut files = Vec::new();
        for name in [".env".to_owned(), self.env_file_name()] {
            let path = self.root.join(&name);
            if path.exists() {
                files.push((path, self.shown(&name)));
            }
        }
        let schema = self
            .resolution
            .map(|r| r.schema.clone())
            .unwrap_or_else(|| config_core::Schema::of::<AppConfig>(config::ENV_PREFIX));
        for key in schema.keys.iter().filter(|k| k.secret) {
            for var in key.var_names() {
                if let Some(file) = self.env.get(&format!("{var}_FILE")) {
                    let path = PathBuf::from(file);
                    if path.exists() {
                        files.push((path.clone(), path.display().to_string()));
                    }
                }
            }
        }
        if let Some(dir) = self.env.get("CREDENTIALS_DIRECTORY")
            && let Ok(entries) = std::fs::read_dir(dir)
        {
            let mut credentials: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            credentials.sort();
            files.extend(credentials.into_iter().map(|p| {
                let shown = p.display().to_string();
                (p, shown)
            }));
        }
        let mut seen = BTreeSet::new();
        files.retain(|(path, _)| seen.insert(std::fs::canonicalize(path).unwrap_or(path.clone())));
        files
    }

    fn secret_file_mode(&self) -> CheckResult {
        let files = self.secret_files();
        if files.is_empty() {
            return CheckResult::skip(
                ids::SECRET_FILE_MODE,
                self.scope,
                "no secret files (.env, .env.<environment>, *_FILE, $CREDENTIALS_DIRECTORY)",
            );
        }
        let me = effective_uid();
        let my_name = me.map(user_name).unwrap_or_else(|| "this user".to_owned());
        let mut problems = Vec::new();
        let mut loose = Vec::new();
        let mut foreign = Vec::new();
        for (path, shown) in &files {
            let meta = match std::fs::metadata(path) {
                Ok(meta) => meta,
                Err(err) => {
                    problems.push(format!("cannot inspect {shown}: {}", err.kind()));
                    continue;
                }
            };
            let mode = meta.mode() & 0o7777;
            if mode & 0o077 != 0 {
                problems.push(format!(
                    "{shown} has mode {mode:04o} (group or others may read it)"
                ));
                loose.push(shown.clone());
            }
            if let Some(me) = me
                && meta.uid() != me
            {
                problems.push(format!(
                    "{shown} is owned by {} (uid {}), not {my_name}",
                    user_name(meta.uid()),
                    meta.uid()
                ));
                foreign.push(shown.clone());
            }
        }
        if problems.is_empty() {
            let names: Vec<String> = files.iter().map(|(_, shown)| shown.clone()).collect();
            return CheckResult::pass(
                ids::SECRET_FILE_MODE,
                self.scope,
                format!(
                    "{} private (0600 or stricter) and owned by {my_name}: {}",
                    plural(files.len(), "secret file"),
                    list(&names, 6)
                ),
            );
        }
        let mut fixes = Vec::new();
        if !loose.is_empty() {
            fixes.push(format!("chmod 600 {}", loose.join(" ")));
        }
        if !foreign.is_empty() {
            fixes.push(format!("chown {my_name} {}", foreign.join(" ")));
        }
        let mut result = CheckResult::new(
            ids::SECRET_FILE_MODE,
            self.scope,
            self.strict(),
            list(&problems, 6),
        );
        if !fixes.is_empty() {
            result = result.with_fix(fixes.join(" && "));
        }
        result
    }

    fn secrets(&self) -> CheckResult {
        let Some(resolution) = self.resolution else {
            return CheckResult::skip(
                ids::SECRETS,
                self.scope,
                "the configuration could not be resolved",
            );
        };
        let required: Vec<&str> = self
            .required_secrets()
            .iter()
            .map(|k| k.path.as_str())
            .collect();
        let mut missing = Vec::new();
        let mut placeholders = Vec::new();
        let mut set = Vec::new();
        let mut fixes = Vec::new();
        for key in resolution.schema.keys.iter().filter(|k| k.secret) {
            let resolved = resolution.values.get(&key.path);
            let text = resolved.and_then(|r| match &r.value {
                RawValue::Text(text) => Some(text.expose_secret().trim()),
                _ => None,
            });
            match (text, resolved) {
                (Some(text), Some(resolved)) if !text.is_empty() => {
                    if is_placeholder(text) {
                        placeholders.push(format!(
                            "{} looks like a placeholder [{}]",
                            key.main_var(),
                            resolved.source
                        ));
                        fixes.push(replace_fix(key, &resolved.source, self.environment));
                    } else {
                        set.push(format!("{} [{}]", key.main_var(), resolved.source));
                    }
                }
                _ if required.contains(&key.path.as_str()) => {
                    missing.push(format!("{} is not set", key.main_var()));
                    let mut how = format!(
                        "set {var} in {} (or {var}_FILE, or credential {})",
                        self.shown(&self.env_file_name()),
                        key.credential_name(&resolution.schema.prefix),
                        var = key.main_var()
                    );
                    if key.path == TOKEN_KEY {
                        how.push_str(" (generate one: openssl rand -hex 32)");
                    }
                    fixes.push(how);
                }
                _ => {}
            }
        }
        let problems: Vec<String> = missing.iter().chain(&placeholders).cloned().collect();
        if problems.is_empty() {
            let reason = if set.is_empty() {
                "no secret is required and none is set".to_owned()
            } else {
                format!("set to real values: {}", set.join(", "))
            };
            return CheckResult::pass(ids::SECRETS, self.scope, reason);
        }
        let status = if missing.is_empty() {
            self.strict()
        } else {
            Status::Fail
        };
        CheckResult::new(ids::SECRETS, self.scope, status, list(&problems, 6))
            .with_fix(fixes.join("; "))
    }

    /// `database.url` when it is set to something that parses, with its source; or why not.
    fn database_url(&self) -> Result<(SecretString, PgConnectOptions, String), String> {
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

    fn tls(&self) -> CheckResult {
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
    async fn database(
        &self,
        config: Option<&AppConfig>,
    ) -> (Vec<CheckResult>, Result<db::SchemaFingerprint, String>) {
        let skip_all = |reason: &str| {
            [
                ids::DB_CONNECT,
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
            },
            acquire_timeout_secs: 3,
            connect_wait_secs: CONNECT_WAIT_SECS,
            require_tls,
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

    fn connect_fix(&self, err: &DbError, source: &str) -> String {
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

    async fn stamp(&self, pool: &sqlx::PgPool, source: &str) -> CheckResult {
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

    async fn migrations(&self, pool: &sqlx::PgPool, auto_migrate: bool) -> CheckResult {
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
    async fn backup_age(&self, pool: &sqlx::PgPool, max_age_hours: u32) -> CheckResult {
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

    /// Every real secret value, the database password taken out of its URL.
    fn secret_items(&self) -> Vec<SecretItem> {
        let Some(resolution) = self.resolution else {
            return Vec::new();
        };
        let mut items = Vec::new();
        for key in resolution.schema.keys.iter().filter(|k| k.secret) {
            let Some(resolved) = resolution.values.get(&key.path) else {
                continue;
            };
            let RawValue::Text(text) = &resolved.value else {
                continue;
            };
            let text = text.expose_secret().trim();
            if text.is_empty() || is_placeholder(text) {
                continue;
            }
            let (label, value) = if key.path == URL_KEY {
                match url_password(text) {
                    Some(password) => (format!("{} password", key.main_var()), password),
                    None => continue,
                }
            } else {
                (
                    key.main_var().to_owned(),
                    SecretString::from(text.to_owned()),
                )
            };
            items.push(SecretItem {
                label,
                source: resolved.source.to_string(),
                value,
            });
        }
        items
    }

    fn database_identity(&self) -> Option<DatabaseIdentity> {
        let (_, options, source) = self.database_url().ok()?;
        let name = options
            .get_database()
            .unwrap_or(options.get_username())
            .to_owned();
        let port = options.get_port();
        let (host_key, host_shown) = match options.get_socket() {
            Some(socket) => ("local".to_owned(), socket.display().to_string()),
            None if is_local_host(options.get_host()) => {
                ("local".to_owned(), options.get_host().to_owned())
            }
            None => (
                options.get_host().to_ascii_lowercase(),
                options.get_host().to_owned(),
            ),
        };
        Some(DatabaseIdentity {
            key: format!("{host_key}:{port}/{name}"),
            shown: format!("{host_shown}:{port}/{name}"),
            name,
            source,
        })
    }
}

/// What to do about a placeholder, by where it came from.
fn replace_fix(key: &KeySpec, source: &Source, environment: Environment) -> String {
    let var = key.main_var();
    let generate = if key.path == TOKEN_KEY {
        " (generate one: openssl rand -hex 32)"
    } else {
        ""
    };
    match source {
        Source::Credential { path, .. } | Source::SecretFile { path, .. } => format!(
            "(umask 077; read -rsp '{var}: ' V && printf '%s\\n' \"$V\" > {}){generate}",
            path.display()
        ),
        Source::DotEnv { file, line } => {
            format!("put the real {var} at {}:{line}{generate}", file.display())
        }
        Source::Env { var: name } => format!("export the real value as {name}{generate}"),
        Source::Yaml { file, line, .. } => format!(
            "remove the secret from {}:{line} and set {var} in .env.{environment}",
            file.display()
        ),
        Source::Default => format!("set {var}{generate}"),
    }
}

fn raw_text<'r>(resolution: &'r Resolution, path: &str) -> Option<&'r str> {
    match &resolution.values.get(path)?.value {
        RawValue::Text(text) => Some(text.expose_secret()),
        _ => None,
    }
}

fn raw_bool(resolution: &Resolution, path: &str) -> Option<bool> {
    <bool as ConfigValue>::parse(&resolution.values.get(path)?.value).ok()
}

/// A unix socket directory, `localhost`, 127.0.0.0/8 or ::1.
fn is_local_host(host: &str) -> bool {
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

/// The password of a `postgres://user:password@host/db` URL (or its `password=` parameter),
/// still percent-encoded: only compared, never shown.
fn url_password(url: &str) -> Option<SecretString> {
    let rest = url.split_once("://")?.1;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let from_authority = rest[..authority_end]
        .rsplit_once('@')
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, password)| password)
        .filter(|p| !p.is_empty());
    let from_query = rest
        .split_once('?')
        .map(|(_, query)| query.split('#').next().unwrap_or_default())
        .and_then(|query| {
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix("password="))
        })
        .filter(|p| !p.is_empty());
    from_query
        .or(from_authority)
        .map(|p| SecretString::from(p.to_owned()))
}

/// The effective user id of this process (`/proc/self/status`), if it can be read.
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The user name of `uid` from `/etc/passwd`, else `uid N`.
fn user_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                let id: u32 = fields.nth(1)?.parse().ok()?;
                (id == uid).then(|| name.to_owned())
            })
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_come_out_of_urls() {
        let get = |url: &str| url_password(url).map(|p| p.expose_secret().to_owned());
        assert_eq!(
            get("postgres://u:p%40ss@h:5432/db?sslmode=require").as_deref(),
            Some("p%40ss")
        );
        assert_eq!(
            get("postgres://u@h/db?password=q&x=1").as_deref(),
            Some("q")
        );
        assert_eq!(get("postgres://u@h/db").as_deref(), None);
        assert_eq!(get("postgres://h/db").as_deref(), None);
    }

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

    #[test]
    fn this_process_has_an_effective_uid() {
        assert!(effective_uid().is_some());
    }
}
