//! Metrics: per-core counters and latency histograms, merged by one aggregator
//! thread.
//!
//! A core counts into its own [`CoreMetrics`] (plain `Cell`s and `RefCell`s: no
//! atomics or locks per event) and every
//! [`METRICS_PUBLISH_INTERVAL_MS`](crate::limits::METRICS_PUBLISH_INTERVAL_MS)
//! sends the delta since its last publish, a [`Snapshot`], to the
//! [`Aggregator`]. The aggregator merges deltas into a [`MetricsView`] and
//! serves the latest one through a [`MetricsHandle`]; readers (the JSON and
//! Prometheus endpoints) clone an `Arc` and never wait on a core.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use hdrhistogram::Histogram;

use crate::limits::{HISTOGRAM_MAX_US, METRICS_CHANNEL_CAPACITY};

pub mod prometheus;

/// Monotonic counters. Every field is a count since start (in a view) or since
/// the previous publish (in a snapshot).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    /// HTTP responses by (route label, status).
    pub http_responses: BTreeMap<(&'static str, u16), u64>,
    pub connections_accepted: u64,
    pub batch_requests: u64,
    pub batch_audio_seconds: f64,
    pub batch_segments: u64,
    pub model_jobs: u64,
    pub model_job_failures: u64,
    pub model_queue_full: u64,
    pub sessions_created: u64,
    /// Sessions refused at a session limit (global or per address).
    pub sessions_rejected: u64,
    /// Of those, refused at the per-address limit.
    pub sessions_rejected_per_peer: u64,
    /// Closed sessions by `session_end` reason.
    pub sessions_closed: BTreeMap<&'static str, u64>,
    pub stream_audio_bytes: u64,
    pub stream_audio_seconds: f64,
    pub stream_chunks: u64,
    pub stream_segments: u64,
    pub transcripts_interim: u64,
    pub transcripts_final: u64,
    /// Interims skipped (queue full) or dropped (slow client).
    pub interims_shed: u64,
    pub interims_superseded: u64,
    /// Batch requests refused because the engine's batch backlog is over
    /// its bound.
    pub batch_refused_saturated: u64,
    pub slow_consumers: u64,
    pub idle_timeouts: u64,
    /// Polls that held a core longer than the stall budget.
    pub reactor_stalls: u64,
    /// Panics caught at a task or request boundary.
    pub task_panics: u64,
    /// HTTP connections closed because the client did not take a response.
    pub write_timeouts: u64,
    /// Sessions kept after their connection dropped (`ws/resume.rs`).
    pub session_detaches: u64,
    /// Detached sessions continued on a new connection.
    pub session_resumes: u64,
    /// Detached sessions ended because their resume window ran out.
    pub session_resume_expiries: u64,
    /// Resume requests refused (unknown, expired, wrong token, attached,
    /// gap, off).
    pub session_resumes_refused: u64,
    /// Of the resumes, those whose connection another core accepted and
    /// handed to the owner.
    pub session_resume_handoffs: u64,
}

impl Counters {
    fn add(&mut self, other: &Counters) {
        for (key, count) in &other.http_responses {
            *self.http_responses.entry(*key).or_default() += count;
        }
        self.connections_accepted += other.connections_accepted;
        self.batch_requests += other.batch_requests;
        self.batch_audio_seconds += other.batch_audio_seconds;
        self.batch_segments += other.batch_segments;
        self.model_jobs += other.model_jobs;
        self.model_job_failures += other.model_job_failures;
        self.model_queue_full += other.model_queue_full;
        self.sessions_created += other.sessions_created;
        self.sessions_rejected += other.sessions_rejected;
        self.sessions_rejected_per_peer += other.sessions_rejected_per_peer;
        for (reason, count) in &other.sessions_closed {
            *self.sessions_closed.entry(reason).or_default() += count;
        }
        self.stream_audio_bytes += other.stream_audio_bytes;
        self.stream_audio_seconds += other.stream_audio_seconds;
        self.stream_chunks += other.stream_chunks;
        self.stream_segments += other.stream_segments;
        self.transcripts_interim += other.transcripts_interim;
        self.transcripts_final += other.transcripts_final;
        self.interims_shed += other.interims_shed;
        self.interims_superseded += other.interims_superseded;
        self.batch_refused_saturated += other.batch_refused_saturated;
        self.slow_consumers += other.slow_consumers;
        self.idle_timeouts += other.idle_timeouts;
        self.reactor_stalls += other.reactor_stalls;
        self.task_panics += other.task_panics;
        self.write_timeouts += other.write_timeouts;
        self.session_detaches += other.session_detaches;
        self.session_resumes += other.session_resumes;
        self.session_resume_expiries += other.session_resume_expiries;
        self.session_resumes_refused += other.session_resumes_refused;
        self.session_resume_handoffs += other.session_resume_handoffs;
    }
}

