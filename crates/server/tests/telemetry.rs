//! Telemetry of the real daemon, checked against what each test did:
//! - `/metrics` after a scripted mix (tool calls, tool errors, wrong tokens, a foreign Origin, an
//!   oversized body, the failed-authentication limit, the rate limit, a database outage): counters
//!   and histogram counts equal the tally, the text parses as the Prometheus exposition format,
//!   and no canary (content, session id, token) is in it;
//! - a separate metrics listener without authentication;
//! - the last good backup (written by the backup command into `lifecycle_status`) and the rows
//!   the retention task removed;
//! - traces to a loopback OTLP/HTTP receiver: at ratio 1.0 every call is a SERVER span with the
//!   MCP convention's name and attributes, database statements are its children, and trace context
//!   is taken from `traceparent` headers and `params._meta.traceparent` (over stdio the transport
//!   is `pipe`, metrics on a listener of their own); at ratio 0.1 over 1,000
//!   calls the kept share is within statistical bounds and every failed call is kept; no canary
//!   is in any exported byte.

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/mcp_client.rs"]
mod mcp_client;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use config_core::Environment;
use daemon::{Daemon, Launch, TOKEN, stamped_database};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use pg_harness::TestCluster;
use prost::Message as _;
use serde_json::{Value, json};

const RATE_LIMIT_VAR: &str = "COGMEM__SERVER__RATE_LIMIT__REQUESTS_PER_MINUTE";
const FAILED_AUTH_VAR: &str = "COGMEM__SERVER__RATE_LIMIT__FAILED_AUTH_PER_MINUTE";
const CANARY_CONTENT: &str = "canary-content-7f3a9d memory of a private matter";
const CANARY_SESSION: &str = "canary-session-51c0e2";
const CANARY_TOKEN: &str = "canary-token-0b8e6f4d2a917c35";

fn meta(extra: Option<(&str, &str)>) -> Value {
    let mut meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "telemetry-test", "version": "0"},
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    if let Some((key, value)) = extra {
        meta[key] = json!(value);
    }
    meta
}

/// A modern-era `tools/call` over HTTP.
struct Call<'a> {
    tool: &'a str,
    arguments: Value,
    token: &'a str,
    header_traceparent: Option<&'a str>,
    meta_traceparent: Option<&'a str>,
}

impl<'a> Call<'a> {
    fn new(tool: &'a str, arguments: Value) -> Self {
        Call {
            tool,
            arguments,
            token: TOKEN,
            header_traceparent: None,
            meta_traceparent: None,
        }
    }
}

/// What came back: the HTTP status and, for 200, whether the tool result was an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Answer {
    Ok,
    ToolError,
    Status(u16),
}

async fn call(http: &reqwest::Client, base: &str, id: u64, call: Call<'_>) -> Answer {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": call.tool, "arguments": call.arguments,
                   "_meta": meta(call.meta_traceparent.map(|t| ("traceparent", t)))}});
    let mut request = http
        .post(format!("{base}/mcp"))
        .bearer_auth(call.token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", call.tool);
    if let Some(traceparent) = call.header_traceparent {
        request = request.header("traceparent", traceparent);
    }
    let response = request.json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    if status != 200 {
        return Answer::Status(status);
    }
    let value: Value = response.json().await.unwrap();
    assert!(value.get("error").is_none(), "a protocol error: {value}");
    if value["result"]["isError"] == json!(true) {
        Answer::ToolError
    } else {
        Answer::Ok
    }
}

fn store(content: &str) -> Value {
    json!({"session_id": CANARY_SESSION, "speaker": "user", "content": content})
}

/// An argument error: a tool error without touching the database.
fn bad_store() -> Value {
    json!({"session_id": CANARY_SESSION, "speaker": "robot", "content": CANARY_CONTENT})
}

