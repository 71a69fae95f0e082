//! Whisper's input features: the log-mel spectrogram of 16 kHz audio, as
//! OpenAI's `whisper.audio.log_mel_spectrogram` computes it (and
//! faster-whisper's feature extractor, which CTranslate2's Whisper expects).
//!
//! Frames every 10 ms (hop 160) of a 25 ms periodic Hann window (400
//! samples), centred (the audio reflected 200 samples at both ends), the
//! last frame dropped; the power spectrum through the Slaney mel bank
//! ([`ct2ggml::mel::filters`], librosa's bit for bit); `log10` floored at
//! 1e-10, then at 8 below the loudest value, then `(x + 4) / 4`. Whisper's
//! own encoder window is 3000 frames (30 s); CTranslate2 also takes fewer.
//!
//! Pure and engine-free, so the default test suite checks it.

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

/// Samples per second Whisper takes.
pub const SAMPLE_RATE: usize = 16_000;
/// Samples between frames (10 ms).
pub const HOP: usize = 160;
/// Frames in Whisper's 30 s window.
pub const WINDOW_FRAMES: usize = 3000;
/// Samples in Whisper's 30 s window.
pub const WINDOW_SAMPLES: usize = WINDOW_FRAMES * HOP;

const N_FFT: usize = ct2ggml::mel::N_FFT;
const N_BINS: usize = ct2ggml::mel::N_FFT_BINS;

/// One mel band: its non-zero weights and the first FFT bin they apply to
/// (the triangles cover a few bins each; skipping the zeros makes the
/// projection ~20 times cheaper).
struct Band {
    first_bin: usize,
    weights: Vec<f32>,
}

/// A reusable log-mel calculator for `n_mels` bands.
pub struct LogMel {
    n_mels: usize,
    bands: Vec<Band>,
    window: Vec<f32>,
    fft: Arc<dyn RealToComplex<f32>>,
}

impl LogMel {
    /// # Panics
    /// If `n_mels` is 0 (Whisper models have 80 or 128).
    pub fn new(n_mels: usize) -> LogMel {
        let filters = ct2ggml::mel::filters(n_mels);
        let bands = filters
            .chunks_exact(N_BINS)
            .map(|row| {
                let first = row.iter().position(|&w| w != 0.0).unwrap_or(0);
                let last = row.iter().rposition(|&w| w != 0.0).unwrap_or(0);
                Band {
                    first_bin: first,
                    weights: row[first..=last.max(first)].to_vec(),
                }
            })
            .collect();
        // numpy's hanning(N + 1)[:-1]: the periodic Hann window.
        let window = (0..N_FFT)
            .map(|i| {
                let phase = 2.0 * std::f64::consts::PI * i as f64 / N_FFT as f64;
                (0.5 - 0.5 * phase.cos()) as f32
            })
            .collect();
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(N_FFT);
        LogMel {
            n_mels,
            bands,
            window,
            fft,
        }
    }

    /// Mel bands per frame.
    pub fn n_mels(&self) -> usize {
        self.n_mels
    }

    /// The features of `audio` (16 kHz, `-1.0..1.0`) as `frames` frames,
    /// row-major `n_mels × frames` (one row per band), appended to `out`.
    /// Audio beyond `frames × HOP` samples is ignored; missing audio is
    /// silence, as Whisper pads it.
    pub fn compute_into(&self, audio: &[f32], frames: usize, out: &mut Vec<f32>) {
        let start = out.len();
        out.resize(start + self.n_mels * frames, 0.0);
        if frames == 0 {
            return;
        }
        let total = frames * HOP;
        let audio = &audio[..audio.len().min(total)];
        let pad = N_FFT / 2;
        // The centred signal: `pad` samples reflected at each end of the
        // audio padded with zeros to `total`.
        let at = |index: usize| -> f32 {
            // index is in the padded signal, 0..total + 2·pad.
            let position = index as isize - pad as isize;
            let reflected = if position < 0 {
                -position
            } else if position >= total as isize {
                2 * (total as isize - 1) - position
            } else {
                position
            };
            usize::try_from(reflected)
                .ok()
                .and_then(|i| audio.get(i))
                .copied()
                .unwrap_or(0.0)
        };
        let mut input = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = vec![0.0f32; N_BINS];
        let features = &mut out[start..];
        let mut max = f32::NEG_INFINITY;
        for frame in 0..frames {
            let first = frame * HOP;
            let interior = first >= pad && first + N_FFT <= audio.len() + pad;
            for (i, slot) in input.iter_mut().enumerate() {
                let sample = if interior {
                    audio[first + i - pad]
                } else {
                    at(first + i)
                };
                *slot = sample * self.window[i];
            }
            // The lengths come from this plan, so the transform cannot fail.
            if self
                .fft
                .process_with_scratch(&mut input, &mut spectrum, &mut scratch)
                .is_err()
            {
                power.fill(0.0);
            } else {
                for (p, c) in power.iter_mut().zip(&spectrum) {
                    *p = c.norm_sqr();
                }
            }
            for (band, row) in self.bands.iter().enumerate() {
                let bins = &power[band_range(row)];
                let energy: f32 = row.weights.iter().zip(bins).map(|(w, p)| w * p).sum();
                let value = energy.max(1e-10).log10();
                max = max.max(value);
                features[band * frames + frame] = value;
            }
        }
        let floor = max - 8.0;
        for value in features.iter_mut() {
            *value = (value.max(floor) + 4.0) / 4.0;
        }
    }

