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
    /// and applies the log level, payload logging, rate limit, accepted bearer tokens, the API
    /// keys file (server.auth.keys_file) and a JWKS, and a new database password. Staging and production refuse a SUPERUSER or BYPASSRLS database role
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
    /// has no pending migrations (db-migrations); the last good backup is younger than
    /// backup.max_age_hours (db-backup; WARN if there is none yet or the last attempt failed).
    /// Host checks: the installed
    /// /etc/systemd/system/cognitive-memory-mcp.service passes `systemd-analyze verify`
    /// (unit-verify) and scores at most 1.0 in `systemd-analyze security` (unit-security).
    ///
    /// Run it the way the service runs, e.g. as root:
    /// CREDENTIALS_DIRECTORY=/etc/cognitive-memory-mcp/credentials cognitive-memory-mcp
    /// --config-root /etc/cognitive-memory-mcp --env production doctor
    Doctor(DoctorArgs),
    /// Back up the selected environment's database: a consistent pg_dump (custom format) written
    /// atomically as cognitive-memory-<env>-<UTC time>.dump (mode 0600) with a manifest
    /// (environment stamp, schema fingerprint, row counts, SHA-256, tool versions), verified,
    /// recorded for doctor and memory_status; then backups older than backup.keep_days are
    /// pruned, keeping the backup.keep_min newest good ones.
    ///
    /// The database must be stamped for the environment. pg_dump must be of the server's major
    /// version (backup.pg_bin_dir, else pg_config --bindir, /usr/lib/postgresql/<major>/bin,
    /// PATH). Exit 75 when the database stays unreachable, 78 for a wrong stamp, directory or
    /// tool version, 1 when the dump fails; a failed backup leaves nothing behind and prunes nothing.
    Backup(BackupArgs),
    /// Restore a backup into the selected environment's database.
    ///
    /// Refused before anything changes (exit 78): a backup of another environment, naming both
    /// (production only takes production backups; a lower environment takes a higher one's only
    /// with --from-environment, and is then restamped, naming who did it); a target that holds
    /// memories, unless --replace. A truncated or damaged file is detected first (exit 1). The
    /// restore runs in one transaction; afterwards the schema fingerprint and row counts are
    /// compared with the manifest and pending migrations applied. Stop the daemon first.
    Restore(RestoreArgs),
    /// Write the environment's memories to stdout as JSON Lines (turns, insights and the links
    /// between them), for `import` into another environment or installation.
    Export(ExportArgs),
    /// Read an export from stdin into the environment's database: new ids, links preserved,
    /// all or nothing, and importing the same file again adds nothing. The memories go to one
    /// tenant (--tenant, default memory.tenant); a file exported from another tenant is refused
    /// unless --from-tenant names it.
    Import(ImportArgs),
    /// Ask a running server whether it is alive (GET /health) or ready (--ready: GET /ready,
    /// database reachable, stamped and migrated), for container health checks: no curl or shell
    /// needed. Prints one line; exit 0 on a 2xx answer, 1 on anything else (refused, timed out,
    /// 503). The address is server.http.bind of the selected environment (0.0.0.0 is asked on
    /// 127.0.0.1) unless --url names one; the rest of the configuration is not validated, so no
    /// secret is needed.
    Health(HealthArgs),
    /// Manage credentials for `server.auth.*`.
    #[command(subcommand)]
    Auth(AuthCommand),
}

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Generate a named API key: prints the key once (give it to the client; it is stored
    /// nowhere) and the line to append to server.auth.keys_file (it holds only the key's
    /// SHA-256). Then reload the daemon (SIGHUP). Needs no configuration.
    NewKey(NewKeyArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct NewKeyArgs {
    /// The key's name, unique in the file (letters, digits, `_ - . @`; shown in logs as key:NAME).
    #[arg(long, value_name = "NAME", value_parser = parse_key_name)]
    pub name: String,
    /// Whose memories the key reads and writes.
    #[arg(long, value_name = "TENANT", value_parser = parse_tenant)]
    pub tenant: crate::tenancy::Tenant,
    /// Comma-separated scopes: memory:read, memory:write, memory:forget.
    #[arg(long, value_name = "SCOPES", value_parser = parse_scopes)]
    pub scopes: crate::auth::Scopes,
    /// When the key stops working, as an RFC 3339 time such as 2027-01-31T00:00:00Z.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub expires: Option<time::OffsetDateTime>,
}

fn parse_key_name(text: &str) -> Result<String, String> {
    crate::auth::api_keys::check_name(text).map(|()| text.to_owned())
}

fn parse_tenant(text: &str) -> Result<crate::tenancy::Tenant, String> {
    crate::tenancy::Tenant::new(text).map_err(|err| err.to_string())
}

fn parse_scopes(text: &str) -> Result<crate::auth::Scopes, String> {
    crate::auth::Scopes::parse_list(text)
}

fn parse_time(text: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| "not an RFC 3339 time such as 2027-01-31T00:00:00Z".to_owned())
}

#[derive(Debug, Clone, clap::Args)]
pub struct BackupArgs {
    /// Write the backup into DIR instead of backup.dir.
    #[arg(long, value_name = "DIR", conflicts_with = "verify")]
    pub to: Option<PathBuf>,
    /// Only check FILE: its manifest, size and SHA-256, and that pg_restore can read it (exit 1
    /// if not). Needs no database.
    #[arg(long, value_name = "FILE")]
    pub verify: Option<PathBuf>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RestoreArgs {
    /// The backup (.dump) to restore; its .manifest.json must be beside it.
    #[arg(long, value_name = "FILE")]
    pub from: PathBuf,
    /// Overwrite a database that already holds memories.
    #[arg(long)]
    pub replace: bool,
    /// Refresh this lower environment from a backup of ENV (e.g. production into staging): the
    /// restored database is restamped for the selected environment.
    #[arg(long, value_name = "ENV")]
    pub from_environment: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// Only this session's turns and the insights citing them.
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
    /// Only memories created at or after T (e.g. 2026-11-01 or 2026-11-01T08:00:00Z).
    #[arg(long, value_name = "T")]
    pub since: Option<String>,
    /// The tenant whose memories are exported (one tenant per file); default memory.tenant.
    #[arg(long, value_name = "NAME")]
    pub tenant: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// The tenant the memories are imported into; default memory.tenant.
    #[arg(long, value_name = "NAME")]
    pub tenant: Option<String>,
    /// Import a file exported from tenant NAME into another tenant on purpose (without it, a
    /// file of another tenant is refused before anything is imported).
    #[arg(long, value_name = "NAME")]
    pub from_tenant: Option<String>,
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
