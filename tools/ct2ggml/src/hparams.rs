//! The eleven hyper-parameters of the ggml header, derived from a parsed
//! [`Model`]: sizes from tensor shapes, head counts from the scalar
//! variables `encoder/num_heads` and `decoder/num_heads`, layer counts by
//! counting `layer_i` prefixes. Every value is cross-checked against the
//! shapes that depend on it in [`crate::tensors`].

use crate::ct2::Model;
use crate::error::Error;
use crate::limits;

/// Whisper's attention head width; used only when a model lacks the
/// `num_heads` scalars (CTranslate2 has stored them since 2023).
const HEAD_DIM: usize = 64;

/// whisper.cpp's own rule: a vocabulary this large is multilingual.
const MULTILINGUAL_VOCAB_MIN: i32 = 51865;

/// The ggml header, in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hparams {
    pub n_vocab: i32,
    pub n_audio_ctx: i32,
    pub n_audio_state: i32,
    pub n_audio_head: i32,
    pub n_audio_layer: i32,
    pub n_text_ctx: i32,
    pub n_text_state: i32,
    pub n_text_head: i32,
    pub n_text_layer: i32,
    pub n_mels: i32,
    /// 1: matrices are f16.
    pub ftype: i32,
}

impl Hparams {
    /// # Errors
    /// [`Error::Invalid`] when a variable it needs is missing or has the
    /// wrong rank, or a value does not fit the header.
    pub fn derive(model: &Model<'_>) -> Result<Hparams, Error> {
        let embeddings = shape(model, "decoder/embeddings/weight", 2)?;
        let audio_positions = shape(model, "encoder/position_encodings/encodings", 2)?;
        let text_positions = shape(model, "decoder/position_encodings/encodings", 2)?;
        let conv1 = shape(model, "encoder/conv1/weight", 3)?;
        let n_audio_state = audio_positions[1];
        let n_text_state = text_positions[1];
        let hparams = Hparams {
            n_vocab: header_value("n_vocab", embeddings[0])?,
            n_audio_ctx: header_value("n_audio_ctx", audio_positions[0])?,
            n_audio_state: header_value("n_audio_state", n_audio_state)?,
            n_audio_head: header_value("n_audio_head", heads(model, "encoder", n_audio_state)?)?,
            n_audio_layer: header_value("n_audio_layer", layers(model, "encoder")?)?,
            n_text_ctx: header_value("n_text_ctx", text_positions[0])?,
            n_text_state: header_value("n_text_state", n_text_state)?,
            n_text_head: header_value("n_text_head", heads(model, "decoder", n_text_state)?)?,
            n_text_layer: header_value("n_text_layer", layers(model, "decoder")?)?,
            n_mels: header_value("n_mels", conv1[1])?,
            ftype: 1,
        };
        if hparams.n_audio_state != hparams.n_text_state {
            // whisper.cpp sizes the cross-attention with n_text_state only.
            return Err(Error::Invalid(format!(
                "encoder width {} differs from decoder width {}",
                hparams.n_audio_state, hparams.n_text_state
            )));
        }
        Ok(hparams)
    }

    pub fn is_multilingual(&self) -> bool {
        self.n_vocab >= MULTILINGUAL_VOCAB_MIN
    }

    /// The header values in file order.
    pub fn to_array(&self) -> [i32; 11] {
        [
            self.n_vocab,
            self.n_audio_ctx,
            self.n_audio_state,
            self.n_audio_head,
            self.n_audio_layer,
            self.n_text_ctx,
            self.n_text_state,
            self.n_text_head,
            self.n_text_layer,
            self.n_mels,
            self.ftype,
        ]
    }
}

fn shape(model: &Model<'_>, name: &str, rank: usize) -> Result<Vec<usize>, Error> {
    let variable = model
        .get(name)
        .ok_or_else(|| Error::Invalid(format!("missing variable {name}")))?;
    if variable.dims.len() != rank || variable.dims.contains(&0) {
        return Err(Error::Invalid(format!(
            "{name} has shape {:?}; expected {rank} non-zero dimensions",
            variable.dims
        )));
    }
    Ok(variable.dims.clone())
}

fn header_value(what: &str, value: usize) -> Result<i32, Error> {
    i32::try_from(value)
        .map_err(|_| Error::Invalid(format!("{what} = {value} does not fit an i32")))
}

/// `{stack}/num_heads`, or the width over Whisper's head size when absent.
fn heads(model: &Model<'_>, stack: &str, width: usize) -> Result<usize, Error> {
    let name = format!("{stack}/num_heads");
    let heads = match model.get(&name) {
        Some(variable) => {
            let value = variable
                .as_integer()
                .ok_or_else(|| Error::Invalid(format!("{name} is not an integer scalar")))?;
            usize::try_from(value).unwrap_or(0)
        }
        None => width / HEAD_DIM,
    };
    if heads == 0 || width % heads != 0 {
        return Err(Error::Invalid(format!(
            "{heads} heads do not divide the width {width} of the {stack}"
        )));
    }
    Ok(heads)
}

/// Counts `{stack}/layer_0`, `{stack}/layer_1`, … until one is missing, and
/// checks no variable names a layer beyond that.
fn layers(model: &Model<'_>, stack: &str) -> Result<usize, Error> {
    let prefix = format!("{stack}/layer_");
    let mut highest: Option<usize> = None;
    for variable in &model.variables {
        // `{stack}/layer_norm/...` shares the prefix; only digits name a layer.
        let index = variable
            .name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.split('/').next())
            .filter(|digits| !digits.is_empty() && digits.bytes().all(|byte| byte.is_ascii_digit()))
            .map(|digits| digits.parse::<usize>().unwrap_or(usize::MAX));
        if let Some(index) = index {
            if index >= limits::LAYERS_MAX {
                return Err(Error::Invalid(format!(
                    "{} is beyond the limit of {} layers",
                    variable.name,
                    limits::LAYERS_MAX
                )));
            }
            highest = Some(highest.map_or(index, |highest| highest.max(index)));
        }
    }
    // Every layer below the highest must be present; the tensor plan looks
    // each one up and reports the first that is missing.
    match highest {
        Some(highest) => Ok(highest + 1),
        None => Err(Error::Invalid(format!("the {stack} has no layers"))),
    }
}
