//! `setup-db`: one environment's role and database, provisioned, stamped and migrated, with its
//! `.env.<env>` written once and its schema compared with production.
//!
//! Never overwrites `.env.<env>`, never writes to production, never prints the password of a
//! role it did not just create or reset.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use cognitive_memory_mcp::config::{self, ConfigSource};
use config_core::{EnvSnapshot, Environment, RawValue};
use db::{DropOutcome, MigrationReport, ProvisionChange, RolePassword, StampOutcome};
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use url::Url;

use crate::{SetupOptions, dev_db};

/// Recorded in the environment stamp.
const STAMPED_BY: &str = "cargo xtask setup-db";
/// Length of generated role passwords (alphanumeric: ~190 bits).
const PASSWORD_CHARS: usize = 32;
/// How long production may take to answer before the comparison is skipped.
const PRODUCTION_WAIT: Duration = Duration::from_secs(2);

pub fn run(root: &Path, environment: Environment, options: &SetupOptions) -> Result<()> {
    if options.reset && environment.is_strict() {
        bail!("--reset drops the database; it is only for development and test, not {environment}");
    }
    let admin_url = match &options.admin_url {
        Some(url) => url.clone(),
        None => {
            let cluster = dev_db::cluster(root, options.port.port)?;
            let port = dev_db::ensure_running(&cluster)?;
            let cluster = if port == options.port.port {
                cluster
            } else {
                dev_db::cluster(root, port)?
            };
            cluster
                .superuser_url("postgres")
                .context("read the development cluster's superuser password")?
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(setup(
        root,
        environment,
        options,
        SecretString::from(admin_url),
    ))
}

async fn setup(
    root: &Path,
    environment: Environment,
    options: &SetupOptions,
    admin_url: SecretString,
) -> Result<()> {
    let role = db::role_name(environment);
    let database = db::database_name(environment);
    let env_file_name = format!(".env.{environment}");
    let env_file = root.join(&env_file_name);
    let mut changes: Vec<String> = Vec::new();

    let admin = db::connect(&database_config(admin_url.clone(), 10), report_progress)
        .await
        .context("connect as the administrator")?;
    let server_port = server_port(&admin).await?;

    if options.reset {
        match db::drop_database(&admin, database).await? {
            DropOutcome::Dropped => {
                println!("reset: dropped database {database}");
                changes.push(format!("dropped database {database}"));
            }
            DropOutcome::NotFound => println!("reset: database {database} did not exist"),
        }
    }

    let role_existed: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(role)
            .fetch_one(&admin)
            .await
            .with_context(|| format!("look up role {role}"))?;
    let env_file_exists = env_file
        .try_exists()
        .with_context(|| format!("look for {}", env_file.display()))?;

    // A new role gets a generated password; an existing one keeps its own (unknown here, so the
    // configuration must hold it) unless --reset-password.
    let generated = (!role_existed || options.reset_password)
        .then(generate_password)
        .transpose()?
        .map(SecretString::from);
    let password = match (&generated, options.reset_password) {
        (Some(secret), true) => RolePassword::Set(secret),
        (Some(secret), false) => RolePassword::SetOnCreate(secret),
        (None, _) => RolePassword::NoPassword,
    };
    let outcome = db::provision(&admin, environment, password)
        .await
        .with_context(|| format!("provision the {environment} role and database"))?;
    println!("provision: {outcome}");
    changes.extend(outcome.changes.iter().map(ToString::to_string));
    let password_known = outcome.changes.contains(&ProvisionChange::PasswordSet);
    let role_url = match generated {
        Some(secret) if password_known => SecretString::from(role_url(
            admin_url.expose_secret(),
            role,
            secret.expose_secret(),
            database,
        )?),
        _ => match check_configured(root, environment, server_port).await {
            Configured::Works { source, url } => {
                println!("config: database.url ({source}) connects to {database} as {role}");
                url
            }
            other if !env_file_exists => bail!(
                "role {role} already exists but {env_file_name} is missing, and its password is not known here ({}). \
                 Run again with --reset-password to give {role} a new password and write {env_file_name} \
                 (other checkouts using the old password will need the new one)",
                other.describe()
            ),
            other => bail!(
                "role {role} already exists and {env_file_name} is present, but {}. \
                 The role's password is not shown. Fix DATABASE_URL in {env_file_name}, or run again with \
                 --reset-password to set a new password and print the line to use",
                other.describe()
            ),
        },
    };

    let pool = db::connect(&database_config(role_url.clone(), 10), report_progress)
        .await
        .with_context(|| format!("connect to {database} as {role}"))?;
    match db::stamp(&pool, environment, STAMPED_BY).await? {
        StampOutcome::Stamped { migrations } => {
            println!("stamp: stamped {database} for {environment} ({migrations})");
            changes.push(format!("stamped {database} for {environment}"));
        }
        StampOutcome::AlreadyStamped(stamp) => println!("stamp: {stamp}; nothing to do"),
    }
    let report = db::migrate(&pool).await?;
    println!("migrate: {report}");
    if let MigrationReport::Applied(applied) = &report {
        changes.push(format!("applied {} migration(s)", applied.len()));
    }
    // Row-level security (V7): the search operators LEAKPROOF, so the GIN indexes serve searches
    // under the tenant policies; a catalog change only a superuser may make (docs/tenancy.md).
    let leakproof = db::declare_search_leakproof(&admin, database)
        .await
        .with_context(|| format!("declare the search operators LEAKPROOF in {database}"))?;
    println!("tenancy: {leakproof}");
    if leakproof == db::LeakproofOutcome::Declared {
        changes.push("declared the search operators LEAKPROOF".to_owned());
    }
    println!("tenancy: {}", db::tenancy_state(&pool).await?);

    // The backup role (backup.database_url): pg_dump reads every tenant's rows through it.
    let backup_password = SecretString::from(generate_password()?);
    let backup_role = db::provision_backup_role(
        &admin,
        environment,
        if options.reset_password {
            RolePassword::Set(&backup_password)
        } else {
            RolePassword::SetOnCreate(&backup_password)
        },
    )
    .await
    .with_context(|| format!("provision the {environment} backup role"))?;
    println!("backup: {backup_role}");
    let backup_line = match &backup_role {
        db::BackupRoleOutcome::InPlace {
            role,
            changes: made,
            password_set,
        } => {
            changes.extend(made.iter().map(|change| format!("backup role: {change}")));
            password_set
                .then(|| {
                    self::role_url(
                        admin_url.expose_secret(),
                        role,
                        backup_password.expose_secret(),
                        database,
                    )
                })
                .transpose()?
                .map(|url| format!("{BACKUP_URL_VARIABLE}={url}"))
        }
        db::BackupRoleOutcome::NotPermitted { .. } => None,
    };

    let mut backup_line_written = false;
    if password_known {
        let line = format!("DATABASE_URL={}", role_url.expose_secret());
        let contents = match &backup_line {
            Some(backup_line) => format!("{line}\n{backup_line}"),
            None => line.clone(),
        };
        let written = !env_file_exists && write_env_file(&env_file, environment, &contents)?;
        if written {
            println!(
                "env file: wrote {} (mode 0600) with DATABASE_URL{}",
                env_file.display(),
                if backup_line.is_some() {
                    format!(" and {BACKUP_URL_VARIABLE}")
                } else {
                    String::new()
                }
            );
            changes.push(format!("wrote {env_file_name}"));
            backup_line_written = backup_line.is_some();
        } else {
            match check_configured(root, environment, server_port).await {
                Configured::Works { source, .. } => println!(
                    "env file: {env_file_name} exists and is not overwritten; database.url ({source}) connects to {database} as {role}"
                ),
                other => println!(
                    "env file: {env_file_name} exists and is not overwritten, but {}.\n\
                     To use the role's new password, set this line in {env_file_name} (replacing any DATABASE_URL there):\n{line}",
                    other.describe()
                ),
            }
        }
    } else if env_file_exists {
        println!("env file: {env_file_name} exists; not touched");
    } else {
        println!(
            "env file: {env_file_name} not written: the role's password is not known here, and the configured database.url already works"
        );
    }
    // A new backup password that did not go into a new env file: the line to add.
    if let Some(backup_line) = &backup_line
        && !backup_line_written
    {
        println!(
            "env file: to back up this database, set this line in {env_file_name} (or the backup-database-url credential):\n{backup_line}"
        );
    }

    println!(
        "{}",
        compare_with_production(root, environment, &pool).await
    );

    pool.close().await;
    admin.close().await;
    if changes.is_empty() {
        println!("summary: nothing to do; the {environment} database was already set up");
    } else {
        println!(
            "summary: {} change(s): {}",
            changes.len(),
            changes.join("; ")
        );
    }
    Ok(())
}

/// The variable of `backup.database_url` in an env file.
const BACKUP_URL_VARIABLE: &str = "COGMEM__BACKUP__DATABASE_URL";

/// A short-waiting config for one of our own connections.
fn database_config(url: SecretString, wait_secs: u64) -> db::DatabaseConfig {
    db::DatabaseConfig {
        url,
        migration_url: None,
        prepared_statements: true,
        ssl_root_cert: None,
        pool: db::PoolConfig {
            min_connections: 0,
            max_connections: 2,
            max_lifetime_secs: 1800,
        },
        acquire_timeout_secs: 10,
        connect_wait_secs: wait_secs,
        require_tls: true,
        tls_verify: true,
        auto_migrate: false,
    }
}

fn report_progress(progress: db::ConnectProgress) {
    eprintln!("{progress}");
}

/// The port the server listens on, as it reports it (`None` over a unix socket).
async fn server_port(pool: &PgPool) -> Result<Option<i32>> {
    sqlx::query_scalar("SELECT inet_server_port()")
        .fetch_one(pool)
        .await
        .context("ask the server for its port")
}

/// The admin URL with the role's credentials and the environment's database.
fn role_url(admin_url: &str, role: &str, password: &str, database: &str) -> Result<String> {
    // `url`'s errors never quote the input, so the admin password stays out of messages.
    let mut url = Url::parse(admin_url).context("parse the admin URL")?;
    url.set_username(role)
        .map_err(|()| anyhow!("the admin URL has no host to connect the role to"))?;
    url.set_password(Some(password))
        .map_err(|()| anyhow!("the admin URL has no host to connect the role to"))?;
    url.set_path(&format!("/{database}"));
    Ok(url.to_string())
}

/// `PASSWORD_CHARS` random alphanumerics (rejection sampling, so every character is uniform).
pub(crate) fn generate_password() -> Result<String> {
    const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut password = String::with_capacity(PASSWORD_CHARS);
    let mut bytes = [0u8; 64];
    while password.len() < PASSWORD_CHARS {
        getrandom::fill(&mut bytes).map_err(|err| anyhow!("generate a password: {err}"))?;
        for byte in bytes {
            // 248 = 4 × 62: larger bytes would favour the first characters.
            if byte < 248 && password.len() < PASSWORD_CHARS {
                password.push(char::from(ALPHABET[usize::from(byte % 62)]));
            }
        }
    }
    Ok(password)
}

/// Create `path` with mode 0600 from the start and write the header and `line`. `false` when
/// the file appeared in the meantime (it is never overwritten).
fn write_env_file(path: &Path, environment: Environment, line: &str) -> Result<bool> {
    let mut file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(file) => file,
        Err(err) if err.kind() == ErrorKind::AlreadyExists => return Ok(false),
        Err(err) => return Err(err).with_context(|| format!("create {}", path.display())),
    };
    let contents = format!(
        "# Credentials of the {environment} database, written by `cargo xtask setup-db --env {environment}`.\n\
         # Private to this checkout: git-ignored, mode 0600. Never commit or share it.\n\
         {line}\n"
    );
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("write {}", path.display()))?;
    Ok(true)
}

