//! A persistent cluster (the developer's `.dev/postgres/`), run by `pg_ctl` and left running
//! between commands.
//!
//! Layout from [`ClusterSpec::under`]:
//! - `data/`: the cluster, private to the server's user;
//! - `run/`: the unix socket directory, private to the server's user, so `trust` on the socket
//!   only admits that user (and root);
//! - `postgres.log`: the server log;
//! - `superuser.password`: the generated password of the `postgres` superuser, mode 0600,
//!   owned by whoever ran `init`. TCP connections require it (SCRAM).

use std::fmt;
use std::fs::{self, OpenOptions, Permissions};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::secret::random_password;
use crate::system_user::RunAs;
use crate::{HarnessError, SUPERUSER, ServerUser, find_bindir};

/// The development cluster's default port: clear of a system server on 5432.
pub const DEFAULT_DEV_PORT: u16 = 55432;

/// Where a persistent cluster lives and how it listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    pub data_dir: PathBuf,
    pub socket_dir: PathBuf,
    pub log_file: PathBuf,
    pub password_file: PathBuf,
    pub port: u16,
    /// TCP listen address; loopback unless there is a reason to expose a dev database.
    pub listen_address: IpAddr,
}

impl ClusterSpec {
    /// The standard layout inside `root` (see the module docs), on [`DEFAULT_DEV_PORT`], 127.0.0.1.
    pub fn under(root: impl AsRef<Path>) -> Self {
        let root = root.as_ref();
        ClusterSpec {
            data_dir: root.join("data"),
            socket_dir: root.join("run"),
            log_file: root.join("postgres.log"),
            password_file: root.join("superuser.password"),
            port: DEFAULT_DEV_PORT,
            listen_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }
}

/// What [`Cluster::init`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitOutcome {
    Initialised,
    AlreadyInitialised,
}

/// What [`Cluster::start`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOutcome {
    Started {
        port: u16,
    },
    /// Nothing done; `port` is where it actually listens, which may differ from the spec.
    AlreadyRunning {
        pid: u32,
        port: u16,
    },
}

/// What [`Cluster::stop`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    Stopped,
    NotRunning,
}

/// Whether a cluster exists and runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterStatus {
    NotInitialised,
    Stopped,
    Running { pid: u32, port: u16 },
}

impl fmt::Display for InitOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitOutcome::Initialised => f.write_str("cluster initialised"),
            InitOutcome::AlreadyInitialised => {
                f.write_str("cluster already initialised; nothing to do")
            }
        }
    }
}

impl fmt::Display for StartOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartOutcome::Started { port } => write!(f, "started on port {port}"),
            StartOutcome::AlreadyRunning { pid, port } => {
                write!(f, "already running (pid {pid}, port {port}); nothing to do")
            }
        }
    }
}

impl fmt::Display for StopOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopOutcome::Stopped => f.write_str("stopped"),
            StopOutcome::NotRunning => f.write_str("not running; nothing to do"),
        }
    }
}

impl fmt::Display for ClusterStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterStatus::NotInitialised => f.write_str("not initialised"),
            ClusterStatus::Stopped => f.write_str("stopped"),
            ClusterStatus::Running { pid, port } => write!(f, "running (pid {pid}, port {port})"),
        }
    }
}

/// A persistent cluster: a spec plus the binaries and user to run it with.
#[derive(Debug)]
pub struct Cluster {
    spec: ClusterSpec,
    bindir: PathBuf,
    run_as: RunAs,
}

impl Cluster {
    /// Resolve the server binaries and the user to run them as; touches nothing on disk.
    pub fn new(spec: ClusterSpec) -> Result<Self, HarnessError> {
        Ok(Cluster {
            spec,
            bindir: find_bindir()?,
            run_as: RunAs::detect()?,
        })
    }

    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    /// The user the server runs as, when we are root and had to pick one.
    pub fn server_user(&self) -> Option<&ServerUser> {
        self.run_as.server_user()
    }

    /// Create the cluster with a fresh superuser password. Idempotent.
    pub fn init(&self) -> Result<InitOutcome, HarnessError> {
        if is_initialised(&self.spec.data_dir) {
            return Ok(InitOutcome::AlreadyInitialised);
        }
        for dir in [&self.spec.data_dir, &self.spec.socket_dir] {
            self.run_as.private_dir(dir)?;
            self.run_as.check_traversable(dir)?;
        }
        let password = random_password()?;
        write_private_file(&self.spec.password_file, &password)?;
        initdb(
            &self.bindir,
            &self.run_as,
            &self.spec.data_dir,
            &self.spec.socket_dir,
            &password,
            &[],
        )?;
        Ok(InitOutcome::Initialised)
    }

