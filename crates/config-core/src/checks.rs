//! Value and file checks shared by loading and by operator tooling.

use std::path::Path;

/// Whether a value looks like a template placeholder rather than a real value: empty,
/// `your-…`, `…-here`, `<…>`, `changeme`, `xxx…`, `TODO`. URL-like values are also checked part by
/// part, so `postgres://app:changeme@db/app` is caught.
pub fn is_placeholder(value: &str) -> bool {
    let value = value.trim();
    value.is_empty()
        || looks_like_placeholder(value)
        || value
            .split([':', '/', '@', '?', '&', '='])
            .filter(|p| !p.is_empty())
            .any(looks_like_placeholder)
}

fn looks_like_placeholder(part: &str) -> bool {
    let lower = part.to_ascii_lowercase();
    lower.starts_with("your-")
        || lower.starts_with("your_")
        || lower.ends_with("-here")
        || lower.ends_with("_here")
        || (lower.starts_with('<') && lower.ends_with('>'))
        || matches!(
            lower.as_str(),
            "changeme" | "change_me" | "change-me" | "todo" | "tbd"
        )
        || lower.starts_with("todo:")
        || lower.starts_with("xxx")
}

/// The permission bits of a file if group or others may access it (like ssh refusing a key).
///
/// One pattern passes: a root-owned file readable (not writable) by the process's own,
/// non-root group and nobody else. That is how the kubelet mounts a Secret for a pod's
/// `fsGroup` (it adds group read to `defaultMode`), and the group is the pod's alone.
pub fn loose_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let metadata = std::fs::metadata(path).ok()?;
    let mode = metadata.permissions().mode() & 0o777;
    let own_group = rustix::process::getegid().as_raw();
    (!is_private(mode, metadata.uid(), metadata.gid(), own_group)).then_some(mode)
}

/// Owner-only, or the kubelet's Secret pattern for the pod's own non-root group (see [`loose_mode`]).
fn is_private(mode: u32, owner: u32, group: u32, own_group: u32) -> bool {
    let shared = mode & 0o077;
    shared == 0 || (shared == 0o040 && owner == 0 && own_group != 0 && group == own_group)
}

/// The first of `path` and its parent directories up to and including `up_to` that group or
/// others may write (mode `& 0o022`), with its mode: whoever may write there may change the
/// configuration (ssh refuses a writable `authorized_keys` the same way). Parents are only
/// walked while `path` is below `up_to`.
pub fn writable_by_others(path: &Path, up_to: &Path) -> Option<(std::path::PathBuf, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let writable = |p: &Path| {
        let mode = std::fs::metadata(p).ok()?.permissions().mode() & 0o7777;
        (mode & 0o022 != 0).then_some(mode)
    };
    if let Some(mode) = writable(path) {
        return Some((path.to_owned(), mode));
    }
    let up_to = std::fs::canonicalize(up_to).ok()?;
    let mut dir = std::fs::canonicalize(path).ok()?.parent()?.to_owned();
    while dir.starts_with(&up_to) {
        if let Some(mode) = writable(&dir) {
            return Some((dir, mode));
        }
        if dir == up_to || !dir.pop() {
            break;
        }
    }
    None
}

/// The owner of `path` when it is neither the effective user nor root.
pub fn foreign_owner(path: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(path).ok()?.uid();
    let me = rustix::process::geteuid().as_raw();
    (owner != me && owner != 0).then_some(owner)
}

/// Whether a connection URL carries a password (in its user info or a `password=` parameter).
pub fn url_has_password(raw: &str) -> bool {
    url::Url::parse(raw.trim()).is_ok_and(|url| {
        url.password().is_some_and(|p| !p.is_empty())
            || url
                .query_pairs()
                .any(|(key, value)| key == "password" && !value.is_empty())
    })
}

/// A connection URL without its password or query (except `sslmode`), for logs, errors and
/// `explain`: `postgres://user@host:5432/db?sslmode=require`. Other query parameters may carry a
/// password or key paths, so they go; anything unparsable is hidden completely.
pub fn redact_url(raw: &str) -> String {
    let Ok(url) = url::Url::parse(raw.trim()) else {
        return "<unparsable URL>".to_owned();
    };
    let mut shown = format!("{}://", url.scheme());
    if !url.username().is_empty() {
        shown.push_str(url.username());
        shown.push('@');
    }
    shown.push_str(url.host_str().unwrap_or_default());
    if let Some(port) = url.port() {
        shown.push_str(&format!(":{port}"));
    }
    shown.push_str(url.path());
    if let Some((_, mode)) = url
        .query_pairs()
        .find(|(key, _)| key == "sslmode" || key == "ssl-mode")
    {
        shown.push_str(&format!("?sslmode={mode}"));
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_owner_access_or_a_root_owned_secret_for_our_own_group_is_private() {
        assert!(is_private(0o600, 1000, 1000, 1000));
        assert!(is_private(0o400, 0, 0, 65532));
        // The kubelet's fsGroup mount: root-owned, group read for the pod's group.
        assert!(is_private(0o440, 0, 65532, 65532));
        assert!(!is_private(0o440, 0, 100, 65532), "another group");
        assert!(!is_private(0o440, 1000, 65532, 65532), "not root-owned");
        assert!(!is_private(0o460, 0, 65532, 65532), "group-writable");
        assert!(!is_private(0o444, 0, 65532, 65532), "world-readable");
        assert!(
            !is_private(0o440, 0, 0, 0),
            "a root group is shared with every root process"
        );
    }

    #[test]
    fn placeholders() {
        for p in [
            "",
            "  ",
            "your-api-key",
            "<your-database-url-here>",
            "token-here",
            "changeme",
            "CHANGE_ME",
            "xxxxxxxx",
            "TODO",
            "postgres://app:changeme@db/app",
            "postgresql://<user>:<password>@localhost/db",
        ] {
            assert!(is_placeholder(p), "{p:?}");
        }
        for real in [
            "postgres://mcp_user:Zk2f9sQ@db.internal:5432/cognitive_memory",
            "s3cr3t-t0ken",
            "sk-proj-abc123",
            "there",
        ] {
            assert!(!is_placeholder(real), "{real:?}");
        }
    }

    #[test]
    fn urls_lose_password_and_query() {
        assert_eq!(
            redact_url(
                "postgres://mcp_user:hunter2@db.internal:5432/cognitive_memory?sslmode=require&password=hunter2"
            ),
            "postgres://mcp_user@db.internal:5432/cognitive_memory?sslmode=require"
        );
        assert_eq!(redact_url("postgres://u:p@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("hunter2"), "<unparsable URL>");
    }
}
