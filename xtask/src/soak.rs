//! `cargo xtask soak --minutes N`: a steady mixed load (store, search, get_session) on the
//! release server and a throwaway cluster; RSS sampled every 10 s. Goals: RSS growth after the
//! warm-up below 10 % and no error response; exits 1 when either is missed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;

use crate::bench::http::{Client, Outcome};
use crate::bench::load::{Tool, Worker};
use crate::bench::server::{Launcher, TOKEN};
use crate::bench::stats::Stats;
use crate::bench::words::{Rng, Vocabulary};
use crate::bench::{self, RATE_LIMIT_OFF, RATE_LIMIT_VAR, VOCABULARY};

const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Largest RSS growth after the warm-up, in percent.
const GROWTH_GOAL_PERCENT: f64 = 10.0;

#[derive(Debug, Clone, Args)]
pub struct SoakOptions {
    /// How long the load runs, in minutes (fractions allowed).
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
    /// Concurrent clients, each on its own keep-alive connection.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Calls per second of each client (a steady rate, not as fast as possible).
    #[arg(long, default_value_t = 25.0)]
    pub rate: f64,
    /// Use this server binary instead of building the release binary (for tests).
    #[arg(long, hide = true)]
    pub binary: Option<PathBuf>,
}

/// What one client saw.
#[derive(Debug, Default)]
struct ClientResult {
    calls: BTreeMap<&'static str, u64>,
    latencies_ms: BTreeMap<&'static str, Vec<f64>>,
    errors: BTreeMap<String, u64>,
}

pub fn run(root: &Path, options: &SoakOptions) -> Result<()> {
    if !(options.minutes > 0.0 && options.rate > 0.0 && options.clients > 0) {
        bail!("--minutes, --rate and --clients must be positive");
    }
    if cfg!(debug_assertions) && options.binary.is_none() {
        return Err(bench::exec_release_xtask(root));
    }
    let binary = match &options.binary {
        Some(binary) => binary.clone(),
        None => crate::release::build_server(root, "soak")?,
    };
    let cluster = bench::start_cluster(pg_harness::Durability::Off)?;
    let runtime = bench::runtime()?;
    let outcome = runtime.block_on(soak(root, &binary, &cluster, options));
    drop(runtime);
    drop(cluster);
    outcome
}

