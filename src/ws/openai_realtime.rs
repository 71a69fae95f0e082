//! OpenAI's Realtime transcription (`GET /v1/realtime?intent=transcription`)
//! as a codec over the session core, so an unmodified Realtime client can
//! stream to us. The client sends JSON events in text frames:
//! `session.update` (or the older `transcription_session.update`),
//! `input_audio_buffer.append` (base64 PCM16, 24 kHz unless the session's
//! `audio.input.format` says 16 kHz), `input_audio_buffer.commit` and
//! `input_audio_buffer.clear`. We answer with `session.created` /
//! `session.updated` (or `transcription_session.updated`),
//! `input_audio_buffer.speech_started` / `speech_stopped` / `committed` /
//! `cleared`, `conversation.item.input_audio_transcription.delta` /
//! `completed` / `failed`, and `error` with OpenAI's error object; every
//! event has a unique `event_id`.
//!
//! Mapping onto the session core: 24 kHz audio is resampled to the 16 kHz
//! the VAD and the engine take ([`StreamResampler`]); with `server_vad`
//! turn detection (the default) each VAD segment is one conversation item,
//! committed when its speech stops, its interims sent as text deltas and
//! its final as `completed`. With `turn_detection: null` the segments
//! between two `commit`s make one item (a commit cuts the segment in
//! progress: `Control::Finalize`), transcribed segment by segment and
//! completed with their texts joined. `clear` cuts the segment in progress
//! and drops the uncommitted item's results. Deltas are sent only while an
//! interim extends the text already sent (Whisper may revise an interim;
//! a delta cannot be taken back): the deltas joined are a prefix of the
//! `completed` transcript, which is authoritative.
//!
//! Data path: an `append` is read without a JSON parser ([`scan_append`],
//! serde_json for any other event or shape), its base64 decoded into a
//! buffer kept for the connection ([`decode_base64`]), resampled into
//! another and handed to the session as samples: no allocation per frame
//! beyond the frame itself (`tests/alloc_openai.rs`).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::codec::{Codec, Frame};
use crate::audio::resample::StreamResampler;
use crate::error::WsErrorKind;
use crate::session::{Control, EndReason, Session, SessionEvent, StreamParams};

/// The largest `append` event OpenAI accepts; a larger one is answered with
/// an error and the session goes on.
pub const APPEND_EVENT_BYTES_MAX: usize = 15 * 1024 * 1024;

/// The WebSocket message bound on this route: above
/// [`APPEND_EVENT_BYTES_MAX`], so an event just over it can be refused
/// without ending the session. Past this bound the message cannot be
/// read past, and the connection closes 1009 as on every route.
pub const REALTIME_MESSAGE_BYTES_MAX: usize = APPEND_EVENT_BYTES_MAX + 1024 * 1024;

/// The input rate when the session names none (OpenAI's only PCM rate).
pub const INPUT_RATE_DEFAULT_HZ: u32 = 24_000;

/// The rate the session core runs at (the VAD's and Whisper's).
const SESSION_RATE_HZ: u32 = 16_000;

/// The least audio a commit takes, as OpenAI.
const COMMIT_MS_MIN: u64 = 100;

/// The prompt bound, as the REST endpoints'.
const PROMPT_BYTES_MAX: usize = crate::api::openai::PROMPT_BYTES_MAX;

/// The subprotocol prefix browsers carry the key in (they cannot set headers).
pub const KEY_SUBPROTOCOL_PREFIX: &str = "openai-insecure-api-key.";

/// The key a browser client put in `Sec-WebSocket-Protocol`, if any.
pub fn subprotocol_key(head: &crate::http::RequestHead) -> Option<&str> {
    head.headers
        .iter()
        .filter(|(name, _)| name == "sec-websocket-protocol")
        .flat_map(|(_, value)| value.split(','))
        .find_map(|protocol| protocol.trim().strip_prefix(KEY_SUBPROTOCOL_PREFIX))
}

/// The subprotocol to answer an upgrade with: `realtime` when the client
/// offered it (OpenAI's browser clients offer it first, with the key and a
/// beta flag, and fail a handshake that names none of theirs); never a key.
pub fn accept_subprotocol(head: &crate::http::RequestHead) -> Option<&'static str> {
    head.headers
        .iter()
        .filter(|(name, _)| name == "sec-websocket-protocol")
        .flat_map(|(_, value)| value.split(','))
        .any(|protocol| protocol.trim() == "realtime")
        .then_some("realtime")
}

/// OpenAI's Realtime transcription dialect; one per connection.
pub struct OpenAiRealtime {
    state: RefCell<Realtime>,
}

impl OpenAiRealtime {
    /// This protocol's [`super::codec::NewCodec`]; `vad_hangover_ms` is the
    /// silence duration it reports for server VAD.
    pub fn new_codec(_model: &'static str, vad_hangover_ms: u32) -> Box<dyn Codec> {
        Box::new(OpenAiRealtime {
            state: RefCell::new(Realtime::new(vad_hangover_ms)),
        })
    }
}

