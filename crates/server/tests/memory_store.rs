//! The memory store against a real PostgreSQL: one throwaway cluster (pg-harness) for the whole
//! binary, a fresh, migrated database per test.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use cognitive_memory_mcp::memory::{
    Forget, GetSession, ItemLayer, ItemRef, Layer, MAX_METADATA_BYTES, MAX_METADATA_KEYS,
    MemoryError, MemoryLimits, MemoryStore, SearchMemory, Speaker, StoreInsight, StoreRawDialogue,
};
use pg_harness::{TestCluster, TestDatabase};
use serde_json::{Map, Value, json};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// The tenant these tests store and read as (row-level security, migration V7).
static TENANT: std::sync::LazyLock<cognitive_memory_mcp::tenancy::Tenant> =
    std::sync::LazyLock::new(cognitive_memory_mcp::tenancy::Tenant::default);

/// Appears in submitted values that must never be echoed by an error.
const CANARY: &str = "CANARY-s3cr3t-7d1f";

const LIMITS: MemoryLimits = MemoryLimits {
    max_content_bytes: 2048,
    default_limit: 5,
    max_limit: 20,
};

async fn fresh() -> (TestDatabase, MemoryStore) {
    let db = TestCluster::shared()
        .fresh_database()
        .await
        .expect("a fresh test database");
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(&pg_harness::url_with_tenant(&db.url, "default"))
        .await
        .expect("connect to the test database");
    db::migrate(&pool).await.expect("migrate");
    (db, MemoryStore::new(pool, LIMITS))
}

fn raw(session: &str, speaker: Speaker, content: &str) -> StoreRawDialogue {
    StoreRawDialogue {
        session_id: session.to_owned(),
        speaker,
        content: content.to_owned(),
        metadata: None,
    }
}

fn insight(content: &str, source_ids: &[i64]) -> StoreInsight {
    StoreInsight {
        content: content.to_owned(),
        source_ids: (!source_ids.is_empty()).then(|| source_ids.to_vec()),
        tags: None,
        importance: None,
    }
}

fn search(query: &str) -> SearchMemory {
    SearchMemory {
        query: query.to_owned(),
        limit: None,
        layer: None,
        session_id: None,
    }
}

fn session_page(session: &str, limit: Option<u32>, before_id: Option<i64>) -> GetSession {
    GetSession {
        session_id: session.to_owned(),
        limit,
        before_id,
    }
}

async fn put(store: &MemoryStore, session: &str, content: &str) -> i64 {
    store
        .store_raw(&TENANT, raw(session, Speaker::User, content))
        .await
        .expect("store a raw turn")
        .id
}

async fn put_insight(store: &MemoryStore, content: &str, source_ids: &[i64]) -> i64 {
    store
        .store_insight(&TENANT, insight(content, source_ids))
        .await
        .expect("store an insight")
        .id
}

async fn ids_of(store: &MemoryStore, query: SearchMemory) -> Vec<(ItemLayer, i64)> {
    store
        .search(&TENANT, query)
        .await
        .expect("search")
        .hits
        .iter()
        .map(|hit| (hit.layer, hit.id))
        .collect()
}

async fn source_ids(pool: &PgPool, insight: i64) -> Vec<i64> {
    sqlx::query_scalar("SELECT source_ids FROM l2_insights WHERE id = $1")
        .bind(insight)
        .fetch_one(pool)
        .await
        .expect("read source_ids")
}

/// `err` is `Invalid` for `field`, and neither its `Display` nor its `Debug` holds the canary.
#[track_caller]
fn assert_invalid(result: Result<impl std::fmt::Debug, MemoryError>, field: &str) -> String {
    let err = result.expect_err("an invalid parameter must be refused");
    assert!(
        matches!(&err, MemoryError::Invalid { .. }),
        "expected Invalid, got {err:?}"
    );
    assert_eq!(err.field(), Some(field), "wrong field in {err}");
    assert!(err.is_caller_error());
    let display = err.to_string();
    let debug = format!("{err:?}");
    assert!(
        !display.contains(CANARY) && !debug.contains(CANARY),
        "the error echoes the submitted value: {display} / {debug}"
    );
    assert!(display.contains(field), "{display} does not name {field}");
    display
}

/// A timestamp as `to_char` writes it: `2024-05-01T12:34:56.123456Z`.
#[track_caller]
fn assert_rfc3339(text: &str) {
    let b = text.as_bytes();
    assert_eq!(b.len(), 27, "{text}");
    for (at, byte) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (26, b'Z'),
    ] {
        assert_eq!(b[at], byte, "{text}");
    }
    assert!(text.starts_with("20"), "{text}");
}

