//! Full configuration load of a realistic production layout: the real `config/config.yaml`,
//! `.env` + `.env.production` with interpolation, 20 process variables and 2 credential files.
//! Goal: median ≤ 1 ms. Run: `cargo bench -p cognitive-memory-mcp --bench config_load`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use cognitive_memory_mcp::config::{self, ConfigSource};
use config_core::EnvSnapshot;
use criterion::{Criterion, criterion_group, criterion_main};

fn write_private(path: &Path, content: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

fn production_layout(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let yaml =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/config.yaml"))
            .unwrap();
    write_private(&root.join("config/config.yaml"), &yaml);
    write_private(
        &root.join(".env"),
        "DB_HOST=db.internal\nDB_PORT=5432\n# shared\nCOGMEM__LOGGING__FORMAT=json\n",
    );
    write_private(
        &root.join(".env.production"),
        "DB_NAME=cognitive_memory\nCOGMEM__DATABASE__CONNECT_WAIT_SECS=45\n\
         COGMEM__SERVER__HTTP__ALLOWED_ORIGINS=[\"https://app.example\", \"https://admin.example\"]\n\
         LOG_LEVEL=\"${DB_LOG_LEVEL:-warn}\"\n",
    );
    write_private(
        &root.join("creds/database-url"),
        "postgres://mcp_user:Zk2f9sQ4pLm8Rt@db.internal:5432/cognitive_memory?sslmode=verify-full\n",
    );
    write_private(
        &root.join("creds/mcp-auth-token"),
        "0f1e2d3c4b5a69788796a5b4c3d2e1f0\n",
    );
    let mut vars: Vec<(String, String)> = (0..12)
        .map(|i| (format!("UNRELATED_VAR_{i}"), format!("value-{i}")))
        .collect();
    vars.extend(
        [
            ("ENVIRONMENT", "production"),
            (
                "CREDENTIALS_DIRECTORY",
                root.join("creds").to_str().unwrap(),
            ),
            ("LOG_LEVEL", "info"),
            ("COGMEM__SERVER__SHUTDOWN_GRACE_SECS", "15"),
            ("COGMEM__DATABASE__POOL__MAX_CONNECTIONS", "16"),
            ("COGMEM__SERVER__HTTP__BIND", "127.0.0.1:8765"),
            ("COGMEM__MEMORY__MAX_CONTENT_BYTES", "131072"),
            ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    assert_eq!(vars.len(), 20);
    let env: EnvSnapshot = vars.into_iter().collect();
    let source = ConfigSource {
        root: root.to_owned(),
        environment_flag: None,
    };
    let loaded = config::load(&source, &env).expect("the benchmark layout is valid");
    assert_eq!(loaded.resolution.environment.as_str(), "production");

    c.bench_function("config_load_production_layout", |b| {
        b.iter(|| config::load(&source, &env).unwrap())
    });
}

criterion_group!(benches, production_layout);
criterion_main!(benches);
