//! Search relevance against real PostgreSQL (a pg-harness cluster, a fresh migrated database
//! per test): ranking over the whole history in both layers and in a session, word forms in
//! English and German with exact forms first, and the search settings.

use cognitive_memory_mcp::memory::{
    Hit, ItemLayer, Layer, MemoryLimits, MemoryStore, SearchMemory, SearchSettings, Speaker,
    StoreInsight, StoreRawDialogue,
};
use pg_harness::{TestCluster, TestDatabase};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// The tenant these tests store and read as (row-level security, migration V7).
static TENANT: std::sync::LazyLock<cognitive_memory_mcp::tenancy::Tenant> =
    std::sync::LazyLock::new(cognitive_memory_mcp::tenancy::Tenant::default);

const LIMITS: MemoryLimits = MemoryLimits {
    max_content_bytes: 4096,
    default_limit: 5,
    max_limit: 50,
};

async fn pool_of(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(4)
        .connect(url)
        .await
        .expect("connect to the test database")
}

/// A fresh migrated database.
async fn fresh() -> (TestDatabase, MemoryStore) {
    let db = TestCluster::shared()
        .fresh_database()
        .await
        .expect("a fresh test database");
    let pool = pool_of(&db.url).await;
    db::migrate(&pool).await.expect("migrate");
    (db, MemoryStore::new(pool, LIMITS))
}

fn query(text: &str) -> SearchMemory {
    SearchMemory {
        query: text.to_owned(),
        limit: None,
        layer: None,
        session_id: None,
    }
}

async fn put(store: &MemoryStore, session: &str, content: &str) -> i64 {
    store
        .store_raw(
            &TENANT,
            StoreRawDialogue {
                session_id: session.to_owned(),
                speaker: Speaker::User,
                content: content.to_owned(),
                metadata: None,
            },
        )
        .await
        .expect("store a turn")
        .id
}

async fn put_insight(store: &MemoryStore, content: &str, importance: f64) -> i64 {
    store
        .store_insight(
            &TENANT,
            StoreInsight {
                content: content.to_owned(),
                source_ids: None,
                tags: None,
                importance: Some(importance),
            },
        )
        .await
        .expect("store an insight")
        .id
}

async fn hits(store: &MemoryStore, search: SearchMemory) -> Vec<Hit> {
    store.search(&TENANT, search).await.expect("search").hits
}

fn ids(hits: &[Hit]) -> Vec<(ItemLayer, i64)> {
    hits.iter().map(|h| (h.layer, h.id)).collect()
}

/// One old memory about a word, then 300 newer ones mentioning it in passing, in both layers.
async fn whole_history(store: &MemoryStore) {
    let old_turn = put(
        store,
        "garden",
        "compost: how I build the compost heap, turn the compost weekly and sieve the compost",
    )
    .await;
    let old_insight = put_insight(
        store,
        "Prefers hot compost; the compost heap is turned weekly, compost sieved in spring",
        0.5,
    )
    .await;
    for n in 0..300 {
        let session = if n % 3 == 0 { "garden" } else { "kitchen" };
        put(
            store,
            session,
            &format!("note {n}: the compost bin was mentioned while talking about something else"),
        )
        .await;
        put_insight(
            store,
            &format!("remark {n} mentions compost among many other things"),
            1.0,
        )
        .await;
    }

    let raw = hits(
        store,
        SearchMemory {
            layer: Some(Layer::Raw),
            ..query("compost")
        },
    )
    .await;
    assert_eq!(raw.len(), 5);
    assert_eq!(raw[0].id, old_turn, "{raw:?}");
    assert!(raw[0].relevance > raw[1].relevance * 3.0, "{raw:?}");
    assert_eq!(raw[0].matched_words, ["compost"]);

    let insights = hits(
        store,
        SearchMemory {
            layer: Some(Layer::Insights),
            ..query("compost")
        },
    )
    .await;
    assert_eq!(
        insights[0].id, old_insight,
        "the best insight ranks first although 300 newer, more important ones follow: {insights:?}"
    );

    let all = hits(store, query("compost")).await;
    let top2: std::collections::HashSet<_> = ids(&all[..2]).into_iter().collect();
    assert_eq!(
        top2,
        [
            (ItemLayer::Raw, old_turn),
            (ItemLayer::Insight, old_insight)
        ]
        .into(),
        "{all:?}"
    );

    let in_session = hits(
        store,
        SearchMemory {
            layer: Some(Layer::Raw),
            session_id: Some("garden".to_owned()),
            ..query("compost")
        },
    )
    .await;
    assert_eq!(in_session[0].id, old_turn, "{in_session:?}");
    assert!(
        in_session
            .iter()
            .all(|h| h.session_id.as_deref() == Some("garden"))
    );
}

