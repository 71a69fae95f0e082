//! CORS for browser clients (`cors_allow_origins`, off by default).
//!
//! When it is on, a preflight (`OPTIONS` with `Origin` and
//! `Access-Control-Request-Method`) on a known path is answered here, before
//! any key is checked (browsers never send credentials on a preflight), and
//! every other answer to a request from an allowed `Origin` carries
//! `Access-Control-Allow-Origin`, so a page can read errors as well as
//! results. A request from an origin not on the list gets no CORS headers:
//! the browser then refuses to hand the answer to the page. WebSocket
//! upgrades are outside CORS (browsers do not preflight them); the API key
//! guards the stream.

use super::head::{Method, RequestHead};
use super::response::Response;
use crate::config::CorsOrigins;

/// Request headers a page may send.
const ALLOW_HEADERS: &str = "Authorization, Content-Type";
/// Response headers a page may read besides the simple ones.
const EXPOSE_HEADERS: &str = "Retry-After, X-Served-By-Core";
/// Seconds a browser may cache a preflight answer.
const MAX_AGE_SECONDS: &str = "600";

/// Whether `head` is a CORS preflight.
pub fn is_preflight(cors: &CorsOrigins, head: &RequestHead) -> bool {
    cors.is_on()
        && head.method == Method::Options
        && head.header("origin").is_some()
        && head.header("access-control-request-method").is_some()
}

/// The answer to a preflight for a path that accepts `allow` (e.g. `"GET,
/// HEAD"`): 204, and the CORS grant when the origin is allowed.
pub fn preflight(cors: &CorsOrigins, head: &RequestHead, allow: &'static str) -> Response {
    let response = Response::with_body(204, "text/plain", Vec::new()).header("Vary", "Origin");
    match head.header("origin").and_then(|origin| cors.allow(origin)) {
        Some(allowed) => response
            .header("Access-Control-Allow-Origin", allowed)
            .header("Access-Control-Allow-Methods", allow)
            .header("Access-Control-Allow-Headers", ALLOW_HEADERS)
            .header("Access-Control-Max-Age", MAX_AGE_SECONDS),
        None => response,
    }
}

/// Add the CORS grant to an answer for a request from an allowed origin.
pub fn decorate(cors: &CorsOrigins, head: &RequestHead, response: Response) -> Response {
    if !cors.is_on() {
        return response;
    }
    let response = response.header("Vary", "Origin");
    match head.header("origin").and_then(|origin| cors.allow(origin)) {
        Some(allowed) => response
            .header("Access-Control-Allow-Origin", allowed)
            .header("Access-Control-Expose-Headers", EXPOSE_HEADERS),
        None => response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::parse_head;

    fn head(text: &str) -> RequestHead {
        let (head, _) = parse_head(text.as_bytes(), 16 * 1024)
            .expect("valid")
            .expect("complete");
        head
    }

    fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
        response
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    const PREFLIGHT: &str = "OPTIONS /v1/transcribe HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\nAccess-Control-Request-Method: POST\r\n\r\n";

    #[test]
    fn preflights_are_recognised_only_when_cors_is_on() {
        let list = CorsOrigins::List(vec!["https://app.example".into()]);
        assert!(is_preflight(&list, &head(PREFLIGHT)));
        assert!(!is_preflight(&CorsOrigins::Off, &head(PREFLIGHT)));
        let plain_options = head("OPTIONS /v1/transcribe HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(!is_preflight(&list, &plain_options));
    }

    #[test]
    fn an_allowed_origin_gets_the_grant_and_another_gets_none() {
        let list = CorsOrigins::List(vec!["https://app.example".into()]);
        let answer = preflight(&list, &head(PREFLIGHT), "POST");
        assert_eq!(answer.status, 204);
        assert_eq!(
            header(&answer, "access-control-allow-origin"),
            Some("https://app.example")
        );
        assert_eq!(
            header(&answer, "access-control-allow-methods"),
            Some("POST")
        );
        let other = PREFLIGHT.replace("https://app.example", "https://evil.example");
        let answer = preflight(&list, &head(&other), "POST");
        assert_eq!(answer.status, 204);
        assert_eq!(header(&answer, "access-control-allow-origin"), None);

        let get = head("GET /v1/health HTTP/1.1\r\nOrigin: https://app.example\r\n\r\n");
        let answer = decorate(&list, &get, Response::with_body(200, "text/plain", vec![]));
        assert_eq!(
            header(&answer, "access-control-allow-origin"),
            Some("https://app.example")
        );
        let answer = decorate(
            &CorsOrigins::Off,
            &get,
            Response::with_body(200, "text/plain", vec![]),
        );
        assert!(
            answer.headers.is_empty(),
            "off means no CORS headers at all"
        );
    }
}
