//! The engine tier: engine nodes that run the model, fed by the front ends
//! through Redis Streams with a consumer group (docs/DEPLOY.md, "Engine
//! tier").
//!
//! ```text
//! front end core ─Job─► ModelPool worker (RemoteWorker) ─XADD─► jobs:{final|batch|interim}
//!                                                                   │ XREADGROUP / XAUTOCLAIM
//!                                                                   ▼
//! front end core ◄─oneshot─ RemoteWorker ◄─ reply reader ◄─XREAD─ reply:{front end} ◄─XADD─ engine node
//! ```
//!
//! - [`remote`]: the front end's side, a [`crate::model::SpeechModel`]
//!   whose workers submit each job to its stream and wait for the reply, so
//!   the pool, the sessions, the interim policy and finals-in-order are the
//!   ones a local engine has.
//! - [`node`]: the engine node process (`transcription-server engine`).
//! - `wire`: the job and reply encodings; `streams`: parsing Redis stream
//!   replies; [`settings`]: the flags.
//!
//! Delivery is at least once (a job pending on a dead node is claimed by
//! another after `--engine-claim-idle-ms`); the front end hands each job's
//! first reply to its waiter and drops any later one, so the client sees
//! every final exactly once.

pub mod node;
pub mod remote;
pub mod settings;
mod streams;
mod wire;

use crate::model::pool::JobKind;

/// The consumer group every engine node joins on every job stream.
pub const GROUP: &str = "engines";

/// The engine tier's Redis key names, under the cluster's prefix.
#[derive(Debug, Clone)]
pub struct EngineKeys {
    prefix: String,
}

impl EngineKeys {
    pub fn new(prefix: &str) -> EngineKeys {
        EngineKeys {
            prefix: prefix.to_string(),
        }
    }

    /// The stream of jobs of `kind`.
    pub fn jobs(&self, kind: JobKind) -> String {
        let kind = match kind {
            JobKind::Final => "final",
            JobKind::Batch => "batch",
            JobKind::Interim => "interim",
        };
        format!("{}engine:jobs:{kind}", self.prefix)
    }

    /// The job streams in the order engine nodes take from them.
    pub fn jobs_by_priority(&self) -> [String; 3] {
        [
            self.jobs(JobKind::Final),
            self.jobs(JobKind::Batch),
            self.jobs(JobKind::Interim),
        ]
    }

    /// The reply stream of one front end.
    pub fn replies(&self, node_id: &str) -> String {
        format!("{}engine:reply:{node_id}", self.prefix)
    }

    /// Sorted set of live engine node ids, scored by their last heartbeat
    /// (Unix ms of the Redis clock).
    pub fn engines(&self) -> String {
        format!("{}engines", self.prefix)
    }

    /// Marker that an interim's session has moved on: the engine drops it.
    pub fn superseded(&self, job_id: &str) -> String {
        format!("{}engine:superseded:{job_id}", self.prefix)
    }
}

/// Milliseconds since the Unix epoch on this machine's clock.
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}
