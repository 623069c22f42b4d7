//! The deployment environment a process runs as, and how it is chosen.

use std::fmt;
use std::str::FromStr;

/// One of the four environments. Each has its own configuration section, secrets file and database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Environment {
    Development,
    Test,
    Staging,
    Production,
}

impl Environment {
    /// Every environment, in promotion order.
    pub const ALL: [Environment; 4] = [
        Environment::Development,
        Environment::Test,
        Environment::Staging,
        Environment::Production,
    ];

    /// The lower-case name used in flags, variables, file names and YAML sections.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Test => "test",
            Environment::Staging => "staging",
            Environment::Production => "production",
        }
    }

    /// Staging and production treat suspicious configuration as an error rather than a warning.
    pub fn is_strict(self) -> bool {
        matches!(self, Environment::Staging | Environment::Production)
    }

    /// The allowed names, comma-separated, for messages.
    pub fn allowed() -> String {
        Environment::ALL.map(Environment::as_str).join(", ")
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not an environment name. Its message lists the allowed values and the nearest one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid environment {given:?}: must be one of {allowed}{hint}", allowed = Environment::allowed(), hint = suggestion_hint(.suggestion))]
pub struct InvalidEnvironment {
    /// What was given (environment names are not secret).
    pub given: String,
    /// The nearest allowed name, if any is close enough.
    pub suggestion: Option<Environment>,
}

fn suggestion_hint(suggestion: &Option<Environment>) -> String {
    suggestion
        .map(|e| format!(" (did you mean {e:?}?)", e = e.as_str()))
        .unwrap_or_default()
}

impl FromStr for Environment {
    type Err = InvalidEnvironment;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        if let Some(env) = Environment::ALL.into_iter().find(|e| e.as_str() == wanted) {
            return Ok(env);
        }
        let lower = wanted.to_ascii_lowercase();
        let suggestion = crate::suggest::nearest(&lower, Environment::ALL.map(Environment::as_str))
            .or_else(|| {
                // Common abbreviations are prefixes of the real name (`prod`, `dev`, `stage`).
                (!lower.is_empty())
                    .then(|| {
                        Environment::ALL
                            .map(Environment::as_str)
                            .into_iter()
                            // The first three characters; `get` keeps a multi-byte name from panicking.
                            .find(|n| n.starts_with(lower.get(..3).unwrap_or(&lower)))
                    })
                    .flatten()
            })
            .and_then(|name| name.parse().ok());
        Err(InvalidEnvironment {
            given: s.to_owned(),
            suggestion,
        })
    }
}

/// Where the chosen environment came from; a default is worth a loud warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvironmentSource {
    /// The `--env` command-line flag.
    Flag,
    /// A process environment variable (normally `ENVIRONMENT`).
    Variable(String),
    /// Nothing chose one, so `development` was assumed.
    Default,
}

impl fmt::Display for EnvironmentSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvironmentSource::Flag => f.write_str("--env"),
            EnvironmentSource::Variable(name) => write!(f, "env {name}"),
            EnvironmentSource::Default => f.write_str("default"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exact_names_only() {
        for env in Environment::ALL {
            assert_eq!(env.as_str().parse::<Environment>(), Ok(env));
        }
        assert!("Production".parse::<Environment>().is_err());
    }

    #[test]
    fn suggests_the_nearest_name() {
        let cases = [
            ("prod", Some(Environment::Production)),
            ("production ", None),
            ("dev", Some(Environment::Development)),
            ("stagin", Some(Environment::Staging)),
            ("tets", Some(Environment::Test)),
            ("Production", Some(Environment::Production)),
            ("", None),
            ("zzzzzzzz", None),
            // Multi-byte characters where the three-byte prefix would cut one in half.
            ("xxé", None),
            ("𐀀0", None),
        ];
        for (given, want) in cases {
            match given.parse::<Environment>() {
                Ok(env) => assert_eq!(want, None, "{given:?} parsed as {env}"),
                Err(err) => assert_eq!(err.suggestion, want, "{given:?}"),
            }
        }
    }

    #[test]
    fn message_lists_allowed_values_and_suggestion() {
        let err = "prod".parse::<Environment>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid environment \"prod\": must be one of development, test, staging, production (did you mean \"production\"?)"
        );
    }
}
