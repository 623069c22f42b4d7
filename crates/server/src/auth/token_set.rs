//! The accepted bearer tokens: the current one plus previous ones kept while clients move over.
//!
//! A rotation without downtime: put the new token in `server.auth.token` and the old one in
//! `server.auth.previous_tokens` (optionally `;expires=<RFC 3339 time>`), reload (SIGHUP), move
//! the clients, then remove the old one and reload again. Both are accepted in between.
//!
//! Tokens are kept only as SHA-256 digests; a presented token is hashed and compared with every
//! accepted digest in constant time (`subtle`), so neither the time taken nor an early exit tells
//! how much of a guess matched or which entry it was compared with.

use std::fmt;
use std::sync::{Arc, RwLock};

use axum::http::{HeaderMap, header};
use config_core::{ConfigValue, RawValue, ValueKind};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Which accepted token a request presented. Never the token itself: safe to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenId {
    /// `server.auth.token`.
    Current,
    /// Entry `n` (from 1) of `server.auth.previous_tokens`.
    Previous(usize),
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenId::Current => f.write_str("current"),
            TokenId::Previous(n) => write!(f, "previous-{n}"),
        }
    }
}

/// Why a request is not authenticated. The texts are for the client's 401 body and the log; they
/// never contain what was presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token (send Authorization: Bearer <token>)")]
    Missing,
    #[error("invalid bearer token")]
    Invalid,
    /// A previous token whose `expires=` time has passed.
    #[error("expired bearer token; use the current one")]
    Expired(TokenId),
}

/// One entry of `server.auth.previous_tokens`: a token and when it stops being accepted.
#[derive(Clone)]
pub struct PreviousToken {
    pub token: SecretString,
    pub expires: Option<OffsetDateTime>,
}

impl fmt::Debug for PreviousToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreviousToken")
            .field("token", &"[REDACTED]")
            .field("expires", &self.expires)
            .finish()
    }
}

/// `server.auth.previous_tokens`: entries separated by commas or newlines (one per line in a
/// credential file), each `TOKEN` or `TOKEN;expires=2026-12-31T23:59:59Z`.
#[derive(Debug, Clone, Default)]
pub struct PreviousTokens(pub Vec<PreviousToken>);

impl PreviousTokens {
    /// Parses the key's text. Errors name the entry by position, never its content.
    pub fn parse_text(text: &str) -> Result<Self, String> {
        let mut entries = Vec::new();
        for (index, entry) in text
            .split([',', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .enumerate()
        {
            let n = index + 1;
            let (token, expires) = match entry.split_once(';') {
                None => (entry, None),
                Some((token, attribute)) => {
                    let Some(when) = attribute.trim().strip_prefix("expires=") else {
                        return Err(format!(
                            "entry {n}: expected TOKEN or TOKEN;expires=<RFC 3339 time>"
                        ));
                    };
                    let when = OffsetDateTime::parse(when.trim(), &Rfc3339).map_err(|_| {
                        format!(
                            "entry {n}: the expiry is not an RFC 3339 time such as 2026-12-31T23:59:59Z"
                        )
                    })?;
                    (token.trim(), Some(when))
                }
            };
            if token.is_empty() {
                return Err(format!("entry {n}: the token is empty"));
            }
            entries.push(PreviousToken {
                token: SecretString::from(token.to_owned()),
                expires,
            });
        }
        Ok(PreviousTokens(entries))
    }
}

impl ConfigValue for PreviousTokens {
    const KIND: ValueKind = ValueKind::Secret;
    const SECRET: bool = true;

    fn parse(raw: &RawValue) -> Result<Self, String> {
        match raw {
            RawValue::Text(text) => Self::parse_text(text.expose_secret()),
            RawValue::List(items) => {
                let joined = SecretString::from(
                    items
                        .iter()
                        .map(|i| i.expose_secret())
                        .collect::<Vec<_>>()
                        .join("\n"),
                );
                Self::parse_text(joined.expose_secret())
            }
            RawValue::Null => Ok(PreviousTokens::default()),
        }
    }
}

struct Accepted {
    id: TokenId,
    digest: [u8; 32],
    expires: Option<OffsetDateTime>,
}

/// The tokens `/mcp` accepts, as digests. `Debug` shows only ids and expiries.
pub struct TokenSet {
    accepted: Vec<Accepted>,
}

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.accepted.iter().map(|a| (a.id, a.expires)))
            .finish()
    }
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

impl TokenSet {
    /// The current token and the previous ones.
    pub fn new(current: &SecretString, previous: &PreviousTokens) -> Self {
        let mut accepted = vec![Accepted {
            id: TokenId::Current,
            digest: digest(current.expose_secret().as_bytes()),
            expires: None,
        }];
        accepted.extend(previous.0.iter().enumerate().map(|(i, p)| Accepted {
            id: TokenId::Previous(i + 1),
            digest: digest(p.token.expose_secret().as_bytes()),
            expires: p.expires,
        }));
        TokenSet { accepted }
    }

