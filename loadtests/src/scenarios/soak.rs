//! `soak`: a long, mixed, steady load, watching for leaks and lost work.
//!
//! For `--duration`, at the same time:
//!
//! * **streams**: `--streams` real-time streaming sessions are kept going on
//!   the `stream` scenario's mux driver ([`mux::run_with`]) with a
//!   [`Continuous`] schedule: the first ones start over `--ramp`, and each
//!   session that ends is replaced at once (a session that could not even
//!   connect, after 1 s). Each streams the file (looped) for a random
//!   `--min-length`..`--max-length` of audio (cut at any chunk), sends
//!   `end`, and is checked like a `stream` session (one final per
//!   `speech_start`, in order, then `session_end`). A fraction
//!   `--disconnect-rate` of them instead drop the TCP connection at a random
//!   20–80% of their length, without a close frame (half with a FIN, half
//!   with a reset); those are counted, not checked for finals. A fraction
//!   `--delete-fraction` of the others is deleted by the operator at a
//!   random 20–80% of their length (see [`deletes`]): each must get
//!   `session_end` `terminated` and close 1000, with the finals of every
//!   segment over before the DELETE; they are counted as terminated, not
//!   completed. Lengths are clipped to the time left, so the last sessions
//!   end with the soak;
//! * **batch**: `--batch-connections` keep-alive clients POST the file to
//!   `/v1/transcribe` in a closed loop (the [`runner`](crate::runner));
//! * **operator**: one client GETs `/v1/sessions`, `/v1/sessions/metrics`
//!   and `/metrics` every second; every 10 s it also samples the server's
//!   `VmRSS` (`--server-pid`) and the `/v1/sessions/metrics` counters.
//!   Another sends the planned `DELETE /v1/sessions/{id}` when due. Both use
//!   the admin key when one is given, else the API key.
//!
//! At the end (every session over, the batch clients stopped) it polls
//! `GET /v1/health` until `active_sessions` is 0 (at most 10 s), takes a
//! last sample, and reports: streams completed / terminated / failed /
//! aborted, lost finals (completed or terminated sessions with an ordering
//! violation: must be 0), the DELETEs (sent, 200, 404, other answers, and
//! whether each 200's client saw `terminated`), the batch status counts, RSS
//! at warm-up (the first sample after 1/6 of the duration), max and last
//! under load, the growth from warm-up to the last sample under load, and
//! the sessions the server never closed.

pub mod deletes;
mod report;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde::Serialize;

use self::deletes::DeleteBook;
pub use self::report::SoakReport;
use super::stream::mux::{self, Schedule, SessionPlan};
use super::stream::{Driver, StreamOptions, MAX_SESSIONS, MAX_THREADS};
use super::HttpScenario;
use crate::http::{build_request, HttpClient};
use crate::runner::{self, RunConfig};
use crate::stats::round;
use crate::sys;
use crate::target::Target;
use crate::wav::Pcm16;

/// How often the operator endpoints are polled.
pub const POLL_EVERY: Duration = Duration::from_secs(1);

/// How often RSS and `/v1/sessions/metrics` are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// How long `active_sessions` may take to return to 0 at the end.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// How long the end sample waits for `/v1/sessions/metrics` to show
/// `total_closed == total_created` (its totals are published every 250 ms).
pub const SETTLE_LIMIT: Duration = Duration::from_secs(5);

/// A session is not started with less time than this left.
pub const MIN_SESSION: Duration = Duration::from_secs(1);

/// Delay before replacing a session that could not connect or upgrade.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// The operator endpoints polled every second.
pub const OPERATOR_PATHS: [&str; 3] = ["/v1/sessions", "/v1/sessions/metrics", "/metrics"];

/// Largest `--batch-connections`.
pub const MAX_BATCH: usize = 256;

/// What to run.
#[derive(Debug)]
pub struct SoakOptions {
    /// Where (already checked to be loopback).
    pub target: Target,
    /// Extra request headers (e.g. `Authorization`).
    pub headers: Vec<(String, String)>,
    /// Headers of the operator requests (session endpoints, `/metrics`,
    /// DELETEs): the admin key when one is given, else `headers`.
    pub operator_headers: Vec<(String, String)>,
    /// Bound on connects, handshakes, each read/write, and the wait for
    /// `session_end` after `end`.
    pub timeout: Duration,
    /// The streamed audio.
    pub audio: Arc<Pcm16>,
    /// The batch request (`POST /v1/transcribe` with the file).
    pub batch: HttpScenario,
    pub duration: Duration,
    pub streams: usize,
    pub batch_connections: usize,
    pub server_pid: Option<u32>,
    pub disconnect_rate: f64,
    /// Fraction of the sessions not dropped that the operator DELETEs.
    pub delete_fraction: f64,
    pub min_length: Duration,
    pub max_length: Duration,
    pub ramp: Duration,
    /// Mux worker threads.
    pub threads: usize,
    pub seed: u64,
    /// Print a progress line on stderr at every sample.
    pub progress: bool,
}

