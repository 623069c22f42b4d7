//! The official Rust MCP client (rmcp) against a running server: a session over streamable HTTP
//! with the bearer token, and tool calls that must succeed. Shared by the server's tests and
//! xtask's container tests.
#![allow(dead_code)] // Each test binary uses part of this module.

use rmcp::model::{CallToolRequestParams, ProtocolVersion};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientServiceExt, RoleClient};
use serde_json::Value;

pub type Client = RunningService<RoleClient, ()>;

/// How an rmcp client opens a session in `era`: `server/discover` for the stateless 2026-07-28
/// revision, the `initialize` handshake for legacy revisions.
pub fn lifecycle(era: &ProtocolVersion) -> rmcp::ClientLifecycleMode {
    if *era >= ProtocolVersion::V_2026_07_28 {
        rmcp::ClientLifecycleMode::Discover {
            preferred_versions: vec![era.clone()],
        }
    } else {
        rmcp::ClientLifecycleMode::Initialize
    }
}

/// A session with `{base}/mcp` in `era`, authenticated with `token`.
pub async fn connect(base: &str, token: &str, era: ProtocolVersion) -> Client {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(format!("{base}/mcp")).auth_header(token),
    );
    ().serve_with_lifecycle(transport, lifecycle(&era))
        .await
        .unwrap()
}

/// Calls `tool`, asserts it succeeded, and returns its structured result.
pub async fn call(client: &Client, tool: &str, arguments: Value) -> Value {
    let Value::Object(arguments) = arguments else {
        panic!("arguments must be an object")
    };
    let result = client
        .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments))
        .await
        .unwrap();
    assert_ne!(result.is_error, Some(true), "{tool}: {:?}", result.content);
    result.structured_content.unwrap()
}
