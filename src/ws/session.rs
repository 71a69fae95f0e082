//! The streaming session state machine: pure, synchronous, no I/O.
//!
//! A [`Session`] receives what the connection hands it (audio bytes, text
//! messages, model results, operator and lifecycle commands) and produces what
//! the connection must do: [`Output`]s to send in order, and [`JobRequest`]s
//! for the model pool, taken one at a time with [`Session::next_job`]. The
//! connection driver in [`super::conn`] does the I/O; everything that decides
//! *what* happens lives here, where unit tests can reach it.
//!
//! Guarantees kept here:
//! - every segment gets exactly one final (a transcript, or an `internal`
//!   error naming the segment when the engine failed), in `segment_id` order,
//!   even when results come back out of order;
//! - finals are never dropped: one the pool refuses goes back to the front of
//!   the waiting line, and [`Session::is_backpressured`] tells the driver to
//!   stop reading audio while too many wait;
//! - interims are best effort: at most one in flight, skipped when the pool is
//!   full, and never sent after their segment's final.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use crate::audio::{SegmentEvent, SegmenterConfig, VadSegmenter};
use crate::error::WsErrorKind;
use crate::model::pool::JobKind;
use crate::model::{EngineError, Transcript};

use super::protocol::{
    ClientMessage, ServerMessage, SessionFigures, StreamParams, WordOut, ENCODING_PCM_S16LE,
};

/// The lifecycle states of API.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionState {
    /// Connected, no audio yet.
    Created,
    /// Audio has arrived.
    Active,
    /// Ending: waiting for its last finals, or for the close handshake.
    Closing,
    /// Done; the connection is closing or closed.
    Closed,
}

impl SessionState {
    pub fn name(self) -> &'static str {
        match self {
            SessionState::Created => "created",
            SessionState::Active => "active",
            SessionState::Closing => "closing",
            SessionState::Closed => "closed",
        }
    }

    /// Parse a `state` filter.
    pub fn parse(name: &str) -> Option<SessionState> {
        [
            SessionState::Created,
            SessionState::Active,
            SessionState::Closing,
            SessionState::Closed,
        ]
        .into_iter()
        .find(|state| state.name() == name)
    }
}

/// Why a session ended (`session_end.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndReason {
    ClientEnd,
    ClientDisconnect,
    Terminated,
    IdleTimeout,
    MaxDuration,
    ServerShutdown,
    Error,
}

impl EndReason {
    pub fn name(self) -> &'static str {
        match self {
            EndReason::ClientEnd => "client_end",
            EndReason::ClientDisconnect => "client_disconnect",
            EndReason::Terminated => "terminated",
            EndReason::IdleTimeout => "idle_timeout",
            EndReason::MaxDuration => "max_duration",
            EndReason::ServerShutdown => "server_shutdown",
            EndReason::Error => "error",
        }
    }

    /// The WebSocket close code that follows `session_end`.
    pub fn close_code(self) -> u16 {
        match self {
            EndReason::ServerShutdown => 1001,
            EndReason::Error => 1011,
            _ => 1000,
        }
    }

    /// Whether the segment in progress is finished and its final delivered
    /// before `session_end` (an orderly end), or the session stops at once.
    fn flushes(self) -> bool {
        matches!(
            self,
            EndReason::ClientEnd | EndReason::ServerShutdown | EndReason::MaxDuration
        )
    }
}

/// The session's bounds and timing, from the settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SessionConfig {
    pub vad_hangover_ms: u32,
    pub max_segment_ms: u32,
    pub interim_interval_ms: u32,
    /// Finals that may wait for room in the model queue before the session
    /// stops reading audio.
    pub finals_waiting_max: usize,
}

/// Something the connection must send, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Message(ServerMessage),
    /// Send a close frame with this code; the session is over.
    Close(u16),
}

/// Model work the session asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRequest {
    pub kind: JobKind,
    pub segment_id: u64,
    /// Stream samples `[start_sample, end_sample)`.
    pub start_sample: u64,
    pub end_sample: u64,
    pub samples: Vec<i16>,
}

/// What happened since the driver last looked, for the core's metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub audio_bytes: u64,
    pub audio_seconds: f64,
    pub chunks: u64,
    pub segments: u64,
    pub interims_sent: u64,
    pub finals_sent: u64,
    pub interims_shed: u64,
    /// From the end of a segment's audio arriving to its final being queued.
    pub final_latencies: Vec<Duration>,
}

