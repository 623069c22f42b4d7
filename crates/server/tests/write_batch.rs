//! Group commit of `store_raw_dialogue` (memory/write_batch.rs) against a real PostgreSQL: one
//! throwaway cluster (pg-harness) for the whole binary, a fresh, migrated database per test.
//!
//! Which turns were written by one statement is read from PostgreSQL itself: the rows of one
//! statement (one transaction) share their `xmin`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use cognitive_memory_mcp::memory::{
    MemoryError, MemoryLimits, MemoryStore, Speaker, StoreRawDialogue, WriteBatchSettings,
};
use pg_harness::{TestCluster, TestDatabase};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};

static TENANT: std::sync::LazyLock<cognitive_memory_mcp::tenancy::Tenant> =
    std::sync::LazyLock::new(cognitive_memory_mcp::tenancy::Tenant::default);

const LIMITS: MemoryLimits = MemoryLimits {
    max_content_bytes: 2048,
    default_limit: 5,
    max_limit: 20,
};

async fn fresh(settings: WriteBatchSettings) -> (TestDatabase, PgPool, MemoryStore) {
    let db = TestCluster::shared()
        .fresh_database()
        .await
        .expect("a fresh test database");
    let pool = PgPoolOptions::new()
        .max_connections(6)
        // The test's own SQL reads the rows as tenant `default` (row-level security, V7).
        .connect(&pg_harness::url_with_tenant(&db.url, "default"))
        .await
        .expect("connect to the test database");
    db::migrate(&pool).await.expect("migrate");
    let store = MemoryStore::new(pool.clone(), LIMITS).with_write_batch(settings);
    (db, pool, store)
}

fn turn(session: &str, content: &str) -> StoreRawDialogue {
    StoreRawDialogue {
        session_id: session.to_owned(),
        speaker: Speaker::User,
        content: content.to_owned(),
        metadata: Some(
            serde_json::json!({ "content": content })
                .as_object()
                .cloned()
                .unwrap_or_default(),
        ),
    }
}

/// Every stored row: id → (session, content, metadata.content, transaction id).
async fn rows(pool: &PgPool) -> HashMap<i64, (String, String, String, String)> {
    sqlx::query_as::<_, (i64, String, String, String, String)>(
        "SELECT id, session_id, content, metadata->>'content', xmin::text FROM l0_raw",
    )
    .fetch_all(pool)
    .await
    .expect("read l0_raw")
    .into_iter()
    .map(|(id, s, c, m, x)| (id, (s, c, m, x)))
    .collect()
}

/// Stores `contents` concurrently, each call on a task of its own.
fn spawn_stores(
    store: &MemoryStore,
    contents: impl IntoIterator<Item = String>,
) -> Vec<(String, tokio::task::JoinHandle<Result<i64, MemoryError>>)> {
    contents
        .into_iter()
        .map(|content| {
            let store = store.clone();
            let session = format!("s-{}", content.len() % 3);
            let call = turn(&session, &content);
            (
                content,
                tokio::spawn(async move { store.store_raw(&TENANT, call).await.map(|t| t.id) }),
            )
        })
        .collect()
}

/// Holds `SHARE` on l0_raw, which blocks every insert until released.
async fn block_inserts(url: &str) -> PgConnection {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    sqlx::query("BEGIN")
        .execute(&mut conn)
        .await
        .expect("begin");
    sqlx::query("LOCK TABLE l0_raw IN SHARE MODE")
        .execute(&mut conn)
        .await
        .expect("lock l0_raw");
    conn
}

async fn release(mut conn: PgConnection) {
    sqlx::query("COMMIT")
        .execute(&mut conn)
        .await
        .expect("release the lock");
}

