//! Convert a CTranslate2 Whisper model directory into the ggml model file
//! whisper.cpp 1.8.3 loads (the `whisper` feature of the server needs one).
//!
//! The data path is the table of contents; each step is one module:
//!
//! 1. [`ct2`] parses `model.bin` into named variables that borrow its bytes.
//! 2. [`hparams`] derives the eleven ggml hyper-parameters from their shapes.
//! 3. [`mel`] computes the mel filter bank whisper.cpp expects in the file.
//! 4. [`vocab`] turns `vocabulary.txt` back into raw token bytes.
//! 5. [`tensors`] maps CTranslate2 names to ggml names, splitting fused
//!    projections, and [`f16`] converts element types.
//! 6. [`ggml`] writes the file: header, filters, vocabulary, tensors.
//!
//! [`check`] walks a finished ggml file without loading it (the server checks
//! its `--model-path` with it before whisper.cpp, which aborts on some damaged
//! files, sees it).
//!
//! [`convert_dir`] runs the whole path on files; [`convert`] runs it on bytes
//! already in memory, which is what the tests use. Limits on every length read
//! from input live in [`limits`].

pub mod check;
pub mod ct2;
pub mod error;
pub mod f16;
pub mod ggml;
pub mod hparams;
pub mod limits;
pub mod mel;
pub mod quantize;
pub mod tensors;
pub mod vocab;

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

pub use error::Error;
use hparams::Hparams;

/// What a conversion produced, for the summary `main` prints.
#[derive(Debug, Clone)]
pub struct Summary {
    pub hparams: Hparams,
    /// True for multilingual models (n_vocab ≥ 51865, whisper.cpp's own rule).
    pub multilingual: bool,
    /// Tokens written to the file's vocabulary section.
    pub tokens_written: usize,
    /// Tensors written.
    pub tensors_written: usize,
    /// Total bytes of the ggml file.
    pub output_bytes: u64,
}

/// Converts the CTranslate2 model in memory and writes the ggml file to `out`.
///
/// `model_bin` is the whole `model.bin`; `vocabulary` is `vocabulary.txt`.
///
/// # Errors
/// A malformed `model.bin`, a variable with an unexpected shape or element
/// type, a vocabulary that does not match the model, or a failed write.
pub fn convert(model_bin: &[u8], vocabulary: &str, out: &mut impl Write) -> Result<Summary, Error> {
    let model = ct2::Model::parse(model_bin)?;
    let hparams = Hparams::derive(&model)?;
    let tokens = vocab::tokens_for_ggml(vocabulary, hparams.n_vocab, hparams.is_multilingual())?;
    let plan = tensors::plan(&model, &hparams)?;
    let filters = mel::filters(hparams.n_mels as usize);
    let mut writer = ggml::Writer::new(out);
    writer.write_header(&hparams)?;
    writer.write_filters(hparams.n_mels as usize, mel::N_FFT_BINS, &filters)?;
    writer.write_vocabulary(&tokens)?;
    for tensor in &plan {
        writer.write_tensor(tensor)?;
    }
    Ok(Summary {
        multilingual: hparams.is_multilingual(),
        hparams,
        tokens_written: tokens.len(),
        tensors_written: plan.len(),
        output_bytes: writer.bytes_written(),
    })
}

/// Reads `config.json`, `model.bin` and `vocabulary.txt` from `input_dir` and
/// writes the ggml file to `output` atomically: to a temporary file beside it,
/// synced, then renamed, so a reader never sees a half-written model.
///
/// # Errors
/// Any error of [`convert`], or a file that cannot be read or written.
pub fn convert_dir(input_dir: &Path, output: &Path) -> Result<Summary, Error> {
    // config.json carries nothing the ggml file needs (every hyper-parameter
    // is in model.bin), but its presence tells a CTranslate2 model directory
    // from some other directory that happens to hold a model.bin.
    let config_path = input_dir.join("config.json");
    let config = read_limited(&config_path, limits::CONFIG_BYTES_MAX)?;
    if !config.trim_ascii_start().starts_with(b"{") {
        return Err(Error::Invalid(format!(
            "{} is not a JSON object",
            config_path.display()
        )));
    }
    let model_bin = read_limited(&input_dir.join("model.bin"), limits::MODEL_BYTES_MAX)?;
    let vocabulary_path = input_dir.join("vocabulary.txt");
    let vocabulary = read_limited(&vocabulary_path, limits::VOCABULARY_BYTES_MAX)?;
    let vocabulary = String::from_utf8(vocabulary)
        .map_err(|_| Error::Invalid(format!("{} is not UTF-8", vocabulary_path.display())))?;

    let temporary = temporary_path(output);
    let result = convert_dir_write(&model_bin, &vocabulary, output, &temporary);
    if result.is_err() {
        // Best effort: the temporary file may not exist yet.
        let _ = fs::remove_file(&temporary);
    }
    result
}

