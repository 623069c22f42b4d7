//! Running the real `xtask` binary from tests, and asserting on what it printed.
#![allow(dead_code, reason = "each test crate uses a different part of it")]

use std::path::Path;
use std::process::{Command, Output};

/// `xtask ARGS` for the repository at `root`, with a clean environment (only `PATH` and
/// `PG_BINDIR` pass): nothing of the developer's configuration leaks in.
pub fn xtask(root: &Path, args: &[&str], vars: &[(&str, &str)]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command.args(args).env_clear().env("COGMEM_REPO_ROOT", root);
    for name in ["PATH", "PG_BINDIR"] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command.envs(vars.iter().copied());
    Run(command.output().unwrap())
}

/// A finished run.
pub struct Run(pub Output);

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }

    /// stdout then stderr.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout(), self.stderr())
    }

    #[track_caller]
    pub fn success(self) -> Run {
        assert!(
            self.0.status.success(),
            "xtask failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }

    #[track_caller]
    pub fn failure(self) -> Run {
        assert!(
            !self.0.status.success(),
            "xtask should have failed\nstdout:\n{}",
            self.stdout()
        );
        self
    }

    #[track_caller]
    pub fn says(&self, text: &str) -> &Run {
        let all = self.all();
        assert!(all.contains(text), "expected {text:?} in:\n{all}");
        self
    }

    #[track_caller]
    pub fn never_says(&self, text: &str) -> &Run {
        let all = self.all();
        assert!(!all.contains(text), "unexpected {text:?} in:\n{all}");
        self
    }
}
