//! Deepgram's live dialect (`GET /v1/listen`) as a codec over the session
//! core, and the query parameters Deepgram clients send to both `/v1/listen`
//! routes ([`ListenParams`]; the pre-recorded route is `api::deepgram`).
//!
//! The client sends binary PCM16 (`encoding=linear16`) and the text control
//! messages `KeepAlive`, `Finalize` and `CloseStream`; the server answers
//! with Deepgram's `Results`, `SpeechStarted`, `UtteranceEnd`, `Metadata` and
//! `Error` messages. How the session's events map:
//! - an interim is a `Results` with `is_final: false`; a final is
//!   `is_final: true`, `speech_final` when the VAD heard the speech end (the
//!   `endpointing` silence) and `from_finalize` when it completes a
//!   `Finalize`; a `Finalize` with nothing to finish is answered by an empty
//!   final `Results` with `from_finalize: true`;
//! - `SpeechStarted` with `vad_events=true`, `UtteranceEnd` after
//!   `utterance_end_ms` of silence;
//! - the end of a `CloseStream` (or of the server's drain, an operator's
//!   delete, the maximum duration) is `Metadata`, then close 1000; an idle
//!   session is closed 1011 `NET-0001` as Deepgram does, without `Metadata`.
//!
//! Messages are serialised from borrowed views straight into one buffer sized
//! for them: the message's own bytes are the only allocation per message.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt::{self, Write as _};
use std::time::SystemTime;

use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

use super::codec::{Codec, Frame};
use crate::audio::VAD_RATES_HZ;
use crate::error::WsErrorKind;
use crate::http::query::parse_query;
use crate::session::{EndReason, EventWord, FinalEnd, SessionEvent, SessionFigures, StreamParams};

/// The protocol's name in the operator view.
pub const PROTOCOL: &str = "deepgram";

/// The only encoding accepted: raw PCM16 little-endian.
pub const ENCODING_LINEAR16: &str = "linear16";

/// The bounds of `endpointing` and `utterance_end_ms`, in milliseconds.
const ENDPOINTING_MS_MAX: u32 = 60_000;
const UTTERANCE_END_MS_MIN: u32 = 1_000;
const UTTERANCE_END_MS_MAX: u32 = 60_000;

/// Invalid messages waiting for their `Error` frame, at most (a reader
/// batch holds a few; more are answered generically).
const REPLIES_MAX: usize = 16;
/// The client message quoted back in a `SchemaError`, at most, in bytes.
const QUOTE_BYTES_MAX: usize = 256;

/// Which `/v1/listen` a query is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenMode {
    Live,
    Prerecorded,
}

/// What `endpointing` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpointing {
    /// Not given (or `true`): the server's VAD hangover.
    Default,
    /// `false`: finals still come as the VAD cuts segments, never
    /// `speech_final`.
    Off,
    /// This many milliseconds of silence end an utterance (the VAD hangover).
    Ms(u32),
}

/// The query parameters of a `/v1/listen` request that this server acts on.
/// Parameters it cannot honour are refused by [`ListenParams::parse`];
/// labels it has no use for (`model`, `tag`, `extra`, …) are accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenParams {
    /// `encoding=linear16` was given (raw PCM16).
    pub linear16: bool,
    pub sample_rate: Option<u32>,
    pub interim_results: bool,
    pub endpointing: Endpointing,
    pub utterance_end_ms: Option<u32>,
    pub vad_events: bool,
    /// `punctuate` or `smart_format`: transcripts as the engine writes them;
    /// otherwise lower case without punctuation, as Deepgram's default.
    pub punctuate: bool,
    pub language: Option<String>,
    /// Pre-recorded: add `results.utterances`.
    pub utterances: bool,
}

/// Features whose output this server cannot produce: refused when enabled.
const UNSUPPORTED_FLAGS: &[&str] = &[
    "diarize",
    "multichannel",
    "numerals",
    "profanity_filter",
    "dictation",
    "filler_words",
    "measurements",
    "paragraphs",
    "detect_entities",
    "detect_language",
    "summarize",
    "topics",
    "intents",
    "sentiment",
];

