//! The `cognitive-memory-mcp` daemon as a library: its configuration schema, command-line
//! interface, commands, MCP server, HTTP surface and lifecycle. The binary in `main.rs` only maps their results to exit codes.

pub mod app;
pub mod auth;
pub mod checks;
pub mod cli;
pub mod commands;
pub mod config;
#[cfg(feature = "fault-injection")]
pub mod fault;
pub mod health;
pub mod http;
pub mod lifecycle;
pub mod logging;
pub mod mcp;
pub mod memory;
pub mod probe;
mod reload;
pub mod serve;
pub mod telemetry;
pub mod tenancy;

/// Process exit codes (sysexits.h where one fits), relied on by the systemd unit
/// (`RestartPreventExitStatus=78`).
pub mod exit {
    pub const OK: u8 = 0;
    /// Anything not covered below.
    pub const FAILURE: u8 = 1;
    /// A dependency (the database) stayed unavailable for the whole connect wait; systemd may retry.
    pub const TEMPFAIL: u8 = 75;
    /// The configuration is wrong; restarting will not help.
    pub const CONFIG: u8 = 78;

    /// The exit code for a database failure: 75 when waiting longer might help, 78 when the
    /// configuration or the database's setup is wrong, 1 otherwise.
    pub fn db_exit_code(err: &db::DbError) -> u8 {
        use db::DbError::*;
        match err {
            Unavailable { .. } => TEMPFAIL,
            InvalidUrl { .. }
            | PlaintextRefused { .. }
            | AuthenticationFailed { .. }
            | DatabaseMissing { .. }
            | AccessDenied { .. }
            | WrongEnvironment { .. }
            | Unstamped { .. }
            | DivergentMigration { .. }
            | MissingMigration { .. }
            | StampRefused { .. }
            | DropRefused { .. } => CONFIG,
            Connect { .. } | Query { .. } | Migration { .. } => FAILURE,
        }
    }
}
