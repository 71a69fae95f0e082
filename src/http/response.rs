//! Responses and their serialization to HTTP/1.1 bytes.

use std::time::SystemTime;

use serde::Serialize;

use crate::error::{ApiError, ErrorKind};
use crate::limits::RETRY_AFTER_SECONDS;

/// The body of a streamed response: chunks as the handler's task makes
/// them. The connection writes each as one HTTP chunk as soon as it comes,
/// and ends the body when the sending side is dropped. Dropping the
/// receiver (the client went away) is how the task learns to stop.
pub type BodyChunks = futures_channel::mpsc::UnboundedReceiver<Vec<u8>>;

/// A response a handler built. The connection adds framing headers.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// Extra headers (`Allow`, `Retry-After`, …).
    pub headers: Vec<(&'static str, String)>,
    /// Close the connection after this response.
    pub close: bool,
    /// A streamed body (Server-Sent Events): sent chunked after `body`,
    /// then the connection closes.
    pub stream: Option<BodyChunks>,
}

impl Response {
    /// A JSON response.
    pub fn json(status: u16, value: &impl Serialize) -> Response {
        // Serializing our own response types cannot fail (no maps with non-string
        // keys, no failing Serialize impls); fall back to an internal error anyway.
        match serde_json::to_vec(value) {
            Ok(body) => Response::with_body(status, "application/json", body),
            Err(error) => Response::error(&ApiError::new(
                ErrorKind::Internal,
                format!("response serialization failed: {error}"),
            )),
        }
    }

    /// A response with a body of the given type.
    pub fn with_body(status: u16, content_type: &'static str, body: Vec<u8>) -> Response {
        Response {
            status,
            content_type,
            body,
            headers: Vec::new(),
            close: false,
            stream: None,
        }
    }

    /// The JSON error answer of API.md, with the headers its kind calls for.
    pub fn error(error: &ApiError) -> Response {
        let mut response =
            Response::with_body(error.kind.status(), "application/json", error.to_json());
        if let Some(seconds) = error.retry_after_s {
            response.headers.push(("Retry-After", seconds.to_string()));
        } else if matches!(error.kind, ErrorKind::Overloaded | ErrorKind::ShuttingDown) {
            response
                .headers
                .push(("Retry-After", RETRY_AFTER_SECONDS.to_string()));
        }
        if error.kind == ErrorKind::Unauthorized {
            response
                .headers
                .push(("WWW-Authenticate", "Bearer".to_string()));
        }
        response.close = error.kind.closes_connection();
        response
    }

    /// Append a header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// Serialize into `out` (cleared first). `keep_alive` chooses the
    /// `Connection` header; `head_only` omits the body (a `HEAD` request).
    pub fn write_to(&self, out: &mut Vec<u8>, keep_alive: bool, head_only: bool) {
        use std::io::Write;
        out.clear();
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\nServer: transcription-service/{}\r\nDate: {}\r\n",
            self.status,
            reason_phrase(self.status),
            crate::VERSION,
            httpdate::fmt_http_date(SystemTime::now()),
        );
        // A 204 and a 304 have neither a body nor the headers that describe
        // one (a 304's validators and caching headers are in `headers`); a
        // streamed body is chunked.
        let bodiless = matches!(self.status, 204 | 304);
        if self.stream.is_some() {
            let _ = write!(
                out,
                "Content-Type: {}\r\nTransfer-Encoding: chunked\r\n",
                self.content_type
            );
        } else if !bodiless {
            let _ = write!(
                out,
                "Content-Type: {}\r\nContent-Length: {}\r\n",
                self.content_type,
                self.body.len()
            );
        }
        for (name, value) in &self.headers {
            let _ = write!(out, "{name}: {value}\r\n");
        }
        if !keep_alive {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if self.stream.is_some() {
            if !head_only && !self.body.is_empty() {
                write_chunk(out, &self.body);
            }
        } else if !head_only && !bodiless {
            out.extend_from_slice(&self.body);
        }
    }
}

/// Append `data` as one HTTP/1.1 chunk (an empty `data` is the last chunk).
pub fn write_chunk(out: &mut Vec<u8>, data: &[u8]) {
    use std::io::Write;
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The standard reason phrase of a status code.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_framing_and_extra_headers() {
        let response = Response::error(&ApiError::new(ErrorKind::Overloaded, "queue full"));
        let mut out = Vec::new();
        response.write_to(&mut out, false, false);
        let text = String::from_utf8(out).expect("ascii");
        assert!(text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(text.contains("\r\nRetry-After: 1\r\n"));
        assert!(text.contains("\r\nConnection: close\r\n"));
        let body = text.split("\r\n\r\n").nth(1).expect("body");
        assert!(text.contains(&format!("Content-Length: {}\r\n", body.len())));
        assert!(body.contains("\"overloaded\""));
    }

    #[test]
    fn head_only_keeps_the_length_but_not_the_body() {
        let response = Response::with_body(200, "text/plain", b"hello".to_vec());
        let mut out = Vec::new();
        response.write_to(&mut out, true, true);
        let text = String::from_utf8(out).expect("ascii");
        assert!(text.contains("Content-Length: 5\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }
}
