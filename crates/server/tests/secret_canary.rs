//! Secrets never leak: every command and every error path, run with unique canary secrets and the
//! most verbose logging (trace, payload logging on), never prints a canary on stdout or stderr
//! and writes no file. (The journal is scanned by `systemd_daemon.rs` under a real journald.)

#[path = "support/daemon.rs"]
mod daemon;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use config_core::Environment;
use daemon::{BIN, Launch, stamped_database};
use serde_json::json;

const TOKEN_CANARY: &str = "tok-CANARY-4e1f9a7c2b";
const WRONG_TOKEN_CANARY: &str = "wrong-CANARY-88d0c3e5f1";
const WRONG_PASSWORD_CANARY: &str = "pw-CANARY-0b7e6d5c4a";

/// The password in a `postgres://user:password@…` URL.
fn password(url: &str) -> String {
    url.split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(user, _)| user.split_once(':'))
        .map(|(_, password)| password.to_owned())
        .expect("a password in the URL")
}

/// Replaces the password of `url`.
fn with_password(url: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (user_info, host) = rest.split_once('@').unwrap();
    let user = user_info
        .split_once(':')
        .map_or(user_info, |(user, _)| user);
    format!("{scheme}://{user}:{password}@{host}")
}

/// What a failing start-up is called, the variables that make it fail, and its exit code.
type StartFailure<'a> = (&'a str, Vec<(&'a str, &'a str)>, i32);

struct Scan {
    canaries: Vec<String>,
    runs: usize,
    bytes: usize,
}

impl Scan {
    fn check(&mut self, what: &str, text: &str) {
        self.runs += 1;
        self.bytes += text.len();
        for canary in &self.canaries {
            assert!(
                !text.contains(canary.as_str()),
                "{what} printed a secret:\n{text}"
            );
        }
    }

