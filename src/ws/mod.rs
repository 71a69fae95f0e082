//! Streaming transcription over WebSocket.
//!
//! The HTTP connection checks the handshake of a `GET /v1/transcribe/stream`
//! request (`http::upgrade`), answers `101` and hands the connection back
//! to `server/`, which passes it here with any bytes that arrived after the
//! head (they may already hold the first frame). From then on [`conn`]
//! drives the connection: a reader task feeds socket bytes to
//! `tungstenite` over an in-memory stream ([`transport`]) and hands frames to
//! the [`session::Session`] state machine; a writer task sends what the
//! session produces. The session lives in its core's shard for its whole life
//! and is reachable by id from the operator endpoints. [`protocol`] holds the
//! message types; [`permit`] the global session limit.

pub mod conn;
pub mod jobs;
pub mod permit;
pub mod protocol;
pub mod session;
mod socket;
pub mod stream;
pub mod transport;
