//! `install-service`: the release binary, the systemd units from `deploy/systemd/` (the daemon,
//! and the daily backup service with its timer), the shared
//! configuration and placeholder credentials, installed under a root directory (`/` by default).
//!
//! Never overwrites the installed `config.yaml` or a credential file: those belong to the operator.
//! The binary and the unit are replaced when they differ (the unit in `deploy/` is the one
//! installed; local changes belong in drop-ins). The system user, `daemon-reload` and `enable`
//! happen only when installing into `/` on a machine booted with systemd; otherwise the exact
//! commands are printed. `--dry-run` prints every action without doing it; a second run changes
//! nothing and says so.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{InstallServiceOptions, release};

const UNIT_NAME: &str = "cognitive-memory-mcp.service";
/// The daily backup: a oneshot service and the timer that starts it (enabled, not the service).
const BACKUP_UNITS: [&str; 2] = [
    "cognitive-memory-backup.service",
    "cognitive-memory-backup.timer",
];
const BACKUP_TIMER: &str = "cognitive-memory-backup.timer";
const SERVICE_USER: &str = "cognitive-memory";
/// What the unit's `ExecStart=` runs; the binary is installed there.
const INSTALLED_BINARY: &str = "/usr/local/bin/cognitive-memory-mcp";
const UNIT_DIR: &str = "/etc/systemd/system";
/// The configuration root (`COGMEM_CONFIG_ROOT` in the unit).
const CONFIG_ROOT: &str = "/etc/cognitive-memory-mcp";
/// The credential files the unit loads, with the variable each one stands for.
/// `backup-database-url` is loaded by the backup service only (a role that bypasses row-level
/// security, for `pg_dump`).
const CREDENTIALS: [(&str, &str); 3] = [
    ("database-url", "DATABASE_URL"),
    ("mcp-auth-token", "MCP_AUTH_TOKEN"),
    ("backup-database-url", "COGMEM__BACKUP__DATABASE_URL"),
];
/// Written into new credential files; `config check` rejects it in production (exit 78).
const PLACEHOLDER: &str = "changeme\n";

pub fn run(repo: &Path, options: &InstallServiceOptions) -> Result<()> {
    let unit_source = repo.join("deploy/systemd").join(UNIT_NAME);
    let config_source = repo.join("config/config.yaml");
    let unit = fs::read(&unit_source)
        .with_context(|| format!("read the unit {}", unit_source.display()))?;
    let mut backup_units = Vec::new();
    for name in BACKUP_UNITS {
        let source = repo.join("deploy/systemd").join(name);
        let text =
            fs::read(&source).with_context(|| format!("read the unit {}", source.display()))?;
        backup_units.push((name, text));
    }
    let config =
        fs::read(&config_source).with_context(|| format!("read {}", config_source.display()))?;
    if !options.root.is_dir() {
        bail!(
            "the root {} is not a directory; create it first",
            options.root.display()
        );
    }
    let root = fs::canonicalize(&options.root)
        .with_context(|| format!("resolve the root {}", options.root.display()))?;
    let mut installer = Installer {
        root: &root,
        dry_run: options.dry_run,
        changes: 0,
    };

    let binary = match &options.binary {
        Some(binary) => {
            if !binary.is_file() {
                bail!("--binary {} is not a file", binary.display());
            }
            println!("binary: using {}", binary.display());
            binary.clone()
        }
        None => build_release(repo, options.dry_run)?,
    };

    let mut all_units = vec![(UNIT_NAME, unit.clone())];
    all_units.extend(backup_units.iter().cloned());
    verify_unit(&all_units, &binary)?;

    installer.directory(Path::new("/usr/local/bin"), 0o755, Existing::Keep)?;
    installer.replace_file(Path::new(INSTALLED_BINARY), &binary, 0o755)?;
    installer.directory(Path::new(UNIT_DIR), 0o755, Existing::Keep)?;
    let mut unit_changed =
        installer.replace_contents(&Path::new(UNIT_DIR).join(UNIT_NAME), &unit, 0o644, "unit")?;
    for (name, text) in &backup_units {
        unit_changed |=
            installer.replace_contents(&Path::new(UNIT_DIR).join(name), text, 0o644, "unit")?;
    }
    let config_root = Path::new(CONFIG_ROOT);
    installer.directory(config_root, 0o755, Existing::SetMode)?;
    installer.directory(&config_root.join("config"), 0o755, Existing::SetMode)?;
    installer.create_once(&config_root.join("config/config.yaml"), &config, 0o644)?;
    let credentials_dir = config_root.join("credentials");
    installer.directory(&credentials_dir, 0o700, Existing::SetMode)?;
    let mut placeholders = Vec::new();
    for (name, _) in CREDENTIALS {
        let path = credentials_dir.join(name);
        installer.create_once(&path, PLACEHOLDER.as_bytes(), 0o600)?;
        if installer.still_placeholder(&path) {
            placeholders.push(name);
        }
    }

    if root == Path::new("/") && booted_with_systemd() {
        installer.system_steps(unit_changed)?;
    } else {
        print_remaining_system_steps(&root);
    }

    if !placeholders.is_empty() {
        println!(
            "next: put the real secrets into the credential files still holding the placeholder:"
        );
        for (name, variable) in CREDENTIALS {
            if placeholders.contains(&name) {
                println!(
                    "  {CONFIG_ROOT}/credentials/{name}   ({variable}; mode 0600, owned by root)"
                );
            }
        }
    }
    println!(
        "next: check the configuration, apply migrations, then start:\n  \
         CREDENTIALS_DIRECTORY={CONFIG_ROOT}/credentials {INSTALLED_BINARY} --config-root {CONFIG_ROOT} --env production config check\n  \
         CREDENTIALS_DIRECTORY={CONFIG_ROOT}/credentials {INSTALLED_BINARY} --config-root {CONFIG_ROOT} --env production migrate   (a new, empty database: migrate --stamp)\n  \
         systemctl start cognitive-memory-mcp\n  \
         systemctl start {BACKUP_TIMER}; systemctl start cognitive-memory-backup   (a first backup now)\n\
         note: a database on another host needs deploy/systemd/remote-database.conf as a drop-in \
         ({UNIT_DIR}/{UNIT_NAME}.d/): the unit allows IP traffic to localhost only"
    );
    match (installer.dry_run, installer.changes) {
        (true, 0) => println!("summary (dry run): nothing would change"),
        (true, n) => println!("summary (dry run): {n} change(s) would be made; nothing was done"),
        (false, 0) => println!("summary: nothing to do; everything was already installed"),
        (false, n) => println!("summary: {n} change(s) made"),
    }
    Ok(())
}

