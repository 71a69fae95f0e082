//! [`StreamStats`]: what one session measured, or many merged into one run
//! (histograms of lags and send delays, outcome counts, error tallies).

use std::collections::BTreeMap;
use std::time::Instant;

use hdrhistogram::Histogram;

use crate::stats::new_histogram;
use crate::streaming::MAX_EXAMPLES;

/// What one session (or, merged, a whole run) measured.
#[derive(Debug, Clone)]
pub struct StreamStats {
    /// Sessions that ended cleanly: close 1000, no I/O failure or timeout, no
    /// error message other than the `overloaded` warning.
    pub completed: u64,
    /// Sessions that did not.
    pub failed: u64,
    /// Sessions the server refused before they started (`overloaded` as
    /// the first message, then close 1013: admission by engine capacity);
    /// neither completed nor failed.
    pub refused: u64,
    /// From a refused session's ramp slot to its `overloaded`, µs.
    pub refusal_latency: Histogram<u64>,
    /// Audio sent by the completed sessions, in seconds (goodput).
    pub completed_audio_seconds: f64,
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
            refused: 0,
            refusal_latency: new_histogram(),
            completed_audio_seconds: 0.0,
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
        self.refused += other.refused;
        let _ = self.refusal_latency.add(&other.refusal_latency);
        self.completed_audio_seconds += other.completed_audio_seconds;
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

pub(super) fn min_opt(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
