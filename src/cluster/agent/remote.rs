//! Deletes across nodes: a delete for another node's session is published
//! to that node's inbox and waits for its confirmation (bounded in number
//! and time); a delete from another node is handed to this node's cores.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::state::*;
use crate::cluster::handle::{Answer, RemoteCommand, RemoteReply};
use crate::cluster::record::{session_id_is_plausible, ClusterError, DeleteOutcome, InboxMessage};
use crate::cluster::registry::{self};

impl Agent {
    pub(super) fn expire_pending(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, pending)| pending.deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            if let Some(pending) = self.pending.remove(&id) {
                self.shared.remote_timeouts.fetch_add(1, Ordering::Relaxed);
                let _ = pending.answer.send(Err(ClusterError::Timeout));
            }
        }
    }

    /// Routes a delete to the session's owner: this node directly, another
    /// node through its inbox channel.
    pub(super) fn delete_session(
        &mut self,
        session_id: String,
        flush: bool,
        answer: Answer<DeleteOutcome>,
    ) {
        if !session_id_is_plausible(&session_id) {
            let _ = answer.send(Ok(DeleteOutcome::NotFound));
            return;
        }
        if self.pending.len() >= PENDING_DELETES_MAX {
            let _ = answer.send(Err(ClusterError::Unavailable));
            return;
        }
        let owner = if self.sessions.contains_key(&session_id) {
            Some(self.settings.node_id.clone())
        } else {
            let found = self.link.run("session owner", |connection, keys, _| {
                registry::session_owner(connection, keys, &session_id)
            });
            match found {
                Some(owner) => owner,
                None => {
                    let _ = answer.send(Err(ClusterError::Unavailable));
                    return;
                }
            }
        };
        let Some(owner) = owner else {
            let _ = answer.send(Ok(DeleteOutcome::NotFound));
            return;
        };
        let request_id = format!("{}-{}", self.incarnation, self.next_request);
        self.next_request += 1;
        let deadline = Instant::now() + self.settings.remote_timeout;
        if owner == self.settings.node_id {
            self.pending
                .insert(request_id.clone(), PendingDelete { deadline, answer });
            let reply_to = self.settings.node_id.clone();
            self.deliver_remote(request_id, session_id, reply_to, flush);
            return;
        }
        let message = InboxMessage::Delete {
            request_id: request_id.clone(),
            session_id,
            reply_to: self.settings.node_id.clone(),
            flush,
        };
        let Ok(payload) = serde_json::to_string(&message) else {
            let _ = answer.send(Err(ClusterError::Unavailable));
            return;
        };
        let receivers = self.link.run("publish delete", |connection, keys, _| {
            redis::cmd("PUBLISH")
                .arg(keys.inbox(&owner))
                .arg(payload)
                .query::<u64>(connection)
        });
        match receivers {
            None => {
                let _ = answer.send(Err(ClusterError::Unavailable));
            }
            // The owner is registered but not listening: it cannot answer.
            Some(0) => {
                self.shared.remote_timeouts.fetch_add(1, Ordering::Relaxed);
                let _ = answer.send(Err(ClusterError::Timeout));
            }
            Some(_) => {
                self.pending
                    .insert(request_id, PendingDelete { deadline, answer });
            }
        }
    }

    /// Hands a delete for one of this node's sessions to the server.
    pub(super) fn deliver_remote(
        &mut self,
        request_id: String,
        session_id: String,
        reply_to: String,
        flush: bool,
    ) {
        let reply = RemoteReply::new(
            request_id,
            reply_to,
            session_id.clone(),
            self.to_agent.clone(),
        );
        if self
            .remote_tx
            .try_send(RemoteCommand::Delete {
                session_id,
                flush,
                reply,
            })
            .is_err()
        {
            // Not taken or full: the asking node times out (504).
            tracing::warn!(
                "cluster: remote command queue full or not taken; a delete will time out"
            );
        }
    }

    pub(super) fn on_inbox(&mut self, inbox: InboxMessage) {
        match inbox {
            InboxMessage::Delete {
                request_id,
                session_id,
                reply_to,
                flush,
            } => self.deliver_remote(request_id, session_id, reply_to, flush),
            InboxMessage::DeleteReply {
                request_id,
                outcome,
            } => {
                if let Some(pending) = self.pending.remove(&request_id) {
                    let _ = pending.answer.send(Ok(outcome));
                }
            }
            InboxMessage::ReturnLeases { from } => self.return_pooled_leases(&from),
        }
    }

    pub(super) fn on_remote_confirm(
        &mut self,
        request_id: String,
        reply_to: String,
        session_id: String,
        outcome: DeleteOutcome,
    ) {
        // Deleted: the session is gone. Not found: the registry held a
        // session the server does not have; either way it leaves the registry.
        self.forget_session(session_id);
        // The asker may list sessions as soon as it has the answer: write
        // the removal first.
        if self.changed_at.is_some() && self.link.is_connected() {
            self.write_registry(false);
        }
        if reply_to == self.settings.node_id {
            self.on_inbox(InboxMessage::DeleteReply {
                request_id,
                outcome,
            });
            return;
        }
        let message = InboxMessage::DeleteReply {
            request_id,
            outcome,
        };
        let Ok(payload) = serde_json::to_string(&message) else {
            return;
        };
        // Lost if Redis is down: the asking node times out.
        let _ = self
            .link
            .run("publish delete reply", |connection, keys, _| {
                redis::cmd("PUBLISH")
                    .arg(keys.inbox(&reply_to))
                    .arg(payload)
                    .query::<u64>(connection)
            });
    }
}
