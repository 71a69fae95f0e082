//! The cluster agent: one thread that owns the Redis connection, this
//! node's registry entries and its leases, and answers the handles.
//!
//! The loop waits for a message or its next deadline (heartbeat, flush,
//! reconnect, a remote delete's timeout), drains every ready message into
//! one batch, then does the batch's Redis work in as few round trips as it
//! can: one pipeline for the registry, one script for all waiting admission
//! requests, then the queries (after the flush, so a query sees this node's
//! own changes).

mod leases;
mod queries;
mod remote;
mod run;
mod state;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender};

use crate::cluster::admission::{
    AdmissionShared, ClusterAdmission, MODE_UNAVAILABLE, MODE_UNBOUNDED,
};
use crate::cluster::handle::{AgentShared, ClusterHandle, RemoteCommand, ToAgent};
use crate::cluster::keys::Keys;
use crate::cluster::leases::LeaseBook;
use crate::cluster::link::RedisLink;
use crate::cluster::listener::{Listener, ListenerShared};
use crate::cluster::record::unix_ms;
use crate::cluster::settings::{
    ClusterSettings, SettingsError, REMOTE_QUEUE_CAPACITY, UPDATE_QUEUE_CAPACITY,
    URGENT_QUEUE_CAPACITY,
};
use state::*;

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
            returns: ReturnWait::default(),
            refill_paused_until: None,
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
