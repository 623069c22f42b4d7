//! The application's configuration schema: every knob the daemon reads, described once.
//!
//! `config-core` derives the variable names (`COGMEM__…` plus the aliases declared here), the
//! `.env.template`, `config explain` and the reference docs from these structs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use config_core::{Config, ConfigEnum, EnvSnapshot, LoadFailure, LoadOptions, Loaded, Validator};
use secrecy::{ExposeSecret, SecretString};

use crate::auth::PreviousTokens;

/// Prefix of every derived variable name.
pub const ENV_PREFIX: &str = "COGMEM";
/// The shared configuration file, relative to the configuration root.
pub const CONFIG_FILE: &str = "config/config.yaml";
/// The variable that chooses the environment when `--env` is not given.
pub const ENVIRONMENT_VAR: &str = "ENVIRONMENT";

/// Everything `cognitive-memory-mcp` can be configured with.
#[derive(Debug, Config)]
pub struct AppConfig {
    /// PostgreSQL connection and migrations.
    #[config(section)]
    pub database: db::DatabaseConfig,
    /// MCP transports, HTTP security and shutdown.
    #[config(section)]
    pub server: ServerConfig,
    /// Log level, format and payload logging.
    #[config(section)]
    pub logging: LoggingConfig,
    /// Limits on stored memories and searches, and how long they are kept.
    #[config(section)]
    pub memory: MemoryConfig,
    /// Backups taken by `cognitive-memory-mcp backup` and how long they are kept.
    #[config(section)]
    pub backup: BackupConfig,
    /// Prometheus metrics and OpenTelemetry traces (see docs/observability.md).
    #[config(section)]
    pub telemetry: TelemetryConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ConfigEnum, clap::ValueEnum)]
pub enum Transport {
    /// JSON-RPC over stdin/stdout, for clients that launch the binary.
    Stdio,
    /// Streamable HTTP at `/mcp`, for the daemon.
    Http,
}

#[derive(Debug, Config)]
#[config(validate = validate_server)]
pub struct ServerConfig {
    /// Transport `serve` uses unless `--transport` says otherwise.
    #[config(default = "http")]
    pub transport: Transport,
    /// HTTP listener.
    #[config(section)]
    pub http: HttpConfig,
    /// Bearer-token authentication of HTTP clients.
    #[config(section)]
    pub auth: AuthConfig,
    /// Per-client request rate limit.
    #[config(section)]
    pub rate_limit: RateLimitConfig,
    /// Seconds in-flight requests may take to finish after SIGTERM before they are cut off.
    #[config(default = "10")]
    pub shutdown_grace_secs: u64,
}

#[derive(Debug, Config)]
pub struct HttpConfig {
    /// Address and port the HTTP listener binds.
    #[config(default = "127.0.0.1:8765")]
    pub bind: SocketAddr,
    /// Browser origins allowed to call `/mcp`; a request with any other `Origin` header gets 403.
    #[config(default = "[]")]
    pub allowed_origins: Vec<String>,
    /// Host names clients may use to reach `/mcp` besides loopback and the bind address (a guard
    /// against DNS rebinding; a request with any other `Host` header is refused).
    #[config(default = "[]")]
    pub allowed_hosts: Vec<String>,
    /// Largest accepted request body in bytes (413 above it).
    #[config(default = "1048576")]
    pub max_body_bytes: usize,
    /// Seconds a request may take before it is answered with a timeout.
    #[config(default = "30")]
    pub request_timeout_secs: u64,
    /// Most open client connections. The daemon lowers it when the file-descriptor limit leaves
    /// too few descriptors for the database pool; when full, the longest-idle connection is
    /// closed to admit a new one, so `/health` is never locked out by idle or slow clients.
    #[config(default = "4096")]
    pub max_connections: usize,
    /// Seconds a client may take to send a request's headers before its connection is closed.
    #[config(default = "10")]
    pub header_read_timeout_secs: u64,
    /// Seconds an idle keep-alive connection stays open between requests.
    #[config(default = "60")]
    pub idle_timeout_secs: u64,
    /// Seconds a client may take to send a request's body (408 after it).
    #[config(default = "10")]
    pub body_read_timeout_secs: u64,
    /// Most `/mcp` requests handled at once; beyond it requests get 503 with `Retry-After`.
    #[config(default = "128")]
    pub max_in_flight: usize,
    /// Bytes of request bodies held in memory across all requests at once (at least
    /// `max_body_bytes`); a request that finds the budget spent waits briefly, then gets 503.
    #[config(default = "16777216")]
    pub max_buffered_body_bytes: usize,
    /// Addresses of reverse proxies whose `X-Forwarded-For` header names the client; empty
    /// means the header is ignored and the connection's address is the client.
    #[config(default = "[]")]
    pub trusted_proxies: Vec<String>,
}

