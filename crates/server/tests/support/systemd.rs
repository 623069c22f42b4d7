//! Tests against a real systemd: a user manager and journald started by `systemd-harness.sh`
//! inside private mount and PID namespaces (`unshare`), one per scenario.
//!
//! Use from an integration test with `#[path = "support/systemd.rs"] mod systemd;`, then:
//!
//! ```ignore
//! if !systemd::available_or_skip("my_test") { return; }
//! let work = systemd::Workdir::new();
//! work.write_unit("demo.service", "[Service]\nExecStart=/bin/true\n");
//! let run = work.run("systemctl --user start demo.service", Duration::from_secs(60));
//! run.assert_success();
//! ```
//!
//! Scenarios are bash scripts run with `set -euo pipefail` after the manager has booted; the
//! harness gives them `systemctl --user`, `journalctl --directory="$HARNESS_JOURNAL_DIR"` and
//! the helpers `wait_until`, `unit_prop` and `unit_journal` (see the script's header). Each
//! scenario has its own namespaces, workdir and cgroups, so tests may run in parallel.
//!
//! `SYSTEMD_HARNESS_VERBOSE=1` prints every scenario's output, also on success (with
//! `--nocapture`).
//!
//! Workdirs live under `CARGO_TARGET_TMPDIR`, or under `/var/lib/cognitive-memory-tests` when the
//! checkout itself is below `/tmp`, `/var/tmp`, `/home` or `/root`: a hardened unit has a private
//! `/tmp` and no home directories, so files it must read (the binary included: see
//! [`Workdir::install_binary`]) have to be elsewhere.

#![allow(
    dead_code,
    reason = "each test crate that includes this module uses a different part of it"
)]

use std::fmt;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// The harness script.
pub const HARNESS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/systemd-harness.sh"
);
/// Exit status of the harness when it could not set systemd up (the scenario did not run).
pub const HARNESS_FAILURE: i32 = 125;

const SYSTEMD: &str = "/lib/systemd/systemd";
const JOURNALD: &str = "/lib/systemd/systemd-journald";
/// Time the harness may take beyond the scenario's own limit: booting and tearing down.
const HARNESS_OVERHEAD: Duration = Duration::from_secs(120);

/// Whether scenarios can run here: root, `unshare` into new mount and PID namespaces allowed,
/// systemd's manager, journald and client tools installed. Checked once per test process.
pub fn harness_available() -> Result<(), String> {
    static AVAILABLE: OnceLock<Result<(), String>> = OnceLock::new();
    AVAILABLE.get_or_init(check_available).clone()
}

/// `true` when the harness is available; otherwise prints `skipped: <test>: <reason>` to
/// stderr (visible with `--nocapture` and in the test's output on failure elsewhere) and
/// returns `false`, so the test can return without failing.
pub fn available_or_skip(test: &str) -> bool {
    match harness_available() {
        Ok(()) => true,
        Err(reason) => {
            eprintln!("skipped: {test}: {reason}");
            false
        }
    }
}

fn check_available() -> Result<(), String> {
    let uid = effective_uid().ok_or("cannot read the effective uid from /proc/self/status")?;
    if uid != 0 {
        return Err(format!(
            "the real-systemd harness needs root (uid {uid}): it mounts file systems and creates cgroups"
        ));
    }
    for binary in [SYSTEMD, JOURNALD] {
        if !is_executable(Path::new(binary)) {
            return Err(format!("{binary} is not installed (package systemd)"));
        }
    }
    for tool in [
        "unshare",
        "systemctl",
        "journalctl",
        "systemd-run",
        "timeout",
    ] {
        if find_in_path(tool).is_none() {
            return Err(format!("{tool} is not on PATH"));
        }
    }
    if !Path::new("/sys/fs/cgroup").is_dir() {
        return Err("no cgroup file system at /sys/fs/cgroup".to_owned());
    }
    let probe = Command::new("unshare")
        .args(UNSHARE_ARGS)
        .arg("true")
        .stdin(Stdio::null())
        .output()
        .map_err(|err| format!("cannot run unshare: {err}"))?;
    if !probe.status.success() {
        return Err(format!(
            "unshare into new mount and PID namespaces is refused here ({}): {}",
            probe.status,
            String::from_utf8_lossy(&probe.stderr).trim()
        ));
    }
    Ok(())
}

