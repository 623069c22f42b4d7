//! Logging: one `tracing` subscriber writing to journald, pretty text or JSON, with a level that
//! SIGHUP can change while the daemon runs.
//!
//! Every line goes to stderr or the journal, never stdout: over stdio, stdout carries JSON-RPC.

mod journald;

use std::io::IsTerminal;

use config_core::Environment;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry, reload};

use crate::config::{LogFormat, LogLevel, LoggingConfig};

pub use journald::JournaldLayer;

/// What the journal's `SYSLOG_IDENTIFIER` says; the unit's `SyslogIdentifier=` matches it.
pub const SYSLOG_IDENTIFIER: &str = "cognitive-memory-mcp";

/// Where log lines went, decided once at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Journald,
    Pretty,
    Json,
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Output::Journald => "journald",
            Output::Pretty => "pretty",
            Output::Json => "json",
        })
    }
}

/// Changes the installed subscriber's filter; kept by the daemon for SIGHUP.
#[derive(Debug, Clone)]
pub struct LogHandle {
    filter: reload::Handle<Targets, Registry>,
    output: Output,
}

impl LogHandle {
    /// Applies a new level (and payload setting, which decides how verbose the MCP library may be).
    pub fn apply(&self, config: &LoggingConfig) -> Result<(), String> {
        self.filter
            .reload(filter(config))
            .map_err(|err| format!("cannot change the log level: {err}"))
    }

    pub fn output(&self) -> Output {
        self.output
    }
}

/// Installs the global subscriber. `auto` means journald when stderr is connected to the journal
/// (that is how systemd starts us), pretty text in development, JSON elsewhere.
pub fn init(config: &LoggingConfig, environment: Environment) -> LogHandle {
    let (filter_layer, filter_handle) = reload::Layer::new(filter(config));
    let mut output = choose_output(config.format, environment);
    let journald = match output {
        Output::Journald => match JournaldLayer::new(environment) {
            Ok(layer) => Some(layer),
            Err(err) => {
                // No journal socket: fall back to stderr rather than lose every line.
                eprintln!("warning: journald is not reachable ({err}); logging JSON to stderr");
                output = Output::Json;
                None
            }
        },
        _ => None,
    };
    let writer: Box<dyn Layer<_> + Send + Sync> = match (output, journald) {
        (Output::Journald, Some(layer)) => Box::new(layer),
        (Output::Pretty, _) => Box::new(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_target(false),
        ),
        _ => Box::new(
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(std::io::stderr)
                .with_current_span(true)
                .with_span_list(false),
        ),
    };
    // A second init (tests that run `serve` twice in one process) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(filter_layer)
        .with(writer)
        .try_init();
    LogHandle {
        filter: filter_handle,
        output,
    }
}

fn choose_output(format: LogFormat, environment: Environment) -> Output {
    match format {
        LogFormat::Journald => Output::Journald,
        LogFormat::Pretty => Output::Pretty,
        LogFormat::Json => Output::Json,
        LogFormat::Auto if systemd_journal_logger::connected_to_journal() => Output::Journald,
        LogFormat::Auto if environment == Environment::Development => Output::Pretty,
        LogFormat::Auto => Output::Json,
    }
}

/// Our own events at the configured level. Libraries are capped: the MCP library logs whole
/// messages (tool arguments, memory contents) at debug, so it stays at info unless payload
/// logging is allowed; sqlx and hyper are noisy below info.
fn filter(config: &LoggingConfig) -> Targets {
    let level = level_filter(config.level);
    let library_cap = level.min(LevelFilter::INFO);
    let rmcp = if config.log_payloads {
        level
    } else {
        library_cap
    };
    Targets::new()
        .with_default(level)
        .with_target("rmcp", rmcp)
        .with_target("sqlx", library_cap)
        .with_target("hyper", library_cap)
        .with_target("h2", library_cap)
        .with_target("tower_http", library_cap)
}

fn level_filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(level: LogLevel, log_payloads: bool) -> LoggingConfig {
        LoggingConfig {
            level,
            format: LogFormat::Auto,
            log_payloads,
        }
    }

    #[test]
    fn the_mcp_library_stays_at_info_unless_payloads_may_be_logged() {
        let quiet = filter(&config(LogLevel::Debug, false));
        assert!(quiet.would_enable("cognitive_memory_mcp::mcp", &tracing::Level::DEBUG));
        assert!(!quiet.would_enable("rmcp::service", &tracing::Level::DEBUG));
        assert!(quiet.would_enable("rmcp::service", &tracing::Level::INFO));
        let verbose = filter(&config(LogLevel::Debug, true));
        assert!(verbose.would_enable("rmcp::service", &tracing::Level::DEBUG));
    }

    #[test]
    fn the_level_caps_libraries_too() {
        let warn = filter(&config(LogLevel::Warn, true));
        assert!(!warn.would_enable("sqlx::query", &tracing::Level::INFO));
        assert!(!warn.would_enable("cognitive_memory_mcp", &tracing::Level::INFO));
        assert!(warn.would_enable("cognitive_memory_mcp", &tracing::Level::WARN));
    }

    #[test]
    fn explicit_formats_win_and_auto_depends_on_the_environment() {
        assert_eq!(
            choose_output(LogFormat::Json, Environment::Development),
            Output::Json
        );
        assert_eq!(
            choose_output(LogFormat::Pretty, Environment::Production),
            Output::Pretty
        );
        // Tests do not run with stderr connected to the journal.
        assert_eq!(
            choose_output(LogFormat::Auto, Environment::Development),
            Output::Pretty
        );
        assert_eq!(
            choose_output(LogFormat::Auto, Environment::Staging),
            Output::Json
        );
    }
}
