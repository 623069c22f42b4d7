//! The HTTP surface: MCP at `/mcp` (streamable HTTP, stateless), `/health` and `/ready`.
//!
//! Every request gets an id (`x-request-id`, also in every log line of the request) and is
//! counted by route and status (`telemetry::metrics`, outermost, so the guards' answers count
//! too). `/mcp` sits behind the guard stack built in [`router`], which reads in the order the
//! guards run; `/metrics`, when it shares this listener, behind the same authentication. The
//! accept loop with the connection bounds is [`listener`].

mod guard;
pub mod listener;
mod rate_limit;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next, from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::timeout::TimeoutLayer;
use tracing::Instrument;

pub use crate::auth::{Principal, token_set};
pub use guard::{Guard, check_envelope};
pub use rate_limit::RateLimiter;

use crate::app::AppState;
use crate::auth::resource_metadata::WELL_KNOWN;
use crate::config::ServerConfig;
use crate::health::State as ReadyState;
use crate::mcp::MemoryServer;

/// Header carrying the request id, set on the request (for the MCP handler) and the response.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The whole HTTP application. `shutdown` ends rmcp's in-flight streams when the daemon stops.
pub fn router(
    app: Arc<AppState>,
    guard: Arc<Guard>,
    server: &ServerConfig,
    shutdown: CancellationToken,
) -> Router {
    let http = &server.http;
    // Host and Origin are checked by `guard::check_origin` before anything else, so rmcp's own
    // (innermost) checks are off.
    let mcp_config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_max_request_body_bytes(http.max_body_bytes)
        .disable_allowed_hosts()
        .disable_allowed_origins()
        .with_cancellation_token(shutdown);
    let mcp_app = app.clone();
    let mcp = StreamableHttpService::new(
        move || Ok(MemoryServer::new(mcp_app.clone())),
        Arc::new(LocalSessionManager::default()),
        mcp_config,
    );
    let request_timeout = Duration::from_secs(http.request_timeout_secs);
    // The guards, outermost (first to run) at the top; each line names what it answers.
    let guarded = ServiceBuilder::new()
        .layer(from_fn_with_state(guard.clone(), guard::check_origin)) // 403 foreign Host/Origin
        .layer(from_fn_with_state(guard.clone(), guard::authenticate)) // 401 bad token; 429 failures per address
        .layer(from_fn_with_state(guard.clone(), guard::limit_principal)) // 429 + Retry-After per principal
        .layer(from_fn_with_state(guard.clone(), guard::shed_load)) // 503 + Retry-After over max_in_flight
        .layer(from_fn_with_state(guard.clone(), guard::read_body)) // 413 too large; 408 too slow; 503 budget spent
        .layer(from_fn(guard::validate_envelope)) // 400 -32700/-32600; -32602 tools/call params
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        )) // 408
        .map_response(IntoResponse::into_response)
        .service(mcp);
    // A scrape passes the same Host/Origin check and bearer token as `/mcp` but spends no
    // principal's request allowance (a scraper addressing pod IPs wants `telemetry.metrics.bind`).
    let metrics = crate::telemetry::metrics::shared_route(&app).layer(
        ServiceBuilder::new()
            .layer(from_fn_with_state(guard.clone(), guard::check_origin)) // 403 foreign Host/Origin
            .layer(from_fn_with_state(guard.clone(), guard::authenticate)), // 401 bad token; 429 failures per address
    );
    let mut router = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(app);
    // RFC 9728 metadata, public like /health; without server.auth.resource_url the fallback's
    // 404 tells clients not to try OAuth.
    if let Some(metadata) = &guard.authenticator().metadata {
        let document = metadata.document();
        let serve = get(move || {
            let document = document.clone();
            async move { axum::Json(document) }
        });
        router = router
            .route(WELL_KNOWN, serve.clone())
            .route(&format!("{WELL_KNOWN}/mcp"), serve);
    }
    router
        .nest_service("/mcp", guarded)
        .merge(metrics)
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .layer(middleware::from_fn(trace_request))
        .layer(middleware::from_fn(
            crate::telemetry::metrics::count_responses,
        ))
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
/// Body: `status` (`ready`/`degraded`), `state` (`ok`, `unavailable`, `wrong_stamp`,
/// `schema_mismatch`) and the same word per check.
async fn ready(State(app): State<Arc<AppState>>) -> Response {
    let readiness = app.health.readiness();
    let status = if readiness.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    // States only: the reasons are in the log and in `STATUS=`, not for unauthenticated callers.
    let [database, stamp, schema]: [ReadyState; 3] = readiness.states();
    let body = json!({
        "status": if readiness.is_ready() { "ready" } else { "degraded" },
        "state": readiness.state(),
        "environment": app.environment.as_str(),
        "database": database,
        "stamp": stamp,
        "schema": schema,
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
