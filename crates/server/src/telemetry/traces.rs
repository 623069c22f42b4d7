//! OpenTelemetry traces: one SERVER span per MCP call, a CLIENT child span per database
//! statement, exported over OTLP/HTTP (protobuf) in batches from a thread of their own.
//!
//! # Keeping a ratio of traces, and every failure
//!
//! A head sampler decides when a call *starts*, before anyone knows whether it fails. So the
//! sampler here ([`RatioKeepingFailures`]) never drops a span: a trace outside the ratio is
//! still *recorded* (`RecordOnly`, not sampled, so nothing is propagated as sampled), and the
//! span processor ([`KeepFailures`]) makes the tail decision. Sampled spans go straight to the
//! batch exporter. Unsampled child spans wait in memory under their parent until that parent
//! (the call's SERVER span, which ends last) ends: if it ended with an error status, the held
//! children and the parent are exported, marked sampled; otherwise they are dropped. The cost
//! of a dropped trace is building its few spans, not exporting them; what is held is bounded
//! ([`MAX_HELD_PARENTS`], [`MAX_HELD_PER_PARENT`]).
//!
//! The ratio lives in an atomic, so SIGHUP changes it without rebuilding the pipeline. The
//! decision is a function of the trace id (like `TraceIdRatioBased`), and a parent that arrived
//! sampled (`traceparent` flag `01`) keeps its trace.
//!
//! # What a span may carry
//!
//! Names and attributes are the MCP semantic conventions' (`mcp.method.name`,
//! `mcp.protocol.version`, `jsonrpc.request.id`, `network.transport`, `error.type`) plus a
//! database statement's summary (`INSERT l0_raw`). Tool arguments, results, memory content,
//! session ids, queries and tokens are never recorded — in any environment: there is no code
//! path that could, since the spans are built here from static names only.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use opentelemetry::trace::{
    FutureExt as _, Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _,
    TraceFlags, TraceId, TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, SamplingDecision, SamplingResult, SdkTracer, SdkTracerProvider,
    ShouldSample, Span, SpanData, SpanProcessor,
};

use super::otlp_client::OtlpHttpClient;

/// Instrumentation scope of every span.
const SCOPE: &str = "cognitive-memory-mcp";
/// Longest wait for one export to the collector.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Calls whose unsampled child spans may wait for their outcome at once; beyond it, children of
/// further calls are not held (their call, if it fails, is exported without them).
pub const MAX_HELD_PARENTS: usize = 4096;
/// Child spans held per call (a tool runs at most a handful of statements).
pub const MAX_HELD_PER_PARENT: usize = 64;

/// The tracer of the running daemon; unset when traces are off, so every helper below is a
/// no-op costing one atomic load.
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// Whether traces are on in this process.
pub fn enabled() -> bool {
    TRACER.get().is_some()
}

/// The running trace pipeline.
#[derive(Debug)]
pub struct Traces {
    provider: SdkTracerProvider,
    ratio: Arc<AtomicU64>,
}

impl Traces {
    /// Builds the exporter for `endpoint` (validated by the configuration) and installs the
    /// tracer. Requests to the collector run on `runtime`.
    pub fn start(
        endpoint: &str,
        ratio: f64,
        environment: config_core::Environment,
        runtime: tokio::runtime::Handle,
    ) -> Result<Traces, String> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(OtlpHttpClient::new(runtime, EXPORT_TIMEOUT))
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(traces_url(endpoint))
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|err| format!("cannot set up the OTLP exporter: {err}"))?;
        let ratio = Arc::new(AtomicU64::new(ratio.to_bits()));
        let provider = SdkTracerProvider::builder()
            .with_sampler(RatioKeepingFailures {
                ratio: ratio.clone(),
            })
            .with_span_processor(KeepFailures::new(
                BatchSpanProcessor::builder(exporter).build(),
            ))
            .with_resource(
                Resource::builder_empty()
                    .with_attributes([
                        KeyValue::new("service.name", SCOPE),
                        KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
                        KeyValue::new("deployment.environment.name", environment.as_str()),
                    ])
                    .build(),
            )
            .build();
        if TRACER.set(provider.tracer(SCOPE)).is_err() {
            return Err("traces were already started in this process".to_owned());
        }
        Ok(Traces { provider, ratio })
    }

    /// Applies a new sample ratio (SIGHUP).
    pub fn set_ratio(&self, ratio: f64) {
        self.ratio.store(ratio.to_bits(), Ordering::Relaxed);
    }

    /// Exports what is queued and stops the exporter thread.
    pub fn shutdown(self) {
        if let Err(err) = self.provider.shutdown_with_timeout(EXPORT_TIMEOUT) {
            tracing::warn!("traces not all exported at shutdown: {err}");
        }
    }
}