fn convert_dir_write(
    model_bin: &[u8],
    vocabulary: &str,
    output: &Path,
    temporary: &Path,
) -> Result<Summary, Error> {
    write_atomically(output, temporary, |out| convert(model_bin, vocabulary, out))
}

/// Reads the f16 ggml file `input` and writes its q8_0 version to `output`
/// atomically, as [`convert_dir`] does.
///
/// # Errors
/// Any error of [`quantize::quantize_q8_0`], or a file that cannot be read or
/// written.
pub fn quantize_file(input: &Path, output: &Path) -> Result<quantize::Summary, Error> {
    let model = read_limited(input, limits::MODEL_BYTES_MAX)?;
    let temporary = temporary_path(output);
    let result = write_atomically(output, &temporary, |out| {
        quantize::quantize_q8_0(&model, out)
    });
    if result.is_err() {
        // Best effort: the temporary file may not exist yet.
        let _ = fs::remove_file(&temporary);
    }
    result
}

/// Runs `write` into `temporary`, syncs it, and renames it to `output`.
fn write_atomically<T>(
    output: &Path,
    temporary: &Path,
    write: impl FnOnce(&mut BufWriter<fs::File>) -> Result<T, Error>,
) -> Result<T, Error> {
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let file = fs::File::create(temporary).map_err(io_error(temporary))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let summary = write(&mut out)?;
    let file = out.into_inner().map_err(|error| Error::Io {
        path: temporary.to_path_buf(),
        source: error.into_error(),
    })?;
    file.sync_all().map_err(io_error(temporary))?;
    drop(file);
    fs::rename(temporary, output).map_err(io_error(output))?;
    Ok(summary)
}

/// `<output>.tmp.<pid>` in the output's directory, so the rename stays on one
/// file system.
fn temporary_path(output: &Path) -> PathBuf {
    let mut name = output
        .file_name()
        .map(|name| name.to_os_string())
        .unwrap_or_default();
    name.push(format!(".tmp.{}", std::process::id()));
    output.with_file_name(name)
}

/// Reads a whole file after checking its size against `bytes_max`, so a wrong
/// path (a device, a huge file) fails before allocating.
fn read_limited(path: &Path, bytes_max: u64) -> Result<Vec<u8>, Error> {
    let io_error = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let size = fs::metadata(path).map_err(io_error)?.len();
    if size > bytes_max {
        return Err(Error::Invalid(format!(
            "{} is {size} bytes, more than the limit of {bytes_max}",
            path.display()
        )));
    }
    fs::read(path).map_err(io_error)
}