#[derive(Debug, Clone, Copy)]
struct OpenSegment {
    id: u64,
    start_sample: u64,
    /// The stream sample the last interim covered up to.
    interim_end_sample: u64,
}

/// Dropping buffered audio is batched: the dead prefix is cut once it is this
/// many samples long, so trimming costs no memmove per frame.
const TRIM_SAMPLES_MIN: usize = 16_000;

/// One streaming session.
pub struct Session {
    id: String,
    params: StreamParams,
    config: SessionConfig,
    state: SessionState,
    vad: Option<VadSegmenter>,
    /// The odd trailing byte of the previous binary frame.
    odd_byte: Option<u8>,
    scratch: Vec<i16>,
    events: Vec<SegmentEvent>,
    /// Buffered stream samples `[audio_start, audio_start + audio.len())`.
    audio: Vec<i16>,
    audio_start: u64,
    open: Option<OpenSegment>,
    interim_in_flight: bool,
    /// Finals not yet accepted by the model pool, in segment order.
    finals_waiting: VecDeque<JobRequest>,
    finals_in_flight: usize,
    /// Finals ready but waiting for an earlier one, by segment id.
    finals_ready: BTreeMap<u64, ServerMessage>,
    /// When each segment's audio was complete, for the final's latency.
    segment_closed_at: BTreeMap<u64, Instant>,
    /// The segment whose final is sent next.
    next_final: u64,
    /// Segments opened so far (the next segment id).
    segments_opened: u64,
    overload_warned: bool,
    ending: Option<EndReason>,
    ended: Option<EndReason>,
    figures: SessionFigures,
    outputs: VecDeque<Output>,
    tally: Tally,
    pub created_at: SystemTime,
    created_instant: Instant,
    last_activity: Instant,
}

