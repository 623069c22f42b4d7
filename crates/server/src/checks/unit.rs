//! The systemd unit, checked by systemd's own tools: `systemd-analyze verify` must print nothing
//! and `systemd-analyze security --offline=true` must score it at most [`MAX_EXPOSURE`].
//!
//! `verify` needs the `ExecStart=` binary to exist, so both run on a copy of the unit (with its
//! drop-in directory) in a temporary directory, whose `ExecStart=` runs an existing binary.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use super::{CheckResult, Scope, find_in_path, ids, plural, run};

/// The unit's file name, in `deploy/systemd/` and in `/etc/systemd/system/`.
pub const UNIT_NAME: &str = "cognitive-memory-mcp.service";
/// Where the installer puts the unit, relative to the host root.
pub const INSTALLED_UNIT: &str = "etc/systemd/system/cognitive-memory-mcp.service";
/// The highest `systemd-analyze security` exposure the unit may have.
pub const MAX_EXPOSURE: f64 = 1.0;

/// Which binary the copy's `ExecStart=` runs.
#[derive(Debug, Clone)]
pub enum ExecBinary {
    /// This one (the shipped unit names the installed path, which need not exist here).
    Substitute(PathBuf),
    /// The unit's own, looked up under this root (`/` on a real host): missing is a failure.
    UnderRoot(PathBuf),
}

/// The host checks of `cognitive-memory-mcp doctor`: the installed unit under `host_root`
/// (normally `/`), verified and scored; both SKIP when it is not installed.
pub fn host(host_root: &Path) -> Vec<CheckResult> {
    let unit = host_root.join(INSTALLED_UNIT);
    if !unit.exists() {
        let reason = format!("{} is not installed", unit.display());
        let fix = "install it: cargo xtask install-service (from a source checkout)";
        return vec![
            CheckResult::skip(ids::UNIT_VERIFY, Scope::Host, &reason).with_fix(fix),
            CheckResult::skip(ids::UNIT_SECURITY, Scope::Host, reason).with_fix(fix),
        ];
    }
    let reinstall = "reinstall the shipped unit (cargo xtask install-service), keep local changes in drop-ins, then systemctl daemon-reload";
    check_unit(
        Scope::Host,
        &unit,
        &unit.display().to_string(),
        &ExecBinary::UnderRoot(host_root.to_path_buf()),
        reinstall,
        &format!("systemctl cat {UNIT_NAME} shows the unit and its drop-ins; {reinstall}"),
    )
}

/// `unit-verify` and `unit-security` for the unit at `path` (shown as `shown`).
pub fn check_unit(
    scope: Scope,
    path: &Path,
    shown: &str,
    exec: &ExecBinary,
    verify_fix: &str,
    security_fix: &str,
) -> Vec<CheckResult> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) => {
            return vec![
                CheckResult::fail(
                    ids::UNIT_VERIFY,
                    scope,
                    format!("cannot read {shown}: {err}"),
                )
                .with_fix(verify_fix),
                CheckResult::skip(ids::UNIT_SECURITY, scope, format!("{shown} is unreadable")),
            ];
        }
    };
    let Some(analyze) = find_in_path("systemd-analyze") else {
        let reason = "systemd-analyze is not installed (package systemd)";
        return vec![
            CheckResult::skip(ids::UNIT_VERIFY, scope, reason),
            CheckResult::skip(ids::UNIT_SECURITY, scope, reason),
        ];
    };
    let copy = match Copy::new(path, &text, exec) {
        Ok(copy) => copy,
        Err(reason) => {
            return vec![
                CheckResult::fail(ids::UNIT_VERIFY, scope, reason).with_fix(verify_fix),
                CheckResult::skip(
                    ids::UNIT_SECURITY,
                    scope,
                    "not scored: the unit could not be verified",
                ),
            ];
        }
    };
    vec![
        verify(scope, &analyze, &copy, shown, verify_fix),
        security(scope, &analyze, &copy, shown, security_fix),
    ]
}

fn verify(scope: Scope, analyze: &Path, copy: &Copy, shown: &str, fix: &str) -> CheckResult {
    let output = match run(analyze, &["verify".as_ref(), copy.unit.as_os_str()]) {
        Ok(output) => output,
        Err(reason) => return CheckResult::skip(ids::UNIT_VERIFY, scope, reason),
    };
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
    .replace(&copy.unit.display().to_string(), shown);
    let lines: Vec<String> = said
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect();
    if output.status.success() && lines.is_empty() {
        return CheckResult::pass(
            ids::UNIT_VERIFY,
            scope,
            format!("systemd-analyze verify {shown} reports nothing"),
        );
    }
    let what = if lines.is_empty() {
        format!("failed ({})", output.status)
    } else {
        format!(
            "reports {}: {}",
            plural(lines.len(), "line"),
            super::list(&lines, 3)
        )
    };
    CheckResult::fail(
        ids::UNIT_VERIFY,
        scope,
        format!("systemd-analyze verify {shown} {what}"),
    )
    .with_fix(fix)
}

