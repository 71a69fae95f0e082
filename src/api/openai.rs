//! The OpenAI dialect's audio endpoints: `POST /v1/audio/transcriptions`
//! and `POST /v1/audio/translations`, the same batch work as
//! `/v1/transcribe` asked for as OpenAI clients ask (multipart with `file`,
//! `model`, `language`, `prompt`, `temperature`, `response_format` =
//! `json` | `text` | `srt` | `vtt` | `verbose_json`,
//! `timestamp_granularities[]`) and answered in the shapes they parse,
//! errors included (`{"error": {"message", "type", "param", "code"}}`,
//! [`respond`]). `stream=true` answers Server-Sent Events
//! (`openai_sse.rs`). `model` is accepted whatever it names: every id runs
//! the one loaded engine (`openai_models.rs` lists them).

use std::rc::Rc;

use serde::Serialize;

use super::batch::{self, BatchTranscript, Form};
use crate::core::CoreContext;
use crate::error::{ApiError, ErrorKind};
use crate::http::{Request, Response};
use crate::model::{Task, TranscribeOptions};
use crate::subtitles::Cues;

/// The longest `prompt` accepted, in bytes (Whisper keeps 224 tokens of it).
pub const PROMPT_BYTES_MAX: usize = 4096;

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

/// A transcription or translation request, its form read.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioRequest {
    pub format: ResponseFormat,
    pub options: TranscribeOptions,
    /// `timestamp_granularities[]` has `word`.
    pub words: bool,
    /// `stream=true`: Server-Sent Events.
    pub stream: bool,
}