#[tokio::test]
async fn store_raw_returns_increasing_ids_and_get_session_reads_them_back() {
    let (_db, store) = fresh().await;
    let mut metadata = Map::new();
    metadata.insert("model".into(), json!("m-1"));
    metadata.insert("nested".into(), json!({"n": [1, 2.5, null, true]}));
    let first = store
        .store_raw(
            &TENANT,
            StoreRawDialogue {
                session_id: "s-1".into(),
                speaker: Speaker::User,
                content: "Hello, my cat is called Mia".into(),
                metadata: Some(metadata.clone()),
            },
        )
        .await
        .unwrap();
    let second = store
        .store_raw(&TENANT, raw("s-1", Speaker::Assistant, "Nice to meet Mia"))
        .await
        .unwrap();
    let other = store
        .store_raw(&TENANT, raw("s-2", Speaker::Tool, "unrelated"))
        .await
        .unwrap();
    let third = store
        .store_raw(&TENANT, raw("s-1", Speaker::System, "  keep whitespace  "))
        .await
        .unwrap();
    assert_eq!(first.session_id, "s-1");
    assert!(first.id < second.id && second.id < other.id && other.id < third.id);
    assert_rfc3339(&first.created_at);
    assert!(first.created_at <= third.created_at);

    let page = store
        .get_session(&TENANT, session_page("s-1", None, None))
        .await
        .unwrap();
    assert_eq!(page.session_id, "s-1");
    assert_eq!(page.next_before_id, None);
    let got: Vec<(i64, Speaker, &str)> = page
        .turns
        .iter()
        .map(|t| (t.id, t.speaker, t.content.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (first.id, Speaker::User, "Hello, my cat is called Mia"),
            (second.id, Speaker::Assistant, "Nice to meet Mia"),
            (third.id, Speaker::System, "  keep whitespace  "),
        ]
    );
    assert_eq!(page.turns[0].metadata, metadata);
    assert_eq!(page.turns[0].created_at, first.created_at);
    assert!(page.turns[1].metadata.is_empty());

    let unknown = store
        .get_session(&TENANT, session_page("no-such-session", None, None))
        .await
        .unwrap();
    assert!(unknown.turns.is_empty());
    assert_eq!(unknown.next_before_id, None);
}

#[tokio::test]
async fn get_session_pages_backwards_without_gaps_or_duplicates() {
    let (_db, store) = fresh().await;
    let mut ids = Vec::new();
    for n in 0..25 {
        ids.push(put(&store, "paged", &format!("turn number {n}")).await);
        // Interleave another session so ids of "paged" are not contiguous.
        put(&store, "noise", "noise").await;
    }
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .get_session(&TENANT, session_page("paged", Some(10), before))
            .await
            .unwrap();
        let page_ids: Vec<i64> = page.turns.iter().map(|t| t.id).collect();
        assert!(page_ids.windows(2).all(|w| w[0] < w[1]), "ascending");
        pages.push(page_ids.clone());
        match page.next_before_id {
            Some(next) => {
                assert_eq!(next, page_ids[0], "smallest id of the page");
                before = Some(next);
            }
            None => break,
        }
        assert!(pages.len() < 5, "pagination does not end");
    }
    assert_eq!(pages.len(), 3);
    assert_eq!(pages[0], ids[15..25].to_vec());
    assert_eq!(pages[1], ids[5..15].to_vec());
    assert_eq!(pages[2], ids[0..5].to_vec());
    let turn = store
        .get_session(&TENANT, session_page("paged", Some(1), Some(ids[1])))
        .await
        .unwrap();
    assert_eq!(turn.turns.len(), 1);
    assert_eq!(turn.turns[0].content, "turn number 0");
    assert_eq!(
        turn.next_before_id, None,
        "nothing older than the first turn"
    );

    // Exactly `limit` turns left: no further page is announced.
    let exact = store
        .get_session(&TENANT, session_page("paged", Some(5), Some(ids[5])))
        .await
        .unwrap();
    assert_eq!(exact.turns.len(), 5);
    assert_eq!(exact.next_before_id, None);

    // Default limit.
    let default = store
        .get_session(&TENANT, session_page("paged", None, None))
        .await
        .unwrap();
    assert_eq!(default.turns.len(), LIMITS.default_limit as usize);
    assert_eq!(default.turns.last().unwrap().id, ids[24]);
}

