//! Property-based tests of the parsers and the layering: no panic on arbitrary input, and the
//! invariants the rest of the crate relies on:
//! - a value written to `.env` with the documented quoting reads back as itself;
//! - `${…}` interpolation of text without `$` is the identity, and `$$` is a literal `$`;
//! - for every key the highest layer that sets it wins, whatever the other keys do (the merge is
//!   per key, not per section);
//! - variable names are `PREFIX__SECTION__KEY`, and each maps back to its key.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use config_core::{
    Config, EnvSnapshot, Environment, InterpolationError, LoadOptions, RawValue, Schema,
    interpolate,
};
use proptest::prelude::*;
use secrecy::{ExposeSecret, SecretString};

#[derive(Debug, Config)]
struct Service {
    /// Storage.
    #[config(section)]
    store: Store,
    /// Cache.
    #[config(section)]
    cache: Cache,
    /// Free text.
    note: Option<String>,
    /// A secret.
    #[config(alias = "SERVICE_TOKEN")]
    token: Option<SecretString>,
}

#[derive(Debug, Config)]
struct Store {
    /// Pool size.
    #[config(default = "1")]
    size: u32,
    /// Shards.
    #[config(default = "2")]
    shards: u32,
}

#[derive(Debug, Config)]
struct Cache {
    /// Time to live.
    #[config(default = "3")]
    ttl: u32,
}

/// The keys the merge property sets, with their built-in defaults.
const MERGED: [(&str, u32); 3] = [("store.size", 1), ("store.shards", 2), ("cache.ttl", 3)];
/// Layers above the defaults, lowest first.
const LAYERS: [&str; 5] = [
    "config.yaml root",
    "config.yaml [test]",
    ".env",
    ".env.test",
    "process env",
];

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn write_private(dir: &Path, name: &str, content: &[u8]) {
    let path = dir.join(name);
    fs::write(&path, content).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
}

fn options<'a>(root: &'a Path, env: &'a EnvSnapshot) -> LoadOptions<'a> {
    LoadOptions {
        root,
        config_file: Path::new("config.yaml"),
        prefix: "SVC",
        environment_var: "ENVIRONMENT",
        environment_flag: Some("test"),
        env,
    }
}

/// The raw text `key` resolved to, as the layers supplied it (before typing and trimming).
fn raw_text(root: &Path, env: &EnvSnapshot, key: &str) -> Option<String> {
    let resolution = config_core::resolve::<Service>(&options(root, env)).unwrap();
    match &resolution.values.get(key)?.value {
        RawValue::Text(text) => Some(text.expose_secret().to_owned()),
        _ => None,
    }
}

