//! The impact-ordered postings (migration V6) and the session scan against real PostgreSQL (a
//! pg-harness cluster, a fresh migrated database): on one corpus, every query — single words,
//! `or`, several words, phrases, excluded words, each with and without a session filter —
//! returns the same hits — ids, order, scores, snippets — from the fast paths and from ranking
//! every match through the full-text index, under several ranking settings, after deletes and
//! updates; the fast paths are really taken; and the triggers keep `search_postings` equal to
//! the postings of the stored rows.

use cognitive_memory_mcp::memory::{
    Forget, Hit, ItemLayer, ItemRef, Layer, MemoryLimits, MemoryStore, SearchMemory,
    SearchSettings, Speaker, StoreInsight, StoreRawDialogue,
};
use pg_harness::{TestCluster, TestDatabase};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// The tenant these tests store and read as (row-level security, migration V7).
static TENANT: std::sync::LazyLock<cognitive_memory_mcp::tenancy::Tenant> =
    std::sync::LazyLock::new(cognitive_memory_mcp::tenancy::Tenant::default);

const LIMITS: MemoryLimits = MemoryLimits {
    max_content_bytes: 8192,
    default_limit: 10,
    max_limit: 50,
};

/// Words drawn Zipf-like (rank r with probability ∝ 1/r): inflected English and German forms,
/// words with an apostrophe, and made-up words for the long tail.
const HEAD: &[&str] = &[
    "the",
    "and",
    "compost",
    "garden",
    "collect",
    "collecting",
    "collected",
    "collection",
    "Haus",
    "Häuser",
    "Hauses",
    "stamps",
    "stamp",
    "o'clock",
    "don't",
    "meeting",
    "meetings",
    "release",
    "releases",
    "released",
    "Vertrag",
    "Verträge",
    "summer",
    "winter",
    "coffee",
    "tea",
    "project",
    "projects",
    "data",
    "files",
    "running",
    "runs",
    "ran",
    "kitchen",
    // Stop words beyond `the` and `and`: English, German, both, and two whose other
    // language's stem differs (`this` is German `thi`, `als` English `al`).
    "to",
    "be",
    "die",
    "was",
    "this",
    "als",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn range(&mut self, low: usize, high: usize) -> usize {
        low + (self.next() % (high - low) as u64) as usize
    }
}

fn word(rank: usize) -> String {
    match HEAD.get(rank - 1) {
        Some(w) => (*w).to_owned(),
        None => format!("zeta{rank}"),
    }
}

/// A word of rank 1..=400, P(r) ∝ 1/r.
fn zipf(rng: &mut Rng) -> String {
    let rank = (rng.unit() * 401f64.ln()).exp().floor() as usize;
    word(rank.clamp(1, 400))
}

fn text(rng: &mut Rng, words: usize) -> String {
    (0..words).map(|_| zipf(rng)).collect::<Vec<_>>().join(" ")
}

async fn pool_of(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(4)
        .connect(&pg_harness::url_with_tenant(url, "default"))
        .await
        .expect("connect to the test database")
}

async fn fresh() -> (TestDatabase, PgPool, MemoryStore) {
    let db = TestCluster::shared()
        .fresh_database()
        .await
        .expect("a fresh test database");
    let pool = pool_of(&db.url).await;
    db::migrate(&pool).await.expect("migrate");
    let store = MemoryStore::new(pool.clone(), LIMITS);
    (db, pool, store)
}

/// 1,200 turns in 12 sessions and 250 insights, then times spread over two years (an UPDATE,
/// through the update trigger) and 200 more turns in one multi-row INSERT.
async fn corpus(store: &MemoryStore, pool: &PgPool) {
    let mut rng = Rng(0x5EA2C4);
    for n in 0..1200 {
        let words = rng.range(3, 40);
        store
            .store_raw(
                &TENANT,
                StoreRawDialogue {
                    session_id: format!("session-{}", n % 12),
                    speaker: Speaker::User,
                    content: text(&mut rng, words),
                    metadata: None,
                },
            )
            .await
            .expect("store a turn");
    }
    for _ in 0..250 {
        let words = rng.range(3, 25);
        let importance = (rng.range(0, 11) as f64) / 10.0;
        store
            .store_insight(
                &TENANT,
                StoreInsight {
                    content: text(&mut rng, words),
                    source_ids: None,
                    tags: None,
                    importance: Some(importance),
                },
            )
            .await
            .expect("store an insight");
    }
    sqlx::query(
        "UPDATE l0_raw SET created_at = now() - ((id * 7919) % 730) * interval '1 day'
                                             - ((id * 104729) % 86400) * interval '1 second'",
    )
    .execute(pool)
    .await
    .expect("spread the turns over two years");
    sqlx::query(
        "UPDATE l2_insights SET created_at = now() - ((id * 7907) % 700) * interval '1 day'",
    )
    .execute(pool)
    .await
    .expect("spread the insights");
    let mut contents = Vec::new();
    for _ in 0..200 {
        let words = rng.range(3, 40);
        contents.push(text(&mut rng, words));
    }
    sqlx::query(
        "INSERT INTO l0_raw (session_id, speaker, content, created_at)
         SELECT 'bulk', 'user', c, now() - n * interval '1 hour'
         FROM unnest($1::text[]) WITH ORDINALITY AS t(c, n)",
    )
    .bind(&contents)
    .execute(pool)
    .await
    .expect("a multi-row insert");
}

