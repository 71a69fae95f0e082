//! Past the engine's capacity (admission by capacity, `model/capacity.rs`):
//! the mock's cost model gives a known capacity, streams and uploads are
//! offered beyond it, and the server must serve the admitted completely and
//! refuse the rest at once.

use std::time::Duration;

use crate::support::*;

/// Two workers at 0.5 s of model time per audio second: 4 audio seconds per
/// second. At the default 0.85, three streams that speak all the time fit.
const CAPACITY_ARGS: [&str; 4] = ["--model-workers", "2", "--mock-rtf", "0.5"];

/// What one offered stream got.
#[derive(Debug)]
enum Outcome {
    /// Admitted: its finals' segment ids in arrival order, and the
    /// segments `session_end` counted.
    Served { finals: Vec<u64>, segments: u64 },
    /// Refused before it started: the error, its `retry_after_s`, and the
    /// close code.
    Refused {
        code: String,
        retry_after_s: Option<u64>,
        close: Option<u16>,
    },
}

/// Send `pcm` in real time (100 ms frames), then `end`; every message up
/// to the close.
fn speak_and_end(ws: &mut Ws, pcm: &[u8]) -> Vec<serde_json::Value> {
    for frame in pcm.chunks(3200) {
        ws.send_audio(frame);
        std::thread::sleep(Duration::from_millis(100));
    }
    ws.send_text(r#"{"type":"end"}"#);
    ws.read_to_close().0
}

/// Stream `pcm` in real time (100 ms frames), end, and read to the close.
fn offer_stream(addr: std::net::SocketAddr, pcm: &[u8]) -> Outcome {
    let mut ws = Ws::connect_addr(addr, "interim_results=false");
    let first = ws.next_json().expect("a first message");
    if first["type"] == "error" {
        let (_, close) = ws.read_to_close();
        return Outcome::Refused {
            code: first["code"].as_str().unwrap_or_default().to_string(),
            retry_after_s: first["retry_after_s"].as_u64(),
            close,
        };
    }
    assert_eq!(first["type"], "session_start", "{first}");
    let messages = speak_and_end(&mut ws, pcm);
    let finals = messages
        .iter()
        .filter(|m| m["type"] == "transcript" && m["is_final"] == true)
        .filter_map(|m| m["segment_id"].as_u64())
        .collect();
    let end = messages
        .iter()
        .find(|m| m["type"] == "session_end")
        .unwrap_or_else(|| panic!("no session_end: {messages:#?}"));
    assert_eq!(end["reason"], "client_end", "{end}");
    Outcome::Served {
        finals,
        segments: end["metrics"]["segments"].as_u64().expect("segments"),
    }
}

/// Offer `streams` streams at once; the outcomes, and `/v1/ready` as seen
/// while the admitted ones were running.
fn offer(server: &Server, streams: usize, pcm: &[u8]) -> (Vec<Outcome>, Reply) {
    let addr = server.addr;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..streams)
            .map(|_| scope.spawn(move || offer_stream(addr, pcm)))
            .collect();
        // Readiness while the admitted stream (they take seconds; the
        // refusals come at once).
        assert!(
            eventually(Duration::from_secs(10), || {
                let refused = metric(server, "transcribe_sessions_rejected_total", &[]);
                refused.unwrap_or(0.0) >= (streams - 3) as f64
            }),
            "the refusals never came"
        );
        let ready = get(server, "/v1/ready");
        let outcomes = handles
            .into_iter()
            .map(|handle| handle.join().expect("client thread"))
            .collect();
        (outcomes, ready)
    })
}

/// Two utterances back to back: ten seconds of a speaker who hardly stops.
fn speech() -> Vec<u8> {
    fixture_pcm("two_utterances.wav").repeat(2)
}

fn served_and_refused(outcomes: &[Outcome]) -> (usize, usize) {
    let served = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Served { .. }))
        .count();
    (served, outcomes.len() - served)
}

