//! The model-worker pool: `model_workers` threads fed by three bounded
//! crossbeam queues, one per [`JobKind`], taken in priority order: a live
//! stream's finals first, then batch windows, then interims. A worker takes
//! an interim only when no final or batch job waits, so a burst of uploads
//! or a crowd of interims never holds a final back.
//!
//! A job whose submitter has gone (the client left, the session ended, the
//! request was dropped) is not computed: the worker sees that its reply has
//! no receiver any more and drops it, counting it
//! ([`ToPool::jobs_dropped`]). So the queue empties within one job's time of
//! the last client leaving, whatever the backlog was.
//!
//! Cores submit with [`ToPool::try_submit`], which never blocks: a full queue
//! is answered `overloaded` by the caller. Each [`Job`] carries the id of the
//! core that submitted it and a [`Reply`] that delivers the [`JobOutcome`]
//! back to that core and wakes its runtime (a `futures` oneshot, which monoio's
//! `sync` feature lets a foreign thread wake). A panic inside the engine is
//! caught at the job boundary and answered as a failed job (batch: 500
//! `internal`; stream: an `internal` error for that segment); the worker then
//! replaces its engine state, which the panic may have left half-updated,
//! with a fresh one from the model, and goes on.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Select, Sender, TryRecvError, TrySendError};

use super::capacity::{AdmissionSettings, EngineLoad, WorkClass};
use super::loading::Loading;
pub use super::loading::ModelState;
use super::{EngineError, ModelWorker, SpeechModel, TranscribeOptions, Transcript};

/// What a job is for; streams distinguish interim from final results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    Batch,
    Interim,
    Final,
}

impl JobKind {
    /// Which capacity estimate a job of this kind feeds.
    fn class(self) -> WorkClass {
        match self {
            JobKind::Batch => WorkClass::Batch,
            JobKind::Interim | JobKind::Final => WorkClass::Live,
        }
    }

    /// The queue a job of this kind waits in; lower is taken first.
    fn priority(self) -> usize {
        match self {
            JobKind::Final => 0,
            JobKind::Batch => 1,
            JobKind::Interim => 2,
        }
    }
}

/// One queue per [`JobKind`], indexed by [`JobKind::priority`].
const QUEUES: usize = 3;

/// Where a job's outcome goes.
pub type Reply = futures_channel::oneshot::Sender<JobOutcome>;

/// The receiving end a core awaits.
pub type ReplyReceiver = futures_channel::oneshot::Receiver<JobOutcome>;

/// One unit of model work: a segment of mono PCM16.
#[derive(Debug)]
pub struct Job {
    /// The core that submitted the job and must receive its outcome.
    pub core_id: usize,
    pub kind: JobKind,
    pub samples: Vec<i16>,
    pub sample_rate: u32,
    pub options: TranscribeOptions,
    /// When the job entered the queue, to measure the queue wait.
    pub enqueued_at: Instant,
    pub reply: Reply,
}

impl Job {
    /// A job and the receiver its outcome will arrive on.
    pub fn new(
        core_id: usize,
        kind: JobKind,
        samples: Vec<i16>,
        sample_rate: u32,
        options: TranscribeOptions,
    ) -> (Job, ReplyReceiver) {
        let (reply, receiver) = futures_channel::oneshot::channel();
        let job = Job {
            core_id,
            kind,
            samples,
            sample_rate,
            options,
            enqueued_at: Instant::now(),
            reply,
        };
        (job, receiver)
    }
}

/// The result of a job with its timings.
#[derive(Debug)]
pub struct JobOutcome {
    pub result: Result<Transcript, EngineError>,
    /// Time from submission until a worker took the job.
    pub queue_wait: Duration,
    /// Time the engine spent on the job.
    pub model_time: Duration,
}

/// Why a job was not accepted.
#[derive(Debug)]
pub enum SubmitError {
    /// The queue is full: answer `overloaded`. The job is handed back.
    Full(Job),
    /// The pool has stopped (shutdown).
    Closed(Job),
}

