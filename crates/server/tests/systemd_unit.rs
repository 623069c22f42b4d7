//! The shipped unit `deploy/systemd/cognitive-memory-mcp.service` checked by systemd's own tools
//! (`systemd-analyze verify` silent, `systemd-analyze security` exposure at most 1.0), plus
//! self-tests of the real-systemd harness the daemon tests build on.
//!
//! `verify` needs the `ExecStart=` binary to exist, so it runs on a copy whose `ExecStart=`
//! points at the built binary; every other line, `User=cognitive-memory` included, is the
//! shipped one. systemd 252's `verify` does not look the user up (a nonexistent user passes
//! silently); the installer creates it.

#[path = "support/systemd.rs"]
mod systemd;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_cognitive-memory-mcp");
const UNIT_NAME: &str = "cognitive-memory-mcp.service";
const INSTALLED_EXEC_START: &str = "ExecStart=/usr/local/bin/cognitive-memory-mcp serve";
/// The highest `systemd-analyze security` exposure the unit may have.
const MAX_EXPOSURE: f64 = 1.0;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/systemd")
}

fn shipped_unit() -> String {
    fs::read_to_string(deploy_dir().join(UNIT_NAME)).expect("read the shipped unit")
}

/// The shipped unit with `ExecStart=` pointing at the built binary, in a directory of its own.
fn unit_copy(dir: &Path, unit: &str) -> PathBuf {
    let copy = unit.replace(INSTALLED_EXEC_START, &format!("ExecStart={BIN} serve"));
    let path = dir.join(UNIT_NAME);
    fs::write(&path, copy).unwrap();
    path
}

