//! Admission by engine capacity: what the engine sustains, what the admitted
//! work asks of it, and whether one more stream or upload fits.
//!
//! - **Capacity** is measured, per worker, as a moving estimate of audio
//!   seconds computed per second of model time ([`WorkerSpeed`]), kept
//!   apart for live jobs (a stream's finals and interims: short, and on
//!   Whisper a smaller encoder context) and batch windows (long, cheaper per
//!   second of audio). The node's capacity is the sum over its workers.
//!   Before a worker has measured anything its figure comes from the
//!   engine's cost model when it has one (the mock's `latency + rtf ×
//!   audio`); the pool also times one warm-up job per worker at start-up.
//! - **Demand** of a stream is the audio its finals hand the engine per
//!   wall second (its VAD's speech plus the padding each segment carries).
//!   A new stream is assumed to speak all the time ([`NEW_STREAM_DEMAND`])
//!   until [`DEMAND_WARMUP`] has passed, after which its own figure takes
//!   over, blending smoothly. Each admitted stream holds a
//!   [`StreamReservation`] that keeps its share in one atomic sum.
//! - **A stream is admitted** when the reserved demand plus a new stream's
//!   stays within `max_utilisation` of the live capacity, or when no other
//!   stream holds a share; otherwise it is refused with `overloaded`. `/v1/ready` says `engine_saturated` while
//!   that is so. Interims are not reserved: they are best effort and are
//!   shed first.
//! - **A batch request is admitted** while the batch work already admitted
//!   and not yet done would take the engine at most `max_backlog` to
//!   finish at the share streams leave it; otherwise it is refused with 503
//!   `overloaded` and a `Retry-After` of the excess, in seconds.
//!
//! With `max_utilisation` 0 nothing is refused here (the figures are still
//! measured and reported).
//!
//! Every figure lives in atomics: cores reserve and release without locks,
//! each worker writes only its own estimate.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The demand a stream is assumed to bring before its own figure is known:
/// speech all the time, in audio seconds per wall second.
pub const NEW_STREAM_DEMAND: f64 = 1.0;

/// How long a stream's assumed demand weighs in before its own measure
/// alone counts.
pub const DEMAND_WARMUP: Duration = Duration::from_secs(10);

/// How often a stream's reservation is brought up to date at most.
pub const DEMAND_REFRESH: Duration = Duration::from_millis(500);

/// The weight of the newest job in a worker's moving estimate.
const EWMA_WEIGHT: f64 = 0.2;

/// The job length at which a cost model is read, in audio seconds (a
/// typical live final).
const TYPICAL_JOB_S: f64 = 3.0;

/// The share of the engine batch work is assumed to get at least, however
/// busy the streams keep it.
const BATCH_SHARE_MIN: f64 = 0.1;

/// Figures are kept in millionths in integer atomics.
const MICRO: f64 = 1_000_000.0;

/// An engine's known cost per job (the mock's), used before it has been
/// measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostModel {
    /// Fixed seconds per job.
    pub latency_s: f64,
    /// Seconds per second of audio.
    pub rtf: f64,
}

impl CostModel {
    /// Audio seconds per second of model time for a typical job; infinite
    /// for an engine that costs nothing.
    fn speed(self) -> f64 {
        let seconds = self.latency_s + self.rtf * TYPICAL_JOB_S;
        if seconds <= 0.0 {
            f64::INFINITY
        } else {
            TYPICAL_JOB_S / seconds
        }
    }
}

/// Which estimate a job feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkClass {
    /// A stream's finals and interims.
    Live,
    /// Batch windows.
    Batch,
}

/// What the node's admission is set to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdmissionSettings {
    /// The highest estimated utilisation of the live capacity that streams
    /// may reserve; 0 turns admission by capacity off.
    pub max_utilisation: f64,
    /// The most batch backlog, in seconds of engine time, a new upload may
    /// queue behind.
    pub max_backlog: Duration,
}

impl AdmissionSettings {
    /// Admission by capacity off: today's behaviour, figures still measured.
    pub const OFF: AdmissionSettings = AdmissionSettings {
        max_utilisation: 0.0,
        max_backlog: Duration::ZERO,
    };

