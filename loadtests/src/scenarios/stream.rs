//! `stream`: concurrent WebSocket streaming sessions
//! (`/v1/transcribe/stream`), each sending a WAV file's PCM in real time.
//!
//! Unlike the request/response scenarios this one does not use the
//! [`runner`](crate::runner): its unit of work is a whole session lasting
//! `duration`, so it has its own drivers. Session `i` of `N` starts at
//! `ramp·i/N`. Two drivers run the sessions ([`Driver`]):
//!
//! * `mux` (default, [`mux`]): `--threads` worker threads, each multiplexing
//!   its share of the sessions on non-blocking sockets with `mio`, timers in
//!   a heap; connector threads open the sessions on the ramp's schedule;
//! * `threads`: one OS thread per session (256 KiB stack), blocking
//!   tungstenite sockets with read timeouts (kept for comparison).
//!
//! Both share [`SessionCore`] (schedule, send times, checks, lags). Each
//! session:
//!
//! 1. opens the WebSocket (`sample_rate` from the WAV, `interim_results`,
//!    plus `--query`);
//! 2. sends the PCM in `chunk_ms` binary frames, chunk `k` due at
//!    `session start + stream time of chunk k` (an absolute schedule, so
//!    pacing never drifts), looping the file on whole-file boundaries until
//!    `duration` of audio has been sent (`--no-pace`: as fast as possible,
//!    until `duration` of wall time has passed);
//! 3. between sends, reads whatever the server sent (`threads`: a blocking
//!    read with a timeout up to the next due chunk, with `--no-pace` a
//!    non-blocking drain after each chunk; `mux`: on readiness);
//! 4. sends `{"type":"end"}` and reads until the server closes.
//!
//! For each transcript it records the **lag**: receive time minus the send
//! time of the chunk holding the audio at the transcript's `end` (see
//! [`ChunkMap::chunk_of_time`]), in separate histograms for interim and final
//! transcripts; and the time from sending `end` to receiving `session_end`.
//! An [`OrderChecker`] counts protocol-order violations per session.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use hdrhistogram::Histogram;
use serde::Serialize;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Bytes, Message};

use super::soak::deletes::{ClientOutcome, DeleteBook};
use crate::streaming::{ChunkMap, OrderChecker, ServerMsg, MAX_EXAMPLES};
use crate::sys;
use crate::target::Target;
use crate::wav::Pcm16;
use crate::ws::{self, Socket, WsFailure};

pub mod mux;

/// The path exercised.
pub const PATH: &str = "/v1/transcribe/stream";

/// Largest number of concurrent sessions.
pub const MAX_SESSIONS: usize = 10_000;

/// Largest `--threads` of the `mux` driver.
pub const MAX_THREADS: usize = 64;

/// How the sessions are driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Driver {
    /// `--threads` worker threads multiplexing non-blocking sockets (mio).
    Mux,
    /// One OS thread per session, blocking sockets.
    Threads,
}

impl Driver {
    /// The name used on the command line and in the JSON line.
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Mux => "mux",
            Driver::Threads => "threads",
        }
    }
}

/// Highest value the histograms track (one hour in µs); larger ones are clamped.
const MAX_US: u64 = 3_600_000_000;

/// Error codes that are warnings: the session goes on and is not counted as
/// failed (`overloaded`: the model queue is full, finals are delayed and
/// interims skipped). They are still counted in `errors`.
const NON_FATAL_ERRORS: &[&str] = &["overloaded"];

/// Longest a paced session blocks in one read, so it notices its deadlines.
const MAX_READ_WAIT: Duration = Duration::from_millis(50);

/// What to run.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Where (already checked to be loopback).
    pub target: Target,
    /// Extra upgrade request headers (e.g. `Authorization`).
    pub headers: Vec<(String, String)>,
    /// Bound on connecting, the handshake, each blocking write, and the wait
    /// for `session_end` and the close after `end`.
    pub timeout: Duration,
    /// The audio, PCM16 mono.
    pub audio: Arc<Pcm16>,
    /// Concurrent sessions.
    pub sessions: usize,
    /// Sessions start evenly spread over this time.
    pub ramp: Duration,
    /// Audio time (wall time with `pace == false`) each session streams for,
    /// rounded up to whole loops of the file.
    pub duration: Duration,
    /// Chunk length in milliseconds of audio.
    pub chunk_ms: u32,
    /// Send in real time (`false`: as fast as possible).
    pub pace: bool,
    /// `interim_results` query parameter.
    pub interim: bool,
    /// Extra query parameters (URL-encoded, without `?`).
    pub query: Option<String>,
    /// How the sessions are driven.
    pub driver: Driver,
    /// Worker threads of the `mux` driver.
    pub threads: usize,
    /// The server's process id, to report its CPU time over the run.
    pub server_pid: Option<u32>,
    /// Operator DELETEs (`soak --delete-fraction`): sessions planned to be
    /// deleted enter their id here, and accept `session_end` `terminated`
    /// once their DELETE is out. `None` outside `soak`.
    pub deletes: Option<Arc<DeleteBook>>,
}