#[derive(Debug, Config)]
pub struct AuthConfig {
    /// Whether HTTP clients must send `Authorization: Bearer <token>`. Off only in development.
    #[config(default = "true")]
    pub required: bool,
    /// The bearer token clients must present.
    #[config(alias = "MCP_AUTH_TOKEN")]
    pub token: Option<SecretString>,
    /// Earlier bearer tokens still accepted while clients move to the current one (a rotation):
    /// entries separated by commas or newlines, each `TOKEN` or `TOKEN;expires=2026-12-31T23:59:59Z`
    /// (RFC 3339). Remove them, and reload, once every client uses the new token.
    #[config(alias = "MCP_AUTH_TOKEN_PREVIOUS")]
    pub previous_tokens: Option<PreviousTokens>,
    /// Absolute path of the named API keys file (one key per line: name, tenant, scopes, optional
    /// expiry and the key's SHA-256; see docs/authorization.md), e.g. a systemd credential
    /// (`%d/api-keys`). `cognitive-memory-mcp auth new-key` makes keys; SIGHUP re-reads the file.
    pub keys_file: Option<String>,
    /// The resource URL this server advertises in its OAuth Protected Resource Metadata (RFC
    /// 9728), e.g. `https://memory.example.com/mcp`; required with `server.auth.jwt`. Not the
    /// expected token audience (`server.auth.jwt.audience`): with Entra ID the two differ.
    pub resource_url: Option<String>,
    /// Issuer URLs of the OAuth authorization servers listed in the metadata (at least one with
    /// `server.auth.jwt`).
    #[config(default = "[]")]
    pub authorization_servers: Vec<String>,
    /// JWT bearer tokens from an OAuth 2.1 / OpenID Connect authorization server.
    #[config(section)]
    pub jwt: JwtConfig,
}

#[derive(Debug, Config)]
pub struct JwtConfig {
    /// Expected `iss` claim, exactly (e.g. `https://login.example.com/realms/main`); setting it
    /// turns JWT authentication on.
    pub issuer: Option<String>,
    /// Accepted `aud` values (a token must hold one): this server's identifier at the
    /// authorization server; with Entra ID the application (client) id.
    #[config(default = "[]")]
    pub audience: Vec<String>,
    /// URL of the authorization server's JWKS (`https` in staging and production).
    pub jwks_url: Option<String>,
    /// Absolute path of a JWKS file, instead of `jwks_url` (SIGHUP and unknown key ids re-read it).
    pub jwks_file: Option<String>,
    /// Accepted signature algorithms, from RS256, RS384, RS512, PS256, PS384, PS512, ES256,
    /// ES384, EdDSA (never HS* or none).
    #[config(default = "[\"RS256\", \"ES256\"]")]
    pub algorithms: Vec<String>,
    /// Claim naming the tenant (a tenant name); a token without it is refused.
    #[config(default = "tenant")]
    pub tenant_claim: String,
    /// Claim holding the granted scopes: a space-separated string (`scope`, Entra's `scp`) or an
    /// array (`roles`); scopes other than memory:* are ignored.
    #[config(default = "scope")]
    pub scope_claim: String,
    /// Seconds of clock difference allowed when checking `exp` and `nbf`.
    #[config(default = "60")]
    pub leeway_secs: u64,
    /// Fewest seconds between two JWKS fetches caused by tokens naming an unknown key id.
    #[config(default = "30")]
    pub jwks_min_refetch_secs: u64,
    /// Seconds after which the cached JWKS is fetched again.
    #[config(default = "3600")]
    pub jwks_max_age_secs: u64,
}

#[derive(Debug, Config)]
pub struct RateLimitConfig {
    /// Requests per minute allowed per authenticated principal (429 above it).
    #[config(default = "60")]
    pub requests_per_minute: u32,
    /// Failed authentication attempts per minute allowed per client address (429 above it);
    /// authenticated requests are never counted nor refused by it.
    #[config(default = "30")]
    pub failed_auth_per_minute: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ConfigEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ConfigEnum)]
