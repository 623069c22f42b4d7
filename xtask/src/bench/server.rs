//! Starting the real `cognitive-memory-mcp` binary as systemd or an MCP client would, timing
//! its start-up, and reading its memory use from `/proc`.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

/// The bearer token the benchmark servers accept.
pub const TOKEN: &str = "bench-token-0123456789abcdef";
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

/// How to start the server: binary, configuration root and database.
#[derive(Debug)]
pub struct Launcher {
    pub binary: PathBuf,
    /// Holds `config/config.yaml` (a copy of the repository's), the notify sockets and logs.
    dir: tempfile::TempDir,
    pub database_url: String,
    /// Extra variables, e.g. the raised rate limit.
    pub env: Vec<(String, String)>,
    next_log: usize,
}

/// `--server-env NAME=VALUE` of the bench: set for every server it launches.
pub static SERVER_ENV: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();

impl Launcher {
    pub fn new(binary: &Path, repo: &Path, database_url: &str) -> Result<Launcher> {
        let dir = tempfile::Builder::new()
            .prefix("cogmem-bench-")
            .tempdir()
            .context("create a temporary directory")?;
        std::fs::create_dir_all(dir.path().join("config"))?;
        std::fs::copy(
            repo.join("config/config.yaml"),
            dir.path().join("config/config.yaml"),
        )
        .context("copy config/config.yaml")?;
        Ok(Launcher {
            binary: binary.to_path_buf(),
            dir,
            database_url: database_url.to_owned(),
            env: SERVER_ENV.get().cloned().unwrap_or_default(),
            next_log: 0,
        })
    }

    /// The test environment, a cleared environment but for `PATH`, the database and the token.
    pub fn command(&mut self, args: &[&str]) -> Result<(Command, PathBuf)> {
        self.next_log += 1;
        let log = self
            .dir
            .path()
            .join(format!("server-{}.log", self.next_log));
        let mut command = Command::new(&self.binary);
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATABASE_URL", &self.database_url)
            .env("MCP_AUTH_TOKEN", TOKEN)
            .env("LOG_FORMAT", "json")
            // The seeded turns reach back months: the test environment's retention would
            // expire most of them while the benchmark runs.
            .env("COGMEM__MEMORY__RETENTION__RAW_DAYS", "0")
            .args(["--env", "test", "--config-root"])
            .arg(self.dir.path())
            .args(args)
            .stderr(File::create(&log).context("create the server log")?);
        for (name, value) in &self.env {
            command.env(name, value);
        }
        Ok((command, log))
    }

    /// `serve --bind 127.0.0.1:0` with a notify socket; returns once `READY=1` arrived, with the
    /// time from just before exec to that datagram.
    pub fn http(&mut self) -> Result<(Server, Duration)> {
        let socket = self
            .dir
            .path()
            .join(format!("notify-{}.sock", self.next_log + 1));
        let _ = std::fs::remove_file(&socket);
        let notify = UnixDatagram::bind(&socket).context("bind the notify socket")?;
        notify.set_read_timeout(Some(Duration::from_millis(50)))?;
        let (mut command, log) = self.command(&["serve", "--bind", "127.0.0.1:0"])?;
        command
            .env("NOTIFY_SOCKET", &socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let started = Instant::now();
        let child = command
            .spawn()
            .with_context(|| format!("start {}", self.binary.display()))?;
        let mut server = Server {
            child,
            notify: Some(notify),
            addr: None,
            log,
            messages: Vec::new(),
        };
        let ready = loop {
            if let Some(message) = server.receive()? {
                if message.lines().any(|line| line == "READY=1") {
                    break (message, started.elapsed());
                }
                continue;
            }
            if let Some(status) = server.child.try_wait()? {
                bail!(
                    "the server exited ({status}) before READY=1:\n{}",
                    server.log_tail()
                );
            }
            if started.elapsed() > READY_TIMEOUT {
                bail!(
                    "no READY=1 within {READY_TIMEOUT:?}:\n{}",
                    server.log_tail()
                );
            }
        };
        let (message, elapsed) = ready;
        let addr = message
            .lines()
            .find_map(|line| line.strip_prefix("STATUS="))
            .and_then(|status| status.split_once("http://"))
            .and_then(|(_, rest)| rest.split('/').next())
            .and_then(|addr| addr.parse::<SocketAddr>().ok())
            .ok_or_else(|| anyhow!("READY=1 came without the address in STATUS="))?;
        server.addr = Some(addr);
        Ok((server, elapsed))
    }

    /// `serve --transport stdio`: writes the requests for `era` at once, then times exec → the
    /// `tools/list` answer line (id 2). Closes stdin afterwards and waits for the exit.
    pub fn stdio_tools_list(&mut self, era: Era) -> Result<(Duration, usize)> {
        let (mut command, log) = self.command(&["serve", "--transport", "stdio"])?;
        command.stdin(Stdio::piped()).stdout(Stdio::piped());
        let requests = era.requests();
        let started = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("start {}", self.binary.display()))?;
        let mut stdin: ChildStdin = child.stdin.take().expect("piped");
        // The requests wait in the pipe until the server reads them (after its database checks).
        stdin.write_all(requests.as_bytes())?;
        stdin.flush()?;
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        let answer = loop {
            line.clear();
            if stdout.read_line(&mut line)? == 0 {
                let _ = child.wait();
                bail!(
                    "stdout closed before the tools/list answer:\n{}",
                    tail(&log)
                );
            }
            let value: Value = serde_json::from_str(line.trim())
                .with_context(|| format!("stdout is not JSON-RPC: {}", line.trim()))?;
            if value["id"] == json!(2) {
                break (started.elapsed(), value);
            }
        };
        let (elapsed, value) = answer;
        let tools = value["result"]["tools"]
            .as_array()
            .map(Vec::len)
            .ok_or_else(|| anyhow!("the tools/list answer has no tools: {value}"))?;
        drop(stdin);
        wait_exit(&mut child, EXIT_TIMEOUT).context("the stdio server after stdin closed")?;
        Ok((elapsed, tools))
    }
}