    fn is_on(self) -> bool {
        self.max_utilisation > 0.0
    }
}

/// One worker's moving estimates: audio seconds and model seconds per job,
/// as `f64` bits, written by that worker alone.
#[derive(Default)]
struct WorkerSpeed {
    live: Ewma,
    batch: Ewma,
}

#[derive(Default)]
struct Ewma {
    audio: AtomicU64,
    model: AtomicU64,
}

impl Ewma {
    fn record(&self, audio_s: f64, model_s: f64) {
        let load = |cell: &AtomicU64| f64::from_bits(cell.load(Ordering::Relaxed));
        let (old_audio, old_model) = (load(&self.audio), load(&self.model));
        let (audio, model) = if old_model > 0.0 {
            (
                old_audio + EWMA_WEIGHT * (audio_s - old_audio),
                old_model + EWMA_WEIGHT * (model_s - old_model),
            )
        } else {
            (audio_s, model_s)
        };
        self.audio.store(audio.to_bits(), Ordering::Relaxed);
        self.model.store(model.to_bits(), Ordering::Relaxed);
    }

    /// Audio seconds per model second, once measured.
    fn speed(&self) -> Option<f64> {
        let model = f64::from_bits(self.model.load(Ordering::Relaxed));
        let audio = f64::from_bits(self.audio.load(Ordering::Relaxed));
        (model > 0.0).then(|| audio / model)
    }
}

/// The node's engine capacity and the load admitted onto it; shared by the
/// pool's workers and every core.
pub struct EngineLoad {
    workers: Box<[WorkerSpeed]>,
    prior: Option<CostModel>,
    settings: AdmissionSettings,
    /// Σ of the admitted streams' demand, in millionths of an audio second
    /// per second.
    stream_demand: AtomicI64,
    /// Audio of admitted batch requests not yet transcribed, in millionths
    /// of a second.
    batch_pending: AtomicI64,
    refused_streams: AtomicU64,
    refused_batch: AtomicU64,
}

/// Why a stream or an upload is refused, and when to try again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Saturated {
    /// Whole seconds to wait before trying again (at least 1).
    pub retry_after_s: u32,
}

/// A snapshot of the figures, for `/v1/ready`, the metrics and the
/// dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LoadFigures {
    /// Live capacity, audio seconds per second; `None` until known.
    pub live_capacity: Option<f64>,
    /// Batch capacity, audio seconds per second; `None` until known.
    pub batch_capacity: Option<f64>,
    /// The streams' reserved demand, audio seconds per second.
    pub stream_demand: f64,
    /// `stream_demand / live_capacity` (0 while the capacity is unknown).
    pub utilisation: f64,
    /// Seconds the engine needs for the admitted batch work not yet done.
    pub batch_backlog_s: f64,
    /// Whether a new stream would be refused now.
    pub saturated: bool,
    pub refused_streams: u64,
    pub refused_batch: u64,
}

impl EngineLoad {
    pub fn new(
        workers: usize,
        prior: Option<CostModel>,
        settings: AdmissionSettings,
    ) -> EngineLoad {
        EngineLoad {
            workers: (0..workers.max(1))
                .map(|_| WorkerSpeed::default())
                .collect(),
            prior,
            settings,
            stream_demand: AtomicI64::new(0),
            batch_pending: AtomicI64::new(0),
            refused_streams: AtomicU64::new(0),
            refused_batch: AtomicU64::new(0),
        }
    }

    /// A worker finished a job of `audio_s` seconds in `model_s` seconds.
    pub fn record(&self, worker: usize, class: WorkClass, audio_s: f64, model_s: f64) {
        let Some(speed) = self.workers.get(worker) else {
            return;
        };
        if !(audio_s > 0.0 && model_s >= 0.0) {
            return;
        }
        // A job that took no measurable time still counts as a microsecond,
        // so a free engine reads as very fast rather than unknown.
        let model_s = model_s.max(1e-6);
        match class {
            WorkClass::Live => speed.live.record(audio_s, model_s),
            WorkClass::Batch => speed.batch.record(audio_s, model_s),
        }
    }