impl SoakOptions {
    /// Checks the settings are within sane bounds.
    pub fn validate(&self) -> Result<()> {
        if self.duration < Duration::from_secs(2) || self.duration > Duration::from_secs(24 * 3600)
        {
            bail!("--duration must be between 2s and 24h");
        }
        if self.streams == 0 || self.streams > MAX_SESSIONS {
            bail!("--streams must be between 1 and {MAX_SESSIONS}");
        }
        if self.batch_connections > MAX_BATCH {
            bail!("--batch-connections must be at most {MAX_BATCH}");
        }
        if !(0.0..=1.0).contains(&self.disconnect_rate) {
            bail!("--disconnect-rate must be between 0 and 1");
        }
        if !(0.0..=1.0).contains(&self.delete_fraction) {
            bail!("--delete-fraction must be between 0 and 1");
        }
        if self.min_length < Duration::from_millis(100)
            || self.min_length > self.max_length
            || self.max_length > Duration::from_secs(3600)
        {
            bail!("need 100ms <= --min-length <= --max-length <= 1h");
        }
        if self.ramp > self.duration {
            bail!("--ramp must not exceed --duration");
        }
        if self.timeout.is_zero() {
            bail!("--timeout must be more than 0");
        }
        if self.threads == 0 || self.threads > MAX_THREADS {
            bail!("--threads must be between 1 and {MAX_THREADS}");
        }
        Ok(())
    }

    fn stream_options(&self, deletes: Option<Arc<DeleteBook>>) -> StreamOptions {
        StreamOptions {
            target: self.target.clone(),
            headers: self.headers.clone(),
            timeout: self.timeout,
            audio: Arc::clone(&self.audio),
            sessions: self.streams,
            ramp: self.ramp,
            // Each session's own length is set from its plan.
            duration: self.max_length,
            chunk_ms: 20,
            pace: true,
            interim: true,
            query: None,
            driver: Driver::Mux,
            threads: self.threads,
            server_pid: self.server_pid,
            deletes,
            dialect: super::stream::openai::Dialect::Native,
        }
    }
}

/// A small deterministic generator (SplitMix64).
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Live counts of the stream sessions, for the progress line.
#[derive(Debug, Default)]
pub struct LiveCounts {
    pub opened: AtomicU64,
    pub ended: AtomicU64,
}

/// The soak's schedule: `streams` sessions started over `ramp`, each one
/// replaced when it ends, until `until`; random lengths, some aborted, some
/// deleted by the operator.
#[derive(Debug)]
pub struct Continuous {
    streams: usize,
    start: Instant,
    ramp: Duration,
    until: Instant,
    min_length: Duration,
    max_length: Duration,
    disconnect_rate: f64,
    delete_fraction: f64,
    rng: SplitMix,
    /// Initial sessions opened so far.
    initial: usize,
    /// When replacements are due, in order.
    replacements: VecDeque<Instant>,
    opened: usize,
    /// Bound on sessions opened in all.
    cap: usize,
    live: Arc<LiveCounts>,
}

impl Continuous {
    /// A schedule from `start` to `start + duration`.
    pub fn new(opts: &SoakOptions, start: Instant, live: Arc<LiveCounts>) -> Self {
        // Sessions last at least min(--min-length, time left); twice the
        // count that allows bounds a run where everything fails fast.
        let min_s = opts.min_length.as_secs_f64().max(MIN_SESSION.as_secs_f64());
        let per_stream = (opts.duration.as_secs_f64() / min_s).ceil() as usize + 2;
        Continuous {
            streams: opts.streams,
            start,
            ramp: opts.ramp,
            until: start + opts.duration,
            min_length: opts.min_length,
            max_length: opts.max_length,
            disconnect_rate: opts.disconnect_rate,
            delete_fraction: opts.delete_fraction,
            rng: SplitMix::new(opts.seed),
            initial: 0,
            replacements: VecDeque::new(),
            opened: 0,
            cap: opts.streams.saturating_mul(per_stream * 2),
            live,
        }
    }

    fn initial_slot(&self, i: usize) -> Instant {
        self.start + self.ramp.mul_f64(i as f64 / self.streams as f64)
    }

    /// The plan of a session started at `now`.
    fn plan(&mut self, now: Instant) -> SessionPlan {
        let left = self.until.saturating_duration_since(now);
        let span = self.max_length.saturating_sub(self.min_length);
        let length = (self.min_length + span.mul_f64(self.rng.unit())).min(left);
        let abort_after = (self.rng.unit() < self.disconnect_rate).then(|| {
            let at = length.mul_f64(0.2 + 0.6 * self.rng.unit());
            (at, self.rng.next_u64() & 1 == 1)
        });
        // Drawn only with a positive fraction, so plans without deletes are
        // the same as before for a given seed.
        let delete_after = (abort_after.is_none()
            && self.delete_fraction > 0.0
            && self.rng.unit() < self.delete_fraction)
            .then(|| length.mul_f64(0.2 + 0.6 * self.rng.unit()));
        SessionPlan {
            length: Some(length),
            abort_after,
            delete_after,
        }
    }

