//! The container image and the Compose deployment, with real podman.
//!
//! The image is built once per run by `cargo xtask image --binary <this build's server>
//! --local-base` (the same Containerfile's runtime stage; the base assembled FROM scratch from
//! the binary's libraries, nothing pulled), in a project-local podman store under
//! `target/podman-tests/` configured for these machines (runc, cgroupfs, ulimits:
//! `deploy/container/podman/containers.conf`). Containers use the host network to reach the
//! throwaway cluster on 127.0.0.1; every container gets a unique name and is removed at the end.
//!
//! Where podman cannot run (not installed, or `podman info` fails) or the PyPI tools are missing,
//! a test prints `skipped: <reason>` and passes — unless `COGMEM_REQUIRE_PODMAN=1` (set by
//! `.ci/run`), which turns a skip into a failure.
//!
//! `podman kube play` runs the rendered production Deployment (kubectl kustomize), changed only
//! where podman 4.3 on this machine needs it (host network, one replica, Secret volume files
//! prepared on the host; the test says why at each change), and `podman kube down` removes it.
//! Without kubectl it skips, failing under `COGMEM_REQUIRE_KUBERNETES=1`.
//!
//! podman schedules health checks with systemd timers, which do not exist here; the tests run
//! `podman healthcheck run` themselves, which executes the image's HEALTHCHECK
//! (`health --ready`) inside the container and records the state, as the timer would.

#[path = "../../crates/server/tests/support/mcp_client.rs"]
mod mcp_client;
#[path = "../../crates/server/tests/support/mcp_http.rs"]
mod mcp_http;
#[path = "support/run.rs"]
mod run;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use config_core::Environment;
use mcp_client::call;
use mcp_http::get_json;
use pg_harness::{TestCluster, TestDatabase};
use rmcp::model::ProtocolVersion;
use serde_json::{Value, json};
use yaml_rust2::{Yaml, YamlLoader};

const IMAGE: &str = "localhost/cognitive-memory-mcp:test";
/// The non-root user of the image.
const APP_UID: u32 = 65532;
const TOKEN: &str = "container-token-0123456789abcdef";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn compose_dir() -> PathBuf {
    repo().join("deploy/compose")
}

/// Prints why the test cannot run and passes, or fails under `COGMEM_REQUIRE_PODMAN=1`.
fn skip(reason: &str) {
    if std::env::var_os("COGMEM_REQUIRE_PODMAN").is_some_and(|v| v == "1") {
        panic!("COGMEM_REQUIRE_PODMAN=1 but: {reason}");
    }
    eprintln!("skipped: {reason}");
}

/// The project-local podman configuration: `(CONTAINERS_CONF, CONTAINERS_STORAGE_CONF)`.
fn podman_env() -> &'static Result<[(String, String); 2], String> {
    static ENV: OnceLock<Result<[(String, String); 2], String>> = OnceLock::new();
    ENV.get_or_init(|| {
        use std::os::unix::fs::MetadataExt;
        // Rootful podman: the secret files are handed to the image's uid with chown, as an
        // operator does (rootless podman would need `podman unshare`).
        if std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(1) != 0 {
            return Err("the container tests run rootful podman and need root".to_owned());
        }
        let dir = repo().join("target/podman-tests");
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let dir = dir.canonicalize().unwrap();
        let storage = dir.join("storage.conf");
        std::fs::write(
            &storage,
            format!(
                "[storage]\ndriver = \"overlay\"\ngraphroot = \"{0}/graph\"\nrunroot = \"{0}/run\"\n",
                dir.display()
            ),
        )
        .unwrap();
        let conf = repo()
            .join("deploy/container/podman/containers.conf")
            .canonicalize()
            .unwrap();
        let env = [
            ("CONTAINERS_CONF".to_owned(), conf.display().to_string()),
            (
                "CONTAINERS_STORAGE_CONF".to_owned(),
                storage.display().to_string(),
            ),
        ];
        let info = Command::new("podman")
            .args(["info", "--format", "{{.Host.OCIRuntime.Name}}"])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .map_err(|e| format!("podman is not installed ({e}); apt-get install podman runc"))?;
        if !info.status.success() {
            return Err(format!(
                "podman info fails: {}",
                String::from_utf8_lossy(&info.stderr).trim()
            ));
        }
        Ok(env)
    })
}

