//! Deepgram's dialect on the HTTP side of `/v1/listen`: the key as Deepgram
//! clients present it ([`presented_key`]), the check of a live request's
//! parameters before its upgrade ([`accept_upgrade`]), Deepgram's error body
//! ([`error_response`]), and pre-recorded transcription ([`listen`]): a raw
//! audio body over the batch path, answered in Deepgram's response shape.
//! The live stream itself is the codec `ws::deepgram`.

use serde::Serialize;

use super::batch::{self, BatchTranscript, SegmentText};
use crate::core::CoreContext;
use crate::error::{ApiError, ErrorKind};
use crate::http::response::reason_phrase;
use crate::http::{Request, RequestHead, Response};
use crate::model::{TranscribeOptions, Word};
use crate::ws::deepgram::{
    model_uuid, round_ms, Alternative, Channel, ListenMode, ListenParams, ModelInfo,
    TranscriptText, WordList, CONFIDENCE,
};

/// The path of both Deepgram routes.
pub const LISTEN_PATH: &str = "/v1/listen";

/// The key a Deepgram client presents: `Authorization: Token <key>` (or
/// `Bearer <key>`), or, from a browser, the subprotocol pair
/// `Sec-WebSocket-Protocol: token, <key>` (or `bearer, <key>`).
pub fn presented_key(head: &RequestHead) -> Option<String> {
    let from_header = head.header("authorization").and_then(|value| {
        let (scheme, key) = value.trim().split_once(' ')?;
        (scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer"))
            .then(|| key.trim().to_string())
    });
    from_header.or_else(|| subprotocol_pair(head).map(|(_, key)| key.to_string()))
}

/// The `token, <key>` (or `bearer, <key>`) pair of `Sec-WebSocket-Protocol`:
/// the scheme as the client wrote it and the key.
fn subprotocol_pair(head: &RequestHead) -> Option<(&str, &str)> {
    let mut offered = head
        .headers
        .iter()
        .filter(|(name, _)| name == "sec-websocket-protocol")
        .flat_map(|(_, value)| value.split(','))
        .map(str::trim);
    let scheme = offered.find(|protocol| {
        protocol.eq_ignore_ascii_case("token") || protocol.eq_ignore_ascii_case("bearer")
    })?;
    let key = offered.next()?;
    Some((scheme, key))
}

/// Check a live request before its upgrade: parameters this server cannot
/// honour are refused with Deepgram's `400`, not ignored. `Ok` names the
/// subprotocol to answer when the key came in `Sec-WebSocket-Protocol` (a
/// browser fails the connection unless one it offered is chosen).
///
/// # Errors
/// The `400` to answer instead of the `101`.
pub fn accept_upgrade(head: &RequestHead) -> Result<Option<&'static str>, Response> {
    if let Err(message) = ListenParams::parse(head.query.as_deref(), ListenMode::Live) {
        return Err(error_response(&ApiError::bad_request(message)));
    }
    Ok(subprotocol_pair(head).map(|(scheme, _)| {
        if scheme.eq_ignore_ascii_case("bearer") {
            "bearer"
        } else {
            "token"
        }
    }))
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    err_code: &'a str,
    err_msg: &'a str,
    request_id: &'a str,
}

/// Deepgram's error body, `{"err_code", "err_msg", "request_id"}`, with the
/// status of the error's kind and Deepgram's `dg-request-id` and `dg-error`
/// headers (the only part of a refused upgrade a WebSocket client can read).
pub fn error_response(error: &ApiError) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let status = error.kind.status();
    let err_code = match error.kind {
        ErrorKind::Unauthorized => "INVALID_AUTH",
        _ => reason_phrase(status),
    };
    let body = ErrorBody {
        err_code,
        err_msg: &error.message,
        request_id: &request_id,
    };
    let mut response = Response::json(status, &body);
    // Keep the headers of the native answer (Retry-After, WWW-Authenticate)
    // and its decision to close.
    let native = Response::error(error);
    response.headers = native.headers;
    response.close = native.close;
    // A header value cannot hold line breaks; messages are ours and have none,
    // but a quoted parameter could.
    let dg_error: String = error
        .message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    response
        .header("dg-request-id", request_id)
        .header("dg-error", dg_error)
}

/// Handle `POST /v1/listen`: pre-recorded audio in the body. Errors are
/// answered in Deepgram's shape here, so the result is always a response.
pub async fn listen(core: &CoreContext, request: &mut Request) -> Response {
    match listen_inner(core, request).await {
        Ok(response) => response,
        Err(error) => error_response(&error),
    }
}

async fn listen_inner(core: &CoreContext, request: &mut Request) -> Result<Response, ApiError> {
    let params = ListenParams::parse(request.head.query.as_deref(), ListenMode::Prerecorded)
        .map_err(ApiError::bad_request)?;
    let content_type = body_media_type(&request.head, &request.body, &params)?;
    set_content_type(&mut request.head, content_type);
    let audio = batch::prepare(
        core,
        request,
        params.sample_rate,
        core.shared.settings.session.vad_mode,
    )
    .await?;
    let options = TranscribeOptions {
        language: params.language.clone(),
        ..TranscribeOptions::default()
    };
    let transcript = batch::run_batch(core, &audio, &options).await?;
    let request_id = uuid::Uuid::new_v4().to_string();
    let model = core.shared.model_name;
    let whole = Whole::of(&transcript, model);
    let body = render(&transcript, &whole, &params, model, &request_id);
    Ok(Response::json(200, &body).header("dg-request-id", request_id))
}

