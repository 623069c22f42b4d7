//! `${VAR}` references in `.env` and YAML values.
//!
//! Supported: `${NAME}`, `${NAME:-fallback}` (fallback when unset or empty) and `$$` for a literal
//! `$`. A `$` not followed by `{` or `$` is kept as it is, so passwords containing `$` survive.

/// Why a value could not be expanded. Names the variable, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpolationError {
    #[error(
        "${{{0}}} is not defined (set it in the process environment or earlier in a .env file)"
    )]
    Undefined(String),
    #[error("unterminated ${{…}} reference")]
    Unterminated,
    #[error("invalid variable name in ${{…}} reference")]
    BadName,
}

/// Expands references using `lookup`.
pub fn interpolate<'a>(
    input: &str,
    lookup: impl Fn(&str) -> Option<&'a str>,
) -> Result<String, InterpolationError> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or(InterpolationError::Unterminated)?;
            let reference = &body[..end];
            let (name, fallback) = match reference.split_once(":-") {
                Some((name, fallback)) => (name, Some(fallback)),
                None => (reference, None),
            };
            if !is_var_name(name) {
                return Err(InterpolationError::BadName);
            }
            match (
                lookup(name).filter(|v| !(fallback.is_some() && v.is_empty())),
                fallback,
            ) {
                (Some(value), _) => out.push_str(value),
                (None, Some(fallback)) => out.push_str(fallback),
                (None, None) => return Err(InterpolationError::Undefined(name.to_owned())),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

pub(crate) fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<&'static str> {
        match name {
            "HOST" => Some("db.internal"),
            "EMPTY" => Some(""),
            _ => None,
        }
    }

    #[test]
    fn expands_references() {
        assert_eq!(
            interpolate("postgres://${HOST}:5432", vars).unwrap(),
            "postgres://db.internal:5432"
        );
        assert_eq!(interpolate("${MISSING:-5432}", vars).unwrap(), "5432");
        assert_eq!(interpolate("${EMPTY:-x}", vars).unwrap(), "x");
        assert_eq!(interpolate("${EMPTY}", vars).unwrap(), "");
    }

    #[test]
    fn keeps_dollars_that_are_not_references() {
        assert_eq!(interpolate("pa$word$", vars).unwrap(), "pa$word$");
        assert_eq!(interpolate("$${HOST}", vars).unwrap(), "${HOST}");
    }

    #[test]
    fn reports_bad_references_without_values() {
        assert_eq!(
            interpolate("${PGPASSWORD}", vars),
            Err(InterpolationError::Undefined("PGPASSWORD".into()))
        );
        assert_eq!(
            interpolate("${HOST", vars),
            Err(InterpolationError::Unterminated)
        );
        assert_eq!(interpolate("${1X}", vars), Err(InterpolationError::BadName));
    }
}