/// `http://host:4318` → `http://host:4318/v1/traces`; a URL with a path is used as it is.
fn traces_url(endpoint: &str) -> String {
    let endpoint = endpoint.trim();
    let has_path = endpoint
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('/'))
        .is_some_and(|(_, path)| !path.is_empty());
    if has_path {
        endpoint.to_owned()
    } else {
        format!("{}/v1/traces", endpoint.trim_end_matches('/'))
    }
}

/// What a call's SERVER span says about the call (all of it static or protocol data).
#[derive(Debug, Clone)]
pub struct CallSpan {
    /// `{mcp.method.name} {target}`, e.g. `tools/call store_raw_dialogue`.
    pub name: String,
    pub method: &'static str,
    /// The tool name, when it is one of ours.
    pub tool: Option<&'static str>,
    pub request_id: String,
    pub protocol_version: Option<String>,
    /// `tcp` (HTTP) or `pipe` (stdio).
    pub transport: &'static str,
    /// `traceparent`/`tracestate` from `params._meta`, else from the HTTP headers.
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

/// A started SERVER span and the context its children run in.
#[derive(Debug)]
pub struct CallTrace {
    context: Context,
}

impl CallTrace {
    /// Starts the span when traces are on.
    pub fn start(call: CallSpan) -> Option<CallTrace> {
        let tracer = TRACER.get()?;
        let parent = remote_parent(call.traceparent.as_deref(), call.tracestate.as_deref());
        let mut attributes = vec![
            KeyValue::new("mcp.method.name", call.method),
            KeyValue::new("jsonrpc.request.id", call.request_id),
            KeyValue::new("network.transport", call.transport),
        ];
        if let Some(tool) = call.tool {
            attributes.push(KeyValue::new("gen_ai.tool.name", tool));
            attributes.push(KeyValue::new("gen_ai.operation.name", "execute_tool"));
        }
        if let Some(version) = call.protocol_version {
            attributes.push(KeyValue::new("mcp.protocol.version", version));
        }
        let span = tracer
            .span_builder(call.name)
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .start_with_context(tracer, &parent);
        Some(CallTrace {
            context: parent.with_span(span),
        })
    }

    /// Runs `future` with this span as the current one (database spans become its children).
    pub async fn run<F: Future>(&self, future: F) -> F::Output {
        future.with_context(self.context.clone()).await
    }

    /// Ends the span; `error_type` marks a failed call (its trace is then always kept).
    pub fn end(self, error_type: Option<&str>) {
        let span = self.context.span();
        if let Some(error_type) = error_type {
            span.set_attribute(KeyValue::new("error.type", error_type.to_owned()));
            span.set_status(Status::error(error_type.to_owned()));
        }
        span.end();
    }
}

/// The W3C trace context a client sent, as the parent of our span; none (or a malformed one:
/// it is ignored, never an error) gives a new trace.
fn remote_parent(traceparent: Option<&str>, tracestate: Option<&str>) -> Context {
    use opentelemetry::propagation::TextMapPropagator as _;
    let Some(traceparent) = traceparent else {
        return Context::new();
    };
    let mut carrier = HashMap::with_capacity(2);
    carrier.insert("traceparent".to_owned(), traceparent.to_owned());
    if let Some(tracestate) = tracestate {
        carrier.insert("tracestate".to_owned(), tracestate.to_owned());
    }
    opentelemetry_sdk::propagation::TraceContextPropagator::new()
        .extract_with_context(&Context::new(), &carrier)
}

/// A database statement's span: `summary` is static text naming the operation and table
/// (`INSERT l0_raw`), never the SQL's parameters. Without a current call span (traces off, or
/// the statement runs outside a call) the future runs as it is.
pub async fn statement<F, T, E>(summary: &'static str, future: F) -> Result<T, E>
where
    F: Future<Output = Result<T, E>>,
    E: StatementError,
{
    let Some(tracer) = TRACER.get() else {
        return future.await;
    };
    let parent = Context::current();
    if !parent.span().span_context().is_valid() {
        return future.await;
    }
    let operation = summary.split(' ').next().unwrap_or(summary);
    let mut span = tracer
        .span_builder(summary)
        .with_kind(SpanKind::Client)
        .with_attributes([
            KeyValue::new("db.system.name", "postgresql"),
            KeyValue::new("db.operation.name", operation),
            KeyValue::new("db.query.summary", summary),
        ])
        .start_with_context(tracer, &parent);
    let result = future.await;
    if let Err(err) = &result {
        let error_type = err.error_type();
        span.set_attribute(KeyValue::new("error.type", error_type));
        span.set_status(Status::error(error_type));
    }
    span.end();
    result
}

/// A low-cardinality, value-free name for a failed statement's `error.type`.
pub trait StatementError {
    fn error_type(&self) -> &'static str;
}

impl StatementError for sqlx::Error {
    fn error_type(&self) -> &'static str {
        match self {
            sqlx::Error::Database(_) => "database_error",
            sqlx::Error::PoolTimedOut => "pool_timed_out",
            sqlx::Error::PoolClosed => "pool_closed",
            sqlx::Error::Io(_) | sqlx::Error::Tls(_) => "connection_error",
            sqlx::Error::RowNotFound => "row_not_found",
            sqlx::Error::Decode(_) | sqlx::Error::ColumnDecode { .. } => "decode_error",
            _ => "other",
        }
    }
}

/// Keeps the configured share of traces (by trace id) as sampled and records the rest, so the
/// processor can still keep those that fail. A sampled parent keeps its children sampled.
#[derive(Debug, Clone)]
struct RatioKeepingFailures {
    ratio: Arc<AtomicU64>,
}

impl ShouldSample for RatioKeepingFailures {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        _name: &str,
        _span_kind: &SpanKind,
        _attributes: &[KeyValue],
        _links: &[opentelemetry::trace::Link],
    ) -> SamplingResult {
        let parent = parent_context
            .map(|cx| cx.span().span_context().clone())
            .filter(SpanContext::is_valid);
        let sampled = match &parent {
            Some(parent) if parent.is_sampled() => true,
            // A local unsampled parent, or a client that did not sample: kept only on failure.
            Some(_) => false,
            None => keeps(trace_id, f64::from_bits(self.ratio.load(Ordering::Relaxed))),
        };
        SamplingResult {
            decision: if sampled {
                SamplingDecision::RecordAndSample
            } else {
                SamplingDecision::RecordOnly
            },
            attributes: Vec::new(),
            trace_state: parent
                .map(|parent| parent.trace_state().clone())
                .unwrap_or_default(),
        }
    }
}

