//! The persistent (developer) cluster: init, start, status and stop, each idempotent.

use std::fs::{self, Permissions};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use pg_harness::{Cluster, ClusterSpec, ClusterStatus, InitOutcome, StartOutcome, StopOutcome};
use sqlx::{Connection, PgConnection};

/// Stops the server even when an assertion fails, so no daemon outlives the test.
struct StopOnDrop<'a>(&'a Cluster);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn lifecycle_is_idempotent_and_tcp_uses_the_stored_password() {
    let dir = tempfile::tempdir().unwrap();
    // Whatever the umask made of it: a real checkout is normally traversable.
    fs::set_permissions(dir.path(), Permissions::from_mode(0o755)).unwrap();
    let mut spec = ClusterSpec::under(dir.path().join(".dev/postgres"));
    spec.port = free_port();
    let cluster = Cluster::new(spec.clone()).expect("binaries and user");
    let _guard = StopOnDrop(&cluster);

    assert_eq!(cluster.status().unwrap(), ClusterStatus::NotInitialised);
    assert!(
        cluster.start().is_err(),
        "starting an uninitialised cluster must fail"
    );
    assert_eq!(cluster.init().unwrap(), InitOutcome::Initialised);
    assert_eq!(cluster.init().unwrap(), InitOutcome::AlreadyInitialised);
    let password_file = fs::metadata(&spec.password_file).unwrap();
    assert_eq!(password_file.mode() & 0o777, 0o600);

    assert_eq!(cluster.status().unwrap(), ClusterStatus::Stopped);
    assert_eq!(
        cluster.start().unwrap(),
        StartOutcome::Started { port: spec.port }
    );
    let ClusterStatus::Running { pid, port } = cluster.status().unwrap() else {
        panic!("not running after start");
    };
    assert_eq!(port, spec.port);
    assert_eq!(
        cluster.start().unwrap(),
        StartOutcome::AlreadyRunning { pid, port }
    );
    assert!(
        cluster
            .start()
            .unwrap()
            .to_string()
            .contains("already running")
    );

    let url = cluster.superuser_url("postgres").unwrap();
    let mut conn = PgConnection::connect(&url)
        .await
        .expect("superuser over TCP with the stored password");
    let listen: String = sqlx::query_scalar("SHOW listen_addresses")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(listen, "127.0.0.1");
    conn.close().await.unwrap();
    let password = fs::read_to_string(&spec.password_file).unwrap();
    let wrong = url.replace(password.trim(), "wrong");
    assert!(
        PgConnection::connect(&wrong).await.is_err(),
        "TCP must not trust a wrong password"
    );

    assert_eq!(cluster.stop().unwrap(), StopOutcome::Stopped);
    assert_eq!(cluster.stop().unwrap(), StopOutcome::NotRunning);
    assert_eq!(cluster.status().unwrap(), ClusterStatus::Stopped);
    assert!(PgConnection::connect(&url).await.is_err());

    // Data survives a stop/start cycle.
    assert!(matches!(
        cluster.start().unwrap(),
        StartOutcome::Started { .. }
    ));
    let mut conn = PgConnection::connect(&url).await.unwrap();
    let databases: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = 'postgres'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(databases, 1);
    conn.close().await.unwrap();
}

#[test]
fn a_non_traversable_parent_is_named_when_running_as_root() {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), Permissions::from_mode(0o700)).unwrap();
    let cluster = Cluster::new(ClusterSpec::under(dir.path().join("pg"))).unwrap();
    match cluster.server_user() {
        Some(user) => {
            let err = cluster
                .init()
                .expect_err("the server user cannot enter a 0700 root-owned directory");
            let message = err.to_string();
            assert!(
                message.contains(&dir.path().display().to_string()),
                "{message}"
            );
            assert!(message.contains(&user.name), "{message}");
        }
        None => {
            println!(
                "not root: the server runs as this user, so every directory of ours is traversable"
            );
            assert_eq!(cluster.init().unwrap(), InitOutcome::Initialised);
        }
    }
}
