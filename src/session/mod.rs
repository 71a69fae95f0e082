//! The streaming session core: a sans-I/O state machine, pure and
//! synchronous, that knows no wire format.
//!
//! A [`Session`] takes audio bytes ([`Session::on_audio`]), controls
//! ([`Session::on_control`]: end, finalize, keepalive, new parameters) and
//! model results ([`Session::on_result`]), and emits protocol-neutral
//! [`SessionEvent`]s (start, speech start and end, interim, final with
//! words, error, end, close) for its connection to encode in whatever
//! protocol it speaks, plus [`JobRequest`]s for the model pool, taken one at
//! a time with [`Session::next_job`]. The connection does the I/O and the
//! encoding (`ws::native` for the native JSON protocol); everything that
//! decides *what* happens lives here, where tests reach it without a socket.
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
//!
//! Files: `lifecycle.rs` (states, end reasons, bounds), `params.rs`,
//! `event.rs` (the boundary), `driver.rs` (jobs and figures), `results.rs`
//! (model work), this file (audio, controls, the end).

mod driver;
mod event;
mod lifecycle;
mod params;
mod results;
mod resume;

pub use driver::{JobRequest, SessionFigures, Tally};
pub use event::{Control, EventWord, FinalEnd, SessionEvent};
pub use lifecycle::{EndReason, SessionConfig, SessionState};
pub use params::StreamParams;
pub use resume::ResumeGap;

use std::collections::{BTreeMap, VecDeque};
use std::time::{Instant, SystemTime};

use crate::audio::{SegmentEvent, SegmenterConfig, VadSegmenter};
use crate::error::WsErrorKind;
use crate::model::pool::JobKind;

#[derive(Debug, Clone, Copy)]
struct OpenSegment {
    id: u64,
    start_sample: u64,
    /// The stream sample the last interim covered up to.
    interim_end_sample: u64,
}

/// A segment that ended, and the utterance-end watch on the silence after it
/// (`utterance_end_ms`).
#[derive(Debug, Clone, Copy)]
struct UtteranceWatch {
    segment_id: u64,
    end_sample: u64,
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
    finals_ready: BTreeMap<u64, SessionEvent>,
    /// When each segment's audio was complete (for the final's latency) and
    /// how it ended, until its final is sent.
    segment_closed_at: BTreeMap<u64, (Instant, FinalEnd)>,
    /// The last segment that ended, while the silence after it is watched.
    utterance: Option<UtteranceWatch>,
    /// Utterance ends reached whose segment's final is not out yet:
    /// `(segment_id, end_s)`, in order (at most one per segment in flight).
    utterance_ends: VecDeque<(u64, f64)>,
    /// The segment whose final is sent next.
    next_final: u64,
    /// Segments opened so far (the next segment id).
    segments_opened: u64,
    overload_warned: bool,
    ending: Option<EndReason>,
    /// The end under way delivers every final first (an orderly end, or an
    /// operator's flushing DELETE).
    flushing: bool,
    ended: Option<EndReason>,
    figures: SessionFigures,
    /// Events for the protocol to send, in order.
    pending: VecDeque<SessionEvent>,
    tally: Tally,
    pub created_at: SystemTime,
    created_instant: Instant,
    last_activity: Instant,
    /// Stream samples taken so far: the offset a resumed client's audio
    /// continues from (`resume.rs`).
    samples_received: u64,
    /// Samples of the client's audio still to skip: the overlap a resumed
    /// client sends again (`resume.rs`).
    skip_samples: u64,
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
            utterance: None,
            utterance_ends: VecDeque::new(),
            next_final: 0,
            segments_opened: 0,
            overload_warned: false,
            ending: None,
            flushing: false,
            ended: None,
            figures: SessionFigures::default(),
            pending: VecDeque::new(),
            tally: Tally::default(),
            created_at: SystemTime::now(),
            created_instant: now,
            last_activity: now,
            samples_received: 0,
            skip_samples: 0,
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

    /// The first event of every session.
    pub fn start_event(&self) -> SessionEvent {
        SessionEvent::Started {
            session_id: self.id.clone(),
            sample_rate: self.params.sample_rate,
            vad_mode: self.params.vad_mode,
            interim_results: self.params.interim_results,
        }
    }

    /// Events to send, in order.
    pub fn take_events(&mut self) -> impl Iterator<Item = SessionEvent> + '_ {
        self.pending.drain(..)
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

