use std::process::ExitCode;

use clap::Parser;
use cognitive_memory_mcp::{cli::Cli, commands};
use config_core::EnvSnapshot;

fn main() -> ExitCode {
    let cli = Cli::parse();
    ExitCode::from(commands::run(&cli, &EnvSnapshot::from_process()))
}
