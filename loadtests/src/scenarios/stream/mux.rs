//! `--driver mux`: thousands of `stream` sessions on a few threads.
//!
//! * **The connector thread** opens the sessions on the ramp's schedule
//!   (session `i` of `N` at `ramp·i/N`) with non-blocking connects, and runs
//!   every upgrade in flight ([`Upgrade`]) on its own `mio` poll, so a slow
//!   answer from the server delays only that session — neither the next
//!   connects nor the worker loops (a first version with blocking upgrades
//!   on a few connector threads started 10% of 3000 sessions 8 s late when
//!   the loaded server took ~0.5 s to answer some upgrades). An upgraded
//!   socket goes, with the bytes read past the `101` head, to worker
//!   `i mod T` through a channel, and the worker's [`mio::Waker`] is woken.
//! * **Worker threads** (`--threads T`) each own their sessions' sockets,
//!   registered with one `mio` [`Poll`] (edge-triggered). Each loop polls
//!   with a timeout up to the earliest timer of its sessions (a binary heap,
//!   [`TimerQueue`], with lazy deletion), then:
//!   - on readable: reads until `WouldBlock` into the session's
//!     [`FrameReader`], handing each text message to the shared
//!     [`SessionCore`] (ordering checks, lags), answering pings and the
//!     server's close;
//!   - on a due timer: sends every due chunk (chunk `k` due at `start +
//!     stream time of chunk k`, as the `threads` driver), `end` after the last
//!     loop, and checks the `--timeout` bounds;
//!   - writes go into a per-session buffer of masked frames, flushed at
//!     once; what the socket does not take waits for `WRITABLE` (interest
//!     registered only while the buffer is not empty). A chunk's send time is
//!     recorded when its last byte has been written, so lags are measured
//!     exactly as with blocking sends.
//!
//! With `--no-pace` a session queues chunks while its buffer holds less than
//! [`NO_PACE_QUEUE`] bytes and writes until the socket is full; one turn
//! writes at most [`NO_PACE_TURN`] bytes, then the session waits for its
//! next turn behind the others (a ready queue), so no socket starves another.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};

use super::{openai, Outgoing, SessionCore, StreamOptions, StreamStats};
use crate::dialect::Dialect;
use crate::streaming::ChunkMap;
use crate::ws::{self, Upgrade, WsFailure};
use crate::wsframe::{
    encode_client_frame, FrameReader, MaskRng, ServerFrame, OP_BINARY, OP_CLOSE, OP_PONG, OP_TEXT,
};

/// `--no-pace`: a session stops queueing chunks while this many bytes wait.
pub const NO_PACE_QUEUE: usize = 64 * 1024;

/// `--no-pace`: most bytes one session writes per turn.
pub const NO_PACE_TURN: usize = 256 * 1024;

/// The worker's waker.
const WAKER: Token = Token(usize::MAX);

/// Longest a worker sleeps in `poll` (a safety net: wakes also come from
/// the waker and from timers).
const MAX_POLL_WAIT: Duration = Duration::from_millis(50);

/// Size of the worker's read buffer.
const READ_SCRATCH: usize = 64 * 1024;

/// A consumed prefix of an outgoing buffer this long is dropped even while
/// the rest is still unsent.
const OUT_COMPACT: usize = 64 * 1024;

/// Timers of many sessions, earliest first. Entries are `(when, slot,
/// generation)`; a session keeps the time of its one live entry, and an
/// entry that no longer matches (the session rescheduled or ended) is
/// skipped when popped (lazy deletion). Ties pop in slot order.
#[derive(Debug, Default)]
pub struct TimerQueue {
    heap: BinaryHeap<Reverse<(Instant, usize, u64)>>,
}

impl TimerQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a timer for `slot` (of generation `gen`) at `at`.
    pub fn schedule(&mut self, at: Instant, slot: usize, gen: u64) {
        self.heap.push(Reverse((at, slot, gen)));
    }

    /// The earliest timer's time.
    pub fn next_due(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Removes and returns the earliest timer if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, usize, u64)> {
        if self.next_due()? <= now {
            self.heap.pop().map(|Reverse(t)| t)
        } else {
            None
        }
    }

    /// Timers held (live and stale).
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when no timer is held.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// What one session does beyond the common settings (used by `soak`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct SessionPlan {
    /// Audio to stream before `end` (cut at any chunk), instead of
    /// `--duration` rounded up to whole loops.
    pub length: Option<Duration>,
    /// Drop the connection this long after the session started, without a
    /// close frame; `true`: with a TCP reset (`SO_LINGER` 0), else a FIN.
    pub abort_after: Option<(Duration, bool)>,
    /// Have the operator DELETE the session this long after it started
    /// (needs `StreamOptions::deletes`).
    pub delete_after: Option<Duration>,
}

