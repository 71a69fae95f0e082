//! The connection task of one stream: admission ([`admit`]: the node's own
//! limits, then the cluster's), the session's start (its entry in the core's
//! shard and the cluster registry, held by a [`ShardEntry`]), the reader
//! and writer (`socket.rs`), and its end: the session's figures are counted
//! and its permit and lease given back.
//!
//! The parts: [`StreamCtx`] (`stream.rs`) is the live session as the shard
//! holds it and [`pump`] what follows each event; `jobs.rs` its model jobs;
//! `socket.rs` the reader and writer tasks.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use monoio::io::{OwnedReadHalf, Splitable};
use monoio::net::TcpStream;

use super::codec::{Codec, Frame};
use super::resume::ResumeState;
use super::socket::{finish, read_loop, write_loop};
use super::stream::{end_session, pump, send_outputs, sync_gauges, FinalsQueue, StreamCtx};
use super::transport::Link;
use crate::cluster::{Admit, LeaseGuard};
use crate::core::permit::{Refusal, SessionPermit};
use crate::core::{CoreContext, ShardSession};
use crate::error::WsErrorKind;
use crate::model::capacity::StreamReservation;
use crate::rt::{catch_unwind_future, Latch, Notify};
use crate::session::{EndReason, Session, SessionConfig, SessionEvent, StreamParams};

/// Finals a session holds while the model queue is full before it stops
/// reading the client's audio (TCP then pushes back on the client).
pub const FINALS_WAITING_MAX: usize = 8;

/// Finals one session may have with the engine at once. A real-time session
/// has one or two; a client sending audio faster than real time waits for
/// its own results beyond this instead of queueing ahead of every other
/// session (locally or on the engine tier, where the front end's whole
/// allowance of outstanding jobs is shared).
pub const FINALS_IN_FLIGHT_MAX: usize = 4;

/// Serve a connection that has just been upgraded. `leftover` holds the bytes
/// that followed the request head.
pub async fn serve(
    stream: TcpStream,
    leftover: Vec<u8>,
    peer: SocketAddr,
    core: Rc<CoreContext>,
    finals: Rc<FinalsQueue>,
    codec: Box<dyn Codec>,
    query: Option<String>,
) {
    // Only the native protocol resumes; other routes ignore `resume`.
    if codec.resumable() && super::resume::ResumeRequest::from_query(query.as_deref()).is_some() {
        super::resume::serve_resume(stream, leftover, peer, core, query).await;
        return;
    }
    let settings = &core.shared.settings.session;
    let link = Rc::new(Link::new(
        leftover,
        codec.message_bytes_max(settings.ws_message_bytes_max),
        settings.ws_outbound_messages_max,
    ));
    let (reader, writer) = stream.into_split();
    let writer = monoio::spawn(write_loop(Rc::clone(&link), writer));

    let Some((permit, demand, lease)) = admit(&core, &link, codec.as_ref(), peer).await else {
        finish(&link, reader).await;
        let _ = writer.await;
        return;
    };
    let mut params = StreamParams::new(settings.vad_mode);
    if let Err(message) = codec.apply_query(&mut params, query.as_deref()) {
        refuse(
            &link,
            codec.as_ref(),
            WsErrorKind::UnsupportedFormat,
            message,
        );
        finish(&link, reader).await;
        let _ = writer.await;
        return;
    }
    let config = SessionConfig {
        vad_hangover_ms: settings.vad_hangover_ms,
        max_segment_ms: settings.max_segment_ms,
        interim_interval_ms: settings.interim_interval_ms,
        finals_waiting_max: FINALS_WAITING_MAX,
        finals_in_flight_max: FINALS_IN_FLIGHT_MAX,
    };
    let id = uuid::Uuid::new_v4().to_string();
    let session = Session::new(id.clone(), params, config, Instant::now());
    let ctx = Rc::new(StreamCtx {
        core: Rc::clone(&core),
        link: RefCell::new(Rc::clone(&link)),
        session: RefCell::new(session),
        peer: Cell::new(peer),
        counted_state: Cell::new(None),
        retry_scheduled: Cell::new(false),
        slow_check_scheduled: Cell::new(false),
        unblocked: Notify::default(),
        finals,
        codec,
        frames: RefCell::new(Vec::new()),
        over: Latch::default(),
        demand: RefCell::new(demand),
        interim_superseded: RefCell::new(None),
        hold: RefCell::new(None),
        resume: RefCell::new(ResumeState::default()),
    });
    let entry = ShardEntry::insert(&ctx, id.clone());
    *ctx.hold.borrow_mut() = Some(SessionHold {
        entry,
        lease,
        permit,
    });
    super::resume::offer(&ctx);
    core.metrics.count(|c| c.sessions_created += 1);
    tracing::debug!(core = core.core_id, session_id = %id, %peer, "session started");
    let start = ctx.session.borrow().start_event();
    let mut frames = Vec::new();
    ctx.codec.encode(start, &mut frames);
    for frame in frames {
        push_frame(&link, frame);
    }
    // Admitted just before the drain began refusing (a cluster lease was
    // on its way): it ends like every session the drain found.
    if core.shared.is_refusing_work() {
        end_session(&ctx, EndReason::ServerShutdown);
    }
    sync_gauges(&ctx);
    if let Some(limit) = settings.max_session_duration {
        monoio::spawn(end_at_max_duration(
            Rc::downgrade(&ctx),
            limit,
            ctx.over.clone(),
        ));
    }

    run_connection(&ctx, reader).await;
    link.reader_done.set(true);
    link.writer_wake.notify();
    let _ = writer.await;
}

