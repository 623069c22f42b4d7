//! Tenants isolated by PostgreSQL row-level security (issue #12, migration V7), against a real
//! cluster (pg-harness): plain SQL as the server's own login role (the tables' owner), every
//! tool and resource through a real MCP client on two servers of two tenants sharing one
//! database, a populated V1 database migrated to the head, and the lifecycle across tenants.

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/mcp_client.rs"]
mod mcp_client;

use std::sync::Arc;
use std::time::Duration;

use cognitive_memory_mcp::app::AppState;
use cognitive_memory_mcp::auth::{Principal, Scopes};
use cognitive_memory_mcp::health::Health;
use cognitive_memory_mcp::lifecycle::retention::{self, Policy};
use cognitive_memory_mcp::mcp::MemoryServer;
use cognitive_memory_mcp::memory::{
    GetSession, MemoryLimits, MemoryStore, SearchMemory, Speaker, StoreInsight, StoreRawDialogue,
};
use cognitive_memory_mcp::tenancy::Tenant;
use config_core::Environment;
use pg_harness::{TestCluster, TestDatabase};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ProtocolVersion, ReadResourceRequestParams,
};
use rmcp::service::RunningService;
use rmcp::{ClientServiceExt, RoleClient, ServiceExt};
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};

const LIMITS: MemoryLimits = MemoryLimits {
    max_content_bytes: 4096,
    default_limit: 10,
    max_limit: 50,
};

fn tenant(name: &str) -> Tenant {
    Tenant::new(name).unwrap()
}

/// A pool of the database's own login role (the owner of every table), no tenant set.
async fn owner_pool(database: &TestDatabase) -> PgPool {
    PgPoolOptions::new()
        .max_connections(4)
        .connect(&database.url)
        .await
        .unwrap()
}

async fn migrated() -> (TestDatabase, PgPool) {
    let database = TestCluster::shared().fresh_database().await.unwrap();
    let pool = owner_pool(&database).await;
    db::migrate(&pool).await.unwrap();
    (database, pool)
}

fn turn(session: &str, content: &str) -> StoreRawDialogue {
    StoreRawDialogue {
        session_id: session.to_owned(),
        speaker: Speaker::User,
        content: content.to_owned(),
        metadata: None,
    }
}

fn insight(content: &str, sources: &[i64]) -> StoreInsight {
    StoreInsight {
        content: content.to_owned(),
        source_ids: Some(sources.to_vec()),
        tags: None,
        importance: None,
    }
}

async fn scalar_i64(conn: &mut PgConnection, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(conn).await.unwrap()
}

async fn rows_affected(conn: &mut PgConnection, sql: &'static str, id: i64) -> u64 {
    sqlx::query(sql)
        .bind(id)
        .execute(conn)
        .await
        .unwrap()
        .rows_affected()
}

