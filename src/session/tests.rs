//! The session core driven with no socket and no protocol: audio bytes and
//! controls in, model results fed back by hand, protocol-neutral events out.

use std::time::Instant;

use super::*;
use crate::model::mock::mock_transcript;

fn fixture_pcm(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).expect("fixture");
    // A canonical 44-byte WAV header precedes the samples.
    bytes[44..].to_vec()
}

fn session() -> Session {
    let config = SessionConfig {
        vad_hangover_ms: 500,
        max_segment_ms: 15_000,
        interim_interval_ms: 300,
        finals_waiting_max: 4,
        finals_in_flight_max: usize::MAX,
    };
    let mut params = StreamParams::new(2);
    params.interim_results = false;
    Session::new("core-only".into(), params, config, Instant::now())
}

/// Feed the audio, end the session, and run every job the session asks for
/// through the mock engine, in order.
fn run_to_the_end(session: &mut Session, pcm: &[u8]) -> Vec<SessionEvent> {
    let mut events = vec![session.start_event()];
    let mut jobs = Vec::new();
    for frame in pcm.chunks(640) {
        session.on_audio(frame, Instant::now());
        while let Some(job) = session.next_job() {
            jobs.push(job);
        }
    }
    session.on_control(Control::End, Instant::now());
    while let Some(job) = session.next_job() {
        jobs.push(job);
    }
    for job in jobs {
        let result = Ok(mock_transcript(&job.samples, 16_000));
        let (kind, segment_id) = (job.kind, job.segment_id);
        let (start, end) = (job.start_sample, job.end_sample);
        session.on_result(kind, segment_id, start, end, result, Instant::now());
    }
    events.extend(session.take_events());
    events
}

#[test]
fn two_utterances_give_speech_events_and_ordered_finals_with_words() {
    let mut session = session();
    let events = run_to_the_end(&mut session, &fixture_pcm("two_utterances.wav"));
    assert!(matches!(
        events.first(),
        Some(SessionEvent::Started { session_id, sample_rate: 16_000, .. }) if session_id == "core-only"
    ));
    let speech: Vec<(u64, bool)> = events
        .iter()
        .filter_map(|event| match event {
            SessionEvent::SpeechStarted { segment_id, .. } => Some((*segment_id, true)),
            SessionEvent::SpeechEnded { segment_id, .. } => Some((*segment_id, false)),
            _ => None,
        })
        .collect();
    assert_eq!(speech, [(0, true), (0, false), (1, true), (1, false)]);
    let finals: Vec<(u64, f64, f64, usize)> = events
        .iter()
        .filter_map(|event| match event {
            SessionEvent::Final {
                segment_id,
                start_s,
                end_s,
                words,
                ..
            } => Some((*segment_id, *start_s, *end_s, words.len())),
            _ => None,
        })
        .collect();
    assert_eq!(finals.iter().map(|f| f.0).collect::<Vec<_>>(), [0, 1]);
    for (segment_id, start_s, end_s, words) in &finals {
        assert!(start_s < end_s, "segment {segment_id}: {start_s}..{end_s}");
        assert!(*words > 0, "segment {segment_id} has words");
    }
    assert!(
        finals[0].2 <= finals[1].1,
        "the segments do not overlap: {finals:?}"
    );
    let tail = &events[events.len() - 2..];
    assert!(
        matches!(
            tail,
            [
                SessionEvent::Ended {
                    reason: EndReason::ClientEnd,
                    ..
                },
                SessionEvent::Close(1000)
            ]
        ),
        "{tail:?}"
    );
    assert_eq!(session.state(), SessionState::Closed);
}

#[test]
fn controls_are_protocol_neutral() {
    let mut session = session();
    let now = Instant::now();
    let mut changed = session.params().clone();
    changed.sample_rate = 8_000;
    session.on_control(Control::Configure(Ok(changed)), now);
    assert_eq!(session.params().sample_rate, 8_000);
    session.on_control(Control::Invalid("what is this".into()), now);
    session.on_control(Control::Keepalive, now);
    let events: Vec<SessionEvent> = session.take_events().collect();
    assert!(
        matches!(
            events.as_slice(),
            [SessionEvent::Error { kind: crate::error::WsErrorKind::InvalidMessage, message, .. }] if message == "what is this"
        ),
        "{events:?}"
    );
    session.on_control(Control::Configure(Err("no such rate".into())), now);
    let events: Vec<SessionEvent> = session.take_events().collect();
    assert!(
        matches!(
            events.as_slice(),
            [
                SessionEvent::Error {
                    kind: crate::error::WsErrorKind::UnsupportedFormat,
                    ..
                },
                SessionEvent::Close(_)
            ]
        ),
        "{events:?}"
    );
    assert_eq!(session.state(), SessionState::Closed);
}

