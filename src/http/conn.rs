//! The connection loop: one task per accepted TCP connection.
//!
//! The loop owns the transport (a `TcpStream` in the server, an in-memory
//! one in tests: anything with monoio's `AsyncReadRent` and
//! `AsyncWriteRent`) and one growable read buffer. For each request it
//! reads until [`parse_head`] has a complete head, checks the body limits,
//! reads the body (`Content-Length` or chunked), hands the [`Request`] to
//! the [`Service`] above (the router and handlers of `api/`) and writes the
//! response. A WebSocket upgrade is answered `101` and the connection is
//! handed back to the caller ([`Upgrade`]). Bytes after one request
//! stay in the buffer and are the start of the next, so pipelined requests
//! are answered in order. Reads are only ever abandoned when the connection is
//! being closed anyway (timeouts, drain), so no received byte is lost.
//!
//! Timeouts: an idle keep-alive connection is closed quietly after
//! `keepalive_timeout`; a request whose head is not complete within
//! `read_timeout` of its first byte, or whose body pauses longer than
//! `read_timeout` (or takes longer than [`BODY_DEADLINE_MS`] in all), is
//! answered `408` and closed. A response the client does not take within
//! `write_timeout` closes the connection (counted as a write timeout).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};

use super::body::{BodyError, ChunkedDecoder};
use super::cors;
use super::head::{parse_head, BodyFraming, Method, RequestHead};
use super::response::Response;
use super::service::Service;
use super::upgrade::{accept_key, not_an_upgrade, switching_protocols};
use super::Request;
use crate::error::{ApiError, ErrorKind};
use crate::limits::{BODY_DEADLINE_MS, READ_BUFFER_BYTES, READ_BUFFER_RETAINED_BYTES_MAX};
use crate::rt::catch_unwind_future;

/// Free space below which the read buffer grows before the next read.
const READ_SPARE_BYTES_MIN: usize = 2 * 1024;

/// How long a connection that is being closed after an error keeps reading
/// (and discarding) what the client still sends, so that the client sees our
/// response instead of a reset.
const LINGER_MS: u64 = 500;
const LINGER_BYTES_MAX: usize = 256 * 1024;

/// Serve HTTP requests on one connection until it closes, or until a request
/// upgrades it to WebSocket: then the `101` is written and the connection is
/// handed back to the caller with the bytes that followed the request head.
pub async fn serve<T, S>(stream: T, peer: SocketAddr, service: &S) -> Option<Upgrade<T, S::Route>>
where
    T: AsyncReadRent + AsyncWriteRent,
    S: Service,
{
    let mut conn = Conn {
        stream,
        peer,
        client: peer,
        service,
        buf: Vec::with_capacity(READ_BUFFER_BYTES),
        out: Vec::new(),
    };
    let (route, query) = conn.run().await?;
    let Conn {
        stream,
        buf,
        client,
        ..
    } = conn;
    Some(Upgrade {
        stream,
        leftover: buf,
        route,
        query,
        peer: client,
    })
}

/// A connection a request switched to WebSocket.
pub struct Upgrade<T, R> {
    pub stream: T,
    /// Bytes read after the request head: the start of the WebSocket stream.
    pub leftover: Vec<u8>,
    /// The route that upgraded (which streaming protocol the client speaks).
    pub route: R,
    /// The upgrade request's query (stream parameters).
    pub query: Option<String>,
    /// The client the upgrade came from: the TCP peer, or the address a
    /// trusted proxy forwarded for ([`super::proxy`]).
    pub peer: SocketAddr,
}

/// What a read brought.
enum ReadOutcome {
    Data,
    Eof,
    TimedOut,
    Drained,
    Failed,
}

/// Why the loop reading a request stopped without a request.
enum Stop {
    /// Close quietly (EOF between requests, idle timeout, drain, I/O error).
    Quiet,
    /// Answer this error, then close.
    Answer(ApiError),
}

