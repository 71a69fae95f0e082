//! HTTP/1.1 framing and every error status, over raw sockets.

use std::time::Duration;

use crate::support::{get, post, request, Raw, Server};

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let server = Server::start(&[]);
    let mut raw = Raw::connect(&server);
    for _ in 0..3 {
        raw.send(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n");
        let reply = raw.read_response().expect("a response");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("connection"), None);
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = Server::start(&[]);
    let mut raw = Raw::connect(&server);
    raw.send(
        b"GET /v1/health HTTP/1.1\r\n\r\nGET /nowhere HTTP/1.1\r\n\r\nGET /v1/ready HTTP/1.1\r\n\r\nPOST /v1/health HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    );
    let statuses: Vec<u16> = (0..4)
        .map(|_| raw.read_response().expect("a response").status)
        .collect();
    assert_eq!(statuses, vec![200, 404, 200, 405]);
}

#[test]
fn connection_close_and_http_1_0_close_after_the_response() {
    let server = Server::start(&[]);
    let mut raw = Raw::connect(&server);
    raw.send(b"GET /v1/health HTTP/1.1\r\nConnection: close\r\n\r\n");
    let reply = raw.read_response().expect("a response");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("connection"), Some("close"));
    assert!(raw.is_closed_within(Duration::from_secs(5)));

    let mut raw = Raw::connect(&server);
    raw.send(b"GET /v1/health HTTP/1.0\r\n\r\n");
    assert_eq!(raw.read_response().expect("a response").status, 200);
    assert!(raw.is_closed_within(Duration::from_secs(5)));
}

#[test]
fn head_requests_get_headers_only() {
    let server = Server::start(&[]);
    let mut raw = Raw::connect(&server);
    raw.send(b"HEAD /v1/health HTTP/1.1\r\n\r\nGET /v1/ready HTTP/1.1\r\n\r\n");
    // The HEAD answer announces a length but carries no body, so the next
    // response must start right after its head.
    let mut text = Vec::new();
    let mut chunk = [0u8; 4096];
    use std::io::Read;
    while !String::from_utf8_lossy(&text).contains("{\"ready\":true}") {
        let n = raw.stream.read(&mut chunk).expect("read");
        assert!(n > 0, "closed early");
        text.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&text);
    let second = text
        .find("HTTP/1.1 200")
        .and_then(|first| text[first + 1..].find("HTTP/1.1 200"));
    assert!(second.is_some(), "two responses: {text}");
    assert!(
        !text.contains("\"status\":\"ok\""),
        "HEAD must not carry the body: {text}"
    );
}

#[test]
fn unknown_paths_are_404_and_wrong_methods_405_with_allow() {
    let server = Server::start(&[]);
    let reply = get(&server, "/v2/whatever");
    assert_eq!(reply.status, 404);
    assert_eq!(reply.error_code(), "not_found");

    let reply = request(&server, "DELETE", "/v1/transcribe");
    assert_eq!(reply.status, 405);
    assert_eq!(reply.error_code(), "method_not_allowed");
    assert_eq!(reply.header("allow"), Some("POST"));

    let reply = post(&server, "/v1/health", "text/plain", b"x", &[]);
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET, HEAD"));
}