#[tokio::test]
async fn in_sql_the_login_role_sees_only_the_tenant_it_sets() {
    let (database, pool) = migrated().await;
    let store = MemoryStore::new(pool.clone(), LIMITS);
    let a = tenant("alpha");
    let a_turn = store
        .store_raw(&a, turn("s", "alpha secret kiwi"))
        .await
        .unwrap()
        .id;
    let a_insight = store
        .store_insight(&a, insight("alpha insight kiwi", &[a_turn]))
        .await
        .unwrap()
        .id;

    let role = db::role_attributes(&pool).await.unwrap();
    assert!(
        !role.superuser && !role.bypass_rls,
        "the test must run as an ordinary role: {role}"
    );
    let state = db::tenancy_state(&pool).await.unwrap();
    assert!(state.enforced(), "{state}");

    let mut conn = PgConnection::connect(&database.url).await.unwrap();
    // No tenant set: nothing visible, nothing changes, nothing can be inserted.
    for sql in [
        "SELECT count(*) FROM l0_raw",
        "SELECT count(*) FROM l2_insights",
        "SELECT count(*) FROM search_postings",
    ] {
        assert_eq!(
            scalar_i64(&mut conn, sql).await,
            0,
            "{sql} without a tenant"
        );
    }
    assert_eq!(
        rows_affected(
            &mut conn,
            "UPDATE l0_raw SET content = 'x' WHERE id = $1",
            a_turn
        )
        .await,
        0
    );
    assert_eq!(
        rows_affected(
            &mut conn,
            "DELETE FROM l2_insights WHERE id = $1",
            a_insight
        )
        .await,
        0
    );
    let insert = sqlx::query(
        "INSERT INTO l0_raw (session_id, speaker, content) VALUES ('s', 'user', 'no tenant')",
    )
    .execute(&mut conn)
    .await;
    assert!(insert.is_err(), "an insert without a tenant succeeded");
    let insert = sqlx::query("INSERT INTO l0_raw (tenant, session_id, speaker, content) VALUES ('alpha', 's', 'user', 'named')")
        .execute(&mut conn)
        .await;
    assert!(
        insert.is_err(),
        "an insert naming a tenant it is not set to succeeded"
    );
    // Turning row security off does not bypass the policies; it refuses the statement.
    sqlx::query("SET row_security = off")
        .execute(&mut conn)
        .await
        .unwrap();
    assert!(
        sqlx::query("SELECT count(*) FROM l0_raw")
            .execute(&mut conn)
            .await
            .is_err()
    );
    sqlx::query("RESET row_security")
        .execute(&mut conn)
        .await
        .unwrap();

    // Tenant B: sees only its own rows, cannot change A's, cannot write as A.
    sqlx::query("SELECT set_config('app.tenant', 'beta', false)")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        scalar_i64(&mut conn, "SELECT count(*) FROM l0_raw").await,
        0
    );
    assert_eq!(
        scalar_i64(&mut conn, "SELECT count(*) FROM search_postings").await,
        0
    );
    let b_turn: i64 = sqlx::query_scalar(
        "INSERT INTO l0_raw (session_id, speaker, content) VALUES ('s', 'user', 'beta kiwi') RETURNING id",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        scalar_i64(&mut conn, "SELECT count(*) FROM l0_raw").await,
        1,
        "B sees its own row"
    );
    assert_eq!(
        rows_affected(
            &mut conn,
            "UPDATE l0_raw SET content = 'x' WHERE id = $1",
            a_turn
        )
        .await,
        0
    );
    assert_eq!(
        rows_affected(&mut conn, "DELETE FROM l0_raw WHERE id = $1", a_turn).await,
        0
    );
    assert_eq!(
        rows_affected(
            &mut conn,
            "UPDATE l2_insights SET content = 'x' WHERE id = $1",
            a_insight
        )
        .await,
        0
    );
    assert!(
        sqlx::query("UPDATE l0_raw SET tenant = 'alpha' WHERE id = $1")
            .bind(b_turn)
            .execute(&mut conn)
            .await
            .is_err(),
        "B moved its row to A"
    );
    assert!(
        sqlx::query("INSERT INTO l2_insights (tenant, content) VALUES ('alpha', 'forged')")
            .execute(&mut conn)
            .await
            .is_err(),
        "B wrote an insight as A"
    );
    // A's rows are untouched.
    sqlx::query("SELECT set_config('app.tenant', 'alpha', false)")
        .execute(&mut conn)
        .await
        .unwrap();
    let content: String = sqlx::query_scalar("SELECT content FROM l0_raw WHERE id = $1")
        .bind(a_turn)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(content, "alpha secret kiwi");
    assert_eq!(
        scalar_i64(&mut conn, "SELECT count(*) FROM l2_insights").await,
        1
    );
    let tenants: Vec<String> =
        sqlx::query_scalar("SELECT tenant FROM memory_tenants ORDER BY tenant")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(tenants, ["alpha", "beta"]);
}

type Client = RunningService<RoleClient, ()>;

