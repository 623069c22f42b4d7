//! `cognitive-memory-mcp backup`: a consistent `pg_dump` of the environment's database, written
//! atomically with a manifest, verified, recorded, and only then are old backups pruned.
//!
//! Consistency: a REPEATABLE READ transaction exports its snapshot and counts the rows in it;
//! `pg_dump --snapshot` dumps exactly that snapshot, so the manifest's row counts are the dump's
//! even while writers run. Every turn acknowledged before the backup started is in it.
//!
//! Files: `cognitive-memory-<env>-<UTC time>.dump` (custom format, mode 0600) and
//! `….manifest.json` beside it. Both are written to a hidden temporary name, fsynced, renamed
//! and the directory fsynced, so a crash or a full disk never leaves a file that looks complete.
//!
//! Tenants: a backup holds every tenant. Under the forced row-level security of the memory
//! tables (migration V7) the login role sees one tenant at a time and `pg_dump` refuses to dump
//! such tables, so the snapshot, its row counts and `pg_dump` use `backup.database_url`: a role
//! that bypasses row-level security (BYPASSRLS, or a superuser) and may read every table
//! (`pg_read_all_data`). Unset, `database.url` is used, and the backup fails with a hint rather
//! than produce a dump without the memories (docs/tenancy.md, "Backups").

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use config_core::{Environment, Loaded};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};
use tokio::io::AsyncReadExt;

use super::tools::{self, LibpqEnv, PgTools};
use super::{LifecycleError, configured_path, report, runtime, status};
use crate::cli::BackupArgs;
use crate::config::AppConfig;
use crate::exit;

const SNAPSHOT: &str = include_str!("sql/backup_snapshot.sql");
/// `format` of every manifest.
pub const MANIFEST_FORMAT: &str = "cognitive-memory-backup";
const MANIFEST_VERSION: u32 = 1;
/// Tables whose data every backup must hold.
const REQUIRED_DATA: [&str; 3] = ["l0_raw", "l2_insights", "environment_stamp"];
const SECONDS_PER_DAY: u64 = 86_400;

/// What a backup holds, written next to it as `<name>.manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    /// The dump's file name (no directory).
    pub file: String,
    /// The environment stamp of the database dumped.
    #[serde(with = "super::environment_name")]
    pub environment: Environment,
    pub database: String,
    /// The snapshot's time, UTC, RFC 3339.
    pub taken_at: String,
    pub taken_unix: i64,
    /// [`db::SchemaFingerprint::hash`] of the database at the time.
    pub schema_fingerprint: String,
    /// Applied migrations, e.g. "V1__initial_schema".
    pub migrations: Vec<String>,
    /// Rows per table in the dump.
    pub row_counts: BTreeMap<String, u64>,
    pub bytes: u64,
    /// Lower-case hex SHA-256 of the dump file.
    pub sha256: String,
    /// `pg_dump --version`.
    pub pg_dump_version: String,
    pub server_version: String,
    /// `cognitive-memory-mcp <version>`.
    pub tool_version: String,
}

/// A backup that passed [`verify`].
#[derive(Debug, Clone)]
pub struct Verified {
    pub path: PathBuf,
    pub manifest: Manifest,
}

/// The manifest's path for a dump at `dump`.
pub fn manifest_path(dump: &Path) -> PathBuf {
    dump.with_extension("manifest.json")
}

/// `backup [--to DIR]` and `backup --verify FILE`.
pub fn command(loaded: &Loaded<AppConfig>, config_root: &Path, args: &BackupArgs) -> u8 {
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let config = &loaded.config;
    if let Some(file) = &args.verify {
        return match runtime.block_on(verify(file, config.backup.pg_bin_dir.as_deref(), None)) {
            Ok(verified) => {
                let m = &verified.manifest;
                println!(
                    "OK {}: {} backup of {} taken {}, {} bytes, sha256 {}, {} turns, {} insights",
                    verified.path.display(),
                    m.environment,
                    m.database,
                    m.taken_at,
                    m.bytes,
                    m.sha256,
                    m.row_counts.get("l0_raw").copied().unwrap_or(0),
                    m.row_counts.get("l2_insights").copied().unwrap_or(0),
                );
                exit::OK
            }
            Err(err) => report(&err),
        };
    }
    let dir = match &args.to {
        Some(dir) => dir.clone(),
        None => configured_path(config_root, &config.backup.dir),
    };
    let environment = loaded.resolution.environment;
    match runtime.block_on(run(config, environment, &dir)) {
        Ok(outcome) => {
            println!("{outcome}");
            exit::OK
        }
        Err(err) => report(&err),
    }
}

