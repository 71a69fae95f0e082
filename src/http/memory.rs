//! The real connection loop ([`super::conn::serve`]) over an in-memory
//! transport, with no server around it: [`serve_bytes`] feeds a client's
//! bytes to the loop in chunks of a chosen size and returns what the loop
//! wrote back. Unit tests drive it with pipelined requests, bodies and
//! malformed heads; a fuzz target can feed it arbitrary bytes.
//!
//! [`MemoryTransport`] reads its input (then reports end of file) and keeps
//! what is written to it. [`EchoService`] is the smallest service: `POST
//! /echo` answers its body, `GET /stream` is an upgrade, anything else 404.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::BufResult;

use super::{Method, Request, RequestHead, Response, Service};
use crate::config::{CorsOrigins, HttpSettings};
use crate::error::{ApiError, ErrorKind};
use crate::rt::Latch;

/// A transport whose reads come from a byte string, at most `chunk_bytes`
/// at a time, and whose writes are kept.
pub struct MemoryTransport {
    input: Vec<u8>,
    position: usize,
    chunk_bytes: usize,
    /// Everything written, in order.
    pub output: Vec<u8>,
}

impl MemoryTransport {
    /// A transport that delivers `input` in reads of at most `chunk_bytes`
    /// (at least 1), then end of file.
    pub fn new(input: &[u8], chunk_bytes: usize) -> Self {
        MemoryTransport {
            input: input.to_vec(),
            position: 0,
            chunk_bytes: chunk_bytes.max(1),
            output: Vec::new(),
        }
    }

    /// The bytes of the next read.
    fn next_chunk(&self) -> &[u8] {
        let end = (self.position + self.chunk_bytes).min(self.input.len());
        &self.input[self.position..end]
    }

    /// Move past what a read took.
    fn consumed<T>(&mut self, result: BufResult<usize, T>) -> BufResult<usize, T> {
        if let Ok(read) = result.0 {
            self.position += read;
        }
        result
    }
}

impl AsyncReadRent for MemoryTransport {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        // The byte slice's own reader copies into the owned buffer.
        let result = self.next_chunk().read(buf).await;
        self.consumed(result)
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        let result = self.next_chunk().readv(buf).await;
        self.consumed(result)
    }
}

impl AsyncWriteRent for MemoryTransport {
    fn write<T: IoBuf>(&mut self, buf: T) -> impl Future<Output = BufResult<usize, T>> {
        // SAFETY: `IoBuf` guarantees that `read_ptr` points at `bytes_init`
        // initialised bytes, valid while `buf` is alive and unmoved; the
        // slice is copied before `buf` is moved.
        let bytes = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
        self.output.extend_from_slice(bytes);
        let written = bytes.len();
        async move { (Ok(written), buf) }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // The connection loop writes one buffer at a time.
        let unsupported = std::io::Error::from(std::io::ErrorKind::Unsupported);
        (Err(unsupported), buf)
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The smallest [`Service`]: `POST /echo` answers `200` with the request's
/// body, `GET /stream` is a WebSocket upgrade, every other path is `404`.
/// No keys, no CORS; the limits are the server's defaults.
pub struct EchoService {
    settings: HttpSettings,
    drain: Latch,
}

impl Default for EchoService {
    fn default() -> Self {
        EchoService {
            settings: HttpSettings {
                body_bytes_max: 64 * 1024,
                head_bytes_max: 16 * 1024,
                read_timeout: Duration::from_secs(1),
                write_timeout: Duration::from_secs(1),
                keepalive_timeout: Duration::from_secs(1),
                cors: CorsOrigins::Off,
                trusted_proxies: Default::default(),
                api_key: None,
                admin_key: None,
            },
            drain: Latch::default(),
        }
    }
}

/// The routes of [`EchoService`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EchoRoute {
    Echo,
    Stream,
}

impl Service for EchoService {
    type Route = EchoRoute;

    fn settings(&self) -> &HttpSettings {
        &self.settings
    }

    fn drain(&self) -> &Latch {
        &self.drain
    }

    fn core_id(&self) -> usize {
        0
    }

    fn preflight(&self, _head: &RequestHead) -> Option<Response> {
        None
    }

    fn route(&self, head: &RequestHead) -> Result<EchoRoute, Response> {
        match (head.method, head.path.as_str()) {
            (Method::Post, "/echo") => Ok(EchoRoute::Echo),
            (Method::Get, "/stream") => Ok(EchoRoute::Stream),
            _ => Err(Response::error(&ApiError::new(
                ErrorKind::NotFound,
                "no such endpoint",
            ))),
        }
    }

