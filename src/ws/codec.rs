//! [`Codec`]: what the streaming connection needs from a wire protocol. The
//! connection task (admission, reader, writer, jobs, slow consumers) is the
//! same for every protocol; a codec turns the client's frames into what
//! they ask of the session (audio, controls), the session's events into
//! frames, and the upgrade's query string into stream parameters; it never
//! does I/O. By default audio arrives raw in binary frames and each text
//! frame carries one control ([`Codec::decode_text`]); a protocol that
//! carries audio in its text messages (OpenAI Realtime's base64 `append`)
//! reads its frames itself ([`Codec::on_text`], [`Codec::on_binary`]). The
//! native JSON protocol is `native::NativeJson`, Deepgram's live one
//! `deepgram::DeepgramLive`, OpenAI's Realtime transcription
//! `openai_realtime::OpenAiRealtime`; another protocol is one more
//! implementation and its route.
//!
//! A connection makes its own codec ([`NewCodec`]) so a protocol can keep
//! per-session state (ids, the parameters it answers with, its input
//! format) behind `&self` in `Cell`s; a stateless codec is a zero-sized box.

use std::time::Instant;

use crate::session::{Control, Session, SessionEvent, StreamParams};

/// A frame for the connection to send.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A text frame. `sheddable`: it may be dropped when the client reads
    /// too slowly (an interim), never a final or an error.
    Text { text: String, sheddable: bool },
    /// A close frame with this code; nothing follows.
    Close(u16),
    /// A close frame with a code and a reason (protocols that name why, as
    /// Deepgram's `NET-0001`); nothing follows.
    CloseWithReason(u16, &'static str),
}

/// Makes the codec of one connection; `model`: the loaded engine's name,
/// `vad_hangover_ms`: the server's silence that ends a segment, for
/// protocols that report them.
pub type NewCodec = fn(model: &'static str, vad_hangover_ms: u32) -> Box<dyn Codec>;

/// A wire protocol over the session core, one per connection.
pub trait Codec {
    /// The protocol's name in the operator view (`GET /v1/sessions`).
    fn name(&self) -> &'static str;
    /// The largest message the protocol takes, given the configured bound.
    fn message_bytes_max(&self, configured: usize) -> usize {
        configured
    }
    /// Set the stream's parameters from the upgrade request's query string.
    ///
    /// # Errors
    /// A message for the `unsupported_format` error.
    fn apply_query(&self, params: &mut StreamParams, query: Option<&str>) -> Result<(), String>;
    /// A client's text frame: apply what it asks to the session. By default
    /// the one control [`Codec::decode_text`] reads from it.
    fn on_text(&self, text: &str, session: &mut Session, now: Instant) {
        let control = self.decode_text(text, session.params());
        session.on_control(control, now);
    }
    /// The control a client's text frame carries (`params`: the session's
    /// current parameters, for a change of them), for protocols whose
    /// messages each map onto one control. A protocol that overrides
    /// [`Codec::on_text`] does not need it: by default the frame is invalid.
    fn decode_text(&self, _text: &str, _params: &StreamParams) -> Control {
        Control::Invalid("this protocol does not take text frames".to_string())
    }
    /// A client's binary frame: raw audio in the session's format by default.
    fn on_binary(&self, bytes: &[u8], session: &mut Session, now: Instant) {
        session.on_audio(bytes, now);
    }
    /// Append the frames that say `event` to `out` (none when the protocol
    /// has nothing for it; some protocols say one event in several
    /// messages), after any frames the protocol queued itself.
    fn encode(&self, event: SessionEvent, out: &mut Vec<Frame>);
    /// Append the frames the protocol queued itself while it handled the
    /// client's frames (its answers to client events), in order; the
    /// connection sends them before the frames of the session's next events.
    fn take_frames(&self, _out: &mut Vec<Frame>) {}
    /// Whether a dropped session of this protocol may be resumed on a new
    /// connection (`ws/resume.rs`); a protocol that can announces `token`
    /// in its start message. Only the native protocol says so.
    fn offer_resume(&self, _token: &str) -> bool {
        false
    }
    /// Whether an upgrade asking to resume a session (`?resume=`) is one
    /// for this protocol (it is otherwise a new session, the parameter
    /// ignored).
    fn resumable(&self) -> bool {
        false
    }
}