#[tokio::test]
async fn the_best_match_over_the_whole_history_ranks_first_in_both_layers_and_in_a_session() {
    let (_db, store) = fresh().await;
    whole_history(&store).await;
}

#[tokio::test]
async fn inflections_match_in_english_and_german_and_exact_forms_rank_first() {
    let (_db, store) = fresh().await;
    let collecting = put(&store, "s", "I was collecting stamps all summer").await;
    let collect = put(&store, "s", "we collect stamps all summer").await;
    let haeuser = put(&store, "s", "Die Häuser am See sind alt").await;
    let haus = put(&store, "s", "Das Haus am See ist alt").await;
    let mixed = put(
        &store,
        "s",
        "Meeting: wir haben die Verträge unterschrieben and shipped the releases",
    )
    .await;

    let found = hits(&store, query("collect")).await;
    assert_eq!(
        ids(&found),
        [(ItemLayer::Raw, collect), (ItemLayer::Raw, collecting)],
        "exact form first: {found:?}"
    );
    assert!(found[0].score > found[1].score);
    assert_eq!(found[0].matched_words, ["collect"]);
    assert!(found[1].matched_words.is_empty(), "{found:?}");
    assert_eq!(found[1].matched_forms, ["collect (english)"]);

    let found = hits(&store, query("collecting")).await;
    assert_eq!(
        ids(&found),
        [(ItemLayer::Raw, collecting), (ItemLayer::Raw, collect)],
        "{found:?}"
    );
    // A hit with none of the exact words marks the first language's forms in its snippet.
    assert!(found[1].matched_words.is_empty(), "{found:?}");
    assert!(found[1].snippet.contains("**collect**"), "{found:?}");

    // An excluded word removes the memories that hold it as written; one that holds only
    // another form still matches, and the excluded word is not among why it matched.
    let found = hits(&store, query("stamps -collect")).await;
    assert_eq!(ids(&found), [(ItemLayer::Raw, collecting)], "{found:?}");
    assert_eq!(found[0].matched_words, ["stamps"], "{found:?}");
    assert_eq!(found[0].matched_forms, ["stamp (english)"], "{found:?}");
    assert!(found[0].snippet.contains("**stamps**"), "{found:?}");
    // English drops `the` (a stop word) and with it the exclusion, so the English branch finds
    // a memory that holds it: `the` is still neither a matched word nor marked in the snippet.
    let heap = put(&store, "s", "the compost heap is warm").await;
    let found = hits(&store, query("compost -the")).await;
    assert_eq!(ids(&found), [(ItemLayer::Raw, heap)], "{found:?}");
    assert_eq!(found[0].matched_words, ["compost"], "{found:?}");
    assert!(found[0].snippet.contains("**compost**"), "{found:?}");
    assert!(!found[0].snippet.contains("**the**"), "{found:?}");

    let found = hits(&store, query("Haus")).await;
    assert_eq!(
        ids(&found),
        [(ItemLayer::Raw, haus), (ItemLayer::Raw, haeuser)],
        "{found:?}"
    );
    assert_eq!(found[1].matched_forms, ["haus (german)"]);
    let found = hits(&store, query("Häuser")).await;
    assert_eq!(
        ids(&found),
        [(ItemLayer::Raw, haeuser), (ItemLayer::Raw, haus)],
        "{found:?}"
    );

    // A memory in two languages is found through either.
    assert_eq!(
        ids(&hits(&store, query("Vertrag")).await),
        [(ItemLayer::Raw, mixed)]
    );
    assert_eq!(
        ids(&hits(&store, query("release")).await),
        [(ItemLayer::Raw, mixed)]
    );
    // A phrase matches exact words, in order.
    let found = hits(&store, query("\"collect stamps\"")).await;
    assert_eq!(found[0].id, collect, "{found:?}");

    // Exact words only, when configured so.
    let exact_only = store.clone().with_search_settings(SearchSettings {
        languages: Vec::new(),
        ..SearchSettings::default()
    });
    assert_eq!(
        ids(&hits(&exact_only, query("collect")).await),
        [(ItemLayer::Raw, collect)]
    );
    // English only: German forms are not matched.
    let english = store.clone().with_search_settings(SearchSettings {
        languages: vec!["english".to_owned()],
        ..SearchSettings::default()
    });
    assert_eq!(
        ids(&hits(&english, query("Haus")).await),
        [(ItemLayer::Raw, haus)]
    );
}

