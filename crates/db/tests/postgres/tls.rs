//! `sslmode=verify-full` end to end: a cluster of its own serving TLS with a certificate from a
//! test CA (made with the `openssl` command), reached with `database.ssl_root_cert` naming that
//! CA — and refused when the root file names another CA or none.

use std::path::Path;
use std::process::Command;

use db::DbError;
use pg_harness::TestCluster;
use secrecy::SecretString;
use sqlx::{Connection, PgConnection};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ca.crt`/`ca.key` and a server certificate for 127.0.0.1 and localhost signed by it.
fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
        ],
    );
}

#[tokio::test]
async fn verify_full_connects_with_the_configured_root_ca_and_refuses_another() {
    if Command::new("openssl").arg("version").output().is_err() {
        panic!("the openssl command is needed to make test certificates (apt-get install openssl)");
    }
    let dir = tempfile::tempdir().unwrap();
    make_ca(dir.path(), "ca");
    make_ca(dir.path(), "other-ca");
    std::fs::write(
        dir.path().join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(
        dir.path(),
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    openssl(
        dir.path(),
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ],
    );

    let cluster = TestCluster::start().unwrap();
    // The server reads its key as its own user, mode 0600: copy both into a directory it owns.
    let data = cluster.socket_dir().parent().unwrap().join("tls");
    std::fs::create_dir_all(&data).unwrap();
    for file in ["server.crt", "server.key"] {
        std::fs::copy(dir.path().join(file), data.join(file)).unwrap();
    }
    let owner = std::fs::metadata(cluster.socket_dir()).unwrap();
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt, chown};
        for file in ["", "server.crt", "server.key"] {
            let path = data.join(file);
            chown(&path, Some(owner.uid()), Some(owner.gid())).unwrap();
            let mode = if file.is_empty() { 0o700 } else { 0o600 };
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }
    let mut admin = PgConnection::connect(&cluster.admin_url("postgres"))
        .await
        .unwrap();
    for statement in [
        format!(
            "ALTER SYSTEM SET ssl_cert_file = '{}'",
            data.join("server.crt").display()
        ),
        format!(
            "ALTER SYSTEM SET ssl_key_file = '{}'",
            data.join("server.key").display()
        ),
        "ALTER SYSTEM SET ssl = on".to_owned(),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    sqlx::raw_sql("SELECT pg_reload_conf()")
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    let database = cluster.fresh_database().await.unwrap();
    let url = database
        .url
        .replace("sslmode=disable", "sslmode=verify-full");
    let connect = |root: Option<&str>| {
        let mut config = crate::common::config(&url, 1);
        config.url = SecretString::from(url.clone());
        config.ssl_root_cert = root.map(|file| dir.path().join(file).display().to_string());
        async move {
            let pool = db::connect(&config, |_| {}).await?;
            let ssl: bool =
                sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                    .persistent(false)
                    .fetch_one(&pool)
                    .await
                    .map_err(|err| DbError::Query {
                        context: "ask".into(),
                        reason: err.to_string(),
                    })?;
            pool.close().await;
            Ok::<bool, DbError>(ssl)
        }
    };
    assert!(
        connect(Some("ca.crt")).await.unwrap(),
        "the session is encrypted"
    );
    let other = connect(Some("other-ca.crt")).await.unwrap_err();
    assert!(!other.to_string().is_empty());
    assert!(
        connect(None).await.is_err(),
        "no root CA: the test CA is not trusted"
    );
}
