//! Sample-rate conversion for decoded audio whose rate the VAD does not accept.
//!
//! It owns nothing between calls: [`resample_i16`] receives a whole mono buffer from
//! [`crate::audio::decode`] and hands back a new buffer at the target rate, aligned
//! with the input (the resampler's delay is removed) and `round(len × to / from)`
//! samples long. Rates with a small common divisor (44.1 kHz, 22.05 kHz, 96 kHz, …)
//! go through rubato's FFT resampler, which is fast and anti-aliased; odd rates whose
//! FFT would be huge go through its windowed-sinc resampler.

use rubato::{
    FftFixedIn, Resampler, SincFixedIn, SincInterpolationParameters, SincInterpolationType,
    WindowFunction,
};

/// Input frames handed to the resampler per call.
const CHUNK_FRAMES: usize = 1024;
/// Above this many input samples per FFT period (`from_hz / gcd(from_hz, to_hz)`), the
/// FFT resampler's transform would be too large and the sinc resampler is used.
const FFT_PERIOD_SAMPLES_MAX: u32 = 4096;
/// Windowed-sinc filter length; 256 keeps the pass band flat to ~0.95 × Nyquist.
const SINC_TAPS: usize = 256;
/// Flush calls allowed after the input ends; the delay of either resampler is far
/// shorter than this many chunks, so reaching it means a bug, not long audio.
const FLUSH_CALLS_MAX: usize = 64;

