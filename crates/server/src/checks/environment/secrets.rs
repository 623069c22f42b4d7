//! The secret checks of one environment: env-file, secret-file-mode, secrets.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use config_core::{Environment, KeySpec, RawValue, Source, is_placeholder};
use secrecy::{ExposeSecret, SecretString};

use super::{Check, TOKEN_KEY, URL_KEY, raw_bool, raw_text};
use crate::checks::{CheckResult, Status, ids, list, plural};
use crate::config::{self, AppConfig};

impl Check<'_> {
    /// The secret keys that must have a value here: those without default or `Option`, the
    /// token while HTTP authentication is on, and those a `require:` list names.
    pub(super) fn required_secrets(&self) -> Vec<&KeySpec> {
        let Some(resolution) = self.resolution else {
            return Vec::new();
        };
        let auth_required = raw_bool(resolution, "server.auth.required").unwrap_or(true);
        let http = raw_text(resolution, "server.transport")
            .is_none_or(|t| t.trim().eq_ignore_ascii_case("http"));
        resolution
            .schema
            .keys
            .iter()
            .filter(|key| key.secret)
            .filter(|key| {
                key.required()
                    || (key.path == TOKEN_KEY && auth_required && http)
                    || resolution
                        .report
                        .required_keys()
                        .any(|required| required == key.path)
            })
            .collect()
    }

    pub(super) fn env_file(&self) -> CheckResult {
        let name = self.env_file_name();
        let shown = self.shown(&name);
        if self.root.join(&name).is_file() {
            return CheckResult::pass(ids::ENV_FILE, self.scope, format!("{shown} is present"));
        }
        let Some(resolution) = self.resolution else {
            return CheckResult::skip(
                ids::ENV_FILE,
                self.scope,
                format!("{shown} is absent; the configuration could not be resolved"),
            );
        };
        let required = self.required_secrets();
        let (supplied, missing): (Vec<&KeySpec>, Vec<&KeySpec>) = required
            .iter()
            .partition(|key| raw_text(resolution, &key.path).is_some_and(|t| !t.trim().is_empty()));
        if missing.is_empty() {
            let sources: Vec<String> = supplied
                .iter()
                .filter_map(|key| resolution.values.get(&key.path))
                .map(|r| r.source.to_string())
                .collect();
            let from = if sources.is_empty() {
                "none is required".to_owned()
            } else {
                format!("required secrets come from {}", sources.join(", "))
            };
            return CheckResult::pass(
                ids::ENV_FILE,
                self.scope,
                format!("{shown} is absent; {from}"),
            );
        }
        let names: Vec<&str> = missing.iter().map(|k| k.main_var()).collect();
        let others: Vec<&str> = missing
            .iter()
            .filter(|k| k.path != URL_KEY)
            .map(|k| k.main_var())
            .collect();
        let fix = if self.invocation.xtask && !self.environment.is_strict() {
            let mut fix = format!(
                "cargo xtask setup-db --env {} (writes {name} with DATABASE_URL)",
                self.environment
            );
            if !others.is_empty() {
                fix.push_str(&format!(", then add {} to it", others.join(", ")));
            }
            fix
        } else {
            format!(
                "(umask 077; {} > {shown}), then set {} in it",
                self.invocation.command(self.environment, "config template"),
                names.join(", ")
            )
        };
        CheckResult::fail(
            ids::ENV_FILE,
            self.scope,
            format!(
                "{shown} is absent and {} not supplied otherwise (environment, *_FILE, credentials)",
                if names.len() == 1 {
                    format!("{} is", names[0])
                } else {
                    format!("{} are", names.join(", "))
                }
            ),
        )
        .with_fix(fix)
    }

    /// `.env`, `.env.<environment>`, the targets of `*_FILE` variables and the files in
    /// `$CREDENTIALS_DIRECTORY`, as (path, shown).
    pub(super) fn secret_files(&self) -> Vec<(PathBuf, String)> {
        let mut files = Vec::new();
        for name in [".env".to_owned(), self.env_file_name()] {
            let path = self.root.join(&name);
            if path.exists() {
                files.push((path, self.shown(&name)));
            }
        }
        let schema = self
            .resolution
            .map(|r| r.schema.clone())
            .unwrap_or_else(|| config_core::Schema::of::<AppConfig>(config::ENV_PREFIX));
        for key in schema.keys.iter().filter(|k| k.secret) {
            for var in key.var_names() {
                if let Some(file) = self.env.get(&format!("{var}_FILE")) {
                    let path = PathBuf::from(file);
                    if path.exists() {
                        files.push((path.clone(), path.display().to_string()));
                    }
                }
            }
        }
        if let Some(dir) = self.env.get("CREDENTIALS_DIRECTORY")
            && let Ok(entries) = std::fs::read_dir(dir)
        {
            let mut credentials: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            credentials.sort();
            files.extend(credentials.into_iter().map(|p| {
                let shown = p.display().to_string();
                (p, shown)
            }));
        }
        let mut seen = BTreeSet::new();
        files.retain(|(path, _)| seen.insert(std::fs::canonicalize(path).unwrap_or(path.clone())));
        files
    }

    pub(super) fn secret_file_mode(&self) -> CheckResult {
        let files = self.secret_files();
        if files.is_empty() {
            return CheckResult::skip(
                ids::SECRET_FILE_MODE,
                self.scope,
                "no secret files (.env, .env.<environment>, *_FILE, $CREDENTIALS_DIRECTORY)",
            );
        }
        let me = effective_uid();
        let my_name = me.map(user_name).unwrap_or_else(|| "this user".to_owned());
        let mut problems = Vec::new();
        let mut loose = Vec::new();
        let mut foreign = Vec::new();
        for (path, shown) in &files {
            let meta = match std::fs::metadata(path) {
                Ok(meta) => meta,
                Err(err) => {
                    problems.push(format!("cannot inspect {shown}: {}", err.kind()));
                    continue;
                }
            };
            let mode = meta.mode() & 0o7777;
            if mode & 0o077 != 0 {
                problems.push(format!(
                    "{shown} has mode {mode:04o} (group or others may read it)"
                ));
                loose.push(shown.clone());
            }
            if let Some(me) = me
                && meta.uid() != me
            {
                problems.push(format!(
                    "{shown} is owned by {} (uid {}), not {my_name}",
                    user_name(meta.uid()),
                    meta.uid()
                ));
                foreign.push(shown.clone());
            }
        }
        if problems.is_empty() {
            let names: Vec<String> = files.iter().map(|(_, shown)| shown.clone()).collect();
            return CheckResult::pass(
                ids::SECRET_FILE_MODE,
                self.scope,
                format!(
                    "{} private (0600 or stricter) and owned by {my_name}: {}",
                    plural(files.len(), "secret file"),
                    list(&names, 6)
                ),
            );
        }
        let mut fixes = Vec::new();
        if !loose.is_empty() {
            fixes.push(format!("chmod 600 {}", loose.join(" ")));
        }
        if !foreign.is_empty() {
            fixes.push(format!("chown {my_name} {}", foreign.join(" ")));
        }
        let mut result = CheckResult::new(
            ids::SECRET_FILE_MODE,
            self.scope,
            self.strict(),
            list(&problems, 6),
        );
        if !fixes.is_empty() {
            result = result.with_fix(fixes.join(" && "));
        }
        result
    }

    pub(super) fn secrets(&self) -> CheckResult {
        let Some(resolution) = self.resolution else {
            return CheckResult::skip(
                ids::SECRETS,
                self.scope,
                "the configuration could not be resolved",
            );
        };
        let required: Vec<&str> = self
            .required_secrets()
            .iter()
            .map(|k| k.path.as_str())
            .collect();
        let mut missing = Vec::new();
        let mut placeholders = Vec::new();
        let mut set = Vec::new();
        let mut fixes = Vec::new();
        for key in resolution.schema.keys.iter().filter(|k| k.secret) {
            let resolved = resolution.values.get(&key.path);
            let text = resolved.and_then(|r| match &r.value {
                RawValue::Text(text) => Some(text.expose_secret().trim()),
                _ => None,
            });
            match (text, resolved) {
                (Some(text), Some(resolved)) if !text.is_empty() => {
                    if is_placeholder(text) {
                        placeholders.push(format!(
                            "{} looks like a placeholder [{}]",
                            key.main_var(),
                            resolved.source
                        ));
                        fixes.push(replace_fix(key, &resolved.source, self.environment));
                    } else {
                        set.push(format!("{} [{}]", key.main_var(), resolved.source));
                    }
                }
                _ if required.contains(&key.path.as_str()) => {
                    missing.push(format!("{} is not set", key.main_var()));
                    let mut how = format!(
                        "set {var} in {} (or {var}_FILE, or credential {})",
                        self.shown(&self.env_file_name()),
                        key.credential_name(&resolution.schema.prefix),
                        var = key.main_var()
                    );
                    if key.path == TOKEN_KEY {
                        how.push_str(" (generate one: openssl rand -hex 32)");
                    }
                    fixes.push(how);
                }
                _ => {}
            }
        }
        let problems: Vec<String> = missing.iter().chain(&placeholders).cloned().collect();
        if problems.is_empty() {
            let reason = if set.is_empty() {
                "no secret is required and none is set".to_owned()
            } else {
                format!("set to real values: {}", set.join(", "))
            };
            return CheckResult::pass(ids::SECRETS, self.scope, reason);
        }
        let status = if missing.is_empty() {
            self.strict()
        } else {
            Status::Fail
        };
        CheckResult::new(ids::SECRETS, self.scope, status, list(&problems, 6))
            .with_fix(fixes.join("; "))
    }
}

