//! Sessions that survive a dropped connection (`resume_window_seconds`,
//! native protocol only).
//!
//! With resumption on, `session_start` carries a random token. When the
//! connection drops without an `end` or a close frame (a reset, an EOF, a
//! write that fails), the connection task does not end the session: it
//! *detaches* it ([`detach`]). The session stays in its core's shard and
//! keeps its permit and lease; the audio it already has keeps being
//! processed, and what it would have sent is kept here ([`ResumeState`]),
//! interims excepted. A client that reconnects with
//! `?resume=<session_id>&token=<token>` ([`ResumeRequest`]) within the
//! window gets the same session back ([`attach`]): `session_resumed` says
//! where the server's audio ends, then the finals it lacks follow in order,
//! then the session goes on. After the window the session ends as
//! `client_disconnect` ([`expire_after`]).
//!
//! A session belongs to the core that accepted its first connection. A
//! resuming connection may land on any core: [`serve_resume`] finds the
//! owner through the cores' inboxes and hands it the socket itself
//! (`CoreCommand::AdoptStream`, a plain file descriptor just after the
//! upgrade), so the owner serves it like its own connection. Nodes of a
//! cluster do not proxy streams: a resume that reaches a node not owning
//! the session is refused with `session_on_other_node`, naming the owner.
//!
//! Finals are replayed by segment id: the session keeps its last
//! [`RESUME_FINALS_KEPT`] finals, and the resumed client gets every final
//! after the one it names (`last_segment_id`), or, when it names none,
//! after the last one whose bytes the old socket took.

use std::any::Any;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::time::Duration;

use monoio::io::Splitable;
use monoio::net::TcpStream;
use subtle::ConstantTimeEq;

use super::codec::Frame;
use super::conn::{finish_session, run_connection};
use super::protocol::ServerMessage;
use super::socket::{finish, write_loop};
use super::stream::{pump, StreamCtx};
use super::transport::Link;
use crate::core::cross_core::CROSS_CORE_TIMEOUT;
use crate::core::{CoreCommand, CoreContext, ResumeLookup};
use crate::rt::Latch;
use crate::session::SessionState;

/// Finals a resumable session keeps for a replay while its client is
/// connected (the oldest go first). A client resuming from an older final
/// than these is refused with `resume_gap`.
pub const RESUME_FINALS_KEPT: usize = 64;

/// Messages a detached session may hold for its client. Its finals come
/// only from audio it already had, so the bound is far above what a session
/// produces (the finals waiting for the engine are bounded by
/// `FINALS_WAITING_MAX`); reaching it ends the session rather than drop a
/// final.
pub const RESUME_DETACHED_MESSAGES_MAX: usize = 256;

const _: () = assert!(RESUME_FINALS_KEPT <= RESUME_DETACHED_MESSAGES_MAX);

/// A message kept for a resumed client.
#[derive(Debug, Clone)]
struct Kept {
    /// The segment whose final it is; `None`: another message produced
    /// while detached (an error), replayed whatever the client names.
    final_of: Option<u64>,
    text: String,
}

/// A session's resumption: its token, what it keeps for a replay, and
/// whether its connection is gone.
#[derive(Default)]
pub struct ResumeState {
    /// `None`: the session cannot be resumed (off, or not the native
    /// protocol).
    token: Option<String>,
    kept: VecDeque<Kept>,
    /// The last final dropped from `kept` (older finals cannot be replayed).
    dropped_through: Option<u64>,
    detached: Option<Detached>,
}

/// A session whose connection is gone.
struct Detached {
    /// The old connection: the last final its socket took is where the
    /// replay starts by default. Read when the client resumes, since its
    /// writer may still flush what was queued (on a half-closed socket).
    old_link: Option<Rc<Link>>,
    /// Fires when a client resumes it (the expiry timer stops).
    resumed: Latch,
}

impl ResumeState {
    /// Whether the session can be resumed.
    pub fn is_on(&self) -> bool {
        self.token.is_some()
    }

    /// Whether its connection is gone and it waits for a resume.
    pub fn is_detached(&self) -> bool {
        self.detached.is_some()
    }

