//! Checks of a source checkout (`cargo xtask verify-env`): secrets files kept out of git, the
//! committed `.env.template` current, `config/config.yaml` valid, the production checklist
//! complete, and the shipped systemd unit verified and hardened.

use std::ffi::OsStr;
use std::fs;
use std::path::Path;

use config_core::{EnvSnapshot, Environment, Problem, Severity, Source};

use super::unit::{ExecBinary, check_unit};
use super::{CheckResult, Scope, find_in_path, ids, list, plural, run};
use crate::config::{self, CONFIG_FILE, ConfigSource};

/// The checklist operators follow, relative to the repository root.
pub const CHECKLIST: &str = "docs/production-checklist.md";
/// The `##` sections it must have.
pub const CHECKLIST_SECTIONS: [&str; 6] = [
    "Pre-Deployment",
    "Deployment Steps",
    "Post-Deployment Validation",
    "Operational Readiness",
    "Troubleshooting",
    "Recovery",
];
/// The shipped unit, relative to the repository root.
pub const DEPLOY_UNIT: &str = "deploy/systemd/cognitive-memory-mcp.service";
const TEMPLATE: &str = ".env.template";

const SCOPE: Scope = Scope::Repository;

/// Every repository check. `env` is the process environment (for `${VAR}` in the YAML);
/// `exec_binary` is an existing executable for the copy of the unit that `systemd-analyze
/// verify` reads (the shipped `ExecStart=` path need not exist here).
pub fn repository(root: &Path, env: &EnvSnapshot, exec_binary: &Path) -> Vec<CheckResult> {
    let git = Git::find(root);
    let mut results = vec![env_ignored(&git), env_untracked(&git)];
    results.push(env_template(root, &git));
    results.push(config_yaml(root, env));
    results.push(checklist(root));
    results.extend(check_unit(
        SCOPE,
        &root.join(DEPLOY_UNIT),
        DEPLOY_UNIT,
        &ExecBinary::Substitute(exec_binary.to_path_buf()),
        &format!(
            "fix what systemd-analyze reports in {DEPLOY_UNIT}, then: cargo test -p cognitive-memory-mcp --test systemd_unit"
        ),
        &format!(
            "restore the sandbox settings (git diff -- {DEPLOY_UNIT} shows what changed); systemd-analyze security --offline=true lists each one"
        ),
    ));
    results
}

/// `git` in the checkout, or why there is none.
enum Git<'a> {
    Ready {
        program: std::path::PathBuf,
        root: &'a Path,
    },
    Unavailable(String),
}

