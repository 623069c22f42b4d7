//! How strong a secret is, estimated without a dictionary file: generic rules any service can
//! apply to the keys its schema calls tokens or passwords.
//!
//! The token estimate follows the idea of zxcvbn in a few lines: a run of four or more letters
//! counts like a dictionary word (about 17 bits plus a bit per letter, unless it is shorter as
//! random letters), a character that repeats or continues the previous one (`aaaa`, `1234`,
//! `abcd`) adds one bit, any other character adds the bits of its class (digit 3.3, letter 4.7,
//! mixed-case letter 5.7, other 6). The result is also capped by the Shannon entropy of the
//! character distribution, so `abababab…` stays weak however long it is.

/// Tokens estimated below this are too weak for staging and production.
pub const MIN_TOKEN_BITS: f64 = 64.0;
/// Shortest database password accepted in staging and production.
pub const MIN_PASSWORD_CHARS: usize = 20;

/// Passwords that installers, tutorials and attackers all know.
const WELL_KNOWN_PASSWORDS: &[&str] = &[
    "postgres",
    "postgresql",
    "password",
    "passw0rd",
    "admin",
    "administrator",
    "root",
    "secret",
    "changeme",
    "letmein",
    "qwerty",
    "123456",
    "12345678",
    "test",
    "default",
    "mcp",
    "mcp_user",
];

/// An estimate, in bits, of how hard `token` is to guess.
pub fn token_entropy_bits(token: &str) -> f64 {
    let chars: Vec<char> = token.chars().collect();
    if chars.is_empty() {
        return 0.0;
    }
    let mut bits = 0.0;
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_alphabetic() {
            let start = i;
            while i < chars.len() && chars[i].is_alphabetic() {
                i += 1;
            }
            bits += letters_bits(&chars[start..i]);
        } else {
            bits += char_bits(
                &chars,
                i,
                if chars[i].is_ascii_digit() { 3.32 } else { 6.0 },
            );
            i += 1;
        }
    }
    bits.min(shannon_bits(&chars))
}

fn char_bits(chars: &[char], i: usize, class_bits: f64) -> f64 {
    let continues = i > 0 && {
        let (prev, this) = (chars[i - 1] as i64, chars[i] as i64);
        (this - prev).abs() <= 1
    };
    if continues { 1.0 } else { class_bits }
}

fn letters_bits(run: &[char]) -> f64 {
    let mixed = run.iter().any(|c| c.is_uppercase()) && run.iter().any(|c| c.is_lowercase());
    let class = if mixed { 5.7 } else { 4.7 };
    let random: f64 = (0..run.len()).map(|i| char_bits(run, i, class)).sum();
    if run.len() >= 4 {
        random.min(17.0 + run.len() as f64)
    } else {
        random
    }
}

fn shannon_bits(chars: &[char]) -> f64 {
    let mut counts = std::collections::BTreeMap::new();
    for c in chars {
        *counts.entry(*c).or_insert(0usize) += 1;
    }
    let n = chars.len() as f64;
    let per_char: f64 = counts
        .values()
        .map(|&k| {
            let p = k as f64 / n;
            -p * p.log2()
        })
        .sum();
    per_char * n
}

/// Why a token is too weak, or `None`. Names no part of it.
pub fn token_weakness(token: &str) -> Option<String> {
    let bits = token_entropy_bits(token);
    (bits < MIN_TOKEN_BITS).then(|| {
        format!(
            "has too little entropy (estimated {bits:.0} bits, at least {MIN_TOKEN_BITS:.0} needed: repeated characters, sequences and words count little); generate one with `openssl rand -hex 32`"
        )
    })
}

/// Why a database password is too weak, or `None`: a well-known default, the user name, or
/// shorter than [`MIN_PASSWORD_CHARS`]. Names no part of it.
pub fn password_weakness(password: &str, user: Option<&str>) -> Option<String> {
    let lower = password.to_lowercase();
    let generate = "generate one with `openssl rand -base64 30`";
    if WELL_KNOWN_PASSWORDS.contains(&lower.as_str()) {
        return Some(format!("the password is a well-known default; {generate}"));
    }
    if user.is_some_and(|user| user.eq_ignore_ascii_case(password)) {
        return Some(format!("the password equals the role name; {generate}"));
    }
    let length = password.chars().count();
    (length < MIN_PASSWORD_CHARS).then(|| {
        format!(
            "the password is shorter than {MIN_PASSWORD_CHARS} characters ({length}); {generate}"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_tokens_are_caught_whatever_their_length() {
        for weak in [
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "password1234567890",
            "Password2026123456789",
            "abababababababababababababababab",
            "0123456789012345678901234567",
            "correcthorsebatterystaple",
        ] {
            assert!(
                token_weakness(weak).is_some(),
                "{weak}: {}",
                token_entropy_bits(weak)
            );
        }
        for strong in [
            "3f9a0c7e12b44d6f8a9e0b1c2d3e4f5a",
            "CanaryToken-b62d04e81f5a4c37",
            "tok-CANARY-4e1f9a7c2b",
            "test-token-0123456789abcdef",
            "Zk2f9sQ+u1Lr7/WmX0pT3vB8nY5cH4jD",
        ] {
            assert!(
                token_weakness(strong).is_none(),
                "{strong}: {}",
                token_entropy_bits(strong)
            );
        }
    }

    #[test]
    fn weak_passwords_are_named_by_rule_not_value() {
        let short = password_weakness("canary-short", None).unwrap();
        assert!(short.contains("shorter than 20") && !short.contains("canary"));
        assert!(
            password_weakness("postgres", None)
                .unwrap()
                .contains("well-known")
        );
        assert!(
            password_weakness("Mcp_User_Staging_Role", Some("mcp_user_staging_role"))
                .unwrap()
                .contains("role name")
        );
        assert!(password_weakness("a-long-enough-password-1", Some("u")).is_none());
    }
}
