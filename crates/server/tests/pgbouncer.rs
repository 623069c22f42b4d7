//! The daemon through Debian's PgBouncer 1.18 in transaction mode — the pooler managed
//! PostgreSQL setups put in front of many replicas. PgBouncer before 1.21 cannot carry named
//! prepared statements across the server connections it multiplexes (`prepared statement
//! "sqlx_s_1" already exists`), and session advisory locks do not hold there. With
//! `database.prepared_statements: false` and `database.migration_url` on the direct server, the
//! full tool set and 32 concurrent clients run with zero errors; with named statements the same
//! load fails, which shows the setting is what makes the difference.
//!
//! PgBouncer is started by the test (config and `auth_file` in a temporary directory, as an
//! unprivileged user when the test runs as root: PgBouncer refuses root). Without the binary
//! the tests print `skipped: …` and pass — unless `COGMEM_REQUIRE_PGBOUNCER=1` (CI).

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/mcp_http.rs"]
mod mcp_http;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use config_core::Environment;
use daemon::{Launch, TOKEN, stamped_database};
use pg_harness::TestCluster;
use serde_json::json;

const CLIENTS: usize = 32;
const CALLS_PER_CLIENT: usize = 6;

fn pgbouncer_binary() -> Option<PathBuf> {
    let found = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.is_file());
    if found.is_none() {
        let reason = "pgbouncer is not installed (apt-get install pgbouncer)";
        if std::env::var_os("COGMEM_REQUIRE_PGBOUNCER").is_some_and(|v| v == "1") {
            panic!("COGMEM_REQUIRE_PGBOUNCER=1 but {reason}");
        }
        eprintln!("skipped: {reason}");
    }
    found
}

/// A running PgBouncer in transaction mode in front of the test cluster.
struct Bouncer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The unprivileged account to run PgBouncer as when we are root (uid, gid).
fn unprivileged() -> Option<(u32, u32)> {
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    ["postgres", "nobody"].iter().find_map(|name| {
        let line = passwd
            .lines()
            .find(|l| l.starts_with(&format!("{name}:")))?;
        let fields: Vec<&str> = line.split(':').collect();
        Some((fields[2].parse().ok()?, fields[3].parse().ok()?))
    })
}