/// The release binary, built (or, in a dry run, where it would be built).
fn build_release(repo: &Path, dry_run: bool) -> Result<PathBuf> {
    if dry_run {
        println!(
            "binary: would run `cargo {}` (a dry run builds nothing)",
            release::BUILD_ARGS.join(" ")
        );
        return Ok(release::release_dir(repo).join(release::BINARY_NAME));
    }
    release::build_server(repo, "binary")
}

/// `systemd-analyze verify` must print nothing (it exits 0 even on warnings). It needs the
/// `ExecStart=` binary to exist, so it checks copies of the units that run `binary`; all units
/// are verified together, so the timer finds its service.
fn verify_unit(units: &[(&str, Vec<u8>)], binary: &Path) -> Result<()> {
    let Some(analyze) = find_in_path("systemd-analyze") else {
        println!("unit: not verified: systemd-analyze is not installed");
        return Ok(());
    };
    if !binary.is_file() {
        println!(
            "unit: not verified: {} does not exist yet (dry run)",
            binary.display()
        );
        return Ok(());
    }
    let binary = fs::canonicalize(binary)
        .with_context(|| format!("resolve the path of {}", binary.display()))?;
    let exec_start = format!("ExecStart={INSTALLED_BINARY}");
    let dir = std::env::temp_dir().join(format!("cogmem-install-verify-{}", std::process::id()));
    fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let mut paths = Vec::new();
    let mut written = Ok(());
    for (name, unit) in units {
        let text = String::from_utf8_lossy(unit);
        if name.ends_with(".service") && !text.contains(&exec_start) {
            let _ = fs::remove_dir_all(&dir);
            bail!("the ExecStart= of {name} does not run {INSTALLED_BINARY}");
        }
        let copy = text.replace(&exec_start, &format!("ExecStart={}", binary.display()));
        let path = dir.join(name);
        if written.is_ok() {
            written = fs::write(&path, copy).with_context(|| format!("write {}", path.display()));
        }
        paths.push(path);
    }
    let result = written.and_then(|()| {
        Command::new(&analyze)
            .arg("verify")
            .args(&paths)
            .env("SYSTEMD_LOG_COLOR", "0")
            .output()
            .context("run systemd-analyze verify")
    });
    // A leftover temporary directory is harmless; the verification result is what matters.
    let _ = fs::remove_dir_all(&dir);
    let output = result?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() || !said.trim().is_empty() {
        bail!(
            "systemd-analyze verify rejected the units ({}):\n{}",
            output.status,
            said.trim_end()
        );
    }
    println!("unit: systemd-analyze verify found nothing to report");
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Existing {
    /// A shared system directory: leave its mode alone.
    Keep,
    /// Ours: correct its mode.
    SetMode,
}

struct Installer<'a> {
    root: &'a Path,
    dry_run: bool,
    changes: usize,
}