/// What the environment's configuration says about its database URL.
enum Configured {
    /// Connects to the environment's database as its role, on this server.
    Works { source: String, url: SecretString },
    /// Set, but does not connect as it should.
    Wrong { source: String, reason: String },
    /// No URL could be read from the configuration.
    Missing { reason: String },
}

impl Configured {
    fn describe(&self) -> String {
        match self {
            Configured::Works { source, .. } => format!("database.url ({source}) works"),
            Configured::Wrong { source, reason } => {
                format!("database.url ({source}) does not work: {reason}")
            }
            Configured::Missing { reason } => {
                format!("the configuration has no usable database.url: {reason}")
            }
        }
    }
}

/// Load the environment's configuration and try its `database.url`. Other configuration
/// errors (a missing token, say) do not matter here: only the URL is checked.
async fn check_configured(
    root: &Path,
    environment: Environment,
    server_port: Option<i32>,
) -> Configured {
    let source = ConfigSource {
        root: root.to_path_buf(),
        environment_flag: Some(environment.as_str().to_owned()),
    };
    let env = EnvSnapshot::from_process();
    let (url, origin) = match config::load(&source, &env) {
        Ok(loaded) => {
            let origin = loaded
                .resolution
                .values
                .get("database.url")
                .map_or_else(|| "configuration".to_owned(), |r| r.source.to_string());
            (loaded.config.database.url, origin)
        }
        Err(failure) => match failure
            .resolution
            .as_deref()
            .and_then(|resolution| resolution.values.get("database.url"))
        {
            Some(resolved) => match &resolved.value {
                RawValue::Text(url) => (url.clone(), resolved.source.to_string()),
                _ => {
                    return Configured::Missing {
                        reason: "database.url is not a single value".to_owned(),
                    };
                }
            },
            None => {
                return Configured::Missing {
                    reason: first_error(&failure.report),
                };
            }
        },
    };
    let wrong = |reason: String| Configured::Wrong {
        source: origin.clone(),
        reason,
    };
    let config = database_config(url.clone(), PRODUCTION_WAIT.as_secs());
    let pool = match db::connect(&config, |_| {}).await {
        Ok(pool) => pool,
        Err(err) => return wrong(err.to_string()),
    };
    let row: Result<(String, String, Option<i32>), _> =
        sqlx::query_as("SELECT current_user::text, current_database()::text, inet_server_port()")
            .fetch_one(&pool)
            .await;
    pool.close().await;
    let (user, connected_to, port) = match row {
        Ok(row) => row,
        Err(err) => return wrong(format!("cannot query: {err}")),
    };
    let role = db::role_name(environment);
    let database = db::database_name(environment);
    if user != role || connected_to != database {
        return wrong(format!(
            "it connects to {connected_to} as {user}, not to {database} as {role}"
        ));
    }
    if let (Some(expected), Some(actual)) = (server_port, port)
        && expected != actual
    {
        return wrong(format!(
            "it reaches a server on port {actual}, not the one set up here (port {expected})"
        ));
    }
    Configured::Works {
        source: origin,
        url,
    }
}

