//! Quantising a finished f16 ggml file: the matrices become `q8_0`, every
//! other tensor (convolution kernels, biases, norms, positional embeddings)
//! and the header, filters and vocabulary are copied as they are.
//!
//! `q8_0` is ggml's simplest block format: each run of 32 consecutive values
//! of a row is stored as one f16 scale `d = max|x| / 127` followed by 32
//! signed bytes `round(x / d)` (34 bytes per 32 values). On this project's
//! CPUs whisper.cpp multiplies `q8_0` matrices with integer dot products; the
//! measured effect on speed and word error rate is in docs/MODELS.md.
//!
//! The header's `ftype` becomes `2007`: ggml's quantisation version (2) times
//! 1000 plus `GGML_FTYPE_MOSTLY_Q8_0` (7), as whisper.cpp's own tool writes
//! it; whisper.cpp then allocates the matrices as `q8_0` and the
//! convolutions as f16, which is exactly what this writes.

use std::io::Write;

use crate::error::Error;
use crate::f16::{f16_to_f32, f32_to_f16};
use crate::ggml::MAGIC;

/// ggml's element type ids, as stored in a tensor record.
pub const TYPE_F32: i32 = 0;
pub const TYPE_F16: i32 = 1;
pub const TYPE_Q8_0: i32 = 8;

/// Values per `q8_0` block and bytes per block (an f16 scale and 32 bytes).
pub const Q8_0_BLOCK_VALUES: usize = 32;
pub const Q8_0_BLOCK_BYTES: usize = 2 + Q8_0_BLOCK_VALUES;

/// The header `ftype` of a `q8_0` model: quantisation version 2 × 1000 +
/// `GGML_FTYPE_MOSTLY_Q8_0`.
pub const FTYPE_Q8_0: i32 = 2007;

/// What a quantisation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub tensors: usize,
    pub tensors_quantised: usize,
    pub output_bytes: u64,
}

/// Quantise the f16 ggml model in `input` (a whole file in memory) to `q8_0`
/// and write it to `out`.
///
/// # Errors
/// [`Error::Invalid`] when `input` is not a well-formed f16 ggml model (run
/// [`crate::check::check`] on it for the details), or a failed write.
pub fn quantize_q8_0(input: &[u8], out: &mut impl Write) -> Result<Summary, Error> {
    let mut reader = Reader {
        bytes: input,
        at: 0,
    };
    let mut writer = CountingWriter { out, bytes: 0 };
    if reader.u32("magic")? != MAGIC {
        return Err(Error::Invalid("not a ggml model file (bad magic)".into()));
    }
    writer.write(&MAGIC.to_le_bytes())?;
    // Ten hyper-parameters, then the ftype.
    let hparams = reader.take(40, "hyper-parameters")?;
    writer.write(hparams)?;
    let ftype = reader.i32("ftype")?;
    if ftype % 1000 != 1 {
        return Err(Error::Invalid(format!(
            "only f16 models (ftype 1) can be quantised; this one has ftype {ftype}"
        )));
    }
    writer.write(&FTYPE_Q8_0.to_le_bytes())?;

    // Mel filters and vocabulary, copied.
    let filters_start = reader.at;
    let n_mel = reader.count("mel filter rows")?;
    let n_fft = reader.count("mel filter columns")?;
    reader.take(n_mel.saturating_mul(n_fft).saturating_mul(4), "mel filters")?;
    let tokens = reader.count("vocabulary size")?;
    for _ in 0..tokens {
        let len = reader.count("token length")?;
        reader.take(len, "token")?;
    }
    writer.write(&input[filters_start..reader.at])?;

    let mut summary = Summary {
        tensors: 0,
        tensors_quantised: 0,
        output_bytes: 0,
    };
    let mut block = Vec::with_capacity(Q8_0_BLOCK_BYTES * 1024);
    while reader.at < input.len() {
        let n_dims = reader.count("tensor rank")?;
        if !(1..=4).contains(&n_dims) {
            return Err(Error::Invalid(format!("a tensor of rank {n_dims}")));
        }
        let name_len = reader.count("tensor name length")?;
        let ttype = reader.i32("tensor type")?;
        let mut dims = Vec::with_capacity(n_dims);
        for _ in 0..n_dims {
            dims.push(reader.count("tensor dimension")?);
        }
        let name = reader.take(name_len, "tensor name")?;
        let elements = dims
            .iter()
            .try_fold(1usize, |acc, &dim| acc.checked_mul(dim));
        let elements =
            elements.ok_or_else(|| Error::Invalid("a tensor's size overflows".into()))?;
        let element_bytes = match ttype {
            TYPE_F32 => 4,
            TYPE_F16 => 2,
            other => {
                return Err(Error::Invalid(format!(
                    "tensor {} has type {other}; only f32 and f16 are read",
                    String::from_utf8_lossy(name)
                )))
            }
        };
        let data = reader.take(elements.saturating_mul(element_bytes), "tensor data")?;
        // Matrices (rank 2, f16, rows a whole number of blocks) are quantised;
        // the rank-3 convolution kernels stay f16, as whisper.cpp expects.
        let quantise = ttype == TYPE_F16 && n_dims == 2 && dims[0] % Q8_0_BLOCK_VALUES == 0;
        writer.write(&(n_dims as i32).to_le_bytes())?;
        writer.write(&(name_len as i32).to_le_bytes())?;
        writer.write(&(if quantise { TYPE_Q8_0 } else { ttype }).to_le_bytes())?;
        for &dim in &dims {
            writer.write(&(dim as i32).to_le_bytes())?;
        }
        writer.write(name)?;
        if quantise {
            // 1024 blocks at a time through the reused buffer.
            for chunk in data.chunks(Q8_0_BLOCK_VALUES * 2 * 1024) {
                block.clear();
                for values in chunk.chunks_exact(Q8_0_BLOCK_VALUES * 2) {
                    q8_0_block(values, &mut block);
                }
                writer.write(&block)?;
            }
            summary.tensors_quantised += 1;
        } else {
            writer.write(data)?;
        }
        summary.tensors += 1;
    }
    summary.output_bytes = writer.bytes;
    Ok(summary)
}

