//! `verify-env`: the repository checks, the checks of every environment that has configuration
//! (an `.env.<environment>` file, or `--env`), and the checks across those environments, printed
//! as PASS/WARN/FAIL/SKIP with a fix per problem (or as JSON). Exit 1 if anything FAILs.
//!
//! Every check runs whatever the others found; no secret value is ever printed (secrets are
//! compared in memory and named by key and source).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cognitive_memory_mcp::checks::{self, CheckResult, Invocation, Report, Scope};
use cognitive_memory_mcp::config::ConfigSource;
use config_core::{EnvSnapshot, Environment};

#[derive(Debug, Clone, clap::Args)]
pub struct VerifyEnvOptions {
    /// Check this environment too (repeatable); every environment with a .env.<environment>
    /// file is checked anyway.
    #[arg(long = "env", value_name = "ENV", value_parser = parse_environment)]
    pub environments: Vec<Environment>,
    /// Print the results as JSON: {"ok", "summary", "checks": [{"id", "scope", "status",
    /// "reason", "fix"}]}.
    #[arg(long)]
    pub json: bool,
}

fn parse_environment(given: &str) -> Result<Environment, config_core::InvalidEnvironment> {
    given.parse()
}

/// Prints the report; exits 1 when anything FAILs.
pub fn run(root: &Path, options: &VerifyEnvOptions) -> Result<()> {
    let report = verify(root, options)?;
    let code = report.print(options.json);
    if code != 0 {
        std::process::exit(i32::from(code));
    }
    Ok(())
}

fn verify(root: &Path, options: &VerifyEnvOptions) -> Result<Report> {
    let exec_binary = std::env::current_exe().context("locate the running xtask binary")?;
    let env = EnvSnapshot::from_process();
    let mut report = Report::default();
    report.extend(checks::repository(root, &env, &exec_binary));

    let environments = environments(root, &options.environments);
    if environments.is_empty() {
        report.push(CheckResult::skip(
            checks::ids::CONFIG,
            Scope::Repository,
            "no environment to check: no .env.<environment> file and no --env",
        ));
    }
    // Messages name files relative to the root when it is the working directory.
    let config_root = if std::env::current_dir().is_ok_and(|here| here == root) {
        PathBuf::from(".")
    } else {
        root.to_path_buf()
    };
    let invocation = Invocation::cargo(&config_root);
    let runtime = checks::runtime().map_err(anyhow::Error::msg)?;
    let mut facts = Vec::new();
    for environment in environments {
        let source = ConfigSource {
            root: config_root.clone(),
            environment_flag: Some(environment.as_str().to_owned()),
        };
        let checked = runtime.block_on(checks::check_environment(
            &source,
            environment,
            &env,
            &invocation,
        ));
        report.extend(checked.results);
        facts.push(checked.facts);
    }
    report.extend(checks::cross_environment(&facts, &invocation));
    Ok(report)
}

/// Those named with `--env` and those with an `.env.<environment>` file, in promotion order.
fn environments(root: &Path, named: &[Environment]) -> Vec<Environment> {
    Environment::ALL
        .into_iter()
        .filter(|environment| {
            named.contains(environment) || root.join(format!(".env.{environment}")).is_file()
        })
        .collect()
}
