//! The memory store: the SQL behind the MCP memory tools.
//!
//! Two layers live in PostgreSQL (see `migrations/`):
//! - **raw** (`l0_raw`): dialogue turns kept verbatim, grouped by session;
//! - **insight** (`l2_insights`): distilled statements that may point at the raw turns they came
//!   from (`source_ids`).
//!
//! [`MemoryStore`] offers one method per tool. Its parameter types ([`StoreRawDialogue`],
//! [`StoreInsight`], [`SearchMemory`], [`GetSession`], [`Forget`]) are the tools' parameter
//! types: their field documentation becomes the JSON Schema a model reads. Every parameter is
//! validated before any SQL runs, and every write has committed when the method returns.
//!
//! Memory content is personal data. No error, `Display` or `Debug` output of this module
//! contains a submitted value: errors name the field and state sizes, limits and allowed values
//! only (see [`MemoryError`]).

mod hit_terms;
mod params;
mod phrase_pairs;
mod postings;
mod ranking_query;
mod scope;
mod search;
mod store;
mod write_batch;

use std::borrow::Cow;
use std::fmt;

pub use params::{
    Forget, ForgetReport, GetSession, Hit, Insight, ItemLayer, ItemRef, Layer, SearchMemory,
    SearchResults, SessionPage, Speaker, StoreInsight, StoreRawDialogue, StoreStatus,
    StoredInsight, StoredTurn, Turn,
};
pub use postings::SearchPathCounts;

/// The exact form of a query's positive part that the every-match statements rank rows
/// holding only weight-A positions with (`ranking_query::exact_form`); public for the tests
/// that check it on real vectors.
#[doc(hidden)]
pub fn exact_form_of(positive: &str) -> Option<(String, String)> {
    ranking_query::exact_form(positive)
}

/// [`hit_terms_of`]'s answer: exact words, forms, exact marks, language marks.
#[doc(hidden)]
pub type HitTermsParts = (Vec<String>, Vec<String>, Option<String>, Option<String>);

/// What `hit_details.sql` reads a search's hits with, from the query's positive part as
/// PostgreSQL prints it (`hit_terms::of`): (exact words, forms, exact marks, language marks);
/// public for the test that compares it with building the query's branches in SQL.
#[doc(hidden)]
pub fn hit_terms_of(positive: &str, languages: &[String]) -> Option<HitTermsParts> {
    hit_terms::of(positive, languages).map(|t| (t.words, t.forms, t.exact_marks, t.language_marks))
}
pub(crate) use scope::{begin as begin_for_tenant, begin_statement};
pub use search::{SEARCH_LANGUAGES, SEARCH_TOOL_DESCRIPTION, SearchSettings, SearchStatus};
pub use store::MemoryStore;
pub(crate) use store::UNLINK;
pub use write_batch::WriteBatchSettings;

/// Longest session id, in characters (the schema's `CHECK` says the same).
pub const MAX_SESSION_ID_CHARS: usize = 200;
/// Largest `metadata` object of a raw turn, serialized as compact JSON, in bytes (16 KiB).
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Most top-level keys in a raw turn's `metadata`.
pub const MAX_METADATA_KEYS: usize = 64;
/// Most tags on one insight.
pub const MAX_TAGS: usize = 32;
/// Longest tag, in characters.
pub const MAX_TAG_CHARS: usize = 64;
/// Most raw turns one insight may cite in `source_ids`.
pub const MAX_SOURCE_IDS: usize = 1000;
/// Longest search query, in characters.
pub const MAX_QUERY_CHARS: usize = 1000;
/// Most items one `forget` call may list.
pub const MAX_FORGET_ITEMS: usize = 1000;
/// Importance of an insight stored without one.
pub const DEFAULT_IMPORTANCE: f64 = 0.5;

/// The configurable limits the store enforces (from the `memory` configuration section).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLimits {
    /// Largest accepted `content`, in bytes of UTF-8.
    pub max_content_bytes: usize,
    /// Results returned when a request names no `limit`.
    pub default_limit: u32,
    /// Largest `limit` a request may name.
    pub max_limit: u32,
}

impl MemoryLimits {
    /// The limits configured in `memory` (already validated: `1 <= default_limit <= max_limit`).
    pub fn from_config(cfg: &crate::config::MemoryConfig) -> Self {
        MemoryLimits {
            max_content_bytes: cfg.max_content_bytes,
            default_limit: cfg.search.default_limit,
            max_limit: cfg.search.max_limit,
        }
    }
}

