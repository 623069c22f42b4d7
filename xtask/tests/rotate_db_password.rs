//! `cargo xtask rotate-db-password` against a real cluster: the role's password changes, the
//! `.env.<env>` file is rewritten at mode 0600 with only the password changed, the daemon's pid
//! gets SIGHUP, and no password is ever printed.

#[path = "support/run.rs"]
mod run;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use pg_harness::TestCluster;
use sqlx::Connection;

fn password(url: &str) -> String {
    url.split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(user, _)| user.split_once(':'))
        .map(|(_, password)| password.to_owned())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_password_rotates_in_the_role_and_the_file_and_the_daemon_is_signalled() {
    let cluster = TestCluster::shared();
    let database = cluster.fresh_database().await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let env_file = root.path().join(".env.staging");
    fs::write(
        &env_file,
        format!(
            "# staging\nDATABASE_URL={}\nMCP_AUTH_TOKEN=keep-this-line\n",
            database.url
        ),
    )
    .unwrap();
    fs::set_permissions(&env_file, fs::Permissions::from_mode(0o644)).unwrap();
    // A process standing in for the daemon: it records the SIGHUP it gets. `env
    // --default-signal` first: a shell cannot trap a signal ignored when it started, as SIGHUP is
    // under `nohup`, and the test would wait for it forever.
    let marker = root.path().join("got-hup");
    let mut daemon = std::process::Command::new("env")
        .args(["--default-signal=HUP", "sh", "-c"])
        .arg(format!(
            "trap 'touch {}; exit 0' HUP; while :; do sleep 0.05; done",
            marker.display()
        ))
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));

    let admin = cluster.admin_url("postgres");
    let pid = daemon.id().to_string();
    let run = run::xtask(
        root.path(),
        &[
            "rotate-db-password",
            "--env",
            "staging",
            "--config-root",
            root.path().to_str().unwrap(),
            "--pid",
            &pid,
        ],
        &[("PG_ADMIN_URL", &admin)],
    )
    .success();
    let old = password(&database.url);
    let text = fs::read_to_string(&env_file).unwrap();
    let new_url = text
        .lines()
        .find_map(|l| l.strip_prefix("DATABASE_URL="))
        .unwrap()
        .to_owned();
    let new = password(&new_url);
    run.never_says(&old)
        .never_says(&new)
        .never_says(&password(&admin));
    assert_ne!(new, old);
    assert!(new.len() >= 20);
    assert_eq!(new_url, database.url.replace(&old, &new));
    assert!(text.starts_with("# staging\n") && text.ends_with("MCP_AUTH_TOKEN=keep-this-line\n"));
    assert_eq!(
        fs::metadata(&env_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    sqlx::PgConnection::connect(&new_url)
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
    assert!(
        sqlx::PgConnection::connect(&database.url).await.is_err(),
        "the old password still works"
    );
    assert!(daemon.wait().unwrap().success());
    assert!(marker.exists(), "no SIGHUP arrived");
}
