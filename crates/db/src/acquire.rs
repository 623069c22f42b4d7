//! Taking a connection from the pool while the database password may be rotating.
//!
//! A password rotation (`cargo xtask rotate-db-password`) changes the role's password first and
//! reloads the daemon afterwards: between the two, every connection the pool *opens* still
//! presents the old password and PostgreSQL refuses it (SQLSTATE 28P01), although the daemon's
//! open connections stay logged in. sqlx gives such an error back to the caller at once. Callers
//! that serve requests take their connections here instead: after a refused password the request
//! waits — without retrying handshakes that cannot succeed — until the reload has put the new
//! password into the pool ([`switch_credentials`](crate::switch_credentials)), then tries again,
//! all within the pool's acquire timeout. A password that stays wrong fails after that timeout
//! with the server's own error, as before.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::watch;

/// How often a waiting request tries again even without a reload (a password changed back).
const RECHECK: Duration = Duration::from_millis(500);

/// Counts the credential switches of this process; requests waiting on a refused password
/// watch it.
static SWITCHES: LazyLock<watch::Sender<u64>> = LazyLock::new(|| watch::Sender::new(0));

/// Called by [`switch_credentials`](crate::switch_credentials) once the pool has new options.
pub(crate) fn credentials_switched() {
    SWITCHES.send_modify(|switches| *switches += 1);
}

/// A pooled connection, like [`PgPool::acquire`], but a password the server refuses while
/// opening a new connection is retried after the next credential switch (or every 500 ms),
/// until the pool's acquire timeout has passed in all (see the module documentation). The
/// first refusal of each call is logged at `warn`.
pub async fn acquire(pool: &PgPool) -> Result<PoolConnection<Postgres>, sqlx::Error> {
    let deadline = Instant::now() + pool.options().get_acquire_timeout();
    // Subscribed before the first attempt, so a switch during it is not missed.
    let mut switches = SWITCHES.subscribe();
    switches.borrow_and_update();
    let mut warned = false;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let attempt = tokio::time::timeout(remaining, pool.acquire())
            .await
            .unwrap_or(Err(sqlx::Error::PoolTimedOut));
        match attempt {
            Err(err) if is_refused_password(&err) => {
                if !warned {
                    warned = true;
                    tracing::warn!(
                        "the database refused the password of a new pool connection; waiting up to database.acquire_timeout_secs for the new one (a password rotation between ALTER ROLE and the daemon's reload looks like this)"
                    );
                }
                let wait = deadline
                    .saturating_duration_since(Instant::now())
                    .min(RECHECK);
                if wait.is_zero() {
                    return Err(err);
                }
                let _ = tokio::time::timeout(wait, switches.changed()).await;
                if Instant::now() >= deadline {
                    return Err(err);
                }
            }
            result => return result,
        }
    }
}

/// A transaction on a connection from [`acquire`], like [`PgPool::begin`].
pub async fn begin(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    Transaction::begin(acquire(pool).await?, None).await
}

/// A transaction begun by `statement` (one simple-query exchange, e.g. `BEGIN; SELECT
/// set_config(..)`), on a connection from [`acquire`]. sqlx checks that it left a transaction
/// open.
pub async fn begin_with(
    pool: &PgPool,
    statement: sqlx::SqlStr,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    Transaction::begin(acquire(pool).await?, Some(statement)).await
}

/// SQLSTATE 28P01 (invalid_password): what PostgreSQL answers to an outdated password.
fn is_refused_password(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.code().as_deref() == Some("28P01"))
}
