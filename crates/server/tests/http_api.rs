//! The HTTP surface of the real daemon: MCP over streamable HTTP with a bearer token in both
//! protocol eras, the guards (401, 403, 429, 413, 405), environment isolation and payload logging.

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/mcp_client.rs"]
mod mcp_client;
#[path = "support/mcp_http.rs"]
mod mcp_http;

use std::time::Duration;

use config_core::Environment;
use daemon::{Launch, TOKEN, stamped_database};
use mcp_client::{call, connect};
use mcp_http::{discover, post};
use rmcp::model::ProtocolVersion;
use serde_json::json;

/// A modern-era `server/discover` POST without a token.
fn modern_post(http: &reqwest::Client, base: &str) -> reqwest::RequestBuilder {
    post(http, base, "server/discover", None)
}

#[tokio::test(flavor = "multi_thread")]
async fn tools_work_over_http_with_the_bearer_token_in_both_eras() {
    let database = stamped_database(Environment::Test).await;
    let mut daemon = Launch::http(&database.url).spawn();
    let base = daemon.ready();
    for era in [ProtocolVersion::V_2026_07_28, ProtocolVersion::V_2025_11_25] {
        let client = connect(&base, TOKEN, era.clone()).await;
        assert_eq!(client.list_all_tools().await.unwrap().len(), 6);
        let session = format!("http-{}", era.as_str());
        call(
            &client,
            "store_raw_dialogue",
            json!({"session_id": session, "speaker": "user", "content": "the quick brown fox"}),
        )
        .await;
        let found = call(
            &client,
            "search_memory",
            json!({"query": "brown fox", "session_id": session, "layer": "raw"}),
        )
        .await;
        assert_eq!(
            found["hits"].as_array().unwrap().len(),
            1,
            "{era:?}: {found}"
        );
        client.cancel().await.unwrap();
    }
    // Stateless: a restarted daemon serves the same client setup without a new handshake
    // mattering; each request stands alone (no Mcp-Session-Id is handed out).
    let response = modern_post(&reqwest::Client::new(), &base)
        .bearer_auth(TOKEN)
        .json(&discover())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    assert!(response.headers().get("mcp-session-id").is_none());
    assert!(response.headers().get("x-request-id").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_guards_answer_401_403_405_413_and_404() {
    let database = stamped_database(Environment::Test).await;
    let mut daemon = Launch::http(&database.url)
        .env("COGMEM__SERVER__HTTP__MAX_BODY_BYTES", "4096")
        .spawn();
    let base = daemon.ready();
    let http = reqwest::Client::new();

    let missing = modern_post(&http, &base)
        .json(&discover())
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    // RFC 6750 §3.1: no error code without credentials; the scopes the server knows. Without
    // server.auth.resource_url there is no metadata to point to (and it is a 404, below).
    assert_eq!(
        missing.headers()["www-authenticate"],
        r#"Bearer scope="memory:read memory:write memory:forget""#
    );
    let wrong = modern_post(&http, &base)
        .bearer_auth("not-the-token-at-all")
        .json(&discover())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(
        wrong.headers()["www-authenticate"],
        r#"Bearer error="invalid_token", scope="memory:read memory:write memory:forget""#
    );

    let foreign = modern_post(&http, &base)
        .bearer_auth(TOKEN)
        .header("origin", "https://evil.example")
        .json(&discover())
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);

    let get = http
        .get(format!("{base}/mcp"))
        .bearer_auth(TOKEN)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);

    let mut huge = discover();
    huge["params"]["padding"] = json!("x".repeat(10_000));
    let oversize = modern_post(&http, &base)
        .bearer_auth(TOKEN)
        .json(&huge)
        .send()
        .await
        .unwrap();
    assert_eq!(oversize.status(), 413);

    let oauth = http
        .get(format!("{base}/.well-known/oauth-protected-resource"))
        .send()
        .await
        .unwrap();
    assert_eq!(oauth.status(), 404);

    let malformed = modern_post(&http, &base)
        .bearer_auth(TOKEN)
        .body("{not json")
        .send()
        .await
        .unwrap();
    // Malformed JSON: 400 with JSON-RPC's parse error, before rmcp sees it.
    assert_eq!(malformed.status(), 400);
    let body: serde_json::Value = malformed.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32700, "{body}");

    // The daemon is still healthy after all of it.
    let health = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn over_the_rate_a_client_gets_429_with_retry_after() {
    let database = stamped_database(Environment::Test).await;
    let mut daemon = Launch::http(&database.url)
        .env("COGMEM__SERVER__RATE_LIMIT__REQUESTS_PER_MINUTE", "5")
        .spawn();
    let base = daemon.ready();
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..7 {
        let response = modern_post(&http, &base)
            .bearer_auth(TOKEN)
            .json(&discover())
            .send()
            .await
            .unwrap();
        statuses.push((
            response.status().as_u16(),
            response
                .headers()
                .get("retry-after")
                .map(|value| value.to_str().unwrap().to_owned()),
        ));
    }
    assert!(
        statuses[..5].iter().all(|(status, _)| *status == 200),
        "{statuses:?}"
    );
    assert_eq!(statuses[5].0, 429, "{statuses:?}");
    let retry_after: u64 = statuses[5].1.as_deref().unwrap().parse().unwrap();
    assert!((1..=12).contains(&retry_after), "{retry_after}");
    // /health is not rate limited.
    let health = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn development_memories_are_invisible_to_production() {
    let development = stamped_database(Environment::Development).await;
    let production = stamped_database(Environment::Production).await;
    let mut dev = Launch::http(&development.url);
    dev.environment = Environment::Development;
    let mut dev = dev.spawn();
    let dev_base = dev.ready();
    let client = connect(&dev_base, TOKEN, ProtocolVersion::V_2026_07_28).await;
    call(
        &client,
        "store_raw_dialogue",
        json!({"session_id": "shared-name", "speaker": "user", "content": "development secret plans"}),
    )
    .await;
    let status = call(&client, "memory_status", json!({})).await;
    assert_eq!(status["environment"], "development");
    assert_eq!(status["database"], development.name);
    client.cancel().await.unwrap();

    let mut prod = Launch::http(&production.url);
    prod.environment = Environment::Production;
    // Production refuses plain-text connections to remote hosts; the test cluster is local.
    let mut prod = prod.spawn();
    let prod_base = prod.ready();
    let client = connect(&prod_base, TOKEN, ProtocolVersion::V_2026_07_28).await;
    let status = call(&client, "memory_status", json!({})).await;
    assert_eq!(status["environment"], "production");
    assert_eq!(status["database"], production.name);
    assert_eq!(status["raw_turns"], 0);
    let session = call(&client, "get_session", json!({"session_id": "shared-name"})).await;
    assert_eq!(session["turns"].as_array().unwrap().len(), 0);
    let found = call(&client, "search_memory", json!({"query": "secret plans"})).await;
    assert_eq!(found["hits"].as_array().unwrap().len(), 0);
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn without_payload_logging_stored_content_never_reaches_the_log() {
    let database = stamped_database(Environment::Test).await;
    let canary = "CANARY-payload-51d2e8";
    let mut daemon = Launch::http(&database.url)
        .env("LOG_LEVEL", "trace")
        .env("COGMEM__LOGGING__LOG_PAYLOADS", "false")
        .spawn();
    let base = daemon.ready();
    let client = connect(&base, TOKEN, ProtocolVersion::V_2026_07_28).await;
    call(
        &client,
        "store_raw_dialogue",
        json!({"session_id": "s", "speaker": "user", "content": format!("my card is {canary}")}),
    )
    .await;
    call(&client, "search_memory", json!({"query": canary})).await;
    client.cancel().await.unwrap();
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(15)).code(), Some(0));
    let log = daemon.stderr();
    assert!(log.contains("tool call"), "debug lines were logged: {log}");
    let hits = log.matches(canary).count();
    println!("log lines: {}, canary hits: {hits}", log.lines().count());
    assert_eq!(hits, 0, "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_over_the_time_limit_gets_408_and_the_daemon_goes_on() {
    let database = stamped_database(Environment::Test).await;
    let mut daemon = Launch::http(&database.url)
        .env("COGMEM__SERVER__HTTP__REQUEST_TIMEOUT_SECS", "1")
        .spawn();
    let base = daemon.ready();
    // Hold a lock that makes every insert wait, as a stuck database would.
    let pool = sqlx::PgPool::connect(&database.url).await.unwrap();
    let mut blocker = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE l0_raw IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "store_raw_dialogue",
        "arguments": {"session_id": "slow", "speaker": "user", "content": "waits for the lock"},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientCapabilities": {}}}});
    let started = std::time::Instant::now();
    let response = reqwest::Client::new()
        .post(format!("{base}/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "store_raw_dialogue")
        .bearer_auth(TOKEN)
        .json(&call)
        .send()
        .await
        .unwrap();
    println!("answered after {:?}", started.elapsed());
    assert_eq!(response.status(), 408);
    blocker.rollback().await.unwrap();
    pool.close().await;
    let health = reqwest::get(format!("{base}/health")).await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn previous_tokens_are_accepted_until_their_expiry() {
    let database = stamped_database(Environment::Test).await;
    let old = "old-token-0123456789abcdef";
    let expired = "expired-token-0123456789abcdef";
    let mut daemon = Launch::http(&database.url)
        .env(
            "MCP_AUTH_TOKEN_PREVIOUS",
            &format!("{old}, {expired};expires=2020-01-01T00:00:00Z"),
        )
        .spawn();
    let base = daemon.ready();
    let http = reqwest::Client::new();
    for (token, status) in [
        (TOKEN, 200),
        (old, 200),
        (expired, 401),
        ("wrong-0123456789abcdef", 401),
    ] {
        let response = modern_post(&http, &base)
            .bearer_auth(token)
            .json(&discover())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{token}");
    }
    assert!(!daemon.stderr().contains(old) && !daemon.stderr().contains(expired));
}