/// `search_postings` holds exactly the postings of the rows.
async fn assert_postings_in_sync(pool: &PgPool) {
    let (missing, extra): (i64, i64) = sqlx::query_as(
        "WITH want AS (
             SELECT 'r'::\"char\" AS layer, p.lexeme, p.impact, r.created_at, r.id
             FROM l0_raw r CROSS JOIN LATERAL search_postings_of(r.search_tsv) p
             UNION ALL
             SELECT 'i', p.lexeme, p.impact, i.created_at, i.id
             FROM l2_insights i CROSS JOIN LATERAL search_postings_of(i.search_tsv) p
         ), have AS (SELECT layer, lexeme, impact, created_at, id FROM search_postings)
         SELECT (SELECT count(*) FROM (SELECT * FROM want EXCEPT ALL SELECT * FROM have) a),
                (SELECT count(*) FROM (SELECT * FROM have EXCEPT ALL SELECT * FROM want) b)",
    )
    .fetch_one(pool)
    .await
    .expect("compare the postings");
    assert_eq!((missing, extra), (0, 0), "postings missing / extra");
}

/// Every stored `search_tsv` (V8: `search_document`) is V2's expression, position for position:
/// the migration changed how the vector is computed, not what it is.
async fn assert_vectors_are_v2s(pool: &PgPool) {
    const V2: &str = "setweight(to_tsvector('simple'::regconfig, content), 'A')
        || ts_delete(setweight(to_tsvector('english'::regconfig, content), 'B'),
                     tsvector_to_array(to_tsvector('simple'::regconfig, content)))
        || ts_delete(setweight(to_tsvector('german'::regconfig, content), 'C'),
                     tsvector_to_array(to_tsvector('simple'::regconfig, content)))";
    let (rows, differing): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH v AS (
             SELECT search_tsv, {V2} AS v2 FROM l0_raw
             UNION ALL SELECT search_tsv, {V2} FROM l2_insights
             UNION ALL SELECT search_document(content), {V2}
             FROM unnest(ARRAY['', ' ', 'The cats were running; Häuser und Bäume!',
                               'it''s 3.5 e-mail foo@bar.com http://x.y/z-path', 'der die das the a',
                               'Collecting collected COLLECTS ÄÖÜ straße']) AS t(content)
         )
         SELECT count(*), count(*) FILTER (WHERE search_tsv::text IS DISTINCT FROM v2::text) FROM v"
    )))
    .fetch_one(pool)
    .await
    .expect("compare the vectors");
    assert!(rows > 1_000, "{rows} vectors compared");
    assert_eq!(differing, 0, "vectors differing from V2's expression");
}

fn queries() -> Vec<String> {
    let mut queries: Vec<String> = (1..=34).map(word).collect();
    queries.extend((40..=400).step_by(40).map(word));
    queries.extend(
        [
            "collects",
            "Häusern",
            "meeting or release",
            "coffee or tea or zeta200",
            "compost or zeta399",
            "COLLECTING",
            "o'clock",
            "don't",
            "nothingmatchesthis",
            // Not `or` queries. Several words, phrases and excluded words.
            "coffee tea",
            "the compost",
            "compost garden collect",
            "\"the compost\"",
            "\"garden the\"",
            "\"compost garden collect\"",
            "garden -compost",
            "compost -the",
            "the -compost",
            "compost -zeta399",
            "compost -zeta150 -zeta151",
            "compost -\"the garden\"",
            "garden or compost -the",
            "\"collecting stamps\" -winter",
            "don't o'clock",
            // A German stop word beside a frequent word: left out of every branch (V11), so
            // the query is the frequent word's, an `or` query answered from the postings.
            "compost und",
            "\"compost und\"",
            "\"compost und\" -zeta120",
            "garden die",
            "\"garden die\" -zeta120",
            // Phrases made only of stop words: read through the postings of their pairs (V12).
            "\"the and\"",
            "\"and the\"",
            "\"the the\"",
            "\"to be\"",
            "\"the and the\"",
            "\"die die\"",
            "\"was this\"",
            "\"this als\"",
            "\"the and\" or \"to be\"",
            "\"the and\" or was",
            "\"the and\" -compost",
            "the and",
            "-compost",
            "!!!",
        ]
        .map(str::to_owned),
    );
    queries
}

