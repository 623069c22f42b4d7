//! A throwaway cluster for tests: started once per test process in a temporary directory, on a
//! free port, handing each test its own database.
//!
//! Statics are never dropped, so the cluster cannot rely on `Drop` to go away. Instead two
//! small shell processes hold the read end of a pipe whose write end only this process holds:
//! - the supervisor runs `postgres` in the background and, when its pipe closes, asks it for a
//!   fast shutdown (SIGINT); it exits when `postgres` does, which is also how an early failure
//!   shows up;
//! - the janitor waits for its pipe to close, then for `postgres` to remove its pid file, and
//!   deletes the temporary directory.
//!
//! When the test process exits, however it exits, the kernel closes both pipes. Both helpers
//! run in their own process group so a Ctrl-C aimed at `cargo test` does not kill the janitor
//! before it has cleaned up.

use std::fmt;
use std::fs::OpenOptions;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::cluster::{check_socket_path, initdb, log_tail, prepare_log, read_postmaster_pid};
use crate::secret::{mask_password, random_password};
use crate::system_user::RunAs;
use crate::{HarnessError, SUPERUSER, find_bindir};

/// Runs `"$@"` (postgres) until stdin closes, then shuts it down; exits when postgres exits.
const SUPERVISOR: &str = r#"
exec 3<&0 </dev/null
"$@" 3<&- &
pid=$!
{ read line <&3; kill -INT "$pid" 2>/dev/null; } &
watcher=$!
exec 3<&-
wait "$pid"
status=$?
kill "$watcher" 2>/dev/null
exit "$status"
"#;

/// Removes `$1` once stdin closes and postgres has let go of its data directory (bounded wait).
const JANITOR: &str = r#"
read line
i=0
while [ -e "$1/data/postmaster.pid" ] && [ "$i" -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
rm -rf "$1"
"#;

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const PORT_ATTEMPTS: usize = 5;

/// PostgreSQL's durability settings for a throwaway cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `fsync`, `full_page_writes` and `synchronous_commit` off: test data is thrown away, and
    /// durability only costs time.
    Off,
    /// PostgreSQL's defaults (all three on), for measurements that must hold in production.
    Default,
}

/// A throwaway cluster. Superuser over TCP with a generated password; durability settings off
/// unless started with [`TestCluster::start_with`]`(Durability::Default)`.
pub struct TestCluster {
    durability: Durability,
    root: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_file: PathBuf,
    port: u16,
    password: String,
    bindir: PathBuf,
    run_as: RunAs,
    /// The supervisor of the running server; `None` while stopped.
    server: Mutex<Option<Child>>,
    janitor: Mutex<Option<Child>>,
    next_database: AtomicU32,
}

/// A database of its own for one test, owned by a non-superuser role of its own.
#[derive(Clone)]
pub struct TestDatabase {
    pub name: String,
    /// The owning role (LOGIN, not a superuser).
    pub owner: String,
    /// Connects as `owner`.
    pub url: String,
    /// Connects as the cluster superuser, to this database.
    pub admin_url: String,
}

enum LaunchError {
    PortTaken,
    Failed(HarnessError),
}

impl From<HarnessError> for LaunchError {
    fn from(err: HarnessError) -> Self {
        LaunchError::Failed(err)
    }
}