async fn scrape(http: &reqwest::Client, url: &str, token: Option<&str>) -> (u16, String) {
    let mut request = http.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// One sample of the exposition: name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the Prometheus text exposition format (0.0.4) strictly enough to catch a malformed
/// line: `# HELP`/`# TYPE` comments with a valid name and type, samples as
/// `name{label="value",…} number`, label values with `\\`, `\"` and `\n` escapes only, and every
/// histogram's buckets cumulative with `+Inf` equal to `_count`.
fn parse_exposition(text: &str) -> Vec<Sample> {
    fn valid_name(name: &str) -> bool {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }
    let mut samples = Vec::new();
    let mut types = HashMap::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let kind = parts.next().unwrap();
            let name = parts.next().unwrap_or_default();
            assert!(valid_name(name), "bad metric name in: {line}");
            if kind == "TYPE" {
                let ty = parts.next().unwrap_or_default();
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&ty),
                    "bad type in: {line}"
                );
                types.insert(name.to_owned(), ty.to_owned());
            } else {
                assert_eq!(kind, "HELP", "unknown comment: {line}");
            }
            continue;
        }
        let (name_and_labels, value) = line.rsplit_once(' ').expect("a sample has a value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            other => other
                .parse()
                .unwrap_or_else(|_| panic!("bad value in: {line}")),
        };
        let (name, labels) = match name_and_labels.split_once('{') {
            None => (name_and_labels, BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels end with }");
                let mut labels = BTreeMap::new();
                let mut chars = body.chars().peekable();
                while chars.peek().is_some() {
                    let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
                    assert!(valid_name(&key), "bad label name {key:?} in: {line}");
                    assert_eq!(chars.next(), Some('"'), "label value quoted in: {line}");
                    let mut value = String::new();
                    loop {
                        match chars.next().expect("label value ends") {
                            '\\' => match chars.next() {
                                Some('\\') => value.push('\\'),
                                Some('"') => value.push('"'),
                                Some('n') => value.push('\n'),
                                other => panic!("bad escape {other:?} in: {line}"),
                            },
                            '"' => break,
                            c => value.push(c),
                        }
                    }
                    labels.insert(key, value);
                    match chars.next() {
                        None => break,
                        Some(',') => {}
                        other => panic!("expected , after a label, got {other:?} in: {line}"),
                    }
                }
                (name, labels)
            }
        };
        assert!(valid_name(name), "bad sample name in: {line}");
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    // Histograms: cumulative buckets, +Inf == _count.
    for (name, ty) in &types {
        if ty != "histogram" {
            continue;
        }
        type Labels = Vec<(String, String)>;
        let mut series: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
        for sample in samples
            .iter()
            .filter(|s| s.name == format!("{name}_bucket"))
        {
            let mut labels = sample.labels.clone();
            let le = labels.remove("le").expect("a bucket has le");
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            series
                .entry(labels.into_iter().collect())
                .or_default()
                .push((le, sample.value));
        }
        for (labels, mut buckets) in series {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert!(
                buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                "{name} {labels:?}: buckets not cumulative"
            );
            let count = samples
                .iter()
                .find(|s| {
                    s.name == format!("{name}_count")
                        && s.labels.clone().into_iter().collect::<Vec<_>>() == labels
                })
                .expect("a histogram has _count");
            assert_eq!(buckets.last().unwrap().0, f64::INFINITY);
            assert_eq!(buckets.last().unwrap().1, count.value, "{name} {labels:?}");
        }
    }
    samples
}

/// The value of the sample `name` whose labels include `labels`; 0 when there is none.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let matching: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
                && (labels.iter().any(|(k, _)| *k == "error_type")
                    || !s.labels.contains_key("error_type"))
        })
        .collect();
    assert!(matching.len() <= 1, "{name} {labels:?}: {matching:?}");
    matching.first().map_or(0.0, |s| s.value)
}