impl Installer<'_> {
    /// `path` (absolute, as on the target machine) under the root.
    fn target(&self, path: &Path) -> PathBuf {
        self.root.join(
            path.strip_prefix("/")
                .expect("installed paths are absolute"),
        )
    }

    fn change(&mut self, what: String) {
        self.changes += 1;
        if self.dry_run {
            println!("would {what}");
        } else {
            println!("{what}");
        }
    }

    fn directory(&mut self, path: &Path, mode: u32, existing: Existing) -> Result<()> {
        let target = self.target(path);
        match fs::metadata(&target) {
            Ok(meta) if meta.is_dir() => {
                let current = meta.permissions().mode() & 0o7777;
                if existing == Existing::SetMode && current != mode {
                    self.change(format!(
                        "chmod {mode:04o} {} (was {current:04o})",
                        target.display()
                    ));
                    if !self.dry_run {
                        set_mode(&target, mode)?;
                    }
                }
                Ok(())
            }
            Ok(_) => bail!("{} exists and is not a directory", target.display()),
            Err(err) if err.kind() == ErrorKind::NotFound => {
                self.change(format!(
                    "create directory {} ({mode:04o})",
                    target.display()
                ));
                if !self.dry_run {
                    fs::create_dir_all(&target)
                        .with_context(|| format!("create {}", target.display()))?;
                    set_mode(&target, mode)?;
                }
                Ok(())
            }
            Err(err) => Err(err).with_context(|| format!("inspect {}", target.display())),
        }
    }

    /// Installs the file `source` at `path` unless an identical one with `mode` is there.
    fn replace_file(&mut self, path: &Path, source: &Path, mode: u32) -> Result<bool> {
        if self.dry_run && !source.is_file() {
            let target = self.target(path);
            self.change(format!(
                "install {} as {} ({mode:04o})",
                source.display(),
                target.display()
            ));
            return Ok(true);
        }
        let contents = fs::read(source).with_context(|| format!("read {}", source.display()))?;
        self.replace_contents(path, &contents, mode, "binary")
    }

    /// Writes `contents` to `path` unless it already holds them with `mode`. Replaces atomically
    /// (a running binary cannot be written in place). Returns whether anything changed.
    fn replace_contents(
        &mut self,
        path: &Path,
        contents: &[u8],
        mode: u32,
        what: &str,
    ) -> Result<bool> {
        let target = self.target(path);
        let (current, current_mode) = match fs::read(&target) {
            Ok(current) => (Some(current), file_mode(&target)?),
            Err(err) if err.kind() == ErrorKind::NotFound => (None, 0),
            Err(err) => return Err(err).with_context(|| format!("read {}", target.display())),
        };
        match current {
            Some(current) if current == contents && current_mode == mode => {
                println!("{what}: {} is up to date", target.display());
                Ok(false)
            }
            Some(current) if current == contents => {
                self.change(format!(
                    "chmod {mode:04o} {} (was {current_mode:04o})",
                    target.display()
                ));
                if !self.dry_run {
                    set_mode(&target, mode)?;
                }
                Ok(true)
            }
            existing => {
                let verb = if existing.is_some() {
                    "replace"
                } else {
                    "install"
                };
                self.change(format!("{verb} {} ({mode:04o})", target.display()));
                if !self.dry_run {
                    write_atomically(&target, contents, mode)?;
                }
                Ok(true)
            }
        }
    }

    /// Creates `path` with `contents` and `mode` when it does not exist; never touches an
    /// existing file.
    fn create_once(&mut self, path: &Path, contents: &[u8], mode: u32) -> Result<()> {
        let target = self.target(path);
        match fs::symlink_metadata(&target) {
            Ok(_) => {
                let differs = fs::read(&target).is_ok_and(|current| current != contents);
                let note = if path.ends_with("config/config.yaml") && differs {
                    " (it differs from the repository's config/config.yaml)"
                } else {
                    ""
                };
                println!("{} exists; not overwritten{note}", target.display());
                if let Ok(current) = file_mode(&target)
                    && current & 0o077 != 0
                    && mode & 0o077 == 0
                {
                    println!(
                        "warning: {} has mode {current:04o}; group and others should have no access (chmod {mode:04o})",
                        target.display()
                    );
                }
                Ok(())
            }
            Err(err) if err.kind() == ErrorKind::NotFound => {
                self.change(format!("create {} ({mode:04o})", target.display()));
                if !self.dry_run {
                    let mut file = OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(mode)
                        .open(&target)
                        .with_context(|| format!("create {}", target.display()))?;
                    file.write_all(contents)
                        .with_context(|| format!("write {}", target.display()))?;
                    set_mode(&target, mode)?;
                }
                Ok(())
            }
            Err(err) => Err(err).with_context(|| format!("inspect {}", target.display())),
        }
    }

    /// Whether the credential file holds the placeholder (or will, after a dry run).
    fn still_placeholder(&self, path: &Path) -> bool {
        match fs::read(self.target(path)) {
            Ok(contents) => contents.trim_ascii() == PLACEHOLDER.trim().as_bytes(),
            Err(_) => self.dry_run,
        }
    }

    /// The system user, `daemon-reload` and `enable`, on this machine (root `/`, systemd PID 1).
    fn system_steps(&mut self, unit_changed: bool) -> Result<()> {
        if user_exists(SERVICE_USER) {
            println!("user: {SERVICE_USER} exists");
        } else {
            self.change(format!("run {}", USERADD.join(" ")));
            if !self.dry_run {
                run_command(&USERADD)?;
            }
        }
        if unit_changed {
            self.change("run systemctl daemon-reload".to_owned());
            if !self.dry_run {
                run_command(&["systemctl", "daemon-reload"])?;
            }
        }
        let enabled = Command::new("systemctl")
            .args(["is-enabled", "--quiet", UNIT_NAME])
            .status()
            .is_ok_and(|status| status.success());
        if enabled {
            println!("systemd: {UNIT_NAME} is enabled");
        } else {
            self.change(format!("run systemctl enable {UNIT_NAME}"));
            if !self.dry_run {
                run_command(&["systemctl", "enable", UNIT_NAME])?;
            }
        }
        let timer_enabled = Command::new("systemctl")
            .args(["is-enabled", "--quiet", BACKUP_TIMER])
            .status()
            .is_ok_and(|status| status.success());
        if timer_enabled {
            println!("systemd: {BACKUP_TIMER} is enabled");
        } else {
            self.change(format!("run systemctl enable {BACKUP_TIMER}"));
            if !self.dry_run {
                run_command(&["systemctl", "enable", BACKUP_TIMER])?;
            }
        }
        Ok(())
    }
}

