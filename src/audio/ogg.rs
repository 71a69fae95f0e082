//! Ogg metadata, stripped before symphonia sees it.
//!
//! symphonia 0.5 sizes the buffers of a Vorbis or Opus comment header (and
//! of the metadata blocks of FLAC in Ogg) from their length fields before it
//! checks them against the bytes present, so a few hundred bytes of crafted
//! Ogg could make it reserve gigabytes. We read no metadata, so
//! [`without_comments`] rewrites the physical stream page by page: every
//! logical stream's comment packet is replaced by an empty one of the same
//! codec (Vorbis: no vendor, no comment, the framing bit; Opus: `OpusTags`
//! with no vendor and no comment; FLAC: a zero-length PADDING block with the
//! same "last block" flag), pages the comment alone filled are dropped, the
//! page sequence numbers of each stream renumbered and every CRC recomputed.
//! Audio packets are copied as they are.
//!
//! The input must be a clean run of Ogg pages (what every encoder writes);
//! bytes that are not a page where one must start are refused, so nothing
//! can hide a comment from this parser and show it to symphonia's (which
//! resynchronises on the capture pattern). A page cut off at the end of the
//! body is dropped, as symphonia would drop it.

use std::collections::HashMap;

use super::AudioError;

const CAPTURE: &[u8; 4] = b"OggS";
/// Fixed part of a page header, before the segment table.
const HEADER_BYTES: usize = 27;
/// Header type flag: the page starts with the continuation of a packet.
const CONTINUED: u8 = 0x01;

const NOT_OGG: AudioError = AudioError::Unsupported("the Ogg stream is malformed");

/// One page as read: its header fields and its packets' fragments.
struct Page<'a> {
    header_type: u8,
    granule: [u8; 8],
    serial: u32,
    /// The payload cut at the lacing values: each fragment and whether it
    /// ends its packet (a lacing value below 255).
    fragments: Vec<(&'a [u8], bool)>,
}

/// Where each logical stream is in its header packets.
#[derive(Default)]
struct StreamState {
    /// Packets started so far.
    packets: u64,
    /// The packet being read is a comment: its fragments are dropped, and
    /// this replaces it where it ends.
    replacing: Option<Vec<u8>>,
    /// Sequence number for the next page written.
    next_sequence: u32,
    /// The stream is FLAC in Ogg (its first packet says so): its metadata
    /// blocks are packets of their own.
    flac: bool,
}

/// The body with every comment packet emptied (see the module docs).
///
/// # Errors
/// [`AudioError::Unsupported`] when the bytes are not a clean run of Ogg
/// pages.
pub fn without_comments(bytes: &[u8]) -> Result<Vec<u8>, AudioError> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut streams: HashMap<u32, StreamState> = HashMap::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let Some((page, used)) = read_page(rest)? else {
            // Cut off at the end of the body.
            break;
        };
        rest = &rest[used..];
        let state = streams.entry(page.serial).or_default();
        rewrite_page(&page, state, &mut out);
    }
    Ok(out)
}

/// One page from the start of `bytes` and the bytes it took; `Ok(None)`
/// when the body ends inside it.
fn read_page(bytes: &[u8]) -> Result<Option<(Page<'_>, usize)>, AudioError> {
    if bytes.len() < HEADER_BYTES {
        return if CAPTURE.starts_with(&bytes[..bytes.len().min(4)]) {
            Ok(None)
        } else {
            Err(NOT_OGG)
        };
    }
    if &bytes[..4] != CAPTURE || bytes[4] != 0 {
        return Err(NOT_OGG);
    }
    let segments = usize::from(bytes[26]);
    let Some(table) = bytes.get(HEADER_BYTES..HEADER_BYTES + segments) else {
        return Ok(None);
    };
    let payload_len: usize = table.iter().map(|&lace| usize::from(lace)).sum();
    let start = HEADER_BYTES + segments;
    let Some(payload) = bytes.get(start..start + payload_len) else {
        return Ok(None);
    };
    let mut fragments = Vec::new();
    let (mut offset, mut fragment_start) = (0, 0);
    for &lace in table {
        offset += usize::from(lace);
        if lace < 255 {
            fragments.push((&payload[fragment_start..offset], true));
            fragment_start = offset;
        }
    }
    if table.last() == Some(&255) {
        // A packet that goes on in the next page.
        fragments.push((&payload[fragment_start..], false));
    }
    let mut granule = [0; 8];
    granule.copy_from_slice(&bytes[6..14]);
    let serial = u32::from_le_bytes([bytes[14], bytes[15], bytes[16], bytes[17]]);
    let page = Page {
        header_type: bytes[5],
        granule,
        serial,
        fragments,
    };
    Ok(Some((page, start + payload_len)))
}

