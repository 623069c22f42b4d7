//! Named static API keys (`server.auth.keys_file`): each with a tenant, scopes and an optional
//! expiry, stored only as the SHA-256 of the key.
//!
//! The file holds one key per line (blank lines and `#` comments are skipped), fields
//! `name=value` separated by spaces, in any order:
//!
//! ```text
//! name=laptop tenant=alice scopes=memory:read,memory:write sha256=<64 hex digits>
//! name=ci tenant=team-a scopes=memory:read expires=2027-01-31T00:00:00Z sha256=<64 hex digits>
//! ```
//!
//! `cognitive-memory-mcp auth new-key` makes a key and prints its line. A plain SHA-256 is the
//! right hash here because the keys are 256 random bits, not passwords: nobody can guess a
//! preimage, so a slow, salted password hash would add only CPU per request. A presented key
//! is hashed and compared with every entry in constant time, as `token_set` does.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::auth::principal::Principal;
use crate::auth::scopes::Scopes;
use crate::tenancy::Tenant;

/// What every generated key starts with, so a key pasted into the file is recognised.
pub const KEY_PREFIX: &str = "cmk_";

/// One entry of the keys file. `Debug` shows no digest.
#[derive(Clone)]
pub struct ApiKey {
    pub name: String,
    pub tenant: Tenant,
    pub scopes: Scopes,
    pub expires: Option<OffsetDateTime>,
    digest: [u8; 32],
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("name", &self.name)
            .field("tenant", &self.tenant)
            .field("scopes", &self.scopes)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

impl ApiKey {
    /// The line for the keys file.
    pub fn line(&self) -> String {
        let mut line = format!(
            "name={} tenant={} scopes={}",
            self.name,
            self.tenant,
            self.scopes.names().join(",")
        );
        if let Some(expires) = self.expires {
            line.push_str(&format!(
                " expires={}",
                expires.format(&Rfc3339).unwrap_or_default()
            ));
        }
        line.push_str(" sha256=");
        for byte in self.digest {
            line.push_str(&format!("{byte:02x}"));
        }
        line
    }
}

/// Why the keys file was refused: file, line and what is wrong. Never a key or a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct KeysFileError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

/// Whether a key name is acceptable: 1–64 of letters, digits, `_ - . @`.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err("a key name has 1 to 64 characters".to_owned());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'))
    {
        return Err("a key name may hold only letters, digits, '_', '-', '.' and '@'".to_owned());
    }
    Ok(())
}

fn digest(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

fn parse_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (index, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[index * 2..index * 2 + 2], 16).ok()?;
    }
    Some(out)
}

/// A new random key (256 bits, base64url) and its file entry.
pub fn generate(
    name: &str,
    tenant: Tenant,
    scopes: Scopes,
    expires: Option<OffsetDateTime>,
) -> Result<(String, ApiKey), String> {
    check_name(name)?;
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).map_err(|err| format!("no randomness: {err}"))?;
    let key = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(random));
    let entry = ApiKey {
        name: name.to_owned(),
        tenant,
        scopes,
        expires,
        digest: digest(key.as_bytes()),
    };
    Ok((key, entry))
}

/// The keys of one file.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    keys: Vec<ApiKey>,
}

/// Why a presented key is not accepted. Safe to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRefusal {
    /// No entry has this key.
    Unknown,
    /// The key named here has expired.
    Expired(String),
}

impl ApiKeys {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Self, KeysFileError> {
        let text = std::fs::read_to_string(path).map_err(|err| KeysFileError {
            path: path.to_owned(),
            line: None,
            message: format!("cannot read the keys file: {err}"),
        })?;
        Self::parse(path, &text)
    }

