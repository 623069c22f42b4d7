//! Locating the PostgreSQL server binaries.

use std::env;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::HarnessError;

/// How to get the binaries; part of every "not found" message.
pub const INSTALL_HINT: &str = "install the PostgreSQL server: `apt-get install -y postgresql` on Debian/Ubuntu, `brew install postgresql@16` on macOS; or set PG_BINDIR to the directory that holds initdb";

const REQUIRED: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

/// The directory holding `initdb`, `pg_ctl` and `postgres`.
///
/// Looks, in order, at `PG_BINDIR`, `pg_config --bindir`, `initdb` on `PATH`, and the newest
/// `/usr/lib/postgresql/*/bin` (Debian keeps the server off `PATH`). An explicit `PG_BINDIR`
/// without the binaries is an error rather than a reason to look elsewhere.
pub fn find_bindir() -> Result<PathBuf, HarnessError> {
    if let Some(dir) = env::var_os("PG_BINDIR").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        return if has_server_binaries(&dir) {
            Ok(dir)
        } else {
            Err(HarnessError::BinariesNotFound {
                detail: format!(
                    "PG_BINDIR={} lacks initdb, pg_ctl or postgres",
                    dir.display()
                ),
            })
        };
    }
    from_pg_config()
        .or_else(from_path)
        .or_else(newest_debian_bindir)
        .ok_or_else(|| HarnessError::BinariesNotFound {
            detail: "looked at PG_BINDIR, `pg_config --bindir`, PATH and /usr/lib/postgresql/*/bin"
                .to_owned(),
        })
}

fn has_server_binaries(dir: &Path) -> bool {
    REQUIRED.iter().all(|name| dir.join(name).is_file())
}

/// `pg_config` may come from a client-only package, so its answer counts only if it has `initdb`.
fn from_pg_config() -> Option<PathBuf> {
    let output = Command::new("pg_config").arg("--bindir").output().ok()?;
    let dir = PathBuf::from(String::from_utf8(output.stdout).ok()?.trim());
    (output.status.success() && has_server_binaries(&dir)).then_some(dir)
}

/// `initdb` on `PATH` is often a symlink (`/usr/local/bin/initdb`); its target's directory
/// also holds `postgres`.
fn from_path() -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join("initdb"))
        .filter(|candidate| candidate.is_file())
        .filter_map(|candidate| {
            candidate
                .canonicalize()
                .ok()?
                .parent()
                .map(Path::to_path_buf)
        })
        .find(|dir| has_server_binaries(dir))
}

fn newest_debian_bindir() -> Option<PathBuf> {
    std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = version_key(&entry.file_name())?;
            let bin = entry.path().join("bin");
            has_server_binaries(&bin).then_some((version, bin))
        })
        .max()
        .map(|(_, bin)| bin)
}

/// "9.6" → [9, 6], "16" → [16]: numeric, so 16 beats 9.6.
fn version_key(name: &OsStr) -> Option<Vec<u32>> {
    name.to_str()?
        .split('.')
        .map(|part| part.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        let key = |s: &str| version_key(OsStr::new(s));
        assert!(key("16") > key("9.6"));
        assert!(key("15") > key("9"));
        assert_eq!(key("common"), None);
    }
}
