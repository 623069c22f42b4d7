//! The tools' parameter and result types, and the validation of parameters.
//!
//! Parameter types deny unknown fields, so a misspelt optional field is an error rather than
//! silently ignored. Their field documentation is the JSON-Schema description a model reads.

use std::collections::HashSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{
    MAX_FORGET_ITEMS, MAX_METADATA_BYTES, MAX_METADATA_KEYS, MAX_QUERY_CHARS, MAX_SESSION_ID_CHARS,
    MAX_SOURCE_IDS, MAX_TAG_CHARS, MAX_TAGS, MemoryError, MemoryLimits,
};

// ---------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------

/// Who spoke a dialogue turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Speaker {
    User,
    Assistant,
    System,
    Tool,
}

impl Speaker {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Speaker::User => "user",
            Speaker::Assistant => "assistant",
            Speaker::System => "system",
            Speaker::Tool => "tool",
        }
    }

    pub(crate) fn from_db(text: &str) -> Option<Self> {
        match text {
            "user" => Some(Speaker::User),
            "assistant" => Some(Speaker::Assistant),
            "system" => Some(Speaker::System),
            "tool" => Some(Speaker::Tool),
            _ => None,
        }
    }
}

/// Store one dialogue turn verbatim in the raw layer.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreRawDialogue {
    /// Conversation the turn belongs to: 1 to 200 characters, no control characters. Use the
    /// same id for every turn of one conversation; `get_session` reads them back in order.
    pub session_id: String,
    /// Who spoke: `user`, `assistant`, `system` or `tool`.
    pub speaker: Speaker,
    /// The turn's text, stored verbatim. Must not be empty or only whitespace; at most the
    /// server's configured size limit in bytes of UTF-8 (65536 unless configured otherwise).
    pub content: String,
    /// Optional JSON object stored with the turn (for example a model name or a message id): at
    /// most 64 top-level keys and 16 KiB as compact JSON.
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
}

/// Store a distilled insight, optionally citing the raw turns it was derived from.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreInsight {
    /// The insight, as a self-contained statement. Must not be empty or only whitespace; at most
    /// the server's configured size limit in bytes of UTF-8.
    pub content: String,
    /// Ids of the raw turns (from `store_raw_dialogue`, `search_memory` or `get_session`) the
    /// insight was derived from: at most 1000, each a positive integer that exists; duplicates
    /// are stored once. If any id is unknown, nothing is stored and the error lists the
    /// unknown ids.
    #[serde(default)]
    pub source_ids: Option<Vec<i64>>,
    /// Optional labels: at most 32, each 1 to 64 characters without control characters.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// How much the insight matters, from 0 (trivia) to 1 (essential). Default 0.5.
    #[serde(default)]
    pub importance: Option<f64>,
}

/// Which layer a search covers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    /// Distilled insights only.
    Insights,
    /// Raw dialogue turns only.
    Raw,
    /// Both, merged by score.
    #[default]
    All,
}

/// Full-text search over stored memories.
///
/// With `session_id` and layer `all`, the session filter applies to raw turns only and every
/// matching insight is still returned: insights are not tied to one session (they may distil
/// several, or cite none), and the hits' `layer` and `session_id` tell them apart. Use layer
/// `raw` for the session's turns alone. `session_id` with layer `insights` is rejected, since it
/// could filter nothing.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchMemory {
    /// What to look for, in web-search syntax: words (all must occur), `"exact phrase"`, `or`
    /// between alternatives, `-word` to exclude. Matching is by whole word, case-insensitive,
    /// without stemming (`cat` does not find `cats`). At most 1000 characters; must contain at
    /// least one word that is not excluded.
    pub query: String,
    /// Most hits to return, from 1 to the server's maximum (50 unless configured otherwise).
    /// Default: the server's default (10 unless configured otherwise).
    #[serde(default)]
    pub limit: Option<u32>,
    /// `insights`, `raw` or `all` (default): which layer to search.
    #[serde(default)]
    pub layer: Option<Layer>,
    /// Only raw turns of this conversation. Insights are not filtered by it (see above).
    #[serde(default)]
    pub session_id: Option<String>,
}

