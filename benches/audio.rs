//! Audio micro-benchmarks: decoding and voice activity detection, the CPU
//! work a core does on every batch upload and every streamed WebSocket frame
//! before the model sees a sample.
//!
//! - `decode_wav/*`: [`decode`] with [`AudioFormat::Wav`] on the test fixtures.
//!   `hello_16k_mono` is the fast path (PCM16 at a VAD rate: parse and copy);
//!   `hello_44k_stereo` adds the down-mix and the resampler to 16 kHz, the path
//!   every 44.1 kHz upload takes. Criterion can only express throughput in
//!   bytes, so the cost per second of audio is derived below.
//! - `vad/*`: [`VadSegmenter`] (energy gate + WebRTC VAD + segmenter), which
//!   runs on the core for every streamed frame. `push_1s_in_20ms_chunks` pushes
//!   the first second of `hello.wav` (0.3 s silence, then speech) in 320-sample
//!   pieces, as a client streaming 20 ms WebSocket frames does; the detector
//!   uses the server's 30 ms frames, so partial frames are carried across
//!   pushes. `segment_all_two_utterances` is the batch path over a whole
//!   4.992 s file, including creating the detector.
//!
//! Config: `SegmenterConfig::new(16000, 500, 15000)`, VAD mode 2 (the server
//! defaults).
//!
//! Measured on the 2-core development VM (`--warm-up-time 1
//! --measurement-time 3`, medians; both hello files are 2.148 s of audio,
//! two_utterances.wav is 4.992 s):
//! - decode hello.wav (68 KiB): 490 µs, i.e. ~228 µs per audio second
//!   (~14 ns per sample; `perf` puts most of it in hound's per-sample
//!   `read_exact` through the `Cursor`, a `memcpy` call per 2-byte sample).
//! - decode hello_stereo_44k.wav (370 KiB): 2.84 ms, i.e. ~1.32 ms per audio
//!   second: ~0.69 ms resampling (`resample/hello_44k1_mono_to_16k`, ~320 µs
//!   per audio second) and ~2.15 ms reading 189k interleaved samples.
//! - VAD push of 1 s in 20 ms chunks: 64 µs, i.e. 64 µs per audio second
//!   (~0.64 % of one core per real-time stream).
//! - segment_all on two_utterances.wav: 263 µs, i.e. ~53 µs per audio second
//!   (its 1.5 s of digital silence never reaches the VAD: the energy gate
//!   refuses it first).
//!
//! Run with `cargo bench --bench audio`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use transcription_service::audio::resample::resample_i16;
use transcription_service::audio::{
    decode, segment_all, AudioFormat, Pcm, SegmenterConfig, VadSegmenter,
};

const HELLO_WAV: &[u8] = include_bytes!("../tests/fixtures/hello.wav");
const HELLO_STEREO_44K_WAV: &[u8] = include_bytes!("../tests/fixtures/hello_stereo_44k.wav");
const TWO_UTTERANCES_WAV: &[u8] = include_bytes!("../tests/fixtures/two_utterances.wav");

const RATE_HZ: u32 = 16_000;
const VAD_MODE: u8 = 2;
/// A 20 ms WebSocket frame at 16 kHz.
const PUSH_SAMPLES: usize = 320;

fn config() -> SegmenterConfig {
    SegmenterConfig::new(RATE_HZ, 500, 15_000)
}

fn fixture(name: &str, bytes: &[u8]) -> Pcm {
    decode(AudioFormat::Wav, bytes).unwrap_or_else(|error| panic!("fixture {name}: {error}"))
}

fn bench_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_wav");
    for (name, bytes) in [
        ("hello_16k_mono", HELLO_WAV),
        ("hello_44k_stereo", HELLO_STEREO_44K_WAV),
    ] {
        let pcm = fixture(name, bytes);
        assert_eq!(pcm.sample_rate, RATE_HZ, "{name} decodes to 16 kHz");
        // Bytes of encoded input per second; the time per iteration divided by
        // the audio duration (2.148 s for both) is the cost per audio second.
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| decode(AudioFormat::Wav, black_box(bytes)));
        });
    }
    group.finish();

    // The resampler alone, to split the 44.1 kHz decode into WAV reading and
    // resampling: hello.wav brought up to 44.1 kHz mono, then back to 16 kHz.
    let hello = fixture("hello.wav", HELLO_WAV);
    let mono_44k = resample_i16(&hello.samples, RATE_HZ, 44_100);
    let mut group = c.benchmark_group("resample");
    group.throughput(Throughput::Bytes(2 * mono_44k.len() as u64));
    group.bench_function("hello_44k1_mono_to_16k", |b| {
        b.iter(|| resample_i16(black_box(&mono_44k), 44_100, RATE_HZ));
    });
    group.finish();
}

fn bench_vad(c: &mut Criterion) {
    let hello = fixture("hello.wav", HELLO_WAV);
    let one_second = hello
        .samples
        .get(..RATE_HZ as usize)
        .expect("hello.wav is longer than 1 s");
    let two = fixture("two_utterances.wav", TWO_UTTERANCES_WAV);
    assert_eq!(
        segment_all(&two, config(), VAD_MODE).len(),
        2,
        "two_utterances.wav gives two segments"
    );

    let mut group = c.benchmark_group("vad");
    // Samples per second: 16 Kelem/s is real time.
    group.throughput(Throughput::Elements(one_second.len() as u64));
    group.bench_function("push_1s_in_20ms_chunks", |b| {
        // A fresh detector per iteration, created outside the timing, so every
        // iteration sees the same silence-then-speech sequence.
        b.iter_batched_ref(
            || {
                (
                    VadSegmenter::new(config(), VAD_MODE),
                    Vec::with_capacity(16),
                )
            },
            |(detector, events)| {
                for chunk in black_box(one_second).chunks(PUSH_SAMPLES) {
                    detector.push(chunk, events);
                }
            },
            BatchSize::SmallInput,
        );
    });
    group.throughput(Throughput::Elements(two.samples.len() as u64));
    group.bench_function("segment_all_two_utterances", |b| {
        b.iter(|| segment_all(black_box(&two), config(), VAD_MODE));
    });
    group.finish();
}

criterion_group!(benches, bench_decode, bench_vad);
criterion_main!(benches);
