//! The guards in front of `/mcp`, one function each; `http::router` stacks them in the order
//! they run. Each answers with one status (named in its doc) or passes the request on.
//!
//! Authentication is one call, [`Authenticator::authenticate`], that yields a [`Principal`];
//! everything after it (the per-principal rate limit) keys on that identity, and nothing before
//! it can be spent by a client without credentials except its own address's failure allowance.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::rate_limit::RateLimiter;
use crate::auth::resource_metadata::{insufficient_scope_challenge, unauthorized_challenge};
use crate::auth::{Authenticator, Principal, Scopes, SetupError, SharedTokenSet};
use crate::config::ServerConfig;

/// How long a request waits for room in the body budget before it is shed with 503.
const BODY_BUDGET_WAIT: Duration = Duration::from_secs(2);
/// `Retry-After` seconds on 503 answers.
const RETRY_AFTER_SECS: &str = "1";

/// Everything the guards need, built once from `server` (SIGHUP changes only the rates).
#[derive(Debug)]
pub struct Guard {
    origins: OriginPolicy,
    authenticator: Authenticator,
    trusted_proxies: Vec<IpAddr>,
    /// Failed authentication attempts per client address.
    pub failed_auth: RateLimiter<IpAddr>,
    /// Requests per authenticated principal.
    pub rate_limiter: RateLimiter<Principal>,
    in_flight: Arc<Semaphore>,
    body_budget: Arc<Semaphore>,
    max_body_bytes: usize,
    body_read_timeout: Duration,
}

impl Guard {
    /// The accepted bearer tokens, `None` when authentication is off; SIGHUP replaces them.
    pub fn tokens(&self) -> Option<&SharedTokenSet> {
        self.authenticator.tokens.as_ref()
    }

    /// The credentials (SIGHUP reloads the keys file and a JWKS file through it).
    pub fn authenticator(&self) -> &Authenticator {
        &self.authenticator
    }

    /// Reads the keys file and a JWKS file; their errors are configuration errors.
    pub fn new(server: &ServerConfig) -> Result<Self, SetupError> {
        let http = &server.http;
        Ok(Self {
            origins: OriginPolicy::new(http.bind, &http.allowed_origins, &http.allowed_hosts),
            authenticator: Authenticator::from_config(server)?,
            // Validated as IP addresses by the configuration schema.
            trusted_proxies: http
                .trusted_proxies
                .iter()
                .filter_map(|proxy| proxy.trim().parse().ok())
                .collect(),
            failed_auth: RateLimiter::new(server.rate_limit.failed_auth_per_minute),
            rate_limiter: RateLimiter::new(server.rate_limit.requests_per_minute),
            in_flight: Arc::new(Semaphore::new(http.max_in_flight)),
            body_budget: Arc::new(Semaphore::new(
                http.max_buffered_body_bytes.min(Semaphore::MAX_PERMITS),
            )),
            max_body_bytes: http.max_body_bytes,
            body_read_timeout: Duration::from_secs(http.body_read_timeout_secs),
        })
    }

    /// The client's address: the connection's peer, or, when the peer is a trusted proxy, the
    /// nearest address in `X-Forwarded-For` that is not a trusted proxy itself.
    fn client_address(&self, request: &Request) -> IpAddr {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([127, 0, 0, 1]), |info| info.0.ip());
        if !self.trusted_proxies.contains(&peer) {
            return peer;
        }
        let forwarded: Vec<IpAddr> = request
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|address| address.trim().parse().ok())
            .collect();
        forwarded
            .iter()
            .rev()
            .find(|address| !self.trusted_proxies.contains(address))
            .or(forwarded.first())
            .copied()
            .unwrap_or(peer)
    }
}

/// 403 for a `Host` or `Origin` that is not allowed (DNS rebinding, cross-origin pages).
pub async fn check_origin(
    State(guard): State<Arc<Guard>>,
    request: Request,
    next: Next,
) -> Response {
    match guard.origins.check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(reason) => {
            tracing::warn!("{reason}");
            (StatusCode::FORBIDDEN, format!("forbidden: {reason}\n")).into_response()
        }
    }
}