/// Read one conversation's raw turns, oldest first, a page at a time.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetSession {
    /// The conversation to read. An unknown id yields no turns (not an error).
    pub session_id: String,
    /// Most turns to return, from 1 to the server's maximum (50 unless configured otherwise).
    /// Default: the server's default (10 unless configured otherwise).
    #[serde(default)]
    pub limit: Option<u32>,
    /// Page to older turns: return only turns with an id below this one. Pass the previous
    /// page's `next_before_id`. Omit it for the newest turns.
    #[serde(default)]
    pub before_id: Option<i64>,
}

/// The kind of a stored item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ItemLayer {
    /// A raw dialogue turn.
    Raw,
    /// A distilled insight.
    Insight,
}

/// One stored item: a search hit's `layer` and `id` name one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemRef {
    /// `raw` for a dialogue turn, `insight` for an insight.
    pub layer: ItemLayer,
    /// The item's id (a positive integer).
    pub id: i64,
}

/// Permanently delete memories: a whole conversation, or listed items.
///
/// Give exactly one of `session_id` and `items`. Everything happens in one transaction: either
/// all of it is deleted or nothing is.
///
/// What is erased:
/// - the raw turns (of the session, or listed as `raw`) are deleted with their content and
///   metadata;
/// - insights listed as `insight` are deleted;
/// - insights *not* listed that cite a deleted turn in `source_ids` are kept, but the deleted
///   ids are removed from their `source_ids` (an insight citing only deleted turns ends up
///   citing none). Their content is not changed and may still contain what the deleted turns
///   said: the result lists them in `unlinked_insight_ids` so they can be reviewed and
///   forgotten too, which a full erasure request requires.
///
/// Ids that do not exist (never stored, or already forgotten) are reported in `not_found`; that
/// is not an error, so repeating a `forget` is harmless. After the commit no query returns the
/// deleted rows; PostgreSQL reclaims their storage at its next vacuum of the table, and copies
/// in WAL archives and backups last as long as those are retained.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Forget {
    /// Delete every raw turn of this conversation (and unlink insights citing them).
    #[serde(default)]
    pub session_id: Option<String>,
    /// Delete these items (at most 1000): raw turns and insights, each as `{layer, id}`.
    #[serde(default)]
    pub items: Option<Vec<ItemRef>>,
}

// ---------------------------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------------------------

/// A raw turn as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct StoredTurn {
    /// The turn's id, increasing with each stored turn.
    pub id: i64,
    pub session_id: String,
    /// When it was stored: RFC 3339, UTC, microseconds.
    pub created_at: String,
}

/// An insight as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct StoredInsight {
    /// The insight's id, increasing with each stored insight.
    pub id: i64,
    /// When it was stored: RFC 3339, UTC, microseconds.
    pub created_at: String,
}

/// What a search found, best first.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct SearchResults {
    pub hits: Vec<Hit>,
}

/// One search hit.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Hit {
    /// `raw` or `insight`; with `id`, names the item (for `forget`).
    pub layer: ItemLayer,
    pub id: i64,
    /// Up to two fragments of the content around the matches, joined by ` ... `, with the
    /// matched words marked `**like this**`.
    pub snippet: String,
    /// What the hits are ordered by, from 0 to 1, comparable across layers: `relevance`,
    /// lightly boosted by recency (and, for insights, importance), mapped as s / (s + 1).
    pub score: f64,
    /// How well the content matches the query (PostgreSQL `ts_rank_cd`: matches of exact words
    /// weigh 1, of English stems 0.4, of German stems 0.2; query words close together count
    /// more). Excluded words (`-word`) filter the hits and do not count here.
    pub relevance: f64,
    /// The query's words found in the content exactly as written (lower-cased).
    pub matched_words: Vec<String>,
    /// Words found only in another form: the stem and its language, `collect (english)`.
    pub matched_forms: Vec<String>,
    /// When the item was stored: RFC 3339, UTC.
    pub created_at: String,
    /// The conversation, for raw turns; `null` for insights.
    pub session_id: Option<String>,
}