    /// Keep what a resumed client will need of the frames of one event
    /// (`final_of`: the segment whose final they say): finals always, and
    /// while detached every message but interims. Returns false when a
    /// detached session has reached [`RESUME_DETACHED_MESSAGES_MAX`].
    pub fn keep(&mut self, frames: &[Frame], final_of: Option<u64>) -> bool {
        let detached = self.detached.is_some();
        for frame in frames {
            let Frame::Text { text, sheddable } = frame else {
                continue;
            };
            if *sheddable || (final_of.is_none() && !detached) {
                continue;
            }
            if detached && self.kept.len() >= RESUME_DETACHED_MESSAGES_MAX {
                return false;
            }
            self.kept.push_back(Kept {
                final_of,
                text: text.clone(),
            });
        }
        if !detached {
            while self.kept.len() > RESUME_FINALS_KEPT {
                if let Some(Kept {
                    final_of: Some(segment_id),
                    ..
                }) = self.kept.pop_front()
                {
                    self.dropped_through = Some(segment_id);
                }
            }
        }
        true
    }

    /// What a client that has every final up to `after` is sent again, in
    /// order; `None` when a final it lacks is no longer kept.
    fn replay(&self, after: Option<u64>) -> Option<Vec<Kept>> {
        let lacks = |segment_id: u64| after.is_none_or(|after| segment_id > after);
        if self.dropped_through.is_some_and(lacks) {
            return None;
        }
        Some(
            self.kept
                .iter()
                .filter(|kept| kept.final_of.is_none_or(lacks))
                .cloned()
                .collect(),
        )
    }

    /// The client is back: messages that were only kept for it go (its
    /// finals stay for a later resume).
    fn reattach(&mut self) -> Option<Detached> {
        self.kept.retain(|kept| kept.final_of.is_some());
        self.detached.take()
    }
}

/// What a client asks for when it resumes (`GET
/// /v1/transcribe/stream?resume=<id>&token=<token>[&from_sample=<n>][&last_segment_id=<n>]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeRequest {
    pub session_id: String,
    pub token: String,
    /// The stream sample the client's audio starts at (`None`: where the
    /// server's ends, as `session_resumed` says).
    pub from_sample: Option<u64>,
    /// The last final the client has: `Some(None)` for none yet
    /// (`last_segment_id=-1`), `None` when it does not say (then: the last
    /// one the old socket took).
    pub last_segment_id: Option<Option<u64>>,
}

impl ResumeRequest {
    /// The resume a query string asks for; `None` when it has no `resume`.
    ///
    /// # Errors
    /// Why the resume parameters are unusable (`resume_invalid`).
    pub fn from_query(query: Option<&str>) -> Option<Result<ResumeRequest, String>> {
        let pairs = crate::http::query::parse_query(query).ok()?;
        let value = |name: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        let session_id = value("resume")?.to_string();
        let number = |name: &str| -> Result<Option<u64>, String> {
            value(name)
                .map(|text| {
                    text.parse()
                        .map_err(|_| format!("{name} must be a whole number, got {text:?}"))
                })
                .transpose()
        };
        Some((|| {
            let token = value("token")
                .filter(|token| !token.is_empty())
                .ok_or("a resume needs the session's token (token=...)")?
                .to_string();
            let last_segment_id = match value("last_segment_id") {
                Some("-1") => Some(None),
                _ => number("last_segment_id")?.map(Some),
            };
            Ok(ResumeRequest {
                session_id,
                token,
                from_sample: number("from_sample")?,
                last_segment_id,
            })
        })())
    }
}

/// Why a resume is refused: an `error` message with its code, then a close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumeRefusal {
    Disabled,
    Invalid(String),
    NotFound,
    Expired,
    TokenInvalid,
    Attached,
    Gap(String),
    OtherNode(String),
    Internal,
}

