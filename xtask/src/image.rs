//! `cargo xtask image`: the container image from `deploy/container/Containerfile`, with podman
//! (or docker where podman is missing).
//!
//! By default the whole build runs in the container engine from public base images (the Rust
//! builder and distroless/cc). Where no registry can be reached, `--binary`/`--prebuilt` copy a
//! binary built on the host into the runtime stage (a small build context: the binary and
//! `config/config.yaml`), and `--local-base` assembles the runtime base `FROM scratch` from the C
//! libraries `ldd` names for that binary plus an `/etc/passwd` with the non-root user, so the
//! image builds with nothing pulled. The engine's own configuration applies
//! (`CONTAINERS_CONF`, `CONTAINERS_STORAGE_CONF`); see docs/containers.md.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::release;

/// Where the Containerfile lives, relative to the repository.
pub const CONTAINERFILE: &str = "deploy/container/Containerfile";
/// The non-root user of the runtime stage (distroless `nonroot`).
pub const APP_UID: u32 = 65532;
/// The tag of a base assembled by `--local-base`.
pub const LOCAL_BASE_TAG: &str = "localhost/cognitive-memory-mcp-base:local";

#[derive(Debug, Clone, clap::Args)]
pub struct ImageOptions {
    /// Tag of the image built.
    #[arg(long, default_value = concat!("localhost/cognitive-memory-mcp:", env!("CARGO_PKG_VERSION")))]
    pub tag: String,
    /// Runtime base image (RUNTIME_IMAGE); default gcr.io/distroless/cc-debian12:nonroot. Any
    /// glibc base with a user of uid 65532 works.
    #[arg(long, value_name = "IMAGE", conflicts_with = "local_base")]
    pub base: Option<String>,
    /// Rust builder image (RUST_IMAGE) for a build inside the engine; default
    /// docker.io/library/rust:1-slim-bookworm.
    #[arg(long, value_name = "IMAGE")]
    pub builder: Option<String>,
    /// Copy this binary (built on the host, same glibc as the base) instead of building in the
    /// engine. Debug information is stripped from the copy.
    #[arg(long, value_name = "FILE")]
    pub binary: Option<PathBuf>,
    /// Build the release binary on the host (`cargo build --release`) and copy it.
    #[arg(long, conflicts_with = "binary")]
    pub prebuilt: bool,
    /// Assemble the runtime base locally (FROM scratch: the binary's shared libraries and a
    /// passwd file), tagged localhost/cognitive-memory-mcp-base:local: nothing is pulled.
    /// Implies --prebuilt unless --binary is given.
    #[arg(long)]
    pub local_base: bool,
    /// Container engine; default podman, else docker.
    #[arg(long, value_name = "PROGRAM")]
    pub engine: Option<String>,
}

/// Builds the image; prints what it ran and the image's size.
pub fn run(repo: &Path, options: &ImageOptions) -> Result<()> {
    let engine = match &options.engine {
        Some(engine) => engine.clone(),
        None => find_engine()?,
    };
    let binary = match (&options.binary, options.prebuilt || options.local_base) {
        (Some(binary), _) => Some(binary.clone()),
        (None, true) => Some(release::build_server(repo, "image")?),
        (None, false) => None,
    };
    let work = target_dir(repo).join("container");
    let mut args: Vec<String> = vec![
        "build".into(),
        "-f".into(),
        repo.join(CONTAINERFILE).display().to_string(),
        "--target".into(),
        "runtime".into(),
        "-t".into(),
        options.tag.clone(),
    ];
    if is_podman(&engine) {
        // The OCI image format has no HEALTHCHECK; the docker format keeps it.
        args.extend(["--format".into(), "docker".into()]);
    }
    let mut base = options.base.clone();
    if options.local_base {
        let binary = binary.as_deref().expect("--local-base implies a binary");
        base = Some(assemble_base(&engine, binary, &work.join("base"))?);
    }
    if let Some(base) = &base {
        args.extend(["--build-arg".into(), format!("RUNTIME_IMAGE={base}")]);
    }
    if let Some(builder) = &options.builder {
        args.extend(["--build-arg".into(), format!("RUST_IMAGE={builder}")]);
    }
    let context = match &binary {
        Some(binary) => {
            args.extend(["--build-arg".into(), "BINARY_FROM=prebuilt".into()]);
            prebuilt_context(repo, binary, &work.join("context"))?
        }
        None => repo.to_path_buf(),
    };
    args.push(context.display().to_string());
    engine_run(&engine, &args)?;
    let size = Command::new(&engine)
        .args(["image", "inspect", "--format", "{{.Size}}", &options.tag])
        .output()
        .context("inspect the image")?;
    let size = String::from_utf8_lossy(&size.stdout).trim().to_owned();
    match size.parse::<f64>() {
        Ok(bytes) => println!(
            "image: built {} ({:.1} MB)",
            options.tag,
            bytes / 1_000_000.0
        ),
        Err(_) => println!("image: built {}", options.tag),
    }
    Ok(())
}

