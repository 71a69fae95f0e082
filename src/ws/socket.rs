//! The socket side of a streaming connection: the reader ([`read_loop`]:
//! socket bytes to the [`Link`], complete frames to the session), the writer
//! ([`write_loop`]: the outbound queue to the socket), and [`finish`], which
//! waits for the client's close frame after ours. A read is only ever
//! abandoned when the connection is closing, so no audio byte is lost.

use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf};
use monoio::net::TcpStream;
use tungstenite::Message;

use super::stream::{pump, StreamCtx, CLOSE_HANDSHAKE_MS};
use super::transport::Link;
use crate::error::WsErrorKind;

/// Bytes read from the socket at a time.
const READ_BYTES: usize = 4 * 1024;

/// In builds with the `fault-injection` feature (tests only), this text
/// message makes the session's reader panic, to prove the isolation.
#[cfg(feature = "fault-injection")]
pub const FAULT_INJECTION_MESSAGE: &str = r#"{"type":"__inject_panic"}"#;

/// Wait for the close handshake of a connection we are closing, then stop.
pub(super) async fn finish(link: &Rc<Link>, mut reader: OwnedReadHalf<TcpStream>) {
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

pub(super) async fn read_loop(ctx: &Rc<StreamCtx>, mut reader: OwnedReadHalf<TcpStream>) {
    // The connection this loop reads; a resumed session gets a new link
    // and a new loop.
    let link = ctx.link();
    let mut buf = Vec::with_capacity(READ_BYTES);
    loop {
        if !on_frames(ctx) {
            return;
        }
        pump(ctx);
        if link.closing.is_triggered() {
            finish(&link, reader).await;
            return;
        }
        while ctx.session.borrow().is_backpressured() && !link.closing.is_triggered() {
            let unblocked = ctx.unblocked.notified();
            let closing = link.closing.wait();
            monoio::select! {
                _ = unblocked => {},
                _ = closing => {},
            }
        }
        if link.closing.is_triggered() {
            continue;
        }
        let read = reader.read(buf);
        let closing = link.closing.wait();
        let kill = link.kill.wait();
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
                link.set_eof();
                let _ = on_frames(ctx);
                return;
            }
            Ok(_) => buf = link.feed(spare, READ_BYTES),
        }
    }
}

/// Hand every complete frame to the session. Returns false when the
/// connection is over (the peer closed it, or broke the protocol).
fn on_frames(ctx: &Rc<StreamCtx>) -> bool {
    loop {
        let message = ctx.link().read_message();
        let now = Instant::now();
        match message {
            Ok(Message::Binary(bytes)) => {
                ctx.codec
                    .on_binary(&bytes, &mut ctx.session.borrow_mut(), now)
            }
            Ok(Message::Text(text)) => {
                #[cfg(feature = "fault-injection")]
                if text.as_str() == FAULT_INJECTION_MESSAGE {
                    panic!("injected fault (test build)");
                }
                ctx.codec
                    .on_text(text.as_str(), &mut ctx.session.borrow_mut(), now)
            }
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
            Ok(Message::Close(_)) => {
                // tungstenite has queued the reply; the next read says closed.
                ctx.link().close_received.set(true);
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
            Err(tungstenite::Error::Protocol(
                tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
            )) => {
                // The client went away (a reset, an EOF) without a close
                // frame: the connection is over, nobody is told anything
                // (`client_disconnect`), and a resumable session is kept.
                return false;
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

pub(super) async fn write_loop(link: Rc<Link>, mut writer: OwnedWriteHalf<TcpStream>) {
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
                    link.confirm_written();
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
