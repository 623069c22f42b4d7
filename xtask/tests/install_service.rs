//! `cargo xtask install-service --root <tempdir> --binary <built server binary>`: the installed
//! tree and its modes, placeholders that are created once and never overwritten, a dry run that
//! changes nothing, a second run that changes nothing, and an installed configuration that the
//! installed binary refuses (exit 78) until the placeholders are replaced.

#[path = "support/run.rs"]
mod run;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use run::Run;

const CREDENTIALS: [&str; 3] = ["database-url", "mcp-auth-token", "backup-database-url"];

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// The `cognitive-memory-mcp` binary of this build (another package's binary has no
/// `CARGO_BIN_EXE_…` here): `target/debug/cognitive-memory-mcp`, which `cargo test --workspace`
/// builds along with the server's tests. Only when it is missing is it built here: a nested
/// `cargo build` with other features would relink that shared path under the server's own tests
/// (whose binary has the test-only fault hooks).
fn server_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        // This test runs as target/<profile>/deps/install_service-<hash>.
        let profile_dir = std::env::current_exe()
            .unwrap()
            .parent()
            .and_then(Path::parent)
            .expect("the test binary lives in target/<profile>/deps")
            .to_path_buf();
        let binary = profile_dir.join("cognitive-memory-mcp");
        if !binary.is_file() {
            eprintln!("building cognitive-memory-mcp for the installer tests");
            let status = Command::new(env!("CARGO"))
                .args([
                    "build",
                    "-p",
                    "cognitive-memory-mcp",
                    "--bin",
                    "cognitive-memory-mcp",
                ])
                .current_dir(workspace())
                .status()
                .expect("run cargo build");
            assert!(
                status.success(),
                "cargo build -p cognitive-memory-mcp failed"
            );
            assert!(
                binary.is_file(),
                "{} missing after the build",
                binary.display()
            );
        }
        binary
    })
}

fn install(root: &Path, extra: &[&str]) -> Run {
    let binary = server_binary();
    let mut args = vec![
        "install-service",
        "--root",
        root.to_str().unwrap(),
        "--binary",
        binary.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run::xtask(workspace(), &args, &[])
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Every path under `root` with its mode and contents, to compare two states of the tree.
fn snapshot(root: &Path) -> Vec<(PathBuf, u32, Vec<u8>)> {
    let mut entries = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                entries.push((path.clone(), mode(&path), Vec::new()));
                pending.push(path);
            } else {
                entries.push((path.clone(), mode(&path), fs::read(&path).unwrap()));
            }
        }
    }
    entries.sort();
    entries
}

#[test]
fn installs_the_tree_once_and_a_second_run_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();

    // A dry run says what it would do and does nothing.
    install(root, &["--dry-run"])
        .success()
        .says("would install")
        .says("usr/local/bin/cognitive-memory-mcp")
        .says("summary (dry run)");
    assert!(
        fs::read_dir(root).unwrap().next().is_none(),
        "a dry run created something"
    );

    let first = install(root, &[]).success();
    first
        .says("systemd-analyze verify found nothing")
        .says("useradd --system")
        .says("systemctl daemon-reload")
        .says("systemctl enable cognitive-memory-mcp")
        .says("systemctl enable cognitive-memory-backup.timer")
        .says("summary: ")
        .never_says("nothing to do");

    let binary = root.join("usr/local/bin/cognitive-memory-mcp");
    assert_eq!(mode(&binary), 0o755);
    assert_eq!(
        fs::read(&binary).unwrap(),
        fs::read(server_binary()).unwrap()
    );
    let unit = root.join("etc/systemd/system/cognitive-memory-mcp.service");
    assert_eq!(mode(&unit), 0o644);
    assert_eq!(
        fs::read(&unit).unwrap(),
        fs::read(workspace().join("deploy/systemd/cognitive-memory-mcp.service")).unwrap()
    );
    for name in [
        "cognitive-memory-backup.service",
        "cognitive-memory-backup.timer",
    ] {
        let installed = root.join("etc/systemd/system").join(name);
        assert_eq!(mode(&installed), 0o644, "{name}");
        assert_eq!(
            fs::read(&installed).unwrap(),
            fs::read(workspace().join("deploy/systemd").join(name)).unwrap(),
            "{name}"
        );
    }
    let config_root = root.join("etc/cognitive-memory-mcp");
    let config = config_root.join("config/config.yaml");
    assert_eq!(mode(&config), 0o644);
    assert_eq!(
        fs::read(&config).unwrap(),
        fs::read(workspace().join("config/config.yaml")).unwrap()
    );
    let credentials = config_root.join("credentials");
    assert_eq!(mode(&credentials), 0o700);
    for name in CREDENTIALS {
        let file = credentials.join(name);
        assert_eq!(mode(&file), 0o600, "{name}");
        assert_eq!(
            fs::read_to_string(&file).unwrap().trim(),
            "changeme",
            "{name}"
        );
    }

    // Nothing changes the second time, and a dry run agrees.
    let before = snapshot(root);
    install(root, &[])
        .success()
        .says("summary: nothing to do")
        .never_says("would ");
    assert_eq!(snapshot(root), before);
    install(root, &["--dry-run"])
        .success()
        .says("summary (dry run): nothing would change");
    assert_eq!(snapshot(root), before);
}

