//! The real engine's cost per job (feature `whisper`; the weights from
//! `scripts/fetch-model.sh`): one single-threaded worker transcribing a VAD
//! segment, for several floors of the encoder context.
//!
//! - `segment_2s/ctx_*`: flite's "hello world this is a test" (2.1 s).
//! - `segment_15s/ctx_*`: five flite sentences back to back (15 s, the
//!   default longest segment).
//!
//! `ctx_1500` is Whisper's full 30 s window; `ctx_768` the server's floor
//! ([`MIN_AUDIO_CTX`]); `ctx_tight` sizes the context to the clip (floor 1).
//! Before measuring, the bench prints the text each floor produces. These
//! clips keep 0.3 s of silence after the speech and the tight context reads
//! them right; on the server's VAD segments, which end closer to the last
//! word, the same tight sizing made tiny.en repeat its sentence until the
//! token limit on 4 of 6 flite files (loadtests/RESULTS.md), which is why the
//! server keeps a floor of 768 positions.
//!
//! Run with `scripts/fetch-model.sh && cargo bench --features whisper --bench whisper`.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use transcription_service::audio::{decode, AudioFormat};
use transcription_service::model::whisper::{WhisperModel, MIN_AUDIO_CTX};
use transcription_service::model::{SpeechModel, TranscribeOptions};

const HELLO_WAV: &[u8] = include_bytes!("../tests/fixtures/whisper/hello_world.wav");
const SENTENCES: [&[u8]; 5] = [
    include_bytes!("../tests/fixtures/whisper/wer_01.wav"),
    include_bytes!("../tests/fixtures/whisper/wer_02.wav"),
    include_bytes!("../tests/fixtures/whisper/wer_03.wav"),
    include_bytes!("../tests/fixtures/whisper/wer_04.wav"),
    include_bytes!("../tests/fixtures/whisper/wer_05.wav"),
];
const RATE_HZ: u32 = 16_000;

fn samples(wav: &[u8]) -> Vec<i16> {
    decode(AudioFormat::Wav, wav)
        .expect("fixture decodes")
        .samples
}

fn bench_whisper(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/ggml-tiny.en.bin");
    assert!(
        path.is_file(),
        "{} is missing: run scripts/fetch-model.sh",
        path.display()
    );
    let short = samples(HELLO_WAV);
    let long: Vec<i16> = SENTENCES.iter().flat_map(|wav| samples(wav)).collect();
    let options = TranscribeOptions::default();
    for (name, clip) in [("segment_2s", &short), ("segment_15s", &long)] {
        let mut group = c.benchmark_group(name);
        group
            .sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .measurement_time(Duration::from_secs(15))
            .throughput(Throughput::Elements(clip.len() as u64));
        for (label, floor) in [
            ("ctx_tight", 1),
            ("ctx_768", MIN_AUDIO_CTX),
            ("ctx_1500", 1500),
        ] {
            let model = WhisperModel::load(&path, 1)
                .expect("the model loads")
                .with_min_audio_ctx(floor);
            let mut worker = model.new_worker().expect("a worker");
            let heard = worker
                .transcribe(clip, RATE_HZ, &options)
                .expect("transcribed");
            eprintln!("{name}/{label}: {:?}", heard.text);
            group.bench_function(label, |b| {
                b.iter(|| {
                    worker
                        .transcribe(black_box(clip), RATE_HZ, &options)
                        .expect("transcribed")
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench_whisper);
criterion_main!(benches);