impl<'a> Git<'a> {
    fn find(root: &'a Path) -> Git<'a> {
        let Some(program) = find_in_path("git") else {
            return Git::Unavailable("git is not installed".to_owned());
        };
        let git = Git::Ready { program, root };
        match git.run(&["rev-parse", "--is-inside-work-tree"]) {
            Ok((true, stdout)) if stdout.trim() == "true" => git,
            _ => Git::Unavailable(format!("{} is not a git work tree", root.display())),
        }
    }

    /// Whether git succeeded, and its standard output.
    fn run(&self, args: &[&str]) -> Result<(bool, String), String> {
        let Git::Ready { program, root } = self else {
            return Err("git is unavailable".to_owned());
        };
        let mut full: Vec<&OsStr> = vec!["-C".as_ref(), root.as_os_str()];
        full.extend(args.iter().map(OsStr::new));
        let output = run(program, &full)?;
        if output.status.code() == Some(128) {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(format!(
                "git {} failed: {}",
                args.first().unwrap_or(&""),
                stderr.lines().next().unwrap_or_default()
            ));
        }
        Ok((
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        ))
    }

    fn tracked(&self, path: &str) -> Result<bool, String> {
        self.run(&["ls-files", "--error-unmatch", "--", path])
            .map(|(tracked, _)| tracked)
            .or_else(|err| {
                if err.contains("did not match") {
                    Ok(false)
                } else {
                    Err(err)
                }
            })
    }
}

/// The secrets files: `.env` and `.env.<environment>`.
fn secret_file_names() -> Vec<String> {
    std::iter::once(".env".to_owned())
        .chain(Environment::ALL.map(|e| format!(".env.{e}")))
        .collect()
}

fn env_ignored(git: &Git<'_>) -> CheckResult {
    if let Git::Unavailable(reason) = git {
        return CheckResult::skip(ids::ENV_IGNORED, SCOPE, reason);
    }
    let names = secret_file_names();
    let mut args = vec!["check-ignore", "--no-index", "--"];
    args.extend(names.iter().map(String::as_str));
    let ignored = match git.run(&args) {
        Ok((_, stdout)) => stdout,
        Err(reason) => return CheckResult::fail(ids::ENV_IGNORED, SCOPE, reason),
    };
    let ignored: Vec<&str> = ignored.lines().map(str::trim).collect();
    let missing: Vec<String> = names
        .iter()
        .filter(|name| !ignored.contains(&name.as_str()))
        .cloned()
        .collect();
    if missing.is_empty() {
        CheckResult::pass(
            ids::ENV_IGNORED,
            SCOPE,
            ".env and .env.<environment> are ignored by git",
        )
    } else {
        CheckResult::fail(
            ids::ENV_IGNORED,
            SCOPE,
            format!("not ignored by git: {}", missing.join(", ")),
        )
        .with_fix("printf '.env\\n.env.*\\n!.env.template\\n' >> .gitignore")
    }
}

fn env_untracked(git: &Git<'_>) -> CheckResult {
    if let Git::Unavailable(reason) = git {
        return CheckResult::skip(ids::ENV_UNTRACKED, SCOPE, reason);
    }
    let listing = match git.run(&["ls-files", "-z", "--cached"]) {
        Ok((_, stdout)) => stdout,
        Err(reason) => return CheckResult::fail(ids::ENV_UNTRACKED, SCOPE, reason),
    };
    let tracked: Vec<String> = listing
        .split('\0')
        .filter(|path| {
            let name = path.rsplit('/').next().unwrap_or(path);
            (name == ".env" || name.starts_with(".env.")) && name != TEMPLATE
        })
        .map(str::to_owned)
        .collect();
    if tracked.is_empty() {
        CheckResult::pass(
            ids::ENV_UNTRACKED,
            SCOPE,
            "git tracks no .env file besides .env.template",
        )
    } else {
        CheckResult::fail(
            ids::ENV_UNTRACKED,
            SCOPE,
            format!(
                "tracked by git (secrets in the repository): {}",
                tracked.join(", ")
            ),
        )
        .with_fix(format!(
            "git rm --cached -- {} (and rotate its secrets if it was ever committed)",
            tracked.join(" ")
        ))
    }
}

fn env_template(root: &Path, git: &Git<'_>) -> CheckResult {
    let regenerate = "cargo run -q -p cognitive-memory-mcp -- config template > .env.template && git add .env.template";
    let expected = config::env_template();
    let actual = match fs::read_to_string(root.join(TEMPLATE)) {
        Ok(actual) => actual,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return CheckResult::fail(ids::ENV_TEMPLATE, SCOPE, ".env.template is missing")
                .with_fix(regenerate);
        }
        Err(err) => {
            return CheckResult::fail(
                ids::ENV_TEMPLATE,
                SCOPE,
                format!("cannot read .env.template: {err}"),
            );
        }
    };
    if actual != expected {
        let line = actual
            .lines()
            .zip(expected.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| actual.lines().count().min(expected.lines().count()))
            + 1;
        return CheckResult::fail(
            ids::ENV_TEMPLATE,
            SCOPE,
            format!(
                ".env.template differs from the configuration schema's template (first at line {line})"
            ),
        )
        .with_fix(regenerate);
    }
    match git {
        Git::Unavailable(reason) => CheckResult::pass(
            ids::ENV_TEMPLATE,
            SCOPE,
            format!(".env.template is current (not checked whether git tracks it: {reason})"),
        ),
        Git::Ready { .. } => match git.tracked(TEMPLATE) {
            Ok(true) => CheckResult::pass(
                ids::ENV_TEMPLATE,
                SCOPE,
                ".env.template is tracked and equals the generated template",
            ),
            Ok(false) => CheckResult::fail(
                ids::ENV_TEMPLATE,
                SCOPE,
                ".env.template is current but not tracked by git",
            )
            .with_fix("git add .env.template"),
            Err(reason) => CheckResult::fail(ids::ENV_TEMPLATE, SCOPE, reason),
        },
    }
}

