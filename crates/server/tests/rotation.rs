//! Secret rotation without downtime, under load: eight HTTP clients call the real daemon
//! continuously while (a) the bearer token is rotated with an overlap, the clients switch and the
//! old token is retired, and (b) the database password is rotated twice with the real
//! `cargo xtask rotate-db-password`: once signalling the daemon itself (`--pid`), once with the
//! SIGHUP sent 1.5 s later by hand. The daemon's pool connections live at most 1 s
//! (`database.pool.max_lifetime_secs`), so in that second window every connection is replaced
//! and each new one first meets the refused old password — the case that failed calls before
//! `db::acquire` retried it. Asserted: zero failed calls from clients holding a valid token, the
//! old token refused after its retirement, the same process throughout, every acknowledged write
//! stored, no secret in the log.

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/mcp_client.rs"]
mod mcp_client;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use config_core::Environment;
use daemon::{Launch, stamped_database};
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientServiceExt, model::ProtocolVersion};
use serde_json::json;
use sqlx::Connection;
use tokio::sync::RwLock;

const OLD_TOKEN: &str = "old-CANARY-9c41e07b2d5f8a36";
const NEW_TOKEN: &str = "new-CANARY-27d5b0e9c4a1f863";
const CLIENTS: usize = 8;
/// The time between `rotate-db-password` (without `--pid`) and the SIGHUP in the slow rotation:
/// longer than the pool's connection lifetime, shorter than `database.acquire_timeout_secs`.
const SLOW_RELOAD: Duration = Duration::from_millis(1500);

fn env_file(url: &str, token: &str, previous: Option<&str>) -> String {
    let mut text = format!("DATABASE_URL={url}\nMCP_AUTH_TOKEN={token}\n");
    if let Some(previous) = previous {
        text.push_str(&format!("MCP_AUTH_TOKEN_PREVIOUS={previous}\n"));
    }
    text
}

/// Log lines containing every one of `needles`.
fn log_lines(daemon: &daemon::Daemon, needles: &[&str]) -> usize {
    daemon
        .stderr()
        .lines()
        .filter(|line| needles.iter().all(|needle| line.contains(needle)))
        .count()
}

