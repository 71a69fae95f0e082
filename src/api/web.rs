//! The browser pages: the live-transcription page at `/`, the operators'
//! dashboard at `/dashboard`, and their static assets under `/assets/`.
//!
//! The files of `web/` are compiled into the binary, so the server needs no
//! files at run time and no build step stands between an edit there and the
//! page served. The router in [`crate::api`] asks [`asset`] whether an asset
//! name exists (an unknown one is a plain 404); the handlers here only pick
//! bytes and headers. The pages talk to the server through the public API and
//! nothing else: the streaming WebSocket, `POST /v1/transcribe` and the
//! session endpoints (docs/WEB.md).

use crate::core::CoreContext;
use crate::error::{ApiError, ErrorKind};
use crate::http::{RequestHead, Response};

use super::Access;

/// What the pages may load and where they may connect: their own scripts,
/// styles and worklet, and connections to their own origin (CSP 3 makes
/// `'self'` match `ws:`/`wss:` to the same host and port). No inline script
/// or style, no frames, no plugins.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; media-src 'self'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The open pages and assets are revalidated on every use (their names
/// carry no version, and a new binary may serve new ones); with their
/// `ETag` a revalidation costs a `304 Not Modified` without the body.
const CACHE_REVALIDATE: &str = "no-cache";

/// The dashboard and its key form are never stored: they are only served to
/// an operator who proved the key.
const CACHE_NEVER: &str = "no-store";

/// A file of `web/`, as compiled in.
#[derive(Debug)]
pub struct Asset {
    /// The name under `/assets/`, or the page's own file name.
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
    /// A hash of `body` (FNV-1a, 64 bits), computed at compile time: the
    /// strong `ETag` of the file.
    pub tag: u64,
}

/// FNV-1a over `bytes`, at compile time.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut index = 0;
    while index < bytes.len() {
        hash ^= bytes[index] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        index += 1;
    }
    hash
}

impl Asset {
    /// The `ETag` value, quoted.
    pub fn etag(&self) -> String {
        format!("\"{:016x}\"", self.tag)
    }
}

/// Build an [`Asset`] from a file of `web/`.
macro_rules! web_file {
    ($name:literal, $content_type:literal) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!("../../web/", $name)),
            tag: fnv1a(include_bytes!(concat!("../../web/", $name))),
        }
    };
}

/// The page at `/`.
const INDEX: Asset = web_file!("index.html", "text/html; charset=utf-8");

/// The page at `/dashboard`.
const DASHBOARD: Asset = web_file!("dashboard.html", "text/html; charset=utf-8");

/// The assets under `/assets/`.
const ASSETS: &[Asset] = &[
    web_file!("style.css", "text/css; charset=utf-8"),
    web_file!("app.js", "text/javascript; charset=utf-8"),
    web_file!("pcm-worklet.js", "text/javascript; charset=utf-8"),
    web_file!("dashboard.js", "text/javascript; charset=utf-8"),
    web_file!("charts.js", "text/javascript; charset=utf-8"),
    web_file!("favicon.svg", "image/svg+xml"),
];

/// The asset called `name` under `/assets/`, if there is one.
pub fn asset(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.name == name)
}

/// `GET /`: the live-transcription page. Open: it holds no secret (the user
/// types the API key into it).
pub fn page(head: &RequestHead) -> Response {
    serve_revalidated(&INDEX, head)
}

/// `GET /assets/{name}`: a static asset. The router only routes names
/// [`asset`] knows.
pub fn asset_response(head: &RequestHead) -> Response {
    let found = head.path.strip_prefix("/assets/").and_then(asset);
    // The router checked the name; a miss here is a bug in that check.
    debug_assert!(found.is_some(), "asset route for an unknown asset");
    match found {
        Some(asset) => serve_revalidated(asset, head),
        None => Response::error(&ApiError::new(ErrorKind::NotFound, "no such asset")),
    }
}

