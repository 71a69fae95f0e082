//! [`SoakReport`]: a finished soak as the human summary and the JSON line
//! (streams, lost finals, deletes, batch statuses, the operator's polls and
//! the RSS figures).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::Duration;

use serde::Serialize;

use super::deletes::DeleteSummary;
use super::{OperatorStats, RssSummary, Sample, DRAIN_LIMIT};
use crate::scenarios::stream::{LagSummary, StreamStats};
use crate::stats::{round, Percentiles, Report};

/// One finished soak.
#[derive(Debug)]
pub struct SoakReport {
    pub duration: Duration,
    pub streams: usize,
    pub batch_connections: usize,
    pub disconnect_rate: f64,
    pub min_length: Duration,
    pub max_length: Duration,
    pub seed: u64,
    pub opened: u64,
    pub stream: StreamStats,
    pub batch: Option<Report>,
    pub operator: OperatorStats,
    pub rss: RssSummary,
    pub end_sample: Sample,
    pub delete_fraction: f64,
    pub deletes: DeleteSummary,
    pub active_sessions_end: Option<u64>,
    /// From the last client closing to `active_sessions` reading 0.
    pub active_zero_after: Option<Duration>,
    /// From the start to the last client closing.
    pub wall: Duration,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    scenario: &'static str,
    duration_s: f64,
    streams: usize,
    batch_connections: usize,
    disconnect_rate: f64,
    delete_fraction: f64,
    streams_started: u64,
    streams_completed: u64,
    streams_terminated: u64,
    streams_failed: u64,
    lost_finals: u64,
    lost_finals_terminated: u64,
    abrupt_disconnects: u64,
    terminated_finals: u64,
    terminated_cut_segments: u64,
    deletes_planned: u64,
    deletes_sent: u64,
    deletes_200: u64,
    deletes_404: u64,
    deletes_other: &'a BTreeMap<String, u64>,
    deletes_observed: u64,
    deletes_unobserved: u64,
    deletes_raced_end: u64,
    deletes_terminated_after_404: u64,
    deletes_skipped_near_end: u64,
    deletes_not_reached: u64,
    deletes_failures: u64,
    deletes_max_ms: f64,
    deletes_first_failure: Option<&'a str>,
    violations: u64,
    violation_examples: &'a [String],
    stream_errors: &'a BTreeMap<String, u64>,
    stream_first_failure: Option<&'a str>,
    batch_requests: u64,
    batch_status: BTreeMap<String, u64>,
    batch_errors: u64,
    batch_error_kinds: BTreeMap<&'static str, u64>,
    batch_rps: f64,
    batch_latency_ms: Option<Percentiles>,
    batch_first_error: Option<&'a str>,
    rss_kb: RssSummary,
    active_sessions_end: Option<u64>,
    active_sessions_zero_after_s: Option<f64>,
    server_totals_balanced: bool,
    leaked_sessions: Option<u64>,
    operator: &'a BTreeMap<&'static str, BTreeMap<String, u64>>,
    operator_failures: u64,
    operator_max_ms: BTreeMap<&'static str, f64>,
    operator_first_error: Option<&'a str>,
    interim_lag_ms: LagSummary,
    final_lag_ms: LagSummary,
    end_to_session_end_ms: LagSummary,
    audio_seconds: f64,
    segments: u64,
    min_length_s: f64,
    max_length_s: f64,
    seed: u64,
    wall_s: f64,
    samples: &'a [Sample],
    end_sample: &'a Sample,
}

