//! The real engine: OpenAI's Whisper through whisper.cpp (`whisper-rs`),
//! built with the `whisper` feature.
//!
//! The weights (a ggml file, see docs/MODELS.md) are loaded once into a
//! [`WhisperContext`] shared by every worker; each worker owns one
//! `WhisperState` (about 190 MB of buffers for tiny.en), made once and reused
//! for every job. Decoding is greedy with no temperature fallback, so the
//! same samples always give the same text, and no context is carried from
//! one job to the next (jobs of different sessions share a worker).
//!
//! Whisper encodes a 30 s window whatever the clip's length; for clips up to
//! 30 s the encoder's context is sized to the clip, but no smaller than
//! 15.36 s ([`audio_ctx_for`]): about 4 times faster for the short segments
//! VAD produces, without the repetitions a tighter context causes. Clips shorter
//! than whisper.cpp's one-second minimum are padded with silence; word times
//! are clamped to the real audio.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};

use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
};

use super::pool::JobKind;
pub use super::text::ran_away;
use super::text::{pieces_from_token_bytes, strip_tags, words_from_pieces, Piece};
use super::{
    EngineError, ModelWorker, SpeechModel, Task, TimedText, TranscribeOptions, Transcript,
};

/// The sample rate Whisper takes.
pub const SAMPLE_RATE: u32 = 16_000;

/// Longest clip encoded with a context sized to it; longer audio is encoded
/// in whisper.cpp's own 30 s windows.
const WINDOW_SECONDS: f64 = 30.0;

/// Encoder positions in a full 30 s window (one per 20 ms).
const FULL_AUDIO_CTX: usize = 1500;

/// Encoder positions added after the clip: the decoder predicts the end of
/// speech better with some silence after it.
const AUDIO_CTX_MARGIN: usize = 64;

/// The smallest encoder context used (15.36 s). Measured on the flite set
/// (loadtests/RESULTS.md): a context sized tightly to a 2–3 s clip makes
/// tiny.en repeat its sentence until the token limit; from 768 positions
/// up it does not, at a quarter of the full window's cost.
pub const MIN_AUDIO_CTX: usize = 768;

/// The encoder context floor for live jobs (a stream's finals and
/// interims): 7.68 s, half the batch floor's cost on a short segment. A
/// live job whose answer looks like a repetition ([`ran_away`]) runs again
/// on [`MIN_AUDIO_CTX`]; docs/MODELS.md has the measured trade-off.
pub const LIVE_MIN_AUDIO_CTX: usize = 384;

/// Tokens per second of audio a live job may decode, plus a constant, so a
/// repetition stops long before Whisper's 224-token limit.
const LIVE_TOKENS_PER_SECOND_MAX: f64 = 10.0;
const LIVE_TOKENS_EXTRA: i32 = 16;

/// Shortest clip whisper.cpp transcribes (it refuses under 1 s); shorter
/// clips are padded with silence to this.
const MIN_SAMPLES: usize = SAMPLE_RATE as usize * 11 / 10;

/// A loaded Whisper model.
pub struct WhisperModel {
    context: Arc<WhisperContext>,
    threads: usize,
    multilingual: bool,
    min_audio_ctx: usize,
    live_min_audio_ctx: usize,
    path: PathBuf,
}

impl WhisperModel {
    /// Load the ggml weights at `path`; each job then runs on `threads`
    /// threads of its worker.
    ///
    /// # Errors
    /// When the file cannot be read or is not a model whisper.cpp accepts.
    pub fn load(path: &Path, threads: usize) -> Result<WhisperModel, EngineError> {
        static LOGGING: Once = Once::new();
        // whisper.cpp and ggml print to stderr unless hooked; the hooks send
        // their lines to `tracing` instead.
        LOGGING.call_once(whisper_rs::install_logging_hooks);
        let mut parameters = WhisperContextParameters::default();
        parameters.use_gpu(false);
        let context = WhisperContext::new_with_params(path, parameters).map_err(|error| {
            EngineError::Failed(format!(
                "whisper.cpp could not load {}: {error}",
                path.display()
            ))
        })?;
        let multilingual = context.is_multilingual();
        Ok(WhisperModel {
            context: Arc::new(context),
            threads: threads.max(1),
            multilingual,
            min_audio_ctx: MIN_AUDIO_CTX,
            live_min_audio_ctx: LIVE_MIN_AUDIO_CTX,
            path: path.to_path_buf(),
        })
    }

