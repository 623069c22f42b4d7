//! Provenance: where a configuration value came from.

use std::fmt;
use std::path::PathBuf;

use crate::Environment;

/// The layer and exact place that supplied a value. Shown in `explain` and in every problem report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The schema's built-in default.
    Default,
    /// The shared configuration file; `section` is `None` for root-level keys.
    Yaml {
        file: PathBuf,
        line: usize,
        section: Option<Environment>,
    },
    /// A `.env` or `.env.<environment>` file.
    DotEnv { file: PathBuf, line: usize },
    /// A process environment variable.
    Env { var: String },
    /// A file named by a `NAME_FILE` variable.
    SecretFile { var: String, path: PathBuf },
    /// A systemd credential (`$CREDENTIALS_DIRECTORY/<name>`).
    Credential { name: String, path: PathBuf },
}

impl Source {
    /// The layer's rank: a value from a higher layer replaces one from a lower layer.
    pub fn layer(&self) -> Layer {
        match self {
            Source::Default => Layer::Default,
            Source::Yaml { section: None, .. } => Layer::YamlRoot,
            Source::Yaml {
                section: Some(_), ..
            } => Layer::YamlEnvironment,
            Source::DotEnv { file, .. } => {
                if file.file_name().is_some_and(|n| n == ".env") {
                    Layer::DotEnv
                } else {
                    Layer::DotEnvEnvironment
                }
            }
            Source::Env { .. } => Layer::Process,
            Source::SecretFile { .. } | Source::Credential { .. } => Layer::SecretFile,
        }
    }

    /// The file this value was read from, if any.
    pub fn file(&self) -> Option<&std::path::Path> {
        match self {
            Source::Yaml { file, .. } | Source::DotEnv { file, .. } => Some(file),
            Source::SecretFile { path, .. } | Source::Credential { path, .. } => Some(path),
            Source::Default | Source::Env { .. } => None,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::Yaml {
                file,
                line,
                section: None,
            } => write!(f, "{}:{line}", file.display()),
            Source::Yaml {
                file,
                line,
                section: Some(env),
            } => write!(f, "{}:{line} [{env}]", file.display()),
            Source::DotEnv { file, line } => write!(f, "{}:{line}", file.display()),
            Source::Env { var } => write!(f, "env {var}"),
            Source::SecretFile { var, path } => {
                write!(f, "file {} (from env {var})", path.display())
            }
            Source::Credential { name, .. } => write!(f, "credential {name}"),
        }
    }
}

/// The layers, lowest first. A higher layer wins; maps merge key by key, scalars and lists replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Layer {
    Default,
    YamlRoot,
    YamlEnvironment,
    DotEnv,
    DotEnvEnvironment,
    Process,
    SecretFile,
}
