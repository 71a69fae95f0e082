//! The engine node: `transcription-server engine --redis-url … [--model …]
//! [--model-workers N]`. It loads the model once, then runs one thread per
//! model worker, each a consumer of the group [`super::GROUP`] on the job
//! streams: it takes a final first, then a batch window, then an interim
//! (`XREADGROUP`), claims jobs left pending by a dead node
//! (`XAUTOCLAIM`, idle longer than `--engine-claim-idle-ms`), computes,
//! adds the reply to the submitting front end's reply stream and
//! acknowledges and deletes the job, in one pipeline. An interim whose
//! deadline has passed or whose session has moved on (a superseded marker)
//! is answered `dropped` without being computed.
//!
//! The main thread writes the node into the cluster registry every
//! heartbeat (role `engine`, model, workers, jobs in flight, jobs done, the
//! measured real-time factor) with the cluster TTL, so
//! `GET /v1/cluster/nodes` lists it, and into the live-engines set the
//! front ends count. On SIGTERM/SIGINT it stops taking jobs, finishes the
//! ones it holds, and leaves the registry.
//!
//! A subcommand of the one binary rather than a second binary: the engine
//! node is the same model code with the same flags (`--model`,
//! `--model-path`, `--mock-rtf`, …), validated the same way, and one
//! artifact deploys both tiers.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use redis::{Connection, RedisResult, Value};

use super::streams::{self, Entry};
use super::wire::{WireJob, WireOutcome, WireReply};
use super::{unix_ms, EngineKeys, GROUP};
use crate::cluster::{ClusterSettings, Keys};
use crate::config::Settings;
use crate::model::pool::JobKind;
use crate::model::{EngineError, ModelWorker, SpeechModel};

/// How long one blocking read waits for a job before the worker looks at
/// its stop flag and the pending entries again.
const BLOCK_MS: u64 = 200;

/// Replies kept per reply stream at most (`XADD … MAXLEN ~`): a front end
/// reads its replies within milliseconds; this only bounds a dead one's.
const REPLY_STREAM_MAXLEN: u64 = 10_000;

/// A reply stream nobody reads expires after this long.
const REPLY_STREAM_TTL_MS: u64 = 60_000;

/// Reconnect back-off bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// What the node reports in the registry.
#[derive(Debug, Default)]
pub struct NodeStats {
    pub in_flight: AtomicUsize,
    pub jobs_done: AtomicU64,
    pub jobs_claimed: AtomicU64,
    pub interims_dropped: AtomicU64,
    pub jobs_failed: AtomicU64,
    pub malformed: AtomicU64,
    /// Audio and model time of the jobs done, in microseconds (RTF).
    audio_us: AtomicU64,
    model_us: AtomicU64,
}

impl NodeStats {
    /// Model time per audio time over every job done (0 before any).
    pub fn rtf(&self) -> f64 {
        let audio = self.audio_us.load(Ordering::Relaxed);
        if audio == 0 {
            return 0.0;
        }
        self.model_us.load(Ordering::Relaxed) as f64 / audio as f64
    }
}

/// The node's identity and timings, shared by its threads.
struct NodeShared {
    cluster: ClusterSettings,
    keys: EngineKeys,
    claim_idle: Duration,
    model_name: &'static str,
    workers: usize,
    stats: NodeStats,
    stop: Arc<AtomicBool>,
}

/// Run an engine node until `stop` is set.
///
/// # Errors
/// When `--redis-url` is missing, the model cannot be loaded or a worker's
/// engine state cannot be made, or a thread cannot be spawned.
pub fn run(settings: &Settings, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let cluster = settings
        .cluster
        .clone()
        .context("the engine node needs --redis-url")?;
    let model = (crate::model::loader(&settings.model))()
        .map_err(|error| anyhow::anyhow!("loading the model: {error}"))?;
    let shared = Arc::new(NodeShared {
        keys: EngineKeys::new(&cluster.key_prefix),
        cluster,
        claim_idle: settings.engine_tier.claim_idle,
        model_name: model.name(),
        workers: settings.model.workers,
        stats: NodeStats::default(),
        stop,
    });
    let (joined, joins) = crossbeam_channel::unbounded::<()>();
    let mut threads = Vec::with_capacity(shared.workers);
    for index in 0..shared.workers {
        let engine = model
            .new_worker()
            .map_err(|error| anyhow::anyhow!("model worker {index}: {error}"))?;
        let mut worker = EngineWorker {
            consumer: format!("{}/{index}", shared.cluster.node_id),
            shared: Arc::clone(&shared),
            model: Arc::clone(&model),
            engine,
            connection: None,
            last_claim: Instant::now(),
        };
        let joined = joined.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("engine-worker-{index}"))
                .spawn(move || worker.run(&joined))?,
        );
    }
    drop(joined);
    let started_ms = unix_ms();
    let mut registry = Registry {
        shared: Arc::clone(&shared),
        connection: None,
        started_ms,
    };
    // Ready once every worker has joined the group (or the node stops).
    let mut ready = 0;
    while ready < shared.workers && !shared.stop.load(Ordering::Relaxed) {
        if joins.recv_timeout(Duration::from_millis(100)).is_ok() {
            ready += 1;
        }
    }
    registry.beat();
    println!("engine ready {}", shared.cluster.node_id);
    tracing::info!(node = %shared.cluster.node_id, workers = shared.workers,
        model = shared.model_name, "engine node ready");
    while !shared.stop.load(Ordering::Relaxed) {
        sleep_unless_stopped(&shared.stop, shared.cluster.heartbeat_interval);
        registry.beat();
    }
    for thread in threads {
        if thread.join().is_err() {
            tracing::error!("an engine worker thread panicked outside a job");
        }
    }
    registry.leave();
    Ok(())
}

