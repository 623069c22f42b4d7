//! `search_memory`: relevance ranking over every memory.
//!
//! Each layer yields its best `limit` hits by `score` (see `sql/raw_best.sql`): `ts_rank_cd`
//! over `search_tsv` (exact words, English and German stems, weighted so exact words and
//! phrases rank first), lightly boosted by recency and, for insights, importance. The two
//! layers are merged on that one scale and cut to `limit`; snippets and the matched words are
//! computed for those hits only (`sql/hit_details.sql`).
//!
//! The reference is every match ranked (the GIN index finds them, each match's row is read):
//! the same statements on stock PostgreSQL as managed services offer it, no extension needed.
//! Two faster paths give the same hits: the impact-ordered postings (`postings.rs`) for `or`
//! queries with many matches, and for a session filter the session's own turns
//! (`sql/raw_session_best.sql`). Why not the RUM extension's ordered index scans: RUM orders by
//! a score of its own, which is not in the order of `ts_rank_cd` (see docs/benchmarks.md,
//! search), so its results would differ from a database without it; and it ranks every match
//! inside the index too.

use std::cmp::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use schemars::JsonSchema;
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use super::hit_terms::{self, HitTerms};
use super::postings::PostingsQuery;
use super::store::MemoryStore;
use super::{Hit, ItemLayer, Layer, MemoryError, SearchMemory, SearchResults};
use crate::telemetry;
use crate::tenancy::Tenant;

const RAW_BEST: &str = include_str!("sql/raw_best.sql");
const INSIGHTS_BEST: &str = include_str!("sql/insights_best.sql");
const HIT_DETAILS: &str = include_str!("sql/hit_details.sql");
const QUERY_SHAPE: &str = include_str!("sql/query_shape.sql");
const SESSION_SIZE: &str = include_str!("sql/session_size.sql");
const RAW_SESSION_BEST: &str = include_str!("sql/raw_session_best.sql");
/// The query's tsquery and its positive part (which the relevance ranks) as text, for
/// `ranking_query.rs`.
pub(super) const SEARCH_QUERY_TEXT: &str =
    "SELECT q::text AS query, querytree(q) AS positive FROM search_query($1, $2) AS q";

/// A session with fewer turns than this is ranked from its own turns (`raw_session_best.sql`);
/// a larger one through the full-text index with the session as a filter (`raw_best.sql`).
pub const SESSION_SCAN_MAX: i64 = 5_000;

/// Languages whose word forms `search_tsv` stores (migration V2); `memory.search.languages`
/// chooses among them.
pub const SEARCH_LANGUAGES: &[&str] = &["english", "german"];

/// How search ranks (from `memory.search`).
#[derive(Debug, Clone, PartialEq)]
pub struct SearchSettings {
    /// Of [`SEARCH_LANGUAGES`], the languages whose word forms a query also matches.
    pub languages: Vec<String>,
    /// Recency boost: a memory stored now scores up to `1 + recency_weight` times its
    /// relevance, one `recency_half_life_days` old `1 + recency_weight / 2`. 0 makes recency a
    /// tie-breaker only.
    pub recency_weight: f64,
    /// Half-life of the recency boost, in days.
    pub recency_half_life_days: f64,
    /// How much an insight's importance (0..1) weighs: its score is multiplied by
    /// `1 + importance_weight × (importance − 0.5)`.
    pub importance_weight: f64,
    /// Answer `or` queries (one word with its forms, or words joined by `or`) from the
    /// impact-ordered postings (migration V6, `postings.rs`), read best first, and a
    /// session-filtered search from the session's own turns: the same results as ranking
    /// every match. `false` ranks every match through the full-text index for every query
    /// (the reference the tests compare with).
    pub postings: bool,
    /// When the postings show that a layer holds at most this many matches, every match is
    /// ranked instead (one statement through the full-text index is cheaper).
    pub few_matches: i64,
    /// A lexeme with more postings than this is frequent: a query that is not an `or` query
    /// is answered from the postings only when exactly one of its lexemes is frequent and
    /// matches by itself (see `postings.rs`).
    pub long_list: i64,
    /// Also count the postings of queries whose positive part is not an `or` query (words
    /// that must all occur, phrases): answered from them only in the case `long_list`
    /// describes, which is rare, so by default their lists are not counted and they rank
    /// every match (the counts cost more than they save on the benchmark's mix,
    /// docs/benchmarks.md). Queries that are `or` queries once their stop words are left out
    /// (`then invoice`) are counted either way.
    pub postings_beyond_or: bool,
    /// Rank as of this instant (seconds since the epoch) instead of the clock's: for tests
    /// that compare searches made one after the other. `None` in the server.
    pub fixed_now: Option<f64>,
}

