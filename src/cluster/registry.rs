//! The Redis side of the registry: writing this node and its sessions, and
//! reading every node and session for the operator views.
//!
//! Writes are one `MULTI`/`EXEC` pipeline per flush or heartbeat, so a reader
//! never sees a node's session index half rewritten. Every key written gets
//! the TTL again, so keys of a node that stops writing expire on their own.

use std::collections::HashMap;

use redis::{Connection, RedisResult};
use serde_json::Value;

use super::keys::Keys;
use super::record::{
    rfc3339_from_unix_ms, EngineNodeFigures, NodeMetrics, NodeRecord, SessionRecord,
};

/// This node's own fields, written with every flush and heartbeat.
#[derive(Debug)]
pub(crate) struct NodeFields<'a> {
    pub node_id: &'a str,
    pub url: &'a str,
    pub healthy: bool,
    pub active_sessions: usize,
    pub started_ms: u64,
    pub heartbeat_ms: u64,
    pub metrics: Option<&'a Value>,
}

/// What one write covers.
#[derive(Debug)]
pub(crate) struct RegistryWrite<'a> {
    pub node: NodeFields<'a>,
    /// Sessions to (re)write.
    pub sessions: Vec<&'a SessionRecord>,
    /// Sessions closed since the last write.
    pub closed: &'a [String],
    /// `sessions` is every session of the node: the index is rebuilt from
    /// it (heartbeat, reconnect) instead of being added to (flush).
    pub full: bool,
    pub ttl_ms: u64,
}

/// How long an entry of the nodes set outlives its node's hash before a
/// heartbeat of any node trims it (the readers trim sooner).
const NODES_SET_TRIM_TTLS: u64 = 6;

/// Writes this node, its sessions and its index in one transaction.
pub(crate) fn write(
    connection: &mut Connection,
    keys: &Keys,
    batch: &RegistryWrite<'_>,
) -> RedisResult<()> {
    let ttl_ms = batch.ttl_ms;
    let node = &batch.node;
    let node_key = keys.node(node.node_id);
    let index_key = keys.node_sessions(node.node_id);
    let mut pipe = redis::pipe();
    pipe.atomic();
    pipe.cmd("HSET")
        .arg(&node_key)
        .arg("node_id")
        .arg(node.node_id)
        .arg("url")
        .arg(node.url)
        .arg("healthy")
        .arg(u8::from(node.healthy))
        .arg("active_sessions")
        .arg(node.active_sessions)
        .arg("started_ms")
        .arg(node.started_ms)
        .arg("heartbeat_ms")
        .arg(node.heartbeat_ms)
        .ignore();
    if let Some(metrics) = node.metrics {
        pipe.cmd("HSET")
            .arg(&node_key)
            .arg("metrics")
            .arg(metrics.to_string())
            .ignore();
    }
    pipe.cmd("PEXPIRE").arg(&node_key).arg(ttl_ms).ignore();
    pipe.cmd("ZADD")
        .arg(keys.nodes())
        .arg(node.heartbeat_ms)
        .arg(node.node_id)
        .ignore();
    if batch.full {
        let stale_before = node
            .heartbeat_ms
            .saturating_sub(ttl_ms.saturating_mul(NODES_SET_TRIM_TTLS));
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(keys.nodes())
            .arg("-inf")
            .arg(format!("({stale_before}"))
            .ignore();
        pipe.cmd("DEL").arg(&index_key).ignore();
    }
    for record in &batch.sessions {
        let Ok(json) = serde_json::to_string(record) else {
            continue;
        };
        let session_key = keys.session(&record.session_id);
        pipe.cmd("HSET")
            .arg(&session_key)
            .arg("node")
            .arg(node.node_id)
            .arg("state")
            .arg(&record.state)
            .arg("updated_ms")
            .arg(node.heartbeat_ms)
            .arg("record")
            .arg(json)
            .ignore();
        pipe.cmd("PEXPIRE").arg(&session_key).arg(ttl_ms).ignore();
    }
    if !batch.sessions.is_empty() {
        let ids: Vec<&str> = batch
            .sessions
            .iter()
            .map(|record| record.session_id.as_str())
            .collect();
        pipe.cmd("SADD").arg(&index_key).arg(ids).ignore();
    }
    if !batch.closed.is_empty() {
        let closed_keys: Vec<String> = batch.closed.iter().map(|id| keys.session(id)).collect();
        pipe.cmd("DEL").arg(closed_keys).ignore();
        if !batch.full {
            pipe.cmd("SREM").arg(&index_key).arg(batch.closed).ignore();
        }
    }
    pipe.cmd("PEXPIRE").arg(&index_key).arg(ttl_ms).ignore();
    pipe.exec(connection)
}