/// When the connector opens sessions, and what each does.
pub(crate) trait Schedule: Send {
    /// The next session to open if its time has come at `now`: its index,
    /// its planned start, its plan.
    fn pop_due(&mut self, now: Instant) -> Option<(usize, Instant, SessionPlan)>;
    /// When the next session is due, if that is known yet.
    fn next_at(&self) -> Option<Instant>;
    /// True once no session will be opened any more.
    fn finished(&self, now: Instant) -> bool;
    /// A session is over; `never_started` if it failed before reaching a
    /// worker (connect or upgrade).
    fn on_end(&mut self, now: Instant, never_started: bool);
}

/// `stream`'s schedule: session `i` of `n` at `start + ramp·i/n`.
struct Ramp {
    n: usize,
    start: Instant,
    ramp: Duration,
    next: usize,
}

impl Ramp {
    fn slot(&self, i: usize) -> Instant {
        self.start + self.ramp * i as u32 / self.n as u32
    }
}

impl Schedule for Ramp {
    fn pop_due(&mut self, now: Instant) -> Option<(usize, Instant, SessionPlan)> {
        let i = self.next;
        let at = self.slot(i);
        (i < self.n && at <= now).then(|| {
            self.next += 1;
            (i, at, SessionPlan::default())
        })
    }

    fn next_at(&self) -> Option<Instant> {
        (self.next < self.n).then(|| self.slot(self.next))
    }

    fn finished(&self, _now: Instant) -> bool {
        self.next >= self.n
    }

    fn on_end(&mut self, _now: Instant, _never_started: bool) {}
}

/// An upgraded connection on its way from a connector to a worker.
struct NewSession {
    stream: TcpStream,
    leftover: Vec<u8>,
    /// Session start: chunk `k` is due at `t0 + stream time of chunk k`.
    t0: Instant,
    /// Its ramp slot.
    planned: Instant,
    plan: SessionPlan,
}

/// The connector's waker.
const CONNECTOR_WAKER: Token = Token(usize::MAX);

/// Runs the sessions with `opts.threads` workers; returns the merged stats.
pub(crate) fn run(opts: &StreamOptions) -> Result<StreamStats> {
    let mut ramp = Ramp {
        n: opts.sessions,
        start: Instant::now(),
        ramp: opts.ramp,
        next: 0,
    };
    run_with(opts, &mut ramp, false)
}

