//! The authorization server's signing keys (JWKS) for `server.auth.jwt`: fetched from
//! `jwks_url` with the daemon's own hyper-util + rustls (ring) client, or read from `jwks_file`,
//! and cached.
//!
//! The cache is refreshed when it is older than `jwks_max_age_secs`, and when a token names a
//! `kid` it does not hold (the authorization server rotated its keys) — at most once per
//! `jwks_min_refetch_secs`, so tokens with made-up `kid`s cannot make the server hammer the
//! authorization server. A failed fetch keeps the keys it had.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::http::{Request, StatusCode, Uri, header};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::{Jwk, JwkSet};

/// Largest JWKS document read.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Longest wait for the authorization server's answer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the keys come from.
#[derive(Debug, Clone)]
pub enum JwksSource {
    Url(Uri),
    File(PathBuf),
}

impl JwksSource {
    /// For the log: the URL without query, or the file's path.
    fn describe(&self) -> String {
        match self {
            JwksSource::Url(uri) => format!(
                "{}://{}{}",
                uri.scheme_str().unwrap_or("?"),
                uri.authority().map(|a| a.as_str()).unwrap_or("?"),
                uri.path()
            ),
            JwksSource::File(path) => path.display().to_string(),
        }
    }
}

/// Why no key was found for a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLookup {
    /// The JWKS has no key with the token's `kid` (after a refetch, unless rate-limited).
    UnknownKid,
    /// The token names no `kid` and the JWKS holds more than one key.
    NoKid,
    /// No JWKS could be fetched yet.
    Unavailable,
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

struct Fetched {
    set: Arc<JwkSet>,
    /// When the set was last fetched successfully.
    at: Option<Instant>,
    /// When a fetch was last attempted (successful or not): the refetch rate limit.
    attempted: Option<Instant>,
}

/// The cached key set.
pub struct Jwks {
    source: JwksSource,
    client: Option<HttpsClient>,
    state: RwLock<Fetched>,
    /// One fetch at a time; waiters then see its result.
    fetching: tokio::sync::Mutex<()>,
    min_refetch: Duration,
    max_age: Duration,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("source", &self.source.describe())
            .finish_non_exhaustive()
    }
}

impl Jwks {
    /// A cache over `source`. A file is read now (an unreadable one is a configuration error);
    /// a URL is fetched at the first need (or [`Jwks::refresh`]).
    pub fn new(
        source: JwksSource,
        min_refetch: Duration,
        max_age: Duration,
    ) -> Result<Self, String> {
        let (client, set, at) = match &source {
            JwksSource::File(path) => {
                let set = read_file(path)?;
                (None, set, Some(Instant::now()))
            }
            JwksSource::Url(_) => {
                let connector = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
                    .map_err(|err| format!("TLS setup: {err}"))?
                    .https_or_http()
                    .enable_http1()
                    .build();
                let client = Client::builder(TokioExecutor::new()).build(connector);
                (Some(client), JwkSet { keys: Vec::new() }, None)
            }
        };
        Ok(Self {
            source,
            client,
            state: RwLock::new(Fetched {
                set: Arc::new(set),
                at,
                attempted: at,
            }),
            fetching: tokio::sync::Mutex::new(()),
            min_refetch,
            max_age,
        })
    }

    fn snapshot(&self) -> (Arc<JwkSet>, Option<Instant>, Option<Instant>) {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        (state.set.clone(), state.at, state.attempted)
    }

    /// The key for a token's `kid`, refreshing the cache when it is stale or lacks the `kid`.
    pub async fn key(&self, kid: Option<&str>) -> Result<Jwk, KeyLookup> {
        let (_, at, _) = self.snapshot();
        if at.is_none_or(|at| at.elapsed() >= self.max_age) {
            self.refresh_if(|attempted| attempted.is_none_or(|t| t.elapsed() >= self.min_refetch))
                .await;
        }
        let (set, at, _) = self.snapshot();
        match find(&set, kid) {
            Ok(jwk) => return Ok(jwk),
            Err(KeyLookup::UnknownKid) => {}
            Err(other) if at.is_some() => return Err(other),
            Err(_) => {}
        }
        // Unknown kid: the authorization server may have rotated. Rate-limited refetch.
        self.refresh_if(|attempted| attempted.is_none_or(|t| t.elapsed() >= self.min_refetch))
            .await;
        let (set, at, _) = self.snapshot();
        if at.is_none() {
            return Err(KeyLookup::Unavailable);
        }
        find(&set, kid)
    }

    /// Fetches (or reads) the set now when `due(last attempt)` says so; waiters share one fetch.
    async fn refresh_if(&self, due: impl Fn(Option<Instant>) -> bool) {
        let _one = self.fetching.lock().await;
        let (_, _, attempted) = self.snapshot();
        if !due(attempted) {
            return;
        }
        let _ = self.refresh_locked().await;
    }

    /// Fetches (or reads) the set now, whatever the rate limit (start-up, SIGHUP).
    pub async fn refresh(&self) -> Result<usize, String> {
        let _one = self.fetching.lock().await;
        self.refresh_locked().await
    }

    async fn refresh_locked(&self) -> Result<usize, String> {
        let now = Instant::now();
        let loaded = match &self.source {
            JwksSource::File(path) => read_file(path),
            JwksSource::Url(uri) => self.fetch(uri).await,
        };
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        state.attempted = Some(now);
        match loaded {
            Ok(set) => {
                let kids: Vec<&str> = set
                    .keys
                    .iter()
                    .map(|k| k.common.key_id.as_deref().unwrap_or("(no kid)"))
                    .collect();
                tracing::info!(source = %self.source.describe(), kids = %kids.join(", "), "JWKS loaded");
                let count = set.keys.len();
                state.set = Arc::new(set);
                state.at = Some(now);
                Ok(count)
            }
            Err(err) => {
                tracing::warn!(source = %self.source.describe(), "JWKS not loaded, the previous keys stay in use: {err}");
                Err(err)
            }
        }
    }

    async fn fetch(&self, uri: &Uri) -> Result<JwkSet, String> {
        let client = self.client.as_ref().ok_or("no HTTP client")?;
        let request = Request::get(uri.clone())
            .header(header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|err| format!("bad request: {err}"))?;
        let body = tokio::time::timeout(FETCH_TIMEOUT, async {
            let response = client
                .request(request)
                .await
                .map_err(|err| format!("request failed: {err}"))?;
            if response.status() != StatusCode::OK {
                return Err(format!("answered {}", response.status()));
            }
            Limited::new(response.into_body(), MAX_JWKS_BYTES)
                .collect()
                .await
                .map(|collected| collected.to_bytes())
                .map_err(|err| format!("reading the answer: {err}"))
        })
        .await
        .map_err(|_| format!("no answer within {FETCH_TIMEOUT:?}"))??;
        serde_json::from_slice(&body).map_err(|err| format!("not a JWKS document: {err}"))
    }
}

fn read_file(path: &std::path::Path) -> Result<JwkSet, String> {
    let text =
        std::fs::read(path).map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    serde_json::from_slice(&text)
        .map_err(|err| format!("{} is not a JWKS document: {err}", path.display()))
}

fn find(set: &JwkSet, kid: Option<&str>) -> Result<Jwk, KeyLookup> {
    match kid {
        Some(kid) => set.find(kid).cloned().ok_or(KeyLookup::UnknownKid),
        None => match set.keys.as_slice() {
            [only] => Ok(only.clone()),
            [] => Err(KeyLookup::UnknownKid),
            _ => Err(KeyLookup::NoKid),
        },
    }
}
