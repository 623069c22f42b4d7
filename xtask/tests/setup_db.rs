//! Runs the real `xtask` binary against a temporary repository root (a copy of
//! `config/config.yaml`) and a throwaway cluster of its own per test: environment database names
//! are fixed, so tests must not share a server.

#[path = "support/run.rs"]
mod run;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use config_core::Environment;
use pg_harness::TestCluster;
use run::Run;
use secrecy::SecretString;

const TOKEN: &str = "a-test-token-of-more-than-16-chars";

struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    fn new() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        // The server's own user (when tests run as root) must be able to traverse it.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir(dir.path().join("config")).unwrap();
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        fs::copy(
            workspace.join("config/config.yaml"),
            dir.path().join("config/config.yaml"),
        )
        .unwrap();
        Repo { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn env_file(&self, environment: &str) -> PathBuf {
        self.root().join(format!(".env.{environment}"))
    }

    fn xtask(&self, args: &[&str], vars: &[(&str, &str)]) -> Run {
        run::xtask(self.root(), args, vars)
    }

    fn setup(&self, cluster: &TestCluster, environment: &str, extra: &[&str]) -> Run {
        self.setup_with(cluster, environment, extra, &[])
    }

    fn setup_with(
        &self,
        cluster: &TestCluster,
        environment: &str,
        extra: &[&str],
        vars: &[(&str, &str)],
    ) -> Run {
        let admin_url = cluster.admin_url("postgres");
        let mut args = vec!["setup-db", "--env", environment, "--admin-url", &admin_url];
        args.extend_from_slice(extra);
        self.xtask(&args, vars)
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn database_url(env_file: &Path) -> String {
    fs::read_to_string(env_file)
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("DATABASE_URL="))
        .expect("a DATABASE_URL line")
        .to_owned()
}

fn config(url: &str) -> db::DatabaseConfig {
    db::DatabaseConfig {
        url: SecretString::from(url.to_owned()),
        migration_url: None,
        prepared_statements: true,
        ssl_root_cert: None,
        pool: db::PoolConfig {
            min_connections: 0,
            max_connections: 1,
            max_lifetime_secs: 1800,
        },
        acquire_timeout_secs: 5,
        connect_wait_secs: 2,
        require_tls: true,
        tls_verify: true,
        auto_migrate: false,
    }
}

/// Connect with `url` and check the stamp names `environment`.
fn assert_stamped(url: &str, environment: Environment) {
    runtime().block_on(async {
        let pool = db::connect(&config(url), |_| {}).await.unwrap();
        let stamp = db::check_stamp(&pool, environment).await.unwrap();
        assert_eq!(stamp.database, db::database_name(environment));
        pool.close().await;
    });
}

#[test]
fn first_run_sets_up_and_second_run_changes_nothing() {
    let cluster = TestCluster::start().unwrap();
    let repo = Repo::new();

    let first = repo.setup(&cluster, "development", &[]).success();
    first
        .says("created the role")
        .says("created the database")
        .says("revoked CONNECT from PUBLIC")
        .says("stamp: stamped cognitive_memory_dev for development")
        .says("wrote")
        .says("production comparison skipped");
    assert!(!first.stdout().contains("nothing to do;"));

    let env_file = repo.env_file("development");
    let metadata = fs::metadata(&env_file).unwrap();
    assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
    let url = database_url(&env_file);
    // Host, port and options (sslmode) come from the admin URL.
    assert!(
        url.starts_with("postgres://mcp_user_dev:")
            && url.contains(&format!(
                "@127.0.0.1:{}/cognitive_memory_dev",
                cluster.port()
            )),
        "{url}"
    );
    let password = url
        .trim_start_matches("postgres://mcp_user_dev:")
        .split('@')
        .next()
        .unwrap();
    assert_eq!(password.len(), 32);
    assert!(password.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_stamped(&url, Environment::Development);
    // The backup role's URL is in the file too: it logs in, bypasses row-level security and
    // reads the memory tables, which the login role cannot dump (docs/tenancy.md).
    let backup_url = fs::read_to_string(&env_file)
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("COGMEM__BACKUP__DATABASE_URL="))
        .expect("a COGMEM__BACKUP__DATABASE_URL line")
        .to_owned();
    assert!(
        backup_url.starts_with("postgres://mcp_backup_dev:"),
        "{backup_url}"
    );
    runtime().block_on(async {
        let pool = db::connect(&config(&backup_url), |_| {}).await.unwrap();
        let (bypasses, superuser): (bool, bool) = sqlx::query_as(
            "SELECT rolbypassrls, rolsuper FROM pg_roles WHERE rolname = current_user",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(bypasses && !superuser);
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM l0_raw")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(rows, 0);
        // Read-only: it changes nothing.
        assert!(
            sqlx::query("DELETE FROM l0_raw")
                .execute(&pool)
                .await
                .is_err()
        );
        pool.close().await;
    });
    let before = fs::read(&env_file).unwrap();

    let second = repo.setup(&cluster, "development", &[]).success();
    second
        .says("already in place, nothing changed")
        .says("connects to cognitive_memory_dev as mcp_user_dev")
        .says("summary: nothing to do");
    assert!(!second.stdout().contains(password), "password leaked");
    assert_eq!(fs::read(&env_file).unwrap(), before);

    // Without the file the existing role's password is unknown: refuse, suggest the reset.
    fs::remove_file(&env_file).unwrap();
    repo.setup(&cluster, "development", &[])
        .failure()
        .says("--reset-password");
    assert!(!env_file.exists());
    repo.setup(&cluster, "development", &["--reset-password"])
        .success()
        .says("set the role's password")
        .says("wrote");
    let new_url = database_url(&env_file);
    assert_ne!(new_url, url);
    assert_stamped(&new_url, Environment::Development);

    // --reset drops a development database and sets it up again; the credentials stay valid.
    repo.setup(&cluster, "development", &["--reset"])
        .success()
        .says("reset: dropped database cognitive_memory_dev")
        .says("created the database")
        .says("stamp: stamped");
    assert_stamped(&new_url, Environment::Development);
}

#[test]
fn an_existing_env_file_is_never_overwritten() {
    let cluster = TestCluster::start().unwrap();
    let repo = Repo::new();
    let env_file = repo.env_file("test");
    let original = "# mine\nDATABASE_URL=postgres://someone:hunter2@127.0.0.1:1/elsewhere\n";
    fs::write(&env_file, original).unwrap();

    let run = repo.setup(&cluster, "test", &[]).success();
    run.says("created the role")
        .says("stamp: stamped cognitive_memory_test for test")
        .says(".env.test exists and is not overwritten")
        .says("DATABASE_URL=postgres://mcp_user_test:");
    assert_eq!(fs::read_to_string(&env_file).unwrap(), original);

    // The printed line is the one to use.
    let line = run
        .stdout()
        .lines()
        .find_map(|line| line.strip_prefix("DATABASE_URL="))
        .unwrap()
        .to_owned();
    assert_stamped(&line, Environment::Test);

    // The role exists now and the file still holds a wrong URL: fail without showing a password.
    let again = repo.setup(&cluster, "test", &[]).failure();
    again.says("password is not shown").says("--reset-password");
    assert!(!again.stdout().contains(&line) && !again.stderr().contains(&line));
    assert_eq!(fs::read_to_string(&env_file).unwrap(), original);
}

#[test]
fn reset_refuses_production() {
    let cluster = TestCluster::start().unwrap();
    let repo = Repo::new();
    repo.setup(&cluster, "production", &[])
        .success()
        .says("stamp: stamped cognitive_memory for production")
        .says("production comparison skipped: this is production");
    repo.setup(&cluster, "production", &["--reset"])
        .failure()
        .says("only for development and test");

    // The real safety net: a development-named database stamped production is not dropped.
    let admin = cluster.admin_url("postgres");
    runtime().block_on(async {
        let pool = db::connect(&config(&admin), |_| {}).await.unwrap();
        sqlx::query("CREATE DATABASE cognitive_memory_dev")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let pool = db::connect(&config(&cluster.admin_url("cognitive_memory_dev")), |_| {})
            .await
            .unwrap();
        db::stamp(&pool, Environment::Production, "test")
            .await
            .unwrap();
        pool.close().await;
    });
    repo.setup(&cluster, "development", &["--reset"])
        .failure()
        .says("refusing to drop database cognitive_memory_dev")
        .says("stamped for production");
    runtime().block_on(async {
        let pool = db::connect(&config(&cluster.admin_url("cognitive_memory_dev")), |_| {})
            .await
            .unwrap();
        db::check_stamp(&pool, Environment::Production)
            .await
            .unwrap();
        pool.close().await;
    });
}

#[test]
fn compares_the_schema_with_production() {
    let cluster = TestCluster::start().unwrap();
    let repo = Repo::new();
    repo.setup(&cluster, "production", &[]).success();
    assert!(repo.env_file("production").exists());

    // Production's configuration needs an auth token to load; without one, it is skipped.
    repo.setup(&cluster, "development", &[])
        .success()
        .says("production comparison skipped: the production configuration does not load");
    repo.setup_with(&cluster, "development", &[], &[("MCP_AUTH_TOKEN", TOKEN)])
        .success()
        .says("schema in sync with production")
        .says("summary: nothing to do");

    // Unreachable production: skipped, setup still succeeds.
    fs::write(
        repo.env_file("production"),
        "DATABASE_URL=postgres://mcp_user:unreachable-but-long-enough-1@127.0.0.1:1/cognitive_memory\n",
    )
    .unwrap();
    repo.setup_with(&cluster, "development", &[], &[("MCP_AUTH_TOKEN", TOKEN)])
        .success()
        .says("production comparison skipped: production is unreachable");
}

/// Stops the cluster even when an assertion fails half-way.
struct StopOnDrop<'a>(&'a Repo, String);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.xtask(&["dev-db", "stop", "--port", &self.1], &[]);
    }
}

#[test]
fn dev_db_start_status_stop() {
    let repo = Repo::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let _guard = StopOnDrop(&repo, port.clone());
    let dev_db = |action: &str| repo.xtask(&["dev-db", action, "--port", &port], &[]);

    dev_db("status").success().says("not initialised");
    dev_db("start")
        .success()
        .says("cluster initialised")
        .says(&format!("started on port {port}"));
    assert!(repo.root().join(".dev/postgres/data/PG_VERSION").is_file());
    dev_db("status").success().says("running (pid");
    dev_db("start")
        .success()
        .says("already initialised")
        .says("already running");
    dev_db("stop").success().says("dev-db: stopped");
    dev_db("status").success().says("dev-db: stopped");
    dev_db("stop").success().says("not running");
}