/// Read the session's connection until it is over, then end the session,
/// or detach it for a resume when the client dropped away (`resume.rs`).
pub(super) async fn run_connection(ctx: &Rc<StreamCtx>, reader: OwnedReadHalf<TcpStream>) {
    // A bug reached by this session closes it with `internal` (1011); the
    // core and its other sessions go on.
    if let Err(message) = catch_unwind_future(read_loop(ctx, reader)).await {
        ctx.core.metrics.count(|c| c.task_panics += 1);
        tracing::error!(core = ctx.core.core_id, session_id = ctx.session.borrow().id(), %message, "a session panicked; closing it");
        ctx.session
            .borrow_mut()
            .fail(WsErrorKind::Internal, "internal error".to_string());
        send_outputs(ctx);
    }
    if super::resume::should_detach(ctx) {
        super::resume::detach(ctx);
    } else {
        finish_session(ctx);
    }
}

/// What a session holds for its whole life, given back together when it
/// is over.
pub(super) struct SessionHold {
    entry: ShardEntry,
    lease: Option<LeaseGuard>,
    permit: SessionPermit,
}

/// The session is over, whatever state it was in: it ends (if it has not),
/// its figures are counted, and its shard entry, lease and permit are given
/// back. Once: later calls do nothing.
pub(super) fn finish_session(ctx: &Rc<StreamCtx>) {
    let Some(hold) = ctx.hold.borrow_mut().take() else {
        return;
    };
    super::resume::forget(ctx);
    let core = &ctx.core;
    ctx.session
        .borrow_mut()
        .end(EndReason::ClientDisconnect, Instant::now());
    pump(ctx);
    let SessionHold {
        entry,
        lease,
        permit,
    } = hold;
    drop(entry);
    let reason = ctx
        .session
        .borrow()
        .end_reason()
        .unwrap_or(EndReason::ClientDisconnect);
    core.metrics.count(|c| {
        *c.sessions_closed.entry(reason.name()).or_default() += 1;
    });
    tracing::debug!(
        core = core.core_id,
        session_id = ctx.session.borrow().id(),
        reason = reason.name(),
        "session closed"
    );
    drop(lease);
    drop(permit);
    ctx.over.trigger();
}

/// Admit a session from `peer`: a slot under the node's own limits, a share
/// of the engine's capacity (`model/capacity.rs`), then (cluster mode with
/// `cluster_max_sessions`) a cluster lease. All are held for the session's
/// life. `None` when a limit refused it: the refusal
/// is counted and queued for the client, and the connection only has to
/// finish its close handshake.
async fn admit(
    core: &CoreContext,
    link: &Link,
    codec: &dyn Codec,
    peer: SocketAddr,
) -> Option<(SessionPermit, StreamReservation, Option<LeaseGuard>)> {
    if core.shared.is_refusing_work() {
        core.metrics.count(|c| c.sessions_rejected += 1);
        tracing::debug!(core = core.core_id, %peer, "session refused: draining");
        refuse(
            link,
            codec,
            WsErrorKind::ShuttingDown,
            "the server is shutting down; reconnect to another node".into(),
        );
        return None;
    }
    let permit = match SessionPermit::acquire(&core.shared.session_limits, peer.ip()) {
        Ok(permit) => permit,
        Err(refusal) => {
            core.metrics.count(|c| {
                c.sessions_rejected += 1;
                if refusal == Refusal::PeerFull {
                    c.sessions_rejected_per_peer += 1;
                }
            });
            tracing::debug!(core = core.core_id, %peer, ?refusal, "session refused");
            refuse(
                link,
                codec,
                WsErrorKind::SessionLimitExceeded,
                refusal.message().into(),
            );
            return None;
        }
    };
    // The engine's share before the cluster's lease, so a node whose engine
    // is saturated never takes a cluster slot.
    let demand = match core.shared.to_pool.load().admit_stream(Instant::now()) {
        Ok(demand) => demand,
        Err(saturated) => {
            core.metrics.count(|c| c.sessions_rejected += 1);
            tracing::debug!(core = core.core_id, %peer, "session refused: the engine is saturated");
            refuse_with_close(
                link,
                codec,
                SessionEvent::Error {
                    kind: WsErrorKind::Overloaded,
                    message: "the speech engine is at its capacity; retry later".into(),
                    retry_after_s: Some(saturated.retry_after_s),
                },
                1013,
            );
            return None;
        }
    };
    // Cluster-wide admission comes after the local limits, so a node that is
    // full itself never takes a cluster slot.
    match admit_in_cluster(core).await {
        Ok(lease) => Some((permit, demand, lease)),
        Err((kind, message)) => {
            core.metrics.count(|c| c.sessions_rejected += 1);
            tracing::debug!(core = core.core_id, %peer, code = kind.code(), "session refused by the cluster");
            refuse_with_close(link, codec, error_event(kind, message.into()), 1013);
            None
        }
    }
}

