//! Fault isolation (needs the `fault-injection` feature, which
//! `scripts/test.sh` turns on): a panic in one handler or session costs that
//! request or session, never the core or its other connections.

use std::time::Duration;

use serde_json::Value;

use crate::support::{
    assert_active_sessions, eventually, fixture, fixture_pcm, get, metric, post, Raw, Server, Ws,
};

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
    assert_active_sessions(&server, 1, Duration::from_secs(5));

    // The other session on the same core is unaffected and the slot is free.
    bystander.stream_audio(&fixture_pcm("hello.wav"), 640);
    bystander.send_text(r#"{"type":"end"}"#);
    let (messages, close) = bystander.read_to_close();
    assert_eq!(close, Some(1000));
    assert!(messages.iter().any(|m| m["is_final"] == true));
    let mut next = Ws::connect(&server, "");
    assert_eq!(next.next_json().expect("start")["type"], "session_start");
}

#[test]
fn a_panicking_model_worker_fails_one_batch_job_and_is_replaced() {
    let server = Server::start(&["--model-workers", "1"]);
    let wav = fixture("hello.wav");
    let failed = post(
        &server,
        "/v1/transcribe?language=xx-panic",
        "audio/wav",
        &wav,
        &[],
    );
    assert_eq!(failed.status, 500, "{}", failed.text());
    assert_eq!(failed.error_code(), "internal");
    // The one worker is back, with a fresh engine.
    let fine = post(&server, "/v1/transcribe", "audio/wav", &wav, &[]);
    assert_eq!(fine.status, 200, "{}", fine.text());
    assert!(!fine.json()["text"].as_str().unwrap_or_default().is_empty());
    assert_eq!(
        metric(&server, "transcribe_model_worker_restarts_total", &[]),
        Some(1.0)
    );
}

#[test]
fn a_panicking_model_worker_fails_one_stream_segment_and_the_session_goes_on() {
    let server = Server::start(&["--model-workers", "1", "--cores", "1"]);
    let pcm = fixture_pcm("two_utterances.wav");
    let mut bystander = Ws::connect(&server, "interim_results=false");
    bystander.next_json();
    let mut victim = Ws::connect(&server, "interim_results=false&language=xx-panic");
    victim.next_json();
    victim.stream_audio(&pcm, 3200);
    bystander.stream_audio(&pcm, 3200);
    victim.send_text(r#"{"type":"end"}"#);
    bystander.send_text(r#"{"type":"end"}"#);

    let (messages, close) = victim.read_to_close();
    assert_eq!(close, Some(1000), "{messages:#?}");
    let errors: Vec<&Value> = messages.iter().filter(|m| m["type"] == "error").collect();
    assert_eq!(errors.len(), 2, "one error per segment: {messages:#?}");
    for (index, error) in errors.iter().enumerate() {
        assert_eq!(error["code"], "internal");
        assert!(error["message"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("segment {index}"))));
    }
    let end = messages.last().expect("session_end");
    assert_eq!(
        end["reason"], "client_end",
        "the session went on to its end"
    );

    let (messages, close) = bystander.read_to_close();
    assert_eq!(close, Some(1000));
    let finals = messages
        .iter()
        .filter(|m| m["type"] == "transcript" && m["is_final"] == true)
        .count();
    assert_eq!(finals, 2, "{messages:#?}");
    assert!(
        metric(&server, "transcribe_model_worker_restarts_total", &[]).is_some_and(|n| n >= 2.0)
    );
}
