//! HTTP/1.1 on owned buffers.
//!
//! The [`conn`] loop owns a connection's socket and its read buffer: it reads,
//! lets [`head`] parse the request head (`httparse` into a fixed header array),
//! reads the body ([`body`]: `Content-Length` or chunked) within the limits,
//! hands a complete [`Request`] to the router in [`crate::api`], and writes the
//! [`response::Response`] back, in order, for keep-alive and pipelined
//! requests alike. [`multipart`] parses `multipart/form-data` bodies; [`cors`] answers
//! preflights and grants browser origins. Nothing
//! above this module sees socket bytes.

pub mod body;
pub mod conn;
pub mod cors;
pub mod head;
pub mod multipart;
pub mod query;
pub mod response;

use std::net::SocketAddr;
use std::time::Instant;

pub use head::{Method, RequestHead};
pub use response::Response;

/// A complete request: head, body and where it came from.
#[derive(Debug)]
pub struct Request {
    pub head: RequestHead,
    pub body: Vec<u8>,
    pub peer: SocketAddr,
    /// When the head was complete; latencies are measured from here.
    pub received_at: Instant,
}
