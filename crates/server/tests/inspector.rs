//! Interoperability with a real third-party client: the MCP Inspector CLI (npm
//! `@modelcontextprotocol/inspector`, pinned below) drives the real daemon over stdio and over
//! streamable HTTP, in both protocol eras, and we assert on its `--format json` output.
//!
//! The Inspector is installed once per machine into `<target>/npm-inspector-<version>/` (staged
//! in a per-process directory and renamed into place, so concurrent runs never install into the
//! same tree). Without `node`/`npm`, or when the install fails (no network), the test prints
//! `skipped: <reason>` and passes — unless `COGMEM_REQUIRE_INSPECTOR=1`, which turns a skip into
//! a failure (for CI, where npm is known to work).
//!
//! Facts about Inspector 2.12.0 this test relies on (checked against `mcp-inspector --cli --help`
//! and its exit-code table):
//! - A stdio server gets only a minimal environment (HOME, PATH, SHELL, TERM) plus `-e KEY=VALUE`.
//! - Options the Inspector knows are taken by the Inspector wherever they appear: in
//!   `mcp-inspector --cli … BIN serve --transport stdio --method tools/list` it swallows our
//!   `--transport stdio` (it has its own `--transport`), and the server would start as HTTP.
//!   So every Inspector option comes first and the server command follows `--`.
//! - `--header`, `--tool-arg` and `-e` take several values, so a URL must not follow them
//!   (`--tool-arg k=v http://…` reads the URL as another pair): the URL goes before `--header`.
//! - Ad-hoc (URL or command) runs default to `--protocol-era legacy`; we always pass it, and
//!   check with `--method initialize` which protocol revision was actually negotiated.
//! - `--format json` prints `{"result": …}` on stdout, or `{"error": {"code", "message"}}` on
//!   stderr. Exit codes: 0 ok, 1 usage/other error, 3 auth required (any 401 or 403),
//!   4 unreachable, 5 the tool returned `isError: true`.
//!
//! Per era and transport (stdio, HTTP with the bearer token): `initialize`, `tools/list`,
//! `store_raw_dialogue` then `search_memory` for a unique word; per era over HTTP: a tool error,
//! and four ways of being refused (no token, no token with `--stored-auth-only`, a wrong token,
//! a foreign Origin). 26 Inspector runs, about 15 s here (2 cores).
//!
//! With `server.auth.jwt` (second test): per era, the 401 without a TTY is `auth_required`, and
//! with a "browser" the Inspector goes through the OAuth flow the Protected Resource Metadata
//! points to (a small authorization server of the test) and calls a tool with the JWT.

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/npm.rs"]
mod npm;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use config_core::Environment;
use daemon::{BIN, Launch, TOKEN, stamped_database};
use serde_json::{Value, json};

/// The Inspector release this test is pinned to (npm `latest` when it was written).
const INSPECTOR_VERSION: &str = "2.12.0";
const INSPECTOR: npm::NpmTool = npm::NpmTool {
    name: "inspector",
    package: "@modelcontextprotocol/inspector",
    version: INSPECTOR_VERSION,
    launcher: "mcp-inspector",
};
const TOOLS: [&str; 6] = [
    "forget",
    "get_session",
    "memory_status",
    "search_memory",
    "store_insight",
    "store_raw_dialogue",
];
const ERAS: [&str; 2] = ["modern", "legacy"];
/// Exit code of the Inspector CLI when the server requires authentication it cannot provide
/// (`EXIT_CODES.AUTH_REQUIRED` in its error handler).
const EXIT_AUTH_REQUIRED: i32 = 3;
/// Exit code of the Inspector CLI when a tool call returns `isError: true`.
const EXIT_TOOL_ERROR: i32 = 5;