#[tokio::test]
async fn an_excluded_word_beside_a_stop_word_is_searched_and_only_exclusions_are_refused() {
    let (_db, store) = fresh().await;
    let wanted = put(&store, "s", "your garden in spring").await;
    put(&store, "s", "your money in the bank").await;
    put(&store, "s", "garden money").await;
    // "your" is an English stop word: the English branch was left with `!money` alone (V9).
    let found = hits(&store, query("your -money")).await;
    assert_eq!(ids(&found), [(ItemLayer::Raw, wanted)], "{found:?}");
    let found = hits(&store, query("\"your garden\" -money")).await;
    assert_eq!(ids(&found), [(ItemLayer::Raw, wanted)], "{found:?}");
    assert!(store.search(&TENANT, query("-money")).await.is_err());
    assert!(store.search(&TENANT, query("-your -money")).await.is_err());
}

/// A word that one configured language ignores as a stop word is left out of every branch of
/// the query (V11): `then invoice` finds and ranks what `invoice` finds, in both layers; a
/// phrase keeps its distance; a query of only stop words still finds what it names.
#[tokio::test]
async fn stop_words_are_left_out_of_every_branch_unless_nothing_else_is_left() {
    let (_db, store) = fresh().await;
    let alone = put(&store, "s", "the invoice for march").await;
    let twice = put(&store, "s", "invoice after invoice, then another invoice").await;
    let then = put(&store, "s", "then the invoices were paid").await;
    put(&store, "s", "then we went home").await;
    let german = put(&store, "s", "die Rechnung und dann die Rechnungen").await;
    let hamlet = put(&store, "s", "to be or not to be").await;
    put(&store, "s", "invoice march totals").await;
    put_insight(&store, "every invoice is checked twice", 0.5).await;

    let pairs = [
        ("then invoice", "invoice"),
        ("invoice then", "invoice"),
        // `und` and `die` are German stop words, left out of the English and exact branches too.
        ("Rechnung und", "Rechnung"),
        ("die Rechnungen", "Rechnungen"),
        ("then or invoice", "invoice"),
        ("invoice -then", "invoice"),
    ];
    for (with, without) in pairs {
        let a = hits(&store, query(with)).await;
        let b = hits(&store, query(without)).await;
        assert!(!a.is_empty(), "{with}: no hits");
        let key = |h: &[Hit]| {
            h.iter()
                .map(|h| {
                    (
                        h.layer,
                        h.id,
                        format!("{:.9}", h.relevance),
                        h.matched_words.clone(),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(key(&a), key(&b), "{with} vs {without}");
    }
    let found = hits(&store, query("then invoice")).await;
    assert_eq!(found[0].id, twice, "{found:?}");
    assert!(ids(&found).contains(&(ItemLayer::Raw, alone)), "{found:?}");
    assert!(ids(&found).contains(&(ItemLayer::Raw, then)), "{found:?}");
    assert!(
        found.iter().all(
            |h| !h.matched_words.iter().any(|w| w == "then") && !h.snippet.contains("**then**")
        ),
        "{found:?}"
    );
    assert_eq!(
        ids(&hits(&store, query("Rechnung und")).await),
        [(ItemLayer::Raw, german)]
    );

    // A phrase keeps the stop word's place: one word between (not "invoice march").
    assert_eq!(
        ids(&hits(&store, query("\"invoice the march\"")).await),
        [(ItemLayer::Raw, alone)]
    );

    // Only stop words: searched with them — the exact words, and each language that drops
    // none of them. German drops `also`, English `the`: neither matches the other word alone
    // (before, `"the also"` found every memory with `the`).
    let also = put(&store, "s", "the also ran").await;
    put(&store, "s", "also a dog").await;
    let found = hits(&store, query("\"the also\"")).await;
    assert_eq!(ids(&found), [(ItemLayer::Raw, also)], "{found:?}");
    assert_eq!(found[0].matched_words, ["also", "the"], "{found:?}");
    let found = hits(&store, query("to be or not to be")).await;
    assert_eq!(ids(&found), [(ItemLayer::Raw, hamlet)], "{found:?}");
    let found = hits(&store, query("\"not to be\"")).await;
    assert_eq!(ids(&found), [(ItemLayer::Raw, hamlet)], "{found:?}");
}

/// A word form of one language that is the other language's stop word is not searched for
/// (V13): the German stem of `note` is `not` and of `theme` `them`, the English stem of `dies`
/// is `die`, and every memory holds each of its words' forms in both languages — so before,
/// `note` found every memory with "not". The exact word and its other forms still match; the
/// documented loss is that language's other inflections of such a word (`Noten`).
#[tokio::test]
async fn a_form_that_is_the_other_languages_stop_word_matches_nothing_by_itself() {
    let (_db, store) = fresh().await;
    let note = put(&store, "s", "a note about the meeting").await;
    let notes = put(&store, "s", "meeting notes were sent").await;
    put(&store, "s", "I do not want the meeting").await;
    put(&store, "s", "tell them about the meeting").await;
    let theme = put(&store, "s", "the theme of the meeting").await;
    let noten = put(&store, "s", "die Noten der Prüfung").await;
    let dies = put(&store, "s", "the plant dies in winter").await;
    put(&store, "s", "die Pflanze im Winter").await;

    let found = hits(&store, query("note")).await;
    assert_eq!(
        ids(&found),
        [(ItemLayer::Raw, note), (ItemLayer::Raw, notes)],
        "{found:?}"
    );
    assert_eq!(found[1].matched_forms, ["note (english)"], "{found:?}");
    // Both words, in either form (closer together ranks higher), and not "not".
    let mut found: Vec<i64> = hits(&store, query("meeting note"))
        .await
        .iter()
        .map(|h| h.id)
        .collect();
    found.sort_unstable();
    assert_eq!(found, [note, notes]);
    assert_eq!(
        ids(&hits(&store, query("theme")).await),
        [(ItemLayer::Raw, theme)]
    );
    assert_eq!(
        ids(&hits(&store, query("Noten")).await),
        [(ItemLayer::Raw, noten)]
    );
    assert_eq!(
        ids(&hits(&store, query("dies")).await),
        [(ItemLayer::Raw, dies)]
    );
    // With one language configured its forms are all searched: German `note` is `not`.
    let german = store.clone().with_search_settings(SearchSettings {
        languages: vec!["german".to_owned()],
        ..SearchSettings::default()
    });
    assert_eq!(hits(&german, query("note")).await.len(), 4);
}

/// A search holds one connection for all its statements and takes a second one for the other
/// layer only if the pool has one idle: many concurrent searches on a pool of two never wait
/// for each other's connections (a deadlock until the acquire timeout), and each finds what a
/// lone search finds.
#[tokio::test]
async fn concurrent_searches_on_a_small_pool_share_it_without_deadlock() {
    let db = TestCluster::shared()
        .fresh_database()
        .await
        .expect("a fresh test database");
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(std::time::Duration::from_secs(30))
        .connect(&db.url)
        .await
        .expect("connect to the test database");
    db::migrate(&pool).await.expect("migrate");
    let store = MemoryStore::new(pool, LIMITS);
    whole_history(&store).await;
    let alone = ids(&hits(&store, query("compost")).await);
    assert_eq!(alone.len(), 5, "{alone:?}");
    let searches = (0..16).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { ids(&hits(&store, query("compost")).await) })
    });
    for search in searches.collect::<Vec<_>>() {
        // A search waiting for a connection that another waiting search holds would fail here
        // with the pool's timeout.
        assert_eq!(search.await.expect("search task"), alone);
    }
}

/// The words, forms and snippet queries that `hit_details.sql` reads hits with are computed in
/// Rust from the query's positive part (`hit_terms.rs`); they are what building each branch of
/// the query in SQL names (how `hit_details.sql` computed them before), for every language
/// setting and query shape.
#[tokio::test]
async fn hit_terms_are_what_the_query_branches_name() {
    let (db, _store) = fresh().await;
    let pool = pool_of(&db.url).await;
    let queries = [
        "collect",
        "collecting stamps",
        "Häusern",
        "meeting or release",
        "coffee or tea or zeta200",
        "o'clock",
        "don't o'clock",
        "note",
        "meeting note",
        "theme -note",
        "dies",
        "die Rechnungen",
        "then invoice",
        "\"collect stamps\"",
        "\"invoice the march\"",
        "compost -\"the garden\"",
        "garden or compost -the",
        "a or b c",
        "\"the and\"",
        "\"the and\" or was",
        "to be or not to be",
        "your -money",
        "the -compost",
        "well-known e-mail",
    ];
    let settings: [&[&str]; 5] = [
        &["english", "german"],
        &["german", "english"],
        &["english"],
        &["german"],
        &[],
    ];
    let mut compared = 0;
    for languages in settings {
        let languages: Vec<String> = languages.iter().map(|&l| l.to_owned()).collect();
        for q in queries {
            let positive: Option<String> =
                sqlx::query_scalar("SELECT querytree(search_query($1, $2))")
                    .bind(q)
                    .bind(&languages)
                    .fetch_one(&pool)
                    .await
                    .expect("the positive part");
            let positive = positive.unwrap_or_default();
            let terms = cognitive_memory_mcp::memory::hit_terms_of(&positive, &languages);
            if positive.is_empty() || positive == "T" {
                assert_eq!(terms, None, "{q} {languages:?}");
                continue;
            }
            let (words, forms, exact_marks, language_marks) =
                terms.unwrap_or_else(|| panic!("{q} {languages:?}: {positive} has terms"));
            let row: (Vec<String>, Vec<String>, bool, bool) = sqlx::query_as(
                "WITH c AS MATERIALIZED (SELECT search_configs($1, $2::text[]) AS c)
                 SELECT ARRAY(SELECT DISTINCT replace(replace(m[1], '''''', ''''), '\\\\', '\\')
                              FROM regexp_matches(querytree(websearch_to_tsquery(c.c[1], $1)), '''((?:[^'']|'''')*)''', 'g') AS m
                              ORDER BY 1),
                        ARRAY(SELECT DISTINCT l.weight || t.lexeme
                              FROM (VALUES ('english', 'B', 2), ('german', 'C', 3)) AS l(language, weight, n),
                              LATERAL (SELECT replace(replace(m[1], '''''', ''''), '\\\\', '\\')
                                       FROM regexp_matches(querytree(search_language_forms($1, $2::text[], l.language, c.c[l.n], c.c[1])), '''((?:[^'']|'''')*)''', 'g') AS m) AS t(lexeme)
                              WHERE l.language = ANY ($2::text[])
                              ORDER BY 1),
                        (SELECT querytree(t)::tsquery FROM websearch_to_tsquery(c.c[1], $1) AS t) = $3::tsquery,
                        (SELECT querytree(t)::tsquery
                         FROM search_language_forms($1, $2::text[], ($2::text[])[1],
                             CASE WHEN ($2::text[])[1] = 'english' THEN coalesce(c.c[2], c.c[1])
                                  ELSE coalesce(c.c[3], c.c[1]) END,
                             c.c[1]) AS t) = $4::tsquery
                 FROM c",
            )
            .bind(q)
            .bind(&languages)
            .bind(&exact_marks)
            .bind(&language_marks)
            .fetch_one(&pool)
            .await
            .expect("the branches in SQL");
            let label = format!("{q} {languages:?}: {positive}");
            assert_eq!(words, row.0, "{label}");
            assert_eq!(forms, row.1, "{label}");
            assert!(row.2, "{label}: exact marks {exact_marks:?}");
            // Without languages the snippets mark the exact words only.
            assert!(
                row.3 || languages.is_empty(),
                "{label}: language marks {language_marks:?}"
            );
            compared += 1;
        }
    }
    assert!(compared >= 100, "only {compared} queries compared");
}
