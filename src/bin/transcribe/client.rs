//! The connection to the server: the base URL, the keys, and the HTTP agent.
//!
//! It receives `--url`, `--api-key` and `--admin-key` from `main` and hands
//! the other modules ready requests and answers. Every HTTP failure is
//! turned into a [`CliError`] here, in one place: a refused connection, a
//! rejected key (401), audio the server cannot use (413/415/422), any other
//! error body of API.md (`{"error": {"code", "message"}}`).

use std::io::Read;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::error::{CliError, FailureKind};

/// How long connecting may take before the server counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest pause while reading an answer. A batch request waits for the
/// whole transcription, which for a long file on a real model takes a while.
pub const READ_TIMEOUT: Duration = Duration::from_secs(600);
/// The longest pause while sending a request body.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// How much of an error body that is not API.md's JSON is shown.
const ERROR_BODY_CHARS_MAX: usize = 200;

/// The server's address as given by `--url`: `http://host[:port][/prefix]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `http://host:port/prefix` without a trailing slash, for HTTP requests
    /// and messages.
    pub base: String,
    /// `host:port`, to open the WebSocket's TCP connection.
    pub authority: String,
    /// The path prefix (empty, or `/something` behind a proxy).
    pub prefix: String,
}

impl Endpoint {
    /// Parse `--url`. `ws://` is accepted as a synonym of `http://`.
    ///
    /// # Errors
    /// A usage error for `https://` (this client speaks plain HTTP), another
    /// scheme, credentials in the URL, or an empty host.
    pub fn parse(url: &str) -> Result<Endpoint, CliError> {
        let url = url.trim();
        let rest = if let Some(rest) = url.strip_prefix("http://") {
            rest
        } else if let Some(rest) = url.strip_prefix("ws://") {
            rest
        } else if url.starts_with("https://") || url.starts_with("wss://") {
            return Err(CliError::usage(format!(
                "--url {url}: this client speaks plain HTTP; use http:// (TLS belongs to a proxy in front of the server)"
            )));
        } else {
            return Err(CliError::usage(format!(
                "--url {url}: expected http://host[:port], e.g. http://127.0.0.1:8000"
            )));
        };
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(index) => (&rest[..index], &rest[index..]),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(CliError::usage(format!(
                "--url {url}: expected http://host[:port] (no credentials; use --api-key)"
            )));
        }
        if path.contains(['?', '#']) {
            return Err(CliError::usage(format!(
                "--url {url}: no query or fragment, only http://host[:port][/prefix]"
            )));
        }
        let authority = if has_port(authority) {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let prefix = path.trim_end_matches('/').to_string();
        Ok(Endpoint {
            base: format!("http://{authority}{prefix}"),
            authority,
            prefix,
        })
    }

    /// The HTTP URL of an API path (`/v1/...`).
    pub fn http_url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The WebSocket URL of an API path.
    pub fn ws_url(&self, path_and_query: &str) -> String {
        format!("ws://{}{}{path_and_query}", self.authority, self.prefix)
    }

    /// Open a TCP connection to the server, trying each address the host
    /// resolves to.
    ///
    /// # Errors
    /// A connect failure naming the URL and the reason.
    pub fn connect_tcp(&self) -> Result<TcpStream, CliError> {
        let addrs: Vec<SocketAddr> = self
            .authority
            .to_socket_addrs()
            .map_err(|error| self.unreachable(&format!("cannot resolve the host ({error})")))?
            .collect();
        let mut last_error = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(stream) => return Ok(stream),
                Err(error) => last_error = Some(error),
            }
        }
        let reason = match last_error {
            Some(error) => io_reason(&error),
            None => "the host has no address".to_string(),
        };
        Err(self.unreachable(&reason))
    }

    /// The connect failure for this server.
    pub fn unreachable(&self, reason: &str) -> CliError {
        let hint = if reason.contains("refused") {
            " (is the server running?)"
        } else {
            ""
        };
        CliError::new(
            FailureKind::Connect,
            format!("cannot connect to {}: {reason}{hint}", self.base),
        )
    }
}

/// Whether `host[:port]` (or `[v6][:port]`) names a port.
fn has_port(authority: &str) -> bool {
    let after_host = match authority.rfind(']') {
        Some(index) => &authority[index + 1..],
        None => authority,
    };
    after_host.contains(':')
}