    /// [`LogMel::compute_into`] into a new vector.
    pub fn compute(&self, audio: &[f32], frames: usize) -> Vec<f32> {
        let mut out = Vec::new();
        self.compute_into(audio, frames, &mut out);
        out
    }
}

fn band_range(band: &Band) -> std::ops::Range<usize> {
    band.first_bin..band.first_bin + band.weights.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The straightforward definition: every frame's DFT by summation and
    /// the full filter bank, for comparison.
    fn reference(audio: &[f32], frames: usize, n_mels: usize) -> Vec<f32> {
        let total = frames * HOP;
        let mut padded: Vec<f32> = audio.iter().copied().take(total).collect();
        padded.resize(total, 0.0);
        let pad = N_FFT / 2;
        let mut signal = Vec::new();
        signal.extend((1..=pad).rev().map(|i| padded[i]));
        signal.extend_from_slice(&padded);
        signal.extend((0..pad).map(|i| padded[total - 2 - i]));
        let filters = ct2ggml::mel::filters(n_mels);
        let mut out = vec![0.0f32; n_mels * frames];
        for frame in 0..frames {
            let mut power = [0.0f64; N_BINS];
            for (k, p) in power.iter_mut().enumerate() {
                let (mut re, mut im) = (0.0f64, 0.0f64);
                for n in 0..N_FFT {
                    let w =
                        0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / N_FFT as f64).cos();
                    let x = f64::from(signal[frame * HOP + n]) * w;
                    let angle = -2.0 * std::f64::consts::PI * (k * n) as f64 / N_FFT as f64;
                    re += x * angle.cos();
                    im += x * angle.sin();
                }
                *p = re * re + im * im;
            }
            for m in 0..n_mels {
                let energy: f64 = (0..N_BINS)
                    .map(|k| f64::from(filters[m * N_BINS + k]) * power[k])
                    .sum();
                out[m * frames + frame] = energy.max(1e-10).log10() as f32;
            }
        }
        let max = out.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        out.iter().map(|v| (v.max(max - 8.0) + 4.0) / 4.0).collect()
    }

    fn chirp(samples: usize) -> Vec<f32> {
        (0..samples)
            .map(|i| {
                let t = i as f32 / SAMPLE_RATE as f32;
                0.3 * (2.0 * std::f32::consts::PI * (300.0 + 900.0 * t) * t).sin()
                    + 0.05 * ((i * 7919 % 101) as f32 / 101.0 - 0.5)
            })
            .collect()
    }

    #[test]
    fn matches_the_definition_on_speech_like_audio_and_its_padding() {
        // 0.2 s of audio in 30 frames (0.3 s): the last third is padding.
        let audio = chirp(3200);
        let fast = LogMel::new(80).compute(&audio, 30);
        let slow = reference(&audio, 30, 80);
        assert_eq!(fast.len(), 80 * 30);
        let worst = fast
            .iter()
            .zip(&slow)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-3, "largest difference {worst}");
    }

    #[test]
    fn a_tone_is_loudest_in_its_band_and_silence_is_the_floor() {
        // 1 kHz: mel ≈ 15 on Slaney's scale, band 24 of 80 (0..45.2 mel).
        let audio: Vec<f32> = (0..16_000)
            .map(|i| 0.5 * (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 16_000.0).sin())
            .collect();
        let frames = 200;
        let features = LogMel::new(80).compute(&audio, frames);
        let column = |frame: usize| -> Vec<f32> {
            (0..80)
                .map(|band| features[band * frames + frame])
                .collect()
        };
        let middle = column(50);
        let loudest = (0..80)
            .max_by(|&a, &b| middle[a].total_cmp(&middle[b]))
            .expect("bands");
        assert!((22..=26).contains(&loudest), "band {loudest}");
        // Frames after the second of audio are silence: the floor, 8 below
        // the maximum, i.e. (max − 8 + 4) / 4 = max' − 2.
        let max = features.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let tail = column(150);
        assert!(
            tail.iter().all(|&v| (v - (max - 2.0)).abs() < 1e-5),
            "{tail:?}"
        );
    }

    #[test]
    fn frames_are_appended_and_extra_audio_is_ignored() {
        let mel = LogMel::new(80);
        let audio = chirp(8000);
        let mut out = vec![7.0];
        mel.compute_into(&audio, 10, &mut out);
        assert_eq!(out.len(), 1 + 800);
        assert_eq!(out[0], 7.0);
        // Only the first frames × HOP samples count (then silence, as
        // Whisper pads): whatever follows them changes nothing.
        assert_eq!(out[1..], mel.compute(&audio[..1600 + 200], 10)[..]);
        assert!(mel.compute(&[], 0).is_empty());
        assert_eq!(mel.compute(&[], 3).len(), 240);
    }
}
