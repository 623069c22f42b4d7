//! [`MemoryStore`]: one method per memory tool, each a few statements of SQL.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use super::params::{ForgetTarget, resolve_limit};
use super::postings::{SearchPathCounts, SearchPaths};
use super::scope;
use super::search::SearchSettings;
use super::write_batch::{RawTurn, Target, WriteBatchSettings, WriteBatcher};
use super::{
    Forget, ForgetReport, GetSession, Insight, ItemLayer, ItemRef, MemoryError, MemoryLimits,
    SessionPage, Speaker, StoreInsight, StoreRawDialogue, StoreStatus, StoredInsight, StoredTurn,
    Turn,
};
use crate::telemetry::{connection, statement};
use crate::tenancy::Tenant;

/// A timestamp column as RFC 3339 text in UTC with microseconds (sqlx has no time types here).
macro_rules! rfc3339 {
    ($column:literal) => {
        concat!(
            "to_char(",
            $column,
            " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
        )
    };
}

/// The cited ids that name no raw turn, each once, ascending. The turns that do exist are
/// locked `FOR KEY SHARE` until the insight commits, so a concurrent `forget` either waits for
/// the insight (and then unlinks it) or has already deleted them (and they are reported here).
/// Every statement here that locks raw turns locks them in ascending id order, so two of them
/// cannot deadlock.
const MISSING_SOURCES: &str = "WITH locked AS MATERIALIZED (
         SELECT id FROM l0_raw WHERE id = ANY($1::bigint[]) ORDER BY id FOR KEY SHARE
     )
     SELECT s.id FROM unnest($1::bigint[]) AS s(id)
     EXCEPT
     SELECT id FROM locked
     ORDER BY 1";

const INSERT_INSIGHT: &str = concat!(
    "INSERT INTO l2_insights (content, source_ids, tags, importance)
     VALUES ($1, $2::bigint[], $3::text[], $4::real)
     RETURNING id, ",
    rfc3339!("created_at"),
    " AS created_at"
);

/// The newest `$3` turns of session `$1` below id `$2`, newest first (read through the
/// `(tenant, session_id, id)` index backwards). Statements that read through an index leading
/// with the tenant repeat the row-level security policy's condition, so the index serves them
/// whatever the policies.
const SESSION_PAGE: &str = concat!(
    "SELECT id, speaker, content, metadata::text AS metadata, ",
    rfc3339!("created_at"),
    " AS created_at
     FROM l0_raw
     WHERE tenant = current_setting('app.tenant', true) AND session_id = $1 AND id < $2
     ORDER BY id DESC
     LIMIT $3"
);

/// Deletions lock their rows in ascending id order first (see [`MISSING_SOURCES`]).
macro_rules! delete_in_order {
    ($table:literal, $condition:literal) => {
        concat!(
            "WITH doomed AS MATERIALIZED (
                 SELECT id FROM ",
            $table,
            " WHERE ",
            $condition,
            " ORDER BY id FOR UPDATE
             )
             DELETE FROM ",
            $table,
            " AS t USING doomed WHERE t.id = doomed.id RETURNING t.id"
        )
    };
}

const DELETE_SESSION: &str = delete_in_order!(
    "l0_raw",
    "tenant = current_setting('app.tenant', true) AND session_id = $1"
);
const DELETE_RAW: &str = delete_in_order!("l0_raw", "id = ANY($1::bigint[])");
const DELETE_INSIGHTS: &str = delete_in_order!("l2_insights", "id = ANY($1::bigint[])");

/// Removes the deleted turns `$1` from every insight citing one (found through the GIN index on
/// `source_ids`). The kept ids are those whose turn still exists, in their order: one primary
/// key probe per cited id, however many turns were deleted. That is the same as removing `$1`,
/// since `store_insight` only stores ids of existing turns and every deletion unlinks them.
/// It must be a statement of its own after the deletion: under READ COMMITTED it then sees
/// insights committed by transactions the deletion waited for.
pub(crate) const UNLINK: &str = "UPDATE l2_insights AS i
     SET source_ids = ARRAY(
         SELECT s.id
         FROM unnest(i.source_ids) WITH ORDINALITY AS s(id, n)
         WHERE EXISTS (SELECT 1 FROM l0_raw r WHERE r.id = s.id)
         ORDER BY s.n
     )
     WHERE i.source_ids && $1::bigint[]
     RETURNING i.id";