fn first_error(report: &config_core::Report) -> String {
    report
        .errors()
        .next()
        .map_or_else(|| report.to_string(), ToString::to_string)
}

/// One line (or a list) on how this database's schema compares with production's. Read-only on
/// production; never an error.
async fn compare_with_production(root: &Path, environment: Environment, pool: &PgPool) -> String {
    if environment == Environment::Production {
        return "production comparison skipped: this is production".to_owned();
    }
    let skipped = |reason: String| format!("production comparison skipped: {reason}");
    let source = ConfigSource {
        root: root.to_path_buf(),
        environment_flag: Some(Environment::Production.as_str().to_owned()),
    };
    let loaded = match config::load(&source, &EnvSnapshot::from_process()) {
        Ok(loaded) => loaded,
        Err(failure) => {
            return skipped(format!(
                "the production configuration does not load ({})",
                first_error(&failure.report)
            ));
        }
    };
    let configured = &loaded.config.database;
    let config = db::DatabaseConfig {
        url: configured.url.clone(),
        migration_url: None,
        prepared_statements: true,
        ssl_root_cert: configured.ssl_root_cert.clone(),
        pool: db::PoolConfig {
            min_connections: 0,
            max_connections: 1,
            max_lifetime_secs: 1800,
        },
        acquire_timeout_secs: PRODUCTION_WAIT.as_secs(),
        connect_wait_secs: PRODUCTION_WAIT.as_secs(),
        require_tls: configured.require_tls,
        tls_verify: true,
        auto_migrate: false,
    };
    let comparison = async {
        let production = db::connect(&config, |_| {})
            .await
            .map_err(|err| format!("production is unreachable ({err})"))?;
        let result = async {
            db::check_stamp(&production, Environment::Production)
                .await
                .map_err(|err| err.to_string())?;
            let theirs = db::fingerprint(&production)
                .await
                .map_err(|err| format!("cannot fingerprint production ({err})"))?;
            let ours = db::fingerprint(pool)
                .await
                .map_err(|err| format!("cannot fingerprint {environment} ({err})"))?;
            Ok::<_, String>((ours, theirs))
        }
        .await;
        production.close().await;
        result
    };
    match tokio::time::timeout(Duration::from_secs(15), comparison).await {
        Err(_) => skipped("production did not answer in time".to_owned()),
        Ok(Err(reason)) => skipped(reason),
        Ok(Ok((ours, theirs))) if ours.hash == theirs.hash => {
            format!(
                "schema in sync with production (fingerprint {})",
                &ours.hash[..12.min(ours.hash.len())]
            )
        }
        Ok(Ok((ours, theirs))) => {
            let mut text = format!(
                "schema differs from production ({} vs {}):",
                ours.database, theirs.database
            );
            for difference in db::diff(&ours, &theirs) {
                text.push_str(&format!("\n  - {difference}"));
            }
            text
        }
    }
}