/// Features with a value this server cannot honour: refused when present.
const UNSUPPORTED_VALUES: &[&str] = &[
    "diarize_model",
    "redact",
    "search",
    "keywords",
    "keyterm",
    "replace",
    "callback",
    "custom_topic",
    "custom_intent",
    "language_hint",
];

impl ListenParams {
    /// Parse a `/v1/listen` query string.
    ///
    /// # Errors
    /// Why the request is refused (Deepgram's `400`).
    pub fn parse(query: Option<&str>, mode: ListenMode) -> Result<ListenParams, String> {
        let pairs =
            parse_query(query).map_err(|pair| format!("malformed query parameter {pair:?}"))?;
        let mut params = ListenParams {
            linear16: false,
            sample_rate: None,
            interim_results: false,
            endpointing: Endpointing::Default,
            utterance_end_ms: None,
            vad_events: false,
            punctuate: false,
            language: None,
            utterances: false,
        };
        for (name, value) in &pairs {
            let (name, value) = (name.as_str(), value.as_str());
            match name {
                "encoding" if value.eq_ignore_ascii_case(ENCODING_LINEAR16) => {
                    params.linear16 = true;
                }
                "encoding" => {
                    return Err(format!(
                        "encoding {value:?} is not supported: send raw PCM16 with encoding=linear16"
                    ))
                }
                "sample_rate" => params.sample_rate = Some(parse_sample_rate(value, mode)?),
                "channels" if value == "1" => {}
                "channels" => {
                    return Err(format!(
                        "channels={value} is not supported: send mono audio (channels=1)"
                    ))
                }
                "interim_results" => params.interim_results = parse_bool(name, value)?,
                "endpointing" => params.endpointing = parse_endpointing(value)?,
                "utterance_end_ms" => params.utterance_end_ms = Some(parse_utterance_end(value)?),
                "vad_events" => params.vad_events = parse_bool(name, value)?,
                "punctuate" | "smart_format" => {
                    params.punctuate |= parse_bool(name, value)?;
                }
                "utterances" => params.utterances = parse_bool(name, value)?,
                "language" if value.eq_ignore_ascii_case("multi") => params.language = None,
                "language" if crate::model::is_language_tag(value) => {
                    params.language = Some(value.to_string());
                }
                "language" => return Err(format!("invalid language {value:?}")),
                _ if UNSUPPORTED_FLAGS.contains(&name) && parse_bool(name, value)? => {
                    return Err(format!("{name}=true is not supported by this server"));
                }
                _ if UNSUPPORTED_VALUES.contains(&name) && !value.is_empty() => {
                    return Err(format!("{name} is not supported by this server"));
                }
                _ => {}
            }
        }
        if mode == ListenMode::Live {
            if !params.linear16 {
                return Err(
                    "encoding=linear16 (with sample_rate) is required: the live endpoint takes raw PCM16, not containerized audio"
                        .to_string(),
                );
            }
            if params.sample_rate.is_none() {
                return Err("sample_rate is required with encoding=linear16".to_string());
            }
        }
        Ok(params)
    }

    /// Set a stream's parameters from these.
    pub fn apply(&self, stream: &mut StreamParams) {
        if let Some(rate) = self.sample_rate {
            stream.sample_rate = rate;
        }
        stream.interim_results = self.interim_results;
        stream.language.clone_from(&self.language);
        stream.vad_hangover_ms = match self.endpointing {
            Endpointing::Ms(ms) => Some(ms),
            Endpointing::Default | Endpointing::Off => None,
        };
        stream.utterance_end_ms = self.utterance_end_ms;
    }
}

fn parse_bool(name: &str, value: &str) -> Result<bool, String> {
    match value {
        "" => Ok(true),
        _ if value.eq_ignore_ascii_case("true") => Ok(true),
        _ if value.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(format!("{name} must be true or false, got {value:?}")),
    }
}

