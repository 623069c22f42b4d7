//! RFC 9728 Protected Resource Metadata and the `WWW-Authenticate` challenges (RFC 6750) that
//! point clients to it, as the MCP authorization specification asks of an OAuth resource server.
//!
//! The document is served (unauthenticated) at `/.well-known/oauth-protected-resource` and at the
//! path-inserted form for the endpoint, `/.well-known/oauth-protected-resource/mcp`; without
//! `server.auth.resource_url` neither exists (404), which tells clients not to try OAuth.

use axum::http::Uri;
use serde_json::{Value, json};

use crate::auth::scopes::Scopes;

/// The well-known path of the metadata (RFC 9728 §3).
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// The advertised resource and where its metadata lives.
#[derive(Debug, Clone)]
pub struct ResourceMetadata {
    /// `server.auth.resource_url`, e.g. `https://memory.example.com/mcp`.
    pub resource: String,
    /// `server.auth.authorization_servers` (issuer URLs).
    pub authorization_servers: Vec<String>,
    /// The URL clients fetch the metadata from: the well-known path inserted before the
    /// resource's path.
    pub metadata_url: String,
}

impl ResourceMetadata {
    /// From the configured resource URL (validated as an absolute http(s) URL).
    pub fn new(resource: &str, authorization_servers: &[String]) -> Option<Self> {
        let uri: Uri = resource.trim().parse().ok()?;
        let scheme = uri.scheme_str()?;
        let authority = uri.authority()?;
        let path = uri.path().trim_end_matches('/');
        Some(Self {
            resource: resource.trim().to_owned(),
            authorization_servers: authorization_servers.to_vec(),
            metadata_url: format!("{scheme}://{authority}{WELL_KNOWN}{path}"),
        })
    }

    /// The JSON document.
    pub fn document(&self) -> Value {
        json!({
            "resource": self.resource,
            "authorization_servers": self.authorization_servers,
            "scopes_supported": Scopes::ALL.names(),
            "bearer_methods_supported": ["header"],
            "resource_name": "cognitive-memory",
        })
    }
}

/// The `WWW-Authenticate` value of a 401: `invalid_token` when a token was presented (RFC 6750
/// §3.1: a request without credentials gets no error code), where the metadata is, and every
/// scope the server knows.
pub fn unauthorized_challenge(
    metadata: Option<&ResourceMetadata>,
    token_presented: bool,
) -> String {
    let mut parts = Vec::new();
    if token_presented {
        parts.push(r#"error="invalid_token""#.to_owned());
    }
    if let Some(metadata) = metadata {
        parts.push(format!(r#"resource_metadata="{}""#, metadata.metadata_url));
    }
    parts.push(format!(r#"scope="{}""#, Scopes::ALL));
    format!("Bearer {}", parts.join(", "))
}

/// The `WWW-Authenticate` value of a 403 for a token that holds none of `needed`.
pub fn insufficient_scope_challenge(metadata: Option<&ResourceMetadata>, needed: Scopes) -> String {
    let mut parts = vec![r#"error="insufficient_scope""#.to_owned()];
    if let Some(metadata) = metadata {
        parts.push(format!(r#"resource_metadata="{}""#, metadata.metadata_url));
    }
    parts.push(format!(r#"scope="{needed}""#));
    format!("Bearer {}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metadata_url_inserts_the_well_known_path_before_the_resource_path() {
        let metadata = ResourceMetadata::new(
            "https://memory.example.com/mcp",
            &["https://login.example".into()],
        )
        .unwrap();
        assert_eq!(
            metadata.metadata_url,
            "https://memory.example.com/.well-known/oauth-protected-resource/mcp"
        );
        let root = ResourceMetadata::new("https://memory.example.com", &[]).unwrap();
        assert_eq!(
            root.metadata_url,
            "https://memory.example.com/.well-known/oauth-protected-resource"
        );
        assert_eq!(
            unauthorized_challenge(Some(&metadata), true),
            r#"Bearer error="invalid_token", resource_metadata="https://memory.example.com/.well-known/oauth-protected-resource/mcp", scope="memory:read memory:write memory:forget""#
        );
        assert_eq!(
            unauthorized_challenge(None, false),
            r#"Bearer scope="memory:read memory:write memory:forget""#
        );
    }
}