/// 401 for missing or wrong credentials (with the challenge pointing to the Protected Resource
/// Metadata); 429 once an address exceeds its failure allowance; 403 `insufficient_scope` for
/// valid credentials that grant none of the server's scopes. An authenticated request is never
/// counted nor refused by the failure allowance. The reason of a refusal is logged, never the
/// token.
pub async fn authenticate(
    State(guard): State<Arc<Guard>>,
    mut request: Request,
    next: Next,
) -> Response {
    let client = guard.client_address(&request);
    let metadata = guard.authenticator.metadata.as_ref();
    match guard
        .authenticator
        .authenticate(request.headers(), client)
        .await
    {
        Ok(principal) if principal.scopes().is_empty() => {
            tracing::info!(principal = %principal.name(), "refused: the credentials grant none of the server's scopes");
            Response::builder()
                .status(StatusCode::FORBIDDEN)
                .header(
                    header::WWW_AUTHENTICATE,
                    insufficient_scope_challenge(metadata, Scopes::ALL),
                )
                .body(Body::from(format!(
                    "insufficient scope: the token grants none of {}\n",
                    Scopes::ALL
                )))
                .expect("static response parts are valid")
        }
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(refusal) => {
            tracing::info!(reason = %refusal.reason, client = %client, "authentication refused");
            match guard.failed_auth.check(client) {
                Ok(()) => Response::builder()
                    .status(StatusCode::UNAUTHORIZED)
                    .header(
                        header::WWW_AUTHENTICATE,
                        unauthorized_challenge(metadata, refusal.presented),
                    )
                    .body(Body::from(format!("{}\n", refusal.public())))
                    .expect("static response parts are valid"),
                Err(wait) => too_many(wait, "too many failed authentication attempts\n"),
            }
        }
    }
}

/// 429 with `Retry-After` when the principal exceeds `server.rate_limit.requests_per_minute`.
pub async fn limit_principal(
    State(guard): State<Arc<Guard>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(principal) = request.extensions().get::<Principal>().cloned() else {
        // Unreachable behind `authenticate`; refuse rather than serve unauthenticated.
        return StatusCode::UNAUTHORIZED.into_response();
    };
    match guard.rate_limiter.check(principal) {
        Ok(()) => next.run(request).await,
        Err(wait) => too_many(wait, "rate limit exceeded\n"),
    }
}

/// 503 with `Retry-After` beyond `server.http.max_in_flight` requests at once.
pub async fn shed_load(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    let Ok(permit) = guard.in_flight.clone().try_acquire_owned() else {
        return unavailable("too many requests in progress; retry shortly\n");
    };
    let response = next.run(request).await;
    drop(permit);
    response
}

