//! The service-manager notification channel and its sinks.

use std::fmt::Write as _;
use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sd_notify::NotifyState;

/// Longest start/stop extension one `EXTEND_TIMEOUT_USEC=` may ask for, so that a bug computing the
/// duration cannot make systemd wait for ever.
pub const MAX_EXTEND_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Longest `STATUS=` text sent, in bytes. systemd reads at most 4096 bytes per notify datagram and
/// drops the rest; a short cap keeps the other fields of the same datagram intact.
pub const MAX_STATUS_BYTES: usize = 1024;

/// A notification that could not be delivered.
///
/// Every [`Notifier`] method returns it instead of swallowing it: a misdirected `READY=1` or `STOPPING=1`
/// (sandboxing that hides the socket, a wrong `NOTIFY_SOCKET`) must show up in the caller's logs, and
/// only the caller knows how to log.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The datagram could not be sent to `$NOTIFY_SOCKET`.
    #[error("cannot send a notification to the service manager at $NOTIFY_SOCKET: {0}")]
    Send(#[source] io::Error),
    /// `RELOADING=1` needs the current `CLOCK_MONOTONIC` time and the clock could not be read.
    #[error("cannot read CLOCK_MONOTONIC for the MONOTONIC_USEC= of a reload notification: {0}")]
    Clock(#[source] io::Error),
}

/// Sends `sd_notify(3)` messages to wherever this process reports its state.
///
/// Cheap to clone: the startup code, the heartbeat and the shutdown path each hold one.
#[derive(Clone, Debug)]
pub struct Notifier {
    sink: Sink,
}

#[derive(Clone, Debug)]
enum Sink {
    Systemd,
    Recording(Recording),
    Disabled,
}

impl Notifier {
    /// Notifies the service manager named by `$NOTIFY_SOCKET`; every message is a silent no-op when it
    /// is unset, so the same binary runs unchanged outside systemd.
    ///
    /// `$NOTIFY_SOCKET` is read at every send and never removed from the environment, so that
    /// `STATUS=` and `STOPPING=1` late in the process's life still arrive.
    pub fn systemd() -> Self {
        Self {
            sink: Sink::Systemd,
        }
    }

    /// Sends nothing, for runs that must not talk to a service manager even if one is present.
    pub fn disabled() -> Self {
        Self {
            sink: Sink::Disabled,
        }
    }

    /// Records every datagram instead of sending it, so tests can assert the exact messages; the
    /// returned [`Recording`] reads them back.
    pub fn recording() -> (Self, Recording) {
        let recording = Recording::default();
        let notifier = Self {
            sink: Sink::Recording(recording.clone()),
        };
        (notifier, recording)
    }

    /// `READY=1` and `STATUS=` in one datagram, so the unit never shows as active with a stale status.
    pub fn ready(&self, status: &str) -> Result<(), NotifyError> {
        let status = sanitize_status(status);
        self.send(&[NotifyState::Ready, NotifyState::Status(&status)])
    }

    /// `STATUS=`: a one-line summary shown by `systemctl status`. Control characters become spaces
    /// (a newline would start a new, unintended field) and the text is cut to [`MAX_STATUS_BYTES`].
    pub fn status(&self, status: &str) -> Result<(), NotifyError> {
        let status = sanitize_status(status);
        self.send(&[NotifyState::Status(&status)])
    }

    /// `EXTEND_TIMEOUT_USEC=`: asks for `by` more time to start or stop, capped at
    /// [`MAX_EXTEND_TIMEOUT`]. Send it again before it runs out to keep extending.
    pub fn extend_timeout(&self, by: Duration) -> Result<(), NotifyError> {
        let usec = u32::try_from(by.min(MAX_EXTEND_TIMEOUT).as_micros()).unwrap_or(u32::MAX);
        self.send(&[NotifyState::ExtendTimeoutUsec(usec)])
    }

    /// `RELOADING=1` with `MONOTONIC_USEC=` (now), which systemd ≥ 253 requires in the same datagram;
    /// follow it with [`Notifier::ready`] when the reload is done.
    pub fn reloading(&self) -> Result<(), NotifyError> {
        let now = NotifyState::monotonic_usec_now().map_err(NotifyError::Clock)?;
        self.send(&[NotifyState::Reloading, now])
    }

    /// `STOPPING=1`: from here on the watchdog no longer counts and `TimeoutStopSec=` governs the drain.
    pub fn stopping(&self) -> Result<(), NotifyError> {
        self.send(&[NotifyState::Stopping])
    }

    /// `WATCHDOG=1`. Prefer [`crate::heartbeat`], which sends it only while a liveness probe passes.
    pub fn watchdog(&self) -> Result<(), NotifyError> {
        self.send(&[NotifyState::Watchdog])
    }

    fn send(&self, states: &[NotifyState<'_>]) -> Result<(), NotifyError> {
        match &self.sink {
            Sink::Systemd => sd_notify::notify(states).map_err(NotifyError::Send),
            Sink::Recording(recording) => {
                recording.push(encode(states));
                Ok(())
            }
            Sink::Disabled => Ok(()),
        }
    }
}

/// The datagrams a [`Notifier::recording`] notifier has "sent", shared with it.
#[derive(Clone, Debug, Default)]
pub struct Recording {
    datagrams: Arc<Mutex<Vec<String>>>,
}

impl Recording {
    /// Every datagram so far, oldest first, byte for byte as the systemd sink would send it:
    /// `KEY=VALUE` lines, each ending in `\n`.
    pub fn datagrams(&self) -> Vec<String> {
        self.lock().clone()
    }

    fn push(&self, datagram: String) {
        self.lock().push(datagram);
    }

    /// A panic elsewhere while holding the lock cannot leave a `Vec` of complete strings
    /// inconsistent, so poisoning is ignored rather than turned into a second panic.
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.datagrams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The same encoding `sd_notify::notify` uses, so recorded datagrams match the real ones.
fn encode(states: &[NotifyState<'_>]) -> String {
    let mut datagram = String::new();
    for state in states {
        // Writing to a String cannot fail.
        let _ = writeln!(datagram, "{state}");
    }
    datagram
}

fn sanitize_status(status: &str) -> String {
    let status = &status[..status.floor_char_boundary(MAX_STATUS_BYTES)];
    status
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(send: impl FnOnce(&Notifier) -> Result<(), NotifyError>) -> Vec<String> {
        let (notifier, recording) = Notifier::recording();
        send(&notifier).expect("the recording sink never fails");
        recording.datagrams()
    }

    #[test]
    fn ready_sends_ready_and_status_in_one_datagram() {
        assert_eq!(
            recorded(|n| n.ready("serving on 127.0.0.1:8080")),
            ["READY=1\nSTATUS=serving on 127.0.0.1:8080\n"]
        );
    }

    #[test]
    fn status_replaces_control_characters_so_no_extra_field_is_injected() {
        assert_eq!(
            recorded(|n| n.status("db down\nREADY=1\r\tretrying\0")),
            ["STATUS=db down READY=1  retrying \n"]
        );
        assert_eq!(recorded(|n| n.ready("a\nb")), ["READY=1\nSTATUS=a b\n"]);
    }

    #[test]
    fn status_is_cut_at_a_char_boundary_within_the_cap() {
        let long = "é".repeat(MAX_STATUS_BYTES); // 2 bytes each
        let datagrams = recorded(|n| n.status(&long));
        let sent = datagrams[0]
            .strip_prefix("STATUS=")
            .and_then(|s| s.strip_suffix('\n'))
            .expect("one STATUS line");
        assert_eq!(sent, "é".repeat(MAX_STATUS_BYTES / 2));
    }

    #[test]
    fn extend_timeout_sends_microseconds_capped_at_five_minutes() {
        assert_eq!(
            recorded(|n| n.extend_timeout(Duration::from_millis(1500))),
            ["EXTEND_TIMEOUT_USEC=1500000\n"]
        );
        assert_eq!(
            recorded(|n| n.extend_timeout(Duration::from_secs(86_400 * 365))),
            ["EXTEND_TIMEOUT_USEC=300000000\n"]
        );
    }

    #[test]
    fn reloading_carries_a_nondecreasing_monotonic_timestamp() {
        let (notifier, recording) = Notifier::recording();
        notifier.reloading().expect("first reload");
        notifier.reloading().expect("second reload");
        let stamps: Vec<u64> = recording
            .datagrams()
            .iter()
            .map(|datagram| {
                let usec = datagram
                    .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
                    .and_then(|rest| rest.strip_suffix('\n'))
                    .unwrap_or_else(|| panic!("unexpected reload datagram {datagram:?}"));
                usec.parse().expect("MONOTONIC_USEC is an integer")
            })
            .collect();
        assert!(stamps[0] > 0 && stamps[0] <= stamps[1], "{stamps:?}");
    }

    #[test]
    fn stopping_and_watchdog_are_single_fields() {
        assert_eq!(recorded(Notifier::stopping), ["STOPPING=1\n"]);
        assert_eq!(recorded(Notifier::watchdog), ["WATCHDOG=1\n"]);
    }

    #[test]
    fn recording_accumulates_datagrams_in_order_across_clones() {
        let (notifier, recording) = Notifier::recording();
        let clone = notifier.clone();
        notifier.status("one").expect("record");
        clone.watchdog().expect("record");
        assert_eq!(recording.datagrams(), ["STATUS=one\n", "WATCHDOG=1\n"]);
    }
}
