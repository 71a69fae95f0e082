//! The batch path shared by `/v1/transcribe` and the OpenAI-compatible
//! endpoint: request audio → [`Pcm`] → VAD segments → one model job per
//! segment → segments with text and word times.
//!
//! Decoding and segmentation run on the core (a few milliseconds per minute of
//! audio); the model runs on the pool. A request keeps at most
//! [`BATCH_JOBS_IN_FLIGHT_MAX`] of its segments queued at once, so one long
//! recording cannot take the whole queue; when the queue is full and the
//! request has nothing queued, it is answered `503 overloaded`.

use std::collections::VecDeque;
use std::ops::{ControlFlow, Range};

use crate::audio::{self, AudioError, AudioFormat, Pcm, SegmenterConfig};
use crate::core::CoreContext;
use crate::error::{ApiError, ErrorKind};
use crate::http::multipart::{self, Part};
use crate::http::Request;
use crate::limits::{
    BATCH_JOBS_IN_FLIGHT_MAX, BATCH_WINDOW_GAP_MS, BATCH_WINDOW_SECONDS_MIN,
    INLINE_DECODE_BYTES_MAX,
};
use crate::metrics::record_duration;
use crate::model::pool::{Job, JobKind, ReplyReceiver, SubmitError};
use crate::model::window::{self, Span};
use crate::model::{EngineError, TranscribeOptions, Transcript, Word};

/// The raw PCM rate when neither the media type nor the query names one.
pub const RAW_PCM_DEFAULT_RATE_HZ: u32 = 16_000;

/// One transcribed segment, in stream time.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentText {
    pub start: f64,
    pub end: f64,
    pub text: String,
    /// Word times in stream time.
    pub words: Vec<Word>,
}

/// The whole result of a batch request.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchTranscript {
    /// Seconds of audio.
    pub duration: f64,
    /// Segments with text, in order (segments the model heard nothing in are left out).
    pub segments: Vec<SegmentText>,
}

impl BatchTranscript {
    /// The full text: the segments' texts joined by spaces.
    pub fn text(&self) -> String {
        self.segments
            .iter()
            .map(|segment| segment.text.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A media type split into its lower-cased essence and parameters.
struct MediaType<'a> {
    essence: String,
    raw: &'a str,
}

impl<'a> MediaType<'a> {
    fn parse(raw: &'a str) -> MediaType<'a> {
        let essence = raw
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        MediaType { essence, raw }
    }

    fn param(&self, name: &str) -> Option<&'a str> {
        self.raw.split(';').skip(1).find_map(|param| {
            let (key, value) = param.split_once('=')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().trim_matches('"'))
        })
    }
}

/// Decode the audio of a request body by its `Content-Type`.
///
/// # Errors
/// `415` for a media type or bytes that cannot be decoded, `422` for
/// decodable but unusable audio, `400` for a malformed form or parameter.
pub fn decode_body(
    content_type: Option<&str>,
    body: &[u8],
    query_rate: Option<u32>,
) -> Result<Pcm, ApiError> {
    let media = MediaType::parse(content_type.unwrap_or("application/octet-stream"));
    if media.essence == "multipart/form-data" {
        let form = Form::parse(content_type.unwrap_or_default(), body)?;
        let file = form.file()?;
        return decode_part(file, query_rate);
    }
    decode_media(&media, body, query_rate)
}

fn decode_media(
    media: &MediaType<'_>,
    body: &[u8],
    query_rate: Option<u32>,
) -> Result<Pcm, ApiError> {
    if body.is_empty() {
        return Err(ApiError::new(ErrorKind::InvalidAudio, "the audio is empty"));
    }
    let format = match media.essence.as_str() {
        "audio/wav" | "audio/x-wav" | "audio/wave" | "audio/vnd.wave" => AudioFormat::Wav,
        "audio/pcm" | "audio/l16" => {
            if let Some(channels) = media.param("channels") {
                if channels != "1" {
                    return Err(ApiError::new(
                        ErrorKind::UnsupportedMediaType,
                        "raw PCM must be mono (channels=1)",
                    ));
                }
            }
            let sample_rate = match media.param("rate") {
                Some(rate) => rate.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid rate parameter {rate:?}"))
                })?,
                None => query_rate.unwrap_or(RAW_PCM_DEFAULT_RATE_HZ),
            };
            AudioFormat::RawPcm16 { sample_rate }
        }
        "application/octet-stream" | "audio/flac" | "audio/x-flac" | "audio/mpeg" | "audio/mp3"
        | "audio/ogg" | "audio/vorbis" | "application/ogg" => AudioFormat::Sniff,
        other => {
            return Err(ApiError::new(
                ErrorKind::UnsupportedMediaType,
                format!(
                    "unsupported Content-Type {other:?}: send audio/wav, audio/pcm, multipart/form-data, FLAC, MP3 or Ogg Vorbis"
                ),
            ))
        }
    };
    audio::decode(format, body).map_err(audio_error)
}

