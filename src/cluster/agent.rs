//! The cluster agent: one thread that owns the Redis connection, this
//! node's registry entries and its leases, and answers the handles.
//!
//! The loop waits for a message or its next deadline (heartbeat, flush,
//! reconnect, a remote delete's timeout), drains every ready message into
//! one batch, then does the batch's Redis work in as few round trips as it
//! can: one pipeline for the registry, one script for all waiting admission
//! requests, then the queries (after the flush, so a query sees this node's
//! own changes).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender};
use futures_channel::oneshot;
use serde_json::Value;

use super::admission::{
    AdmissionShared, Admit, ClusterAdmission, MODE_UNAVAILABLE, MODE_UNBOUNDED,
};
use super::handle::{
    AgentShared, Answer, ClusterHandle, RemoteCommand, RemoteReply, ToAgent, ToAgentLossy,
};
use super::keys::Keys;
use super::leases::{release, LeaseBook};
use super::link::RedisLink;
use super::listener::{Listener, ListenerShared};
use super::record::{
    merge_metrics, session_id_is_plausible, unix_ms, ClusterError, ClusterMetrics, DeleteOutcome,
    InboxMessage, NodeRecord, SessionRecord,
};
use super::registry::{self, NodeFields, RegistryWrite};
use super::settings::{
    ClusterSettings, SettingsError, FLUSH_INTERVAL, REMOTE_QUEUE_CAPACITY, UPDATE_QUEUE_CAPACITY,
    URGENT_QUEUE_CAPACITY,
};

/// The most messages taken into one batch: bounds how long handles wait
/// behind a burst.
const BATCH_MESSAGES_MAX: usize = 1_024;

/// The most remote deletes waiting for their owner at once; more are
/// answered `Unavailable`.
const PENDING_DELETES_MAX: usize = 4_096;

/// The longest the loop sleeps without looking at its deadlines.
const IDLE_WAKE_MAX: Duration = Duration::from_millis(500);

/// A node is shown healthy while its last heartbeat is at most this many
/// heartbeat intervals old.
const HEALTHY_HEARTBEATS_MAX: u32 = 3;

/// Sessions closed while Redis is away whose keys are deleted when it
/// returns. Past this, closed sessions are left to expire with the TTL
/// (nobody refreshes them), so the list cannot grow through a long outage.
const CLOSED_PENDING_MAX: usize = 65_536;

/// [`ClusterAgent`]'s stop request, read by the agent every turn (the
/// `Shutdown` message only wakes it, and may not fit a full queue).
const STOP_NONE: u8 = 0;
const STOP_CLEAN: u8 = 1;
const STOP_ABANDON: u8 = 2;

/// Why the agent could not start. Redis being down is not one: the agent
/// starts anyway and connects when it can.
#[derive(Debug)]
pub enum StartError {
    Settings(SettingsError),
    Spawn(std::io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Settings(error) => write!(formatter, "cluster settings: {error}"),
            StartError::Spawn(error) => write!(formatter, "cluster agent thread: {error}"),
        }
    }
}

impl std::error::Error for StartError {}

/// The running agent, owned by the server's start-up code: hand out
/// [`ClusterAgent::handle`] and [`ClusterAgent::admission`] clones to the
/// cores, take the remote commands once, and call
/// [`ClusterAgent::shutdown`] at the end (dropping it does the same).
#[derive(Debug)]
pub struct ClusterAgent {
    handle: ClusterHandle,
    admission: ClusterAdmission,
    remote_commands: Option<Receiver<RemoteCommand>>,
    to_agent: Sender<ToAgent>,
    agent_thread: Option<JoinHandle<()>>,
    listener_thread: Option<JoinHandle<()>>,
    listener_stop: Arc<AtomicBool>,
    listener_shared: Arc<ListenerShared>,
    /// One of the `STOP_*` constants.
    agent_stop: Arc<AtomicU8>,
}