impl AudioRequest {
    /// Read the form's fields for `task` (translations take no `language`
    /// and no `stream`, as OpenAI's).
    ///
    /// # Errors
    /// `400` for a bad field.
    pub fn parse(form: &Form<'_>, task: Task) -> Result<AudioRequest, ApiError> {
        let format = match form.field("response_format")? {
            Some(value) if !value.is_empty() => ResponseFormat::parse(value)?,
            _ => ResponseFormat::Json,
        };
        let language = match form.field("language")? {
            Some(value) if !value.is_empty() && task == Task::Transcribe => {
                Some(parse_language(value)?)
            }
            _ => None,
        };
        let prompt = match form.field("prompt")? {
            Some(value) if !value.is_empty() => Some(parse_prompt(value)?.into()),
            _ => None,
        };
        let temperature = match form.field("temperature")? {
            Some(value) if !value.is_empty() => Some(parse_temperature(value)?),
            _ => None,
        };
        let stream = match form.field("stream")? {
            Some(value) if task == Task::Transcribe => batch::parse_bool("stream", value)?,
            _ => false,
        };
        let mut words = false;
        let mut granularities = 0;
        for granularity in form
            .fields("timestamp_granularities[]")
            .chain(form.fields("timestamp_granularities"))
        {
            granularities += 1;
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
        if granularities > 0 && format != ResponseFormat::VerboseJson {
            return Err(ApiError::bad_request(
                "timestamp_granularities[] is only supported with response_format verbose_json",
            ));
        }
        if stream && format != ResponseFormat::Json && format != ResponseFormat::Text {
            return Err(ApiError::bad_request(
                "stream=true answers transcript.text events: response_format must be json or text",
            ));
        }
        Ok(AudioRequest {
            format,
            options: TranscribeOptions {
                language,
                prompt,
                temperature,
                task,
            },
            words,
            stream,
        })
    }
}

/// Handle `POST /v1/audio/transcriptions`.
///
/// # Errors
/// `415` unless the body is `multipart/form-data`; `400` for a missing
/// `file` or a bad field; otherwise as [`batch::run_batch`].
pub async fn transcriptions(
    core: &Rc<CoreContext>,
    request: &mut Request,
) -> Result<Response, ApiError> {
    let parsed = read_form(request, Task::Transcribe)?;
    if parsed.stream {
        return super::openai_sse::transcriptions(core, request, parsed.options).await;
    }
    run(core, request, &parsed).await
}

/// Handle `POST /v1/audio/translations`: English text from speech in any
/// language, with a multilingual model.
///
/// # Errors
/// `400 unsupported_model` when the loaded model is English-only (the mock,
/// a `*.en` Whisper model); `503` while it loads; otherwise as
/// [`transcriptions`].
pub async fn translations(core: &CoreContext, request: &mut Request) -> Result<Response, ApiError> {
    let parsed = read_form(request, Task::Translate)?;
    match core.shared.to_pool.is_multilingual() {
        Some(true) => {}
        Some(false) => {
            return Err(ApiError::new(
                ErrorKind::UnsupportedModel,
                format!(
                    "translation needs a multilingual model, and the loaded model ({}) is English-only; \
                     start the server with a multilingual Whisper model (e.g. ggml-base.bin, docs/MODELS.md)",
                    super::openai_models::engine_model_id(&core.shared.settings.model.model)
                ),
            ))
        }
        None => {
            return Err(ApiError::new(
                ErrorKind::Overloaded,
                "the model is not loaded yet; retry shortly",
            ))
        }
    }
    run(core, request, &parsed).await
}

/// Check the body is a form and read its fields (the `file` part stays in
/// the body, which [`batch::prepare`] decodes).
fn read_form(request: &Request, task: Task) -> Result<AudioRequest, ApiError> {
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
    form.file()?;
    AudioRequest::parse(&form, task)
}

/// Transcribe (or translate) the request's audio and render the answer.
async fn run(
    core: &CoreContext,
    request: &mut Request,
    parsed: &AudioRequest,
) -> Result<Response, ApiError> {
    let audio = batch::prepare(core, request, None, core.shared.settings.session.vad_mode).await?;
    let transcript = batch::run_batch(core, &audio, &parsed.options).await?;
    Ok(render(
        &transcript,
        parsed.format,
        &parsed.options,
        parsed.words,
    ))
}

/// Whisper's languages (ISO 639-1, and ISO 639-3 where it has no
/// two-letter code): what OpenAI's `language` accepts.
const WHISPER_LANGUAGES: [&str; 100] = [
    "en", "zh", "de", "es", "ru", "ko", "fr", "ja", "pt", "tr", "pl", "ca", "nl", "ar", "sv", "it",
    "id", "hi", "fi", "vi", "he", "uk", "el", "ms", "cs", "ro", "da", "hu", "ta", "no", "th", "ur",
    "hr", "bg", "lt", "la", "mi", "ml", "cy", "sk", "te", "fa", "lv", "bn", "sr", "az", "sl", "kn",
    "et", "mk", "br", "eu", "is", "hy", "ne", "mn", "bs", "kk", "sq", "sw", "gl", "mr", "pa", "si",
    "km", "sn", "yo", "so", "af", "oc", "ka", "be", "tg", "sd", "gu", "am", "yi", "lo", "uz", "fo",
    "ht", "ps", "tk", "nn", "mt", "sa", "lb", "my", "bo", "tl", "mg", "as", "tt", "haw", "ln",
    "ha", "ba", "jw", "su", "yue",
];

/// Check a `language`: a language Whisper knows, as its code (`en`) or a
/// tag whose primary subtag is one (`en-US`).
///
/// # Errors
/// `400` for anything else.
pub fn parse_language(value: &str) -> Result<String, ApiError> {
    let primary = value.split(['-', '_']).next().unwrap_or_default();
    let known = crate::model::is_language_tag(value)
        && WHISPER_LANGUAGES
            .iter()
            .any(|code| code.eq_ignore_ascii_case(primary));
    if known {
        Ok(value.to_string())
    } else {
        Err(ApiError::bad_request(format!(
            "unsupported language {:?}: use an ISO 639-1 code such as \"en\"",
            super::truncate(value, 32)
        )))
    }
}

/// Check a `temperature`: a number from 0 to 1.
///
/// # Errors
/// `400` for anything else.
pub fn parse_temperature(value: &str) -> Result<f32, ApiError> {
    match value.parse::<f32>() {
        Ok(temperature) if (0.0..=1.0).contains(&temperature) => Ok(temperature),
        _ => Err(ApiError::bad_request(format!(
            "temperature must be a number from 0 to 1, got {:?}",
            super::truncate(value, 32)
        ))),
    }
}

/// Check a `prompt`: at most [`PROMPT_BYTES_MAX`] bytes, no NUL.
///
/// # Errors
/// `400` for anything else.
pub fn parse_prompt(value: &str) -> Result<String, ApiError> {
    if value.len() > PROMPT_BYTES_MAX {
        return Err(ApiError::bad_request(format!(
            "prompt is longer than {PROMPT_BYTES_MAX} bytes"
        )));
    }
    if value.contains('\0') {
        return Err(ApiError::bad_request("prompt contains a NUL character"));
    }
    Ok(value.to_string())
}

/// `text` cut to at most `max` characters, for echoing client input in
/// messages.
pub fn truncate_text(text: &str, max: usize) -> &str {
    super::truncate(text, max)
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
    options: &TranscribeOptions,
    words: bool,
) -> Response {
    let (task, language) = match options.task {
        Task::Transcribe => (
            "transcribe",
            options.language.as_deref().unwrap_or("english"),
        ),
        Task::Translate => ("translate", "english"),
    };
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
                task,
                language,
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
                        temperature: options.temperature.map_or(0.0, f64::from),
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
    use crate::api::openai_error::respond;

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
    fn languages_temperatures_and_prompts() {
        assert!(parse_language("en").is_ok());
        assert!(parse_language("pt-BR").is_ok());
        assert!(parse_language("yue").is_ok());
        assert!(parse_language("xx").is_err());
        assert!(parse_language("english").is_err());
        assert!(parse_language("en;drop").is_err());
        assert_eq!(parse_temperature("0.2"), Ok(0.2));
        assert!(parse_temperature("-0.1").is_err());
        assert!(parse_temperature("NaN").is_err());
        assert!(parse_prompt("Qualcomm, Zyxel").is_ok());
        assert!(parse_prompt("a\0b").is_err());
        assert!(parse_prompt(&"a".repeat(PROMPT_BYTES_MAX + 1)).is_err());
    }

    #[test]
    fn errors_have_openai_shape() {
        let response = respond(Err(ApiError::new(
            ErrorKind::UnsupportedModel,
            "English-only",
        )));
        assert_eq!(response.status, 400);
        let body: serde_json::Value = serde_json::from_slice(&response.body).expect("json");
        assert_eq!(
            body,
            serde_json::json!({"error": {"message": "English-only",
                "type": "invalid_request_error", "param": null, "code": "unsupported_model"}})
        );
    }

    #[test]
    fn formats_parse() {
        assert_eq!(ResponseFormat::parse("srt"), Ok(ResponseFormat::Srt));
        assert!(ResponseFormat::parse("xml").is_err());
    }
}