impl SoakReport {
    /// The report as one line of JSON (no trailing newline).
    pub fn json_line(&self) -> String {
        let batch = self.batch.as_ref();
        let d = &self.deletes;
        let r = JsonReport {
            scenario: "soak",
            duration_s: round(self.duration.as_secs_f64(), 3),
            streams: self.streams,
            batch_connections: self.batch_connections,
            disconnect_rate: self.disconnect_rate,
            delete_fraction: self.delete_fraction,
            streams_started: self.opened,
            streams_completed: self.stream.completed,
            streams_terminated: self.stream.terminated,
            streams_failed: self.stream.failed,
            lost_finals: self.stream.lost_finals(),
            lost_finals_terminated: self.stream.terminated_with_violations,
            abrupt_disconnects: self.stream.aborted,
            terminated_finals: self.stream.terminated_finals,
            terminated_cut_segments: self.stream.terminated_cut_segments,
            deletes_planned: d.planned,
            deletes_sent: d.sent,
            deletes_200: d.ok,
            deletes_404: d.not_found,
            deletes_other: &d.other,
            deletes_observed: d.observed,
            deletes_unobserved: d.unobserved,
            deletes_raced_end: d.raced_end,
            deletes_terminated_after_404: d.terminated_after_404,
            deletes_skipped_near_end: d.skipped_near_end,
            deletes_not_reached: d.not_reached,
            deletes_failures: d.failures(),
            deletes_max_ms: d.max_ms,
            deletes_first_failure: d.first_failure.as_deref(),
            violations: self.stream.violations,
            violation_examples: &self.stream.violation_examples,
            stream_errors: &self.stream.errors,
            stream_first_failure: self.stream.first_failure.as_deref(),
            batch_requests: batch.map_or(0, |b| b.stats.responses()),
            batch_status: batch.map_or_else(BTreeMap::new, |b| {
                b.stats
                    .status
                    .iter()
                    .map(|(k, v)| (k.to_string(), *v))
                    .collect()
            }),
            batch_errors: batch.map_or(0, |b| b.stats.error_count()),
            batch_error_kinds: batch.map_or_else(BTreeMap::new, |b| {
                b.stats
                    .errors
                    .iter()
                    .map(|(k, v)| (k.as_str(), *v))
                    .collect()
            }),
            batch_rps: batch.map_or(0.0, |b| round(b.rps(), 1)),
            batch_latency_ms: batch.map(Report::latency),
            batch_first_error: batch.and_then(|b| b.stats.first_error.as_deref()),
            rss_kb: self.rss,
            active_sessions_end: self.active_sessions_end,
            active_sessions_zero_after_s: self.active_zero_after.map(|d| round(d.as_secs_f64(), 3)),
            server_totals_balanced: self.end_sample.balanced(),
            leaked_sessions: self.end_sample.leaked(),
            operator: &self.operator.results,
            operator_failures: self.operator.failures(),
            operator_max_ms: self
                .operator
                .max_ms
                .iter()
                .map(|(k, v)| (*k, round(*v, 3)))
                .collect(),
            operator_first_error: self.operator.first_error.as_deref(),
            interim_lag_ms: LagSummary::from_histogram(&self.stream.interim_lag),
            final_lag_ms: LagSummary::from_histogram(&self.stream.final_lag),
            end_to_session_end_ms: LagSummary::from_histogram(&self.stream.end_to_session_end),
            audio_seconds: round(self.stream.audio_seconds, 3),
            segments: self.stream.segments,
            min_length_s: round(self.min_length.as_secs_f64(), 3),
            max_length_s: round(self.max_length.as_secs_f64(), 3),
            seed: self.seed,
            wall_s: round(self.wall.as_secs_f64(), 3),
            samples: &self.operator.samples,
            end_sample: &self.end_sample,
        };
        // Plain numbers, strings and string-keyed maps: cannot fail.
        serde_json::to_string(&r).expect("report serializes")
    }

