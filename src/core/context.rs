//! One core's state: [`CoreContext`] (its id, its shard of sessions, its
//! drain latch, its local metrics), the [`CoreCommand`]s other cores send to
//! its inbox, and the [`IoDriver`] it runs on.
//!
//! The shard holds sessions as [`ShardSession`]s: the core can list them,
//! count them and end them without knowing the protocol or the connection
//! that carries them. Nothing here imports a handler or a connection type.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use super::{ServerShared, SessionInfo};
use crate::metrics::{CoreGauges, CoreMetrics};
use crate::rt::Latch;
use crate::session::{EndReason, SessionState};

/// The I/O driver a core runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoDriver {
    IoUring,
    Epoll,
}

impl IoDriver {
    /// The name reported as `io_driver` in `/v1/health`.
    pub fn name(self) -> &'static str {
        match self {
            IoDriver::IoUring => "io_uring",
            IoDriver::Epoll => "epoll",
        }
    }
}

/// A request from another core (or the same one) to this core. Answered by
/// the core that owns the sessions concerned.
pub enum CoreCommand {
    /// Describe every session of the core.
    ListSessions {
        reply: futures_channel::oneshot::Sender<Vec<SessionInfo>>,
    },
    /// Terminate a session if this core owns it; answers its last view.
    /// `flush`: after its finals (`DELETE ?flush=true`).
    TerminateSession {
        id: String,
        flush: bool,
        reply: futures_channel::oneshot::Sender<Option<SessionInfo>>,
    },
    /// Cluster mode: another node asked to delete a session of this node.
    /// The receiving core looks on every core, as an operator `DELETE`
    /// does, and confirms `Deleted` or `NotFound` to the asking node.
    RemoteDelete {
        id: String,
        /// After its finals (`DELETE ?flush=true`).
        flush: bool,
        reply: crate::cluster::RemoteReply,
    },
    /// Whether this core has a resumable session by this id (`ws/resume.rs`).
    FindResumable {
        id: String,
        reply: futures_channel::oneshot::Sender<ResumeLookup>,
    },
    /// A connection that asks to resume a session of this core, handed over
    /// by the core that accepted it, just after the WebSocket upgrade:
    /// `leftover` holds the bytes read after the request head. The
    /// receiving core serves it as its own connection.
    AdoptStream {
        stream: std::net::TcpStream,
        leftover: Vec<u8>,
        peer: SocketAddr,
        query: Option<String>,
    },
}

/// What a core knows of a session id a client wants to resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeLookup {
    /// The session lives here (attached or detached).
    Here,
    /// It was detached here and its resume window ran out.
    Expired,
    /// Not this core's.
    Unknown,
}

/// Session ids whose resume window ran out that a core remembers, to tell a
/// late client `resume_expired` rather than `session_not_found`.
pub const EXPIRED_SESSIONS_REMEMBERED: usize = 1024;

/// The sending side of a core's inbox. Unbounded because only operator
/// requests travel on it, each bounded by an HTTP request in flight.
pub type CoreInbox = futures_channel::mpsc::UnboundedSender<CoreCommand>;

/// A live session as its core's shard holds it. The streaming connection
/// implements it; the core needs no more than this to list, count, sweep and
/// end its sessions.
pub trait ShardSession {
    /// The operator view.
    fn info(&self) -> SessionInfo;
    /// The index of the session's state in the per-state gauges (`None` once closed).
    fn gauge_index(&self) -> Option<usize>;
    /// When the client last sent something.
    fn last_activity(&self) -> Instant;
    /// End the session (operator, idle sweep, shutdown) and act on it.
    fn end(self: Rc<Self>, reason: EndReason);
    /// End it with `reason` once every final is delivered (an operator's
    /// flushing DELETE): no more audio is taken meanwhile.
    fn end_after_finals(self: Rc<Self>, reason: EndReason);
}

/// Everything a core's tasks share. Lives on the core thread (`Rc`).
pub struct CoreContext {
    pub core_id: usize,
    pub shared: Arc<ServerShared>,
    pub metrics: CoreMetrics,
    pub drain: Latch,
    /// Open connections on this core.
    pub connections: Cell<usize>,
    /// HTTP requests this core's handlers are answering now (the drain
    /// keeps the listener open until they are done).
    pub requests_in_flight: Cell<usize>,
    /// The core's shard: its live streaming sessions by id.
    pub sessions: RefCell<HashMap<String, Rc<dyn ShardSession>>>,
    /// The sessions of the shard that may be resumed (resumption on, a
    /// protocol that has it), by id, as the streaming layer's own type
    /// (`ws/resume.rs` downcasts them); attached or detached. Removed when
    /// the session ends.
    pub resumable: RefCell<HashMap<String, Rc<dyn Any>>>,
    /// The last [`EXPIRED_SESSIONS_REMEMBERED`] sessions whose resume window
    /// ran out, oldest first.
    pub expired_sessions: RefCell<VecDeque<String>>,
}

impl CoreContext {
    pub fn new(core_id: usize, shared: Arc<ServerShared>, metrics: CoreMetrics) -> Self {
        CoreContext {
            core_id,
            shared,
            metrics,
            drain: Latch::default(),
            connections: Cell::new(0),
            requests_in_flight: Cell::new(0),
            sessions: RefCell::new(HashMap::new()),
            resumable: RefCell::new(HashMap::new()),
            expired_sessions: RefCell::new(VecDeque::new()),
        }
    }

    /// What this core knows of a session a client wants to resume.
    pub fn find_resumable(&self, id: &str) -> ResumeLookup {
        if self.resumable.borrow().contains_key(id) {
            ResumeLookup::Here
        } else if self
            .expired_sessions
            .borrow()
            .iter()
            .any(|expired| expired == id)
        {
            ResumeLookup::Expired
        } else {
            ResumeLookup::Unknown
        }
    }

    /// Remember that a session's resume window ran out.
    pub fn remember_expired(&self, id: String) {
        let mut expired = self.expired_sessions.borrow_mut();
        if expired.len() == EXPIRED_SESSIONS_REMEMBERED {
            expired.pop_front();
        }
        expired.push_back(id);
    }

    /// The core's current levels, for the metrics.
    pub fn gauges(&self) -> CoreGauges {
        let mut sessions = [0; 3];
        for session in self.sessions.borrow().values() {
            if let Some(index) = session.gauge_index() {
                sessions[index] += 1;
            }
        }
        CoreGauges {
            connections: self.connections.get(),
            sessions,
        }
    }

    /// Every session of the shard (a copy: ending one changes the shard).
    pub fn shard_sessions(&self) -> Vec<Rc<dyn ShardSession>> {
        self.sessions.borrow().values().cloned().collect()
    }

    /// The operator view of every session of this core.
    pub fn session_infos(&self) -> Vec<SessionInfo> {
        self.shard_sessions()
            .iter()
            .map(|session| session.info())
            .collect()
    }

    /// Terminate a session of this core (operator DELETE): at once, or with
    /// `flush` once its finals are delivered (its state is then `closing`).
    pub fn terminate_session(&self, id: &str, flush: bool) -> Option<SessionInfo> {
        let session = self.sessions.borrow().get(id).cloned()?;
        if flush {
            Rc::clone(&session).end_after_finals(EndReason::Terminated);
        } else {
            Rc::clone(&session).end(EndReason::Terminated);
        }
        let mut info = session.info();
        if !flush {
            info.state = SessionState::Closed.name();
        }
        Some(info)
    }
}
