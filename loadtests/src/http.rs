//! A minimal blocking HTTP/1.1 client for load generation.
//!
//! [`build_request`] renders a request once so that every send is a single
//! `write_all` of prebuilt bytes. [`ResponseReader`] reads exactly one response
//! from a byte stream (head parsed with `httparse`, body framed by
//! `Content-Length`, or read to EOF when there is none), keeping any bytes that
//! follow for the next response or for a protocol upgrade. [`HttpClient`] keeps
//! one keep-alive connection, reconnects after `Connection: close` or an error,
//! and retries once, transparently, when a reused idle connection turns out to
//! have been closed by the server before it answered.
//!
//! Chunked transfer encoding is not supported (the server under test never
//! uses it for the endpoints exercised here) and is reported as a protocol error.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use crate::target::Target;

/// Largest response head accepted before it is called a protocol error.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most headers parsed in one response head.
const MAX_HEADERS: usize = 64;
/// Bytes asked of the socket per `read` call.
const READ_CHUNK: usize = 16 * 1024;

/// Renders a complete HTTP/1.1 request (head and body) with keep-alive.
///
/// `headers` are extra `(name, value)` pairs; `Host`, `Content-Length` (when
/// there is a body) and `Connection: keep-alive` are always added.
pub fn build_request(
    method: &str,
    target: &Target,
    path: &str,
    headers: &[(String, String)],
    body: Option<(&str, &[u8])>,
) -> Vec<u8> {
    let mut head = format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: loadgen/{}\r\nConnection: keep-alive\r\n",
        target.path(path),
        target.host_header,
        env!("CARGO_PKG_VERSION"),
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some((content_type, bytes)) = body {
        head.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            bytes.len()
        ));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    if let Some((_, bytes)) = body {
        out.extend_from_slice(bytes);
    }
    out
}

/// Why a request got no usable response, coarsely, for the error counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    /// The TCP connection could not be opened.
    Connect,
    /// No progress within the read/write timeout.
    Timeout,
    /// The server closed the connection before the response was complete.
    Closed,
    /// Another socket error (reset, broken pipe, …).
    Io,
    /// The response could not be parsed or used.
    Protocol,
}

impl ErrorKind {
    /// The name used in reports (`"connect"`, `"timeout"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Closed => "closed",
            ErrorKind::Io => "io",
            ErrorKind::Protocol => "protocol",
        }
    }
}

/// A failed request: the kind, a human detail, and whether no byte of a
/// response had arrived (which makes a retry on a fresh connection safe).
#[derive(Debug)]
pub struct HttpError {
    /// The coarse kind, for counting.
    pub kind: ErrorKind,
    /// What happened, for the first-error message.
    pub detail: String,
    /// True when the failure happened before any response byte was read.
    pub before_response: bool,
}

impl HttpError {
    fn new(kind: ErrorKind, detail: impl Into<String>, before_response: bool) -> Self {
        HttpError {
            kind,
            detail: detail.into(),
            before_response,
        }
    }

    fn from_io(err: &io::Error, before_response: bool) -> Self {
        let kind = match err.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ErrorKind::Timeout,
            io::ErrorKind::UnexpectedEof => ErrorKind::Closed,
            _ => ErrorKind::Io,
        };
        HttpError::new(kind, err.to_string(), before_response)
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.detail)
    }
}

impl std::error::Error for HttpError {}

/// What was learnt from one complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseInfo {
    /// The status code.
    pub status: u16,
    /// Bytes in the head (status line and headers, with the blank line).
    pub head_len: usize,
    /// Bytes in the body.
    pub body_len: usize,
    /// The server asked to close the connection (or framed the body by EOF).
    pub close: bool,
}

/// Reads one HTTP/1.1 response at a time from a byte stream, buffering
/// across `read` calls; bytes after a response stay buffered for the next.
#[derive(Debug, Default)]
pub struct ResponseReader {
    buf: Vec<u8>,
    body: Vec<u8>,
}

