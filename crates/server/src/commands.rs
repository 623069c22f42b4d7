//! The subcommands. Each returns the process exit code and writes its own output.

use std::io::Write;

use config_core::EnvSnapshot;

use crate::cli::{Cli, Command, ConfigCommand};
use crate::config::{self, AppConfig};
use crate::exit;

/// Runs the parsed command line against the given process environment.
pub fn run(cli: &Cli, env: &EnvSnapshot) -> u8 {
    match &cli.command {
        Command::Config(command) => config_command(cli, command, env),
    }
}

fn config_command(cli: &Cli, command: &ConfigCommand, env: &EnvSnapshot) -> u8 {
    let source = cli.config_source();
    match command {
        ConfigCommand::Template => {
            print!("{}", config::env_template());
            exit::OK
        }
        ConfigCommand::Check => match config::load(&source, env) {
            Ok(loaded) => {
                let report = &loaded.resolution.report;
                if !report.is_empty() {
                    eprintln!("{report}");
                }
                println!(
                    "configuration OK for {} ({} warning{})",
                    loaded.resolution.environment,
                    report.warnings().count(),
                    if report.warnings().count() == 1 {
                        ""
                    } else {
                        "s"
                    }
                );
                exit::OK
            }
            Err(failure) => {
                let env_name = failure
                    .resolution
                    .as_ref()
                    .map(|r| r.environment.as_str())
                    .unwrap_or("the selected environment");
                eprintln!(
                    "configuration for {env_name} is invalid:\n{}",
                    failure.report
                );
                exit::CONFIG
            }
        },
        ConfigCommand::Explain => {
            // Explain even a broken configuration: that is when it is needed most.
            let options = config::options(&source, env);
            let outcome = config_core::load::<AppConfig>(&options);
            let (resolution, report, failed) = match outcome {
                Ok(loaded) => {
                    let report = loaded.resolution.report.clone();
                    (Some(Box::new(loaded.resolution)), report, false)
                }
                Err(failure) => (failure.resolution, failure.report, true),
            };
            if let Some(resolution) = &resolution {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(config_core::explain(resolution).as_bytes());
            }
            if !report.is_empty() {
                eprintln!("{report}");
            }
            if failed { exit::CONFIG } else { exit::OK }
        }
    }
}
