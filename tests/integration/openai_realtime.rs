//! OpenAI's Realtime transcription over WebSocket (`/v1/realtime`): a
//! session streaming a fixture, the operator view of it, the key in a
//! header or a subprotocol, turn detection off, and bad input answered
//! with error events while the session goes on.

use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Value};
use tungstenite::client::IntoClientRequest;

use crate::support::{eventually, fixture_pcm, get, request_with, Server, WsRefused};

/// A Realtime client: tungstenite on `/v1/realtime?{query}`.
struct Realtime {
    socket: tungstenite::WebSocket<TcpStream>,
}

impl Realtime {
    fn connect(
        server: &Server,
        query: &str,
        headers: &[(&str, &str)],
    ) -> Result<(Realtime, Option<String>), WsRefused> {
        let url = format!("ws://127.0.0.1:{}/v1/realtime?{query}", server.port());
        let mut request = url.into_client_request().expect("request");
        for (name, value) in headers {
            request.headers_mut().insert(
                tungstenite::http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                value.parse().expect("value"),
            );
        }
        let stream = TcpStream::connect(("127.0.0.1", server.port())).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        match tungstenite::client::client(request, stream) {
            Ok((socket, response)) => {
                let protocol = response
                    .headers()
                    .get("sec-websocket-protocol")
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_string);
                Ok((Realtime { socket }, protocol))
            }
            Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
                Err(WsRefused {
                    status: response.status().as_u16(),
                    body: String::new(),
                })
            }
            Err(error) => panic!("handshake failed: {error}"),
        }
    }

    fn open(server: &Server) -> Realtime {
        let (realtime, _) = Realtime::connect(server, "intent=transcription", &[])
            .unwrap_or_else(|refused| panic!("refused: {refused:?}"));
        realtime
    }

    fn send(&mut self, event: &Value) {
        self.send_text(&event.to_string());
    }

    fn send_text(&mut self, text: &str) {
        self.socket
            .send(tungstenite::Message::text(text))
            .expect("send");
    }

    /// The next event; panics on a close or a timeout.
    fn next(&mut self) -> Value {
        loop {
            match self.socket.read().expect("read") {
                tungstenite::Message::Text(text) => {
                    return serde_json::from_str(text.as_str()).expect("JSON event")
                }
                tungstenite::Message::Close(frame) => panic!("closed: {frame:?}"),
                _ => {}
            }
        }
    }

    /// Events until one of `kind`, which is returned last.
    fn until(&mut self, kind: &str) -> Vec<Value> {
        let mut events = Vec::new();
        loop {
            let event = self.next();
            let done = event["type"] == kind;
            events.push(event);
            if done {
                return events;
            }
        }
    }

    /// Stream 16 kHz PCM16 as 24 kHz appends of 100 ms.
    fn stream_pcm16k(&mut self, pcm: &[u8]) {
        let upsampled = upsample_16k_to_24k(pcm);
        for chunk in upsampled.chunks(4800) {
            self.send(&json!({"type": "input_audio_buffer.append", "audio": base64(chunk)}));
        }
    }
}

/// 16 kHz PCM16 to 24 kHz by linear interpolation (good enough for the VAD).
fn upsample_16k_to_24k(pcm: &[u8]) -> Vec<u8> {
    let samples: Vec<f64> = pcm
        .chunks_exact(2)
        .map(|pair| f64::from(i16::from_le_bytes([pair[0], pair[1]])))
        .collect();
    let count = samples.len() * 3 / 2;
    let mut out = Vec::with_capacity(count * 2);
    for index in 0..count {
        let position = index as f64 * 2.0 / 3.0;
        let left = position.floor() as usize;
        let right = (left + 1).min(samples.len() - 1);
        let fraction = position - left as f64;
        let value = samples[left] * (1.0 - fraction) + samples[right] * fraction;
        out.extend_from_slice(&(value.round() as i16).to_le_bytes());
    }
    out
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len() / 3 * 4 + 4);
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

