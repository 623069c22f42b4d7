//! Shared by the integration tests: configs and pools for the throwaway cluster's databases.

use db::{DatabaseConfig, PoolConfig};
use pg_harness::{TestCluster, TestDatabase};
use secrecy::SecretString;
use sqlx::PgPool;

pub fn config(url: &str, connect_wait_secs: u64) -> DatabaseConfig {
    DatabaseConfig {
        url: SecretString::from(url.to_owned()),
        migration_url: None,
        prepared_statements: true,
        ssl_root_cert: None,
        pool: PoolConfig {
            min_connections: 0,
            max_connections: 4,
            max_lifetime_secs: 1800,
        },
        acquire_timeout_secs: 10,
        connect_wait_secs,
        require_tls: true,
        tls_verify: true,
        auto_migrate: false,
    }
}

pub async fn pool(url: &str) -> PgPool {
    db::connect(&config(url, 5), |_| {})
        .await
        .expect("connect to the test database")
}

pub async fn fresh() -> (TestDatabase, PgPool) {
    let database = TestCluster::shared()
        .fresh_database()
        .await
        .expect("a fresh test database");
    // Plain SQL on the memory tables below runs as tenant `default` (row-level security, V7).
    let pool = pool(&pg_harness::url_with_tenant(&database.url, "default")).await;
    (database, pool)
}