#[test]
fn configuration_and_credentials_are_never_overwritten() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    install(root, &[]).success();
    let config_root = root.join("etc/cognitive-memory-mcp");
    let config = config_root.join("config/config.yaml");
    let url = config_root.join("credentials/database-url");
    let token = config_root.join("credentials/mcp-auth-token");
    fs::write(&config, "# the operator's own\n").unwrap();
    fs::write(
        &url,
        "postgres://mcp_user:operator-secret@db.internal/cognitive_memory\n",
    )
    .unwrap();
    fs::write(
        config_root.join("credentials/backup-database-url"),
        "postgres://mcp_backup:operator-secret@db.internal/cognitive_memory\n",
    )
    .unwrap();
    fs::remove_file(&token).unwrap();

    let run = install(root, &[]).success();
    run.says("config.yaml exists; not overwritten")
        .says("differs from the repository")
        .says("database-url exists; not overwritten")
        .says("create ")
        .never_says("operator-secret");
    assert_eq!(
        fs::read_to_string(&config).unwrap(),
        "# the operator's own\n"
    );
    assert!(
        fs::read_to_string(&url)
            .unwrap()
            .contains("operator-secret")
    );
    // A missing placeholder is created again, and only it is reported as still to be filled in.
    assert_eq!(fs::read_to_string(&token).unwrap().trim(), "changeme");
    assert_eq!(mode(&token), 0o600);
    let next: Vec<String> = run
        .stdout()
        .lines()
        .skip_while(|line| !line.starts_with("next: put the real secrets"))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .map(str::to_owned)
        .collect();
    assert!(
        next.len() == 1 && next[0].contains("mcp-auth-token"),
        "{next:?}"
    );

    // A loosened credentials directory is tightened again.
    fs::set_permissions(
        config_root.join("credentials"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    install(root, &[]).success().says("chmod 0700");
    assert_eq!(mode(&config_root.join("credentials")), 0o700);
}

/// The installed binary, reading the installed configuration and credentials the way the unit
/// makes it (`ENVIRONMENT=production`, `$CREDENTIALS_DIRECTORY`), refuses the placeholders.
#[test]
fn the_installed_placeholders_fail_the_production_config_check() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    install(root, &[]).success();
    let config_root = root.join("etc/cognitive-memory-mcp");
    let output = Command::new(root.join("usr/local/bin/cognitive-memory-mcp"))
        .arg("--config-root")
        .arg(&config_root)
        .args(["--env", "production", "config", "check"])
        .env_clear()
        .env("CREDENTIALS_DIRECTORY", config_root.join("credentials"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    for (key, credential) in [
        ("database.url", "credential database-url"),
        ("server.auth.token", "credential mcp-auth-token"),
        ("backup.database_url", "credential backup-database-url"),
    ] {
        assert!(
            stderr.lines().any(|line| line.contains(key)
                && line.contains("placeholder")
                && line.contains(credential)),
            "the check names {key} as a placeholder from {credential}:\n{stderr}"
        );
    }
}