/// Runs sessions as `schedule` says with `opts.threads` workers (each
/// session's end is reported back to the schedule when `notify_ends`);
/// returns the merged stats.
pub(crate) fn run_with(
    opts: &StreamOptions,
    schedule: &mut dyn Schedule,
    notify_ends: bool,
) -> Result<StreamStats> {
    let workers = opts.threads.clamp(1, opts.sessions.max(1));
    let map = opts.chunk_map();
    let path = opts.path_and_query();
    let connector_poll = Poll::new()?;
    let connector_waker = Arc::new(Waker::new(connector_poll.registry(), CONNECTOR_WAKER)?);
    let (ended_tx, ended_rx) = crossbeam_channel::unbounded::<()>();
    let ended = notify_ends.then_some((ended_tx, connector_waker));
    let ended_rx = notify_ends.then_some(ended_rx);
    let mut polls = Vec::with_capacity(workers);
    let mut wakers = Vec::with_capacity(workers);
    let mut senders = Vec::with_capacity(workers);
    let mut receivers = Vec::with_capacity(workers);
    for _ in 0..workers {
        let poll = Poll::new()?;
        wakers.push(Arc::new(Waker::new(poll.registry(), WAKER)?));
        polls.push(poll);
        let (tx, rx) = crossbeam_channel::unbounded::<NewSession>();
        senders.push(tx);
        receivers.push(rx);
    }
    let start = Instant::now();
    let mut stats = StreamStats::new();
    thread::scope(|s| -> Result<()> {
        let mut worker_handles = Vec::with_capacity(workers);
        for (w, (poll, rx)) in polls.into_iter().zip(receivers).enumerate() {
            let ended = ended.clone();
            let h = thread::Builder::new()
                .name(format!("stream-mux-{w}"))
                .spawn_scoped(s, move || {
                    let seed = (w as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                        ^ start.elapsed().as_nanos() as u64;
                    let mut worker = Worker::new(opts, map, poll, seed);
                    worker.ended = ended;
                    worker.run(&rx)
                })?;
            worker_handles.push(h);
        }
        let connector_handle = {
            let (wakers, path) = (wakers.clone(), path.as_str());
            thread::Builder::new()
                .name("stream-connect".into())
                // Owns the senders: they are gone when it returns.
                .spawn_scoped(s, move || {
                    let mut c = Connector {
                        opts,
                        map,
                        path,
                        senders: &senders,
                        wakers: &wakers,
                        poll: connector_poll,
                        ended: ended_rx,
                    };
                    c.run(schedule)
                })
        };
        let mut panicked = false;
        let mut connector_error = None;
        match connector_handle {
            Ok(h) => match h.join() {
                Ok(Ok(st)) => stats.merge(&st),
                Ok(Err(e)) => connector_error = Some(e),
                Err(_) => panicked = true,
            },
            Err(e) => connector_error = Some(e.into()),
        }
        // The workers stop once every sender is gone (with the connector)
        // and their sessions are over; wake them so they notice.
        wake_all(&wakers);
        for h in worker_handles {
            match h.join() {
                Ok(Ok(st)) => stats.merge(&st),
                Ok(Err(e)) => bail!("a stream worker failed: {e}"),
                Err(_) => panicked = true,
            }
        }
        if let Some(e) = connector_error {
            bail!("the stream connector failed: {e}");
        }
        if panicked {
            bail!("a stream thread panicked");
        }
        Ok(())
    })?;
    Ok(stats)
}

fn wake_all(wakers: &[Arc<Waker>]) {
    for w in wakers {
        if let Err(e) = w.wake() {
            // Workers also wake every MAX_POLL_WAIT on their own.
            eprintln!("warning: waking a stream worker: {e}");
        }
    }
}

/// One upgrade in progress on the connector.
struct Handshake {
    /// Session index.
    i: usize,
    stream: TcpStream,
    upgrade: Upgrade,
    connected: bool,
    /// Its ramp slot.
    planned: Instant,
    plan: SessionPlan,
    gen: u64,
}

/// The connector thread: opens session `i` at its ramp slot with a
/// non-blocking connect, runs the upgrades of all sessions in flight on its
/// own `mio` poll (so a slow answer delays only its own session), and hands
/// each upgraded socket to worker `i mod T`. Each connect and upgrade is
/// bounded by `--timeout`.
struct Connector<'a> {
    opts: &'a StreamOptions,
    map: ChunkMap,
    path: &'a str,
    senders: &'a [Sender<NewSession>],
    wakers: &'a [Arc<Waker>],
    poll: Poll,
    /// Ends of sessions reported by the workers (when the schedule wants them).
    ended: Option<Receiver<()>>,
}

