//! Environment checks: whether a checkout, an environment's configuration and database, and an
//! installed host are set up as the deployment expects. `cognitive-memory-mcp doctor` runs the
//! environment and host checks on a machine without cargo or sources; `cargo xtask verify-env`
//! runs the repository checks, the environment checks of every configured environment and the
//! checks across environments.
//!
//! Every check returns a [`CheckResult`] (never stops at the first failure); a [`Report`] renders
//! them as aligned text or JSON, and its exit code is 0 unless something FAILs. No result ever
//! holds a secret value: secrets are compared in memory and named by key and source
//! (`.env.production:3`, `credential database-url`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use config_core::{EnvSnapshot, Environment};
use serde::{Deserialize, Serialize};

use crate::config::{ConfigSource, ENVIRONMENT_VAR};

pub mod cross;
pub mod environment;
pub mod repository;
pub mod unit;

pub use cross::cross_environment;
pub use environment::{EnvironmentChecks, EnvironmentFacts, check_environment};
pub use repository::repository;
pub use unit::host;

/// Every check id, so that a JSON report can be read back (ids are `&'static str`).
pub mod ids {
    // Repository (cargo xtask verify-env).
    pub const ENV_IGNORED: &str = "env-ignored";
    pub const ENV_UNTRACKED: &str = "env-untracked";
    pub const ENV_TEMPLATE: &str = "env-template";
    pub const CONFIG_YAML: &str = "config-yaml";
    pub const CHECKLIST: &str = "checklist";
    // Repository (the unit in deploy/) and host (the installed unit).
    pub const UNIT_VERIFY: &str = "unit-verify";
    pub const UNIT_SECURITY: &str = "unit-security";
    // Per environment.
    pub const ENVIRONMENT: &str = "environment";
    pub const CONFIG: &str = "config";
    pub const ENV_FILE: &str = "env-file";
    pub const SECRET_FILE_MODE: &str = "secret-file-mode";
    pub const SECRETS: &str = "secrets";
    pub const DB_TLS: &str = "db-tls";
    pub const DB_CONNECT: &str = "db-connect";
    pub const DB_ROLE: &str = "db-role";
    pub const DB_STAMP: &str = "db-stamp";
    pub const DB_MIGRATIONS: &str = "db-migrations";
    pub const DB_BACKUP: &str = "db-backup";
    // Across environments.
    pub const SECRET_REUSE: &str = "secret-reuse";
    pub const DATABASE_SEPARATION: &str = "database-separation";
    pub const SCHEMA_DRIFT: &str = "schema-drift";

    pub const ALL: [&str; 21] = [
        ENV_IGNORED,
        ENV_UNTRACKED,
        ENV_TEMPLATE,
        CONFIG_YAML,
        CHECKLIST,
        UNIT_VERIFY,
        UNIT_SECURITY,
        ENVIRONMENT,
        CONFIG,
        ENV_FILE,
        SECRET_FILE_MODE,
        SECRETS,
        DB_TLS,
        DB_CONNECT,
        DB_ROLE,
        DB_STAMP,
        DB_MIGRATIONS,
        DB_BACKUP,
        SECRET_REUSE,
        DATABASE_SEPARATION,
        SCHEMA_DRIFT,
    ];
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
    /// Could not be checked (a tool or a prerequisite is missing); the reason says why.
    Skip,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// What a check is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The source checkout.
    Repository,
    /// One environment's configuration and database.
    Environment(Environment),
    /// Two environments compared (the lower one first).
    Pair(Environment, Environment),
    /// The installed service on this machine.
    Host,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Repository => f.write_str("repository"),
            Scope::Environment(environment) => f.write_str(environment.as_str()),
            Scope::Pair(a, b) => write!(f, "{a}/{b}"),
            Scope::Host => f.write_str("host"),
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let environment = |name: &str| {
            name.parse::<Environment>()
                .map_err(|err| format!("invalid scope {s:?}: {err}"))
        };
        match s {
            "repository" => Ok(Scope::Repository),
            "host" => Ok(Scope::Host),
            _ => match s.split_once('/') {
                Some((a, b)) => Ok(Scope::Pair(environment(a)?, environment(b)?)),
                None => Ok(Scope::Environment(environment(s)?)),
            },
        }
    }
}

impl Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One check's result. `reason` and `fix` are single lines and never contain a secret value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    pub id: &'static str,
    pub scope: Scope,
    pub status: Status,
    pub reason: String,
    /// What to do about a WARN or FAIL: a command where there is one.
    pub fix: Option<String>,
}

impl CheckResult {
    pub fn new(id: &'static str, scope: Scope, status: Status, reason: impl Into<String>) -> Self {
        CheckResult {
            id,
            scope,
            status,
            reason: one_line(&reason.into()),
            fix: None,
        }
    }

    pub fn pass(id: &'static str, scope: Scope, reason: impl Into<String>) -> Self {
        Self::new(id, scope, Status::Pass, reason)
    }

    pub fn skip(id: &'static str, scope: Scope, reason: impl Into<String>) -> Self {
        Self::new(id, scope, Status::Skip, reason)
    }

