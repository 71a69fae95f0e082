//! The real engine through CTranslate2: OpenAI's Whisper as faster-whisper
//! runs it, in process, built with the `ct2` feature: our C shim
//! (native/ct2_shim.cpp, [`super::ct2_sys`]) over the prebuilt
//! libctranslate2 of the PyPI wheel (Intel MKL inside), which
//! scripts/fetch-ct2.sh fetches.
//!
//! The model is a CTranslate2 directory (`model.bin`, `config.json`,
//! `vocabulary.txt`), loaded as it is: the same files faster-whisper loads
//! (`scripts/fetch-ct2.sh` extracts them). The weights are loaded once and
//! shared by one CTranslate2 replica per model worker, each running its jobs
//! on its own thread with `threads` OpenMP threads; the compute type (`int8`
//! by default) is chosen at load.
//!
//! A job's audio is cut into Whisper's 30 s windows (a batch window or a
//! stream's segment is one), each turned into log-mel features
//! ([`super::mel`]) sized to the audio with a floor (a shorter encoder input
//! costs less, as whisper.cpp's `audio_ctx`), encoded once, decoded greedily
//! with timestamp tokens, and aligned (cross-attention and dynamic time
//! warping, as faster-whisper's word timestamps) to time every token. The
//! tokens' bytes and times become [`Transcript::pieces`], from which words
//! and packed windows are built exactly as for whisper.cpp.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::ct2_sys::{self, Encoded, Replica};
use super::mel::{LogMel, HOP, SAMPLE_RATE, WINDOW_FRAMES, WINDOW_SAMPLES};
use super::pool::JobKind;
use super::text::{pieces_from_token_bytes, ran_away, strip_tags, words_from_pieces, Piece};
use super::{EngineError, ModelWorker, SpeechModel, TimedText, TranscribeOptions, Transcript};

/// The files a CTranslate2 Whisper directory must hold.
pub const MODEL_FILES: [&str; 3] = ["model.bin", "config.json", "vocabulary.txt"];

/// Encoder positions per second (one per two mel frames: 20 ms).
const POSITIONS_PER_SECOND: f64 = 50.0;

/// Mel frames added after the audio (1.28 s): the decoder places the end of
/// speech better with some silence after it.
const FRAMES_MARGIN: usize = 128;

/// The smallest encoder input for a batch job, in mel frames (15.36 s, the
/// floor whisper.cpp's engine uses too): a tighter window makes tiny.en
/// repeat itself on short clips.
pub const MIN_FRAMES: usize = 1536;

/// faster-whisper's rule for a window that holds no speech: the model says
/// "no speech" with more than this probability ...
const NO_SPEECH_THRESHOLD: f32 = 0.6;
/// ... and its text has an average log probability below this.
const LOG_PROB_THRESHOLD: f32 = -1.0;

/// Whisper's decoding limit (its text context).
const MAX_LENGTH: usize = 448;

/// The token ids decoding needs, and every token's bytes.
struct Vocabulary {
    /// Token id → its text as raw bytes (GPT-2's byte alphabet decoded);
    /// special tokens (`<|…|>`) as written.
    bytes: Vec<Vec<u8>>,
    /// Token strings as `vocabulary.txt` writes them.
    names: Vec<String>,
    end_of_text: usize,
    start_of_transcript: usize,
    transcribe: Option<usize>,
    /// `<|startofprev|>`: what precedes a prompt's text tokens.
    start_of_prev: Option<usize>,
    /// Text token bytes → id, for turning a prompt into tokens.
    by_bytes: std::collections::HashMap<Vec<u8>, usize>,
    /// The longest text token, in bytes.
    longest: usize,
}