fn decode_part(part: &Part<'_>, query_rate: Option<u32>) -> Result<Pcm, ApiError> {
    let content_type = part.content_type.unwrap_or("application/octet-stream");
    let media = MediaType::parse(content_type);
    // Browsers and SDKs label files loosely (`application/octet-stream`,
    // `video/webm`, …): sniff anything that is not explicitly raw PCM or WAV.
    let media = match media.essence.as_str() {
        "audio/pcm" | "audio/l16" | "audio/wav" | "audio/x-wav" | "audio/wave"
        | "audio/vnd.wave" => media,
        _ => MediaType::parse("application/octet-stream"),
    };
    decode_media(&media, part.data, query_rate)
}

/// The map from the audio module's errors to the contract's.
pub fn audio_error(error: AudioError) -> ApiError {
    match error {
        AudioError::Unsupported(_) => {
            ApiError::new(ErrorKind::UnsupportedMediaType, error.to_string())
        }
        AudioError::Invalid(_) => ApiError::new(ErrorKind::InvalidAudio, error.to_string()),
    }
}

/// A parsed `multipart/form-data` body.
pub struct Form<'a> {
    pub parts: Vec<Part<'a>>,
}

impl<'a> Form<'a> {
    /// # Errors
    /// `400` for a missing boundary or malformed form.
    pub fn parse(content_type: &str, body: &'a [u8]) -> Result<Form<'a>, ApiError> {
        let boundary = multipart::boundary(content_type)
            .ok_or_else(|| ApiError::bad_request("multipart/form-data without a boundary"))?;
        let parts = multipart::parse(body, boundary).map_err(|error| {
            ApiError::bad_request(format!("malformed multipart body: {}", error.0))
        })?;
        Ok(Form { parts })
    }

    /// The text of a field, if present.
    ///
    /// # Errors
    /// `400` when the field is not UTF-8.
    pub fn field(&self, name: &str) -> Result<Option<&'a str>, ApiError> {
        match self.parts.iter().find(|part| part.name == name) {
            None => Ok(None),
            Some(part) => std::str::from_utf8(part.data)
                .map(|text| Some(text.trim()))
                .map_err(|_| ApiError::bad_request(format!("form field {name:?} is not UTF-8"))),
        }
    }

    /// Every value of a repeated field.
    pub fn fields(&self, name: &str) -> impl Iterator<Item = &'a [u8]> + '_ {
        let name = name.to_string();
        self.parts
            .iter()
            .filter(move |part| part.name == name)
            .map(|part| part.data)
    }

    /// The `file` part.
    ///
    /// # Errors
    /// `400` when there is none.
    pub fn file(&self) -> Result<&Part<'a>, ApiError> {
        self.parts
            .iter()
            .find(|part| part.name == "file")
            .ok_or_else(|| ApiError::bad_request("the form has no part named \"file\""))
    }
}

/// Decoded audio and its speech segments, ready for the model.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedAudio {
    pub pcm: Pcm,
    /// Speech segments as `[start, end)` sample ranges, in order.
    pub segments: Vec<(u64, u64)>,
}

/// Decode the request's body and find its speech segments. Small bodies are
/// handled on the core; larger ones on the blocking pool, so the core keeps
/// serving its other connections meanwhile. The body is taken out of the
/// request.
///
/// # Errors
/// As [`decode_body`]; `500` if the blocking pool fails.
pub async fn prepare(
    core: &CoreContext,
    request: &mut Request,
    query_rate: Option<u32>,
    vad_mode: u8,
) -> Result<PreparedAudio, ApiError> {
    let settings = &core.shared.settings.session;
    let (hangover_ms, max_segment_ms) = (settings.vad_hangover_ms, settings.max_segment_ms);
    let content_type = request.head.header("content-type").map(str::to_owned);
    let body = std::mem::take(&mut request.body);
    let inline = request_body_len(&request.head) <= INLINE_DECODE_BYTES_MAX
        && decodes_in_proportion(content_type.as_deref(), &body);
    let work = move || {
        let pcm = decode_body(content_type.as_deref(), &body, query_rate)?;
        let config = SegmenterConfig::new(pcm.sample_rate, hangover_ms, max_segment_ms);
        let segments = audio::segment_all(&pcm, config, vad_mode);
        Ok(PreparedAudio { pcm, segments })
    };
    if inline {
        return work();
    }
    monoio::spawn_blocking(work)
        .await
        .map_err(|_| ApiError::new(ErrorKind::Internal, "the audio decoder failed"))?
}

