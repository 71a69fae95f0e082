//! Fuzz harnesses of transcription-service, one public function per cargo-fuzz
//! target (`fuzz_targets/<name>.rs` only calls it).
//!
//! The same file is compiled into the root crate's `tests/regression.rs` with
//! `#[path]`, so the seeds and every minimised reproducer are replayed on the
//! stable toolchain through exactly the code the fuzzer ran. It therefore
//! depends on nothing but `transcription_service`, `tungstenite` (a dependency
//! of the root crate) and `std`.
//!
//! Inputs start with a few control bytes (limits, split points, modes) read by
//! [`Input`]; a missing byte reads as zero, so every input is valid.

#![allow(clippy::too_many_lines)]

use std::collections::BTreeSet;
use std::time::Instant;

use transcription_service::audio::decode::{decode, AudioFormat};
use transcription_service::audio::resample::resampled_len;
use transcription_service::audio::{
    segment_all, Pcm, SegmentEvent, Segmenter, SegmenterConfig, VadSegmenter, VAD_RATES_HZ,
};
use transcription_service::error::WsErrorKind;
use transcription_service::http::body::{BodyError, ChunkedDecoder};
use transcription_service::http::head::{parse_head, BodyFraming, HeadError, RequestHead};
use transcription_service::http::multipart;
use transcription_service::model::is_language_tag;
use transcription_service::model::mock::mock_transcript;
use transcription_service::model::pool::JobKind;
use transcription_service::model::EngineError;
use transcription_service::ws::protocol::{ClientMessage, ServerMessage, StreamParams};
use transcription_service::ws::session::{
    EndReason, JobRequest, Output, Session, SessionConfig, SessionState,
};
use transcription_service::ws::transport::Link;

/// Control bytes at the front of an input; reads past the end give zeros.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&byte, rest)) => {
                self.data = rest;
                byte
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (taken, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        taken
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn rest(self) -> &'a [u8] {
        self.data
    }
}

// ---------------------------------------------------------------------------
// http_head_body
// ---------------------------------------------------------------------------

/// Head limits of the settings' range (1 KiB to 1 MiB) and body limits.
const HEAD_BYTES_MAX: [usize; 3] = [1024, 4096, 16 * 1024];
const BODY_BYTES_MAX: [usize; 3] = [1024, 4096, 64 * 1024];

/// `[head limit][body limit][split u16][stream...]`: the stream is parsed as a
/// request head, decoded as a chunked body, and run through a model of the
/// connection's read loop (pipelined requests), whole and split at one point.
pub fn http_head_body(data: &[u8]) {
    let mut input = Input::new(data);
    let head_bytes_max = HEAD_BYTES_MAX[usize::from(input.u8()) % HEAD_BYTES_MAX.len()];
    let body_bytes_max = BODY_BYTES_MAX[usize::from(input.u8()) % BODY_BYTES_MAX.len()];
    let split = usize::from(input.u16());
    let stream = input.rest();
    let split = split % (stream.len() + 1);

    check_head(stream, head_bytes_max);
    check_chunked(stream, split, body_bytes_max);

    let whole = connection(&[stream], head_bytes_max, body_bytes_max);
    let pieces = connection(
        &[&stream[..split], &stream[split..]],
        head_bytes_max,
        body_bytes_max,
    );
    assert_eq!(
        whole, pieces,
        "the same bytes split at {split} give other requests"
    );
}

