//! `tungstenite` over owned buffers.
//!
//! tungstenite wants a blocking `Read + Write` stream; monoio hands out owned
//! buffers. [`MemStream`] bridges them: the reader task appends what the
//! socket delivered, `Read` returns `WouldBlock` when it is used up (and
//! `Ok(0)` only after the real end of stream), and `Write` appends to an
//! output buffer that the writer task sends. [`Link`] is the one WebSocket of
//! a connection, shared by its reader and writer tasks on one core; its
//! `RefCell` borrows never cross an `.await`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::time::Instant;

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use crate::rt::{Latch, Notify};

/// The in-memory stream under tungstenite.
#[derive(Debug, Default)]
pub struct MemStream {
    incoming: Vec<u8>,
    read_at: usize,
    eof: bool,
    outgoing: Vec<u8>,
}

impl MemStream {
    /// Add bytes the socket delivered. When everything before was consumed the
    /// buffers are swapped instead of copied. The returned buffer is empty and
    /// has room for at least `spare_bytes_min`: a zero-capacity buffer would
    /// read `Ok(0)`, which looks exactly like the end of the stream.
    pub fn feed(&mut self, mut bytes: Vec<u8>, spare_bytes_min: usize) -> Vec<u8> {
        if self.read_at == self.incoming.len() {
            self.incoming.clear();
            self.read_at = 0;
            std::mem::swap(&mut self.incoming, &mut bytes);
        } else {
            self.incoming.extend_from_slice(&bytes);
        }
        bytes.clear();
        if bytes.capacity() < spare_bytes_min {
            bytes.reserve(spare_bytes_min);
        }
        bytes
    }

    /// The socket reached its end: reads return `Ok(0)` once the bytes are used.
    pub fn set_eof(&mut self) {
        self.eof = true;
    }

    /// Move the bytes to send into `out` (swapping buffers).
    pub fn take_outgoing(&mut self, out: &mut Vec<u8>) {
        out.clear();
        std::mem::swap(&mut self.outgoing, out);
    }

    pub fn has_outgoing(&self) -> bool {
        !self.outgoing.is_empty()
    }
}

impl Read for MemStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = &self.incoming[self.read_at..];
        if available.is_empty() {
            return if self.eof {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.read_at += n;
        if self.read_at == self.incoming.len() {
            self.incoming.clear();
            self.read_at = 0;
        }
        Ok(n)
    }
}

impl Write for MemStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outgoing.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The WebSocket settings, every field spelled out.
pub fn ws_config(message_bytes_max: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        // Small: an idle session holds this much (4 KiB costs ~19 kB per idle
        // connection in all; the default 128 KiB costs ~149 kB).
        .read_buffer_size(4 * 1024)
        // MemStream writes never block, so tungstenite need not batch.
        .write_buffer_size(0)
        // Bounded by the session's outbound queue instead.
        .max_write_buffer_size(usize::MAX)
        .max_message_size(Some(message_bytes_max))
        .max_frame_size(Some(message_bytes_max))
        // RFC 6455: clients must mask.
        .accept_unmasked_frames(false)
}

/// What waits to be written.
#[derive(Debug)]
enum Outbound {
    Text {
        json: String,
        sheddable: bool,
        /// The segment whose final this is (`None`: any other message).
        final_of: Option<u64>,
    },
    Close(u16, &'static str),
}

/// Why pushing to the outbound queue went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backlog {
    /// Under the bound (after shedding interims if needed).
    Fine,
    /// Over the bound: the client reads too slowly. Since when.
    Over(Instant),
    /// Over the hard cap: close the client now.
    Overflow,
}

/// A connection's WebSocket, shared by its reader and writer tasks.
pub struct Link {
    ws: RefCell<WebSocket<MemStream>>,
    outbound: RefCell<VecDeque<Outbound>>,
    outbound_max: usize,
    over_since: Cell<Option<Instant>>,
    /// Wakes the writer when there is something to send.
    pub writer_wake: Notify,
    /// Fired when our close frame is queued: the reader stops waiting for
    /// audio and waits for the close handshake instead.
    pub closing: Latch,
    /// Fired to abandon the connection at once (dead or hopelessly slow peer).
    pub kill: Latch,
    /// Set by the reader when it is done; the writer flushes and stops.
    pub reader_done: Cell<bool>,
    /// Interims dropped because the client read too slowly.
    pub shed: Cell<u64>,
    /// A read failed for a reason other than "need more bytes".
    read_failed: Cell<bool>,
    /// The last final encoded for the socket, until the writer has written
    /// it ([`Link::confirm_written`]).
    final_encoded: Cell<Option<u64>>,
    /// The last final whose bytes the socket took: a resumed client that
    /// does not say which finals it has gets the ones after it again.
    pub final_written: Cell<Option<u64>>,
    /// The client sent a close frame: it meant to leave (no resume).
    pub close_received: Cell<bool>,
}

