//! TEMPORARY STUB: replaced by the real audio module.
#![allow(dead_code, unused_variables)]
pub const VAD_RATES_HZ: [u32; 4] = [8000, 16000, 32000, 48000];
#[derive(Debug, Clone, PartialEq)]
pub struct Pcm {
    pub samples: Vec<i16>,
    pub sample_rate: u32,
}
impl Pcm {
    pub fn duration_s(&self) -> f64 {
        self.samples.len() as f64 / self.sample_rate as f64
    }
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioError {
    Unsupported(&'static str),
    Invalid(&'static str),
}
impl std::fmt::Display for AudioError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioFormat {
    Wav,
    RawPcm16 { sample_rate: u32 },
    Sniff,
}
pub fn decode(format: AudioFormat, bytes: &[u8]) -> Result<Pcm, AudioError> {
    match format {
        AudioFormat::RawPcm16 { sample_rate } => Ok(Pcm {
            samples: bytes
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect(),
            sample_rate,
        }),
        _ => {
            if bytes.len() < 44 {
                return Err(AudioError::Unsupported("x"));
            }
            Ok(Pcm {
                samples: bytes[44..]
                    .chunks_exact(2)
                    .map(|c| i16::from_le_bytes([c[0], c[1]]))
                    .collect(),
                sample_rate: 16000,
            })
        }
    }
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmenterConfig {
    pub sample_rate: u32,
    pub frame_ms: u32,
    pub start_ms: u32,
    pub hangover_ms: u32,
    pub max_segment_ms: u32,
    pub pre_roll_ms: u32,
}
impl SegmenterConfig {
    pub fn new(sample_rate: u32, hangover_ms: u32, max_segment_ms: u32) -> Self {
        Self {
            sample_rate,
            frame_ms: 30,
            start_ms: 90,
            hangover_ms,
            max_segment_ms,
            pre_roll_ms: 90,
        }
    }
}
pub fn segment_all(pcm: &Pcm, config: SegmenterConfig, vad_mode: u8) -> Vec<(u64, u64)> {
    if pcm.samples.iter().any(|s| *s != 0) {
        vec![(0, pcm.samples.len() as u64)]
    } else {
        vec![]
    }
}
