//! Target `http_head_body`: request heads, chunked bodies and multipart
//! forms from arbitrary bytes, under the limits the settings allow, and a
//! model of the connection loop that runs them one request after another.

use transcription_service::http::body::{BodyError, ChunkedDecoder};
use transcription_service::http::head::{parse_head, BodyFraming, HeadError, RequestHead};

use super::input::Input;

/// Head limits of the settings' range (1 KiB to 1 MiB) and body limits.
const HEAD_BYTES_MAX: [usize; 3] = [1024, 4096, 16 * 1024];
const BODY_BYTES_MAX: [usize; 3] = [1024, 4096, 64 * 1024];

/// `[head limit][body limit][split u16][stream...]`: the stream is parsed as a
/// request head, decoded as a chunked body, and run through a model of the
/// connection's read loop (pipelined requests), whole and split at one point.
pub fn http_head_body(data: &[u8]) {
    let mut input = Input::new(data);
    let head_bytes_max = HEAD_BYTES_MAX[usize::from(input.u8()) % HEAD_BYTES_MAX.len()];
    let body_bytes_max = BODY_BYTES_MAX[usize::from(input.u8()) % BODY_BYTES_MAX.len()];
    let split = usize::from(input.u16());
    let stream = input.rest();
    let split = split % (stream.len() + 1);

    check_head(stream, head_bytes_max);
    check_chunked(stream, split, body_bytes_max);

    let whole = connection(&[stream], head_bytes_max, body_bytes_max);
    let pieces = connection(
        &[&stream[..split], &stream[split..]],
        head_bytes_max,
        body_bytes_max,
    );
    assert_eq!(
        whole, pieces,
        "the same bytes split at {split} give other requests"
    );
}

fn check_head(stream: &[u8], head_bytes_max: usize) {
    match parse_head(stream, head_bytes_max) {
        Ok(Some((head, len))) => {
            assert!(len > 0 && len <= stream.len() && len <= head_bytes_max);
            check_head_fields(&head);
            // Exactly the head parses the same.
            let (again, again_len) = parse_head(&stream[..len], head_bytes_max)
                .expect("the head alone is valid")
                .expect("the head alone is complete");
            assert_eq!(again_len, len);
            assert_eq!(format!("{again:?}"), format!("{head:?}"));
            // A strict prefix of a valid head is "need more", never an error:
            // the connection re-parses the buffer each time bytes arrive.
            for cut in [0, len / 2, len - 1] {
                let prefix = parse_head(&stream[..cut], head_bytes_max);
                assert!(
                    matches!(prefix, Ok(None)),
                    "prefix of {cut} bytes of a valid {len}-byte head gives {prefix:?}"
                );
            }
        }
        Ok(None) => assert!(stream.len() <= head_bytes_max),
        Err(HeadError::Malformed(why)) => assert!(!why.is_empty()),
        Err(HeadError::TooLarge | HeadError::TooManyHeaders) => {}
    }
}

fn check_head_fields(head: &RequestHead) {
    assert!(head.path.starts_with('/'));
    assert!(!head.path.contains('?'));
    assert!(head.minor_version <= 1);
    for (name, value) in &head.headers {
        assert_eq!(*name, name.to_ascii_lowercase());
        assert_eq!(value.trim(), value);
    }
    assert_eq!(
        head.has_body(),
        !matches!(head.framing, BodyFraming::None | BodyFraming::Length(0))
    );
    match head.framing {
        BodyFraming::Chunked => {
            assert!(head.minor_version >= 1);
            assert!(head.header("content-length").is_none());
        }
        BodyFraming::Length(length) => {
            assert!(head.header("transfer-encoding").is_none());
            let declared = head
                .header("content-length")
                .expect("framing from the header");
            assert_eq!(declared.parse::<u64>().ok(), Some(length));
        }
        BodyFraming::None => {
            assert!(head.header("content-length").is_none());
            assert!(head.header("transfer-encoding").is_none());
        }
    }
}

/// Decoded body, input consumed, done; the way the connection feeds it.
pub fn decode_chunked(
    pieces: &[&[u8]],
    body_bytes_max: usize,
) -> Result<(Vec<u8>, usize, bool), BodyError> {
    let mut decoder = ChunkedDecoder::default();
    let mut body = Vec::new();
    let mut pending = Vec::new();
    let mut consumed_total = 0;
    for piece in pieces {
        pending.extend_from_slice(piece);
        let consumed = decoder.decode(&pending, &mut body, body_bytes_max)?;
        assert!(consumed <= pending.len());
        assert!(body.len() <= body_bytes_max, "body grew past its limit");
        pending.drain(..consumed);
        consumed_total += consumed;
        if decoder.is_done() {
            break;
        }
    }
    Ok((body, consumed_total, decoder.is_done()))
}

