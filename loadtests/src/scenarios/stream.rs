//! `stream`: concurrent WebSocket streaming sessions
//! (`/v1/transcribe/stream`), each sending a WAV file's PCM in real time.
//!
//! Unlike the request/response scenarios this one does not use the
//! [`runner`](crate::runner): its unit of work is a whole session lasting
//! `duration`, so it has its own drivers. Session `i` of `N` starts at
//! `ramp·i/N`. Two drivers run the sessions ([`Driver`]):
//!
//! * `mux` (default, [`mux`]): `--threads` worker threads, each multiplexing
//!   its share of the sessions on non-blocking sockets with `mio`, timers in
//!   a heap; connector threads open the sessions on the ramp's schedule;
//! * `threads`: one OS thread per session (256 KiB stack), blocking
//!   tungstenite sockets with read timeouts (kept for comparison).
//!
//! Both share [`SessionCore`] (schedule, send times, checks, lags). Each
//! session:
//!
//! 1. opens the WebSocket (`sample_rate` from the WAV, `interim_results`,
//!    plus `--query`);
//! 2. sends the PCM in `chunk_ms` binary frames, chunk `k` due at
//!    `session start + stream time of chunk k` (an absolute schedule, so
//!    pacing never drifts), looping the file on whole-file boundaries until
//!    `duration` of audio has been sent (`--no-pace`: as fast as possible,
//!    until `duration` of wall time has passed);
//! 3. between sends, reads whatever the server sent (`threads`: a blocking
//!    read with a timeout up to the next due chunk, with `--no-pace` a
//!    non-blocking drain after each chunk; `mux`: on readiness);
//! 4. sends `{"type":"end"}` and reads until the server closes.
//!
//! For each transcript it records the **lag**: receive time minus the send
//! time of the chunk holding the audio at the transcript's `end` (see
//! [`ChunkMap::chunk_of_time`](crate::streaming::ChunkMap::chunk_of_time)),
//! in separate histograms for interim and final transcripts; and the time
//! from sending `end` to receiving `session_end`. An
//! [`OrderChecker`](crate::streaming::OrderChecker) counts protocol-order
//! violations per session.
//!
//! Files: [`options`] (what to run), [`session`] ([`SessionCore`]),
//! [`mux`] and [`threads`] (the two drivers), [`stats`] ([`StreamStats`],
//! what sessions measured) and [`report`] ([`StreamReport`], the human summary
//! and the JSON line).

pub mod openai;
mod options;
mod report;
mod session;
mod stats;
mod threads;

pub mod mux;

#[cfg(test)]
mod tests;

use std::time::Duration;

use anyhow::{bail, Result};

pub use self::options::{Driver, StreamOptions, MAX_SESSIONS, MAX_THREADS, PATH};
pub use self::report::{LagSummary, StreamReport};
pub(crate) use self::session::{Outgoing, SessionCore};
pub use self::stats::StreamStats;
use crate::sys;

/// Runs the scenario once and returns the merged report.
pub fn run(opts: &StreamOptions) -> Result<StreamReport> {
    opts.validate()?;
    match sys::raise_nofile_limit() {
        Ok(n) if opts.sessions as u64 + SPARE_FDS > n => bail!(
            "{} sessions need more file descriptors than RLIMIT_NOFILE allows ({n})",
            opts.sessions
        ),
        Ok(_) => {}
        Err(e) => eprintln!("warning: {e:#}"),
    }
    let cpu = |pid: Option<u32>| sys::cpu_seconds(pid).ok();
    let own_before = cpu(None);
    let server_before = opts.server_pid.and_then(|p| cpu(Some(p)));
    let progress = crate::runner::TimeProgress::start(
        &format!("{} stream sessions", opts.sessions),
        opts.ramp + opts.duration,
    );
    let stats = match opts.driver {
        Driver::Threads => threads::run(opts)?,
        Driver::Mux => mux::run(opts)?,
    };
    drop(progress);
    let delta = |before: Option<f64>, after: Option<f64>| match (before, after) {
        (Some(b), Some(a)) => Some((a - b).max(0.0)),
        _ => None,
    };
    let loadgen_cpu = delta(own_before, cpu(None));
    let server_cpu = delta(server_before, opts.server_pid.and_then(|p| cpu(Some(p))));
    let wall = match (stats.first_send, stats.last_end) {
        (Some(a), Some(b)) => b.saturating_duration_since(a),
        _ => Duration::ZERO,
    };
    Ok(StreamReport {
        sessions: opts.sessions,
        pace: opts.pace,
        chunk_ms: opts.chunk_ms,
        duration: opts.duration,
        ramp: opts.ramp,
        interim: opts.interim,
        dialect: opts.dialect,
        driver: opts.driver,
        threads: match opts.driver {
            Driver::Threads => opts.sessions,
            Driver::Mux => opts.threads.min(opts.sessions),
        },
        wall,
        loadgen_cpu,
        server_cpu,
        stats,
    })
}

/// Descriptors kept free beside one per session.
const SPARE_FDS: u64 = 64;
