//! Voice activity detection over a stream of samples.
//!
//! [`VadSegmenter`] owns a WebRTC VAD instance, an energy gate, the partial trailing
//! frame of the last push and a [`Segmenter`]. It receives sample slices of any
//! length (a WebSocket binary frame, or a whole decoded body through
//! [`segment_all`]), classifies each complete frame, and hands on the
//! [`SegmentEvent`]s of the segmenter. It allocates only in [`VadSegmenter::new`].
//!
//! The energy gate exists because WebRTC VAD flags loud stationary noise (and, in
//! the less aggressive modes, quiet hiss) as speech: a frame whose RMS level is below
//! [`ENERGY_GATE_DBFS`] is silence whatever the VAD says, and the VAD is not even
//! asked, which also saves its cost on silent stretches.

use webrtc_vad::{SampleRate, Vad, VadMode};

use super::segmenter::{SegmentEvent, Segmenter, SegmenterConfig};
use super::{Pcm, VAD_RATES_HZ};

/// Frames quieter than this RMS level (dB relative to full scale) are silence.
/// Speech at a normal recording level sits around -30 to -15 dBFS; room noise and
/// dithered silence well below -55.
pub const ENERGY_GATE_DBFS: f64 = -55.0;

/// WebRTC VAD plus an energy gate plus the pure [`Segmenter`], fed with
/// arbitrary-length sample slices.
///
/// Not `Send`: `webrtc_vad::Vad` holds a raw pointer to its C state. Create one per
/// session, on the core that owns the session.
pub struct VadSegmenter {
    vad: Vad,
    segmenter: Segmenter,
    config: SegmenterConfig,
    /// Samples of the frame being assembled across pushes; never reaches a full
    /// frame between calls. Capacity is one frame, allocated once.
    partial: Vec<i16>,
    frame_samples: usize,
    /// Frames with a mean square (in i16 units squared) below this are silence.
    gate_mean_square: f64,
    samples_seen: u64,
}

impl VadSegmenter {
    /// A detector at stream position zero.
    ///
    /// # Panics
    /// If `config.sample_rate` is not one of [`VAD_RATES_HZ`], `config.frame_ms` is not
    /// 10, 20 or 30, or `vad_mode` is above 3. These come from validated server
    /// settings and client parameters, so an invalid value here is a bug; callers with
    /// untrusted values check [`SegmenterConfig::is_valid`] first.
    pub fn new(config: SegmenterConfig, vad_mode: u8) -> Self {
        assert!(config.is_valid(), "invalid VAD config {config:?}");
        let rate = match config.sample_rate {
            8_000 => SampleRate::Rate8kHz,
            16_000 => SampleRate::Rate16kHz,
            32_000 => SampleRate::Rate32kHz,
            _ => SampleRate::Rate48kHz,
        };
        debug_assert!(VAD_RATES_HZ.contains(&config.sample_rate));
        let mode = match vad_mode {
            0 => VadMode::Quality,
            1 => VadMode::LowBitrate,
            2 => VadMode::Aggressive,
            3 => VadMode::VeryAggressive,
            _ => panic!("vad_mode {vad_mode} is not 0..=3"),
        };
        let frame_samples = config.frame_samples();
        let gate_rms = 32768.0 * 10f64.powf(ENERGY_GATE_DBFS / 20.0);
        Self {
            vad: Vad::new_with_rate_and_mode(rate, mode),
            segmenter: Segmenter::new(config),
            config,
            partial: Vec::with_capacity(frame_samples),
            frame_samples,
            gate_mean_square: gate_rms * gate_rms,
            samples_seen: 0,
        }
    }

    /// Classifies every frame completed by `samples` and appends the resulting events
    /// to `out`. A trailing partial frame is kept for the next push.
    pub fn push(&mut self, samples: &[i16], out: &mut Vec<SegmentEvent>) {
        self.samples_seen += samples.len() as u64;
        let mut rest = samples;
        if !self.partial.is_empty() {
            let needed = self.frame_samples - self.partial.len();
            let taken = needed.min(rest.len());
            self.partial.extend_from_slice(&rest[..taken]);
            rest = &rest[taken..];
            if self.partial.len() < self.frame_samples {
                return;
            }
            let is_speech = classify(&mut self.vad, &self.partial, self.gate_mean_square);
            self.segmenter.push_frame(is_speech, out);
            self.partial.clear();
        }
        let mut frames = rest.chunks_exact(self.frame_samples);
        for frame in &mut frames {
            let is_speech = classify(&mut self.vad, frame, self.gate_mean_square);
            self.segmenter.push_frame(is_speech, out);
        }
        self.partial.extend_from_slice(frames.remainder());
    }

