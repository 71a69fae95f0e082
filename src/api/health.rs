//! `GET /v1/health` and `GET /v1/ready`.

use serde::Serialize;

use crate::core::CoreContext;
use crate::http::Response;
use crate::model::pool::ModelState;

#[derive(Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
    uptime_s: f64,
    active_sessions: usize,
    max_sessions: usize,
    cores: usize,
    io_driver: &'static str,
    model: &'static str,
    /// `loading`, `ready` or `failed`.
    model_state: &'static str,
}

/// The health document: always 200 while the process serves; `status` is
/// `draining` from the shutdown signal on.
pub fn health(core: &CoreContext) -> Response {
    let shared = &core.shared;
    let uptime_s = (shared.started_at.elapsed().as_secs_f64() * 10.0).round() / 10.0;
    Response::json(
        200,
        &Health {
            status: if shared.is_draining() {
                "draining"
            } else {
                "ok"
            },
            version: crate::VERSION,
            uptime_s,
            active_sessions: shared.session_limits.active(),
            max_sessions: shared.settings.session.max_sessions,
            cores: shared.settings.cores,
            io_driver: shared.io_driver.get().copied().unwrap_or("starting"),
            model: shared.model_name,
            model_state: match shared.to_pool.model_state() {
                ModelState::Loading => "loading",
                ModelState::Ready => "ready",
                ModelState::Failed => "failed",
            },
        },
    )
}

#[derive(Serialize)]
struct Ready {
    ready: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

/// Readiness: 200 while accepting work; 503 while the model loads (or
/// failed to), while draining, while the model queue is full or while the
/// engine is saturated (a new stream would be refused), so a load balancer
/// sends work elsewhere.
pub fn ready(core: &CoreContext) -> Response {
    let shared = &core.shared;
    let reason = if shared.is_draining() {
        Some("draining")
    } else if let Some(reason) = match shared.to_pool.model_state() {
        ModelState::Loading => Some("model_loading"),
        ModelState::Failed => Some("model_failed"),
        ModelState::Ready => None,
    } {
        Some(reason)
    } else if shared.to_pool.is_full() {
        Some("model queue full")
    } else if shared.to_pool.load().is_saturated() {
        Some("engine_saturated")
    } else {
        None
    };
    let status = if reason.is_some() { 503 } else { 200 };
    Response::json(
        status,
        &Ready {
            ready: reason.is_none(),
            reason,
        },
    )
}
