//! `ct2ggml --input DIR --output FILE`: converts the CTranslate2 Whisper
//! model in DIR (config.json, model.bin, vocabulary.txt) to the ggml file
//! whisper.cpp loads. `ct2ggml --quantize q8_0 --input F16_FILE --output FILE`
//! turns a converted f16 file into a q8_0 one. The work is in the library;
//! this parses arguments, prints what was derived, and turns errors into exit
//! codes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

const USAGE: &str = "usage: ct2ggml --input DIR --output FILE
       ct2ggml --quantize q8_0 --input F16_FILE --output FILE

Converts a CTranslate2 Whisper model directory (config.json, model.bin,
vocabulary.txt) to the ggml model file whisper.cpp loads; with --quantize,
turns such an f16 ggml file into one whose matrices are q8_0. The output is
written to a temporary file beside FILE and renamed into place.";

struct Arguments {
    input: PathBuf,
    output: PathBuf,
    quantize: bool,
}

fn parse_arguments(
    mut arguments: impl Iterator<Item = String>,
) -> Result<Option<Arguments>, String> {
    let (mut input, mut output, mut quantize) = (None, None, None);
    while let Some(argument) = arguments.next() {
        let (flag, inline) = match argument.split_once('=') {
            Some((flag, value)) => (flag.to_string(), Some(value.to_string())),
            None => (argument, None),
        };
        let slot = match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--input" | "-i" => &mut input,
            "--output" | "-o" => &mut output,
            "--quantize" => &mut quantize,
            other => return Err(format!("unknown argument {other:?}")),
        };
        let value = inline
            .or_else(|| arguments.next())
            .ok_or_else(|| format!("{flag} needs a value"))?;
        *slot = Some(PathBuf::from(value));
    }
    let quantize = match quantize {
        None => false,
        Some(kind) if kind.as_os_str() == "q8_0" => true,
        Some(kind) => {
            return Err(format!(
                "--quantize takes q8_0, not {:?}",
                kind.to_string_lossy()
            ))
        }
    };
    match (input, output) {
        (Some(input), Some(output)) => Ok(Some(Arguments {
            input,
            output,
            quantize,
        })),
        _ => Err("both --input and --output are required".to_string()),
    }
}

fn main() -> ExitCode {
    let arguments = match parse_arguments(std::env::args().skip(1)) {
        Ok(Some(arguments)) => arguments,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("ct2ggml: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    if arguments.quantize {
        let done = ct2ggml::quantize_file(&arguments.input, &arguments.output).map(|summary| {
            format!(
                "ct2ggml: wrote {} ({} bytes: {} of {} tensors q8_0) in {:.2} s",
                arguments.output.display(),
                summary.output_bytes,
                summary.tensors_quantised,
                summary.tensors,
                started.elapsed().as_secs_f64()
            )
        });
        return report(done);
    }
    let done = ct2ggml::convert_dir(&arguments.input, &arguments.output).map(|summary| {
        let hparams = summary.hparams;
        format!(
            "ct2ggml: derived n_vocab={} n_audio_ctx={} n_audio_state={} n_audio_head={} n_audio_layer={} \
             n_text_ctx={} n_text_state={} n_text_head={} n_text_layer={} n_mels={} ftype={} ({})\n\
             ct2ggml: wrote {} ({} bytes: {} tokens, {} tensors) in {:.2} s",
            hparams.n_vocab,
            hparams.n_audio_ctx,
            hparams.n_audio_state,
            hparams.n_audio_head,
            hparams.n_audio_layer,
            hparams.n_text_ctx,
            hparams.n_text_state,
            hparams.n_text_head,
            hparams.n_text_layer,
            hparams.n_mels,
            hparams.ftype,
            if summary.multilingual { "multilingual" } else { "English-only" },
            arguments.output.display(),
            summary.output_bytes,
            summary.tokens_written,
            summary.tensors_written,
            started.elapsed().as_secs_f64()
        )
    });
    report(done)
}

/// Print what was done, or the error, and the exit code that goes with it.
fn report(done: Result<String, ct2ggml::Error>) -> ExitCode {
    match done {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("ct2ggml: error: {error}");
            ExitCode::FAILURE
        }
    }
}
