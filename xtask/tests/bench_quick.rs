//! `cargo xtask bench --quick --json FILE` (and the same with `--replicas`) runs end to end
//! against the real server binary and a throwaway cluster, and the JSON holds every figure with
//! sane values. No timing is asserted:
//! goals are judged by the benchmark itself, on a quiet machine (docs/benchmarks.md).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

use serde_json::Value;

/// Every figure the benchmark reports.
const FIGURES: &[&str] = &[
    "config.load",
    "db.migrate_empty",
    "db.fingerprint",
    "startup.exec_to_ready",
    "startup.exec_to_tools_list_stdio",
    "startup.exec_to_tools_list_stdio_legacy",
    "seed.turns",
    "seed.insights",
    "rss.idle",
    "search.large.mix",
    "search.large.common",
    "search.large.rare",
    "search.large.words",
    "search.relevance",
    "search.relevance.before",
    "search.large.phrase",
    "search.large.excluded",
    "search.large.session",
    "search.large.most_frequent",
    "http.search_memory.c1",
    "http.search_memory.c8",
    "http.search_memory.c32",
    "http.store_raw_dialogue.c1",
    "http.store_raw_dialogue.c8",
    "http.store_raw_dialogue.c32",
    "rss.peak",
    "telemetry.overhead.store_raw_dialogue.c32",
    "backup.seconds",
    "restore.seconds",
];

/// Figures judged against a goal.
const GOALS: &[&str] = &[
    "config.load",
    "startup.exec_to_ready",
    "startup.exec_to_tools_list_stdio",
    "rss.idle",
    "search.large.mix",
    // Issue #18: every query kind on its own.
    "search.large.common",
    "search.large.rare",
    "search.large.words",
    "search.large.phrase",
    "search.large.excluded",
    "search.large.session",
    "search.relevance",
    "http.store_raw_dialogue.c32",
    "telemetry.overhead.store_raw_dialogue.c32",
];