impl ResumeRefusal {
    /// The error code (docs/API.md, "Resuming a session").
    pub fn code(&self) -> &'static str {
        match self {
            ResumeRefusal::Disabled => "resume_disabled",
            ResumeRefusal::Invalid(_) => "resume_invalid",
            ResumeRefusal::NotFound => "session_not_found",
            ResumeRefusal::Expired => "resume_expired",
            ResumeRefusal::TokenInvalid => "resume_token_invalid",
            ResumeRefusal::Attached => "session_attached",
            ResumeRefusal::Gap(_) => "resume_gap",
            ResumeRefusal::OtherNode(_) => "session_on_other_node",
            ResumeRefusal::Internal => "internal",
        }
    }

    /// The close code after the error: 1013 (try again later) for a
    /// session whose old connection the server still holds, 1011 for a
    /// server fault, 1008 for the rest.
    pub fn close_code(&self) -> u16 {
        match self {
            ResumeRefusal::Attached => 1013,
            ResumeRefusal::Internal => 1011,
            _ => 1008,
        }
    }

    fn message(&self, session_id: &str) -> String {
        match self {
            ResumeRefusal::Disabled => {
                "sessions cannot be resumed on this server (resume_window_seconds is 0)".into()
            }
            ResumeRefusal::Invalid(why) | ResumeRefusal::Gap(why) => why.clone(),
            ResumeRefusal::NotFound => format!("no session {session_id} to resume"),
            ResumeRefusal::Expired => {
                format!("session {session_id} ended: its resume window ran out")
            }
            ResumeRefusal::TokenInvalid => "the resume token is wrong".into(),
            ResumeRefusal::Attached => format!(
                "session {session_id} still has a connection; retry once the server has seen it drop"
            ),
            ResumeRefusal::OtherNode(owner) => {
                format!("session {session_id} lives on another node ({owner}); resume it there")
            }
            ResumeRefusal::Internal => "the session could not be handed to its core".into(),
        }
    }
}

/// A new session: with resumption on and a protocol that has it, give it a
/// token (announced in `session_start`) and list it on its core.
pub(super) fn offer(ctx: &Rc<StreamCtx>) {
    if ctx.core.shared.settings.session.resume_window.is_none() {
        return;
    }
    let token = new_token();
    if !ctx.codec.offer_resume(&token) {
        return;
    }
    ctx.resume.borrow_mut().token = Some(token);
    let id = ctx.session.borrow().id().to_string();
    ctx.core
        .resumable
        .borrow_mut()
        .insert(id, Rc::clone(ctx) as Rc<dyn Any>);
}

/// 256 bits from the operating system's generator (through `uuid`'s v4,
/// 122 random bits each), as 64 hex digits.
fn new_token() -> String {
    let mut token = String::with_capacity(64);
    for _ in 0..2 {
        for byte in uuid::Uuid::new_v4().as_bytes() {
            token.push_str(&format!("{byte:02x}"));
        }
    }
    token
}

/// Whether a connection that is over leaves its session detached rather
/// than ended: resumption on, the session still live, and the client gone
/// without saying so (no `end`, no close frame). A session the server
/// closed (slow consumer, protocol error, limits) is over; so is every
/// session once the drain refuses new work.
pub(super) fn should_detach(ctx: &StreamCtx) -> bool {
    ctx.resume.borrow().is_on()
        && matches!(
            ctx.session.borrow().state(),
            SessionState::Created | SessionState::Active
        )
        && !ctx.link().close_received.get()
        && !ctx.core.shared.is_refusing_work()
}

/// Keep the session for its resume window: its audio goes on being
/// processed, its messages are kept, and it ends if nobody resumes it.
pub(super) fn detach(ctx: &Rc<StreamCtx>) {
    let Some(window) = ctx.core.shared.settings.session.resume_window else {
        finish_session(ctx);
        return;
    };
    let resumed = Latch::default();
    ctx.resume.borrow_mut().detached = Some(Detached {
        old_link: Some(ctx.link()),
        resumed: resumed.clone(),
    });
    ctx.core.metrics.count(|c| c.session_detaches += 1);
    tracing::debug!(
        core = ctx.core.core_id,
        session_id = ctx.session.borrow().id(),
        "connection dropped: session detached"
    );
    monoio::spawn(expire_after(Rc::clone(ctx), window, resumed));
}

/// End a detached session nobody resumed within `window`.
async fn expire_after(ctx: Rc<StreamCtx>, window: Duration, resumed: Latch) {
    let over = ctx.over.wait();
    monoio::select! {
        () = monoio::time::sleep(window) => {},
        () = resumed.wait() => return,
        () = over => return,
    }
    if !ctx.resume.borrow().is_detached() {
        return;
    }
    ctx.core.metrics.count(|c| c.session_resume_expiries += 1);
    let id = ctx.session.borrow().id().to_string();
    tracing::debug!(core = ctx.core.core_id, session_id = %id, "resume window over: session ended");
    ctx.core.remember_expired(id);
    end_detached(&ctx);
}

