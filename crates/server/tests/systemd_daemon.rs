//! The daemon under a real systemd 252 user manager and journald (`support/systemd-harness.sh`),
//! with its own PostgreSQL database: the shipped unit reaches active, restarts after a crash, is
//! killed by the watchdog when it stalls, fails for good on a configuration error, survives a
//! database outage by exiting 75 and restarting, reloads on SIGHUP, stops with Result=success,
//! takes its secrets from LoadCredential= and logs structured entries without them.
//!
//! The unit under test is the shipped `deploy/systemd/cognitive-memory-mcp.service` with only
//! what a test environment must change:
//! - no `User=`/`Group=`: a user manager cannot switch users (the system unit's `User=` line is
//!   checked by `systemd_unit.rs` with `systemd-analyze`);
//! - `ExecStart=` runs the built binary with `--config-root` at a copy of `config/config.yaml`,
//!   `COGMEM_CONFIG_ROOT` and the `LoadCredential=` sources point into the test's workdir;
//! - a drop-in sets `ENVIRONMENT=test`, a free HTTP port, `RestartSec=1` and `WatchdogSec=4`.
//!
//! The sandbox, `IPAddressDeny=any` + `IPAddressAllow=localhost` included, stays as shipped:
//! IP filtering works under the user manager here (cgroup BPF, as root), and the test cluster
//! listens on 127.0.0.1.

#[path = "support/systemd.rs"]
mod systemd;

use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::time::Duration;

use config_core::Environment;
use pg_harness::{TestCluster, TestDatabase};
use systemd::{ScenarioOutput, Workdir, field, journal_entries};

const BIN: &str = env!("CARGO_BIN_EXE_cognitive-memory-mcp");
const UNIT: &str = "cognitive-memory-mcp.service";
const TOKEN: &str = "systemd-test-token-0123456789abcdef";
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(120);

/// One daemon under test: its workdir (units, configuration root, credential sources), its
/// database and its HTTP port.
struct Daemon {
    work: Workdir,
    database_url: String,
    port: u16,
}

impl Daemon {
    /// A unit for `database_url`, with `extra` appended to the test drop-in's `[Service]`.
    fn new(database_url: &str, extra: &str) -> Daemon {
        let work = Workdir::new();
        let port = free_port();
        let config_root = work.path().join("config-root");
        let repo_config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/config.yaml");
        let config = fs::read_to_string(repo_config).unwrap();
        work.write(Path::new("config-root/config/config.yaml"), &config, 0o644);
        let credentials = work.path().join("credentials");
        work.write(Path::new("credentials/database-url"), database_url, 0o600);
        work.write(Path::new("credentials/mcp-auth-token"), TOKEN, 0o600);

        let binary = work.install_binary(Path::new(BIN));
        work.write_unit(UNIT, &test_unit(&binary, &config_root, &credentials));
        work.write_unit(
            &format!("{UNIT}.d/test.conf"),
            &format!(
                "[Service]\n\
                 Environment=ENVIRONMENT=test\n\
                 Environment=COGMEM__SERVER__HTTP__BIND=127.0.0.1:{port}\n\
                 RestartSec=1\n\
                 WatchdogSec=4\n\
                 {extra}\n"
            ),
        );
        Daemon {
            work,
            database_url: database_url.to_owned(),
            port,
        }
    }

    /// Runs `scenario` after a prelude defining `$U`, `$PORT`, `show PROPERTY` (prints
    /// `PROPERTY=value`), `http_get PATH` and `dump_journal` (the unit's journal as JSON lines).
    fn run(&self, scenario: &str) -> ScenarioOutput {
        let prelude = format!(
            r#"
U={UNIT}
PORT={port}
show() {{ echo "$1=$(unit_prop "$U" "$1")"; }}
http_get() {{
    exec 3<>"/dev/tcp/127.0.0.1/$PORT" || return 1
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$1" >&3
    timeout 5 cat <&3
    exec 3<&-
}}
dump_journal() {{ unit_journal "$U"; }}
in_journal() {{ unit_journal "$U" | grep -q -- "$1"; }}
"#,
            port = self.port
        );
        self.work
            .run(&format!("{prelude}\n{scenario}"), SCENARIO_TIMEOUT)
    }