pub enum LogFormat {
    /// journald when stderr is connected to the journal, else pretty in development, JSON elsewhere.
    Auto,
    Pretty,
    Json,
    Journald,
}

#[derive(Debug, Config)]
#[config(validate = validate_logging)]
pub struct LoggingConfig {
    /// Most verbose level logged.
    #[config(default = "info", alias = "LOG_LEVEL")]
    pub level: LogLevel,
    /// Output format.
    #[config(default = "auto", alias = "LOG_FORMAT")]
    pub format: LogFormat,
    /// Whether memory contents and tool arguments may appear in logs (personal data: never in production).
    #[config(default = "false")]
    pub log_payloads: bool,
}

#[derive(Debug, Config)]
#[config(validate = validate_memory)]
pub struct MemoryConfig {
    /// The tenant whose memories this server reads and writes where no authenticated principal
    /// names one (stdio; docs/tenancy.md), and the default of `export --tenant` and
    /// `import --tenant`: 1–63 lowercase letters, digits, `_`, `-`, `.`.
    #[config(default = "default")]
    pub tenant: String,
    /// Largest accepted memory content in bytes.
    #[config(default = "65536")]
    pub max_content_bytes: usize,
    /// Search result limits.
    #[config(section)]
    pub search: SearchConfig,
    /// How long memories are kept before the daemon expires them.
    #[config(section)]
    pub retention: RetentionConfig,
    /// Group commit of `store_raw_dialogue`: concurrent calls written by one statement.
    #[config(section)]
    pub write_batch: WriteBatchConfig,
}

#[derive(Debug, Config)]
pub struct WriteBatchConfig {
    /// Most dialogue turns one statement (one commit) writes, 1 to 1000; 1 writes every turn on its own.
    #[config(default = "64")]
    pub max_batch: usize,
    /// Milliseconds a writer waits for more turns after the first of a batch that is not full, 0 to 100; 0 writes what is queued at once (batches still form while the writers are busy), more trades latency for larger batches.
    #[config(default = "0")]
    pub max_wait_ms: u64,
    /// Most turns waiting to be written, at least max_batch; a store call beyond it waits for room (back-pressure).
    #[config(default = "1024")]
    pub queue: usize,
    /// Writer tasks, each writing one batch at a time on a pooled connection of its own, 1 to 16 (keep it below database.pool.max_connections).
    #[config(default = "2")]
    pub writers: usize,
}

impl MemoryConfig {
    /// `memory.tenant`, validated by the configuration (an invalid name never loads).
    pub fn tenant(&self) -> crate::tenancy::Tenant {
        crate::tenancy::Tenant::new(self.tenant.as_str()).unwrap_or_default()
    }
}

#[derive(Debug, Config)]
pub struct RetentionConfig {
    /// Days raw dialogue turns are kept; older ones are deleted and unlinked from the insights
    /// citing them, as `forget` does (0: keep forever).
    #[config(default = "0")]
    pub raw_days: u32,
    /// Days insights are kept (0: keep forever).
    #[config(default = "0")]
    pub insight_days: u32,
    /// Seconds between two retention runs of the daemon (the first runs right after start-up).
    #[config(default = "3600")]
    pub interval_secs: u64,
    /// Rows deleted per transaction, so no purge holds locks for long.
    #[config(default = "1000")]
    pub batch_size: u32,
    /// Milliseconds the purge pauses between two batches, leaving room for concurrent calls.
    #[config(default = "20")]
    pub batch_pause_ms: u64,
}

#[derive(Debug, Config)]
#[config(validate = validate_backup)]
pub struct BackupConfig {
    /// Directory of the backup files and their manifests (created with mode 0700 if missing).
    /// A relative path is taken from the configuration root.
    #[config(default = "backups")]
    pub dir: String,
    /// Days a backup is kept; older ones are pruned, only after a new backup verified
    /// (0: keep only the backup.keep_min newest).
    #[config(default = "14")]
    pub keep_days: u32,
    /// Fewest verified backups kept however old they are (at least 1).
    #[config(default = "2")]
    pub keep_min: u32,
    /// Directory with pg_dump, pg_restore and psql of the database server's major version.
    /// Unset: `pg_config --bindir`, then /usr/lib/postgresql/<major>/bin, then PATH.
    pub pg_bin_dir: Option<String>,
    /// Hours after which `doctor` reports the last good backup as overdue.
    #[config(default = "26")]
    pub max_age_hours: u32,
    /// Connection URL of a role that reads every tenant's rows (BYPASSRLS, or a superuser), for
    /// `pg_dump` and the backup's row counts: under the row-level security of the memory tables
    /// the login role sees one tenant at a time, and `pg_dump` refuses such tables
    /// (docs/tenancy.md, "Backups"). Unset: `database.url`, which works only for a role that
    /// bypasses row-level security.
    #[config(redact = "url")]
    pub database_url: Option<SecretString>,
}

