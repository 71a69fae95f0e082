//! Settings: command-line flags, `TRANSCRIBE_*` environment variables and
//! defaults, validated once at start-up.
//!
//! Every setting of the public contract has a flag `--name-with-dashes` and a
//! variable `TRANSCRIBE_NAME`; a flag wins over its variable. [`Config::parse`]
//! reads them and [`Config::validate`] ([`validate`]) turns them into
//! [`Settings`] ([`settings`]), the only form the rest of the server sees,
//! grouped into one section per part of the server, or a message that names
//! the bad value.

mod settings;
mod validate;

pub use settings::{
    CorsOrigins, HttpSettings, ModelSettings, SessionSettings, Settings, UringSettings,
};

use std::net::{IpAddr, Ipv4Addr};

use clap::{Parser, ValueEnum};

use crate::cluster::FailMode;
pub use crate::engine::settings::EngineMode;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Which speech engine transcribes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModelKind {
    /// The deterministic mock (NATO-alphabet words; for tests and load tests).
    Mock,
    /// Whisper through whisper.cpp (builds with the `whisper` feature).
    Whisper,
    /// Whisper through CTranslate2, faster-whisper's engine (builds with the `ct2` feature).
    Ct2,
}

/// How the `ct2` engine stores and multiplies Whisper's weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ComputeType {
    /// 8-bit integer weights and products, the rest in 32-bit floats.
    Int8,
    /// 32-bit floats throughout.
    Float32,
    /// CTranslate2's explicit name for int8 weights with float32 elsewhere.
    #[value(name = "int8_float32")]
    Int8Float32,
}

impl ComputeType {
    /// CTranslate2's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            ComputeType::Int8 => "int8",
            ComputeType::Float32 => "float32",
            ComputeType::Int8Float32 => "int8_float32",
        }
    }
}

/// The validated engine choice.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelChoice {
    Mock,
    Whisper {
        /// The ggml weights.
        path: std::path::PathBuf,
        /// Threads each model worker runs a job on.
        threads: usize,
        /// The encoder context floor of a stream's jobs, in 20 ms positions.
        live_min_audio_ctx: usize,
    },
    Ct2 {
        /// The CTranslate2 model directory.
        dir: std::path::PathBuf,
        /// Threads each model worker runs a job on.
        threads: usize,
        compute: ComputeType,
        /// The encoder input floor of a stream's jobs, in 20 ms positions.
        live_min_audio_ctx: usize,
    },
}

impl ModelChoice {
    /// The name `/v1/health` and the responses report.
    pub fn name(&self) -> &'static str {
        match self {
            ModelChoice::Mock => "mock",
            ModelChoice::Whisper { .. } => "whisper",
            ModelChoice::Ct2 { .. } => "ct2",
        }
    }
}

/// The batch window with Whisper: most of its 30 s encoder window, with
/// room for the context margin (docs/MODELS.md has the measured effect).
pub const DEFAULT_WHISPER_BATCH_WINDOW_SECONDS: f64 = 28.0;

/// Where `--model whisper` looks for its weights by default (what
/// `scripts/fetch-model.sh` writes).
pub const DEFAULT_WHISPER_MODEL_PATH: &str = "models/ggml-tiny.en.bin";

/// Where `--model ct2` looks for its model directory by default (what
/// `scripts/fetch-ct2.sh` extracts).
pub const DEFAULT_CT2_MODEL_PATH: &str = "models/ct2-tiny.en";

