//! `transcribe FILE`: one batch request and the transcript in the format the
//! user asked for.
//!
//! The file goes to `POST /v1/transcribe` as it is (the server decodes it),
//! because that endpoint takes `vad_mode` and `words` as well as `language`
//! and answers with segments and times. `json` prints that answer verbatim;
//! `text`, `srt` and `vtt` are rendered here from its segments, cue for cue
//! as the OpenAI-compatible endpoint renders them.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::audio_file::{self, RawInput};
use crate::client::{Client, KeyRole};
use crate::error::{output_error, CliError};
use transcription_service::subtitles::Cues;

/// The output formats of a batch transcription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The server's JSON answer as it came: text, duration, segments, model.
    Json,
    /// The transcript text on one line.
    Text,
    /// SubRip subtitles, one cue per segment.
    Srt,
    /// WebVTT subtitles, one cue per segment.
    Vtt,
}

/// Everything a batch run needs besides the client.
pub struct BatchRequest {
    pub file: PathBuf,
    pub format: Format,
    pub language: Option<String>,
    pub vad_mode: Option<u8>,
    pub words: bool,
    pub raw: RawInput,
    pub output: Option<PathBuf>,
}

/// The part of the server's answer the local formats use.
#[derive(Debug, Deserialize)]
pub struct Transcript {
    pub text: String,
    pub segments: Vec<Segment>,
}

/// One segment, in seconds of audio.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Segment {
    pub start: f64,
    pub end: f64,
    pub text: String,
}

/// Transcribe the file and write the result.
///
/// # Errors
/// Audio failures for a file that cannot be read or that the server cannot
/// use; connect, auth and server failures from the request.
pub fn run(client: &Client, request: &BatchRequest) -> Result<(), CliError> {
    let bytes = audio_file::read(&request.file)?;
    let container = audio_file::classify(&request.file, &bytes, request.raw)?;
    let mut http = client
        .request("POST", "/v1/transcribe", KeyRole::Api)
        .set("Content-Type", &container.content_type());
    if let Some(language) = &request.language {
        http = http.query("language", language);
    }
    if let Some(vad_mode) = request.vad_mode {
        http = http.query("vad_mode", &vad_mode.to_string());
    }
    if request.words {
        http = http.query("words", "true");
    }
    let body = client
        .call(http, Some(&bytes), KeyRole::Api)
        .map_err(|error| error.in_file(&request.file))?;
    let rendered = render(&body, request.format)?;
    write_output(request.output.as_deref(), &rendered)
}

/// The output for `format` from the server's JSON answer.
///
/// # Errors
/// A server failure when the answer is not a transcript.
pub fn render(body: &str, format: Format) -> Result<String, CliError> {
    if format == Format::Json {
        return Ok(format!("{}\n", body.trim_end()));
    }
    let transcript: Transcript = serde_json::from_str(body).map_err(|error| {
        CliError::server(format!("the server's answer is not a transcript: {error}"))
    })?;
    Ok(match format {
        Format::Json | Format::Text => format!("{}\n", transcript.text),
        Format::Srt => subtitles(&transcript.segments, Cues::Srt),
        Format::Vtt => subtitles(&transcript.segments, Cues::Vtt),
    })
}

/// The segments' cues, through the server library's own formatter (the
/// same bytes `/v1/audio/transcriptions` answers).
fn subtitles(segments: &[Segment], cues: Cues) -> String {
    transcription_service::subtitles::subtitles(
        segments.iter().map(|s| (s.start, s.end, s.text.as_str())),
        cues,
    )
}

/// Write to `--output` or stdout.
fn write_output(output: Option<&Path>, text: &str) -> Result<(), CliError> {
    match output {
        Some(path) => std::fs::write(path, text).map_err(|error| {
            CliError::server(format!(
                "cannot write {}: {}",
                path.display(),
                crate::client::io_reason(&error)
            ))
        }),
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
                .map_err(output_error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_render_from_the_answer() {
        let body = r#"{"text":"alpha bravo","duration":2.5,"segments":[{"id":0,"start":0.42,"end":2.1,"text":"alpha bravo"}],"model":"mock","processing_ms":1.0}"#;
        assert_eq!(
            render(body, Format::Json).expect("json"),
            format!("{body}\n")
        );
        assert_eq!(render(body, Format::Text).expect("text"), "alpha bravo\n");
        assert!(render(body, Format::Srt)
            .expect("srt")
            .starts_with("1\n00:00:00,420 --> 00:00:02,100\n"));
        assert!(render("not json", Format::Text).is_err());
    }
}
