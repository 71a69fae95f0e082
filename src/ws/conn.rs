//! The driver of one streaming connection: admission, the reader and writer
//! tasks, the model jobs of its session, and its entry in the core's shard.
//!
//! The reader task (the connection's own task) reads the socket, lets the
//! [`Link`] decode frames and hands them to the [`Session`]; after every
//! event [`pump`] submits the jobs the session asks for, spawns a small task
//! per job that awaits its result and feeds it back, and moves the session's
//! outputs to the writer. The writer task writes them. A read is only ever
//! abandoned when the connection is closing, so no audio byte is lost.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use monoio::io::{
    AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable,
};
use monoio::net::TcpStream;
use serde::Serialize;
use tungstenite::Message;

use super::permit::SessionPermit;
use super::protocol::{ServerMessage, StreamParams};
use super::session::{EndReason, JobRequest, Output, Session, SessionConfig, SessionState};
use super::transport::{Backlog, Link};
use crate::cluster::{Admit, LeaseGuard, SessionRecord};
use crate::core::unwind::catch_unwind_future;
use crate::core::{CoreContext, DrainSignal, Notify};
use crate::error::WsErrorKind;
use crate::metrics::record_duration;
use crate::model::pool::{Job, JobKind, SubmitError, ToPool};
use crate::model::TranscribeOptions;

/// Bytes read from the socket at a time.
const READ_BYTES: usize = 4 * 1024;

/// How long we wait for the client's close frame after sending ours.
const CLOSE_HANDSHAKE_MS: u64 = 2_000;

/// How often finals refused by a full model queue are offered again.
const FINAL_RETRY_MS: u64 = 2;

/// Finals a session holds while the model queue is full before it stops
/// reading the client's audio (TCP then pushes back on the client).
pub const FINALS_WAITING_MAX: usize = 8;

/// In builds with the `fault-injection` feature (tests only), this text
/// message makes the session's reader panic, to prove the isolation.
#[cfg(feature = "fault-injection")]
pub const FAULT_INJECTION_MESSAGE: &str = r#"{"type":"__inject_panic"}"#;

/// An operator's view of a session (API.md, "Sessions").
#[derive(Debug, Clone, Serialize)]
pub struct SessionInfo {
    pub session_id: String,
    pub state: &'static str,
    pub core: usize,
    pub created_at: String,
    pub last_activity_at: String,
    pub idle_s: f64,
    pub audio_bytes: u64,
    pub audio_seconds: f64,
    pub chunks: u64,
    pub segments: u64,
    pub transcripts: u64,
    pub peer: String,
    /// The owning node, in cluster mode only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl SessionInfo {
    /// The registry's form of this view (cluster mode); the agent fills in
    /// the node.
    pub fn to_record(&self) -> SessionRecord {
        SessionRecord {
            session_id: self.session_id.clone(),
            node: String::new(),
            state: self.state.to_string(),
            core: self.core,
            created_at: self.created_at.clone(),
            last_activity_at: self.last_activity_at.clone(),
            audio_bytes: self.audio_bytes,
            audio_seconds: self.audio_seconds,
            chunks: self.chunks,
            segments: self.segments,
            transcripts: self.transcripts,
            peer: self.peer.clone(),
        }
    }

    /// The view of a session another node owns, from its registry record
    /// (as fresh as that node's last update, about a second).
    pub fn from_record(record: SessionRecord, now: std::time::SystemTime) -> SessionInfo {
        let state = SessionState::parse(&record.state).map_or("active", SessionState::name);
        SessionInfo {
            idle_s: record.idle_seconds(now).unwrap_or(0.0),
            session_id: record.session_id,
            state,
            core: record.core,
            created_at: record.created_at,
            last_activity_at: record.last_activity_at,
            audio_bytes: record.audio_bytes,
            audio_seconds: record.audio_seconds,
            chunks: record.chunks,
            segments: record.segments,
            transcripts: record.transcripts,
            peer: record.peer,
            node: Some(record.node),
        }
    }
}

