//! Start-up and topology: the listeners, the pinned core threads, the model
//! pool, the metrics aggregator, and the shutdown sequence.
//!
//! [`Server::start`] checks that the address is free (a probe bind without
//! `SO_REUSEPORT`, because every core's listener sets it and a second server
//! would otherwise silently share the port), binds one `SO_REUSEPORT` listener
//! per core, and returns once every core accepts. [`Server::shutdown`] marks
//! the server draining (readiness turns 503), waits out the drain delay,
//! refuses new work, lets every core finish its sessions and in-flight
//! requests within the grace period while still answering, then stops the
//! pool and the aggregator.
//!
//! In cluster mode (`redis_url` set) start-up also starts the
//! [`ClusterAgent`] before the cores, hands its handles to them through
//! [`ServerShared::cluster`], and starts the `cluster-remote` thread that
//! passes other nodes' deletes to a core ([`forward_remote_commands`]).
//! Shutdown marks the node unhealthy in the registry first and stops the
//! agent last, so the node's sessions leave the registry as they close.

mod core_thread;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use socket2::{Domain, Protocol, Socket, Type};

use crate::cluster::{ClusterAgent, DeleteOutcome, RemoteCommand};
use crate::config::ModelChoice;
use crate::config::Settings;
use crate::core::permit::SessionLimits;
pub use crate::core::{ClusterShared, ServerShared};
use crate::core::{CoreCommand, CoreInbox, IoDriver};
use crate::limits::LISTEN_BACKLOG;
use crate::metrics::Aggregator;
use crate::model::capacity::{CostModel, EngineLoad};
use crate::model::pool::{ModelPool, ModelState};
use core_thread::CoreStart;

/// How long start-up waits for a core to report that it accepts.
const CORE_START_TIMEOUT: Duration = Duration::from_secs(10);

struct CoreThread {
    shutdown: futures_channel::oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

/// A running server.
pub struct Server {
    local_addr: SocketAddr,
    shared: Arc<ServerShared>,
    cores: Vec<CoreThread>,
    pool: ModelPool,
    aggregator: Aggregator,
    /// The agent and the thread that forwards its remote commands (cluster
    /// mode only).
    cluster: Option<(ClusterAgent, JoinHandle<()>)>,
    /// The remote engine and its reply thread (`--engine remote` only).
    remote: Option<(Arc<crate::engine::remote::RemoteEngine>, JoinHandle<()>)>,
}

impl Server {
    /// Start every thread and return once every core accepts connections.
    ///
    /// # Errors
    /// When the address is in use or cannot be bound, or a thread or runtime
    /// cannot be started. Anything already started is stopped again.
    pub fn start(settings: Settings) -> anyhow::Result<Server> {
        let local_addr = probe_bind(settings.listen_addr)?;
        // With `--engine remote` the pool's workers hand their jobs to the
        // engine nodes (src/engine/remote.rs); admission by capacity is off,
        // since this node's workers only wait.
        let remote = if settings.engine_tier.is_remote() {
            Some(crate::engine::remote::RemoteEngine::start(
                &settings.engine_tier,
                settings.cluster.as_ref(),
            )?)
        } else {
            None
        };
        let (loader, load) = match &remote {
            Some((engine, _)) => (
                engine.loader(),
                EngineLoad::new(
                    settings.model.workers,
                    None,
                    crate::model::capacity::AdmissionSettings::OFF,
                ),
            ),
            None => (
                crate::model::loader(&settings.model),
                engine_load(&settings.model),
            ),
        };
        // A real model loads in the background while the server answers
        // (`/v1/ready` says `model_loading`); the mock is ready at once
        // unless a test makes it slow.
        let pool = ModelPool::start_admitting(
            loader,
            settings.model.workers,
            settings.model.queue_capacity,
            Arc::new(load),
        )?;
        let instant = remote.is_some()
            || (settings.model.model == ModelChoice::Mock && settings.model.mock_load.is_zero());
        if instant && pool.wait_loaded() != ModelState::Ready {
            let error = pool.to_pool().load_error().unwrap_or_default();
            pool.join();
            anyhow::bail!("the mock model failed to start: {error}");
        }
        let aggregator = Aggregator::start().context("starting the metrics aggregator")?;
        let (core_inboxes, inbox_receivers): (Vec<_>, Vec<_>) = (0..settings.cores)
            .map(|_| futures_channel::mpsc::unbounded::<CoreCommand>())
            .unzip();
        let mut agent = match &settings.cluster {
            Some(cluster) => {
                Some(ClusterAgent::start(cluster.clone()).context("starting the cluster agent")?)
            }
            None => None,
        };
        let cluster_shared = agent.as_ref().map(|agent| ClusterShared {
            handle: agent.handle(),
            admission: settings
                .cluster
                .as_ref()
                .and_then(|cluster| cluster.cluster_max_sessions)
                .map(|_| agent.admission()),
        });
        let forwarder = match agent.as_mut().and_then(ClusterAgent::take_remote_commands) {
            Some(commands) => {
                let inboxes = core_inboxes.clone();
                Some(
                    std::thread::Builder::new()
                        .name("cluster-remote".to_string())
                        .spawn(move || forward_remote_commands(commands, inboxes))
                        .context("spawning the cluster-remote thread")?,
                )
            }
            None => None,
        };
        let shared = Arc::new(ServerShared {
            to_pool: pool.to_pool(),
            model_name: settings.model.model.name(),
            started_at: Instant::now(),
            io_driver: OnceLock::new(),
            draining: AtomicBool::new(false),
            refusing_work: AtomicBool::new(false),
            session_limits: Arc::new(SessionLimits::new(
                settings.session.max_sessions,
                settings.session.max_sessions_per_peer,
            )),
            sessions_by_state: Default::default(),
            core_inboxes,
            metrics: aggregator.handle(),
            cluster: cluster_shared,
            engine_tier: remote.as_ref().map(|(engine, _)| Arc::clone(engine)),
            settings,
        });
        let mut server = Server {
            local_addr,
            shared,
            cores: Vec::new(),
            pool,
            aggregator,
            cluster: agent.zip(forwarder),
            remote,
        };
        match server.start_cores(inbox_receivers) {
            Ok(()) => Ok(server),
            Err(error) => {
                server.shutdown();
                Err(error)
            }
        }
    }

