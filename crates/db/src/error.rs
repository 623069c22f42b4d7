//! Everything that can go wrong, worded for the operator. URLs appear only redacted.

use std::time::Duration;

use config_core::Environment;

/// A database failure. No variant holds a password.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("invalid database URL {url}: {reason}")]
    InvalidUrl { url: String, reason: String },

    /// Refused before any network traffic.
    #[error(
        "refusing a plain-text connection to {url}: the host is not local and TLS is required; set sslmode=verify-full (or require) in the URL"
    )]
    PlaintextRefused { url: String },

    /// SQLSTATE 28P01/28000: the server refused the user or password. Retrying cannot help.
    #[error(
        "database credentials rejected for {url}: {reason}; check the user and the password in DATABASE_URL (or its _FILE / credential); waiting will not fix this"
    )]
    AuthenticationFailed { url: String, reason: String },

    #[error(
        "the database of {url} does not exist: {reason}; create it (provisioning) or fix the URL"
    )]
    DatabaseMissing { url: String, reason: String },

    /// The role may not connect to this database (as intended for another environment's role).
    #[error("access denied to {url}: {reason}")]
    AccessDenied { url: String, reason: String },

    /// A connection failure that waiting would not fix (TLS, protocol, server-side rejection).
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },

    /// Still unreachable when the bounded connect wait ran out; worth a later retry.
    #[error(
        "database {url} still unreachable after {waited:.1?} and {attempts} attempts: {last_error}"
    )]
    Unavailable {
        url: String,
        waited: Duration,
        attempts: u32,
        last_error: String,
    },

    #[error("{context}: {reason}")]
    Query { context: String, reason: String },

    /// An applied migration's checksum differs from the embedded one: someone edited it.
    #[error(
        "migration V{version}__{name} was changed after it was applied (checksum {applied_checksum} in the database, {embedded_checksum} in this build); never edit an applied migration, add a new one"
    )]
    DivergentMigration {
        version: i32,
        name: String,
        applied_checksum: u64,
        embedded_checksum: u64,
    },

    #[error("migration V{version}__{name} {}", missing_detail(*.applied_only))]
    MissingMigration {
        version: i32,
        name: String,
        /// Applied in the database but unknown to this build (rather than embedded but skipped).
        applied_only: bool,
    },

    #[error("migration failed: {reason}")]
    Migration { reason: String },

    #[error(
        "database {database} is stamped for {stamped}, but this process runs as {running}; refusing to use another environment's database"
    )]
    WrongEnvironment {
        database: String,
        stamped: Environment,
        running: Environment,
    },

    #[error(
        "database {database} has no environment stamp, so nothing shows it belongs to {running}; stamp it during setup"
    )]
    Unstamped {
        database: String,
        running: Environment,
    },

    #[error("refusing to stamp database {database}: {reason}")]
    StampRefused { database: String, reason: String },

    #[error("refusing to drop database {database}: {reason}")]
    DropRefused { database: String, reason: String },
}

fn missing_detail(applied_only: bool) -> &'static str {
    if applied_only {
        "is applied in the database but unknown to this build: the database is newer than this binary"
    } else {
        "is not applied although later ones are: it was added out of order"
    }
}

impl DbError {
    pub(crate) fn query(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> DbError {
        let context = context.into();
        move |err| DbError::Query {
            context,
            reason: err.to_string(),
        }
    }
}
