//! The cost of row-level security (issue #12, migration V7): `store_raw_dialogue` and
//! `search_memory` throughput at 32 clients with the tenant policies in force ("on", as
//! migrated) against the same tables with row-level security disabled ("off"), goal within
//! 10 %.
//!
//! Two databases seeded alike, one server each, running at once and measured in turns, off/on
//! then on/off (ABBA), so drift falls on both alike. Both servers set `app.tenant` for every
//! operation (the server always does): "off" measures the schema without the policies, so the
//! figure is the policies' cost (their condition on every row, plans under them); the
//! `set_config` exchange costs both alike (see docs/tenancy.md for what it costs by itself).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use pg_harness::TestCluster;
use serde_json::{Value, json};
use sqlx::Connection;

use super::load::{ClosedLoop, Tool, closed_loop};
use super::report::{Figure, Goal};
use super::server::Launcher;
use super::words::{Rng, Vocabulary};
use super::{RATE_LIMIT_OFF, RATE_LIMIT_VAR, search_queries, seed, stamped_database};

const CLIENTS: usize = 32;

/// How much of it.
pub struct Plan {
    pub rounds: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub turns: usize,
    pub insights: usize,
    pub searches: usize,
}

pub async fn overhead(
    binary: &Path,
    root: &Path,
    cluster: &TestCluster,
    vocabulary: &Arc<Vocabulary>,
    plan: Plan,
) -> Result<Vec<Figure>> {
    let on_url = stamped_database(cluster).await?;
    let seeded = seed::seed(&on_url, vocabulary, plan.turns, plan.insights).await?;
    let off_url = stamped_database(cluster).await?;
    seed::seed(&off_url, vocabulary, plan.turns, plan.insights).await?;
    let mut off_conn = sqlx::PgConnection::connect(&off_url)
        .await
        .context("connect to the database without row-level security")?;
    sqlx::raw_sql(seed::RLS_OFF)
        .execute(&mut off_conn)
        .await
        .context("disable row-level security")?;
    off_conn.close().await.ok();

    // Both databases have the search operators LEAKPROOF, as `setup-db` declares them where it
    // connects as a superuser (`stamped_database`, docs/tenancy.md).

    let mut rng = Rng::new(0x0715_5EED);
    let phrases =
        seed::phrases(&on_url, plan.searches * 2, seeded.turns as usize, &mut rng).await?;
    let mix: Arc<Vec<Value>> = Arc::new(
        search_queries(
            vocabulary,
            &phrases,
            seeded.turns as usize,
            plan.searches,
            &mut rng,
        )
        .into_iter()
        .map(|(_, arguments)| arguments)
        .collect(),
    );

    let launch = |url: &str| -> Result<Launcher> {
        let mut launcher = Launcher::new(binary, root, url)?;
        launcher
            .env
            .push((RATE_LIMIT_VAR.to_owned(), RATE_LIMIT_OFF.to_owned()));
        Ok(launcher)
    };
    let (off, _) = launch(&off_url)?.http()?;
    let (on, _) = launch(&on_url)?.http()?;
    let servers = [("off", off.addr()), ("on", on.addr())];

    let mut figures = Vec::new();
    for tool in [Tool::Store, Tool::Search] {
        for (_, addr) in servers {
            let spec = ClosedLoop {
                tool,
                clients: CLIENTS,
                warmup: Duration::ZERO,
                duration: plan.warmup,
                seed: 7,
            };
            closed_loop(addr, vocabulary, Some(&mix), spec).await;
        }
        let (mut off_runs, mut on_runs, mut errors) = (Vec::new(), Vec::new(), 0);
        for round in 0..plan.rounds {
            for (run, index) in [0usize, 1, 1, 0].into_iter().enumerate() {
                let (name, addr) = servers[index];
                let spec = ClosedLoop {
                    tool,
                    clients: CLIENTS,
                    warmup: Duration::ZERO,
                    duration: plan.duration,
                    seed: (round as u64) << 32 | run as u64,
                };
                let result = closed_loop(addr, vocabulary, Some(&mix), spec).await;
                errors += result.error_count();
                let throughput = result.throughput();
                println!(
                    "bench:   rls {name} {}: {throughput:.0} calls/s",
                    tool.name()
                );
                if name == "on" {
                    on_runs.push(throughput);
                } else {
                    off_runs.push(throughput);
                }
            }
        }
        let off_median = median(&mut off_runs);
        let on_median = median(&mut on_runs);
        let share = on_median / off_median * 100.0;
        println!(
            "bench:   rls on/off {}: {on_median:.0} / {off_median:.0} calls/s = {share:.1} %",
            tool.name()
        );
        let goal = Goal::at_least("", share, 90.0, "% of off").and(Goal {
            text: "0 errors".to_owned(),
            pass: errors == 0,
        });
        figures.push(
            Figure::single(
                &format!("rls.overhead.{}.c32", tool.name()),
                &format!(
                    "HTTP {}, 32 clients, row-level security on vs off (search operators LEAKPROOF)",
                    tool.name(),
                ),
                share,
                "% of off",
            )
            .with_goal(goal)
            .with("on_calls_per_s", on_median)
            .with("off_calls_per_s", off_median)
            .with("on_runs", json!(on_runs))
            .with("off_runs", json!(off_runs))
            .with("errors", errors),
        );
    }
    on.stop()
        .context("stop the server with row-level security")?;
    off.stop()
        .context("stop the server without row-level security")?;
    Ok(figures)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}
