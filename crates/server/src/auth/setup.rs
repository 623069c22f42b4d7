//! `server.auth.*` beyond the single token: validation of the keys file, the JWT settings and
//! the resource metadata (errors name the key and, for the keys file, file:line), and the
//! settings the [`super::Authenticator`] is built from.

use std::path::Path;
use std::time::Duration;

use config_core::{Environment, Validator};
use jsonwebtoken::Algorithm;

use crate::auth::api_keys::ApiKeys;
use crate::auth::jwks::JwksSource;
use crate::auth::jwt::JwtSettings;
use crate::auth::jwt_ring;
use crate::auth::resource_metadata::ResourceMetadata;
use crate::config::{AuthConfig, JwtConfig, ServerConfig, Transport};

/// Records every problem of `server.auth.{keys_file, jwt, resource_url, authorization_servers}`.
pub fn validate(server: &ServerConfig, v: &mut Validator<'_>) {
    let auth = &server.auth;
    let env = v.environment();
    // Files are read only where they are used: a stdio client sharing the file need not read it.
    let http = server.transport == Transport::Http && auth.required;
    if !auth.required && (auth.keys_file.is_some() || auth.jwt.issuer.is_some()) {
        v.warning(
            "auth.required",
            "false, so server.auth.keys_file and server.auth.jwt are not used: every request is anonymous",
        );
    }
    if let Some(path) = &auth.keys_file {
        if !Path::new(path).is_absolute() {
            v.error("auth.keys_file", "must be an absolute path");
        } else if http {
            match ApiKeys::load(Path::new(path)) {
                Err(err) => v.error("auth.keys_file", err.to_string()),
                Ok(keys) if keys.is_empty() => v.warning(
                    "auth.keys_file",
                    format!("{path} holds no keys; add lines made by `cognitive-memory-mcp auth new-key`"),
                ),
                Ok(_) => {}
            }
        }
    }
    if let Some(url) = &auth.resource_url
        && let Err(problem) = check_url(url, env, "resource_url")
    {
        v.error("auth.resource_url", problem);
    }
    for (index, server_url) in auth.authorization_servers.iter().enumerate() {
        if let Err(problem) = check_url(server_url, env, "authorization server") {
            v.error(&format!("auth.authorization_servers[{index}]"), problem);
        }
    }
    let jwt = &auth.jwt;
    let Some(issuer) = &jwt.issuer else {
        if jwt.jwks_url.is_some() || jwt.jwks_file.is_some() || !jwt.audience.is_empty() {
            v.warning(
                "auth.jwt.issuer",
                "unset, so JWT authentication is off although other server.auth.jwt keys are set",
            );
        }
        return;
    };
    if issuer.trim().is_empty() {
        v.error("auth.jwt.issuer", "must not be empty");
    }
    if jwt.audience.iter().all(|a| a.trim().is_empty()) {
        v.error(
            "auth.jwt.audience",
            "required with server.auth.jwt.issuer: the aud value tokens for this server carry (with Entra ID the application's client id)",
        );
    }
    match (&jwt.jwks_url, &jwt.jwks_file) {
        (None, None) => v.error(
            "auth.jwt.jwks_url",
            "set jwks_url or jwks_file with server.auth.jwt.issuer",
        ),
        (Some(_), Some(_)) => v.error(
            "auth.jwt.jwks_file",
            "set only one of jwks_url and jwks_file",
        ),
        (Some(url), None) => {
            if let Err(problem) = check_jwks_url(url, env) {
                v.error("auth.jwt.jwks_url", problem);
            }
        }
        (None, Some(path)) => {
            if !Path::new(path).is_absolute() {
                v.error("auth.jwt.jwks_file", "must be an absolute path");
            } else if http
                && let Err(err) = crate::auth::jwks::Jwks::new(
                    JwksSource::File(path.into()),
                    Duration::ZERO,
                    Duration::MAX,
                )
            {
                v.error("auth.jwt.jwks_file", err);
            }
        }
    }
    if jwt.algorithms.is_empty() {
        v.error(
            "auth.jwt.algorithms",
            "name at least one algorithm, e.g. [\"RS256\"]",
        );
    }
    for (index, name) in jwt.algorithms.iter().enumerate() {
        if let Err(problem) = algorithm(name) {
            v.error(&format!("auth.jwt.algorithms[{index}]"), problem);
        }
    }
    for (key, claim) in [
        ("auth.jwt.tenant_claim", &jwt.tenant_claim),
        ("auth.jwt.scope_claim", &jwt.scope_claim),
    ] {
        if claim.trim().is_empty() {
            v.error(key, "must name a claim");
        }
    }
    if jwt.leeway_secs > 300 {
        v.strict(
            "auth.jwt.leeway_secs",
            "more than 300 s accepts expired tokens for long; fix the clocks instead (NTP)",
        );
    }
    if auth.resource_url.is_none() {
        v.error(
            "auth.resource_url",
            "required with server.auth.jwt: the URL clients reach this server at, advertised in /.well-known/oauth-protected-resource",
        );
    }
    if auth.authorization_servers.is_empty() {
        v.error(
            "auth.authorization_servers",
            "required with server.auth.jwt: the issuer URL(s) of the authorization server, listed in the Protected Resource Metadata",
        );
    }
}

