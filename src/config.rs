//! Settings: command-line flags, `TRANSCRIBE_*` environment variables and
//! defaults, validated once at start-up.
//!
//! Every setting of the public contract has a flag `--name-with-dashes` and a
//! variable `TRANSCRIBE_NAME`; a flag wins over its variable. [`Config::parse`]
//! reads them and [`Config::validate`] turns them into [`Settings`], the only
//! form the rest of the server sees, or a message that names the bad value.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::cluster::{ClusterSettings, FailMode};

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
    },
}

impl ModelChoice {
    /// The name `/v1/health` and the responses report.
    pub fn name(&self) -> &'static str {
        match self {
            ModelChoice::Mock => "mock",
            ModelChoice::Whisper { .. } => "whisper",
        }
    }
}

/// Where `--model whisper` looks for its weights by default (what
/// `scripts/fetch-model.sh` writes).
pub const DEFAULT_WHISPER_MODEL_PATH: &str = "models/ggml-tiny.en.bin";

/// The batch window with Whisper: most of its 30 s encoder window, with
/// room for the context margin (docs/MODELS.md has the measured effect).
pub const DEFAULT_WHISPER_BATCH_WINDOW_SECONDS: f64 = 28.0;

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

    /// Concurrent streaming sessions across all cores.
    #[arg(long, env = "TRANSCRIBE_MAX_SESSIONS", default_value_t = 1000)]
    pub max_sessions: usize,

    /// Concurrent streaming sessions from one client IP address; over it a new one is refused with session_limit_exceeded (1013) [default: 0, no per-address limit].
    #[arg(long, env = "TRANSCRIBE_MAX_SESSIONS_PER_PEER", default_value_t = 0)]
    pub max_sessions_per_peer: usize,

    /// Longest a streaming session may last, in seconds; then it ends with reason max_duration (close 1000) [default: 0, no limit].
    #[arg(long, env = "TRANSCRIBE_MAX_SESSION_SECONDS", default_value_t = 0)]
    pub max_session_seconds: u64,

    /// Seconds without audio or keepalive after which a session is closed.
    #[arg(
        long,
        env = "TRANSCRIBE_SESSION_IDLE_TIMEOUT_SECONDS",
        default_value_t = 300
    )]
    pub session_idle_timeout_seconds: u64,

    /// Seconds between sweeps for idle sessions on each core.
    #[arg(
        long,
        env = "TRANSCRIBE_SESSION_CLEANUP_INTERVAL_SECONDS",
        default_value_t = 30
    )]
    pub session_cleanup_interval_seconds: u64,

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

    /// Seconds an idle keep-alive connection is kept open.
    #[arg(
        long,
        env = "TRANSCRIBE_KEEPALIVE_TIMEOUT_SECONDS",
        default_value_t = 75
    )]
    pub keepalive_timeout_seconds: u64,

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

    /// The speech engine: the deterministic mock, or Whisper (needs a build with `--features whisper`).
    #[arg(long, env = "TRANSCRIBE_MODEL", value_enum, default_value_t = ModelKind::Mock)]
    pub model: ModelKind,

    /// The Whisper weights (a ggml file; `scripts/fetch-model.sh` makes one) [default: models/ggml-tiny.en.bin].
    #[arg(long, env = "TRANSCRIBE_MODEL_PATH")]
    pub model_path: Option<std::path::PathBuf>,

    /// Threads each model worker runs one Whisper job on [default: CPUs / model workers, at least 1].
    #[arg(long, env = "TRANSCRIBE_MODEL_THREADS")]
    pub model_threads: Option<usize>,

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

    /// Set IORING_SETUP_COOP_TASKRUN on each core's ring (fewer inter-processor interrupts; Linux 5.19+).
    #[arg(long, env = "TRANSCRIBE_URING_COOP_TASKRUN", default_value_t = true, action = clap::ArgAction::Set)]
    pub uring_coop_taskrun: bool,

    /// Give each core's ring a kernel submission-polling thread that sleeps after this many idle milliseconds [default: off]. Costs a busy kernel thread per core.
    #[arg(long, env = "TRANSCRIBE_URING_SQPOLL_IDLE_MS")]
    pub uring_sqpoll_idle_ms: Option<u32>,

    /// Seconds in-flight work may take to finish after SIGTERM/SIGINT before the server exits.
    #[arg(long, env = "TRANSCRIBE_SHUTDOWN_GRACE_SECONDS", default_value_t = 10)]
    pub shutdown_grace_seconds: u64,

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

    /// Free admission leases each node keeps in its pool (advanced; small next to --cluster-max-sessions, or other nodes may be refused while slots sit in pools).
    #[arg(
        long,
        env = "TRANSCRIBE_CLUSTER_LEASE_BLOCK",
        default_value_t = 4,
        hide = true
    )]
    pub cluster_lease_block: usize,
}