#[derive(Debug, Config)]
pub struct SearchConfig {
    /// Hits returned when a search names no limit.
    #[config(default = "10")]
    pub default_limit: u32,
    /// Most hits a search may ask for.
    #[config(default = "50")]
    pub max_limit: u32,
    /// Languages whose word forms a search also matches, besides the exact words (which rank first): any of `english`, `german` (the forms migration V2 stores); `[]` for exact words only.
    #[config(default = "[\"english\", \"german\"]")]
    pub languages: Vec<String>,
    /// Recency boost, 0 to 1: a memory stored now scores up to 1 + this times its relevance, the boost halving every `recency_half_life_days`; 0 leaves recency a tie-breaker only (equal scores: newest first).
    #[config(default = "0.1")]
    pub recency_weight: f64,
    /// Half-life of the recency boost, in days (more than 0).
    #[config(default = "30")]
    pub recency_half_life_days: f64,
    /// How much an insight's importance (0 to 1) weighs, 0 to 1: its score is multiplied by 1 + this × (importance − 0.5).
    #[config(default = "0.2")]
    pub importance_weight: f64,
}

#[derive(Debug, Config)]
#[config(validate = validate_telemetry)]
pub struct TelemetryConfig {
    /// Prometheus metrics at `GET /metrics`.
    #[config(section)]
    pub metrics: MetricsConfig,
    /// OpenTelemetry traces exported over OTLP/HTTP.
    #[config(section)]
    pub traces: TracesConfig,
}

#[derive(Debug, Config)]
pub struct MetricsConfig {
    /// Whether `GET /metrics` is served (off in production unless set).
    #[config(default = "true")]
    pub enabled: bool,
    /// A listener of its own for `GET /metrics`, without authentication (keep it on loopback or a
    /// scrape network); unset: served on the main HTTP listener, behind the bearer token.
    pub bind: Option<SocketAddr>,
}

#[derive(Debug, Config)]
pub struct TracesConfig {
    /// OTLP/HTTP (protobuf) collector URL, e.g. `http://127.0.0.1:4318` (`/v1/traces` is added when
    /// the URL has no path); unset: no traces. `https` is required in production unless loopback.
    pub endpoint: Option<String>,
    /// Share of calls whose traces are kept, from 0 to 1 (failed calls are always kept); SIGHUP
    /// applies a new value.
    #[config(default = "1.0")]
    pub sample_ratio: f64,
}

/// Shortest bearer token accepted in staging and production.
const MIN_TOKEN_CHARS: usize = 16;

