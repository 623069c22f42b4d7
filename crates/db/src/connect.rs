//! Building the pool: TLS policy, then a bounded, reported wait for the server.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::{Connection, PgConnection, PgPool};

use config_core::redact_url as redacted_url;

use crate::redact::Scrubber;
use crate::{DatabaseConfig, DbError};

const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(2);
/// An attempt started near the deadline still gets this long, so it can finish a handshake.
const MIN_ATTEMPT_TIME: Duration = Duration::from_secs(1);
const MAX_REASON_CHARS: usize = 200;

/// One failed attempt during the connect wait, so a supervisor can extend its start timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectProgress {
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Since `connect` was called.
    pub elapsed: Duration,
    /// Until the next attempt.
    pub next_delay: Duration,
    /// Why the attempt failed, short and free of secrets.
    pub reason: String,
}

impl fmt::Display for ConnectProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "database not reachable (attempt {}, {:.1?} elapsed): {}; retrying in {:.1?}",
            self.attempt, self.elapsed, self.reason, self.next_delay
        )
    }
}

/// A pool for `config`, once the server has accepted one connection.
///
/// Retries unreachable or starting servers with exponential backoff (100 ms doubling to 2 s)
/// for up to `connect_wait_secs`, calling `on_progress` after each failed attempt; at the
/// deadline the error is [`DbError::Unavailable`]. Wrong credentials, a missing database and a
/// denied connect fail at once: waiting would not fix them. With `require_tls`, a plain-text
/// URL to a non-local host is refused before any traffic.
pub async fn connect(
    config: &DatabaseConfig,
    on_progress: impl FnMut(ConnectProgress),
) -> Result<PgPool, DbError> {
    let target = Target::new(config, &config.url)?;
    wait_for_server(config, &target, on_progress).await?;
    let options = pool_options(config, target.options);
    Ok(PgPoolOptions::new()
        .min_connections(config.pool.min_connections)
        .max_connections(config.pool.max_connections)
        .acquire_timeout(Duration::from_secs(config.acquire_timeout_secs))
        .max_lifetime(
            (config.pool.max_lifetime_secs > 0)
                .then(|| Duration::from_secs(config.pool.max_lifetime_secs)),
        )
        .connect_lazy_with(options))
}

/// A small pool for schema changes (migrations, stamping) and session advisory locks, on
/// `database.migration_url` when set — a direct connection past any pooler — else on
/// `database.url`. Waits for the server like [`connect`].
pub async fn connect_direct(
    config: &DatabaseConfig,
    on_progress: impl FnMut(ConnectProgress),
) -> Result<PgPool, DbError> {
    let url = config.migration_url.as_ref().unwrap_or(&config.url);
    let target = Target::new(config, url)?;
    wait_for_server(config, &target, on_progress).await?;
    Ok(PgPoolOptions::new()
        .min_connections(0)
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(config.acquire_timeout_secs))
        .connect_lazy_with(target.options))
}

/// What the main pool's connections use besides the URL's own options; shared by [`connect`]
/// and [`switch_credentials`], so that a reload keeps them.
fn pool_options(config: &DatabaseConfig, options: PgConnectOptions) -> PgConnectOptions {
    if config.prepared_statements {
        options
    } else {
        // Statements are unnamed (`persistent(false)` at every call site); nothing to cache.
        options.statement_cache_capacity(0)
    }
}

/// One URL's parsed options, how to name it in messages, and how to keep its password out of them.
struct Target {
    options: PgConnectOptions,
    /// The URL without its password.
    url: String,
    scrubber: Scrubber,
}

impl Target {
    /// Parses `url`, applies `database.ssl_root_cert` and checks the TLS policy before any traffic.
    fn new(config: &DatabaseConfig, url: &SecretString) -> Result<Self, DbError> {
        let raw = url.expose_secret();
        let redacted = redacted_url(raw);
        let scrubber = Scrubber::for_url(raw);
        let mut options = PgConnectOptions::from_str(raw).map_err(|err| DbError::InvalidUrl {
            url: redacted.clone(),
            reason: scrubber.scrub(&err.to_string()),
        })?;
        if let Some(root_cert) = &config.ssl_root_cert {
            options = options.ssl_root_cert(root_cert);
        }
        if config.require_tls && is_plaintext_to_remote(&options) {
            return Err(DbError::PlaintextRefused { url: redacted });
        }
        Ok(Target {
            options,
            url: redacted,
            scrubber,
        })
    }
}

