//! The second line of configuration safety, rule by rule, through the built binary's
//! `config check`: an error (exit 78) in staging and production, a warning in development where
//! the rule applies there, each naming the key and where its value came from, and never the
//! value (a canary) itself.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_cognitive-memory-mcp");
const CANARY_PASSWORD: &str = "CanaryPw-1d9e7b3a5c8f2046ab";
const CANARY_TOKEN: &str = "CanaryToken-5e0c9a7b3d1f8264";
/// Long enough, but no entropy worth the name.
const WEAK_TOKEN_CANARY: &str = "canarycanarycanary1234567890";

struct Root(tempfile::TempDir);

impl Root {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let repo_config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/config.yaml");
        fs::create_dir_all(dir.path().join("config")).unwrap();
        fs::copy(repo_config, dir.path().join("config/config.yaml")).unwrap();
        Root(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    fn write(&self, name: &str, content: &str, mode: u32) {
        let path = self.path(name);
        fs::write(&path, content).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// `config check` in `environment`: (exit code, stdout + stderr).
    fn check(&self, environment: &str) -> (i32, String) {
        let output = Command::new(BIN)
            .args(["--env", environment, "config", "check"])
            .env_clear()
            .env("COGMEM_CONFIG_ROOT", self.0.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        for canary in [CANARY_PASSWORD, CANARY_TOKEN, WEAK_TOKEN_CANARY] {
            assert!(!text.contains(canary), "a secret leaked:\n{text}");
        }
        (output.status.code().unwrap(), text)
    }
}

fn url(password: &str, query: &str) -> String {
    format!("postgres://mcp_user:{password}@db.internal:5432/cognitive_memory?{query}")
}

/// A clean `.env.<environment>` (HTTP authentication on in development too), with `extra` lines.
fn env_file(root: &Root, environment: &str, database_url: &str, token: &str, extra: &str) {
    root.write(
        &format!(".env.{environment}"),
        &format!(
            "DATABASE_URL={database_url}\nMCP_AUTH_TOKEN={token}\nCOGMEM__SERVER__AUTH__REQUIRED=true\n{extra}"
        ),
        0o600,
    );
}

fn clean(root: &Root, environment: &str) {
    env_file(
        root,
        environment,
        &url(CANARY_PASSWORD, "sslmode=verify-full"),
        CANARY_TOKEN,
        "",
    );
}

/// What a rule must produce: the line naming the problem contains every one of `names`.
fn has_line(text: &str, severity: &str, names: &[&str]) -> bool {
    text.lines()
        .any(|line| line.starts_with(severity) && names.iter().all(|n| line.contains(n)))
}

/// Runs `setup` in a fresh root for staging, production and development and checks the outcome:
/// `Some(severity)` = the problem is reported with that severity (exit 78 for errors), `None` =
/// the configuration is clean.
fn rule(
    setup: impl Fn(&Root, &str),
    names: impl Fn(&str) -> Vec<String>,
    expected: [(&str, Option<&str>); 3],
) {
    for (environment, severity) in expected {
        let root = Root::new();
        setup(&root, environment);
        let (code, text) = root.check(environment);
        let names = names(environment);
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        match severity {
            Some("error") => {
                assert_eq!(code, 78, "{environment}:\n{text}");
                assert!(
                    has_line(&text, "error: ", &names),
                    "{environment}: {names:?}\n{text}"
                );
            }
            Some(_) => {
                assert_eq!(code, 0, "{environment}:\n{text}");
                assert!(
                    has_line(&text, "warning: ", &names),
                    "{environment}: {names:?}\n{text}"
                );
                assert!(!text.contains("error: "), "{environment}:\n{text}");
            }
            None => {
                assert_eq!(code, 0, "{environment}:\n{text}");
                assert!(
                    text.contains(&format!("configuration OK for {environment} (0 warnings)")),
                    "{environment}:\n{text}"
                );
            }
        }
    }
}

const STRICT_AND_DEV_WARNS: [(&str, Option<&str>); 3] = [
    ("staging", Some("error")),
    ("production", Some("error")),
    ("development", Some("warning")),
];

#[test]
fn a_clean_configuration_has_no_warnings_in_staging_and_production() {
    rule(
        clean,
        |_| vec![],
        [("staging", None), ("production", None), ("test", None)],
    );
}

#[test]
fn a_low_entropy_token_is_refused() {
    rule(
        |root, env| {
            env_file(
                root,
                env,
                &url(CANARY_PASSWORD, "sslmode=verify-full"),
                WEAK_TOKEN_CANARY,
                "",
            )
        },
        |env| {
            vec![
                "server.auth.token".into(),
                "too little entropy".into(),
                format!(".env.{env}:2"),
            ]
        },
        STRICT_AND_DEV_WARNS,
    );
}

#[test]
fn a_weak_previous_token_is_refused() {
    rule(
        |root, env| {
            env_file(
                root,
                env,
                &url(CANARY_PASSWORD, "sslmode=verify-full"),
                CANARY_TOKEN,
                &format!("MCP_AUTH_TOKEN_PREVIOUS={WEAK_TOKEN_CANARY}\n"),
            )
        },
        |env| {
            vec![
                "server.auth.previous_tokens".into(),
                "entry 1".into(),
                format!(".env.{env}:4"),
            ]
        },
        STRICT_AND_DEV_WARNS,
    );
}

#[test]
fn short_default_and_role_name_passwords_are_refused() {
    for (password, what) in [
        ("CanaryPw-short", "shorter than 20"),
        ("postgres", "well-known default"),
        ("mcp_user", "well-known default"),
    ] {
        rule(
            |root, env| {
                env_file(
                    root,
                    env,
                    &url(password, "sslmode=verify-full"),
                    CANARY_TOKEN,
                    "",
                )
            },
            |env| vec!["database.url".into(), what.into(), format!(".env.{env}:1")],
            STRICT_AND_DEV_WARNS,
        );
    }
}

#[test]
fn a_secret_in_the_tracked_config_file_is_refused() {
    rule(
        |root, env| {
            root.write(
                &format!(".env.{env}"),
                &format!(
                    "DATABASE_URL={}\nCOGMEM__SERVER__AUTH__REQUIRED=true\n",
                    url(CANARY_PASSWORD, "sslmode=verify-full")
                ),
                0o600,
            );
            let yaml = fs::read_to_string(root.path("config/config.yaml")).unwrap();
            let yaml = yaml.replacen(
                "  auth:\n    required: true\n",
                &format!("  auth:\n    required: true\n    token: {CANARY_TOKEN}\n"),
                1,
            );
            fs::write(root.path("config/config.yaml"), yaml).unwrap();
        },
        |_| {
            vec![
                "server.auth.token".into(),
                "tracked by version control".into(),
                "config/config.yaml:".into(),
            ]
        },
        STRICT_AND_DEV_WARNS,
    );
}

#[test]
fn a_password_bearing_url_in_the_tracked_config_file_is_refused() {
    rule(
        |root, env| {
            root.write(
                &format!(".env.{env}"),
                &format!("MCP_AUTH_TOKEN={CANARY_TOKEN}\nCOGMEM__SERVER__AUTH__REQUIRED=true\n"),
                0o600,
            );
            let yaml = fs::read_to_string(root.path("config/config.yaml")).unwrap();
            let yaml = yaml.replacen(
                "database:\n",
                &format!(
                    "database:\n  url: {}\n",
                    url(CANARY_PASSWORD, "sslmode=verify-full")
                ),
                1,
            );
            fs::write(root.path("config/config.yaml"), yaml).unwrap();
        },
        |_| {
            vec![
                "database.url".into(),
                "tracked by version control".into(),
                "config/config.yaml:10".into(),
            ]
        },
        STRICT_AND_DEV_WARNS,
    );
}

#[test]
fn configuration_writable_by_group_or_others_is_refused() {
    for (target, mode) in [
        ("config/config.yaml", 0o664),
        ("config", 0o777),
        (".env.ENV", 0o620),
    ] {
        rule(
            |root, env| {
                clean(root, env);
                let target = root.path(&target.replace("ENV", env));
                fs::set_permissions(&target, fs::Permissions::from_mode(mode)).unwrap();
            },
            |env| {
                let shown = root_relative(target, env);
                vec![shown, "writable by group or others".into()]
            },
            STRICT_AND_DEV_WARNS,
        );
    }
}

fn root_relative(target: &str, env: &str) -> String {
    format!("/{}", target.replace("ENV", env))
}

#[test]
fn secret_files_owned_by_someone_else_are_refused() {
    if rustix_is_root() {
        rule(
            |root, env| {
                clean(root, env);
                let path = root.path(&format!(".env.{env}"));
                let status = Command::new("chown")
                    .args(["65534", path.to_str().unwrap()])
                    .status()
                    .unwrap();
                assert!(status.success());
            },
            |env| vec![format!(".env.{env} is owned by uid 65534")],
            [
                ("staging", Some("error")),
                ("production", Some("error")),
                ("development", None),
            ],
        );
    } else {
        eprintln!("SKIP: changing a file's owner needs root; the rule is not exercised here");
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root: this test must not be skipped there"
        );
    }
}

fn rustix_is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1).map(|id| id == "0"))
        .unwrap_or(false)
}

