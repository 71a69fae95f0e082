//! The pure parts of the `stream` scenario, kept apart from the socket code so
//! they can be unit-tested:
//!
//! * [`ChunkMap`] — how a WAV file, looped, is cut into chunks, when each
//!   chunk is due (absolute real-time schedule), and which chunk holds the
//!   audio at a given stream time (to compute transcript lag);
//! * [`ServerMsg`] — the server → client messages, parsed from JSON text;
//! * [`OrderChecker`] — the protocol's ordering rules for one session.

use std::collections::VecDeque;
use std::time::Duration;

/// How the looped file is cut into chunks.
///
/// Each loop of the file is cut on its own (a loop starts a new chunk, so the
/// last chunk of a loop may be short): with `c` chunks per loop, chunk `k` is
/// piece `k % c` of loop `k / c`. Stream time keeps increasing across loops,
/// so sample `s` of the stream is sample `s % file_samples` of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkMap {
    /// Samples in one loop of the file (> 0).
    pub file_samples: u64,
    /// Samples in a full chunk (> 0).
    pub chunk_samples: u64,
    /// Samples per second (> 0).
    pub sample_rate: u32,
}

impl ChunkMap {
    /// A map for a file of `file_samples` samples cut into `chunk_ms` chunks.
    /// Every argument must be positive (a chunk is at least one sample).
    pub fn new(file_samples: u64, sample_rate: u32, chunk_ms: u32) -> Self {
        let chunk_samples = (u64::from(sample_rate) * u64::from(chunk_ms) / 1000).max(1);
        ChunkMap {
            file_samples: file_samples.max(1),
            chunk_samples,
            sample_rate: sample_rate.max(1),
        }
    }

    /// Chunks per loop of the file.
    pub fn chunks_per_loop(&self) -> u64 {
        self.file_samples.div_ceil(self.chunk_samples)
    }

    /// The first stream sample of chunk `k`.
    pub fn chunk_start(&self, k: u64) -> u64 {
        let per = self.chunks_per_loop();
        (k / per) * self.file_samples + (k % per) * self.chunk_samples
    }

    /// The samples of chunk `k` as a range within the file.
    pub fn chunk_in_file(&self, k: u64) -> std::ops::Range<u64> {
        let start = (k % self.chunks_per_loop()) * self.chunk_samples;
        start..(start + self.chunk_samples).min(self.file_samples)
    }

    /// When chunk `k` is due, relative to the session start: the stream time
    /// of its first sample (an absolute schedule, so pacing never drifts).
    pub fn due(&self, k: u64) -> Duration {
        let s = self.chunk_start(k);
        let rate = u64::from(self.sample_rate);
        Duration::from_secs(s / rate) + Duration::from_nanos((s % rate) * 1_000_000_000 / rate)
    }

    /// True when chunk `k` is the first chunk of a loop of the file.
    pub fn starts_loop(&self, k: u64) -> bool {
        k % self.chunks_per_loop() == 0
    }

    /// The chunk holding the audio that ends at stream time `end_s` (seconds),
    /// i.e. the chunk of the last sample before `end_s`.
    ///
    /// Times on the wire are rounded to milliseconds, so an `end` up to half a
    /// millisecond past a chunk boundary may really be the end of the chunk
    /// before it (e.g. the end of the audio sent so far, rounded up); such
    /// times are attributed to the earlier chunk, which can only make the
    /// measured lag larger, never smaller.
    pub fn chunk_of_time(&self, end_s: f64) -> u64 {
        let end_sample = if end_s.is_finite() && end_s > 0.0 {
            (end_s * f64::from(self.sample_rate)).round() as u64
        } else {
            0
        };
        let last = end_sample.saturating_sub(1);
        let per = self.chunks_per_loop();
        let chunk =
            (last / self.file_samples) * per + (last % self.file_samples) / self.chunk_samples;
        let tolerance = u64::from(self.sample_rate) / 2000; // half a millisecond
        if chunk > 0 && end_sample - self.chunk_start(chunk) <= tolerance {
            chunk - 1
        } else {
            chunk
        }
    }
}