/// A short, lower-case reason for an I/O failure ("connection refused").
pub fn io_reason(error: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match error.kind() {
        ErrorKind::ConnectionRefused => "connection refused".into(),
        ErrorKind::ConnectionReset => "connection reset by the server".into(),
        ErrorKind::TimedOut | ErrorKind::WouldBlock => "timed out".into(),
        ErrorKind::AddrNotAvailable => "address not available".into(),
        _ => {
            // Drop the "(os error N)" that std adds.
            let text = error.to_string();
            match text.find(" (os error") {
                Some(index) => text[..index].to_lowercase(),
                None => text,
            }
        }
    }
}

/// Which key a request carries, for the message when it is rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRole {
    /// `--api-key`: transcription.
    Api,
    /// `--admin-key`, or `--api-key` when no admin key is given: operators.
    Admin,
}

/// The server and the keys to present.
pub struct Client {
    pub endpoint: Endpoint,
    api_key: Option<String>,
    admin_key: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(endpoint: Endpoint, api_key: Option<String>, admin_key: Option<String>) -> Client {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(CONNECT_TIMEOUT)
            .timeout_read(READ_TIMEOUT)
            .timeout_write(WRITE_TIMEOUT)
            .redirects(0)
            .user_agent(concat!("transcribe/", env!("CARGO_PKG_VERSION")))
            .build();
        Client {
            endpoint,
            api_key: api_key.filter(|key| !key.is_empty()),
            admin_key: admin_key.filter(|key| !key.is_empty()),
            agent,
        }
    }

    /// The key a request of `role` carries: the admin key falls back to the
    /// API key.
    pub fn key(&self, role: KeyRole) -> Option<&str> {
        match role {
            KeyRole::Api => self.api_key.as_deref(),
            KeyRole::Admin => self.admin_key.as_deref().or(self.api_key.as_deref()),
        }
    }

    /// A request with the `Authorization` header for `role`.
    pub fn request(&self, method: &str, path: &str, role: KeyRole) -> ureq::Request {
        let request = self.agent.request(method, &self.endpoint.http_url(path));
        match self.key(role) {
            Some(key) => request.set("Authorization", &format!("Bearer {key}")),
            None => request,
        }
    }

    /// Send a request (with a body when given) and return the answer body of
    /// a 2xx answer.
    ///
    /// # Errors
    /// As [`Client::http_failure`] and [`Client::transport_failure`].
    pub fn call(
        &self,
        request: ureq::Request,
        body: Option<&[u8]>,
        role: KeyRole,
    ) -> Result<String, CliError> {
        let result = match body {
            Some(bytes) => request.send_bytes(bytes),
            None => request.call(),
        };
        match result {
            Ok(response) => read_body(response).map_err(|error| {
                CliError::server(format!(
                    "the answer from {} broke off: {}",
                    self.endpoint.base,
                    io_reason(&error)
                ))
            }),
            Err(ureq::Error::Status(status, response)) => {
                let body = read_body(response).unwrap_or_default();
                Err(self.http_failure(status, &body, role))
            }
            Err(ureq::Error::Transport(transport)) => Err(self.transport_failure(&transport)),
        }
    }

    /// The failure for an error answer: 401 names the key, 413/415/422 are
    /// audio failures, anything else quotes API.md's error code and message.
    pub fn http_failure(&self, status: u16, body: &str, role: KeyRole) -> CliError {
        let (code, message) = error_body(body);
        if status == 401 {
            return CliError::new(FailureKind::Auth, self.auth_message(role));
        }
        let detail = match (code.as_deref(), message.as_deref()) {
            (Some(code), Some(message)) => format!("{message} ({status} {code})"),
            (Some(code), None) => format!("{status} {code}"),
            (None, Some(message)) => format!("{message} ({status})"),
            (None, None) => format!("HTTP {status}"),
        };
        match status {
            413 | 415 | 422 => {
                CliError::audio(format!("the server cannot use this audio: {detail}"))
            }
            _ => CliError::server(format!("the server answered: {detail}")),
        }
    }

    fn auth_message(&self, role: KeyRole) -> String {
        match (role, self.key(role), self.admin_key.is_some()) {
            (KeyRole::Api, None, _) => "the server requires an API key (401 unauthorized): pass --api-key or set TRANSCRIBE_API_KEY".into(),
            (KeyRole::Api, Some(_), _) => "the server rejected the API key (401 unauthorized)".into(),
            (KeyRole::Admin, None, _) => "the server requires a key for the session endpoints (401 unauthorized): pass --admin-key (or --api-key when the server has no admin key)".into(),
            (KeyRole::Admin, Some(_), true) => "the server rejected the admin key (401 unauthorized)".into(),
            (KeyRole::Admin, Some(_), false) => "the server rejected the API key for the session endpoints (401 unauthorized): when the server has an admin key they need --admin-key".into(),
        }
    }

