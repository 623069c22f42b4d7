//! The heartbeat on tokio's paused clock: time only moves when every task waits, so beat times are exact.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{self, Instant};
use watchdog::{HeartbeatOptions, Notifier, heartbeat};

const INTERVAL: Duration = Duration::from_secs(10);

/// What a heartbeat run did: each outcome with its offset from the start, and the datagrams sent.
struct Run {
    beats: Vec<(Duration, String)>,
    datagrams: Vec<String>,
}

/// Runs a heartbeat with `probe` and stops it after `stop_after`; also checks that it ends at once.
async fn run<P, Fut>(probe: P, stop_after: Duration) -> Run
where
    P: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    let (notifier, recording) = Notifier::recording();
    let (stop, stopped) = watch::channel(false);
    let (beats_tx, mut beats_rx) = mpsc::unbounded_channel();
    let start = Instant::now();
    let task = tokio::spawn(heartbeat(
        notifier,
        HeartbeatOptions::new(INTERVAL),
        probe,
        move |outcome| {
            let _ = beats_tx.send((start.elapsed(), format!("{outcome:?}")));
        },
        stopped,
    ));
    time::sleep(stop_after).await;
    stop.send(true).expect("the heartbeat still listens");
    task.await.expect("the heartbeat does not panic");
    assert_eq!(
        start.elapsed(),
        stop_after,
        "the heartbeat ends as soon as it is stopped"
    );

    let mut beats = Vec::new();
    while let Ok(beat) = beats_rx.try_recv() {
        beats.push(beat);
    }
    Run {
        beats,
        datagrams: recording.datagrams(),
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn beats(list: &[(u64, &str)]) -> Vec<(Duration, String)> {
    list.iter().map(|&(s, o)| (secs(s), o.to_owned())).collect()
}

#[tokio::test(start_paused = true)]
async fn passing_probe_pets_at_once_then_every_interval() {
    let run = run(|| async { true }, secs(35)).await;
    assert_eq!(
        run.beats,
        beats(&[
            (0, "Petted"),
            (10, "Petted"),
            (20, "Petted"),
            (30, "Petted")
        ])
    );
    assert_eq!(run.datagrams, ["WATCHDOG=1\n"; 4]);
}

#[tokio::test(start_paused = true)]
async fn failing_probe_never_pets() {
    let run = run(|| async { false }, secs(35)).await;
    assert_eq!(
        run.beats,
        beats(&[
            (0, "ProbeFailed"),
            (10, "ProbeFailed"),
            (20, "ProbeFailed"),
            (30, "ProbeFailed")
        ])
    );
    assert!(run.datagrams.is_empty(), "{:?}", run.datagrams);
}

#[tokio::test(start_paused = true)]
async fn hanging_probe_times_out_after_half_the_interval_and_never_pets() {
    let run = run(std::future::pending::<bool>, secs(32)).await;
    assert_eq!(
        run.beats,
        beats(&[
            (5, "ProbeTimedOut(5s)"),
            (15, "ProbeTimedOut(5s)"),
            (25, "ProbeTimedOut(5s)"),
        ])
    );
    assert!(run.datagrams.is_empty(), "{:?}", run.datagrams);
}

#[tokio::test(start_paused = true)]
async fn pets_resume_when_the_probe_recovers() {
    let calls = Arc::new(AtomicUsize::new(0));
    let probe = move || {
        let call = calls.fetch_add(1, Ordering::SeqCst);
        async move { call != 1 }
    };
    let run = run(probe, secs(25)).await;
    assert_eq!(
        run.beats,
        beats(&[(0, "Petted"), (10, "ProbeFailed"), (20, "Petted")])
    );
    assert_eq!(run.datagrams, ["WATCHDOG=1\n"; 2]);
}

#[tokio::test(start_paused = true)]
async fn stopping_ends_the_heartbeat_between_beats() {
    let run = run(|| async { true }, secs(15)).await;
    assert_eq!(run.beats, beats(&[(0, "Petted"), (10, "Petted")]));
    assert_eq!(run.datagrams, ["WATCHDOG=1\n"; 2]);
}

#[tokio::test(start_paused = true)]
async fn stopping_interrupts_a_hanging_probe() {
    let run = run(std::future::pending::<bool>, secs(2)).await;
    assert!(run.beats.is_empty(), "{:?}", run.beats);
    assert!(run.datagrams.is_empty(), "{:?}", run.datagrams);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_stop_sender_ends_the_heartbeat() {
    let (notifier, recording) = Notifier::recording();
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(heartbeat(
        notifier,
        HeartbeatOptions::new(INTERVAL),
        || async { true },
        |_| {},
        stopped,
    ));
    time::sleep(secs(15)).await;
    drop(stop);
    task.await.expect("the heartbeat does not panic");
    assert_eq!(recording.datagrams(), ["WATCHDOG=1\n"; 2]);
}

#[tokio::test(start_paused = true)]
async fn an_already_requested_stop_sends_nothing() {
    let (notifier, recording) = Notifier::recording();
    let (_stop, stopped) = watch::channel(true);
    heartbeat(
        notifier,
        HeartbeatOptions::new(INTERVAL),
        || async { true },
        |_| {},
        stopped,
    )
    .await;
    assert!(recording.datagrams().is_empty());
}