#[test]
fn payload_logging_is_impossible_in_production_and_trace_warns() {
    rule(
        |root, env| {
            clean(root, env);
            let path = root.path(&format!(".env.{env}"));
            let mut text = fs::read_to_string(&path).unwrap();
            text.push_str("COGMEM__LOGGING__LOG_PAYLOADS=true\n");
            fs::write(path, text).unwrap();
        },
        |env| {
            vec![
                "logging.log_payloads".into(),
                "personal data".into(),
                format!(".env.{env}:4"),
            ]
        },
        [
            ("production", Some("error")),
            ("staging", None),
            ("development", None),
        ],
    );
    rule(
        |root, env| {
            clean(root, env);
            let path = root.path(&format!(".env.{env}"));
            let mut text = fs::read_to_string(&path).unwrap();
            text.push_str("LOG_LEVEL=trace\n");
            fs::write(path, text).unwrap();
        },
        |env| {
            vec![
                "logging.level".into(),
                "SQL statement".into(),
                format!(".env.{env}:4"),
            ]
        },
        [
            ("production", Some("warning")),
            ("staging", None),
            ("development", None),
        ],
    );
}

#[test]
fn tls_without_certificate_verification_warns_in_staging_and_fails_in_production() {
    // (sslmode=prefer may fall back to plain text: the first-line rule refuses it already.)
    for mode in ["require", "verify-ca"] {
        rule(
            |root, env| {
                env_file(
                    root,
                    env,
                    &url(CANARY_PASSWORD, &format!("sslmode={mode}")),
                    CANARY_TOKEN,
                    "",
                )
            },
            |env| {
                vec![
                    "database.url".into(),
                    format!("sslmode={mode}"),
                    "verify-full".into(),
                    "sslrootcert".into(),
                    format!(".env.{env}:1"),
                ]
            },
            [
                ("staging", Some("warning")),
                ("production", Some("error")),
                ("development", None),
            ],
        );
    }
    // Knowingly turned off: accepted.
    rule(
        |root, env| {
            env_file(
                root,
                env,
                &url(CANARY_PASSWORD, "sslmode=require"),
                CANARY_TOKEN,
                "COGMEM__DATABASE__TLS_VERIFY=false\n",
            )
        },
        |_| vec![],
        [("staging", None), ("production", None), ("test", None)],
    );
}

