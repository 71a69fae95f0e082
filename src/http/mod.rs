//! HTTP/1.1 on owned buffers.
//!
//! The [`conn`] loop owns a connection's socket and its read buffer: it reads,
//! lets [`head`] parse the request head (`httparse` into a fixed header array),
//! reads the body ([`body`]: `Content-Length` or chunked) within the limits,
//! hands a complete [`Request`] to the [`service::Service`] above it (the
//! router in `api/`), and writes the [`response::Response`] back, in order,
//! for keep-alive and pipelined requests alike. [`upgrade`] checks a
//! WebSocket handshake and writes its `101`; the loop then hands the
//! connection back to its caller. [`multipart`] parses `multipart/form-data` bodies; [`cors`] answers
//! preflights and grants browser origins. Nothing
//! above this module sees socket bytes.

pub mod body;
pub mod conn;
pub(crate) mod cors;
pub mod head;
pub mod memory;
pub mod multipart;
pub mod proxy;
pub(crate) mod query;
pub(crate) mod response;
pub mod service;
pub(crate) mod upgrade;

use std::net::SocketAddr;
use std::time::Instant;

pub use head::{Method, RequestHead};
pub use response::Response;
pub use service::Service;

/// A complete request: head, body and where it came from.
#[derive(Debug)]
pub struct Request {
    pub head: RequestHead,
    pub body: Vec<u8>,
    pub peer: SocketAddr,
    /// When the head was complete; latencies are measured from here.
    pub received_at: Instant,
}
