//! The one description of a configuration: which keys exist, their types, defaults, variable
//! names and docs. Unknown-key detection, required checks, `explain`, the `.env.template` and the
//! reference docs are all derived from it.

use std::collections::BTreeMap;

use crate::resolve::Resolved;
use crate::{ConfigValue, Environment, Report, Severity, Source, ValueKind};

/// A configuration section: a struct whose fields are keys or nested sections.
/// Implement it with `#[derive(Config)]`.
pub trait Config: Sized {
    /// Adds this section's keys and subsections to the schema.
    fn describe(schema: &mut SchemaBuilder);
    /// Builds the section from resolved values, recording every problem; `None` if any field failed.
    fn extract(ex: &mut Extractor<'_>) -> Option<Self>;
    /// Rules that span fields (for example "a token is required when auth is on"). Runs for each
    /// section that extracted cleanly, so one bad value elsewhere does not hide these problems.
    fn validate(&self, _v: &mut Validator<'_>) {}
}

/// How a secret is shown in `explain` and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redaction {
    /// Not at all: `[redacted]`.
    Hidden,
    /// A connection URL without its password or query: `postgres://user@host:5432/db`.
    Url,
}

/// What `#[derive(Config)]` knows about a key besides its type.
#[derive(Debug, Clone, Copy)]
pub struct KeyAttrs {
    pub doc: &'static str,
    pub default: Option<&'static str>,
    pub aliases: &'static [&'static str],
    pub redaction: Redaction,
}

/// One configuration key.
#[derive(Debug, Clone)]
pub struct KeySpec {
    /// Dotted path, e.g. `server.http.bind`.
    pub path: String,
    /// The one variable derived from the path, e.g. `COGMEM__SERVER__HTTP__BIND`.
    pub var: String,
    /// Conventional names declared by the schema, e.g. `DATABASE_URL`.
    pub aliases: &'static [&'static str],
    pub doc: &'static str,
    pub kind: ValueKind,
    pub secret: bool,
    pub optional: bool,
    pub default: Option<&'static str>,
    pub redaction: Redaction,
}

impl KeySpec {
    /// A key with neither default nor `Option` type must be supplied.
    pub fn required(&self) -> bool {
        !self.optional && self.default.is_none()
    }

    /// The canonical variable, then the aliases.
    pub fn var_names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.var.as_str()).chain(self.aliases.iter().copied())
    }

    /// The name operators know a key by: its first alias, else its canonical variable.
    pub fn main_var(&self) -> &str {
        self.aliases.first().copied().unwrap_or(&self.var)
    }

    /// The systemd credential / secret-mount file name: the main variable in kebab case
    /// (`DATABASE_URL` → `database-url`), without the schema prefix.
    pub fn credential_name(&self, prefix: &str) -> String {
        let var = self.main_var();
        let bare = var.strip_prefix(&format!("{prefix}__")).unwrap_or(var);
        bare.to_ascii_lowercase()
            .replace("__", "-")
            .replace('_', "-")
    }

    fn names_text(&self) -> String {
        self.var_names().collect::<Vec<_>>().join(" or ")
    }

    /// Where an operator can supply this key, for "missing" messages.
    pub fn how_to_set(&self, prefix: &str) -> String {
        let mut how = format!("set {}", self.names_text());
        if self.secret {
            how += &format!(
                ", {}_FILE, or credential {}",
                self.main_var(),
                self.credential_name(prefix)
            );
        }
        how
    }
}

/// A section, for docs and unknown-key suggestions.
#[derive(Debug, Clone)]
pub struct SectionSpec {
    pub path: String,
    pub doc: &'static str,
}

/// The flattened schema of a [`Config`] type.
#[derive(Debug, Clone)]
pub struct Schema {
    /// Prefix of the derived variable names, e.g. `COGMEM`.
    pub prefix: String,
    pub keys: Vec<KeySpec>,
    pub sections: Vec<SectionSpec>,
    by_path: BTreeMap<String, usize>,
    by_var: BTreeMap<String, usize>,
}

impl Schema {
    pub fn of<T: Config>(prefix: &str) -> Schema {
        let mut builder = SchemaBuilder {
            prefix: prefix.to_owned(),
            path: Vec::new(),
            keys: Vec::new(),
            sections: Vec::new(),
        };
        T::describe(&mut builder);
        let by_path = builder
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.path.clone(), i))
            .collect();
        let by_var = builder
            .keys
            .iter()
            .enumerate()
            .flat_map(|(i, k)| {
                k.var_names()
                    .map(move |v| (v.to_owned(), i))
                    .collect::<Vec<_>>()
            })
            .collect();
        Schema {
            prefix: builder.prefix,
            keys: builder.keys,
            sections: builder.sections,
            by_path,
            by_var,
        }
    }

    pub fn key(&self, path: &str) -> Option<&KeySpec> {
        self.by_path.get(path).map(|&i| &self.keys[i])
    }

    /// The key a variable name sets (canonical or alias), if any.
    pub fn key_for_var(&self, var: &str) -> Option<&KeySpec> {
        self.by_var.get(var).map(|&i| &self.keys[i])
    }

    /// Where an operator can supply the key at `path`, for "missing" messages.
    pub fn how_to_set(&self, path: &str) -> String {
        self.key(path)
            .map(|k| k.how_to_set(&self.prefix))
            .unwrap_or_default()
    }

    pub fn is_section(&self, path: &str) -> bool {
        self.sections.iter().any(|s| s.path == path)
    }

    /// Names (keys and sections) directly below `parent` (`""` for the root), for suggestions.
    pub fn children(&self, parent: &str) -> Vec<&str> {
        fn under<'p>(parent: &str, path: &'p str) -> Option<&'p str> {
            let rest = if parent.is_empty() {
                Some(path)
            } else {
                path.strip_prefix(parent)?.strip_prefix('.')
            }?;
            (!rest.contains('.')).then_some(rest)
        }
        let keys = self.keys.iter().filter_map(|k| under(parent, &k.path));
        let sections = self.sections.iter().filter_map(|s| under(parent, &s.path));
        keys.chain(sections).collect()
    }

    /// Every variable name of the schema, for suggesting a fix to an unknown `PREFIX__*` variable.
    pub fn var_names(&self) -> impl Iterator<Item = &str> {
        self.by_var.keys().map(String::as_str)
    }
}