/// Queries not answered from the postings by the old rules: words that must all occur, phrases
/// and excluded words with a frequent word that matches by itself.
const OR_LIKE: &[&str] = &[
    "compost und",
    "\"compost und\"",
    "\"compost und\" -zeta120",
    "compost -zeta399",
    "compost -zeta150 -zeta151",
    // Excluded words filter and do not score: the positive part is an `or` query, whatever
    // the excluded word's frequency.
    "garden -compost",
    "compost -the",
    "the -compost",
    "garden or compost -the",
];

/// Queries whose positive part is an `or` query — written so, or once their stop words are
/// left out (V11) — answered from the postings also with `postings_beyond_or` off (the
/// default).
const EXCLUDING: &[&str] = &[
    "garden -compost",
    "compost -the",
    "the -compost",
    "garden or compost -the",
    "compost -zeta150 -zeta151",
    "compost und",
    "\"compost und\"",
    "garden die",
    "\"garden the\"",
];

/// Phrases of stop words (and `or`s of them and of words), answered from the postings of
/// their pairs with the default settings (V12, `phrase_pairs.rs`).
const PAIRS: &[&str] = &[
    "\"the and\"",
    "\"the the\"",
    "\"to be\"",
    "\"the and the\"",
    "\"die die\"",
    "\"this als\"",
    "\"the and\" or \"to be\"",
    "\"the and\" or was",
    "\"the and\" -compost",
];

/// `a -b` ranks its matches by `a` alone: each hit's relevance is `ts_rank_cd` of the row for
/// the query `a`, whichever path answered; the excluded word only removes matches. Ranked
/// against the whole query, the positions of an excluded word's other forms counted (the
/// English stem of `collecting` is `collect`): some hit of `garden -collect` shows that they
/// no longer do.
/// A hit's match of query $1 and its relevance for $2 ($3 the languages, $4 its id).
const HIT_RANK_RAW: &str = "SELECT search_tsv @@ search_query($1, $3), \
     ts_rank_cd(search_tsv, search_query($2, $3))::float8 FROM l0_raw WHERE id = $4";
const HIT_RANK_INSIGHT: &str = "SELECT search_tsv @@ search_query($1, $3), \
     ts_rank_cd(search_tsv, search_query($2, $3))::float8 FROM l2_insights WHERE id = $4";

/// `a -b` ranks its matches by `a` alone: each hit matches `a -b` and its relevance is
/// `ts_rank_cd` of the row for the query `a`, whichever path answered; the excluded word only
/// removes matches.
async fn excluded_words_filter_and_do_not_score(store: &MemoryStore, pool: &PgPool) {
    for postings in [true, false] {
        let store = store.clone().with_search_settings(SearchSettings {
            postings,
            fixed_now: Some(1.9e9),
            ..store.search_settings().clone()
        });
        for (positive, excluded) in [("garden", "collect"), ("compost", "the"), ("the", "garden")] {
            let query = format!("{positive} -{excluded}");
            let hits = search(&store, &query, 50, None).await;
            assert_eq!(hits.len(), 50, "{query}: too few hits for the check");
            for hit in &hits {
                let sql = match hit.layer {
                    ItemLayer::Raw => HIT_RANK_RAW,
                    ItemLayer::Insight => HIT_RANK_INSIGHT,
                };
                let (matches, alone): (bool, f64) = sqlx::query_as(sql)
                    .bind(&query)
                    .bind(positive)
                    .bind(&store.search_settings().languages)
                    .bind(hit.id)
                    .fetch_one(pool)
                    .await
                    .expect("rank the hit");
                assert!(matches, "{query}: {hit:?} is no match");
                assert_eq!(
                    hit.relevance, alone,
                    "{query} (postings {postings}): {hit:?}"
                );
            }
        }
    }
}

async fn search(store: &MemoryStore, q: &str, limit: u32, layer: Option<Layer>) -> Vec<Hit> {
    search_in(store, q, limit, layer, None).await
}

