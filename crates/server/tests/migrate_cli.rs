//! `cognitive-memory-mcp migrate` against a real PostgreSQL cluster: stamping, applying,
//! refusing another environment's database, and the exit code for an unreachable server.

use std::path::Path;
use std::process::{Command, Output};

use pg_harness::TestCluster;

const BIN: &str = env!("CARGO_BIN_EXE_cognitive-memory-mcp");
const TOKEN: &str = "migrate-test-token-0123456789";

fn config_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    let repo_config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/config.yaml");
    std::fs::copy(repo_config, dir.path().join("config/config.yaml")).unwrap();
    dir
}

fn migrate(root: &Path, env: &str, url: &str, extra: &[&str]) -> Output {
    Command::new(BIN)
        .args(["--env", env, "migrate"])
        .args(extra)
        .env_clear()
        .env("COGMEM_CONFIG_ROOT", root)
        .env("DATABASE_URL", url)
        .env("MCP_AUTH_TOKEN", TOKEN)
        .output()
        .unwrap()
}

fn text(output: &Output) -> (i32, String, String) {
    (
        output.status.code().unwrap(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_new_database_is_stamped_then_migrated_and_a_second_run_does_nothing() {
    let db = TestCluster::shared().fresh_database().await.unwrap();
    let root = config_root();

    let (code, _, err) = text(&migrate(root.path(), "development", &db.url, &[]));
    assert_eq!(code, 78, "{err}");
    assert!(
        err.contains("migrate --stamp"),
        "an unstamped database names the fix: {err}"
    );

    let (code, out, err) = text(&migrate(
        root.path(),
        "development",
        &db.url,
        &["--dry-run", "--stamp"],
    ));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("would stamp") && out.contains("pending: V1__initial_schema"),
        "{out}"
    );

    let (code, out, err) = text(&migrate(root.path(), "development", &db.url, &["--stamp"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("stamped for development; applied V1__initial_schema"),
        "{out}"
    );

    let (code, out, _) = text(&migrate(root.path(), "development", &db.url, &[]));
    assert_eq!(code, 0);
    assert!(out.contains("schema up to date"), "{out}");
    let (code, out, _) = text(&migrate(
        root.path(),
        "development",
        &db.url,
        &["--dry-run"],
    ));
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "no pending migrations");
}

#[tokio::test]
async fn a_database_stamped_for_production_is_refused_by_development() {
    let db = TestCluster::shared().fresh_database().await.unwrap();
    let root = config_root();
    let (code, _, err) = text(&migrate(root.path(), "production", &db.url, &["--stamp"]));
    assert_eq!(code, 0, "{err}");

    let (code, _, err) = text(&migrate(root.path(), "development", &db.url, &[]));
    assert_eq!(code, 78, "{err}");
    assert!(
        err.contains("production") && err.contains("development") && err.contains(&db.name),
        "{err}"
    );
    // Stamping it over is refused as well.
    let (code, _, err) = text(&migrate(root.path(), "development", &db.url, &["--stamp"]));
    assert_eq!(code, 78, "{err}");
}

#[test]
fn an_unreachable_database_exits_75_after_the_connect_wait_without_leaking_the_password() {
    let root = config_root();
    let canary = "UnreachableCanary-93c1";
    let output = Command::new(BIN)
        .args(["--env", "development", "migrate"])
        .env_clear()
        .env("COGMEM_CONFIG_ROOT", root.path())
        .env(
            "DATABASE_URL",
            format!("postgres://mcp_user_dev:{canary}@127.0.0.1:9/cognitive_memory_dev"),
        )
        .env("COGMEM__DATABASE__CONNECT_WAIT_SECS", "1")
        .output()
        .unwrap();
    let (code, out, err) = text(&output);
    assert_eq!(code, 75, "{err}");
    assert!(
        err.matches("waiting for the database").count() >= 2,
        "progress is reported: {err}"
    );
    assert!(!out.contains(canary) && !err.contains(canary), "{err}");
}
