//! `POST /v1/transcribe`: the native batch endpoint.

use serde::Serialize;

use super::batch::{self, BatchTranscript};
use crate::core::CoreContext;
use crate::error::ApiError;
use crate::http::query::parse_query;
use crate::http::{Request, Response};
use crate::model::TranscribeOptions;

/// The query parameters of a batch request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchParams {
    pub vad_mode: u8,
    pub language: Option<String>,
    pub words: bool,
    /// The rate of raw PCM, when the media type does not say.
    pub sample_rate: Option<u32>,
}

impl BatchParams {
    /// Parse the query; unknown parameters are ignored.
    ///
    /// # Errors
    /// `400` for a bad value of a known parameter.
    pub fn parse(query: Option<&str>, default_vad_mode: u8) -> Result<BatchParams, ApiError> {
        let mut params = BatchParams {
            vad_mode: default_vad_mode,
            language: None,
            words: false,
            sample_rate: None,
        };
        let pairs = parse_query(query)
            .map_err(|pair| ApiError::bad_request(format!("malformed query parameter {pair:?}")))?;
        for (name, value) in pairs {
            match name.as_str() {
                "vad_mode" => params.vad_mode = batch::parse_vad_mode(&value)?,
                "language" => params.language = Some(batch::parse_language(&value)?),
                "words" => params.words = batch::parse_bool("words", &value)?,
                "sample_rate" => {
                    let rate = value
                        .parse::<u32>()
                        .ok()
                        .filter(|rate| (8_000..=192_000).contains(rate))
                        .ok_or_else(|| {
                            ApiError::bad_request(format!(
                                "sample_rate must be between 8000 and 192000, got {value:?}"
                            ))
                        })?;
                    params.sample_rate = Some(rate);
                }
                _ => {}
            }
        }
        Ok(params)
    }
}

#[derive(Serialize)]
struct WordJson<'a> {
    word: &'a str,
    start: f64,
    end: f64,
}

#[derive(Serialize)]
struct SegmentJson<'a> {
    id: usize,
    start: f64,
    end: f64,
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    words: Option<Vec<WordJson<'a>>>,
}

#[derive(Serialize)]
struct TranscribeJson<'a> {
    text: String,
    duration: f64,
    segments: Vec<SegmentJson<'a>>,
    model: &'static str,
    processing_ms: f64,
}

/// Handle `POST /v1/transcribe`.
///
/// # Errors
/// As [`batch::decode_body`] and [`batch::run_batch`], and `400` for bad
/// query parameters.
pub async fn transcribe(core: &CoreContext, request: &mut Request) -> Result<Response, ApiError> {
    let params = BatchParams::parse(
        request.head.query.as_deref(),
        core.shared.settings.session.vad_mode,
    )?;
    let audio = batch::prepare(core, request, params.sample_rate, params.vad_mode).await?;
    let options = TranscribeOptions {
        language: params.language.clone(),
        ..TranscribeOptions::default()
    };
    let transcript = batch::run_batch(core, &audio, &options).await?;
    let processing_ms = (request.received_at.elapsed().as_secs_f64() * 10_000.0).round() / 10.0;
    Ok(Response::json(
        200,
        &render(
            &transcript,
            params.words,
            core.shared.model_name,
            processing_ms,
        ),
    ))
}

fn render<'a>(
    transcript: &'a BatchTranscript,
    words: bool,
    model: &'static str,
    processing_ms: f64,
) -> TranscribeJson<'a> {
    TranscribeJson {
        text: transcript.text(),
        duration: transcript.duration,
        segments: transcript
            .segments
            .iter()
            .enumerate()
            .map(|(id, segment)| SegmentJson {
                id,
                start: segment.start,
                end: segment.end,
                text: &segment.text,
                words: words.then(|| {
                    segment
                        .words
                        .iter()
                        .map(|word| WordJson {
                            word: &word.word,
                            start: word.start,
                            end: word.end,
                        })
                        .collect()
                }),
            })
            .collect(),
        model,
        processing_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn params_parse_and_refuse() {
        let params = BatchParams::parse(
            Some("vad_mode=3&words=true&language=en&sample_rate=8000&x=y"),
            2,
        )
        .expect("valid");
        assert_eq!(
            params,
            BatchParams {
                vad_mode: 3,
                language: Some("en".into()),
                words: true,
                sample_rate: Some(8000)
            }
        );
        assert_eq!(BatchParams::parse(None, 1).expect("valid").vad_mode, 1);
        for bad in [
            "vad_mode=9",
            "words=maybe",
            "sample_rate=12",
            "language=%00",
        ] {
            let error = BatchParams::parse(Some(bad), 2).expect_err(bad);
            assert_eq!(error.kind, ErrorKind::BadRequest, "{bad}");
        }
    }
}