/// Reads the whole body within the budget: 413 above `server.http.max_body_bytes` (declared or
/// chunked), 408 when it takes longer than `server.http.body_read_timeout_secs`, 503 when the
/// bytes buffered across all requests would exceed `server.http.max_buffered_body_bytes`.
pub async fn read_body(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > guard.max_body_bytes as u64) {
        return too_large(guard.max_body_bytes);
    }
    let reserve = declared.map_or(guard.max_body_bytes, |length| length as usize);
    let reserve = u32::try_from(reserve.max(1)).unwrap_or(u32::MAX);
    let acquiring = guard.body_budget.clone().acquire_many_owned(reserve);
    let Ok(Ok(mut permit)) = tokio::time::timeout(BODY_BUDGET_WAIT, acquiring).await else {
        return unavailable("the server is reading too many request bodies; retry shortly\n");
    };
    let (parts, body) = request.into_parts();
    let reading = Limited::new(body, guard.max_body_bytes).collect();
    let bytes = match tokio::time::timeout(guard.body_read_timeout, reading).await {
        Err(_) => {
            return (
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive in time\n",
            )
                .into_response();
        }
        Ok(Err(err)) if err.downcast_ref::<LengthLimitError>().is_some() => {
            return too_large(guard.max_body_bytes);
        }
        Ok(Err(_)) => {
            return (
                StatusCode::BAD_REQUEST,
                "the request body could not be read\n",
            )
                .into_response();
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    // Keep only what the body holds; the rest of the reservation goes back to the budget.
    let used = u32::try_from(bytes.len().max(1)).unwrap_or(u32::MAX);
    if let Some(unused) = permit.split((reserve - used.min(reserve)) as usize) {
        drop(unused);
    }
    let mut request = Request::from_parts(parts, Body::from(bytes.clone()));
    request.extensions_mut().insert(BufferedBody(bytes));
    let response = next.run(request).await;
    drop::<OwnedSemaphorePermit>(permit);
    response
}

/// The body [`read_body`] read, for the envelope check.
#[derive(Debug, Clone)]
struct BufferedBody(Bytes);

/// 400 with JSON-RPC −32700 (not JSON, invalid UTF-8, nested too deep) or −32600 (not a
/// JSON-RPC 2.0 message, or a batch: no revision this server speaks has batching); −32602 for a
/// `tools/call` whose `params` are not `{name: string, arguments?: object}`.
pub async fn validate_envelope(request: Request, next: Next) -> Response {
    let is_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .split(';')
                .next()
                .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
        });
    let Some(BufferedBody(bytes)) = request.extensions().get::<BufferedBody>().cloned() else {
        return next.run(request).await;
    };
    if !is_json {
        // rmcp answers 415 for a body that does not say it is JSON.
        return next.run(request).await;
    }
    match check_envelope(&bytes) {
        Ok(()) => next.run(request).await,
        Err(rejection) => rejection.into_response(),
    }
}

/// Why a message was refused before rmcp saw it.
#[derive(Debug, PartialEq)]
pub struct EnvelopeError {
    pub code: i64,
    pub message: &'static str,
    pub id: Value,
}

impl IntoResponse for EnvelopeError {
    fn into_response(self) -> Response {
        let status = if self.code == INVALID_PARAMS {
            // A well-formed request whose parameters are wrong: answered like any JSON-RPC error.
            StatusCode::OK
        } else {
            StatusCode::BAD_REQUEST
        };
        let body = json!({
            "jsonrpc": "2.0",
            "id": self.id,
            "error": {"code": self.code, "message": self.message},
        });
        (status, axum::Json(body)).into_response()
    }
}

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const INVALID_PARAMS: i64 = -32602;

