//! [`SessionInfo`]: the operator's view of one streaming session (API.md,
//! "Sessions"), and its conversions to and from the cluster registry's
//! [`SessionRecord`]. The core's shard answers with it, the operator
//! endpoints serialise it, and cluster mode publishes it.

use serde::Serialize;

use crate::cluster::SessionRecord;
use crate::session::SessionState;

/// An operator's view of a session (API.md, "Sessions").
#[derive(Debug, Clone, Serialize)]
pub struct SessionInfo {
    pub session_id: String,
    pub state: &'static str,
    /// The wire protocol the client speaks: `native`, `deepgram`, `openai_realtime`.
    pub protocol: String,
    pub core: usize,
    pub created_at: String,
    pub last_activity_at: String,
    pub idle_s: f64,
    pub audio_bytes: u64,
    pub audio_seconds: f64,
    pub chunks: u64,
    pub segments: u64,
    pub transcripts: u64,
    pub peer: String,
    /// The owning node, in cluster mode only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Its connection dropped and it waits for a resume (`ws/resume.rs`);
    /// its state is the one it had when it dropped.
    pub detached: bool,
}

impl SessionInfo {
    /// The registry's form of this view (cluster mode); the agent fills in
    /// the node.
    pub fn to_record(&self) -> SessionRecord {
        SessionRecord {
            session_id: self.session_id.clone(),
            node: String::new(),
            state: self.state.to_string(),
            protocol: self.protocol.clone(),
            core: self.core,
            created_at: self.created_at.clone(),
            last_activity_at: self.last_activity_at.clone(),
            audio_bytes: self.audio_bytes,
            audio_seconds: self.audio_seconds,
            chunks: self.chunks,
            segments: self.segments,
            transcripts: self.transcripts,
            peer: self.peer.clone(),
        }
    }

    /// The view of a session another node owns, from its registry record
    /// (as fresh as that node's last update, about a second).
    pub fn from_record(record: SessionRecord, now: std::time::SystemTime) -> SessionInfo {
        let state = SessionState::parse(&record.state).map_or("active", SessionState::name);
        SessionInfo {
            idle_s: record.idle_seconds(now).unwrap_or(0.0),
            session_id: record.session_id,
            state,
            protocol: record.protocol,
            core: record.core,
            created_at: record.created_at,
            last_activity_at: record.last_activity_at,
            audio_bytes: record.audio_bytes,
            audio_seconds: record.audio_seconds,
            chunks: record.chunks,
            segments: record.segments,
            transcripts: record.transcripts,
            peer: record.peer,
            node: Some(record.node),
            detached: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_registry_record_shows_as_a_session_object_with_its_node() {
        let at = std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut record = SessionRecord::new("s-1", "active", 1, at, "10.0.0.7:5000");
        record.node = "node-b".to_string();
        record.audio_bytes = 3200;
        let info = SessionInfo::from_record(record.clone(), at + Duration::from_millis(1500));
        assert_eq!(info.node.as_deref(), Some("node-b"));
        assert_eq!((info.state, info.core, info.idle_s), ("active", 1, 1.5));
        let mut back = info.to_record();
        back.node = record.node.clone();
        assert_eq!(back, record);
        let value = serde_json::to_value(&info).expect("json");
        assert_eq!(value["node"], "node-b");
        record.state = "nonsense".to_string();
        assert_eq!(SessionInfo::from_record(record, at).state, "active");
    }
}
