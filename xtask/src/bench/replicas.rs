//! `cargo xtask bench --replicas`: store and search throughput against 1 and against 3 server
//! replicas on one database, each behind the same round-robin TCP proxy in this process (standing
//! in for a Kubernetes Service: one backend per client connection), with the load generator of
//! the HTTP figures. Beside each row: the CPU time the replicas, this process (proxy and load
//! generator) and everything else on the machine (PostgreSQL, other tenants) used during the run,
//! from `/proc` — what says where the cores went, and so what limits scaling here.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use pg_harness::TestCluster;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};

use super::load::{ClosedLoop, LoadResult, Tool, closed_loop};
use super::report::{Figure, LoadFigure};
use super::server::{Launcher, Server};
use super::stats::Stats;
use super::words::Vocabulary;
use super::{RATE_LIMIT_OFF, RATE_LIMIT_VAR, VOCABULARY, seed, stamped_database};

/// Replica counts compared.
const REPLICAS: [usize; 2] = [1, 3];
/// Concurrent clients of each row: enough to keep 3 replicas busy.
const CLIENTS: usize = 32;
/// The seeded database the searches run on (the same for both counts).
const TURNS: usize = 20_000;
const INSIGHTS: usize = 2_000;
/// USER_HZ: the unit of the CPU times in `/proc/<pid>/stat` (100 on every Linux/x86_64).
const TICKS_PER_SECOND: f64 = 100.0;

/// How long each row warms up and runs, and how many runs it has (the median is reported).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub warmup: Duration,
    pub duration: Duration,
    pub runs: usize,
}

/// A round-robin TCP proxy: each accepted connection goes to the next backend.
struct Proxy {
    address: SocketAddr,
}