impl Default for SearchSettings {
    fn default() -> Self {
        SearchSettings {
            languages: SEARCH_LANGUAGES.iter().map(|&l| l.to_owned()).collect(),
            recency_weight: 0.1,
            recency_half_life_days: 30.0,
            importance_weight: 0.2,
            postings: true,
            few_matches: super::postings::FEW_MATCHES,
            long_list: super::postings::LONG_LIST,
            postings_beyond_or: false,
            fixed_now: None,
        }
    }
}

impl SearchSettings {
    /// The settings configured in `memory.search` (validated by the configuration).
    pub fn from_config(cfg: &crate::config::SearchConfig) -> Self {
        SearchSettings {
            languages: cfg.languages.clone(),
            recency_weight: cfg.recency_weight,
            recency_half_life_days: cfg.recency_half_life_days,
            importance_weight: cfg.importance_weight,
            ..SearchSettings::default()
        }
    }

    fn half_life_secs(&self) -> f64 {
        self.recency_half_life_days * 86_400.0
    }
}

/// How searches rank, as `memory_status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct SearchStatus {
    /// Languages whose word forms queries match besides the exact words.
    pub languages: Vec<String>,
    /// The recency boost (`memory.search.recency_weight`); 0: recency breaks ties only.
    pub recency_weight: f64,
    /// Its half-life in days.
    pub recency_half_life_days: f64,
    /// How much an insight's importance weighs (`memory.search.importance_weight`).
    pub importance_weight: f64,
    /// Whether `or` queries (one word with its forms, or words joined by `or`) with many
    /// matches are answered from the impact-ordered postings (table `search_postings`, stock
    /// PostgreSQL) and session-filtered searches from the session's turns: the same hits as
    /// ranking every match, which other queries do.
    pub postings: bool,
}

/// The parameter a ranking statement takes after the five common ones (`$6`; `$7` is the
/// instant the recency boost is computed for).
#[derive(Debug, Clone, Copy)]
enum Extra<'a> {
    /// raw_best.sql: the session filter, or none.
    Session(Option<&'a str>),
    /// insights_best.sql: `importance_weight`.
    ImportanceWeight,
}

/// What each layer's search is asked (one search, both layers).
#[derive(Clone, Copy)]
struct LayerSearch<'a> {
    query: &'a str,
    /// The session filter of the raw turns.
    session: Option<&'a str>,
    postings_query: Option<&'a PostingsQuery>,
    /// The query's tsquery with fewer items (`ranking_query.rs`), when known.
    ranking: Option<&'a str>,
    /// Its positive part with fewer items, which the relevance ranks, when known.
    positive: Option<&'a str>,
    limit: u32,
    /// The instant the recency boost is computed for.
    now: f64,
}

/// One ranked candidate of one layer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ranked {
    pub(super) layer: ItemLayer,
    pub(super) id: i64,
    /// Seconds since the epoch (ties: newest first).
    pub(super) created: f64,
    pub(super) relevance: f64,
    pub(super) score: f64,
}

/// Best first: score, then newest, then raw before insight, then highest id.
pub(super) fn best_first(a: &Ranked, b: &Ranked) -> Ordering {
    b.score
        .total_cmp(&a.score)
        .then(b.created.total_cmp(&a.created))
        .then(layer_rank(b.layer).cmp(&layer_rank(a.layer)))
        .then(b.id.cmp(&a.id))
}

fn layer_rank(layer: ItemLayer) -> u8 {
    match layer {
        ItemLayer::Insight => 0,
        ItemLayer::Raw => 1,
    }
}

impl MemoryStore {
    /// How searches rank here (from the settings).
    pub fn search_status(&self) -> SearchStatus {
        let settings = self.search_settings();
        SearchStatus {
            languages: settings.languages.clone(),
            recency_weight: settings.recency_weight,
            recency_half_life_days: settings.recency_half_life_days,
            importance_weight: settings.importance_weight,
            postings: settings.postings,
        }
    }

