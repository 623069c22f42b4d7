//! jsonwebtoken's signature checks on `ring`, the crypto library rustls already brings, instead of
//! its `rust_crypto` or `aws_lc_rs` features (see the workspace Cargo.toml). Verification only:
//! this server never signs a token, so signing and the key utilities answer "unsupported".
//!
//! jsonwebtoken panics at the first decode when no provider is installed; [`install`] runs
//! before a [`super::jwt::JwtValidator`] exists, so no decode can come first.

use std::sync::Once;

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::signature::{self as sig, RsaParameters, VerificationAlgorithm};

/// The algorithms this provider verifies (no HMAC: a shared secret is not a resource server's
/// business, and accepting it is what the "HS256 with the public key" confusion needs).
pub const SUPPORTED: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Installs the provider for the process (idempotent).
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Fails only when a provider is installed already, which is then the one in use.
        let _ = PROVIDER.install_default();
    });
}

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: no_signer,
    verifier_factory: verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: |_| Err(ErrorKind::UnsupportedAlgorithm.into()),
        rsa_pub_components_from_public_key: |_| Err(ErrorKind::UnsupportedAlgorithm.into()),
        ec_pub_components_from_private_key: |_, _| Err(ErrorKind::UnsupportedAlgorithm.into()),
        ed_pub_components_from_private_key: unsupported_ed,
        compute_digest,
    },
};

fn unsupported_ed(_: &[u8], _: &EllipticCurve) -> Result<Vec<u8>, Error> {
    Err(ErrorKind::UnsupportedAlgorithm.into())
}

fn compute_digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>, Error> {
    let algorithm = match hash {
        ThumbprintHash::SHA256 => &ring::digest::SHA256,
        ThumbprintHash::SHA384 => &ring::digest::SHA384,
        ThumbprintHash::SHA512 => &ring::digest::SHA512,
        _ => return Err(ErrorKind::UnsupportedAlgorithm.into()),
    };
    Ok(ring::digest::digest(algorithm, data).as_ref().to_vec())
}

fn no_signer(_: &Algorithm, _: &EncodingKey) -> Result<Box<dyn JwtSigner>, Error> {
    Err(ErrorKind::UnsupportedAlgorithm.into())
}

enum Check {
    Rsa(&'static RsaParameters),
    Fixed(&'static dyn VerificationAlgorithm),
}

struct RingVerifier {
    algorithm: Algorithm,
    check: Check,
    key: DecodingKey,
}

fn verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    let check = match algorithm {
        Algorithm::RS256 => Check::Rsa(&sig::RSA_PKCS1_2048_8192_SHA256),
        Algorithm::RS384 => Check::Rsa(&sig::RSA_PKCS1_2048_8192_SHA384),
        Algorithm::RS512 => Check::Rsa(&sig::RSA_PKCS1_2048_8192_SHA512),
        Algorithm::PS256 => Check::Rsa(&sig::RSA_PSS_2048_8192_SHA256),
        Algorithm::PS384 => Check::Rsa(&sig::RSA_PSS_2048_8192_SHA384),
        Algorithm::PS512 => Check::Rsa(&sig::RSA_PSS_2048_8192_SHA512),
        Algorithm::ES256 => Check::Fixed(&sig::ECDSA_P256_SHA256_FIXED),
        Algorithm::ES384 => Check::Fixed(&sig::ECDSA_P384_SHA384_FIXED),
        Algorithm::EdDSA => Check::Fixed(&sig::ED25519),
        // HS256/384/512 and anything newer.
        _ => return Err(ErrorKind::UnsupportedAlgorithm.into()),
    };
    // A key of another family (an RSA key for ES256, an HMAC secret for RS256) is refused here,
    // before any bytes are compared.
    if key.family() != algorithm.family() {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    Ok(Box::new(RingVerifier {
        algorithm: *algorithm,
        check,
        key: key.clone(),
    }))
}

impl signature::Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        let verified = match (&self.check, self.key.kind()) {
            (Check::Rsa(parameters), DecodingKeyKind::RsaModulusExponent { n, e }) => {
                sig::RsaPublicKeyComponents { n, e }.verify(parameters, message, signature)
            }
            (Check::Rsa(parameters), DecodingKeyKind::SecretOrDer(der)) => {
                sig::UnparsedPublicKey::new(*parameters, der).verify(message, signature)
            }
            (Check::Fixed(algorithm), DecodingKeyKind::SecretOrDer(point)) => {
                sig::UnparsedPublicKey::new(*algorithm, point).verify(message, signature)
            }
            (Check::Fixed(_), DecodingKeyKind::RsaModulusExponent { .. }) => {
                return Err(signature::Error::new());
            }
        };
        verified.map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}