    /// The same model with another floor for the encoder context (positions
    /// of 20 ms, clamped to 1..=1500; 1500 is always the full window). For
    /// measuring the trade-off (`benches/whisper.rs`); the server uses
    /// [`MIN_AUDIO_CTX`].
    pub fn with_min_audio_ctx(mut self, positions: usize) -> WhisperModel {
        self.min_audio_ctx = positions.clamp(1, FULL_AUDIO_CTX);
        self
    }

    /// The same model with another floor for live jobs (a stream's finals
    /// and interims); the server uses [`LIVE_MIN_AUDIO_CTX`]. A floor at or
    /// above the batch floor turns the live policy off.
    pub fn with_live_min_audio_ctx(mut self, positions: usize) -> WhisperModel {
        self.live_min_audio_ctx = positions.clamp(1, FULL_AUDIO_CTX);
        self
    }

    /// Whether the model speaks more than English.
    pub fn is_multilingual(&self) -> bool {
        self.multilingual
    }

    /// The file the weights came from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl SpeechModel for WhisperModel {
    fn name(&self) -> &'static str {
        "whisper"
    }

    fn is_multilingual(&self) -> bool {
        self.multilingual
    }

    fn new_worker(&self) -> Result<Box<dyn ModelWorker>, EngineError> {
        let state = self.context.create_state().map_err(|error| {
            EngineError::Failed(format!(
                "whisper.cpp could not make a decoder state: {error}"
            ))
        })?;
        Ok(Box::new(WhisperWorker {
            state,
            context: Arc::clone(&self.context),
            eot: self.context.token_eot(),
            threads: self.threads,
            multilingual: self.multilingual,
            min_audio_ctx: self.min_audio_ctx,
            live_min_audio_ctx: self.live_min_audio_ctx,
        }))
    }
}

/// One worker's decoder state.
struct WhisperWorker {
    state: WhisperState,
    /// The shared weights, for tokenizing prompts.
    context: Arc<WhisperContext>,
    /// Token ids from end-of-text up are special (timestamps, task, language).
    eot: i32,
    threads: usize,
    multilingual: bool,
    min_audio_ctx: usize,
    live_min_audio_ctx: usize,
}

impl ModelWorker for WhisperWorker {
    fn transcribe(
        &mut self,
        samples: &[i16],
        sample_rate: u32,
        options: &TranscribeOptions,
    ) -> Result<Transcript, EngineError> {
        let audio = WhisperAudio::new(samples, sample_rate)?;
        self.run(&audio, options, self.min_audio_ctx, 0)
    }

    fn transcribe_job(
        &mut self,
        samples: &[i16],
        sample_rate: u32,
        options: &TranscribeOptions,
        kind: JobKind,
    ) -> Result<Transcript, EngineError> {
        let audio = WhisperAudio::new(samples, sample_rate)?;
        if kind == JobKind::Batch || self.live_min_audio_ctx >= self.min_audio_ctx {
            return self.run(&audio, options, self.min_audio_ctx, 0);
        }
        // A live job first runs on the smaller context, its tokens bounded so
        // that a runaway repetition stops early; one that ran away is run
        // again as a batch job would be.
        let tokens_max = live_tokens_max(audio.duration);
        let live = self.run(&audio, options, self.live_min_audio_ctx, tokens_max)?;
        if !ran_away(&live, audio.duration) {
            return Ok(live);
        }
        tracing::debug!(
            seconds = audio.duration,
            words = live.words.len(),
            "a live job ran away on the small context; running it on the full floor"
        );
        self.run(&audio, options, self.min_audio_ctx, 0)
    }
}

/// A job's audio as Whisper takes it: 16 kHz f32, padded to whisper.cpp's
/// minimum, with the real (unpadded) duration.
struct WhisperAudio {
    samples: Vec<f32>,
    duration: f64,
}

impl WhisperAudio {
    fn new(samples: &[i16], sample_rate: u32) -> Result<WhisperAudio, EngineError> {
        if sample_rate == 0 {
            return Err(EngineError::InvalidAudio("sample rate 0".into()));
        }
        let mut samples = to_whisper_audio(samples, sample_rate);
        let duration = samples.len() as f64 / f64::from(SAMPLE_RATE);
        if samples.len() < MIN_SAMPLES {
            samples.resize(MIN_SAMPLES, 0.0);
        }
        Ok(WhisperAudio { samples, duration })
    }
}