const UNSHARE_ARGS: [&str; 6] = [
    "--mount",
    "--propagation",
    "private",
    "--pid",
    "--fork",
    "--mount-proc",
];

fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("Uid:"))?;
    // Uid: real effective saved filesystem
    line.split_whitespace().nth(2)?.parse().ok()
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// `name` resolved against `PATH`, like a shell would.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// A directory for one scenario: `units/` (copied to the manager's unit directory), files the
/// units refer to, and the harness's logs. Removed when dropped.
#[derive(Debug)]
pub struct Workdir {
    dir: tempfile::TempDir,
}

/// Where workdirs go: somewhere a unit with `PrivateTmp=` and `ProtectHome=` still sees.
fn visible_base() -> PathBuf {
    let target_tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let hidden = ["/tmp", "/var/tmp", "/home", "/root", "/run/user"];
    if hidden.iter().any(|prefix| target_tmp.starts_with(prefix)) {
        PathBuf::from("/var/lib/cognitive-memory-tests")
    } else {
        target_tmp.to_path_buf()
    }
}

impl Default for Workdir {
    fn default() -> Self {
        Self::new()
    }
}

impl Workdir {
    pub fn new() -> Workdir {
        let base = visible_base();
        fs::create_dir_all(&base).expect("create the workdir base");
        let dir = tempfile::Builder::new()
            .prefix("systemd-")
            .tempdir_in(&base)
            .expect("create a workdir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
            .expect("chmod the workdir");
        fs::create_dir(dir.path().join("units")).expect("create units/");
        Workdir { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Copies a binary into the workdir (`bin/<name>`, 0755), where a sandboxed unit can run it
    /// wherever the checkout is.
    pub fn install_binary(&self, binary: &Path) -> PathBuf {
        let target = self
            .path()
            .join("bin")
            .join(binary.file_name().expect("a binary has a file name"));
        fs::create_dir_all(target.parent().unwrap()).expect("create bin/");
        fs::copy(binary, &target).expect("copy the binary");
        fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).expect("chmod");
        target
    }

    /// Unit files and `NAME.d/` drop-in directories go here before [`run`](Self::run).
    pub fn units(&self) -> PathBuf {
        self.path().join("units")
    }

    /// Writes `units/<name>` (a unit, or `NAME.service.d/x.conf` for a drop-in).
    pub fn write_unit(&self, name: &str, content: &str) -> PathBuf {
        self.write(&Path::new("units").join(name), content, 0o644)
    }

    /// Writes `relative` (parents created) with `mode`; returns the absolute path.
    pub fn write(&self, relative: &Path, content: &str, mode: u32) -> PathBuf {
        let path = self.path().join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create parent directories");
        }
        fs::write(&path, content).expect("write a workdir file");
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    /// Copies every file of `units` (and its drop-in directories) into `units/`.
    pub fn add_units_from(&self, units: &Path) {
        copy_tree(units, &self.units());
    }

    /// Runs `scenario` (bash, with `set -euo pipefail` prepended) under the harness. The scenario
    /// is stopped after `timeout`; the whole run, harness included, after `timeout` plus two minutes.
    pub fn run(&self, scenario: &str, timeout: Duration) -> ScenarioOutput {
        let script = self.write(
            Path::new("scenario.sh"),
            &format!("set -euo pipefail\n{scenario}\n"),
            0o755,
        );
        let mut command = Command::new("unshare");
        command
            .args(UNSHARE_ARGS)
            // Killing unshare (our own deadline below) sends SIGTERM to the harness, which then
            // stops the manager and everything else in its namespace.
            .arg("--kill-child=SIGTERM")
            .arg("bash")
            .arg(HARNESS)
            .arg(self.path())
            .arg("bash")
            .arg(&script)
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
            )
            .env(
                "HARNESS_SCENARIO_TIMEOUT",
                timeout.as_secs().max(1).to_string(),
            )
            .current_dir(self.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let output = run_with_deadline(command, timeout + HARNESS_OVERHEAD);
        if std::env::var_os("SYSTEMD_HARNESS_VERBOSE").is_some() {
            eprintln!("scenario in {}: {output}", self.path().display());
        }
        output
    }
}

/// Runs `scenario` under the harness with the units of `units` (a directory of unit files and
/// drop-in directories), in a fresh workdir.
pub fn run_scenario(units: &Path, scenario: &str, timeout: Duration) -> ScenarioOutput {
    let work = Workdir::new();
    work.add_units_from(units);
    work.run(scenario, timeout)
}

/// What a scenario run produced.
#[derive(Debug)]
pub struct ScenarioOutput {
    /// The exit code; `None` when killed by a signal.
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// The whole run hit its deadline and was killed.
    pub timed_out: bool,
}

impl ScenarioOutput {
    pub fn success(&self) -> bool {
        self.status == Some(0) && !self.timed_out
    }

    /// Panics with both outputs unless the scenario exited 0.
    #[track_caller]
    pub fn assert_success(&self) -> &ScenarioOutput {
        assert!(self.success(), "scenario failed: {self}");
        self
    }
}

impl fmt::Display for ScenarioOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            _ if self.timed_out => write!(f, "timed out (killed)")?,
            Some(HARNESS_FAILURE) => write!(
                f,
                "exit {HARNESS_FAILURE} (the harness failed, or the scenario exited {HARNESS_FAILURE})"
            )?,
            Some(code) => write!(f, "exit {code}")?,
            None => write!(f, "killed by a signal")?,
        }
        write!(
            f,
            "\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout, self.stderr
        )
    }
}