fn check_offered_load(multiple: usize) {
    let server = Server::start(&CAPACITY_ARGS);
    let pcm = speech();
    // Four audio seconds per second of capacity, one per stream: `multiple`
    // times capacity is 4 × multiple streams.
    let (outcomes, ready) = offer(&server, 4 * multiple, &pcm);
    let (served, refused) = served_and_refused(&outcomes);
    assert_eq!(served, 3, "{outcomes:#?}");
    assert_eq!(refused, 4 * multiple - 3, "{outcomes:#?}");
    for outcome in &outcomes {
        match outcome {
            Outcome::Served { finals, segments } => {
                // Every final, in order, none missing.
                assert!(*segments >= 2, "{outcome:?}");
                let expected: Vec<u64> = (0..*segments).collect();
                assert_eq!(finals, &expected, "{outcome:?}");
            }
            Outcome::Refused {
                code,
                retry_after_s,
                close,
            } => {
                assert_eq!(code, "overloaded");
                assert!(retry_after_s.is_some_and(|s| s >= 1), "{outcome:?}");
                assert_eq!(*close, Some(1013));
            }
        }
    }
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert_eq!(ready.json()["reason"], "engine_saturated");
    // Once they are done the engine is free again, and says so.
    assert_active_sessions(&server, 0, Duration::from_secs(10));
    assert!(eventually(Duration::from_secs(10), || get(
        &server,
        "/v1/ready"
    )
    .status
        == 200));
    assert_eq!(
        metric(&server, "transcribe_engine_saturated", &[]),
        Some(0.0)
    );
    let refusals = get(&server, "/metrics").text();
    assert!(
        refusals.contains(&format!(
            "transcribe_engine_refusals_total{{kind=\"stream\"}} {}",
            4 * multiple - 3
        )),
        "{refusals}"
    );
    let capacity = get(&server, "/v1/sessions/metrics").json()["engine"]["live_capacity"]
        .as_f64()
        .expect("capacity known");
    // Measured on the admitted streams' jobs: the cost model's figure, less
    // the time a job takes beyond its sleep.
    assert!((3.0..=4.0).contains(&capacity), "capacity {capacity}");
}

#[test]
fn at_twice_the_capacity_the_admitted_streams_complete_and_the_rest_are_refused_at_once() {
    check_offered_load(2);
}

#[test]
fn at_four_times_the_capacity_the_admitted_streams_complete_and_the_rest_are_refused_at_once() {
    check_offered_load(4);
}

#[test]
fn with_admission_off_every_stream_is_admitted() {
    let mut args = CAPACITY_ARGS.to_vec();
    args.extend(["--engine-max-utilisation", "0"]);
    let server = Server::start(&args);
    let pcm = fixture_pcm("two_utterances.wav");
    let addr = server.addr;
    let outcomes: Vec<Outcome> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|_| scope.spawn(|| offer_stream(addr, &pcm)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client"))
            .collect()
    });
    assert_eq!(served_and_refused(&outcomes), (6, 0), "{outcomes:#?}");
    // The figures are still measured and shown.
    let engine = get(&server, "/v1/sessions/metrics").json()["engine"].clone();
    assert!(engine["live_capacity"].as_f64().is_some(), "{engine}");
    assert_eq!(engine["refused_streams"], 0);
}

