//! PostgreSQL's client tools (`pg_dump`, `pg_restore`, `psql`) of the database server's major
//! version, and the libpq environment that points them at the configured database.
//!
//! `pg_dump` refuses servers newer than itself, and a dump made by a newer `pg_dump` may not
//! restore with an older `pg_restore`; requiring the server's own major version avoids both.
//! The password travels in `PGPASSWORD` of the child's environment (readable only by the same
//! user and root), never on its command line, where `ps` would show it to everyone.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;

use super::LifecycleError;

const TOOLS: [&str; 3] = ["pg_dump", "pg_restore", "psql"];

/// The client tools of one PostgreSQL major version.
#[derive(Debug, Clone)]
pub struct PgTools {
    pub bin_dir: PathBuf,
    /// The major version, e.g. 15.
    pub major: u32,
    /// `pg_dump --version`, e.g. "pg_dump (PostgreSQL) 15.18".
    pub version: String,
}

impl PgTools {
    pub fn pg_dump(&self) -> PathBuf {
        self.bin_dir.join("pg_dump")
    }
    pub fn pg_restore(&self) -> PathBuf {
        self.bin_dir.join("pg_restore")
    }
    pub fn psql(&self) -> PathBuf {
        self.bin_dir.join("psql")
    }
}

/// The server's major version (`SHOW server_version_num` / 10000) and its version text.
pub async fn server_version(pool: &PgPool) -> Result<(u32, String), LifecycleError> {
    let (num, text): (String, String) = sqlx::query_as(
        "SELECT current_setting('server_version_num'), current_setting('server_version')",
    )
    .fetch_one(pool)
    .await
    .map_err(LifecycleError::query("read the server version"))?;
    let num: u32 = num
        .parse()
        .map_err(|_| LifecycleError::Failed(format!("unexpected server_version_num {num:?}")))?;
    Ok((num / 10_000, text))
}

/// The tools of major version `major`: in `configured` (backup.pg_bin_dir) only, if it is set;
/// else the first of `pg_config --bindir`, `/usr/lib/postgresql/<major>/bin` and the
/// directories on `PATH` that holds all three at that version.
pub fn find(configured: Option<&str>, major: u32) -> Result<PgTools, LifecycleError> {
    if let Some(dir) = configured.map(str::trim).filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        return match probe(&dir) {
            Some(tools) if tools.major == major => Ok(tools),
            Some(tools) => Err(LifecycleError::Setup(format!(
                "backup.pg_bin_dir ({}) holds {}, but the database server is PostgreSQL {major}; point backup.pg_bin_dir at the client tools of version {major} (Debian: apt-get install postgresql-client-{major}, then /usr/lib/postgresql/{major}/bin)",
                dir.display(),
                tools.version
            ))),
            None => Err(LifecycleError::Setup(format!(
                "backup.pg_bin_dir ({}) lacks pg_dump, pg_restore or psql",
                dir.display()
            ))),
        };
    }
    let mut seen = Vec::new();
    for dir in candidates(major) {
        if let Some(tools) = probe(&dir) {
            if tools.major == major {
                return Ok(tools);
            }
            seen.push(format!("{} in {}", tools.version, dir.display()));
        }
    }
    let found = if seen.is_empty() {
        "none found".to_owned()
    } else {
        format!("found only {}", seen.join(", "))
    };
    Err(LifecycleError::Setup(format!(
        "no pg_dump, pg_restore and psql of PostgreSQL {major} (the database server's version): {found}; install them (Debian: apt-get install postgresql-client-{major}) or set backup.pg_bin_dir"
    )))
}

fn candidates(major: u32) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output()
        && output.status.success()
        && let Ok(text) = String::from_utf8(output.stdout)
    {
        dirs.push(PathBuf::from(text.trim()));
    }
    dirs.push(PathBuf::from(format!("/usr/lib/postgresql/{major}/bin")));
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs
}

/// The tools in `dir` and their version, if all three are there.
fn probe(dir: &Path) -> Option<PgTools> {
    if !TOOLS.iter().all(|tool| dir.join(tool).is_file()) {
        return None;
    }
    let output = Command::new(dir.join("pg_dump"))
        .arg("--version")
        .output()
        .ok()?;
    let version = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    let major = parse_major(&version)?;
    Some(PgTools {
        bin_dir: dir.to_path_buf(),
        major,
        version,
    })
}