    /// Whether a worker should time a warm-up job: admission is on and
    /// nothing tells the engine's speed yet.
    pub fn wants_warm_up(&self) -> bool {
        self.settings.is_on() && self.capacity(WorkClass::Live).is_none()
    }

    /// The node's capacity for `class`, audio seconds per second: each
    /// worker's own estimate, else its other class's, else the cost model,
    /// else the mean of the workers that know; `None` while none does.
    pub fn capacity(&self, class: WorkClass) -> Option<f64> {
        let own = |speed: &WorkerSpeed| match class {
            WorkClass::Live => speed.live.speed().or_else(|| speed.batch.speed()),
            WorkClass::Batch => speed.batch.speed().or_else(|| speed.live.speed()),
        };
        let known: Vec<f64> = self
            .workers
            .iter()
            .filter_map(|speed| own(speed).or_else(|| self.prior.map(CostModel::speed)))
            .collect();
        if known.is_empty() {
            return None;
        }
        let mean = known.iter().sum::<f64>() / known.len() as f64;
        Some(mean * self.workers.len() as f64)
    }

    fn stream_demand(&self) -> f64 {
        self.stream_demand.load(Ordering::Relaxed).max(0) as f64 / MICRO
    }

    /// Whether one more stream's assumed demand fits under the limit, given
    /// `demand` already reserved. The first stream always does: an engine
    /// too slow for one stream still serves one, late, rather than none.
    fn stream_fits(&self, demand: f64) -> bool {
        if !self.settings.is_on() || demand <= 0.0 {
            return true;
        }
        match self.capacity(WorkClass::Live) {
            Some(capacity) => {
                (demand + NEW_STREAM_DEMAND) <= self.settings.max_utilisation * capacity
            }
            // Not measured yet (the warm-up has not run): nothing to judge by.
            None => true,
        }
    }

    /// Reserve a new stream's share of the engine, or refuse it.
    ///
    /// # Errors
    /// [`Saturated`] when admitting it would push the estimated utilisation
    /// over the limit (counted).
    pub fn admit_stream(self: &Arc<Self>, now: Instant) -> Result<StreamReservation, Saturated> {
        let share = to_micros(NEW_STREAM_DEMAND);
        let mut current = self.stream_demand.load(Ordering::Relaxed);
        loop {
            if !self.stream_fits(current.max(0) as f64 / MICRO) {
                self.refused_streams.fetch_add(1, Ordering::Relaxed);
                return Err(Saturated {
                    retry_after_s: self.stream_retry_after(),
                });
            }
            match self.stream_demand.compare_exchange_weak(
                current,
                current + share,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(seen) => current = seen,
            }
        }
        Ok(StreamReservation {
            load: Arc::clone(self),
            reserved: share,
            started: now,
            work_s: 0.0,
            refreshed: now,
        })
    }

    /// When a refused stream may try again: streams free their share when
    /// they end, which no one can foresee; the warm-up time is when the
    /// newest ones' assumed demand gives way to their measured one.
    fn stream_retry_after(&self) -> u32 {
        DEMAND_WARMUP.as_secs().clamp(1, u64::from(u32::MAX)) as u32
    }

    /// Admit an upload of `audio_s` seconds of speech, or refuse it.
    ///
    /// # Errors
    /// [`Saturated`] with the seconds until the backlog is back within
    /// bounds, when the batch work already admitted would take the engine
    /// longer than `max_backlog` (counted).
    pub fn admit_batch(self: &Arc<Self>, audio_s: f64) -> Result<BatchReservation, Saturated> {
        if self.settings.is_on() {
            let backlog = self.batch_backlog_s();
            let bound = self.settings.max_backlog.as_secs_f64();
            if backlog > bound {
                self.refused_batch.fetch_add(1, Ordering::Relaxed);
                let excess = (backlog - bound).ceil().clamp(1.0, f64::from(u32::MAX));
                return Err(Saturated {
                    retry_after_s: excess as u32,
                });
            }
        }
        let reserved = to_micros(audio_s);
        self.batch_pending.fetch_add(reserved, Ordering::Relaxed);
        Ok(BatchReservation {
            load: Arc::clone(self),
            remaining: reserved,
        })
    }