    fn start_cores(
        &mut self,
        inboxes: Vec<futures_channel::mpsc::UnboundedReceiver<CoreCommand>>,
    ) -> anyhow::Result<()> {
        // The calling thread's CPU mask: read before any thread is pinned.
        let cpus = core_affinity::get_core_ids().unwrap_or_default();
        let cores = self.shared.settings.cores;
        if !cpus.is_empty() && cores > cpus.len() {
            tracing::warn!(
                cores,
                cpus = cpus.len(),
                "more cores than CPUs: cores share CPUs"
            );
        }
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        // Decoding large uploads is CPU work like the model's: one thread per core.
        let blocking = monoio::blocking::DefaultThreadPool::new(cores);
        for (core_id, inbox) in inboxes.into_iter().enumerate() {
            let listener = bind_reuseport(self.local_addr)
                .with_context(|| format!("core {core_id}: binding {}", self.local_addr))?;
            let (shutdown_tx, shutdown_rx) = futures_channel::oneshot::channel();
            let start = CoreStart {
                core_id,
                cpu: (!cpus.is_empty()).then(|| cpus[core_id % cpus.len()]),
                listener,
                shared: Arc::clone(&self.shared),
                metrics: self.aggregator.sender(),
                shutdown: shutdown_rx,
                inbox,
                blocking: blocking.clone(),
                started: started_tx.clone(),
            };
            let thread = std::thread::Builder::new()
                .name(format!("core-{core_id}"))
                .spawn(move || core_thread::run(start))
                .with_context(|| format!("spawning core {core_id}"))?;
            self.cores.push(CoreThread {
                shutdown: shutdown_tx,
                thread,
            });
        }
        let mut drivers = Vec::with_capacity(cores);
        for _ in 0..cores {
            match started_rx.recv_timeout(CORE_START_TIMEOUT) {
                Ok(Ok(driver)) => drivers.push(driver),
                Ok(Err(message)) => bail!(message),
                Err(_) => bail!("a core did not start within {CORE_START_TIMEOUT:?}"),
            }
        }
        let io_driver = if drivers.iter().all(|d| *d == IoDriver::IoUring) {
            IoDriver::IoUring.name()
        } else if drivers.iter().all(|d| *d == IoDriver::Epoll) {
            IoDriver::Epoll.name()
        } else {
            "mixed"
        };
        let _ = self.shared.io_driver.set(io_driver);
        if io_driver != IoDriver::IoUring.name() {
            tracing::warn!(
                io_driver,
                "io_uring is unavailable: running on the fallback driver"
            );
        }
        Ok(())
    }

