//! The mel filter bank whisper.cpp reads from the model file: what
//! `librosa.filters.mel(sr=16000, n_fft=400, n_mels, htk=False,
//! norm="slaney")` returns (Slaney's mel scale, triangles normalised to
//! equal area), row-major `n_mels × 201`. Computed in f64 and rounded to
//! f32 at the same two points librosa rounds, so the result is bit-for-bit
//! librosa's (checked against librosa 0.11.0; see the tests).

/// Whisper's sample rate.
pub const SAMPLE_RATE_HZ: f64 = 16_000.0;
/// Whisper's FFT size (25 ms at 16 kHz).
pub const N_FFT: usize = 400;
/// Frequency bins of a real FFT of `N_FFT` points.
pub const N_FFT_BINS: usize = N_FFT / 2 + 1;

/// Slaney's scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above.
const LINEAR_HZ_PER_MEL: f64 = 200.0 / 3.0;
const LOG_REGION_HZ_MIN: f64 = 1000.0;
const LOG_REGION_MEL_MIN: f64 = LOG_REGION_HZ_MIN / LINEAR_HZ_PER_MEL;

fn log_step() -> f64 {
    6.4f64.ln() / 27.0
}

fn hz_to_mel(hz: f64) -> f64 {
    if hz >= LOG_REGION_HZ_MIN {
        LOG_REGION_MEL_MIN + (hz / LOG_REGION_HZ_MIN).ln() / log_step()
    } else {
        hz / LINEAR_HZ_PER_MEL
    }
}

fn mel_to_hz(mel: f64) -> f64 {
    if mel >= LOG_REGION_MEL_MIN {
        LOG_REGION_HZ_MIN * (log_step() * (mel - LOG_REGION_MEL_MIN)).exp()
    } else {
        LINEAR_HZ_PER_MEL * mel
    }
}

/// `n` frequencies evenly spaced in mel from 0 Hz to Nyquist, as
/// `librosa.mel_frequencies` (numpy's `linspace`: `start + i·step`, the last
/// one exactly `stop`).
fn mel_frequencies_hz(n: usize) -> Vec<f64> {
    let mel_max = hz_to_mel(SAMPLE_RATE_HZ / 2.0);
    let step = mel_max / (n - 1) as f64;
    (0..n)
        .map(|index| {
            let mel = if index == n - 1 {
                mel_max
            } else {
                index as f64 * step
            };
            mel_to_hz(mel)
        })
        .collect()
}

/// The filter bank, row-major: `n_mels` rows of [`N_FFT_BINS`] weights.
///
/// # Panics
/// If `n_mels` is 0 (a programmer error: the header check rejects it).
pub fn filters(n_mels: usize) -> Vec<f32> {
    assert!(n_mels > 0);
    // numpy's rfftfreq: k · (1 / (n · d)) with d = 1 / sr.
    let bin_hz = 1.0 / (N_FFT as f64 * (1.0 / SAMPLE_RATE_HZ));
    let bins_hz: Vec<f64> = (0..N_FFT_BINS).map(|bin| bin as f64 * bin_hz).collect();
    let edges_hz = mel_frequencies_hz(n_mels + 2);
    let mut weights = Vec::with_capacity(n_mels * N_FFT_BINS);
    for mel in 0..n_mels {
        let (low, centre, high) = (edges_hz[mel], edges_hz[mel + 1], edges_hz[mel + 2]);
        let area_norm = 2.0 / (high - low);
        for &bin in &bins_hz {
            let rising = -(low - bin) / (centre - low);
            let falling = (high - bin) / (high - centre);
            // librosa stores the triangle in its f32 array, then scales it
            // in f64 and stores again: two roundings, kept for exactness.
            // numpy's maximum keeps the -0.0 of the first bin of the first
            // filter; so does this.
            let triangle = rising.min(falling);
            let triangle = if triangle < 0.0 { 0.0 } else { triangle } as f32;
            weights.push((f64::from(triangle) * area_norm) as f32);
        }
    }
    weights
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_and_mass() {
        let weights = filters(80);
        assert_eq!(weights.len(), 80 * 201);
        assert!(weights
            .iter()
            .all(|weight| weight.is_finite() && *weight >= 0.0));
        // librosa 0.11.0: 391 non-zero weights summing to 1.999024092387117.
        assert_eq!(weights.iter().filter(|weight| **weight != 0.0).count(), 391);
        let sum: f64 = weights.iter().map(|weight| f64::from(*weight)).sum();
        assert!((sum - 1.999_024_092_387_117).abs() < 1e-9, "{sum}");
        // Every filter has some weight.
        for row in weights.chunks(201) {
            assert!(row.iter().any(|weight| *weight > 0.0));
        }
    }

    #[test]
    fn matches_librosa() {
        // (mel, bin, f32 bits) from librosa 0.11.0's
        // filters.mel(sr=16000, n_fft=400, n_mels=80, htk=False, norm="slaney").
        const REFERENCE: &[(usize, usize, u32)] = &[
            (0, 0, 0x8000_0000), // -0.0
            (0, 1, 1_019_980_964),
            (0, 2, 0),
            (1, 2, 1_018_912_149),
            (1, 3, 0),
            (10, 20, 0),
            (79, 190, 991_053_739),
            (79, 200, 0),
            (17, 17, 1_017_296_751),
            (31, 31, 1_010_862_247),
            (34, 35, 1_005_790_478),
            (51, 66, 1_007_509_493),
            (66, 115, 995_482_404),
            (68, 128, 995_324_403),
            (72, 145, 993_282_696),
            (79, 195, 991_104_163),
            (79, 198, 980_109_162),
        ];
        let weights = filters(80);
        for &(mel, bin, bits) in REFERENCE {
            // Bit for bit; the tolerance is for a platform whose libm
            // rounds ln/exp differently in the last place.
            let got = weights[mel * 201 + bin];
            let want = f32::from_bits(bits);
            assert!(
                (got - want).abs() <= want.abs() * 1e-6,
                "[{mel}][{bin}]: {got} vs {want}"
            );
            assert_eq!(
                got.is_sign_negative(),
                want.is_sign_negative(),
                "[{mel}][{bin}]"
            );
        }
    }
}
