//! Reads every layer, merges them key by key, and records provenance and problems.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

use crate::checks::{is_placeholder, loose_mode};
use crate::interpolate::interpolate;
use crate::source::Layer;
use crate::yaml::Node;
use crate::{
    Config, EnvSnapshot, Environment, EnvironmentSource, Extractor, RawValue, Report, Schema,
    Severity, Source, ValueKind, dotenv, yaml,
};

/// Where to read from. Generic: the application names its prefix and file.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions<'a> {
    /// Directory holding the configuration file and the `.env*` files.
    pub root: &'a Path,
    /// The shared configuration file, relative to `root` (e.g. `config/config.yaml`).
    pub config_file: &'a Path,
    /// Prefix of derived variable names (e.g. `COGMEM` → `COGMEM__SERVER__HTTP__BIND`).
    pub prefix: &'a str,
    /// The variable that selects the environment when no flag does (normally `ENVIRONMENT`).
    pub environment_var: &'a str,
    /// The `--env` flag, if given.
    pub environment_flag: Option<&'a str>,
    /// The process environment.
    pub env: &'a EnvSnapshot,
}

/// A key's effective value, where it came from, and what it overrode (highest first).
#[derive(Debug, Clone)]
pub struct Resolved {
    pub value: RawValue,
    pub source: Source,
    pub overridden: Vec<Source>,
}

/// A file the loader looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRead {
    pub path: PathBuf,
    pub present: bool,
}

/// Everything known after reading the layers: the effective values with provenance, the files
/// looked at, and the problems found so far.
#[derive(Debug)]
pub struct Resolution {
    pub schema: Schema,
    pub environment: Environment,
    pub environment_source: EnvironmentSource,
    pub files: Vec<FileRead>,
    pub values: BTreeMap<String, Resolved>,
    pub report: Report,
}

/// A successfully loaded configuration; `resolution.report` holds its warnings.
#[derive(Debug)]
pub struct Loaded<T> {
    pub config: T,
    pub resolution: Resolution,
}

/// A failed load: every problem, and the resolution when the environment could be chosen.
#[derive(Debug)]
pub struct LoadFailure {
    pub report: Report,
    pub resolution: Option<Box<Resolution>>,
}

/// Chooses the environment: the flag, else the variable, else `development` (with a warning).
pub fn select_environment(
    flag: Option<&str>,
    env: &EnvSnapshot,
    var: &str,
) -> Result<(Environment, EnvironmentSource), crate::InvalidEnvironment> {
    match (flag, env.get(var)) {
        (Some(given), _) => Ok((given.parse()?, EnvironmentSource::Flag)),
        (None, Some(given)) => Ok((given.parse()?, EnvironmentSource::Variable(var.to_owned()))),
        (None, None) => Ok((Environment::Development, EnvironmentSource::Default)),
    }
}

/// Loads, validates and extracts `T`. Collects all problems; fails if any is an error.
pub fn load<T: Config>(options: &LoadOptions<'_>) -> Result<Loaded<T>, LoadFailure> {
    let mut resolution = resolve::<T>(options).map_err(|report| LoadFailure {
        report,
        resolution: None,
    })?;
    let mut extractor = Extractor {
        environment: resolution.environment,
        schema: &resolution.schema,
        values: &resolution.values,
        report: &mut resolution.report,
        path: Vec::new(),
    };
    match extractor.validated::<T>() {
        Some(config) if !resolution.report.has_errors() => Ok(Loaded { config, resolution }),
        _ => Err(LoadFailure {
            report: resolution.report.clone(),
            resolution: Some(Box::new(resolution)),
        }),
    }
}