/// A session's entry in its core's shard and, in cluster mode, in the
/// registry: made when the session starts; dropping it removes the session
/// from the shard and tells the cluster it closed.
struct ShardEntry {
    core: Rc<CoreContext>,
    id: String,
}

impl ShardEntry {
    fn insert(ctx: &Rc<StreamCtx>, id: String) -> ShardEntry {
        let core = Rc::clone(&ctx.core);
        core.sessions
            .borrow_mut()
            .insert(id.clone(), Rc::clone(ctx) as Rc<dyn ShardSession>);
        if let Some(cluster) = &core.shared.cluster {
            cluster.handle.session_opened(ctx.info().to_record());
        }
        ShardEntry { core, id }
    }
}

impl Drop for ShardEntry {
    fn drop(&mut self) {
        self.core.sessions.borrow_mut().remove(&self.id);
        if let Some(cluster) = &self.core.shared.cluster {
            cluster.handle.session_closed(&self.id);
        }
    }
}

/// End the session with `max_duration` once it has lasted `limit`, unless
/// it is over before (`session_over`). Holds the session only weakly.
async fn end_at_max_duration(ctx: Weak<StreamCtx>, limit: Duration, session_over: Latch) {
    let over = session_over.wait();
    monoio::select! {
        _ = monoio::time::sleep(limit) => {
            if let Some(ctx) = ctx.upgrade() {
                tracing::debug!(core = ctx.core.core_id, session_id = %ctx.session.borrow().id(), "session reached its maximum duration");
                end_session(&ctx, EndReason::MaxDuration);
            }
        },
        _ = over => {},
    }
}

/// Refuse a session before it starts: an error, then the close frame.
fn refuse(link: &Link, codec: &dyn Codec, kind: WsErrorKind, message: String) {
    let close_code = kind.close_code().unwrap_or(1011);
    refuse_with_close(link, codec, error_event(kind, message), close_code);
}

/// The error event of a refusal that says nothing of when to retry.
fn error_event(kind: WsErrorKind, message: String) -> SessionEvent {
    SessionEvent::Error {
        kind,
        message,
        retry_after_s: None,
    }
}

/// [`refuse`] with a chosen error event and close code (for kinds that do
/// not close by themselves, such as `overloaded`).
fn refuse_with_close(link: &Link, codec: &dyn Codec, error: SessionEvent, close_code: u16) {
    let mut frames = Vec::new();
    codec.encode(error, &mut frames);
    for frame in frames {
        push_frame(link, frame);
    }
    link.push_close(close_code);
}

/// Queue a frame before the session exists (its start, a refusal): the
/// outbound queue is empty then, so no backlog can build.
fn push_frame(link: &Link, frame: Frame) {
    match frame {
        Frame::Text { text, sheddable } => {
            link.push_text(text, sheddable);
        }
        Frame::Close(code) => link.push_close(code),
        Frame::CloseWithReason(code, reason) => link.push_close_with_reason(code, reason),
    }
}

/// Cluster-wide admission (cluster mode with `cluster_max_sessions`): a
/// slot from the node's pool of Redis leases, held for the session's life.
/// `Ok(None)` when there is no cluster bound (nothing to hold, no cost).
///
/// # Errors
/// The error to send before closing 1013: `session_limit_exceeded` when the
/// cluster is full, `overloaded` when Redis cannot be reached and the fail
/// mode is `closed`.
async fn admit_in_cluster(
    core: &CoreContext,
) -> Result<Option<LeaseGuard>, (WsErrorKind, &'static str)> {
    let Some(admission) = core
        .shared
        .cluster
        .as_ref()
        .and_then(|cluster| cluster.admission.as_ref())
    else {
        return Ok(None);
    };
    match admission.admit().await {
        Admit::Granted(lease) => Ok(Some(lease)),
        Admit::Refused => Err((
            WsErrorKind::SessionLimitExceeded,
            "the cluster is at its session limit; retry later",
        )),
        Admit::Unavailable => Err((
            WsErrorKind::Overloaded,
            "cluster admission is unavailable (Redis cannot be reached); retry later",
        )),
    }
}
