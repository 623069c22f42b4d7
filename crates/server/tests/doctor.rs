//! `cognitive-memory-mcp doctor` on a host layout made by `cargo xtask install-service --root
//! DIR`, reading the installed configuration and credentials the way the unit makes the daemon
//! read them: the placeholders FAIL (exit 1) until real values are in the credential files, then
//! everything passes; a loosened credential file FAILs again. No secret appears in any output.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cognitive_memory_mcp::checks::{Report, Scope, Status};
use config_core::Environment;
use secrecy::SecretString;

const BIN: &str = env!("CARGO_BIN_EXE_cognitive-memory-mcp");
/// A unique token that must never appear in any output.
const TOKEN: &str = "CanaryDoctorToken-5c2e81f0a94b73d6";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The xtask binary beside this build's server binary, built when missing.
fn xtask() -> PathBuf {
    let path = Path::new(BIN).with_file_name("xtask");
    if !path.is_file() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "xtask", "--bin", "xtask"])
            .current_dir(workspace())
            .status()
            .expect("run cargo build -p xtask");
        assert!(status.success(), "cargo build -p xtask failed");
    }
    path
}

/// `install-service --root <root> --binary <this build's server>`.
fn install(root: &Path) {
    let output = Command::new(xtask())
        .arg("install-service")
        .arg("--root")
        .arg(root)
        .arg("--binary")
        .arg(BIN)
        .env_clear()
        .env("COGMEM_REPO_ROOT", workspace())
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "install-service failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        install(dir.path());
        Host { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn config_root(&self) -> PathBuf {
        self.root().join("etc/cognitive-memory-mcp")
    }

    fn credential(&self, name: &str) -> PathBuf {
        self.config_root().join("credentials").join(name)
    }

    /// `doctor --env production` as the unit would run it (plus `--host-root`).
    fn doctor(&self, extra: &[&str], host_root: &Path) -> Run {
        let output = Command::new(BIN)
            .arg("--config-root")
            .arg(self.config_root())
            .args(["--env", "production", "doctor", "--host-root"])
            .arg(host_root)
            .args(extra)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env(
                "CREDENTIALS_DIRECTORY",
                self.config_root().join("credentials"),
            )
            .output()
            .unwrap();
        Run(output)
    }
}

struct Run(Output);

impl Run {
    fn all(&self) -> String {
        format!(
            "{}{}",
            String::from_utf8_lossy(&self.0.stdout),
            String::from_utf8_lossy(&self.0.stderr)
        )
    }

    #[track_caller]
    fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(self.0.status.code(), Some(code), "{}", self.all());
        self
    }

    #[track_caller]
    fn never_says(&self, secrets: &[&str]) -> &Run {
        for secret in secrets {
            assert!(
                !self.all().contains(secret),
                "a secret appeared in the output:\n{}",
                self.all()
            );
        }
        self
    }

    /// The text report's line for `id` (`STATUS  scope  id  reason`) and its fix line, if any.
    #[track_caller]
    fn line(&self, id: &str) -> (String, Option<String>) {
        let stdout = String::from_utf8_lossy(&self.0.stdout).into_owned();
        let lines: Vec<&str> = stdout.lines().collect();
        let at = lines
            .iter()
            .position(|line| line.split_whitespace().nth(2) == Some(id))
            .unwrap_or_else(|| panic!("no {id} line:\n{stdout}"));
        let fix = lines
            .get(at + 1)
            .and_then(|next| next.trim_start().strip_prefix("fix: "))
            .map(str::to_owned);
        (lines[at].to_owned(), fix)
    }

    fn json(&self) -> Report {
        Report::from_json(&String::from_utf8_lossy(&self.0.stdout))
            .unwrap_or_else(|err| panic!("not a JSON report ({err}):\n{}", self.all()))
    }
}

