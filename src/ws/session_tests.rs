//! Unit tests of the session state machine, driven synchronously: jobs are
//! "run" by the mock transcript function in whatever order a test chooses.

use std::time::Instant;

use super::*;
use crate::model::mock::mock_transcript;
use crate::model::pool::JobKind;
use crate::model::EngineError;
use crate::ws::protocol::ServerMessage;

const WAV_HEADER_BYTES: usize = 44;

fn fixture_pcm(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).expect("fixture");
    assert_eq!(&bytes[36..40], b"data", "canonical WAV header in {path}");
    bytes[WAV_HEADER_BYTES..].to_vec()
}

fn config() -> SessionConfig {
    SessionConfig {
        vad_hangover_ms: 500,
        max_segment_ms: 15_000,
        interim_interval_ms: 300,
        finals_waiting_max: 4,
        finals_in_flight_max: usize::MAX,
    }
}

fn session(interim_results: bool) -> Session {
    let mut params = StreamParams::new(2);
    params.interim_results = interim_results;
    Session::new("test-session".into(), params, config(), Instant::now())
}

fn messages(session: &mut Session) -> Vec<Output> {
    session.take_outputs().collect()
}

/// Feed `pcm` in frames of `frame_bytes`, collecting the jobs the session asks for.
fn feed(session: &mut Session, pcm: &[u8], frame_bytes: usize, jobs: &mut Vec<JobRequest>) {
    for frame in pcm.chunks(frame_bytes) {
        session.on_audio(frame, Instant::now());
        while let Some(job) = session.next_job() {
            jobs.push(job);
        }
    }
}

fn run(session: &mut Session, job: &JobRequest) {
    let transcript = mock_transcript(&job.samples, 16_000);
    session.on_result(
        job.kind,
        job.segment_id,
        job.start_sample,
        job.end_sample,
        Ok(transcript),
        Instant::now(),
    );
}

fn finals(outputs: &[Output]) -> Vec<u64> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Message(ServerMessage::Transcript {
                segment_id,
                is_final: true,
                ..
            }) => Some(*segment_id),
            _ => None,
        })
        .collect()
}

