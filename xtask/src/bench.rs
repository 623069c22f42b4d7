//! `cargo xtask bench [--quick] [--json FILE] [--write-doc]`: the figures of
//! docs/benchmarks.md, measured against the release server and a throwaway PostgreSQL cluster
//! of its own (never the development cluster).
//!
//! What it measures, each with warm-up and several runs:
//! - configuration load of the production layout, in process;
//! - exec → `READY=1` (HTTP, notify socket) and exec → first `tools/list` answer over stdio
//!   (both protocol eras), each including the database connection, stamp check and migrations;
//! - RSS idle after READY and peak (`VmHWM`) after the load;
//! - `store_raw_dialogue` and `search_memory` over HTTP (modern protocol) at 1, 8 and 32
//!   concurrent clients: throughput and latency, with a load generator of our own;
//! - `search_memory` latency on a seeded database (1,000,000 turns and 100,000 insights; 20,000
//!   and 2,000 with `--quick`) for common and rare words, several words, a phrase and a session;
//! - `db::migrate` of an empty database and `db::fingerprint`;
//! - `cognitive-memory-mcp backup` of the seeded database (after the load) and `restore` of that
//!   backup into a new, empty database: the recovery time (RTO) of the seeded size;
//! - with `--replicas` instead of all that: store and search throughput against 1 and 3 replicas
//!   on one database (bench/replicas.rs).

mod config_load;
pub(crate) mod http;
pub(crate) mod load;
mod pg_settings;
mod relevance;
mod replicas;
pub(crate) mod report;
mod rls;
mod seed;
pub(crate) mod server;
pub(crate) mod stats;
mod telemetry;
pub(crate) mod words;

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use config_core::Environment;
use pg_harness::{Durability, TestCluster};
use serde_json::{Value, json};
use sqlx::AssertSqlSafe;
use sqlx::postgres::PgPoolOptions;

use self::http::{Client, Outcome, outcome, tool_call_body};
use self::load::{ClosedLoop, LoadResult, Tool, closed_loop};
use self::report::{Figure, Goal, LoadFigure, Machine, Report, grouped, now_utc};
use self::server::{Era, Launcher};
use self::stats::Stats;
use self::words::{Rng, Vocabulary};

const SIGTERM: i32 = 15;
/// Recorded in the environment stamp of the benchmark databases.
const STAMPED_BY: &str = "cargo xtask bench";
/// The rate limit is a guard for real clients; the benchmark must not measure it.
pub(crate) const RATE_LIMIT_VAR: &str = "COGMEM__SERVER__RATE_LIMIT__REQUESTS_PER_MINUTE";
pub(crate) const RATE_LIMIT_OFF: &str = "100000000";
/// Words in the benchmark vocabulary.
pub(crate) const VOCABULARY: usize = 50_000;
/// Average words per seeded turn (5 to 60).
const WORDS_PER_TURN: f64 = 32.5;

#[derive(Debug, Clone, Args)]
pub struct BenchOptions {
    /// A reduced run (20,000 turns, fewer iterations, shorter load): under two minutes once the
    /// release binary is built.
    #[arg(long)]
    pub quick: bool,
    /// Also write every figure to FILE as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Rewrite the generated part of docs/benchmarks.md (between `<!-- bench:begin -->` and
    /// `<!-- bench:end -->`).
    #[arg(long)]
    pub write_doc: bool,
    /// Measure only the telemetry overhead (store throughput at 32 clients, telemetry on vs
    /// off), skipping the seeded database; cannot be combined with --write-doc.
    #[arg(long, conflicts_with = "write_doc")]
    pub telemetry_only: bool,
    /// Only the HTTP load figures (store and search at 1, 8 and 32 clients, RSS): skips the
    /// configuration load, migrations, start-up and search-latency figures. Not with `--write-doc`.
    #[arg(long, conflicts_with = "write_doc")]
    pub http_only: bool,
    /// Also measure the store load on a second cluster with fsync, full_page_writes and
    /// synchronous_commit off, as extra rows labelled "fsync off" (the main rows always run at
    /// PostgreSQL's default durability). The full run (no `--quick`, `--telemetry-only` or
    /// `--replicas`) always adds them.
    #[arg(long)]
    pub fsync_off_row: bool,
    /// Only the replica figures: store_raw_dialogue and search_memory at 32 clients against 1
    /// and against 3 server replicas on one database, each behind a round-robin TCP proxy in
    /// this process, with the CPU each part used. Not with `--write-doc` or `--http-only`.
    #[arg(long, conflicts_with_all = ["write_doc", "http_only", "fsync_off_row", "telemetry_only"])]
    pub replicas: bool,
    /// Only the row-level security overhead: store_raw_dialogue and search_memory at 32 clients
    /// against a seeded database with the tenant policies (migration V7) and a copy with
    /// row-level security disabled, interleaved (ABBA). Not with `--write-doc`.
    #[arg(long, conflicts_with_all = ["write_doc", "http_only", "replicas", "telemetry_only"])]
    pub rls_only: bool,
    /// Measure this server binary instead of building the release binary (for tests).
    #[arg(long, hide = true)]
    pub binary: Option<PathBuf>,
    /// Set NAME=VALUE in every server's environment, e.g.
    /// `COGMEM__MEMORY__WRITE_BATCH__MAX_BATCH=1` for an A/B run without group commit
    /// (repeatable; shown in the report's command).
    #[arg(long, value_name = "NAME=VALUE", value_parser = parse_server_env)]
    pub server_env: Vec<(String, String)>,
    /// Set a PostgreSQL parameter on every throwaway cluster (ALTER SYSTEM and a restart before
    /// anything is measured), e.g. `shared_buffers=4GB` or `max_wal_size=8GB` as an operator
    /// sizes a server; repeatable, shown in the report. Durability settings (fsync,
    /// synchronous_commit, full_page_writes, …) are refused: the rows run at PostgreSQL's default
    /// durability.
    #[arg(long, value_name = "NAME=VALUE", value_parser = pg_settings::parse)]
    pub pg_setting: Vec<(String, String)>,
    /// After seeding (and the search latency figures), create FILE, print how to reach the seeded database over the cluster's
    /// socket, and wait until FILE is removed before measuring (for investigating plans on the
    /// seeded database).
    #[arg(long, hide = true, value_name = "FILE")]
    pub hold_after_seed: Option<PathBuf>,
    /// Print every measured search that took longer than MS milliseconds (kind, arguments,
    /// time, hits), for finding the slow queries of a kind.
    #[arg(long, hide = true, value_name = "MS")]
    pub print_slow: Option<f64>,
}