#[test]
fn plain_http_origins_warn_in_production() {
    rule(
        |root, env| {
            env_file(
                root,
                env,
                &url(CANARY_PASSWORD, "sslmode=verify-full"),
                CANARY_TOKEN,
                "COGMEM__SERVER__HTTP__ALLOWED_ORIGINS=[\"http://app.example\", \"https://ok.example\", \"http://localhost:3000\"]\n",
            )
        },
        |env| {
            vec![
                "server.http.allowed_origins".into(),
                "http://app.example is a plain http:// origin".into(),
                format!(".env.{env}:4"),
            ]
        },
        [
            ("production", Some("warning")),
            ("staging", None),
            ("development", None),
        ],
    );
}

#[test]
fn a_byte_order_mark_and_crlf_line_endings_are_read_correctly() {
    for environment in ["staging", "production", "development"] {
        let root = Root::new();
        let text = format!(
            "\u{feff}DATABASE_URL={}\r\nMCP_AUTH_TOKEN={CANARY_TOKEN}\r\nCOGMEM__SERVER__AUTH__REQUIRED=true\r\n",
            url(CANARY_PASSWORD, "sslmode=verify-full")
        );
        root.write(&format!(".env.{environment}"), &text, 0o600);
        let (code, text) = root.check(environment);
        assert_eq!(code, 0, "{environment}:\n{text}");
        assert!(text.contains("(0 warnings)"), "{environment}:\n{text}");
        let explain = Command::new(BIN)
            .args(["--env", environment, "config", "explain"])
            .env_clear()
            .env("COGMEM_CONFIG_ROOT", root.0.path())
            .output()
            .unwrap();
        let explained = String::from_utf8_lossy(&explain.stdout);
        assert!(
            explained.contains(&format!(
                "database.url = postgres://mcp_user@db.internal:5432/cognitive_memory?sslmode=verify-full  (secret)\n  from .env.{environment}:1"
            )) || explained.contains(&format!(".env.{environment}:1")),
            "{explained}"
        );
        assert!(!explained.contains('\r') && !explained.contains(CANARY_TOKEN));
    }
}
