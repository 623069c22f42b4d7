//! Runs the real `cognitive-memory-mcp serve` binary against a real PostgreSQL database with a
//! notify socket, as systemd would, and reads what it tells systemd.
#![allow(dead_code)] // Each test binary uses part of this module.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use config_core::Environment;
use pg_harness::{TestCluster, TestDatabase};

pub const BIN: &str = env!("CARGO_BIN_EXE_cognitive-memory-mcp");
/// A token long enough for the strict environments.
pub const TOKEN: &str = "test-token-0123456789abcdef";

/// A fresh database, migrated and stamped for `environment`.
pub async fn stamped_database(environment: Environment) -> TestDatabase {
    let database = TestCluster::shared().fresh_database().await.unwrap();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&database.url)
        .await
        .unwrap();
    db::stamp(&pool, environment, "tests").await.unwrap();
    pool.close().await;
    database
}

/// A configuration root holding a copy of the repository's config/config.yaml.
pub fn config_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::create_dir_all(root.path().join("config")).unwrap();
    std::fs::copy(
        repo.join("config/config.yaml"),
        root.path().join("config/config.yaml"),
    )
    .unwrap();
    root
}

/// How to start the daemon.
pub struct Launch {
    pub environment: Environment,
    pub database_url: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub watchdog_usec: Option<u64>,
    /// A command the binary runs under (such as `prlimit --nofile=1024:1024 --`).
    pub wrapper: Vec<String>,
    /// `.env.<environment>` written (mode 0600) before the start; the secrets then come from it
    /// alone, so that a reload re-reads them (no `DATABASE_URL`/`MCP_AUTH_TOKEN` variables).
    pub env_file: Option<String>,
}

impl Launch {
    /// HTTP on a free loopback port, test environment, the given database.
    pub fn http(database_url: &str) -> Self {
        Self {
            environment: Environment::Test,
            database_url: database_url.to_owned(),
            args: vec!["serve".into(), "--bind".into(), "127.0.0.1:0".into()],
            env: vec![("MCP_AUTH_TOKEN".into(), TOKEN.into())],
            watchdog_usec: None,
            wrapper: Vec::new(),
            env_file: None,
        }
    }

    /// Runs the binary under `wrapper` (its arguments, then the binary and its own).
    pub fn under(mut self, wrapper: &[&str]) -> Self {
        self.wrapper = wrapper.iter().map(|part| (*part).to_owned()).collect();
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    pub fn watchdog(mut self, usec: u64) -> Self {
        self.watchdog_usec = Some(usec);
        self
    }

    pub fn spawn(self) -> Daemon {
        let root = config_root();
        let socket_path = root.path().join("notify.sock");
        let notify = UnixDatagram::bind(&socket_path).unwrap();
        notify
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut command = match self.wrapper.split_first() {
            None => Command::new(BIN),
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(BIN);
                command
            }
        };
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("NOTIFY_SOCKET", &socket_path)
            .env("LOG_FORMAT", "json");
        if let Some(content) = &self.env_file {
            write_private(
                &root
                    .path()
                    .join(format!(".env.{}", self.environment.as_str())),
                content,
            );
        } else {
            command.env("DATABASE_URL", &self.database_url);
        }
        command
            .arg("--env")
            .arg(self.environment.as_str())
            .arg("--config-root")
            .arg(root.path())
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(usec) = self.watchdog_usec {
            command.env("WATCHDOG_USEC", usec.to_string());
        }
        for (name, value) in &self.env {
            if self.env_file.is_none() || !matches!(name.as_str(), "MCP_AUTH_TOKEN") {
                command.env(name, value);
            }
        }
        let mut child = command.spawn().unwrap();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        Daemon {
            child,
            notify,
            environment: self.environment,
            root,
            messages: Vec::new(),
            stderr,
        }
    }
}

pub struct Daemon {
    pub child: Child,
    notify: UnixDatagram,
    environment: Environment,
    pub root: tempfile::TempDir,
    /// Every notify datagram received so far, in order.
    pub messages: Vec<String>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn config_dir(&self) -> PathBuf {
        self.root.path().to_path_buf()
    }

    /// Writes `.env.<environment>` (mode 0600) in the configuration root, atomically.
    pub fn write_env_file(&self, content: &str) {
        let path = self
            .root
            .path()
            .join(format!(".env.{}", self.environment.as_str()));
        write_private(&path, content);
    }

    /// Reads datagrams until one satisfies `predicate` or `timeout` passes.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        predicate: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut buffer = vec![0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.notify.recv(&mut buffer) {
                let message = String::from_utf8_lossy(&buffer[..n]).trim_end().to_owned();
                self.messages.push(message.clone());
                if predicate(&message) {
                    return Some(message);
                }
            } else if let Ok(Some(_)) = self.child.try_wait() {
                return None;
            }
        }
        None
    }

    /// Waits for READY=1 and returns the base URL (`http://127.0.0.1:PORT`) from its STATUS=.
    pub fn ready(&mut self) -> String {
        let message = self
            .wait_for(Duration::from_secs(30), |m| {
                m.lines().any(|l| l == "READY=1")
            })
            .unwrap_or_else(|| panic!("no READY=1; stderr:\n{}", self.stderr()));
        let status = message
            .lines()
            .find_map(|line| line.strip_prefix("STATUS="))
            .expect("READY=1 comes with STATUS=");
        match status.split_once("http://") {
            Some((_, rest)) => {
                let address = rest.split('/').next().unwrap();
                format!("http://{address}")
            }
            None => String::new(),
        }
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            // Keep draining datagrams so STOPPING=1 is recorded.
            let _ = self.wait_for(Duration::from_millis(50), |_| false);
            if let Some(status) = self.child.try_wait().unwrap() {
                let _ = self.wait_for(Duration::from_millis(100), |_| false);
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "daemon did not exit within {timeout:?}; stderr:\n{}",
                    self.stderr()
                );
            }
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    pub fn saw(&self, line: &str) -> bool {
        self.messages.iter().any(|m| m.lines().any(|l| l == line))
    }
}

/// Writes `content` to `path` with mode 0600 through a renamed temporary file.
pub fn write_private(path: &Path, content: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let temporary = path.with_extension("tmp-write");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .unwrap();
    file.write_all(content.as_bytes()).unwrap();
    file.sync_all().unwrap();
    std::fs::rename(temporary, path).unwrap();
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