/// The media type the batch decoder is to read the body as. Deepgram takes
/// any audio type (and `application/octet-stream`) and finds the container
/// itself; raw samples are `encoding=linear16` with `sample_rate`.
/// `application/json` is how a client asks Deepgram to fetch a URL, which
/// this server does not do.
///
/// # Errors
/// `400` for a JSON body (a URL or otherwise), for raw PCM without its rate;
/// `415` for a type that is not audio.
fn body_media_type(
    head: &RequestHead,
    body: &[u8],
    params: &ListenParams,
) -> Result<String, ApiError> {
    let declared = head.header("content-type").unwrap_or("");
    let essence = declared
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        let has_url = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .is_some_and(|value| value.get("url").is_some());
        return Err(ApiError::bad_request(if has_url {
            "this server does not fetch audio from URLs: send the audio itself as the request body (Content-Type: audio/* or application/octet-stream)"
        } else {
            "a JSON body must be {\"url\": ...}, which this server does not fetch: send the audio itself as the request body"
        }));
    }
    if params.linear16 && !looks_like_container(body) {
        let rate = params.sample_rate.ok_or_else(|| {
            ApiError::bad_request("sample_rate is required with encoding=linear16")
        })?;
        return Ok(format!("audio/pcm; rate={rate}"));
    }
    match essence.as_str() {
        "audio/wav" | "audio/x-wav" | "audio/wave" | "audio/vnd.wave" => Ok(essence),
        "" | "application/octet-stream" => Ok("application/octet-stream".to_string()),
        _ if essence.starts_with("audio/") || essence.starts_with("video/") => {
            Ok("application/octet-stream".to_string())
        }
        _ => Err(ApiError::new(
            ErrorKind::UnsupportedMediaType,
            format!(
                "unsupported Content-Type {essence:?}: send audio/* or application/octet-stream"
            ),
        )),
    }
}

/// Whether the body starts like a container the decoder knows (WAV, FLAC,
/// Ogg, MP3), whatever `encoding` says: Deepgram reads those from their
/// headers.
fn looks_like_container(body: &[u8]) -> bool {
    body.starts_with(b"RIFF")
        || body.starts_with(b"fLaC")
        || body.starts_with(b"OggS")
        || body.starts_with(b"ID3")
}

fn set_content_type(head: &mut RequestHead, value: String) {
    head.headers.retain(|(name, _)| name != "content-type");
    head.headers.push(("content-type".to_string(), value));
}

#[derive(Serialize)]
struct ListenResponse<'a> {
    metadata: ResponseMetadata<'a>,
    results: ResponseResults<'a>,
}

#[derive(Serialize)]
struct ResponseMetadata<'a> {
    transaction_key: &'static str,
    request_id: &'a str,
    created: String,
    duration: f64,
    channels: u32,
    models: [&'a str; 1],
    model_info: serde_json::Value,
}

#[derive(Serialize)]
struct ResponseResults<'a> {
    channels: [Channel<'a, Word>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    utterances: Option<Vec<Utterance<'a>>>,
}

#[derive(Serialize)]
struct Utterance<'a> {
    start: f64,
    end: f64,
    confidence: f64,
    channel: u32,
    transcript: TranscriptText<'a>,
    words: WordList<'a, Word>,
    id: String,
}

fn word_parts(word: &Word) -> (&str, f64, f64) {
    (word.word.as_str(), word.start, word.end)
}

/// The whole of a transcript, owned, for [`render`] to borrow from.
struct Whole {
    text: String,
    words: Vec<Word>,
    uuid: String,
}

impl Whole {
    fn of(transcript: &BatchTranscript, model: &str) -> Whole {
        Whole {
            text: transcript.text(),
            words: transcript
                .segments
                .iter()
                .flat_map(|segment| segment.words.iter().cloned())
                .collect(),
            uuid: model_uuid(model),
        }
    }
}

fn render<'a>(
    transcript: &'a BatchTranscript,
    whole: &'a Whole,
    params: &ListenParams,
    model: &'static str,
    request_id: &'a str,
) -> ListenResponse<'a> {
    let mut model_info = serde_json::Map::new();
    model_info.insert(
        whole.uuid.clone(),
        serde_json::to_value(ModelInfo::new(model)).unwrap_or_default(),
    );
    let punctuate = params.punctuate;
    let utterances = params.utterances.then(|| {
        transcript
            .segments
            .iter()
            .map(|segment: &'a SegmentText| Utterance {
                start: segment.start,
                end: segment.end,
                confidence: CONFIDENCE,
                channel: 0,
                transcript: TranscriptText {
                    text: &segment.text,
                    punctuate,
                },
                words: WordList {
                    words: &segment.words,
                    punctuate,
                    parts: word_parts,
                },
                id: uuid::Uuid::new_v4().to_string(),
            })
            .collect()
    });
    ListenResponse {
        metadata: ResponseMetadata {
            transaction_key: "deprecated",
            request_id,
            created: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            duration: round_ms(transcript.duration),
            channels: 1,
            models: [&whole.uuid],
            model_info: serde_json::Value::Object(model_info),
        },
        results: ResponseResults {
            channels: [Channel {
                alternatives: [Alternative {
                    transcript: TranscriptText {
                        text: &whole.text,
                        punctuate,
                    },
                    confidence: CONFIDENCE,
                    words: WordList {
                        words: &whole.words,
                        punctuate,
                        parts: word_parts,
                    },
                }],
            }],
            utterances,
        },
    }
}
