//! `GET /v1/transcribe/stream`: the streaming protocol with a real WebSocket
//! client, every message and error code, limits and lifecycle.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

use crate::support::{
    assert_active_sessions, eventually, fixture, fixture_pcm, get, metric, post, Raw, Server, Ws,
};

/// 20 ms of 16 kHz PCM16.
const FRAME_BYTES: usize = 640;

fn of_type<'a>(messages: &'a [Value], kind: &str) -> Vec<&'a Value> {
    messages.iter().filter(|m| m["type"] == kind).collect()
}

fn finals(messages: &[Value]) -> Vec<&Value> {
    messages
        .iter()
        .filter(|m| m["type"] == "transcript" && m["is_final"] == true)
        .collect()
}

/// The invariants of API.md on a whole conversation: finals once per
/// segment in order, no interim after its final, each final after its
/// speech_start.
fn assert_ordered(messages: &[Value]) {
    let mut started = Vec::new();
    let mut finished = Vec::new();
    for message in messages {
        let id = message["segment_id"].as_u64();
        match (message["type"].as_str(), message["is_final"].as_bool()) {
            (Some("speech_start"), _) => started.push(id.expect("segment_id")),
            (Some("transcript"), Some(true)) => {
                let id = id.expect("segment_id");
                assert!(
                    started.contains(&id),
                    "final before speech_start: {message}"
                );
                assert_eq!(
                    finished.last().map(|last| last + 1).unwrap_or(0),
                    id,
                    "finals in order"
                );
                finished.push(id);
            }
            (Some("transcript"), Some(false)) => {
                let id = id.expect("segment_id");
                assert!(
                    !finished.contains(&id),
                    "interim after its final: {message}"
                );
            }
            _ => {}
        }
    }
    assert_eq!(started, finished, "one final per segment");
}