#[tokio::test]
async fn store_raw_validation_names_the_field_and_never_the_value() {
    let (_db, store) = fresh().await;
    let long_session = format!("{CANARY}{}", "x".repeat(200));
    assert_invalid(
        store
            .store_raw(&TENANT, raw(&long_session, Speaker::User, "fine"))
            .await,
        "session_id",
    );
    assert_invalid(
        store
            .store_raw(&TENANT, raw("", Speaker::User, "fine"))
            .await,
        "session_id",
    );
    assert_invalid(
        store
            .store_raw(&TENANT, raw("   ", Speaker::User, "fine"))
            .await,
        "session_id",
    );
    assert_invalid(
        store
            .store_raw(&TENANT, raw(&format!("{CANARY}\n"), Speaker::User, "fine"))
            .await,
        "session_id",
    );
    // 200 characters of 2 bytes each is within bounds (characters, not bytes).
    let wide = "é".repeat(200);
    store
        .store_raw(&TENANT, raw(&wide, Speaker::User, "fine"))
        .await
        .expect("200 characters are allowed");

    assert_invalid(
        store.store_raw(&TENANT, raw("s", Speaker::User, "")).await,
        "content",
    );
    assert_invalid(
        store
            .store_raw(&TENANT, raw("s", Speaker::User, " \n\t "))
            .await,
        "content",
    );
    let oversize = format!("{CANARY} {}", "a".repeat(LIMITS.max_content_bytes));
    let reason = assert_invalid(
        store
            .store_raw(&TENANT, raw("s", Speaker::User, &oversize))
            .await,
        "content",
    );
    assert!(
        reason.contains(&format!(
            "{} bytes, limit {}",
            oversize.len(),
            LIMITS.max_content_bytes
        )),
        "{reason}"
    );
    let exactly = "b".repeat(LIMITS.max_content_bytes);
    store
        .store_raw(&TENANT, raw("s", Speaker::User, &exactly))
        .await
        .expect("content of exactly the limit is allowed");
    assert_invalid(
        store
            .store_raw(&TENANT, raw("s", Speaker::User, &format!("{CANARY}\0")))
            .await,
        "content",
    );

    let mut many_keys = Map::new();
    for n in 0..=MAX_METADATA_KEYS {
        many_keys.insert(format!("k{n}"), json!(CANARY));
    }
    let reason = assert_invalid(
        store
            .store_raw(
                &TENANT,
                StoreRawDialogue {
                    metadata: Some(many_keys),
                    ..raw("s", Speaker::User, "fine")
                },
            )
            .await,
        "metadata",
    );
    assert!(reason.contains("65 keys, limit 64"), "{reason}");
    let mut big = Map::new();
    big.insert(
        "blob".into(),
        json!(format!("{CANARY}{}", "z".repeat(MAX_METADATA_BYTES))),
    );
    let reason = assert_invalid(
        store
            .store_raw(
                &TENANT,
                StoreRawDialogue {
                    metadata: Some(big),
                    ..raw("s", Speaker::User, "fine")
                },
            )
            .await,
        "metadata",
    );
    assert!(reason.contains("limit 16384"), "{reason}");
    let mut nul = Map::new();
    nul.insert("deep".into(), json!([{ "x": format!("{CANARY}\u{0}") }]));
    assert_invalid(
        store
            .store_raw(
                &TENANT,
                StoreRawDialogue {
                    metadata: Some(nul),
                    ..raw("s", Speaker::User, "fine")
                },
            )
            .await,
        "metadata",
    );
    // A backslash-u text is not a NUL.
    let mut escaped = Map::new();
    escaped.insert("text".into(), json!("\\u0000"));
    store
        .store_raw(
            &TENANT,
            StoreRawDialogue {
                metadata: Some(escaped.clone()),
                ..raw("escaped", Speaker::User, "fine")
            },
        )
        .await
        .expect("a literal backslash sequence is storable");
    let page = store
        .get_session(&TENANT, session_page("escaped", None, None))
        .await
        .unwrap();
    assert_eq!(page.turns[0].metadata, escaped);

    let status = store.status(&TENANT).await.unwrap();
    assert_eq!(status.raw_turns, 3, "only the valid turns were stored");
}

#[tokio::test]
async fn parameters_deny_unknown_fields_and_document_every_field() {
    let parsed: StoreRawDialogue = serde_json::from_value(json!({
        "session_id": "s", "speaker": "assistant", "content": "c"
    }))
    .unwrap();
    assert_eq!(parsed.speaker, Speaker::Assistant);
    assert!(
        serde_json::from_value::<StoreRawDialogue>(json!({
            "session_id": "s", "speaker": "user", "content": "c", "sesion": "typo"
        }))
        .is_err()
    );
    assert!(
        serde_json::from_value::<StoreRawDialogue>(json!({
            "session_id": "s", "speaker": "User", "content": "c"
        }))
        .is_err(),
        "speakers are lowercase"
    );
    let forget: Forget =
        serde_json::from_value(json!({"items": [{"layer": "insight", "id": 3}]})).unwrap();
    assert_eq!(
        forget.items.unwrap(),
        vec![ItemRef {
            layer: ItemLayer::Insight,
            id: 3
        }]
    );
    let search: SearchMemory =
        serde_json::from_value(json!({"query": "q", "layer": "insights"})).unwrap();
    assert_eq!(search.layer, Some(Layer::Insights));

    for (name, schema) in [
        ("StoreRawDialogue", schemars::schema_for!(StoreRawDialogue)),
        ("StoreInsight", schemars::schema_for!(StoreInsight)),
        ("SearchMemory", schemars::schema_for!(SearchMemory)),
        ("GetSession", schemars::schema_for!(GetSession)),
        ("Forget", schemars::schema_for!(Forget)),
    ] {
        let schema = schema.as_value();
        assert_eq!(
            schema["additionalProperties"],
            Value::Bool(false),
            "{name} denies unknown fields"
        );
        let properties = schema["properties"].as_object().unwrap();
        assert!(!properties.is_empty());
        for (field, property) in properties {
            assert!(
                property
                    .get("description")
                    .and_then(Value::as_str)
                    .is_some_and(|d| d.len() > 10),
                "{name}.{field} has no description: {property}"
            );
        }
    }
}

#[tokio::test]
async fn store_insight_and_recent_insights_round_trip() {
    let (_db, store) = fresh().await;
    let a = put(&store, "s", "the user likes green tea").await;
    let b = put(&store, "s", "and dislikes coffee").await;
    let first = store
        .store_insight(
            &TENANT,
            StoreInsight {
                content: "Prefers tea over coffee".into(),
                source_ids: Some(vec![b, a, b]),
                tags: Some(vec!["drinks".into(), "preferences".into()]),
                importance: Some(0.75),
            },
        )
        .await
        .unwrap();
    assert_rfc3339(&first.created_at);
    let second = put_insight(&store, "No sources, default importance", &[]).await;
    let third = put_insight(&store, "Third", &[a]).await;
    assert!(first.id < second && second < third);

    let recent = store.recent_insights(&TENANT, 10).await.unwrap();
    let order: Vec<i64> = recent.iter().map(|i| i.id).collect();
    assert_eq!(order, vec![third, second, first.id], "newest first");
    let stored = &recent[2];
    assert_eq!(stored.content, "Prefers tea over coffee");
    assert_eq!(stored.source_ids, vec![b, a], "deduplicated, order kept");
    assert_eq!(stored.tags, vec!["drinks", "preferences"]);
    assert_eq!(stored.importance, 0.75);
    assert_eq!(stored.created_at, first.created_at);
    assert_eq!(recent[1].importance, 0.5);
    let tenth = store
        .store_insight(
            &TENANT,
            StoreInsight {
                importance: Some(0.1),
                ..insight("a tenth", &[])
            },
        )
        .await
        .unwrap();
    let newest = store.recent_insights(&TENANT, 1).await.unwrap();
    assert_eq!(newest[0].id, tenth.id);
    assert_eq!(
        newest[0].importance, 0.1,
        "real read back without float noise"
    );
    assert!(recent[1].source_ids.is_empty() && recent[1].tags.is_empty());

    let two = store.recent_insights(&TENANT, 2).await.unwrap();
    assert_eq!(
        two.iter().map(|i| i.id).collect::<Vec<_>>(),
        vec![tenth.id, third]
    );
    assert_invalid(store.recent_insights(&TENANT, 0).await, "limit");
    let reason = assert_invalid(
        store.recent_insights(&TENANT, LIMITS.max_limit + 1).await,
        "limit",
    );
    assert!(reason.contains("from 1 to 20"), "{reason}");
    store
        .recent_insights(&TENANT, LIMITS.max_limit)
        .await
        .unwrap();
}

