//! WebSocket framing (RFC 6455 §5) for the multiplexed `stream` driver,
//! which drives non-blocking sockets itself instead of through tungstenite.
//!
//! * [`encode_client_frame`] appends one complete, **masked** client frame
//!   (FIN set; 7-, 16- or 64-bit payload length; 4-byte masking key) to a
//!   buffer — a client must mask every frame it sends.
//! * [`FrameReader`] takes the bytes a socket produced, in whatever pieces,
//!   and returns complete server messages ([`ServerFrame`]): server frames
//!   are unmasked (a masked one is a protocol error); fragmented data
//!   messages are reassembled; control frames (close, ping, pong) may arrive
//!   between fragments.
//! * [`MaskRng`] makes masking keys (xorshift: unpredictable enough for a
//!   load generator on loopback, and cheap).

use std::fmt;

/// Continuation frame.
pub const OP_CONTINUATION: u8 = 0x0;
/// Text frame (UTF-8).
pub const OP_TEXT: u8 = 0x1;
/// Binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Close frame.
pub const OP_CLOSE: u8 = 0x8;
/// Ping frame.
pub const OP_PING: u8 = 0x9;
/// Pong frame.
pub const OP_PONG: u8 = 0xA;

/// Largest message (after reassembly) accepted from the server.
pub const MAX_MESSAGE: usize = 16 << 20;

/// Bytes a frame header takes for a payload of `len` bytes (client frames:
/// with the 4-byte masking key).
pub fn client_header_len(len: usize) -> usize {
    let ext = if len < 126 {
        0
    } else if len <= 0xFFFF {
        2
    } else {
        8
    };
    2 + ext + 4
}

/// Appends one complete client frame (FIN set) with `opcode`, the payload
/// XOR-ed with `mask`, to `out`.
pub fn encode_client_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    let len = payload.len();
    out.reserve(client_header_len(len) + len);
    out.push(0x80 | (opcode & 0x0F));
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask);
}

/// XORs `data` with the repeating 4-byte `mask` (its own inverse).
pub fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    let word = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        c.copy_from_slice(&(u64::from_ne_bytes(b) ^ word).to_ne_bytes());
    }
    // The remainder starts at a multiple of 8, so mask index = position % 4.
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

/// Masking keys from a xorshift64* generator.
#[derive(Debug, Clone)]
pub struct MaskRng(u64);

impl MaskRng {
    /// A generator seeded from `seed` (any value; 0 is remapped).
    pub fn new(seed: u64) -> Self {
        MaskRng(seed | 1)
    }

    /// The next masking key.
    pub fn next_mask(&mut self) -> [u8; 4] {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((r >> 32) as u32).to_ne_bytes()
    }
}

/// A complete message from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerFrame {
    /// A text message (valid UTF-8).
    Text(String),
    /// A binary message, with its length (the content is not kept).
    Binary(usize),
    /// A close frame and its status code (`None` when it had no payload).
    Close(Option<u16>),
    /// A ping, with the payload the pong must echo.
    Ping(Vec<u8>),
    /// A pong.
    Pong,
}

/// A framing violation by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError(pub String);

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FrameError {}

fn err<T>(what: impl Into<String>) -> Result<T, FrameError> {
    Err(FrameError(what.into()))
}

/// Reassembles server messages from bytes received in arbitrary pieces.
#[derive(Debug, Default)]
pub struct FrameReader {
    /// Received bytes not yet consumed, from `pos` on.
    buf: Vec<u8>,
    pos: usize,
    /// A fragmented data message in progress: its opcode and payload so far.
    partial: Option<(u8, Vec<u8>)>,
}

