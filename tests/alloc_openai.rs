//! OpenAI Realtime's data path does not allocate per `append`: the event is
//! read without a JSON parser, its base64 decoded into a buffer kept for the
//! connection, resampled from 24 kHz into another and handed to the session
//! as samples. After a warm-up (buffers at their working size), frames
//! allocate only at segment events (speech started/stopped, committed: a
//! few percent of frames, a handful of allocations each), never each; and each server event the codec
//! encodes costs a bounded handful (its text, sized once).
//!
//! Its own test binary, because the counting allocator sees every thread.

use std::time::Instant;

use transcription_service::model::mock::mock_transcript;
use transcription_service::ws::codec::Frame;
use transcription_service::ws::openai_realtime::OpenAiRealtime;
use transcription_service::ws::session::{Session, SessionConfig, StreamParams};

#[path = "counting_alloc/mod.rs"]
mod counting_alloc;
use counting_alloc::allocations;

/// The fixture's 16 kHz PCM16 at 24 kHz (linear interpolation), as bytes.
fn at_24k(pcm: &[u8]) -> Vec<u8> {
    let samples: Vec<f64> = pcm
        .chunks_exact(2)
        .map(|pair| f64::from(i16::from_le_bytes([pair[0], pair[1]])))
        .collect();
    let count = samples.len() * 3 / 2;
    let mut out = Vec::with_capacity(count * 2);
    for index in 0..count {
        let position = index as f64 * 2.0 / 3.0;
        let left = (position as usize).min(samples.len() - 1);
        let right = (left + 1).min(samples.len() - 1);
        let fraction = position - left as f64;
        let value = samples[left] * (1.0 - fraction) + samples[right] * fraction;
        out.extend_from_slice(&(value.round() as i16).to_le_bytes());
    }
    out
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let word = u32::from(chunk[0]) << 16
            | u32::from(*chunk.get(1).unwrap_or(&0)) << 8
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for index in 0..4 {
            out.push(if index <= chunk.len() {
                ALPHABET[(word >> (18 - 6 * index) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

#[test]
fn appends_do_not_allocate_each() {
    let wav = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/two_utterances.wav"
    ))
    .expect("fixture");
    let pcm = at_24k(&wav[44..]);
    // ~20 s of speech and pauses in 20 ms appends (960 bytes at 24 kHz),
    // in the two shapes clients send (compact, and Python's with spaces
    // and an event id).
    let frames: Vec<String> = pcm
        .chunks_exact(960)
        .cycle()
        .take(1000)
        .enumerate()
        .map(|(index, chunk)| {
            if index % 2 == 0 {
                format!(
                    r#"{{"type":"input_audio_buffer.append","audio":"{}"}}"#,
                    base64(chunk)
                )
            } else {
                format!(
                    r#"{{"type": "input_audio_buffer.append", "audio": "{}", "event_id": "e{index}"}}"#,
                    base64(chunk)
                )
            }
        })
        .collect();
    let codec = OpenAiRealtime::new_codec("mock", 500);
    let mut params = StreamParams::new(2);
    codec
        .apply_query(&mut params, Some("intent=transcription"))
        .expect("query");
    let config = SessionConfig {
        vad_hangover_ms: 500,
        max_segment_ms: 15_000,
        interim_interval_ms: 500,
        finals_waiting_max: 8,
        finals_in_flight_max: 4,
    };
    let mut session = Session::new("alloc".into(), params, config, Instant::now());
    let mut out: Vec<Frame> = Vec::with_capacity(64);
    codec.encode(session.start_event(), &mut out);
    // (allocations on the frame path, for jobs and their events, jobs,
    // server events); the engine's own allocations are not counted.
    let mut run = |frames: &[String], session: &mut Session| {
        let (mut frame_path, mut job_path, mut jobs, mut events) = (0, 0, 0, 0);
        let (mut frames_allocating, mut frame_most) = (0, 0);
        for frame in frames {
            let start = allocations();
            codec.on_text(frame, session, Instant::now());
            let spent = allocations() - start;
            frame_path += spent;
            frames_allocating += usize::from(spent > 0);
            frame_most = frame_most.max(spent);
            let start = allocations();
            let mut engine = 0;
            while let Some(job) = session.next_job() {
                jobs += 1;
                let engine_start = allocations();
                let transcript = mock_transcript(&job.samples, 16_000);
                engine += allocations() - engine_start;
                session.on_result(
                    job.kind,
                    job.segment_id,
                    job.start_sample,
                    job.end_sample,
                    Ok(transcript),
                    Instant::now(),
                );
            }
            codec.take_frames(&mut out);
            while let Some(event) = session.take_events().next() {
                codec.encode(event, &mut out);
            }
            events += out.len();
            out.clear();
            job_path += allocations() - start - engine;
        }
        (
            frame_path,
            frames_allocating,
            frame_most,
            job_path,
            jobs,
            events,
        )
    };
    run(&frames[..250], &mut session);
    let (frame_path, frames_allocating, frame_most, job_path, jobs, events) =
        run(&frames[250..], &mut session);
    let measured = frames.len() - 250;
    eprintln!(
        "frame path: {frame_path} allocations in {frames_allocating} of {measured} appends \
         (at most {frame_most} in one); jobs: {job_path} allocations for {jobs} jobs and {events} events"
    );
    assert!(jobs > 0, "the speech produced model jobs");
    // Most appends allocate nothing; those that start or end a segment
    // allocate for its events (ids, texts): a bounded handful each.
    assert!(
        frames_allocating * 20 < measured,
        "{frames_allocating} of {measured} appends allocated"
    );
    assert!(frame_most <= 16, "{frame_most} allocations in one append");
    assert!(
        job_path <= jobs * 12,
        "{job_path} allocations for {jobs} jobs"
    );
}
