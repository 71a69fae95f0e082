//! The body of a core thread: it builds the runtime (io_uring, falling back
//! to epoll only when io_uring cannot start), reports which driver it got,
//! starts the core's background tasks (metrics and cluster publishing, the
//! inbox, the idle sweep, the retry of finals), and accepts connections until
//! the shutdown message arrives. Each connection speaks HTTP first; an
//! upgrade it hands back goes to the streaming connection: this is the one
//! place that wires connections to handlers. Then it drains: it ends every
//! session and keeps accepting (new work is refused with `shutting_down`,
//! readiness says `draining`) until the node's last session and this core's
//! requests in flight are done; then it stops accepting, fires the drain
//! latch so idle keep-alive connections close, and waits for the remaining
//! connections, all within the grace period.

use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

use crate::config::UringSettings;
use crate::core::cross_core::{metrics_value, terminate_on_any_core};
use crate::core::task::watched;
use crate::core::{CoreCommand, CoreContext, IoDriver, ServerShared};
use crate::limits::{CORE_CONNECTIONS_MAX, METRICS_PUBLISH_INTERVAL_MS};
use crate::metrics::CoreMetrics;
use crate::session::EndReason;
use crate::ws::stream::FinalsQueue;

/// How often each core sends its sessions' figures to the cluster registry
/// (cluster mode only). Lossy: the agent drops updates its queue has no room
/// for, and the next round carries newer figures anyway.
const CLUSTER_PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

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
    let core = Rc::new(CoreContext::new(
        core_id,
        shared,
        CoreMetrics::new(core_id, metrics),
    ));
    let finals = Rc::new(FinalsQueue::default());
    monoio::spawn(publish_metrics(Rc::clone(&core)));
    monoio::spawn(serve_inbox(Rc::clone(&core), inbox));
    monoio::spawn(sweep_idle_sessions(Rc::clone(&core)));
    monoio::spawn(crate::ws::jobs::retry_waiting_finals(
        Rc::clone(&core),
        Rc::clone(&finals),
    ));
    if core.shared.cluster.is_some() {
        monoio::spawn(publish_cluster(Rc::clone(&core)));
    }
    let _ = started.send(Ok(driver));
    tracing::info!(core = core_id, io_driver = driver.name(), "core accepting");

    // One accept loop for the core's whole life, through the drain: an
    // accept cancelled after the kernel completed it would lose that
    // connection (its descriptor is dropped unanswered), so it is cancelled
    // only once, when the listener closes anyway.
    let drained = async {
        let _ = (&mut shutdown).await;
        // The drain: readiness has said `draining` since the signal, and new
        // streams and batch requests are refused with `shutting_down` now.
        // Every session finishes its segment, gets its finals and
        // `session_end` `server_shutdown`, then closes 1001. Meanwhile the
        // core keeps accepting, so a load balancer's probe gets those
        // answers rather than a refused connection.
        for session in core.shard_sessions() {
            session.end(EndReason::ServerShutdown);
        }
        let deadline = Instant::now() + grace;
        work_settled(&core, deadline).await;
        deadline
    };
    let deadline = accept_until(&core, &finals, &listener, std::pin::pin!(drained)).await;

    // Nothing is left to finish (or the grace period is over): stop
    // accepting, close idle keep-alive connections, let the rest end.
    drop(listener);
    core.drain.trigger();
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

