//! Named API keys (`server.auth.keys_file`) against the real daemon, with keys made by the real
//! `cognitive-memory-mcp auth new-key`: the generator's line round-trips, the file holds no plain
//! key, each key acts for its tenant with its scopes (a read-only key cannot store or forget, a
//! write key without memory:forget cannot forget), an expired key gets 401, SIGHUP adds and
//! removes keys, a broken file on reload keeps the old keys and is reported by file:line without
//! a key, and a broken file at start is a configuration error (exit 78).

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/mcp_http.rs"]
mod mcp_http;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use config_core::Environment;
use daemon::{BIN, Launch, stamped_database, write_private};
use serde_json::json;

struct NewKey {
    key: String,
    line: String,
}

fn new_key(name: &str, tenant: &str, scopes: &str, expires: Option<&str>) -> NewKey {
    let mut command = Command::new(BIN);
    command.env_clear().args([
        "auth", "new-key", "--name", name, "--tenant", tenant, "--scopes", scopes,
    ]);
    if let Some(expires) = expires {
        command.args(["--expires", expires]);
    }
    let output = command.output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let field = |label: &str| {
        stdout
            .lines()
            .find_map(|line| line.strip_prefix(label))
            .unwrap_or_else(|| panic!("no {label} in {stdout}"))
            .to_owned()
    };
    NewKey {
        key: field("key: "),
        line: field("line: "),
    }
}

fn write_keys(path: &Path, keys: &[&NewKey]) {
    let mut text = String::from("# API keys of the tests\n");
    for key in keys {
        text.push_str(&key.line);
        text.push('\n');
    }
    write_private(path, &text);
    let written = std::fs::read_to_string(path).unwrap();
    for key in keys {
        assert!(!written.contains(&key.key), "a plain key in the keys file");
    }
    assert!(!written.contains("cmk_"), "a plain key in the keys file");
}

