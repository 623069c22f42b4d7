//! Third-party npm tools the tests drive (the MCP Inspector, the official conformance suite):
//! installed once per machine into `<target>/npm-<name>-<version>/`, staged per process and
//! renamed into place so that concurrent runs never share a half-written tree; a command run with
//! a timeout; and the skip rule — without `node`/`npm`, or when the install fails, a test prints
//! `skipped: <reason>` and passes, unless its require-variable (set by `.ci/run`) is `1`.
#![allow(dead_code)] // Each test binary uses part of this module.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One pinned npm package and the launcher it installs under `node_modules/.bin/`.
pub struct NpmTool {
    /// The short name used in the cache directory (`npm-<name>-<version>`).
    pub name: &'static str,
    /// The npm package, e.g. `@modelcontextprotocol/inspector`.
    pub package: &'static str,
    pub version: &'static str,
    /// The launcher's file name in `node_modules/.bin/`.
    pub launcher: &'static str,
}

/// What a finished (or killed) command printed.
#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// The tool's launcher, or why the test cannot run: a failure when `require_var` is `1`, else
/// a printed `skipped: <reason>` and `None`.
pub fn launcher_or_skip(tool: &NpmTool, require_var: &str) -> Option<PathBuf> {
    match install(tool) {
        Ok(path) => Some(path),
        Err(reason) => {
            skip(require_var, &reason);
            None
        }
    }
}

/// Prints why the test cannot run, or fails when `require_var` is `1`.
pub fn skip(require_var: &str, reason: &str) {
    if std::env::var_os(require_var).is_some_and(|v| v == "1") {
        panic!("{require_var}=1 but: {reason}");
    }
    eprintln!("skipped: {reason}");
}

/// Installs `tool` on first use (next to the build profiles, so the cache follows
/// `CARGO_TARGET_DIR` and survives `cargo clean -p`) and returns its launcher.
pub fn install(tool: &NpmTool) -> Result<PathBuf, String> {
    // The server binary is <target>/<profile>/cognitive-memory-mcp.
    let target = Path::new(env!("CARGO_BIN_EXE_cognitive-memory-mcp"))
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot locate the target directory")?;
    let dir = target.join(format!("npm-{}-{}", tool.name, tool.version));
    let launcher = |dir: &Path| dir.join("node_modules/.bin").join(tool.launcher);
    if launcher(&dir).exists() {
        return Ok(launcher(&dir));
    }
    for program in ["node", "npm"] {
        let mut probe = Command::new(program);
        probe.arg("--version").stdin(Stdio::null());
        match run(probe, Duration::from_secs(30)) {
            Ok(output) if output.code == Some(0) => {}
            Ok(output) => return Err(format!("`{program} --version` failed: {output:?}")),
            Err(err) => return Err(format!("`{program}` is not available: {err}")),
        }
    }
    // Unique per process and per call: two tests of one binary may install at the same time,
    // and one must not remove the other's staging tree.
    static INSTALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let staging = target.join(format!(
        "npm-{}-{}.{}-{}.partial",
        tool.name,
        tool.version,
        std::process::id(),
        INSTALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(|err| format!("{}: {err}", staging.display()))?;
    let started = Instant::now();
    let spec = format!("{}@{}", tool.package, tool.version);
    let mut npm = Command::new("npm");
    npm.args(["install", "--prefix"])
        .arg(&staging)
        .args(["--no-audit", "--no-fund", "--loglevel=error"])
        .arg(&spec)
        .stdin(Stdio::null());
    let output = run(npm, Duration::from_secs(600))
        .map_err(|err| format!("cannot run npm install: {err}"))?;
    if output.code != Some(0) || !launcher(&staging).exists() {
        let _ = std::fs::remove_dir_all(&staging);
        let tail: String = output
            .stderr
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .join(" | ");
        return Err(format!(
            "npm install {spec} failed ({:?}): {tail}",
            output.code
        ));
    }
    // Another process may have won the race: its tree is as good as ours.
    if let Err(err) = std::fs::rename(&staging, &dir) {
        let _ = std::fs::remove_dir_all(&staging);
        if !launcher(&dir).exists() {
            return Err(format!(
                "cannot move the install to {}: {err}",
                dir.display()
            ));
        }
    }
    eprintln!(
        "installed {spec} into {} in {:.1?}",
        dir.display(),
        started.elapsed()
    );
    Ok(launcher(&dir))
}

/// Runs `command` to completion, killing it after `timeout`.
pub fn run(mut command: Command, timeout: Duration) -> std::io::Result<Output> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = out.join().unwrap();
    let mut stderr = err.join().unwrap();
    if status.is_none() {
        stderr.push_str(&format!("\n(killed after {timeout:?})"));
    }
    Ok(Output {
        code: status.and_then(|status| status.code()),
        stdout,
        stderr,
    })
}
