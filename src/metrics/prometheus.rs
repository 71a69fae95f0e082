//! `GET /metrics`: the aggregator's view in the Prometheus text exposition
//! format, version 0.0.4.
//!
//! Counters end in `_total`, durations are in seconds and sizes in bytes, all
//! under the `transcribe_` prefix. Latency histograms are kept as
//! hdrhistograms in microseconds and rendered here into fixed cumulative
//! buckets ([`BUCKETS_SECONDS`]).

use std::fmt::Write;

use hdrhistogram::Histogram;

use super::MetricsView;

/// Upper bounds of the histogram buckets, in seconds.
pub const BUCKETS_SECONDS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The live levels the view does not hold (they are read from atomics and
/// the pool at request time).
#[derive(Debug, Clone, Copy, Default)]
pub struct Levels {
    pub sessions_active: usize,
    pub sessions_max: usize,
    pub model_queue_depth: usize,
    pub model_queue_capacity: usize,
    pub model_jobs_in_flight: usize,
    /// Whether the model is loaded in every worker.
    pub model_ready: bool,
    /// A counter kept by the pool, not by the cores.
    pub model_worker_restarts: u64,
    /// Jobs the pool dropped unrun because their submitter had gone (kept
    /// by the pool).
    pub model_jobs_dropped: u64,
    /// The engine's capacity and load (kept by the pool).
    pub engine: crate::model::capacity::LoadFigures,
    pub uptime_seconds: f64,
}

/// Render the whole exposition.
pub fn render(view: &MetricsView, levels: &Levels) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let c = &view.counters;

    family(
        &mut out,
        "transcribe_http_requests_total",
        "counter",
        "HTTP responses by route and status.",
    );
    for ((route, status), count) in &c.http_responses {
        sample(
            &mut out,
            "transcribe_http_requests_total",
            &[("route", route), ("status", &status.to_string())],
            *count as f64,
        );
    }
    let simple_counters: [(&str, &str, f64); 28] = [
        (
            "transcribe_connections_accepted_total",
            "TCP connections accepted.",
            c.connections_accepted as f64,
        ),
        (
            "transcribe_batch_requests_total",
            "Batch transcription requests decoded.",
            c.batch_requests as f64,
        ),
        (
            "transcribe_batch_audio_seconds_total",
            "Seconds of audio in batch requests.",
            c.batch_audio_seconds,
        ),
        (
            "transcribe_batch_segments_total",
            "Speech segments found in batch requests.",
            c.batch_segments as f64,
        ),
        (
            "transcribe_model_jobs_total",
            "Jobs accepted by the model queue.",
            c.model_jobs as f64,
        ),
        (
            "transcribe_model_job_failures_total",
            "Jobs the engine failed.",
            c.model_job_failures as f64,
        ),
        (
            "transcribe_model_queue_full_total",
            "Jobs refused because the model queue was full.",
            c.model_queue_full as f64,
        ),
        (
            "transcribe_sessions_created_total",
            "Streaming sessions created.",
            c.sessions_created as f64,
        ),
        (
            "transcribe_sessions_rejected_total",
            "Streaming sessions refused at the session limit.",
            c.sessions_rejected as f64,
        ),
        (
            "transcribe_session_idle_timeouts_total",
            "Sessions closed for being idle.",
            c.idle_timeouts as f64,
        ),
        (
            "transcribe_stream_audio_bytes_total",
            "Bytes of audio received on streams.",
            c.stream_audio_bytes as f64,
        ),
        (
            "transcribe_stream_audio_seconds_total",
            "Seconds of audio received on streams.",
            c.stream_audio_seconds,
        ),
        (
            "transcribe_stream_chunks_total",
            "Binary audio frames received on streams.",
            c.stream_chunks as f64,
        ),
        (
            "transcribe_stream_segments_total",
            "Speech segments found in streams.",
            c.stream_segments as f64,
        ),
        (
            "transcribe_interims_shed_total",
            "Interim transcripts skipped or dropped under load.",
            c.interims_shed as f64,
        ),
        (
            "transcribe_slow_consumers_total",
            "Sessions closed because the client did not read.",
            c.slow_consumers as f64,
        ),
        (
            "transcribe_reactor_stalls_total",
            "Polls that held a core longer than the stall budget.",
            c.reactor_stalls as f64,
        ),
        (
            "transcribe_task_panics_total",
            "Panics caught at a request or task boundary (bugs; the core goes on).",
            c.task_panics as f64,
        ),
        (
            "transcribe_write_timeouts_total",
            "HTTP connections closed because the client did not take a response in time.",
            c.write_timeouts as f64,
        ),
        (
            "transcribe_model_worker_restarts_total",
            "Model workers that replaced their engine after it panicked.",
            levels.model_worker_restarts as f64,
        ),
        (
            "transcribe_model_jobs_dropped_total",
            "Model jobs dropped unrun because their session or request had gone (client left, session ended).",
            levels.model_jobs_dropped as f64,
        ),
        (
            "transcribe_interims_superseded_total",
            "Interims given up in flight because their segment's final went to the engine first.",
            c.interims_superseded as f64,
        ),
        (
            "transcribe_sessions_rejected_per_peer_total",
            "Streaming sessions refused at the per-address limit (also in transcribe_sessions_rejected_total).",
            c.sessions_rejected_per_peer as f64,
        ),
        (
            "transcribe_session_detaches_total",
            "Streaming sessions kept for a resume after their connection dropped.",
            c.session_detaches as f64,
        ),
        (
            "transcribe_session_resumes_total",
            "Detached streaming sessions continued on a new connection.",
            c.session_resumes as f64,
        ),
        (
            "transcribe_session_resume_expiries_total",
            "Detached streaming sessions ended because their resume window ran out.",
            c.session_resume_expiries as f64,
        ),
        (
            "transcribe_session_resumes_refused_total",
            "Resume requests refused (unknown or expired session, wrong token, already attached, gap, off).",
            c.session_resumes_refused as f64,
        ),
        (
            "transcribe_session_resume_handoffs_total",
            "Resumes whose connection another core accepted and handed to the core owning the session (also in transcribe_session_resumes_total).",
            c.session_resume_handoffs as f64,
        ),
    ];
    for (name, help, value) in simple_counters {
        family(&mut out, name, "counter", help);
        sample(&mut out, name, &[], value);
    }
    family(
        &mut out,
        "transcribe_sessions_closed_total",
        "counter",
        "Streaming sessions closed, by reason.",
    );
    for (reason, count) in &c.sessions_closed {
        sample(
            &mut out,
            "transcribe_sessions_closed_total",
            &[("reason", reason)],
            *count as f64,
        );
    }
    family(
        &mut out,
        "transcribe_transcripts_total",
        "counter",
        "Transcripts sent on streams, by kind.",
    );
    sample(
        &mut out,
        "transcribe_transcripts_total",
        &[("kind", "interim")],
        c.transcripts_interim as f64,
    );
    sample(
        &mut out,
        "transcribe_transcripts_total",
        &[("kind", "final")],
        c.transcripts_final as f64,
    );

    family(
        &mut out,
        "transcribe_sessions",
        "gauge",
        "Live sessions by state and core.",
    );
    family_samples_by_core(&mut out, view);
    family(
        &mut out,
        "transcribe_connections",
        "gauge",
        "Open connections by core.",
    );
    for (core, gauges) in &view.core_gauges {
        sample(
            &mut out,
            "transcribe_connections",
            &[("core", &core.to_string())],
            gauges.connections as f64,
        );
    }
    let gauges: [(&str, &str, f64); 7] = [
        (
            "transcribe_sessions_active",
            "Live sessions across all cores (the limit's count).",
            levels.sessions_active as f64,
        ),
        (
            "transcribe_sessions_max",
            "The session limit.",
            levels.sessions_max as f64,
        ),
        (
            "transcribe_model_queue_depth",
            "Jobs waiting in the model queue.",
            levels.model_queue_depth as f64,
        ),
        (
            "transcribe_model_queue_capacity",
            "Capacity of the model queue.",
            levels.model_queue_capacity as f64,
        ),
        (
            "transcribe_model_jobs_in_flight",
            "Jobs a model worker is running.",
            levels.model_jobs_in_flight as f64,
        ),
        (
            "transcribe_model_ready",
            "1 once the model is loaded in every worker; 0 while it loads or after it failed to.",
            f64::from(u8::from(levels.model_ready)),
        ),
        (
            "transcribe_uptime_seconds",
            "Seconds since the server started.",
            levels.uptime_seconds,
        ),
    ];
    for (name, help, value) in gauges {
        family(&mut out, name, "gauge", help);
        sample(&mut out, name, &[], value);
    }
    render_engine(&mut out, &levels.engine);

    family(
        &mut out,
        "transcribe_http_request_duration_seconds",
        "histogram",
        "From a complete request head to the response written, by route.",
    );
    for (route, histogram) in &view.histograms.http_latency_us {
        buckets(
            &mut out,
            "transcribe_http_request_duration_seconds",
            &[("route", route)],
            histogram,
        );
    }
    let histograms: [(&str, &str, &Histogram<u64>); 4] = [
        (
            "transcribe_final_latency_seconds",
            "From a segment's last audio arriving to its final being queued for the client.",
            &view.histograms.final_latency_us,
        ),
        (
            "transcribe_model_latency_seconds",
            "Engine time per job.",
            &view.histograms.model_latency_us,
        ),
        (
            "transcribe_model_queue_wait_seconds",
            "Time a job waited in the model queue.",
            &view.histograms.queue_wait_us,
        ),
        (
            "transcribe_interim_latency_seconds",
            "From an interim's request to its transcript being queued for the client.",
            &view.histograms.interim_latency_us,
        ),
    ];
    for (name, help, histogram) in histograms {
        family(&mut out, name, "histogram", help);
        buckets(&mut out, name, &[], histogram);
    }
    out
}