/// Why a memory operation failed.
///
/// `Display` and `Debug` never contain a submitted value, and never the message of a PostgreSQL
/// *data exception* (SQLSTATE class 22), whose text may quote its input. The `source` of
/// [`Database`](MemoryError::Database) and [`Unavailable`](MemoryError::Unavailable) is the
/// driver's error, whose own `Display` is the server's message: log the `MemoryError`, not the
/// source chain, where personal data must not appear.
#[derive(thiserror::Error)]
pub enum MemoryError {
    /// A parameter is out of bounds. Report it to the caller (JSON-RPC "invalid params").
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The parameter, as a dotted path where useful (`items[2].id`).
        field: Cow<'static, str>,
        /// What is wrong, with sizes, limits and allowed values, never the submitted value.
        reason: String,
    },
    /// `store_insight` cited raw turns that do not exist (or were forgotten meanwhile); nothing
    /// was stored. Exactly the missing ids, ascending, each once.
    #[error("unknown source_ids (no raw turn has these ids): {}", join_ids(.0))]
    UnknownSources(Vec<i64>),
    /// The database cannot be reached, refused the connection, or is shutting down. Transient:
    /// the caller may retry later (and should report the service as unavailable meanwhile).
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// Any other database failure: a bug or a broken database, not the caller's fault.
    #[error("database error{}", describe_database_error(.0))]
    Database(#[source] sqlx::Error),
}

impl MemoryError {
    /// The parameter at fault, for [`Invalid`](MemoryError::Invalid) (`"limit"`,
    /// `"items[2].id"`, `"session_id|items"` when the two exclude each other) and
    /// [`UnknownSources`](MemoryError::UnknownSources) (`"source_ids"`).
    pub fn field(&self) -> Option<&str> {
        match self {
            MemoryError::Invalid { field, .. } => Some(field),
            MemoryError::UnknownSources(_) => Some("source_ids"),
            MemoryError::Unavailable(_) | MemoryError::Database(_) => None,
        }
    }

    /// Whether the caller's parameters are at fault (`Invalid` or `UnknownSources`).
    pub fn is_caller_error(&self) -> bool {
        matches!(
            self,
            MemoryError::Invalid { .. } | MemoryError::UnknownSources(_)
        )
    }

    pub(crate) fn invalid(field: impl Into<Cow<'static, str>>, reason: impl Into<String>) -> Self {
        MemoryError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// SQLSTATEs that mean "the server cannot serve us now", besides class 08 (connection exception).
const UNAVAILABLE_STATES: &[&str] = &[
    "57P01", // admin_shutdown
    "57P02", // crash_shutdown
    "57P03", // cannot_connect_now (starting up, shutting down, in recovery)
    "53300", // too_many_connections
];

/// Sorts a driver error into [`MemoryError::Unavailable`] (pool timed out or closed, I/O, TLS,
/// SQLSTATE class 08, 57P01, 57P02, 57P03, 53300) or [`MemoryError::Database`] (everything else).
impl From<sqlx::Error> for MemoryError {
    fn from(err: sqlx::Error) -> Self {
        let unavailable = match &err {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => true,
            sqlx::Error::Database(db) => db
                .code()
                .is_some_and(|code| code.starts_with("08") || UNAVAILABLE_STATES.contains(&&*code)),
            _ => false,
        };
        if unavailable {
            MemoryError::Unavailable(err)
        } else {
            MemoryError::Database(err)
        }
    }
}

impl fmt::Debug for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemoryError::Invalid { field, reason } => f
                .debug_struct("Invalid")
                .field("field", field)
                .field("reason", reason)
                .finish(),
            MemoryError::UnknownSources(ids) => f.debug_tuple("UnknownSources").field(ids).finish(),
            // The driver's `Debug` of a server error includes its DETAIL and CONTEXT, which may
            // quote row values; show what `Display` shows.
            MemoryError::Unavailable(err) => f
                .debug_tuple("Unavailable")
                .field(&format_args!("{}", describe_database_error(err)))
                .finish(),
            MemoryError::Database(err) => f
                .debug_tuple("Database")
                .field(&format_args!("{}", describe_database_error(err)))
                .finish(),
        }
    }
}

fn join_ids(ids: &[i64]) -> String {
    let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
    ids.join(", ")
}

/// `": <what happened>"` for a driver error, without anything that may quote a value: for a
/// server error the SQLSTATE and, outside class 22 (data exception), the primary message (never
/// DETAIL or CONTEXT); for the driver's own errors its message (sqlx puts no bound parameter in
/// them).
fn describe_database_error(err: &sqlx::Error) -> String {
    match err {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) if code.starts_with("22") => format!(" (SQLSTATE {code})"),
            Some(code) => format!(" (SQLSTATE {code}): {}", db.message()),
            None => format!(": {}", db.message()),
        },
        other => format!(": {other}"),
    }
}