    /// The address the cores listen on (with the port resolved when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn shared(&self) -> &Arc<ServerShared> {
        &self.shared
    }

    /// Drain and stop. Readiness turns 503 `draining` at once; through the
    /// drain delay everything else is served as before, so load balancers
    /// take the node out of rotation before anything is refused. Then new
    /// streams and batch requests are refused with `shutting_down` while
    /// the cores keep accepting (health checks see answers, not refused
    /// connections) and every live session finishes, within the grace
    /// period. Then the cores stop accepting, the pool and the aggregator
    /// stop. Returns when every thread has ended.
    pub fn shutdown(self) {
        let Server {
            shared,
            cores,
            pool,
            aggregator,
            cluster,
            remote,
            ..
        } = self;
        shared.draining.store(true, Ordering::Release);
        if let Some(cluster) = &shared.cluster {
            // Other nodes and balancers reading the registry stop sending
            // work here while the sessions drain.
            cluster.handle.set_healthy(false);
        }
        let delay = shared.settings.drain_delay;
        if !delay.is_zero() {
            tracing::info!(
                delay_s = delay.as_secs_f64(),
                "drain delay: serving on while readiness says draining"
            );
            std::thread::sleep(delay);
        }
        shared.refusing_work.store(true, Ordering::Release);
        let mut threads = Vec::with_capacity(cores.len());
        for core in cores {
            // A core that already stopped has dropped its receiver; nothing to tell.
            let _ = core.shutdown.send(());
            threads.push(core.thread);
        }
        for thread in threads {
            if thread.join().is_err() {
                tracing::error!("a core thread panicked");
            }
        }
        // The cores' clones are gone; dropping ours closes the pool's queue.
        drop(shared);
        if let Some((engine, _)) = &remote {
            // Jobs still waiting give up at once: their sessions are gone.
            engine.stop();
        }
        pool.join();
        if let Some((_, replies)) = remote {
            if replies.join().is_err() {
                tracing::error!("the engine-replies thread panicked");
            }
        }
        aggregator.join();
        if let Some((agent, forwarder)) = cluster {
            // Removes the node, its sessions and its leases from Redis, and
            // ends the forwarder (its channel closes with the agent).
            agent.shutdown();
            if forwarder.join().is_err() {
                tracing::error!("the cluster-remote thread panicked");
            }
        }
    }
}

/// The body of the `cluster-remote` thread: hands each delete that another
/// node (or an operator on this one) sent for this node's sessions to a
/// core, which looks on every core and confirms (see
/// [`CoreCommand::RemoteDelete`]). The cores take turns, so no core carries
/// them all. Ends when the agent stops.
fn forward_remote_commands(
    commands: crossbeam_channel::Receiver<RemoteCommand>,
    inboxes: Vec<CoreInbox>,
) {
    assert!(!inboxes.is_empty(), "a server has at least one core");
    for (turn, command) in commands.iter().enumerate() {
        let RemoteCommand::Delete {
            session_id,
            flush,
            reply,
        } = command;
        let inbox = &inboxes[turn % inboxes.len()];
        let command = CoreCommand::RemoteDelete {
            id: session_id,
            flush,
            reply,
        };
        if let Err(error) = inbox.unbounded_send(command) {
            // The core has stopped, and with it its sessions.
            if let CoreCommand::RemoteDelete { reply, .. } = error.into_inner() {
                reply.confirm(DeleteOutcome::NotFound);
            }
        }
    }
}

/// Bind once without `SO_REUSEPORT` to learn whether the address is free (and
/// which port 0 resolves to). The probe is closed again before the cores bind.
fn probe_bind(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    let probe = TcpListener::bind(addr).map_err(|error| {
        if error.kind() == std::io::ErrorKind::AddrInUse {
            anyhow::anyhow!("cannot listen on {addr}: the address is already in use (is another server running on that port?)")
        } else {
            anyhow::anyhow!("cannot listen on {addr}: {error}")
        }
    })?;
    Ok(probe.local_addr()?)
}

/// A listener with `SO_REUSEPORT`, so every core can have its own.
fn bind_reuseport(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// The pool's capacity figures and admission settings; the mock's cost model
/// gives its capacity before any job is timed.
fn engine_load(model: &crate::config::ModelSettings) -> EngineLoad {
    let cost = match model.model {
        ModelChoice::Mock => Some(CostModel {
            latency_s: model.mock_latency.as_secs_f64(),
            rtf: model.mock_rtf,
        }),
        _ => None,
    };
    EngineLoad::new(model.workers, cost, model.admission)
}
