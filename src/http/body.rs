//! Request bodies framed by `Transfer-Encoding: chunked`.
//!
//! [`ChunkedDecoder`] is incremental: it is fed whatever bytes have arrived,
//! appends the decoded data to the body, and reports how much input it
//! consumed; a chunk-size line or trailer that is not complete yet is left
//! unconsumed for the next call. `Content-Length` bodies need no decoder: the
//! connection reads exactly that many bytes.

use crate::error::{ApiError, ErrorKind};
use crate::limits::{CHUNK_LINE_BYTES_MAX, CHUNK_TRAILER_BYTES_MAX};

/// Why a body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    Malformed(&'static str),
    TooLarge,
}

impl From<BodyError> for ApiError {
    fn from(error: BodyError) -> ApiError {
        match error {
            BodyError::Malformed(why) => ApiError::new(ErrorKind::BadRequest, why),
            BodyError::TooLarge => ApiError::new(
                ErrorKind::PayloadTooLarge,
                "request body is larger than the server accepts",
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data.
    Data {
        remaining: u64,
    },
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty line.
    Trailer {
        bytes: usize,
    },
    Done,
}

/// Decodes a chunked body incrementally.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder { state: State::Size }
    }
}

impl ChunkedDecoder {
    /// Whether the terminating chunk and trailers have been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decode from `input`, appending data to `body`. Returns the number of
    /// input bytes consumed; stops at [`Self::is_done`] without consuming what
    /// follows (the next pipelined request).
    ///
    /// # Errors
    /// [`BodyError::Malformed`] for bad framing, [`BodyError::TooLarge`] when
    /// `body` would grow past `body_bytes_max`.
    pub fn decode(
        &mut self,
        input: &[u8],
        body: &mut Vec<u8>,
        body_bytes_max: usize,
    ) -> Result<usize, BodyError> {
        let mut at = 0;
        loop {
            let rest = &input[at..];
            match self.state {
                State::Done => return Ok(at),
                State::Size => {
                    let Some(line_len) = find_crlf(rest, CHUNK_LINE_BYTES_MAX)? else {
                        return Ok(at);
                    };
                    let size = parse_chunk_size(&rest[..line_len])?;
                    at += line_len + 2;
                    if size == 0 {
                        self.state = State::Trailer { bytes: 0 };
                    } else {
                        let total = (body.len() as u64).saturating_add(size);
                        if total > body_bytes_max as u64 {
                            return Err(BodyError::TooLarge);
                        }
                        self.state = State::Data { remaining: size };
                    }
                }
                State::Data { remaining } => {
                    if rest.is_empty() {
                        return Ok(at);
                    }
                    let take = rest
                        .len()
                        .min(usize::try_from(remaining).unwrap_or(usize::MAX));
                    body.extend_from_slice(&rest[..take]);
                    at += take;
                    let remaining = remaining - take as u64;
                    self.state = if remaining == 0 {
                        State::DataEnd
                    } else {
                        State::Data { remaining }
                    };
                }
                State::DataEnd => {
                    // Check each byte as it arrives, so a bad one is refused
                    // at once rather than after the next byte.
                    if rest.first().is_some_and(|&b| b != b'\r')
                        || rest.get(1).is_some_and(|&b| b != b'\n')
                    {
                        return Err(BodyError::Malformed("chunk data not followed by CRLF"));
                    }
                    if rest.len() < 2 {
                        return Ok(at);
                    }
                    at += 2;
                    self.state = State::Size;
                }
                State::Trailer { bytes } => {
                    let Some(line_len) = find_crlf(rest, CHUNK_TRAILER_BYTES_MAX)? else {
                        return Ok(at);
                    };
                    at += line_len + 2;
                    let bytes = bytes + line_len + 2;
                    if bytes > CHUNK_TRAILER_BYTES_MAX {
                        return Err(BodyError::Malformed("chunked trailer too large"));
                    }
                    // Trailer fields are read and ignored; an empty line ends them.
                    self.state = if line_len == 0 {
                        State::Done
                    } else {
                        State::Trailer { bytes }
                    };
                }
            }
        }
    }
}

/// The length of the line before the first CRLF, or `None` if there is none
/// yet. A line longer than `line_bytes_max` is an error.
fn find_crlf(bytes: &[u8], line_bytes_max: usize) -> Result<Option<usize>, BodyError> {
    let window = &bytes[..bytes.len().min(line_bytes_max + 2)];
    match window.windows(2).position(|pair| pair == b"\r\n") {
        Some(position) => Ok(Some(position)),
        None if bytes.len() > line_bytes_max + 1 => {
            Err(BodyError::Malformed("chunk line too long"))
        }
        None => Ok(None),
    }
}

fn parse_chunk_size(line: &[u8]) -> Result<u64, BodyError> {
    // Chunk extensions (";name=value") are allowed and ignored.
    let digits = line.split(|&b| b == b';').next().unwrap_or_default();
    let digits = trim_ascii(digits);
    if digits.is_empty() || digits.len() > 15 {
        return Err(BodyError::Malformed("invalid chunk size"));
    }
    let mut size: u64 = 0;
    for &byte in digits {
        let value = match byte {
            b'0'..=b'9' => byte - b'0',
            b'a'..=b'f' => byte - b'a' + 10,
            b'A'..=b'F' => byte - b'A' + 10,
            _ => return Err(BodyError::Malformed("invalid chunk size")),
        };
        size = size * 16 + u64::from(value);
    }
    Ok(size)
}

fn trim_ascii(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |p| p + 1);
    &bytes[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BODY: &[u8] = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";

    fn decode_all(pieces: &[&[u8]], max: usize) -> Result<(Vec<u8>, usize), BodyError> {
        let mut decoder = ChunkedDecoder::default();
        let mut body = Vec::new();
        let mut pending = Vec::new();
        let mut consumed_total = 0;
        for piece in pieces {
            pending.extend_from_slice(piece);
            let consumed = decoder.decode(&pending, &mut body, max)?;
            pending.drain(..consumed);
            consumed_total += consumed;
            if decoder.is_done() {
                break;
            }
        }
        assert!(decoder.is_done(), "decoder finished");
        Ok((body, consumed_total))
    }

    #[test]
    fn decodes_and_stops_before_the_next_request() {
        let (body, consumed) = decode_all(&[BODY], 1024).expect("valid");
        assert_eq!(body, b"hello, world");
        assert_eq!(&BODY[consumed..], b"NEXT");
    }

    #[test]
    fn refuses_bad_framing_and_oversize() {
        let mut decoder = ChunkedDecoder::default();
        assert!(decoder.decode(b"zz\r\n", &mut Vec::new(), 1024).is_err());
        let mut decoder = ChunkedDecoder::default();
        assert!(decoder.decode(b"3\r\nabcX", &mut Vec::new(), 1024).is_err());
        let mut decoder = ChunkedDecoder::default();
        assert_eq!(
            decoder.decode(b"400\r\n", &mut Vec::new(), 1023),
            Err(BodyError::TooLarge)
        );
        let mut decoder = ChunkedDecoder::default();
        let long = vec![b'1'; CHUNK_LINE_BYTES_MAX + 8];
        assert!(decoder.decode(&long, &mut Vec::new(), 1024).is_err());
    }

    proptest! {
        /// Any split of the input decodes to the same body.
        #[test]
        fn every_split_decodes_the_same(a in 0usize..BODY.len(), b in 0usize..BODY.len()) {
            let (a, b) = (a.min(b), a.max(b));
            let (body, _) = decode_all(&[&BODY[..a], &BODY[a..b], &BODY[b..]], 1024).expect("valid");
            prop_assert_eq!(body, b"hello, world".to_vec());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut decoder = ChunkedDecoder::default();
            let _ = decoder.decode(&bytes, &mut Vec::new(), 64);
        }
    }
}