/// A detached session reached its bound of kept messages: it ends (as when
/// its window runs out) rather than drop a final.
pub(super) fn overflow(ctx: &Rc<StreamCtx>) {
    ctx.core.metrics.count(|c| c.session_resume_expiries += 1);
    tracing::warn!(
        core = ctx.core.core_id,
        session_id = ctx.session.borrow().id(),
        "detached session over its bound of kept messages: ended"
    );
    end_detached(ctx);
}

/// End a detached session (its window ran out, or it ended while detached)
/// and give back what it holds.
pub(super) fn end_detached(ctx: &Rc<StreamCtx>) {
    if let Some(detached) = ctx.resume.borrow_mut().reattach() {
        detached.resumed.trigger();
    }
    finish_session(ctx);
}

/// The session is over: it can no longer be resumed.
pub(super) fn forget(ctx: &StreamCtx) {
    if ctx.resume.borrow().is_on() {
        let id = ctx.session.borrow().id().to_string();
        ctx.core.resumable.borrow_mut().remove(&id);
    }
}

/// A connection that asks to resume `request`, on the core that accepted
/// it: served here when this core owns the session, handed to the core that
/// does otherwise, refused when none does.
pub(super) async fn serve_resume(
    stream: TcpStream,
    leftover: Vec<u8>,
    peer: SocketAddr,
    core: Rc<CoreContext>,
    query: Option<String>,
) {
    let Some(request) = ResumeRequest::from_query(query.as_deref()) else {
        debug_assert!(false, "only called for a query with `resume`");
        return;
    };
    let request = match request {
        Ok(request) if core.shared.settings.session.resume_window.is_some() => request,
        Ok(_) => return refuse(stream, leftover, &core, "", ResumeRefusal::Disabled).await,
        Err(why) => return refuse(stream, leftover, &core, "", ResumeRefusal::Invalid(why)).await,
    };
    let id = request.session_id.clone();
    match core.find_resumable(&id) {
        ResumeLookup::Here => {
            return serve_here(stream, leftover, peer, core, request, false).await
        }
        ResumeLookup::Expired => {
            return refuse(stream, leftover, &core, &id, ResumeRefusal::Expired).await
        }
        ResumeLookup::Unknown => {}
    }
    match find_on_other_cores(&core, &id).await {
        (Some(owner), _) => hand_over(stream, leftover, peer, &core, owner, &id, query).await,
        (None, true) => refuse(stream, leftover, &core, &id, ResumeRefusal::Expired).await,
        (None, false) => {
            let refusal = match on_other_node(&core, &id).await {
                Some(owner) => ResumeRefusal::OtherNode(owner),
                None => ResumeRefusal::NotFound,
            };
            refuse(stream, leftover, &core, &id, refusal).await;
        }
    }
}

/// A resuming connection another core handed over: this core owned the
/// session when asked; it is served here or refused (never passed on).
pub async fn serve_adopted(
    stream: TcpStream,
    leftover: Vec<u8>,
    peer: SocketAddr,
    core: Rc<CoreContext>,
    query: Option<String>,
) {
    let request = match ResumeRequest::from_query(query.as_deref()) {
        Some(Ok(request)) => request,
        _ => {
            let why = "the handed-over connection lost its resume parameters".to_string();
            return refuse(stream, leftover, &core, "", ResumeRefusal::Invalid(why)).await;
        }
    };
    match core.find_resumable(&request.session_id) {
        ResumeLookup::Here => serve_here(stream, leftover, peer, core, request, true).await,
        lookup => {
            let refusal = if lookup == ResumeLookup::Expired {
                ResumeRefusal::Expired
            } else {
                ResumeRefusal::NotFound
            };
            let id = request.session_id.clone();
            refuse(stream, leftover, &core, &id, refusal).await;
        }
    }
}

