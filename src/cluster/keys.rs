//! The names of every Redis key and channel the cluster uses, in one place.
//!
//! Each kind of key has its own word after the prefix (`node:`,
//! `node-sessions:`, `session:`, …), so no node id or session id, whatever
//! characters it holds, can make one key's name collide with another kind's.

/// Key and channel names under one prefix (`ts:` by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Names under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    /// Sorted set of node ids, scored by their last heartbeat (Unix ms).
    /// Readers enumerate nodes from it; a member whose node hash has expired
    /// is a dead node and is removed by the reader that finds it.
    pub fn nodes(&self) -> String {
        format!("{}nodes", self.prefix)
    }

    /// Hash of one node: url, health, session count, heartbeat time,
    /// published metrics. Expires after the TTL.
    pub fn node(&self, node_id: &str) -> String {
        format!("{}node:{node_id}", self.prefix)
    }

    /// Set of the ids of one node's sessions. Expires after the TTL.
    pub fn node_sessions(&self, node_id: &str) -> String {
        format!("{}node-sessions:{node_id}", self.prefix)
    }

    /// Hash of one session: owner node, state, update time, the full record
    /// as JSON. Expires after the TTL.
    pub fn session(&self, session_id: &str) -> String {
        format!("{}session:{session_id}", self.prefix)
    }

    /// Sorted set of admission leases: member `node:incarnation:seq`, score
    /// the lease's expiry in Unix ms of the Redis server's clock.
    pub fn leases(&self) -> String {
        format!("{}leases", self.prefix)
    }

    /// Pub/sub channel a node listens on for remote commands and for the
    /// answers to its own.
    pub fn inbox(&self, node_id: &str) -> String {
        format!("{}node-inbox:{node_id}", self.prefix)
    }

    /// The name of one lease.
    pub fn lease_member(node_id: &str, incarnation: &str, seq: u64) -> String {
        format!("{node_id}:{incarnation}:{seq}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_namespaced() {
        let keys = Keys::new("ts:");
        assert_eq!(keys.nodes(), "ts:nodes");
        assert_eq!(keys.node("a:8000"), "ts:node:a:8000");
        assert_eq!(keys.node_sessions("a:8000"), "ts:node-sessions:a:8000");
        assert_eq!(keys.session("0b7e"), "ts:session:0b7e");
        assert_eq!(keys.leases(), "ts:leases");
        assert_eq!(keys.inbox("a:8000"), "ts:node-inbox:a:8000");
        assert_eq!(Keys::lease_member("a:8000", "f00d", 7), "a:8000:f00d:7");
    }

    #[test]
    fn ids_cannot_make_kinds_collide() {
        let keys = Keys::new("ts:");
        // A node named like another node's session index still gets its own key.
        assert_ne!(keys.node("x:sessions"), keys.node_sessions("x"));
        assert_ne!(keys.node("sessions:x"), keys.node_sessions("x"));
        assert_ne!(keys.session("nodes"), keys.nodes());
        let all = [
            keys.nodes(),
            keys.node("n"),
            keys.node_sessions("n"),
            keys.session("n"),
            keys.leases(),
            keys.inbox("n"),
        ];
        for (index, key) in all.iter().enumerate() {
            assert!(key.starts_with("ts:"));
            assert!(all.iter().skip(index + 1).all(|other| other != key));
        }
    }

    #[test]
    fn prefixes_separate_clusters() {
        assert_ne!(Keys::new("a:").leases(), Keys::new("b:").leases());
    }
}