/// The protocol era a stdio client opens with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    /// 2026-07-28: a `tools/list` request carrying `_meta`, no handshake.
    Modern,
    /// 2025-11-25: `initialize`, `notifications/initialized`, then `tools/list`.
    Legacy,
}

impl Era {
    fn requests(self) -> String {
        match self {
            Era::Modern => {
                let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list",
                    "params": {"_meta": super::http::meta()}});
                format!("{list}\n")
            }
            Era::Legacy => {
                let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                    "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                               "clientInfo": {"name": "cargo-xtask-bench", "version": "0"}}});
                let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
                let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}});
                format!("{initialize}\n{initialized}\n{list}\n")
            }
        }
    }
}

/// A running HTTP server.
#[derive(Debug)]
pub struct Server {
    child: Child,
    notify: Option<UnixDatagram>,
    addr: Option<SocketAddr>,
    log: PathBuf,
    /// Notify datagrams received so far.
    pub messages: Vec<String>,
}

impl Server {
    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("set once READY=1 arrived")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// One datagram, if one arrives within the socket's read timeout.
    pub fn receive(&mut self) -> Result<Option<String>> {
        let Some(notify) = &self.notify else {
            return Ok(None);
        };
        let mut buffer = [0u8; 4096];
        match notify.recv(&mut buffer) {
            Ok(n) => {
                let message = String::from_utf8_lossy(&buffer[..n]).into_owned();
                self.messages.push(message.clone());
                Ok(Some(message))
            }
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(None)
            }
            Err(err) => Err(err.into()),
        }
    }

    /// `VmRSS` and `VmHWM` in MiB.
    pub fn memory(&self) -> Result<Memory> {
        memory_of(self.pid())
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then waits for the exit.
    pub fn stop(mut self) -> Result<ExitStatus> {
        signal(self.pid(), "TERM")?;
        let status = wait_exit(&mut self.child, EXIT_TIMEOUT);
        while self.receive().ok().flatten().is_some() {}
        status
    }

    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Resident memory of a process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Memory {
    /// `VmRSS`, MiB.
    pub rss: f64,
    /// `VmHWM` (peak RSS), MiB.
    pub hwm: f64,
}

pub fn memory_of(pid: u32) -> Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    let field = |name: &str| -> Result<f64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .map(|kib| kib / 1024.0)
            .ok_or_else(|| anyhow!("no {name} in /proc/{pid}/status"))
    };
    Ok(Memory {
        rss: field("VmRSS:")?,
        hwm: field("VmHWM:")?,
    })
}

fn signal(pid: u32, signal: &str) -> Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .context("run kill")?;
    if !status.success() {
        bail!("kill -{signal} {pid} failed");
    }
    Ok(())
}

fn wait_exit(child: &mut Child, timeout: Duration) -> Result<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the server did not exit within {timeout:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The last lines of a log file.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
