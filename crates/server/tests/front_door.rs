//! The HTTP front door of the real daemon under hostile load, each test printing what it measured:
//! - 2,000 idle plus 200 slowloris connections under a 1,024 descriptor limit cannot silence
//!   `/health` or an authenticated tool call; slow headers and idle connections are closed
//!   after their timeouts;
//! - 200 concurrent ~1 MiB authenticated bodies keep RSS under a stated ceiling, answered
//!   only with 2xx or 503 + `Retry-After`;
//! - the right answers for bad input (413 chunked, 400 with −32700/−32600, −32602) and the
//!   order of the guards (a foreign Origin wins over an oversized body);
//! - 1,000 unauthenticated requests cannot lock out the authenticated client on the same address;
//! - `/ready` carries states only; a wrong database password is named and exits 78.
//!
//! Timing goals live in the benchmarks; the 1 s bound here is the acceptance bound of issue #17
//! (an order of magnitude above what a healthy daemon takes).

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/mcp_http.rs"]
mod mcp_http;

use std::time::{Duration, Instant};

use config_core::Environment;
use daemon::{Launch, TOKEN};
use mcp_http::{meta, post, tool_call};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ONE_SECOND: Duration = Duration::from_secs(1);

/// An authenticated `memory_status` call; the elapsed time, or what went wrong.
async fn status_call(http: &reqwest::Client, base: &str) -> Result<Duration, String> {
    let started = Instant::now();
    let response = post(http, base, "tools/call", Some("memory_status"))
        .bearer_auth(TOKEN)
        .json(&tool_call(7, "memory_status", json!({})))
        .send()
        .await
        .map_err(|err| format!("tools/call: {err}"))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .map_err(|err| format!("tools/call body: {err}"))?;
    if status != 200 || body["result"]["isError"] == json!(true) || body.get("error").is_some() {
        return Err(format!("tools/call answered {status}: {body}"));
    }
    Ok(started.elapsed())
}

async fn health_call(http: &reqwest::Client, base: &str) -> Result<Duration, String> {
    let started = Instant::now();
    let response = http
        .get(format!("{base}/health"))
        .send()
        .await
        .map_err(|err| format!("/health: {err}"))?;
    if response.status() != 200 {
        return Err(format!("/health answered {}", response.status()));
    }
    Ok(started.elapsed())
}

/// A client that opens a new connection for every request, like a newcomer would.
fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

fn address(base: &str) -> String {
    base.trim_start_matches("http://").to_owned()
}

/// Resident set size of `pid` in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Waits until the server closes `stream` (EOF or reset); how long that took, or `None` by `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buffer = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((started + limit).into(), stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Sends raw bytes as one HTTP/1.1 request and returns the status code and body.
async fn raw_request(address: &str, head: &str, chunks: &[&[u8]]) -> (u16, String) {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    for chunk in chunks {
        // The server may answer and close before the whole body is sent.
        if stream.write_all(chunk).await.is_err() {
            break;
        }
    }
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_owned();
    (status, body)
}

