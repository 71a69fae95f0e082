//! Test support: builds `model.bin` bytes, both a whole tiny synthetic
//! Whisper and arbitrary (also malformed) variables, and reads a ggml file
//! back so tests can check what the converter wrote.

use std::collections::BTreeMap;

use crate::f16::f32_to_f16;

/// One variable as it goes into `model.bin`.
pub struct RawVariable {
    pub name: String,
    pub dims: Vec<u32>,
    pub dtype: u8,
    pub bytes: Vec<u8>,
}

/// A `model.bin` under construction.
pub struct ModelBuilder {
    pub version: u32,
    pub spec: String,
    pub variables: Vec<RawVariable>,
    pub aliases: Vec<(String, String)>,
}

pub fn push_string(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&((text.len() + 1) as u16).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out.push(0);
}

/// Element `index` of the variable numbered `variable`: distinct across
/// variables and exact in f16 for the small shapes used here.
pub fn value(variable: usize, index: usize) -> f32 {
    variable as f32 + index as f32 / 64.0
}

impl ModelBuilder {
    pub fn new() -> ModelBuilder {
        ModelBuilder {
            version: 6,
            spec: "WhisperSpec".to_string(),
            variables: Vec::new(),
            aliases: Vec::new(),
        }
    }

    pub fn raw(&mut self, name: &str, dims: &[u32], dtype: u8, bytes: Vec<u8>) {
        self.variables.push(RawVariable {
            name: name.to_string(),
            dims: dims.to_vec(),
            dtype,
            bytes,
        });
    }

    /// A float variable whose elements are [`value`]`(number, i)`, stored as
    /// f32 or f16; `number` is its position in the builder.
    pub fn float(&mut self, name: &str, dims: &[u32], f16: bool) {
        let number = self.variables.len();
        let elements: u32 = dims.iter().product();
        let mut bytes = Vec::new();
        for index in 0..elements as usize {
            let value = value(number, index);
            if f16 {
                bytes.extend_from_slice(&f32_to_f16(value).to_le_bytes());
            } else {
                bytes.extend_from_slice(&value.to_le_bytes());
            }
        }
        self.raw(name, dims, if f16 { 4 } else { 0 }, bytes);
    }

    pub fn scalar_i16(&mut self, name: &str, value: i16) {
        self.raw(name, &[], 2, value.to_le_bytes().to_vec());
    }

    pub fn alias(&mut self, alias: &str, target: &str) {
        self.aliases.push((alias.to_string(), target.to_string()));
    }

    pub fn position(&self, name: &str) -> usize {
        self.variables
            .iter()
            .position(|variable| variable.name == name)
            .expect("variable in builder")
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.version.to_le_bytes());
        push_string(&mut out, &self.spec);
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.variables.len() as u32).to_le_bytes());
        for variable in &self.variables {
            push_string(&mut out, &variable.name);
            out.push(variable.dims.len() as u8);
            for dim in &variable.dims {
                out.extend_from_slice(&dim.to_le_bytes());
            }
            out.push(variable.dtype);
            out.extend_from_slice(&(variable.bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(&variable.bytes);
        }
        if !self.aliases.is_empty() {
            out.extend_from_slice(&(self.aliases.len() as u32).to_le_bytes());
            for (alias, target) in &self.aliases {
                push_string(&mut out, alias);
                push_string(&mut out, target);
            }
        }
        out
    }
}

/// Width, vocabulary and contexts of the synthetic Whisper.
pub const WIDTH: u32 = 4;
pub const N_VOCAB: u32 = 5;
pub const N_MELS: u32 = 3;
pub const N_AUDIO_CTX: u32 = 3;
pub const N_TEXT_CTX: u32 = 2;

