//! The `config` commands of the built binary: acceptance cases of the configuration layer,
//! run as an operator would run them, with a clean process environment.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_cognitive-memory-mcp");
/// Unique values that must never appear in any output.
const CANARY_PASSWORD: &str = "CanaryPw-7f3a9c1e5b2d80469e";
const CANARY_TOKEN: &str = "CanaryToken-b62d04e81f5a4c37";

struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    /// A configuration root holding the repository's real `config/config.yaml`.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let repo_config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/config.yaml");
        fs::create_dir_all(dir.path().join("config")).unwrap();
        fs::copy(repo_config, dir.path().join("config/config.yaml")).unwrap();
        Root { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, content: &str, mode: u32) -> &Self {
        let path = self.path(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        self
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let output = Command::new(BIN)
            .args(args)
            .env_clear()
            .env("COGMEM_CONFIG_ROOT", self.dir.path())
            .envs(env.iter().copied())
            .output()
            .unwrap();
        Run(output)
    }
}

struct Run(Output);

impl Run {
    fn code(&self) -> i32 {
        self.0.status.code().expect("exited normally")
    }
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    fn all(&self) -> String {
        self.stdout() + &self.stderr()
    }
}

fn prod_url() -> String {
    format!(
        "postgres://mcp_user:{CANARY_PASSWORD}@db.internal:5432/cognitive_memory?sslmode=verify-full"
    )
}

fn valid_production(root: &Root) {
    let content = format!(
        "# production secrets\nDATABASE_URL={}\nMCP_AUTH_TOKEN={CANARY_TOKEN}\n",
        prod_url()
    );
    root.write(".env.production", &content, 0o600);
}

