//! One core: a pinned thread running its own `monoio` runtime, with its own
//! `SO_REUSEPORT` listener, the connections it accepted, its drain signal and
//! its local metrics.
//!
//! [`run`] is the body of a core thread: it builds the runtime (io_uring,
//! falling back to epoll only when io_uring cannot start), reports which
//! driver it got, accepts connections until the shutdown message arrives, then
//! drains: it stops accepting, fires the [`DrainSignal`] so idle keep-alive
//! connections close, and waits for in-flight requests up to the grace period.

pub mod signal;
pub mod stall;
pub mod unwind;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

pub use signal::{DrainSignal, Notify};

use crate::config::UringSettings;
use crate::limits::{CORE_CONNECTIONS_MAX, METRICS_PUBLISH_INTERVAL_MS};
use crate::metrics::{CoreGauges, CoreMetrics};
use crate::server::ServerShared;
use crate::ws::conn::{SessionInfo, StreamCtx};
use crate::ws::session::{EndReason, SessionState};

/// How often each core sends its sessions' figures to the cluster registry
/// (cluster mode only). Lossy: the agent drops updates its queue has no room
/// for, and the next round carries newer figures anyway.
const CLUSTER_PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

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
    TerminateSession {
        id: String,
        reply: futures_channel::oneshot::Sender<Option<SessionInfo>>,
    },
    /// Cluster mode: another node asked to delete a session of this node.
    /// The receiving core looks on every core, as an operator `DELETE`
    /// does, and confirms `Deleted` or `NotFound` to the asking node.
    RemoteDelete {
        id: String,
        reply: crate::cluster::RemoteReply,
    },
}

/// The sending side of a core's inbox. Unbounded because only operator
/// requests travel on it, each bounded by an HTTP request in flight.
pub type CoreInbox = futures_channel::mpsc::UnboundedSender<CoreCommand>;

/// Everything a core's tasks share. Lives on the core thread (`Rc`).
pub struct CoreContext {
    pub core_id: usize,
    pub shared: Arc<ServerShared>,
    pub metrics: CoreMetrics,
    pub drain: DrainSignal,
    /// Open connections on this core.
    pub connections: Cell<usize>,
    /// The core's shard: its live streaming sessions by id.
    pub sessions: RefCell<HashMap<String, Rc<StreamCtx>>>,
    /// Sessions whose finals wait for room in the model queue, retried by
    /// one task per core.
    pub finals_waiting: RefCell<Vec<Rc<StreamCtx>>>,
    pub finals_waiting_wake: Notify,
}

impl CoreContext {
    /// The core's current levels, for the metrics.
    pub fn gauges(&self) -> CoreGauges {
        let mut sessions = [0; 3];
        for ctx in self.sessions.borrow().values() {
            if let Some(index) = ctx.state_index() {
                sessions[index] += 1;
            }
        }
        CoreGauges {
            connections: self.connections.get(),
            sessions,
        }
    }

    /// The operator view of every session of this core.
    pub fn session_infos(&self) -> Vec<SessionInfo> {
        let sessions: Vec<Rc<StreamCtx>> = self.sessions.borrow().values().cloned().collect();
        sessions.iter().map(|ctx| ctx.info()).collect()
    }

    /// Terminate a session of this core (operator DELETE).
    pub fn terminate_session(&self, id: &str) -> Option<SessionInfo> {
        let ctx = self.sessions.borrow().get(id).cloned()?;
        ctx.end(EndReason::Terminated);
        let mut info = ctx.info();
        info.state = SessionState::Closed.name();
        Some(info)
    }
}

/// What a core thread needs to start.
pub struct CoreStart {
    pub core_id: usize,
    pub cpu: Option<core_affinity::CoreId>,
    pub listener: std::net::TcpListener,
    pub shared: Arc<ServerShared>,
    pub metrics: crossbeam_channel::Sender<crate::metrics::Snapshot>,
    /// Fires (or is dropped) when the core must drain and stop.
    pub shutdown: futures_channel::oneshot::Receiver<()>,
    /// Requests from other cores.
    pub inbox: futures_channel::mpsc::UnboundedReceiver<CoreCommand>,
    /// The pool that decodes large uploads off the core threads.
    pub blocking: monoio::blocking::DefaultThreadPool,
    /// Where the core reports its driver once it accepts, or why it failed.
    pub started: std::sync::mpsc::Sender<Result<IoDriver, String>>,
}