/// The counts are the tenant's (row-level security); the two flags describe the database
/// (db::tenancy_state says the same for `doctor`).
const STATUS: &str = "SELECT current_database()::text AS database,
            to_regclass('refinery_schema_history') IS NOT NULL AS has_history,
            (SELECT count(*) FROM l0_raw) AS raw_turns,
            (SELECT count(*) FROM l2_insights) AS insights,
            coalesce((SELECT bool_and(c.relrowsecurity AND c.relforcerowsecurity)
                      FROM pg_class c
                      WHERE c.oid IN ('l0_raw'::regclass, 'l2_insights'::regclass)), false) AS rls,
            coalesce((SELECT bool_and(p.proleakproof)
                      FROM pg_proc p
                      WHERE p.oid IN ('pg_catalog.ts_match_vq(tsvector, tsquery)'::regprocedure,
                                      'pg_catalog.arrayoverlap(anyarray, anyarray)'::regprocedure)),
                     false) AS leakproof";

const SCHEMA_VERSION: &str = "SELECT max(version) FROM refinery_schema_history";

/// Newest first by id, which is the order of storing (the identity column only grows); the
/// primary key index serves it, so no index on `created_at` is needed.
const RECENT_INSIGHTS: &str = concat!(
    // Through numeric, `real` 0.1 reads back as 0.1 rather than 0.10000000149011612.
    "SELECT id, content, source_ids, tags, importance::numeric::float8 AS importance, ",
    rfc3339!("created_at"),
    " AS created_at
     FROM l2_insights
     WHERE tenant = current_setting('app.tenant', true)
     ORDER BY id DESC
     LIMIT $1"
);

/// The memory tools over one PostgreSQL pool. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct MemoryStore {
    pool: PgPool,
    limits: MemoryLimits,
    search: Arc<SearchSettings>,
    /// Which path layer searches took (shared by clones).
    search_paths: Arc<SearchPaths>,
    /// `database.prepared_statements`: false behind a pooler in transaction mode.
    named_statements: bool,
    /// The group commit of `store_raw` (shared by clones).
    batcher: Arc<WriteBatcher>,
}

