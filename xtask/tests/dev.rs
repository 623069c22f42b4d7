//! `cargo xtask dev` as a newcomer runs it: in a fresh checkout (a temporary repository root with
//! only config/config.yaml) it creates the local cluster and the development database, then the
//! server answers `/health` and `/ready`, and Ctrl-C (SIGINT) stops it with exit 0.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

#[test]
fn dev_sets_up_the_database_and_serves_until_ctrl_c() {
    let repo = tempfile::tempdir().unwrap();
    // The cluster's own user (when tests run as root) must be able to traverse it.
    std::fs::set_permissions(repo.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    std::fs::create_dir(repo.path().join("config")).unwrap();
    std::fs::copy(
        workspace.join("config/config.yaml"),
        repo.path().join("config/config.yaml"),
    )
    .unwrap();
    let server = Path::new(env!("CARGO_BIN_EXE_xtask")).with_file_name("cognitive-memory-mcp");
    assert!(
        server.exists(),
        "{} is missing: run the workspace tests (`cargo test --workspace`)",
        server.display()
    );
    let port = free_port();

    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command
        .args(["dev", "--bind", "127.0.0.1:0", "--server-binary"])
        .arg(&server)
        .env_clear()
        .env("COGMEM_REPO_ROOT", repo.path())
        .env("COGMEM_DEV_PG_PORT", port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for name in ["PATH", "PG_BINDIR"] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines, received) = mpsc::channel::<String>();
    for pipe in [
        Box::new(stdout) as Box<dyn std::io::Read + Send>,
        Box::new(stderr),
    ] {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
    }
    let mut output = Vec::new();
    let base = loop {
        let line = received
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("no ready line; output:\n{}", output.join("\n")));
        output.push(line.clone());
        if let Some((_, rest)) = line.split_once("serving http://") {
            break format!("http://{}", rest.split('/').next().unwrap());
        }
    };
    let all = output.join("\n");
    assert!(all.contains("curl http://127.0.0.1:"), "{all}");
    assert!(all.contains("claude mcp add"), "{all}");
    assert!(repo.path().join(".env.development").exists());

    let health = get(&format!("{base}/health"));
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(
        health.contains("\"environment\":\"development\""),
        "{health}"
    );
    let ready = get(&format!("{base}/ready"));
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");

    // Ctrl-C: the terminal sends SIGINT to the foreground process, which is the server itself.
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));

    let stopped = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["dev-db", "stop", "--port", &port.to_string()])
        .env("COGMEM_REPO_ROOT", repo.path())
        .status()
        .unwrap();
    assert!(stopped.success());
}

/// A minimal HTTP/1.1 GET, so the test needs no client library.
fn get(url: &str) -> String {
    use std::io::{Read, Write};
    let address = url.trim_start_matches("http://");
    let (host, path) = address.split_once('/').unwrap();
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(
        stream,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
