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
        .persistent(false)
        .execute(&mut conn)
        .await
        .map_err(DbError::query("take the schema lock"))?;
    Ok(conn)
}

/// Ending the session releases the lock; if the goodbye fails, dropping the socket does the same.
pub(crate) async fn release(conn: PgConnection) {
    let _ = conn.close().await;
}

/// Advisory lock key of a job that must run on one replica at a time (a retention purge, any
/// periodic task): "cogmem" followed by the job's number. Number 1 is the schema lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobLock(pub u16);

impl JobLock {
    fn key(self) -> i64 {
        0x636f_676d_656d_0000 | i64::from(self.0)
    }
}

/// Takes `job`'s lock for the rest of the transaction `tx` is in, or returns false at once
/// when another replica holds it (that replica is doing the work; skip this round). The lock
/// ends with the transaction, so it holds through a pooler in transaction mode, where a
/// session lock (`pg_advisory_lock`) would stay on a server connection other clients share.
pub async fn try_job_lock(tx: &mut PgConnection, job: JobLock) -> Result<bool, DbError> {
    sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(job.key())
        .persistent(false)
        .fetch_one(&mut *tx)
        .await
        .map_err(DbError::query("take a job lock"))
}
