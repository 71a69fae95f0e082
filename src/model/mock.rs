//! The deterministic mock engine.
//!
//! The same samples always give the same words: a 64-bit hash of the
//! samples seeds a small PRNG that picks words from a fixed vocabulary, about
//! [`WORDS_PER_SECOND`] words per second of audio, each placed inside its own
//! slot of the audio. To let load tests model a real engine, each call sleeps
//! `latency + rtf × audio seconds` on the worker thread.

use std::time::Duration;

use super::{EngineError, ModelWorker, SpeechModel, Task, TranscribeOptions, Transcript, Word};

/// The vocabulary the mock speaks.
pub const VOCABULARY: [&str; 26] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett",
    "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
    "uniform", "victor", "whiskey", "xray", "yankee", "zulu",
];

/// The speaking rate the mock pretends to hear.
pub const WORDS_PER_SECOND: f64 = 2.5;

/// In builds with the `fault-injection` feature (tests only), a job with this
/// language hint makes the engine panic, to prove the worker is replaced and
/// only that job fails.
#[cfg(feature = "fault-injection")]
pub const FAULT_INJECTION_LANGUAGE: &str = "xx-panic";

/// In builds with the `fault-injection` feature (tests only), a job with this
/// language hint waits on its worker until the file named by the
/// environment variable [`FAULT_HOLD_PATH_VARIABLE`] exists (at most
/// [`FAULT_HOLD_MAX`]), so a test can keep finals "still being computed" for
/// exactly as long as it needs (a drain, a flushing delete) without timing.
#[cfg(feature = "fault-injection")]
pub const FAULT_HOLD_LANGUAGE: &str = "xx-hold";

/// See [`FAULT_HOLD_LANGUAGE`].
#[cfg(feature = "fault-injection")]
pub const FAULT_HOLD_PATH_VARIABLE: &str = "TRANSCRIBE_FAULT_HOLD_PATH";

/// The longest a held job waits for its release file.
#[cfg(feature = "fault-injection")]
pub const FAULT_HOLD_MAX: Duration = Duration::from_secs(120);

/// Wait for the release file of a held job (see [`FAULT_HOLD_LANGUAGE`]).
#[cfg(feature = "fault-injection")]
fn fault_hold() {
    let Some(path) = std::env::var_os(FAULT_HOLD_PATH_VARIABLE) else {
        return;
    };
    let deadline = std::time::Instant::now() + FAULT_HOLD_MAX;
    while !std::path::Path::new(&path).exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The mock model: configuration only, no weights.
#[derive(Debug, Clone, Copy)]
pub struct MockModel {
    /// Fixed simulated inference time per job.
    pub latency: Duration,
    /// Simulated inference time per second of audio.
    pub rtf: f64,
}

impl SpeechModel for MockModel {
    fn name(&self) -> &'static str {
        "mock"
    }

    fn new_worker(&self) -> Result<Box<dyn ModelWorker>, EngineError> {
        Ok(Box::new(*self))
    }
}

impl ModelWorker for MockModel {
    fn transcribe(
        &mut self,
        samples: &[i16],
        sample_rate: u32,
        options: &TranscribeOptions,
    ) -> Result<Transcript, EngineError> {
        #[cfg(feature = "fault-injection")]
        if options.language.as_deref() == Some(FAULT_INJECTION_LANGUAGE) {
            panic!("injected engine fault (test build)");
        }
        #[cfg(feature = "fault-injection")]
        if options.language.as_deref() == Some(FAULT_HOLD_LANGUAGE) {
            fault_hold();
        }
        if sample_rate == 0 {
            return Err(EngineError::InvalidAudio("sample rate 0".into()));
        }
        let audio_s = samples.len() as f64 / f64::from(sample_rate);
        let simulated = self.latency + Duration::from_secs_f64(self.rtf * audio_s);
        if !simulated.is_zero() {
            std::thread::sleep(simulated);
        }
        if options.task == Task::Translate {
            return Err(EngineError::InvalidAudio(
                "the mock engine is English-only: it cannot translate".into(),
            ));
        }
        Ok(mock_transcript_seeded(
            samples,
            sample_rate,
            options_seed(options),
        ))
    }
}

