//! Every tool and resource through a real rmcp client talking to our MCP server in-process (over a
//! duplex pipe), against a real PostgreSQL database, in both protocol eras.

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/mcp_client.rs"]
mod mcp_client;

use std::sync::Arc;

use cognitive_memory_mcp::app::AppState;
use cognitive_memory_mcp::health::Health;
use cognitive_memory_mcp::mcp::MemoryServer;
use cognitive_memory_mcp::memory::{MemoryLimits, MemoryStore};
use config_core::Environment;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ProtocolVersion, ReadResourceRequestParams,
};
use rmcp::service::RunningService;
use rmcp::{ClientServiceExt, RoleClient, ServiceExt};
use serde_json::{Value, json};

const MAX_CONTENT_BYTES: usize = 2000;

type Client = RunningService<RoleClient, ()>;

async fn connect(era: ProtocolVersion) -> Client {
    let database = daemon::stamped_database(Environment::Test).await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&database.url)
        .await
        .unwrap();
    db::migrate(&pool).await.unwrap();
    let limits = MemoryLimits {
        max_content_bytes: MAX_CONTENT_BYTES,
        default_limit: 10,
        max_limit: 50,
    };
    let app = Arc::new(AppState::new(
        Environment::Test,
        MemoryStore::new(pool, limits),
        Arc::new(Health::new(Environment::Test)),
        false,
    ));
    let (server_side, client_side) = tokio::io::duplex(1 << 20);
    tokio::spawn(async move {
        // In-process, like stdio: one principal for the session, every scope.
        let principal = cognitive_memory_mcp::auth::Principal::new(
            "test",
            cognitive_memory_mcp::tenancy::Tenant::default(),
            cognitive_memory_mcp::auth::Scopes::ALL,
        );
        let running = MemoryServer::stdio(app, principal)
            .serve(server_side)
            .await
            .unwrap();
        let _ = running.waiting().await;
    });
    ().serve_with_lifecycle(client_side, mcp_client::lifecycle(&era))
        .await
        .unwrap()
}

async fn call(client: &Client, tool: &str, arguments: Value) -> CallToolResult {
    let Value::Object(arguments) = arguments else {
        panic!("arguments must be an object")
    };
    client
        .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments))
        .await
        .unwrap_or_else(|err| panic!("{tool}: protocol error {err}"))
}

/// The structured content of a successful call.
async fn ok(client: &Client, tool: &str, arguments: Value) -> Value {
    let result = call(client, tool, arguments).await;
    assert_ne!(
        result.is_error,
        Some(true),
        "{tool} failed: {:?}",
        result.content
    );
    result.structured_content.expect("structured content")
}