async fn search_in(
    store: &MemoryStore,
    q: &str,
    limit: u32,
    layer: Option<Layer>,
    session: Option<&str>,
) -> Vec<Hit> {
    match store
        .search(
            &TENANT,
            SearchMemory {
                query: q.to_owned(),
                limit: Some(limit),
                layer,
                session_id: session.map(str::to_owned),
            },
        )
        .await
    {
        Ok(found) => found.hits,
        // The same refusal on both paths is compared by the caller.
        Err(e) => panic!("search {q:?} failed: {e}"),
    }
}

/// Every query on both paths, for each limit and layer: equal hits.
async fn assert_same(store: &MemoryStore, settings: SearchSettings, label: &str) {
    // One instant for both, so that the recency boosts are equal.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs_f64();
    let fast = store.clone().with_search_settings(SearchSettings {
        postings: true,
        fixed_now: Some(now),
        ..settings.clone()
    });
    let slow = store.clone().with_search_settings(SearchSettings {
        postings: false,
        fixed_now: Some(now),
        ..settings
    });
    for q in queries() {
        for (limit, layer) in [
            (10, None),
            (1, Some(Layer::Raw)),
            (50, Some(Layer::Insights)),
        ] {
            if q == "-compost" {
                let a = fast.search(
                    &TENANT,
                    SearchMemory {
                        query: q.clone(),
                        limit: Some(limit),
                        layer,
                        session_id: None,
                    },
                );
                assert!(a.await.is_err(), "{label}: {q:?} is refused");
                continue;
            }
            let a = search(&fast, &q, limit, layer).await;
            let b = search(&slow, &q, limit, layer).await;
            assert_eq!(a, b, "{label}: {q:?} limit {limit} layer {layer:?}");
        }
        // Within one session: the session's own turns against the full-text index with the
        // session as a filter (and the insights, never filtered, as above).
        if q == "-compost" {
            continue;
        }
        for session in ["session-4", "bulk"] {
            for (limit, layer) in [(10, None), (3, Some(Layer::Raw))] {
                let a = search_in(&fast, &q, limit, layer, Some(session)).await;
                let b = search_in(&slow, &q, limit, layer, Some(session)).await;
                assert_eq!(
                    a, b,
                    "{label}: {q:?} in {session} limit {limit} layer {layer:?}"
                );
            }
        }
    }
}

/// On every memory that its residue does not match, a positive part's exact form ranks as the
/// positive part itself (what the every-match statements rely on, `sql/raw_best.sql`).
#[tokio::test]
async fn the_exact_form_ranks_as_the_query_where_it_is_used() {
    let (_db, pool, store) = fresh().await;
    corpus(&store, &pool).await;
    let languages = vec!["english".to_owned(), "german".to_owned()];
    let (mut applied, mut ranked, mut residual) = (0, 0_i64, 0_i64);
    for q in queries() {
        let positive: Option<String> = sqlx::query_scalar("SELECT querytree(search_query($1, $2))")
            .bind(&q)
            .bind(&languages)
            .fetch_one(&pool)
            .await
            .expect("the positive part");
        let Some(positive) = positive.filter(|p| !p.is_empty() && p != "T") else {
            continue;
        };
        let Some((residue, exact)) = cognitive_memory_mcp::memory::exact_form_of(&positive) else {
            continue;
        };
        applied += 1;
        for table in ["l0_raw", "l2_insights"] {
            // The table is one of two literals.
            let (differ, same, other): (i64, i64, i64) =
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT count(*) FILTER (WHERE NOT search_tsv @@ $1::tsquery
                                           AND ts_rank_cd(search_tsv, $2::tsquery)
                                               <> ts_rank_cd(search_tsv, $3::tsquery)),
                        count(*) FILTER (WHERE NOT search_tsv @@ $1::tsquery
                                           AND ts_rank_cd(search_tsv, $2::tsquery) > 0),
                        count(*) FILTER (WHERE search_tsv @@ $1::tsquery)
                 FROM {table}"
                )))
                .bind(&residue)
                .bind(&positive)
                .bind(&exact)
                .fetch_one(&pool)
                .await
                .expect("compare the ranks");
            assert_eq!(
                differ, 0,
                "{q}: {positive} ranks {differ} memories of {table} differently as {exact}"
            );
            ranked += same;
            residual += other;
        }
    }
    // Not vacuous: most queries have an exact form, many memories are ranked with it, and the
    // corpus's English and German forms leave some to the whole query.
    assert!(applied >= 40, "only {applied} queries have an exact form");
    assert!(
        ranked >= 1000,
        "only {ranked} memories ranked with an exact form"
    );
    assert!(residual >= 100, "only {residual} memories match a residue");
}

