//! The accept loop: connection bounds that `axum::serve` does not have.
//!
//! - At most [`ConnectionLimits::max_connections`] connections are open. When the table is full,
//!   the connection that has been idle longest (no request in progress: between requests, or
//!   still sending its first header) is closed to admit the new one, so idle and slowloris
//!   clients can never lock out `/health` or a real client. Only when every connection is busy
//!   with a request is the new one refused (closed at once).
//! - A client must send a request's headers within the header-read timeout, counted from the
//!   connection's opening or, on a kept-alive connection, from the first byte of the next
//!   request; a kept-alive connection with no request in progress is closed after the idle
//!   timeout. (hyper's own header timer also runs while a kept-alive connection is idle, so it
//!   is off and a sweeper enforces both.)
//! - Running out of descriptors (`EMFILE`) never spins the loop: the idlest connection is closed
//!   and accepting pauses briefly.
//!
//! The soft `RLIMIT_NOFILE` is raised to the hard limit at start-up ([`raise_fd_limit`]), and
//! [`ConnectionLimits::derive`] keeps the connection limit below it with room left for the
//! database pool, the journal, health checks and the accept headroom that eviction needs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::config::HttpConfig;

/// Descriptors kept free besides the database pool: listener, journal/log pipes, notify socket,
/// DNS/TLS files, the watchdog probe, and headroom to accept a connection while at the limit.
pub const FD_RESERVE: u64 = 64;
/// Longest wait for a connection without a request in progress to close after it was told to.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Pause after `accept` failed for lack of descriptors (or another resource).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// What the file-descriptor limit was and became at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    pub soft_before: u64,
    pub soft: u64,
    pub hard: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (systemd hands services 1024 soft by
/// default), logs the outcome and returns it.
pub fn raise_fd_limit() -> FdLimit {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let current = getrlimit(Resource::Nofile);
    let soft_before = current.current.unwrap_or(u64::MAX);
    let hard = current.maximum.unwrap_or(u64::MAX);
    let mut soft = soft_before;
    if soft_before < hard {
        let raised = Rlimit {
            current: current.maximum,
            maximum: current.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => soft = hard,
            Err(err) => tracing::warn!(
                soft_before,
                hard,
                "cannot raise the file-descriptor limit (RLIMIT_NOFILE): {err}; keeping {soft_before}"
            ),
        }
    }
    tracing::info!(
        soft_before,
        soft,
        hard,
        "file-descriptor limit (RLIMIT_NOFILE): {soft} (was {soft_before}, hard limit {hard})"
    );
    FdLimit {
        soft_before,
        soft,
        hard,
    }
}

/// The listener's bounds, from `server.http` and the descriptor limit.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
}

impl ConnectionLimits {
    /// `server.http.max_connections`, lowered when the descriptor limit minus the database pool
    /// (`pool_connections`) and [`FD_RESERVE`] leaves fewer (logged as a warning).
    pub fn derive(http: &HttpConfig, fd: FdLimit, pool_connections: u32) -> Self {
        let available = fd
            .soft
            .saturating_sub(u64::from(pool_connections))
            .saturating_sub(FD_RESERVE)
            .max(1);
        let available = usize::try_from(available).unwrap_or(usize::MAX);
        let max_connections = http.max_connections.min(available);
        if max_connections < http.max_connections {
            tracing::warn!(
                configured = http.max_connections,
                max_connections,
                fd_limit = fd.soft,
                "server.http.max_connections lowered to {max_connections}: the file-descriptor limit ({}) must leave {} for the database pool and {FD_RESERVE} in reserve; raise LimitNOFILE= to allow more",
                fd.soft,
                pool_connections
            );
        } else {
            tracing::info!(max_connections, "connection limit");
        }
        Self {
            max_connections,
            header_read_timeout: Duration::from_secs(http.header_read_timeout_secs),
            idle_timeout: Duration::from_secs(http.idle_timeout_secs),
        }
    }
}

