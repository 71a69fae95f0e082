//! HTTP/1.1 parsing micro-benchmarks: the per-request CPU cost on a core
//! before any handler runs.
//!
//! - `parse_head/*`: [`parse_head`] (httparse into a fixed header array, then
//!   lower-casing and copying every header into owned strings, framing and
//!   keep-alive rules). It runs on every request a core accepts, including the
//!   cheap `GET /v1/health` probes load balancers send several times a second,
//!   so its allocation count is the floor on per-request cost.
//! - `chunked_decode/*`: [`ChunkedDecoder`] on a 64 KiB body sent in 4 KiB
//!   chunks, the shape of a streaming upload with `Transfer-Encoding: chunked`.
//!   This is the per-byte path every chunked audio upload goes through before
//!   decoding; `whole_buffer` decodes it in one call, `reads_8k` feeds it in
//!   8 KiB pieces the way the connection loop does with its 8 KiB reads (partial
//!   chunk-size lines and CRLFs straddle the read boundaries).
//!
//! Run with `cargo bench --bench http_parse`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use transcription_service::http::body::ChunkedDecoder;
use transcription_service::http::head::parse_head;

/// The limit the server applies (`head_bytes_max` default).
const HEAD_BYTES_MAX: usize = 16 * 1024;

/// A health probe as curl sends it.
const GET_HEALTH: &[u8] = b"GET /v1/health HTTP/1.1\r\n\
Host: localhost:8080\r\n\
User-Agent: curl/8.5.0\r\n\
Accept: */*\r\n\
\r\n";

/// A batch upload head with 8 headers.
const POST_TRANSCRIBE: &[u8] = b"POST /v1/transcribe?language=en&vad_mode=2 HTTP/1.1\r\n\
Host: transcribe.internal:8080\r\n\
User-Agent: python-requests/2.31.0\r\n\
Accept: application/json\r\n\
Accept-Encoding: gzip, deflate\r\n\
Connection: keep-alive\r\n\
Authorization: Bearer 3f9c2a7e5b1d4c8fa06e9b2d7c4a1f58\r\n\
Content-Type: audio/wav\r\n\
Content-Length: 68792\r\n\
\r\n";

const BODY_BYTES: usize = 64 * 1024;
const CHUNK_BYTES: usize = 4 * 1024;
/// The connection loop's read size (`limits::READ_BUFFER_BYTES`).
const READ_BYTES: usize = 8 * 1024;

fn bench_parse_head(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_head");
    for (name, head) in [
        ("get_health", GET_HEALTH),
        ("post_transcribe_8_headers", POST_TRANSCRIBE),
    ] {
        // Check the input once so the benchmark measures the success path.
        let (parsed, len) = parse_head(head, HEAD_BYTES_MAX)
            .expect("benchmark head is valid")
            .expect("benchmark head is complete");
        assert_eq!(len, head.len());
        assert!(parsed.keep_alive);
        group.throughput(Throughput::Bytes(head.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| parse_head(black_box(head), HEAD_BYTES_MAX));
        });
    }
    group.finish();
}

/// `BODY_BYTES` of data as `CHUNK_BYTES` chunks, with the terminating chunk.
fn chunked_body() -> (Vec<u8>, Vec<u8>) {
    let data: Vec<u8> = (0..BODY_BYTES).map(|i| (i % 251) as u8).collect();
    let mut wire = Vec::with_capacity(BODY_BYTES + 1024);
    for chunk in data.chunks(CHUNK_BYTES) {
        wire.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        wire.extend_from_slice(chunk);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    (data, wire)
}

/// Feeds `wire` to a fresh decoder in `read`-byte arrivals, carrying any
/// unconsumed bytes over as the connection's buffer does.
fn decode_in_reads(wire: &[u8], read: usize) -> Vec<u8> {
    let mut decoder = ChunkedDecoder::default();
    let mut body = Vec::new();
    let mut consumed = 0;
    let mut arrived = 0;
    while !decoder.is_done() {
        assert!(
            arrived < wire.len(),
            "benchmark body ends before its last chunk"
        );
        arrived = (arrived + read).min(wire.len());
        consumed += decoder
            .decode(&wire[consumed..arrived], &mut body, usize::MAX)
            .expect("benchmark body is valid");
    }
    body
}

fn bench_chunked(c: &mut Criterion) {
    let (data, wire) = chunked_body();
    assert_eq!(decode_in_reads(&wire, wire.len()), data);
    assert_eq!(decode_in_reads(&wire, READ_BYTES), data);

    let mut group = c.benchmark_group("chunked_decode_64k_in_4k_chunks");
    // Bytes of decoded body per second.
    group.throughput(Throughput::Bytes(BODY_BYTES as u64));
    group.bench_function("whole_buffer", |b| {
        // As the connection does, the body starts empty and grows; it is freed
        // inside the timing, as it is after each request. (Keeping the bodies
        // alive across a batch instead measures glibc handing out fresh mmap'd
        // 128 KiB blocks and their page faults: ~18x slower.)
        b.iter(|| decode_in_reads(black_box(&wire), wire.len()));
    });
    group.bench_function("reads_8k", |b| {
        b.iter(|| decode_in_reads(black_box(&wire), READ_BYTES));
    });
    group.finish();
}

criterion_group!(benches, bench_parse_head, bench_chunked);
criterion_main!(benches);