/// The ratio decision of `TraceIdRatioBased`: the low 63 bits of the trace id against the ratio,
/// so every service that samples by trace id keeps the same traces.
fn keeps(trace_id: TraceId, ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    let bound = (ratio.max(0.0) * (1u64 << 63) as f64) as u64;
    let bytes = trace_id.to_bytes();
    let low = u64::from_be_bytes(bytes[8..].try_into().expect("16 bytes"));
    (low >> 1) < bound
}

/// The tail decision (see the module documentation).
#[derive(Debug)]
struct KeepFailures<P> {
    inner: P,
    /// Unsampled ended spans by (trace, parent span), waiting for their parent.
    held: Mutex<HashMap<(TraceId, SpanId), Vec<SpanData>>>,
}

impl<P: SpanProcessor> KeepFailures<P> {
    fn new(inner: P) -> Self {
        Self {
            inner,
            held: Mutex::new(HashMap::new()),
        }
    }
}

impl<P: SpanProcessor> SpanProcessor for KeepFailures<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if span.span_context.is_sampled() {
            self.inner.on_end(span);
            return;
        }
        let trace = span.span_context.trace_id();
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if span.span_kind != SpanKind::Server {
            let key = (trace, span.parent_span_id);
            if held.len() >= MAX_HELD_PARENTS && !held.contains_key(&key) {
                return;
            }
            let children = held.entry(key).or_default();
            if children.len() < MAX_HELD_PER_PARENT {
                children.push(span);
            }
            return;
        }
        let children = held
            .remove(&(trace, span.span_context.span_id()))
            .unwrap_or_default();
        drop(held);
        if matches!(span.status, Status::Error { .. }) {
            for span in children.into_iter().chain(std::iter::once(span)) {
                self.inner.on_end(mark_sampled(span));
            }
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The span as exported: sampled, since it was kept.
fn mark_sampled(mut span: SpanData) -> SpanData {
    let context = &span.span_context;
    span.span_context = SpanContext::new(
        context.trace_id(),
        context.span_id(),
        TraceFlags::SAMPLED,
        context.is_remote(),
        TraceState::clone(context.trace_state()),
    );
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_url_gets_the_traces_path() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://127.0.0.1:4318/"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://otel.example/custom/v1/traces"),
            "https://otel.example/custom/v1/traces"
        );
    }

    #[test]
    fn the_ratio_decision_keeps_about_the_ratio() {
        let mut kept = 0;
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..10_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let id = TraceId::from_bytes(((state as u128) << 64 | state as u128).to_be_bytes());
            kept += usize::from(keeps(id, 0.1));
        }
        assert!((800..1200).contains(&kept), "{kept} of 10000");
        assert!(keeps(TraceId::from_bytes([0xff; 16]), 1.0));
        assert!(!keeps(TraceId::from_bytes([0; 16]), 0.0));
    }

    #[test]
    fn a_malformed_traceparent_starts_a_new_trace() {
        let cx = remote_parent(Some("00-zz-yy-01"), None);
        assert!(!cx.span().span_context().is_valid());
        let cx = remote_parent(
            Some("00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"),
            None,
        );
        assert!(cx.span().span_context().is_valid());
        assert!(cx.span().span_context().is_sampled());
    }
}