#[test]
fn finalize_marks_its_final_or_says_there_was_nothing_and_utterance_ends_follow_finals() {
    let mut session = session();
    let mut params = session.params().clone();
    params.utterance_end_ms = Some(1000);
    params.vad_hangover_ms = Some(300);
    session.on_control(Control::Configure(Ok(params)), Instant::now());
    let pcm = fixture_pcm("two_utterances.wav");
    // The first utterance and 1.4 s of the silence after it (3 s in all).
    let (first, second) = pcm.split_at(16_000 * 2 * 3);
    let mut jobs = Vec::new();
    for frame in first.chunks(640) {
        session.on_audio(frame, Instant::now());
        while let Some(job) = session.next_job() {
            jobs.push(job);
        }
    }
    // Nothing open, nothing due: the finalize is answered at once... but
    // segment 0's final is still with the model, so it answers it.
    session.on_control(Control::Finalize, Instant::now());
    // The second utterance, cut by a finalize in its middle.
    for frame in second[..second.len() / 2].chunks(640) {
        session.on_audio(frame, Instant::now());
        while let Some(job) = session.next_job() {
            jobs.push(job);
        }
    }
    session.on_control(Control::Finalize, Instant::now());
    while let Some(job) = session.next_job() {
        jobs.push(job);
    }
    for job in jobs.into_iter().filter(|job| job.kind == JobKind::Final) {
        let result = Ok(mock_transcript(&job.samples, 16_000));
        let (start, end) = (job.start_sample, job.end_sample);
        session.on_result(job.kind, job.segment_id, start, end, result, Instant::now());
    }
    // Everything is out now: a third finalize has nothing to answer with.
    session.on_control(Control::Finalize, Instant::now());
    let events: Vec<SessionEvent> = session.take_events().collect();
    let said: Vec<String> = events
        .iter()
        .filter_map(|event| match event {
            SessionEvent::Final {
                segment_id, end, ..
            } => Some(format!(
                "final {segment_id} endpoint={} finalize={}",
                end.endpoint, end.answers_finalize
            )),
            SessionEvent::UtteranceEnd { .. } => Some("utterance end".into()),
            SessionEvent::Finalized { .. } => Some("finalized".into()),
            _ => None,
        })
        .collect();
    assert_eq!(
        said,
        [
            "final 0 endpoint=true finalize=true",
            "utterance end",
            "final 1 endpoint=false finalize=true",
            "finalized"
        ]
    );
}

#[test]
fn a_session_holds_no_more_finals_in_flight_than_its_bound() {
    let mut session = session();
    session.config.finals_in_flight_max = 1;
    let pcm = fixture_pcm("two_utterances.wav");
    let mut jobs = Vec::new();
    for frame in pcm.chunks(640) {
        session.on_audio(frame, Instant::now());
        while let Some(job) = session.next_job() {
            jobs.push(job);
        }
    }
    session.on_control(Control::End, Instant::now());
    while let Some(job) = session.next_job() {
        jobs.push(job);
    }
    // Two segments, but only one final may be with the engine: the second
    // waits in the session, and no retry is due while the bound holds.
    assert_eq!(
        jobs.len(),
        1,
        "{:?}",
        jobs.iter().map(|j| j.segment_id).collect::<Vec<_>>()
    );
    assert_eq!(jobs[0].segment_id, 0);
    assert!(session.has_finals_waiting());
    assert!(!session.has_finals_ready());
    // Its result comes back: the waiting final goes, then the session ends
    // with both finals in order.
    let first = jobs.remove(0);
    let result = Ok(mock_transcript(&first.samples, 16_000));
    session.on_result(
        first.kind,
        0,
        first.start_sample,
        first.end_sample,
        result,
        Instant::now(),
    );
    assert!(session.has_finals_ready());
    let second = session.next_job().expect("the waiting final");
    assert_eq!(second.segment_id, 1);
    assert!(session.next_job().is_none());
    let result = Ok(mock_transcript(&second.samples, 16_000));
    session.on_result(
        second.kind,
        1,
        second.start_sample,
        second.end_sample,
        result,
        Instant::now(),
    );
    let finals: Vec<u64> = session
        .take_events()
        .filter_map(|event| match event {
            SessionEvent::Final { segment_id, .. } => Some(segment_id),
            _ => None,
        })
        .collect();
    assert_eq!(finals, [0, 1]);
    assert_eq!(session.state(), SessionState::Closed);
}
