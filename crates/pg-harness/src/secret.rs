//! Generated passwords and keeping them out of printed URLs.

use crate::HarnessError;

/// 128 random bits as hex: URL-safe and SQL-literal-safe without any escaping.
pub(crate) fn random_password() -> Result<String, HarnessError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|err| HarnessError::Io {
        context: "generate a password".to_owned(),
        source: std::io::Error::other(err.to_string()),
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// `scheme://user:password@rest` → `scheme://user:***@rest`, for Debug output of our own URLs.
pub(crate) fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}
