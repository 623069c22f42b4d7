//! The MCP server: six tools and three resources over the memory store, the same for stdio and
//! HTTP. rmcp handles both protocol eras (stateless 2026-07-28 and the legacy handshake).
//!
//! Tool failures a model can act on (bad arguments, unknown ids, database unavailable) are tool
//! results with `isError: true` naming the field; only malformed JSON-RPC is a protocol error.
//! Argument values never appear in error texts or logs unless `logging.log_payloads` allows it.

use std::sync::Arc;

use rmcp::handler::server::common::Extension;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::{ToolCallContext, schema_for_output};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListResourceTemplatesResult, ListResourcesResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Resource,
    ResourceContents, ResourceTemplate, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, tool, tool_router};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tracing::Instrument;

use crate::app::AppState;
use crate::auth::{Principal, scopes};
use crate::http::REQUEST_ID_HEADER;
use crate::memory::{
    Forget, ForgetReport, GetSession, MemoryError, SEARCH_TOOL_DESCRIPTION, SearchMemory,
    SearchResults, SearchStatus, SessionPage, StoreInsight, StoreRawDialogue, StoredInsight,
    StoredTurn,
};
use crate::telemetry::{self, Outcome};

/// The name clients show for this server.
pub const SERVER_NAME: &str = "cognitive-memory";

const INSTRUCTIONS: &str = "Long-term memory for conversations. Store each dialogue turn verbatim \
with store_raw_dialogue (one session_id per conversation), and store distilled, durable facts or \
preferences with store_insight, citing the turn ids they came from in source_ids. Before answering \
questions that may depend on earlier conversations, call search_memory (web-search syntax: \
\"exact phrase\", or, -excluded). get_session replays a conversation; forget erases a session or \
single items when the user asks. memory_status tells which environment and database you are using.";

const STATUS_URI: &str = "memory://status";
const RECENT_INSIGHTS_URI: &str = "memory://insights/recent";
const SESSION_URI_PREFIX: &str = "memory://sessions/";
/// The tools' names: the only tool names telemetry records (a client may call any name).
pub(crate) const TOOLS: [&str; 6] = [
    "store_raw_dialogue",
    "store_insight",
    "search_memory",
    "get_session",
    "forget",
    "memory_status",
];
/// Insights listed by `memory://insights/recent`.
const RECENT_INSIGHTS: u32 = 20;

/// What `memory_status` and `memory://status` report. Never credentials.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct MemoryStatus {
    /// Whose memories this caller reads and writes; the counts below are this tenant's.
    pub tenant: String,
    /// Who the caller is, as authentication established it (`token`, `key:<name>`,
    /// `jwt:<sub>`, `stdio`, `anonymous@<address>`).
    pub principal: String,
    /// The scopes the caller holds.
    pub scopes: Vec<String>,
    /// Whether PostgreSQL's row-level security binds the memory tables (no statement sees
    /// another tenant's rows).
    pub row_level_security: bool,
    /// Whether the full-text indexes serve searches under row-level security (the search
    /// operators are LEAKPROOF; docs/tenancy.md).
    pub search_indexes_under_rls: bool,
    /// The environment this server runs as (development, test, staging, production).
    pub environment: String,
    /// Name of the PostgreSQL database holding the memories.
    pub database: String,
    /// Version of the newest applied schema migration.
    pub schema_version: Option<i32>,
    /// Stored raw dialogue turns.
    pub raw_turns: u64,
    /// Stored insights.
    pub insights: u64,
    /// Version of this server.
    pub server_version: String,
    /// The last good backup (`cognitive-memory-mcp backup`) and the last attempt.
    pub backup: crate::lifecycle::BackupStatus,
    /// The retention policy and what its last run removed.
    pub retention: crate::lifecycle::RetentionStatus,
    /// How searches rank: word-form languages, recency and importance weights.
    pub search: SearchStatus,
}

#[derive(Debug, Clone)]
pub struct MemoryServer {
    app: Arc<AppState>,
    tool_router: ToolRouter<Self>,
    /// The principal of a stdio session; over HTTP each request brings its own.
    stdio: Option<Principal>,
}

#[tool_router]
impl MemoryServer {
    /// The server behind HTTP: each call acts for the principal the guard attached.
    pub fn new(app: Arc<AppState>) -> Self {
        Self {
            app,
            tool_router: Self::tool_router(),
            stdio: None,
        }
    }

    /// The server of a stdio session, acting for `principal` throughout.
    pub fn stdio(app: Arc<AppState>, principal: Principal) -> Self {
        Self {
            stdio: Some(principal),
            ..Self::new(app)
        }
    }

