//! [`SessionCore`]: the socket-independent logic of one streaming session,
//! shared by both drivers: the chunk schedule and send times, the checks on
//! every server message, lags, and the session's final classification.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::options::StreamOptions;
use super::stats::{min_opt, StreamStats};
use crate::dialect::{Dialect, Reader};
use crate::scenarios::soak::deletes::ClientOutcome;
use crate::stats::record_us;
use crate::streaming::{ChunkMap, OrderChecker, ServerMsg, MAX_EXAMPLES};
use crate::ws::WsFailure;

/// Error codes that are warnings: the session goes on and is not counted as
/// failed (`overloaded`: the model queue is full, finals are delayed and
/// interims skipped). They are still counted in `errors`.
const NON_FATAL_ERRORS: &[&str] = &["overloaded"];

/// What a session sends next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outgoing {
    /// Chunk `k`: these bytes of the PCM data, holding `samples` samples.
    Chunk {
        k: u64,
        bytes: std::ops::Range<usize>,
        samples: u64,
    },
    /// `{"type":"end"}` (sending is over).
    End,
}

/// The socket-independent state of one session, shared by both drivers:
/// the chunk schedule, send times, message checks, lags, and the final
/// classification.
pub(crate) struct SessionCore<'a> {
    pub(crate) opts: &'a StreamOptions,
    pub(crate) map: ChunkMap,
    st: Tally,
    checker: OrderChecker,
    /// Send time of every chunk sent, by chunk index.
    sent: Vec<Instant>,
    /// Next chunk to send.
    next: u64,
    /// Still sending audio.
    pub(crate) sending: bool,
    pub(crate) end_sent_at: Option<Instant>,
    pub(crate) session_end_seen: bool,
    /// Close code received (1005 for a close frame without a code).
    pub(crate) close_code: Option<u16>,
    pub(crate) close_received_at: Option<Instant>,
    failure: Option<WsFailure>,
    fatal_errors: u64,
    samples_sent: u64,
    /// Session start (chunk `k` due at `t0 + map.due(k)`).
    t0: Option<Instant>,
    /// Audio (paced) or wall time (no pace) to send; `opts.duration` unless
    /// [`set_length`](Self::set_length) changed it.
    length: Duration,
    /// `end` may follow any chunk, not only a whole loop.
    cut_anywhere: bool,
    /// Dropped on purpose by the load generator (see [`abort`](Self::abort)).
    aborted: bool,
    /// From `session_start`.
    session_id: Option<String>,
    /// When the operator is to DELETE this session (`soak`).
    delete_at: Option<Instant>,
    /// The session's ramp slot.
    planned: Option<Instant>,
    /// When the server refused the session before it started (`overloaded`
    /// before `session_start`).
    refused_at: Option<Instant>,
    /// Reads the server's messages in the run's dialect.
    reader: Reader,
    /// Messages of one text frame, reused.
    read: Vec<ServerMsg>,
}

impl<'a> SessionCore<'a> {
    pub(crate) fn new(opts: &'a StreamOptions, map: ChunkMap) -> Self {
        SessionCore {
            opts,
            map,
            st: Tally::default(),
            checker: OrderChecker::new(),
            reader: opts.dialect.reader(),
            read: Vec::with_capacity(2),
            sent: Vec::new(),
            next: 0,
            sending: true,
            end_sent_at: None,
            session_end_seen: false,
            close_code: None,
            close_received_at: None,
            failure: None,
            fatal_errors: 0,
            samples_sent: 0,
            t0: None,
            length: opts.duration,
            cut_anywhere: false,
            aborted: false,
            session_id: None,
            delete_at: None,
            planned: None,
            refused_at: None,
        }
    }

    /// The operator is to DELETE this session at `at` (`opts.deletes` must
    /// be set): the session enters the book once it has its id.
    pub(crate) fn set_delete_at(&mut self, at: Instant) {
        self.delete_at = Some(at);
    }

    /// A DELETE of this session has been sent.
    fn delete_sent(&self) -> bool {
        match (&self.opts.deletes, &self.session_id) {
            (Some(book), Some(id)) => book.delete_sent(id),
            _ => false,
        }
    }

    /// Streams `length` of audio (rounded up to a whole chunk, not a whole
    /// loop), then sends `end`.
    pub(crate) fn set_length(&mut self, length: Duration) {
        self.length = length;
        self.cut_anywhere = true;
    }

    /// The load generator drops this session on purpose now; it is counted
    /// as aborted (unless it had already failed) and its finals are not
    /// checked.
    pub(crate) fn abort(&mut self) {
        self.aborted = true;
    }

