//! Fault isolation (needs the `fault-injection` feature, which
//! `scripts/test.sh` turns on): a panic in one handler or session costs that
//! request or session, never the core or its other connections.

use std::time::Duration;

use serde_json::Value;

use crate::support::{eventually, fixture, fixture_pcm, get, post, Raw, Server, Ws};

#[test]
fn a_panicking_handler_answers_500_and_the_core_goes_on() {
    let server = Server::start(&["--cores", "1"]);
    // A keep-alive connection open before the fault keeps working after it.
    let mut bystander = Raw::connect(&server);
    bystander.send(b"GET /v1/health HTTP/1.1\r\n\r\n");
    assert_eq!(bystander.read_response().expect("a response").status, 200);

    let mut raw = Raw::connect(&server);
    raw.send(b"GET /v1/health HTTP/1.1\r\nX-Fault-Inject: panic\r\n\r\n");
    let reply = raw
        .read_response()
        .expect("an answer, not a dropped connection");
    assert_eq!(reply.status, 500);
    assert_eq!(reply.error_code(), "internal");

    bystander.send(b"GET /v1/health HTTP/1.1\r\n\r\n");
    assert_eq!(bystander.read_response().expect("a response").status, 200);
    assert_eq!(
        post(
            &server,
            "/v1/transcribe",
            "audio/wav",
            &fixture("hello.wav"),
            &[]
        )
        .status,
        200
    );
    assert!(eventually(Duration::from_secs(5), || get(
        &server, "/metrics"
    )
    .text()
    .contains("transcribe_task_panics_total 1\n")));
}

#[test]
fn a_panicking_session_closes_with_1011_and_releases_its_slot() {
    let server = Server::start(&["--cores", "1", "--max-sessions", "2"]);
    let mut bystander = Ws::connect(&server, "interim_results=false");
    bystander.next_json();
    let mut victim = Ws::connect(&server, "");
    victim.next_json();
    victim.send_text(r#"{"type":"__inject_panic"}"#);
    let (messages, close) = victim.read_to_close();
    assert_eq!(close, Some(1011));
    assert_eq!(
        messages.last().map(|m| &m["code"]),
        Some(&Value::from("internal"))
    );
    assert!(eventually(Duration::from_secs(5), || get(
        &server,
        "/v1/health"
    )
    .json()["active_sessions"]
        == 1));

    // The other session on the same core is unaffected and the slot is free.
    bystander.stream_audio(&fixture_pcm("hello.wav"), 640);
    bystander.send_text(r#"{"type":"end"}"#);
    let (messages, close) = bystander.read_to_close();
    assert_eq!(close, Some(1000));
    assert!(messages.iter().any(|m| m["is_final"] == true));
    let mut next = Ws::connect(&server, "");
    assert_eq!(next.next_json().expect("start")["type"], "session_start");
}