fn check_head(stream: &[u8], head_bytes_max: usize) {
    match parse_head(stream, head_bytes_max) {
        Ok(Some((head, len))) => {
            assert!(len > 0 && len <= stream.len() && len <= head_bytes_max);
            check_head_fields(&head);
            // Exactly the head parses the same.
            let (again, again_len) = parse_head(&stream[..len], head_bytes_max)
                .expect("the head alone is valid")
                .expect("the head alone is complete");
            assert_eq!(again_len, len);
            assert_eq!(format!("{again:?}"), format!("{head:?}"));
            // A strict prefix of a valid head is "need more", never an error:
            // the connection re-parses the buffer each time bytes arrive.
            for cut in [0, len / 2, len - 1] {
                let prefix = parse_head(&stream[..cut], head_bytes_max);
                assert!(
                    matches!(prefix, Ok(None)),
                    "prefix of {cut} bytes of a valid {len}-byte head gives {prefix:?}"
                );
            }
        }
        Ok(None) => assert!(stream.len() <= head_bytes_max),
        Err(HeadError::Malformed(why)) => assert!(!why.is_empty()),
        Err(HeadError::TooLarge | HeadError::TooManyHeaders) => {}
    }
}

fn check_head_fields(head: &RequestHead) {
    assert!(head.path.starts_with('/'));
    assert!(!head.path.contains('?'));
    assert!(head.minor_version <= 1);
    for (name, value) in &head.headers {
        assert_eq!(*name, name.to_ascii_lowercase());
        assert_eq!(value.trim(), value);
    }
    assert_eq!(
        head.has_body(),
        !matches!(head.framing, BodyFraming::None | BodyFraming::Length(0))
    );
    match head.framing {
        BodyFraming::Chunked => {
            assert!(head.minor_version >= 1);
            assert!(head.header("content-length").is_none());
        }
        BodyFraming::Length(length) => {
            assert!(head.header("transfer-encoding").is_none());
            let declared = head
                .header("content-length")
                .expect("framing from the header");
            assert_eq!(declared.parse::<u64>().ok(), Some(length));
        }
        BodyFraming::None => {
            assert!(head.header("content-length").is_none());
            assert!(head.header("transfer-encoding").is_none());
        }
    }
}

/// Decoded body, input consumed, done; the way the connection feeds it.
pub fn decode_chunked(
    pieces: &[&[u8]],
    body_bytes_max: usize,
) -> Result<(Vec<u8>, usize, bool), BodyError> {
    let mut decoder = ChunkedDecoder::default();
    let mut body = Vec::new();
    let mut pending = Vec::new();
    let mut consumed_total = 0;
    for piece in pieces {
        pending.extend_from_slice(piece);
        let consumed = decoder.decode(&pending, &mut body, body_bytes_max)?;
        assert!(consumed <= pending.len());
        assert!(body.len() <= body_bytes_max, "body grew past its limit");
        pending.drain(..consumed);
        consumed_total += consumed;
        if decoder.is_done() {
            break;
        }
    }
    Ok((body, consumed_total, decoder.is_done()))
}

fn check_chunked(stream: &[u8], split: usize, body_bytes_max: usize) {
    let whole = decode_chunked(&[stream], body_bytes_max);
    let pieces = decode_chunked(&[&stream[..split], &stream[split..]], body_bytes_max);
    assert_eq!(
        whole, pieces,
        "chunked body split at {split} decodes otherwise"
    );
    if let Ok((body, consumed, true)) = &whole {
        // Done: the decoder stops right after the body, and one byte at a time
        // (bounded, it is quadratic in the worst case) agrees.
        assert!(*consumed <= stream.len());
        if *consumed <= 512 {
            let bytes: Vec<&[u8]> = stream[..*consumed].chunks(1).collect();
            let single = decode_chunked(&bytes, body_bytes_max);
            assert_eq!(single, Ok((body.clone(), *consumed, true)));
        }
    }
}

/// What the model of the connection loop saw.
#[derive(Debug, PartialEq, Eq)]
pub enum ConnEvent {
    Request {
        head: String,
        body: Vec<u8>,
    },
    /// The connection answered an error and closed.
    Error,
    /// `Connection: close` (or HTTP/1.0 without keep-alive): no further request.
    Close,
    /// Waiting for more bytes at the end of the input.
    NeedMore,
}

