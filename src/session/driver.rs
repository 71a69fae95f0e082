//! What a session asks of the connection that drives it and what it counts:
//! model jobs ([`JobRequest`]), the figures of one session
//! ([`SessionFigures`]) and what happened since the driver last looked, for
//! the core's metrics ([`Tally`]).

use std::time::Duration;

use serde::Serialize;

use crate::model::pool::JobKind;

/// Model work the session asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRequest {
    pub kind: JobKind,
    pub segment_id: u64,
    /// Stream samples `[start_sample, end_sample)`.
    pub start_sample: u64,
    pub end_sample: u64,
    pub samples: Vec<i16>,
}

/// What happened since the driver last looked, for the core's metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub audio_bytes: u64,
    pub audio_seconds: f64,
    pub chunks: u64,
    pub segments: u64,
    pub interims_sent: u64,
    pub finals_sent: u64,
    pub interims_shed: u64,
    /// Interims given up in flight because their segment's final went to
    /// the engine first.
    pub interims_superseded: u64,
    /// From the end of a segment's audio arriving to its final being queued.
    pub final_latencies: Vec<Duration>,
}

/// The per-session figures: the operator view's and `session_end`'s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct SessionFigures {
    pub audio_bytes: u64,
    pub audio_seconds: f64,
    pub chunks: u64,
    pub segments: u64,
    pub transcripts: u64,
}
