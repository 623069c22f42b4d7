//! Loading through every layer with a small schema: precedence, provenance, and problem reports.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use config_core::{Config, ConfigEnum, EnvSnapshot, LoadFailure, LoadOptions, Loaded, Severity};
use secrecy::{ExposeSecret, SecretString};

#[derive(Debug, Config)]
struct Service {
    /// Storage.
    #[config(section)]
    store: Store,
    /// Output mode.
    #[config(default = "plain")]
    mode: Mode,
    /// Allowed peers.
    #[config(default = "[]")]
    peers: Vec<String>,
    /// Optional key.
    #[config(alias = "EXTRA_KEY")]
    extra: Option<SecretString>,
}

#[derive(Debug, Config)]
struct Store {
    /// Connection URL.
    #[config(alias = "STORE_URL", redact = "url")]
    url: SecretString,
    /// Pool size.
    #[config(default = "1")]
    size: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, ConfigEnum)]
enum Mode {
    Plain,
    Fancy,
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn write(&self, name: &str, content: &str) -> &Self {
        let path = self.dir.path().join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        self
    }

    fn load(
        &self,
        flag: Option<&str>,
        env: &[(&str, &str)],
    ) -> Result<Loaded<Service>, LoadFailure> {
        let env: EnvSnapshot = env.iter().copied().collect();
        config_core::load::<Service>(&LoadOptions {
            root: self.dir.path(),
            config_file: Path::new("config.yaml"),
            prefix: "SVC",
            environment_var: "ENVIRONMENT",
            environment_flag: flag,
            env: &env,
        })
    }
}

fn source_of(loaded: &Loaded<Service>, key: &str) -> String {
    loaded.resolution.values[key].source.to_string()
}

fn messages(failure: &LoadFailure) -> String {
    failure.report.to_string()
}

/// One fixture that sets `store.size` in every layer up to `upto`, so each adjacent pair can be compared.
fn layered(upto: usize) -> (Fixture, Vec<(&'static str, &'static str)>) {
    let fx = Fixture::new();
    let mut yaml = String::from("store:\n  url: postgres://u@localhost/db\n");
    if upto >= 1 {
        yaml += "  size: 1\n";
    }
    yaml += "test:\n  store:\n    size: 99\n";
    if upto >= 2 {
        yaml += "production:\n  store:\n    size: 2\n";
    }
    fx.write("config.yaml", &yaml);
    if upto >= 3 {
        fx.write(".env", "SVC__STORE__SIZE=3\n");
    }
    if upto >= 4 {
        fx.write(".env.production", "# comment\nSVC__STORE__SIZE=4\n");
    }
    let mut env = vec![];
    if upto >= 5 {
        env.push(("SVC__STORE__SIZE", "5"));
    }
    (fx, env)
}

#[test]
fn each_layer_beats_the_one_below() {
    let expected = [
        (0, 1, "default"),
        (1, 1, "config.yaml:3"),
        (2, 2, "config.yaml:9 [production]"),
        (3, 3, ".env:1"),
        (4, 4, ".env.production:2"),
        (5, 5, "env SVC__STORE__SIZE"),
    ];
    for (upto, size, source) in expected {
        let (fx, env) = layered(upto);
        let loaded = fx.load(Some("production"), &env).unwrap();
        assert_eq!(loaded.config.store.size, size, "layer {upto}");
        let shown = source_of(&loaded, "store.size");
        assert!(
            shown.ends_with(source),
            "layer {upto}: {shown} should end with {source}"
        );
        // The other environment's section (test: size 99) is never applied.
        assert_eq!(
            loaded.resolution.values["store.size"].overridden.len(),
            upto,
            "layer {upto}"
        );
    }
}

