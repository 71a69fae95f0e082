//! Blocking WebSocket client connections (tungstenite over `std::net`).
//!
//! [`connect`] opens a TCP connection to the (already loopback-checked)
//! [`Target`], sets `TCP_NODELAY`, performs the HTTP upgrade with the
//! scenario's headers, and returns the socket. Failures are reduced to a
//! short [`WsFailure::key`] (`connect`, `timeout`, `http_503`, …) used as a
//! counter name in the reports. [`is_would_block`] tells the "no data yet"
//! errors of a read with a timeout (or of a non-blocking read) apart from
//! real failures; tungstenite keeps a partially read frame across them.
//!
//! [`Upgrade`] performs the same upgrade by hand, as a state machine that
//! also works on non-blocking sockets, and yields any bytes received after
//! the `101` head, for drivers that do their own framing
//! ([`crate::wsframe`]); [`connect_raw`] runs it on a blocking socket.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

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

/// Classifies an I/O error on an open WebSocket the same way [`classify`]
/// does for `WsError::Io`: `timeout`, `reset` or `io`.
pub fn classify_io(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => "timeout",
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof => "reset",
        _ => "io",
    }
}

/// Largest upgrade response head accepted.
const MAX_UPGRADE_HEAD: usize = 16 * 1024;

/// Most bytes of a refusal's body quoted in the failure.
const MAX_QUOTED_BODY: usize = 200;

/// A blocking upgrade done by hand: the socket (`TCP_NODELAY`, still
/// blocking, timeouts set) and the bytes that followed the `101` head.
#[derive(Debug)]
pub struct RawConnection {
    /// The upgraded socket.
    pub stream: TcpStream,
    /// WebSocket bytes already received with the response head.
    pub leftover: Vec<u8>,
}

/// The client side of the HTTP upgrade as a resumable state machine, for
/// blocking and non-blocking sockets alike: [`Upgrade::advance`] writes the
/// request and reads the response as far as the socket allows.
#[derive(Debug)]
pub struct Upgrade {
    request: Vec<u8>,
    written: usize,
    key: String,
    buf: Vec<u8>,
}

impl Upgrade {
    /// The upgrade request for `path_and_query` (the target's path prefix is
    /// added) with extra `headers`.
    pub fn new(
        target: &Target,
        path_and_query: &str,
        headers: &[(String, String)],
    ) -> Result<Self, WsFailure> {
        let key = tungstenite::handshake::client::generate_key();
        let mut request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: loadgen/{}\r\nConnection: Upgrade\r\n\
             Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n",
            target.path(path_and_query),
            target.host_header,
            env!("CARGO_PKG_VERSION"),
        );
        for (name, value) in headers {
            if name.is_empty() || name.contains(['\r', '\n', ':']) || value.contains(['\r', '\n']) {
                return Err(WsFailure::new("request", format!("bad header {name}")));
            }
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        Ok(Upgrade {
            request: request.into_bytes(),
            written: 0,
            key,
            buf: Vec::with_capacity(512),
        })
    }

    /// Makes as much progress as `stream` allows: `Ok(Some(leftover))` once
    /// a valid `101` has arrived (with the bytes after its head), `Ok(None)`
    /// when the socket would block (or a blocking read timed out), `Err`
    /// for a refusal (`http_<status>`), a malformed or wrong answer
    /// (`handshake`) or an I/O failure (`reset`, `io`, `timeout`).
    pub fn advance<S: Read + Write>(
        &mut self,
        stream: &mut S,
    ) -> Result<Option<Vec<u8>>, WsFailure> {
        let io_fail = |what: &str, e: &io::Error| {
            WsFailure::new(classify_io(e), format!("handshake: {what}: {e}"))
        };
        while self.written < self.request.len() {
            match stream.write(&self.request[self.written..]) {
                Ok(0) => {
                    return Err(WsFailure::new(
                        "reset",
                        "handshake: the connection accepts no more bytes",
                    ))
                }
                Ok(n) => self.written += n,
                Err(e) if is_timeout(&e) => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_fail("sending the upgrade request", &e)),
            }
        }
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(leftover) = self.check(false)? {
                return Ok(Some(leftover));
            }
            if self.buf.len() > MAX_UPGRADE_HEAD {
                return Err(WsFailure::new(
                    "handshake",
                    "handshake: response head too large",
                ));
            }
            match stream.read(&mut chunk) {
                Ok(0) => {
                    return match self.check(true)? {
                        Some(leftover) => Ok(Some(leftover)),
                        None => Err(WsFailure::new(
                            "reset",
                            "handshake: connection closed before the response",
                        )),
                    }
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if is_timeout(&e) => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_fail("reading the response", &e)),
            }
        }
    }

    /// Looks at the bytes received so far (`eof`: no more will come).
    fn check(&self, eof: bool) -> Result<Option<Vec<u8>>, WsFailure> {
        let mut hdrs = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut hdrs);
        let head_len = match resp.parse(&self.buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => {
                return Err(WsFailure::new(
                    "handshake",
                    format!("handshake: malformed response head: {e}"),
                ))
            }
        };
        let status = resp.code.unwrap_or(0);
        let header = |n: &str| {
            resp.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(n))
                .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
        };
        if status != 101 {
            let wanted = header("content-length")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0)
                .min(MAX_QUOTED_BODY);
            let body = &self.buf[head_len..];
            if body.len() < wanted && !eof {
                return Ok(None);
            }
            let body = String::from_utf8_lossy(&body[..body.len().min(wanted)]).into_owned();
            return Err(WsFailure::new(
                format!("http_{status}"),
                format!("upgrade refused with HTTP {status} {}", body.trim()),
            ));
        }
        let expected = tungstenite::handshake::derive_accept_key(self.key.as_bytes());
        if header("sec-websocket-accept").as_deref() != Some(expected.as_str()) {
            return Err(WsFailure::new(
                "handshake",
                "handshake: missing or wrong Sec-WebSocket-Accept",
            ));
        }
        Ok(Some(self.buf[head_len..].to_vec()))
    }
}