#[tokio::test(flavor = "multi_thread")]
async fn the_mcp_inspector_cli_lists_stores_and_searches_over_stdio_and_http_in_both_eras() {
    let inspector = match install_inspector() {
        Ok(path) => path,
        Err(reason) => return npm::skip("COGMEM_REQUIRE_INSPECTOR", &reason),
    };
    let started = Instant::now();
    let database = stamped_database(Environment::Test).await;
    let mut daemon = Launch::http(&database.url).spawn();
    let url = format!("{}/mcp", daemon.ready());
    let stdio_root = daemon::config_root();
    let home = tempfile::tempdir().unwrap();

    let stdio = Target::Stdio {
        database_url: database.url.clone(),
        config_root: stdio_root.path().to_path_buf(),
    };
    let http = Target::Http {
        url: url.clone(),
        headers: vec![format!("Authorization: Bearer {TOKEN}")],
        name: "http",
    };
    let mut checked = Vec::new();
    for era in ERAS {
        for target in [&stdio, &http] {
            let run = Inspector {
                bin: &inspector,
                home: home.path(),
                target,
                era,
            };
            // The era really is the one asked for: `initialize` reports what was negotiated
            // (in the modern era, from `server/discover`).
            let opened = run.ok(&["--method", "initialize"]);
            let version = opened["protocolVersion"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let expected = if era == "modern" {
                "2026-07-28"
            } else {
                "2025-11-25"
            };
            assert_eq!(version, expected, "{}: {opened}", run.label());
            assert_eq!(
                opened["serverInfo"]["name"],
                json!("cognitive-memory"),
                "{}: {opened}",
                run.label()
            );

            // (a), (b): tools/list names exactly our six tools.
            let listed = run.ok(&["--method", "tools/list"]);
            let mut names: Vec<&str> = listed["tools"]
                .as_array()
                .unwrap_or_else(|| panic!("{}: no tools array: {listed}", run.label()))
                .iter()
                .map(|tool| tool["name"].as_str().unwrap())
                .collect();
            names.sort_unstable();
            assert_eq!(names, TOOLS, "{}", run.label());

            // (c): store a unique turn, then find it.
            let word = unique_word();
            let session = format!("inspector-{}-{era}-{word}", target.name());
            let content = format!("the inspector remembers {word} over {}", target.name());
            let stored = run.ok(&[
                "--method",
                "tools/call",
                "--tool-name",
                "store_raw_dialogue",
                "--tool-args-json",
                &json!({"session_id": session, "speaker": "user", "content": content}).to_string(),
            ]);
            assert_ne!(stored["isError"], json!(true), "{}: {stored}", run.label());
            let id = stored["structuredContent"]["id"]
                .as_i64()
                .unwrap_or_else(|| panic!("{}: no stored id: {stored}", run.label()));
            assert_eq!(stored["structuredContent"]["session_id"], json!(session));
            assert!(
                text_of(&stored).contains(&format!("stored turn {id}")),
                "{}: {stored}",
                run.label()
            );

            let found = run.ok(&[
                "--method",
                "tools/call",
                "--tool-name",
                "search_memory",
                "--tool-args-json",
                &json!({"query": word, "session_id": session, "layer": "raw", "limit": 5})
                    .to_string(),
            ]);
            assert_ne!(found["isError"], json!(true), "{}: {found}", run.label());
            let hits = found["structuredContent"]["hits"]
                .as_array()
                .unwrap_or_else(|| panic!("{}: no hits: {found}", run.label()));
            assert_eq!(hits.len(), 1, "{}: {found}", run.label());
            assert_eq!(hits[0]["id"], json!(id), "{}: {found}", run.label());
            assert!(
                hits[0]["snippet"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("**{word}**")),
                "{}: {found}",
                run.label()
            );
            assert_eq!(text_of(&found), "1 hit(s)", "{}: {found}", run.label());
            checked.push(format!(
                "{}: protocol {version}, tools/list = {} tools, store_raw_dialogue id {id}, search_memory 1 hit",
                run.label(),
                names.len()
            ));
        }

        // A tool error is a result with `isError: true`, not a protocol error; the Inspector
        // still prints the result on stdout and exits 5 (EXIT_CODES.TOOL_ERROR).
        let run = Inspector {
            bin: &inspector,
            home: home.path(),
            target: &http,
            era,
        };
        let output = run.run(&[
            "--method",
            "tools/call",
            "--tool-name",
            "store_raw_dialogue",
            "--tool-args-json",
            r#"{"session_id": "inspector-errors", "speaker": "robot", "content": "x"}"#,
        ]);
        assert_eq!(
            output.code,
            Some(EXIT_TOOL_ERROR),
            "{}: {output:?}",
            run.label()
        );
        let refused: Value = serde_json::from_str(&output.stdout).unwrap();
        assert_eq!(refused["result"]["isError"], json!(true), "{refused}");
        assert!(
            text_of(&refused["result"]).contains("invalid argument `speaker`"),
            "{refused}"
        );
        checked.push(format!(
            "{} tools/call with speaker=robot: exit {EXIT_TOOL_ERROR}, isError",
            run.label()
        ));

        // (d): without the bearer header (or with a wrong one) the daemon answers 401 with
        // `WWW-Authenticate: Bearer [error="invalid_token", ]scope="…"` and, with no
        // `server.auth.resource_url`, lets `/.well-known/oauth-protected-resource` 404. The Inspector classifies any 401 as
        // `auth_required` and would start OAuth; without a TTY on stdin/stderr it refuses the
        // interactive login rather than hang, and with `--stored-auth-only` (its advice for CI)
        // it finds no stored token. Either way it exits 3 (EXIT_CODES.AUTH_REQUIRED) with a JSON
        // error envelope on stderr and nothing on stdout. A foreign `Origin` gets 403, which the
        // Inspector files under the same exit code.
        for (name, headers, extra) in [
            ("http-without-token", vec![], &[][..]),
            (
                "http-without-token --stored-auth-only",
                vec![],
                &["--stored-auth-only"][..],
            ),
            (
                "http-with-wrong-token",
                vec!["Authorization: Bearer not-the-token-at-all".to_owned()],
                &[][..],
            ),
            (
                "http-with-foreign-origin",
                vec![
                    format!("Authorization: Bearer {TOKEN}"),
                    "Origin: https://evil.example".to_owned(),
                ],
                &[][..],
            ),
        ] {
            let target = Target::Http {
                url: url.clone(),
                headers,
                name,
            };
            let run = Inspector {
                bin: &inspector,
                home: home.path(),
                target: &target,
                era,
            };
            let mut args = vec!["--method", "tools/list"];
            args.extend_from_slice(extra);
            let output = run.run(&args);
            assert_eq!(
                output.code,
                Some(EXIT_AUTH_REQUIRED),
                "{}: {output:?}",
                run.label()
            );
            let envelope: Value =
                serde_json::from_str(output.stderr.trim()).unwrap_or_else(|err| {
                    panic!("{}: stderr is not JSON ({err}): {output:?}", run.label())
                });
            assert_eq!(
                envelope["error"]["code"],
                "auth_required",
                "{}: {envelope}",
                run.label()
            );
            assert!(output.stdout.trim().is_empty(), "{output:?}");
            checked.push(format!(
                "{}: exit {EXIT_AUTH_REQUIRED} ({envelope})",
                run.label()
            ));
        }
    }

    let elapsed = started.elapsed();
    println!(
        "MCP Inspector {INSPECTOR_VERSION} ({}):",
        inspector.display()
    );
    for line in &checked {
        println!("  {line}");
    }
    println!(
        "{} eras x 2 transports (stdio, http) checked in {elapsed:.1?}",
        ERAS.len()
    );
    drop(daemon);
}

/// With `server.auth.jwt` on, a real OAuth client understands the 401 and gets in: the Inspector
/// reads `resource_metadata` from the challenge, fetches our Protected Resource Metadata, follows
/// its `authorization_servers` entry to a small authorization server of this test (metadata,
/// dynamic client registration, an authorization endpoint that approves at once, a token
/// endpoint issuing an ES256 JWT for tenant `oauth-team`), with a "browser" that only follows
/// the redirect (`BROWSER`, used by the `open` package's xdg-open) — then lists the tools and
/// reads `memory_status` as that tenant. Without a TTY and without auto-open it refuses the
/// interactive login with `auth_required` (exit 3) instead of hanging.
#[tokio::test(flavor = "multi_thread")]
async fn the_mcp_inspector_follows_the_401_through_oauth_to_a_jwt() {
    let inspector = match install_inspector() {
        Ok(path) => path,
        Err(reason) => return npm::skip("COGMEM_REQUIRE_INSPECTOR", &reason),
    };
    let work = tempfile::tempdir().unwrap();
    let authorization = AuthorizationServer::start(work.path()).await;
    // A fixed port, so the advertised resource is the URL the client really uses.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/mcp");
    let issuer = authorization.issuer.clone();
    let database = stamped_database(Environment::Test).await;
    let mut launch = Launch::http(&database.url)
        .env("COGMEM__SERVER__AUTH__JWT__ISSUER", &issuer)
        .env("COGMEM__SERVER__AUTH__JWT__AUDIENCE", "[\"cogmem\"]")
        .env(
            "COGMEM__SERVER__AUTH__JWT__JWKS_FILE",
            authorization.jwks_file.to_str().unwrap(),
        )
        .env("COGMEM__SERVER__AUTH__JWT__ALGORITHMS", "[\"ES256\"]")
        .env("COGMEM__SERVER__AUTH__RESOURCE_URL", &url)
        .env(
            "COGMEM__SERVER__AUTH__AUTHORIZATION_SERVERS",
            &format!("[\"{issuer}\"]"),
        );
    launch.args = vec!["serve".into(), "--bind".into(), format!("127.0.0.1:{port}")];
    let mut daemon = launch.spawn();
    daemon.ready();
    let browser = work.path().join("browser");
    std::fs::write(
        &browser,
        "#!/bin/sh\nexec curl -s -o /dev/null -L --max-time 20 \"$1\"\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &browser,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let target = Target::Http {
        url: url.clone(),
        headers: vec![],
        name: "http-oauth",
    };
    for era in ERAS {
        let home = tempfile::tempdir().unwrap();
        let run = Inspector {
            bin: &inspector,
            home: home.path(),
            target: &target,
            era,
        };
        // No TTY, no auto-open: a clear auth_required, nothing asked of the authorization server
        // beyond discovery.
        let refused = run.run(&["--method", "tools/list"]);
        assert_eq!(
            refused.code,
            Some(EXIT_AUTH_REQUIRED),
            "{}: {refused:?}",
            run.label()
        );
        let envelope: Value = serde_json::from_str(refused.stderr.trim()).unwrap_or_else(|err| {
            panic!("{}: stderr is not JSON ({err}): {refused:?}", run.label())
        });
        assert_eq!(envelope["error"]["code"], "auth_required", "{envelope}");

        // With a "browser": the whole flow, then the tools as the token's tenant.
        authorization.asked.lock().unwrap().clear();
        let mut command = run.command(&["--method", "tools/call", "--tool-name", "memory_status"]);
        command
            .env("MCP_AUTO_OPEN_ENABLED", "true")
            .env("BROWSER", &browser);
        let output = npm::run(command, Duration::from_secs(90)).unwrap();
        let asked = authorization.asked.lock().unwrap().clone();
        assert_eq!(
            output.code,
            Some(0),
            "{}: {output:?}; authorization server saw {asked:?}\n{}",
            run.label(),
            daemon.stderr()
        );
        let result: Value = serde_json::from_str(&output.stdout).unwrap();
        let status = &result["result"]["structuredContent"];
        assert_eq!(status["tenant"], "oauth-team", "{result}");
        assert_eq!(status["principal"], "jwt:inspector-user", "{result}");
        for step in ["/register", "/authorize", "/token"] {
            assert!(
                asked.iter().any(|path| path == step),
                "{}: no {step} in {asked:?}",
                run.label()
            );
        }
        assert!(
            asked.iter().any(|path| path.starts_with("/.well-known/")),
            "{}: no metadata request in {asked:?}",
            run.label()
        );
        println!(
            "{}: OAuth via the Protected Resource Metadata: {asked:?}",
            run.label()
        );
    }
    drop(daemon);
}

/// A minimal OAuth 2.1 authorization server on loopback: RFC 8414 metadata, RFC 7591
/// registration, an authorization endpoint that approves every request, and a token endpoint
/// issuing ES256 JWTs whose key is in `jwks_file`. Records the paths asked for.
struct AuthorizationServer {
    issuer: String,
    jwks_file: PathBuf,
    asked: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl AuthorizationServer {
    async fn start(dir: &Path) -> Self {
        use axum::routing::{get, post};
        use base64::Engine;
        use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key = std::sync::Arc::new(
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                .unwrap(),
        );
        let point = key.public_key().as_ref().to_vec();
        let jwks_file = dir.join("jwks.json");
        std::fs::write(
            &jwks_file,
            json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "as-1", "alg": "ES256",
                             "x": b64(&point[1..33]), "y": b64(&point[33..65])}]})
            .to_string(),
        )
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let asked: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();

        let metadata = {
            let issuer = issuer.clone();
            move || {
                let issuer = issuer.clone();
                async move {
                    axum::Json(json!({
                        "issuer": issuer,
                        "authorization_endpoint": format!("{issuer}/authorize"),
                        "token_endpoint": format!("{issuer}/token"),
                        "registration_endpoint": format!("{issuer}/register"),
                        "response_types_supported": ["code"],
                        "grant_types_supported": ["authorization_code", "refresh_token"],
                        "code_challenge_methods_supported": ["S256"],
                        "token_endpoint_auth_methods_supported": ["none"],
                        "scopes_supported": ["memory:read", "memory:write", "memory:forget"],
                    }))
                }
            }
        };
        let register = |axum::Json(mut request): axum::Json<Value>| async move {
            request["client_id"] = json!("inspector-client");
            request["token_endpoint_auth_method"] = json!("none");
            (axum::http::StatusCode::CREATED, axum::Json(request))
        };
        let authorize = |uri: axum::http::Uri| async move {
            let query: std::collections::HashMap<String, String> =
                url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                    .into_owned()
                    .collect();
            let mut target = url::Url::parse(&query["redirect_uri"]).unwrap();
            target.query_pairs_mut().append_pair("code", "test-code");
            if let Some(state) = query.get("state") {
                target.query_pairs_mut().append_pair("state", state);
            }
            (
                axum::http::StatusCode::FOUND,
                [(axum::http::header::LOCATION, target.to_string())],
            )
        };
        let token = {
            let (issuer, key) = (issuer.clone(), key.clone());
            move |_body: String| {
                let (issuer, key) = (issuer.clone(), key.clone());
                async move {
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap()
                        .as_secs();
                    let header = json!({"alg": "ES256", "typ": "JWT", "kid": "as-1"});
                    let claims = json!({"iss": issuer, "aud": "cogmem", "sub": "inspector-user",
                        "tenant": "oauth-team", "scope": "memory:read memory:write",
                        "iat": now, "exp": now + 600});
                    let message = format!(
                        "{}.{}",
                        b64(header.to_string().as_bytes()),
                        b64(claims.to_string().as_bytes())
                    );
                    let signature = key
                        .sign(&ring::rand::SystemRandom::new(), message.as_bytes())
                        .unwrap();
                    axum::Json(json!({
                        "access_token": format!("{message}.{}", b64(signature.as_ref())),
                        "token_type": "Bearer",
                        "expires_in": 600,
                        "scope": "memory:read memory:write",
                    }))
                }
            }
        };
        let seen = asked.clone();
        let app = axum::Router::new()
            .route(
                "/.well-known/oauth-authorization-server",
                get(metadata.clone()),
            )
            .route("/.well-known/openid-configuration", get(metadata))
            .route("/register", post(register))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .layer(axum::middleware::from_fn(
                move |request: axum::extract::Request, next: axum::middleware::Next| {
                    seen.lock().unwrap().push(request.uri().path().to_owned());
                    next.run(request)
                },
            ));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            issuer,
            jwks_file,
            asked,
        }
    }
}