/// Removes this node and its sessions (a clean shutdown).
pub(crate) fn remove_node(
    connection: &mut Connection,
    keys: &Keys,
    node_id: &str,
    session_ids: &[String],
) -> RedisResult<()> {
    let mut pipe = redis::pipe();
    pipe.atomic();
    pipe.cmd("DEL")
        .arg(keys.node(node_id))
        .arg(keys.node_sessions(node_id))
        .ignore();
    pipe.cmd("ZREM").arg(keys.nodes()).arg(node_id).ignore();
    if !session_ids.is_empty() {
        let session_keys: Vec<String> = session_ids.iter().map(|id| keys.session(id)).collect();
        pipe.cmd("DEL").arg(session_keys).ignore();
    }
    pipe.exec(connection)
}

/// Every node whose hash still exists, with its fields, in id order. Ids
/// whose hash has expired are removed from the nodes set on the way.
pub(crate) fn live_nodes(
    connection: &mut Connection,
    keys: &Keys,
) -> RedisResult<Vec<(String, HashMap<String, String>)>> {
    let ids: Vec<String> = redis::cmd("ZRANGE")
        .arg(keys.nodes())
        .arg(0)
        .arg(-1)
        .query(connection)?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for id in &ids {
        pipe.cmd("HGETALL").arg(keys.node(id));
    }
    let hashes: Vec<HashMap<String, String>> = pipe.query(connection)?;
    let mut live = Vec::with_capacity(ids.len());
    let mut dead = Vec::new();
    for (id, fields) in ids.into_iter().zip(hashes) {
        if fields.is_empty() {
            dead.push(id);
        } else {
            live.push((id, fields));
        }
    }
    if !dead.is_empty() {
        redis::cmd("ZREM")
            .arg(keys.nodes())
            .arg(dead)
            .exec(connection)?;
    }
    live.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(live)
}

/// Every session of the given nodes, oldest first.
pub(crate) fn sessions_of(
    connection: &mut Connection,
    keys: &Keys,
    node_ids: &[&str],
) -> RedisResult<Vec<SessionRecord>> {
    if node_ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for id in node_ids {
        pipe.cmd("SMEMBERS").arg(keys.node_sessions(id));
    }
    let indexes: Vec<Vec<String>> = pipe.query(connection)?;
    let session_ids: Vec<String> = indexes.into_iter().flatten().collect();
    if session_ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for id in &session_ids {
        pipe.cmd("HGET").arg(keys.session(id)).arg("record");
    }
    let texts: Vec<Option<String>> = pipe.query(connection)?;
    let mut sessions: Vec<SessionRecord> = texts
        .into_iter()
        .flatten()
        .filter_map(|text| parse_session(&text))
        .collect();
    sessions.sort_by(|a, b| {
        a.created_at
            .cmp(&b.created_at)
            .then_with(|| a.session_id.cmp(&b.session_id))
    });
    Ok(sessions)
}

/// One session's record, if any node registered it.
pub(crate) fn session(
    connection: &mut Connection,
    keys: &Keys,
    session_id: &str,
) -> RedisResult<Option<SessionRecord>> {
    let text: Option<String> = redis::cmd("HGET")
        .arg(keys.session(session_id))
        .arg("record")
        .query(connection)?;
    Ok(text.as_deref().and_then(parse_session))
}