impl Connector<'_> {
    fn run(&mut self, schedule: &mut dyn Schedule) -> Result<StreamStats> {
        let (opts, map, path, senders, wakers) =
            (self.opts, self.map, self.path, self.senders, self.wakers);
        let poll = &mut self.poll;
        let mut stats = StreamStats::new();
        let mut events = Events::with_capacity(1024);
        let mut slots: Vec<Option<Handshake>> = Vec::new();
        let mut free: Vec<usize> = Vec::new();
        // Deadlines in start order: every one is `start time + --timeout`.
        let mut deadlines: VecDeque<(Instant, usize, u64)> = VecDeque::new();
        let mut live = 0usize;
        let mut gen = 0u64;
        let fail = |stats: &mut StreamStats, schedule: &mut dyn Schedule, f: WsFailure| {
            let mut core = SessionCore::new(opts, map);
            core.fail(f);
            core.finish(stats);
            schedule.on_end(Instant::now(), true);
        };
        loop {
            let now = Instant::now();
            if let Some(rx) = &self.ended {
                while rx.try_recv().is_ok() {
                    schedule.on_end(now, false);
                }
            }
            // Open every session whose slot has come.
            while let Some((i, planned, plan)) = schedule.pop_due(now) {
                let opened = Upgrade::new(&opts.target, path, &opts.headers).and_then(|upgrade| {
                    let mut stream = TcpStream::connect(opts.target.addr).map_err(|e| {
                        WsFailure::new("connect", format!("connect {}: {e}", opts.target.addr))
                    })?;
                    stream
                        .set_nodelay(true)
                        .map_err(|e| WsFailure::new("io", format!("socket options: {e}")))?;
                    let slot = free.pop().unwrap_or(slots.len());
                    poll.registry()
                        .register(
                            &mut stream,
                            Token(slot),
                            Interest::READABLE | Interest::WRITABLE,
                        )
                        .map_err(|e| {
                            WsFailure::new("io", format!("registering the socket: {e}"))
                        })?;
                    Ok((slot, stream, upgrade))
                });
                match opened {
                    Ok((slot, stream, upgrade)) => {
                        gen += 1;
                        let hs = Handshake {
                            i,
                            stream,
                            upgrade,
                            connected: false,
                            planned,
                            plan,
                            gen,
                        };
                        if slot == slots.len() {
                            slots.push(Some(hs));
                        } else {
                            slots[slot] = Some(hs);
                        }
                        deadlines.push_back((now + opts.timeout, slot, gen));
                        live += 1;
                    }
                    Err(f) => fail(&mut stats, schedule, f),
                }
            }
            // Give up on upgrades that took too long.
            while let Some(&(at, slot, g)) = deadlines.front() {
                if at > now {
                    break;
                }
                deadlines.pop_front();
                if let Some(hs) = slots.get_mut(slot).and_then(|s| s.take_if(|h| h.gen == g)) {
                    let what = if hs.connected {
                        "handshake: no response in time"
                    } else {
                        "connect: timed out"
                    };
                    drop(hs);
                    free.push(slot);
                    live -= 1;
                    fail(&mut stats, schedule, WsFailure::new("timeout", what));
                }
            }
            if schedule.finished(now) && live == 0 {
                return Ok(stats);
            }
            let mut wait = MAX_POLL_WAIT;
            if let Some(at) = schedule.next_at() {
                wait = wait.min(at.saturating_duration_since(now));
            }
            if let Some(&(at, _, _)) = deadlines.front() {
                wait = wait.min(at.saturating_duration_since(now));
            }
            match poll.poll(&mut events, Some(wait)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
            for ev in events.iter() {
                let slot = ev.token().0;
                if ev.token() == CONNECTOR_WAKER {
                    continue; // ends are taken at the top of the loop
                }
                let Some(Some(hs)) = slots.get_mut(slot) else {
                    continue;
                };
                let step = advance_handshake(hs);
                match step {
                    Ok(None) => continue,
                    Ok(Some(leftover)) => {
                        let Some(mut hs) = slots[slot].take() else {
                            continue;
                        };
                        free.push(slot);
                        live -= 1;
                        // Dropping it closes it (and removes it from epoll) anyway.
                        let _ = poll.registry().deregister(&mut hs.stream);
                        let w = hs.i % senders.len();
                        let new = NewSession {
                            stream: hs.stream,
                            leftover,
                            t0: Instant::now(),
                            planned: hs.planned,
                            plan: hs.plan,
                        };
                        match senders[w].send(new) {
                            Ok(()) => {
                                if let Err(e) = wakers[w].wake() {
                                    eprintln!("warning: waking a stream worker: {e}");
                                }
                            }
                            Err(_) => fail(
                                &mut stats,
                                schedule,
                                WsFailure::new("io", format!("stream worker {w} has stopped")),
                            ),
                        }
                    }
                    Err(f) => {
                        slots[slot] = None;
                        free.push(slot);
                        live -= 1;
                        fail(&mut stats, schedule, f);
                    }
                }
            }
        }
    }
}

/// Moves one upgrade on: completes the connect, then writes the request and
/// reads the answer as far as the socket allows.
fn advance_handshake(hs: &mut Handshake) -> Result<Option<Vec<u8>>, WsFailure> {
    if !hs.connected {
        let refused = |e: io::Error| WsFailure::new("connect", format!("connect: {e}"));
        if let Some(e) = hs.stream.take_error().map_err(refused)? {
            return Err(refused(e));
        }
        match hs.stream.peer_addr() {
            Ok(_) => hs.connected = true,
            // Not connected yet (a spurious wake-up).
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(None),
            Err(e) => return Err(refused(e)),
        }
    }
    hs.upgrade.advance(&mut hs.stream)
}

/// What a chunk of the outgoing buffer is, to act when its last byte is out.
#[derive(Debug, Clone, Copy)]
enum Pending {
    /// An audio chunk of this many samples.
    Chunk(u64),
    /// The `end` message.
    End,
    /// A pong or the close reply.
    Control,
}

/// How a session's turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Over: finish and drop it.
    Done,
    /// Waiting for readiness or a timer.
    Wait,
    /// `--no-pace`: more to send now; give it another turn soon.
    Again,
}