/// Waits until `count` log lines contain every one of `needles`.
async fn wait_log(daemon: &daemon::Daemon, needles: &[&str], count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while log_lines(daemon, needles) < count {
        assert!(
            Instant::now() < deadline,
            "no {needles:?} #{count}:\n{}",
            daemon.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `xtask` binary of this build, beside the server's.
fn xtask_binary() -> PathBuf {
    let path = Path::new(daemon::BIN).with_file_name("xtask");
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build -p xtask` (`cargo test --workspace` does)",
        path.display()
    );
    path
}

/// `cargo xtask rotate-db-password --env test` on the daemon's configuration root, optionally
/// with `--pid`; returns the new `DATABASE_URL` it wrote.
async fn rotate_db_password(daemon: &daemon::Daemon, admin_url: &str, pid: Option<u32>) -> String {
    let root = daemon.config_dir();
    let mut command = std::process::Command::new(xtask_binary());
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("COGMEM_REPO_ROOT", &root)
        .env("PG_ADMIN_URL", admin_url)
        .args(["rotate-db-password", "--env", "test", "--config-root"])
        .arg(&root);
    if let Some(pid) = pid {
        command.args(["--pid", &pid.to_string()]);
    }
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "rotate-db-password failed:\n{printed}"
    );
    let text = std::fs::read_to_string(root.join(".env.test")).unwrap();
    let url = text
        .lines()
        .find_map(|line| line.strip_prefix("DATABASE_URL="))
        .unwrap()
        .to_owned();
    assert!(
        !printed.contains(&password(&url)),
        "rotate-db-password printed the password"
    );
    url
}

/// The password in `url`: a canary that must never be printed or logged.
fn password(url: &str) -> String {
    url::Url::parse(url).unwrap().password().unwrap().to_owned()
}

async fn store(base: &str, token: &str, session: &str, n: usize) -> Result<(), String> {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(format!("{base}/mcp")).auth_header(token),
    );
    let client = ()
        .serve_with_lifecycle(
            transport,
            mcp_client::lifecycle(&ProtocolVersion::V_2026_07_28),
        )
        .await
        .map_err(|err| format!("connect: {err}"))?;
    let arguments =
        json!({"session_id": session, "speaker": "user", "content": format!("turn {n}")});
    let serde_json::Value::Object(arguments) = arguments else {
        unreachable!()
    };
    let result = client
        .call_tool(
            CallToolRequestParams::new("store_raw_dialogue".to_owned()).with_arguments(arguments),
        )
        .await
        .map_err(|err| format!("call: {err}"));
    let _ = client.cancel().await;
    match result? {
        r if r.is_error == Some(true) => Err(format!("tool error: {:?}", r.content)),
        _ => Ok(()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_and_the_database_password_rotate_under_load_without_a_restart() {
    // Fails at once, not after the token phase, when the tool is not built.
    let _ = xtask_binary();
    let database = stamped_database(Environment::Test).await;
    // Connections live at most 1 s, and 4 of them serve the 8 clients: the pool opens about 4 a
    // second, so the slow rotation's window certainly sees new ones. The acquire timeout is
    // raised because the machine is shared (2 cores, parallel builds): a slow moment is not a
    // lost call — and a refused password fails at once without the fix, whatever the timeout.
    let mut launch = Launch::http("")
        .env("COGMEM__DATABASE__POOL__MAX_LIFETIME_SECS", "1")
        .env("COGMEM__DATABASE__POOL__MAX_CONNECTIONS", "4")
        .env("COGMEM__DATABASE__ACQUIRE_TIMEOUT_SECS", "15")
        // Each call is a new session (2–3 requests): the test's 1,000 a minute would throttle it.
        .env("COGMEM__SERVER__RATE_LIMIT__REQUESTS_PER_MINUTE", "1000000");
    launch.env_file = Some(env_file(&database.url, OLD_TOKEN, None));
    let mut daemon = launch.spawn();
    let base = daemon.ready();
    let pid = daemon.pid();

    // Every client uses the token in `token`; `stop` ends them.
    let token = Arc::new(RwLock::new(OLD_TOKEN.to_owned()));
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (base, token, stop) = (base.clone(), token.clone(), stop.clone());
        let (acknowledged, failures) = (acknowledged.clone(), failures.clone());
        clients.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let current = token.read().await.clone();
                match store(&base, &current, &format!("client-{c}"), n).await {
                    Ok(()) => {
                        acknowledged.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(err) => failures.lock().unwrap().push(format!("client {c}: {err}")),
                }
                n += 1;
            }
        }));
    }
    let calls = |at_least: usize| {
        let acknowledged = acknowledged.clone();
        async move {
            let target = acknowledged.load(Ordering::Relaxed) + at_least;
            while acknowledged.load(Ordering::Relaxed) < target {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    calls(40).await;

    // (a) The new token with the old one kept, reload, the clients move, the old one goes.
    daemon.write_env_file(&env_file(&database.url, NEW_TOKEN, Some(OLD_TOKEN)));
    daemon.signal("HUP");
    wait_log(&daemon, &["bearer tokens replaced"], 1).await;
    calls(40).await;
    *token.write().await = NEW_TOKEN.to_owned();
    calls(40).await;
    daemon.write_env_file(&env_file(&database.url, NEW_TOKEN, None));
    daemon.signal("HUP");
    wait_log(&daemon, &["bearer tokens replaced"], 2).await;
    let refused = store(&base, OLD_TOKEN, "retired", 0).await;
    assert!(refused.is_err(), "the retired token is still accepted");
    calls(40).await;

    // (b) The database password, as an operator rotates it: the role's new password, the file
    // rewritten at 0600, then the daemon signalled by the tool itself.
    let applied = ["configuration reloaded", "database.url"];
    let first_url = rotate_db_password(&daemon, &database.admin_url, Some(pid)).await;
    wait_log(&daemon, &applied, 1).await;
    calls(60).await;
    // The same with a slow operator: the SIGHUP comes only after every pool connection has been
    // replaced at least once, each new one refused with the old password until the reload.
    let second_url = rotate_db_password(&daemon, &database.admin_url, None).await;
    tokio::time::sleep(SLOW_RELOAD).await;
    daemon.signal("HUP");
    wait_log(&daemon, &applied, 2).await;
    calls(60).await;

    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    let log = daemon.stderr();
    let acknowledged = acknowledged.load(Ordering::Relaxed);
    let retried = log_lines(&daemon, &["refused the password of a new pool connection"]);
    eprintln!(
        "acknowledged calls: {acknowledged}; failed calls: {}; acquisitions that waited for the reload: {retried}",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failed calls: {failures:#?}\n{log}",
        failures.len()
    );
    assert!(
        retried > 0,
        "no pool connection met the old password in the slow rotation, so the test proved nothing:\n{log}"
    );
    assert_eq!(daemon.pid(), pid);
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "the daemon exited"
    );
    let mut admin = sqlx::PgConnection::connect(&database.admin_url)
        .await
        .unwrap();
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM l0_raw WHERE session_id LIKE 'client-%'")
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert_eq!(rows as usize, acknowledged);
    // The retired credentials are refused, the current one works.
    for old in [&database.url, &first_url] {
        assert!(
            sqlx::PgConnection::connect(old).await.is_err(),
            "an old password still works"
        );
    }
    sqlx::PgConnection::connect(&second_url)
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
    for canary in [
        OLD_TOKEN.to_owned(),
        NEW_TOKEN.to_owned(),
        password(&database.url),
        password(&first_url),
        password(&second_url),
    ] {
        assert!(!log.contains(&canary), "a secret leaked into the log");
    }
    // Each reload told systemd RELOADING=1 and then READY=1 again.
    let _ = daemon.wait_for(Duration::from_millis(500), |_| false);
    let reloads = daemon
        .messages
        .iter()
        .filter(|m| m.lines().any(|l| l == "RELOADING=1"))
        .count();
    let readies = daemon
        .messages
        .iter()
        .filter(|m| m.lines().any(|l| l == "READY=1"))
        .count();
    assert_eq!((reloads, readies), (4, 5), "{:?}", daemon.messages);
    admin.close().await.unwrap();
}