fn check_chunked(stream: &[u8], split: usize, body_bytes_max: usize) {
    let whole = decode_chunked(&[stream], body_bytes_max);
    let pieces = decode_chunked(&[&stream[..split], &stream[split..]], body_bytes_max);
    assert_eq!(
        whole, pieces,
        "chunked body split at {split} decodes otherwise"
    );
    if let Ok((body, consumed, true)) = &whole {
        // Done: the decoder stops right after the body, and one byte at a time
        // (bounded, it is quadratic in the worst case) agrees.
        assert!(*consumed <= stream.len());
        if *consumed <= 512 {
            let bytes: Vec<&[u8]> = stream[..*consumed].chunks(1).collect();
            let single = decode_chunked(&bytes, body_bytes_max);
            assert_eq!(single, Ok((body.clone(), *consumed, true)));
        }
    }
}

/// What the model of the connection loop saw.
#[derive(Debug, PartialEq, Eq)]
pub enum ConnEvent {
    Request {
        head: String,
        body: Vec<u8>,
    },
    /// The connection answered an error and closed.
    Error,
    /// `Connection: close` (or HTTP/1.0 without keep-alive): no further request.
    Close,
    /// Waiting for more bytes at the end of the input.
    NeedMore,
}

enum ConnState {
    Head,
    Length {
        head: RequestHead,
        length: usize,
    },
    Chunked {
        head: RequestHead,
        decoder: ChunkedDecoder,
        body: Vec<u8>,
    },
}

/// `http::conn`'s read loop (head, then Content-Length or chunked body, then
/// the next pipelined request), over bytes that arrive as `pieces`.
pub fn connection(
    pieces: &[&[u8]],
    head_bytes_max: usize,
    body_bytes_max: usize,
) -> Vec<ConnEvent> {
    let mut events = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut state = ConnState::Head;
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match state {
                ConnState::Head => match parse_head(&buf, head_bytes_max) {
                    Ok(Some((head, head_len))) => {
                        buf.drain(..head_len);
                        state = match head.framing {
                            BodyFraming::None | BodyFraming::Length(0) => {
                                finish_request(&mut events, head, Vec::new());
                                if matches!(events.last(), Some(ConnEvent::Close)) {
                                    return events;
                                }
                                ConnState::Head
                            }
                            BodyFraming::Length(length) if length > body_bytes_max as u64 => {
                                events.push(ConnEvent::Error);
                                return events;
                            }
                            BodyFraming::Length(length) => ConnState::Length {
                                head,
                                length: length as usize,
                            },
                            BodyFraming::Chunked => ConnState::Chunked {
                                head,
                                decoder: ChunkedDecoder::default(),
                                body: Vec::new(),
                            },
                        };
                    }
                    Ok(None) => break,
                    Err(_) => {
                        events.push(ConnEvent::Error);
                        return events;
                    }
                },
                ConnState::Length { head, length } => {
                    if buf.len() < length {
                        state = ConnState::Length { head, length };
                        break;
                    }
                    let rest = buf.split_off(length);
                    let body = std::mem::replace(&mut buf, rest);
                    finish_request(&mut events, head, body);
                    if matches!(events.last(), Some(ConnEvent::Close)) {
                        return events;
                    }
                    state = ConnState::Head;
                }
                ConnState::Chunked {
                    head,
                    mut decoder,
                    mut body,
                } => match decoder.decode(&buf, &mut body, body_bytes_max) {
                    Ok(consumed) => {
                        buf.drain(..consumed);
                        if decoder.is_done() {
                            finish_request(&mut events, head, body);
                            if matches!(events.last(), Some(ConnEvent::Close)) {
                                return events;
                            }
                            state = ConnState::Head;
                        } else {
                            state = ConnState::Chunked {
                                head,
                                decoder,
                                body,
                            };
                            break;
                        }
                    }
                    Err(_) => {
                        events.push(ConnEvent::Error);
                        return events;
                    }
                },
            }
        }
    }
    events.push(ConnEvent::NeedMore);
    events
}

fn finish_request(events: &mut Vec<ConnEvent>, head: RequestHead, body: Vec<u8>) {
    check_head_fields(&head);
    if let BodyFraming::Length(length) = head.framing {
        assert_eq!(body.len() as u64, length);
    }
    let keep_alive = head.keep_alive;
    events.push(ConnEvent::Request {
        head: format!("{head:?}"),
        body,
    });
    if !keep_alive {
        events.push(ConnEvent::Close);
    }
}
