//! The official MCP conformance suite (npm `@modelcontextprotocol/conformance`, pinned below)
//! against the real daemon over streamable HTTP: the server scenarios that apply to a server
//! without the suite's fixture tools (see `/work/shared/notes/mcp.md`), among them
//! `dns-rebinding-protection` (the server's own `localhost:PORT` origin must be accepted on a
//! loopback bind, a foreign Host/Origin refused).
//!
//! The suite sends no credentials, so the daemon runs as development on loopback with
//! authentication off (the only configuration that allows it). 0.1.14 and later need Node 22;
//! 0.1.13 runs on Node 20.
//!
//! The suite is installed once per machine into `<target>/npm-conformance-<version>/`. Without
//! `node`/`npm`, or when the install fails, the test prints `skipped: <reason>` and passes —
//! unless `COGMEM_REQUIRE_CONFORMANCE=1` (set by `.ci/run`), which turns a skip into a failure.

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/npm.rs"]
mod npm;

use std::process::{Command, Stdio};
use std::time::Instant;

use config_core::Environment;
use daemon::{Launch, stamped_database};

const CONFORMANCE: npm::NpmTool = npm::NpmTool {
    name: "conformance",
    package: "@modelcontextprotocol/conformance",
    version: "0.1.13",
    launcher: "conformance",
};
const SCENARIOS: [&str; 7] = [
    "server-initialize",
    "ping",
    "tools-list",
    "resources-list",
    "prompts-list",
    "completion-complete",
    "dns-rebinding-protection",
];

#[tokio::test(flavor = "multi_thread")]
async fn the_official_conformance_suite_passes_its_applicable_server_scenarios() {
    let Some(suite) = npm::launcher_or_skip(&CONFORMANCE, "COGMEM_REQUIRE_CONFORMANCE") else {
        return;
    };
    let database = stamped_database(Environment::Development).await;
    let mut launch = Launch::http(&database.url).env("COGMEM__SERVER__AUTH__REQUIRED", "false");
    launch.environment = Environment::Development;
    let mut daemon = launch.spawn();
    let url = format!("{}/mcp", daemon.ready());
    let results = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for scenario in SCENARIOS {
        let started = Instant::now();
        let output = Command::new(&suite)
            .args(["server", "--url", &url, "--scenario", scenario, "-o"])
            .arg(results.path())
            .current_dir(results.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let summary = stdout
            .lines()
            .find(|line| line.contains("Passed:"))
            .unwrap_or("(no summary)")
            .trim()
            .to_owned();
        println!(
            "{scenario}: {summary} in {:.1?} (exit {:?})",
            started.elapsed(),
            output.status.code()
        );
        let all_passed = passed_all(&summary);
        if !output.status.success() || !all_passed {
            failures.push(format!("{scenario}: {summary}\n{stdout}\n{stderr}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n--- daemon log ---\n{}",
        failures.join("\n"),
        daemon.stderr()
    );
}

/// `Passed: N/M` with N == M > 0.
fn passed_all(summary: &str) -> bool {
    let Some((_, counts)) = summary.split_once("Passed:") else {
        return false;
    };
    let counts = counts.split_whitespace().next().unwrap_or_default();
    match counts.split_once('/') {
        Some((passed, total)) => {
            let digits = |s: &str| s.trim_matches(|c: char| !c.is_ascii_digit()).to_owned();
            let (passed, total) = (digits(passed), digits(total));
            !total.is_empty() && total != "0" && passed == total
        }
        None => false,
    }
}
