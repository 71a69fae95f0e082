//! The audio file a user names: reading it, telling its container from its
//! first bytes, and decoding it locally for streaming.
//!
//! Batch requests send the file as it is with a `Content-Type` chosen here
//! (the server decodes; its 415/422 messages reach the user). Streaming needs
//! raw PCM16, so [`decode_for_stream`] decodes with the server's own decoder
//! (`transcription_service::audio`), which accepts exactly what the batch
//! endpoint accepts and yields mono PCM16 at a rate the stream takes.

use std::path::Path;

use transcription_service::audio::{self, AudioFormat, Pcm};

use crate::error::CliError;

/// File extensions that mean headerless little-endian PCM16 mono.
const RAW_EXTENSIONS: [&str; 4] = ["raw", "pcm", "s16le", "l16"];
/// The rate of raw PCM16 input when `--sample-rate` is not given.
pub const RAW_RATE_HZ_DEFAULT: u32 = 16_000;

/// What the file is, as far as the client needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    Wav,
    Flac,
    Ogg,
    Mp3,
    /// Headerless PCM16 mono at the given rate.
    Raw {
        sample_rate: u32,
    },
    /// Nothing we recognise: the server gets it as `application/octet-stream`
    /// and answers for it.
    Unknown,
}

impl Container {
    /// The `Content-Type` of a batch request body.
    pub fn content_type(self) -> String {
        match self {
            Container::Wav => "audio/wav".into(),
            Container::Flac => "audio/flac".into(),
            Container::Ogg => "audio/ogg".into(),
            Container::Mp3 => "audio/mpeg".into(),
            Container::Raw { sample_rate } => format!("audio/pcm;rate={sample_rate}"),
            Container::Unknown => "application/octet-stream".into(),
        }
    }
}

/// How the user described raw input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawInput {
    /// `--raw`: treat the file as raw PCM16 whatever its name.
    pub forced: bool,
    /// `--sample-rate`: the rate of raw PCM16 input.
    pub sample_rate: Option<u32>,
}

/// Read the whole file.
///
/// # Errors
/// An audio failure naming the file and the reason (missing, a directory,
/// no permission, ...).
pub fn read(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|error| {
        let reason = match error.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_string(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ if path.is_dir() => "is a directory".to_string(),
            _ => crate::client::io_reason(&error),
        };
        CliError::audio(format!("cannot read {}: {reason}", path.display()))
    })
}

/// Tell the container from the first bytes, or raw PCM from `--raw` or the
/// file extension.
///
/// # Errors
/// A usage error when `--sample-rate` is given for a container file, which
/// states its own rate.
pub fn classify(path: &Path, bytes: &[u8], raw: RawInput) -> Result<Container, CliError> {
    let sniffed = sniff(bytes);
    let by_extension = path
        .extension()
        .and_then(|extension| extension.to_str())
        .is_some_and(|extension| {
            RAW_EXTENSIONS
                .iter()
                .any(|raw| raw.eq_ignore_ascii_case(extension))
        });
    if raw.forced || (by_extension && sniffed == Container::Unknown) {
        return Ok(Container::Raw {
            sample_rate: raw.sample_rate.unwrap_or(RAW_RATE_HZ_DEFAULT),
        });
    }
    if raw.sample_rate.is_some() {
        return Err(CliError::usage(format!(
            "--sample-rate applies to raw PCM16 input (--raw, or a .raw/.pcm file); {} is {}, which states its own rate",
            path.display(),
            describe(sniffed)
        )));
    }
    Ok(sniffed)
}

fn describe(container: Container) -> &'static str {
    match container {
        Container::Wav => "WAV",
        Container::Flac => "FLAC",
        Container::Ogg => "Ogg",
        Container::Mp3 => "MP3",
        Container::Raw { .. } => "raw PCM",
        Container::Unknown => "not a recognised container",
    }
}

/// The container from the magic bytes, as the server sniffs them.
pub fn sniff(bytes: &[u8]) -> Container {
    if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WAVE" {
        return Container::Wav;
    }
    if bytes.starts_with(b"fLaC") {
        return Container::Flac;
    }
    if bytes.starts_with(b"OggS") {
        return Container::Ogg;
    }
    let frame_sync = bytes.len() >= 4 && bytes[0] == 0xFF && bytes[1] & 0xE0 == 0xE0;
    if bytes.starts_with(b"ID3") || frame_sync {
        return Container::Mp3;
    }
    Container::Unknown
}

/// Decode a file for streaming: mono PCM16 at 8, 16, 32 or 48 kHz (any other
/// rate is resampled to 16 kHz by the decoder), as the batch endpoint would.
///
/// # Errors
/// An audio failure with the decoder's reason.
pub fn decode_for_stream(container: Container, bytes: &[u8]) -> Result<Pcm, CliError> {
    let format = match container {
        Container::Raw { sample_rate } => AudioFormat::RawPcm16 { sample_rate },
        Container::Wav => AudioFormat::Wav,
        _ => AudioFormat::Sniff,
    };
    audio::decode(format, bytes)
        .map_err(|error| CliError::audio(format!("cannot decode the audio: {}", error.message())))
}

/// PCM16 samples as little-endian bytes, the stream's `pcm_s16le`.
pub fn to_le_bytes(samples: &[i16]) -> Vec<u8> {
    samples
        .iter()
        .flat_map(|sample| sample.to_le_bytes())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_are_told_by_their_magic() {
        assert_eq!(sniff(b"RIFF\0\0\0\0WAVEfmt "), Container::Wav);
        assert_eq!(sniff(b"fLaC\0\0"), Container::Flac);
        assert_eq!(sniff(b"OggS\0"), Container::Ogg);
        assert_eq!(sniff(b"ID3\x04"), Container::Mp3);
        assert_eq!(sniff(b"hello, world"), Container::Unknown);
    }

    #[test]
    fn raw_input_by_extension_or_flag() {
        let none = RawInput::default();
        assert_eq!(
            classify(Path::new("a.raw"), b"\x01\x02", none),
            Ok(Container::Raw {
                sample_rate: 16_000
            })
        );
        let forced = RawInput {
            forced: true,
            sample_rate: Some(8000),
        };
        assert_eq!(
            classify(Path::new("a.bin"), b"\x01\x02", forced),
            Ok(Container::Raw { sample_rate: 8000 })
        );
        assert_eq!(
            Container::Raw { sample_rate: 8000 }.content_type(),
            "audio/pcm;rate=8000"
        );
    }

    #[test]
    fn a_rate_for_a_container_is_a_usage_error() {
        let rate = RawInput {
            forced: false,
            sample_rate: Some(8000),
        };
        let error = classify(Path::new("a.wav"), b"RIFF\0\0\0\0WAVEfmt ", rate)
            .expect_err("a WAV states its rate");
        assert_eq!(error.kind, crate::error::FailureKind::Usage);
    }

    #[test]
    fn samples_become_little_endian_bytes() {
        assert_eq!(to_le_bytes(&[1, -2]), vec![1, 0, 0xFE, 0xFF]);
    }
}