    /// Start the server and wait until it accepts connections. Idempotent.
    pub fn start(&self) -> Result<StartOutcome, HarnessError> {
        match self.status()? {
            ClusterStatus::NotInitialised => {
                return Err(HarnessError::NotInitialised {
                    data_dir: self.spec.data_dir.clone(),
                });
            }
            ClusterStatus::Running { pid, port } => {
                return Ok(StartOutcome::AlreadyRunning { pid, port });
            }
            ClusterStatus::Stopped => {}
        }
        let spec = &self.spec;
        check_socket_path(&spec.socket_dir, spec.port)?;
        self.run_as.private_dir(&spec.socket_dir)?;
        let log_offset = prepare_log(&self.run_as, &spec.log_file)?;
        let server_options = format!(
            "-c listen_addresses={} -p {} -k {}",
            spec.listen_address,
            spec.port,
            shell_quote(&spec.socket_dir.to_string_lossy())
        );
        // pg_ctl hands `-o` to /bin/sh, hence the quoting of the socket path.
        let output = self
            .pg_ctl()
            .args(["start", "-w", "-t", "60", "-D"])
            .arg(&spec.data_dir)
            .arg("-l")
            .arg(&spec.log_file)
            .arg("-o")
            .arg(server_options)
            .stdin(Stdio::null())
            .output()
            .map_err(HarnessError::io("run pg_ctl start"))?;
        if !output.status.success() {
            return Err(HarnessError::StartFailed {
                reason: combined_output(&output),
                log: spec.log_file.clone(),
                log_tail: log_tail(&spec.log_file, log_offset),
            });
        }
        Ok(StartOutcome::Started { port: spec.port })
    }

    /// Fast shutdown (disconnects clients). Idempotent.
    pub fn stop(&self) -> Result<StopOutcome, HarnessError> {
        if !self.is_running()? {
            return Ok(StopOutcome::NotRunning);
        }
        let mut command = self.pg_ctl();
        command
            .args(["stop", "-m", "fast", "-w", "-t", "60", "-D"])
            .arg(&self.spec.data_dir);
        run(&mut command)?;
        Ok(StopOutcome::Stopped)
    }

    pub fn status(&self) -> Result<ClusterStatus, HarnessError> {
        if !is_initialised(&self.spec.data_dir) {
            return Ok(ClusterStatus::NotInitialised);
        }
        let mut command = self.pg_ctl();
        command
            .arg("status")
            .arg("-D")
            .arg(&self.spec.data_dir)
            .stdin(Stdio::null());
        let output = command
            .output()
            .map_err(HarnessError::io("run pg_ctl status"))?;
        // pg_ctl status: 0 running, 3 not running; anything else is a real failure.
        match output.status.code() {
            Some(0) => match read_postmaster_pid(&self.spec.data_dir) {
                Some(pid_file) => Ok(ClusterStatus::Running {
                    pid: pid_file.pid,
                    port: pid_file.port,
                }),
                None => Ok(ClusterStatus::Stopped),
            },
            Some(3) => Ok(ClusterStatus::Stopped),
            _ => Err(command_failed(&command, &output)),
        }
    }

    pub fn is_running(&self) -> Result<bool, HarnessError> {
        Ok(matches!(self.status()?, ClusterStatus::Running { .. }))
    }

    /// `postgres://postgres:…@127.0.0.1:PORT/database`, with the password from the password file.
    pub fn superuser_url(&self, database: &str) -> Result<String, HarnessError> {
        let path = &self.spec.password_file;
        let password = fs::read_to_string(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                HarnessError::PasswordFileMissing { path: path.clone() }
            } else {
                HarnessError::Io {
                    context: format!("read {}", path.display()),
                    source,
                }
            }
        })?;
        let address = SocketAddr::new(self.spec.listen_address, self.spec.port);
        Ok(format!(
            "postgres://{SUPERUSER}:{}@{address}/{database}",
            password.trim()
        ))
    }

    fn pg_ctl(&self) -> Command {
        let mut command = self.run_as.command(self.bindir.join("pg_ctl"));
        command.current_dir("/");
        command
    }
}

