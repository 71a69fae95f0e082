//! Sessions that survive a dropped connection (`--resume-window-seconds`):
//! a client resets its connection in the middle of speech, reconnects with
//! `?resume=<id>&token=<token>` and gets the same session back, with the
//! finals of an uninterrupted run of the same audio (the mock engine is
//! deterministic); to the core that owns the session or another one; and
//! the refusals: wrong token, attached, expired window, unknown session,
//! resumption off.

use std::time::Duration;

use serde_json::Value;

use crate::support::{eventually, fixture_pcm, get, metric, Server, Ws};

/// 20 ms of 16 kHz PCM16.
const FRAME_BYTES: usize = 640;
const FIXTURE: &str = "two_utterances.wav";
/// Long enough never to run out during a test; the expiry test sets its own.
const WINDOW: &str = "60";

fn finals(messages: &[Value]) -> Vec<Value> {
    messages
        .iter()
        .filter(|m| m["type"] == "transcript" && m["is_final"] == true)
        .cloned()
        .collect()
}

/// The finals of an uninterrupted run of the fixture.
fn reference_finals(server: &Server) -> Vec<Value> {
    reference_finals_with(server, "interim_results=false")
}

/// [`reference_finals`] with the stream parameters `query`.
fn reference_finals_with(server: &Server, query: &str) -> Vec<Value> {
    let mut ws = Ws::connect(server, query);
    ws.next_json().expect("session_start");
    ws.stream_audio(&fixture_pcm(FIXTURE), FRAME_BYTES);
    ws.send_text(r#"{"type":"end"}"#);
    let (messages, close) = ws.read_to_close();
    assert_eq!(close, Some(1000));
    let finals = finals(&messages);
    assert_eq!(finals.len(), 2, "{messages:#?}");
    finals
}

/// A new session: the socket, its id and its resume token.
fn start(server: &Server) -> (Ws, String, String) {
    start_with(server, "interim_results=false")
}

/// [`start`] with the stream parameters `query`.
fn start_with(server: &Server, query: &str) -> (Ws, String, String) {
    let mut ws = Ws::connect(server, query);
    let start = ws.next_json().expect("session_start");
    assert_eq!(start["type"], "session_start");
    let id = start["session_id"].as_str().expect("id").to_string();
    let token = start["resume_token"]
        .as_str()
        .expect("resumption is on: session_start has a token")
        .to_string();
    (ws, id, token)
}

/// Drop the connection with a TCP reset (SO_LINGER 0), no close frame.
fn reset(ws: Ws) {
    socket2::SockRef::from(ws.socket.get_ref())
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
    drop(ws);
}

fn session(server: &Server, id: &str) -> Value {
    get(server, &format!("/v1/sessions/{id}")).json()
}

/// Wait until the server has taken `bytes` bytes of the session's audio.
fn wait_for_audio(server: &Server, id: &str, bytes: usize) {
    assert!(
        eventually(Duration::from_secs(20), || session(server, id)
            ["audio_bytes"]
            == bytes as u64),
        "the server never had {bytes} bytes: {}",
        session(server, id)
    );
}

fn wait_detached(server: &Server, id: &str) {
    assert!(
        eventually(Duration::from_secs(20), || session(server, id)["detached"]
            == true),
        "never detached: {} {:#?}",
        session(server, id),
        server.stderr_lines()
    );
}

/// A sample offset in the middle of segment `index` of the reference run,
/// on a frame boundary.
fn middle_of(finals: &[Value], index: usize) -> usize {
    let start = finals[index]["start"].as_f64().expect("start");
    let end = finals[index]["end"].as_f64().expect("end");
    let sample = ((start + end) / 2.0 * 16_000.0) as usize;
    sample / (FRAME_BYTES / 2) * (FRAME_BYTES / 2)
}

fn resume(server: &Server, query: &str) -> Ws {
    Ws::connect(server, query)
}

/// The refusal a resume gets: its error code and close code.
fn refusal(server: &Server, query: &str) -> (String, Option<u16>) {
    let mut ws = resume(server, query);
    let (messages, close) = ws.read_to_close();
    assert_eq!(
        messages.len(),
        1,
        "one error, then the close: {messages:#?}"
    );
    assert_eq!(messages[0]["type"], "error");
    (
        messages[0]["code"].as_str().expect("code").to_string(),
        close,
    )
}

/// The counter's value once it has reached `at_least` (metrics are
/// published every 250 ms).
fn counter_reaches(server: &Server, name: &str, at_least: f64) -> bool {
    eventually(Duration::from_secs(10), || {
        metric(server, name, &[]).unwrap_or(0.0) >= at_least
    })
}

#[test]
fn a_reset_in_the_middle_of_speech_resumes_with_exact_finals_and_offsets() {
    let server = Server::start(&["--resume-window-seconds", WINDOW]);
    let reference = reference_finals(&server);
    let pcm = fixture_pcm(FIXTURE);
    // Cut in the middle of the second utterance: the first one's final is
    // due before the cut, the second's needs audio from both connections.
    let cut = middle_of(&reference, 1);
    let (mut ws, id, token) = start(&server);
    ws.stream_audio(&pcm[..cut * 2], FRAME_BYTES);
    wait_for_audio(&server, &id, cut * 2);
    reset(ws);
    wait_detached(&server, &id);
    // Still a live session, counted, with its figures.
    assert_eq!(get(&server, "/v1/health").json()["active_sessions"], 1);
    let listed = get(&server, "/v1/sessions").json();
    assert_eq!(listed["count"], 1);
    assert_eq!(listed["sessions"][0]["detached"], true);
    // The first final is computed while nobody is connected.
    assert!(eventually(Duration::from_secs(20), || session(
        &server, &id
    )["transcripts"]
        == 1));

    // The client never read anything (last_segment_id=-1) and resends the
    // last quarter second it is not sure the server got.
    let overlap = 4_000;
    let from = cut - overlap;
    let mut ws = resume(
        &server,
        &format!("resume={id}&token={token}&from_sample={from}&last_segment_id=-1"),
    );
    let resumed = ws.next_json().expect("session_resumed");
    assert_eq!(resumed["type"], "session_resumed", "{resumed}");
    assert_eq!(resumed["session_id"], id.as_str());
    assert_eq!(resumed["audio_samples"], cut as u64);
    assert_eq!(resumed["audio_ms"], cut as f64 / 16.0);
    assert_eq!(resumed["skip_samples"], overlap as u64);
    assert_eq!(resumed["replayed_finals"], 1);
    ws.stream_audio(&pcm[from * 2..], FRAME_BYTES);
    ws.send_text(r#"{"type":"end"}"#);
    let (messages, close) = ws.read_to_close();
    assert_eq!(close, Some(1000));
    // The replayed final comes first, then the rest, once each, in order,
    // exactly as without the reset.
    assert_eq!(messages[0]["type"], "transcript", "{messages:#?}");
    assert_eq!(finals(&messages), reference, "{messages:#?}");
    let end = messages.last().expect("session_end");
    assert_eq!(end["type"], "session_end");
    assert_eq!(end["session_id"], id.as_str());
    assert_eq!(end["reason"], "client_end");
    assert_eq!(
        end["metrics"]["audio_seconds"].as_f64(),
        Some((pcm.len() as f64 / 32.0).round() / 1000.0),
        "no audio lost or doubled"
    );
    assert!(counter_reaches(
        &server,
        "transcribe_session_resumes_total",
        1.0
    ));
    assert!(counter_reaches(
        &server,
        "transcribe_session_detaches_total",
        1.0
    ));
}

#[test]
fn a_resume_landing_on_another_core_is_handed_to_the_owner() {
    let server = Server::start(&["--resume-window-seconds", WINDOW, "--cores", "2"]);
    let reference = reference_finals(&server);
    let pcm = fixture_pcm(FIXTURE);
    let (mut ws, id, token) = start(&server);
    let owner = session(&server, &id)["core"].clone();
    // Reset and resume in steps through the first utterance until one
    // resuming connection has landed on the other core (each lands on
    // either, by the kernel's hash of its address); every step continues
    // exactly where the server's audio ends.
    let mut sent = 0;
    let mut last_final: i64 = -1;
    let mut collected = Vec::new();
    let step = middle_of(&reference, 0) / 12 * 2 / FRAME_BYTES * FRAME_BYTES;
    for round in 0.. {
        assert!(round < 12, "no resume landed on the other core in 12 tries");
        ws.stream_audio(&pcm[sent..sent + step], FRAME_BYTES);
        sent += step;
        wait_for_audio(&server, &id, sent);
        reset(ws);
        wait_detached(&server, &id);
        ws = resume(
            &server,
            &format!("resume={id}&token={token}&last_segment_id={last_final}"),
        );
        let resumed = ws.next_json().expect("session_resumed");
        assert_eq!(resumed["type"], "session_resumed", "{resumed}");
        assert_eq!(resumed["audio_samples"], (sent / 2) as u64);
        assert_eq!(resumed["skip_samples"], 0);
        for _ in 0..resumed["replayed_finals"].as_u64().unwrap_or(0) {
            let replayed = ws.next_json().expect("a replayed final");
            last_final = replayed["segment_id"].as_i64().expect("segment_id");
            collected.push(replayed);
        }
        // Metrics are published every 250 ms: wait for this round's (the
        // owning core counts a resume and its handoff together).
        assert!(counter_reaches(
            &server,
            "transcribe_session_resumes_total",
            f64::from(round + 1)
        ));
        if metric(&server, "transcribe_session_resume_handoffs_total", &[]).unwrap_or(0.0) >= 1.0 {
            break;
        }
    }
    // Handed over, the session still lives on the core that owns it.
    assert_eq!(session(&server, &id)["core"], owner);
    assert_eq!(session(&server, &id)["detached"], false);
    ws.stream_audio(&pcm[sent..], FRAME_BYTES);
    ws.send_text(r#"{"type":"end"}"#);
    let (messages, close) = ws.read_to_close();
    assert_eq!(close, Some(1000));
    collected.extend(finals(&messages));
    assert_eq!(collected, reference, "{messages:#?}");
}

#[test]
fn a_wrong_token_or_an_attached_session_is_refused_and_the_session_goes_on() {
    let server = Server::start(&["--resume-window-seconds", WINDOW]);
    let reference = reference_finals(&server);
    let pcm = fixture_pcm(FIXTURE);
    let (mut ws, id, token) = start(&server);
    let half = pcm.len() / 2 / FRAME_BYTES * FRAME_BYTES;
    ws.stream_audio(&pcm[..half], FRAME_BYTES);
    // Attached: refused even with the right token, told to retry (1013).
    assert_eq!(
        refusal(&server, &format!("resume={id}&token={token}")),
        ("session_attached".to_string(), Some(1013))
    );
    wait_for_audio(&server, &id, half);
    reset(ws);
    wait_detached(&server, &id);
    let mut wrong = token.clone();
    wrong.replace_range(..1, if token.starts_with('0') { "1" } else { "0" });
    for bad in [wrong.as_str(), "short", &token[..63]] {
        assert_eq!(
            refusal(&server, &format!("resume={id}&token={bad}")),
            ("resume_token_invalid".to_string(), Some(1008)),
            "{bad}"
        );
    }
    assert_eq!(
        refusal(&server, &format!("resume={id}")).0,
        "resume_invalid"
    );
    assert_eq!(
        refusal(
            &server,
            &format!("resume=00000000-0000-4000-8000-000000000000&token={token}")
        ),
        ("session_not_found".to_string(), Some(1008))
    );
    // Audio the server does not have cannot be skipped over.
    assert_eq!(
        refusal(
            &server,
            &format!("resume={id}&token={token}&from_sample={}", half / 2 + 1)
        )
        .0,
        "resume_gap"
    );
    assert!(counter_reaches(
        &server,
        "transcribe_session_resumes_refused_total",
        7.0
    ));
    // None of it harmed the session: the right token resumes it.
    let mut ws = resume(
        &server,
        &format!("resume={id}&token={token}&last_segment_id=-1"),
    );
    let resumed = ws.next_json().expect("session_resumed");
    assert_eq!(resumed["audio_samples"], (half / 2) as u64);
    let mut messages = Vec::new();
    for _ in 0..resumed["replayed_finals"].as_u64().unwrap_or(0) {
        messages.push(ws.next_json().expect("replayed"));
    }
    ws.stream_audio(&pcm[half..], FRAME_BYTES);
    ws.send_text(r#"{"type":"end"}"#);
    let (rest, close) = ws.read_to_close();
    assert_eq!(close, Some(1000));
    messages.extend(rest);
    assert_eq!(finals(&messages), reference);
}

#[test]
fn a_session_nobody_resumes_ends_when_its_window_runs_out() {
    let server = Server::start(&["--resume-window-seconds", "0.3"]);
    let (mut ws, id, token) = start(&server);
    let pcm = fixture_pcm(FIXTURE);
    ws.stream_audio(&pcm[..32_000], FRAME_BYTES);
    wait_for_audio(&server, &id, 32_000);
    reset(ws);
    assert!(eventually(Duration::from_secs(20), || {
        get(&server, "/v1/sessions").json()["count"] == 0
            && get(&server, "/v1/health").json()["active_sessions"] == 0
    }));
    assert!(counter_reaches(
        &server,
        "transcribe_session_resume_expiries_total",
        1.0
    ));
    assert_eq!(
        refusal(&server, &format!("resume={id}&token={token}")),
        ("resume_expired".to_string(), Some(1008))
    );
}

#[test]
fn resumption_is_off_by_default() {
    let server = Server::start(&[]);
    let mut ws = Ws::connect(&server, "");
    let start = ws.next_json().expect("session_start");
    assert!(start.get("resume_token").is_none(), "{start}");
    let id = start["session_id"].as_str().expect("id").to_string();
    ws.stream_audio(&fixture_pcm(FIXTURE)[..32_000], FRAME_BYTES);
    reset(ws);
    // A dropped session ends at once, as it always has.
    assert!(eventually(Duration::from_secs(20), || {
        get(&server, "/v1/health").json()["active_sessions"] == 0
    }));
    assert_eq!(
        refusal(&server, &format!("resume={id}&token=anything")),
        ("resume_disabled".to_string(), Some(1008))
    );
}

/// A final the engine computes while nobody is connected is delivered
/// first on the resumed connection, once, even when the client does not say
/// which finals it has (it never got this one: the old socket never took it).
#[cfg(feature = "fault-injection")]
#[test]
fn a_final_computed_while_detached_comes_first_on_the_resumed_connection() {
    use crate::support::{model_jobs_pending, Hold};
    let hold = Hold::new("resume");
    let server = Server::start_with_env(&["--resume-window-seconds", WINDOW], &[hold.env()]);
    let query = "interim_results=false&language=xx-hold";
    let pcm = fixture_pcm(FIXTURE);
    let (mut ws, id, token) = start_with(&server, query);
    // Past the first utterance's end: its final is held in the engine.
    let cut = pcm.len() / 2 / FRAME_BYTES * FRAME_BYTES;
    ws.stream_audio(&pcm[..cut], FRAME_BYTES);
    wait_for_audio(&server, &id, cut);
    assert!(eventually(Duration::from_secs(20), || model_jobs_pending(
        &server
    ) >= 1.0));
    reset(ws);
    wait_detached(&server, &id);
    assert_eq!(session(&server, &id)["transcripts"], 0);
    hold.release();
    assert!(eventually(Duration::from_secs(20), || session(
        &server, &id
    )["transcripts"]
        == 1));

    let mut ws = resume(&server, &format!("resume={id}&token={token}"));
    let resumed = ws.next_json().expect("session_resumed");
    assert_eq!(resumed["type"], "session_resumed", "{resumed}");
    assert_eq!(resumed["audio_samples"], (cut / 2) as u64);
    assert_eq!(resumed["skip_samples"], 0);
    assert_eq!(resumed["replayed_finals"], 1);
    let mut messages = vec![ws.next_json().expect("the final computed meanwhile")];
    assert_eq!(messages[0]["segment_id"], 0, "{messages:#?}");
    ws.stream_audio(&pcm[cut..], FRAME_BYTES);
    ws.send_text(r#"{"type":"end"}"#);
    let (rest, close) = ws.read_to_close();
    assert_eq!(close, Some(1000));
    messages.extend(rest);
    assert_eq!(finals(&messages), reference_finals_with(&server, query));
}

/// A detached session still answers to the operator and to the drain: a
/// `DELETE` ends it and gives its slot back at once, and SIGTERM with a
/// detached session still exits cleanly.
#[test]
fn a_detached_session_can_be_deleted_and_does_not_hold_up_the_drain() {
    // A grace period far past the test's patience: a drain held up by
    // the detached session would not end before it.
    let mut server = Server::start(&[
        "--resume-window-seconds",
        WINDOW,
        "--shutdown-grace-seconds",
        "600",
    ]);
    let pcm = fixture_pcm(FIXTURE);
    let mut detached = Vec::new();
    for _ in 0..2 {
        let (mut ws, id, token) = start(&server);
        let cut = pcm.len() / 3 / FRAME_BYTES * FRAME_BYTES;
        ws.stream_audio(&pcm[..cut], FRAME_BYTES);
        wait_for_audio(&server, &id, cut);
        reset(ws);
        wait_detached(&server, &id);
        detached.push((id, token));
    }
    let (deleted, token) = &detached[0];
    let reply = crate::support::delete(&server, &format!("/v1/sessions/{deleted}"));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(eventually(Duration::from_secs(20), || {
        get(&server, "/v1/health").json()["active_sessions"] == 1
    }));
    assert_eq!(
        refusal(&server, &format!("resume={deleted}&token={token}")),
        ("session_not_found".to_string(), Some(1008))
    );
    // The other one is still detached when the drain begins.
    assert_eq!(session(&server, &detached[1].0)["detached"], true);
    server.signal("TERM");
    let status = server
        .wait_exit(Duration::from_secs(120))
        .expect("the server exits with a detached session");
    assert!(status.success(), "{status:?}");
}
