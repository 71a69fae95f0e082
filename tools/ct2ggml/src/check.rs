//! A structural check of a whisper.cpp ggml model file, the reverse of
//! [`crate::ggml`]: the server runs it at start-up, before the file reaches
//! whisper.cpp.
//!
//! whisper.cpp returns an error for many bad files, but some (an unknown
//! `ftype`, absurd dimensions, a file cut short inside a tensor) trip a
//! `GGML_ASSERT` that aborts the whole process, or make it allocate what the
//! header claims. Walking the file first — header, mel filters, vocabulary,
//! every tensor's record and extent — turns those into a clear start-up
//! error. The layout is in docs/MODELS.md.

use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use crate::ggml::MAGIC;
use crate::hparams::Hparams;
use crate::quantize::{Q8_0_BLOCK_BYTES, Q8_0_BLOCK_VALUES, TYPE_F16, TYPE_F32, TYPE_Q8_0};

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub hparams: Hparams,
    pub tokens: usize,
    pub tensors: usize,
    pub bytes: u64,
}

/// Check the file at `path`.
///
/// # Errors
/// A message saying what is wrong and where.
pub fn check_file(path: &Path) -> Result<Summary, String> {
    let file = std::fs::File::open(path).map_err(|error| error.to_string())?;
    check(io::BufReader::new(file))
}

/// Check a model read from `reader`.
///
/// # Errors
/// A message saying what is wrong and where.
pub fn check<R: Read + Seek>(mut reader: R) -> Result<Summary, String> {
    let bytes = reader.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
    reader.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    let mut file = Walker {
        reader,
        offset: 0,
        bytes,
    };
    if file.u32("magic")? != MAGIC {
        return Err("not a ggml model file (bad magic)".into());
    }
    let hparams = file.hparams()?;

    let n_mel = file.i32_in("mel filter rows", 1, 256)?;
    let n_fft = file.i32_in("mel filter columns", 1, 1024)?;
    file.skip("mel filters", n_mel as u64 * n_fft as u64 * 4)?;

    let tokens = file.i32_in("vocabulary size", 0, 1_000_000)?;
    for _ in 0..tokens {
        let len = file.i32_in("token length", 0, 1024)?;
        file.skip("token", len as u64)?;
    }

    let mut tensors = 0;
    while file.offset < file.bytes {
        file.tensor()?;
        tensors += 1;
    }
    if tensors == 0 {
        return Err("the file has no tensors".into());
    }
    Ok(Summary {
        hparams,
        tokens: tokens as usize,
        tensors,
        bytes,
    })
}

struct Walker<R> {
    reader: R,
    offset: u64,
    bytes: u64,
}

impl<R: Read + Seek> Walker<R> {
    fn u32(&mut self, what: &str) -> Result<u32, String> {
        let mut word = [0u8; 4];
        self.reader.read_exact(&mut word).map_err(|error| {
            if error.kind() == io::ErrorKind::UnexpectedEof {
                format!("cut short at byte {} reading the {what}", self.offset)
            } else {
                error.to_string()
            }
        })?;
        self.offset += 4;
        Ok(u32::from_le_bytes(word))
    }

    fn i32_in(&mut self, what: &str, low: i32, high: i32) -> Result<i32, String> {
        let at = self.offset;
        let value = self.u32(what)? as i32;
        if (low..=high).contains(&value) {
            Ok(value)
        } else {
            Err(format!(
                "the {what} at byte {at} is {value}, outside {low}..={high}"
            ))
        }
    }

    fn skip(&mut self, what: &str, len: u64) -> Result<(), String> {
        let end = self.offset.saturating_add(len);
        if end > self.bytes {
            return Err(format!(
                "cut short: the {what} at byte {} needs {len} bytes, the file ends at {}",
                self.offset, self.bytes
            ));
        }
        self.reader
            .seek(SeekFrom::Start(end))
            .map_err(|e| e.to_string())?;
        self.offset = end;
        Ok(())
    }

    /// The header, each value within what any Whisper model has (with room).
    fn hparams(&mut self) -> Result<Hparams, String> {
        let hparams = Hparams {
            n_vocab: self.i32_in("n_vocab", 1, 100_000)?,
            n_audio_ctx: self.i32_in("n_audio_ctx", 1, 1500)?,
            n_audio_state: self.i32_in("n_audio_state", 1, 4096)?,
            n_audio_head: self.i32_in("n_audio_head", 1, 64)?,
            n_audio_layer: self.i32_in("n_audio_layer", 1, 64)?,
            n_text_ctx: self.i32_in("n_text_ctx", 1, 448)?,
            n_text_state: self.i32_in("n_text_state", 1, 4096)?,
            n_text_head: self.i32_in("n_text_head", 1, 64)?,
            n_text_layer: self.i32_in("n_text_layer", 1, 64)?,
            n_mels: self.i32_in("n_mels", 1, 256)?,
            ftype: self.i32_in("ftype", 0, i32::MAX)?,
        };
        // whisper.cpp stores the quantisation version times 1000 beside the
        // type; f32, f16 and q8_0 weights (crate::quantize) are supported.
        if !matches!(hparams.ftype % 1000, 0 | 1 | 7) {
            return Err(format!(
                "ftype {} is not supported (only f32, f16 and q8_0 weights)",
                hparams.ftype
            ));
        }
        if hparams.n_audio_state % hparams.n_audio_head != 0
            || hparams.n_text_state % hparams.n_text_head != 0
        {
            return Err("the state sizes are not multiples of the head counts".into());
        }
        Ok(hparams)
    }

