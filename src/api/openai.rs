//! `POST /v1/audio/transcriptions`: the OpenAI-compatible form of batch
//! transcription. Multipart with `file`, optional `model`, `language`,
//! `response_format` (`json`, `text`, `srt`, `vtt`, `verbose_json`) and
//! `timestamp_granularities[]` (`word` adds word times to `verbose_json`),
//! answered in the shapes OpenAI clients parse. `prompt` and `temperature`
//! are accepted and ignored, as a local engine has no use for them.

use serde::Serialize;

use super::batch::{self, BatchTranscript, Form};
use crate::core::CoreContext;
use crate::error::{ApiError, ErrorKind};
use crate::http::{Request, Response};
use crate::model::TranscribeOptions;
use crate::subtitles::Cues;

/// The answer formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFormat {
    Json,
    Text,
    Srt,
    Vtt,
    VerboseJson,
}

impl ResponseFormat {
    /// # Errors
    /// `400` for an unknown format.
    pub fn parse(value: &str) -> Result<ResponseFormat, ApiError> {
        match value {
            "json" => Ok(ResponseFormat::Json),
            "text" => Ok(ResponseFormat::Text),
            "srt" => Ok(ResponseFormat::Srt),
            "vtt" => Ok(ResponseFormat::Vtt),
            "verbose_json" => Ok(ResponseFormat::VerboseJson),
            other => Err(ApiError::bad_request(format!(
                "response_format must be json, text, srt, vtt or verbose_json, got {other:?}"
            ))),
        }
    }
}

/// Handle `POST /v1/audio/transcriptions`.
///
/// # Errors
/// `415` unless the body is `multipart/form-data`; `400` for a missing
/// `file` or a bad field; otherwise as [`batch::run_batch`].
pub async fn transcriptions(
    core: &CoreContext,
    request: &mut Request,
) -> Result<Response, ApiError> {
    let content_type = request.head.header("content-type").unwrap_or_default();
    if !content_type
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        return Err(ApiError::new(
            ErrorKind::UnsupportedMediaType,
            "send the audio as multipart/form-data with a part named \"file\"",
        ));
    }
    let form = Form::parse(content_type, &request.body)?;
    let format = match form.field("response_format")? {
        Some(value) if !value.is_empty() => ResponseFormat::parse(value)?,
        _ => ResponseFormat::Json,
    };
    let language = match form.field("language")? {
        Some(value) if !value.is_empty() => Some(batch::parse_language(value)?),
        _ => None,
    };
    let mut words = false;
    for granularity in form
        .fields("timestamp_granularities[]")
        .chain(form.fields("timestamp_granularities"))
    {
        match granularity {
            b"word" => words = true,
            b"segment" => {}
            _ => {
                return Err(ApiError::bad_request(
                    "timestamp_granularities[] must be word or segment",
                ))
            }
        }
    }
    drop(form);
    let audio = batch::prepare(core, request, None, core.shared.settings.session.vad_mode).await?;
    let options = TranscribeOptions {
        language: language.clone(),
    };
    let transcript = batch::run_batch(core, &audio, &options).await?;
    Ok(render(&transcript, format, language.as_deref(), words))
}

#[derive(Serialize)]
struct JsonAnswer {
    text: String,
}

#[derive(Serialize)]
struct VerboseWord<'a> {
    word: &'a str,
    start: f64,
    end: f64,
}

#[derive(Serialize)]
struct VerboseSegment<'a> {
    id: usize,
    seek: u32,
    start: f64,
    end: f64,
    text: &'a str,
    tokens: [u32; 0],
    temperature: f64,
    avg_logprob: f64,
    compression_ratio: f64,
    no_speech_prob: f64,
}

#[derive(Serialize)]
struct VerboseAnswer<'a> {
    task: &'static str,
    language: &'a str,
    duration: f64,
    text: String,
    segments: Vec<VerboseSegment<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    words: Option<Vec<VerboseWord<'a>>>,
}

/// Render a transcript in the requested format.
pub fn render(
    transcript: &BatchTranscript,
    format: ResponseFormat,
    language: Option<&str>,
    words: bool,
) -> Response {
    match format {
        ResponseFormat::Json => Response::json(
            200,
            &JsonAnswer {
                text: transcript.text(),
            },
        ),
        ResponseFormat::Text => Response::with_body(
            200,
            "text/plain; charset=utf-8",
            format!("{}\n", transcript.text()).into_bytes(),
        ),
        ResponseFormat::Srt => Response::with_body(
            200,
            "application/x-subrip; charset=utf-8",
            subtitles(transcript, false).into_bytes(),
        ),
        ResponseFormat::Vtt => Response::with_body(
            200,
            "text/vtt; charset=utf-8",
            subtitles(transcript, true).into_bytes(),
        ),
        ResponseFormat::VerboseJson => Response::json(
            200,
            &VerboseAnswer {
                task: "transcribe",
                language: language.unwrap_or("english"),
                duration: transcript.duration,
                text: transcript.text(),
                segments: transcript
                    .segments
                    .iter()
                    .enumerate()
                    .map(|(id, segment)| VerboseSegment {
                        id,
                        seek: 0,
                        start: segment.start,
                        end: segment.end,
                        text: &segment.text,
                        tokens: [],
                        temperature: 0.0,
                        avg_logprob: 0.0,
                        compression_ratio: 1.0,
                        no_speech_prob: 0.0,
                    })
                    .collect(),
                words: words.then(|| {
                    transcript
                        .segments
                        .iter()
                        .flat_map(|segment| segment.words.iter())
                        .map(|word| VerboseWord {
                            word: &word.word,
                            start: word.start,
                            end: word.end,
                        })
                        .collect()
                }),
            },
        ),
    }
}

/// SRT (`vtt == false`) or WebVTT cues, one per segment.
fn subtitles(transcript: &BatchTranscript, vtt: bool) -> String {
    let segments = transcript
        .segments
        .iter()
        .map(|segment| (segment.start, segment.end, segment.text.as_str()));
    crate::subtitles::subtitles(segments, if vtt { Cues::Vtt } else { Cues::Srt })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::batch::SegmentText;

    fn transcript() -> BatchTranscript {
        BatchTranscript {
            duration: 5.0,
            segments: vec![
                SegmentText {
                    start: 0.42,
                    end: 2.1,
                    text: "alpha bravo".into(),
                    words: vec![],
                },
                SegmentText {
                    start: 3661.5,
                    end: 3662.0,
                    text: "charlie".into(),
                    words: vec![],
                },
            ],
        }
    }

    #[test]
    fn srt_and_vtt_cues() {
        let srt = subtitles(&transcript(), false);
        assert_eq!(
            srt,
            "1\n00:00:00,420 --> 00:00:02,100\nalpha bravo\n\n2\n01:01:01,500 --> 01:01:02,000\ncharlie\n\n"
        );
        let vtt = subtitles(&transcript(), true);
        assert!(vtt.starts_with("WEBVTT\n\n00:00:00.420 --> 00:00:02.100\nalpha bravo\n\n"));
    }

    #[test]
    fn formats_parse() {
        assert_eq!(ResponseFormat::parse("srt"), Ok(ResponseFormat::Srt));
        assert!(ResponseFormat::parse("xml").is_err());
    }
}
