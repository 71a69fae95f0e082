//! The session core's boundary, in protocol-neutral terms: the [`Control`]s
//! a client sends besides audio, and the [`SessionEvent`]s the session
//! emits. A wire protocol is a codec between its messages and these (the
//! native JSON one: `ws::native`).
//!
//! Times are stream seconds (sample index / sample rate), unrounded: a codec
//! rounds them to its own precision.

use super::{EndReason, SessionFigures, StreamParams};
use crate::error::WsErrorKind;

/// What a client asks of its session, besides sending audio.
#[derive(Debug, Clone, PartialEq)]
pub enum Control {
    /// End the session once every final is delivered.
    End,
    /// End the current segment now; the session goes on.
    Finalize,
    /// Nothing but activity (resets the idle timer).
    Keepalive,
    /// New parameters, accepted before the first audio only; `Err` holds why
    /// the client's change is unsupported.
    Configure(Result<StreamParams, String>),
    /// A message the protocol could not read, and why.
    Invalid(String),
}

/// A word of a final transcript, in stream seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct EventWord {
    pub word: String,
    pub start_s: f64,
    pub end_s: f64,
}

/// Why a final's segment ended, for protocols that say so (Deepgram's
/// `speech_final` and `from_finalize`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FinalEnd {
    /// The VAD heard the speech end (a run of silence as long as the
    /// hangover, or the maximum segment length); false when a finalize or the
    /// session's end cut the segment.
    pub endpoint: bool,
    /// This final completes a client's finalize: it is the last one that
    /// was due when the finalize came.
    pub answers_finalize: bool,
}

/// What happened in a session, in order, for its protocol to send.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    /// The session exists (always the first event).
    Started {
        session_id: String,
        sample_rate: u32,
        vad_mode: u8,
        interim_results: bool,
    },
    /// The VAD heard speech start: a segment opened.
    SpeechStarted { segment_id: u64, start_s: f64 },
    /// The segment's speech ended (its final follows).
    SpeechEnded { segment_id: u64, end_s: f64 },
    /// A provisional transcript of the open segment.
    Interim {
        segment_id: u64,
        text: String,
        start_s: f64,
        end_s: f64,
    },
    /// A segment's final transcript, in segment order.
    Final {
        segment_id: u64,
        text: String,
        start_s: f64,
        end_s: f64,
        words: Vec<EventWord>,
        /// How its segment ended, and whether it completes a finalize.
        end: FinalEnd,
    },
    /// A finalize found nothing to finish: every final due was already sent.
    /// (When there was something, the last final due says it instead:
    /// [`FinalEnd::answers_finalize`].) `at_s`: the stream time reached.
    Finalized { at_s: f64 },
    /// No speech for the stream's `utterance_end_ms` after a segment whose
    /// final has been sent (only with that parameter set).
    UtteranceEnd { last_speech_end_s: f64 },
    /// An error; [`SessionEvent::Close`] follows when it ends the session.
    Error {
        kind: WsErrorKind,
        message: String,
        /// Seconds to wait before trying again, for a refusal that passes
        /// (`overloaded` at capacity).
        retry_after_s: Option<u32>,
    },
    /// The session ended, with its figures.
    Ended {
        session_id: String,
        reason: EndReason,
        figures: SessionFigures,
    },
    /// Close the connection with this close code; nothing follows.
    Close(u16),
}
