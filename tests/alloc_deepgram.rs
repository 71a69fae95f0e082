//! Deepgram's messages cost one allocation each: the message's own buffer,
//! sized up front (no growth), with nothing built on the way (the words'
//! plain forms are written straight into it).
//!
//! Its own test binary, because the counting allocator sees every thread.

use transcription_service::session::{EventWord, FinalEnd, SessionEvent, StreamParams};
use transcription_service::ws::codec::Frame;
use transcription_service::ws::deepgram::DeepgramLive;

#[path = "counting_alloc/mod.rs"]
mod counting_alloc;
use counting_alloc::allocations;

#[test]
fn each_results_message_is_one_allocation() {
    let codec = DeepgramLive::new_codec("mock", 300);
    let mut params = StreamParams::new(2);
    codec
        .apply_query(
            &mut params,
            Some("encoding=linear16&sample_rate=16000&interim_results=true&vad_events=true"),
        )
        .expect("supported");
    let mut out: Vec<Frame> = Vec::with_capacity(4);
    codec.encode(
        SessionEvent::Started {
            session_id: "0b7e5a4c-0000-4000-8000-000000000000".into(),
            sample_rate: 16_000,
            vad_mode: 2,
            interim_results: true,
        },
        &mut out,
    );
    let text = "The quick brown fox, jumps over the lazy dog. Again and again!";
    let words: Vec<EventWord> = text
        .split(' ')
        .enumerate()
        .map(|(index, word)| EventWord {
            word: format!(" {word}"),
            start_s: index as f64 * 0.3,
            end_s: index as f64 * 0.3 + 0.25,
        })
        .collect();
    let rounds = 200;
    let mut events = Vec::with_capacity(rounds * 3);
    for round in 0..rounds {
        let segment_id = round as u64;
        events.push(SessionEvent::SpeechStarted {
            segment_id,
            start_s: 0.21,
        });
        events.push(SessionEvent::Interim {
            segment_id,
            text: text.to_string(),
            start_s: 0.21,
            end_s: 1.5,
        });
        events.push(SessionEvent::Final {
            segment_id,
            text: text.to_string(),
            start_s: 0.21,
            end_s: 3.5,
            words: words.clone(),
            end: FinalEnd {
                endpoint: true,
                answers_finalize: false,
            },
        });
    }
    let count = events.len();
    let before = allocations();
    for event in events.drain(..) {
        codec.encode(event, &mut out);
        // Dropping the frame here frees it; the count is of allocations only.
        out.clear();
    }
    let allocations = allocations() - before;
    assert!(
        allocations <= count,
        "{allocations} allocations for {count} messages"
    );
}