fn parse_server_env(text: &str) -> std::result::Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if name.starts_with("COGMEM__") => {
            Ok((name.to_owned(), value.to_owned()))
        }
        _ => Err("expected COGMEM__NAME=VALUE (a configuration variable)".to_owned()),
    }
}

impl BenchOptions {
    fn command(&self) -> String {
        let mut command = "cargo xtask bench".to_owned();
        if self.quick {
            command.push_str(" --quick");
        }
        if let Some(json) = &self.json {
            command.push_str(&format!(" --json {}", json.display()));
        }
        if self.write_doc {
            command.push_str(" --write-doc");
        }
        if self.telemetry_only {
            command.push_str(" --telemetry-only");
        }
        if self.http_only {
            command.push_str(" --http-only");
        }
        if self.fsync_off_row {
            command.push_str(" --fsync-off-row");
        }
        if self.rls_only {
            command.push_str(" --rls-only");
        }
        if self.replicas {
            command.push_str(" --replicas");
        }
        if let Some(binary) = &self.binary {
            command.push_str(&format!(" --binary {}", binary.display()));
        }
        for (name, value) in &self.server_env {
            command.push_str(&format!(" --server-env {name}={value}"));
        }
        for (name, value) in &self.pg_setting {
            command.push_str(&format!(" --pg-setting {name}={value}"));
        }
        command
    }
}

/// How much of everything a run does.
#[derive(Debug, Clone)]
struct Profile {
    name: &'static str,
    config_warmup: usize,
    config_samples: usize,
    startup_warmup: usize,
    startup_runs: usize,
    migrate_warmup: usize,
    migrate_runs: usize,
    fingerprint_warmup: usize,
    fingerprint_runs: usize,
    load_warmup: Duration,
    load_runs: usize,
    load_duration: Duration,
    turns: usize,
    insights: usize,
    search_warmup: usize,
    search_per_kind: usize,
    search_worst_case: usize,
    /// ABBA rounds of the telemetry overhead (each runs both servers twice).
    telemetry_rounds: usize,
}

const FULL: Profile = Profile {
    name: "full",
    config_warmup: 200,
    config_samples: 3000,
    startup_warmup: 2,
    startup_runs: 20,
    migrate_warmup: 1,
    migrate_runs: 10,
    fingerprint_warmup: 2,
    fingerprint_runs: 30,
    load_warmup: Duration::from_secs(2),
    load_runs: 3,
    load_duration: Duration::from_secs(5),
    turns: 1_000_000,
    insights: 100_000,
    search_warmup: 10,
    search_per_kind: 200,
    search_worst_case: 5,
    telemetry_rounds: 3,
};

const QUICK: Profile = Profile {
    name: "quick",
    config_warmup: 50,
    config_samples: 500,
    startup_warmup: 1,
    startup_runs: 5,
    migrate_warmup: 1,
    migrate_runs: 3,
    fingerprint_warmup: 1,
    fingerprint_runs: 5,
    load_warmup: Duration::from_millis(500),
    load_runs: 1,
    load_duration: Duration::from_secs(2),
    turns: 20_000,
    insights: 2_000,
    search_warmup: 2,
    search_per_kind: 30,
    search_worst_case: 3,
    telemetry_rounds: 1,
};

