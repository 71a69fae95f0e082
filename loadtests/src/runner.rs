//! Drives a [`Scenario`]: one OS thread per connection, for a bounded time.
//!
//! Each thread owns one [`Worker`] (for HTTP scenarios, one keep-alive
//! connection) and repeats [`Worker::run_once`] until the deadline, the
//! optional request budget, or a stop. Two pacing modes:
//!
//! * **closed loop** (default): send the next request as soon as the previous
//!   response is in; latency runs from the send to the end of the response.
//! * **open loop** (`rate`): request `i` of connection `k` is *intended* for
//!   `t0 + k/rate + i·connections/rate`, so the total rate is `rate`. A worker
//!   that falls behind sends at once, but latency is still measured from the
//!   intended time, so a stalled server shows up in the percentiles instead of
//!   quietly lowering the send rate (no coordinated omission).
//!
//! Requests that start during the warm-up are sent but not recorded. Results
//! are kept per thread and merged once at the end into a [`Report`].

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::http::ErrorKind;
use crate::stats::{Report, Stats};

/// The result of one unit of work (one request, for HTTP scenarios).
#[derive(Debug)]
pub enum Outcome {
    /// A complete response with this status.
    Response(u16),
    /// No usable response.
    Failed(ErrorKind, String),
}

/// The per-connection state of a scenario; one lives on each worker thread.
pub trait Worker: Send {
    /// Performs one unit of work (e.g. one request and its whole response).
    /// Must return within the scenario's own I/O timeout.
    fn run_once(&mut self) -> Outcome;

    /// TCP connections opened so far (for the `connects` figure).
    fn connects(&self) -> u64 {
        0
    }
}

/// A kind of load (`health`, `transcribe`, later `stream`): a name and a way
/// to make one [`Worker`] per connection.
pub trait Scenario: Sync {
    /// The name used in reports.
    fn name(&self) -> &str;

    /// Makes the worker for connection number `index` (0-based).
    fn new_worker(&self, index: usize) -> Box<dyn Worker>;
}

/// How hard and how long to run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Concurrent connections (worker threads).
    pub connections: usize,
    /// Measured time, after the warm-up.
    pub duration: Duration,
    /// Time whose results are discarded.
    pub warmup: Duration,
    /// Stop after this many measured requests in total.
    pub requests: Option<u64>,
    /// Total target rate in requests/s (open loop); `None` = closed loop.
    pub rate: Option<f64>,
    /// Show a live progress line on stderr (only if stdout is a terminal).
    pub progress: bool,
}

impl RunConfig {
    /// Checks the settings are within sane bounds.
    pub fn validate(&self) -> Result<()> {
        if self.connections == 0 || self.connections > 4096 {
            bail!("connections must be between 1 and 4096");
        }
        if self.duration.is_zero() || self.duration > Duration::from_secs(24 * 3600) {
            bail!("duration must be more than 0 and at most 24h");
        }
        if self.warmup > Duration::from_secs(3600) {
            bail!("warm-up must be at most 1h");
        }
        if self.requests == Some(0) {
            bail!("--requests must be at least 1");
        }
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0 && rate <= 10_000_000.0) {
                bail!("--rate must be a positive number of requests/s");
            }
        }
        Ok(())
    }
}

/// State shared by the worker threads and the progress line.
struct Shared {
    /// Measured requests claimed so far (for the request budget).
    issued: AtomicU64,
    /// Responses and errors so far, including the warm-up (progress only).
    done: AtomicU64,
    errors: AtomicU64,
    stop: AtomicBool,
}

/// Runs `scenario` with `cfg` and returns the merged report.
pub fn run(scenario: &dyn Scenario, cfg: &RunConfig) -> Result<Report> {
    cfg.validate()?;
    let shared = Shared {
        issued: AtomicU64::new(0),
        done: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    };
    let workers: Vec<Box<dyn Worker>> = (0..cfg.connections)
        .map(|i| scenario.new_worker(i))
        .collect();
    let progress = progress_bar(cfg);
    let t0 = Instant::now();
    let measure_start = t0 + cfg.warmup;

    let mut stats = Stats::new();
    // When the last worker finished its last request (not when the polling
    // loop below noticed), so the measured time is not padded.
    let mut finished = measure_start;
    thread::scope(|s| -> Result<()> {
        let mut handles = Vec::with_capacity(workers.len());
        for (index, mut worker) in workers.into_iter().enumerate() {
            let shared = &shared;
            let handle = thread::Builder::new()
                .name(format!("loadgen-{index}"))
                .stack_size(256 * 1024)
                .spawn_scoped(s, move || {
                    worker_loop(worker.as_mut(), index, cfg, t0, shared)
                });
            match handle {
                Ok(h) => handles.push(h),
                Err(e) => {
                    shared.stop.store(true, Ordering::Relaxed);
                    bail!("cannot start worker thread {index}: {e}");
                }
            }
        }
        while !handles.iter().all(|h| h.is_finished()) {
            thread::sleep(Duration::from_millis(100));
            update_progress(&progress, &shared, t0, cfg);
        }
        for h in handles {
            match h.join() {
                Ok((worker_stats, last_end)) => {
                    stats.merge(&worker_stats);
                    finished = finished.max(last_end);
                }
                Err(_) => bail!("a worker thread panicked"),
            }
        }
        Ok(())
    })?;
    progress.finish_and_clear();
    let elapsed = finished.saturating_duration_since(measure_start);

    Ok(Report {
        scenario: scenario.name().to_string(),
        connections: cfg.connections,
        elapsed,
        warmup: cfg.warmup,
        rate: cfg.rate,
        stats,
    })
}