impl FrameReader {
    /// An empty reader.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held (unparsed, plus a partial fragmented message).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos + self.partial.as_ref().map_or(0, |p| p.1.len())
    }

    /// The next complete message, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<ServerFrame>, FrameError> {
        loop {
            let avail = &self.buf[self.pos..];
            if avail.len() < 2 {
                self.compact();
                return Ok(None);
            }
            let (b0, b1) = (avail[0], avail[1]);
            let fin = b0 & 0x80 != 0;
            if b0 & 0x70 != 0 {
                return err(format!("reserved bits set in frame header {b0:#04x}"));
            }
            let opcode = b0 & 0x0F;
            if b1 & 0x80 != 0 {
                return err("masked frame from the server");
            }
            let (len, header) = match b1 & 0x7F {
                126 => {
                    let Some(b) = avail.get(2..4) else {
                        self.compact();
                        return Ok(None);
                    };
                    (u64::from(u16::from_be_bytes([b[0], b[1]])), 4)
                }
                127 => {
                    let Some(b) = avail.get(2..10) else {
                        self.compact();
                        return Ok(None);
                    };
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    (u64::from_be_bytes(a), 10)
                }
                n => (u64::from(n), 2),
            };
            if len > MAX_MESSAGE as u64 {
                return err(format!("frame of {len} bytes (limit {MAX_MESSAGE})"));
            }
            let len = len as usize;
            if avail.len() < header + len {
                self.compact();
                return Ok(None);
            }
            let payload_at = self.pos + header;
            self.pos += header + len;
            let payload = &self.buf[payload_at..payload_at + len];
            match opcode {
                OP_CLOSE | OP_PING | OP_PONG => {
                    if !fin || len > 125 {
                        return err("fragmented or oversized control frame");
                    }
                    return Ok(Some(match opcode {
                        OP_CLOSE => match payload.len() {
                            0 => ServerFrame::Close(None),
                            1 => return err("close frame with a 1-byte payload"),
                            _ => ServerFrame::Close(Some(u16::from_be_bytes([
                                payload[0], payload[1],
                            ]))),
                        },
                        OP_PING => ServerFrame::Ping(payload.to_vec()),
                        _ => ServerFrame::Pong,
                    }));
                }
                OP_TEXT | OP_BINARY => {
                    if self.partial.is_some() {
                        return err("new data frame inside a fragmented message");
                    }
                    if fin {
                        return finish_message(opcode, payload).map(Some);
                    }
                    self.partial = Some((opcode, payload.to_vec()));
                }
                OP_CONTINUATION => {
                    let Some((_, data)) = self.partial.as_mut() else {
                        return err("continuation frame without a message");
                    };
                    if data.len() + len > MAX_MESSAGE {
                        return err(format!("message longer than {MAX_MESSAGE} bytes"));
                    }
                    data.extend_from_slice(payload);
                    if fin {
                        if let Some((op, data)) = self.partial.take() {
                            return finish_message(op, &data).map(Some);
                        }
                    }
                }
                other => return err(format!("unknown opcode {other:#x}")),
            }
        }
    }

    /// Drops consumed bytes once they dominate the buffer.
    fn compact(&mut self) {
        if self.pos > 0 && (self.pos == self.buf.len() || self.pos >= 4096) {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }
}

