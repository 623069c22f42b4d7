//! Prometheus metrics: a process-wide `metrics` recorder rendered as text at `GET /metrics`.
//!
//! Every label value comes from a closed set written here or in the code that records it (tool
//! names of our own router, method names, status codes, check names); nothing a client sends
//! — session ids, queries, content, tokens, unknown tool names — becomes a label. The names
//! follow the OpenTelemetry conventions where one exists (`mcp.server.operation.duration` in
//! seconds becomes `mcp_server_operation_duration_seconds`), otherwise carry the `cogmem_` prefix.
//!
//! Other modules record through the functions here (the retention task through
//! [`record_retention_run`]); they cost nothing while no recorder is installed. The last good
//! backup is read from `lifecycle_status` at each scrape: backups run as a command of their own
//! (a systemd timer, a CronJob), possibly on another host, so only the database knows.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use config_core::Environment;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

use crate::app::AppState;
use crate::health::Check;

/// `mcp.server.operation.duration` (histogram, seconds), labelled `mcp_method_name`,
/// `gen_ai_tool_name` and, for failures, `error_type`.
pub const OPERATION_DURATION: &str = "mcp_server_operation_duration_seconds";
/// MCP calls by `mcp_method_name`, `gen_ai_tool_name` and `outcome` (`ok`, `tool_error`, `error`).
pub const CALLS: &str = "cogmem_mcp_calls_total";
/// HTTP responses by `http_route` and `http_response_status_code` (401, 403, 413, 429 … visible).
pub const HTTP_RESPONSES: &str = "http_server_responses_total";
/// Connections of the pool: open, idle, configured maximum.
pub const POOL_SIZE: &str = "cogmem_db_pool_connections";
pub const POOL_IDLE: &str = "cogmem_db_pool_idle_connections";
pub const POOL_MAX: &str = "cogmem_db_pool_max_connections";
/// Database statements running (a transaction's `BEGIN` includes waiting for its connection).
pub const STATEMENTS_IN_FLIGHT: &str = "cogmem_db_statements_in_flight";
/// Operations waiting for a connection from the pool (counted around every acquire).
pub const POOL_WAITERS: &str = "cogmem_db_pool_waiters";
/// 1 when the check (`database`, `stamp`, `schema`) passed at the last health round, else 0.
pub const HEALTH_CHECK: &str = "cogmem_health_check_ok";
/// 1 when `/ready` would answer 200.
pub const READY: &str = "cogmem_ready";
/// Always 1, labelled `version` and `environment`.
pub const BUILD_INFO: &str = "cogmem_build_info";
/// Unix time of the last verified backup, from `lifecycle_status` (absent until one succeeded).
pub const BACKUP_LAST_SUCCESS: &str = "cogmem_backup_last_success_timestamp_seconds";
/// Rows this process's retention task removed, by `layer` (`raw`, `insight`).
pub const RETENTION_PURGED: &str = "cogmem_retention_purged_total";
/// Unix time of this process's last successful retention run (one that another replica's lock
/// made it skip does not count).
pub const RETENTION_LAST_SUCCESS: &str = "cogmem_retention_last_success_timestamp_seconds";

/// Histogram buckets in seconds: sub-millisecond stores to multi-second searches.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// How often the recorder folds recorded histogram samples, so memory stays bounded between
/// scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);
/// Longest a scrape waits for `lifecycle_status` (during an outage the backup gauge keeps its
/// last value rather than holding the scrape up).
const LIFECYCLE_READ_TIMEOUT: Duration = Duration::from_secs(2);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
static STATEMENTS: AtomicI64 = AtomicI64::new(0);
static WAITING: AtomicI64 = AtomicI64::new(0);