/// Shows the limits and pool occupancy, never connection options (they hold the password).
impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("limits", &self.limits)
            .field("search", &self.search)
            .field("write_batch", &self.batcher.settings())
            .field("pool_size", &self.pool.size())
            .field("pool_idle", &self.pool.num_idle())
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// A store with the default search settings ([`SearchSettings::default`]).
    pub fn new(pool: PgPool, limits: MemoryLimits) -> Self {
        MemoryStore {
            pool,
            limits,
            search: Arc::new(SearchSettings::default()),
            search_paths: Arc::default(),
            named_statements: true,
            batcher: Arc::new(WriteBatcher::new(WriteBatchSettings::default())),
        }
    }

    /// The same store, batching `store_raw` by `settings` (before its first call: the store
    /// gets a queue of its own).
    pub fn with_write_batch(mut self, settings: WriteBatchSettings) -> Self {
        self.batcher = Arc::new(WriteBatcher::new(settings));
        self
    }

    /// `store_raw` calls whose turn is queued or being written (accepted, not yet answered).
    pub fn pending_writes(&self) -> usize {
        self.batcher.pending()
    }

    pub fn write_batch_settings(&self) -> WriteBatchSettings {
        self.batcher.settings()
    }

    /// Shutdown: refuses further `store_raw` calls (as unavailable), writes and answers the
    /// turns already queued, and returns when the writers have ended. Call it after the
    /// transports have drained and before closing the pool.
    pub async fn close_writes(&self) {
        self.batcher.close().await;
    }

    /// The same store, ranking searches by `settings`.
    pub fn with_search_settings(mut self, settings: SearchSettings) -> Self {
        self.search = Arc::new(settings);
        self
    }

    pub fn search_settings(&self) -> &SearchSettings {
        &self.search
    }

    pub(super) fn search_paths(&self) -> &SearchPaths {
        &self.search_paths
    }

    /// How many layer searches were answered from the impact-ordered postings and how many
    /// ranked every match, since this store (or the store it was cloned from) was made.
    pub fn search_path_counts(&self) -> SearchPathCounts {
        self.search_paths.snapshot()
    }

    /// Whether statements are named (cached per connection); see [`Self::with_prepared_statements`].
    pub(crate) fn named_statements(&self) -> bool {
        self.named_statements
    }

    /// A connection for one operation of `tenant`, with `app.tenant` set to it, so the
    /// row-level security policies (migration V7) restrict every statement to its rows.
    ///
    /// With unnamed statements (behind a pooler in transaction mode) it holds a transaction,
    /// begun with the tenant set for it (`set_config(.., true)`, in the same exchange as
    /// `BEGIN`): sqlx sends Parse/Describe and Bind/Execute as two exchanges, each ending in
    /// Sync, and between them PgBouncer would hand the server connection — and its unnamed
    /// statement — to another client. An open transaction keeps it, and the setting ends with
    /// it. With named statements (a direct connection, or a pooler in session mode) a plain
    /// pooled connection suffices and the tenant is set for the session before the operation
    /// (one short exchange): every operation sets its own tenant first, so a setting left on
    /// a pooled connection is never the one a later operation runs with. Every connection of
    /// the tools comes through [`db::acquire`], which rides out a password rotation's window.
    pub(super) async fn lease(&self, tenant: &Tenant) -> Result<Lease, sqlx::Error> {
        // Boxed: the pool's acquire is a deep future that every caller would otherwise carry.
        Box::pin(lease_from(&self.pool, self.named_statements, tenant)).await
    }

    /// Like [`Self::lease`], but only with a connection the pool has idle right now: `None`
    /// instead of waiting. For a second connection taken while one is held (a search's second
    /// layer), where waiting could deadlock: every holder waiting for the pool's last connection.
    /// Always `None` behind a pooler in transaction mode (unnamed statements): an idle
    /// connection of our pool does not mean that the pooler has a server connection free, and
    /// its `BEGIN` would wait for one while this search holds another — with as many searches as
    /// the pooler has server connections, each waits for the others (seen as requests that time
    /// out through PgBouncer with a pool of 4 and 32 clients).
    pub(super) async fn try_lease(&self, tenant: &Tenant) -> Result<Option<Lease>, sqlx::Error> {
        if !self.named_statements {
            return Ok(None);
        }
        let Some(mut conn) = self.pool.try_acquire() else {
            return Ok(None);
        };
        scope::set_session(&mut conn, tenant, true).await?;
        Ok(Some(Lease::Pooled(conn)))
    }

    /// With `false`, every statement is unnamed, as PgBouncer in transaction mode needs
    /// (`database.prepared_statements`); with `true` (the default) each connection caches them.
    pub fn with_prepared_statements(mut self, named: bool) -> Self {
        self.named_statements = named;
        self
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn limits(&self) -> &MemoryLimits {
        &self.limits
    }

    /// Store one dialogue turn of `tenant`, committed on return. Concurrent calls are written
    /// together (group commit, `write_batch.rs`): one statement per tenant for the turns queued
    /// at that moment.
    pub async fn store_raw(
        &self,
        tenant: &Tenant,
        p: StoreRawDialogue,
    ) -> Result<StoredTurn, MemoryError> {
        let metadata = p.validate(&self.limits)?;
        let turn = RawTurn {
            tenant: tenant.clone(),
            speaker: p.speaker.as_str(),
            session_id: p.session_id,
            content: p.content,
            metadata,
        };
        let target = Target {
            pool: self.pool.clone(),
            named_statements: self.named_statements,
        };
        self.batcher.store(&target, turn).await
    }

    /// Store an insight. Its `source_ids` are checked and the cited turns locked in the same
    /// transaction as the insert; any unknown id fails the call with
    /// [`MemoryError::UnknownSources`] and nothing is stored.
    pub async fn store_insight(
        &self,
        tenant: &Tenant,
        p: StoreInsight,
    ) -> Result<StoredInsight, MemoryError> {
        let insight = p.validate(&self.limits)?;
        let mut tx = statement("BEGIN", connection(scope::begin(&self.pool, tenant))).await?;
        if !insight.source_ids.is_empty() {
            let missing: Vec<i64> = statement(
                "SELECT l0_raw sources",
                sqlx::query_scalar(MISSING_SOURCES)
                    .bind(&insight.source_ids)
                    .persistent(self.named_statements)
                    .fetch_all(&mut *tx),
            )
            .await?;
            if !missing.is_empty() {
                tx.rollback().await?;
                return Err(MemoryError::UnknownSources(missing));
            }
        }
        let row = statement(
            "INSERT l2_insights",
            sqlx::query(INSERT_INSIGHT)
                .bind(&insight.content)
                .bind(&insight.source_ids)
                .bind(&insight.tags)
                .bind(insight.importance)
                .persistent(self.named_statements)
                .fetch_one(&mut *tx),
        )
        .await?;
        let stored = StoredInsight {
            id: row.try_get("id")?,
            created_at: row.try_get("created_at")?,
        };
        statement("COMMIT", tx.commit()).await?;
        Ok(stored)
    }

    /// One page of a session's turns in chronological order: the newest `limit` turns with an
    /// id below `before_id` (or overall). `next_before_id` is the smallest id returned when
    /// older turns exist. An unknown session yields an empty page.
    pub async fn get_session(
        &self,
        tenant: &Tenant,
        p: GetSession,
    ) -> Result<SessionPage, MemoryError> {
        let limit = usize::try_from(p.validate(&self.limits)?).unwrap_or(usize::MAX);
        let before_id = p.before_id.unwrap_or(i64::MAX);
        // One more than asked for tells whether older turns exist.
        let mut lease = self.lease(tenant).await?;
        let rows = statement(
            "SELECT l0_raw session",
            sqlx::query(SESSION_PAGE)
                .bind(&p.session_id)
                .bind(before_id)
                .bind(i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1))
                .persistent(self.named_statements)
                .fetch_all(lease.conn()),
        )
        .await?;
        lease.done().await?;
        let more = rows.len() > limit;
        let mut turns = rows
            .iter()
            .take(limit)
            .map(turn)
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        turns.reverse();
        let next_before_id = if more {
            turns.first().map(|t| t.id)
        } else {
            None
        };
        Ok(SessionPage {
            session_id: p.session_id,
            turns,
            next_before_id,
        })
    }

    /// Delete a session's raw turns, or listed raw turns and insights, in one transaction, and
    /// remove the deleted turns from the `source_ids` of the insights citing them. See
    /// [`Forget`] for exactly what is erased and what is kept.
    pub async fn forget(&self, tenant: &Tenant, p: Forget) -> Result<ForgetReport, MemoryError> {
        let target = p.validate()?;
        let mut tx = statement("BEGIN", connection(scope::begin(&self.pool, tenant))).await?;
        let mut not_found = Vec::new();
        let (raw_deleted, insights_deleted): (Vec<i64>, Vec<i64>) = match &target {
            ForgetTarget::Session(session_id) => {
                let raw = statement(
                    "DELETE l0_raw session",
                    sqlx::query_scalar(DELETE_SESSION)
                        .bind(session_id)
                        .persistent(self.named_statements)
                        .fetch_all(&mut *tx),
                )
                .await?;
                (raw, Vec::new())
            }
            ForgetTarget::Items(items) => {
                let ids_of = |layer| -> Vec<i64> {
                    items
                        .iter()
                        .filter(|item| item.layer == layer)
                        .map(|item| item.id)
                        .collect()
                };
                let (raw_ids, insight_ids) = (ids_of(ItemLayer::Raw), ids_of(ItemLayer::Insight));
                // Insights first, so a listed insight is counted as deleted, not as unlinked.
                let insights: Vec<i64> = if insight_ids.is_empty() {
                    Vec::new()
                } else {
                    statement(
                        "DELETE l2_insights",
                        sqlx::query_scalar(DELETE_INSIGHTS)
                            .bind(&insight_ids)
                            .persistent(self.named_statements)
                            .fetch_all(&mut *tx),
                    )
                    .await?
                };
                let raw: Vec<i64> = if raw_ids.is_empty() {
                    Vec::new()
                } else {
                    statement(
                        "DELETE l0_raw",
                        sqlx::query_scalar(DELETE_RAW)
                            .bind(&raw_ids)
                            .persistent(self.named_statements)
                            .fetch_all(&mut *tx),
                    )
                    .await?
                };
                let deleted_raw: HashSet<i64> = raw.iter().copied().collect();
                let deleted_insights: HashSet<i64> = insights.iter().copied().collect();
                not_found = items
                    .iter()
                    .filter(|item| match item.layer {
                        ItemLayer::Raw => !deleted_raw.contains(&item.id),
                        ItemLayer::Insight => !deleted_insights.contains(&item.id),
                    })
                    .copied()
                    .collect::<Vec<ItemRef>>();
                (raw, insights)
            }
        };
        let mut unlinked: Vec<i64> = if raw_deleted.is_empty() {
            Vec::new()
        } else {
            statement(
                "UPDATE l2_insights unlink",
                sqlx::query_scalar(UNLINK)
                    .bind(&raw_deleted)
                    .persistent(self.named_statements)
                    .fetch_all(&mut *tx),
            )
            .await?
        };
        statement("COMMIT", tx.commit()).await?;
        unlinked.sort_unstable();
        Ok(ForgetReport {
            raw_deleted: count(raw_deleted.len()),
            insights_deleted: count(insights_deleted.len()),
            insights_unlinked: count(unlinked.len()),
            unlinked_insight_ids: unlinked,
            not_found,
        })
    }

    /// The database's name, the newest applied migration and the number of stored items.
    /// Counts are exact (`count(*)`), so this reads both tables' visibility maps or rows: fine
    /// for a status tool, too heavy for a liveness probe.
    pub async fn status(&self, tenant: &Tenant) -> Result<StoreStatus, MemoryError> {
        let mut lease = self.lease(tenant).await?;
        let row = statement(
            "SELECT status",
            sqlx::query(STATUS)
                .persistent(self.named_statements)
                .fetch_one(lease.conn()),
        )
        .await?;
        let has_history: bool = row.try_get("has_history")?;
        let schema_version = if has_history {
            statement(
                "SELECT refinery_schema_history",
                sqlx::query_scalar::<_, Option<i32>>(SCHEMA_VERSION)
                    .persistent(self.named_statements)
                    .fetch_one(lease.conn()),
            )
            .await?
        } else {
            None
        };
        lease.done().await?;
        let raw_turns: i64 = row.try_get("raw_turns")?;
        let insights: i64 = row.try_get("insights")?;
        Ok(StoreStatus {
            tenant: tenant.to_string(),
            row_level_security: row.try_get("rls")?,
            search_indexes_under_rls: row.try_get("leakproof")?,
            database: row.try_get("database")?,
            schema_version,
            raw_turns: u64::try_from(raw_turns).unwrap_or_default(),
            insights: u64::try_from(insights).unwrap_or_default(),
        })
    }

    /// The `limit` most recently stored insights, newest first. `limit` must be from 1 to the
    /// configured maximum.
    pub async fn recent_insights(
        &self,
        tenant: &Tenant,
        limit: u32,
    ) -> Result<Vec<Insight>, MemoryError> {
        let limit = resolve_limit(Some(limit), &self.limits)?;
        let mut lease = self.lease(tenant).await?;
        let rows = statement(
            "SELECT l2_insights recent",
            sqlx::query(RECENT_INSIGHTS)
                .bind(i64::from(limit))
                .persistent(self.named_statements)
                .fetch_all(lease.conn()),
        )
        .await?;
        lease.done().await?;
        Ok(rows
            .iter()
            .map(insight)
            .collect::<Result<_, sqlx::Error>>()?)
    }
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn turn(row: &PgRow) -> Result<Turn, sqlx::Error> {
    let speaker: String = row.try_get("speaker")?;
    let metadata: String = row.try_get("metadata")?;
    Ok(Turn {
        id: row.try_get("id")?,
        speaker: Speaker::from_db(&speaker)
            .ok_or_else(|| decode_error("unexpected speaker in l0_raw"))?,
        content: row.try_get("content")?,
        // The error would quote the text: replace it.
        metadata: serde_json::from_str::<Map<String, Value>>(&metadata)
            .map_err(|_| decode_error("l0_raw.metadata is not a JSON object"))?,
        created_at: row.try_get("created_at")?,
    })
}