fn validate_server(server: &ServerConfig, v: &mut Validator<'_>) {
    let env = v.environment();
    if !server.auth.required {
        if env.is_strict() {
            v.error(
                "auth.required",
                format!("authentication cannot be disabled in {env}"),
            );
        } else if !server.http.bind.ip().is_loopback() {
            v.error(
                "auth.required",
                format!("authentication cannot be disabled while server.http.bind ({}) is not a loopback address", server.http.bind),
            );
        }
    } else if server.transport == Transport::Http {
        // Over stdio the client launched us: there is no HTTP request to authenticate.
        let other_credentials = server.auth.keys_file.is_some() || server.auth.jwt.issuer.is_some();
        match &server.auth.token {
            None if other_credentials => {}
            None => v.error("auth.token", "required while server.auth.required is true; set MCP_AUTH_TOKEN, MCP_AUTH_TOKEN_FILE or credential mcp-auth-token (or use server.auth.keys_file or server.auth.jwt)"),
            Some(token) if token.expose_secret().chars().count() < MIN_TOKEN_CHARS => {
                v.strict("auth.token", format!("shorter than {MIN_TOKEN_CHARS} characters; generate one with `openssl rand -hex 32`"))
            }
            Some(token) => {
                if let Some(weakness) = config_core::token_weakness(token.expose_secret()) {
                    v.strict("auth.token", weakness);
                }
            }
        }
        for (n, previous) in server
            .auth
            .previous_tokens
            .iter()
            .flat_map(|p| p.0.iter())
            .enumerate()
        {
            if let Some(weakness) = config_core::token_weakness(previous.token.expose_secret()) {
                v.strict(
                    "auth.previous_tokens",
                    format!("entry {}: {weakness}", n + 1),
                );
            }
        }
    }
    crate::auth::setup::validate(server, v);
    if env == config_core::Environment::Production {
        for origin in &server.http.allowed_origins {
            let origin = origin.trim();
            let loopback = ["http://localhost", "http://127.0.0.1", "http://[::1]"]
                .iter()
                .any(|l| origin == *l || origin.starts_with(&format!("{l}:")));
            if origin.starts_with("http://") && !loopback {
                v.warning(
                    "http.allowed_origins",
                    format!("{origin} is a plain http:// origin: pages from it travel unencrypted and can be altered on the way; list its https:// form"),
                );
            }
        }
    }
    if env == config_core::Environment::Production
        && server.http.allowed_origins.iter().any(|o| o.trim() == "*")
    {
        v.error(
            "http.allowed_origins",
            "a wildcard origin is not allowed in production; list the origins",
        );
    }
    if server.rate_limit.requests_per_minute == 0 {
        v.error("rate_limit.requests_per_minute", "must be at least 1");
    }
    if server.rate_limit.failed_auth_per_minute == 0 {
        v.error("rate_limit.failed_auth_per_minute", "must be at least 1");
    }
    let http = &server.http;
    for (key, value) in [
        ("http.max_body_bytes", http.max_body_bytes as u64),
        ("http.request_timeout_secs", http.request_timeout_secs),
        ("http.max_connections", http.max_connections as u64),
        (
            "http.header_read_timeout_secs",
            http.header_read_timeout_secs,
        ),
        ("http.idle_timeout_secs", http.idle_timeout_secs),
        ("http.body_read_timeout_secs", http.body_read_timeout_secs),
        ("http.max_in_flight", http.max_in_flight as u64),
    ] {
        if value == 0 {
            v.error(key, "must be at least 1");
        }
    }
    if let Some(index) = http
        .trusted_proxies
        .iter()
        .position(|proxy| proxy.parse::<std::net::IpAddr>().is_err())
    {
        v.error(
            "http.trusted_proxies",
            format!(
                "entry {} is not an IP address such as 127.0.0.1 or ::1",
                index + 1
            ),
        );
    }
    if http.max_buffered_body_bytes < http.max_body_bytes {
        v.error(
            "http.max_buffered_body_bytes",
            format!(
                "must be at least server.http.max_body_bytes ({}), or a body of the largest accepted size could never be read",
                http.max_body_bytes
            ),
        );
    }
}

fn validate_logging(logging: &LoggingConfig, v: &mut Validator<'_>) {
    if v.environment() != config_core::Environment::Production {
        return;
    }
    if logging.log_payloads {
        v.error(
            "log_payloads",
            "memory contents and tool arguments are personal data and are never logged in production; remove the setting (or set it to false)",
        );
    }
    if logging.level == LogLevel::Trace {
        v.warning(
            "level",
            "trace logs every SQL statement and the MCP library's protocol messages (client and session metadata) in production; use info, or debug for a short investigation",
        );
    }
}

