//! What tenancy needs of a database beyond the migrations (V7, docs/tenancy.md): whether
//! row-level security binds the memory tables, and whether the search operators are LEAKPROOF.
//!
//! Under row-level security PostgreSQL evaluates a table's policy condition before any condition
//! of the query whose operator is not LEAKPROOF, so such a condition cannot be an index
//! condition: `search_tsv @@ query` (GIN) and `source_ids && ids` (GIN) would scan every row of
//! the tenant instead. Only a superuser may declare the two operators' functions LEAKPROOF
//! (`setup-db` does, with [`declare_search_leakproof`]); a managed PostgreSQL without a
//! superuser keeps the slower plans, with the same schema and the same results.
//! [`tenancy_state`] tells `doctor` and `memory_status` which is the case.

use std::fmt;

use sqlx::{Connection, PgConnection, PgPool};

use crate::DbError;

/// The functions behind `tsvector @@ tsquery` and `anyarray && anyarray`.
pub const LEAKPROOF_SEARCH_FUNCTIONS: &[&str] = &[
    "pg_catalog.ts_match_vq(tsvector, tsquery)",
    "pg_catalog.arrayoverlap(anyarray, anyarray)",
];

/// The tables whose rows belong to a tenant (migration V7).
pub const TENANT_TABLES: &[&str] = &["l0_raw", "l2_insights", "search_postings"];

/// Row-level security on the memory tables and the search operators, as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenancyState {
    /// Memory tables with row-level security enabled and forced and at least one policy.
    pub protected: Vec<String>,
    /// Memory tables that exist without all of that (empty once V7 is applied).
    pub unprotected: Vec<String>,
    /// Whether every function of [`LEAKPROOF_SEARCH_FUNCTIONS`] is LEAKPROOF, so the GIN
    /// indexes serve searches under row-level security.
    pub search_leakproof: bool,
}

impl TenancyState {
    /// Row-level security binds every memory table.
    pub fn enforced(&self) -> bool {
        self.unprotected.is_empty() && !self.protected.is_empty()
    }
}

impl fmt::Display for TenancyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.enforced() {
            write!(
                f,
                "row-level security forced on {}",
                self.protected.join(", ")
            )?;
        } else if self.unprotected.is_empty() {
            f.write_str("no memory tables yet")?;
        } else {
            write!(
                f,
                "row-level security NOT forced on {}",
                self.unprotected.join(", ")
            )?;
        }
        if self.search_leakproof {
            f.write_str("; search operators LEAKPROOF (GIN indexes used under it)")
        } else {
            f.write_str(
                "; search operators not LEAKPROOF (searches scan the tenant's rows: run setup-db as a superuser to declare them)",
            )
        }
    }
}

const STATE: &str = "\
SELECT t.name,
       c.oid IS NOT NULL AS present,
       coalesce(c.relrowsecurity AND c.relforcerowsecurity, false)
         AND EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid) AS protected
FROM unnest($1::text[]) AS t(name)
LEFT JOIN pg_class c ON c.oid = to_regclass(t.name)
ORDER BY t.name";

const LEAKPROOF: &str = "\
SELECT coalesce(bool_and(coalesce(p.proleakproof, false)), false)
FROM unnest($1::text[]) AS f(signature)
LEFT JOIN pg_proc p ON p.oid = to_regprocedure(f.signature)";

/// The tenancy state of the database `pool` connects to.
pub async fn tenancy_state(pool: &PgPool) -> Result<TenancyState, DbError> {
    let context = "read the row-level security state";
    let rows: Vec<(String, bool, bool)> = sqlx::query_as(STATE)
        .bind(TENANT_TABLES)
        .persistent(false)
        .fetch_all(pool)
        .await
        .map_err(DbError::query(context))?;
    let search_leakproof: bool = sqlx::query_scalar(LEAKPROOF)
        .bind(LEAKPROOF_SEARCH_FUNCTIONS)
        .persistent(false)
        .fetch_one(pool)
        .await
        .map_err(DbError::query(context))?;
    let mut state = TenancyState {
        protected: Vec::new(),
        unprotected: Vec::new(),
        search_leakproof,
    };
    for (name, present, protected) in rows {
        match (present, protected) {
            (true, true) => state.protected.push(name),
            (true, false) => state.unprotected.push(name),
            (false, _) => {}
        }
    }
    Ok(state)
}

/// What [`declare_search_leakproof`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeakproofOutcome {
    Declared,
    AlreadyInPlace,
    /// The administrator connection may not (not a superuser: a managed PostgreSQL).
    NotPossible(String),
}

impl fmt::Display for LeakproofOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeakproofOutcome::Declared => {
                f.write_str("declared the search operators LEAKPROOF (GIN indexes serve searches under row-level security)")
            }
            LeakproofOutcome::AlreadyInPlace => {
                f.write_str("search operators already LEAKPROOF; nothing to do")
            }
            LeakproofOutcome::NotPossible(reason) => write!(
                f,
                "cannot declare the search operators LEAKPROOF ({reason}); searches stay correct but scan the tenant's rows"
            ),
        }
    }
}

/// Declares [`LEAKPROOF_SEARCH_FUNCTIONS`] LEAKPROOF in `database` (a catalog change of that
/// database, not of its schema: every environment keeps the same migrations). `admin` must be a
/// superuser connection to get [`LeakproofOutcome::Declared`]; otherwise nothing changes and
/// [`LeakproofOutcome::NotPossible`] says why. Idempotent.
///
/// Why it is safe: neither function raises an error or notice that depends on a value it
/// compares (they answer true or false), so a row they are called on before the policy
/// condition reveals nothing of it.
pub async fn declare_search_leakproof(
    admin: &PgPool,
    database: &str,
) -> Result<LeakproofOutcome, DbError> {
    let options = (*admin.connect_options()).clone().database(database);
    let mut conn = PgConnection::connect_with(&options)
        .await
        .map_err(DbError::query(format!(
            "connect to {database} as the administrator"
        )))?;
    let result = declare_on(&mut conn).await;
    let _ = conn.close().await;
    result
}

async fn declare_on(conn: &mut PgConnection) -> Result<LeakproofOutcome, DbError> {
    let context = "declare the search operators LEAKPROOF";
    let already: bool = sqlx::query_scalar(LEAKPROOF)
        .bind(LEAKPROOF_SEARCH_FUNCTIONS)
        .persistent(false)
        .fetch_one(&mut *conn)
        .await
        .map_err(DbError::query(context))?;
    if already {
        return Ok(LeakproofOutcome::AlreadyInPlace);
    }
    let superuser: bool =
        sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            .persistent(false)
            .fetch_one(&mut *conn)
            .await
            .map_err(DbError::query(context))?;
    if !superuser {
        return Ok(LeakproofOutcome::NotPossible(
            "the administrator role is not a superuser".to_owned(),
        ));
    }
    for function in LEAKPROOF_SEARCH_FUNCTIONS {
        // A constant of this module.
        let alter = format!("ALTER FUNCTION {function} LEAKPROOF");
        match sqlx::raw_sql(sqlx::AssertSqlSafe(alter))
            .execute(&mut *conn)
            .await
        {
            Ok(_) => {}
            Err(err)
                if err.as_database_error().and_then(|e| e.code()).as_deref() == Some("42501") =>
            {
                return Ok(LeakproofOutcome::NotPossible(
                    "permission denied to alter the functions".to_owned(),
                ));
            }
            Err(err) => return Err(DbError::query(context)(err)),
        }
    }
    Ok(LeakproofOutcome::Declared)
}