/// Retries until the server accepts one connection, for up to `connect_wait_secs`.
async fn wait_for_server(
    config: &DatabaseConfig,
    target: &Target,
    mut on_progress: impl FnMut(ConnectProgress),
) -> Result<(), DbError> {
    let Target {
        options,
        url,
        scrubber,
    } = target;
    let url = url.clone();

    let started = Instant::now();
    let deadline = started + Duration::from_secs(config.connect_wait_secs);
    let mut delay = FIRST_DELAY;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let budget = deadline
            .saturating_duration_since(Instant::now())
            .max(MIN_ATTEMPT_TIME);
        let reason = match tokio::time::timeout(budget, PgConnection::connect_with(options)).await {
            Ok(Ok(conn)) => {
                // The probe only proves reachability; a failure to say goodbye changes nothing.
                let _ = conn.close().await;
                break;
            }
            Ok(Err(err)) => retryable_reason(err, &url, scrubber)?,
            Err(_) => format!("no answer within {budget:.1?}"),
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(DbError::Unavailable {
                url,
                waited: started.elapsed(),
                attempts: attempt,
                last_error: reason,
            });
        }
        let next_delay = delay.min(deadline - now);
        on_progress(ConnectProgress {
            attempt,
            elapsed: started.elapsed(),
            next_delay,
            reason,
        });
        tokio::time::sleep(next_delay).await;
        delay = (delay * 2).min(MAX_DELAY);
    }
    Ok(())
}

/// Whether these options would send traffic unencrypted to another machine.
pub(crate) fn is_plaintext_to_remote(options: &PgConnectOptions) -> bool {
    !encrypts(options.get_ssl_mode()) && !is_local(options)
}

fn encrypts(mode: PgSslMode) -> bool {
    matches!(
        mode,
        PgSslMode::Require | PgSslMode::VerifyCa | PgSslMode::VerifyFull
    )
}

/// A unix socket, `localhost`, 127.0.0.0/8 or ::1: traffic that never leaves the machine.
pub(crate) fn is_local(options: &PgConnectOptions) -> bool {
    if options.get_socket().is_some() {
        return true;
    }
    let host = options.get_host();
    if host.starts_with('/') || host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// The reason to report when waiting may help; otherwise the error to return at once.
fn retryable_reason(err: sqlx::Error, url: &str, scrubber: &Scrubber) -> Result<String, DbError> {
    let reason = shorten(&scrubber.scrub(&err.to_string()));
    let url = url.to_owned();
    match &err {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => Ok(reason),
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("28P01" | "28000") => Err(DbError::AuthenticationFailed { url, reason }),
            Some("3D000") => Err(DbError::DatabaseMissing { url, reason }),
            Some("42501") => Err(DbError::AccessDenied { url, reason }),
            // Starting up, shutting down, out of connections, connection exceptions.
            Some(code)
                if code.starts_with("57P") || code.starts_with("53") || code.starts_with("08") =>
            {
                Ok(reason)
            }
            _ => Err(DbError::Connect { url, reason }),
        },
        _ => Err(DbError::Connect { url, reason }),
    }
}

fn shorten(text: &str) -> String {
    match text.char_indices().nth(MAX_REASON_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Puts `new_url` (normally `database.url` with a rotated password) into effect for `pool`, which
/// [`connect`] built from `running`, without dropping it: the URL is first tried with one
/// connection, so a wrong password changes nothing; then new pool connections use it while the
/// open ones go on until they are recycled (`database.pool.max_lifetime_secs`). Everything else
/// stays as `running` set it (`database.ssl_root_cert`, the statement cache, the TLS policy).
/// Requests waiting in [`acquire`](crate::acquire) for a refused password go on with the new one.
pub async fn switch_credentials(
    pool: &PgPool,
    running: &DatabaseConfig,
    new_url: &SecretString,
) -> Result<(), DbError> {
    let Target {
        options,
        url,
        scrubber,
    } = Target::new(running, new_url)?;
    match PgConnection::connect_with(&options).await {
        Ok(conn) => {
            let _ = conn.close().await;
        }
        Err(err) => {
            retryable_reason(err, &url, &scrubber).and_then(|reason| {
                Err(DbError::Unavailable {
                    url: url.clone(),
                    waited: Duration::ZERO,
                    attempts: 1,
                    last_error: reason,
                })
            })?;
        }
    }
    pool.set_connect_options(pool_options(running, options));
    crate::acquire::credentials_switched();
    Ok(())
}
