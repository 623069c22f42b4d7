//! `cargo xtask dev`: the newcomer's single command. Makes sure the local cluster and the
//! development database exist (the idempotent `setup-dev-db`), then replaces itself with the
//! server in the foreground, so Ctrl-C reaches the server directly and it stops cleanly.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use cognitive_memory_mcp::config::{self, ConfigSource};
use config_core::{EnvSnapshot, Environment};

use crate::{DevOptions, setup_db};

pub fn run(root: &Path, options: &DevOptions) -> Result<()> {
    setup_db::run(root, Environment::Development, &options.setup)?;

    let source = ConfigSource {
        root: root.to_path_buf(),
        environment_flag: Some(Environment::Development.as_str().to_owned()),
    };
    let bind = match options.bind {
        Some(bind) => bind,
        None => match config::load(&source, &EnvSnapshot::from_process()) {
            Ok(loaded) => loaded.config.server.http.bind,
            Err(failure) => bail!(
                "the development configuration is invalid:\n{}",
                failure.report
            ),
        },
    };
    let mut command = match &options.server_binary {
        Some(binary) => Command::new(binary),
        None => {
            let mut cargo =
                Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
            cargo.args(["run", "--quiet", "--package", "cognitive-memory-mcp", "--"]);
            cargo
        }
    };
    command
        .arg("--env")
        .arg("development")
        .arg("--config-root")
        .arg(root)
        .args(["serve", "--transport", "http", "--bind"])
        .arg(bind.to_string())
        .env("LOG_FORMAT", "pretty")
        .current_dir(root);
    print_welcome(bind);
    // Only returns on failure.
    let err = command.exec();
    Err(err).with_context(|| format!("start {}", describe(&options.server_binary)))
}

fn print_welcome(bind: SocketAddr) {
    let base = if bind.port() == 0 {
        "http://127.0.0.1:<port from the log>".to_owned()
    } else {
        format!("http://{bind}")
    };
    println!("Starting cognitive-memory-mcp (development) on {base}/mcp; Ctrl-C stops it.");
    println!("  health:      curl {base}/health");
    println!("  readiness:   curl {base}/ready");
    println!(
        "  Claude Code: claude mcp add --scope project --transport http cognitive-memory {base}/mcp"
    );
}

fn describe(binary: &Option<PathBuf>) -> String {
    match binary {
        Some(binary) => binary.display().to_string(),
        None => "cargo run --package cognitive-memory-mcp".to_owned(),
    }
}