/// Validated settings, shared read-only by every thread.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen_addr: SocketAddr,
    pub cores: usize,
    pub model_workers: usize,
    pub model_queue_capacity: usize,
    pub max_sessions: usize,
    /// Concurrent sessions from one IP address; `None` is no limit.
    pub max_sessions_per_peer: Option<usize>,
    /// Longest session; `None` is no limit.
    pub max_session_duration: Option<Duration>,
    pub session_idle_timeout: Duration,
    pub session_cleanup_interval: Duration,
    pub body_bytes_max: usize,
    pub head_bytes_max: usize,
    pub ws_message_bytes_max: usize,
    pub ws_outbound_messages_max: usize,
    pub slow_consumer_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub cors: CorsOrigins,
    pub vad_mode: u8,
    pub vad_hangover_ms: u32,
    pub max_segment_ms: u32,
    pub interim_interval_ms: u32,
    pub model: ModelChoice,
    /// Seconds of speech a batch request packs into one engine window; 0 is
    /// one job per segment.
    pub batch_window_seconds: f64,
    /// How long the mock takes to load (tests of `model_loading`).
    pub mock_load: Duration,
    pub mock_latency: Duration,
    pub mock_rtf: f64,
    pub api_key: Option<String>,
    pub admin_key: Option<String>,
    pub log_format: LogFormat,
    pub log_level: String,
    pub shutdown_grace: Duration,
    pub uring: UringSettings,
    /// Cluster mode; `None` (no `redis_url`) is a single node.
    pub cluster: Option<ClusterSettings>,
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

