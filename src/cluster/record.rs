//! The values that cross between the server and the agent, and between
//! nodes through Redis: session and node records, metrics, the answers to
//! operator queries and the messages on the node inboxes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The longest session id the cluster looks up. Ids come from request paths:
/// anything longer or containing spaces or control characters cannot be a
/// session and is answered "not found" without a Redis call.
pub const SESSION_ID_BYTES_MAX: usize = 128;

/// Why a cluster query did not get an answer. The server maps these to HTTP
/// in its one error mapping: `Unavailable` → 503 `cluster_unavailable`,
/// `Timeout` → 504 `cluster_timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterError {
    /// Redis cannot be reached (or the agent is gone or saturated).
    Unavailable,
    /// The node that owns the session did not answer in time.
    Timeout,
}

impl ClusterError {
    /// The error code of API.md.
    pub fn code(self) -> &'static str {
        match self {
            ClusterError::Unavailable => "cluster_unavailable",
            ClusterError::Timeout => "cluster_timeout",
        }
    }
}

impl std::fmt::Display for ClusterError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.code())
    }
}

impl std::error::Error for ClusterError {}

/// What a delete found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteOutcome {
    /// The owner closed the session (HTTP 200).
    Deleted,
    /// No node has the session (HTTP 404 `session_not_found`).
    NotFound,
}

/// One session as the cluster registry holds it: the operator view of
/// API.md ("Sessions") plus the owning node. The owner publishes it; every
/// node can read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub session_id: String,
    /// The owning node. [`crate::cluster::ClusterHandle::session_opened`]
    /// fills it in; the server may leave it empty.
    #[serde(default)]
    pub node: String,
    /// `created`, `active`, `closing`.
    pub state: String,
    /// The wire protocol (`native` in records from nodes that predate it).
    #[serde(default = "native_protocol")]
    pub protocol: String,
    /// The core of the owning node.
    pub core: usize,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC, as of the owner's last update.
    pub last_activity_at: String,
    pub audio_bytes: u64,
    pub audio_seconds: f64,
    pub chunks: u64,
    pub segments: u64,
    pub transcripts: u64,
    pub peer: String,
}

fn native_protocol() -> String {
    "native".to_string()
}

impl SessionRecord {
    /// A record with zero counters, created and active `at`.
    pub fn new(session_id: &str, state: &str, core: usize, at: SystemTime, peer: &str) -> Self {
        let time = humantime::format_rfc3339_millis(at).to_string();
        SessionRecord {
            session_id: session_id.to_string(),
            node: String::new(),
            state: state.to_string(),
            protocol: native_protocol(),
            core,
            created_at: time.clone(),
            last_activity_at: time,
            audio_bytes: 0,
            audio_seconds: 0.0,
            chunks: 0,
            segments: 0,
            transcripts: 0,
            peer: peer.to_string(),
        }
    }

    /// Seconds since the last activity, as API.md's `idle_s` (rounded to the
    /// millisecond); `None` if `last_activity_at` does not parse.
    pub fn idle_seconds(&self, now: SystemTime) -> Option<f64> {
        let last = humantime::parse_rfc3339(&self.last_activity_at).ok()?;
        let idle = now.duration_since(last).unwrap_or(Duration::ZERO);
        Some((idle.as_secs_f64() * 1000.0).round() / 1000.0)
    }
}

/// One node, as `GET /v1/cluster/nodes` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeRecord {
    pub node_id: String,
    /// The node's advertised URL.
    pub url: String,
    /// The node says it is healthy and its last heartbeat is at most three
    /// heartbeat intervals old.
    pub healthy: bool,
    pub active_sessions: u64,
    /// RFC 3339 UTC.
    pub last_heartbeat_at: String,
    /// `frontend` (holds connections and sessions) or `engine` (an engine
    /// node of the engine tier: `transcription-server engine`).
    pub role: String,
    /// An engine node's figures; absent for front ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineNodeFigures>,
}

/// What an engine node reports about itself in the registry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EngineNodeFigures {
    pub model: String,
    pub workers: u64,
    pub in_flight: u64,
    pub jobs_done: u64,
    pub jobs_claimed: u64,
    pub interims_dropped: u64,
    /// Model time per second of audio over the jobs done.
    pub rtf: f64,
}

/// The figures one node published.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeMetrics {
    pub node_id: String,
    pub metrics: Value,
}

/// `GET /v1/sessions/metrics?scope=cluster`: every live node's latest
/// published metrics and their merge (see [`merge_metrics`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterMetrics {
    pub total: Value,
    pub nodes: Vec<NodeMetrics>,
}

/// Adds `from` into `into`: numbers add up, objects merge key by key, and
/// inside any object whose key ends in `_ms` (latency summaries such as
/// `latency_ms.final.p99`) numbers take the maximum instead, since a
/// percentile over the cluster cannot be derived from the nodes'
/// percentiles and the maximum is an upper bound of it. Anything else keeps
/// the first value seen.
pub fn merge_metrics(into: &mut Value, from: &Value) {
    merge_metrics_with(into, from, Combine::Add);
}

#[derive(Clone, Copy)]
enum Combine {
    Add,
    Max,
}