    /// The failure for a request that got no HTTP answer.
    pub fn transport_failure(&self, transport: &ureq::Transport) -> CliError {
        let io_error = find_io_error(transport);
        match transport.kind() {
            ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::Dns => {
                let reason = match io_error {
                    Some(error) => io_reason(error),
                    None if transport.kind() == ureq::ErrorKind::Dns => {
                        "cannot resolve the host".to_string()
                    }
                    None => transport.to_string(),
                };
                self.endpoint.unreachable(&reason)
            }
            _ => {
                let reason = match io_error {
                    Some(error) => io_reason(error),
                    None => transport.to_string(),
                };
                CliError::new(
                    FailureKind::Connect,
                    format!("the connection to {} failed: {reason}", self.endpoint.base),
                )
            }
        }
    }
}

/// The `std::io::Error` at the root of a transport failure, if any.
fn find_io_error(transport: &ureq::Transport) -> Option<&std::io::Error> {
    let mut source = std::error::Error::source(transport);
    while let Some(error) = source {
        if let Some(io_error) = error.downcast_ref::<std::io::Error>() {
            return Some(io_error);
        }
        source = error.source();
    }
    None
}

/// The whole body of an answer as text.
fn read_body(response: ureq::Response) -> std::io::Result<String> {
    let mut bytes = Vec::new();
    response.into_reader().read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// API.md's `{"error": {"code", "message"}}`; for any other body, its first
/// line (shortened) as the message.
pub fn error_body(body: &str) -> (Option<String>, Option<String>) {
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(body) {
        let error = &value["error"];
        let code = error["code"].as_str().map(str::to_string);
        let message = error["message"].as_str().map(str::to_string);
        if code.is_some() || message.is_some() {
            return (code, message);
        }
    }
    let line = body.lines().next().unwrap_or_default().trim();
    if line.is_empty() {
        return (None, None);
    }
    let short: String = line.chars().take(ERROR_BODY_CHARS_MAX).collect();
    (None, Some(short))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_default_port_and_prefix() {
        let plain = Endpoint::parse("http://127.0.0.1:8000").expect("valid");
        assert_eq!(plain.base, "http://127.0.0.1:8000");
        assert_eq!(plain.authority, "127.0.0.1:8000");
        assert_eq!(
            plain.ws_url("/v1/transcribe/stream"),
            "ws://127.0.0.1:8000/v1/transcribe/stream"
        );
        let proxied = Endpoint::parse("http://example.com/speech/").expect("valid");
        assert_eq!(proxied.base, "http://example.com:80/speech");
        assert_eq!(
            proxied.http_url("/v1/health"),
            "http://example.com:80/speech/v1/health"
        );
        let v6 = Endpoint::parse("ws://[::1]:9000").expect("valid");
        assert_eq!(v6.authority, "[::1]:9000");
        assert_eq!(
            Endpoint::parse("http://[::1]").expect("valid").authority,
            "[::1]:80"
        );
    }

    #[test]
    fn unusable_urls_are_usage_errors() {
        for url in [
            "https://x",
            "ftp://x",
            "127.0.0.1:8000",
            "http://",
            "http://u:p@x",
            "http://x/?a=1",
        ] {
            let error = Endpoint::parse(url).expect_err(url);
            assert_eq!(error.kind, FailureKind::Usage, "{url}");
        }
    }

    #[test]
    fn error_bodies_give_code_and_message() {
        let (code, message) = error_body(r#"{"error":{"code":"overloaded","message":"busy"}}"#);
        assert_eq!(code.as_deref(), Some("overloaded"));
        assert_eq!(message.as_deref(), Some("busy"));
        assert_eq!(
            error_body("Bad Gateway\nmore").1.as_deref(),
            Some("Bad Gateway")
        );
        assert_eq!(error_body(""), (None, None));
    }

    #[test]
    fn statuses_map_to_kinds() {
        let client = Client::new(
            Endpoint::parse("http://127.0.0.1:1").expect("valid"),
            Some("k".into()),
            None,
        );
        let body = r#"{"error":{"code":"unsupported_media_type","message":"not audio"}}"#;
        let failure = client.http_failure(415, body, KeyRole::Api);
        assert_eq!(failure.kind, FailureKind::Audio);
        assert_eq!(
            failure.message,
            "the server cannot use this audio: not audio (415 unsupported_media_type)"
        );
        let failure = client.http_failure(401, "", KeyRole::Api);
        assert_eq!(failure.kind, FailureKind::Auth);
        assert_eq!(
            failure.message,
            "the server rejected the API key (401 unauthorized)"
        );
        assert_eq!(
            client.http_failure(503, "", KeyRole::Api).kind,
            FailureKind::Server
        );
    }
}