/// What one backup run did.
#[derive(Debug)]
pub struct Outcome {
    pub verified: Verified,
    pub seconds: f64,
    pub pruned: Vec<PathBuf>,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = &self.verified.manifest;
        write!(
            f,
            "backup of {} ({}) written and verified: {} ({} bytes, {} turns, {} insights) in {:.1} s",
            m.database,
            m.environment,
            self.verified.path.display(),
            m.bytes,
            m.row_counts.get("l0_raw").copied().unwrap_or(0),
            m.row_counts.get("l2_insights").copied().unwrap_or(0),
            self.seconds
        )?;
        for pruned in &self.pruned {
            write!(f, "\npruned {}", pruned.display())?;
        }
        Ok(())
    }
}

/// Takes, verifies and records a backup of `environment`'s database into `dir`, then prunes.
/// The outcome, good or bad, is recorded in `lifecycle_status` whenever the database answers.
pub async fn run(
    config: &AppConfig,
    environment: Environment,
    dir: &Path,
) -> Result<Outcome, LifecycleError> {
    let pool = super::connect(&config.database).await?;
    let result = take(&pool, config, environment, dir).await;
    let recorded = match &result {
        Ok(outcome) => {
            let m = &outcome.verified.manifest;
            let detail = serde_json::json!({
                "file": m.file,
                "bytes": m.bytes,
                "raw_turns": m.row_counts.get("l0_raw"),
                "insights": m.row_counts.get("l2_insights"),
                "seconds": outcome.seconds,
            });
            status::record(&pool, "backup", Ok(&detail)).await
        }
        Err(err) => status::record(&pool, "backup", Err(&err.to_string())).await,
    };
    if let Err(err) = recorded {
        eprintln!("warning: cannot record the backup's outcome in lifecycle_status: {err}");
    }
    pool.close().await;
    result
}