#[test]
fn two_utterances_give_two_finals_in_order_whatever_order_results_come_back() {
    let mut session = session(false);
    let mut jobs = Vec::new();
    feed(
        &mut session,
        &fixture_pcm("two_utterances.wav"),
        640,
        &mut jobs,
    );
    session.on_text(r#"{"type":"end"}"#, Instant::now());
    while let Some(job) = session.next_job() {
        jobs.push(job);
    }
    assert_eq!(
        jobs.iter()
            .map(|job| (job.kind, job.segment_id))
            .collect::<Vec<_>>(),
        vec![(JobKind::Final, 0), (JobKind::Final, 1)]
    );
    // The second result first: nothing final may go out before segment 0's.
    run(&mut session, &jobs[1]);
    let early = messages(&mut session);
    assert!(finals(&early).is_empty(), "{early:?}");
    run(&mut session, &jobs[0]);
    let outputs = messages(&mut session);
    assert_eq!(finals(&outputs), vec![0, 1]);
    // Then the end of the session, and a normal close.
    let tail: Vec<_> = outputs.iter().rev().take(2).collect();
    assert_eq!(tail[0], &Output::Close(1000));
    assert!(matches!(
        tail[1],
        Output::Message(ServerMessage::SessionEnd {
            reason: "client_end",
            ..
        })
    ));
    assert_eq!(session.state(), SessionState::Closed);
    assert_eq!(session.figures().segments, 2);
    assert_eq!(session.figures().transcripts, 2);
}

#[test]
fn speech_start_precedes_its_final_and_words_lie_inside_the_segment() {
    let mut session = session(false);
    let mut jobs = Vec::new();
    feed(&mut session, &fixture_pcm("hello.wav"), 640, &mut jobs);
    session.on_text(r#"{"type":"finalize"}"#, Instant::now());
    while let Some(job) = session.next_job() {
        jobs.push(job);
    }
    assert_eq!(jobs.len(), 1);
    run(&mut session, &jobs[0]);
    let outputs = messages(&mut session);
    let Output::Message(ServerMessage::SpeechStart {
        segment_id: 0,
        start,
    }) = outputs[0]
    else {
        panic!("speech_start first: {outputs:?}");
    };
    let Some(Output::Message(ServerMessage::Transcript {
        start: final_start,
        end,
        words: Some(words),
        ..
    })) = outputs.last()
    else {
        panic!("a final last: {outputs:?}");
    };
    assert_eq!(start, *final_start);
    assert!(!words.is_empty());
    for word in words {
        assert!(*final_start <= word.start && word.end <= *end + 0.001);
    }
    // Finalize does not end the session.
    assert_eq!(session.state(), SessionState::Active);
}

#[test]
fn no_interim_is_sent_after_its_segments_final() {
    let mut session = session(true);
    let mut jobs = Vec::new();
    feed(&mut session, &fixture_pcm("hello.wav"), 640, &mut jobs);
    session.on_text(r#"{"type":"finalize"}"#, Instant::now());
    while let Some(job) = session.next_job() {
        jobs.push(job);
    }
    let interim = jobs
        .iter()
        .find(|job| job.kind == JobKind::Interim)
        .expect("an interim was due")
        .clone();
    // At most one interim in flight: only one was asked for.
    assert_eq!(
        jobs.iter()
            .filter(|job| job.kind == JobKind::Interim)
            .count(),
        1
    );
    let last_final = jobs
        .iter()
        .rfind(|job| job.kind == JobKind::Final)
        .expect("a final")
        .clone();
    run(&mut session, &last_final);
    run(&mut session, &interim);
    let outputs = messages(&mut session);
    let after_final = outputs
        .iter()
        .skip_while(|output| {
            !matches!(
                output,
                Output::Message(ServerMessage::Transcript { is_final: true, .. })
            )
        })
        .any(|output| {
            matches!(
                output,
                Output::Message(ServerMessage::Transcript {
                    is_final: false,
                    ..
                })
            )
        });
    assert!(!after_final, "{outputs:?}");
}

#[test]
fn interims_come_while_speech_goes_on_and_not_when_disabled() {
    for enabled in [true, false] {
        let mut session = session(enabled);
        let mut interims = 0;
        for frame in fixture_pcm("hello.wav").chunks(640) {
            session.on_audio(frame, Instant::now());
            while let Some(job) = session.next_job() {
                if job.kind == JobKind::Interim {
                    interims += 1;
                }
                run(&mut session, &job);
            }
        }
        assert_eq!(interims > 0, enabled, "interim_results={enabled}");
    }
}

#[test]
fn refused_finals_wait_and_apply_backpressure_without_being_lost() {
    let mut session = session(false);
    let pcm = fixture_pcm("two_utterances.wav");
    for frame in pcm.chunks(640) {
        session.on_audio(frame, Instant::now());
        // The pool is full: every job is refused.
        while let Some(job) = session.next_job() {
            let refused_again = job.kind == JobKind::Final;
            session.job_refused(job);
            if refused_again {
                break;
            }
        }
    }
    session.on_text(r#"{"type":"end"}"#, Instant::now());
    let outputs = messages(&mut session);
    let warnings = outputs
        .iter()
        .filter(|o| {
            matches!(
                o,
                Output::Message(ServerMessage::Error {
                    code: "overloaded",
                    ..
                })
            )
        })
        .count();
    assert_eq!(
        warnings, 1,
        "one overloaded warning per episode: {outputs:?}"
    );
    assert!(session.has_finals_waiting());
    // Room again: both finals are still there, in order.
    let mut jobs = Vec::new();
    while let Some(job) = session.next_job() {
        jobs.push(job);
    }
    assert_eq!(
        jobs.iter().map(|job| job.segment_id).collect::<Vec<_>>(),
        vec![0, 1]
    );
    for job in &jobs {
        run(&mut session, job);
    }
    assert_eq!(finals(&messages(&mut session)), vec![0, 1]);
    assert_eq!(session.state(), SessionState::Closed);
}

#[test]
fn backpressure_starts_at_the_bound() {
    let bound = config().finals_waiting_max;
    let mut session = session(false);
    let mut jobs = Vec::new();
    let pcm = fixture_pcm("two_utterances.wav");
    // Four finalized segments (the bound), none accepted by the pool.
    for _ in 0..2 {
        feed(&mut session, &pcm, 640, &mut jobs);
        session.on_text(r#"{"type":"finalize"}"#, Instant::now());
        while let Some(job) = session.next_job() {
            jobs.push(job);
        }
    }
    assert_eq!(jobs.len(), bound, "one final job per segment");
    let ids: Vec<u64> = jobs.iter().map(|job| job.segment_id).collect();
    // Refused last first, so the waiting line keeps segment order. Below the
    // bound the driver keeps reading audio; the refusal that reaches it stops it.
    let mut refused = 0;
    for job in jobs.drain(..).rev() {
        assert!(
            !session.is_backpressured(),
            "backpressure with {refused} refused finals, under the bound of {bound}"
        );
        session.job_refused(job);
        refused += 1;
    }
    assert_eq!(refused, bound);
    assert!(session.is_backpressured());
    // Every refused final waits, none lost, none twice: all come back, in order.
    let mut again = Vec::new();
    while let Some(job) = session.next_job() {
        again.push(job);
    }
    assert_eq!(
        again.iter().map(|job| job.segment_id).collect::<Vec<_>>(),
        ids
    );
    assert!(again.iter().all(|job| job.kind == JobKind::Final));
    assert!(!session.is_backpressured());
}

#[test]
fn odd_length_frames_give_the_same_segments_as_even_ones() {
    let pcm = fixture_pcm("two_utterances.wav");
    let spans = |frame_bytes: usize| {
        let mut session = session(false);
        let mut jobs = Vec::new();
        feed(&mut session, &pcm, frame_bytes, &mut jobs);
        session.on_text(r#"{"type":"end"}"#, Instant::now());
        while let Some(job) = session.next_job() {
            jobs.push(job);
        }
        jobs.iter()
            .map(|job| {
                (
                    job.segment_id,
                    job.start_sample,
                    job.end_sample,
                    job.samples.clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    let even = spans(640);
    assert_eq!(even.len(), 2);
    assert_eq!(spans(333), even);
    assert_eq!(spans(1), even);
}

#[test]
fn bad_messages_and_late_config() {
    let mut session = session(true);
    session.on_text("{not json", Instant::now());
    session.on_text(r#"{"type":"sing"}"#, Instant::now());
    session.on_text(r#"{"type":"keepalive"}"#, Instant::now());
    session.on_text(r#"{"type":"config","vad_mode":1}"#, Instant::now());
    assert_eq!(session.params().vad_mode, 1);
    session.on_audio(&[0, 0, 0, 0], Instant::now());
    session.on_text(r#"{"type":"config","vad_mode":3}"#, Instant::now());
    assert_eq!(
        session.params().vad_mode,
        1,
        "config after audio is refused"
    );
    let codes: Vec<&str> = messages(&mut session)
        .iter()
        .filter_map(|o| match o {
            Output::Message(ServerMessage::Error { code, .. }) => Some(*code),
            _ => None,
        })
        .collect();
    assert_eq!(
        codes,
        vec!["invalid_message", "invalid_message", "invalid_message"]
    );
    assert_eq!(session.state(), SessionState::Active);
}

#[test]
fn a_bad_config_value_closes_with_1003() {
    let mut session = session(true);
    session.on_text(r#"{"type":"config","sample_rate":44100}"#, Instant::now());
    let outputs = messages(&mut session);
    assert!(matches!(
        &outputs[0],
        Output::Message(ServerMessage::Error {
            code: "unsupported_format",
            ..
        })
    ));
    assert_eq!(outputs[1], Output::Close(1003));
    assert_eq!(session.state(), SessionState::Closed);
}

#[test]
fn termination_is_immediate_even_with_a_final_in_flight() {
    let mut session = session(false);
    let mut jobs = Vec::new();
    feed(&mut session, &fixture_pcm("hello.wav"), 640, &mut jobs);
    session.on_text(r#"{"type":"finalize"}"#, Instant::now());
    let job = session.next_job().expect("a final");
    session.end(EndReason::Terminated, Instant::now());
    let outputs = messages(&mut session);
    assert!(matches!(
        outputs.iter().rev().nth(1),
        Some(Output::Message(ServerMessage::SessionEnd {
            reason: "terminated",
            ..
        }))
    ));
    assert_eq!(outputs.last(), Some(&Output::Close(1000)));
    // A late result changes nothing.
    run(&mut session, &job);
    assert!(messages(&mut session).is_empty());
}

#[test]
fn server_shutdown_delivers_the_segment_in_progress_then_closes_1001() {
    let mut session = session(false);
    let pcm = fixture_pcm("hello.wav");
    let mut jobs = Vec::new();
    // Stop in the middle of the speech.
    feed(&mut session, &pcm[..pcm.len() / 2], 640, &mut jobs);
    assert!(jobs.is_empty());
    session.end(EndReason::ServerShutdown, Instant::now());
    assert_eq!(session.state(), SessionState::Closing);
    let job = session.next_job().expect("the open segment's final");
    run(&mut session, &job);
    let outputs = messages(&mut session);
    assert_eq!(finals(&outputs), vec![0]);
    assert!(matches!(
        outputs.iter().rev().nth(1),
        Some(Output::Message(ServerMessage::SessionEnd {
            reason: "server_shutdown",
            ..
        }))
    ));
    assert_eq!(outputs.last(), Some(&Output::Close(1001)));
}

#[test]
fn engine_failures_are_reported_for_their_segment_and_the_session_goes_on() {
    let mut session = session(false);
    let mut jobs = Vec::new();
    feed(&mut session, &fixture_pcm("hello.wav"), 640, &mut jobs);
    session.on_text(r#"{"type":"finalize"}"#, Instant::now());
    let job = session.next_job().expect("a final");
    session.on_result(
        job.kind,
        job.segment_id,
        job.start_sample,
        job.end_sample,
        Err(EngineError::Failed("boom".into())),
        Instant::now(),
    );
    let outputs = messages(&mut session);
    let Some(Output::Message(ServerMessage::Error {
        code: "internal",
        message,
        ..
    })) = outputs.last()
    else {
        panic!("{outputs:?}");
    };
    assert!(message.contains("segment 0"));
    assert_eq!(session.state(), SessionState::Active);
}
