//! Telemetry: Prometheus metrics (`metrics.rs`) and OpenTelemetry traces (`traces.rs`), set up
//! from the `telemetry` configuration section by [`start`], one call from `serve`.
//!
//! What is observed — MCP calls ([`observe`]), HTTP responses, database statements
//! ([`statement`]), pool and health state — carries names, codes and durations only. Tool
//! arguments, results, memory content, session ids, queries and tokens are never a metric label
//! nor a span attribute, in any environment (tests check with canaries).

pub mod metrics;
mod otlp_client;
pub mod traces;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use config_core::Environment;
use metrics_exporter_prometheus::PrometheusHandle;
use rmcp::RoleServer;
use rmcp::model::{ErrorCode, NumberOrString};
use rmcp::service::RequestContext;
use tokio_util::sync::CancellationToken;

pub use self::metrics::Outcome;
pub use self::traces::{CallSpan, StatementError};

use crate::app::AppState;
use crate::config::TelemetryConfig;

/// The running telemetry of the daemon.
#[derive(Debug, Default)]
pub struct Telemetry {
    metrics: Option<PrometheusHandle>,
    /// `telemetry.metrics.bind`: a listener of its own for `/metrics`.
    metrics_bind: Option<SocketAddr>,
    traces: Option<traces::Traces>,
}

/// Installs what `config` turns on. Requests to the trace collector run on `runtime`.
pub fn start(
    config: &TelemetryConfig,
    environment: Environment,
    runtime: tokio::runtime::Handle,
) -> Result<Telemetry, String> {
    let metrics = if config.metrics.enabled {
        Some(metrics::install(environment)?)
    } else {
        None
    };
    let traces = match &config.traces.endpoint {
        Some(endpoint) => Some(traces::Traces::start(
            endpoint,
            config.traces.sample_ratio,
            environment,
            runtime,
        )?),
        None => None,
    };
    tracing::info!(
        metrics = if metrics.is_none() {
            "off"
        } else if config.metrics.bind.is_some() {
            "own listener"
        } else {
            "on the main listener, behind the bearer token"
        },
        traces = if traces.is_some() { "OTLP/HTTP" } else { "off" },
        sample_ratio = config.traces.sample_ratio,
        "telemetry"
    );
    Ok(Telemetry {
        metrics,
        metrics_bind: config.metrics.bind,
        traces,
    })
}

impl Telemetry {
    /// The handle to render `/metrics` on the main listener, when metrics share it.
    pub fn shared_metrics(&self) -> Option<PrometheusHandle> {
        self.metrics.clone().filter(|_| self.metrics_bind.is_none())
    }

    /// Starts what runs beside the daemon until `stop`: the recorder's upkeep and, when
    /// configured, the metrics listener. Returns that listener's address.
    pub async fn run_beside(
        &self,
        app: Arc<AppState>,
        stop: CancellationToken,
    ) -> Result<Option<SocketAddr>, String> {
        let Some(handle) = &self.metrics else {
            return Ok(None);
        };
        tokio::spawn(metrics::upkeep(handle.clone(), stop.clone()));
        let Some(bind) = self.metrics_bind else {
            return Ok(None);
        };
        let address = metrics::serve_listener(bind, handle.clone(), app, stop)
            .await
            .map_err(|err| {
                format!("cannot listen on telemetry.metrics.bind ({bind}) for /metrics: {err}")
            })?;
        tracing::info!(address = %address, "metrics at http://{address}/metrics");
        Ok(Some(address))
    }

    /// SIGHUP: applies what can change live (the trace sample ratio).
    pub fn reload(&self, config: &TelemetryConfig) {
        if let Some(traces) = &self.traces {
            traces.set_ratio(config.traces.sample_ratio);
        }
    }

    /// Exports the traces still queued.
    pub fn shutdown(self) {
        if let Some(traces) = self.traces {
            traces.shutdown();
        }
    }
}