/// Admission by engine capacity: the estimates and the refusals.
fn render_engine(out: &mut String, engine: &crate::model::capacity::LoadFigures) {
    let name = "transcribe_engine_capacity_audio_seconds_per_second";
    family(
        out,
        name,
        "gauge",
        "Audio seconds per second the model workers sustain, measured, by work class (absent until known).",
    );
    for (class, value) in [
        ("live", engine.live_capacity),
        ("batch", engine.batch_capacity),
    ] {
        if let Some(value) = value {
            sample(out, name, &[("class", class)], value);
        }
    }
    let gauges: [(&str, &str, f64); 4] = [
        (
            "transcribe_engine_stream_demand_audio_seconds_per_second",
            "Audio seconds per second the admitted streams are estimated to ask of the engine.",
            engine.stream_demand,
        ),
        (
            "transcribe_engine_utilisation",
            "The streams' estimated demand over the live capacity (0 while the capacity is unknown).",
            engine.utilisation,
        ),
        (
            "transcribe_engine_batch_backlog_seconds",
            "Seconds of engine time the admitted batch work still needs.",
            engine.batch_backlog_s,
        ),
        (
            "transcribe_engine_saturated",
            "1 while a new stream would be refused at the engine's capacity.",
            f64::from(u8::from(engine.saturated)),
        ),
    ];
    for (name, help, value) in gauges {
        family(out, name, "gauge", help);
        sample(out, name, &[], value);
    }
    let name = "transcribe_engine_refusals_total";
    family(
        out,
        name,
        "counter",
        "Streams and batch requests refused overloaded at the engine's capacity, by kind.",
    );
    sample(
        out,
        name,
        &[("kind", "stream")],
        engine.refused_streams as f64,
    );
    sample(out, name, &[("kind", "batch")], engine.refused_batch as f64);
}

