//! One live streaming session and its connection: [`StreamCtx`], as the
//! core's shard holds it (it implements the core's `ShardSession`), and what
//! follows every event: [`pump`] submits the jobs the session asks for
//! (`jobs.rs`), moves its outputs to the writer, counts its figures and keeps
//! the per-state gauges in step. A client that does not read its messages is
//! closed here as a slow consumer.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::codec::{Codec, Frame};
use super::conn::SessionHold;
use super::resume::ResumeState;
use super::transport::{Backlog, Link};
use crate::core::{CoreContext, SessionInfo, ShardSession};
use crate::error::WsErrorKind;
use crate::metrics::record_duration;
use crate::model::capacity::StreamReservation;
use crate::rt::{Latch, Notify};
use crate::session::{EndReason, Session, SessionEvent, SessionState};

/// How long we wait for the client's close frame after sending ours.
pub(super) const CLOSE_HANDSHAKE_MS: u64 = 2_000;

/// A live session and its connection, as the core's shard holds it.
pub struct StreamCtx {
    pub(super) core: Rc<CoreContext>,
    /// The connection; a resumed session gets the new one (`resume.rs`).
    pub(super) link: RefCell<Rc<Link>>,
    pub(super) session: RefCell<Session>,
    /// The client's address (of its latest connection).
    pub(super) peer: Cell<SocketAddr>,
    /// The state last counted in the global gauges.
    pub(super) counted_state: Cell<Option<SessionState>>,
    pub(super) retry_scheduled: Cell<bool>,
    pub(super) slow_check_scheduled: Cell<bool>,
    /// Wakes the reader when finals waiting for the model queue drop below
    /// the bound again.
    pub(super) unblocked: Notify,
    /// The core's sessions whose finals wait for room in the model queue.
    pub(super) finals: Rc<FinalsQueue>,
    /// The wire protocol the client speaks (this connection's codec).
    pub(super) codec: Box<dyn Codec>,
    /// Frames being sent, reused between events.
    pub(super) frames: RefCell<Vec<Frame>>,
    /// Fires once the connection is over: the session's result tasks then
    /// drop their receivers, so the pool drops the jobs nobody waits for.
    pub(super) over: Latch,
    /// The session's share of the engine's capacity, kept up to date with
    /// the audio its finals hand the engine; given back when it drops.
    pub(super) demand: RefCell<StreamReservation>,
    /// Fires when the interim in flight is superseded (by the next interim
    /// or by its segment's final): its result task then drops its receiver,
    /// and the pool skips the job if it has not begun it.
    pub(super) interim_superseded: RefCell<Option<(u64, Latch)>>,
    /// What the session holds for its whole life (shard entry, permit,
    /// lease), given back once by [`super::conn::finish_session`].
    pub(super) hold: RefCell<Option<SessionHold>>,
    /// The resume token, the finals kept for a replay, and whether the
    /// connection is gone (`resume.rs`).
    pub(super) resume: RefCell<ResumeState>,
}

impl StreamCtx {
    /// The session's current connection.
    pub(super) fn link(&self) -> Rc<Link> {
        Rc::clone(&self.link.borrow())
    }
}

/// A core's sessions whose finals wait for room in the model queue, retried
/// by one task per core ([`retry_waiting_finals`]).
#[derive(Default)]
pub struct FinalsQueue {
    pub(super) waiting: RefCell<Vec<Rc<StreamCtx>>>,
    pub(super) wake: Notify,
}

impl ShardSession for StreamCtx {
    fn info(&self) -> SessionInfo {
        let session = self.session.borrow();
        let figures = session.figures();
        let idle = session.last_activity().elapsed();
        SessionInfo {
            session_id: session.id().to_string(),
            state: session.state().name(),
            protocol: self.codec.name().to_string(),
            core: self.core.core_id,
            created_at: humantime::format_rfc3339_millis(session.created_at).to_string(),
            last_activity_at: humantime::format_rfc3339_millis(session.last_activity_at())
                .to_string(),
            idle_s: (idle.as_secs_f64() * 1000.0).round() / 1000.0,
            audio_bytes: figures.audio_bytes,
            audio_seconds: (figures.audio_seconds * 1000.0).round() / 1000.0,
            chunks: figures.chunks,
            segments: figures.segments,
            transcripts: figures.transcripts,
            peer: self.peer.get().to_string(),
            node: self
                .core
                .shared
                .cluster
                .as_ref()
                .map(|cluster| cluster.handle.node_id().to_string()),
            detached: self.resume.borrow().is_detached(),
        }
    }

    fn gauge_index(&self) -> Option<usize> {
        gauge_index(self.session.borrow().state())
    }

    fn last_activity(&self) -> Instant {
        self.session.borrow().last_activity()
    }

    fn end(self: Rc<Self>, reason: EndReason) {
        end_session(&self, reason);
    }

    fn end_after_finals(self: Rc<Self>, reason: EndReason) {
        self.session
            .borrow_mut()
            .end_after_finals(reason, Instant::now());
        pump(&self);
    }
}

/// End the session (operator, idle sweep, shutdown, maximum duration) and
/// act on it.
pub(super) fn end_session(ctx: &Rc<StreamCtx>, reason: EndReason) {
    ctx.session.borrow_mut().end(reason, Instant::now());
    pump(ctx);
}

