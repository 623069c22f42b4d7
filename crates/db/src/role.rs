//! The login role's privileges: a daemon serving memories needs none beyond its own database.

use std::fmt;

use sqlx::PgPool;

use crate::DbError;

/// The attributes of the role a pool logs in as (`pg_roles` of `current_user`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleAttributes {
    pub name: String,
    pub superuser: bool,
    pub bypass_rls: bool,
    pub create_role: bool,
    pub create_db: bool,
}

const ROLE_ATTRIBUTES: &str = "\
SELECT rolname::text, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb
FROM pg_roles
WHERE rolname = current_user";

impl RoleAttributes {
    /// Attributes that defeat the environment separation (any database, any row): refused in
    /// staging and production.
    pub fn dangerous(&self) -> Vec<&'static str> {
        let mut found = Vec::new();
        if self.superuser {
            found.push("SUPERUSER");
        }
        if self.bypass_rls {
            found.push("BYPASSRLS");
        }
        found
    }

    /// Attributes a serving role does not need: warned about.
    pub fn needless(&self) -> Vec<&'static str> {
        let mut found = Vec::new();
        if self.create_role {
            found.push("CREATEROLE");
        }
        if self.create_db {
            found.push("CREATEDB");
        }
        found
    }
}

impl fmt::Display for RoleAttributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let attributes: Vec<&str> = self
            .dangerous()
            .into_iter()
            .chain(self.needless())
            .collect();
        if attributes.is_empty() {
            write!(
                f,
                "role {} (no SUPERUSER, BYPASSRLS, CREATEROLE or CREATEDB)",
                self.name
            )
        } else {
            write!(f, "role {} has {}", self.name, attributes.join(", "))
        }
    }
}

/// The attributes of the role `pool` logs in as.
pub async fn role_attributes(pool: &PgPool) -> Result<RoleAttributes, DbError> {
    let (name, superuser, bypass_rls, create_role, create_db): (String, bool, bool, bool, bool) =
        sqlx::query_as(ROLE_ATTRIBUTES)
            .fetch_one(pool)
            .await
            .map_err(DbError::query("read the login role's attributes"))?;
    Ok(RoleAttributes {
        name,
        superuser,
        bypass_rls,
        create_role,
        create_db,
    })
}
