//! Target `ws_session`: a streaming session (the sans-I/O state machine and
//! its WebSocket link) driven by arbitrary client bytes, audio and model
//! results in any order; its log of outputs must keep the protocol's promises.

use std::collections::BTreeSet;
use std::time::Instant;

use transcription_service::error::WsErrorKind;
use transcription_service::model::mock::mock_transcript;
use transcription_service::model::EngineError;
use transcription_service::ws::protocol::{ServerMessage, StreamParams};
use transcription_service::ws::session::{
    EndReason, JobRequest, Output, Session, SessionConfig, SessionState,
};
use transcription_service::ws::transport::Link;

use super::input::Input;
use super::synth::synth_audio;

/// The mask clients put on the frames the harness builds.
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A client frame (masked, as RFC 6455 requires of clients).
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![(u8::from(fin) << 7) | (opcode & 0x0f)];
    match payload.len() {
        len @ 0..=125 => frame.push(0x80 | len as u8),
        len @ 126..=0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&MASK);
    frame.extend(
        payload
            .iter()
            .enumerate()
            .map(|(index, byte)| byte ^ MASK[index % 4]),
    );
    frame
}

/// Text messages a client sends (the structured mode picks among them).
const CLIENT_TEXTS: [&str; 10] = [
    r#"{"type":"config","sample_rate":16000,"encoding":"pcm_s16le","vad_mode":2}"#,
    r#"{"type":"config","sample_rate":"8000","interim_results":false}"#,
    r#"{"type":"config","sample_rate":48000,"vad_mode":"0","language":"en-US"}"#,
    r#"{"type":"config","sample_rate":44100}"#,
    r#"{"type":"finalize"}"#,
    r#"{"type":"keepalive"}"#,
    r#"{"type":"end"}"#,
    r#"{"type":"dance"}"#,
    r#"{"type":"config","colour":"red"}"#,
    "not json",
];