/// Which other core owns session `id`, and whether one saw it expire.
async fn find_on_other_cores(core: &CoreContext, id: &str) -> (Option<usize>, bool) {
    let mut replies = Vec::new();
    for (core_id, inbox) in core.shared.core_inboxes.iter().enumerate() {
        if core_id == core.core_id {
            continue;
        }
        let (reply, receiver) = futures_channel::oneshot::channel();
        let command = CoreCommand::FindResumable {
            id: id.to_string(),
            reply,
        };
        if inbox.unbounded_send(command).is_ok() {
            replies.push((core_id, receiver));
        }
    }
    let mut expired = false;
    for (core_id, receiver) in replies {
        match monoio::time::timeout(CROSS_CORE_TIMEOUT, receiver).await {
            Ok(Ok(ResumeLookup::Here)) => return (Some(core_id), expired),
            Ok(Ok(ResumeLookup::Expired)) => expired = true,
            _ => {}
        }
    }
    (None, expired)
}

/// Cluster mode: the node that owns session `id` (its id and URL), when
/// another node does.
async fn on_other_node(core: &CoreContext, id: &str) -> Option<String> {
    let cluster = core.shared.cluster.as_ref()?;
    let lookup = cluster.handle.get_session(id);
    let record = monoio::time::timeout(CROSS_CORE_TIMEOUT, lookup)
        .await
        .ok()?
        .ok()??;
    if record.node == cluster.handle.node_id() {
        return None;
    }
    let nodes = monoio::time::timeout(CROSS_CORE_TIMEOUT, cluster.handle.nodes()).await;
    let url = nodes
        .ok()
        .and_then(Result::ok)
        .and_then(|nodes| nodes.into_iter().find(|node| node.node_id == record.node))
        .map(|node| node.url);
    Some(match url {
        Some(url) => format!("node {} at {url}", record.node),
        None => format!("node {}", record.node),
    })
}

/// Hand the connection to core `owner`: its socket leaves this core's
/// runtime as a plain descriptor (nothing is in flight on it just after the
/// upgrade) and the owner adopts it.
async fn hand_over(
    stream: TcpStream,
    leftover: Vec<u8>,
    peer: SocketAddr,
    core: &CoreContext,
    owner: usize,
    id: &str,
    query: Option<String>,
) {
    let Some(inbox) = core.shared.core_inboxes.get(owner) else {
        return;
    };
    let fd = stream.into_raw_fd();
    // SAFETY: `fd` was just released by the runtime (`into_raw_fd`
    // deregisters it) and nothing else owns it: the std stream takes it.
    let std_stream = unsafe { std::net::TcpStream::from_raw_fd(fd) };
    let command = CoreCommand::AdoptStream {
        stream: std_stream,
        leftover,
        peer,
        query,
    };
    if let Err(error) = inbox.unbounded_send(command) {
        // The owner has stopped: the socket comes back in the command.
        if let CoreCommand::AdoptStream {
            stream, leftover, ..
        } = error.into_inner()
        {
            if let Ok(stream) = TcpStream::from_std(stream) {
                refuse(stream, leftover, core, id, ResumeRefusal::Internal).await;
            }
        }
    }
}

/// Resume a session of this core on this connection (`handed_over`: by the
/// core that accepted it), or refuse.
async fn serve_here(
    stream: TcpStream,
    leftover: Vec<u8>,
    peer: SocketAddr,
    core: Rc<CoreContext>,
    request: ResumeRequest,
    handed_over: bool,
) {
    let found = core
        .resumable
        .borrow()
        .get(&request.session_id)
        .cloned()
        .and_then(|any| any.downcast::<StreamCtx>().ok());
    let Some(ctx) = found else {
        let id = request.session_id.clone();
        return refuse(stream, leftover, &core, &id, ResumeRefusal::NotFound).await;
    };
    let settings = &core.shared.settings.session;
    let link = Rc::new(Link::new(
        leftover,
        ctx.codec.message_bytes_max(settings.ws_message_bytes_max),
        settings.ws_outbound_messages_max,
    ));
    let (reader, writer) = stream.into_split();
    let writer = monoio::spawn(write_loop(Rc::clone(&link), writer));
    match attach(&ctx, &link, peer, &request, handed_over) {
        Ok(()) => run_connection(&ctx, reader).await,
        Err(refusal) => {
            core.metrics.count(|c| c.session_resumes_refused += 1);
            push_refusal(&link, &request.session_id, &refusal);
            finish(&link, reader).await;
        }
    }
    link.reader_done.set(true);
    link.writer_wake.notify();
    let _ = writer.await;
}