    /// The database password and the token: neither may appear in any output.
    fn secrets(&self) -> Vec<String> {
        let password = self
            .database_url
            .split_once("://")
            .and_then(|(_, rest)| rest.split_once('@'))
            .and_then(|(user_info, _)| user_info.split_once(':'))
            .map(|(_, password)| password.to_owned())
            .expect("a password in the database URL");
        vec![password, TOKEN.to_owned()]
    }
}

/// The shipped unit, changed only where a test under a user manager must differ.
fn test_unit(binary: &Path, config_root: &Path, credentials: &Path) -> String {
    let shipped = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../deploy/systemd")
            .join(UNIT),
    )
    .unwrap();
    let exec_start = "ExecStart=/usr/local/bin/cognitive-memory-mcp serve";
    assert!(
        shipped.contains(exec_start),
        "the shipped ExecStart= changed"
    );
    shipped
        .lines()
        .filter(|line| !line.starts_with("User=") && !line.starts_with("Group="))
        .collect::<Vec<_>>()
        .join("\n")
        .replace(
            exec_start,
            &format!(
                "ExecStart={} --config-root {} serve",
                binary.display(),
                config_root.display()
            ),
        )
        .replace(
            "COGMEM_CONFIG_ROOT=/etc/cognitive-memory-mcp",
            &format!("COGMEM_CONFIG_ROOT={}", config_root.display()),
        )
        .replace(
            "/etc/cognitive-memory-mcp/credentials/",
            &format!("{}/", credentials.display()),
        )
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh database of the shared test cluster, stamped for `test` and migrated.
fn prepared_database() -> TestDatabase {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let database = TestCluster::shared().fresh_database().await.unwrap();
        let pool = sqlx::PgPool::connect(&database.url).await.unwrap();
        db::stamp(&pool, Environment::Test, "tests").await.unwrap();
        db::migrate(&pool).await.unwrap();
        pool.close().await;
        database
    })
}

/// The backup role of `database` (`backup.database_url`), as docs/tenancy.md has the operator
/// create it.
fn backup_role(database: &TestDatabase) -> String {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(TestCluster::shared().backup_role(database))
        .unwrap()
}

/// `NAME=value` lines printed by `show`.
fn prop<'a>(run: &'a ScenarioOutput, name: &str) -> Vec<&'a str> {
    let prefix = format!("{name}=");
    run.stdout
        .lines()
        .filter_map(|line| line.strip_prefix(prefix.as_str()))
        .collect()
}

#[track_caller]
fn assert_no_secret(daemon: &Daemon, run: &ScenarioOutput) {
    for secret in daemon.secrets() {
        assert!(
            !run.stdout.contains(&secret) && !run.stderr.contains(&secret),
            "a secret appeared in the journal or the scenario's output"
        );
    }
}

#[test]
fn daemon_becomes_active_serves_health_and_stops_with_success() {
    if !systemd::available_or_skip("daemon_becomes_active_serves_health_and_stops_with_success") {
        return;
    }
    let database = prepared_database();
    let daemon = Daemon::new(&database.url, "");
    let run = daemon.run(
        r#"
systemctl --user start "$U"
show ActiveState
show SubState
show StatusText
echo "health=$(http_get /health | head -n 1 | tr -d '\r')"
echo "ready=$(http_get /ready | head -n 1 | tr -d '\r')"
systemctl --user stop "$U"
show ActiveState
show Result
show ExecMainStatus
show NRestarts
"#,
    );
    run.assert_success();
    assert_eq!(prop(&run, "ActiveState"), ["active", "inactive"], "{run}");
    assert_eq!(prop(&run, "SubState"), ["running"], "{run}");
    assert!(
        prop(&run, "StatusText")
            .first()
            .is_some_and(|s| !s.is_empty()),
        "READY=1 comes with a STATUS= line: {run}"
    );
    assert!(prop(&run, "health")[0].contains(" 200"), "{run}");
    assert!(prop(&run, "ready")[0].contains(" 200"), "{run}");
    assert_eq!(prop(&run, "Result"), ["success"], "{run}");
    assert_eq!(prop(&run, "ExecMainStatus"), ["0"], "{run}");
    assert_eq!(prop(&run, "NRestarts"), ["0"], "{run}");
    assert_no_secret(&daemon, &run);
}