/// Cluster mode only: the agent's counters and, with
/// `cluster_max_sessions`, the node's admission leases. Appended to
/// [`render`]'s output.
pub fn render_cluster(
    out: &mut String,
    stats: &crate::cluster::ClusterStats,
    leases: Option<crate::cluster::AdmissionSnapshot>,
) {
    family(
        out,
        "transcribe_cluster_available",
        "gauge",
        "1 while the cluster agent's Redis connection answers.",
    );
    sample(
        out,
        "transcribe_cluster_available",
        &[],
        f64::from(u8::from(stats.available)),
    );
    let counters = [
        (
            "transcribe_cluster_updates_dropped_total",
            "Session updates and metrics dropped because the agent's queue was full.",
            stats.updates_dropped,
        ),
        (
            "transcribe_cluster_urgent_dropped_total",
            "Opens, closes and queries refused because the agent's urgent queue was full.",
            stats.urgent_dropped,
        ),
        (
            "transcribe_cluster_reconnects_total",
            "Successful (re)connections to Redis.",
            stats.reconnects,
        ),
        (
            "transcribe_cluster_remote_timeouts_total",
            "Deletes routed to another node that did not answer in time.",
            stats.remote_timeouts,
        ),
    ];
    for (name, help, value) in counters {
        family(out, name, "counter", help);
        sample(out, name, &[], value as f64);
    }
    if let Some(leases) = leases {
        family(
            out,
            "transcribe_cluster_leases_held",
            "gauge",
            "Admission leases this node holds in Redis (in use and pooled).",
        );
        sample(
            out,
            "transcribe_cluster_leases_held",
            &[],
            f64::from(leases.held),
        );
        family(
            out,
            "transcribe_cluster_leases_in_use",
            "gauge",
            "Admission leases held by live sessions of this node.",
        );
        sample(
            out,
            "transcribe_cluster_leases_in_use",
            &[],
            f64::from(leases.in_use),
        );
    }
}