/// Serves `router` on `listener` until `stop`, then lets open connections finish their current
/// request (hyper's graceful shutdown) and returns when all are closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let table = Arc::new(Table::default());
    let connections = TaskTracker::new();
    let sweeper = tokio::spawn(sweep(table.clone(), limits, stop.clone()));
    let mut last_resource_warning: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) if is_transient(&err) => {
                // Out of descriptors or memory: free the idlest connection and pause, never spin.
                if last_resource_warning.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(
                        open = table.len(),
                        "cannot accept a connection: {err}; closing the idlest one"
                    );
                    last_resource_warning = Some(Instant::now());
                }
                table.evict_idlest();
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
            Err(err) => return Err(err),
        };
        if table.len() >= limits.max_connections && !table.evict_idlest() {
            // Every connection is in the middle of a request: refuse this one.
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let entry = table.insert();
        connections.spawn(serve_connection(
            stream,
            peer,
            router.clone(),
            entry,
            table.clone(),
            stop.clone(),
        ));
    }
    drop(listener);
    connections.close();
    connections.wait().await;
    sweeper.abort();
    Ok(())
}

/// Errors after which accepting can continue: the peer went away, or a resource ran out.
fn is_transient(err: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        err.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | OutOfMemory
    ) || matches!(
        err.raw_os_error(),
        Some(code) if code == rustix::io::Errno::MFILE.raw_os_error()
            || code == rustix::io::Errno::NFILE.raw_os_error()
            || code == rustix::io::Errno::NOBUFS.raw_os_error()
            || code == rustix::io::Errno::NOMEM.raw_os_error()
    )
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    entry: Arc<Entry>,
    table: Arc<Table>,
    stop: CancellationToken,
) {
    let state = entry.clone();
    let epoch = table.epoch;
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let busy = Busy::start(state.clone(), epoch);
        let router = router.clone();
        async move {
            let response = router.oneshot(request).await;
            drop(busy);
            response
        }
    });
    let stream = Tracked {
        inner: stream,
        entry: entry.clone(),
        epoch,
    };
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let ended = tokio::select! {
        _ = connection.as_mut() => true,
        _ = stop.cancelled() => false,
        _ = entry.evict.cancelled() => false,
    };
    let busy = entry.busy.load(Ordering::Acquire) > 0;
    let receiving_header = entry.reading_since_ms.load(Ordering::Relaxed) != NOT_READING;
    let owes_an_answer = busy || !receiving_header;
    if !ended && owes_an_answer {
        // Stop accepting requests on this connection: hyper closes an idle one at once and one
        // writing a response after it. A connection still receiving a header owes nobody an
        // answer and is simply dropped (hyper would wait for the header).
        connection.as_mut().graceful_shutdown();
        if entry.busy.load(Ordering::Acquire) > 0 {
            // A request is being handled: it finishes (the daemon's drain bounds this).
            let _ = connection.as_mut().await;
        } else {
            let _ = tokio::time::timeout(CLOSE_GRACE, connection.as_mut()).await;
        }
    }
    table.remove(entry.id);
}

/// The open connections.
#[derive(Debug)]
struct Table {
    epoch: Instant,
    next_id: AtomicU64,
    entries: Mutex<HashMap<u64, Arc<Entry>>>,
}

impl Default for Table {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            entries: Mutex::new(HashMap::new()),
        }
    }
}

#[derive(Debug)]
struct Entry {
    id: u64,
    /// Requests of this connection being handled right now.
    busy: AtomicUsize,
    /// Milliseconds since the table's epoch when the connection last finished a request (or opened).
    idle_since_ms: AtomicU64,
    /// Milliseconds since the epoch at which the headers of the next request started to arrive
    /// (the opening, for a new connection); [`NOT_READING`] while idle between requests or busy.
    reading_since_ms: AtomicU64,
    evict: CancellationToken,
}

impl Table {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Entry>>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    fn insert(&self) -> Arc<Entry> {
        let entry = Arc::new(Entry {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            busy: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(self.now_ms()),
            reading_since_ms: AtomicU64::new(self.now_ms()),
            evict: CancellationToken::new(),
        });
        self.lock().insert(entry.id, entry.clone());
        entry
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Closes the connection idle longest; false when every connection is busy.
    fn evict_idlest(&self) -> bool {
        let mut entries = self.lock();
        let idlest = entries
            .values()
            .filter(|entry| entry.busy.load(Ordering::Acquire) == 0 && !entry.evict.is_cancelled())
            .min_by_key(|entry| entry.idle_since_ms.load(Ordering::Relaxed))
            .cloned();
        match idlest {
            Some(entry) => {
                entry.evict.cancel();
                // Out of the count at once, so the new connection takes its place.
                entries.remove(&entry.id);
                true
            }
            None => false,
        }
    }

