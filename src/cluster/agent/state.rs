//! The agent thread's state ([`Agent`]), what one turn of its loop
//! collects ([`Batch`]), and the loop's bounds. The other files of this
//! folder each add the methods of one concern.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU8;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use futures_channel::oneshot;
use serde_json::Value;

use crate::cluster::admission::{AdmissionShared, Admit};
use crate::cluster::handle::{AgentShared, Answer, RemoteCommand, ToAgent, ToAgentLossy};
use crate::cluster::leases::LeaseBook;
use crate::cluster::link::RedisLink;
use crate::cluster::record::{DeleteOutcome, SessionRecord};
use crate::cluster::settings::ClusterSettings;

/// The most messages taken into one batch: bounds how long handles wait
/// behind a burst.
pub(super) const BATCH_MESSAGES_MAX: usize = 1_024;

/// The most remote deletes waiting for their owner at once; more are
/// answered `Unavailable`.
pub(super) const PENDING_DELETES_MAX: usize = 4_096;

/// The longest the loop sleeps without looking at its deadlines.
pub(super) const IDLE_WAKE_MAX: Duration = Duration::from_millis(500);

/// A node is shown healthy while its last heartbeat is at most this many
/// heartbeat intervals old.
pub(super) const HEALTHY_HEARTBEATS_MAX: u32 = 3;

/// Sessions closed while Redis is away whose keys are deleted when it
/// returns. Past this, closed sessions are left to expire with the TTL
/// (nobody refreshes them), so the list cannot grow through a long outage.
pub(super) const CLOSED_PENDING_MAX: usize = 65_536;

/// [`ClusterAgent`]'s stop request, read by the agent every turn (the
/// `Shutdown` message only wakes it, and may not fit a full queue).
pub(super) const STOP_NONE: u8 = 0;
pub(super) const STOP_CLEAN: u8 = 1;
pub(super) const STOP_ABANDON: u8 = 2;

/// How long an admission refused at the cluster limit waits, retrying,
/// while the other nodes give back their free pooled leases.
pub(super) const RETURN_WAIT: Duration = Duration::from_millis(1_000);

/// How often such an admission tries again meanwhile.
pub(super) const RETURN_RETRY_INTERVAL: Duration = Duration::from_millis(20);

/// After another node asked for pooled leases back, this node takes new
/// leases only for admissions, not to refill its pool, for this long.
pub(super) const REFILL_PAUSE: Duration = Duration::from_secs(10);

/// A remote delete waiting for its owner's answer.
pub(super) struct PendingDelete {
    pub(super) deadline: Instant,
    pub(super) answer: Answer<DeleteOutcome>,
}

/// Admissions waiting for leases other nodes were asked to give back.
#[derive(Default)]
pub(super) struct ReturnWait {
    pub(super) waiters: Vec<oneshot::Sender<Admit>>,
    /// When they are refused after all; `None` while nobody waits.
    pub(super) deadline: Option<Instant>,
    /// When to try again.
    pub(super) next_retry: Option<Instant>,
}

/// What one turn of the loop collected.
#[derive(Default)]
pub(super) struct Batch {
    pub(super) waiters: Vec<oneshot::Sender<Admit>>,
    pub(super) queries: Vec<ToAgent>,
    pub(super) shutdown: Option<bool>,
}

/// The agent thread's state: everything here is owned by that thread.
pub(super) struct Agent {
    pub(super) settings: ClusterSettings,
    pub(super) link: RedisLink,
    pub(super) shared: Arc<AgentShared>,
    pub(super) admission: Arc<AdmissionShared>,
    pub(super) book: LeaseBook,
    pub(super) incarnation: String,
    /// This node's sessions: the truth the registry is rebuilt from.
    pub(super) sessions: HashMap<String, SessionRecord>,
    /// Sessions changed since the last write.
    pub(super) dirty: HashSet<String>,
    /// Sessions closed since the last write.
    pub(super) closed: Vec<String>,
    /// When the oldest unwritten change happened.
    pub(super) changed_at: Option<Instant>,
    pub(super) metrics: Option<Value>,
    pub(super) healthy: bool,
    pub(super) started_ms: u64,
    pub(super) pending: HashMap<String, PendingDelete>,
    pub(super) next_request: u64,
    pub(super) next_heartbeat: Instant,
    pub(super) rebalance_due: bool,
    /// Admissions refused at the cluster limit, waiting for other nodes'
    /// pooled leases until `returns.deadline`.
    pub(super) returns: ReturnWait,
    /// Until then the pool is not refilled (another node asked for leases).
    pub(super) refill_paused_until: Option<Instant>,
    /// The listener lost its connection: check ours with a `PING`.
    pub(super) probe_due: bool,
    /// Set by [`ClusterAgent`] to stop the loop (see `STOP_*`).
    pub(super) stop: Arc<AtomicU8>,
    pub(super) remote_tx: Sender<RemoteCommand>,
    pub(super) to_agent: Sender<ToAgent>,
    pub(super) from_handles: Receiver<ToAgent>,
    pub(super) from_handles_lossy: Receiver<ToAgentLossy>,
}