/// An MCP client of a server serving `tenant` over `pool`.
async fn client_of(pool: &PgPool, tenant: Tenant) -> Client {
    let app = Arc::new(AppState::new(
        Environment::Test,
        MemoryStore::new(pool.clone(), LIMITS),
        Arc::new(Health::new(Environment::Test)),
        false,
    ));
    // As a stdio session serving `tenant` (`memory.tenant`) with every scope.
    let principal = Principal::new("test", tenant, Scopes::ALL);
    let (server_side, client_side) = tokio::io::duplex(1 << 20);
    tokio::spawn(async move {
        let running = MemoryServer::stdio(app, principal)
            .serve(server_side)
            .await
            .unwrap();
        let _ = running.waiting().await;
    });
    ().serve_with_lifecycle(
        client_side,
        mcp_client::lifecycle(&ProtocolVersion::V_2026_07_28),
    )
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

async fn ok(client: &Client, tool: &str, arguments: Value) -> Value {
    let result = call(client, tool, arguments).await;
    assert_ne!(result.is_error, Some(true), "{tool}: {:?}", result.content);
    result.structured_content.expect("structured content")
}

async fn read(client: &Client, uri: &str) -> Value {
    let result = client
        .read_resource(ReadResourceRequestParams::new(uri))
        .await
        .unwrap_or_else(|err| panic!("{uri}: {err}"));
    match &result.contents[0] {
        rmcp::model::ResourceContents::TextResourceContents { text, .. } => {
            serde_json::from_str(text).unwrap()
        }
        other => panic!("not text: {other:?}"),
    }
}

fn ids(values: &Value, list: &str) -> Vec<i64> {
    values[list]
        .as_array()
        .unwrap_or_else(|| panic!("no {list} in {values}"))
        .iter()
        .map(|v| v["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn no_tool_or_resource_of_one_tenant_shows_another_tenants_memories() {
    let database = daemon::stamped_database(Environment::Test).await;
    let pool = owner_pool(&database).await;
    db::migrate(&pool).await.unwrap();
    let a = client_of(&pool, tenant("alpha")).await;
    let b = client_of(&pool, tenant("beta")).await;

    // A stores turns in a session whose id B uses too, and an insight citing them.
    let mut a_turns = Vec::new();
    for content in ["alpha papaya one", "alpha papaya two"] {
        let stored = ok(
            &a,
            "store_raw_dialogue",
            json!({"session_id": "shared", "speaker": "user", "content": content}),
        )
        .await;
        a_turns.push(stored["id"].as_i64().unwrap());
    }
    let a_insight = ok(
        &a,
        "store_insight",
        json!({"content": "alpha papaya insight", "source_ids": a_turns}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let b_turn = ok(
        &b,
        "store_raw_dialogue",
        json!({"session_id": "shared", "speaker": "user", "content": "beta mango"}),
    )
    .await["id"]
        .as_i64()
        .unwrap();

    // Every read of B: none of A's memories.
    for query in [
        "papaya",
        "papaya or mango",
        "\"alpha papaya\"",
        "alpha papaya",
    ] {
        let hits = ok(&b, "search_memory", json!({"query": query})).await;
        let found = ids(&hits, "hits");
        assert!(
            found.iter().all(|id| *id == b_turn),
            "B's search {query:?} found {found:?}"
        );
    }
    let session = ok(&b, "get_session", json!({"session_id": "shared"})).await;
    assert_eq!(ids(&session, "turns"), [b_turn]);
    let session = read(&b, "memory://sessions/shared").await;
    assert_eq!(ids(&session, "turns"), [b_turn]);
    let recent = read(&b, "memory://insights/recent").await;
    assert_eq!(recent.as_array().map(Vec::len), Some(0), "{recent}");
    for status in [
        ok(&b, "memory_status", json!({})).await,
        read(&b, "memory://status").await,
    ] {
        assert_eq!(status["tenant"], "beta", "{status}");
        assert_eq!(
            (status["raw_turns"].as_u64(), status["insights"].as_u64()),
            (Some(1), Some(0)),
            "{status}"
        );
        assert_eq!(status["row_level_security"], true, "{status}");
    }

    // Writes of B cannot reach A's memories.
    let cite = call(
        &b,
        "store_insight",
        json!({"content": "beta citing alpha", "source_ids": [a_turns[0]]}),
    )
    .await;
    assert_eq!(cite.is_error, Some(true), "B cited A's turn");
    let forgot = ok(
        &b,
        "forget",
        json!({"items": [
            {"layer": "raw", "id": a_turns[0]},
            {"layer": "insight", "id": a_insight}
        ]}),
    )
    .await;
    assert_eq!(
        (
            forgot["raw_deleted"].as_u64(),
            forgot["insights_deleted"].as_u64()
        ),
        (Some(0), Some(0)),
        "{forgot}"
    );
    assert_eq!(forgot["not_found"].as_array().map(Vec::len), Some(2));
    let forgot = ok(&b, "forget", json!({"session_id": "shared"})).await;
    assert_eq!(forgot["raw_deleted"], 1, "{forgot}");

    // A still holds everything, and sees none of B's.
    let session = ok(&a, "get_session", json!({"session_id": "shared"})).await;
    assert_eq!(ids(&session, "turns"), a_turns);
    let hits = ok(&a, "search_memory", json!({"query": "papaya"})).await;
    assert_eq!(hits["hits"].as_array().map(Vec::len), Some(3), "{hits}");
    let recent = read(&a, "memory://insights/recent").await;
    assert_eq!(recent[0]["id"], a_insight);
    assert_eq!(recent[0]["source_ids"], json!(a_turns));
    let status = ok(&a, "memory_status", json!({})).await;
    assert_eq!(status["tenant"], "alpha");
    assert_eq!(
        (status["raw_turns"].as_u64(), status["insights"].as_u64()),
        (Some(2), Some(1))
    );
    let mango = ok(&a, "search_memory", json!({"query": "mango"})).await;
    assert_eq!(mango["hits"].as_array().map(Vec::len), Some(0), "{mango}");
    a.cancel().await.unwrap();
    b.cancel().await.unwrap();
}

/// The store with unnamed statements (a transaction per lease, as behind PgBouncer in
/// transaction mode) keeps the tenants apart the same way, on a pool of one connection that
/// every call of both tenants shares.
#[tokio::test]
async fn one_shared_connection_never_carries_a_tenant_into_another_tenants_call() {
    let (database, _pool) = migrated().await;
    for named in [true, false] {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(&database.url)
            .await
            .unwrap();
        let store = MemoryStore::new(pool, LIMITS).with_prepared_statements(named);
        let (a, b) = (tenant(&format!("a-{named}")), tenant(&format!("b-{named}")));
        for round in 0..3 {
            store
                .store_raw(&a, turn("s", &format!("apple round {round}")))
                .await
                .unwrap();
            let seen = store
                .get_session(
                    &b,
                    GetSession {
                        session_id: "s".to_owned(),
                        limit: None,
                        before_id: None,
                    },
                )
                .await
                .unwrap();
            assert!(seen.turns.is_empty(), "named={named}: B saw {seen:?}");
            let hits = store
                .search(
                    &b,
                    SearchMemory {
                        query: "apple".to_owned(),
                        limit: None,
                        layer: None,
                        session_id: None,
                    },
                )
                .await
                .unwrap();
            assert!(hits.hits.is_empty(), "named={named}: B found {hits:?}");
            assert_eq!(store.status(&b).await.unwrap().raw_turns, 0);
            assert_eq!(
                store.status(&a).await.unwrap().raw_turns,
                round + 1,
                "named={named}"
            );
        }
    }
}

#[tokio::test]
async fn a_populated_v1_database_keeps_every_row_as_tenant_default() {
    let cluster = TestCluster::shared();
    // What the refinery history of V1 looks like, from a database migrated by this build.
    let (_reference, reference_pool) = migrated().await;
    let (checksum, applied_on): (String, String) = sqlx::query_as(
        "SELECT checksum, applied_on FROM refinery_schema_history WHERE version = 1",
    )
    .fetch_one(&reference_pool)
    .await
    .unwrap();

    let database = cluster.fresh_database().await.unwrap();
    let mut conn = PgConnection::connect(&database.url).await.unwrap();
    sqlx::raw_sql(include_str!("../../../migrations/V1__initial_schema.sql"))
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::raw_sql(
        "CREATE TABLE refinery_schema_history (version int4 PRIMARY KEY, name varchar(255), applied_on varchar(255), checksum varchar(255))",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query("INSERT INTO refinery_schema_history VALUES (1, 'initial_schema', $1, $2)")
        .bind(&applied_on)
        .bind(&checksum)
        .execute(&mut conn)
        .await
        .unwrap();
    // A V1 database in use: 300 turns in 3 sessions, 20 insights citing them.
    sqlx::raw_sql(
        "INSERT INTO l0_raw (session_id, speaker, content, created_at)
         SELECT 'v1-' || (g % 3), 'user', 'legacy turn ' || g || ' is about the durian', now() - g * interval '1 minute'
         FROM generate_series(1, 300) g;
         INSERT INTO l2_insights (content, source_ids, tags)
         SELECT 'legacy insight ' || g || ' is about the durian', ARRAY[g, g + 1]::bigint[], ARRAY['v1']
         FROM generate_series(1, 20) g;",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();

    let pool = owner_pool(&database).await;
    let report = db::migrate(&pool).await.unwrap();
    let db::MigrationReport::Applied(applied) = report else {
        panic!("V1 database had nothing to apply")
    };
    assert_eq!(
        applied.iter().map(|m| m.version).collect::<Vec<_>>(),
        [2, 3, 6, 7, 8, 9, 10, 11, 12, 13]
    );

    // Every row kept, every row tenant `default` (counted as the superuser, who sees all).
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&database.admin_url)
        .await
        .unwrap();
    let counts: (i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM l0_raw), (SELECT count(*) FROM l0_raw WHERE tenant = 'default'),
                (SELECT count(*) FROM l2_insights), (SELECT count(*) FROM l2_insights WHERE tenant = 'default'),
                (SELECT count(*) FROM search_postings WHERE tenant <> 'default')",
    )
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(counts, (300, 300, 20, 20, 0));
    // V12's pairs of the rows stored before it, in both layers (its backfill is not hidden
    // by the FORCEd policies), once each.
    let pairs: (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE layer = 'r'), count(*) FILTER (WHERE layer = 'i'),
                count(DISTINCT (layer, id)) FROM search_postings WHERE lexeme = 'about the'",
    )
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(pairs, (300, 20, 320));

    // The schema check: the migrated database has the schema of a fresh one.
    let migrated = db::fingerprint(&pool).await.unwrap();
    let fresh = db::fingerprint(&reference_pool).await.unwrap();
    assert!(
        db::diff(&migrated, &fresh).is_empty(),
        "{:?}",
        db::diff(&migrated, &fresh)
    );
    assert_eq!(migrated.hash, fresh.hash);
    assert!(db::pending(&pool).await.unwrap().is_empty());
    assert!(db::tenancy_state(&pool).await.unwrap().enforced());

    // And the old memories serve tenant `default`.
    let store = MemoryStore::new(pool.clone(), LIMITS);
    let default = Tenant::default();
    let status = store.status(&default).await.unwrap();
    assert_eq!((status.raw_turns, status.insights), (300, 20));
    let page = store
        .get_session(
            &default,
            GetSession {
                session_id: "v1-1".to_owned(),
                limit: Some(50),
                before_id: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.turns.len(), 50);
    let hits = store
        .search(
            &default,
            SearchMemory {
                query: "durian".to_owned(),
                limit: Some(50),
                layer: None,
                session_id: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(hits.hits.len(), 50);
    assert_eq!(store.status(&tenant("other")).await.unwrap().raw_turns, 0);
}

#[tokio::test]
async fn retention_expires_the_memories_of_every_tenant() {
    let (database, pool) = migrated().await;
    let store = MemoryStore::new(pool.clone(), LIMITS);
    let tenants = [tenant("alpha"), tenant("beta"), Tenant::default()];
    for t in &tenants {
        store.store_raw(t, turn("s", "fresh turn")).await.unwrap();
        store
            .store_insight(t, insight("fresh insight", &[]))
            .await
            .unwrap();
        // Old rows, written as the tenant itself.
        let mut conn =
            PgConnection::connect(&pg_harness::url_with_tenant(&database.url, t.as_str()))
                .await
                .unwrap();
        sqlx::raw_sql(
            "INSERT INTO l0_raw (session_id, speaker, content, created_at)
             SELECT 's', 'user', 'old turn', now() - interval '40 days' FROM generate_series(1, 5);
             INSERT INTO l2_insights (content, created_at)
             SELECT 'old insight', now() - interval '40 days' FROM generate_series(1, 3);",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let policy = Policy {
        raw_days: 30,
        insight_days: 30,
        interval: Duration::from_secs(3600),
        batch_size: 2,
        batch_pause: Duration::ZERO,
    };
    let purged = retention::run_once(&pool, &policy).await.unwrap();
    assert!(!purged.yielded);
    assert_eq!((purged.raw_deleted, purged.insights_deleted), (15, 9));
    for t in &tenants {
        let status = store.status(t).await.unwrap();
        assert_eq!((status.raw_turns, status.insights), (1, 1), "tenant {t}");
    }
}

/// Runs the binary as an operator would; `backup_url` becomes `backup.database_url`.
fn cli(
    root: &std::path::Path,
    url: &str,
    backup_url: Option<&str>,
    args: &[&str],
    input: Option<&[u8]>,
) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut command = Command::new(daemon::BIN);
    command
        .args(["--env", "test", "--config-root"])
        .arg(root)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", url)
        .env("MCP_AUTH_TOKEN", daemon::TOKEN)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(backup_url) = backup_url {
        command.env("COGMEM__BACKUP__DATABASE_URL", backup_url);
    }
    let mut child = command.spawn().unwrap();
    if let Some(input) = input {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn text(output: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn lifecycle_per_tenant_export_import_and_backup_restore_keep_both_tenants() {
    let database = daemon::stamped_database(Environment::Test).await;
    let pool = owner_pool(&database).await;
    db::migrate(&pool).await.unwrap();
    let store = MemoryStore::new(pool.clone(), LIMITS);
    let (alpha, beta) = (tenant("alpha"), tenant("beta"));
    let mut alpha_turns = Vec::new();
    for n in 0..3 {
        alpha_turns.push(
            store
                .store_raw(&alpha, turn("a-session", &format!("alpha lychee {n}")))
                .await
                .unwrap()
                .id,
        );
    }
    store
        .store_insight(&alpha, insight("alpha lychee insight", &alpha_turns))
        .await
        .unwrap();
    for n in 0..2 {
        store
            .store_raw(&beta, turn("b-session", &format!("beta quince {n}")))
            .await
            .unwrap();
    }

    // A backup role as setup-db creates it: BYPASSRLS, reads every table, nothing else.
    let backup_url = TestCluster::shared().backup_role(&database).await.unwrap();
    let root = daemon::config_root();
    let dir = root.path().join("backups");
    let dir_arg = dir.to_string_lossy().into_owned();

    // Without it, the login role cannot dump the tables under row-level security: a clear
    // failure, never a backup without the memories.
    let refused = cli(
        root.path(),
        &database.url,
        None,
        &["backup", "--to", &dir_arg],
        None,
    );
    assert_ne!(refused.status.code(), Some(0), "{}", text(&refused));
    assert!(
        text(&refused).contains("backup.database_url"),
        "{}",
        text(&refused)
    );

    let backup = cli(
        root.path(),
        &database.url,
        Some(&backup_url),
        &["backup", "--to", &dir_arg],
        None,
    );
    assert_eq!(backup.status.code(), Some(0), "{}", text(&backup));
    let dump = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "dump"))
        .expect("a dump");
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(dump.with_extension("manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["row_counts"]["l0_raw"], 5, "{manifest}");
    assert_eq!(manifest["row_counts"]["l2_insights"], 1, "{manifest}");

    // Export: one tenant per file, the default tenant unless --tenant names another.
    let export = cli(
        root.path(),
        &database.url,
        None,
        &["export", "--tenant", "alpha"],
        None,
    );
    assert_eq!(export.status.code(), Some(0), "{}", text(&export));
    let exported = String::from_utf8(export.stdout).unwrap();
    assert_eq!(exported.lines().count(), 1 + 3 + 1 + 1, "{exported}");
    let header: Value = serde_json::from_str(exported.lines().next().unwrap()).unwrap();
    assert_eq!(header["tenant"], "alpha");
    assert!(!exported.contains("quince"), "{exported}");
    let default_export = cli(root.path(), &database.url, None, &["export"], None);
    assert_eq!(
        String::from_utf8_lossy(&default_export.stdout)
            .lines()
            .count(),
        2,
        "{}",
        text(&default_export)
    );

    // Import refuses another tenant's file before anything is written...
    let wrong = cli(
        root.path(),
        &database.url,
        None,
        &["import", "--tenant", "beta"],
        Some(exported.as_bytes()),
    );
    assert_eq!(wrong.status.code(), Some(78), "{}", text(&wrong));
    assert!(
        text(&wrong).contains("--from-tenant alpha"),
        "{}",
        text(&wrong)
    );
    let mismatch = cli(
        root.path(),
        &database.url,
        None,
        &["import", "--tenant", "beta", "--from-tenant", "gamma"],
        Some(exported.as_bytes()),
    );
    assert_eq!(mismatch.status.code(), Some(78), "{}", text(&mismatch));
    assert_eq!(store.status(&beta).await.unwrap().raw_turns, 2);
    // ... and takes it on purpose, into that tenant only.
    let moved = cli(
        root.path(),
        &database.url,
        None,
        &["import", "--tenant", "beta", "--from-tenant", "alpha"],
        Some(exported.as_bytes()),
    );
    assert_eq!(moved.status.code(), Some(0), "{}", text(&moved));
    let status = store.status(&beta).await.unwrap();
    assert_eq!((status.raw_turns, status.insights), (5, 1));
    assert_eq!(store.status(&alpha).await.unwrap().raw_turns, 3);

    // Restore: refused while the database holds memories (of any tenant), then both tenants
    // come back as the backup holds them.
    let dump_arg = dump.to_string_lossy().into_owned();
    let held = cli(
        root.path(),
        &database.url,
        None,
        &["restore", "--from", &dump_arg],
        None,
    );
    assert_eq!(held.status.code(), Some(78), "{}", text(&held));
    assert!(text(&held).contains("8 turns"), "{}", text(&held));
    let restored = cli(
        root.path(),
        &database.url,
        None,
        &["restore", "--from", &dump_arg, "--replace"],
        None,
    );
    assert_eq!(restored.status.code(), Some(0), "{}", text(&restored));
    pool.close().await;
    let pool = owner_pool(&database).await;
    let store = MemoryStore::new(pool.clone(), LIMITS);
    let a = store.status(&alpha).await.unwrap();
    let b = store.status(&beta).await.unwrap();
    assert_eq!(
        (a.raw_turns, a.insights, b.raw_turns, b.insights),
        (3, 1, 2, 0)
    );
    assert!(a.row_level_security);
    assert!(db::tenancy_state(&pool).await.unwrap().enforced());
    let hits = store
        .search(
            &beta,
            SearchMemory {
                query: "lychee or quince".to_owned(),
                limit: None,
                layer: None,
                session_id: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(hits.hits.len(), 2, "{hits:?}");
}