/// Describes an MCP request for its span: `method` and `tool` must be static names of ours
/// (an unknown tool is `None`), the rest is protocol data from `context`.
pub fn call_span(
    method: &'static str,
    tool: Option<&'static str>,
    request_meta: Option<&rmcp::model::RequestMetaObject>,
    context: &RequestContext<RoleServer>,
) -> CallSpan {
    if !traces::enabled() {
        // Metrics need the method and tool only; skip reading the rest.
        return CallSpan {
            name: String::new(),
            method,
            tool,
            request_id: String::new(),
            protocol_version: None,
            transport: "",
            traceparent: None,
            tracestate: None,
        };
    }
    let parts = context.extensions.get::<axum::http::request::Parts>();
    let header = |name: &str| {
        parts
            .and_then(|parts| parts.headers.get(name))
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let metas = [request_meta, Some(&context.meta)];
    let from_meta = |get: fn(&rmcp::model::RequestMetaObject) -> Option<&str>| {
        metas
            .iter()
            .flatten()
            .find_map(|meta| get(meta).map(str::to_owned))
    };
    let traceparent = from_meta(|meta| meta.get_traceparent()).or_else(|| header("traceparent"));
    let tracestate = from_meta(|meta| meta.get_tracestate()).or_else(|| header("tracestate"));
    let protocol_version = metas
        .iter()
        .flatten()
        .find_map(|meta| meta.protocol_version())
        .or_else(|| {
            context
                .peer
                .peer_info()
                .map(|info| info.protocol_version.clone())
        })
        .map(|version| version.to_string())
        .or_else(|| header("mcp-protocol-version"));
    let request_id = match &context.id {
        NumberOrString::Number(n) => n.to_string(),
        NumberOrString::String(s) => s.to_string(),
    };
    CallSpan {
        name: match tool {
            Some(tool) => format!("{method} {tool}"),
            None => method.to_owned(),
        },
        method,
        tool,
        request_id,
        protocol_version,
        transport: if parts.is_some() { "tcp" } else { "pipe" },
        traceparent,
        tracestate,
    }
}

/// Runs one MCP request inside its SERVER span and records its metrics; `outcome` tells how
/// the answer went and, for a failure, its `error.type`.
///
/// The request's future goes on the heap at once: rmcp polls every handler inside one task,
/// and with it inline the unoptimised (debug) build overflowed a worker's 2 MiB stack.
pub fn observe<F, T>(
    call: CallSpan,
    future: F,
    outcome: impl FnOnce(&T) -> (Outcome, Option<&'static str>),
) -> impl Future<Output = T>
where
    F: Future<Output = T>,
{
    let future = Box::pin(future);
    async move {
        let (method, tool) = (call.method, call.tool);
        let started = Instant::now();
        let trace = traces::CallTrace::start(call);
        let answer = match &trace {
            Some(trace) => trace.run(future).await,
            None => future.await,
        };
        let (result, error_type) = outcome(&answer);
        metrics::record_call(method, tool, result, error_type, started.elapsed());
        if let Some(trace) = trace {
            trace.end(error_type);
        }
        answer
    }
}

/// A database statement: its span (when inside a traced call) and the in-flight gauge.
/// `summary` is static text such as `INSERT l0_raw`.
///
/// The statement's future goes on the heap at once, so the layers around it stay small (see
/// [`observe`]).
pub fn statement<F, T, E>(summary: &'static str, future: F) -> impl Future<Output = Result<T, E>>
where
    F: Future<Output = Result<T, E>>,
    E: StatementError,
{
    metrics::count_statement(traces::statement(summary, Box::pin(future)))
}

/// Waiting for a pool connection (`pool.acquire()`, `pool.begin()`): the pool-waiters gauge.
pub async fn connection<F: Future>(acquiring: F) -> F::Output {
    metrics::count_wait(acquiring).await
}

/// `error.type` of a JSON-RPC error answer: its code, as static text.
pub fn jsonrpc_error_type(code: ErrorCode) -> &'static str {
    match code.0 {
        -32700 => "-32700",
        -32600 => "-32600",
        -32601 => "-32601",
        -32602 => "-32602",
        -32603 => "-32603",
        -32002 => "-32002",
        _ => "jsonrpc_error",
    }
}