    /// Records the first failure (later ones are ignored).
    pub(crate) fn fail(&mut self, f: WsFailure) {
        if self.failure.is_none() {
            self.failure = Some(f);
        }
    }

    pub(crate) fn failed(&self) -> bool {
        self.failure.is_some()
    }

    /// Marks the session as started at `t0` (its first chunk is due then);
    /// its ramp slot was `planned`.
    pub(crate) fn started(&mut self, t0: Instant, planned: Instant) {
        self.st.first_send = Some(t0);
        self.t0 = Some(t0);
        self.planned = Some(planned);
        self.st.start_late = Some(t0.saturating_duration_since(planned));
    }

    /// When the next chunk is due (paced sessions still sending).
    pub(crate) fn next_due(&self, t0: Instant) -> Option<Instant> {
        (self.opts.pace && self.sending && self.close_code.is_none())
            .then(|| t0 + self.map.due(self.next))
    }

    /// The next thing to send: chunk `next`, or `end` at a loop boundary once
    /// enough has been sent (then `sending` turns false). Advances `next`;
    /// the caller reports the chunk with [`chunk_sent`](Self::chunk_sent)
    /// once it is written.
    pub(crate) fn next_outgoing(&mut self, t0: Instant, now: Instant) -> Outgoing {
        let k = self.next;
        if k > 0 && (self.cut_anywhere || self.map.starts_loop(k)) {
            let done = if self.opts.pace {
                self.map.due(k) >= self.length
            } else {
                now.saturating_duration_since(t0) >= self.length
            };
            if done {
                self.sending = false;
                return Outgoing::End;
            }
        }
        let r = self.map.chunk_in_file(k);
        self.next += 1;
        Outgoing::Chunk {
            k,
            bytes: (r.start * 2) as usize..(r.end * 2) as usize,
            samples: r.end - r.start,
        }
    }

    /// The next chunk (in order) was written at `at`.
    pub(crate) fn chunk_sent(&mut self, samples: u64, at: Instant) {
        if let (true, Some(t0)) = (self.opts.pace, self.t0) {
            let due = t0 + self.map.due(self.sent.len() as u64);
            let late = at.saturating_duration_since(due).as_micros();
            self.st
                .send_late
                .push(late.min(u128::from(u32::MAX)) as u32);
        }
        self.sent.push(at);
        self.samples_sent += samples;
    }

    /// `end` was written at `at`.
    pub(crate) fn end_sent(&mut self, at: Instant) {
        self.end_sent_at = Some(at);
    }

    /// The client must close now (the OpenAI dialect: its server never
    /// ends a session, the client closes once every transcript is in).
    pub(crate) fn wants_close(&self) -> bool {
        self.opts.dialect == Dialect::Openai && self.session_end_seen && self.close_code.is_none()
    }

    /// A text message arrived at `at`.
    pub(crate) fn on_text(&mut self, text: &str, at: Instant) {
        self.st.messages += 1;
        let mut read = std::mem::take(&mut self.read);
        read.clear();
        let result = self.reader.read(text, &mut read);
        for msg in &read {
            self.on_server_msg(msg, at);
        }
        self.read = read;
        match result {
            Ok(()) => {}
            Err(why) => {
                self.st.violations += 1;
                self.st.count_error("bad_message");
                if self.st.violation_examples.len() < MAX_EXAMPLES {
                    self.st
                        .violation_examples
                        .push(format!("malformed message ({why})"));
                }
            }
        }
    }

    /// A binary message arrived (the server never sends one).
    pub(crate) fn on_binary(&mut self) {
        self.st.messages += 1;
        self.st.count_error("unexpected_binary");
    }

    /// A close frame arrived at `at` (code 1005 when it had none).
    pub(crate) fn on_close(&mut self, code: u16, at: Instant) {
        self.close_code = Some(code);
        self.close_received_at = Some(at);
        self.sending = false;
    }