    /// Parses the file's text; `path` only names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, KeysFileError> {
        let mut keys: Vec<ApiKey> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let fail = |message: String| KeysFileError {
                path: path.to_owned(),
                line: Some(number),
                message,
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let key = parse_line(line).map_err(fail)?;
            if keys.iter().any(|k| k.name == key.name) {
                return Err(fail(format!("key {:?}: the name is used twice", key.name)));
            }
            if keys.iter().any(|k| k.digest == key.digest) {
                return Err(fail(format!(
                    "key {:?}: the same sha256 as another entry (one key, two entries)",
                    key.name
                )));
            }
            keys.push(key);
        }
        Ok(ApiKeys { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key names, for the log.
    pub fn names(&self) -> Vec<&str> {
        self.keys.iter().map(|key| key.name.as_str()).collect()
    }

    /// The principal of `presented` at `now`.
    pub fn check_at(&self, presented: &[u8], now: OffsetDateTime) -> Result<Principal, KeyRefusal> {
        let presented = digest(presented);
        // Every entry is compared; the match is picked without branching on the comparison.
        let mut found: Option<&ApiKey> = None;
        for key in &self.keys {
            let equal: bool = key.digest.ct_eq(&presented).into();
            if equal && found.is_none() {
                found = Some(key);
            }
        }
        match found {
            None => Err(KeyRefusal::Unknown),
            Some(key) if key.expires.is_some_and(|when| when <= now) => {
                Err(KeyRefusal::Expired(key.name.clone()))
            }
            Some(key) => Ok(Principal::new(
                format!("key:{}", key.name),
                key.tenant.clone(),
                key.scopes,
            )),
        }
    }

    /// Whether both accept the same keys with the same attributes.
    pub fn same_as(&self, other: &ApiKeys) -> bool {
        self.keys.len() == other.keys.len()
            && self.keys.iter().zip(&other.keys).all(|(a, b)| {
                a.name == b.name
                    && a.tenant == b.tenant
                    && a.scopes == b.scopes
                    && a.expires == b.expires
                    && a.digest == b.digest
            })
    }
}

fn parse_line(line: &str) -> Result<ApiKey, String> {
    let (mut name, mut tenant, mut scopes, mut expires, mut hash) = (None, None, None, None, None);
    for field in line.split_whitespace() {
        if field.starts_with(KEY_PREFIX) {
            // Never quote it: it is a key.
            return Err(
                "this line holds a plain key: put only its sha256 (the line `auth new-key` prints) in the file, and treat the key as leaked"
                    .to_owned(),
            );
        }
        let Some((label, value)) = field.split_once('=') else {
            return Err("expected fields name=… tenant=… scopes=… [expires=…] sha256=…".to_owned());
        };
        let slot = match label {
            "name" => &mut name,
            "tenant" => &mut tenant,
            "scopes" => &mut scopes,
            "expires" => &mut expires,
            "sha256" => &mut hash,
            _ => {
                return Err(format!(
                    "unknown field {label:?}; the fields are name, tenant, scopes, expires, sha256"
                ));
            }
        };
        if slot.replace(value).is_some() {
            return Err(format!("field {label:?} appears twice"));
        }
    }
    let name = name.ok_or("missing name=")?;
    check_name(name)?;
    let named = |message: String| format!("key {name:?}: {message}");
    let tenant = Tenant::new(tenant.ok_or_else(|| named("missing tenant=".to_owned()))?)
        .map_err(|err| named(err.to_string()))?;
    let scopes = Scopes::parse_list(scopes.ok_or_else(|| named("missing scopes=".to_owned()))?)
        .map_err(named)?;
    let expires = expires
        .map(|when| {
            OffsetDateTime::parse(when, &Rfc3339).map_err(|_| {
                named("expires is not an RFC 3339 time such as 2027-01-31T00:00:00Z".to_owned())
            })
        })
        .transpose()?;
    let digest = parse_hex(hash.ok_or_else(|| named("missing sha256=".to_owned()))?)
        .ok_or_else(|| named("sha256 must be 64 hexadecimal digits".to_owned()))?;
    Ok(ApiKey {
        name: name.to_owned(),
        tenant,
        scopes,
        expires,
        digest,
    })
}

/// The keys in effect, replaced as a whole by a reload (requests in flight keep theirs).
#[derive(Debug)]
pub struct SharedApiKeys {
    path: PathBuf,
    keys: RwLock<Arc<ApiKeys>>,
}

impl SharedApiKeys {
    pub fn load(path: &Path) -> Result<Self, KeysFileError> {
        Ok(Self {
            path: path.to_owned(),
            keys: RwLock::new(Arc::new(ApiKeys::load(path)?)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn current(&self) -> Arc<ApiKeys> {
        self.keys
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Reads the file again (SIGHUP). A file that does not parse leaves the old keys in effect
    /// and is logged with file and line; `Ok(true)` when the keys changed.
    pub fn reload(&self) -> Result<bool, KeysFileError> {
        let new = Arc::new(ApiKeys::load(&self.path)?);
        // Swapped before the log line, so whoever reads "replaced" finds the new keys in effect.
        let old = std::mem::replace(
            &mut *self
                .keys
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
            Arc::clone(&new),
        );
        let changed = !old.same_as(&new);
        if changed {
            tracing::info!(keys = %new.names().join(", "), file = %self.path.display(), "API keys replaced");
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> OffsetDateTime {
        OffsetDateTime::parse(text, &Rfc3339).unwrap()
    }

    #[test]
    fn generated_lines_parse_back_and_accept_only_their_key() {
        let (key, entry) = generate(
            "laptop",
            Tenant::new("alice").unwrap(),
            Scopes::parse_list("memory:read,memory:write").unwrap(),
            Some(at("2027-01-01T00:00:00Z")),
        )
        .unwrap();
        assert!(
            key.starts_with(KEY_PREFIX) && key.len() == 4 + 43,
            "{}",
            key.len()
        );
        let line = entry.line();
        assert!(!line.contains(&key));
        let keys = ApiKeys::parse(Path::new("keys"), &format!("# comment\n\n{line}\n")).unwrap();
        let principal = keys
            .check_at(key.as_bytes(), at("2026-12-01T00:00:00Z"))
            .unwrap();
        assert_eq!(principal.name(), "key:laptop");
        assert_eq!(principal.tenant().as_str(), "alice");
        assert_eq!(principal.scopes().to_string(), "memory:read memory:write");
        assert_eq!(
            keys.check_at(key.as_bytes(), at("2027-01-01T00:00:00Z")),
            Err(KeyRefusal::Expired("laptop".into()))
        );
        assert_eq!(
            keys.check_at(b"cmk_other", at("2026-12-01T00:00:00Z")),
            Err(KeyRefusal::Unknown)
        );
    }

    #[test]
    fn errors_name_file_line_and_key_but_never_a_key() {
        let hash = "ab".repeat(32);
        let path = Path::new("/etc/keys");
        let error = |text: &str| ApiKeys::parse(path, text).unwrap_err().to_string();
        let message = error(&format!(
            "\nname=a tenant=t scopes=memory:read sha256={hash}\nname=b tenant=t scopes=memory:admin sha256={hash}"
        ));
        assert!(
            message.starts_with("/etc/keys:3: key \"b\": unknown scope"),
            "{message}"
        );
        let message = error("name=c tenant=t scopes=memory:read cmk_canary-secret");
        assert!(
            message.starts_with("/etc/keys:1:") && !message.contains("canary"),
            "{message}"
        );
        let message = error(&format!(
            "name=a tenant=t scopes=memory:read sha256={hash}\nname=a tenant=u scopes=memory:read sha256={}",
            "cd".repeat(32)
        ));
        assert!(
            message.contains(":2: key \"a\": the name is used twice"),
            "{message}"
        );
        assert!(error("name=d tenant=Bad scopes=memory:read sha256=00").contains("key \"d\""));
        assert!(
            error(&format!(
                "name=e tenant=t scopes=memory:read sha256={hash} expires=soon"
            ))
            .contains("RFC 3339")
        );
    }
}
