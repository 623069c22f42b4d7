//! Small questions about the connected database.

use sqlx::PgConnection;

use crate::DbError;

/// Whether `table` resolves on the search path (where the migrations create ours).
pub(crate) async fn table_exists(conn: &mut PgConnection, table: &str) -> Result<bool, DbError> {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(table)
        .persistent(false)
        .fetch_one(&mut *conn)
        .await
        .map_err(DbError::query(format!("look for table {table}")))
}

pub(crate) async fn current_database(conn: &mut PgConnection) -> Result<String, DbError> {
    sqlx::query_scalar("SELECT current_database()::text")
        .persistent(false)
        .fetch_one(&mut *conn)
        .await
        .map_err(DbError::query("ask for the database name"))
}