/// One benchmark at a time: two at once on 2 cores would measure each other.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// `xtask bench ARGS --json FILE --binary <this build's server>`: the parsed JSON report.
fn bench(args: &[&str]) -> Value {
    // The server binary of this workspace build (the release build is the benchmark's own
    // business; a test must not wait for it).
    let server = Path::new(env!("CARGO_BIN_EXE_xtask")).with_file_name("cognitive-memory-mcp");
    assert!(
        server.exists(),
        "{} is missing: run the workspace tests (`cargo test --workspace`)",
        server.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("bench")
        .args(args)
        .arg("--json")
        .arg(&json)
        .arg("--binary")
        .arg(&server)
        .output()
        .unwrap();
    println!("{}", String::from_utf8_lossy(&output.stdout));
    println!(
        "xtask bench {} took {:.0} s",
        args.join(" "),
        started.elapsed().as_secs_f64()
    );
    assert!(
        output.status.success(),
        "{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap()
}

fn positive(figure: &Value, field: &str) -> f64 {
    let value = figure[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{}: no number {field}: {figure}", figure["key"]));
    assert!(
        value.is_finite() && value > 0.0,
        "{}: {field} = {value}",
        figure["key"]
    );
    value
}

#[test]
fn the_quick_benchmark_reports_every_figure() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let report = bench(&["--quick"]);
    assert_eq!(report["mode"], "quick");
    assert!(
        report["command"]
            .as_str()
            .unwrap()
            .starts_with("cargo xtask bench --quick")
    );
    let machine = &report["machine"];
    for field in ["cpu", "kernel", "postgresql", "rustc"] {
        assert!(
            !machine[field].as_str().unwrap_or_default().is_empty(),
            "machine.{field}: {machine}"
        );
    }
    assert!(machine["cores"].as_u64().unwrap() >= 1);
    assert!(machine["ram_gib"].as_f64().unwrap() > 0.0);

    let figures = report["figures"].as_array().unwrap();
    let keys: BTreeSet<&str> = figures.iter().map(|f| f["key"].as_str().unwrap()).collect();
    let expected: BTreeSet<&str> = FIGURES.iter().copied().collect();
    assert_eq!(keys, expected);
    for figure in figures {
        let key = figure["key"].as_str().unwrap();
        assert!(!figure["label"].as_str().unwrap().is_empty(), "{key}");
        positive(figure, "value");
        if let Some(stats) = figure.get("stats") {
            let n = stats["n"].as_u64().unwrap();
            assert!(n >= 1, "{key}: n = {n}");
            let order: Vec<f64> = ["min", "median", "p95", "p99", "max"]
                .iter()
                .map(|field| stats[field].as_f64().unwrap())
                .collect();
            assert!(order[0] > 0.0, "{key}: {stats}");
            assert!(order.windows(2).all(|w| w[0] <= w[1]), "{key}: {stats}");
        }
        if key.starts_with("http.") {
            assert!(figure["calls"].as_u64().unwrap() > 0, "{key}");
            positive(figure, "throughput");
            assert!(figure["clients"].as_u64().unwrap() >= 1, "{key}");
            assert_eq!(
                figure["errors"].as_u64(),
                Some(0),
                "{key}: {}",
                figure["error_kinds"]
            );
        }
        assert_eq!(
            figure.get("goal").is_some(),
            GOALS.contains(&key) || key.starts_with("http."),
            "{key}"
        );
        if figure.get("goal").is_some() {
            assert!(figure["pass"].is_boolean(), "{key}");
        }
    }
    let figure = |key: &str| figures.iter().find(|f| f["key"] == key).unwrap();
    assert_eq!(figure("seed.turns")["value"].as_f64(), Some(20_000.0));
    assert_eq!(figure("seed.insights")["value"].as_f64(), Some(2_000.0));
    for key in [
        "startup.exec_to_tools_list_stdio",
        "startup.exec_to_tools_list_stdio_legacy",
    ] {
        assert_eq!(figure(key)["tools"].as_u64(), Some(6), "{key}");
    }
    // Known-item relevance does not depend on the machine: every target in the top 5.
    let relevance = figure("search.relevance");
    assert_eq!(relevance["pass"], true, "{relevance}");
    assert_eq!(relevance["value"].as_f64(), Some(1.0), "{relevance}");
    // Phrases are taken from stored turns: each one must be found.
    let phrase = figure("search.large.phrase");
    assert_eq!(phrase["queries_with_hits"], phrase["stats"]["n"]);
    assert!(
        figure("search.large.common")["queries_with_hits"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(
        figure("rss.peak")["value"].as_f64().unwrap()
            >= figure("rss.idle")["value"].as_f64().unwrap()
    );
    // The server with telemetry exported traces and was scraped, without an error.
    let overhead = figure("telemetry.overhead.store_raw_dialogue.c32");
    assert!(
        overhead["otlp_requests"].as_u64().unwrap() > 0,
        "{overhead}"
    );
    assert!(overhead["scrapes"].as_u64().unwrap() > 0, "{overhead}");
    assert_eq!(overhead["errors"].as_u64(), Some(0), "{overhead}");
    assert!(report["missed"].is_array());
}

#[test]
fn the_quick_replica_benchmark_reports_store_and_search_for_one_and_three_replicas() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // With a PostgreSQL parameter set on the cluster (ALTER SYSTEM and a restart, read back):
    // the run says so in its command and its notes.
    let report = bench(&["--quick", "--replicas", "--pg-setting", "work_mem=8MB"]);
    assert!(
        report["command"]
            .as_str()
            .unwrap()
            .starts_with("cargo xtask bench --quick --json")
            && report["command"].as_str().unwrap().contains(" --replicas")
            && report["command"]
                .as_str()
                .unwrap()
                .contains(" --pg-setting work_mem=8MB")
    );
    assert!(
        report["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains("work_mem = 8MB")),
        "{}",
        report["notes"]
    );
    let figures = report["figures"].as_array().unwrap();
    let keys: BTreeSet<&str> = figures.iter().map(|f| f["key"].as_str().unwrap()).collect();
    let expected: BTreeSet<&str> = [
        "replicas.store_raw_dialogue.r1.c32",
        "replicas.search_memory.r1.c32",
        "replicas.store_raw_dialogue.r3.c32",
        "replicas.search_memory.r3.c32",
    ]
    .into_iter()
    .collect();
    assert_eq!(keys, expected);
    for figure in figures {
        let key = figure["key"].as_str().unwrap();
        positive(figure, "throughput");
        assert_eq!(figure["clients"].as_u64(), Some(32), "{key}");
        assert_eq!(
            figure["errors"].as_u64(),
            Some(0),
            "{key}: {}",
            figure["error_kinds"]
        );
        positive(figure, "cores_busy_replicas");
        positive(figure, "cores_busy_load_generator_and_proxy");
        assert!(
            figure["cores_busy_rest_postgresql_and_others"]
                .as_f64()
                .unwrap()
                >= 0.0
        );
    }
}
