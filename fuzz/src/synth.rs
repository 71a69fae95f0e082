//! Synthetic audio for the `ws_session` and `vad_segmenter` targets (and the
//! replays in `tests/regression.rs`): a few control bytes stand for seconds
//! of speech-like buzz, silence or noise.

/// Synthetic audio, `count` blocks of 10 ms at `rate`, so a short input can
/// carry seconds of "speech" (a buzz with formant-like partials and a syllable
/// rhythm, which the VAD takes for voice), silence or noise. `kind % 4`:
/// 0 silence, 1 and 2 buzz, 3 white noise.
pub fn synth_audio(kind: u8, count: usize, rate: u32, seed: u32) -> Vec<i16> {
    const TABLE: usize = 1024;
    let samples = count * rate as usize / 100;
    match kind % 4 {
        0 => vec![0; samples],
        1 | 2 => {
            // One period of the buzz, then a phase accumulator over it.
            let f0 = 110.0 + f64::from(seed % 64);
            let weights: Vec<f64> = (1..=12)
                .map(|harmonic| {
                    let h = f64::from(harmonic) * f0;
                    (-((h - 700.0) / 400.0).powi(2)).exp()
                        + 0.6 * (-((h - 1200.0) / 500.0).powi(2)).exp()
                        + 0.1
                })
                .collect();
            let table: Vec<f64> = (0..TABLE)
                .map(|index| {
                    let phase = 2.0 * std::f64::consts::PI * index as f64 / TABLE as f64;
                    weights
                        .iter()
                        .enumerate()
                        .map(|(k, w)| w * ((k + 1) as f64 * phase).sin())
                        .sum()
                })
                .collect();
            let step = f0 / f64::from(rate);
            let syllable = 4.0 / f64::from(rate);
            (0..samples)
                .map(|n| {
                    let phase = (n as f64 * step).fract();
                    let value = table[(phase * TABLE as f64) as usize % TABLE];
                    // A 4 Hz syllable envelope from a cheap triangle.
                    let s = (n as f64 * syllable).fract();
                    let envelope = 0.2 + 0.8 * (1.0 - (2.0 * s - 1.0).abs());
                    (value * envelope * 3000.0).clamp(-32768.0, 32767.0) as i16
                })
                .collect()
        }
        _ => {
            let mut state = seed | 1;
            (0..samples)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    (state >> 16) as i16 / 4
                })
                .collect()
        }
    }
}