#[test]
fn malformed_request_lines_and_headers_are_400() {
    let server = Server::start(&[]);
    let cases: &[&[u8]] = &[
        b"THIS IS NOT HTTP\r\n\r\n",
        b"GET /v1/health HTTP/9.9\r\n\r\n",
        b"GET /v1/health HTTP/1.1\r\nBad Header\r\n\r\n",
        b"GET http://elsewhere/ HTTP/1.1\r\n\r\n",
        b"POST /v1/transcribe HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        b"POST /v1/transcribe HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        b"POST /v1/transcribe HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /v1/transcribe HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST /v1/transcribe HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ];
    for case in cases {
        let mut raw = Raw::connect(&server);
        raw.send(case);
        let reply = raw
            .read_response()
            .unwrap_or_else(|| panic!("no answer to {:?}", String::from_utf8_lossy(case)));
        assert_eq!(reply.status, 400, "{:?}", String::from_utf8_lossy(case));
        assert_eq!(reply.error_code(), "bad_request");
        assert_eq!(reply.header("connection"), Some("close"));
        assert!(raw.is_closed_within(Duration::from_secs(5)));
    }
    // The server is unharmed.
    assert_eq!(get(&server, "/v1/health").status, 200);
}

#[test]
fn oversized_heads_and_too_many_headers_are_431() {
    let server = Server::start(&["--max-head-bytes", "2048"]);
    let mut raw = Raw::connect(&server);
    let big = format!(
        "GET /v1/health HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(4096)
    );
    raw.send(big.as_bytes());
    let reply = raw.read_response().expect("a response");
    assert_eq!(reply.status, 431);
    assert_eq!(reply.error_code(), "headers_too_large");

    let mut raw = Raw::connect(&server);
    let many: String = (0..100).map(|i| format!("X-{i}: 1\r\n")).collect();
    raw.send(format!("GET /v1/health HTTP/1.1\r\n{many}\r\n").as_bytes());
    let reply = raw.read_response().expect("a response");
    assert_eq!(reply.status, 431);
}

#[test]
fn oversized_bodies_are_413_before_they_are_read() {
    let server = Server::start(&["--max-body-bytes", "4096"]);
    // Announced too large: refused from the head alone.
    let mut raw = Raw::connect(&server);
    raw.send(b"POST /v1/transcribe HTTP/1.1\r\nContent-Type: audio/wav\r\nContent-Length: 1000000\r\n\r\n");
    let reply = raw.read_response().expect("a response");
    assert_eq!(reply.status, 413);
    assert_eq!(reply.error_code(), "payload_too_large");

    // Chunked: refused once the chunks pass the limit.
    let mut raw = Raw::connect(&server);
    raw.send(b"POST /v1/transcribe HTTP/1.1\r\nContent-Type: audio/wav\r\nTransfer-Encoding: chunked\r\n\r\n");
    let chunk = format!("800\r\n{}\r\n", "a".repeat(0x800));
    for _ in 0..3 {
        raw.send(chunk.as_bytes());
    }
    let reply = raw.read_response().expect("a response");
    assert_eq!(reply.status, 413);
}

#[test]
fn stalled_heads_and_bodies_are_408() {
    let server = Server::start(&["--read-timeout-ms", "300"]);
    let mut raw = Raw::connect(&server);
    raw.send(b"GET /v1/health HTTP/1.1\r\nHost:");
    let reply = raw.read_response().expect("a response");
    assert_eq!(reply.status, 408);
    assert_eq!(reply.error_code(), "request_timeout");
    assert!(raw.is_closed_within(Duration::from_secs(5)));

    let mut raw = Raw::connect(&server);
    raw.send(b"POST /v1/transcribe HTTP/1.1\r\nContent-Type: audio/wav\r\nContent-Length: 100\r\n\r\nRIFF");
    let reply = raw.read_response().expect("a response");
    assert_eq!(reply.status, 408);
    assert!(raw.is_closed_within(Duration::from_secs(5)));
}

#[test]
fn a_slowloris_head_is_cut_off_at_the_head_deadline() {
    let server = Server::start(&["--read-timeout-ms", "400"]);
    let mut raw = Raw::connect(&server);
    // One byte every 100 ms never pauses for long, but the head as a whole
    // takes far longer than the deadline.
    let mut writer = raw.stream.try_clone().expect("clone");
    let trickle = std::thread::spawn(move || {
        use std::io::Write;
        let head =
            b"GET /v1/health HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        for byte in head {
            if writer.write_all(&[*byte]).is_err() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    });
    let reply = raw.read_response().expect("a response");
    assert_eq!(reply.status, 408);
    assert!(raw.is_closed_within(Duration::from_secs(5)));
    drop(raw);
    let _ = trickle.join();
}

#[test]
fn idle_keep_alive_connections_are_closed_quietly() {
    let server = Server::start(&["--keepalive-timeout-seconds", "1"]);
    let mut raw = Raw::connect(&server);
    raw.send(b"GET /v1/health HTTP/1.1\r\n\r\n");
    assert_eq!(raw.read_response().expect("a response").status, 200);
    // No 408 for a connection that is between requests: just a close, with
    // not one byte after the answered request.
    let after = raw
        .bytes_until_closed(Duration::from_secs(5))
        .expect("the idle connection is closed");
    assert!(
        after.is_empty(),
        "bytes sent on an idle connection: {:?}",
        String::from_utf8_lossy(&after)
    );
}

#[test]
fn expect_100_continue_is_honoured() {
    let server = Server::start(&[]);
    let mut raw = Raw::connect(&server);
    raw.send(b"POST /v1/transcribe HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    let interim = raw.read_response().expect("100 Continue");
    assert_eq!(interim.status, 100);
    raw.send(b"hello");
    let reply = raw.read_response().expect("a response");
    assert_eq!(reply.status, 415);
}

#[test]
fn an_api_key_guards_the_api_but_not_health() {
    let server = Server::start(&["--api-key", "s3cret"]);
    assert_eq!(get(&server, "/v1/health").status, 200);
    assert_eq!(get(&server, "/v1/ready").status, 200);
    let wav = crate::support::fixture("hello.wav");
    let reply = post(&server, "/v1/transcribe", "audio/wav", &wav, &[]);
    assert_eq!(reply.status, 401);
    assert_eq!(reply.error_code(), "unauthorized");
    assert!(!reply.text().contains("s3cret"));
    let reply = post(
        &server,
        "/v1/transcribe",
        "audio/wav",
        &wav,
        &[("Authorization", "Bearer wrong")],
    );
    assert_eq!(reply.status, 401);
    let reply = post(
        &server,
        "/v1/transcribe",
        "audio/wav",
        &wav,
        &[("Authorization", "Bearer s3cret")],
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
}
