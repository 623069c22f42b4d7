//! SIGHUP (`systemctl reload`): re-read every layer — `.env` files, secret files, credentials —
//! and put into effect what can change while serving: the log level, payload logging, the rate
//! limit, the accepted bearer tokens (a token rotation), the API keys file and a JWKS file (read
//! again whatever changed), and the database password (new pool
//! connections use it; open ones go on) and the trace sample ratio. Changed keys are logged by name only. An invalid new
//! configuration, or a new password the database refuses, keeps the running one and says why.

use std::collections::BTreeMap;

use config_core::{EnvSnapshot, Environment, Resolved};
use secrecy::ExposeSecret;

use crate::app::AppState;
use crate::config::{self, AppConfig, ConfigSource};
use crate::http::Guard;
use crate::logging::LogHandle;
use crate::telemetry::Telemetry;

/// Keys a reload applies without a restart; any other changed key is reported as needing one.
const LIVE_KEYS: [&str; 8] = [
    "logging.level",
    "logging.log_payloads",
    "server.rate_limit.requests_per_minute",
    "server.rate_limit.failed_auth_per_minute",
    "server.auth.token",
    "server.auth.previous_tokens",
    "database.url",
    "telemetry.traces.sample_ratio",
];

/// What a reload changes in the running daemon.
#[derive(Debug)]
pub(crate) struct Live<'a> {
    pub app: &'a AppState,
    pub guard: &'a Guard,
    pub pool: &'a sqlx::PgPool,
    pub log: &'a LogHandle,
    pub telemetry: &'a Telemetry,
}

/// The configuration in effect, replaced key group by key group as reloads apply them.
#[derive(Debug)]
pub(crate) struct Current {
    pub config: AppConfig,
    pub values: BTreeMap<String, Resolved>,
    pub environment: Environment,
}

/// Loads the configuration again from `source` and `env` and applies it to `live`.
pub(crate) async fn reload(
    current: &mut Current,
    source: &ConfigSource,
    env: &EnvSnapshot,
    live: Live<'_>,
) {
    let loaded = match config::load(source, env) {
        Err(failure) => {
            tracing::error!(
                "reload failed; the running configuration stays in effect:\n{}",
                failure.report
            );
            return;
        }
        Ok(loaded) => loaded,
    };
    if loaded.resolution.environment != current.environment {
        tracing::error!(
            "reload refused: it would switch from {} to {}; restart instead",
            current.environment,
            loaded.resolution.environment
        );
        return;
    }
    let new = loaded.config;
    let changed = changed_keys(&current.values, &loaded.resolution.values);
    let mut applied: Vec<&str> = Vec::new();
    let mut restart: Vec<&str> = Vec::new();
    let mut refused: Vec<&str> = Vec::new();

    if changed.iter().any(|k| k == "database.url") {
        let old_url = config_core::redact_url(current.config.database.url.expose_secret());
        let new_url = config_core::redact_url(new.database.url.expose_secret());
        if old_url != new_url {
            // Another host, database or role is another database: its stamp was never checked.
            restart.push("database.url");
        } else {
            match db::switch_credentials(live.pool, &current.config.database, &new.database.url)
                .await
            {
                Ok(()) => {
                    applied.push("database.url");
                    current.config.database.url = new.database.url.clone();
                }
                Err(err) => {
                    tracing::error!(
                        "the new database.url was not applied, the old credentials stay in use: {err}"
                    );
                    refused.push("database.url");
                }
            }
        }
    }
    if changed
        .iter()
        .any(|k| k == "server.auth.token" || k == "server.auth.previous_tokens")
    {
        match (live.guard.tokens(), crate::auth::token_set(&new.server)) {
            (Some(tokens), Some(set)) => {
                let ids: Vec<String> = set.ids().iter().map(ToString::to_string).collect();
                tokens.replace(set);
                tracing::info!(accepted = %ids.join(", "), "bearer tokens replaced");
                current.config.server.auth = new.server.auth;
                for key in ["server.auth.token", "server.auth.previous_tokens"] {
                    if changed.iter().any(|k| k == key) {
                        applied.push(key);
                    }
                }
            }
            _ => restart.push("server.auth.token"),
        }
    }
    reload_credential_files(live.guard).await;
    if let Err(err) = live.log.apply(&new.logging) {
        tracing::error!("{err}");
    }
    live.app.set_log_payloads(new.logging.log_payloads);
    live.guard
        .rate_limiter
        .set_per_minute(new.server.rate_limit.requests_per_minute);
    live.guard
        .failed_auth
        .set_per_minute(new.server.rate_limit.failed_auth_per_minute);
    live.telemetry.reload(&new.telemetry);
    for key in &changed {
        let key = key.as_str();
        if LIVE_KEYS.contains(&key) {
            if key.starts_with("logging.")
                || key.starts_with("server.rate_limit.")
                || key == "telemetry.traces.sample_ratio"
            {
                applied.push(key);
            }
        } else {
            restart.push(key);
        }
    }
    applied.sort_unstable();
    applied.dedup();
    tracing::info!(
        applied = %if applied.is_empty() { "nothing changed".to_owned() } else { applied.join(", ") },
        "configuration reloaded"
    );
    if !restart.is_empty() {
        tracing::warn!(
            keys = %restart.join(", "),
            "changed keys take effect only after a restart"
        );
    }
    current.config.logging = new.logging;
    current.config.server.rate_limit = new.server.rate_limit;
    current.config.telemetry.traces.sample_ratio = new.telemetry.traces.sample_ratio;
    // Keys not applied keep their old values, so the next reload reports them again.
    let mut values = loaded.resolution.values;
    for key in restart.iter().chain(&refused) {
        match current.values.get(*key) {
            Some(old) => {
                values.insert((*key).to_owned(), old.clone());
            }
            None => {
                values.remove(*key);
            }
        }
    }
    current.values = values;
}

/// Re-reads the API keys file and a JWKS file (their contents change without the configured
/// path changing). A file that does not parse keeps the keys in effect; the error names file and
/// line, never a key.
async fn reload_credential_files(guard: &Guard) {
    let authenticator = guard.authenticator();
    if let Some(keys) = &authenticator.keys
        && let Err(err) = keys.reload()
    {
        tracing::error!(
            "the API keys file was not reloaded, the previous keys stay in effect: {err}"
        );
    }
    if let Some(jwt) = &authenticator.jwt {
        // Errors are logged by the cache, which keeps the keys it had.
        let _ = jwt.jwks().refresh().await;
    }
}

/// Keys whose effective value differs between two resolutions (values are compared, not shown).
fn changed_keys(old: &BTreeMap<String, Resolved>, new: &BTreeMap<String, Resolved>) -> Vec<String> {
    let mut keys: Vec<String> = old
        .keys()
        .chain(new.keys())
        .filter(|key| match (old.get(*key), new.get(*key)) {
            (Some(a), Some(b)) => !a.value.same_as(&b.value),
            _ => true,
        })
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}