/// `"…"` with the escapes the `.env` parser documents: `\\ \" \$ \n \r \t`.
fn double_quoted(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '$' => out.push_str("\\$"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Any text, line breaks and control characters included.
fn any_text() -> impl Strategy<Value = String> {
    proptest::string::string_regex("(?s).{0,40}").unwrap()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_double_quoted_value_reads_back_as_itself(value in any_text()) {
        let dir = tempfile::tempdir().unwrap();
        let line = format!("# written by a tool\nSVC__NOTE={}\nOTHER=1\n", double_quoted(&value));
        write_private(dir.path(), ".env", line.as_bytes());
        let env = EnvSnapshot::default();
        prop_assert_eq!(raw_text(dir.path(), &env, "note"), Some(value));
    }

    #[test]
    fn a_single_quoted_value_is_literal(value in "(?s)[^'\r]{0,40}") {
        let dir = tempfile::tempdir().unwrap();
        let line = format!("SVC__NOTE='{value}' # comment\n");
        write_private(dir.path(), ".env.test", line.as_bytes());
        let env = EnvSnapshot::default();
        prop_assert_eq!(raw_text(dir.path(), &env, "note"), Some(value));
    }

    #[test]
    fn an_unquoted_value_without_special_characters_reads_back(
        value in "[^\\s'\"$#][^\\s$#]{0,20}([ ][^\\s$#]{1,10}){0,3}"
    ) {
        let dir = tempfile::tempdir().unwrap();
        write_private(dir.path(), ".env", format!("export SVC__NOTE={value}\n").as_bytes());
        let env = EnvSnapshot::default();
        prop_assert_eq!(raw_text(dir.path(), &env, "note"), Some(value));
    }

    #[test]
    fn interpolating_text_without_dollars_is_the_identity(text in "(?s)[^$]{0,60}") {
        prop_assert_eq!(interpolate(&text, |_| Some("x")), Ok(text.clone()));
        prop_assert_eq!(interpolate(&text, |_| None), Ok(text));
    }

    #[test]
    fn doubled_dollars_are_literal_dollars(text in any_text()) {
        let escaped = text.replace('$', "$$");
        prop_assert_eq!(interpolate(&escaped, |_| None), Ok(text));
    }

    #[test]
    fn a_reference_is_replaced_by_its_value(
        before in "[^$]{0,20}",
        name in "[A-Za-z_][A-Za-z0-9_]{0,15}",
        value in any_text(),
        after in "[^$]{0,20}",
    ) {
        let input = format!("{before}${{{name}}}{after}");
        let lookup = |n: &str| (n == name).then_some(value.as_str());
        prop_assert_eq!(interpolate(&input, lookup), Ok(format!("{before}{value}{after}")));
        // Unset with a fallback: the fallback.
        if !after.contains('}') {
            let input = format!("{before}${{{name}:-{after}}}");
            prop_assert_eq!(interpolate(&input, |_| None), Ok(format!("{before}{after}")));
        }
        // Unset without one: an error naming the variable, never a value.
        prop_assert_eq!(
            interpolate(&format!("${{{name}}}"), |_| None),
            Err(InterpolationError::Undefined(name.clone()))
        );
    }

    #[test]
    fn interpolation_never_panics(text in any_text(), value in any_text()) {
        let _ = interpolate(&text, |_| Some(value.as_str()));
        let _ = interpolate(&text, |_| None);
    }

    #[test]
    fn environment_names_parse_without_panicking(name in any_text()) {
        // `--env`, `ENVIRONMENT` and every top-level YAML key go through this parser.
        match name.parse::<Environment>() {
            Ok(environment) => prop_assert_eq!(environment.as_str(), name.trim()),
            Err(err) => prop_assert!(!err.to_string().is_empty()),
        }
    }

    #[test]
    fn variable_names_map_to_keys_and_back(prefix in "[A-Z][A-Z0-9]{0,8}") {
        let schema = Schema::of::<Service>(&prefix);
        let mut seen = BTreeMap::new();
        for key in &schema.keys {
            let expected = format!("{prefix}__{}", key.path.to_ascii_uppercase().replace('.', "__"));
            prop_assert_eq!(&key.var, &expected);
            prop_assert_eq!(schema.key_for_var(&key.var).map(|k| &k.path), Some(&key.path));
            for alias in key.aliases {
                prop_assert_eq!(schema.key_for_var(alias).map(|k| &k.path), Some(&key.path));
            }
            prop_assert!(seen.insert(key.var.clone(), key.path.clone()).is_none(), "duplicate {}", key.var);
        }
        // Names are exact: another spelling or a section alone is no variable of the schema.
        let lower = format!("{}__store__size", prefix.to_ascii_lowercase());
        prop_assert!(schema.key_for_var(&lower).is_none());
        let section = format!("{prefix}__STORE");
        prop_assert!(schema.key_for_var(&section).is_none());
        let single = format!("{prefix}_STORE_SIZE");
        prop_assert!(schema.key_for_var(&single).is_none());
    }

    #[test]
    fn for_every_key_the_highest_layer_that_sets_it_wins(
        // For each merged key and each layer above the defaults: set it there, or not.
        settings in proptest::collection::vec(
            proptest::collection::vec(proptest::option::of(0u32..100_000), LAYERS.len()),
            MERGED.len(),
        ),
    ) {
        let dir = tempfile::tempdir().unwrap();
        // YAML: root keys at layer 0, the test section at layer 1; a section is written only
        // when one of its keys is set, so the others come from below (per-key merge).
        let mut yaml = String::new();
        for (layer, indent) in [(0usize, ""), (1, "  ")] {
            let mut sections: BTreeMap<&str, Vec<(&str, u32)>> = BTreeMap::new();
            for ((path, _), per_layer) in MERGED.iter().zip(&settings) {
                if let Some(value) = per_layer[layer] {
                    let (section, key) = path.split_once('.').unwrap();
                    sections.entry(section).or_default().push((key, value));
                }
            }
            if sections.is_empty() {
                continue;
            }
            if layer == 1 {
                yaml.push_str("test:\n");
            }
            for (section, keys) in sections {
                yaml.push_str(&format!("{indent}{section}:\n"));
                for (key, value) in keys {
                    yaml.push_str(&format!("{indent}  {key}: {value}\n"));
                }
            }
        }
        // Another environment's section never applies.
        yaml.push_str("production:\n  store:\n    size: 424242\n");
        write_private(dir.path(), "config.yaml", yaml.as_bytes());
        let var = |path: &str| format!("SVC__{}", path.to_ascii_uppercase().replace('.', "__"));
        for (layer, file) in [(2usize, ".env"), (3, ".env.test")] {
            let mut content = String::from("# generated\n");
            for ((path, _), per_layer) in MERGED.iter().zip(&settings) {
                if let Some(value) = per_layer[layer] {
                    content.push_str(&format!("{}={value}\n", var(path)));
                }
            }
            write_private(dir.path(), file, content.as_bytes());
        }
        let env: EnvSnapshot = MERGED
            .iter()
            .zip(&settings)
            .filter_map(|((path, _), per_layer)| Some((var(path), per_layer[4]?.to_string())))
            .collect();

        let loaded = config_core::load::<Service>(&options(dir.path(), &env)).unwrap();
        // Optional keys no layer sets stay unset.
        prop_assert!(loaded.config.note.is_none() && loaded.config.token.is_none());
        let actual = [loaded.config.store.size, loaded.config.store.shards, loaded.config.cache.ttl];
        for (index, ((path, default), per_layer)) in MERGED.iter().zip(&settings).enumerate() {
            let winner = per_layer.iter().rposition(Option::is_some);
            let expected = winner.map_or(*default, |layer| per_layer[layer].unwrap());
            prop_assert_eq!(actual[index], expected, "{} (layers {:?})", path, per_layer);
            let resolved = &loaded.resolution.values[*path];
            let source = resolved.source.to_string();
            let expected_source = match winner {
                None => "default".to_owned(),
                Some(0) => "config.yaml:".to_owned(),
                Some(1) => "[test]".to_owned(),
                Some(2) => ".env:".to_owned(),
                Some(3) => ".env.test:".to_owned(),
                Some(_) => format!("env {}", var(path)),
            };
            prop_assert!(
                source.contains(&expected_source),
                "{}: source {} should name {} ({})", path, source, expected_source,
                winner.map_or("defaults", |layer| LAYERS[layer])
            );
            if winner == Some(0) {
                prop_assert!(!source.contains('['), "{}: {}", path, source);
            }
            // Every lower layer that set it (the default included) is recorded as overridden.
            prop_assert_eq!(resolved.overridden.len(), per_layer.iter().flatten().count(), "{}", path);
        }
    }

    #[test]
    fn arbitrary_files_and_variables_never_panic(
        dotenv in proptest::collection::vec(any::<u8>(), 0..200),
        dotenv_text in "(?s)([A-Za-z_]{1,8}=?|export |[\"'#$ {}\\\\=\n]|\\$\\{[A-Z_:-]{0,6}\\}?|.){0,60}",
        yaml in "(?s)([a-z_]{1,8}:|[ \n\\-\\[\\]{}\"'#:,|>&*!%@`]|.){0,80}",
        value in any_text(),
        name in "(SVC__)?[A-Z_]{1,12}",
    ) {
        let dir = tempfile::tempdir().unwrap();
        write_private(dir.path(), ".env", &dotenv);
        write_private(dir.path(), ".env.test", dotenv_text.as_bytes());
        write_private(dir.path(), "config.yaml", yaml.as_bytes());
        let env: EnvSnapshot = [(name.as_str(), value.as_str()), ("SVC__STORE__SIZE", value.as_str())]
            .into_iter()
            .collect();
        // Ok or a report of problems; never a panic.
        if let Err(failure) = config_core::load::<Service>(&options(dir.path(), &env)) {
            // Reports name keys and lines, never values (a value may be a secret).
            let report = failure.report.to_string();
            if value.len() >= 12 && value.trim() == value && !value.contains('\n') {
                prop_assert!(!report.contains(&value), "{}", report);
            }
        }
    }
}
