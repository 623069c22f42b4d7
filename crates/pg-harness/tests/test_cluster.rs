//! The throwaway cluster: per-test databases, password-protected TCP, stop and restart.

use pg_harness::{TestCluster, TestDatabase};
use sqlx::{Connection, PgConnection};

fn password_of(url: &str) -> &str {
    let userinfo = url.split_once("://").unwrap().1.split_once('@').unwrap().0;
    userinfo.split_once(':').unwrap().1
}

async fn who_am_i(db: &TestDatabase) -> (String, String, bool) {
    let mut conn = PgConnection::connect(&db.url)
        .await
        .expect("connect as the owner");
    let row: (String, String, bool) = sqlx::query_as(
        "SELECT current_user::text, current_database()::text, rolsuper FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    row
}

#[tokio::test]
async fn each_test_gets_its_own_database_owned_by_a_plain_role() {
    let cluster = TestCluster::shared();
    let first = cluster.fresh_database().await.expect("first database");
    let second = cluster.fresh_database().await.expect("second database");
    assert_ne!(first.name, second.name);

    assert_eq!(
        who_am_i(&first).await,
        (first.owner.clone(), first.name.clone(), false)
    );
    assert_eq!(
        who_am_i(&second).await,
        (second.owner.clone(), second.name.clone(), false)
    );

    let mut conn = PgConnection::connect(&first.url).await.unwrap();
    sqlx::raw_sql("CREATE TABLE only_here (x int)")
        .execute(&mut conn)
        .await
        .expect("owner may create tables");
    let mut other = PgConnection::connect(&second.url).await.unwrap();
    let visible: bool = sqlx::query_scalar("SELECT to_regclass('only_here') IS NOT NULL")
        .fetch_one(&mut other)
        .await
        .unwrap();
    assert!(
        !visible,
        "a table in one test database must not appear in another"
    );

    let debug = format!("{first:?}");
    assert!(debug.contains(&first.name));
    assert!(
        !debug.contains(password_of(&first.url)),
        "Debug shows the owner password: {debug}"
    );
    assert!(
        !debug.contains(password_of(&first.admin_url)),
        "Debug shows the superuser password: {debug}"
    );
    assert!(!format!("{cluster:?}").contains(password_of(&first.admin_url)));
}

#[tokio::test]
async fn tcp_connections_need_the_right_password() {
    let cluster = TestCluster::shared();
    let db = cluster.fresh_database().await.unwrap();
    let wrong = db.url.replace(password_of(&db.url), "not-the-password");
    let err = PgConnection::connect(&wrong)
        .await
        .expect_err("a wrong password must be refused");
    let code = err
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("28P01"), "{err}");
}

#[tokio::test]
async fn a_dedicated_cluster_restarts_on_the_same_port_with_its_data() {
    let cluster = TestCluster::start().expect("dedicated cluster");
    let root = cluster.socket_dir().parent().unwrap().to_path_buf();
    let port = cluster.port();
    let db = cluster.fresh_database().await.unwrap();
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql("CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
        .execute(&mut conn)
        .await
        .unwrap();

    cluster.stop_server().unwrap();
    assert!(!cluster.is_running());
    assert!(
        sqlx::query("SELECT 1").execute(&mut conn).await.is_err(),
        "the old session must be gone"
    );
    assert!(
        PgConnection::connect(&db.url).await.is_err(),
        "nothing may accept connections while stopped"
    );
    cluster.stop_server().expect("stopping twice is a no-op");

    cluster.start_server().unwrap();
    assert!(cluster.is_running());
    assert_eq!(cluster.port(), port);
    let mut conn = PgConnection::connect(&db.url)
        .await
        .expect("same URL after the restart");
    let kept: i32 = sqlx::query_scalar("SELECT x FROM kept")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(kept, 42);
    conn.close().await.unwrap();

    drop(cluster);
    assert!(
        !root.exists(),
        "dropping a dedicated cluster removes {}",
        root.display()
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still answers"
    );
}
