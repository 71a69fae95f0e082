//! Start-up and helpers for the cluster tests: a real `redis-server` on a
//! free port (killed on drop), a tiny `block_on`, polling with a deadline,
//! fast cluster settings, and a stand-in for the server's side of remote
//! deletes.

use std::collections::HashSet;
use std::future::Future;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

use transcription_service::cluster::{
    ClusterAgent, ClusterHandle, ClusterSettings, DeleteOutcome, RemoteCommand, SessionRecord,
};

/// Timings short enough for tests: a dead node vanishes within ~1.1 s.
pub const HEARTBEAT: Duration = Duration::from_millis(100);
pub const TTL: Duration = Duration::from_millis(1_000);
pub const REMOTE_TIMEOUT: Duration = Duration::from_millis(500);

/// How long a test waits for something that should happen "soon".
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A `redis-server` child process on its own port and directory.
pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port.
    ///
    /// # Panics
    /// If `redis-server` is not installed: these tests need it and must not
    /// pass silently without it.
    pub fn start() -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("cluster-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the redis temp dir");
        let mut server = RedisServer {
            port,
            dir,
            child: None,
        };
        server.spawn();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot start redis-server ({error}): the cluster tests need it on PATH \
                     (apt-get install -y redis-server)"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Ok(mut connection) = self.connection_once() {
                if redis::cmd("PING").query::<String>(&mut connection).is_ok() {
                    return;
                }
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server did not answer on port {} within {PATIENCE:?}",
            self.port
        );
    }

    fn connection_once(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(self.url())?.get_connection_with_timeout(Duration::from_secs(1))
    }

    /// A direct connection, to look at the keys.
    pub fn connection(&self) -> redis::Connection {
        self.connection_once()
            .expect("connect to the test redis-server")
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The port must be free before a restart.
        let deadline = Instant::now() + PATIENCE;
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts again on the same port, empty (no persistence).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Live leases in the leases set (expired ones removed first).
    pub fn live_leases(&self, prefix: &str) -> usize {
        let mut connection = self.connection();
        let now_ms: (u64, u64) = redis::cmd("TIME").query(&mut connection).expect("TIME");
        let now_ms = now_ms.0 * 1000 + now_ms.1 / 1000;
        redis::cmd("ZCOUNT")
            .arg(format!("{prefix}leases"))
            .arg(format!("({now_ms}"))
            .arg("+inf")
            .query(&mut connection)
            .expect("ZCOUNT")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// Settings for a test node with the short timings above.
pub fn settings(redis: &RedisServer, node_id: &str) -> ClusterSettings {
    let mut settings = ClusterSettings::new(&redis.url(), node_id, &format!("http://{node_id}"));
    settings.heartbeat_interval = HEARTBEAT;
    settings.ttl = TTL;
    settings.remote_timeout = REMOTE_TIMEOUT;
    settings.io_timeout = Duration::from_millis(500);
    settings
}

/// Starts an agent and waits until it is registered and listening.
pub fn start_agent(settings: ClusterSettings) -> ClusterAgent {
    let agent = ClusterAgent::start(settings).expect("start the cluster agent");
    let handle = agent.handle();
    assert!(
        wait_until(PATIENCE, || handle.is_available() && agent.is_listening()),
        "agent {} did not connect",
        handle.node_id()
    );
    agent
}

/// Polls `condition` every 10 ms until it holds or `patience` runs out.
pub fn wait_until(patience: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + patience;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future to completion on this thread.
///
/// # Panics
/// If it is not ready within [`PATIENCE`]: every cluster answer is bounded.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
    let mut context = Context::from_waker(&waker);
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "a cluster answer took longer than {PATIENCE:?}"
        );
        thread::park_timeout(left);
    }
}

/// A session record for tests.
pub fn record(session_id: &str, core: usize) -> SessionRecord {
    SessionRecord::new(
        session_id,
        "active",
        core,
        std::time::SystemTime::now(),
        "127.0.0.1:1",
    )
}

/// What the server does with remote commands, reduced to a set of ids: a
/// delete of a known id closes it (and tells the registry), anything else
/// is not found. With `answer = false` it takes commands and never answers.
pub struct FakeServer {
    pub sessions: Arc<Mutex<HashSet<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    pub fn start(agent: &mut ClusterAgent, answer: bool) -> Self {
        let commands = agent
            .take_remote_commands()
            .expect("remote commands taken once");
        let handle: ClusterHandle = agent.handle();
        let sessions = Arc::new(Mutex::new(HashSet::new()));
        let known = Arc::clone(&sessions);
        let thread = thread::spawn(move || {
            let mut unanswered = Vec::new();
            while let Ok(command) = commands.recv() {
                let RemoteCommand::Delete {
                    session_id, reply, ..
                } = command;
                if !answer {
                    unanswered.push(reply);
                    continue;
                }
                let removed = known.lock().expect("fake server lock").remove(&session_id);
                if removed {
                    handle.session_closed(&session_id);
                    reply.confirm(DeleteOutcome::Deleted);
                } else {
                    reply.confirm(DeleteOutcome::NotFound);
                }
            }
        });
        FakeServer {
            sessions,
            thread: Some(thread),
        }
    }

    /// Opens a session on the node: the fake server knows it and the
    /// registry gets it.
    pub fn open(&self, handle: &ClusterHandle, session_id: &str) {
        self.sessions
            .lock()
            .expect("fake server lock")
            .insert(session_id.to_string());
        handle.session_opened(record(session_id, 0));
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        // The thread ends when its agent is gone (the channel disconnects);
        // tests drop agents before servers, and never join a live one.
        if let Some(thread) = self.thread.take() {
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}