async fn take(
    pool: &PgPool,
    config: &AppConfig,
    environment: Environment,
    dir: &Path,
) -> Result<Outcome, LifecycleError> {
    let started = Instant::now();
    let stamp = db::check_stamp(pool, environment).await?;
    let (major, server_version) = tools::server_version(pool).await?;
    let tools = tools::find(config.backup.pg_bin_dir.as_deref(), major)?;
    prepare_dir(dir)?;
    let fingerprint = db::fingerprint(pool).await?;
    // Every tenant's rows: read by the backup role (BYPASSRLS), see the module documentation.
    let (reader, libpq) = match &config.backup.database_url {
        Some(url) => (
            Some(reader_pool(url, config).await?),
            LibpqEnv::from_url(url)?,
        ),
        None => (None, LibpqEnv::from_url(&config.database.url)?),
    };
    let reading = reader.as_ref().unwrap_or(pool);

    // The snapshot stays open until pg_dump has finished reading it.
    let mut snapshot_tx = reading
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .map_err(LifecycleError::query("open the backup snapshot"))?;
    let row = sqlx::query(SNAPSHOT)
        .fetch_one(&mut *snapshot_tx)
        .await
        .map_err(LifecycleError::query("export the backup snapshot"))?;
    let get = |name: &str| -> Result<i64, LifecycleError> {
        row.try_get(name)
            .map_err(LifecycleError::query("read the backup snapshot"))
    };
    let mut row_counts = BTreeMap::new();
    for table in REQUIRED_DATA {
        row_counts.insert(table.to_owned(), u64::try_from(get(table)?).unwrap_or(0));
    }
    let snapshot: String = row
        .try_get("snapshot")
        .map_err(LifecycleError::query("read the backup snapshot"))?;
    let file_stamp: String = row
        .try_get("file_stamp")
        .map_err(LifecycleError::query("read the backup snapshot"))?;
    let taken_at: String = row
        .try_get("taken_at")
        .map_err(LifecycleError::query("read the backup snapshot"))?;
    let taken_unix = get("taken_unix")?;

    let name = format!("cognitive-memory-{environment}-{file_stamp}.dump");
    let path = dir.join(&name);
    let (bytes, sha256) = dump(&tools, &libpq, &snapshot, &path).await?;
    snapshot_tx
        .commit()
        .await
        .map_err(LifecycleError::query("close the backup snapshot"))?;
    if let Some(reader) = reader {
        reader.close().await;
    }

    let manifest = Manifest {
        format: MANIFEST_FORMAT.to_owned(),
        format_version: MANIFEST_VERSION,
        file: name,
        environment: stamp.environment,
        database: stamp.database,
        taken_at,
        taken_unix,
        schema_fingerprint: fingerprint.hash,
        migrations: fingerprint
            .migrations
            .iter()
            .map(ToString::to_string)
            .collect(),
        row_counts,
        bytes,
        sha256,
        pg_dump_version: tools.version.clone(),
        server_version,
        tool_version: format!("cognitive-memory-mcp {}", env!("CARGO_PKG_VERSION")),
    };
    let text = serde_json::to_vec_pretty(&manifest)
        .map_err(|err| LifecycleError::Failed(format!("cannot encode the manifest: {err}")))?;
    write_atomically(&manifest_path(&path), |file| file.write_all(&text)).inspect_err(|_| {
        // A dump without its manifest cannot be verified: take it away again.
        let _ = fs::remove_file(&path);
    })?;

    let verified = verify(
        &path,
        Some(tools.bin_dir.to_string_lossy().as_ref()),
        Some(major),
    )
    .await?;
    let pruned = prune(
        dir,
        environment,
        config.backup.keep_days,
        config.backup.keep_min,
        &verified,
    );
    Ok(Outcome {
        verified,
        seconds: started.elapsed().as_secs_f64(),
        pruned,
    })
}

/// A small pool of `backup.database_url`, the role that reads every tenant.
async fn reader_pool(url: &SecretString, config: &AppConfig) -> Result<PgPool, LifecycleError> {
    let mut options: sqlx::postgres::PgConnectOptions =
        url.expose_secret().trim().parse().map_err(|_| {
            LifecycleError::Setup(
                "backup.database_url is not a valid PostgreSQL URL (postgres://user:password@host:port/database)"
                    .to_owned(),
            )
        })?;
    if let Some(cert) = &config.database.ssl_root_cert {
        options = options.ssl_root_cert(cert.as_str());
    }
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_secs(
            config.database.acquire_timeout_secs.max(5),
        ))
        .connect_with(options)
        .await
        .map_err(|err| {
            LifecycleError::Database(db::DbError::Query {
                context: "connect with backup.database_url".to_owned(),
                // The driver's message names no password.
                reason: err.to_string(),
            })
        })
}

/// Creates the directory (mode 0700) if needed and proves it writable.
fn prepare_dir(dir: &Path) -> Result<(), LifecycleError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|err| {
            LifecycleError::Setup(format!(
                "cannot create the backup directory {} (backup.dir or --to): {err}",
                dir.display()
            ))
        })?;
    if !dir.is_dir() {
        return Err(LifecycleError::Setup(format!(
            "the backup directory {} (backup.dir or --to) is not a directory",
            dir.display()
        )));
    }
    Ok(())
}

