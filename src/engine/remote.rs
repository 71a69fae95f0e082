//! The front end's side of the engine tier (`--engine remote`): a
//! [`SpeechModel`] whose workers put each job on its stream and wait for
//! the reply, so the model pool, the sessions, the interim policy,
//! finals-in-order and the metrics are those of a local engine.
//!
//! - **Submitting.** A pool worker ([`RemoteWorker`]) registers a waiter
//!   under the job's id, `XADD`s the job to the stream of its kind (finals,
//!   batch windows and interims on separate streams, so interims never
//!   delay finals) and waits. The pool's `--model-workers` therefore bound
//!   the jobs this front end has outstanding in the tier.
//! - **Replies.** One thread (`engine-replies`) reads this front end's
//!   reply stream (`XREAD BLOCK`) and hands each reply to its waiter. A job
//!   computed twice (claimed from a node that was slow, not dead, or
//!   re-submitted) answers twice; the second finds no waiter and is counted
//!   and dropped, so a client sees each final once.
//! - **Faults.** Every `--engine-resubmit-ms` without a reply the worker
//!   checks that its job is still in the stream; a job Redis lost (a
//!   restart without persistence) is submitted again. A final or batch job
//!   without a reply after `--engine-final-wait-ms` is withdrawn and
//!   answered [`EngineError::Unavailable`] (`overloaded`, with a
//!   `Retry-After`). With no live engine node a batch job and an interim are
//!   refused at once; a final waits (the node may be restarting).
//! - **Superseded interims.** The pool tells a waiting worker when nobody
//!   waits for its job any more ([`ModelWorker::transcribe_cancellable`]):
//!   an interim whose final has gone out, or any job of a session that
//!   ended. The worker then deletes the job from its stream (an engine node
//!   never sees it) and, for an interim, sets a superseded marker the
//!   engine nodes check before they compute one they already took.
//! - **Backpressure.** The same thread samples, every 100 ms, the number of
//!   live engine nodes and the finals and batch windows waiting undelivered
//!   in the streams; while as many wait as there are engine nodes, interims
//!   are shed here, cluster-wide, as the local pool sheds them when its
//!   queue is deep.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use crossbeam_channel::{Receiver, Sender};
use redis::{Connection, RedisResult, Value};

use super::settings::EngineTierSettings;
use super::streams;
use super::wire::{WireJob, WireReply};
use super::{unix_ms, EngineKeys, GROUP};
use crate::cluster::ClusterSettings;
use crate::model::pool::{JobKind, ModelLoader};
use crate::model::{EngineError, ModelWorker, SpeechModel, TranscribeOptions, Transcript};

/// The `Retry-After` of an `overloaded` answer for want of an engine, in
/// seconds: about the time an engine node takes to start and register.
pub const RETRY_AFTER_S: u32 = 5;

/// How often the reply thread samples the live engines and the backlog.
const MONITOR_INTERVAL: Duration = Duration::from_millis(100);

/// How long one blocking read of the reply stream waits.
const REPLY_BLOCK_MS: u64 = 200;

/// Replies read per call at most.
const REPLY_BATCH: usize = 512;

/// Counters of the remote engine, exported on `/metrics`
/// (`transcribe_engine_remote_*`, docs/API.md).
#[derive(Debug, Default)]
pub struct RemoteStats {
    pub jobs_submitted: AtomicU64,
    pub replies: AtomicU64,
    pub duplicate_replies: AtomicU64,
    pub resubmits: AtomicU64,
    pub final_timeouts: AtomicU64,
    pub refused_no_engine: AtomicU64,
    pub interims_shed: AtomicU64,
    pub interims_dropped: AtomicU64,
    pub cancelled: AtomicU64,
    pub redis_errors: AtomicU64,
    pub engines_live: AtomicUsize,
    pub backlog: AtomicUsize,
    /// Reply round trips in microseconds, summed, for the mean.
    pub round_trip_us: AtomicU64,
}