/// How the body of a parsed head is framed.
enum Framing {
    Length(usize),
    UntilEof,
}

impl ResponseReader {
    /// A reader with an empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The body of the last response read.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Takes the bytes received after the last response (e.g. the first
    /// WebSocket frames after a `101 Switching Protocols`).
    pub fn take_leftover(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// Forgets buffered bytes (call when the connection is replaced).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.body.clear();
    }

    /// Reads one complete response from `stream`. Interim `1xx` responses
    /// other than `101` are skipped. With `head_only` (a response to `HEAD`)
    /// no body is expected.
    pub fn read_response<R: Read>(
        &mut self,
        stream: &mut R,
        head_only: bool,
    ) -> Result<ResponseInfo, HttpError> {
        let mut received_any = !self.buf.is_empty();
        loop {
            // Parse the head, reading more until it is complete.
            let (status, head_len, framing, close) = loop {
                if let Some(parsed) = parse_head(&self.buf, head_only)? {
                    break parsed;
                }
                if self.buf.len() > MAX_HEAD_BYTES {
                    return Err(HttpError::new(
                        ErrorKind::Protocol,
                        format!("response head larger than {MAX_HEAD_BYTES} bytes"),
                        false,
                    ));
                }
                if self.fill(stream, !received_any)? == 0 {
                    let before = !received_any;
                    let what = if before {
                        "connection closed before a response"
                    } else {
                        "connection closed inside the response head"
                    };
                    return Err(HttpError::new(ErrorKind::Closed, what, before));
                }
                received_any = true;
            };
            if (100..200).contains(&status) && status != 101 {
                self.buf.drain(..head_len);
                continue;
            }
            let body_len = match framing {
                Framing::Length(len) => {
                    while self.buf.len() < head_len + len {
                        if self.fill(stream, false)? == 0 {
                            return Err(HttpError::new(
                                ErrorKind::Closed,
                                format!(
                                    "connection closed after {} of {len} body bytes",
                                    self.buf.len() - head_len
                                ),
                                false,
                            ));
                        }
                    }
                    len
                }
                Framing::UntilEof => {
                    while self.fill(stream, false)? != 0 {}
                    self.buf.len() - head_len
                }
            };
            self.body.clear();
            self.body
                .extend_from_slice(&self.buf[head_len..head_len + body_len]);
            self.buf.drain(..head_len + body_len);
            return Ok(ResponseInfo {
                status,
                head_len,
                body_len,
                close: close || matches!(framing, Framing::UntilEof),
            });
        }
    }

    /// One `read` into the buffer; returns the byte count (0 at EOF).
    fn fill<R: Read>(&mut self, stream: &mut R, before_response: bool) -> Result<usize, HttpError> {
        let start = self.buf.len();
        self.buf.resize(start + READ_CHUNK, 0);
        let result = loop {
            match stream.read(&mut self.buf[start..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match result {
            Ok(n) => {
                self.buf.truncate(start + n);
                Ok(n)
            }
            Err(e) => {
                self.buf.truncate(start);
                Err(HttpError::from_io(&e, before_response))
            }
        }
    }
}

/// Parses a response head at the start of `buf`; `None` when incomplete.
fn parse_head(
    buf: &[u8],
    head_only: bool,
) -> Result<Option<(u16, usize, Framing, bool)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => {
            return Err(HttpError::new(
                ErrorKind::Protocol,
                format!("malformed response head: {e}"),
                false,
            ))
        }
    };
    let status = resp.code.unwrap_or(0);
    let mut content_length = None;
    let mut close = resp.version == Some(0);
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let len = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| HttpError::new(ErrorKind::Protocol, "bad Content-Length", false))?;
            content_length = Some(len);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HttpError::new(
                ErrorKind::Protocol,
                "Transfer-Encoding (chunked) responses are not supported",
                false,
            ));
        } else if h.name.eq_ignore_ascii_case("connection") {
            let value = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            if value.split(',').any(|t| t.trim() == "close") {
                close = true;
            } else if value.split(',').any(|t| t.trim() == "keep-alive") {
                close = false;
            }
        }
    }
    let framing = if head_only || (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::Length(0)
    } else {
        match content_length {
            Some(len) => Framing::Length(len),
            None => Framing::UntilEof,
        }
    };
    Ok(Some((status, head_len, framing, close)))
}