/// One session owned by a worker.
struct Conn<'a> {
    stream: TcpStream,
    core: SessionCore<'a>,
    t0: Instant,
    hard_deadline: Instant,
    reader: FrameReader,
    /// Outgoing frames; `out[out_pos..]` is not written yet.
    out: Vec<u8>,
    out_pos: usize,
    /// Bytes written before `out[0]` over the connection's life.
    out_base: u64,
    /// `(cumulative end offset, what)` of queued frames not fully written.
    pending: VecDeque<(u64, Pending)>,
    /// Since when a write has been refused with no progress.
    blocked_since: Option<Instant>,
    /// WRITABLE interest is registered.
    write_interest: bool,
    close_sent: bool,
    eof: bool,
    /// The time of this session's live timer entry.
    timer_at: Option<Instant>,
    gen: u64,
    /// Drop the connection at this time without a close frame; `true`:
    /// with a TCP reset.
    abort_at: Option<(Instant, bool)>,
}

/// What a worker lends a session for its turn.
struct Ctx<'s> {
    audio: &'s [u8],
    rng: &'s mut MaskRng,
    scratch: &'s mut [u8],
    /// The OpenAI dialect's `append` event, reused.
    event: &'s mut Vec<u8>,
}

impl<'a> Conn<'a> {
    fn unsent(&self) -> usize {
        self.out.len() - self.out_pos
    }

    fn queue(&mut self, opcode: u8, payload: &[u8], what: Pending, rng: &mut MaskRng) {
        encode_client_frame(&mut self.out, opcode, payload, rng.next_mask());
        self.pending
            .push_back((self.out_base + self.out.len() as u64, what));
    }

    fn queue_next(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        match self.core.next_outgoing(self.t0, now) {
            Outgoing::Chunk { bytes, samples, .. } => {
                let payload = ctx.audio.get(bytes).unwrap_or_default();
                if self.core.opts.dialect == Dialect::Openai {
                    let mut event = std::mem::take(ctx.event);
                    openai::append_event(payload, &mut event);
                    self.queue(OP_TEXT, &event, Pending::Chunk(samples), ctx.rng);
                    *ctx.event = event;
                } else {
                    self.queue(OP_BINARY, payload, Pending::Chunk(samples), ctx.rng);
                }
            }
            Outgoing::End if self.core.opts.dialect == Dialect::Openai => {
                let commit = openai::END_MESSAGE.as_bytes();
                self.queue(OP_TEXT, commit, Pending::Control, ctx.rng);
                let probe = openai::END_PROBE.as_bytes();
                self.queue(OP_TEXT, probe, Pending::End, ctx.rng);
            }
            Outgoing::End => {
                let end = self.core.opts.dialect.end_message();
                self.queue(OP_TEXT, end.as_bytes(), Pending::End, ctx.rng);
            }
        }
    }

    /// Writes what the socket takes; records send times of completed frames.
    fn flush(&mut self, now: Instant) {
        while self.out_pos < self.out.len() {
            match self.stream.write(&self.out[self.out_pos..]) {
                Ok(0) => {
                    self.write_failed(&io::Error::from(io::ErrorKind::WriteZero));
                    return;
                }
                Ok(n) => {
                    self.out_pos += n;
                    self.blocked_since = None;
                    self.settle(Instant::now());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.blocked_since.get_or_insert(now);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.write_failed(&e);
                    return;
                }
            }
        }
        if self.out_pos == self.out.len() {
            self.out_base += self.out.len() as u64;
            self.out.clear();
            self.out_pos = 0;
        } else if self.out_pos >= OUT_COMPACT {
            self.out_base += self.out_pos as u64;
            self.out.drain(..self.out_pos);
            self.out_pos = 0;
        }
    }

    fn write_failed(&mut self, e: &io::Error) {
        if self.core.close_code.is_some() {
            // The server closed first and has gone: nothing more to say.
            self.eof = true;
            return;
        }
        let what = match self.pending.front() {
            Some((_, Pending::Chunk(_))) => "sending a chunk",
            Some((_, Pending::End)) => "sending end",
            _ => "writing",
        };
        self.core
            .fail(WsFailure::new(ws::classify_io(e), format!("{what}: {e}")));
    }

    /// Frames whose last byte has been written were sent at `at`.
    fn settle(&mut self, at: Instant) {
        let written = self.out_base + self.out_pos as u64;
        while let Some(&(end, what)) = self.pending.front() {
            if end > written {
                break;
            }
            self.pending.pop_front();
            match what {
                Pending::Chunk(samples) => self.core.chunk_sent(samples, at),
                Pending::End => self.core.end_sent(at),
                Pending::Control => {}
            }
        }
    }

