//! # transcription-service
//!
//! A thread-per-core voice-to-text server. The modules are listed in the order
//! data flows through them:
//!
//! - [`config`] and [`limits`]: every setting and every bound, validated once at
//!   start-up.
//! - [`server`]: start-up and topology. It binds one `SO_REUSEPORT` listener per
//!   core, pins a `monoio` runtime to each core, starts the model-worker pool and
//!   the metrics aggregator, and runs the shutdown sequence.
//! - [`core`]: one core. Its accept loop, the connections it owns, its drain
//!   signal and its local metrics.
//! - [`http`]: HTTP/1.1 on owned buffers: head parsing (`httparse`), bodies
//!   (`Content-Length` and chunked), multipart forms, responses, and the
//!   connection loop that ties them together.
//! - [`api`]: the handlers: health, readiness, batch transcription and its
//!   OpenAI-compatible form, and the operator endpoints for sessions.
//! - [`ws`]: streaming over WebSocket: the upgrade, tungstenite over owned
//!   buffers, the per-session state machine and its driver.
//! - [`audio`]: decoding, resampling, WebRTC VAD and the segmenter.
//! - [`model`]: the speech-engine trait, the deterministic mock engine and the
//!   bounded worker pool that runs it.
//! - [`metrics`]: per-core counters and histograms, and the aggregator thread
//!   that merges them.
//! - [`cluster`]: cluster mode on Redis (off unless `redis_url` is set): the
//!   agent thread, the registry, cluster-wide admission leases and remote
//!   deletes.
//! - [`error`]: the one mapping from error kinds to HTTP status codes.

pub mod config;
pub mod limits;

pub mod server;

pub mod core;

pub mod http;

pub mod api;

pub mod ws;

pub mod audio;

pub mod model;

pub mod metrics;

pub mod cluster;

pub mod error;

/// The version reported by `/v1/health` and the `Server` header.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