    fn output(&mut self, what: &str, output: &Output) {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        self.check(what, &text);
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = walk(dir)
        .into_iter()
        .map(|path| path.strip_prefix(dir).unwrap().display().to_string())
        .collect();
    names.sort();
    names
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn no_command_or_error_path_prints_a_secret() {
    let database = stamped_database(Environment::Test).await;
    let good_url = database.url.clone();
    let mut scan = Scan {
        canaries: vec![
            password(&good_url),
            TOKEN_CANARY.to_owned(),
            WRONG_TOKEN_CANARY.to_owned(),
            WRONG_PASSWORD_CANARY.to_owned(),
        ],
        runs: 0,
        bytes: 0,
    };

    // The daemon at trace level with payload logging on, through success and refusals.
    let mut server = Launch::http(&good_url)
        .env("MCP_AUTH_TOKEN", TOKEN_CANARY)
        .env("LOG_LEVEL", "trace")
        .env("COGMEM__LOGGING__LOG_PAYLOADS", "true")
        .spawn();
    let base = server.ready();
    let http = reqwest::Client::new();
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "store_raw_dialogue",
        "arguments": {"session_id": "s", "speaker": "user", "content": "hello"},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientCapabilities": {}}}});
    for token in [TOKEN_CANARY, WRONG_TOKEN_CANARY] {
        let response = http
            .post(format!("{base}/mcp"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", "store_raw_dialogue")
            .bearer_auth(token)
            .json(&call)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body = response.text().await.unwrap();
        assert_eq!(status == 200, token == TOKEN_CANARY, "{status} {body}");
        scan.check("an HTTP response", &body);
    }
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(15)).code(), Some(0));
    let log = server.stderr();
    assert!(log.contains("tool call"), "trace logging was on: {log}");
    scan.check("serve at trace with payload logging", &log);

    // Start-up failures: a wrong password (78), an unreachable server (75), a bad value (78).
    let wrong_password = with_password(&good_url, WRONG_PASSWORD_CANARY);
    let unreachable = format!("postgres://nobody:{WRONG_PASSWORD_CANARY}@127.0.0.1:1/nothing");
    let failures: [StartFailure; 3] = [
        (
            "wrong password",
            vec![("DATABASE_URL", &wrong_password)],
            78,
        ),
        (
            "unreachable database",
            vec![
                ("DATABASE_URL", &unreachable),
                ("COGMEM__DATABASE__CONNECT_WAIT_SECS", "1"),
            ],
            75,
        ),
        (
            "a secret under the wrong key",
            vec![
                ("DATABASE_URL", &good_url),
                (
                    "COGMEM__SERVER__RATE_LIMIT__REQUESTS_PER_MINUTE",
                    TOKEN_CANARY,
                ),
            ],
            78,
        ),
    ];
    for (what, vars, code) in failures {
        let mut launch = Launch::http(&good_url)
            .env("MCP_AUTH_TOKEN", TOKEN_CANARY)
            .env("LOG_LEVEL", "trace")
            .env("COGMEM__LOGGING__LOG_PAYLOADS", "true");
        for (name, value) in vars {
            launch = launch.env(name, value);
        }
        let mut failing = launch.spawn();
        let status = failing.wait_exit(Duration::from_secs(20));
        assert_eq!(status.code(), Some(code), "{what}: {}", failing.stderr());
        scan.check(what, &failing.stderr());
    }

    // Every other command, in an environment holding every canary, in every environment.
    let root = daemon::config_root();
    std::fs::write(
        root.path().join(".env.production"),
        format!("DATABASE_URL={wrong_password}\nMCP_AUTH_TOKEN={TOKEN_CANARY}\n"),
    )
    .unwrap();
    let before = files_in(root.path());
    let commands: [&[&str]; 9] = [
        &["config", "check"],
        &["config", "explain"],
        &["config", "template"],
        &["migrate", "--dry-run"],
        &["migrate"],
        &["doctor"],
        &["doctor", "--json"],
        &["health"],
        &["health", "--ready", "--url", "http://127.0.0.1:9"],
    ];
    for environment in ["development", "test", "production"] {
        for command in commands {
            let output = Command::new(BIN)
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("DATABASE_URL", &good_url)
                // Backups read every tenant through a role that bypasses row-level security.
                .env("COGMEM__BACKUP__DATABASE_URL", &database.admin_url)
                .env("MCP_AUTH_TOKEN", TOKEN_CANARY)
                .env("LOG_LEVEL", "trace")
                .env("COGMEM__DATABASE__CONNECT_WAIT_SECS", "1")
                .args(["--env", environment, "--config-root"])
                .arg(root.path())
                .args(command)
                .output()
                .unwrap();
            scan.output(&format!("{environment} {}", command.join(" ")), &output);
        }
    }
    // The lifecycle commands: a backup (into a directory of its own), its verification, an
    // export, a refused restore and a failing import, each with every canary around.
    let backups = tempfile::tempdir().unwrap();
    let backup_dir = backups.path().to_string_lossy().into_owned();
    for environment in ["development", "test", "production"] {
        let lifecycle: [&[&str]; 4] = [
            &["backup", "--to", &backup_dir],
            &["export"],
            &["restore", "--from", "/nonexistent/backup.dump"],
            &["import"],
        ];
        for command in lifecycle {
            let output = Command::new(BIN)
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("DATABASE_URL", &good_url)
                // Backups read every tenant through a role that bypasses row-level security.
                .env("COGMEM__BACKUP__DATABASE_URL", &database.admin_url)
                .env("MCP_AUTH_TOKEN", TOKEN_CANARY)
                .env("LOG_LEVEL", "trace")
                .env("COGMEM__DATABASE__CONNECT_WAIT_SECS", "1")
                .args(["--env", environment, "--config-root"])
                .arg(root.path())
                .args(command)
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap();
            scan.output(&format!("{environment} {}", command.join(" ")), &output);
        }
    }
    for file in walk(backups.path()) {
        if file.extension().is_some_and(|e| e == "json") {
            let output = Command::new(BIN)
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("MCP_AUTH_TOKEN", TOKEN_CANARY)
                .args(["--env", "development", "--config-root"])
                .arg(root.path())
                .arg("backup")
                .arg("--verify")
                .arg(file.with_extension("").with_extension("dump"))
                .env("DATABASE_URL", &good_url)
                .output()
                .unwrap();
            scan.output("backup --verify", &output);
            scan.check(
                &file.display().to_string(),
                &std::fs::read_to_string(&file).unwrap(),
            );
        }
    }
    assert_eq!(files_in(root.path()), before, "a command wrote a file");
    for file in walk(root.path()) {
        if file.ends_with(".env.production") {
            continue;
        }
        scan.check(
            &file.display().to_string(),
            &std::fs::read_to_string(&file).unwrap(),
        );
    }
    println!(
        "secret canary: {} outputs scanned ({} bytes) for {} canaries: 0 hits",
        scan.runs,
        scan.bytes,
        scan.canaries.len()
    );
}