/// Opens a WebSocket like [`connect`], but does the HTTP upgrade itself
/// ([`Upgrade`]) and returns the raw, blocking socket with any bytes read
/// past the `101` head. `timeout` bounds the connect and the whole
/// handshake. Failures use the same keys as [`connect`].
pub fn connect_raw(
    target: &Target,
    path_and_query: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> Result<RawConnection, WsFailure> {
    let mut upgrade = Upgrade::new(target, path_and_query, headers)?;
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&target.addr, timeout).map_err(|e| {
        let key = if is_timeout(&e) { "timeout" } else { "connect" };
        WsFailure::new(key, format!("connect {}: {e}", target.addr))
    })?;
    stream
        .set_nodelay(true)
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| WsFailure::new("io", format!("socket options: {e}")))?;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(WsFailure::new("timeout", "handshake: no response in time"));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| WsFailure::new("io", format!("socket options: {e}")))?;
        if let Some(leftover) = upgrade.advance(&mut stream)? {
            stream
                .set_read_timeout(Some(timeout))
                .map_err(|e| WsFailure::new("io", format!("socket options: {e}")))?;
            return Ok(RawConnection { stream, leftover });
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

    /// A one-shot server answering the upgrade with `answer(key)`.
    fn one_shot(answer: fn(&str) -> Vec<u8>) -> (u16, std::thread::JoinHandle<String>) {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = c.read(&mut buf).unwrap();
                assert!(n > 0);
                req.extend_from_slice(&buf[..n]);
            }
            let req = String::from_utf8(req).unwrap();
            let key = req
                .lines()
                .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                .unwrap()
                .to_string();
            // Dribble the answer out in small pieces.
            for piece in answer(&key).chunks(7) {
                c.write_all(piece).unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
            req
        });
        (port, server)
    }

    #[test]
    fn raw_upgrade_keeps_the_bytes_after_the_head() {
        let (port, server) = one_shot(|key| {
            let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
            let mut answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            )
            .into_bytes();
            answer.extend_from_slice(b"\x81\x02hi");
            answer
        });
        let target = Target::parse(&format!("http://127.0.0.1:{port}/api")).unwrap();
        let headers = vec![("Authorization".to_string(), "Bearer k".to_string())];
        let mut raw = connect_raw(&target, "/ws?x=1", &headers, Duration::from_secs(5)).unwrap();
        // The leftover may be split from the head; read the rest if needed.
        while raw.leftover.len() < 4 {
            use std::io::Read;
            let mut b = [0u8; 16];
            let n = raw.stream.read(&mut b).unwrap();
            raw.leftover.extend_from_slice(&b[..n]);
        }
        assert_eq!(raw.leftover, b"\x81\x02hi");
        let req = server.join().unwrap();
        assert!(req.starts_with("GET /api/ws?x=1 HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("Upgrade: websocket\r\n"));
        assert!(req.contains("Sec-WebSocket-Version: 13\r\n"));
        assert!(req.contains("Authorization: Bearer k\r\n"));
    }

    #[test]
    fn raw_upgrade_failures() {
        let (port, server) = one_shot(|_| {
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 10\r\n\r\noverloaded".to_vec()
        });
        let target = Target::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let err = connect_raw(&target, "/ws", &[], Duration::from_secs(5)).unwrap_err();
        assert_eq!(err.key, "http_503", "{err:?}");
        assert!(err.detail.contains("overloaded"), "{err:?}");
        server.join().unwrap();

        let (port, server) = one_shot(|_| {
            b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: nope\r\n\r\n".to_vec()
        });
        let target = Target::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let err = connect_raw(&target, "/ws", &[], Duration::from_secs(5)).unwrap_err();
        assert_eq!(err.key, "handshake", "{err:?}");
        server.join().unwrap();

        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let target = Target::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let err = connect_raw(&target, "/ws", &[], Duration::from_secs(2)).unwrap_err();
        assert_eq!(err.key, "connect", "{err:?}");
        let bad = vec![("X-Bad".to_string(), "a\r\nb".to_string())];
        assert_eq!(
            Upgrade::new(&target, "/ws", &bad).unwrap_err().key,
            "request"
        );
    }
}