/// One keep-alive HTTP/1.1 connection to a loopback target, reopened as needed.
#[derive(Debug)]
pub struct HttpClient {
    target: Target,
    timeout: Duration,
    stream: Option<TcpStream>,
    reader: ResponseReader,
    connects: u64,
}

impl HttpClient {
    /// A client that connects lazily; `timeout` bounds connect, each write and
    /// each read.
    pub fn new(target: Target, timeout: Duration) -> Self {
        HttpClient {
            target,
            timeout,
            stream: None,
            reader: ResponseReader::new(),
            connects: 0,
        }
    }

    /// How many TCP connections this client has opened.
    pub fn connects(&self) -> u64 {
        self.connects
    }

    /// The body of the last response.
    pub fn body(&self) -> &[u8] {
        self.reader.body()
    }

    fn connect(&mut self) -> Result<(), HttpError> {
        let stream = TcpStream::connect_timeout(&self.target.addr, self.timeout)
            .map_err(|e| HttpError::new(ErrorKind::Connect, e.to_string(), true))?;
        self.connects += 1;
        // Small requests must not wait for Nagle; failures here are harmless.
        let _ = stream.set_nodelay(true);
        stream
            .set_read_timeout(Some(self.timeout))
            .and_then(|()| stream.set_write_timeout(Some(self.timeout)))
            .map_err(|e| HttpError::new(ErrorKind::Connect, e.to_string(), true))?;
        self.reader.reset();
        self.stream = Some(stream);
        Ok(())
    }

    /// Drops the connection (the next request reconnects).
    pub fn disconnect(&mut self) {
        if let Some(stream) = self.stream.take() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        self.reader.reset();
    }

