//! State shared by both transports, the HTTP endpoints and the heartbeat: one per daemon.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use config_core::Environment;

use crate::health::Health;
use crate::memory::MemoryStore;

#[derive(Debug)]
pub struct AppState {
    pub environment: Environment,
    pub store: MemoryStore,
    pub health: Arc<Health>,
    /// `logging.log_payloads`; SIGHUP may change it.
    log_payloads: AtomicBool,
    /// Renders `GET /metrics` on the main listener (behind the bearer token) when metrics are on
    /// and have no listener of their own.
    pub shared_metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

impl AppState {
    pub fn new(
        environment: Environment,
        store: MemoryStore,
        health: Arc<Health>,
        log_payloads: bool,
    ) -> Self {
        Self {
            environment,
            store,
            health,
            log_payloads: AtomicBool::new(log_payloads),
            shared_metrics: None,
        }
    }

    /// Serves `GET /metrics` on the main listener with `handle` (see [`Self::shared_metrics`]).
    pub fn with_shared_metrics(
        mut self,
        handle: Option<metrics_exporter_prometheus::PrometheusHandle>,
    ) -> Self {
        self.shared_metrics = handle;
        self
    }

    /// Whether tool arguments and memory contents may be logged (at debug level).
    pub fn log_payloads(&self) -> bool {
        self.log_payloads.load(Ordering::Relaxed)
    }

    pub fn set_log_payloads(&self, allowed: bool) {
        self.log_payloads.store(allowed, Ordering::Relaxed);
    }
}