fn is_initialised(data_dir: &Path) -> bool {
    data_dir.join("PG_VERSION").is_file()
}

/// Run `initdb` as the server's user. The password reaches it through a short-lived file in
/// `scratch_dir` (which must be private to that user), never through the command line.
pub(crate) fn initdb(
    bindir: &Path,
    run_as: &RunAs,
    data_dir: &Path,
    scratch_dir: &Path,
    password: &str,
    extra_args: &[&str],
) -> Result<(), HarnessError> {
    let pwfile = scratch_dir.join(".initdb-password");
    write_private_file(&pwfile, password)?;
    run_as.hand_over(&pwfile)?;
    let mut command = run_as.command(bindir.join("initdb"));
    command
        .arg("-D")
        .arg(data_dir)
        .args(["-U", SUPERUSER, "-E", "UTF8", "--locale=C"])
        .args([
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--pwfile",
        ])
        .arg(&pwfile)
        .args(extra_args)
        .current_dir("/");
    let result = run(&mut command);
    let removed =
        fs::remove_file(&pwfile).map_err(HarnessError::io(format!("remove {}", pwfile.display())));
    result.and(removed)
}

/// Write `contents` to `path` with mode 0600, creating parent directories (0755) as needed.
fn write_private_file(path: &Path, contents: &str) -> Result<(), HarnessError> {
    if let Some(parent) = path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(HarnessError::io(format!("create {}", parent.display())))?;
    }
    let context = || format!("write {}", path.display());
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(HarnessError::io(context()))?;
    // `mode` only applies on creation; an older file may be more open.
    file.set_permissions(Permissions::from_mode(0o600))
        .map_err(HarnessError::io(context()))?;
    file.write_all(contents.as_bytes())
        .map_err(HarnessError::io(context()))
}

/// Create the log file for the server's user; returns its current length so a failure report
/// shows only this start's lines.
pub(crate) fn prepare_log(run_as: &RunAs, log_file: &Path) -> Result<u64, HarnessError> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_file)
        .map_err(HarnessError::io(format!("open {}", log_file.display())))?;
    run_as.hand_over(log_file)?;
    let meta = file
        .metadata()
        .map_err(HarnessError::io(format!("stat {}", log_file.display())))?;
    Ok(meta.len())
}

/// The last lines of the log written since `offset`.
pub(crate) fn log_tail(log_file: &Path, offset: u64) -> String {
    let bytes = fs::read(log_file).unwrap_or_default();
    let start = usize::try_from(offset).unwrap_or(0).min(bytes.len());
    let text = String::from_utf8_lossy(&bytes[start..]);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// The kernel limit on a unix socket path (`sun_path` minus the terminating NUL).
const MAX_SOCKET_PATH: usize = if cfg!(target_os = "linux") { 107 } else { 103 };

pub(crate) fn check_socket_path(socket_dir: &Path, port: u16) -> Result<(), HarnessError> {
    let path = std::path::absolute(socket_dir)
        .map_err(HarnessError::io(format!(
            "resolve {}",
            socket_dir.display()
        )))?
        .join(format!(".s.PGSQL.{port}"));
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(HarnessError::SocketPathTooLong {
            path,
            len,
            max: MAX_SOCKET_PATH,
        });
    }
    Ok(())
}

/// The parts of `postmaster.pid` we need: line 1 pid, line 4 port, line 8 status.
pub(crate) struct PostmasterPid {
    pub(crate) pid: u32,
    pub(crate) port: u16,
    pub(crate) ready: bool,
}

pub(crate) fn read_postmaster_pid(data_dir: &Path) -> Option<PostmasterPid> {
    let text = fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    Some(PostmasterPid {
        pid: lines.first()?.parse().ok()?,
        port: lines.get(3)?.parse().ok()?,
        ready: lines.get(7).is_some_and(|status| *status == "ready"),
    })
}

pub(crate) fn run(command: &mut Command) -> Result<Output, HarnessError> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(HarnessError::io(format!("run {:?}", command.get_program())))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(command_failed(command, &output))
    }
}

fn command_failed(command: &Command, output: &Output) -> HarnessError {
    HarnessError::CommandFailed {
        command: format!("{command:?}"),
        status: output.status.to_string(),
        output: combined_output(output),
    }
}

fn combined_output(output: &Output) -> String {
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    text.trim_end().to_owned()
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}
