//! Readiness of the running daemon: a background monitor re-checks the database, its environment
//! stamp and its schema, and everything else (`/ready`, `STATUS=`, the watchdog probe) reads the
//! result instead of querying on its own.
//!
//! A database outage makes the daemon *degraded*, not dead: systemd keeps getting pets (a restart
//! would not bring PostgreSQL back), `/ready` answers 503 and `STATUS=` says why.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use config_core::Environment;
use serde::Serialize;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use watchdog::Notifier;

/// Time between two checks of the database.
pub const MONITOR_INTERVAL: Duration = Duration::from_secs(2);
/// Longest one check may take; a check that hangs counts as "database unavailable".
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// The watchdog probe fails when the monitor has not finished a check for this long: its task
/// is stuck, so the runtime is not healthy even if the router still answers.
pub const MONITOR_STALL_LIMIT: Duration = Duration::from_secs(3 * 2 + 2);

/// One aspect of readiness.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "detail", rename_all = "lowercase")]
pub enum Check {
    Ok,
    Failed(String),
    /// Not checked, because something it depends on failed.
    Unknown,
}

/// What `/ready` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Readiness {
    pub database: Check,
    pub stamp: Check,
    pub schema: Check,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.database == Check::Ok && self.stamp == Check::Ok && self.schema == Check::Ok
    }

    /// The first failure, for `STATUS=` and logs.
    pub fn problem(&self) -> Option<String> {
        [
            ("database unavailable", &self.database),
            ("environment stamp", &self.stamp),
            ("schema", &self.schema),
        ]
        .into_iter()
        .find_map(|(what, check)| match check {
            Check::Failed(reason) => Some(format!("{what}: {reason}")),
            _ => None,
        })
    }
}

/// What unauthenticated callers of `/ready` learn: a state word, never the error text (which
/// can name roles, hosts or source lines); the details go to the log and `STATUS=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Ok,
    /// The database does not answer, or refuses this process's credentials.
    Unavailable,
    /// The database is stamped for another environment, or not at all.
    WrongStamp,
    /// Migrations are pending, changed or unknown to this build.
    SchemaMismatch,
    /// Not checked, because something it depends on failed.
    Unknown,
}

impl Check {
    fn state(&self, failed: State) -> State {
        match self {
            Check::Ok => State::Ok,
            Check::Failed(_) => failed,
            Check::Unknown => State::Unknown,
        }
    }
}

impl Readiness {
    /// Each check as a state word: database, stamp, schema.
    pub fn states(&self) -> [State; 3] {
        [
            self.database.state(State::Unavailable),
            self.stamp.state(State::WrongStamp),
            self.schema.state(State::SchemaMismatch),
        ]
    }

    /// The first failed state, or `Ok`.
    pub fn state(&self) -> State {
        self.states()
            .into_iter()
            .find(|state| !matches!(state, State::Ok | State::Unknown))
            .unwrap_or(State::Ok)
    }
}

/// Shared readiness state, written by [`monitor`].
#[derive(Debug)]
pub struct Health {
    environment: Environment,
    readiness: RwLock<Readiness>,
    started: Instant,
    /// Milliseconds since `started` at which the monitor last finished a check.
    last_check_ms: AtomicU64,
}

impl Health {
    /// Starts as ready: the daemon only serves after the same checks passed at start-up.
    pub fn new(environment: Environment) -> Self {
        Self {
            environment,
            readiness: RwLock::new(Readiness {
                database: Check::Ok,
                stamp: Check::Ok,
                schema: Check::Ok,
            }),
            started: Instant::now(),
            last_check_ms: AtomicU64::new(0),
        }
    }

    pub fn environment(&self) -> Environment {
        self.environment
    }

    pub fn readiness(&self) -> Readiness {
        self.readiness
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Whether the monitor finished a check recently: proof that background tasks make progress.
    pub fn monitor_alive(&self) -> bool {
        let last = Duration::from_millis(self.last_check_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last) <= MONITOR_STALL_LIMIT
    }

    /// Stores a new result and returns the previous one.
    fn record(&self, readiness: Readiness) -> Readiness {
        let elapsed = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_check_ms.store(elapsed, Ordering::Relaxed);
        let mut current = self
            .readiness
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        std::mem::replace(&mut *current, readiness)
    }
}

/// Checks the database every [`MONITOR_INTERVAL`] until `shutdown`, logging and announcing
/// (`STATUS=`) each change between ready and degraded. `ready_status` is the `STATUS=` text of a
/// healthy daemon.
pub async fn monitor(
    health: Arc<Health>,
    pool: PgPool,
    notifier: Notifier,
    ready_status: String,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(MONITOR_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut announced = ready_status.clone();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let readiness = check(&pool, health.environment()).await;
        let status = match readiness.problem() {
            None => ready_status.clone(),
            Some(problem) => format!("degraded: {problem}"),
        };
        let was_ready = health.record(readiness).is_ready();
        // Announce every change of the text, so the reason shown is always the current one.
        if status != announced {
            if status == ready_status {
                tracing::info!("database back; ready again");
            } else if was_ready {
                tracing::warn!(%status, "degraded: requests that need the database fail until it is back");
            } else {
                tracing::warn!(%status, "still degraded, for another reason");
            }
            let _ = notifier.status(&status);
            announced = status;
        }
    }
}

/// One round of checks, each bounded by [`CHECK_TIMEOUT`].
pub async fn check(pool: &PgPool, environment: Environment) -> Readiness {
    let stamp = tokio::time::timeout(CHECK_TIMEOUT, db::check_stamp(pool, environment)).await;
    let (database, stamp) = match stamp {
        Err(_) => (
            Check::Failed(format!("no answer within {CHECK_TIMEOUT:?}")),
            Check::Unknown,
        ),
        Ok(Ok(_)) => (Check::Ok, Check::Ok),
        Ok(Err(err @ (db::DbError::WrongEnvironment { .. } | db::DbError::Unstamped { .. }))) => {
            (Check::Ok, Check::Failed(err.to_string()))
        }
        Ok(Err(err)) => (Check::Failed(err.to_string()), Check::Unknown),
    };
    let schema = if database == Check::Ok {
        match tokio::time::timeout(CHECK_TIMEOUT, db::pending(pool)).await {
            Ok(Ok(pending)) if pending.is_empty() => Check::Ok,
            Ok(Ok(pending)) => Check::Failed(format!(
                "{} pending migration(s); run `cognitive-memory-mcp migrate`",
                pending.len()
            )),
            Ok(Err(
                err @ (db::DbError::DivergentMigration { .. }
                | db::DbError::MissingMigration { .. }),
            )) => Check::Failed(err.to_string()),
            // The database went away between the two checks: that is what to report.
            Ok(Err(err)) => {
                return Readiness {
                    database: Check::Failed(err.to_string()),
                    stamp: Check::Unknown,
                    schema: Check::Unknown,
                };
            }
            Err(_) => Check::Failed(format!("no answer within {CHECK_TIMEOUT:?}")),
        }
    } else {
        Check::Unknown
    };
    Readiness {
        database,
        stamp,
        schema,
    }
}