fn podman(args: &[&str]) -> Output {
    let env = podman_env().as_ref().expect("podman checked first");
    Command::new("podman")
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[track_caller]
fn podman_ok(args: &[&str]) -> String {
    let output = podman(args);
    assert!(
        output.status.success(),
        "podman {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    stdout(&output)
}

/// The image, built once: `Err` (a skip reason) when podman cannot run here.
fn image() -> Result<&'static str, String> {
    podman_env().clone()?;
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let server = Path::new(env!("CARGO_BIN_EXE_xtask")).with_file_name("cognitive-memory-mcp");
        assert!(
            server.exists(),
            "{} is missing: run the workspace tests (`cargo test --workspace`)",
            server.display()
        );
        let env = podman_env().as_ref().unwrap();
        let vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let started = Instant::now();
        let server = server.display().to_string();
        run::xtask(
            &repo(),
            &["image", "--binary", &server, "--local-base", "--tag", IMAGE],
            &vars,
        )
        .success();
        eprintln!("image built in {:.1} s", started.elapsed().as_secs_f64());
        // Intermediate stages of earlier builds.
        podman(&["image", "prune", "-f"]);
    });
    Ok(IMAGE)
}

/// A container removed when dropped.
struct Container(String);

impl Container {
    fn name(&self) -> &str {
        &self.0
    }

    fn inspect(&self, format: &str) -> String {
        podman_ok(&["inspect", "--format", format, &self.0])
    }