/// Whether decoding `body` costs in proportion to its size: raw PCM, or a
/// WAV of PCM or float samples. Compressed audio (FLAC, MP3, Vorbis, also
/// inside a form or a RIFF) can expand a thousandfold, so even a small body
/// of it is decoded off the core.
fn decodes_in_proportion(content_type: Option<&str>, body: &[u8]) -> bool {
    const WAVE_FORMAT_PCM: u16 = 1;
    const WAVE_FORMAT_IEEE_FLOAT: u16 = 3;
    const WAVE_FORMAT_EXTENSIBLE: u16 = 0xFFFE;
    let media = MediaType::parse(content_type.unwrap_or("application/octet-stream"));
    match media.essence.as_str() {
        "audio/pcm" | "audio/l16" => return true,
        "multipart/form-data" => return false,
        _ => {}
    }
    // A canonical WAV: "RIFF" size "WAVE" "fmt " size, then the format tag.
    let is_riff_wave = body.len() >= 22 && &body[..4] == b"RIFF" && &body[8..12] == b"WAVE";
    is_riff_wave
        && matches!(
            u16::from_le_bytes([body[20], body[21]]),
            WAVE_FORMAT_PCM | WAVE_FORMAT_IEEE_FLOAT | WAVE_FORMAT_EXTENSIBLE
        )
}

/// The announced body size (chunked bodies count as large).
fn request_body_len(head: &crate::http::RequestHead) -> usize {
    match head.framing {
        crate::http::head::BodyFraming::None => 0,
        crate::http::head::BodyFraming::Length(length) => {
            usize::try_from(length).unwrap_or(usize::MAX)
        }
        crate::http::head::BodyFraming::Chunked => usize::MAX,
    }
}

/// Transcribe every segment of prepared audio on the pool.
///
/// # Errors
/// `503 overloaded` when the model queue is full, `503 shutting_down` when
/// the pool has stopped, `422`/`500` when the engine refuses or fails.
pub async fn run_batch(
    core: &CoreContext,
    audio: &PreparedAudio,
    options: &TranscribeOptions,
) -> Result<BatchTranscript, ApiError> {
    run_batch_each(core, audio, options, |_| ControlFlow::Continue(())).await
}