fn insight(row: &PgRow) -> Result<Insight, sqlx::Error> {
    Ok(Insight {
        id: row.try_get("id")?,
        content: row.try_get("content")?,
        source_ids: row.try_get("source_ids")?,
        tags: row.try_get("tags")?,
        importance: row.try_get("importance")?,
        created_at: row.try_get("created_at")?,
    })
}

fn decode_error(what: &'static str) -> sqlx::Error {
    sqlx::Error::Decode(what.into())
}

/// See [`MemoryStore::lease`].
pub(super) async fn lease_from(
    pool: &PgPool,
    named_statements: bool,
    tenant: &Tenant,
) -> Result<Lease, sqlx::Error> {
    Ok(if named_statements {
        let mut conn = connection(db::acquire(pool)).await?;
        // Part of taking the connection for the tenant, like the `BEGIN` exchange of a
        // transaction: not a statement span of its own.
        scope::set_session(&mut conn, tenant, true).await?;
        Lease::Pooled(conn)
    } else {
        Lease::Transaction(statement("BEGIN", connection(scope::begin(pool, tenant))).await?)
    })
}

/// See [`MemoryStore::lease`].
pub(super) enum Lease {
    Pooled(sqlx::pool::PoolConnection<sqlx::Postgres>),
    Transaction(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl Lease {
    pub(super) fn conn(&mut self) -> &mut sqlx::PgConnection {
        match self {
            Lease::Pooled(conn) => conn,
            Lease::Transaction(tx) => tx,
        }
    }

    /// Commits the transaction, if any; a single statement's work is then durable.
    pub(super) async fn done(self) -> Result<(), sqlx::Error> {
        match self {
            Lease::Pooled(_) => Ok(()),
            Lease::Transaction(tx) => statement("COMMIT", tx.commit()).await,
        }
    }
}
