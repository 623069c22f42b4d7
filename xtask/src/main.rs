//! Project automation, run as `cargo xtask <command>`.
//!
//! - `docs`: regenerate docs/configuration.md from the schema.
//! - `dev`: the development database (set up when missing) and the server in the foreground.
//! - `dev-db start|stop|status`: the project-local PostgreSQL cluster under `.dev/postgres/`.
//! - `setup-db --env <env>` (and `setup-dev-db`): provision the environment's role and database,
//!   stamp and migrate it, write `.env.<env>` when missing, and compare the schema with
//!   production.
//! - `install-service [--root DIR] [--dry-run]`: the release binary, the systemd unit, the
//!   configuration and placeholder credentials, installed for production.
//! - `bench [--quick] [--json FILE] [--write-doc]`: the figures of docs/benchmarks.md, measured
//!   against the release server and a throwaway cluster.
//! - `soak --minutes N`: a steady mixed load; fails when RSS grows or any call fails.
//! - `verify-env [--env E]… [--json]`: the repository, every configured environment and the
//!   environments against each other, checked; PASS/WARN/FAIL/SKIP with a fix per problem.
//! - `image [--base IMAGE] [--binary FILE | --prebuilt] [--local-base]`: the container image.
//! - `compose-check [--dir DIR]`: every environment's merged Compose file, validated.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use config_core::Environment;