/// No DATABASE_URL or MCP_AUTH_TOKEN anywhere in the unit or its environment: the daemon can only
/// have connected through the credentials. Its journal entries are structured and secret-free.
#[test]
fn credentials_are_used_and_the_journal_is_structured_without_secrets() {
    if !systemd::available_or_skip(
        "credentials_are_used_and_the_journal_is_structured_without_secrets",
    ) {
        return;
    }
    let database = prepared_database();
    let daemon = Daemon::new(&database.url, "");
    let unit_text = fs::read_to_string(daemon.work.units().join(UNIT)).unwrap();
    assert!(!unit_text.contains("DATABASE_URL") && !unit_text.contains("MCP_AUTH_TOKEN"));
    let run = daemon.run(
        r#"
systemctl --user start "$U"
show ActiveState
systemctl --user stop "$U"
stopped() { in_journal '"UNIT_RESULT"' || in_journal 'Deactivated successfully' || in_journal 'Stopped '; }
wait_until 10 "the manager's stop message in the journal" stopped
dump_journal
"#,
    );
    run.assert_success();
    assert_eq!(prop(&run, "ActiveState"), ["active"], "{run}");
    let entries = journal_entries(&run.stdout);
    let daemon_entries: Vec<_> = entries
        .iter()
        .filter(|entry| {
            systemd::unit_of(entry) == UNIT
                && field(entry, "SYSLOG_IDENTIFIER") == "cognitive-memory-mcp"
        })
        .collect();
    assert!(
        !daemon_entries.is_empty(),
        "no journal entries from the daemon: {run}"
    );
    assert!(
        daemon_entries
            .iter()
            .all(|entry| field(entry, "PRIORITY").parse::<u8>().is_ok_and(|p| p <= 7)),
        "every entry has a PRIORITY: {run}"
    );
    assert!(
        daemon_entries
            .iter()
            .any(|entry| field(entry, "ENVIRONMENT") == "test"),
        "the daemon's entries carry ENVIRONMENT=test: {run}"
    );
    assert_no_secret(&daemon, &run);
}

#[test]
fn a_killed_daemon_is_restarted() {
    if !systemd::available_or_skip("a_killed_daemon_is_restarted") {
        return;
    }
    let database = prepared_database();
    let daemon = Daemon::new(&database.url, "");
    let run = daemon.run(
        r#"
systemctl --user start "$U"
first=$(unit_prop "$U" MainPID)
kill -KILL "$first"
restarted() {
    [ "$(unit_prop "$U" NRestarts)" -ge 1 ] && [ "$(unit_prop "$U" ActiveState)" = active ] &&
        [ "$(unit_prop "$U" SubState)" = running ] && [ "$(unit_prop "$U" MainPID)" != "$first" ]
}
wait_until 60 "the daemon to be restarted and ready again" restarted
show NRestarts
show ActiveState
echo "health=$(http_get /health | head -n 1 | tr -d '\r')"
systemctl --user stop "$U"
show Result
"#,
    );
    run.assert_success();
    assert_eq!(prop(&run, "NRestarts"), ["1"], "{run}");
    assert_eq!(prop(&run, "ActiveState"), ["active"], "{run}");
    assert!(prop(&run, "health")[0].contains(" 200"), "{run}");
    assert_eq!(prop(&run, "Result"), ["success"], "{run}");
}