fn parse_sample_rate(value: &str, mode: ListenMode) -> Result<u32, String> {
    let rate = value.parse::<u32>().ok();
    match (mode, rate) {
        (ListenMode::Live, Some(rate)) if VAD_RATES_HZ.contains(&rate) => Ok(rate),
        (ListenMode::Live, _) => Err(format!(
            "sample_rate must be 8000, 16000, 32000 or 48000 on the live endpoint, got {value:?}"
        )),
        (ListenMode::Prerecorded, Some(rate)) if (8_000..=192_000).contains(&rate) => Ok(rate),
        (ListenMode::Prerecorded, _) => Err(format!(
            "sample_rate must be between 8000 and 192000, got {value:?}"
        )),
    }
}

fn parse_endpointing(value: &str) -> Result<Endpointing, String> {
    if value.eq_ignore_ascii_case("false") {
        return Ok(Endpointing::Off);
    }
    if value.is_empty() || value.eq_ignore_ascii_case("true") {
        return Ok(Endpointing::Default);
    }
    match value.parse::<u32>() {
        Ok(ms) if (1..=ENDPOINTING_MS_MAX).contains(&ms) => Ok(Endpointing::Ms(ms)),
        _ => Err(format!(
            "endpointing must be false or milliseconds from 1 to {ENDPOINTING_MS_MAX}, got {value:?}"
        )),
    }
}

fn parse_utterance_end(value: &str) -> Result<u32, String> {
    match value.parse::<u32>() {
        Ok(ms) if (UTTERANCE_END_MS_MIN..=UTTERANCE_END_MS_MAX).contains(&ms) => Ok(ms),
        _ => Err(format!(
            "utterance_end_ms must be milliseconds from {UTTERANCE_END_MS_MIN} to {UTTERANCE_END_MS_MAX}, got {value:?}"
        )),
    }
}

/// What the model reports itself as, in `metadata.model_info`.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub name: &'static str,
    pub version: &'static str,
    pub arch: &'static str,
}

impl ModelInfo {
    pub fn new(model: &'static str) -> ModelInfo {
        ModelInfo {
            name: model,
            version: crate::VERSION,
            arch: model,
        }
    }
}

/// A stable id for the engine, in Deepgram's `model_uuid` form: the same
/// name gives the same id on every node.
pub fn model_uuid(model: &str) -> String {
    // FNV-1a over the name, twice with different seeds: not a secret, just
    // stable and well spread.
    let fnv = |seed: u64| {
        model.bytes().fold(seed, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
    };
    uuid::Uuid::from_u64_pair(fnv(0xcbf2_9ce4_8422_2325), fnv(0x6c62_272e_07bb_0142)).to_string()
}

/// A word as Deepgram's `word`: lower case, without the punctuation around
/// it, written without allocating.
pub struct PlainWord<'a>(pub &'a str);

impl PlainWord<'_> {
    fn core(&self) -> &str {
        self.0.trim_matches(|c: char| !c.is_alphanumeric())
    }

    pub fn is_empty(&self) -> bool {
        self.core().is_empty()
    }
}

impl fmt::Display for PlainWord<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.core().chars() {
            if c.is_alphanumeric() || c == '\'' || c == '-' {
                for lower in c.to_lowercase() {
                    f.write_char(lower)?;
                }
            }
        }
        Ok(())
    }
}

/// A transcript as the client asked for it: as the engine wrote it
/// (`punctuate`), or as plain words.
pub struct TranscriptText<'a> {
    pub text: &'a str,
    pub punctuate: bool,
}

impl Serialize for TranscriptText<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.punctuate {
            return serializer.serialize_str(self.text.trim());
        }
        serializer.collect_str(&PlainText(self.text))
    }
}

struct PlainText<'a>(&'a str);

impl fmt::Display for PlainText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for word in self.0.split_whitespace().map(PlainWord) {
            if word.is_empty() {
                continue;
            }
            if !first {
                f.write_char(' ')?;
            }
            first = false;
            write!(f, "{word}")?;
        }
        Ok(())
    }
}

/// The words of a transcript in Deepgram's form (`punctuated_word` with
/// `punctuate`); words with no letter or digit are left out.
pub struct WordList<'a, W> {
    pub words: &'a [W],
    pub punctuate: bool,
    /// `(word, start_s, end_s)` of an element.
    pub parts: fn(&W) -> (&str, f64, f64),
}

