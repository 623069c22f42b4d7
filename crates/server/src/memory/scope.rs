//! The tenant of a statement: `app.tenant`, which the row-level security policies of migration
//! V7 compare every memory row's `tenant` with (docs/tenancy.md).
//!
//! Two ways, both on connections from `db::acquire` (password rotation):
//! - [`begin`]: a transaction whose first exchange is `BEGIN; SELECT set_config('app.tenant',
//!   '<tenant>', true)` (one simple-query exchange, so setting the tenant costs no extra round
//!   trip); the setting ends with the transaction. Behind PgBouncer in transaction mode this is
//!   the only way: the server connection belongs to us exactly as long as the transaction.
//! - [`set_session`]: `set_config('app.tenant', $1, false)` on a pooled connection before an
//!   operation that needs no transaction (with named statements only, i.e. no transaction
//!   pooler). The operation that follows, and only it, is ours: the next user of the connection
//!   sets its own tenant first.

use sqlx::{AssertSqlSafe, PgConnection, PgPool, Postgres, SqlSafeStr, Transaction};

use crate::tenancy::Tenant;

const SET_SESSION: &str = "SELECT set_config('app.tenant', $1, false)";

/// `BEGIN; SELECT set_config('app.tenant', '<tenant>', true)`. The name is inlined as a
/// literal (a simple query has no parameters); [`Tenant`] admits only `[a-z0-9_.-]`, and quotes
/// are doubled all the same.
pub(crate) fn begin_statement(tenant: &Tenant) -> String {
    format!(
        "BEGIN; SELECT set_config('app.tenant', '{}', true)",
        tenant.as_str().replace('\'', "''")
    )
}

/// A transaction of `tenant` (see the module documentation).
pub(crate) async fn begin(
    pool: &PgPool,
    tenant: &Tenant,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    db::begin_with(pool, AssertSqlSafe(begin_statement(tenant)).into_sql_str()).await
}

/// Sets `tenant` for the session of `conn` (see the module documentation).
pub(crate) async fn set_session(
    conn: &mut PgConnection,
    tenant: &Tenant,
    named: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(SET_SESSION)
        .bind(tenant.as_str())
        .persistent(named)
        .execute(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_begin_statement_names_the_tenant_as_a_literal() {
        let tenant = Tenant::new("team-a.project_1").unwrap();
        assert_eq!(
            begin_statement(&tenant),
            "BEGIN; SELECT set_config('app.tenant', 'team-a.project_1', true)"
        );
    }
}