    /// Checks the request's `Authorization: Bearer` header now.
    pub fn check(&self, headers: &HeaderMap) -> Result<TokenId, AuthError> {
        self.check_at(headers, OffsetDateTime::now_utc())
    }

    /// Checks the request's `Authorization: Bearer` header at `now`.
    pub fn check_at(&self, headers: &HeaderMap, now: OffsetDateTime) -> Result<TokenId, AuthError> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "))
            .ok_or(AuthError::Missing)?;
        let presented = digest(presented);
        // Every entry is compared; the match is picked without branching on the comparison.
        let mut found: Option<&Accepted> = None;
        for accepted in &self.accepted {
            let equal: bool = accepted.digest.ct_eq(&presented).into();
            if equal && found.is_none() {
                found = Some(accepted);
            }
        }
        match found {
            None => Err(AuthError::Invalid),
            Some(accepted) if accepted.expires.is_some_and(|when| when <= now) => {
                Err(AuthError::Expired(accepted.id))
            }
            Some(accepted) => Ok(accepted.id),
        }
    }

    /// The ids in the set, for log lines ("current, previous-1").
    pub fn ids(&self) -> Vec<TokenId> {
        self.accepted.iter().map(|a| a.id).collect()
    }

    /// Whether both sets accept exactly the same tokens with the same expiries.
    pub fn same_as(&self, other: &TokenSet) -> bool {
        self.accepted.len() == other.accepted.len()
            && self
                .accepted
                .iter()
                .zip(&other.accepted)
                .all(|(a, b)| a.id == b.id && a.digest == b.digest && a.expires == b.expires)
    }
}

/// The daemon's current [`TokenSet`], replaced as a whole by a reload; requests in flight keep
/// the set they started with.
#[derive(Debug)]
pub struct SharedTokenSet(RwLock<Arc<TokenSet>>);

impl SharedTokenSet {
    pub fn new(set: TokenSet) -> Self {
        SharedTokenSet(RwLock::new(Arc::new(set)))
    }

    /// The set in effect now.
    pub fn current(&self) -> Arc<TokenSet> {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn check(&self, headers: &HeaderMap) -> Result<TokenId, AuthError> {
        self.current().check(headers)
    }

    /// Puts `set` in effect for every request from now on.
    pub fn replace(&self, set: TokenSet) {
        *self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(set);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    fn set(previous: &str) -> TokenSet {
        TokenSet::new(
            &SecretString::from("current-0123456789abcdef"),
            &PreviousTokens::parse_text(previous).unwrap(),
        )
    }

    #[test]
    fn current_and_previous_tokens_are_accepted_until_they_expire() {
        let set =
            set("old-one-0123456789abcdef;expires=2026-12-01T12:00:00Z,\nold-two-0123456789abcdef");
        let before = OffsetDateTime::parse("2026-12-01T11:59:59Z", &Rfc3339).unwrap();
        let after = OffsetDateTime::parse("2026-12-01T12:00:00Z", &Rfc3339).unwrap();
        let check = |value: &str, now| set.check_at(&headers(value), now);
        assert_eq!(
            check("Bearer current-0123456789abcdef", before),
            Ok(TokenId::Current)
        );
        assert_eq!(
            check("Bearer old-one-0123456789abcdef", before),
            Ok(TokenId::Previous(1))
        );
        assert_eq!(
            check("Bearer old-one-0123456789abcdef", after),
            Err(AuthError::Expired(TokenId::Previous(1)))
        );
        assert_eq!(
            check("Bearer old-two-0123456789abcdef", after),
            Ok(TokenId::Previous(2))
        );
        assert_eq!(
            check("Bearer current-0123456789abcdeF", before),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            check("Basic current-0123456789abcdef", before),
            Err(AuthError::Missing)
        );
        assert_eq!(
            set.check_at(&HeaderMap::new(), before),
            Err(AuthError::Missing)
        );
    }

    #[test]
    fn bad_entries_are_named_by_position_only() {
        let err = PreviousTokens::parse_text("canary-aaaa;expires=tomorrow").unwrap_err();
        assert!(err.contains("entry 1") && !err.contains("canary"), "{err}");
        let err = PreviousTokens::parse_text("a, canary-b;until=x").unwrap_err();
        assert!(err.contains("entry 2") && !err.contains("canary"), "{err}");
        assert!(PreviousTokens::parse_text(" , \n").unwrap().0.is_empty());
    }

    #[test]
    fn debug_shows_no_token() {
        let set = set("canary-old-token");
        let shown = format!(
            "{set:?} {:?}",
            PreviousTokens::parse_text("canary-x").unwrap()
        );
        assert!(
            !shown.contains("canary") && !shown.contains("current-0123"),
            "{shown}"
        );
    }

    #[test]
    fn a_replaced_set_takes_effect() {
        let shared = SharedTokenSet::new(set(""));
        let old = headers("Bearer current-0123456789abcdef");
        assert_eq!(shared.check(&old), Ok(TokenId::Current));
        shared.replace(TokenSet::new(
            &SecretString::from("next-0123456789abcdef"),
            &PreviousTokens::default(),
        ));
        assert_eq!(shared.check(&old), Err(AuthError::Invalid));
    }
}