fn run_with_deadline(mut command: Command, limit: Duration) -> ScenarioOutput {
    let mut child = command.spawn().expect("start unshare");
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + limit;
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for unshare") {
            break status;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            // Already failing; a kill error only means it has just exited.
            let _ = child.kill();
            break child.wait().expect("wait for unshare");
        }
        thread::sleep(Duration::from_millis(50));
    };
    ScenarioOutput {
        status: status.code(),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
        timed_out,
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        // A read error ends the output early; what was read is still worth showing.
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create the destination directory");
    for entry in fs::read_dir(from).expect("read the units directory") {
        let entry = entry.expect("read a directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy a unit file");
        }
    }
}

/// The entries of `journalctl -o json` output (one JSON object per line) as field maps. Fields
/// journald stores as byte arrays (non-UTF-8 or with control characters) become lossy strings.
pub fn journal_entries(json_lines: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
    json_lines
        .lines()
        .filter(|line| line.starts_with('{'))
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|value| match value {
            serde_json::Value::Object(map) => Some(map),
            _ => None,
        })
        .map(|map| {
            map.into_iter()
                .map(|(key, value)| (key, normalize_field(value)))
                .collect()
        })
        .collect()
}

fn normalize_field(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Array(items) if items.iter().all(|item| item.is_u64()) => {
            let bytes: Vec<u8> = items
                .iter()
                .filter_map(|item| item.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect();
            serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
        }
        other => other,
    }
}

/// A field of a journal entry as text.
pub fn field<'a>(entry: &'a serde_json::Map<String, serde_json::Value>, name: &str) -> &'a str {
    entry.get(name).and_then(|v| v.as_str()).unwrap_or("")
}

/// The unit a journal entry came from. Under the harness, journald labels a service's own
/// entries `_SYSTEMD_UNIT=` (the user manager's cgroup is not below `user@.service`, so it cannot
/// tell a user unit); `_SYSTEMD_USER_UNIT=` is accepted as well.
pub fn unit_of(entry: &serde_json::Map<String, serde_json::Value>) -> &str {
    match field(entry, "_SYSTEMD_USER_UNIT") {
        "" => field(entry, "_SYSTEMD_UNIT"),
        unit => unit,
    }
}
