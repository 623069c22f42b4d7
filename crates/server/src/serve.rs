//! `cognitive-memory-mcp serve`: the daemon's life from configuration to exit code.
//!
//! Start-up follows docs/architecture.md step by step: configuration (78) → logging → database
//! with a bounded wait and `EXTEND_TIMEOUT_USEC` (75) → environment stamp (78) → migrations
//! (auto, or 78 when pending) → listener → `READY=1`. Then a probe-gated watchdog heartbeat, a
//! database monitor, SIGHUP reloads, and on SIGTERM/SIGINT `STOPPING=1` and a bounded drain.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use config_core::{EnvSnapshot, Environment, EnvironmentSource, Loaded, Resolution};
use secrecy::ExposeSecret;
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use watchdog::{BeatOutcome, HeartbeatOptions, Notifier};

use crate::app::AppState;
use crate::cli::{Cli, ServeArgs};
use crate::commands::{db_exit_code, load_or_report};
use crate::config::{AppConfig, ConfigSource, Transport};
use crate::exit;
use crate::health::{self, Health};
use crate::http::{self, Guard};
use crate::logging::{self, LogHandle};
use crate::mcp::MemoryServer;
use crate::memory::{MemoryLimits, MemoryStore, SearchSettings, WriteBatchSettings};
use crate::reload;
use crate::telemetry::{self, Telemetry};

/// Added to each connect retry's delay in `EXTEND_TIMEOUT_USEC`: room for the next attempt.
const EXTEND_SLACK: Duration = Duration::from_secs(10);
/// Longest wait for the pool's connections to close after the drain.
const POOL_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Runs the daemon until it is told to stop; returns the exit code.
pub fn serve(cli: &Cli, args: &ServeArgs, env: &EnvSnapshot) -> u8 {
    let env = with_flags(env, args);
    let Loaded {
        config: app_config,
        resolution,
    } = match load_or_report(cli, &env) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let log = logging::init(&app_config.logging, resolution.environment);
    announce(&resolution, &app_config, &log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!("cannot start the async runtime: {err}");
            return exit::FAILURE;
        }
    };
    let daemon = Daemon {
        current: reload::Current {
            config: app_config,
            values: resolution.values,
            environment: resolution.environment,
        },
        source: cli.config_source(),
        args: args.clone(),
        log,
        notifier: Notifier::systemd(),
    };
    let code = runtime.block_on(daemon.run(&env));
    // Tasks still blocked (a stalled test runtime) must not keep the process alive.
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

/// `--transport` and `--bind` act as the highest-priority variables, so validation sees them (a
/// stdio server needs no token; a non-loopback bind needs authentication) and a reload keeps them.
fn with_flags(env: &EnvSnapshot, args: &ServeArgs) -> EnvSnapshot {
    let transport = args.transport.map(|transport| match transport {
        Transport::Stdio => "stdio",
        Transport::Http => "http",
    });
    let flags = [
        ("COGMEM__SERVER__TRANSPORT", transport.map(str::to_owned)),
        (
            "COGMEM__SERVER__HTTP__BIND",
            args.bind.map(|bind| bind.to_string()),
        ),
    ];
    env.iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .chain(
            flags
                .into_iter()
                .filter_map(|(name, value)| Some((name.to_owned(), value?))),
        )
        .collect()
}

/// The first log lines: which environment, files, database and transport this process uses.
fn announce(resolution: &Resolution, config: &AppConfig, log: &LogHandle) {
    let environment = resolution.environment;
    tracing::info!(
        environment = environment.as_str(),
        chosen_by = %resolution.environment_source,
        version = env!("CARGO_PKG_VERSION"),
        log_output = %log.output(),
        "starting cognitive-memory-mcp in {environment}"
    );
    if resolution.environment_source == EnvironmentSource::Default {
        tracing::warn!(
            "no --env flag or ENVIRONMENT variable: assuming development; set ENVIRONMENT=production on servers"
        );
    }
    let files: Vec<String> = resolution
        .files
        .iter()
        .filter(|file| file.present)
        .map(|file| file.path.display().to_string())
        .collect();
    tracing::info!(files = %files.join(", "), "configuration read");
    tracing::info!(
        database = %config_core::redact_url(config.database.url.expose_secret()),
        transport = ?config.server.transport,
        "using this database and transport"
    );
}