async fn wait_ready(http: &reqwest::Client, base: &str, want: u16) {
    let started = Instant::now();
    loop {
        let status = http
            .get(format!("{base}/ready"))
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16());
        if status == Some(want) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "/ready not {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_what_a_scripted_mix_did() {
    // A private cluster: this test stops it.
    let cluster = tokio::task::block_in_place(TestCluster::start).unwrap();
    let database = cluster.fresh_database().await.unwrap();
    let pool = sqlx::PgPool::connect(&pg_harness::url_with_tenant(&database.url, "default"))
        .await
        .unwrap();
    db::stamp(&pool, Environment::Test, "tests").await.unwrap();
    pool.close().await;
    const RATE: u32 = 60;
    const FAILED_AUTH: u32 = 10;
    let daemon = Launch::http(&database.url)
        .env(RATE_LIMIT_VAR, &RATE.to_string())
        .env(FAILED_AUTH_VAR, &FAILED_AUTH.to_string())
        .env("COGMEM__DATABASE__ACQUIRE_TIMEOUT_SECS", "1")
        .spawn();
    let mut daemon = daemon;
    let base = daemon.ready();
    let http = reqwest::Client::new();
    // What this test sent, by route and status. Authenticated requests to /mcp count for the
    // principal's rate limit (a burst of RATE); refused credentials for the address's failure
    // allowance (a burst of FAILED_AUTH), scrapes for neither.
    let mut statuses: BTreeMap<(&str, u16), u32> = BTreeMap::new();
    let mut tally: BTreeMap<(&str, Answer), u32> = BTreeMap::new();
    let mut id = 0;
    let mut record = |tool: &'static str, answer: Answer, statuses: &mut BTreeMap<_, _>| {
        let status = match answer {
            Answer::Status(code) => code,
            _ => 200,
        };
        *statuses.entry(("/mcp", status)).or_insert(0) += 1;
        *tally.entry((tool, answer)).or_insert(0) += 1;
    };

    for n in 0..5 {
        id += 1;
        let content = format!("{CANARY_CONTENT} {n}");
        let answer = call(
            &http,
            &base,
            id,
            Call::new("store_raw_dialogue", store(&content)),
        )
        .await;
        assert_eq!(answer, Answer::Ok);
        record("store_raw_dialogue", answer, &mut statuses);
    }
    for _ in 0..3 {
        id += 1;
        let answer = call(
            &http,
            &base,
            id,
            Call::new("search_memory", json!({"query": "canary"})),
        )
        .await;
        assert_eq!(answer, Answer::Ok);
        record("search_memory", answer, &mut statuses);
    }
    for _ in 0..2 {
        id += 1;
        let answer = call(
            &http,
            &base,
            id,
            Call::new("store_raw_dialogue", bad_store()),
        )
        .await;
        assert_eq!(answer, Answer::ToolError);
        record("store_raw_dialogue", answer, &mut statuses);
    }
    for _ in 0..4 {
        id += 1;
        let mut wrong = Call::new("store_raw_dialogue", store(CANARY_CONTENT));
        wrong.token = CANARY_TOKEN;
        let answer = call(&http, &base, id, wrong).await;
        assert_eq!(answer, Answer::Status(401));
        record("-", answer, &mut statuses);
    }
    // A foreign Origin: 403 from the first guard, before the token is looked at.
    let foreign = reqwest::Client::new()
        .post(format!("{base}/mcp"))
        .bearer_auth(TOKEN)
        .header("origin", "https://evil.example")
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":0,"method":"ping"}"#)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(foreign, 403);
    *statuses.entry(("/mcp", 403)).or_insert(0) += 1;
    // An oversized body: 413 from the body limit (1 MiB). The server closes that connection
    // without reading the body, so it goes on a client of its own (not back into the pool).
    let oversized = reqwest::Client::new()
        .post(format!("{base}/mcp"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(vec![b' '; 1_100_000])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(oversized, 413);
    *statuses.entry(("/mcp", 413)).or_insert(0) += 1;
    // /metrics on the main listener needs the token.
    let (status, _) = scrape(&http, &format!("{base}/metrics"), None).await;
    assert_eq!(status, 401);
    *statuses.entry(("/metrics", 401)).or_insert(0) += 1;
    // Wrong tokens until the address has spent its failure allowance: then 429.
    let mut refused = 0;
    loop {
        assert!(
            refused <= 3 * FAILED_AUTH,
            "no 429 for failed authentication"
        );
        id += 1;
        let mut wrong = Call::new("memory_status", json!({}));
        wrong.token = CANARY_TOKEN;
        let answer = call(&http, &base, id, wrong).await;
        record("-", answer, &mut statuses);
        refused += 1;
        if answer == Answer::Status(429) {
            break;
        }
        assert_eq!(answer, Answer::Status(401));
    }

    // The database goes away: readiness falls, a store fails as a tool error.
    tokio::task::block_in_place(|| cluster.stop_server()).unwrap();
    wait_ready(&http, &base, 503).await;
    id += 1;
    let answer = call(
        &http,
        &base,
        id,
        Call::new("store_raw_dialogue", store("during the outage")),
    )
    .await;
    assert_eq!(answer, Answer::ToolError);
    record("store_raw_dialogue", answer, &mut statuses);
    let (status, during) = scrape(&http, &format!("{base}/metrics"), Some(TOKEN)).await;
    assert_eq!(status, 200, "{during}");
    *statuses.entry(("/metrics", 200)).or_insert(0) += 1;
    let during = parse_exposition(&during);
    assert_eq!(value(&during, "cogmem_ready", &[]), 0.0);
    assert_eq!(
        value(&during, "cogmem_health_check_ok", &[("check", "database")]),
        0.0
    );
    tokio::task::block_in_place(|| cluster.start_server()).unwrap();
    wait_ready(&http, &base, 200).await;

    // The rest of the burst (refilled by one a second meanwhile), then 429s.
    let mut limited = 0;
    while limited < 3 {
        assert!(id < 300, "no 429 after the burst: {statuses:?}");
        id += 1;
        let answer = call(
            &http,
            &base,
            id,
            Call::new("get_session", json!({"session_id": CANARY_SESSION})),
        )
        .await;
        if answer == Answer::Status(429) {
            limited += 1;
        }
        record("get_session", answer, &mut statuses);
    }
    // A scrape spends no principal's allowance: it is answered while /mcp answers 429.
    let (status, text) = scrape(&http, &format!("{base}/metrics"), Some(TOKEN)).await;
    assert_eq!(status, 200, "{text}");
    *statuses.entry(("/metrics", 200)).or_insert(0) += 1;
    for canary in [
        CANARY_CONTENT,
        CANARY_SESSION,
        CANARY_TOKEN,
        TOKEN,
        "canary",
    ] {
        assert!(!text.contains(canary), "{canary} in /metrics:\n{text}");
    }
    let samples = parse_exposition(&text);
    println!("what the test did: {statuses:?}\n{tally:?}");

    // Calls: counter and histogram count per tool and outcome.
    for ((tool, answer), n) in &tally {
        let (outcome, error_type) = match answer {
            Answer::Ok => ("ok", None),
            Answer::ToolError => ("tool_error", Some("tool_error")),
            Answer::Status(_) => continue,
        };
        let n = f64::from(*n);
        let labels = [
            ("mcp_method_name", "tools/call"),
            ("gen_ai_tool_name", *tool),
        ];
        let counted = value(
            &samples,
            "cogmem_mcp_calls_total",
            &[labels[0], labels[1], ("outcome", outcome)],
        );
        assert_eq!(counted, n, "{tool} {outcome}");
        let mut histogram = labels.to_vec();
        if let Some(error_type) = error_type {
            histogram.push(("error_type", error_type));
        }
        assert_eq!(
            value(
                &samples,
                "mcp_server_operation_duration_seconds_count",
                &histogram
            ),
            n,
            "{tool} {outcome} histogram"
        );
    }
    // HTTP statuses of the guarded routes, 401/403/413/429 among them; the last scrape counts
    // after it is rendered.
    *statuses.get_mut(&("/metrics", 200)).unwrap() -= 1;
    for ((route, status), n) in &statuses {
        assert_eq!(
            value(
                &samples,
                "http_server_responses_total",
                &[
                    ("http_route", route),
                    ("http_response_status_code", &status.to_string())
                ]
            ),
            f64::from(*n),
            "{route} {status}"
        );
    }
    for status in [401, 403, 413, 429] {
        assert!(statuses.contains_key(&("/mcp", status)), "no {status}");
    }
    // Pool, health and build info.
    assert_eq!(value(&samples, "cogmem_ready", &[]), 1.0);
    for check in ["database", "stamp", "schema"] {
        assert_eq!(
            value(&samples, "cogmem_health_check_ok", &[("check", check)]),
            1.0
        );
    }
    assert_eq!(value(&samples, "cogmem_db_pool_max_connections", &[]), 10.0);
    assert!(value(&samples, "cogmem_db_pool_connections", &[]) >= 1.0);
    assert_eq!(
        value(
            &samples,
            "cogmem_build_info",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("environment", "test")
            ]
        ),
        1.0
    );
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(15)).code(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_can_have_a_listener_of_their_own() {
    let database = stamped_database(Environment::Test).await;
    let mut daemon = Launch::http(&database.url)
        .env("COGMEM__TELEMETRY__METRICS__BIND", "127.0.0.1:0")
        .spawn();
    let base = daemon.ready();
    let address = metrics_address(&daemon);
    let http = reqwest::Client::new();
    let (status, text) = scrape(&http, &format!("http://{address}/metrics"), None).await;
    assert_eq!(status, 200);
    let samples = parse_exposition(&text);
    assert_eq!(value(&samples, "cogmem_ready", &[]), 1.0);
    // Not on the main listener then.
    let (status, _) = scrape(&http, &format!("{base}/metrics"), Some(TOKEN)).await;
    assert_eq!(status, 404);
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(15)).code(), Some(0));
}