#[test]
fn invalid_environment_lists_allowed_values_and_suggests_the_nearest() {
    let run = Root::new().run(&["config", "check"], &[("ENVIRONMENT", "prod")]);
    assert_eq!(run.code(), 78);
    let err = run.stderr();
    assert!(
        err.contains("must be one of development, test, staging, production"),
        "{err}"
    );
    assert!(err.contains(r#"did you mean "production"?"#), "{err}");
}

#[test]
fn env_file_mode_is_enforced_in_production() {
    let root = Root::new();
    valid_production(&root);
    fs::set_permissions(
        root.path(".env.production"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let run = root.run(&["--env", "production", "config", "check"], &[]);
    assert_eq!(run.code(), 78, "{}", run.all());
    assert!(
        run.stderr()
            .contains(".env.production is accessible by group or others (mode 0644)"),
        "{}",
        run.stderr()
    );

    fs::set_permissions(
        root.path(".env.production"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let run = root.run(&["--env", "production", "config", "check"], &[]);
    assert_eq!(run.code(), 0, "{}", run.all());
    assert!(!run.all().contains("accessible by group"));
    assert!(run.stdout().contains("configuration OK for production"));
}

#[test]
fn placeholder_is_an_error_in_production_and_a_warning_in_development() {
    let root = Root::new();
    let content =
        format!("MCP_AUTH_TOKEN={CANARY_TOKEN}\n\nDATABASE_URL=<your-database-url-here>\n");
    root.write(".env.production", &content, 0o600);
    root.write(
        ".env.development",
        "DATABASE_URL=<your-database-url-here>\n",
        0o600,
    );
    let run = root.run(&["--env", "production", "config", "check"], &[]);
    assert_eq!(run.code(), 78);
    assert!(
        run.stderr()
            .contains("DATABASE_URL looks like a placeholder"),
        "{}",
        run.stderr()
    );
    assert!(
        run.stderr().contains(".env.production:3]"),
        "{}",
        run.stderr()
    );

    let run = root.run(&["--env", "development", "config", "check"], &[]);
    assert_eq!(run.code(), 0, "{}", run.all());
    assert!(
        run.stderr()
            .contains("warning: database.url: DATABASE_URL looks like a placeholder"),
        "{}",
        run.stderr()
    );
}

#[test]
fn explain_shows_sources_overrides_and_hides_passwords() {
    let root = Root::new();
    valid_production(&root);
    let run = root.run(&["--env", "production", "config", "explain"], &[]);
    assert_eq!(run.code(), 0, "{}", run.all());
    let out = run.stdout();
    assert!(out.contains("database.url = postgres://mcp_user@db.internal:5432/cognitive_memory?sslmode=verify-full  (secret)"), "{out}");
    assert!(out.contains(".env.production:2\n"), "{out}");
    assert!(
        out.contains("server.rate_limit.requests_per_minute = 60\n    from config/config.yaml:")
            || out.contains("[production]"),
        "{out}"
    );

    let other = "postgres://mcp_user:other@localhost:5432/cognitive_memory";
    let run = root.run(
        &["--env", "production", "config", "explain"],
        &[("DATABASE_URL", other)],
    );
    let out = run.stdout();
    let block = out
        .split("\n\n")
        .find(|b| b.starts_with("database.url ="))
        .unwrap();
    assert!(block.contains("from env DATABASE_URL"), "{block}");
    assert!(
        block.contains("overrides ") && block.contains(".env.production:2"),
        "{block}"
    );
    assert!(!out.contains("other@"), "{out}");
}

#[test]
fn a_variable_and_its_file_together_are_refused_and_credentials_work() {
    let root = Root::new();
    root.write("secrets/db", &prod_url(), 0o600);
    root.write("creds/database-url", &format!("{}\n", prod_url()), 0o400);
    root.write("creds/mcp-auth-token", CANARY_TOKEN, 0o400);
    let secret = root.path("secrets/db");
    let run = root.run(
        &["--env", "production", "config", "check"],
        &[
            ("DATABASE_URL", &prod_url()),
            ("DATABASE_URL_FILE", secret.to_str().unwrap()),
            ("MCP_AUTH_TOKEN", CANARY_TOKEN),
        ],
    );
    assert_eq!(run.code(), 78);
    assert!(
        run.stderr().contains("env DATABASE_URL") && run.stderr().contains("DATABASE_URL_FILE"),
        "{}",
        run.stderr()
    );

    let creds = root.path("creds");
    let run = root.run(
        &["--env", "production", "config", "explain"],
        &[("CREDENTIALS_DIRECTORY", creds.to_str().unwrap())],
    );
    assert_eq!(run.code(), 0, "{}", run.all());
    assert!(
        run.stdout().contains("from credential database-url"),
        "{}",
        run.stdout()
    );
    assert!(
        run.stdout().contains("from credential mcp-auth-token"),
        "{}",
        run.stdout()
    );
}

#[test]
fn a_typo_is_named_with_a_suggestion_and_all_problems_come_at_once() {
    let root = Root::new();
    let yaml = fs::read_to_string(root.path("config/config.yaml")).unwrap();
    root.write(
        "config/config.yaml",
        &format!("databse:\n  pool: {{}}\n{yaml}"),
        0o644,
    );
    let run = root.run(&["--env", "production", "config", "check"], &[]);
    assert_eq!(run.code(), 78);
    assert!(
        run.stderr()
            .contains(r#"databse: unknown key (did you mean "database"?)"#),
        "{}",
        run.stderr()
    );

    // Five different problems in one run (plus the typo above), each in its own section.
    root.write(
        ".env.production",
        "DATABASE_URL=postgres://u:p@db.example/x\nCOGMEM__SERVER__HTTP__BIND=everywhere\nLOG_LEVEL=loud\nCOGMEM__MEMORY__SEARCH__MAX_LIMIT=0\n",
        0o600,
    );
    let run = root.run(&["--env", "production", "config", "check"], &[]);
    assert_eq!(run.code(), 78);
    let err = run.stderr();
    for needle in [
        "databse: unknown key",
        "server.http.bind: expected an IP address and port",
        "logging.level: expected one of error, warn, info, debug, trace",
        "database.url: connects to a remote host without TLS",
        "memory.search.default_limit: must be between 1 and search.max_limit (0)",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

#[test]
fn production_refuses_to_run_without_authentication() {
    let root = Root::new();
    root.write(
        ".env.production",
        &format!("DATABASE_URL={}\n", prod_url()),
        0o600,
    );
    let run = root.run(&["--env", "production", "config", "check"], &[]);
    assert_eq!(run.code(), 78);
    assert!(
        run.stderr()
            .contains("server.auth.token: required while server.auth.required is true"),
        "{}",
        run.stderr()
    );
    let run = root.run(
        &["--env", "production", "config", "check"],
        &[("COGMEM__SERVER__AUTH__REQUIRED", "false")],
    );
    assert_eq!(run.code(), 78);
    assert!(run.stderr().contains("server.auth.required: authentication cannot be disabled in production [env COGMEM__SERVER__AUTH__REQUIRED]"), "{}", run.stderr());
    let run = root.run(
        &["--env", "development", "config", "check"],
        &[
            ("DATABASE_URL", &prod_url()),
            ("COGMEM__SERVER__HTTP__BIND", "0.0.0.0:8765"),
        ],
    );
    assert_eq!(run.code(), 78);
    assert!(run.stderr().contains("authentication cannot be disabled while server.http.bind (0.0.0.0:8765) is not a loopback address"), "{}", run.stderr());
}

#[test]
fn an_undefined_reference_names_file_and_line() {
    let root = Root::new();
    root.write(
        ".env.production",
        &format!("MCP_AUTH_TOKEN={CANARY_TOKEN}\nDATABASE_URL=postgres://mcp_user:${{PGPASSWORD}}@localhost/cognitive_memory\n"),
        0o600,
    );
    let run = root.run(&["--env", "production", "config", "check"], &[]);
    assert_eq!(run.code(), 78);
    assert!(
        run.stderr().contains("${PGPASSWORD} is not defined"),
        "{}",
        run.stderr()
    );
    assert!(
        run.stderr().contains(".env.production:2]"),
        "{}",
        run.stderr()
    );
    let run = root.run(
        &["--env", "production", "config", "check"],
        &[("PGPASSWORD", CANARY_PASSWORD)],
    );
    assert_eq!(run.code(), 0, "{}", run.all());
}

#[test]
fn the_committed_template_is_what_the_schema_generates() {
    let run = Root::new().run(&["config", "template"], &[]);
    assert_eq!(run.code(), 0);
    let committed =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.env.template"))
            .unwrap();
    assert!(
        run.stdout() == committed,
        ".env.template is stale: regenerate it with `cargo run -p cognitive-memory-mcp -- config template > .env.template`"
    );
}

#[test]
fn canary_secrets_appear_in_no_output() {
    let root = Root::new();
    root.write("creds/database-url", &prod_url(), 0o400);
    let broken: &[(&str, String)] = &[
        (
            "valid",
            format!(
                "DATABASE_URL={}\nMCP_AUTH_TOKEN={CANARY_TOKEN}\n",
                prod_url()
            ),
        ),
        (
            "not a url",
            format!("DATABASE_URL={CANARY_PASSWORD}\nMCP_AUTH_TOKEN={CANARY_TOKEN}\n"),
        ),
        (
            "short token",
            format!(
                "DATABASE_URL={}\nMCP_AUTH_TOKEN={}\n",
                prod_url(),
                &CANARY_TOKEN[..12]
            ),
        ),
        (
            "syntax",
            format!("DATABASE_URL {CANARY_PASSWORD}\nMCP_AUTH_TOKEN=\"{CANARY_TOKEN}\n"),
        ),
        (
            "undefined ref",
            format!("DATABASE_URL=postgres://u:{CANARY_PASSWORD}${{NOPE}}@localhost/db\n"),
        ),
        (
            "bad list",
            format!(
                "COGMEM__SERVER__HTTP__ALLOWED_ORIGINS={CANARY_TOKEN}\nDATABASE_URL={}\n",
                prod_url()
            ),
        ),
        (
            "duplicate",
            format!(
                "DATABASE_URL={}\nCOGMEM__DATABASE__URL={}\nMCP_AUTH_TOKEN={CANARY_TOKEN}\n",
                prod_url(),
                prod_url()
            ),
        ),
        (
            "placeholder pw",
            format!("DATABASE_URL=postgres://u:changeme@db/x\nMCP_AUTH_TOKEN={CANARY_TOKEN}\n"),
        ),
        (
            "secret as number",
            format!(
                "DATABASE_URL={}\nCOGMEM__SERVER__SHUTDOWN_GRACE_SECS={CANARY_TOKEN}\n",
                prod_url()
            ),
        ),
    ];
    let creds = root.path("creds");
    let file_env = [
        ("DATABASE_URL", prod_url()),
        ("CREDENTIALS_DIRECTORY", creds.to_str().unwrap().to_owned()),
    ];
    let mut runs = 0;
    for (case, content) in broken {
        root.write(".env.production", content, 0o600);
        for env in ["production", "development", "staging"] {
            for args in [
                &["config", "check"][..],
                &["config", "explain"],
                &["config", "template"],
            ] {
                let mut full = vec!["--env", env];
                full.extend_from_slice(args);
                for extra in [&[][..], &file_env[..]] {
                    let extra: Vec<(&str, &str)> =
                        extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    let run = root.run(&full, &extra);
                    let all = run.all();
                    runs += 1;
                    for canary in [CANARY_PASSWORD, CANARY_TOKEN, &CANARY_TOKEN[..12]] {
                        assert!(
                            !all.contains(canary),
                            "case {case:?}, {full:?}: canary {canary} leaked:\n{all}"
                        );
                    }
                }
            }
        }
    }
    println!("canary scan: {runs} runs of check/explain/template, 0 canary occurrences");
}

#[test]
fn telemetry_settings_are_validated_and_the_endpoint_never_echoed() {
    let root = Root::new();
    valid_production(&root);
    let run = root.run(&["--env", "production", "config", "check"], &[]);
    assert_eq!(run.code(), 0, "{}", run.all());
    // Plain http to a remote collector, with a token in the URL, and a ratio above 1.
    let endpoint = format!("http://{CANARY_TOKEN}@otel.example:4318");
    let run = root.run(
        &["--env", "production", "config", "check"],
        &[
            ("COGMEM__TELEMETRY__TRACES__ENDPOINT", &endpoint),
            ("COGMEM__TELEMETRY__TRACES__SAMPLE_RATIO", "1.5"),
        ],
    );
    assert_eq!(run.code(), 78);
    let stderr = run.stderr();
    assert!(
        stderr.contains("telemetry.traces.endpoint: must use https in production unless the collector is on loopback"),
        "{stderr}"
    );
    assert!(
        stderr.contains("telemetry.traces.sample_ratio: must be from 0 to 1"),
        "{stderr}"
    );
    assert!(!run.all().contains(CANARY_TOKEN), "{}", run.all());
    // Loopback over http and https anywhere are fine; so is http outside production.
    for (environment, endpoint) in [
        ("production", "http://127.0.0.1:4318"),
        ("production", "https://otel.example"),
        ("staging", "http://otel.example:4318"),
    ] {
        let run = root.run(
            &["--env", environment, "config", "check"],
            &[
                ("COGMEM__TELEMETRY__TRACES__ENDPOINT", endpoint),
                ("DATABASE_URL", &prod_url()),
                ("MCP_AUTH_TOKEN", CANARY_TOKEN),
            ],
        );
        assert!(
            !run.stderr().contains("telemetry.traces.endpoint"),
            "{environment} {endpoint}: {}",
            run.stderr()
        );
    }
    let run = root.run(
        &["--env", "development", "config", "check"],
        &[("COGMEM__TELEMETRY__TRACES__ENDPOINT", "otel.example:4318")],
    );
    assert_eq!(run.code(), 78);
    assert!(
        run.stderr().contains("telemetry.traces.endpoint"),
        "{}",
        run.stderr()
    );
}

#[test]
fn write_batch_settings_out_of_range_are_named_with_their_source() {
    let root = Root::new();
    valid_production(&root);
    let run = root.run(
        &["--env", "production", "config", "check"],
        &[
            ("COGMEM__MEMORY__WRITE_BATCH__MAX_BATCH", "0"),
            ("COGMEM__MEMORY__WRITE_BATCH__MAX_WAIT_MS", "500"),
            ("COGMEM__MEMORY__WRITE_BATCH__WRITERS", "17"),
        ],
    );
    assert_eq!(run.code(), 78, "{}", run.all());
    let err = run.stderr();
    for needle in [
        "memory.write_batch.max_batch: must be between 1 and 1000",
        "memory.write_batch.max_wait_ms: must be between 0 and 100",
        "memory.write_batch.writers: must be between 1 and 16",
        "COGMEM__MEMORY__WRITE_BATCH__MAX_WAIT_MS",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    let run = root.run(
        &["--env", "production", "config", "check"],
        &[
            ("COGMEM__MEMORY__WRITE_BATCH__MAX_BATCH", "128"),
            ("COGMEM__MEMORY__WRITE_BATCH__QUEUE", "64"),
        ],
    );
    assert_eq!(run.code(), 78, "{}", run.all());
    assert!(
        run.stderr()
            .contains("memory.write_batch.queue: must be between write_batch.max_batch (128)"),
        "{}",
        run.stderr()
    );
    let run = root.run(
        &["--env", "production", "config", "check"],
        &[
            ("COGMEM__MEMORY__WRITE_BATCH__MAX_BATCH", "16"),
            ("COGMEM__MEMORY__WRITE_BATCH__MAX_WAIT_MS", "2"),
            ("COGMEM__MEMORY__WRITE_BATCH__WRITERS", "4"),
        ],
    );
    assert_eq!(run.code(), 0, "{}", run.all());
}

#[test]
fn search_settings_out_of_range_are_named_with_their_source() {
    let root = Root::new();
    valid_production(&root);
    let run = root.run(
        &["--env", "production", "config", "check"],
        &[
            (
                "COGMEM__MEMORY__SEARCH__LANGUAGES",
                r#"["english", "french"]"#,
            ),
            ("COGMEM__MEMORY__SEARCH__RECENCY_WEIGHT", "2"),
            ("COGMEM__MEMORY__SEARCH__RECENCY_HALF_LIFE_DAYS", "0"),
            ("COGMEM__MEMORY__SEARCH__IMPORTANCE_WEIGHT", "-0.5"),
        ],
    );
    assert_eq!(run.code(), 78, "{}", run.all());
    let err = run.stderr();
    for needle in [
        "memory.search.languages[1]: must be one of english, german",
        "memory.search.recency_weight: must be from 0 to 1",
        "memory.search.recency_half_life_days: must be more than 0",
        "memory.search.importance_weight: must be from 0 to 1",
        "COGMEM__MEMORY__SEARCH__RECENCY_WEIGHT",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    assert!(!err.contains("french"), "no value is echoed:\n{err}");

    let run = root.run(
        &["--env", "production", "config", "check"],
        &[("COGMEM__MEMORY__SEARCH__LANGUAGES", r#"["german"]"#)],
    );
    assert_eq!(run.code(), 0, "{}", run.all());
}