/// A live session and its connection, as the core's shard holds it.
pub struct StreamCtx {
    core: Rc<CoreContext>,
    link: Rc<Link>,
    session: RefCell<Session>,
    peer: SocketAddr,
    /// The state last counted in the global gauges.
    counted_state: Cell<Option<SessionState>>,
    retry_scheduled: Cell<bool>,
    slow_check_scheduled: Cell<bool>,
    /// Wakes the reader when finals waiting for the model queue drop below
    /// the bound again.
    unblocked: Notify,
}

impl StreamCtx {
    /// The operator view.
    pub fn info(&self) -> SessionInfo {
        let session = self.session.borrow();
        let figures = session.figures();
        let idle = session.last_activity().elapsed();
        SessionInfo {
            session_id: session.id().to_string(),
            state: session.state().name(),
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
            peer: self.peer.to_string(),
            node: self
                .core
                .shared
                .cluster
                .as_ref()
                .map(|cluster| cluster.handle.node_id().to_string()),
        }
    }

    /// The index of the session's state in the per-state gauges.
    pub fn state_index(&self) -> Option<usize> {
        gauge_index(self.session.borrow().state())
    }

    pub fn last_activity(&self) -> Instant {
        self.session.borrow().last_activity()
    }

    /// End the session (operator, idle sweep, shutdown) and act on it.
    pub fn end(self: &Rc<Self>, reason: EndReason) {
        self.session.borrow_mut().end(reason, Instant::now());
        pump(self);
    }
}

/// Serve a connection that has just been upgraded. `leftover` holds the bytes
/// that followed the request head.
pub async fn serve(
    stream: TcpStream,
    leftover: Vec<u8>,
    peer: SocketAddr,
    core: Rc<CoreContext>,
    query: Option<String>,
) {
    let settings = &core.shared.settings;
    let link = Rc::new(Link::new(
        leftover,
        settings.ws_message_bytes_max,
        settings.ws_outbound_messages_max,
    ));
    let (reader, writer) = stream.into_split();
    let writer = monoio::spawn(write_loop(Rc::clone(&link), writer));

    let permit = match SessionPermit::acquire(&core.shared, peer.ip()) {
        Ok(permit) => permit,
        Err(refusal) => {
            core.metrics.count(|c| {
                c.sessions_rejected += 1;
                if refusal == super::permit::Refusal::PeerFull {
                    c.sessions_rejected_per_peer += 1;
                }
            });
            tracing::debug!(core = core.core_id, %peer, ?refusal, "session refused");
            refuse(
                &link,
                WsErrorKind::SessionLimitExceeded,
                refusal.message().into(),
            );
            finish(&link, reader).await;
            let _ = writer.await;
            return;
        }
    };
    // Cluster-wide admission comes after the local limits, so a node that is
    // full itself never takes a cluster slot.
    let lease = match admit_in_cluster(&core).await {
        Ok(lease) => lease,
        Err((kind, message)) => {
            core.metrics.count(|c| c.sessions_rejected += 1);
            tracing::debug!(core = core.core_id, %peer, code = kind.code(), "session refused by the cluster");
            refuse_with_close(&link, kind, message.into(), 1013);
            drop(permit);
            finish(&link, reader).await;
            let _ = writer.await;
            return;
        }
    };
    let mut params = StreamParams::new(settings.vad_mode);
    if let Err(message) = params.apply_query(query.as_deref()) {
        refuse(&link, WsErrorKind::UnsupportedFormat, message);
        finish(&link, reader).await;
        let _ = writer.await;
        return;
    }
    let config = SessionConfig {
        vad_hangover_ms: settings.vad_hangover_ms,
        max_segment_ms: settings.max_segment_ms,
        interim_interval_ms: settings.interim_interval_ms,
        finals_waiting_max: FINALS_WAITING_MAX,
    };
    let id = uuid::Uuid::new_v4().to_string();
    let session = Session::new(id.clone(), params, config, Instant::now());
    let ctx = Rc::new(StreamCtx {
        core: Rc::clone(&core),
        link: Rc::clone(&link),
        session: RefCell::new(session),
        peer,
        counted_state: Cell::new(None),
        retry_scheduled: Cell::new(false),
        slow_check_scheduled: Cell::new(false),
        unblocked: Notify::default(),
    });
    core.sessions
        .borrow_mut()
        .insert(id.clone(), Rc::clone(&ctx));
    if let Some(cluster) = &core.shared.cluster {
        cluster.handle.session_opened(ctx.info().to_record());
    }
    core.metrics.count(|c| c.sessions_created += 1);
    tracing::debug!(core = core.core_id, session_id = %id, %peer, "session started");
    let start = ctx.session.borrow().start_message();
    link.push_text(start.to_json(), false);
    if core.drain.is_triggered() {
        ctx.end(EndReason::ServerShutdown);
    }
    sync_gauges(&ctx);
    let session_over = DrainSignal::default();
    if let Some(limit) = settings.max_session_duration {
        monoio::spawn(end_at_max_duration(
            Rc::downgrade(&ctx),
            limit,
            session_over.clone(),
        ));
    }

    // A bug reached by this session closes it with `internal` (1011); the
    // core and its other sessions go on.
    if let Err(message) = catch_unwind_future(read_loop(&ctx, reader)).await {
        core.metrics.count(|c| c.task_panics += 1);
        tracing::error!(core = core.core_id, session_id = %id, %message, "a session panicked; closing it");
        ctx.session
            .borrow_mut()
            .fail(WsErrorKind::Internal, "internal error".to_string());
        send_outputs(&ctx);
    }

    // The connection is over, whatever state the session was in.
    ctx.session
        .borrow_mut()
        .end(EndReason::ClientDisconnect, Instant::now());
    pump(&ctx);
    core.sessions.borrow_mut().remove(&id);
    if let Some(cluster) = &core.shared.cluster {
        cluster.handle.session_closed(&id);
    }
    let reason = ctx
        .session
        .borrow()
        .end_reason()
        .unwrap_or(EndReason::ClientDisconnect);
    core.metrics.count(|c| {
        *c.sessions_closed.entry(reason.name()).or_default() += 1;
    });
    tracing::debug!(core = core.core_id, session_id = %id, reason = reason.name(), "session closed");
    drop(lease);
    drop(permit);
    session_over.trigger();
    link.reader_done.set(true);
    link.writer_wake.notify();
    let _ = writer.await;
}

