//! Known-item relevance: a seeded corpus where the one relevant memory of each query is known,
//! searched the way `search_memory` ranks now and the way it ranked before (each layer's 200
//! newest matches, `simple` words only; reproduced here in SQL), reported as recall@5 and MRR.
//!
//! The corpus is made of the situations search must handle:
//! - a memory *about* a word, followed by 300 newer memories that mention it in passing (both
//!   layers); an agent asking "what do I know about X" wants the first;
//! - a memory about two words together, followed by 300 newer ones with each word alone;
//! - a memory that uses another form of the query's word (English and German inflections);
//! - unrelated filler turns in between.

use anyhow::{Context, Result};
use cognitive_memory_mcp::memory::{
    ItemLayer, Layer, MemoryLimits, MemoryStore, SearchMemory, SearchSettings,
};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use super::words::{Rng, Vocabulary};

/// The tenant the corpus is stored and searched as (row-level security, migration V7).
static TENANT: std::sync::LazyLock<cognitive_memory_mcp::tenancy::Tenant> =
    std::sync::LazyLock::new(cognitive_memory_mcp::tenancy::Tenant::default);

/// Newer memories mentioning a target's word in passing.
const DISTRACTORS: usize = 300;
/// Known items whose word has [`DISTRACTORS`] newer mentions, per layer.
const FREQUENT_TARGETS: usize = 6;
/// Known items about two words, whose words appear alone in [`DISTRACTORS`] newer turns.
const PAIR_TARGETS: usize = 4;
/// Filler turns between the targets.
const FILLER: usize = 2_000;
/// Cut-off of recall@k.
pub const K: usize = 5;

/// Inflection targets: the stored text and the query, which uses another form of a word.
const INFLECTIONS: &[(&str, &str)] = &[
    (
        "I have been collecting vintage stamps and collected many",
        "collect",
    ),
    (
        "She walked along the coast and walks there every Sunday",
        "walking",
    ),
    ("Die Häuser in der Altstadt wurden renoviert", "Haus"),
    ("Wir haben die Verträge gestern unterschrieben", "Vertrag"),
];

/// The figures of one ranking.
#[derive(Debug, Clone, Copy)]
pub struct Scores {
    pub queries: usize,
    /// Queries whose target is among the first [`K`] hits.
    pub found: usize,
    pub mrr: f64,
}

