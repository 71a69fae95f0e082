//! `--driver threads`: one OS thread per session with a blocking
//! tungstenite socket (kept to compare against the `mux` driver).

use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Bytes, Message};

use super::options::StreamOptions;
use super::session::{Outgoing, SessionCore};
use super::stats::StreamStats;
use crate::streaming::ChunkMap;
use crate::ws::{self, Socket, WsFailure};

/// Longest a paced session blocks in one read, so it notices its deadlines.
const MAX_READ_WAIT: Duration = Duration::from_millis(50);

/// `--driver threads`: one OS thread per session.
pub(super) fn run(opts: &StreamOptions) -> Result<StreamStats> {
    let map = opts.chunk_map();
    let audio = Bytes::from(opts.audio.data.clone());
    let path = opts.path_and_query();
    let t0 = Instant::now();
    let n = opts.sessions as u32;
    let mut stats = StreamStats::new();
    thread::scope(|s| -> Result<()> {
        let mut handles = Vec::with_capacity(opts.sessions);
        for i in 0..opts.sessions {
            let start_at = t0 + opts.ramp * i as u32 / n;
            let (audio, path) = (audio.clone(), path.as_str());
            let spawned = thread::Builder::new()
                .name(format!("stream-{i}"))
                .stack_size(256 * 1024)
                .spawn_scoped(s, move || {
                    Session::new(opts, map, audio).run(path, start_at)
                });
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    // Sessions already started finish on their own (bounded).
                    stats.failed += (opts.sessions - i) as u64;
                    *stats.errors.entry("spawn".into()).or_insert(0) += (opts.sessions - i) as u64;
                    stats
                        .first_failure
                        .get_or_insert(format!("cannot start thread {i}: {e}"));
                    break;
                }
            }
        }
        for h in handles {
            match h.join() {
                Ok(st) => stats.merge(&st),
                Err(_) => bail!("a session thread panicked"),
            }
        }
        Ok(())
    })?;
    Ok(stats)
}

/// What a read produced.
enum Read {
    /// A message, and when it arrived.
    Msg(Message, Instant),
    /// Nothing yet (timeout / would block).
    Nothing,
    /// The connection is over (after a close handshake or not).
    Gone,
}

/// One streaming session of `--driver threads`, driven on its own thread
/// with a blocking tungstenite socket.
struct Session<'a> {
    core: SessionCore<'a>,
    audio: Bytes,
}

impl<'a> Session<'a> {
    fn new(opts: &'a StreamOptions, map: ChunkMap, audio: Bytes) -> Self {
        Session {
            core: SessionCore::new(opts, map),
            audio,
        }
    }

    /// Runs the whole session and returns its measurements.
    fn run(mut self, path: &str, start_at: Instant) -> StreamStats {
        let now = Instant::now();
        if start_at > now {
            thread::sleep(start_at - now);
        }
        let config = WebSocketConfig::default()
            .read_buffer_size(16 * 1024)
            .write_buffer_size(0);
        let opts = self.core.opts;
        match ws::connect(
            &opts.target,
            path,
            &opts.headers,
            opts.timeout,
            Some(config),
        ) {
            Ok(mut socket) => {
                self.drive(&mut socket, start_at);
            }
            Err(f) => self.core.fail(f),
        }
        let mut st = StreamStats::new();
        self.core.finish(&mut st);
        st
    }

    /// Sends the audio and `end`, reads until the connection is over.
    fn drive(&mut self, socket: &mut Socket, start_at: Instant) {
        let t0 = Instant::now();
        let hard_deadline = self.core.hard_deadline(t0);
        self.core.started(t0, start_at);
        let pace = self.core.opts.pace;
        loop {
            if self.core.failed() {
                return;
            }
            let now = Instant::now();
            if now >= hard_deadline {
                self.core
                    .fail(WsFailure::new("timeout", "session did not finish in time"));
                return;
            }
            if self.core.sending && self.core.close_code.is_none() {
                if pace {
                    while self.core.next_due(t0).is_some_and(|due| due <= now) {
                        if !self.send_next(socket, t0, now) {
                            return;
                        }
                    }
                } else if !self.send_next(socket, t0, now) {
                    return;
                }
            }
            if self.core.wait_expired(now).is_some() {
                return;
            }
            let gone = if self.core.sending && !pace && self.core.close_code.is_none() {
                self.drain_nonblocking(socket)
            } else {
                let wait = match self.core.next_due(t0) {
                    Some(due) => due.saturating_duration_since(Instant::now()),
                    None => MAX_READ_WAIT,
                };
                let wait = wait.clamp(Duration::from_millis(1), MAX_READ_WAIT);
                if let Err(e) = socket.get_mut().set_read_timeout(Some(wait)) {
                    self.core
                        .fail(WsFailure::new("io", format!("set_read_timeout: {e}")));
                    return;
                }
                match self.read(socket) {
                    Read::Msg(m, at) => {
                        self.on_message(m, at);
                        false
                    }
                    Read::Nothing => false,
                    Read::Gone => true,
                }
            };
            if gone {
                return;
            }
        }
    }

    /// Sends chunk `next`, or `end` at a loop boundary once enough has been
    /// sent. False when the session failed.
    fn send_next(&mut self, socket: &mut Socket, t0: Instant, now: Instant) -> bool {
        match self.core.next_outgoing(t0, now) {
            Outgoing::End => {
                if let Err(e) = socket.send(Message::text(self.core.opts.dialect.end_message())) {
                    self.core.fail(ws::classify(&e));
                    return false;
                }
                self.core.end_sent(Instant::now());
            }
            Outgoing::Chunk { k, bytes, samples } => {
                if let Err(e) = socket.send(Message::Binary(self.audio.slice(bytes))) {
                    let mut f = ws::classify(&e);
                    f.detail = format!("sending chunk {k}: {}", f.detail);
                    self.core.fail(f);
                    return false;
                }
                self.core.chunk_sent(samples, Instant::now());
            }
        }
        true
    }

    /// `--no-pace`: reads everything already there without blocking. True
    /// when the connection is over.
    fn drain_nonblocking(&mut self, socket: &mut Socket) -> bool {
        if let Err(e) = socket.get_mut().set_nonblocking(true) {
            self.core
                .fail(WsFailure::new("io", format!("set_nonblocking: {e}")));
            return true;
        }
        let gone = loop {
            match self.read(socket) {
                Read::Msg(m, at) => self.on_message(m, at),
                Read::Nothing => break false,
                Read::Gone => break true,
            }
        };
        if let Err(e) = socket.get_mut().set_nonblocking(false) {
            self.core
                .fail(WsFailure::new("io", format!("set_nonblocking: {e}")));
            return true;
        }
        gone
    }

    fn read(&mut self, socket: &mut Socket) -> Read {
        match socket.read() {
            Ok(m) => Read::Msg(m, Instant::now()),
            Err(e) if ws::is_would_block(&e) => Read::Nothing,
            Err(tungstenite::Error::ConnectionClosed) if self.core.close_code.is_some() => {
                Read::Gone
            }
            Err(e) => {
                let mut f = ws::classify(&e);
                if self.core.close_code.is_none() {
                    f.detail = format!("connection lost without a close frame: {}", f.detail);
                }
                self.core.fail(f);
                Read::Gone
            }
        }
    }

    fn on_message(&mut self, m: Message, at: Instant) {
        match m {
            Message::Text(text) => self.core.on_text(text.as_str(), at),
            Message::Binary(_) => self.core.on_binary(),
            Message::Close(frame) => {
                self.core
                    .on_close(frame.map_or(1005, |f| u16::from(f.code)), at);
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
}
