//! The server's side of the agent: [`ClusterHandle`] (registry updates and
//! operator queries), the messages it sends the agent, and the remote
//! commands the agent hands the server.
//!
//! Every method returns at once. Updates go over a bounded lossy queue
//! (dropped and counted when full: the next update carries newer figures);
//! everything else goes over a bounded urgent queue, and a query that finds
//! it full is answered `Unavailable` at once instead of waiting.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use crossbeam_channel::{Sender, TrySendError};
use futures_channel::oneshot;
use serde_json::Value;

use super::admission::{Admit, AgentQueue, PoolRequest};
use super::record::{
    ClusterError, ClusterMetrics, DeleteOutcome, InboxMessage, NodeRecord, SessionRecord,
};

/// A reply the agent owes a caller.
pub(crate) type Answer<T> = oneshot::Sender<Result<T, ClusterError>>;

/// The urgent messages to the agent thread: never dropped silently.
#[derive(Debug)]
pub(crate) enum ToAgent {
    SessionOpened(SessionRecord),
    SessionClosed(String),
    SetHealthy(bool),
    ListSessions(Answer<Vec<SessionRecord>>),
    GetSession(String, Answer<Option<SessionRecord>>),
    /// A session to end; `true`: after its finals.
    DeleteSession(String, bool, Answer<DeleteOutcome>),
    Nodes(Answer<Vec<NodeRecord>>),
    Metrics(Answer<ClusterMetrics>),
    /// The local pool was empty: acquire a lease for this request.
    Admit(oneshot::Sender<Admit>),
    /// The pool is below its low mark or above its high mark.
    Rebalance,
    /// A message from this node's inbox channel (from the listener thread).
    Inbox(InboxMessage),
    /// The listener lost its connection: check ours.
    Probe,
    /// The server answered a remote delete.
    RemoteConfirm {
        request_id: String,
        reply_to: String,
        session_id: String,
        outcome: DeleteOutcome,
    },
    /// Stop; `clean` removes this node's keys and leases first.
    Shutdown {
        clean: bool,
    },
}

impl AgentQueue for Sender<ToAgent> {
    fn offer(&self, request: PoolRequest) -> bool {
        let message = match request {
            PoolRequest::Rebalance => ToAgent::Rebalance,
            PoolRequest::Admit(reply) => ToAgent::Admit(reply),
        };
        self.try_send(message).is_ok()
    }
}

/// The low-value messages to the agent: dropped (and counted) when the queue
/// is full.
#[derive(Debug)]
pub(crate) enum ToAgentLossy {
    SessionUpdated(SessionRecord),
    Metrics(Value),
}

/// State the agent publishes for every handle; crosses threads.
#[derive(Debug, Default)]
pub(crate) struct AgentShared {
    pub(crate) available: AtomicBool,
    pub(crate) updates_dropped: AtomicU64,
    pub(crate) urgent_dropped: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) remote_timeouts: AtomicU64,
}

/// Counters of the cluster layer, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterStats {
    /// Whether the agent's Redis connection answers.
    pub available: bool,
    /// Session updates and metrics dropped because their queue was full.
    pub updates_dropped: u64,
    /// Opens, closes and queries refused because the urgent queue was full.
    pub urgent_dropped: u64,
    /// Successful (re)connections to Redis, the first one included.
    pub reconnects: u64,
    /// Remote deletes whose owner did not answer in time.
    pub remote_timeouts: u64,
}

/// The server's handle on the cluster agent. `Clone`, `Send` and `Sync`;
/// every method returns at once and never waits on Redis.
#[derive(Debug, Clone)]
pub struct ClusterHandle {
    node_id: Arc<str>,
    to_agent: Sender<ToAgent>,
    to_agent_lossy: Sender<ToAgentLossy>,
    shared: Arc<AgentShared>,
}

