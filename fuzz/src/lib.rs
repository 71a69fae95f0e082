//! Fuzz harnesses of transcription-service, one file and one public function
//! per cargo-fuzz target (`fuzz_targets/<name>.rs` only calls it):
//!
//! - [`http_head_body`]: request heads, chunked bodies, multipart forms;
//! - [`ws_session`]: a streaming session driven by arbitrary client bytes;
//! - [`audio_decode`]: every upload format;
//! - [`control_json`]: the client's control messages and stream parameters;
//! - [`vad_segmenter`]: voice activity detection and segmentation;
//! - [`realtime_events`], [`deepgram_control`]: the OpenAI Realtime and
//!   Deepgram live dialects' client messages (`dialect_messages.rs`);
//!
//! with [`input::Input`] (the control bytes every input starts with) and
//! [`synth::synth_audio`] (speech-like audio from a few bytes) shared by them.
//!
//! The same files are compiled into the root crate's `tests/regression.rs`
//! with `#[path]`, so the seeds and every minimised reproducer are replayed on
//! the stable toolchain through exactly the code the fuzzer ran. They
//! therefore depend on nothing but `transcription_service`, `tungstenite` and
//! `serde_json` (dependencies of the root crate) and `std`.
//!
//! Inputs start with a few control bytes (limits, split points, modes) read by
//! [`input::Input`]; a missing byte reads as zero, so every input is valid.

#![allow(clippy::too_many_lines)]

pub mod audio_decode;
pub mod control_json;
pub mod dialect_messages;
pub mod http_head_body;
pub mod input;
pub mod synth;
pub mod vad_segmenter;
pub mod ws_session;

pub use audio_decode::audio_decode;
pub use control_json::control_json;
pub use dialect_messages::{deepgram_control, realtime_events};
pub use http_head_body::http_head_body;
pub use vad_segmenter::vad_segmenter;
pub use ws_session::ws_session;

use transcription_service::model::pool::JobKind;

/// Every finding's input keeps this signature: replay it by target name.
pub fn run_target(target: &str, data: &[u8]) {
    match target {
        "http_head_body" => http_head_body(data),
        "ws_session" => ws_session(data),
        "audio_decode" => audio_decode(data),
        "control_json" => control_json(data),
        "vad_segmenter" => vad_segmenter(data),
        "realtime_events" => realtime_events(data),
        "deepgram_control" => deepgram_control(data),
        other => panic!("no fuzz target {other}"),
    }
}

#[allow(dead_code)]
fn _job_kinds_are_known(kind: JobKind) -> bool {
    matches!(kind, JobKind::Batch | JobKind::Interim | JobKind::Final)
}
