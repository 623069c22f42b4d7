//! Reliability of the real daemon under stress, each test printing what it measured:
//! - a database outage under write load: tool errors, `/ready` 503, `STATUS=degraded`, pets
//!   still arriving, recovery without a restart, and every acknowledged write stored exactly once;
//! - SIGTERM under write load: in-flight calls finish or fail cleanly, exit 0, `STOPPING=1`, and
//!   acknowledged writes equal the rows written;
//! - hostile input over HTTP: thousands of malformed requests, never a 5xx, the daemon stays up
//!   and its memory bounded.
//!
//! Timing goals live in the benchmarks; the only bound here is the recovery deadline the daemon
//! promises (its monitor checks every 2 s).

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/mcp_http.rs"]
mod mcp_http;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use config_core::Environment;
use daemon::{Daemon, Launch, TOKEN};
use mcp_http::{meta, tool_call};
use pg_harness::TestCluster;
use serde_json::{Value, json};

const RATE_LIMIT_VAR: &str = "COGMEM__SERVER__RATE_LIMIT__REQUESTS_PER_MINUTE";
const WRITERS: usize = 8;

/// A modern-era POST to `/mcp` with the headers matching `method` and `name`, authenticated.
fn mcp_post(
    http: &reqwest::Client,
    base: &str,
    method: &str,
    name: Option<&str>,
) -> reqwest::RequestBuilder {
    mcp_http::post(http, base, method, name).bearer_auth(TOKEN)
}

/// What one `store_raw_dialogue` call came back with.
#[derive(Debug, Clone)]
enum Write {
    /// Acknowledged: the tool result with the stored id.
    Acked { id: i64, content: String },
    /// A tool error (`isError: true`) with its text.
    ToolError { content: String, text: String },
    /// Another HTTP status.
    Status { content: String, status: u16 },
    /// No answer: the connection failed or was closed.
    Connection { content: String },
}

impl Write {
    fn content(&self) -> &str {
        match self {
            Write::Acked { content, .. }
            | Write::ToolError { content, .. }
            | Write::Status { content, .. }
            | Write::Connection { content } => content,
        }
    }
}

