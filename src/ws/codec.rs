//! [`Codec`]: what the streaming connection needs from a wire protocol. The
//! connection task (admission, reader, writer, jobs, slow consumers) is the
//! same for every protocol; a codec turns the client's frames into what
//! they ask of the session (audio, controls), the session's events into
//! frames, and the upgrade's query string into stream parameters. A codec
//! is made per connection (`api::stream_codec`), so it may keep the
//! protocol's own state (ids, its input format); it never does I/O. The
//! native JSON protocol is `native::NativeJson`, OpenAI's Realtime
//! transcription `openai_realtime::OpenAiRealtime`; another protocol is
//! one more implementation and its route.

use std::time::Instant;

use crate::session::{Session, SessionEvent, StreamParams};

/// A frame for the connection to send.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A text frame. `sheddable`: it may be dropped when the client reads
    /// too slowly (an interim), never a final or an error.
    Text { text: String, sheddable: bool },
    /// A close frame with this code; nothing follows.
    Close(u16),
}

/// A wire protocol over the session core, one per connection.
pub trait Codec {
    /// The protocol's name in the operator view (`GET /v1/sessions`).
    fn protocol(&self) -> &'static str;
    /// The largest message the protocol takes, given the configured bound.
    fn message_bytes_max(&self, configured: usize) -> usize {
        configured
    }
    /// Set the stream's parameters from the upgrade request's query string.
    ///
    /// # Errors
    /// A message for the `unsupported_format` error.
    fn apply_query(&self, params: &mut StreamParams, query: Option<&str>) -> Result<(), String>;
    /// A client's text frame: apply what it asks to the session.
    fn on_text(&self, text: &str, session: &mut Session, now: Instant);
    /// A client's binary frame: raw audio in the session's format by default.
    fn on_binary(&self, bytes: &[u8], session: &mut Session, now: Instant) {
        session.on_audio(bytes, now);
    }
    /// The frame that says `event`, or `None` when the protocol has none
    /// (or has queued its frames for [`Codec::take_frame`]).
    fn encode(&self, event: SessionEvent) -> Option<Frame>;
    /// Frames the protocol queued itself (answers to client events, or
    /// several frames for one event), in order; the connection sends them
    /// after the frame of the event that queued them.
    fn take_frame(&self) -> Option<Frame> {
        None
    }
}