/// The remote engine of one front end, shared by its pool workers and its
/// reply thread.
pub struct RemoteEngine {
    settings: EngineTierSettings,
    cluster: ClusterSettings,
    keys: EngineKeys,
    reply_stream: String,
    waiters: Mutex<HashMap<String, Sender<WireReply>>>,
    sequence: AtomicU64,
    /// The reply thread is connected and reading.
    reading: AtomicBool,
    stop: AtomicBool,
    pub stats: RemoteStats,
}

impl RemoteEngine {
    /// Start the reply thread; Redis may be down (it reconnects).
    ///
    /// # Errors
    /// Without cluster settings, or when the thread cannot be spawned.
    pub fn start(
        settings: &EngineTierSettings,
        cluster: Option<&ClusterSettings>,
    ) -> anyhow::Result<(Arc<RemoteEngine>, JoinHandle<()>)> {
        let cluster = cluster
            .cloned()
            .context("--engine remote needs --redis-url")?;
        let keys = EngineKeys::new(&cluster.key_prefix);
        let engine = Arc::new(RemoteEngine {
            settings: settings.clone(),
            reply_stream: keys.replies(&cluster.node_id),
            keys,
            cluster,
            waiters: Mutex::new(HashMap::new()),
            sequence: AtomicU64::new(0),
            reading: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            stats: RemoteStats::default(),
        });
        let reader = Arc::clone(&engine);
        let thread = std::thread::Builder::new()
            .name("engine-replies".to_string())
            .spawn(move || reader.read_replies())?;
        Ok((engine, thread))
    }

    /// The loader the model pool runs: the remote model, at once.
    pub fn loader(self: &Arc<Self>) -> ModelLoader {
        let engine = Arc::clone(self);
        Box::new(move || Ok(Arc::new(RemoteModel { engine }) as Arc<dyn SpeechModel>))
    }

    /// Stop the reply thread and make waiting workers give up.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Jobs waiting for their reply.
    pub fn outstanding(&self) -> usize {
        self.waiters.lock().map_or(0, |waiters| waiters.len())
    }

    fn connect(&self, read_timeout: Duration) -> RedisResult<Connection> {
        let client = redis::Client::open(self.cluster.redis_url.as_str())?;
        let connection = client.get_connection_with_timeout(self.cluster.io_timeout)?;
        connection.set_read_timeout(Some(read_timeout))?;
        connection.set_write_timeout(Some(self.cluster.io_timeout))?;
        Ok(connection)
    }

    /// Whether there is an engine to send a job to right now.
    fn engine_available(&self) -> bool {
        self.reading.load(Ordering::Relaxed) && self.stats.engines_live.load(Ordering::Relaxed) > 0
    }