/// "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)" → 15; "9.6.24" → 9.
fn parse_major(version: &str) -> Option<u32> {
    let number = version.split(") ").nth(1)?.split_whitespace().next()?;
    number.split('.').next()?.parse().ok()
}

/// The libpq variables (`PGHOST`, `PGPASSWORD`, …) for a `postgres://` URL. `Debug` hides the
/// password.
pub struct LibpqEnv {
    vars: Vec<(&'static str, String)>,
    password: Option<SecretString>,
}

impl fmt::Debug for LibpqEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LibpqEnv")
            .field("vars", &self.vars)
            .field("password", &self.password.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

/// URL query parameters libpq understands, and their variables.
const QUERY_VARS: [(&str, &str); 8] = [
    ("host", "PGHOST"),
    ("port", "PGPORT"),
    ("sslmode", "PGSSLMODE"),
    ("sslrootcert", "PGSSLROOTCERT"),
    ("sslcert", "PGSSLCERT"),
    ("sslkey", "PGSSLKEY"),
    ("application_name", "PGAPPNAME"),
    ("options", "PGOPTIONS"),
];

impl LibpqEnv {
    pub fn from_url(url: &SecretString) -> Result<Self, LifecycleError> {
        let parsed = url::Url::parse(url.expose_secret().trim()).map_err(|_| {
            LifecycleError::Setup(
                "database.url is not a valid URL (postgres://user:password@host:port/database)"
                    .to_owned(),
            )
        })?;
        let decode = |text: &str| {
            percent_encoding::percent_decode_str(text)
                .decode_utf8_lossy()
                .into_owned()
        };
        let mut vars = Vec::new();
        if let Some(host) = parsed.host_str().filter(|h| !h.is_empty()) {
            vars.push((
                "PGHOST",
                decode(host.trim_start_matches('[').trim_end_matches(']')),
            ));
        }
        if let Some(port) = parsed.port() {
            vars.push(("PGPORT", port.to_string()));
        }
        if !parsed.username().is_empty() {
            vars.push(("PGUSER", decode(parsed.username())));
        }
        let database = parsed.path().trim_start_matches('/');
        if !database.is_empty() {
            vars.push(("PGDATABASE", decode(database)));
        }
        for (key, value) in parsed.query_pairs() {
            if let Some((_, var)) = QUERY_VARS.iter().find(|(name, _)| *name == key) {
                vars.retain(|(existing, _)| existing != var);
                vars.push((var, value.into_owned()));
            }
        }
        let password = parsed.password().map(|p| SecretString::from(decode(p)));
        Ok(Self { vars, password })
    }

    /// Sets these variables on `command`, after removing every inherited `PG*` variable (a
    /// stray `PGSERVICE` or `PGHOST` must not redirect a backup or a restore).
    pub fn apply(&self, command: &mut tokio::process::Command) {
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("PG") {
                command.env_remove(name);
            }
        }
        for (name, value) in &self.vars {
            command.env(name, value);
        }
        if let Some(password) = &self.password {
            command.env("PGPASSWORD", password.expose_secret());
        }
        // No ~/.psqlrc or ~/.pgpass of whoever runs this may change what happens.
        command.env("PGPASSFILE", "/dev/null");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majors_come_out_of_version_texts() {
        assert_eq!(
            parse_major("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"),
            Some(15)
        );
        assert_eq!(parse_major("pg_dump (PostgreSQL) 9.6.24"), Some(9));
        assert_eq!(parse_major("pg_dump (PostgreSQL) 17beta1"), None);
        assert_eq!(parse_major("garbage"), None);
    }

    #[test]
    fn a_url_becomes_libpq_variables_without_showing_its_password() {
        let url = SecretString::from(
            "postgres://mcp%40user:Canary%2Fpw@db.example:6543/cognitive_memory?sslmode=verify-full&sslrootcert=/etc/ca.pem&statement-cache-capacity=0",
        );
        let env = LibpqEnv::from_url(&url).unwrap();
        let vars: Vec<(&str, &str)> = env.vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(
            vars,
            [
                ("PGHOST", "db.example"),
                ("PGPORT", "6543"),
                ("PGUSER", "mcp@user"),
                ("PGDATABASE", "cognitive_memory"),
                ("PGSSLMODE", "verify-full"),
                ("PGSSLROOTCERT", "/etc/ca.pem"),
            ]
        );
        assert_eq!(env.password.as_ref().unwrap().expose_secret(), "Canary/pw");
        assert!(!format!("{env:?}").contains("Canary"));
    }
}