/// The latency distributions, in microseconds.
#[derive(Debug, Clone)]
pub struct Histograms {
    /// From a request's complete head to its response written, by route label.
    pub http_latency_us: BTreeMap<&'static str, Histogram<u64>>,
    /// Engine time per job.
    pub model_latency_us: Histogram<u64>,
    /// Time a job waited in the queue before a worker took it.
    pub queue_wait_us: Histogram<u64>,
    /// From the end of a segment's audio arriving to its final being queued
    /// for the client.
    pub final_latency_us: Histogram<u64>,
    /// From an interim's job submission to its transcript being queued.
    pub interim_latency_us: Histogram<u64>,
}

impl Default for Histograms {
    fn default() -> Self {
        Histograms {
            http_latency_us: BTreeMap::new(),
            model_latency_us: new_histogram(),
            queue_wait_us: new_histogram(),
            final_latency_us: new_histogram(),
            interim_latency_us: new_histogram(),
        }
    }
}

impl Histograms {
    fn add(&mut self, other: &Histograms) {
        for (route, histogram) in &other.http_latency_us {
            let merged = self
                .http_latency_us
                .entry(route)
                .or_insert_with(new_histogram);
            // Same bounds everywhere, so adding cannot fail.
            let _ = merged.add(histogram);
        }
        let _ = self.model_latency_us.add(&other.model_latency_us);
        let _ = self.queue_wait_us.add(&other.queue_wait_us);
        let _ = self.final_latency_us.add(&other.final_latency_us);
        let _ = self.interim_latency_us.add(&other.interim_latency_us);
    }

    fn is_empty(&self) -> bool {
        self.http_latency_us.values().all(|h| h.is_empty())
            && self.model_latency_us.is_empty()
            && self.queue_wait_us.is_empty()
            && self.final_latency_us.is_empty()
            && self.interim_latency_us.is_empty()
    }
}

/// A histogram with the server's common bounds.
pub fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that satisfy the constructor's preconditions.
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, 3).expect("valid histogram bounds")
}

/// Record a duration into a microsecond histogram, clamped into its range.
pub fn record_duration(histogram: &mut Histogram<u64>, duration: Duration) {
    let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
    histogram.saturating_record(micros.clamp(1, HISTOGRAM_MAX_US));
}

/// A core's current levels (not deltas), sent with each snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoreGauges {
    /// Open connections (HTTP and WebSocket).
    pub connections: usize,
    /// Live sessions by state: created, active, closing.
    pub sessions: [usize; 3],
}

/// One core's delta since its previous publish.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub core_id: usize,
    pub counters: Counters,
    pub histograms: Histograms,
    pub gauges: CoreGauges,
}

/// A core's own metrics. Lives on the core thread only.
pub struct CoreMetrics {
    core_id: usize,
    counters: RefCell<Counters>,
    histograms: RefCell<Histograms>,
    gauges_sent: Cell<Option<CoreGauges>>,
    to_aggregator: Sender<Snapshot>,
}

impl CoreMetrics {
    pub fn new(core_id: usize, to_aggregator: Sender<Snapshot>) -> Self {
        CoreMetrics {
            core_id,
            counters: RefCell::new(Counters::default()),
            histograms: RefCell::new(Histograms::default()),
            gauges_sent: Cell::new(None),
            to_aggregator,
        }
    }

    /// Change the counters. The borrow ends with the closure, so it can never
    /// be held across an `.await`.
    pub fn count(&self, update: impl FnOnce(&mut Counters)) {
        update(&mut self.counters.borrow_mut());
    }

    /// Record into the histograms; the same borrow rule as [`Self::count`].
    pub fn record(&self, update: impl FnOnce(&mut Histograms)) {
        update(&mut self.histograms.borrow_mut());
    }

    /// Count one HTTP response and its latency.
    pub fn on_http_response(&self, route: &'static str, status: u16, latency: Duration) {
        self.count(|c| *c.http_responses.entry((route, status)).or_default() += 1);
        self.record(|h| {
            let histogram = h.http_latency_us.entry(route).or_insert_with(new_histogram);
            record_duration(histogram, latency);
        });
    }

    /// Send the delta since the previous publish to the aggregator. When the
    /// aggregator's channel is full the delta is kept and sent next time, so no
    /// count is lost.
    pub fn publish(&self, gauges: CoreGauges) {
        let unchanged = *self.counters.borrow() == Counters::default()
            && self.histograms.borrow().is_empty()
            && self.gauges_sent.get() == Some(gauges);
        if unchanged {
            return;
        }
        let counters = std::mem::take(&mut *self.counters.borrow_mut());
        let histograms = std::mem::take(&mut *self.histograms.borrow_mut());
        let snapshot = Snapshot {
            core_id: self.core_id,
            counters,
            histograms,
            gauges,
        };
        match self.to_aggregator.try_send(snapshot) {
            Ok(()) => self.gauges_sent.set(Some(gauges)),
            Err(error) => {
                let snapshot = error.into_inner();
                self.counters.borrow_mut().add(&snapshot.counters);
                self.histograms.borrow_mut().add(&snapshot.histograms);
            }
        }
    }
}