fn merge_metrics_with(into: &mut Value, from: &Value, combine: Combine) {
    match (into, from) {
        (Value::Object(target), Value::Object(source)) => {
            for (key, value) in source {
                let inner = if key.ends_with("_ms") {
                    Combine::Max
                } else {
                    combine
                };
                match target.get_mut(key) {
                    Some(existing) => merge_metrics_with(existing, value, inner),
                    None => {
                        target.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (Value::Number(target), Value::Number(source)) => {
            if let Some(number) = merge_numbers(target, source, combine) {
                *target = number;
            }
        }
        _ => {}
    }
}

fn merge_numbers(
    target: &serde_json::Number,
    source: &serde_json::Number,
    combine: Combine,
) -> Option<serde_json::Number> {
    if let (Some(left), Some(right)) = (target.as_u64(), source.as_u64()) {
        let merged = match combine {
            Combine::Add => left.saturating_add(right),
            Combine::Max => left.max(right),
        };
        return Some(merged.into());
    }
    let (left, right) = (target.as_f64()?, source.as_f64()?);
    let merged = match combine {
        Combine::Add => left + right,
        Combine::Max => left.max(right),
    };
    serde_json::Number::from_f64(merged)
}

/// Whether `session_id` can name a session at all (see
/// [`SESSION_ID_BYTES_MAX`]).
pub fn session_id_is_plausible(session_id: &str) -> bool {
    !session_id.is_empty()
        && session_id.len() <= SESSION_ID_BYTES_MAX
        && session_id.bytes().all(|byte| byte.is_ascii_graphic())
}

/// A message on a node's inbox channel, as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum InboxMessage {
    /// Close `session_id` and answer `reply_to` with a [`InboxMessage::DeleteReply`].
    Delete {
        request_id: String,
        session_id: String,
        reply_to: String,
        /// End it after its finals (`DELETE ?flush=true`); absent from
        /// nodes that predate it: an immediate delete.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        flush: bool,
    },
    /// The owner's answer to a delete.
    DeleteReply {
        request_id: String,
        outcome: DeleteOutcome,
    },
    /// `from` was refused at the cluster limit: give back every free pooled
    /// lease and refill the pool only on demand for a while.
    ReturnLeases { from: String },
}

/// Milliseconds since the Unix epoch on this machine's clock.
pub fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// RFC 3339 UTC with milliseconds, from Unix milliseconds.
pub fn rfc3339_from_unix_ms(unix_ms: u64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(unix_ms);
    humantime::format_rfc3339_millis(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counters_add_and_latencies_take_the_maximum() {
        let mut total = json!({});
        merge_metrics(
            &mut total,
            &json!({"active_sessions": 2, "audio_seconds": 1.5, "by_state": {"active": 2},
                    "latency_ms": {"final": {"p50": 1.0, "p99": 4.0}}, "version": "0.1.0"}),
        );
        merge_metrics(
            &mut total,
            &json!({"active_sessions": 3, "audio_seconds": 2.0, "by_state": {"active": 1, "closing": 1},
                    "latency_ms": {"final": {"p50": 2.0, "p99": 3.0}}, "version": "0.2.0"}),
        );
        assert_eq!(
            total,
            json!({"active_sessions": 5, "audio_seconds": 3.5,
                   "by_state": {"active": 3, "closing": 1},
                   "latency_ms": {"final": {"p50": 2.0, "p99": 4.0}}, "version": "0.1.0"})
        );
    }

    #[test]
    fn counters_saturate_instead_of_wrapping() {
        let mut total = json!({"n": u64::MAX});
        merge_metrics(&mut total, &json!({"n": 1}));
        assert_eq!(total, json!({"n": u64::MAX}));
    }

    #[test]
    fn inbox_messages_round_trip_as_tagged_json() {
        let delete = InboxMessage::Delete {
            request_id: "r1".into(),
            session_id: "s1".into(),
            reply_to: "a:1".into(),
            flush: false,
        };
        let text = serde_json::to_string(&delete).unwrap_or_default();
        assert!(text.contains(r#""type":"delete""#), "{text}");
        assert_eq!(
            serde_json::from_str::<InboxMessage>(&text).ok(),
            Some(delete)
        );
        let reply = r#"{"type":"delete_reply","request_id":"r1","outcome":"not_found"}"#;
        assert_eq!(
            serde_json::from_str::<InboxMessage>(reply).ok(),
            Some(InboxMessage::DeleteReply {
                request_id: "r1".into(),
                outcome: DeleteOutcome::NotFound
            })
        );
        assert!(serde_json::from_str::<InboxMessage>(r#"{"type":"bogus"}"#).is_err());
    }

    #[test]
    fn session_ids_from_paths_are_screened() {
        assert!(session_id_is_plausible(
            "0b7e4c1a-0000-4000-8000-000000000000"
        ));
        assert!(!session_id_is_plausible(""));
        assert!(!session_id_is_plausible("a b"));
        assert!(!session_id_is_plausible("a\nb"));
        assert!(!session_id_is_plausible(
            &"x".repeat(SESSION_ID_BYTES_MAX + 1)
        ));
    }

    #[test]
    fn records_carry_rfc3339_times_and_idle_seconds() {
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let record = SessionRecord::new("s", "created", 1, at, "127.0.0.1:1");
        assert_eq!(record.created_at, "2023-11-14T22:13:20.123Z");
        assert_eq!(record.created_at, rfc3339_from_unix_ms(1_700_000_000_123));
        assert_eq!(
            record.idle_seconds(at + Duration::from_millis(1500)),
            Some(1.5)
        );
        assert_eq!(unix_ms(at), 1_700_000_000_123);
    }

    #[test]
    fn error_codes_are_the_api_names() {
        assert_eq!(ClusterError::Unavailable.code(), "cluster_unavailable");
        assert_eq!(ClusterError::Timeout.code(), "cluster_timeout");
    }
}
