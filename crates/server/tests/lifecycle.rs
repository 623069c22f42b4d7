//! Backups, restores, pruning and export/import through the real binary against real
//! PostgreSQL clusters (the harness's), with the real pg_dump, pg_restore and psql:
//! - the restore drill: 100,000 turns and insights, a backup taken while writers run, the
//!   database dropped and restored: every turn acknowledged before the backup started is back,
//!   links intact, fingerprint equal, row counts equal to the manifest;
//! - refusals (exit 78, naming both environments, target unchanged) and the deliberate refresh
//!   of a lower environment, which restamps it and names who did it;
//! - damaged and truncated backups found by `--verify` and by `restore` before anything changes;
//! - pruning by keep_days/keep_min, and a failing backup that leaves the others untouched;
//! - export → import into another environment's empty database → export: the same memories.

#[path = "support/daemon.rs"]
mod daemon;

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use config_core::Environment;
use daemon::{BIN, TOKEN, config_root, stamped_database};
use pg_harness::{TestCluster, TestDatabase};
use serde_json::Value;
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};

/// Runs the binary as an operator would, with only PATH and the given variables.
/// The superuser URL of the database `url` names (see `cli_with_input`).
fn backup_url_for(url: &str) -> String {
    let database = url
        .rsplit('/')
        .next()
        .and_then(|tail| tail.split('?').next())
        .unwrap_or("postgres");
    TestCluster::shared().admin_url(database)
}

fn cli(root: &Path, environment: &str, url: &str, args: &[&str], extra: &[(&str, &str)]) -> Run {
    cli_with_input(root, environment, url, args, extra, None)
}

fn cli_with_input(
    root: &Path,
    environment: &str,
    url: &str,
    args: &[&str],
    extra: &[(&str, &str)],
    input: Option<&[u8]>,
) -> Run {
    let mut command = Command::new(BIN);
    command
        .args(["--env", environment, "--config-root"])
        .arg(root)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", url)
        .env("MCP_AUTH_TOKEN", TOKEN)
        .env("USER", "drill-operator")
        // Backups read every tenant through a role that bypasses row-level security (V7): here
        // the cluster's superuser on the same database.
        .env("COGMEM__BACKUP__DATABASE_URL", backup_url_for(url))
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in extra {
        command.env(name, value);
    }
    let mut child = command.spawn().unwrap();
    if let Some(input) = input {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input).unwrap();
    }
    let output = child.wait_with_output().unwrap();
    Run(output)
}

struct Run(Output);

