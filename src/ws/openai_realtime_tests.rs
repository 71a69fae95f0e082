//! Unit tests of the OpenAI Realtime codec: base64, session updates, and
//! whole client/server exchanges through a real session core (mock-free:
//! model results are handed to the session by hand).

use std::time::Instant;

use super::*;
use crate::session::{Session, SessionConfig};

#[test]
fn base64_decodes_with_and_without_padding() {
    let mut out = Vec::new();
    for (text, bytes) in [
        ("", &b""[..]),
        ("Zg==", b"f"),
        ("Zm8=", b"fo"),
        ("Zm9v", b"foo"),
        ("Zm9vYg", b"foob"),
        ("Zm9vYmE=", b"fooba"),
        ("Zm9vYmFy", b"foobar"),
        ("//79AA==", &[0xff, 0xfe, 0xfd, 0x00]),
    ] {
        assert_eq!(decode_base64(text.as_bytes(), &mut out), Ok(()), "{text}");
        assert_eq!(out, bytes, "{text}");
    }
    for bad in ["Z", "Zm9v!", "Zm=v", "Zm9v Yg==", "Zg=", "Zm9vY===", "é"] {
        assert_eq!(
            decode_base64(bad.as_bytes(), &mut out),
            Err(Base64Error),
            "{bad}"
        );
    }
}

#[test]
fn base64_reuses_its_buffer() {
    let mut out = Vec::with_capacity(64);
    let pointer = out.as_ptr();
    decode_base64(b"Zm9vYmFy", &mut out).expect("valid");
    decode_base64(b"YWJj", &mut out).expect("valid");
    assert_eq!(out, b"abc");
    assert_eq!(out.as_ptr(), pointer);
}

#[test]
fn session_updates_in_both_forms() {
    let current = serde_json::json!({"type": "transcription", "audio": {"input": {
        "format": {"type": "audio/pcm", "rate": 24000},
        "transcription": {"model": "gpt-4o-transcribe", "language": "de", "prompt": "Namen"},
        "turn_detection": null}}});
    let update = SessionUpdate::read(&current).expect("valid");
    assert_eq!(update.input_rate_hz, Some(24_000));
    assert_eq!(update.language, Some(Some("de".into())));
    assert_eq!(update.prompt, Some(Some("Namen".into())));
    assert_eq!(update.server_vad, Some(false));

    let beta = serde_json::json!({"input_audio_format": "pcm16",
        "input_audio_transcription": {"model": "whisper-1"},
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}});
    let update = SessionUpdate::read(&beta).expect("valid");
    assert_eq!(update.model.as_deref(), Some("whisper-1"));
    assert_eq!(update.server_vad, Some(true));
    assert_eq!(update.language, None);

    for bad in [
        serde_json::json!({"type": "realtime"}),
        serde_json::json!({"audio": {"input": {"format": {"type": "audio/pcmu"}}}}),
        serde_json::json!({"audio": {"input": {"format": {"type": "audio/pcm", "rate": 44100}}}}),
        serde_json::json!({"input_audio_format": "g711_ulaw"}),
        serde_json::json!({"turn_detection": {"type": "push_to_talk"}}),
        serde_json::json!({"input_audio_transcription": {"language": "en;drop"}}),
    ] {
        assert!(SessionUpdate::read(&bad).is_err(), "{bad}");
    }
}

/// A codec and a session as the connection drives them.
struct Exchange {
    codec: OpenAiRealtime,
    session: Session,
    now: Instant,
    /// Frames encoded and not yet read.
    frames: Vec<Frame>,
}

impl Exchange {
    fn new() -> Exchange {
        let codec = OpenAiRealtime {
            state: RefCell::new(Realtime::new(300)),
        };
        let mut params = StreamParams::new(2);
        codec
            .apply_query(&mut params, Some("intent=transcription&model=whisper-1"))
            .expect("query");
        let config = SessionConfig {
            vad_hangover_ms: 300,
            max_segment_ms: 30_000,
            interim_interval_ms: 100_000,
            finals_waiting_max: 8,
            finals_in_flight_max: usize::MAX,
        };
        let now = Instant::now();
        let session = Session::new("s".into(), params, config, now);
        let start = session.start_event();
        let mut exchange = Exchange {
            codec,
            session,
            now,
            frames: Vec::new(),
        };
        exchange.codec.encode(start, &mut exchange.frames);
        exchange
    }