fn start_bouncer(
    binary: &Path,
    server_port: u16,
    user: &str,
    password: &str,
    pool_size: u32,
) -> Bouncer {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ini = format!(
        "[databases]\n* = host=127.0.0.1 port={server_port}\n\n[pgbouncer]\n\
         listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
         auth_type = scram-sha-256\nauth_file = {auth}\npool_mode = transaction\n\
         default_pool_size = {pool_size}\nmax_client_conn = 200\n\
         ignore_startup_parameters = extra_float_digits\n",
        auth = dir.path().join("userlist.txt").display()
    );
    std::fs::write(dir.path().join("pgbouncer.ini"), ini).unwrap();
    std::fs::write(
        dir.path().join("userlist.txt"),
        format!("\"{user}\" \"{password}\"\n"),
    )
    .unwrap();
    let mut command = Command::new(binary);
    command
        .arg(dir.path().join("pgbouncer.ini"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some((uid, gid)) = unprivileged() {
        for entry in ["", "pgbouncer.ini", "userlist.txt"] {
            let mode = if entry.is_empty() { 0o755 } else { 0o644 };
            std::fs::set_permissions(
                dir.path().join(entry),
                std::fs::Permissions::from_mode(mode),
            )
            .unwrap();
        }
        command.uid(uid).gid(gid);
    }
    let mut child = command.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("ERROR") || line.contains("FATAL") || line.contains("WARNING") {
                eprintln!("pgbouncer: {line}");
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "pgbouncer did not listen");
        assert!(child.try_wait().unwrap().is_none(), "pgbouncer exited");
        std::thread::sleep(Duration::from_millis(50));
    }
    Bouncer {
        child,
        port,
        _dir: dir,
    }
}

/// `user`, `password` from a test database URL.
fn credentials(url: &str) -> (String, String) {
    let url = url::Url::parse(url).unwrap();
    (
        url.username().to_owned(),
        url.password().unwrap().to_owned(),
    )
}

/// The same URL with the port replaced by PgBouncer's.
fn through(url: &str, port: u16) -> String {
    let mut url = url::Url::parse(url).unwrap();
    url.set_port(Some(port)).unwrap();
    url.to_string()
}

/// `CLIENTS` concurrent clients, each storing turns and insights and searching, reading its
/// session and the status; the error texts.
async fn load(base: &str, label: &str, rounds: usize) -> (usize, Vec<String>) {
    let http = reqwest::Client::new();
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let http = http.clone();
        let base = base.to_owned();
        let session = format!("{label}-{client}");
        let label = label.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            let mut calls = 0;
            for call in 0..rounds {
                let word = format!("bouncer{label}{client}x{call}");
                let outcomes = [
                    mcp_http::tool(&http, &base, TOKEN, "store_raw_dialogue",
                        json!({"session_id": session, "speaker": "user", "content": format!("turn {word}")})).await,
                    mcp_http::tool(&http, &base, TOKEN, "search_memory",
                        json!({"query": word})).await,
                    mcp_http::tool(&http, &base, TOKEN, "memory_status", json!({})).await,
                ];
                for outcome in outcomes {
                    calls += 1;
                    if let Err(err) = outcome {
                        errors.push(err);
                    }
                }
            }
            (calls, errors)
        }));
    }
    let mut calls = 0;
    let mut errors = Vec::new();
    for task in tasks {
        let (n, e) = task.await.unwrap();
        calls += n;
        errors.extend(e);
    }
    (calls, errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_full_tool_set_and_32_clients_run_without_errors_through_pgbouncer_transaction_mode() {
    let Some(binary) = pgbouncer_binary() else {
        return;
    };
    let cluster = TestCluster::shared();
    let database = stamped_database(Environment::Test).await;
    let (user, password) = credentials(&database.url);
    let bouncer = start_bouncer(&binary, cluster.port(), &user, &password, 4);
    let pooled = through(&database.url, bouncer.port);

    let mut daemon = Launch::http(&pooled)
        .env("COGMEM__DATABASE__MIGRATION_URL", &database.url)
        .env("COGMEM__DATABASE__PREPARED_STATEMENTS", "false")
        .env("COGMEM__SERVER__RATE_LIMIT__REQUESTS_PER_MINUTE", "1000000")
        .spawn();
    let base = daemon.ready();
    let http = reqwest::Client::new();

    // Every tool and resource once, in an order that exercises each path.
    let stored = mcp_http::tool(&http, &base, TOKEN, "store_raw_dialogue",
        json!({"session_id": "full", "speaker": "user", "content": "the pooler keeps lanterns lit"}))
        .await
        .unwrap();
    let turn = stored["id"].as_i64().unwrap();
    let insight = mcp_http::tool(&http, &base, TOKEN, "store_insight",
        json!({"content": "lanterns need the pooler", "source_ids": [turn], "tags": ["pool"], "importance": 0.5}))
        .await
        .unwrap();
    let found = mcp_http::tool(
        &http,
        &base,
        TOKEN,
        "search_memory",
        json!({"query": "lanterns"}),
    )
    .await
    .unwrap();
    assert_eq!(found["hits"].as_array().unwrap().len(), 2, "{found}");
    let session = mcp_http::tool(
        &http,
        &base,
        TOKEN,
        "get_session",
        json!({"session_id": "full"}),
    )
    .await
    .unwrap();
    assert_eq!(session["turns"].as_array().unwrap().len(), 1);
    let status = mcp_http::tool(&http, &base, TOKEN, "memory_status", json!({}))
        .await
        .unwrap();
    assert_eq!(
        status["database"].as_str(),
        Some(database.name.as_str()),
        "{status}"
    );
    for uri in [
        "memory://status",
        "memory://sessions/full",
        "memory://insights/recent",
    ] {
        let read = mcp_http::call(
            &http,
            &base,
            TOKEN,
            "resources/read",
            Some(uri),
            json!({"uri": uri}),
        )
        .await
        .unwrap_or_else(|err| panic!("{uri}: {err}"));
        assert!(read["contents"][0]["text"].is_string(), "{uri}: {read}");
    }
    let forgotten = mcp_http::tool(
        &http,
        &base,
        TOKEN,
        "forget",
        json!({"items": [{"layer": "insight", "id": insight["id"]}]}),
    )
    .await
    .unwrap();
    assert_eq!(
        forgotten["insights_deleted"].as_u64(),
        Some(1),
        "{forgotten}"
    );
    let forgotten = mcp_http::tool(&http, &base, TOKEN, "forget", json!({"session_id": "full"}))
        .await
        .unwrap();
    assert_eq!(forgotten["raw_deleted"].as_u64(), Some(1), "{forgotten}");

    let (calls, errors) = load(&base, "unnamed", CALLS_PER_CLIENT).await;
    assert_eq!(calls, CLIENTS * CALLS_PER_CLIENT * 3);
    assert!(
        errors.is_empty(),
        "{} of {calls} calls failed through PgBouncer, e.g. {:?}\nstderr:\n{}",
        errors.len(),
        errors.first(),
        daemon.stderr()
    );
    println!(
        "through PgBouncer 1.18 (transaction mode, pool of 4): {calls} calls by {CLIENTS} clients, 0 errors"
    );
    daemon.signal("TERM");
    assert!(daemon.wait_exit(Duration::from_secs(20)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn named_statements_fail_through_pgbouncer_transaction_mode() {
    let Some(binary) = pgbouncer_binary() else {
        return;
    };
    let cluster = TestCluster::shared();
    let database = stamped_database(Environment::Test).await;
    let (user, password) = credentials(&database.url);
    let bouncer = start_bouncer(&binary, cluster.port(), &user, &password, 4);
    let mut daemon = Launch::http(&through(&database.url, bouncer.port))
        .env("COGMEM__DATABASE__MIGRATION_URL", &database.url)
        .env("COGMEM__SERVER__RATE_LIMIT__REQUESTS_PER_MINUTE", "1000000")
        // Long enough that a loaded machine's pool waits do not pass for collisions.
        .env("COGMEM__DATABASE__ACQUIRE_TIMEOUT_SECS", "10")
        .spawn();
    let base = daemon.ready();
    let (calls, errors) = load(&base, "named", 1).await;
    assert!(
        !errors.is_empty(),
        "named statements through transaction pooling should have collided in {calls} calls"
    );
    daemon.signal("TERM");
    let _ = daemon.wait_exit(Duration::from_secs(20));
    let stderr = daemon.stderr();
    assert!(
        stderr.contains("prepared statement"),
        "the failures should be prepared-statement collisions; stderr:\n{stderr}"
    );
    println!(
        "with database.prepared_statements: true, {} of {calls} calls failed through PgBouncer, e.g. {:?}",
        errors.len(),
        errors.first()
    );
}

/// A search over both layers takes one server connection of the pooler, never a second while
/// it holds the first: behind PgBouncer in transaction mode an idle connection of our pool
/// does not mean a server connection is free, and a second `BEGIN` would wait for the one the
/// search holds. With a pool of one server connection that wait never ends; with more, as many
/// concurrent searches as server connections wait for each other (requests timing out with
/// 408 under the load test above, before the fix).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_over_both_layers_holds_one_pooler_connection() {
    use cognitive_memory_mcp::memory::{
        MemoryLimits, MemoryStore, SearchMemory, Speaker, StoreInsight, StoreRawDialogue,
    };
    let Some(binary) = pgbouncer_binary() else {
        return;
    };
    let cluster = TestCluster::shared();
    let database = cluster.fresh_database().await.unwrap();
    let direct = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&database.url)
        .await
        .unwrap();
    db::migrate(&direct).await.unwrap();
    direct.close().await;
    let (user, password) = credentials(&database.url);
    let bouncer = start_bouncer(&binary, cluster.port(), &user, &password, 1);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&through(&database.url, bouncer.port))
        .await
        .unwrap();
    // Two client connections open and idle, so a second one is there to be taken.
    let (a, b) = (pool.acquire().await.unwrap(), pool.acquire().await.unwrap());
    drop((a, b));
    // Connections go back to the pool in a task of their own.
    let deadline = Instant::now() + Duration::from_secs(5);
    while pool.num_idle() < 2 {
        assert!(Instant::now() < deadline, "{} idle", pool.num_idle());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let limits = MemoryLimits {
        max_content_bytes: 4096,
        default_limit: 5,
        max_limit: 50,
    };
    let store = MemoryStore::new(pool, limits).with_prepared_statements(false);
    let tenant = cognitive_memory_mcp::tenancy::Tenant::default();
    store
        .store_raw(
            &tenant,
            StoreRawDialogue {
                session_id: "s".to_owned(),
                speaker: Speaker::User,
                content: "the durian smells".to_owned(),
                metadata: None,
            },
        )
        .await
        .unwrap();
    store
        .store_insight(
            &tenant,
            StoreInsight {
                content: "durian is a fruit".to_owned(),
                source_ids: None,
                tags: None,
                importance: None,
            },
        )
        .await
        .unwrap();
    let search = SearchMemory {
        query: "durian".to_owned(),
        limit: None,
        layer: None,
        session_id: None,
    };
    let found = tokio::time::timeout(Duration::from_secs(10), store.search(&tenant, search))
        .await
        .expect("a search through a pooler with one server connection must not wait for a second")
        .unwrap();
    assert_eq!(found.hits.len(), 2, "{:?}", found.hits);
}