impl StreamOptions {
    /// Checks the settings are within sane bounds.
    pub fn validate(&self) -> Result<()> {
        if self.sessions == 0 || self.sessions > MAX_SESSIONS {
            bail!("--sessions must be between 1 and {MAX_SESSIONS}");
        }
        if self.duration.is_zero() || self.duration > Duration::from_secs(24 * 3600) {
            bail!("--duration must be more than 0 and at most 24h");
        }
        if self.ramp > Duration::from_secs(3600) {
            bail!("--ramp must be at most 1h");
        }
        if self.chunk_ms == 0 || self.chunk_ms > 10_000 {
            bail!("--chunk-ms must be between 1 and 10000");
        }
        if self.timeout.is_zero() {
            bail!("--timeout must be more than 0");
        }
        if self.threads == 0 || self.threads > MAX_THREADS {
            bail!("--threads must be between 1 and {MAX_THREADS}");
        }
        if let Some(q) = &self.query {
            if q.contains([' ', '\r', '\n', '#']) {
                bail!("--query must be a URL-encoded query string");
            }
        }
        Ok(())
    }

    /// The request path with its query string.
    pub fn path_and_query(&self) -> String {
        let mut p = format!(
            "{PATH}?sample_rate={}&interim_results={}",
            self.audio.sample_rate, self.interim
        );
        if let Some(q) = self
            .query
            .as_deref()
            .map(|q| q.trim_start_matches(['?', '&']))
        {
            if !q.is_empty() {
                p.push('&');
                p.push_str(q);
            }
        }
        p
    }

    /// How the file is cut into chunks.
    pub fn chunk_map(&self) -> ChunkMap {
        ChunkMap::new(self.audio.samples(), self.audio.sample_rate, self.chunk_ms)
    }
}

fn new_histogram() -> Histogram<u64> {
    // Constant, valid bounds: this cannot fail.
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record((d.as_micros().min(u128::from(MAX_US)) as u64).max(1));
}

/// What one session (or, merged, a whole run) measured.
#[derive(Debug, Clone)]
pub struct StreamStats {
    /// Sessions that ended cleanly: close 1000, no I/O failure or timeout, no
    /// error message other than the `overloaded` warning.
    pub completed: u64,
    /// Sessions that did not.
    pub failed: u64,
    /// Sessions the load generator dropped on purpose mid-stream (`soak
    /// --disconnect-rate`); neither completed nor failed, finals not checked.
    pub aborted: u64,
    /// Completed sessions with at least one ordering violation (a missing,
    /// extra or out-of-order final, …): `soak`'s "lost finals".
    pub completed_with_violations: u64,
    /// Sessions ended by an operator DELETE (`soak --delete-fraction`):
    /// `session_end` `terminated`, then close 1000; neither completed nor
    /// failed.
    pub terminated: u64,
    /// Terminated sessions with an ordering violation (a segment over before
    /// the DELETE without its final, …): lost finals too.
    pub terminated_with_violations: u64,
    /// Finals received by the terminated sessions.
    pub terminated_finals: u64,
    /// Segments open at a DELETE, left without a final (allowed).
    pub terminated_cut_segments: u64,
    /// Protocol-order violations (see [`OrderChecker`]) plus malformed messages.
    pub violations: u64,
    /// A few violation descriptions.
    pub violation_examples: Vec<String>,
    /// Interim-transcript lag, µs.
    pub interim_lag: Histogram<u64>,
    /// Final-transcript lag, µs.
    pub final_lag: Histogram<u64>,
    /// From sending `end` to receiving `session_end`, µs.
    pub end_to_session_end: Histogram<u64>,
    /// Paced chunks: how late each was written (written − due), µs. The
    /// load generator's own scheduling delay (plus socket back-pressure).
    pub send_late: Histogram<u64>,
    /// How late each session's upgrade completed after its ramp slot, µs.
    pub start_late: Histogram<u64>,
    /// Audio sent, in seconds.
    pub audio_seconds: f64,
    /// Server messages received (text frames).
    pub messages: u64,
    /// `speech_start` messages.
    pub segments: u64,
    /// Transcripts whose `end` lies beyond the audio sent so far (lag then
    /// counted from the last chunk sent).
    pub end_beyond_sent: u64,
    /// The first such transcript, described.
    pub end_beyond_sent_example: Option<String>,
    /// Failures and error messages by kind (`http_503`, `close_1013`,
    /// `error_overloaded`, `timeout`, …).
    pub errors: BTreeMap<String, u64>,
    /// The first failure's description.
    pub first_failure: Option<String>,
    /// When the first chunk of any session was sent.
    pub first_send: Option<Instant>,
    /// When the last session finished (its `session_end`, or its end).
    pub last_end: Option<Instant>,
}

