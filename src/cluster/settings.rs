//! The cluster settings: what the operator chose (`--redis-url`, `--node-id`,
//! `--advertise-url`, `--cluster-max-sessions`, `--cluster-fail-mode`) and the
//! timings of the agent, each with its default and the reason for it.
//!
//! The server builds a [`ClusterSettings`] from its flags and calls
//! [`ClusterSettings::validate`] once at start-up; the agent asserts the same
//! relations again when it starts.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// How often a node refreshes its heartbeat, its sessions and its leases.
/// Two seconds keeps the Redis load at one pipeline and one script per node
/// every two seconds while leaving room for four missed beats inside the TTL.
pub const HEARTBEAT_INTERVAL_DEFAULT: Duration = Duration::from_secs(2);

/// How long every key a node writes lives without a refresh. A node killed
/// with SIGKILL disappears, with its sessions and its leases, at most this
/// long after its last heartbeat: 10 s + 2 s of heartbeat phase = 12 s, under
/// the 15 s the issue allows.
pub const TTL_DEFAULT: Duration = Duration::from_secs(10);

/// How long a delete routed to another node waits for the owner's answer
/// before the caller gets `cluster_timeout` (504).
pub const REMOTE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(2);

/// The connect, read and write timeout of every Redis call. It bounds how long
/// the agent thread (never a core) can sit in one call on a dead network.
pub const IO_TIMEOUT_DEFAULT: Duration = Duration::from_secs(1);

/// How many free leases a node keeps in its local pool. Admission from the
/// pool is one compare-and-swap; a node holds at most twice this many unused
/// leases before it returns the excess, so with N nodes at most `2 × N ×
/// lease_block` slots can sit idle in pools while another node is refused.
pub const LEASE_BLOCK_DEFAULT: usize = 4;

/// The largest lease block accepted: more would let one node starve the
/// others for no gain in latency.
pub const LEASE_BLOCK_MAX: usize = 1024;

/// The namespace of every key and channel (see the module docs).
pub const KEY_PREFIX_DEFAULT: &str = "ts:";

/// How many urgent commands (admission, queries, deletes, session open and
/// close) wait for the agent. Larger than any sane number of sessions opened
/// in one heartbeat; when full, queries are answered `Unavailable` at once.
pub const URGENT_QUEUE_CAPACITY: usize = 16_384;

/// How many low-value updates (session counters, metrics) wait for the agent.
/// When full, updates are dropped and counted: the next one carries the
/// newer figures anyway.
pub const UPDATE_QUEUE_CAPACITY: usize = 4_096;

/// How many remote commands (deletes for this node's sessions) wait for the
/// server to take them.
pub const REMOTE_QUEUE_CAPACITY: usize = 1_024;

/// The first pause before reconnecting to Redis; it doubles per failure.
pub const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(50);

/// The longest pause between reconnect attempts.
pub const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// How soon session changes are written after they happen (opens, closes
/// and updates are batched into one pipeline per flush).
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);

/// The longest node id accepted.
pub const NODE_ID_BYTES_MAX: usize = 200;

const _: () = assert!(LEASE_BLOCK_DEFAULT >= 1 && LEASE_BLOCK_DEFAULT <= LEASE_BLOCK_MAX);
const _: () = assert!(TTL_DEFAULT.as_millis() >= 2 * HEARTBEAT_INTERVAL_DEFAULT.as_millis());
const _: () = assert!(TTL_DEFAULT.as_millis() + HEARTBEAT_INTERVAL_DEFAULT.as_millis() <= 15_000);
const _: () = assert!(RECONNECT_BACKOFF_MIN.as_millis() <= RECONNECT_BACKOFF_MAX.as_millis());
const _: () = assert!(FLUSH_INTERVAL.as_millis() < HEARTBEAT_INTERVAL_DEFAULT.as_millis());

/// What cluster-wide admission does while Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailMode {
    /// Admit (the node's own `max_sessions` still applies): availability
    /// over the cluster bound.
    #[default]
    Open,
    /// Refuse: the server answers `overloaded`. The cluster bound over
    /// availability.
    Closed,
}

impl FailMode {
    /// The name used by the flag and the environment variable.
    pub fn as_str(self) -> &'static str {
        match self {
            FailMode::Open => "open",
            FailMode::Closed => "closed",
        }
    }
}

impl fmt::Display for FailMode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl FromStr for FailMode {
    type Err = SettingsError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "open" => Ok(FailMode::Open),
            "closed" => Ok(FailMode::Closed),
            _ => Err(SettingsError(format!(
                "cluster_fail_mode must be open or closed, got {text:?}"
            ))),
        }
    }
}