#[tokio::test]
async fn store_insight_validation_names_the_field() {
    let (_db, store) = fresh().await;
    let valid = || insight("fine", &[]);
    assert_invalid(
        store
            .store_insight(
                &TENANT,
                StoreInsight {
                    content: " ".into(),
                    ..valid()
                },
            )
            .await,
        "content",
    );
    assert_invalid(
        store
            .store_insight(
                &TENANT,
                StoreInsight {
                    content: format!("{CANARY}{}", "c".repeat(LIMITS.max_content_bytes)),
                    ..valid()
                },
            )
            .await,
        "content",
    );
    let reason = assert_invalid(
        store
            .store_insight(
                &TENANT,
                StoreInsight {
                    tags: Some(vec![CANARY.to_owned(); 33]),
                    ..valid()
                },
            )
            .await,
        "tags",
    );
    assert!(reason.contains("33 entries, limit 32"), "{reason}");
    assert_invalid(
        store
            .store_insight(
                &TENANT,
                StoreInsight {
                    tags: Some(vec!["ok".into(), format!("{CANARY}{}", "t".repeat(64))]),
                    ..valid()
                },
            )
            .await,
        "tags[1]",
    );
    assert_invalid(
        store
            .store_insight(
                &TENANT,
                StoreInsight {
                    tags: Some(vec!["ok".into(), "ok".into(), String::new()]),
                    ..valid()
                },
            )
            .await,
        "tags[2]",
    );
    assert_invalid(
        store
            .store_insight(
                &TENANT,
                StoreInsight {
                    tags: Some(vec![format!("{CANARY}\t")]),
                    ..valid()
                },
            )
            .await,
        "tags[0]",
    );
    let reason = assert_invalid(
        store
            .store_insight(
                &TENANT,
                StoreInsight {
                    source_ids: Some((1..=1001).collect()),
                    ..valid()
                },
            )
            .await,
        "source_ids",
    );
    assert!(reason.contains("1001 entries, limit 1000"), "{reason}");
    assert_invalid(
        store
            .store_insight(
                &TENANT,
                StoreInsight {
                    source_ids: Some(vec![5, 0]),
                    ..valid()
                },
            )
            .await,
        "source_ids[1]",
    );
    assert_invalid(
        store
            .store_insight(
                &TENANT,
                StoreInsight {
                    source_ids: Some(vec![-3]),
                    ..valid()
                },
            )
            .await,
        "source_ids[0]",
    );
    for importance in [f64::NAN, f64::INFINITY, -0.01, 1.01] {
        assert_invalid(
            store
                .store_insight(
                    &TENANT,
                    StoreInsight {
                        importance: Some(importance),
                        ..valid()
                    },
                )
                .await,
            "importance",
        );
    }
    for importance in [0.0, 1.0] {
        store
            .store_insight(
                &TENANT,
                StoreInsight {
                    importance: Some(importance),
                    tags: Some(vec!["t".repeat(64)]),
                    ..valid()
                },
            )
            .await
            .expect("bounds are inclusive");
    }
    assert_eq!(store.status(&TENANT).await.unwrap().insights, 2);
}