fn status(report: &Report, id: &str) -> Status {
    report
        .checks
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no {id} in {report:?}"))
        .status
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A fresh database of the shared test cluster, stamped for production; its URL.
fn production_database() -> String {
    runtime().block_on(async {
        let database = pg_harness::TestCluster::shared()
            .fresh_database()
            .await
            .unwrap();
        let config = db::DatabaseConfig {
            url: SecretString::from(database.url.clone()),
            migration_url: None,
            prepared_statements: true,
            ssl_root_cert: None,
            pool: db::PoolConfig {
                min_connections: 0,
                max_connections: 1,
                max_lifetime_secs: 1800,
            },
            acquire_timeout_secs: 5,
            connect_wait_secs: 5,
            require_tls: true,
            tls_verify: true,
            auto_migrate: false,
        };
        let pool = db::connect(&config, |_| {}).await.unwrap();
        db::stamp(&pool, Environment::Production, "doctor test")
            .await
            .unwrap();
        pool.close().await;
        database.url
    })
}

#[test]
fn doctor_fails_on_the_installed_placeholders_until_real_values_are_supplied() {
    let host = Host::new();
    let placeholders = host.doctor(&[], host.root());
    placeholders.expect_code(1);
    let (line, fix) = placeholders.line("secrets");
    assert!(line.starts_with("FAIL  production"), "{line}");
    for (variable, credential) in [
        ("DATABASE_URL", "database-url"),
        ("MCP_AUTH_TOKEN", "mcp-auth-token"),
    ] {
        assert!(
            line.contains(&format!(
                "{variable} looks like a placeholder [credential {credential}]"
            )),
            "{line}"
        );
        let fix = fix.as_deref().unwrap_or_default();
        assert!(
            fix.contains(&host.credential(credential).display().to_string()),
            "the fix names the credential file: {fix}"
        );
    }
    assert!(placeholders.line("config").0.starts_with("FAIL"));
    // The credentials supply the secrets; the database cannot be tried with a placeholder.
    assert!(placeholders.line("env-file").0.starts_with("PASS"));
    assert!(placeholders.line("secret-file-mode").0.starts_with("PASS"));
    for id in ["db-tls", "db-connect", "db-stamp", "db-migrations"] {
        assert!(
            placeholders.line(id).0.starts_with("SKIP"),
            "{}",
            placeholders.all()
        );
    }
    // The installed unit is verified and scored where systemd-analyze exists.
    let report = host.doctor(&["--json"], host.root()).json();
    assert!(!report.checks.is_empty());
    for id in ["unit-verify", "unit-security"] {
        let check = report.checks.iter().find(|c| c.id == id).unwrap();
        assert_eq!(check.scope, Scope::Host);
        assert!(
            matches!(check.status, Status::Pass | Status::Skip),
            "{check:?}"
        );
    }
    assert_eq!(status(&report, "secrets"), Status::Fail);

    // Real values: a database stamped production and a real token.
    let url = production_database();
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.rsplit_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, password)| password.to_owned())
        .unwrap();
    fs::write(host.credential("database-url"), format!("{url}\n")).unwrap();
    fs::write(host.credential("mcp-auth-token"), format!("{TOKEN}\n")).unwrap();
    // The backup role's URL (the backup service's credential); the login role's stands in.
    fs::write(host.credential("backup-database-url"), format!("{url}\n")).unwrap();
    let secrets = [TOKEN, password.as_str()];
    placeholders.never_says(&secrets);

    let healthy = host.doctor(&[], host.root());
    healthy.expect_code(0).never_says(&secrets);
    assert!(!healthy.all().contains("placeholder"), "{}", healthy.all());
    for id in [
        "config",
        "env-file",
        "secret-file-mode",
        "secrets",
        "db-tls",
        "db-connect",
        "db-stamp",
        "db-migrations",
    ] {
        assert!(
            healthy.line(id).0.starts_with("PASS"),
            "{id}:\n{}",
            healthy.all()
        );
    }
    let report = host.doctor(&["--json"], host.root());
    report.expect_code(0).never_says(&secrets);
    assert_eq!(report.json().failed().count(), 0);

    // A credential file others may read fails again, with the command that fixes it.
    fs::set_permissions(
        host.credential("mcp-auth-token"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let loose = host.doctor(&[], host.root());
    loose.expect_code(1).never_says(&secrets);
    let (line, fix) = loose.line("secret-file-mode");
    assert!(
        line.starts_with("FAIL") && line.contains("mode 0644"),
        "{line}"
    );
    assert_eq!(
        fix.as_deref(),
        Some(format!("chmod 600 {}", host.credential("mcp-auth-token").display()).as_str())
    );

    // Without an installed unit the host checks are skipped, not failed.
    let empty = tempfile::tempdir().unwrap();
    let report = host.doctor(&["--json"], empty.path()).json();
    assert_eq!(status(&report, "unit-verify"), Status::Skip);
    assert_eq!(status(&report, "unit-security"), Status::Skip);
}

#[test]
fn doctor_help_names_the_checks() {
    let output = Command::new(BIN)
        .args(["doctor", "--help"])
        .env_clear()
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{help}");
    for id in [
        "config",
        "env-file",
        "secret-file-mode",
        "secrets",
        "db-tls",
        "db-connect",
        "db-stamp",
        "db-migrations",
        "unit-verify",
        "unit-security",
        "--json",
    ] {
        assert!(help.contains(id), "--help lacks {id}:\n{help}");
    }
    assert!(
        !help.contains("--host-root"),
        "a test-only flag is shown:\n{help}"
    );
}
