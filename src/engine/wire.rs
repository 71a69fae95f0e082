//! How a job and its reply travel: a job is one stream entry of flat
//! fields (the samples as raw little-endian PCM16, the options as JSON), a
//! reply is one entry with a single JSON field `r`.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::model::pool::JobKind;
use crate::model::{EngineError, Task, TimedText, TranscribeOptions, Transcript, Word};

/// The longest audio a job may carry (10 minutes at 48 kHz), checked before
/// allocating.
pub const JOB_SAMPLES_MAX: usize = 48_000 * 600;

/// One job as it crosses Redis.
#[derive(Debug, Clone, PartialEq)]
pub struct WireJob {
    /// `{front end node}/{sequence}`: unique, the key replies are matched by.
    pub id: String,
    /// The reply stream of the submitting front end.
    pub reply_to: String,
    pub kind: JobKind,
    pub sample_rate: u32,
    /// Unix ms after which an interim is not worth computing.
    pub deadline_ms: u64,
    pub samples: Vec<i16>,
    pub options: TranscribeOptions,
}

#[derive(Serialize, Deserialize, Default)]
struct WireOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(default)]
    translate: bool,
}

fn kind_name(kind: JobKind) -> &'static str {
    match kind {
        JobKind::Final => "final",
        JobKind::Batch => "batch",
        JobKind::Interim => "interim",
    }
}

impl WireJob {
    /// The entry's fields, for `XADD`.
    pub fn fields(&self) -> Vec<(&'static str, Vec<u8>)> {
        let options = WireOptions {
            language: self.options.language.clone(),
            prompt: self.options.prompt.as_deref().map(str::to_string),
            temperature: self.options.temperature,
            translate: self.options.task == Task::Translate,
        };
        let options = serde_json::to_vec(&options).unwrap_or_else(|_| b"{}".to_vec());
        let mut pcm = Vec::with_capacity(self.samples.len() * 2);
        for sample in &self.samples {
            pcm.extend_from_slice(&sample.to_le_bytes());
        }
        vec![
            ("id", self.id.as_bytes().to_vec()),
            ("reply", self.reply_to.as_bytes().to_vec()),
            ("kind", kind_name(self.kind).as_bytes().to_vec()),
            ("rate", self.sample_rate.to_string().into_bytes()),
            ("deadline", self.deadline_ms.to_string().into_bytes()),
            ("options", options),
            ("pcm", pcm),
        ]
    }

    /// A job from an entry's fields.
    ///
    /// # Errors
    /// A message naming the missing or malformed field.
    pub fn parse(fields: &HashMap<String, Vec<u8>>) -> Result<WireJob, String> {
        let text = |name: &str| -> Result<String, String> {
            let bytes = fields.get(name).ok_or_else(|| format!("no field {name}"))?;
            String::from_utf8(bytes.clone()).map_err(|_| format!("field {name} is not UTF-8"))
        };
        let number = |name: &str| -> Result<u64, String> {
            text(name)?
                .parse()
                .map_err(|_| format!("field {name} is not a number"))
        };
        let kind = match text("kind")?.as_str() {
            "final" => JobKind::Final,
            "batch" => JobKind::Batch,
            "interim" => JobKind::Interim,
            other => return Err(format!("unknown job kind {other:?}")),
        };
        let pcm = fields.get("pcm").ok_or("no field pcm")?;
        if pcm.len() % 2 != 0 || pcm.len() / 2 > JOB_SAMPLES_MAX {
            return Err(format!("pcm of {} bytes", pcm.len()));
        }
        let samples = pcm
            .chunks_exact(2)
            .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
            .collect();
        let options: WireOptions = match fields.get("options") {
            Some(bytes) => serde_json::from_slice(bytes).map_err(|e| format!("options: {e}"))?,
            None => WireOptions::default(),
        };
        let sample_rate =
            u32::try_from(number("rate")?).map_err(|_| "rate out of range".to_string())?;
        Ok(WireJob {
            id: text("id")?,
            reply_to: text("reply")?,
            kind,
            sample_rate,
            deadline_ms: number("deadline")?,
            samples,
            options: TranscribeOptions {
                language: options.language,
                prompt: options.prompt.map(Arc::from),
                temperature: options.temperature,
                task: if options.translate {
                    Task::Translate
                } else {
                    Task::Transcribe
                },
            },
        })
    }
}

/// What the engine made of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum WireOutcome {
    Ok {
        text: String,
        /// `(word, start, end)`.
        words: Vec<(String, f64, f64)>,
        /// `(text, start, end)`.
        #[serde(default)]
        pieces: Vec<(String, f64, f64)>,
    },
    InvalidAudio {
        message: String,
    },
    Failed {
        message: String,
    },
    /// An interim the engine did not compute (its deadline passed or its
    /// session moved on).
    Dropped {
        reason: String,
    },
}

