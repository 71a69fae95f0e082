//! The serving side of the browser pages (docs/WEB.md): `/`, `/dashboard`
//! and `/assets/*` from a real server, with their content types, security
//! headers and the dashboard's key check. The pages' behaviour in a browser
//! is tested by `scripts/test-browser.sh`.

#[path = "integration/support.rs"]
mod support;

use std::path::Path;

use support::{get, request_with, Raw, Reply, Server};

const API_KEY: &str = "api-key-for-web-tests";
const ADMIN_KEY: &str = "admin-key-for-web-tests";

fn with_keys() -> Server {
    Server::start(&["--api-key", API_KEY, "--admin-key", ADMIN_KEY])
}

/// The headers every page and asset carries.
fn assert_page_headers(reply: &Reply, what: &str) {
    let csp = reply
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no Content-Security-Policy"));
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{what}: {directive} in {csp}");
    }
    assert!(!csp.contains("unsafe"), "{what}: {csp}");
    assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(reply.header("referrer-policy"), Some("no-referrer"));
}

#[test]
fn the_page_is_served_open_with_its_type_and_policy() {
    let server = with_keys();
    let reply = get(&server, "/");
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(reply.header("cache-control"), Some("no-cache"));
    assert_page_headers(&reply, "/");
    assert!(reply.text().contains("/assets/app.js"));

    let head = request_with(&server, "HEAD", "/", &[]);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(
        head.header("content-length"),
        Some(reply.body.len().to_string().as_str())
    );
}

/// `/assets/NAME` and `./NAME.js` (module imports) named in a file of `web/`.
fn referenced_assets(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let name_end = |rest: &str| {
        rest.find(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
            .unwrap_or(rest.len())
    };
    for rest in text.split("/assets/").skip(1) {
        names.push(rest[..name_end(rest)].to_string());
    }
    for rest in text.split("from './").skip(1) {
        names.push(rest[..name_end(rest)].to_string());
    }
    names
}

fn expected_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        other => panic!("no expected type for {name} ({other:?})"),
    }
}

#[test]
fn every_asset_the_pages_reference_is_served() {
    let server = with_keys();
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&web).expect("web/") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("text file");
        names.extend(referenced_assets(&text));
    }
    names.sort();
    names.dedup();
    for expected in [
        "app.js",
        "pcm-worklet.js",
        "dashboard.js",
        "charts.js",
        "style.css",
    ] {
        assert!(
            names.iter().any(|name| name == expected),
            "{expected} is referenced"
        );
    }
    for name in &names {
        let reply = get(&server, &format!("/assets/{name}"));
        assert_eq!(reply.status, 200, "/assets/{name}");
        assert_eq!(
            reply.header("content-type"),
            Some(expected_type(name)),
            "{name}"
        );
        assert_page_headers(&reply, name);
        let on_disk = std::fs::read(web.join(name)).expect("the asset is a file of web/");
        assert_eq!(reply.body, on_disk, "/assets/{name} is web/{name}");
    }
}

