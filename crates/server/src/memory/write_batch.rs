//! Group commit for `store_raw_dialogue` (issue #17).
//!
//! A store call does not write its turn itself: it queues it, and one of a few *writer* tasks
//! writes every turn queued at that moment with one multi-row `INSERT … SELECT FROM unnest(…)`
//! (one statement, so one commit and one run of the V6 postings trigger for the whole batch).
//! Each caller is answered with its own id only after that statement has committed: an
//! acknowledged write is as durable as before, there are just fewer commits.
//!
//! - **No added latency at low load**: a writer takes what is queued when it looks and does not
//!   wait for more unless `memory.write_batch.max_wait_ms` says so; batches form by themselves
//!   while the writers are busy.
//! - **Bounded**: at most `memory.write_batch.queue` turns wait; a store call beyond that waits
//!   for room (back-pressure onto the HTTP handlers, whose number the front door bounds).
//! - **Per tenant**: a batch is split by [`Tenant`]; each tenant's turns are written by a
//!   statement (and, once row-level security sets `app.tenant` per transaction, a transaction)
//!   of their own, so one tenant's failure never touches another's turns.
//! - **Failures**: when the server rejects a batch's statement (nothing was written), its turns
//!   are written again one by one, so only the turn at fault fails, with its own error. Any
//!   other failure (connection lost, pool timed out, commit unconfirmed) fails every caller of
//!   the batch with that error's kind — as the same failure would have failed each of them
//!   without batching; nothing acknowledged is affected.
//! - **Shutdown** ([`WriteBatcher::close`]): new calls are refused as unavailable, the turns
//!   already queued are written and answered, then the writers end.
//!
//! Telemetry: every caller's call span gets a child span `INSERT l0_raw` for the statement that
//! wrote its turn (the batch's statement, recorded in each caller's trace); the statement is
//! counted once in the metrics.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry::trace::FutureExt as _;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::store::lease_from;
use super::{MemoryError, StoredTurn};
use crate::telemetry::{metrics, traces};
use crate::tenancy::Tenant;

/// The batch insert: the turns in their queue order (`n`); the identity column numbers them in
/// that order, so the returned rows sorted by id are the turns in order.
const INSERT_RAW_BATCH: &str = concat!(
    "INSERT INTO l0_raw (session_id, speaker, content, metadata)
     SELECT t.session_id, t.speaker, t.content, t.metadata::jsonb
     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
          WITH ORDINALITY AS t(session_id, speaker, content, metadata, n)
     ORDER BY t.n
     RETURNING id, session_id, ",
    "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS created_at"
);

/// How the writers batch (`memory.write_batch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteBatchSettings {
    /// Most turns one statement writes.
    pub max_batch: usize,
    /// How long a writer waits for more turns after the first one of a batch that is not full
    /// (zero: it writes what is queued at once).
    pub max_wait: Duration,
    /// Most turns waiting to be written; a store call beyond it waits for room.
    pub queue: usize,
    /// Writer tasks, each writing one batch at a time on a pooled connection of its own.
    pub writers: usize,
}

impl Default for WriteBatchSettings {
    fn default() -> Self {
        WriteBatchSettings {
            max_batch: 64,
            max_wait: Duration::ZERO,
            queue: 1024,
            writers: 2,
        }
    }
}

impl WriteBatchSettings {
    /// The settings configured in `memory.write_batch` (validated by the configuration).
    pub fn from_config(cfg: &crate::config::WriteBatchConfig) -> Self {
        WriteBatchSettings {
            max_batch: cfg.max_batch,
            max_wait: Duration::from_millis(cfg.max_wait_ms),
            queue: cfg.queue,
            writers: cfg.writers,
        }
    }
}

/// One turn to store, validated.
#[derive(Debug)]
pub(super) struct RawTurn {
    pub(super) tenant: Tenant,
    pub(super) session_id: String,
    pub(super) speaker: &'static str,
    pub(super) content: String,
    /// Compact JSON text of the metadata object.
    pub(super) metadata: String,
}

/// A queued turn and where its answer goes.
struct Queued {
    turn: RawTurn,
    reply: oneshot::Sender<Result<StoredTurn, MemoryError>>,
    /// The caller's trace context (for the statement span).
    context: Context,
}

enum State {
    /// No writer yet (they start with the first call, inside the caller's runtime).
    Idle,
    Running {
        sender: mpsc::Sender<Queued>,
        writers: Vec<JoinHandle<()>>,
    },
    Closed,
}

