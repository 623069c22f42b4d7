//! `cargo xtask rotate-db-password --env E`: a new database password without a restart.
//!
//! Order matters: the role gets the new password first (open sessions stay logged in), then the
//! file the daemon reads is replaced atomically (a new file at mode 0600, renamed over the old
//! one), then the daemon is told to reload; its reload tries the new URL with one connection
//! before new pool connections use it. Nothing printed contains a password.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use config_core::Environment;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

#[derive(Debug, Clone, Args)]
pub struct RotateOptions {
    /// The environment: development, test, staging or production.
    #[arg(long = "env", value_parser = crate::parse_environment)]
    environment: Environment,
    /// A connection URL of a role allowed to ALTER the environment's role (a superuser).
    #[arg(long, env = "PG_ADMIN_URL", hide_env_values = true)]
    admin_url: String,
    /// Directory holding .env.<env> (default: the repository root).
    #[arg(long, value_name = "DIR")]
    config_root: Option<PathBuf>,
    /// Rewrite this credential file (one DATABASE_URL, e.g. a LoadCredential source) instead of
    /// DATABASE_URL in .env.<env>.
    #[arg(long, value_name = "FILE")]
    credential: Option<PathBuf>,
    /// Send SIGHUP to this daemon process afterwards.
    #[arg(long, value_name = "PID", conflicts_with = "unit")]
    pid: Option<u32>,
    /// Run `systemctl reload UNIT` afterwards.
    #[arg(long, value_name = "UNIT")]
    unit: Option<String>,
}

pub fn run(root: &Path, options: &RotateOptions) -> Result<()> {
    let (path, is_credential) = match &options.credential {
        Some(file) => (file.clone(), true),
        None => (
            options
                .config_root
                .clone()
                .unwrap_or_else(|| root.to_owned())
                .join(format!(".env.{}", options.environment)),
            false,
        ),
    };
    let text = SecretString::from(
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?,
    );
    let (line_index, old_url) = find_url(text.expose_secret(), is_credential)
        .ok_or_else(|| anyhow!("{} holds no DATABASE_URL line to rotate", path.display()))?;
    let mut url = Url::parse(old_url.expose_secret()).map_err(|_| {
        anyhow!(
            "DATABASE_URL in {}:{} is not a valid URL",
            path.display(),
            line_index + 1
        )
    })?;
    let role = url.username().to_owned();
    if role.is_empty() {
        bail!(
            "DATABASE_URL in {}:{} names no role",
            path.display(),
            line_index + 1
        );
    }
    let password = SecretString::from(crate::setup_db::generate_password()?);
    url.set_password(Some(password.expose_secret()))
        .map_err(|()| anyhow!("DATABASE_URL in {} has no host", path.display()))?;
    let new_url = SecretString::from(url.to_string());

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(async {
        let admin = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&options.admin_url)
            .await
            .map_err(|err| {
                anyhow!(
                    "connect with --admin-url: {}",
                    scrub(&err.to_string(), &options.admin_url)
                )
            })?;
        let set = db::set_password(&admin, &role, &password).await;
        admin.close().await;
        set.map_err(|err| anyhow!("{err}"))
    })?;
    println!(
        "rotate-db-password: role {role} has a new password ({} characters)",
        password.expose_secret().len()
    );

    let lines: Vec<&str> = text.expose_secret().split_inclusive('\n').collect();
    let mut replaced = String::new();
    for (i, line) in lines.iter().enumerate() {
        if i == line_index {
            let ending = if line.ends_with('\n') { "\n" } else { "" };
            if is_credential {
                replaced.push_str(new_url.expose_secret());
            } else {
                replaced.push_str("DATABASE_URL=");
                replaced.push_str(new_url.expose_secret());
            }
            replaced.push_str(ending);
        } else {
            replaced.push_str(line);
        }
    }
    let replaced = SecretString::from(replaced);
    write_private(&path, replaced.expose_secret())?;
    println!("rotate-db-password: wrote {} (mode 0600)", path.display());

    match (&options.pid, &options.unit) {
        (Some(pid), _) => {
            let status = Command::new("kill")
                .args(["-HUP", &pid.to_string()])
                .status()
                .context("run kill")?;
            if !status.success() {
                bail!("kill -HUP {pid} failed: the file is updated; reload the daemon by hand");
            }
            println!(
                "rotate-db-password: sent SIGHUP to {pid}; its log says `applied=database.url`"
            );
        }
        (None, Some(unit)) => {
            let status = Command::new("systemctl")
                .args(["reload", unit])
                .status()
                .context("run systemctl")?;
            if !status.success() {
                bail!("systemctl reload {unit} failed: the file is updated; reload by hand");
            }
            println!(
                "rotate-db-password: reloaded {unit}; its journal says `applied=database.url`"
            );
        }
        (None, None) => println!(
            "rotate-db-password: now reload the daemon (systemctl reload cognitive-memory-mcp, or kill -HUP <pid>); until then it uses its open connections"
        ),
    }
    Ok(())
}

/// The line holding the URL and the URL: `DATABASE_URL=` (optionally `export `, quotes) in a
/// `.env` file, or the first non-empty line of a credential file.
fn find_url(text: &str, is_credential: bool) -> Option<(usize, SecretString)> {
    text.lines().enumerate().find_map(|(i, line)| {
        let line = line.trim();
        if is_credential {
            return (!line.is_empty()).then(|| (i, SecretString::from(line.to_owned())));
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let value = line.strip_prefix("DATABASE_URL=")?.trim();
        let value = value.trim_matches(|c| c == '"' || c == '\'');
        Some((i, SecretString::from(value.to_owned())))
    })
}

/// Writes a new file beside `path` at mode 0600 and renames it over `path`.
fn write_private(path: &Path, content: &str) -> Result<()> {
    let temporary = path.with_file_name(format!(
        ".{}.rotating",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("secret")
    ));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .with_context(|| format!("create {}", temporary.display()))?;
    file.write_all(content.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("write {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("replace {}", path.display()))
}

fn scrub(message: &str, url: &str) -> String {
    match Url::parse(url)
        .ok()
        .and_then(|u| u.password().map(str::to_owned))
    {
        Some(password) if !password.is_empty() => message.replace(&password, "[redacted]"),
        _ => message.to_owned(),
    }
}