/// `systemd-analyze`, or why the test is skipped.
fn systemd_analyze(test: &str) -> Option<PathBuf> {
    let found = systemd::find_in_path("systemd-analyze");
    if found.is_none() {
        eprintln!("skipped: {test}: systemd-analyze is not installed (package systemd)");
    }
    found
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The directives the daemon's contract and the deployment rely on, as written.
#[test]
fn unit_states_the_contract() {
    let unit = shipped_unit();
    let lines: Vec<&str> = unit.lines().map(str::trim).collect();
    for expected in [
        "Type=notify",
        INSTALLED_EXEC_START,
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Environment=ENVIRONMENT=production",
        "Environment=COGMEM_CONFIG_ROOT=/etc/cognitive-memory-mcp",
        "User=cognitive-memory",
        "Group=cognitive-memory",
        "Restart=always",
        "RestartSec=10",
        "RestartPreventExitStatus=78",
        "WatchdogSec=60",
        "TimeoutStartSec=60",
        "TimeoutStopSec=30",
        "KillMode=mixed",
        "LimitCORE=0",
        "StandardOutput=journal",
        "StandardError=journal",
        "SyslogIdentifier=cognitive-memory-mcp",
        "LoadCredential=database-url:/etc/cognitive-memory-mcp/credentials/database-url",
        "LoadCredential=mcp-auth-token:/etc/cognitive-memory-mcp/credentials/mcp-auth-token",
        "ProtectSystem=strict",
        "IPAddressDeny=any",
        "IPAddressAllow=localhost",
        "WantedBy=multi-user.target",
    ] {
        assert!(
            lines.contains(&expected),
            "the unit lacks the line {expected:?}"
        );
    }
    for dependency in ["postgresql.service", "network-online.target"] {
        for kind in ["After=", "Wants="] {
            assert!(
                lines
                    .iter()
                    .any(|line| line.starts_with(kind) && line.contains(dependency)),
                "the unit lacks {kind}…{dependency}"
            );
        }
    }
    // Newer than systemd 252: silently ignored there (Type=notify-reload would even turn the unit
    // into Type=simple), or failing to parse and dropping the protection.
    for too_new in [
        "Type=notify-reload",
        "ImportCredential=",
        "OpenFile=",
        "RestartSteps=",
        "RestartMaxDelaySec=",
        "RestartMode=",
        "PrivatePIDs=",
        "PrivateTmp=disconnected",
        "ProtectHostname=private",
        "PrivateUsers=self",
    ] {
        assert!(
            !lines.iter().any(|line| line.starts_with(too_new)),
            "{too_new} is not understood by systemd 252"
        );
    }
    // Secrets never go into the unit itself.
    for secret_variable in ["DATABASE_URL", "MCP_AUTH_TOKEN"] {
        assert!(
            !unit.contains(&format!("{secret_variable}=")),
            "the unit sets {secret_variable}: use LoadCredential="
        );
    }
}

#[test]
fn systemd_analyze_verify_prints_nothing() {
    let Some(analyze) = systemd_analyze("systemd_analyze_verify_prints_nothing") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_copy(dir.path(), &shipped_unit());
    assert!(
        fs::read_to_string(&unit)
            .unwrap()
            .contains(&format!("ExecStart={BIN} serve")),
        "the copy must run the built binary"
    );
    let verify = |unit: &Path| {
        Command::new(&analyze)
            .arg("verify")
            .arg(unit)
            .env("SYSTEMD_LOG_COLOR", "0")
            .output()
            .unwrap()
    };

    let output = verify(&unit);
    let (stdout, stderr) = text(&output);
    assert!(
        output.status.success() && stdout.is_empty() && stderr.is_empty(),
        "systemd-analyze verify ({}):\n{stdout}{stderr}",
        output.status
    );

    // With the remote-database drop-in example in place.
    let drop_ins = dir.path().join(format!("{UNIT_NAME}.d"));
    fs::create_dir(&drop_ins).unwrap();
    fs::copy(
        deploy_dir().join("remote-database.conf"),
        drop_ins.join("remote-database.conf"),
    )
    .unwrap();
    let output = verify(&unit);
    let (stdout, stderr) = text(&output);
    assert!(
        output.status.success() && stdout.is_empty() && stderr.is_empty(),
        "systemd-analyze verify with remote-database.conf ({}):\n{stdout}{stderr}",
        output.status
    );
    fs::remove_dir_all(&drop_ins).unwrap();

    // The check can fail: verify exits 0 on warnings, so only its output tells.
    let broken = shipped_unit().replace("Type=notify\n", "Type=notify-reload\n");
    let broken_dir = tempfile::tempdir().unwrap();
    let output = verify(&unit_copy(broken_dir.path(), &broken));
    let (_, stderr) = text(&output);
    assert!(
        stderr.contains("notify-reload"),
        "verify should warn about Type=notify-reload on systemd 252 (or it no longer reads the unit): {stderr}"
    );
}

#[test]
fn systemd_analyze_security_exposure_is_at_most_1_0() {
    let Some(analyze) = systemd_analyze("systemd_analyze_security_exposure_is_at_most_1_0") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_copy(dir.path(), &shipped_unit());
    let output = Command::new(&analyze)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .env("SYSTEMD_COLORS", "0")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    let line = stdout
        .lines()
        .find(|line| line.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure line ({}):\n{stdout}{stderr}", output.status));
    // "→ Overall exposure level for cognitive-memory-mcp.service: 0.9 SAFE 😀" (`:-}` instead of
    // the emoji in the C locale, so split at the unit name, not at the last colon).
    let score: f64 = line
        .split_once(".service: ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("cannot parse the exposure from {line:?}"));
    eprintln!(
        "systemd-analyze security: exposure {score} ({})",
        line.trim()
    );
    let exposed: Vec<&str> = stdout
        .lines()
        .filter(|line| line.trim_start().starts_with('✗'))
        .collect();
    assert!(
        score <= MAX_EXPOSURE,
        "exposure {score} > {MAX_EXPOSURE}; settings that count:\n{}",
        exposed.join("\n")
    );
}

/// The harness itself: a transient Type=notify unit reaches its end with Result=success and its
/// output lands in the journal with the unit's identity.
#[test]
fn harness_runs_a_transient_notify_unit() {
    if !systemd::available_or_skip("harness_runs_a_transient_notify_unit") {
        return;
    }
    let work = systemd::Workdir::new();
    let run = work.run(
        r#"
systemd-run --user --wait --unit=harness-selftest --property=Type=notify \
    --property=SyslogIdentifier=harness-selftest \
    /bin/sh -c 'echo selftest-before-ready; systemd-notify --ready --status=ok; echo selftest-after-ready'
echo "result=$(unit_prop harness-selftest.service Result)"
logged() { unit_journal harness-selftest.service | grep -q '"MESSAGE":"selftest-after-ready"'; }
wait_until 10 "the unit's output in the journal" logged
unit_journal harness-selftest.service
"#,
        Duration::from_secs(60),
    );
    run.assert_success();
    assert!(run.stdout.contains("result=success"), "{run}");
    let entries = systemd::journal_entries(&run.stdout);
    let line = entries
        .iter()
        .find(|entry| systemd::field(entry, "MESSAGE") == "selftest-after-ready")
        .unwrap_or_else(|| panic!("no journal entry from the unit: {run}"));
    assert_eq!(
        systemd::field(line, "SYSLOG_IDENTIFIER"),
        "harness-selftest"
    );
    assert_eq!(systemd::unit_of(line), "harness-selftest.service");
}

/// The shipped unit's sandbox (everything but `User=`/`Group=`, which a user manager cannot
/// switch to) starts under the harness, with a shell stub in place of the daemon: no
/// 226/NAMESPACE, credentials arrive as 0400 files, the file system is read-only, and IP
/// traffic outside localhost is dropped. The daemon's own behaviour is in `systemd_daemon.rs`.
#[test]
fn harness_runs_the_units_sandbox_with_a_stub_daemon() {
    if !systemd::available_or_skip("harness_runs_the_units_sandbox_with_a_stub_daemon") {
        return;
    }
    let work = systemd::Workdir::new();
    let credentials = work.path().join("credentials");
    work.write(Path::new("credentials/database-url"), "stub-url", 0o600);
    work.write(Path::new("credentials/mcp-auth-token"), "stub-token", 0o600);
    let config_root = work.path().join("config-root");
    work.write(Path::new("config-root/config/config.yaml"), "{}\n", 0o644);
    let stub = work.write(
        Path::new("stub.sh"),
        r#"#!/bin/bash
echo "stub: credentials $(stat -c %a "$CREDENTIALS_DIRECTORY/database-url") $(cat "$CREDENTIALS_DIRECTORY/mcp-auth-token")"
test -r "$COGMEM_CONFIG_ROOT/config/config.yaml" && echo "stub: config readable"
touch "$COGMEM_CONFIG_ROOT/written" 2>/dev/null || echo "stub: config root read-only"
echo "stub: environment $ENVIRONMENT"
# Nothing listens on port 1: allowed traffic is refused at once, filtered traffic is dropped.
probe() {
    if timeout 3 bash -c "exec 3<>/dev/tcp/$1/1" 2>/dev/null; then echo open
    elif [ $? -eq 124 ]; then echo dropped
    else echo refused
    fi
}
echo "stub: localhost $(probe 127.0.0.1)"
own=$(cat "$STUB_OWN_ADDRESS_FILE" 2>/dev/null)
if [ -n "$own" ]; then echo "stub: own address $(probe "$own")"; else echo "stub: own address none"; fi
systemd-notify --ready --status="stub ready"
exec sleep infinity
"#,
        0o755,
    );
    let unit = shipped_unit()
        .lines()
        .filter(|line| !line.starts_with("User=") && !line.starts_with("Group="))
        .collect::<Vec<_>>()
        .join("\n")
        .replace(
            INSTALLED_EXEC_START,
            &format!("ExecStart={}", stub.display()),
        )
        .replace(
            "/etc/cognitive-memory-mcp/credentials/",
            &format!("{}/", credentials.display()),
        )
        .replace(
            "COGMEM_CONFIG_ROOT=/etc/cognitive-memory-mcp",
            &format!("COGMEM_CONFIG_ROOT={}", config_root.display()),
        );
    work.write_unit(UNIT_NAME, &unit);
    // systemd-notify is a child of the stub, not its main process; the real daemon notifies
    // from its main process, so only the stub needs this.
    work.write_unit(
        &format!("{UNIT_NAME}.d/stub.conf"),
        &format!(
            "[Service]\nNotifyAccess=all\nEnvironment=STUB_OWN_ADDRESS_FILE={}\n",
            work.path().join("own-address").display()
        ),
    );

    let run = work.run(
        r#"
# A non-loopback address of this machine: without the sandbox's IP filter, a connection to it
# would be refused at once; with it, the connection attempt is dropped.
hostname -I 2>/dev/null | awk '{print $1}' > "$HARNESS_WORKDIR/own-address" || true
systemctl --user start cognitive-memory-mcp.service
echo "state=$(unit_prop cognitive-memory-mcp.service ActiveState) status=$(unit_prop cognitive-memory-mcp.service StatusText)"
probed() { unit_journal cognitive-memory-mcp.service | grep -q '"MESSAGE":"stub: own address'; }
wait_until 10 "the stub's output in the journal" probed
systemctl --user stop cognitive-memory-mcp.service
echo "result=$(unit_prop cognitive-memory-mcp.service Result)"
unit_journal cognitive-memory-mcp.service
"#,
        Duration::from_secs(90),
    );
    run.assert_success();
    assert!(
        run.stdout.contains("state=active status=stub ready"),
        "{run}"
    );
    assert!(run.stdout.contains("result=success"), "{run}");
    let messages: Vec<String> = systemd::journal_entries(&run.stdout)
        .iter()
        .map(|entry| systemd::field(entry, "MESSAGE").to_owned())
        .collect();
    for expected in [
        "stub: credentials 400 stub-token",
        "stub: config readable",
        "stub: config root read-only",
        "stub: environment production",
        "stub: localhost refused",
    ] {
        assert!(
            messages.iter().any(|m| m == expected),
            "missing {expected:?} in the journal: {messages:#?}"
        );
    }
    let own = messages
        .iter()
        .find(|m| m.starts_with("stub: own address"))
        .unwrap_or_else(|| panic!("no own-address probe in the journal: {messages:#?}"));
    eprintln!("{own}");
    assert!(
        own == "stub: own address dropped" || own == "stub: own address none",
        "IPAddressDeny=any should drop traffic to non-loopback addresses: {own}"
    );
}

/// The backup service and its timer: `systemd-analyze verify` silent for both (on a copy whose
/// `ExecStart=` runs the built binary), the service's exposure at most 1.5, and the timer daily,
/// persistent and randomized.
#[test]
fn backup_units_verify_silently_and_score_at_most_1_5() {
    const BACKUP: &str = "cognitive-memory-backup.service";
    const TIMER: &str = "cognitive-memory-backup.timer";
    const MAX_BACKUP_EXPOSURE: f64 = 1.5;
    let service = fs::read_to_string(deploy_dir().join(BACKUP)).unwrap();
    let timer = fs::read_to_string(deploy_dir().join(TIMER)).unwrap();
    let timer_lines: Vec<&str> = timer.lines().map(str::trim).collect();
    for line in [
        "OnCalendar=daily",
        "Persistent=true",
        "Unit=cognitive-memory-backup.service",
        "WantedBy=timers.target",
    ] {
        assert!(timer_lines.contains(&line), "the timer lacks {line}");
    }
    assert!(
        timer_lines
            .iter()
            .any(|l| l.starts_with("RandomizedDelaySec="))
    );
    let service_lines: Vec<&str> = service.lines().map(str::trim).collect();
    for line in [
        "Type=oneshot",
        "User=cognitive-memory",
        "Environment=ENVIRONMENT=production",
        "LoadCredential=database-url:/etc/cognitive-memory-mcp/credentials/database-url",
        "LoadCredential=backup-database-url:/etc/cognitive-memory-mcp/credentials/backup-database-url",
    ] {
        assert!(
            service_lines.contains(&line),
            "the backup service lacks {line}"
        );
    }
    assert!(
        !service.contains("DATABASE_URL="),
        "the password must come as a credential"
    );

    let Some(analyze) = systemd_analyze("backup_units_verify_silently_and_score_at_most_1_5")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let exec_start = "ExecStart=/usr/local/bin/cognitive-memory-mcp backup";
    assert!(service.contains(exec_start));
    fs::write(
        dir.path().join(BACKUP),
        service.replace(exec_start, &format!("ExecStart={BIN} backup")),
    )
    .unwrap();
    fs::write(dir.path().join(TIMER), &timer).unwrap();
    let output = Command::new(&analyze)
        .arg("verify")
        .arg(dir.path().join(BACKUP))
        .arg(dir.path().join(TIMER))
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(
        output.status.success() && stdout.is_empty() && stderr.is_empty(),
        "systemd-analyze verify ({}):\n{stdout}{stderr}",
        output.status
    );
    let output = Command::new(&analyze)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(dir.path().join(BACKUP))
        .env("SYSTEMD_COLORS", "0")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    let score: f64 = stdout
        .lines()
        .find(|line| line.contains("Overall exposure level"))
        .and_then(|line| line.split_once(".service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no exposure ({}):\n{stdout}{stderr}", output.status));
    eprintln!("backup service exposure {score}");
    assert!(
        score <= MAX_BACKUP_EXPOSURE,
        "exposure {score} > {MAX_BACKUP_EXPOSURE}:\n{stdout}"
    );
}
