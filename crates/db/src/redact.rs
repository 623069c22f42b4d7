//! Keeping passwords out of text that comes from the driver. (Showing which database is meant
//! without its password is `config_core::redact_url`.)

use url::Url;

/// Removes a URL's secrets from text that came from elsewhere (driver errors), in case it ever
/// quotes them.
#[derive(Debug)]
pub(crate) struct Scrubber {
    secrets: Vec<String>,
}

impl Scrubber {
    pub(crate) fn for_url(raw: &str) -> Self {
        let mut secrets = Vec::new();
        if let Ok(url) = Url::parse(raw) {
            if let Some(password) = url.password() {
                secrets.push(password.to_owned());
                secrets.push(
                    percent_encoding::percent_decode_str(password)
                        .decode_utf8_lossy()
                        .into_owned(),
                );
            }
            secrets.extend(
                url.query_pairs()
                    .filter(|(key, _)| key == "password")
                    .map(|(_, value)| value.into_owned()),
            );
        }
        secrets.retain(|secret| !secret.is_empty());
        // Longest first, so a secret containing another is replaced whole.
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        Scrubber { secrets }
    }

    pub(crate) fn scrub(&self, text: &str) -> String {
        self.secrets.iter().fold(text.to_owned(), |text, secret| {
            text.replace(secret.as_str(), "***")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_raw_and_decoded_passwords() {
        let scrubber = Scrubber::for_url("postgres://app:p%40ss+w@h/db?password=other");
        assert_eq!(
            scrubber.scrub("a p%40ss+w b p@ss+w c other"),
            "a *** b *** c ***"
        );
    }
}