impl ClusterAgent {
    /// Validates the settings and starts the agent and listener threads.
    /// Returns at once: the first connection to Redis is made by the agent.
    ///
    /// # Errors
    /// Invalid settings, or a thread that could not be spawned.
    pub fn start(settings: ClusterSettings) -> Result<ClusterAgent, StartError> {
        settings.validate().map_err(StartError::Settings)?;
        let client = redis::Client::open(settings.redis_url.as_str()).map_err(|error| {
            StartError::Settings(SettingsError(format!("redis_url: {:?}", error.kind())))
        })?;
        let (to_agent, from_handles) = crossbeam_channel::bounded(URGENT_QUEUE_CAPACITY);
        let (to_agent_lossy, from_handles_lossy) =
            crossbeam_channel::bounded(UPDATE_QUEUE_CAPACITY);
        let (remote_tx, remote_rx) = crossbeam_channel::bounded(REMOTE_QUEUE_CAPACITY);
        let bounded = settings.cluster_max_sessions.is_some();
        let admission_shared = Arc::new(AdmissionShared::new(
            if bounded {
                MODE_UNAVAILABLE
            } else {
                MODE_UNBOUNDED
            },
            settings.fail_mode,
            settings.lease_block_effective(),
            to_agent.clone(),
        ));
        let agent_shared = Arc::new(AgentShared::default());
        let keys = Keys::new(&settings.key_prefix);
        let incarnation = format!("{:012x}", uuid::Uuid::new_v4().as_u128() & 0xffff_ffff_ffff);
        let listener_stop = Arc::new(AtomicBool::new(false));
        let agent_stop = Arc::new(AtomicU8::new(STOP_NONE));
        let listener_shared = Arc::new(ListenerShared::default());
        let listener = Listener {
            client: client.clone(),
            channel: keys.inbox(&settings.node_id),
            to_agent: to_agent.clone(),
            stop: Arc::clone(&listener_stop),
            shared: Arc::clone(&listener_shared),
            agent_shared: Arc::clone(&agent_shared),
            io_timeout: settings.io_timeout,
        };
        let handle = ClusterHandle::new(
            &settings.node_id,
            to_agent.clone(),
            to_agent_lossy,
            Arc::clone(&agent_shared),
        );
        let agent = Agent {
            link: RedisLink::new(
                client,
                keys,
                settings.io_timeout,
                Arc::clone(&agent_shared),
                Arc::clone(&admission_shared),
                bounded,
            ),
            book: LeaseBook::new(&settings.node_id, &incarnation),
            incarnation,
            settings,
            shared: agent_shared,
            admission: Arc::clone(&admission_shared),
            sessions: HashMap::new(),
            dirty: HashSet::new(),
            closed: Vec::new(),
            changed_at: None,
            metrics: None,
            healthy: true,
            started_ms: unix_ms(SystemTime::now()),
            pending: HashMap::new(),
            next_request: 0,
            next_heartbeat: Instant::now(),
            rebalance_due: false,
            probe_due: false,
            stop: Arc::clone(&agent_stop),
            remote_tx,
            to_agent: to_agent.clone(),
            from_handles,
            from_handles_lossy,
        };
        let agent_thread = std::thread::Builder::new()
            .name("cluster-agent".to_string())
            .spawn(move || agent.run())
            .map_err(StartError::Spawn)?;
        let listener_thread = match std::thread::Builder::new()
            .name("cluster-listener".to_string())
            .spawn(move || listener.run())
        {
            Ok(thread) => thread,
            Err(error) => {
                agent_stop.store(STOP_ABANDON, Ordering::Release);
                let _ = to_agent.try_send(ToAgent::Shutdown { clean: false });
                let _ = agent_thread.join();
                return Err(StartError::Spawn(error));
            }
        };
        Ok(ClusterAgent {
            handle,
            admission: ClusterAdmission::new(admission_shared),
            remote_commands: Some(remote_rx),
            to_agent,
            agent_thread: Some(agent_thread),
            listener_thread: Some(listener_thread),
            listener_stop,
            listener_shared,
            agent_stop,
        })
    }

