//! `cognitive-memory-mcp health [--ready] [--url]` against the real daemon: exit 0 and one line
//! while it is healthy/ready, exit 1 and one line when the database is gone (503) or nothing
//! listens; the default address is `server.http.bind` as configured (what the container image's
//! HEALTHCHECK relies on).

#[path = "support/daemon.rs"]
mod daemon;

use std::process::{Command, Output};
use std::time::Duration;

use config_core::Environment;
use daemon::{BIN, Launch};
use pg_harness::TestCluster;

fn health(args: &[&str], bind: Option<&str>) -> Output {
    let root = daemon::config_root();
    let mut command = Command::new(BIN);
    command
        .env_clear()
        .env("ENVIRONMENT", "test")
        .arg("--config-root")
        .arg(root.path())
        .arg("health")
        .args(args);
    if let Some(bind) = bind {
        command.env("COGMEM__SERVER__HTTP__BIND", bind);
    }
    command.output().unwrap()
}

#[track_caller]
fn one_line(output: &Output, code: i32, starts: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(output.status.code(), Some(code), "{stdout}");
    assert_eq!(stdout.lines().count(), 1, "{stdout:?}");
    assert!(stdout.starts_with(starts), "{stdout}");
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread")]
async fn health_answers_0_while_ready_and_1_when_degraded_or_unreachable() {
    // A private cluster: it is stopped below.
    let cluster = TestCluster::start().unwrap();
    let database = cluster.fresh_database().await.unwrap();
    let pool = sqlx::PgPool::connect(&database.url).await.unwrap();
    db::stamp(&pool, Environment::Test, "tests").await.unwrap();
    pool.close().await;
    let mut daemon = Launch::http(&database.url).spawn();
    let base = daemon.ready();
    let address = base.strip_prefix("http://").unwrap().to_owned();
    // 0.0.0.0 is asked on loopback, like the image's bind.
    let unspecified = address.replacen("127.0.0.1", "0.0.0.0", 1);

    let line = one_line(&health(&[], Some(&unspecified)), 0, "healthy: ");
    assert!(line.contains(&format!("{base}/health 200")), "{line}");
    let line = one_line(&health(&["--ready"], Some(&address)), 0, "ready: ");
    assert!(line.contains("\"status\":\"ready\""), "{line}");
    one_line(&health(&["--ready", "--url", &base], None), 0, "ready: ");

    cluster.stop_server().unwrap();
    let mut degraded = None;
    for _ in 0..60 {
        let output = health(&["--ready", "--url", &base], None);
        if output.status.code() == Some(1) {
            degraded = Some(output);
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let line = one_line(&degraded.expect("never degraded"), 1, "not ready: ");
    assert!(line.contains(" 503 "), "{line}");
    // Liveness does not depend on the database.
    one_line(&health(&["--url", &base], None), 0, "healthy: ");

    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(15)).code(), Some(0));
    let line = one_line(&health(&["--url", &base], None), 1, "not healthy: ");
    assert!(line.contains("cannot connect"), "{line}");
    let line = one_line(&health(&["--url", "https://x:1"], None), 1, "unhealthy: ");
    assert!(line.contains("must be http://"), "{line}");
}
