//! Tenants: whose memories a request reads and writes.
//!
//! Every authenticated request resolves to a principal with a tenant (`auth`); the memory store
//! runs each statement with that tenant set for the transaction (`app.tenant`), and PostgreSQL's
//! row-level security policies restrict the statement to it. This module holds only the
//! validated tenant name, shared by the authentication and the database side.

use std::fmt;

/// A tenant name: 1–63 characters, lowercase ASCII letters, digits, `_`, `-` and `.`, starting
/// with a letter or digit. Safe to log (it names an owner of memories, not a credential).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tenant(String);

/// The tenant of the single `MCP_AUTH_TOKEN`, of stdio unless configured otherwise, and of the
/// rows that existed before tenancy.
pub const DEFAULT_TENANT: &str = "default";

/// Why a string is not a tenant name. Names the rule, and the value only because tenant names are
/// not secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    #[error("a tenant name must not be empty")]
    Empty,
    #[error("tenant name {0:?} is longer than 63 characters")]
    TooLong(String),
    #[error(
        "tenant name {0:?} may hold only lowercase letters, digits, '_', '-' and '.', and must start with a letter or digit"
    )]
    Invalid(String),
}

impl Tenant {
    /// Validates `name` (see the type's documentation).
    pub fn new(name: impl Into<String>) -> Result<Self, TenantError> {
        let name = name.into();
        if name.is_empty() {
            return Err(TenantError::Empty);
        }
        if name.len() > 63 {
            return Err(TenantError::TooLong(name));
        }
        let mut chars = name.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let rest_ok = chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.'));
        if !(first_ok && rest_ok) {
            return Err(TenantError::Invalid(name));
        }
        Ok(Tenant(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Tenant {
    fn default() -> Self {
        Tenant(DEFAULT_TENANT.to_owned())
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Tenant {
    type Err = TenantError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tenant::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rules() {
        assert_eq!(Tenant::default().as_str(), "default");
        assert!(Tenant::new("team-a.project_1").is_ok());
        assert_eq!(Tenant::new(""), Err(TenantError::Empty));
        assert!(matches!(Tenant::new("A"), Err(TenantError::Invalid(_))));
        assert!(matches!(Tenant::new("-a"), Err(TenantError::Invalid(_))));
        assert!(matches!(Tenant::new("a b"), Err(TenantError::Invalid(_))));
        assert!(matches!(
            Tenant::new("x".repeat(64)),
            Err(TenantError::TooLong(_))
        ));
    }
}