impl Codec for OpenAiRealtime {
    fn name(&self) -> &'static str {
        "openai_realtime"
    }

    fn message_bytes_max(&self, configured: usize) -> usize {
        configured.max(REALTIME_MESSAGE_BYTES_MAX)
    }

    fn apply_query(&self, params: &mut StreamParams, query: Option<&str>) -> Result<(), String> {
        self.state.borrow_mut().apply_query(params, query)
    }

    fn on_text(&self, text: &str, session: &mut Session, now: Instant) {
        self.state.borrow_mut().on_text(text, session, now);
    }

    fn on_binary(&self, _bytes: &[u8], _session: &mut Session, _now: Instant) {
        self.state.borrow_mut().send_error(
            "invalid_request_error",
            "invalid_value",
            "binary frames are not part of the Realtime protocol: send audio in input_audio_buffer.append events",
            None,
            None,
        );
    }

    fn encode(&self, event: SessionEvent, out: &mut Vec<Frame>) {
        let mut state = self.state.borrow_mut();
        out.extend(state.outbox.drain(..));
        state.on_event(event);
        out.extend(state.outbox.drain(..));
    }

    fn take_frames(&self, out: &mut Vec<Frame>) {
        out.extend(self.state.borrow_mut().outbox.drain(..));
    }
}

/// Which names the client uses for the session events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Names {
    /// `session.update` / `session.updated`, the session nested under `audio.input`.
    Current,
    /// `transcription_session.update` / `transcription_session.updated`, flat.
    Beta,
}

/// One conversation item: the audio of one turn and its transcript.
#[derive(Debug)]
struct Item {
    id: String,
    /// The segments it holds: `[first_segment, first_segment + segments)`.
    first_segment: u64,
    segments: u64,
    /// Finals (or failures) received for its segments.
    finals: u64,
    /// Committed: no segment joins it any more.
    closed: bool,
    /// Cleared before its commit: its results are dropped.
    discarded: bool,
    /// The finals' texts so far, joined by spaces.
    settled: String,
    /// The text sent as deltas so far (a prefix of what the client sees).
    sent: String,
    start_s: f64,
    end_s: f64,
}

impl Item {
    fn holds(&self, segment_id: u64) -> bool {
        (self.first_segment..self.first_segment + self.segments).contains(&segment_id)
    }
}

/// The connection's state behind the codec.
struct Realtime {
    /// Unique per connection: event and item ids carry it.
    id_prefix: String,
    session_id: String,
    next_event: u64,
    next_item: u64,
    previous_item: Option<String>,
    names: Names,
    input_rate_hz: u32,
    resampler: Option<StreamResampler>,
    /// Server VAD turn detection; `false` is `turn_detection: null`.
    server_vad: bool,
    model: String,
    language: Option<String>,
    prompt: Option<Arc<str>>,
    silence_duration_ms: u32,
    items: VecDeque<Item>,
    /// The segment the VAD has open, if any.
    open_segment: Option<u64>,
    /// Segments whose speech has ended, and those with a final (or failure).
    segments_ended: u64,
    segments_finalized: u64,
    /// Input samples since the last commit or clear.
    uncommitted_samples: u64,
    /// An odd trailing byte of the previous append.
    odd_byte: Option<u8>,
    /// Buffers reused by every append.
    decoded: Vec<u8>,
    samples: Vec<i16>,
    resampled: Vec<i16>,
    outbox: VecDeque<Frame>,
    /// The JSON of the event being encoded, kept for the connection.
    json: Vec<u8>,
}

/// An event's `event_id` (`event_` + the connection's prefix + a number),
/// serialized without a string of its own.
#[derive(Debug, Clone, Copy)]
struct EventId {
    prefix: [u8; 12],
    number: u64,
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The prefix is hex digits.
        let prefix = std::str::from_utf8(&self.prefix).unwrap_or("000000000000");
        write!(f, "event_{prefix}{:06}", self.number)
    }
}

impl Serialize for EventId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// What the client sends, with the fields this dialect reads; `audio` is
/// borrowed from the frame unless it had JSON escapes.
#[derive(Deserialize)]
struct ClientEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    event_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    audio: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    session: Option<Value>,
}

/// Client event types of the Realtime API that a transcription session
/// does not serve (answered with an error naming them, not as unknown).
const CONVERSATION_EVENTS: [&str; 8] = [
    "conversation.item.create",
    "conversation.item.retrieve",
    "conversation.item.truncate",
    "conversation.item.delete",
    "response.create",
    "response.cancel",
    "output_audio_buffer.clear",
    "input_audio_buffer.dtmf",
];

#[derive(Serialize)]
struct ErrorObject<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    code: &'a str,
    message: &'a str,
    param: Option<&'a str>,
    event_id: Option<&'a str>,
}

impl Realtime {
    fn new(silence_duration_ms: u32) -> Realtime {
        let prefix = uuid::Uuid::new_v4().simple().to_string();
        Realtime {
            session_id: format!("sess_{}", &prefix[..20]),
            id_prefix: prefix[..12].to_string(),
            next_event: 0,
            next_item: 0,
            previous_item: None,
            names: Names::Current,
            input_rate_hz: INPUT_RATE_DEFAULT_HZ,
            resampler: StreamResampler::new(INPUT_RATE_DEFAULT_HZ, SESSION_RATE_HZ),
            server_vad: true,
            model: "whisper-1".to_string(),
            language: None,
            prompt: None,
            silence_duration_ms,
            items: VecDeque::new(),
            open_segment: None,
            segments_ended: 0,
            segments_finalized: 0,
            uncommitted_samples: 0,
            odd_byte: None,
            decoded: Vec::new(),
            samples: Vec::new(),
            resampled: Vec::new(),
            outbox: VecDeque::new(),
            json: Vec::with_capacity(512),
        }
    }

