//! Raw values as the layers supply them, and their conversion into typed fields.
//!
//! Every raw text is held as a [`SecretString`] until the schema has said what it is, so no
//! `Debug` output of the loader can show a value by accident. Conversion errors never quote the
//! value either: a secret put under the wrong key must not end up in a log.

use std::fmt;
use std::net::SocketAddr;

use secrecy::{ExposeSecret, SecretString};

/// A value as a layer supplied it: text (YAML scalars are kept as their text), a YAML list, or
/// YAML `null`. Typing happens later, by the schema, so `MCP_AUTH_TOKEN=123` stays a string.
#[derive(Debug, Clone)]
pub enum RawValue {
    Text(SecretString),
    List(Vec<SecretString>),
    Null,
}

impl RawValue {
    pub fn text(s: impl Into<String>) -> Self {
        RawValue::Text(SecretString::from(s.into()))
    }

    /// A short noun for messages ("a list"), never the value itself.
    pub fn shape(&self) -> &'static str {
        match self {
            RawValue::Text(_) => "text",
            RawValue::List(_) => "a list",
            RawValue::Null => "null",
        }
    }

    /// Whether both hold the same value (to tell which keys a reload changed, without printing).
    pub fn same_as(&self, other: &RawValue) -> bool {
        match (self, other) {
            (RawValue::Text(a), RawValue::Text(b)) => a.expose_secret() == b.expose_secret(),
            (RawValue::List(a), RawValue::List(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|(a, b)| a.expose_secret() == b.expose_secret())
            }
            (RawValue::Null, RawValue::Null) => true,
            _ => false,
        }
    }
}

/// What kind of value a key takes, for messages, `explain`, the template and the reference docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    Text,
    Secret,
    Bool,
    Integer,
    Number,
    SocketAddr,
    OneOf(&'static [&'static str]),
    List,
}

impl fmt::Display for ValueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueKind::Text => f.write_str("string"),
            ValueKind::Secret => f.write_str("secret string"),
            ValueKind::Bool => f.write_str("boolean (true/false)"),
            ValueKind::Integer => f.write_str("non-negative integer"),
            ValueKind::Number => f.write_str("number"),
            ValueKind::SocketAddr => f.write_str("address (host:port)"),
            ValueKind::OneOf(values) => write!(f, "one of: {}", values.join(", ")),
            ValueKind::List => f.write_str("list of strings (JSON array in variables)"),
        }
    }
}

/// A type that a configuration key can hold. Implemented for the usual scalars, [`SecretString`],
/// `Vec<String>`, `Option<T>`, and (by `#[derive(ConfigEnum)]`) for unit enums.
pub trait ConfigValue: Sized {
    const KIND: ValueKind;
    /// Secret values are never shown, only redacted, and can come from secret files.
    const SECRET: bool = false;
    /// Optional keys may stay unset; an empty value unsets them.
    const OPTIONAL: bool = false;

    /// Converts a raw value. The error is a reason only ("expected an integer"); it must not
    /// contain the value of a secret.
    fn parse(raw: &RawValue) -> Result<Self, String>;

    /// The value of an optional key that nothing set.
    fn absent() -> Option<Self> {
        None
    }
}

fn text(raw: &RawValue, kind: ValueKind) -> Result<&str, String> {
    match raw {
        RawValue::Text(s) => Ok(s.expose_secret().trim()),
        other => Err(format!("expected {kind}, found {}", other.shape())),
    }
}

impl ConfigValue for String {
    const KIND: ValueKind = ValueKind::Text;
    fn parse(raw: &RawValue) -> Result<Self, String> {
        text(raw, Self::KIND).map(str::to_owned)
    }
}

impl ConfigValue for SecretString {
    const KIND: ValueKind = ValueKind::Secret;
    const SECRET: bool = true;
    fn parse(raw: &RawValue) -> Result<Self, String> {
        match raw {
            // Secrets keep inner spaces; only the surrounding whitespace of a line or file goes.
            RawValue::Text(s) => Ok(SecretString::from(s.expose_secret().trim())),
            other => Err(format!("expected a secret string, found {}", other.shape())),
        }
    }
}

impl ConfigValue for bool {
    const KIND: ValueKind = ValueKind::Bool;
    fn parse(raw: &RawValue) -> Result<Self, String> {
        match text(raw, Self::KIND)?.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(true),
            "false" | "no" | "off" | "0" => Ok(false),
            _ => Err("expected true or false".to_owned()),
        }
    }
}

macro_rules! integer_value {
    ($($t:ty),*) => {$(
        impl ConfigValue for $t {
            const KIND: ValueKind = ValueKind::Integer;
            fn parse(raw: &RawValue) -> Result<Self, String> {
                let s = text(raw, Self::KIND)?;
                s.replace('_', "").parse().map_err(|_| {
                    format!("expected an integer from {} to {}", <$t>::MIN, <$t>::MAX)
                })
            }
        }
    )*};
}
integer_value!(u16, u32, u64, usize);