fn validate_memory(memory: &MemoryConfig, v: &mut Validator<'_>) {
    if let Err(err) = crate::tenancy::Tenant::new(memory.tenant.as_str()) {
        v.error("tenant", err.to_string());
    }
    let search = &memory.search;
    if search.max_limit == 0 || search.default_limit == 0 || search.default_limit > search.max_limit
    {
        v.error(
            "search.default_limit",
            format!(
                "must be between 1 and search.max_limit ({})",
                search.max_limit
            ),
        );
    }
    for (index, language) in search.languages.iter().enumerate() {
        if !crate::memory::SEARCH_LANGUAGES.contains(&language.as_str()) {
            v.error(
                &format!("search.languages[{index}]"),
                format!(
                    "must be one of {} (the word forms migration V2 stores)",
                    crate::memory::SEARCH_LANGUAGES.join(", ")
                ),
            );
        }
    }
    if !(0.0..=1.0).contains(&search.recency_weight) {
        v.error("search.recency_weight", "must be from 0 to 1");
    }
    if !(search.recency_half_life_days.is_finite() && search.recency_half_life_days > 0.0) {
        v.error("search.recency_half_life_days", "must be more than 0");
    }
    if !(0.0..=1.0).contains(&search.importance_weight) {
        v.error("search.importance_weight", "must be from 0 to 1");
    }
    if memory.max_content_bytes == 0 {
        v.error("max_content_bytes", "must be at least 1");
    }
    let retention = &memory.retention;
    if retention.interval_secs == 0 {
        v.error("retention.interval_secs", "must be at least 1");
    }
    if !(1..=100_000).contains(&retention.batch_size) {
        v.error("retention.batch_size", "must be between 1 and 100000");
    }
    let batch = &memory.write_batch;
    if !(1..=1000).contains(&batch.max_batch) {
        v.error("write_batch.max_batch", "must be between 1 and 1000");
    }
    if batch.max_wait_ms > 100 {
        v.error("write_batch.max_wait_ms", "must be between 0 and 100");
    }
    if batch.queue < batch.max_batch.max(1) || batch.queue > 1_000_000 {
        v.error(
            "write_batch.queue",
            format!(
                "must be between write_batch.max_batch ({}) and 1000000",
                batch.max_batch
            ),
        );
    }
    if !(1..=16).contains(&batch.writers) {
        v.error("write_batch.writers", "must be between 1 and 16");
    }
}

fn validate_backup(backup: &BackupConfig, v: &mut Validator<'_>) {
    if backup.keep_min == 0 {
        v.error(
            "keep_min",
            "must be at least 1: pruning must never delete the last verified backup",
        );
    }
    if backup.dir.trim().is_empty() {
        v.error("dir", "must name a directory");
    }
    if backup.max_age_hours == 0 {
        v.error("max_age_hours", "must be at least 1");
    }
}

fn validate_telemetry(telemetry: &TelemetryConfig, v: &mut Validator<'_>) {
    if let Some(bind) = telemetry.metrics.bind
        && !telemetry.metrics.enabled
    {
        v.warning(
            "metrics.bind",
            format!("set to {bind}, but telemetry.metrics.enabled is false: no metrics are served; set it to true"),
        );
    }
    let ratio = telemetry.traces.sample_ratio;
    if !(0.0..=1.0).contains(&ratio) {
        v.error(
            "traces.sample_ratio",
            "must be from 0 to 1 (0.1 keeps a tenth of the traces)",
        );
    }
    if let Some(endpoint) = &telemetry.traces.endpoint
        && let Err(problem) = check_otlp_endpoint(endpoint, v.environment())
    {
        v.error("traces.endpoint", problem);
    }
}

/// An OTLP endpoint must be an absolute `http`/`https` URL with a host; in production plain
/// `http` only to a loopback collector. The message never quotes the URL (it may carry a token).
pub fn check_otlp_endpoint(
    endpoint: &str,
    environment: config_core::Environment,
) -> Result<(), String> {
    let uri: axum::http::Uri = endpoint
        .trim()
        .parse()
        .map_err(|_| "is not a URL; expected e.g. http://127.0.0.1:4318".to_owned())?;
    let host = uri
        .host()
        .ok_or_else(|| "needs a scheme and a host, e.g. http://127.0.0.1:4318".to_owned())?;
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if loopback || environment != config_core::Environment::Production => Ok(()),
        Some("http") => Err(
            "must use https in production unless the collector is on loopback (127.0.0.1, ::1, localhost)"
                .to_owned(),
        ),
        _ => Err("must be an http or https URL".to_owned()),
    }
}

/// Where and how to load: the command-line part of [`LoadOptions`].
#[derive(Debug, Clone)]
pub struct ConfigSource {
    /// Directory holding `config/config.yaml` and the `.env*` files.
    pub root: PathBuf,
    /// `--env`, if given.
    pub environment_flag: Option<String>,
}

/// Loads the application configuration from `source` and the given process environment.
pub fn load(source: &ConfigSource, env: &EnvSnapshot) -> Result<Loaded<AppConfig>, LoadFailure> {
    config_core::load::<AppConfig>(&options(source, env))
}