/// What of the options changes the mock's words, so that tests can see
/// they reached the engine: a prompt, a non-zero temperature or a language
/// other than English picks other words; no prompt, temperature 0 and
/// English (or no hint) change nothing.
fn options_seed(options: &TranscribeOptions) -> u64 {
    let mut seed = 0;
    if let Some(language) = options.language.as_deref() {
        let primary = language.split(['-', '_']).next().unwrap_or_default();
        if !primary.eq_ignore_ascii_case("en") {
            seed ^= fnv1a(language.as_bytes()).rotate_left(16);
        }
    }
    if let Some(prompt) = options
        .prompt
        .as_deref()
        .filter(|prompt| !prompt.is_empty())
    {
        seed ^= fnv1a(prompt.as_bytes());
    }
    if let Some(temperature) = options.temperature.filter(|t| *t > 0.0) {
        seed ^= u64::from(temperature.to_bits()).rotate_left(32);
    }
    seed
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The mock's answer for `samples`, without the simulated delay.
pub fn mock_transcript(samples: &[i16], sample_rate: u32) -> Transcript {
    mock_transcript_seeded(samples, sample_rate, 0)
}

/// [`mock_transcript`] with `seed` mixed into the samples' hash.
fn mock_transcript_seeded(samples: &[i16], sample_rate: u32, seed: u64) -> Transcript {
    let audio_s = samples.len() as f64 / f64::from(sample_rate.max(1));
    let count = (audio_s * WORDS_PER_SECOND).round() as usize;
    if count == 0 {
        return Transcript::default();
    }
    let mut rng = XorShift64::new(hash_samples(samples) ^ seed);
    let slot_s = audio_s / count as f64;
    let mut words = Vec::with_capacity(count);
    for index in 0..count {
        let word = VOCABULARY[(rng.next() % VOCABULARY.len() as u64) as usize];
        let slot_start = slot_s * index as f64;
        // Each word fills the middle 80 % of its slot, rounded to milliseconds.
        let start = round_ms(slot_start + slot_s * 0.1);
        let end = round_ms(slot_start + slot_s * 0.9).max(start);
        words.push(Word {
            word: word.to_string(),
            start,
            end,
        });
    }
    let text = words
        .iter()
        .map(|word| word.word.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    Transcript {
        text,
        words,
        pieces: Vec::new(),
    }
}

fn round_ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

/// A 64-bit hash of the samples, four at a time: FNV-1a's offset basis and
/// prime over 64-bit words. Hashing byte by byte made the mock the largest
/// cost of an unpaced stream load test (a third of the server's CPU, in
/// `perf`), though a real engine would dwarf it.
fn hash_samples(samples: &[i16]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut words = samples.chunks_exact(4);
    for word in words.by_ref() {
        let packed = u64::from(word[0] as u16)
            | u64::from(word[1] as u16) << 16
            | u64::from(word[2] as u16) << 32
            | u64::from(word[3] as u16) << 48;
        hash = (hash ^ packed)
            .wrapping_mul(0x0000_0100_0000_01b3)
            .rotate_left(23);
    }
    for sample in words.remainder() {
        hash = (hash ^ u64::from(*sample as u16)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash ^ samples.len() as u64
}

/// Marsaglia's xorshift64: tiny, deterministic, good enough to pick words.
struct XorShift64(u64);

impl XorShift64 {
    fn new(seed: u64) -> Self {
        // Zero is the one state xorshift never leaves.
        XorShift64(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(len: usize, seed: i16) -> Vec<i16> {
        (0..len)
            .map(|i| ((i as i32 * 37 + i32::from(seed)) % 2000) as i16)
            .collect()
    }

    #[test]
    fn same_samples_same_words() {
        let samples = tone(32_000, 1);
        assert_eq!(
            mock_transcript(&samples, 16_000),
            mock_transcript(&samples, 16_000)
        );
    }

    #[test]
    fn different_samples_usually_differ() {
        let a = mock_transcript(&tone(32_000, 1), 16_000);
        let b = mock_transcript(&tone(32_000, 2), 16_000);
        assert_ne!(a.text, b.text);
    }

    #[test]
    fn about_two_and_a_half_words_per_second_inside_the_audio() {
        let transcript = mock_transcript(&tone(16_000 * 4, 3), 16_000);
        assert_eq!(transcript.words.len(), 10);
        let mut previous_end = 0.0;
        for word in &transcript.words {
            assert!(VOCABULARY.contains(&word.word.as_str()));
            assert!(word.start >= previous_end && word.start < word.end && word.end <= 4.0);
            previous_end = word.end;
        }
        assert_eq!(transcript.text.split(' ').count(), 10);
    }

    #[test]
    fn prompt_temperature_and_language_reach_the_words() {
        let samples = tone(16_000 * 4, 5);
        let mut worker = MockModel {
            latency: Duration::ZERO,
            rtf: 0.0,
        };
        let mut run = |options: TranscribeOptions| {
            worker
                .transcribe(&samples, 16_000, &options)
                .expect("transcribed")
                .text
        };
        let plain = run(TranscribeOptions::default());
        let english = run(TranscribeOptions {
            language: Some("en".into()),
            temperature: Some(0.0),
            prompt: Some("".into()),
            ..TranscribeOptions::default()
        });
        assert_eq!(plain, english);
        for options in [
            TranscribeOptions {
                prompt: Some("Zyxel".into()),
                ..TranscribeOptions::default()
            },
            TranscribeOptions {
                temperature: Some(0.4),
                ..TranscribeOptions::default()
            },
            TranscribeOptions {
                language: Some("fr".into()),
                ..TranscribeOptions::default()
            },
        ] {
            assert_ne!(run(options.clone()), plain, "{options:?}");
        }
        let refused = worker.transcribe(
            &samples,
            16_000,
            &TranscribeOptions {
                task: Task::Translate,
                ..TranscribeOptions::default()
            },
        );
        assert!(matches!(refused, Err(EngineError::InvalidAudio(_))));
    }

    #[test]
    fn very_short_audio_has_no_words() {
        assert_eq!(
            mock_transcript(&tone(1_000, 0), 16_000),
            Transcript::default()
        );
        assert_eq!(mock_transcript(&[], 16_000), Transcript::default());
    }

    #[test]
    fn simulated_latency_is_applied() {
        let mut worker = MockModel {
            latency: Duration::from_millis(20),
            rtf: 0.0,
        };
        let started = std::time::Instant::now();
        let result = worker.transcribe(&tone(1_600, 0), 16_000, &TranscribeOptions::default());
        assert!(result.is_ok());
        // A lower bound only: sleeping never returns early.
        assert!(started.elapsed() >= Duration::from_millis(20));
    }
}