fn family_samples_by_core(out: &mut String, view: &MetricsView) {
    for (core, gauges) in &view.core_gauges {
        let core = core.to_string();
        for (state, count) in ["created", "active", "closing"].iter().zip(gauges.sessions) {
            sample(
                out,
                "transcribe_sessions",
                &[("state", state), ("core", &core)],
                count as f64,
            );
        }
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    write_labels(out, labels);
    let _ = writeln!(out, " {}", format_value(value));
}

fn write_labels(out: &mut String, labels: &[(&str, &str)]) {
    if labels.is_empty() {
        return;
    }
    out.push('{');
    for (index, (key, value)) in labels.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        let _ = write!(out, "{key}=\"{}\"", escape_label(value));
    }
    out.push('}');
}

/// Label values escape backslash, double quote and newline.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn format_value(value: f64) -> String {
    if value.is_finite() && value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

/// Cumulative buckets, `_sum` and `_count` of a microsecond histogram.
fn buckets(out: &mut String, name: &str, labels: &[(&str, &str)], histogram: &Histogram<u64>) {
    let mut cumulative = vec![0u64; BUCKETS_SECONDS.len()];
    let mut sum_seconds = 0.0;
    for value in histogram.iter_recorded() {
        let seconds = value.value_iterated_to() as f64 / 1e6;
        let count = value.count_at_value();
        sum_seconds += seconds * count as f64;
        if let Some(first) = BUCKETS_SECONDS.iter().position(|bound| seconds <= *bound) {
            cumulative[first] += count;
        }
    }
    let mut running = 0;
    let bucket_name = format!("{name}_bucket");
    for (bound, count) in BUCKETS_SECONDS.iter().zip(&cumulative) {
        running += count;
        let le = format_value(*bound);
        let mut with_le = labels.to_vec();
        with_le.push(("le", &le));
        sample(out, &bucket_name, &with_le, running as f64);
    }
    let mut with_inf = labels.to_vec();
    with_inf.push(("le", "+Inf"));
    sample(out, &bucket_name, &with_inf, histogram.len() as f64);
    sample(out, &format!("{name}_sum"), labels, sum_seconds);
    sample(
        out,
        &format!("{name}_count"),
        labels,
        histogram.len() as f64,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{new_histogram, record_duration};
    use std::time::Duration;

    #[test]
    fn histograms_become_cumulative_buckets() {
        let mut view = MetricsView::default();
        for micros in [50, 700, 700, 3_000, 20_000_000] {
            record_duration(
                &mut view.histograms.model_latency_us,
                Duration::from_micros(micros),
            );
        }
        view.histograms
            .http_latency_us
            .insert("health", new_histogram());
        let text = render(&view, &Levels::default());
        assert!(text.contains("transcribe_model_latency_seconds_bucket{le=\"0.0001\"} 1\n"));
        assert!(text.contains("transcribe_model_latency_seconds_bucket{le=\"0.001\"} 3\n"));
        assert!(text.contains("transcribe_model_latency_seconds_bucket{le=\"0.005\"} 4\n"));
        assert!(text.contains("transcribe_model_latency_seconds_bucket{le=\"10\"} 4\n"));
        assert!(text.contains("transcribe_model_latency_seconds_bucket{le=\"+Inf\"} 5\n"));
        assert!(text.contains("transcribe_model_latency_seconds_count 5\n"));
        assert!(
            text.contains("transcribe_http_request_duration_seconds_count{route=\"health\"} 0\n")
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