    /// Sessions opened so far.
    pub fn opened(&self) -> usize {
        self.opened
    }
}

impl Schedule for Continuous {
    fn pop_due(&mut self, now: Instant) -> Option<(usize, Instant, SessionPlan)> {
        if self.finished(now) {
            return None;
        }
        let planned = if self.initial < self.streams && self.initial_slot(self.initial) <= now {
            self.initial += 1;
            self.initial_slot(self.initial - 1)
        } else if self.replacements.front().is_some_and(|&at| at <= now) {
            self.replacements.pop_front()?
        } else {
            return None;
        };
        let plan = self.plan(now);
        self.opened += 1;
        self.live.opened.fetch_add(1, Ordering::Relaxed);
        Some((self.opened - 1, planned, plan))
    }

    fn next_at(&self) -> Option<Instant> {
        let initial = (self.initial < self.streams).then(|| self.initial_slot(self.initial));
        match (initial, self.replacements.front().copied()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn finished(&self, now: Instant) -> bool {
        now + MIN_SESSION > self.until || self.opened >= self.cap
    }

    fn on_end(&mut self, now: Instant, never_started: bool) {
        self.live.ended.fetch_add(1, Ordering::Relaxed);
        if !self.finished(now) {
            let delay = if never_started {
                RETRY_AFTER_FAILURE
            } else {
                Duration::ZERO
            };
            self.replacements.push_back(now + delay);
        }
    }
}

/// One sample of the server's state.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Sample {
    /// Seconds since the soak started.
    pub t_s: f64,
    pub rss_kb: Option<u64>,
    /// From `/v1/sessions/metrics`.
    pub active_sessions: Option<u64>,
    pub total_created: Option<u64>,
    pub total_closed: Option<u64>,
    pub rejected: Option<u64>,
    /// Stream sessions opened / ended by `loadgen` so far.
    pub opened: u64,
    pub ended: u64,
}

impl Sample {
    /// The server has closed every session it created.
    pub fn balanced(&self) -> bool {
        self.total_created.is_some() && self.total_created == self.total_closed
    }

    /// Sessions the server created and has not closed (`None` without the
    /// totals).
    pub fn leaked(&self) -> Option<u64> {
        Some(self.total_created?.saturating_sub(self.total_closed?))
    }

    /// Fills the `/v1/sessions/metrics` fields from its JSON body.
    pub fn read_metrics(&mut self, body: &[u8]) {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
            return;
        };
        let get = |k: &str| v.get(k).and_then(serde_json::Value::as_u64);
        self.active_sessions = get("active_sessions");
        self.total_created = get("total_created");
        self.total_closed = get("total_closed");
        self.rejected = get("rejected");
    }
}

/// RSS figures over the samples.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct RssSummary {
    /// The first sample at or after 1/6 of the duration.
    pub warmup_kb: Option<u64>,
    pub warmup_t_s: Option<f64>,
    pub max_kb: Option<u64>,
    /// The last sample taken under load.
    pub last_kb: Option<u64>,
    pub last_t_s: Option<f64>,
    /// `(last − warm-up) / warm-up`, in percent.
    pub growth_pct: Option<f64>,
    /// After every client closed and `active_sessions` was back to 0.
    pub end_kb: Option<u64>,
}

/// Summarizes the RSS of `samples` (taken under load) and `end` (after).
pub fn rss_summary(samples: &[Sample], warmup: Duration, end: Option<u64>) -> RssSummary {
    let with_rss = || samples.iter().filter_map(|s| Some((s.t_s, s.rss_kb?)));
    let warm = with_rss().find(|(t, _)| *t >= warmup.as_secs_f64() - 1e-9);
    let last = with_rss().next_back();
    let growth = match (warm, last) {
        (Some((_, w)), Some((_, l))) if w > 0 => {
            Some(((l as f64 - w as f64) / w as f64 * 1000.0).round() / 10.0)
        }
        _ => None,
    };
    RssSummary {
        warmup_kb: warm.map(|w| w.1),
        warmup_t_s: warm.map(|w| w.0),
        max_kb: with_rss().map(|s| s.1).chain(end).max(),
        last_kb: last.map(|l| l.1),
        last_t_s: last.map(|l| l.0),
        growth_pct: growth,
        end_kb: end,
    }
}

