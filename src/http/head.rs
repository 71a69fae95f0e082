//! The request head: request line and headers, parsed by `httparse` into a
//! fixed array, checked against the limits before anything is allocated.
//!
//! [`parse_head`] is incremental in the hyper style: `Ok(None)` means "need
//! more bytes" and consumes nothing.

use crate::error::{ApiError, ErrorKind};
use crate::limits::HEADERS_COUNT_MAX;

/// The request method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Patch,
    Other,
}

impl Method {
    fn from_token(token: &str) -> Method {
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            "PATCH" => Method::Patch,
            _ => Method::Other,
        }
    }
}

/// How the body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body.
    None,
    /// Exactly this many bytes follow the head.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request head. Header names are lower-cased.
#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: Method,
    /// The path part of the request target, without the query.
    pub path: String,
    /// The raw query string after `?`, if any.
    pub query: Option<String>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    pub headers: Vec<(String, String)>,
    pub framing: BodyFraming,
    /// Whether the client allows the connection to stay open afterwards.
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
}

impl RequestHead {
    /// The first value of a header (name in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Whether the request carries a body.
    pub fn has_body(&self) -> bool {
        !matches!(self.framing, BodyFraming::None | BodyFraming::Length(0))
    }
}

/// Why a head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Not valid HTTP/1.x.
    Malformed(&'static str),
    /// The head is longer than the configured limit.
    TooLarge,
    /// More headers than [`HEADERS_COUNT_MAX`].
    TooManyHeaders,
}

impl From<HeadError> for ApiError {
    fn from(error: HeadError) -> ApiError {
        match error {
            HeadError::Malformed(why) => ApiError::new(ErrorKind::BadRequest, why),
            HeadError::TooLarge => ApiError::new(
                ErrorKind::HeadersTooLarge,
                "request head is larger than the server accepts",
            ),
            HeadError::TooManyHeaders => ApiError::new(
                ErrorKind::HeadersTooLarge,
                format!("more than {HEADERS_COUNT_MAX} headers"),
            ),
        }
    }
}

/// Parse a request head from the start of `buf`.
///
/// Returns the head and its length in bytes, or `Ok(None)` when `buf` does not
/// hold a complete head yet.
///
/// # Errors
/// [`HeadError`] for a malformed head, one over `head_bytes_max`, or one with
/// too many headers.
pub fn parse_head(
    buf: &[u8],
    head_bytes_max: usize,
) -> Result<Option<(RequestHead, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_COUNT_MAX];
    let mut request = httparse::Request::new(&mut headers);
    let status = request.parse(buf).map_err(|error| match error {
        httparse::Error::TooManyHeaders => HeadError::TooManyHeaders,
        httparse::Error::Version => HeadError::Malformed("unsupported HTTP version"),
        httparse::Error::Token => HeadError::Malformed("invalid token in request line"),
        httparse::Error::HeaderName => HeadError::Malformed("invalid header name"),
        httparse::Error::HeaderValue => HeadError::Malformed("invalid header value"),
        httparse::Error::NewLine => HeadError::Malformed("invalid line ending"),
        httparse::Error::Status => HeadError::Malformed("invalid request line"),
    })?;
    let head_len = match status {
        httparse::Status::Partial if buf.len() > head_bytes_max => return Err(HeadError::TooLarge),
        httparse::Status::Partial => return Ok(None),
        httparse::Status::Complete(len) if len > head_bytes_max => return Err(HeadError::TooLarge),
        httparse::Status::Complete(len) => len,
    };
    // A complete parse fills these three.
    let (Some(method), Some(target), Some(minor_version)) =
        (request.method, request.path, request.version)
    else {
        return Err(HeadError::Malformed("incomplete request line"));
    };
    if !target.starts_with('/') {
        return Err(HeadError::Malformed(
            "request target must be an absolute path",
        ));
    }
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path.to_string(), Some(query.to_string())),
        None => (target.to_string(), None),
    };

    let mut content_length: Option<u64> = None;
    let mut transfer_encoding: Option<String> = None;
    let mut connection_close = false;
    let mut connection_keep_alive = false;
    let mut expect_continue = false;
    let mut owned = Vec::with_capacity(request.headers.len());
    for header in request.headers.iter() {
        let name = header.name.to_ascii_lowercase();
        let value = std::str::from_utf8(header.value)
            .map_err(|_| HeadError::Malformed("header value is not UTF-8"))?
            .trim()
            .to_string();
        match name.as_str() {
            "content-length" => {
                let length = parse_content_length(&value)?;
                if content_length.is_some_and(|previous| previous != length) {
                    return Err(HeadError::Malformed("conflicting Content-Length headers"));
                }
                content_length = Some(length);
            }
            "transfer-encoding" => {
                if transfer_encoding.is_some() {
                    return Err(HeadError::Malformed("repeated Transfer-Encoding header"));
                }
                transfer_encoding = Some(value.to_ascii_lowercase());
            }
            "connection" => {
                for token in value.split(',') {
                    let token = token.trim();
                    connection_close |= token.eq_ignore_ascii_case("close");
                    connection_keep_alive |= token.eq_ignore_ascii_case("keep-alive");
                }
            }
            "expect" => {
                if value.eq_ignore_ascii_case("100-continue") {
                    expect_continue = true;
                } else {
                    return Err(HeadError::Malformed("unsupported Expect header"));
                }
            }
            _ => {}
        }
        owned.push((name, value));
    }

    let framing = match (transfer_encoding, content_length) {
        (Some(_), Some(_)) => {
            // Both framings at once is how requests are smuggled: refuse.
            return Err(HeadError::Malformed(
                "both Transfer-Encoding and Content-Length",
            ));
        }
        (Some(encoding), None) => {
            if minor_version == 0 {
                return Err(HeadError::Malformed(
                    "Transfer-Encoding in an HTTP/1.0 request",
                ));
            }
            if encoding != "chunked" {
                return Err(HeadError::Malformed(
                    "only Transfer-Encoding: chunked is supported",
                ));
            }
            BodyFraming::Chunked
        }
        (None, Some(length)) => BodyFraming::Length(length),
        (None, None) => BodyFraming::None,
    };
    let keep_alive = if minor_version >= 1 {
        !connection_close
    } else {
        connection_keep_alive && !connection_close
    };
    let head = RequestHead {
        method: Method::from_token(method),
        path,
        query,
        minor_version,
        headers: owned,
        framing,
        keep_alive,
        expect_continue,
    };
    Ok(Some((head, head_len)))
}