/// The metrics listener's address from the daemon's log line.
fn metrics_address(daemon: &Daemon) -> String {
    let started = Instant::now();
    loop {
        let stderr = daemon.stderr();
        if let Some(rest) = stderr.split("metrics at http://").nth(1) {
            return rest.split('/').next().unwrap().to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no metrics address logged:\n{stderr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Export requests as received: raw bytes and decoded.
type Received = Arc<Mutex<Vec<(Vec<u8>, ExportTraceServiceRequest)>>>;

/// A loopback OTLP/HTTP receiver: every export request decoded, and its raw bytes kept.
struct Receiver {
    url: String,
    requests: Received,
}

impl Receiver {
    async fn start() -> Receiver {
        let requests: Received = Arc::default();
        let store = requests.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| {
                let store = store.clone();
                async move {
                    let request = ExportTraceServiceRequest::decode(body.as_ref())
                        .expect("an ExportTraceServiceRequest");
                    store.lock().unwrap().push((body.to_vec(), request));
                    // An empty ExportTraceServiceResponse.
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/x-protobuf")],
                        Vec::<u8>::new(),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, requests }
    }

    fn spans(&self) -> Vec<Span> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, request)| request.resource_spans.iter())
            .flat_map(|resource| resource.scope_spans.iter())
            .flat_map(|scope| scope.spans.iter().cloned())
            .collect()
    }

    fn raw(&self) -> Vec<u8> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(raw, _)| raw.clone())
            .collect()
    }
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        .map(|value| match value {
            AnyValue::StringValue(s) => s.clone(),
            AnyValue::IntValue(i) => i.to_string(),
            AnyValue::BoolValue(b) => b.to_string(),
            other => format!("{other:?}"),
        })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn assert_no_canary(receiver: &Receiver) {
    let raw = receiver.raw();
    assert!(!raw.is_empty(), "nothing exported");
    for canary in [
        CANARY_CONTENT,
        CANARY_SESSION,
        CANARY_TOKEN,
        TOKEN,
        "canary",
    ] {
        assert!(
            !raw.windows(canary.len()).any(|w| w == canary.as_bytes()),
            "{canary} in an exported span"
        );
    }
}

/// The daemon exports what is queued when it stops.
fn stop(mut daemon: Daemon) {
    daemon.signal("TERM");
    let status = daemon.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{}", daemon.stderr());
}

#[tokio::test(flavor = "multi_thread")]
async fn every_call_is_a_server_span_with_database_children_at_ratio_1() {
    let receiver = Receiver::start().await;
    let database = stamped_database(Environment::Test).await;
    let mut daemon = Launch::http(&database.url)
        .env("COGMEM__TELEMETRY__TRACES__ENDPOINT", &receiver.url)
        .env("COGMEM__TELEMETRY__TRACES__SAMPLE_RATIO", "1.0")
        .spawn();
    let base = daemon.ready();
    let http = reqwest::Client::new();
    let header_parent = "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01";
    let meta_parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-a3ce929d0e0e4736-01";

    let mut first = Call::new("store_raw_dialogue", store(CANARY_CONTENT));
    first.header_traceparent = Some(header_parent);
    assert_eq!(call(&http, &base, 1, first).await, Answer::Ok);
    let mut second = Call::new("search_memory", json!({"query": "canary private"}));
    second.meta_traceparent = Some(meta_parent);
    assert_eq!(call(&http, &base, 2, second).await, Answer::Ok);
    let third = Call::new("get_session", json!({"session_id": CANARY_SESSION}));
    assert_eq!(call(&http, &base, 3, third).await, Answer::Ok);
    let fourth = Call::new("store_raw_dialogue", bad_store());
    assert_eq!(call(&http, &base, 4, fourth).await, Answer::ToolError);
    let mut refused = Call::new("memory_status", json!({}));
    refused.token = CANARY_TOKEN;
    assert_eq!(call(&http, &base, 5, refused).await, Answer::Status(401));
    stop(daemon);

    let spans = receiver.spans();
    let servers: Vec<&Span> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Server as i32)
        .collect();
    let names: Vec<&str> = servers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names.len(),
        4,
        "one SERVER span per call that reached the handler: {names:?}"
    );
    for (name, request_id) in [
        ("tools/call store_raw_dialogue", "1"),
        ("tools/call search_memory", "2"),
        ("tools/call get_session", "3"),
        ("tools/call store_raw_dialogue", "4"),
    ] {
        let span = servers
            .iter()
            .find(|s| attribute(s, "jsonrpc.request.id").as_deref() == Some(request_id))
            .unwrap_or_else(|| panic!("no span for request {request_id}: {names:?}"));
        assert_eq!(span.name, name);
        assert_eq!(
            attribute(span, "mcp.method.name").as_deref(),
            Some("tools/call")
        );
        assert_eq!(
            attribute(span, "mcp.protocol.version").as_deref(),
            Some("2026-07-28")
        );
        assert_eq!(attribute(span, "network.transport").as_deref(), Some("tcp"));
        let failed = request_id == "4";
        assert_eq!(
            attribute(span, "error.type").as_deref(),
            failed.then_some("tool_error"),
            "{name} {request_id}"
        );
        // Children: the statements that ran inside the call.
        // Sorted: the two layers of a search run side by side, so their order varies.
        let mut children: Vec<&str> = spans
            .iter()
            .filter(|c| c.trace_id == span.trace_id && c.parent_span_id == span.span_id)
            .map(|c| c.name.as_str())
            .collect();
        children.sort_unstable();
        let expected: &[&str] = match request_id {
            "1" => &["INSERT l0_raw"],
            // The query's tsquery and lexemes (to rank with fewer items), both layers ranked
            // (a two-word query, not an `or` query: every match through the full-text index),
            // then the details of the hits.
            "2" => &[
                "SELECT hit_details",
                "SELECT l0_raw ranked",
                "SELECT l2_insights ranked",
                "SELECT search_query",
            ],
            "3" => &["SELECT l0_raw session"],
            _ => &[],
        };
        assert_eq!(children, expected, "{name} {request_id}");
        for child in spans.iter().filter(|c| c.parent_span_id == span.span_id) {
            assert_eq!(child.kind, SpanKind::Client as i32);
            assert_eq!(
                attribute(child, "db.system.name").as_deref(),
                Some("postgresql")
            );
        }
    }
    // Trace context from the traceparent header and from params._meta.traceparent.
    let by_id = |id: &str| {
        *servers
            .iter()
            .find(|s| attribute(s, "jsonrpc.request.id").as_deref() == Some(id))
            .unwrap()
    };
    assert_eq!(
        hex(&by_id("1").trace_id),
        "0af7651916cd43dd8448eb211c80319c"
    );
    assert_eq!(hex(&by_id("1").parent_span_id), "00f067aa0ba902b7");
    assert_eq!(
        hex(&by_id("2").trace_id),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(hex(&by_id("2").parent_span_id), "a3ce929d0e0e4736");
    assert!(by_id("3").parent_span_id.is_empty(), "a new trace");
    assert_no_canary(&receiver);
}