    /// Sends `request` (prebuilt bytes) and reads the whole response.
    pub fn send(&mut self, request: &[u8], head_only: bool) -> Result<ResponseInfo, HttpError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let reused = self.stream.is_some();
            if !reused {
                self.connect()?;
            }
            let result = self.exchange(request, head_only);
            match result {
                Ok(info) => {
                    if info.close {
                        self.disconnect();
                    }
                    return Ok(info);
                }
                Err(err) => {
                    self.disconnect();
                    // A reused keep-alive connection the server had already
                    // closed: the request never reached it, so try once anew.
                    let stale = err.before_response
                        && matches!(err.kind, ErrorKind::Closed | ErrorKind::Io);
                    if reused && stale && attempt == 1 {
                        continue;
                    }
                    return Err(err);
                }
            }
        }
    }

    fn exchange(&mut self, request: &[u8], head_only: bool) -> Result<ResponseInfo, HttpError> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(HttpError::new(ErrorKind::Io, "not connected", true));
        };
        stream
            .write_all(request)
            .map_err(|e| HttpError::from_io(&e, true))?;
        self.reader.read_response(stream, head_only)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Read` that hands out its data in the given pieces, then EOF.
    struct Pieces(Vec<Vec<u8>>);

    impl Read for Pieces {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            let piece = &mut self.0[0];
            let n = piece.len().min(out.len());
            out[..n].copy_from_slice(&piece[..n]);
            piece.drain(..n);
            if piece.is_empty() {
                self.0.remove(0);
            }
            Ok(n)
        }
    }

    fn split_at_every_byte(data: &[u8]) -> Pieces {
        Pieces(data.iter().map(|b| vec![*b]).collect())
    }

    const TWO: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\ncontent-length: 3\r\nConnection: close\r\n\r\nbye";

    #[test]
    fn reads_keep_alive_responses_in_one_piece() {
        let mut r = ResponseReader::new();
        let mut s = Pieces(vec![TWO.to_vec()]);
        let a = r.read_response(&mut s, false).unwrap();
        assert_eq!((a.status, a.body_len, a.close), (200, 11, false));
        assert_eq!(r.body(), b"{\"ok\":true}");
        let b = r.read_response(&mut s, false).unwrap();
        assert_eq!((b.status, b.body_len, b.close), (503, 3, true));
        assert_eq!(r.body(), b"bye");
        let err = r.read_response(&mut s, false).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Closed);
        assert!(err.before_response);
    }

    #[test]
    fn reads_a_response_split_across_reads() {
        // Every possible split point between head and body, and byte by byte.
        for cut in 1..TWO.len() {
            let mut r = ResponseReader::new();
            let mut s = Pieces(vec![TWO[..cut].to_vec(), TWO[cut..].to_vec()]);
            assert_eq!(r.read_response(&mut s, false).unwrap().status, 200);
            assert_eq!(r.read_response(&mut s, false).unwrap().status, 503);
        }
        let mut r = ResponseReader::new();
        let mut s = split_at_every_byte(TWO);
        assert_eq!(r.read_response(&mut s, false).unwrap().body_len, 11);
        assert_eq!(r.body(), b"{\"ok\":true}");
        assert_eq!(r.read_response(&mut s, false).unwrap().status, 503);
    }

    #[test]
    fn body_until_eof_and_truncation() {
        let mut r = ResponseReader::new();
        let mut s = Pieces(vec![
            b"HTTP/1.0 200 OK\r\n\r\nabc".to_vec(),
            b"def".to_vec(),
        ]);
        let info = r.read_response(&mut s, false).unwrap();
        assert_eq!((info.status, info.body_len, info.close), (200, 6, true));

        let mut r = ResponseReader::new();
        let mut s = Pieces(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc".to_vec()
        ]);
        let err = r.read_response(&mut s, false).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Closed);
        assert!(!err.before_response);
    }

    #[test]
    fn skips_interim_and_rejects_chunked_and_garbage() {
        let mut r = ResponseReader::new();
        let mut s = Pieces(vec![
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n".to_vec(),
        ]);
        let info = r.read_response(&mut s, false).unwrap();
        assert_eq!((info.status, info.body_len), (204, 0));

        let mut r = ResponseReader::new();
        let mut s = Pieces(vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
        ]);
        assert_eq!(
            r.read_response(&mut s, false).unwrap_err().kind,
            ErrorKind::Protocol
        );

        let mut r = ResponseReader::new();
        let mut s = Pieces(vec![b"SSH-2.0-OpenSSH\r\n\r\n".to_vec()]);
        assert_eq!(
            r.read_response(&mut s, false).unwrap_err().kind,
            ErrorKind::Protocol
        );
    }

    #[test]
    fn upgrade_keeps_leftover_bytes() {
        let mut r = ResponseReader::new();
        let mut s = Pieces(vec![
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x02hi"
                .to_vec(),
        ]);
        let info = r.read_response(&mut s, false).unwrap();
        assert_eq!(info.status, 101);
        assert_eq!(r.take_leftover(), b"\x81\x02hi");
    }

    #[test]
    fn builds_requests() {
        let t = Target::parse("http://127.0.0.1:8000").unwrap();
        let req = build_request(
            "POST",
            &t,
            "/v1/transcribe",
            &[],
            Some(("audio/wav", b"RIFF")),
        );
        let text = String::from_utf8(req).unwrap();
        assert!(text.starts_with("POST /v1/transcribe HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"));
        assert!(text.contains("Content-Length: 4\r\n"));
        assert!(text.ends_with("\r\n\r\nRIFF"));
    }
}