/// The flags and variables as given. See [`Settings`] for the validated form.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "transcription-server",
    version,
    about = "A thread-per-core voice-to-text server: WebSocket streaming and batch transcription.",
    long_about = None
)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "TRANSCRIBE_HOST", default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    pub host: IpAddr,

    /// TCP port to listen on (0 picks a free port and prints it).
    #[arg(long, env = "TRANSCRIBE_PORT", default_value_t = 8000)]
    pub port: u16,

    /// Core threads, each pinned to one CPU with its own listener [default: all available CPUs].
    #[arg(long, env = "TRANSCRIBE_CORES")]
    pub cores: Option<usize>,

    /// Model-worker threads [default: the number of cores].
    #[arg(long, env = "TRANSCRIBE_MODEL_WORKERS")]
    pub model_workers: Option<usize>,

    /// Capacity of the model job queue shared by all cores; a full queue answers 503 overloaded.
    #[arg(long, env = "TRANSCRIBE_MODEL_QUEUE_CAPACITY", default_value_t = 256)]
    pub model_queue_capacity: usize,

    /// Admission by engine capacity: a new stream is refused with overloaded (close 1013) when the streams' estimated demand would exceed this share of what the engine sustains, and /v1/ready says engine_saturated; 0 turns it off (docs/DEPLOY.md).
    #[arg(
        long,
        env = "TRANSCRIBE_ENGINE_MAX_UTILISATION",
        default_value_t = 0.85
    )]
    pub engine_max_utilisation: f64,

    /// With admission by capacity on: a batch request is refused with 503 overloaded and a Retry-After when the batch work already admitted would keep the engine busy for longer than this many seconds.
    #[arg(
        long,
        env = "TRANSCRIBE_ENGINE_MAX_BACKLOG_SECONDS",
        default_value_t = 30.0
    )]
    pub engine_max_backlog_seconds: f64,

    /// Concurrent streaming sessions across all cores.
    #[arg(long, env = "TRANSCRIBE_MAX_SESSIONS", default_value_t = 1000)]
    pub max_sessions: usize,

    /// Concurrent streaming sessions from one client IP address; over it a new one is refused with session_limit_exceeded (1013) [default: 0, no per-address limit].
    #[arg(long, env = "TRANSCRIBE_MAX_SESSIONS_PER_PEER", default_value_t = 0)]
    pub max_sessions_per_peer: usize,

    /// Longest a streaming session may last, in seconds; then it ends with reason max_duration (close 1000) [default: 0, no limit].
    #[arg(long, env = "TRANSCRIBE_MAX_SESSION_SECONDS", default_value_t = 0.0)]
    pub max_session_seconds: f64,

    /// Seconds without audio or keepalive after which a session is closed.
    #[arg(
        long,
        env = "TRANSCRIBE_SESSION_IDLE_TIMEOUT_SECONDS",
        default_value_t = 300.0
    )]
    pub session_idle_timeout_seconds: f64,

    /// Seconds between sweeps for idle sessions on each core.
    #[arg(
        long,
        env = "TRANSCRIBE_SESSION_CLEANUP_INTERVAL_SECONDS",
        default_value_t = 30.0
    )]
    pub session_cleanup_interval_seconds: f64,

    /// Largest accepted request body, in bytes (413 above it).
    #[arg(long, env = "TRANSCRIBE_MAX_BODY_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Largest request head (request line and headers), in bytes (431 above it).
    #[arg(long, env = "TRANSCRIBE_MAX_HEAD_BYTES", default_value_t = 16 * 1024)]
    pub max_head_bytes: usize,

    /// Largest WebSocket message, in bytes (close 1009 above it).
    #[arg(long, env = "TRANSCRIBE_MAX_WS_MESSAGE_BYTES", default_value_t = 1024 * 1024)]
    pub max_ws_message_bytes: usize,

    /// Messages a streaming session may have queued for a client that reads slowly; interims are shed first.
    #[arg(
        long,
        env = "TRANSCRIBE_WS_OUTBOUND_MESSAGES_MAX",
        default_value_t = 256
    )]
    pub ws_outbound_messages_max: usize,

    /// Milliseconds a client may stay over the outbound bound before it is closed with slow_consumer (1008).
    #[arg(
        long,
        env = "TRANSCRIBE_SLOW_CONSUMER_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub slow_consumer_timeout_ms: u64,

    /// Milliseconds a client has to send a complete request head, and the longest pause allowed while it sends a body (408 after it).
    #[arg(long, env = "TRANSCRIBE_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub read_timeout_ms: u64,

    /// Milliseconds a response may take to be written to a client that does not read it; the connection is closed after it.
    #[arg(long, env = "TRANSCRIBE_WRITE_TIMEOUT_MS", default_value_t = 10_000)]
    pub write_timeout_ms: u64,

    /// Browser origins allowed to call the API, comma-separated (`https://app.example.com`), or `*` for any [default: none, CORS off].
    #[arg(long, env = "TRANSCRIBE_CORS_ALLOW_ORIGINS", value_delimiter = ',')]
    pub cors_allow_origins: Vec<String>,

    /// Proxies and load balancers trusted to say who the client is, comma-separated addresses or networks (`10.0.0.0/8,127.0.0.2`): from those peers the last untrusted address of X-Forwarded-For is the client, for per-peer limits, the session list and logs [default: none, X-Forwarded-For ignored].
    #[arg(long, env = "TRANSCRIBE_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,

    /// Seconds an idle keep-alive connection is kept open.
    #[arg(
        long,
        env = "TRANSCRIBE_KEEPALIVE_TIMEOUT_SECONDS",
        default_value_t = 75.0
    )]
    pub keepalive_timeout_seconds: f64,

    /// WebRTC VAD aggressiveness, 0 (least) to 3 (most), used when a request does not choose.
    #[arg(long, env = "TRANSCRIBE_VAD_MODE", default_value_t = 2)]
    pub vad_mode: u8,

    /// Milliseconds of silence that end a speech segment.
    #[arg(long, env = "TRANSCRIBE_VAD_HANGOVER_MS", default_value_t = 500)]
    pub vad_hangover_ms: u32,

    /// Longest speech segment in seconds; longer speech is cut there.
    #[arg(long, env = "TRANSCRIBE_MAX_SEGMENT_SECONDS", default_value_t = 15.0)]
    pub max_segment_seconds: f64,

    /// Milliseconds of new speech between interim transcripts of a stream.
    #[arg(long, env = "TRANSCRIBE_INTERIM_INTERVAL_MS", default_value_t = 500)]
    pub interim_interval_ms: u32,

    /// The speech engine: the deterministic mock, or Whisper through whisper.cpp (a build with `--features whisper`) or CTranslate2 (`--features ct2`).
    #[arg(long, env = "TRANSCRIBE_MODEL", value_enum, default_value_t = ModelKind::Mock)]
    pub model: ModelKind,

    /// The Whisper weights: a ggml file for --model whisper (`scripts/fetch-model.sh`) [default: models/ggml-tiny.en.bin], a CTranslate2 directory for --model ct2 (`scripts/fetch-ct2.sh`) [default: models/ct2-tiny.en].
    #[arg(long, env = "TRANSCRIBE_MODEL_PATH")]
    pub model_path: Option<std::path::PathBuf>,

    /// Threads each model worker runs one Whisper job on [default: CPUs / model workers, at least 1].
    #[arg(long, env = "TRANSCRIBE_MODEL_THREADS")]
    pub model_threads: Option<usize>,

    /// The smallest Whisper encoder context (20 ms positions) for a stream's finals and interims; 768 (the batch floor) turns the live policy off. For measuring the trade-off (docs/MODELS.md).
    #[arg(
        long,
        env = "TRANSCRIBE_WHISPER_LIVE_CONTEXT",
        default_value_t = 384,
        hide = true
    )]
    pub whisper_live_context: usize,

    /// How --model ct2 stores and multiplies the weights.
    #[arg(long, env = "TRANSCRIBE_MODEL_COMPUTE_TYPE", value_enum, default_value_t = ComputeType::Int8)]
    pub model_compute_type: ComputeType,

    /// Batch requests pack consecutive speech segments into engine windows of up to this many seconds, one model job per window; 0 is one job per segment [default: 28 with --model whisper, 0 with the mock].
    #[arg(long, env = "TRANSCRIBE_BATCH_WINDOW_SECONDS")]
    pub batch_window_seconds: Option<f64>,

    /// Time the mock model takes to load, in milliseconds: lets tests watch
    /// `/v1/ready` say `model_loading` as a real model's start-up does.
    #[arg(
        long,
        env = "TRANSCRIBE_MOCK_LOAD_MS",
        default_value_t = 0,
        hide = true
    )]
    pub mock_load_ms: u64,

    /// Fixed inference time of the mock model per job, in milliseconds.
    #[arg(long, env = "TRANSCRIBE_MOCK_LATENCY_MS", default_value_t = 0)]
    pub mock_latency_ms: u64,

    /// Inference time of the mock model per second of audio (real-time factor), added to the fixed latency.
    #[arg(long, env = "TRANSCRIBE_MOCK_RTF", default_value_t = 0.0)]
    pub mock_rtf: f64,

    /// API key required as `Authorization: Bearer <key>` on /v1 endpoints [default: auth off].
    #[arg(long, env = "TRANSCRIBE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// Admin key required on the session endpoints and /metrics [default: auth off].
    #[arg(long, env = "TRANSCRIBE_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,

    /// Log format.
    #[arg(long, env = "TRANSCRIBE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log level or filter (e.g. `info`, `debug`, `transcription_service=debug`).
    #[arg(long, env = "TRANSCRIBE_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// io_uring submission queue entries per core.
    #[arg(long, env = "TRANSCRIBE_URING_ENTRIES", default_value_t = 1024)]
    pub uring_entries: u32,

    /// Set IORING_SETUP_COOP_TASKRUN on each core's ring (fewer inter-processor interrupts; Linux 5.19+). Not with --uring-sqpoll-idle-ms, which the kernel refuses it next to: SQPOLL turns it off.
    #[arg(long, env = "TRANSCRIBE_URING_COOP_TASKRUN", default_value_t = true, action = clap::ArgAction::Set)]
    pub uring_coop_taskrun: bool,

    /// Give each core's ring a kernel submission-polling thread that sleeps after this many idle milliseconds [default: off]. Costs a busy kernel thread per core; turns COOP_TASKRUN off.
    #[arg(long, env = "TRANSCRIBE_URING_SQPOLL_IDLE_MS")]
    pub uring_sqpoll_idle_ms: Option<u32>,

    /// Seconds sessions and in-flight requests get to finish after SIGTERM/SIGINT (counted from the end of the drain delay) before the server exits.
    #[arg(
        long,
        env = "TRANSCRIBE_SHUTDOWN_GRACE_SECONDS",
        default_value_t = 10.0
    )]
    pub shutdown_grace_seconds: f64,

    /// Seconds after SIGTERM/SIGINT during which the server still serves everything while /v1/ready already answers 503 draining, so load balancers stop sending work before new work is refused [default: 0].
    #[arg(long, env = "TRANSCRIBE_DRAIN_DELAY_SECONDS", default_value_t = 0.0)]
    pub drain_delay_seconds: f64,

    /// Redis URL (`redis://host:port/db`) that turns on cluster mode: nodes sharing it see each other's sessions [default: none, single node].
    #[arg(long, env = "TRANSCRIBE_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// This node's id in the cluster, unique per node [default: hostname:port].
    #[arg(long, env = "TRANSCRIBE_NODE_ID")]
    pub node_id: Option<String>,

    /// The URL other nodes and operators reach this node at [default: http://hostname:port].
    #[arg(long, env = "TRANSCRIBE_ADVERTISE_URL")]
    pub advertise_url: Option<String>,

    /// Concurrent streaming sessions summed over every node of the cluster (needs --redis-url) [default: none, each node's --max-sessions only].
    #[arg(long, env = "TRANSCRIBE_CLUSTER_MAX_SESSIONS")]
    pub cluster_max_sessions: Option<usize>,

    /// What cluster admission does while Redis is unreachable: `open` admits (the node's own limit still applies), `closed` refuses with overloaded.
    #[arg(long, env = "TRANSCRIBE_CLUSTER_FAIL_MODE", default_value_t = FailMode::Open)]
    pub cluster_fail_mode: FailMode,

    /// Milliseconds between cluster heartbeats (advanced; tests shorten it).
    #[arg(
        long,
        env = "TRANSCRIBE_CLUSTER_HEARTBEAT_MS",
        default_value_t = 2_000,
        hide = true
    )]
    pub cluster_heartbeat_ms: u64,

    /// Milliseconds a node's Redis keys outlive its last heartbeat (advanced; at least twice the heartbeat).
    #[arg(
        long,
        env = "TRANSCRIBE_CLUSTER_TTL_MS",
        default_value_t = 10_000,
        hide = true
    )]
    pub cluster_ttl_ms: u64,

    /// Free admission leases each node keeps in its pool (advanced; a node refused at the cluster limit asks the others to give their free pooled leases back).
    #[arg(
        long,
        env = "TRANSCRIBE_CLUSTER_LEASE_BLOCK",
        default_value_t = 4,
        hide = true
    )]
    pub cluster_lease_block: usize,

    /// Seconds a native streaming session is kept after its connection drops without an `end` or a close frame, so the client can resume it with `?resume=<session_id>&token=<token>` [default: 0, off; session_start then carries no token].
    #[arg(long, env = "TRANSCRIBE_RESUME_WINDOW_SECONDS", default_value_t = 0.0)]
    pub resume_window_seconds: f64,

    /// Where the speech engine runs: `local` (this process's model workers) or `remote` (engine nodes behind Redis Streams, started with `transcription-server engine`; needs --redis-url; --model-workers then bounds the jobs this front end has outstanding).
    #[arg(long = "engine", env = "TRANSCRIBE_ENGINE", value_enum, default_value_t = EngineMode::Local)]
    pub engine_mode: EngineMode,

    /// Engine nodes: a job pending on a consumer for longer than this many milliseconds (its node died mid-job) is claimed by another node.
    #[arg(long, env = "TRANSCRIBE_ENGINE_CLAIM_IDLE_MS", default_value_t = 5_000)]
    pub engine_claim_idle_ms: u64,

    /// Remote engine: how long a final or batch job waits for an engine's reply before the front end answers `overloaded` (no engine node, or all stalled).
    #[arg(
        long,
        env = "TRANSCRIBE_ENGINE_FINAL_WAIT_MS",
        default_value_t = 30_000
    )]
    pub engine_final_wait_ms: u64,

    /// Remote engine: every this many milliseconds without a reply the front end checks that its job is still in its stream, and submits it again if not (Redis restarted and lost it).
    #[arg(long, env = "TRANSCRIBE_ENGINE_RESUBMIT_MS", default_value_t = 2_000)]
    pub engine_resubmit_ms: u64,

    /// Remote engine: an interim not started within this many milliseconds is dropped by the engine node unrun.
    #[arg(
        long,
        env = "TRANSCRIBE_ENGINE_INTERIM_DEADLINE_MS",
        default_value_t = 1_000
    )]
    pub engine_interim_deadline_ms: u64,

    /// Remote engine: the approximate length each job stream is trimmed to (XADD MAXLEN ~).
    #[arg(
        long,
        env = "TRANSCRIBE_ENGINE_STREAM_MAXLEN",
        default_value_t = 100_000
    )]
    pub engine_stream_maxlen: u64,
}