/// A server → client message (only the fields the scenarios use).
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMsg {
    /// `{"type":"session_start","session_id":…,…}` (`session_id` empty
    /// when absent).
    SessionStart { session_id: String },
    /// `{"type":"speech_start","segment_id":N,…}`.
    SpeechStart { segment_id: u64 },
    /// `{"type":"transcript","segment_id":N,"is_final":…,"end":e,…}`.
    Transcript {
        segment_id: u64,
        is_final: bool,
        end: f64,
    },
    /// `{"type":"session_end","reason":…,…}`.
    SessionEnd { reason: String },
    /// `{"type":"error","code":…,…}`.
    Error { code: String },
    /// A well-formed message of another `type`.
    Other(String),
}

impl ServerMsg {
    /// Parses one text frame; `Err` describes what is wrong with it.
    pub fn parse(text: &str) -> Result<ServerMsg, String> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not JSON ({e})"))?;
        let kind = v
            .get("type")
            .and_then(|t| t.as_str())
            .ok_or("no string `type`")?;
        let segment = || {
            v.get("segment_id")
                .and_then(|s| s.as_u64())
                .ok_or(format!("{kind} without an integer segment_id"))
        };
        let string = |key: &str| {
            v.get(key)
                .and_then(|s| s.as_str())
                .unwrap_or("")
                .to_string()
        };
        Ok(match kind {
            "session_start" => ServerMsg::SessionStart {
                session_id: string("session_id"),
            },
            "speech_start" => ServerMsg::SpeechStart {
                segment_id: segment()?,
            },
            "transcript" => ServerMsg::Transcript {
                segment_id: segment()?,
                is_final: v
                    .get("is_final")
                    .and_then(|f| f.as_bool())
                    .ok_or("transcript without a boolean is_final")?,
                end: v
                    .get("end")
                    .and_then(|e| e.as_f64())
                    .ok_or("transcript without a numeric end")?,
            },
            "session_end" => ServerMsg::SessionEnd {
                reason: string("reason"),
            },
            "error" => ServerMsg::Error {
                code: string("code"),
            },
            other => ServerMsg::Other(other.to_string()),
        })
    }
}

/// How many violation descriptions a checker (or a report) keeps.
pub const MAX_EXAMPLES: usize = 5;

/// Checks one session's messages against the protocol's ordering rules:
///
/// * `session_start` comes first, once; nothing comes after `session_end`;
/// * `speech_start` segment ids increase;
/// * every transcript belongs to a segment that had its `speech_start`;
/// * exactly one final per segment, finals in `segment_id` order;
/// * no interim for a segment after its final;
/// * at `session_end`, every started segment has had its final, and the reason
///   is `client_end`;
/// * the session ends with `session_end` ([`OrderChecker::finish`]).
///
/// Once [`expect_terminated`](OrderChecker::expect_terminated) was called (an
/// operator DELETE was sent for the session), `session_end` may instead have
/// the reason `terminated`. The server stops such a session at once, so the
/// segment open at that moment — the last `speech_start`, if it has no final
/// — may end without its final ([`cut`](OrderChecker::cut)); every earlier
/// segment was over before the DELETE (another `speech_start` followed it)
/// and must have had its final.
///
/// Each offending message counts as one violation.
#[derive(Debug, Default, Clone)]
pub struct OrderChecker {
    seen_any: bool,
    started: bool,
    ended: bool,
    last_speech_start: Option<u64>,
    /// Segments with a `speech_start` and no final yet, in order.
    pending: VecDeque<u64>,
    /// The highest segment id that has had its final.
    last_final: Option<u64>,
    violations: u64,
    examples: Vec<String>,
    /// `session_end` `terminated` is acceptable.
    terminated_ok: bool,
    /// The session ended with an accepted `session_end` `terminated`.
    terminated: bool,
    /// Reason of the `session_end`, once seen.
    end_reason: Option<String>,
    /// Finals received.
    finals: u64,
    /// Segments cut without a final by an accepted termination.
    cut: u64,
}

impl OrderChecker {
    /// A checker for a new session.
    pub fn new() -> Self {
        Self::default()
    }

    /// Violations so far.
    pub fn violations(&self) -> u64 {
        self.violations
    }

    /// The first few violations, described.
    pub fn examples(&self) -> &[String] {
        &self.examples
    }

    /// True once `session_end` has been seen.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// From now on `session_end` with the reason `terminated` is acceptable
    /// (an operator DELETE was sent for this session).
    pub fn expect_terminated(&mut self) {
        self.terminated_ok = true;
    }