/// The loop of one worker thread; returns its measurements and the time its
/// last request ended.
fn worker_loop(
    worker: &mut dyn Worker,
    index: usize,
    cfg: &RunConfig,
    t0: Instant,
    shared: &Shared,
) -> (Stats, Instant) {
    let measure_start = t0 + cfg.warmup;
    let deadline = measure_start + cfg.duration;
    // Open loop: the per-connection interval and the first intended send.
    let mut schedule = cfg.rate.map(|rate| {
        let interval = Duration::from_secs_f64(cfg.connections as f64 / rate);
        let first = t0 + Duration::from_secs_f64(index as f64 / rate);
        (first, interval)
    });
    let mut stats = Stats::new();
    let mut last_end = t0;
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let start = match schedule {
            Some((intended, _)) => {
                if intended >= deadline || !sleep_until(intended, shared) {
                    break;
                }
                intended
            }
            None => Instant::now(),
        };
        // Stop at the wall-clock deadline even when an open-loop worker is
        // behind its schedule, so a run never outlasts its duration by more
        // than the requests in flight.
        if start >= deadline || Instant::now() >= deadline {
            break;
        }
        let measured = start >= measure_start;
        if measured {
            if let Some(budget) = cfg.requests {
                if shared.issued.fetch_add(1, Ordering::Relaxed) >= budget {
                    shared.stop.store(true, Ordering::Relaxed);
                    break;
                }
            }
        }
        let connects_before = worker.connects();
        let outcome = worker.run_once();
        last_end = Instant::now();
        let latency = last_end.saturating_duration_since(start);
        if let Some((intended, interval)) = schedule.as_mut() {
            *intended += *interval;
        }
        shared.done.fetch_add(1, Ordering::Relaxed);
        let failed = matches!(outcome, Outcome::Failed(..));
        if measured {
            stats.connects += worker.connects() - connects_before;
            match outcome {
                Outcome::Response(status) => stats.record_response(status, latency),
                Outcome::Failed(kind, detail) => stats.record_error(kind, &detail),
            }
        }
        if failed {
            shared.errors.fetch_add(1, Ordering::Relaxed);
            // Do not spin on a refused or broken connection in closed loop.
            if schedule.is_none() {
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
    (stats, last_end)
}

/// Sleeps until `when`, waking to check the stop flag; false if stopped.
fn sleep_until(when: Instant, shared: &Shared) -> bool {
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= when {
            return true;
        }
        thread::sleep((when - now).min(Duration::from_millis(50)));
    }
}

/// A live "elapsed of expected" line on stderr for scenarios that run whole
/// sessions (`stream`, `idle`), shown only when stdout is a terminal; it
/// stops when dropped.
pub struct TimeProgress {
    bar: ProgressBar,
    ticker: Option<thread::JoinHandle<()>>,
    stop: std::sync::Arc<AtomicBool>,
}

impl TimeProgress {
    pub fn start(label: &str, expected: Duration) -> TimeProgress {
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        if !std::io::stdout().is_terminal() {
            return TimeProgress {
                bar: ProgressBar::hidden(),
                ticker: None,
                stop,
            };
        }
        let bar = ProgressBar::with_draw_target(
            Some(expected.as_millis() as u64),
            ProgressDrawTarget::stderr(),
        );
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} [{bar:30}] {elapsed:>4} of ~{msg}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(format!("{:.0}s {label}", expected.as_secs_f64()));
        let (ticking, stopped) = (bar.clone(), std::sync::Arc::clone(&stop));
        let started = Instant::now();
        let ticker = thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                ticking.set_position(started.elapsed().as_millis() as u64);
                thread::sleep(Duration::from_millis(200));
            }
        });
        TimeProgress {
            bar,
            ticker: Some(ticker),
            stop,
        }
    }
}

