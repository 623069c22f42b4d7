//! The health-gated watchdog heartbeat.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{self, Interval, MissedTickBehavior};

use crate::notifier::{Notifier, NotifyError};

/// How often `WATCHDOG=1` should be sent: half of `$WATCHDOG_USEC`, as `sd_watchdog_enabled(3)`
/// recommends, so one late ping does not kill the service.
///
/// `None` when no watchdog applies to this process (`$WATCHDOG_USEC` unset, zero or unparsable, or
/// `$WATCHDOG_PID` naming another process).
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
        .filter(|period| !period.is_zero())
        .map(|period| period / 2)
}

/// Timing of [`heartbeat`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeartbeatOptions {
    interval: Duration,
    probe_timeout: Duration,
}

impl HeartbeatOptions {
    /// Probe every `interval` (usually [`watchdog_interval`]) and give each probe half of it.
    ///
    /// With `interval` = period/2 and a probe timeout ≤ `interval`, two pets of a healthy process are
    /// never more than one watchdog period apart. A zero `interval` is raised to 1 ms: a timer cannot
    /// tick at zero, and systemd never asks for it.
    pub fn new(interval: Duration) -> Self {
        let interval = interval.max(Duration::from_millis(1));
        Self {
            interval,
            probe_timeout: interval / 2,
        }
    }

    /// Overrides the probe timeout; capped at the interval so a slow probe cannot stretch the gap
    /// between pets beyond the watchdog period.
    pub fn with_probe_timeout(self, probe_timeout: Duration) -> Self {
        Self {
            probe_timeout: probe_timeout.min(self.interval),
            ..self
        }
    }

    /// Time between the starts of two probes.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Longest a probe may take before it counts as failed.
    pub fn probe_timeout(&self) -> Duration {
        self.probe_timeout
    }
}

/// What one beat of [`heartbeat`] did; handed to its `on_beat` callback for logging or `STATUS=`.
#[derive(Debug)]
pub enum BeatOutcome {
    /// The probe passed and `WATCHDOG=1` was sent.
    Petted,
    /// The probe reported the process unhealthy; no pet was sent.
    ProbeFailed,
    /// The probe did not finish within the given timeout and was dropped; no pet was sent.
    ProbeTimedOut(Duration),
    /// The probe passed but `WATCHDOG=1` could not be sent.
    PetFailed(NotifyError),
}

/// Pets the systemd watchdog only while `probe` says the process is healthy, until `shutdown` turns
/// `true` (or its sender is dropped, which means nobody can ask for a clean stop any more).
///
/// The first probe runs at once, then one every [`HeartbeatOptions::interval`]; each runs under
/// [`HeartbeatOptions::probe_timeout`] and is dropped when that expires. Every beat's outcome goes to
/// `on_beat` (pass `|_| {}` to ignore them); the caller logs failures and may set `STATUS=`.
///
/// Spawn this on the same tokio runtime that serves requests, and make `probe` exercise the real
/// path (e.g. a database round-trip through the shared pool). A timer task that pets unconditionally
/// keeps a deadlocked service alive; this one stops petting when the probe fails, hangs, or when the
/// runtime itself is stalled, because then neither the probe nor this task is polled and systemd's
/// watchdog fires. After `shutdown`, send `STOPPING=1`: systemd stops watching then.
pub async fn heartbeat<P, Fut, B>(
    notifier: Notifier,
    options: HeartbeatOptions,
    probe: P,
    mut on_beat: B,
    mut shutdown: watch::Receiver<bool>,
) where
    P: Fn() -> Fut,
    Fut: Future<Output = bool>,
    B: FnMut(BeatOutcome),
{
    let mut ticks = time::interval(options.interval);
    // After a stall, resume the normal rhythm instead of bursting the missed beats.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let outcome = tokio::select! {
            biased;
            _ = shutdown.wait_for(|&stop| stop) => return,
            outcome = beat(&notifier, &options, &probe, &mut ticks) => outcome,
        };
        on_beat(outcome);
    }
}

async fn beat<P, Fut>(
    notifier: &Notifier,
    options: &HeartbeatOptions,
    probe: &P,
    ticks: &mut Interval,
) -> BeatOutcome
where
    P: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    ticks.tick().await;
    match time::timeout(options.probe_timeout, probe()).await {
        Ok(true) => match notifier.watchdog() {
            Ok(()) => BeatOutcome::Petted,
            Err(error) => BeatOutcome::PetFailed(error),
        },
        Ok(false) => BeatOutcome::ProbeFailed,
        Err(_elapsed) => BeatOutcome::ProbeTimedOut(options.probe_timeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_default_the_probe_timeout_to_half_the_interval() {
        let options = HeartbeatOptions::new(Duration::from_secs(10));
        assert_eq!(options.interval(), Duration::from_secs(10));
        assert_eq!(options.probe_timeout(), Duration::from_secs(5));
    }

    #[test]
    fn options_cap_the_probe_timeout_at_the_interval() {
        let options = HeartbeatOptions::new(Duration::from_secs(10))
            .with_probe_timeout(Duration::from_secs(60));
        assert_eq!(options.probe_timeout(), Duration::from_secs(10));
    }

    #[test]
    fn options_raise_a_zero_interval() {
        assert_eq!(
            HeartbeatOptions::new(Duration::ZERO).interval(),
            Duration::from_millis(1)
        );
    }
}
