//! `server.auth.jwt` against the real daemon: RSA (from `openssl genpkey`) and P-256 (ring) keys
//! made here, a JWKS served by a loopback HTTP server of this test, tokens built and signed here
//! byte by byte (so `alg: none`, the HS256-with-the-public-key confusion and a tampered signature
//! are exactly what an attacker would send).
//!
//! Valid RS256 and ES256 tokens are accepted with the tenant and scopes of their claims; wrong
//! issuer, wrong audience, expired, not yet valid, unknown kid, alg none, HS256 confusion and a
//! tampered signature each get 401 with `WWW-Authenticate` pointing at the Protected Resource
//! Metadata, and the log names the reason — never the token (canary). A new kid appearing in the
//! JWKS is accepted without a restart; unknown kids refetch at most once per
//! `jwks_min_refetch_secs`. The metadata documents are what RFC 9728 asks.

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/mcp_http.rs"]
mod mcp_http;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use config_core::Environment;
use daemon::{Launch, TOKEN, stamped_database};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use serde_json::{Value, json};

const ISSUER: &str = "https://issuer.test/realms/memory";
const AUDIENCE: &str = "cogmem-api";
const RESOURCE: &str = "https://memory.test/mcp";
const METADATA_URL: &str = "https://memory.test/.well-known/oauth-protected-resource/mcp";
const ALL_SCOPES: &str = "memory:read memory:write memory:forget";
/// In every token's claims; must never reach the log.
const CANARY: &str = "jwt-canary-7f3a9c";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

struct Rsa {
    pair: RsaKeyPair,
    public_pem: String,
}

/// A 2048-bit RSA key from the openssl CLI (ring cannot generate RSA keys), read by ring as
/// PKCS#1 (`-traditional`).
fn rsa_key(dir: &std::path::Path, name: &str) -> Rsa {
    let pem = dir.join(format!("{name}.pem"));
    let openssl = |args: &[&str]| {
        let output = std::process::Command::new("openssl")
            .args(args)
            .stderr(std::process::Stdio::null())
            .output()
            .expect("the openssl CLI makes the RSA test keys");
        assert!(output.status.success(), "openssl {args:?}");
        output.stdout
    };
    let pem_path = pem.to_str().unwrap();
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        pem_path,
    ]);
    let pkcs1 = openssl(&["pkey", "-in", pem_path, "-traditional", "-outform", "DER"]);
    let public_pem = openssl(&["pkey", "-in", pem_path, "-pubout"]);
    Rsa {
        pair: RsaKeyPair::from_der(&pkcs1).unwrap(),
        public_pem: String::from_utf8(public_pem).unwrap(),
    }
}

fn rsa_jwk(key: &Rsa, kid: &str) -> Value {
    let components: ring::rsa::PublicKeyComponents<Vec<u8>> = key.pair.public().into();
    json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
           "n": b64(&components.n), "e": b64(&components.e)})
}

fn ec_key() -> EcdsaKeyPair {
    let rng = SystemRandom::new();
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        pkcs8.as_ref(),
        &rng,
    )
    .unwrap()
}

fn ec_jwk(key: &EcdsaKeyPair, kid: &str) -> Value {
    let point = key.public_key().as_ref();
    json!({"kty": "EC", "kid": kid, "crv": "P-256", "alg": "ES256",
           "x": b64(&point[1..33]), "y": b64(&point[33..65])})
}

/// How to sign a token.
enum Signer<'a> {
    Rs256(&'a Rsa),
    Es256(&'a EcdsaKeyPair),
    /// HMAC-SHA256 keyed with these bytes (the RSA public key: the confusion attack).
    Hs256(&'a [u8]),
    /// `alg: none`, no signature.
    None,
}

fn token(signer: Signer<'_>, kid: &str, claims: &Value) -> String {
    let alg = match signer {
        Signer::Rs256(_) => "RS256",
        Signer::Es256(_) => "ES256",
        Signer::Hs256(_) => "HS256",
        Signer::None => "none",
    };
    let header = json!({"alg": alg, "typ": "JWT", "kid": kid});
    let message = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let rng = SystemRandom::new();
    let signature = match signer {
        Signer::Rs256(key) => {
            let mut out = vec![0; key.pair.public().modulus_len()];
            key.pair
                .sign(
                    &signature::RSA_PKCS1_SHA256,
                    &rng,
                    message.as_bytes(),
                    &mut out,
                )
                .unwrap();
            out
        }
        Signer::Es256(key) => key
            .sign(&rng, message.as_bytes())
            .unwrap()
            .as_ref()
            .to_vec(),
        Signer::Hs256(secret) => {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
            ring::hmac::sign(&key, message.as_bytes()).as_ref().to_vec()
        }
        Signer::None => Vec::new(),
    };
    format!("{message}.{}", b64(&signature))
}

fn claims(tenant: &str, scope: &str) -> Value {
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "tenant": tenant, "scope": scope,
        "iat": now(), "exp": now() + 600, "canary": CANARY,
    })
}