/// The submitting side of the pool, cloned into every core.
#[derive(Clone)]
pub struct ToPool {
    /// Indexed by [`JobKind::priority`].
    senders: [Sender<Job>; QUEUES],
    in_flight: Arc<AtomicUsize>,
    /// Jobs dropped unrun because their submitter had gone.
    dropped: Arc<AtomicU64>,
    restarts: Arc<AtomicU64>,
    loading: Arc<Loading>,
    /// The engine's measured capacity and the load admitted onto it.
    load: Arc<EngineLoad>,
    workers: usize,
}

impl ToPool {
    /// Queue a job without blocking.
    ///
    /// # Errors
    /// [`SubmitError::Full`] when the queue is at capacity,
    /// [`SubmitError::Closed`] when the pool has stopped.
    pub fn try_submit(&self, job: Job) -> Result<(), SubmitError> {
        let queue = &self.senders[job.kind.priority()];
        queue.try_send(job).map_err(|error| match error {
            TrySendError::Full(job) => SubmitError::Full(job),
            TrySendError::Disconnected(job) => SubmitError::Closed(job),
        })
    }

    /// Jobs waiting in the queues, every kind.
    pub fn queue_depth(&self) -> usize {
        self.senders.iter().map(Sender::len).sum()
    }

    /// Jobs of `kind` waiting.
    pub fn queue_depth_of(&self, kind: JobKind) -> usize {
        self.senders[kind.priority()].len()
    }

    /// The capacity of each kind's queue.
    pub fn queue_capacity(&self) -> usize {
        self.senders[0].capacity().unwrap_or(usize::MAX)
    }

    /// Jobs dropped unrun because their submitter had gone, since start.
    pub fn jobs_dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Jobs a worker is running right now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Workers that replaced their engine after it panicked, since start.
    pub fn worker_restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Whether a new final or batch job would be refused right now
    /// (interims are best effort and do not count).
    pub fn is_full(&self) -> bool {
        self.senders[JobKind::Final.priority()].is_full()
            || self.senders[JobKind::Batch.priority()].is_full()
    }

    /// The engine's capacity and the load admitted onto it (admission by
    /// capacity, `capacity.rs`).
    pub fn load(&self) -> &Arc<EngineLoad> {
        &self.load
    }

    /// The number of worker threads.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Whether the model is still loading, ready in every worker, or failed.
    pub fn model_state(&self) -> ModelState {
        self.loading.state()
    }

    /// Whether the model can translate (speaks more than English); `None`
    /// while it loads or when it failed to.
    pub fn is_multilingual(&self) -> Option<bool> {
        self.loading.is_multilingual()
    }

    /// Why the model failed to load, once it has.
    pub fn load_error(&self) -> Option<String> {
        self.loading.error()
    }
}

/// Makes the model, on the pool's loader thread.
pub type ModelLoader = Box<dyn FnOnce() -> Result<Arc<dyn SpeechModel>, EngineError> + Send>;

/// The pool: owns the worker threads until [`ModelPool::join`].
pub struct ModelPool {
    to_pool: ToPool,
    workers: Vec<JoinHandle<()>>,
    /// Dropped by [`ModelPool::join`]: the workers finish the queued jobs and
    /// exit, even while some core still holds a [`ToPool`] clone.
    stop: crossbeam_channel::Sender<()>,
}

impl ModelPool {
    /// Start `workers` threads, each with its own engine state from `model`,
    /// and return once every state is made.
    ///
    /// # Errors
    /// When a worker's engine state cannot be created or a thread cannot be
    /// spawned.
    pub fn start(
        model: Arc<dyn SpeechModel>,
        workers: usize,
        queue_capacity: usize,
    ) -> anyhow::Result<ModelPool> {
        let pool = ModelPool::start_loading(Box::new(move || Ok(model)), workers, queue_capacity)?;
        match pool.wait_loaded() {
            ModelState::Ready => Ok(pool),
            _ => {
                let error = pool.to_pool.load_error().unwrap_or_default();
                pool.join();
                Err(anyhow::anyhow!("{error}"))
            }
        }
    }

    /// Start `workers` threads and return at once; `loader` runs on a thread
    /// of its own, then each worker makes its engine state from the model.
    /// Until then the queue takes jobs, which wait ([`ToPool::model_state`]
    /// says `Loading`). If loading fails, every job is answered with the
    /// error.
    ///
    /// # Errors
    /// When a thread cannot be spawned.
    pub fn start_loading(
        loader: ModelLoader,
        workers: usize,
        queue_capacity: usize,
    ) -> anyhow::Result<ModelPool> {
        let load = Arc::new(EngineLoad::new(workers, None, AdmissionSettings::OFF));
        ModelPool::start_admitting(loader, workers, queue_capacity, load)
    }

