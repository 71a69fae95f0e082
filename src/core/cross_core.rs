//! Operations on the sessions of every core of this node. The core that
//! runs one answers for its own shard directly and asks every other core
//! through its inbox ([`CoreCommand`]), then merges the answers; a core that
//! does not answer within [`CROSS_CORE_TIMEOUT`] is left out rather than
//! holding the caller. The operator endpoints use these, and so do deletes
//! from other nodes and the figures a node publishes to the cluster.

use std::sync::atomic::Ordering;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::{CoreCommand, CoreContext, SessionInfo};

/// How long the receiving core waits for the others.
pub const CROSS_CORE_TIMEOUT: Duration = Duration::from_secs(2);

/// Every session of every core, oldest first.
pub async fn all_sessions(core: &CoreContext) -> Vec<SessionInfo> {
    let mut sessions = core.session_infos();
    let mut replies = Vec::new();
    for (core_id, inbox) in core.shared.core_inboxes.iter().enumerate() {
        if core_id == core.core_id {
            continue;
        }
        let (reply, receiver) = futures_channel::oneshot::channel();
        if inbox
            .unbounded_send(CoreCommand::ListSessions { reply })
            .is_ok()
        {
            replies.push((core_id, receiver));
        }
    }
    for (core_id, receiver) in replies {
        match monoio::time::timeout(CROSS_CORE_TIMEOUT, receiver).await {
            Ok(Ok(infos)) => sessions.extend(infos),
            _ => tracing::warn!(
                core = core.core_id,
                other = core_id,
                "a core did not list its sessions in time"
            ),
        }
    }
    sessions.sort_by(|a, b| {
        a.created_at
            .cmp(&b.created_at)
            .then_with(|| a.session_id.cmp(&b.session_id))
    });
    sessions
}

/// Terminate a session on whichever core of this node has it; `false` if
/// none has. Used by `DELETE` and by deletes from other nodes.
pub async fn terminate_on_any_core(core: &CoreContext, id: &str, flush: bool) -> bool {
    if core.terminate_session(id, flush).is_some() {
        return true;
    }
    let mut replies = Vec::new();
    for (core_id, inbox) in core.shared.core_inboxes.iter().enumerate() {
        if core_id == core.core_id {
            continue;
        }
        let (reply, receiver) = futures_channel::oneshot::channel();
        let command = CoreCommand::TerminateSession {
            id: id.to_string(),
            flush,
            reply,
        };
        if inbox.unbounded_send(command).is_ok() {
            replies.push(receiver);
        }
    }
    let mut found = false;
    for receiver in replies {
        if let Ok(Ok(Some(_))) = monoio::time::timeout(CROSS_CORE_TIMEOUT, receiver).await {
            found = true;
        }
    }
    found
}

#[derive(Serialize)]
struct ByState {
    created: usize,
    active: usize,
    closing: usize,
}

#[derive(Serialize)]
struct Quantiles {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

impl Quantiles {
    /// Milliseconds from a microsecond histogram (zeros when empty).
    fn of(histogram: &Histogram<u64>) -> Quantiles {
        let ms = |micros: u64| micros as f64 / 1000.0;
        if histogram.is_empty() {
            return Quantiles {
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                max: 0.0,
            };
        }
        Quantiles {
            p50: ms(histogram.value_at_quantile(0.5)),
            p90: ms(histogram.value_at_quantile(0.9)),
            p99: ms(histogram.value_at_quantile(0.99)),
            max: ms(histogram.max()),
        }
    }
}

#[derive(Serialize)]
struct Latencies {
    #[serde(rename = "final")]
    final_transcript: Quantiles,
    model: Quantiles,
}

#[derive(Serialize)]
struct SessionMetrics {
    active_sessions: usize,
    by_state: ByState,
    max_sessions: usize,
    total_created: u64,
    total_closed: u64,
    rejected: u64,
    idle_timeouts: u64,
    audio_bytes: u64,
    audio_seconds: f64,
    chunks: u64,
    segments: u64,
    transcripts: u64,
    latency_ms: Latencies,
    engine: EngineView,
}

/// The engine's capacity and load (`model/capacity.rs`). Every field is a
/// sum or a count, so the cluster view's per-field sum stays meaningful;
/// utilisation is `stream_demand / live_capacity`.
#[derive(Serialize)]
struct EngineView {
    /// Audio seconds per second the workers sustain on live jobs (null
    /// until measured).
    live_capacity: Option<f64>,
    /// The same on batch windows.
    batch_capacity: Option<f64>,
    /// What the admitted streams are estimated to ask, audio s per s.
    stream_demand: f64,
    /// Seconds of engine time the admitted batch work still needs.
    batch_backlog_s: f64,
    /// Streams refused because the engine is saturated, since start.
    refused_streams: u64,
    /// Batch requests refused at the backlog bound, since start.
    refused_batch: u64,
    /// Jobs the pool dropped unrun (their session or request had gone, or
    /// an interim was superseded).
    jobs_dropped: u64,
    /// Interims given up in flight when their final went to the engine.
    interims_superseded: u64,
}

/// The node's `/v1/sessions/metrics` view: live gauges from the shared
/// atomics, totals and latency quantiles from the aggregator's latest view
/// (at most one publish interval old). Also what the node publishes to the
/// cluster registry.
pub fn metrics_value(core: &CoreContext) -> serde_json::Value {
    let shared = &core.shared;
    let view = shared.metrics.latest();
    let counters = &view.counters;
    let gauge = |index: usize| shared.sessions_by_state[index].load(Ordering::Relaxed);
    serde_json::to_value(&SessionMetrics {
        active_sessions: shared.session_limits.active(),
        by_state: ByState {
            created: gauge(0),
            active: gauge(1),
            closing: gauge(2),
        },
        max_sessions: shared.session_limits.max_sessions(),
        total_created: counters.sessions_created,
        total_closed: counters.sessions_closed.values().sum(),
        rejected: counters.sessions_rejected,
        idle_timeouts: counters.idle_timeouts,
        audio_bytes: counters.stream_audio_bytes,
        audio_seconds: (counters.stream_audio_seconds * 1000.0).round() / 1000.0,
        chunks: counters.stream_chunks,
        segments: counters.stream_segments,
        transcripts: counters.transcripts_interim + counters.transcripts_final,
        latency_ms: Latencies {
            final_transcript: Quantiles::of(&view.histograms.final_latency_us),
            model: Quantiles::of(&view.histograms.model_latency_us),
        },
        engine: {
            let figures = shared.to_pool.load().figures();
            let round = |value: f64| (value * 1000.0).round() / 1000.0;
            EngineView {
                live_capacity: figures.live_capacity.map(round),
                batch_capacity: figures.batch_capacity.map(round),
                stream_demand: round(figures.stream_demand),
                batch_backlog_s: round(figures.batch_backlog_s),
                refused_streams: figures.refused_streams,
                refused_batch: figures.refused_batch,
                jobs_dropped: shared.to_pool.jobs_dropped(),
                interims_superseded: counters.interims_superseded,
            }
        },
    })
    .unwrap_or_default()
}
