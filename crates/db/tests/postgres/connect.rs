//! Connecting: TLS policy before any traffic, a bounded and reported wait, fast failure where
//! waiting cannot help, and no password in any output.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use db::{ConnectProgress, DbError};
use pg_harness::TestCluster;
use tokio::net::TcpSocket;

const CANARY: &str = "Canary-Passw0rd-3b7e";

fn assert_no_canary(text: &str) {
    assert!(!text.contains(CANARY), "the password leaked into: {text}");
}

/// A port bound but not listening: connections are refused, and nobody else can take it.
fn closed_port() -> (TcpSocket, u16) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind((Ipv4Addr::LOCALHOST, 0).into()).unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

#[tokio::test]
async fn plain_text_to_a_remote_host_is_refused_before_any_traffic() {
    for url in [
        format!("postgres://app:{CANARY}@203.0.113.1:5432/cognitive_memory?sslmode=disable"),
        format!("postgres://app:{CANARY}@db.example.com/cognitive_memory"),
        format!("postgres://app:{CANARY}@203.0.113.1/cognitive_memory?sslmode=prefer"),
    ] {
        let started = Instant::now();
        let mut attempts = 0;
        let err = db::connect(&crate::common::config(&url, 30), |_| attempts += 1)
            .await
            .unwrap_err();
        assert!(matches!(err, DbError::PlaintextRefused { .. }), "{err}");
        assert_eq!(attempts, 0);
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "took {:?}",
            started.elapsed()
        );
        assert!(err.to_string().contains("app@"), "{err}");
        assert_no_canary(&format!("{err} {err:?}"));
    }
}

#[tokio::test]
async fn plain_text_is_fine_over_loopback_and_the_unix_socket() {
    let cluster = TestCluster::shared();
    let tcp = crate::common::pool(&cluster.admin_url("postgres")).await;
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&tcp)
        .await
        .unwrap();
    assert_eq!(one, 1);

    let socket_dir: String = cluster
        .socket_dir()
        .to_string_lossy()
        .bytes()
        .map(|b| format!("%{b:02X}"))
        .collect();
    let socket_url = format!(
        "postgres://postgres@{socket_dir}:{}/postgres",
        cluster.port()
    );
    let socket = crate::common::pool(&socket_url).await;
    let over_socket: bool = sqlx::query_scalar("SELECT inet_client_addr() IS NULL")
        .fetch_one(&socket)
        .await
        .unwrap();
    assert!(over_socket, "expected a unix-socket session");
}

#[tokio::test]
async fn an_unreachable_server_is_retried_until_the_deadline() {
    let (_held, port) = closed_port();
    let url = format!("postgres://app:{CANARY}@127.0.0.1:{port}/cognitive_memory?sslmode=disable");
    let mut progress: Vec<ConnectProgress> = Vec::new();
    let started = Instant::now();
    let err = db::connect(&crate::common::config(&url, 1), |p| progress.push(p))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();

    let DbError::Unavailable { attempts, .. } = &err else {
        panic!("expected the deadline error, got {err}")
    };
    assert!(
        progress.len() >= 3,
        "only {} progress reports",
        progress.len()
    );
    assert_eq!(
        *attempts as usize,
        progress.len() + 1,
        "every failed attempt but the last is reported"
    );
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(3),
        "took {elapsed:?}"
    );
    for (i, report) in progress.iter().enumerate() {
        assert_eq!(report.attempt as usize, i + 1);
        assert!(report.reason.contains("refused"), "{}", report.reason);
        assert_no_canary(&format!("{report} {report:?}"));
    }
    let delays: Vec<u128> = progress.iter().map(|p| p.next_delay.as_millis()).collect();
    assert_eq!(&delays[..3], [100, 200, 400], "exponential backoff");
    assert_no_canary(&format!("{err} {err:?}"));
}

#[tokio::test]
async fn a_server_that_comes_back_during_the_wait_is_used() {
    let cluster = TestCluster::start().expect("a cluster of its own");
    let database = cluster.fresh_database().await.unwrap();
    cluster.stop_server().unwrap();

    let config = crate::common::config(&database.url, 30);
    let connecting = tokio::spawn(async move {
        let mut reports = 0;
        let pool = db::connect(&config, |_| reports += 1).await;
        (pool, reports)
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    cluster.start_server().unwrap();
    let (pool, reports) = connecting.await.unwrap();
    let pool = pool.expect("connected once the server was back");
    assert!(
        reports >= 2,
        "{reports} progress reports while the server was down"
    );
    let name: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(name, database.name);
}

#[tokio::test]
async fn wrong_credentials_and_missing_databases_fail_fast() {
    let cluster = TestCluster::shared();
    let database = cluster.fresh_database().await.unwrap();
    let real_password = database
        .url
        .split_once("_owner:")
        .unwrap()
        .1
        .split_once('@')
        .unwrap()
        .0;

    let wrong_password = database.url.replace(real_password, CANARY);
    let missing_database = database
        .url
        .replace(&format!("/{}?", database.name), "/no_such_database?");
    let err = fails_fast(&wrong_password).await;
    assert!(matches!(err, DbError::AuthenticationFailed { .. }), "{err}");
    assert!(!err.to_string().contains(real_password));
    let err = fails_fast(&missing_database).await;
    assert!(matches!(err, DbError::DatabaseMissing { .. }), "{err}");
    assert!(err.to_string().contains("does not exist"), "{err}");
}

/// Connects with a long wait and expects an error at once, without retries or secrets.
async fn fails_fast(url: &str) -> DbError {
    let started = Instant::now();
    let mut reports = 0;
    let err = db::connect(&crate::common::config(url, 30), |_| reports += 1)
        .await
        .unwrap_err();
    assert_eq!(reports, 0, "no retry for {err}");
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    assert_no_canary(&format!("{err} {err:?}"));
    err
}

#[tokio::test]
async fn the_config_never_prints_its_url() {
    let config = crate::common::config(&format!("postgres://app:{CANARY}@db.example.com/x"), 1);
    let debug = format!("{config:?}");
    assert_no_canary(&debug);
    assert!(!debug.contains("db.example.com"), "{debug}");
    let err = db::connect(
        &crate::common::config("postgres://app:pw@host:notaport/x", 1),
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(matches!(err, DbError::InvalidUrl { .. }), "{err}");
    assert!(err.to_string().contains("<unparsable URL>"), "{err}");
}
