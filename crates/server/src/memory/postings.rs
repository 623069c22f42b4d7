//! The fast path of `search_memory`: impact-ordered postings (migration V6).
//!
//! For a query whose operators are all `or` — one word with its English and German forms, or
//! words joined by `or` — `ts_rank_cd` (no normalisation) is the sum of the weights of the
//! matched positions, so a memory's relevance is at most the sum of its query lexemes'
//! *impacts* (the weights of all their positions), which `search_postings` keeps per
//! (layer, lexeme, memory), indexed best impact first and newest first within one impact.
//!
//! One layer's best `limit` are found by reading each query lexeme's first `depth` postings:
//! - a memory not read in any list scores at most `unseen` = Σ over the lists of the bound of
//!   what follows in that list (the last read impact × the recency boost of the last read
//!   time, or the next lower impact × the largest boost), times the largest importance factor;
//! - a memory read in some lists scores at most its read impacts × its own boost plus the
//!   bounds of the other lists;
//! - candidates are ranked exactly (the statements and expressions of the every-match path,
//!   `sql/raw_exact.sql`, `sql/insights_exact.sql`) in the order of those upper bounds, until
//!   the `limit`-th exact score is above the next candidate's bound.
//!
//! When the `limit`-th exact score is above `unseen` (or every list was read to its end), no
//! other memory can enter: the result is the every-match path's. Otherwise `depth` grows
//! fourfold; beyond [`MAX_DEPTH`] the search falls back to ranking every match. Upper bounds
//! carry a margin ([`MARGIN`]) for the rounding of `real` impacts and `float4` ranks, so the
//! comparison is never decided by rounding.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use sqlx::Row;

use super::search::{Ranked, best_first};
use super::store::MemoryStore;
use super::{ItemLayer, MemoryError};
use crate::telemetry;
use crate::tenancy::Tenant;

const OR_LEXEMES: &str = include_str!("sql/or_lexemes.sql");
const POSTINGS: &str = include_str!("sql/postings.sql");
const RAW_EXACT: &str = include_str!("sql/raw_exact.sql");
const INSIGHTS_EXACT: &str = include_str!("sql/insights_exact.sql");

/// Postings read per lexeme in the first round, at least (and 4 × `limit`).
const FIRST_DEPTH: usize = 32;
/// Deepest round before falling back to ranking every match.
pub const MAX_DEPTH: usize = 32_768;
/// Relative margin on every upper bound.
pub const MARGIN: f64 = 1e-6;
/// Most candidates ranked exactly per statement: 2 × `limit`, within these bounds.
const EXACT_CHUNK: (usize, usize) = (16, 64);

/// How many searches of one layer took which path (for tests and diagnostics).
#[derive(Debug, Default)]
pub struct SearchPaths {
    postings: AtomicU64,
    every_match: AtomicU64,
}

/// A snapshot of [`SearchPaths`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SearchPathCounts {
    /// Layer searches answered from the postings.
    pub postings: u64,
    /// Layer searches that ranked every match (other queries, a session filter, the postings
    /// switched off, or a fallback).
    pub every_match: u64,
}

impl SearchPaths {
    pub(super) fn count_postings(&self) {
        self.postings.fetch_add(1, AtomicOrdering::Relaxed);
    }

