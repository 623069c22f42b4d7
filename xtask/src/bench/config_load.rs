//! Configuration load of a realistic production layout, in process: the repository's `config/config.yaml`,
//! `.env` + `.env.production` with `${…}` interpolation, 20 process variables and 2 credential
//! files, through validation and extraction of the typed `AppConfig`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cognitive_memory_mcp::config::{self, ConfigSource};
use config_core::EnvSnapshot;

fn write_private(path: &Path, content: &str) -> Result<()> {
    fs::create_dir_all(path.parent().expect("a file has a parent"))?;
    fs::write(path, content)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// `warmup` unrecorded loads, then the time of each of `samples` loads.
pub fn measure(repo: &Path, warmup: usize, samples: usize) -> Result<Vec<Duration>> {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    let yaml =
        fs::read_to_string(repo.join("config/config.yaml")).context("read config/config.yaml")?;
    write_private(&root.join("config/config.yaml"), &yaml)?;
    write_private(
        &root.join(".env"),
        "DB_HOST=db.internal\nDB_PORT=5432\n# shared\nCOGMEM__LOGGING__FORMAT=json\n",
    )?;
    write_private(
        &root.join(".env.production"),
        "DB_NAME=cognitive_memory\nCOGMEM__DATABASE__CONNECT_WAIT_SECS=45\n\
         COGMEM__SERVER__HTTP__ALLOWED_ORIGINS=[\"https://app.example\", \"https://admin.example\"]\n\
         LOG_LEVEL=\"${DB_LOG_LEVEL:-warn}\"\n",
    )?;
    write_private(
        &root.join("creds/database-url"),
        "postgres://mcp_user:Zk2f9sQ4pLm8Rt7vWx3nBq@db.internal:5432/cognitive_memory?sslmode=verify-full\n",
    )?;
    write_private(
        &root.join("creds/mcp-auth-token"),
        "0f1e2d3c4b5a69788796a5b4c3d2e1f0\n",
    )?;
    let credentials = root.join("creds");
    let mut vars: Vec<(String, String)> = (0..12)
        .map(|i| (format!("UNRELATED_VAR_{i}"), format!("value-{i}")))
        .collect();
    vars.extend(
        [
            ("ENVIRONMENT", "production"),
            ("CREDENTIALS_DIRECTORY", &*credentials.to_string_lossy()),
            ("LOG_LEVEL", "info"),
            ("COGMEM__SERVER__SHUTDOWN_GRACE_SECS", "15"),
            ("COGMEM__DATABASE__POOL__MAX_CONNECTIONS", "16"),
            ("COGMEM__SERVER__HTTP__BIND", "127.0.0.1:8765"),
            ("COGMEM__MEMORY__MAX_CONTENT_BYTES", "131072"),
            ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let env: EnvSnapshot = vars.into_iter().collect();
    let source = ConfigSource {
        root: root.to_owned(),
        environment_flag: None,
    };
    match config::load(&source, &env) {
        Ok(loaded) if loaded.resolution.environment.as_str() == "production" => {}
        Ok(_) => bail!("the benchmark layout did not select production"),
        Err(failure) => bail!("the benchmark layout does not load:\n{}", failure.report),
    }
    for _ in 0..warmup {
        let _ = std::hint::black_box(config::load(&source, &env));
    }
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        let loaded = config::load(&source, &env);
        times.push(started.elapsed());
        std::hint::black_box(loaded.is_ok());
    }
    Ok(times)
}
