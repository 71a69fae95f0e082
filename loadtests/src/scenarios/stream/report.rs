//! [`StreamReport`]: a run's results as the human summary and the JSON line
//! (lag percentiles, outcomes, CPU and wall time).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::options::Driver;
use super::stats::StreamStats;
use crate::stats::round;

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
    pub dialect: crate::dialect::Dialect,
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
    dialect: &'static str,
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
    refused: u64,
    refusal_ms: LagSummary,
    goodput_audio_s_per_s: f64,
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

    /// Audio seconds of the completed sessions per wall second: the work
    /// that reached someone (0 when nothing was sent).
    pub fn goodput(&self) -> f64 {
        let w = self.wall.as_secs_f64();
        if w > 0.0 {
            self.stats.completed_audio_seconds / w
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
            dialect: self.dialect.as_str(),
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
            refused: self.stats.refused,
            refusal_ms: LagSummary::from_histogram(&self.stats.refusal_latency),
            goodput_audio_s_per_s: round(self.goodput(), 3),
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
            "sessions    {} completed, {} refused, {} failed, {} ordering violations",
            self.stats.completed, self.stats.refused, self.stats.failed, self.stats.violations
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
            "driver      {} ({} threads, {} dialect); loadgen_cpu_s {}  server_cpu_s {}",
            self.driver.as_str(),
            self.threads,
            self.dialect.as_str(),
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