    /// Closes the open segment now (the client's "finalize"); see
    /// [`Segmenter::cut`]. The partial frame stays for the next push.
    pub fn cut(&mut self, out: &mut Vec<SegmentEvent>) {
        self.segmenter.cut(out);
    }

    /// End of stream: closes the open segment. A partial last frame (shorter than one
    /// frame, at most 30 ms) is dropped unclassified, so every segment ends within
    /// the complete frames, inside the audio.
    pub fn finish(&mut self, out: &mut Vec<SegmentEvent>) {
        self.partial.clear();
        self.segmenter.finish(out);
    }

    /// Samples pushed so far, including the partial frame.
    pub fn samples_seen(&self) -> u64 {
        self.samples_seen
    }

    /// The configuration this detector was built with.
    pub fn config(&self) -> &SegmenterConfig {
        &self.config
    }

    /// The segmenter, for its state (`in_segment`, `open_segment_start`,
    /// `earliest_start_sample`, `frames_seen`).
    pub fn segmenter(&self) -> &Segmenter {
        &self.segmenter
    }
}

/// One frame's decision: the energy gate first, then the VAD.
fn classify(vad: &mut Vad, frame: &[i16], gate_mean_square: f64) -> bool {
    debug_assert!(!frame.is_empty(), "the VAD panics on an empty frame");
    let sum_squares: i64 = frame.iter().map(|&s| i64::from(s) * i64::from(s)).sum();
    let mean_square = sum_squares as f64 / frame.len() as f64;
    if mean_square < gate_mean_square {
        return false;
    }
    // The VAD only refuses frames of a length other than 10/20/30 ms, which
    // `frame_samples` rules out; treat a refusal as silence rather than panic.
    vad.is_voice_segment(frame).unwrap_or(false)
}

