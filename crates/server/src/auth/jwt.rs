//! JWT bearer tokens (`server.auth.jwt`): this server as an OAuth 2.1 resource server.
//!
//! A token is accepted when its header's `alg` is one of `algorithms`, its `kid` names a key of
//! the JWKS (whose own `alg`, if given, agrees), the signature verifies, `iss` equals `issuer`,
//! `aud` holds one of `audience`, `exp` has not passed and `nbf` (if present) has (both with
//! `leeway_secs`). The tenant comes from `tenant_claim`, the scopes from `scope_claim` (a
//! space-separated string or an array; scopes of other servers are ignored).
//! Every refusal is a [`JwtRefusal`], whose text is logged; the token never is.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::auth::jwks::{Jwks, JwksSource, KeyLookup};
use crate::auth::principal::Principal;
use crate::auth::scopes::Scopes;
use crate::tenancy::Tenant;

/// What a token is checked against.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub tenant_claim: String,
    pub scope_claim: String,
    pub leeway_secs: u64,
}

/// Why a token was refused. The texts name the check, never the token or a claim's value
/// except the (short, checked) algorithm name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtRefusal {
    Malformed,
    AlgorithmNotAllowed(String),
    UnknownKid,
    NoKid,
    JwksUnavailable,
    KeyMismatch,
    BadSignature,
    WrongIssuer,
    WrongAudience,
    Expired,
    NotYetValid,
    MissingClaim(String),
    BadTenant,
}

impl fmt::Display for JwtRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwtRefusal::Malformed => f.write_str("jwt: malformed token"),
            JwtRefusal::AlgorithmNotAllowed(alg) => {
                write!(
                    f,
                    "jwt: algorithm {alg} is not in server.auth.jwt.algorithms"
                )
            }
            JwtRefusal::UnknownKid => {
                f.write_str("jwt: unknown kid (not in the JWKS, even after a refetch)")
            }
            JwtRefusal::NoKid => f.write_str("jwt: no kid, and the JWKS holds several keys"),
            JwtRefusal::JwksUnavailable => f.write_str("jwt: the JWKS could not be loaded"),
            JwtRefusal::KeyMismatch => {
                f.write_str("jwt: the JWKS key does not fit the token's algorithm")
            }
            JwtRefusal::BadSignature => f.write_str("jwt: bad signature"),
            JwtRefusal::WrongIssuer => f.write_str("jwt: wrong issuer"),
            JwtRefusal::WrongAudience => f.write_str("jwt: wrong audience"),
            JwtRefusal::Expired => f.write_str("jwt: expired"),
            JwtRefusal::NotYetValid => f.write_str("jwt: not yet valid (nbf)"),
            JwtRefusal::MissingClaim(claim) => write!(f, "jwt: missing claim {claim}"),
            JwtRefusal::BadTenant => {
                f.write_str("jwt: the tenant claim is not a valid tenant name")
            }
        }
    }
}

/// Whether `token` is shaped like a JWS (three base64url parts), to tell it from an API key.
pub fn looks_like_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && parts[..2].iter().all(|p| !p.is_empty())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Validates tokens against [`JwtSettings`] with the keys of a [`Jwks`].
#[derive(Debug)]
pub struct JwtValidator {
    settings: JwtSettings,
    jwks: Jwks,
}

impl JwtValidator {
    pub fn new(
        settings: JwtSettings,
        source: JwksSource,
        min_refetch: Duration,
        max_age: Duration,
    ) -> Result<Self, String> {
        super::jwt_ring::install();
        Ok(Self {
            settings,
            jwks: Jwks::new(source, min_refetch, max_age)?,
        })
    }

    pub fn jwks(&self) -> &Jwks {
        &self.jwks
    }