/// The queue and its writers; shared by the clones of a [`MemoryStore`](super::MemoryStore).
pub(super) struct WriteBatcher {
    settings: WriteBatchSettings,
    state: Mutex<State>,
    /// Turns accepted into the queue and not yet answered.
    pending: AtomicUsize,
}

impl std::fmt::Debug for WriteBatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteBatcher")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// What the writers need of the store.
#[derive(Clone)]
pub(super) struct Target {
    pub(super) pool: PgPool,
    pub(super) named_statements: bool,
}

impl WriteBatcher {
    pub(super) fn new(settings: WriteBatchSettings) -> Self {
        WriteBatcher {
            settings,
            state: Mutex::new(State::Idle),
            pending: AtomicUsize::new(0),
        }
    }

    /// Turns accepted and not yet answered (queued or being written).
    pub(super) fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    pub(super) fn settings(&self) -> WriteBatchSettings {
        self.settings
    }

    /// Queues `turn` and waits until it is committed (or has failed).
    pub(super) async fn store(
        &self,
        target: &Target,
        turn: RawTurn,
    ) -> Result<StoredTurn, MemoryError> {
        let sender = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            match &*state {
                State::Running { sender, .. } => sender.clone(),
                State::Closed => return Err(shut_down()),
                State::Idle => {
                    let (sender, receiver) = mpsc::channel(self.settings.queue.max(1));
                    let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
                    let writers = (0..self.settings.writers.max(1))
                        .map(|_| {
                            tokio::spawn(writer(receiver.clone(), target.clone(), self.settings))
                        })
                        .collect();
                    *state = State::Running {
                        sender: sender.clone(),
                        writers,
                    };
                    sender
                }
            }
        };
        let (reply, answer) = oneshot::channel();
        let queued = Queued {
            turn,
            reply,
            context: Context::current(),
        };
        if sender.send(queued).await.is_err() {
            return Err(shut_down());
        }
        drop(sender);
        // Counted until answered, or until the caller gives up waiting (the turn is still
        // written: a write once queued is not withdrawn).
        let _pending = Pending::count(&self.pending);
        // A writer always answers; no answer means it was cancelled (runtime shutting down).
        answer.await.unwrap_or_else(|_| Err(shut_down()))
    }

    /// Refuses new turns, writes and answers those already queued, and waits for the writers
    /// to end. Idempotent.
    pub(super) async fn close(&self) {
        let writers = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            match std::mem::replace(&mut *state, State::Closed) {
                // Dropping the last sender ends the writers once the queue is empty.
                State::Running { sender, writers } => {
                    drop(sender);
                    writers
                }
                State::Idle | State::Closed => Vec::new(),
            }
        };
        for writer in writers {
            let _ = writer.await;
        }
    }
}

struct Pending<'a>(&'a AtomicUsize);