    /// Seconds the engine needs for the batch work admitted and not yet
    /// done, at the share the streams leave it.
    fn batch_backlog_s(&self) -> f64 {
        let pending = self.batch_pending.load(Ordering::Relaxed).max(0) as f64 / MICRO;
        if pending == 0.0 {
            return 0.0;
        }
        let Some(capacity) = self.capacity(WorkClass::Batch) else {
            return 0.0;
        };
        let share = (1.0 - self.utilisation()).max(BATCH_SHARE_MIN);
        pending / (capacity * share)
    }

    /// The streams' reserved demand over the live capacity.
    fn utilisation(&self) -> f64 {
        match self.capacity(WorkClass::Live) {
            Some(capacity) if capacity > 0.0 && capacity.is_finite() => {
                self.stream_demand() / capacity
            }
            _ => 0.0,
        }
    }

    /// Whether a new stream would be refused now.
    pub fn is_saturated(&self) -> bool {
        !self.stream_fits(self.stream_demand())
    }

    pub fn figures(&self) -> LoadFigures {
        let finite = |value: Option<f64>| value.filter(|value| value.is_finite());
        LoadFigures {
            live_capacity: finite(self.capacity(WorkClass::Live)),
            batch_capacity: finite(self.capacity(WorkClass::Batch)),
            stream_demand: self.stream_demand(),
            utilisation: self.utilisation(),
            batch_backlog_s: self.batch_backlog_s(),
            saturated: self.is_saturated(),
            refused_streams: self.refused_streams.load(Ordering::Relaxed),
            refused_batch: self.refused_batch.load(Ordering::Relaxed),
        }
    }
}

fn to_micros(value: f64) -> i64 {
    (value.max(0.0) * MICRO).round().min(i64::MAX as f64 / 4.0) as i64
}

/// An admitted stream's share of the engine, held for the session's life
/// and given back on drop.
pub struct StreamReservation {
    load: Arc<EngineLoad>,
    /// What this stream adds to the sum now, millionths.
    reserved: i64,
    started: Instant,
    /// Audio its finals handed the engine so far, seconds.
    work_s: f64,
    refreshed: Instant,
}

impl StreamReservation {
    /// A final of `audio_s` seconds went to the engine.
    pub fn add_work(&mut self, audio_s: f64, now: Instant) {
        self.work_s += audio_s.max(0.0);
        self.refresh(now);
    }

    /// Bring the share up to date if [`DEMAND_REFRESH`] has passed.
    pub fn refresh_if_due(&mut self, now: Instant) {
        if now.saturating_duration_since(self.refreshed) >= DEMAND_REFRESH {
            self.refresh(now);
        }
    }

    /// The stream's demand now: its measured work per wall second, blended
    /// with the assumed demand during the warm-up.
    pub fn demand(&self, now: Instant) -> f64 {
        demand(self.work_s, now.saturating_duration_since(self.started))
    }

    fn refresh(&mut self, now: Instant) {
        let share = to_micros(self.demand(now));
        let delta = share - self.reserved;
        if delta != 0 {
            self.load.stream_demand.fetch_add(delta, Ordering::Relaxed);
            self.reserved = share;
        }
        self.refreshed = now;
    }
}

impl Drop for StreamReservation {
    fn drop(&mut self) {
        self.load
            .stream_demand
            .fetch_sub(self.reserved, Ordering::Relaxed);
    }
}

/// `(work + assumed × time left in the warm-up) / max(elapsed, warm-up)`:
/// the assumed demand at the start, the measured one from the warm-up on.
fn demand(work_s: f64, elapsed: Duration) -> f64 {
    let warmup = DEMAND_WARMUP.as_secs_f64();
    let elapsed = elapsed.as_secs_f64();
    let assumed = NEW_STREAM_DEMAND * (warmup - elapsed).max(0.0);
    (work_s + assumed) / elapsed.max(warmup)
}

/// An admitted upload's audio not yet transcribed, given back as its
/// windows come back and on drop (done, failed or abandoned).
pub struct BatchReservation {
    load: Arc<EngineLoad>,
    remaining: i64,
}