enum Target {
    /// The Inspector launches the server itself.
    Stdio {
        database_url: String,
        config_root: PathBuf,
    },
    /// The running daemon, with these HTTP headers (`Name: value`).
    Http {
        url: String,
        headers: Vec<String>,
        name: &'static str,
    },
}

impl Target {
    fn name(&self) -> &'static str {
        match self {
            Target::Stdio { .. } => "stdio",
            Target::Http { name, .. } => name,
        }
    }
}

struct Inspector<'a> {
    bin: &'a Path,
    home: &'a Path,
    target: &'a Target,
    era: &'a str,
}

impl Inspector<'_> {
    fn label(&self) -> String {
        format!("{} {}", self.era, self.target.name())
    }

    /// `mcp-inspector --cli --format json -q --protocol-era ERA <method args> <target>`.
    fn run(&self, method: &[&str]) -> npm::Output {
        let command = self.command(method);
        npm::run(command, Duration::from_secs(60))
            .unwrap_or_else(|err| panic!("{}: cannot run the Inspector: {err}", self.label()))
    }

    /// The command [`Inspector::run`] runs.
    fn command(&self, method: &[&str]) -> Command {
        let mut command = Command::new(self.bin);
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            // Its catalog, OAuth state and secrets live under ~/.mcp-inspector: keep them out of
            // the real home directory.
            .env("HOME", self.home)
            .env("MCP_INSPECTOR_SECRET_STORE", "memory")
            .args([
                "--cli",
                "--format",
                "json",
                "-q",
                "--protocol-era",
                self.era,
            ])
            .args(method)
            .stdin(Stdio::null());
        match self.target {
            Target::Stdio {
                database_url,
                config_root,
            } => {
                command
                    .arg("-e")
                    .arg(format!("DATABASE_URL={database_url}"))
                    .arg("--")
                    .arg(BIN)
                    .args(["--env", "test", "--config-root"])
                    .arg(config_root)
                    .args(["serve", "--transport", "stdio"]);
            }
            Target::Http { url, headers, .. } => {
                // `--header` takes several values, so it comes after the URL.
                command.arg(url);
                for header in headers {
                    command.arg("--header").arg(header);
                }
            }
        }
        command
    }

    /// Runs and expects exit 0 with one JSON object on stdout.
    fn ok(&self, method: &[&str]) -> Value {
        let output = self.run(method);
        assert_eq!(
            output.code,
            Some(0),
            "{} {method:?}: {output:?}",
            self.label()
        );
        let mut value: Value = serde_json::from_str(&output.stdout).unwrap_or_else(|err| {
            panic!(
                "{} {method:?}: stdout is not JSON ({err}): {output:?}",
                self.label()
            )
        });
        // `--format json` prints `{"result": <the method's result>}`.
        value
            .get_mut("result")
            .unwrap_or_else(|| panic!("{} {method:?}: no result: {output:?}", self.label()))
            .take()
    }
}

/// The text of a tool result's first content block.
fn text_of(result: &Value) -> &str {
    result["content"][0]["text"].as_str().unwrap_or_default()
}

/// A word no other run has stored: letters only, so full-text search keeps it as one lexeme.
fn unique_word() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        ^ (u64::from(std::process::id()) << 40)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut word = String::from("quokka");
    for _ in 0..10 {
        word.push(char::from(b'a' + (n % 26) as u8));
        n /= 26;
    }
    word
}

/// The Inspector's `mcp-inspector` launcher, installed on first use, checked to be the pinned
/// release.
fn install_inspector() -> Result<PathBuf, String> {
    let bin = npm::install(&INSPECTOR)?;
    let mut version = Command::new(&bin);
    version.arg("--version").stdin(Stdio::null());
    let output = npm::run(version, Duration::from_secs(60))
        .map_err(|err| format!("cannot run {}: {err}", bin.display()))?;
    if output.stdout.trim() != INSPECTOR_VERSION {
        return Err(format!(
            "{} reports version {:?}, expected {INSPECTOR_VERSION}: {output:?}",
            bin.display(),
            output.stdout.trim()
        ));
    }
    Ok(bin)
}