    fn apply_query(
        &mut self,
        params: &mut StreamParams,
        query: Option<&str>,
    ) -> Result<(), String> {
        params.sample_rate = SESSION_RATE_HZ;
        params.interim_results = true;
        let pairs = crate::http::query::parse_query(query)?;
        for (name, value) in pairs {
            match name.as_str() {
                "intent" if value != "transcription" => {
                    return Err(format!(
                        "only intent=transcription is served here, got intent={value:?}"
                    ))
                }
                "model" if !value.is_empty() => self.model = value,
                "language" if !value.is_empty() => {
                    if !crate::model::is_language_tag(&value) {
                        return Err(format!("invalid language {value:?}"));
                    }
                    self.language = Some(value.clone());
                    params.language = Some(value);
                }
                // The key (checked before the upgrade) and anything else a
                // client adds (`api-version`, `call_id`) are not ours to refuse.
                _ => {}
            }
        }
        Ok(())
    }

    fn event_id(&mut self) -> EventId {
        self.next_event += 1;
        let mut prefix = [b'0'; 12];
        let source = self.id_prefix.as_bytes();
        let length = source.len().min(prefix.len());
        prefix[..length].copy_from_slice(&source[..length]);
        EventId {
            prefix,
            number: self.next_event,
        }
    }

    fn push(&mut self, text: String, sheddable: bool) {
        self.outbox.push_back(Frame::Text { text, sheddable });
    }

    fn push_json(&mut self, value: &impl Serialize, sheddable: bool) {
        if let Some(text) = json_text(&mut self.json, value) {
            self.push(text, sheddable);
        }
    }