impl Scores {
    pub fn recall(&self) -> f64 {
        self.found as f64 / self.queries.max(1) as f64
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Relevance {
    pub memories: usize,
    pub now: Scores,
    pub before: Scores,
}

struct KnownItem {
    query: String,
    layer: ItemLayer,
    id: i64,
}

/// Seeds the corpus into the (migrated, empty) database at `url` and scores both rankings.
pub async fn measure(url: &str, vocabulary: &Vocabulary) -> Result<Relevance> {
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&pg_harness::url_with_tenant(url, "default"))
        .await
        .context("connect to the relevance database")?;
    let (items, memories) = seed(&pool, vocabulary).await?;
    let store = MemoryStore::new(
        pool.clone(),
        MemoryLimits {
            max_content_bytes: 65_536,
            default_limit: K as u32,
            max_limit: 50,
        },
    )
    .with_search_settings(SearchSettings::default());

    let mut now = Vec::new();
    let mut before = Vec::new();
    for item in &items {
        let hits = store
            .search(
                &TENANT,
                SearchMemory {
                    query: item.query.clone(),
                    limit: Some(K as u32),
                    layer: Some(Layer::All),
                    session_id: None,
                },
            )
            .await
            .map_err(|err| anyhow::anyhow!("search_memory: {err}"))?;
        now.push(
            hits.hits
                .iter()
                .position(|h| h.layer == item.layer && h.id == item.id),
        );
        let previous: Vec<(String, i64)> = sqlx::query_as(BEFORE)
            .bind(&item.query)
            .bind(K as i64)
            .fetch_all(&pool)
            .await
            .context("the previous ranking")?;
        let layer = match item.layer {
            ItemLayer::Raw => "raw",
            ItemLayer::Insight => "insight",
        };
        before.push(
            previous
                .iter()
                .position(|(l, id)| l == layer && *id == item.id),
        );
    }
    pool.close().await;
    Ok(Relevance {
        memories,
        now: scores(&now),
        before: scores(&before),
    })
}

fn scores(ranks: &[Option<usize>]) -> Scores {
    let found = ranks.iter().filter(|r| r.is_some_and(|r| r < K)).count();
    let mrr = ranks
        .iter()
        .map(|r| r.map_or(0.0, |r| 1.0 / (r as f64 + 1.0)))
        .sum::<f64>()
        / ranks.len().max(1) as f64;
    Scores {
        queries: ranks.len(),
        found,
        mrr,
    }
}

/// A memory to store: its layer, its text and, for a known item, its query.
type Row = (ItemLayer, String, Option<String>);

/// Stores the corpus in order (oldest first); the known items and the number of memories.
async fn seed(pool: &PgPool, vocabulary: &Vocabulary) -> Result<(Vec<KnownItem>, usize)> {
    let mut rng = Rng::new(0x00E1_E7A2);
    // Words of middle frequency, not used by the filler's most frequent ranks.
    let word = |n: usize| vocabulary.word(5_000 + n * 7).to_owned();
    let mut rows: Vec<Row> = Vec::new();
    let filler = |rng: &mut Rng, rows: &mut Vec<Row>, n| {
        for _ in 0..n {
            let mut text = String::new();
            let words = rng.range(8, 30);
            vocabulary.text(rng, words, &mut text);
            rows.push((ItemLayer::Raw, text, None));
        }
    };
    let per_block = FILLER / (2 * FREQUENT_TARGETS + PAIR_TARGETS + INFLECTIONS.len());
    for n in 0..FREQUENT_TARGETS {
        for layer in [ItemLayer::Raw, ItemLayer::Insight] {
            let w = word(n * 2 + usize::from(layer == ItemLayer::Insight));
            let mut about = String::new();
            vocabulary.text(&mut rng, 6, &mut about);
            let about =
                format!("{w}: everything about {w}, how {w} works and why {w} matters; {about}");
            rows.push((layer, about, Some(w.clone())));
            filler(&mut rng, &mut rows, per_block);
            for _ in 0..DISTRACTORS {
                let mut text = String::new();
                let words = rng.range(10, 30);
                vocabulary.text(&mut rng, words, &mut text);
                rows.push((
                    layer,
                    format!("{text} {w} {}", vocabulary.word(rng.range(1, 500))),
                    None,
                ));
            }
        }
    }
    for n in 0..PAIR_TARGETS {
        let (a, b) = (word(100 + n * 2), word(101 + n * 2));
        let mut about = String::new();
        vocabulary.text(&mut rng, 8, &mut about);
        rows.push((
            ItemLayer::Raw,
            format!("{a} {b} {about}"),
            Some(format!("{a} {b}")),
        ));
        filler(&mut rng, &mut rows, per_block);
        for i in 0..DISTRACTORS {
            let mut text = String::new();
            let words = rng.range(10, 30);
            vocabulary.text(&mut rng, words, &mut text);
            let single = if i % 2 == 0 { &a } else { &b };
            rows.push((ItemLayer::Raw, format!("{text} {single}"), None));
        }
    }
    for (text, query) in INFLECTIONS {
        rows.push((
            ItemLayer::Raw,
            (*text).to_owned(),
            Some((*query).to_owned()),
        ));
        filler(&mut rng, &mut rows, per_block);
    }

    let memories = rows.len();
    let mut items = Vec::new();
    // One statement per row, oldest first, so ids and timestamps grow in storing order.
    for (index, (layer, text, query)) in rows.into_iter().enumerate() {
        let minutes = i64::try_from(memories - index).unwrap_or(i64::MAX);
        let id: i64 = match layer {
            ItemLayer::Raw => sqlx::query_scalar(
                "INSERT INTO l0_raw (session_id, speaker, content, created_at)
                 VALUES ('relevance', 'user', $1, now() - $2 * interval '1 minute') RETURNING id",
            ),
            ItemLayer::Insight => sqlx::query_scalar(
                "INSERT INTO l2_insights (content, created_at)
                 VALUES ($1, now() - $2 * interval '1 minute') RETURNING id",
            ),
        }
        .bind(&text)
        .bind(minutes)
        .fetch_one(pool)
        .await
        .context("seed the relevance corpus")?;
        if let Some(query) = query {
            items.push(KnownItem { query, layer, id });
        }
    }
    sqlx::raw_sql("ANALYZE l0_raw, l2_insights")
        .execute(pool)
        .await?;
    Ok((items, memories))
}

/// The ranking `search_memory` had before issue #18 (store.rs at 8fea375): per layer the 200
/// newest matches of `websearch_to_tsquery('simple', …)`, ranked by `ts_rank_cd(…, 33)`, merged,
/// newest first on ties. V2 dropped `content_tsv`; the same vector is computed here.
const BEFORE: &str = "WITH q AS MATERIALIZED (SELECT websearch_to_tsquery('simple', $1) AS q),
raw AS (
    SELECT 'raw'::text AS layer, c.id, ts_rank_cd(c.tsv, q.q, 33)::float8 AS score, c.created_at
    FROM q CROSS JOIN (
        SELECT r.id, to_tsvector('simple', r.content) AS tsv, r.created_at FROM l0_raw r, q
        WHERE to_tsvector('simple', r.content) @@ q.q
        ORDER BY r.id DESC LIMIT 200
    ) c
),
ins AS (
    SELECT 'insight'::text AS layer, c.id, ts_rank_cd(c.tsv, q.q, 33)::float8 AS score, c.created_at
    FROM q CROSS JOIN (
        SELECT i.id, to_tsvector('simple', i.content) AS tsv, i.created_at FROM l2_insights i, q
        WHERE to_tsvector('simple', i.content) @@ q.q
        ORDER BY i.id DESC LIMIT 200
    ) c
)
SELECT layer, id FROM (SELECT * FROM raw UNION ALL SELECT * FROM ins) t
ORDER BY score DESC, created_at DESC, layer DESC, id DESC
LIMIT $2";