    /// True when the session ended with an accepted `session_end`
    /// `terminated`.
    pub fn terminated(&self) -> bool {
        self.terminated
    }

    /// The reason of the `session_end`, once seen.
    pub fn end_reason(&self) -> Option<&str> {
        self.end_reason.as_deref()
    }

    /// Finals received (counted whether in order or not).
    pub fn finals(&self) -> u64 {
        self.finals
    }

    /// Segments left without a final by an accepted termination (0 or 1):
    /// the segment open when the session was terminated.
    pub fn cut(&self) -> u64 {
        self.cut
    }

    fn violation(&mut self, what: String) {
        self.violations += 1;
        if self.examples.len() < MAX_EXAMPLES {
            self.examples.push(what);
        }
    }

    fn finalized(&self, id: u64) -> bool {
        self.last_final.is_some_and(|f| id <= f) && !self.pending.contains(&id)
    }

    /// Feeds the next message.
    pub fn on_message(&mut self, msg: &ServerMsg) {
        let first = !self.seen_any;
        self.seen_any = true;
        if self.ended {
            self.violation(format!("{msg:?} after session_end"));
            return;
        }
        match msg {
            ServerMsg::SessionStart { .. } => {
                if !first {
                    self.violation("session_start is not the first message".into());
                }
                self.started = true;
                return;
            }
            // An error may legitimately come first (e.g. a refused session).
            ServerMsg::Error { .. } => return,
            _ if !self.started => {
                self.violation(format!("{msg:?} before session_start"));
                // Count it once, then check the rest as if it had started.
                self.started = true;
            }
            _ => {}
        }
        match msg {
            ServerMsg::SpeechStart { segment_id: id } => {
                let id = *id;
                if self.last_speech_start.is_some_and(|last| id <= last) {
                    self.violation(format!(
                        "speech_start {id} after speech_start {}",
                        self.last_speech_start.unwrap_or_default()
                    ));
                    return;
                }
                self.last_speech_start = Some(id);
                self.pending.push_back(id);
            }
            ServerMsg::Transcript {
                segment_id: id,
                is_final: false,
                ..
            } => {
                let id = *id;
                if self.finalized(id) {
                    self.violation(format!("interim for segment {id} after its final"));
                } else if !self.pending.contains(&id) {
                    self.violation(format!("interim for segment {id} without speech_start"));
                }
            }
            ServerMsg::Transcript {
                segment_id: id,
                is_final: true,
                ..
            } => {
                let id = *id;
                self.finals += 1;
                if self.finalized(id) {
                    self.violation(format!("second final for segment {id}"));
                } else if let Some(pos) = self.pending.iter().position(|&p| p == id) {
                    if pos > 0 {
                        self.violation(format!(
                            "final for segment {id} before the final of segment {}",
                            self.pending[0]
                        ));
                    } else if self.last_final.is_some_and(|f| id < f) {
                        self.violation(format!(
                            "final for segment {id} after the final of segment {}",
                            self.last_final.unwrap_or_default()
                        ));
                    }
                    self.pending.remove(pos);
                    self.last_final = Some(self.last_final.map_or(id, |f| f.max(id)));
                } else {
                    self.violation(format!("final for segment {id} without speech_start"));
                    self.last_final = Some(self.last_final.map_or(id, |f| f.max(id)));
                }
            }
            ServerMsg::SessionEnd { reason } => {
                self.ended = true;
                self.end_reason = Some(reason.clone());
                let terminated = self.terminated_ok && reason == "terminated";
                if terminated {
                    self.terminated = true;
                    // The segment open at the DELETE may go without a final.
                    if self.pending.back().is_some()
                        && self.pending.back() == self.last_speech_start.as_ref()
                    {
                        self.pending.pop_back();
                        self.cut += 1;
                    }
                }
                if !self.pending.is_empty() {
                    let missing: Vec<String> = self.pending.iter().map(u64::to_string).collect();
                    for _ in 0..self.pending.len() {
                        self.violations += 1;
                    }
                    if self.examples.len() < MAX_EXAMPLES {
                        self.examples.push(format!(
                            "session_end before the final of segment(s) {}",
                            missing.join(",")
                        ));
                    }
                    self.pending.clear();
                }
                if reason != "client_end" && !terminated {
                    self.violation(format!("session_end reason `{reason}`, not client_end"));
                }
            }
            ServerMsg::SessionStart { .. } | ServerMsg::Error { .. } | ServerMsg::Other(_) => {}
        }
    }