#[tokio::test]
async fn store_insight_lists_exactly_the_unknown_sources_and_stores_nothing() {
    let (_db, store) = fresh().await;
    let a = put(&store, "s", "one").await;
    let b = put(&store, "s", "two").await;
    let err = store
        .store_insight(
            &TENANT,
            insight("derived", &[999_999, a, 555_555, b, 999_999, 555_555]),
        )
        .await
        .unwrap_err();
    match &err {
        MemoryError::UnknownSources(ids) => assert_eq!(ids, &vec![555_555, 999_999]),
        other => panic!("expected UnknownSources, got {other:?}"),
    }
    assert_eq!(err.field(), Some("source_ids"));
    assert!(err.to_string().contains("555555, 999999"), "{err}");
    assert_eq!(store.status(&TENANT).await.unwrap().insights, 0);
    // Forgotten turns are unknown too.
    store
        .forget(
            &TENANT,
            Forget {
                session_id: None,
                items: Some(vec![ItemRef {
                    layer: ItemLayer::Raw,
                    id: a,
                }]),
            },
        )
        .await
        .unwrap();
    let err = store
        .store_insight(&TENANT, insight("derived", &[a, b]))
        .await
        .unwrap_err();
    assert!(matches!(&err, MemoryError::UnknownSources(ids) if ids == &vec![a]));
    put_insight(&store, "derived", &[b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_insight_waits_for_a_concurrent_forget_and_then_reports_the_source_unknown() {
    let (_db, store) = fresh().await;
    let a = put(&store, "s", "one").await;
    let b = put(&store, "s", "two").await;
    // A deletion of `a`, not yet committed.
    let mut deleting = store.pool().begin().await.unwrap();
    sqlx::query("DELETE FROM l0_raw WHERE id = $1")
        .bind(a)
        .execute(&mut *deleting)
        .await
        .unwrap();
    let racing = store.clone();
    let task = tokio::spawn(async move {
        racing
            .store_insight(&TENANT, insight("derived", &[a, b]))
            .await
    });
    // Wait until the insert is blocked on the deleted row's lock.
    let started = Instant::now();
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(
            !task.is_finished(),
            "store_insight did not wait for the lock"
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no lock wait seen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    deleting.commit().await.unwrap();
    let err = task.await.unwrap().unwrap_err();
    assert!(
        matches!(&err, MemoryError::UnknownSources(ids) if ids == &vec![a]),
        "{err:?}"
    );
    assert_eq!(store.status(&TENANT).await.unwrap().insights, 0);
}

#[tokio::test]
async fn search_ranks_highlights_and_merges_layers() {
    let (_db, store) = fresh().await;
    let dense = put(&store, "s1", "banana banana banana split").await;
    let long = put(&store, "s1", "banana and many other words here and there").await;
    let _unrelated = put(&store, "s2", "apples and pears").await;
    let single = put_insight(&store, "banana", &[]).await;
    let one = put_insight(&store, "one banana", &[dense]).await;

    let results = store.search(&TENANT, search("Banana")).await.unwrap();
    let order: Vec<(ItemLayer, i64)> = results.hits.iter().map(|h| (h.layer, h.id)).collect();
    assert_eq!(
        order,
        vec![
            (ItemLayer::Raw, dense),
            (ItemLayer::Insight, one),
            (ItemLayer::Insight, single),
            (ItemLayer::Raw, long),
        ],
        "ranked by score across layers; equal relevance (one mention each): newest first"
    );
    let scores: Vec<f64> = results.hits.iter().map(|h| h.score).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    assert!(scores[0] > scores[1], "three mentions beat one: {scores:?}");
    assert!(scores.iter().all(|s| *s > 0.0 && *s < 1.0), "{scores:?}");
    for hit in &results.hits {
        assert!(hit.snippet.contains("**banana**"), "{}", hit.snippet);
        assert_rfc3339(&hit.created_at);
        match hit.layer {
            ItemLayer::Raw => assert_eq!(hit.session_id.as_deref(), Some("s1")),
            ItemLayer::Insight => assert_eq!(hit.session_id, None),
        }
    }
    assert_eq!(
        results.hits[0].snippet,
        "**banana** **banana** **banana** split"
    );

    // Layer filters keep the same order within the layer.
    let raw_only = ids_of(
        &store,
        SearchMemory {
            layer: Some(Layer::Raw),
            ..search("banana")
        },
    )
    .await;
    assert_eq!(
        raw_only,
        vec![(ItemLayer::Raw, dense), (ItemLayer::Raw, long)]
    );
    let insights_only = ids_of(
        &store,
        SearchMemory {
            layer: Some(Layer::Insights),
            ..search("banana")
        },
    )
    .await;
    assert_eq!(
        insights_only,
        vec![(ItemLayer::Insight, one), (ItemLayer::Insight, single)]
    );

    // The limit cuts the merged list.
    let top2 = ids_of(
        &store,
        SearchMemory {
            limit: Some(2),
            ..search("banana")
        },
    )
    .await;
    assert_eq!(
        top2,
        vec![(ItemLayer::Raw, dense), (ItemLayer::Insight, one)]
    );

    // Only the matching part of a long text is shown.
    let filler = "lorem ipsum dolor sit amet ".repeat(30);
    let needle = put(
        &store,
        "s3",
        &format!("{filler} the zebra watches {filler}"),
    )
    .await;
    let hits = store.search(&TENANT, search("zebra")).await.unwrap().hits;
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].id, needle);
    assert!(hits[0].snippet.contains("**zebra**"), "{}", hits[0].snippet);
    assert!(hits[0].snippet.len() < 300, "{}", hits[0].snippet);
}

#[tokio::test]
async fn search_ties_are_newest_first_and_default_limit_applies() {
    let (_db, store) = fresh().await;
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(put(&store, "s", "identical kiwi text").await);
    }
    let found = ids_of(&store, search("kiwi")).await;
    let expected: Vec<(ItemLayer, i64)> = ids
        .iter()
        .rev()
        .take(LIMITS.default_limit as usize)
        .map(|id| (ItemLayer::Raw, *id))
        .collect();
    assert_eq!(found, expected);
    let all = ids_of(
        &store,
        SearchMemory {
            limit: Some(LIMITS.max_limit),
            ..search("kiwi")
        },
    )
    .await;
    assert_eq!(all.len(), 8);
}

#[tokio::test]
async fn search_understands_websearch_syntax() {
    let (_db, store) = fresh().await;
    let phrase = put(&store, "s", "we met at the old harbour bridge").await;
    let scattered = put(&store, "s", "the bridge near the old harbour").await;
    let cat = put(&store, "s", "a cat sleeps").await;
    let dog = put(&store, "s", "a dog barks").await;
    let both = put(&store, "s", "cat and dog together").await;

    let found: HashSet<i64> = ids_of(&store, search("\"harbour bridge\""))
        .await
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    assert_eq!(found, HashSet::from([phrase]));
    let found: HashSet<i64> = ids_of(&store, search("harbour bridge"))
        .await
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    assert_eq!(
        found,
        HashSet::from([phrase, scattered]),
        "all words, any order"
    );
    let found: HashSet<i64> = ids_of(&store, search("cat -dog"))
        .await
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    assert_eq!(found, HashSet::from([cat]));
    let found: HashSet<i64> = ids_of(&store, search("cat or dog"))
        .await
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    assert_eq!(found, HashSet::from([cat, dog, both]));
    let found: HashSet<i64> = ids_of(&store, search("CAT"))
        .await
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    assert_eq!(found, HashSet::from([cat, both]), "case-insensitive");
    let found: HashSet<i64> = ids_of(&store, search("cats"))
        .await
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    assert_eq!(found, HashSet::from([cat, both]), "English word forms");

    // Nothing to search for: no hits, not an error.
    for query in ["!!!", "-", "\"\"", "... ?? ;"] {
        let results = store.search(&TENANT, search(query)).await.unwrap();
        assert!(results.hits.is_empty(), "{query}");
    }
    // Only excluded words: refused rather than matching everything.
    let reason = assert_invalid(store.search(&TENANT, search("-dog")).await, "query");
    assert!(reason.contains("not excluded"), "{reason}");
    // Injection-looking input is just text.
    let results = store
        .search(&TENANT, search("'); DROP TABLE l0_raw; --"))
        .await
        .unwrap();
    assert!(results.hits.is_empty());
    assert_eq!(store.status(&TENANT).await.unwrap().raw_turns, 5);
}

#[tokio::test]
async fn search_filters_by_session() {
    let (_db, store) = fresh().await;
    let mine = put(&store, "mine", "mango smoothie recipe").await;
    let _theirs = put(&store, "theirs", "mango smoothie recipe").await;
    let about = put_insight(&store, "likes mango", &[mine]).await;
    let scoped = |layer| SearchMemory {
        layer,
        session_id: Some("mine".into()),
        ..search("mango")
    };
    let raw = ids_of(&store, scoped(Some(Layer::Raw))).await;
    assert_eq!(raw, vec![(ItemLayer::Raw, mine)]);
    let all = ids_of(&store, scoped(None)).await;
    let all: HashSet<_> = all.into_iter().collect();
    assert_eq!(
        all,
        HashSet::from([(ItemLayer::Raw, mine), (ItemLayer::Insight, about)]),
        "insights are not filtered by session"
    );
    assert_invalid(
        store.search(&TENANT, scoped(Some(Layer::Insights))).await,
        "session_id",
    );
    assert!(
        ids_of(
            &store,
            SearchMemory {
                session_id: Some("nobody".into()),
                layer: Some(Layer::Raw),
                ..search("mango")
            }
        )
        .await
        .is_empty()
    );
}

#[tokio::test]
async fn search_validation_names_the_field() {
    let (_db, store) = fresh().await;
    assert_invalid(store.search(&TENANT, search("")).await, "query");
    assert_invalid(store.search(&TENANT, search(" \t\n")).await, "query");
    let long = format!("{CANARY} {}", "w ".repeat(500));
    let reason = assert_invalid(store.search(&TENANT, search(&long)).await, "query");
    assert!(reason.contains("limit 1000"), "{reason}");
    store
        .search(&TENANT, search(&"w".repeat(1000)))
        .await
        .expect("1000 characters are allowed");
    for limit in [0, LIMITS.max_limit + 1] {
        let reason = assert_invalid(
            store
                .search(
                    &TENANT,
                    SearchMemory {
                        limit: Some(limit),
                        ..search("x")
                    },
                )
                .await,
            "limit",
        );
        assert!(reason.contains("from 1 to 20"), "{reason}");
    }
    assert_invalid(
        store
            .search(
                &TENANT,
                SearchMemory {
                    session_id: Some(format!("{CANARY}\u{7}")),
                    ..search("x")
                },
            )
            .await,
        "session_id",
    );
}

#[tokio::test]
async fn get_session_validation_names_the_field() {
    let (_db, store) = fresh().await;
    assert_invalid(
        store
            .get_session(&TENANT, session_page("", None, None))
            .await,
        "session_id",
    );
    assert_invalid(
        store
            .get_session(&TENANT, session_page(&"x".repeat(201), None, None))
            .await,
        "session_id",
    );
    assert_invalid(
        store
            .get_session(&TENANT, session_page("s", Some(0), None))
            .await,
        "limit",
    );
    assert_invalid(
        store
            .get_session(&TENANT, session_page("s", Some(21), None))
            .await,
        "limit",
    );
    assert_invalid(
        store
            .get_session(&TENANT, session_page("s", None, Some(0)))
            .await,
        "before_id",
    );
    assert_invalid(
        store
            .get_session(&TENANT, session_page("s", None, Some(-5)))
            .await,
        "before_id",
    );
}

#[tokio::test]
async fn forget_a_session_unlinks_its_insights() {
    let (_db, store) = fresh().await;
    let a1 = put(&store, "alice", "alice secret papaya one").await;
    let a2 = put(&store, "alice", "alice secret papaya two").await;
    let a3 = put(&store, "alice", "alice secret papaya three").await;
    let b1 = put(&store, "bob", "bob papaya one").await;
    let b2 = put(&store, "bob", "bob papaya two").await;
    let mixed = put_insight(&store, "mixed papaya", &[b1, a1, a3]).await;
    let only_alice = put_insight(&store, "alice papaya", &[a2]).await;
    let only_bob = put_insight(&store, "bob papaya", &[b2]).await;

    let report = store
        .forget(
            &TENANT,
            Forget {
                session_id: Some("alice".into()),
                items: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(report.raw_deleted, 3);
    assert_eq!(report.insights_deleted, 0);
    assert_eq!(report.insights_unlinked, 2);
    assert_eq!(report.unlinked_insight_ids, vec![mixed, only_alice]);
    assert!(report.not_found.is_empty());

    assert_eq!(source_ids(store.pool(), mixed).await, vec![b1]);
    assert_eq!(
        source_ids(store.pool(), only_alice).await,
        Vec::<i64>::new()
    );
    assert_eq!(source_ids(store.pool(), only_bob).await, vec![b2]);
    assert!(
        store
            .get_session(&TENANT, session_page("alice", None, None))
            .await
            .unwrap()
            .turns
            .is_empty()
    );
    assert_eq!(
        store
            .get_session(&TENANT, session_page("bob", None, None))
            .await
            .unwrap()
            .turns
            .len(),
        2
    );
    assert!(ids_of(&store, search("secret")).await.is_empty());
    let status = store.status(&TENANT).await.unwrap();
    assert_eq!((status.raw_turns, status.insights), (2, 3));

    // Again: nothing left, nothing changed, no error.
    let again = store
        .forget(
            &TENANT,
            Forget {
                session_id: Some("alice".into()),
                items: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (
            again.raw_deleted,
            again.insights_deleted,
            again.insights_unlinked
        ),
        (0, 0, 0)
    );
}

#[tokio::test]
async fn forget_items_deletes_listed_turns_and_insights() {
    let (_db, store) = fresh().await;
    let r1 = put(&store, "s", "quince one").await;
    let r2 = put(&store, "s", "quince two").await;
    let r3 = put(&store, "t", "quince three").await;
    let cites_r1_r2 = put_insight(&store, "quince pair", &[r1, r2]).await;
    let cites_r1 = put_insight(&store, "quince single", &[r1]).await;
    let unrelated = put_insight(&store, "quince unrelated", &[r3]).await;

    // Forget a search hit by its layer and id, plus a listed insight and unknown items.
    let hit = store
        .search(
            &TENANT,
            SearchMemory {
                layer: Some(Layer::Raw),
                ..search("one")
            },
        )
        .await
        .unwrap()
        .hits
        .remove(0);
    assert_eq!((hit.layer, hit.id), (ItemLayer::Raw, r1));
    let report = store
        .forget(
            &TENANT,
            Forget {
                session_id: None,
                items: Some(vec![
                    ItemRef {
                        layer: hit.layer,
                        id: hit.id,
                    },
                    ItemRef {
                        layer: ItemLayer::Insight,
                        id: cites_r1,
                    },
                    ItemRef {
                        layer: ItemLayer::Raw,
                        id: 987_654,
                    },
                    ItemRef {
                        layer: ItemLayer::Insight,
                        id: r3 + 1000,
                    },
                    // Duplicates count once.
                    ItemRef {
                        layer: ItemLayer::Raw,
                        id: r1,
                    },
                ]),
            },
        )
        .await
        .unwrap();
    assert_eq!(report.raw_deleted, 1);
    assert_eq!(report.insights_deleted, 1);
    assert_eq!(
        report.insights_unlinked, 1,
        "the deleted insight is not counted"
    );
    assert_eq!(report.unlinked_insight_ids, vec![cites_r1_r2]);
    assert_eq!(
        report.not_found,
        vec![
            ItemRef {
                layer: ItemLayer::Raw,
                id: 987_654
            },
            ItemRef {
                layer: ItemLayer::Insight,
                id: r3 + 1000
            },
        ]
    );
    assert_eq!(source_ids(store.pool(), cites_r1_r2).await, vec![r2]);
    assert_eq!(source_ids(store.pool(), unrelated).await, vec![r3]);
    let remaining: Vec<i64> = store
        .recent_insights(&TENANT, 10)
        .await
        .unwrap()
        .iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(remaining, vec![unrelated, cites_r1_r2]);
    let turns: Vec<i64> = store
        .get_session(&TENANT, session_page("s", None, None))
        .await
        .unwrap()
        .turns
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(turns, vec![r2]);

    // Insights only: no raw turn deleted, nothing unlinked.
    let report = store
        .forget(
            &TENANT,
            Forget {
                session_id: None,
                items: Some(vec![ItemRef {
                    layer: ItemLayer::Insight,
                    id: unrelated,
                }]),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (
            report.raw_deleted,
            report.insights_deleted,
            report.insights_unlinked
        ),
        (0, 1, 0)
    );
    assert_eq!(store.status(&TENANT).await.unwrap().insights, 1);
}

#[tokio::test]
async fn forget_validation_names_the_fields() {
    let (_db, store) = fresh().await;
    let item = |id| ItemRef {
        layer: ItemLayer::Raw,
        id,
    };
    let reason = assert_invalid(
        store
            .forget(
                &TENANT,
                Forget {
                    session_id: Some(CANARY.into()),
                    items: Some(vec![item(1)]),
                },
            )
            .await,
        "session_id|items",
    );
    assert!(
        reason.contains("session_id") && reason.contains("items"),
        "{reason}"
    );
    assert_invalid(
        store
            .forget(
                &TENANT,
                Forget {
                    session_id: None,
                    items: None,
                },
            )
            .await,
        "session_id|items",
    );
    assert_invalid(
        store
            .forget(
                &TENANT,
                Forget {
                    session_id: None,
                    items: Some(Vec::new()),
                },
            )
            .await,
        "items",
    );
    let reason = assert_invalid(
        store
            .forget(
                &TENANT,
                Forget {
                    session_id: None,
                    items: Some((1..=1001).map(item).collect()),
                },
            )
            .await,
        "items",
    );
    assert!(reason.contains("1001 entries, limit 1000"), "{reason}");
    assert_invalid(
        store
            .forget(
                &TENANT,
                Forget {
                    session_id: None,
                    items: Some(vec![item(1), item(2), item(0)]),
                },
            )
            .await,
        "items[2].id",
    );
    assert_invalid(
        store
            .forget(
                &TENANT,
                Forget {
                    session_id: Some(format!("{CANARY}{}", "x".repeat(200))),
                    items: None,
                },
            )
            .await,
        "session_id",
    );
}

#[tokio::test]
async fn status_reports_database_schema_and_counts() {
    let db = TestCluster::shared().fresh_database().await.unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(&pg_harness::url_with_tenant(&db.url, "default"))
        .await
        .unwrap();
    let report = db::migrate(&pool).await.unwrap();
    let newest = match report {
        db::MigrationReport::Applied(applied) => applied.iter().map(|m| m.version).max(),
        db::MigrationReport::UpToDate => panic!("a fresh database has pending migrations"),
    };
    let store = MemoryStore::new(pool, LIMITS);
    let status = store.status(&TENANT).await.unwrap();
    assert_eq!(status.database, db.name);
    assert_eq!(status.schema_version, newest);
    assert!(newest >= Some(1));
    assert_eq!((status.raw_turns, status.insights), (0, 0));
    let a = put(&store, "s", "one").await;
    put(&store, "s", "two").await;
    put_insight(&store, "i", &[a]).await;
    let status = store.status(&TENANT).await.unwrap();
    assert_eq!((status.raw_turns, status.insights), (2, 1));

    let debug = format!("{store:?}");
    let password = db.url.split(':').nth(2).unwrap().split('@').next().unwrap();
    assert!(!debug.contains(password), "{debug}");
    assert!(debug.contains("max_limit: 20"), "{debug}");
}

#[tokio::test]
async fn an_unreachable_database_is_unavailable() {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy("postgres://x@127.0.0.1:1/x?sslmode=disable")
        .unwrap();
    let store = MemoryStore::new(pool, LIMITS);
    let started = Instant::now();
    let err = store
        .store_raw(&TENANT, raw("s", Speaker::User, CANARY))
        .await
        .unwrap_err();
    assert!(matches!(err, MemoryError::Unavailable(_)), "{err:?}");
    assert_eq!(err.to_string(), "database unavailable");
    assert!(!format!("{err:?}").contains(CANARY));
    assert_eq!(err.field(), None);
    assert!(!err.is_caller_error());
    assert!(started.elapsed() < Duration::from_secs(10));
    for result in [
        store.status(&TENANT).await.map(drop),
        store.search(&TENANT, search("x")).await.map(drop),
        store
            .store_insight(&TENANT, insight("x", &[1]))
            .await
            .map(drop),
        store
            .forget(
                &TENANT,
                Forget {
                    session_id: Some("s".into()),
                    items: None,
                },
            )
            .await
            .map(drop),
    ] {
        assert!(
            matches!(result, Err(MemoryError::Unavailable(_))),
            "{result:?}"
        );
    }
    // Validation still comes first.
    assert_invalid(store.search(&TENANT, search("")).await, "query");
}

#[tokio::test]
async fn driver_errors_are_sorted_and_never_quote_values() {
    let (_db, store) = fresh().await;
    // A terminated backend (SQLSTATE 57P01) is unavailability.
    let mut conn = store.pool().acquire().await.unwrap();
    let err = sqlx::query("SELECT pg_terminate_backend(pg_backend_pid())")
        .execute(&mut *conn)
        .await
        .unwrap_err();
    drop(conn);
    let mapped = MemoryError::from(err);
    assert!(matches!(mapped, MemoryError::Unavailable(_)), "{mapped:?}");

    // A data exception's message quotes its input: Display and Debug leave it out.
    let err = sqlx::query("SELECT $1::text::integer")
        .bind(CANARY)
        .execute(store.pool())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(CANARY),
        "the driver's own message does"
    );
    let mapped = MemoryError::from(err);
    assert!(matches!(mapped, MemoryError::Database(_)), "{mapped:?}");
    assert_eq!(mapped.to_string(), "database error (SQLSTATE 22P02)");
    assert!(!format!("{mapped:?}").contains(CANARY));

    // Other server errors keep their message, never DETAIL (which quotes row values).
    let err =
        sqlx::query("INSERT INTO l0_raw (session_id, speaker, content) VALUES ($1, 'nobody', 'x')")
            .bind(CANARY)
            .execute(store.pool())
            .await
            .unwrap_err();
    let mapped = MemoryError::from(err);
    let text = format!("{mapped} {mapped:?}");
    assert!(text.contains("SQLSTATE 23514"), "{text}");
    assert!(text.contains("l0_raw_speaker_check"), "{text}");
    assert!(!text.contains(CANARY), "{text}");
    assert_eq!(mapped.field(), None);
}