fn sleep_unless_stopped(stop: &AtomicBool, total: Duration) {
    let deadline = Instant::now() + total;
    while !stop.load(Ordering::Relaxed) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

fn connect(cluster: &ClusterSettings, read_timeout: Duration) -> RedisResult<Connection> {
    let client = redis::Client::open(cluster.redis_url.as_str())?;
    let connection = client.get_connection_with_timeout(cluster.io_timeout)?;
    connection.set_read_timeout(Some(read_timeout))?;
    connection.set_write_timeout(Some(cluster.io_timeout))?;
    Ok(connection)
}

/// The node's entry in the registry.
struct Registry {
    shared: Arc<NodeShared>,
    connection: Option<Connection>,
    started_ms: u64,
}

impl Registry {
    fn beat(&mut self) {
        if self.connection.is_none() {
            self.connection = connect(&self.shared.cluster, self.shared.cluster.io_timeout).ok();
        }
        let Some(connection) = self.connection.as_mut() else {
            return;
        };
        if let Err(error) = write_node(connection, &self.shared, self.started_ms) {
            tracing::warn!(%error, "engine node: the registry write failed; reconnecting");
            self.connection = None;
        }
    }

    fn leave(&mut self) {
        let shared = &self.shared;
        let Ok(mut connection) = connect(&shared.cluster, shared.cluster.io_timeout) else {
            return;
        };
        let keys = Keys::new(&shared.cluster.key_prefix);
        let node_id = shared.cluster.node_id.as_str();
        let mut pipe = redis::pipe();
        pipe.cmd("DEL").arg(keys.node(node_id)).ignore();
        pipe.cmd("ZREM").arg(keys.nodes()).arg(node_id).ignore();
        pipe.cmd("ZREM")
            .arg(shared.keys.engines())
            .arg(node_id)
            .ignore();
        if let Err(error) = pipe.exec(&mut connection) {
            tracing::warn!(%error, "engine node: could not leave the registry");
        }
    }
}

fn write_node(
    connection: &mut Connection,
    shared: &NodeShared,
    started_ms: u64,
) -> RedisResult<()> {
    let keys = Keys::new(&shared.cluster.key_prefix);
    let node_id = shared.cluster.node_id.as_str();
    let node_key = keys.node(node_id);
    let stats = &shared.stats;
    let now_ms = unix_ms();
    let ttl_ms = shared.cluster.ttl.as_millis() as u64;
    let mut pipe = redis::pipe();
    pipe.atomic();
    pipe.cmd("HSET")
        .arg(&node_key)
        .arg("node_id")
        .arg(node_id)
        .arg("url")
        // An engine node serves no HTTP: nothing to advertise.
        .arg("")
        .arg("healthy")
        .arg(1)
        .arg("active_sessions")
        .arg(0)
        .arg("started_ms")
        .arg(started_ms)
        .arg("heartbeat_ms")
        .arg(now_ms)
        .arg("role")
        .arg("engine")
        .arg("model")
        .arg(shared.model_name)
        .arg("workers")
        .arg(shared.workers)
        .arg("in_flight")
        .arg(stats.in_flight.load(Ordering::Relaxed))
        .arg("jobs_done")
        .arg(stats.jobs_done.load(Ordering::Relaxed))
        .arg("jobs_claimed")
        .arg(stats.jobs_claimed.load(Ordering::Relaxed))
        .arg("interims_dropped")
        .arg(stats.interims_dropped.load(Ordering::Relaxed))
        .arg("rtf")
        .arg(format!("{:.4}", stats.rtf()))
        .ignore();
    pipe.cmd("PEXPIRE").arg(&node_key).arg(ttl_ms).ignore();
    pipe.cmd("ZADD")
        .arg(keys.nodes())
        .arg(now_ms)
        .arg(node_id)
        .ignore();
    pipe.cmd("ZADD")
        .arg(shared.keys.engines())
        .arg(now_ms)
        .arg(node_id)
        .ignore();
    pipe.cmd("ZREMRANGEBYSCORE")
        .arg(shared.keys.engines())
        .arg("-inf")
        .arg(format!(
            "({}",
            now_ms.saturating_sub(ttl_ms.saturating_mul(6))
        ))
        .ignore();
    pipe.exec(connection)
}

/// One consumer of the group: a model worker's engine state and its own
/// Redis connection.
struct EngineWorker {
    consumer: String,
    shared: Arc<NodeShared>,
    model: Arc<dyn SpeechModel>,
    engine: Box<dyn ModelWorker>,
    connection: Option<Connection>,
    last_claim: Instant,
}

impl EngineWorker {
    fn run(&mut self, joined: &crossbeam_channel::Sender<()>) {
        let mut backoff = BACKOFF_MIN;
        let mut announced = false;
        while !self.shared.stop.load(Ordering::Relaxed) {
            if self.connection.is_none() {
                match self.join_group() {
                    Ok(connection) => {
                        self.connection = Some(connection);
                        backoff = BACKOFF_MIN;
                        if !announced {
                            announced = true;
                            let _ = joined.send(());
                        }
                    }
                    Err(error) => {
                        tracing::warn!(consumer = %self.consumer, %error,
                            "engine worker: cannot reach Redis; retrying");
                        sleep_unless_stopped(&self.shared.stop, backoff);
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        continue;
                    }
                }
            }
            if let Err(error) = self.step() {
                tracing::warn!(consumer = %self.consumer, %error,
                    "engine worker: Redis call failed; reconnecting");
                self.connection = None;
            }
        }
    }

    /// A fresh connection with the group present on every job stream (a
    /// restarted Redis has lost it; `0` so jobs queued before any engine
    /// existed are delivered too).
    fn join_group(&self) -> RedisResult<Connection> {
        let read_timeout = Duration::from_millis(BLOCK_MS) + self.shared.cluster.io_timeout;
        let mut connection = connect(&self.shared.cluster, read_timeout)?;
        for stream in self.shared.keys.jobs_by_priority() {
            let created: RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(&stream)
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query(&mut connection);
            if let Err(error) = created {
                if error.code() != Some("BUSYGROUP") {
                    return Err(error);
                }
            }
        }
        Ok(connection)
    }

    /// Take and run at most a few jobs: claimed ones first, then by
    /// priority, then wait up to [`BLOCK_MS`] for any.
    fn step(&mut self) -> RedisResult<()> {
        let streams = self.shared.keys.jobs_by_priority();
        let claim_every = (self.shared.claim_idle / 4).max(Duration::from_millis(25));
        if self.last_claim.elapsed() >= claim_every {
            self.last_claim = Instant::now();
            for stream in &streams {
                let Some(connection) = self.connection.as_mut() else {
                    return Ok(());
                };
                let claimed: Value = redis::cmd("XAUTOCLAIM")
                    .arg(stream)
                    .arg(GROUP)
                    .arg(&self.consumer)
                    .arg(self.shared.claim_idle.as_millis() as u64)
                    .arg("0-0")
                    .arg("COUNT")
                    .arg(1)
                    .query(connection)?;
                if let Some(entry) = streams::autoclaim_reply(&claimed).into_iter().next() {
                    self.shared
                        .stats
                        .jobs_claimed
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::info!(consumer = %self.consumer, entry = %entry.id,
                        "engine worker: claimed a job left pending by another consumer");
                    return self.process(stream, entry);
                }
            }
        }
        // Finals, then batch windows, without waiting.
        for stream in &streams[..2] {
            let Some(connection) = self.connection.as_mut() else {
                return Ok(());
            };
            let read: Value = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg(&self.consumer)
                .arg("COUNT")
                .arg(1)
                .arg("STREAMS")
                .arg(stream)
                .arg(">")
                .query(connection)?;
            if let Some((_, entries)) = streams::read_reply(&read).into_iter().next() {
                if let Some(entry) = entries.into_iter().next() {
                    return self.process(stream, entry);
                }
            }
        }
        // Nothing urgent: wait for any kind.
        let Some(connection) = self.connection.as_mut() else {
            return Ok(());
        };
        let read: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(BLOCK_MS)
            .arg("STREAMS")
            .arg(&streams[..])
            .arg(">")
            .arg(">")
            .arg(">")
            .query(connection)?;
        let mut taken = streams::read_reply(&read);
        // The reply lists streams in any order: run them by priority.
        taken.sort_by_key(|(stream, _)| streams.iter().position(|s| s == stream));
        for (stream, entries) in taken {
            for entry in entries {
                self.process(&stream, entry)?;
            }
        }
        Ok(())
    }

    /// Run one job and reply, acknowledge and delete it in one pipeline.
    fn process(&mut self, stream: &str, entry: Entry) -> RedisResult<()> {
        let job = match WireJob::parse(&entry.fields) {
            Ok(job) => job,
            Err(error) => {
                self.shared.stats.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(entry = %entry.id, %error, "engine worker: malformed job dropped");
                let Some(connection) = self.connection.as_mut() else {
                    return Ok(());
                };
                let mut pipe = redis::pipe();
                pipe.cmd("XACK")
                    .arg(stream)
                    .arg(GROUP)
                    .arg(&entry.id)
                    .ignore();
                pipe.cmd("XDEL").arg(stream).arg(&entry.id).ignore();
                return pipe.exec(connection);
            }
        };
        let started = Instant::now();
        let outcome = if job.kind == JobKind::Interim && self.interim_is_stale(&job)? {
            self.shared
                .stats
                .interims_dropped
                .fetch_add(1, Ordering::Relaxed);
            WireOutcome::Dropped {
                reason: "its deadline passed or its session moved on".into(),
            }
        } else {
            self.shared.stats.in_flight.fetch_add(1, Ordering::Relaxed);
            let result = self.transcribe(&job);
            self.shared.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
            if result.is_err() {
                self.shared
                    .stats
                    .jobs_failed
                    .fetch_add(1, Ordering::Relaxed);
            }
            let audio_us =
                (job.samples.len() as u64 * 1_000_000) / u64::from(job.sample_rate.max(1));
            self.shared
                .stats
                .audio_us
                .fetch_add(audio_us, Ordering::Relaxed);
            self.shared
                .stats
                .model_us
                .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            WireOutcome::from_result(result)
        };
        let reply = WireReply {
            id: job.id.clone(),
            engine: self.shared.cluster.node_id.clone(),
            model_us: started.elapsed().as_micros() as u64,
            outcome,
        };
        let body = serde_json::to_vec(&reply).unwrap_or_default();
        let Some(connection) = self.connection.as_mut() else {
            return Ok(());
        };
        let mut pipe = redis::pipe();
        pipe.cmd("XADD")
            .arg(&job.reply_to)
            .arg("MAXLEN")
            .arg("~")
            .arg(REPLY_STREAM_MAXLEN)
            .arg("*")
            .arg("r")
            .arg(body)
            .ignore();
        pipe.cmd("PEXPIRE")
            .arg(&job.reply_to)
            .arg(REPLY_STREAM_TTL_MS)
            .ignore();
        pipe.cmd("XACK")
            .arg(stream)
            .arg(GROUP)
            .arg(&entry.id)
            .ignore();
        pipe.cmd("XDEL").arg(stream).arg(&entry.id).ignore();
        pipe.exec(connection)?;
        self.shared.stats.jobs_done.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Whether an interim is not worth computing: past its deadline, or
    /// marked superseded by its front end.
    fn interim_is_stale(&mut self, job: &WireJob) -> RedisResult<bool> {
        if unix_ms() > job.deadline_ms {
            return Ok(true);
        }
        let Some(connection) = self.connection.as_mut() else {
            return Ok(false);
        };
        let marked: bool = redis::cmd("EXISTS")
            .arg(self.shared.keys.superseded(&job.id))
            .query(connection)?;
        Ok(marked)
    }

    /// The engine on one job; a panic fails the job and replaces the state.
    fn transcribe(&mut self, job: &WireJob) -> Result<crate::model::Transcript, EngineError> {
        let engine = &mut self.engine;
        let ran = catch_unwind(AssertUnwindSafe(|| {
            engine.transcribe_job(&job.samples, job.sample_rate, &job.options, job.kind)
        }));
        ran.unwrap_or_else(|panic| {
            let message = crate::rt::panic_message(panic.as_ref());
            tracing::error!(consumer = %self.consumer, %message,
                "engine panicked on a job; replacing the worker's engine");
            match self.model.new_worker() {
                Ok(engine) => self.engine = engine,
                Err(error) => tracing::error!(%error, "could not replace the engine"),
            }
            Err(EngineError::Failed(format!("engine panicked: {message}")))
        })
    }
}