/// Installs the process-wide recorder (once; a second daemon in the same process shares it) and
/// records the build info.
pub fn install(environment: Environment) -> Result<PrometheusHandle, String> {
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets(&BUCKETS)
        .map_err(|err| format!("cannot set up metrics: {err}"))?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)
        .map_err(|err| format!("cannot install the metrics recorder: {err}"))?;
    describe();
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"), "environment" => environment.as_str())
        .set(1.0);
    Ok(HANDLE.get_or_init(|| handle).clone())
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_histogram!(
        OPERATION_DURATION,
        metrics::Unit::Seconds,
        "Duration of MCP requests handled by the server"
    );
    describe_counter!(CALLS, "MCP calls by method, tool and outcome");
    describe_counter!(HTTP_RESPONSES, "HTTP responses by route and status code");
    describe_gauge!(POOL_SIZE, "Open database connections");
    describe_gauge!(POOL_IDLE, "Idle database connections");
    describe_gauge!(POOL_MAX, "Configured maximum of database connections");
    describe_gauge!(STATEMENTS_IN_FLIGHT, "Database statements running");
    describe_gauge!(
        POOL_WAITERS,
        "Operations waiting for a database connection from the pool"
    );
    describe_gauge!(
        HEALTH_CHECK,
        "1 when the readiness check passed at the last round"
    );
    describe_gauge!(
        READY,
        "1 when the daemon is ready (database, stamp, schema)"
    );
    describe_gauge!(BUILD_INFO, "Version and environment of the running daemon");
    describe_gauge!(
        BACKUP_LAST_SUCCESS,
        "Unix time of the last verified backup (lifecycle_status)"
    );
    describe_counter!(
        RETENTION_PURGED,
        "Rows removed by this process's retention task, by layer"
    );
    describe_gauge!(
        RETENTION_LAST_SUCCESS,
        "Unix time of this process's last successful retention run"
    );
}

/// Keeps the recorder's memory bounded until `stop`.
pub async fn upkeep(handle: PrometheusHandle, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(UPKEEP_INTERVAL);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => handle.run_upkeep(),
        }
    }
}

/// How a finished MCP call went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// A tool result with `isError: true`.
    ToolError,
    /// A JSON-RPC error answer.
    Error,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ToolError => "tool_error",
            Outcome::Error => "error",
        }
    }
}

/// Records one MCP call. `tool` must be one of our tool names (or `None`); `error_type` is
/// `tool_error` or a JSON-RPC error code.
pub fn record_call(
    method: &'static str,
    tool: Option<&'static str>,
    outcome: Outcome,
    error_type: Option<&'static str>,
    elapsed: Duration,
) {
    let tool = tool.unwrap_or("");
    metrics::counter!(CALLS, "mcp_method_name" => method, "gen_ai_tool_name" => tool, "outcome" => outcome.as_str())
        .increment(1);
    let histogram = match error_type {
        None => {
            metrics::histogram!(OPERATION_DURATION, "mcp_method_name" => method, "gen_ai_tool_name" => tool)
        }
        Some(error_type) => {
            metrics::histogram!(OPERATION_DURATION, "mcp_method_name" => method, "gen_ai_tool_name" => tool, "error_type" => error_type)
        }
    };
    histogram.record(elapsed.as_secs_f64());
}

/// Counts a statement as in flight while `future` runs.
pub async fn count_statement<F: std::future::Future>(future: F) -> F::Output {
    counted(&STATEMENTS, future).await
}

/// Counts a wait for a pool connection while `future` runs.
pub async fn count_wait<F: std::future::Future>(future: F) -> F::Output {
    counted(&WAITING, future).await
}

/// `gauge` is one higher while `future` runs (also when it is dropped unfinished).
async fn counted<F: std::future::Future>(gauge: &'static AtomicI64, future: F) -> F::Output {
    struct Running(&'static AtomicI64);
    impl Drop for Running {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::Relaxed);
        }
    }
    gauge.fetch_add(1, Ordering::Relaxed);
    let _running = Running(gauge);
    future.await
}

/// A successful retention run that removed `raw` turns and `insights` insights.
pub fn record_retention_run(raw: u64, insights: u64) {
    metrics::counter!(RETENTION_PURGED, "layer" => "raw").increment(raw);
    metrics::counter!(RETENTION_PURGED, "layer" => "insight").increment(insights);
    metrics::gauge!(RETENTION_LAST_SUCCESS).set(unix_seconds(SystemTime::now()));
}

fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

/// The last verified backup from `lifecycle_status`; on a timeout or error the gauge keeps its
/// value (the readiness gauges tell about the database).
async fn read_backup_age(pool: &sqlx::PgPool) {
    // Boxed: inline, its states would sit on the handler's stack frame (see `telemetry::observe`).
    let reading = Box::pin(crate::lifecycle::read_status(pool));
    let read = tokio::time::timeout(LIFECYCLE_READ_TIMEOUT, reading);
    if let Ok(Ok(status)) = read.await
        && let Some(age) = status.backup.last_good_age_secs
    {
        let at = SystemTime::now() - Duration::from_secs(age.max(0).unsigned_abs());
        metrics::gauge!(BACKUP_LAST_SUCCESS).set(unix_seconds(at).floor());
    }
}