/// A setting the agent cannot run with; the message names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError(pub String);

impl fmt::Display for SettingsError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl std::error::Error for SettingsError {}

/// Everything the cluster agent needs. Build it with [`ClusterSettings::new`]
/// and override fields; [`ClusterSettings::validate`] checks the relations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// `redis://host:port/db`. Never logged in full: it may carry a password.
    pub redis_url: String,
    /// This node's id, unique in the cluster (default: hostname:port).
    pub node_id: String,
    /// The URL other nodes and operators reach this node at
    /// (`GET /v1/cluster/nodes` shows it).
    pub advertise_url: String,
    /// The bound on live sessions summed over all nodes; `None` leaves
    /// admission to each node's own limit and makes no Redis call for it.
    pub cluster_max_sessions: Option<usize>,
    /// What admission does while Redis is unreachable.
    pub fail_mode: FailMode,
    /// See [`HEARTBEAT_INTERVAL_DEFAULT`].
    pub heartbeat_interval: Duration,
    /// See [`TTL_DEFAULT`]; at least twice the heartbeat interval.
    pub ttl: Duration,
    /// See [`LEASE_BLOCK_DEFAULT`]; used as `min(lease_block, cluster_max_sessions)`.
    pub lease_block: usize,
    /// See [`REMOTE_TIMEOUT_DEFAULT`].
    pub remote_timeout: Duration,
    /// See [`IO_TIMEOUT_DEFAULT`].
    pub io_timeout: Duration,
    /// See [`KEY_PREFIX_DEFAULT`]. Several clusters (or tests) can share one
    /// Redis database under different prefixes.
    pub key_prefix: String,
}

impl ClusterSettings {
    /// Settings with every default: no cluster-wide bound, fail mode open.
    pub fn new(redis_url: &str, node_id: &str, advertise_url: &str) -> Self {
        ClusterSettings {
            redis_url: redis_url.to_string(),
            node_id: node_id.to_string(),
            advertise_url: advertise_url.to_string(),
            cluster_max_sessions: None,
            fail_mode: FailMode::Open,
            heartbeat_interval: HEARTBEAT_INTERVAL_DEFAULT,
            ttl: TTL_DEFAULT,
            lease_block: LEASE_BLOCK_DEFAULT,
            remote_timeout: REMOTE_TIMEOUT_DEFAULT,
            io_timeout: IO_TIMEOUT_DEFAULT,
            key_prefix: KEY_PREFIX_DEFAULT.to_string(),
        }
    }

    /// Checks every setting and every relation between them.
    ///
    /// # Errors
    /// A [`SettingsError`] naming the first setting that is wrong.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let fail = |message: String| Err(SettingsError(message));
        if let Err(error) = redis::Client::open(self.redis_url.as_str()) {
            // The URL may hold a password: report the kind of error only.
            return fail(format!(
                "redis_url is not a Redis URL (redis://host:port/db): {:?}",
                error.kind()
            ));
        }
        validate_node_id(&self.node_id)?;
        if self.advertise_url.is_empty() || self.advertise_url.chars().any(char::is_whitespace) {
            return fail(format!(
                "advertise_url must be a non-empty URL without spaces, got {:?}",
                self.advertise_url
            ));
        }
        if self.cluster_max_sessions == Some(0) {
            return fail("cluster_max_sessions must be at least 1".to_string());
        }
        if self.lease_block == 0 || self.lease_block > LEASE_BLOCK_MAX {
            return fail(format!(
                "the lease block must be between 1 and {LEASE_BLOCK_MAX}, got {}",
                self.lease_block
            ));
        }
        if self.heartbeat_interval < Duration::from_millis(10) {
            return fail("the heartbeat interval must be at least 10 ms".to_string());
        }
        if self.ttl < 2 * self.heartbeat_interval {
            return fail(format!(
                "the key TTL ({} ms) must be at least twice the heartbeat interval ({} ms)",
                self.ttl.as_millis(),
                self.heartbeat_interval.as_millis()
            ));
        }
        if self.remote_timeout.is_zero() || self.io_timeout.is_zero() {
            return fail("the remote and I/O timeouts must be positive".to_string());
        }
        if self.key_prefix.is_empty() || self.key_prefix.chars().any(char::is_whitespace) {
            return fail(format!(
                "the key prefix must be non-empty without spaces, got {:?}",
                self.key_prefix
            ));
        }
        Ok(())
    }

    /// The number of free leases the local pool aims to hold:
    /// `min(lease_block, cluster_max_sessions)`, `0` without a cluster bound.
    pub fn lease_block_effective(&self) -> usize {
        match self.cluster_max_sessions {
            Some(max) => self.lease_block.min(max),
            None => 0,
        }
    }
}