#[tokio::test]
async fn the_postings_path_returns_the_hits_of_ranking_every_match() {
    let (_db, pool, store) = fresh().await;
    corpus(&store, &pool).await;
    assert_postings_in_sync(&pool).await;
    assert_vectors_are_v2s(&pool).await;

    // The corpus is small: thresholds that send most queries to the postings.
    let eager = SearchSettings {
        few_matches: 0,
        long_list: 120,
        postings_beyond_or: true,
        ..SearchSettings::default()
    };
    let store = store.with_search_settings(eager.clone());
    assert_same(&store, SearchSettings::default(), "default thresholds").await;
    let before = store.search_path_counts();
    assert_same(&store, eager.clone(), "defaults").await;
    let after = store.search_path_counts();
    // The frequent single words and `or` queries (most of the list) took the postings path,
    // the session-filtered raw searches the session scan.
    let fast = after.postings - before.postings;
    assert!(
        fast >= 150,
        "only {fast} layer searches used the postings: {after:?}"
    );
    let sessions = after.session - before.session;
    assert!(
        sessions >= 200,
        "only {sessions} raw searches used the session scan: {after:?}"
    );
    // The `or`-like queries that are not `or` queries took the postings path too (the raw
    // layer: with only 250 insights, no insight list is that long).
    let before = store.search_path_counts();
    for q in OR_LIKE {
        search(&store, q, 10, Some(Layer::Raw)).await;
    }
    let after = store.search_path_counts();
    assert_eq!(
        after.postings - before.postings,
        OR_LIKE.len() as u64,
        "{after:?}"
    );
    let default_reach = store.clone().with_search_settings(SearchSettings {
        postings_beyond_or: false,
        ..eager.clone()
    });
    let before = default_reach.search_path_counts();
    for q in EXCLUDING {
        search(&default_reach, q, 10, Some(Layer::Raw)).await;
    }
    let after = default_reach.search_path_counts();
    assert_eq!(
        after.postings - before.postings,
        EXCLUDING.len() as u64,
        "{after:?}"
    );
    let defaults = store
        .clone()
        .with_search_settings(SearchSettings::default());
    let before = defaults.search_path_counts();
    for q in PAIRS {
        let hits = search(&defaults, q, 10, Some(Layer::Raw)).await;
        // The rarer words' phrases may have no match in this corpus; `the`'s have many.
        assert!(!q.contains("the") || hits.len() == 10, "{q}: {hits:?}");
    }
    let after = defaults.search_path_counts();
    assert_eq!(
        after.postings - before.postings,
        PAIRS.len() as u64,
        "{after:?}"
    );
    excluded_words_filter_and_do_not_score(&store, &pool).await;

    assert_same(
        &store,
        SearchSettings {
            recency_weight: 1.0,
            recency_half_life_days: 7.0,
            importance_weight: 1.0,
            ..eager.clone()
        },
        "strong recency and importance",
    )
    .await;
    assert_same(
        &store,
        SearchSettings {
            recency_weight: 0.0,
            ..eager.clone()
        },
        "recency as tie-breaker only",
    )
    .await;
    assert_same(
        &store,
        SearchSettings {
            languages: vec!["english".to_owned()],
            ..eager.clone()
        },
        "english only",
    )
    .await;

    // Deletes (a whole session, single items of both layers) and content updates go through
    // the triggers; the paths still agree.
    store
        .forget(
            &TENANT,
            Forget {
                session_id: Some("session-3".to_owned()),
                items: None,
            },
        )
        .await
        .expect("forget a session");
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM l2_insights ORDER BY id LIMIT 40")
        .fetch_all(&pool)
        .await
        .expect("some insights");
    store
        .forget(
            &TENANT,
            Forget {
                session_id: None,
                items: Some(
                    ids.iter()
                        .map(|&id| ItemRef {
                            layer: ItemLayer::Insight,
                            id,
                        })
                        .collect(),
                ),
            },
        )
        .await
        .expect("forget insights");
    sqlx::query(
        "UPDATE l0_raw SET content = content || ' compost compost compost' WHERE id % 17 = 0",
    )
    .execute(&pool)
    .await
    .expect("update contents");
    sqlx::query("DELETE FROM l0_raw WHERE id % 29 = 0")
        .execute(&pool)
        .await
        .expect("delete turns");
    assert_postings_in_sync(&pool).await;
    assert_same(&store, eager.clone(), "after deletes and updates").await;

    sqlx::query("TRUNCATE l2_insights")
        .execute(&pool)
        .await
        .expect("truncate the insights");
    assert_postings_in_sync(&pool).await;
    assert_same(&store, eager, "after a truncate").await;
}