impl Link {
    /// A server-side WebSocket that starts with `leftover`, the bytes that
    /// came after the upgrade request's head.
    pub fn new(leftover: Vec<u8>, message_bytes_max: usize, outbound_max: usize) -> Link {
        let mut stream = MemStream::default();
        // The HTTP read buffer that carried the upgrade is 8 KiB; an idle
        // session should not keep it for the bytes (usually none) after the head.
        if !leftover.is_empty() {
            let _ = stream.feed(leftover.as_slice().to_vec(), 0);
        }
        Link {
            ws: RefCell::new(WebSocket::from_raw_socket(
                stream,
                Role::Server,
                Some(ws_config(message_bytes_max)),
            )),
            outbound: RefCell::new(VecDeque::new()),
            outbound_max,
            over_since: Cell::new(None),
            writer_wake: Notify::default(),
            closing: Latch::default(),
            kill: Latch::default(),
            reader_done: Cell::new(false),
            shed: Cell::new(0),
            read_failed: Cell::new(false),
            final_encoded: Cell::new(None),
            final_written: Cell::new(None),
            close_received: Cell::new(false),
        }
    }

    /// Give the WebSocket what the socket delivered; returns the buffer for
    /// the next read, with room for at least `spare_bytes_min`.
    pub fn feed(&self, bytes: Vec<u8>, spare_bytes_min: usize) -> Vec<u8> {
        self.ws.borrow_mut().get_mut().feed(bytes, spare_bytes_min)
    }

    pub fn set_eof(&self) {
        self.ws.borrow_mut().get_mut().set_eof();
    }

    /// The next complete message, `WouldBlock` when more bytes are needed.
    /// Control frames are answered (pong, close reply) into the output buffer;
    /// the writer is woken for them.
    ///
    /// After any other error the byte stream is out of step (tungstenite may
    /// be inside a frame it refused: reading on trips its assertions, found
    /// by `fuzz/` target `ws_session`), so every later read answers
    /// `AlreadyClosed` without looking at the bytes.
    pub fn read_message(&self) -> Result<Message, tungstenite::Error> {
        if self.read_failed.get() {
            return Err(tungstenite::Error::AlreadyClosed);
        }
        let mut ws = self.ws.borrow_mut();
        let result = ws.read();
        if let Err(error) = &result {
            let would_block =
                matches!(error, tungstenite::Error::Io(e) if e.kind() == io::ErrorKind::WouldBlock);
            if !would_block {
                self.read_failed.set(true);
            }
        }
        if ws.get_ref().has_outgoing() {
            self.writer_wake.notify();
        }
        result
    }

    /// Queue a JSON text message. Returns how far behind the client is.
    pub fn push_text(&self, json: String, sheddable: bool) -> Backlog {
        self.push_tagged(json, sheddable, None)
    }

    /// [`Link::push_text`] for a frame that carries segment `final_of`'s
    /// final (`None`: another message), so the link knows which finals
    /// reached the socket.
    pub fn push_tagged(&self, json: String, sheddable: bool, final_of: Option<u64>) -> Backlog {
        let mut queue = self.outbound.borrow_mut();
        queue.push_back(Outbound::Text {
            json,
            sheddable,
            final_of,
        });
        self.writer_wake.notify();
        if queue.len() <= self.outbound_max {
            self.over_since.set(None);
            return Backlog::Fine;
        }
        // Interims are best effort: drop the queued ones first.
        let before = queue.len();
        queue.retain(|item| {
            !matches!(
                item,
                Outbound::Text {
                    sheddable: true,
                    ..
                }
            )
        });
        self.shed
            .set(self.shed.get() + (before - queue.len()) as u64);
        if queue.len() <= self.outbound_max {
            return Backlog::Fine;
        }
        if queue.len() > self.outbound_max.saturating_mul(4) {
            return Backlog::Overflow;
        }
        let since = self.over_since.get().unwrap_or_else(Instant::now);
        self.over_since.set(Some(since));
        Backlog::Over(since)
    }

