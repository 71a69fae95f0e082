//! The speech engine and the pool of threads that runs it.
//!
//! Cores never call the engine: they hand a [`pool::Job`] to the bounded queue
//! of the [`pool::ModelPool`] with `try_send` and await the outcome, which the
//! worker sends back to the submitting core. This module owns the engine trait
//! ([`SpeechModel`] loaded once and shared, [`ModelWorker`] one per worker
//! thread), the deterministic [`mock::MockModel`], and the pool.

pub mod capacity;
#[cfg(feature = "ct2")]
pub mod ct2;
#[cfg(feature = "ct2")]
mod ct2_sys;
mod loading;
pub mod mel;
pub mod mock;
pub mod pool;
pub mod text;
#[cfg(feature = "whisper")]
pub mod whisper;
pub mod window;

use std::fmt;
use std::sync::Arc;

use crate::config::{ModelChoice, ModelSettings};
use pool::ModelLoader;

/// What the caller asks of the engine beyond the audio.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TranscribeOptions {
    /// A language hint (e.g. `en`), passed through to the engine.
    pub language: Option<String>,
    /// Text that comes before the audio (Whisper's initial prompt): names,
    /// spellings, the style of the transcript. `None`: no prompt. Shared:
    /// every job of a stream carries the same one.
    pub prompt: Option<Arc<str>>,
    /// Sampling temperature in `[0, 1]`; `None` is the engine's default
    /// (greedy, 0).
    pub temperature: Option<f32>,
    /// Transcribe in the spoken language, or translate into English.
    pub task: Task,
}

/// What the engine makes of the speech.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Task {
    /// Text in the language spoken.
    #[default]
    Transcribe,
    /// English text, whatever the language spoken (multilingual models only:
    /// [`SpeechModel::is_multilingual`]).
    Translate,
}

/// Whether `value` looks like a language hint (`en`, `en-US`, `zh_Hant`): 1 to
/// 16 ASCII letters, dashes and underscores. Batch and streaming requests
/// both check their `language` with it.
pub fn is_language_tag(value: &str) -> bool {
    (1..=16).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphabetic() || b == b'-' || b == b'_')
}

/// One recognised word. Times are seconds from the start of the audio handed
/// to the engine (the segment), not of the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    pub word: String,
    pub start: f64,
    pub end: f64,
}

/// A run of output text (a sub-word token, whole characters) with its times
/// in seconds from the start of the audio handed to the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedText {
    pub text: String,
    pub start: f64,
    pub end: f64,
}

/// The engine's answer for one piece of audio.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Transcript {
    pub text: String,
    pub words: Vec<Word>,
    /// The text as timed sub-word pieces, tags and punctuation included, for
    /// engines that have them (Whisper; the mock leaves it empty). Packed
    /// windows ([`window::unpack`]) split the text by these times.
    pub pieces: Vec<TimedText>,
}

/// Why the engine could not transcribe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineError {
    /// The audio cannot be used by this engine (wrong rate, too short, …).
    InvalidAudio(String),
    /// The engine failed (or panicked) on this job.
    Failed(String),
    /// No engine could take the job in time (a remote engine tier with no
    /// live engine node): answered `overloaded` with a `Retry-After`.
    Unavailable(String),
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::InvalidAudio(message) => write!(f, "invalid audio: {message}"),
            EngineError::Failed(message) => write!(f, "engine failed: {message}"),
            EngineError::Unavailable(message) => write!(f, "no engine available: {message}"),
        }
    }
}

impl std::error::Error for EngineError {}

/// A loaded model, shared by every worker thread (the weights are loaded once).
pub trait SpeechModel: Send + Sync + 'static {
    /// The name reported in `/v1/health` and in responses (`"mock"`).
    fn name(&self) -> &'static str;

    /// Whether the model speaks more than English, and so can translate
    /// ([`Task::Translate`]). English-only engines (the mock, `*.en`
    /// Whisper models) keep the default.
    fn is_multilingual(&self) -> bool {
        false
    }

    /// The per-thread state of one worker (a real engine's decoder state,
    /// which is large and not shareable). Called once per worker thread.
    ///
    /// # Errors
    /// When the state cannot be created; the server then refuses to start.
    fn new_worker(&self) -> Result<Box<dyn ModelWorker>, EngineError>;
}