    fn on_server_msg(&mut self, msg: &ServerMsg, at: Instant) {
        if let ServerMsg::SessionEnd { reason } = msg {
            if reason == "terminated" {
                // The deleter marks a DELETE as sent before writing it, so
                // this is known by the time its `session_end` arrives.
                if self.delete_sent() {
                    self.checker.expect_terminated();
                } else {
                    self.fail(WsFailure::new(
                        "unexpected_terminated",
                        "session_end `terminated` without an operator DELETE",
                    ));
                }
            }
        }
        self.checker.on_message(msg);
        match msg {
            ServerMsg::SpeechStart { .. } => self.st.segments += 1,
            ServerMsg::Transcript { is_final, end, .. } => {
                let chunk = self.map.chunk_of_time(*end);
                let sent_at = match self.sent.get(chunk as usize) {
                    Some(t) => *t,
                    None => {
                        self.st.end_beyond_sent += 1;
                        if self.st.end_beyond_sent_example.is_none() {
                            let sent_s = self.samples_sent as f64 / f64::from(self.map.sample_rate);
                            self.st.end_beyond_sent_example = Some(format!(
                                "{} transcript with end {end} s (chunk {chunk}) when {} chunks \
                                 ({sent_s:.4} s of audio) had been sent",
                                if *is_final { "final" } else { "interim" },
                                self.sent.len()
                            ));
                        }
                        match self.sent.last() {
                            Some(t) => *t,
                            None => return,
                        }
                    }
                };
                let lag = at.saturating_duration_since(sent_at);
                if *is_final {
                    self.st.final_lag.push(lag);
                } else {
                    self.st.interim_lag.push(lag);
                }
            }
            ServerMsg::SessionEnd { .. } => {
                self.session_end_seen = true;
                self.st.last_end = Some(at);
                if let Some(end_at) = self.end_sent_at {
                    self.st
                        .end_to_session_end
                        .push(at.saturating_duration_since(end_at));
                }
            }
            ServerMsg::Error { code } => {
                self.st.count_error(&format!("error_{code}"));
                if code == "overloaded" && self.session_id.is_none() {
                    // Refused before it started (the engine is at capacity):
                    // the server closes 1013 next.
                    self.refused_at.get_or_insert(at);
                    self.sending = false;
                } else if !NON_FATAL_ERRORS.contains(&code.as_str()) {
                    self.fatal_errors += 1;
                    if self.st.first_failure.is_none() {
                        self.st.first_failure = Some(format!("server error message `{code}`"));
                    }
                }
            }
            ServerMsg::SessionStart { session_id } => {
                if self.session_id.is_none() && !session_id.is_empty() {
                    self.session_id = Some(session_id.clone());
                    if let (Some(book), Some(delete_at), Some(t0)) =
                        (&self.opts.deletes, self.delete_at, self.t0)
                    {
                        book.enter(session_id, delete_at, t0 + self.length);
                    }
                }
            }
            ServerMsg::Other(_) => {}
        }
    }

    /// The `--timeout` wait after `end` (or after the server's close) is
    /// over at `now`: `Some(true)` = give up with a failure, `Some(false)` =
    /// stop without one (the server closed first), `None` = keep waiting.
    pub(crate) fn wait_expired(&mut self, now: Instant) -> Option<bool> {
        if let Some(closed_at) = self.close_received_at {
            // The server closed first; give it --timeout to end the TCP
            // connection after our close reply.
            if now >= closed_at + self.opts.timeout {
                return Some(false);
            }
        }
        if let Some(end_at) = self.end_sent_at {
            if now >= end_at + self.opts.timeout {
                let what = if self.session_end_seen {
                    "no close within --timeout after session_end"
                } else {
                    "no session_end within --timeout after end"
                };
                self.fail(WsFailure::new("timeout", what));
                return Some(true);
            }
        }
        None
    }