    /// A handle for a core (clone it freely).
    pub fn handle(&self) -> ClusterHandle {
        self.handle.clone()
    }

    /// Cluster admission for a core (clone it freely).
    pub fn admission(&self) -> ClusterAdmission {
        self.admission.clone()
    }

    /// The remote commands for this node's sessions; `Some` the first time
    /// only. Whoever takes it must answer every command (see
    /// [`RemoteReply::confirm`]); commands nobody takes time out at the
    /// asking node.
    pub fn take_remote_commands(&mut self) -> Option<Receiver<RemoteCommand>> {
        self.remote_commands.take()
    }

    /// Whether the listener is subscribed to this node's inbox (remote
    /// deletes can reach the node).
    pub fn is_listening(&self) -> bool {
        self.listener_shared.subscribed.load(Ordering::Acquire)
    }

    /// Removes this node, its sessions and its leases from Redis (when it
    /// answers) and stops both threads.
    pub fn shutdown(mut self) {
        self.stop(true);
    }

    /// Stops both threads without touching Redis, as a killed process
    /// would: the node's keys and leases stay until their TTL. For tests of
    /// dead nodes.
    #[doc(hidden)]
    pub fn abandon(mut self) {
        self.stop(false);
    }

    fn stop(&mut self, clean: bool) {
        self.listener_stop.store(true, Ordering::Release);
        if let Some(thread) = self.agent_thread.take() {
            let request = if clean { STOP_CLEAN } else { STOP_ABANDON };
            self.agent_stop.store(request, Ordering::Release);
            // Only a wake-up: a full queue is drained within one turn, and
            // the turn reads the flag.
            let _ = self.to_agent.try_send(ToAgent::Shutdown { clean });
            if thread.join().is_err() {
                tracing::error!("cluster agent thread panicked");
            }
        }
        if let Some(thread) = self.listener_thread.take() {
            if thread.join().is_err() {
                tracing::error!("cluster listener thread panicked");
            }
        }
    }
}

impl Drop for ClusterAgent {
    fn drop(&mut self) {
        self.stop(true);
    }
}

/// A remote delete waiting for its owner's answer.
struct PendingDelete {
    deadline: Instant,
    answer: Answer<DeleteOutcome>,
}

/// What one turn of the loop collected.
#[derive(Default)]
struct Batch {
    waiters: Vec<oneshot::Sender<Admit>>,
    queries: Vec<ToAgent>,
    shutdown: Option<bool>,
}

/// The agent thread's state: everything here is owned by that thread.
struct Agent {
    settings: ClusterSettings,
    link: RedisLink,
    shared: Arc<AgentShared>,
    admission: Arc<AdmissionShared>,
    book: LeaseBook,
    incarnation: String,
    /// This node's sessions: the truth the registry is rebuilt from.
    sessions: HashMap<String, SessionRecord>,
    /// Sessions changed since the last write.
    dirty: HashSet<String>,
    /// Sessions closed since the last write.
    closed: Vec<String>,
    /// When the oldest unwritten change happened.
    changed_at: Option<Instant>,
    metrics: Option<Value>,
    healthy: bool,
    started_ms: u64,
    pending: HashMap<String, PendingDelete>,
    next_request: u64,
    next_heartbeat: Instant,
    rebalance_due: bool,
    /// The listener lost its connection: check ours with a `PING`.
    probe_due: bool,
    /// Set by [`ClusterAgent`] to stop the loop (see `STOP_*`).
    stop: Arc<AtomicU8>,
    remote_tx: Sender<RemoteCommand>,
    to_agent: Sender<ToAgent>,
    from_handles: Receiver<ToAgent>,
    from_handles_lossy: Receiver<ToAgentLossy>,
}

