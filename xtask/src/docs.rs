//! `cargo xtask docs`: writes the generated documentation (`docs/configuration.md`).

use std::path::Path;

use anyhow::{Context, Result, anyhow};

/// Generates from a copy of `config/config.yaml` alone, so no `.env` file of this checkout
/// leaks into the reference.
pub fn run(root: &Path) -> Result<()> {
    let yaml_root = tempfile::tempdir().context("create a temporary directory")?;
    std::fs::create_dir(yaml_root.path().join("config"))?;
    std::fs::copy(
        root.join("config/config.yaml"),
        yaml_root.path().join("config/config.yaml"),
    )
    .context("copy config/config.yaml")?;
    let reference = cognitive_memory_mcp::config::reference_markdown(yaml_root.path())
        .map_err(|e| anyhow!(e))?;
    let target = root.join("docs/configuration.md");
    let unchanged = std::fs::read_to_string(&target).is_ok_and(|current| current == reference);
    if unchanged {
        println!("docs: {} is up to date", target.display());
    } else {
        std::fs::write(&target, reference)
            .with_context(|| format!("write {}", target.display()))?;
        println!("docs: wrote {}", target.display());
    }
    Ok(())
}