    /// The reply thread: read replies, hand them to their waiters, sample
    /// the engines and the backlog; reconnect on any failure.
    fn read_replies(&self) {
        let mut backoff = Duration::from_millis(50);
        let mut last_id: Option<String> = None;
        while !self.stop.load(Ordering::Relaxed) {
            let read_timeout = Duration::from_millis(REPLY_BLOCK_MS) + self.cluster.io_timeout;
            let mut connection = match self.connect(read_timeout) {
                Ok(connection) => connection,
                Err(error) => {
                    self.reading.store(false, Ordering::Relaxed);
                    self.stats.redis_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%error, "remote engine: cannot reach Redis; retrying");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            };
            backoff = Duration::from_millis(50);
            if let Err(error) = self.read_connected(&mut connection, &mut last_id) {
                self.reading.store(false, Ordering::Relaxed);
                self.stats.redis_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, "remote engine: reading replies failed; reconnecting");
            }
        }
        self.reading.store(false, Ordering::Relaxed);
    }

    fn read_connected(
        &self,
        connection: &mut Connection,
        last_id: &mut Option<String>,
    ) -> RedisResult<()> {
        if last_id.is_none() {
            // Start after the newest reply already there (a previous life's).
            let newest: Value = redis::cmd("XREVRANGE")
                .arg(&self.reply_stream)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .query(connection)?;
            *last_id = Some(
                streams::entries(&newest)
                    .into_iter()
                    .next()
                    .map_or_else(|| "0-0".to_string(), |entry| entry.id),
            );
        }
        let mut sampled = Instant::now() - MONITOR_INTERVAL;
        while !self.stop.load(Ordering::Relaxed) {
            if sampled.elapsed() >= MONITOR_INTERVAL {
                sampled = Instant::now();
                self.sample(connection)?;
                self.reading.store(true, Ordering::Relaxed);
            }
            let from = last_id.clone().unwrap_or_else(|| "0-0".to_string());
            let read: Value = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(REPLY_BATCH)
                .arg("BLOCK")
                .arg(REPLY_BLOCK_MS)
                .arg("STREAMS")
                .arg(&self.reply_stream)
                .arg(&from)
                .query(connection)?;
            for (_, entries) in streams::read_reply(&read) {
                for entry in entries {
                    *last_id = Some(entry.id.clone());
                    self.on_reply(&entry);
                }
            }
        }
        Ok(())
    }

    /// Hand a reply to its waiter, or count it as a duplicate.
    fn on_reply(&self, entry: &streams::Entry) {
        let Some(reply) = entry
            .fields
            .get("r")
            .and_then(|body| serde_json::from_slice::<WireReply>(body).ok())
        else {
            tracing::warn!(entry = %entry.id, "remote engine: a reply that does not parse; skipped");
            return;
        };
        let waiter = self
            .waiters
            .lock()
            .ok()
            .and_then(|mut waiters| waiters.remove(&reply.id));
        match waiter {
            Some(waiter) => {
                self.stats.replies.fetch_add(1, Ordering::Relaxed);
                let _ = waiter.try_send(reply);
            }
            None => {
                self.stats.duplicate_replies.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The live engines and the undelivered finals and batch windows.
    fn sample(&self, connection: &mut Connection) -> RedisResult<()> {
        let now_ms = unix_ms();
        let alive_after = now_ms.saturating_sub(self.cluster.ttl.as_millis() as u64);
        let (engines, finals, batch): (usize, usize, usize) = redis::pipe()
            .cmd("ZCOUNT")
            .arg(self.keys.engines())
            .arg(format!("({alive_after}"))
            .arg("+inf")
            .cmd("XLEN")
            .arg(self.keys.jobs(JobKind::Final))
            .cmd("XLEN")
            .arg(self.keys.jobs(JobKind::Batch))
            .query(connection)?;
        let mut pending = 0;
        for (stream, length) in [
            (self.keys.jobs(JobKind::Final), finals),
            (self.keys.jobs(JobKind::Batch), batch),
        ] {
            if length == 0 {
                continue;
            }
            // `[count, first, last, consumers]`; no group yet is 0.
            let summary: RedisResult<Value> = redis::cmd("XPENDING")
                .arg(&stream)
                .arg(GROUP)
                .query(connection);
            match summary {
                Ok(Value::Array(parts)) => {
                    if let Some(Value::Int(count)) = parts.first() {
                        pending += usize::try_from(*count).unwrap_or(0);
                    }
                }
                Ok(_) => {}
                Err(error) if error.is_io_error() || error.is_connection_dropped() => {
                    return Err(error)
                }
                Err(_) => {}
            }
        }
        self.stats.engines_live.store(engines, Ordering::Relaxed);
        self.stats
            .backlog
            .store((finals + batch).saturating_sub(pending), Ordering::Relaxed);
        // Keep the reply stream alive while this front end reads it.
        redis::cmd("PEXPIRE")
            .arg(&self.reply_stream)
            .arg(60_000)
            .exec(connection)?;
        Ok(())
    }

    /// Append the `/metrics` lines of the remote engine.
    pub fn render_prometheus(&self, text: &mut String) {
        let stats = &self.stats;
        let counters: [(&str, &str, &AtomicU64); 11] = [
            ("transcribe_engine_remote_jobs_submitted_total", "Jobs put on the engine streams (re-submissions included).", &stats.jobs_submitted),
            ("transcribe_engine_remote_replies_total", "Replies handed to a waiting job.", &stats.replies),
            ("transcribe_engine_remote_duplicate_replies_total", "Replies for a job already answered or given up (computed twice: claimed or re-submitted); dropped.", &stats.duplicate_replies),
            ("transcribe_engine_remote_resubmits_total", "Jobs submitted again because Redis no longer held them and no reply had come.", &stats.resubmits),
            ("transcribe_engine_remote_final_timeouts_total", "Finals and batch jobs answered overloaded after --engine-final-wait-ms without a reply.", &stats.final_timeouts),
            ("transcribe_engine_remote_refused_no_engine_total", "Batch jobs and interims refused at once because no engine node was live.", &stats.refused_no_engine),
            ("transcribe_engine_remote_interims_shed_total", "Interims not submitted because finals waited in the streams.", &stats.interims_shed),
            ("transcribe_engine_remote_interims_dropped_total", "Interims an engine node dropped unrun (deadline passed or superseded).", &stats.interims_dropped),
            ("transcribe_engine_remote_cancelled_total", "Jobs withdrawn from their stream because the session moved on (a superseded interim, also marked for the engine nodes) or left.", &stats.cancelled),
            ("transcribe_engine_remote_redis_errors_total", "Failed Redis calls of the remote engine (each followed by a reconnect).", &stats.redis_errors),
            ("transcribe_engine_remote_round_trip_microseconds_total", "Sum of job round trips (submit to reply), for the mean with replies_total.", &stats.round_trip_us),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                text,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let gauges = [
            (
                "transcribe_engine_remote_engines_live",
                "Engine nodes with a heartbeat within the cluster TTL.",
                stats.engines_live.load(Ordering::Relaxed),
            ),
            (
                "transcribe_engine_remote_backlog",
                "Finals and batch jobs waiting undelivered in the streams.",
                stats.backlog.load(Ordering::Relaxed),
            ),
            (
                "transcribe_engine_remote_outstanding",
                "Jobs of this front end waiting for their reply.",
                self.outstanding(),
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                text,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
    }
}

/// The remote model: what the pool loads in remote mode.
struct RemoteModel {
    engine: Arc<RemoteEngine>,
}

impl SpeechModel for RemoteModel {
    fn name(&self) -> &'static str {
        "remote"
    }

    fn is_multilingual(&self) -> bool {
        // The engine nodes decide; a translate request they cannot serve
        // comes back as their error.
        true
    }

    fn new_worker(&self) -> Result<Box<dyn ModelWorker>, EngineError> {
        Ok(Box::new(RemoteWorker {
            engine: Arc::clone(&self.engine),
            connection: None,
        }))
    }
}

/// One pool worker's side: its own connection for submitting.
struct RemoteWorker {
    engine: Arc<RemoteEngine>,
    connection: Option<Connection>,
}

/// How long a waiting job goes between looks at whether its submitter
/// still waits: an interim is superseded within this of its final.
const CANCEL_POLL_INTERIM: Duration = Duration::from_millis(20);
const CANCEL_POLL_FINAL: Duration = Duration::from_millis(100);

/// How a wait for a reply ended.
enum Waited {
    Reply(WireReply),
    TimedOut,
    /// The submitter stopped waiting (interim superseded, session gone).
    Cancelled,
}

/// A job on its way: its wire form, the entry it is under, its waiter.
struct Submitted {
    job: WireJob,
    stream: String,
    /// The entry id of the latest submission; `None` until one succeeded.
    entry: Option<String>,
    replies: Receiver<WireReply>,
}

impl RemoteWorker {
    fn connection(&mut self) -> RedisResult<&mut Connection> {
        if self.connection.is_none() {
            let io_timeout = self.engine.cluster.io_timeout;
            self.connection = Some(self.engine.connect(io_timeout)?);
        }
        match self.connection.as_mut() {
            Some(connection) => Ok(connection),
            None => Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "no connection",
            ))),
        }
    }

    /// Run `call` on the connection; a failure drops it (reconnect next
    /// time) and is counted.
    fn with_connection<T>(
        &mut self,
        call: impl FnOnce(&mut Connection) -> RedisResult<T>,
    ) -> Option<T> {
        let result = self.connection().and_then(call);
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.engine
                    .stats
                    .redis_errors
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%error, "remote engine: a Redis call failed");
                self.connection = None;
                None
            }
        }
    }

    fn submit(&mut self, submitted: &mut Submitted) -> bool {
        let maxlen = self.engine.settings.stream_maxlen;
        let stream = submitted.stream.clone();
        let fields = submitted.job.fields();
        let entry = self.with_connection(|connection| {
            let mut command = redis::cmd("XADD");
            command
                .arg(&stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(maxlen)
                .arg("*");
            for (name, value) in &fields {
                command.arg(*name).arg(value.as_slice());
            }
            command.query::<String>(connection)
        });
        if entry.is_some() {
            self.engine
                .stats
                .jobs_submitted
                .fetch_add(1, Ordering::Relaxed);
            submitted.entry = entry;
            true
        } else {
            false
        }
    }

    /// Whether the job's entry is gone from its stream (taken and answered,
    /// or lost with a Redis restart). `false` when Redis cannot say.
    fn entry_is_gone(&mut self, submitted: &Submitted) -> bool {
        let Some(entry) = submitted.entry.clone() else {
            return true;
        };
        let stream = submitted.stream.clone();
        self.with_connection(|connection| {
            let found: Value = redis::cmd("XRANGE")
                .arg(&stream)
                .arg(&entry)
                .arg(&entry)
                .query(connection)?;
            Ok(streams::entries(&found).is_empty())
        })
        .unwrap_or(false)
    }

    /// Tell the engine nodes an interim is not worth computing, in case one
    /// has already taken it from the stream (the mark outlives any wait).
    fn mark_superseded(&mut self, submitted: &Submitted) {
        let key = self.engine.keys.superseded(&submitted.job.id);
        let settings = &self.engine.settings;
        let ttl_ms = (settings.interim_deadline + settings.claim_idle).as_millis() as u64;
        let _ = self.with_connection(|connection| {
            redis::cmd("SET")
                .arg(&key)
                .arg(1)
                .arg("PX")
                .arg(ttl_ms.max(1))
                .exec(connection)
        });
    }

    /// Take the job out of the stream (it will not be waited for).
    fn withdraw(&mut self, submitted: &Submitted) {
        if let Some(entry) = submitted.entry.clone() {
            let stream = submitted.stream.clone();
            let _ = self.with_connection(|connection| {
                redis::cmd("XDEL").arg(&stream).arg(&entry).exec(connection)
            });
        }
        if let Ok(mut waiters) = self.engine.waiters.lock() {
            waiters.remove(&submitted.job.id);
        }
    }

    /// Wait for the reply, re-submitting a lost job, until `wait` is over
    /// or the submitter stops waiting.
    fn await_reply(
        &mut self,
        submitted: &mut Submitted,
        wait: Duration,
        cancelled: &dyn Fn() -> bool,
    ) -> Waited {
        let started = Instant::now();
        let deadline = started + wait;
        let check_every = self.engine.settings.resubmit_after;
        let poll = if submitted.job.kind == JobKind::Interim {
            CANCEL_POLL_INTERIM
        } else {
            CANCEL_POLL_FINAL
        };
        let mut next_check = started + check_every;
        loop {
            let now = Instant::now();
            if now >= deadline || self.engine.stop.load(Ordering::Relaxed) {
                return Waited::TimedOut;
            }
            if cancelled() {
                return Waited::Cancelled;
            }
            let until = next_check.min(deadline).min(now + poll);
            match submitted
                .replies
                .recv_timeout(until.saturating_duration_since(now))
            {
                Ok(reply) => {
                    self.engine
                        .stats
                        .round_trip_us
                        .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                    return Waited::Reply(reply);
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return Waited::TimedOut,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            }
            if Instant::now() >= next_check {
                next_check = Instant::now() + check_every;
                if self.entry_is_gone(submitted) && self.submit(submitted) {
                    self.engine.stats.resubmits.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(job = %submitted.job.id,
                        "remote engine: no reply and the job is gone from its stream; submitted again");
                }
            }
        }
    }
}

impl ModelWorker for RemoteWorker {
    fn transcribe(
        &mut self,
        samples: &[i16],
        sample_rate: u32,
        options: &TranscribeOptions,
    ) -> Result<Transcript, EngineError> {
        self.transcribe_job(samples, sample_rate, options, JobKind::Batch)
    }

    fn transcribe_job(
        &mut self,
        samples: &[i16],
        sample_rate: u32,
        options: &TranscribeOptions,
        kind: JobKind,
    ) -> Result<Transcript, EngineError> {
        self.transcribe_cancellable(samples, sample_rate, options, kind, &|| false)
    }

    fn transcribe_cancellable(
        &mut self,
        samples: &[i16],
        sample_rate: u32,
        options: &TranscribeOptions,
        kind: JobKind,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Transcript, EngineError> {
        let engine = Arc::clone(&self.engine);
        let stats = &engine.stats;
        if kind != JobKind::Final && !engine.engine_available() {
            stats.refused_no_engine.fetch_add(1, Ordering::Relaxed);
            return Err(EngineError::Unavailable(
                "no engine node is live; retry later".into(),
            ));
        }
        if kind == JobKind::Interim
            && stats.backlog.load(Ordering::Relaxed)
                >= stats.engines_live.load(Ordering::Relaxed).max(1)
        {
            stats.interims_shed.fetch_add(1, Ordering::Relaxed);
            return Err(EngineError::Failed(
                "interim shed: finals wait in the engine streams".into(),
            ));
        }
        let settings = &engine.settings;
        let wait = match kind {
            JobKind::Interim => settings.interim_deadline + settings.resubmit_after,
            JobKind::Final | JobKind::Batch => settings.final_wait,
        };
        let id = format!(
            "{}/{}",
            engine.cluster.node_id,
            engine.sequence.fetch_add(1, Ordering::Relaxed)
        );
        let (sender, replies) = crossbeam_channel::bounded(1);
        if let Ok(mut waiters) = engine.waiters.lock() {
            waiters.insert(id.clone(), sender);
        }
        let mut submitted = Submitted {
            job: WireJob {
                id,
                reply_to: engine.reply_stream.clone(),
                kind,
                sample_rate,
                deadline_ms: unix_ms() + settings.interim_deadline.as_millis() as u64,
                samples: samples.to_vec(),
                options: options.clone(),
            },
            stream: engine.keys.jobs(kind),
            entry: None,
            replies,
        };
        // A failed submission is retried by the resubmit check.
        self.submit(&mut submitted);
        match self.await_reply(&mut submitted, wait, cancelled) {
            Waited::Reply(reply) => {
                if matches!(reply.outcome, super::wire::WireOutcome::Dropped { .. }) {
                    stats.interims_dropped.fetch_add(1, Ordering::Relaxed);
                }
                reply.outcome.into_result()
            }
            Waited::Cancelled => {
                stats.cancelled.fetch_add(1, Ordering::Relaxed);
                if kind == JobKind::Interim {
                    self.mark_superseded(&submitted);
                }
                self.withdraw(&submitted);
                Err(EngineError::Failed(
                    "nobody waits for this job any more".into(),
                ))
            }
            Waited::TimedOut => {
                self.withdraw(&submitted);
                if kind == JobKind::Interim {
                    return Err(EngineError::Failed("interim: no reply in time".into()));
                }
                stats.final_timeouts.fetch_add(1, Ordering::Relaxed);
                Err(EngineError::Unavailable(format!(
                    "no engine node answered within {} ms",
                    wait.as_millis()
                )))
            }
        }
    }
}