    /// Ends the check when the connection is over; `complete` is false for a
    /// session that already failed (then a missing `session_end` is not
    /// counted again as a violation).
    pub fn finish(&mut self, complete: bool) {
        if complete && !self.ended {
            self.violation("no session_end".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_layout_and_schedule() {
        // 1000-sample file, 320-sample chunks: 320, 320, 320, 40 per loop.
        let m = ChunkMap {
            file_samples: 1000,
            chunk_samples: 320,
            sample_rate: 16000,
        };
        assert_eq!(m.chunks_per_loop(), 4);
        assert_eq!(m.chunk_in_file(3), 960..1000);
        assert_eq!(m.chunk_in_file(4), 0..320);
        assert_eq!(m.chunk_start(3), 960);
        assert_eq!(m.chunk_start(4), 1000);
        assert_eq!(m.chunk_start(9), 2320);
        assert!(m.starts_loop(0) && m.starts_loop(4) && m.starts_loop(8));
        assert!(!m.starts_loop(3));
        // Absolute schedule: chunk 4 is due after exactly 1000 samples.
        assert_eq!(m.due(0), Duration::ZERO);
        assert_eq!(m.due(1), Duration::from_millis(20));
        assert_eq!(m.due(4), Duration::from_micros(62_500));
        // 20 ms chunks at 16 kHz, whole seconds stay exact.
        let m = ChunkMap::new(16000 * 3, 16000, 20);
        assert_eq!(m.chunk_samples, 320);
        assert_eq!(m.due(50), Duration::from_secs(1));
        assert_eq!(m.due(1500), Duration::from_secs(30));
    }

    #[test]
    fn stream_time_to_chunk_across_loops() {
        let m = ChunkMap {
            file_samples: 1000,
            chunk_samples: 320,
            sample_rate: 16000,
        };
        let t = |sample: u64| sample as f64 / 16000.0;
        assert_eq!(m.chunk_of_time(0.0), 0);
        assert_eq!(m.chunk_of_time(t(1)), 0);
        assert_eq!(m.chunk_of_time(t(320)), 0); // ends exactly at a chunk edge
        assert_eq!(m.chunk_of_time(t(328)), 0); // within the 0.5 ms wire rounding
        assert_eq!(m.chunk_of_time(t(329)), 1);
        assert_eq!(m.chunk_of_time(t(1000)), 3); // end of loop 0: the short chunk
        assert_eq!(m.chunk_of_time(t(1008)), 3); // rounded-up end of loop 0
        assert_eq!(m.chunk_of_time(t(1009)), 4); // audio of loop 1
        assert_eq!(m.chunk_of_time(t(1320)), 4);
        assert_eq!(m.chunk_of_time(t(1329)), 5);
        assert_eq!(m.chunk_of_time(t(2999)), 11);
        assert_eq!(m.chunk_of_time(t(3000)), 11);
        assert_eq!(m.chunk_of_time(t(3009)), 12);
        // Millisecond-rounded wire times land on the right chunk.
        let m = ChunkMap::new(5 * 16000, 16000, 20);
        assert_eq!(m.chunk_of_time(1.2), 59);
        assert_eq!(m.chunk_of_time(1.201), 60);
        // A file of 79875 samples (4.9921875 s): the end of its 4th loop is
        // 19.96875 s, sent as 19.969; that is still the last chunk of loop 3.
        let odd = ChunkMap::new(79_875, 16000, 20);
        assert_eq!(odd.chunks_per_loop(), 250);
        assert_eq!(odd.chunk_of_time(19.969), 4 * 250 - 1);
        assert_eq!(odd.chunk_of_time(19.970), 4 * 250);
        // 6.2 s into the stream = 1.2 s into the second loop (250 chunks/loop).
        assert_eq!(m.chunk_of_time(6.2), 250 + 59);
        // Nonsense times map to chunk 0 rather than panicking.
        assert_eq!(m.chunk_of_time(-1.0), 0);
        assert_eq!(m.chunk_of_time(f64::NAN), 0);
        // Round trip: the chunk of the time at its last sample is itself.
        for k in 0..1000 {
            let end = m.chunk_start(k) + (m.chunk_in_file(k).end - m.chunk_in_file(k).start);
            assert_eq!(m.chunk_of_time(end as f64 / 16000.0), k, "chunk {k}");
        }
    }

    #[test]
    fn parses_server_messages() {
        assert_eq!(
            ServerMsg::parse(r#"{"type":"session_start","session_id":"x"}"#),
            Ok(ServerMsg::SessionStart {
                session_id: "x".into()
            })
        );
        assert_eq!(
            ServerMsg::parse(r#"{"type":"session_start"}"#),
            Ok(ServerMsg::SessionStart {
                session_id: String::new()
            })
        );
        assert_eq!(
            ServerMsg::parse(r#"{"type":"speech_start","segment_id":2,"start":0.4}"#),
            Ok(ServerMsg::SpeechStart { segment_id: 2 })
        );
        assert_eq!(
            ServerMsg::parse(
                r#"{"type":"transcript","segment_id":0,"is_final":true,"text":"a","start":0.1,"end":1.25,"words":[]}"#
            ),
            Ok(ServerMsg::Transcript {
                segment_id: 0,
                is_final: true,
                end: 1.25
            })
        );
        assert_eq!(
            ServerMsg::parse(r#"{"type":"session_end","reason":"client_end"}"#),
            Ok(ServerMsg::SessionEnd {
                reason: "client_end".into()
            })
        );
        assert_eq!(
            ServerMsg::parse(r#"{"type":"error","code":"overloaded","message":"m"}"#),
            Ok(ServerMsg::Error {
                code: "overloaded".into()
            })
        );
        assert_eq!(
            ServerMsg::parse(r#"{"type":"pong"}"#),
            Ok(ServerMsg::Other("pong".into()))
        );
        assert!(ServerMsg::parse("nope").is_err());
        assert!(ServerMsg::parse(r#"{"type":"transcript","segment_id":0}"#).is_err());
        assert!(ServerMsg::parse(r#"{"segment_id":0}"#).is_err());
    }

    fn ss() -> ServerMsg {
        ServerMsg::SessionStart {
            session_id: "s".into(),
        }
    }
    fn sp(id: u64) -> ServerMsg {
        ServerMsg::SpeechStart { segment_id: id }
    }
    fn interim(id: u64) -> ServerMsg {
        ServerMsg::Transcript {
            segment_id: id,
            is_final: false,
            end: 1.0,
        }
    }
    fn fin(id: u64) -> ServerMsg {
        ServerMsg::Transcript {
            segment_id: id,
            is_final: true,
            end: 1.0,
        }
    }
    fn end(reason: &str) -> ServerMsg {
        ServerMsg::SessionEnd {
            reason: reason.into(),
        }
    }

    fn check(msgs: &[ServerMsg]) -> OrderChecker {
        let mut c = OrderChecker::new();
        for m in msgs {
            c.on_message(m);
        }
        c.finish(true);
        c
    }

    #[test]
    fn good_sequences_pass() {
        let c = check(&[
            ss(),
            sp(0),
            interim(0),
            interim(0),
            fin(0),
            sp(1),
            interim(1),
            // The next segment may start before the previous final arrives.
            sp(2),
            fin(1),
            interim(2),
            fin(2),
            end("client_end"),
        ]);
        assert_eq!(c.violations(), 0, "{:?}", c.examples());
        // A session with no speech at all.
        assert_eq!(check(&[ss(), end("client_end")]).violations(), 0);
        // Unknown message types are tolerated.
        let c = check(&[ss(), ServerMsg::Other("x".into()), end("client_end")]);
        assert_eq!(c.violations(), 0);
    }

    #[test]
    fn bad_sequences_are_counted() {
        let cases: Vec<(Vec<ServerMsg>, u64, &str)> = vec![
            (
                vec![sp(0), fin(0), end("client_end")],
                1,
                "before session_start",
            ),
            (
                vec![ss(), ss(), end("client_end")],
                1,
                "not the first message",
            ),
            (
                vec![ss(), sp(0), fin(0), fin(0), end("client_end")],
                1,
                "second final",
            ),
            (
                vec![ss(), sp(0), fin(0), interim(0), end("client_end")],
                1,
                "after its final",
            ),
            (
                vec![ss(), sp(0), sp(1), fin(1), fin(0), end("client_end")],
                2,
                "before the final of segment 0",
            ),
            (
                vec![ss(), sp(0), sp(1), fin(0), end("client_end")],
                1,
                "session_end before the final of segment(s) 1",
            ),
            (
                vec![ss(), sp(0), sp(1), end("client_end")],
                2,
                "segment(s) 0,1",
            ),
            (
                vec![ss(), interim(3), fin(3), end("client_end")],
                2,
                "without speech_start",
            ),
            (
                vec![ss(), sp(1), sp(1), fin(1), end("client_end")],
                1,
                "speech_start 1 after speech_start 1",
            ),
            (
                vec![ss(), sp(0), fin(0), end("idle_timeout")],
                1,
                "not client_end",
            ),
            (
                vec![ss(), sp(0), fin(0), end("client_end"), interim(0)],
                1,
                "after session_end",
            ),
            (vec![ss(), sp(0), fin(0)], 1, "no session_end"),
        ];
        for (msgs, n, what) in cases {
            let c = check(&msgs);
            assert_eq!(c.violations(), n, "{msgs:?}: {:?}", c.examples());
            assert!(
                c.examples().iter().any(|e| e.contains(what)),
                "{msgs:?}: expected `{what}` in {:?}",
                c.examples()
            );
        }
    }

    fn check_deleted(msgs: &[ServerMsg]) -> OrderChecker {
        let mut c = OrderChecker::new();
        c.expect_terminated();
        for m in msgs {
            c.on_message(m);
        }
        c.finish(true);
        c
    }

    #[test]
    fn terminated_sessions_may_cut_only_the_open_segment() {
        // Every segment had its final.
        let c = check_deleted(&[ss(), sp(0), fin(0), sp(1), fin(1), end("terminated")]);
        assert_eq!(c.violations(), 0, "{:?}", c.examples());
        assert!(c.terminated());
        assert_eq!((c.finals(), c.cut()), (2, 0));
        assert_eq!(c.end_reason(), Some("terminated"));
        // The open segment (the last speech_start) is cut: allowed.
        let c = check_deleted(&[ss(), sp(0), fin(0), sp(1), interim(1), end("terminated")]);
        assert_eq!(c.violations(), 0, "{:?}", c.examples());
        assert_eq!((c.finals(), c.cut()), (1, 1));
        // Terminated before any speech.
        let c = check_deleted(&[ss(), end("terminated")]);
        assert_eq!((c.violations(), c.cut()), (0, 0));
        assert!(c.terminated());
        // A segment followed by another speech_start was over before the
        // DELETE: its missing final is lost.
        let c = check_deleted(&[ss(), sp(0), sp(1), end("terminated")]);
        assert_eq!(c.violations(), 1, "{:?}", c.examples());
        assert_eq!(c.cut(), 1);
        assert!(
            c.examples()[0].contains("segment(s) 0"),
            "{:?}",
            c.examples()
        );
        // The last segment had its final, an earlier one not: lost.
        let c = check_deleted(&[ss(), sp(0), sp(1), fin(1), end("terminated")]);
        assert_eq!(c.cut(), 0);
        assert_eq!(c.violations(), 2, "{:?}", c.examples());
        // A client_end is still fine after expect_terminated (the session
        // ended on its own first).
        let c = check_deleted(&[ss(), sp(0), fin(0), end("client_end")]);
        assert_eq!(c.violations(), 0);
        assert!(!c.terminated());
        assert_eq!(c.end_reason(), Some("client_end"));
        // Other reasons are not.
        let c = check_deleted(&[ss(), end("idle_timeout")]);
        assert_eq!(c.violations(), 1);
        // Without expect_terminated, `terminated` is a violation and nothing
        // is cut.
        let c = check(&[ss(), sp(0), end("terminated")]);
        assert_eq!(c.violations(), 2, "{:?}", c.examples());
        assert!(!c.terminated());
        assert_eq!(c.cut(), 0);
    }

    #[test]
    fn failed_sessions_do_not_double_count() {
        let mut c = OrderChecker::new();
        c.on_message(&ServerMsg::Error {
            code: "session_limit_exceeded".into(),
        });
        c.finish(false);
        assert_eq!(c.violations(), 0);
        assert!(!c.ended());
    }
}