fn finish_message(opcode: u8, payload: &[u8]) -> Result<ServerFrame, FrameError> {
    if opcode == OP_TEXT {
        match std::str::from_utf8(payload) {
            Ok(s) => Ok(ServerFrame::Text(s.to_string())),
            Err(e) => err(format!("text message is not UTF-8: {e}")),
        }
    } else {
        Ok(ServerFrame::Binary(payload.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes a client frame (the server's view): fin, opcode, payload.
    fn decode_client(frame: &[u8]) -> (bool, u8, Vec<u8>, usize) {
        assert!(frame[1] & 0x80 != 0, "client frames must be masked");
        let (len, mut at) = match frame[1] & 0x7F {
            126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
            127 => {
                let mut a = [0u8; 8];
                a.copy_from_slice(&frame[2..10]);
                (u64::from_be_bytes(a) as usize, 10)
            }
            n => (n as usize, 2),
        };
        let mask = [frame[at], frame[at + 1], frame[at + 2], frame[at + 3]];
        at += 4;
        let mut payload = frame[at..at + len].to_vec();
        apply_mask(&mut payload, mask);
        (frame[0] & 0x80 != 0, frame[0] & 0x0F, payload, at + len)
    }

    /// An unmasked server frame.
    fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![(if fin { 0x80 } else { 0 }) | opcode];
        let len = payload.len();
        if len < 126 {
            f.push(len as u8);
        } else if len <= 0xFFFF {
            f.push(126);
            f.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            f.push(127);
            f.extend_from_slice(&(len as u64).to_be_bytes());
        }
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn client_frames_are_masked_with_7_16_and_64_bit_lengths() {
        let mut rng = MaskRng::new(42);
        for (len, header) in [
            (0usize, 6usize),
            (1, 6),
            (125, 6),
            (126, 8),
            (640, 8),
            (65535, 8),
            (65536, 14),
            (70001, 14),
        ] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let mask = rng.next_mask();
            let mut out = vec![0xEE]; // appended after existing bytes
            encode_client_frame(&mut out, OP_BINARY, &payload, mask);
            let frame = &out[1..];
            assert_eq!(frame.len(), header + len, "len {len}");
            assert_eq!(client_header_len(len), header);
            assert_eq!(frame[0], 0x82, "FIN + binary");
            match len {
                0..=125 => assert_eq!(frame[1], 0x80 | len as u8),
                126..=65535 => {
                    assert_eq!(frame[1], 0x80 | 126);
                    assert_eq!(&frame[2..4], &(len as u16).to_be_bytes());
                }
                _ => {
                    assert_eq!(frame[1], 0x80 | 127);
                    assert_eq!(&frame[2..10], &(len as u64).to_be_bytes());
                }
            }
            assert_eq!(&frame[header - 4..header], &mask);
            if len >= 8 && mask != [0; 4] {
                assert_ne!(&frame[header..], &payload[..], "payload must be masked");
            }
            let (fin, op, got, used) = decode_client(frame);
            assert!(fin);
            assert_eq!(op, OP_BINARY);
            assert_eq!(got, payload, "len {len}");
            assert_eq!(used, frame.len());
        }
        let mut out = Vec::new();
        encode_client_frame(&mut out, OP_TEXT, br#"{"type":"end"}"#, [1, 2, 3, 4]);
        assert_eq!(out[0], 0x81);
        assert_eq!(decode_client(&out).2, br#"{"type":"end"}"#);
    }

    #[test]
    fn mask_matches_the_bytewise_definition() {
        let mask = [0xA1, 0x02, 0xF3, 0x44];
        for len in 0..40 {
            let data: Vec<u8> = (0..len as u8).collect();
            let mut fast = data.clone();
            apply_mask(&mut fast, mask);
            let slow: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            assert_eq!(fast, slow, "len {len}");
        }
    }

    #[test]
    fn masks_vary() {
        let mut rng = MaskRng::new(0);
        let a = rng.next_mask();
        let b = rng.next_mask();
        assert_ne!(a, b);
    }

    #[test]
    fn reads_server_frames_split_at_every_byte() {
        let long = "x".repeat(300); // 16-bit length
        let mut wire = server_frame(true, OP_TEXT, br#"{"type":"session_start"}"#);
        wire.extend(server_frame(true, OP_PING, b"hi"));
        wire.extend(server_frame(true, OP_TEXT, long.as_bytes()));
        // A fragmented text message with a pong in between.
        wire.extend(server_frame(false, OP_TEXT, b"ab"));
        wire.extend(server_frame(true, OP_PONG, b""));
        wire.extend(server_frame(false, OP_CONTINUATION, b"cd"));
        wire.extend(server_frame(true, OP_CONTINUATION, b"ef"));
        wire.extend(server_frame(true, OP_BINARY, &[0u8; 70_000])); // 64-bit length
        wire.extend(server_frame(true, OP_CLOSE, &1000u16.to_be_bytes()));
        let expected = vec![
            ServerFrame::Text(r#"{"type":"session_start"}"#.into()),
            ServerFrame::Ping(b"hi".to_vec()),
            ServerFrame::Text(long.clone()),
            ServerFrame::Pong,
            ServerFrame::Text("abcdef".into()),
            ServerFrame::Binary(70_000),
            ServerFrame::Close(Some(1000)),
        ];
        // All at once, then split in two at every position.
        for split in std::iter::once(wire.len()).chain(0..wire.len()) {
            let mut r = FrameReader::new();
            let mut got = Vec::new();
            for piece in [&wire[..split], &wire[split..]] {
                r.push(piece);
                while let Some(f) = r.next_frame().unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(got, expected, "split at {split}");
            assert_eq!(r.buffered(), 0);
        }
        // One byte at a time.
        let mut r = FrameReader::new();
        let mut got = Vec::new();
        for b in &wire {
            r.push(std::slice::from_ref(b));
            while let Some(f) = r.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn close_without_code_and_protocol_errors() {
        let mut r = FrameReader::new();
        r.push(&server_frame(true, OP_CLOSE, b""));
        assert_eq!(r.next_frame().unwrap(), Some(ServerFrame::Close(None)));
        assert_eq!(r.next_frame().unwrap(), None);

        let bad = |wire: Vec<u8>| {
            let mut r = FrameReader::new();
            r.push(&wire);
            r.next_frame().unwrap_err().0
        };
        // A masked server frame.
        let mut masked = Vec::new();
        encode_client_frame(&mut masked, OP_TEXT, b"hi", [1, 2, 3, 4]);
        assert!(bad(masked).contains("masked"));
        assert!(bad(vec![0xC1, 0x00]).contains("reserved"));
        assert!(bad(server_frame(true, OP_CONTINUATION, b"x")).contains("continuation"));
        assert!(bad(server_frame(false, OP_PING, b"")).contains("control"));
        assert!(bad(server_frame(true, OP_TEXT, &[0xFF, 0xFE])).contains("UTF-8"));
        assert!(bad(server_frame(true, 0x3, b"")).contains("opcode"));
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&(u64::MAX).to_be_bytes());
        assert!(bad(huge).contains("limit"));
    }
}
