//! A `tracing` layer that writes events to the systemd journal through systemd-journal-logger.
//!
//! The journal gets structured entries: PRIORITY from the level, CODE_FILE/CODE_LINE/CODE_MODULE,
//! SYSLOG_IDENTIFIER, an ENVIRONMENT field, and every event and span field upper-cased (so a
//! request id is searchable as `REQUEST_ID=…`).

use std::fmt::{self, Write as _};

use config_core::Environment;
use systemd_journal_logger::JournalLog;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::SYSLOG_IDENTIFIER;

pub struct JournaldLayer {
    journal: JournalLog,
}

impl fmt::Debug for JournaldLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JournaldLayer")
    }
}

impl JournaldLayer {
    /// Fails when there is no journal socket (not running under systemd).
    pub fn new(environment: Environment) -> std::io::Result<Self> {
        let journal = JournalLog::new()?
            .with_syslog_identifier(SYSLOG_IDENTIFIER.to_owned())
            .with_extra_fields([("ENVIRONMENT", environment.as_str())]);
        Ok(Self { journal })
    }
}

/// Fields recorded on a span, kept in its extensions for the events inside it.
#[derive(Default)]
struct SpanFields(Vec<(&'static str, String)>);

#[derive(Default)]
struct FieldCollector {
    message: Option<String>,
    fields: Vec<(&'static str, String)>,
}

impl Visit for FieldCollector {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, format!("{value:?}"));
    }
}

impl FieldCollector {
    fn push(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.message = Some(value);
        } else {
            self.fields.push((field.name(), value));
        }
    }
}

impl<S> Layer<S> for JournaldLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut collector = FieldCollector::default();
        attrs.record(&mut collector);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(collector.fields));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let mut collector = FieldCollector::default();
        values.record(&mut collector);
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<SpanFields>()
        {
            fields.0.extend(collector.fields);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut collector = FieldCollector::default();
        event.record(&mut collector);
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<SpanFields>() {
                    collector.fields.extend(fields.0.iter().cloned());
                }
            }
        }
        let message = collector
            .message
            .take()
            .unwrap_or_else(|| message_from_fields(&collector.fields));
        let pairs: Vec<(&str, &str)> = collector
            .fields
            .iter()
            .map(|(key, value)| (*key, value.as_str()))
            .collect();
        let pairs: &[(&str, &str)] = &pairs;
        let meta = event.metadata();
        // Nothing sensible can be done when the journal refuses a line.
        let _ = self.journal.journal_send(
            &log::Record::builder()
                .args(format_args!("{message}"))
                .level(log_level(*meta.level()))
                .target(meta.target())
                .module_path(meta.module_path())
                .file(meta.file())
                .line(meta.line())
                .key_values(&pairs)
                .build(),
        );
    }
}

/// Libraries such as sqlx log events without a message; the journal needs one.
fn message_from_fields(fields: &[(&'static str, String)]) -> String {
    let mut message = String::new();
    for (key, value) in fields {
        if !message.is_empty() {
            message.push(' ');
        }
        let _ = write!(message, "{key}={value}");
    }
    message
}

fn log_level(level: Level) -> log::Level {
    match level {
        Level::ERROR => log::Level::Error,
        Level::WARN => log::Level::Warn,
        Level::INFO => log::Level::Info,
        Level::DEBUG => log::Level::Debug,
        Level::TRACE => log::Level::Trace,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_without_a_message_get_one_from_their_fields() {
        let fields = vec![("summary", "SELECT 1".to_owned()), ("rows", "1".to_owned())];
        assert_eq!(message_from_fields(&fields), "summary=SELECT 1 rows=1");
    }
}