/// `GET /dashboard`: the operators' page, behind the key the session
/// endpoints need (the admin key when set, else the API key). A browser
/// navigation cannot send a header, so besides `Authorization: Bearer` the
/// key is accepted as `?access_token=`; without a valid one the answer is
/// `401` with a small form that asks for it.
pub fn dashboard(core: &CoreContext, head: &RequestHead) -> Response {
    match super::authorize_access(core, head, Access::Admin, true) {
        Ok(()) => serve(&DASHBOARD, CACHE_NEVER),
        Err(_) => {
            let presented = head.header("authorization").is_some()
                || head.query.as_deref().is_some_and(|query| {
                    query
                        .split('&')
                        .any(|pair| pair.starts_with("access_token="))
                });
            let body = key_form(presented);
            let mut response = Response::with_body(401, "text/html; charset=utf-8", body)
                .header("WWW-Authenticate", "Bearer")
                .header("Cache-Control", CACHE_NEVER);
            response.headers.extend(page_headers());
            response
        }
    }
}

/// The `401` page of `/dashboard`: a form whose submission reloads
/// `/dashboard?access_token=…` (no script needed). `rejected`: a key was
/// presented and was wrong.
fn key_form(rejected: bool) -> Vec<u8> {
    let notice = if rejected {
        "<p class=\"error\" role=\"alert\">That key was not accepted.</p>\n"
    } else {
        ""
    };
    format!(
        "<!doctype html>
<html lang=\"en\">
<head>
<meta charset=\"utf-8\">
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">
<title>Dashboard: key needed</title>
<link rel=\"icon\" href=\"/assets/favicon.svg\" type=\"image/svg+xml\">
<link rel=\"stylesheet\" href=\"/assets/style.css\">
</head>
<body class=\"login\">
<main class=\"card narrow\">
<h1>Operator dashboard</h1>
<p>This server needs its admin key to show the dashboard.</p>
{notice}<form id=\"key-form\" method=\"get\" action=\"/dashboard\">
<label for=\"access_token\">Admin key</label>
<input id=\"access_token\" name=\"access_token\" type=\"password\" autocomplete=\"current-password\" required autofocus>
<button type=\"submit\">Open dashboard</button>
</form>
<p class=\"muted\"><a href=\"/\">Back to live transcription</a></p>
</main>
</body>
</html>
"
    )
    .into_bytes()
}

/// The headers every page and asset carries besides its cache policy.
fn page_headers() -> [(&'static str, String); 4] {
    [
        (
            "Content-Security-Policy",
            CONTENT_SECURITY_POLICY.to_string(),
        ),
        ("X-Content-Type-Options", "nosniff".to_string()),
        // The dashboard's URL may carry the key until its script removes it.
        ("Referrer-Policy", "no-referrer".to_string()),
        ("X-Frame-Options", "DENY".to_string()),
    ]
}

/// Answer `200` with an asset's bytes and the page headers.
/// An open file with its `ETag`: `304 Not Modified` (no body) when the
/// request's `If-None-Match` names it (or is `*`), else the file.
fn serve_revalidated(asset: &Asset, head: &RequestHead) -> Response {
    let etag = asset.etag();
    let matches = head
        .headers
        .iter()
        .filter(|(name, _)| name == "if-none-match")
        .flat_map(|(_, value)| value.split(','))
        .map(str::trim)
        // If-None-Match compares weakly: `W/"x"` matches `"x"`.
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag);
    if matches {
        let mut response = Response::with_body(304, asset.content_type, Vec::new())
            .header("ETag", etag)
            .header("Cache-Control", CACHE_REVALIDATE);
        response.headers.extend(page_headers());
        return response;
    }
    serve(asset, CACHE_REVALIDATE).header("ETag", etag)
}

fn serve(asset: &Asset, cache_control: &'static str) -> Response {
    let mut response = Response::with_body(200, asset.content_type, asset.body.to_vec());
    response
        .headers
        .push(("Cache-Control", cache_control.to_string()));
    response.headers.extend(page_headers());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_distinct_name_and_a_body() {
        for (index, asset) in ASSETS.iter().enumerate() {
            assert!(!asset.body.is_empty(), "{} is empty", asset.name);
            assert!(
                ASSETS[index + 1..]
                    .iter()
                    .all(|other| other.name != asset.name),
                "{} twice",
                asset.name
            );
        }
    }

    #[test]
    fn unknown_and_traversing_names_are_not_assets() {
        assert!(asset("app.js").is_some());
        assert!(asset("../Cargo.toml").is_none());
        assert!(asset("").is_none());
        assert!(asset("index.html").is_none());
    }
}