fn algorithm(name: &str) -> Result<Algorithm, String> {
    let supported: Vec<String> = jwt_ring::SUPPORTED
        .iter()
        .map(|a| format!("{a:?}"))
        .collect();
    jwt_ring::SUPPORTED
        .iter()
        .copied()
        .find(|alg| format!("{alg:?}") == name.trim())
        .ok_or_else(|| {
            format!(
                "{name:?} is not accepted; use one of {} (HMAC algorithms and none are never accepted)",
                supported.join(", ")
            )
        })
}

fn host_is_loopback(uri: &axum::http::Uri) -> bool {
    uri.host().is_some_and(|host| {
        host == "localhost"
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    })
}

fn parse_http_url(url: &str) -> Result<axum::http::Uri, String> {
    let uri: axum::http::Uri = url.trim().parse().map_err(|_| "is not a URL".to_owned())?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) => Ok(uri),
        _ => Err("must be an absolute http or https URL".to_owned()),
    }
}

/// The JWKS URL: `https` in staging and production (keys fetched over plain HTTP could be
/// swapped on the way); elsewhere `http` too.
fn check_jwks_url(url: &str, env: Environment) -> Result<(), String> {
    let uri = parse_http_url(url)?;
    if env.is_strict() && uri.scheme_str() != Some("https") {
        return Err(format!(
            "must use https in {env}: keys fetched over plain http could be replaced on the way"
        ));
    }
    Ok(())
}

/// Advertised URLs: `https` in production unless loopback.
fn check_url(url: &str, env: Environment, what: &str) -> Result<(), String> {
    let uri = parse_http_url(url)?;
    if env == Environment::Production
        && uri.scheme_str() != Some("https")
        && !host_is_loopback(&uri)
    {
        return Err(format!("the {what} must use https in production"));
    }
    Ok(())
}

/// The JWT settings of a validated configuration, or `None` when JWT is off.
pub fn jwt_settings(jwt: &JwtConfig) -> Option<(JwtSettings, JwksSource, Duration, Duration)> {
    let issuer = jwt.issuer.clone()?;
    let source = match (&jwt.jwks_url, &jwt.jwks_file) {
        (Some(url), _) => JwksSource::Url(url.trim().parse().ok()?),
        (None, Some(path)) => JwksSource::File(path.into()),
        (None, None) => return None,
    };
    let settings = JwtSettings {
        issuer,
        audiences: jwt.audience.clone(),
        algorithms: jwt
            .algorithms
            .iter()
            .filter_map(|name| algorithm(name).ok())
            .collect(),
        tenant_claim: jwt.tenant_claim.clone(),
        scope_claim: jwt.scope_claim.clone(),
        leeway_secs: jwt.leeway_secs,
    };
    Some((
        settings,
        source,
        Duration::from_secs(jwt.jwks_min_refetch_secs),
        Duration::from_secs(jwt.jwks_max_age_secs.max(1)),
    ))
}

/// The Protected Resource Metadata of a validated configuration.
pub fn resource_metadata(auth: &AuthConfig) -> Option<ResourceMetadata> {
    ResourceMetadata::new(auth.resource_url.as_deref()?, &auth.authorization_servers)
}
