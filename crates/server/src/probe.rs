//! `cognitive-memory-mcp health`: asks a running server's `/health` (or `/ready`) whether it is
//! well, for container health checks that have no curl or shell in the image.
//!
//! One HTTP/1.1 `GET` over a plain TCP connection, with a deadline; exit 0 on a 2xx answer, 1
//! otherwise, and exactly one line of output either way. The default address is the configured
//! `server.http.bind` (an unspecified address such as `0.0.0.0` is asked on loopback), read
//! without validating the rest of the configuration: a probe must not need or judge the
//! secrets, and must answer the same question as the server's own listener.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use config_core::{EnvSnapshot, RawValue};
use secrecy::ExposeSecret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cli::{Cli, HealthArgs};
use crate::config::{self, AppConfig};
use crate::exit;

/// The configuration key the default URL comes from.
const BIND_KEY: &str = "server.http.bind";
/// Most of an answer read: the status line and a small JSON body fit easily.
const MAX_ANSWER_BYTES: u64 = 16 * 1024;
/// Most of the body shown on the output line.
const MAX_SHOWN_BODY_CHARS: usize = 300;

/// Runs the probe and prints its one line; returns the exit code.
pub fn run(cli: &Cli, args: &HealthArgs, env: &EnvSnapshot) -> u8 {
    let endpoint = if args.ready { "/ready" } else { "/health" };
    let target = match &args.url {
        Some(url) => Target::from_url(url, endpoint),
        None => configured_bind(cli, env).map(|bind| Target::from_bind(bind, endpoint)),
    };
    let target = match target {
        Ok(target) => target,
        Err(message) => {
            println!("unhealthy: {message}");
            return exit::FAILURE;
        }
    };
    let timeout = Duration::from_secs(args.timeout_secs.max(1));
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            println!("unhealthy: cannot start the async runtime: {err}");
            return exit::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        tokio::time::timeout(timeout, get(&target))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {}s", timeout.as_secs())))
    });
    let what = if args.ready { "ready" } else { "healthy" };
    match outcome {
        Ok(answer) if (200..300).contains(&answer.status) => {
            println!("{what}: {} {} {}", target.url(), answer.status, answer.body);
            exit::OK
        }
        Ok(answer) => {
            println!(
                "not {what}: {} {} {}",
                target.url(),
                answer.status,
                answer.body
            );
            exit::FAILURE
        }
        Err(message) => {
            println!("not {what}: {}: {message}", target.url());
            exit::FAILURE
        }
    }
}

/// `server.http.bind` as the configuration resolves it for the selected environment.
fn configured_bind(cli: &Cli, env: &EnvSnapshot) -> Result<SocketAddr, String> {
    let source = cli.config_source();
    let resolution = config_core::resolve::<AppConfig>(&config::options(&source, env))
        .map_err(|_| {
            format!("the configuration does not resolve, so {BIND_KEY} is unknown; run `config check`, or pass --url")
        })?;
    let text = match resolution.values.get(BIND_KEY).map(|r| &r.value) {
        Some(RawValue::Text(text)) => text.expose_secret().trim().to_owned(),
        _ => return Err(format!("{BIND_KEY} is not set; pass --url")),
    };
    text.parse::<SocketAddr>()
        .map_err(|_| format!("{BIND_KEY} is not an address and port (ADDR:PORT); pass --url"))
}

/// Where to send the request.
#[derive(Debug)]
struct Target {
    host: String,
    port: u16,
    path: String,
}

impl Target {
    fn from_bind(bind: SocketAddr, endpoint: &str) -> Self {
        let ip = match bind.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let host = match ip {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        };
        Target {
            host,
            port: bind.port(),
            path: endpoint.to_owned(),
        }
    }

    /// `--url http://host:port`: the server's base URL; the endpoint is appended to its path.
    fn from_url(text: &str, endpoint: &str) -> Result<Self, String> {
        let url = url::Url::parse(text)
            .map_err(|err| format!("--url is not a URL ({err}); expected http://HOST:PORT"))?;
        if url.scheme() != "http" {
            return Err(format!(
                "--url must be http:// (the probe speaks plain HTTP to a local listener), not {}://",
                url.scheme()
            ));
        }
        let host = match url.host() {
            Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
            Some(host) => host.to_string(),
            None => return Err("--url has no host; expected http://HOST:PORT".to_owned()),
        };
        let base = url.path().trim_end_matches('/');
        Ok(Target {
            host,
            port: url.port_or_known_default().unwrap_or(80),
            path: format!("{base}{endpoint}"),
        })
    }

    fn url(&self) -> String {
        format!("http://{}:{}{}", self.host, self.port, self.path)
    }
}

/// A parsed answer: the status code and the body on one line.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: String,
}

async fn get(target: &Target) -> Result<Answer, String> {
    let address = format!("{}:{}", target.host, target.port);
    let mut stream = TcpStream::connect(address.as_str())
        .await
        .map_err(|err| format!("cannot connect: {err}"))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {address}\r\nUser-Agent: cognitive-memory-mcp-health\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
        target.path
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|err| format!("cannot send the request: {err}"))?;
    let mut raw = Vec::new();
    stream
        .take(MAX_ANSWER_BYTES)
        .read_to_end(&mut raw)
        .await
        .map_err(|err| format!("cannot read the answer: {err}"))?;
    parse_answer(&raw)
}

fn parse_answer(raw: &[u8]) -> Result<Answer, String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status_line = head.lines().next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| "the answer is not HTTP/1.x".to_owned())?;
    let chunked = head.lines().any(|line| {
        line.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    let mut body: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if body.chars().count() > MAX_SHOWN_BODY_CHARS {
        body = body.chars().take(MAX_SHOWN_BODY_CHARS).collect::<String>() + "…";
    }
    Ok(Answer { status, body })
}

/// The data of a chunked body (sizes in hex, each chunk followed by CRLF).
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16);
        match size {
            Ok(size) if size > 0 && rest.len() >= size => {
                out.push_str(&rest[..size]);
                body = rest[size..].trim_start_matches("\r\n");
            }
            _ => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_bind_is_asked_on_loopback() {
        let target = Target::from_bind("0.0.0.0:8765".parse().unwrap(), "/ready");
        assert_eq!(target.url(), "http://127.0.0.1:8765/ready");
        let target = Target::from_bind("[::]:9000".parse().unwrap(), "/health");
        assert_eq!(target.url(), "http://[::1]:9000/health");
    }

    #[test]
    fn a_url_is_a_base_the_endpoint_is_appended_to() {
        let target = Target::from_url("http://localhost:1234/", "/ready").unwrap();
        assert_eq!(target.url(), "http://localhost:1234/ready");
        let target = Target::from_url("http://10.0.0.1/prefix", "/health").unwrap();
        assert_eq!(target.url(), "http://10.0.0.1:80/prefix/health");
        assert!(Target::from_url("https://x:1", "/ready").is_err());
        assert!(Target::from_url("not a url", "/ready").is_err());
    }

    #[test]
    fn answers_are_parsed_plain_and_chunked() {
        let plain = parse_answer(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 17\r\n\r\n{\"status\":\n\"x\"}",
        )
        .unwrap();
        assert_eq!(plain.status, 503);
        assert_eq!(plain.body, "{\"status\": \"x\"}");
        let chunked = parse_answer(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(chunked.status, 200);
        assert_eq!(chunked.body, "{\"a\":1}");
        assert!(parse_answer(b"SSH-2.0-OpenSSH").is_err());
    }
}