impl Session {
    pub fn new(id: String, params: StreamParams, config: SessionConfig, now: Instant) -> Session {
        Session {
            id,
            params,
            config,
            state: SessionState::Created,
            vad: None,
            odd_byte: None,
            scratch: Vec::new(),
            events: Vec::with_capacity(4),
            audio: Vec::new(),
            audio_start: 0,
            open: None,
            interim_in_flight: false,
            finals_waiting: VecDeque::new(),
            finals_in_flight: 0,
            finals_ready: BTreeMap::new(),
            segment_closed_at: BTreeMap::new(),
            next_final: 0,
            segments_opened: 0,
            overload_warned: false,
            ending: None,
            ended: None,
            figures: SessionFigures::default(),
            outputs: VecDeque::new(),
            tally: Tally::default(),
            created_at: SystemTime::now(),
            created_instant: now,
            last_activity: now,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn state(&self) -> SessionState {
        self.state
    }

    pub fn params(&self) -> &StreamParams {
        &self.params
    }

    pub fn figures(&self) -> SessionFigures {
        self.figures
    }

    /// Why the session ended, once it has.
    pub fn end_reason(&self) -> Option<EndReason> {
        self.ended
    }

    pub fn last_activity(&self) -> Instant {
        self.last_activity
    }

    /// Wall-clock time of the last activity.
    pub fn last_activity_at(&self) -> SystemTime {
        self.created_at
            + self
                .last_activity
                .saturating_duration_since(self.created_instant)
    }

    /// The first message of every session.
    pub fn start_message(&self) -> ServerMessage {
        ServerMessage::SessionStart {
            session_id: self.id.clone(),
            sample_rate: self.params.sample_rate,
            encoding: ENCODING_PCM_S16LE,
            vad_mode: self.params.vad_mode,
            interim_results: self.params.interim_results,
        }
    }

    /// Outputs to send, in order.
    pub fn take_outputs(&mut self) -> impl Iterator<Item = Output> + '_ {
        self.outputs.drain(..)
    }

    /// What happened since the last call.
    pub fn take_tally(&mut self) -> Tally {
        std::mem::take(&mut self.tally)
    }

    /// Whether so many finals wait for the model queue that the driver must
    /// stop reading audio until they are accepted.
    pub fn is_backpressured(&self) -> bool {
        self.finals_waiting.len() >= self.config.finals_waiting_max
    }

    /// Whether finals wait for room in the model queue.
    pub fn has_finals_waiting(&self) -> bool {
        !self.finals_waiting.is_empty()
    }

    /// A binary frame of PCM16 audio.
    pub fn on_audio(&mut self, bytes: &[u8], now: Instant) {
        self.last_activity = now;
        if matches!(self.state, SessionState::Closing | SessionState::Closed) {
            return;
        }
        if self.state == SessionState::Created {
            self.state = SessionState::Active;
        }
        self.figures.audio_bytes += bytes.len() as u64;
        self.figures.chunks += 1;
        self.tally.audio_bytes += bytes.len() as u64;
        self.tally.chunks += 1;

        let mut samples = std::mem::take(&mut self.scratch);
        samples.clear();
        let mut rest = bytes;
        if let Some(low) = self.odd_byte.take() {
            if let Some((&high, tail)) = rest.split_first() {
                samples.push(i16::from_le_bytes([low, high]));
                rest = tail;
            } else {
                self.odd_byte = Some(low);
            }
        }
        let mut pairs = rest.chunks_exact(2);
        samples.extend(
            pairs
                .by_ref()
                .map(|pair| i16::from_le_bytes([pair[0], pair[1]])),
        );
        if let [odd] = pairs.remainder() {
            self.odd_byte = Some(*odd);
        }
        self.push_samples(&samples, now);
        self.scratch = samples;
    }

    fn push_samples(&mut self, samples: &[i16], now: Instant) {
        if samples.is_empty() {
            return;
        }
        let rate = self.params.sample_rate;
        let config = SegmenterConfig::new(
            rate,
            self.config.vad_hangover_ms,
            self.config.max_segment_ms,
        );
        let vad_mode = self.params.vad_mode;
        let vad = self
            .vad
            .get_or_insert_with(|| VadSegmenter::new(config, vad_mode));
        self.audio.extend_from_slice(samples);
        let mut events = std::mem::take(&mut self.events);
        vad.push(samples, &mut events);
        let seconds = vad.samples_seen() as f64 / f64::from(rate);
        self.tally.audio_seconds += seconds - self.figures.audio_seconds;
        self.figures.audio_seconds = seconds;
        self.on_segment_events(&mut events, now);
        self.events = events;
        self.trim_audio();
    }

    fn on_segment_events(&mut self, events: &mut Vec<SegmentEvent>, now: Instant) {
        let rate = f64::from(self.params.sample_rate);
        for event in events.drain(..) {
            match event {
                SegmentEvent::SpeechStart {
                    segment_id,
                    start_sample,
                } => {
                    debug_assert_eq!(segment_id, self.segments_opened);
                    self.segments_opened = segment_id + 1;
                    self.figures.segments += 1;
                    self.tally.segments += 1;
                    self.open = Some(OpenSegment {
                        id: segment_id,
                        start_sample,
                        interim_end_sample: start_sample,
                    });
                    self.outputs
                        .push_back(Output::Message(ServerMessage::SpeechStart {
                            segment_id,
                            start: round_ms(start_sample as f64 / rate),
                        }));
                }
                SegmentEvent::SegmentEnd {
                    segment_id,
                    start_sample,
                    end_sample,
                } => {
                    debug_assert_eq!(self.open.map(|open| open.id), Some(segment_id));
                    self.open = None;
                    let samples = self.buffered(start_sample, end_sample).to_vec();
                    self.segment_closed_at.insert(segment_id, now);
                    self.finals_waiting.push_back(JobRequest {
                        kind: JobKind::Final,
                        segment_id,
                        start_sample,
                        end_sample,
                        samples,
                    });
                }
            }
        }
    }

    /// The buffered samples `[start, end)`, clamped to what is buffered.
    fn buffered(&self, start: u64, end: u64) -> &[i16] {
        let to_index = |sample: u64| {
            usize::try_from(sample.saturating_sub(self.audio_start))
                .unwrap_or(usize::MAX)
                .min(self.audio.len())
        };
        let (start, end) = (to_index(start), to_index(end));
        &self.audio[start.min(end)..end]
    }

    /// Drop buffered audio no current or future segment can need.
    fn trim_audio(&mut self) {
        let Some(vad) = &self.vad else {
            return;
        };
        let keep_from = vad.segmenter().earliest_start_sample();
        let dead =
            usize::try_from(keep_from.saturating_sub(self.audio_start)).unwrap_or(usize::MAX);
        if dead >= TRIM_SAMPLES_MIN {
            let dead = dead.min(self.audio.len());
            self.audio.drain(..dead);
            self.audio_start += dead as u64;
        }
    }

    /// A text frame.
    pub fn on_text(&mut self, text: &str, now: Instant) {
        self.last_activity = now;
        if self.state == SessionState::Closed {
            return;
        }
        match ClientMessage::parse(text) {
            Err(message) => self.send_error(WsErrorKind::InvalidMessage, message),
            Ok(ClientMessage::Keepalive) => {}
            Ok(ClientMessage::End) => self.end(EndReason::ClientEnd, now),
            Ok(ClientMessage::Finalize) => self.finalize(now),
            Ok(ClientMessage::Config(config)) => {
                if self.state != SessionState::Created {
                    self.send_error(
                        WsErrorKind::InvalidMessage,
                        "config is only accepted before the first audio".to_string(),
                    );
                    return;
                }
                if let Err(message) = self.params.apply_config(&config) {
                    self.fail(WsErrorKind::UnsupportedFormat, message);
                }
            }
        }
    }

    /// End the current segment now; the session goes on.
    fn finalize(&mut self, now: Instant) {
        if let Some(vad) = &mut self.vad {
            let mut events = std::mem::take(&mut self.events);
            vad.cut(&mut events);
            self.on_segment_events(&mut events, now);
            self.events = events;
        }
    }

    /// Send an error message; the session goes on.
    pub fn send_error(&mut self, kind: WsErrorKind, message: String) {
        debug_assert!(kind.close_code().is_none());
        self.outputs
            .push_back(Output::Message(ServerMessage::Error {
                code: kind.code(),
                message,
            }));
    }

    /// Send an error that ends the session, then close with its code.
    pub fn fail(&mut self, kind: WsErrorKind, message: String) {
        if self.state == SessionState::Closed {
            return;
        }
        self.outputs
            .push_back(Output::Message(ServerMessage::Error {
                code: kind.code(),
                message,
            }));
        self.outputs
            .push_back(Output::Close(kind.close_code().unwrap_or(1011)));
        self.close(EndReason::Error);
    }

    /// End the session for `reason`. An orderly end (client `end`, server
    /// shutdown) first finishes the segment in progress and delivers every
    /// final; the others stop at once.
    pub fn end(&mut self, reason: EndReason, now: Instant) {
        if self.ending.is_some() || self.state == SessionState::Closed {
            return;
        }
        if reason == EndReason::ClientDisconnect {
            // Nobody to tell: just stop.
            self.close(reason);
            return;
        }
        self.ending = Some(reason);
        self.state = SessionState::Closing;
        if reason.flushes() {
            if let Some(vad) = &mut self.vad {
                let mut events = std::mem::take(&mut self.events);
                vad.finish(&mut events);
                self.on_segment_events(&mut events, now);
                self.events = events;
            }
        } else {
            self.finals_waiting.clear();
            self.finals_ready.clear();
        }
        self.close_if_done();
    }

    /// Whether every segment opened has had its final.
    fn finals_complete(&self) -> bool {
        self.open.is_none()
            && self.finals_waiting.is_empty()
            && self.finals_in_flight == 0
            && self.finals_ready.is_empty()
            && self.next_final == self.segments_opened
    }

    fn close_if_done(&mut self) {
        let Some(reason) = self.ending else {
            return;
        };
        if self.state == SessionState::Closed {
            return;
        }
        if reason.flushes() && !self.finals_complete() {
            return;
        }
        self.outputs
            .push_back(Output::Message(ServerMessage::SessionEnd {
                session_id: self.id.clone(),
                reason: reason.name(),
                metrics: SessionFigures {
                    audio_seconds: round_ms(self.figures.audio_seconds),
                    ..self.figures
                },
            }));
        self.outputs.push_back(Output::Close(reason.close_code()));
        self.close(reason);
    }

    fn close(&mut self, reason: EndReason) {
        self.state = SessionState::Closed;
        self.ended = Some(reason);
        self.ending = Some(reason);
        self.open = None;
        self.finals_waiting.clear();
        self.audio = Vec::new();
        self.vad = None;
    }

    /// The next model job to submit: waiting finals first (in order), then an
    /// interim when one is due. The job counts as in flight until
    /// [`Session::job_refused`] or [`Session::on_result`].
    pub fn next_job(&mut self) -> Option<JobRequest> {
        if self.state == SessionState::Closed {
            return None;
        }
        if let Some(job) = self.finals_waiting.pop_front() {
            self.finals_in_flight += 1;
            return Some(job);
        }
        self.next_interim()
    }

    fn next_interim(&mut self) -> Option<JobRequest> {
        if !self.params.interim_results || self.interim_in_flight || self.ending.is_some() {
            return None;
        }
        let open = self.open?;
        let interval =
            u64::from(self.config.interim_interval_ms) * u64::from(self.params.sample_rate) / 1000;
        let end_sample = self.audio_start + self.audio.len() as u64;
        if end_sample < open.interim_end_sample + interval {
            return None;
        }
        let samples = self.buffered(open.start_sample, end_sample).to_vec();
        self.interim_in_flight = true;
        self.open = Some(OpenSegment {
            interim_end_sample: end_sample,
            ..open
        });
        Some(JobRequest {
            kind: JobKind::Interim,
            segment_id: open.id,
            start_sample: open.start_sample,
            end_sample,
            samples,
        })
    }

    /// The pool refused a job (queue full). A final goes back to the front of
    /// the line; an interim is shed.
    pub fn job_refused(&mut self, job: JobRequest) {
        match job.kind {
            JobKind::Final => {
                self.finals_in_flight -= 1;
                if self.state != SessionState::Closed {
                    self.finals_waiting.push_front(job);
                    if !self.overload_warned {
                        self.overload_warned = true;
                        self.send_error(
                            WsErrorKind::Overloaded,
                            "the model queue is full: finals are delayed, interims skipped"
                                .to_string(),
                        );
                    }
                }
            }
            _ => {
                // Shed: the next interim is due after another interval of speech.
                self.interim_in_flight = false;
                self.tally.interims_shed += 1;
            }
        }
    }

    /// A model result for a job from [`Session::next_job`].
    pub fn on_result(
        &mut self,
        kind: JobKind,
        segment_id: u64,
        start_sample: u64,
        end_sample: u64,
        result: Result<Transcript, EngineError>,
        now: Instant,
    ) {
        match kind {
            JobKind::Final => self.on_final(segment_id, start_sample, end_sample, result, now),
            _ => self.on_interim(segment_id, start_sample, end_sample, result),
        }
    }

    fn on_interim(
        &mut self,
        segment_id: u64,
        start_sample: u64,
        end_sample: u64,
        result: Result<Transcript, EngineError>,
    ) {
        self.interim_in_flight = false;
        if self.state == SessionState::Closed
            || segment_id < self.next_final
            || self.finals_ready.contains_key(&segment_id)
        {
            // Its final is out (or decided): an interim now would go backwards.
            return;
        }
        let Ok(transcript) = result else {
            return;
        };
        if transcript.text.is_empty() {
            return;
        }
        let rate = f64::from(self.params.sample_rate);
        self.figures.transcripts += 1;
        self.tally.interims_sent += 1;
        self.outputs
            .push_back(Output::Message(ServerMessage::Transcript {
                segment_id,
                is_final: false,
                text: transcript.text,
                start: round_ms(start_sample as f64 / rate),
                end: round_ms(end_sample as f64 / rate),
                words: None,
            }));
    }

    fn on_final(
        &mut self,
        segment_id: u64,
        start_sample: u64,
        end_sample: u64,
        result: Result<Transcript, EngineError>,
        now: Instant,
    ) {
        if self.state == SessionState::Closed {
            return;
        }
        self.finals_in_flight -= 1;
        let rate = f64::from(self.params.sample_rate);
        let start = start_sample as f64 / rate;
        let message = match result {
            Ok(transcript) => ServerMessage::Transcript {
                segment_id,
                is_final: true,
                text: transcript.text,
                start: round_ms(start),
                end: round_ms(end_sample as f64 / rate),
                words: Some(
                    transcript
                        .words
                        .into_iter()
                        .map(|word| WordOut {
                            word: word.word,
                            start: round_ms(start + word.start),
                            end: round_ms(start + word.end),
                        })
                        .collect(),
                ),
            },
            Err(error) => ServerMessage::Error {
                code: WsErrorKind::Internal.code(),
                message: format!("segment {segment_id} could not be transcribed: {error}"),
            },
        };
        self.finals_ready.insert(segment_id, message);
        while let Some(message) = self.finals_ready.remove(&self.next_final) {
            if let Some(closed_at) = self.segment_closed_at.remove(&self.next_final) {
                self.tally
                    .final_latencies
                    .push(now.saturating_duration_since(closed_at));
            }
            if message.is_final() {
                self.figures.transcripts += 1;
                self.tally.finals_sent += 1;
            }
            self.outputs.push_back(Output::Message(message));
            self.next_final += 1;
        }
        if self.finals_waiting.is_empty() {
            self.overload_warned = false;
        }
        self.close_if_done();
    }
}

fn round_ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
