//! Replays of the fuzz targets on the stable toolchain.
//!
//! `fuzz/src/` holds the harness of every cargo-fuzz target, one file each
//! (`lib.rs` lists them); it is compiled here too, so a seed or a minimised
//! reproducer goes through exactly the code the fuzzer ran. One test per target replays its committed seeds
//! (`fuzz/seeds/<target>/`), so seeds stay valid as the code changes; one test
//! per finding replays its reproducer (`fuzz/regressions/<target>-<name>`) and
//! states the correct behaviour. See fuzz/README.md and fuzz/RESULTS.md.

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod harness;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use transcription_service::ws::protocol::ServerMessage;
use transcription_service::ws::session::Output;
use transcription_service::ws::transport::Link;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The system allocator, noting the largest single request of each thread,
/// so a test can bound what one decode asks for.
struct LargestRequest;

thread_local! {
    static LARGEST_REQUEST: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to `System`; the thread-local
// `Cell` has a const initialiser and no destructor, so it never allocates.
unsafe impl std::alloc::GlobalAlloc for LargestRequest {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        note_request(layout.size());
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        note_request(layout.size());
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        note_request(new_size);
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

fn note_request(size: usize) {
    let _ = LARGEST_REQUEST.try_with(|largest| largest.set(largest.get().max(size)));
}

#[global_allocator]
static ALLOCATOR: LargestRequest = LargestRequest;

/// The largest single allocation `run` requests on this thread.
fn largest_request<T>(run: impl FnOnce() -> T) -> (T, usize) {
    LARGEST_REQUEST.with(|largest| largest.set(0));
    let value = run();
    (value, LARGEST_REQUEST.with(std::cell::Cell::get))
}

/// Every seed of `target` through its harness.
fn replay_seeds(target: &str) {
    let folder = fuzz_dir().join("seeds").join(target);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap_or_else(|error| panic!("{}: {error}", folder.display()))
        .map(|entry| entry.expect("seed entry").path())
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no seeds in {}", folder.display());
    for path in paths {
        let data = std::fs::read(&path).expect("seed");
        assert!(data.len() < 4096, "{} is not a small seed", path.display());
        eprintln!("{target}: {}", path.display());
        harness::run_target(target, &data);
    }
}

/// A finding's reproducer.
fn regression(name: &str) -> Vec<u8> {
    let path = fuzz_dir().join("regressions").join(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

#[test]
fn seeds_http_head_body() {
    replay_seeds("http_head_body");
}

#[test]
fn seeds_ws_session() {
    replay_seeds("ws_session");
}

#[test]
fn seeds_audio_decode() {
    replay_seeds("audio_decode");
}

#[test]
fn seeds_realtime_events() {
    replay_seeds("realtime_events");
}

#[test]
fn seeds_deepgram_control() {
    replay_seeds("deepgram_control");
}

#[test]
fn seeds_control_json() {
    replay_seeds("control_json");
}

#[test]
fn seeds_vad_segmenter() {
    replay_seeds("vad_segmenter");
}

/// The seeds exercise what they are meant to: segments and finals in the
/// session, segments in the VAD, requests in the real HTTP loop.
#[test]
fn seeds_reach_the_interesting_paths() {
    let seed = |target: &str, name: &str| {
        std::fs::read(fuzz_dir().join("seeds").join(target).join(name)).expect("seed")
    };
    // The real connection loop over the echo service: a sized and a chunked
    // POST /echo answered in order, then a 404 for an unknown path that asks
    // to close.
    let served = transcription_service::http::memory::serve_bytes(
        &seed("http_head_body", "post_echo_pipelined")[4..],
        7,
    )
    .expect("a runtime");
    let output = String::from_utf8_lossy(&served.output);
    let statuses: Vec<&str> = output
        .match_indices("HTTP/1.1 ")
        .filter_map(|(at, _)| output.get(at + 9..at + 12))
        .collect();
    assert_eq!(statuses, ["200", "200", "404"], "{output}");
    let hello = output.find("hello").expect("the first body echoed");
    let abc = output.find("abc").expect("the second body echoed");
    assert!(hello < abc, "{output}");
    assert!(served.upgraded.is_none());
    let audio = harness::synth::synth_audio(1, 150, 16_000, 3);
    let pcm = transcription_service::audio::Pcm {
        samples: audio,
        sample_rate: 16_000,
    };
    let config = transcription_service::audio::SegmenterConfig::new(16_000, 500, 15_000);
    assert_eq!(
        transcription_service::audio::segment_all(&pcm, config, 2).len(),
        1
    );
    let log = harness::ws_session::ws_session_log(&seed("ws_session", "ops_speech_finalize_end"));
    let count = |final_only: bool| {
        log.iter()
            .filter(|output| match output {
                Output::Message(ServerMessage::Transcript { is_final, .. }) => {
                    *is_final || !final_only
                }
                _ => false,
            })
            .count()
    };
    let starts = log
        .iter()
        .filter(|output| matches!(output, Output::Message(ServerMessage::SpeechStart { .. })))
        .count();
    eprintln!(
        "ws seed: {starts} segments, {} finals, {} transcripts",
        count(true),
        count(false)
    );
    assert!(starts >= 2, "{log:?}");
    assert_eq!(count(true), starts);
    assert!(count(false) > count(true), "no interims: {log:?}");
}

// ---------------------------------------------------------------------------
// Findings
// ---------------------------------------------------------------------------

/// Finding ws_session-capacity-then-read: after `Link::read_message` returned
/// `Error::Capacity` (a frame over the message limit), reading again (which
/// `ws::conn::finish` does while it waits for the close handshake) must be an
/// error, not a panic. tungstenite 0.30 returns the capacity error after it
/// stored the frame header but before it reserved room for the payload, so
/// its read buffer is full and the next read trips
/// `debug_assert!(self.in_buffer.capacity() > len)` (frame/mod.rs:236); in a
/// release build it reads into a zero-length slice, gets `Ok(0)` from
/// `MemStream` and takes it for the end of the stream.
#[test]
fn finding_ws_read_after_capacity_error_does_not_panic() {
    let link = Link::new(Vec::new(), 1024, 8);
    let frame = harness::ws_session::client_frame(true, 0x2, &vec![0u8; 10_000]);
    let _ = link.feed(frame[..4096].to_vec(), 4096);
    assert!(matches!(
        link.read_message(),
        Err(tungstenite::Error::Capacity(_))
    ));
    // The rest of the oversized frame, then the client's close reply.
    let mut rest = frame[4096..].to_vec();
    rest.extend(harness::ws_session::client_frame(
        true,
        0x8,
        &1009u16.to_be_bytes(),
    ));
    let _ = link.feed(rest, 4096);
    let next = catch_unwind(AssertUnwindSafe(|| link.read_message().map(|_| ())));
    assert!(next.is_ok(), "read_message panicked after a capacity error");
}

/// The fuzzer's reproducer of the same finding, through the ws_session
/// harness reading on after the capacity error as the connection does.
#[test]
fn finding_ws_session_capacity_then_read() {
    harness::ws_session::READ_AFTER_CAPACITY_ERROR.with(|read_on| read_on.set(true));
    let data = regression("ws_session-capacity-then-read");
    let outcome = catch_unwind(|| harness::run_target("ws_session", &data));
    harness::ws_session::READ_AFTER_CAPACITY_ERROR.with(|read_on| read_on.set(false));
    assert!(outcome.is_ok(), "the session harness panicked");
}

/// A sniffed-audio reproducer (harness layout: selector byte 1, then the
/// body) is refused without any allocation out of proportion to its size.
fn assert_refused_in_proportion(name: &str) {
    use transcription_service::audio::decode::{decode, AudioFormat};
    let data = regression(name);
    assert_eq!(data[0], 1, "{name} is not a sniffed-audio input");
    let body = &data[1..];
    let (result, largest) = largest_request(|| decode(AudioFormat::Sniff, body));
    assert!(result.is_err(), "{name}: {result:?}");
    assert!(
        largest <= 64 << 20,
        "{name}: decoding a {}-byte body asked for {largest} bytes at once",
        body.len()
    );
}

/// Finding audio_decode-flac-comment-alloc: a 20-byte FLAC body (a
/// VORBIS_COMMENT block whose one comment claims a length of 3.3 GB) makes
/// `audio::decode` ask the allocator for 3.3 GB: symphonia-metadata 0.5.5
/// (`vorbis.rs:175`, `vec![0; comment_length]`) sizes the buffer from the
/// untrusted u32 before reading, reached from `decode_symphonia_run`
/// (src/audio/decode.rs, the `get_probe().format(..)` call). Where the
/// allocation fails (RLIMIT_AS, strict overcommit, a smaller machine) the
/// process aborts: `catch_unwind` does not catch an allocation failure.
/// Correct: a clear error, and no allocation out of proportion to the body.
#[test]
fn finding_audio_decode_flac_comment_alloc() {
    assert_refused_in_proportion("audio_decode-flac-comment-alloc");
}

/// The same class through a FLAC PICTURE block (media type length 4 GB,
/// symphonia-metadata 0.5.5 `flac.rs:53`); the description and picture data
/// lengths (`flac.rs:66`, `flac.rs:95`) are read the same way.
#[test]
fn finding_audio_decode_flac_picture_alloc() {
    assert_refused_in_proportion("audio_decode-flac-picture-alloc");
}

/// Finding audio_decode-ogg-vorbis-comment-alloc (the residual risk
/// SECURITY.md named): the Ogg Vorbis seed with its comment header's one
/// comment claiming 4 GB (the page CRC fixed). symphonia-metadata 0.5.5
/// (`vorbis.rs:175`, `vec![0; comment_length]`) sizes the buffer from that
/// field before reading it: without the fix this asked for 4294967280 bytes. The comment packet is now
/// replaced by an empty one before symphonia sees the stream
/// (src/audio/ogg.rs), so the file decodes exactly like the seed, with no
/// allocation out of proportion to the body.
#[test]
fn finding_audio_decode_ogg_vorbis_comment_alloc() {
    use transcription_service::audio::decode::{decode, AudioFormat};
    let data = regression("audio_decode-ogg-vorbis-comment-alloc");
    assert_eq!(data[0], 1, "a sniffed-audio input");
    let body = &data[1..];
    let (result, largest) = largest_request(|| decode(AudioFormat::Sniff, body));
    assert!(
        largest <= 64 << 20,
        "decoding a {}-byte Ogg body asked for {largest} bytes at once",
        body.len()
    );
    let seed = std::fs::read(fuzz_dir().join("seeds/audio_decode/ogg_vorbis")).expect("seed");
    let expected = decode(AudioFormat::Sniff, &seed[1..]).expect("the seed decodes");
    assert_eq!(result.expect("the crafted file decodes"), expected);
}

/// Informational finding audio_decode-riff-channel-mask-shift: a
/// WAVE_FORMAT_EXTENSIBLE header that hound refuses goes to symphonia, whose
/// `fix_channel_mask` (symphonia-format-riff 0.5.5, `common.rs:55`) shifts
/// by a count taken from the header; with overflow checks (debug and test
/// builds, the fuzz build) that panics. `decode_symphonia` runs symphonia
/// under `catch_unwind` for exactly this: the answer is an error, and the
/// panic must not escape `decode`.
#[test]
fn finding_audio_decode_riff_channel_mask_shift_is_caught() {
    use transcription_service::audio::decode::{decode, AudioFormat};
    let data = regression("audio_decode-riff-channel-mask-shift");
    // The harness layout: selector 0 = WAV.
    assert_eq!(data[0], 0);
    let outcome = catch_unwind(|| decode(AudioFormat::Wav, &data[1..]));
    let result = outcome.expect("a panic escaped audio::decode");
    assert!(result.is_err(), "{result:?}");
}

/// Finding audio_decode-resampled-to-nothing: one PCM16 sample at 192 kHz
/// (the reproducer: selector 2 = raw, rate pick 0x50 = 192000, body
/// `87 04`) decodes to `Ok` with no samples. `decode_finish`
/// (src/audio/decode.rs) refuses empty audio before resampling, but
/// `resample_i16` returns round(len × 16000 / rate) samples, which is 0 for
/// fewer than rate / 32000 samples (1 sample at 44.1 kHz, 5 at 192 kHz), so
/// the documented "Ok means samples" does not hold. Correct: the
/// `Invalid("the audio contains no samples")` error (or a non-empty result).
#[test]
fn finding_audio_decode_resampled_to_nothing() {
    use transcription_service::audio::decode::{decode, AudioFormat};
    use transcription_service::audio::AudioError;
    let data = regression("audio_decode-resampled-to-nothing");
    assert_eq!((data[0] % 4, data[1]), (2, 0x50));
    let check =
        |what: &str, result: Result<transcription_service::audio::Pcm, AudioError>| match result {
            Ok(pcm) => assert!(
                !pcm.samples.is_empty(),
                "{what}: Ok with no samples: {pcm:?}"
            ),
            Err(error) => assert!(matches!(error, AudioError::Invalid(_)), "{what}: {error:?}"),
        };
    check(
        "raw 192 kHz",
        decode(
            AudioFormat::RawPcm16 {
                sample_rate: 192_000,
            },
            &data[2..],
        ),
    );
    // The same through a WAV: one frame at 44.1 kHz.
    let mut cursor = std::io::Cursor::new(Vec::new());
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 44_100,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::new(&mut cursor, spec).expect("writer");
    writer.write_sample(1000i16).expect("sample");
    writer.finalize().expect("finalize");
    check("WAV 44.1 kHz", decode(AudioFormat::Wav, cursor.get_ref()));
    // And through the harness, which never accepts Ok audio with no samples.
    let outcome = catch_unwind(|| harness::run_target("audio_decode", &data));
    assert!(
        outcome.is_ok(),
        "the audio_decode harness refused the result"
    );
}

/// Finding audio_decode-mp3-sync-then-flac-alloc (against the first fix of
/// the FLAC finding, which drops the metadata blocks only when the body
/// starts with `fLaC`): a body starting with an MP3 frame sync (`FF EB`) is
/// sniffed as MP3, passes `without_tags` unchanged, and symphonia's probe
/// (`get_probe().format`, src/audio/decode.rs) scans on, finds `fLaC` two
/// bytes in and reads that FLAC's PICTURE block, sizing a buffer from its
/// untrusted length. Correct: an error, and no allocation out of proportion
/// to the body (e.g. open the reader of the sniffed format directly instead
/// of probing).
#[test]
fn finding_audio_decode_mp3_sync_then_flac_alloc() {
    assert_refused_in_proportion("audio_decode-mp3-sync-then-flac-alloc");
}