    /// Full-text search (web-search syntax), best first over every match; see the module
    /// documentation. With `session_id`, raw turns are filtered to that session; insights are
    /// not (see [`SearchMemory`]). A query without any word (only punctuation) finds nothing;
    /// one with only excluded words (`-word`) is [`MemoryError::Invalid`].
    pub async fn search(
        &self,
        tenant: &Tenant,
        p: SearchMemory,
    ) -> Result<SearchResults, MemoryError> {
        let (layer, limit) = p.validate(self.limits())?;
        let session = p.session_id.as_deref();
        // One instant for the recency boost of both layers.
        let now = self.search_settings().fixed_now.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64())
        });
        // One connection for the whole search (the tenant set once): the query's lexemes, the
        // first layer and the hits' details; with both layers, the insights are ranked side by
        // side on a second one.
        let mut lease = self.lease(tenant).await?;
        // Any query with a positive word may be answered from the impact-ordered postings
        // (postings.rs); the others (and a fallback) rank every match. Whether the positive
        // part is an `or` query is the database's to say: a stop word is left out of the
        // query (V11), so `then invoice` is one.
        let settings = self.search_settings();
        let postings_query = if settings.postings {
            self.postings_query(lease.conn(), &p.query, settings.postings_beyond_or)
                .await?
        } else {
            None
        };
        // The query's tsquery with fewer items to rank with (ranking_query.rs); not with the
        // postings off, the reference the tests compare with.
        // Why the hits match is read from the positive part as PostgreSQL printed it
        // (hit_terms.rs), which the reference path also fetches, for that alone.
        let (ranking, positive, terms) = match &postings_query {
            Some(postings_query) => (
                Some(postings_query.tsquery.clone()),
                Some(postings_query.positive.clone()),
                postings_query.terms.clone(),
            ),
            None => {
                let (ranking, positive, terms) = self.ranking_query(lease.conn(), &p.query).await?;
                match settings.postings {
                    true => (ranking, positive, terms),
                    false => (None, None, terms),
                }
            }
        };
        let search = LayerSearch {
            query: &p.query,
            session,
            postings_query: postings_query.as_ref(),
            ranking: ranking.as_deref(),
            positive: positive.as_deref(),
            limit,
            now,
        };
        let wants_raw = layer != Layer::Insights;
        let wants_insights = layer != Layer::Raw;
        // With both layers, the insights side by side on a second connection when the pool has
        // one idle (never behind a transaction pooler, `try_lease`); otherwise one after the
        // other on this one (never waiting for a second connection while holding one).
        let second = match wants_raw && wants_insights {
            true => self.try_lease(tenant).await?,
            false => None,
        };
        // Boxed: each layer's search is a deep future, and two of them inline (plus the copies a
        // debug build makes) overflowed a 2 MiB test thread's stack.
        let (raw, insights) = match second {
            Some(mut second) => {
                let raw = self.best_of_layer(lease.conn(), ItemLayer::Raw, &search);
                let insights = async {
                    let best = self
                        .best_of_layer(second.conn(), ItemLayer::Insight, &search)
                        .await?;
                    second.done().await?;
                    Ok::<_, MemoryError>(best)
                };
                tokio::try_join!(Box::pin(raw), Box::pin(insights))?
            }
            None => {
                let mut raw = Vec::new();
                if wants_raw {
                    raw =
                        Box::pin(self.best_of_layer(lease.conn(), ItemLayer::Raw, &search)).await?;
                }
                let mut insights = Vec::new();
                if wants_insights {
                    insights =
                        Box::pin(self.best_of_layer(lease.conn(), ItemLayer::Insight, &search))
                            .await?;
                }
                (raw, insights)
            }
        };
        let mut ranked = raw;
        ranked.extend(insights);
        ranked.sort_by(best_first);
        ranked.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        if ranked.is_empty() {
            self.explain_no_hits(lease.conn(), &p.query).await?;
            lease.done().await?;
            return Ok(SearchResults { hits: Vec::new() });
        }
        let hits = self
            .hit_details(lease.conn(), terms.unwrap_or_default(), &ranked)
            .await?;
        lease.done().await?;
        Ok(SearchResults { hits })
    }

    /// The best `limit` of one layer: from the postings without a session filter, when they
    /// prove the result; with a session filter, from the session's own turns when it is
    /// smaller than [`SESSION_SCAN_MAX`]; otherwise every match ranked ([`RAW_BEST`],
    /// [`INSIGHTS_BEST`]). All give the same hits; with [`SearchSettings::postings`] off only
    /// the last is used (the reference the tests compare with).
    async fn best_of_layer(
        &self,
        conn: &mut PgConnection,
        layer: ItemLayer,
        search: &LayerSearch<'_>,
    ) -> Result<Vec<Ranked>, MemoryError> {
        let LayerSearch {
            query,
            postings_query,
            limit,
            now,
            ..
        } = *search;
        // The session filter is the raw turns' (see [`SearchMemory`]).
        let session = search.session.filter(|_| layer == ItemLayer::Raw);
        if let Some(postings_query) = postings_query
            && session.is_none()
            && let Some(best) = self
                .best_by_postings(conn, layer, postings_query, limit, now)
                .await?
        {
            self.search_paths().count_postings();
            return Ok(best);
        }
        if let Some(session) = session
            && layer == ItemLayer::Raw
            && self.search_settings().postings
            && self.session_size(conn, session).await? < SESSION_SCAN_MAX
        {
            self.search_paths().count_session();
            return self
                .ranked_rows(
                    conn,
                    RAW_SESSION_BEST,
                    layer,
                    query,
                    (search.ranking, search.positive),
                    limit,
                    Extra::Session(Some(session)),
                    now,
                )
                .await;
        }
        self.search_paths().count_every_match();
        let (sql, extra) = match layer {
            ItemLayer::Raw => (RAW_BEST, Extra::Session(session)),
            ItemLayer::Insight => (INSIGHTS_BEST, Extra::ImportanceWeight),
        };
        let ranking = (search.ranking, search.positive);
        self.ranked_rows(conn, sql, layer, query, ranking, limit, extra, now)
            .await
    }

    /// `search_query`'s tsquery for `query` and its positive part, each rewritten with fewer
    /// items (ranking_query.rs), and why hits of it match (hit_terms.rs).
    async fn ranking_query(
        &self,
        conn: &mut PgConnection,
        query: &str,
    ) -> Result<(Option<String>, Option<String>, Option<HitTerms>), MemoryError> {
        let row = telemetry::statement(
            "SELECT search_query",
            sqlx::query(SEARCH_QUERY_TEXT)
                .bind(query)
                .bind(&self.search_settings().languages)
                .persistent(self.named_statements())
                .fetch_one(conn),
        )
        .await?;
        // An empty query (no word) and one without a positive word are left to the statements.
        let simplified = |text: Option<String>| {
            text.filter(|text| !text.trim().is_empty() && text.trim() != "T")
                .map(|text| super::ranking_query::simplified(&text).unwrap_or(text))
        };
        let full = simplified(row.try_get("query")?);
        let positive: Option<String> = row.try_get("positive")?;
        let terms = positive
            .as_deref()
            .and_then(|p| hit_terms::of(p, &self.search_settings().languages));
        let positive = simplified(positive);
        Ok((full, positive, terms))
    }

    /// The turns of `session`, counted up to [`SESSION_SCAN_MAX`].
    async fn session_size(
        &self,
        conn: &mut PgConnection,
        session: &str,
    ) -> Result<i64, MemoryError> {
        let turns: i64 = telemetry::statement(
            "SELECT l0_raw session size",
            sqlx::query_scalar(SESSION_SIZE)
                .bind(session)
                .bind(SESSION_SCAN_MAX)
                .persistent(self.named_statements())
                .fetch_one(conn),
        )
        .await?;
        Ok(turns)
    }

    #[allow(clippy::too_many_arguments)]
    async fn ranked_rows(
        &self,
        conn: &mut PgConnection,
        sql: &'static str,
        layer: ItemLayer,
        query: &str,
        (ranking, positive): (Option<&str>, Option<&str>),
        count: u32,
        extra: Extra<'_>,
        now: f64,
    ) -> Result<Vec<Ranked>, MemoryError> {
        let settings = self.search_settings();
        // Planned for these values each time (an unnamed statement): see the planner notes.
        let statement = sqlx::query(sql)
            .bind(query)
            .bind(&settings.languages)
            .bind(i64::from(count))
            .bind(settings.recency_weight)
            .bind(settings.half_life_secs())
            .persistent(false);
        let statement = match extra {
            Extra::Session(session) => statement.bind(session),
            Extra::ImportanceWeight => statement.bind(settings.importance_weight),
        };
        let exact = positive.and_then(super::ranking_query::exact_form);
        let (residue, exact) = exact.unzip();
        let statement = statement
            .bind(now)
            .bind(ranking)
            .bind(positive)
            .bind(residue)
            .bind(exact);
        let summary = match (layer, sql == RAW_SESSION_BEST) {
            (ItemLayer::Raw, true) => "SELECT l0_raw session ranked",
            (ItemLayer::Raw, false) => "SELECT l0_raw ranked",
            (ItemLayer::Insight, _) => "SELECT l2_insights ranked",
        };
        let rows = telemetry::statement(summary, statement.fetch_all(conn)).await?;
        rows.iter()
            .map(|row| ranked(row, layer))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(MemoryError::from)
    }

    async fn hit_details(
        &self,
        conn: &mut PgConnection,
        terms: HitTerms,
        ranked: &[Ranked],
    ) -> Result<Vec<Hit>, MemoryError> {
        let layers: Vec<&str> = ranked
            .iter()
            .map(|r| match r.layer {
                ItemLayer::Raw => "raw",
                ItemLayer::Insight => "insight",
            })
            .collect();
        let ids: Vec<i64> = ranked.iter().map(|r| r.id).collect();
        let rows = telemetry::statement(
            "SELECT hit_details",
            sqlx::query(HIT_DETAILS)
                .bind(&layers)
                .bind(&ids)
                .bind(&terms.words)
                .bind(&terms.forms)
                .bind(terms.exact_marks)
                .bind(terms.language_marks)
                .bind(&self.search_settings().languages)
                .persistent(self.named_statements())
                .fetch_all(conn),
        )
        .await?;
        let mut hits = Vec::with_capacity(rows.len());
        for (row, rank) in rows.iter().zip(ranked) {
            let found: bool = row.try_get("found")?;
            if !found {
                continue;
            }
            hits.push(Hit {
                layer: rank.layer,
                id: rank.id,
                snippet: row.try_get("snippet")?,
                // rank / (rank + 1): into 0..1, the order unchanged.
                score: rank.score / (rank.score + 1.0),
                relevance: rank.relevance,
                matched_words: row.try_get("matched_words")?,
                matched_forms: row.try_get("matched_forms")?,
                created_at: row.try_get("created_at")?,
                session_id: row.try_get("session_id")?,
            });
        }
        Ok(hits)
    }

    /// After a search without hits: an error if the query could never match.
    async fn explain_no_hits(
        &self,
        conn: &mut PgConnection,
        query: &str,
    ) -> Result<(), MemoryError> {
        let row = telemetry::statement(
            "SELECT query_shape",
            sqlx::query(QUERY_SHAPE)
                .bind(query)
                .bind(&self.search_settings().languages)
                .persistent(self.named_statements())
                .fetch_one(conn),
        )
        .await?;
        let empty: bool = row.try_get("empty")?;
        let unindexable: bool = row.try_get("unindexable")?;
        if !empty && unindexable {
            return Err(MemoryError::invalid(
                "query",
                "needs at least one word that is not excluded: a query of only -word terms \
                 would match almost everything",
            ));
        }
        Ok(())
    }
}

pub(super) fn ranked(row: &PgRow, layer: ItemLayer) -> Result<Ranked, sqlx::Error> {
    Ok(Ranked {
        layer,
        id: row.try_get("id")?,
        created: row.try_get("created")?,
        relevance: row.try_get("relevance")?,
        score: row.try_get("score")?,
    })
}

/// The tool description of `search_memory` (one source for what it says about ranking).
pub const SEARCH_TOOL_DESCRIPTION: &str = "Full-text search over insights and raw dialogue, best matches first over every stored memory. The query uses web-search syntax: words, \"exact phrase\", or, -excluded. Words also match their English and German forms (collecting finds collect), exact words and phrases rank first; stop words (the, und) are ignored unless the query has nothing else. Each hit carries its score, relevance and the words it matched; recency and an insight's importance boost the score lightly.";