/// The `http_route` label: the routes we serve, everything else `other` (paths are client text).
fn route(path: &str) -> &'static str {
    match path {
        "/mcp" => "/mcp",
        "/health" => "/health",
        "/ready" => "/ready",
        "/metrics" => "/metrics",
        _ => "other",
    }
}

/// Middleware counting every response by route and status (outermost, so the guards' 401,
/// 403, 413 and 429 are counted too).
pub async fn count_responses(request: Request, next: Next) -> Response {
    let route = route(request.uri().path());
    let response = next.run(request).await;
    let status = response.status();
    metrics::counter!(HTTP_RESPONSES, "http_route" => route, "http_response_status_code" => status_label(status))
        .increment(1);
    response
}

/// Status codes as static text (a closed set: the codes HTTP defines).
fn status_label(status: StatusCode) -> &'static str {
    static LABELS: OnceLock<Vec<String>> = OnceLock::new();
    let labels = LABELS.get_or_init(|| (0..600).map(|code| code.to_string()).collect());
    labels
        .get(usize::from(status.as_u16()))
        .map_or("other", String::as_str)
}

/// Updates the gauges read from the daemon's state and the database, then renders the text
/// exposition.
pub async fn render(handle: &PrometheusHandle, app: &AppState) -> String {
    let pool = app.store.pool();
    read_backup_age(pool).await;
    let size = f64::from(pool.size());
    let idle = pool.num_idle() as f64;
    metrics::gauge!(POOL_SIZE).set(size);
    metrics::gauge!(POOL_IDLE).set(idle);
    metrics::gauge!(POOL_MAX).set(f64::from(pool.options().get_max_connections()));
    metrics::gauge!(STATEMENTS_IN_FLIGHT).set(STATEMENTS.load(Ordering::Relaxed).max(0) as f64);
    metrics::gauge!(POOL_WAITERS).set(WAITING.load(Ordering::Relaxed).max(0) as f64);
    let readiness = app.health.readiness();
    for (check, state) in [
        ("database", &readiness.database),
        ("stamp", &readiness.stamp),
        ("schema", &readiness.schema),
    ] {
        metrics::gauge!(HEALTH_CHECK, "check" => check).set(if *state == Check::Ok {
            1.0
        } else {
            0.0
        });
    }
    metrics::gauge!(READY).set(if readiness.is_ready() { 1.0 } else { 0.0 });
    handle.render()
}

/// `GET /metrics` for `app`.
pub fn route_for(handle: PrometheusHandle, app: Arc<AppState>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let (handle, app) = (handle.clone(), app.clone());
            async move {
                let text = render(&handle, &app).await;
                (
                    StatusCode::OK,
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    text,
                )
                    .into_response()
            }
        }),
    )
}

/// `GET /metrics` for the main listener's guarded routes, or no route when metrics are off or
/// have a listener of their own.
pub fn shared_route(app: &Arc<AppState>) -> Router {
    match &app.shared_metrics {
        Some(handle) => route_for(handle.clone(), app.clone()),
        None => Router::new(),
    }
}

/// Serves `GET /metrics` alone on `bind` (no authentication: keep it on loopback or a scrape
/// network) until `stop`.
pub async fn serve_listener(
    bind: SocketAddr,
    handle: PrometheusHandle,
    app: Arc<AppState>,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(bind).await?;
    let address = listener.local_addr()?;
    let router = route_for(handle, app)
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .layer(axum::middleware::from_fn(count_responses));
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, router)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
        {
            tracing::error!("the metrics listener failed: {err}");
        }
    });
    Ok(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_statuses_are_closed_sets() {
        assert_eq!(route("/mcp"), "/mcp");
        assert_eq!(route("/sessions/alice"), "other");
        assert_eq!(status_label(StatusCode::TOO_MANY_REQUESTS), "429");
        assert_eq!(status_label(StatusCode::UNAUTHORIZED), "401");
    }
}
