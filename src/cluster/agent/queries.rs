//! The operator queries the agent answers from Redis: sessions (all, or one),
//! nodes, and the cluster's merged metrics.

use std::time::SystemTime;

use serde_json::Value;

use super::state::*;
use crate::cluster::handle::ToAgent;
use crate::cluster::record::{
    merge_metrics, session_id_is_plausible, unix_ms, ClusterError, ClusterMetrics, NodeRecord,
    SessionRecord,
};
use crate::cluster::registry::{self};

impl Agent {
    pub(super) fn answer(&mut self, query: ToAgent) {
        match query {
            ToAgent::ListSessions(answer) => {
                let _ = answer.send(self.list_sessions());
            }
            ToAgent::GetSession(session_id, answer) => {
                let _ = answer.send(self.get_session(&session_id));
            }
            ToAgent::DeleteSession(session_id, flush, answer) => {
                self.delete_session(session_id, flush, answer)
            }
            ToAgent::Nodes(answer) => {
                let _ = answer.send(self.nodes());
            }
            ToAgent::Metrics(answer) => {
                let _ = answer.send(self.cluster_metrics());
            }
            other => debug_assert!(false, "not a query: {other:?}"),
        }
    }

    pub(super) fn list_sessions(&mut self) -> Result<Vec<SessionRecord>, ClusterError> {
        self.link
            .run("list sessions", |connection, keys, _| {
                let nodes = registry::live_nodes(connection, keys)?;
                let ids: Vec<&str> = nodes.iter().map(|(id, _)| id.as_str()).collect();
                registry::sessions_of(connection, keys, &ids)
            })
            .ok_or(ClusterError::Unavailable)
    }

    pub(super) fn get_session(
        &mut self,
        session_id: &str,
    ) -> Result<Option<SessionRecord>, ClusterError> {
        if let Some(record) = self.sessions.get(session_id) {
            return Ok(Some(record.clone()));
        }
        if !session_id_is_plausible(session_id) {
            return Ok(None);
        }
        self.link
            .run("get session", |connection, keys, _| {
                registry::session(connection, keys, session_id)
            })
            .ok_or(ClusterError::Unavailable)
    }

    pub(super) fn nodes(&mut self) -> Result<Vec<NodeRecord>, ClusterError> {
        let now_ms = unix_ms(SystemTime::now());
        let healthy_age_ms =
            u64::try_from((self.settings.heartbeat_interval * HEALTHY_HEARTBEATS_MAX).as_millis())
                .unwrap_or(u64::MAX);
        let nodes = self
            .link
            .run("list nodes", |connection, keys, _| {
                registry::live_nodes(connection, keys)
            })
            .ok_or(ClusterError::Unavailable)?;
        Ok(nodes
            .iter()
            .map(|(id, fields)| registry::node_record(id, fields, now_ms, healthy_age_ms))
            .collect())
    }

    pub(super) fn cluster_metrics(&mut self) -> Result<ClusterMetrics, ClusterError> {
        let nodes = self
            .link
            .run("cluster metrics", |connection, keys, _| {
                registry::live_nodes(connection, keys)
            })
            .ok_or(ClusterError::Unavailable)?;
        let nodes: Vec<_> = nodes
            .iter()
            .filter_map(|(id, fields)| registry::node_metrics(id, fields))
            .collect();
        let mut total = Value::Object(serde_json::Map::new());
        for node in &nodes {
            merge_metrics(&mut total, &node.metrics);
        }
        Ok(ClusterMetrics { total, nodes })
    }
}
