//! The agent's main loop: wait for a message or the next deadline, drain
//! every ready message into one batch, then do the batch's Redis work —
//! registry writes (heartbeat, sessions), admission, queries — and the
//! shutdown.

use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use super::leases::answer_admit;
use super::state::*;
use crate::cluster::admission::MODE_UNAVAILABLE;
use crate::cluster::handle::{ToAgent, ToAgentLossy};
use crate::cluster::leases::release;
use crate::cluster::record::{unix_ms, ClusterError, SessionRecord};
use crate::cluster::registry::{self, NodeFields, RegistryWrite};
use crate::cluster::settings::FLUSH_INTERVAL;

impl Agent {
    pub(super) fn run(mut self) {
        loop {
            let mut batch = Batch::default();
            let wait = self.next_wakeup().saturating_duration_since(Instant::now());
            crossbeam_channel::select! {
                recv(self.from_handles) -> message => match message {
                    Ok(message) => self.on_message(message, &mut batch),
                    Err(_) => batch.shutdown = Some(true),
                },
                recv(self.from_handles_lossy) -> message => match message {
                    Ok(message) => self.on_lossy(message),
                    // Every handle is gone; the urgent queue still has the agent's own sender.
                    Err(_) => self.from_handles_lossy = crossbeam_channel::never(),
                },
                default(wait) => {}
            }
            self.drain(&mut batch);
            match self.stop.load(Ordering::Acquire) {
                STOP_CLEAN => batch.shutdown = Some(true),
                STOP_ABANDON => batch.shutdown = Some(false),
                _ => {}
            }
            if let Some(clean) = batch.shutdown {
                self.on_shutdown(clean, batch);
                return;
            }
            self.on_turn(batch);
        }
    }

    pub(super) fn drain(&mut self, batch: &mut Batch) {
        for _ in 0..BATCH_MESSAGES_MAX {
            match self.from_handles.try_recv() {
                Ok(message) => self.on_message(message, batch),
                Err(_) => break,
            }
        }
        for _ in 0..BATCH_MESSAGES_MAX {
            match self.from_handles_lossy.try_recv() {
                Ok(message) => self.on_lossy(message),
                Err(_) => break,
            }
        }
    }

    pub(super) fn next_wakeup(&self) -> Instant {
        let now = Instant::now();
        let mut wake = now + IDLE_WAKE_MAX;
        if self.rebalance_due || self.probe_due {
            return now;
        }
        if let Some(at) = self.link.reconnect_at() {
            wake = wake.min(at);
        } else {
            wake = wake.min(self.next_heartbeat);
            if let Some(changed) = self.changed_at {
                wake = wake.min(changed + FLUSH_INTERVAL);
            }
        }
        for pending in self.pending.values() {
            wake = wake.min(pending.deadline);
        }
        if let Some(retry) = self.returns.next_retry {
            wake = wake.min(retry);
        }
        wake
    }

    pub(super) fn mark_changed(&mut self) {
        if self.changed_at.is_none() {
            self.changed_at = Some(Instant::now());
        }
    }

    pub(super) fn on_message(&mut self, message: ToAgent, batch: &mut Batch) {
        match message {
            ToAgent::SessionOpened(mut record) => {
                record.node = self.settings.node_id.clone();
                self.closed.retain(|id| *id != record.session_id);
                self.dirty.insert(record.session_id.clone());
                self.sessions.insert(record.session_id.clone(), record);
                self.mark_changed();
            }
            ToAgent::SessionClosed(session_id) => self.forget_session(session_id),
            ToAgent::SetHealthy(healthy) => {
                self.healthy = healthy;
                self.mark_changed();
            }
            ToAgent::Admit(waiter) => batch.waiters.push(waiter),
            ToAgent::Rebalance => self.rebalance_due = true,
            ToAgent::Probe => self.probe_due = true,
            ToAgent::Inbox(inbox) => self.on_inbox(inbox),
            ToAgent::RemoteConfirm {
                request_id,
                reply_to,
                session_id,
                outcome,
            } => self.on_remote_confirm(request_id, reply_to, session_id, outcome),
            ToAgent::Shutdown { clean } => batch.shutdown = Some(clean),
            query @ (ToAgent::ListSessions(_)
            | ToAgent::GetSession(..)
            | ToAgent::DeleteSession(..)
            | ToAgent::Nodes(_)
            | ToAgent::Metrics(_)) => batch.queries.push(query),
        }
    }

    pub(super) fn on_lossy(&mut self, message: ToAgentLossy) {
        match message {
            ToAgentLossy::SessionUpdated(mut record) => {
                // An update never brings back a session that was closed.
                if let Some(current) = self.sessions.get_mut(&record.session_id) {
                    record.node = self.settings.node_id.clone();
                    *current = record;
                    self.dirty.insert(current.session_id.clone());
                    self.mark_changed();
                }
            }
            ToAgentLossy::Metrics(metrics) => self.metrics = Some(metrics),
        }
    }