    /// Handles every complete message received so far (arrived at `at`).
    fn process(&mut self, at: Instant, rng: &mut MaskRng) {
        loop {
            match self.reader.next_frame() {
                Ok(Some(ServerFrame::Text(text))) => self.core.on_text(&text, at),
                Ok(Some(ServerFrame::Binary(_))) => self.core.on_binary(),
                Ok(Some(ServerFrame::Close(code))) => {
                    if self.core.close_code.is_none() {
                        self.core.on_close(code.unwrap_or(1005), at);
                    }
                    if !self.close_sent {
                        self.close_sent = true;
                        let payload = code.map(u16::to_be_bytes);
                        let payload = payload.as_ref().map_or(&[][..], |p| &p[..]);
                        self.queue(OP_CLOSE, payload, Pending::Control, rng);
                    }
                }
                Ok(Some(ServerFrame::Ping(payload))) => {
                    if !self.close_sent {
                        self.queue(OP_PONG, &payload, Pending::Control, rng);
                    }
                }
                Ok(Some(ServerFrame::Pong)) => {}
                Ok(None) => return,
                Err(e) => {
                    self.core.fail(WsFailure::new("protocol", e.0));
                    return;
                }
            }
        }
    }

    /// Reads until the socket is drained (or the connection is over).
    fn read_all(&mut self, ctx: &mut Ctx<'_>) {
        loop {
            match self.stream.read(ctx.scratch) {
                Ok(0) => {
                    self.eof = true;
                    if self.core.close_code.is_none() {
                        self.core.fail(WsFailure::new(
                            "reset",
                            "connection lost without a close frame: \
                             Connection reset without closing handshake",
                        ));
                    }
                    return;
                }
                Ok(n) => {
                    let at = Instant::now();
                    self.reader.push(&ctx.scratch[..n]);
                    self.process(at, ctx.rng);
                    if self.core.failed() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.eof = true;
                    if self.core.close_code.is_none() {
                        self.core.fail(WsFailure::new(
                            ws::classify_io(&e),
                            format!("connection lost without a close frame: {e}"),
                        ));
                    }
                    return;
                }
            }
        }
    }

    /// One turn: read if readable, send what is due, check the bounds.
    fn step(&mut self, now: Instant, readable: bool, ctx: &mut Ctx<'_>) -> Step {
        if readable {
            self.read_all(ctx);
        }
        if self.core.failed() || self.eof {
            return Step::Done;
        }
        if let Some((at, rst)) = self.abort_at {
            if now >= at && self.core.close_code.is_none() {
                if rst {
                    set_linger_zero(&self.stream);
                }
                self.core.abort();
                return Step::Done;
            }
        }
        if now >= self.hard_deadline {
            self.core
                .fail(WsFailure::new("timeout", "session did not finish in time"));
            return Step::Done;
        }
        if let Some(since) = self.blocked_since {
            if now >= since + self.core.opts.timeout {
                self.core.fail(WsFailure::new(
                    "timeout",
                    "a write made no progress within --timeout",
                ));
                return Step::Done;
            }
        }
        let mut step = Step::Wait;
        if self.core.opts.pace {
            while self.core.next_due(self.t0).is_some_and(|due| due <= now) {
                self.queue_next(now, ctx);
            }
            self.flush(now);
        } else {
            let mut turn = 0usize;
            loop {
                while self.core.sending
                    && self.core.close_code.is_none()
                    && self.unsent() < NO_PACE_QUEUE
                {
                    self.queue_next(now, ctx);
                }
                let before = self.out_base + self.out_pos as u64;
                self.flush(now);
                turn += (self.out_base + self.out_pos as u64 - before) as usize;
                if self.unsent() > 0 || self.core.failed() || !self.core.sending {
                    break;
                }
                if turn >= NO_PACE_TURN {
                    step = Step::Again;
                    break;
                }
            }
        }
        if self.core.failed() || self.eof {
            return Step::Done;
        }
        if self.core.wants_close() && !self.close_sent {
            // The OpenAI dialect: every transcript is in; close (1000).
            self.close_sent = true;
            self.queue(OP_CLOSE, &1000u16.to_be_bytes(), Pending::Control, ctx.rng);
            self.flush(now);
        }
        if self.core.wait_expired(now).is_some() {
            return Step::Done;
        }
        step
    }

    /// The next moment this session needs a turn without I/O readiness.
    fn next_wakeup(&self) -> Instant {
        let mut at = self.hard_deadline;
        let mut min = |t: Option<Instant>| {
            if let Some(t) = t {
                at = at.min(t);
            }
        };
        min(self.core.next_due(self.t0));
        min(self.blocked_since.map(|t| t + self.core.opts.timeout));
        min(self.core.wait_deadline());
        min(self.abort_at.map(|a| a.0));
        at
    }
}

