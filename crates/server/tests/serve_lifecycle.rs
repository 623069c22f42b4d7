//! The daemon's lifecycle as systemd sees it, through a notify socket (no root needed): READY only
//! after the database, a probe-gated watchdog, exit codes, SIGTERM drain, SIGHUP reload.

#[path = "support/daemon.rs"]
mod daemon;

use std::time::Duration;

use config_core::Environment;
use daemon::{Launch, stamped_database};
use pg_harness::TestCluster;

#[tokio::test(flavor = "multi_thread")]
async fn ready_comes_after_the_database_then_pets_then_stopping_and_exit_0() {
    let database = stamped_database(Environment::Test).await;
    let mut daemon = Launch::http(&database.url).watchdog(600_000).spawn();
    let base = daemon.ready();
    // The database was reachable and checked before READY=1: its STATUS= names it.
    let ready = daemon.messages.last().unwrap().clone();
    assert!(
        ready.contains(&format!("database {}", database.name)),
        "{ready}"
    );
    assert!(
        ready.contains("STATUS=test: serving http://127.0.0.1:"),
        "{ready}"
    );
    let health: serde_json::Value = reqwest::get(format!("{base}/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["environment"], "test");

    // WATCHDOG_USEC=600 ms: a pet about every 300 ms.
    let started = std::time::Instant::now();
    let mut pets = 0;
    while started.elapsed() < Duration::from_millis(1600) {
        if daemon
            .wait_for(Duration::from_millis(100), |m| m == "WATCHDOG=1")
            .is_some()
        {
            pets += 1;
        }
    }
    println!("pets in 1.6 s with a 600 ms watchdog: {pets}");
    assert!((3..=8).contains(&pets), "expected about 5 pets, got {pets}");

    daemon.signal("TERM");
    let status = daemon.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "stderr:\n{}", daemon.stderr());
    assert!(daemon.saw("STOPPING=1"), "{:?}", daemon.messages);
    let stderr = daemon.stderr();
    assert!(stderr.contains("SIGTERM received"), "{stderr}");
    assert!(stderr.contains("\"stopped\""), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_configuration_exits_78_without_ready() {
    let database = stamped_database(Environment::Test).await;
    let mut daemon = Launch::http(&database.url)
        .env("COGMEM__SERVER__RATE_LIMIT__REQUESTS_PER_MINUTE", "many")
        .spawn();
    let status = daemon.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(78));
    assert!(!daemon.saw("READY=1"), "{:?}", daemon.messages);
    assert!(
        daemon
            .stderr()
            .contains("server.rate_limit.requests_per_minute"),
        "{}",
        daemon.stderr()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_database_extends_the_start_timeout_then_exits_75() {
    // Nothing listens on port 1.
    let mut daemon = Launch::http("postgres://nobody@127.0.0.1:1/nothing?sslmode=disable")
        .env("COGMEM__DATABASE__CONNECT_WAIT_SECS", "2")
        .spawn();
    let status = daemon.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(75), "stderr:\n{}", daemon.stderr());
    let extensions = daemon
        .messages
        .iter()
        .filter(|m| m.lines().any(|l| l.starts_with("EXTEND_TIMEOUT_USEC=")))
        .count();
    println!("EXTEND_TIMEOUT_USEC messages during a 2 s wait: {extensions}");
    assert!(extensions >= 2, "{:?}", daemon.messages);
    assert!(!daemon.saw("READY=1"));
    assert!(
        daemon.stderr().contains("still unreachable"),
        "{}",
        daemon.stderr()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_of_another_environment_exits_78() {
    let database = stamped_database(Environment::Development).await;
    let mut daemon = Launch::http(&database.url).spawn();
    let status = daemon.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(78));
    assert!(!daemon.saw("READY=1"));
    assert!(
        daemon.stderr().contains("stamped for development"),
        "{}",
        daemon.stderr()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pending_migrations_without_auto_migrate_exit_78_naming_the_command() {
    // Stamped but never migrated: a bare stamp table. `stamp` applies migrations, so build the
    // database by hand from an empty one: stamp it, then drop the history of the migrations.
    let database = stamped_database(Environment::Staging).await;
    let pool = sqlx::PgPool::connect(&database.url).await.unwrap();
    sqlx::query("DELETE FROM refinery_schema_history WHERE version > 0")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let mut launch = Launch::http(&database.url);
    launch.environment = Environment::Staging;
    let mut daemon = launch.spawn();
    let status = daemon.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(78), "stderr:\n{}", daemon.stderr());
    assert!(
        daemon
            .stderr()
            .contains("cognitive-memory-mcp --env staging migrate"),
        "{}",
        daemon.stderr()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_runtime_stops_the_pets() {
    let database = stamped_database(Environment::Test).await;
    let mut daemon = Launch::http(&database.url)
        .watchdog(400_000)
        .env("COGMEM_TEST_STALL_AFTER_MS", "1000")
        .spawn();
    daemon.ready();
    assert!(
        daemon
            .wait_for(Duration::from_secs(2), |m| m == "WATCHDOG=1")
            .is_some(),
        "pets before the stall"
    );
    // Let the stall begin, then listen for pets for 5 watchdog periods.
    std::thread::sleep(Duration::from_millis(1500));
    // Pets sent before the stall are still queued on the socket: read them first.
    let _ = daemon.wait_for(Duration::from_millis(200), |_| false);
    let before = daemon.messages.len();
    let _ = daemon.wait_for(Duration::from_secs(2), |_| false);
    let pets_after: Vec<&String> = daemon.messages[before..]
        .iter()
        .filter(|m| *m == "WATCHDOG=1")
        .collect();
    println!("pets during 2 s of stall: {}", pets_after.len());
    assert!(pets_after.is_empty(), "{:?}", daemon.messages);
    assert!(
        daemon.stderr().contains("fault injection"),
        "{}",
        daemon.stderr()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_outage_degrades_but_keeps_petting_and_recovers() {
    // A private cluster: stopping the shared one would break other tests.
    let cluster = TestCluster::start().unwrap();
    let database = cluster.fresh_database().await.unwrap();
    let pool = sqlx::PgPool::connect(&database.url).await.unwrap();
    db::stamp(&pool, Environment::Test, "tests").await.unwrap();
    pool.close().await;
    let mut daemon = Launch::http(&database.url).watchdog(2_000_000).spawn();
    let base = daemon.ready();
    let ready = reqwest::get(format!("{base}/ready")).await.unwrap();
    assert_eq!(ready.status(), 200);

    cluster.stop_server().unwrap();
    let degraded = daemon.wait_for(Duration::from_secs(15), |m| {
        m.contains("STATUS=degraded: database unavailable")
    });
    assert!(
        degraded.is_some(),
        "{:?}\n{}",
        daemon.messages,
        daemon.stderr()
    );
    let ready = reqwest::get(format!("{base}/ready")).await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["state"], "unavailable");
    assert_eq!(body["database"], "unavailable");
    assert_eq!(body["stamp"], "unknown");
    // States only: no error text (role names, hosts, source lines) for unauthenticated callers.
    let text = body.to_string();
    assert!(
        !text.contains("error") && !text.contains("connect") && text.len() < 200,
        "{text}"
    );
    // Still petted while degraded.
    assert!(
        daemon
            .wait_for(Duration::from_secs(3), |m| m == "WATCHDOG=1")
            .is_some(),
        "no pets while degraded"
    );

    cluster.start_server().unwrap();
    let back = daemon.wait_for(Duration::from_secs(15), |m| {
        m.contains("STATUS=test: serving")
    });
    assert!(back.is_some(), "{:?}", daemon.messages);
    let ready = reqwest::get(format!("{base}/ready")).await.unwrap();
    assert_eq!(ready.status(), 200);
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(15)).code(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_the_log_level_and_reports_what_needs_a_restart() {
    let database = stamped_database(Environment::Test).await;
    let mut daemon = Launch::http(&database.url).spawn();
    daemon.ready();
    // .env.<environment> is re-read on reload, like every other layer.
    daemon.write_env_file("LOG_LEVEL=debug\nCOGMEM__SERVER__SHUTDOWN_GRACE_SECS=3\n");
    daemon.signal("HUP");
    let ready_again = daemon.wait_for(Duration::from_secs(10), |m| m.contains("READY=1"));
    assert!(ready_again.is_some(), "{:?}", daemon.messages);
    assert!(
        daemon.messages.iter().any(|m| m.contains("RELOADING=1")),
        "{:?}",
        daemon.messages
    );
    std::thread::sleep(Duration::from_millis(200));
    let stderr = daemon.stderr();
    assert!(stderr.contains("configuration reloaded"), "{stderr}");
    assert!(stderr.contains("logging.level"), "{stderr}");
    assert!(
        stderr.contains("server.shutdown_grace_secs") && stderr.contains("after a restart"),
        "{stderr}"
    );
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(15)).code(), Some(0));
}