    /// Closes every connection that took longer than the header timeout to send its headers or
    /// stayed idle between requests for longer than the idle timeout.
    fn evict_expired(&self, limits: ConnectionLimits) {
        let now = self.now_ms();
        let millis = |duration: Duration| u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        let (header, idle) = (
            millis(limits.header_read_timeout),
            millis(limits.idle_timeout),
        );
        let mut entries = self.lock();
        entries.retain(|_, entry| {
            if entry.busy.load(Ordering::Acquire) > 0 {
                return true;
            }
            let reading = entry.reading_since_ms.load(Ordering::Relaxed);
            let expired = if reading == NOT_READING {
                now.saturating_sub(entry.idle_since_ms.load(Ordering::Relaxed)) > idle
            } else {
                now.saturating_sub(reading) > header
            };
            if expired {
                entry.evict.cancel();
            }
            !expired
        });
    }
}

/// `reading_since_ms` while no request is arriving.
const NOT_READING: u64 = u64::MAX;

/// Checks the timeouts a few times per timeout (at least once a second).
async fn sweep(table: Arc<Table>, limits: ConnectionLimits, stop: CancellationToken) {
    let shortest = limits.header_read_timeout.min(limits.idle_timeout);
    let period = (shortest / 8).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => table.evict_expired(limits),
        }
    }
}

/// The client socket, noting when the bytes of a new request start to arrive.
struct Tracked {
    inner: tokio::net::TcpStream,
    entry: Arc<Entry>,
    epoch: Instant,
}

impl tokio::io::AsyncRead for Tracked {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before
            && self.entry.busy.load(Ordering::Acquire) == 0
            && self.entry.reading_since_ms.load(Ordering::Relaxed) == NOT_READING
        {
            let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
            self.entry.reading_since_ms.store(now, Ordering::Relaxed);
        }
        polled
    }
}

impl tokio::io::AsyncWrite for Tracked {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Marks a connection busy while one of its requests is handled.
struct Busy {
    entry: Arc<Entry>,
    epoch: Instant,
}

impl Busy {
    fn start(entry: Arc<Entry>, epoch: Instant) -> Self {
        entry.busy.fetch_add(1, Ordering::AcqRel);
        entry.reading_since_ms.store(NOT_READING, Ordering::Relaxed);
        Self { entry, epoch }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.entry.idle_since_ms.store(now, Ordering::Relaxed);
        self.entry.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_idlest_free_connection_is_evicted_and_busy_ones_never() {
        let table = Table::default();
        let first = table.insert();
        let second = table.insert();
        first.idle_since_ms.store(5, Ordering::Relaxed);
        second.idle_since_ms.store(1, Ordering::Relaxed);
        let _busy = Busy::start(second.clone(), table.epoch);
        assert!(table.evict_idlest());
        assert!(first.evict.is_cancelled(), "the only idle connection goes");
        assert!(!second.evict.is_cancelled());
        assert!(!table.evict_idlest(), "the busy one stays");
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn the_connection_limit_leaves_descriptors_for_the_pool() {
        let http = HttpConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            max_body_bytes: 1024,
            request_timeout_secs: 30,
            max_connections: 4096,
            header_read_timeout_secs: 10,
            idle_timeout_secs: 60,
            body_read_timeout_secs: 10,
            max_in_flight: 128,
            max_buffered_body_bytes: 1 << 20,
            trusted_proxies: Vec::new(),
        };
        let fd = FdLimit {
            soft_before: 1024,
            soft: 1024,
            hard: 1024,
        };
        let limits = ConnectionLimits::derive(&http, fd, 10);
        assert_eq!(limits.max_connections, 1024 - 10 - FD_RESERVE as usize);
        let plenty = FdLimit {
            soft: 1 << 20,
            ..fd
        };
        let limits = ConnectionLimits::derive(&http, plenty, 10);
        assert_eq!(limits.max_connections, http.max_connections);
    }
}