    /// Send a client event; the server events that follow, as JSON.
    fn send(&mut self, event: &serde_json::Value) -> Vec<serde_json::Value> {
        self.codec
            .on_text(&event.to_string(), &mut self.session, self.now);
        self.outputs()
    }

    fn outputs(&mut self) -> Vec<serde_json::Value> {
        self.codec.take_frames(&mut self.frames);
        let events: Vec<_> = self.session.take_events().collect();
        for event in events {
            self.codec.encode(event, &mut self.frames);
        }
        let mut out = Vec::new();
        for frame in self.frames.drain(..) {
            if let Frame::Text { text, .. } = frame {
                out.push(serde_json::from_str(&text).expect("JSON"));
            }
        }
        out
    }

    /// Answer every model job the session asks for with `text`.
    fn answer_jobs(&mut self, text: &str) -> Vec<serde_json::Value> {
        while let Some(job) = self.session.next_job() {
            let transcript = crate::model::Transcript {
                text: text.to_string(),
                ..Default::default()
            };
            self.session.on_result(
                job.kind,
                job.segment_id,
                job.start_sample,
                job.end_sample,
                Ok(transcript),
                self.now,
            );
        }
        self.outputs()
    }
}

fn types(events: &[serde_json::Value]) -> Vec<&str> {
    events
        .iter()
        .map(|event| event["type"].as_str().expect("type"))
        .collect()
}