/// Streams `pg_dump -Fc` into a temporary file, hashing on the way; renames it into place.
async fn dump(
    tools: &PgTools,
    libpq: &LibpqEnv,
    snapshot: &str,
    path: &Path,
) -> Result<(u64, String), LifecycleError> {
    let temp = temp_path(path);
    let mut file = create_private(&temp)?;
    let guard = RemoveOnDrop(Some(temp.clone()));
    let mut command = tokio::process::Command::new(tools.pg_dump());
    command
        .args(["--format=custom", "--no-owner", "--no-privileges"])
        .arg(format!("--snapshot={snapshot}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    libpq.apply(&mut command);
    let mut child = command.spawn().map_err(|err| {
        LifecycleError::Failed(format!("cannot run {}: {err}", tools.pg_dump().display()))
    })?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let errors = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let mut buffer = vec![0u8; 256 * 1024];
    let write_error = |err: std::io::Error| {
        LifecycleError::Failed(format!(
            "cannot write the backup to {}: {err}; nothing was kept (check the free space and permissions of the backup directory)",
            temp.display()
        ))
    };
    loop {
        let n = stdout.read(&mut buffer).await.map_err(|err| {
            LifecycleError::Failed(format!("cannot read pg_dump's output: {err}"))
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        file.write_all(&buffer[..n]).map_err(write_error)?;
        bytes += n as u64;
    }
    let status = child
        .wait()
        .await
        .map_err(|err| LifecycleError::Failed(format!("pg_dump did not finish: {err}")))?;
    let errors = errors.await.unwrap_or_default();
    if !status.success() {
        let hint = if errors.contains("row-level security") {
            " (the memory tables are under row-level security: set backup.database_url to a role with BYPASSRLS, see docs/tenancy.md)"
        } else {
            ""
        };
        return Err(LifecycleError::Failed(format!(
            "pg_dump failed ({status}): {}{hint}; nothing was kept",
            errors.trim()
        )));
    }
    file.sync_all().map_err(write_error)?;
    drop(file);
    fs::rename(&temp, path).map_err(LifecycleError::io(format!(
        "cannot move the backup into place at {}",
        path.display()
    )))?;
    std::mem::forget(guard);
    sync_dir(path);
    Ok((bytes, hex(&hasher.finalize())))
}

/// Writes a small file atomically with mode 0600.
fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> Result<(), LifecycleError> {
    let temp = temp_path(path);
    let guard = RemoveOnDrop(Some(temp.clone()));
    let mut file = create_private(&temp)?;
    let context = || format!("cannot write {}", path.display());
    write(&mut file).map_err(LifecycleError::io(context()))?;
    file.sync_all().map_err(LifecycleError::io(context()))?;
    drop(file);
    fs::rename(&temp, path).map_err(LifecycleError::io(context()))?;
    std::mem::forget(guard);
    sync_dir(path);
    Ok(())
}

fn create_private(path: &Path) -> Result<File, LifecycleError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|err| {
            LifecycleError::Setup(format!(
                "cannot create {} in the backup directory: {err}",
                path.display()
            ))
        })
}

/// `.<name>.partial` in the same directory, so the rename is atomic and a listing skips it.
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.partial"))
}

/// Makes a rename durable. A failure here is not worth failing the backup for.
fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent()
        && let Ok(dir) = File::open(dir)
    {
        let _ = dir.sync_all();
    }
}

/// Removes a half-written file when the write fails.
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = fs::remove_file(path);
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 and size of a file.
fn checksum(path: &Path) -> std::io::Result<(u64, String)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        bytes += n as u64;
    }
    Ok((bytes, hex(&hasher.finalize())))
}

