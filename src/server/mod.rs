//! Start-up and topology: the listeners, the pinned core threads, the model
//! pool, the metrics aggregator, and the shutdown sequence.
//!
//! [`Server::start`] checks that the address is free (a probe bind without
//! `SO_REUSEPORT`, because every core's listener sets it and a second server
//! would otherwise silently share the port), binds one `SO_REUSEPORT` listener
//! per core, and returns once every core accepts. [`Server::shutdown`] marks
//! the server draining (readiness turns 503), tells every core to stop
//! accepting and finish its in-flight requests within the grace period, then
//! stops the pool and the aggregator.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Settings;
use crate::core::{CoreCommand, CoreInbox, CoreStart, IoDriver};
use crate::limits::LISTEN_BACKLOG;
use crate::metrics::{Aggregator, MetricsHandle};
use crate::model::mock::MockModel;
use crate::model::pool::{ModelPool, ToPool};
use crate::model::SpeechModel;

/// How long start-up waits for a core to report that it accepts.
const CORE_START_TIMEOUT: Duration = Duration::from_secs(10);

/// State every thread reads; shared through an `Arc`. Written only through
/// atomics (and a `OnceLock` at start-up).
pub struct ServerShared {
    pub settings: Settings,
    pub to_pool: ToPool,
    pub model_name: &'static str,
    pub started_at: Instant,
    /// `io_uring`, `epoll`, or `mixed` when cores got different drivers.
    pub io_driver: OnceLock<&'static str>,
    /// Set once on SIGTERM/SIGINT: readiness is 503 and cores drain.
    pub draining: AtomicBool,
    /// Live streaming sessions across all cores (the session limit's count).
    pub active_sessions: AtomicUsize,
    /// Live sessions per client address (used when `max_sessions_per_peer` is set).
    pub peer_sessions: crate::ws::permit::PeerCounts,
    /// Live sessions by state: created, active, closing.
    pub sessions_by_state: [AtomicUsize; 3],
    /// Each core's inbox, indexed by core id, for cross-core requests.
    pub core_inboxes: Vec<CoreInbox>,
    pub metrics: MetricsHandle,
}

impl ServerShared {
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

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
}

impl Server {
    /// Start every thread and return once every core accepts connections.
    ///
    /// # Errors
    /// When the address is in use or cannot be bound, or a thread or runtime
    /// cannot be started. Anything already started is stopped again.
    pub fn start(settings: Settings) -> anyhow::Result<Server> {
        let model: Arc<dyn SpeechModel> = Arc::new(MockModel {
            latency: settings.mock_latency,
            rtf: settings.mock_rtf,
        });
        let local_addr = probe_bind(settings.listen_addr)?;
        let pool = ModelPool::start(
            Arc::clone(&model),
            settings.model_workers,
            settings.model_queue_capacity,
        )?;
        let aggregator = Aggregator::start().context("starting the metrics aggregator")?;
        let (core_inboxes, inbox_receivers): (Vec<_>, Vec<_>) = (0..settings.cores)
            .map(|_| futures_channel::mpsc::unbounded::<CoreCommand>())
            .unzip();
        let shared = Arc::new(ServerShared {
            to_pool: pool.to_pool(),
            model_name: model.name(),
            started_at: Instant::now(),
            io_driver: OnceLock::new(),
            draining: AtomicBool::new(false),
            active_sessions: AtomicUsize::new(0),
            peer_sessions: Default::default(),
            sessions_by_state: Default::default(),
            core_inboxes,
            metrics: aggregator.handle(),
            settings,
        });
        let mut server = Server {
            local_addr,
            shared,
            cores: Vec::new(),
            pool,
            aggregator,
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
                .spawn(move || crate::core::run(start))
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

    /// Drain and stop: readiness turns 503, cores stop accepting and finish
    /// in-flight requests within the grace period, then the pool and the
    /// aggregator stop. Returns when every thread has ended.
    pub fn shutdown(self) {
        let Server {
            shared,
            cores,
            pool,
            aggregator,
            ..
        } = self;
        shared.draining.store(true, Ordering::Release);
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
        pool.join();
        aggregator.join();
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