struct Daemon {
    /// The configuration in effect (SIGHUP replaces parts of it).
    current: reload::Current,
    source: ConfigSource,
    /// The command-line flags, applied again on reload.
    args: ServeArgs,
    log: LogHandle,
    notifier: Notifier,
}

/// What serves requests: an HTTP listener or the stdio session.
enum Serving {
    Http(JoinHandle<std::io::Result<()>>),
    Stdio(JoinHandle<Result<(), String>>),
}

impl Serving {
    /// Resolves when the transport ends on its own: stdin closed (exit 0) or the listener failed.
    async fn ended(&mut self) -> u8 {
        let outcome = match self {
            Serving::Http(task) => match task.await {
                Ok(Ok(())) => Err("the HTTP listener stopped unexpectedly".to_owned()),
                Ok(Err(err)) => Err(format!("the HTTP listener failed: {err}")),
                Err(err) => Err(format!("the HTTP listener crashed: {err}")),
            },
            Serving::Stdio(task) => match task.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(err)) => Err(err),
                Err(err) => Err(format!("the stdio session crashed: {err}")),
            },
        };
        match outcome {
            Ok(()) => {
                tracing::info!("stdin closed: stopping");
                exit::OK
            }
            Err(err) => {
                tracing::error!("{err}");
                exit::FAILURE
            }
        }
    }

    /// Waits up to `grace` for in-flight requests after the stop signal.
    async fn drain(self, grace: Duration) -> bool {
        match self {
            Serving::Http(task) => tokio::time::timeout(grace, task).await.is_ok(),
            Serving::Stdio(task) => tokio::time::timeout(grace, task).await.is_ok(),
        }
    }
}

/// The signals the daemon acts on, installed before anything else happens.
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Resolves with the signal's name on SIGTERM or SIGINT.
    async fn stop_requested(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }

    /// The next stop (`Some(name)`) or reload (`None`) request.
    async fn next(&mut self) -> Option<&'static str> {
        tokio::select! {
            _ = self.terminate.recv() => Some("SIGTERM"),
            _ = self.interrupt.recv() => Some("SIGINT"),
            _ = self.hangup.recv() => None,
        }
    }
}

/// Why the daemon stops.
struct Stop {
    code: u8,
    /// The transport already ended, so there is nothing to drain.
    transport_ended: bool,
}