    #[tool(
        description = "Store one raw dialogue turn (layer L0) verbatim. Returns its id, which insights can cite.",
        output_schema = schema_for_output::<StoredTurn>()
    )]
    async fn store_raw_dialogue(
        &self,
        Extension(principal): Extension<Principal>,
        Parameters(params): Parameters<StoreRawDialogue>,
    ) -> CallToolResult {
        respond(
            self.app.store.store_raw(principal.tenant(), params).await,
            |turn| format!("stored turn {} in session {}", turn.id, turn.session_id),
        )
    }

    #[tool(
        description = "Store a distilled insight (layer L2): a durable fact, preference or decision, optionally citing the raw turns (source_ids) it came from.",
        output_schema = schema_for_output::<StoredInsight>()
    )]
    async fn store_insight(
        &self,
        Extension(principal): Extension<Principal>,
        Parameters(params): Parameters<StoreInsight>,
    ) -> CallToolResult {
        respond(
            self.app
                .store
                .store_insight(principal.tenant(), params)
                .await,
            |insight| format!("stored insight {}", insight.id),
        )
    }

    #[tool(
        description = SEARCH_TOOL_DESCRIPTION,
        output_schema = schema_for_output::<SearchResults>()
    )]
    async fn search_memory(
        &self,
        Extension(principal): Extension<Principal>,
        Parameters(params): Parameters<SearchMemory>,
    ) -> CallToolResult {
        respond(
            self.app.store.search(principal.tenant(), params).await,
            |results| format!("{} hit(s)", results.hits.len()),
        )
    }

    #[tool(
        description = "The turns of one session in chronological order, newest page first; pass next_before_id as before_id for older turns.",
        output_schema = schema_for_output::<SessionPage>()
    )]
    async fn get_session(
        &self,
        Extension(principal): Extension<Principal>,
        Parameters(params): Parameters<GetSession>,
    ) -> CallToolResult {
        respond(
            self.app.store.get_session(principal.tenant(), params).await,
            |page| format!("{} turn(s)", page.turns.len()),
        )
    }

    #[tool(
        description = "Erase memories (right to erasure): a whole session, or listed items. Insights that cited erased turns lose those references.",
        output_schema = schema_for_output::<ForgetReport>()
    )]
    async fn forget(
        &self,
        Extension(principal): Extension<Principal>,
        Parameters(params): Parameters<Forget>,
    ) -> CallToolResult {
        respond(
            self.app.store.forget(principal.tenant(), params).await,
            |report| {
                format!(
                    "deleted {} turn(s) and {} insight(s); {} insight(s) lost references",
                    report.raw_deleted, report.insights_deleted, report.insights_unlinked
                )
            },
        )
    }

    #[tool(
        description = "Which environment and database this memory server uses, its schema version and how much it holds.",
        output_schema = schema_for_output::<MemoryStatus>()
    )]
    async fn memory_status(&self, Extension(principal): Extension<Principal>) -> CallToolResult {
        respond(self.status(&principal).await, |status| {
            format!(
                "{} environment, database {}, tenant {}: {} turn(s), {} insight(s)",
                status.environment,
                status.database,
                status.tenant,
                status.raw_turns,
                status.insights
            )
        })
    }
}

impl MemoryServer {
    /// Who a call acts for: the principal the HTTP guard put into the request's extensions, or
    /// the stdio session's. An HTTP request without one never passed the guard: refused.
    fn principal(&self, context: &RequestContext<RoleServer>) -> Result<Principal, String> {
        if let Some(parts) = context.extensions.get::<axum::http::request::Parts>() {
            return parts
                .extensions
                .get::<Principal>()
                .cloned()
                .ok_or_else(|| "unauthenticated request".to_owned());
        }
        self.stdio
            .clone()
            .ok_or_else(|| "unauthenticated request".to_owned())
    }

    async fn status(&self, principal: &Principal) -> Result<MemoryStatus, MemoryError> {
        let store = self.app.store.status(principal.tenant()).await?;
        let lifecycle = crate::lifecycle::read_status(self.app.store.pool()).await?;
        let search = self.app.store.search_status();
        Ok(MemoryStatus {
            tenant: store.tenant,
            principal: principal.name().to_owned(),
            scopes: principal
                .scopes()
                .names()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            row_level_security: store.row_level_security,
            search_indexes_under_rls: store.search_indexes_under_rls,
            environment: self.app.environment.as_str().to_owned(),
            database: store.database,
            schema_version: store.schema_version,
            raw_turns: store.raw_turns,
            insights: store.insights,
            server_version: env!("CARGO_PKG_VERSION").to_owned(),
            backup: lifecycle.backup,
            retention: lifecycle.retention,
            search,
        })
    }