/// What the operator poller saw.
#[derive(Debug, Clone, Default)]
pub struct OperatorStats {
    /// Per path: responses by status, and failures as `error_<kind>`.
    pub results: BTreeMap<&'static str, BTreeMap<String, u64>>,
    /// Slowest answer per path, ms.
    pub max_ms: BTreeMap<&'static str, f64>,
    pub samples: Vec<Sample>,
    pub first_error: Option<String>,
}

impl OperatorStats {
    /// Requests that failed or did not answer 200.
    pub fn failures(&self) -> u64 {
        self.results
            .values()
            .flat_map(|m| m.iter())
            .filter(|(k, _)| k.as_str() != "200")
            .map(|(_, n)| n)
            .sum()
    }
}

/// `GET /v1/health` and its `active_sessions`.
fn active_sessions(client: &mut HttpClient, req: &[u8]) -> Result<u64, String> {
    let info = client.send(req, false).map_err(|e| e.to_string())?;
    if info.status != 200 {
        return Err(format!("/v1/health answered {}", info.status));
    }
    let v: serde_json::Value =
        serde_json::from_slice(client.body()).map_err(|e| format!("health body: {e}"))?;
    v.get("active_sessions")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| "no active_sessions in /v1/health".to_string())
}

/// Takes a sample: RSS (with a pid) and `/v1/sessions/metrics`.
fn sample(opts: &SoakOptions, client: &mut HttpClient, t0: Instant, live: &LiveCounts) -> Sample {
    let mut s = Sample {
        t_s: round(t0.elapsed().as_secs_f64(), 3),
        rss_kb: opts.server_pid.and_then(|p| sys::vm_rss_kb(p).ok()),
        opened: live.opened.load(Ordering::Relaxed),
        ended: live.ended.load(Ordering::Relaxed),
        ..Sample::default()
    };
    let req = build_request(
        "GET",
        &opts.target,
        "/v1/sessions/metrics",
        &opts.operator_headers,
        None,
    );
    if let Ok(info) = client.send(&req, false) {
        if info.status == 200 {
            s.read_metrics(client.body());
        }
    }
    s
}