#[test]
fn secret_files_beat_env_files_and_credentials_work() {
    let fx = Fixture::new();
    fx.write(
        ".env.production",
        "STORE_URL=postgres://u:from-file@localhost/db\n",
    );
    fx.write(
        "secrets/store",
        "postgres://u:from-secret-file@localhost/db\n",
    );
    let file = fx.dir.path().join("secrets/store");
    let loaded = fx
        .load(
            Some("production"),
            &[("STORE_URL_FILE", file.to_str().unwrap())],
        )
        .unwrap();
    assert_eq!(
        loaded.config.store.url.expose_secret(),
        "postgres://u:from-secret-file@localhost/db"
    );
    assert!(
        loaded.resolution.values["store.url"].overridden[0]
            .to_string()
            .ends_with("/.env.production:1")
    );

    fx.write("creds/store-url", "postgres://u:cred@localhost/db");
    let creds = fx.dir.path().join("creds");
    let loaded = fx
        .load(
            Some("production"),
            &[("CREDENTIALS_DIRECTORY", creds.to_str().unwrap())],
        )
        .unwrap();
    assert_eq!(
        loaded.config.store.url.expose_secret(),
        "postgres://u:cred@localhost/db"
    );
    assert_eq!(source_of(&loaded, "store.url"), "credential store-url");
}

#[test]
fn a_variable_and_its_file_together_is_an_error_naming_both() {
    let fx = Fixture::new();
    fx.write("secret", "postgres://u:a@localhost/db");
    let file = fx.dir.path().join("secret");
    let failure = fx
        .load(
            Some("test"),
            &[
                ("STORE_URL", "postgres://u:b@localhost/db"),
                ("STORE_URL_FILE", file.to_str().unwrap()),
            ],
        )
        .unwrap_err();
    let text = messages(&failure);
    assert!(
        text.contains("env STORE_URL") && text.contains("STORE_URL_FILE"),
        "{text}"
    );
}

#[test]
fn two_names_for_one_key_in_one_layer_is_an_error() {
    let fx = Fixture::new();
    let failure = fx
        .load(
            Some("test"),
            &[
                ("STORE_URL", "postgres://a@localhost/a"),
                ("SVC__STORE__URL", "postgres://b@localhost/b"),
            ],
        )
        .unwrap_err();
    let text = messages(&failure);
    assert!(
        text.contains("set twice")
            && text.contains("STORE_URL")
            && text.contains("SVC__STORE__URL"),
        "{text}"
    );
}