impl Vocabulary {
    fn parse(text: &str) -> Result<Vocabulary, String> {
        let names: Vec<String> = text.lines().map(str::to_string).collect();
        let find = |name: &str| names.iter().position(|token| token == name);
        let end_of_text = find("<|endoftext|>").ok_or("no <|endoftext|> token")?;
        let start_of_transcript =
            find("<|startoftranscript|>").ok_or("no <|startoftranscript|> token")?;
        let bytes: Vec<Vec<u8>> = names
            .iter()
            .map(|name| {
                if name.starts_with("<|") && name.ends_with("|>") {
                    return name.as_bytes().to_vec();
                }
                name.chars()
                    .map(|ch| ct2ggml::vocab::char_to_byte(ch).unwrap_or(b'?'))
                    .collect()
            })
            .collect();
        let by_bytes: std::collections::HashMap<Vec<u8>, usize> = bytes
            .iter()
            .enumerate()
            .take(end_of_text)
            .map(|(id, token)| (token.clone(), id))
            .collect();
        let longest = by_bytes.keys().map(Vec::len).max().unwrap_or(1);
        Ok(Vocabulary {
            bytes,
            end_of_text,
            start_of_transcript,
            transcribe: find("<|transcribe|>"),
            start_of_prev: find("<|startofprev|>"),
            by_bytes,
            longest,
            names,
        })
    }

    /// `text` as text tokens, each the longest token that matches where the
    /// last one ended. Not always the split Whisper's BPE merges would make,
    /// but the same bytes in valid tokens, which is what a prompt needs: it
    /// conditions the decoder, it is never decoded. A byte no token starts
    /// with (none in Whisper's byte-level vocabulary) is skipped.
    fn encode_text(&self, text: &str) -> Vec<usize> {
        let bytes = text.as_bytes();
        let mut ids = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let longest = self.longest.min(bytes.len() - at);
            let found = (1..=longest)
                .rev()
                .find_map(|len| Some((len, *self.by_bytes.get(&bytes[at..at + len])?)));
            match found {
                Some((len, id)) => {
                    ids.push(id);
                    at += len;
                }
                None => at += 1,
            }
        }
        ids
    }

    /// The tokens that carry a request's prompt before the start of
    /// transcript: `<|startofprev|>` and the prompt's last tokens (at most
    /// half the text context, as Whisper's own decoding keeps), with the
    /// leading space Whisper's prompts have.
    fn previous_text(&self, prompt: &str) -> Vec<usize> {
        let (Some(start_of_prev), text) = (self.start_of_prev, prompt.trim()) else {
            return Vec::new();
        };
        if text.is_empty() {
            return Vec::new();
        }
        let tokens = self.encode_text(&format!(" {text}"));
        let keep = MAX_LENGTH / 2 - 1;
        let mut previous = vec![start_of_prev];
        previous.extend_from_slice(&tokens[tokens.len().saturating_sub(keep)..]);
        previous
    }

    /// Whether `id` is text (not end-of-text, a timestamp or a task token).
    fn is_text(&self, id: usize) -> bool {
        id < self.end_of_text
    }

    fn id(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|token| token == name)
    }
}

/// Whether `dir` looks like a CTranslate2 Whisper model directory: the
/// files exist, `model.bin` starts with a CTranslate2 header naming
/// `WhisperSpec`, and the vocabulary has Whisper's special tokens. Reads a
/// few hundred bytes and the vocabulary; the server runs it at start-up.
///
/// # Errors
/// A message naming the file and what is wrong with it.
pub fn check_model_dir(dir: &Path) -> Result<(), String> {
    if !dir.is_dir() {
        return Err(format!(
            "{} is not a directory (a CTranslate2 Whisper model: run scripts/fetch-model.sh)",
            dir.display()
        ));
    }
    for name in MODEL_FILES {
        let path = dir.join(name);
        if !path.is_file() {
            return Err(format!(
                "{} is missing (a CTranslate2 Whisper model has {}; run scripts/fetch-model.sh)",
                path.display(),
                MODEL_FILES.join(", ")
            ));
        }
    }
    let model_bin = dir.join("model.bin");
    let mut head = [0u8; 256];
    let read = std::fs::File::open(&model_bin)
        .and_then(|mut file| read_up_to(&mut file, &mut head))
        .map_err(|error| format!("{}: {error}", model_bin.display()))?;
    spec_name(&head[..read])
        .and_then(|spec| {
            if spec == "WhisperSpec" {
                Ok(())
            } else {
                Err(format!("a {spec} model, not Whisper"))
            }
        })
        .map_err(|message| format!("{}: {message}", model_bin.display()))?;
    let vocabulary_path = dir.join("vocabulary.txt");
    let vocabulary = std::fs::read_to_string(&vocabulary_path)
        .map_err(|error| format!("{}: {error}", vocabulary_path.display()))?;
    Vocabulary::parse(&vocabulary)
        .map(|_| ())
        .map_err(|message| format!("{}: {message}", vocabulary_path.display()))
}

