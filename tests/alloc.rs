//! The streaming hot path does not allocate per audio frame.
//!
//! A counting global allocator wraps the system one. Masked WebSocket frames
//! of 20 ms of speech go through the tungstenite adapter ([`Link`]) into a
//! [`Session`] (VAD, segmenter, interim scheduling) exactly as the connection
//! driver feeds them; after a warm-up, the allocations per frame must stay
//! far below one. Interim jobs (a copy of the segment so far, every
//! `interim_interval_ms`) and their transcripts do allocate, once per
//! interval, not per frame.

use std::time::Instant;

use transcription_service::model::mock::mock_transcript;
use transcription_service::ws::protocol::StreamParams;
use transcription_service::ws::session::{Session, SessionConfig};
use transcription_service::ws::transport::Link;

#[path = "counting_alloc/mod.rs"]
mod counting_alloc;
use counting_alloc::allocations;

/// A masked client binary frame.
fn client_frame(payload: &[u8]) -> Vec<u8> {
    let mask = [9u8, 8, 7, 6];
    let mut frame = vec![0x82, 0x80 | 126];
    frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

#[test]
fn audio_frames_do_not_allocate_each() {
    let wav = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/two_utterances.wav"
    ))
    .expect("fixture");
    let pcm = &wav[44..];
    // Loop the fixture: ~20 s of speech and pauses in 20 ms frames.
    let frames: Vec<Vec<u8>> = pcm
        .chunks_exact(640)
        .cycle()
        .take(1000)
        .map(client_frame)
        .collect();
    let link = Link::new(Vec::new(), 1 << 20, 256);
    let config = SessionConfig {
        vad_hangover_ms: 500,
        max_segment_ms: 15_000,
        interim_interval_ms: 500,
        finals_waiting_max: 8,
        finals_in_flight_max: 4,
    };
    let mut session = Session::new("alloc".into(), StreamParams::new(2), config, Instant::now());
    let mut read_buffer = Vec::with_capacity(4096);
    let counted = || allocations();
    // (allocations on the frame path, allocations for jobs and their
    // results, jobs); the engine's own allocations are not counted.
    let run = |frames: &[Vec<u8>], session: &mut Session, read_buffer: &mut Vec<u8>| {
        let (mut frame_path, mut job_path, mut jobs) = (0, 0, 0);
        for frame in frames {
            let start = counted();
            read_buffer.clear();
            read_buffer.extend_from_slice(frame);
            *read_buffer = link.feed(std::mem::take(read_buffer), 4096);
            while let Ok(message) = link.read_message() {
                session.on_audio(&message.into_data(), Instant::now());
            }
            frame_path += counted() - start;
            let start = counted();
            let mut engine = 0;
            while let Some(job) = session.next_job() {
                jobs += 1;
                let engine_start = counted();
                let transcript = mock_transcript(&job.samples, 16_000);
                engine += counted() - engine_start;
                session.on_result(
                    job.kind,
                    job.segment_id,
                    job.start_sample,
                    job.end_sample,
                    Ok(transcript),
                    Instant::now(),
                );
            }
            for output in session.take_outputs() {
                if let transcription_service::ws::session::Output::Message(message) = output {
                    let _ = link.push_text(message.to_json(), message.is_sheddable());
                }
            }
            let mut wire = Vec::new();
            link.encode_into(&mut wire);
            job_path += counted() - start - engine;
        }
        (frame_path, job_path, jobs)
    };
    // Warm-up: buffers reach their working size.
    run(&frames[..250], &mut session, &mut read_buffer);
    let (frame_path, job_path, jobs) = run(&frames[250..], &mut session, &mut read_buffer);
    let measured = frames.len() - 250;
    eprintln!("frame path: {frame_path} allocations for {measured} frames; jobs: {job_path} allocations for {jobs} jobs");
    assert!(jobs > 0, "the speech produced model jobs");
    // Frames allocate only at segment events (a speech_start message) and
    // when a buffer grows: a few percent of frames, not every one.
    assert!(
        frame_path * 20 < measured,
        "{frame_path} allocations for {measured} frames"
    );
    // A job costs a bounded handful: the sample copy, the result message,
    // its JSON, the wire bytes.
    assert!(
        job_path <= jobs * 12,
        "{job_path} allocations for {jobs} jobs"
    );
}