pub fn run(root: &Path, options: &BenchOptions) -> Result<()> {
    if cfg!(debug_assertions) && options.binary.is_none() {
        return Err(exec_release_xtask(root));
    }
    let profile = if options.quick { QUICK } else { FULL };
    let _ = server::SERVER_ENV.set(options.server_env.clone());
    let started = Instant::now();
    let binary = match &options.binary {
        Some(binary) => binary.clone(),
        None => crate::release::build_server(root, "bench")?,
    };
    println!("bench: {} run of {}", profile.name, binary.display());
    let cluster = start_cluster(Durability::Default)?;
    let runtime = runtime()?;
    runtime.block_on(pg_settings::apply(&cluster, &options.pg_setting))?;
    let mut report = if options.telemetry_only {
        runtime.block_on(measure_telemetry_only(
            root, &binary, &cluster, &profile, options,
        ))?
    } else if options.rls_only {
        runtime.block_on(measure_rls_only(root, &binary, &cluster, &profile, options))?
    } else if options.replicas {
        runtime.block_on(measure_replicas(root, &binary, &cluster, &profile, options))?
    } else {
        runtime.block_on(measure(root, &binary, &cluster, &profile, options))?
    };
    drop(cluster);
    let fsync_off_row =
        options.fsync_off_row || !(options.quick || options.telemetry_only || options.replicas);
    if fsync_off_row {
        let cluster = start_cluster(Durability::Off)?;
        runtime.block_on(pg_settings::apply(&cluster, &options.pg_setting))?;
        let figures = runtime.block_on(store_without_fsync(root, &binary, &cluster, &profile))?;
        report.figures.extend(figures);
        report.notes.push(
            "Rows labelled \"fsync off\": the same store load on a second cluster with fsync, \
             full_page_writes and synchronous_commit off (a throwaway setting, never production's)."
                .to_owned(),
        );
    }
    drop(runtime);
    if !options.pg_setting.is_empty() {
        let settings: Vec<String> = options
            .pg_setting
            .iter()
            .map(|(name, value)| format!("{name} = {value}"))
            .collect();
        report.notes.push(format!(
            "PostgreSQL parameters changed from their defaults on every cluster of this run \
             (`--pg-setting`, ALTER SYSTEM and a restart before any figure): {}. Durability \
             settings stay at their defaults.",
            settings.join(", ")
        ));
    }

    println!("\n{}", report.table());
    for note in &report.notes {
        println!("note: {note}");
    }
    if let Some(path) = &options.json {
        let text = serde_json::to_string_pretty(&report.to_json())?;
        std::fs::write(path, text + "\n").with_context(|| format!("write {}", path.display()))?;
        println!("bench: figures written to {}", path.display());
    }
    if options.write_doc {
        let doc = root.join("docs/benchmarks.md");
        report.write_doc(&doc)?;
        println!("bench: {} updated", doc.display());
    }
    let missed = report.missed();
    println!(
        "bench: {} figure(s), {} goal(s) missed, {:.0} s",
        report.figures.len(),
        missed.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `cargo xtask` is a debug build, but the configuration load is measured in process and the
/// load generator shares the CPU with the server: both must be optimised. Builds xtask in
/// release and runs this same command line with it; returns only on failure.
pub(crate) fn exec_release_xtask(repo: &Path) -> anyhow::Error {
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target"));
    let args = ["build", "--release", "-p", "xtask", "--locked"];
    println!(
        "xtask: cargo {} (measurements need optimised code)",
        args.join(" ")
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    match Command::new(cargo).args(args).current_dir(repo).status() {
        Ok(status) if status.success() => {}
        Ok(status) => return anyhow::anyhow!("cargo build --release -p xtask failed ({status})"),
        Err(err) => return anyhow::Error::new(err).context("run cargo build"),
    }
    let xtask = target_dir.join("release").join("xtask");
    let err = Command::new(&xtask)
        .args(std::env::args_os().skip(1))
        .env("COGMEM_REPO_ROOT", repo)
        .exec();
    anyhow::Error::new(err).context(format!("run {}", xtask.display()))
}

/// A throwaway cluster; the benchmark's figures use [`Durability::Default`] (production's).
pub(crate) fn start_cluster(durability: Durability) -> Result<TestCluster> {
    println!("bench: starting a throwaway PostgreSQL cluster (durability {durability:?})");
    TestCluster::start_with(durability).context("start a throwaway PostgreSQL cluster")
}

/// Two workers: the machine the goals are set for has two cores, shared with the server.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start the async runtime")
}

/// A fresh database on `cluster`, migrated and stamped for `test`, with the search operators
/// declared LEAKPROOF by the cluster's superuser as `cargo xtask setup-db` declares them (so
/// the full-text indexes serve searches under row-level security, docs/tenancy.md); its
/// owner's URL.
pub(crate) async fn stamped_database(cluster: &TestCluster) -> Result<String> {
    let database = cluster.fresh_database().await?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&database.url)
        .await
        .context("connect to the benchmark database")?;
    db::stamp(&pool, Environment::Test, STAMPED_BY).await?;
    pool.close().await;
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&database.admin_url)
        .await
        .context("connect to the benchmark database as the cluster's superuser")?;
    db::declare_search_leakproof(&admin, &database.name).await?;
    // So that the seed can checkpoint when it is loaded (seed.rs); the names are generated.
    sqlx::raw_sql(AssertSqlSafe(format!(
        "GRANT pg_checkpoint TO {}",
        database.owner
    )))
    .execute(&admin)
    .await
    .context("grant pg_checkpoint to the benchmark database's owner")?;
    admin.close().await;
    Ok(database.url)
}