/// Raises this test process's own descriptor limit: it holds thousands of client sockets.
fn raise_own_fd_limit(at_least: u64) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    assert!(
        hard >= at_least,
        "this test needs {at_least} descriptors for its own client sockets; the hard limit is {hard}"
    );
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_and_slowloris_connections_cannot_silence_health_or_a_tool_call() {
    raise_own_fd_limit(3_000);
    let database = daemon::stamped_database(Environment::Test).await;
    // The limit a systemd service gets by default (soft 1024), here also as the hard limit, so the
    // daemon cannot raise it away and must derive its connection limit from it.
    let mut daemon = Launch::http(&database.url)
        .under(&["prlimit", "--nofile=1024:1024", "--"])
        .env("COGMEM__SERVER__HTTP__HEADER_READ_TIMEOUT_SECS", "2")
        .env("COGMEM__SERVER__HTTP__IDLE_TIMEOUT_SECS", "3")
        .spawn();
    let base = daemon.ready();
    let address = address(&base);
    // The stderr reader may lag behind READY=1 a little.
    let expected = [
        "file-descriptor limit (RLIMIT_NOFILE): 1024",
        "server.http.max_connections lowered to 950",
    ];
    let deadline = Instant::now() + Duration::from_secs(5);
    while !expected.iter().all(|line| daemon.stderr().contains(line)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for line in expected {
        assert!(
            daemon.stderr().contains(line),
            "{line}:\n{}",
            daemon.stderr()
        );
    }
    let http = fresh_client();

    // Alone, a slow header is cut at the header timeout and an idle connection at the idle one.
    let mut slow = TcpStream::connect(&address).await.unwrap();
    slow.write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    // Kept alive after one request, then idle.
    let mut idle = TcpStream::connect(&address).await.unwrap();
    idle.write_all(format!("GET /health HTTP/1.1\r\nHost: {address}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = [0u8; 4096];
    let read = idle.read(&mut answer).await.unwrap();
    assert!(
        answer[..read].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer[..read])
    );
    let (slow_closed, idle_closed) = tokio::join!(
        closed_within(&mut slow, Duration::from_secs(10)),
        closed_within(&mut idle, Duration::from_secs(10)),
    );
    let slow_closed = slow_closed.expect("a slow header was not closed within 10 s");
    let idle_closed = idle_closed.expect("an idle connection was not closed within 10 s");
    println!(
        "slow header closed after {slow_closed:?} (timeout 2 s), idle after {idle_closed:?} (timeout 3 s)"
    );
    assert!(
        (Duration::from_millis(1_800)..Duration::from_millis(4_000)).contains(&slow_closed),
        "{slow_closed:?}"
    );
    assert!(
        (Duration::from_millis(2_800)..Duration::from_millis(5_000)).contains(&idle_closed),
        "{idle_closed:?}"
    );

    // 2,000 idle connections and 200 that send a header byte per second.
    let mut idle = Vec::new();
    for _ in 0..2_000 {
        idle.push(TcpStream::connect(&address).await.unwrap());
    }
    let slowloris = tokio::spawn({
        let address = address.clone();
        async move {
            let mut streams = Vec::new();
            for _ in 0..200 {
                let mut stream = TcpStream::connect(&address).await.unwrap();
                let _ = stream
                    .write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                    .await;
                streams.push(stream);
            }
            for _ in 0..6 {
                tokio::time::sleep(ONE_SECOND).await;
                for stream in &mut streams {
                    let _ = stream.write_all(b"a").await;
                }
            }
            streams
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    // While they hold on, /health and a tool call on new connections answer, each within 1 s.
    let mut worst_health = Duration::ZERO;
    let mut worst_call = Duration::ZERO;
    for _ in 0..10 {
        let health = health_call(&http, &base).await.unwrap();
        let call = status_call(&http, &base).await.unwrap();
        worst_health = worst_health.max(health);
        worst_call = worst_call.max(call);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let slowloris = slowloris.await.unwrap();
    let mut closed = 0;
    for stream in &mut idle {
        if closed_within(stream, Duration::from_millis(1))
            .await
            .is_some()
        {
            closed += 1;
        }
    }
    println!(
        "2,000 idle + 200 slowloris connections, descriptor limit 1024: /health worst {worst_health:?}, tools/call worst {worst_call:?}; {closed} idle connections closed by the server so far"
    );
    assert!(worst_health < ONE_SECOND, "{worst_health:?}");
    assert!(worst_call < ONE_SECOND, "{worst_call:?}");
    drop(idle);
    drop(slowloris);
    assert!(health_call(&http, &base).await.is_ok());
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(15)).code(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_concurrent_megabyte_bodies_keep_rss_bounded() {
    /// The stated ceiling (README, production checklist) at the default body budget of 16 MiB.
    const RSS_CEILING_MIB: f64 = 96.0;
    let database = daemon::stamped_database(Environment::Test).await;
    let mut daemon = Launch::http(&database.url).spawn();
    let base = daemon.ready();
    let pid = daemon.pid();
    let before = rss_mib(pid);
    let http = reqwest::Client::new();
    let content = "m".repeat(1_000_000);
    let sampler = tokio::spawn(async move {
        let mut peak = 0.0f64;
        for _ in 0..1_500 {
            peak = peak.max(rss_mib(pid));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        peak
    });
    let mut calls = Vec::new();
    for index in 0..200 {
        let body = tool_call(
            7,
            "store_raw_dialogue",
            json!({"session_id": format!("big-{index}"), "speaker": "user", "content": content}),
        );
        let request = post(&http, &base, "tools/call", Some("store_raw_dialogue"))
            .bearer_auth(TOKEN)
            .json(&body);
        calls.push(tokio::spawn(async move {
            let response = request.send().await.map_err(|err| err.to_string())?;
            let status = response.status().as_u16();
            let retry_after = response.headers().contains_key("retry-after");
            Ok::<_, String>((status, retry_after))
        }));
    }
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for call in calls {
        let (status, retry_after) = call.await.unwrap().unwrap();
        assert!(
            status < 500 || (status == 503 && retry_after),
            "status {status} (Retry-After: {retry_after})"
        );
        *statuses.entry(status).or_default() += 1;
    }
    let peak = sampler.await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_mib(pid);
    println!(
        "200 concurrent ~1 MiB bodies: statuses {statuses:?}; VmRSS before {before:.1} MiB, peak {peak:.1} MiB, 1 s after {after:.1} MiB (ceiling {RSS_CEILING_MIB} MiB)"
    );
    assert!(peak < RSS_CEILING_MIB, "peak RSS {peak:.1} MiB");
    assert!(health_call(&http, &base).await.is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_the_answer_the_specifications_name() {
    let database = daemon::stamped_database(Environment::Test).await;
    let mut daemon = Launch::http(&database.url)
        .env("COGMEM__SERVER__HTTP__MAX_BODY_BYTES", "65536")
        .spawn();
    let base = daemon.ready();
    let address = address(&base);
    let http = reqwest::Client::new();
    let head = |extra: &str| {
        format!(
            "POST /mcp HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2026-07-28\r\nMcp-Method: server/discover\r\nConnection: close\r\n{extra}\r\n"
        )
    };

    // Oversized and chunked (no Content-Length): 413, as with a declared length.
    let chunk = format!("{:x}\r\n{}\r\n", 16_384, "x".repeat(16_384));
    let chunks: Vec<&[u8]> = std::iter::repeat_n(chunk.as_bytes(), 8)
        .chain([&b"0\r\n\r\n"[..]])
        .collect();
    let (status, _) = raw_request(&address, &head("Transfer-Encoding: chunked\r\n"), &chunks).await;
    assert_eq!(status, 413, "chunked oversized body");
    let big = "x".repeat(100_000);
    let (status, _) = raw_request(
        &address,
        &head(&format!("Content-Length: {}\r\n", big.len())),
        &[big.as_bytes()],
    )
    .await;
    assert_eq!(status, 413, "declared oversized body");

    // The guard order: a foreign Origin is refused (403) before the body is even read (413).
    let (status, _) = raw_request(
        &address,
        &head(&format!(
            "Origin: https://evil.example\r\nContent-Length: {}\r\n",
            big.len()
        )),
        &[big.as_bytes()],
    )
    .await;
    assert_eq!(status, 403, "a foreign Origin wins over an oversized body");
    // ... and without credentials, 401 wins over 413 too.
    let (status, _) = raw_request(
        &address,
        &head(&format!("Content-Length: {}\r\n", big.len()))
            .replace(&format!("Authorization: Bearer {TOKEN}\r\n"), ""),
        &[big.as_bytes()],
    )
    .await;
    assert_eq!(status, 401, "authentication runs before the body limit");

    // The server's own origin on a loopback bind is accepted (DNS-rebinding scenario).
    let port = address.rsplit(':').next().unwrap();
    let own = post(&http, &base, "server/discover", None)
        .bearer_auth(TOKEN)
        .header("host", format!("localhost:{port}"))
        .header("origin", format!("http://localhost:{port}"))
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta()}}))
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 200, "{}", own.text().await.unwrap());

    // Malformed JSON, invalid UTF-8, a batch, a non-JSON-RPC object: 400 with the JSON-RPC code.
    let cases: [(&str, Vec<u8>, u16, i64); 5] = [
        ("malformed JSON", b"{\"jsonrpc\": \"2.0\",".to_vec(), 400, -32700),
        (
            "invalid UTF-8",
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{\"x\":\"\xff\xfe\"}}".to_vec(),
            400,
            -32700,
        ),
        (
            "nested too deeply",
            format!("{}{}", "[".repeat(500), "]".repeat(500)).into_bytes(),
            400,
            -32700,
        ),
        (
            "a batch",
            serde_json::to_vec(&json!([{"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta()}}])).unwrap(),
            400,
            -32600,
        ),
        ("not JSON-RPC", br#"{"hello": "world"}"#.to_vec(), 400, -32600),
    ];
    for (what, body, status, code) in cases {
        let response = post(&http, &base, "server/discover", None)
            .bearer_auth(TOKEN)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{what}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{what}: {body}");
        assert_eq!(body["jsonrpc"], "2.0", "{what}: {body}");
    }

    // A tools/call whose params have the wrong shape: −32602, not "method not found".
    for params in [
        json!({"name": 5, "_meta": meta()}),
        json!({"name": "memory_status", "arguments": [1, 2], "_meta": meta()}),
        json!("memory_status"),
    ] {
        let response = post(&http, &base, "tools/call", Some("memory_status"))
            .bearer_auth(TOKEN)
            .json(&json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": params}))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert!(status.is_success() || status.is_client_error(), "{status}");
        assert_eq!(body["error"]["code"], -32602, "{params}: {body}");
        assert_eq!(body["id"], 9, "{body}");
    }

    // /ready: states, no error text.
    let ready: Value = http
        .get(format!("{base}/ready"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        ready,
        json!({"status": "ready", "state": "ok", "environment": "test",
               "database": "ok", "stamp": "ok", "schema": "ok"})
    );
    assert!(health_call(&http, &base).await.is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn unauthenticated_noise_cannot_lock_out_the_authenticated_client() {
    let database = daemon::stamped_database(Environment::Test).await;
    let mut daemon = Launch::http(&database.url)
        .env("COGMEM__SERVER__RATE_LIMIT__FAILED_AUTH_PER_MINUTE", "10")
        .spawn();
    let base = daemon.ready();
    let http = reqwest::Client::new();
    let mut noise = std::collections::BTreeMap::<u16, usize>::new();
    let mut authenticated = 0;
    for round in 0..50 {
        let wrong: Vec<_> = (0..20)
            .map(|index| {
                let request = post(&http, &base, "tools/call", Some("memory_status"))
                    .bearer_auth(format!("guess-{round}-{index}"))
                    .json(&tool_call(7, "memory_status", json!({})));
                tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) })
            })
            .collect();
        for request in wrong {
            *noise.entry(request.await.unwrap().unwrap()).or_default() += 1;
        }
        status_call(&http, &base)
            .await
            .unwrap_or_else(|err| panic!("after {} wrong guesses: {err}", (round + 1) * 20));
        authenticated += 1;
    }
    println!(
        "1,000 unauthenticated requests answered {noise:?}; {authenticated} authenticated calls from the same address all succeeded"
    );
    assert_eq!(noise.values().sum::<usize>(), 1_000);
    assert!(
        noise.keys().all(|status| [401, 429].contains(status)),
        "{noise:?}"
    );
    assert!(noise.get(&429).copied().unwrap_or(0) >= 900, "{noise:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_database_password_is_named_and_exits_78() {
    let database = daemon::stamped_database(Environment::Test).await;
    let (credentials, rest) = database.url.split_once('@').unwrap();
    let (user, _) = credentials.rsplit_once(':').unwrap();
    let wrong = format!("{user}:not-the-password-CANARY@{rest}");
    let mut daemon = Launch::http(&wrong).spawn();
    let status = daemon.wait_exit(Duration::from_secs(20));
    let log = daemon.stderr();
    assert_eq!(status.code(), Some(78), "{log}");
    assert!(log.contains("database credentials rejected"), "{log}");
    assert!(!log.contains("not-the-password-CANARY"), "{log}");
}
