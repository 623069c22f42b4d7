//! Checks of one environment: its configuration loads, its secrets are supplied, private and
//! real, and its database is reachable (briefly), encrypted or local, stamped for it and
//! migrated. Also gathers what the checks across environments compare ([`EnvironmentFacts`]).

use std::path::Path;
use std::time::Duration;

mod database;
mod facts;
mod secrets;

pub use facts::EnvironmentFacts;

use config_core::{
    ConfigValue, EnvSnapshot, Environment, RawValue, Report as ConfigReport, Resolution,
};
use secrecy::ExposeSecret;

use super::repository::problem_text;
use super::{CheckResult, Invocation, Scope, Status, ids, list, plural};
use crate::config::{self, AppConfig, ConfigSource};

/// How long the database checks wait for an unreachable server (whatever the configuration says).
const CONNECT_WAIT_SECS: u64 = 2;
/// An upper bound for all database checks of one environment together.
const DATABASE_CHECKS_TIMEOUT: Duration = Duration::from_secs(15);
const TOKEN_KEY: &str = "server.auth.token";
const URL_KEY: &str = "database.url";

/// The results of one environment's checks and what the cross-environment checks need.
#[derive(Debug)]
pub struct EnvironmentChecks {
    pub results: Vec<CheckResult>,
    pub facts: EnvironmentFacts,
}

/// Every check of `environment`, loading its configuration from `source` (whose
/// `environment_flag`, or `ENVIRONMENT` in `env`, must select `environment`).
pub async fn check_environment(
    source: &ConfigSource,
    environment: Environment,
    env: &EnvSnapshot,
    invocation: &Invocation,
) -> EnvironmentChecks {
    let scope = Scope::Environment(environment);
    let (config, resolution, report) =
        match config_core::load::<AppConfig>(&config::options(source, env)) {
            Ok(loaded) => {
                let report = loaded.resolution.report.clone();
                (Some(loaded.config), Some(loaded.resolution), report)
            }
            Err(failure) => (None, failure.resolution.map(|r| *r), failure.report),
        };
    let check = Check {
        scope,
        environment,
        root: &source.root,
        env,
        invocation,
        resolution: resolution.as_ref(),
    };
    let mut results = vec![check.config(&report)];
    results.push(check.env_file());
    results.push(check.secret_file_mode());
    results.push(check.secrets());
    results.push(check.tls());
    let (database_results, fingerprint) = check.database(config.as_ref()).await;
    results.extend(database_results);
    let facts = EnvironmentFacts {
        environment,
        secrets: check.secret_items(),
        database: check.database_identity(),
        fingerprint,
    };
    EnvironmentChecks { results, facts }
}

struct Check<'a> {
    scope: Scope,
    environment: Environment,
    root: &'a Path,
    env: &'a EnvSnapshot,
    invocation: &'a Invocation,
    resolution: Option<&'a Resolution>,
}

impl Check<'_> {
    /// A file below the configuration root as the loader shows it.
    fn shown(&self, name: &str) -> String {
        if self.root == Path::new(".") || self.root.as_os_str().is_empty() {
            name.to_owned()
        } else {
            self.root.join(name).display().to_string()
        }
    }

    fn env_file_name(&self) -> String {
        format!(".env.{}", self.environment)
    }

    /// FAIL in staging and production, WARN elsewhere.
    fn strict(&self) -> Status {
        if self.environment.is_strict() {
            Status::Fail
        } else {
            Status::Warn
        }
    }

    fn config(&self, report: &ConfigReport) -> CheckResult {
        let errors: Vec<String> = report.errors().map(problem_text).collect();
        let warnings: Vec<String> = report.warnings().map(problem_text).collect();
        let fix = format!(
            "{} lists every problem with its source",
            self.invocation.command(self.environment, "config check")
        );
        if !errors.is_empty() {
            let counts = if warnings.is_empty() {
                plural(errors.len(), "error")
            } else {
                format!(
                    "{}, {}",
                    plural(errors.len(), "error"),
                    plural(warnings.len(), "warning")
                )
            };
            let mut reason = format!("does not load: {counts}: {}", list(&errors, 6));
            if !warnings.is_empty() && errors.len() < 6 {
                reason.push_str(&format!(
                    "; warnings: {}",
                    list(&warnings, 6 - errors.len())
                ));
            }
            CheckResult::fail(ids::CONFIG, self.scope, reason).with_fix(fix)
        } else if !warnings.is_empty() {
            CheckResult::warn(
                ids::CONFIG,
                self.scope,
                format!(
                    "loads with {}: {}",
                    plural(warnings.len(), "warning"),
                    list(&warnings, 6)
                ),
            )
            .with_fix(fix)
        } else {
            let files: Vec<String> = self
                .resolution
                .map(|r| {
                    r.files
                        .iter()
                        .filter(|f| f.present)
                        .map(|f| f.path.display().to_string())
                        .collect()
                })
                .unwrap_or_default();
            let files = if files.is_empty() {
                "no files".to_owned()
            } else {
                files.join(", ")
            };
            CheckResult::pass(
                ids::CONFIG,
                self.scope,
                format!("loads and validates (read {files})"),
            )
        }
    }
}

fn raw_text<'r>(resolution: &'r Resolution, path: &str) -> Option<&'r str> {
    match &resolution.values.get(path)?.value {
        RawValue::Text(text) => Some(text.expose_secret()),
        _ => None,
    }
}

fn raw_bool(resolution: &Resolution, path: &str) -> Option<bool> {
    <bool as ConfigValue>::parse(&resolution.values.get(path)?.value).ok()
}