#[test]
fn the_first_stream_is_admitted_even_by_an_engine_too_slow_for_it() {
    // One worker at 3 s a job cannot keep up with one speaker, but a server
    // that refuses everyone serves no one: the first stream is admitted,
    // the second refused.
    let server = Server::start(&["--model-workers", "1", "--mock-latency-ms", "3000"]);
    let mut first = Ws::connect(&server, "interim_results=false");
    assert_eq!(first.next_json().expect("start")["type"], "session_start");
    let mut second = Ws::connect(&server, "interim_results=false");
    let refused = second.next_json().expect("error");
    assert_eq!(refused["code"], "overloaded", "{refused}");
    assert_eq!(second.read_to_close().1, Some(1013));
    first.send_text(r#"{"type":"end"}"#);
    let (messages, _) = first.read_to_close();
    assert!(messages.iter().any(|m| m["type"] == "session_end"));
}

#[test]
fn batch_past_the_backlog_bound_is_refused_with_retry_after_then_admitted_again() {
    // One worker at rtf 0.5 and a bound of 1 s: an upload of 10 s of
    // speech is 5 s of engine time; while it runs the next is refused.
    let server = Server::start(&[
        "--model-workers",
        "1",
        "--mock-rtf",
        "0.5",
        "--engine-max-backlog-seconds",
        "1",
    ]);
    let wav = fixture("two_utterances.wav");
    let long = {
        // Twice the fixture's audio under one canonical header.
        let pcm = fixture_pcm("two_utterances.wav").repeat(2);
        let mut wav = wav[..44].to_vec();
        wav[40..44].copy_from_slice(&(pcm.len() as u32).to_le_bytes());
        wav[4..8].copy_from_slice(&((pcm.len() + 36) as u32).to_le_bytes());
        wav.extend_from_slice(&pcm);
        wav
    };
    let addr = server.url("/v1/transcribe");
    std::thread::scope(|scope| {
        let first = scope.spawn(|| post(&server, "/v1/transcribe", "audio/wav", &long, &[]));
        let backlog = || {
            get(&server, "/v1/sessions/metrics").json()["engine"]["batch_backlog_s"]
                .as_f64()
                .unwrap_or(0.0)
        };
        assert!(
            eventually(Duration::from_secs(10), || backlog() > 1.0),
            "the first upload never showed as backlog ({addr})"
        );
        let refused = post(&server, "/v1/transcribe", "audio/wav", &wav, &[]);
        assert_eq!(refused.status, 503, "{}", refused.text());
        assert_eq!(refused.error_code(), "overloaded");
        let retry: u64 = refused
            .header("retry-after")
            .expect("Retry-After")
            .parse()
            .expect("seconds");
        assert!(retry >= 1, "Retry-After {retry}");
        let first = first.join().expect("first upload");
        assert_eq!(first.status, 200, "{}", first.text());
    });
    // Done: the backlog is gone and uploads are admitted again.
    let again = post(&server, "/v1/transcribe", "audio/wav", &wav, &[]);
    assert_eq!(again.status, 200, "{}", again.text());
    let metrics = get(&server, "/metrics").text();
    assert!(
        metrics.contains("transcribe_engine_refusals_total{kind=\"batch\"} 1"),
        "{metrics}"
    );
}

#[test]
fn an_interim_whose_final_went_to_the_engine_is_given_up() {
    // One worker at 1 s a job: an interim is nearly always in flight, so
    // when a segment ends its final supersedes it.
    let server = Server::start(&[
        "--model-workers",
        "1",
        "--mock-latency-ms",
        "1000",
        "--interim-interval-ms",
        "200",
    ]);
    let pcm = fixture_pcm("two_utterances.wav");
    let mut ws = Ws::connect(&server, "");
    assert_eq!(ws.next_json().expect("start")["type"], "session_start");
    let messages = speak_and_end(&mut ws, &pcm);
    let end = messages
        .iter()
        .find(|m| m["type"] == "session_end")
        .expect("session_end");
    let segments = end["metrics"]["segments"].as_u64().expect("segments");
    let finals = messages
        .iter()
        .filter(|m| m["type"] == "transcript" && m["is_final"] == true)
        .count() as u64;
    assert_eq!(finals, segments, "{messages:#?}");
    assert!(
        eventually(Duration::from_secs(5), || metric(
            &server,
            "transcribe_interims_superseded_total",
            &[]
        )
        .unwrap_or(0.0)
            >= 1.0),
        "no interim was superseded"
    );
}
