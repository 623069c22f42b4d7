//! PostgreSQL access for one environment's database: a pool from [`DatabaseConfig`] with a
//! bounded connect wait, the embedded migrations (applied under an advisory lock), the
//! environment stamp that keeps one environment's process off another's database, a schema
//! fingerprint to compare databases, and provisioning of the per-environment role and database.
//!
//! Start-up of a service, in order:
//!
//! ```no_run
//! use config_core::Environment;
//!
//! # async fn start(config: db::DatabaseConfig) -> Result<(), db::DbError> {
//! let pool = db::connect(&config, |progress| eprintln!("{progress}")).await?;
//! db::check_stamp(&pool, Environment::Production).await?;
//! if config.auto_migrate {
//!     println!("{}", db::migrate(&pool).await?);
//! } else if let Some(first) = db::pending(&pool).await?.first() {
//!     eprintln!("migration {first} is pending");
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Several replicas may share one database, also through a pooler in transaction mode
//! (PgBouncer): schema changes take a session advisory lock on a direct connection
//! ([`connect_direct`], `database.migration_url`); once-per-database jobs take a
//! transaction-level lock ([`try_job_lock`]); every query of this crate uses the unnamed
//! statement, which such a pooler can multiplex.
//!
//! Invariant: no error, `Debug` or `Display` output of this crate contains a database password.

mod acquire;
mod catalog;
mod config;
mod connect;
mod error;
mod fingerprint;
pub(crate) mod lock;
mod migrate;
mod provision;
mod redact;
mod role;
mod scram;
mod stamp;
mod tenancy;

pub use acquire::{acquire, begin, begin_with};
pub use config::{DatabaseConfig, PoolConfig};
pub use connect::{ConnectProgress, connect, connect_direct, switch_credentials};
pub use error::DbError;
pub use fingerprint::{
    CatalogEntry, ObjectKind, SchemaDifference, SchemaFingerprint, diff, fingerprint,
};
pub use lock::{JobLock, try_job_lock};
pub use migrate::{MigrationInfo, MigrationReport, migrate, pending};
pub use provision::{
    BackupRoleOutcome, DropOutcome, ProvisionChange, ProvisionOutcome, RolePassword,
    backup_role_name, database_name, drop_database, provision, provision_backup_role, role_name,
    set_password,
};
pub use role::{RoleAttributes, role_attributes};
pub use stamp::{Stamp, StampOutcome, check_stamp, stamp};
pub use tenancy::{
    LEAKPROOF_SEARCH_FUNCTIONS, LeakproofOutcome, TENANT_TABLES, TenancyState,
    declare_search_leakproof, tenancy_state,
};
