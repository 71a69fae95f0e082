//! Targets `realtime_events` and `deepgram_control`: the client messages of
//! the OpenAI Realtime and Deepgram live dialects, from arbitrary text, one
//! message a line, through the dialect's codec and a real session (jobs
//! answered by the mock model).

use std::collections::HashSet;
use std::time::Instant;

use transcription_service::model::mock::mock_transcript;
use transcription_service::session::Control;
use transcription_service::ws::codec::{Codec, Frame};
use transcription_service::ws::deepgram::{DeepgramLive, ListenMode, ListenParams};
use transcription_service::ws::openai_realtime::{decode_base64, scan_append, OpenAiRealtime};
use transcription_service::ws::session::{Session, SessionConfig, StreamParams};

use super::input::Input;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let word = u32::from(chunk[0]) << 16
            | u32::from(*chunk.get(1).unwrap_or(&0)) << 8
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for index in 0..4 {
            out.push(if index <= chunk.len() {
                ALPHABET[(word >> (18 - 6 * index) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

fn session(params: StreamParams) -> Session {
    let config = SessionConfig {
        vad_hangover_ms: 300,
        max_segment_ms: 15_000,
        interim_interval_ms: 300,
        finals_waiting_max: 8,
        finals_in_flight_max: 4,
    };
    Session::new("fuzz".into(), params, config, Instant::now())
}

/// Answer the session's jobs with the mock model, encode its events, and
/// hand back the text frames (after checking each is a JSON object with a
/// string `type`).
fn turn(
    codec: &dyn Codec,
    session: &mut Session,
    frames: &mut Vec<Frame>,
) -> Vec<serde_json::Value> {
    while let Some(job) = session.next_job() {
        let transcript = mock_transcript(&job.samples, 16_000);
        session.on_result(
            job.kind,
            job.segment_id,
            job.start_sample,
            job.end_sample,
            Ok(transcript),
            Instant::now(),
        );
    }
    codec.take_frames(frames);
    let events: Vec<_> = session.take_events().collect();
    for event in events {
        codec.encode(event, frames);
    }
    let mut out = Vec::new();
    for frame in frames.drain(..) {
        if let Frame::Text { text, .. } = frame {
            let value: serde_json::Value =
                serde_json::from_str(&text).unwrap_or_else(|error| panic!("{text}: {error}"));
            assert!(value["type"].is_string(), "{text}");
            out.push(value);
        }
    }
    out
}

/// `[selector][lines...]`: each line a client event of a Realtime
/// transcription session; with selector bit 0 set, a line is raw PCM16 sent
/// as the `audio` of an `append` (so the resampler and the VAD see
/// arbitrary audio); bit 1 asks for 16 kHz input first.
///
/// Checks: no panic; every server event is a JSON object with a `type` and
/// a unique `event_id`; wherever the append fast path reads a line and its
/// base64 decodes, serde_json reads the same event (type, audio, event id)
/// and the line draws no `error`.
pub fn realtime_events(data: &[u8]) {
    let mut input = Input::new(data);
    let selector = input.u8();
    let text = String::from_utf8_lossy(input.rest()).into_owned();
    let codec = OpenAiRealtime::new_codec("mock", 300);
    let mut params = StreamParams::new(2);
    if codec
        .apply_query(&mut params, Some("intent=transcription"))
        .is_err()
    {
        panic!("the plain query is refused");
    }
    let mut session = session(params);
    let mut frames = Vec::new();
    codec.encode(session.start_event(), &mut frames);
    let mut ids = HashSet::new();
    let mut check_ids = |events: &[serde_json::Value]| {
        for event in events {
            let id = event["event_id"].as_str().expect("event_id").to_string();
            assert!(ids.insert(id), "duplicate event_id in {event}");
        }
    };
    check_ids(&turn(codec.as_ref(), &mut session, &mut frames));
    if selector & 2 != 0 {
        let update = r#"{"type":"session.update","session":{"type":"transcription","audio":{"input":{"format":{"type":"audio/pcm","rate":16000}}}}}"#;
        codec.on_text(update, &mut session, Instant::now());
        check_ids(&turn(codec.as_ref(), &mut session, &mut frames));
    }
    for line in text.split('\n') {
        let event = if selector & 1 != 0 {
            format!(
                r#"{{"type":"input_audio_buffer.append","audio":"{}"}}"#,
                base64(line.as_bytes())
            )
        } else {
            line.to_string()
        };
        let mut fast_audio = Vec::new();
        let fast = scan_append(&event)
            .filter(|fields| decode_base64(fields.audio, &mut fast_audio).is_ok())
            .map(|fields| fields.event_id.map(str::to_string));
        if let Some(event_id) = &fast {
            let value: serde_json::Value = serde_json::from_str(&event)
                .unwrap_or_else(|error| panic!("fast path took {event:?}, serde_json: {error}"));
            assert_eq!(value["type"], "input_audio_buffer.append", "{event}");
            let audio = value["audio"].as_str().expect("audio string");
            let mut slow_audio = Vec::new();
            assert!(decode_base64(audio.as_bytes(), &mut slow_audio).is_ok());
            assert_eq!(fast_audio, slow_audio, "{event}");
            assert_eq!(event_id.as_deref(), value["event_id"].as_str(), "{event}");
        }
        codec.on_text(&event, &mut session, Instant::now());
        let events = turn(codec.as_ref(), &mut session, &mut frames);
        if fast.is_some() {
            assert!(
                events.iter().all(|event| event["type"] != "error"),
                "an append the fast path took drew {events:?}"
            );
        }
        check_ids(&events);
    }
    codec.on_text(
        r#"{"type":"input_audio_buffer.commit"}"#,
        &mut session,
        Instant::now(),
    );
    check_ids(&turn(codec.as_ref(), &mut session, &mut frames));
}

/// `[selector][query line][lines...]`: a `/v1/listen` query, then each line
/// a text message of a live session (with selector bit 0 set, a line is
/// also sent as binary audio before it).
///
/// Checks: no panic; a refused query has a reason; an accepted one is
/// accepted by the codec too; `KeepAlive`, `Finalize` and `CloseStream`
/// are read only from JSON whose `type` says so; every server message is a
/// JSON object with a `type`.
pub fn deepgram_control(data: &[u8]) {
    let mut input = Input::new(data);
    let selector = input.u8();
    let text = String::from_utf8_lossy(input.rest()).into_owned();
    let (query, messages) = text.split_once('\n').unwrap_or((text.as_str(), ""));
    if let Err(reason) = ListenParams::parse(Some(query), ListenMode::Prerecorded) {
        assert!(!reason.is_empty());
    }
    let live = ListenParams::parse(Some(query), ListenMode::Live);
    let codec = DeepgramLive::new_codec("mock", 300);
    let mut params = StreamParams::new(2);
    let applied = codec.apply_query(&mut params, Some(query));
    match (&live, &applied) {
        (Err(reason), _) | (_, Err(reason)) => {
            assert!(!reason.is_empty());
            if live.is_ok() != applied.is_ok() {
                panic!("ListenParams and the codec disagree on {query:?}: {live:?} / {applied:?}");
            }
            return;
        }
        _ => {}
    }
    let mut session = session(params);
    let mut frames = Vec::new();
    codec.encode(session.start_event(), &mut frames);
    turn(codec.as_ref(), &mut session, &mut frames);
    for line in messages.split('\n') {
        if selector & 1 != 0 {
            codec.on_binary(line.as_bytes(), &mut session, Instant::now());
        }
        let control = codec.decode_text(line, session.params());
        let kind = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|value| {
                value
                    .get("type")
                    .and_then(|kind| kind.as_str().map(str::to_string))
            });
        let expected = match control {
            Control::Keepalive => Some("KeepAlive"),
            Control::Finalize => Some("Finalize"),
            Control::End => Some("CloseStream"),
            Control::Invalid(ref reason) => {
                assert!(!reason.is_empty());
                None
            }
            Control::Configure(_) => None,
        };
        if let Some(expected) = expected {
            assert_eq!(
                kind.as_deref(),
                Some(expected),
                "{line:?} read as {control:?}"
            );
        }
        codec.on_text(line, &mut session, Instant::now());
        turn(codec.as_ref(), &mut session, &mut frames);
    }
}