fn silence_16k(ms: usize) -> Vec<u8> {
    vec![0; 32 * ms]
}

#[test]
fn a_realtime_session_transcribes_each_utterance() {
    let server = Server::start(&[]);
    // What the batch endpoint hears in the same audio.
    let batch = crate::support::post(
        &server,
        "/v1/transcribe",
        "audio/wav",
        &crate::support::fixture("two_utterances.wav"),
        &[],
    )
    .json();
    assert_eq!(batch["segments"].as_array().map(Vec::len), Some(2));

    let mut client = Realtime::open(&server);
    let created = client.next();
    assert_eq!(created["type"], "session.created");
    assert_eq!(created["session"]["type"], "transcription");
    assert_eq!(
        created["session"]["audio"]["input"]["format"]["rate"],
        24_000
    );

    // The operator view shows the session and its dialect.
    let sessions = get(&server, "/v1/sessions").json();
    assert_eq!(sessions["count"], 1);
    assert_eq!(sessions["sessions"][0]["protocol"], "openai_realtime");

    let mut audio = fixture_pcm("two_utterances.wav");
    audio.extend(silence_16k(1000));
    client.stream_pcm16k(&audio);
    let mut events = client.until("conversation.item.input_audio_transcription.completed");
    events.extend(client.until("conversation.item.input_audio_transcription.completed"));
    let completed: Vec<&Value> = events
        .iter()
        .filter(|event| event["type"] == "conversation.item.input_audio_transcription.completed")
        .collect();
    assert_eq!(completed.len(), 2);
    let started: Vec<&Value> = events
        .iter()
        .filter(|event| event["type"] == "input_audio_buffer.speech_started")
        .collect();
    assert_eq!(started.len(), 2, "{events:#?}");
    for (index, done) in completed.iter().enumerate() {
        let transcript = done["transcript"].as_str().expect("transcript");
        assert!(!transcript.is_empty());
        assert_eq!(done["item_id"], started[index]["item_id"]);
        // The segment's times, converted: the VAD saw the same speech.
        let start_ms = started[index]["audio_start_ms"].as_u64().expect("ms") as f64;
        let batch_start = batch["segments"][index]["start"].as_f64().expect("start") * 1000.0;
        assert!(
            (start_ms - batch_start).abs() <= 60.0,
            "{start_ms} vs {batch_start}"
        );
    }
    let mut ids: Vec<&str> = events
        .iter()
        .map(|event| event["event_id"].as_str().expect("event_id"))
        .collect();
    let count = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), count, "event ids repeat");
    drop(client);
    crate::support::assert_active_sessions(&server, 0, Duration::from_secs(10));
}

#[test]
fn the_key_comes_in_a_header_or_a_subprotocol() {
    let server = Server::start(&["--api-key", "sk-live"]);
    let refused = Realtime::connect(&server, "intent=transcription", &[]).err();
    assert_eq!(refused.map(|refused| refused.status), Some(401));
    let refused = Realtime::connect(
        &server,
        "intent=transcription",
        &[(
            "Sec-WebSocket-Protocol",
            "realtime, openai-insecure-api-key.wrong",
        )],
    )
    .err();
    assert_eq!(refused.map(|refused| refused.status), Some(401));

    let (mut client, _) = Realtime::connect(
        &server,
        "intent=transcription",
        &[("Authorization", "Bearer sk-live")],
    )
    .expect("bearer");
    assert_eq!(client.next()["type"], "session.created");
    let (mut client, protocol) = Realtime::connect(
        &server,
        "intent=transcription",
        &[(
            "Sec-WebSocket-Protocol",
            "realtime, openai-insecure-api-key.sk-live, openai-beta.realtime-v1",
        )],
    )
    .expect("subprotocol");
    assert_eq!(protocol.as_deref(), Some("realtime"));
    assert_eq!(client.next()["type"], "session.created");
    assert_eq!(
        request_with(
            &server,
            "GET",
            "/v1/realtime",
            &[("Authorization", "Bearer sk-live")]
        )
        .status,
        400,
        "a plain GET is not an upgrade"
    );
}

