//! What the checks across environments compare: each environment's secrets and database.

use config_core::{RawValue, is_placeholder};
use secrecy::{ExposeSecret, SecretString};

use super::database::is_local_host;
use super::secrets::url_password;
use config_core::Environment;

use super::{Check, URL_KEY};

/// What is compared across environments. `Debug` shows no secret (they are `SecretString`s).
#[derive(Debug)]
pub struct EnvironmentFacts {
    pub environment: Environment,
    pub(crate) secrets: Vec<SecretItem>,
    pub(crate) database: Option<DatabaseIdentity>,
    /// The database's schema, or why there is none.
    pub(crate) fingerprint: Result<db::SchemaFingerprint, String>,
}

/// One secret value, with how messages name it.
#[derive(Debug)]
pub(crate) struct SecretItem {
    /// `MCP_AUTH_TOKEN`, `DATABASE_URL password`.
    pub label: String,
    /// Where it was set (`.env.production:3`).
    pub source: String,
    pub value: SecretString,
}

/// Which database a `database.url` names.
#[derive(Debug, Clone)]
pub(crate) struct DatabaseIdentity {
    /// Host (any local form as `local`), port and database: equal keys are the same database.
    pub key: String,
    /// `127.0.0.1:5432/cognitive_memory`.
    pub shown: String,
    /// The database name alone.
    pub name: String,
    pub source: String,
}

impl Check<'_> {
    /// Every real secret value, the database password taken out of its URL.
    pub(super) fn secret_items(&self) -> Vec<SecretItem> {
        let Some(resolution) = self.resolution else {
            return Vec::new();
        };
        let mut items = Vec::new();
        for key in resolution.schema.keys.iter().filter(|k| k.secret) {
            let Some(resolved) = resolution.values.get(&key.path) else {
                continue;
            };
            let RawValue::Text(text) = &resolved.value else {
                continue;
            };
            let text = text.expose_secret().trim();
            if text.is_empty() || is_placeholder(text) {
                continue;
            }
            let (label, value) = if key.path == URL_KEY {
                match url_password(text) {
                    Some(password) => (format!("{} password", key.main_var()), password),
                    None => continue,
                }
            } else {
                (
                    key.main_var().to_owned(),
                    SecretString::from(text.to_owned()),
                )
            };
            items.push(SecretItem {
                label,
                source: resolved.source.to_string(),
                value,
            });
        }
        items
    }

    pub(super) fn database_identity(&self) -> Option<DatabaseIdentity> {
        let (_, options, source) = self.database_url().ok()?;
        let name = options
            .get_database()
            .unwrap_or(options.get_username())
            .to_owned();
        let port = options.get_port();
        let (host_key, host_shown) = match options.get_socket() {
            Some(socket) => ("local".to_owned(), socket.display().to_string()),
            None if is_local_host(options.get_host()) => {
                ("local".to_owned(), options.get_host().to_owned())
            }
            None => (
                options.get_host().to_ascii_lowercase(),
                options.get_host().to_owned(),
            ),
        };
        Some(DatabaseIdentity {
            key: format!("{host_key}:{port}/{name}"),
            shown: format!("{host_shown}:{port}/{name}"),
            name,
            source,
        })
    }
}