/// Waits (bounded) until `store` has `n` turns accepted and unanswered.
async fn until_pending(store: &MemoryStore, n: usize) {
    for _ in 0..2_000 {
        if store.pending_writes() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!(
        "expected {n} pending writes, have {}",
        store.pending_writes()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_stores_are_written_together_and_each_caller_gets_its_own_id() {
    let (db, pool, store) = fresh(WriteBatchSettings {
        max_batch: 16,
        max_wait: Duration::ZERO,
        queue: 1024,
        writers: 1,
    })
    .await;
    // Hold the writer on its first batch so that the rest queue up behind it.
    let lock = block_inserts(&db.url).await;
    let calls = spawn_stores(
        &store,
        (0..100).map(|i| format!("turn number {i} of the batch")),
    );
    until_pending(&store, 100).await;
    release(lock).await;

    let mut acknowledged = HashMap::new();
    for (content, call) in calls {
        let id = call
            .await
            .expect("the call's task")
            .expect("every store is acknowledged");
        assert!(
            acknowledged.insert(id, content).is_none(),
            "id {id} given twice"
        );
    }
    assert_eq!(store.pending_writes(), 0);

    let stored = rows(&pool).await;
    assert_eq!(
        stored.len(),
        100,
        "exactly the acknowledged turns are stored"
    );
    for (id, content) in &acknowledged {
        let (session, stored_content, metadata, _) = stored
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged id {id} not stored"));
        // The id answered to a caller is the row of that caller's turn, metadata included.
        assert_eq!(stored_content, content);
        assert_eq!(metadata, content);
        assert_eq!(session, &format!("s-{}", content.len() % 3));
    }
    // Written in batches: far fewer transactions than turns, none larger than max_batch.
    let mut per_transaction: HashMap<&str, usize> = HashMap::new();
    for (_, _, _, xmin) in stored.values() {
        *per_transaction.entry(xmin).or_default() += 1;
    }
    assert!(
        per_transaction.len() <= 100 / 16 + 2,
        "{} transactions for 100 turns: {per_transaction:?}",
        per_transaction.len()
    );
    assert!(per_transaction.values().all(|&n| n <= 16));

    // Ids still grow in the order of storing for sequential calls.
    let a = store
        .store_raw(&TENANT, turn("seq", "first"))
        .await
        .expect("store")
        .id;
    let b = store
        .store_raw(&TENANT, turn("seq", "second"))
        .await
        .expect("store")
        .id;
    assert!(b > a && a > *acknowledged.keys().max().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rejected_turn_fails_alone_and_acknowledged_writes_stay() {
    let (db, pool, store) = fresh(WriteBatchSettings {
        max_batch: 64,
        max_wait: Duration::ZERO,
        queue: 1024,
        writers: 1,
    })
    .await;
    // A rule of the database that the server's validation does not know: this content is
    // refused by PostgreSQL (SQLSTATE 23514) and fails the whole statement it is in.
    sqlx::query("ALTER TABLE l0_raw ADD CONSTRAINT no_poison CHECK (content <> 'poison')")
        .execute(&pool)
        .await
        .expect("add the constraint");

    let earlier: Vec<i64> = {
        let mut ids = Vec::new();
        for (_, call) in spawn_stores(&store, (0..10).map(|i| format!("earlier {i}"))) {
            ids.push(call.await.unwrap().expect("earlier store"));
        }
        ids
    };

    // The poison and 29 healthy turns queued behind one blocked batch: the next batch holds
    // them together.
    let lock = block_inserts(&db.url).await;
    let first = spawn_stores(&store, ["blocked first".to_owned()]);
    until_pending(&store, 1).await;
    let mut contents: Vec<String> = (0..29).map(|i| format!("healthy {i}")).collect();
    contents.insert(13, "poison".to_owned());
    let calls = spawn_stores(&store, contents);
    until_pending(&store, 31).await;
    release(lock).await;

    let mut healthy = HashMap::new();
    for (content, call) in first.into_iter().chain(calls) {
        match call.await.expect("the call's task") {
            Ok(id) => {
                assert_ne!(content, "poison", "the poison must be refused");
                healthy.insert(id, content);
            }
            Err(err) => {
                assert_eq!(
                    content, "poison",
                    "only the poison may fail, not {content:?}: {err}"
                );
                assert!(
                    matches!(&err, MemoryError::Database(_)),
                    "the poison fails as a database error: {err:?}"
                );
                assert!(err.to_string().contains("23514"), "{err}");
            }
        }
    }
    assert_eq!(healthy.len(), 30);

    let stored = rows(&pool).await;
    assert_eq!(stored.len(), 40, "10 earlier + 30 healthy, no poison");
    for id in &earlier {
        assert!(
            stored.contains_key(id),
            "earlier acknowledged write {id} lost"
        );
    }
    for (id, content) in &healthy {
        assert_eq!(&stored[id].1, content);
    }
    assert!(stored.values().all(|(_, c, _, _)| c != "poison"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn close_writes_the_queued_turns_then_refuses_new_ones() {
    let (db, pool, store) = fresh(WriteBatchSettings {
        max_batch: 8,
        max_wait: Duration::ZERO,
        queue: 1024,
        writers: 2,
    })
    .await;
    let lock = block_inserts(&db.url).await;
    let calls = spawn_stores(
        &store,
        (0..50).map(|i| format!("queued before shutdown {i}")),
    );
    until_pending(&store, 50).await;

    let closing = {
        let store = store.clone();
        tokio::spawn(async move { store.close_writes().await })
    };
    // Shutdown waits for the queued turns, which wait for the lock.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !closing.is_finished(),
        "close returned before the queue was written"
    );
    let refused = store
        .store_raw(&TENANT, turn("late", "after shutdown began"))
        .await;
    assert!(
        matches!(refused, Err(MemoryError::Unavailable(_))),
        "a store after shutdown began is refused as unavailable: {refused:?}"
    );
    release(lock).await;
    tokio::time::timeout(Duration::from_secs(30), closing)
        .await
        .expect("close returns once the queue is written")
        .expect("the closing task");
    // Everything queued was written by the time close returned.
    assert_eq!(rows(&pool).await.len(), 50);

    let mut ids = HashSet::new();
    for (_, call) in calls {
        ids.insert(call.await.unwrap().expect("a queued turn is acknowledged"));
    }
    assert_eq!(ids.len(), 50);
    assert_eq!(
        ids,
        rows(&pool).await.keys().copied().collect::<HashSet<_>>()
    );
    let after = store
        .store_raw(&TENANT, turn("late", "after shutdown"))
        .await;
    assert!(matches!(after, Err(MemoryError::Unavailable(_))));
    assert_eq!(rows(&pool).await.len(), 50);
    // Idempotent.
    store.close_writes().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_queue_holds_callers_back() {
    let (db, pool, store) = fresh(WriteBatchSettings {
        max_batch: 1,
        max_wait: Duration::ZERO,
        queue: 2,
        writers: 1,
    })
    .await;
    let lock = block_inserts(&db.url).await;
    let calls = spawn_stores(&store, (0..8).map(|i| format!("back-pressure {i}")));
    // One turn in the blocked statement, two in the queue; the other five callers wait to
    // be let in.
    until_pending(&store, 3).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(store.pending_writes(), 3, "the queue is bounded");
    release(lock).await;
    for (_, call) in calls {
        call.await
            .unwrap()
            .expect("every caller is served in the end");
    }
    let stored = rows(&pool).await;
    assert_eq!(stored.len(), 8);
    // max_batch 1: one transaction per turn.
    let transactions: HashSet<&String> = stored.values().map(|(_, _, _, x)| x).collect();
    assert_eq!(transactions.len(), 8);
}

#[tokio::test]
async fn a_closed_pool_fails_every_caller_of_the_batch_as_unavailable() {
    let (_db, pool, store) = fresh(WriteBatchSettings::default()).await;
    store
        .store_raw(&TENANT, turn("s", "before"))
        .await
        .expect("a store while the pool is open");
    pool.close().await;
    let calls = spawn_stores(&store, (0..5).map(|i| format!("after close {i}")));
    for (_, call) in calls {
        let result = call.await.unwrap();
        assert!(
            matches!(result, Err(MemoryError::Unavailable(_))),
            "{result:?}"
        );
    }
}