async fn measure(
    root: &Path,
    binary: &Path,
    cluster: &TestCluster,
    profile: &Profile,
    options: &BenchOptions,
) -> Result<Report> {
    let mut figures = Vec::new();
    let mut notes = Vec::new();
    let machine = Machine::describe(server_version(cluster).await?);

    if !options.http_only {
        figures.extend(fixed_costs(root, binary, cluster, profile).await?);
    }

    println!(
        "bench: seeding {} turns and {} insights",
        grouped(profile.turns as f64),
        grouped(profile.insights as f64)
    );
    let vocabulary = Arc::new(Vocabulary::new(VOCABULARY));
    let url = stamped_database(cluster).await?;
    let seeded = seed::seed(&url, &vocabulary, profile.turns, profile.insights).await?;
    println!(
        "bench: seeded in {:.1} s (copy) + {:.1} s (indexes) + {:.1} s (vacuum analyze) + {:.1} s (checkpoint, sync), {:.0} MiB",
        seeded.copy.as_secs_f64(),
        seeded.index.as_secs_f64(),
        seeded.analyze.as_secs_f64(),
        seeded.settle.as_secs_f64(),
        seeded.size_mib
    );
    figures.push(
        Figure::single(
            "seed.turns",
            "seeded raw turns",
            seeded.turns as f64,
            "rows",
        )
        .with("sessions", seeded.sessions)
        .with("size_mib", seeded.size_mib)
        .with("copy_s", seeded.copy.as_secs_f64())
        .with("index_s", seeded.index.as_secs_f64())
        .with("analyze_s", seeded.analyze.as_secs_f64())
        .with("settle_s", seeded.settle.as_secs_f64()),
    );
    figures.push(Figure::single(
        "seed.insights",
        "seeded insights",
        seeded.insights as f64,
        "rows",
    ));

    let mut launcher = Launcher::new(binary, root, &url)?;
    launcher
        .env
        .push((RATE_LIMIT_VAR.to_owned(), RATE_LIMIT_OFF.to_owned()));
    let (server, _) = launcher.http()?;
    // Idle: after READY, once start-up work (the first health check) has settled.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = server.memory()?;
    figures.push(
        Figure::single("rss.idle", "RSS idle after READY", idle.rss, "MiB")
            .with_goal(Goal::at_most("", idle.rss, 20.0, "MiB")),
    );

    println!("bench: search latency on the seeded database");
    let mut rng = Rng::new(0x5EA2C4);
    let count = profile.search_warmup + profile.search_per_kind;
    let phrases = seed::phrases(&url, count * 2, seeded.turns as usize, &mut rng).await?;
    let queries = search_queries(
        &vocabulary,
        &phrases,
        seeded.turns as usize,
        count,
        &mut rng,
    );
    if !options.http_only {
        figures.extend(
            search_latency(
                &server,
                &vocabulary,
                &seeded,
                &queries,
                profile,
                options.print_slow,
            )
            .await?,
        );
    }
    if let Some(file) = &options.hold_after_seed {
        hold(cluster, &url, file).await?;
    }

    println!("bench: HTTP load");
    let mix: Arc<Vec<Value>> = Arc::new(
        queries
            .into_iter()
            .map(|(_, arguments)| arguments)
            .collect(),
    );
    figures.extend(http_load(&server, &vocabulary, &mix, profile, LoadRows::Main).await?);
    let after = server.memory()?;
    figures.push(
        Figure::single("rss.peak", "RSS peak under load (VmHWM)", after.hwm, "MiB")
            .with("rss_after_load_mib", after.rss),
    );
    let tail = server.log_tail();
    let status = server.stop()?;
    if !status.success() {
        bail!("the server exited with {status} after the load:\n{tail}");
    }
    println!("bench: telemetry overhead");
    figures.push(telemetry_overhead(root, binary, cluster, &vocabulary, profile).await?);

    println!("bench: backup and restore (RTO)");
    figures.extend(backup_and_restore(&mut launcher, cluster).await?);

    notes.push(format!(
        "Seeded database: {} turns in {} sessions and {} insights ({:.0} MiB with indexes), \
         {} words drawn Zipf-like (P(rank r) ∝ 1/r; 5–60 words per turn), written with \
         COPY, indexes rebuilt, then VACUUM ANALYZE, CHECKPOINT and sync (nothing measured while \
         the load is flushed). Search latency: one client calling \
         `search_memory` over HTTP, one query at a time, the kinds interleaved, before any load.",
        grouped(seeded.turns as f64),
        grouped(seeded.sessions as f64),
        grouped(seeded.insights as f64),
        seeded.size_mib,
        grouped(VOCABULARY as f64)
    ));
    notes.push(format!(
        "HTTP load on the seeded database: a closed loop per client on its own keep-alive \
         connection (modern protocol, `MCP-Protocol-Version`/`Mcp-Method`/`Mcp-Name` headers, \
         bearer token) from this process on the same machine; search_memory cycles through the \
         queries of the mix, store_raw_dialogue stores 8–40 words per turn; {:.1} s warm-up, then \
         {} run(s) of {:.0} s per row; throughput is the median run, latency percentiles pool the \
         runs; rate limit raised with {RATE_LIMIT_VAR}.",
        profile.load_warmup.as_secs_f64(),
        profile.load_runs,
        profile.load_duration.as_secs_f64()
    ));
    notes.push(
        "PostgreSQL: a throwaway cluster of pg-harness at PostgreSQL's default durability \
         (fsync, full_page_writes and synchronous_commit on) on the same machine as the server \
         and the load generator; the server runs `--env test` with config/config.yaml (pool of 10 \
         connections); the search operators declared LEAKPROOF by the superuser, as setup-db \
         declares them, so the full-text indexes serve searches under row-level security. \
         Start-up figures use an empty stamped database."
            .to_owned(),
    );
    if cfg!(debug_assertions) {
        notes.push(
            "This run used a debug build of xtask (`--binary`): the in-process configuration \
             load and the load generator were unoptimised; these figures are not comparable."
                .to_owned(),
        );
    }

    Ok(report(options, profile, machine, figures, notes))
}

/// Waits while `file` exists, after printing how to reach the seeded database (superuser over
/// the socket, `trust`; no password printed).
async fn hold(cluster: &TestCluster, url: &str, file: &Path) -> Result<()> {
    let database = url
        .rsplit('/')
        .next()
        .and_then(|tail| tail.split('?').next())
        .unwrap_or_default();
    std::fs::write(file, format!("{database}\n"))
        .with_context(|| format!("write {}", file.display()))?;
    println!(
        "bench: holding until {} is removed; psql -h {} -p {} -U {} {database}",
        file.display(),
        cluster.socket_dir().display(),
        cluster.port(),
        pg_harness::SUPERUSER
    );
    while file.exists() {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// The report of this run, dated now.
fn report(
    options: &BenchOptions,
    profile: &Profile,
    machine: Machine,
    figures: Vec<Figure>,
    notes: Vec<String>,
) -> Report {
    Report {
        command: options.command(),
        mode: profile.name,
        machine,
        date: now_utc(),
        figures,
        notes,
    }
}

/// `--replicas`: the replica rows alone (see bench/replicas.rs).
async fn measure_replicas(
    root: &Path,
    binary: &Path,
    cluster: &TestCluster,
    profile: &Profile,
    options: &BenchOptions,
) -> Result<Report> {
    let machine = Machine::describe(server_version(cluster).await?);
    println!("bench: replicas (1 and 3 on one database, through a round-robin proxy)");
    let timing = replicas::Timing {
        warmup: profile.load_warmup,
        duration: profile.load_duration,
        runs: profile.load_runs,
    };
    let figures = replicas::measure(root, binary, cluster, timing).await?;
    let notes = vec![
        "Replica rows: the servers (`--env test`, config/config.yaml, a pool of 10 connections \
         each) run on this machine with the database and the load generator; 32 closed-loop \
         clients, each on its own keep-alive connection through a round-robin TCP proxy in the \
         load generator's process (one backend per connection, as a Service picks one), for 1 \
         replica as for 3. The database holds 20,000 seeded turns and 2,000 insights; \
         search_memory asks one or two common words. \"cores busy\" (printed and in the JSON) is \
         CPU time per second of the measured window from /proc: the replicas, this process \
         (proxy and load generator), and the rest of the machine (PostgreSQL and anything else \
         running)."
            .to_owned(),
        "PostgreSQL: a throwaway cluster of pg-harness at PostgreSQL's default durability \
         (fsync, full_page_writes and synchronous_commit on)."
            .to_owned(),
    ];
    Ok(report(options, profile, machine, figures, notes))
}

async fn server_version(cluster: &TestCluster) -> Result<String> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&cluster.admin_url("postgres"))
        .await?;
    let version = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&pool)
        .await?;
    pool.close().await;
    Ok(version)
}