fn read_up_to(file: &mut std::fs::File, buffer: &mut [u8]) -> std::io::Result<usize> {
    use std::io::Read;
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// The model specification a CTranslate2 `model.bin` header names: `u32`
/// version (5 or 6 for current models), then a string (`u16` length, bytes,
/// possibly NUL-terminated).
fn spec_name(head: &[u8]) -> Result<String, String> {
    let version = head
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or("too short for a CTranslate2 model")?;
    if !(5..=6).contains(&version) {
        return Err(format!(
            "not a CTranslate2 model of a known version (version field {version})"
        ));
    }
    let length = head
        .get(4..6)
        .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
        .ok_or("too short for a CTranslate2 model")?;
    let name = head
        .get(6..6 + length)
        .ok_or("the model name runs past the header")?;
    let name = name.strip_suffix(&[0]).unwrap_or(name);
    std::str::from_utf8(name)
        .map(str::to_string)
        .map_err(|_| "the model name is not text".to_string())
}

/// What every worker shares: the weights and the tables.
struct Shared {
    model: ct2_sys::Model,
    vocabulary: Vocabulary,
    mel: LogMel,
    multilingual: bool,
    threads: usize,
    min_frames: usize,
    /// The encoder input floor of a stream's jobs (finals, interims), in mel
    /// frames. A live answer that looks like a repetition runs again on
    /// [`MIN_FRAMES`] (the same rule as whisper.cpp's engine).
    live_min_frames: usize,
}

/// A loaded CTranslate2 Whisper model.
pub struct Ct2Model {
    shared: Arc<Shared>,
    dir: PathBuf,
}

impl Ct2Model {
    /// Load the model directory `dir` with weights in `compute`; each
    /// worker runs on `threads` threads, a stream's jobs on an encoder input
    /// of at least `live_min_positions` (20 ms each).
    ///
    /// # Errors
    /// When the directory is not a model CTranslate2 loads.
    pub fn load(
        dir: &Path,
        threads: usize,
        compute: crate::config::ComputeType,
        live_min_positions: usize,
    ) -> Result<Ct2Model, EngineError> {
        check_model_dir(dir).map_err(EngineError::Failed)?;
        let vocabulary = std::fs::read_to_string(dir.join("vocabulary.txt"))
            .map_err(|error| EngineError::Failed(format!("{}: {error}", dir.display())))
            .and_then(|text| Vocabulary::parse(&text).map_err(EngineError::Failed))?;
        let model = ct2_sys::Model::load(dir, compute.as_str()).map_err(|error| {
            EngineError::Failed(format!("could not load {}: {error}", dir.display()))
        })?;
        // One replica to read the model's shape (it is dropped here).
        let probe = model.replica().map_err(EngineError::Failed)?;
        let multilingual = probe.is_multilingual();
        let mel = LogMel::new(probe.n_mels().max(1));
        drop(probe);
        Ok(Ct2Model {
            shared: Arc::new(Shared {
                model,
                vocabulary,
                mel,
                multilingual,
                threads: threads.max(1),
                min_frames: MIN_FRAMES,
                live_min_frames: live_min_positions.saturating_mul(2).clamp(2, WINDOW_FRAMES),
            }),
            dir: dir.to_path_buf(),
        })
    }

    /// The directory the model came from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the model speaks more than English.
    pub fn is_multilingual(&self) -> bool {
        self.shared.multilingual
    }
}

impl SpeechModel for Ct2Model {
    fn name(&self) -> &'static str {
        "ct2"
    }

    fn new_worker(&self) -> Result<Box<dyn ModelWorker>, EngineError> {
        let replica = self.shared.model.replica().map_err(EngineError::Failed)?;
        Ok(Box::new(Ct2Worker {
            shared: Arc::clone(&self.shared),
            replica,
            features: Vec::new(),
        }))
    }
}