/// One reply, the JSON of the entry's `r` field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireReply {
    /// The job's id.
    pub id: String,
    /// The engine node that computed it.
    pub engine: String,
    /// Microseconds the engine spent on it.
    pub model_us: u64,
    pub outcome: WireOutcome,
}

impl WireOutcome {
    pub fn from_result(result: Result<Transcript, EngineError>) -> WireOutcome {
        match result {
            Ok(transcript) => WireOutcome::Ok {
                text: transcript.text,
                words: transcript
                    .words
                    .into_iter()
                    .map(|word| (word.word, word.start, word.end))
                    .collect(),
                pieces: transcript
                    .pieces
                    .into_iter()
                    .map(|piece| (piece.text, piece.start, piece.end))
                    .collect(),
            },
            Err(EngineError::InvalidAudio(message)) => WireOutcome::InvalidAudio { message },
            Err(EngineError::Failed(message) | EngineError::Unavailable(message)) => {
                WireOutcome::Failed { message }
            }
        }
    }

    pub fn into_result(self) -> Result<Transcript, EngineError> {
        match self {
            WireOutcome::Ok {
                text,
                words,
                pieces,
            } => Ok(Transcript {
                text,
                words: words
                    .into_iter()
                    .map(|(word, start, end)| Word { word, start, end })
                    .collect(),
                pieces: pieces
                    .into_iter()
                    .map(|(text, start, end)| TimedText { text, start, end })
                    .collect(),
            }),
            WireOutcome::InvalidAudio { message } => Err(EngineError::InvalidAudio(message)),
            WireOutcome::Failed { message } => Err(EngineError::Failed(message)),
            WireOutcome::Dropped { reason } => {
                Err(EngineError::Failed(format!("interim dropped: {reason}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_map(fields: Vec<(&'static str, Vec<u8>)>) -> HashMap<String, Vec<u8>> {
        fields
            .into_iter()
            .map(|(name, value)| (name.to_string(), value))
            .collect()
    }

    #[test]
    fn a_job_survives_the_trip_with_its_samples_and_options() {
        let job = WireJob {
            id: "fe-1/7".into(),
            reply_to: "ts:engine:reply:fe-1".into(),
            kind: JobKind::Interim,
            sample_rate: 16_000,
            deadline_ms: 1_700_000_000_123,
            samples: vec![0, -1, i16::MAX, i16::MIN, 300],
            options: TranscribeOptions {
                language: Some("de".into()),
                prompt: Some(Arc::from("Grüße")),
                temperature: Some(0.5),
                task: Task::Translate,
            },
        };
        assert_eq!(WireJob::parse(&as_map(job.fields())), Ok(job));
    }

    #[test]
    fn malformed_jobs_are_refused_with_the_field_named() {
        let job = WireJob {
            id: "a/1".into(),
            reply_to: "r".into(),
            kind: JobKind::Final,
            sample_rate: 8_000,
            deadline_ms: 0,
            samples: vec![1, 2],
            options: TranscribeOptions::default(),
        };
        let mut odd = as_map(job.fields());
        odd.insert("pcm".into(), vec![1, 2, 3]);
        assert!(WireJob::parse(&odd).unwrap_err().contains("pcm"));
        let mut kind = as_map(job.fields());
        kind.insert("kind".into(), b"other".to_vec());
        assert!(WireJob::parse(&kind).unwrap_err().contains("kind"));
        let mut missing = as_map(job.fields());
        missing.remove("rate");
        assert!(WireJob::parse(&missing).unwrap_err().contains("rate"));
    }

    #[test]
    fn a_reply_carries_the_transcript_or_the_error_kind() {
        let transcript = Transcript {
            text: "alpha bravo".into(),
            words: vec![Word {
                word: "alpha".into(),
                start: 0.1,
                end: 0.4,
            }],
            pieces: vec![],
        };
        let reply = WireReply {
            id: "a/1".into(),
            engine: "e1".into(),
            model_us: 12,
            outcome: WireOutcome::from_result(Ok(transcript.clone())),
        };
        let text = serde_json::to_string(&reply).expect("serialises");
        let back: WireReply = serde_json::from_str(&text).expect("parses");
        assert_eq!(back.outcome.into_result(), Ok(transcript));
        let invalid = WireOutcome::from_result(Err(EngineError::InvalidAudio("rate".into())));
        assert_eq!(
            invalid.into_result(),
            Err(EngineError::InvalidAudio("rate".into()))
        );
    }
}