    /// Writes the human summary (several lines, none starting with `{`).
    pub fn write_human<W: Write>(&self, out: &mut W) -> io::Result<()> {
        let s = &self.stream;
        let opt = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
        writeln!(
            out,
            "scenario    soak  ({:.1}s, {} streams of {:.0}-{:.0} s, {} batch connections, \
             disconnect rate {}, delete fraction {}, seed {})",
            self.duration.as_secs_f64(),
            self.streams,
            self.min_length.as_secs_f64(),
            self.max_length.as_secs_f64(),
            self.batch_connections,
            self.disconnect_rate,
            self.delete_fraction,
            self.seed
        )?;
        writeln!(
            out,
            "streams     {} started: {} completed, {} failed, {} abrupt disconnects, {} terminated \
             by DELETE",
            self.opened, s.completed, s.failed, s.aborted, s.terminated
        )?;
        writeln!(
            out,
            "lost finals {}  (completed or terminated sessions with a missing or out-of-order \
             final; {} of them terminated; {} ordering violations in all)",
            s.lost_finals(),
            s.terminated_with_violations,
            s.violations
        )?;
        self.write_deletes(out)?;
        let (i, f) = (
            LagSummary::from_histogram(&s.interim_lag),
            LagSummary::from_histogram(&s.final_lag),
        );
        writeln!(
            out,
            "lag ms      interim p50 {:.3} p99 {:.3} max {:.3} (n={});  final p50 {:.3} p99 {:.3} \
             max {:.3} (n={})",
            i.p50, i.p99, i.max, i.count, f.p50, f.p99, f.max, f.count
        )?;
        if !s.errors.is_empty() {
            let e: Vec<String> = s.errors.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            writeln!(out, "stream err  {}", e.join(", "))?;
        }
        if let Some(ff) = &s.first_failure {
            writeln!(out, "first fail  {ff}")?;
        }
        for v in &s.violation_examples {
            writeln!(out, "violation   {v}")?;
        }
        match &self.batch {
            Some(b) => {
                let st: Vec<String> = b
                    .stats
                    .status
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect();
                let l = b.latency();
                writeln!(
                    out,
                    "batch       {} requests ({:.1} req/s), status {}; {} errors; latency ms p50 \
                     {:.3} p99 {:.3} max {:.3}",
                    b.stats.responses(),
                    b.rps(),
                    if st.is_empty() {
                        "-".into()
                    } else {
                        st.join(", ")
                    },
                    b.stats.error_count(),
                    l.p50,
                    l.p99,
                    l.max
                )?;
                if let Some(e) = &b.stats.first_error {
                    writeln!(out, "batch err   {e}")?;
                }
            }
            None => writeln!(out, "batch       none")?,
        }
        let ops: Vec<String> = self
            .operator
            .results
            .iter()
            .map(|(path, m)| {
                let counts: Vec<String> = m.iter().map(|(k, v)| format!("{v}×{k}")).collect();
                let max = self.operator.max_ms.get(path).copied().unwrap_or(0.0);
                format!("{path} {} (max {max:.1} ms)", counts.join(" "))
            })
            .collect();
        writeln!(out, "operator    {}", ops.join("; "))?;
        if let Some(e) = &self.operator.first_error {
            writeln!(out, "op error    {e}")?;
        }
        let r = &self.rss;
        let growth = r
            .growth_pct
            .map_or_else(|| "-".into(), |g| format!("{g:+.1}%"));
        writeln!(
            out,
            "rss kB      warm-up {} (t={}s)  max {}  last under load {} (t={}s)  growth {growth};  \
             after close {}",
            opt(r.warmup_kb),
            r.warmup_t_s.map_or_else(|| "-".into(), |t| format!("{t:.0}")),
            opt(r.max_kb),
            opt(r.last_kb),
            r.last_t_s.map_or_else(|| "-".into(), |t| format!("{t:.0}")),
            opt(r.end_kb)
        )?;
        match (self.active_sessions_end, self.active_zero_after) {
            (Some(0), Some(d)) => writeln!(
                out,
                "server      active_sessions 0, {:.2} s after the last client closed",
                d.as_secs_f64()
            )?,
            (n, _) => writeln!(
                out,
                "server      active_sessions {} {:.0} s after the last client closed (NOT 0)",
                opt(n),
                DRAIN_LIMIT.as_secs_f64()
            )?,
        }
        let e = &self.end_sample;
        writeln!(
            out,
            "metrics     total_created {}  total_closed {}  rejected {}  at the end{};  leaked \
             sessions {}",
            opt(e.total_created),
            opt(e.total_closed),
            opt(e.rejected),
            if e.balanced() { "" } else { " (NOT balanced)" },
            opt(e.leaked())
        )?;
        Ok(())
    }

    /// The `deletes` lines of the human summary.
    fn write_deletes<W: Write>(&self, out: &mut W) -> io::Result<()> {
        let d = &self.deletes;
        if self.delete_fraction == 0.0 && d.sent == 0 {
            return writeln!(out, "deletes     none");
        }
        let other = if d.other.is_empty() {
            "none".to_string()
        } else {
            let o: Vec<String> = d.other.iter().map(|(k, v)| format!("{v}×{k}")).collect();
            o.join(" ")
        };
        writeln!(
            out,
            "deletes     {} sent: {}×200, {}×404, other {other} (max {:.1} ms);  {} planned, {} \
             skipped near their end, {} not reached",
            d.sent, d.ok, d.not_found, d.max_ms, d.planned, d.skipped_near_end, d.not_reached
        )?;
        let s = &self.stream;
        writeln!(
            out,
            "terminated {} sessions saw session_end terminated + close 1000 ({} matched to a 200); \
             {} finals before the DELETE, {} open segments cut; {} raced their own end",
            s.terminated, d.observed, s.terminated_finals, s.terminated_cut_segments, d.raced_end
        )?;
        if d.failures() > 0 {
            writeln!(
                out,
                "delete err  {} FAILED: {} answered 200 without the client seeing terminated, {} \
                 answered 404 yet terminated, {} other answers",
                d.failures(),
                d.unobserved,
                d.terminated_after_404,
                d.other.values().sum::<u64>()
            )?;
        }
        if let Some(f) = &d.first_failure {
            writeln!(out, "delete fail {f}")?;
        }
        Ok(())
    }
}