impl Config {
    /// Check every value and resolve the defaults that depend on the machine.
    /// `cpus_available` is the number of CPUs this process may run on.
    ///
    /// # Errors
    /// A message naming the flag and the bad value.
    pub fn validate(&self, cpus_available: usize) -> Result<Settings, String> {
        let cores = self.cores.unwrap_or(cpus_available.max(1));
        check(cores >= 1, "--cores must be at least 1")?;
        check(
            cores <= 1024,
            format!("--cores {cores} is more than this server supports (1024)"),
        )?;
        let model_workers = self.model_workers.unwrap_or(cores);
        check(
            (1..=1024).contains(&model_workers),
            format!("--model-workers must be between 1 and 1024, got {model_workers}"),
        )?;
        check(
            (1..=1_000_000).contains(&self.model_queue_capacity),
            format!(
                "--model-queue-capacity must be between 1 and 1000000, got {}",
                self.model_queue_capacity
            ),
        )?;
        check(
            (1..=10_000_000).contains(&self.max_sessions),
            format!(
                "--max-sessions must be between 1 and 10000000, got {}",
                self.max_sessions
            ),
        )?;
        check(
            self.session_idle_timeout_seconds >= 1,
            "--session-idle-timeout-seconds must be at least 1",
        )?;
        check(
            self.session_cleanup_interval_seconds >= 1,
            "--session-cleanup-interval-seconds must be at least 1",
        )?;
        check(
            self.max_body_bytes >= 1024,
            format!(
                "--max-body-bytes must be at least 1024, got {}",
                self.max_body_bytes
            ),
        )?;
        check(
            (1024..=1024 * 1024).contains(&self.max_head_bytes),
            format!(
                "--max-head-bytes must be between 1024 and 1048576, got {}",
                self.max_head_bytes
            ),
        )?;
        check(
            self.max_ws_message_bytes >= 1024,
            format!(
                "--max-ws-message-bytes must be at least 1024, got {}",
                self.max_ws_message_bytes
            ),
        )?;
        check(
            (8..=1_000_000).contains(&self.ws_outbound_messages_max),
            format!(
                "--ws-outbound-messages-max must be between 8 and 1000000, got {}",
                self.ws_outbound_messages_max
            ),
        )?;
        check(
            self.slow_consumer_timeout_ms >= 10,
            "--slow-consumer-timeout-ms must be at least 10",
        )?;
        check(
            self.read_timeout_ms >= 10,
            "--read-timeout-ms must be at least 10",
        )?;
        check(
            self.write_timeout_ms >= 10,
            "--write-timeout-ms must be at least 10",
        )?;
        check(
            self.max_session_seconds <= 7 * 24 * 3600,
            "--max-session-seconds must be at most 604800 (a week)",
        )?;
        let cors = cors_origins(&self.cors_allow_origins)?;
        check(
            self.keepalive_timeout_seconds >= 1,
            "--keepalive-timeout-seconds must be at least 1",
        )?;
        check(
            self.vad_mode <= 3,
            format!("--vad-mode must be 0, 1, 2 or 3, got {}", self.vad_mode),
        )?;
        check(
            (30..=10_000).contains(&self.vad_hangover_ms),
            format!(
                "--vad-hangover-ms must be between 30 and 10000, got {}",
                self.vad_hangover_ms
            ),
        )?;
        check(
            self.max_segment_seconds.is_finite()
                && (1.0..=120.0).contains(&self.max_segment_seconds),
            format!(
                "--max-segment-seconds must be between 1 and 120, got {}",
                self.max_segment_seconds
            ),
        )?;
        check(
            (50..=60_000).contains(&self.interim_interval_ms),
            format!(
                "--interim-interval-ms must be between 50 and 60000, got {}",
                self.interim_interval_ms
            ),
        )?;
        let model = self.model_choice(cpus_available, model_workers)?;
        let batch_window_seconds = self.batch_window_seconds.unwrap_or(match model {
            ModelChoice::Mock => 0.0,
            ModelChoice::Whisper { .. } => DEFAULT_WHISPER_BATCH_WINDOW_SECONDS,
        });
        check(
            batch_window_seconds == 0.0
                || (1.0..=crate::limits::BATCH_WINDOW_SECONDS_MAX).contains(&batch_window_seconds),
            format!(
                "--batch-window-seconds must be 0 (off) or between 1 and {}, got {batch_window_seconds}",
                crate::limits::BATCH_WINDOW_SECONDS_MAX
            ),
        )?;
        check(
            self.mock_load_ms <= 600_000,
            "--mock-load-ms must be at most 600000",
        )?;
        check(
            self.mock_latency_ms <= 600_000,
            "--mock-latency-ms must be at most 600000",
        )?;
        check(
            self.mock_rtf.is_finite() && (0.0..=100.0).contains(&self.mock_rtf),
            format!(
                "--mock-rtf must be between 0 and 100, got {}",
                self.mock_rtf
            ),
        )?;
        for (flag, key) in [
            ("--api-key", &self.api_key),
            ("--admin-key", &self.admin_key),
        ] {
            if let Some(key) = key {
                check(
                    !key.is_empty() && key.bytes().all(|b| b.is_ascii_graphic()),
                    format!("{flag} must be non-empty printable ASCII without spaces"),
                )?;
            }
        }
        check(
            self.uring_entries.is_power_of_two() && (64..=32_768).contains(&self.uring_entries),
            format!(
                "--uring-entries must be a power of two between 64 and 32768, got {}",
                self.uring_entries
            ),
        )?;
        check(
            self.uring_sqpoll_idle_ms.is_none_or(|idle| idle <= 60_000),
            "--uring-sqpoll-idle-ms must be at most 60000",
        )?;
        check(
            self.shutdown_grace_seconds <= 3600,
            "--shutdown-grace-seconds must be at most 3600",
        )?;
        let cluster = self.validate_cluster()?;
        Ok(Settings {
            listen_addr: SocketAddr::new(self.host, self.port),
            cores,
            model_workers,
            model_queue_capacity: self.model_queue_capacity,
            max_sessions: self.max_sessions,
            max_sessions_per_peer: (self.max_sessions_per_peer > 0)
                .then_some(self.max_sessions_per_peer),
            max_session_duration: (self.max_session_seconds > 0)
                .then(|| Duration::from_secs(self.max_session_seconds)),
            session_idle_timeout: Duration::from_secs(self.session_idle_timeout_seconds),
            session_cleanup_interval: Duration::from_secs(self.session_cleanup_interval_seconds),
            body_bytes_max: self.max_body_bytes,
            head_bytes_max: self.max_head_bytes,
            ws_message_bytes_max: self.max_ws_message_bytes,
            ws_outbound_messages_max: self.ws_outbound_messages_max,
            slow_consumer_timeout: Duration::from_millis(self.slow_consumer_timeout_ms),
            read_timeout: Duration::from_millis(self.read_timeout_ms),
            write_timeout: Duration::from_millis(self.write_timeout_ms),
            cors,
            keepalive_timeout: Duration::from_secs(self.keepalive_timeout_seconds),
            vad_mode: self.vad_mode,
            vad_hangover_ms: self.vad_hangover_ms,
            // Bounded to 1..=120 s above, so the product fits a u32 exactly.
            max_segment_ms: (self.max_segment_seconds * 1000.0).round() as u32,
            interim_interval_ms: self.interim_interval_ms,
            model,
            batch_window_seconds,
            mock_load: Duration::from_millis(self.mock_load_ms),
            mock_latency: Duration::from_millis(self.mock_latency_ms),
            mock_rtf: self.mock_rtf,
            api_key: self.api_key.clone(),
            admin_key: self.admin_key.clone(),
            log_format: self.log_format,
            log_level: self.log_level.clone(),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_seconds),
            uring: UringSettings {
                entries: self.uring_entries,
                coop_taskrun: self.uring_coop_taskrun,
                sqpoll_idle_ms: self.uring_sqpoll_idle_ms,
            },
            cluster,
        })
    }

    /// The cluster settings when `--redis-url` is given. The cluster-only
    /// flags without it are refused rather than silently ignored.
    fn validate_cluster(&self) -> Result<Option<ClusterSettings>, String> {
        let Some(redis_url) = self.redis_url.as_deref() else {
            check(
                self.cluster_max_sessions.is_none(),
                "--cluster-max-sessions needs --redis-url (cluster mode)",
            )?;
            return Ok(None);
        };
        // The default id names the port; with port 0 every node would be
        // `hostname:0`, and two nodes with one id corrupt each other's entries.
        check(
            self.port != 0 || self.node_id.is_some(),
            "--node-id is required with --port 0 in cluster mode (the default hostname:port would not be unique)",
        )?;
        let node_id = self
            .node_id
            .clone()
            .unwrap_or_else(|| crate::cluster::default_node_id(self.port));
        let advertise_url = self
            .advertise_url
            .clone()
            .unwrap_or_else(|| crate::cluster::default_advertise_url(self.port));
        let mut cluster = ClusterSettings::new(redis_url, &node_id, &advertise_url);
        cluster.cluster_max_sessions = self.cluster_max_sessions;
        cluster.fail_mode = self.cluster_fail_mode;
        cluster.heartbeat_interval = Duration::from_millis(self.cluster_heartbeat_ms);
        cluster.ttl = Duration::from_millis(self.cluster_ttl_ms);
        cluster.lease_block = self.cluster_lease_block;
        // The settings' own messages name the setting (`node_id`, ...); say
        // which flag it is.
        cluster.validate().map_err(|error| {
            let message = error.to_string();
            let flag = [
                ("redis_url", "--redis-url"),
                ("node_id", "--node-id"),
                ("advertise_url", "--advertise-url"),
                ("cluster_max_sessions", "--cluster-max-sessions"),
                ("TTL", "--cluster-ttl-ms"),
                ("heartbeat", "--cluster-heartbeat-ms"),
                ("lease block", "--cluster-lease-block"),
            ]
            .iter()
            .find(|(name, _)| message.contains(name))
            .map_or("--redis-url", |(_, flag)| flag);
            format!("{flag}: {message}")
        })?;
        Ok(Some(cluster))
    }
}

