//! One lock for every schema change (migrations, stamping), so concurrent starts take turns.

use sqlx::{Connection, PgConnection, PgPool};

use crate::DbError;

/// `pg_advisory_lock` key: "cogmem" followed by 1. Only this project takes it.
const SCHEMA_LOCK_KEY: i64 = 0x636f_676d_656d_0001;

/// A connection of its own, detached from the pool, holding the schema lock. Dropping it (also
/// when the caller's future is cancelled mid-way) ends the session, which releases the lock;
/// a pooled connection would instead go back to the pool still holding it.
pub(crate) async fn acquire(pool: &PgPool) -> Result<PgConnection, DbError> {
    let mut conn = pool
        .acquire()
        .await
        .map_err(DbError::query("get a connection for a schema change"))?
        .detach();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(SCHEMA_LOCK_KEY)
        .execute(&mut conn)
        .await
        .map_err(DbError::query("take the schema lock"))?;
    Ok(conn)
}

/// Ending the session releases the lock; if the goodbye fails, dropping the socket does the same.
pub(crate) async fn release(conn: PgConnection) {
    let _ = conn.close().await;
}
