//! [`ServerShared`]: the state every thread of the node reads, shared through
//! an `Arc` and written only through atomics (and a `OnceLock` at start-up):
//! the settings, the model queue, the session limits, every core's inbox,
//! the metrics view and, in cluster mode, the cluster agent's handles.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use super::permit::SessionLimits;
use super::CoreInbox;
use crate::cluster::{ClusterAdmission, ClusterHandle};
use crate::config::Settings;
use crate::metrics::MetricsHandle;
use crate::model::pool::ToPool;

/// State every thread reads; shared through an `Arc`. Written only through
/// atomics (and a `OnceLock` at start-up).
pub struct ServerShared {
    pub settings: Settings,
    pub to_pool: ToPool,
    pub model_name: &'static str,
    pub started_at: Instant,
    /// `io_uring`, `epoll`, or `mixed` when cores got different drivers.
    pub io_driver: OnceLock<&'static str>,
    /// Set once on SIGTERM/SIGINT: readiness is 503 `draining` and health
    /// says `draining` from then on.
    pub draining: AtomicBool,
    /// Set once the drain delay is over: new streams and batch requests are
    /// refused with `shutting_down` while the live ones finish. Never set
    /// before `draining`.
    pub refusing_work: AtomicBool,
    /// The session limits and the live counts they bound (every core's
    /// streaming connections take their permits here).
    pub session_limits: Arc<SessionLimits>,
    /// Live sessions by state: created, active, closing.
    pub sessions_by_state: [AtomicUsize; 3],
    /// Each core's inbox, indexed by core id, for cross-core requests.
    pub core_inboxes: Vec<CoreInbox>,
    pub metrics: MetricsHandle,
    /// The cluster agent's handles; `None` on a single node (no `redis_url`).
    pub cluster: Option<ClusterShared>,
    /// The remote engine (`--engine remote`), for its metrics.
    pub engine_tier: Option<Arc<crate::engine::remote::RemoteEngine>>,
}

impl ServerShared {
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Whether new work (a stream, a batch request) is refused with
    /// `shutting_down`: the drain delay is over.
    pub fn is_refusing_work(&self) -> bool {
        self.refusing_work.load(Ordering::Acquire)
    }
}

/// What every core keeps of the cluster agent (both cross threads; neither
/// ever blocks the caller).
pub struct ClusterShared {
    /// Registry updates and operator queries.
    pub handle: ClusterHandle,
    /// Cluster-wide admission; `None` without `cluster_max_sessions`, when
    /// each node's own limit is the only one and admission costs nothing.
    pub admission: Option<ClusterAdmission>,
}