fn wait_for_log(daemon: &daemon::Daemon, needle: &str, after: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if daemon.stderr()[after..].contains(needle) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn turn(session: &str) -> serde_json::Value {
    json!({"session_id": session, "speaker": "user", "content": "keys file test"})
}

#[tokio::test(flavor = "multi_thread")]
async fn api_keys_carry_tenants_and_scopes_and_reload_on_sighup() {
    let reader = new_key("reader", "team-a", "memory:read", None);
    let writer = new_key("writer", "team-a", "memory:read,memory:write", None);
    let admin = new_key(
        "admin",
        "team-b",
        "memory:read,memory:write,memory:forget",
        Some("2099-01-01T00:00:00Z"),
    );
    let old = new_key("old", "team-a", "memory:read", Some("2020-01-01T00:00:00Z"));
    let logger = new_key("logger", "team-a", "memory:write", None);
    assert!(
        admin.line.contains("expires=2099-01-01T00:00:00Z"),
        "{}",
        admin.line
    );
    let dir = tempfile::tempdir().unwrap();
    let keys_file = dir.path().join("api-keys");
    write_keys(&keys_file, &[&reader, &writer, &admin, &old, &logger]);

    let database = stamped_database(Environment::Test).await;
    let mut daemon = Launch::http(&database.url)
        .env(
            "COGMEM__SERVER__AUTH__KEYS_FILE",
            keys_file.to_str().unwrap(),
        )
        .env("COGMEM__SERVER__RATE_LIMIT__FAILED_AUTH_PER_MINUTE", "1000")
        .spawn();
    let base = daemon.ready();
    let http = reqwest::Client::new();
    let tool = |key: &str, name: &str, arguments: serde_json::Value| {
        let (http, base, key, name) = (http.clone(), base.clone(), key.to_owned(), name.to_owned());
        async move { mcp_http::tool(&http, &base, &key, &name, arguments).await }
    };

    // Each key acts for its tenant with its scopes.
    let status = tool(&reader.key, "memory_status", json!({})).await.unwrap();
    assert_eq!(status["tenant"], "team-a");
    assert_eq!(status["principal"], "key:reader");
    assert_eq!(status["scopes"], json!(["memory:read"]));
    let refused = tool(&reader.key, "store_raw_dialogue", turn("s1"))
        .await
        .unwrap_err();
    assert!(
        refused.contains("tool error") && refused.contains("store_raw_dialogue needs memory:write"),
        "{refused}"
    );
    let refused = tool(&reader.key, "forget", json!({"session_id": "s1"}))
        .await
        .unwrap_err();
    assert!(refused.contains("forget needs memory:forget"), "{refused}");
    tool(&reader.key, "search_memory", json!({"query": "keys"}))
        .await
        .unwrap();

    tool(&writer.key, "store_raw_dialogue", turn("s2"))
        .await
        .unwrap();
    let refused = tool(&writer.key, "forget", json!({"session_id": "s2"}))
        .await
        .unwrap_err();
    assert!(
        refused.contains("forget needs memory:forget")
            && refused.contains("key:writer holds memory:read memory:write"),
        "{refused}"
    );
    let status = tool(&admin.key, "memory_status", json!({})).await.unwrap();
    assert_eq!(status["tenant"], "team-b");
    tool(&admin.key, "forget", json!({"session_id": "s2"}))
        .await
        .unwrap();

    // Resources need memory:read: a write-only key is refused with the scope named.
    tool(&logger.key, "store_raw_dialogue", turn("s3"))
        .await
        .unwrap();
    let refused = mcp_http::call(
        &http,
        &base,
        &logger.key,
        "resources/read",
        Some("memory://status"),
        json!({"uri": "memory://status"}),
    )
    .await
    .unwrap_err();
    assert!(
        refused.contains("JSON-RPC error") && refused.contains("resources/read needs memory:read"),
        "{refused}"
    );
    let read = mcp_http::call(
        &http,
        &base,
        &reader.key,
        "resources/read",
        Some("memory://status"),
        json!({"uri": "memory://status"}),
    )
    .await
    .unwrap();
    assert!(
        read["contents"][0]["text"]
            .as_str()
            .unwrap()
            .contains("\"tenant\":\"team-a\""),
        "{read}"
    );
    let expired = tool(&old.key, "memory_status", json!({}))
        .await
        .unwrap_err();
    assert!(expired.starts_with("HTTP 401"), "{expired}");
    assert!(
        wait_for_log(&daemon, "expired API key old", 0),
        "{}",
        daemon.stderr()
    );

    // SIGHUP: reader removed, a new key added.
    let added = new_key("added", "team-c", "memory:read", None);
    write_keys(&keys_file, &[&writer, &admin, &added]);
    let mark = daemon.stderr().len();
    daemon.signal("HUP");
    assert!(
        wait_for_log(&daemon, "API keys replaced", mark),
        "{}",
        daemon.stderr()
    );
    let status = tool(&added.key, "memory_status", json!({})).await.unwrap();
    assert_eq!(status["tenant"], "team-c");
    let gone = tool(&reader.key, "memory_status", json!({}))
        .await
        .unwrap_err();
    assert!(gone.starts_with("HTTP 401"), "{gone}");

    // A broken file on reload: the keys in effect stay, the log names file:line, no key.
    let broken = format!(
        "{}\nname=broken tenant=Team-X scopes=memory:read sha256={}\n",
        writer.line,
        "0".repeat(64)
    );
    write_private(&keys_file, &broken);
    let mark = daemon.stderr().len();
    daemon.signal("HUP");
    let expected = format!("{}:2: key \\\"broken\\\": tenant name", keys_file.display());
    assert!(
        wait_for_log(&daemon, &expected, mark),
        "{}",
        daemon.stderr()
    );
    tool(&added.key, "memory_status", json!({})).await.unwrap();
    tool(&admin.key, "memory_status", json!({})).await.unwrap();

    let log = daemon.stderr();
    for key in [&reader, &writer, &admin, &old, &added, &logger] {
        assert!(!log.contains(&key.key), "a key in the log");
        let digest = key.line.rsplit("sha256=").next().unwrap();
        assert!(!log.contains(digest), "a key digest in the log");
    }
    daemon.signal("TERM");
    assert!(daemon.wait_exit(Duration::from_secs(20)).success());
}

#[test]
fn a_broken_keys_file_is_a_configuration_error_naming_file_and_line() {
    let root = daemon::config_root();
    let keys_file = root.path().join("api-keys");
    let good = new_key("good", "team-a", "memory:read", None);
    write_private(
        &keys_file,
        &format!(
            "{}\nname=bad tenant=team-a scopes=memory:admin sha256={}\n",
            good.line,
            "a".repeat(64)
        ),
    );
    let output = Command::new(BIN)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", "postgres://cogmem@localhost/cogmem")
        .env("COGMEM__SERVER__AUTH__KEYS_FILE", &keys_file)
        .args(["--env", "test", "--config-root"])
        .arg(root.path())
        .args(["config", "check"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("server.auth.keys_file"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:2: key \"bad\": unknown scope \"memory:admin\"",
            keys_file.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains(&good.key));

    // The generator refuses what the file would refuse, before printing a key.
    let output = Command::new(BIN)
        .args([
            "auth",
            "new-key",
            "--name",
            "x",
            "--tenant",
            "Bad Tenant",
            "--scopes",
            "memory:read",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).is_empty());
}

/// Two keys of two tenants over HTTP: what one stores never appears in the other's search,
/// session, resources or status, and the other's forget cannot erase it — row-level security
/// (V7) under the tenant each key names.
#[tokio::test(flavor = "multi_thread")]
async fn two_keys_of_two_tenants_never_see_each_others_memories() {
    let all = "memory:read,memory:write,memory:forget";
    let alice = new_key("alice", "tenant-a", all, None);
    let bob = new_key("bob", "tenant-b", all, None);
    let dir = tempfile::tempdir().unwrap();
    let keys_file = dir.path().join("api-keys");
    write_keys(&keys_file, &[&alice, &bob]);
    let database = stamped_database(Environment::Test).await;
    let mut daemon = Launch::http(&database.url)
        .env(
            "COGMEM__SERVER__AUTH__KEYS_FILE",
            keys_file.to_str().unwrap(),
        )
        .spawn();
    let base = daemon.ready();
    let http = reqwest::Client::new();
    let tool = |key: &str, name: &str, arguments: serde_json::Value| {
        let (http, base, key, name) = (http.clone(), base.clone(), key.to_owned(), name.to_owned());
        async move { mcp_http::tool(&http, &base, &key, &name, arguments).await }
    };
    let resource = |key: &str, uri: &str| {
        let (http, base, key, uri) = (http.clone(), base.clone(), key.to_owned(), uri.to_owned());
        async move {
            let read = mcp_http::call(
                &http,
                &base,
                &key,
                "resources/read",
                Some(&uri),
                json!({"uri": uri}),
            )
            .await
            .unwrap();
            serde_json::from_str::<serde_json::Value>(read["contents"][0]["text"].as_str().unwrap())
                .unwrap()
        }
    };

    // Alice stores a turn and an insight citing it; Bob stores one turn of his own under the
    // same session id.
    let turn_a = tool(
        &alice.key,
        "store_raw_dialogue",
        json!({"session_id": "shared", "speaker": "user", "content": "the okapi lives in Congo"}),
    )
    .await
    .unwrap();
    let turn_id = turn_a["id"].as_i64().unwrap();
    tool(
        &alice.key,
        "store_insight",
        json!({"content": "okapi facts are wanted", "source_ids": [turn_id]}),
    )
    .await
    .unwrap();
    tool(
        &bob.key,
        "store_raw_dialogue",
        json!({"session_id": "shared", "speaker": "user", "content": "bob talks about trains"}),
    )
    .await
    .unwrap();

    // Bob sees none of it, by any tool or resource.
    let found = tool(&bob.key, "search_memory", json!({"query": "okapi"}))
        .await
        .unwrap();
    assert_eq!(found["hits"], json!([]), "{found}");
    let page = tool(&bob.key, "get_session", json!({"session_id": "shared"}))
        .await
        .unwrap();
    let contents: Vec<&str> = page["turns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["bob talks about trains"], "{page}");
    let status = tool(&bob.key, "memory_status", json!({})).await.unwrap();
    assert_eq!(
        (&status["tenant"], &status["raw_turns"], &status["insights"]),
        (&json!("tenant-b"), &json!(1), &json!(0)),
        "{status}"
    );
    let recent = resource(&bob.key, "memory://insights/recent").await;
    assert!(!recent.to_string().contains("okapi"), "{recent}");
    let session = resource(&bob.key, "memory://sessions/shared").await;
    assert!(!session.to_string().contains("okapi"), "{session}");
    let status = resource(&bob.key, "memory://status").await;
    assert_eq!(status["raw_turns"], json!(1), "{status}");
    // Bob's erasure of the session and of Alice's ids touches only his own rows.
    let forgot = tool(&bob.key, "forget", json!({"session_id": "shared"}))
        .await
        .unwrap();
    assert_eq!(forgot["raw_deleted"], json!(1), "{forgot}");
    let forgot = tool(
        &bob.key,
        "forget",
        json!({"items": [{"layer": "raw", "id": turn_id}]}),
    )
    .await
    .unwrap();
    assert_eq!(forgot["raw_deleted"], json!(0), "{forgot}");

    // Alice still has everything.
    let found = tool(&alice.key, "search_memory", json!({"query": "okapi"}))
        .await
        .unwrap();
    assert_eq!(found["hits"].as_array().unwrap().len(), 2, "{found}");
    let status = tool(&alice.key, "memory_status", json!({})).await.unwrap();
    assert_eq!(
        (&status["tenant"], &status["raw_turns"], &status["insights"]),
        (&json!("tenant-a"), &json!(1), &json!(1)),
        "{status}"
    );
    let recent = resource(&alice.key, "memory://insights/recent").await;
    assert!(recent.to_string().contains("okapi facts"), "{recent}");
}
