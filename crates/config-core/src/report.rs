//! Problems found while loading, collected so that one run reports all of them.

use std::fmt;

use crate::Source;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

/// One problem: which key (if any), where its value came from, and what is wrong. Messages name
/// keys, variables, files and lines — never a secret value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    pub key: Option<String>,
    pub source: Option<Source>,
    pub message: String,
    /// Set when the problem is that `key` is required by an operator's `require:` list (at this
    /// place) but not set: a fact for tools, so they need not read the message.
    pub required_by: Option<Source>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.severity {
            Severity::Error => "error: ",
            Severity::Warning => "warning: ",
        })?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, " [{source}]")?;
        }
        Ok(())
    }
}

/// Every problem of one load, in the order found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn push(
        &mut self,
        severity: Severity,
        key: Option<&str>,
        source: Option<&Source>,
        message: impl Into<String>,
    ) {
        self.problems.push(Problem {
            severity,
            key: key.map(str::to_owned),
            source: source.cloned(),
            message: message.into(),
            required_by: None,
        });
    }

    /// An error: `key` is required by the `require:` entry at `said_at` but not set.
    pub fn required(&mut self, key: &str, said_at: &Source, message: impl Into<String>) {
        self.push(Severity::Error, Some(key), None, message);
        if let Some(problem) = self.problems.last_mut() {
            problem.required_by = Some(said_at.clone());
        }
    }

    /// The keys an operator's `require:` list demands but that are not set.
    pub fn required_keys(&self) -> impl Iterator<Item = &str> {
        self.problems
            .iter()
            .filter(|p| p.required_by.is_some())
            .filter_map(|p| p.key.as_deref())
    }

    pub fn error(
        &mut self,
        key: Option<&str>,
        source: Option<&Source>,
        message: impl Into<String>,
    ) {
        self.push(Severity::Error, key, source, message);
    }

    pub fn warning(
        &mut self,
        key: Option<&str>,
        source: Option<&Source>,
        message: impl Into<String>,
    ) {
        self.push(Severity::Warning, key, source, message);
    }

    pub fn has_errors(&self) -> bool {
        self.problems.iter().any(|p| p.severity == Severity::Error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Warning)
    }

    pub fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for Report {
    /// Errors first, then warnings, then a count.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for problem in self.errors().chain(self.warnings()) {
            writeln!(f, "{problem}")?;
        }
        let (errors, warnings) = (self.errors().count(), self.warnings().count());
        write!(
            f,
            "{errors} error{}, {warnings} warning{}",
            plural(errors),
            plural(warnings)
        )
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
