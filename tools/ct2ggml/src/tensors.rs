//! The tensor plan: which ggml tensor comes from which rows of which
//! CTranslate2 variable, under what name, shape and element type. It
//! receives the parsed [`Model`] and the [`Hparams`], checks every source
//! variable's shape against them, and hands [`crate::ggml`] a list of
//! [`Tensor`]s whose data still borrows `model.bin`.
//!
//! CTranslate2 fuses projections whisper.cpp keeps apart: self-attention
//! `linear_0` is query, key and value stacked by rows (split in thirds), and
//! cross-attention `linear_1` is key and value (split in halves). Whisper's
//! key projections have no bias; CTranslate2 stores zeros in their slice of
//! the fused bias, and the slice is dropped. (Even a non-zero key bias would
//! not matter: it adds the same `q·b` to every score of a query, which the
//! softmax cancels.)

use std::ops::Range;

use crate::ct2::{Dtype, Model, Variable};
use crate::error::Error;
use crate::hparams::Hparams;

/// The element type of a tensor in the ggml file, with ggml's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Element {
    F32 = 0,
    F16 = 1,
}

impl Element {
    pub fn size_bytes(self) -> usize {
        match self {
            Element::F32 => 4,
            Element::F16 => 2,
        }
    }
}

/// One tensor of the output.
#[derive(Debug, Clone)]
pub struct Tensor<'m> {
    /// The ggml name, e.g. `decoder.blocks.0.cross_attn.key.weight`.
    pub name: String,
    /// Shape in PyTorch order (the file stores it reversed).
    pub dims: Vec<usize>,
    /// The element type written.
    pub element: Element,
    /// The source elements: F32 or F16 only (checked when planned).
    pub source_dtype: Dtype,
    /// The source bytes, exactly `elements × source size` of them.
    pub data: &'m [u8],
}

impl Tensor<'_> {
    pub fn elements(&self) -> usize {
        self.dims.iter().product()
    }
}

/// Every tensor whisper.cpp loads, in file order.
///
/// # Errors
/// [`Error::Invalid`] for a missing variable or a shape that disagrees with
/// the hyper-parameters; [`Error::Unsupported`] for a variable that is
/// neither f32 nor f16 (a quantized model).
pub fn plan<'m>(model: &'m Model<'_>, hparams: &Hparams) -> Result<Vec<Tensor<'m>>, Error> {
    let mut planner = Planner {
        model,
        tensors: Vec::new(),
    };
    let audio_state = hparams.n_audio_state as usize;
    let text_state = hparams.n_text_state as usize;
    let mels = hparams.n_mels as usize;

    planner.whole(
        "encoder/position_encodings/encodings",
        "encoder.positional_embedding",
        &[hparams.n_audio_ctx as usize, audio_state],
    )?;
    planner.whole(
        "encoder/conv1/weight",
        "encoder.conv1.weight",
        &[audio_state, mels, 3],
    )?;
    planner.conv_bias("encoder/conv1/bias", "encoder.conv1.bias", audio_state)?;
    planner.whole(
        "encoder/conv2/weight",
        "encoder.conv2.weight",
        &[audio_state, audio_state, 3],
    )?;
    planner.conv_bias("encoder/conv2/bias", "encoder.conv2.bias", audio_state)?;
    for layer in 0..hparams.n_audio_layer {
        let from = format!("encoder/layer_{layer}");
        let to = format!("encoder.blocks.{layer}");
        planner.self_attention(&from, &to, audio_state)?;
        planner.feed_forward(&from, &to, audio_state)?;
    }
    planner.layer_norm("encoder/layer_norm", "encoder.ln_post", audio_state)?;

    planner.whole(
        "decoder/position_encodings/encodings",
        "decoder.positional_embedding",
        &[hparams.n_text_ctx as usize, text_state],
    )?;
    planner.whole(
        "decoder/embeddings/weight",
        "decoder.token_embedding.weight",
        &[hparams.n_vocab as usize, text_state],
    )?;
    for layer in 0..hparams.n_text_layer {
        let from = format!("decoder/layer_{layer}");
        let to = format!("decoder.blocks.{layer}");
        planner.self_attention(&from, &to, text_state)?;
        planner.cross_attention(&from, &to, text_state)?;
        planner.feed_forward(&from, &to, text_state)?;
    }
    planner.layer_norm("decoder/layer_norm", "decoder.ln", text_state)?;
    Ok(planner.tensors)
}

struct Planner<'m, 'a> {
    model: &'m Model<'a>,
    tensors: Vec<Tensor<'m>>,
}