/// The stall hook blocks every runtime worker 1 s after READY=1: the liveness probe can no longer
/// pass, the pets stop, and systemd kills the daemon (SIGABRT) after WatchdogSec=4.
#[test]
fn a_stalled_daemon_is_killed_by_the_watchdog_and_restarted() {
    if !systemd::available_or_skip("a_stalled_daemon_is_killed_by_the_watchdog_and_restarted") {
        return;
    }
    let database = prepared_database();
    let daemon = Daemon::new(&database.url, "Environment=COGMEM_TEST_STALL_AFTER_MS=1000");
    let run = daemon.run(
        r#"
systemctl --user start "$U"
show ActiveState
watchdog_fired() { in_journal '"UNIT_RESULT":"watchdog"'; }
wait_until 60 "the watchdog to fire (UNIT_RESULT=watchdog in the journal)" watchdog_fired
restarted() { [ "$(unit_prop "$U" NRestarts)" -ge 1 ]; }
wait_until 30 "a restart after the watchdog kill" restarted
echo "restarted=yes"
systemctl --user stop "$U"
dump_journal
"#,
    );
    run.assert_success();
    assert_eq!(prop(&run, "ActiveState")[0], "active", "{run}");
    assert_eq!(prop(&run, "restarted"), ["yes"], "{run}");
    let entries = journal_entries(&run.stdout);
    assert!(
        entries
            .iter()
            .any(|entry| field(entry, "MESSAGE").contains("Watchdog timeout")),
        "the manager logs the watchdog timeout: {run}"
    );
    assert!(
        entries
            .iter()
            .any(|entry| field(entry, "MESSAGE").contains("with signal SIGABRT")),
        "a watchdog kill is SIGABRT: {run}"
    );
    // LimitCORE=0: the aborted process leaves no core (it would hold the secrets).
    let exit = entries
        .iter()
        .find(|entry| field(entry, "EXIT_STATUS") == "6")
        .unwrap_or_else(|| panic!("no exit status 6 (ABRT) in the journal: {run}"));
    assert_eq!(field(exit, "EXIT_CODE"), "killed", "{run}");
}

/// A configuration error exits 78, which `RestartPreventExitStatus=78` turns into a failed unit
/// with no restarts (with `Restart=always` alone it would restart forever).
#[test]
fn a_configuration_error_fails_the_unit_without_restarts() {
    if !systemd::available_or_skip("a_configuration_error_fails_the_unit_without_restarts") {
        return;
    }
    // The configuration is rejected before any connection: no database needed.
    let daemon = Daemon::new(
        "postgres://nobody:unused-password@127.0.0.1:1/none?sslmode=disable",
        "Environment=COGMEM__LOGGING__LEVEL=loud",
    );
    let run = daemon.run(
        r#"
if systemctl --user start "$U"; then echo "start=succeeded"; else echo "start=failed"; fi
failed() { [ "$(unit_prop "$U" ActiveState)" = failed ]; }
wait_until 30 "the unit to fail" failed
# RestartSec=1: a restart, if one were coming, would have happened by now.
sleep 3
show ActiveState
show Result
show ExecMainStatus
show NRestarts
logged() { in_journal 'logging.level'; }
wait_until 10 "the configuration error in the journal" logged
dump_journal
"#,
    );
    run.assert_success();
    assert_eq!(prop(&run, "start"), ["failed"], "{run}");
    assert_eq!(prop(&run, "ActiveState"), ["failed"], "{run}");
    assert_eq!(prop(&run, "Result"), ["exit-code"], "{run}");
    assert_eq!(prop(&run, "ExecMainStatus"), ["78"], "{run}");
    assert_eq!(prop(&run, "NRestarts"), ["0"], "{run}");
    assert_no_secret(&daemon, &run);
}