/// End the session with `max_duration` once it has lasted `limit`, unless
/// it is over before (`session_over`). Holds the session only weakly.
async fn end_at_max_duration(ctx: Weak<StreamCtx>, limit: Duration, session_over: DrainSignal) {
    let over = session_over.wait();
    monoio::select! {
        _ = monoio::time::sleep(limit) => {
            if let Some(ctx) = ctx.upgrade() {
                tracing::debug!(core = ctx.core.core_id, session_id = %ctx.session.borrow().id(), "session reached its maximum duration");
                ctx.end(EndReason::MaxDuration);
            }
        },
        _ = over => {},
    }
}

/// Refuse a session before it starts: an error, then the close frame.
fn refuse(link: &Link, kind: WsErrorKind, message: String) {
    refuse_with_close(link, kind, message, kind.close_code().unwrap_or(1011));
}

/// [`refuse`] with a chosen close code (for kinds that do not close by
/// themselves, such as `overloaded`).
fn refuse_with_close(link: &Link, kind: WsErrorKind, message: String, close_code: u16) {
    let error = ServerMessage::Error {
        code: kind.code(),
        message,
    };
    link.push_text(error.to_json(), false);
    link.push_close(close_code);
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

/// Wait for the close handshake of a connection we are closing, then stop.
async fn finish(link: &Rc<Link>, mut reader: OwnedReadHalf<TcpStream>) {
    let deadline = Instant::now() + Duration::from_millis(CLOSE_HANDSHAKE_MS);
    let mut buf = Vec::with_capacity(READ_BYTES);
    while !link.is_closed() && !link.kill.is_triggered() {
        let read =
            monoio::time::timeout_at(monoio::time::Instant::from_std(deadline), reader.read(buf));
        let kill = link.kill.wait();
        let result = monoio::select! {
            result = read => result,
            _ = kill => return,
        };
        let Ok((Ok(n), spare)) = result else {
            return;
        };
        if n == 0 {
            return;
        }
        buf = link.feed(spare, READ_BYTES);
        // Drain frames: we only wait for the peer's close.
        while link.read_message().is_ok() {}
    }
    link.reader_done.set(true);
    link.writer_wake.notify();
}

async fn read_loop(ctx: &Rc<StreamCtx>, mut reader: OwnedReadHalf<TcpStream>) {
    let mut buf = Vec::with_capacity(READ_BYTES);
    loop {
        if !on_frames(ctx) {
            return;
        }
        pump(ctx);
        if ctx.link.closing.is_triggered() {
            finish(&ctx.link, reader).await;
            return;
        }
        while ctx.session.borrow().is_backpressured() && !ctx.link.closing.is_triggered() {
            let unblocked = ctx.unblocked.notified();
            let closing = ctx.link.closing.wait();
            monoio::select! {
                _ = unblocked => {},
                _ = closing => {},
            }
        }
        if ctx.link.closing.is_triggered() {
            continue;
        }
        let read = reader.read(buf);
        let closing = ctx.link.closing.wait();
        let kill = ctx.link.kill.wait();
        // Cancelling the read is only done when the connection is closing.
        let result = monoio::select! {
            result = read => Some(result),
            _ = closing => None,
            _ = kill => return,
        };
        let Some((result, spare)) = result else {
            buf = Vec::with_capacity(READ_BYTES);
            continue;
        };
        match result {
            Ok(0) | Err(_) => {
                ctx.link.set_eof();
                let _ = on_frames(ctx);
                return;
            }
            Ok(_) => buf = ctx.link.feed(spare, READ_BYTES),
        }
    }
}

/// Hand every complete frame to the session. Returns false when the
/// connection is over (the peer closed it, or broke the protocol).
fn on_frames(ctx: &Rc<StreamCtx>) -> bool {
    loop {
        let message = ctx.link.read_message();
        let now = Instant::now();
        match message {
            Ok(Message::Binary(bytes)) => ctx.session.borrow_mut().on_audio(&bytes, now),
            Ok(Message::Text(text)) => {
                #[cfg(feature = "fault-injection")]
                if text.as_str() == FAULT_INJECTION_MESSAGE {
                    panic!("injected fault (test build)");
                }
                ctx.session.borrow_mut().on_text(text.as_str(), now)
            }
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
            Ok(Message::Close(_)) => {
                // tungstenite has queued the reply; the next read says closed.
            }
            Err(tungstenite::Error::Io(error))
                if error.kind() == std::io::ErrorKind::WouldBlock =>
            {
                return true
            }
            Err(tungstenite::Error::Capacity(error)) => {
                // tungstenite sends no close frame for this: we do.
                ctx.session.borrow_mut().fail(
                    WsErrorKind::MessageTooLarge,
                    format!("message too large: {error}"),
                );
                return true;
            }
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                return false
            }
            Err(tungstenite::Error::Protocol(error)) => {
                // RFC 6455 says fail the connection: we say why first.
                tracing::debug!(core = ctx.core.core_id, session_id = ctx.session.borrow().id(), %error, "WebSocket protocol error");
                ctx.session.borrow_mut().fail(
                    WsErrorKind::ProtocolError,
                    format!("WebSocket protocol error: {error}"),
                );
                return true;
            }
            Err(tungstenite::Error::Utf8(error)) => {
                ctx.session.borrow_mut().fail(
                    WsErrorKind::InvalidUtf8,
                    format!("a text message is not UTF-8: {error}"),
                );
                return true;
            }
            Err(error) => {
                tracing::debug!(core = ctx.core.core_id, session_id = ctx.session.borrow().id(), %error, "WebSocket error");
                return false;
            }
        }
    }
}