/// The problems of `config/config.yaml` itself, for every environment's section: loading each
/// environment and keeping the problems the YAML is blamed for (not those of `.env` files or
/// variables).
fn config_yaml(root: &Path, env: &EnvSnapshot) -> CheckResult {
    if !root.join(CONFIG_FILE).is_file() {
        return CheckResult::fail(ids::CONFIG_YAML, SCOPE, format!("{CONFIG_FILE} is missing"))
            .with_fix(format!("git checkout -- {CONFIG_FILE}"));
    }
    let mut problems: Vec<Problem> = Vec::new();
    for environment in Environment::ALL {
        let source = ConfigSource {
            root: root.to_path_buf(),
            environment_flag: Some(environment.as_str().to_owned()),
        };
        let report = match config::load(&source, env) {
            Ok(loaded) => loaded.resolution.report,
            Err(failure) => failure.report,
        };
        for problem in report.problems {
            let from_yaml = match &problem.source {
                Some(Source::Yaml { .. }) => true,
                None => problem.message.contains(CONFIG_FILE),
                Some(_) => false,
            };
            if from_yaml && !problems.contains(&problem) {
                problems.push(problem);
            }
        }
    }
    let errors: Vec<String> = problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .map(problem_text)
        .collect();
    let warnings: Vec<String> = problems
        .iter()
        .filter(|p| p.severity == Severity::Warning)
        .map(problem_text)
        .collect();
    let fix = format!(
        "edit {CONFIG_FILE} at the lines shown; `cargo run -q -p cognitive-memory-mcp -- --env production config check` lists every problem"
    );
    if !errors.is_empty() {
        CheckResult::fail(
            ids::CONFIG_YAML,
            SCOPE,
            format!("{}: {}", plural(errors.len(), "error"), list(&errors, 4)),
        )
        .with_fix(fix)
    } else if !warnings.is_empty() {
        CheckResult::warn(
            ids::CONFIG_YAML,
            SCOPE,
            format!(
                "{}: {}",
                plural(warnings.len(), "warning"),
                list(&warnings, 4)
            ),
        )
        .with_fix(fix)
    } else {
        CheckResult::pass(
            ids::CONFIG_YAML,
            SCOPE,
            format!(
                "{CONFIG_FILE} parses, has no unknown keys and valid values in every environment"
            ),
        )
    }
}

/// `key: message [source]`, without the severity (the status says it).
pub(crate) fn problem_text(problem: &Problem) -> String {
    let mut text = String::new();
    if let Some(key) = &problem.key {
        text.push_str(key);
        text.push_str(": ");
    }
    text.push_str(&problem.message);
    if let Some(source) = &problem.source {
        text.push_str(&format!(" [{source}]"));
    }
    text
}

fn checklist(root: &Path) -> CheckResult {
    let text = match fs::read_to_string(root.join(CHECKLIST)) {
        Ok(text) => text,
        Err(err) => {
            let reason = if err.kind() == std::io::ErrorKind::NotFound {
                format!("{CHECKLIST} is missing")
            } else {
                format!("cannot read {CHECKLIST}: {err}")
            };
            return CheckResult::fail(ids::CHECKLIST, SCOPE, reason).with_fix(format!(
                "write {CHECKLIST} with the sections {}",
                CHECKLIST_SECTIONS.map(|s| format!("## {s}")).join(", ")
            ));
        }
    };
    let headings = level_two_headings(&text);
    let missing: Vec<&str> = CHECKLIST_SECTIONS
        .into_iter()
        .filter(|section| {
            let wanted = section.to_ascii_lowercase();
            !headings.iter().any(|h| h.contains(&wanted))
        })
        .collect();
    if missing.is_empty() {
        CheckResult::pass(
            ids::CHECKLIST,
            SCOPE,
            format!("{CHECKLIST} has all {} sections", CHECKLIST_SECTIONS.len()),
        )
    } else {
        CheckResult::fail(
            ids::CHECKLIST,
            SCOPE,
            format!(
                "{CHECKLIST} lacks the section{} {}",
                if missing.len() == 1 { "" } else { "s" },
                missing
                    .iter()
                    .map(|s| format!("\"## {s}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .with_fix(format!(
            "add {} to {CHECKLIST}",
            missing
                .iter()
                .map(|s| format!("`## {s}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// The text of every `## ` heading outside code fences, lower-cased.
fn level_two_headings(markdown: &str) -> Vec<String> {
    let mut in_fence = false;
    let mut headings = Vec::new();
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        if let Some(heading) = line.strip_prefix("## ") {
            headings.push(
                heading
                    .trim()
                    .trim_end_matches('#')
                    .trim()
                    .to_ascii_lowercase(),
            );
        }
    }
    headings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_outside_fences_only() {
        let text = "# Title\n## 1. Pre-Deployment checks\n```\n## Recovery\n```\n### Deployment Steps\n##Troubleshooting\n";
        assert_eq!(level_two_headings(text), vec!["1. pre-deployment checks"]);
    }
}
