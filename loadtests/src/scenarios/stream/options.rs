//! What a `stream` run is told: the target, the audio, how many sessions
//! on which driver, and the pacing; checked before anything starts.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::dialect::Dialect;
use crate::scenarios::soak::deletes::DeleteBook;
use crate::streaming::ChunkMap;
use crate::target::Target;
use crate::wav::Pcm16;

/// The path exercised by the native dialect.
pub const PATH: &str = "/v1/transcribe/stream";

/// Largest number of concurrent sessions.
pub const MAX_SESSIONS: usize = 10_000;

/// Largest `--threads` of the `mux` driver.
pub const MAX_THREADS: usize = 64;

/// How the sessions are driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Driver {
    /// `--threads` worker threads multiplexing non-blocking sockets (mio).
    Mux,
    /// One OS thread per session, blocking sockets.
    Threads,
}

impl Driver {
    /// The name used on the command line and in the JSON line.
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Mux => "mux",
            Driver::Threads => "threads",
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Where (already checked to be loopback).
    pub target: Target,
    /// Extra upgrade request headers (e.g. `Authorization`).
    pub headers: Vec<(String, String)>,
    /// Bound on connecting, the handshake, each blocking write, and the wait
    /// for `session_end` and the close after `end`.
    pub timeout: Duration,
    /// The audio, PCM16 mono.
    pub audio: Arc<Pcm16>,
    /// Concurrent sessions.
    pub sessions: usize,
    /// Sessions start evenly spread over this time.
    pub ramp: Duration,
    /// Audio time (wall time with `pace == false`) each session streams for,
    /// rounded up to whole loops of the file.
    pub duration: Duration,
    /// Chunk length in milliseconds of audio.
    pub chunk_ms: u32,
    /// Send in real time (`false`: as fast as possible).
    pub pace: bool,
    /// `interim_results` query parameter.
    pub interim: bool,
    /// Extra query parameters (URL-encoded, without `?`).
    pub query: Option<String>,
    /// The wire dialect (path, query, end message, message reading).
    pub dialect: Dialect,
    /// How the sessions are driven.
    pub driver: Driver,
    /// Worker threads of the `mux` driver.
    pub threads: usize,
    /// The server's process id, to report its CPU time over the run.
    pub server_pid: Option<u32>,
    /// Operator DELETEs (`soak --delete-fraction`): sessions planned to be
    /// deleted enter their id here, and accept `session_end` `terminated`
    /// once their DELETE is out. `None` outside `soak`.
    pub deletes: Option<Arc<DeleteBook>>,
}

impl StreamOptions {
    /// Checks the settings are within sane bounds.
    pub fn validate(&self) -> Result<()> {
        if self.sessions == 0 || self.sessions > MAX_SESSIONS {
            bail!("--sessions must be between 1 and {MAX_SESSIONS}");
        }
        if self.duration.is_zero() || self.duration > Duration::from_secs(24 * 3600) {
            bail!("--duration must be more than 0 and at most 24h");
        }
        if self.ramp > Duration::from_secs(3600) {
            bail!("--ramp must be at most 1h");
        }
        if self.chunk_ms == 0 || self.chunk_ms > 10_000 {
            bail!("--chunk-ms must be between 1 and 10000");
        }
        if self.timeout.is_zero() {
            bail!("--timeout must be more than 0");
        }
        if self.threads == 0 || self.threads > MAX_THREADS {
            bail!("--threads must be between 1 and {MAX_THREADS}");
        }
        if self.dialect == Dialect::Openai && self.driver != Driver::Mux {
            bail!("--dialect openai runs on the mux driver");
        }
        if let Some(q) = &self.query {
            if q.contains([' ', '\r', '\n', '#']) {
                bail!("--query must be a URL-encoded query string");
            }
        }
        Ok(())
    }

    /// The request path with its query string.
    pub fn path_and_query(&self) -> String {
        let mut p = self
            .dialect
            .path_and_query(self.audio.sample_rate, self.interim);
        if let Some(q) = self
            .query
            .as_deref()
            .map(|q| q.trim_start_matches(['?', '&']))
        {
            if !q.is_empty() {
                p.push('&');
                p.push_str(q);
            }
        }
        p
    }

    /// How the file is cut into chunks.
    pub fn chunk_map(&self) -> ChunkMap {
        ChunkMap::new(self.audio.samples(), self.audio.sample_rate, self.chunk_ms)
    }
}
