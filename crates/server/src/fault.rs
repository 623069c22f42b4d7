//! Test-only fault injection. Compiled only with the `fault-injection` feature, which the crate
//! enables for its own test builds; release binaries have none of this.

use std::time::Duration;

use config_core::EnvSnapshot;

/// Milliseconds after READY at which every runtime worker is blocked for good, as a deadlock
/// would: the watchdog tests expect the pets to stop and systemd to kill the process.
pub const STALL_AFTER_MS_VAR: &str = "COGMEM_TEST_STALL_AFTER_MS";

/// Arms the faults the environment asks for.
pub fn arm(env: &EnvSnapshot) {
    let Some(after) = env
        .get(STALL_AFTER_MS_VAR)
        .and_then(|ms| ms.parse::<u64>().ok())
    else {
        return;
    };
    let runtime = tokio::runtime::Handle::current();
    // Spawned from outside the runtime, the blocking tasks land in the shared queue that every
    // worker takes from, so each worker ends up blocked in one of them.
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(after));
        tracing::warn!("fault injection: blocking every runtime worker");
        let workers = runtime.metrics().num_workers();
        for _ in 0..workers * 2 {
            runtime.spawn(async { block_forever() });
        }
    });
}

fn block_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