struct Conn<'s, T, S> {
    stream: T,
    peer: SocketAddr,
    /// The client the current request stands for (the peer, or the address
    /// a trusted proxy forwarded for): the request's peer and the logs'.
    client: SocketAddr,
    service: &'s S,
    /// Received bytes not consumed yet (the start of the next request).
    buf: Vec<u8>,
    /// The serialized response, reused between requests.
    out: Vec<u8>,
}

impl<T: AsyncReadRent + AsyncWriteRent, S: Service> Conn<'_, T, S> {
    /// Serve HTTP requests until the connection closes, or until one upgrades
    /// it to WebSocket (the 101 is written; the caller takes over). Returns
    /// the upgrading route and the request's query.
    async fn run(&mut self) -> Option<(S::Route, Option<String>)> {
        loop {
            let (head, received_at) = match self.read_head().await {
                Ok(head) => head,
                Err(Stop::Quiet) => return None,
                Err(Stop::Answer(error)) => {
                    self.answer_and_close(None, &error, "error", Instant::now())
                        .await;
                    return None;
                }
            };
            self.client = self
                .service
                .settings()
                .trusted_proxies
                .client(self.peer, &head);
            if let Some(response) = self.service.preflight(&head) {
                // A preflight carries no body; if one was announced anyway
                // its framing is unknown, so the connection closes after.
                let close = head.has_body() || !head.keep_alive;
                if !self
                    .respond(&head, response, close, "preflight", received_at)
                    .await
                    || close
                {
                    self.linger().await;
                    return None;
                }
                continue;
            }
            let route = match self.service.route(&head) {
                Ok(route) => route,
                Err(response) => {
                    // The body (if any) was not read: the framing of what
                    // follows is unknown, so the connection closes after this.
                    let close = head.has_body();
                    if !self
                        .respond(&head, response, close, "unrouted", received_at)
                        .await
                        || close
                    {
                        self.linger().await;
                        return None;
                    }
                    continue;
                }
            };
            let label = S::label(route);
            if let Err(error) = self.service.authorize(&head, route) {
                self.answer_and_close(Some(&head), &error, label, received_at)
                    .await;
                return None;
            }
            if S::is_upgrade(route) {
                let query = self.upgrade(head, route, received_at).await?;
                return Some((route, query));
            }
            let body = match self.read_body(&head).await {
                Ok(body) => body,
                Err(Stop::Quiet) => return None,
                Err(Stop::Answer(error)) => {
                    self.answer_and_close(Some(&head), &error, label, received_at)
                        .await;
                    return None;
                }
            };
            let keep_alive = head.keep_alive;
            let mut request = Request {
                head,
                body,
                peer: self.client,
                received_at,
            };
            // A bug in a handler costs this request a 500, not the core.
            let handled = catch_unwind_future(self.service.handle(route, &mut request)).await;
            let response = handled.unwrap_or_else(|message| {
                self.service.on_panic();
                tracing::error!(core = self.service.core_id(), route = label, %message, "a handler panicked");
                Response::error(&ApiError::new(ErrorKind::Internal, "internal error"))
            });
            if response.stream.is_some() {
                self.respond_streamed(&request.head, response, label, received_at)
                    .await;
                return None;
            }
            let close = !keep_alive || response.close;
            if !self
                .respond(&request.head, response, close, label, received_at)
                .await
                || close
            {
                let _ = self.stream.shutdown().await;
                return None;
            }
            self.recycle_buffer();
        }
    }

    /// Answer a WebSocket handshake: `101` and hand over, or `400`.
    async fn upgrade(
        &mut self,
        head: RequestHead,
        route: S::Route,
        received_at: Instant,
    ) -> Option<Option<String>> {
        let accepted = accept_key(&head).and_then(|accept| {
            if head.has_body() {
                Err(ApiError::bad_request("a WebSocket upgrade carries no body"))
            } else {
                Ok(accept)
            }
        });
        let accepted = accepted
            .map_err(|error| not_an_upgrade(&error))
            .and_then(|accept| {
                let protocol = self.service.accept_upgrade(&head, route)?;
                Ok((accept, protocol))
            });
        let (accept, protocol) = match accepted {
            Ok(accepted) => accepted,
            Err(response) => {
                self.respond(&head, response, true, "stream", received_at)
                    .await;
                self.linger().await;
                return None;
            }
        };
        self.out = switching_protocols(&accept, protocol);
        if !self.write_out().await {
            return None;
        }
        self.service
            .on_response("stream", 101, received_at.elapsed());
        Some(head.query)
    }

    /// Read until a complete head is buffered, and consume it.
    async fn read_head(&mut self) -> Result<(RequestHead, Instant), Stop> {
        let settings = self.service.settings();
        let (head_bytes_max, read_timeout, keepalive_timeout) = (
            settings.head_bytes_max,
            settings.read_timeout,
            settings.keepalive_timeout,
        );
        // The request starts with its first byte; pipelined bytes already here count.
        let mut started_at = (!self.buf.is_empty()).then(Instant::now);
        loop {
            match parse_head(&self.buf, head_bytes_max) {
                Ok(Some((head, head_len))) => {
                    self.buf.drain(..head_len);
                    return Ok((head, Instant::now()));
                }
                Ok(None) => {}
                Err(error) => return Err(Stop::Answer(error.into())),
            }
            let waiting_for_request = started_at.is_none();
            let deadline = match started_at {
                Some(started) => started + read_timeout,
                None => Instant::now() + keepalive_timeout,
            };
            match self.read_more(deadline, waiting_for_request).await {
                ReadOutcome::Data => {
                    started_at.get_or_insert_with(Instant::now);
                }
                ReadOutcome::Eof if self.buf.is_empty() => return Err(Stop::Quiet),
                ReadOutcome::Eof => {
                    return Err(Stop::Answer(ApiError::bad_request(
                        "connection closed in the middle of a request head",
                    )))
                }
                ReadOutcome::TimedOut if waiting_for_request => return Err(Stop::Quiet),
                ReadOutcome::TimedOut => {
                    return Err(Stop::Answer(ApiError::new(
                        ErrorKind::RequestTimeout,
                        "request head not received in time",
                    )))
                }
                ReadOutcome::Drained | ReadOutcome::Failed => return Err(Stop::Quiet),
            }
        }
    }

    /// Read the body the head announced, within the limits.
    async fn read_body(&mut self, head: &RequestHead) -> Result<Vec<u8>, Stop> {
        let body_bytes_max = self.service.settings().body_bytes_max;
        let length = match head.framing {
            BodyFraming::None | BodyFraming::Length(0) => return Ok(Vec::new()),
            BodyFraming::Length(length) if length > body_bytes_max as u64 => {
                return Err(Stop::Answer(BodyError::TooLarge.into()));
            }
            BodyFraming::Length(length) => Some(length as usize),
            BodyFraming::Chunked => None,
        };
        if head.expect_continue && self.buf.is_empty() {
            self.out.clear();
            self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            if !self.write_out().await {
                return Err(Stop::Quiet);
            }
        }
        let body_deadline = Instant::now() + Duration::from_millis(BODY_DEADLINE_MS);
        match length {
            Some(length) => {
                while self.buf.len() < length {
                    self.buf.reserve(length - self.buf.len());
                    self.read_body_more(body_deadline).await?;
                }
                let rest = self.buf.split_off(length);
                Ok(std::mem::replace(&mut self.buf, rest))
            }
            None => {
                let mut decoder = ChunkedDecoder::default();
                let mut body = Vec::new();
                loop {
                    let consumed = decoder
                        .decode(&self.buf, &mut body, body_bytes_max)
                        .map_err(|error| Stop::Answer(error.into()))?;
                    self.buf.drain(..consumed);
                    if decoder.is_done() {
                        return Ok(body);
                    }
                    self.read_body_more(body_deadline).await?;
                }
            }
        }
    }

    async fn read_body_more(&mut self, body_deadline: Instant) -> Result<(), Stop> {
        let deadline = body_deadline.min(Instant::now() + self.service.settings().read_timeout);
        match self.read_more(deadline, false).await {
            ReadOutcome::Data => Ok(()),
            ReadOutcome::Eof => Err(Stop::Answer(ApiError::bad_request(
                "connection closed in the middle of a request body",
            ))),
            ReadOutcome::TimedOut => Err(Stop::Answer(ApiError::new(
                ErrorKind::RequestTimeout,
                "request body not received in time",
            ))),
            ReadOutcome::Drained | ReadOutcome::Failed => Err(Stop::Quiet),
        }
    }

    /// Read once into the spare capacity of the buffer, until `deadline`. With
    /// `drain_aware`, the service's drain latch also ends the wait.
    async fn read_more(&mut self, deadline: Instant, drain_aware: bool) -> ReadOutcome {
        if self.buf.capacity() - self.buf.len() < READ_SPARE_BYTES_MIN {
            self.buf.reserve(READ_BUFFER_BYTES);
        }
        let buf = std::mem::take(&mut self.buf);
        let (len, capacity) = (buf.len(), buf.capacity());
        let read = self.stream.read(buf.slice_mut(len..capacity));
        let timed = monoio::time::timeout_at(monoio::time::Instant::from_std(deadline), read);
        let outcome = if drain_aware {
            let drain = self.service.drain();
            if drain.is_triggered() {
                return ReadOutcome::Drained;
            }
            let drained = drain.wait();
            monoio::select! {
                outcome = timed => Some(outcome),
                _ = drained => None,
            }
        } else {
            Some(timed.await)
        };
        // On a timeout or drain the read was cancelled and took the buffer
        // with it; the connection is closing, so that loses nothing.
        match outcome {
            None => ReadOutcome::Drained,
            Some(Err(_elapsed)) => ReadOutcome::TimedOut,
            Some(Ok((result, slice))) => {
                self.buf = slice.into_inner();
                match result {
                    Ok(0) => ReadOutcome::Eof,
                    Ok(_) => ReadOutcome::Data,
                    Err(_) => ReadOutcome::Failed,
                }
            }
        }
    }

    /// Write a response and count it. Returns false if the write failed.
    async fn respond(
        &mut self,
        head: &RequestHead,
        response: Response,
        close: bool,
        route: &'static str,
        received_at: Instant,
    ) -> bool {
        // While draining, requests already received (pipelined) are still
        // answered; the connection closes once none is left.
        let close = close || (self.service.drain().is_triggered() && self.buf.is_empty());
        let cors = &self.service.settings().cors;
        let response = if cors::is_preflight(cors, head) {
            response
        } else {
            cors::decorate(cors, head, response)
        };
        response.write_to(&mut self.out, !close, head.method == Method::Head);
        let written = self.write_out().await;
        self.service
            .on_response(route, response.status, received_at.elapsed());
        // The access log is at debug; server errors are worth a warning.
        let latency_us = received_at.elapsed().as_micros() as u64;
        if response.status >= 500 && response.status != 503 {
            tracing::warn!(core = self.service.core_id(), peer = %self.client, method = ?head.method,
                path = %head.path, status = response.status, latency_us, "request failed");
        } else {
            tracing::debug!(core = self.service.core_id(), peer = %self.client, method = ?head.method,
                path = %head.path, status = response.status, latency_us, "request");
        }
        written
    }

    /// Write a streamed response: the head and the chunks its task sends,
    /// each flushed as it comes, then the last chunk, and close. Meanwhile
    /// the socket is read: the client closing it (or anything it sends,
    /// which a closing connection would discard anyway) ends the response
    /// at once, and dropping the chunk receiver tells the task to stop.
    async fn respond_streamed(
        &mut self,
        head: &RequestHead,
        mut response: Response,
        route: &'static str,
        received_at: Instant,
    ) {
        use futures_core::Stream;
        let Some(mut chunks) = response.stream.take() else {
            return;
        };
        // Put the stream back for `write_to` to choose chunked framing.
        let (sender, placeholder) = futures_channel::mpsc::unbounded();
        drop(sender);
        response.stream = Some(placeholder);
        let response = cors::decorate(&self.service.settings().cors, head, response);
        response.write_to(&mut self.out, false, head.method == Method::Head);
        let status = response.status;
        drop(response);
        if !self.write_out().await {
            return;
        }
        self.service
            .on_response(route, status, received_at.elapsed());
        if head.method == Method::Head {
            return;
        }
        let mut ended = false;
        while !ended {
            let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut chunks).poll_next(cx));
            let deadline = Instant::now() + Duration::from_secs(3600);
            let client = self.read_more(deadline, false);
            let chunk = monoio::select! {
                chunk = next => chunk,
                _ = client => {
                    // Gone (or talking while we stream): stop the work.
                    tracing::debug!(core = self.service.core_id(), peer = %self.peer, "the client left a streamed response");
                    return;
                }
            };
            self.out.clear();
            match chunk {
                Some(data) => {
                    if data.is_empty() {
                        continue;
                    }
                    super::response::write_chunk(&mut self.out, &data);
                }
                None => {
                    super::response::write_chunk(&mut self.out, &[]);
                    ended = true;
                }
            }
            if !self.write_out().await {
                return;
            }
        }
        let _ = self.stream.shutdown().await;
    }

    /// Answer an error that ends the connection, then close it gently.
    async fn answer_and_close(
        &mut self,
        head: Option<&RequestHead>,
        error: &ApiError,
        route: &'static str,
        received_at: Instant,
    ) {
        let mut response = self.service.error_response(head, error);
        if let Some(head) = head {
            response = cors::decorate(&self.service.settings().cors, head, response);
        }
        response.write_to(&mut self.out, false, false);
        if self.write_out().await {
            self.service
                .on_response(route, response.status, received_at.elapsed());
            tracing::debug!(core = self.service.core_id(), peer = %self.client, %error, "request refused");
            self.linger().await;
        }
    }

    /// Write `self.out` within the write timeout. Returns false if the write
    /// failed or the client did not take the bytes in time (a client that
    /// never reads cannot hold the connection); the caller then closes.
    async fn write_out(&mut self) -> bool {
        let out = std::mem::take(&mut self.out);
        let write_timeout = self.service.settings().write_timeout;
        match monoio::time::timeout(write_timeout, self.stream.write_all(out)).await {
            Ok((result, out)) => {
                self.out = out;
                result.is_ok()
            }
            Err(_elapsed) => {
                self.service.on_write_timeout();
                tracing::debug!(core = self.service.core_id(), peer = %self.client, "response not taken within the write timeout; closing");
                false
            }
        }
    }

    /// Half-close and discard what the client still sends for a moment, so a
    /// client that is still writing a request reads our answer rather than a
    /// connection reset.
    async fn linger(&mut self) {
        let _ = self.stream.shutdown().await;
        let deadline = Instant::now() + Duration::from_millis(LINGER_MS);
        let mut discarded = 0;
        while discarded < LINGER_BYTES_MAX {
            self.buf.clear();
            match self.read_more(deadline, false).await {
                ReadOutcome::Data => discarded += self.buf.len(),
                _ => return,
            }
        }
    }

    /// Shrink a buffer that one large request grew, so idle connections stay small.
    fn recycle_buffer(&mut self) {
        if self.buf.capacity() > READ_BUFFER_RETAINED_BYTES_MAX
            && self.buf.len() < READ_BUFFER_BYTES
        {
            let mut fresh = Vec::with_capacity(READ_BUFFER_BYTES);
            fresh.extend_from_slice(&self.buf);
            self.buf = fresh;
        }
        if self.out.capacity() > READ_BUFFER_RETAINED_BYTES_MAX {
            self.out = Vec::new();
        }
    }
}
