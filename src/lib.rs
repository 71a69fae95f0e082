//! # transcription-service
//!
//! A thread-per-core voice-to-text server. The modules are listed from the
//! wiring at the top down to the runtime utilities at the bottom; imports
//! point down this list, never up (docs/ARCHITECTURE.md, "Module map"):
//!
//! - [`server`]: start-up and topology. It binds one `SO_REUSEPORT` listener
//!   per core, pins a `monoio` runtime to each core, starts the model-worker
//!   pool, the metrics aggregator and the cluster agent, runs each core's
//!   accept loop and background tasks, and runs the shutdown sequence. It is
//!   the one place that hands a connection to HTTP and an upgrade to the
//!   streaming connection.
//! - `api`: the HTTP handlers and the router: health, readiness, batch
//!   transcription and its OpenAI-compatible form, the operator endpoints.
//! - [`http`]: HTTP/1.1 on owned buffers: head parsing (`httparse`), bodies
//!   (`Content-Length` and chunked), multipart forms, responses, and the
//!   connection loop, generic over its transport and its service.
//! - [`ws`]: streaming over WebSocket: the connection task (admission, reader
//!   and writer, model jobs, slow consumers), tungstenite over owned buffers,
//!   and the native JSON protocol, a codec over the session's events.
//! - [`session`]: the streaming session core: a sans-I/O state machine that
//!   takes audio, controls and model results and emits protocol-neutral
//!   events; it knows no wire format.
//! - `core`: one core's state (its shard of sessions, inbox, drain latch,
//!   local metrics), what every thread shares, and the operations that span
//!   cores. It imports no handler and no connection type.
//! - [`audio`]: decoding, resampling, WebRTC VAD and the segmenter.
//! - [`model`]: the speech-engine trait, the deterministic mock engine and the
//!   bounded worker pool that runs it.
//! - `metrics`: per-core counters and histograms, and the aggregator thread
//!   that merges them.
//! - [`cluster`]: cluster mode on Redis (off unless `redis_url` is set): the
//!   agent thread, the registry, cluster-wide admission leases and remote
//!   deletes.
//! - [`engine`]: the engine tier on Redis Streams: the engine node
//!   (`transcription-server engine`) and the remote [`model::SpeechModel`]
//!   a front end runs with `--engine remote`.
//! - [`config`] and `limits`: every setting and every bound, validated once
//!   at start-up; [`error`]: the one mapping from error kinds to HTTP status
//!   codes and close codes; [`subtitles`]: SRT and WebVTT (the server's and
//!   the command-line client's).
//! - `rt`: the latch, the one-waiter notify, the panic boundary and the stall
//!   watch; it imports nothing from the crate.
//!
//! Modules without a link are crate-private: benches, fuzz targets and
//! tests reach only what they need.

pub mod server;

pub(crate) mod api;

pub mod http;

pub mod ws;

pub(crate) mod core;

pub mod session;

pub mod audio;

pub mod model;

pub(crate) mod metrics;

pub mod cluster;

pub mod engine;

pub mod config;
pub mod error;
pub(crate) mod limits;
pub mod subtitles;

pub(crate) mod rt;

/// The version reported by `/v1/health` and the `Server` header.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