/// `a.b` + `c` → `a.b.c`: the key path of `name` inside the section at `path`.
fn dotted(path: &[&str], name: &str) -> String {
    path.iter()
        .copied()
        .chain([name])
        .collect::<Vec<_>>()
        .join(".")
}

/// Collects keys while a [`Config`] type describes itself.
#[derive(Debug)]
pub struct SchemaBuilder {
    prefix: String,
    path: Vec<&'static str>,
    keys: Vec<KeySpec>,
    sections: Vec<SectionSpec>,
}

impl SchemaBuilder {
    fn full(&self, name: &str) -> String {
        dotted(&self.path, name)
    }

    pub fn key<T: ConfigValue>(&mut self, name: &'static str, attrs: KeyAttrs) {
        let path = self.full(name);
        let var = format!(
            "{}__{}",
            self.prefix,
            path.to_ascii_uppercase().replace('.', "__")
        );
        self.keys.push(KeySpec {
            path,
            var,
            aliases: attrs.aliases,
            doc: attrs.doc,
            kind: T::KIND,
            secret: T::SECRET,
            optional: T::OPTIONAL,
            default: attrs.default,
            redaction: attrs.redaction,
        });
    }

    pub fn section(
        &mut self,
        name: &'static str,
        doc: &'static str,
        describe: fn(&mut SchemaBuilder),
    ) {
        self.sections.push(SectionSpec {
            path: self.full(name),
            doc,
        });
        self.path.push(name);
        describe(self);
        self.path.pop();
    }
}

/// Hands resolved values to [`Config::extract`], converting them by type and recording problems.
#[derive(Debug)]
pub struct Extractor<'a> {
    pub(crate) environment: Environment,
    pub(crate) schema: &'a Schema,
    pub(crate) values: &'a BTreeMap<String, Resolved>,
    pub(crate) report: &'a mut Report,
    pub(crate) path: Vec<&'static str>,
}

impl Extractor<'_> {
    fn full(&self, name: &str) -> String {
        dotted(&self.path, name)
    }

    pub fn value<T: ConfigValue>(&mut self, name: &'static str) -> Option<T> {
        let path = self.full(name);
        match self.values.get(&path) {
            Some(resolved) => match T::parse(&resolved.value) {
                Ok(value) => Some(value),
                Err(reason) => {
                    self.report
                        .error(Some(&path), Some(&resolved.source), reason);
                    None
                }
            },
            None => T::absent().or_else(|| {
                let how = self.schema.how_to_set(&path);
                self.report.error(
                    Some(&path),
                    None,
                    format!("required value is missing; {how}"),
                );
                None
            }),
        }
    }

    pub fn section<T: Config>(&mut self, name: &'static str) -> Option<T> {
        self.path.push(name);
        let section = self.validated::<T>();
        self.path.pop();
        section
    }

    /// Extracts `T` at the current path and, if that worked, applies its cross-field rules.
    pub(crate) fn validated<T: Config>(&mut self) -> Option<T> {
        let section = T::extract(self)?;
        let mut validator = Validator {
            environment: self.environment,
            values: self.values,
            report: &mut *self.report,
            path: self.path.clone(),
        };
        section.validate(&mut validator);
        Some(section)
    }
}

/// Records cross-field problems from [`Config::validate`], attributed to a key and its source.
#[derive(Debug)]
pub struct Validator<'a> {
    pub(crate) environment: Environment,
    pub(crate) values: &'a BTreeMap<String, Resolved>,
    pub(crate) report: &'a mut Report,
    pub(crate) path: Vec<&'static str>,
}

impl Validator<'_> {
    pub fn environment(&self) -> Environment {
        self.environment
    }

    fn record(&mut self, severity: Severity, key: &str, message: String) {
        let path = dotted(&self.path, key);
        let source: Option<Source> = self.values.get(&path).map(|r| r.source.clone());
        self.report
            .push(severity, Some(&path), source.as_ref(), message);
    }

    /// A problem in every environment.
    pub fn error(&mut self, key: &str, message: impl Into<String>) {
        self.record(Severity::Error, key, message.into());
    }

    pub fn warning(&mut self, key: &str, message: impl Into<String>) {
        self.record(Severity::Warning, key, message.into());
    }

    /// An error in staging and production, a warning in development and test.
    pub fn strict(&mut self, key: &str, message: impl Into<String>) {
        let severity = if self.environment.is_strict() {
            Severity::Error
        } else {
            Severity::Warning
        };
        self.record(severity, key, message.into());
    }
}
