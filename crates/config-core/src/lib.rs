//! Layered, typed, secret-safe configuration for services that run in several environments.
//!
//! A service describes its configuration once, as structs deriving [`Config`]. From that one
//! description `config-core` derives the variable names, unknown-key detection, required checks,
//! `explain` output and the `.env.template`, and loads values from these layers, lowest first:
//!
//! built-in defaults < `config.yaml` root < its `<environment>:` section < `.env` <
//! `.env.<environment>` < process environment < secret files (`NAME_FILE`, `$CREDENTIALS_DIRECTORY`).
//!
//! Every value remembers where it came from (`config/config.yaml:12 [production]`,
//! `.env.production:4`, `env DATABASE_URL`, `credential database-url`). Loading collects every
//! problem before failing. Secret values are [`secrecy::SecretString`] from the moment they are
//! read; no message, `Debug` output or `explain` line contains one.
//!
//! ```
//! use config_core::{Config, EnvSnapshot, LoadOptions};
//! use secrecy::SecretString;
//! use std::path::Path;
//!
//! #[derive(Config, Debug)]
//! struct Service {
//!     /// Token other services present.
//!     #[config(alias = "API_TOKEN")]
//!     token: SecretString,
//!     /// Worker threads.
//!     #[config(default = "4")]
//!     workers: u32,
//! }
//!
//! let env: EnvSnapshot = [("API_TOKEN", "t0k3n"), ("ENVIRONMENT", "test")].into_iter().collect();
//! let loaded = config_core::load::<Service>(&LoadOptions {
//!     root: Path::new("/nonexistent"),
//!     config_file: Path::new("config.yaml"),
//!     prefix: "SVC",
//!     environment_var: "ENVIRONMENT",
//!     environment_flag: None,
//!     env: &env,
//! })
//! .unwrap();
//! assert_eq!(loaded.config.workers, 4);
//! assert_eq!(loaded.resolution.values["token"].source.to_string(), "env API_TOKEN");
//! assert!(!format!("{:?}", loaded.config).contains("t0k3n"));
//! ```

extern crate self as config_core;

mod checks;
mod dotenv;
mod env;
mod environment;
mod explain;
mod interpolate;
mod report;
mod resolve;
mod schema;
mod source;
mod strength;
mod suggest;
mod value;
mod yaml;

pub use checks::{
    foreign_owner, is_placeholder, loose_mode, redact_url, url_has_password, writable_by_others,
};
pub use config_core_derive::{Config, ConfigEnum};
pub use env::EnvSnapshot;
pub use environment::{Environment, EnvironmentSource, InvalidEnvironment};
pub use explain::{display_value, env_template, explain};
pub use interpolate::{InterpolationError, interpolate};
pub use report::{Problem, Report, Severity};
pub use resolve::{
    FileRead, LoadFailure, LoadOptions, Loaded, Resolution, Resolved, load, resolve,
    select_environment,
};
pub use schema::{
    Config, Extractor, KeyAttrs, KeySpec, Redaction, Schema, SchemaBuilder, SectionSpec, Validator,
};
pub use source::{Layer, Source};
pub use strength::{
    MIN_PASSWORD_CHARS, MIN_TOKEN_BITS, password_weakness, token_entropy_bits, token_weakness,
};
pub use suggest::nearest;
pub use value::{ConfigEnum, ConfigValue, RawValue, ValueKind, parse_enum};
