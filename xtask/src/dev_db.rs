//! `dev-db`: the persistent development cluster under `<repo>/.dev/postgres/`.

use std::path::Path;

use anyhow::{Context, Result};
use pg_harness::{Cluster, ClusterSpec, StartOutcome};

use crate::DevDbAction;

/// The cluster's directory inside the repository (git-ignored via `/.dev/`).
pub fn cluster_dir(root: &Path) -> std::path::PathBuf {
    root.join(".dev").join("postgres")
}

/// The development cluster of the repository at `root`, listening on `port`.
pub fn cluster(root: &Path, port: u16) -> Result<Cluster> {
    let mut spec = ClusterSpec::under(cluster_dir(root));
    spec.port = port;
    Cluster::new(spec).context("prepare the development cluster")
}

pub fn run(root: &Path, action: DevDbAction, port: u16) -> Result<()> {
    let cluster = cluster(root, port)?;
    let dir = cluster_dir(root);
    match action {
        DevDbAction::Start => {
            ensure_running(&cluster)?;
        }
        DevDbAction::Stop => {
            let outcome = cluster
                .stop()
                .with_context(|| format!("stop the cluster in {}", dir.display()))?;
            println!("dev-db: {outcome}");
        }
        DevDbAction::Status => {
            let status = cluster
                .status()
                .with_context(|| format!("inspect the cluster in {}", dir.display()))?;
            println!("dev-db: {} ({})", status, dir.display());
        }
    }
    Ok(())
}

/// Initialise (if needed) and start (if needed) the cluster, reporting both; returns the port it
/// actually listens on, which differs from the spec when it was already running elsewhere.
pub fn ensure_running(cluster: &Cluster) -> Result<u16> {
    let dir = cluster
        .spec()
        .data_dir
        .parent()
        .unwrap_or(&cluster.spec().data_dir)
        .to_path_buf();
    let init = cluster
        .init()
        .with_context(|| format!("initialise the cluster in {}", dir.display()))?;
    println!("dev-db: {init} ({})", dir.display());
    let start = cluster
        .start()
        .with_context(|| format!("start the cluster in {}", dir.display()))?;
    println!("dev-db: {start}");
    Ok(match start {
        StartOutcome::Started { port } | StartOutcome::AlreadyRunning { port, .. } => port,
    })
}