/// After any event: submit the jobs the session asks for, send its outputs,
/// and keep the shard's figures current.
pub(super) fn pump(ctx: &Rc<StreamCtx>) {
    ctx.submit_jobs();
    ctx.demand.borrow_mut().refresh_if_due(Instant::now());
    send_outputs(ctx);
    let tally = ctx.session.borrow_mut().take_tally();
    let shed = ctx.link().shed.replace(0);
    ctx.core.metrics.count(|c| {
        c.stream_audio_bytes += tally.audio_bytes;
        c.stream_audio_seconds += tally.audio_seconds;
        c.stream_chunks += tally.chunks;
        c.stream_segments += tally.segments;
        c.transcripts_interim += tally.interims_sent;
        c.transcripts_final += tally.finals_sent;
        c.interims_shed += tally.interims_shed + shed;
        c.interims_superseded += tally.interims_superseded;
    });
    if !tally.final_latencies.is_empty() {
        ctx.core.metrics.record(|h| {
            for latency in &tally.final_latencies {
                record_duration(&mut h.final_latency_us, *latency);
            }
        });
    }
    sync_gauges(ctx);
    if !ctx.session.borrow().is_backpressured() {
        ctx.unblocked.notify();
    }
    // A detached session that ended (operator, idle sweep, shutdown) has
    // no connection task to give its slot back.
    if ctx.session.borrow().state() == SessionState::Closed && ctx.resume.borrow().is_detached() {
        super::resume::end_detached(ctx);
    }
}

pub(super) fn send_outputs(ctx: &Rc<StreamCtx>) {
    let events: Vec<SessionEvent> = ctx.session.borrow_mut().take_events().collect();
    // The frames buffer is reused; taken, not borrowed, because pushing a
    // frame can close a slow consumer, which sends outputs again.
    let mut frames = ctx.frames.take();
    // Frames the codec queued while it handled client frames come first.
    ctx.codec.take_frames(&mut frames);
    deliver(ctx, &mut frames, None);
    for event in events {
        let final_of = match &event {
            SessionEvent::Final { segment_id, .. } => Some(*segment_id),
            _ => None,
        };
        ctx.codec.encode(event, &mut frames);
        deliver(ctx, &mut frames, final_of);
    }
    ctx.frames.replace(frames);
}

/// Hand the frames of one event to the connection (`final_of`: the segment
/// whose final they say). A resumable session also keeps its finals for a
/// replay; a detached one keeps what it would have sent (`resume.rs`).
fn deliver(ctx: &Rc<StreamCtx>, frames: &mut Vec<Frame>, final_of: Option<u64>) {
    if frames.is_empty() {
        return;
    }
    if ctx.resume.borrow().is_on() {
        let kept = ctx.resume.borrow_mut().keep(frames, final_of);
        if !kept {
            // Detached with its bound reached: end rather than drop a final.
            frames.clear();
            super::resume::overflow(ctx);
            return;
        }
        if ctx.resume.borrow().is_detached() {
            frames.clear();
            return;
        }
    }
    let link = ctx.link();
    for frame in frames.drain(..) {
        match frame {
            Frame::Text { text, sheddable } => match link.push_tagged(text, sheddable, final_of) {
                Backlog::Fine => {}
                Backlog::Over(since) => schedule_slow_check(ctx, since),
                Backlog::Overflow => close_slow_consumer(ctx),
            },
            Frame::Close(code) => link.push_close(code),
            Frame::CloseWithReason(code, reason) => link.push_close_with_reason(code, reason),
        }
    }
}

fn schedule_slow_check(ctx: &Rc<StreamCtx>, since: Instant) {
    if ctx.slow_check_scheduled.replace(true) {
        return;
    }
    let timeout = ctx.core.shared.settings.session.slow_consumer_timeout;
    let ctx = Rc::clone(ctx);
    monoio::spawn(async move {
        monoio::time::sleep_until(monoio::time::Instant::from_std(since + timeout)).await;
        ctx.slow_check_scheduled.set(false);
        if ctx.link().still_over_since(since) {
            close_slow_consumer(&ctx);
        }
    });
}

/// Close a client that does not read: what is queued is dropped (the client
/// is told why), and if even the close cannot be written the connection is
/// abandoned after the close handshake time.
fn close_slow_consumer(ctx: &Rc<StreamCtx>) {
    if ctx.session.borrow().state() == SessionState::Closed {
        return;
    }
    ctx.core.metrics.count(|c| c.slow_consumers += 1);
    tracing::info!(
        core = ctx.core.core_id,
        session_id = ctx.session.borrow().id(),
        "closing a slow consumer"
    );
    ctx.link().discard_outbound();
    ctx.session.borrow_mut().fail(
        WsErrorKind::SlowConsumer,
        "the client does not read its messages".into(),
    );
    send_outputs(ctx);
    let link = ctx.link();
    monoio::spawn(async move {
        monoio::time::sleep(Duration::from_millis(CLOSE_HANDSHAKE_MS)).await;
        link.kill.trigger();
    });
}

/// Keep the global per-state gauges in step with the session.
pub(super) fn sync_gauges(ctx: &StreamCtx) {
    let state = ctx.session.borrow().state();
    let previous = ctx.counted_state.get();
    if previous == Some(state) {
        return;
    }
    let gauges = &ctx.core.shared.sessions_by_state;
    if let Some(index) = previous.and_then(gauge_index) {
        gauges[index].fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
    if let Some(index) = gauge_index(state) {
        gauges[index].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    ctx.counted_state.set(Some(state));
}

fn gauge_index(state: SessionState) -> Option<usize> {
    match state {
        SessionState::Created => Some(0),
        SessionState::Active => Some(1),
        SessionState::Closing => Some(2),
        SessionState::Closed => None,
    }
}
