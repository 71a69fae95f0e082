//! [`Codec`]: what the streaming connection needs from a wire protocol. The
//! connection task (admission, reader, writer, jobs, slow consumers) is the
//! same for every protocol; a codec only turns the client's text frames into
//! session controls, the session's events into frames, and the upgrade's
//! query string into stream parameters. Audio arrives in binary frames for
//! every protocol. The native JSON protocol is `native::NativeJson`; another
//! protocol is one more implementation and its route.
//!
//! A connection makes its own codec ([`NewCodec`]) so a protocol can keep
//! per-session state (ids, the parameters it answers with) behind `&self`
//! in `Cell`s; a stateless codec is a zero-sized box.

use crate::session::{Control, SessionEvent, StreamParams};

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
/// for protocols that report it.
pub type NewCodec = fn(model: &'static str) -> Box<dyn Codec>;

/// A wire protocol over the session core.
pub trait Codec {
    /// The protocol's name in the operator view (`GET /v1/sessions`).
    fn name(&self) -> &'static str;
    /// Set the stream's parameters from the upgrade request's query string.
    ///
    /// # Errors
    /// A message for the `unsupported_format` error.
    fn apply_query(&self, params: &mut StreamParams, query: Option<&str>) -> Result<(), String>;
    /// The control a client's text frame carries (`params`: the session's
    /// current parameters, for a change of them).
    fn decode_text(&self, text: &str, params: &StreamParams) -> Control;
    /// Append the frames that say `event` to `out` (none when the protocol
    /// has nothing for it; some protocols say one event in two messages).
    fn encode(&self, event: SessionEvent, out: &mut Vec<Frame>);
}
