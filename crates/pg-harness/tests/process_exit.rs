//! What happens around a test process: the cluster must not outlive it, and missing binaries
//! must fail loudly. Runs without libtest because it re-executes itself as the test process.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use pg_harness::TestCluster;

const NAME: &str = "cluster_lifecycle_around_a_test_process";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("child-start") => child_start(),
        Some("child-shared") => {
            TestCluster::shared();
        }
        // Answer libtest-style listing (cargo nextest) without running anything.
        _ if args.iter().any(|a| a == "--list") => {
            if !args.iter().any(|a| a == "--ignored") {
                println!("{NAME}: test");
            }
        }
        _ => {
            the_cluster_does_not_outlive_its_process();
            missing_binaries_fail_with_the_install_hint();
            println!("test {NAME} ... ok");
        }
    }
}

/// Starts the shared cluster, proves it works, prints where it lives, and exits without any
/// cleanup of its own (statics are never dropped).
fn child_start() {
    let cluster = TestCluster::shared();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(cluster.fresh_database())
        .expect("a database in the child's cluster");
    println!("{}", cluster.socket_dir().parent().unwrap().display());
    println!("{}", cluster.port());
}

fn the_cluster_does_not_outlive_its_process() {
    let output = Command::new(std::env::current_exe().unwrap())
        .arg("child-start")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let mut lines = stdout.lines();
    let root = PathBuf::from(lines.next().unwrap());
    let port: u16 = lines.next().unwrap().parse().unwrap();

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let dir_gone = !root.exists();
        let port_closed = TcpStream::connect(("127.0.0.1", port)).is_err();
        let processes = postgres_processes_under(&root);
        if dir_gone && port_closed && processes.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "20 s after the test process exited: dir removed {dir_gone}, port closed {port_closed}, processes left {processes:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn postgres_processes_under(root: &std::path::Path) -> Vec<String> {
    let ps = Command::new("ps")
        .args(["-eo", "pid,args"])
        .output()
        .expect("ps");
    String::from_utf8_lossy(&ps.stdout)
        .lines()
        .filter(|line| line.contains(&*root.to_string_lossy()))
        .map(str::to_owned)
        .collect()
}

fn missing_binaries_fail_with_the_install_hint() {
    let output = Command::new(std::env::current_exe().unwrap())
        .arg("child-shared")
        .env("PG_BINDIR", "/nonexistent/postgresql/bin")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "a test without binaries must fail"
    );
    assert!(stderr.contains("apt-get install -y postgresql"), "{stderr}");
    assert!(stderr.contains("brew install postgresql@16"), "{stderr}");
    assert!(
        stderr.contains("PG_BINDIR=/nonexistent/postgresql/bin"),
        "{stderr}"
    );
}