/// The node that registered a session, if any.
pub(crate) fn session_owner(
    connection: &mut Connection,
    keys: &Keys,
    session_id: &str,
) -> RedisResult<Option<String>> {
    redis::cmd("HGET")
        .arg(keys.session(session_id))
        .arg("node")
        .query(connection)
}

fn parse_session(text: &str) -> Option<SessionRecord> {
    match serde_json::from_str(text) {
        Ok(record) => Some(record),
        Err(error) => {
            tracing::warn!(%error, "cluster: a session record in Redis does not parse; skipped");
            None
        }
    }
}

/// A node's view from its hash. Healthy means the node says so and its last
/// heartbeat is at most `healthy_age_ms` old on this node's clock.
pub(crate) fn node_record(
    node_id: &str,
    fields: &HashMap<String, String>,
    now_ms: u64,
    healthy_age_ms: u64,
) -> NodeRecord {
    let number = |name: &str| -> u64 {
        fields
            .get(name)
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    };
    let heartbeat_ms = number("heartbeat_ms");
    let fresh = now_ms.saturating_sub(heartbeat_ms) <= healthy_age_ms;
    let role = fields
        .get("role")
        .cloned()
        .unwrap_or_else(|| "frontend".to_string());
    let engine = (role == "engine").then(|| EngineNodeFigures {
        model: fields.get("model").cloned().unwrap_or_default(),
        workers: number("workers"),
        in_flight: number("in_flight"),
        jobs_done: number("jobs_done"),
        jobs_claimed: number("jobs_claimed"),
        interims_dropped: number("interims_dropped"),
        rtf: fields
            .get("rtf")
            .and_then(|value| value.parse().ok())
            .filter(|rtf: &f64| rtf.is_finite())
            .unwrap_or(0.0),
    });
    NodeRecord {
        node_id: node_id.to_string(),
        url: fields.get("url").cloned().unwrap_or_default(),
        healthy: fresh && fields.get("healthy").map(String::as_str) == Some("1"),
        active_sessions: number("active_sessions"),
        last_heartbeat_at: rfc3339_from_unix_ms(heartbeat_ms),
        role,
        engine,
    }
}

/// A node's published metrics, if it published any that parse.
pub(crate) fn node_metrics(node_id: &str, fields: &HashMap<String, String>) -> Option<NodeMetrics> {
    let metrics = serde_json::from_str(fields.get("metrics")?).ok()?;
    Some(NodeMetrics {
        node_id: node_id.to_string(),
        metrics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn a_node_is_healthy_only_when_it_says_so_and_beat_recently() {
        let hash = fields(&[
            ("url", "http://a:1"),
            ("healthy", "1"),
            ("active_sessions", "3"),
            ("heartbeat_ms", "1700000000000"),
        ]);
        let record = node_record("a:1", &hash, 1_700_000_005_000, 6_000);
        assert!(record.healthy);
        assert_eq!(record.active_sessions, 3);
        assert_eq!(record.url, "http://a:1");
        assert_eq!(record.last_heartbeat_at, "2023-11-14T22:13:20.000Z");
        assert!(!node_record("a:1", &hash, 1_700_000_007_000, 6_000).healthy);
        let draining = fields(&[("healthy", "0"), ("heartbeat_ms", "1700000000000")]);
        assert!(!node_record("a:1", &draining, 1_700_000_000_000, 6_000).healthy);
    }

    #[test]
    fn garbage_fields_give_zeros_not_panics() {
        let hash = fields(&[("active_sessions", "many"), ("heartbeat_ms", "-1")]);
        let record = node_record("a", &hash, 0, 1);
        assert_eq!(record.active_sessions, 0);
        assert!(!record.healthy);
        assert!(node_metrics("a", &fields(&[("metrics", "{not json")])).is_none());
        assert!(parse_session("{}").is_none());
    }
}