fn pcm_bytes(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// One step of a WebSocket session driven by the harness.
#[derive(Debug)]
enum Step {
    /// Bytes from the socket.
    Bytes(Vec<u8>),
    /// The model answers `count` jobs, the `pick`-th pending first (out of
    /// order), failing them with `fail`.
    Answer { pick: u8, count: u8, fail: bool },
    /// The model queue refuses the next `count` jobs.
    Refuse { count: u8 },
    /// The socket ends.
    Eof,
}

/// `[mode][config x8][...]`. Mode bit 0: 0 = the rest is a raw socket byte
/// stream (fed in up to four pieces, the model answering in between); 1 = the
/// rest is a list of operations (low nibble: kind, high nibble: parameter)
/// that build masked frames (audio, text,
/// control, fragmented) and drive the model. Bit 1 picks how the session ends
/// (client `end` or a disconnect). Checks the session's guarantees.
pub fn ws_session(data: &[u8]) {
    ws_session_log(data);
}

/// [`ws_session`], returning everything the session produced.
pub fn ws_session_log(data: &[u8]) -> Vec<Output> {
    let mut input = Input::new(data);
    let mode = input.u8();
    let default_vad_mode = input.u8() % 4;
    let config = SessionConfig {
        vad_hangover_ms: 30 + u32::from(input.u16()) % 2_000,
        max_segment_ms: 1_000 * (1 + u32::from(input.u8()) % 20),
        interim_interval_ms: 50 + u32::from(input.u8()) * 8,
        finals_waiting_max: 1 + usize::from(input.u8() % 8),
        finals_in_flight_max: 1 + usize::from(input.u8() % 4),
    };
    let message_bytes_max = 1024 + usize::from(input.u8()) * 1024;
    let outbound_max = 8 + usize::from(input.u8() % 32);

    let mut steps = Vec::new();
    if mode & 1 == 0 {
        let cuts = [input.u16(), input.u16(), input.u16()];
        let pick = input.u8();
        let stream = input.rest();
        let mut cuts: Vec<usize> = cuts
            .iter()
            .map(|&cut| usize::from(cut) % (stream.len() + 1))
            .collect();
        cuts.sort_unstable();
        let mut from = 0;
        for (index, cut) in cuts.into_iter().chain([stream.len()]).enumerate() {
            steps.push(Step::Bytes(stream[from..cut].to_vec()));
            from = cut;
            steps.push(Step::Answer {
                pick: pick.wrapping_add(index as u8),
                count: (pick >> 4) + 1,
                fail: pick & 0x0f == 0x0f,
            });
        }
        steps.push(Step::Eof);
    } else {
        let mut pending_bytes = Vec::new();
        let mut rate = 16_000;
        while !input.is_empty() && steps.len() < 512 {
            let op = input.u8();
            match op & 0x0f {
                // Synthetic audio in one binary frame.
                0..=2 => {
                    let kind = op >> 4;
                    let blocks = 1 + usize::from(input.u8() % 64);
                    let seed = u32::from(input.u8());
                    let audio = synth_audio(kind, blocks, rate, seed);
                    let mut bytes = pcm_bytes(&audio);
                    if op & 0x80 != 0 {
                        // An odd byte count: a sample split across frames.
                        bytes.pop();
                    }
                    pending_bytes.extend(client_frame(true, 0x2, &bytes));
                }
                // Binary frame of raw bytes.
                3 => {
                    let len = usize::from(input.u8());
                    pending_bytes.extend(client_frame(true, 0x2, input.take(len)));
                }
                // A known text message.
                4 => {
                    let text = CLIENT_TEXTS[usize::from(op >> 4) % CLIENT_TEXTS.len()];
                    if text.contains("8000") {
                        rate = 8_000;
                    } else if text.contains("48000") {
                        rate = 48_000;
                    }
                    pending_bytes.extend(client_frame(true, 0x1, text.as_bytes()));
                }
                // A text frame of raw bytes (maybe not UTF-8).
                5 => {
                    let len = usize::from(input.u8());
                    pending_bytes.extend(client_frame(true, 0x1, input.take(len)));
                }
                // Control frame: ping, pong, close (maybe with a code).
                6 => {
                    let opcode = [0x9, 0xA, 0x8][usize::from(op >> 4) % 3];
                    let len = usize::from(input.u8() % 8);
                    pending_bytes.extend(client_frame(true, opcode, input.take(len)));
                }
                // A message in two fragments, a control frame between them.
                7 => {
                    let opcode = if op & 0x10 != 0 { 0x1 } else { 0x2 };
                    let len = usize::from(input.u8());
                    let payload = input.take(len);
                    let half = payload.len() / 2;
                    pending_bytes.extend(client_frame(false, opcode, &payload[..half]));
                    if op & 0x20 != 0 {
                        pending_bytes.extend(client_frame(true, 0x9, b"p"));
                    }
                    pending_bytes.extend(client_frame(true, 0x0, &payload[half..]));
                }
                // Hand what was built to the socket, split at one point.
                8 => {
                    let cut = usize::from(input.u16()) % (pending_bytes.len() + 1);
                    let tail = pending_bytes.split_off(cut);
                    steps.push(Step::Bytes(std::mem::take(&mut pending_bytes)));
                    steps.push(Step::Bytes(tail));
                }
                9 => {
                    let pick = input.u8();
                    steps.push(Step::Bytes(std::mem::take(&mut pending_bytes)));
                    steps.push(Step::Answer {
                        pick,
                        count: 1 + (op >> 4),
                        fail: pick & 0x1f == 0x1f,
                    });
                }
                10 => {
                    steps.push(Step::Bytes(std::mem::take(&mut pending_bytes)));
                    steps.push(Step::Refuse { count: op >> 4 });
                }
                // Raw bytes straight into the stream (broken framing).
                _ => {
                    let len = usize::from(input.u8() % 16);
                    pending_bytes.extend_from_slice(input.take(len));
                }
            }
        }
        steps.push(Step::Bytes(pending_bytes));
        if mode & 4 != 0 {
            steps.push(Step::Eof);
        }
    }
    let end_reason = if mode & 2 == 0 {
        EndReason::ClientEnd
    } else {
        EndReason::ClientDisconnect
    };
    run_ws_session(
        &steps,
        default_vad_mode,
        config,
        message_bytes_max,
        outbound_max,
        end_reason,
    )
}

thread_local! {
    /// Whether the ws_session harness goes on reading frames after tungstenite
    /// returned a capacity error, as `ws::conn::finish` does (see the finding
    /// ws_session-capacity-then-read). Off while fuzzing.
    pub static READ_AFTER_CAPACITY_ERROR: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The model pool of the harness: jobs wait here until a step answers them.
struct Harness {
    link: Link,
    session: Session,
    pending: Vec<JobRequest>,
    refuse: u8,
    log: Vec<Output>,
    /// Messages the client sent after which the connection stopped reading.
    reading: bool,
    close_queued: bool,
}

impl Harness {
    /// `ws::conn::on_frames`: every complete message to the session.
    fn on_frames(&mut self) {
        while self.reading {
            let now = Instant::now();
            match self.link.read_message() {
                Ok(tungstenite::Message::Binary(bytes)) => self.session.on_audio(&bytes, now),
                Ok(tungstenite::Message::Text(text)) => self.session.on_text(text.as_str(), now),
                Ok(_) => {}
                Err(tungstenite::Error::Io(error))
                    if error.kind() == std::io::ErrorKind::WouldBlock =>
                {
                    return
                }
                Err(tungstenite::Error::Capacity(error)) => {
                    self.session.fail(
                        WsErrorKind::MessageTooLarge,
                        format!("message too large: {error}"),
                    );
                    // Finding ws_session-capacity-then-read: reading again
                    // after a capacity error trips tungstenite (the
                    // connection's `finish` does). The fuzzer stops reading
                    // here so that it can look for other bugs;
                    // tests/regression.rs sets READ_AFTER_CAPACITY_ERROR.
                    if !READ_AFTER_CAPACITY_ERROR.with(std::cell::Cell::get) {
                        self.reading = false;
                    }
                    return;
                }
                // `on_frames` fails the session with a reason and returns
                // true; the connection then drains frames in `finish`
                // (waiting for the close reply), as the harness does.
                Err(tungstenite::Error::Protocol(error)) => {
                    self.session.fail(
                        WsErrorKind::ProtocolError,
                        format!("WebSocket protocol error: {error}"),
                    );
                    return;
                }
                Err(tungstenite::Error::Utf8(error)) => {
                    self.session.fail(
                        WsErrorKind::InvalidUtf8,
                        format!("a text message is not UTF-8: {error}"),
                    );
                    return;
                }
                Err(_) => {
                    self.reading = false;
                    return;
                }
            }
        }
    }

    /// `ws::conn::pump`: submit jobs, send outputs.
    fn pump(&mut self) {
        while let Some(job) = self.session.next_job() {
            if self.refuse > 0 {
                self.refuse -= 1;
                self.session.job_refused(job);
                break;
            }
            self.pending.push(job);
        }
        let outputs: Vec<Output> = self.session.take_outputs().collect();
        for output in outputs {
            if !self.close_queued {
                match &output {
                    Output::Message(message) => {
                        self.link
                            .push_text(message.to_json(), message.is_sheddable());
                    }
                    Output::Close(code) => {
                        self.link.push_close(*code);
                        self.close_queued = true;
                    }
                }
            }
            self.log.push(output);
        }
        let mut out = Vec::new();
        self.link.encode_into(&mut out);
        let _ = self.session.take_tally();
    }

    fn answer(&mut self, pick: usize, fail: bool) {
        if self.pending.is_empty() {
            return;
        }
        let job = self.pending.remove(pick % self.pending.len());
        let result = if fail {
            Err(EngineError::Failed("harness failure".into()))
        } else {
            Ok(mock_transcript(
                &job.samples,
                self.session.params().sample_rate,
            ))
        };
        assert!(job.start_sample <= job.end_sample);
        self.session.on_result(
            job.kind,
            job.segment_id,
            job.start_sample,
            job.end_sample,
            result,
            Instant::now(),
        );
        self.pump();
    }
}

fn run_ws_session(
    steps: &[Step],
    default_vad_mode: u8,
    config: SessionConfig,
    message_bytes_max: usize,
    outbound_max: usize,
    end_reason: EndReason,
) -> Vec<Output> {
    let mut harness = Harness {
        link: Link::new(Vec::new(), message_bytes_max, outbound_max),
        session: Session::new(
            "fuzz".into(),
            StreamParams::new(default_vad_mode),
            config,
            Instant::now(),
        ),
        pending: Vec::new(),
        refuse: 0,
        log: Vec::new(),
        reading: true,
        close_queued: false,
    };
    let start = harness.session.start_message();
    harness.link.push_text(start.to_json(), false);
    for step in steps {
        match step {
            Step::Bytes(bytes) => {
                if harness.reading {
                    let _spare = harness.link.feed(bytes.clone(), 4096);
                    harness.on_frames();
                    harness.pump();
                }
            }
            Step::Answer { pick, count, fail } => {
                for index in 0..*count {
                    harness.answer(usize::from(pick.wrapping_add(index)), *fail);
                }
            }
            Step::Refuse { count } => harness.refuse = harness.refuse.saturating_add(*count),
            Step::Eof => {
                harness.link.set_eof();
                harness.on_frames();
                harness.pump();
            }
        }
    }
    // The end: the client's `end` (or a disconnect), then the model answers
    // everything, in order, and accepts every job.
    harness.refuse = 0;
    let state_before_end = harness.session.state();
    harness.session.end(end_reason, Instant::now());
    harness.pump();
    let mut rounds = 0;
    while !harness.pending.is_empty() {
        rounds += 1;
        assert!(rounds < 100_000, "jobs never run out");
        harness.answer(0, false);
    }
    harness.pump();
    check_session_log(&harness, end_reason, state_before_end);
    harness.log
}

fn check_session_log(harness: &Harness, end_reason: EndReason, state_before_end: SessionState) {
    let session = &harness.session;
    assert_eq!(
        session.state(),
        SessionState::Closed,
        "after end({end_reason:?}) and every job answered the session is not closed (was {state_before_end:?}); outputs: {:?}",
        harness.log
    );
    let mut speech_starts = 0u64;
    let mut finals = 0u64;
    let mut finalized = BTreeSet::new();
    let mut session_ends = 0;
    let mut closed = false;
    for (index, output) in harness.log.iter().enumerate() {
        assert!(
            !closed,
            "output after the close: {:?}",
            &harness.log[index..]
        );
        match output {
            Output::Close(_) => closed = true,
            Output::Message(ServerMessage::SpeechStart { segment_id, start }) => {
                assert_eq!(*segment_id, speech_starts, "speech_start ids in order");
                assert!(*start >= 0.0);
                speech_starts += 1;
            }
            Output::Message(ServerMessage::Transcript {
                segment_id,
                is_final,
                start,
                end,
                ..
            }) => {
                assert!(start <= end, "transcript ends before it starts");
                assert!(
                    *segment_id < speech_starts,
                    "transcript of an unopened segment"
                );
                assert!(
                    !finalized.contains(segment_id),
                    "transcript of segment {segment_id} after its final"
                );
                if *is_final {
                    assert_eq!(*segment_id, finals, "finals in segment order");
                    finals += 1;
                    finalized.insert(*segment_id);
                }
            }
            Output::Message(ServerMessage::Error { code, message, .. }) => {
                if let Some(id) = message
                    .strip_prefix("segment ")
                    .and_then(|rest| rest.split(' ').next())
                    .and_then(|id| id.parse::<u64>().ok())
                {
                    assert_eq!(*code, "internal");
                    assert_eq!(id, finals, "a failed segment's error in segment order");
                    finals += 1;
                    finalized.insert(id);
                }
            }
            Output::Message(ServerMessage::SessionEnd { reason, .. }) => {
                session_ends += 1;
                assert_eq!(
                    harness
                        .log
                        .get(index + 1)
                        .map(|o| matches!(o, Output::Close(_))),
                    Some(true),
                    "session_end not followed by the close"
                );
                assert_ne!(*reason, "client_disconnect");
            }
            Output::Message(ServerMessage::SessionStart { .. }) => {
                panic!("session_start comes from the driver, not the session")
            }
            Output::Message(ServerMessage::SessionResumed { .. }) => {
                panic!("session_resumed comes from the resuming connection, not the session")
            }
        }
    }
    assert!(session_ends <= 1, "{session_ends} session_end messages");
    assert!(finals <= speech_starts);
    match session.end_reason() {
        Some(EndReason::ClientEnd) => {
            assert_eq!(
                session_ends, 1,
                "client end without exactly one session_end"
            );
            assert_eq!(
                finals, speech_starts,
                "an orderly end left segments without their final"
            );
        }
        Some(EndReason::Error) => assert_eq!(session_ends, 0),
        Some(EndReason::ClientDisconnect) => assert_eq!(session_ends, 0),
        Some(other) => panic!("unexpected end reason {other:?}"),
        None => panic!("closed without an end reason"),
    }
    if end_reason == EndReason::ClientEnd && state_before_end != SessionState::Closed {
        assert!(
            closed,
            "ended by the client and no close queued: {:?}",
            harness.log
        );
    }
}