    pub(super) fn forget_session(&mut self, session_id: String) {
        if self.sessions.remove(&session_id).is_some() {
            self.dirty.remove(&session_id);
            if self.closed.len() < CLOSED_PENDING_MAX {
                self.closed.push(session_id);
            }
            self.mark_changed();
        }
    }

    /// The Redis work of one turn, in order: connection, timeouts, registry,
    /// leases and admission, queries.
    pub(super) fn on_turn(&mut self, batch: Batch) {
        let now = Instant::now();
        if self.link.connect_if_due(now) {
            self.on_connected();
        }
        self.expire_pending(now);
        if std::mem::take(&mut self.probe_due) {
            let _ = self.link.run("probe", |connection, _, _| {
                redis::cmd("PING").query::<String>(connection)
            });
        }
        if self.link.is_connected() {
            if now >= self.next_heartbeat {
                self.heartbeat();
            } else if self
                .changed_at
                .is_some_and(|changed| now >= changed + FLUSH_INTERVAL || !batch.queries.is_empty())
            {
                self.write_registry(false);
            }
        }
        let mut waiters = batch.waiters;
        if self.returns.next_retry.is_some_and(|retry| now >= retry) {
            self.returns.next_retry = None;
            waiters.append(&mut self.returns.waiters);
        }
        if self.rebalance_due || !waiters.is_empty() {
            self.rebalance(waiters);
        }
        for query in batch.queries {
            self.answer(query);
        }
    }

    /// A new connection: write everything again, take the leases back,
    /// then let the node see Redis as available.
    pub(super) fn on_connected(&mut self) {
        self.write_registry(true);
        self.renew_leases();
        if self.link.is_connected() {
            self.link.registered();
            self.next_heartbeat = Instant::now() + self.settings.heartbeat_interval;
            self.rebalance_due = true;
        }
    }

    pub(super) fn heartbeat(&mut self) {
        self.next_heartbeat = Instant::now() + self.settings.heartbeat_interval;
        self.write_registry(true);
        self.renew_leases();
        self.rebalance_due = true;
    }

    pub(super) fn ttl_ms(&self) -> u64 {
        u64::try_from(self.settings.ttl.as_millis()).unwrap_or(u64::MAX)
    }

    /// Writes this node and its sessions: all of them when `full`, else the
    /// changes since the last write.
    pub(super) fn write_registry(&mut self, full: bool) {
        let sessions: Vec<&SessionRecord> = if full {
            self.sessions.values().collect()
        } else {
            self.dirty
                .iter()
                .filter_map(|id| self.sessions.get(id))
                .collect()
        };
        let batch = RegistryWrite {
            node: NodeFields {
                node_id: &self.settings.node_id,
                url: &self.settings.advertise_url,
                healthy: self.healthy,
                active_sessions: self.sessions.len(),
                started_ms: self.started_ms,
                heartbeat_ms: unix_ms(SystemTime::now()),
                metrics: self.metrics.as_ref(),
            },
            sessions,
            closed: &self.closed,
            full,
            ttl_ms: self.ttl_ms(),
        };
        let written = self
            .link
            .run("registry write", |connection, keys, _| {
                registry::write(connection, keys, &batch)
            })
            .is_some();
        if written {
            self.dirty.clear();
            self.closed.clear();
            self.changed_at = None;
        } else if self.changed_at.is_none() && !self.sessions.is_empty() {
            // Written again in full after the reconnect.
            self.changed_at = Some(Instant::now());
        }
    }

    pub(super) fn on_shutdown(&mut self, clean: bool, batch: Batch) {
        for waiter in batch.waiters {
            answer_admit(waiter, self.admission.answer_failing());
        }
        for (_, pending) in self.pending.drain() {
            let _ = pending.answer.send(Err(ClusterError::Unavailable));
        }
        if clean && self.link.is_connected() {
            let names = self.book.clear();
            let session_ids: Vec<String> = self.sessions.keys().cloned().collect();
            let node_id = self.settings.node_id.clone();
            let _ = self.link.run("shutdown", |connection, keys, _| {
                release(connection, keys, &names)?;
                registry::remove_node(connection, keys, &node_id, &session_ids)
            });
            self.admission
                .drop_held(u32::try_from(names.len()).unwrap_or(u32::MAX));
        }
        if self.settings.cluster_max_sessions.is_some() {
            self.admission.set_mode(MODE_UNAVAILABLE);
        }
        self.link.close();
    }
}
