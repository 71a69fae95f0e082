//! Audio cost per format and per VAD rate: the two loops that used to live in
//! the library's tests as `#[ignore]`d throughput checks
//! (`audio::decode::tests::decode_throughput`, `audio::vad::tests::vad_throughput`).
//! A measurement belongs here, where Criterion repeats it and reports its
//! spread, and never in a test that passes whatever the number is.
//!
//! - `decode_sniff/*`: [`decode`] with [`AudioFormat::Sniff`] (the format the
//!   batch endpoint uses when the client names none) on every fixture format:
//!   PCM16 at 16 kHz, PCM16 stereo at 44.1 kHz, IEEE float, and FLAC.
//! - `vad_rate/*`: one [`VadSegmenter`] pushed the whole of
//!   `two_utterances.wav` resampled to each of [`VAD_RATES_HZ`], the rates a
//!   stream may declare without a resampler in front of the detector.
//!
//! Throughput is set in samples of decoded audio, so Criterion's elements per
//! second divided by the sample rate is how many audio seconds one core
//! handles per wall second.
//!
//! Run with `cargo bench --bench audio_formats`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use transcription_service::audio::resample::resample_i16;
use transcription_service::audio::{
    decode, AudioFormat, SegmenterConfig, VadSegmenter, VAD_RATES_HZ,
};

const FIXTURES: [(&str, &[u8]); 4] = [
    ("hello_wav", include_bytes!("../tests/fixtures/hello.wav")),
    (
        "hello_stereo_44k_wav",
        include_bytes!("../tests/fixtures/hello_stereo_44k.wav"),
    ),
    (
        "hello_f32_wav",
        include_bytes!("../tests/fixtures/hello_f32.wav"),
    ),
    ("hello_flac", include_bytes!("../tests/fixtures/hello.flac")),
];
const TWO_UTTERANCES_WAV: &[u8] = include_bytes!("../tests/fixtures/two_utterances.wav");

/// The server's defaults: 500 ms of silence ends a segment, 15 s is the
/// longest one; VAD mode 2.
const HANGOVER_MS: u32 = 500;
const SEGMENT_MS_MAX: u32 = 15_000;
const VAD_MODE: u8 = 2;

fn bench_decode_sniff(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_sniff");
    for (name, bytes) in FIXTURES {
        let pcm = decode(AudioFormat::Sniff, bytes)
            .unwrap_or_else(|error| panic!("fixture {name}: {error}"));
        group.throughput(Throughput::Elements(pcm.samples.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| decode(AudioFormat::Sniff, black_box(bytes)));
        });
    }
    group.finish();
}

fn bench_vad_rate(c: &mut Criterion) {
    let two = decode(AudioFormat::Wav, TWO_UTTERANCES_WAV)
        .unwrap_or_else(|error| panic!("fixture two_utterances.wav: {error}"));
    let mut group = c.benchmark_group("vad_rate");
    for rate in VAD_RATES_HZ {
        let samples = resample_i16(&two.samples, two.sample_rate, rate);
        let config = SegmenterConfig::new(rate, HANGOVER_MS, SEGMENT_MS_MAX);
        let mut detector = VadSegmenter::new(config, VAD_MODE);
        let mut events = Vec::with_capacity(64);
        group.throughput(Throughput::Elements(samples.len() as u64));
        group.bench_function(format!("{rate}_hz"), |b| {
            // One long-lived detector, as on a stream: its state carries over
            // from one push to the next.
            b.iter(|| {
                detector.push(black_box(&samples), &mut events);
                events.clear();
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench_decode_sniff, bench_vad_rate);
criterion_main!(benches);