impl Default for StreamStats {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamStats {
    /// Empty.
    pub fn new() -> Self {
        StreamStats {
            completed: 0,
            failed: 0,
            aborted: 0,
            completed_with_violations: 0,
            terminated: 0,
            terminated_with_violations: 0,
            terminated_finals: 0,
            terminated_cut_segments: 0,
            violations: 0,
            violation_examples: Vec::new(),
            interim_lag: new_histogram(),
            final_lag: new_histogram(),
            end_to_session_end: new_histogram(),
            send_late: new_histogram(),
            start_late: new_histogram(),
            audio_seconds: 0.0,
            messages: 0,
            segments: 0,
            end_beyond_sent: 0,
            end_beyond_sent_example: None,
            errors: BTreeMap::new(),
            first_failure: None,
            first_send: None,
            last_end: None,
        }
    }

    /// Counts one error of kind `key`.
    pub fn count_error(&mut self, key: &str) {
        *self.errors.entry(key.to_string()).or_insert(0) += 1;
    }

    /// Sessions that ended by protocol (completed or terminated) with a
    /// missing, extra or out-of-order final: `soak`'s "lost finals".
    pub fn lost_finals(&self) -> u64 {
        self.completed_with_violations + self.terminated_with_violations
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &StreamStats) {
        self.completed += other.completed;
        self.failed += other.failed;
        self.aborted += other.aborted;
        self.completed_with_violations += other.completed_with_violations;
        self.terminated += other.terminated;
        self.terminated_with_violations += other.terminated_with_violations;
        self.terminated_finals += other.terminated_finals;
        self.terminated_cut_segments += other.terminated_cut_segments;
        self.violations += other.violations;
        for e in &other.violation_examples {
            if self.violation_examples.len() < MAX_EXAMPLES {
                self.violation_examples.push(e.clone());
            }
        }
        // Same bounds on both sides, so `add` cannot fail.
        let _ = self.interim_lag.add(&other.interim_lag);
        let _ = self.final_lag.add(&other.final_lag);
        let _ = self.end_to_session_end.add(&other.end_to_session_end);
        let _ = self.send_late.add(&other.send_late);
        let _ = self.start_late.add(&other.start_late);
        self.audio_seconds += other.audio_seconds;
        self.messages += other.messages;
        self.segments += other.segments;
        self.end_beyond_sent += other.end_beyond_sent;
        if self.end_beyond_sent_example.is_none() {
            self.end_beyond_sent_example
                .clone_from(&other.end_beyond_sent_example);
        }
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_insert(0) += v;
        }
        if self.first_failure.is_none() {
            self.first_failure.clone_from(&other.first_failure);
        }
        self.first_send = min_opt(self.first_send, other.first_send);
        self.last_end = match (self.last_end, other.last_end) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

fn min_opt(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Runs the scenario once and returns the merged report.
pub fn run(opts: &StreamOptions) -> Result<StreamReport> {
    opts.validate()?;
    match sys::raise_nofile_limit() {
        Ok(n) if opts.sessions as u64 + SPARE_FDS > n => bail!(
            "{} sessions need more file descriptors than RLIMIT_NOFILE allows ({n})",
            opts.sessions
        ),
        Ok(_) => {}
        Err(e) => eprintln!("warning: {e:#}"),
    }
    let cpu = |pid: Option<u32>| sys::cpu_seconds(pid).ok();
    let own_before = cpu(None);
    let server_before = opts.server_pid.and_then(|p| cpu(Some(p)));
    let progress = crate::runner::TimeProgress::start(
        &format!("{} stream sessions", opts.sessions),
        opts.ramp + opts.duration,
    );
    let stats = match opts.driver {
        Driver::Threads => run_threads(opts)?,
        Driver::Mux => mux::run(opts)?,
    };
    drop(progress);
    let delta = |before: Option<f64>, after: Option<f64>| match (before, after) {
        (Some(b), Some(a)) => Some((a - b).max(0.0)),
        _ => None,
    };
    let loadgen_cpu = delta(own_before, cpu(None));
    let server_cpu = delta(server_before, opts.server_pid.and_then(|p| cpu(Some(p))));
    let wall = match (stats.first_send, stats.last_end) {
        (Some(a), Some(b)) => b.saturating_duration_since(a),
        _ => Duration::ZERO,
    };
    Ok(StreamReport {
        sessions: opts.sessions,
        pace: opts.pace,
        chunk_ms: opts.chunk_ms,
        duration: opts.duration,
        ramp: opts.ramp,
        interim: opts.interim,
        driver: opts.driver,
        threads: match opts.driver {
            Driver::Threads => opts.sessions,
            Driver::Mux => opts.threads.min(opts.sessions),
        },
        wall,
        loadgen_cpu,
        server_cpu,
        stats,
    })
}

/// Descriptors kept free beside one per session.
const SPARE_FDS: u64 = 64;

/// `--driver threads`: one OS thread per session.
fn run_threads(opts: &StreamOptions) -> Result<StreamStats> {
    let map = opts.chunk_map();
    let audio = Bytes::from(opts.audio.data.clone());
    let path = opts.path_and_query();
    let t0 = Instant::now();
    let n = opts.sessions as u32;
    let mut stats = StreamStats::new();
    thread::scope(|s| -> Result<()> {
        let mut handles = Vec::with_capacity(opts.sessions);
        for i in 0..opts.sessions {
            let start_at = t0 + opts.ramp * i as u32 / n;
            let (audio, path) = (audio.clone(), path.as_str());
            let spawned = thread::Builder::new()
                .name(format!("stream-{i}"))
                .stack_size(256 * 1024)
                .spawn_scoped(s, move || {
                    Session::new(opts, map, audio).run(path, start_at)
                });
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    // Sessions already started finish on their own (bounded).
                    stats.failed += (opts.sessions - i) as u64;
                    *stats.errors.entry("spawn".into()).or_insert(0) += (opts.sessions - i) as u64;
                    stats
                        .first_failure
                        .get_or_insert(format!("cannot start thread {i}: {e}"));
                    break;
                }
            }
        }
        for h in handles {
            match h.join() {
                Ok(st) => stats.merge(&st),
                Err(_) => bail!("a session thread panicked"),
            }
        }
        Ok(())
    })?;
    Ok(stats)
}

/// What a read produced.
enum Read {
    /// A message, and when it arrived.
    Msg(Message, Instant),
    /// Nothing yet (timeout / would block).
    Nothing,
    /// The connection is over (after a close handshake or not).
    Gone,
}

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

/// The end-of-audio message.
pub(crate) const END_MESSAGE: &str = r#"{"type":"end"}"#;

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
}