    /// Whether a waiting final could go now (the session is under its bound
    /// of finals in flight): one at the bound goes when a result comes back,
    /// with no retry needed.
    pub fn has_finals_ready(&self) -> bool {
        self.has_finals_waiting() && self.finals_in_flight < self.config.finals_in_flight_max
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
        let skipped = self.take_skipped(samples.len());
        samples.drain(..skipped);
        self.samples_received += samples.len() as u64;
        self.push_samples(&samples, now);
        self.scratch = samples;
    }

    /// Audio already as 16-bit samples at the session's rate (a codec that
    /// converts its input, as OpenAI Realtime's resampler): counted as
    /// PCM16 bytes, as [`Session::on_audio`] counts them.
    pub fn on_samples(&mut self, samples: &[i16], now: Instant) {
        self.last_activity = now;
        if matches!(self.state, SessionState::Closing | SessionState::Closed) {
            return;
        }
        if self.state == SessionState::Created {
            self.state = SessionState::Active;
        }
        let bytes = 2 * samples.len() as u64;
        self.figures.audio_bytes += bytes;
        self.figures.chunks += 1;
        self.tally.audio_bytes += bytes;
        self.tally.chunks += 1;
        self.push_samples(samples, now);
    }

    fn push_samples(&mut self, samples: &[i16], now: Instant) {
        if samples.is_empty() {
            return;
        }
        let rate = self.params.sample_rate;
        let hangover_ms = self
            .params
            .vad_hangover_ms
            .unwrap_or(self.config.vad_hangover_ms);
        let config = SegmenterConfig::new(rate, hangover_ms, self.config.max_segment_ms);
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
        let samples_seen = vad.samples_seen();
        let endpoint = FinalEnd {
            endpoint: true,
            answers_finalize: false,
        };
        self.on_segment_events(&mut events, now, endpoint);
        self.events = events;
        self.watch_utterance_end(samples_seen);
        self.trim_audio();
    }

    /// The utterance ends once the silence after the last segment has lasted
    /// `utterance_end_ms`; it is reported right after that segment's final.
    fn watch_utterance_end(&mut self, samples_seen: u64) {
        let (Some(gap_ms), Some(watch)) = (self.params.utterance_end_ms, self.utterance) else {
            return;
        };
        let gap_samples = u64::from(gap_ms) * u64::from(self.params.sample_rate) / 1000;
        if self.open.is_none() && samples_seen.saturating_sub(watch.end_sample) >= gap_samples {
            self.utterance = None;
            let end_s = watch.end_sample as f64 / f64::from(self.params.sample_rate);
            self.utterance_ends.push_back((watch.segment_id, end_s));
            self.flush_utterance_ends();
        }
    }

    /// Report the utterance ends whose finals are out.
    fn flush_utterance_ends(&mut self) {
        while let Some(&(segment_id, last_speech_end_s)) = self.utterance_ends.front() {
            if segment_id >= self.next_final {
                return;
            }
            self.utterance_ends.pop_front();
            self.pending
                .push_back(SessionEvent::UtteranceEnd { last_speech_end_s });
        }
    }

