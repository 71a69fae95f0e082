//! The streaming hot path, piece by piece:
//!
//! - `ws_frame_in/20ms`: one masked 640-byte binary frame (20 ms of 16 kHz
//!   PCM16) fed to the tungstenite adapter ([`Link`]) and read back out as a
//!   message: the per-frame cost of the WebSocket layer.
//! - `ws_final_out`: a final transcript with words serialized to JSON, queued
//!   and encoded into a server frame: the per-transcript cost on the way out.
//! - `json_final`: the JSON encoding of that final alone.
//! - `vad_frame/{10,20,30}ms`: one frame of speech through [`VadSegmenter`]
//!   (energy gate, WebRTC VAD, segmenter) at each frame length the VAD takes.
//! - `core_worker_core`: a job submitted from a monoio runtime (the core) to a
//!   one-worker pool and its outcome awaited there: the real round trip a
//!   segment pays, including waking the core's runtime from the worker.
//!
//! Run with `cargo bench --bench streaming`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use transcription_service::audio::{SegmentEvent, SegmenterConfig, VadSegmenter};
use transcription_service::model::mock::MockModel;
use transcription_service::model::pool::{Job, JobKind, ModelPool};
use transcription_service::ws::protocol::{ServerMessage, WordOut};
use transcription_service::ws::transport::Link;

const TWO_UTTERANCES: &[u8] = include_bytes!("../tests/fixtures/two_utterances.wav");

/// 20 ms of speech from the middle of the first utterance.
fn speech(bytes: usize) -> &'static [u8] {
    let start = 44 + 16_000; // 0.5 s in
    &TWO_UTTERANCES[start..start + bytes]
}

fn client_frame(payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x82, 0x80 | 126];
    frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

fn final_transcript() -> ServerMessage {
    let words: Vec<WordOut> = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]
        .iter()
        .enumerate()
        .map(|(i, w)| WordOut {
            word: w.to_string(),
            start: 0.42 + i as f64 * 0.4,
            end: 0.72 + i as f64 * 0.4,
        })
        .collect();
    ServerMessage::Transcript {
        segment_id: 7,
        is_final: true,
        text: "alpha bravo charlie delta echo foxtrot".into(),
        start: 0.42,
        end: 2.72,
        words: Some(words),
    }
}

fn bench_ws(c: &mut Criterion) {
    let frame = client_frame(speech(640));
    let link = Link::new(Vec::new(), 1 << 20, 1 << 20);
    let mut buffer = Vec::with_capacity(4096);
    let mut group = c.benchmark_group("ws_frame_in");
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("20ms", |b| {
        b.iter(|| {
            buffer.clear();
            buffer.extend_from_slice(&frame);
            buffer = link.feed(std::mem::take(&mut buffer), 4096);
            let message = link.read_message().expect("a message");
            black_box(message);
        })
    });
    group.finish();

    let message = final_transcript();
    c.bench_function("json_final", |b| b.iter(|| black_box(message.to_json())));
    let mut wire = Vec::new();
    c.bench_function("ws_final_out", |b| {
        b.iter(|| {
            let _ = link.push_text(message.to_json(), false);
            link.encode_into(&mut wire);
            black_box(wire.len());
        })
    });
}

fn bench_vad_frames(c: &mut Criterion) {
    let mut group = c.benchmark_group("vad_frame");
    for frame_ms in [10u32, 20, 30] {
        let mut config = SegmenterConfig::new(16_000, 500, 15_000);
        config.frame_ms = frame_ms;
        let samples: Vec<i16> = speech(frame_ms as usize * 32)
            .chunks_exact(2)
            .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
            .collect();
        let mut vad = VadSegmenter::new(config, 2);
        let mut events: Vec<SegmentEvent> = Vec::with_capacity(4);
        group.bench_function(format!("{frame_ms}ms"), |b| {
            b.iter(|| {
                vad.push(black_box(&samples), &mut events);
                events.clear();
            })
        });
    }
    group.finish();
}

fn bench_round_trip(c: &mut Criterion) {
    let pool = ModelPool::start(
        Arc::new(MockModel {
            latency: Duration::ZERO,
            rtf: 0.0,
        }),
        1,
        64,
    )
    .expect("pool");
    let to_pool = pool.to_pool();
    let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime");
    c.bench_function("core_worker_core", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let (job, receiver) =
                    Job::new(0, JobKind::Interim, Vec::new(), 16_000, Default::default());
                to_pool.try_submit(job).expect("room in the queue");
                black_box(receiver.await.expect("an outcome"));
            })
        })
    });
    drop(to_pool);
    pool.join();
}

criterion_group!(benches, bench_ws, bench_vad_frames, bench_round_trip);
criterion_main!(benches);
