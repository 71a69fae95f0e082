//! Counters and latency histograms, and the two report formats.
//!
//! Each worker thread fills its own [`Stats`] (no sharing on the hot path);
//! the runner merges them into one and wraps it in a [`Report`], which prints
//! a human summary ([`Report::write_human`]) and a single-line JSON object
//! ([`Report::json_line`]) with the same figures.
//!
//! The helpers every report shares live here once: [`new_histogram`] and
//! [`record_us`] for µs histograms, [`round`] for the figures in JSON lines.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::http::ErrorKind;

/// Highest latency the histograms track exactly (one hour, in µs); larger
/// values are clamped to it.
pub const MAX_LATENCY_US: u64 = 3_600_000_000;

/// What one worker (or, merged, a whole run) measured.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Latency of every response, any status, in µs.
    pub latency: Histogram<u64>,
    /// Latency of the 2xx responses only, in µs.
    pub latency_ok: Histogram<u64>,
    /// Responses by status code.
    pub status: BTreeMap<u16, u64>,
    /// Requests that got no response, by kind.
    pub errors: BTreeMap<ErrorKind, u64>,
    /// TCP connections opened during the measured phase.
    pub connects: u64,
    /// The first error seen, for the report.
    pub first_error: Option<String>,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

/// An empty µs histogram from 1 µs to [`MAX_LATENCY_US`], 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    // Bounds are constants known to be valid; this cannot fail.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// Records `duration` in a µs histogram, clamped to 1 µs..[`MAX_LATENCY_US`].
pub fn record_us(histogram: &mut Histogram<u64>, duration: Duration) {
    histogram.saturating_record(duration_us(duration));
}

fn duration_us(duration: Duration) -> u64 {
    (duration.as_micros().min(u128::from(MAX_LATENCY_US)) as u64).max(1)
}

/// `x` rounded to `digits` decimal places (for the JSON lines).
pub fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

impl Stats {
    /// Empty counters.
    pub fn new() -> Self {
        Stats {
            latency: new_histogram(),
            latency_ok: new_histogram(),
            status: BTreeMap::new(),
            errors: BTreeMap::new(),
            connects: 0,
            first_error: None,
        }
    }

    /// Records a response with `status` that took `latency`.
    pub fn record_response(&mut self, status: u16, latency: Duration) {
        let us = duration_us(latency);
        self.latency.saturating_record(us);
        if (200..300).contains(&status) {
            self.latency_ok.saturating_record(us);
        }
        *self.status.entry(status).or_insert(0) += 1;
    }

    /// Records a request that got no response.
    pub fn record_error(&mut self, kind: ErrorKind, detail: &str) {
        *self.errors.entry(kind).or_insert(0) += 1;
        if self.first_error.is_none() {
            self.first_error = Some(format!("{}: {detail}", kind.as_str()));
        }
    }

    /// Responses received (any status).
    pub fn responses(&self) -> u64 {
        self.status.values().sum()
    }

    /// Requests that failed without a response.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Stats) {
        // Same bounds on both sides, so `add` cannot fail.
        let _ = self.latency.add(&other.latency);
        let _ = self.latency_ok.add(&other.latency_ok);
        for (k, v) in &other.status {
            *self.status.entry(*k).or_insert(0) += v;
        }
        for (k, v) in &other.errors {
            *self.errors.entry(*k).or_insert(0) += v;
        }
        self.connects += other.connects;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }
}

/// Latency percentiles in milliseconds (0 when nothing was recorded).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

/// µs to ms, rounded to whole µs (3 decimals of ms).
fn us_to_ms(us: f64) -> f64 {
    us.round() / 1000.0
}

impl Percentiles {
    /// Reads the percentiles off a µs histogram.
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Percentiles {
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                p999: 0.0,
                max: 0.0,
                mean: 0.0,
            };
        }
        let q = |q: f64| us_to_ms(h.value_at_quantile(q) as f64);
        Percentiles {
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: us_to_ms(h.max() as f64),
            mean: us_to_ms(h.mean()),
        }
    }
}

/// One finished run: its settings and merged [`Stats`].
#[derive(Debug, Clone)]
pub struct Report {
    /// Scenario name (`health`, `transcribe`, …).
    pub scenario: String,
    /// Concurrent connections.
    pub connections: usize,
    /// Measured wall time (warm-up excluded).
    pub elapsed: Duration,
    /// Warm-up time whose results were discarded.
    pub warmup: Duration,
    /// Target total request rate for an open-loop run; `None` for closed loop.
    pub rate: Option<f64>,
    /// The merged measurements.
    pub stats: Stats,
}

/// The JSON line; the first keys are the documented ones, in order.
#[derive(Serialize)]
struct JsonReport<'a> {
    scenario: &'a str,
    connections: usize,
    duration_s: f64,
    requests: u64,
    rps: f64,
    status: BTreeMap<String, u64>,
    errors: u64,
    latency_ms: Percentiles,
    mode: &'static str,
    target_rps: Option<f64>,
    warmup_s: f64,
    latency_2xx_ms: Percentiles,
    error_kinds: BTreeMap<&'static str, u64>,
    connects: u64,
    first_error: Option<&'a str>,
}