/// One page of a conversation, oldest turn first.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct SessionPage {
    pub session_id: String,
    /// The newest `limit` turns below `before_id` (or overall), in chronological order.
    pub turns: Vec<Turn>,
    /// Pass as `before_id` for the previous (older) page; `null` when there is none.
    pub next_before_id: Option<i64>,
}

/// A raw dialogue turn.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Turn {
    pub id: i64,
    pub speaker: Speaker,
    pub content: String,
    /// The metadata stored with the turn; `{}` when none was given.
    pub metadata: Map<String, Value>,
    /// When it was stored: RFC 3339, UTC.
    pub created_at: String,
}

/// What `forget` deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ForgetReport {
    /// Raw turns deleted.
    pub raw_deleted: u64,
    /// Insights deleted (only those listed in `items`).
    pub insights_deleted: u64,
    /// Insights kept whose `source_ids` lost at least one deleted turn.
    pub insights_unlinked: u64,
    /// Their ids, ascending: their content may still reflect the deleted turns.
    pub unlinked_insight_ids: Vec<i64>,
    /// Listed items that did not exist (in the order given); always empty for `session_id`.
    pub not_found: Vec<ItemRef>,
}

/// The store's database and how much it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct StoreStatus {
    /// Whose memories the counts are: the tenant this request resolved to.
    pub tenant: String,
    /// Whether row-level security binds the memory tables (migration V7), so no statement
    /// sees another tenant's rows.
    pub row_level_security: bool,
    /// Whether the search operators are LEAKPROOF, so the full-text indexes serve searches
    /// under row-level security (`setup-db` declares them where it may; see docs/tenancy.md).
    pub search_indexes_under_rls: bool,
    /// The connected database's name.
    pub database: String,
    /// Version of the newest applied migration; `null` if none was applied.
    pub schema_version: Option<i32>,
    /// Raw turns stored.
    pub raw_turns: u64,
    /// Insights stored.
    pub insights: u64,
}

/// A stored insight.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Insight {
    pub id: i64,
    pub content: String,
    /// The raw turns it cites (forgotten turns are removed from this list).
    pub source_ids: Vec<i64>,
    pub tags: Vec<String>,
    /// 0 to 1.
    pub importance: f64,
    /// When it was stored: RFC 3339, UTC.
    pub created_at: String,
}

// ---------------------------------------------------------------------------------------------
// Validation: every reason states sizes, limits or allowed values, never the submitted value.
// ---------------------------------------------------------------------------------------------

type Checked<T> = Result<T, MemoryError>;

/// A validated `store_insight`, ready for SQL.
pub(crate) struct InsightRow {
    pub content: String,
    /// Deduplicated, in the order first given.
    pub source_ids: Vec<i64>,
    pub tags: Vec<String>,
    pub importance: f32,
}

/// A validated `forget`.
pub(crate) enum ForgetTarget {
    Session(String),
    /// Deduplicated, in the order first given.
    Items(Vec<ItemRef>),
}

impl StoreRawDialogue {
    /// The metadata as JSON text for the `jsonb` column.
    pub(crate) fn validate(&self, limits: &MemoryLimits) -> Checked<String> {
        check_session_id("session_id", &self.session_id)?;
        check_content("content", &self.content, limits)?;
        match &self.metadata {
            None => Ok("{}".to_owned()),
            Some(metadata) => check_metadata(metadata),
        }
    }
}

