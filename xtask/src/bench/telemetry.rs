//! The cost of telemetry: `store_raw_dialogue` throughput at 32 clients with telemetry on
//! (metrics recorded and scraped every second, traces at ratio 0.1 exported over OTLP/HTTP to a
//! loopback receiver) against telemetry off (no recorder, no traces), goal within 5 %.
//!
//! Both servers run at once on one fresh database and are measured in turns, off/on then on/off
//! (ABBA), so drift — the table growing, other work on a shared machine — falls on both alike.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use pg_harness::TestCluster;
use serde_json::json;

use super::http::Client;
use super::load::{ClosedLoop, Tool, closed_loop};
use super::report::{Figure, Goal};
use super::server::{Launcher, TOKEN};
use super::words::Vocabulary;
use super::{RATE_LIMIT_OFF, RATE_LIMIT_VAR, stamped_database};

const CLIENTS: usize = 32;
/// Sample ratio of the "on" server: production's.
const RATIO: &str = "0.1";
/// Scrape interval of `/metrics` during the "on" runs (Prometheus' default is 15 s).
const SCRAPE_EVERY: Duration = Duration::from_secs(1);

/// How much of it: ABBA rounds, each two runs of `duration` per server.
pub struct Plan {
    pub rounds: usize,
    pub warmup: Duration,
    pub duration: Duration,
}

pub async fn overhead(
    binary: &Path,
    root: &Path,
    cluster: &TestCluster,
    vocabulary: &Arc<Vocabulary>,
    plan: Plan,
) -> Result<Figure> {
    let receiver = Receiver::start().await?;
    let url = stamped_database(cluster).await?;
    let mut off = Launcher::new(binary, root, &url)?;
    off.env.extend([
        (RATE_LIMIT_VAR.to_owned(), RATE_LIMIT_OFF.to_owned()),
        (
            "COGMEM__TELEMETRY__METRICS__ENABLED".to_owned(),
            "false".to_owned(),
        ),
    ]);
    let mut on = Launcher::new(binary, root, &url)?;
    on.env.extend([
        (RATE_LIMIT_VAR.to_owned(), RATE_LIMIT_OFF.to_owned()),
        (
            "COGMEM__TELEMETRY__METRICS__ENABLED".to_owned(),
            "true".to_owned(),
        ),
        (
            "COGMEM__TELEMETRY__TRACES__ENDPOINT".to_owned(),
            receiver.url.clone(),
        ),
        (
            "COGMEM__TELEMETRY__TRACES__SAMPLE_RATIO".to_owned(),
            RATIO.to_owned(),
        ),
    ]);
    let (off, _) = off.http()?;
    let (on, _) = on.http()?;
    let servers = [("off", off.addr()), ("on", on.addr())];
    for (_, addr) in servers {
        warm_up(addr, vocabulary, plan.warmup).await;
    }
    let (mut off_runs, mut on_runs, mut errors) = (Vec::new(), Vec::new(), 0);
    let mut scrapes = 0u64;
    for round in 0..plan.rounds {
        // ABBA: off, on, on, off.
        for (run, index) in [0usize, 1, 1, 0].into_iter().enumerate() {
            let (name, addr) = servers[index];
            let scraper = (name == "on").then(|| tokio::spawn(scrape_until(addr, plan.duration)));
            let spec = ClosedLoop {
                tool: Tool::Store,
                clients: CLIENTS,
                warmup: Duration::ZERO,
                duration: plan.duration,
                seed: (round as u64) << 32 | run as u64,
            };
            let result = closed_loop(addr, vocabulary, None, spec).await;
            if let Some(scraper) = scraper {
                scrapes += scraper.await.unwrap_or(0);
            }
            errors += result.error_count();
            let throughput = result.throughput();
            println!("bench:   telemetry {name}: {throughput:.0} calls/s");
            if name == "on" {
                on_runs.push(throughput);
            } else {
                off_runs.push(throughput);
            }
        }
    }
    let on_log = on.log_tail();
    on.stop().context("stop the server with telemetry")?;
    off.stop().context("stop the server without telemetry")?;
    let exported = receiver.spans_bytes.load(Ordering::Relaxed);
    let requests = receiver.requests.load(Ordering::Relaxed);
    if requests == 0 {
        anyhow::bail!("the server with telemetry exported no traces:\n{on_log}");
    }
    let off_median = median(&mut off_runs);
    let on_median = median(&mut on_runs);
    let share = on_median / off_median * 100.0;
    println!(
        "bench:   telemetry on/off: {on_median:.0} / {off_median:.0} calls/s = {share:.1} %, {requests} OTLP request(s), {scrapes} scrape(s)"
    );
    let goal = Goal::at_least("", share, 95.0, "% of off").and(Goal {
        text: "0 errors".to_owned(),
        pass: errors == 0,
    });
    Ok(Figure::single(
        "telemetry.overhead.store_raw_dialogue.c32",
        "HTTP store_raw_dialogue, 32 clients, telemetry on (metrics + traces at ratio 0.1) vs off",
        share,
        "% of off",
    )
    .with_goal(goal)
    .with("on_calls_per_s", on_median)
    .with("off_calls_per_s", off_median)
    .with("on_runs", json!(on_runs))
    .with("off_runs", json!(off_runs))
    .with("otlp_requests", requests)
    .with("otlp_bytes", exported)
    .with("scrapes", scrapes)
    .with("errors", errors))
}

async fn warm_up(addr: SocketAddr, vocabulary: &Arc<Vocabulary>, warmup: Duration) {
    let spec = ClosedLoop {
        tool: Tool::Store,
        clients: CLIENTS,
        warmup,
        duration: Duration::from_millis(1),
        seed: 7,
    };
    let _ = closed_loop(addr, vocabulary, None, spec).await;
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Scrapes `/metrics` every [`SCRAPE_EVERY`] for `duration`; the number of good scrapes.
async fn scrape_until(addr: SocketAddr, duration: Duration) -> u64 {
    let mut client = Client::new(addr, TOKEN);
    let end = tokio::time::Instant::now() + duration;
    let mut scrapes = 0;
    while tokio::time::Instant::now() < end {
        if client
            .get_authorized("/metrics")
            .await
            .is_ok_and(|response| response.status == 200)
        {
            scrapes += 1;
        }
        tokio::time::sleep(SCRAPE_EVERY).await;
    }
    scrapes
}

/// A loopback OTLP/HTTP collector that accepts and counts export requests.
struct Receiver {
    url: String,
    requests: Arc<AtomicU64>,
    spans_bytes: Arc<AtomicU64>,
}

impl Receiver {
    async fn start() -> Result<Receiver> {
        let requests = Arc::new(AtomicU64::new(0));
        let spans_bytes = Arc::new(AtomicU64::new(0));
        let (count, bytes) = (requests.clone(), spans_bytes.clone());
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| {
                count.fetch_add(1, Ordering::Relaxed);
                bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                async {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/x-protobuf")],
                        Vec::<u8>::new(),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind the OTLP receiver")?;
        let url = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Receiver {
            url,
            requests,
            spans_bytes,
        })
    }
}