/// Reads and checks a dump's manifest, size and checksum (no tools needed).
pub fn check_file(path: &Path) -> Result<Manifest, LifecycleError> {
    let manifest_file = manifest_path(path);
    let text = fs::read_to_string(&manifest_file).map_err(|err| {
        LifecycleError::Damaged(format!(
            "backup {} has no readable manifest {}: {err}; without it the backup cannot be verified",
            path.display(),
            manifest_file.display()
        ))
    })?;
    let manifest: Manifest = serde_json::from_str(&text).map_err(|err| {
        LifecycleError::Damaged(format!(
            "the manifest {} is not valid: {err}",
            manifest_file.display()
        ))
    })?;
    if manifest.format != MANIFEST_FORMAT || manifest.format_version != MANIFEST_VERSION {
        return Err(LifecycleError::Damaged(format!(
            "{} is not a version {MANIFEST_VERSION} {MANIFEST_FORMAT} manifest",
            manifest_file.display()
        )));
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    if name.as_deref() != Some(manifest.file.as_str()) {
        return Err(LifecycleError::Damaged(format!(
            "the manifest {} describes {}, not {}",
            manifest_file.display(),
            manifest.file,
            path.display()
        )));
    }
    let (bytes, sha256) = checksum(path).map_err(|err| {
        LifecycleError::Damaged(format!("cannot read backup {}: {err}", path.display()))
    })?;
    if bytes != manifest.bytes {
        return Err(LifecycleError::Damaged(format!(
            "backup {} is {bytes} bytes, but its manifest says {}: the file is truncated or damaged; use another backup",
            path.display(),
            manifest.bytes
        )));
    }
    if sha256 != manifest.sha256 {
        return Err(LifecycleError::Damaged(format!(
            "backup {} does not match its manifest's SHA-256 ({sha256} instead of {}): the file is damaged; use another backup",
            path.display(),
            manifest.sha256
        )));
    }
    Ok(manifest)
}

/// Checks a backup without restoring it: manifest, size, SHA-256, and `pg_restore --list` must
/// read the archive and find the data of every memory table. `major` is the tools' major
/// version; without it, that of the `pg_dump` which made the backup.
pub async fn verify(
    path: &Path,
    pg_bin_dir: Option<&str>,
    major: Option<u32>,
) -> Result<Verified, LifecycleError> {
    let manifest = check_file(path)?;
    let major = match major {
        Some(major) => major,
        None => manifest
            .pg_dump_version
            .split(") ")
            .nth(1)
            .and_then(|v| v.split('.').next())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                LifecycleError::Damaged(format!(
                    "the manifest of {} names no pg_dump version",
                    path.display()
                ))
            })?,
    };
    let tools = tools::find(pg_bin_dir, major)?;
    let output = tokio::process::Command::new(tools.pg_restore())
        .arg("--list")
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|err| {
            LifecycleError::Failed(format!(
                "cannot run {}: {err}",
                tools.pg_restore().display()
            ))
        })?;
    if !output.status.success() {
        return Err(LifecycleError::Damaged(format!(
            "pg_restore cannot read backup {}: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let listing = String::from_utf8_lossy(&output.stdout);
    for table in REQUIRED_DATA {
        let needle = format!("TABLE DATA public {table} ");
        if !listing.lines().any(|line| line.contains(&needle)) {
            return Err(LifecycleError::Damaged(format!(
                "backup {} holds no data of table {table}",
                path.display()
            )));
        }
    }
    Ok(Verified {
        path: path.to_path_buf(),
        manifest,
    })
}

/// Deletes backups of `environment` in `dir` older than `keep_days`, keeping the `keep_min`
/// newest good ones (manifest, size and SHA-256 check) however old, and always `newest`.
/// Damaged backups never count as good; a damaged one is deleted only once expired.
/// Returns what was deleted; a file that cannot be deleted is reported and kept.
pub fn prune(
    dir: &Path,
    environment: Environment,
    keep_days: u32,
    keep_min: u32,
    newest: &Verified,
) -> Vec<PathBuf> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let horizon = i64::try_from(now.saturating_sub(u64::from(keep_days) * SECONDS_PER_DAY))
        .unwrap_or(i64::MAX);
    let prefix = format!("cognitive-memory-{environment}-");
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    // (taken_unix, path, manifest when it parses)
    let mut backups: Vec<(i64, PathBuf)> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name().is_some_and(|name| {
                let name = name.to_string_lossy();
                name.starts_with(&prefix) && name.ends_with(".dump")
            })
        })
        .filter(|path| *path != newest.path)
        .filter_map(|path| {
            let text = fs::read_to_string(manifest_path(&path)).ok()?;
            let manifest: Manifest = serde_json::from_str(&text).ok()?;
            Some((manifest.taken_unix, path))
        })
        .collect();
    backups.sort_by(|a, b| b.cmp(a));
    let mut good = 1u32; // `newest` verified just now
    let mut pruned = Vec::new();
    for (taken, path) in backups {
        let expired = taken <= horizon;
        if good < keep_min && check_file(&path).is_ok() {
            good += 1;
            continue;
        }
        if !expired {
            continue;
        }
        let manifest = manifest_path(&path);
        match fs::remove_file(&path) {
            Ok(()) => {
                let _ = fs::remove_file(&manifest);
                pruned.push(path);
            }
            Err(err) => eprintln!("warning: cannot prune {}: {err}", path.display()),
        }
    }
    pruned
}
