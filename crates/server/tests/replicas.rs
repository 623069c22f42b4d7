//! Several stateless replicas on one database, as a Kubernetes Deployment runs them: real
//! daemons behind a small round-robin TCP proxy (standing in for a Service), 16 clients storing
//! and searching through it while a rolling restart replaces each replica in turn — new replica
//! ready, old one out of rotation (the endpoint removal a preStop delay waits for), SIGTERM,
//! drain, exit 0. Zero failed client calls; every acknowledged write is a row, none twice.
//! And replicas starting at once on a fresh database migrate it exactly once.

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/mcp_http.rs"]
mod mcp_http;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use config_core::Environment;
use daemon::{Daemon, Launch, TOKEN, stamped_database};
use pg_harness::TestCluster;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};

const REPLICAS: usize = 3;
const CLIENTS: usize = 16;
/// How long a replica stays up after leaving the rotation, before SIGTERM (the preStop sleep).
const ENDPOINT_DRAIN: Duration = Duration::from_millis(500);

/// A round-robin TCP proxy: each accepted connection goes to the next backend in rotation.
struct Proxy {
    address: SocketAddr,
    backends: Arc<Mutex<Vec<SocketAddr>>>,
}

impl Proxy {
    async fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let backends: Arc<Mutex<Vec<SocketAddr>>> = Arc::default();
        let rotation = backends.clone();
        tokio::spawn(async move {
            let next = AtomicUsize::new(0);
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let backend = {
                    let backends = rotation.lock().unwrap();
                    backends[next.fetch_add(1, Ordering::Relaxed) % backends.len()]
                };
                tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(backend).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Proxy { address, backends }
    }

    fn add(&self, backend: SocketAddr) {
        self.backends.lock().unwrap().push(backend);
    }

    fn remove(&self, backend: SocketAddr) {
        self.backends.lock().unwrap().retain(|b| *b != backend);
    }
}

fn launch(url: &str) -> (Daemon, SocketAddr) {
    let mut daemon = Launch::http(url)
        .env("COGMEM__SERVER__RATE_LIMIT__REQUESTS_PER_MINUTE", "1000000")
        // The machine is shared (2 cores, parallel builds): a slow moment is not a lost call.
        .env("COGMEM__DATABASE__ACQUIRE_TIMEOUT_SECS", "30")
        .spawn();
    let base = daemon.ready();
    let address = base.trim_start_matches("http://").parse().unwrap();
    (daemon, address)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_of_three_replicas_loses_no_call_and_no_write() {
    let database = stamped_database(Environment::Test).await;
    let proxy = Proxy::start().await;
    let mut replicas = Vec::new();
    for _ in 0..REPLICAS {
        let (daemon, address) = launch(&database.url);
        proxy.add(address);
        replicas.push((daemon, address));
    }
    let base = format!("http://{}", proxy.address);

    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let base = base.clone();
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let http = mcp_http::unpooled_client();
            let (mut acked, mut failed, mut calls) = (Vec::new(), Vec::new(), 0);
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let word = format!("rollc{client}n{n}");
                let content = format!("replica turn {word}");
                calls += 1;
                match mcp_http::tool(&http, &base, TOKEN, "store_raw_dialogue",
                    json!({"session_id": format!("roll-{client}"), "speaker": "user", "content": content})).await
                {
                    Ok(result) => acked.push((result["id"].as_i64().unwrap(), content)),
                    Err(err) => failed.push(err),
                }
                calls += 1;
                if let Err(err) =
                    mcp_http::tool(&http, &base, TOKEN, "search_memory", json!({"query": word})).await
                {
                    failed.push(err);
                }
            }
            (acked, failed, calls)
        }));
    }

    // Replace each replica in turn, as a rollout with maxSurge 1 / maxUnavailable 0 does.
    for (index, slot) in replicas.iter_mut().enumerate() {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let (new, new_address) = tokio::task::block_in_place(|| launch(&database.url));
        proxy.add(new_address);
        let (mut old, old_address) = std::mem::replace(slot, (new, new_address));
        proxy.remove(old_address);
        tokio::time::sleep(ENDPOINT_DRAIN).await;
        old.signal("TERM");
        let status = tokio::task::block_in_place(|| old.wait_exit(Duration::from_secs(20)));
        assert!(
            status.success(),
            "replica {index} exited with {status}:\n{}",
            old.stderr()
        );
        for line in old
            .stderr()
            .lines()
            .filter(|l| l.contains("\"ERROR\"") || l.contains("\"WARN\""))
        {
            eprintln!("replica {index}: {line}");
        }
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);

    let (mut acked, mut failed, mut calls) = (Vec::new(), Vec::new(), 0);
    for client in clients {
        let (a, f, c) = client.await.unwrap();
        acked.extend(a);
        failed.extend(f);
        calls += c;
    }
    assert!(
        failed.is_empty(),
        "{} of {calls} calls failed during the rolling restart, e.g. {:?}",
        failed.len(),
        failed.first()
    );
    let pool = sqlx::PgPool::connect(&pg_harness::url_with_tenant(&database.url, "default"))
        .await
        .unwrap();
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, content FROM l0_raw WHERE session_id LIKE 'roll-%'")
            .fetch_all(&pool)
            .await
            .unwrap();
    let contents: HashSet<&str> = rows.iter().map(|(_, c)| c.as_str()).collect();
    assert_eq!(contents.len(), rows.len(), "no content stored twice");
    let stored: HashSet<(i64, String)> = rows.iter().cloned().collect();
    let acknowledged: HashSet<(i64, String)> = acked.iter().cloned().collect();
    assert_eq!(acknowledged.len(), acked.len(), "no id acknowledged twice");
    assert_eq!(
        stored, acknowledged,
        "acknowledged writes are exactly the rows"
    );
    println!(
        "rolling restart of {REPLICAS} replicas under {CLIENTS} clients: {calls} calls, 0 failed, {} writes acknowledged = rows",
        acked.len()
    );
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_and_migrate_jobs_starting_at_once_on_a_fresh_database_migrate_it_once() {
    let cluster = TestCluster::shared();
    let database = cluster.fresh_database().await.unwrap();
    // Three `migrate --stamp` at once (a Job with parallelism, or an init container per pod).
    let root = daemon::config_root();
    let children: Vec<_> = (0..REPLICAS)
        .map(|_| {
            std::process::Command::new(daemon::BIN)
                .env_clear()
                .env("DATABASE_URL", &database.url)
                .args(["--env", "test", "--config-root"])
                .arg(root.path())
                .args(["migrate", "--stamp"])
                .env("MCP_AUTH_TOKEN", TOKEN)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|child| child.wait_with_output().unwrap())
        .collect();
    let mut applied = 0;
    for output in &outputs {
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "migrate --stamp failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        applied += usize::from(stdout.contains("applied V1"));
    }
    assert_eq!(applied, 1, "exactly one process applied the migrations");

    // Three replicas at once (test: auto_migrate) on it: all ready, nothing applied twice.
    let mut replicas: Vec<Daemon> = (0..REPLICAS)
        .map(|_| Launch::http(&database.url).spawn())
        .collect();
    for replica in &mut replicas {
        replica.ready();
    }
    let pool = sqlx::PgPool::connect(&pg_harness::url_with_tenant(&database.url, "default"))
        .await
        .unwrap();
    let versions: Vec<(i32, i64)> = sqlx::query_as(
        "SELECT version, count(*) FROM refinery_schema_history GROUP BY version ORDER BY version",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(!versions.is_empty());
    assert!(versions.iter().all(|(_, n)| *n == 1), "{versions:?}");
    pool.close().await;
}
