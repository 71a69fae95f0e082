//! Target `http_head_body`: request heads, chunked bodies and multipart
//! forms from arbitrary bytes, under the limits the settings allow, and the
//! real connection loop (`http::conn` over an in-memory transport) running
//! them one request after another.

use transcription_service::http::body::{BodyError, ChunkedDecoder};
use transcription_service::http::head::{parse_head, BodyFraming, HeadError, RequestHead};
use transcription_service::http::memory::serve_bytes;

use super::input::Input;

/// Head limits of the settings' range (1 KiB to 1 MiB) and body limits.
const HEAD_BYTES_MAX: [usize; 3] = [1024, 4096, 16 * 1024];
const BODY_BYTES_MAX: [usize; 3] = [1024, 4096, 64 * 1024];

/// `[head limit][body limit][split u16][stream...]`: the stream is parsed as a
/// request head, decoded as a chunked body, and run through the real
/// connection loop (pipelined requests), read whole and `split` bytes at a time.
pub fn http_head_body(data: &[u8]) {
    let mut input = Input::new(data);
    let head_bytes_max = HEAD_BYTES_MAX[usize::from(input.u8()) % HEAD_BYTES_MAX.len()];
    let body_bytes_max = BODY_BYTES_MAX[usize::from(input.u8()) % BODY_BYTES_MAX.len()];
    let split = usize::from(input.u16());
    let stream = input.rest();
    let split = split % (stream.len() + 1);

    check_head(stream, head_bytes_max);
    check_chunked(stream, split, body_bytes_max);

    // The real read loop: the same bytes, read whole or `split` at a time,
    // get the same answers and hand over the same upgrade bytes.
    let whole = served(stream, stream.len().max(1));
    let pieces = served(stream, split.max(1));
    assert_eq!(
        whole, pieces,
        "the same bytes read {split} at a time get other answers"
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

/// What the real connection loop (`http::conn::serve` over an in-memory
/// transport, `http::memory`) answers to `stream` read `chunk_bytes` at a
/// time: everything it wrote, with the `Date` headers taken out (they follow
/// the clock), and the bytes it handed over with an upgrade.
fn served(stream: &[u8], chunk_bytes: usize) -> (Vec<u8>, Option<Vec<u8>>) {
    let served = serve_bytes(stream, chunk_bytes).expect("a runtime");
    let mut output = Vec::with_capacity(served.output.len());
    for line in served.output.split_inclusive(|&byte| byte == b'\n') {
        if !line.starts_with(b"Date: ") {
            output.extend_from_slice(line);
        }
    }
    (output, served.upgraded)
}