impl StoreInsight {
    pub(crate) fn validate(self, limits: &MemoryLimits) -> Checked<InsightRow> {
        check_content("content", &self.content, limits)?;
        let source_ids = self.source_ids.unwrap_or_default();
        if source_ids.len() > MAX_SOURCE_IDS {
            return Err(too_many("source_ids", source_ids.len(), MAX_SOURCE_IDS));
        }
        for (index, id) in source_ids.iter().enumerate() {
            check_id(format!("source_ids[{index}]"), *id)?;
        }
        let tags = self.tags.unwrap_or_default();
        if tags.len() > MAX_TAGS {
            return Err(too_many("tags", tags.len(), MAX_TAGS));
        }
        for (index, tag) in tags.iter().enumerate() {
            check_text(format!("tags[{index}]"), tag, MAX_TAG_CHARS)?;
        }
        let importance = self.importance.unwrap_or(super::DEFAULT_IMPORTANCE);
        if !importance.is_finite() || !(0.0..=1.0).contains(&importance) {
            return Err(MemoryError::invalid(
                "importance",
                "must be a number from 0 to 1",
            ));
        }
        let mut seen = HashSet::with_capacity(source_ids.len());
        let source_ids = source_ids
            .into_iter()
            .filter(|id| seen.insert(*id))
            .collect();
        Ok(InsightRow {
            content: self.content,
            source_ids,
            tags,
            // The column is `real`.
            importance: importance as f32,
        })
    }
}

impl SearchMemory {
    /// The effective layer and limit.
    pub(crate) fn validate(&self, limits: &MemoryLimits) -> Checked<(Layer, u32)> {
        if self.query.trim().is_empty() {
            return Err(MemoryError::invalid(
                "query",
                "must not be empty or only whitespace",
            ));
        }
        let chars = self.query.chars().count();
        if chars > MAX_QUERY_CHARS {
            return Err(MemoryError::invalid(
                "query",
                format!("is {chars} characters long, limit {MAX_QUERY_CHARS}"),
            ));
        }
        if self.query.contains('\0') {
            return Err(nul("query"));
        }
        let limit = resolve_limit(self.limit, limits)?;
        let layer = self.layer.unwrap_or_default();
        if let Some(session_id) = &self.session_id {
            check_session_id("session_id", session_id)?;
            if layer == Layer::Insights {
                return Err(MemoryError::invalid(
                    "session_id",
                    "filters raw turns only, so it cannot be combined with layer \"insights\"; \
                     use layer \"raw\" or \"all\", or omit session_id",
                ));
            }
        }
        Ok((layer, limit))
    }
}

impl GetSession {
    /// The effective limit.
    pub(crate) fn validate(&self, limits: &MemoryLimits) -> Checked<u32> {
        check_session_id("session_id", &self.session_id)?;
        let limit = resolve_limit(self.limit, limits)?;
        if let Some(before_id) = self.before_id {
            check_id("before_id", before_id)?;
        }
        Ok(limit)
    }
}

impl Forget {
    pub(crate) fn validate(self) -> Checked<ForgetTarget> {
        match (self.session_id, self.items) {
            (Some(_), Some(_)) => Err(MemoryError::invalid(
                "session_id|items",
                "give exactly one of session_id and items, not both",
            )),
            (None, None) => Err(MemoryError::invalid(
                "session_id|items",
                "give exactly one of session_id and items",
            )),
            (Some(session_id), None) => {
                check_session_id("session_id", &session_id)?;
                Ok(ForgetTarget::Session(session_id))
            }
            (None, Some(items)) => {
                if items.is_empty() {
                    return Err(MemoryError::invalid("items", "must list at least one item"));
                }
                if items.len() > MAX_FORGET_ITEMS {
                    return Err(too_many("items", items.len(), MAX_FORGET_ITEMS));
                }
                for (index, item) in items.iter().enumerate() {
                    check_id(format!("items[{index}].id"), item.id)?;
                }
                let mut seen = HashSet::with_capacity(items.len());
                let items = items
                    .into_iter()
                    .filter(|item| seen.insert(*item))
                    .collect();
                Ok(ForgetTarget::Items(items))
            }
        }
    }
}