impl Proxy {
    async fn start(backends: Vec<SocketAddr>) -> Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind the proxy")?;
        let address = listener.local_addr()?;
        let backends = Arc::new(Mutex::new(backends));
        tokio::spawn(async move {
            let next = AtomicUsize::new(0);
            while let Ok((mut client, _)) = listener.accept().await {
                let _ = client.set_nodelay(true);
                let backend = {
                    let backends = backends.lock().unwrap_or_else(|e| e.into_inner());
                    backends[next.fetch_add(1, Ordering::Relaxed) % backends.len()]
                };
                tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(backend).await {
                        let _ = server.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Ok(Proxy { address })
    }
}

/// CPU seconds (user + system) of `pid` so far.
fn process_cpu(pid: &str) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("read /proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("parse /proc/PID/stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / TICKS_PER_SECOND)
}

/// CPU seconds the whole machine has spent busy (not idle or waiting), over all cores.
fn machine_busy() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat").context("read /proc/stat")?;
    let cpu = stat.lines().next().context("empty /proc/stat")?;
    let values: Vec<f64> = cpu
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    // user nice system idle iowait irq softirq steal …
    let idle = values.get(3).copied().unwrap_or(0.0) + values.get(4).copied().unwrap_or(0.0);
    let total: f64 = values.iter().take(8).sum();
    Ok((total - idle) / TICKS_PER_SECOND)
}

/// Where the CPU went during one measured window: replicas, this process, the rest.
struct CpuSplit {
    replicas: f64,
    load_generator: f64,
    rest: f64,
}

struct CpuMark {
    replicas: f64,
    load_generator: f64,
    machine: f64,
}

fn cpu_mark(servers: &[Server]) -> Result<CpuMark> {
    let mut replicas = 0.0;
    for server in servers {
        replicas += process_cpu(&server.pid().to_string())?;
    }
    Ok(CpuMark {
        replicas,
        load_generator: process_cpu("self")?,
        machine: machine_busy()?,
    })
}

impl CpuMark {
    /// Cores busy on average between `self` and `later`, over `seconds`.
    fn until(&self, later: &CpuMark, seconds: f64) -> CpuSplit {
        let replicas = (later.replicas - self.replicas) / seconds;
        let load_generator = (later.load_generator - self.load_generator) / seconds;
        let machine = (later.machine - self.machine) / seconds;
        CpuSplit {
            replicas,
            load_generator,
            rest: (machine - replicas - load_generator).max(0.0),
        }
    }
}

/// The replica rows: for each count, `store_raw_dialogue` and `search_memory` at 32 clients.
pub async fn measure(
    root: &Path,
    binary: &Path,
    cluster: &TestCluster,
    timing: Timing,
) -> Result<Vec<Figure>> {
    let vocabulary = Arc::new(Vocabulary::new(VOCABULARY));
    let url = stamped_database(cluster).await?;
    println!("bench: seeding {TURNS} turns and {INSIGHTS} insights for the replica rows");
    seed::seed(&url, &vocabulary, TURNS, INSIGHTS).await?;
    let mut figures = Vec::new();
    for replicas in REPLICAS {
        let mut launcher = Launcher::new(binary, root, &url)?;
        launcher
            .env
            .push((RATE_LIMIT_VAR.to_owned(), RATE_LIMIT_OFF.to_owned()));
        let mut servers = Vec::new();
        for _ in 0..replicas {
            let (server, _) = launcher.http()?;
            servers.push(server);
        }
        let proxy = Proxy::start(servers.iter().map(Server::addr).collect()).await?;
        for tool in [Tool::Store, Tool::Search] {
            figures.push(row(&servers, &proxy, &vocabulary, tool, replicas, timing).await?);
        }
        for server in servers {
            let tail = server.log_tail();
            let status = server.stop()?;
            if !status.success() {
                bail!("a replica exited with {status} after the load:\n{tail}");
            }
        }
    }
    Ok(figures)
}

async fn row(
    servers: &[Server],
    proxy: &Proxy,
    vocabulary: &Arc<Vocabulary>,
    tool: Tool,
    replicas: usize,
    timing: Timing,
) -> Result<Figure> {
    let mut total = LoadResult::default();
    let mut throughputs = Vec::new();
    let mut splits = Vec::new();
    for run in 0..timing.runs {
        let warmup = if run == 0 {
            timing.warmup
        } else {
            Duration::ZERO
        };
        let spec = ClosedLoop {
            tool,
            clients: CLIENTS,
            warmup,
            duration: timing.duration,
            seed: (run as u64) << 32 | replicas as u64,
        };
        let load = closed_loop(proxy.address, vocabulary, None, spec);
        // The CPU marks bracket the measured window, not the warm-up.
        let marks = async {
            tokio::time::sleep(warmup).await;
            let first = cpu_mark(servers);
            let started = Instant::now();
            tokio::time::sleep(timing.duration).await;
            (first, cpu_mark(servers), started.elapsed())
        };
        let (result, (first, last, window)) = tokio::join!(load, marks);
        splits.push(first?.until(&last?, window.as_secs_f64()));
        throughputs.push(result.throughput());
        total.merge(result);
    }
    let mut order: Vec<usize> = (0..throughputs.len()).collect();
    order.sort_by(|a, b| throughputs[*a].total_cmp(&throughputs[*b]));
    let median = order[order.len() / 2];
    let throughput = throughputs[median];
    let split = &splits[median];
    let stats = Stats::of(&total.latencies_ms);
    let errors = total.error_count();
    println!(
        "bench:   {} × {CLIENTS} via proxy, {replicas} replica(s): {throughput:.0} calls/s, p99 {:.2} ms, {errors} error(s); cores busy: replicas {:.2}, load generator + proxy {:.2}, rest (PostgreSQL, others) {:.2}",
        tool.name(),
        stats.map_or(f64::NAN, |stats| stats.p99),
        split.replicas,
        split.load_generator,
        split.rest
    );
    Ok(Figure {
        key: format!("replicas.{}.r{replicas}.c{CLIENTS}", tool.name()),
        label: format!(
            "HTTP {}, {CLIENTS} clients, {replicas} replica{} behind a round-robin proxy, one database",
            tool.name(),
            if replicas == 1 { "" } else { "s" }
        ),
        unit: "calls/s".to_owned(),
        value: throughput,
        value_is: "throughput",
        stats,
        load: Some(LoadFigure {
            clients: CLIENTS,
            calls: total.completed,
            throughput,
            errors,
            error_kinds: total.errors.clone(),
        }),
        goal: None,
        extra: serde_json::Map::from_iter([
            ("replicas".to_owned(), json!(replicas)),
            ("run_throughputs".to_owned(), json!(throughputs)),
            ("cores_busy_replicas".to_owned(), json!(split.replicas)),
            (
                "cores_busy_load_generator_and_proxy".to_owned(),
                json!(split.load_generator),
            ),
            (
                "cores_busy_rest_postgresql_and_others".to_owned(),
                json!(split.rest),
            ),
        ]),
    })
}