/// [`run_batch`], handing each segment with text to `on_segment` as soon
/// as it and every segment before it are done (a streamed answer). When
/// `on_segment` breaks, the work stops: jobs not yet run are dropped with
/// their receivers, and the segments so far are returned.
///
/// # Errors
/// As [`run_batch`].
pub async fn run_batch_each(
    core: &CoreContext,
    audio: &PreparedAudio,
    options: &TranscribeOptions,
    mut on_segment: impl FnMut(&SegmentText) -> ControlFlow<()>,
) -> Result<BatchTranscript, ApiError> {
    let (pcm, ranges) = (&audio.pcm, &audio.segments);
    core.metrics.count(|c| {
        c.batch_requests += 1;
        c.batch_audio_seconds += pcm.duration_s();
        c.batch_segments += ranges.len() as u64;
    });

    let rate = f64::from(pcm.sample_rate);
    let speech_s = ranges
        .iter()
        .map(|(start, end)| end.saturating_sub(*start) as f64 / rate)
        .sum::<f64>();
    // Admission by the engine's backlog: refused at once rather than queued
    // behind more work than the engine can clear in the bound.
    let mut reservation =
        core.shared
            .to_pool
            .load()
            .admit_batch(speech_s)
            .map_err(|saturated| {
                core.metrics.count(|c| c.batch_refused_saturated += 1);
                ApiError::new(
                ErrorKind::Overloaded,
                "the speech engine has more batch work queued than it clears in time; retry later",
            )
            .retry_after(saturated.retry_after_s)
            })?;
    let mut segments = Vec::with_capacity(ranges.len());
    let groups = batch_windows(core, audio);
    let mut pending: VecDeque<(Range<usize>, Vec<Span>, ReplyReceiver)> = VecDeque::new();
    let mut next = 0;
    let mut transcripts = vec![None; ranges.len()];
    'jobs: while next < groups.len() || !pending.is_empty() {
        while next < groups.len() && pending.len() < BATCH_JOBS_IN_FLIGHT_MAX {
            let group = groups[next].clone();
            let window = window::pack(
                &pcm.samples,
                ranges,
                group.clone(),
                batch_window_gap(pcm.sample_rate),
            );
            let (job, receiver) = Job::new(
                core.core_id,
                JobKind::Batch,
                window.samples,
                pcm.sample_rate,
                options.clone(),
            );
            match core.shared.to_pool.try_submit(job) {
                Ok(()) => {
                    core.metrics.count(|c| c.model_jobs += 1);
                    pending.push_back((group, window.spans, receiver));
                    next += 1;
                }
                Err(SubmitError::Full(_)) => {
                    core.metrics.count(|c| c.model_queue_full += 1);
                    if pending.is_empty() {
                        return Err(ApiError::new(
                            ErrorKind::Overloaded,
                            "the model queue is full; retry shortly",
                        ));
                    }
                    // Wait for one of ours to finish, then try again.
                    break;
                }
                Err(SubmitError::Closed(_)) => {
                    return Err(ApiError::new(
                        ErrorKind::ShuttingDown,
                        "the server is shutting down",
                    ));
                }
            }
        }
        let Some((group, spans, receiver)) = pending.pop_front() else {
            break;
        };
        reservation.done(
            ranges[group.clone()]
                .iter()
                .map(|(start, end)| end.saturating_sub(*start) as f64 / rate)
                .sum(),
        );
        let outcome = receiver
            .await
            .map_err(|_| ApiError::new(ErrorKind::Internal, "a model worker dropped a job"))?;
        core.metrics.record(|h| {
            record_duration(&mut h.model_latency_us, outcome.model_time);
            record_duration(&mut h.queue_wait_us, outcome.queue_wait);
        });
        let transcript = outcome.result.map_err(|error| {
            core.metrics.count(|c| c.model_job_failures += 1);
            match error {
                EngineError::InvalidAudio(message) => {
                    ApiError::new(ErrorKind::InvalidAudio, message)
                }
                EngineError::Failed(message) => ApiError::new(ErrorKind::Internal, message),
                EngineError::Unavailable(message) => ApiError::new(ErrorKind::Overloaded, message)
                    .retry_after(crate::engine::remote::RETRY_AFTER_S),
            }
        })?;
        if group.len() == 1 {
            // A segment alone in its job: the engine's answer as it is.
            transcripts[group.start] = Some(transcript);
        } else {
            for (index, part) in
                group
                    .clone()
                    .zip(window::unpack(transcript, &spans, pcm.sample_rate))
            {
                transcripts[index] = Some(part);
            }
        }
        // Groups finish in order: this one's segments are the next ones.
        for index in group {
            let Some(transcript) = transcripts[index].take() else {
                continue;
            };
            if transcript.text.is_empty() {
                continue;
            }
            let (start, end) = ranges[index];
            let segment = segment_text(transcript, start, end, rate);
            let flow = on_segment(&segment);
            segments.push(segment);
            if flow.is_break() {
                break 'jobs;
            }
        }
    }

    Ok(BatchTranscript {
        duration: super::round_ms(pcm.duration_s()),
        segments,
    })
}

/// A segment's transcript in stream time, from the engine's answer for
/// samples `[start, end)`.
fn segment_text(transcript: Transcript, start: u64, end: u64, rate: f64) -> SegmentText {
    let offset = start as f64 / rate;
    SegmentText {
        start: super::round_ms(offset),
        end: super::round_ms(end as f64 / rate),
        text: transcript.text,
        words: transcript
            .words
            .into_iter()
            .map(|word| Word {
                word: word.word,
                start: super::round_ms(offset + word.start),
                end: super::round_ms(offset + word.end),
            })
            .collect(),
    }
}

/// The request's segments grouped into engine windows: consecutive
/// segments packed up to `batch_window_seconds` (docs/MODELS.md), or each
/// segment alone when packing is off (0, the mock's default).
fn batch_windows(core: &CoreContext, audio: &PreparedAudio) -> Vec<Range<usize>> {
    let seconds = core.shared.settings.model.batch_window_seconds;
    let rate = audio.pcm.sample_rate;
    let window_max = (seconds * f64::from(rate)) as usize;
    let gap = batch_window_gap(rate);
    if window_max <= gap {
        return (0..audio.segments.len())
            .map(|index| index..index + 1)
            .collect();
    }
    let lengths: Vec<usize> = audio
        .segments
        .iter()
        .map(|&(start, end)| usize::try_from(end.saturating_sub(start)).unwrap_or(usize::MAX))
        .collect();
    // Windows shorter than Whisper's context floor cost about as much as the
    // floor: do not split below it to fill the workers.
    let window_min = (BATCH_WINDOW_SECONDS_MIN * f64::from(rate)) as usize;
    let workers = core.shared.settings.model.workers;
    window::plan(&lengths, window_max, window_min, gap, workers)
}

