//! `GET /metrics`: Prometheus text exposition (admin key when one is set).

use crate::core::CoreContext;
use crate::http::Response;
use crate::metrics::prometheus::{self, Levels};
use crate::model::pool::ModelState;

/// The content type of the text exposition format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn prometheus(core: &CoreContext) -> Response {
    let shared = &core.shared;
    let levels = Levels {
        sessions_active: shared.session_limits.active(),
        sessions_max: shared.settings.session.max_sessions,
        model_queue_depth: shared.to_pool.queue_depth(),
        model_queue_capacity: shared.to_pool.queue_capacity(),
        model_jobs_in_flight: shared.to_pool.in_flight(),
        model_ready: shared.to_pool.model_state() == ModelState::Ready,
        model_worker_restarts: shared.to_pool.worker_restarts(),
        model_jobs_dropped: shared.to_pool.jobs_dropped(),
        engine: shared.to_pool.load().figures(),
        uptime_seconds: shared.started_at.elapsed().as_secs_f64(),
    };
    let mut text = prometheus::render(&shared.metrics.latest(), &levels);
    if let Some(cluster) = &shared.cluster {
        let leases = cluster
            .admission
            .as_ref()
            .map(|admission| admission.snapshot());
        prometheus::render_cluster(&mut text, &cluster.handle.stats(), leases);
    }
    if let Some(remote) = &shared.engine_tier {
        remote.render_prometheus(&mut text);
    }
    Response::with_body(200, CONTENT_TYPE, text.into_bytes())
}