/// The same options, for commands that want the resolution even when extraction fails.
pub fn options<'a>(source: &'a ConfigSource, env: &'a EnvSnapshot) -> LoadOptions<'a> {
    LoadOptions {
        root: &source.root,
        config_file: Path::new(CONFIG_FILE),
        prefix: ENV_PREFIX,
        environment_var: ENVIRONMENT_VAR,
        environment_flag: source.environment_flag.as_deref(),
        env,
    }
}

/// The `.env.template` the schema implies; the committed file must equal it.
pub fn env_template() -> String {
    let schema = config_core::Schema::of::<AppConfig>(ENV_PREFIX);
    config_core::env_template(
        &schema,
        "Every variable cognitive-memory-mcp reads, generated from its configuration schema by\n\
         `cognitive-memory-mcp config template`; do not edit by hand (a test compares them).\n\
         Copy it to .env.<environment> (development, test, staging, production), chmod 600, fill it in,\n\
         and never commit the copy. Variables override config/config.yaml; the process environment\n\
         overrides these files. Lists are JSON arrays. Secrets may instead come from NAME_FILE=/path\n\
         or a systemd credential ($CREDENTIALS_DIRECTORY/<name>).",
    )
}

/// `docs/configuration.md`: every key with its effective default in each environment (from the
/// built-in defaults and `config/config.yaml` under `yaml_root`, nothing else), its variables,
/// whether it is secret, and its description. `cargo xtask docs` writes it; a test compares.
pub fn reference_markdown(yaml_root: &Path) -> Result<String, String> {
    use std::fmt::Write as _;
    let empty = EnvSnapshot::default();
    let mut per_environment = Vec::new();
    for environment in config_core::Environment::ALL {
        let source = ConfigSource {
            root: yaml_root.to_path_buf(),
            environment_flag: Some(environment.as_str().to_owned()),
        };
        let resolution =
            config_core::resolve::<AppConfig>(&options(&source, &empty)).map_err(|report| {
                format!("config/config.yaml does not resolve for {environment}:\n{report}")
            })?;
        per_environment.push(resolution);
    }
    let schema = &per_environment[0].schema;
    let mut out = String::from(
        "# Configuration reference\n\n\
         Generated from the configuration schema and `config/config.yaml` by `cargo xtask docs`;\n\
         do not edit by hand (a test compares it with the generated text).\n\n\
         Values are layered, lowest first: built-in default < `config/config.yaml` root <\n\
         its environment section < `.env` < `.env.<environment>` < process environment < secret files\n\
         (`NAME_FILE=/path`, or `$CREDENTIALS_DIRECTORY/<credential>` under systemd).\n\
         `cognitive-memory-mcp --env <environment> config explain` shows each effective value and its source.\n\
         The columns per environment show the value before any `.env` file or variable; *(unset)* marks\n\
         a key that must be supplied where it is needed. Secrets are never shown.\n",
    );
    for section in &schema.sections {
        let keys: Vec<&config_core::KeySpec> = schema
            .keys
            .iter()
            .filter(|key| {
                key.path.rsplit_once('.').map(|(parent, _)| parent) == Some(section.path.as_str())
            })
            .collect();
        if keys.is_empty() {
            continue;
        }
        let _ = write!(
            out,
            "\n## `{}`\n\n{}\n\n| key | variables | development | test | staging | production |\n|---|---|---|---|---|---|\n",
            section.path, section.doc
        );
        for key in keys {
            let vars: Vec<String> = key.var_names().map(|var| format!("`{var}`")).collect();
            let mut cells = Vec::new();
            for resolution in &per_environment {
                let cell = match resolution.values.get(&key.path) {
                    _ if key.secret => "*(secret)*".to_owned(),
                    Some(resolved) => {
                        format!("`{}`", config_core::display_value(key, &resolved.value))
                    }
                    None => "*(unset)*".to_owned(),
                };
                cells.push(cell);
            }
            let secret = if key.secret {
                format!(
                    " Secret; also `{}_FILE` or credential `{}`.",
                    key.main_var(),
                    key.credential_name(ENV_PREFIX)
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "| `{}` — {} ({}){} | {} | {} |",
                key.path,
                key.doc,
                key.kind,
                secret,
                vars.join(", "),
                cells.join(" | ")
            );
        }
    }
    Ok(out)
}
