//! The systemd sink against a real notify socket.
//!
//! sd-notify reads `$NOTIFY_SOCKET`/`$WATCHDOG_USEC` from the environment and this process must not
//! change its own environment, so each test re-runs this binary as a child (filtered to the ignored
//! [`child`] test) with those variables set, and asserts the datagrams a bound `UnixDatagram` received.

use std::env;
use std::io::ErrorKind;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tokio::sync::watch;
use watchdog::{HeartbeatOptions, Notifier, NotifyError};

/// Selects what [`child`] does; unset in a normal test run, where [`child`] does nothing.
const CHILD_MODE: &str = "WATCHDOG_TEST_CHILD_MODE";

/// Runs `child` in a fresh process with `NOTIFY_SOCKET` pointing at `socket_path` plus `envs`, and
/// checks that it passed.
fn run_child(mode: &str, socket_path: &Path, envs: &[(&str, &str)]) {
    let output = Command::new(env::current_exe().expect("path of this test binary"))
        .args(["child", "--exact", "--ignored", "--test-threads=1"])
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .env("NOTIFY_SOCKET", socket_path)
        .env(CHILD_MODE, mode)
        .envs(envs.iter().copied())
        .output()
        .expect("spawn the child test process");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "child {mode} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Binds a notify socket in a fresh directory, runs `child` against it and returns what it sent.
fn notifications(mode: &str, envs: &[(&str, &str)]) -> Vec<String> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("notify");
    let receiver = UnixDatagram::bind(&path).expect("bind the notify socket");
    run_child(mode, &path, envs);

    // The child has exited, so everything it sent is already queued on the socket.
    receiver.set_nonblocking(true).expect("non-blocking socket");
    let mut datagrams = Vec::new();
    let mut buf = [0; 4096];
    loop {
        match receiver.recv(&mut buf) {
            Ok(len) => datagrams.push(String::from_utf8(buf[..len].to_vec()).expect("UTF-8")),
            Err(error) if error.kind() == ErrorKind::WouldBlock => return datagrams,
            Err(error) => panic!("receiving from the notify socket: {error}"),
        }
    }
}

#[test]
fn systemd_sink_sends_each_message_as_one_datagram() {
    let datagrams = notifications("messages", &[]);
    let [ready, status, extend, reloading, watchdog, stopping] = &datagrams[..] else {
        panic!("expected 6 datagrams, got {datagrams:?}");
    };
    assert_eq!(ready, "READY=1\nSTATUS=up and running\n");
    assert_eq!(status, "STATUS=draining\n");
    assert_eq!(extend, "EXTEND_TIMEOUT_USEC=300000000\n");
    let usec = reloading
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .and_then(|rest| rest.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("unexpected reload datagram {reloading:?}"));
    assert!(usec.parse::<u64>().expect("integer microseconds") > 0);
    assert_eq!(watchdog, "WATCHDOG=1\n");
    assert_eq!(stopping, "STOPPING=1\n");
}

#[test]
fn watchdog_interval_is_half_of_watchdog_usec() {
    let datagrams = notifications("interval", &[("WATCHDOG_USEC", "4000000")]);
    assert_eq!(datagrams, ["STATUS=Some(2s)\n"]);
}

#[test]
fn watchdog_interval_is_none_without_a_usable_watchdog() {
    assert_eq!(notifications("interval", &[]), ["STATUS=None\n"]);
    assert_eq!(
        notifications("interval", &[("WATCHDOG_USEC", "0")]),
        ["STATUS=None\n"]
    );
    // PID 1 is never the child test process: the watchdog is meant for someone else.
    assert_eq!(
        notifications(
            "interval",
            &[("WATCHDOG_USEC", "4000000"), ("WATCHDOG_PID", "1")]
        ),
        ["STATUS=None\n"]
    );
}

#[test]
fn heartbeat_pets_a_real_socket_between_ready_and_stopping() {
    let datagrams = notifications("heartbeat", &[("WATCHDOG_USEC", "100000")]);
    let (first, rest) = datagrams.split_first().expect("some datagrams");
    let (last, pets) = rest.split_last().expect("at least two datagrams");
    assert_eq!(first, "READY=1\nSTATUS=serving\n");
    assert_eq!(last, "STOPPING=1\n");
    assert!(pets.len() >= 2, "{datagrams:?}");
    assert!(
        pets.iter().all(|pet| pet == "WATCHDOG=1\n"),
        "{datagrams:?}"
    );
}

#[test]
fn sending_to_a_missing_socket_is_a_send_error() {
    let dir = tempfile::tempdir().expect("temporary directory");
    run_child("unreachable", &dir.path().join("missing"), &[]);
}

/// The child half of the tests above; does nothing unless one of them runs it.
#[test]
#[ignore = "runs only as a child process of the other tests in this file"]
fn child() {
    let Ok(mode) = env::var(CHILD_MODE) else {
        eprintln!("{CHILD_MODE} is unset: nothing to do outside the systemd_sink tests");
        return;
    };
    match mode.as_str() {
        "messages" => send_every_message(),
        "interval" => Notifier::systemd()
            .status(&format!("{:?}", watchdog::watchdog_interval()))
            .expect("send STATUS"),
        "heartbeat" => run_heartbeat(),
        "unreachable" => {
            let sent = Notifier::systemd().watchdog();
            assert!(matches!(sent, Err(NotifyError::Send(_))), "{sent:?}");
        }
        other => panic!("unknown {CHILD_MODE} {other:?}"),
    }
}

fn send_every_message() {
    let disabled = Notifier::disabled();
    disabled.ready("must not arrive").expect("disabled sink");
    disabled.stopping().expect("disabled sink");

    let notifier = Notifier::systemd();
    notifier.ready("up\nand running").expect("send READY");
    notifier.status("draining").expect("send STATUS");
    notifier
        .extend_timeout(Duration::from_secs(3600))
        .expect("send EXTEND_TIMEOUT_USEC");
    notifier.reloading().expect("send RELOADING");
    notifier.watchdog().expect("send WATCHDOG");
    notifier.stopping().expect("send STOPPING");
}

fn run_heartbeat() {
    let interval = watchdog::watchdog_interval().expect("WATCHDOG_USEC is set");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let notifier = Notifier::systemd();
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(watchdog::heartbeat(
            notifier.clone(),
            HeartbeatOptions::new(interval),
            || async { true },
            |outcome| {
                assert!(
                    matches!(outcome, watchdog::BeatOutcome::Petted),
                    "{outcome:?}"
                )
            },
            stopped,
        ));
        notifier.ready("serving").expect("send READY");
        tokio::time::sleep(interval * 3).await;
        stop.send(true).expect("the heartbeat still listens");
        task.await.expect("the heartbeat does not panic");
        notifier.stopping().expect("send STOPPING");
    });
}