/// The most tokens a live job may decode: far above what speech of that
/// length holds (about 4 tokens a second), so only a repetition reaches it.
fn live_tokens_max(duration: f64) -> i32 {
    (LIVE_TOKENS_PER_SECOND_MAX * duration).ceil() as i32 + LIVE_TOKENS_EXTRA
}

impl WhisperWorker {
    /// Run whisper.cpp on `audio` with an encoder context of at least
    /// `ctx_floor` positions and at most `tokens_max` tokens per segment
    /// (0: no bound).
    fn run(
        &mut self,
        audio: &WhisperAudio,
        options: &TranscribeOptions,
        ctx_floor: usize,
        tokens_max: i32,
    ) -> Result<Transcript, EngineError> {
        let language = self.language(options);
        let prompt_tokens = self.prompt_tokens(options);
        let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        params.set_n_threads(i32::try_from(self.threads).unwrap_or(1));
        params.set_language(Some(&language));
        params.set_no_context(true);
        params.set_token_timestamps(true);
        params.set_suppress_blank(true);
        params.set_suppress_nst(true);
        params.set_temperature(options.temperature.unwrap_or(0.0));
        params.set_temperature_inc(0.0);
        params.set_translate(self.multilingual && options.task == Task::Translate);
        if !prompt_tokens.is_empty() {
            params.set_tokens(&prompt_tokens);
        }
        params.set_max_tokens(tokens_max);
        params.set_print_special(false);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_timestamps(false);
        let padded_seconds = audio.samples.len() as f64 / f64::from(SAMPLE_RATE);
        let audio_ctx = audio_ctx_for(padded_seconds, ctx_floor);
        params.set_audio_ctx(i32::try_from(audio_ctx).unwrap_or(0));
        self.state
            .full(params, &audio.samples)
            .map_err(|error| EngineError::Failed(format!("whisper.cpp: {error}")))?;
        Ok(self.collect(audio.duration))
    }

    /// The prompt as tokens (whisper.cpp keeps the last half context of
    /// them). `FullParams::set_initial_prompt` would leak its copy of the
    /// text on every job; tokens are borrowed instead. Each token covers at
    /// least one byte, so the byte length bounds the count (whisper-rs
    /// mishandles a count over its bound).
    fn prompt_tokens(&self, options: &TranscribeOptions) -> Vec<std::ffi::c_int> {
        let Some(prompt) = options
            .prompt
            .as_deref()
            .filter(|prompt| !prompt.is_empty())
        else {
            return Vec::new();
        };
        self.context
            .tokenize(prompt, prompt.len() + 1)
            .unwrap_or_default()
    }

    /// The language to decode in: English-only models always speak `en`;
    /// a multilingual one takes the hint's primary subtag (`pt-BR` → `pt`)
    /// when whisper knows it, and detects the language otherwise.
    fn language(&self, options: &TranscribeOptions) -> String {
        if !self.multilingual {
            return "en".to_string();
        }
        options
            .language
            .as_deref()
            .and_then(|tag| tag.split(['-', '_']).next())
            .map(str::to_ascii_lowercase)
            .filter(|primary| whisper_rs::get_lang_id(primary).is_some())
            .unwrap_or_else(|| "auto".to_string())
    }

    /// The text and words of the last run, for `duration` seconds of real
    /// (unpadded) audio.
    fn collect(&self, duration: f64) -> Transcript {
        let mut texts = Vec::new();
        let mut tokens = Vec::new();
        for segment in self.state.as_iter() {
            if let Ok(text) = segment.to_str_lossy() {
                texts.push(text.into_owned());
            }
            for index in 0..segment.n_tokens() {
                let Some(token) = segment.get_token(index) else {
                    continue;
                };
                if token.token_id() >= self.eot {
                    continue;
                }
                let data = token.token_data();
                let Ok(bytes) = token.to_bytes() else {
                    continue;
                };
                // whisper.cpp's times are in centiseconds.
                tokens.push((
                    bytes.to_vec(),
                    data.t0 as f64 / 100.0,
                    data.t1 as f64 / 100.0,
                ));
            }
        }
        let joined = pieces_from_token_bytes(tokens);
        let pieces: Vec<Piece<'_>> = joined
            .iter()
            .map(|(text, start, end)| Piece {
                text,
                start: *start,
                end: *end,
            })
            .collect();
        Transcript {
            text: strip_tags(&texts.join(" ")),
            words: words_from_pieces(&pieces, duration),
            pieces: joined
                .into_iter()
                .map(|(text, start, end)| TimedText { text, start, end })
                .collect(),
        }
    }
}