async fn telemetry_overhead(
    root: &Path,
    binary: &Path,
    cluster: &TestCluster,
    vocabulary: &Arc<Vocabulary>,
    profile: &Profile,
) -> Result<Figure> {
    let plan = telemetry::Plan {
        rounds: profile.telemetry_rounds,
        warmup: profile.load_warmup,
        duration: profile.load_duration,
    };
    telemetry::overhead(binary, root, cluster, vocabulary, plan).await
}

/// `--rls-only`: the row-level security overhead figures alone.
async fn measure_rls_only(
    root: &Path,
    binary: &Path,
    cluster: &TestCluster,
    profile: &Profile,
    options: &BenchOptions,
) -> Result<Report> {
    let vocabulary = Arc::new(Vocabulary::new(VOCABULARY));
    let rounds = profile.telemetry_rounds.max(2);
    let plan = rls::Plan {
        rounds,
        warmup: profile.load_warmup,
        duration: profile.load_duration,
        turns: profile.turns,
        insights: profile.insights,
        searches: profile.search_per_kind,
    };
    let figures = rls::overhead(binary, root, cluster, &vocabulary, plan).await?;
    Ok(Report {
        command: options.command(),
        mode: profile.name,
        machine: Machine::describe(server_version(cluster).await?),
        date: now_utc(),
        figures,
        notes: vec![format!(
            "{rounds} ABBA round(s) of {:.0} s runs per server and tool, after {:.1} s warm-up;              two databases seeded alike with {} turns, one as migrated (row-level security              forced), one with it disabled; both servers set app.tenant per operation. The              search operators declared LEAKPROOF by the cluster's superuser, as setup-db does.",
            profile.load_duration.as_secs_f64(),
            profile.load_warmup.as_secs_f64(),
            profile.turns
        )],
    })
}

/// `--telemetry-only`: the overhead figure alone.
async fn measure_telemetry_only(
    root: &Path,
    binary: &Path,
    cluster: &TestCluster,
    profile: &Profile,
    options: &BenchOptions,
) -> Result<Report> {
    let vocabulary = Arc::new(Vocabulary::new(VOCABULARY));
    let figure = telemetry_overhead(root, binary, cluster, &vocabulary, profile).await?;
    let postgresql = String::from("(not asked)");
    Ok(Report {
        command: options.command(),
        mode: profile.name,
        machine: Machine::describe(postgresql),
        date: now_utc(),
        figures: vec![figure],
        notes: vec![format!(
            "{} ABBA round(s) of {:.0} s runs per server, after {:.1} s warm-up each; both servers \
             on one fresh database of the throwaway cluster (PostgreSQL's default durability: \
             fsync, full_page_writes and synchronous_commit on), rate limit raised.",
            profile.telemetry_rounds,
            profile.load_duration.as_secs_f64(),
            profile.load_warmup.as_secs_f64()
        )],
    })
}