impl Run {
    fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    fn expect(self, code: i32) -> Self {
        assert_eq!(
            self.code(),
            code,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
}

async fn pool(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(8)
        // Plain SQL on the memory tables runs as tenant `default` (row-level security, V7).
        .connect(&pg_harness::url_with_tenant(url, "default"))
        .await
        .unwrap()
}

/// `turns` turns in sessions of 100 and `insights` insights citing up to 3 of them, by COPY.
async fn seed(url: &str, turns: usize, insights: usize) {
    let mut conn = PgConnection::connect(&pg_harness::url_with_tenant(url, "default"))
        .await
        .unwrap();
    // PostgreSQL refuses COPY FROM into a table under row-level security (V7): the owner lifts
    // it for the load (rows are tenant `default`, the session's setting) and restores it below.
    sqlx::raw_sql(
        "ALTER TABLE l0_raw DISABLE ROW LEVEL SECURITY; ALTER TABLE l2_insights DISABLE ROW LEVEL SECURITY",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let mut copy = conn
        .copy_in_raw("COPY l0_raw (session_id, speaker, content, metadata) FROM STDIN")
        .await
        .unwrap();
    let mut buffer = String::new();
    for n in 0..turns {
        buffer.push_str(&format!(
            "s-{:05}\t{}\tturn {n} about topic {} and more words\t{{\"n\": {n}}}\n",
            n / 100,
            if n % 2 == 0 { "user" } else { "assistant" },
            n % 97
        ));
        if buffer.len() > 1 << 20 {
            copy.send(buffer.as_bytes()).await.unwrap();
            buffer.clear();
        }
    }
    copy.send(buffer.as_bytes()).await.unwrap();
    copy.finish().await.unwrap();
    let (first, last): (i64, i64) = sqlx::query_as("SELECT min(id), max(id) FROM l0_raw")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let mut copy = conn
        .copy_in_raw("COPY l2_insights (content, source_ids, tags, importance) FROM STDIN")
        .await
        .unwrap();
    let mut buffer = String::new();
    let span = last - first + 1;
    for n in 0..insights {
        let a = first + (n as i64 * 7919) % span;
        let b = first + (n as i64 * 104_729) % span;
        let (a, b) = (a.min(b), a.max(b));
        let sources = if a == b {
            format!("{{{a}}}")
        } else {
            format!("{{{a},{b}}}")
        };
        buffer.push_str(&format!(
            "insight {n} about topic {}\t{sources}\t{{fact,t{}}}\t0.{}\n",
            n % 97,
            n % 5,
            n % 10
        ));
    }
    copy.send(buffer.as_bytes()).await.unwrap();
    copy.finish().await.unwrap();
    sqlx::raw_sql(
        "ALTER TABLE l0_raw ENABLE ROW LEVEL SECURITY; ALTER TABLE l2_insights ENABLE ROW LEVEL SECURITY",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
}

fn manifest_of(dump: &Path) -> Value {
    let text = fs::read_to_string(dump.with_extension("manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The dumps in `dir`, oldest first.
fn dumps(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "dump"))
        .collect();
    found.sort();
    found
}

/// The backup file named on the command's stdout.
fn backup_file(run: &Run) -> PathBuf {
    let out = run.stdout();
    let path = out
        .split_whitespace()
        .find(|word| word.ends_with(".dump"))
        .unwrap_or_else(|| panic!("no backup file named in: {out}"));
    PathBuf::from(path)
}

async fn counts(pool: &PgPool) -> (i64, i64) {
    sqlx::query_as("SELECT (SELECT count(*) FROM l0_raw), (SELECT count(*) FROM l2_insights)")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn stamp_of(pool: &PgPool) -> (String, String) {
    sqlx::query_as("SELECT environment, stamped_by FROM environment_stamp")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Drops the database and creates it again, empty, for the same owner.
async fn drop_and_recreate(database: &TestDatabase) {
    let cluster = TestCluster::shared();
    let mut admin = PgConnection::connect(&cluster.admin_url("postgres"))
        .await
        .unwrap();
    for statement in [
        format!("DROP DATABASE {} WITH (FORCE)", database.name),
        format!("CREATE DATABASE {} OWNER {}", database.name, database.owner),
    ] {
        sqlx::raw_sql(AssertSqlSafe(statement))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    admin.close().await.unwrap();
}

/// An acknowledged write: when, the id, and for an insight the turns it cites.
type Ack = (Instant, i64, Option<Vec<i64>>);

/// Writers storing turns and insights citing them until stopped; every acknowledged write is
/// logged with the time of its acknowledgement.
struct Writers {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<Ack>>>,
    failures: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    fn start(pool: &PgPool, n: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..n)
            .map(|w| {
                let (pool, stop, acked, failures) =
                    (pool.clone(), stop.clone(), acked.clone(), failures.clone());
                tokio::spawn(async move {
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let turn: Result<i64, _> = sqlx::query_scalar(
                            "INSERT INTO l0_raw (session_id, speaker, content) VALUES ($1, 'user', $2) RETURNING id",
                        )
                        .bind(format!("writer-{w}"))
                        .bind(format!("live write {w}/{i}"))
                        .fetch_one(&pool)
                        .await;
                        match turn {
                            Ok(id) => {
                                acked.lock().unwrap().push((Instant::now(), id, None));
                                if i.is_multiple_of(5) {
                                    let insight: Result<i64, _> = sqlx::query_scalar(
                                        "INSERT INTO l2_insights (content, source_ids) VALUES ($1, $2) RETURNING id",
                                    )
                                    .bind(format!("live insight {w}/{i}"))
                                    .bind(vec![id])
                                    .fetch_one(&pool)
                                    .await;
                                    match insight {
                                        Ok(insight) => acked.lock().unwrap().push((Instant::now(), insight, Some(vec![id]))),
                                        Err(err) => failures.lock().unwrap().push(err.to_string()),
                                    }
                                }
                            }
                            Err(err) => failures.lock().unwrap().push(err.to_string()),
                        }
                    }
                })
            })
            .collect();
        Self {
            stop,
            acked,
            failures,
            tasks,
        }
    }

    /// Waits (up to a minute, for a loaded machine) until a write acknowledged after `after`.
    async fn acknowledged_after(&self, after: Instant) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self
            .acked
            .lock()
            .unwrap()
            .iter()
            .any(|(at, _, _)| *at > after)
        {
            assert!(
                Instant::now() < deadline,
                "no write acknowledged within a minute"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) -> (Vec<Ack>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        let acked = self.acked.lock().unwrap().clone();
        let failures = self.failures.lock().unwrap().clone();
        (acked, failures)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restore_drill_every_acknowledged_turn_links_fingerprint_and_counts_come_back() {
    let database = stamped_database(Environment::Test).await;
    let root = config_root();
    let backups = root.path().join("backups");
    let started = Instant::now();
    seed(&database.url, 100_000, 20_000).await;
    let seeded = started.elapsed();
    let pool = pool(&database.url).await;
    let before = db::fingerprint(&pool).await.unwrap();

    let writers_started = Instant::now();
    let writers = Writers::start(&pool, 4);
    writers.acknowledged_after(writers_started).await;
    let backup_started = Instant::now();
    let root_path = root.path().to_path_buf();
    let url = database.url.clone();
    let run = tokio::task::spawn_blocking(move || cli(&root_path, "test", &url, &["backup"], &[]))
        .await
        .unwrap()
        .expect(0);
    let backup_secs = backup_started.elapsed().as_secs_f64();
    writers.acknowledged_after(backup_started).await;
    let (acked, failures) = writers.stop().await;
    assert!(failures.is_empty(), "writers failed: {failures:?}");
    let before_backup: Vec<&Ack> = acked
        .iter()
        .filter(|(at, _, _)| *at < backup_started)
        .collect();
    let during_backup = acked.len() - before_backup.len();
    assert!(
        !before_backup.is_empty() && during_backup > 0,
        "writers ran before and during the backup"
    );

    let dump = backup_file(&run);
    assert_eq!(dumps(&backups), std::slice::from_ref(&dump));
    let mode = fs::metadata(&dump).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the backup is private");
    let manifest = manifest_of(&dump);
    assert_eq!(manifest["environment"], "test");
    assert_eq!(manifest["schema_fingerprint"], before.hash.as_str());
    let turns_in_backup = manifest["row_counts"]["l0_raw"].as_i64().unwrap();
    let insights_in_backup = manifest["row_counts"]["l2_insights"].as_i64().unwrap();
    assert!(
        turns_in_backup >= 100_000 && insights_in_backup >= 20_000,
        "{manifest}"
    );
    pool.close().await;

    // The disaster: the database is gone.
    drop_and_recreate(&database).await;
    let restore_started = Instant::now();
    let from = dump.to_string_lossy().into_owned();
    let run = cli(
        root.path(),
        "test",
        &database.url,
        &["restore", "--from", &from],
        &[],
    )
    .expect(0);
    let restore_secs = restore_started.elapsed().as_secs_f64();
    assert!(run.stdout().contains("fingerprint"), "{}", run.stdout());

    let pool = self::pool(&database.url).await;
    let (turns, insights) = counts(&pool).await;
    assert_eq!(
        (turns, insights),
        (turns_in_backup, insights_in_backup),
        "row counts equal the manifest"
    );
    let turn_ids: Vec<i64> = before_backup
        .iter()
        .filter(|(_, _, s)| s.is_none())
        .map(|(_, id, _)| *id)
        .collect();
    let present: i64 = sqlx::query_scalar("SELECT count(*) FROM l0_raw WHERE id = ANY($1)")
        .bind(&turn_ids)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        present as usize,
        turn_ids.len(),
        "every turn acknowledged before the backup started is back"
    );
    for (_, id, sources) in before_backup.iter().filter(|(_, _, s)| s.is_some()) {
        let restored: Vec<i64> =
            sqlx::query_scalar("SELECT source_ids FROM l2_insights WHERE id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(
            Some(&restored),
            sources.as_ref(),
            "insight {id} keeps its links"
        );
    }
    let dangling: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM l2_insights i, unnest(i.source_ids) s(id)
         WHERE NOT EXISTS (SELECT 1 FROM l0_raw r WHERE r.id = s.id)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(dangling, 0, "no insight cites a missing turn");
    let links: i64 = sqlx::query_scalar("SELECT sum(cardinality(source_ids)) FROM l2_insights")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(links > 20_000);
    let after = db::fingerprint(&pool).await.unwrap();
    assert_eq!(after.hash, before.hash, "the schema fingerprint is equal");
    assert_eq!(stamp_of(&pool).await.0, "test");
    // The restored database takes writes again (its identity sequences came back too).
    sqlx::query("INSERT INTO l0_raw (session_id, speaker, content) VALUES ('after', 'user', 'x')")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    println!(
        "drill: seeded 100,000 turns + 20,000 insights in {:.1} s; backup {backup_secs:.1} s with {} writes during it; restore {restore_secs:.1} s",
        seeded.as_secs_f64(),
        during_backup
    );
}

#[tokio::test]
async fn wrong_environment_restores_are_refused_naming_both_and_change_nothing() {
    let development = stamped_database(Environment::Development).await;
    let production = stamped_database(Environment::Production).await;
    seed(&development.url, 300, 30).await;
    seed(&production.url, 200, 20).await;
    let root = config_root();
    let dev_backup = backup_file(
        &cli(
            root.path(),
            "development",
            &development.url,
            &["backup"],
            &[],
        )
        .expect(0),
    );
    let prod_backup =
        backup_file(&cli(root.path(), "production", &production.url, &["backup"], &[]).expect(0));
    let dev_pool = pool(&development.url).await;
    let prod_pool = pool(&production.url).await;

    // A development backup never goes into production, not even with --replace.
    let dev_file = dev_backup.to_string_lossy().into_owned();
    for extra in [
        &[][..],
        &["--replace"][..],
        &["--replace", "--from-environment", "development"][..],
    ] {
        let mut args = vec!["restore", "--from", &dev_file];
        args.extend_from_slice(extra);
        let run = cli(root.path(), "production", &production.url, &args, &[]).expect(78);
        let err = run.stderr();
        assert!(
            err.contains("development") && err.contains("production"),
            "{err}"
        );
    }
    assert_eq!(
        counts(&prod_pool).await,
        (200, 20),
        "production is unchanged"
    );
    assert_eq!(stamp_of(&prod_pool).await.0, "production");

    // A production backup goes into development only as a deliberate refresh.
    let prod_file = prod_backup.to_string_lossy().into_owned();
    let run = cli(
        root.path(),
        "development",
        &development.url,
        &["restore", "--from", &prod_file, "--replace"],
        &[],
    )
    .expect(78);
    let err = run.stderr();
    assert!(
        err.contains("production")
            && err.contains("development")
            && err.contains("--from-environment production"),
        "{err}"
    );
    assert_eq!(
        counts(&dev_pool).await,
        (300, 30),
        "development is unchanged"
    );
    // Without --replace a database with memories is refused, also for a refresh.
    let run = cli(
        root.path(),
        "development",
        &development.url,
        &[
            "restore",
            "--from",
            &prod_file,
            "--from-environment",
            "production",
        ],
        &[],
    )
    .expect(78);
    assert!(run.stderr().contains("--replace"), "{}", run.stderr());
    assert_eq!(counts(&dev_pool).await, (300, 30));
    // A backup restored into a database stamped for another environment than the one running.
    let run = cli(
        root.path(),
        "development",
        &production.url,
        &["restore", "--from", &dev_file, "--replace"],
        &[],
    )
    .expect(78);
    assert!(
        run.stderr().contains("production") && run.stderr().contains("development"),
        "{}",
        run.stderr()
    );
    assert_eq!(counts(&prod_pool).await, (200, 20));

    // The refresh: production's memories in development, restamped, naming who did it.
    let run = cli(
        root.path(),
        "development",
        &development.url,
        &[
            "restore",
            "--from",
            &prod_file,
            "--from-environment",
            "production",
            "--replace",
        ],
        &[],
    )
    .expect(0);
    assert!(
        run.stderr().contains("drill-operator"),
        "the refresh names who did it: {}",
        run.stderr()
    );
    dev_pool.close().await;
    let dev_pool = pool(&development.url).await;
    assert_eq!(counts(&dev_pool).await, (200, 20));
    let (environment, stamped_by) = stamp_of(&dev_pool).await;
    assert_eq!(environment, "development");
    assert!(
        stamped_by.contains("--from-environment production")
            && stamped_by.contains("drill-operator"),
        "{stamped_by}"
    );
    // And the daemon's own check agrees: development may use it, production may not.
    db::check_stamp(&dev_pool, Environment::Development)
        .await
        .unwrap();
    dev_pool.close().await;
    prod_pool.close().await;
}

#[tokio::test]
async fn damaged_and_truncated_backups_are_found_by_verify_and_by_restore_before_anything_changes()
{
    let database = stamped_database(Environment::Test).await;
    seed(&database.url, 2_000, 200).await;
    let root = config_root();
    let good = backup_file(&cli(root.path(), "test", &database.url, &["backup"], &[]).expect(0));
    let good_text = good.to_string_lossy().into_owned();
    let run = cli(
        root.path(),
        "test",
        &database.url,
        &["backup", "--verify", &good_text],
        &[],
    )
    .expect(0);
    assert!(run.stdout().starts_with("OK "), "{}", run.stdout());

    let copy_to = |name: &str| {
        let dir = root.path().join(name);
        fs::create_dir_all(&dir).unwrap();
        let dump = dir.join(good.file_name().unwrap());
        fs::copy(&good, &dump).unwrap();
        fs::copy(
            good.with_extension("manifest.json"),
            dump.with_extension("manifest.json"),
        )
        .unwrap();
        dump
    };
    let corrupted = copy_to("corrupted");
    let mut bytes = fs::read(&corrupted).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    fs::write(&corrupted, &bytes).unwrap();
    let truncated = copy_to("truncated");
    let bytes = fs::read(&truncated).unwrap();
    fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).unwrap();
    // Garbage with a manifest that matches it: only pg_restore can tell.
    let forged = copy_to("forged");
    fs::write(&forged, b"PGDMP this is not an archive at all").unwrap();
    let mut manifest = manifest_of(&forged);
    let digest = {
        use sha2::Digest;
        let hash = sha2::Sha256::digest(fs::read(&forged).unwrap());
        hash.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    manifest["sha256"] = Value::from(digest);
    manifest["bytes"] = Value::from(fs::metadata(&forged).unwrap().len());
    fs::write(forged.with_extension("manifest.json"), manifest.to_string()).unwrap();
    let missing_manifest = copy_to("unmanifested");
    fs::remove_file(missing_manifest.with_extension("manifest.json")).unwrap();

    let pool = pool(&database.url).await;
    for (file, says) in [
        (&corrupted, "SHA-256"),
        (&truncated, "truncated"),
        (&forged, "pg_restore cannot read"),
        (&missing_manifest, "no readable manifest"),
    ] {
        let file = file.to_string_lossy().into_owned();
        let run = cli(
            root.path(),
            "test",
            &database.url,
            &["backup", "--verify", &file],
            &[],
        )
        .expect(1);
        assert!(
            run.stderr().contains(says),
            "verify {file}: {}",
            run.stderr()
        );
        let run = cli(
            root.path(),
            "test",
            &database.url,
            &["restore", "--from", &file, "--replace"],
            &[],
        )
        .expect(1);
        assert!(
            run.stderr().contains(says),
            "restore {file}: {}",
            run.stderr()
        );
        assert_eq!(
            counts(&pool).await,
            (2_000, 200),
            "nothing was dropped for {file}"
        );
    }
    // The good one restores over the same data.
    let run = cli(
        root.path(),
        "test",
        &database.url,
        &["restore", "--from", &good_text, "--replace"],
        &[],
    )
    .expect(0);
    assert!(
        run.stdout().contains("2000 turns, 200 insights"),
        "{}",
        run.stdout()
    );
    pool.close().await;
}

#[tokio::test]
async fn pruning_keeps_keep_min_and_a_failing_backup_leaves_the_others_untouched() {
    let database = stamped_database(Environment::Development).await;
    seed(&database.url, 500, 50).await;
    let root = config_root();
    let dir = root.path().join("backups");
    let backup = |extra: &[(&str, &str)]| {
        cli(
            root.path(),
            "development",
            &database.url,
            &["backup"],
            extra,
        )
    };
    // Development keeps no days and one backup: each new good backup replaces the last.
    let first = backup_file(&backup(&[]).expect(0));
    let second_run = backup(&[]).expect(0);
    let second = backup_file(&second_run);
    assert!(
        second_run
            .stdout()
            .contains(&format!("pruned {}", first.display())),
        "{}",
        second_run.stdout()
    );
    assert_eq!(dumps(&dir), std::slice::from_ref(&second));
    assert!(!first.with_extension("manifest.json").exists());

    // keep_min 2: two stay.
    let keep_two = [("COGMEM__BACKUP__KEEP_MIN", "2")];
    let third = backup_file(&backup(&keep_two).expect(0));
    assert_eq!(dumps(&dir), [second.clone(), third.clone()]);
    // A damaged backup never counts as good: the older good one is kept instead of it.
    let mut bytes = fs::read(&third).unwrap();
    bytes[100] ^= 0xff;
    fs::write(&third, &bytes).unwrap();
    let fourth = backup_file(&backup(&keep_two).expect(0));
    assert_eq!(dumps(&dir), [second.clone(), fourth.clone()]);

    // Failing backups: wrong tools (78), an unreachable database (75). Nothing is pruned or
    // left half-written, and the failure is recorded beside the last good backup.
    let before: Vec<(PathBuf, Vec<u8>)> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.clone(), fs::read(&p).unwrap()))
        .collect();
    let run = backup(&[("COGMEM__BACKUP__PG_BIN_DIR", "/nonexistent/bin")]).expect(78);
    assert!(
        run.stderr().contains("backup.pg_bin_dir"),
        "{}",
        run.stderr()
    );
    let unreachable = "postgres://nobody:Canary-7d1f@127.0.0.1:9/nothing?sslmode=disable";
    let run = cli(
        root.path(),
        "development",
        unreachable,
        &["backup"],
        &[("COGMEM__DATABASE__CONNECT_WAIT_SECS", "1")],
    )
    .expect(75);
    assert!(!run.stderr().contains("Canary-7d1f"), "{}", run.stderr());
    let after: Vec<(PathBuf, Vec<u8>)> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.clone(), fs::read(&p).unwrap()))
        .collect();
    assert_eq!(before.len(), after.len(), "no file added or removed");
    assert!(
        before.iter().all(|b| after.contains(b)),
        "every file unchanged"
    );

    let pool = pool(&database.url).await;
    let status = cognitive_memory_mcp::lifecycle::read_status(&pool)
        .await
        .unwrap();
    assert!(
        status
            .backup
            .last_good_file
            .as_deref()
            .is_some_and(|f| fourth.ends_with(f)),
        "{status:?}"
    );
    assert!(
        status
            .backup
            .last_good_age_secs
            .is_some_and(|age| age < 600),
        "{status:?}"
    );
    assert!(
        status
            .backup
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("pg_bin_dir")),
        "{status:?}"
    );
    pool.close().await;

    // doctor reports the age of the last good backup and the failed attempt.
    let run = cli(root.path(), "development", &database.url, &["doctor"], &[]);
    let line = run
        .stdout()
        .lines()
        .find(|l| l.contains("db-backup"))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no db-backup line:\n{}", run.stdout()));
    assert!(
        line.starts_with("WARN") && line.contains("last good backup") && line.contains("failed"),
        "{line}"
    );
}

#[tokio::test]
async fn export_then_import_into_another_environment_then_export_gives_the_same_memories() {
    let source = stamped_database(Environment::Test).await;
    let target = stamped_database(Environment::Staging).await;
    let root = config_root();
    let pool = pool(&source.url).await;
    let mut turn_ids = Vec::new();
    for n in 0..40 {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO l0_raw (session_id, speaker, content, metadata, created_at)
             VALUES ($1, $2, $3, $4::jsonb, now() - make_interval(mins => $5)) RETURNING id",
        )
        .bind(format!("session-{}", n % 4))
        .bind(if n % 2 == 0 { "user" } else { "assistant" })
        .bind(format!("turn {n}: «unicode» \"quotes\"\ttab\nnewline"))
        .bind(format!(
            "{{\"n\": {n}, \"nested\": {{\"a\": [1, 2.5, null]}}}}"
        ))
        .bind(100 - n)
        .fetch_one(&pool)
        .await
        .unwrap();
        turn_ids.push(id);
    }
    // Two identical turns (same time too): both must survive.
    for _ in 0..2 {
        sqlx::query("INSERT INTO l0_raw (session_id, speaker, content, created_at) VALUES ('twins', 'user', 'same', '2026-01-01T00:00:00Z')")
            .execute(&pool)
            .await
            .unwrap();
    }
    // Gaps in the ids, as after a forget.
    sqlx::query("DELETE FROM l0_raw WHERE id = ANY($1)")
        .bind(&turn_ids[10..15])
        .execute(&pool)
        .await
        .unwrap();
    for n in 0..10 {
        let sources: Vec<i64> = [turn_ids[20 + n], turn_ids[n]]
            .into_iter()
            .filter(|id| !turn_ids[10..15].contains(id))
            .collect();
        sqlx::query("INSERT INTO l2_insights (content, source_ids, tags, importance) VALUES ($1, $2, $3, $4)")
            .bind(format!("insight {n}"))
            .bind(&sources)
            .bind(vec![format!("tag{n}"), "common".to_owned()])
            .bind(0.1f32 * n as f32)
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;

    let first = cli(root.path(), "test", &source.url, &["export"], &[])
        .expect(0)
        .stdout();
    assert_eq!(first.lines().count(), 1 + 37 + 10 + 1, "{first}");
    let run = cli_with_input(
        root.path(),
        "staging",
        &target.url,
        &["import"],
        &[],
        Some(first.as_bytes()),
    )
    .expect(0);
    assert!(
        run.stdout().contains("37 turn(s) added") && run.stdout().contains("10 insight(s) added"),
        "{}",
        run.stdout()
    );
    let second = cli(root.path(), "staging", &target.url, &["export"], &[])
        .expect(0)
        .stdout();
    let body = |text: &str| text.lines().skip(1).map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(body(&first), body(&second), "the same memories and links");
    assert!(
        second
            .lines()
            .next()
            .unwrap()
            .contains("\"environment\":\"staging\"")
    );

    // Importing again adds nothing.
    let run = cli_with_input(
        root.path(),
        "staging",
        &target.url,
        &["import"],
        &[],
        Some(first.as_bytes()),
    )
    .expect(0);
    assert!(
        run.stdout().contains("0 turn(s) added, 37 already present")
            && run
                .stdout()
                .contains("0 insight(s) added, 10 already present"),
        "{}",
        run.stdout()
    );
    // A truncated or malformed file changes nothing.
    let target_pool = self::pool(&target.url).await;
    let truncated: String = first.lines().take(20).map(|l| format!("{l}\n")).collect();
    let fresh = stamped_database(Environment::Staging).await;
    let run = cli_with_input(
        root.path(),
        "staging",
        &fresh.url,
        &["import"],
        &[],
        Some(truncated.as_bytes()),
    )
    .expect(1);
    assert!(run.stderr().contains("truncated"), "{}", run.stderr());
    let fresh_pool = self::pool(&fresh.url).await;
    assert_eq!(counts(&fresh_pool).await, (0, 0));
    let mut broken: Vec<String> = first.lines().map(str::to_owned).collect();
    broken[5] = "{\"kind\":\"turn\",\"ref\":5}".to_owned();
    let run = cli_with_input(
        root.path(),
        "staging",
        &fresh.url,
        &["import"],
        &[],
        Some(broken.join("\n").as_bytes()),
    )
    .expect(1);
    assert!(run.stderr().contains("line 6"), "{}", run.stderr());
    assert_eq!(counts(&fresh_pool).await, (0, 0));
    assert_eq!(counts(&target_pool).await, (37, 10));

    // A session export holds that session and the insights citing it, links inside it only.
    let session = cli(
        root.path(),
        "test",
        &source.url,
        &["export", "--session", "session-0"],
        &[],
    )
    .expect(0)
    .stdout();
    let lines: Vec<Value> = session
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let turns: HashSet<u64> = lines
        .iter()
        .filter(|l| l["kind"] == "turn")
        .map(|l| l["ref"].as_u64().unwrap())
        .collect();
    assert!(
        lines
            .iter()
            .filter(|l| l["kind"] == "turn")
            .all(|l| l["session_id"] == "session-0")
    );
    for insight in lines.iter().filter(|l| l["kind"] == "insight") {
        let refs = insight["source_refs"].as_array().unwrap();
        assert!(
            !refs.is_empty() && refs.iter().all(|r| turns.contains(&r.as_u64().unwrap())),
            "{insight}"
        );
    }
    let run = cli(
        root.path(),
        "test",
        &source.url,
        &["export", "--since", "yesterday-ish"],
        &[],
    )
    .expect(78);
    assert!(run.stderr().contains("--since"), "{}", run.stderr());
    target_pool.close().await;
    fresh_pool.close().await;
}

/// The retention task's advisory lock key (lifecycle/retention.rs).
const RETENTION_LOCK_KEY: i64 = 0x636f_676d_656d_0003;

/// One modern-era MCP tool call over HTTP; `Ok(structuredContent)` or `Err(why)`.
async fn call(
    http: &reqwest::Client,
    base: &str,
    tool: &str,
    arguments: Value,
) -> Result<Value, String> {
    let body = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": tool, "arguments": arguments, "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "retention-test", "version": "0"},
            "io.modelcontextprotocol/clientCapabilities": {},
        }},
    });
    let response = http
        .post(format!("{base}/mcp"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", tool)
        .json(&body)
        .send()
        .await
        .map_err(|err| err.to_string())?;
    let status = response.status();
    let text = response.text().await.map_err(|err| err.to_string())?;
    if !status.is_success() {
        return Err(format!("HTTP {status}: {text}"));
    }
    let value: Value = serde_json::from_str(&text).map_err(|_| format!("not JSON: {text}"))?;
    if value["result"]["isError"] == Value::Bool(true) || value.get("error").is_some() {
        return Err(value.to_string());
    }
    Ok(value["result"]["structuredContent"].clone())
}

async fn count_where(pool: &PgPool, condition: &str) -> i64 {
    sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT count(*) FROM l0_raw WHERE {condition}"
    )))
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_expires_old_turns_and_their_links_under_load_without_failed_calls() {
    let database = stamped_database(Environment::Test).await;
    let pool = pool(&database.url).await;
    // The clock we control: rows written 20 days into the past (test keeps 14 days).
    let old: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO l0_raw (session_id, speaker, content, created_at)
         SELECT 'old-' || (g % 10), 'user', 'expired secret ' || g, now() - interval '20 days'
         FROM generate_series(1, 600) g RETURNING id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let recent: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO l0_raw (session_id, speaker, content, created_at)
         SELECT 'recent', 'assistant', 'recent ' || g, now() - interval '13 days'
         FROM generate_series(1, 300) g RETURNING id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for n in 0..50 {
        sqlx::query("INSERT INTO l2_insights (content, source_ids, created_at) VALUES ('mixed', $1, now() - interval '30 days')")
            .bind(vec![old[n], recent[n]])
            .execute(&pool)
            .await
            .unwrap();
    }
    sqlx::query("INSERT INTO l2_insights (content, source_ids) SELECT 'old only', ARRAY[$1::bigint] FROM generate_series(1, 10)")
        .bind(old[100])
        .execute(&pool)
        .await
        .unwrap();

    // Another "replica" holds the retention lock: this daemon must leave the purge to it.
    let mut other_replica =
        PgConnection::connect(&pg_harness::url_with_tenant(&database.url, "default"))
            .await
            .unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(RETENTION_LOCK_KEY)
        .execute(&mut other_replica)
        .await
        .unwrap();

    let mut daemon = daemon::Launch::http(&database.url)
        .env("COGMEM__MEMORY__RETENTION__INTERVAL_SECS", "1")
        .env("COGMEM__MEMORY__RETENTION__BATCH_SIZE", "50")
        .env("COGMEM__MEMORY__RETENTION__BATCH_PAUSE_MS", "5")
        .env("COGMEM__SERVER__RATE_LIMIT__REQUESTS_PER_MINUTE", "1000000")
        .spawn();
    let base = daemon.ready();
    let http = reqwest::Client::new();

    // Load: writers and readers calling the tools the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let stored = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let load: Vec<_> = (0..4)
        .map(|w| {
            let (http, base, stop, stored, failures, calls) =
                (http.clone(), base.clone(), stop.clone(), stored.clone(), failures.clone(), calls.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let result = if i % 3 == 0 {
                        call(&http, &base, "search_memory", serde_json::json!({"query": "recent"})).await
                    } else {
                        call(&http, &base, "store_raw_dialogue", serde_json::json!({
                            "session_id": format!("live-{w}"), "speaker": "user", "content": format!("live {w} {i}")
                        }))
                        .await
                        .inspect(|value| stored.lock().unwrap().push(value["id"].as_i64().unwrap()))
                    };
                    calls.fetch_add(1, Ordering::Relaxed);
                    if let Err(err) = result {
                        failures.lock().unwrap().push(err);
                    }
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        count_where(&pool, "session_id LIKE 'old-%'").await,
        600,
        "nothing purged while another replica holds the lock"
    );
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(RETENTION_LOCK_KEY)
        .execute(&mut other_replica)
        .await
        .unwrap();
    wait_until("the expired turns are gone", async || {
        count_where(&pool, "session_id LIKE 'old-%'").await == 0
    })
    .await;
    assert_eq!(
        count_where(&pool, "session_id = 'recent'").await,
        300,
        "turns inside the window stay"
    );
    let mixed: Vec<Vec<i64>> = sqlx::query_scalar(
        "SELECT source_ids FROM l2_insights WHERE content = 'mixed' ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        mixed,
        (0..50).map(|n| vec![recent[n]]).collect::<Vec<_>>(),
        "links to expired turns are removed, others kept"
    );
    let old_only: Vec<Vec<i64>> =
        sqlx::query_scalar("SELECT source_ids FROM l2_insights WHERE content = 'old only'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        old_only,
        vec![Vec::<i64>::new(); 10],
        "insights are kept (insight_days 0) without the expired links"
    );

    // Move more of the clock: 100 recent turns now lie in the past, while the load goes on.
    sqlx::query("UPDATE l0_raw SET created_at = now() - interval '15 days' WHERE id = ANY($1)")
        .bind(&recent[..100])
        .execute(&pool)
        .await
        .unwrap();
    wait_until("the newly expired turns are gone", async || {
        count_where(&pool, "session_id = 'recent'").await == 200
    })
    .await;

    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    let calls = calls.load(Ordering::Relaxed);
    assert!(
        failures.is_empty(),
        "{} of {calls} calls failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    let stored = stored.lock().unwrap().clone();
    let present: i64 = sqlx::query_scalar("SELECT count(*) FROM l0_raw WHERE id = ANY($1)")
        .bind(&stored)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(present as usize, stored.len(), "every new turn stays");
    assert!(calls > 50, "the load ran ({calls} calls)");

    let status = call(&http, &base, "memory_status", serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(status["retention"]["raw_days"], 14, "{status}");
    assert_eq!(status["retention"]["insight_days"], 0, "{status}");
    assert!(status["retention"]["last_run_at"].is_string(), "{status}");
    assert!(
        status["backup"]["last_good_at"].is_null(),
        "no backup yet: {status}"
    );
    daemon.signal("TERM");
    daemon.wait_exit(Duration::from_secs(15));
    let log = daemon.stderr();
    assert!(
        log.contains("retention: removed"),
        "the purge is logged:\n{log}"
    );
    assert!(!log.contains("expired secret"), "never the content");
    println!("retention: {calls} calls under load, none failed");
    pool.close().await;
}