/// Parse `--cors-allow-origins`: empty is off, `*` alone is any origin,
/// otherwise each entry must be an origin (`scheme://host[:port]`, no path).
fn cors_origins(given: &[String]) -> Result<CorsOrigins, String> {
    let origins: Vec<&str> = given
        .iter()
        .map(|o| o.trim())
        .filter(|o| !o.is_empty())
        .collect();
    if origins.is_empty() {
        return Ok(CorsOrigins::Off);
    }
    if origins.contains(&"*") {
        check(
            origins.len() == 1,
            "--cors-allow-origins: `*` cannot be combined with other origins",
        )?;
        return Ok(CorsOrigins::Any);
    }
    for origin in &origins {
        let rest = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"));
        let valid = rest.is_some_and(|host| {
            !host.is_empty()
                && !host.contains('/')
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        });
        check(
            valid,
            format!(
                "--cors-allow-origins: {origin:?} is not an origin like https://app.example.com"
            ),
        )?;
    }
    Ok(CorsOrigins::List(
        origins.into_iter().map(str::to_string).collect(),
    ))
}

impl Config {
    /// The engine: the mock, or Whisper with weights that exist and look like
    /// a ggml model, in a build that has it.
    fn model_choice(&self, cpus: usize, workers: usize) -> Result<ModelChoice, String> {
        if self.model == ModelKind::Mock {
            check(
                self.model_path.is_none(),
                "--model-path is for --model whisper",
            )?;
            return Ok(ModelChoice::Mock);
        }
        check(
            cfg!(feature = "whisper"),
            "--model whisper needs a build with the whisper engine: cargo build --release --features whisper",
        )?;
        let threads = self
            .model_threads
            .unwrap_or_else(|| (cpus / workers.max(1)).max(1));
        check(
            (1..=256).contains(&threads),
            format!("--model-threads must be between 1 and 256, got {threads}"),
        )?;
        let path = self
            .model_path
            .clone()
            .unwrap_or_else(|| DEFAULT_WHISPER_MODEL_PATH.into());
        check_ggml_file(&path)?;
        Ok(ModelChoice::Whisper { path, threads })
    }
}