/// Accept connections until `stop` completes; its output.
async fn accept_until<F>(
    core: &Rc<CoreContext>,
    finals: &Rc<FinalsQueue>,
    listener: &monoio::net::TcpListener,
    mut stop: F,
) -> F::Output
where
    F: std::future::Future + Unpin,
{
    loop {
        monoio::select! {
            output = &mut stop => return output,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => on_accept(core, finals, stream, peer),
                Err(error) => {
                    // Out of descriptors or memory: back off instead of spinning.
                    tracing::warn!(core = core.core_id, %error, "accept failed");
                    monoio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
}

/// Completes once the node has no live session and this core no request in
/// flight, or at `deadline`. (Sessions are counted over the whole node, so
/// every core keeps accepting until the last one has ended.)
async fn work_settled(core: &CoreContext, deadline: Instant) {
    while Instant::now() < deadline
        && (core.shared.session_limits.active() > 0 || core.requests_in_flight.get() > 0)
    {
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn on_accept(
    core: &Rc<CoreContext>,
    finals: &Rc<FinalsQueue>,
    stream: TcpStream,
    peer: SocketAddr,
) {
    if core.connections.get() >= CORE_CONNECTIONS_MAX {
        // Dropping the stream closes it; the client sees a reset and retries.
        tracing::warn!(core = core.core_id, %peer, "connection limit reached: refusing");
        return;
    }
    let _ = stream.set_nodelay(true);
    core.metrics.count(|c| c.connections_accepted += 1);
    let guard = ConnectionGuard::new(Rc::clone(core));
    let finals = Rc::clone(finals);
    let task = async move {
        let guard = guard;
        let core = Rc::clone(&guard.core);
        let api = crate::api::Api::new(&core);
        let Some(upgrade) = crate::http::conn::serve(stream, peer, &api).await else {
            return;
        };
        let Some(new_codec) = crate::api::stream_codec(upgrade.route) else {
            debug_assert!(false, "only streaming routes upgrade");
            return;
        };
        // The connection now speaks WebSocket; bytes already read after the
        // request head go with it.
        let codec = new_codec(
            core.shared.model_name,
            core.shared.settings.session.vad_hangover_ms,
        );
        crate::ws::conn::serve(
            upgrade.stream,
            upgrade.leftover,
            upgrade.peer,
            core,
            finals,
            codec,
            upgrade.query,
        )
        .await;
    };
    monoio::spawn(watched(core, "connection", task));
}

/// Serve a resuming connection another core accepted and handed over
/// (`ws/resume.rs`): it counts as this core's connection from now on.
fn adopt_stream(
    core: &Rc<CoreContext>,
    stream: std::net::TcpStream,
    leftover: Vec<u8>,
    peer: SocketAddr,
    query: Option<String>,
) {
    let stream = match TcpStream::from_std(stream) {
        Ok(stream) => stream,
        Err(error) => {
            tracing::warn!(core = core.core_id, %peer, %error, "could not adopt a resuming connection");
            return;
        }
    };
    let guard = ConnectionGuard::new(Rc::clone(core));
    let task = async move {
        let guard = guard;
        let core = Rc::clone(&guard.core);
        crate::ws::resume::serve_adopted(stream, leftover, peer, core, query).await;
    };
    monoio::spawn(watched(core, "connection", task));
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
            CoreCommand::TerminateSession { id, flush, reply } => {
                let _ = reply.send(core.terminate_session(&id, flush));
            }
            CoreCommand::RemoteDelete { id, flush, reply } => {
                // Asking the other cores waits: not in the inbox's loop.
                let core = Rc::clone(&core);
                monoio::spawn(async move {
                    let found = terminate_on_any_core(&core, &id, flush).await;
                    reply.confirm(if found {
                        crate::cluster::DeleteOutcome::Deleted
                    } else {
                        crate::cluster::DeleteOutcome::NotFound
                    });
                });
            }
            CoreCommand::FindResumable { id, reply } => {
                let _ = reply.send(core.find_resumable(&id));
            }
            CoreCommand::AdoptStream {
                stream,
                leftover,
                peer,
                query,
            } => adopt_stream(&core, stream, leftover, peer, query),
        }
    }
}

/// Close sessions idle for longer than the idle timeout, every cleanup interval.
async fn sweep_idle_sessions(core: Rc<CoreContext>) {
    let settings = &core.shared.settings.session;
    let (interval, idle_timeout) = (settings.cleanup_interval, settings.idle_timeout);
    loop {
        let tick = monoio::time::sleep(interval);
        monoio::select! {
            _ = tick => {},
            _ = core.drain.wait() => return,
        }
        let now = Instant::now();
        let idle = core.shard_sessions().into_iter().filter(|session| {
            now.saturating_duration_since(session.last_activity()) >= idle_timeout
        });
        for session in idle {
            core.metrics.count(|c| c.idle_timeouts += 1);
            session.end(EndReason::IdleTimeout);
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
            cluster.handle.publish_metrics(metrics_value(&core));
        }
    }
}