    fn logs(&self) -> String {
        let output = podman(&["logs", &self.0]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }
}

impl Container {
    /// Non-root, no capabilities, no privilege escalation, read-only root: the process as the
    /// kernel sees it, and the root file system as podman mounted it.
    #[track_caller]
    fn assert_confined(&self) {
        let pid = self.inspect("{{.State.Pid}}");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(field("Uid:"), "65532 65532 65532 65532");
        assert_eq!(field("CapEff:"), "0000000000000000");
        assert_eq!(field("CapBnd:"), "0000000000000000");
        assert_eq!(field("NoNewPrivs:"), "1");
        assert_eq!(self.inspect("{{.HostConfig.ReadonlyRootfs}}"), "true");
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        podman(&["rm", "-f", "-t", "0", &self.0]);
    }
}

fn unique(what: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!(
        "cogmem-test-{what}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// A directory of secret files as an operator prepares them: mode 0600, owned by the image's
/// user (so the non-root process can read them and the strict environments accept them).
fn secrets_dir(database_url: &str, token: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for (name, value) in [("database-url", database_url), ("mcp-auth-token", token)] {
        let path = dir.path().join(name);
        std::fs::write(&path, value).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::chown(&path, Some(APP_UID), Some(APP_UID)).unwrap();
    }
    dir
}

async fn database(environment: Environment) -> TestDatabase {
    let database = TestCluster::shared().fresh_database().await.unwrap();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&database.url)
        .await
        .unwrap();
    db::stamp(&pool, environment, "container tests")
        .await
        .unwrap();
    pool.close().await;
    database
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `podman run -d` of the image, hardened as the Compose files run it, on the host network,
/// with the secret files mounted under /run/secrets/.
fn run_server(environment: Environment, secrets: &Path, port: u16, extra: &[&str]) -> Container {
    let name = unique(environment.as_str());
    let env_arg = format!("ENVIRONMENT={}", environment.as_str());
    let bind = format!("COGMEM__SERVER__HTTP__BIND=127.0.0.1:{port}");
    let url = format!(
        "{}:/run/secrets/database-url:ro",
        secrets.join("database-url").display()
    );
    let token = format!(
        "{}:/run/secrets/mcp-auth-token:ro",
        secrets.join("mcp-auth-token").display()
    );
    let mut args = vec![
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "host",
        "--read-only",
        "--cap-drop=ALL",
        "--security-opt",
        "no-new-privileges",
        "--tmpfs",
        "/tmp:size=16m",
        "-e",
        &env_arg,
        "-e",
        &bind,
        "-v",
        &url,
        "-v",
        &token,
    ];
    args.extend_from_slice(extra);
    args.push(IMAGE);
    podman_ok(&args);
    Container(name)
}

async fn wait_ready(base: &str, container: &Container) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = client.get(format!("{base}/ready")).send().await
            && response.status() == 200
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not ready within 30 s; state {}; logs:\n{}",
            container.inspect("{{.State.Status}} {{.State.ExitCode}}"),
            container.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn mcp_client(base: &str) -> mcp_client::Client {
    mcp_client::connect(base, TOKEN, ProtocolVersion::V_2026_07_28).await
}

/// Stores `content` in `session` and finds it again by `word`, the only match on a fresh database.
async fn store_and_find(mcp: &mcp_client::Client, session: &str, content: &str, word: &str) {
    call(
        mcp,
        "store_raw_dialogue",
        json!({"session_id": session, "speaker": "user", "content": content}),
    )
    .await;
    let found = call(mcp, "search_memory", json!({"query": word})).await;
    let hits = found["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 1, "{found}");
    assert_eq!(hits[0]["session_id"], session, "{found}");
}

/// The merged view of one key of a service, read from the base file and the override.
fn compose_value(environment: &str, service: &str, path: &[&str]) -> Option<Yaml> {
    let mut found = None;
    for file in ["compose.yaml".to_owned(), format!("{environment}.yaml")] {
        let text = std::fs::read_to_string(compose_dir().join(file)).unwrap();
        let doc = YamlLoader::load_from_str(&text).unwrap().remove(0);
        let mut node = &doc["services"][service];
        for key in path {
            node = &node[*key];
        }
        if !node.is_badvalue() {
            found = Some(node.clone());
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn the_image_runs_read_only_as_non_root_with_file_secrets_serves_and_stops_with_0() {
    let image = match image() {
        Ok(image) => image,
        Err(reason) => return skip(&reason),
    };
    // Declared by the image, not by this test's run command.
    assert_eq!(
        podman_ok(&["image", "inspect", "--format", "{{.Config.User}}", image]),
        format!("{APP_UID}:{APP_UID}")
    );
    assert_eq!(
        podman_ok(&[
            "image",
            "inspect",
            "--format",
            "{{.Config.StopSignal}} {{json .Config.Entrypoint}}",
            image
        ]),
        "SIGTERM [\"/usr/local/bin/cognitive-memory-mcp\"]"
    );
    let database = database(Environment::Staging).await;
    let secrets = secrets_dir(&database.url, TOKEN);
    let port = free_port();
    let container = run_server(Environment::Staging, secrets.path(), port, &[]);
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    wait_ready(&base, &container).await;
    eprintln!(
        "container start → /ready 200: {:.2} s",
        started.elapsed().as_secs_f64()
    );

    container.assert_confined();

    let client = reqwest::Client::new();
    let health = get_json(&client, &format!("{base}/health")).await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["environment"], "staging");
    let ready = get_json(&client, &format!("{base}/ready")).await;
    assert_eq!(ready["status"], "ready", "{ready}");

    // The token came from /run/secrets/mcp-auth-token: without it /mcp refuses.
    let refused = client
        .post(format!("{base}/mcp"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let mcp = mcp_client(&base).await;
    let mut tools: Vec<String> = mcp
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    tools.sort();
    assert_eq!(
        tools,
        [
            "forget",
            "get_session",
            "memory_status",
            "search_memory",
            "store_insight",
            "store_raw_dialogue"
        ]
    );
    store_and_find(&mcp, "container", "a periwinkle submarine", "periwinkle").await;
    mcp.cancel().await.unwrap();

    // The image's HEALTHCHECK (`health --ready`, run inside the container).
    let check = podman(&["healthcheck", "run", container.name()]);
    assert!(check.status.success(), "{check:?}");
    assert_eq!(container.inspect("{{.State.Health.Status}}"), "healthy");

    // SIGTERM from podman stop: a drain and exit 0 well within the grace period.
    let stopping = Instant::now();
    podman_ok(&["stop", "-t", "20", container.name()]);
    let took = stopping.elapsed();
    assert_eq!(container.inspect("{{.State.ExitCode}}"), "0");
    assert!(took < Duration::from_secs(20), "stop took {took:?}");
    let logs = container.logs();
    assert!(logs.contains("stopped"), "{logs}");
    let password = url::Url::parse(&database.url)
        .unwrap()
        .password()
        .unwrap()
        .to_owned();
    // Files, not variables: the container's configuration holds no secret value.
    let inspect = podman_ok(&["inspect", container.name()]);
    for secret in [TOKEN, password.as_str()] {
        assert!(!logs.contains(secret), "a secret leaked into the logs");
        assert!(!inspect.contains(secret), "a secret is in podman inspect");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_placeholder_secret_exits_78_and_the_compose_restart_policy_does_not_loop() {
    if let Err(reason) = image() {
        return skip(&reason);
    }
    let policy = compose_value("production", "server", &["restart"])
        .and_then(|y| y.as_str().map(str::to_owned))
        .expect("the server has a restart policy");
    let retries: u32 = policy
        .strip_prefix("on-failure:")
        .unwrap_or_else(|| panic!("restart {policy}: expected on-failure:N"))
        .parse()
        .unwrap();
    let database = database(Environment::Production).await;
    let secrets = secrets_dir(&database.url, "your-token-here");
    let restart = format!("--restart={policy}");
    let container = run_server(
        Environment::Production,
        secrets.path(),
        free_port(),
        &[&restart],
    );
    // Each attempt fails at once; after the last one the container stays exited.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    loop {
        let state = container.inspect("{{.State.Status}} {{.State.ExitCode}} {{.RestartCount}}");
        if state.starts_with("exited ") && state == last {
            break;
        }
        assert!(Instant::now() < deadline, "still restarting: {state}");
        last = state;
        std::thread::sleep(Duration::from_secs(2));
    }
    std::thread::sleep(Duration::from_secs(3));
    let state = container.inspect("{{.State.Status}} {{.State.ExitCode}} {{.RestartCount}}");
    let parts: Vec<&str> = state.split(' ').collect();
    assert_eq!(parts[..2], ["exited", "78"], "{state}");
    let count: u32 = parts[2].parse().unwrap();
    assert!(count <= retries, "restarted {count} times under {policy}");
    let logs = container.logs();
    assert!(logs.contains("mcp-auth-token"), "{logs}");
    assert!(
        !logs.contains("your-token-here"),
        "the placeholder was echoed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_production_memory_limit_is_enforced_and_the_server_stays_under_it_under_load() {
    if let Err(reason) = image() {
        return skip(&reason);
    }
    let limit_text = compose_value(
        "production",
        "server",
        &["deploy", "resources", "limits", "memory"],
    )
    .and_then(|y| y.as_str().map(str::to_owned))
    .expect("production sets a memory limit");
    let limit_bytes: u64 = {
        let (number, unit) = limit_text.split_at(limit_text.len() - 1);
        let factor = match unit {
            "M" | "m" => 1 << 20,
            "G" | "g" => 1 << 30,
            other => panic!("unit {other} in {limit_text}"),
        };
        number.parse::<u64>().unwrap() * factor
    };
    let database = database(Environment::Production).await;
    let secrets = secrets_dir(&database.url, TOKEN);
    let port = free_port();
    let memory = format!("--memory={limit_text}");
    let container = run_server(
        Environment::Production,
        secrets.path(),
        port,
        &[
            &memory,
            "-e",
            "COGMEM__SERVER__RATE_LIMIT__REQUESTS_PER_MINUTE=1000000",
        ],
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base, &container).await;
    assert_eq!(
        container.inspect("{{.HostConfig.Memory}}"),
        limit_bytes.to_string()
    );
    // The kernel's view: the container's memory cgroup carries the limit.
    let pid = container.inspect("{{.State.Pid}}");
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let memory_dir = match cgroups.lines().find_map(|l| l.split_once(":memory:")) {
        Some((_, path)) => PathBuf::from(format!("/sys/fs/cgroup/memory{path}")),
        None => {
            // cgroup v2
            let path = cgroups.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
            PathBuf::from(format!("/sys/fs/cgroup{path}"))
        }
    };
    let read = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| std::fs::read_to_string(memory_dir.join(n)).ok())
            .unwrap_or_else(|| panic!("none of {names:?} in {}", memory_dir.display()))
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    assert_eq!(read(&["memory.limit_in_bytes", "memory.max"]), limit_bytes);

    // A short load: 8 MCP clients storing 16 KiB turns and searching for 4 s (the rate limit
    // raised for this container so that the load reaches the server).
    let content = "periwinkle ".repeat(1500);
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let base = base.clone();
        let content = content.clone();
        tasks.push(tokio::spawn(async move {
            let client = mcp_client(&base).await;
            let until = Instant::now() + Duration::from_secs(4);
            let mut calls = 0;
            while Instant::now() < until {
                call(
                    &client,
                    "store_raw_dialogue",
                    json!({"session_id": format!("load-{worker}"),
                    "speaker": "user", "content": content}),
                )
                .await;
                call(
                    &client,
                    "search_memory",
                    json!({"query": "periwinkle", "limit": 20}),
                )
                .await;
                calls += 2;
            }
            client.cancel().await.unwrap();
            calls
        }));
    }
    let mut sent = 0;
    for task in tasks {
        sent += task.await.unwrap();
    }
    assert!(sent > 0);
    let peak = read(&["memory.max_usage_in_bytes", "memory.peak"]);
    eprintln!(
        "{sent} requests; peak {:.1} MiB of {limit_text}",
        peak as f64 / (1 << 20) as f64
    );
    assert!(peak < limit_bytes, "peak {peak} ≥ limit {limit_bytes}");
    assert_eq!(container.inspect("{{.State.Status}}"), "running");
    assert_eq!(container.inspect("{{.State.OOMKilled}}"), "false");
    let ready = reqwest::get(format!("{base}/ready")).await.unwrap();
    assert_eq!(ready.status(), 200);
}

/// `(podman-compose, check-jsonschema)` or a skip reason.
fn compose_tools() -> Result<(), String> {
    for tool in ["podman-compose", "check-jsonschema"] {
        let on_path = Command::new(tool).arg("--version").output().is_ok();
        if !on_path && !repo().join("target/ci-venv/bin").join(tool).is_file() {
            return Err(format!(
                "{tool} is not installed (python3 -m venv target/ci-venv && target/ci-venv/bin/pip install podman-compose==1.6.0 check-jsonschema==0.39.0)"
            ));
        }
    }
    Ok(())
}

fn venv_path() -> String {
    format!(
        "{}:{}",
        repo().join("target/ci-venv/bin").display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn every_merged_compose_file_validates_and_a_misspelled_key_is_caught() {
    if let Err(reason) = compose_tools() {
        return skip(&reason);
    }
    let good = run::xtask(&repo(), &["compose-check"], &[]).success();
    for environment in ["development", "staging", "production"] {
        good.says(&format!("{environment}: compose-spec schema OK"));
        good.says(&format!("{environment}: deployment rules OK"));
    }

    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(compose_dir()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
    }
    let production = copy.path().join("production.yaml");
    let text = std::fs::read_to_string(&production).unwrap();
    std::fs::write(
        &production,
        text.replacen("  server:\n", "  server:\n    read_onyl: true\n", 1),
    )
    .unwrap();
    let dir = copy.path().display().to_string();
    let bad = run::xtask(&repo(), &["compose-check", "--dir", &dir], &[]).failure();
    bad.says("production: the merged file");
    bad.says("'read_onyl' was unexpected");
    bad.says("staging: compose-spec schema OK");
}

#[tokio::test(flavor = "multi_thread")]
async fn podman_compose_brings_up_staging_migrate_then_server_and_it_turns_healthy() {
    if let Err(reason) = image().and_then(|_| compose_tools()) {
        return skip(&reason);
    }
    let database = database(Environment::Staging).await;
    let secrets = secrets_dir(&database.url, TOKEN);
    let port = free_port();
    // The one addition for this machine: the host network, to reach the cluster on 127.0.0.1.
    let overlay = tempfile::tempdir().unwrap();
    let host = overlay.path().join("host-network.yaml");
    std::fs::write(
        &host,
        format!(
            "services:\n  migrate:\n    network_mode: host\n  server:\n    network_mode: host\n    environment:\n      COGMEM__SERVER__HTTP__BIND: 127.0.0.1:{port}\n"
        ),
    )
    .unwrap();
    let project = unique("compose");
    let compose = |verb: &[&str]| {
        let env = podman_env().as_ref().unwrap();
        let mut command = Command::new("podman-compose");
        command
            .env("PATH", venv_path())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("COGMEM_IMAGE", IMAGE)
            .env("COGMEM_SECRETS_DIR", secrets.path())
            .arg("-p")
            .arg(&project)
            .arg("-f")
            .arg(compose_dir().join("compose.yaml"))
            .arg("-f")
            .arg(compose_dir().join("staging.yaml"))
            .arg("-f")
            .arg(&host)
            .args(verb)
            .stdin(Stdio::null());
        command.output().unwrap()
    };
    struct Down<F: Fn(&[&str]) -> Output>(F);
    impl<F: Fn(&[&str]) -> Output> Drop for Down<F> {
        fn drop(&mut self) {
            (self.0)(&["down", "-t", "5"]);
        }
    }
    let compose = Down(compose);
    let up = (compose.0)(&["up", "-d"]);
    assert!(
        up.status.success(),
        "podman-compose up: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    let migrate = Container(format!("{project}_migrate_1"));
    let server = Container(format!("{project}_server_1"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while migrate.inspect("{{.State.Status}}") != "exited" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        migrate.inspect("{{.State.Status}} {{.State.ExitCode}}"),
        "exited 0",
        "{}",
        migrate.logs()
    );
    // The server started only after migrate's first run had finished. (podman-compose also
    // passes `--requires=migrate` to the server, so podman starts migrate once more alongside
    // it; a second run finds nothing to do.)
    let first = |container: &Container, status: &str| -> (String, f64) {
        let events = podman_ok(&[
            "events",
            "--stream=false",
            "--since",
            "10m",
            "--format",
            "json",
            "--filter",
            &format!("container={}", container.name()),
            "--filter",
            &format!("event={status}"),
        ]);
        let event: Value = serde_json::from_str(
            events
                .lines()
                .next()
                .unwrap_or_else(|| panic!("no {status} event for {}", container.name())),
        )
        .unwrap();
        event_time(event["Time"].as_str().unwrap())
    };
    let migrated = first(&migrate, "died");
    let served = first(&server, "start");
    assert!(
        served > migrated,
        "server started {served:?}, migrate finished {migrated:?}"
    );
    // What the Compose files asked for, as podman applied it.
    assert_eq!(
        server.inspect("{{.HostConfig.ReadonlyRootfs}} {{.Config.User}} {{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}"),
        "true 65532:65532 on-failure:3"
    );
    assert_eq!(
        server.inspect("{{.HostConfig.Memory}}"),
        (256u64 << 20).to_string()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let check = podman(&["healthcheck", "run", server.name()]);
        if check.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never healthy: {}; logs:\n{}",
            stdout(&check),
            server.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(server.inspect("{{.State.Health.Status}}"), "healthy");
    let ready = reqwest::get(format!("http://127.0.0.1:{port}/ready"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    drop(compose);
    // `down` removed both; the guards' `rm -f` find nothing.
    assert!(
        !podman(&["container", "exists", server.name()])
            .status
            .success()
    );
}

/// `kubectl` for `kubectl kustomize`, or why the Kubernetes test cannot run (a failure under
/// `COGMEM_REQUIRE_KUBERNETES=1`, which `.ci/run` sets where kubectl exists).
fn kubectl() -> Option<PathBuf> {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("kubectl"))
        .find(|path| path.is_file());
    if found.is_none() {
        let reason = "kubectl is not on PATH (it renders deploy/kubernetes with its kustomize)";
        if std::env::var_os("COGMEM_REQUIRE_KUBERNETES").is_some_and(|v| v == "1") {
            panic!("COGMEM_REQUIRE_KUBERNETES=1 but {reason}");
        }
        eprintln!("skipped: {reason}");
    }
    found
}

/// A YAML document as JSON, which `podman kube play` reads as well (YAML is a superset).
fn yaml_to_json(yaml: &Yaml) -> Value {
    match yaml {
        Yaml::String(text) => Value::String(text.clone()),
        Yaml::Real(text) => text
            .parse::<f64>()
            .map_or_else(|_| Value::String(text.clone()), |f| json!(f)),
        Yaml::Integer(n) => json!(n),
        Yaml::Boolean(b) => json!(b),
        Yaml::Array(items) => Value::Array(items.iter().map(yaml_to_json).collect()),
        Yaml::Hash(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) | Yaml::Real(s) => s.clone(),
                        Yaml::Integer(n) => n.to_string(),
                        Yaml::Boolean(b) => b.to_string(),
                        other => panic!("unexpected key {other:?}"),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        Yaml::Null => Value::Null,
        other => panic!("unexpected YAML node {other:?}"),
    }
}

/// `podman kube down` of the played file when dropped, so a failed assertion leaves nothing.
struct KubeDown(PathBuf);

impl Drop for KubeDown {
    fn drop(&mut self) {
        podman(&["kube", "down", &self.0.display().to_string()]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn podman_kube_play_runs_the_rendered_production_deployment_against_a_host_cluster() {
    let Some(kubectl) = kubectl() else {
        return;
    };
    let catatonit = ["/usr/libexec/podman/catatonit", "/usr/bin/catatonit"];
    if !catatonit.iter().any(|path| Path::new(path).exists()) {
        return skip(
            "catatonit is not installed (apt-get install catatonit): podman kube play builds its pause image from it",
        );
    }
    if let Err(reason) = image() {
        return skip(&reason);
    }
    let overlay = repo().join("deploy/kubernetes/overlays/production");
    let rendered = Command::new(&kubectl)
        .arg("kustomize")
        .arg(&overlay)
        .output()
        .unwrap();
    assert!(
        rendered.status.success(),
        "kubectl kustomize: {}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let mut documents: Vec<Value> =
        YamlLoader::load_from_str(&String::from_utf8(rendered.stdout).unwrap())
            .unwrap()
            .iter()
            .map(yaml_to_json)
            .collect();

    let database = database(Environment::Production).await;
    let secrets = secrets_dir(&database.url, TOKEN);
    let port = free_port();
    // What this machine needs changed, and nothing else: podman runs the other kinds
    // (ServiceAccount, Service, PodDisruptionBudget, HorizontalPodAutoscaler, Job,
    // NetworkPolicy) not at all and ignores them.
    let mut image_name = String::new();
    for document in &mut documents {
        match document["kind"].as_str() {
            Some("ConfigMap") if document["data"]["COGMEM__SERVER__HTTP__BIND"].is_string() => {
                // The host network (below) has no pod IP of its own: a free loopback port.
                document["data"]["COGMEM__SERVER__HTTP__BIND"] = json!(format!("127.0.0.1:{port}"));
            }
            Some("Deployment") => {
                // One pod: replicas would share the host network's port.
                document["spec"]["replicas"] = json!(1);
                let pod = &mut document["spec"]["template"]["spec"];
                // The cluster listens on the host's 127.0.0.1, which only the host network
                // reaches (a pod network would make it a remote, TLS-requiring host).
                pod["hostNetwork"] = json!(true);
                let server = &mut pod["containers"][0];
                image_name = server["image"].as_str().unwrap().to_owned();
                // podman 4.3 refuses port mappings on the host network.
                server.as_object_mut().unwrap().remove("ports");
                // podman 4.3 writes Secret volume files at 0644 whatever `defaultMode` says
                // (the kubelet writes 0440 for fsGroup), which the daemon rightly refuses: the
                // same files, prepared as an operator would, from the host.
                for volume in pod["volumes"].as_array_mut().unwrap() {
                    if volume.get("secret").is_some() {
                        let volume = volume.as_object_mut().unwrap();
                        volume.remove("secret");
                        volume.insert(
                            "hostPath".to_owned(),
                            json!({"path": secrets.path(), "type": "Directory"}),
                        );
                    }
                }
            }
            _ => {}
        }
    }
    // The image the manifest names is the one `cargo xtask image` built for this run.
    assert!(
        image_name.starts_with("localhost/cognitive-memory-mcp:"),
        "{image_name}"
    );
    podman_ok(&["tag", IMAGE, &image_name]);
    let work = tempfile::tempdir().unwrap();
    let manifest = work.path().join("production.json");
    let text: Vec<String> = documents.iter().map(Value::to_string).collect();
    std::fs::write(&manifest, text.join("\n---\n")).unwrap();
    let file = manifest.display().to_string();
    // A pod left by an interrupted run would block the fixed pod name.
    podman(&["kube", "down", &file]);
    let started = Instant::now();
    let played = podman(&["kube", "play", &file]);
    let down = KubeDown(manifest.clone());
    assert!(
        played.status.success(),
        "podman kube play: {}",
        String::from_utf8_lossy(&played.stderr)
    );
    let server = Container("cognitive-memory-mcp-pod-0-server".to_owned());
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base, &server).await;
    eprintln!(
        "kube play → /ready 200: {:.2} s",
        started.elapsed().as_secs_f64()
    );

    // The Deployment's pod and container security context and memory limit, as podman applied them.
    server.assert_confined();
    assert_eq!(
        server.inspect("{{.Config.User}} {{.HostConfig.Memory}}"),
        format!("65532:65532 {}", 256u64 << 20)
    );
    let ready = get_json(&reqwest::Client::new(), &format!("{base}/ready")).await;
    assert_eq!(ready["environment"], "production", "{ready}");

    // An MCP round trip with the token from the mounted secret file.
    let mcp = mcp_client(&base).await;
    store_and_find(&mcp, "kube", "a vermilion lighthouse", "vermilion").await;
    mcp.cancel().await.unwrap();

    let logs = server.logs();
    let password = url::Url::parse(&database.url)
        .unwrap()
        .password()
        .unwrap()
        .to_owned();
    for secret in [TOKEN, password.as_str()] {
        assert!(!logs.contains(secret), "a secret leaked into the logs");
    }
    drop(down);
    assert!(
        !podman(&["pod", "exists", "cognitive-memory-mcp-pod-0"])
            .status
            .success(),
        "podman kube down left the pod"
    );
    podman(&["rmi", &image_name]);
}

/// An RFC 3339 UTC time (`2026-12-01T22:51:29.022942758Z`, fraction of any length) as its date
/// and the seconds into that day, comparable as a pair.
fn event_time(text: &str) -> (String, f64) {
    let (date, time) = text.split_once('T').unwrap();
    let time = time.trim_end_matches('Z');
    let parts: Vec<f64> = time.split(':').map(|p| p.parse().unwrap()).collect();
    (
        date.to_owned(),
        parts[0] * 3600.0 + parts[1] * 60.0 + parts[2],
    )
}