/// Whether `path` is a well-formed ggml model, so a wrong or damaged file
/// fails at start-up with a clear message rather than inside whisper.cpp.
fn check_ggml_file(path: &std::path::Path) -> Result<(), String> {
    if !path.is_file() {
        return Err(format!(
            "--model-path {}: no such file (scripts/fetch-model.sh downloads and converts the Whisper weights)",
            path.display()
        ));
    }
    ct2ggml::check::check_file(path)
        .map(|_| ())
        .map_err(|error| format!("--model-path {}: {error}", path.display()))
}

fn check(ok: bool, message: impl Into<String>) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(message.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        let mut all = vec!["transcription-server"];
        all.extend_from_slice(args);
        Config::try_parse_from(all).expect("flags parse")
    }

    #[test]
    fn defaults_resolve_from_the_machine() {
        let settings = parse(&[]).validate(6).expect("defaults are valid");
        assert_eq!(settings.cores, 6);
        assert_eq!(settings.model_workers, 6);
        assert_eq!(settings.listen_addr.port(), 8000);
        assert_eq!(settings.max_sessions, 1000);
        assert_eq!(settings.vad_mode, 2);
        assert_eq!(settings.max_segment_ms, 15_000);
    }

    #[test]
    fn bad_values_name_the_flag() {
        let cases: &[(&[&str], &str)] = &[
            (&["--cores", "0"], "--cores"),
            (&["--vad-mode", "7"], "--vad-mode"),
            (&["--model-workers", "0"], "--model-workers"),
            (&["--mock-rtf=-1"], "--mock-rtf"),
            (&["--max-segment-seconds", "0.5"], "--max-segment-seconds"),
            (&["--api-key", "has space"], "--api-key"),
            (
                &["--cors-allow-origins", "*,https://a.example"],
                "--cors-allow-origins",
            ),
            (
                &["--cors-allow-origins", "https://a.example/path"],
                "--cors-allow-origins",
            ),
            (
                &["--cors-allow-origins", "a.example"],
                "--cors-allow-origins",
            ),
            (&["--write-timeout-ms", "0"], "--write-timeout-ms"),
            (
                &["--max-session-seconds", "999999999"],
                "--max-session-seconds",
            ),
        ];
        for (args, flag) in cases {
            let err = parse(args).validate(2).expect_err("must be refused");
            assert!(err.contains(flag), "{err:?} should name {flag}");
        }
    }

    #[test]
    fn limits_that_are_off_by_default_turn_on_with_a_value() {
        let settings = parse(&[]).validate(2).expect("defaults are valid");
        assert_eq!(settings.max_sessions_per_peer, None);
        assert_eq!(settings.max_session_duration, None);
        assert_eq!(settings.cors, CorsOrigins::Off);
        let settings = parse(&[
            "--max-sessions-per-peer",
            "3",
            "--max-session-seconds",
            "60",
            "--cors-allow-origins",
            "https://a.example, http://localhost:3000",
        ])
        .validate(2)
        .expect("valid");
        assert_eq!(settings.max_sessions_per_peer, Some(3));
        assert_eq!(settings.max_session_duration, Some(Duration::from_secs(60)));
        assert_eq!(
            settings.cors,
            CorsOrigins::List(vec![
                "https://a.example".to_string(),
                "http://localhost:3000".to_string()
            ])
        );
        assert_eq!(
            settings.cors.allow("https://a.example"),
            Some("https://a.example")
        );
        assert_eq!(settings.cors.allow("https://evil.example"), None);
        let any = parse(&["--cors-allow-origins", "*"])
            .validate(2)
            .expect("valid");
        assert_eq!(any.cors.allow("https://whoever.example"), Some("*"));
    }

    #[test]
    fn cluster_mode_is_off_by_default_and_on_with_a_redis_url() {
        let settings = parse(&[]).validate(2).expect("defaults are valid");
        assert_eq!(settings.cluster, None);
        let settings = parse(&["--port", "8100", "--redis-url", "redis://127.0.0.1:6379/0"])
            .validate(2)
            .expect("valid");
        let cluster = settings.cluster.expect("cluster mode");
        assert_eq!(cluster.node_id, crate::cluster::default_node_id(8100));
        assert_eq!(
            cluster.advertise_url,
            crate::cluster::default_advertise_url(8100)
        );
        assert_eq!(cluster.cluster_max_sessions, None);
        assert_eq!(cluster.fail_mode, FailMode::Open);
        let cluster = parse(&[
            "--redis-url",
            "redis://127.0.0.1:6379/0",
            "--node-id",
            "a",
            "--advertise-url",
            "http://a:8000",
            "--cluster-max-sessions",
            "5",
            "--cluster-fail-mode",
            "closed",
        ])
        .validate(2)
        .expect("valid")
        .cluster
        .expect("cluster mode");
        assert_eq!(
            (cluster.node_id.as_str(), cluster.advertise_url.as_str()),
            ("a", "http://a:8000")
        );
        assert_eq!(cluster.cluster_max_sessions, Some(5));
        assert_eq!(cluster.fail_mode, FailMode::Closed);
    }

    #[test]
    fn bad_cluster_values_name_the_flag() {
        let url = "redis://127.0.0.1:6379/0";
        let cases: &[(&[&str], &str)] = &[
            (&["--redis-url", "http://nope"], "--redis-url"),
            (&["--redis-url", url, "--node-id", "has space"], "--node-id"),
            (
                &["--redis-url", url, "--cluster-max-sessions", "0"],
                "--cluster-max-sessions",
            ),
            (&["--cluster-max-sessions", "3"], "--cluster-max-sessions"),
            (&["--redis-url", url, "--port", "0"], "--node-id"),
            (
                &["--redis-url", url, "--cluster-ttl-ms", "100"],
                "--cluster-ttl-ms",
            ),
        ];
        for (args, flag) in cases {
            let err = parse(args).validate(2).expect_err("must be refused");
            assert!(err.contains(flag), "{err:?} should name {flag}");
        }
        let err = Config::try_parse_from(["transcription-server", "--cluster-fail-mode", "maybe"])
            .expect_err("not a fail mode");
        assert!(err.to_string().contains("--cluster-fail-mode"));
    }

    #[test]
    fn non_numbers_are_refused_by_the_parser() {
        let err = Config::try_parse_from(["transcription-server", "--port", "eighty"])
            .expect_err("not a port");
        assert!(err.to_string().contains("--port"));
    }
}
