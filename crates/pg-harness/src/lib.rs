//! Development and test PostgreSQL clusters built from the installed server binaries
//! (`initdb`, `pg_ctl`, `postgres`), so neither Docker nor a pre-running server is needed.
//!
//! Two modes:
//! - [`Cluster`]: a persistent cluster described by a [`ClusterSpec`] (the developer's
//!   `.dev/postgres/`), started and stopped explicitly and left running in between.
//! - [`TestCluster`]: a throwaway cluster in a temporary directory that lives exactly as long as
//!   the test process and hands out a fresh database per test.
//!
//! PostgreSQL refuses to run as root. When this process is root, every server process runs as
//! the `postgres` system user (or `nobody`), and the directories it needs are handed to it.
//!
//! Credentials: TCP connections use SCRAM passwords; the unix socket trusts local users, but
//! its directory is private (mode 0700) to the user running the server.
//!
//! In a test:
//!
//! ```no_run
//! # async fn example() -> Result<(), pg_harness::HarnessError> {
//! let database = pg_harness::TestCluster::shared().fresh_database().await?;
//! // `database.url` connects as the database's owner, `database.admin_url` as the superuser.
//! # let _ = database;
//! # Ok(())
//! # }
//! ```
//!
//! This crate is for development and tests only; nothing in it belongs in a production path.

mod bindir;
mod cluster;
mod error;
mod secret;
mod system_user;
mod test_cluster;

pub use bindir::{INSTALL_HINT, find_bindir};
pub use cluster::{
    Cluster, ClusterSpec, ClusterStatus, DEFAULT_DEV_PORT, InitOutcome, StartOutcome, StopOutcome,
};
pub use error::HarnessError;
pub use system_user::ServerUser;
pub use test_cluster::{Durability, TestCluster, TestDatabase};

/// The superuser every harness cluster is initialised with.
pub const SUPERUSER: &str = "postgres";

/// `url` with `app.tenant` set for every session it opens (libpq `options=-c app.tenant=…`), so
/// plain SQL on the memory tables sees and writes `tenant`'s rows under their row-level
/// security (migration V7). `tenant` must be a valid tenant name (no spaces or quotes).
pub fn url_with_tenant(url: &str, tenant: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-c%20app.tenant%3D{tenant}")
}
