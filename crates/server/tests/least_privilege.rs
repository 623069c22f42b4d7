//! Least privilege at run time: after connecting, staging and production refuse to serve (exit
//! 78) as a SUPERUSER or BYPASSRLS login role and warn about CREATEROLE/CREATEDB; development
//! only warns; `doctor` reports the role's attributes. The superuser roles are made on purpose.

#[path = "support/daemon.rs"]
mod daemon;

use std::time::Duration;

use config_core::Environment;
use daemon::{BIN, Launch, TOKEN, stamped_database};
use sqlx::Connection;

async fn alter(admin_url: &str, statement: &str) {
    let mut conn = sqlx::PgConnection::connect(admin_url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_owned()))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

async fn migrated(environment: Environment) -> pg_harness::TestDatabase {
    let database = stamped_database(environment).await;
    let pool = sqlx::PgPool::connect(&database.url).await.unwrap();
    db::migrate(&pool).await.unwrap();
    pool.close().await;
    database
}

/// The password in `url` (a canary: it must never be logged).
fn password(url: &str) -> String {
    url::Url::parse(url).unwrap().password().unwrap().to_owned()
}

fn launch(environment: Environment, url: &str) -> daemon::Daemon {
    let mut launch = Launch::http(url);
    launch.environment = environment;
    launch.spawn()
}

#[tokio::test(flavor = "multi_thread")]
async fn strict_environments_refuse_a_superuser_or_bypassrls_role() {
    for environment in [Environment::Staging, Environment::Production] {
        let database = migrated(environment).await;
        let owner = &database.owner;
        for attribute in ["SUPERUSER", "BYPASSRLS"] {
            alter(
                &database.admin_url,
                &format!("ALTER ROLE {owner} {attribute}"),
            )
            .await;
            let mut daemon = launch(environment, &database.url);
            let status = daemon.wait_exit(Duration::from_secs(30));
            assert_eq!(
                status.code(),
                Some(78),
                "{environment} {attribute}: {}",
                daemon.stderr()
            );
            assert!(!daemon.saw("READY=1"));
            let log = daemon.stderr();
            assert!(
                log.contains(&format!("the database login role {owner} has {attribute}")),
                "{log}"
            );
            assert!(!log.contains(TOKEN));
            assert!(
                !log.contains(&password(&database.url)),
                "the password leaked"
            );
            alter(
                &database.admin_url,
                &format!("ALTER ROLE {owner} NO{attribute}"),
            )
            .await;
        }
        // CREATEDB is needless but not dangerous: served, with a warning.
        alter(&database.admin_url, &format!("ALTER ROLE {owner} CREATEDB")).await;
        let mut daemon = launch(environment, &database.url);
        daemon.ready();
        assert!(
            daemon
                .stderr()
                .contains(&format!("the database login role {owner} has CREATEDB")),
            "{}",
            daemon.stderr()
        );
        daemon.signal("TERM");
        assert_eq!(daemon.wait_exit(Duration::from_secs(30)).code(), Some(0));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn development_serves_as_a_superuser_with_a_warning() {
    let database = migrated(Environment::Development).await;
    alter(
        &database.admin_url,
        &format!("ALTER ROLE {} SUPERUSER", database.owner),
    )
    .await;
    let mut daemon = launch(Environment::Development, &database.url);
    daemon.ready();
    assert!(
        daemon
            .stderr()
            .contains("staging and production refuse that"),
        "{}",
        daemon.stderr()
    );
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(30)).code(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_reports_the_role_attributes() {
    let database = migrated(Environment::Production).await;
    let owner = database.owner.clone();
    let root = daemon::config_root();
    let doctor = |root: &std::path::Path| {
        let output = std::process::Command::new(BIN)
            .args(["--env", "production", "--config-root"])
            .arg(root)
            .args(["doctor", "--json", "--host-root"])
            .arg(root.join("no-host"))
            .env_clear()
            .env("DATABASE_URL", &database.url)
            .env("MCP_AUTH_TOKEN", TOKEN)
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&output.stdout).into_owned();
        let json: serde_json::Value = serde_json::from_str(&report).unwrap();
        let role = json["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == "db-role")
            .cloned()
            .unwrap_or_else(|| panic!("no db-role check: {report}"));
        assert!(!report.contains(TOKEN));
        role
    };
    let clean = doctor(root.path());
    assert_eq!(clean["status"], "pass", "{clean}");
    assert!(clean["reason"].as_str().unwrap().contains(&owner));
    // What tenancy put in place (V7): the policies bind the memory tables.
    assert!(
        clean["reason"]
            .as_str()
            .unwrap()
            .contains("row-level security forced on l0_raw, l2_insights, search_postings"),
        "{clean}"
    );
    alter(
        &database.admin_url,
        &format!("ALTER ROLE {owner} SUPERUSER CREATEROLE"),
    )
    .await;
    let bad = doctor(root.path());
    assert_eq!(bad["status"], "fail", "{bad}");
    let reason = bad["reason"].as_str().unwrap();
    assert!(
        reason.contains("SUPERUSER") && reason.contains("CREATEROLE"),
        "{reason}"
    );
}