enum ConnState {
    Head,
    Length {
        head: RequestHead,
        length: usize,
    },
    Chunked {
        head: RequestHead,
        decoder: ChunkedDecoder,
        body: Vec<u8>,
    },
}

/// `http::conn`'s read loop (head, then Content-Length or chunked body, then
/// the next pipelined request), over bytes that arrive as `pieces`.
pub fn connection(
    pieces: &[&[u8]],
    head_bytes_max: usize,
    body_bytes_max: usize,
) -> Vec<ConnEvent> {
    let mut events = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut state = ConnState::Head;
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match state {
                ConnState::Head => match parse_head(&buf, head_bytes_max) {
                    Ok(Some((head, head_len))) => {
                        buf.drain(..head_len);
                        state = match head.framing {
                            BodyFraming::None | BodyFraming::Length(0) => {
                                finish_request(&mut events, head, Vec::new());
                                if matches!(events.last(), Some(ConnEvent::Close)) {
                                    return events;
                                }
                                ConnState::Head
                            }
                            BodyFraming::Length(length) if length > body_bytes_max as u64 => {
                                events.push(ConnEvent::Error);
                                return events;
                            }
                            BodyFraming::Length(length) => ConnState::Length {
                                head,
                                length: length as usize,
                            },
                            BodyFraming::Chunked => ConnState::Chunked {
                                head,
                                decoder: ChunkedDecoder::default(),
                                body: Vec::new(),
                            },
                        };
                    }
                    Ok(None) => break,
                    Err(_) => {
                        events.push(ConnEvent::Error);
                        return events;
                    }
                },
                ConnState::Length { head, length } => {
                    if buf.len() < length {
                        state = ConnState::Length { head, length };
                        break;
                    }
                    let rest = buf.split_off(length);
                    let body = std::mem::replace(&mut buf, rest);
                    finish_request(&mut events, head, body);
                    if matches!(events.last(), Some(ConnEvent::Close)) {
                        return events;
                    }
                    state = ConnState::Head;
                }
                ConnState::Chunked {
                    head,
                    mut decoder,
                    mut body,
                } => match decoder.decode(&buf, &mut body, body_bytes_max) {
                    Ok(consumed) => {
                        buf.drain(..consumed);
                        if decoder.is_done() {
                            finish_request(&mut events, head, body);
                            if matches!(events.last(), Some(ConnEvent::Close)) {
                                return events;
                            }
                            state = ConnState::Head;
                        } else {
                            state = ConnState::Chunked {
                                head,
                                decoder,
                                body,
                            };
                            break;
                        }
                    }
                    Err(_) => {
                        events.push(ConnEvent::Error);
                        return events;
                    }
                },
            }
        }
    }
    events.push(ConnEvent::NeedMore);
    events
}

fn finish_request(events: &mut Vec<ConnEvent>, head: RequestHead, body: Vec<u8>) {
    check_head_fields(&head);
    if let BodyFraming::Length(length) = head.framing {
        assert_eq!(body.len() as u64, length);
    }
    let keep_alive = head.keep_alive;
    events.push(ConnEvent::Request {
        head: format!("{head:?}"),
        body,
    });
    if !keep_alive {
        events.push(ConnEvent::Close);
    }
}

// ---------------------------------------------------------------------------
// ws_session
// ---------------------------------------------------------------------------

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