/// `SO_LINGER` with a zero timeout: closing the socket then sends a TCP
/// reset instead of a FIN. Best effort (a FIN is abrupt enough otherwise).
fn set_linger_zero(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `setsockopt` reads `size_of::<linger>()` bytes from a pointer
    // to a valid local `linger`, on a descriptor this stream owns and keeps
    // open for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::addr_of!(linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        eprintln!("warning: SO_LINGER: {}", std::io::Error::last_os_error());
    }
}

/// One worker thread: a `mio` poll over its sessions.
struct Worker<'a> {
    opts: &'a StreamOptions,
    map: ChunkMap,
    poll: Poll,
    conns: Vec<Option<Conn<'a>>>,
    free: Vec<usize>,
    live: usize,
    next_gen: u64,
    timers: TimerQueue,
    /// `--no-pace` sessions waiting for another turn.
    ready: VecDeque<(usize, u64)>,
    rng: MaskRng,
    scratch: Vec<u8>,
    /// The OpenAI dialect's `append` event, reused by every session.
    event: Vec<u8>,
    stats: StreamStats,
    /// Tells the connector about each session's end (and wakes it).
    ended: Option<(Sender<()>, Arc<Waker>)>,
}

impl<'a> Worker<'a> {
    fn new(opts: &'a StreamOptions, map: ChunkMap, poll: Poll, seed: u64) -> Self {
        Worker {
            opts,
            map,
            poll,
            conns: Vec::new(),
            free: Vec::new(),
            live: 0,
            next_gen: 0,
            timers: TimerQueue::new(),
            ready: VecDeque::new(),
            rng: MaskRng::new(seed),
            scratch: vec![0; READ_SCRATCH],
            event: Vec::new(),
            stats: StreamStats::new(),
            ended: None,
        }
    }

    /// Runs until the channel is closed and every session is over.
    fn run(mut self, rx: &Receiver<NewSession>) -> io::Result<StreamStats> {
        let mut events = Events::with_capacity(1024);
        let mut open = true;
        loop {
            while open {
                match rx.try_recv() {
                    Ok(new) => self.adopt(new),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => open = false,
                }
            }
            if !open && self.live == 0 {
                return Ok(self.stats);
            }
            let timeout = if self.ready.is_empty() {
                self.timers
                    .next_due()
                    .map_or(MAX_POLL_WAIT, |at| {
                        at.saturating_duration_since(Instant::now())
                    })
                    .min(MAX_POLL_WAIT)
            } else {
                Duration::ZERO
            };
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            for ev in events.iter() {
                if ev.token() == WAKER {
                    continue; // new sessions are taken at the top of the loop
                }
                let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
                self.turn(ev.token().0, None, now, readable);
            }
            while let Some((at, slot, gen)) = self.timers.pop_due(now) {
                let live = self.conns.get(slot).and_then(Option::as_ref);
                if live.is_some_and(|c| c.gen == gen && c.timer_at == Some(at)) {
                    if let Some(Some(c)) = self.conns.get_mut(slot) {
                        c.timer_at = None;
                    }
                    self.turn(slot, Some(gen), now, false);
                }
            }
            for _ in 0..self.ready.len() {
                if let Some((slot, gen)) = self.ready.pop_front() {
                    self.turn(slot, Some(gen), now, false);
                }
            }
        }
    }