fn security(scope: Scope, analyze: &Path, copy: &Copy, shown: &str, fix: &str) -> CheckResult {
    let args = [
        "security".as_ref(),
        "--offline=true".as_ref(),
        "--no-pager".as_ref(),
        copy.unit.as_os_str(),
    ];
    let output = match run(analyze, &args) {
        Ok(output) => output,
        Err(reason) => return CheckResult::skip(ids::UNIT_SECURITY, scope, reason),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    // "→ Overall exposure level for cognitive-memory-mcp.service: 0.9 SAFE 😀" (or `:-}` in
    // the C locale, whose colon is not the separator).
    let score = stdout
        .lines()
        .find_map(|line| line.split_once("Overall exposure level for "))
        .and_then(|(_, rest)| rest.split_once(": "))
        .and_then(|(_, rest)| {
            let mut words = rest.split_whitespace();
            let score = words.next()?.parse::<f64>().ok()?;
            Some((score, words.next().unwrap_or_default().to_owned()))
        });
    let Some((score, rating)) = score else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        return CheckResult::fail(
            ids::UNIT_SECURITY,
            scope,
            format!(
                "systemd-analyze security gave no exposure level for {shown} ({}): {}",
                output.status,
                first.replace(&copy.unit.display().to_string(), shown)
            ),
        )
        .with_fix(fix);
    };
    if score <= MAX_EXPOSURE {
        return CheckResult::pass(
            ids::UNIT_SECURITY,
            scope,
            format!("exposure {score:.1} {rating} (at most {MAX_EXPOSURE:.1})"),
        );
    }
    // "✗ PrivateNetwork=    Service has access to the host's network    0.5"
    let exposed: Vec<String> = stdout
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix('✗'))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    CheckResult::fail(
        ids::UNIT_SECURITY,
        scope,
        format!(
            "exposure {score:.1} {rating} is above {MAX_EXPOSURE:.1}; {} exposed, e.g. {}",
            plural(exposed.len(), "setting"),
            exposed
                .iter()
                .take(6)
                .cloned()
                .collect::<Vec<_>>()
                .join(" ")
        ),
    )
    .with_fix(fix)
}

/// The unit (and its drop-ins) in a temporary directory, removed on drop.
struct Copy {
    dir: PathBuf,
    unit: PathBuf,
}

impl Copy {
    fn new(path: &Path, text: &str, exec: &ExecBinary) -> Result<Copy, String> {
        let (line, original) =
            exec_start(text).ok_or_else(|| "the unit has no ExecStart= line".to_owned())?;
        let binary = match exec {
            ExecBinary::Substitute(binary) => binary.clone(),
            ExecBinary::UnderRoot(root) => {
                let binary = root.join(original.strip_prefix('/').unwrap_or(original));
                if !binary.is_file() {
                    return Err(format!(
                        "ExecStart= runs {original}, which does not exist ({})",
                        binary.display()
                    ));
                }
                binary
            }
        };
        let binary = fs::canonicalize(&binary)
            .map_err(|err| format!("cannot resolve {}: {err}", binary.display()))?;
        let replaced = line.replacen(original, &binary.display().to_string(), 1);
        let copy = text.replacen(line, &replaced, 1);

        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cogmem-check-unit-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let name = path
            .file_name()
            .map_or_else(|| UNIT_NAME.into(), |name| name.to_os_string());
        let unit = dir.join(&name);
        let copy_dir = Copy { dir, unit };
        fs::create_dir_all(&copy_dir.dir)
            .and_then(|()| fs::write(&copy_dir.unit, copy))
            .map_err(|err| format!("cannot write a copy of the unit: {err}"))?;
        // Drop-ins beside the unit change what it does (and its score): take them along.
        let mut drop_ins = path.as_os_str().to_owned();
        drop_ins.push(".d");
        let drop_ins = PathBuf::from(drop_ins);
        if let Ok(entries) = fs::read_dir(&drop_ins) {
            let mut target = name;
            target.push(".d");
            let target = copy_dir.dir.join(target);
            fs::create_dir_all(&target).map_err(|err| format!("cannot copy drop-ins: {err}"))?;
            for entry in entries.flatten() {
                let source = entry.path();
                if source.extension().is_some_and(|e| e == "conf") && source.is_file() {
                    fs::copy(&source, target.join(entry.file_name()))
                        .map_err(|err| format!("cannot copy {}: {err}", source.display()))?;
                }
            }
        }
        Ok(copy_dir)
    }
}

impl Drop for Copy {
    fn drop(&mut self) {
        // A leftover temporary directory is harmless.
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The first `ExecStart=` line and the program it runs (without `-@+!:` prefixes).
fn exec_start(text: &str) -> Option<(&str, &str)> {
    text.lines().find_map(|line| {
        let value = line.trim_start().strip_prefix("ExecStart=")?;
        let program = value
            .trim_start()
            .trim_start_matches(['-', '@', '+', '!', ':'])
            .split_whitespace()
            .next()?;
        Some((line, program))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_program_of_exec_start() {
        let unit = "[Service]\nExecStartPre=/bin/true\nExecStart=-/usr/local/bin/x serve --y\n";
        assert_eq!(
            exec_start(unit),
            Some(("ExecStart=-/usr/local/bin/x serve --y", "/usr/local/bin/x"))
        );
        assert_eq!(exec_start("[Service]\n"), None);
    }
}
