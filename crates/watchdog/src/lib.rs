//! Tells systemd how the service is doing (`sd_notify(3)`), and pets its watchdog only while the
//! service is demonstrably alive.
//!
//! - [`Notifier`] sends `READY=1`, `STATUS=`, `EXTEND_TIMEOUT_USEC=`, `RELOADING=1`, `STOPPING=1` and
//!   `WATCHDOG=1` to `$NOTIFY_SOCKET` (a no-op without one), or records them for tests.
//! - [`watchdog_interval`] turns `$WATCHDOG_USEC` into a ping interval.
//! - [`heartbeat`] is a tokio task that sends `WATCHDOG=1` only when a caller-supplied liveness probe
//!   passes in time. An unconditional ping timer would keep a deadlocked service "healthy".
//!
//! This crate knows nothing about what "alive" means (HTTP, SQL): the probe decides.
//!
//! # Example
//!
//! ```no_run
//! use tokio::sync::watch;
//! use watchdog::{BeatOutcome, HeartbeatOptions, Notifier};
//!
//! # async fn database_answers() -> bool { true }
//! # #[tokio::main]
//! # async fn main() -> Result<(), watchdog::NotifyError> {
//! let notifier = Notifier::systemd();
//! let (stop, stopped) = watch::channel(false);
//! let pets = watchdog::watchdog_interval().map(|interval| {
//!     tokio::spawn(watchdog::heartbeat(
//!         notifier.clone(),
//!         HeartbeatOptions::new(interval),
//!         || database_answers(),
//!         |outcome| {
//!             if !matches!(outcome, BeatOutcome::Petted) {
//!                 eprintln!("watchdog not petted: {outcome:?}");
//!             }
//!         },
//!         stopped,
//!     ))
//! });
//! notifier.ready("serving")?;
//! // … serve until SIGTERM …
//! notifier.stopping()?;
//! let _ = stop.send(true);
//! if let Some(pets) = pets {
//!     let _ = pets.await;
//! }
//! # Ok(())
//! # }
//! ```

mod heartbeat;
mod notifier;

pub use heartbeat::{BeatOutcome, HeartbeatOptions, heartbeat, watchdog_interval};
pub use notifier::{MAX_EXTEND_TIMEOUT, MAX_STATUS_BYTES, Notifier, NotifyError, Recording};
