//! A stream's parameters: the audio it carries and what the client asked
//! for. A protocol fills them in from its own form (the native protocol:
//! the query string, then a `config` message; `ws::protocol`).

/// A stream's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamParams {
    pub sample_rate: u32,
    pub vad_mode: u8,
    pub interim_results: bool,
    pub language: Option<String>,
    /// The silence that ends a segment, when the client chose it (else the
    /// server's `vad_hangover_ms`).
    pub vad_hangover_ms: Option<u32>,
    /// Report [`crate::session::SessionEvent::UtteranceEnd`] after this much
    /// silence following a segment (off when `None`).
    pub utterance_end_ms: Option<u32>,
    /// Text before the audio, for every job of the stream (Whisper's
    /// initial prompt); set by the OpenAI Realtime dialect.
    pub prompt: Option<std::sync::Arc<str>>,
}

impl StreamParams {
    pub fn new(default_vad_mode: u8) -> StreamParams {
        StreamParams {
            sample_rate: 16_000,
            vad_mode: default_vad_mode,
            interim_results: true,
            language: None,
            vad_hangover_ms: None,
            utterance_end_ms: None,
            prompt: None,
        }
    }
}