impl Daemon {
    async fn run(mut self, env: &EnvSnapshot) -> u8 {
        let environment = self.current.environment;
        let notifier = self.notifier.clone();
        // Installed first: a stop requested at any point after exec must be a clean stop.
        let mut signals = match Signals::install() {
            Ok(signals) => signals,
            Err(err) => {
                tracing::error!("cannot install signal handlers: {err}");
                return exit::FAILURE;
            }
        };
        let fd_limit = http::listener::raise_fd_limit();
        let _ = notifier.status("connecting to the database");
        let connecting = db::connect(&self.current.config.database, |progress| {
            tracing::warn!("{progress}");
            let _ = notifier.extend_timeout(progress.next_delay + EXTEND_SLACK);
            let _ = notifier.status(&format!(
                "waiting for the database (attempt {})",
                progress.attempt
            ));
        });
        let connected = tokio::select! {
            connected = connecting => connected,
            signal = signals.stop_requested() => {
                tracing::info!("{signal} received while waiting for the database: stopping");
                let _ = notifier.stopping();
                return exit::OK;
            }
        };
        let pool = match connected {
            Ok(pool) => pool,
            Err(err) => return refuse(&err, environment),
        };
        if let Err(err) = prepare_schema(&pool, &self.current.config, environment).await {
            pool.close().await;
            return err;
        }
        let database = current_database(&pool).await;

        let telemetry = match telemetry::start(
            &self.current.config.telemetry,
            environment,
            tokio::runtime::Handle::current(),
        ) {
            Ok(telemetry) => telemetry,
            Err(err) => {
                tracing::error!("cannot start telemetry: {err}");
                pool.close().await;
                return exit::FAILURE;
            }
        };
        let health = Arc::new(Health::new(environment));
        let store = MemoryStore::new(
            pool.clone(),
            MemoryLimits::from_config(&self.current.config.memory),
        )
        .with_search_settings(SearchSettings::from_config(
            &self.current.config.memory.search,
        ))
        .with_prepared_statements(self.current.config.database.prepared_statements)
        .with_write_batch(WriteBatchSettings::from_config(
            &self.current.config.memory.write_batch,
        ));
        let app = Arc::new(
            AppState::new(
                environment,
                store,
                health.clone(),
                self.current.config.logging.log_payloads,
            )
            .with_shared_metrics(telemetry.shared_metrics()),
        );
        let guard = match Guard::new(&self.current.config.server) {
            Ok(guard) => Arc::new(guard),
            Err(err) => {
                tracing::error!("cannot start: {err}");
                pool.close().await;
                return exit::CONFIG;
            }
        };
        if self.current.config.server.transport == Transport::Http {
            let warming = guard.clone();
            tokio::spawn(async move { warming.authenticator().warm_up().await });
        }
        let stop = CancellationToken::new();
        // rmcp's own token: cancelled only after the drain, so in-flight calls can finish.
        let mcp_stop = CancellationToken::new();
        let router = http::router(
            app.clone(),
            guard.clone(),
            &self.current.config.server,
            mcp_stop.clone(),
        );

        let (mut serving, serving_at) = match self.current.config.server.transport {
            Transport::Http => {
                let bind = self.current.config.server.http.bind;
                let listener = match tokio::net::TcpListener::bind(bind).await {
                    Ok(listener) => listener,
                    Err(err) => {
                        tracing::error!("cannot listen on {bind}: {err}");
                        pool.close().await;
                        return exit::FAILURE;
                    }
                };
                let address = listener.local_addr().unwrap_or(bind);
                let limits = http::listener::ConnectionLimits::derive(
                    &self.current.config.server.http,
                    fd_limit,
                    self.current.config.database.pool.max_connections,
                );
                let task = tokio::spawn(http::listener::serve(
                    listener,
                    router.clone(),
                    limits,
                    stop.clone(),
                ));
                (Serving::Http(task), format!("http://{address}/mcp"))
            }
            Transport::Stdio => {
                let server = MemoryServer::stdio(
                    app.clone(),
                    crate::auth::principal::stdio(&self.current.config),
                );
                let stop = stop.clone();
                let task = tokio::spawn(async move { serve_stdio(server, stop).await });
                (Serving::Stdio(task), "stdio".to_owned())
            }
        };

        if let Err(err) = telemetry.run_beside(app.clone(), stop.clone()).await {
            tracing::error!("{err}");
            stop.cancel();
            pool.close().await;
            return exit::FAILURE;
        }

        let ready_status = format!("{environment}: serving {serving_at}; database {database}");
        let _ = notifier.ready(&ready_status);
        tracing::info!(address = %serving_at, "ready: {ready_status}");

        tokio::spawn(health::monitor(
            health.clone(),
            pool.clone(),
            notifier.clone(),
            ready_status.clone(),
            stop.clone(),
        ));
        crate::lifecycle::retention::spawn(
            pool.clone(),
            crate::lifecycle::retention::Policy::from_config(&self.current.config.memory.retention),
            stop.clone(),
        );
        let (heartbeat_stop, heartbeat) = start_heartbeat(&notifier, &health, &router);
        #[cfg(feature = "fault-injection")]
        crate::fault::arm(env);
        #[cfg(not(feature = "fault-injection"))]
        let _ = env;

        let Stop {
            code,
            transport_ended,
        } = self
            .wait_for_stop(
                &mut signals,
                &mut serving,
                &LiveParts {
                    app: &app,
                    guard: &guard,
                    pool: &pool,
                    telemetry: &telemetry,
                },
                &ready_status,
            )
            .await;

        // Stop: tell systemd first, then stop accepting and drain.
        let _ = notifier.stopping();
        let _ = notifier.status("stopping: draining in-flight requests");
        let _ = heartbeat_stop.send(true);
        if let Some(heartbeat) = heartbeat {
            let _ = heartbeat.await;
        }
        stop.cancel();
        let grace = Duration::from_secs(self.current.config.server.shutdown_grace_secs);
        if transport_ended || serving.drain(grace).await {
            tracing::info!("in-flight requests finished");
        } else {
            tracing::warn!(
                "requests still running after server.shutdown_grace_secs ({}s); cutting them off",
                grace.as_secs()
            );
        }
        mcp_stop.cancel();
        // The turns still queued for a group commit are written before the pool closes.
        if tokio::time::timeout(POOL_CLOSE_TIMEOUT, app.store.close_writes())
            .await
            .is_err()
        {
            tracing::warn!("queued dialogue turns were not written within {POOL_CLOSE_TIMEOUT:?}");
        }
        if tokio::time::timeout(POOL_CLOSE_TIMEOUT, pool.close())
            .await
            .is_err()
        {
            tracing::warn!("database connections did not close within {POOL_CLOSE_TIMEOUT:?}");
        }
        // Blocks until the queued spans are exported: off the async workers.
        let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
        tracing::info!(exit_code = code, "stopped");
        code
    }