    fn authorize(&self, _head: &RequestHead, _route: EchoRoute) -> Result<(), ApiError> {
        Ok(())
    }

    fn label(route: EchoRoute) -> &'static str {
        match route {
            EchoRoute::Echo => "echo",
            EchoRoute::Stream => "stream",
        }
    }

    fn is_upgrade(route: EchoRoute) -> bool {
        route == EchoRoute::Stream
    }

    async fn handle(&self, _route: EchoRoute, request: &mut Request) -> Response {
        let body = std::mem::take(&mut request.body);
        Response::with_body(200, "application/octet-stream", body)
    }

    fn on_response(&self, _route: &'static str, _status: u16, _latency: Duration) {}

    fn on_panic(&self) {}

    fn on_write_timeout(&self) {}
}

/// What one connection over [`MemoryTransport`] produced.
pub struct Served {
    /// Everything the loop wrote, responses and `101` alike.
    pub output: Vec<u8>,
    /// Bytes left over after an upgrade (the start of the WebSocket stream);
    /// `None` when no request upgraded the connection.
    pub upgraded: Option<Vec<u8>>,
}

/// Run the real connection loop with [`EchoService`] over `input`, read in
/// chunks of `chunk_bytes`, on a fresh single-thread runtime.
///
/// # Errors
/// When the runtime cannot be built.
pub fn serve_bytes(input: &[u8], chunk_bytes: usize) -> std::io::Result<Served> {
    let mut runtime = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()?;
    let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 40_000));
    let service = EchoService::default();
    Ok(runtime.block_on(async {
        let mut transport = MemoryTransport::new(input, chunk_bytes);
        match super::conn::serve(&mut transport, peer, &service).await {
            Some(upgrade) => {
                let leftover = upgrade.leftover;
                Served {
                    output: std::mem::take(&mut transport.output),
                    upgraded: Some(leftover),
                }
            }
            None => Served {
                output: transport.output,
                upgraded: None,
            },
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The status codes of the responses in `output`, in order.
    fn statuses(output: &[u8]) -> Vec<u16> {
        let text = String::from_utf8_lossy(output);
        text.match_indices("HTTP/1.1 ")
            .filter_map(|(at, _)| text.get(at + 9..at + 12)?.parse().ok())
            .collect()
    }

    fn serve(input: &[u8], chunk_bytes: usize) -> Served {
        serve_bytes(input, chunk_bytes).expect("runtime")
    }

    #[test]
    fn pipelined_requests_with_bodies_are_answered_in_order_whatever_the_read_sizes() {
        let input = b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello\
POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n\
GET /missing HTTP/1.1\r\nHost: a\r\n\r\n";
        for chunk_bytes in [1, 7, 64, input.len()] {
            let served = serve(input, chunk_bytes);
            assert_eq!(
                statuses(&served.output),
                [200, 200, 404],
                "reads of {chunk_bytes}"
            );
            let text = String::from_utf8_lossy(&served.output);
            let hello = text.find("\r\n\r\nhello").expect("the first body echoed");
            let chunked = text.find("\r\n\r\nabcde").expect("the chunked body echoed");
            assert!(hello < chunked, "in order");
            assert!(served.upgraded.is_none());
        }
    }

    #[test]
    fn a_malformed_head_is_answered_400_and_closes_the_connection() {
        let served = serve(
            b"GET /echo HTTP/1.1\r\nBad Header Line\r\n\r\nPOST /echo HTTP/1.1\r\n\r\n",
            16,
        );
        assert_eq!(statuses(&served.output), [400]);
        assert!(String::from_utf8_lossy(&served.output).contains("Connection: close"));
    }

    #[test]
    fn a_body_over_the_limit_is_refused_before_it_is_read() {
        let served = serve(
            b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999\r\n\r\nxx",
            64,
        );
        assert_eq!(statuses(&served.output), [413]);
    }

    #[test]
    fn an_upgrade_hands_the_connection_back_with_the_bytes_after_the_head() {
        let served = serve(
            b"GET /stream HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\nFRAME",
            1024,
        );
        assert_eq!(statuses(&served.output), [101]);
        assert_eq!(served.upgraded.as_deref(), Some(&b"FRAME"[..]));
    }
}