/// Checks a node id: 1 to [`NODE_ID_BYTES_MAX`] bytes of printable ASCII
/// without spaces (it becomes part of Redis keys and channel names).
///
/// # Errors
/// A [`SettingsError`] saying what is wrong.
pub fn validate_node_id(node_id: &str) -> Result<(), SettingsError> {
    if node_id.is_empty() || node_id.len() > NODE_ID_BYTES_MAX {
        return Err(SettingsError(format!(
            "node_id must be 1 to {NODE_ID_BYTES_MAX} bytes, got {}",
            node_id.len()
        )));
    }
    if !node_id.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(SettingsError(format!(
            "node_id must be printable ASCII without spaces, got {node_id:?}"
        )));
    }
    Ok(())
}

/// The default node id: `hostname:port`.
pub fn default_node_id(port: u16) -> String {
    format!("{}:{port}", hostname())
}

/// The default advertised URL: `http://hostname:port`.
pub fn default_advertise_url(port: u16) -> String {
    format!("http://{}:{port}", hostname())
}

/// The machine's host name, read without `unsafe` (from procfs, then
/// `/etc/hostname`, then `$HOSTNAME`), or `localhost`.
fn hostname() -> String {
    let from_files = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|text| text.trim().to_string())
        .find(|name| validate_node_id(name).is_ok());
    from_files
        .or_else(|| {
            std::env::var("HOSTNAME")
                .ok()
                .filter(|name| validate_node_id(name).is_ok())
        })
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> ClusterSettings {
        ClusterSettings::new("redis://127.0.0.1:6379/0", "node-a:8000", "http://a:8000")
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(valid().validate(), Ok(()));
    }

    #[test]
    fn dead_node_vanishes_within_fifteen_seconds_by_default() {
        let settings = valid();
        assert!(settings.ttl + settings.heartbeat_interval <= Duration::from_secs(15));
    }

    #[test]
    fn each_bad_setting_is_named() {
        type Change = fn(&mut ClusterSettings);
        let cases: Vec<(Change, &str)> = vec![
            (|s| s.redis_url = "http://x".into(), "redis_url"),
            (|s| s.node_id = String::new(), "node_id"),
            (|s| s.node_id = "a b".into(), "node_id"),
            (|s| s.node_id = "n".repeat(201), "node_id"),
            (|s| s.advertise_url = String::new(), "advertise_url"),
            (|s| s.cluster_max_sessions = Some(0), "cluster_max_sessions"),
            (|s| s.lease_block = 0, "lease block"),
            (|s| s.lease_block = LEASE_BLOCK_MAX + 1, "lease block"),
            (|s| s.heartbeat_interval = Duration::ZERO, "heartbeat"),
            (|s| s.ttl = Duration::from_secs(3), "TTL"),
            (|s| s.remote_timeout = Duration::ZERO, "timeouts"),
            (|s| s.key_prefix = String::new(), "prefix"),
        ];
        for (change, name) in cases {
            let mut settings = valid();
            change(&mut settings);
            let error = settings.validate().expect_err(name);
            assert!(error.0.contains(name), "{error} should name {name}");
        }
    }

    #[test]
    fn redis_url_with_password_is_not_echoed() {
        let mut settings = valid();
        settings.redis_url = "redis://:secret@[bad".into();
        if let Err(error) = settings.validate() {
            assert!(!error.0.contains("secret"));
        }
    }

    #[test]
    fn fail_mode_parses_its_two_names() {
        assert_eq!("open".parse(), Ok(FailMode::Open));
        assert_eq!("closed".parse(), Ok(FailMode::Closed));
        assert!("Open".parse::<FailMode>().is_err());
        assert_eq!(FailMode::Closed.to_string(), "closed");
    }

    #[test]
    fn lease_block_is_capped_by_the_cluster_bound() {
        let mut settings = valid();
        assert_eq!(settings.lease_block_effective(), 0);
        settings.cluster_max_sessions = Some(2);
        assert_eq!(settings.lease_block_effective(), 2);
        settings.cluster_max_sessions = Some(100);
        assert_eq!(settings.lease_block_effective(), LEASE_BLOCK_DEFAULT);
    }

    #[test]
    fn default_node_id_is_host_and_port() {
        let id = default_node_id(8000);
        assert!(id.ends_with(":8000"), "{id}");
        assert_eq!(validate_node_id(&id), Ok(()));
        assert!(default_advertise_url(8000).starts_with("http://"));
    }
}
