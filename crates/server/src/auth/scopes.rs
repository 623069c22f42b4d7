//! The server's OAuth scopes and which MCP operation needs which.
//!
//! `memory:read` reads (search_memory, get_session, memory_status, resources/read),
//! `memory:write` stores (store_raw_dialogue, store_insight), `memory:forget` erases (forget).
//! Listing tools, resources and templates needs no scope: it shows what exists, not memories.

use std::fmt;

/// One scope this server defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Read,
    Write,
    Forget,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Write, Scope::Forget];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "memory:read",
            Scope::Write => "memory:write",
            Scope::Forget => "memory:forget",
        }
    }

    /// The scope named `name`, or `None` for any other string (another server's scope).
    pub fn parse(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == name)
    }

    fn bit(self) -> u8 {
        match self {
            Scope::Read => 1,
            Scope::Write => 2,
            Scope::Forget => 4,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of [`Scope`]s. Displays as the space-separated list OAuth uses (`scope="…"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Scopes(u8);

impl Scopes {
    pub const NONE: Scopes = Scopes(0);
    pub const ALL: Scopes = Scopes(7);

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn with(self, scope: Scope) -> Scopes {
        Scopes(self.0 | scope.bit())
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL
            .into_iter()
            .filter(move |scope| self.contains(*scope))
    }

    /// The names, in the order of [`Scope::ALL`].
    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Scope::as_str).collect()
    }

    /// Our scopes among `names` (e.g. a token's `scope` claim); other servers' scopes are ignored.
    pub fn from_granted<'a>(names: impl IntoIterator<Item = &'a str>) -> Scopes {
        names
            .into_iter()
            .filter_map(Scope::parse)
            .fold(Scopes::NONE, Scopes::with)
    }

    /// A configured list such as `memory:read,memory:write` (commas or spaces); every entry must
    /// be one of ours and the list must not be empty. The error names the bad entry (scope names
    /// are not secret).
    pub fn parse_list(text: &str) -> Result<Scopes, String> {
        let mut scopes = Scopes::NONE;
        for name in text.split([',', ' ']).filter(|name| !name.is_empty()) {
            let scope = Scope::parse(name)
                .ok_or_else(|| format!("unknown scope {name:?}; the scopes are {}", Scopes::ALL))?;
            scopes = scopes.with(scope);
        }
        if scopes.is_empty() {
            return Err(format!("no scopes; give some of {}", Scopes::ALL));
        }
        Ok(scopes)
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(" "))
    }
}

/// The scope a tool needs, or `None` for a name that is not one of our tools.
pub fn for_tool(tool: &str) -> Option<Scope> {
    match tool {
        "search_memory" | "get_session" | "memory_status" => Some(Scope::Read),
        "store_raw_dialogue" | "store_insight" => Some(Scope::Write),
        "forget" => Some(Scope::Forget),
        _ => None,
    }
}

/// The scope `resources/read` needs.
pub const RESOURCES: Scope = Scope::Read;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_and_print_as_oauth_scope_strings() {
        let scopes = Scopes::parse_list("memory:write, memory:read").unwrap();
        assert_eq!(scopes.to_string(), "memory:read memory:write");
        assert!(!scopes.contains(Scope::Forget));
        assert_eq!(
            Scopes::ALL.to_string(),
            "memory:read memory:write memory:forget"
        );
        assert!(
            Scopes::parse_list("memory:admin")
                .unwrap_err()
                .contains("memory:admin")
        );
        assert!(Scopes::parse_list(" , ").is_err());
        assert_eq!(
            Scopes::from_granted("openid memory:forget profile".split(' ')),
            Scopes::NONE.with(Scope::Forget)
        );
    }

    #[test]
    fn every_tool_needs_a_scope() {
        for tool in crate::mcp::TOOLS {
            assert!(for_tool(tool).is_some(), "{tool}");
        }
        assert_eq!(for_tool("forget"), Some(Scope::Forget));
        assert_eq!(for_tool("nope"), None);
    }
}