impl Drop for TimeProgress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
        self.bar.finish_and_clear();
    }
}

fn progress_bar(cfg: &RunConfig) -> ProgressBar {
    if !cfg.progress || !std::io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let total_ms = (cfg.warmup + cfg.duration).as_millis() as u64;
    let bar = ProgressBar::with_draw_target(Some(total_ms), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{spinner} [{bar:30}] {elapsed:>4} {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn update_progress(bar: &ProgressBar, shared: &Shared, t0: Instant, cfg: &RunConfig) {
    if bar.is_hidden() {
        return;
    }
    let elapsed = t0.elapsed();
    bar.set_position(elapsed.as_millis() as u64);
    let done = shared.done.load(Ordering::Relaxed);
    let errors = shared.errors.load(Ordering::Relaxed);
    let phase = if elapsed < cfg.warmup { "warm-up " } else { "" };
    let rps = done as f64 / elapsed.as_secs_f64().max(1e-3);
    bar.set_message(format!(
        "{phase}{done} requests ({rps:.0}/s avg), {errors} errors, {} connections",
        cfg.connections
    ));
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A worker that answers 200 after a fixed delay, and fails every 5th call.
    struct Fake {
        delay: Duration,
        calls: u64,
    }

    impl Worker for Fake {
        fn run_once(&mut self) -> Outcome {
            self.calls += 1;
            thread::sleep(self.delay);
            if self.calls % 5 == 0 {
                Outcome::Failed(ErrorKind::Io, "boom".into())
            } else {
                Outcome::Response(200)
            }
        }
    }

    struct FakeScenario(Duration);

    impl Scenario for FakeScenario {
        fn name(&self) -> &str {
            "fake"
        }
        fn new_worker(&self, _index: usize) -> Box<dyn Worker> {
            Box::new(Fake {
                delay: self.0,
                calls: 0,
            })
        }
    }

    fn cfg(connections: usize, ms: u64) -> RunConfig {
        RunConfig {
            connections,
            duration: Duration::from_millis(ms),
            warmup: Duration::ZERO,
            requests: None,
            rate: None,
            progress: false,
        }
    }

    #[test]
    fn request_budget_is_exact() {
        let mut c = cfg(4, 10_000);
        c.requests = Some(50);
        let r = run(&FakeScenario(Duration::from_millis(1)), &c).unwrap();
        // Exactly the budget, however long the 50 requests took: the 10 s
        // duration is only an upper limit the budget ends the run before.
        assert_eq!(r.stats.responses() + r.stats.error_count(), 50);
    }

    #[test]
    fn open_loop_counts_latency_from_the_intended_time() {
        // One connection, 100 req/s, but each request takes 30 ms: the
        // worker falls further behind with every request, and latency grows.
        let mut c = cfg(1, 500);
        c.rate = Some(100.0);
        let r = run(&FakeScenario(Duration::from_millis(30)), &c).unwrap();
        let l = r.latency();
        assert!(l.max > 100.0, "max {} ms should show the backlog", l.max);
        assert!(l.p50 > 30.0);
    }

    /// Like [`FakeScenario`], but counts every call its workers make.
    struct CountingScenario {
        delay: Duration,
        calls: Arc<AtomicU64>,
    }

    struct Counting {
        inner: Fake,
        calls: Arc<AtomicU64>,
    }

    impl Worker for Counting {
        fn run_once(&mut self) -> Outcome {
            self.calls.fetch_add(1, Ordering::Relaxed);
            self.inner.run_once()
        }
    }

    impl Scenario for CountingScenario {
        fn name(&self) -> &str {
            "counting"
        }
        fn new_worker(&self, _index: usize) -> Box<dyn Worker> {
            Box::new(Counting {
                inner: Fake {
                    delay: self.delay,
                    calls: 0,
                },
                calls: Arc::clone(&self.calls),
            })
        }
    }

    #[test]
    fn warmup_is_not_recorded() {
        // One connection: its first call starts at once, 2 s before the
        // measured part begins, so at least one call is a warm-up call and
        // must be missing from the report; calls after the warm-up are in it.
        let mut c = cfg(1, 500);
        c.warmup = Duration::from_secs(2);
        let scenario = CountingScenario {
            delay: Duration::from_millis(10),
            calls: Arc::new(AtomicU64::new(0)),
        };
        let r = run(&scenario, &c).unwrap();
        let recorded = r.stats.responses() + r.stats.error_count();
        let calls = scenario.calls.load(Ordering::Relaxed);
        assert!(recorded >= 1, "nothing recorded of {calls} calls");
        assert!(
            recorded < calls,
            "{recorded} of {calls} calls recorded: the warm-up was counted"
        );
    }
}
