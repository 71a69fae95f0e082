//! The engine tier's settings: where the engine runs, and the timings of
//! the job streams (claiming, waiting, re-submitting, trimming).

use std::time::Duration;

use crate::config::{Config, EngineMode};

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
    /// From the flags.
    ///
    /// # Errors
    /// A message naming the flag that is out of range, or `--engine remote`
    /// without `--redis-url`.
    pub fn from_config(config: &Config) -> Result<EngineTierSettings, String> {
        if config.engine_mode == EngineMode::Remote && config.redis_url.is_none() {
            return Err("--engine remote needs --redis-url (the job streams live in Redis)".into());
        }
        let range = |flag: &str, value: u64, min: u64, max: u64| {
            if (min..=max).contains(&value) {
                Ok(Duration::from_millis(value))
            } else {
                Err(format!("{flag} must be in {min}..={max}, got {value}"))
            }
        };
        let settings = EngineTierSettings {
            mode: config.engine_mode,
            claim_idle: range(
                "--engine-claim-idle-ms",
                config.engine_claim_idle_ms,
                50,
                3_600_000,
            )?,
            final_wait: range(
                "--engine-final-wait-ms",
                config.engine_final_wait_ms,
                10,
                3_600_000,
            )?,
            resubmit_after: range(
                "--engine-resubmit-ms",
                config.engine_resubmit_ms,
                10,
                3_600_000,
            )?,
            interim_deadline: range(
                "--engine-interim-deadline-ms",
                config.engine_interim_deadline_ms,
                1,
                600_000,
            )?,
            stream_maxlen: config.engine_stream_maxlen,
        };
        if !(1_000..=100_000_000).contains(&settings.stream_maxlen) {
            return Err(format!(
                "--engine-stream-maxlen must be in 1000..=100000000, got {}",
                settings.stream_maxlen
            ));
        }
        Ok(settings)
    }

    /// Whether the front end sends its jobs to engine nodes.
    pub fn is_remote(&self) -> bool {
        self.mode == EngineMode::Remote
    }
}