async fn soak(
    root: &Path,
    binary: &Path,
    cluster: &pg_harness::TestCluster,
    options: &SoakOptions,
) -> Result<()> {
    let url = bench::stamped_database(cluster).await?;
    let mut launcher = Launcher::new(binary, root, &url)?;
    launcher
        .env
        .push((RATE_LIMIT_VAR.to_owned(), RATE_LIMIT_OFF.to_owned()));
    let (mut server, _) = launcher.http()?;
    let addr = server.addr();
    let duration = Duration::from_secs_f64(options.minutes * 60.0);
    // The first fifth (10 s to 2 min) lets pools, caches and allocator arenas fill up.
    let warmup = (duration / 5).clamp(SAMPLE_EVERY, Duration::from_secs(120));
    println!(
        "soak: {} client(s) × {} calls/s for {:.1} min (store 60 %, search 30 %, get_session 10 %); \
         RSS every {} s, growth measured from the first sample after {:.0} s",
        options.clients,
        options.rate,
        options.minutes,
        SAMPLE_EVERY.as_secs(),
        warmup.as_secs_f64()
    );

    let vocabulary = Arc::new(Vocabulary::new(VOCABULARY));
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let interval = Duration::from_secs_f64(1.0 / options.rate);
    let mut tasks = Vec::new();
    for id in 0..options.clients {
        let mut worker = Worker::new(addr, vocabulary.clone(), id, 0x50A4);
        let (stop, calls, errors) = (stop.clone(), calls.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(0x50A4 + id as u64);
            let mut result = ClientResult::default();
            // Spread the clients over one interval.
            let mut next = Instant::now() + interval.mul_f64(id as f64 / 8.0);
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep_until(next.into()).await;
                next = (next + interval).max(Instant::now());
                let tool = match rng.range(0, 10) {
                    0..=5 => Tool::Store,
                    6..=8 => Tool::Search,
                    _ => Tool::GetSession,
                };
                let (elapsed, answer) = worker.call(tool).await;
                calls.fetch_add(1, Ordering::Relaxed);
                *result.calls.entry(tool.name()).or_default() += 1;
                match answer {
                    Ok(Outcome::Ok(_)) => result
                        .latencies_ms
                        .entry(tool.name())
                        .or_default()
                        .push(elapsed.as_secs_f64() * 1e3),
                    Ok(other) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        *result
                            .errors
                            .entry(format!("{}: {}", tool.name(), other.kind()))
                            .or_default() += 1;
                    }
                    Err(err) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        *result
                            .errors
                            .entry(format!("{}: connection: {}", tool.name(), err.kind()))
                            .or_default() += 1;
                    }
                }
            }
            result
        }));
    }

    let started = Instant::now();
    let mut samples: Vec<(Duration, f64)> = Vec::new();
    let mut died = false;
    loop {
        let next = started + SAMPLE_EVERY * (samples.len() as u32 + 1);
        if next > started + duration + Duration::from_millis(500) {
            break;
        }
        tokio::time::sleep_until(next.into()).await;
        if !server.running() {
            died = true;
            println!("soak: the server exited:\n{}", server.log_tail());
            break;
        }
        let memory = server.memory()?;
        let at = started.elapsed();
        samples.push((at, memory.rss));
        println!(
            "soak: {:>4.0} s  RSS {:>6.1} MiB  calls {:>8}  errors {}",
            at.as_secs_f64(),
            memory.rss,
            calls.load(Ordering::Relaxed),
            errors.load(Ordering::Relaxed)
        );
    }
    if !died {
        tokio::time::sleep_until((started + duration).into()).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = ClientResult::default();
    for task in tasks {
        let result = task.await?;
        for (tool, count) in result.calls {
            *total.calls.entry(tool).or_default() += count;
        }
        for (tool, latencies) in result.latencies_ms {
            total
                .latencies_ms
                .entry(tool)
                .or_default()
                .extend(latencies);
        }
        for (kind, count) in result.errors {
            *total.errors.entry(kind).or_default() += count;
        }
    }
    let hwm = server.memory().map(|memory| memory.hwm).unwrap_or(f64::NAN);
    let ready = if died {
        None
    } else {
        Client::new(addr, TOKEN)
            .get("/ready")
            .await
            .ok()
            .map(|response| response.status)
    };
    let exit = if died { None } else { Some(server.stop()?) };

    println!("\nsoak: results");
    let elapsed = started.elapsed().as_secs_f64();
    for (tool, count) in &total.calls {
        let stats = total
            .latencies_ms
            .get(tool)
            .and_then(|latencies| Stats::of(latencies));
        match stats {
            Some(stats) => println!(
                "  {tool:<20} {count:>8} calls ({:.0}/s)  p50 {:.2} ms  p99 {:.2} ms  max {:.1} ms",
                *count as f64 / elapsed,
                stats.median,
                stats.p99,
                stats.max
            ),
            None => println!("  {tool:<20} {count:>8} calls, none answered"),
        }
    }
    let error_count: u64 = total.errors.values().sum();
    for (kind, count) in &total.errors {
        println!("  error {kind}: {count}");
    }
    let baseline = samples.iter().find(|(at, _)| *at >= warmup).copied();
    let last = samples.last().copied();
    let growth = match (baseline, last) {
        (Some((at, base)), Some((end, rss))) if end > at => {
            Some((base, rss, (rss - base) / base * 100.0))
        }
        _ => None,
    };
    let max_after = samples
        .iter()
        .filter(|(at, _)| *at >= warmup)
        .map(|(_, rss)| *rss)
        .fold(f64::NAN, f64::max);
    let mut missed = Vec::new();
    match growth {
        Some((base, rss, percent)) => {
            let pass = percent < GROWTH_GOAL_PERCENT;
            println!(
                "  RSS growth after warm-up: {base:.1} → {rss:.1} MiB ({percent:+.1} %; max {max_after:.1} MiB, peak VmHWM {hwm:.1} MiB); goal < {GROWTH_GOAL_PERCENT} %: {}",
                if pass { "PASS" } else { "MISS" }
            );
            if !pass {
                missed.push(format!("RSS grew {percent:.1} %"));
            }
        }
        None => {
            println!("  RSS growth: not enough samples after the warm-up (run longer)");
            missed.push("too few RSS samples".to_owned());
        }
    }
    println!(
        "  error responses: {error_count}; goal 0: {}",
        if error_count == 0 { "PASS" } else { "MISS" }
    );
    if error_count > 0 {
        missed.push(format!("{error_count} error response(s)"));
    }
    match ready {
        Some(200) => println!("  /ready after the soak: 200"),
        other => missed.push(format!("/ready after the soak answered {other:?}")),
    }
    match exit {
        Some(status) if status.success() => println!("  server exit after SIGTERM: {status}"),
        Some(status) => missed.push(format!("the server exited with {status}")),
        None => missed.push("the server died during the soak".to_owned()),
    }
    if missed.is_empty() {
        println!("soak: PASS");
        Ok(())
    } else {
        bail!("soak goals missed: {}", missed.join("; "))
    }
}
