//! Modern-era (2026-07-28, stateless) MCP calls over HTTP with reqwest, as any client sends them:
//! one `POST /mcp` per request, the JSON-RPC answer parsed into a result or an error text.
#![allow(dead_code)] // Each test binary uses part of this module.

use serde_json::{Value, json};

/// A client that opens a new connection for every request, so a round-robin TCP proxy in front
/// of several replicas picks a replica per call (as a Service does per connection).
pub fn unpooled_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

fn meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "scale-out-test", "version": "0"},
        "io.modelcontextprotocol/clientCapabilities": {},
    })
}

/// `method` with `params` to `{base}/mcp`; `Ok(result)` or `Err(why)` (connection, status,
/// JSON-RPC error, or a tool's `isError`).
pub async fn call(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    method: &str,
    name: Option<&str>,
    mut params: Value,
) -> Result<Value, String> {
    params["_meta"] = meta();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let mut request = http
        .post(format!("{base}/mcp"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method);
    if let Some(name) = name {
        request = request.header("mcp-name", name);
    }
    let response = request
        .json(&body)
        .send()
        .await
        .map_err(|err| format!("connection: {err}"))?;
    let status = response.status().as_u16();
    let text = response
        .text()
        .await
        .map_err(|err| format!("reading the answer: {err}"))?;
    if status != 200 {
        return Err(format!("HTTP {status}: {text}"));
    }
    let value: Value = serde_json::from_str(&text).map_err(|_| format!("not JSON: {text}"))?;
    if let Some(error) = value.get("error") {
        return Err(format!("JSON-RPC error: {error}"));
    }
    let result = value["result"].clone();
    if result["isError"] == json!(true) {
        return Err(format!("tool error: {}", result["content"][0]["text"]));
    }
    Ok(result)
}

/// A `tools/call` of `tool`; the structured result.
pub async fn tool(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    tool: &str,
    arguments: Value,
) -> Result<Value, String> {
    let result = call(
        http,
        base,
        token,
        "tools/call",
        Some(tool),
        json!({"name": tool, "arguments": arguments}),
    )
    .await?;
    Ok(result["structuredContent"].clone())
}
