//! The fast path of `search_memory`: impact-ordered postings (migration V6).
//!
//! `ts_rank_cd` (no normalisation) sums, over the covers it finds, each cover's harmonic mean of
//! its positions' weights divided by `1 + noise`. Covers start at distinct positions and end at
//! strictly later ones, so each position's weight is shared among the covers containing it by
//! at most their number: a memory's relevance is at most the sum of the weights of all its
//! positions of the query's lexemes — at most the sum of its query lexemes' *impacts* (the
//! weights of all their positions), which `search_postings` keeps per (layer, lexeme, memory),
//! indexed best impact first and newest first within one impact. The relevance ranks the
//! query's positive part (`querytree`; excluded words filter, they do not score), so only its
//! lexemes are read, and excluded words only remove candidates. For a positive part whose
//! operators are all `or` the bound is the relevance itself; for words that must all occur and
//! phrases it is above it, and `tests/search_postings.rs` compares every kind with ranking
//! every match.
//!
//! One layer's best `limit` are found by reading each query lexeme's first `depth` postings:
//! - which lexemes a match must contain is the query's positive part (`querytree`, parsed into
//!   [`Presence`]): a candidate read in lists that cannot satisfy it, given the lists read to
//!   their end, is no match and is not ranked; when the lists not read to their end cannot
//!   satisfy it by themselves, no memory outside the candidates matches;
//! - a memory not read in any list scores at most `unseen` = Σ over the lists of the bound of
//!   what follows in that list (the last read impact × the recency boost of the last read
//!   time, or the next lower impact × the largest boost), times the largest importance factor;
//! - a memory read in some lists scores at most its read impacts × its own boost plus the
//!   bounds of the other lists;
//! - candidates are ranked exactly (the statements and expressions of the every-match path,
//!   `sql/raw_exact.sql`, `sql/insights_exact.sql`, which also check the match) in the order of
//!   those upper bounds, until the `limit`-th exact score is above the next candidate's bound.
//!
//! When the `limit`-th exact score is above `unseen` (or no unseen memory can match), no other
//! memory can enter: the result is the every-match path's. Otherwise `depth` grows fourfold;
//! beyond [`MAX_DEPTH`], or when more than [`RANK_BUDGET`] candidates would have to be ranked
//! (words that must all occur, each frequent: the bound is loose), the search falls back to
//! ranking every match. Upper bounds carry a margin ([`MARGIN`]) for the rounding of `real`
//! impacts and `float4` ranks, so the comparison is never decided by rounding.
//!
//! Phrases of common words are read as an `or` query over the postings of their first word
//! pair, whose count bounds the phrase's relevance (migration V12, `phrase_pairs.rs`).
//!
//! What this assumes of `search_postings` (its maintenance may change, its reading may not):
//! for every row of `l0_raw` / `l2_insights` visible to the search, one row per lexeme of its
//! `search_tsv` with the impact of `search_postings_of` and the row's `created_at`, and no rows
//! for memories that are gone; read by `(layer, lexeme)` in the order of
//! `search_postings_order_idx`. Conditions on it are equalities and ranges on text, `"char"`,
//! `real`, `timestamptz` and `bigint` — leakproof, so a row-level security policy on the table
//! leaves them in the index condition.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use sqlx::{PgConnection, Row};

use super::hit_terms::{self, HitTerms};
use super::phrase_pairs;
use super::ranking_query::{self, Node};
use super::search::{Ranked, best_first};
use super::store::MemoryStore;
use super::{ItemLayer, MemoryError};
use crate::telemetry;

const POSTINGS_COUNTS: &str = include_str!("sql/postings_counts.sql");
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
/// Most candidates ranked exactly in one layer search before it falls back to ranking every
/// match: beyond this the bound does not separate the best from the rest (frequent words that
/// must all occur), and the every-match statement is cheaper than probing them one chunk after
/// the other.
pub const RANK_BUDGET: usize = 512;
/// Default of [`SearchSettings::few_matches`](super::SearchSettings::few_matches).
pub const FEW_MATCHES: i64 = 256;
/// Default of [`SearchSettings::long_list`](super::SearchSettings::long_list).
pub const LONG_LIST: i64 = 256;

