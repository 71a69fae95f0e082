//! A minimal RIFF/WAVE reader for the streaming scenarios.
//!
//! The `stream` scenario sends raw PCM16 little-endian mono, so it needs the
//! sample rate and the bytes of the `data` chunk. [`parse_pcm16_mono`] walks
//! the RIFF chunk list properly (a `fact`, `LIST` or other chunk may sit
//! between `fmt ` and `data`; chunks are padded to even sizes) instead of
//! assuming a canonical 44-byte header.

use anyhow::{bail, Context, Result};

/// `WAVE_FORMAT_PCM`.
const FORMAT_PCM: u16 = 1;
/// `WAVE_FORMAT_EXTENSIBLE` (the real format is in the sub-format GUID).
const FORMAT_EXTENSIBLE: u16 = 0xFFFE;

/// PCM16 mono audio: its rate and its samples as little-endian bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pcm16 {
    /// Samples per second.
    pub sample_rate: u32,
    /// The `data` chunk (an even number of bytes: a trailing odd byte is dropped).
    pub data: Vec<u8>,
}

impl Pcm16 {
    /// Number of samples.
    pub fn samples(&self) -> u64 {
        (self.data.len() / 2) as u64
    }

    /// Duration in seconds.
    pub fn seconds(&self) -> f64 {
        self.samples() as f64 / f64::from(self.sample_rate)
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Parses a RIFF/WAVE file and returns its PCM16 mono data; anything else
/// (float, 8/24/32-bit, several channels, no `data` chunk) is an error.
pub fn parse_pcm16_mono(bytes: &[u8]) -> Result<Pcm16> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        bail!("not a RIFF/WAVE file");
    }
    let mut fmt: Option<(u16, u16, u32, u16)> = None;
    let mut pos = 12usize;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let size = u32_at(bytes, pos + 4).context("truncated chunk header")? as usize;
        let body = pos + 8;
        if id == b"fmt " {
            let b = bytes
                .get(body..body + size.min(bytes.len() - body))
                .context("truncated fmt chunk")?;
            if b.len() < 16 {
                bail!("fmt chunk too short ({} bytes)", b.len());
            }
            let mut format = u16_at(b, 0).context("fmt")?;
            if format == FORMAT_EXTENSIBLE {
                // cbSize(2) validBits(2) channelMask(4) then the GUID whose
                // first two bytes are the format tag.
                format = u16_at(b, 24).context("truncated WAVE_FORMAT_EXTENSIBLE fmt chunk")?;
            }
            let channels = u16_at(b, 2).context("fmt")?;
            let rate = u32_at(b, 4).context("fmt")?;
            let bits = u16_at(b, 14).context("fmt")?;
            fmt = Some((format, channels, rate, bits));
        } else if id == b"data" {
            let (format, channels, rate, bits) =
                fmt.context("the data chunk comes before any fmt chunk")?;
            if format != FORMAT_PCM {
                bail!("WAV format tag {format} is not integer PCM (1)");
            }
            if bits != 16 {
                bail!("WAV has {bits}-bit samples; the stream scenario needs 16-bit PCM");
            }
            if channels != 1 {
                bail!("WAV has {channels} channels; the stream scenario needs mono");
            }
            if rate == 0 {
                bail!("WAV sample rate is 0");
            }
            // A streamed WAV may declare a size larger than the file (or
            // 0xFFFFFFFF): take what is there.
            let end = body.saturating_add(size).min(bytes.len());
            let mut data = bytes[body..end].to_vec();
            data.truncate(data.len() & !1);
            if data.is_empty() {
                bail!("WAV data chunk is empty");
            }
            return Ok(Pcm16 {
                sample_rate: rate,
                data,
            });
        }
        // Chunks are padded to an even size.
        pos = body.saturating_add(size).saturating_add(size & 1);
    }
    bail!("no data chunk in the WAV file")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(id: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = id.to_vec();
        v.extend_from_slice(&(body.len() as u32).to_le_bytes());
        v.extend_from_slice(body);
        if body.len() % 2 == 1 {
            v.push(0);
        }
        v
    }

    fn fmt_body(format: u16, channels: u16, rate: u32, bits: u16) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&format.to_le_bytes());
        b.extend_from_slice(&channels.to_le_bytes());
        b.extend_from_slice(&rate.to_le_bytes());
        let block = channels * bits / 8;
        b.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
        b.extend_from_slice(&block.to_le_bytes());
        b.extend_from_slice(&bits.to_le_bytes());
        b
    }

    fn riff(chunks: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = chunks.concat();
        let mut v = b"RIFF".to_vec();
        v.extend_from_slice(&(4 + body.len() as u32).to_le_bytes());
        v.extend_from_slice(b"WAVE");
        v.extend_from_slice(&body);
        v
    }

    #[test]
    fn canonical_header() {
        let pcm: Vec<u8> = (0..200u8).collect();
        let wav = riff(&[
            chunk(b"fmt ", &fmt_body(1, 1, 16000, 16)),
            chunk(b"data", &pcm),
        ]);
        assert_eq!(wav.len(), 44 + 200);
        let p = parse_pcm16_mono(&wav).unwrap();
        assert_eq!(p.sample_rate, 16000);
        assert_eq!(p.data, pcm);
        assert_eq!(p.samples(), 100);
    }

    #[test]
    fn skips_other_chunks_and_padding() {
        let pcm = vec![7u8; 64];
        let wav = riff(&[
            chunk(b"fmt ", &fmt_body(1, 1, 8000, 16)),
            chunk(b"LIST", b"odd"), // 3 bytes + 1 pad byte
            chunk(b"fact", &[0, 0, 0, 0]),
            chunk(b"data", &pcm),
        ]);
        let p = parse_pcm16_mono(&wav).unwrap();
        assert_eq!(p.sample_rate, 8000);
        assert_eq!(p.data, pcm);
    }

    #[test]
    fn extensible_pcm_and_oversized_data_size() {
        let mut fmt = fmt_body(FORMAT_EXTENSIBLE, 1, 16000, 16);
        fmt.extend_from_slice(&22u16.to_le_bytes()); // cbSize
        fmt.extend_from_slice(&16u16.to_le_bytes()); // valid bits
        fmt.extend_from_slice(&4u32.to_le_bytes()); // channel mask
        fmt.extend_from_slice(&1u16.to_le_bytes()); // GUID starts with PCM tag
        fmt.extend_from_slice(&[0u8; 14]);
        let mut wav = riff(&[chunk(b"fmt ", &fmt), chunk(b"data", &[1, 2, 3, 4, 5])]);
        // Pretend a streaming writer left the size at its maximum.
        let at = wav.len() - 6 - 4; // data body is 5 bytes + 1 pad
        wav[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let p = parse_pcm16_mono(&wav).unwrap();
        // 6 bytes remain (5 + pad), odd byte rule keeps an even count.
        assert_eq!(p.data.len(), 6);
    }

    #[test]
    fn rejects_unsuitable_files() {
        let pcm = vec![0u8; 8];
        for (wav, why) in [
            (b"RIFX....WAVE".to_vec(), "not a RIFF/WAVE"),
            (
                riff(&[chunk(b"fmt ", &fmt_body(1, 1, 16000, 16))]),
                "no data",
            ),
            (riff(&[chunk(b"data", &pcm)]), "before any fmt"),
            (
                riff(&[
                    chunk(b"fmt ", &fmt_body(3, 1, 16000, 32)),
                    chunk(b"data", &pcm),
                ]),
                "not integer PCM",
            ),
            (
                riff(&[
                    chunk(b"fmt ", &fmt_body(1, 2, 16000, 16)),
                    chunk(b"data", &pcm),
                ]),
                "2 channels",
            ),
            (
                riff(&[
                    chunk(b"fmt ", &fmt_body(1, 1, 16000, 8)),
                    chunk(b"data", &pcm),
                ]),
                "8-bit",
            ),
            (
                riff(&[
                    chunk(b"fmt ", &fmt_body(1, 1, 16000, 16)),
                    chunk(b"data", &[]),
                ]),
                "empty",
            ),
        ] {
            let err = parse_pcm16_mono(&wav).unwrap_err().to_string();
            assert!(err.contains(why), "expected `{why}` in `{err}`");
        }
    }

    #[test]
    fn reads_the_repository_fixtures() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/");
        for name in ["hello.wav", "two_utterances.wav"] {
            let Ok(bytes) = std::fs::read(format!("{dir}{name}")) else {
                continue; // fixtures are optional for this unit test
            };
            let p = parse_pcm16_mono(&bytes).unwrap();
            assert_eq!(p.sample_rate, 16000, "{name}");
            assert_eq!(p.data.len(), bytes.len() - 44, "{name}");
        }
        if let Ok(bytes) = std::fs::read(format!("{dir}hello_f32.wav")) {
            assert!(parse_pcm16_mono(&bytes).is_err());
        }
    }
}