    pub fn fail(id: &'static str, scope: Scope, reason: impl Into<String>) -> Self {
        Self::new(id, scope, Status::Fail, reason)
    }

    pub fn warn(id: &'static str, scope: Scope, reason: impl Into<String>) -> Self {
        Self::new(id, scope, Status::Warn, reason)
    }

    pub fn with_fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(one_line(&fix.into()));
        self
    }
}

/// The owned form a JSON report is read back into; ids map onto [`ids::ALL`].
#[derive(Deserialize)]
struct CheckResultJson {
    id: String,
    scope: Scope,
    status: Status,
    reason: String,
    fix: Option<String>,
}

impl<'de> Deserialize<'de> for CheckResult {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let json = CheckResultJson::deserialize(deserializer)?;
        let id = ids::ALL
            .into_iter()
            .find(|id| *id == json.id)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown check id {:?}", json.id)))?;
        Ok(CheckResult {
            id,
            scope: json.scope,
            status: json.status,
            reason: json.reason,
            fix: json.fix,
        })
    }
}

/// How many results have each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub pass: usize,
    pub warn: usize,
    pub fail: usize,
    pub skip: usize,
}

/// The results of one run, in the order checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub checks: Vec<CheckResult>,
}

#[derive(Serialize)]
struct ReportJson<'a> {
    ok: bool,
    summary: Summary,
    checks: &'a [CheckResult],
}

impl Report {
    pub fn push(&mut self, result: CheckResult) {
        self.checks.push(result);
    }

    pub fn extend(&mut self, results: impl IntoIterator<Item = CheckResult>) {
        self.checks.extend(results);
    }

    pub fn summary(&self) -> Summary {
        let mut summary = Summary::default();
        for check in &self.checks {
            match check.status {
                Status::Pass => summary.pass += 1,
                Status::Warn => summary.warn += 1,
                Status::Fail => summary.fail += 1,
                Status::Skip => summary.skip += 1,
            }
        }
        summary
    }

    pub fn failed(&self) -> impl Iterator<Item = &CheckResult> {
        self.checks.iter().filter(|c| c.status == Status::Fail)
    }

    /// 0 when nothing FAILs, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        if self.failed().next().is_none() {
            crate::exit::OK
        } else {
            crate::exit::FAILURE
        }
    }

    /// One aligned line per check (`FAIL  production  secrets  reason`), a `fix:` line under
    /// each WARN and FAIL that has one, then the counts.
    pub fn render_text(&self) -> String {
        let scope_width = self
            .checks
            .iter()
            .map(|c| c.scope.to_string().chars().count())
            .max()
            .unwrap_or(0);
        let id_width = self.checks.iter().map(|c| c.id.len()).max().unwrap_or(0);
        let indent = " ".repeat(4 + 2 + scope_width + 2 + id_width + 2);
        let mut out = String::new();
        for check in &self.checks {
            out.push_str(&format!(
                "{}  {:scope_width$}  {:id_width$}  {}\n",
                check.status,
                check.scope.to_string(),
                check.id,
                check.reason
            ));
            if let Some(fix) = check.fix.as_ref().filter(|_| check.status != Status::Pass) {
                out.push_str(&format!("{indent}fix: {fix}\n"));
            }
        }
        let summary = self.summary();
        out.push_str(&format!(
            "summary: {} failed, {} warning{}, {} passed, {} skipped\n",
            summary.fail,
            summary.warn,
            if summary.warn == 1 { "" } else { "s" },
            summary.pass,
            summary.skip
        ));
        out
    }

    /// `{"ok": …, "summary": {…}, "checks": [{"id", "scope", "status", "reason", "fix"}, …]}`.
    pub fn render_json(&self) -> String {
        let json = ReportJson {
            ok: self.exit_code() == crate::exit::OK,
            summary: self.summary(),
            checks: &self.checks,
        };
        serde_json::to_string_pretty(&json).expect("a report serialises") + "\n"
    }

    /// Reads a report printed by [`render_json`](Self::render_json).
    pub fn from_json(text: &str) -> Result<Report, String> {
        serde_json::from_str(text).map_err(|err| err.to_string())
    }

    /// Prints the report to stdout and returns the exit code.
    pub fn print(&self, json: bool) -> u8 {
        use std::io::Write as _;
        let text = if json {
            self.render_json()
        } else {
            self.render_text()
        };
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
        self.exit_code()
    }
}

/// How fix lines name the tools: the installed binary for operators, cargo for developers.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The server command with its global options, e.g.
    /// `cognitive-memory-mcp --config-root /etc/cognitive-memory-mcp`.
    pub server: String,
    /// Whether `cargo xtask` is at hand (a source checkout).
    pub xtask: bool,
}

impl Invocation {
    /// The installed binary reading `config_root`.
    pub fn installed(config_root: &Path) -> Invocation {
        let mut server = "cognitive-memory-mcp".to_owned();
        if config_root != Path::new(".") {
            server.push_str(&format!(" --config-root {}", config_root.display()));
        }
        Invocation {
            server,
            xtask: false,
        }
    }