impl<'a> Pending<'a> {
    fn count(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Pending(counter)
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The error of a call refused because the store is shutting down: transient, like a closed pool.
fn shut_down() -> MemoryError {
    MemoryError::Unavailable(sqlx::Error::PoolClosed)
}

/// One writer: takes a batch off the queue, writes it, answers its callers; ends when the queue
/// is closed and empty.
async fn writer(
    receiver: Arc<tokio::sync::Mutex<mpsc::Receiver<Queued>>>,
    target: Target,
    settings: WriteBatchSettings,
) {
    let max_batch = settings.max_batch.max(1);
    loop {
        let batch = {
            let mut receiver = receiver.lock().await;
            let Some(first) = receiver.recv().await else {
                return;
            };
            let mut batch = Vec::with_capacity(max_batch.min(64));
            batch.push(first);
            while batch.len() < max_batch {
                match receiver.try_recv() {
                    Ok(item) => batch.push(item),
                    Err(_) => break,
                }
            }
            if !settings.max_wait.is_zero() && batch.len() < max_batch {
                let deadline = tokio::time::Instant::now() + settings.max_wait;
                while batch.len() < max_batch {
                    match tokio::time::timeout_at(deadline, receiver.recv()).await {
                        Ok(Some(item)) => batch.push(item),
                        Ok(None) | Err(_) => break,
                    }
                }
            }
            batch
        };
        // By tenant, each in queue order.
        let mut by_tenant: BTreeMap<Tenant, Vec<Queued>> = BTreeMap::new();
        for item in batch {
            by_tenant
                .entry(item.turn.tenant.clone())
                .or_default()
                .push(item);
        }
        for (tenant, items) in by_tenant {
            write_tenant(&target, &tenant, items).await;
        }
    }
}

/// Writes one tenant's part of a batch and answers its callers.
async fn write_tenant(target: &Target, tenant: &Tenant, items: Vec<Queued>) {
    let context = items[0].context.clone();
    let turns: Vec<&RawTurn> = items.iter().map(|item| &item.turn).collect();
    let contexts: Vec<&Context> = items.iter().map(|item| &item.context).collect();
    let result = insert(target, tenant, &turns, &contexts)
        .with_context(context)
        .await;
    match result {
        Ok(stored) => {
            for (item, stored) in items.into_iter().zip(stored) {
                let _ = item.reply.send(Ok(stored));
            }
        }
        Err(err) if items.len() == 1 => {
            if let Some(item) = items.into_iter().next() {
                let _ = item.reply.send(Err(MemoryError::from(err)));
            }
        }
        // The server rejected the statement: nothing of it was written. One by one, so only
        // the turn at fault fails.
        Err(sqlx::Error::Database(_)) => {
            for item in items {
                let result = insert(target, tenant, &[&item.turn], &[&item.context])
                    .with_context(item.context.clone())
                    .await
                    .map_err(MemoryError::from)
                    .and_then(|mut stored| {
                        stored.pop().ok_or_else(|| {
                            MemoryError::Database(sqlx::Error::Protocol(
                                "the batch insert returned no row".into(),
                            ))
                        })
                    });
                let _ = item.reply.send(result);
            }
        }
        Err(err) => {
            for item in items {
                let _ = item.reply.send(Err(MemoryError::from(replicate(&err))));
            }
        }
    }
}

/// Inserts `turns` with one statement (committed on return) and returns them as stored, in
/// order. The statement's span (`INSERT l0_raw`) is recorded once in each caller's trace
/// (`contexts`), so every call shows the statement that wrote its turn; the statement is
/// counted once in the metrics.
async fn insert(
    target: &Target,
    tenant: &Tenant,
    turns: &[&RawTurn],
    contexts: &[&Context],
) -> Result<Vec<StoredTurn>, sqlx::Error> {
    let session_ids: Vec<&str> = turns.iter().map(|t| t.session_id.as_str()).collect();
    let speakers: Vec<&str> = turns.iter().map(|t| t.speaker).collect();
    let contents: Vec<&str> = turns.iter().map(|t| t.content.as_str()).collect();
    let metadata: Vec<&str> = turns.iter().map(|t| t.metadata.as_str()).collect();
    let mut lease = lease_from(&target.pool, target.named_statements, tenant).await?;
    let mut running: Pin<Box<dyn Future<Output = Result<Vec<PgRow>, sqlx::Error>> + Send + '_>> =
        Box::pin(
            sqlx::query(INSERT_RAW_BATCH)
                .bind(&session_ids)
                .bind(&speakers)
                .bind(&contents)
                .bind(&metadata)
                .persistent(target.named_statements)
                .fetch_all(lease.conn()),
        );
    for context in contexts {
        running =
            Box::pin(traces::statement("INSERT l0_raw", running).with_context((*context).clone()));
    }
    let rows = metrics::count_statement(running).await?;
    lease.done().await?;
    let mut stored = rows
        .iter()
        .map(|row| {
            Ok(StoredTurn {
                id: row.try_get("id")?,
                session_id: row.try_get("session_id")?,
                created_at: row.try_get("created_at")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    stored.sort_unstable_by_key(|s| s.id);
    let matches = stored.len() == turns.len()
        && stored
            .iter()
            .zip(turns)
            .all(|(s, t)| s.session_id == t.session_id);
    if !matches {
        // Cannot happen (the identity column numbers the rows in the SELECT's order); if it
        // did, no caller may be given another caller's id. The rows are committed.
        return Err(sqlx::Error::Protocol(
            "the batch insert returned rows that do not match its turns".into(),
        ));
    }
    Ok(stored)
}

/// An error of the same kind for each caller of a failed batch (the driver's errors cannot be
/// cloned): the same variant where it carries no data, else its text, which for these kinds
/// holds no submitted value (database errors are retried one by one instead).
fn replicate(err: &sqlx::Error) -> sqlx::Error {
    match err {
        sqlx::Error::PoolTimedOut => sqlx::Error::PoolTimedOut,
        sqlx::Error::PoolClosed => sqlx::Error::PoolClosed,
        sqlx::Error::Io(io) => sqlx::Error::Io(std::io::Error::new(io.kind(), io.to_string())),
        sqlx::Error::Tls(tls) => sqlx::Error::Tls(tls.to_string().into()),
        other => sqlx::Error::Protocol(other.to_string()),
    }
}