    /// Checks a call's arguments against its tool's parameter type, so a wrong type or an unknown
    /// enum value becomes a tool error naming the field instead of a protocol error.
    fn argument_error(&self, request: &CallToolRequestParams) -> Option<String> {
        let arguments = Value::Object(request.arguments.clone().unwrap_or_default());
        match request.name.as_ref() {
            "store_raw_dialogue" => check_arguments::<StoreRawDialogue>(arguments),
            "store_insight" => check_arguments::<StoreInsight>(arguments),
            "search_memory" => check_arguments::<SearchMemory>(arguments),
            "get_session" => check_arguments::<GetSession>(arguments),
            "forget" => check_arguments::<Forget>(arguments),
            _ => None,
        }
    }

    async fn read(&self, uri: &str, principal: &Principal) -> Result<Value, ErrorData> {
        principal
            .require(scopes::RESOURCES, "resources/read")
            .map_err(|message| {
                tracing::info!(%message, "resource read refused");
                ErrorData::invalid_request(message, None)
            })?;
        let result = if uri == STATUS_URI {
            self.status(principal).await.map(to_json)
        } else if uri == RECENT_INSIGHTS_URI {
            self.app
                .store
                .recent_insights(principal.tenant(), RECENT_INSIGHTS)
                .await
                .map(to_json)
        } else if let Some(session_id) = uri.strip_prefix(SESSION_URI_PREFIX) {
            let session_id = percent_decode(session_id).ok_or_else(|| {
                ErrorData::invalid_params("the session id in the URI is not valid UTF-8", None)
            })?;
            self.app
                .store
                .get_session(
                    principal.tenant(),
                    GetSession {
                        session_id,
                        limit: None,
                        before_id: None,
                    },
                )
                .await
                .map(to_json)
        } else {
            return Err(ErrorData::resource_not_found(
                format!("no resource {uri}; see resources/list and resources/templates/list"),
                None,
            ));
        };
        result.map_err(|err| match err {
            MemoryError::Invalid { .. } => ErrorData::invalid_params(err.to_string(), None),
            _ => ErrorData::internal_error(err.to_string(), None),
        })
    }
}

impl ServerHandler for MemoryServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(Implementation::new(SERVER_NAME, env!("CARGO_PKG_VERSION")))
        .with_instructions(INSTRUCTIONS)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let request_id = context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.headers.get(REQUEST_ID_HEADER))
            .and_then(|value| value.to_str().ok())
            .map_or_else(|| format!("rpc-{}", context.id), str::to_owned);
        let span = tracing::info_span!("tool", request_id = %request_id, tool = %request.name);
        let tool = TOOLS.into_iter().find(|tool| *tool == request.name);
        let call = telemetry::call_span("tools/call", tool, request.meta.as_ref(), &context);
        let handled = async move {
            if self.app.log_payloads() {
                tracing::debug!(arguments = ?request.arguments, "tool call");
            } else {
                tracing::debug!("tool call");
            }
            let principal = match self.principal(&context) {
                Ok(principal) => principal,
                Err(message) => {
                    tracing::warn!(%message, "tool call refused");
                    return Ok(CallToolResult::error(vec![ContentBlock::text(message)]).into());
                }
            };
            if let Some(scope) = scopes::for_tool(&request.name)
                && let Err(message) = principal.require(scope, &request.name)
            {
                tracing::info!(%message, "tool call refused");
                return Ok(CallToolResult::error(vec![ContentBlock::text(message)]).into());
            }
            if let Some(message) = self.argument_error(&request) {
                tracing::info!(%message, "tool call refused");
                return Ok(CallToolResult::error(vec![ContentBlock::text(message)]).into());
            }
            context.extensions.insert(principal);
            let context = ToolCallContext::new(self, request, context);
            self.tool_router.call(context).await
        }
        .instrument(span);
        telemetry::observe(call, handled, |answer| match answer {
            Ok(CallToolResponse::Complete(result)) if result.is_error == Some(true) => {
                (Outcome::ToolError, Some("tool_error"))
            }
            Ok(_) => (Outcome::Ok, None),
            Err(err) => (
                Outcome::Error,
                Some(telemetry::jsonrpc_error_type(err.code)),
            ),
        })
        .await
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListToolsResult, ErrorData> {
        Ok(rmcp::model::ListToolsResult::with_all_items(
            self.tool_router.list_all(),
        ))
    }

    fn get_tool(&self, name: &str) -> Option<rmcp::model::Tool> {
        self.tool_router.get(name).cloned()
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(ListResourcesResult::with_all_items(vec![
            Resource::new(STATUS_URI, "status")
                .with_description("Environment, database, schema version and counts")
                .with_mime_type("application/json"),
            Resource::new(RECENT_INSIGHTS_URI, "recent-insights")
                .with_description(format!("The {RECENT_INSIGHTS} newest insights"))
                .with_mime_type("application/json"),
        ]))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new(format!("{SESSION_URI_PREFIX}{{session_id}}"), "session")
                .with_description("The newest turns of one session, in chronological order")
                .with_mime_type("application/json"),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let call = telemetry::call_span("resources/read", None, request.meta.as_ref(), &context);
        let principal = self
            .principal(&context)
            .map_err(|message| ErrorData::invalid_request(message, None))?;
        let reading = self.read(&request.uri, &principal);
        let value = telemetry::observe(call, reading, |answer| match answer {
            Ok(_) => (Outcome::Ok, None),
            Err(err) => (
                Outcome::Error,
                Some(telemetry::jsonrpc_error_type(err.code)),
            ),
        })
        .await?;
        Ok(ReadResourceResult::new(vec![
            ResourceContents::text(value.to_string(), request.uri)
                .with_mime_type("application/json"),
        ])
        .into())
    }
}