/// One worker's engine state. Lives on a model-worker thread.
pub trait ModelWorker: Send {
    /// Transcribe mono PCM16 samples at `sample_rate`.
    ///
    /// # Errors
    /// [`EngineError`] for audio the engine cannot use or an engine failure.
    fn transcribe(
        &mut self,
        samples: &[i16],
        sample_rate: u32,
        options: &TranscribeOptions,
    ) -> Result<Transcript, EngineError>;

    /// Transcribe a job of `kind`. A stream's finals and interims are short
    /// and a client waits on each, so an engine may spend less on them than
    /// on a batch window (Whisper: a smaller encoder context, see
    /// docs/MODELS.md). The default runs [`ModelWorker::transcribe`].
    ///
    /// # Errors
    /// As [`ModelWorker::transcribe`].
    fn transcribe_job(
        &mut self,
        samples: &[i16],
        sample_rate: u32,
        options: &TranscribeOptions,
        kind: pool::JobKind,
    ) -> Result<Transcript, EngineError> {
        let _ = kind;
        self.transcribe(samples, sample_rate, options)
    }

    /// [`ModelWorker::transcribe_job`] with a way to learn that nobody waits
    /// for the answer any more (`cancelled()` turns true when the session
    /// moved on or left). A local engine cannot stop mid-job and keeps the
    /// default; the remote engine withdraws the job from its stream, so an
    /// engine node drops it unrun.
    ///
    /// # Errors
    /// As [`ModelWorker::transcribe`].
    fn transcribe_cancellable(
        &mut self,
        samples: &[i16],
        sample_rate: u32,
        options: &TranscribeOptions,
        kind: pool::JobKind,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Transcript, EngineError> {
        let _ = cancelled;
        self.transcribe_job(samples, sample_rate, options, kind)
    }
}

/// What makes the engine `settings` choose, run by the pool's loader thread.
pub fn loader(settings: &ModelSettings) -> ModelLoader {
    match &settings.model {
        ModelChoice::Mock => {
            let mock = mock::MockModel {
                latency: settings.mock_latency,
                rtf: settings.mock_rtf,
            };
            let load = settings.mock_load;
            Box::new(move || {
                std::thread::sleep(load);
                Ok(Arc::new(mock) as Arc<dyn SpeechModel>)
            })
        }
        #[cfg(feature = "whisper")]
        ModelChoice::Whisper {
            path,
            threads,
            live_min_audio_ctx,
        } => {
            let (path, threads, live) = (path.clone(), *threads, *live_min_audio_ctx);
            Box::new(move || {
                whisper::WhisperModel::load(&path, threads).map(|model| {
                    Arc::new(model.with_live_min_audio_ctx(live)) as Arc<dyn SpeechModel>
                })
            })
        }
        #[cfg(not(feature = "whisper"))]
        ModelChoice::Whisper { .. } => Box::new(|| {
            Err(EngineError::Failed(
                "this build has no whisper engine (build with --features whisper)".into(),
            ))
        }),
        #[cfg(feature = "ct2")]
        ModelChoice::Ct2 {
            dir,
            threads,
            compute,
            live_min_audio_ctx,
        } => {
            let (dir, threads, compute, live) =
                (dir.clone(), *threads, *compute, *live_min_audio_ctx);
            Box::new(move || {
                ct2::Ct2Model::load(&dir, threads, compute, live)
                    .map(|model| Arc::new(model) as Arc<dyn SpeechModel>)
            })
        }
        #[cfg(not(feature = "ct2"))]
        ModelChoice::Ct2 { .. } => Box::new(|| {
            Err(EngineError::Failed(
                "this build has no CTranslate2 engine (build with --features ct2)".into(),
            ))
        }),
    }
}