#[test]
fn another_intent_is_refused() {
    let server = Server::start(&[]);
    let (mut client, _) = Realtime::connect(&server, "intent=conversation", &[]).expect("upgrade");
    let error = client.next();
    assert_eq!(error["type"], "error");
    assert!(error["error"]["message"]
        .as_str()
        .is_some_and(|message| message.contains("intent=transcription")));
}

#[test]
fn without_turn_detection_the_client_commits() {
    let server = Server::start(&[]);
    let mut client = Realtime::open(&server);
    client.next();
    client.send(
        &json!({"type": "session.update", "session": {"type": "transcription",
        "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                            "transcription": {"model": "whisper-1", "language": "en"},
                            "turn_detection": null}}}}),
    );
    let updated = client.next();
    assert_eq!(updated["type"], "session.updated");
    assert_eq!(
        updated["session"]["audio"]["input"]["turn_detection"],
        Value::Null
    );
    let mut audio = fixture_pcm("two_utterances.wav");
    audio.extend(silence_16k(600));
    client.stream_pcm16k(&audio);
    client.send(&json!({"type": "input_audio_buffer.commit", "event_id": "mine"}));
    let events = client.until("conversation.item.input_audio_transcription.completed");
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert!(
        !kinds.contains(&"input_audio_buffer.speech_started"),
        "{kinds:?}"
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|kind| **kind == "input_audio_buffer.committed")
            .count(),
        1
    );
    // Both utterances in one item: the mock hears about 2.5 words a
    // second of speech, so more than one utterance's worth.
    let transcript = events.last().expect("completed")["transcript"]
        .as_str()
        .expect("transcript");
    let seconds = events.last().expect("completed")["usage"]["seconds"]
        .as_f64()
        .expect("usage");
    assert!(seconds > 3.0, "{seconds}");
    assert!(transcript.split(' ').count() >= 6, "{transcript}");
}

#[test]
fn bad_events_get_error_events_and_the_session_goes_on() {
    let server = Server::start(&[]);
    let mut client = Realtime::open(&server);
    client.next();
    let expect_error = |client: &mut Realtime, text: &str, code: &str| {
        client.send_text(text);
        let event = client.next();
        assert_eq!(event["type"], "error", "{text:.80}");
        assert_eq!(event["error"]["code"], code, "{text:.80}: {event}");
        assert!(event["event_id"].is_string());
    };
    expect_error(&mut client, "{\"type\": ", "invalid_json");
    expect_error(
        &mut client,
        r#"{"type": "input_audio_buffer.append", "audio": "not base64!"}"#,
        "invalid_value",
    );
    expect_error(&mut client, r#"{"type": "warp.drive"}"#, "invalid_value");
    expect_error(
        &mut client,
        r#"{"type": "input_audio_buffer.commit"}"#,
        "input_audio_buffer_commit_empty",
    );
    // Over the 15 MiB an append may carry.
    let huge = format!(
        r#"{{"type": "input_audio_buffer.append", "audio": "{}"}}"#,
        "A".repeat(15 * 1024 * 1024 + 4)
    );
    expect_error(&mut client, &huge, "invalid_value");
    // Binary frames are not the dialect's.
    client
        .socket
        .send(tungstenite::Message::binary(vec![0u8; 640]))
        .expect("send");
    assert_eq!(client.next()["type"], "error");

    // The session still transcribes.
    let mut audio = fixture_pcm("hello.wav");
    audio.extend(silence_16k(1000));
    client.stream_pcm16k(&audio);
    let events = client.until("conversation.item.input_audio_transcription.completed");
    assert!(events.last().expect("completed")["transcript"]
        .as_str()
        .is_some_and(|text| !text.is_empty()));
    assert!(eventually(Duration::from_secs(5), || get(
        &server,
        "/v1/sessions"
    )
    .json()["count"]
        == 1));
}
