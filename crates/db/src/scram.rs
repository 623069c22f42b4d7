//! SCRAM-SHA-256 password verifiers, computed here so a role's password never reaches the
//! server, or its logs, in clear text: `CREATE ROLE … PASSWORD 'SCRAM-SHA-256$…'` is stored as is.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

/// PostgreSQL's default `scram_iterations`.
const ITERATIONS: u32 = 4096;
const SALT_LEN: usize = 16;
const PREFIX: &str = "SCRAM-SHA-256$";

/// A verifier for `password` with a fresh random salt.
pub(crate) fn verifier(password: &str) -> Result<String, getrandom::Error> {
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt)?;
    Ok(verifier_with(password, &salt, ITERATIONS))
}

/// Whether a stored verifier (`pg_authid.rolpassword`) belongs to `password`: recompute it with
/// the stored salt and iteration count.
pub(crate) fn matches(stored: &str, password: &str) -> bool {
    let Some((params, _keys)) = stored
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.split_once('$'))
    else {
        return false;
    };
    let Some((iterations, salt)) = params.split_once(':') else {
        return false;
    };
    match (iterations.parse(), STANDARD.decode(salt)) {
        (Ok(iterations), Ok(salt)) => verifier_with(password, &salt, iterations) == stored,
        _ => false,
    }
}

fn verifier_with(password: &str, salt: &[u8], iterations: u32) -> String {
    // Like PostgreSQL: SASLprep-normalise, and use the password as is where that fails.
    let normalized =
        stringprep::saslprep(password).map_or_else(|_| password.to_owned(), |p| p.into_owned());
    let salted = hi(normalized.as_bytes(), salt, iterations);
    let stored_key = Sha256::digest(hmac(&salted, b"Client Key"));
    let server_key = hmac(&salted, b"Server Key");
    format!(
        "{PREFIX}{iterations}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key),
        STANDARD.encode(server_key)
    )
}

/// RFC 5802 `Hi()`: PBKDF2-HMAC-SHA-256 with a single output block.
fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut first = salt.to_vec();
    first.extend_from_slice(&1u32.to_be_bytes());
    let mut block = hmac(password, &first);
    let mut result = block;
    for _ in 1..iterations {
        block = hmac(password, &block);
        result.iter_mut().zip(block).for_each(|(r, b)| *r ^= b);
    }
    result
}

/// RFC 2104 HMAC over SHA-256.
fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut padded = [0u8; BLOCK];
    if key.len() > BLOCK {
        padded[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        padded[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(padded.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(padded.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}