/// Reads and merges every layer for `T`'s schema. Fails only when no environment can be chosen.
pub fn resolve<T: Config>(options: &LoadOptions<'_>) -> Result<Resolution, Report> {
    let (environment, environment_source) = select_environment(
        options.environment_flag,
        options.env,
        options.environment_var,
    )
    .map_err(|err| {
        let mut report = Report::default();
        let source = match options.environment_flag {
            Some(_) => "--env".to_owned(),
            None => format!("env {}", options.environment_var),
        };
        report.error(None, None, format!("{err} [{source}]"));
        report
    })?;
    let mut layers = Layers {
        options,
        schema: Schema::of::<T>(options.prefix),
        environment,
        entries: BTreeMap::new(),
        dotenv_vars: BTreeMap::new(),
        files: Vec::new(),
        report: Report::default(),
        required_by: Vec::new(),
    };
    if environment_source == EnvironmentSource::Default {
        layers.report.warning(
            None,
            None,
            format!(
                "no environment chosen (--env or {}); assuming development",
                options.environment_var
            ),
        );
    }
    layers.read_defaults();
    layers.read_dotenv(Path::new(".env"));
    layers.read_dotenv(&PathBuf::from(format!(".env.{environment}")));
    layers.read_yaml();
    layers.read_process_env();
    layers.read_secret_files();
    layers.check_tracked_secrets();
    let values = layers.merge();
    layers.check_required_by(&values);
    layers.check_placeholders(&values);
    Ok(Resolution {
        schema: layers.schema,
        environment,
        environment_source,
        files: layers.files,
        values,
        report: layers.report,
    })
}

struct Entry {
    value: RawValue,
    source: Source,
}

struct Layers<'a> {
    options: &'a LoadOptions<'a>,
    schema: Schema,
    environment: Environment,
    entries: BTreeMap<String, Vec<Entry>>,
    /// Variables defined by `.env` files, for `${…}` in later lines and in YAML.
    dotenv_vars: BTreeMap<String, SecretString>,
    files: Vec<FileRead>,
    report: Report,
    /// Keys an operator declared required (`require:` in the YAML), with where that was said.
    required_by: Vec<(String, Source)>,
}