/// The test's authorization server: `GET /jwks` answers the current key set and counts fetches.
struct JwksServer {
    url: String,
    keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
}

async fn jwks_server(keys: Vec<Value>) -> JwksServer {
    let keys = Arc::new(Mutex::new(keys));
    let fetches = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    let (served, counted) = (keys.clone(), fetches.clone());
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let keys = served.lock().unwrap().clone();
            counted.fetch_add(1, Ordering::SeqCst);
            async move { axum::Json(json!({ "keys": keys })) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    JwksServer { url, keys, fetches }
}

fn launch(database_url: &str, jwks_url: &str) -> Launch {
    Launch::http(database_url)
        .env("COGMEM__SERVER__AUTH__JWT__ISSUER", ISSUER)
        .env(
            "COGMEM__SERVER__AUTH__JWT__AUDIENCE",
            &format!("[\"{AUDIENCE}\"]"),
        )
        .env("COGMEM__SERVER__AUTH__JWT__JWKS_URL", jwks_url)
        .env(
            "COGMEM__SERVER__AUTH__JWT__ALGORITHMS",
            "[\"RS256\", \"ES256\"]",
        )
        .env("COGMEM__SERVER__AUTH__JWT__JWKS_MIN_REFETCH_SECS", "3")
        .env("COGMEM__SERVER__AUTH__RESOURCE_URL", RESOURCE)
        .env(
            "COGMEM__SERVER__AUTH__AUTHORIZATION_SERVERS",
            &format!("[\"{ISSUER}\"]"),
        )
        .env("COGMEM__SERVER__RATE_LIMIT__FAILED_AUTH_PER_MINUTE", "1000")
}

/// A `tools/call` of `memory_status` with `token`: status, `WWW-Authenticate`, body.
async fn status_call(http: &reqwest::Client, base: &str, token: &str) -> (u16, String, Value) {
    let response = mcp_http::post(http, base, "tools/call", Some("memory_status"))
        .bearer_auth(token)
        .json(&mcp_http::tool_call(1, "memory_status", json!({})))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    (
        status,
        challenge,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Waits until the daemon's log holds `needle`.
fn wait_for_log(daemon: &daemon::Daemon, needle: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if daemon.stderr().contains(needle) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn jwts_are_validated_as_an_oauth_resource_server() {
    let dir = tempfile::tempdir().unwrap();
    let rsa = rsa_key(dir.path(), "rsa");
    let ec = ec_key();
    let jwks = jwks_server(vec![rsa_jwk(&rsa, "rsa-1"), ec_jwk(&ec, "ec-1")]).await;
    let database = stamped_database(Environment::Test).await;
    let mut daemon = launch(&database.url, &jwks.url).spawn();
    let base = daemon.ready();
    let http = reqwest::Client::new();
    let mut presented: Vec<String> = Vec::new();

    // Valid RS256 and ES256 tokens: the principal carries the claims' tenant and scopes.
    let good = token(
        Signer::Rs256(&rsa),
        "rsa-1",
        &claims("team-jwt", ALL_SCOPES),
    );
    presented.push(good.clone());
    let status = mcp_http::tool(&http, &base, &good, "memory_status", json!({}))
        .await
        .unwrap_or_else(|err| panic!("{err}\n{}", daemon.stderr()));
    assert_eq!(status["tenant"], "team-jwt", "{status}");
    assert_eq!(status["principal"], "jwt:alice", "{status}");
    assert_eq!(
        status["scopes"],
        json!(["memory:read", "memory:write", "memory:forget"])
    );
    let reader = token(
        Signer::Es256(&ec),
        "ec-1",
        &claims("team-ec", "openid memory:read"),
    );
    presented.push(reader.clone());
    let status = mcp_http::tool(&http, &base, &reader, "memory_status", json!({}))
        .await
        .unwrap();
    assert_eq!(status["tenant"], "team-ec");
    assert_eq!(status["scopes"], json!(["memory:read"]));
    // Its scopes are enforced: a tool error naming the missing scope.
    let refused = mcp_http::tool(
        &http,
        &base,
        &reader,
        "store_raw_dialogue",
        json!({"session_id": "s", "speaker": "user", "content": "hello"}),
    )
    .await
    .unwrap_err();
    assert!(
        refused.contains("tool error") && refused.contains("needs memory:write"),
        "{refused}"
    );
    // A token granting none of our scopes: 403 insufficient_scope.
    let useless = token(
        Signer::Rs256(&rsa),
        "rsa-1",
        &claims("team-jwt", "openid profile"),
    );
    presented.push(useless.clone());
    let (code, challenge, _) = status_call(&http, &base, &useless).await;
    assert_eq!(code, 403);
    assert_eq!(
        challenge,
        format!(
            r#"Bearer error="insufficient_scope", resource_metadata="{METADATA_URL}", scope="{ALL_SCOPES}""#
        )
    );

    // Each refusal: 401, the challenge, and the reason in the log.
    let mut wrong_issuer = claims("team-jwt", ALL_SCOPES);
    wrong_issuer["iss"] = json!("https://evil.test");
    let mut wrong_audience = claims("team-jwt", ALL_SCOPES);
    wrong_audience["aud"] = json!("https://memory.test/mcp-other");
    let mut expired = claims("team-jwt", ALL_SCOPES);
    expired["exp"] = json!(now() - 600);
    let mut early = claims("team-jwt", ALL_SCOPES);
    early["nbf"] = json!(now() + 600);
    let mut tampered = token(
        Signer::Rs256(&rsa),
        "rsa-1",
        &claims("team-jwt", ALL_SCOPES),
    );
    let middle = tampered.rfind('.').unwrap() + 20;
    let flipped = if &tampered[middle..=middle] == "A" {
        "B"
    } else {
        "A"
    };
    tampered.replace_range(middle..=middle, flipped);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "wrong issuer",
            token(Signer::Rs256(&rsa), "rsa-1", &wrong_issuer),
            "jwt: wrong issuer",
        ),
        (
            "wrong audience",
            token(Signer::Rs256(&rsa), "rsa-1", &wrong_audience),
            "jwt: wrong audience",
        ),
        (
            "expired",
            token(Signer::Rs256(&rsa), "rsa-1", &expired),
            "jwt: expired",
        ),
        (
            "not yet valid",
            token(Signer::Es256(&ec), "ec-1", &early),
            "jwt: not yet valid",
        ),
        (
            "unknown kid",
            token(
                Signer::Rs256(&rsa),
                "rsa-9",
                &claims("team-jwt", ALL_SCOPES),
            ),
            "jwt: unknown kid",
        ),
        (
            "alg none",
            token(Signer::None, "rsa-1", &claims("team-jwt", ALL_SCOPES)),
            "jwt: algorithm none is not in server.auth.jwt.algorithms",
        ),
        (
            "HS256 keyed with the RSA public key",
            token(
                Signer::Hs256(rsa.public_pem.as_bytes()),
                "rsa-1",
                &claims("team-jwt", ALL_SCOPES),
            ),
            "jwt: algorithm HS256 is not in server.auth.jwt.algorithms",
        ),
        ("tampered signature", tampered, "jwt: bad signature"),
    ];
    for (case, bad, reason) in &cases {
        presented.push(bad.clone());
        let fetches_before = jwks.fetches.load(Ordering::SeqCst);
        if *case == "unknown kid" {
            // Past the refetch rate limit of the start-up fetch.
            tokio::time::sleep(Duration::from_millis(3100)).await;
        }
        let (code, challenge, body) = status_call(&http, &base, bad).await;
        assert_eq!(code, 401, "{case}: {body}");
        assert_eq!(
            challenge,
            format!(
                r#"Bearer error="invalid_token", resource_metadata="{METADATA_URL}", scope="{ALL_SCOPES}""#
            ),
            "{case}"
        );
        assert!(
            wait_for_log(&daemon, reason),
            "{case}: no {reason:?} in the log:\n{}",
            daemon.stderr()
        );
        if *case == "unknown kid" {
            // It caused one refetch; another one right away is rate-limited.
            assert_eq!(jwks.fetches.load(Ordering::SeqCst), fetches_before + 1);
            let (code, _, _) = status_call(&http, &base, bad).await;
            assert_eq!(code, 401);
            assert_eq!(jwks.fetches.load(Ordering::SeqCst), fetches_before + 1);
        }
    }

    // Without a token: no error code, the same pointer to the metadata.
    let response = mcp_http::post(&http, &base, "tools/call", Some("memory_status"))
        .json(&mcp_http::tool_call(1, "memory_status", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["www-authenticate"],
        format!(r#"Bearer resource_metadata="{METADATA_URL}", scope="{ALL_SCOPES}""#).as_str()
    );
    // The static token still works beside JWT (tenant default, all scopes).
    let status = mcp_http::tool(&http, &base, TOKEN, "memory_status", json!({}))
        .await
        .unwrap();
    assert_eq!(status["tenant"], "default");
    assert_eq!(status["principal"], "token");

    // Rotation: a new kid appears in the JWKS and is accepted without a restart (after the
    // refetch rate limit).
    let next = rsa_key(dir.path(), "rsa-next");
    jwks.keys.lock().unwrap().push(rsa_jwk(&next, "rsa-2"));
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let rotated = token(
        Signer::Rs256(&next),
        "rsa-2",
        &claims("team-jwt", ALL_SCOPES),
    );
    presented.push(rotated.clone());
    let status = mcp_http::tool(&http, &base, &rotated, "memory_status", json!({}))
        .await
        .unwrap_or_else(|err| panic!("rotated kid refused: {err}\n{}", daemon.stderr()));
    assert_eq!(status["tenant"], "team-jwt");

    // Protected Resource Metadata at both well-known paths, unauthenticated.
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let response = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{path}"
        );
        let document: Value = response.json().await.unwrap();
        assert_eq!(document["resource"], RESOURCE, "{document}");
        assert_eq!(document["authorization_servers"], json!([ISSUER]));
        assert_eq!(
            document["scopes_supported"],
            json!(["memory:read", "memory:write", "memory:forget"])
        );
        assert_eq!(document["bearer_methods_supported"], json!(["header"]));
    }

    // Never a token, a signature or a claim's canary in the log.
    let log = daemon.stderr();
    assert!(!log.contains(CANARY), "canary in the log");
    for token in &presented {
        let signature = token.rsplit('.').next().unwrap();
        assert!(!log.contains(token.as_str()), "a token in the log");
        if !signature.is_empty() {
            assert!(!log.contains(signature), "a signature in the log");
        }
        let payload = token.split('.').nth(1).unwrap();
        assert!(!log.contains(payload), "a token's claims in the log");
    }
    daemon.signal("TERM");
    assert!(daemon.wait_exit(Duration::from_secs(20)).success());
}

#[test]
fn a_plain_http_jwks_url_is_refused_in_staging_and_production() {
    let root = daemon::config_root();
    for environment in ["staging", "production"] {
        let output = std::process::Command::new(daemon::BIN)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env(
                "DATABASE_URL",
                "postgres://cogmem@db.internal/cogmem?sslmode=verify-full",
            )
            .env("COGMEM__SERVER__AUTH__JWT__ISSUER", ISSUER)
            .env(
                "COGMEM__SERVER__AUTH__JWT__AUDIENCE",
                format!("[\"{AUDIENCE}\"]"),
            )
            .env(
                "COGMEM__SERVER__AUTH__JWT__JWKS_URL",
                "http://issuer.test/jwks",
            )
            .env("COGMEM__SERVER__AUTH__JWT__ALGORITHMS", "[\"HS256\"]")
            .env("COGMEM__SERVER__AUTH__RESOURCE_URL", RESOURCE)
            .env(
                "COGMEM__SERVER__AUTH__AUTHORIZATION_SERVERS",
                format!("[\"{ISSUER}\"]"),
            )
            .args(["--env", environment, "--config-root"])
            .arg(root.path())
            .args(["config", "check"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(78), "{environment}: {stderr}");
        assert!(
            stderr.contains("server.auth.jwt.jwks_url") && stderr.contains("must use https"),
            "{environment}: {stderr}"
        );
        assert!(
            stderr.contains("server.auth.jwt.algorithms[0]")
                && stderr.contains("\"HS256\" is not accepted"),
            "{environment}: {stderr}"
        );
    }
}
