//! The data lifecycle of an environment's memories: backups with a verified manifest
//! ([`backup`]), restores that refuse the wrong environment ([`restore`]), expiry of old
//! memories in the daemon ([`retention`]) and a lossless JSONL export and import ([`export`],
//! [`import`]).
//!
//! Every command here is entered by one call from `commands.rs`; the retention task by one call
//! from `serve.rs`. PostgreSQL's own client tools do the heavy lifting (`pg_dump`, `pg_restore`,
//! `psql`, found by [`tools`] for the server's major version); the database password reaches
//! them through the child's environment, never the command line.
//!
//! Invariant: nothing here prints or logs memory content or a secret; the retention task logs
//! counts only.

pub mod backup;
pub mod export;
pub mod import;
pub mod restore;
pub mod retention;
mod status;
pub mod tools;

use std::path::{Path, PathBuf};

pub use status::{BackupStatus, LifecycleStatus, RetentionStatus, read_status};

use crate::exit;

/// Why a lifecycle command failed; [`exit_code`](Self::exit_code) maps it to our scheme.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// The database could not be reached, was stamped wrongly or failed a query.
    #[error("{0}")]
    Database(#[from] db::DbError),
    /// The setup is wrong (tools of another major version, an unusable directory): exit 78.
    #[error("{0}")]
    Setup(String),
    /// Deliberately refused before anything changed (wrong environment, non-empty target): exit 78.
    #[error("refused: {0}")]
    Refused(String),
    /// A backup file that does not match its manifest, or is damaged.
    #[error("{0}")]
    Damaged(String),
    /// Anything else (a tool failed, the disk is full).
    #[error("{0}")]
    Failed(String),
}

impl LifecycleError {
    pub fn exit_code(&self) -> u8 {
        match self {
            LifecycleError::Database(err) => exit::db_exit_code(err),
            LifecycleError::Setup(_) | LifecycleError::Refused(_) => exit::CONFIG,
            LifecycleError::Damaged(_) | LifecycleError::Failed(_) => exit::FAILURE,
        }
    }

    pub(crate) fn query(context: &str) -> impl FnOnce(sqlx::Error) -> LifecycleError + '_ {
        move |err| {
            LifecycleError::Database(db::DbError::Query {
                context: context.to_owned(),
                reason: err.to_string(),
            })
        }
    }

    pub(crate) fn io(context: String) -> impl FnOnce(std::io::Error) -> LifecycleError {
        move |err| LifecycleError::Failed(format!("{context}: {err}"))
    }
}

/// A path from the configuration: relative ones are taken from the configuration root.
pub(crate) fn configured_path(root: &Path, value: &str) -> PathBuf {
    let path = Path::new(value.trim());
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        root.join(path)
    }
}

/// A current-thread runtime for a command, or exit 1 with the reason.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| {
            eprintln!("error: cannot start the async runtime: {err}");
            exit::FAILURE
        })
}

/// The environment's database for a command: [`db::connect`]'s bounded wait, each retry
/// reported on stderr (stdout may carry an export).
pub(crate) async fn connect(database: &db::DatabaseConfig) -> Result<sqlx::PgPool, db::DbError> {
    db::connect(database, |progress| {
        eprintln!("waiting for the database: {progress}")
    })
    .await
}

/// The tenant a command's `flag` names, or `memory.tenant` without it.
pub(crate) fn tenant_argument(
    value: Option<&str>,
    config: &crate::config::AppConfig,
    flag: &str,
) -> Result<crate::tenancy::Tenant, LifecycleError> {
    match value {
        Some(name) => crate::tenancy::Tenant::new(name)
            .map_err(|err| LifecycleError::Refused(format!("{flag}: {err}"))),
        None => Ok(config.memory.tenant()),
    }
}

/// Prints the error for the operator and returns its exit code.
pub(crate) fn report(err: &LifecycleError) -> u8 {
    eprintln!("error: {err}");
    err.exit_code()
}

/// Who runs this command, for the log of a refresh: `$SUDO_USER` (the human behind sudo),
/// else `$USER`/`$LOGNAME`, else the numeric uid.
pub(crate) fn operator() -> String {
    ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| {
            std::fs::metadata("/proc/self")
                .map(|m| {
                    use std::os::unix::fs::MetadataExt;
                    format!("uid {}", m.uid())
                })
                .unwrap_or_else(|_| "an unknown user".to_owned())
        })
}

/// An [`Environment`](config_core::Environment) in manifests and exports, by its name.
pub(crate) mod environment_name {
    use config_core::Environment;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(environment: &Environment, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(environment.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Environment, D::Error> {
        String::deserialize(d)?.parse().map_err(D::Error::custom)
    }
}
