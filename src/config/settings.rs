//! The validated settings, grouped by the part of the server that reads
//! them: [`HttpSettings`] for the connection loop and the handlers,
//! [`SessionSettings`] for streaming sessions, [`ModelSettings`] for the
//! engine and its pool, `ClusterSettings` for cluster mode, and the few that
//! concern the whole process at the top. A module takes only its section.

use std::net::SocketAddr;
use std::time::Duration;

use super::{LogFormat, ModelChoice};
use crate::cluster::ClusterSettings;

/// Validated settings, shared read-only by every thread.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen_addr: SocketAddr,
    pub cores: usize,
    pub http: HttpSettings,
    pub session: SessionSettings,
    pub model: ModelSettings,
    pub log_format: LogFormat,
    pub log_level: String,
    /// How long sessions and in-flight requests get to finish once the
    /// drain refuses new work.
    pub shutdown_grace: Duration,
    /// How long after the signal the server keeps serving everything while
    /// readiness already says `draining` (0: refuse new work at once).
    pub drain_delay: Duration,
    pub uring: UringSettings,
    /// Cluster mode; `None` (no `redis_url`) is a single node.
    pub cluster: Option<ClusterSettings>,
    /// The engine tier (`--engine remote`, `transcription-server engine`).
    pub engine_tier: crate::engine::settings::EngineTierSettings,
}

/// What the HTTP connection loop and the handlers read: limits, timeouts,
/// browser origins and keys.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub body_bytes_max: usize,
    pub head_bytes_max: usize,
    /// How long a started request head, or a pause in a body, may take.
    pub read_timeout: Duration,
    /// How long a client may take to accept a response.
    pub write_timeout: Duration,
    /// How long an idle keep-alive connection stays open.
    pub keepalive_timeout: Duration,
    pub cors: CorsOrigins,
    /// Peers whose `X-Forwarded-For` names the client (empty: none).
    pub trusted_proxies: crate::http::proxy::TrustedProxies,
    pub api_key: Option<String>,
    pub admin_key: Option<String>,
}

/// What streaming sessions read: admission limits, the WebSocket bounds,
/// idle handling and the VAD and interim timings.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub max_sessions: usize,
    /// Concurrent sessions from one IP address; `None` is no limit.
    pub max_sessions_per_peer: Option<usize>,
    /// Longest session; `None` is no limit.
    pub max_session_duration: Option<Duration>,
    pub idle_timeout: Duration,
    pub cleanup_interval: Duration,
    pub ws_message_bytes_max: usize,
    pub ws_outbound_messages_max: usize,
    pub slow_consumer_timeout: Duration,
    pub vad_mode: u8,
    pub vad_hangover_ms: u32,
    pub max_segment_ms: u32,
    pub interim_interval_ms: u32,
    /// How long a dropped native session is kept for a resume
    /// (`ws/resume.rs`); `None` is off.
    pub resume_window: Option<Duration>,
}

/// What the engine and its worker pool read.
#[derive(Debug, Clone)]
pub struct ModelSettings {
    /// The engine.
    pub model: ModelChoice,
    pub workers: usize,
    pub queue_capacity: usize,
    /// Seconds of speech a batch request packs into one engine window; 0 is
    /// one job per segment.
    pub batch_window_seconds: f64,
    /// Admission by engine capacity (`model/capacity.rs`).
    pub admission: crate::model::capacity::AdmissionSettings,
    /// How long the mock takes to load (tests of `model_loading`).
    pub mock_load: Duration,
    pub mock_latency: Duration,
    pub mock_rtf: f64,
}

/// Which browser origins may call the API (CORS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// No CORS headers at all; preflights get 405 like any unknown method.
    Off,
    /// Any origin (`*`).
    Any,
    /// Exactly these origins (scheme://host[:port], compared byte for byte).
    List(Vec<String>),
}

impl CorsOrigins {
    /// Whether CORS is on at all.
    pub fn is_on(&self) -> bool {
        !matches!(self, CorsOrigins::Off)
    }

    /// The value of `Access-Control-Allow-Origin` for a request from
    /// `origin`, or `None` when that origin is not allowed.
    pub fn allow<'a>(&'a self, origin: &'a str) -> Option<&'a str> {
        match self {
            CorsOrigins::Off => None,
            CorsOrigins::Any => Some("*"),
            CorsOrigins::List(origins) => origins.iter().any(|o| o == origin).then_some(origin),
        }
    }
}

/// How each core's io_uring is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UringSettings {
    pub entries: u32,
    pub coop_taskrun: bool,
    pub sqpoll_idle_ms: Option<u32>,
}