#[test]
fn the_dashboard_needs_the_admin_key_and_asks_for_it_in_html() {
    let server = with_keys();
    let refused = get(&server, "/dashboard");
    assert_eq!(refused.status, 401);
    assert_eq!(
        refused.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
    assert_eq!(refused.header("cache-control"), Some("no-store"));
    assert_page_headers(&refused, "401 /dashboard");
    let form = refused.text();
    assert!(form.contains("<form id=\"key-form\" method=\"get\" action=\"/dashboard\">"));
    assert!(form.contains("name=\"access_token\""));
    assert!(!form.contains("not accepted"));

    // The API key is not the admin key.
    let api = request_with(
        &server,
        "GET",
        "/dashboard",
        &[("Authorization", &format!("Bearer {API_KEY}"))],
    );
    assert_eq!(api.status, 401);
    let wrong = get(&server, "/dashboard?access_token=wrong");
    assert_eq!(wrong.status, 401);
    assert!(wrong.text().contains("not accepted"));
    assert!(!wrong.text().contains("wrong"), "the key is not echoed");

    for reply in [
        request_with(
            &server,
            "GET",
            "/dashboard",
            &[("Authorization", &format!("Bearer {ADMIN_KEY}"))],
        ),
        get(&server, &format!("/dashboard?access_token={ADMIN_KEY}")),
    ] {
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        assert_page_headers(&reply, "/dashboard");
        assert!(reply.text().contains("/assets/dashboard.js"));
    }
}

#[test]
fn the_json_endpoints_still_take_the_key_only_in_the_header() {
    // Only the page navigations and the WebSocket accept `?access_token=`.
    let server = with_keys();
    let reply = get(&server, &format!("/v1/sessions?access_token={ADMIN_KEY}"));
    assert_eq!(reply.status, 401);
    assert_eq!(reply.error_code(), "unauthorized");
}

#[test]
fn the_dashboard_takes_the_api_key_when_there_is_no_admin_key() {
    let server = Server::start(&["--api-key", API_KEY]);
    assert_eq!(get(&server, "/dashboard").status, 401);
    let reply = get(&server, &format!("/dashboard?access_token={API_KEY}"));
    assert_eq!(reply.status, 200);
}

#[test]
fn the_dashboard_is_open_when_auth_is_off() {
    let server = Server::start(&[]);
    let reply = get(&server, "/dashboard");
    assert_eq!(reply.status, 200);
    assert!(reply.text().contains("/assets/dashboard.js"));
}

#[test]
fn unknown_assets_are_404_and_other_methods_405() {
    let server = with_keys();
    for path in [
        "/assets/nope.js",
        "/assets/",
        "/assets/index.html",
        "/index.html",
    ] {
        let reply = get(&server, path);
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(reply.error_code(), "not_found", "{path}");
    }
    // A raw request, so that no client normalizes the `..` away.
    let mut raw = Raw::connect(&server);
    raw.send(b"GET /assets/../Cargo.toml HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(raw.read_response().expect("a response").status, 404);

    for (method, path) in [
        ("POST", "/assets/app.js"),
        ("DELETE", "/"),
        ("PUT", "/dashboard"),
    ] {
        let reply = request_with(&server, method, path, &[]);
        assert_eq!(reply.status, 405, "{method} {path}");
        assert_eq!(reply.header("allow"), Some("GET, HEAD"), "{method} {path}");
    }
}

#[test]
fn keys_given_to_the_pages_are_never_logged() {
    let server = Server::start(&[
        "--api-key",
        API_KEY,
        "--admin-key",
        ADMIN_KEY,
        "--log-level",
        "debug",
    ]);
    get(&server, &format!("/dashboard?access_token={ADMIN_KEY}"));
    get(&server, &format!("/dashboard?access_token={API_KEY}"));
    get(&server, "/dashboard?access_token=not-the-key-either");
    // The search is only worth something once the access log of all three
    // requests has been captured: wait for their three lines.
    let logged = |lines: &[String]| {
        lines
            .iter()
            .filter(|line| line.contains("/dashboard") && line.contains("status"))
            .count()
    };
    assert!(
        support::eventually(std::time::Duration::from_secs(10), || logged(
            &server.stderr_lines()
        ) >= 3),
        "the three requests were not logged: {:#?}",
        server.stderr_lines()
    );
    for line in server.stderr_lines() {
        assert!(
            !line.contains(ADMIN_KEY) && !line.contains(API_KEY) && !line.contains("not-the-key"),
            "a key in the log: {line}"
        );
    }
}

/// The open page and every asset carry a strong `ETag` and `Cache-Control:
/// no-cache`; a revalidation that names the tag (also weakly, or `*`) gets
/// `304 Not Modified` with no body, the same tag and headers, on a
/// connection that stays usable; another tag gets the file. (Before, no
/// `ETag` was sent and `If-None-Match` was ignored: every revalidation
/// fetched the whole file.)
#[test]
fn pages_and_assets_revalidate_with_etag_and_304() {
    let server = Server::start(&[]);
    let mut paths = vec!["/".to_string()];
    let page = get(&server, "/").text();
    paths.extend(
        referenced_assets(&page)
            .into_iter()
            .map(|name| format!("/assets/{name}")),
    );
    paths.push("/assets/dashboard.js".to_string());
    let mut tags = Vec::new();
    for path in &paths {
        let full = get(&server, path);
        assert_eq!(full.status, 200, "{path}");
        assert_eq!(full.header("cache-control"), Some("no-cache"), "{path}");
        let etag = full
            .header("etag")
            .unwrap_or_else(|| panic!("{path}: no ETag"))
            .to_string();
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
        // The same file gives the same tag.
        assert_eq!(get(&server, path).header("etag"), Some(etag.as_str()));
        tags.push(etag.clone());

        let mut raw = Raw::connect(&server);
        for validator in [
            etag.clone(),
            format!("W/{etag}"),
            "*".to_string(),
            format!("\"other\", {etag}"),
        ] {
            raw.send(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nIf-None-Match: {validator}\r\n\r\n")
                    .as_bytes(),
            );
            let reply = raw.read_response().expect("an answer");
            assert_eq!(reply.status, 304, "{path} {validator}");
            assert!(reply.body.is_empty(), "{path}: a 304 with a body");
            assert_eq!(reply.header("content-length"), None, "{path}");
            assert_eq!(reply.header("etag"), Some(etag.as_str()));
            assert_eq!(reply.header("cache-control"), Some("no-cache"));
            assert_page_headers(&reply, path);
        }
        // The connection is still in step: a stale tag gets the whole file.
        raw.send(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"stale\"\r\n\r\n")
                .as_bytes(),
        );
        let reply = raw.read_response().expect("an answer");
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.body, full.body, "{path}");
    }
    let mut distinct = tags.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        tags.len(),
        "different files, different tags: {tags:?}"
    );
}