impl ConfigValue for f64 {
    const KIND: ValueKind = ValueKind::Number;
    fn parse(raw: &RawValue) -> Result<Self, String> {
        let s = text(raw, Self::KIND)?;
        s.parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .ok_or_else(|| "expected a number".to_owned())
    }
}

impl ConfigValue for SocketAddr {
    const KIND: ValueKind = ValueKind::SocketAddr;
    fn parse(raw: &RawValue) -> Result<Self, String> {
        let s = text(raw, Self::KIND)?;
        s.parse()
            .map_err(|_| "expected an IP address and port such as 127.0.0.1:8765".to_owned())
    }
}

impl ConfigValue for Vec<String> {
    const KIND: ValueKind = ValueKind::List;
    fn parse(raw: &RawValue) -> Result<Self, String> {
        match raw {
            RawValue::List(items) => Ok(items
                .iter()
                .map(|s| s.expose_secret().trim().to_owned())
                .collect()),
            RawValue::Null => Ok(Vec::new()),
            RawValue::Text(s) => {
                let s = s.expose_secret().trim();
                if s.is_empty() {
                    return Ok(Vec::new());
                }
                serde_json::from_str::<Vec<String>>(s).map_err(|_| {
                    r#"expected a JSON array of strings such as ["a", "b"]"#.to_owned()
                })
            }
        }
    }
}

impl<T: ConfigValue> ConfigValue for Option<T> {
    const KIND: ValueKind = T::KIND;
    const SECRET: bool = T::SECRET;
    const OPTIONAL: bool = true;
    fn parse(raw: &RawValue) -> Result<Self, String> {
        match raw {
            RawValue::Null => Ok(None),
            RawValue::Text(s) if s.expose_secret().trim().is_empty() => Ok(None),
            other => T::parse(other).map(Some),
        }
    }
    fn absent() -> Option<Self> {
        Some(None)
    }
}

/// A unit enum usable as a configuration value; implemented by `#[derive(ConfigEnum)]`.
pub trait ConfigEnum: Sized + Copy + 'static {
    /// Every variant with its configuration name.
    const VARIANTS: &'static [(&'static str, Self)];
    /// The names alone, for messages and docs.
    const NAMES: &'static [&'static str];

    fn name(self) -> &'static str;
}

/// Parses a [`ConfigEnum`] by name (case-insensitive), for the derive's `ConfigValue` impl.
pub fn parse_enum<E: ConfigEnum>(raw: &RawValue) -> Result<E, String> {
    let s = text(raw, ValueKind::OneOf(E::NAMES))?;
    E::VARIANTS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(s))
        .map(|&(_, v)| v)
        .ok_or_else(|| {
            let hint = crate::suggest::nearest(&s.to_ascii_lowercase(), E::NAMES.iter().copied())
                .map(|n| format!(" (did you mean {n:?}?)"))
                .unwrap_or_default();
            format!("expected one of {}{hint}", E::NAMES.join(", "))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_stay_strings_when_the_schema_says_string() {
        assert_eq!(String::parse(&RawValue::text("123")).unwrap(), "123");
        assert_eq!(
            SecretString::parse(&RawValue::text("123\n"))
                .unwrap()
                .expose_secret(),
            "123"
        );
    }

    #[test]
    fn scalars_parse_or_explain() {
        assert_eq!(u32::parse(&RawValue::text("1_000")), Ok(1000));
        assert!(
            u32::parse(&RawValue::text("-1"))
                .unwrap_err()
                .contains("expected an integer")
        );
        assert_eq!(bool::parse(&RawValue::text("Yes")), Ok(true));
        assert!(
            bool::parse(&RawValue::List(vec![]))
                .unwrap_err()
                .contains("found a list")
        );
        assert!(SocketAddr::parse(&RawValue::text("localhost")).is_err());
    }

    #[test]
    fn lists_come_from_yaml_or_json() {
        let json = RawValue::text(r#"["https://a.example", "https://b.example"]"#);
        assert_eq!(
            Vec::<String>::parse(&json).unwrap(),
            ["https://a.example", "https://b.example"]
        );
        assert!(Vec::<String>::parse(&RawValue::text("https://a.example")).is_err());
        assert_eq!(
            Vec::<String>::parse(&RawValue::Null).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn empty_unsets_an_optional_key() {
        assert!(
            Option::<SecretString>::parse(&RawValue::text("  "))
                .unwrap()
                .is_none()
        );
        assert_eq!(Option::<u32>::absent(), Some(None));
        assert_eq!(u32::absent(), None);
    }
}