/// One `backup` of the launcher's (seeded) database and one `restore` of it into a new, empty
/// database, each timed from exec to exit, as an operator would run them.
async fn backup_and_restore(launcher: &mut Launcher, cluster: &TestCluster) -> Result<Vec<Figure>> {
    let dir = tempfile::Builder::new()
        .prefix("cogmem-bench-backup-")
        .tempdir()
        .context("create the backup directory")?;
    let to = dir.path().to_string_lossy().into_owned();
    // Backups read every tenant through a role that bypasses row-level security (V7): the
    // throwaway cluster's superuser on the same database.
    let database = launcher
        .database_url
        .rsplit('/')
        .next()
        .and_then(|tail| tail.split('?').next())
        .unwrap_or("postgres")
        .to_owned();
    launcher.env.push((
        "COGMEM__BACKUP__DATABASE_URL".to_owned(),
        cluster.admin_url(&database),
    ));
    let (mut backup, log) = launcher.command(&["backup", "--to", &to])?;
    let started = Instant::now();
    let output = backup.output().context("run backup")?;
    let backup_time = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "backup failed ({}): {}",
            output.status,
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    let file = stdout
        .split_whitespace()
        .find(|word| word.ends_with(".dump"))
        .with_context(|| format!("no backup file named in: {stdout}"))?
        .to_owned();
    let bytes = std::fs::metadata(&file)?.len();

    let target = cluster.fresh_database().await?;
    let seeded_url = std::mem::replace(&mut launcher.database_url, target.url.clone());
    let restored = launcher.command(&["restore", "--from", &file]);
    launcher.database_url = seeded_url;
    let (mut restore, log) = restored?;
    let started = Instant::now();
    let output = restore.output().context("run restore")?;
    let restore_time = started.elapsed();
    if !output.status.success() {
        bail!(
            "restore failed ({}): {}",
            output.status,
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    println!(
        "bench: backup {:.1} s ({:.0} MiB), restore {:.1} s",
        backup_time.as_secs_f64(),
        bytes as f64 / (1024.0 * 1024.0),
        restore_time.as_secs_f64()
    );
    Ok(vec![
        Figure::single(
            "backup.seconds",
            "backup of the seeded database (pg_dump -Fc, manifest, verify; one run)",
            backup_time.as_secs_f64(),
            "s",
        )
        .with("size_mib", bytes as f64 / (1024.0 * 1024.0)),
        Figure::single(
            "restore.seconds",
            "restore into an empty database: RTO (verify, replay, fingerprint, counts, migrate; one run)",
            restore_time.as_secs_f64(),
            "s",
        ),
    ])
}

/// The store load rows on a cluster with fsync off, seeded like the main one.
async fn store_without_fsync(
    root: &Path,
    binary: &Path,
    cluster: &TestCluster,
    profile: &Profile,
) -> Result<Vec<Figure>> {
    println!("bench: store load with fsync off (labelled rows)");
    let vocabulary = Arc::new(Vocabulary::new(VOCABULARY));
    let url = stamped_database(cluster).await?;
    seed::seed(&url, &vocabulary, profile.turns, profile.insights).await?;
    let mut launcher = Launcher::new(binary, root, &url)?;
    launcher
        .env
        .push((RATE_LIMIT_VAR.to_owned(), RATE_LIMIT_OFF.to_owned()));
    let (server, _) = launcher.http()?;
    let figures = http_load(
        &server,
        &vocabulary,
        &Arc::new(Vec::new()),
        profile,
        LoadRows::FsyncOff,
    )
    .await?;
    let tail = server.log_tail();
    let status = server.stop()?;
    if !status.success() {
        bail!("the server exited with {status} after the fsync-off load:\n{tail}");
    }
    Ok(figures)
}

/// The figures that need no seeded database: configuration load, migrations, start-up.
async fn fixed_costs(
    root: &Path,
    binary: &Path,
    cluster: &TestCluster,
    profile: &Profile,
) -> Result<Vec<Figure>> {
    let mut figures = Vec::new();
    println!("bench: configuration load");
    let times = config_load::measure(root, profile.config_warmup, profile.config_samples)?;
    let stats = Stats::of_durations(&times).expect("samples");
    figures.push(
        Figure::timing(
            "config.load",
            "configuration load, production layout",
            stats,
            "median",
        )
        .with_goal(Goal::at_most("median", stats.median, 1.0, "ms")),
    );

    println!("bench: migrations and schema fingerprint");
    figures.extend(migrations(cluster, profile).await?);

    println!("bench: known-item relevance");
    let vocabulary = Vocabulary::new(VOCABULARY);
    figures.extend(known_item_relevance(cluster, &vocabulary).await?);

    println!("bench: start-up");
    let startup_url = stamped_database(cluster).await?;
    let mut launcher = Launcher::new(binary, root, &startup_url)?;
    figures.extend(startup(&mut launcher, profile)?);
    Ok(figures)
}

/// recall@5 and MRR of `search_memory` on a known-item corpus, now and with the ranking before
/// issue #18 (see bench/relevance.rs).
async fn known_item_relevance(
    cluster: &TestCluster,
    vocabulary: &Vocabulary,
) -> Result<Vec<Figure>> {
    let url = stamped_database(cluster).await?;
    let measured = relevance::measure(&url, vocabulary).await?;
    let label = |when: &str| {
        format!(
            "known-item search ({} memories, {} queries, one relevant item each): {when}",
            grouped(measured.memories as f64),
            measured.now.queries
        )
    };
    let unit = |scores: &relevance::Scores| {
        format!(
            "recall@{} ({}/{}); MRR {}",
            relevance::K,
            scores.found,
            scores.queries,
            report::number(scores.mrr)
        )
    };
    Ok(vec![
        Figure::single(
            "search.relevance",
            &label("ranking over every match (now)"),
            measured.now.recall(),
            &unit(&measured.now),
        )
        .with("mrr", measured.now.mrr)
        .with_goal(Goal::at_least("recall@5", measured.now.recall(), 1.0, "")),
        Figure::single(
            "search.relevance.before",
            &label("before #18 (200 newest matches per layer, exact words)"),
            measured.before.recall(),
            &unit(&measured.before),
        )
        .with("mrr", measured.before.mrr),
    ])
}

async fn migrations(cluster: &TestCluster, profile: &Profile) -> Result<Vec<Figure>> {
    let mut migrate = Vec::new();
    let mut last = None;
    for run in 0..profile.migrate_warmup + profile.migrate_runs {
        let database = cluster.fresh_database().await?;
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(&database.url)
            .await?;
        // Connected first: the figure is the migration, not the connection.
        sqlx::query("SELECT 1").execute(&pool).await?;
        let started = Instant::now();
        db::migrate(&pool).await?;
        let elapsed = started.elapsed();
        if run >= profile.migrate_warmup {
            migrate.push(elapsed);
        }
        if let Some(previous) = last.replace(pool) {
            previous.close().await;
        }
    }
    let pool = last.expect("at least one run");
    let mut fingerprints = Vec::new();
    let mut fingerprint = None;
    for run in 0..profile.fingerprint_warmup + profile.fingerprint_runs {
        let started = Instant::now();
        let print = db::fingerprint(&pool).await?;
        if run >= profile.fingerprint_warmup {
            fingerprints.push(started.elapsed());
        }
        fingerprint = Some(print);
    }
    pool.close().await;
    let objects = fingerprint.map_or(0, |print| print.catalog.len());
    Ok(vec![
        Figure::timing(
            "db.migrate_empty",
            "db::migrate of an empty database",
            Stats::of_durations(&migrate).expect("runs"),
            "median",
        ),
        Figure::timing(
            "db.fingerprint",
            "db::fingerprint of the migrated schema",
            Stats::of_durations(&fingerprints).expect("runs"),
            "median",
        )
        .with("catalog_entries", objects),
    ])
}

fn startup(launcher: &mut Launcher, profile: &Profile) -> Result<Vec<Figure>> {
    let runs = profile.startup_warmup + profile.startup_runs;
    let mut ready = Vec::new();
    // SIGTERM right after READY=1 may arrive before the daemon has installed its handlers, and
    // then ends it by the signal's default action instead of a clean stop: counted, not fatal.
    let mut killed_by_early_sigterm = 0;
    for run in 0..runs {
        let (server, elapsed) = launcher.http()?;
        let tail = server.log_tail();
        let status = server.stop()?;
        if status.signal() == Some(SIGTERM) {
            killed_by_early_sigterm += 1;
        } else if !status.success() {
            bail!("the server exited with {status} after SIGTERM:\n{tail}");
        }
        if run >= profile.startup_warmup {
            ready.push(elapsed);
        }
    }
    let ready = Stats::of_durations(&ready).expect("runs");
    let mut figures = vec![
        Figure::timing(
            "startup.exec_to_ready",
            "exec → READY=1 (HTTP, incl. database connection)",
            ready,
            "median",
        )
        .with_goal(Goal::at_most("median", ready.median, 50.0, "ms"))
        .with(
            "killed_by_sigterm_right_after_ready",
            killed_by_early_sigterm,
        ),
    ];
    for (era, key, label) in [
        (
            Era::Modern,
            "startup.exec_to_tools_list_stdio",
            "exec → first tools/list over stdio (2026-07-28, incl. database connection)",
        ),
        (
            Era::Legacy,
            "startup.exec_to_tools_list_stdio_legacy",
            "exec → first tools/list over stdio (legacy handshake, incl. database connection)",
        ),
    ] {
        let mut times = Vec::new();
        let mut tools = 0;
        for run in 0..runs {
            let (elapsed, count) = launcher.stdio_tools_list(era)?;
            tools = count;
            if run >= profile.startup_warmup {
                times.push(elapsed);
            }
        }
        let stats = Stats::of_durations(&times).expect("runs");
        let mut figure = Figure::timing(key, label, stats, "median").with("tools", tools);
        if era == Era::Modern {
            figure = figure.with_goal(Goal::at_most("median", stats.median, 50.0, "ms"));
        }
        figures.push(figure);
    }
    Ok(figures)
}

/// Which load rows to measure: the main ones (both tools, with goals, default durability) or
/// the labelled store-only rows on a cluster with fsync off (no goals).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoadRows {
    Main,
    FsyncOff,
}

async fn http_load(
    server: &server::Server,
    vocabulary: &Arc<Vocabulary>,
    searches: &Arc<Vec<Value>>,
    profile: &Profile,
    rows: LoadRows,
) -> Result<Vec<Figure>> {
    let mut figures = Vec::new();
    let tools: &[Tool] = match rows {
        LoadRows::Main => &[Tool::Search, Tool::Store],
        LoadRows::FsyncOff => &[Tool::Store],
    };
    let (key_suffix, label_suffix) = match rows {
        LoadRows::Main => ("", ""),
        LoadRows::FsyncOff => (".fsync_off", " (fsync off)"),
    };
    for &tool in tools {
        for clients in [1usize, 8, 32] {
            let mut total = LoadResult::default();
            let mut throughputs = Vec::new();
            for run in 0..profile.load_runs {
                let warmup = if run == 0 {
                    profile.load_warmup
                } else {
                    Duration::ZERO
                };
                let spec = ClosedLoop {
                    tool,
                    clients,
                    warmup,
                    duration: profile.load_duration,
                    seed: (run as u64) << 32 | clients as u64,
                };
                let result = closed_loop(server.addr(), vocabulary, Some(searches), spec).await;
                throughputs.push(result.throughput());
                total.merge(result);
            }
            throughputs.sort_by(f64::total_cmp);
            let throughput = throughputs[throughputs.len() / 2];
            let stats = Stats::of(&total.latencies_ms);
            let errors = total.error_count();
            println!(
                "bench:   {} × {clients}: {throughput:.0} calls/s, p99 {:.2} ms, {errors} error(s)",
                tool.name(),
                stats.map_or(f64::NAN, |stats| stats.p99),
            );
            let zero_errors = Goal {
                text: "0 errors".to_owned(),
                pass: errors == 0,
            };
            let goal = if rows == LoadRows::FsyncOff {
                zero_errors
            } else if tool == Tool::Store && clients == 32 {
                let p99 = stats.map_or(f64::INFINITY, |stats| stats.p99);
                Goal::at_least("", throughput, 3000.0, "calls/s")
                    .and(Goal::at_most("p99", p99, 20.0, "ms"))
                    .and(zero_errors)
            } else {
                zero_errors
            };
            figures.push(Figure {
                key: format!("http.{}.c{clients}{key_suffix}", tool.name()),
                label: format!(
                    "HTTP {}, {clients} client{}{label_suffix}",
                    tool.name(),
                    if clients == 1 { "" } else { "s" }
                ),
                unit: "calls/s".to_owned(),
                value: throughput,
                value_is: "throughput",
                stats,
                load: Some(LoadFigure {
                    clients,
                    calls: total.completed,
                    throughput,
                    errors,
                    error_kinds: total.errors.clone(),
                }),
                goal: Some(goal),
                extra: serde_json::Map::from_iter([(
                    "run_throughputs".to_owned(),
                    json!(throughputs),
                )]),
            });
        }
    }
    Ok(figures)
}

/// A kind of search query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Common,
    Rare,
    Words,
    Phrase,
    Excluded,
    Session,
}