impl<'a> SessionCore<'a> {
    pub(crate) fn new(opts: &'a StreamOptions, map: ChunkMap) -> Self {
        SessionCore {
            opts,
            map,
            st: Tally::default(),
            checker: OrderChecker::new(),
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

    /// A text message arrived at `at`.
    pub(crate) fn on_text(&mut self, text: &str, at: Instant) {
        self.st.messages += 1;
        match ServerMsg::parse(text) {
            Ok(msg) => self.on_server_msg(&msg, at),
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
                if !NON_FATAL_ERRORS.contains(&code.as_str()) {
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
            record(&mut into.interim_lag, d);
        }
        for d in st.final_lag {
            record(&mut into.final_lag, d);
        }
        for d in st.end_to_session_end {
            record(&mut into.end_to_session_end, d);
        }
        for us in st.send_late {
            record(&mut into.send_late, Duration::from_micros(u64::from(us)));
        }
        if let Some(d) = st.start_late {
            record(&mut into.start_late, d);
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

/// One streaming session of `--driver threads`, driven on its own thread
/// with a blocking tungstenite socket.
struct Session<'a> {
    core: SessionCore<'a>,
    audio: Bytes,
}

impl<'a> Session<'a> {
    fn new(opts: &'a StreamOptions, map: ChunkMap, audio: Bytes) -> Self {
        Session {
            core: SessionCore::new(opts, map),
            audio,
        }
    }

    /// Runs the whole session and returns its measurements.
    fn run(mut self, path: &str, start_at: Instant) -> StreamStats {
        let now = Instant::now();
        if start_at > now {
            thread::sleep(start_at - now);
        }
        let config = WebSocketConfig::default()
            .read_buffer_size(16 * 1024)
            .write_buffer_size(0);
        let opts = self.core.opts;
        match ws::connect(
            &opts.target,
            path,
            &opts.headers,
            opts.timeout,
            Some(config),
        ) {
            Ok(mut socket) => {
                self.drive(&mut socket, start_at);
            }
            Err(f) => self.core.fail(f),
        }
        let mut st = StreamStats::new();
        self.core.finish(&mut st);
        st
    }

    /// Sends the audio and `end`, reads until the connection is over.
    fn drive(&mut self, socket: &mut Socket, start_at: Instant) {
        let t0 = Instant::now();
        let hard_deadline = self.core.hard_deadline(t0);
        self.core.started(t0, start_at);
        let pace = self.core.opts.pace;
        loop {
            if self.core.failed() {
                return;
            }
            let now = Instant::now();
            if now >= hard_deadline {
                self.core
                    .fail(WsFailure::new("timeout", "session did not finish in time"));
                return;
            }
            if self.core.sending && self.core.close_code.is_none() {
                if pace {
                    while self.core.next_due(t0).is_some_and(|due| due <= now) {
                        if !self.send_next(socket, t0, now) {
                            return;
                        }
                    }
                } else if !self.send_next(socket, t0, now) {
                    return;
                }
            }
            if self.core.wait_expired(now).is_some() {
                return;
            }
            let gone = if self.core.sending && !pace && self.core.close_code.is_none() {
                self.drain_nonblocking(socket)
            } else {
                let wait = match self.core.next_due(t0) {
                    Some(due) => due.saturating_duration_since(Instant::now()),
                    None => MAX_READ_WAIT,
                };
                let wait = wait.clamp(Duration::from_millis(1), MAX_READ_WAIT);
                if let Err(e) = socket.get_mut().set_read_timeout(Some(wait)) {
                    self.core
                        .fail(WsFailure::new("io", format!("set_read_timeout: {e}")));
                    return;
                }
                match self.read(socket) {
                    Read::Msg(m, at) => {
                        self.on_message(m, at);
                        false
                    }
                    Read::Nothing => false,
                    Read::Gone => true,
                }
            };
            if gone {
                return;
            }
        }
    }

    /// Sends chunk `next`, or `end` at a loop boundary once enough has been
    /// sent. False when the session failed.
    fn send_next(&mut self, socket: &mut Socket, t0: Instant, now: Instant) -> bool {
        match self.core.next_outgoing(t0, now) {
            Outgoing::End => {
                if let Err(e) = socket.send(Message::text(END_MESSAGE)) {
                    self.core.fail(ws::classify(&e));
                    return false;
                }
                self.core.end_sent(Instant::now());
            }
            Outgoing::Chunk { k, bytes, samples } => {
                if let Err(e) = socket.send(Message::Binary(self.audio.slice(bytes))) {
                    let mut f = ws::classify(&e);
                    f.detail = format!("sending chunk {k}: {}", f.detail);
                    self.core.fail(f);
                    return false;
                }
                self.core.chunk_sent(samples, Instant::now());
            }
        }
        true
    }

    /// `--no-pace`: reads everything already there without blocking. True
    /// when the connection is over.
    fn drain_nonblocking(&mut self, socket: &mut Socket) -> bool {
        if let Err(e) = socket.get_mut().set_nonblocking(true) {
            self.core
                .fail(WsFailure::new("io", format!("set_nonblocking: {e}")));
            return true;
        }
        let gone = loop {
            match self.read(socket) {
                Read::Msg(m, at) => self.on_message(m, at),
                Read::Nothing => break false,
                Read::Gone => break true,
            }
        };
        if let Err(e) = socket.get_mut().set_nonblocking(false) {
            self.core
                .fail(WsFailure::new("io", format!("set_nonblocking: {e}")));
            return true;
        }
        gone
    }

    fn read(&mut self, socket: &mut Socket) -> Read {
        match socket.read() {
            Ok(m) => Read::Msg(m, Instant::now()),
            Err(e) if ws::is_would_block(&e) => Read::Nothing,
            Err(tungstenite::Error::ConnectionClosed) if self.core.close_code.is_some() => {
                Read::Gone
            }
            Err(e) => {
                let mut f = ws::classify(&e);
                if self.core.close_code.is_none() {
                    f.detail = format!("connection lost without a close frame: {}", f.detail);
                }
                self.core.fail(f);
                Read::Gone
            }
        }
    }

    fn on_message(&mut self, m: Message, at: Instant) {
        match m {
            Message::Text(text) => self.core.on_text(text.as_str(), at),
            Message::Binary(_) => self.core.on_binary(),
            Message::Close(frame) => {
                self.core
                    .on_close(frame.map_or(1005, |f| u16::from(f.code)), at);
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
}

/// Percentiles of a lag histogram in milliseconds, and its sample count.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct LagSummary {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub count: u64,
}

impl LagSummary {
    /// Reads the summary off a µs histogram (zeros when empty).
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| (us as f64).round() / 1000.0;
        if h.is_empty() {
            return LagSummary {
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                max: 0.0,
                count: 0,
            };
        }
        LagSummary {
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
            count: h.len(),
        }
    }
}

/// One finished `stream` run.
#[derive(Debug, Clone)]
pub struct StreamReport {
    pub sessions: usize,
    pub pace: bool,
    pub chunk_ms: u32,
    pub duration: Duration,
    pub ramp: Duration,
    pub interim: bool,
    pub driver: Driver,
    /// Threads that drove the sessions (`mux`: workers; `threads`: sessions).
    pub threads: usize,
    /// From the first chunk sent to the last session's end.
    pub wall: Duration,
    /// CPU time (user + system) of this process over the run, in seconds.
    pub loadgen_cpu: Option<f64>,
    /// CPU time of the server (`--server-pid`) over the run, in seconds.
    pub server_cpu: Option<f64>,
    pub stats: StreamStats,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    scenario: &'static str,
    sessions: usize,
    completed: u64,
    failed: u64,
    violations: u64,
    audio_seconds: f64,
    audio_x_realtime: f64,
    interim_lag_ms: LagSummary,
    final_lag_ms: LagSummary,
    end_to_session_end_ms: LagSummary,
    messages: u64,
    errors: &'a BTreeMap<String, u64>,
    mode: &'static str,
    chunk_ms: u32,
    duration_s: f64,
    ramp_s: f64,
    interim_results: bool,
    wall_s: f64,
    segments: u64,
    end_beyond_sent: u64,
    end_beyond_sent_example: Option<&'a str>,
    first_failure: Option<&'a str>,
    violation_examples: &'a [String],
    driver: &'static str,
    threads: usize,
    loadgen_cpu_s: Option<f64>,
    server_cpu_s: Option<f64>,
    send_late_ms: LagSummary,
    start_late_ms: LagSummary,
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

impl StreamReport {
    /// Total audio seconds sent per wall second (0 when nothing was sent).
    pub fn audio_x_realtime(&self) -> f64 {
        let w = self.wall.as_secs_f64();
        if w > 0.0 {
            self.stats.audio_seconds / w
        } else {
            0.0
        }
    }

    /// Interim-lag summary.
    pub fn interim_lag(&self) -> LagSummary {
        LagSummary::from_histogram(&self.stats.interim_lag)
    }

    /// Final-lag summary.
    pub fn final_lag(&self) -> LagSummary {
        LagSummary::from_histogram(&self.stats.final_lag)
    }

    /// Chunk send-lateness summary (paced runs).
    pub fn send_late(&self) -> LagSummary {
        LagSummary::from_histogram(&self.stats.send_late)
    }

    /// The report as one line of JSON (no trailing newline).
    pub fn json_line(&self) -> String {
        let r = JsonReport {
            scenario: "stream",
            sessions: self.sessions,
            completed: self.stats.completed,
            failed: self.stats.failed,
            violations: self.stats.violations,
            audio_seconds: round(self.stats.audio_seconds, 3),
            audio_x_realtime: round(self.audio_x_realtime(), 2),
            interim_lag_ms: self.interim_lag(),
            final_lag_ms: self.final_lag(),
            end_to_session_end_ms: LagSummary::from_histogram(&self.stats.end_to_session_end),
            messages: self.stats.messages,
            errors: &self.stats.errors,
            mode: if self.pace { "paced" } else { "no_pace" },
            chunk_ms: self.chunk_ms,
            duration_s: round(self.duration.as_secs_f64(), 3),
            ramp_s: round(self.ramp.as_secs_f64(), 3),
            interim_results: self.interim,
            wall_s: round(self.wall.as_secs_f64(), 3),
            segments: self.stats.segments,
            end_beyond_sent: self.stats.end_beyond_sent,
            end_beyond_sent_example: self.stats.end_beyond_sent_example.as_deref(),
            first_failure: self.stats.first_failure.as_deref(),
            violation_examples: &self.stats.violation_examples,
            driver: self.driver.as_str(),
            threads: self.threads,
            loadgen_cpu_s: self.loadgen_cpu.map(|c| round(c, 3)),
            server_cpu_s: self.server_cpu.map(|c| round(c, 3)),
            send_late_ms: LagSummary::from_histogram(&self.stats.send_late),
            start_late_ms: LagSummary::from_histogram(&self.stats.start_late),
        };
        // Plain numbers, strings and string-keyed maps: cannot fail.
        serde_json::to_string(&r).expect("report serializes")
    }

    /// Writes the human summary (several lines, none starting with `{`).
    pub fn write_human<W: Write>(&self, out: &mut W) -> io::Result<()> {
        let mode = if self.pace { "paced" } else { "no pace" };
        writeln!(
            out,
            "scenario    stream  ({} sessions, {mode}, {} ms chunks, {:.1}s each, ramp {:.1}s, {:.2}s wall)",
            self.sessions,
            self.chunk_ms,
            self.duration.as_secs_f64(),
            self.ramp.as_secs_f64(),
            self.wall.as_secs_f64()
        )?;
        writeln!(
            out,
            "sessions    {} completed, {} failed, {} ordering violations",
            self.stats.completed, self.stats.failed, self.stats.violations
        )?;
        writeln!(
            out,
            "audio       {:.1} s sent, {:.2}x real time; {} messages, {} segments",
            self.stats.audio_seconds,
            self.audio_x_realtime(),
            self.stats.messages,
            self.stats.segments
        )?;
        let line = |out: &mut W, name: &str, l: LagSummary| {
            writeln!(
                out,
                "{name:<11} p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}  (n={})",
                l.p50, l.p90, l.p99, l.max, l.count
            )
        };
        line(out, "interim ms", self.interim_lag())?;
        line(out, "final ms", self.final_lag())?;
        line(
            out,
            "end→end ms",
            LagSummary::from_histogram(&self.stats.end_to_session_end),
        )?;
        let secs = |c: Option<f64>| c.map_or_else(|| "-".to_string(), |c| format!("{c:.2}"));
        writeln!(
            out,
            "driver      {} ({} threads); loadgen_cpu_s {}  server_cpu_s {}",
            self.driver.as_str(),
            self.threads,
            secs(self.loadgen_cpu),
            secs(self.server_cpu)
        )?;
        line(
            out,
            "send late",
            LagSummary::from_histogram(&self.stats.send_late),
        )?;
        line(
            out,
            "start late",
            LagSummary::from_histogram(&self.stats.start_late),
        )?;
        if !self.stats.errors.is_empty() {
            let e: Vec<String> = self
                .stats
                .errors
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            writeln!(out, "errors      {}", e.join(", "))?;
        }
        if let Some(f) = &self.stats.first_failure {
            writeln!(out, "first fail  {f}")?;
        }
        for v in &self.stats.violation_examples {
            writeln!(out, "violation   {v}")?;
        }
        if self.stats.end_beyond_sent > 0 {
            writeln!(
                out,
                "note        {} transcripts ended beyond the audio sent, e.g. {}",
                self.stats.end_beyond_sent,
                self.stats.end_beyond_sent_example.as_deref().unwrap_or("-")
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenarios::soak::deletes::DeleteAnswer;

    fn opts() -> StreamOptions {
        StreamOptions {
            target: Target::parse("http://127.0.0.1:8000").unwrap(),
            headers: Vec::new(),
            timeout: Duration::from_secs(5),
            audio: Arc::new(Pcm16 {
                sample_rate: 16000,
                data: vec![0; 32000],
            }),
            sessions: 2,
            ramp: Duration::ZERO,
            duration: Duration::from_secs(1),
            chunk_ms: 20,
            pace: true,
            interim: true,
            query: None,
            driver: Driver::Mux,
            threads: 2,
            server_pid: None,
            deletes: None,
        }
    }

    #[test]
    fn builds_the_path_and_validates() {
        let mut o = opts();
        assert_eq!(
            o.path_and_query(),
            "/v1/transcribe/stream?sample_rate=16000&interim_results=true"
        );
        o.query = Some("?vad_mode=3".into());
        o.interim = false;
        assert_eq!(
            o.path_and_query(),
            "/v1/transcribe/stream?sample_rate=16000&interim_results=false&vad_mode=3"
        );
        assert!(o.validate().is_ok());
        o.query = Some("a b".into());
        assert!(o.validate().is_err());
        let mut o = opts();
        o.sessions = 0;
        assert!(o.validate().is_err());
        let mut o = opts();
        o.chunk_ms = 0;
        assert!(o.validate().is_err());
    }

    #[test]
    fn report_json_has_the_documented_fields() {
        let mut st = StreamStats::new();
        st.completed = 2;
        st.audio_seconds = 20.0;
        for ms in 1..=100 {
            record(&mut st.interim_lag, Duration::from_millis(ms));
        }
        record(&mut st.final_lag, Duration::from_millis(40));
        st.count_error("http_503");
        let r = StreamReport {
            sessions: 2,
            pace: true,
            chunk_ms: 20,
            duration: Duration::from_secs(10),
            ramp: Duration::ZERO,
            interim: true,
            driver: Driver::Mux,
            threads: 2,
            wall: Duration::from_secs(10),
            loadgen_cpu: Some(1.23456),
            server_cpu: None,
            stats: st,
        };
        let line = r.json_line();
        assert!(line.starts_with(r#"{"scenario":"stream","sessions":2,"completed":2,"failed":0,"violations":0,"audio_seconds":20.0,"audio_x_realtime":2.0,"interim_lag_ms":{"#));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["interim_lag_ms"]["count"], 100);
        assert_eq!(v["final_lag_ms"]["count"], 1);
        assert_eq!(v["end_to_session_end_ms"]["count"], 0);
        assert_eq!(v["errors"]["http_503"], 1);
        assert_eq!(v["driver"], "mux");
        assert_eq!(v["threads"], 2);
        assert_eq!(v["loadgen_cpu_s"], 1.235);
        assert!(v["server_cpu_s"].is_null());
        let p99 = v["interim_lag_ms"]["p99"].as_f64().unwrap();
        assert!((98.9..=99.1).contains(&p99), "{p99}");
        let mut human = Vec::new();
        r.write_human(&mut human).unwrap();
        let human = String::from_utf8(human).unwrap();
        assert!(human.lines().all(|l| !l.starts_with('{')));
        assert!(human.contains("http_503: 1"));
    }

    /// Feeds one session the server messages `msgs` (and a close with
    /// `close`), with a DELETE sent first when `delete` (the DELETE is
    /// planned at the start, so it is due at once), and finishes it.
    fn deleted_session(
        o: &StreamOptions,
        id: &str,
        delete: bool,
        msgs: &[&str],
        close: Option<u16>,
    ) -> StreamStats {
        let book = o.deletes.as_ref().unwrap();
        let t0 = Instant::now();
        let mut core = SessionCore::new(o, o.chunk_map());
        core.started(t0, t0);
        core.set_length(Duration::from_secs(10));
        if delete {
            core.set_delete_at(t0);
        }
        core.on_text(
            &format!(r#"{{"type":"session_start","session_id":"{id}"}}"#),
            t0,
        );
        if delete {
            assert_eq!(book.take_due(Instant::now()).as_deref(), Some(id));
            book.answered(id, DeleteAnswer::Status(200), Instant::now());
        }
        for m in msgs {
            core.on_text(m, Instant::now());
        }
        if let Some(code) = close {
            core.on_close(code, Instant::now());
        }
        let mut st = StreamStats::new();
        core.finish(&mut st);
        st
    }

    #[test]
    fn deleted_sessions_are_terminated_not_lost_nor_failed() {
        let sp = |id: u64| format!(r#"{{"type":"speech_start","segment_id":{id},"start":0.1}}"#);
        let fin = |id: u64| {
            format!(
                r#"{{"type":"transcript","segment_id":{id},"is_final":true,"text":"a","start":0.1,"end":0.2}}"#
            )
        };
        let end = |reason: &str| format!(r#"{{"type":"session_end","reason":"{reason}"}}"#);
        let book = Arc::new(DeleteBook::new());
        let mut o = opts();
        o.deletes = Some(Arc::clone(&book));
        // Deleted: finals of the earlier segments, the open one cut.
        let msgs = [sp(0), fin(0), sp(1), end("terminated")];
        let msgs: Vec<&str> = msgs.iter().map(String::as_str).collect();
        let st = deleted_session(&o, "a", true, &msgs, Some(1000));
        assert_eq!(
            (st.terminated, st.completed, st.failed, st.violations),
            (1, 0, 0, 0),
            "{:?}",
            st.violation_examples
        );
        assert_eq!((st.terminated_finals, st.terminated_cut_segments), (1, 1));
        assert_eq!(st.lost_finals(), 0);
        // Deleted, but a segment over before the DELETE lacks its final.
        let msgs = [sp(0), sp(1), end("terminated")];
        let msgs: Vec<&str> = msgs.iter().map(String::as_str).collect();
        let st = deleted_session(&o, "b", true, &msgs, Some(1000));
        assert_eq!((st.terminated, st.terminated_with_violations), (1, 1));
        assert_eq!(st.lost_finals(), 1);
        // Deleted, closed without session_end: failed, not lost.
        let msgs = [sp(0), fin(0)];
        let msgs: Vec<&str> = msgs.iter().map(String::as_str).collect();
        let st = deleted_session(&o, "c", true, &msgs, Some(1000));
        assert_eq!((st.failed, st.terminated, st.lost_finals()), (1, 0, 0));
        assert_eq!(st.errors.get("no_session_end_after_delete"), Some(&1));
        // Terminated without a DELETE: failed.
        let msgs = [sp(0), fin(0), end("terminated")];
        let msgs: Vec<&str> = msgs.iter().map(String::as_str).collect();
        let st = deleted_session(&o, "d", false, &msgs, Some(1000));
        assert_eq!((st.failed, st.terminated), (1, 0));
        assert_eq!(st.errors.get("unexpected_terminated"), Some(&1));
        // The DELETE raced nothing: a plain completed session is unaffected.
        let msgs = [sp(0), fin(0), end("client_end")];
        let msgs: Vec<&str> = msgs.iter().map(String::as_str).collect();
        let st = deleted_session(&o, "e", false, &msgs, Some(1000));
        assert_eq!((st.completed, st.failed, st.violations), (1, 0, 0));
        // The book matched each 200 with what the client saw.
        let sum = book.summary();
        assert_eq!((sum.sent, sum.ok), (3, 3));
        assert_eq!((sum.observed, sum.unobserved), (2, 1));
        assert!(
            sum.first_failure
                .as_deref()
                .is_some_and(|f| f.starts_with("DELETE c answered 200")),
            "{sum:?}"
        );
    }

    #[test]
    fn refused_connections_are_failed_sessions() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        for driver in [Driver::Threads, Driver::Mux] {
            let mut o = opts();
            o.driver = driver;
            o.target = Target::parse(&format!("http://127.0.0.1:{port}")).unwrap();
            let r = run(&o).unwrap();
            assert_eq!(r.stats.failed, 2, "{driver:?}");
            assert_eq!(r.stats.completed, 0);
            assert_eq!(r.stats.errors.get("connect"), Some(&2));
            assert_eq!(r.stats.violations, 0);
            assert!(r.loadgen_cpu.is_some());
        }
    }
}
