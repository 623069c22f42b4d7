//! `serve --transport stdio` as a client launches it: JSON-RPC on stdout only, logs on stderr,
//! and a prompt exit when stdin closes.

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/mcp_client.rs"]
mod mcp_client;

use std::process::Stdio;
use std::time::{Duration, Instant};

use config_core::Environment;
use rmcp::ClientServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::TokioChildProcess;
use serde_json::json;
use tokio::io::AsyncReadExt;

fn command(database_url: &str, root: &std::path::Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(daemon::BIN);
    command
        .env_clear()
        .env("DATABASE_URL", database_url)
        .env("LOG_LEVEL", "debug")
        .args(["--env", "test", "--config-root"])
        .arg(root)
        .args(["serve", "--transport", "stdio"]);
    command
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stdio_client_stores_and_finds_and_the_server_exits_when_stdin_closes() {
    let database = daemon::stamped_database(Environment::Test).await;
    let root = daemon::config_root();
    for modern in [true, false] {
        let (transport, stderr) = TokioChildProcess::builder(command(&database.url, root.path()))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = stderr.unwrap();
        let logs = tokio::spawn(async move {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text).await;
            text
        });
        let era = if modern {
            rmcp::model::ProtocolVersion::V_2026_07_28
        } else {
            rmcp::model::ProtocolVersion::V_2025_11_25
        };
        let client = ().serve_with_lifecycle(transport, mcp_client::lifecycle(&era)).await.unwrap();
        assert_eq!(client.list_all_tools().await.unwrap().len(), 6);
        let session = format!("stdio-{modern}");
        let arguments = json!({"session_id": session, "speaker": "user", "content": "stdio works"});
        let stored = client
            .call_tool(
                CallToolRequestParams::new("store_raw_dialogue")
                    .with_arguments(arguments.as_object().unwrap().clone()),
            )
            .await
            .unwrap();
        assert_ne!(stored.is_error, Some(true));
        let found = client
            .call_tool(
                CallToolRequestParams::new("search_memory").with_arguments(
                    json!({"query": "stdio", "session_id": session, "layer": "raw"})
                        .as_object()
                        .unwrap()
                        .clone(),
                ),
            )
            .await
            .unwrap();
        assert_eq!(
            found.structured_content.unwrap()["hits"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        // Closing the client closes the child's stdin; the server must exit on its own.
        let closed = Instant::now();
        client.cancel().await.unwrap();
        let logs = tokio::time::timeout(Duration::from_secs(10), logs)
            .await
            .expect("the server exits after stdin closes")
            .unwrap();
        println!("exit after stdin closed: {:?}", closed.elapsed());
        assert!(logs.contains("ready"), "logs go to stderr: {logs}");
        assert!(logs.contains("stdin closed"), "{logs}");
    }
}