#[test]
fn values_are_typed_by_the_schema() {
    let fx = Fixture::new();
    let loaded = fx
        .load(
            Some("test"),
            &[
                ("STORE_URL", "postgres://u@localhost/db"),
                ("SVC__PEERS", r#"["https://a.example"]"#),
                ("SVC__MODE", "FANCY"),
                ("EXTRA_KEY", "123"),
            ],
        )
        .unwrap();
    assert_eq!(loaded.config.peers, ["https://a.example"]);
    assert_eq!(loaded.config.mode, Mode::Fancy);
    assert_eq!(loaded.config.extra.as_ref().unwrap().expose_secret(), "123");

    let failure = fx
        .load(
            Some("test"),
            &[
                ("STORE_URL", "postgres://u@localhost/db"),
                ("SVC__STORE__SIZE", "many"),
                ("SVC__MODE", "fancyy"),
            ],
        )
        .unwrap_err();
    let text = messages(&failure);
    assert!(text.contains("store.size: expected an integer"), "{text}");
    assert!(text.contains(r#"did you mean "fancy"?"#), "{text}");
}

#[test]
fn interpolation_reads_process_env_and_earlier_definitions_and_names_undefined_ones() {
    let fx = Fixture::new();
    fx.write(".env", "DB_HOST=db.local\n");
    fx.write(
        ".env.staging",
        "PGUSER=app\nSTORE_URL=postgres://${PGUSER}:${PGPASSWORD}@${DB_HOST}/db?sslmode=require\n",
    );
    fx.write("config.yaml", "peers: [\"https://${DB_HOST}\"]\n");
    let loaded = fx.load(Some("staging"), &[("PGPASSWORD", "pw")]).unwrap();
    assert_eq!(
        loaded.config.store.url.expose_secret(),
        "postgres://app:pw@db.local/db?sslmode=require"
    );
    assert_eq!(loaded.config.peers, ["https://db.local"]);

    let failure = fx.load(Some("staging"), &[]).unwrap_err();
    let text = messages(&failure);
    assert!(
        text.contains("${PGPASSWORD} is not defined") && text.contains(".env.staging:2"),
        "{text}"
    );
}

#[test]
fn unknown_keys_and_variables_get_suggestions() {
    let fx = Fixture::new();
    fx.write(
        "config.yaml",
        "stor:\n  size: 2\nproduction:\n  store:\n    sise: 3\n",
    );
    let failure = fx
        .load(
            Some("test"),
            &[
                ("STORE_URL", "postgres://u@localhost/db"),
                ("SVC__STORE__SIZ", "4"),
            ],
        )
        .unwrap_err();
    let text = messages(&failure);
    assert!(
        text.contains(r#"error: stor: unknown key (did you mean "store"?) ["#)
            && text.contains("/config.yaml:1]"),
        "{text}"
    );
    assert!(
        text.contains(r#"store.sise: unknown key (did you mean "size"?) ["#)
            && text.contains("/config.yaml:5 [production]]"),
        "{text}"
    );
    assert!(
        text.contains(
            "warning: SVC__STORE__SIZ: unknown variable, ignored (did you mean SVC__STORE__SIZE?)"
        ),
        "{text}"
    );
}

#[test]
fn operators_can_require_optional_keys_per_environment() {
    let fx = Fixture::new();
    fx.write("config.yaml", "production:\n  require: [EXTRA_KEY]\n");
    let base = [("STORE_URL", "postgres://u@localhost/db?sslmode=require")];
    assert!(fx.load(Some("staging"), &base).is_ok());
    let failure = fx.load(Some("production"), &base).unwrap_err();
    assert_eq!(
        failure.report.required_keys().collect::<Vec<_>>(),
        ["extra"]
    );
    let text = messages(&failure);
    assert!(
        text.contains("extra: required here by ")
            && text.contains("config.yaml:2 [production] but not set"),
        "{text}"
    );
    let mut with_key = base.to_vec();
    with_key.push(("EXTRA_KEY", "k-1"));
    assert!(fx.load(Some("production"), &with_key).is_ok());
}

#[test]
fn strictness_depends_on_the_environment() {
    let fx = Fixture::new();
    fx.write(".env.production", "STORE_URL=<your-store-url-here>\n");
    fx.write(".env.development", "STORE_URL=<your-store-url-here>\n");
    fs::set_permissions(
        fx.dir.path().join(".env.development"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let text = messages(&fx.load(Some("production"), &[]).unwrap_err());
    assert!(
        text.contains(
            "error: store.url: STORE_URL looks like a placeholder; put the real value there ["
        ) && text.contains("/.env.production:1]"),
        "{text}"
    );

    let loaded = fx.load(Some("development"), &[]).unwrap();
    let warnings: Vec<String> = loaded
        .resolution
        .report
        .warnings()
        .map(ToString::to_string)
        .collect();
    assert!(
        warnings.iter().any(|w| w.contains("placeholder")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("/.env.development is accessible by group or others (mode 0644)")),
        "{warnings:?}"
    );
    assert!(
        loaded
            .resolution
            .report
            .problems
            .iter()
            .all(|p| p.severity == Severity::Warning)
    );
}

#[test]
fn every_problem_is_reported_in_one_run() {
    let fx = Fixture::new();
    fx.write("config.yaml", "stor: {}\nmode: loud\npeers: nope\n");
    fx.write(".env.test", "BROKEN LINE\nSVC__STORE__SIZE=-1\n");
    let failure = fx.load(Some("test"), &[]).unwrap_err();
    let errors: Vec<String> = failure.report.errors().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 6, "{errors:#?}");
    for needle in [
        "stor: unknown key",
        "mode: expected one of plain, fancy",
        "peers: expected a JSON array",
        ".env.test:1",
        "store.size: expected an integer",
        "store.url: required value is missing",
    ] {
        assert!(
            errors.iter().any(|e| e.contains(needle)),
            "{needle} missing in {errors:#?}"
        );
    }
}

#[test]
fn environment_selection() {
    let fx = Fixture::new();
    let url = ("STORE_URL", "postgres://u@localhost/db");
    let loaded = fx
        .load(Some("test"), &[url, ("ENVIRONMENT", "production")])
        .unwrap();
    assert_eq!(loaded.resolution.environment.as_str(), "test");
    let loaded = fx.load(None, &[url]).unwrap();
    assert_eq!(loaded.resolution.environment.as_str(), "development");
    assert!(
        loaded
            .resolution
            .report
            .warnings()
            .any(|w| w.message.contains("assuming development"))
    );
    let failure = fx.load(None, &[url, ("ENVIRONMENT", "")]).unwrap_err();
    assert!(failure.resolution.is_none());
    assert!(messages(&failure).contains("must be one of development, test, staging, production"));
}