fn parse_content_length(value: &str) -> Result<u64, HeadError> {
    if value.is_empty() || value.len() > 19 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HeadError::Malformed("invalid Content-Length"));
    }
    value
        .parse()
        .map_err(|_| HeadError::Malformed("invalid Content-Length"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMIT: usize = 16 * 1024;

    fn parse(text: &str) -> Result<Option<(RequestHead, usize)>, HeadError> {
        parse_head(text.as_bytes(), LIMIT)
    }

    #[test]
    fn a_simple_get() {
        let (head, len) = parse("GET /v1/health?x=1 HTTP/1.1\r\nHost: a\r\n\r\nrest")
            .expect("valid")
            .expect("complete");
        assert_eq!(head.method, Method::Get);
        assert_eq!(head.path, "/v1/health");
        assert_eq!(head.query.as_deref(), Some("x=1"));
        assert_eq!(head.header("host"), Some("a"));
        assert_eq!(head.framing, BodyFraming::None);
        assert!(head.keep_alive);
        assert_eq!(len, "GET /v1/health?x=1 HTTP/1.1\r\nHost: a\r\n\r\n".len());
    }

    #[test]
    fn partial_heads_need_more() {
        assert!(parse("GET /v1/health HTTP/1.1\r\nHost:")
            .expect("valid")
            .is_none());
        assert!(parse("").expect("valid").is_none());
    }

    #[test]
    fn framing_and_connection_rules() {
        let head = |text: &str| parse(text).expect("valid").expect("complete").0;
        assert_eq!(
            head("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n").framing,
            BodyFraming::Length(5)
        );
        assert_eq!(
            head("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").framing,
            BodyFraming::Chunked
        );
        assert!(!head("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!head("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(head("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive);
        assert!(
            head("POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
                .expect_continue
        );
    }

    #[test]
    fn refusals() {
        let cases = [
            ("GARBAGE\r\n\r\n", "malformed"),
            ("GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", "malformed"),
            (
                "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                "malformed",
            ),
            ("GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", "malformed"),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
                "malformed",
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
                "malformed",
            ),
            ("GET http://x/ HTTP/1.1\r\n\r\n", "malformed"),
            ("GET / HTTP/2.0\r\n\r\n", "malformed"),
        ];
        for (text, _) in cases {
            assert!(
                matches!(parse(text), Err(HeadError::Malformed(_))),
                "{text:?} must be refused"
            );
        }
    }

    #[test]
    fn limits_are_checked_before_completion() {
        let long = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(LIMIT));
        assert_eq!(parse(&long).err(), Some(HeadError::TooLarge));
        let many: String = (0..HEADERS_COUNT_MAX + 1)
            .map(|i| format!("X-{i}: 1\r\n"))
            .collect();
        let text = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(parse(&text).err(), Some(HeadError::TooManyHeaders));
    }

    proptest! {
        /// Any prefix of a valid head is "need more"; the whole parses the same.
        #[test]
        fn every_split_of_a_valid_head_parses_the_same(cut in 0usize..80) {
            let text = "POST /v1/transcribe?vad_mode=1 HTTP/1.1\r\nContent-Length: 12\r\nContent-Type: audio/wav\r\n\r\n";
            let cut = cut.min(text.len() - 1);
            prop_assert!(parse(&text[..cut]).expect("valid prefix").is_none());
            let (head, len) = parse(text).expect("valid").expect("complete");
            prop_assert_eq!(len, text.len());
            prop_assert_eq!(head.framing, BodyFraming::Length(12));
        }

        /// No input panics the parser.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_head(&bytes, 256);
        }
    }
}