impl<W> Serialize for WordList<'_, W> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct WordOut<'a> {
            word: &'a PlainWordSer<'a>,
            start: f64,
            end: f64,
            confidence: f64,
            #[serde(skip_serializing_if = "Option::is_none")]
            punctuated_word: Option<&'a str>,
        }
        let mut seq = serializer.serialize_seq(None)?;
        for element in self.words {
            let (word, start, end) = (self.parts)(element);
            if PlainWord(word).is_empty() {
                continue;
            }
            seq.serialize_element(&WordOut {
                word: &PlainWordSer(word),
                start: round_ms(start),
                end: round_ms(end),
                confidence: CONFIDENCE,
                punctuated_word: self.punctuate.then(|| word.trim()),
            })?;
        }
        seq.end()
    }
}

struct PlainWordSer<'a>(&'a str);

impl Serialize for PlainWordSer<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&PlainWord(self.0))
    }
}

/// The engines report no confidence: every transcript and word says 1.
pub const CONFIDENCE: f64 = 1.0;

/// Round seconds to milliseconds, the precision of times on the wire.
pub fn round_ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

/// What the live codec acts on besides the stream's parameters.
#[derive(Debug, Clone, Copy, Default)]
struct LiveOptions {
    vad_events: bool,
    endpointing: bool,
    punctuate: bool,
}

/// Why a client message was invalid, for its `Error` frame.
#[derive(Debug)]
enum Invalid {
    /// Not a message we know: Deepgram's `SchemaError`, quoting it.
    Schema { description: String, quote: String },
    /// A `Configure`: nothing can be changed mid-stream here.
    Configure { code: &'static str },
}

/// The Deepgram live codec of one connection.
pub struct DeepgramLive {
    info: ModelInfo,
    uuid: String,
    options: Cell<LiveOptions>,
    request_id: RefCell<String>,
    created: Cell<Option<SystemTime>>,
    /// Invalid messages whose `Error` is still to be sent, in order.
    invalid: RefCell<VecDeque<Invalid>>,
    /// A close went out (idle timeout): the session's own close is dropped.
    closed: Cell<bool>,
}

impl DeepgramLive {
    /// This protocol's [`super::codec::NewCodec`].
    pub fn new_codec(model: &'static str, _vad_hangover_ms: u32) -> Box<dyn Codec> {
        Box::new(DeepgramLive {
            info: ModelInfo::new(model),
            uuid: model_uuid(model),
            options: Cell::new(LiveOptions::default()),
            request_id: RefCell::new(String::new()),
            created: Cell::new(None),
            invalid: RefCell::new(VecDeque::new()),
            closed: Cell::new(false),
        })
    }

    fn remember(&self, invalid: Invalid) {
        let mut queue = self.invalid.borrow_mut();
        if queue.len() >= REPLIES_MAX {
            queue.pop_front();
        }
        queue.push_back(invalid);
    }