    fn send_error(
        &mut self,
        kind: &str,
        code: &str,
        message: &str,
        param: Option<&str>,
        client_event_id: Option<&str>,
    ) {
        #[derive(Serialize)]
        struct ErrorEvent<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            event_id: EventId,
            error: ErrorObject<'a>,
        }
        let event = ErrorEvent {
            kind: "error",
            event_id: self.event_id(),
            error: ErrorObject {
                kind,
                code,
                message,
                param,
                event_id: client_event_id,
            },
        };
        self.push_json(&event, false);
    }

    // ---- client events ------------------------------------------------

    fn on_text(&mut self, text: &str, session: &mut Session, now: Instant) {
        // Any event is activity (the idle timeout), even one refused below.
        session.on_control(Control::Keepalive, now);
        // The data path: an append read and decoded without a JSON parser.
        // Anything the fast path does not take (another shape, base64 it
        // refuses) goes through serde_json below, which answers errors.
        if text.len() <= APPEND_EVENT_BYTES_MAX {
            if let Some(fields) = scan_append(text) {
                if decode_base64(fields.audio, &mut self.decoded).is_ok() {
                    self.push_decoded(session, now);
                    self.drain(session);
                    return;
                }
            }
        }
        let event: ClientEvent<'_> = match serde_json::from_str(text) {
            Ok(event) => event,
            Err(error) => {
                let message = format!("the event is not valid JSON with a \"type\": {error}");
                self.send_error(
                    "invalid_request_error",
                    "invalid_json",
                    &message,
                    None,
                    None,
                );
                return;
            }
        };
        let client_id = event.event_id.as_deref();
        match event.kind.as_ref() {
            "input_audio_buffer.append" => {
                if text.len() > APPEND_EVENT_BYTES_MAX {
                    self.send_error(
                        "invalid_request_error",
                        "invalid_value",
                        "the event is over the 15 MiB an input_audio_buffer.append may carry",
                        Some("audio"),
                        client_id,
                    );
                    return;
                }
                match event.audio.as_deref() {
                    Some(audio) => self.on_append(audio, client_id, session, now),
                    None => self.send_error(
                        "invalid_request_error",
                        "missing_required_parameter",
                        "Missing required parameter: 'audio'.",
                        Some("audio"),
                        client_id,
                    ),
                }
            }
            "input_audio_buffer.commit" => self.on_commit(client_id, session, now),
            "input_audio_buffer.clear" => self.on_clear(session, now),
            "session.update" => self.on_update(Names::Current, event.session, client_id, session),
            "transcription_session.update" => {
                self.on_update(Names::Beta, event.session, client_id, session)
            }
            kind if CONVERSATION_EVENTS.contains(&kind) => {
                let message = format!(
                    "'{kind}' is not supported: this server serves transcription sessions only"
                );
                self.send_error(
                    "invalid_request_error",
                    "invalid_value",
                    &message,
                    Some("type"),
                    client_id,
                );
            }
            kind => {
                let message = format!(
                    "Invalid value: '{}'. Supported values are: 'session.update', 'transcription_session.update', 'input_audio_buffer.append', 'input_audio_buffer.commit' and 'input_audio_buffer.clear'.",
                    crate::api::openai::truncate_text(kind, 64)
                );
                self.send_error(
                    "invalid_request_error",
                    "invalid_value",
                    &message,
                    Some("type"),
                    client_id,
                );
            }
        }
        // Whatever the session emitted goes out now, in order with our own
        // events (the connection sends the outbox after each frame's turn).
        self.drain(session);
    }

    fn drain(&mut self, session: &mut Session) {
        let events: Vec<SessionEvent> = session.take_events().collect();
        for event in events {
            self.on_event(event);
        }
    }

    fn on_append(
        &mut self,
        audio: &str,
        client_id: Option<&str>,
        session: &mut Session,
        now: Instant,
    ) {
        if decode_base64(audio.as_bytes(), &mut self.decoded).is_err() {
            let message = format!(
                "Invalid 'audio'. Expected base64-encoded audio bytes (mono PCM16 at {} Hz) but got an invalid value.",
                self.input_rate_hz
            );
            self.send_error(
                "invalid_request_error",
                "invalid_value",
                &message,
                Some("audio"),
                client_id,
            );
            return;
        }
        self.push_decoded(session, now);
    }

    /// Hand the decoded PCM16 in `self.decoded` to the session: as it is
    /// at 16 kHz, else as samples through the resampler into a buffer kept
    /// for the connection, the session taking the samples themselves.
    fn push_decoded(&mut self, session: &mut Session, now: Instant) {
        let decoded = &self.decoded;
        self.uncommitted_samples +=
            ((decoded.len() + usize::from(self.odd_byte.is_some())) / 2) as u64;
        let Some(resampler) = &mut self.resampler else {
            session.on_audio(decoded, now);
            return;
        };
        self.samples.clear();
        let mut rest = decoded.as_slice();
        if let Some(low) = self.odd_byte.take() {
            if let Some((&high, tail)) = rest.split_first() {
                self.samples.push(i16::from_le_bytes([low, high]));
                rest = tail;
            } else {
                self.odd_byte = Some(low);
            }
        }
        let mut pairs = rest.chunks_exact(2);
        self.samples.extend(
            pairs
                .by_ref()
                .map(|pair| i16::from_le_bytes([pair[0], pair[1]])),
        );
        if let [odd] = pairs.remainder() {
            self.odd_byte = Some(*odd);
        }
        self.resampled.clear();
        resampler.push(&self.samples, &mut self.resampled);
        session.on_samples(&self.resampled, now);
    }

    fn uncommitted_ms(&self) -> u64 {
        self.uncommitted_samples * 1000 / u64::from(self.input_rate_hz.max(1))
    }

    fn on_commit(&mut self, client_id: Option<&str>, session: &mut Session, now: Instant) {
        let open_item = self.items.back().is_some_and(|item| !item.closed);
        if !open_item && self.uncommitted_ms() < COMMIT_MS_MIN {
            let message = format!(
                "Error committing input audio buffer: buffer too small. Expected at least {COMMIT_MS_MIN}ms of audio, but buffer only has {}ms of audio.",
                self.uncommitted_ms()
            );
            self.send_error(
                "invalid_request_error",
                "input_audio_buffer_commit_empty",
                &message,
                None,
                client_id,
            );
            return;
        }
        // End the segment in progress: with server VAD its end commits it.
        session.on_control(Control::Finalize, now);
        self.drain(session);
        let uncommitted_ms = self.uncommitted_ms();
        match self.items.back_mut() {
            Some(item) if !item.closed => {
                item.closed = true;
                let id = item.id.clone();
                self.committed(id);
            }
            _ if uncommitted_ms >= COMMIT_MS_MIN => {
                // Audio without speech: an item with an empty transcript.
                let seconds = uncommitted_ms as f64 / 1000.0;
                let id = self.new_item(self.segments_ended, 0.0);
                if let Some(item) = self.items.back_mut() {
                    item.closed = true;
                    item.end_s = seconds;
                }
                self.committed(id);
            }
            // The segment in progress was just committed by its end.
            _ => {}
        }
        self.uncommitted_samples = 0;
        self.complete_ready();
    }

    fn on_clear(&mut self, session: &mut Session, now: Instant) {
        session.on_control(Control::Finalize, now);
        self.drain(session);
        if let Some(item) = self.items.back_mut().filter(|item| !item.closed) {
            item.closed = true;
            item.discarded = true;
        }
        self.uncommitted_samples = 0;
        let event_id = self.event_id();
        self.push_json(
            &json!({"type": "input_audio_buffer.cleared", "event_id": event_id}),
            false,
        );
        self.complete_ready();
    }

    fn on_update(
        &mut self,
        names: Names,
        update: Option<Value>,
        client_id: Option<&str>,
        session: &mut Session,
    ) {
        let Some(update) = update else {
            self.send_error(
                "invalid_request_error",
                "missing_required_parameter",
                "Missing required parameter: 'session'.",
                Some("session"),
                client_id,
            );
            return;
        };
        match SessionUpdate::read(&update) {
            Err((param, message)) => {
                self.send_error(
                    "invalid_request_error",
                    "invalid_value",
                    &message,
                    Some(param),
                    client_id,
                );
            }
            Ok(change) => {
                self.names = names;
                if let Some(rate) = change.input_rate_hz {
                    if rate != self.input_rate_hz {
                        self.input_rate_hz = rate;
                        self.resampler = StreamResampler::new(rate, SESSION_RATE_HZ);
                        self.odd_byte = None;
                    }
                }
                if let Some(model) = change.model {
                    self.model = model;
                }
                if let Some(language) = change.language {
                    self.language = language;
                }
                if let Some(prompt) = change.prompt {
                    self.prompt = prompt;
                }
                if let Some(server_vad) = change.server_vad {
                    self.server_vad = server_vad;
                }
                session.set_hints(self.language.clone(), self.prompt.clone());
                let kind = match names {
                    Names::Current => "session.updated",
                    Names::Beta => "transcription_session.updated",
                };
                let event = json!({
                    "type": kind,
                    "event_id": self.event_id(),
                    "session": self.session_object(),
                });
                self.push_json(&event, false);
            }
        }
    }

    /// The session object, in the shape of the names the client uses.
    fn session_object(&self) -> Value {
        let turn_detection = if self.server_vad {
            json!({"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                   "silence_duration_ms": self.silence_duration_ms})
        } else {
            Value::Null
        };
        let transcription = json!({"model": self.model, "language": self.language,
                                   "prompt": self.prompt.as_deref().unwrap_or("")});
        match self.names {
            Names::Current => json!({
                "type": "transcription",
                "id": self.session_id,
                "object": "realtime.transcription_session",
                "audio": {"input": {
                    "format": {"type": "audio/pcm", "rate": self.input_rate_hz},
                    "transcription": transcription,
                    "turn_detection": turn_detection,
                    "noise_reduction": null,
                }},
                "include": null,
            }),
            Names::Beta => json!({
                "id": self.session_id,
                "object": "realtime.transcription_session",
                "input_audio_format": "pcm16",
                "input_audio_transcription": transcription,
                "turn_detection": turn_detection,
                "input_audio_noise_reduction": null,
                "include": null,
            }),
        }
    }

    // ---- session events -----------------------------------------------

    fn on_event(&mut self, event: SessionEvent) {
        match event {
            SessionEvent::Started { .. } => {
                let event = json!({
                    "type": "session.created",
                    "event_id": self.event_id(),
                    "session": self.session_object(),
                });
                self.push_json(&event, false);
            }
            SessionEvent::SpeechStarted {
                segment_id,
                start_s,
            } => self.on_speech_started(segment_id, start_s),
            SessionEvent::SpeechEnded { segment_id, end_s } => {
                self.on_speech_ended(segment_id, end_s);
            }
            SessionEvent::Interim {
                segment_id, text, ..
            } => self.on_interim(segment_id, &text),
            SessionEvent::Final {
                segment_id, text, ..
            } => self.on_final(segment_id, Ok(&text)),
            SessionEvent::Error { kind, message, .. } => {
                if kind == WsErrorKind::Internal
                    && self.segments_finalized < self.segments_ended
                    && message.starts_with("segment ")
                {
                    // A segment the engine failed on: that item failed.
                    self.on_final(self.segments_finalized, Err(&message));
                } else {
                    let kind_name = match kind {
                        WsErrorKind::Internal | WsErrorKind::Overloaded => "server_error",
                        _ => "invalid_request_error",
                    };
                    self.send_error(kind_name, kind.code(), &message, None, None);
                }
            }
            SessionEvent::Ended { reason, .. } => {
                if !matches!(reason, EndReason::ClientEnd | EndReason::ClientDisconnect) {
                    let message = format!("the session ended: {}", reason.name());
                    let kind = match reason {
                        EndReason::ServerShutdown | EndReason::Error => "server_error",
                        _ => "invalid_request_error",
                    };
                    self.send_error(kind, reason.name(), &message, None, None);
                }
            }
            SessionEvent::Close(code) => self.outbox.push_back(Frame::Close(code)),
            // A commit's answer is its item's `completed`, or `committed`
            // alone for an empty one (`on_commit`); Realtime has no
            // utterance-end event.
            SessionEvent::Finalized { .. } | SessionEvent::UtteranceEnd { .. } => {}
        }
    }

    fn new_item(&mut self, first_segment: u64, start_s: f64) -> String {
        self.next_item += 1;
        let id = format!("item_{}{:04}", self.id_prefix, self.next_item);
        self.items.push_back(Item {
            id: id.clone(),
            first_segment,
            segments: 0,
            finals: 0,
            closed: false,
            discarded: false,
            settled: String::new(),
            sent: String::new(),
            start_s,
            end_s: start_s,
        });
        id
    }

    fn on_speech_started(&mut self, segment_id: u64, start_s: f64) {
        self.open_segment = Some(segment_id);
        let joins_open_item =
            !self.server_vad && self.items.back().is_some_and(|item| !item.closed);
        if !joins_open_item {
            if let Some(item) = self.items.back_mut().filter(|item| !item.closed) {
                // Turn detection came on with an item open: it ends here.
                item.closed = true;
            }
            self.new_item(segment_id, start_s);
        }
        let Some(item) = self.items.back_mut() else {
            return;
        };
        item.segments += 1;
        let item_id = item.id.clone();
        if self.server_vad {
            #[derive(Serialize)]
            struct SpeechStarted<'a> {
                #[serde(rename = "type")]
                kind: &'static str,
                event_id: EventId,
                audio_start_ms: u64,
                item_id: &'a str,
            }
            let event = SpeechStarted {
                kind: "input_audio_buffer.speech_started",
                event_id: self.event_id(),
                audio_start_ms: seconds_to_ms(start_s),
                item_id: &item_id,
            };
            self.push_json(&event, false);
        }
    }

    fn on_speech_ended(&mut self, segment_id: u64, end_s: f64) {
        self.open_segment = None;
        self.segments_ended += 1;
        let Some(item) = self
            .items
            .iter_mut()
            .rev()
            .find(|item| item.holds(segment_id))
        else {
            return;
        };
        item.end_s = end_s;
        if !self.server_vad || item.closed {
            return;
        }
        item.closed = true;
        let item_id = item.id.clone();
        #[derive(Serialize)]
        struct SpeechStopped<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            event_id: EventId,
            audio_end_ms: u64,
            item_id: &'a str,
        }
        let event = SpeechStopped {
            kind: "input_audio_buffer.speech_stopped",
            event_id: self.event_id(),
            audio_end_ms: seconds_to_ms(end_s),
            item_id: &item_id,
        };
        self.push_json(&event, false);
        self.committed(item_id);
        self.uncommitted_samples = 0;
    }

    fn committed(&mut self, item_id: String) {
        #[derive(Serialize)]
        struct Committed<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            event_id: EventId,
            previous_item_id: Option<&'a str>,
            item_id: &'a str,
        }
        let event = Committed {
            kind: "input_audio_buffer.committed",
            event_id: self.event_id(),
            previous_item_id: self.previous_item.as_deref(),
            item_id: &item_id,
        };
        if let Some(text) = json_text(&mut self.json, &event) {
            self.push(text, false);
        }
        self.previous_item = Some(item_id);
    }

    fn on_interim(&mut self, segment_id: u64, text: &str) {
        let Some(index) = self.items.iter().position(|item| item.holds(segment_id)) else {
            return;
        };
        let item = &self.items[index];
        if item.discarded || text.is_empty() {
            return;
        }
        let mut candidate = item.settled.clone();
        if !candidate.is_empty() {
            candidate.push(' ');
        }
        candidate.push_str(text);
        self.send_delta(index, candidate, true);
    }

    /// Send what `text` adds to what the item has sent, if it extends it.
    fn send_delta(&mut self, index: usize, text: String, sheddable: bool) {
        let item = &self.items[index];
        if text.len() <= item.sent.len() || !text.starts_with(item.sent.as_str()) {
            return;
        }
        #[derive(Serialize)]
        struct Delta<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            event_id: EventId,
            item_id: &'a str,
            content_index: u32,
            delta: &'a str,
        }
        let event_id = self.event_id();
        let item = &self.items[index];
        let event = Delta {
            kind: "conversation.item.input_audio_transcription.delta",
            event_id,
            item_id: &item.id,
            content_index: 0,
            delta: &text[item.sent.len()..],
        };
        if let Some(json) = json_text(&mut self.json, &event) {
            self.push(json, sheddable);
        }
        self.items[index].sent = text;
    }

    fn on_final(&mut self, segment_id: u64, result: Result<&str, &str>) {
        self.segments_finalized = self.segments_finalized.max(segment_id + 1);
        let Some(index) = self.items.iter().position(|item| item.holds(segment_id)) else {
            return;
        };
        self.items[index].finals += 1;
        if self.items[index].discarded {
            self.complete_ready();
            return;
        }
        match result {
            Ok(text) => {
                if !text.is_empty() {
                    let item = &mut self.items[index];
                    if !item.settled.is_empty() {
                        item.settled.push(' ');
                    }
                    item.settled.push_str(text);
                    let settled = item.settled.clone();
                    self.send_delta(index, settled, false);
                }
            }
            Err(message) => {
                let item = &mut self.items[index];
                item.discarded = true;
                let item_id = item.id.clone();
                let event = json!({
                    "type": "conversation.item.input_audio_transcription.failed",
                    "event_id": self.event_id(),
                    "item_id": item_id,
                    "content_index": 0,
                    "error": {"type": "server_error", "code": "internal", "message": message, "param": null},
                });
                self.push_json(&event, false);
            }
        }
        self.complete_ready();
    }

    /// Send `completed` for the items at the front whose every final is in.
    fn complete_ready(&mut self) {
        while let Some(item) = self.items.front() {
            if !item.closed || item.finals < item.segments {
                return;
            }
            let Some(item) = self.items.pop_front() else {
                return;
            };
            if item.discarded {
                continue;
            }
            #[derive(Serialize)]
            struct Usage {
                #[serde(rename = "type")]
                kind: &'static str,
                seconds: f64,
            }
            #[derive(Serialize)]
            struct Completed<'a> {
                #[serde(rename = "type")]
                kind: &'static str,
                event_id: EventId,
                item_id: &'a str,
                content_index: u32,
                transcript: &'a str,
                usage: Usage,
            }
            let event = Completed {
                kind: "conversation.item.input_audio_transcription.completed",
                event_id: self.event_id(),
                item_id: &item.id,
                content_index: 0,
                transcript: &item.settled,
                usage: Usage {
                    kind: "duration",
                    seconds: ((item.end_s - item.start_s).max(0.0) * 1000.0).round() / 1000.0,
                },
            };
            self.push_json(&event, false);
        }
    }
}