    /// The earliest moment [`wait_expired`](Self::wait_expired) can fire.
    pub(crate) fn wait_deadline(&self) -> Option<Instant> {
        let a = self.close_received_at.map(|t| t + self.opts.timeout);
        let b = self.end_sent_at.map(|t| t + self.opts.timeout);
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A safety net far beyond any healthy session started at `t0`.
    pub(crate) fn hard_deadline(&self, t0: Instant) -> Instant {
        let file_secs = Duration::from_secs_f64(self.opts.audio.seconds());
        t0 + self.length + file_secs + self.opts.timeout * 3 + Duration::from_secs(5)
    }

    /// Classifies the session and adds its measurements to `into`.
    pub(crate) fn finish(mut self, into: &mut StreamStats) {
        if self.st.last_end.is_none() && self.st.first_send.is_some() {
            self.st.last_end = Some(Instant::now());
        }
        if let Some(refused_at) = self.refused_at {
            // Refused at admission: what follows (close 1013, a write into
            // the closed socket) is the refusal, not a failure.
            into.refused += 1;
            if let Some(planned) = self.planned {
                record_us(
                    &mut into.refusal_latency,
                    refused_at.saturating_duration_since(planned),
                );
            }
            for (k, v) in std::mem::take(&mut self.st.errors) {
                *into.errors.entry(k).or_insert(0) += v;
            }
            return;
        }
        let mut failed = false;
        if let Some(f) = self.failure.take() {
            failed = true;
            self.st.count_error(&f.key);
            if self.st.first_failure.is_none() {
                self.st.first_failure = Some(format!("{}: {}", f.key, f.detail));
            }
        } else if let Some(code) = self.close_code.filter(|&c| c != 1000) {
            failed = true;
            self.st.count_error(&format!("close_{code}"));
            if self.st.first_failure.is_none() {
                self.st.first_failure = Some(format!("closed with code {code}"));
            }
        }
        if self.fatal_errors > 0 {
            failed = true;
        }
        let delete_sent = self.delete_sent();
        if delete_sent && !failed && !self.aborted && !self.checker.ended() {
            // Deleted, and closed without `session_end`.
            failed = true;
            let key = "no_session_end_after_delete";
            self.st.count_error(key);
            if self.st.first_failure.is_none() {
                self.st.first_failure = Some(format!(
                    "{key}: session {} closed (code {}) without session_end after its DELETE",
                    self.session_id.as_deref().unwrap_or("?"),
                    self.close_code
                        .map_or_else(|| "none".into(), |c| c.to_string())
                ));
            }
        }
        if let (Some(book), Some(id)) = (&self.opts.deletes, &self.session_id) {
            book.session_over(
                id,
                ClientOutcome {
                    end_reason: self.checker.end_reason().map(str::to_string),
                    close_code: self.close_code,
                    failed,
                    end_sent_at: self.end_sent_at,
                },
            );
        }
        let aborted = self.aborted && !failed;
        // An aborted session never gets its session_end: only the messages
        // it did receive are checked.
        if !aborted {
            self.checker.finish(!failed);
        }
        self.st.violations += self.checker.violations();
        for e in self.checker.examples() {
            if self.st.violation_examples.len() < MAX_EXAMPLES {
                self.st.violation_examples.push(e.clone());
            }
        }
        if aborted {
            into.aborted += 1;
        } else if failed {
            into.failed += 1;
        } else if self.checker.terminated() {
            into.terminated += 1;
            into.terminated_finals += self.checker.finals();
            into.terminated_cut_segments += self.checker.cut();
            if self.st.violations > 0 {
                into.terminated_with_violations += 1;
            }
        } else {
            into.completed += 1;
            into.completed_audio_seconds +=
                self.samples_sent as f64 / f64::from(self.map.sample_rate);
            if self.st.violations > 0 {
                into.completed_with_violations += 1;
            }
        }
        let st = self.st;
        into.violations += st.violations;
        for e in st.violation_examples {
            if into.violation_examples.len() < MAX_EXAMPLES {
                into.violation_examples.push(e);
            }
        }
        for d in st.interim_lag {
            record_us(&mut into.interim_lag, d);
        }
        for d in st.final_lag {
            record_us(&mut into.final_lag, d);
        }
        for d in st.end_to_session_end {
            record_us(&mut into.end_to_session_end, d);
        }
        for us in st.send_late {
            record_us(&mut into.send_late, Duration::from_micros(u64::from(us)));
        }
        if let Some(d) = st.start_late {
            record_us(&mut into.start_late, d);
        }
        into.audio_seconds += self.samples_sent as f64 / f64::from(self.map.sample_rate);
        into.messages += st.messages;
        into.segments += st.segments;
        into.end_beyond_sent += st.end_beyond_sent;
        if into.end_beyond_sent_example.is_none() {
            into.end_beyond_sent_example = st.end_beyond_sent_example;
        }
        for (k, v) in st.errors {
            *into.errors.entry(k).or_insert(0) += v;
        }
        if into.first_failure.is_none() {
            into.first_failure = st.first_failure;
        }
        into.first_send = min_opt(into.first_send, st.first_send);
        into.last_end = match (into.last_end, st.last_end) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

/// What one session measured, before it is folded into a [`StreamStats`]
/// (lags as plain lists: a session records a few hundred at most, and three
/// full histograms per session would cost ~0.5 MB each).
#[derive(Debug, Default)]
struct Tally {
    violations: u64,
    violation_examples: Vec<String>,
    interim_lag: Vec<Duration>,
    final_lag: Vec<Duration>,
    end_to_session_end: Vec<Duration>,
    /// Paced chunks: written − due, µs.
    send_late: Vec<u32>,
    start_late: Option<Duration>,
    messages: u64,
    segments: u64,
    end_beyond_sent: u64,
    end_beyond_sent_example: Option<String>,
    errors: BTreeMap<String, u64>,
    first_failure: Option<String>,
    first_send: Option<Instant>,
    last_end: Option<Instant>,
}

impl Tally {
    fn count_error(&mut self, key: &str) {
        *self.errors.entry(key.to_string()).or_insert(0) += 1;
    }
}