/// The JSON-RPC 2.0 envelope rules, checked on the raw bytes.
pub fn check_envelope(bytes: &[u8]) -> Result<(), EnvelopeError> {
    let error = |code, message, id: &Value| EnvelopeError {
        code,
        message,
        id: id.clone(),
    };
    let value: Value = serde_json::from_slice(bytes).map_err(|_| {
        error(
            PARSE_ERROR,
            "Parse error: the body is not valid JSON (or not UTF-8, or nested too deeply)",
            &Value::Null,
        )
    })?;
    let message = match value {
        Value::Object(message) => message,
        Value::Array(_) => {
            return Err(error(
                INVALID_REQUEST,
                "Invalid Request: JSON-RPC batches are not supported; send one message per request",
                &Value::Null,
            ));
        }
        _ => {
            return Err(error(
                INVALID_REQUEST,
                "Invalid Request: a JSON-RPC message must be an object",
                &Value::Null,
            ));
        }
    };
    let id = match message.get("id") {
        Some(id @ (Value::String(_) | Value::Number(_) | Value::Null)) => id.clone(),
        Some(_) => {
            return Err(error(
                INVALID_REQUEST,
                "Invalid Request: id must be a string or a number",
                &Value::Null,
            ));
        }
        None => Value::Null,
    };
    if message.get("jsonrpc") != Some(&Value::String("2.0".to_owned())) {
        return Err(error(
            INVALID_REQUEST,
            "Invalid Request: jsonrpc must be \"2.0\"",
            &id,
        ));
    }
    let Some(method) = message.get("method") else {
        // A response to a request of ours: it needs an id and a result or an error.
        if message.contains_key("id")
            && (message.contains_key("result") || message.contains_key("error"))
        {
            return Ok(());
        }
        return Err(error(
            INVALID_REQUEST,
            "Invalid Request: a request needs a method",
            &id,
        ));
    };
    let Some(method) = method.as_str() else {
        return Err(error(
            INVALID_REQUEST,
            "Invalid Request: method must be a string",
            &id,
        ));
    };
    let params = message.get("params");
    if params.is_some_and(|params| !params.is_object() && !params.is_null()) {
        return Err(error(
            INVALID_PARAMS,
            "Invalid params: params must be an object",
            &id,
        ));
    }
    if method == "tools/call" {
        let name_ok = params
            .and_then(|params| params.get("name"))
            .is_some_and(Value::is_string);
        let arguments_ok = params
            .and_then(|params| params.get("arguments"))
            .is_none_or(|arguments| arguments.is_object() || arguments.is_null());
        if !name_ok || !arguments_ok {
            return Err(error(
                INVALID_PARAMS,
                "Invalid params: tools/call needs params {\"name\": string, \"arguments\": object}",
                &id,
            ));
        }
    }
    Ok(())
}

fn too_many(wait: Duration, text: &'static str) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, seconds.max(1).to_string())],
        text,
    )
        .into_response()
}

fn unavailable(text: &'static str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, RETRY_AFTER_SECS)],
        text,
    )
        .into_response()
}

fn too_large(limit: usize) -> Response {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body larger than server.http.max_body_bytes ({limit} bytes)\n"),
    )
        .into_response()
}

/// Which `Host` and `Origin` headers may reach `/mcp`.
#[derive(Debug)]
struct OriginPolicy {
    /// Host names (any port) a request may be addressed to.
    hosts: Vec<String>,
    /// Origins (`scheme://host[:port]`, normalised) a browser page may call from.
    origins: Vec<String>,
    any_origin: bool,
    /// A loopback-bound server also accepts its own and other loopback origins.
    loopback_origins: bool,
}

impl OriginPolicy {
    fn new(bind: SocketAddr, allowed_origins: &[String], extra_hosts: &[String]) -> Self {
        Self {
            hosts: allowed_hosts(bind, extra_hosts),
            origins: allowed_origins
                .iter()
                .filter_map(|origin| normalize_origin(origin))
                .collect(),
            any_origin: allowed_origins.iter().any(|origin| origin.trim() == "*"),
            loopback_origins: bind.ip().is_loopback(),
        }
    }

    fn check(&self, headers: &HeaderMap) -> Result<(), String> {
        let host = headers
            .get(header::HOST)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<axum::http::uri::Authority>().ok())
            .ok_or("missing or unreadable Host header")?;
        let host_name = normalize_host(host.host());
        if !self.hosts.contains(&host_name) {
            return Err(format!(
                "Host {host_name} is not allowed (possible DNS rebinding); add it to server.http.allowed_hosts"
            ));
        }
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        if self.any_origin {
            return Ok(());
        }
        let origin = origin
            .to_str()
            .ok()
            .and_then(normalize_origin)
            .ok_or("unreadable Origin header")?;
        if self.origins.contains(&origin) {
            return Ok(());
        }
        if self.loopback_origins && origin_is_loopback(&origin) {
            return Ok(());
        }
        Err(format!(
            "Origin {origin} is not allowed; add it to server.http.allowed_origins"
        ))
    }
}