/// Batch helper: run a fresh VadSegmenter over the whole buffer and return the
/// completed segments as (start_sample, end_sample) pairs. The config's
/// `sample_rate` is replaced by the buffer's.
///
/// # Panics
/// As [`VadSegmenter::new`] (a `Pcm` from [`crate::audio::decode`] always has a
/// VAD rate).
pub fn segment_all(pcm: &Pcm, config: SegmenterConfig, vad_mode: u8) -> Vec<(u64, u64)> {
    let config = SegmenterConfig {
        sample_rate: pcm.sample_rate,
        ..config
    };
    let mut detector = VadSegmenter::new(config, vad_mode);
    let mut events = Vec::new();
    detector.push(&pcm.samples, &mut events);
    detector.finish(&mut events);
    events
        .iter()
        .filter_map(SegmentEvent::finished_range)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::{decode, AudioFormat};
    use proptest::prelude::*;

    fn fixture(name: &str) -> Pcm {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|error| panic!("{path}: {error} (run scripts/make-fixtures.sh)"));
        decode(AudioFormat::Wav, &bytes).expect("fixture decodes")
    }

    fn server_defaults(sample_rate: u32) -> SegmenterConfig {
        SegmenterConfig::new(sample_rate, 500, 15_000)
    }

    fn seconds(samples: u64, pcm: &Pcm) -> f64 {
        samples as f64 / f64::from(pcm.sample_rate)
    }

    fn describe(pcm: &Pcm, segments: &[(u64, u64)]) -> String {
        segments
            .iter()
            .map(|&(start, end)| format!("{:.2}-{:.2}s", seconds(start, pcm), seconds(end, pcm)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    #[test]
    fn hello_is_one_segment_around_the_speech() {
        for name in [
            "hello.wav",
            "hello_8k.wav",
            "hello_stereo_44k.wav",
            "hello_f32.wav",
        ] {
            let pcm = fixture(name);
            for mode in 0..=3 {
                let segments = segment_all(&pcm, server_defaults(16_000), mode);
                eprintln!("{name} mode {mode}: {}", describe(&pcm, &segments));
                assert_eq!(segments.len(), 1, "{name} mode {mode}: {segments:?}");
                // The speech sits between 0.30 s and 1.85 s of the 2.15 s file.
                let (start, end) = segments[0];
                assert!((0.15..0.35).contains(&seconds(start, &pcm)), "{name} start");
                assert!((1.75..2.0).contains(&seconds(end, &pcm)), "{name} end");
            }
        }
    }

    #[test]
    fn two_utterances_are_two_segments_with_the_gap_between() {
        let pcm = fixture("two_utterances.wav");
        for mode in 0..=3 {
            let segments = segment_all(&pcm, server_defaults(16_000), mode);
            eprintln!("two_utterances mode {mode}: {}", describe(&pcm, &segments));
            assert_eq!(segments.len(), 2, "mode {mode}: {segments:?}");
            let gap_s = seconds(segments[1].0 - segments[0].1, &pcm);
            // 1.5 s of digital silence, less pre-roll and tail.
            assert!((1.2..1.6).contains(&gap_s), "mode {mode}: gap {gap_s}");
        }
        // A hangover longer than the gap merges them.
        let merged = segment_all(&pcm, server_defaults(16_000).with_hangover(2_000), 2);
        assert_eq!(merged.len(), 1);
    }

    #[test]
    fn silence_and_low_noise_give_nothing() {
        for name in ["silence.wav", "noise_low.wav"] {
            let pcm = fixture(name);
            for mode in 0..=3 {
                let mut detector = VadSegmenter::new(server_defaults(16_000), mode);
                let mut events = Vec::new();
                detector.push(&pcm.samples, &mut events);
                detector.finish(&mut events);
                assert!(events.is_empty(), "{name} mode {mode}: {events:?}");
                assert_eq!(detector.samples_seen(), pcm.samples.len() as u64);
            }
        }
    }

    #[test]
    fn every_rate_and_frame_length_works() {
        let hello = fixture("hello.wav");
        for rate in VAD_RATES_HZ {
            let samples = crate::audio::resample::resample_i16(&hello.samples, 16_000, rate);
            let pcm = Pcm {
                samples,
                sample_rate: rate,
            };
            for frame_ms in [10, 20, 30] {
                let config = SegmenterConfig {
                    frame_ms,
                    ..server_defaults(rate)
                };
                let segments = segment_all(&pcm, config, 2);
                assert_eq!(segments.len(), 1, "{rate} Hz {frame_ms} ms: {segments:?}");
            }
        }
    }

    #[test]
    fn cut_ends_the_segment_and_speech_goes_on_in_the_next() {
        let pcm = fixture("hello.wav");
        let mut detector = VadSegmenter::new(server_defaults(16_000), 2);
        let mut events = Vec::new();
        let middle = pcm.samples.len() / 2;
        detector.push(&pcm.samples[..middle + 7], &mut events);
        assert!(detector.segmenter().in_segment());
        detector.cut(&mut events);
        assert!(!detector.segmenter().in_segment());
        detector.push(&pcm.samples[middle + 7..], &mut events);
        detector.finish(&mut events);
        let ids: Vec<u64> = events
            .iter()
            .map(|event| match *event {
                SegmentEvent::SpeechStart { segment_id, .. }
                | SegmentEvent::SegmentEnd { segment_id, .. } => segment_id,
            })
            .collect();
        assert_eq!(ids, vec![0, 0, 1, 1]);
    }

    #[test]
    #[should_panic(expected = "invalid VAD config")]
    fn a_rate_the_vad_refuses_is_a_bug() {
        let _ = VadSegmenter::new(server_defaults(44_100), 2);
    }

    /// Runs the fixture through one detector, pushed in pieces cut at `splits`.
    fn events_split(pcm: &Pcm, splits: &[usize]) -> Vec<SegmentEvent> {
        let mut detector = VadSegmenter::new(server_defaults(pcm.sample_rate), 2);
        let mut events = Vec::new();
        let mut start = 0;
        for &split in splits {
            let split = split.clamp(start, pcm.samples.len());
            detector.push(&pcm.samples[start..split], &mut events);
            start = split;
        }
        detector.push(&pcm.samples[start..], &mut events);
        detector.finish(&mut events);
        events
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn events_do_not_depend_on_how_samples_are_split(
            mut splits in prop::collection::vec(0usize..100_000, 0..40),
        ) {
            let pcm = fixture("two_utterances.wav");
            splits.sort_unstable();
            let whole = events_split(&pcm, &[]);
            prop_assert_eq!(whole.len(), 4);
            prop_assert_eq!(events_split(&pcm, &splits), whole);
        }

        #[test]
        fn tiny_pushes_match_one_push(chunk in 1usize..700) {
            let pcm = fixture("hello.wav");
            let splits: Vec<usize> = (chunk..pcm.samples.len()).step_by(chunk).collect();
            prop_assert_eq!(events_split(&pcm, &splits), events_split(&pcm, &[]));
        }
    }
}