impl Report {
    /// Responses per second over the measured time.
    pub fn rps(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.stats.responses() as f64 / secs
        } else {
            0.0
        }
    }

    /// Percentiles over every response.
    pub fn latency(&self) -> Percentiles {
        Percentiles::from_histogram(&self.stats.latency)
    }

    /// The report as one line of JSON (no trailing newline).
    pub fn json_line(&self) -> String {
        let report = JsonReport {
            scenario: &self.scenario,
            connections: self.connections,
            duration_s: round(self.elapsed.as_secs_f64(), 3),
            requests: self.stats.responses(),
            rps: round(self.rps(), 1),
            status: self
                .stats
                .status
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            errors: self.stats.error_count(),
            latency_ms: self.latency(),
            mode: if self.rate.is_some() {
                "open"
            } else {
                "closed"
            },
            target_rps: self.rate,
            warmup_s: round(self.warmup.as_secs_f64(), 3),
            latency_2xx_ms: Percentiles::from_histogram(&self.stats.latency_ok),
            error_kinds: self
                .stats
                .errors
                .iter()
                .map(|(k, v)| (k.as_str(), *v))
                .collect(),
            connects: self.stats.connects,
            first_error: self.stats.first_error.as_deref(),
        };
        // Serializing plain numbers, strings and maps with string keys cannot fail.
        serde_json::to_string(&report).expect("report serializes")
    }

    /// Writes the human summary (several lines, none starting with `{`).
    pub fn write_human<W: Write>(&self, out: &mut W) -> io::Result<()> {
        let mode = match self.rate {
            Some(r) => format!("open loop at {r} req/s"),
            None => "closed loop".to_string(),
        };
        writeln!(
            out,
            "scenario    {}  ({} connections, {mode}, {:.2}s measured after {:.2}s warm-up)",
            self.scenario,
            self.connections,
            self.elapsed.as_secs_f64(),
            self.warmup.as_secs_f64()
        )?;
        writeln!(
            out,
            "requests    {}  ({:.1} req/s)",
            self.stats.responses(),
            self.rps()
        )?;
        let status: Vec<String> = self
            .stats
            .status
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let status = if status.is_empty() {
            "none".to_string()
        } else {
            status.join(", ")
        };
        writeln!(out, "status      {status}")?;
        let kinds: Vec<String> = self
            .stats
            .errors
            .iter()
            .map(|(k, v)| format!("{}: {v}", k.as_str()))
            .collect();
        if kinds.is_empty() {
            writeln!(out, "errors      0")?;
        } else {
            writeln!(
                out,
                "errors      {}  ({})",
                self.stats.error_count(),
                kinds.join(", ")
            )?;
            if let Some(first) = &self.stats.first_error {
                writeln!(out, "first error {first}")?;
            }
        }
        writeln!(
            out,
            "connects    {} new TCP connections while measuring",
            self.stats.connects
        )?;
        let l = self.latency();
        writeln!(
            out,
            "latency ms  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  mean {:.3}",
            l.p50, l.p90, l.p99, l.p999, l.max, l.mean
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_and_reports() {
        let mut a = Stats::new();
        let mut b = Stats::new();
        for ms in 1..=100u64 {
            a.record_response(200, Duration::from_millis(ms));
        }
        b.record_response(503, Duration::from_micros(50));
        b.record_error(ErrorKind::Timeout, "read timed out");
        a.merge(&b);
        let report = Report {
            scenario: "health".into(),
            connections: 2,
            elapsed: Duration::from_secs(2),
            warmup: Duration::ZERO,
            rate: None,
            stats: a,
        };
        let v: serde_json::Value = serde_json::from_str(&report.json_line()).unwrap();
        assert_eq!(v["scenario"], "health");
        assert_eq!(v["requests"], 101);
        assert_eq!(v["rps"], 50.5);
        assert_eq!(v["status"]["200"], 100);
        assert_eq!(v["status"]["503"], 1);
        assert_eq!(v["errors"], 1);
        assert_eq!(v["error_kinds"]["timeout"], 1);
        let p50 = v["latency_ms"]["p50"].as_f64().unwrap();
        assert!((49.9..=50.1).contains(&p50), "{p50}");
        let max = v["latency_ms"]["max"].as_f64().unwrap();
        assert!((99.9..=100.1).contains(&max), "{max}");
        assert!(v["latency_2xx_ms"]["p50"].as_f64().unwrap() > 1.0);
        assert!(!report.json_line().contains('\n'));

        let mut human = Vec::new();
        report.write_human(&mut human).unwrap();
        let human = String::from_utf8(human).unwrap();
        assert!(human.contains("200: 100"));
        assert!(human.lines().all(|l| !l.starts_with('{')));
    }
}