impl<'m> Planner<'m, '_> {
    /// The variable `name`, checked to have shape `dims` and a float type.
    fn source(&self, name: &str, dims: &[usize]) -> Result<&'m Variable<'m>, Error> {
        let variable: &'m Variable<'m> = self
            .model
            .get(name)
            .ok_or_else(|| Error::Invalid(format!("missing variable {name}")))?;
        if variable.dims != dims {
            return Err(Error::Invalid(format!(
                "{name} has shape {:?}, expected {dims:?}",
                variable.dims
            )));
        }
        if !matches!(variable.dtype, Dtype::F32 | Dtype::F16) {
            return Err(Error::Unsupported(format!(
                "{name} is {:?}; only f32 and f16 models convert (this one is quantized)",
                variable.dtype
            )));
        }
        Ok(variable)
    }

    /// Adds rows `rows` of `source` as `name` with shape `dims`.
    fn push(
        &mut self,
        source: &'m Variable<'m>,
        rows: Range<usize>,
        name: String,
        dims: Vec<usize>,
    ) {
        let row_bytes = source.bytes.len() / source.dims[0];
        let data = &source.bytes[rows.start * row_bytes..rows.end * row_bytes];
        // The reference converter's rule: vectors, positional embeddings and
        // conv biases stay f32; every matrix becomes f16.
        let keep_f32 = dims.len() < 2
            || name.ends_with("positional_embedding")
            || name.ends_with("conv1.bias")
            || name.ends_with("conv2.bias");
        let element = if keep_f32 { Element::F32 } else { Element::F16 };
        let tensor = Tensor {
            name,
            dims,
            element,
            source_dtype: source.dtype,
            data,
        };
        // `source` checked the type and the whole shape, so the slice is exact.
        let source_size = match source.dtype {
            Dtype::F32 => 4,
            _ => 2,
        };
        assert_eq!(
            tensor.data.len(),
            tensor.elements() * source_size,
            "{}",
            tensor.name
        );
        self.tensors.push(tensor);
    }

    fn whole(&mut self, from: &str, to: &str, dims: &[usize]) -> Result<(), Error> {
        let source = self.source(from, dims)?;
        self.push(source, 0..dims[0], to.to_string(), dims.to_vec());
        Ok(())
    }

    /// ggml's conv1d adds the bias as an `[n, 1]` matrix.
    fn conv_bias(&mut self, from: &str, to: &str, width: usize) -> Result<(), Error> {
        let source = self.source(from, &[width])?;
        self.push(source, 0..width, to.to_string(), vec![width, 1]);
        Ok(())
    }

    fn layer_norm(&mut self, from: &str, to: &str, width: usize) -> Result<(), Error> {
        self.whole(&format!("{from}/gamma"), &format!("{to}.weight"), &[width])?;
        self.whole(&format!("{from}/beta"), &format!("{to}.bias"), &[width])
    }

    fn linear(&mut self, from: &str, to: &str, outputs: usize, inputs: usize) -> Result<(), Error> {
        self.whole(
            &format!("{from}/weight"),
            &format!("{to}.weight"),
            &[outputs, inputs],
        )?;
        self.whole(&format!("{from}/bias"), &format!("{to}.bias"), &[outputs])
    }

    /// A fused projection split by rows into `parts` of `width` each; a part
    /// without `with_bias` drops its slice of the bias.
    fn fused(&mut self, from: &str, parts: &[(String, bool)], width: usize) -> Result<(), Error> {
        let rows = parts.len() * width;
        let weight = self.source(&format!("{from}/weight"), &[rows, width])?;
        let bias = self.source(&format!("{from}/bias"), &[rows])?;
        for (index, (to, with_bias)) in parts.iter().enumerate() {
            let range = index * width..(index + 1) * width;
            self.push(
                weight,
                range.clone(),
                format!("{to}.weight"),
                vec![width, width],
            );
            if *with_bias {
                self.push(bias, range, format!("{to}.bias"), vec![width]);
            }
        }
        Ok(())
    }

    fn self_attention(&mut self, from: &str, to: &str, width: usize) -> Result<(), Error> {
        let parts = [
            (format!("{to}.attn.query"), true),
            (format!("{to}.attn.key"), false),
            (format!("{to}.attn.value"), true),
        ];
        self.fused(&format!("{from}/self_attention/linear_0"), &parts, width)?;
        self.linear(
            &format!("{from}/self_attention/linear_1"),
            &format!("{to}.attn.out"),
            width,
            width,
        )?;
        self.layer_norm(
            &format!("{from}/self_attention/layer_norm"),
            &format!("{to}.attn_ln"),
            width,
        )
    }

    fn cross_attention(&mut self, from: &str, to: &str, width: usize) -> Result<(), Error> {
        self.linear(
            &format!("{from}/attention/linear_0"),
            &format!("{to}.cross_attn.query"),
            width,
            width,
        )?;
        let parts = [
            (format!("{to}.cross_attn.key"), false),
            (format!("{to}.cross_attn.value"), true),
        ];
        self.fused(&format!("{from}/attention/linear_1"), &parts, width)?;
        self.linear(
            &format!("{from}/attention/linear_2"),
            &format!("{to}.cross_attn.out"),
            width,
            width,
        )?;
        self.layer_norm(
            &format!("{from}/attention/layer_norm"),
            &format!("{to}.cross_attn_ln"),
            width,
        )
    }

    /// Whisper's MLP is four times the width wide.
    fn feed_forward(&mut self, from: &str, to: &str, width: usize) -> Result<(), Error> {
        self.linear(
            &format!("{from}/ffn/linear_0"),
            &format!("{to}.mlp.0"),
            4 * width,
            width,
        )?;
        self.linear(
            &format!("{from}/ffn/linear_1"),
            &format!("{to}.mlp.2"),
            width,
            4 * width,
        )?;
        self.layer_norm(
            &format!("{from}/ffn/layer_norm"),
            &format!("{to}.mlp_ln"),
            width,
        )
    }
}