impl Kind {
    const ALL: [Kind; 6] = [
        Kind::Common,
        Kind::Rare,
        Kind::Words,
        Kind::Phrase,
        Kind::Excluded,
        Kind::Session,
    ];

    fn key(self) -> &'static str {
        match self {
            Kind::Common => "common",
            Kind::Rare => "rare",
            Kind::Words => "words",
            Kind::Phrase => "phrase",
            Kind::Excluded => "excluded",
            Kind::Session => "session",
        }
    }
}

/// Share of turns containing a word of `rank`.
fn turn_share(vocabulary: &Vocabulary, rank: usize) -> f64 {
    1.0 - (1.0 - vocabulary.probability(rank)).powf(WORDS_PER_TURN)
}

/// `count` queries of each kind, interleaved.
fn search_queries(
    vocabulary: &Vocabulary,
    phrases: &[String],
    turns: usize,
    count: usize,
    rng: &mut Rng,
) -> Vec<(Kind, Value)> {
    let mut queries = Vec::new();
    for index in 0..count {
        for kind in Kind::ALL {
            let arguments = match kind {
                Kind::Common => json!({"query": vocabulary.word_in(rng, 100, 250)}),
                Kind::Rare => json!({"query": vocabulary.word_in(rng, 20_000, VOCABULARY)}),
                Kind::Words => json!({"query": format!(
                    "{} {}",
                    vocabulary.word_in(rng, 30, 300),
                    vocabulary.word_in(rng, 30, 300)
                )}),
                Kind::Phrase => match phrases.get(index % phrases.len().max(1)) {
                    Some(phrase) => json!({"query": phrase}),
                    None => {
                        json!({"query": format!("\"{} {}\"", vocabulary.word(1), vocabulary.word(2))})
                    }
                },
                Kind::Excluded => json!({"query": format!(
                    "{} -{}",
                    vocabulary.word_in(rng, 30, 300),
                    vocabulary.word_in(rng, 30, 300)
                )}),
                Kind::Session => json!({
                    "query": vocabulary.word_in(rng, 10, 100),
                    "session_id": seed::session_of(rng.range(0, turns.max(1))),
                }),
            };
            queries.push((kind, arguments));
        }
    }
    queries
}

