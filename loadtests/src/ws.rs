//! Blocking WebSocket client connections (tungstenite over `std::net`).
//!
//! [`connect`] opens a TCP connection to the (already loopback-checked)
//! [`Target`], sets `TCP_NODELAY`, performs the HTTP upgrade with the
//! scenario's headers, and returns the socket. Failures are reduced to a
//! short [`WsFailure::key`] (`connect`, `timeout`, `http_503`, …) used as a
//! counter name in the reports. [`is_would_block`] tells the "no data yet"
//! errors of a read with a timeout (or of a non-blocking read) apart from
//! real failures; tungstenite keeps a partially read frame across them.

use std::io;
use std::net::TcpStream;
use std::time::Duration;

use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::HandshakeError;
use tungstenite::http::HeaderValue;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Error as WsError, WebSocket};

use crate::target::Target;

/// The socket type the scenarios use.
pub type Socket = WebSocket<TcpStream>;

/// Why a connection could not be opened (or failed later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsFailure {
    /// Short counter name: `connect`, `timeout`, `http_<status>`, `handshake`,
    /// `io`, `reset`, `protocol`, `closed`.
    pub key: String,
    /// Human detail for the report.
    pub detail: String,
}

impl WsFailure {
    /// A failure with `key` and `detail`.
    pub fn new(key: impl Into<String>, detail: impl Into<String>) -> Self {
        WsFailure {
            key: key.into(),
            detail: detail.into(),
        }
    }
}

/// True for the errors that only mean "nothing to read yet".
pub fn is_would_block(err: &WsError) -> bool {
    matches!(err, WsError::Io(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
}

/// Classifies a tungstenite error after the handshake.
pub fn classify(err: &WsError) -> WsFailure {
    let key = match err {
        WsError::Io(e) if is_timeout(e) => "timeout",
        WsError::Io(e)
            if matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::UnexpectedEof
            ) =>
        {
            "reset"
        }
        WsError::Io(_) => "io",
        WsError::ConnectionClosed | WsError::AlreadyClosed => "closed",
        WsError::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake) => {
            "reset"
        }
        WsError::Http(resp) => {
            return WsFailure::new(format!("http_{}", resp.status().as_u16()), err.to_string())
        }
        _ => "protocol",
    };
    WsFailure::new(key, err.to_string())
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A small-buffer configuration for many mostly idle sockets (tungstenite's
/// default eagerly allocates a 128 KiB read buffer per socket).
pub fn small_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

/// Opens a WebSocket to `path_and_query` (which starts with `/`; the target's
/// path prefix is added) with extra request `headers`. `timeout` bounds the
/// connect and every read and write of the handshake, and is left as the
/// socket's read and write timeout.
pub fn connect(
    target: &Target,
    path_and_query: &str,
    headers: &[(String, String)],
    timeout: Duration,
    config: Option<WebSocketConfig>,
) -> Result<Socket, WsFailure> {
    let url = format!("ws://{}{}", target.host_header, target.path(path_and_query));
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| WsFailure::new("request", format!("bad request URL {url}: {e}")))?;
    for (name, value) in headers {
        let value = HeaderValue::from_str(value)
            .map_err(|_| WsFailure::new("request", format!("bad value for header {name}")))?;
        let name = tungstenite::http::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| WsFailure::new("request", format!("bad header name {name}")))?;
        request.headers_mut().insert(name, value);
    }
    let stream = TcpStream::connect_timeout(&target.addr, timeout).map_err(|e| {
        let key = if is_timeout(&e) { "timeout" } else { "connect" };
        WsFailure::new(key, format!("connect {}: {e}", target.addr))
    })?;
    let setup = |s: &TcpStream| -> io::Result<()> {
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))
    };
    setup(&stream).map_err(|e| WsFailure::new("io", format!("socket options: {e}")))?;
    match tungstenite::client::client_with_config(request, stream, config) {
        Ok((socket, _response)) => Ok(socket),
        Err(HandshakeError::Failure(WsError::Http(resp))) => {
            let status = resp.status().as_u16();
            let body = resp
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(&b[..b.len().min(200)]).into_owned())
                .unwrap_or_default();
            Err(WsFailure::new(
                format!("http_{status}"),
                format!("upgrade refused with HTTP {status} {}", body.trim()),
            ))
        }
        Err(HandshakeError::Failure(e)) => {
            let mut f = classify(&e);
            if f.key == "protocol" {
                f.key = "handshake".into();
            }
            f.detail = format!("handshake: {}", f.detail);
            Err(f)
        }
        // Only a non-blocking stream can be interrupted, and this one blocks
        // (with a timeout, which surfaces as an I/O error above).
        Err(HandshakeError::Interrupted(_)) => {
            Err(WsFailure::new("timeout", "handshake interrupted"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_errors() {
        let e = WsError::Io(io::Error::from(io::ErrorKind::WouldBlock));
        assert!(is_would_block(&e));
        assert_eq!(classify(&e).key, "timeout");
        let e = WsError::Io(io::Error::from(io::ErrorKind::ConnectionReset));
        assert!(!is_would_block(&e));
        assert_eq!(classify(&e).key, "reset");
        assert_eq!(classify(&WsError::ConnectionClosed).key, "closed");
    }

    #[test]
    fn refused_connection_is_a_connect_failure() {
        // Bind then drop a listener to find a port that is (very likely) closed.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let target = Target::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let err = connect(&target, "/x", &[], Duration::from_secs(2), None).unwrap_err();
        assert_eq!(err.key, "connect", "{err:?}");
    }

    #[test]
    fn upgrade_refusal_reports_the_status() {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut buf = [0u8; 2048];
            let _ = c.read(&mut buf);
            let body = r#"{"error":{"code":"unauthorized"}}"#;
            let _ = write!(
                c,
                "HTTP/1.1 401 Unauthorized\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        });
        let target = Target::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let err = connect(&target, "/ws", &[], Duration::from_secs(5), None).unwrap_err();
        assert_eq!(err.key, "http_401", "{err:?}");
        server.join().unwrap();
    }
}
