//! Streaming transcription over WebSocket.
//!
//! The HTTP connection checks the handshake of a `GET /v1/transcribe/stream`
//! request (`http::upgrade`), answers `101` and hands the connection back
//! to `server/`, which passes it here with any bytes that arrived after the
//! head (they may already hold the first frame). From then on [`conn`]
//! drives the connection: admission (the node's permit, the cluster's
//! lease), the session's entry in its core's shard, and the reader and
//! writer tasks (`socket.rs`). The reader feeds socket bytes to `tungstenite`
//! over an in-memory stream ([`transport`]) and hands frames to the session
//! core (`crate::session`, seen here as [`session`]) through the route's
//! [`codec::Codec`] (so far [`native`]: text frames to controls, events to
//! JSON messages; [`protocol`] holds the messages). After every event
//! [`stream::pump`] submits the session's model jobs ([`jobs`]) and moves its
//! outputs to the writer. The session lives in its core's shard for its
//! whole life and is reachable by id from the operator endpoints. With
//! `resume_window_seconds` set, a native session whose connection drops
//! is kept for a while and continues on a new one ([`resume`]).

pub mod codec;
pub(crate) mod conn;
pub mod deepgram;
pub(crate) mod jobs;
pub mod native;
pub mod openai_realtime;
pub mod protocol;
pub(crate) mod resume;
pub mod session;
mod socket;
pub(crate) mod stream;
pub mod transport;