/// What to do about a placeholder, by where it came from.
fn replace_fix(key: &KeySpec, source: &Source, environment: Environment) -> String {
    let var = key.main_var();
    let generate = if key.path == TOKEN_KEY {
        " (generate one: openssl rand -hex 32)"
    } else {
        ""
    };
    match source {
        Source::Credential { path, .. } | Source::SecretFile { path, .. } => format!(
            "(umask 077; read -rsp '{var}: ' V && printf '%s\\n' \"$V\" > {}){generate}",
            path.display()
        ),
        Source::DotEnv { file, line } => {
            format!("put the real {var} at {}:{line}{generate}", file.display())
        }
        Source::Env { var: name } => format!("export the real value as {name}{generate}"),
        Source::Yaml { file, line, .. } => format!(
            "remove the secret from {}:{line} and set {var} in .env.{environment}",
            file.display()
        ),
        Source::Default => format!("set {var}{generate}"),
    }
}

/// The password of a `postgres://user:password@host/db` URL (or its `password=` parameter),
/// still percent-encoded: only compared, never shown.
pub(super) fn url_password(url: &str) -> Option<SecretString> {
    let rest = url.split_once("://")?.1;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let from_authority = rest[..authority_end]
        .rsplit_once('@')
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, password)| password)
        .filter(|p| !p.is_empty());
    let from_query = rest
        .split_once('?')
        .map(|(_, query)| query.split('#').next().unwrap_or_default())
        .and_then(|query| {
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix("password="))
        })
        .filter(|p| !p.is_empty());
    from_query
        .or(from_authority)
        .map(|p| SecretString::from(p.to_owned()))
}

/// The effective user id of this process (`/proc/self/status`), if it can be read.
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The user name of `uid` from `/etc/passwd`, else `uid N`.
fn user_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                let id: u32 = fields.nth(1)?.parse().ok()?;
                (id == uid).then(|| name.to_owned())
            })
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_come_out_of_urls() {
        let get = |url: &str| url_password(url).map(|p| p.expose_secret().to_owned());
        assert_eq!(
            get("postgres://u:p%40ss@h:5432/db?sslmode=require").as_deref(),
            Some("p%40ss")
        );
        assert_eq!(
            get("postgres://u@h/db?password=q&x=1").as_deref(),
            Some("q")
        );
        assert_eq!(get("postgres://u@h/db").as_deref(), None);
        assert_eq!(get("postgres://h/db").as_deref(), None);
    }

    #[test]
    fn this_process_has_an_effective_uid() {
        assert!(effective_uid().is_some());
    }
}
