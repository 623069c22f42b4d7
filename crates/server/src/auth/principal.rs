//! Who a request acts for: a name (for logs and the rate limit), a tenant (whose memories) and
//! scopes (what it may do). Authentication produces one per HTTP request and puts it into the
//! request's extensions; the MCP handlers read it from there (`Principal::of`). stdio has one
//! for the whole session (`stdio`).

use std::net::IpAddr;

use crate::auth::scopes::{Scope, Scopes};
use crate::config::AppConfig;
use crate::tenancy::Tenant;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    name: String,
    tenant: Tenant,
    scopes: Scopes,
}

impl Principal {
    pub fn new(name: impl Into<String>, tenant: Tenant, scopes: Scopes) -> Self {
        Self {
            name: name.into(),
            tenant,
            scopes,
        }
    }

    /// The single `server.auth.token` and its previous tokens: one principal, so rotating from
    /// the previous to the current token hands no client a fresh rate-limit allowance.
    pub fn static_token() -> Self {
        Self::new("token", Tenant::default(), Scopes::ALL)
    }

    /// Authentication off (development on loopback): each address its own anonymous principal.
    pub fn anonymous(client: IpAddr) -> Self {
        Self::new(
            format!("anonymous@{client}"),
            Tenant::default(),
            Scopes::ALL,
        )
    }

    /// `name` as the log and the rate limit know it: `token`, `key:<name>`, `jwt:<sub>`,
    /// `anonymous@<address>`, `stdio`. Never a credential.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn tenant(&self) -> &Tenant {
        &self.tenant
    }

    pub fn scopes(&self) -> Scopes {
        self.scopes
    }

    /// `Ok` when the principal holds `scope`, else the tool error text naming it.
    pub fn require(&self, scope: Scope, what: &str) -> Result<(), String> {
        if self.scopes.contains(scope) {
            return Ok(());
        }
        let held = if self.scopes.is_empty() {
            "none".to_owned()
        } else {
            self.scopes.to_string()
        };
        Err(format!(
            "insufficient scope: {what} needs {scope}; {} holds {held}",
            self.name
        ))
    }
}

/// The tenant stdio serves: `memory.tenant`.
pub fn stdio_tenant(config: &AppConfig) -> Tenant {
    config.memory.tenant()
}

/// The principal of a stdio session: the client launched us, so it holds every scope.
pub fn stdio(config: &AppConfig) -> Principal {
    Principal::new("stdio", stdio_tenant(config), Scopes::ALL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_scope_is_named() {
        let reader = Principal::new(
            "key:reader",
            Tenant::new("team-a").unwrap(),
            Scopes::NONE.with(Scope::Read),
        );
        assert_eq!(reader.require(Scope::Read, "search_memory"), Ok(()));
        let refusal = reader.require(Scope::Forget, "forget").unwrap_err();
        assert_eq!(
            refusal,
            "insufficient scope: forget needs memory:forget; key:reader holds memory:read"
        );
    }
}