impl ClusterHandle {
    pub(crate) fn new(
        node_id: &str,
        to_agent: Sender<ToAgent>,
        to_agent_lossy: Sender<ToAgentLossy>,
        shared: Arc<AgentShared>,
    ) -> Self {
        ClusterHandle {
            node_id: Arc::from(node_id),
            to_agent,
            to_agent_lossy,
            shared,
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Whether Redis answers the agent right now.
    pub fn is_available(&self) -> bool {
        self.shared.available.load(Ordering::Acquire)
    }

    /// The counters.
    pub fn stats(&self) -> ClusterStats {
        ClusterStats {
            available: self.is_available(),
            updates_dropped: self.shared.updates_dropped.load(Ordering::Relaxed),
            urgent_dropped: self.shared.urgent_dropped.load(Ordering::Relaxed),
            reconnects: self.shared.reconnects.load(Ordering::Relaxed),
            remote_timeouts: self.shared.remote_timeouts.load(Ordering::Relaxed),
        }
    }

    /// A session started on this node; the agent fills in `record.node`
    /// and registers it within [`super::settings::FLUSH_INTERVAL`] (at once
    /// for queries made on this node after the call).
    pub fn session_opened(&self, record: SessionRecord) {
        self.send_urgent(ToAgent::SessionOpened(record));
    }

    /// New figures for a session of this node (send them at the metrics
    /// publish interval, not per event). Ignored for sessions not opened;
    /// dropped when the update queue is full.
    pub fn session_updated(&self, record: SessionRecord) {
        if self
            .to_agent_lossy
            .try_send(ToAgentLossy::SessionUpdated(record))
            .is_err()
        {
            self.shared.updates_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A session of this node ended.
    pub fn session_closed(&self, session_id: &str) {
        self.send_urgent(ToAgent::SessionClosed(session_id.to_string()));
    }

    /// Whether `GET /v1/cluster/nodes` shows this node healthy (set it
    /// `false` while draining).
    pub fn set_healthy(&self, healthy: bool) {
        self.send_urgent(ToAgent::SetHealthy(healthy));
    }

    /// This node's metrics (the `/v1/sessions/metrics` object), published
    /// with the next heartbeat; dropped when the update queue is full.
    pub fn publish_metrics(&self, metrics: Value) {
        if self
            .to_agent_lossy
            .try_send(ToAgentLossy::Metrics(metrics))
            .is_err()
        {
            self.shared.updates_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Every session of every live node, oldest first.
    pub fn list_sessions(&self) -> ClusterReply<Vec<SessionRecord>> {
        self.ask(ToAgent::ListSessions)
    }

    /// One session, wherever it lives; `Ok(None)` when no node has it.
    pub fn get_session(&self, session_id: &str) -> ClusterReply<Option<SessionRecord>> {
        let session_id = session_id.to_string();
        self.ask(move |answer| ToAgent::GetSession(session_id, answer))
    }

    /// Closes a session wherever it lives. The owner closes it and confirms;
    /// `Err(Timeout)` when it does not within the remote timeout.
    pub fn delete_session(&self, session_id: &str) -> ClusterReply<DeleteOutcome> {
        let session_id = session_id.to_string();
        self.ask(move |answer| ToAgent::DeleteSession(session_id, false, answer))
    }

    /// [`Self::delete_session`], with `flush`: the owner ends the session
    /// once its finals are delivered (`DELETE ?flush=true`).
    pub fn delete_session_with(
        &self,
        session_id: &str,
        flush: bool,
    ) -> ClusterReply<DeleteOutcome> {
        let session_id = session_id.to_string();
        self.ask(move |answer| ToAgent::DeleteSession(session_id, flush, answer))
    }

    /// Every live node.
    pub fn nodes(&self) -> ClusterReply<Vec<NodeRecord>> {
        self.ask(ToAgent::Nodes)
    }

    /// Every live node's published metrics and their merge.
    pub fn cluster_metrics(&self) -> ClusterReply<ClusterMetrics> {
        self.ask(ToAgent::Metrics)
    }

    fn ask<T>(&self, message: impl FnOnce(Answer<T>) -> ToAgent) -> ClusterReply<T> {
        let (answer, receiver) = oneshot::channel();
        match self.to_agent.try_send(message(answer)) {
            Ok(()) => {}
            // The message, and the answer sender in it, are dropped here: the
            // receiver resolves to `Unavailable` (see `ClusterReply`).
            Err(TrySendError::Full(_)) => {
                self.shared.urgent_dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
        ClusterReply { receiver }
    }

    fn send_urgent(&self, message: ToAgent) {
        if let Err(error) = self.to_agent.try_send(message) {
            if matches!(error, TrySendError::Full(_)) {
                self.shared.urgent_dropped.fetch_add(1, Ordering::Relaxed);
                tracing::error!("cluster agent queue full: a session open or close was lost");
            }
        }
    }
}

/// The answer to a cluster query: a future any runtime can await (it is a
/// oneshot underneath). It resolves to `Err(Unavailable)` if the agent is
/// gone or its queue was full.
#[derive(Debug)]
pub struct ClusterReply<T> {
    receiver: oneshot::Receiver<Result<T, ClusterError>>,
}

impl<T> Future for ClusterReply<T> {
    type Output = Result<T, ClusterError>;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.get_mut().receiver).poll(context) {
            Poll::Ready(Ok(answer)) => Poll::Ready(answer),
            Poll::Ready(Err(oneshot::Canceled)) => Poll::Ready(Err(ClusterError::Unavailable)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A command another node (or an operator on this node) sent to this node:
/// the server routes it to the core that owns the session and confirms.
#[derive(Debug)]
pub enum RemoteCommand {
    /// Close `session_id` as an operator `DELETE` would (`session_end` with
    /// `terminated`), then confirm with [`RemoteReply::confirm`]:
    /// `Deleted`, or `NotFound` if this node has no such session.
    Delete {
        session_id: String,
        /// After its finals (`DELETE ?flush=true`).
        flush: bool,
        reply: RemoteReply,
    },
}

/// The way back to the node that asked. Dropping it without confirming
/// leaves the caller to time out (504 `cluster_timeout`).
#[derive(Debug)]
pub struct RemoteReply {
    request_id: String,
    reply_to: String,
    session_id: String,
    to_agent: Sender<ToAgent>,
}

impl RemoteReply {
    pub(crate) fn new(
        request_id: String,
        reply_to: String,
        session_id: String,
        to_agent: Sender<ToAgent>,
    ) -> Self {
        RemoteReply {
            request_id,
            reply_to,
            session_id,
            to_agent,
        }
    }

    /// Sends the outcome back to the asking node. Never waits.
    pub fn confirm(self, outcome: DeleteOutcome) {
        let message = ToAgent::RemoteConfirm {
            request_id: self.request_id,
            reply_to: self.reply_to,
            session_id: self.session_id,
            outcome,
        };
        if self.to_agent.try_send(message).is_err() {
            tracing::warn!("cluster agent queue full or gone: a delete confirmation was lost");
        }
    }
}
