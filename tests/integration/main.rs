//! Integration tests: each test starts the real `transcription-server` binary
//! on 127.0.0.1 port 0 and talks to it over real sockets.
//!
//! - `http_protocol`: framing, keep-alive, pipelining, every error status,
//!   timeouts, raw malformed input.
//! - `batch`: `POST /v1/transcribe` with every accepted audio form, segments,
//!   determinism, overload.
//! - `openai`: the OpenAI dialect's REST side: transcriptions in every
//!   response format and streamed (SSE), translations, models.
//! - `openai_realtime`: OpenAI's Realtime transcription over WebSocket.
//! - `faults` (with the `fault-injection` feature): panics cost one request
//!   or session, never the core.
//! - `observability`: the Prometheus exposition, parsed strictly.
//! - `hardening`: per-address and duration limits, CORS, write and handshake
//!   timeouts, shutdown in the middle of many streams.
//! - `streaming`: the WebSocket protocol, sessions, limits, operators.
//! - `resume`: sessions that survive a dropped connection, on the same or
//!   another core, and every refusal.
//! - `cluster`: several servers sharing a real `redis-server`: the
//!   cluster-wide limit, sessions listed, read and deleted from any node,
//!   dead nodes, Redis restarts.
//! - `lifecycle`: configuration refusals, port in use, health and readiness,
//!   the I/O driver, graceful shutdown.

mod support;

mod batch;
mod cluster;
mod deepgram;
#[cfg(feature = "fault-injection")]
mod faults;
mod hardening;
mod http_protocol;
mod lifecycle;
mod observability;
mod openai;
mod openai_realtime;
mod overload;
mod resume;
mod streaming;
