//! Command-line interface of `cognitive-memory-mcp`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{ConfigSource, Transport};

/// Cognitive memory MCP server: stores dialogue and insights in PostgreSQL and serves them to MCP
/// clients, with strictly separated development, test, staging and production environments.
///
/// Exit codes: 0 success, 78 configuration error, 75 database unavailable after the connect wait,
/// 1 any other failure.
#[derive(Debug, Parser)]
#[command(name = "cognitive-memory-mcp", version, about, long_about)]
pub struct Cli {
    /// Environment to run as: development, test, staging or production. Overrides $ENVIRONMENT;
    /// without either, development is assumed (with a warning).
    #[arg(long = "env", global = true, value_name = "ENV")]
    pub environment: Option<String>,

    /// Directory holding config/config.yaml and the .env, .env.<environment> files.
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "COGMEM_CONFIG_ROOT",
        default_value = "."
    )]
    pub config_root: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the MCP server: over HTTP as a daemon (systemd Type=notify), or over stdio for a
    /// client that launches it.
    ///
    /// Start-up: configuration (exit 78 on errors) → database, waiting up to
    /// database.connect_wait_secs (exit 75 if it stays unreachable) → environment stamp and
    /// migrations (exit 78 on a mismatch or pending migrations without database.auto_migrate) →
    /// listener → READY=1. SIGTERM/SIGINT drain in-flight requests for up to
    /// server.shutdown_grace_secs and exit 0; SIGHUP re-reads the configuration and secret files
    /// and applies the log level, payload logging, rate limit, accepted bearer tokens and a new
    /// database password. Staging and production refuse a SUPERUSER or BYPASSRLS database role
    /// (exit 78).
    Serve(ServeArgs),
    /// Inspect the configuration of the selected environment.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Apply pending migrations to the selected environment's database (operators have no cargo).
    ///
    /// The database must be stamped for the selected environment (exit 78 otherwise). A brand-new,
    /// empty database is stamped with --stamp.
    Migrate(MigrateArgs),
    /// Check this machine's setup of the selected environment and print PASS/WARN/FAIL/SKIP per
    /// check with a fix for each problem (exit 1 if anything FAILs, else 0). Needs neither cargo
    /// nor the sources.
    ///
    /// Environment checks: the configuration loads and validates (config); .env.<environment>
    /// exists or every required secret comes from elsewhere (env-file); the .env files, *_FILE
    /// targets and $CREDENTIALS_DIRECTORY files are mode 0600 or stricter and owned by the user
    /// running the check (secret-file-mode); required secrets are set and not placeholders
    /// (secrets); the database connection uses TLS or stays on this machine (db-tls); the
    /// database answers within 2 s (db-connect), its login role has no SUPERUSER or BYPASSRLS
    /// (db-role; CREATEROLE/CREATEDB warn), it is stamped for this environment (db-stamp) and
    /// has no pending migrations (db-migrations). Host checks: the installed
    /// /etc/systemd/system/cognitive-memory-mcp.service passes `systemd-analyze verify`
    /// (unit-verify) and scores at most 1.0 in `systemd-analyze security` (unit-security).
    ///
    /// Run it the way the service runs, e.g. as root:
    /// CREDENTIALS_DIRECTORY=/etc/cognitive-memory-mcp/credentials cognitive-memory-mcp
    /// --config-root /etc/cognitive-memory-mcp --env production doctor
    Doctor(DoctorArgs),
    /// Ask a running server whether it is alive (GET /health) or ready (--ready: GET /ready,
    /// database reachable, stamped and migrated), for container health checks: no curl or shell
    /// needed. Prints one line; exit 0 on a 2xx answer, 1 on anything else (refused, timed out,
    /// 503). The address is server.http.bind of the selected environment (0.0.0.0 is asked on
    /// 127.0.0.1) unless --url names one; the rest of the configuration is not validated, so no
    /// secret is needed.
    Health(HealthArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct HealthArgs {
    /// Ask /ready (database, stamp and schema checked) instead of /health (the process answers).
    #[arg(long)]
    pub ready: bool,
    /// Base URL of the server, e.g. http://127.0.0.1:8765; defaults to server.http.bind.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Seconds to wait for the whole answer.
    #[arg(long, value_name = "SECS", default_value_t = 3)]
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DoctorArgs {
    /// Print the results as JSON: {"ok", "summary", "checks": [{"id", "scope", "status",
    /// "reason", "fix"}]}.
    #[arg(long)]
    pub json: bool,
    /// Look for the installed unit (and its ExecStart binary) under this directory instead of /.
    #[arg(long, value_name = "DIR", default_value = "/", hide = true)]
    pub host_root: PathBuf,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Transport to serve; defaults to server.transport (http).
    #[arg(long, value_enum)]
    pub transport: Option<Transport>,
    /// Address and port for HTTP; defaults to server.http.bind (127.0.0.1:8765). Port 0 picks a
    /// free port (printed in the log and STATUS=).
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<SocketAddr>,
}

#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// List the pending migrations without applying them.
    #[arg(long)]
    pub dry_run: bool,
    /// Stamp a new, empty database for the selected environment (refused if it holds memories or
    /// is stamped for another environment).
    #[arg(long)]
    pub stamp: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load and validate the configuration; print every problem at once (exit 78 on any error).
    Check,
    /// Show every key's effective value (secrets redacted), where it came from and what it overrode.
    Explain,
    /// Print the .env.template implied by the configuration schema.
    Template,
}

impl Cli {
    pub fn config_source(&self) -> ConfigSource {
        ConfigSource {
            root: self.config_root.clone(),
            environment_flag: self.environment.clone(),
        }
    }
}