/// `limit` of a search or page: the default when absent, else within `1..=max_limit`.
pub(crate) fn resolve_limit(limit: Option<u32>, limits: &MemoryLimits) -> Checked<u32> {
    match limit {
        None => Ok(limits.default_limit),
        Some(limit) if (1..=limits.max_limit).contains(&limit) => Ok(limit),
        Some(_) => Err(MemoryError::invalid(
            "limit",
            format!("must be from 1 to {}", limits.max_limit),
        )),
    }
}

fn check_session_id(field: &'static str, session_id: &str) -> Checked<()> {
    check_text(field, session_id, MAX_SESSION_ID_CHARS)
}

/// 1..=`max_chars` characters, not only whitespace, no control characters.
fn check_text(
    field: impl Into<std::borrow::Cow<'static, str>>,
    text: &str,
    max_chars: usize,
) -> Checked<()> {
    let field = field.into();
    if text.trim().is_empty() {
        return Err(MemoryError::invalid(
            field,
            format!("must be 1 to {max_chars} characters, not only whitespace"),
        ));
    }
    let chars = text.chars().count();
    if chars > max_chars {
        return Err(MemoryError::invalid(
            field,
            format!("is {chars} characters long, limit {max_chars}"),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(MemoryError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

fn check_content(field: &'static str, content: &str, limits: &MemoryLimits) -> Checked<()> {
    if content.trim().is_empty() {
        return Err(MemoryError::invalid(
            field,
            "must not be empty or only whitespace",
        ));
    }
    if content.len() > limits.max_content_bytes {
        return Err(MemoryError::invalid(
            field,
            format!(
                "is {} bytes, limit {}",
                content.len(),
                limits.max_content_bytes
            ),
        ));
    }
    if content.contains('\0') {
        return Err(nul(field));
    }
    Ok(())
}

/// The metadata as compact JSON text, once it is within bounds and storable.
fn check_metadata(metadata: &Map<String, Value>) -> Checked<String> {
    if metadata.len() > MAX_METADATA_KEYS {
        return Err(MemoryError::invalid(
            "metadata",
            format!("has {} keys, limit {MAX_METADATA_KEYS}", metadata.len()),
        ));
    }
    // Serialising a map of JSON values cannot fail; a failure would be a serde_json bug.
    let text = serde_json::to_string(metadata)
        .map_err(|_| MemoryError::invalid("metadata", "cannot be serialized as JSON"))?;
    if text.len() > MAX_METADATA_BYTES {
        return Err(MemoryError::invalid(
            "metadata",
            format!(
                "is {} bytes as JSON, limit {MAX_METADATA_BYTES}",
                text.len()
            ),
        ));
    }
    // `jsonb` cannot hold U+0000 in a string or key; say so instead of failing in the database.
    if metadata
        .iter()
        .any(|(key, value)| key.contains('\0') || holds_nul(value))
    {
        return Err(nul("metadata"));
    }
    Ok(text)
}

fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(values) => values.iter().any(holds_nul),
        Value::Object(map) => map
            .iter()
            .any(|(key, value)| key.contains('\0') || holds_nul(value)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

fn check_id(field: impl Into<std::borrow::Cow<'static, str>>, id: i64) -> Checked<()> {
    if id > 0 {
        Ok(())
    } else {
        Err(MemoryError::invalid(field, "must be a positive id"))
    }
}

fn too_many(field: &'static str, count: usize, max: usize) -> MemoryError {
    MemoryError::invalid(field, format!("has {count} entries, limit {max}"))
}

fn nul(field: &'static str) -> MemoryError {
    MemoryError::invalid(
        field,
        "must not contain the NUL character (U+0000), which PostgreSQL cannot store",
    )
}