    /// Waits for SIGTERM/SIGINT or the end of the transport, handling SIGHUP meanwhile.
    async fn wait_for_stop(
        &mut self,
        signals: &mut Signals,
        serving: &mut Serving,
        live: &LiveParts<'_>,
        ready_status: &str,
    ) -> Stop {
        loop {
            tokio::select! {
                request = signals.next() => match request {
                    Some(signal) => {
                        tracing::info!("{signal} received: stopping");
                        return Stop { code: exit::OK, transport_ended: false };
                    }
                    None => self.reload(live, ready_status).await,
                },
                code = serving.ended() => {
                    return Stop { code, transport_ended: true };
                }
            }
        }
    }

    /// SIGHUP: re-read the configuration, apply what can change live, report the rest.
    async fn reload(&mut self, serving: &LiveParts<'_>, ready_status: &str) {
        let _ = self.notifier.reloading();
        let env = with_flags(&EnvSnapshot::from_process(), &self.args);
        let live = reload::Live {
            app: serving.app,
            guard: serving.guard,
            pool: serving.pool,
            log: &self.log,
            telemetry: serving.telemetry,
        };
        reload::reload(&mut self.current, &self.source, &env, live).await;
        let _ = self.notifier.ready(ready_status);
    }
}

/// What a SIGHUP reaches in the running daemon (besides the logging, which the daemon holds).
struct LiveParts<'a> {
    app: &'a AppState,
    guard: &'a Guard,
    pool: &'a sqlx::PgPool,
    telemetry: &'a Telemetry,
}

/// Least privilege, stamp check and migrations; on failure the exit code (already logged).
async fn prepare_schema(
    pool: &sqlx::PgPool,
    config: &AppConfig,
    environment: Environment,
) -> Result<(), u8> {
    least_privilege(pool, environment).await?;
    if let Err(err) = db::check_stamp(pool, environment).await {
        return Err(refuse(&err, environment));
    }
    if config.database.auto_migrate {
        match migrate_at_start(pool, &config.database).await {
            Ok(report) => tracing::info!("migrations: {report}"),
            Err(err) => return Err(refuse(&err, environment)),
        }
    } else {
        match db::pending(pool).await {
            Ok(pending) if pending.is_empty() => {}
            Ok(pending) => {
                let names: Vec<String> = pending.iter().map(ToString::to_string).collect();
                tracing::error!(
                    "the database needs {} migration(s) ({}); database.auto_migrate is off in {environment}, so apply them with `cognitive-memory-mcp --env {environment} migrate`",
                    pending.len(),
                    names.join(", ")
                );
                return Err(exit::CONFIG);
            }
            Err(err) => return Err(refuse(&err, environment)),
        }
    }
    Ok(())
}