/// One model worker: its own replica over the shared weights, run on the
/// worker's thread, and a reusable feature buffer.
struct Ct2Worker {
    shared: Arc<Shared>,
    replica: Replica,
    features: Vec<f32>,
}

impl ModelWorker for Ct2Worker {
    fn transcribe(
        &mut self,
        samples: &[i16],
        sample_rate: u32,
        options: &TranscribeOptions,
    ) -> Result<Transcript, EngineError> {
        let audio = to_audio(samples, sample_rate)?;
        self.run(&audio, options, self.shared.min_frames, MAX_LENGTH)
    }

    fn transcribe_job(
        &mut self,
        samples: &[i16],
        sample_rate: u32,
        options: &TranscribeOptions,
        kind: JobKind,
    ) -> Result<Transcript, EngineError> {
        let audio = to_audio(samples, sample_rate)?;
        let (floor, live_floor) = (self.shared.min_frames, self.shared.live_min_frames);
        if kind == JobKind::Batch || live_floor >= floor {
            return self.run(&audio, options, floor, MAX_LENGTH);
        }
        let duration = audio.len() as f64 / SAMPLE_RATE as f64;
        let live = self.run(&audio, options, live_floor, live_max_length(duration))?;
        if !ran_away(&live, duration) {
            return Ok(live);
        }
        tracing::debug!(
            seconds = duration,
            words = live.words.len(),
            "a live job ran away on the small window; running it on the full floor"
        );
        self.run(&audio, options, floor, MAX_LENGTH)
    }
}

/// The most tokens a live job may decode (prompt included): far above what
/// speech of that length holds (about 4 a second), so only a repetition
/// reaches it.
fn live_max_length(duration: f64) -> usize {
    ((10.0 * duration).ceil() as usize + 20).min(MAX_LENGTH)
}

/// Mono PCM16 at any rate as Whisper's input: f32 at 16 kHz.
fn to_audio(samples: &[i16], sample_rate: u32) -> Result<Vec<f32>, EngineError> {
    if sample_rate == 0 {
        return Err(EngineError::InvalidAudio("sample rate 0".into()));
    }
    let audio: Vec<f32> = samples.iter().map(|&s| f32::from(s) / 32768.0).collect();
    Ok(if sample_rate as usize == SAMPLE_RATE {
        audio
    } else {
        crate::audio::resample::resample_f32(&audio, sample_rate, SAMPLE_RATE as u32)
    })
}

/// The encoder input for `samples` of audio: its frames plus a margin,
/// rounded up to 128 frames, at least `floor`, at most the full window.
pub fn frames_for(samples: usize, floor: usize) -> usize {
    let frames = samples.div_ceil(HOP) + FRAMES_MARGIN;
    frames
        .div_ceil(128)
        .saturating_mul(128)
        .clamp(floor.min(WINDOW_FRAMES), WINDOW_FRAMES)
}

/// A token's place in time: seconds from the start of its window.
type Span = (f64, f64);

/// The start time of every text token (and of the end-of-text after them)
/// from the alignment's (token, position) path, as faster-whisper reads it:
/// a token starts where the path first reaches it. Tokens the path skips
/// take the time of the next one that has a time.
fn token_starts(path: &[(i64, i64)], tokens: usize) -> Vec<f64> {
    let mut starts: Vec<Option<f64>> = vec![None; tokens + 1];
    for &(token, position) in path {
        if let Ok(index) = usize::try_from(token) {
            if let Some(slot) = starts.get_mut(index) {
                if slot.is_none() {
                    *slot = Some(position.max(0) as f64 / POSITIONS_PER_SECOND);
                }
            }
        }
    }
    let mut out = vec![0.0; tokens + 1];
    let mut next = starts.iter().rev().flatten().next().copied().unwrap_or(0.0);
    for index in (0..=tokens).rev() {
        if let Some(start) = starts[index] {
            next = start;
        }
        out[index] = next;
    }
    // Keep them ordered (the path is monotonic, the fill may not be).
    for index in 1..out.len() {
        if out[index] < out[index - 1] {
            out[index] = out[index - 1];
        }
    }
    out
}