impl BatchReservation {
    /// A window of `audio_s` seconds of it is done.
    pub fn done(&mut self, audio_s: f64) {
        let part = to_micros(audio_s).min(self.remaining);
        self.load.batch_pending.fetch_sub(part, Ordering::Relaxed);
        self.remaining -= part;
    }
}

impl Drop for BatchReservation {
    fn drop(&mut self) {
        self.load
            .batch_pending
            .fetch_sub(self.remaining, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(max_utilisation: f64, max_backlog_s: u64) -> AdmissionSettings {
        AdmissionSettings {
            max_utilisation,
            max_backlog: Duration::from_secs(max_backlog_s),
        }
    }

    /// The mock: 2 workers at rtf 0.5, 4 audio seconds per second.
    fn mock_load(settings: AdmissionSettings) -> Arc<EngineLoad> {
        Arc::new(EngineLoad::new(
            2,
            Some(CostModel {
                latency_s: 0.0,
                rtf: 0.5,
            }),
            settings,
        ))
    }

    #[test]
    fn the_cost_model_gives_the_capacity_before_any_job() {
        let load = mock_load(on(0.85, 30));
        let capacity = load.capacity(WorkClass::Live).expect("known");
        assert!((capacity - 4.0).abs() < 1e-9, "{capacity}");
    }

    #[test]
    fn measured_jobs_replace_the_cost_model() {
        let load = mock_load(on(0.85, 30));
        // Worker 0 turns out twice as fast as its cost model says.
        load.record(0, WorkClass::Live, 4.0, 1.0);
        let capacity = load.capacity(WorkClass::Live).expect("known");
        assert!((capacity - 6.0).abs() < 1e-9, "{capacity}");
        // Batch has not been measured on worker 0: its live figure stands in.
        let batch = load.capacity(WorkClass::Batch).expect("known");
        assert!((batch - 6.0).abs() < 1e-9, "{batch}");
    }

    #[test]
    fn without_a_cost_model_capacity_is_unknown_until_measured() {
        let load = Arc::new(EngineLoad::new(2, None, on(0.85, 30)));
        assert_eq!(load.capacity(WorkClass::Live), None);
        // Unknown capacity refuses nobody.
        let held: Vec<_> = (0..50)
            .map(|_| load.admit_stream(Instant::now()).expect("admitted"))
            .collect();
        assert!(!load.is_saturated());
        drop(held);
        load.record(1, WorkClass::Live, 3.0, 1.5);
        // One worker measured at 2 a/s; the other is assumed alike.
        assert_eq!(load.capacity(WorkClass::Live), Some(4.0));
    }

    #[test]
    fn streams_are_admitted_up_to_the_utilisation_bound_then_refused() {
        let load = mock_load(on(0.85, 30));
        let now = Instant::now();
        // 0.85 × 4 = 3.4 audio s/s: three new streams fit, a fourth does not.
        let held: Vec<_> = (0..3)
            .map(|_| load.admit_stream(now).expect("admitted"))
            .collect();
        assert!(load.is_saturated());
        let refused = load.admit_stream(now).err().expect("refused");
        assert!(refused.retry_after_s >= 1);
        assert_eq!(load.figures().refused_streams, 1);
        assert!((load.figures().utilisation - 0.75).abs() < 1e-9);
        // One leaves: room again.
        drop(held.into_iter().next());
        assert!(!load.is_saturated());
        assert!(load.admit_stream(now).is_ok());
    }

    #[test]
    fn the_first_stream_is_admitted_even_by_a_slow_engine() {
        // One worker at 3 s a job: 1 audio second per second, under one
        // stream's assumed demand at 0.85.
        let load = Arc::new(EngineLoad::new(
            1,
            Some(CostModel {
                latency_s: 3.0,
                rtf: 0.0,
            }),
            on(0.85, 30),
        ));
        let now = Instant::now();
        let first = load.admit_stream(now).expect("the first is admitted");
        assert!(load.admit_stream(now).is_err());
        drop(first);
        assert!(load.admit_stream(now).is_ok());
    }

    #[test]
    fn off_admits_everyone_but_still_measures() {
        let load = mock_load(AdmissionSettings::OFF);
        let now = Instant::now();
        let held: Vec<_> = (0..40)
            .map(|_| load.admit_stream(now).expect("admitted"))
            .collect();
        assert!(!load.is_saturated());
        assert!((load.figures().stream_demand - 40.0).abs() < 1e-6);
        assert!(load.admit_batch(1e6).is_ok());
        assert!(load.admit_batch(1e6).is_ok());
        drop(held);
        assert_eq!(load.figures().stream_demand, 0.0);
    }

    #[test]
    fn a_quiet_stream_gives_back_its_assumed_share_after_the_warmup() {
        let load = mock_load(on(0.85, 30));
        let start = Instant::now();
        let mut stream = load.admit_stream(start).expect("admitted");
        assert!((load.figures().stream_demand - NEW_STREAM_DEMAND).abs() < 1e-6);
        // Halfway through the warm-up, 2 s of finals: (2 + 5) / 10.
        stream.add_work(2.0, start + DEMAND_WARMUP / 2);
        assert!((load.figures().stream_demand - 0.7).abs() < 1e-6);
        // Twice the warm-up, 3 s of finals in all: 3 / 20.
        stream.add_work(1.0, start + DEMAND_WARMUP * 2);
        assert!((load.figures().stream_demand - 0.15).abs() < 1e-6);
        drop(stream);
        assert_eq!(load.figures().stream_demand, 0.0);
    }

    #[test]
    fn refresh_is_rate_limited() {
        let load = mock_load(on(0.85, 30));
        let start = Instant::now();
        let mut stream = load.admit_stream(start).expect("admitted");
        stream.refresh_if_due(start + DEMAND_REFRESH / 2);
        assert!((load.figures().stream_demand - 1.0).abs() < 1e-6);
        stream.refresh_if_due(start + DEMAND_WARMUP * 2);
        assert!(load.figures().stream_demand.abs() < 1e-6);
    }

    #[test]
    fn batch_is_refused_past_the_backlog_bound_with_the_excess_as_retry() {
        let load = mock_load(on(0.85, 30));
        // Nothing pending: even a long upload is admitted.
        let mut first = load.admit_batch(200.0).expect("admitted");
        // 200 s at 4 a/s = 50 s of backlog: 20 s over the bound.
        let refused = load.admit_batch(1.0).err().expect("refused");
        assert_eq!(refused.retry_after_s, 20);
        assert_eq!(load.figures().refused_batch, 1);
        // 120 s of it done: 80 s left = 20 s of backlog.
        first.done(120.0);
        assert!((load.figures().batch_backlog_s - 20.0).abs() < 1e-6);
        let second = load.admit_batch(10.0).expect("admitted");
        drop(first);
        drop(second);
        assert_eq!(load.figures().batch_backlog_s, 0.0);
    }

    #[test]
    fn streams_shrink_the_share_batch_gets() {
        let load = mock_load(on(0.85, 30));
        let now = Instant::now();
        let _streams: Vec<_> = (0..2)
            .map(|_| load.admit_stream(now).expect("in"))
            .collect();
        let _upload = load.admit_batch(40.0).expect("admitted");
        // Streams hold half of 4 a/s: 40 s of audio at 2 a/s.
        assert!((load.figures().batch_backlog_s - 20.0).abs() < 1e-6);
    }

    #[test]
    fn concurrent_admission_never_overshoots() {
        let load = mock_load(on(0.85, 30));
        let admitted = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..4 {
                        if let Ok(stream) = load.admit_stream(Instant::now()) {
                            admitted.lock().expect("lock").push(stream);
                        }
                    }
                });
            }
        });
        let admitted = admitted.into_inner().expect("lock");
        assert_eq!(admitted.len(), 3);
        assert_eq!(load.figures().refused_streams, 29);
    }

    #[test]
    fn demand_blends_from_assumed_to_measured() {
        assert!((demand(0.0, Duration::ZERO) - NEW_STREAM_DEMAND).abs() < 1e-9);
        assert!((demand(5.0, DEMAND_WARMUP) - 0.5).abs() < 1e-9);
        assert!((demand(30.0, DEMAND_WARMUP * 3) - 1.0).abs() < 1e-9);
    }
}