/// Check the request against the session and, if it holds, move the
/// session onto `link`: `session_resumed`, the finals the client lacks,
/// then whatever the session has to say next.
///
/// # Errors
/// The refusal, with the session untouched.
fn attach(
    ctx: &Rc<StreamCtx>,
    link: &Rc<Link>,
    peer: SocketAddr,
    request: &ResumeRequest,
    handed_over: bool,
) -> Result<(), ResumeRefusal> {
    let replay = {
        let resume = ctx.resume.borrow();
        let token = resume.token.as_deref().unwrap_or_default();
        if !bool::from(request.token.as_bytes().ct_eq(token.as_bytes())) || token.is_empty() {
            return Err(ResumeRefusal::TokenInvalid);
        }
        let Some(detached) = &resume.detached else {
            return Err(ResumeRefusal::Attached);
        };
        let final_written = detached
            .old_link
            .as_ref()
            .and_then(|link| link.final_written.get());
        let after = request.last_segment_id.unwrap_or(final_written);
        resume.replay(after).ok_or_else(|| {
            ResumeRefusal::Gap(format!(
                "the finals after segment {after:?} are no longer kept (only the last {RESUME_FINALS_KEPT} are)"
            ))
        })?
    };
    let (skip_samples, audio_samples, sample_rate) = {
        let mut session = ctx.session.borrow_mut();
        if session.state() == SessionState::Closed {
            return Err(ResumeRefusal::NotFound);
        }
        let skip = session.resume_from(request.from_sample, std::time::Instant::now()).map_err(|gap| {
            ResumeRefusal::Gap(format!(
                "from_sample {} is past the server's audio, which ends at sample {}: resume from it or earlier",
                request.from_sample.unwrap_or_default(),
                gap.server_samples
            ))
        })?;
        (
            skip,
            session.samples_received(),
            session.params().sample_rate,
        )
    };
    if let Some(detached) = ctx.resume.borrow_mut().reattach() {
        detached.resumed.trigger();
    }
    ctx.link.replace(Rc::clone(link));
    ctx.peer.set(peer);
    // Counted together, so one published snapshot has both.
    ctx.core.metrics.count(|c| {
        c.session_resumes += 1;
        c.session_resume_handoffs += u64::from(handed_over);
    });
    tracing::debug!(core = ctx.core.core_id, session_id = %request.session_id, skip_samples, replayed = replay.len(), "session resumed");
    let resumed = ServerMessage::SessionResumed {
        session_id: request.session_id.clone(),
        audio_samples,
        audio_ms: audio_samples as f64 * 1000.0 / f64::from(sample_rate.max(1)),
        skip_samples,
        replayed_finals: replay.iter().filter(|kept| kept.final_of.is_some()).count(),
    };
    link.push_text(resumed.to_json(), false);
    for kept in replay {
        link.push_tagged(kept.text, false, kept.final_of);
    }
    pump(ctx);
    Ok(())
}

/// Refuse a resume on a connection no session owns yet: the error, the
/// close, the close handshake.
async fn refuse(
    stream: TcpStream,
    leftover: Vec<u8>,
    core: &CoreContext,
    session_id: &str,
    refusal: ResumeRefusal,
) {
    core.metrics.count(|c| c.session_resumes_refused += 1);
    tracing::debug!(
        core = core.core_id,
        session_id,
        code = refusal.code(),
        "resume refused"
    );
    let settings = &core.shared.settings.session;
    let link = Rc::new(Link::new(
        leftover,
        settings.ws_message_bytes_max,
        settings.ws_outbound_messages_max,
    ));
    let (reader, writer) = stream.into_split();
    let writer = monoio::spawn(write_loop(Rc::clone(&link), writer));
    push_refusal(&link, session_id, &refusal);
    finish(&link, reader).await;
    link.reader_done.set(true);
    link.writer_wake.notify();
    let _ = writer.await;
}

