//! The native JSON protocol as a codec over the session core (API.md,
//! "Streaming transcription"): [`decode`] turns a client's text frame into a
//! session [`Control`], [`encode`] turns a [`SessionEvent`] into what the
//! connection sends ([`Output`]: a JSON message or the close). Times are
//! rounded to milliseconds here, the precision of the wire.
//!
//! [`NativeJson`] is this codec as the connection uses it (a [`Codec`]);
//! `Session::on_text`, `Session::take_outputs` and `Session::start_message`
//! are the session seen through it, for tests, benches and the fuzz harness.
//! Another protocol is another file like this one, plus its route.

use std::cell::RefCell;
use std::time::Instant;

use super::codec::{Codec, Frame};
use super::protocol::{ClientMessage, ServerMessage, WordOut, ENCODING_PCM_S16LE};
use crate::session::{Control, Session, SessionEvent, SessionFigures, StreamParams};

/// The native JSON protocol, as the connection uses it.
#[derive(Default)]
pub struct NativeJson {
    /// The token `session_start` announces, when the session can be
    /// resumed (`ws/resume.rs`).
    resume_token: RefCell<Option<String>>,
}

impl NativeJson {
    /// This protocol's [`super::codec::NewCodec`].
    pub fn new_codec(_model: &'static str, _vad_hangover_ms: u32) -> Box<dyn Codec> {
        Box::new(NativeJson::default())
    }
}

impl Codec for NativeJson {
    fn name(&self) -> &'static str {
        "native"
    }

    fn apply_query(&self, params: &mut StreamParams, query: Option<&str>) -> Result<(), String> {
        params.apply_query(query)
    }

    fn on_text(&self, text: &str, session: &mut Session, now: Instant) {
        session.on_text(text, now);
    }

    fn resumable(&self) -> bool {
        true
    }

    fn offer_resume(&self, token: &str) -> bool {
        *self.resume_token.borrow_mut() = Some(token.to_string());
        true
    }

    fn encode(&self, event: SessionEvent, out: &mut Vec<Frame>) {
        let is_start = matches!(event, SessionEvent::Started { .. });
        out.extend(encode(event).map(|output| {
            match output {
                Output::Message(ServerMessage::SessionStart {
                    session_id,
                    sample_rate,
                    encoding,
                    vad_mode,
                    interim_results,
                    ..
                }) if is_start => Frame::Text {
                    text: ServerMessage::SessionStart {
                        session_id,
                        sample_rate,
                        encoding,
                        vad_mode,
                        interim_results,
                        resume_token: self.resume_token.borrow().clone(),
                    }
                    .to_json(),
                    sheddable: false,
                },
                Output::Message(message) => Frame::Text {
                    text: message.to_json(),
                    sheddable: message.is_sheddable(),
                },
                Output::Close(code) => Frame::Close(code),
            }
        }));
    }
}

/// Something the connection must send, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Message(ServerMessage),
    /// Send a close frame with this code; the session is over.
    Close(u16),
}

/// The control a client's text frame asks for. A `config` message is
/// applied to a copy of `params`: the session takes the result if it still
/// accepts parameters.
pub fn decode(text: &str, params: &StreamParams) -> Control {
    match ClientMessage::parse(text) {
        Err(message) => Control::Invalid(message),
        Ok(ClientMessage::Keepalive) => Control::Keepalive,
        Ok(ClientMessage::End) => Control::End,
        Ok(ClientMessage::Finalize) => Control::Finalize,
        Ok(ClientMessage::Config(config)) => {
            let mut next = params.clone();
            Control::Configure(next.apply_config(&config).map(|()| next))
        }
    }
}

/// What the native protocol sends for `event`; `None` for events it has no
/// message for (the end of speech: its final says it).
pub fn encode(event: SessionEvent) -> Option<Output> {
    let message = match event {
        SessionEvent::Started {
            session_id,
            sample_rate,
            vad_mode,
            interim_results,
        } => ServerMessage::SessionStart {
            session_id,
            sample_rate,
            encoding: ENCODING_PCM_S16LE,
            vad_mode,
            interim_results,
            resume_token: None,
        },
        SessionEvent::SpeechStarted {
            segment_id,
            start_s,
        } => ServerMessage::SpeechStart {
            segment_id,
            start: round_ms(start_s),
        },
        // The native protocol says these with its finals (or not at all).
        SessionEvent::SpeechEnded { .. }
        | SessionEvent::Finalized { .. }
        | SessionEvent::UtteranceEnd { .. } => return None,
        SessionEvent::Interim {
            segment_id,
            text,
            start_s,
            end_s,
        } => ServerMessage::Transcript {
            segment_id,
            is_final: false,
            text,
            start: round_ms(start_s),
            end: round_ms(end_s),
            words: None,
        },
        SessionEvent::Final {
            segment_id,
            text,
            start_s,
            end_s,
            words,
            ..
        } => ServerMessage::Transcript {
            segment_id,
            is_final: true,
            text,
            start: round_ms(start_s),
            end: round_ms(end_s),
            words: Some(
                words
                    .into_iter()
                    .map(|word| WordOut {
                        word: word.word,
                        start: round_ms(word.start_s),
                        end: round_ms(word.end_s),
                    })
                    .collect(),
            ),
        },
        SessionEvent::Error {
            kind,
            message,
            retry_after_s,
        } => ServerMessage::Error {
            code: kind.code(),
            message,
            retry_after_s,
        },
        SessionEvent::Ended {
            session_id,
            reason,
            figures,
        } => ServerMessage::SessionEnd {
            session_id,
            reason: reason.name(),
            metrics: SessionFigures {
                audio_seconds: round_ms(figures.audio_seconds),
                ..figures
            },
        },
        SessionEvent::Close(code) => return Some(Output::Close(code)),
    };
    Some(Output::Message(message))
}

/// The session as the native protocol drives it.
impl Session {
    /// A text frame: the control it carries.
    pub fn on_text(&mut self, text: &str, now: Instant) {
        let control = decode(text, self.params());
        self.on_control(control, now);
    }

    /// What to send, in order.
    pub fn take_outputs(&mut self) -> impl Iterator<Item = Output> + '_ {
        self.take_events().filter_map(encode)
    }

    /// The first message of every session.
    pub fn start_message(&self) -> ServerMessage {
        match encode(self.start_event()) {
            Some(Output::Message(message)) => message,
            // `Started` always encodes to `session_start`.
            _ => unreachable!("a session start encodes to a message"),
        }
    }
}

fn round_ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}