#[tokio::test(flavor = "multi_thread")]
async fn at_ratio_0_1_about_a_tenth_is_kept_and_every_failure() {
    let receiver = Receiver::start().await;
    let database = stamped_database(Environment::Test).await;
    let mut daemon = Launch::http(&database.url)
        .env("COGMEM__TELEMETRY__TRACES__ENDPOINT", &receiver.url)
        .env("COGMEM__TELEMETRY__TRACES__SAMPLE_RATIO", "0.1")
        .env(RATE_LIMIT_VAR, "100000000")
        .spawn();
    let base = daemon.ready();
    const CALLS: u64 = 1000;
    const FAILING_EVERY: u64 = 10;
    let http = reqwest::Client::new();
    let mut tasks = Vec::new();
    for worker in 0..4u64 {
        let (http, base) = (http.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            let mut failed = 0;
            for n in (worker..CALLS).step_by(4) {
                // Failures of two kinds: an argument error (no statement runs) and an insight
                // citing a turn that does not exist (two statements run, then it fails).
                let (tool, arguments) = if n % FAILING_EVERY == 0 {
                    failed += 1;
                    if n % (2 * FAILING_EVERY) == 0 {
                        ("store_raw_dialogue", bad_store())
                    } else {
                        (
                            "store_insight",
                            json!({"content": CANARY_CONTENT, "source_ids": [i64::MAX - 1]}),
                        )
                    }
                } else {
                    (
                        "store_raw_dialogue",
                        store(&format!("{CANARY_CONTENT} {n}")),
                    )
                };
                let answer = call(&http, &base, n + 1, Call::new(tool, arguments)).await;
                let expected = if n % FAILING_EVERY == 0 {
                    Answer::ToolError
                } else {
                    Answer::Ok
                };
                assert_eq!(answer, expected, "call {n}");
            }
            failed
        }));
    }
    let mut failures = 0;
    for task in tasks {
        failures += task.await.unwrap();
    }
    stop(daemon);

    let spans = receiver.spans();
    let servers: Vec<&Span> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Server as i32)
        .collect();
    let failed_kept = servers
        .iter()
        .filter(|s| attribute(s, "error.type").as_deref() == Some("tool_error"))
        .count() as u64;
    assert!(
        servers
            .iter()
            .all(|s| s.status.as_ref().is_some_and(|status| status.code == 2)
                == attribute(s, "error.type").is_some()),
        "error status exactly on failed calls"
    );
    let ok_kept = servers.len() as u64 - failed_kept;
    let successes = CALLS - failures;
    // Binomial(900, 0.1): mean 90, standard deviation 9; ±4.5 σ is [49, 131] — a false alarm
    // about once in 150,000 runs.
    let mean = successes as f64 * 0.1;
    let sigma = (successes as f64 * 0.1 * 0.9).sqrt();
    println!(
        "ratio 0.1: {ok_kept} of {successes} successful calls kept (expected {mean:.0} ± {sigma:.1}), {failed_kept} of {failures} failed calls"
    );
    assert_eq!(failed_kept, failures, "every failed call is kept");
    assert!(
        (ok_kept as f64 - mean).abs() <= 4.5 * sigma,
        "{ok_kept} successful calls kept, expected {mean:.0} ± {:.0}",
        4.5 * sigma
    );
    // A kept failed call comes with the statements it ran before failing.
    let insight_failures: Vec<&&Span> = servers
        .iter()
        .filter(|s| s.name == "tools/call store_insight")
        .collect();
    assert_eq!(insight_failures.len() as u64, failures / 2);
    for server in insight_failures {
        let children: Vec<&str> = spans
            .iter()
            .filter(|c| c.parent_span_id == server.span_id)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(children, ["BEGIN", "SELECT l0_raw sources"]);
    }
    // A kept successful call comes with its statement.
    for server in servers
        .iter()
        .filter(|s| attribute(s, "error.type").is_none())
    {
        assert!(
            spans
                .iter()
                .any(|c| c.parent_span_id == server.span_id && c.name == "INSERT l0_raw"),
            "a kept call without its database span"
        );
    }
    // Nothing else leaked out: no statement span without its kept call.
    let server_ids: Vec<&Vec<u8>> = servers.iter().map(|s| &s.span_id).collect();
    assert!(
        spans
            .iter()
            .filter(|s| s.kind == SpanKind::Client as i32)
            .all(|c| server_ids.contains(&&c.parent_span_id))
    );
    assert_no_canary(&receiver);
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_applies_a_new_sample_ratio() {
    let receiver = Receiver::start().await;
    let database = stamped_database(Environment::Test).await;
    let mut daemon = Launch::http(&database.url)
        .env("COGMEM__TELEMETRY__TRACES__ENDPOINT", &receiver.url)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .spawn();
    let base = daemon.ready();
    // `.env.test` is read again on SIGHUP (the process environment is not).
    daemon.write_env_file("COGMEM__TELEMETRY__TRACES__SAMPLE_RATIO=0\n");
    daemon.signal("HUP");
    wait_for_log(&daemon, "telemetry.traces.sample_ratio", 1);
    let http = reqwest::Client::new();
    for n in 0..20 {
        let answer = call(
            &http,
            &base,
            n,
            Call::new("store_raw_dialogue", store("at ratio 0")),
        )
        .await;
        assert_eq!(answer, Answer::Ok);
    }
    daemon.write_env_file("COGMEM__TELEMETRY__TRACES__SAMPLE_RATIO=1\n");
    daemon.signal("HUP");
    wait_for_log(&daemon, "telemetry.traces.sample_ratio", 2);
    for n in 100..110 {
        let answer = call(
            &http,
            &base,
            n,
            Call::new("store_raw_dialogue", store("at ratio 1")),
        )
        .await;
        assert_eq!(answer, Answer::Ok);
    }
    stop(daemon);
    let ids: Vec<String> = receiver
        .spans()
        .iter()
        .filter(|s| s.kind == SpanKind::Server as i32)
        .filter_map(|s| attribute(s, "jsonrpc.request.id"))
        .collect();
    let mut expected: Vec<String> = (100..110).map(|n: u64| n.to_string()).collect();
    let mut ids = ids;
    ids.sort();
    expected.sort();
    assert_eq!(ids, expected, "nothing at ratio 0, everything at ratio 1");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stdio_server_traces_calls_as_pipe_and_serves_metrics_on_its_own_listener() {
    use rmcp::ClientServiceExt;
    use rmcp::model::{CallToolRequestParams, ProtocolVersion};
    use rmcp::transport::TokioChildProcess;
    use tokio::io::AsyncBufReadExt;

    let receiver = Receiver::start().await;
    let database = stamped_database(Environment::Test).await;
    let root = daemon::config_root();
    let mut command = tokio::process::Command::new(daemon::BIN);
    command
        .env_clear()
        .env("DATABASE_URL", &database.url)
        .env("LOG_FORMAT", "json")
        .env("COGMEM__TELEMETRY__TRACES__ENDPOINT", &receiver.url)
        .env("COGMEM__TELEMETRY__METRICS__BIND", "127.0.0.1:0")
        .args(["--env", "test", "--config-root"])
        .arg(root.path())
        .args(["serve", "--transport", "stdio"]);
    let (transport, stderr) = TokioChildProcess::builder(command)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let lines = log.clone();
    let mut stderr = tokio::io::BufReader::new(stderr.unwrap()).lines();
    let logs = tokio::spawn(async move {
        while let Ok(Some(line)) = stderr.next_line().await {
            let mut log = lines.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    let client = ()
        .serve_with_lifecycle(
            transport,
            mcp_client::lifecycle(&ProtocolVersion::V_2026_07_28),
        )
        .await
        .unwrap();
    let stored = client
        .call_tool(
            CallToolRequestParams::new("store_raw_dialogue")
                .with_arguments(store(CANARY_CONTENT).as_object().unwrap().clone()),
        )
        .await
        .unwrap();
    assert_ne!(stored.is_error, Some(true));

    // No main listener over stdio: metrics are on their own.
    let started = Instant::now();
    let address = loop {
        let text = log.lock().unwrap().clone();
        if let Some(rest) = text.split("metrics at http://").nth(1) {
            break rest.split('/').next().unwrap().to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no metrics address logged:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (status, text) = scrape(
        &reqwest::Client::new(),
        &format!("http://{address}/metrics"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let samples = parse_exposition(&text);
    assert_eq!(
        value(
            &samples,
            "cogmem_mcp_calls_total",
            &[
                ("gen_ai_tool_name", "store_raw_dialogue"),
                ("outcome", "ok")
            ]
        ),
        1.0
    );

    // Closing stdin ends the server, which exports what is queued.
    client.cancel().await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), logs)
        .await
        .expect("the server exits after stdin closes")
        .unwrap();
    let spans = receiver.spans();
    let server = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32 && s.name == "tools/call store_raw_dialogue")
        .unwrap_or_else(|| panic!("no SERVER span: {spans:?}"));
    assert_eq!(
        attribute(server, "network.transport").as_deref(),
        Some("pipe")
    );
    let children: Vec<&str> = spans
        .iter()
        .filter(|c| c.parent_span_id == server.span_id)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(children, ["INSERT l0_raw"]);
    assert_no_canary(&receiver);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_last_good_backup_and_retention_purges_are_metrics() {
    let database = stamped_database(Environment::Test).await;
    // Expired turns (the test environment keeps raw turns for 14 days) and a recent one.
    let pool = sqlx::PgPool::connect(&pg_harness::url_with_tenant(&database.url, "default"))
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO l0_raw (session_id, speaker, content, created_at)
         SELECT 'old', 'user', 'expired ' || g, now() - interval '20 days'
         FROM generate_series(1, 30) g",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let mut daemon = Launch::http(&database.url)
        .env("COGMEM__MEMORY__RETENTION__BATCH_SIZE", "7")
        .env("COGMEM__MEMORY__RETENTION__BATCH_PAUSE_MS", "1")
        .spawn();
    let base = daemon.ready();
    let http = reqwest::Client::new();
    let url = format!("{base}/metrics");
    let has = |samples: &[Sample], name: &str| samples.iter().any(|s| s.name == name);

    // The first retention run starts with the daemon: 30 turns in batches of 7.
    let started = Instant::now();
    let samples = loop {
        let (status, text) = scrape(&http, &url, Some(TOKEN)).await;
        assert_eq!(status, 200, "{text}");
        let samples = parse_exposition(&text);
        if has(&samples, "cogmem_retention_last_success_timestamp_seconds") {
            break samples;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no retention run reported:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    assert_eq!(
        value(
            &samples,
            "cogmem_retention_purged_total",
            &[("layer", "raw")]
        ),
        30.0
    );
    assert_eq!(
        value(
            &samples,
            "cogmem_retention_purged_total",
            &[("layer", "insight")]
        ),
        0.0
    );
    let ran = value(
        &samples,
        "cogmem_retention_last_success_timestamp_seconds",
        &[],
    );
    assert!((now() - ran).abs() < 30.0, "retention ran at {ran}");
    // No backup yet: no backup gauge (alert on its absence too).
    assert!(!has(
        &samples,
        "cogmem_backup_last_success_timestamp_seconds"
    ));

    // A backup as the operator's timer runs it: the backup command of the same binary, another
    // process, which records its outcome in lifecycle_status.
    let backups = tempfile::tempdir().unwrap();
    let root = daemon::config_root();
    let before = now().floor();
    let output = std::process::Command::new(daemon::BIN)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", &database.url)
        // Backups read every tenant through a role that bypasses row-level security (V7).
        .env("COGMEM__BACKUP__DATABASE_URL", &database.admin_url)
        .env("MCP_AUTH_TOKEN", TOKEN)
        .args(["--env", "test", "--config-root"])
        .arg(root.path())
        .args(["backup", "--to"])
        .arg(backups.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "backup failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let after = now().ceil();
    let (status, text) = scrape(&http, &url, Some(TOKEN)).await;
    assert_eq!(status, 200);
    let samples = parse_exposition(&text);
    let backed_up = value(
        &samples,
        "cogmem_backup_last_success_timestamp_seconds",
        &[],
    );
    // Whole seconds from the database's clock: within a second of the command's run.
    assert!(
        (before - 1.0..=after + 1.0).contains(&backed_up),
        "last good backup at {backed_up}, the command ran {before}..{after}"
    );
    stop(daemon);
}

/// Waits until `needle` appeared in `times` lines of the daemon's log.
fn wait_for_log(daemon: &Daemon, needle: &str, times: usize) {
    let started = Instant::now();
    while daemon
        .stderr()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
        < times
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{needle} not logged {times} time(s):\n{}",
            daemon.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Metric names (`cogmem_…`, `mcp_server_…`, `http_server_…`) mentioned in `text`, without the
/// histogram suffixes.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| {
            ["cogmem_", "mcp_server_", "http_server_"]
                .iter()
                .any(|prefix| word.starts_with(prefix))
        })
        .map(|word| {
            ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| word.strip_suffix(suffix))
                .unwrap_or(word)
                .to_owned()
        })
        .collect()
}

#[test]
fn the_dashboard_and_the_docs_name_only_metrics_the_daemon_exports() {
    use cognitive_memory_mcp::telemetry::metrics::*;
    let exported = [
        OPERATION_DURATION,
        CALLS,
        HTTP_RESPONSES,
        POOL_SIZE,
        POOL_IDLE,
        POOL_MAX,
        STATEMENTS_IN_FLIGHT,
        POOL_WAITERS,
        HEALTH_CHECK,
        READY,
        BUILD_INFO,
        BACKUP_LAST_SUCCESS,
        RETENTION_PURGED,
        RETENTION_LAST_SUCCESS,
    ];
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for file in [
        "deploy/grafana/cognitive-memory-mcp.json",
        "docs/observability.md",
    ] {
        let text = std::fs::read_to_string(repo.join(file)).unwrap();
        if file.ends_with(".json") {
            let dashboard: Value = serde_json::from_str(&text).unwrap();
            assert!(!dashboard["panels"].as_array().unwrap().is_empty());
        }
        let named = metric_names(&text);
        for name in &named {
            assert!(
                exported.contains(&name.as_str()),
                "{file} names {name}, which is not exported"
            );
        }
        if file.ends_with(".md") {
            for name in exported {
                assert!(named.contains(name), "{file} does not document {name}");
            }
        }
    }
}