    fn text(
        &self,
        out: &mut Vec<Frame>,
        message: &impl Serialize,
        capacity: usize,
        sheddable: bool,
    ) {
        let mut buffer = Vec::with_capacity(capacity);
        // Our own message types always serialise; a failure would be a bug.
        if serde_json::to_writer(&mut buffer, message).is_ok() {
            if let Ok(text) = String::from_utf8(buffer) {
                out.push(Frame::Text { text, sheddable });
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn results(
        &self,
        out: &mut Vec<Frame>,
        text: &str,
        words: &[EventWord],
        start_s: f64,
        end_s: f64,
        is_final: bool,
        end: FinalEnd,
    ) {
        let options = self.options.get();
        let request_id = self.request_id.borrow();
        let start = round_ms(start_s);
        let message = ResultsMessage {
            kind: "Results",
            channel_index: [0, 1],
            duration: round_ms(round_ms(end_s) - start).max(0.0),
            start,
            is_final,
            speech_final: is_final && end.endpoint && options.endpointing,
            channel: Channel {
                alternatives: [Alternative {
                    transcript: TranscriptText {
                        text,
                        punctuate: options.punctuate,
                    },
                    confidence: CONFIDENCE,
                    words: WordList {
                        words,
                        punctuate: options.punctuate,
                        parts: |word: &EventWord| (word.word.as_str(), word.start_s, word.end_s),
                    },
                }],
            },
            metadata: ResultsMetadata {
                request_id: &request_id,
                model_info: &self.info,
                model_uuid: &self.uuid,
            },
            from_finalize: end.answers_finalize,
        };
        let capacity = 400 + 2 * text.len() + 140 * words.len();
        self.text(out, &message, capacity, !is_final);
    }

    fn metadata(&self, out: &mut Vec<Frame>, figures: &SessionFigures) {
        let created = self.created.get().unwrap_or_else(SystemTime::now);
        let request_id = self.request_id.borrow();
        let message = serde_json::json!({
            "type": "Metadata",
            "transaction_key": "deprecated",
            "request_id": *request_id,
            "sha256": "",
            "created": humantime::format_rfc3339_millis(created).to_string(),
            "duration": round_ms(figures.audio_seconds),
            "channels": 1,
            "models": [self.uuid],
            "model_info": { self.uuid.as_str(): self.info },
        });
        self.text(out, &message, 512, false);
    }

    fn error(&self, out: &mut Vec<Frame>, kind: WsErrorKind, message: &str) {
        let invalid = match kind {
            WsErrorKind::InvalidMessage => self.invalid.borrow_mut().pop_front(),
            _ => None,
        };
        match invalid {
            Some(Invalid::Configure { code }) => {
                let request_id = self.request_id.borrow();
                let reply = ConfigureFailure {
                    kind: "ConfigureFailure",
                    request_id: &request_id,
                    code,
                    description: message,
                };
                self.text(out, &reply, 256 + message.len(), false);
            }
            Some(Invalid::Schema { description, quote }) => {
                let reply = ErrorMessage {
                    kind: "Error",
                    variant: "SchemaError",
                    description: &description,
                    message: Some(&quote),
                };
                self.text(
                    out,
                    &reply,
                    128 + description.len() + 2 * quote.len(),
                    false,
                );
            }
            None => {
                let reply = ErrorMessage {
                    kind: "Error",
                    variant: kind.code(),
                    description: message,
                    message: None,
                };
                self.text(out, &reply, 128 + message.len(), false);
            }
        }
    }
}

impl Codec for DeepgramLive {
    fn name(&self) -> &'static str {
        PROTOCOL
    }

    fn apply_query(&self, params: &mut StreamParams, query: Option<&str>) -> Result<(), String> {
        let listen = ListenParams::parse(query, ListenMode::Live)?;
        listen.apply(params);
        self.options.set(LiveOptions {
            vad_events: listen.vad_events,
            endpointing: listen.endpointing != Endpointing::Off,
            punctuate: listen.punctuate,
        });
        Ok(())
    }

    fn decode_text(&self, text: &str, _params: &StreamParams) -> crate::session::Control {
        use crate::session::Control;
        #[derive(Deserialize)]
        struct Probe<'a> {
            #[serde(rename = "type", borrow)]
            kind: Option<std::borrow::Cow<'a, str>>,
            #[serde(default)]
            keyterms: Option<serde::de::IgnoredAny>,
        }
        let schema = |description: String| {
            let mut end = text.len().min(QUOTE_BYTES_MAX);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            Invalid::Schema {
                description,
                quote: text[..end].to_string(),
            }
        };
        let probe = match serde_json::from_str::<Probe<'_>>(text) {
            Ok(probe) => probe,
            Err(error) => {
                let description = format!("the message is not valid JSON: {error}");
                self.remember(schema(description.clone()));
                return Control::Invalid(description);
            }
        };
        match probe.kind.as_deref() {
            Some("KeepAlive") => Control::Keepalive,
            Some("Finalize") => Control::Finalize,
            Some("CloseStream") => Control::End,
            Some("Configure") => {
                let (code, description) = if probe.keyterms.is_some() {
                    (
                        "CONFIGURE_KEYTERMS_NOT_SUPPORTED",
                        "this server's model does not take keyterms",
                    )
                } else {
                    (
                        "CONFIGURE_INTERNAL_ERROR",
                        "this server cannot change a stream's features mid-stream",
                    )
                };
                self.remember(Invalid::Configure { code });
                Control::Invalid(description.to_string())
            }
            Some(other) => {
                let description = format!(
                    "unknown message type {other:?}: expected KeepAlive, Finalize or CloseStream"
                );
                self.remember(schema(description.clone()));
                Control::Invalid(description)
            }
            None => {
                let description = "the message has no \"type\"".to_string();
                self.remember(schema(description.clone()));
                Control::Invalid(description)
            }
        }
    }