impl Agent {
    fn run(mut self) {
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

    fn drain(&mut self, batch: &mut Batch) {
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

    fn next_wakeup(&self) -> Instant {
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
        wake
    }

    fn mark_changed(&mut self) {
        if self.changed_at.is_none() {
            self.changed_at = Some(Instant::now());
        }
    }

    fn on_message(&mut self, message: ToAgent, batch: &mut Batch) {
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

    fn on_lossy(&mut self, message: ToAgentLossy) {
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

    fn forget_session(&mut self, session_id: String) {
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
    fn on_turn(&mut self, batch: Batch) {
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
        if self.rebalance_due || !batch.waiters.is_empty() {
            self.rebalance(batch.waiters);
        }
        for query in batch.queries {
            self.answer(query);
        }
    }

    /// A new connection: write everything again, take the leases back,
    /// then let the node see Redis as available.
    fn on_connected(&mut self) {
        self.write_registry(true);
        self.renew_leases();
        if self.link.is_connected() {
            self.link.registered();
            self.next_heartbeat = Instant::now() + self.settings.heartbeat_interval;
            self.rebalance_due = true;
        }
    }

    fn heartbeat(&mut self) {
        self.next_heartbeat = Instant::now() + self.settings.heartbeat_interval;
        self.write_registry(true);
        self.renew_leases();
        self.rebalance_due = true;
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.settings.ttl.as_millis()).unwrap_or(u64::MAX)
    }

    /// Writes this node and its sessions: all of them when `full`, else the
    /// changes since the last write.
    fn write_registry(&mut self, full: bool) {
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

    /// Extends every held lease; forgets those Redis lost and could not
    /// give back.
    fn renew_leases(&mut self) {
        let Some(max) = self.settings.cluster_max_sessions else {
            return;
        };
        if self.book.len() == 0 {
            return;
        }
        let ttl_ms = self.ttl_ms();
        let names = self.book.names();
        let lost = self.link.run("lease renew", |connection, keys, scripts| {
            scripts.renew(connection, keys, ttl_ms, max, names)
        });
        if let Some(lost) = lost {
            if !lost.is_empty() {
                let forgotten = self.book.forget(&lost);
                self.admission
                    .drop_held(u32::try_from(forgotten).unwrap_or(u32::MAX));
                tracing::warn!(
                    lost = forgotten,
                    "cluster: leases lost in Redis could not be taken back"
                );
            }
        }
        self.assert_book_matches_pool();
    }

    /// Serves waiting admission requests and brings the pool back between
    /// its marks, with at most one script call.
    fn rebalance(&mut self, waiters: Vec<oneshot::Sender<Admit>>) {
        self.rebalance_due = false;
        self.admission.rebalance_started();
        let mut waiting = Vec::new();
        for waiter in waiters {
            match self.admission.answer_from_pool() {
                Some(answer) => answer_admit(waiter, answer),
                None => waiting.push(waiter),
            }
        }
        let Some(max) = self.settings.cluster_max_sessions else {
            return;
        };
        if !self.link.is_connected() {
            for waiter in waiting {
                answer_admit(waiter, self.admission.answer_failing());
            }
            return;
        }
        let block = self.settings.lease_block_effective();
        let wish = self.admission.rebalance_wish(block);
        let want = usize::try_from(wish.max(0)).unwrap_or(0) + waiting.len();
        if want > 0 {
            self.acquire(max, want, waiting);
        } else if wish < 0 {
            self.give_back(u32::try_from(-wish).unwrap_or(u32::MAX));
        }
        self.assert_book_matches_pool();
    }

    fn acquire(&mut self, max: usize, want: usize, waiting: Vec<oneshot::Sender<Admit>>) {
        let ttl_ms = self.ttl_ms();
        let candidates = self.book.candidates(want);
        let granted = self.link.run("lease acquire", |connection, keys, scripts| {
            scripts.acquire(connection, keys, ttl_ms, max, &candidates)
        });
        let Some(granted) = granted else {
            for waiter in waiting {
                answer_admit(waiter, self.admission.answer_failing());
            }
            return;
        };
        self.book.add_granted(candidates, granted);
        let handed = self.admission.add_held_and_claim(
            u32::try_from(granted).unwrap_or(u32::MAX),
            u32::try_from(waiting.len()).unwrap_or(u32::MAX),
        );
        for (index, waiter) in waiting.into_iter().enumerate() {
            let answer = if index < handed as usize {
                self.admission.granted_by_agent()
            } else {
                Admit::Refused
            };
            answer_admit(waiter, answer);
        }
    }

    fn give_back(&mut self, count: u32) {
        let taken = self.admission.take_free(count);
        let names = self.book.take(taken as usize);
        // On failure the names are already out of the book: nobody renews
        // them, so they expire within one TTL.
        let _ = self.link.run("lease release", |connection, keys, _| {
            release(connection, keys, &names)
        });
    }

    fn assert_book_matches_pool(&self) {
        let held = super::admission::slots::held(self.admission.snapshot());
        debug_assert_eq!(
            held as usize,
            self.book.len(),
            "lease book and pool disagree"
        );
    }

    fn expire_pending(&mut self, now: Instant) {
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

    fn answer(&mut self, query: ToAgent) {
        match query {
            ToAgent::ListSessions(answer) => {
                let _ = answer.send(self.list_sessions());
            }
            ToAgent::GetSession(session_id, answer) => {
                let _ = answer.send(self.get_session(&session_id));
            }
            ToAgent::DeleteSession(session_id, answer) => self.delete_session(session_id, answer),
            ToAgent::Nodes(answer) => {
                let _ = answer.send(self.nodes());
            }
            ToAgent::Metrics(answer) => {
                let _ = answer.send(self.cluster_metrics());
            }
            other => debug_assert!(false, "not a query: {other:?}"),
        }
    }

    fn list_sessions(&mut self) -> Result<Vec<SessionRecord>, ClusterError> {
        self.link
            .run("list sessions", |connection, keys, _| {
                let nodes = registry::live_nodes(connection, keys)?;
                let ids: Vec<&str> = nodes.iter().map(|(id, _)| id.as_str()).collect();
                registry::sessions_of(connection, keys, &ids)
            })
            .ok_or(ClusterError::Unavailable)
    }

    fn get_session(&mut self, session_id: &str) -> Result<Option<SessionRecord>, ClusterError> {
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

    fn nodes(&mut self) -> Result<Vec<NodeRecord>, ClusterError> {
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

    fn cluster_metrics(&mut self) -> Result<ClusterMetrics, ClusterError> {
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

    /// Routes a delete to the session's owner: this node directly, another
    /// node through its inbox channel.
    fn delete_session(&mut self, session_id: String, answer: Answer<DeleteOutcome>) {
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
            self.deliver_remote(request_id, session_id, reply_to);
            return;
        }
        let message = InboxMessage::Delete {
            request_id: request_id.clone(),
            session_id,
            reply_to: self.settings.node_id.clone(),
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
    fn deliver_remote(&mut self, request_id: String, session_id: String, reply_to: String) {
        let reply = RemoteReply::new(
            request_id,
            reply_to,
            session_id.clone(),
            self.to_agent.clone(),
        );
        if self
            .remote_tx
            .try_send(RemoteCommand::Delete { session_id, reply })
            .is_err()
        {
            // Not taken or full: the asking node times out (504).
            tracing::warn!(
                "cluster: remote command queue full or not taken; a delete will time out"
            );
        }
    }

    fn on_inbox(&mut self, inbox: InboxMessage) {
        match inbox {
            InboxMessage::Delete {
                request_id,
                session_id,
                reply_to,
            } => self.deliver_remote(request_id, session_id, reply_to),
            InboxMessage::DeleteReply {
                request_id,
                outcome,
            } => {
                if let Some(pending) = self.pending.remove(&request_id) {
                    let _ = pending.answer.send(Ok(outcome));
                }
            }
        }
    }

    fn on_remote_confirm(
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

    fn on_shutdown(&mut self, clean: bool, batch: Batch) {
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

/// Sends an admission answer; if the asker is gone, the guard in the answer
/// is dropped and its slot goes back to the pool.
fn answer_admit(waiter: oneshot::Sender<Admit>, answer: Admit) {
    let _ = waiter.send(answer);
}