mod bench;
mod compose_check;
mod dev;
mod dev_db;
mod docs;
mod image;
mod install_service;
mod release;
mod rotate_db_password;
mod setup_db;
mod soak;
mod verify_env;

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    about = "Project automation for cognitive-memory"
)]
struct Cli {
    /// The repository root; defaults to the parent of `xtask/` (for tests).
    #[arg(long, global = true, env = "COGMEM_REPO_ROOT", hide = true)]
    repo_root: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start, stop or inspect the project-local PostgreSQL cluster in `.dev/postgres/`.
    DevDb {
        #[arg(value_enum)]
        action: DevDbAction,
        #[command(flatten)]
        port: PortArg,
    },
    /// Provision, stamp and migrate one environment's role and database.
    SetupDb {
        /// The environment: development, test, staging or production.
        #[arg(long = "env", value_parser = parse_environment)]
        environment: Environment,
        #[command(flatten)]
        options: SetupOptions,
    },
    /// Rotate an environment's database password without a restart: generate a strong one, set it
    /// on the role (ALTER ROLE with a SCRAM verifier computed here), rewrite the password in
    /// DATABASE_URL of .env.<env> (or of --credential FILE) atomically at mode 0600, then tell the
    /// daemon to reload (--pid PID sends SIGHUP, --unit NAME runs `systemctl reload NAME`).
    RotateDbPassword(rotate_db_password::RotateOptions),
    /// Shortcut for `setup-db --env development`.
    SetupDevDb {
        #[command(flatten)]
        options: SetupOptions,
    },
    /// The newcomer's single command: ensure the local cluster and the development database, then
    /// run the server over HTTP in the foreground with pretty logs (Ctrl-C stops it cleanly).
    Dev(DevOptions),
    /// Regenerate docs/configuration.md from the configuration schema and config/config.yaml.
    Docs,
    /// Build the release binary and install it with the systemd unit, the configuration and
    /// placeholder credentials (never overwriting configuration or credentials).
    InstallService(InstallServiceOptions),
    /// Measure start-up, memory, HTTP throughput and latency, search on a large database,
    /// migrations and the configuration load against their goals (docs/benchmarks.md).
    Bench(bench::BenchOptions),
    /// Run a steady mixed load for a while; exit 1 when RSS grows 10 % or more after the
    /// warm-up, or when any call fails.
    Soak(soak::SoakOptions),
    /// Check the checkout, every configured environment and the environments against each
    /// other: PASS/WARN/FAIL/SKIP per check with a fix per problem (exit 1 if anything FAILs).
    ///
    /// Repository: .env and .env.<environment> git-ignored (env-ignored) and untracked
    /// (env-untracked); .env.template tracked and generated (env-template); config/config.yaml
    /// valid (config-yaml); docs/production-checklist.md complete (checklist); the unit in
    /// deploy/systemd/ silent under `systemd-analyze verify` (unit-verify) and scoring at most
    /// 1.0 (unit-security). Every environment with a .env.<environment> file or --env: the
    /// checks of `cognitive-memory-mcp doctor` (config, env-file, secret-file-mode, secrets,
    /// db-tls, db-connect, db-stamp, db-migrations). Across them: no staging or production
    /// secret equal to a development or test one (secret-reuse), a database of its own each
    /// (database-separation), and each schema equal to production's (schema-drift).
    VerifyEnv(verify_env::VerifyEnvOptions),
    /// Build the container image from deploy/container/Containerfile with podman (or docker):
    /// from source with public base images, or from a host-built binary on a base assembled
    /// locally (--local-base) where no registry can be reached.
    Image(image::ImageOptions),
    /// Validate every environment's merged Compose file (deploy/compose/compose.yaml plus
    /// <environment>.yaml, merged by podman-compose) against the Compose specification
    /// (check-jsonschema --builtin-schema vendor.compose-spec) and the deployment's rules:
    /// read-only, no capabilities, no-new-privileges, secrets as files, a `health --ready`
    /// healthcheck, a memory limit, no restart loop, and in staging/production no bundled
    /// database and a migrate service the server waits for.
    ComposeCheck(compose_check::ComposeCheckOptions),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DevDbAction {
    /// Initialise the cluster if needed, then start it.
    Start,
    /// Stop the cluster (fast shutdown).
    Stop,
    /// Say whether the cluster exists and runs.
    Status,
}

#[derive(Debug, Clone, Copy, Args)]
struct PortArg {
    /// Port of the local development cluster.
    #[arg(long, env = "COGMEM_DEV_PG_PORT", default_value_t = pg_harness::DEFAULT_DEV_PORT)]
    port: u16,
}

#[derive(Debug, Clone, Args)]
struct SetupOptions {
    /// Superuser connection URL; without it the local development cluster is started and used.
    #[arg(long, env = "PG_ADMIN_URL", hide_env_values = true)]
    admin_url: Option<String>,
    /// Drop and recreate the database first (only databases stamped development or test).
    #[arg(long)]
    reset: bool,
    /// Give the role a new generated password and print the new DATABASE_URL line.
    #[arg(long)]
    reset_password: bool,
    #[command(flatten)]
    port: PortArg,
}

#[derive(Debug, Clone, Args)]
struct DevOptions {
    /// Address for the server; defaults to the development configuration's server.http.bind.
    #[arg(long, value_name = "ADDR")]
    bind: Option<std::net::SocketAddr>,
    /// Run this server binary instead of `cargo run --package cognitive-memory-mcp` (for tests).
    #[arg(long, hide = true)]
    server_binary: Option<PathBuf>,
    #[command(flatten)]
    setup: SetupOptions,
}

#[derive(Debug, Clone, Args)]
struct InstallServiceOptions {
    /// Install under this directory instead of `/` (a staging tree or a mounted image); the
    /// system user, `daemon-reload` and `enable` are then printed, not run.
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// Print every action without doing it.
    #[arg(long)]
    dry_run: bool,
    /// Install this binary instead of building the release binary (for tests).
    #[arg(long, hide = true)]
    binary: Option<PathBuf>,
}

pub(crate) fn parse_environment(
    given: &str,
) -> Result<Environment, config_core::InvalidEnvironment> {
    given.parse()
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = match cli.repo_root {
        Some(root) => root,
        None => default_repo_root()?,
    };
    match cli.command {
        Command::DevDb { action, port } => dev_db::run(&root, action, port.port),
        Command::SetupDb {
            environment,
            options,
        } => setup_db::run(&root, environment, &options),
        Command::RotateDbPassword(options) => rotate_db_password::run(&root, &options),
        Command::SetupDevDb { options } => setup_db::run(&root, Environment::Development, &options),
        Command::Dev(options) => dev::run(&root, &options),
        Command::Docs => docs::run(&root),
        Command::InstallService(options) => install_service::run(&root, &options),
        Command::Bench(options) => bench::run(&root, &options),
        Command::Soak(options) => soak::run(&root, &options),
        Command::VerifyEnv(options) => verify_env::run(&root, &options),
        Command::Image(options) => image::run(&root, &options),
        Command::ComposeCheck(options) => compose_check::run(&root, &options),
    }
}

/// The parent of this crate's manifest directory, independent of the working directory.
fn default_repo_root() -> Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .context("xtask's manifest directory has no parent")
}
