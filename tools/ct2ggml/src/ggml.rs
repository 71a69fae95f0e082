//! The ggml model file writer, the last hop: it receives the header, the
//! filter bank, the tokens and the planned tensors, and owns the byte
//! layout whisper.cpp's `whisper_model_load` reads (all little-endian):
//!
//! - `u32 magic` `0x67676d6c` ("ggml"), then the eleven `i32` hparams;
//! - `i32 n_mels, i32 n_fft_bins`, then the f32 filter weights;
//! - `i32 n_tokens`, then per token `i32 length` and the bytes;
//! - per tensor `i32 n_dims, i32 name_length, i32 type`, the dims
//!   *innermost first* (PyTorch order reversed), the name, the data.

use std::io::Write;

use crate::ct2::Dtype;
use crate::error::Error;
use crate::f16::{f16_to_f32, f32_to_f16};
use crate::hparams::Hparams;
use crate::tensors::{Element, Tensor};

pub const MAGIC: u32 = 0x6767_6d6c;

/// Elements converted per batch; the buffer is reused across tensors.
const BATCH_ELEMENTS: usize = 64 * 1024;

pub struct Writer<W: Write> {
    out: W,
    bytes_written: u64,
    /// Converted elements on their way out; allocated once.
    buffer: Vec<u8>,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Writer<W> {
        Writer {
            out,
            bytes_written: 0,
            buffer: Vec::with_capacity(BATCH_ELEMENTS * 4),
        }
    }

    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    fn bytes(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.out.write_all(bytes)?;
        self.bytes_written += bytes.len() as u64;
        Ok(())
    }

    fn i32(&mut self, value: i32) -> Result<(), Error> {
        self.bytes(&value.to_le_bytes())
    }

    /// A length or dimension as the `i32` the format stores.
    fn length(&mut self, value: usize) -> Result<(), Error> {
        let value = i32::try_from(value).map_err(|_| {
            Error::Invalid(format!("{value} does not fit the ggml file's i32 fields"))
        })?;
        self.i32(value)
    }

    pub fn write_header(&mut self, hparams: &Hparams) -> Result<(), Error> {
        self.bytes(&MAGIC.to_le_bytes())?;
        for value in hparams.to_array() {
            self.i32(value)?;
        }
        Ok(())
    }

    pub fn write_filters(
        &mut self,
        n_mels: usize,
        n_fft_bins: usize,
        weights: &[f32],
    ) -> Result<(), Error> {
        assert_eq!(weights.len(), n_mels * n_fft_bins);
        self.length(n_mels)?;
        self.length(n_fft_bins)?;
        for chunk in weights.chunks(BATCH_ELEMENTS) {
            self.buffer.clear();
            self.buffer
                .extend(chunk.iter().flat_map(|weight| weight.to_le_bytes()));
            self.flush_buffer()?;
        }
        Ok(())
    }

    pub fn write_vocabulary(&mut self, tokens: &[Vec<u8>]) -> Result<(), Error> {
        self.length(tokens.len())?;
        for token in tokens {
            self.length(token.len())?;
            self.bytes(token)?;
        }
        Ok(())
    }

    pub fn write_tensor(&mut self, tensor: &Tensor<'_>) -> Result<(), Error> {
        self.length(tensor.dims.len())?;
        self.length(tensor.name.len())?;
        self.i32(tensor.element as i32)?;
        for &dim in tensor.dims.iter().rev() {
            self.length(dim)?;
        }
        self.bytes(tensor.name.as_bytes())?;
        match (tensor.source_dtype, tensor.element) {
            (Dtype::F32, Element::F32) | (Dtype::F16, Element::F16) => self.bytes(tensor.data),
            (Dtype::F16, Element::F32) => self.write_converted(tensor.data, 2, |bytes, out| {
                out.extend(f16_to_f32(u16::from_le_bytes([bytes[0], bytes[1]])).to_le_bytes());
            }),
            (Dtype::F32, Element::F16) => self.write_converted(tensor.data, 4, |bytes, out| {
                let value = f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
                out.extend(f32_to_f16(value).to_le_bytes());
            }),
            (dtype, _) => unreachable!("the plan admits only f32 and f16 sources, got {dtype:?}"),
        }
    }

    /// Converts `data` element by element (`source_size` bytes each) in
    /// batches through the reused buffer.
    fn write_converted(
        &mut self,
        data: &[u8],
        source_size: usize,
        convert: impl Fn(&[u8], &mut Vec<u8>),
    ) -> Result<(), Error> {
        for batch in data.chunks(BATCH_ELEMENTS * source_size) {
            self.buffer.clear();
            for element in batch.chunks_exact(source_size) {
                convert(element, &mut self.buffer);
            }
            self.flush_buffer()?;
        }
        Ok(())
    }

    fn flush_buffer(&mut self) -> Result<(), Error> {
        self.out.write_all(&self.buffer)?;
        self.bytes_written += self.buffer.len() as u64;
        Ok(())
    }
}
