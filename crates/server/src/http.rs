//! The HTTP surface: MCP at `/mcp` (streamable HTTP, stateless), `/health` and `/ready`.
//!
//! Every request gets an id (`x-request-id`, also in every log line of the request) and is
//! counted by route and status (`telemetry::metrics`). `/mcp` (and `/metrics` when it shares this
//! listener) is guarded, in this order: rate limit (429), bearer token (401), Origin and Host allow-lists
//! (403/rmcp), body limit (413) and request timeout (408).

mod rate_limit;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tracing::Instrument;

pub use rate_limit::RateLimiter;

use crate::app::AppState;
use crate::config::ServerConfig;
use crate::mcp::MemoryServer;

/// Header carrying the request id, set on the request (for the MCP handler) and the response.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// What the `/mcp` guard needs; kept apart from [`AppState`] because SIGHUP changes the rate.
#[derive(Debug)]
pub struct Guard {
    /// `None` when authentication is disabled (development on loopback only).
    token: Option<SecretString>,
    pub rate_limiter: RateLimiter,
}

impl Guard {
    pub fn new(server: &ServerConfig) -> Self {
        Self {
            token: server
                .auth
                .required
                .then(|| server.auth.token.clone())
                .flatten(),
            rate_limiter: RateLimiter::new(server.rate_limit.requests_per_minute),
        }
    }
}

/// The whole HTTP application. `shutdown` ends rmcp's in-flight streams when the daemon stops.
pub fn router(
    app: Arc<AppState>,
    guard: Arc<Guard>,
    server: &ServerConfig,
    shutdown: CancellationToken,
) -> Router {
    let http = &server.http;
    let mut mcp_config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_max_request_body_bytes(http.max_body_bytes)
        .with_allowed_hosts(allowed_hosts(http.bind, &http.allowed_hosts))
        .with_allowed_origins(http.allowed_origins.iter().cloned())
        .with_cancellation_token(shutdown);
    if !http
        .allowed_origins
        .iter()
        .any(|origin| origin.trim() == "*")
    {
        // rmcp checks nothing while the list is empty; we refuse every present Origin then.
        mcp_config = mcp_config.enforce_origin_validation();
    } else {
        mcp_config = mcp_config.disable_allowed_origins();
    }
    let mcp_app = app.clone();
    let mcp = StreamableHttpService::new(
        move || Ok(MemoryServer::new(mcp_app.clone())),
        Arc::new(LocalSessionManager::default()),
        mcp_config,
    );
    let guarded = Router::new()
        .nest_service("/mcp", mcp)
        .merge(crate::telemetry::metrics::shared_route(&app))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(http.request_timeout_secs),
        ))
        .layer(RequestBodyLimitLayer::new(http.max_body_bytes))
        .layer(middleware::from_fn_with_state(guard, guard_mcp));
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(app)
        .merge(guarded)
        // Includes /.well-known/oauth-protected-resource: a 404 tells clients not to try OAuth.
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .layer(middleware::from_fn(trace_request))
        .layer(middleware::from_fn(
            crate::telemetry::metrics::count_responses,
        ))
}

/// Loopback names, the bind address and the configured extra names.
fn allowed_hosts(bind: SocketAddr, extra: &[String]) -> Vec<String> {
    let mut hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    if !bind.ip().is_unspecified() {
        hosts.push(bind.ip().to_string());
    }
    hosts.extend(extra.iter().cloned());
    hosts.dedup();
    hosts
}

/// Liveness: the process answers. Never touches the database.
async fn health(State(app): State<Arc<AppState>>) -> Response {
    axum::Json(json!({
        "status": "ok",
        "environment": app.environment.as_str(),
        "version": env!("CARGO_PKG_VERSION"),
    }))
    .into_response()
}

/// Readiness: database reachable, stamped for this environment, schema current.
async fn ready(State(app): State<Arc<AppState>>) -> Response {
    let readiness = app.health.readiness();
    let status = if readiness.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if readiness.is_ready() { "ready" } else { "degraded" },
        "environment": app.environment.as_str(),
        "database": readiness.database,
        "stamp": readiness.stamp,
        "schema": readiness.schema,
    });
    (status, axum::Json(body)).into_response()
}

static NEXT_REQUEST_ID: AtomicU64 = AtomicU64::new(1);

/// Gives the request an id, runs it inside a span carrying that id, and logs its outcome.
async fn trace_request(mut request: Request, next: Next) -> Response {
    let id = format!(
        "{:x}-{}",
        std::process::id(),
        NEXT_REQUEST_ID.fetch_add(1, Ordering::Relaxed)
    );
    let header_value =
        HeaderValue::from_str(&id).expect("hex digits and a dash are a valid header");
    request
        .headers_mut()
        .insert(REQUEST_ID_HEADER, header_value.clone());
    let span = tracing::info_span!("request", request_id = %id);
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    response
        .headers_mut()
        .insert(REQUEST_ID_HEADER, header_value);
    let status = response.status().as_u16();
    let elapsed_ms = (started.elapsed().as_secs_f64() * 100_000.0).round() / 100.0;
    span.in_scope(|| {
        if response.status().is_server_error() {
            tracing::warn!(%method, %path, status, elapsed_ms, "request failed");
        } else if response.status().is_client_error() {
            tracing::info!(%method, %path, status, elapsed_ms, "request refused");
        } else {
            tracing::debug!(%method, %path, status, elapsed_ms, "request served");
        }
    });
    response
}

/// Rate limit, then bearer token.
async fn guard_mcp(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([127, 0, 0, 1]), |info| info.0.ip());
    if let Err(wait) = guard.rate_limiter.check(client) {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, seconds.max(1).to_string())],
            "rate limit exceeded\n",
        )
            .into_response();
    }
    if let Some(token) = &guard.token
        && !bearer_matches(request.headers(), token)
    {
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header(header::WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#)
            .body(Body::from("missing or invalid bearer token\n"))
            .expect("static response parts are valid");
    }
    next.run(request).await
}

fn bearer_matches(headers: &HeaderMap, token: &SecretString) -> bool {
    let Some(presented) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "))
    else {
        return false;
    };
    constant_time_eq(presented, token.expose_secret().as_bytes())
}

/// Compares without an early exit, so the time taken does not reveal how much of a guess matched.
fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    let mut difference = left.len() ^ right.len();
    for (index, byte) in left.iter().enumerate() {
        let other = right.get(index).copied().unwrap_or(!*byte);
        difference |= usize::from(byte ^ other);
    }
    difference == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_equal_only_when_identical() {
        assert!(constant_time_eq(b"secret-token", b"secret-token"));
        assert!(!constant_time_eq(b"secret-token", b"secret-tokeN"));
        assert!(!constant_time_eq(b"secret-token", b"secret-token-longer"));
        assert!(!constant_time_eq(b"secret-token-longer", b"secret-token"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn only_the_bearer_scheme_is_accepted() {
        let token = SecretString::from("0123456789abcdef");
        let mut headers = HeaderMap::new();
        assert!(!bearer_matches(&headers, &token));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic 0123456789abcdef"),
        );
        assert!(!bearer_matches(&headers, &token));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer 0123456789abcdef"),
        );
        assert!(bearer_matches(&headers, &token));
    }

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
}
