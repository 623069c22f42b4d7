//! Per-environment roles and databases on one cluster: each role reaches only its own database.

use config_core::Environment;
use db::{
    DbError, DropOutcome, ProvisionChange, RolePassword, database_name, drop_database, provision,
    role_name,
};
use pg_harness::TestCluster;
use secrecy::SecretString;

const DEV_PASSWORD: &str = "Kanarienvogel-dev-7f3a";
const PROD_PASSWORD: &str = "Kanarienvogel-prod-\u{fb01}-91c2"; // "ﬁ": exercises SASLprep
const ROTATED: &str = "Kanarienvogel-rotated-55e1";

fn url_for(environment: Environment, password: &str) -> String {
    let encoded: String = password.bytes().map(|b| format!("%{b:02X}")).collect();
    format!(
        "postgres://{}:{encoded}@127.0.0.1:{}/{}?sslmode=disable",
        role_name(environment),
        TestCluster::shared().port(),
        database_name(environment)
    )
}

fn assert_no_secret(text: &str) {
    for secret in [DEV_PASSWORD, PROD_PASSWORD, ROTATED] {
        assert!(!text.contains(secret), "a password leaked into: {text}");
    }
}

#[tokio::test]
async fn environments_are_separated_by_role_and_database() {
    let cluster = TestCluster::shared();
    let admin = crate::common::pool(&cluster.admin_url("postgres")).await;
    let dev_secret = SecretString::from(DEV_PASSWORD);
    let prod_secret = SecretString::from(PROD_PASSWORD);

    let dev = provision(
        &admin,
        Environment::Development,
        RolePassword::SetOnCreate(&dev_secret),
    )
    .await
    .unwrap();
    assert_eq!(
        dev.changes,
        [
            ProvisionChange::RoleCreated,
            ProvisionChange::PasswordSet,
            ProvisionChange::DatabaseCreated,
            ProvisionChange::PublicConnectRevoked
        ]
    );
    assert_no_secret(&format!("{dev} {dev:?}"));
    let prod = provision(
        &admin,
        Environment::Production,
        RolePassword::Set(&prod_secret),
    )
    .await
    .unwrap();
    assert_eq!(
        (prod.role.as_str(), prod.database.as_str()),
        ("mcp_user", "cognitive_memory")
    );
    assert!(prod.changed());

    // Second runs change nothing, including re-setting the same password.
    let again = provision(
        &admin,
        Environment::Development,
        RolePassword::SetOnCreate(&dev_secret),
    )
    .await
    .unwrap();
    assert!(!again.changed(), "{again}");
    assert!(again.to_string().contains("nothing changed"));
    let again = provision(
        &admin,
        Environment::Production,
        RolePassword::Set(&prod_secret),
    )
    .await
    .unwrap();
    assert!(!again.changed(), "{again}");

    // Each role reaches its own database (its password is a SCRAM verifier computed client-side) ...
    let dev_pool = crate::common::pool(&pg_harness::url_with_tenant(
        &url_for(Environment::Development, DEV_PASSWORD),
        "default",
    ))
    .await;
    let prod_pool = crate::common::pool(&pg_harness::url_with_tenant(
        &url_for(Environment::Production, PROD_PASSWORD),
        "default",
    ))
    .await;
    // ... and not the other's: CONNECT is revoked from PUBLIC.
    let crossing = url_for(Environment::Development, DEV_PASSWORD)
        .replace("/cognitive_memory_dev?", "/cognitive_memory?");
    let err = db::connect(&crate::common::config(&crossing, 5), |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, DbError::AccessDenied { .. }), "{err}");
    assert!(
        err.to_string().contains("permission denied for database"),
        "{err}"
    );
    assert_no_secret(&format!("{err} {err:?}"));

    db::stamp(&dev_pool, Environment::Development, "provision test")
        .await
        .unwrap();
    db::stamp(&prod_pool, Environment::Production, "provision test")
        .await
        .unwrap();
    sqlx::query("INSERT INTO l0_raw (session_id, speaker, content) VALUES ('dev-session', 'user', 'written in dev')")
        .execute(&dev_pool)
        .await
        .unwrap();
    let in_prod: i64 = sqlx::query_scalar("SELECT count(*) FROM l0_raw")
        .fetch_one(&prod_pool)
        .await
        .unwrap();
    assert_eq!(in_prod, 0, "a development write appeared in production");

    // Dropping is for development and test databases only.
    let err = drop_database(&admin, "cognitive_memory").await.unwrap_err();
    assert!(matches!(err, DbError::DropRefused { .. }), "{err}");
    assert!(err.to_string().contains("stamped for production"), "{err}");
    dev_pool.close().await;
    assert_eq!(
        drop_database(&admin, "cognitive_memory_dev").await.unwrap(),
        DropOutcome::Dropped
    );
    assert_eq!(
        drop_database(&admin, "cognitive_memory_dev").await.unwrap(),
        DropOutcome::NotFound
    );
    let unstamped = cluster.fresh_database().await.unwrap();
    let err = drop_database(&admin, &unstamped.name).await.unwrap_err();
    assert!(err.to_string().contains("no environment stamp"), "{err}");
}

#[tokio::test]
async fn an_existing_password_changes_only_when_asked() {
    let admin = crate::common::pool(&TestCluster::shared().admin_url("postgres")).await;
    let original = SecretString::from(DEV_PASSWORD);
    let rotated = SecretString::from(ROTATED);
    let env = Environment::Staging;
    provision(&admin, env, RolePassword::SetOnCreate(&original))
        .await
        .unwrap();

    let kept = provision(&admin, env, RolePassword::SetOnCreate(&rotated))
        .await
        .unwrap();
    assert!(!kept.changed(), "{kept}");
    let kept = provision(&admin, env, RolePassword::NoPassword)
        .await
        .unwrap();
    assert!(!kept.changed(), "{kept}");
    crate::common::pool(&url_for(env, DEV_PASSWORD))
        .await
        .close()
        .await;

    let changed = provision(&admin, env, RolePassword::Set(&rotated))
        .await
        .unwrap();
    assert_eq!(changed.changes, [ProvisionChange::PasswordSet]);
    crate::common::pool(&url_for(env, ROTATED))
        .await
        .close()
        .await;
    let err = db::connect(
        &crate::common::config(&url_for(env, DEV_PASSWORD), 5),
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(matches!(err, DbError::AuthenticationFailed { .. }), "{err}");
    assert_no_secret(&format!("{err} {err:?}"));
}