    /// One tensor record and its data.
    fn tensor(&mut self) -> Result<(), String> {
        let at = self.offset;
        let n_dims = self.i32_in("tensor rank", 1, 4)?;
        let name_len = self.i32_in("tensor name length", 1, 256)?;
        let ttype = self.i32_in("tensor type", 0, 8)?;
        if !matches!(ttype, TYPE_F32 | TYPE_F16 | TYPE_Q8_0) {
            return Err(format!(
                "the tensor at byte {at} has type {ttype} (only f32, f16 and q8_0 are supported)"
            ));
        }
        let mut elements: u64 = 1;
        let mut row = 0;
        for index in 0..n_dims {
            let dim = self.i32_in("tensor dimension", 1, 1 << 24)?;
            if index == 0 {
                row = dim as u64;
            }
            elements = elements.saturating_mul(dim as u64);
        }
        let mut name = vec![0u8; name_len as usize];
        self.reader
            .read_exact(&mut name)
            .map_err(|_| format!("cut short in the name of the tensor at byte {at}"))?;
        self.offset += name_len as u64;
        let name = String::from_utf8_lossy(&name).into_owned();
        let bytes = match ttype {
            TYPE_F32 => elements.saturating_mul(4),
            TYPE_F16 => elements.saturating_mul(2),
            _ => {
                // q8_0: whole blocks of 32 values along each row.
                let block = Q8_0_BLOCK_VALUES as u64;
                if row % block != 0 {
                    return Err(format!(
                        "tensor {name:?}: q8_0 rows of {row} values are not whole blocks of {block}"
                    ));
                }
                (elements / block).saturating_mul(Q8_0_BLOCK_BYTES as u64)
            }
        };
        self.skip(&format!("tensor {name:?}"), bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn words(values: &[i32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    /// A tiny but well-formed model: 2 tokens, one f16 and one f32 tensor.
    fn model() -> Vec<u8> {
        let mut bytes = MAGIC.to_le_bytes().to_vec();
        bytes.extend(words(&[51864, 1500, 384, 6, 4, 448, 384, 6, 4, 80, 1]));
        bytes.extend(words(&[2, 3]));
        bytes.extend([0u8; 2 * 3 * 4]);
        bytes.extend(words(&[2, 1]));
        bytes.push(b'a');
        bytes.extend(words(&[2]));
        bytes.extend(b"bc");
        bytes.extend(words(&[2, 6, 1, 3, 2]));
        bytes.extend(b"weight");
        bytes.extend([0u8; 3 * 2 * 2]);
        bytes.extend(words(&[1, 4, 0, 5]));
        bytes.extend(b"bias");
        bytes.extend([0u8; 5 * 4]);
        bytes
    }

    #[test]
    fn a_well_formed_model_passes() {
        let bytes = model();
        let summary = check(Cursor::new(&bytes)).expect("valid");
        assert_eq!(summary.tokens, 2);
        assert_eq!(summary.tensors, 2);
        assert_eq!(summary.bytes, bytes.len() as u64);
        assert_eq!(summary.hparams.n_audio_state, 384);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = model();
        // Cut exactly after the first tensor, the file is a well-formed model
        // with one tensor (whisper.cpp then reports the missing one).
        let first_tensor_end = bytes.len() - (3 * 4 + 4 + 4 + 5 * 4);
        for len in (0..bytes.len()).filter(|&len| len != first_tensor_end) {
            let error = check(Cursor::new(&bytes[..len])).expect_err("truncated");
            assert!(!error.is_empty());
        }
    }

    #[test]
    fn bad_headers_and_records_are_refused_with_the_reason() {
        let cases: [(usize, i32, &str); 6] = [
            (4 + 10 * 4, 8, "ftype 8"),
            (4 + 2 * 4, 1 << 30, "n_audio_state"),
            (4 + 3 * 4, 5, "multiples"),
            (4 + 11 * 4, 100_000, "mel filter rows"),
            // The first tensor's type, after header, filters and vocabulary.
            (4 + 11 * 4 + 8 + 24 + 4 + 5 + 6 + 8, 9, "tensor type"),
            (4 + 11 * 4 + 8 + 24 + 4 + 5 + 6 + 12, -1, "tensor dimension"),
        ];
        for (offset, value, expected) in cases {
            let mut bytes = model();
            bytes[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
            let error = check(Cursor::new(&bytes)).expect_err(expected);
            assert!(error.contains(expected), "{expected}: {error}");
        }
        let mut bytes = model();
        bytes[0] = b'x';
        assert!(check(Cursor::new(&bytes)).is_err());
    }

    #[test]
    fn trailing_garbage_is_a_bad_tensor() {
        let mut bytes = model();
        bytes.extend([1, 2, 3]);
        assert!(check(Cursor::new(&bytes)).is_err());
    }
}