/// One `q8_0` block from 32 little-endian f16 values, appended to `out`.
fn q8_0_block(values: &[u8], out: &mut Vec<u8>) {
    debug_assert_eq!(values.len(), Q8_0_BLOCK_VALUES * 2);
    let mut floats = [0f32; Q8_0_BLOCK_VALUES];
    for (float, half) in floats.iter_mut().zip(values.chunks_exact(2)) {
        *float = f16_to_f32(u16::from_le_bytes([half[0], half[1]]));
    }
    let amax = floats.iter().fold(0f32, |max, value| max.max(value.abs()));
    let scale = amax / 127.0;
    let inverse = if scale == 0.0 { 0.0 } else { 1.0 / scale };
    out.extend(f32_to_f16(scale).to_le_bytes());
    for value in floats {
        // |value × inverse| ≤ 127 by construction; the cast saturates anyway.
        out.push((value * inverse).round() as i8 as u8);
    }
}

/// The value a `q8_0` block decodes to at `index` (for tests and checks).
pub fn q8_0_value(block: &[u8], index: usize) -> f32 {
    let scale = f16_to_f32(u16::from_le_bytes([block[0], block[1]]));
    scale * f32::from(block[2 + index] as i8)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], Error> {
        let end = self
            .at
            .checked_add(len)
            .filter(|&end| end <= self.bytes.len());
        let end = end.ok_or_else(|| {
            Error::Invalid(format!("cut short at byte {} reading the {what}", self.at))
        })?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u32(&mut self, what: &str) -> Result<u32, Error> {
        let bytes = self.take(4, what)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn i32(&mut self, what: &str) -> Result<i32, Error> {
        self.u32(what).map(|value| value as i32)
    }

    /// A non-negative `i32` as a length.
    fn count(&mut self, what: &str) -> Result<usize, Error> {
        let value = self.i32(what)?;
        usize::try_from(value).map_err(|_| Error::Invalid(format!("the {what} is {value}")))
    }
}

struct CountingWriter<'a, W: Write> {
    out: &'a mut W,
    bytes: u64,
}