fn target_dir(repo: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target"))
}

fn is_podman(engine: &str) -> bool {
    Path::new(engine)
        .file_name()
        .is_some_and(|name| name.to_string_lossy().starts_with("podman"))
}

/// podman if it is on PATH, else docker.
pub fn find_engine() -> Result<String> {
    for engine in ["podman", "docker"] {
        let found = Command::new(engine)
            .arg("--version")
            .output()
            .is_ok_and(|output| output.status.success());
        if found {
            return Ok(engine.to_owned());
        }
    }
    bail!(
        "neither podman nor docker is installed; install podman (Debian: apt-get install podman runc) or pass --engine"
    )
}

fn engine_run(engine: &str, args: &[String]) -> Result<()> {
    println!("image: {engine} {}", args.join(" "));
    let status = Command::new(engine)
        .args(args)
        .status()
        .with_context(|| format!("run {engine}"))?;
    if !status.success() {
        bail!("{engine} {} failed ({status})", args[0]);
    }
    Ok(())
}

/// A fresh directory holding `cognitive-memory-mcp` (debug information stripped when `strip`
/// exists) and `config/config.yaml`: everything the runtime stage copies.
fn prebuilt_context(repo: &Path, binary: &Path, dir: &Path) -> Result<PathBuf> {
    if !binary.is_file() {
        bail!("{} does not exist; build it first", binary.display());
    }
    fresh_dir(dir)?;
    std::fs::create_dir_all(dir.join("config")).context("create the build context")?;
    std::fs::copy(
        repo.join("config/config.yaml"),
        dir.join("config/config.yaml"),
    )
    .context("copy config/config.yaml into the build context")?;
    let target = dir.join(release::BINARY_NAME);
    let stripped = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&target)
        .arg(binary)
        .status()
        .is_ok_and(|status| status.success());
    if !stripped {
        std::fs::copy(binary, &target)
            .with_context(|| format!("copy {} into the build context", binary.display()))?;
    }
    Ok(dir.to_path_buf())
}

/// Builds the runtime base `FROM scratch`: the shared libraries `ldd` lists for `binary` (at
/// the same paths), `/etc/passwd` and `/etc/group` with root and `nonroot` (uid/gid 65532), and
/// an empty `/tmp`. Returns its tag.
fn assemble_base(engine: &str, binary: &Path, dir: &Path) -> Result<String> {
    fresh_dir(dir)?;
    let rootfs = dir.join("rootfs");
    let output = Command::new("ldd")
        .arg(binary)
        .output()
        .context("run ldd (it lists the libraries the base needs)")?;
    if !output.status.success() {
        bail!(
            "ldd {} failed: is it a dynamically linked binary?",
            binary.display()
        );
    }
    let libraries = ldd_paths(&String::from_utf8_lossy(&output.stdout));
    if libraries.is_empty() {
        bail!("ldd named no libraries for {}", binary.display());
    }
    for library in &libraries {
        let inside = rootfs.join(library.strip_prefix("/").unwrap_or(library));
        std::fs::create_dir_all(inside.parent().expect("a library path has a parent"))?;
        // Follow symlinks: the file name the loader asks for, holding the library itself.
        std::fs::copy(library, &inside)
            .with_context(|| format!("copy {} into the base", library.display()))?;
    }
    std::fs::create_dir_all(rootfs.join("etc"))?;
    std::fs::create_dir_all(rootfs.join("tmp"))?;
    std::fs::write(
        rootfs.join("etc/passwd"),
        format!(
            "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:{APP_UID}:{APP_UID}:nonroot:/home/nonroot:/sbin/nologin\n"
        ),
    )?;
    std::fs::write(
        rootfs.join("etc/group"),
        format!("root:x:0:\nnonroot:x:{APP_UID}:\n"),
    )?;
    std::fs::write(dir.join("Containerfile"), "FROM scratch\nCOPY rootfs/ /\n")?;
    engine_run(
        engine,
        &[
            "build".into(),
            "-t".into(),
            LOCAL_BASE_TAG.into(),
            dir.display().to_string(),
        ],
    )?;
    Ok(LOCAL_BASE_TAG.to_owned())
}

/// The absolute library paths in `ldd` output (`libc.so.6 => /lib/…/libc.so.6 (0x…)` and the
/// loader's `/lib64/ld-linux-x86-64.so.2 (0x…)`); the vDSO has no file and is skipped.
fn ldd_paths(output: &str) -> Vec<PathBuf> {
    output
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

fn fresh_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_the_library_files() {
        let output = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            ldd_paths(output),
            [
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
            .map(PathBuf::from)
        );
    }
}