/// How many searches of one layer took which path (for tests and diagnostics).
#[derive(Debug, Default)]
pub struct SearchPaths {
    postings: AtomicU64,
    session: AtomicU64,
    every_match: AtomicU64,
}

/// A snapshot of [`SearchPaths`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SearchPathCounts {
    /// Layer searches answered from the postings.
    pub postings: u64,
    /// Raw-layer searches with a session filter ranked from the session's own turns.
    pub session: u64,
    /// Layer searches that ranked every match (queries of only excluded words, a large
    /// session, the postings switched off, or a fallback).
    pub every_match: u64,
}

impl SearchPaths {
    pub(super) fn count_postings(&self) {
        self.postings.fetch_add(1, AtomicOrdering::Relaxed);
    }

    pub(super) fn count_session(&self) {
        self.session.fetch_add(1, AtomicOrdering::Relaxed);
    }

    pub(super) fn count_every_match(&self) {
        self.every_match.fetch_add(1, AtomicOrdering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> SearchPathCounts {
        SearchPathCounts {
            postings: self.postings.load(AtomicOrdering::Relaxed),
            session: self.session.load(AtomicOrdering::Relaxed),
            every_match: self.every_match.load(AtomicOrdering::Relaxed),
        }
    }
}

/// A query as the postings path reads it: the text of its `search_query` tsquery that a match
/// must satisfy and of its positive part that the relevance ranks (both rewritten with fewer
/// items, `ranking_query.rs`), the lists to read — the distinct lexemes of the positive part,
/// or for an `or` of phrases of common words the phrases' pairs (`phrase_pairs.rs`) — and which
/// of them a match must contain.
#[derive(Debug, Clone)]
pub(super) struct PostingsQuery {
    pub(super) tsquery: String,
    /// The positive part (`querytree`), which the relevance ranks (`sql/raw_best.sql`).
    pub(super) positive: String,
    pub(super) lexemes: Vec<String>,
    presence: Presence,
    /// The positive part's operators all `|`: a single word with its forms, or words joined
    /// by `or` (whatever words are excluded besides).
    or_only: bool,
    /// Each lexeme's number of postings in the raw layer, counted up to `long_list + 1`
    /// (`few_matches + 1` for an `or` query).
    raw_postings: Vec<i64>,
    /// The same in the insights layer.
    insight_postings: Vec<i64>,
    /// Why its hits match, from the positive part as PostgreSQL printed it (`hit_terms.rs`).
    pub(super) terms: Option<HitTerms>,
}

/// Which lexemes (indexes into [`PostingsQuery::lexemes`]) a match must contain: the query's
/// positive part with phrases read as `&` and weights ignored — a necessary condition.
#[derive(Debug, Clone, PartialEq)]
enum Presence {
    Lexeme(usize),
    All(Vec<Presence>),
    Any(Vec<Presence>),
    /// Nothing known (an operator the positive part should not hold): anything may match.
    Anything,
}

impl Presence {
    /// At most how many memories can match, given each lexeme's number of postings: the
    /// fewest of an `&`, the sum of an `|`.
    fn most(&self, postings: &[i64]) -> i64 {
        match self {
            Presence::Lexeme(i) => postings.get(*i).copied().unwrap_or(i64::MAX),
            Presence::All(parts) => parts.iter().map(|p| p.most(postings)).min().unwrap_or(0),
            Presence::Any(parts) => parts
                .iter()
                .fold(0i64, |sum, p| sum.saturating_add(p.most(postings))),
            Presence::Anything => i64::MAX,
        }
    }

    fn holds(&self, present: &dyn Fn(usize) -> bool) -> bool {
        match self {
            Presence::Lexeme(i) => present(*i),
            Presence::All(parts) => parts.iter().all(|p| p.holds(present)),
            Presence::Any(parts) => parts.iter().any(|p| p.holds(present)),
            Presence::Anything => true,
        }
    }

    /// `querytree` text (`'a':A & ( 'b' | 'c' ) <-> 'd'`) over `lexemes`; `None` if it names a
    /// lexeme not among them or does not parse (`ranking_query::parse`).
    #[cfg(test)]
    fn parse(text: &str, lexemes: &[String]) -> Option<Presence> {
        Presence::of(&ranking_query::parse(text)?, lexemes)
    }

    /// A phrase is `&`; weights are ignored; whatever follows a `!` (not expected in a
    /// positive part) may be absent.
    fn of(node: &Node, lexemes: &[String]) -> Option<Presence> {
        let all = |parts: &[&Node]| -> Option<Vec<Presence>> {
            parts.iter().map(|p| Presence::of(p, lexemes)).collect()
        };
        Some(match node {
            Node::Operand { quoted, .. } => {
                let lexeme = ranking_query::unquoted(quoted)?;
                Presence::Lexeme(lexemes.iter().position(|l| *l == lexeme)?)
            }
            Node::Not(inner) => {
                Presence::of(inner, lexemes)?;
                Presence::Anything
            }
            Node::Phrase(left, right, _) => Presence::All(all(&[left, right])?),
            Node::And(parts) => Presence::All(all(&parts.iter().collect::<Vec<_>>())?),
            Node::Or(parts) => Presence::Any(all(&parts.iter().collect::<Vec<_>>())?),
        })
    }
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
    /// `query` as the postings path reads it; `None` for a query without a positive word
    /// (nothing or only excluded words: refused or empty by the every-match path) or whose
    /// positive part does not parse.
    ///
    /// The postings of a positive part that is not an `or` query are counted only with
    /// `count_beyond_or` ([`SearchSettings::postings_beyond_or`](super::SearchSettings)); without
    /// the counts such a query ranks every match (`best_by_postings` returns `None`).
    pub(super) async fn postings_query(
        &self,
        conn: &mut PgConnection,
        query: &str,
        count_beyond_or: bool,
    ) -> Result<Option<PostingsQuery>, MemoryError> {
        // The query's tsquery and positive part (named statements, cheap to repeat); what the
        // postings path needs of them is read here.
        let row = telemetry::statement(
            "SELECT search_query",
            sqlx::query(super::search::SEARCH_QUERY_TEXT)
                .bind(query)
                .bind(&self.search_settings().languages)
                .persistent(self.named_statements())
                .fetch_one(&mut *conn),
        )
        .await?;
        let tsquery: Option<String> = row.try_get("query")?;
        let positive: Option<String> = row.try_get("positive")?;
        let (Some(tsquery), Some(positive)) = (tsquery, positive) else {
            return Ok(None);
        };
        if positive.trim() == "T" || positive.trim().is_empty() {
            return Ok(None);
        }
        let Some(tree) = ranking_query::parse(&positive) else {
            return Ok(None);
        };
        let Some(lexemes) = ranking_query::lexemes(&tree).filter(|l| !l.is_empty()) else {
            return Ok(None);
        };
        let terms = hit_terms::of(&positive, &self.search_settings().languages);
        let or_only = ranking_query::or_only(&tree);
        let has_phrase = ranking_query::has_phrase(&tree);
        // Counted for an `or` query (are its lists few?) and with `count_beyond_or`; a phrase
        // needs to know only whether its words are common.
        let settings = self.search_settings();
        let cap = if or_only {
            Some(settings.few_matches.saturating_add(1))
        } else if count_beyond_or {
            Some(settings.long_list.saturating_add(1))
        } else {
            None
        };
        let (raw_postings, insight_postings, paired) = if cap.is_some() || has_phrase {
            let row = telemetry::statement(
                "SELECT search_postings counts",
                sqlx::query(POSTINGS_COUNTS)
                    .bind(&lexemes)
                    .bind(cap)
                    .persistent(self.named_statements())
                    .fetch_one(&mut *conn),
            )
            .await?;
            (
                row.try_get::<Option<Vec<i64>>, _>("raw_postings")?,
                row.try_get::<Option<Vec<i64>>, _>("insight_postings")?,
                row.try_get::<Option<Vec<bool>>, _>("paired")?
                    .unwrap_or_default(),
            )
        } else {
            (None, None, Vec::new())
        };
        // Matched and ranked with fewer query items: the same matches and scores, cheaper
        // (ranking_query.rs).
        let tsquery = super::ranking_query::simplified(&tsquery).unwrap_or(tsquery);
        let ranked_part =
            super::ranking_query::simplified(&positive).unwrap_or_else(|| positive.clone());
        // Phrases of common words (and words) joined by `or`: read through the pairs' postings
        // as an `or` query (phrase_pairs.rs). Their counts are not needed: however few a
        // pair's postings, the full-text index cannot narrow such a phrase.
        if !or_only
            && has_phrase
            && let Some(lists) = phrase_pairs::or_lists(&tree, &|word| {
                lexemes
                    .iter()
                    .position(|l| l == word)
                    .is_some_and(|i| paired.get(i) == Some(&true))
            })
        {
            let unknown = vec![i64::MAX; lists.len()];
            return Ok(Some(PostingsQuery {
                tsquery,
                positive: ranked_part,
                presence: Presence::Any((0..lists.len()).map(Presence::Lexeme).collect()),
                lexemes: lists,
                or_only: true,
                raw_postings: unknown.clone(),
                insight_postings: unknown,
                terms,
            }));
        }
        Ok(Presence::of(&tree, &lexemes).map(|presence| PostingsQuery {
            tsquery,
            positive: ranked_part,
            lexemes,
            presence,
            or_only,
            raw_postings: raw_postings.unwrap_or_default(),
            insight_postings: insight_postings.unwrap_or_default(),
            terms,
        }))
    }

    /// The best `limit` of `layer` for `query`, from the postings; `None` when no proof was
    /// reached by [`MAX_DEPTH`] or within [`RANK_BUDGET`] (the caller ranks every match).
    pub(super) async fn best_by_postings(
        &self,
        conn: &mut PgConnection,
        layer: ItemLayer,
        query: &PostingsQuery,
        limit: u32,
        now: f64,
    ) -> Result<Option<Vec<Ranked>>, MemoryError> {
        let lexemes = &query.lexemes;
        let settings = self.search_settings();
        let sizes = match layer {
            ItemLayer::Raw => &query.raw_postings,
            ItemLayer::Insight => &query.insight_postings,
        };
        // Not counted (a positive part that is not an `or` query, `postings_beyond_or` off).
        if sizes.len() != lexemes.len() {
            return Ok(None);
        }
        // Few matches (a rare word, or a frequent one with a rare one that must also occur):
        // ranking every match is one statement through the full-text index and cheaper. The
        // counts stop above `long_list`, so `most` is exact whenever it is not above that.
        if query.presence.most(sizes) <= settings.few_matches.min(settings.long_list) {
            return Ok(None);
        }
        // Not an `or` query: the bound is loose for every list not read to its end (a word
        // that must occur besides another adds a whole posting's impact to every candidate's
        // bound), so it proves a result early only where the query is
        // `or`-like: one long list whose lexeme matches by itself (a branch of the query left
        // with one word, as when the other is a stop word in that language). With a long list
        // that needs a short one, the matches are few and the full-text index finds them.
        if !query.or_only {
            let long: Vec<bool> = sizes.iter().map(|&n| n > settings.long_list).collect();
            if long.iter().filter(|&&l| l).count() != 1 || !query.presence.holds(&|i| long[i]) {
                return Ok(None);
            }
        }
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
            let (lists, rows) = self.postings_round(conn, layer, lexemes, depth).await?;
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
            // A memory in no list read so far lacks every lexeme whose list was read to its
            // end; if the others cannot make a match by themselves, it is none.
            let unseen_may_match = query.presence.holds(&|i| !exhausted[i]);
            let unseen: f64 = if unseen_may_match {
                bounds.iter().sum()
            } else {
                0.0
            };

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
                // A lexeme whose list was read to its end and did not name the candidate is
                // not in it: a candidate that cannot satisfy the positive part is no match.
                .filter(|c| query.presence.holds(&|i| c.seen[i] || !exhausted[i]))
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
                if exact.len() + batch.len() > RANK_BUDGET {
                    return Ok(None);
                }
                let ranked = self.exact_ranks(conn, layer, query, &batch, now).await?;
                for id in &batch {
                    exact.insert(*id, None);
                }
                for r in ranked {
                    exact.insert(r.id, Some(r));
                }
            }

            let every_list_read = exhausted.iter().all(|&done| done) || !unseen_may_match;
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
        conn: &mut PgConnection,
        layer: ItemLayer,
        lexemes: &[String],
        depth: usize,
    ) -> Result<(Vec<List>, Vec<(usize, i64, f64, f64)>), MemoryError> {
        let code = match layer {
            ItemLayer::Raw => "r",
            ItemLayer::Insight => "i",
        };
        let result = telemetry::statement(
            "SELECT search_postings",
            sqlx::query(POSTINGS)
                .bind(code)
                .bind(lexemes)
                .bind(i64::try_from(depth).unwrap_or(i64::MAX))
                .persistent(self.named_statements())
                .fetch_all(&mut *conn),
        )
        .await?;
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
        conn: &mut PgConnection,
        layer: ItemLayer,
        query: &PostingsQuery,
        ids: &[i64],
        now: f64,
    ) -> Result<Vec<Ranked>, MemoryError> {
        let settings = self.search_settings();
        let sql = match layer {
            ItemLayer::Raw => RAW_EXACT,
            ItemLayer::Insight => INSIGHTS_EXACT,
        };
        let statement = sqlx::query(sql)
            .bind(&query.tsquery)
            .bind(ids)
            .bind(settings.recency_weight)
            .bind(settings.recency_half_life_days * 86_400.0);
        let statement = match layer {
            ItemLayer::Raw => statement,
            ItemLayer::Insight => statement.bind(settings.importance_weight),
        };
        let statement = statement
            .bind(now)
            .bind(&query.positive)
            .persistent(self.named_statements());
        let summary = match layer {
            ItemLayer::Raw => "SELECT l0_raw candidates",
            ItemLayer::Insight => "SELECT l2_insights candidates",
        };
        let rows = telemetry::statement(summary, statement.fetch_all(&mut *conn)).await?;
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

#[cfg(test)]
mod tests {
    use super::Presence;

    fn lexemes(words: &[&str]) -> Vec<String> {
        words.iter().map(|&w| w.to_owned()).collect()
    }

    #[test]
    fn the_positive_part_parses_into_what_a_match_must_contain() {
        let l = lexemes(&["and", "it's", "the", "x\\y"]);
        // A phrase is `&`; weights are ignored; `&` binds tighter than `|`.
        let p = Presence::parse("'the':A <-> 'and':A | 'the':AC", &l).expect("parses");
        assert_eq!(
            p,
            Presence::Any(vec![
                Presence::All(vec![Presence::Lexeme(2), Presence::Lexeme(0)]),
                Presence::Lexeme(2),
            ])
        );
        assert!(p.holds(&|i| i == 2));
        assert!(!p.holds(&|i| i == 0));
        // Quotes and backslashes inside a lexeme, parentheses, `<N>`.
        let p = Presence::parse("( 'it''s' | 'x\\\\y':B ) <2> 'and'", &l).expect("parses");
        assert_eq!(
            p,
            Presence::All(vec![
                Presence::Any(vec![Presence::Lexeme(1), Presence::Lexeme(3)]),
                Presence::Lexeme(0),
            ])
        );
        assert!(p.holds(&|i| i == 3 || i == 0));
        assert!(!p.holds(&|i| i == 3));
        // The most matches: the fewest of an `&`, the sum of an `|`.
        assert_eq!(p.most(&[5, 7, 100, 2]), 5);
        assert_eq!(p.most(&[50, 7, 100, 2]), 9);
        // A lexeme that is not among the query's, or a malformed text: no parse.
        assert_eq!(Presence::parse("'nope'", &l), None);
        assert_eq!(Presence::parse("'the' &", &l), None);
        assert_eq!(Presence::parse("( 'the'", &l), None);
        assert_eq!(Presence::parse("'the' 'and'", &l), None);
    }
}