/// The merged view of every core since start.
#[derive(Debug, Clone, Default)]
pub struct MetricsView {
    pub counters: Counters,
    pub histograms: Histograms,
    /// Each core's latest levels.
    pub core_gauges: BTreeMap<usize, CoreGauges>,
    /// When the view was last merged.
    pub updated_at: Option<Instant>,
}

/// Read access to the latest merged view, shared by all threads.
#[derive(Clone)]
pub struct MetricsHandle {
    latest: Arc<RwLock<Arc<MetricsView>>>,
}

impl MetricsHandle {
    /// The latest merged view. The lock is held only to clone an `Arc`.
    pub fn latest(&self) -> Arc<MetricsView> {
        match self.latest.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }
}

/// The aggregator thread.
pub struct Aggregator {
    sender: Sender<Snapshot>,
    handle: MetricsHandle,
    thread: JoinHandle<()>,
    /// Dropped by [`Aggregator::join`] to stop the thread even while a core
    /// still holds a sender.
    stop: Sender<()>,
}

impl Aggregator {
    /// Start the aggregator thread.
    ///
    /// # Errors
    /// When the thread cannot be spawned.
    pub fn start() -> std::io::Result<Aggregator> {
        let (sender, receiver) = crossbeam_channel::bounded(METRICS_CHANNEL_CAPACITY);
        let handle = MetricsHandle {
            latest: Arc::new(RwLock::new(Arc::new(MetricsView::default()))),
        };
        let published = handle.clone();
        let (stop, stopped) = crossbeam_channel::bounded(0);
        let thread = std::thread::Builder::new()
            .name("metrics-aggregator".into())
            .spawn(move || aggregator_run(receiver, stopped, published))?;
        Ok(Aggregator {
            sender,
            handle,
            thread,
            stop,
        })
    }

    /// Where cores send their snapshots.
    pub fn sender(&self) -> Sender<Snapshot> {
        self.sender.clone()
    }

    /// Read access for handlers.
    pub fn handle(&self) -> MetricsHandle {
        self.handle.clone()
    }

    /// Stop after the snapshots already sent are merged.
    pub fn join(self) {
        drop(self.sender);
        drop(self.stop);
        if self.thread.join().is_err() {
            tracing::error!("the metrics aggregator panicked");
        }
    }
}

fn aggregator_run(snapshots: Receiver<Snapshot>, stopped: Receiver<()>, published: MetricsHandle) {
    let mut view = MetricsView::default();
    loop {
        let first = crossbeam_channel::select! {
            recv(snapshots) -> snapshot => snapshot.ok(),
            recv(stopped) -> _ => None,
        };
        let stopping = first.is_none();
        if let Some(first) = first {
            merge(&mut view, &first);
        }
        // Merge everything that is waiting before publishing once.
        while let Ok(next) = snapshots.try_recv() {
            merge(&mut view, &next);
        }
        view.updated_at = Some(Instant::now());
        let merged = Arc::new(view.clone());
        match published.latest.write() {
            Ok(mut guard) => *guard = merged,
            Err(poisoned) => *poisoned.into_inner() = merged,
        }
        if stopping {
            return;
        }
    }
}

fn merge(view: &mut MetricsView, snapshot: &Snapshot) {
    view.counters.add(&snapshot.counters);
    view.histograms.add(&snapshot.histograms);
    view.core_gauges.insert(snapshot.core_id, snapshot.gauges);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_from_two_cores_are_merged() {
        let aggregator = Aggregator::start().expect("thread");
        let cores: Vec<CoreMetrics> = (0..2)
            .map(|id| CoreMetrics::new(id, aggregator.sender()))
            .collect();
        for (index, core) in cores.iter().enumerate() {
            for _ in 0..=index {
                core.on_http_response("health", 200, Duration::from_micros(100));
            }
            core.count(|c| c.model_jobs += 10);
            let gauges = CoreGauges {
                connections: index,
                sessions: [0, index, 0],
            };
            core.publish(gauges);
            // Nothing new: publishing again sends nothing and loses nothing.
            core.publish(gauges);
        }
        let handle = aggregator.handle();
        drop(cores);
        aggregator.join();
        let view = handle.latest();
        assert_eq!(view.counters.http_responses.get(&("health", 200)), Some(&3));
        assert_eq!(view.counters.model_jobs, 20);
        assert_eq!(view.histograms.http_latency_us["health"].len(), 3);
        assert_eq!(view.core_gauges[&1].sessions, [0, 1, 0]);
    }
}