impl Layers<'_> {
    fn display_path(&self, relative: &Path) -> PathBuf {
        let root = self.options.root;
        if root.as_os_str().is_empty() || root == Path::new(".") {
            relative.to_owned()
        } else {
            root.join(relative)
        }
    }

    fn strict(&self) -> Severity {
        if self.environment.is_strict() {
            Severity::Error
        } else {
            Severity::Warning
        }
    }

    fn add(&mut self, path: &str, value: RawValue, source: Source) {
        self.entries
            .entry(path.to_owned())
            .or_default()
            .push(Entry { value, source });
    }

    /// Looks a `${NAME}` up: the process environment wins over `.env` definitions.
    fn lookup<'b>(
        env: &'b EnvSnapshot,
        dotenv: &'b BTreeMap<String, SecretString>,
        name: &str,
    ) -> Option<&'b str> {
        env.get(name)
            .or_else(|| dotenv.get(name).map(|v| v.expose_secret()))
    }

    /// Secrets files must be private; group- or world-accessible is an error where it matters.
    fn check_private(&mut self, path: &Path, shown: &Path) {
        if self.environment.is_strict()
            && let Some(owner) = crate::checks::foreign_owner(path)
        {
            self.report.error(
                None,
                None,
                format!(
                    "{file} is owned by uid {owner}, neither the user running this (uid {me}) nor root; a secrets file must belong to one of them: chown {me} {file}",
                    file = shown.display(),
                    me = rustix::process::geteuid().as_raw()
                ),
            );
        }
        if let Some(mode) = loose_mode(path) {
            let severity = self.strict();
            self.report.push(
                severity,
                None,
                None,
                format!(
                    "{file} is accessible by group or others (mode {mode:04o}); a secrets file must be private: chmod 600 {file}",
                    file = shown.display()
                ),
            );
        }
    }

    /// Nobody but the owner may change the configuration: neither the file nor a directory
    /// holding it (up to the configuration root) may be group- or world-writable. An error in
    /// staging and production, a warning elsewhere.
    fn check_not_writable(&mut self, path: &Path, shown: &Path) {
        if let Some((writable, mode)) = crate::checks::writable_by_others(path, self.options.root) {
            let what = if writable == path {
                shown.display().to_string()
            } else {
                format!("{} (holding {})", writable.display(), shown.display())
            };
            let severity = self.strict();
            self.report.push(
                severity,
                None,
                None,
                format!(
                    "{what} is writable by group or others (mode {mode:04o}); only its owner may change the configuration: chmod go-w {}",
                    writable.display()
                ),
            );
        }
    }

    fn read_defaults(&mut self) {
        let defaults: Vec<_> = self
            .schema
            .keys
            .iter()
            .filter_map(|k| Some((k.path.clone(), k.default?)))
            .collect();
        for (path, default) in defaults {
            self.add(&path, RawValue::text(default), Source::Default);
        }
    }

    /// Reads a configuration file below the root, recording it in `files`. `None` when it is
    /// absent (recorded as not present) or unreadable (reported).
    fn read_file(&mut self, relative: &Path) -> Option<(PathBuf, PathBuf, String)> {
        let path = self.options.root.join(relative);
        let shown = self.display_path(relative);
        match std::fs::read_to_string(&path) {
            Ok(content) => {
                self.files.push(FileRead {
                    path: shown.clone(),
                    present: true,
                });
                self.check_not_writable(&path, &shown);
                // A byte-order mark (Windows editors) is not part of the first key.
                let content = match content.strip_prefix('\u{feff}') {
                    Some(rest) => rest.to_owned(),
                    None => content,
                };
                Some((path, shown, content))
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                self.files.push(FileRead {
                    path: shown,
                    present: false,
                });
                None
            }
            Err(err) => {
                self.report.error(
                    None,
                    None,
                    format!("cannot read {}: {}", shown.display(), err.kind()),
                );
                None
            }
        }
    }

    fn read_dotenv(&mut self, name: &Path) {
        let Some((path, shown, content)) = self.read_file(name) else {
            return;
        };
        self.check_private(&path, &shown);
        let (assignments, errors) = dotenv::parse(&content);
        drop(SecretString::from(content));
        for error in errors {
            let source = Source::DotEnv {
                file: shown.clone(),
                line: error.line,
            };
            self.report.error(None, Some(&source), error.message);
        }
        let prefix = format!("{}__", self.options.prefix);
        for assignment in assignments {
            let source = Source::DotEnv {
                file: shown.clone(),
                line: assignment.line,
            };
            let value = if assignment.expand {
                match interpolate(assignment.value.expose_secret(), |n| {
                    Self::lookup(self.options.env, &self.dotenv_vars, n)
                }) {
                    Ok(expanded) => SecretString::from(expanded),
                    Err(err) => {
                        self.report
                            .error(Some(&assignment.name), Some(&source), err.to_string());
                        continue;
                    }
                }
            } else {
                assignment.value
            };
            let name = assignment.name;
            if let Some(key) = self.schema.key_for_var(&name) {
                let path = key.path.clone();
                self.add(&path, RawValue::Text(value.clone()), source);
            } else if name == self.options.environment_var {
                self.report.warning(
                    Some(&name),
                    Some(&source),
                    "a .env file cannot choose the environment; use --env or the process environment",
                );
            } else if name.starts_with(&prefix) || self.secret_file_var(&name).is_some() {
                self.unknown_var(&name, &source);
            }
            self.dotenv_vars.insert(name, value);
        }
    }

    fn unknown_var(&mut self, name: &str, source: &Source) {
        let message =
            if self.secret_file_var(name).is_some() && !matches!(source, Source::Env { .. }) {
                "*_FILE variables are read from the process environment only".to_owned()
            } else {
                let hint = crate::suggest::nearest(name, self.schema.var_names())
                    .map(|n| format!(" (did you mean {n}?)"))
                    .unwrap_or_default();
                format!("unknown variable, ignored{hint}")
            };
        self.report.warning(Some(name), Some(source), message);
    }

    /// The secret key a `NAME_FILE` variable points at, if `NAME` is one of its variables.
    fn secret_file_var(&self, name: &str) -> Option<&crate::KeySpec> {
        name.strip_suffix("_FILE")
            .and_then(|base| self.schema.key_for_var(base))
            .filter(|k| k.secret)
    }

    fn read_yaml(&mut self) {
        let Some((_, shown, content)) = self.read_file(self.options.config_file) else {
            let shown = self.display_path(self.options.config_file);
            if self
                .files
                .last()
                .is_some_and(|f| !f.present && f.path == shown)
            {
                self.report.warning(
                    None,
                    None,
                    format!("{} not found; using built-in defaults", shown.display()),
                );
            }
            return;
        };
        let root = match yaml::parse(&content) {
            Ok(root) => root,
            Err(err) => {
                let source = Source::Yaml {
                    file: shown,
                    line: err.line,
                    section: None,
                };
                self.report.error(
                    None,
                    Some(&source),
                    format!("not valid YAML: {}", err.message),
                );
                return;
            }
        };
        let Node::Map { entries, .. } = root else {
            let source = Source::Yaml {
                file: shown,
                line: root.line(),
                section: None,
            };
            self.report.error(
                None,
                Some(&source),
                "the top level must be a mapping of sections",
            );
            return;
        };
        // Root-level keys first: the environment's section must override them whatever the order.
        let mut section = None;
        for (key, line, node) in entries {
            let source = Source::Yaml {
                file: shown.clone(),
                line,
                section: None,
            };
            match key.parse::<Environment>() {
                Ok(env) if env == self.environment => section = Some((env, node)),
                Ok(env) => self.check_unknown_keys(
                    &node,
                    "",
                    &Source::Yaml {
                        file: shown.clone(),
                        line,
                        section: Some(env),
                    },
                ),
                Err(_) if key == "require" => self.read_require(&node, source),
                Err(_) => self.read_yaml_entry(&key, node, "", source),
            }
        }
        if let Some((env, node)) = section {
            match node {
                Node::Map { entries, .. } => {
                    for (key, line, node) in entries {
                        let source = Source::Yaml {
                            file: shown.clone(),
                            line,
                            section: Some(env),
                        };
                        if key == "require" {
                            self.required_by.clear();
                            self.read_require(&node, source);
                        } else {
                            self.read_yaml_entry(&key, node, "", source);
                        }
                    }
                }
                node if node.is_null() => {}
                node => {
                    let source = Source::Yaml {
                        file: shown,
                        line: node.line(),
                        section: Some(env),
                    };
                    self.report.error(
                        Some(env.as_str()),
                        Some(&source),
                        "an environment section must be a mapping",
                    );
                }
            }
        }
    }

    fn suggest_key(&self, parent: &str, key: &str, source: &Source) -> String {
        let mut candidates = self.schema.children(parent);
        if parent.is_empty() {
            candidates.push("require");
            if !matches!(
                source,
                Source::Yaml {
                    section: Some(_),
                    ..
                }
            ) {
                candidates.extend(Environment::ALL.map(Environment::as_str));
            }
        }
        let hint = crate::suggest::nearest(key, candidates)
            .map(|n| format!(" (did you mean {n:?}?)"))
            .unwrap_or_default();
        format!("unknown key{hint}")
    }

    fn read_yaml_entry(&mut self, key: &str, node: Node, parent: &str, source: Source) {
        let path = if parent.is_empty() {
            key.to_owned()
        } else {
            format!("{parent}.{key}")
        };
        if self.schema.key(&path).is_some() {
            if let Some(value) = self.yaml_value(&path, node, &source) {
                self.add(&path, value, source);
            }
        } else if self.schema.is_section(&path) {
            match node {
                Node::Map { entries, .. } => {
                    for (child, line, node) in entries {
                        let source = match &source {
                            Source::Yaml { file, section, .. } => Source::Yaml {
                                file: file.clone(),
                                line,
                                section: *section,
                            },
                            other => other.clone(),
                        };
                        self.read_yaml_entry(&child, node, &path, source);
                    }
                }
                node if node.is_null() => {}
                _ => self.report.error(
                    Some(&path),
                    Some(&source),
                    "is a section: expected a mapping of keys",
                ),
            }
        } else {
            let message = self.suggest_key(parent, key, &source);
            self.report.error(Some(&path), Some(&source), message);
        }
    }

    /// Reports unknown keys in a section that is not loaded now (another environment's).
    fn check_unknown_keys(&mut self, node: &Node, parent: &str, source: &Source) {
        let Node::Map { entries, .. } = node else {
            return;
        };
        for (key, line, child) in entries {
            let path = if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            };
            let source = match source {
                Source::Yaml { file, section, .. } => Source::Yaml {
                    file: file.clone(),
                    line: *line,
                    section: *section,
                },
                other => other.clone(),
            };
            if self.schema.is_section(&path) {
                self.check_unknown_keys(child, &path, &source);
            } else if self.schema.key(&path).is_none() && !(parent.is_empty() && key == "require") {
                let message = self.suggest_key(parent, key, &source);
                self.report.error(Some(&path), Some(&source), message);
            }
        }
    }

    fn expand(&mut self, text: &str, path: &str, source: &Source) -> Option<SecretString> {
        match interpolate(text, |n| {
            Self::lookup(self.options.env, &self.dotenv_vars, n)
        }) {
            Ok(expanded) => Some(SecretString::from(expanded)),
            Err(err) => {
                self.report.error(Some(path), Some(source), err.to_string());
                None
            }
        }
    }

    fn yaml_value(&mut self, path: &str, node: Node, source: &Source) -> Option<RawValue> {
        if node.is_null() {
            return Some(RawValue::Null);
        }
        match node {
            Node::Scalar { text, .. } => self.expand(&text, path, source).map(RawValue::Text),
            Node::List { items, .. } => {
                let mut values = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Node::Scalar { text, .. } => values.push(self.expand(&text, path, source)?),
                        _ => {
                            self.report.error(
                                Some(path),
                                Some(source),
                                "list items must be plain values",
                            );
                            return None;
                        }
                    }
                }
                Some(RawValue::List(values))
            }
            Node::Map { .. } => {
                self.report.error(
                    Some(path),
                    Some(source),
                    "expected a value, found a mapping",
                );
                None
            }
        }
    }

    fn read_require(&mut self, node: &Node, source: Source) {
        let names: Vec<(String, usize)> = match node {
            Node::List { items, .. } => items
                .iter()
                .filter_map(|i| match i {
                    Node::Scalar { text, line, .. } => Some((text.clone(), *line)),
                    _ => None,
                })
                .collect(),
            _ => {
                self.report.error(
                    Some("require"),
                    Some(&source),
                    "expected a list of keys or variable names",
                );
                return;
            }
        };
        for (name, line) in names {
            let source = match &source {
                Source::Yaml { file, section, .. } => Source::Yaml {
                    file: file.clone(),
                    line,
                    section: *section,
                },
                other => other.clone(),
            };
            let key = self
                .schema
                .key(&name)
                .or_else(|| self.schema.key_for_var(&name))
                .map(|k| k.path.clone());
            match key {
                Some(path) => self.required_by.push((path, source)),
                None => {
                    let candidates = self
                        .schema
                        .keys
                        .iter()
                        .flat_map(|k| std::iter::once(k.path.as_str()).chain(k.var_names()));
                    let hint = crate::suggest::nearest(&name, candidates)
                        .map(|n| format!(" (did you mean {n}?)"))
                        .unwrap_or_default();
                    self.report.error(
                        Some("require"),
                        Some(&source),
                        format!("{name:?} is not a configuration key{hint}"),
                    );
                }
            }
        }
    }

    fn read_process_env(&mut self) {
        let prefix = format!("{}__", self.options.prefix);
        let env = self.options.env;
        for (name, value) in env.iter() {
            let source = Source::Env {
                var: name.to_owned(),
            };
            if let Some(key) = self.schema.key_for_var(name) {
                let path = key.path.clone();
                self.add(&path, RawValue::text(value), source);
            } else if name.starts_with(&prefix) && self.secret_file_var(name).is_none() {
                self.unknown_var(name, &source);
            }
        }
    }

    fn read_secret_file(&mut self, path: &Path, key: &str, source: Source) {
        match std::fs::read_to_string(path) {
            Ok(content) => {
                self.check_private(path, path);
                let content = SecretString::from(content);
                let value = content.expose_secret().trim_end_matches(['\n', '\r']);
                self.add(key, RawValue::text(value), source);
            }
            Err(err) => self.report.error(
                Some(key),
                Some(&source),
                format!("cannot read secret file {}: {}", path.display(), err.kind()),
            ),
        }
    }

    fn read_secret_files(&mut self) {
        let env = self.options.env;
        let credentials = env.get("CREDENTIALS_DIRECTORY").map(PathBuf::from);
        let secrets: Vec<(String, Vec<String>, String)> = self
            .schema
            .keys
            .iter()
            .filter(|k| k.secret)
            .map(|k| {
                (
                    k.path.clone(),
                    k.var_names().map(str::to_owned).collect(),
                    k.credential_name(&self.schema.prefix),
                )
            })
            .collect();
        for (path, vars, credential) in secrets {
            for var in vars {
                let file_var = format!("{var}_FILE");
                if let Some(file) = env.get(&file_var) {
                    let file = PathBuf::from(file);
                    self.read_secret_file(
                        &file,
                        &path,
                        Source::SecretFile {
                            var: file_var,
                            path: file.clone(),
                        },
                    );
                }
            }
            if let Some(dir) = &credentials {
                let file = dir.join(&credential);
                if file.is_file() {
                    self.read_secret_file(
                        &file,
                        &path,
                        Source::Credential {
                            name: credential,
                            path: file.clone(),
                        },
                    );
                }
            }
        }
    }

    /// Orders each key's values by layer; the highest wins. Two values for one key in the same
    /// layer, or a variable together with a secret file, is an error rather than a silent choice.
    fn merge(&mut self) -> BTreeMap<String, Resolved> {
        let mut values = BTreeMap::new();
        for (path, mut entries) in std::mem::take(&mut self.entries) {
            entries.sort_by_key(|e| e.source.layer());
            for pair in entries.windows(2) {
                let (a, b) = (&pair[0].source, &pair[1].source);
                let same_layer = a.layer() == b.layer();
                let variable_and_file =
                    a.layer() == Layer::Process && b.layer() == Layer::SecretFile;
                if same_layer
                    && a.file().is_some()
                    && a.file() == b.file()
                    && matches!(a, Source::DotEnv { .. })
                {
                    self.report.warning(
                        Some(&path),
                        Some(b),
                        format!("also set at {a}; the later line wins"),
                    );
                } else if same_layer || variable_and_file {
                    self.report.error(
                        Some(&path),
                        Some(b),
                        format!("set twice: by {a} and by {b}; remove one"),
                    );
                }
            }
            let mut sources: Vec<Source> = entries.iter().map(|e| e.source.clone()).collect();
            let winner = entries.pop().expect("a key has at least one entry");
            sources.pop();
            sources.reverse();
            values.insert(
                path,
                Resolved {
                    value: winner.value,
                    source: winner.source,
                    overridden: sources,
                },
            );
        }
        values
    }

    /// A secret in the shared configuration file (tracked by version control, readable by all)
    /// is in the wrong place; a connection URL only when it carries a password.
    fn check_tracked_secrets(&mut self) {
        let severity = self.strict();
        let mut found = Vec::new();
        for key in self.schema.keys.iter().filter(|k| k.secret) {
            for entry in self.entries.get(&key.path).into_iter().flatten() {
                let Source::Yaml { .. } = entry.source else {
                    continue;
                };
                let bears_secret = match &entry.value {
                    RawValue::Text(text) => {
                        let text = text.expose_secret().trim();
                        !text.is_empty()
                            && (key.redaction != crate::Redaction::Url
                                || crate::checks::url_has_password(text))
                    }
                    RawValue::List(items) => !items.is_empty(),
                    RawValue::Null => false,
                };
                if bears_secret {
                    found.push((
                        key.path.clone(),
                        entry.source.clone(),
                        key.main_var().to_owned(),
                        key.credential_name(&self.schema.prefix),
                    ));
                }
            }
        }
        for (path, source, var, credential) in found {
            self.report.push(
                severity,
                Some(&path),
                Some(&source),
                format!(
                    "a secret in {}, which is tracked by version control and readable by every user; move it to .env.{} (mode 0600), the process environment, {var}_FILE or credential {credential}",
                    self.options.config_file.display(),
                    self.environment
                ),
            );
        }
    }

    fn check_required_by(&mut self, values: &BTreeMap<String, Resolved>) {
        for (path, said_at) in std::mem::take(&mut self.required_by) {
            let set = values.get(&path).is_some_and(|r| match &r.value {
                RawValue::Text(t) => !t.expose_secret().trim().is_empty(),
                RawValue::List(items) => !items.is_empty(),
                RawValue::Null => false,
            });
            if !set {
                let how = self.schema.how_to_set(&path);
                self.report.required(
                    &path,
                    &said_at,
                    format!("required here by {said_at} but not set; {how}"),
                );
            }
        }
    }

    fn check_placeholders(&mut self, values: &BTreeMap<String, Resolved>) {
        let severity = self.strict();
        for key in &self.schema.keys {
            if !matches!(key.kind, ValueKind::Text | ValueKind::Secret) {
                continue;
            }
            let Some(Resolved {
                value: RawValue::Text(text),
                source,
                ..
            }) = values.get(&key.path)
            else {
                continue;
            };
            let text = text.expose_secret();
            if key.optional && text.trim().is_empty() {
                continue;
            }
            if is_placeholder(text) {
                let what = if text.trim().is_empty() {
                    "is empty"
                } else {
                    "looks like a placeholder"
                };
                self.report.push(
                    severity,
                    Some(&key.path),
                    Some(source),
                    format!("{} {what}; put the real value there", key.main_var()),
                );
            }
        }
    }
}