async fn search_latency(
    server: &server::Server,
    vocabulary: &Vocabulary,
    seeded: &seed::Seeded,
    queries: &[(Kind, Value)],
    profile: &Profile,
    print_slow: Option<f64>,
) -> Result<Vec<Figure>> {
    let mut client = Client::new(server.addr(), server::TOKEN);
    let mut times: Vec<(Kind, f64, bool)> = Vec::new();
    for (index, (kind, arguments)) in queries.iter().enumerate() {
        let (elapsed, hits) = search_once(&mut client, index as u64, arguments.clone()).await?;
        if print_slow.is_some_and(|ms| elapsed > ms) {
            println!(
                "bench:   slow {}: {arguments} {elapsed:.1} ms, {hits} hit(s)",
                kind.key()
            );
        }
        if index >= profile.search_warmup * Kind::ALL.len() {
            times.push((*kind, elapsed, hits > 0));
        }
    }
    // The worst case: one of the most frequent words, in most turns; not part of the goal.
    let mut worst = Vec::new();
    for index in 0..profile.search_worst_case + 1 {
        let word = vocabulary.word(1 + index % 3);
        let (elapsed, _) = search_once(
            &mut client,
            1_000_000 + index as u64,
            json!({"query": word}),
        )
        .await?;
        if index > 0 {
            worst.push(elapsed);
        }
    }

    let size = format!(
        "{} turns + {} insights",
        grouped(seeded.turns as f64),
        grouped(seeded.insights as f64)
    );
    let all: Vec<f64> = times.iter().map(|(_, ms, _)| *ms).collect();
    let mix = Stats::of(&all).expect("queries");
    let mut figures = vec![
        Figure::timing(
            "search.large.mix",
            &format!("search_memory on {size}: the mix below"),
            mix,
            "p95",
        )
        .with_goal(Goal::at_most("p95", mix.p95, 15.0, "ms")),
    ];
    for kind in Kind::ALL {
        let samples: Vec<f64> = times
            .iter()
            .filter(|(k, _, _)| *k == kind)
            .map(|(_, ms, _)| *ms)
            .collect();
        let with_hits = times
            .iter()
            .filter(|(k, _, hit)| *k == kind && *hit)
            .count();
        let label = match kind {
            Kind::Common => format!(
                "  common word (ranks 100–250, in ≈{:.1}–{:.1}% of turns)",
                turn_share(vocabulary, 250) * 100.0,
                turn_share(vocabulary, 100) * 100.0
            ),
            Kind::Rare => format!(
                "  rare word (ranks 20,000–50,000, ≈{:.0}–{:.0} turns per million)",
                turn_share(vocabulary, VOCABULARY) * 1e6,
                turn_share(vocabulary, 20_000) * 1e6
            ),
            Kind::Words => "  two words (ranks 30–300, both required)".to_owned(),
            Kind::Phrase => "  \"phrase\" of two adjacent words from a stored turn".to_owned(),
            Kind::Excluded => "  word of ranks 30–300 without another (`a -b`)".to_owned(),
            Kind::Session => "  word of ranks 10–100 within one session (session_id)".to_owned(),
        };
        let stats = Stats::of(&samples).expect("queries");
        // Issue #18: every kind on its own, p95 ≤ 15 ms and p99 ≤ 40 ms.
        figures.push(
            Figure::timing(
                &format!("search.large.{}", kind.key()),
                &label,
                stats,
                "p95",
            )
            .with("queries_with_hits", with_hits)
            .with_goal(
                Goal::at_most("p95", stats.p95, 15.0, "ms")
                    .and(Goal::at_most("p99", stats.p99, 40.0, "ms")),
            ),
        );
    }
    let worst = Stats::of(&worst).expect("queries");
    figures.push(Figure::timing(
        "search.large.most_frequent",
        &format!(
            "  worst case, not in the mix: one of the 3 most frequent words (in ≈{:.0}% of turns)",
            turn_share(vocabulary, 3) * 100.0
        ),
        worst,
        "p95",
    ));
    Ok(figures)
}

/// One `search_memory` call: its latency in ms and the number of hits.
async fn search_once(client: &mut Client, id: u64, arguments: Value) -> Result<(f64, usize)> {
    let body = tool_call_body(id, "search_memory", arguments);
    let started = Instant::now();
    let response = client
        .mcp("tools/call", Some("search_memory"), &body)
        .await
        .context("search_memory")?;
    let elapsed = started.elapsed().as_secs_f64() * 1e3;
    match outcome(&response) {
        Outcome::Ok(result) => Ok((elapsed, result["hits"].as_array().map_or(0, Vec::len))),
        other => bail!("search_memory failed: {}", other.kind()),
    }
}