/// The operator poller: the three endpoints every [`POLL_EVERY`], a
/// [`Sample`] every [`SAMPLE_EVERY`], until `stop`.
fn poller(opts: &SoakOptions, t0: Instant, live: &LiveCounts, stop: &AtomicBool) -> OperatorStats {
    let mut st = OperatorStats::default();
    let mut client = HttpClient::new(opts.target.clone(), opts.timeout);
    let reqs: Vec<(&'static str, Vec<u8>)> = OPERATOR_PATHS
        .iter()
        .map(|p| {
            (
                *p,
                build_request("GET", &opts.target, p, &opts.operator_headers, None),
            )
        })
        .collect();
    let mut tick = 0u32;
    let mut next_sample = t0;
    while !stop.load(Ordering::Relaxed) {
        let due = t0 + POLL_EVERY * tick;
        tick += 1;
        while Instant::now() < due {
            if stop.load(Ordering::Relaxed) {
                return st;
            }
            thread::sleep((due - Instant::now()).min(Duration::from_millis(50)));
        }
        for (path, req) in &reqs {
            let sent = Instant::now();
            let key = match client.send(req, false) {
                Ok(info) => info.status.to_string(),
                Err(e) => {
                    st.first_error
                        .get_or_insert_with(|| format!("GET {path}: {e}"));
                    format!("error_{}", e.kind.as_str())
                }
            };
            let ms = sent.elapsed().as_secs_f64() * 1000.0;
            let max = st.max_ms.entry(path).or_insert(0.0);
            *max = max.max(ms);
            *st.results.entry(path).or_default().entry(key).or_insert(0) += 1;
        }
        if Instant::now() >= next_sample {
            next_sample += SAMPLE_EVERY;
            let s = sample(opts, &mut client, t0, live);
            if opts.progress {
                let opt = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
                eprintln!(
                    "[soak {:>6.0}s] streams opened {} ended {}; server active_sessions {} \
                     created {} closed {}; rss {} kB",
                    s.t_s,
                    s.opened,
                    s.ended,
                    opt(s.active_sessions),
                    opt(s.total_created),
                    opt(s.total_closed),
                    opt(s.rss_kb)
                );
            }
            st.samples.push(s);
        }
    }
    st
}

/// Runs the soak.
pub fn run(opts: &SoakOptions) -> Result<SoakReport> {
    opts.validate()?;
    let book = (opts.delete_fraction > 0.0).then(|| Arc::new(DeleteBook::new()));
    let stream_opts = opts.stream_options(book.clone());
    stream_opts.validate()?;
    match sys::raise_nofile_limit() {
        Ok(n) if (opts.streams + opts.batch_connections) as u64 + 64 > n => bail!(
            "{} streams need more file descriptors than RLIMIT_NOFILE allows ({n})",
            opts.streams
        ),
        Ok(_) => {}
        Err(e) => eprintln!("warning: {e:#}"),
    }
    let live = Arc::new(LiveCounts::default());
    let stop = AtomicBool::new(false);
    let t0 = Instant::now();
    let mut schedule = Continuous::new(opts, t0, Arc::clone(&live));
    let batch_cfg = RunConfig {
        connections: opts.batch_connections.max(1),
        duration: opts.duration,
        warmup: Duration::ZERO,
        requests: None,
        rate: None,
        progress: false,
    };
    let closed_at: Mutex<Option<Instant>> = Mutex::new(None);
    let note_close = || {
        if let Ok(mut c) = closed_at.lock() {
            let now = Instant::now();
            *c = Some(c.map_or(now, |c| c.max(now)));
        }
    };
    let (stream, batch, operator) = thread::scope(|s| -> Result<_> {
        let poller = thread::Builder::new()
            .name("soak-operator".into())
            .spawn_scoped(s, || poller(opts, t0, &live, &stop))?;
        let deleter = match &book {
            Some(book) => Some(
                thread::Builder::new()
                    .name("soak-deleter".into())
                    .spawn_scoped(s, || {
                        deletes::run_deleter(
                            &opts.target,
                            &opts.operator_headers,
                            opts.timeout,
                            book,
                            &stop,
                        );
                    })?,
            ),
            None => None,
        };
        let batch = if opts.batch_connections > 0 {
            let h = thread::Builder::new()
                .name("soak-batch".into())
                .spawn_scoped(s, || {
                    let r = runner::run(&opts.batch, &batch_cfg);
                    note_close();
                    r
                })?;
            Some(h)
        } else {
            None
        };
        let stream = mux::run_with(&stream_opts, &mut schedule, true);
        note_close();
        // Every session is over now (the connector stops counting ends
        // once it stops opening sessions).
        live.ended
            .store(live.opened.load(Ordering::Relaxed), Ordering::Relaxed);
        let batch = match batch.map(|h| h.join()) {
            None => None,
            Some(Ok(r)) => Some(r),
            Some(Err(_)) => {
                stop.store(true, Ordering::Relaxed);
                bail!("the batch clients panicked")
            }
        };
        stop.store(true, Ordering::Relaxed);
        let operator = poller
            .join()
            .map_err(|_| anyhow::anyhow!("the operator poller panicked"))?;
        if let Some(h) = deleter {
            h.join()
                .map_err(|_| anyhow::anyhow!("the operator deleter panicked"))?;
        }
        Ok((stream, batch, operator))
    })?;
    let stream = stream?;
    let batch = batch.transpose()?;
    let closed = closed_at
        .lock()
        .ok()
        .and_then(|c| *c)
        .unwrap_or_else(Instant::now);
    let wall = closed.saturating_duration_since(t0);

    // Wait for the server to count every session out.
    let mut client = HttpClient::new(opts.target.clone(), opts.timeout);
    let health = build_request("GET", &opts.target, "/v1/health", &opts.headers, None);
    let mut active_end = None;
    let mut zero_after = None;
    loop {
        match active_sessions(&mut client, &health) {
            Ok(n) => {
                active_end = Some(n);
                if n == 0 {
                    zero_after = Some(closed.elapsed());
                    break;
                }
            }
            Err(e) => eprintln!("warning: health check: {e}"),
        }
        if closed.elapsed() >= DRAIN_LIMIT {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    // The totals lag the live gauge by up to one publish interval.
    let settle_start = Instant::now();
    let mut end_sample = sample(opts, &mut client, t0, &live);
    while !end_sample.balanced() && settle_start.elapsed() < SETTLE_LIMIT {
        thread::sleep(Duration::from_millis(100));
        end_sample = sample(opts, &mut client, t0, &live);
    }
    let rss = rss_summary(&operator.samples, opts.duration / 6, end_sample.rss_kb);
    Ok(SoakReport {
        duration: opts.duration,
        streams: opts.streams,
        batch_connections: opts.batch_connections,
        disconnect_rate: opts.disconnect_rate,
        min_length: opts.min_length,
        max_length: opts.max_length,
        seed: opts.seed,
        opened: schedule.opened() as u64,
        stream,
        batch,
        operator,
        rss,
        end_sample,
        delete_fraction: opts.delete_fraction,
        deletes: book.map(|b| b.summary()).unwrap_or_default(),
        active_sessions_end: active_end,
        active_zero_after: zero_after,
        wall,
    })
}

#[cfg(test)]
mod tests {
    use super::deletes::DeleteSummary;
    use super::*;
    use crate::scenarios::stream::StreamStats;
    use crate::scenarios::HttpOptions;

    fn opts(streams: usize, duration_s: u64, rate: f64) -> SoakOptions {
        let target = Target::parse("http://127.0.0.1:9").unwrap();
        let http = HttpOptions::new(target.clone(), Duration::from_secs(1), None);
        SoakOptions {
            target,
            headers: Vec::new(),
            operator_headers: Vec::new(),
            timeout: Duration::from_secs(1),
            audio: Arc::new(Pcm16 {
                sample_rate: 16000,
                data: vec![0; 32000],
            }),
            batch: HttpScenario::new("transcribe", &http, b"POST / HTTP/1.1\r\n\r\n".to_vec()),
            duration: Duration::from_secs(duration_s),
            streams,
            batch_connections: 2,
            server_pid: None,
            disconnect_rate: rate,
            delete_fraction: 0.0,
            min_length: Duration::from_secs(5),
            max_length: Duration::from_secs(30),
            ramp: Duration::from_secs(5),
            threads: 2,
            seed: 42,
            progress: false,
        }
    }

    #[test]
    fn validates() {
        assert!(opts(10, 60, 0.05).validate().is_ok());
        assert!(opts(0, 60, 0.05).validate().is_err());
        assert!(opts(10, 1, 0.05).validate().is_err());
        assert!(opts(10, 60, 1.5).validate().is_err());
        let mut o = opts(10, 60, 0.0);
        o.min_length = Duration::from_secs(40);
        assert!(o.validate().is_err());
        o.min_length = Duration::from_secs(5);
        o.batch_connections = MAX_BATCH + 1;
        assert!(o.validate().is_err());
        let mut o = opts(10, 60, 0.05);
        o.delete_fraction = 1.0;
        assert!(o.validate().is_ok());
        o.delete_fraction = -0.1;
        assert!(o.validate().is_err());
        o.delete_fraction = 1.1;
        assert!(o.validate().is_err());
    }

    #[test]
    fn schedule_ramps_then_replaces_ended_sessions() {
        let o = opts(4, 60, 0.0);
        let t = Instant::now();
        let live = Arc::new(LiveCounts::default());
        let mut sch = Continuous::new(&o, t, Arc::clone(&live));
        // Slots at 0, 1.25, 2.5, 3.75 s.
        let (i, planned, plan) = sch.pop_due(t).unwrap();
        assert_eq!((i, planned), (0, t));
        let len = plan.length.unwrap();
        assert!(len >= o.min_length && len <= o.max_length, "{len:?}");
        assert_eq!(plan.abort_after, None);
        assert!(sch.pop_due(t).is_none());
        assert_eq!(sch.next_at(), Some(t + Duration::from_millis(1250)));
        let later = t + Duration::from_secs(4);
        let got: Vec<usize> = std::iter::from_fn(|| sch.pop_due(later).map(|x| x.0)).collect();
        assert_eq!(got, vec![1, 2, 3]);
        assert_eq!(
            sch.next_at(),
            None,
            "all running: nothing due until one ends"
        );
        // An end is replaced at once; a failed connect after 1 s.
        sch.on_end(later, false);
        sch.on_end(later, true);
        assert_eq!(sch.pop_due(later).map(|x| x.0), Some(4));
        assert!(sch.pop_due(later).is_none());
        assert_eq!(sch.next_at(), Some(later + RETRY_AFTER_FAILURE));
        assert_eq!(
            sch.pop_due(later + RETRY_AFTER_FAILURE).map(|x| x.0),
            Some(5)
        );
        assert_eq!(live.opened.load(Ordering::Relaxed), 6);
        assert_eq!(live.ended.load(Ordering::Relaxed), 2);
        // Near the end: lengths are clipped to the time left, and nothing
        // starts in the last second.
        let near = t + Duration::from_secs(57);
        sch.on_end(near, false);
        let (_, _, plan) = sch.pop_due(near).unwrap();
        assert!(plan.length.unwrap() <= Duration::from_secs(3));
        let last = t + Duration::from_millis(59_500);
        sch.on_end(last, false);
        assert!(sch.pop_due(last).is_none());
        assert!(sch.finished(last));
    }

    #[test]
    fn some_sessions_are_aborted_mid_stream() {
        let o = opts(1, 3600, 0.25);
        let t = Instant::now();
        let mut sch = Continuous::new(&o, t, Arc::new(LiveCounts::default()));
        let (mut aborted, mut rst, n) = (0, 0, 4000);
        for _ in 0..n {
            let plan = sch.plan(t);
            let len = plan.length.unwrap();
            if let Some((at, r)) = plan.abort_after {
                aborted += 1;
                rst += usize::from(r);
                assert!(at >= len.mul_f64(0.2) && at <= len.mul_f64(0.8));
            }
        }
        assert!((800..1200).contains(&aborted), "{aborted}");
        assert!(
            rst > aborted / 3 && rst < aborted * 2 / 3,
            "{rst} of {aborted}"
        );
        let mut none = Continuous::new(&opts(1, 60, 0.0), t, Arc::new(LiveCounts::default()));
        assert!((0..100).all(|_| none.plan(t).abort_after.is_none()));
        assert!((0..100).all(|_| none.plan(t).delete_after.is_none()));
    }

    #[test]
    fn some_other_sessions_are_deleted_mid_stream() {
        let mut o = opts(1, 3600, 0.25);
        o.delete_fraction = 0.2;
        let t = Instant::now();
        let mut sch = Continuous::new(&o, t, Arc::new(LiveCounts::default()));
        let (mut aborted, mut deleted, n) = (0, 0, 4000);
        for _ in 0..n {
            let plan = sch.plan(t);
            let len = plan.length.unwrap();
            assert!(
                plan.abort_after.is_none() || plan.delete_after.is_none(),
                "never both: {plan:?}"
            );
            aborted += usize::from(plan.abort_after.is_some());
            if let Some(at) = plan.delete_after {
                deleted += 1;
                assert!(at >= len.mul_f64(0.2) && at <= len.mul_f64(0.8));
            }
        }
        // 25% aborted; 20% of the other 75% deleted.
        assert!((800..1200).contains(&aborted), "{aborted}");
        assert!((450..750).contains(&deleted), "{deleted}");
        // A zero fraction draws nothing more: the same plans as before.
        let mut a = Continuous::new(&opts(1, 3600, 0.25), t, Arc::new(LiveCounts::default()));
        let mut o = opts(1, 3600, 0.25);
        o.delete_fraction = 0.0;
        let mut b = Continuous::new(&o, t, Arc::new(LiveCounts::default()));
        for _ in 0..100 {
            assert_eq!(a.plan(t), b.plan(t));
        }
    }

    #[test]
    fn the_total_is_bounded() {
        let o = opts(2, 10, 0.0);
        let t = Instant::now();
        let mut sch = Continuous::new(&o, t, Arc::new(LiveCounts::default()));
        let now = t + Duration::from_secs(6);
        let mut n = 0;
        while sch.pop_due(now).is_some() {
            n += 1;
            sch.on_end(now, false);
            assert!(n < 1000, "unbounded");
        }
        // 2 streams × (10 s / 5 s + 2) × 2.
        assert_eq!(n, 16);
        assert!(sch.finished(now));
    }

    #[test]
    fn rss_summary_uses_the_first_sample_after_warm_up() {
        let s = |t: f64, kb: Option<u64>| Sample {
            t_s: t,
            rss_kb: kb,
            ..Sample::default()
        };
        let samples = [
            s(0.0, Some(9000)),
            s(10.0, Some(20000)),
            s(20.0, None),
            s(30.0, Some(26000)),
            s(60.0, Some(22000)),
        ];
        let r = rss_summary(&samples, Duration::from_secs(10), Some(15000));
        assert_eq!(r.warmup_kb, Some(20000));
        assert_eq!(r.warmup_t_s, Some(10.0));
        assert_eq!(r.max_kb, Some(26000));
        assert_eq!(r.last_kb, Some(22000));
        assert_eq!(r.growth_pct, Some(10.0));
        assert_eq!(r.end_kb, Some(15000));
        let none = rss_summary(&[s(0.0, None)], Duration::from_secs(10), None);
        assert_eq!(none, RssSummary::default());
    }

    #[test]
    fn reads_session_metrics() {
        let mut s = Sample::default();
        s.read_metrics(
            br#"{"active_sessions":3,"by_state":{"created":0,"active":3,"closing":0},"total_created":10,"total_closed":7,"rejected":0}"#,
        );
        assert_eq!(s.active_sessions, Some(3));
        assert_eq!(s.total_created, Some(10));
        assert_eq!(s.total_closed, Some(7));
        assert_eq!(s.rejected, Some(0));
        assert!(!s.balanced());
        s.total_closed = Some(10);
        assert!(s.balanced());
        let mut bad = Sample::default();
        bad.read_metrics(b"not json");
        assert_eq!(bad, Sample::default());
    }

    #[test]
    fn leaked_sessions_are_created_minus_closed() {
        let s = |created, closed| Sample {
            total_created: created,
            total_closed: closed,
            ..Sample::default()
        };
        assert_eq!(s(Some(10), Some(10)).leaked(), Some(0));
        assert_eq!(s(Some(10), Some(7)).leaked(), Some(3));
        // Totals published at different moments: never negative.
        assert_eq!(s(Some(7), Some(10)).leaked(), Some(0));
        assert_eq!(s(None, Some(10)).leaked(), None);
        assert_eq!(s(Some(10), None).leaked(), None);
    }

    #[test]
    fn report_json_and_human() {
        let mut st = StreamStats::new();
        st.completed = 5;
        st.aborted = 1;
        let r = SoakReport {
            duration: Duration::from_secs(60),
            streams: 2,
            batch_connections: 0,
            disconnect_rate: 0.05,
            min_length: Duration::from_secs(5),
            max_length: Duration::from_secs(30),
            seed: 1,
            opened: 6,
            stream: st,
            batch: None,
            operator: OperatorStats::default(),
            rss: RssSummary::default(),
            end_sample: Sample::default(),
            delete_fraction: 0.0,
            deletes: DeleteSummary::default(),
            active_sessions_end: Some(0),
            active_zero_after: Some(Duration::from_millis(120)),
            wall: Duration::from_secs(61),
        };
        let line = r.json_line();
        assert!(line.starts_with(r#"{"scenario":"soak","duration_s":60.0,"streams":2,"#));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["streams_completed"], 5);
        assert_eq!(v["abrupt_disconnects"], 1);
        assert_eq!(v["lost_finals"], 0);
        assert_eq!(v["active_sessions_end"], 0);
        assert_eq!(v["active_sessions_zero_after_s"], 0.12);
        assert!(v["batch_latency_ms"].is_null());
        let mut human = Vec::new();
        r.write_human(&mut human).unwrap();
        let human = String::from_utf8(human).unwrap();
        assert!(human.lines().all(|l| !l.starts_with('{')));
        assert!(human.contains("6 started: 5 completed, 0 failed, 1 abrupt disconnects"));
        assert!(human.contains("deletes     none"), "{human}");
    }

    #[test]
    fn report_counts_deletes_and_terminated_sessions() {
        let mut st = StreamStats::new();
        st.completed = 90;
        st.terminated = 4;
        st.terminated_with_violations = 1;
        st.completed_with_violations = 2;
        st.terminated_finals = 7;
        st.terminated_cut_segments = 3;
        st.aborted = 5;
        st.failed = 1;
        let mut other = BTreeMap::new();
        other.insert("500".to_string(), 1);
        let deletes = DeleteSummary {
            planned: 8,
            sent: 7,
            ok: 5,
            not_found: 1,
            other,
            observed: 4,
            unobserved: 1,
            raced_end: 0,
            terminated_after_404: 0,
            skipped_near_end: 1,
            not_reached: 0,
            max_ms: 1.5,
            first_failure: Some("DELETE x answered 500".into()),
        };
        let r = SoakReport {
            duration: Duration::from_secs(120),
            streams: 50,
            batch_connections: 2,
            disconnect_rate: 0.05,
            min_length: Duration::from_secs(5),
            max_length: Duration::from_secs(30),
            seed: 7,
            opened: 100,
            stream: st,
            batch: None,
            operator: OperatorStats::default(),
            rss: RssSummary::default(),
            end_sample: Sample {
                total_created: Some(100),
                total_closed: Some(99),
                ..Sample::default()
            },
            delete_fraction: 0.03,
            deletes,
            active_sessions_end: Some(0),
            active_zero_after: Some(Duration::from_millis(50)),
            wall: Duration::from_secs(121),
        };
        let v: serde_json::Value = serde_json::from_str(&r.json_line()).unwrap();
        assert_eq!(v["delete_fraction"], 0.03);
        assert_eq!(v["streams_completed"], 90);
        assert_eq!(v["streams_terminated"], 4);
        // Lost finals count completed and terminated sessions.
        assert_eq!(v["lost_finals"], 3);
        assert_eq!(v["lost_finals_terminated"], 1);
        assert_eq!(v["terminated_finals"], 7);
        assert_eq!(v["terminated_cut_segments"], 3);
        assert_eq!(v["deletes_sent"], 7);
        assert_eq!(v["deletes_200"], 5);
        assert_eq!(v["deletes_404"], 1);
        assert_eq!(v["deletes_other"]["500"], 1);
        assert_eq!(v["deletes_observed"], 4);
        assert_eq!(v["deletes_unobserved"], 1);
        assert_eq!(v["deletes_failures"], 2);
        assert_eq!(v["deletes_skipped_near_end"], 1);
        assert_eq!(v["deletes_max_ms"], 1.5);
        assert_eq!(v["deletes_first_failure"], "DELETE x answered 500");
        assert_eq!(v["leaked_sessions"], 1);
        assert_eq!(v["server_totals_balanced"], false);
        let mut human = Vec::new();
        r.write_human(&mut human).unwrap();
        let human = String::from_utf8(human).unwrap();
        assert!(human.lines().all(|l| !l.starts_with('{')));
        for want in [
            "100 started: 90 completed, 1 failed, 5 abrupt disconnects, 4 terminated by DELETE",
            "lost finals 3  (",
            "1 of them terminated",
            "deletes     7 sent: 5×200, 1×404, other 1×500 (max 1.5 ms);  8 planned, 1 skipped",
            "4 sessions saw session_end terminated + close 1000 (4 matched to a 200)",
            "7 finals before the DELETE, 3 open segments cut",
            "delete err  2 FAILED: 1 answered 200 without the client seeing terminated",
            "delete fail DELETE x answered 500",
            "leaked sessions 1",
        ] {
            assert!(human.contains(want), "`{want}` not in\n{human}");
        }
    }
}