    /// [`ModelPool::start_loading`] with admission by capacity: the workers
    /// time their jobs into `load`, which the cores consult before they
    /// admit a stream or an upload. A worker whose engine has no cost model
    /// (`load` knows no capacity yet) times one warm-up job first.
    ///
    /// # Errors
    /// When a thread cannot be spawned.
    pub fn start_admitting(
        loader: ModelLoader,
        workers: usize,
        queue_capacity: usize,
        load: Arc<EngineLoad>,
    ) -> anyhow::Result<ModelPool> {
        assert!(workers >= 1 && queue_capacity >= 1);
        let channels: [(Sender<Job>, Receiver<Job>); QUEUES] =
            std::array::from_fn(|_| crossbeam_channel::bounded::<Job>(queue_capacity));
        let senders = channels.clone().map(|(sender, _)| sender);
        let receivers = channels.map(|(_, receiver)| receiver);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicU64::new(0));
        let restarts = Arc::new(AtomicU64::new(0));
        let loading = Arc::new(Loading::new(workers));
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let mut handles = Vec::with_capacity(workers + 1);
        let loaded = Arc::clone(&loading);
        handles.push(
            std::thread::Builder::new()
                .name("model-loader".to_string())
                .spawn(move || {
                    let started = Instant::now();
                    let model = catch_unwind(AssertUnwindSafe(loader)).unwrap_or_else(|panic| {
                        let message = crate::rt::panic_message(panic.as_ref());
                        Err(EngineError::Failed(format!("loading panicked: {message}")))
                    });
                    match &model {
                        Ok(model) => tracing::info!(
                            model = model.name(),
                            seconds = started.elapsed().as_secs_f64(),
                            "model loaded"
                        ),
                        Err(error) => tracing::error!(%error, "the model failed to load"),
                    }
                    loaded.set_model(model.map_err(|error| match error {
                        EngineError::Failed(message)
                        | EngineError::InvalidAudio(message)
                        | EngineError::Unavailable(message) => message,
                    }));
                })?,
        );
        for index in 0..workers {
            let worker = Worker {
                index,
                model: None,
                engine: None,
                in_flight: Arc::clone(&in_flight),
                dropped: Arc::clone(&dropped),
                restarts: Arc::clone(&restarts),
                load: Arc::clone(&load),
                load_error: None,
            };
            let receivers = receivers.clone();
            let stopped = stopped.clone();
            let loading = Arc::clone(&loading);
            let handle = std::thread::Builder::new()
                .name(format!("model-worker-{index}"))
                .spawn(move || worker.run(&loading, &receivers, &stopped))?;
            handles.push(handle);
        }
        Ok(ModelPool {
            to_pool: ToPool {
                senders,
                in_flight,
                dropped,
                restarts,
                loading,
                load,
                workers,
            },
            workers: handles,
            stop,
        })
    }

    /// Block until the model is loaded into every worker or has failed.
    pub fn wait_loaded(&self) -> ModelState {
        self.to_pool.loading.wait_settled()
    }

    /// The submitting handle for cores.
    pub fn to_pool(&self) -> ToPool {
        self.to_pool.clone()
    }

    /// Stop the workers once the jobs already queued are done, and wait for
    /// them.
    pub fn join(self) {
        drop(self.to_pool);
        drop(self.stop);
        for handle in self.workers {
            if handle.join().is_err() {
                tracing::error!("a model worker thread panicked outside a job");
            }
        }
    }
}

/// One worker thread's state.
struct Worker {
    index: usize,
    /// Where a fresh engine comes from after a panic; `None` until loaded.
    model: Option<Arc<dyn SpeechModel>>,
    /// `None` before loading and while a replacement could not be made
    /// (every job then fails until one can).
    engine: Option<Box<dyn ModelWorker>>,
    in_flight: Arc<AtomicUsize>,
    dropped: Arc<AtomicU64>,
    restarts: Arc<AtomicU64>,
    /// Where the worker's speed is recorded.
    load: Arc<EngineLoad>,
    /// Why the model could not be loaded: every job is answered with it.
    load_error: Option<String>,
}