/// After any event: submit the jobs the session asks for, send its outputs,
/// and keep the shard's figures current.
pub fn pump(ctx: &Rc<StreamCtx>) {
    submit_jobs(ctx);
    send_outputs(ctx);
    let tally = ctx.session.borrow_mut().take_tally();
    let shed = ctx.link.shed.replace(0);
    ctx.core.metrics.count(|c| {
        c.stream_audio_bytes += tally.audio_bytes;
        c.stream_audio_seconds += tally.audio_seconds;
        c.stream_chunks += tally.chunks;
        c.stream_segments += tally.segments;
        c.transcripts_interim += tally.interims_sent;
        c.transcripts_final += tally.finals_sent;
        c.interims_shed += tally.interims_shed + shed;
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
}

fn submit_jobs(ctx: &Rc<StreamCtx>) {
    loop {
        let Some(request) = ctx.session.borrow_mut().next_job() else {
            return;
        };
        if request.kind == JobKind::Interim && interims_would_delay_finals(&ctx.core.shared.to_pool)
        {
            // Shed like a refused interim; the next one is due after another
            // interval of speech. Finals are offered before interims, so none
            // is waiting behind this one.
            ctx.session.borrow_mut().job_refused(request);
            return;
        }
        let (sample_rate, language) = {
            let session = ctx.session.borrow();
            (
                session.params().sample_rate,
                session.params().language.clone(),
            )
        };
        let JobRequest {
            kind,
            segment_id,
            start_sample,
            end_sample,
            samples,
        } = request;
        let (job, receiver) = Job::new(
            ctx.core.core_id,
            kind,
            samples,
            sample_rate,
            TranscribeOptions { language },
        );
        match ctx.core.shared.to_pool.try_submit(job) {
            Ok(()) => {
                ctx.core.metrics.count(|c| c.model_jobs += 1);
                let ctx = Rc::clone(ctx);
                let submitted_at = Instant::now();
                let core = Rc::clone(&ctx.core);
                monoio::spawn(crate::core::stall::watched(
                    &core,
                    "session job result",
                    async move {
                        let result = match receiver.await {
                            Ok(outcome) => {
                                ctx.core.metrics.record(|h| {
                                    record_duration(&mut h.model_latency_us, outcome.model_time);
                                    record_duration(&mut h.queue_wait_us, outcome.queue_wait);
                                });
                                outcome.result
                            }
                            Err(_) => Err(crate::model::EngineError::Failed(
                                "the model worker dropped the job".into(),
                            )),
                        };
                        if result.is_err() {
                            ctx.core.metrics.count(|c| c.model_job_failures += 1);
                        }
                        ctx.session.borrow_mut().on_result(
                            kind,
                            segment_id,
                            start_sample,
                            end_sample,
                            result,
                            Instant::now(),
                        );
                        if kind == JobKind::Interim {
                            ctx.core.metrics.record(|h| {
                                record_duration(&mut h.interim_latency_us, submitted_at.elapsed())
                            });
                        }
                        pump(&ctx);
                    },
                ));
            }
            Err(SubmitError::Full(job) | SubmitError::Closed(job)) => {
                ctx.core.metrics.count(|c| c.model_queue_full += 1);
                ctx.session.borrow_mut().job_refused(JobRequest {
                    kind,
                    segment_id,
                    start_sample,
                    end_sample,
                    samples: job.samples,
                });
                schedule_retry(ctx);
                return;
            }
        }
    }
}

/// Whether the model queue is deep enough that an interim would delay
/// finals: at least one job already waits for every worker. A real engine's
/// interim costs as much as a final, so under load only finals are sent.
fn interims_would_delay_finals(to_pool: &ToPool) -> bool {
    to_pool.queue_depth() >= to_pool.workers()
}

/// Put the session on its core's list of sessions whose finals wait for room
/// in the model queue (once). One task per core retries the whole list, so a
/// full queue costs one wake-up per retry interval, not one per session.
fn schedule_retry(ctx: &Rc<StreamCtx>) {
    if !ctx.session.borrow().has_finals_waiting() || ctx.retry_scheduled.replace(true) {
        return;
    }
    ctx.core.finals_waiting.borrow_mut().push(Rc::clone(ctx));
    ctx.core.finals_waiting_wake.notify();
}

/// The core's retry task: while sessions wait, offer their finals to the
/// queue every [`FINAL_RETRY_MS`], in the order they started waiting.
pub async fn retry_waiting_finals(core: Rc<CoreContext>) {
    loop {
        let wake = core.finals_waiting_wake.notified();
        let drained = core.drain.wait();
        monoio::select! {
            _ = wake => {},
            // After the drain the list is still served until it is empty.
            _ = drained => if core.finals_waiting.borrow().is_empty() { return },
        }
        while !core.finals_waiting.borrow().is_empty() {
            monoio::time::sleep(Duration::from_millis(FINAL_RETRY_MS)).await;
            let waiting = std::mem::take(&mut *core.finals_waiting.borrow_mut());
            for ctx in waiting {
                if ctx.link.kill.is_triggered() {
                    ctx.retry_scheduled.set(false);
                    continue;
                }
                submit_jobs(&ctx);
                if ctx.session.borrow().has_finals_waiting() {
                    core.finals_waiting.borrow_mut().push(ctx);
                } else {
                    ctx.retry_scheduled.set(false);
                    pump(&ctx);
                }
            }
        }
    }
}

fn send_outputs(ctx: &Rc<StreamCtx>) {
    let outputs: Vec<Output> = ctx.session.borrow_mut().take_outputs().collect();
    for output in outputs {
        match output {
            Output::Message(message) => {
                let backlog = ctx
                    .link
                    .push_text(message.to_json(), message.is_sheddable());
                match backlog {
                    Backlog::Fine => {}
                    Backlog::Over(since) => schedule_slow_check(ctx, since),
                    Backlog::Overflow => close_slow_consumer(ctx),
                }
            }
            Output::Close(code) => ctx.link.push_close(code),
        }
    }
}

fn schedule_slow_check(ctx: &Rc<StreamCtx>, since: Instant) {
    if ctx.slow_check_scheduled.replace(true) {
        return;
    }
    let timeout = ctx.core.shared.settings.slow_consumer_timeout;
    let ctx = Rc::clone(ctx);
    monoio::spawn(async move {
        monoio::time::sleep_until(monoio::time::Instant::from_std(since + timeout)).await;
        ctx.slow_check_scheduled.set(false);
        if ctx.link.still_over_since(since) {
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
    ctx.link.discard_outbound();
    ctx.session.borrow_mut().fail(
        WsErrorKind::SlowConsumer,
        "the client does not read its messages".into(),
    );
    send_outputs(ctx);
    let link = Rc::clone(&ctx.link);
    monoio::spawn(async move {
        monoio::time::sleep(Duration::from_millis(CLOSE_HANDSHAKE_MS)).await;
        link.kill.trigger();
    });
}

/// Keep the global per-state gauges in step with the session.
fn sync_gauges(ctx: &StreamCtx) {
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

async fn write_loop(link: Rc<Link>, mut writer: OwnedWriteHalf<TcpStream>) {
    let mut out = Vec::new();
    loop {
        if link.encode_into(&mut out) {
            let write = writer.write_all(std::mem::take(&mut out));
            let kill = link.kill.wait();
            let result = monoio::select! {
                result = write => Some(result),
                _ = kill => None,
            };
            match result {
                Some((Ok(_), buf)) => {
                    out = buf;
                    continue;
                }
                _ => {
                    link.kill.trigger();
                    return;
                }
            }
        }
        if link.reader_done.get() || link.kill.is_triggered() {
            let _ = writer.shutdown().await;
            return;
        }
        let wake = link.writer_wake.notified();
        let kill = link.kill.wait();
        monoio::select! {
            _ = wake => {},
            _ = kill => return,
        }
    }
}