    /// Whether the queue has been over its bound continuously since `since`.
    pub fn still_over_since(&self, since: Instant) -> bool {
        self.over_since.get() == Some(since) && self.outbound.borrow().len() > self.outbound_max
    }

    /// Drop everything not yet written (the session is being closed for
    /// reading too slowly; its error and close frame go next).
    pub fn discard_outbound(&self) {
        self.outbound.borrow_mut().clear();
        self.over_since.set(None);
    }

    /// Queue a close frame; nothing queued after it is sent.
    pub fn push_close(&self, code: u16) {
        self.push_close_with_reason(code, "");
    }

    /// [`Link::push_close`] with a reason in the close frame.
    pub fn push_close_with_reason(&self, code: u16, reason: &'static str) {
        self.outbound
            .borrow_mut()
            .push_back(Outbound::Close(code, reason));
        self.writer_wake.notify();
        self.closing.trigger();
    }

    /// Encode everything queued into `out` for the socket. Returns false when
    /// there is nothing to write.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> bool {
        let mut ws = self.ws.borrow_mut();
        let mut queue = self.outbound.borrow_mut();
        for item in queue.drain(..) {
            // Errors here mean the socket is already closing (our close frame
            // went out): what follows it is dropped, as RFC 6455 requires.
            let _ = match item {
                Outbound::Text { json, final_of, .. } => {
                    if final_of.is_some() {
                        self.final_encoded.set(final_of);
                    }
                    ws.write(Message::text(json))
                }
                Outbound::Close(code, reason) => ws.close(Some(CloseFrame {
                    code: CloseCode::from(code),
                    reason: reason.into(),
                })),
            };
        }
        let _ = ws.flush();
        self.over_since.set(None);
        ws.get_mut().take_outgoing(out);
        !out.is_empty()
    }

    /// The writer wrote everything encoded so far to the socket.
    pub fn confirm_written(&self) {
        if let Some(segment_id) = self.final_encoded.take() {
            self.final_written.set(Some(segment_id));
        }
    }

    /// Whether tungstenite considers the connection closed on both sides.
    pub fn is_closed(&self) -> bool {
        !self.ws.borrow().can_read()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame, as a browser would send it.
    fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        masked_frame(true, opcode, payload, [1, 2, 3, 4])
    }

    /// Any masked client frame: FIN or not, any length encoding.
    fn masked_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut frame = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            len if len < 126 => frame.push(0x80 | len as u8),
            len if len <= usize::from(u16::MAX) => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        frame
    }

    /// Every message the link has complete, until it needs more bytes.
    fn drain(link: &Link, messages: &mut Vec<Message>) {
        loop {
            match link.read_message() {
                Ok(message) => messages.push(message),
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) => panic!("{error}"),
            }
        }
    }

    /// A client message for the property test: binary or text, sent whole or
    /// in fragments, and pings between them.
    #[derive(Debug, Clone)]
    enum Sent {
        Binary(Vec<u8>, usize),
        Text(String, usize),
        Ping(Vec<u8>),
    }

    impl Sent {
        fn encode(&self, mask: [u8; 4], out: &mut Vec<u8>) {
            let (opcode, payload, fragments) = match self {
                Sent::Binary(bytes, fragments) => (0x2, bytes.as_slice(), *fragments),
                Sent::Text(text, fragments) => (0x1, text.as_bytes(), *fragments),
                Sent::Ping(bytes) => {
                    out.extend(masked_frame(true, 0x9, bytes, mask));
                    return;
                }
            };
            // Split the payload into `fragments` pieces (the first may be empty).
            let piece = payload.len().div_ceil(fragments.max(1)).max(1);
            let pieces: Vec<&[u8]> = if payload.is_empty() {
                vec![payload]
            } else {
                payload.chunks(piece).collect()
            };
            for (index, part) in pieces.iter().enumerate() {
                let op = if index == 0 { opcode } else { 0x0 };
                out.extend(masked_frame(index + 1 == pieces.len(), op, part, mask));
            }
        }

        fn expected(&self) -> Message {
            match self {
                Sent::Binary(bytes, _) => Message::binary(bytes.clone()),
                Sent::Text(text, _) => Message::text(text.clone()),
                Sent::Ping(bytes) => Message::Ping(bytes.clone().into()),
            }
        }
    }

    fn sent() -> impl proptest::strategy::Strategy<Value = Sent> {
        use proptest::prelude::*;
        prop_oneof![
            (proptest::collection::vec(any::<u8>(), 0..70_000), 1usize..4)
                .prop_map(|(bytes, fragments)| Sent::Binary(bytes, fragments)),
            ("[ -~é€]{0,300}", 1usize..4).prop_map(|(text, fragments)| Sent::Text(text, fragments)),
            proptest::collection::vec(any::<u8>(), 0..125).prop_map(Sent::Ping),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

        /// Any stream of frames, fed in any pieces, gives the messages sent.
        #[test]
        fn any_split_of_a_frame_stream_gives_the_same_messages(
            messages in proptest::collection::vec(sent(), 1..6),
            mask in proptest::prelude::any::<[u8; 4]>(),
            cuts in proptest::collection::vec(proptest::prelude::any::<proptest::sample::Index>(), 0..12),
        ) {
            let mut bytes = Vec::new();
            for message in &messages {
                message.encode(mask, &mut bytes);
            }
            // Text fragments may split a character: UTF-8 is checked on the
            // whole message, so it must still arrive intact.
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
            cuts.push(0);
            cuts.push(bytes.len());
            cuts.sort_unstable();
            cuts.dedup();
            let link = Link::new(Vec::new(), 1 << 20, 8);
            let mut received = Vec::new();
            for pair in cuts.windows(2) {
                let spare = link.feed(bytes[pair[0]..pair[1]].to_vec(), 64);
                proptest::prop_assert!(spare.is_empty() && spare.capacity() >= 64);
                drain(&link, &mut received);
            }
            let expected: Vec<Message> = messages.iter().map(Sent::expected).collect();
            proptest::prop_assert_eq!(received, expected);
        }
    }

    #[test]
    fn frames_split_anywhere_give_the_same_messages() {
        let mut bytes = client_frame(0x2, &[1, 2, 3, 4, 5]);
        bytes.extend(client_frame(0x1, br#"{"type":"end"}"#));
        for split in 0..bytes.len() {
            let link = Link::new(bytes[..split].to_vec(), 1024, 8);
            let mut messages = Vec::new();
            drain(&link, &mut messages);
            let spare = link.feed(bytes[split..].to_vec(), 64);
            assert!(spare.is_empty() && spare.capacity() >= 64);
            drain(&link, &mut messages);
            assert_eq!(messages.len(), 2, "split at {split}");
            assert_eq!(messages[0], Message::binary(vec![1, 2, 3, 4, 5]));
            assert_eq!(messages[1], Message::text(r#"{"type":"end"}"#));
        }
    }

    #[test]
    fn oversized_messages_are_a_capacity_error() {
        let link = Link::new(client_frame(0x2, &[0u8; 100]), 64, 8);
        assert!(matches!(
            link.read_message(),
            Err(tungstenite::Error::Capacity(_))
        ));
    }

    #[test]
    fn the_outbound_queue_sheds_interims_then_reports_the_backlog() {
        let link = Link::new(Vec::new(), 1024, 2);
        assert_eq!(link.push_text("a".into(), true), Backlog::Fine);
        assert_eq!(link.push_text("b".into(), true), Backlog::Fine);
        // Over the bound: the interims go, the final stays.
        assert_eq!(link.push_text("final".into(), false), Backlog::Fine);
        assert_eq!(link.shed.get(), 2);
        link.push_text("final 2".into(), false);
        let since = match link.push_text("final 3".into(), false) {
            Backlog::Over(since) => since,
            other => panic!("{other:?}"),
        };
        assert!(link.still_over_since(since));
        for _ in 0..5 {
            link.push_text("more".into(), false);
        }
        assert_eq!(link.push_text("too many".into(), false), Backlog::Overflow);
        let mut out = Vec::new();
        assert!(link.encode_into(&mut out));
        assert!(!link.still_over_since(since));
    }
}