/// Spans of `tokens` tokens spread evenly over `seconds`: the times used
/// when an alignment fails.
fn even_spans(tokens: usize, seconds: f64) -> Vec<Span> {
    let step = seconds / tokens.max(1) as f64;
    (0..tokens)
        .map(|index| (index as f64 * step, (index + 1) as f64 * step))
        .collect()
}

/// faster-whisper's test for a window without speech: "no speech" is likely
/// and the text is improbable. `score` is CTranslate2's length-normalised
/// log probability of `length` tokens.
fn is_silence(no_speech: f32, score: f32, length: usize) -> bool {
    let average = score * length as f32 / (length + 1) as f32;
    no_speech > NO_SPEECH_THRESHOLD && average <= LOG_PROB_THRESHOLD
}

impl Ct2Worker {
    /// Transcribe `audio` (16 kHz) in 30 s windows, each encoded on at
    /// least `floor` frames, decoding at most `max_length` tokens each.
    fn run(
        &mut self,
        audio: &[f32],
        options: &TranscribeOptions,
        floor: usize,
        max_length: usize,
    ) -> Result<Transcript, EngineError> {
        let duration = audio.len() as f64 / SAMPLE_RATE as f64;
        if audio.is_empty() {
            return Ok(Transcript::default());
        }
        let shared = Arc::clone(&self.shared);
        let windows: Vec<&[f32]> = audio.chunks(WINDOW_SAMPLES).collect();
        // One encoder input size for the batch: the longest window's.
        let frames = windows
            .iter()
            .map(|window| frames_for(window.len(), floor))
            .max()
            .unwrap_or(floor);
        let n_mels = shared.mel.n_mels();
        self.features.clear();
        for window in &windows {
            shared.mel.compute_into(window, frames, &mut self.features);
        }
        // OpenMP's thread count is per calling thread: set it on ours.
        ct2_sys::set_num_threads(shared.threads);
        let encoded = self
            .replica
            .encode(&self.features, windows.len(), n_mels, frames)
            .map_err(EngineError::Failed)?;
        let prompt = self.prompt(&encoded, options)?;
        // Greedy by default; a temperature samples from the whole
        // distribution, as faster-whisper does.
        let temperature = options.temperature.unwrap_or(0.0);
        // The request's prompt goes before the start of transcript for
        // decoding only: timing the tokens needs just the start sequence.
        let decoder_prompt = match options.prompt.as_deref() {
            Some(text) => {
                let mut tokens = shared.vocabulary.previous_text(text);
                tokens.extend_from_slice(&prompt);
                tokens
            }
            None => prompt.clone(),
        };
        let generation = ct2_sys::Options {
            beam_size: 1,
            // A prompt's tokens may count in the length: give them room,
            // within Whisper's text context.
            max_length: (max_length + decoder_prompt.len() - prompt.len()).min(MAX_LENGTH),
            sampling_temperature: if temperature > 0.0 { temperature } else { 1.0 },
            sampling_topk: if temperature > 0.0 { 0 } else { 1 },
        };
        let results = self
            .replica
            .generate(&encoded, &decoder_prompt, &generation)
            .map_err(EngineError::Failed)?;
        // The text tokens of each window, empty for a window judged silent.
        let vocabulary = &shared.vocabulary;
        let texts: Vec<Vec<usize>> = results
            .into_iter()
            .map(|result| {
                if is_silence(result.no_speech, result.score, result.ids.len()) {
                    return Vec::new();
                }
                result
                    .ids
                    .into_iter()
                    .filter(|&id| vocabulary.is_text(id))
                    .collect()
            })
            .collect();
        let content_frames: Vec<usize> = windows
            .iter()
            .map(|window| window.len().div_ceil(HOP).min(frames))
            .collect();
        let alignments = if texts.iter().all(Vec::is_empty) {
            Vec::new()
        } else {
            self.replica
                .align(&encoded, &prompt, &texts, &content_frames, 7)
                .unwrap_or_else(|error| {
                    tracing::warn!(%error, "CTranslate2 could not time the tokens; spreading them evenly");
                    Vec::new()
                })
        };
        let mut tokens = Vec::new();
        let mut text = Vec::new();
        for (index, ids) in texts.iter().enumerate() {
            if ids.is_empty() {
                continue;
            }
            let offset = (index * WINDOW_SAMPLES) as f64 / SAMPLE_RATE as f64;
            let seconds = windows[index].len() as f64 / SAMPLE_RATE as f64;
            let spans = match alignments.get(index) {
                Some(path) if !path.is_empty() => {
                    let starts = token_starts(path, ids.len());
                    starts.windows(2).map(|pair| (pair[0], pair[1])).collect()
                }
                _ => even_spans(ids.len(), seconds),
            };
            let mut bytes = Vec::new();
            for (&id, &(start, end)) in ids.iter().zip(&spans) {
                let token = vocabulary.bytes.get(id).cloned().unwrap_or_default();
                bytes.extend_from_slice(&token);
                tokens.push((
                    token,
                    (start.min(seconds) + offset),
                    (end.min(seconds) + offset),
                ));
            }
            text.push(String::from_utf8_lossy(&bytes).into_owned());
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
        Ok(Transcript {
            text: strip_tags(&text.join(" ")),
            words: words_from_pieces(&pieces, duration),
            pieces: joined
                .into_iter()
                .map(|(text, start, end)| TimedText { text, start, end })
                .collect(),
        })
    }

    /// The decoder's prompt: start of transcript, then for a multilingual
    /// model the language (the hint's primary subtag when the model knows
    /// it, else detected on the first window) and the task. Timestamps are
    /// on (no `<|notimestamps|>`), as faster-whisper decodes by default.
    fn prompt(
        &mut self,
        encoded: &Encoded,
        options: &TranscribeOptions,
    ) -> Result<Vec<usize>, EngineError> {
        let shared = Arc::clone(&self.shared);
        let vocabulary = &shared.vocabulary;
        let mut prompt = vec![vocabulary.start_of_transcript];
        if !shared.multilingual {
            return Ok(prompt);
        }
        let hinted = options
            .language
            .as_deref()
            .and_then(|tag| tag.split(['-', '_']).next())
            .and_then(|primary| vocabulary.id(&format!("<|{}|>", primary.to_ascii_lowercase())));
        let language = match hinted {
            Some(id) => Some(id),
            None => self
                .replica
                .detect_language(encoded)
                .ok()
                .and_then(|token| vocabulary.id(&token)),
        };
        prompt.extend(language.or_else(|| vocabulary.id("<|en|>")));
        let task = match options.task {
            super::Task::Transcribe => vocabulary.transcribe,
            super::Task::Translate => vocabulary.id("<|translate|>"),
        };
        prompt.extend(task);
        Ok(prompt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_encoder_input_follows_the_audio_between_the_floor_and_the_window() {
        assert_eq!(frames_for(0, MIN_FRAMES), MIN_FRAMES);
        assert_eq!(frames_for(16_000, MIN_FRAMES), MIN_FRAMES);
        assert_eq!(frames_for(16_000, 1), 256);
        assert_eq!(frames_for(20 * 16_000, MIN_FRAMES), 2176);
        assert_eq!(frames_for(28 * 16_000, MIN_FRAMES), 2944);
        assert_eq!(frames_for(29 * 16_000, MIN_FRAMES), WINDOW_FRAMES);
        assert_eq!(frames_for(WINDOW_SAMPLES, MIN_FRAMES), WINDOW_FRAMES);
        assert_eq!(frames_for(16_000, 5000), WINDOW_FRAMES);
    }

    #[test]
    fn token_times_come_from_where_the_path_first_reaches_each_token() {
        // Three tokens and the end of text; token 1 is never reached.
        let path = [(0, 10), (0, 11), (2, 20), (2, 21), (3, 40)];
        let starts = token_starts(&path, 3);
        assert_eq!(starts, vec![0.2, 0.4, 0.4, 0.8]);
        // No path at all: everything at 0, in order.
        assert_eq!(token_starts(&[], 2), vec![0.0, 0.0, 0.0]);
        // Out-of-range and negative entries are ignored.
        assert_eq!(token_starts(&[(-1, 5), (9, 5), (0, -3)], 1), vec![0.0, 0.0]);
    }

    #[test]
    fn failed_alignments_spread_tokens_over_the_window() {
        assert_eq!(even_spans(2, 1.0), vec![(0.0, 0.5), (0.5, 1.0)]);
        assert!(even_spans(0, 1.0).is_empty());
    }

    #[test]
    fn silence_needs_both_no_speech_and_an_improbable_text() {
        assert!(is_silence(0.9, -2.0, 3));
        assert!(!is_silence(0.9, -0.2, 3));
        assert!(!is_silence(0.3, -2.0, 3));
    }

    #[test]
    fn the_vocabulary_gives_bytes_and_special_ids() {
        let text = "!\nĠhello\nÃ©\n<|endoftext|>\n<|startoftranscript|>\n<|en|>\n<|transcribe|>\n";
        let vocabulary = Vocabulary::parse(text).expect("vocabulary");
        assert_eq!(vocabulary.bytes[1], b" hello");
        assert_eq!(vocabulary.bytes[2], "é".as_bytes());
        assert_eq!(vocabulary.end_of_text, 3);
        assert_eq!(vocabulary.start_of_transcript, 4);
        assert_eq!(vocabulary.transcribe, Some(6));
        assert!(vocabulary.is_text(2) && !vocabulary.is_text(3));
        assert!(Vocabulary::parse("a\nb\n").is_err());
    }

    #[test]
    fn a_prompt_becomes_the_longest_matching_tokens_after_start_of_prev() {
        let text = "Ġ\nh\ne\nl\no\nĠhel\nĠhello\nlo\nÃ©\n<|endoftext|>\n<|startoftranscript|>\n<|startofprev|>\n";
        let vocabulary = Vocabulary::parse(text).expect("vocabulary");
        // " hello" is one token; " helo" is " hel" then "o"; "é" is its
        // two bytes' token; a byte no token starts with is skipped.
        assert_eq!(vocabulary.encode_text(" hello"), [6]);
        assert_eq!(vocabulary.encode_text(" helo"), [5, 4]);
        assert_eq!(vocabulary.encode_text("é lo"), [8, 0, 7]);
        assert_eq!(vocabulary.encode_text("x"), Vec::<usize>::new());
        let decoded: Vec<u8> = vocabulary
            .encode_text(" hello hel lo")
            .iter()
            .flat_map(|&id| vocabulary.bytes[id].clone())
            .collect();
        assert_eq!(decoded, b" hello hel lo");
        // A prompt: start of previous text, then " " + the trimmed text.
        assert_eq!(vocabulary.previous_text("  hello "), [11, 6]);
        assert!(vocabulary.previous_text("   ").is_empty());
        // At most half the text context of it, the end kept.
        let long = "hello ".repeat(400);
        let previous = vocabulary.previous_text(&long);
        assert_eq!(previous.len(), MAX_LENGTH / 2);
        assert_eq!(previous[0], 11);
    }

    #[test]
    fn the_header_check_names_the_model_kind() {
        let mut head = 6u32.to_le_bytes().to_vec();
        head.extend_from_slice(&12u16.to_le_bytes());
        head.extend_from_slice(b"WhisperSpec\0");
        assert_eq!(spec_name(&head).as_deref(), Ok("WhisperSpec"));
        let mut other = 5u32.to_le_bytes().to_vec();
        other.extend_from_slice(&11u16.to_le_bytes());
        other.extend_from_slice(b"TransformerSpec"[..11].as_ref());
        assert_eq!(spec_name(&other).as_deref(), Ok("Transformer"));
        assert!(spec_name(&[1, 0, 0, 0]).is_err());
        assert!(spec_name(&[6, 0]).is_err());
        let mut short = 6u32.to_le_bytes().to_vec();
        short.extend_from_slice(&50u16.to_le_bytes());
        assert!(spec_name(&short).is_err());
    }
}