const USERADD: [&str; 7] = [
    "useradd",
    "--system",
    "--user-group",
    "--no-create-home",
    "--shell",
    "/usr/sbin/nologin",
    SERVICE_USER,
];

fn print_remaining_system_steps(root: &Path) {
    let why = if root != Path::new("/") {
        format!("the root is {}, not /", root.display())
    } else {
        "this machine was not booted with systemd (/run/systemd/system is missing)".to_owned()
    };
    println!(
        "system: not changed ({why}); on the target machine, as root, run:\n  \
         getent passwd {SERVICE_USER} >/dev/null || {}\n  \
         systemctl daemon-reload\n  \
         systemctl enable {UNIT_NAME}\n  \
         systemctl enable {BACKUP_TIMER}   (daily backup into /var/lib/cognitive-memory-mcp/backups)",
        USERADD.join(" ")
    );
}

fn run_command(args: &[&str]) -> Result<()> {
    let status = Command::new(args[0])
        .args(&args[1..])
        .status()
        .with_context(|| format!("run {}", args[0]))?;
    if !status.success() {
        bail!("`{}` failed ({status})", args.join(" "));
    }
    Ok(())
}

fn user_exists(name: &str) -> bool {
    fs::read_to_string("/etc/passwd").is_ok_and(|passwd| {
        passwd
            .lines()
            .any(|line| line.split(':').next() == Some(name))
    }) || Command::new("getent")
        .args(["passwd", name])
        .output()
        .is_ok_and(|output| output.status.success())
}

/// systemd is PID 1 (the check `sd_booted()` makes).
fn booted_with_systemd() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

fn file_mode(path: &Path) -> Result<u32> {
    let meta = fs::metadata(path).with_context(|| format!("inspect {}", path.display()))?;
    Ok(meta.permissions().mode() & 0o7777)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:04o} {}", path.display()))
}

/// Writes a temporary file beside `target`, then renames it over `target`.
fn write_atomically(target: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let name = target
        .file_name()
        .context("an installed path has a file name")?
        .to_string_lossy();
    let temporary = target.with_file_name(format!(".{name}.install-{}", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&temporary)
            .with_context(|| format!("create {}", temporary.display()))?;
        file.write_all(contents)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("write {}", temporary.display()))?;
        set_mode(&temporary, mode)?;
        fs::rename(&temporary, target)
            .with_context(|| format!("rename {} to {}", temporary.display(), target.display()))
    })();
    if result.is_err() {
        // Best effort: the error being returned is the one that matters.
        let _ = fs::remove_file(&temporary);
    }
    result
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            fs::metadata(candidate)
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}
