//! A minimal keep-alive HTTP/1.1 client for loopback load generation, and the MCP requests of
//! the modern protocol (2026-07-28) with the headers it requires.
//!
//! Hand-rolled on purpose: on a 2-core machine the load generator shares the CPU with the server
//! and PostgreSQL, so it must cost as little as possible per request.

use std::io;
use std::net::SocketAddr;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub const PROTOCOL_VERSION: &str = "2026-07-28";
/// Longest response head and body accepted (a search result is a few KiB).
const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// One answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// One connection to the server, reopened after an error or `Connection: close`.
#[derive(Debug)]
pub struct Client {
    addr: SocketAddr,
    token: String,
    conn: Option<BufReader<TcpStream>>,
    /// Connections opened so far.
    pub connects: u64,
}

impl Client {
    pub fn new(addr: SocketAddr, token: &str) -> Self {
        Client {
            addr,
            token: token.to_owned(),
            conn: None,
            connects: 0,
        }
    }

    /// `POST /mcp` with the modern headers for `method` (and `Mcp-Name` when given).
    pub async fn mcp(
        &mut self,
        method: &str,
        name: Option<&str>,
        body: &[u8],
    ) -> io::Result<Response> {
        let mut head = format!(
            "POST /mcp HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nAuthorization: Bearer {}\r\n\
             MCP-Protocol-Version: {PROTOCOL_VERSION}\r\nMcp-Method: {method}\r\n",
            self.addr, self.token
        );
        if let Some(name) = name {
            head.push_str("Mcp-Name: ");
            head.push_str(name);
            head.push_str("\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        self.exchange(head.as_bytes(), body).await
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str) -> io::Result<Response> {
        let head = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.addr);
        self.exchange(head.as_bytes(), &[]).await
    }

    /// `GET path` with the bearer token (e.g. `/metrics` on the main listener).
    pub async fn get_authorized(&mut self, path: &str) -> io::Result<Response> {
        let head = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\r\n",
            self.addr, self.token
        );
        self.exchange(head.as_bytes(), &[]).await
    }

    async fn exchange(&mut self, head: &[u8], body: &[u8]) -> io::Result<Response> {
        let result = self.try_exchange(head, body).await;
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    async fn try_exchange(&mut self, head: &[u8], body: &[u8]) -> io::Result<Response> {
        if self.conn.is_none() {
            let stream = TcpStream::connect(self.addr).await?;
            stream.set_nodelay(true)?;
            self.conn = Some(BufReader::with_capacity(16 * 1024, stream));
            self.connects += 1;
        }
        let conn = self.conn.as_mut().expect("connected above");
        let stream = conn.get_mut();
        if body.is_empty() {
            stream.write_all(head).await?;
        } else {
            let mut request = Vec::with_capacity(head.len() + body.len());
            request.extend_from_slice(head);
            request.extend_from_slice(body);
            stream.write_all(&request).await?;
        }
        let (status, length, chunked, close) = read_head(conn).await?;
        let body = if chunked {
            read_chunked(conn).await?
        } else if let Some(length) = length {
            if length > MAX_BODY_BYTES {
                return Err(invalid("response body too large"));
            }
            let mut body = vec![0; length];
            conn.read_exact(&mut body).await?;
            body
        } else {
            // Neither length nor chunked: the body ends with the connection.
            let mut body = Vec::new();
            conn.read_to_end(&mut body).await?;
            self.conn = None;
            body
        };
        if close {
            self.conn = None;
        }
        Ok(Response { status, body })
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// Status, `Content-Length`, chunked, `Connection: close`.
async fn read_head(
    conn: &mut BufReader<TcpStream>,
) -> io::Result<(u16, Option<usize>, bool, bool)> {
    let mut line = String::new();
    let mut total = 0;
    let mut status = None;
    let (mut length, mut chunked, mut close) = (None, false, false);
    loop {
        line.clear();
        let n = conn.read_line(&mut line).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a complete response",
            ));
        }
        total += n;
        if total > MAX_HEAD_BYTES {
            return Err(invalid("response head too large"));
        }
        let text = line.trim_end();
        if status.is_none() {
            let code = text
                .split(' ')
                .nth(1)
                .and_then(|code| code.parse::<u16>().ok())
                .ok_or_else(|| invalid("malformed status line"))?;
            status = Some(code);
            continue;
        }
        if text.is_empty() {
            break;
        }
        if let Some((name, value)) = text.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse().map_err(|_| invalid("bad Content-Length"))?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            }
        }
    }
    let status = status.ok_or_else(|| invalid("no status line"))?;
    // 1xx, 204 and 304 have no body.
    if status < 200 || status == 204 || status == 304 {
        length = Some(0);
    }
    Ok((status, length, chunked, close))
}

async fn read_chunked(conn: &mut BufReader<TcpStream>) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        conn.read_line(&mut line).await?;
        let size = line.trim().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size, 16).map_err(|_| invalid("bad chunk size"))?;
        if size == 0 {
            // Trailers, then the empty line.
            loop {
                line.clear();
                if conn.read_line(&mut line).await? == 0 || line.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        if body.len() + size > MAX_BODY_BYTES {
            return Err(invalid("response body too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        conn.read_exact(&mut body[start..]).await?;
        line.clear();
        conn.read_line(&mut line).await?;
    }
}

/// The `_meta` every modern request carries.
pub fn meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": PROTOCOL_VERSION,
        "io.modelcontextprotocol/clientInfo": {"name": "cargo-xtask-bench", "version": "0"},
        "io.modelcontextprotocol/clientCapabilities": {},
    })
}

/// The body of a modern `tools/call`.
pub fn tool_call_body(id: u64, tool: &str, arguments: Value) -> Vec<u8> {
    let body = json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments, "_meta": meta()},
    });
    serde_json::to_vec(&body).expect("a JSON value serializes")
}

/// What a tool call came back with.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The tool's structured result.
    Ok(Value),
    /// A tool error (`isError: true`) with its text.
    ToolError(String),
    /// A JSON-RPC error.
    RpcError(String),
    /// Any HTTP status other than 200.
    Status(u16),
    /// The body is not the JSON-RPC answer expected.
    Malformed,
}

impl Outcome {
    /// A short label for error counts.
    pub fn kind(&self) -> String {
        match self {
            Outcome::Ok(_) => "ok".to_owned(),
            Outcome::ToolError(text) => format!("tool error: {}", truncate(text, 60)),
            Outcome::RpcError(text) => format!("JSON-RPC error: {}", truncate(text, 60)),
            Outcome::Status(status) => format!("HTTP {status}"),
            Outcome::Malformed => "malformed answer".to_owned(),
        }
    }
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

/// Reads a `tools/call` answer.
pub fn outcome(response: &Response) -> Outcome {
    if response.status != 200 {
        return Outcome::Status(response.status);
    }
    let Ok(value) = serde_json::from_slice::<Value>(&response.body) else {
        return Outcome::Malformed;
    };
    if let Some(error) = value.get("error") {
        let message = error["message"].as_str().unwrap_or("").to_owned();
        return Outcome::RpcError(message);
    }
    let Some(result) = value.get("result") else {
        return Outcome::Malformed;
    };
    if result.get("isError").and_then(Value::as_bool) == Some(true) {
        let text = result["content"][0]["text"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        return Outcome::ToolError(text);
    }
    match result.get("structuredContent") {
        Some(content) => Outcome::Ok(content.clone()),
        None => Outcome::Malformed,
    }
}