/// The text of a tool error.
async fn tool_error(client: &Client, tool: &str, arguments: Value) -> String {
    let result = call(client, tool, arguments).await;
    assert_eq!(
        result.is_error,
        Some(true),
        "{tool} should fail: {:?}",
        result
    );
    result
        .content
        .iter()
        .filter_map(|block| block.as_text().map(|text| text.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_the_six_tools_with_schemas_in_both_eras() {
    for era in [ProtocolVersion::V_2026_07_28, ProtocolVersion::V_2025_11_25] {
        let client = connect(era.clone()).await;
        let info = client.peer_info().expect("server info");
        let server = info.server_info.as_ref().expect("server info");
        assert_eq!(server.name, "cognitive-memory");
        assert_eq!(server.version, env!("CARGO_PKG_VERSION"));
        let mut names: Vec<String> = client
            .list_all_tools()
            .await
            .unwrap()
            .iter()
            .map(|tool| {
                assert!(
                    tool.output_schema.is_some(),
                    "{} has no output schema",
                    tool.name
                );
                assert!(tool.description.is_some());
                tool.name.to_string()
            })
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "forget",
                "get_session",
                "memory_status",
                "search_memory",
                "store_insight",
                "store_raw_dialogue"
            ],
            "era {era:?}"
        );
        client.cancel().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn store_search_replay_and_forget_round_trip() {
    let client = connect(ProtocolVersion::V_2026_07_28).await;
    let first = ok(
        &client,
        "store_raw_dialogue",
        json!({"session_id": "chat-1", "speaker": "user", "content": "I prefer green tea in the morning",
               "metadata": {"client": "test"}}),
    )
    .await;
    assert_eq!(first["session_id"], "chat-1");
    let first_id = first["id"].as_i64().unwrap();
    let second = ok(
        &client,
        "store_raw_dialogue",
        json!({"session_id": "chat-1", "speaker": "assistant", "content": "Noted: green tea."}),
    )
    .await;
    let insight = ok(
        &client,
        "store_insight",
        json!({"content": "The user drinks green tea every morning", "source_ids": [first_id],
               "tags": ["preference"], "importance": 0.8}),
    )
    .await;
    let insight_id = insight["id"].as_i64().unwrap();

    let found = ok(&client, "search_memory", json!({"query": "green tea"})).await;
    let hits = found["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 3, "{found}");
    assert!(
        hits.iter()
            .all(|hit| hit["snippet"].as_str().unwrap().contains("**"))
    );
    let raw_only = ok(
        &client,
        "search_memory",
        json!({"query": "tea", "layer": "raw"}),
    )
    .await;
    assert!(
        raw_only["hits"]
            .as_array()
            .unwrap()
            .iter()
            .all(|hit| hit["layer"] == "raw")
    );

    let page = ok(&client, "get_session", json!({"session_id": "chat-1"})).await;
    let turns = page["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 2);
    assert_eq!(turns[0]["id"].as_i64(), Some(first_id));
    assert_eq!(turns[1]["id"], second["id"]);
    assert_eq!(turns[0]["metadata"]["client"], "test");

    let status = ok(&client, "memory_status", json!({})).await;
    assert_eq!(status["environment"], "test");
    assert_eq!(status["tenant"], "default");
    assert_eq!(status["principal"], "test");
    assert_eq!(status["raw_turns"], 2);
    assert_eq!(status["insights"], 1);
    assert!(!status.to_string().contains("password"));

    let report = ok(&client, "forget", json!({"session_id": "chat-1"})).await;
    assert_eq!(report["raw_deleted"], 2);
    assert_eq!(report["insights_unlinked"], 1);
    let found = ok(&client, "search_memory", json!({"query": "green tea"})).await;
    let hits = found["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 1, "only the insight is left: {found}");
    assert_eq!(hits[0]["id"].as_i64(), Some(insight_id));
    let report = ok(
        &client,
        "forget",
        json!({"items": [{"layer": "insight", "id": insight_id}]}),
    )
    .await;
    assert_eq!(report["insights_deleted"], 1);
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_a_tool_error_naming_the_field_and_never_the_value() {
    let client = connect(ProtocolVersion::V_2025_11_25).await;
    let canary = "CANARY-7f3a9";
    let oversize = format!("{canary}{}", "x".repeat(MAX_CONTENT_BYTES));
    let cases = [
        (
            "store_raw_dialogue",
            json!({"session_id": "s", "speaker": "user", "content": oversize}),
            "content",
        ),
        (
            "store_raw_dialogue",
            json!({"session_id": "s", "speaker": canary, "content": "x"}),
            "speaker",
        ),
        (
            "store_raw_dialogue",
            json!({"session_id": 42, "speaker": "user", "content": canary}),
            "session_id",
        ),
        (
            "store_raw_dialogue",
            json!({"session_id": "", "speaker": "user", "content": canary}),
            "session_id",
        ),
        (
            "store_raw_dialogue",
            json!({"session_id": "s", "speaker": "user", "content": "   "}),
            "content",
        ),
        (
            "store_raw_dialogue",
            json!({"session_id": "s", "speaker": "user", "content": "x",
            "metadata": {"blob": format!("{canary}{}", "y".repeat(20_000))}}),
            "metadata",
        ),
        (
            "store_insight",
            json!({"content": canary, "importance": 1.5}),
            "importance",
        ),
        (
            "store_insight",
            json!({"content": canary, "tags": vec!["t"; 40]}),
            "tags",
        ),
        (
            "store_insight",
            json!({"content": canary, "source_ids": [999_999]}),
            "999999",
        ),
        ("search_memory", json!({"query": "  "}), "query"),
        (
            "search_memory",
            json!({"query": canary, "limit": 500}),
            "limit",
        ),
        (
            "search_memory",
            json!({"query": canary, "layer": canary}),
            "layer",
        ),
        (
            "get_session",
            json!({"session_id": "s", "before_id": canary}),
            "before_id",
        ),
        ("forget", json!({}), "session_id"),
        (
            "forget",
            json!({"items": [{"layer": "raw", "id": canary}]}),
            "items[0].id",
        ),
    ];
    for (tool, arguments, field) in cases {
        let message = tool_error(&client, tool, arguments.clone()).await;
        assert!(message.contains(field), "{tool} {arguments}: {message}");
        assert!(
            !message.contains(canary),
            "{tool} echoed the value: {message}"
        );
    }
    // Unknown tool and malformed calls are protocol errors, not crashes; the session goes on.
    let unknown = client
        .call_tool(CallToolRequestParams::new("no_such_tool"))
        .await;
    assert!(unknown.is_err());
    let status = ok(&client, "memory_status", json!({})).await;
    assert_eq!(
        status["raw_turns"], 0,
        "nothing was stored by the bad calls"
    );
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn resources_expose_status_sessions_and_recent_insights() {
    let client = connect(ProtocolVersion::V_2026_07_28).await;
    ok(
        &client,
        "store_raw_dialogue",
        json!({"session_id": "chat/42", "speaker": "user", "content": "hello resources"}),
    )
    .await;
    ok(&client, "store_insight", json!({"content": "an insight"})).await;

    let resources = client.list_resources(None).await.unwrap();
    let uris: Vec<&str> = resources.resources.iter().map(|r| r.uri.as_str()).collect();
    assert_eq!(uris, ["memory://status", "memory://insights/recent"]);
    let templates = client.list_resource_templates(None).await.unwrap();
    assert_eq!(
        templates.resource_templates[0].uri_template,
        "memory://sessions/{session_id}"
    );

    let read = |uri: &'static str| {
        let client = &client;
        async move {
            let result = client
                .read_resource(ReadResourceRequestParams::new(uri))
                .await
                .unwrap();
            let text = match &result.contents[0] {
                rmcp::model::ResourceContents::TextResourceContents { text, .. } => text.clone(),
                other => panic!("not text: {other:?}"),
            };
            serde_json::from_str::<Value>(&text).unwrap()
        }
    };
    let status = read("memory://status").await;
    assert_eq!(status["raw_turns"], 1);
    let session = read("memory://sessions/chat%2F42").await;
    assert_eq!(session["turns"][0]["content"], "hello resources");
    let recent = read("memory://insights/recent").await;
    assert_eq!(recent[0]["content"], "an insight");

    let missing = client
        .read_resource(ReadResourceRequestParams::new("memory://nothing"))
        .await;
    assert!(missing.is_err());
    client.cancel().await.unwrap();
}
