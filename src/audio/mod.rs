//! Audio: everything between the bytes a client sent and the segments the model
//! transcribes.
//!
//! It owns decoding ([`decode`]: WAV, raw PCM16, FLAC, MP3, Ogg Vorbis into mono
//! PCM16), resampling ([`resample`]) to a rate the VAD accepts, and speech
//! segmentation: [`vad::VadSegmenter`] classifies frames with WebRTC VAD behind an
//! energy gate and feeds the pure [`segmenter::Segmenter`], which emits
//! [`SegmentEvent`]s. It receives byte slices (batch) or sample slices (streaming)
//! from the HTTP and session layers and hands on [`Pcm`] and sample ranges; it uses
//! nothing else from the crate. Errors are the small [`AudioError`] kinds, which the
//! server maps to HTTP statuses in one place.

pub mod decode;
pub mod ogg;
pub mod resample;
pub mod segmenter;
pub mod vad;

pub use decode::{decode, AudioFormat};
pub use segmenter::{SegmentEvent, Segmenter, SegmenterConfig};
pub use vad::{segment_all, VadSegmenter};

/// The sample rates WebRTC VAD accepts.
pub const VAD_RATES_HZ: [u32; 4] = [8000, 16000, 32000, 48000];

/// Mono PCM16 at one of VAD_RATES_HZ.
#[derive(Debug, Clone, PartialEq)]
pub struct Pcm {
    pub samples: Vec<i16>,
    pub sample_rate: u32,
}

impl Pcm {
    /// Length in seconds.
    pub fn duration_s(&self) -> f64 {
        if self.sample_rate == 0 {
            return 0.0;
        }
        self.samples.len() as f64 / f64::from(self.sample_rate)
    }
}

/// Why audio could not be used. Unsupported maps to HTTP 415
/// `unsupported_media_type`, Invalid to 422 `invalid_audio` (the server does the
/// mapping). The message is shown to API clients, so it names the problem without
/// echoing client bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioError {
    /// Not a format we can decode (unknown bytes, unsupported codec).
    Unsupported(&'static str),
    /// A container we recognise, holding audio we cannot use (empty, zero
    /// channels, zero sample rate, too long, …).
    Invalid(&'static str),
}

impl AudioError {
    /// The message shown to clients.
    pub fn message(&self) -> &'static str {
        match self {
            AudioError::Unsupported(message) | AudioError::Invalid(message) => message,
        }
    }
}

impl std::fmt::Display for AudioError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for AudioError {}