/// `ms` of 24 kHz PCM16: a loud square wave (speech to the VAD) or silence.
fn audio_b64(ms: usize, loud: bool) -> String {
    let samples = 24 * ms;
    let mut bytes = Vec::with_capacity(samples * 2);
    for index in 0..samples {
        let value: i16 = if loud {
            if (index / 30) % 2 == 0 {
                12_000
            } else {
                -12_000
            }
        } else {
            0
        };
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    encode_base64(&bytes)
}

fn encode_base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let word = u32::from(chunk[0]) << 16
            | u32::from(*chunk.get(1).unwrap_or(&0)) << 8
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for index in 0..4 {
            if index <= chunk.len() {
                out.push(ALPHABET[(word >> (18 - 6 * index) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn append(ms: usize, loud: bool) -> serde_json::Value {
    serde_json::json!({"type": "input_audio_buffer.append", "audio": audio_b64(ms, loud)})
}

#[test]
fn session_created_comes_first_and_every_event_id_is_unique() {
    let mut exchange = Exchange::new();
    let mut events = exchange.outputs();
    assert_eq!(types(&events), ["session.created"]);
    let session = &events[0]["session"];
    assert_eq!(session["type"], "transcription");
    assert_eq!(session["audio"]["input"]["format"]["rate"], 24_000);
    assert_eq!(
        session["audio"]["input"]["turn_detection"]["type"],
        "server_vad"
    );
    events.extend(exchange.send(&serde_json::json!({"type": "nope"})));
    events.extend(exchange.send(&append(600, true)));
    events.extend(exchange.send(&append(600, false)));
    events.extend(exchange.answer_jobs("alpha bravo"));
    let mut ids: Vec<&str> = events
        .iter()
        .map(|event| event["event_id"].as_str().expect("event_id"))
        .collect();
    let count = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), count);
}

#[test]
fn server_vad_makes_one_item_per_utterance() {
    let mut exchange = Exchange::new();
    exchange.outputs();
    let mut events = exchange.send(&append(200, false));
    events.extend(exchange.send(&append(800, true)));
    events.extend(exchange.send(&append(700, false)));
    events.extend(exchange.answer_jobs("alpha bravo"));
    assert_eq!(
        types(&events),
        [
            "input_audio_buffer.speech_started",
            "input_audio_buffer.speech_stopped",
            "input_audio_buffer.committed",
            "conversation.item.input_audio_transcription.delta",
            "conversation.item.input_audio_transcription.completed",
        ],
        "{events:#?}"
    );
    let item = events[0]["item_id"].as_str().expect("item");
    assert!(events.iter().all(|event| event["item_id"] == item));
    let start = events[0]["audio_start_ms"].as_u64().expect("start");
    let end = events[1]["audio_end_ms"].as_u64().expect("end");
    assert!(start <= 300, "{start}");
    assert!(end > start + 700, "{end}");
    assert_eq!(events[2]["previous_item_id"], serde_json::Value::Null);
    assert_eq!(events[3]["delta"], "alpha bravo");
    assert_eq!(events[4]["transcript"], "alpha bravo");
    assert_eq!(events[4]["usage"]["type"], "duration");

    // The next utterance is a new item that names the previous one.
    let mut events = exchange.send(&append(800, true));
    events.extend(exchange.send(&append(700, false)));
    events.extend(exchange.answer_jobs("charlie"));
    assert_eq!(events[2]["type"], "input_audio_buffer.committed");
    assert_eq!(events[2]["previous_item_id"], item);
    assert_ne!(events[2]["item_id"], item);
}

#[test]
fn without_turn_detection_a_commit_ends_the_item() {
    let mut exchange = Exchange::new();
    exchange.outputs();
    let update = exchange.send(&serde_json::json!({"type": "transcription_session.update",
        "session": {"turn_detection": null, "input_audio_transcription": {"language": "en"}}}));
    assert_eq!(types(&update), ["transcription_session.updated"]);
    assert_eq!(
        update[0]["session"]["turn_detection"],
        serde_json::Value::Null
    );
    assert_eq!(exchange.session.params().language.as_deref(), Some("en"));

    // Two utterances, one item: no VAD events, nothing committed yet.
    let mut events = exchange.send(&append(800, true));
    events.extend(exchange.send(&append(700, false)));
    events.extend(exchange.send(&append(800, true)));
    assert!(
        types(&events)
            .iter()
            .all(|kind| !kind.starts_with("input_audio_buffer.")),
        "{events:#?}"
    );
    events.extend(exchange.answer_jobs("alpha"));
    let mut events = exchange.send(&serde_json::json!({"type": "input_audio_buffer.commit"}));
    assert_eq!(types(&events), ["input_audio_buffer.committed"]);
    events.extend(exchange.answer_jobs("bravo"));
    let completed = events.last().expect("completed");
    assert_eq!(
        completed["type"],
        "conversation.item.input_audio_transcription.completed"
    );
    assert_eq!(completed["transcript"], "alpha bravo");
    assert_eq!(completed["item_id"], events[0]["item_id"]);

    // A commit with (almost) nothing since is refused, and the session goes on.
    let refused =
        exchange.send(&serde_json::json!({"type": "input_audio_buffer.commit", "event_id": "c1"}));
    assert_eq!(types(&refused), ["error"]);
    assert_eq!(
        refused[0]["error"]["code"],
        "input_audio_buffer_commit_empty"
    );
    assert_eq!(refused[0]["error"]["event_id"], "c1");
    // Silence alone commits an item with an empty transcript.
    exchange.send(&append(300, false));
    let events = exchange.send(&serde_json::json!({"type": "input_audio_buffer.commit"}));
    assert_eq!(
        types(&events),
        [
            "input_audio_buffer.committed",
            "conversation.item.input_audio_transcription.completed"
        ]
    );
    assert_eq!(events[1]["transcript"], "");
}

#[test]
fn clear_drops_the_uncommitted_item() {
    let mut exchange = Exchange::new();
    exchange.outputs();
    exchange.send(&serde_json::json!({"type": "session.update",
        "session": {"type": "transcription", "audio": {"input": {"turn_detection": null}}}}));
    exchange.send(&append(800, true));
    let events = exchange.send(&serde_json::json!({"type": "input_audio_buffer.clear"}));
    assert_eq!(types(&events), ["input_audio_buffer.cleared"]);
    let events = exchange.answer_jobs("dropped");
    assert!(events.is_empty(), "{events:#?}");
    // The next item is unaffected.
    exchange.send(&append(800, true));
    let mut events = exchange.send(&serde_json::json!({"type": "input_audio_buffer.commit"}));
    events.extend(exchange.answer_jobs("kept"));
    assert_eq!(events.last().expect("completed")["transcript"], "kept");
}

#[test]
fn bad_input_is_an_error_event_and_the_session_goes_on() {
    let mut exchange = Exchange::new();
    exchange.outputs();
    for (text, code, param) in [
        ("{not json", "invalid_json", None),
        (r#"{"no_type": 1}"#, "invalid_json", None),
        (
            r#"{"type": "input_audio_buffer.append", "audio": "%%%"}"#,
            "invalid_value",
            Some("audio"),
        ),
        (
            r#"{"type": "input_audio_buffer.append"}"#,
            "missing_required_parameter",
            Some("audio"),
        ),
        (
            r#"{"type": "response.create"}"#,
            "invalid_value",
            Some("type"),
        ),
        (
            r#"{"type": "conversation.dance"}"#,
            "invalid_value",
            Some("type"),
        ),
        (
            r#"{"type": "session.update", "session": {"type": "realtime"}}"#,
            "invalid_value",
            Some("session.type"),
        ),
    ] {
        exchange
            .codec
            .on_text(text, &mut exchange.session, exchange.now);
        let events = exchange.outputs();
        assert_eq!(types(&events), ["error"], "{text}");
        assert_eq!(events[0]["error"]["code"], code, "{text}");
        assert_eq!(events[0]["error"]["type"], "invalid_request_error");
        assert_eq!(events[0]["error"]["param"].as_str(), param, "{text}");
    }
    // Still transcribing.
    let mut events = exchange.send(&append(800, true));
    events.extend(exchange.send(&append(700, false)));
    events.extend(exchange.answer_jobs("still here"));
    assert_eq!(
        events.last().expect("completed")["transcript"],
        "still here"
    );
}

#[test]
fn deltas_only_extend_what_was_sent() {
    let mut exchange = Exchange::new();
    exchange.outputs();
    exchange.send(&append(800, true));
    let index = 0;
    let state = &exchange.codec.state;
    state.borrow_mut().send_delta(index, "alpha".into(), true);
    state
        .borrow_mut()
        .send_delta(index, "alpha bravo".into(), true);
    // A revision is not sent: a delta cannot take text back.
    state
        .borrow_mut()
        .send_delta(index, "alfa bravo charlie".into(), true);
    let events = exchange.outputs();
    let deltas: Vec<&str> = events
        .iter()
        .filter(|event| event["type"] == "conversation.item.input_audio_transcription.delta")
        .map(|event| event["delta"].as_str().expect("delta"))
        .collect();
    assert_eq!(deltas, ["alpha", " bravo"]);
}

/// The straightforward decoder the fast one replaced, kept as the
/// reference it must agree with.
fn reference_decode(input: &[u8]) -> Result<Vec<u8>, Base64Error> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let value = |byte: u8| {
        ALPHABET
            .iter()
            .position(|&letter| letter == byte)
            .map(|index| index as u32)
            .ok_or(Base64Error)
    };
    let body = match input {
        [rest @ .., b'=', b'='] => rest,
        [rest @ .., b'='] => rest,
        _ => input,
    };
    if body.len() % 4 == 1 || (body.len() != input.len() && input.len() % 4 != 0) {
        return Err(Base64Error);
    }
    let mut out = Vec::new();
    for group in body.chunks(4) {
        let mut word = 0_u32;
        for (index, &byte) in group.iter().enumerate() {
            word |= value(byte)? << (18 - 6 * index);
        }
        out.extend_from_slice(&word.to_be_bytes()[1..group.len()]);
    }
    Ok(out)
}

proptest::proptest! {
    #[test]
    fn the_fast_decoder_agrees_with_the_reference_on_any_text(
        text in proptest::collection::vec(
            proptest::sample::select(b"AZaz09+/=!-_ \\\"\x00\xff".to_vec()), 0..40)
    ) {
        let mut out = vec![7_u8; 3];
        let fast = decode_base64(&text, &mut out).map(|()| out.clone());
        proptest::prop_assert_eq!(fast, reference_decode(&text));
    }

    #[test]
    fn the_fast_decoder_round_trips_any_bytes(
        bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
        unpadded in proptest::bool::ANY,
    ) {
        let mut text = encode_base64(&bytes);
        if unpadded {
            text = text.trim_end_matches('=').to_string();
        }
        let mut out = Vec::new();
        proptest::prop_assert_eq!(decode_base64(text.as_bytes(), &mut out), Ok(()));
        proptest::prop_assert_eq!(&out, &bytes);
        // One character changed to one outside the alphabet is refused,
        // wherever it is.
        if !text.is_empty() {
            let mut bad = text.clone().into_bytes();
            let at = bytes.len() % bad.len();
            bad[at] = b'%';
            proptest::prop_assert_eq!(decode_base64(&bad, &mut out), Err(Base64Error));
        }
    }

    /// Wherever the fast path answers (and its audio decodes), serde_json
    /// reads the same event: mutations of valid events, ASCII only.
    #[test]
    fn the_append_scanner_agrees_with_serde_json(
        base in 0_usize..4,
        edits in proptest::collection::vec(
            (0_usize..200, proptest::sample::select(b" \t\n{}[],:\"\\/0aA=_-e".to_vec())),
            0..3),
    ) {
        let bases = [
            r#"{"type":"input_audio_buffer.append","audio":"AAAAAQAC"}"#,
            r#"{"type": "input_audio_buffer.append", "audio": "AAAAAQ==", "event_id": "e1"}"#,
            "\n{ \"audio\" : \"AAECAw\" ,\"type\":\"input_audio_buffer.append\" }\r\n",
            r#"{"event_id":"x","audio":"","type":"input_audio_buffer.append"}"#,
        ];
        let mut text = bases[base].as_bytes().to_vec();
        for &(at, byte) in &edits {
            let at = at % (text.len() + 1);
            if at % 2 == 0 && at < text.len() {
                text[at] = byte;
            } else {
                text.insert(at, byte);
            }
        }
        let text = String::from_utf8(text).expect("ASCII");
        let mut fast_audio = Vec::new();
        if let Some(fields) = scan_append(&text) {
            if decode_base64(fields.audio, &mut fast_audio).is_ok() {
                let event: ClientEvent<'_> = serde_json::from_str(&text)
                    .map_err(|error| proptest::test_runner::TestCaseError::fail(format!("{text:?}: {error}")))?;
                proptest::prop_assert_eq!(event.kind.as_ref(), "input_audio_buffer.append");
                let mut slow_audio = Vec::new();
                let audio = event.audio.as_deref().unwrap_or("-");
                proptest::prop_assert_eq!(decode_base64(audio.as_bytes(), &mut slow_audio), Ok(()));
                proptest::prop_assert_eq!(&fast_audio, &slow_audio);
                proptest::prop_assert_eq!(fields.event_id, event.event_id.as_deref());
            }
        }
    }
}

#[test]
fn the_append_scanner_takes_the_usual_shapes_and_leaves_the_rest() {
    for (text, audio, event_id) in [
        (
            r#"{"type":"input_audio_buffer.append","audio":"AAAA"}"#,
            &b"AAAA"[..],
            None,
        ),
        (
            // Python's json.dumps: spaces after separators.
            r#"{"type": "input_audio_buffer.append", "audio": "AA==", "event_id": "evt_1"}"#,
            b"AA==",
            Some("evt_1"),
        ),
        (
            " {\"audio\":\"\",\n\"type\":\"input_audio_buffer.append\"}\t",
            b"",
            None,
        ),
    ] {
        assert_eq!(
            scan_append(text),
            Some(AppendFields { audio, event_id }),
            "{text}"
        );
    }
    for text in [
        r#"{"type":"input_audio_buffer.commit"}"#,
        r#"{"type":"input_audio_buffer.append"}"#,
        r#"{"type":"input_audio_buffer.append","audio":"AAAA","extra":1}"#,
        r#"{"type":"input_audio_buffer.append","audio":"AAAA","audio":"AAAA"}"#,
        r#"{"type":"input_audio_buffer.append","audio":"AAAA","event_id":null}"#,
        r#"{"type":"input_audio_buffer.append","audio":"AAAA","event_id":"a\"b"}"#,
        r#"{"type":"input_audio_buffer\u002eappend","audio":"AAAA"}"#,
        r#"{"type":"input_audio_buffer.append","audio":"AAAA"} x"#,
        r#"{"type":"input_audio_buffer.append","audio":"AAAA""#,
        r#"{"type":"input_audio_buffer.append","audio":"AAAA",}"#,
        "[]",
        "",
    ] {
        assert_eq!(scan_append(text), None, "{text}");
    }
}

#[test]
fn an_append_with_json_escapes_goes_the_slow_way_and_is_taken() {
    let mut exchange = Exchange::new();
    exchange.outputs();
    // "\/" is "/": valid JSON and, unescaped, valid base64 (6 bytes).
    let text = r#"{"type":"input_audio_buffer.append","audio":"AAAA\/AAA"}"#;
    assert!(scan_append(text).is_some());
    exchange
        .codec
        .on_text(text, &mut exchange.session, exchange.now);
    assert_eq!(exchange.outputs(), Vec::<serde_json::Value>::new());
    assert_eq!(exchange.codec.state.borrow().uncommitted_samples, 3);
}
