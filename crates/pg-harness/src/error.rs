//! What can go wrong while finding, creating, starting or using a harness cluster.

use std::io;
use std::path::PathBuf;

use crate::bindir::INSTALL_HINT;

/// A harness failure. Messages never contain a password.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// `initdb`, `pg_ctl` or `postgres` could not be found.
    #[error("PostgreSQL server binaries not found ({detail}); {hint}", hint = INSTALL_HINT)]
    BinariesNotFound { detail: String },

    /// Running as root, but no unprivileged user exists to run the server as.
    #[error(
        "running as root, but PostgreSQL refuses to run as root and neither a `postgres` nor a `nobody` user exists; create one (`useradd --system postgres`)"
    )]
    NoServerUser,

    /// A directory on the way to the cluster cannot be entered by the server's user.
    #[error(
        "PostgreSQL runs as {user}, who cannot enter {dir} (mode {mode:03o}); make it traversable (`chmod o+x {dir}`) or put the cluster elsewhere",
        dir = .dir.display()
    )]
    NotTraversable {
        dir: PathBuf,
        user: String,
        mode: u32,
    },

    /// The unix socket path would exceed what the kernel accepts.
    #[error(
        "the unix socket path {path} is {len} bytes, over the {max}-byte limit; choose a shorter socket directory",
        path = .path.display()
    )]
    SocketPathTooLong {
        path: PathBuf,
        len: usize,
        max: usize,
    },

    /// No cluster has been initialised in the data directory.
    #[error("no PostgreSQL cluster in {data_dir}; initialise it first", data_dir = .data_dir.display())]
    NotInitialised { data_dir: PathBuf },

    /// The cluster exists but the file holding its superuser password does not.
    #[error(
        "the superuser password file {path} is missing, so the cluster cannot be reached over TCP; remove the cluster directory and initialise it again",
        path = .path.display()
    )]
    PasswordFileMissing { path: PathBuf },

    /// A file system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    /// A PostgreSQL tool exited unsuccessfully.
    #[error("`{command}` failed ({status}):\n{output}")]
    CommandFailed {
        command: String,
        status: String,
        output: String,
    },

    /// The server did not come up.
    #[error("PostgreSQL did not start: {reason}\n--- end of {log} ---\n{log_tail}", log = .log.display())]
    StartFailed {
        reason: String,
        log: PathBuf,
        log_tail: String,
    },

    /// A statement against the cluster failed.
    #[error("{context}: {reason}")]
    Sql { context: String, reason: String },
}

impl HarnessError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> HarnessError {
        let context = context.into();
        move |source| HarnessError::Io { context, source }
    }
}