    pub(super) fn count_every_match(&self) {
        self.every_match.fetch_add(1, AtomicOrdering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> SearchPathCounts {
        SearchPathCounts {
            postings: self.postings.load(AtomicOrdering::Relaxed),
            every_match: self.every_match.load(AtomicOrdering::Relaxed),
        }
    }
}

/// An `or` query: the text of its `search_query` tsquery and its distinct lexemes.
#[derive(Debug, Clone)]
pub(super) struct OrQuery {
    pub(super) tsquery: String,
    pub(super) lexemes: Vec<String>,
}

/// One list's postings of a round.
#[derive(Debug, Default, Clone)]
struct List {
    read: usize,
    /// The last posting read, in the index order: (impact, created).
    last: Option<(f64, f64)>,
    /// The next lower impact after `last`, if any.
    below: Option<f64>,
}

/// A candidate: the sum of the impacts read for it, its time, the lists it was read in.
#[derive(Debug, Clone)]
struct Candidate {
    id: i64,
    impacts: f64,
    created: f64,
    seen: Vec<bool>,
    bound: f64,
}

impl MemoryStore {
    /// `query` as the tsquery text of `search_query`, with its lexemes when its operators are
    /// all `or`; `None` for any other query.
    pub(super) async fn or_query(
        &self,
        tenant: &Tenant,
        query: &str,
    ) -> Result<Option<OrQuery>, MemoryError> {
        let mut lease = self.lease(tenant).await?;
        let row = telemetry::statement(
            "SELECT query_or_lexemes",
            sqlx::query(OR_LEXEMES)
                .bind(query)
                .bind(&self.search_settings().languages)
                .persistent(false)
                .fetch_one(lease.conn()),
        )
        .await?;
        lease.done().await?;
        let tsquery: Option<String> = row.try_get("query")?;
        let lexemes: Option<Vec<String>> = row.try_get("lexemes")?;
        Ok(match (tsquery, lexemes) {
            (Some(tsquery), Some(lexemes)) if !lexemes.is_empty() => {
                Some(OrQuery { tsquery, lexemes })
            }
            _ => None,
        })
    }

    /// The best `limit` of `layer` for an `or` query of `lexemes`, from the postings; `None`
    /// when no proof was reached by [`MAX_DEPTH`] (the caller ranks every match).
    pub(super) async fn best_by_postings(
        &self,
        tenant: &Tenant,
        layer: ItemLayer,
        query: &OrQuery,
        limit: u32,
        now: f64,
    ) -> Result<Option<Vec<Ranked>>, MemoryError> {
        let lexemes = &query.lexemes;
        let settings = self.search_settings();
        let k = usize::try_from(limit).unwrap_or(usize::MAX).max(1);
        let recency_weight = settings.recency_weight.max(0.0);
        let half_life = settings.recency_half_life_days * 86_400.0;
        let boost =
            |created: f64| 1.0 + recency_weight * 0.5f64.powf((now - created).max(0.0) / half_life);
        let importance_max = match layer {
            ItemLayer::Raw => 1.0,
            ItemLayer::Insight => 1.0 + settings.importance_weight.abs() * 0.5,
        };
        // Exact results so far: Some(rank) for a match, None for a candidate that is not one.
        let mut exact: HashMap<i64, Option<Ranked>> = HashMap::new();
        let chunk = k.saturating_mul(2).clamp(EXACT_CHUNK.0, EXACT_CHUNK.1);
        let mut depth = FIRST_DEPTH.max(k.saturating_mul(4));
        loop {
            let (lists, rows) = self.postings_round(tenant, layer, lexemes, depth).await?;
            let exhausted: Vec<bool> = lists.iter().map(|l| l.read < depth).collect();
            let bounds: Vec<f64> = lists
                .iter()
                .zip(&exhausted)
                .map(|(list, &done)| match (done, list.last) {
                    (true, _) | (false, None) => 0.0,
                    (false, Some((impact, created))) => {
                        let within = impact * boost(created);
                        let lower = list.below.unwrap_or(0.0) * (1.0 + recency_weight);
                        within.max(lower) * importance_max
                    }
                })
                .collect();
            let unseen: f64 = bounds.iter().sum();

            let mut candidates: HashMap<i64, Candidate> = HashMap::new();
            for (list, id, impact, created) in rows {
                let c = candidates.entry(id).or_insert_with(|| Candidate {
                    id,
                    impacts: 0.0,
                    created,
                    seen: vec![false; lists.len()],
                    bound: 0.0,
                });
                if !c.seen[list] {
                    c.seen[list] = true;
                    c.impacts += impact;
                }
            }
            let mut candidates: Vec<Candidate> = candidates
                .into_values()
                .map(|mut c| {
                    let others: f64 = c
                        .seen
                        .iter()
                        .zip(&bounds)
                        .filter(|(seen, _)| !**seen)
                        .map(|(_, b)| b)
                        .sum();
                    c.bound = c.impacts * boost(c.created) * importance_max + others;
                    c
                })
                .collect();
            candidates.sort_by(|a, b| b.bound.total_cmp(&a.bound).then(b.id.cmp(&a.id)));

            // Rank candidates exactly, best bound first, while one could still enter.
            let mut next = 0;
            loop {
                let kth = kth_score(&exact, k);
                let mut batch = Vec::new();
                while next < candidates.len() && batch.len() < chunk {
                    let c = &candidates[next];
                    if let Some(kth) = kth
                        && kth > c.bound * (1.0 + MARGIN)
                    {
                        // This and every later candidate are below the k-th exact score.
                        next = candidates.len();
                        break;
                    }
                    if !exact.contains_key(&c.id) {
                        batch.push(c.id);
                    }
                    next += 1;
                }
                if batch.is_empty() {
                    if next >= candidates.len() {
                        break;
                    }
                    continue;
                }
                let ranked = self
                    .exact_ranks(tenant, layer, &query.tsquery, &batch, now)
                    .await?;
                for id in &batch {
                    exact.insert(*id, None);
                }
                for r in ranked {
                    exact.insert(r.id, Some(r));
                }
            }

            let every_list_read = exhausted.iter().all(|&done| done);
            let proven = match kth_score(&exact, k) {
                Some(kth) => every_list_read || kth > unseen * (1.0 + MARGIN),
                None => every_list_read,
            };
            if proven {
                let mut best: Vec<Ranked> = exact.into_values().flatten().collect();
                best.sort_by(best_first);
                best.truncate(k);
                return Ok(Some(best));
            }
            if depth >= MAX_DEPTH {
                return Ok(None);
            }
            depth = depth.saturating_mul(4).min(MAX_DEPTH);
        }
    }

    /// The first `depth` postings of each lexeme: the lists' summaries and the rows
    /// (list index, id, impact, created).
    async fn postings_round(
        &self,
        tenant: &Tenant,
        layer: ItemLayer,
        lexemes: &[String],
        depth: usize,
    ) -> Result<(Vec<List>, Vec<(usize, i64, f64, f64)>), MemoryError> {
        let code = match layer {
            ItemLayer::Raw => "r",
            ItemLayer::Insight => "i",
        };
        let mut lease = self.lease(tenant).await?;
        let result = telemetry::statement(
            "SELECT search_postings",
            sqlx::query(POSTINGS)
                .bind(code)
                .bind(lexemes)
                .bind(i64::try_from(depth).unwrap_or(i64::MAX))
                .persistent(self.named_statements())
                .fetch_all(lease.conn()),
        )
        .await?;
        lease.done().await?;
        let mut lists = vec![List::default(); lexemes.len()];
        let mut rows = Vec::with_capacity(result.len());
        for row in &result {
            let n: i64 = row.try_get("list")?;
            let Some(index) = usize::try_from(n - 1).ok().filter(|&i| i < lists.len()) else {
                continue;
            };
            let impact: f64 = row.try_get("impact")?;
            let below: bool = row.try_get("below")?;
            let list = &mut lists[index];
            if below {
                list.below = Some(impact);
                continue;
            }
            let id: i64 = row.try_get("id")?;
            let created: f64 = row.try_get("created")?;
            list.read += 1;
            // The last posting in the index order: the lowest impact, then the oldest.
            let later = match list.last {
                None => true,
                Some((i, c)) => match impact.total_cmp(&i) {
                    Ordering::Less => true,
                    Ordering::Equal => created < c,
                    Ordering::Greater => false,
                },
            };
            if later {
                list.last = Some((impact, created));
            }
            rows.push((index, id, impact, created));
        }
        Ok((lists, rows))
    }

    /// Exact relevance and score of the candidates `ids` that match (the every-match path's
    /// expressions).
    async fn exact_ranks(
        &self,
        tenant: &Tenant,
        layer: ItemLayer,
        tsquery: &str,
        ids: &[i64],
        now: f64,
    ) -> Result<Vec<Ranked>, MemoryError> {
        let settings = self.search_settings();
        let sql = match layer {
            ItemLayer::Raw => RAW_EXACT,
            ItemLayer::Insight => INSIGHTS_EXACT,
        };
        let statement = sqlx::query(sql)
            .bind(tsquery)
            .bind(ids)
            .bind(settings.recency_weight)
            .bind(settings.recency_half_life_days * 86_400.0);
        let statement = match layer {
            ItemLayer::Raw => statement,
            ItemLayer::Insight => statement.bind(settings.importance_weight),
        };
        // Unnamed: planned for these values, so the tsquery is parsed once (see the SQL).
        let statement = statement.bind(now).persistent(false);
        let mut lease = self.lease(tenant).await?;
        let summary = match layer {
            ItemLayer::Raw => "SELECT l0_raw candidates",
            ItemLayer::Insight => "SELECT l2_insights candidates",
        };
        let rows = telemetry::statement(summary, statement.fetch_all(lease.conn())).await?;
        lease.done().await?;
        rows.iter()
            .map(|row| super::search::ranked(row, layer))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(MemoryError::from)
    }
}

/// The `k`-th best exact score so far, if there are `k`.
fn kth_score(exact: &HashMap<i64, Option<Ranked>>, k: usize) -> Option<f64> {
    let mut scores: Vec<f64> = exact.values().flatten().map(|r| r.score).collect();
    if scores.len() < k {
        return None;
    }
    scores.sort_by(|a, b| b.total_cmp(a));
    Some(scores[k - 1])
}