/// A database that stays unreachable for the whole connect wait: exit 75, which is not in
/// `RestartPreventExitStatus=`, so the unit keeps retrying.
#[test]
fn an_unreachable_database_exits_75_and_the_unit_retries() {
    if !systemd::available_or_skip("an_unreachable_database_exits_75_and_the_unit_retries") {
        return;
    }
    let closed = free_port();
    let daemon = Daemon::new(
        &format!("postgres://nobody:unreachable-password@127.0.0.1:{closed}/none?sslmode=disable"),
        "Environment=COGMEM__DATABASE__CONNECT_WAIT_SECS=2",
    );
    let run = daemon.run(
        r#"
systemctl --user start --no-block "$U"
restarted() { [ "$(unit_prop "$U" NRestarts)" -ge 1 ]; }
wait_until 60 "a restart after exit 75" restarted
exited_75() { in_journal '"EXIT_STATUS":"75"'; }
wait_until 10 "status 75 in the journal" exited_75
echo "exit75=yes"
systemctl --user stop "$U"
dump_journal
"#,
    );
    run.assert_success();
    assert_eq!(prop(&run, "exit75"), ["yes"], "{run}");
    assert_no_secret(&daemon, &run);
}

/// `systemctl reload` sends SIGHUP; the daemon answers RELOADING=1 … READY=1 and keeps running.
#[test]
fn reload_keeps_the_daemon_running() {
    if !systemd::available_or_skip("reload_keeps_the_daemon_running") {
        return;
    }
    let database = prepared_database();
    let daemon = Daemon::new(&database.url, "");
    let run = daemon.run(
        r#"
systemctl --user start "$U"
before=$(unit_prop "$U" MainPID)
systemctl --user reload "$U"
active() { [ "$(unit_prop "$U" ActiveState)" = active ]; }
wait_until 30 "the daemon to be active after the reload" active
after=$(unit_prop "$U" MainPID)
[ "$before" = "$after" ] && echo "same-pid=yes"
show ActiveState
echo "health=$(http_get /health | head -n 1 | tr -d '\r')"
reloaded() { in_journal 'Reloaded '; }
wait_until 10 "the manager's reload message" reloaded
systemctl --user stop "$U"
show Result
"#,
    );
    run.assert_success();
    assert_eq!(prop(&run, "same-pid"), ["yes"], "{run}");
    assert_eq!(prop(&run, "ActiveState"), ["active"], "{run}");
    assert!(prop(&run, "health")[0].contains(" 200"), "{run}");
    assert_eq!(prop(&run, "Result"), ["success"], "{run}");
}

const BACKUP_UNIT: &str = "cognitive-memory-backup.service";
const BACKUP_TIMER: &str = "cognitive-memory-backup.timer";