/// Mono PCM16 at any rate as Whisper's input: f32 in `-1.0..1.0` at 16 kHz.
fn to_whisper_audio(samples: &[i16], sample_rate: u32) -> Vec<f32> {
    let audio: Vec<f32> = samples.iter().map(|&s| f32::from(s) / 32768.0).collect();
    if sample_rate == SAMPLE_RATE {
        audio
    } else {
        crate::audio::resample::resample_f32(&audio, sample_rate, SAMPLE_RATE)
    }
}

/// The encoder context for a clip of `seconds`: one position per 20 ms plus
/// a margin, rounded up to a multiple of 64, at least `floor` (the server's
/// is [`MIN_AUDIO_CTX`]); the full window (0 = whisper's default) for clips
/// longer than 30 s.
pub fn audio_ctx_for(seconds: f64, floor: usize) -> usize {
    if seconds.is_nan() || seconds > WINDOW_SECONDS {
        return 0;
    }
    let positions = (seconds * 50.0).ceil() as usize + AUDIO_CTX_MARGIN;
    positions
        .div_ceil(64)
        .saturating_mul(64)
        .clamp(floor.min(FULL_AUDIO_CTX), FULL_AUDIO_CTX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audio_context_follows_the_clip_up_to_the_full_window() {
        assert_eq!(audio_ctx_for(1.1, MIN_AUDIO_CTX), MIN_AUDIO_CTX);
        assert_eq!(audio_ctx_for(5.0, MIN_AUDIO_CTX), MIN_AUDIO_CTX);
        assert_eq!(audio_ctx_for(15.0, MIN_AUDIO_CTX), 832);
        assert_eq!(audio_ctx_for(20.0, MIN_AUDIO_CTX), 1088);
        assert_eq!(audio_ctx_for(29.5, MIN_AUDIO_CTX), FULL_AUDIO_CTX);
        assert_eq!(audio_ctx_for(30.0, MIN_AUDIO_CTX), FULL_AUDIO_CTX);
        assert_eq!(audio_ctx_for(30.01, MIN_AUDIO_CTX), 0);
        assert_eq!(audio_ctx_for(f64::NAN, MIN_AUDIO_CTX), 0);
        assert_eq!(audio_ctx_for(1.1, 1), 128);
        assert_eq!(audio_ctx_for(5.0, 1), 320);
        assert_eq!(audio_ctx_for(5.0, 5000), FULL_AUDIO_CTX);
    }

    fn words(text: &str) -> Transcript {
        let words = text
            .split_whitespace()
            .map(|word| crate::model::Word {
                word: word.to_string(),
                start: 0.0,
                end: 0.0,
            })
            .collect();
        Transcript {
            text: text.to_string(),
            words,
            pieces: Vec::new(),
        }
    }

    #[test]
    fn runaway_answers_are_told_from_speech() {
        let speech = words("The train till London leaves from platform two");
        assert!(!ran_away(&speech, 3.5));
        // Too many words for the time: 17 words in 1.5 s.
        let fast = words("one two three four five six seven eight nine ten a b c d e f g");
        assert!(ran_away(&fast, 1.5));
        assert!(!ran_away(&fast, 3.0));
        // The same three words three times, at any speed.
        let looped = words("send me the report send me the report send me the report");
        assert!(ran_away(&looped, 30.0));
        assert!(!ran_away(
            &words("send me the report send me the report"),
            30.0
        ));
    }

    #[test]
    fn live_jobs_may_decode_far_more_tokens_than_speech_holds() {
        assert_eq!(live_tokens_max(0.0), LIVE_TOKENS_EXTRA);
        assert_eq!(live_tokens_max(2.05), 21 + LIVE_TOKENS_EXTRA);
        // Whisper's own limit is 224 per segment; a 15 s segment stays under it.
        assert!(live_tokens_max(15.0) <= 224 - 16 + LIVE_TOKENS_EXTRA);
    }

    #[test]
    fn audio_is_scaled_and_resampled_to_16_khz() {
        let audio = to_whisper_audio(&[0, 16384, -32768], SAMPLE_RATE);
        assert_eq!(audio, [0.0, 0.5, -1.0]);
        let resampled = to_whisper_audio(&vec![1000; 8000], 8000);
        assert!(
            (resampled.len() as i64 - 16000).abs() <= 2,
            "{}",
            resampled.len()
        );
    }
}