/// The body of a core thread. Returns when the core has drained.
pub fn run(start: CoreStart) {
    if let Some(cpu) = start.cpu {
        if !core_affinity::set_for_current(cpu) {
            tracing::warn!(
                core = start.core_id,
                cpu = cpu.id,
                "could not pin the core thread"
            );
        }
    }
    let uring = start.shared.settings.uring;
    let runtime = build_runtime(&start, uring).or_else(|error| {
        // Setup flags an older kernel refuses: try the plain ring (and,
        // failing that, epoll) rather than not starting.
        tracing::warn!(core = start.core_id, %error, ?uring, "io_uring setup flags refused: building a plain runtime");
        build_runtime(
            &start,
            UringSettings {
                coop_taskrun: false,
                sqpoll_idle_ms: None,
                ..uring
            },
        )
    });
    let mut runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = start.started.send(Err(format!(
                "core {}: cannot build the I/O runtime: {error}",
                start.core_id
            )));
            return;
        }
    };
    let driver = match &runtime {
        monoio::FusionRuntime::Uring(_) => IoDriver::IoUring,
        monoio::FusionRuntime::Legacy(_) => IoDriver::Epoll,
    };
    runtime.block_on(core_main(start, driver));
}

/// A core's runtime type: io_uring or epoll, each with the timer.
type CoreRuntime = monoio::FusionRuntime<
    monoio::time::TimeDriver<monoio::IoUringDriver>,
    monoio::time::TimeDriver<monoio::LegacyDriver>,
>;

/// The core's runtime: io_uring with the configured setup, or epoll where
/// io_uring cannot start.
fn build_runtime(start: &CoreStart, uring: UringSettings) -> std::io::Result<CoreRuntime> {
    let mut ring = io_uring::IoUring::builder();
    if uring.coop_taskrun {
        ring.setup_coop_taskrun();
    }
    if let Some(idle_ms) = uring.sqpoll_idle_ms {
        ring.setup_sqpoll(idle_ms);
    }
    monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .with_entries(uring.entries)
        .uring_builder(ring)
        .attach_thread_pool(Box::new(start.blocking.clone()))
        .enable_timer()
        .build()
}