/// Resamples mono PCM16 from `from_hz` to `to_hz`. The output has
/// `round(len × to_hz / from_hz)` samples. Equal rates or empty input return a copy;
/// a zero rate (a caller bug) returns an empty buffer.
pub fn resample_i16(samples: &[i16], from_hz: u32, to_hz: u32) -> Vec<i16> {
    if from_hz == to_hz || samples.is_empty() {
        return samples.to_vec();
    }
    if from_hz == 0 || to_hz == 0 {
        debug_assert!(false, "resample_i16 with a zero rate");
        return Vec::new();
    }
    let input: Vec<f32> = samples.iter().map(|&s| f32::from(s) / 32768.0).collect();
    resample_f32(&input, from_hz, to_hz)
        .iter()
        .map(|&s| (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

/// Resamples mono f32 samples in [-1, 1]; same contract as [`resample_i16`].
pub fn resample_f32(samples: &[f32], from_hz: u32, to_hz: u32) -> Vec<f32> {
    if from_hz == to_hz || samples.is_empty() {
        return samples.to_vec();
    }
    if from_hz == 0 || to_hz == 0 {
        debug_assert!(false, "resample_f32 with a zero rate");
        return Vec::new();
    }
    let expected_len = resampled_len(samples.len(), from_hz, to_hz);
    let fft_period_samples = from_hz / gcd(from_hz, to_hz);
    let output = if fft_period_samples <= FFT_PERIOD_SAMPLES_MAX {
        // rubato centres its FFT filter on sample fft_size_in / 2, rounded down: with an
        // odd FFT length (1323 for 44.1 -> 16 kHz) the output lags by half an input
        // sample. A chunk of an even number of FFT periods keeps the length even.
        let period_pair = 2 * fft_period_samples as usize;
        let chunk_frames = period_pair * (CHUNK_FRAMES / period_pair).max(1);
        FftFixedIn::<f32>::new(from_hz as usize, to_hz as usize, chunk_frames, 1, 1)
            .map_err(|_| ())
            .and_then(|resampler| {
                let delay = resampler.output_delay();
                resample_f32_run(resampler, samples, expected_len, delay, 0)
            })
    } else {
        let parameters = SincInterpolationParameters {
            sinc_len: SINC_TAPS,
            f_cutoff: 0.95,
            oversampling_factor: 256,
            interpolation: SincInterpolationType::Linear,
            window: WindowFunction::BlackmanHarris2,
        };
        let ratio = f64::from(to_hz) / f64::from(from_hz);
        // rubato's sinc resampler has no delay despite its `output_delay()`: it starts
        // its filter half a window early, and its first output sample is already the
        // one for time 1 / to_hz. One leading sample of silence lines it up.
        SincFixedIn::<f32>::new(ratio, 1.0, parameters, CHUNK_FRAMES, 1)
            .map_err(|_| ())
            .and_then(|resampler| resample_f32_run(resampler, samples, expected_len, 0, 1))
    };
    // Construction and processing only fail on bad rates or buffer sizes, which are
    // checked above and sized by the resampler itself: a failure is a bug, and
    // silence of the right length keeps the server going.
    output.unwrap_or_else(|()| {
        debug_assert!(false, "rubato failed for {from_hz} -> {to_hz} Hz");
        vec![0.0; expected_len]
    })
}

/// `round(len × to_hz / from_hz)` without overflow.
pub fn resampled_len(len: usize, from_hz: u32, to_hz: u32) -> usize {
    let scaled = len as u128 * u128::from(to_hz) + u128::from(from_hz / 2);
    (scaled / u128::from(from_hz.max(1))) as usize
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Feeds `input` through `resampler` in fixed chunks, flushes the tail with silence,
/// and lines output sample `n` up with input time `n / to_hz`: the first `delay`
/// output samples are dropped, and `lead` samples of silence are put first.
fn resample_f32_run<R: Resampler<f32>>(
    mut resampler: R,
    input: &[f32],
    expected_len: usize,
    delay: usize,
    lead: usize,
) -> Result<Vec<f32>, ()> {
    let mut chunk_out = resampler.output_buffer_allocate(true);
    let mut output = Vec::with_capacity(lead + delay + expected_len + chunk_out[0].len());
    output.resize(lead, 0.0);
    let mut position = 0;
    while input.len() - position >= resampler.input_frames_next() {
        let frames = resampler.input_frames_next();
        let chunk_in = [&input[position..position + frames]];
        let (used, produced) = resampler
            .process_into_buffer(&chunk_in, &mut chunk_out, None)
            .map_err(|_| ())?;
        output.extend_from_slice(&chunk_out[0][..produced]);
        position += used;
    }
    // rubato refuses an empty partial chunk; with no tail the flush below suffices.
    if position < input.len() {
        let tail = [&input[position..]];
        let (_, produced) = resampler
            .process_partial_into_buffer(Some(&tail), &mut chunk_out, None)
            .map_err(|_| ())?;
        output.extend_from_slice(&chunk_out[0][..produced]);
    }
    let mut flush_calls = 0;
    while output.len() < delay + expected_len && flush_calls < FLUSH_CALLS_MAX {
        let (_, produced) = resampler
            .process_partial_into_buffer(None::<&[&[f32]]>, &mut chunk_out, None)
            .map_err(|_| ())?;
        output.extend_from_slice(&chunk_out[0][..produced]);
        flush_calls += 1;
    }
    output.drain(..delay.min(output.len()));
    output.resize(expected_len, 0.0);
    Ok(output)
}

/// Taps of each polyphase branch of a [`StreamResampler`]: for 24 -> 16 kHz
/// a 61-tap Blackman-windowed sinc at 48 kHz (7 kHz cut-off), whose delay is
/// a whole number of output samples; each branch padded with a zero tap to
/// 32, a width vector units take whole.
const STREAM_TAPS_PER_PHASE: usize = 31;
const STREAM_BRANCH_TAPS: usize = 32;
/// Fractional bits of the fixed-point taps (Q15: with taps summing to about
/// 1.2 in magnitude, a dot product of 32 PCM16 samples stays within i32).
const STREAM_TAP_BITS: u32 = 15;
/// The largest up- or down-sampling factor a [`StreamResampler`] takes.
const STREAM_FACTOR_MAX: u32 = 8;
/// Input samples kept before the history buffer is compacted (batched, so
/// compaction costs no memmove per call).
const STREAM_HISTORY_SLACK: usize = 4096;

/// Sample-rate conversion of a stream of mono PCM16 that arrives in pieces
/// (OpenAI Realtime's 24 kHz to the 16 kHz the VAD and Whisper take), by a
/// polyphase FIR filter in fixed point: up by `L`, low-pass, down by `M`
/// for a rate ratio `L/M` with small factors. The filter state is kept
/// between calls, so pieces join without clicks, and its delay is dropped
/// from the start so stream times stay aligned. Profiling a 400-session
/// Realtime load put rubato's FFT resampler, streamed in 20 ms chunks, at a
/// quarter of the server's CPU, and a float FIR was no better; each output
/// here is one dot product of 32 i16 pairs, which the compiler turns into
/// a few vector multiply-adds. Buffers grow to their working size once.
pub struct StreamResampler {
    up: u64,
    down: u64,
    /// `up` branches, taps reversed (each output is a dot product with a
    /// contiguous run of input), Q15, scaled to unit gain at DC.
    phases: Vec<[i16; STREAM_BRANCH_TAPS]>,
    /// Input samples from absolute index `base`; it starts with
    /// `STREAM_BRANCH_TAPS - 1` zeros, so input sample `r` is at absolute
    /// index `r + STREAM_BRANCH_TAPS - 1`.
    history: Vec<i16>,
    base: u64,
    /// The next output sample's index, counting the skipped ones.
    next_out: u64,
    /// Output samples still to drop (the filter's delay).
    skip: u64,
    /// By the branch a run of four outputs starts on: where the four read.
    batches: Vec<Batch>,
}

/// Four consecutive outputs of a [`StreamResampler`] whose first uses
/// branch `b`: the pattern repeats, so it is worked out once per branch.
#[derive(Debug, Clone, Copy)]
struct Batch {
    /// Each output's newest input, counted from the first's.
    offsets: [usize; 4],
    branches: [usize; 4],
    /// The next run's newest input, from this one's, and its branch.
    advance: u64,
    next_branch: u64,
}

impl StreamResampler {
    /// A resampler from `from_hz` to `to_hz`; `None` for equal or zero rates
    /// or a ratio whose reduced factors exceed [`STREAM_FACTOR_MAX`].
    pub fn new(from_hz: u32, to_hz: u32) -> Option<StreamResampler> {
        if from_hz == to_hz || from_hz == 0 || to_hz == 0 {
            return None;
        }
        let divisor = gcd(from_hz, to_hz);
        let (up, down) = (to_hz / divisor, from_hz / divisor);
        if up > STREAM_FACTOR_MAX || down > STREAM_FACTOR_MAX {
            return None;
        }
        let length = STREAM_TAPS_PER_PHASE * up as usize - 1;
        let center = (length - 1) as f64 / 2.0;
        // Cut-off at 7/16 of the lower rate (7 kHz for 16 kHz), in cycles
        // per sample of the upsampled rate.
        let cutoff = 0.4375 * f64::from(from_hz.min(to_hz)) / f64::from(from_hz * up);
        let prototype: Vec<f64> = (0..length)
            .map(|index| {
                let t = index as f64 - center;
                let sinc = if t == 0.0 {
                    2.0 * cutoff
                } else {
                    (2.0 * std::f64::consts::PI * cutoff * t).sin() / (std::f64::consts::PI * t)
                };
                let x = 2.0 * std::f64::consts::PI * index as f64 / (length - 1) as f64;
                sinc * (0.42 - 0.5 * x.cos() + 0.08 * (2.0 * x).cos())
            })
            .collect();
        let one = f64::from(1_u32 << STREAM_TAP_BITS);
        let phases = (0..up as usize)
            .map(|phase| {
                let tap = |k: usize| prototype.get(phase + k * up as usize).copied();
                let gain: f64 = (0..STREAM_TAPS_PER_PHASE).filter_map(tap).sum();
                // Reversed: the newest input meets tap 0 of the prototype.
                let mut taps = [0_i16; STREAM_BRANCH_TAPS];
                for k in 0..STREAM_TAPS_PER_PHASE {
                    let value = tap(k).unwrap_or(0.0) / gain;
                    taps[STREAM_BRANCH_TAPS - 1 - k] = (value * one).round() as i16;
                }
                taps
            })
            .collect();
        let batches = (0..u64::from(up))
            .map(|first| {
                let (mut newest, mut phase) = (0_u64, first);
                let mut batch = Batch {
                    offsets: [0; 4],
                    branches: [0; 4],
                    advance: 0,
                    next_branch: 0,
                };
                for lane in 0..4 {
                    batch.offsets[lane] = newest as usize;
                    batch.branches[lane] = phase as usize;
                    phase += u64::from(down);
                    newest += phase / u64::from(up);
                    phase %= u64::from(up);
                }
                batch.advance = newest;
                batch.next_branch = phase;
                batch
            })
            .collect();
        let mut history = Vec::with_capacity(STREAM_HISTORY_SLACK + 2048);
        history.resize(STREAM_BRANCH_TAPS - 1, 0);
        Some(StreamResampler {
            up: u64::from(up),
            down: u64::from(down),
            phases,
            history,
            base: 0,
            next_out: 0,
            skip: (center / f64::from(down)).round() as u64,
            batches,
        })
    }

    /// Convert `input` and append what is ready to `out`.
    pub fn push(&mut self, input: &[i16], out: &mut Vec<i16>) {
        self.history.extend_from_slice(input);
        // Output `n` sits at `n * down` in the upsampled stream: input
        // `n * down / up` (the newest it needs), branch `n * down % up`.
        // Stepped by addition: a division per output cost as much as the
        // filter. Outputs are computed four at a time (one horizontal sum
        // and one saturating pack for the four).
        let position = self.next_out * self.down;
        let mut newest = position / self.up;
        let mut phase = position % self.up;
        let available = self.base + self.history.len() as u64;
        // Runs of four by the precomputed pattern while the history holds
        // them; then the rest one by one.
        while let Some(&batch) = self.batches.get(phase as usize) {
            let first = (newest - self.base) as usize;
            let window = |lane: usize| {
                let start = first + batch.offsets[lane];
                self.history
                    .get(start..start + STREAM_BRANCH_TAPS)
                    .and_then(|window| <&[i16; STREAM_BRANCH_TAPS]>::try_from(window).ok())
            };
            let (Some(w0), Some(w1), Some(w2), Some(w3)) =
                (window(0), window(1), window(2), window(3))
            else {
                break;
            };
            let values = dot4(
                [
                    &self.phases[batch.branches[0]],
                    &self.phases[batch.branches[1]],
                    &self.phases[batch.branches[2]],
                    &self.phases[batch.branches[3]],
                ],
                [w0, w1, w2, w3],
            );
            self.next_out += 4;
            if self.skip == 0 {
                out.extend_from_slice(&values);
            } else {
                let skipped = usize::try_from(self.skip).unwrap_or(usize::MAX).min(4);
                self.skip -= skipped as u64;
                out.extend_from_slice(&values[skipped..]);
            }
            newest += batch.advance;
            phase = batch.next_branch;
        }
        let mut starts = [0_usize; 4];
        let mut branches = [0_usize; 4];
        loop {
            let mut count = 0;
            while count < 4 && newest + STREAM_BRANCH_TAPS as u64 - 1 < available {
                starts[count] = (newest - self.base) as usize;
                branches[count] = phase as usize;
                count += 1;
                phase += self.down;
                while phase >= self.up {
                    phase -= self.up;
                    newest += 1;
                }
            }
            if count == 0 {
                break;
            }
            // A short batch repeats its first output in the unused lanes.
            for lane in count..4 {
                starts[lane] = starts[0];
                branches[lane] = branches[0];
            }
            let window = |lane: usize| {
                self.history
                    .get(starts[lane]..starts[lane] + STREAM_BRANCH_TAPS)
                    .and_then(|window| <&[i16; STREAM_BRANCH_TAPS]>::try_from(window).ok())
            };
            let (Some(w0), Some(w1), Some(w2), Some(w3)) =
                (window(0), window(1), window(2), window(3))
            else {
                debug_assert!(false, "the windows lie in the history");
                break;
            };
            let values = dot4(
                [
                    &self.phases[branches[0]],
                    &self.phases[branches[1]],
                    &self.phases[branches[2]],
                    &self.phases[branches[3]],
                ],
                [w0, w1, w2, w3],
            );
            self.next_out += count as u64;
            let skipped = usize::try_from(self.skip).unwrap_or(usize::MAX).min(count);
            self.skip -= skipped as u64;
            out.extend_from_slice(&values[skipped..count]);
            if count < 4 {
                break;
            }
        }
        // Keep what the next output needs; compact in batches.
        let dead = usize::try_from(newest.saturating_sub(self.base)).unwrap_or(usize::MAX);
        if dead >= STREAM_HISTORY_SLACK {
            let dead = dead.min(self.history.len());
            self.history.drain(..dead);
            self.base += dead as u64;
        }
    }
}

type Branch = [i16; STREAM_BRANCH_TAPS];

/// Four output samples: four Q15 dot products, rounded and saturated to
/// PCM16. SSE2 (part of every x86_64): `pmaddwd` makes eight i16 products
/// summed in pairs per instruction, the four sums are transposed and added
/// together, and `packssdw` saturates. The compiler kept the portable form
/// scalar, and it was most of the resampler's cost.
#[cfg(target_arch = "x86_64")]
fn dot4(taps: [&Branch; 4], windows: [&Branch; 4]) -> [i16; 4] {
    use std::arch::x86_64::{
        __m128i, _mm_add_epi32, _mm_loadu_si128, _mm_madd_epi16, _mm_packs_epi32, _mm_set1_epi32,
        _mm_setzero_si128, _mm_srai_epi32, _mm_storel_epi64, _mm_unpackhi_epi32,
        _mm_unpackhi_epi64, _mm_unpacklo_epi32, _mm_unpacklo_epi64,
    };
    let mut values = [0_i16; 4];
    // SAFETY: SSE2 is enabled on every x86_64 target (the intrinsics need
    // no more). Each array holds STREAM_BRANCH_TAPS (32) i16, so the 8
    // values loaded from `column * 8` are in bounds; `loadu` has no
    // alignment requirement. No pair of products overflows: no tap is
    // -32768, and a branch's absolute taps sum to under 2 (Q15), so no
    // sum of 32 products leaves i32. `storel` writes 8 bytes into
    // `values`, which has 8.
    unsafe {
        let mut sums = [_mm_setzero_si128(); 4];
        for (sum, (tap, window)) in sums.iter_mut().zip(taps.iter().zip(windows.iter())) {
            for column in 0..STREAM_BRANCH_TAPS / 8 {
                let t = _mm_loadu_si128(tap.as_ptr().add(column * 8).cast::<__m128i>());
                let w = _mm_loadu_si128(window.as_ptr().add(column * 8).cast::<__m128i>());
                *sum = _mm_add_epi32(*sum, _mm_madd_epi16(t, w));
            }
        }
        // Transpose-and-add: lane `k` of `total` is the sum of `sums[k]`.
        let s01 = _mm_add_epi32(
            _mm_unpacklo_epi32(sums[0], sums[1]),
            _mm_unpackhi_epi32(sums[0], sums[1]),
        );
        let s23 = _mm_add_epi32(
            _mm_unpacklo_epi32(sums[2], sums[3]),
            _mm_unpackhi_epi32(sums[2], sums[3]),
        );
        let total = _mm_add_epi32(_mm_unpacklo_epi64(s01, s23), _mm_unpackhi_epi64(s01, s23));
        let rounded = _mm_srai_epi32::<{ STREAM_TAP_BITS as i32 }>(_mm_add_epi32(
            total,
            _mm_set1_epi32(1 << (STREAM_TAP_BITS - 1)),
        ));
        let packed = _mm_packs_epi32(rounded, rounded);
        _mm_storel_epi64(values.as_mut_ptr().cast::<__m128i>(), packed);
    }
    values
}

/// The portable four outputs.
#[cfg(not(target_arch = "x86_64"))]
fn dot4(taps: [&Branch; 4], windows: [&Branch; 4]) -> [i16; 4] {
    std::array::from_fn(|lane| dot_portable(taps[lane], windows[lane]))
}

/// One output sample, the reference the vector form is tested against.
#[cfg(any(test, not(target_arch = "x86_64")))]
fn dot_portable(taps: &Branch, window: &Branch) -> i16 {
    let sum: i32 = taps
        .iter()
        .zip(window)
        .map(|(&tap, &sample)| i32::from(tap) * i32::from(sample))
        .sum();
    let rounded = (sum + (1 << (STREAM_TAP_BITS - 1))) >> STREAM_TAP_BITS;
    rounded.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(frequency_hz: f64, rate_hz: u32, len: usize, amplitude: f64) -> Vec<i16> {
        (0..len)
            .map(|n| {
                let t = n as f64 / f64::from(rate_hz);
                (amplitude * (2.0 * std::f64::consts::PI * frequency_hz * t).sin()) as i16
            })
            .collect()
    }

    fn rms(samples: &[i16]) -> f64 {
        let sum: f64 = samples.iter().map(|&s| f64::from(s).powi(2)).sum();
        (sum / samples.len().max(1) as f64).sqrt()
    }

    #[test]
    fn the_vector_dot_products_match_the_portable_one() {
        // Extreme windows included: the pack saturates as the clamp does.
        let stream = StreamResampler::new(24_000, 16_000).expect("24 -> 16 kHz");
        let mut seed = 0x2545_f491_u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for round in 0..2000 {
            let windows: [Branch; 4] = std::array::from_fn(|lane| {
                std::array::from_fn(|i| match (round + lane) % 4 {
                    0 => i16::MAX,
                    1 => i16::MIN,
                    2 => {
                        if (i + lane) % 2 == 0 {
                            i16::MAX
                        } else {
                            i16::MIN
                        }
                    }
                    _ => next() as i16,
                })
            });
            let taps: [&Branch; 4] =
                std::array::from_fn(|lane| &stream.phases[(round + lane) % stream.phases.len()]);
            let values = dot4(taps, [&windows[0], &windows[1], &windows[2], &windows[3]]);
            for lane in 0..4 {
                assert_eq!(
                    values[lane],
                    dot_portable(taps[lane], &windows[lane]),
                    "{round}/{lane}"
                );
            }
        }
    }

    #[test]
    fn every_output_is_the_direct_dot_product_whatever_the_pieces() {
        // Output `n` is branch `n*down % up` against the 32 inputs ending
        // at `n*down / up` (zeros before the start), the delay dropped:
        // computed directly, one by one, it must equal what the runs of
        // four give, for any split of the input.
        for (from, to) in [
            (24_000, 16_000),
            (8_000, 16_000),
            (48_000, 16_000),
            (22_050, 16_000),
        ] {
            let Some(reference) = StreamResampler::new(from, to) else {
                continue;
            };
            let input = sine(1234.5, from, 4000, 20_000.0);
            let mut padded = vec![0_i16; STREAM_BRANCH_TAPS - 1];
            padded.extend_from_slice(&input);
            let mut expected = Vec::new();
            for n in 0_u64.. {
                let position = n * reference.down;
                let (newest, phase) = (position / reference.up, position % reference.up);
                let Some(window) = padded
                    .get(newest as usize..newest as usize + STREAM_BRANCH_TAPS)
                    .and_then(|window| <&Branch>::try_from(window).ok())
                else {
                    break;
                };
                if n >= reference.skip {
                    expected.push(dot_portable(&reference.phases[phase as usize], window));
                }
            }
            for piece in [1, 7, 480, 333, 4000] {
                let mut stream = StreamResampler::new(from, to).expect("rate pair");
                let mut output = Vec::new();
                for chunk in input.chunks(piece) {
                    stream.push(chunk, &mut output);
                }
                assert_eq!(output, expected, "{from} -> {to} in pieces of {piece}");
            }
        }
    }

    #[test]
    fn a_stream_resampled_in_pieces_matches_the_whole() {
        let input = sine(1000.0, 24_000, 24_000, 10_000.0);
        let mut stream = StreamResampler::new(24_000, 16_000).expect("24 -> 16 kHz");
        let mut output = Vec::new();
        for piece in input.chunks(333) {
            stream.push(piece, &mut output);
        }
        // All but the last partial chunk is out, and in step with the tone.
        assert!(output.len() >= 16_000 - 2 * 320 && output.len() <= 16_000);
        let (shift, error) = tone_alignment(&output);
        assert!(shift.abs() <= 0.5, "shift {shift}");
        assert!(error < 200.0, "rms error {error}");
        assert!(StreamResampler::new(16_000, 16_000).is_none());
        assert!(StreamResampler::new(44_100, 16_000).is_none());

        // A tone above the new Nyquist frequency is filtered, not folded
        // back into the speech band.
        let high = sine(10_000.0, 24_000, 24_000, 10_000.0);
        let mut stream = StreamResampler::new(24_000, 16_000).expect("24 -> 16 kHz");
        let mut output = Vec::new();
        stream.push(&high, &mut output);
        assert!(rms(&output[100..]) < 300.0, "rms {}", rms(&output[100..]));
    }

    #[test]
    fn lengths_are_rounded_ratio() {
        for &(from, to, len) in &[
            (44_100, 16_000, 44_100),
            (44_100, 16_000, 12_345),
            (22_050, 16_000, 1),
            (11_025, 16_000, 999),
            (96_000, 16_000, 100_000),
            (8_000, 16_000, 7_777),
            (44_101, 16_000, 30_000),
            (12_345, 16_000, 5),
        ] {
            let input = sine(440.0, from, len, 10_000.0);
            let output = resample_i16(&input, from, to);
            assert_eq!(
                output.len(),
                resampled_len(len, from, to),
                "{from}->{to} len {len}"
            );
        }
    }

    /// The shift (in output samples, to 0.05) that best aligns `output` with a 1 kHz
    /// tone of amplitude 10000 at 16 kHz, and the RMS error at that shift.
    fn tone_alignment(output: &[i16]) -> (f64, f64) {
        let mut best = (0.0, f64::MAX);
        for step in -40..=40 {
            let shift = f64::from(step) * 0.05;
            let squares: f64 = (1000..15_000)
                .map(|n| {
                    let t = (n as f64 - shift) / 16_000.0;
                    let reference = 10_000.0 * (2.0 * std::f64::consts::PI * 1000.0 * t).sin();
                    (f64::from(output[n]) - reference).powi(2)
                })
                .sum();
            let error_rms = (squares / 14_000.0).sqrt();
            if error_rms < best.1 {
                best = (shift, error_rms);
            }
        }
        best
    }

    #[test]
    fn tone_keeps_amplitude_and_phase() {
        // 1 s of 1 kHz must still be the same tone after resampling to 16 kHz, in
        // phase (the resampler delay is removed). The FFT path is exact; the sinc path
        // for odd rates may lag by a fraction of a sample.
        for &(from, shift_max) in &[
            (44_100, 0.0),
            (8_000, 0.0),
            (96_000, 0.0),
            (12_345, 0.5),
            (44_101, 0.5),
        ] {
            let input = sine(1000.0, from, from as usize, 10_000.0);
            let output = resample_i16(&input, from, 16_000);
            let (shift, error_rms) = tone_alignment(&output);
            assert!(shift.abs() <= shift_max, "{from}: shifted by {shift}");
            assert!(error_rms < 50.0, "{from}: error rms {error_rms}");
        }
    }

    #[test]
    fn tone_above_new_nyquist_is_removed() {
        // 10 kHz cannot exist at 16 kHz; without an anti-alias filter it would fold
        // to 6 kHz at full strength.
        let input = sine(10_000.0, 44_100, 44_100, 10_000.0);
        let output = resample_i16(&input, 44_100, 16_000);
        assert!(rms(&output[1000..15_000]) < 100.0, "rms {}", rms(&output));
    }

    #[test]
    fn equal_rates_and_empty_input_are_copies() {
        assert_eq!(resample_i16(&[1, 2, 3], 16_000, 16_000), vec![1, 2, 3]);
        assert!(resample_i16(&[], 44_100, 16_000).is_empty());
    }
}