async fn store(http: &reqwest::Client, base: &str, id: u64, session: &str, content: &str) -> Write {
    let body = tool_call(
        id,
        "store_raw_dialogue",
        json!({"session_id": session, "speaker": "user", "content": content}),
    );
    let content = content.to_owned();
    let response = match mcp_post(http, base, "tools/call", Some("store_raw_dialogue"))
        .json(&body)
        .send()
        .await
    {
        Ok(response) => response,
        Err(_) => return Write::Connection { content },
    };
    let status = response.status().as_u16();
    let Ok(text) = response.text().await else {
        return Write::Connection { content };
    };
    if status != 200 {
        return Write::Status { content, status };
    }
    let value: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    if let Some(error) = value.get("error") {
        let text = format!(
            "JSON-RPC error: {}",
            error["message"].as_str().unwrap_or_default()
        );
        return Write::ToolError { content, text };
    }
    let result = &value["result"];
    if result["isError"] == json!(true) {
        let text = result["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        return Write::ToolError { content, text };
    }
    match result["structuredContent"]["id"].as_i64() {
        Some(id) => Write::Acked { id, content },
        None => panic!("an answer that is neither a result nor a tool error: {value}"),
    }
}

/// `WRITERS` tasks storing unique turns back to back until `stop`; every outcome recorded.
struct Writers {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<(Instant, Write)>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    fn start(base: &str, label: &'static str) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for writer in 0..WRITERS {
            let (stop, log, base) = (stop.clone(), log.clone(), base.to_owned());
            tasks.push(tokio::spawn(async move {
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .unwrap();
                let session = format!("{label}-{writer}");
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let content =
                        format!("{label} writer {writer} turn {n} marker {label}w{writer}n{n}");
                    let write = store(&http, &base, n, &session, &content).await;
                    let failed = !matches!(write, Write::Acked { .. });
                    log.lock().unwrap().push((Instant::now(), write));
                    if failed {
                        // Keep trying, without spinning on an unavailable database.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }));
        }
        Writers { stop, log, tasks }
    }

    fn snapshot(&self) -> Vec<(Instant, Write)> {
        self.log.lock().unwrap().clone()
    }

    async fn finish(self) -> Vec<(Instant, Write)> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        Arc::try_unwrap(self.log).unwrap().into_inner().unwrap()
    }
}

/// Counts by kind, for printing.
fn tally(writes: &[(Instant, Write)]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for (_, write) in writes {
        let kind = match write {
            Write::Acked { .. } => "acknowledged".to_owned(),
            Write::ToolError { text, .. } => format!("tool error: {text}"),
            Write::Status { status, .. } => format!("HTTP {status}"),
            Write::Connection { .. } => "connection error".to_owned(),
        };
        *counts.entry(kind).or_default() += 1;
    }
    counts
}

/// Checks every acknowledged write against the table: present under its id with its content,
/// and stored exactly once. Returns (acknowledged, found, duplicates, stored but not acknowledged).
async fn verify_writes(
    admin_url: &str,
    writes: &[(Instant, Write)],
    session_prefix: &str,
) -> (usize, usize, usize, usize) {
    let pool = sqlx::PgPool::connect(admin_url).await.unwrap();
    let acked: HashMap<i64, &str> = writes
        .iter()
        .filter_map(|(_, write)| match write {
            Write::Acked { id, content } => Some((*id, content.as_str())),
            _ => None,
        })
        .collect();
    let acked_count = writes
        .iter()
        .filter(|(_, write)| matches!(write, Write::Acked { .. }))
        .count();
    assert_eq!(acked.len(), acked_count, "an id was acknowledged twice");
    let ids: Vec<i64> = acked.keys().copied().collect();
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, content FROM l0_raw WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_all(&pool)
            .await
            .unwrap();
    let mut found = 0;
    for (id, content) in &rows {
        assert_eq!(
            Some(&content.as_str()),
            acked.get(id),
            "row {id} holds another turn"
        );
        found += 1;
    }
    // By content: every turn of the writers, acknowledged or not, is stored at most once.
    let stored: Vec<(String, i64)> = sqlx::query_as(
        "SELECT content, count(*) FROM l0_raw WHERE session_id LIKE $1 || '-%' GROUP BY content",
    )
    .bind(session_prefix)
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    let duplicates = stored.iter().filter(|(_, count)| *count > 1).count();
    let acked_contents: HashSet<&str> = acked.values().copied().collect();
    let attempted: HashSet<&str> = writes.iter().map(|(_, write)| write.content()).collect();
    let unacknowledged_but_stored = stored
        .iter()
        .filter(|(content, _)| !acked_contents.contains(content.as_str()))
        .count();
    for (content, _) in &stored {
        assert!(
            attempted.contains(content.as_str()),
            "a turn nobody wrote: {content}"
        );
    }
    (acked_count, found, duplicates, unacknowledged_but_stored)
}

async fn ready_status(http: &reqwest::Client, base: &str) -> Option<u16> {
    http.get(format!("{base}/ready"))
        .send()
        .await
        .ok()
        .map(|response| response.status().as_u16())
}

/// Reads notify datagrams for `timeout` without blocking the runtime's other tasks.
fn wait_for(
    daemon: &mut Daemon,
    timeout: Duration,
    predicate: impl Fn(&str) -> bool,
) -> Option<String> {
    tokio::task::block_in_place(|| daemon.wait_for(timeout, predicate))
}

fn statuses_are_clean(writes: &[(Instant, Write)]) {
    for (_, write) in writes {
        if let Write::Status { status, .. } = write {
            assert!(
                *status < 500 || *status == 503,
                "a 5xx other than 503: {status}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_outage_under_write_load_loses_no_acknowledged_write() {
    // A private cluster: this test stops it.
    let cluster = tokio::task::block_in_place(TestCluster::start).unwrap();
    let database = cluster.fresh_database().await.unwrap();
    let pool = sqlx::PgPool::connect(&pg_harness::url_with_tenant(&database.url, "default"))
        .await
        .unwrap();
    db::stamp(&pool, Environment::Test, "tests").await.unwrap();
    pool.close().await;
    let mut daemon = Launch::http(&database.url)
        .env(RATE_LIMIT_VAR, "100000000")
        .env("COGMEM__DATABASE__ACQUIRE_TIMEOUT_SECS", "1")
        .watchdog(2_000_000)
        .spawn();
    let base = daemon.ready();
    let http = reqwest::Client::new();
    let pid = daemon.pid();

    let writers = Writers::start(&base, "outage");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before_outage = writers.snapshot().len();
    assert!(before_outage > 0, "no write before the outage");

    let stopped_at = Instant::now();
    tokio::task::block_in_place(|| cluster.stop_server()).unwrap();
    // Usually "database unavailable"; when the outage begins between the monitor's stamp and
    // schema checks, the schema check's failed connection is what it reports.
    let degraded = wait_for(&mut daemon, Duration::from_secs(15), |m| {
        m.starts_with("STATUS=degraded: ")
    });
    assert!(
        degraded.is_some(),
        "no STATUS=degraded: {:?}\n{}",
        daemon.messages,
        daemon.stderr()
    );
    let degraded_after = stopped_at.elapsed();
    let degraded = degraded.unwrap();
    assert_eq!(ready_status(&http, &base).await, Some(503));
    // Pets go on while degraded: a restart would not bring PostgreSQL back.
    let pets_before = daemon
        .messages
        .iter()
        .filter(|m| *m == "WATCHDOG=1")
        .count();
    let petted = wait_for(&mut daemon, Duration::from_secs(3), |m| m == "WATCHDOG=1");
    assert!(petted.is_some(), "no WATCHDOG=1 while degraded");
    // Keep the outage up long enough for the writers to see it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let errors = writers
            .snapshot()
            .iter()
            .filter(|(at, write)| {
                *at > stopped_at
                    && matches!(write, Write::ToolError { text, .. } if text == "database unavailable")
            })
            .count();
        if errors >= WRITERS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "writers saw no 'database unavailable': {:?}",
            tally(&writers.snapshot())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Hold the outage (3 s of it degraded: three watchdog intervals), reading what the daemon says.
    let until = (stopped_at + Duration::from_secs(4))
        .max(stopped_at + degraded_after + Duration::from_secs(3));
    let hold = until.saturating_duration_since(Instant::now());
    let _ = wait_for(&mut daemon, hold, |_| false);
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "the daemon exited during the outage"
    );
    let pets_during = daemon
        .messages
        .iter()
        .filter(|m| *m == "WATCHDOG=1")
        .count()
        - pets_before;
    assert!(pets_during >= 2, "{pets_during} pet(s) while degraded");

    tokio::task::block_in_place(|| cluster.start_server()).unwrap();
    let back_at = Instant::now();
    let recovered = loop {
        if ready_status(&http, &base).await == Some(200) {
            break back_at.elapsed();
        }
        assert!(
            back_at.elapsed() < Duration::from_secs(15),
            "/ready not 200 within 15 s of the database being back:\n{}",
            daemon.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let outage = back_at - stopped_at;
    // Writes succeed again.
    let resumed = Instant::now();
    loop {
        let acked_after = writers
            .snapshot()
            .iter()
            .filter(|(at, write)| *at > resumed && matches!(write, Write::Acked { .. }))
            .count();
        if acked_after >= WRITERS * 10 {
            break;
        }
        assert!(
            resumed.elapsed() < Duration::from_secs(15),
            "writes did not resume"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let writes = writers.finish().await;
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "the daemon was restarted or died"
    );
    assert_eq!(daemon.pid(), pid);
    statuses_are_clean(&writes);

    let (acked, found, duplicates, unacked_stored) =
        verify_writes(&database.admin_url, &writes, "outage").await;
    let failed = writes.len() - acked;
    println!(
        "outage of {:.1} s under {WRITERS} writers: `{degraded}` after {:.1} s, {pets_during} pet(s) while degraded, /ready 200 {:.0} ms after the database was back",
        outage.as_secs_f64(),
        degraded_after.as_secs_f64(),
        recovered.as_secs_f64() * 1e3
    );
    println!("calls: {:?}", tally(&writes));
    println!(
        "acknowledged={acked}, found={found}, duplicates={duplicates}, failed={failed}, stored without acknowledgement={unacked_stored}"
    );
    assert!(
        recovered <= Duration::from_secs(5),
        "/ready took {recovered:?} to come back after the database"
    );
    assert_eq!(found, acked);
    assert_eq!(duplicates, 0);
    assert!(failed > 0, "the outage failed no call");

    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(15)).code(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_under_write_load_drains_and_exits_0() {
    let database = daemon::stamped_database(Environment::Test).await;
    let mut daemon = Launch::http(&database.url)
        .env(RATE_LIMIT_VAR, "100000000")
        .spawn();
    let base = daemon.ready();
    let writers = Writers::start(&base, "sigterm");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let signalled = Instant::now();
    daemon.signal("TERM");
    let status = tokio::task::block_in_place(|| daemon.wait_exit(Duration::from_secs(20)));
    let exited = signalled.elapsed();
    // Writers now only get connection errors; give them a moment to notice.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let writes = writers.finish().await;
    statuses_are_clean(&writes);
    let (acked, found, duplicates, unacked_stored) =
        verify_writes(&database.admin_url, &writes, "sigterm").await;
    let pool = sqlx::PgPool::connect(&database.admin_url).await.unwrap();
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM l0_raw WHERE session_id LIKE 'sigterm-%'")
            .fetch_one(&pool)
            .await
            .unwrap();
    pool.close().await;
    let after_signal: Vec<_> = writes
        .iter()
        .filter(|(at, _)| *at > signalled)
        .cloned()
        .collect();
    println!(
        "SIGTERM under {WRITERS} writers: exit {:?} after {:.0} ms; calls answered after the signal: {:?}",
        status.code(),
        exited.as_secs_f64() * 1e3,
        tally(&after_signal)
    );
    println!("all calls: {:?}", tally(&writes));
    println!(
        "acknowledged={acked}, rows written={rows}, found={found}, duplicates={duplicates}, stored without acknowledgement={unacked_stored}"
    );
    assert_eq!(status.code(), Some(0), "{}", daemon.stderr());
    assert!(daemon.saw("STOPPING=1"), "{:?}", daemon.messages);
    assert!(acked > 0);
    assert_eq!(found, acked);
    assert_eq!(duplicates, 0);
    assert_eq!(
        rows, acked as i64,
        "rows written differ from acknowledged writes"
    );
    // A call cut off by the stop fails as a connection error or a 503, never as a tool error
    // reporting a half-done write.
    for (_, write) in &writes {
        if let Write::ToolError { text, .. } = write {
            panic!("a tool error during the stop: {text}");
        }
    }
}

/// SplitMix64, so a failing input can be reproduced from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024.0
}

/// One hostile request: its kind, headers (method, name, protocol version) and body bytes.
struct Hostile {
    kind: &'static str,
    method: Option<Vec<u8>>,
    name: Option<Vec<u8>>,
    version: Option<&'static str>,
    content_type: &'static str,
    body: Vec<u8>,
}

impl Hostile {
    fn new(kind: &'static str, method: &str, name: Option<&str>, body: Vec<u8>) -> Hostile {
        Hostile {
            kind,
            method: Some(method.as_bytes().to_vec()),
            name: name.map(|name| name.as_bytes().to_vec()),
            version: Some("2026-07-28"),
            content_type: "application/json",
            body,
        }
    }
}

const MAX_BODY: usize = 256 * 1024;

fn hostile(rng: &mut Rng, n: u64) -> Hostile {
    let store = |arguments: Value| tool_call(n, "store_raw_dialogue", arguments);
    let valid = serde_json::to_vec(&store(
        json!({"session_id": "fuzz", "speaker": "user", "content": "ok"}),
    ))
    .unwrap();
    match rng.below(10) {
        0 => {
            // Malformed JSON: a valid body cut short, bytes flipped, or JSON-ish noise.
            let body = match rng.below(3) {
                0 => valid[..rng.below(valid.len())].to_vec(),
                1 => {
                    let mut body = valid.clone();
                    for _ in 0..1 + rng.below(4) {
                        let at = rng.below(body.len());
                        body[at] = *rng.pick(b"{}[]\",:\\ 0x\x00");
                    }
                    body
                }
                _ => (0..rng.below(200))
                    .map(|_| *rng.pick(b"{}[]\",:\\ 0123456789truefalsnul-.eE"))
                    .collect(),
            };
            Hostile::new(
                "malformed JSON",
                "tools/call",
                Some("store_raw_dialogue"),
                body,
            )
        }
        1 => {
            // Valid JSON, wrong JSON-RPC shape.
            let shapes = [
                json!(null),
                json!([]),
                json!([1, 2, 3]),
                json!("tools/call"),
                json!({}),
                json!({"jsonrpc": "1.0", "id": 1, "method": "tools/call", "params": {"_meta": meta()}}),
                json!({"jsonrpc": "2.0", "id": {"nested": true}, "method": "tools/call", "params": {"_meta": meta()}}),
                json!({"jsonrpc": "2.0", "id": 1, "method": 42, "params": {"_meta": meta()}}),
                json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": [1, 2]}),
                json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": "x"}),
                json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call"}),
                json!({"jsonrpc": "2.0", "id": 1, "method": "no/such/method", "params": {"_meta": meta()}}),
                json!({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "store_raw_dialogue", "_meta": meta()}}),
                json!({"jsonrpc": "2.0", "id": 1, "result": {}}),
                json!({"jsonrpc": "2.0", "id": 1, "error": {"code": 1, "message": "x"}}),
                json!([{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta()}}]),
                json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "store_raw_dialogue", "arguments": {}, "_meta": "not an object"}}),
                json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "store_raw_dialogue", "arguments": {}, "_meta": {"io.modelcontextprotocol/protocolVersion": 7}}}),
            ];
            let body = serde_json::to_vec(rng.pick(&shapes)).unwrap();
            Hostile::new(
                "wrong JSON-RPC shape",
                "tools/call",
                Some("store_raw_dialogue"),
                body,
            )
        }
        2 => {
            // Right shape, wrong argument types or values.
            let arguments = [
                json!({"session_id": 42, "speaker": "user", "content": "x"}),
                json!({"session_id": "s", "speaker": "robot", "content": "x"}),
                json!({"session_id": "s", "speaker": "user", "content": {"a": 1}}),
                json!({"session_id": "s", "speaker": "user", "content": null}),
                json!({"session_id": "", "speaker": "user", "content": "x"}),
                json!({"session_id": "s".repeat(500), "speaker": "user", "content": "x"}),
                json!({"session_id": "s", "speaker": "user", "content": "x", "metadata": "not an object"}),
                json!({"session_id": "s", "speaker": "user", "content": "x", "metadata": {"k": "v".repeat(20_000)}}),
                json!({"session_id": "s", "speaker": "user", "content": "x", "unexpected": [1, 2]}),
                json!([1, 2, 3]),
                json!("arguments as a string"),
                json!({"query": 5}),
            ];
            let tools = [
                "store_raw_dialogue",
                "search_memory",
                "get_session",
                "forget",
                "store_insight",
                "memory_status",
                "no_such_tool",
            ];
            let tool = *rng.pick(&tools);
            let mut body = tool_call(n, tool, rng.pick(&arguments).clone());
            if rng.below(4) == 0 {
                // Search and session arguments of the wrong type.
                body["params"]["arguments"] = json!({"query": ["a"], "limit": -3, "layer": "everything", "session_id": 1, "before_id": "x", "items": "all"});
            }
            Hostile::new(
                "wrong argument types",
                "tools/call",
                Some(tool),
                serde_json::to_vec(&body).unwrap(),
            )
        }
        3 => {
            // Invalid UTF-8 inside strings, in the body or in the Mcp-Name header.
            let mut body = serde_json::to_vec(&store(
                json!({"session_id": "fuzz", "speaker": "user", "content": "AAAA"}),
            ))
            .unwrap();
            let at = body.windows(4).position(|w| w == b"AAAA").unwrap();
            let bad: &[&[u8]] = &[
                b"\xff\xfe",
                b"\xc3\x28",
                b"\xed\xa0\x80",
                b"\xf0\x28\x8c\xbc",
                b"\x80",
            ];
            body.splice(at..at + 4, rng.pick(bad).iter().copied());
            let mut request = Hostile::new(
                "invalid UTF-8",
                "tools/call",
                Some("store_raw_dialogue"),
                body,
            );
            if rng.below(3) == 0 {
                request.name = Some(b"store_\xff\xferaw".to_vec());
                request.body = valid;
            }
            request
        }
        4 => {
            // Huge strings, under and over the body limit.
            let over = rng.below(2) == 0;
            let size = if over {
                MAX_BODY + 1 + rng.below(MAX_BODY)
            } else {
                MAX_BODY / 2 + rng.below(MAX_BODY / 4)
            };
            let body = serde_json::to_vec(&store(
                json!({"session_id": "fuzz", "speaker": "user", "content": "x".repeat(size)}),
            ))
            .unwrap();
            Hostile::new(
                if over {
                    "huge string, over the body limit"
                } else {
                    "huge string, under the body limit"
                },
                "tools/call",
                Some("store_raw_dialogue"),
                body,
            )
        }
        5 => {
            // Deeply nested JSON: as the whole body, as arguments, as metadata.
            let depth = 10_000;
            let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let objects = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
            let body = match rng.below(3) {
                0 => nested.into_bytes(),
                1 => format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"store_raw_dialogue","arguments":{objects}}}}}"#).into_bytes(),
                _ => format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"store_raw_dialogue","arguments":{{"session_id":"s","speaker":"user","content":"x","metadata":{{"deep":{nested}}}}},"_meta":{}}}}}"#, meta()).into_bytes(),
            };
            Hostile::new(
                "deeply nested JSON",
                "tools/call",
                Some("store_raw_dialogue"),
                body,
            )
        }
        6 => {
            // Headers that do not match the body.
            let mut request = Hostile::new(
                "header mismatch",
                "tools/call",
                Some("store_raw_dialogue"),
                valid,
            );
            match rng.below(6) {
                0 => request.method = Some(b"tools/list".to_vec()),
                1 => request.name = Some(b"search_memory".to_vec()),
                2 => request.name = None,
                3 => request.method = None,
                4 => request.method = Some(b"TOOLS/CALL".to_vec()),
                _ => request.content_type = "text/plain",
            }
            request
        }
        7 => {
            // Unsupported or missing protocol version.
            let mut request = Hostile::new(
                "unsupported MCP-Protocol-Version",
                "tools/call",
                Some("store_raw_dialogue"),
                valid,
            );
            request.version = *rng.pick(&[
                Some("1999-01-01"),
                Some("2026-13-45"),
                Some("latest"),
                Some(""),
                None,
            ]);
            request
        }
        8 => {
            // Well-formed but absurd values.
            let body = serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": {
                "name": "search_memory", "_meta": meta(),
                "arguments": {"query": *rng.pick(&["", "-", "\"", "\"unterminated", "a & | ! ( ) :* <->", "-only -excluded", &"word ".repeat(300)]), "limit": *rng.pick(&[0, 1, 50, 51, 1_000_000_000])}
            }})).unwrap();
            Hostile::new("absurd values", "tools/call", Some("search_memory"), body)
        }
        _ => {
            // Random bytes.
            let body = (0..rng.below(512)).map(|_| rng.next() as u8).collect();
            Hostile::new(
                "random bytes",
                "tools/call",
                Some("store_raw_dialogue"),
                body,
            )
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_input_never_gets_a_5xx_and_memory_stays_bounded() {
    let database = daemon::stamped_database(Environment::Test).await;
    let mut daemon = Launch::http(&database.url)
        .env(RATE_LIMIT_VAR, "100000000")
        .env(
            "COGMEM__SERVER__HTTP__MAX_BODY_BYTES",
            &MAX_BODY.to_string(),
        )
        .spawn();
    let base = daemon.ready();
    let pid = daemon.pid();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    // The daemon answers a body over the limit with 413 before reading it, then drops the
    // connection; a pooled connection would fail the next request. A body over the limit
    // therefore goes on a connection of its own.
    let unpooled = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let rss_before = rss_mib(pid);
    let mut rng = Rng(0x5EED_F022);
    let requests = 3000;
    let mut seen: BTreeMap<&'static str, BTreeMap<String, usize>> = BTreeMap::new();
    let mut rss_max = rss_before;
    for n in 0..requests {
        let request = hostile(&mut rng, n);
        let client = if request.kind.contains("over the body limit") {
            &unpooled
        } else {
            &http
        };
        let mut builder = client
            .post(format!("{base}/mcp"))
            .bearer_auth(TOKEN)
            .header("content-type", request.content_type)
            .header("accept", "application/json, text/event-stream");
        if let Some(version) = request.version {
            builder = builder.header("mcp-protocol-version", version);
        }
        if let Some(method) = &request.method {
            builder = builder.header(
                "mcp-method",
                reqwest::header::HeaderValue::from_bytes(method).unwrap(),
            );
        }
        if let Some(name) = &request.name {
            builder = builder.header(
                "mcp-name",
                reqwest::header::HeaderValue::from_bytes(name).unwrap(),
            );
        }
        let outcome = match builder.body(request.body).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.bytes().await.map(|b| b.len());
                assert!(
                    status < 500,
                    "{}: HTTP {status} for request {n}",
                    request.kind
                );
                match body {
                    Ok(_) => status.to_string(),
                    Err(_) => format!("{status}, body cut off"),
                }
            }
            // The server may close the connection while a body over the limit is still being sent.
            Err(err) if request.kind.contains("over the body limit") => format!(
                "connection closed ({})",
                if err.is_request() { "request" } else { "other" }
            ),
            Err(err) => panic!(
                "{}: request {n} failed: {err:?}\n{}",
                request.kind,
                daemon.stderr()
            ),
        };
        *seen
            .entry(request.kind)
            .or_default()
            .entry(outcome)
            .or_default() += 1;
        if n % 250 == 0 {
            assert!(
                daemon.child.try_wait().unwrap().is_none(),
                "the daemon died at request {n}:\n{}",
                daemon.stderr()
            );
            rss_max = rss_max.max(rss_mib(pid));
        }
    }
    let health = http.get(format!("{base}/health")).send().await.unwrap();
    let rss_after = rss_mib(pid);
    rss_max = rss_max.max(rss_after);
    // Still serving real work.
    let write = store(&http, &base, 1, "after-fuzz", "still works").await;
    for (kind, statuses) in &seen {
        let total: usize = statuses.values().sum();
        println!("{kind:<34} {total:>5} requests  statuses {statuses:?}");
    }
    println!(
        "{requests} hostile requests; VmRSS before {rss_before:.1} MiB, after {rss_after:.1} MiB, max sampled {rss_max:.1} MiB; /health {}",
        health.status()
    );
    assert_eq!(health.status(), 200);
    assert!(matches!(write, Write::Acked { .. }), "{write:?}");
    assert!(rss_max < 200.0, "RSS grew to {rss_max:.1} MiB");
    assert!(
        seen.len() >= 10,
        "every kind of input was tried: {:?}",
        seen.keys()
    );
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(15)).code(), Some(0));
}
