//! Human-readable views of a configuration: `explain` (effective values with provenance) and the
//! `.env.template` generator. Both come from the schema; neither ever shows a secret.

use std::fmt::Write as _;

use secrecy::ExposeSecret;

use crate::checks::redact_url;
use crate::{KeySpec, RawValue, Redaction, Resolution, Schema, ValueKind};

/// How a value may be shown: non-secrets as they are, secrets hidden or as a redacted URL.
pub fn display_value(key: &KeySpec, value: &RawValue) -> String {
    match value {
        RawValue::Null => "null".to_owned(),
        RawValue::Text(text) if key.secret => {
            let text = text.expose_secret();
            match key.redaction {
                _ if text.trim().is_empty() => "(empty)".to_owned(),
                Redaction::Url => redact_url(text),
                Redaction::Hidden => "[redacted]".to_owned(),
            }
        }
        RawValue::Text(text) => text.expose_secret().trim().to_owned(),
        RawValue::List(_) if key.secret => "[redacted]".to_owned(),
        RawValue::List(items) => serde_json::to_string(
            &items
                .iter()
                .map(|i| i.expose_secret().trim())
                .collect::<Vec<_>>(),
        )
        .unwrap_or_default(),
    }
}

/// Every key: its shown value, where it came from, and what it overrode.
pub fn explain(resolution: &Resolution) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "environment: {} (from {})",
        resolution.environment, resolution.environment_source
    );
    let (present, missing): (Vec<_>, Vec<_>) = resolution.files.iter().partition(|f| f.present);
    let list = |files: Vec<&crate::FileRead>| {
        files
            .iter()
            .map(|f| f.path.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(
        out,
        "files read: {}",
        if present.is_empty() {
            "none".to_owned()
        } else {
            list(present)
        }
    );
    if !missing.is_empty() {
        let _ = writeln!(out, "not present: {}", list(missing));
    }
    for key in &resolution.schema.keys {
        let _ = writeln!(out);
        match resolution.values.get(&key.path) {
            Some(resolved) => {
                let secret = if key.secret { "  (secret)" } else { "" };
                // A value that failed to convert is not echoed: it may be a secret under the wrong key.
                let invalid = resolution.report.errors().any(|p| {
                    p.key.as_deref() == Some(&key.path)
                        && p.source.as_ref() == Some(&resolved.source)
                });
                let shown = if invalid {
                    "(invalid, see the errors below)".to_owned()
                } else {
                    display_value(key, &resolved.value)
                };
                let _ = writeln!(out, "{} = {shown}{secret}", key.path);
                let _ = writeln!(out, "    from {}", resolved.source);
                for source in &resolved.overridden {
                    let _ = writeln!(out, "    overrides {source}");
                }
            }
            None => {
                let _ = writeln!(out, "{} = (unset)", key.path);
                let _ = writeln!(out, "    {}", key.how_to_set(&resolution.schema.prefix));
            }
        }
    }
    out
}

/// The `.env.template`: every variable, documented, with its default. Required keys are
/// uncommented and empty (an empty value is rejected, so a copied template cannot run as is).
pub fn env_template(schema: &Schema, header: &str) -> String {
    let mut out = String::new();
    for line in header.lines() {
        let _ = writeln!(out, "{}", format!("# {line}").trim_end());
    }
    let mut section = "";
    for key in &schema.keys {
        let top = key.path.split('.').next().unwrap_or_default();
        if top != section {
            section = top;
            let _ = writeln!(out, "\n# ===== {section} =====");
        }
        let _ = writeln!(out, "\n# {} — {}", key.path, key.doc);
        let mut facts = vec![key.kind.to_string()];
        if key.required() {
            facts.push("required".into());
        }
        if let Some(default) = key.default {
            facts.push(format!("default {default}"));
        }
        if key.secret {
            facts.push(format!(
                "also {}_FILE or credential {}",
                key.main_var(),
                key.credential_name(&schema.prefix)
            ));
        }
        if !key.aliases.is_empty() {
            facts.push(format!("same as {}", key.var));
        }
        let _ = writeln!(out, "#   {}", facts.join("; "));
        let example = key.default.unwrap_or_default();
        let commented = if key.required() { "" } else { "#" };
        let _ = writeln!(out, "{commented}{}={example}", key.main_var());
        if matches!(key.kind, ValueKind::List) && key.default.is_none() {
            let _ = writeln!(out, "#   (a JSON array, e.g. [\"https://app.example\"])");
        }
    }
    out
}