/// The shipped backup service and timer run under the harness: the service once by hand (its
/// backup lands in the state directory, mode 0600, and the journal says so), once broken (the
/// failure is the unit's Result and in the journal), and the timer is scheduled.
#[test]
fn backup_service_runs_once_and_the_journal_shows_its_result() {
    if !systemd::available_or_skip("backup_service_runs_once_and_the_journal_shows_its_result") {
        return;
    }
    let database = prepared_database();
    let work = Workdir::new();
    let config_root = work.path().join("config-root");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let config = fs::read_to_string(repo.join("config/config.yaml")).unwrap();
    work.write(Path::new("config-root/config/config.yaml"), &config, 0o644);
    let credentials = work.path().join("credentials");
    work.write(Path::new("credentials/database-url"), &database.url, 0o600);
    work.write(Path::new("credentials/mcp-auth-token"), TOKEN, 0o600);
    let backup_url = backup_role(&database);
    work.write(
        Path::new("credentials/backup-database-url"),
        &backup_url,
        0o600,
    );
    let binary = work.install_binary(Path::new(BIN));
    let shipped = fs::read_to_string(repo.join("deploy/systemd").join(BACKUP_UNIT)).unwrap();
    let exec_start = "ExecStart=/usr/local/bin/cognitive-memory-mcp backup";
    assert!(
        shipped.contains(exec_start),
        "the shipped ExecStart= changed"
    );
    let unit = shipped
        .lines()
        .filter(|line| !line.starts_with("User=") && !line.starts_with("Group="))
        .collect::<Vec<_>>()
        .join("\n")
        .replace(
            exec_start,
            &format!(
                "ExecStart={} --config-root {} backup",
                binary.display(),
                config_root.display()
            ),
        )
        .replace(
            "COGMEM_CONFIG_ROOT=/etc/cognitive-memory-mcp",
            &format!("COGMEM_CONFIG_ROOT={}", config_root.display()),
        )
        .replace(
            "/etc/cognitive-memory-mcp/credentials/",
            &format!("{}/", credentials.display()),
        );
    work.write_unit(BACKUP_UNIT, &unit);
    work.write_unit(
        &format!("{BACKUP_UNIT}.d/test.conf"),
        "[Service]\nEnvironment=ENVIRONMENT=test\n",
    );
    let timer = fs::read_to_string(repo.join("deploy/systemd").join(BACKUP_TIMER)).unwrap();
    work.write_unit(BACKUP_TIMER, &timer);

    let run = work.run(
        &format!(
            r#"
U={BACKUP_UNIT}
show() {{ echo "$1=$(unit_prop "$U" "$1")"; }}
systemctl --user start "$U" || true
show Result
show ExecMainStatus
# %S of a user manager: ~/.config on systemd 252, ~/.local/state on newer ones.
for f in "$HOME"/.config/cognitive-memory-mcp/backups/* "$HOME"/.local/state/cognitive-memory-mcp/backups/*; do
    [ -e "$f" ] && echo "file=$(stat -c %a "$f") $(basename "$f")"
done
mkdir -p "$HARNESS_UNIT_DIR/$U.d"
printf '[Service]\nEnvironment=COGMEM__BACKUP__PG_BIN_DIR=/nonexistent\n' > "$HARNESS_UNIT_DIR/$U.d/broken.conf"
systemctl --user daemon-reload
systemctl --user start "$U" || echo "second start failed"
show Result
show ExecMainStatus
systemctl --user start {BACKUP_TIMER}
echo "timer=$(unit_prop {BACKUP_TIMER} ActiveState)"
logged() {{ unit_journal "$U" | grep -q 'pg_bin_dir'; }}
wait_until 10 "the failed run in the journal" logged
unit_journal "$U"
"#
        ),
        SCENARIO_TIMEOUT,
    );
    run.assert_success();
    assert_eq!(prop(&run, "Result"), ["success", "exit-code"], "{run}");
    assert_eq!(prop(&run, "ExecMainStatus"), ["0", "78"], "{run}");
    assert!(run.stdout.contains("second start failed"), "{run}");
    assert_eq!(prop(&run, "timer"), ["active"], "{run}");
    let files = prop(&run, "file");
    assert!(
        files
            .iter()
            .any(|f| f.starts_with("600 cognitive-memory-test-") && f.ends_with(".dump")),
        "the backup is in the state directory with mode 0600: {files:?}\n{run}"
    );
    assert!(
        files.iter().any(|f| f.ends_with(".manifest.json")),
        "{files:?}"
    );
    let messages: Vec<String> = journal_entries(&run.stdout)
        .iter()
        .filter(|entry| field(entry, "SYSLOG_IDENTIFIER") == "cognitive-memory-backup")
        .map(|entry| field(entry, "MESSAGE").to_owned())
        .collect();
    assert!(
        messages.iter().any(|m| m.contains("written and verified")),
        "the good run is in the journal: {messages:#?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("error:") && m.contains("backup.pg_bin_dir")),
        "the failed run is in the journal: {messages:#?}"
    );
    let password = database
        .url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(user_info, _)| user_info.split_once(':'))
        .map(|(_, password)| password.to_owned())
        .unwrap();
    assert!(!run.stdout.contains(&password) && !run.stderr.contains(&password));
}