/// Staging and production refuse to serve as a role that could read any database or row
/// (SUPERUSER, BYPASSRLS) and warn about CREATEROLE/CREATEDB; elsewhere all are warnings.
async fn least_privilege(pool: &sqlx::PgPool, environment: Environment) -> Result<(), u8> {
    let role = match db::role_attributes(pool).await {
        Ok(role) => role,
        Err(err) => return Err(refuse(&err, environment)),
    };
    let dangerous = role.dangerous();
    let fix = format!(
        "connect as the {environment} role instead ({}: `cargo xtask setup-db --env {environment}` creates it) or ALTER ROLE {} NOSUPERUSER NOBYPASSRLS",
        db::role_name(environment),
        role.name
    );
    if !dangerous.is_empty() {
        if environment.is_strict() {
            tracing::error!(
                "cannot start: the database login role {} has {}, which bypasses the separation of environments and tenants; {fix}",
                role.name,
                dangerous.join(", ")
            );
            return Err(exit::CONFIG);
        }
        tracing::warn!(
            "the database login role {} has {}; staging and production refuse that",
            role.name,
            dangerous.join(", ")
        );
    }
    let needless = role.needless();
    if !needless.is_empty() {
        tracing::warn!(
            "the database login role {} has {}, which serving does not need: ALTER ROLE {} NOCREATEROLE NOCREATEDB",
            role.name,
            needless.join(", "),
            role.name
        );
    }
    Ok(())
}

/// `database.auto_migrate`: on the direct connection when `database.migration_url` is set (the
/// schema lock is a session lock, which a pooler in transaction mode would not hold).
async fn migrate_at_start(
    pool: &sqlx::PgPool,
    config: &db::DatabaseConfig,
) -> Result<db::MigrationReport, db::DbError> {
    if config.migration_url.is_none() {
        return db::migrate(pool).await;
    }
    let direct = db::connect_direct(config, |progress| tracing::warn!("{progress}")).await?;
    let report = db::migrate(&direct).await;
    direct.close().await;
    report
}

/// Logs why the daemon cannot start and returns the exit code for it.
fn refuse(err: &db::DbError, environment: Environment) -> u8 {
    tracing::error!("cannot start: {err}");
    if matches!(err, db::DbError::Unstamped { .. }) {
        tracing::error!(
            "a new, empty database is stamped with `cognitive-memory-mcp --env {environment} migrate --stamp`"
        );
    }
    db_exit_code(err)
}

async fn current_database(pool: &sqlx::PgPool) -> String {
    sqlx::query_scalar::<_, String>("SELECT current_database()")
        .persistent(false)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|_| "(unknown)".to_owned())
}

async fn serve_stdio(server: MemoryServer, stop: CancellationToken) -> Result<(), String> {
    use rmcp::ServiceExt;
    let running = server
        .serve_with_ct(rmcp::transport::stdio(), stop)
        .await
        .map_err(|err| format!("stdio session failed to start: {err}"))?;
    running
        .waiting()
        .await
        .map(|_| ())
        .map_err(|err| format!("stdio session failed: {err}"))
}

/// Starts the watchdog heartbeat when systemd asked for one (`WATCHDOG_USEC`). The probe sends
/// `GET /health` through the daemon's own router and requires the database monitor to have
/// finished a check recently; a database outage does not fail it (the monitor still runs).
fn start_heartbeat(
    notifier: &Notifier,
    health: &Arc<Health>,
    router: &axum::Router,
) -> (tokio::sync::watch::Sender<bool>, Option<JoinHandle<()>>) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let Some(interval) = watchdog::watchdog_interval() else {
        return (stop, None);
    };
    tracing::info!(interval = ?interval, "watchdog heartbeat enabled");
    let health = health.clone();
    let router = router.clone();
    let probe = move || {
        let health = health.clone();
        let router = router.clone();
        async move {
            let request = axum::http::Request::get("/health")
                .body(Body::empty())
                .expect("a static request is valid");
            let answered = router
                .oneshot(request)
                .await
                .is_ok_and(|response| response.status().is_success());
            answered && health.monitor_alive()
        }
    };
    let on_beat = |outcome: BeatOutcome| match outcome {
        BeatOutcome::Petted => {}
        other => tracing::warn!(outcome = ?other, "watchdog not petted"),
    };
    let task = tokio::spawn(watchdog::heartbeat(
        notifier.clone(),
        HeartbeatOptions::new(interval),
        probe,
        on_beat,
        stopped,
    ));
    (stop, Some(task))
}