/// A tool's answer: structured content plus a one-line summary, or a tool error.
fn respond<T: Serialize>(
    result: Result<T, MemoryError>,
    summary: impl FnOnce(&T) -> String,
) -> CallToolResult {
    match result {
        Ok(value) => {
            let text = summary(&value);
            let mut result = CallToolResult::structured(to_json(value));
            result.content = vec![ContentBlock::text(text)];
            result
        }
        Err(err) => {
            if matches!(err, MemoryError::Database(_)) {
                tracing::error!(error = %err, "tool failed");
            } else {
                tracing::info!(error = %err, "tool refused");
            }
            CallToolResult::error(vec![ContentBlock::text(err.to_string())])
        }
    }
}

fn to_json<T: Serialize>(value: T) -> Value {
    serde_json::to_value(value).unwrap_or_else(|err| {
        // Our result types are plain data; this cannot fail, but never panic over it.
        Value::Object(Map::from_iter([(
            "error".to_owned(),
            Value::String(format!("cannot encode the result: {err}")),
        )]))
    })
}

fn check_arguments<T: DeserializeOwned>(arguments: Value) -> Option<String> {
    let error = serde_path_to_error::deserialize::<_, T>(arguments).err()?;
    let path = error.path().to_string();
    let reason = describe_without_values(&error.inner().to_string());
    Some(if path == "." {
        format!("invalid arguments: {reason}")
    } else {
        format!("invalid argument `{path}`: {reason}")
    })
}

/// serde's messages quote the offending value ("invalid type: string \"…\""); arguments may be
/// personal data, so keep only what was expected.
fn describe_without_values(message: &str) -> String {
    let message = message
        .split(" at line ")
        .next()
        .unwrap_or(message)
        .trim_end();
    let kinds = [
        ("invalid type:", "wrong type"),
        ("invalid value:", "invalid value"),
        ("unknown variant", "unknown value"),
        ("invalid length", "wrong length"),
    ];
    for (prefix, kind) in kinds {
        if message.starts_with(prefix) {
            return match message.split_once(", expected ") {
                Some((_, expected)) => format!("{kind}, expected {expected}"),
                None => kind.to_owned(),
            };
        }
    }
    message.to_owned()
}

/// Decodes `%XX` escapes of a URI segment.
fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%'
            && let Some(hex) = segment.get(index + 1..index + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            decoded.push(byte);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telemetry_knows_every_tool_by_name() {
        let mut routed: Vec<String> = MemoryServer::tool_router()
            .list_all()
            .into_iter()
            .map(|tool| tool.name.into_owned())
            .collect();
        routed.sort();
        let mut named: Vec<&str> = TOOLS.to_vec();
        named.sort();
        assert_eq!(routed, named);
    }

    #[test]
    fn argument_errors_name_the_field_but_not_the_value() {
        let message = check_arguments::<StoreRawDialogue>(serde_json::json!({
            "session_id": "s", "speaker": "robot-canary", "content": "x"
        }))
        .unwrap();
        assert!(
            message.starts_with("invalid argument `speaker`: unknown value"),
            "{message}"
        );
        assert!(!message.contains("robot-canary"), "{message}");

        let message = check_arguments::<StoreRawDialogue>(serde_json::json!({
            "session_id": {"secret": "canary-value"}, "speaker": "user", "content": "x"
        }))
        .unwrap();
        assert!(
            message.starts_with("invalid argument `session_id`: wrong type"),
            "{message}"
        );
        assert!(!message.contains("canary-value"), "{message}");

        let message =
            check_arguments::<StoreRawDialogue>(serde_json::json!({"speaker": "user"})).unwrap();
        assert!(message.contains("missing field `session_id`"), "{message}");
    }

    #[test]
    fn session_ids_in_uris_are_percent_decoded() {
        assert_eq!(
            percent_decode("chat%2F42%20a").as_deref(),
            Some("chat/42 a")
        );
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        assert_eq!(percent_decode("bad%zz").as_deref(), Some("bad%zz"));
        assert_eq!(percent_decode("%ff"), None);
    }
}
