//! The operator endpoints: `GET /v1/sessions`, `GET` and `DELETE
//! /v1/sessions/{id}`, `GET /v1/sessions/metrics`.
//!
//! Sessions live on the core that accepted them. The core that receives an
//! operator request answers for its own shard directly and asks every other
//! core through its inbox, then merges the answers; a core that does not
//! answer within [`CROSS_CORE_TIMEOUT`] is left out rather than holding the
//! request.

use std::sync::atomic::Ordering;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::core::{CoreCommand, CoreContext};
use crate::error::{ApiError, ErrorKind};
use crate::http::query::parse_query;
use crate::http::{Request, Response};
use crate::ws::conn::SessionInfo;
use crate::ws::session::SessionState;

/// How long the receiving core waits for the others.
pub const CROSS_CORE_TIMEOUT: Duration = Duration::from_secs(2);

/// Every session of every core, oldest first.
async fn all_sessions(core: &CoreContext) -> Vec<SessionInfo> {
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

#[derive(Serialize)]
struct SessionList {
    count: usize,
    sessions: Vec<SessionInfo>,
}

/// `GET /v1/sessions[?state=S][&limit=N]`.
///
/// # Errors
/// `400` for an unknown state or a bad limit.
pub async fn list(core: &CoreContext, request: &Request) -> Result<Response, ApiError> {
    let mut state = None;
    let mut limit = usize::MAX;
    let pairs = parse_query(request.head.query.as_deref())
        .map_err(|pair| ApiError::bad_request(format!("malformed query parameter {pair:?}")))?;
    for (name, value) in pairs {
        match name.as_str() {
            "state" => {
                state = Some(SessionState::parse(&value).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "state must be created, active, closing or closed, got {value:?}"
                    ))
                })?)
            }
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|limit| *limit >= 1)
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "limit must be a positive integer, got {value:?}"
                        ))
                    })?
            }
            _ => {}
        }
    }
    let sessions: Vec<SessionInfo> = all_sessions(core)
        .await
        .into_iter()
        .filter(|info| state.is_none_or(|state| info.state == state.name()))
        .take(limit)
        .collect();
    Ok(Response::json(
        200,
        &SessionList {
            count: sessions.len(),
            sessions,
        },
    ))
}

fn session_id(request: &Request) -> &str {
    request
        .head
        .path
        .strip_prefix("/v1/sessions/")
        .unwrap_or_default()
}

fn not_found(id: &str) -> ApiError {
    let shown: String = id.chars().take(64).collect();
    ApiError::new(ErrorKind::SessionNotFound, format!("no session {shown}"))
}

/// `GET /v1/sessions/{id}`.
///
/// # Errors
/// `404 session_not_found`.
pub async fn get(core: &CoreContext, request: &Request) -> Result<Response, ApiError> {
    let id = session_id(request);
    if let Some(ctx) = core.sessions.borrow().get(id) {
        return Ok(Response::json(200, &ctx.info()));
    }
    all_sessions(core)
        .await
        .into_iter()
        .find(|info| info.session_id == id)
        .map(|info| Response::json(200, &info))
        .ok_or_else(|| not_found(id))
}

#[derive(Serialize)]
struct Deleted<'a> {
    session_id: &'a str,
    state: &'static str,
}

/// `DELETE /v1/sessions/{id}`: the client gets `session_end` `terminated`
/// and its socket is closed.
///
/// # Errors
/// `404 session_not_found`.
pub async fn delete(core: &CoreContext, request: &Request) -> Result<Response, ApiError> {
    let id = session_id(request);
    let mut found = core.terminate_session(id).is_some();
    if !found {
        let mut replies = Vec::new();
        for (core_id, inbox) in core.shared.core_inboxes.iter().enumerate() {
            if core_id == core.core_id {
                continue;
            }
            let (reply, receiver) = futures_channel::oneshot::channel();
            let command = CoreCommand::TerminateSession {
                id: id.to_string(),
                reply,
            };
            if inbox.unbounded_send(command).is_ok() {
                replies.push(receiver);
            }
        }
        for receiver in replies {
            if let Ok(Ok(Some(_))) = monoio::time::timeout(CROSS_CORE_TIMEOUT, receiver).await {
                found = true;
            }
        }
    }
    if !found {
        return Err(not_found(id));
    }
    Ok(Response::json(
        200,
        &Deleted {
            session_id: id,
            state: SessionState::Closed.name(),
        },
    ))
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
}

/// `GET /v1/sessions/metrics`: live gauges from the shared atomics, totals
/// and latency quantiles from the aggregator's latest view (at most one
/// publish interval old).
pub fn metrics(core: &CoreContext) -> Response {
    let shared = &core.shared;
    let view = shared.metrics.latest();
    let counters = &view.counters;
    let gauge = |index: usize| shared.sessions_by_state[index].load(Ordering::Relaxed);
    Response::json(
        200,
        &SessionMetrics {
            active_sessions: shared.active_sessions.load(Ordering::Relaxed),
            by_state: ByState {
                created: gauge(0),
                active: gauge(1),
                closing: gauge(2),
            },
            max_sessions: shared.settings.max_sessions,
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
        },
    )
}