impl<W: Write> CountingWriter<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.out.write_all(bytes)?;
        self.bytes += bytes.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn halves(values: &[f32]) -> Vec<u8> {
        values
            .iter()
            .flat_map(|v| f32_to_f16(*v).to_le_bytes())
            .collect()
    }

    #[test]
    fn a_block_keeps_each_value_within_half_a_step() {
        let values: Vec<f32> = (0..32).map(|i| (i as f32 - 15.5) * 0.03125).collect();
        let mut block = Vec::new();
        q8_0_block(&halves(&values), &mut block);
        assert_eq!(block.len(), Q8_0_BLOCK_BYTES);
        let step = 15.5 * 0.03125 / 127.0;
        for (index, value) in values.iter().enumerate() {
            let decoded = q8_0_value(&block, index);
            assert!(
                (decoded - value).abs() <= step * 0.5 + 1e-3,
                "{index}: {decoded} vs {value}"
            );
        }
        // The largest magnitude maps to ±127.
        assert_eq!(block[2] as i8, -127);
        assert_eq!(block[33] as i8, 127);
    }

    #[test]
    fn an_all_zero_block_has_a_zero_scale() {
        let mut block = Vec::new();
        q8_0_block(&halves(&[0.0; 32]), &mut block);
        assert!(block.iter().all(|&byte| byte == 0));
    }

    /// A minimal f16 model: header, one filter row, two tokens, a 2-D f16
    /// matrix of 64 × 2, a rank-3 f16 kernel and an f32 bias; and the offsets
    /// where a tensor record starts or the file ends.
    fn model() -> (Vec<u8>, Vec<usize>) {
        let mut bytes = MAGIC.to_le_bytes().to_vec();
        for value in [2i32, 1500, 384, 6, 4, 448, 384, 6, 4, 80, 1] {
            bytes.extend(value.to_le_bytes());
        }
        for value in [1i32, 1] {
            bytes.extend(value.to_le_bytes());
        }
        bytes.extend(0.5f32.to_le_bytes());
        bytes.extend(2i32.to_le_bytes());
        for token in [&b"a"[..], b"bc"] {
            bytes.extend((token.len() as i32).to_le_bytes());
            bytes.extend(token);
        }
        let mut boundaries = vec![bytes.len()];
        let mut tensor =
            |bytes: &mut Vec<u8>, name: &str, ttype: i32, dims: &[i32], data: &[u8]| {
                bytes.extend((dims.len() as i32).to_le_bytes());
                bytes.extend((name.len() as i32).to_le_bytes());
                bytes.extend(ttype.to_le_bytes());
                for dim in dims {
                    bytes.extend(dim.to_le_bytes());
                }
                bytes.extend(name.as_bytes());
                bytes.extend(data);
                boundaries.push(bytes.len());
            };
        let matrix: Vec<f32> = (0..128).map(|i| (i as f32 - 64.0) / 64.0).collect();
        tensor(&mut bytes, "m.weight", TYPE_F16, &[64, 2], &halves(&matrix));
        tensor(
            &mut bytes,
            "conv.weight",
            TYPE_F16,
            &[3, 2, 1],
            &halves(&[1.0; 6]),
        );
        tensor(&mut bytes, "m.bias", TYPE_F32, &[2], &[0; 8]);
        (bytes, boundaries)
    }

    #[test]
    fn matrices_become_q8_0_and_everything_else_is_copied() {
        let (input, _) = model();
        let mut output = Vec::new();
        let summary = quantize_q8_0(&input, &mut output).expect("quantises");
        assert_eq!(summary.tensors, 3);
        assert_eq!(summary.tensors_quantised, 1);
        assert_eq!(summary.output_bytes, output.len() as u64);
        // The f16 matrix (256 bytes) became 4 blocks of 34 bytes.
        assert_eq!(input.len() - output.len(), 256 - 4 * Q8_0_BLOCK_BYTES);
        assert_eq!(&output[44..48], &FTYPE_Q8_0.to_le_bytes());
        // And the result passes the structural check the server runs.
        let checked = crate::check::check(std::io::Cursor::new(&output)).expect("checks");
        assert_eq!(checked.tensors, 3);
    }

    #[test]
    fn every_truncation_is_an_error_and_quantised_files_are_refused() {
        let (input, boundaries) = model();
        for len in 0..input.len() {
            let result = quantize_q8_0(&input[..len], &mut Vec::new());
            // Only a cut exactly between two tensor records leaves a shorter
            // well-formed model; every other cut is an error, not a panic.
            assert_eq!(
                result.is_ok(),
                boundaries.contains(&len),
                "cut at {len}: {result:?}"
            );
        }
        let mut once = Vec::new();
        quantize_q8_0(&input, &mut once).expect("quantises");
        let error = quantize_q8_0(&once, &mut Vec::new()).expect_err("already quantised");
        assert!(error.to_string().contains("ftype 2007"), "{error}");
    }
}
