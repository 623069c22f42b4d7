//! The release build of the server, shared by `install-service` and `bench`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The server's package and binary name.
pub const BINARY_NAME: &str = "cognitive-memory-mcp";

/// The arguments of the build, for messages.
pub const BUILD_ARGS: [&str; 5] = ["build", "--release", "-p", BINARY_NAME, "--locked"];

/// `target/release` (or `$CARGO_TARGET_DIR/release`) of the checkout at `repo`.
pub fn release_dir(repo: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target"))
        .join("release")
}

/// Runs `cargo build --release -p cognitive-memory-mcp --locked`, announced as `who: cargo …`;
/// returns the built binary.
pub fn build_server(repo: &Path, who: &str) -> Result<PathBuf> {
    let binary = release_dir(repo).join(BINARY_NAME);
    println!("{who}: cargo {}", BUILD_ARGS.join(" "));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(BUILD_ARGS)
        .current_dir(repo)
        .status()
        .context("run cargo build")?;
    if !status.success() {
        bail!("cargo build --release failed ({status})");
    }
    if !binary.is_file() {
        bail!("the build succeeded but {} is missing", binary.display());
    }
    Ok(binary)
}