/// Write `page` with its comment fragments dropped and, where a comment
/// packet ends, its empty replacement; nothing when nothing is left.
fn rewrite_page(page: &Page<'_>, state: &mut StreamState, out: &mut Vec<u8>) {
    // What the page carries now: (bytes, whether the packet ends here).
    let mut kept: Vec<(std::borrow::Cow<'_, [u8]>, bool)> = Vec::new();
    let mut continued = false;
    for (index, &(fragment, ends)) in page.fragments.iter().enumerate() {
        let continues = index == 0 && page.header_type & CONTINUED != 0;
        if !continues {
            if state.packets == 0 {
                state.flac = fragment.starts_with(b"\x7FFLAC");
            }
            state.replacing = comment_replacement(state.flac, fragment);
            state.packets += 1;
        }
        match &state.replacing {
            Some(replacement) => {
                if ends {
                    kept.push((replacement.clone().into(), true));
                    state.replacing = None;
                }
            }
            None => {
                continued |= continues;
                kept.push((fragment.into(), ends));
            }
        }
    }
    if kept.is_empty() {
        return;
    }
    let mut table: Vec<u8> = Vec::new();
    for (bytes, ends) in &kept {
        lace(bytes.len(), !ends, &mut table);
    }
    if table.len() > 255 {
        // Replacements are shorter than what they replace, so a page read
        // (at most 255 lacing values) never grows past it; refuse to write
        // a broken page rather than trust that.
        debug_assert!(false, "a rewritten Ogg page grew past 255 segments");
        return;
    }
    let header_type = if continued {
        page.header_type | CONTINUED
    } else {
        page.header_type & !CONTINUED
    };
    let start = out.len();
    out.extend_from_slice(CAPTURE);
    out.push(0);
    out.push(header_type);
    out.extend_from_slice(&page.granule);
    out.extend_from_slice(&page.serial.to_le_bytes());
    out.extend_from_slice(&state.next_sequence.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(table.len() as u8);
    out.extend_from_slice(&table);
    for (bytes, _) in &kept {
        out.extend_from_slice(bytes);
    }
    let crc = crc32(&out[start..]);
    out[start + 22..start + 26].copy_from_slice(&crc.to_le_bytes());
    state.next_sequence = state.next_sequence.wrapping_add(1);
}

/// Lacing values for a fragment of `len` bytes; `open`: the packet goes on
/// in the next page (no terminating value below 255).
fn lace(len: usize, open: bool, table: &mut Vec<u8>) {
    table.extend(std::iter::repeat_n(255, len / 255));
    if !open {
        table.push((len % 255) as u8);
    }
}

/// The empty packet that replaces a packet whose first bytes are `first`,
/// when that packet is a comment; `None` otherwise.
fn comment_replacement(flac: bool, first: &[u8]) -> Option<Vec<u8>> {
    if first.starts_with(b"\x03vorbis") {
        // Vendor length 0, no comment, the framing bit.
        let mut packet = b"\x03vorbis".to_vec();
        packet.extend_from_slice(&[0; 8]);
        packet.push(1);
        return Some(packet);
    }
    if first.starts_with(b"OpusTags") {
        let mut packet = b"OpusTags".to_vec();
        packet.extend_from_slice(&[0; 8]);
        return Some(packet);
    }
    // FLAC in Ogg: a VORBIS_COMMENT (4) or PICTURE (6) metadata block becomes
    // an empty PADDING block (1) with the same "last block" flag. (Audio
    // frames start with the 0xFF sync byte, never with these.)
    let block = *first.first()?;
    if flac && matches!(block & 0x7F, 4 | 6) {
        return Some(vec![(block & 0x80) | 1, 0, 0, 0]);
    }
    None
}

/// The Ogg CRC: CRC-32 with polynomial 0x04C11DB7, not reflected, initial
/// value 0, over the page with its CRC field zeroed.
fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut index = 0;
        while index < 256 {
            let mut crc = (index as u32) << 24;
            let mut bit = 0;
            while bit < 8 {
                crc = if crc & 0x8000_0000 != 0 {
                    (crc << 1) ^ 0x04C1_1DB7
                } else {
                    crc << 1
                };
                bit += 1;
            }
            table[index] = crc;
            index += 1;
        }
        table
    };
    bytes.iter().fold(0u32, |crc, &byte| {
        (crc << 8) ^ TABLE[usize::from((crc >> 24) as u8 ^ byte)]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Vec<u8> {
        let seed = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fuzz/seeds/audio_decode/ogg_vorbis"
        ))
        .expect("the Ogg Vorbis seed");
        // The harness's selector byte, then the file.
        seed[1..].to_vec()
    }

    /// Every page of a rewritten stream, with its packets reassembled.
    fn packets(bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut packets = Vec::new();
        let mut open: Option<Vec<u8>> = None;
        let mut rest = bytes;
        while let Some((page, used)) = read_page(rest).expect("clean pages") {
            let mut check = rest[..used].to_vec();
            let stored = u32::from_le_bytes([check[22], check[23], check[24], check[25]]);
            check[22..26].fill(0);
            assert_eq!(crc32(&check), stored, "a page's CRC");
            rest = &rest[used..];
            for (fragment, ends) in page.fragments {
                let packet = open.get_or_insert_with(Vec::new);
                packet.extend_from_slice(fragment);
                if ends {
                    packets.extend(open.take());
                }
            }
        }
        packets
    }

    #[test]
    fn the_crc_of_a_real_page_matches() {
        let bytes = fixture();
        let (_, used) = read_page(&bytes).expect("a page").expect("whole");
        let mut page = bytes[..used].to_vec();
        let stored = u32::from_le_bytes([page[22], page[23], page[24], page[25]]);
        page[22..26].fill(0);
        assert_eq!(crc32(&page), stored);
    }

    #[test]
    fn only_the_comment_packet_changes() {
        let bytes = fixture();
        let before = packets(&bytes);
        let after = packets(&without_comments(&bytes).expect("clean"));
        assert_eq!(before.len(), after.len());
        assert!(before[1].starts_with(b"\x03vorbis"));
        assert_eq!(after[1], b"\x03vorbis\0\0\0\0\0\0\0\0\x01");
        for (index, (old, new)) in before.iter().zip(&after).enumerate() {
            if index != 1 {
                assert_eq!(old, new, "packet {index}");
            }
        }
    }

    #[test]
    fn junk_between_pages_is_refused_and_a_cut_page_dropped() {
        let bytes = fixture();
        let (_, used) = read_page(&bytes).expect("a page").expect("whole");
        let mut junk = bytes[..used].to_vec();
        junk.extend_from_slice(b"junk");
        junk.extend_from_slice(&bytes[used..]);
        assert!(without_comments(&junk).is_err());
        let cut = &bytes[..bytes.len() - 10];
        let rewritten = without_comments(cut).expect("a cut page is dropped");
        assert!(rewritten.len() < cut.len());
        assert!(without_comments(b"OggS").expect("nothing whole").is_empty());
    }
}