    /// Takes over a freshly upgraded connection.
    fn adopt(&mut self, new: NewSession) {
        let mut core = SessionCore::new(self.opts, self.map);
        core.started(new.t0, new.planned);
        if let Some(length) = new.plan.length {
            core.set_length(length);
        }
        if let (Some(d), Some(_)) = (new.plan.delete_after, &self.opts.deletes) {
            core.set_delete_at(new.t0 + d);
        }
        let mut stream = new.stream;
        let slot = self.free.pop().unwrap_or(self.conns.len());
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(slot), Interest::READABLE)
        {
            core.fail(WsFailure::new("io", format!("registering the socket: {e}")));
            core.finish(&mut self.stats);
            if slot < self.conns.len() {
                self.free.push(slot);
            }
            self.notify_end();
            return;
        }
        self.next_gen += 1;
        let hard_deadline = core.hard_deadline(new.t0);
        let mut conn = Conn {
            stream,
            core,
            t0: new.t0,
            hard_deadline,
            reader: FrameReader::new(),
            out: Vec::with_capacity(1024),
            out_pos: 0,
            out_base: 0,
            pending: VecDeque::new(),
            blocked_since: None,
            write_interest: false,
            close_sent: false,
            eof: false,
            timer_at: None,
            gen: self.next_gen,
            abort_at: new.plan.abort_after.map(|(d, rst)| (new.t0 + d, rst)),
        };
        if !new.leftover.is_empty() {
            conn.reader.push(&new.leftover);
            conn.process(new.t0, &mut self.rng);
        }
        if slot == self.conns.len() {
            self.conns.push(Some(conn));
        } else {
            self.conns[slot] = Some(conn);
        }
        self.live += 1;
        self.turn(slot, None, Instant::now(), true);
    }

    /// Gives session `slot` a turn (if `gen` is given, only if it still is
    /// that session), then finishes it or updates its interest and timer.
    fn turn(&mut self, slot: usize, gen: Option<u64>, now: Instant, readable: bool) {
        let Some(Some(conn)) = self.conns.get_mut(slot) else {
            return;
        };
        if gen.is_some_and(|g| g != conn.gen) {
            return;
        }
        let mut ctx = Ctx {
            audio: &self.opts.audio.data,
            rng: &mut self.rng,
            scratch: &mut self.scratch,
            event: &mut self.event,
        };
        let step = conn.step(now, readable, &mut ctx);
        if step == Step::Done {
            self.close(slot);
            return;
        }
        let want_write = conn.unsent() > 0;
        if want_write != conn.write_interest {
            let interest = if want_write {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if let Err(e) = self
                .poll
                .registry()
                .reregister(&mut conn.stream, Token(slot), interest)
            {
                conn.core
                    .fail(WsFailure::new("io", format!("registering the socket: {e}")));
                self.close(slot);
                return;
            }
            conn.write_interest = want_write;
        }
        if step == Step::Again {
            self.ready.push_back((slot, conn.gen));
        }
        let at = conn.next_wakeup();
        if conn.timer_at != Some(at) {
            conn.timer_at = Some(at);
            self.timers.schedule(at, slot, conn.gen);
        }
    }

    /// Ends session `slot`: deregisters and drops the socket, folds its
    /// measurements into the worker's.
    fn close(&mut self, slot: usize) {
        let Some(mut conn) = self.conns.get_mut(slot).and_then(Option::take) else {
            return;
        };
        // Dropping the socket closes it (and removes it from epoll) anyway.
        let _ = self.poll.registry().deregister(&mut conn.stream);
        conn.core.finish(&mut self.stats);
        self.free.push(slot);
        self.live -= 1;
        self.notify_end();
    }

    /// Reports a session's end to the connector, if it wants to know.
    fn notify_end(&self) {
        if let Some((tx, waker)) = &self.ended {
            // The connector may have stopped opening sessions and returned.
            if tx.send(()).is_ok() {
                let _ = waker.wake();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_pop_in_time_order_and_only_when_due() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let mut q = TimerQueue::new();
        assert!(q.is_empty());
        assert_eq!(q.pop_due(t + ms(1000)), None);
        q.schedule(t + ms(30), 3, 1);
        q.schedule(t + ms(10), 7, 1);
        q.schedule(t + ms(20), 1, 1);
        q.schedule(t + ms(10), 2, 5); // same time: lower slot first
        q.schedule(t + ms(40), 0, 1);
        assert_eq!(q.len(), 5);
        assert_eq!(q.next_due(), Some(t + ms(10)));
        assert_eq!(q.pop_due(t + ms(9)), None, "nothing is due yet");
        let mut got = Vec::new();
        while let Some((at, slot, gen)) = q.pop_due(t + ms(30)) {
            got.push((at.duration_since(t).as_millis(), slot, gen));
        }
        assert_eq!(got, vec![(10, 2, 5), (10, 7, 1), (20, 1, 1), (30, 3, 1)]);
        assert_eq!(q.next_due(), Some(t + ms(40)));
        // A timer scheduled earlier than the rest comes out first.
        q.schedule(t + ms(35), 9, 2);
        assert_eq!(q.pop_due(t + ms(100)), Some((t + ms(35), 9, 2)));
        assert_eq!(q.pop_due(t + ms(100)), Some((t + ms(40), 0, 1)));
        assert!(q.is_empty());
    }

    #[test]
    fn many_timers_come_out_sorted() {
        let t = Instant::now();
        let mut q = TimerQueue::new();
        // A scrambled but deterministic order.
        for i in 0..1000u64 {
            let k = (i * 7919) % 1000;
            q.schedule(t + Duration::from_micros(k * 20), k as usize, 0);
        }
        let mut last = t;
        let mut n = 0;
        while let Some((at, _, _)) = q.pop_due(t + Duration::from_secs(1)) {
            assert!(at >= last);
            last = at;
            n += 1;
        }
        assert_eq!(n, 1000);
    }
}