    /// `cargo run` in a checkout whose root is `config_root`.
    pub fn cargo(config_root: &Path) -> Invocation {
        let mut server = "cargo run -q -p cognitive-memory-mcp --".to_owned();
        let here = std::env::current_dir().ok();
        if here.as_deref() != Some(config_root) && config_root != Path::new(".") {
            server.push_str(&format!(" --config-root {}", config_root.display()));
        }
        Invocation {
            server,
            xtask: true,
        }
    }

    /// `<server> --env <environment> <args>`.
    pub fn command(&self, environment: Environment, args: &str) -> String {
        format!("{} --env {environment} {args}", self.server)
    }
}

/// `cognitive-memory-mcp doctor`: the environment checks of the selected environment and the
/// host checks (the installed unit under `host_root`).
pub fn doctor(source: &ConfigSource, env: &EnvSnapshot, host_root: &Path) -> Report {
    let mut report = Report::default();
    match config_core::select_environment(source.environment_flag.as_deref(), env, ENVIRONMENT_VAR)
    {
        Err(err) => report.push(
            CheckResult::fail(ids::ENVIRONMENT, Scope::Host, err.to_string())
                .with_fix("pass --env development|test|staging|production (or set ENVIRONMENT)"),
        ),
        Ok((environment, _)) => {
            let invocation = Invocation::installed(&source.root);
            match runtime() {
                Ok(runtime) => {
                    let checked =
                        runtime.block_on(check_environment(source, environment, env, &invocation));
                    report.extend(checked.results);
                }
                Err(reason) => report.push(CheckResult::fail(
                    ids::CONFIG,
                    Scope::Environment(environment),
                    reason,
                )),
            }
        }
    }
    report.extend(host(host_root));
    report
}

/// A single-threaded runtime for the database checks.
pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| format!("cannot start the async runtime: {err}"))
}

/// Newlines and tabs in a message become spaces: results are one line each.
fn one_line(text: &str) -> String {
    let mut line = String::with_capacity(text.len());
    for part in text
        .split(['\n', '\r', '\t'])
        .filter(|p| !p.trim().is_empty())
    {
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(part.trim_end());
    }
    line
}

/// `items` joined by `; `, at most `max` of them, with how many more there are.
pub(crate) fn list(items: &[String], max: usize) -> String {
    let mut text = items
        .iter()
        .take(max)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if items.len() > max {
        text.push_str(&format!("; and {} more", items.len() - max));
    }
    text
}

pub(crate) fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// The executable `name` in `$PATH`.
pub(crate) fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Runs `program` with `args`; its output, or why it could not run.
pub(crate) fn run(
    program: &Path,
    args: &[&std::ffi::OsStr],
) -> Result<std::process::Output, String> {
    Command::new(program)
        .args(args)
        .env("SYSTEMD_LOG_COLOR", "0")
        .env("SYSTEMD_COLORS", "0")
        .env("SYSTEMD_PAGER", "")
        .output()
        .map_err(|err| format!("cannot run {}: {err}", program.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        Report {
            checks: vec![
                CheckResult::pass(
                    ids::CONFIG,
                    Scope::Environment(Environment::Production),
                    "loads",
                ),
                CheckResult::fail(ids::SECRETS, Scope::Host, "token\nmissing")
                    .with_fix("set MCP_AUTH_TOKEN"),
                CheckResult::skip(
                    ids::SCHEMA_DRIFT,
                    Scope::Pair(Environment::Development, Environment::Production),
                    "production unreachable",
                ),
            ],
        }
    }

    #[test]
    fn text_is_aligned_with_fixes_and_a_summary() {
        let text = sample().render_text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "PASS  production              config        loads"
        );
        assert_eq!(
            lines[1],
            "FAIL  host                    secrets       token missing"
        );
        assert_eq!(
            lines[2],
            "                                            fix: set MCP_AUTH_TOKEN"
        );
        assert!(lines[3].starts_with("SKIP  development/production  schema-drift  "));
        assert_eq!(
            lines[4],
            "summary: 1 failed, 0 warnings, 1 passed, 1 skipped"
        );
        assert_eq!(sample().exit_code(), 1);
        assert_eq!(Report::default().exit_code(), 0);
    }

    #[test]
    fn json_round_trips() {
        let report = sample();
        let json = report.render_json();
        assert!(json.contains("\"status\": \"fail\""), "{json}");
        assert!(
            json.contains("\"scope\": \"development/production\""),
            "{json}"
        );
        assert_eq!(Report::from_json(&json).unwrap(), report);
        assert!(Report::from_json(&json.replace("schema-drift", "nonsense")).is_err());
    }

    #[test]
    fn scopes_parse_back() {
        for scope in [
            Scope::Repository,
            Scope::Host,
            Scope::Environment(Environment::Test),
            Scope::Pair(Environment::Test, Environment::Staging),
        ] {
            assert_eq!(scope.to_string().parse::<Scope>(), Ok(scope));
        }
    }
}