#[test]
fn a_session_starts_with_session_start_and_ends_with_session_end() {
    let server = Server::start(&[]);
    let mut ws = Ws::connect(&server, "");
    let start = ws.next_json().expect("session_start");
    assert_eq!(start["type"], "session_start");
    assert_eq!(start["sample_rate"], 16000);
    assert_eq!(start["encoding"], "pcm_s16le");
    assert_eq!(start["vad_mode"], 2);
    assert_eq!(start["interim_results"], true);
    let id = start["session_id"].as_str().expect("id").to_string();
    assert_eq!(id.len(), 36, "a UUID");

    let pcm = fixture_pcm("two_utterances.wav");
    ws.stream_audio(&pcm, FRAME_BYTES);
    ws.send_text(r#"{"type":"end"}"#);
    let (messages, close) = ws.read_to_close();
    assert_eq!(close, Some(1000));
    assert_ordered(&messages);
    let finals = finals(&messages);
    assert_eq!(finals.len(), 2, "{messages:#?}");
    let mut previous_end = 0.0;
    for last in &finals {
        let (start, end) = (
            last["start"].as_f64().expect("start"),
            last["end"].as_f64().expect("end"),
        );
        assert!(previous_end <= start && start < end && end <= 5.0, "{last}");
        previous_end = end;
        let words = last["words"].as_array().expect("finals carry words");
        assert_eq!(
            words.len(),
            last["text"].as_str().unwrap_or("").split(' ').count()
        );
    }
    let end = messages.last().expect("session_end");
    assert_eq!(end["type"], "session_end");
    assert_eq!(end["session_id"], id.as_str());
    assert_eq!(end["reason"], "client_end");
    assert_eq!(end["metrics"]["audio_bytes"], pcm.len() as u64);
    assert_eq!(
        end["metrics"]["chunks"],
        pcm.len().div_ceil(FRAME_BYTES) as u64
    );
    assert_eq!(end["metrics"]["segments"], 2);
    let transcripts = of_type(&messages, "transcript").len() as u64;
    assert_eq!(end["metrics"]["transcripts"], transcripts);
    assert!(
        (end["metrics"]["audio_seconds"].as_f64().unwrap_or(0.0) - pcm.len() as f64 / 32000.0)
            .abs()
            < 0.05
    );
}

#[test]
fn stream_and_batch_give_the_same_text_for_the_same_audio() {
    let server = Server::start(&[]);
    for name in ["hello.wav", "two_utterances.wav"] {
        let batch = post(&server, "/v1/transcribe", "audio/wav", &fixture(name), &[]).json();
        let mut ws = Ws::connect(&server, "interim_results=false");
        ws.stream_audio(&fixture_pcm(name), FRAME_BYTES);
        ws.send_text(r#"{"type":"end"}"#);
        let (messages, _) = ws.read_to_close();
        let streamed: Vec<&str> = finals(&messages)
            .iter()
            .filter_map(|f| f["text"].as_str())
            .filter(|t| !t.is_empty())
            .collect();
        assert_eq!(
            streamed.join(" "),
            batch["text"].as_str().expect("text"),
            "{name}"
        );
        let batch_starts: Vec<&Value> = batch["segments"]
            .as_array()
            .expect("segments")
            .iter()
            .map(|s| &s["start"])
            .collect();
        let stream_starts: Vec<&Value> = finals(&messages).iter().map(|f| &f["start"]).collect();
        assert_eq!(stream_starts, batch_starts, "{name}");
    }
}

#[test]
fn interims_arrive_before_the_final_and_can_be_turned_off() {
    let server = Server::start(&["--interim-interval-ms", "200"]);
    let pcm = fixture_pcm("hello.wav");
    let mut ws = Ws::connect(&server, "");
    ws.next_json();
    // Pace the audio a little so interims have time to come back.
    for frame in pcm.chunks(FRAME_BYTES) {
        ws.send_audio(frame);
        std::thread::sleep(Duration::from_millis(2));
    }
    ws.send_text(r#"{"type":"end"}"#);
    let (messages, _) = ws.read_to_close();
    assert_ordered(&messages);
    let interims: Vec<&Value> = messages
        .iter()
        .filter(|m| m["type"] == "transcript" && m["is_final"] == false)
        .collect();
    assert!(!interims.is_empty(), "{messages:#?}");
    for interim in interims {
        assert!(interim.get("words").is_none());
        assert!(interim["end"].as_f64() > interim["start"].as_f64());
    }

    let mut ws = Ws::connect(&server, "interim_results=false");
    assert_eq!(ws.next_json().expect("start")["interim_results"], false);
    ws.stream_audio(&pcm, FRAME_BYTES);
    ws.send_text(r#"{"type":"end"}"#);
    let (messages, _) = ws.read_to_close();
    assert!(
        messages.iter().all(|m| m["is_final"] != false),
        "{messages:#?}"
    );
    assert_eq!(finals(&messages).len(), 1);
}

/// Send a ping and read until its pong, keeping the JSON messages that
/// arrive meanwhile: everything sent before the ping has been read by the
/// session by then (the server handles a connection's frames in order).
fn sync_with_ping(ws: &mut Ws, messages: &mut Vec<Value>) {
    ws.socket
        .send(tungstenite::Message::Ping(b"sync".to_vec().into()))
        .expect("send ping");
    loop {
        match ws.socket.read().expect("read") {
            tungstenite::Message::Text(text) => {
                messages.push(serde_json::from_str(text.as_str()).expect("JSON"));
            }
            tungstenite::Message::Pong(_) => return,
            _ => {}
        }
    }
}

/// An interim's `start`/`end` lie inside the span its final reports: it ends
/// at the segment's last voiced frame (plus the frame of tail the final also
/// gets), not at the audio received, so interims sent during the hangover
/// silence do not reach past the final's end. (Before, an interim reported
/// the audio received so far as its end: 3.92 s against its final's 3.66.)
#[test]
fn interim_times_stay_inside_their_final_span() {
    let server = Server::start(&[
        "--interim-interval-ms",
        "100",
        "--vad-hangover-ms",
        "2000",
        "--model-workers",
        "2",
    ]);
    let pcm = fixture_pcm("hello.wav");
    let mut ws = Ws::connect(&server, "");
    let mut messages = vec![ws.next_json().expect("session_start")];
    // Speech, then 1.5 s of silence (inside the 2 s hangover), 100 ms at a
    // time: each step is read by the session (ping) and every interim it
    // asked for computed (the model is idle) before the next, so no final
    // can overtake an interim. Then enough silence to close the segment.
    let step = |ws: &mut Ws, chunk: &[u8], messages: &mut Vec<Value>| {
        ws.send_audio(chunk);
        sync_with_ping(ws, messages);
        assert!(eventually(Duration::from_secs(20), || {
            crate::support::model_jobs_pending(&server) == 0.0
        }));
    };
    for chunk in pcm.chunks(FRAME_BYTES * 5) {
        step(&mut ws, chunk, &mut messages);
    }
    let silence = vec![0u8; FRAME_BYTES * 5];
    for _ in 0..15 {
        step(&mut ws, &silence, &mut messages);
    }
    ws.stream_audio(&vec![0u8; 32_000 * 3], FRAME_BYTES);
    ws.send_text(r#"{"type":"end"}"#);
    let (rest, close) = ws.read_to_close();
    assert_eq!(close, Some(1000));
    messages.extend(rest);
    assert_ordered(&messages);
    let interims: Vec<&Value> = messages
        .iter()
        .filter(|m| m["type"] == "transcript" && m["is_final"] == false)
        .collect();
    assert!(!interims.is_empty(), "no interim: {messages:#?}");
    for interim in interims {
        let id = &interim["segment_id"];
        let last = finals(&messages)
            .into_iter()
            .find(|f| &f["segment_id"] == id)
            .unwrap_or_else(|| panic!("no final for segment {id}: {messages:#?}"));
        let (start, end) = (interim["start"].as_f64(), interim["end"].as_f64());
        let (final_start, final_end) = (last["start"].as_f64(), last["end"].as_f64());
        assert!(
            start >= final_start && end <= final_end && end > start,
            "interim [{start:?}, {end:?}] outside its final [{final_start:?}, {final_end:?}]"
        );
    }
}

#[test]
fn end_in_the_middle_of_speech_flushes_the_segment() {
    let server = Server::start(&[]);
    let pcm = fixture_pcm("hello.wav");
    let mut ws = Ws::connect(&server, "interim_results=false");
    ws.stream_audio(&pcm[..pcm.len() / 2], FRAME_BYTES);
    ws.send_text(r#"{"type":"end"}"#);
    let (messages, close) = ws.read_to_close();
    assert_eq!(close, Some(1000));
    assert_eq!(finals(&messages).len(), 1, "{messages:#?}");
    assert_eq!(
        messages.last().map(|m| &m["reason"]),
        Some(&Value::from("client_end"))
    );
}

#[test]
fn finalize_ends_the_segment_and_the_session_goes_on() {
    let server = Server::start(&[]);
    let pcm = fixture_pcm("hello.wav");
    let mut ws = Ws::connect(&server, "interim_results=false");
    ws.next_json();
    ws.stream_audio(&pcm[..pcm.len() / 2], FRAME_BYTES);
    ws.send_text(r#"{"type":"finalize"}"#);
    let mut seen = Vec::new();
    while finals(&seen).is_empty() {
        seen.push(ws.next_json().expect("a message"));
    }
    assert_eq!(finals(&seen)[0]["segment_id"], 0);
    // Still open: more speech makes another segment.
    ws.stream_audio(&pcm, FRAME_BYTES);
    ws.send_text(r#"{"type":"end"}"#);
    let (rest, close) = ws.read_to_close();
    assert_eq!(close, Some(1000));
    seen.extend(rest);
    assert_ordered(&seen);
    assert!(finals(&seen).len() >= 2, "{seen:#?}");
}

#[test]
fn odd_length_frames_and_byte_by_byte_frames_give_the_same_finals() {
    let server = Server::start(&[]);
    let pcm = fixture_pcm("two_utterances.wav");
    let run = |frame_bytes: usize| {
        let mut ws = Ws::connect(&server, "interim_results=false");
        ws.stream_audio(&pcm, frame_bytes);
        ws.send_text(r#"{"type":"end"}"#);
        let (messages, _) = ws.read_to_close();
        finals(&messages)
            .iter()
            .map(|f| (f["start"].clone(), f["text"].clone()))
            .collect::<Vec<_>>()
    };
    let even = run(FRAME_BYTES);
    assert_eq!(even.len(), 2);
    assert_eq!(run(333), even);
    assert_eq!(run(1001), even);

    // WebSocket frames whose bytes reach the server one at a time.
    let mut raw = RawWs::connect(&server, "interim_results=false");
    for frame in pcm.chunks(4000).take(3) {
        raw.send_frame_bytewise(0x2, frame);
    }
    raw.send_frame_bytewise(0x1, br#"{"type":"keepalive"}"#);
    raw.send_frame(0x2, &pcm[12_000..]);
    raw.send_frame(0x1, br#"{"type":"end"}"#);
    let messages = raw.read_messages_until_close();
    let got: Vec<_> = finals(&messages)
        .iter()
        .map(|f| (f["start"].clone(), f["text"].clone()))
        .collect();
    assert_eq!(got, even);
}

#[test]
fn bad_messages_get_invalid_message_and_the_session_goes_on() {
    let server = Server::start(&[]);
    let mut ws = Ws::connect(&server, "");
    ws.next_json();
    for bad in [
        "not json",
        r#"{"type":"dance"}"#,
        r#"{"no_type":1}"#,
        r#"{"type":"config","colour":"red"}"#,
    ] {
        ws.send_text(bad);
        let error = ws.next_json().expect("an error");
        assert_eq!(error["type"], "error");
        assert_eq!(error["code"], "invalid_message", "{bad}");
    }
    ws.send_text(r#"{"type":"keepalive"}"#);
    ws.send_audio(&fixture_pcm("hello.wav"));
    ws.send_text(r#"{"type":"config","vad_mode":1}"#);
    let mut error = ws.next_json().expect("a message");
    while error["type"] != "error" {
        error = ws.next_json().expect("a message");
    }
    assert_eq!(error["code"], "invalid_message");
    assert!(error["message"]
        .as_str()
        .unwrap_or("")
        .contains("before the first audio"));
    ws.send_text(r#"{"type":"end"}"#);
    let (messages, close) = ws.read_to_close();
    assert_eq!(close, Some(1000));
    assert_eq!(finals(&messages).len(), 1);
}

#[test]
fn bad_parameters_are_unsupported_format_with_close_1003() {
    let server = Server::start(&[]);
    for query in [
        "sample_rate=44100",
        "encoding=opus",
        "vad_mode=5",
        "interim_results=perhaps",
    ] {
        let mut ws = Ws::connect(&server, query);
        let (messages, close) = ws.read_to_close();
        assert_eq!(close, Some(1003), "{query}");
        assert_eq!(messages.len(), 1, "no session_start: {messages:#?}");
        assert_eq!(messages[0]["code"], "unsupported_format");
    }
    // The same through config before any audio.
    let mut ws = Ws::connect(&server, "");
    ws.next_json();
    ws.send_text(r#"{"type":"config","sample_rate":11025}"#);
    let (messages, close) = ws.read_to_close();
    assert_eq!(close, Some(1003));
    assert_eq!(messages[0]["code"], "unsupported_format");
}

#[test]
fn a_config_message_before_audio_takes_effect() {
    let server = Server::start(&[]);
    let wav8k = fixture("hello_8k.wav");
    let batch = post(&server, "/v1/transcribe", "audio/wav", &wav8k, &[]).json();
    let mut ws = Ws::connect(&server, "interim_results=false");
    ws.next_json();
    ws.send_text(r#"{"type":"config","sample_rate":8000,"encoding":"pcm_s16le"}"#);
    ws.stream_audio(&wav8k[44..], 320);
    ws.send_text(r#"{"type":"end"}"#);
    let (messages, _) = ws.read_to_close();
    assert_eq!(finals(&messages).len(), 1, "{messages:#?}");
    assert_eq!(finals(&messages)[0]["text"], batch["text"]);
}

#[test]
fn oversized_messages_are_closed_with_1009() {
    let server = Server::start(&["--max-ws-message-bytes", "4096"]);
    let mut ws = Ws::connect(&server, "");
    ws.next_json();
    ws.send_audio(&vec![0u8; 10_000]);
    let (messages, close) = ws.read_to_close();
    assert_eq!(close, Some(1009));
    assert_eq!(
        messages.last().map(|m| &m["code"]),
        Some(&Value::from("message_too_large"))
    );
}

#[test]
fn ping_is_answered_with_pong() {
    let server = Server::start(&[]);
    let mut raw = RawWs::connect(&server, "");
    raw.send_frame(0x9, b"are you there");
    let (opcode, payload) = raw.read_frame_skipping_text();
    assert_eq!(opcode, 0xA);
    assert_eq!(payload, b"are you there");
}

#[test]
fn the_session_limit_is_enforced_and_freed_after_a_close() {
    let server = Server::start(&["--max-sessions", "2", "--cores", "2"]);
    let mut first = Ws::connect(&server, "");
    first.next_json();
    let mut second = Ws::connect(&server, "");
    second.next_json();
    let mut third = Ws::connect(&server, "");
    let (messages, close) = third.read_to_close();
    assert_eq!(close, Some(1013));
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["code"], "session_limit_exceeded");
    assert_eq!(get(&server, "/v1/health").json()["active_sessions"], 2);

    first.send_text(r#"{"type":"end"}"#);
    first.read_to_close();
    assert_active_sessions(&server, 1, Duration::from_secs(10));
    let mut fourth = Ws::connect(&server, "");
    assert_eq!(
        fourth.next_json().expect("a message")["type"],
        "session_start"
    );
    assert!(eventually(Duration::from_secs(10), || get(
        &server,
        "/v1/sessions/metrics"
    )
    .json()["rejected"]
        == 1));
}

#[test]
fn idle_sessions_are_closed_with_idle_timeout() {
    let server = Server::start(&[
        "--session-idle-timeout-seconds",
        "1",
        "--session-cleanup-interval-seconds",
        "1",
    ]);
    let mut ws = Ws::connect(&server, "");
    ws.next_json();
    let (messages, close) = ws.read_to_close();
    assert_eq!(close, Some(1000));
    assert_eq!(
        messages.last().map(|m| &m["reason"]),
        Some(&Value::from("idle_timeout"))
    );
    assert!(eventually(Duration::from_secs(10), || {
        let metrics = get(&server, "/v1/sessions/metrics").json();
        metrics["idle_timeouts"] == 1 && metrics["active_sessions"] == 0
    }));
}

#[test]
fn a_disconnect_without_a_close_frame_releases_the_session() {
    let server = Server::start(&[]);
    let mut ws = Ws::connect(&server, "");
    ws.next_json();
    ws.stream_audio(&fixture_pcm("hello.wav")[..20_000], FRAME_BYTES);
    assert_eq!(get(&server, "/v1/health").json()["active_sessions"], 1);
    // Drop the TCP connection without a WebSocket close.
    drop(ws);
    assert!(eventually(Duration::from_secs(10), || {
        get(&server, "/v1/health").json()["active_sessions"] == 0
            && get(&server, "/v1/sessions").json()["count"] == 0
    }));
}

#[test]
fn operators_list_inspect_and_terminate_sessions_from_another_core() {
    let server = Server::start(&["--cores", "2"]);
    let mut ws = Ws::connect(&server, "");
    let id = ws.next_json().expect("start")["session_id"]
        .as_str()
        .expect("id")
        .to_string();
    ws.stream_audio(&fixture_pcm("hello.wav")[..32_000], FRAME_BYTES);
    let listed = get(&server, "/v1/sessions").json();
    assert_eq!(listed["count"], 1);
    let session = &listed["sessions"][0];
    assert_eq!(session["session_id"], id.as_str());
    for field in [
        "state",
        "core",
        "created_at",
        "last_activity_at",
        "idle_s",
        "audio_bytes",
        "audio_seconds",
        "chunks",
        "segments",
        "transcripts",
        "peer",
    ] {
        assert!(session.get(field).is_some(), "{field} missing: {session}");
    }
    assert!(session["created_at"].as_str().unwrap_or("").ends_with('Z'));
    assert_eq!(
        get(&server, "/v1/sessions?state=created").json()["count"],
        0
    );
    assert!(eventually(Duration::from_secs(5), || get(
        &server,
        "/v1/sessions?state=active&limit=1"
    )
    .json()["count"]
        == 1));
    assert_eq!(get(&server, "/v1/sessions?state=sleeping").status, 400);
    assert_eq!(get(&server, "/v1/sessions?limit=0").status, 400);
    let one = get(&server, &format!("/v1/sessions/{id}"));
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["session_id"], id.as_str());
    let owner = session["core"].as_u64().expect("core");

    // DELETE from a connection served by the other core: ask on fresh
    // connections which core serves them until one is not the owner.
    let mut deleted = None;
    for _ in 0..500 {
        let mut raw = Raw::connect(&server);
        raw.send(b"GET /v1/health HTTP/1.1\r\n\r\n");
        let probe = raw.read_response().expect("a response");
        let served_by: u64 = probe
            .header("x-served-by-core")
            .and_then(|c| c.parse().ok())
            .expect("core header");
        if served_by != owner {
            raw.send(format!("DELETE /v1/sessions/{id} HTTP/1.1\r\n\r\n").as_bytes());
            deleted = Some(raw.read_response().expect("a response"));
            break;
        }
    }
    let deleted = deleted.expect("deleted");
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    assert_eq!(
        deleted.json(),
        serde_json::json!({"session_id": id, "state": "closed"})
    );
    let (messages, close) = ws.read_to_close();
    assert_eq!(close, Some(1000));
    assert_eq!(
        messages.last().map(|m| &m["reason"]),
        Some(&Value::from("terminated"))
    );
    assert!(eventually(Duration::from_secs(5), || get(
        &server,
        &format!("/v1/sessions/{id}")
    )
    .status
        == 404));
    let missing = crate::support::delete(&server, "/v1/sessions/no-such-session");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.error_code(), "session_not_found");
}

#[test]
fn session_metrics_have_the_contract_shape_and_move() {
    let server = Server::start(&[]);
    let mut ws = Ws::connect(&server, "");
    ws.next_json();
    let pcm = fixture_pcm("two_utterances.wav");
    ws.stream_audio(&pcm, FRAME_BYTES);
    ws.send_text(r#"{"type":"end"}"#);
    ws.read_to_close();
    assert!(eventually(Duration::from_secs(10), || get(
        &server,
        "/v1/sessions/metrics"
    )
    .json()["total_closed"]
        == 1));
    let metrics = get(&server, "/v1/sessions/metrics").json();
    assert_eq!(metrics["active_sessions"], 0);
    assert_eq!(
        metrics["by_state"],
        serde_json::json!({"created": 0, "active": 0, "closing": 0})
    );
    assert_eq!(metrics["max_sessions"], 1000);
    assert_eq!(metrics["total_created"], 1);
    assert_eq!(metrics["rejected"], 0);
    assert_eq!(metrics["audio_bytes"], pcm.len() as u64);
    assert_eq!(metrics["segments"], 2);
    assert!(metrics["transcripts"].as_u64() >= Some(2));
    assert!(metrics["audio_seconds"].as_f64() > Some(4.0));
    for kind in ["final", "model"] {
        for quantile in ["p50", "p90", "p99", "max"] {
            assert!(
                metrics["latency_ms"][kind][quantile].as_f64().is_some(),
                "{kind} {quantile}"
            );
        }
    }
    assert!(metrics["latency_ms"]["final"]["max"].as_f64() > Some(0.0));
}

#[test]
fn keys_guard_the_stream_and_the_operator_endpoints() {
    let server = Server::start(&["--api-key", "k1", "--admin-key", "a1"]);
    let refused = Ws::try_connect(&server, "", &[])
        .err()
        .expect("refused before the upgrade");
    assert_eq!(refused.status, 401);
    let refused = Ws::try_connect(&server, "access_token=wrong", &[])
        .err()
        .expect("refused");
    assert_eq!(refused.status, 401);
    let mut ws = Ws::try_connect(&server, "access_token=k1", &[]).expect("query token");
    assert_eq!(ws.next_json().expect("start")["type"], "session_start");
    let mut ws2 =
        Ws::try_connect(&server, "", &[("Authorization", "Bearer k1")]).expect("header token");
    assert_eq!(ws2.next_json().expect("start")["type"], "session_start");

    assert_eq!(get(&server, "/v1/sessions").status, 401);
    let with = |key: &str| {
        let mut raw = Raw::connect(&server);
        raw.send(
            format!("GET /v1/sessions/metrics HTTP/1.1\r\nAuthorization: Bearer {key}\r\n\r\n")
                .as_bytes(),
        );
        raw.read_response().expect("a response")
    };
    assert_eq!(with("k1").status, 401, "the API key is not the admin key");
    assert_eq!(with("a1").status, 200);
}

#[test]
fn a_plain_get_on_the_stream_endpoint_is_400() {
    let server = Server::start(&[]);
    let reply = get(&server, "/v1/transcribe/stream");
    assert_eq!(reply.status, 400);
    assert_eq!(reply.error_code(), "bad_request");
}

/// `DELETE /v1/sessions/{id}?flush=true`: the session stops taking audio,
/// the finals already computing are delivered (here one the engine holds
/// until the test lets it go), then `session_end` `terminated`, close 1000.
/// A plain DELETE of the same situation ends at once, its final lost.
/// (Before, `?flush=true` was ignored: the held final never arrived.)
#[cfg(feature = "fault-injection")]
#[test]
fn a_flushing_delete_delivers_the_finals_being_computed_then_terminates() {
    use crate::support::{model_jobs_pending, Hold};
    let hold = Hold::new("flush");
    let server = Server::start_with_env(&["--cores", "2", "--model-workers", "2"], &[hold.env()]);
    let pcm = fixture_pcm("hello.wav");
    let open_with_held_final = || {
        let mut ws = Ws::connect(&server, "language=xx-hold&interim_results=false");
        let id = ws.next_json().expect("start")["session_id"]
            .as_str()
            .expect("id")
            .to_string();
        ws.stream_audio(&pcm, FRAME_BYTES);
        ws.stream_audio(&vec![0u8; 32_000], FRAME_BYTES);
        (ws, id)
    };
    let (mut flushed, flushed_id) = open_with_held_final();
    let (mut plain, plain_id) = open_with_held_final();
    let sent = (pcm.len() + 32_000) as u64;
    assert!(eventually(Duration::from_secs(20), || model_jobs_pending(
        &server
    ) >= 2.0));

    let bad = crate::support::delete(&server, &format!("/v1/sessions/{flushed_id}?flush=maybe"));
    assert_eq!(bad.status, 400);
    let reply = crate::support::delete(&server, &format!("/v1/sessions/{flushed_id}?flush=true"));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["state"], "closing");
    // Audio after the flushing delete is not taken.
    flushed.stream_audio(&pcm, FRAME_BYTES);
    let reply = crate::support::delete(&server, &format!("/v1/sessions/{plain_id}"));
    assert_eq!(reply.json()["state"], "closed");
    let (messages, close) = plain.read_to_close();
    assert!(finals(&messages).is_empty(), "{messages:#?}");
    assert_eq!(messages.last().expect("end")["reason"], "terminated");
    assert_eq!(close, Some(1000));

    hold.release();
    let (messages, close) = flushed.read_to_close();
    assert_eq!(finals(&messages).len(), 1, "{messages:#?}");
    let end = messages.last().expect("end");
    assert_eq!(end["type"], "session_end");
    assert_eq!(end["reason"], "terminated");
    assert_eq!(end["metrics"]["audio_bytes"], sent);
    assert_eq!(close, Some(1000));
    assert_active_sessions(&server, 0, Duration::from_secs(10));
}

/// RFC 6455 §4.4: an upgrade asking for a WebSocket version the server does
/// not speak is `426 Upgrade Required` with `Sec-WebSocket-Version: 13` (and
/// the JSON error body), so the client can retry with 13, which works.
#[test]
fn an_unsupported_websocket_version_is_426_with_the_version_spoken() {
    let server = Server::start(&[]);
    for version in ["8", "14"] {
        let mut raw = Raw::connect(&server);
        raw.send(
            format!(
                "GET /v1/transcribe/stream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: {version}\r\n\r\n"
            )
            .as_bytes(),
        );
        let reply = raw.read_response().expect("an answer");
        assert_eq!(reply.status, 426, "{}", reply.text());
        assert_eq!(reply.header("sec-websocket-version"), Some("13"));
        assert_eq!(reply.header("upgrade"), Some("websocket"));
        assert_eq!(reply.error_code(), "upgrade_required");
    }
    let mut ws = Ws::connect(&server, "");
    assert_eq!(
        ws.next_json().expect("session_start")["type"],
        "session_start"
    );
}

/// A text message whose reply is an error (not sheddable, unlike an
/// interim), for piling up replies a client does not read.
const BAD_MESSAGE: &[u8] = br#"{"type":"nonsense","padding":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#;

/// Sends up to `count` [`BAD_MESSAGE`]s without reading a reply; returns how
/// many were sent before the server stopped reading (or all of them).
fn send_unread_bad_messages(raw: &mut RawWs, count: usize) -> usize {
    let mut sent = 0;
    while sent < count && raw.try_send_frame(0x1, BAD_MESSAGE) {
        sent += 1;
    }
    sent
}

/// Waits until the server counted one slow consumer, then reads what the
/// client was sent: the rest of its backlog (if any), the error and 1008.
fn assert_closed_as_slow_consumer(server: &Server, raw: &mut RawWs, sent: usize) {
    assert!(
        eventually(Duration::from_secs(10), || metric(
            server,
            "transcribe_slow_consumers_total",
            &[]
        ) == Some(1.0)),
        "no slow consumer counted after {sent} unread replies"
    );
    let (messages, close) = raw.drain_after_close();
    assert_eq!(
        close,
        Some(1008),
        "after {sent} messages sent and {} read",
        messages.len()
    );
    let last = messages.last().expect("messages");
    assert_eq!(last["code"], "slow_consumer");
    assert!(
        messages.len() < sent,
        "the backlog was dropped, not all {sent} replies sent"
    );
    assert!(eventually(Duration::from_secs(10), || {
        let metrics = get(server, "/v1/sessions/metrics").json();
        metrics["total_closed"] == 1 && metrics["active_sessions"] == 0
    }));
}

#[test]
fn a_client_that_does_not_read_is_closed_as_a_slow_consumer() {
    // Past the hard cap (4 x 16 queued replies) the client is closed at
    // once: the timer is a minute away, so only the cap can close this client
    // within the test's patience.
    let server = Server::start(&[
        "--ws-outbound-messages-max",
        "16",
        "--slow-consumer-timeout-ms",
        "60000",
    ]);
    let mut raw = RawWs::connect_with_small_receive_buffer(&server, "");
    // Enough unread replies to fill every socket buffer between us and then
    // the queue past its cap.
    let sent = send_unread_bad_messages(&mut raw, 40_000);
    assert_closed_as_slow_consumer(&server, &mut raw, sent);
}

#[test]
fn a_backlog_over_the_bound_but_under_the_cap_closes_a_slow_consumer_on_the_timer() {
    // Bound 200 replies, hard cap 800. Each message names an unknown type of
    // 60 KB, and the `invalid_message` reply quotes it: socket buffers (a few
    // MB on loopback) hold at most ~100 such replies, so of 700 unread ones
    // more than 200 stay queued, yet never the 800 of the cap. Only the
    // slow-consumer timer can close this client.
    let server = Server::start(&[
        "--ws-outbound-messages-max",
        "200",
        "--slow-consumer-timeout-ms",
        "300",
    ]);
    let mut raw = RawWs::connect_with_small_receive_buffer(&server, "");
    let big = format!(r#"{{"type":"{}"}}"#, "x".repeat(60_000));
    let mut sent = 0;
    while sent < 700 && raw.try_send_frame(0x1, big.as_bytes()) {
        sent += 1;
    }
    assert_closed_as_slow_consumer(&server, &mut raw, sent);
}

#[test]
fn two_hundred_concurrent_sessions_all_get_correct_ordered_finals() {
    let server = std::sync::Arc::new(Server::start(&["--cores", "2"]));
    let pcm = std::sync::Arc::new(fixture_pcm("two_utterances.wav"));
    let expected = post(
        &server,
        "/v1/transcribe",
        "audio/wav",
        &fixture("two_utterances.wav"),
        &[],
    )
    .json()["text"]
        .as_str()
        .expect("text")
        .to_string();
    let clients: Vec<_> = (0..200)
        .map(|_| {
            let server = std::sync::Arc::clone(&server);
            let pcm = std::sync::Arc::clone(&pcm);
            std::thread::spawn(move || {
                let mut ws = Ws::connect(&server, "");
                ws.stream_audio(&pcm, 3200);
                ws.send_text(r#"{"type":"end"}"#);
                ws.read_to_close()
            })
        })
        .collect();
    for client in clients {
        let (messages, close) = client.join().expect("client");
        assert_eq!(close, Some(1000));
        assert_ordered(&messages);
        let text: Vec<&str> = finals(&messages)
            .iter()
            .filter_map(|f| f["text"].as_str())
            .collect();
        assert_eq!(text.join(" "), expected);
    }
    assert_active_sessions(&server, 0, Duration::from_secs(10));
}

/// A WebSocket client on a raw socket, for what tungstenite would not do:
/// frames delivered byte by byte, a tiny receive buffer, not reading at all.
struct RawWs {
    stream: TcpStream,
    pending: Vec<u8>,
}

impl RawWs {
    fn connect(server: &Server, query: &str) -> RawWs {
        let stream = TcpStream::connect(server.addr).expect("connect");
        RawWs::handshake(stream, query)
    }

    fn connect_with_small_receive_buffer(server: &Server, query: &str) -> RawWs {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        socket.set_recv_buffer_size(4096).expect("rcvbuf");
        socket.connect(&server.addr.into()).expect("connect");
        RawWs::handshake(socket.into(), query)
    }

    fn handshake(mut stream: TcpStream, query: &str) -> RawWs {
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        stream
            .write_all(
                format!(
                    "GET /v1/transcribe/stream?{query} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                )
                .as_bytes(),
            )
            .expect("write");
        let mut pending = Vec::new();
        let mut chunk = [0u8; 1024];
        let head_end = loop {
            let n = stream.read(&mut chunk).expect("read");
            assert!(n > 0, "closed during the handshake");
            pending.extend_from_slice(&chunk[..n]);
            if let Some(position) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break position + 4;
            }
        };
        let head = String::from_utf8_lossy(&pending[..head_end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        pending.drain(..head_end);
        RawWs { stream, pending }
    }

    fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37u8, 0xfa, 0x21, 0x3d];
        let mut frame = vec![0x80 | opcode];
        match payload.len() {
            len if len < 126 => frame.push(0x80 | len as u8),
            len if len < 65_536 => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        frame
    }

    fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        self.stream
            .write_all(&RawWs::frame(opcode, payload))
            .expect("write");
    }

    /// Send one frame; false when the socket refuses (the server closed it).
    fn try_send_frame(&mut self, opcode: u8, payload: &[u8]) -> bool {
        self.stream
            .set_write_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        self.stream
            .write_all(&RawWs::frame(opcode, payload))
            .is_ok()
    }

    fn send_frame_bytewise(&mut self, opcode: u8, payload: &[u8]) {
        for byte in RawWs::frame(opcode, payload) {
            self.stream.write_all(&[byte]).expect("write");
        }
    }

    /// Read one server frame (unmasked): opcode and payload. `None` at EOF.
    fn read_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.pending.len() >= 2 {
                let opcode = self.pending[0] & 0x0f;
                let (len, header) = match self.pending[1] & 0x7f {
                    126 if self.pending.len() >= 4 => (
                        u16::from_be_bytes([self.pending[2], self.pending[3]]) as usize,
                        4,
                    ),
                    127 if self.pending.len() >= 10 => {
                        let mut bytes = [0u8; 8];
                        bytes.copy_from_slice(&self.pending[2..10]);
                        (u64::from_be_bytes(bytes) as usize, 10)
                    }
                    len if len < 126 => (len as usize, 2),
                    _ => (usize::MAX, 0),
                };
                if len != usize::MAX && self.pending.len() >= header + len {
                    let payload = self.pending[header..header + len].to_vec();
                    self.pending.drain(..header + len);
                    return Some((opcode, payload));
                }
            }
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn read_frame_skipping_text(&mut self) -> (u8, Vec<u8>) {
        loop {
            let (opcode, payload) = self.read_frame().expect("a frame");
            if opcode != 0x1 {
                return (opcode, payload);
            }
        }
    }

    fn read_messages_until_close(&mut self) -> Vec<Value> {
        self.drain_after_close().0
    }

    /// Every text message until the close frame (its code) or EOF (`None`).
    fn drain_after_close(&mut self) -> (Vec<Value>, Option<u16>) {
        let mut messages = Vec::new();
        while let Some((opcode, payload)) = self.read_frame() {
            match opcode {
                0x1 => messages.push(serde_json::from_slice(&payload).expect("JSON")),
                0x8 => {
                    let code =
                        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    return (messages, code);
                }
                _ => {}
            }
        }
        (messages, None)
    }
}

#[test]
fn frames_that_break_the_protocol_get_protocol_error_and_1002_or_1007() {
    let server = Server::start(&[]);
    let masked = |first: u8, payload: &[u8]| {
        let mut frame = RawWs::frame(0x2, payload);
        frame[0] = first;
        frame
    };
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("unmasked", vec![0x82, 0x02, 0x00, 0x00], 1002),
        ("reserved bit", masked(0x80 | 0x40 | 0x2, &[0, 0]), 1002),
        ("unknown opcode", masked(0x80 | 0x3, &[0, 0]), 1002),
        ("fragmented ping", masked(0x9, b"hi"), 1002),
        ("continuation first", masked(0x80, &[0, 0]), 1002),
        (
            "text not UTF-8",
            RawWs::frame(0x1, &[0xff, 0xfe, 0x80]),
            1007,
        ),
    ];
    for (name, bytes, expected) in cases {
        let mut ws = RawWs::connect(&server, "");
        assert_eq!(
            ws.read_frame().map(|f| f.0),
            Some(0x1),
            "{name}: session_start"
        );
        ws.stream.write_all(&bytes).expect("write");
        let (messages, close) = ws.drain_after_close();
        assert_eq!(close, Some(expected), "{name}: {messages:#?}");
        let error = messages.last().expect("an error before the close");
        assert_eq!(error["code"], "protocol_error", "{name}");
    }
    assert_active_sessions(&server, 0, Duration::from_secs(10));
}

#[test]
fn a_full_model_queue_delays_finals_but_never_loses_them() {
    // One slow worker and a queue of one: most finals are refused at first
    // and must be retried until they get through.
    let server = std::sync::Arc::new(Server::start(&[
        "--model-workers",
        "1",
        "--model-queue-capacity",
        "1",
        "--mock-latency-ms",
        "30",
        "--cores",
        "2",
    ]));
    let pcm = std::sync::Arc::new(fixture_pcm("two_utterances.wav"));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let server = std::sync::Arc::clone(&server);
            let pcm = std::sync::Arc::clone(&pcm);
            std::thread::spawn(move || {
                let mut ws = Ws::connect(&server, "interim_results=false");
                ws.stream_audio(&pcm, 3200);
                ws.send_text(r#"{"type":"end"}"#);
                ws.read_to_close()
            })
        })
        .collect();
    let mut warned = 0;
    for client in clients {
        let (messages, close) = client.join().expect("client");
        assert_eq!(close, Some(1000), "{messages:#?}");
        assert_ordered(&messages);
        assert_eq!(finals(&messages).len(), 2, "{messages:#?}");
        warned += messages
            .iter()
            .filter(|m| m["code"] == "overloaded")
            .count();
    }
    assert!(warned >= 1, "a full queue is announced with `overloaded`");
}

#[test]
fn jobs_of_sessions_that_have_gone_are_dropped_not_computed() {
    // One worker that takes 3 s a job: six streams of two utterances leave
    // about a dozen finals queued, half a minute of work, when their clients
    // vanish. The queue must empty without that work being done. (Admission
    // by capacity is off: it would admit one such stream, and the backlog is
    // the point here.)
    let server = Server::start(&[
        "--model-workers",
        "1",
        "--mock-latency-ms",
        "3000",
        "--engine-max-utilisation",
        "0",
    ]);
    let pcm = fixture_pcm("two_utterances.wav");
    let mut clients = Vec::new();
    for _ in 0..6 {
        let mut ws = Ws::connect(&server, "interim_results=false");
        ws.next_json();
        ws.stream_audio(&pcm, 3200);
        clients.push(ws);
    }
    let depth = || metric(&server, "transcribe_model_queue_depth", &[]).unwrap_or(0.0);
    assert!(
        eventually(Duration::from_secs(10), || depth() >= 5.0),
        "the finals never queued: depth {}",
        depth()
    );
    // Every client drops its connection without a word.
    drop(clients);
    assert_active_sessions(&server, 0, Duration::from_secs(10));
    // The worker finishes the job it is on (3 s), then drops the rest unrun.
    assert!(
        eventually(Duration::from_secs(10), || depth() == 0.0),
        "queue depth stayed at {}",
        depth()
    );
    let dropped = || metric(&server, "transcribe_model_jobs_dropped_total", &[]).unwrap_or(0.0);
    assert!(dropped() >= 4.0, "dropped {}", dropped());
    // The one running when the clients left was the only one computed.
    assert!(
        metric(&server, "transcribe_model_jobs_in_flight", &[]).unwrap_or(0.0) <= 1.0,
        "jobs in flight"
    );
}
