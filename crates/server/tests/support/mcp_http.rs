//! Modern-era (2026-07-28, stateless) MCP calls over HTTP with reqwest, as any client sends them:
//! one `POST /mcp` per request with the headers of its method, the JSON-RPC answer parsed into a
//! result or an error text. Shared by the server's HTTP tests and xtask's container tests.
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

/// The `_meta` every modern-era request carries.
pub fn meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "cogmem-tests", "version": "0"},
        "io.modelcontextprotocol/clientCapabilities": {},
    })
}

/// A `tools/call` request body with `id`.
pub fn tool_call(id: u64, tool: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": tool, "arguments": arguments, "_meta": meta()}})
}

/// A `server/discover` request body.
pub fn discover() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta()}})
}

/// A modern-era `POST /mcp` with the headers matching `method` and `name` (the tool), no token.
pub fn post(
    http: &reqwest::Client,
    base: &str,
    method: &str,
    name: Option<&str>,
) -> reqwest::RequestBuilder {
    let mut request = http
        .post(format!("{base}/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method);
    if let Some(name) = name {
        request = request.header("mcp-name", name);
    }
    request
}

/// `GET url` answered with JSON (any status), parsed.
pub async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
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
    let response = post(http, base, method, name)
        .bearer_auth(token)
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