#[cfg(test)]
mod synthetic;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::f16::{f16_to_f32, f32_to_f16};
    use crate::synthetic::{self, GgmlTensor, ModelBuilder};

    fn convert_synthetic(model: &ModelBuilder) -> Result<(Summary, Vec<u8>), Error> {
        let mut out = Vec::new();
        let summary = convert(&model.bytes(), &synthetic::vocabulary(), &mut out)?;
        Ok((summary, out))
    }

    /// Every tensor whisper.cpp expects of the synthetic model: name, shape
    /// in PyTorch order, ggml type (0 f32, 1 f16).
    fn expected_tensors() -> Vec<(String, Vec<usize>, i32)> {
        let (w, w4) = (synthetic::WIDTH as usize, 4 * synthetic::WIDTH as usize);
        let mut expected = vec![
            (
                "encoder.positional_embedding".to_string(),
                vec![synthetic::N_AUDIO_CTX as usize, w],
                0,
            ),
            (
                "encoder.conv1.weight".to_string(),
                vec![w, synthetic::N_MELS as usize, 3],
                1,
            ),
            ("encoder.conv1.bias".to_string(), vec![w, 1], 0),
            ("encoder.conv2.weight".to_string(), vec![w, w, 3], 1),
            ("encoder.conv2.bias".to_string(), vec![w, 1], 0),
            (
                "decoder.positional_embedding".to_string(),
                vec![synthetic::N_TEXT_CTX as usize, w],
                0,
            ),
            (
                "decoder.token_embedding.weight".to_string(),
                vec![synthetic::N_VOCAB as usize, w],
                1,
            ),
        ];
        let mut linear = |prefix: String, outputs: usize, inputs: usize, bias: bool| {
            expected.push((format!("{prefix}.weight"), vec![outputs, inputs], 1));
            if bias {
                expected.push((format!("{prefix}.bias"), vec![outputs], 0));
            }
        };
        for block in ["encoder.blocks.0", "decoder.blocks.0"] {
            linear(format!("{block}.attn.query"), w, w, true);
            linear(format!("{block}.attn.key"), w, w, false);
            linear(format!("{block}.attn.value"), w, w, true);
            linear(format!("{block}.attn.out"), w, w, true);
            linear(format!("{block}.mlp.0"), w4, w, true);
            linear(format!("{block}.mlp.2"), w, w4, true);
        }
        linear("decoder.blocks.0.cross_attn.query".to_string(), w, w, true);
        linear("decoder.blocks.0.cross_attn.key".to_string(), w, w, false);
        linear("decoder.blocks.0.cross_attn.value".to_string(), w, w, true);
        linear("decoder.blocks.0.cross_attn.out".to_string(), w, w, true);
        for norm in [
            "encoder.ln_post",
            "decoder.ln",
            "encoder.blocks.0.attn_ln",
            "encoder.blocks.0.mlp_ln",
            "decoder.blocks.0.attn_ln",
            "decoder.blocks.0.mlp_ln",
            "decoder.blocks.0.cross_attn_ln",
        ] {
            for part in ["weight", "bias"] {
                expected.push((format!("{norm}.{part}"), vec![w], 0));
            }
        }
        expected
    }

    fn floats(tensor: &GgmlTensor) -> Vec<f32> {
        match tensor.element {
            0 => tensor
                .data
                .chunks_exact(4)
                .map(|bytes| f32::from_le_bytes(bytes.try_into().expect("4")))
                .collect(),
            _ => tensor
                .data
                .chunks_exact(2)
                .map(|bytes| f16_to_f32(u16::from_le_bytes([bytes[0], bytes[1]])))
                .collect(),
        }
    }

    /// Elements `range` of the builder's variable `source` as they should
    /// arrive: rounded through f16 if either side is f16.
    fn expected_values(
        model: &ModelBuilder,
        source: &str,
        range: std::ops::Range<usize>,
        output_f16: bool,
    ) -> Vec<f32> {
        let position = model.position(source);
        let source_f16 = model.variables[position].dtype == 4;
        range
            .map(|index| {
                let value = synthetic::value(position, index);
                if source_f16 || output_f16 {
                    f16_to_f32(f32_to_f16(value))
                } else {
                    value
                }
            })
            .collect()
    }

    #[test]
    fn converts_a_synthetic_whisper() {
        let model = synthetic::whisper();
        let (summary, out) = convert_synthetic(&model).expect("conversion");
        let file = synthetic::read_ggml(&out);
        assert_eq!(file.hparams, [5, 3, 4, 2, 1, 2, 4, 2, 1, 3, 1]);
        // The server's start-up check accepts what the converter writes.
        let checked = check::check(std::io::Cursor::new(&out)).expect("a well-formed file");
        assert_eq!(checked.hparams, summary.hparams);
        assert_eq!(checked.tokens, file.tokens.len());
        assert_eq!(checked.bytes, out.len() as u64);
        assert!(!summary.multilingual);
        assert_eq!(file.filter_shape, (3, 201));
        assert_eq!(file.filters, mel::filters(3));
        assert_eq!(
            file.tokens,
            vec![
                b"Hi".to_vec(),
                b" there".to_vec(),
                b"<|endoftext|>".to_vec()
            ]
        );

        // Names, shapes (stored innermost first), types, and byte counts.
        let expected = expected_tensors();
        assert_eq!(file.tensors.len(), expected.len());
        assert_eq!(summary.tensors_written, expected.len());
        let mut bytes_total = 4 + 11 * 4 + 8 + 3 * 201 * 4 + 4 + (4 + 2) + (4 + 6) + (4 + 13);
        for (name, dims, element) in &expected {
            let tensor = file
                .tensors
                .get(name)
                .unwrap_or_else(|| panic!("{name} missing"));
            let stored: Vec<i32> = dims.iter().rev().map(|dim| *dim as i32).collect();
            assert_eq!(tensor.dims, stored, "{name}");
            assert_eq!(tensor.element, *element, "{name}");
            let elements: usize = dims.iter().product();
            let element_bytes = if *element == 0 { 4 } else { 2 };
            assert_eq!(tensor.data.len(), elements * element_bytes, "{name}");
            bytes_total += 12 + 4 * dims.len() + name.len() + elements * element_bytes;
        }
        assert_eq!(out.len(), bytes_total);
        assert_eq!(summary.output_bytes, bytes_total as u64);
        assert_eq!(bytes_total, 6_637);
    }

    #[test]
    fn splits_fused_projections_by_rows() {
        let model = synthetic::whisper();
        let (_, out) = convert_synthetic(&model).expect("conversion");
        let file = synthetic::read_ggml(&out);
        let tensor = |name: &str| floats(&file.tensors[name]);
        let w = synthetic::WIDTH as usize;
        let (matrix, vector) = (w * w, w);

        // Self-attention: f32 source, thirds; the key loses its bias.
        let qkv = "encoder/layer_0/self_attention/linear_0";
        let weight = format!("{qkv}/weight");
        let bias = format!("{qkv}/bias");
        assert_eq!(
            tensor("encoder.blocks.0.attn.query.weight"),
            expected_values(&model, &weight, 0..matrix, true)
        );
        assert_eq!(
            tensor("encoder.blocks.0.attn.key.weight"),
            expected_values(&model, &weight, matrix..2 * matrix, true)
        );
        assert_eq!(
            tensor("encoder.blocks.0.attn.value.weight"),
            expected_values(&model, &weight, 2 * matrix..3 * matrix, true)
        );
        assert_eq!(
            tensor("encoder.blocks.0.attn.query.bias"),
            expected_values(&model, &bias, 0..vector, false)
        );
        assert_eq!(
            tensor("encoder.blocks.0.attn.value.bias"),
            expected_values(&model, &bias, 2 * vector..3 * vector, false)
        );
        assert!(!file.tensors.contains_key("encoder.blocks.0.attn.key.bias"));

        // Cross-attention: f16 source, halves.
        let kv = "decoder/layer_0/attention/linear_1";
        let weight = format!("{kv}/weight");
        let bias = format!("{kv}/bias");
        assert_eq!(
            tensor("decoder.blocks.0.cross_attn.key.weight"),
            expected_values(&model, &weight, 0..matrix, true)
        );
        assert_eq!(
            tensor("decoder.blocks.0.cross_attn.value.weight"),
            expected_values(&model, &weight, matrix..2 * matrix, true)
        );
        assert_eq!(
            tensor("decoder.blocks.0.cross_attn.value.bias"),
            expected_values(&model, &bias, vector..2 * vector, false)
        );
        assert!(!file
            .tensors
            .contains_key("decoder.blocks.0.cross_attn.key.bias"));
    }

    #[test]
    fn keeps_f32_where_ggml_wants_it_and_follows_aliases() {
        let model = synthetic::whisper();
        let (_, out) = convert_synthetic(&model).expect("conversion");
        let file = synthetic::read_ggml(&out);
        let tensor = |name: &str| floats(&file.tensors[name]);
        // f32 source kept exact; f16 sources widened exactly.
        let encoder_positions = "encoder/position_encodings/encodings";
        assert_eq!(
            tensor("encoder.positional_embedding"),
            expected_values(&model, encoder_positions, 0..12, false)
        );
        let decoder_positions = "decoder/position_encodings/encodings";
        assert_eq!(
            tensor("decoder.positional_embedding"),
            expected_values(&model, decoder_positions, 0..8, false)
        );
        assert_eq!(
            tensor("encoder.conv2.bias"),
            expected_values(&model, "encoder/conv2/bias", 0..4, false)
        );
        // f16 to f16 is a byte copy.
        let position = model.position("decoder/embeddings/weight");
        assert_eq!(
            file.tensors["decoder.token_embedding.weight"].data,
            model.variables[position].bytes
        );
        // decoder/layer_norm/gamma is an alias of the encoder's.
        assert_eq!(
            tensor("decoder.ln.weight"),
            expected_values(&model, "encoder/layer_norm/gamma", 0..4, false)
        );
        // The tied projection is not a tensor of its own.
        assert!(!file.order.iter().any(|name| name.contains("projection")));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = synthetic::whisper().bytes();
        let vocabulary = synthetic::vocabulary();
        for length in 0..bytes.len() {
            let result = convert(&bytes[..length], &vocabulary, &mut Vec::new());
            assert!(
                result.is_err(),
                "a model.bin cut at {length} of {} bytes converted",
                bytes.len()
            );
        }
    }

    #[test]
    fn quantized_or_unknown_types_are_unsupported() {
        for (dtype, element_bytes) in [(1u8, 1usize), (9, 1)] {
            let mut model = synthetic::whisper();
            let position = model.position("encoder/conv1/weight");
            let variable = &mut model.variables[position];
            variable.dtype = dtype;
            variable.bytes =
                vec![0; variable.dims.iter().product::<u32>() as usize * element_bytes];
            let error = convert_synthetic(&model).expect_err("quantized weights");
            assert!(
                matches!(&error, Error::Unsupported(message) if message.contains("encoder/conv1/weight")),
                "{error}"
            );
        }
    }

    #[test]
    fn inconsistent_models_are_errors() {
        // A fused projection with the wrong number of rows.
        let mut model = synthetic::whisper();
        let position = model.position("decoder/layer_0/self_attention/linear_0/weight");
        model.variables[position].dims = vec![
            2 * synthetic::WIDTH,
            synthetic::WIDTH + synthetic::WIDTH / 2,
        ];
        let error = convert_synthetic(&model).expect_err("bad shape");
        assert!(matches!(error, Error::Invalid(_)), "{error}");

        // A missing layer variable.
        let mut model = synthetic::whisper();
        let position = model.position("decoder/layer_0/ffn/linear_1/bias");
        model.variables.remove(position);
        let error = convert_synthetic(&model).expect_err("missing variable");
        assert!(
            error
                .to_string()
                .contains("decoder/layer_0/ffn/linear_1/bias"),
            "{error}"
        );

        // Heads that do not divide the width.
        let mut model = synthetic::whisper();
        let position = model.position("encoder/num_heads");
        model.variables[position].bytes = 3i16.to_le_bytes().to_vec();
        assert!(convert_synthetic(&model).is_err());

        // A vocabulary of the wrong size.
        let mut out = Vec::new();
        assert!(convert(
            &synthetic::whisper().bytes(),
            "a\n<|endoftext|>\n",
            &mut out
        )
        .is_err());
    }

    #[test]
    fn a_failed_conversion_leaves_no_file() {
        let directory = std::env::temp_dir().join(format!("ct2ggml-test-{}", std::process::id()));
        fs::create_dir_all(&directory).expect("temp dir");
        fs::write(directory.join("config.json"), "{}").expect("config");
        let mut bytes = synthetic::whisper().bytes();
        bytes.truncate(bytes.len() / 2);
        fs::write(directory.join("model.bin"), &bytes).expect("model");
        fs::write(directory.join("vocabulary.txt"), synthetic::vocabulary()).expect("vocabulary");
        let output = directory.join("out.bin");
        assert!(convert_dir(&directory, &output).is_err());
        let left: Vec<_> = fs::read_dir(&directory)
            .expect("list")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(left.len(), 3, "{left:?}");

        fs::write(directory.join("model.bin"), synthetic::whisper().bytes()).expect("model");
        let summary = convert_dir(&directory, &output).expect("conversion");
        assert_eq!(
            fs::metadata(&output).expect("output").len(),
            summary.output_bytes
        );
        fs::remove_dir_all(&directory).expect("cleanup");
    }
}