/// `value` serialized into `buffer` (the connection's, reused), then
/// copied into a text of exactly its size: one allocation per event, none
/// for the serializer's growth. Our own event types always serialize.
fn json_text(buffer: &mut Vec<u8>, value: &impl Serialize) -> Option<String> {
    buffer.clear();
    serde_json::to_writer(&mut *buffer, value).ok()?;
    std::str::from_utf8(buffer).ok().map(str::to_owned)
}

fn seconds_to_ms(seconds: f64) -> u64 {
    (seconds * 1000.0).round().max(0.0) as u64
}

/// What a `session.update` (either form) changes; `None`: unchanged.
#[derive(Debug, Default, PartialEq)]
struct SessionUpdate {
    input_rate_hz: Option<u32>,
    model: Option<String>,
    language: Option<Option<String>>,
    prompt: Option<Option<Arc<str>>>,
    server_vad: Option<bool>,
}

type UpdateError = (&'static str, String);

impl SessionUpdate {
    /// Read an update's session object: the nested form (`audio.input`)
    /// or the flat beta form (`input_audio_format`,
    /// `input_audio_transcription`, `turn_detection`).
    fn read(session: &Value) -> Result<SessionUpdate, UpdateError> {
        let mut update = SessionUpdate::default();
        if let Some(kind) = session.get("type").and_then(Value::as_str) {
            if kind != "transcription" {
                return Err((
                    "session.type",
                    format!("this server serves transcription sessions only: session.type must be 'transcription', got '{}'", crate::api::openai::truncate_text(kind, 32)),
                ));
            }
        }
        let input = session.get("audio").and_then(|audio| audio.get("input"));
        if let Some(format) = input.and_then(|input| input.get("format")) {
            update.input_rate_hz = Some(read_format(format)?);
        }
        if let Some(format) = session.get("input_audio_format") {
            update.input_rate_hz = Some(match format.as_str() {
                Some("pcm16") => INPUT_RATE_DEFAULT_HZ,
                _ => {
                    return Err((
                        "session.input_audio_format",
                        "input_audio_format must be 'pcm16' (G.711 is not supported)".into(),
                    ))
                }
            });
        }
        let transcription = input
            .and_then(|input| input.get("transcription"))
            .or_else(|| session.get("input_audio_transcription"));
        if let Some(transcription) = transcription.filter(|value| !value.is_null()) {
            update.read_transcription(transcription)?;
        }
        let turn_detection = input
            .and_then(|input| input.get("turn_detection"))
            .or_else(|| session.get("turn_detection"));
        if let Some(turn_detection) = turn_detection {
            update.server_vad = Some(match turn_detection.get("type").and_then(Value::as_str) {
                _ if turn_detection.is_null() => false,
                // Semantic VAD is served by the same VAD.
                Some("server_vad" | "semantic_vad") => true,
                _ => {
                    return Err((
                        "session.audio.input.turn_detection.type",
                        "turn_detection.type must be 'server_vad' or 'semantic_vad', or turn_detection null".into(),
                    ))
                }
            });
        }
        Ok(update)
    }

    fn read_transcription(&mut self, transcription: &Value) -> Result<(), UpdateError> {
        if let Some(model) = transcription.get("model").and_then(Value::as_str) {
            self.model = Some(crate::api::openai::truncate_text(model, 64).to_string());
        }
        match transcription.get("language") {
            None => {}
            Some(Value::Null) => self.language = Some(None),
            Some(Value::String(language)) if language.is_empty() => self.language = Some(None),
            Some(Value::String(language)) if crate::model::is_language_tag(language) => {
                self.language = Some(Some(language.clone()));
            }
            Some(_) => {
                return Err((
                    "session.audio.input.transcription.language",
                    "language must be an ISO 639-1 code such as 'en'".into(),
                ))
            }
        }
        match transcription.get("prompt") {
            None => {}
            Some(Value::Null) => self.prompt = Some(None),
            Some(Value::String(prompt)) if prompt.is_empty() => self.prompt = Some(None),
            Some(Value::String(prompt))
                if prompt.len() <= PROMPT_BYTES_MAX && !prompt.contains('\0') =>
            {
                self.prompt = Some(Some(prompt.as_str().into()));
            }
            Some(_) => {
                return Err((
                    "session.audio.input.transcription.prompt",
                    format!("prompt must be a string of at most {PROMPT_BYTES_MAX} bytes"),
                ))
            }
        }
        Ok(())
    }
}

/// An `audio.input.format`: PCM at 24 kHz (or 16 kHz, taken as it is).
fn read_format(format: &Value) -> Result<u32, UpdateError> {
    match format.get("type").and_then(Value::as_str) {
        Some("audio/pcm") | None => {}
        Some(_) => {
            return Err((
                "session.audio.input.format.type",
                "format.type must be 'audio/pcm' (G.711 is not supported)".into(),
            ))
        }
    }
    match format.get("rate") {
        None => Ok(INPUT_RATE_DEFAULT_HZ),
        Some(rate) => match rate.as_u64() {
            Some(24_000) => Ok(24_000),
            Some(16_000) => Ok(16_000),
            _ => Err((
                "session.audio.input.format.rate",
                "format.rate must be 24000 (or 16000)".into(),
            )),
        },
    }
}

/// Why base64 did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Base64Error;

/// Marks a byte outside the alphabet in the decoding tables: bits above
/// the 24 that four characters make, so one test after the loop finds any.
const BASE64_INVALID: u32 = 0xFF00_0000;

/// The standard alphabet's values shifted to where character `position`
/// of a quad puts them (`18 - 6 × position`), [`BASE64_INVALID`] for
/// bytes outside it: a quad decodes to the OR of four lookups.
const fn base64_table(position: u32) -> [u32; 256] {
    let mut table = [BASE64_INVALID; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut index = 0;
    while index < alphabet.len() {
        table[alphabet[index] as usize] = (index as u32) << (18 - 6 * position);
        index += 1;
    }
    table
}

const BASE64_TABLES: [[u32; 256]; 4] = [
    base64_table(0),
    base64_table(1),
    base64_table(2),
    base64_table(3),
];

/// Four characters as 24 bits, or with bits of [`BASE64_INVALID`] set.
#[inline(always)]
fn base64_quad(quad: &[u8]) -> u32 {
    BASE64_TABLES[0][usize::from(quad[0])]
        | BASE64_TABLES[1][usize::from(quad[1])]
        | BASE64_TABLES[2][usize::from(quad[2])]
        | BASE64_TABLES[3][usize::from(quad[3])]
}

/// Decode standard base64 (padding optional) into `out`, replacing what it
/// held (emptied on an error); it grows only when a larger frame than any
/// before arrives.
///
/// Branch-free in its loop: eight characters (two table-OR quads) make six
/// bytes written in place, and validity is one test at the end, so the
/// Realtime data path decodes about a byte per cycle.
///
/// # Errors
/// A byte outside the alphabet, padding anywhere but the end, or a length
/// no encoding has.
pub fn decode_base64(input: &[u8], out: &mut Vec<u8>) -> Result<(), Base64Error> {
    let body = match input {
        [rest @ .., b'=', b'='] => rest,
        [rest @ .., b'='] => rest,
        _ => input,
    };
    if body.len() % 4 == 1 || (body.len() != input.len() && input.len() % 4 != 0) {
        out.clear();
        return Err(Base64Error);
    }
    let quads = body.len() / 4;
    let tail = &body[quads * 4..];
    // Every byte is written below: only growth is zero-filled first.
    let length = quads * 3 + tail.len().saturating_sub(1);
    if out.len() < length {
        out.resize(length, 0);
    } else {
        out.truncate(length);
    }
    let (whole, rest) = out.split_at_mut(quads * 3);
    let mut invalid = 0_u32;
    let mut sources = body[..quads * 4].chunks_exact(8);
    let mut targets = whole.chunks_exact_mut(6);
    for (source, target) in sources.by_ref().zip(targets.by_ref()) {
        let high = base64_quad(&source[..4]);
        let low = base64_quad(&source[4..]);
        invalid |= high | low;
        let word = (u64::from(high & 0x00FF_FFFF) << 24) | u64::from(low & 0x00FF_FFFF);
        target.copy_from_slice(&word.to_be_bytes()[2..]);
    }
    if let (source @ [_, _, _, _], target @ [_, _, _]) =
        (sources.remainder(), targets.into_remainder())
    {
        let word = base64_quad(source);
        invalid |= word;
        target.copy_from_slice(&word.to_be_bytes()[1..]);
    }
    if !tail.is_empty() {
        let mut padded = [b'A'; 4];
        padded[..tail.len()].copy_from_slice(tail);
        let word = base64_quad(&padded);
        invalid |= word;
        rest.copy_from_slice(&word.to_be_bytes()[1..tail.len()]);
    }
    if invalid & BASE64_INVALID != 0 {
        out.clear();
        return Err(Base64Error);
    }
    Ok(())
}

/// The fields of an `input_audio_buffer.append` read without a JSON
/// parser: `audio` as the bytes between its quotes (not yet checked to be
/// base64: the decoder does that) and `event_id`.
#[derive(Debug, PartialEq, Eq)]
pub struct AppendFields<'a> {
    pub audio: &'a [u8],
    pub event_id: Option<&'a str>,
}

/// The fast path of the Realtime data path: read `text` as an append
/// event if it is exactly an object of the keys `type` (with the value
/// `input_audio_buffer.append`), `audio` and optionally `event_id`, each
/// once and each a string, in any order and with any JSON whitespace; no
/// other key, no escape or control character in a key, in `type` or in
/// `event_id`. Anything
/// else is `None`, and the caller parses the event with serde_json, whose
/// reading agrees with this one wherever this one answers: an `audio`
/// string with an escape (or a quote escaped in it) holds a backslash
/// inside what is returned here, and backslashes are not base64, so the
/// caller falls back to serde_json for it when the decoder refuses it.
pub fn scan_append(text: &str) -> Option<AppendFields<'_>> {
    fn skip_whitespace(bytes: &[u8], mut at: usize) -> usize {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = bytes.get(at) {
            at += 1;
        }
        at
    }
    /// The string that starts at `at` (its opening quote): its contents
    /// and the index after its closing quote.
    fn string(bytes: &[u8], at: usize) -> Option<(&[u8], usize)> {
        if bytes.get(at) != Some(&b'"') {
            return None;
        }
        let body = bytes.get(at + 1..)?;
        let length = memchr::memchr(b'"', body)?;
        Some((&body[..length], at + 1 + length + 1))
    }
    let bytes = text.as_bytes();
    let mut at = skip_whitespace(bytes, 0);
    if bytes.get(at) != Some(&b'{') {
        return None;
    }
    at += 1;
    let (mut kind, mut audio, mut event_id) = (false, None, None);
    loop {
        at = skip_whitespace(bytes, at);
        let (key, next) = string(bytes, at)?;
        at = skip_whitespace(bytes, next);
        if bytes.get(at) != Some(&b':') {
            return None;
        }
        at = skip_whitespace(bytes, at + 1);
        let value_start = at + 1;
        let (value, next) = string(bytes, at)?;
        match key {
            b"type" if !kind && value == b"input_audio_buffer.append" => kind = true,
            b"audio" if audio.is_none() => audio = Some(value),
            // serde_json refuses control characters in strings.
            b"event_id" if event_id.is_none() && !value.iter().any(|&b| b == b'\\' || b < 0x20) => {
                // Quotes are ASCII: both ends are character boundaries.
                event_id = Some(text.get(value_start..next - 1)?);
            }
            _ => return None,
        }
        at = skip_whitespace(bytes, next);
        match bytes.get(at) {
            Some(b',') => at += 1,
            Some(b'}') => break,
            _ => return None,
        }
    }
    if skip_whitespace(bytes, at + 1) != bytes.len() || !kind {
        return None;
    }
    Some(AppendFields {
        audio: audio?,
        event_id,
    })
}

#[cfg(test)]
#[path = "openai_realtime_tests.rs"]
mod tests;