/// The silence between two segments packed in one window: enough for
/// Whisper to end one sentence before the next starts.
fn batch_window_gap(sample_rate: u32) -> usize {
    (u64::from(sample_rate) * BATCH_WINDOW_GAP_MS / 1000) as usize
}

/// Parse a `vad_mode` value.
///
/// # Errors
/// `400` unless it is 0, 1, 2 or 3.
pub fn parse_vad_mode(value: &str) -> Result<u8, ApiError> {
    match value.parse::<u8>() {
        Ok(mode) if mode <= 3 => Ok(mode),
        _ => Err(ApiError::bad_request(format!(
            "vad_mode must be 0, 1, 2 or 3, got {value:?}"
        ))),
    }
}

/// Parse a boolean query value (`true`/`false`/`1`/`0`; empty means true).
///
/// # Errors
/// `400` for anything else.
pub fn parse_bool(name: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "" | "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ApiError::bad_request(format!(
            "{name} must be true or false, got {value:?}"
        ))),
    }
}

/// Check a `language` hint: a short tag of letters and dashes.
///
/// # Errors
/// `400` for anything else.
pub fn parse_language(value: &str) -> Result<String, ApiError> {
    if crate::model::is_language_tag(value) {
        Ok(value.to_string())
    } else {
        Err(ApiError::bad_request(format!("invalid language {value:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_type_parameters() {
        let media = MediaType::parse("Audio/L16; rate=8000; channels=\"1\"");
        assert_eq!(media.essence, "audio/l16");
        assert_eq!(media.param("rate"), Some("8000"));
        assert_eq!(media.param("channels"), Some("1"));
        assert_eq!(media.param("missing"), None);
    }

    #[test]
    fn only_audio_that_decodes_in_proportion_is_decoded_on_the_core() {
        let wav = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/hello.wav"
        ))
        .expect("fixture");
        assert!(decodes_in_proportion(Some("audio/wav"), &wav));
        assert!(decodes_in_proportion(Some("audio/pcm"), b"\0\0"));
        assert!(decodes_in_proportion(Some("Audio/L16; rate=8000"), b"\0\0"));
        let mut compressed_in_riff = wav.clone();
        compressed_in_riff[20..22].copy_from_slice(&0x0055u16.to_le_bytes()); // MP3
        assert!(!decodes_in_proportion(
            Some("audio/wav"),
            &compressed_in_riff
        ));
        assert!(!decodes_in_proportion(Some("audio/wav"), b"fLaC\0\0\0\x22"));
        assert!(!decodes_in_proportion(
            Some("audio/flac"),
            b"fLaC\0\0\0\x22"
        ));
        assert!(!decodes_in_proportion(
            Some("multipart/form-data; boundary=x"),
            &wav
        ));
        assert!(!decodes_in_proportion(None, b"RIFF"));
    }

    #[test]
    fn unknown_media_types_are_415_and_empty_bodies_422() {
        let error = decode_body(Some("text/plain"), b"hello", None).expect_err("refused");
        assert_eq!(error.kind, ErrorKind::UnsupportedMediaType);
        let error = decode_body(Some("audio/wav"), b"", None).expect_err("refused");
        assert_eq!(error.kind, ErrorKind::InvalidAudio);
        let error = decode_body(Some("audio/pcm; channels=2"), b"abcd", None).expect_err("refused");
        assert_eq!(error.kind, ErrorKind::UnsupportedMediaType);
        let error = decode_body(Some("audio/pcm; rate=fast"), b"abcd", None).expect_err("refused");
        assert_eq!(error.kind, ErrorKind::BadRequest);
    }

    #[test]
    fn query_values() {
        assert_eq!(parse_vad_mode("3"), Ok(3));
        assert!(parse_vad_mode("4").is_err());
        assert!(parse_vad_mode("-1").is_err());
        assert_eq!(parse_bool("words", ""), Ok(true));
        assert_eq!(parse_bool("words", "false"), Ok(false));
        assert!(parse_bool("words", "yes please").is_err());
        assert!(parse_language("en-US").is_ok());
        assert!(parse_language("en;drop").is_err());
    }
}