    fn on_segment_events(&mut self, events: &mut Vec<SegmentEvent>, now: Instant, end: FinalEnd) {
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
                    // Speech resumed before the utterance's end was reported.
                    self.utterance = None;
                    self.pending.push_back(SessionEvent::SpeechStarted {
                        segment_id,
                        start_s: start_sample as f64 / rate,
                    });
                }
                SegmentEvent::SegmentEnd {
                    segment_id,
                    start_sample,
                    end_sample,
                } => {
                    debug_assert_eq!(self.open.map(|open| open.id), Some(segment_id));
                    self.open = None;
                    self.pending.push_back(SessionEvent::SpeechEnded {
                        segment_id,
                        end_s: end_sample as f64 / rate,
                    });
                    let samples = self.buffered(start_sample, end_sample).to_vec();
                    self.segment_closed_at.insert(segment_id, (now, end));
                    self.utterance = Some(UtteranceWatch {
                        segment_id,
                        end_sample,
                    });
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

    /// A control from the client (its protocol decoded it).
    pub fn on_control(&mut self, control: Control, now: Instant) {
        self.last_activity = now;
        if self.state == SessionState::Closed {
            return;
        }
        match control {
            Control::Invalid(message) => self.send_error(WsErrorKind::InvalidMessage, message),
            Control::Keepalive => {}
            Control::End => self.end(EndReason::ClientEnd, now),
            Control::Finalize => self.finalize(now),
            Control::Configure(params) => {
                if self.state != SessionState::Created {
                    self.send_error(
                        WsErrorKind::InvalidMessage,
                        "config is only accepted before the first audio".to_string(),
                    );
                    return;
                }
                match params {
                    Ok(params) => self.params = params,
                    Err(message) => self.fail(WsErrorKind::UnsupportedFormat, message),
                }
            }
        }
    }

    /// New language and prompt hints for the model jobs from now on, for
    /// protocols that may change them in the middle of a stream (OpenAI
    /// Realtime's `session.update`).
    pub fn set_hints(&mut self, language: Option<String>, prompt: Option<std::sync::Arc<str>>) {
        self.params.language = language;
        self.params.prompt = prompt;
    }

    /// End the current segment now; the session goes on. The last final due
    /// (the cut segment's, or one still in the model's hands) says it
    /// answers the finalize; with none due, [`SessionEvent::Finalized`] does.
    fn finalize(&mut self, now: Instant) {
        let forced = FinalEnd {
            endpoint: false,
            answers_finalize: true,
        };
        let mut at_s = 0.0;
        if let Some(vad) = &mut self.vad {
            at_s = vad.samples_seen() as f64 / f64::from(self.params.sample_rate);
            let mut events = std::mem::take(&mut self.events);
            vad.cut(&mut events);
            self.on_segment_events(&mut events, now, forced);
            self.events = events;
        }
        let last_due = self
            .segments_opened
            .checked_sub(1)
            .filter(|&id| id >= self.next_final);
        match last_due.and_then(|id| self.segment_closed_at.get_mut(&id)) {
            Some((_, end)) => end.answers_finalize = true,
            None => self.pending.push_back(SessionEvent::Finalized { at_s }),
        }
    }

    /// Send an error message; the session goes on.
    pub fn send_error(&mut self, kind: WsErrorKind, message: String) {
        debug_assert!(kind.close_code().is_none());
        self.pending.push_back(SessionEvent::Error {
            kind,
            message,
            retry_after_s: None,
        });
    }

    /// Send an error that ends the session, then close with its code.
    pub fn fail(&mut self, kind: WsErrorKind, message: String) {
        if self.state == SessionState::Closed {
            return;
        }
        let close_code = kind.close_code().unwrap_or(1011);
        self.pending.push_back(SessionEvent::Error {
            kind,
            message,
            retry_after_s: None,
        });
        self.pending.push_back(SessionEvent::Close(close_code));
        self.close(EndReason::Error);
    }

    /// End the session for `reason`. An orderly end (client `end`, server
    /// shutdown) first finishes the segment in progress and delivers every
    /// final; the others stop at once.
    pub fn end(&mut self, reason: EndReason, now: Instant) {
        self.end_as(reason, reason.flushes(), now);
    }

    /// End with `reason` after every final, whatever the reason: audio
    /// stops being taken, the segment in progress is cut, and the finals
    /// queued or computing are delivered before `session_end` (an operator's
    /// `DELETE ?flush=true`, with `terminated`).
    pub fn end_after_finals(&mut self, reason: EndReason, now: Instant) {
        self.end_as(reason, true, now);
    }

    fn end_as(&mut self, reason: EndReason, flush: bool, now: Instant) {
        if self.ending.is_some() || self.state == SessionState::Closed {
            return;
        }
        if reason == EndReason::ClientDisconnect {
            // Nobody to tell: just stop.
            self.close(reason);
            return;
        }
        self.ending = Some(reason);
        self.flushing = flush;
        self.state = SessionState::Closing;
        if flush {
            if let Some(vad) = &mut self.vad {
                let mut events = std::mem::take(&mut self.events);
                vad.finish(&mut events);
                self.on_segment_events(&mut events, now, FinalEnd::default());
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
        if self.flushing && !self.finals_complete() {
            return;
        }
        self.pending.push_back(SessionEvent::Ended {
            session_id: self.id.clone(),
            reason,
            figures: self.figures,
        });
        self.pending
            .push_back(SessionEvent::Close(reason.close_code()));
        self.close(reason);
    }

    fn close(&mut self, reason: EndReason) {
        self.state = SessionState::Closed;
        self.ended = Some(reason);
        self.ending = Some(reason);
        self.open = None;
        self.finals_waiting.clear();
        self.utterance = None;
        self.utterance_ends.clear();
        self.audio = Vec::new();
        self.vad = None;
    }
}

#[cfg(test)]
mod tests;