fn push_refusal(link: &Link, session_id: &str, refusal: &ResumeRefusal) {
    let error = ServerMessage::Error {
        code: refusal.code(),
        message: refusal.message(session_id),
        retry_after_s: None,
    };
    link.push_text(error.to_json(), false);
    link.push_close(refusal.close_code());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(text: &str, sheddable: bool) -> Frame {
        Frame::Text {
            text: text.into(),
            sheddable,
        }
    }

    fn on() -> ResumeState {
        ResumeState {
            token: Some("t".into()),
            ..ResumeState::default()
        }
    }

    fn texts(kept: &[Kept]) -> Vec<&str> {
        kept.iter().map(|kept| kept.text.as_str()).collect()
    }

    #[test]
    fn a_query_asks_for_a_resume_only_with_resume_and_needs_a_token() {
        assert_eq!(ResumeRequest::from_query(Some("sample_rate=16000")), None);
        assert_eq!(ResumeRequest::from_query(None), None);
        assert_eq!(
            ResumeRequest::from_query(Some(
                "resume=abc&token=t0&from_sample=32000&last_segment_id=2"
            )),
            Some(Ok(ResumeRequest {
                session_id: "abc".into(),
                token: "t0".into(),
                from_sample: Some(32_000),
                last_segment_id: Some(Some(2)),
            }))
        );
        assert!(matches!(
            ResumeRequest::from_query(Some("resume=abc")),
            Some(Err(_))
        ));
        let none_yet = ResumeRequest::from_query(Some("resume=abc&token=t&last_segment_id=-1"));
        assert_eq!(
            none_yet.and_then(Result::ok).map(|r| r.last_segment_id),
            Some(Some(None))
        );
        assert!(matches!(
            ResumeRequest::from_query(Some("resume=abc&token=t&from_sample=-1")),
            Some(Err(why)) if why.contains("from_sample")
        ));
    }

    #[test]
    fn finals_are_kept_and_replayed_after_the_one_the_client_has() {
        let mut state = on();
        for segment in 0..3u64 {
            assert!(state.keep(&[text(&format!("f{segment}"), false)], Some(segment)));
            // Interims and other messages are not kept while attached.
            assert!(state.keep(&[text("interim", true)], None));
            assert!(state.keep(&[text("speech_start", false)], None));
        }
        state.detached = Some(Detached {
            old_link: None,
            resumed: Latch::default(),
        });
        // While detached: an error is kept, an interim is not.
        assert!(state.keep(&[text("error", false), Frame::Close(1011)], None));
        assert!(state.keep(&[text("interim", true)], None));
        assert!(state.keep(&[text("f3", false)], Some(3)));
        assert_eq!(
            texts(&state.replay(Some(0)).expect("kept")),
            ["f1", "f2", "error", "f3"]
        );
        assert_eq!(texts(&state.replay(Some(3)).expect("kept")), ["error"]);
        assert_eq!(
            texts(&state.replay(None).expect("kept")),
            ["f0", "f1", "f2", "error", "f3"]
        );
        assert!(state.reattach().is_some());
        assert!(!state.is_detached());
        // Only finals stay for a later resume.
        assert_eq!(texts(&state.replay(Some(1)).expect("kept")), ["f2", "f3"]);
    }

    #[test]
    fn finals_past_the_bound_cannot_be_replayed_and_a_detached_session_has_a_bound() {
        let mut state = on();
        let total = RESUME_FINALS_KEPT as u64 + 5;
        for segment in 0..total {
            assert!(state.keep(&[text("f", false)], Some(segment)));
        }
        assert_eq!(state.kept.len(), RESUME_FINALS_KEPT);
        assert!(state.replay(Some(3)).is_none(), "final 4 was dropped");
        assert!(state.replay(None).is_none());
        assert_eq!(
            state.replay(Some(4)).expect("kept").len(),
            RESUME_FINALS_KEPT
        );
        state.detached = Some(Detached {
            old_link: None,
            resumed: Latch::default(),
        });
        let room = RESUME_DETACHED_MESSAGES_MAX - RESUME_FINALS_KEPT;
        for segment in 0..room as u64 {
            assert!(state.keep(&[text("f", false)], Some(total + segment)));
        }
        assert!(!state.keep(&[text("one too many", false)], Some(u64::MAX)));
    }

    #[test]
    fn tokens_are_long_and_differ() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|byte| byte.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