/// Synthetic audio, `count` blocks of 10 ms at `rate`, so a short input can
/// carry seconds of "speech" (a buzz with formant-like partials and a syllable
/// rhythm, which the VAD takes for voice), silence or noise. `kind % 4`:
/// 0 silence, 1 and 2 buzz, 3 white noise.
pub fn synth_audio(kind: u8, count: usize, rate: u32, seed: u32) -> Vec<i16> {
    const TABLE: usize = 1024;
    let samples = count * rate as usize / 100;
    match kind % 4 {
        0 => vec![0; samples],
        1 | 2 => {
            // One period of the buzz, then a phase accumulator over it.
            let f0 = 110.0 + f64::from(seed % 64);
            let weights: Vec<f64> = (1..=12)
                .map(|harmonic| {
                    let h = f64::from(harmonic) * f0;
                    (-((h - 700.0) / 400.0).powi(2)).exp()
                        + 0.6 * (-((h - 1200.0) / 500.0).powi(2)).exp()
                        + 0.1
                })
                .collect();
            let table: Vec<f64> = (0..TABLE)
                .map(|index| {
                    let phase = 2.0 * std::f64::consts::PI * index as f64 / TABLE as f64;
                    weights
                        .iter()
                        .enumerate()
                        .map(|(k, w)| w * ((k + 1) as f64 * phase).sin())
                        .sum()
                })
                .collect();
            let step = f0 / f64::from(rate);
            let syllable = 4.0 / f64::from(rate);
            (0..samples)
                .map(|n| {
                    let phase = (n as f64 * step).fract();
                    let value = table[(phase * TABLE as f64) as usize % TABLE];
                    // A 4 Hz syllable envelope from a cheap triangle.
                    let s = (n as f64 * syllable).fract();
                    let envelope = 0.2 + 0.8 * (1.0 - (2.0 * s - 1.0).abs());
                    (value * envelope * 3000.0).clamp(-32768.0, 32767.0) as i16
                })
                .collect()
        }
        _ => {
            let mut state = seed | 1;
            (0..samples)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    (state >> 16) as i16 / 4
                })
                .collect()
        }
    }
}

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
            Output::Message(ServerMessage::Error { code, message }) => {
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

// ---------------------------------------------------------------------------
// audio_decode
// ---------------------------------------------------------------------------

/// Raw PCM16 rates: the VAD rates, common others, the limits and beyond.
const RAW_RATES: [u32; 12] = [
    8_000, 16_000, 32_000, 48_000, 11_025, 22_050, 44_100, 96_000, 192_000, 7_999, 192_001, 0,
];

/// `[selector][...]`: selector % 4 = 0 WAV, 1 sniffed, 2 raw PCM16 (the next
/// byte picks the rate, 255 = the next four bytes), 3 a multipart form whose
/// first line is the Content-Type; every `file` part is decoded sniffed.
pub fn audio_decode(data: &[u8]) {
    let mut input = Input::new(data);
    let selector = input.u8();
    match selector % 4 {
        0 => {
            let body = input.rest();
            check_pcm(decode(AudioFormat::Wav, body), body);
        }
        1 => {
            let body = input.rest();
            let sniffed = decode(AudioFormat::Sniff, body);
            if body.len() >= 12 && &body[..4] == b"RIFF" && &body[8..12] == b"WAVE" {
                assert_eq!(sniffed, decode(AudioFormat::Wav, body));
            }
            check_pcm(sniffed, body);
        }
        2 => {
            let pick = input.u8();
            let sample_rate = if pick == 255 {
                input.u32()
            } else {
                RAW_RATES[usize::from(pick) % RAW_RATES.len()]
            };
            let body = input.rest();
            let result = decode(AudioFormat::RawPcm16 { sample_rate }, body);
            let rate_ok = (8_000..=192_000).contains(&sample_rate);
            // Valid audio that resamples to no sample at all is empty audio.
            let valid = !body.is_empty()
                && body.len() % 2 == 0
                && rate_ok
                && (VAD_RATES_HZ.contains(&sample_rate)
                    || resampled_len(body.len() / 2, sample_rate, 16_000) > 0);
            assert_eq!(
                result.is_ok(),
                valid,
                "raw PCM16 at {sample_rate} Hz: {result:?}"
            );
            if let Ok(pcm) = &result {
                let samples = body.len() / 2;
                if VAD_RATES_HZ.contains(&sample_rate) {
                    assert_eq!(pcm.sample_rate, sample_rate);
                    let expected: Vec<i16> = body
                        .chunks_exact(2)
                        .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
                        .collect();
                    assert_eq!(pcm.samples, expected);
                } else {
                    assert_eq!(pcm.sample_rate, 16_000);
                    assert_eq!(
                        pcm.samples.len(),
                        resampled_len(samples, sample_rate, 16_000)
                    );
                }
            }
            check_pcm(result, body);
        }
        _ => {
            let form = input.rest();
            let (content_type, body) = match form.windows(2).position(|pair| pair == b"\r\n") {
                Some(at) => (&form[..at], &form[at + 2..]),
                None => (form, &[][..]),
            };
            let content_type = String::from_utf8_lossy(content_type);
            let Some(boundary) = multipart::boundary(&content_type) else {
                return;
            };
            assert!(!boundary.is_empty() && boundary.len() <= 70);
            let Ok(parts) = multipart::parse(body, boundary) else {
                return;
            };
            assert!(parts.len() <= multipart::PARTS_MAX);
            let range = body.as_ptr_range();
            for part in &parts {
                let data = part.data.as_ptr_range();
                assert!(
                    range.start <= data.start && data.end <= range.end,
                    "part data outside the body"
                );
                if part.name == "file" {
                    check_pcm(decode(AudioFormat::Sniff, part.data), part.data);
                }
            }
        }
    }
}

fn check_pcm(result: Result<Pcm, transcription_service::audio::AudioError>, body: &[u8]) {
    match result {
        Ok(pcm) => {
            assert!(
                VAD_RATES_HZ.contains(&pcm.sample_rate),
                "rate {}",
                pcm.sample_rate
            );
            // Finding audio_decode-resampled-to-nothing (fixed): audio is
            // never Ok with no samples.
            assert!(!pcm.samples.is_empty(), "Ok with no samples");
            assert!(pcm.duration_s() <= 3_600.5, "{} s", pcm.duration_s());
            assert!(!body.is_empty());
        }
        Err(error) => assert!(!error.message().is_empty()),
    }
}

// ---------------------------------------------------------------------------
// control_json
// ---------------------------------------------------------------------------

/// `[selector][text...]`: selector % 3 = 0 a client message (then `config`
/// applied), 1 a query string, 2 a query line then a message; also given to
/// a fresh session's `on_text`. The default VAD mode is selector / 3 % 4.
pub fn control_json(data: &[u8]) {
    let mut input = Input::new(data);
    let selector = input.u8();
    let text = String::from_utf8_lossy(input.rest());
    let mut params = StreamParams::new(selector / 3 % 4);
    let (query, message) = match selector % 3 {
        0 => (None, Some(text.as_ref())),
        1 => (Some(text.as_ref()), None),
        _ => match text.split_once('\n') {
            Some((query, message)) => (Some(query), Some(message)),
            None => (Some(text.as_ref()), None),
        },
    };
    if let Some(query) = query {
        match params.apply_query(Some(query)) {
            Ok(()) => check_params(&params),
            Err(message) => {
                assert!(!message.is_empty());
                return;
            }
        }
    }
    let Some(message) = message else { return };
    let parsed = ClientMessage::parse(message);
    if let Ok(ClientMessage::Config(config)) = &parsed {
        let mut applied = params.clone();
        match applied.apply_config(config) {
            Ok(()) => check_params(&applied),
            Err(error) => assert!(!error.is_empty()),
        }
    }
    // The same text through a session that has seen no audio.
    let config = SessionConfig {
        vad_hangover_ms: 500,
        max_segment_ms: 15_000,
        interim_interval_ms: 300,
        finals_waiting_max: 8,
    };
    let mut session = Session::new("fuzz".into(), params, config, Instant::now());
    session.on_text(message, Instant::now());
    let outputs: Vec<Output> = session.take_outputs().collect();
    match parsed {
        Err(_) => assert!(matches!(
            outputs.as_slice(),
            [Output::Message(ServerMessage::Error {
                code: "invalid_message",
                ..
            })]
        )),
        Ok(ClientMessage::Keepalive | ClientMessage::Finalize) => assert!(outputs.is_empty()),
        Ok(ClientMessage::End) => {
            assert!(matches!(
                outputs.as_slice(),
                [
                    Output::Message(ServerMessage::SessionEnd { .. }),
                    Output::Close(1000)
                ]
            ));
            assert_eq!(session.state(), SessionState::Closed);
        }
        Ok(ClientMessage::Config(_)) => {
            if outputs.is_empty() {
                check_params(session.params());
                // The stream can start with these parameters.
                session.on_audio(&[0; 64], Instant::now());
            } else {
                assert_eq!(session.state(), SessionState::Closed);
            }
        }
    }
}

fn check_params(params: &StreamParams) {
    assert!(VAD_RATES_HZ.contains(&params.sample_rate));
    assert!(params.vad_mode <= 3);
    if let Some(language) = &params.language {
        assert!(is_language_tag(language), "{language:?}");
    }
    assert!(SegmenterConfig::new(params.sample_rate, 500, 15_000).is_valid());
}

// ---------------------------------------------------------------------------
// vad_segmenter
// ---------------------------------------------------------------------------

/// `[mode][rate][frame][start u16][hangover u16][max u16][pre-roll u16][vad][cuts x3 u16][...]`.
/// Mode % 3: 0 = the rest is PCM16 samples; 1 = the rest is runs of synthetic
/// audio (kind, 10 ms blocks, seed); 2 = the rest is frame decisions for the
/// pure `Segmenter` (a bit each; byte 0xFF is a cut). Samples are pushed in
/// pieces split at the cuts, with `cut()` at the second, and again in other
/// pieces: the events must agree and be well-formed.
pub fn vad_segmenter(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.u8() % 3;
    let config = SegmenterConfig {
        sample_rate: VAD_RATES_HZ[usize::from(input.u8()) % VAD_RATES_HZ.len()],
        frame_ms: [10, 20, 30][usize::from(input.u8()) % 3],
        start_ms: u32::from(input.u16()) % 1_000,
        hangover_ms: u32::from(input.u16()) % 10_001,
        max_segment_ms: u32::from(input.u16()) % 30_001,
        pre_roll_ms: u32::from(input.u16()) % 1_000,
    };
    let vad_mode = input.u8() % 4;
    let cuts = [input.u16(), input.u16(), input.u16()];
    if mode == 2 {
        run_segmenter(config, input.rest());
        return;
    }
    let samples: Vec<i16> = if mode == 0 {
        input
            .rest()
            .chunks_exact(2)
            .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
            .collect()
    } else {
        let mut samples = Vec::new();
        while !input.is_empty() && samples.len() < 3 * config.sample_rate as usize {
            let kind = input.u8();
            let blocks = 1 + usize::from(input.u8());
            let seed = u32::from(input.u8());
            samples.extend(synth_audio(kind, blocks, config.sample_rate, seed));
        }
        samples
    };
    let mut cuts: Vec<usize> = cuts
        .iter()
        .map(|&cut| usize::from(cut) % (samples.len() + 1))
        .collect();
    cuts.sort_unstable();
    let cut_at = cuts[1];

    // As given, cut at the middle point.
    let first = run_vad(config, vad_mode, &samples, &cuts, Some(cut_at));
    // In 10 ms-ish pieces of another size, cut at the same point.
    let step = 1 + (config.sample_rate as usize / 100 + usize::from(cuts[0] as u8)) / 3;
    let mut other_cuts: Vec<usize> = (step..samples.len()).step_by(step).collect();
    other_cuts.push(cut_at);
    other_cuts.sort_unstable();
    let second = run_vad(config, vad_mode, &samples, &other_cuts, Some(cut_at));
    assert_eq!(
        first, second,
        "the same samples in other pieces segment otherwise"
    );
    // Without the cut, as the batch path does it.
    let uncut = run_vad(config, vad_mode, &samples, &cuts, None);
    let pairs: Vec<(u64, u64)> = uncut
        .iter()
        .filter_map(SegmentEvent::finished_range)
        .collect();
    let pcm = Pcm {
        samples,
        sample_rate: config.sample_rate,
    };
    assert_eq!(segment_all(&pcm, config, vad_mode), pairs);
}

fn run_vad(
    config: SegmenterConfig,
    vad_mode: u8,
    samples: &[i16],
    cuts: &[usize],
    cut_at: Option<usize>,
) -> Vec<SegmentEvent> {
    let mut vad = VadSegmenter::new(config, vad_mode);
    let mut events = Vec::new();
    let mut from = 0;
    let mut cut_done = false;
    for &cut in cuts.iter().chain([&samples.len()]) {
        vad.push(&samples[from..cut], &mut events);
        from = cut;
        assert_eq!(vad.samples_seen(), cut as u64);
        if cut_at == Some(cut) && !cut_done {
            cut_done = true;
            vad.cut(&mut events);
        }
        let segmenter = vad.segmenter();
        assert!(segmenter.frames_seen() * config.frame_samples() as u64 <= cut as u64);
        if let Some(start) = segmenter.open_segment_start() {
            assert_eq!(segmenter.earliest_start_sample(), start);
        }
    }
    vad.finish(&mut events);
    let audio_end = vad.segmenter().frames_seen() * config.frame_samples() as u64;
    assert!(audio_end <= samples.len() as u64);
    check_segment_events(&config, &events, audio_end);
    events
}

fn run_segmenter(config: SegmenterConfig, decisions: &[u8]) {
    let mut segmenter = Segmenter::new(config);
    let mut events = Vec::new();
    for &byte in decisions {
        if byte == 0xFF {
            segmenter.cut(&mut events);
            continue;
        }
        for bit in 0..8 {
            let before = events.len();
            let earliest = segmenter.earliest_start_sample();
            segmenter.push_frame(byte >> bit & 1 == 1, &mut events);
            assert!(events.len() - before <= 2);
            // Nothing before the earliest start may be needed later.
            for event in &events[before..] {
                if let SegmentEvent::SpeechStart { start_sample, .. } = event {
                    assert!(
                        *start_sample >= earliest,
                        "a segment starts before the earliest start promised"
                    );
                }
            }
            assert!(
                segmenter.earliest_start_sample() >= earliest,
                "earliest start went backwards"
            );
        }
    }
    segmenter.finish(&mut events);
    let audio_end = segmenter.frames_seen() * config.frame_samples() as u64;
    check_segment_events(&config, &events, audio_end);
}

/// Segments in order, numbered from 0, non-overlapping, non-empty, inside the
/// audio, no longer than the maximum, and all closed: the segmenter's own
/// contract check.
fn check_segment_events(config: &SegmenterConfig, events: &[SegmentEvent], audio_end: u64) {
    if let Err(broken) =
        transcription_service::audio::segmenter::check_events(config, events, audio_end)
    {
        panic!("{broken}");
    }
}

/// Every finding's input keeps this signature: replay it by target name.
pub fn run_target(target: &str, data: &[u8]) {
    match target {
        "http_head_body" => http_head_body(data),
        "ws_session" => ws_session(data),
        "audio_decode" => audio_decode(data),
        "control_json" => control_json(data),
        "vad_segmenter" => vad_segmenter(data),
        other => panic!("no fuzz target {other}"),
    }
}

#[allow(dead_code)]
fn _job_kinds_are_known(kind: JobKind) -> bool {
    matches!(kind, JobKind::Batch | JobKind::Interim | JobKind::Final)
}