    /// The principal `token` names, or why it is refused.
    pub async fn validate(&self, token: &str) -> Result<Principal, JwtRefusal> {
        let header = read_header(token)?;
        let alg_name = header.get("alg").and_then(Value::as_str).unwrap_or("");
        let shown = if !alg_name.is_empty()
            && alg_name.len() <= 10
            && alg_name.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            alg_name.to_owned()
        } else {
            "(unreadable)".to_owned()
        };
        let algorithm = self
            .settings
            .algorithms
            .iter()
            .copied()
            .find(|alg| format!("{alg:?}") == alg_name)
            .ok_or(JwtRefusal::AlgorithmNotAllowed(shown))?;
        let kid = header.get("kid").and_then(Value::as_str);
        let jwk = self.jwks.key(kid).await.map_err(|lookup| match lookup {
            KeyLookup::UnknownKid => JwtRefusal::UnknownKid,
            KeyLookup::NoKid => JwtRefusal::NoKid,
            KeyLookup::Unavailable => JwtRefusal::JwksUnavailable,
        })?;
        if let Some(key_alg) = &jwk.common.key_algorithm
            && key_alg.to_string() != alg_name
        {
            return Err(JwtRefusal::KeyMismatch);
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| JwtRefusal::KeyMismatch)?;
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&self.settings.audiences);
        validation.leeway = self.settings.leeway_secs;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.required_spec_claims =
            HashSet::from(["exp".to_owned(), "iss".to_owned(), "aud".to_owned()]);
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(|err| match err.kind() {
                ErrorKind::InvalidSignature => JwtRefusal::BadSignature,
                ErrorKind::ExpiredSignature => JwtRefusal::Expired,
                ErrorKind::ImmatureSignature => JwtRefusal::NotYetValid,
                ErrorKind::InvalidIssuer => JwtRefusal::WrongIssuer,
                ErrorKind::InvalidAudience => JwtRefusal::WrongAudience,
                ErrorKind::MissingRequiredClaim(claim) => JwtRefusal::MissingClaim(claim.clone()),
                ErrorKind::InvalidAlgorithm
                | ErrorKind::InvalidKeyFormat
                | ErrorKind::InvalidRsaKey(_)
                | ErrorKind::InvalidEcdsaKey
                | ErrorKind::InvalidEddsaKey
                | ErrorKind::UnsupportedAlgorithm => JwtRefusal::KeyMismatch,
                _ => JwtRefusal::Malformed,
            })?
            .claims;
        let tenant = match claims.get(&self.settings.tenant_claim) {
            Some(Value::String(name)) => {
                Tenant::new(name.as_str()).map_err(|_| JwtRefusal::BadTenant)?
            }
            Some(_) => return Err(JwtRefusal::BadTenant),
            None => return Err(JwtRefusal::MissingClaim(self.settings.tenant_claim.clone())),
        };
        let scopes = match claims.get(&self.settings.scope_claim) {
            Some(Value::String(granted)) => Scopes::from_granted(granted.split(' ')),
            Some(Value::Array(granted)) => {
                Scopes::from_granted(granted.iter().filter_map(Value::as_str))
            }
            _ => Scopes::NONE,
        };
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|sub| sub.len() <= 128 && sub.chars().all(|c| c.is_ascii_graphic()))
            .unwrap_or("?");
        Ok(Principal::new(format!("jwt:{subject}"), tenant, scopes))
    }
}

/// The token's header as JSON, read before anything else so that `alg: none` and unknown
/// algorithms are named in the log (jsonwebtoken's own parser only says "invalid").
fn read_header(token: &str) -> Result<Map<String, Value>, JwtRefusal> {
    let encoded = token.split('.').next().ok_or(JwtRefusal::Malformed)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded.trim_end_matches('='))
        .map_err(|_| JwtRefusal::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(header)) => Ok(header),
        _ => Err(JwtRefusal::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_shapes_are_told_from_keys() {
        assert!(looks_like_jwt("eyJh.eyJi.c2ln"));
        assert!(looks_like_jwt("eyJh.eyJi."));
        assert!(!looks_like_jwt("cmk_abcdef"));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a.b.c d"));
    }
}