/// A one-layer Whisper of width 4 with two heads: mostly f16, the fused
/// self-attention projections f32, the decoder's final layer norm gamma
/// reachable only through an alias, and the tied output projection an alias
/// as in real models.
pub fn whisper() -> ModelBuilder {
    let (w, w3, w4) = (WIDTH, 3 * WIDTH, 4 * WIDTH);
    let mut model = ModelBuilder::new();
    model.scalar_i16("decoder/num_heads", 2);
    model.float("decoder/embeddings/weight", &[N_VOCAB, w], true);
    model.float(
        "decoder/position_encodings/encodings",
        &[N_TEXT_CTX, w],
        true,
    );
    model.float("decoder/layer_norm/beta", &[w], true);
    for stack in ["encoder", "decoder"] {
        let layer = format!("{stack}/layer_0");
        model.float(
            &format!("{layer}/self_attention/linear_0/weight"),
            &[w3, w],
            false,
        );
        model.float(
            &format!("{layer}/self_attention/linear_0/bias"),
            &[w3],
            false,
        );
        model.float(
            &format!("{layer}/self_attention/linear_1/weight"),
            &[w, w],
            true,
        );
        model.float(&format!("{layer}/self_attention/linear_1/bias"), &[w], true);
        layer_norm(&mut model, &format!("{layer}/self_attention/layer_norm"));
        model.float(&format!("{layer}/ffn/linear_0/weight"), &[w4, w], true);
        model.float(&format!("{layer}/ffn/linear_0/bias"), &[w4], true);
        model.float(&format!("{layer}/ffn/linear_1/weight"), &[w, w4], true);
        model.float(&format!("{layer}/ffn/linear_1/bias"), &[w], true);
        layer_norm(&mut model, &format!("{layer}/ffn/layer_norm"));
    }
    let layer = "decoder/layer_0/attention";
    model.float(&format!("{layer}/linear_0/weight"), &[w, w], true);
    model.float(&format!("{layer}/linear_0/bias"), &[w], true);
    model.float(&format!("{layer}/linear_1/weight"), &[2 * w, w], true);
    model.float(&format!("{layer}/linear_1/bias"), &[2 * w], true);
    model.float(&format!("{layer}/linear_2/weight"), &[w, w], true);
    model.float(&format!("{layer}/linear_2/bias"), &[w], true);
    layer_norm(&mut model, &format!("{layer}/layer_norm"));
    model.scalar_i16("encoder/num_heads", 2);
    model.float("encoder/conv1/weight", &[w, N_MELS, 3], true);
    model.float("encoder/conv1/bias", &[w], true);
    model.float("encoder/conv2/weight", &[w, w, 3], true);
    model.float("encoder/conv2/bias", &[w], true);
    layer_norm(&mut model, "encoder/layer_norm");
    model.float(
        "encoder/position_encodings/encodings",
        &[N_AUDIO_CTX, w],
        false,
    );
    model.alias("decoder/layer_norm/gamma", "encoder/layer_norm/gamma");
    model.alias("decoder/projection/weight", "decoder/embeddings/weight");
    model
}

fn layer_norm(model: &mut ModelBuilder, prefix: &str) {
    model.float(&format!("{prefix}/gamma"), &[WIDTH], true);
    model.float(&format!("{prefix}/beta"), &[WIDTH], true);
}

/// The synthetic model's vocabulary: `n_vocab` lines with `<|endoftext|>`
/// third.
pub fn vocabulary() -> String {
    "Hi\nĠthere\n<|endoftext|>\n<|startoftranscript|>\n<|notimestamps|>\n".to_string()
}

/// A ggml tensor read back.
#[derive(Debug)]
pub struct GgmlTensor {
    /// Dims as stored: innermost first.
    pub dims: Vec<i32>,
    pub element: i32,
    pub data: Vec<u8>,
}

/// A ggml file read back.
#[derive(Debug)]
pub struct GgmlFile {
    pub hparams: [i32; 11],
    pub filter_shape: (i32, i32),
    pub filters: Vec<f32>,
    pub tokens: Vec<Vec<u8>>,
    pub tensors: BTreeMap<String, GgmlTensor>,
    /// Tensor names in file order.
    pub order: Vec<String>,
}

/// A read position in a ggml file (tests only: panics past the end).
struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, length: usize) -> &'a [u8] {
        let taken = &self.bytes[self.offset..self.offset + length];
        self.offset += length;
        taken
    }

    fn i32(&mut self) -> i32 {
        i32::from_le_bytes(self.take(4).try_into().expect("4 bytes"))
    }
}

/// Reads a ggml file the way whisper.cpp does (panics on a bad one: tests only).
pub fn read_ggml(bytes: &[u8]) -> GgmlFile {
    let mut reader = Reader { bytes, offset: 0 };
    assert_eq!(reader.i32() as u32, crate::ggml::MAGIC);
    let mut hparams = [0; 11];
    for value in &mut hparams {
        *value = reader.i32();
    }
    let filter_shape = (reader.i32(), reader.i32());
    let filters = (0..filter_shape.0 * filter_shape.1)
        .map(|_| f32::from_le_bytes(reader.take(4).try_into().expect("4 bytes")))
        .collect();
    let token_count = reader.i32();
    let tokens = (0..token_count)
        .map(|_| {
            let length = reader.i32() as usize;
            reader.take(length).to_vec()
        })
        .collect();
    let (mut tensors, mut order) = (BTreeMap::new(), Vec::new());
    while reader.offset < bytes.len() {
        let n_dims = reader.i32();
        let name_length = reader.i32() as usize;
        let element = reader.i32();
        let dims: Vec<i32> = (0..n_dims).map(|_| reader.i32()).collect();
        let name = String::from_utf8(reader.take(name_length).to_vec()).expect("UTF-8 name");
        let elements: i32 = dims.iter().product();
        let size = if element == 0 { 4 } else { 2 };
        let data = reader.take(elements as usize * size).to_vec();
        order.push(name.clone());
        assert!(
            tensors
                .insert(
                    name,
                    GgmlTensor {
                        dims,
                        element,
                        data
                    }
                )
                .is_none(),
            "duplicate tensor"
        );
    }
    GgmlFile {
        hparams,
        filter_shape,
        filters,
        tokens,
        tensors,
        order,
    }
}
