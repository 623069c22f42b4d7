//! The one place that knows what a credential is. A bearer token is tried, in this order,
//! against the static tokens (`server.auth.token` and previous ones: tenant `default`, every
//! scope), the named API keys (`server.auth.keys_file`) and, when it is shaped like a JWT,
//! `server.auth.jwt`. Any of them may be configured alone or together.

use std::net::IpAddr;
use std::path::Path;

use axum::http::{HeaderMap, header};
use time::OffsetDateTime;

use crate::auth::api_keys::{KeyRefusal, KeysFileError, SharedApiKeys};
use crate::auth::jwt::{self, JwtValidator};
use crate::auth::principal::Principal;
use crate::auth::resource_metadata::ResourceMetadata;
use crate::auth::setup;
use crate::auth::token_set::{AuthError, SharedTokenSet, TokenSet};
use crate::config::{ServerConfig, Transport};

/// Why a request is not authenticated. `reason` is for the log (never the token); the client
/// gets [`AuthRefusal::public`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRefusal {
    /// Whether an `Authorization: Bearer` header was sent at all.
    pub presented: bool,
    pub reason: String,
}

impl AuthRefusal {
    /// The 401 body.
    pub fn public(&self) -> &'static str {
        if self.presented {
            "invalid bearer token"
        } else {
            "missing bearer token (send Authorization: Bearer <token>)"
        }
    }
}

/// Why the credentials could not be set up at start-up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("server.auth.keys_file: {0}")]
    Keys(#[from] KeysFileError),
    #[error("server.auth.jwt: {0}")]
    Jwt(String),
}

/// The credentials `/mcp` accepts. With none of them (authentication off: development on
/// loopback) every request is its address's anonymous principal.
#[derive(Debug)]
pub struct Authenticator {
    enabled: bool,
    /// SIGHUP replaces the accepted tokens in place (`reload.rs`).
    pub tokens: Option<SharedTokenSet>,
    pub keys: Option<SharedApiKeys>,
    pub jwt: Option<JwtValidator>,
    pub metadata: Option<ResourceMetadata>,
}

/// The tokens `/mcp` accepts under `server`, or `None` when it needs none.
pub fn token_set(server: &ServerConfig) -> Option<TokenSet> {
    let auth = &server.auth;
    let current = auth.token.as_ref().filter(|_| auth.required)?;
    Some(TokenSet::new(
        current,
        auth.previous_tokens.as_ref().unwrap_or(&Default::default()),
    ))
}

impl Authenticator {
    /// From a validated configuration; reads the keys file and a JWKS file.
    pub fn from_config(server: &ServerConfig) -> Result<Self, SetupError> {
        let auth = &server.auth;
        let enabled = auth.required;
        // A stdio server builds the router only for its own /health probe: it reads no
        // credential files (and its /mcp, unreachable anyway, accepts nothing but a token).
        let http = enabled && server.transport == Transport::Http;
        let keys = match (&auth.keys_file, http) {
            (Some(path), true) => Some(SharedApiKeys::load(Path::new(path))?),
            _ => None,
        };
        let jwt = match setup::jwt_settings(&auth.jwt).filter(|_| http) {
            Some((settings, source, min_refetch, max_age)) => Some(
                JwtValidator::new(settings, source, min_refetch, max_age)
                    .map_err(SetupError::Jwt)?,
            ),
            None => None,
        };
        Ok(Self {
            enabled,
            tokens: token_set(server).map(SharedTokenSet::new),
            keys,
            jwt,
            metadata: setup::resource_metadata(auth),
        })
    }

    /// Fetches the JWKS once at start-up, so a wrong URL shows in the log before any client.
    pub async fn warm_up(&self) {
        if let Some(jwt) = &self.jwt {
            let _ = jwt.jwks().refresh().await;
        }
    }

    /// The principal the request's credentials name, or why they are refused.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        client: IpAddr,
    ) -> Result<Principal, AuthRefusal> {
        if !self.enabled {
            return Ok(Principal::anonymous(client));
        }
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "));
        let Some(presented) = presented else {
            return Err(AuthRefusal {
                presented: headers.contains_key(header::AUTHORIZATION),
                reason: "no bearer token".to_owned(),
            });
        };
        let mut reasons: Vec<String> = Vec::new();
        if let Some(tokens) = &self.tokens {
            match tokens.check(headers) {
                Ok(_) => return Ok(Principal::static_token()),
                Err(AuthError::Expired(id)) => reasons.push(format!("expired static token {id}")),
                Err(_) => {}
            }
        }
        if let Some(keys) = &self.keys {
            match keys
                .current()
                .check_at(presented, OffsetDateTime::now_utc())
            {
                Ok(principal) => return Ok(principal),
                Err(KeyRefusal::Expired(name)) => reasons.push(format!("expired API key {name}")),
                Err(KeyRefusal::Unknown) => {}
            }
        }
        if let Some(validator) = &self.jwt
            && let Ok(text) = std::str::from_utf8(presented)
            && jwt::looks_like_jwt(text)
        {
            match validator.validate(text).await {
                Ok(principal) => return Ok(principal),
                Err(refusal) => reasons.push(refusal.to_string()),
            }
        }
        if reasons.is_empty() {
            reasons.push("unknown bearer token".to_owned());
        }
        Err(AuthRefusal {
            presented: true,
            reason: reasons.join("; "),
        })
    }
}