impl TestCluster {
    /// The cluster shared by every test in this process, started on first use.
    ///
    /// # Panics
    /// When the cluster cannot be started, with the reason (for missing binaries, how to install
    /// them): a test without its database must fail, never pass vacuously.
    pub fn shared() -> &'static TestCluster {
        static SHARED: OnceLock<TestCluster> = OnceLock::new();
        SHARED.get_or_init(|| {
            TestCluster::start()
                .unwrap_or_else(|err| panic!("cannot start the test PostgreSQL cluster: {err}"))
        })
    }

    /// A cluster of its own, for a test that stops and restarts the server. Dropping it shuts
    /// the server down and removes its directory.
    pub fn start() -> Result<TestCluster, HarnessError> {
        Self::start_with(Durability::Off)
    }

    /// Like [`TestCluster::start`], with the given durability settings.
    pub fn start_with(durability: Durability) -> Result<TestCluster, HarnessError> {
        let bindir = find_bindir()?;
        let run_as = RunAs::detect()?;
        let root = tempfile::Builder::new()
            .prefix("pg-harness-")
            .tempdir()
            .map_err(HarnessError::io("create a temporary directory"))?
            .keep();
        let janitor = match spawn_janitor(&root) {
            Ok(janitor) => janitor,
            Err(err) => {
                // Nobody else will remove it; a failure to do so is secondary to `err`.
                let _ = std::fs::remove_dir_all(&root);
                return Err(err);
            }
        };
        let password = random_password()?;
        let mut cluster = TestCluster {
            durability,
            data_dir: root.join("data"),
            socket_dir: root.join("s"),
            log_file: root.join("postgres.log"),
            root,
            port: 0,
            password,
            bindir,
            run_as,
            server: Mutex::new(None),
            janitor: Mutex::new(Some(janitor)),
            next_database: AtomicU32::new(1),
        };
        // From here on, an early return drops `cluster`, whose janitor removes the directory.
        cluster.initialise()?;
        cluster.port = cluster.launch_on_free_port()?;
        Ok(cluster)
    }

    pub fn durability(&self) -> Durability {
        self.durability
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The unix socket directory (superuser access over the socket is `trust`).
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// Superuser URL for `database` over TCP.
    pub fn admin_url(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{password}@127.0.0.1:{port}/{database}?sslmode=disable",
            password = self.password,
            port = self.port
        )
    }

    /// Create a new database owned by a new role, both named after a per-cluster counter.
    pub async fn fresh_database(&self) -> Result<TestDatabase, HarnessError> {
        let number = self.next_database.fetch_add(1, Ordering::Relaxed);
        let name = format!("test_{number}");
        let owner = format!("test_{number}_owner");
        let password = random_password()?;
        let mut conn = PgConnection::connect(&self.admin_url("postgres"))
            .await
            .map_err(|err| self.sql_error("connect to the test cluster", &err))?;
        // Names are generated from a counter and the password is hex: nothing to escape.
        for statement in [
            format!("CREATE ROLE {owner} LOGIN PASSWORD '{password}'"),
            format!("CREATE DATABASE {name} OWNER {owner}"),
        ] {
            sqlx::raw_sql(AssertSqlSafe(statement))
                .execute(&mut conn)
                .await
                .map_err(|err| self.sql_error(&format!("create test database {name}"), &err))?;
        }
        conn.close()
            .await
            .map_err(|err| self.sql_error("disconnect", &err))?;
        Ok(TestDatabase {
            url: format!(
                "postgres://{owner}:{password}@127.0.0.1:{}/{name}?sslmode=disable",
                self.port
            ),
            admin_url: self.admin_url(&name),
            name,
            owner,
        })
    }

    /// A role that reads every tenant of `database` — `LOGIN BYPASSRLS`, `pg_read_all_data`,
    /// nothing else — as `setup-db` creates it for `backup.database_url`; returns its URL.
    pub async fn backup_role(&self, database: &TestDatabase) -> Result<String, HarnessError> {
        let role = format!("{}_backup", database.owner);
        let password = random_password()?;
        let mut conn = PgConnection::connect(&database.admin_url)
            .await
            .map_err(|err| self.sql_error("connect to the test cluster", &err))?;
        // Generated names and a hex password: nothing to escape.
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE ROLE {role} LOGIN BYPASSRLS PASSWORD '{password}';
             GRANT CONNECT ON DATABASE {name} TO {role};
             GRANT pg_read_all_data TO {role};",
            name = database.name
        )))
        .execute(&mut conn)
        .await
        .map_err(|err| self.sql_error(&format!("create backup role {role}"), &err))?;
        conn.close()
            .await
            .map_err(|err| self.sql_error("disconnect", &err))?;
        Ok(format!(
            "postgres://{role}:{password}@127.0.0.1:{}/{}?sslmode=disable",
            self.port, database.name
        ))
    }

    /// Fast shutdown (clients are disconnected); the data directory and port are kept for
    /// [`start_server`](Self::start_server). Does nothing when already stopped.
    pub fn stop_server(&self) -> Result<(), HarnessError> {
        if let Some(mut supervisor) = self.lock_server().take() {
            drop(supervisor.stdin.take());
            supervisor
                .wait()
                .map_err(HarnessError::io("wait for postgres to stop"))?;
        }
        Ok(())
    }

    /// Start the server again on the same port and data directory. Does nothing when running.
    pub fn start_server(&self) -> Result<(), HarnessError> {
        let mut server = self.lock_server();
        if server.is_none() {
            let supervisor = self.launch(self.port).map_err(|err| match err {
                LaunchError::PortTaken => HarnessError::StartFailed {
                    reason: format!("port {} has been taken by another process", self.port),
                    log: self.log_file.clone(),
                    log_tail: log_tail(&self.log_file, 0),
                },
                LaunchError::Failed(err) => err,
            })?;
            *server = Some(supervisor);
        }
        Ok(())
    }

    /// Whether the server process is up (it may have been stopped, or have died).
    pub fn is_running(&self) -> bool {
        self.lock_server()
            .as_mut()
            .is_some_and(|supervisor| matches!(supervisor.try_wait(), Ok(None)))
    }

    fn lock_server(&self) -> MutexGuard<'_, Option<Child>> {
        // The guarded state is a process handle; a panic elsewhere does not corrupt it.
        self.server.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn initialise(&self) -> Result<(), HarnessError> {
        self.run_as.hand_over(&self.root)?;
        self.run_as.check_traversable(&self.root)?;
        self.run_as.private_dir(&self.data_dir)?;
        self.run_as.private_dir(&self.socket_dir)?;
        initdb(
            &self.bindir,
            &self.run_as,
            &self.data_dir,
            &self.socket_dir,
            &self.password,
            &["--no-sync"],
        )
    }

    /// Binding port 0 and releasing it leaves a window for someone else; retry on collision.
    fn launch_on_free_port(&self) -> Result<u16, HarnessError> {
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            match self.launch(port) {
                Ok(supervisor) => {
                    *self.lock_server() = Some(supervisor);
                    return Ok(port);
                }
                Err(LaunchError::PortTaken) => continue,
                Err(LaunchError::Failed(err)) => return Err(err),
            }
        }
        Err(HarnessError::StartFailed {
            reason: format!(
                "every one of {PORT_ATTEMPTS} free ports was taken before postgres could bind it"
            ),
            log: self.log_file.clone(),
            log_tail: log_tail(&self.log_file, 0),
        })
    }

    fn launch(&self, port: u16) -> Result<Child, LaunchError> {
        check_socket_path(&self.socket_dir, port)?;
        let log_offset = prepare_log(&self.run_as, &self.log_file)?;
        let log = OpenOptions::new()
            .append(true)
            .open(&self.log_file)
            .map_err(HarnessError::io(format!(
                "open {}",
                self.log_file.display()
            )))?;
        let log_for_stderr = log
            .try_clone()
            .map_err(HarnessError::io("duplicate the log handle"))?;
        let mut command = self.run_as.command("/bin/sh");
        command
            .args(["-c", SUPERVISOR, "pg-harness-supervisor"])
            .arg(self.bindir.join("postgres"))
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&self.socket_dir)
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(match self.durability {
                Durability::Off => &[
                    "-c",
                    "fsync=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "synchronous_commit=off",
                ][..],
                Durability::Default => &[][..],
            })
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(log)
            .stderr(log_for_stderr)
            .process_group(0);
        let mut supervisor = command
            .spawn()
            .map_err(HarnessError::io("start postgres"))?;
        match self.wait_ready(&mut supervisor, port, log_offset) {
            Ok(()) => Ok(supervisor),
            Err(err) => {
                drop(supervisor.stdin.take());
                // Already failing; the launch error is the one worth reporting.
                let _ = supervisor.wait();
                Err(err)
            }
        }
    }

    fn wait_ready(
        &self,
        supervisor: &mut Child,
        port: u16,
        log_offset: u64,
    ) -> Result<(), LaunchError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let exited = supervisor
                .try_wait()
                .map_err(HarnessError::io("check on postgres"))?;
            if let Some(status) = exited {
                let tail = log_tail(&self.log_file, log_offset);
                if tail.contains("could not bind") || tail.contains("Address already in use") {
                    return Err(LaunchError::PortTaken);
                }
                return Err(LaunchError::Failed(HarnessError::StartFailed {
                    reason: format!("postgres exited ({status})"),
                    log: self.log_file.clone(),
                    log_tail: tail,
                }));
            }
            if read_postmaster_pid(&self.data_dir)
                .is_some_and(|pid_file| pid_file.ready && pid_file.port == port)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(LaunchError::Failed(HarnessError::StartFailed {
                    reason: format!("not ready after {} s", READY_TIMEOUT.as_secs()),
                    log: self.log_file.clone(),
                    log_tail: log_tail(&self.log_file, log_offset),
                }));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn sql_error(&self, context: &str, err: &sqlx::Error) -> HarnessError {
        HarnessError::Sql {
            context: context.to_owned(),
            reason: err.to_string().replace(&self.password, "***"),
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        // Nothing to report to from a destructor; the janitor still removes the directory.
        let _ = self.stop_server();
        if let Some(mut janitor) = self
            .janitor
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            drop(janitor.stdin.take());
            let _ = janitor.wait();
        }
    }
}

impl fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestCluster")
            .field("root", &self.root)
            .field("port", &self.port)
            .field("bindir", &self.bindir)
            .field("run_as", &self.run_as)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for TestDatabase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestDatabase")
            .field("name", &self.name)
            .field("owner", &self.owner)
            .field("url", &mask_password(&self.url))
            .field("admin_url", &mask_password(&self.admin_url))
            .finish()
    }
}

fn free_port() -> Result<u16, HarnessError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(HarnessError::io("find a free port"))?;
    let address = listener
        .local_addr()
        .map_err(HarnessError::io("find a free port"))?;
    Ok(address.port())
}

/// Runs as this process's user: root may delete what the server's user created.
fn spawn_janitor(root: &Path) -> Result<Child, HarnessError> {
    Command::new("/bin/sh")
        .args(["-c", JANITOR, "pg-harness-janitor"])
        .arg(root)
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(HarnessError::io("start the cleanup helper"))
}
