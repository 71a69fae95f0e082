//! The engine tier's settings: where the engine runs, and the timings of
//! the job streams (claiming, waiting, re-submitting, trimming). The
//! flags are validated into them in `config/validate.rs`.

use std::time::Duration;

/// Where the speech engine runs (`--engine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineMode {
    /// Model workers in this process.
    Local,
    /// Engine nodes reached through Redis Streams (`transcription-server engine`).
    Remote,
}

/// The front end's model workers in remote mode when `--model-workers` is
/// not given: each holds one job outstanding on the streams while it waits
/// for the reply, so this bounds the jobs one front end has in the engine
/// tier (enough for 16 engine nodes of 2 workers each with room to queue).
pub const REMOTE_WORKERS_DEFAULT: usize = 64;

/// The validated engine-tier settings.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineTierSettings {
    pub mode: EngineMode,
    /// Engine nodes claim a job pending this long on another consumer.
    pub claim_idle: Duration,
    /// A final or batch job waits this long for a reply, then `overloaded`.
    pub final_wait: Duration,
    /// How often a waiting job is checked for, and re-submitted if lost.
    pub resubmit_after: Duration,
    /// An interim not started within this is dropped by the engine unrun.
    pub interim_deadline: Duration,
    /// `XADD … MAXLEN ~` of every job stream.
    pub stream_maxlen: u64,
}

impl EngineTierSettings {
    /// Whether the front end sends its jobs to engine nodes.
    pub fn is_remote(&self) -> bool {
        self.mode == EngineMode::Remote
    }
}