    fn encode(&self, event: SessionEvent, out: &mut Vec<Frame>) {
        if self.closed.get() {
            return;
        }
        match event {
            SessionEvent::Started { session_id, .. } => {
                *self.request_id.borrow_mut() = session_id;
                self.created.set(Some(SystemTime::now()));
            }
            SessionEvent::SpeechStarted { start_s, .. } => {
                if self.options.get().vad_events {
                    let message = SpeechStarted {
                        kind: "SpeechStarted",
                        channel: [0],
                        timestamp: round_ms(start_s),
                    };
                    self.text(out, &message, 96, false);
                }
            }
            SessionEvent::SpeechEnded { .. } => {}
            SessionEvent::Interim {
                text,
                start_s,
                end_s,
                ..
            } => self.results(out, &text, &[], start_s, end_s, false, FinalEnd::default()),
            SessionEvent::Final {
                text,
                start_s,
                end_s,
                words,
                end,
                ..
            } => self.results(out, &text, &words, start_s, end_s, true, end),
            SessionEvent::Finalized { at_s } => {
                let end = FinalEnd {
                    endpoint: false,
                    answers_finalize: true,
                };
                self.results(out, "", &[], at_s, at_s, true, end);
            }
            SessionEvent::UtteranceEnd { last_speech_end_s } => {
                let message = UtteranceEnd {
                    kind: "UtteranceEnd",
                    channel: [0, 1],
                    last_word_end: round_ms(last_speech_end_s),
                };
                self.text(out, &message, 96, false);
            }
            SessionEvent::Error { kind, message, .. } => self.error(out, kind, &message),
            SessionEvent::Ended {
                reason: EndReason::IdleTimeout,
                ..
            } => {
                // Deepgram's own idle close: no Metadata.
                self.closed.set(true);
                out.push(Frame::CloseWithReason(1011, "NET-0001"));
            }
            SessionEvent::Ended { figures, .. } => self.metadata(out, &figures),
            SessionEvent::Close(code) => {
                self.closed.set(true);
                out.push(Frame::Close(code));
            }
        }
    }
}

#[derive(Serialize)]
struct ResultsMessage<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    channel_index: [u8; 2],
    duration: f64,
    start: f64,
    is_final: bool,
    speech_final: bool,
    channel: Channel<'a, EventWord>,
    metadata: ResultsMetadata<'a>,
    from_finalize: bool,
}

/// Deepgram's `channel` (live `Results`) and `channels[0]` (pre-recorded):
/// one alternative, its words of type `W`.
#[derive(Serialize)]
#[serde(bound = "")]
pub struct Channel<'a, W> {
    pub alternatives: [Alternative<'a, W>; 1],
}

#[derive(Serialize)]
#[serde(bound = "")]
pub struct Alternative<'a, W> {
    pub transcript: TranscriptText<'a>,
    pub confidence: f64,
    pub words: WordList<'a, W>,
}

#[derive(Serialize)]
struct ResultsMetadata<'a> {
    request_id: &'a str,
    model_info: &'a ModelInfo,
    model_uuid: &'a str,
}

#[derive(Serialize)]
struct SpeechStarted {
    #[serde(rename = "type")]
    kind: &'static str,
    channel: [u8; 1],
    timestamp: f64,
}

#[derive(Serialize)]
struct UtteranceEnd {
    #[serde(rename = "type")]
    kind: &'static str,
    channel: [u8; 2],
    last_word_end: f64,
}

#[derive(Serialize)]
struct ErrorMessage<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    variant: &'a str,
    description: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
}

#[derive(Serialize)]
struct ConfigureFailure<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    request_id: &'a str,
    code: &'static str,
    description: &'a str,
}

#[cfg(test)]
#[path = "deepgram_tests.rs"]
mod tests;