impl Worker {
    fn run(mut self, loading: &Loading, queues: &[Receiver<Job>; QUEUES], stopped: &Receiver<()>) {
        // Jobs wait in the queue while the model loads.
        match loading.wait_model() {
            Ok(model) => {
                match new_engine(model.as_ref()) {
                    Ok(engine) => {
                        self.engine = Some(engine);
                        self.warm_up();
                        loading.worker_settled(None);
                    }
                    Err(error) => {
                        let error = format!("model worker {}: {error}", self.index);
                        tracing::error!(%error, "a model worker could not make its engine");
                        self.load_error = Some(error.clone());
                        loading.worker_settled(Some(error));
                    }
                }
                self.model = Some(model);
            }
            Err(error) => {
                self.load_error = Some(error);
                loading.worker_settled(None);
            }
        }
        while let Some(job) = next_job(queues, stopped) {
            self.run_one(job);
        }
    }

    fn run_one(&mut self, job: Job) {
        if job.reply.is_canceled() {
            // Nobody waits for this outcome any more: computing it would
            // only delay the jobs of those who do.
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let outcome = self.run_job(&job);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        if outcome.result.is_ok() {
            self.load.record(
                self.index,
                job.kind.class(),
                audio_seconds(&job.samples, job.sample_rate),
                outcome.model_time.as_secs_f64(),
            );
        }
        // The submitter may have gone away (client disconnected); then the
        // outcome is simply dropped.
        let _ = job.reply.send(outcome);
    }

    fn run_job(&mut self, job: &Job) -> JobOutcome {
        let started = Instant::now();
        let queue_wait = started.saturating_duration_since(job.enqueued_at);
        let result = if let Some(error) = &self.load_error {
            Err(EngineError::Failed(format!(
                "the model failed to load: {error}"
            )))
        } else if self.engine.is_none() {
            self.replace_engine().and_then(|()| self.transcribe(job))
        } else {
            self.transcribe(job)
        };
        JobOutcome {
            result,
            queue_wait,
            model_time: started.elapsed(),
        }
    }

    /// Run the engine on a job; a panic fails the job and replaces the engine.
    fn transcribe(&mut self, job: &Job) -> Result<Transcript, EngineError> {
        let Some(engine) = self.engine.as_mut() else {
            return Err(EngineError::Failed("no engine".into()));
        };
        let ran = catch_unwind(AssertUnwindSafe(|| {
            let cancelled = || job.reply.is_canceled();
            engine.transcribe_cancellable(
                &job.samples,
                job.sample_rate,
                &job.options,
                job.kind,
                &cancelled,
            )
        }));
        ran.unwrap_or_else(|panic| {
            let message = crate::rt::panic_message(panic.as_ref());
            tracing::error!(worker = self.index, core = job.core_id, %message,
                "model engine panicked on a job; replacing the worker's engine");
            self.discard_engine();
            // The job is answered with the panic whatever the replacement does.
            let _ = self.replace_engine();
            Err(EngineError::Failed(format!("engine panicked: {message}")))
        })
    }

    /// Time one live job on synthetic audio when admission is on and nothing
    /// tells the engine's speed yet (no cost model, no worker has timed one),
    /// so admission has a figure before the first stream; real jobs correct
    /// it from then on. Its answer is thrown away.
    fn warm_up(&mut self) {
        if !self.load.wants_warm_up() {
            return;
        }
        let Some(engine) = self.engine.as_mut() else {
            return;
        };
        let samples = warm_up_audio();
        let mut run = || {
            catch_unwind(AssertUnwindSafe(|| {
                engine.transcribe_job(
                    &samples,
                    WARM_UP_RATE,
                    &TranscribeOptions::default(),
                    JobKind::Final,
                )
            }))
        };
        // The first call pays one-time costs (buffers, thread pools) that
        // no later job does: it is run, not timed.
        let first = run();
        let started = Instant::now();
        let ran = match first {
            Ok(Ok(_)) => run(),
            failed => failed,
        };
        if matches!(ran, Ok(Ok(_))) {
            self.load.record(
                self.index,
                WorkClass::Live,
                audio_seconds(&samples, WARM_UP_RATE),
                started.elapsed().as_secs_f64(),
            );
        } else {
            tracing::warn!(
                worker = self.index,
                "the warm-up job failed; admission waits for real jobs to measure the engine"
            );
            self.discard_engine();
            let _ = self.replace_engine();
        }
    }

    /// Drop the engine state a panic may have left inconsistent. Its own
    /// destructor may panic too; that is caught and logged.
    fn discard_engine(&mut self) {
        if let Some(engine) = self.engine.take() {
            if let Err(panic) = catch_unwind(AssertUnwindSafe(move || drop(engine))) {
                let message = crate::rt::panic_message(panic.as_ref());
                tracing::error!(worker = self.index, %message, "dropping a failed engine panicked");
            }
        }
    }

    /// Make a fresh engine for this worker and count the replacement.
    fn replace_engine(&mut self) -> Result<(), EngineError> {
        let Some(model) = self.model.clone() else {
            return Err(EngineError::Failed("no model".into()));
        };
        match new_engine(model.as_ref()) {
            Ok(engine) => {
                self.engine = Some(engine);
                self.restarts.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(error) => {
                tracing::error!(worker = self.index, %error,
                    "could not replace the worker's engine; the next job tries again");
                Err(error)
            }
        }
    }
}

/// The next job, highest priority first, blocking while every queue is
/// empty. `None` once the pool stops (after the queued jobs) or every
/// submitter has gone.
fn next_job(queues: &[Receiver<Job>; QUEUES], stopped: &Receiver<()>) -> Option<Job> {
    loop {
        let mut disconnected = 0;
        for queue in queues {
            match queue.try_recv() {
                Ok(job) => return Some(job),
                Err(TryRecvError::Disconnected) => disconnected += 1,
                Err(TryRecvError::Empty) => {}
            }
        }
        if disconnected == QUEUES {
            return None;
        }
        // Nothing waits: sleep until a queue has a job or the pool stops,
        // then take by priority again.
        let mut select = Select::new();
        for queue in queues {
            select.recv(queue);
        }
        let stop = select.recv(stopped);
        if select.ready() == stop {
            // Stopping: finish what is queued (in priority order), then exit.
            return queues.iter().find_map(|queue| queue.try_recv().ok());
        }
    }
}

/// The sample rate of the warm-up job.
const WARM_UP_RATE: u32 = 16_000;

/// The warm-up job's audio: a short spoken sentence ("hello world this is a
/// test", 2.1 s of 16 kHz PCM16, the test fixture `hello.raw`), as a live
/// final would be. Noise made a poor stand-in: Whisper heard a hallucination
/// in it, decoded far more tokens than speech of that length, and the
/// estimate came out at a tenth of what real finals then measured.
fn warm_up_audio() -> Vec<i16> {
    const SPEECH: &[u8] = include_bytes!("../../tests/fixtures/hello.raw");
    SPEECH
        .chunks_exact(2)
        .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
        .collect()
}

/// The length of `samples` at `sample_rate`, in seconds.
fn audio_seconds(samples: &[i16], sample_rate: u32) -> f64 {
    samples.len() as f64 / f64::from(sample_rate.max(1))
}

/// A fresh engine state from `model`; a panic while making it is an error.
fn new_engine(model: &dyn SpeechModel) -> Result<Box<dyn ModelWorker>, EngineError> {
    catch_unwind(AssertUnwindSafe(|| model.new_worker())).unwrap_or_else(|panic| {
        let message = crate::rt::panic_message(panic.as_ref());
        Err(EngineError::Failed(format!(
            "engine set-up panicked: {message}"
        )))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::mock::MockModel;
    use std::sync::Mutex;

    fn pool(workers: usize, capacity: usize, latency_ms: u64) -> ModelPool {
        let model = Arc::new(MockModel {
            latency: Duration::from_millis(latency_ms),
            rtf: 0.0,
        });
        ModelPool::start(model, workers, capacity).expect("pool starts")
    }

    #[test]
    fn a_job_comes_back_with_its_transcript() {
        let pool = pool(1, 4, 0);
        let samples: Vec<i16> = (0..16_000).map(|i| (i % 300) as i16).collect();
        let (job, receiver) = Job::new(
            0,
            JobKind::Batch,
            samples.clone(),
            16_000,
            Default::default(),
        );
        pool.to_pool().try_submit(job).expect("queued");
        let outcome = futures_executor_block_on(receiver).expect("answered");
        let transcript = outcome.result.expect("transcribed");
        assert_eq!(
            transcript,
            crate::model::mock::mock_transcript(&samples, 16_000)
        );
        pool.join();
    }

    #[test]
    fn a_full_queue_refuses_without_blocking() {
        // One worker busy for a long time, a queue of one: the third job is refused.
        let pool = pool(1, 1, 300);
        let to_pool = pool.to_pool();
        let mut receivers = Vec::new();
        let mut refused = 0;
        for _ in 0..4 {
            let (job, receiver) =
                Job::new(0, JobKind::Batch, vec![0; 160], 16_000, Default::default());
            match to_pool.try_submit(job) {
                Ok(()) => receivers.push(receiver),
                Err(SubmitError::Full(_)) => refused += 1,
                Err(SubmitError::Closed(_)) => panic!("pool closed"),
            }
        }
        assert!(refused >= 2, "refused {refused}");
        drop(to_pool);
        pool.join();
        for receiver in receivers {
            assert!(futures_executor_block_on(receiver).is_ok());
        }
    }

    /// Queue a job of `kind` whose samples all read `first`.
    fn submit(to_pool: &ToPool, kind: JobKind, first: i16) -> ReplyReceiver {
        let (job, receiver) = Job::new(0, kind, vec![first; 160], 16_000, Default::default());
        to_pool.try_submit(job).expect("queued");
        receiver
    }

    /// An engine that notes each job's first sample in the order it runs
    /// them, and holds its first job until `release` sends.
    struct Recorder {
        order: Arc<Mutex<Vec<i16>>>,
        release: crossbeam_channel::Receiver<()>,
    }

    struct RecorderWorker {
        order: Arc<Mutex<Vec<i16>>>,
        release: Option<crossbeam_channel::Receiver<()>>,
    }

    impl SpeechModel for Recorder {
        fn name(&self) -> &'static str {
            "recorder"
        }

        fn new_worker(&self) -> Result<Box<dyn ModelWorker>, EngineError> {
            Ok(Box::new(RecorderWorker {
                order: Arc::clone(&self.order),
                release: Some(self.release.clone()),
            }))
        }
    }

    impl ModelWorker for RecorderWorker {
        fn transcribe(
            &mut self,
            samples: &[i16],
            _sample_rate: u32,
            _options: &TranscribeOptions,
        ) -> Result<Transcript, EngineError> {
            if let Some(release) = self.release.take() {
                let _ = release.recv();
            }
            self.order.lock().expect("order").push(samples[0]);
            Ok(Transcript::default())
        }
    }

    /// A pool of one [`Recorder`] worker, busy with a first job (sample 0)
    /// until the returned sender releases it.
    fn held_pool() -> (ModelPool, Arc<Mutex<Vec<i16>>>, Sender<()>, ReplyReceiver) {
        let order = Arc::new(Mutex::new(Vec::new()));
        let (release, held) = crossbeam_channel::bounded(1);
        let model = Arc::new(Recorder {
            order: Arc::clone(&order),
            release: held,
        });
        let pool = ModelPool::start(model, 1, 8).expect("pool starts");
        let first = submit(&pool.to_pool(), JobKind::Batch, 0);
        // The worker has taken the first job once its queue is empty.
        let deadline = Instant::now() + Duration::from_secs(10);
        while pool.to_pool().in_flight() == 0 {
            assert!(Instant::now() < deadline, "the worker never took the job");
            std::thread::sleep(Duration::from_millis(1));
        }
        (pool, order, release, first)
    }

    #[test]
    fn finals_run_before_batch_windows_and_batch_before_interims() {
        let (pool, order, release, first) = held_pool();
        let to_pool = pool.to_pool();
        let mut receivers = vec![first];
        // Queued lowest priority first, two of each kind.
        for (kind, tag) in [
            (JobKind::Interim, 31),
            (JobKind::Batch, 21),
            (JobKind::Final, 11),
            (JobKind::Interim, 32),
            (JobKind::Batch, 22),
            (JobKind::Final, 12),
        ] {
            receivers.push(submit(&to_pool, kind, tag));
        }
        assert_eq!(to_pool.queue_depth(), 6);
        assert_eq!(to_pool.queue_depth_of(JobKind::Final), 2);
        release.send(()).expect("released");
        for receiver in receivers {
            assert!(futures_executor_block_on(receiver).is_ok());
        }
        assert_eq!(*order.lock().expect("order"), [0, 11, 12, 21, 22, 31, 32]);
        drop(to_pool);
        pool.join();
    }

    #[test]
    fn with_admission_on_and_no_cost_model_a_worker_times_a_warm_up_job() {
        use crate::model::capacity::{AdmissionSettings, EngineLoad, WorkClass};
        let model: Arc<dyn SpeechModel> = Arc::new(MockModel {
            latency: Duration::from_millis(20),
            rtf: 0.0,
        });
        let on = AdmissionSettings {
            max_utilisation: 0.85,
            max_backlog: Duration::from_secs(30),
        };
        let load = Arc::new(EngineLoad::new(1, None, on));
        let pool = ModelPool::start_admitting(Box::new(move || Ok(model)), 1, 4, Arc::clone(&load))
            .expect("pool starts");
        assert_eq!(pool.wait_loaded(), ModelState::Ready);
        // Three seconds of audio in at least 20 ms: known, and at most 150.
        let capacity = load.capacity(WorkClass::Live).expect("timed at start-up");
        assert!(capacity > 0.0 && capacity <= 150.0, "{capacity}");
        // Off, nothing is timed before the first job.
        let quiet = Arc::new(EngineLoad::new(1, None, AdmissionSettings::OFF));
        let model: Arc<dyn SpeechModel> = Arc::new(MockModel {
            latency: Duration::ZERO,
            rtf: 0.0,
        });
        let other =
            ModelPool::start_admitting(Box::new(move || Ok(model)), 1, 4, Arc::clone(&quiet))
                .expect("pool starts");
        assert_eq!(other.wait_loaded(), ModelState::Ready);
        assert_eq!(quiet.capacity(WorkClass::Live), None);
        pool.join();
        other.join();
    }

    #[test]
    fn jobs_whose_submitter_has_gone_are_dropped_unrun() {
        let (pool, order, release, first) = held_pool();
        let to_pool = pool.to_pool();
        let mut kept = Vec::new();
        for tag in 1..=6 {
            let receiver = submit(&to_pool, JobKind::Final, tag);
            // Every job but the 3rd and the 6th loses its receiver (the
            // client left) before a worker reaches it.
            if tag % 3 == 0 {
                kept.push(receiver);
            }
        }
        release.send(()).expect("released");
        assert!(futures_executor_block_on(first).is_ok());
        for receiver in kept {
            assert!(futures_executor_block_on(receiver).is_ok());
        }
        assert_eq!(*order.lock().expect("order"), [0, 3, 6]);
        assert_eq!(to_pool.jobs_dropped(), 4);
        assert_eq!(to_pool.queue_depth(), 0);
        drop(to_pool);
        pool.join();
    }

    /// An engine that panics on a job whose first sample is 42, and counts
    /// how many engines were made.
    struct Fragile {
        made: Arc<AtomicUsize>,
    }

    struct FragileWorker;

    impl SpeechModel for Fragile {
        fn name(&self) -> &'static str {
            "fragile"
        }

        fn new_worker(&self) -> Result<Box<dyn ModelWorker>, EngineError> {
            self.made.fetch_add(1, Ordering::SeqCst);
            Ok(Box::new(FragileWorker))
        }
    }

    impl ModelWorker for FragileWorker {
        fn transcribe(
            &mut self,
            samples: &[i16],
            _sample_rate: u32,
            _options: &TranscribeOptions,
        ) -> Result<Transcript, EngineError> {
            assert_ne!(samples.first(), Some(&42), "poisoned job");
            Ok(Transcript::default())
        }
    }

    #[test]
    fn a_panicking_engine_fails_its_job_and_is_replaced() {
        let made = Arc::new(AtomicUsize::new(0));
        let model = Arc::new(Fragile {
            made: Arc::clone(&made),
        });
        let pool = ModelPool::start(model, 1, 8).expect("pool starts");
        let to_pool = pool.to_pool();
        let submit = |first: i16| {
            futures_executor_block_on(submit(&to_pool, JobKind::Batch, first)).expect("answered")
        };
        assert!(submit(1).result.is_ok());
        let failed = submit(42).result.expect_err("the poisoned job fails");
        assert!(matches!(failed, EngineError::Failed(ref m) if m.contains("poisoned job")));
        assert!(
            submit(1).result.is_ok(),
            "the next job runs on a fresh engine"
        );
        assert_eq!(
            made.load(Ordering::SeqCst),
            2,
            "one engine at start, one replacement"
        );
        assert_eq!(to_pool.worker_restarts(), 1);
        drop(to_pool);
        pool.join();
    }

    #[test]
    fn jobs_wait_while_the_model_loads_and_run_once_it_is_ready() {
        let (release, released) = crossbeam_channel::bounded::<()>(0);
        let loader: ModelLoader = Box::new(move || {
            let _ = released.recv();
            Ok(Arc::new(MockModel {
                latency: Duration::ZERO,
                rtf: 0.0,
            }) as Arc<dyn SpeechModel>)
        });
        let pool = ModelPool::start_loading(loader, 2, 4).expect("pool starts");
        let to_pool = pool.to_pool();
        assert_eq!(to_pool.model_state(), ModelState::Loading);
        let (job, mut receiver) =
            Job::new(0, JobKind::Batch, vec![5; 1600], 16_000, Default::default());
        to_pool.try_submit(job).expect("queued while loading");
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            matches!(receiver.try_recv(), Ok(None)),
            "no answer before the model"
        );
        assert_eq!(to_pool.model_state(), ModelState::Loading);
        release.send(()).expect("loader waits");
        assert_eq!(pool.wait_loaded(), ModelState::Ready);
        let outcome = futures_executor_block_on(receiver).expect("answered");
        assert!(outcome.result.is_ok());
        drop(to_pool);
        pool.join();
    }

    #[test]
    fn a_model_that_fails_to_load_fails_every_job_with_the_reason() {
        let loader: ModelLoader =
            Box::new(|| Err(EngineError::Failed("weights are corrupt".into())));
        let pool = ModelPool::start_loading(loader, 2, 4).expect("pool starts");
        assert_eq!(pool.wait_loaded(), ModelState::Failed);
        let to_pool = pool.to_pool();
        assert!(to_pool
            .load_error()
            .is_some_and(|e| e.contains("weights are corrupt")));
        for _ in 0..3 {
            let (job, receiver) =
                Job::new(0, JobKind::Batch, vec![5; 1600], 16_000, Default::default());
            to_pool.try_submit(job).expect("queued");
            let error = futures_executor_block_on(receiver)
                .expect("answered")
                .result
                .expect_err("no model");
            assert!(
                matches!(error, EngineError::Failed(ref m) if m.contains("failed to load: weights are corrupt")),
                "{error}"
            );
        }
        drop(to_pool);
        pool.join();
    }

    #[test]
    fn start_reports_an_engine_that_cannot_be_made() {
        struct NoState;
        impl SpeechModel for NoState {
            fn name(&self) -> &'static str {
                "no-state"
            }
            fn new_worker(&self) -> Result<Box<dyn ModelWorker>, EngineError> {
                Err(EngineError::Failed("out of memory".into()))
            }
        }
        let error = ModelPool::start(Arc::new(NoState), 2, 4)
            .err()
            .expect("refused");
        assert!(error.to_string().contains("out of memory"), "{error}");
    }

    /// A minimal blocking wait for a oneshot, so the tests need no executor.
    fn futures_executor_block_on(
        receiver: ReplyReceiver,
    ) -> Result<JobOutcome, futures_channel::oneshot::Canceled> {
        let mut receiver = receiver;
        loop {
            match receiver.try_recv() {
                Ok(Some(outcome)) => return Ok(outcome),
                Ok(None) => std::thread::sleep(Duration::from_millis(1)),
                Err(canceled) => return Err(canceled),
            }
        }
    }
}