/// Loopback names, the bind address and the configured extra names.
pub(super) fn allowed_hosts(bind: SocketAddr, extra: &[String]) -> Vec<String> {
    let mut hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    if !bind.ip().is_unspecified() {
        hosts.push(bind.ip().to_string());
    }
    hosts.extend(extra.iter().map(|host| normalize_host(host.trim())));
    hosts.dedup();
    hosts
}

fn normalize_host(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

/// `scheme://host[:port]` in lower case, or `None` for `null` and anything unparsable.
fn normalize_origin(origin: &str) -> Option<String> {
    let uri = origin.trim().parse::<axum::http::Uri>().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let authority = uri.authority()?;
    let host = authority.host().to_ascii_lowercase();
    Some(match authority.port_u16() {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    })
}

fn origin_is_loopback(origin: &str) -> bool {
    let Some(authority) = origin
        .parse::<axum::http::Uri>()
        .ok()
        .and_then(|uri| uri.authority().cloned())
    else {
        return false;
    };
    let host = normalize_host(authority.host());
    host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn hosts_include_loopback_the_bind_address_and_extras() {
        let hosts = allowed_hosts("10.1.2.3:8765".parse().unwrap(), &["mcp.example".into()]);
        assert_eq!(
            hosts,
            ["localhost", "127.0.0.1", "::1", "10.1.2.3", "mcp.example"]
        );
        let any = allowed_hosts("0.0.0.0:8765".parse().unwrap(), &[]);
        assert_eq!(any, ["localhost", "127.0.0.1", "::1"]);
    }

    fn headers(host: &str, origin: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        headers
    }

    #[test]
    fn a_loopback_server_accepts_loopback_origins_and_refuses_foreign_ones() {
        let policy = OriginPolicy::new("127.0.0.1:8765".parse().unwrap(), &[], &[]);
        for origin in [
            "http://localhost:8765",
            "http://127.0.0.1:8765",
            "http://[::1]:3000",
        ] {
            assert_eq!(
                policy.check(&headers("localhost:8765", Some(origin))),
                Ok(()),
                "{origin}"
            );
        }
        for origin in [
            "https://evil.example",
            "null",
            "http://localhost.evil.example",
        ] {
            assert!(
                policy
                    .check(&headers("localhost:8765", Some(origin)))
                    .is_err(),
                "{origin}"
            );
        }
        assert!(policy.check(&headers("evil.example:8765", None)).is_err());
    }

    #[test]
    fn a_public_server_accepts_only_listed_origins() {
        let policy = OriginPolicy::new(
            "10.0.0.5:8765".parse().unwrap(),
            &["https://app.example".into()],
            &["mcp.example".into()],
        );
        assert_eq!(
            policy.check(&headers("mcp.example", Some("https://APP.example"))),
            Ok(())
        );
        assert!(
            policy
                .check(&headers("mcp.example", Some("http://localhost:8765")))
                .is_err()
        );
    }

    #[test]
    fn envelopes_get_the_json_rpc_code_the_spec_names() {
        let code = |body: &[u8]| check_envelope(body).err().map(|error| error.code);
        assert_eq!(code(b"{not json"), Some(PARSE_ERROR));
        assert_eq!(
            code(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"x\":\"\xff\"}"),
            Some(PARSE_ERROR)
        );
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(code(deep.as_bytes()), Some(PARSE_ERROR));
        assert_eq!(
            code(br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#),
            Some(INVALID_REQUEST)
        );
        assert_eq!(code(br#"{"id":1,"method":"ping"}"#), Some(INVALID_REQUEST));
        assert_eq!(code(br#"{"jsonrpc":"2.0","id":1}"#), Some(INVALID_REQUEST));
        assert_eq!(
            code(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":5}}"#),
            Some(INVALID_PARAMS)
        );
        assert_eq!(
            code(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":[1]}}"#),
            Some(INVALID_PARAMS)
        );
        assert_eq!(
            code(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{}}}"#),
            None
        );
        assert_eq!(code(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#), None);
        assert_eq!(
            code(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            None
        );
    }
}