async fn core_main(start: CoreStart, driver: IoDriver) {
    let CoreStart {
        core_id,
        listener,
        shared,
        metrics,
        mut shutdown,
        inbox,
        started,
        ..
    } = start;
    let listener = match listener
        .set_nonblocking(true)
        .and_then(|()| monoio::net::TcpListener::from_std(listener))
    {
        Ok(listener) => listener,
        Err(error) => {
            let _ = started.send(Err(format!(
                "core {core_id}: cannot register the listener: {error}"
            )));
            return;
        }
    };
    let grace = shared.settings.shutdown_grace;
    let core = Rc::new(CoreContext {
        core_id,
        shared,
        metrics: CoreMetrics::new(core_id, metrics),
        drain: DrainSignal::default(),
        connections: Cell::new(0),
        sessions: RefCell::new(HashMap::new()),
        finals_waiting: RefCell::new(Vec::new()),
        finals_waiting_wake: Notify::default(),
    });
    monoio::spawn(publish_metrics(Rc::clone(&core)));
    monoio::spawn(serve_inbox(Rc::clone(&core), inbox));
    monoio::spawn(sweep_idle_sessions(Rc::clone(&core)));
    monoio::spawn(crate::ws::conn::retry_waiting_finals(Rc::clone(&core)));
    if core.shared.cluster.is_some() {
        monoio::spawn(publish_cluster(Rc::clone(&core)));
    }
    let _ = started.send(Ok(driver));
    tracing::info!(core = core_id, io_driver = driver.name(), "core accepting");

    loop {
        monoio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => on_accept(&core, stream, peer),
                Err(error) => {
                    // Out of descriptors or memory: back off instead of spinning.
                    tracing::warn!(core = core_id, %error, "accept failed");
                    monoio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }

    drop(listener);
    core.drain.trigger();
    // Every session finishes its segment, gets its finals and
    // `session_end` `server_shutdown`, then closes 1001.
    let sessions: Vec<Rc<StreamCtx>> = core.sessions.borrow().values().cloned().collect();
    for ctx in sessions {
        ctx.end(EndReason::ServerShutdown);
    }
    let deadline = Instant::now() + grace;
    while core.connections.get() > 0 && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    if core.connections.get() > 0 {
        tracing::warn!(
            core = core_id,
            connections = core.connections.get(),
            "grace period over: closing connections still open"
        );
    }
    core.metrics.publish(core.gauges());
    tracing::info!(core = core_id, "core stopped");
}

fn on_accept(core: &Rc<CoreContext>, stream: TcpStream, peer: SocketAddr) {
    if core.connections.get() >= CORE_CONNECTIONS_MAX {
        // Dropping the stream closes it; the client sees a reset and retries.
        tracing::warn!(core = core.core_id, %peer, "connection limit reached: refusing");
        return;
    }
    let _ = stream.set_nodelay(true);
    core.metrics.count(|c| c.connections_accepted += 1);
    let guard = ConnectionGuard::new(Rc::clone(core));
    let task = async move {
        let guard = guard;
        crate::http::conn::serve(stream, peer, Rc::clone(&guard.core)).await;
    };
    monoio::spawn(stall::watched(core, "connection", task));
}

/// Counts a connection as open for exactly as long as it lives.
struct ConnectionGuard {
    core: Rc<CoreContext>,
}

impl ConnectionGuard {
    fn new(core: Rc<CoreContext>) -> Self {
        core.connections.set(core.connections.get() + 1);
        ConnectionGuard { core }
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let open = self.core.connections.get();
        debug_assert!(open > 0);
        self.core.connections.set(open.saturating_sub(1));
    }
}

/// Answer other cores' requests until the server stops.
async fn serve_inbox(
    core: Rc<CoreContext>,
    mut inbox: futures_channel::mpsc::UnboundedReceiver<CoreCommand>,
) {
    use futures_core::Stream;
    while let Some(command) = std::future::poll_fn(|cx| Pin::new(&mut inbox).poll_next(cx)).await {
        match command {
            CoreCommand::ListSessions { reply } => {
                let _ = reply.send(core.session_infos());
            }
            CoreCommand::TerminateSession { id, reply } => {
                let _ = reply.send(core.terminate_session(&id));
            }
            CoreCommand::RemoteDelete { id, reply } => {
                // Asking the other cores waits: not in the inbox's loop.
                let core = Rc::clone(&core);
                monoio::spawn(async move {
                    let found = crate::api::sessions::terminate_on_any_core(&core, &id).await;
                    reply.confirm(if found {
                        crate::cluster::DeleteOutcome::Deleted
                    } else {
                        crate::cluster::DeleteOutcome::NotFound
                    });
                });
            }
        }
    }
}

/// Close sessions idle for longer than the idle timeout, every cleanup interval.
async fn sweep_idle_sessions(core: Rc<CoreContext>) {
    let settings = &core.shared.settings;
    let (interval, idle_timeout) = (
        settings.session_cleanup_interval,
        settings.session_idle_timeout,
    );
    loop {
        let tick = monoio::time::sleep(interval);
        monoio::select! {
            _ = tick => {},
            _ = core.drain.wait() => return,
        }
        let now = Instant::now();
        let idle: Vec<Rc<StreamCtx>> = core
            .sessions
            .borrow()
            .values()
            .filter(|ctx| now.saturating_duration_since(ctx.last_activity()) >= idle_timeout)
            .cloned()
            .collect();
        for ctx in idle {
            core.metrics.count(|c| c.idle_timeouts += 1);
            ctx.end(EndReason::IdleTimeout);
        }
    }
}

async fn publish_metrics(core: Rc<CoreContext>) {
    loop {
        let interval = monoio::time::sleep(Duration::from_millis(METRICS_PUBLISH_INTERVAL_MS));
        monoio::select! {
            _ = interval => core.metrics.publish(core.gauges()),
            // The core publishes a last time itself once it has drained.
            _ = core.drain.wait() => return,
        }
    }
}

/// Cluster mode: every [`CLUSTER_PUBLISH_INTERVAL`], the figures of this
/// core's sessions go to the registry, and core 0 also publishes the node's
/// `/v1/sessions/metrics` view (the registry's per-node metrics).
async fn publish_cluster(core: Rc<CoreContext>) {
    let Some(cluster) = &core.shared.cluster else {
        return;
    };
    loop {
        let tick = monoio::time::sleep(CLUSTER_PUBLISH_INTERVAL);
        monoio::select! {
            _ = tick => {},
            _ = core.drain.wait() => return,
        }
        for info in core.session_infos() {
            cluster.handle.session_updated(info.to_record());
        }
        if core.core_id == 0 {
            cluster
                .handle
                .publish_metrics(crate::api::sessions::metrics_value(&core));
        }
    }
}
