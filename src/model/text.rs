//! Turning a speech engine's raw output into API text and words.
//!
//! Whisper marks what is not speech with bracketed tags (`[BLANK_AUDIO]`,
//! `[Music]`, `(upbeat music)`) and splits words into sub-word tokens, each
//! with its own times. These functions are pure so the default test suite
//! checks them without the engine.

use super::{Transcript, Word};

/// `text` without bracketed tags (`[…]`, `(…)`), with runs of whitespace
/// collapsed to one space and no leading or trailing space. An unclosed
/// bracket hides the rest of the text, as the tag it opens would.
pub fn strip_tags(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut depth = 0usize;
    for ch in text.chars() {
        match ch {
            '[' | '(' => depth += 1,
            ']' | ')' if depth > 0 => {
                depth -= 1;
                // A tag separates what is around it.
                out.push(' ');
            }
            _ if depth == 0 => out.push(ch),
            _ => {}
        }
    }
    collapse_whitespace(&out)
}

/// Runs of whitespace as one space, trimmed.
pub fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// One sub-word token of the engine's output, with times in seconds from
/// the start of the audio.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece<'a> {
    pub text: &'a str,
    pub start: f64,
    pub end: f64,
}

/// Sub-word tokens as bytes joined into pieces of whole characters: a byte
/// BPE splits multi-byte characters (accents, CJK) across tokens, so a token
/// that ends inside a character waits for the next one, and the piece spans
/// both tokens' times. Bytes that are not UTF-8 at all become U+FFFD.
pub fn pieces_from_token_bytes(
    tokens: impl IntoIterator<Item = (Vec<u8>, f64, f64)>,
) -> Vec<(String, f64, f64)> {
    /// The longest UTF-8 character; a longer unfinished run is not one.
    const CHAR_BYTES_MAX: usize = 4;
    let mut pieces = Vec::new();
    let mut pending: Option<(Vec<u8>, f64)> = None;
    for (bytes, start, end) in tokens {
        let (mut joined, start) = pending.take().unwrap_or((Vec::new(), start));
        joined.extend_from_slice(&bytes);
        match std::str::from_utf8(&joined) {
            Ok(text) => pieces.push((text.to_string(), start, end)),
            // The tail is the start of a character the next token finishes.
            Err(error)
                if error.error_len().is_none()
                    && joined.len() - error.valid_up_to() < CHAR_BYTES_MAX =>
            {
                pending = Some((joined, start));
            }
            Err(_) => pieces.push((String::from_utf8_lossy(&joined).into_owned(), start, end)),
        }
    }
    if let Some((joined, start)) = pending {
        pieces.push((String::from_utf8_lossy(&joined).into_owned(), start, start));
    }
    pieces
}

/// Words from sub-word pieces: a piece that starts with whitespace starts a
/// new word; a word runs from its first piece's start to its last piece's
/// end. Text inside bracketed tags is dropped, and so is the punctuation
/// around a word (`"world,"` → `world`; inner apostrophes and hyphens stay:
/// `don't`, `well-known`). Times are clamped to `0..=duration` and kept
/// ordered.
pub fn words_from_pieces(pieces: &[Piece<'_>], duration: f64) -> Vec<Word> {
    let mut words = Vec::new();
    let mut current: Option<(String, f64, f64)> = None;
    let mut depth = 0usize;
    for piece in pieces {
        for ch in piece.text.chars() {
            match ch {
                '[' | '(' => {
                    depth += 1;
                    flush(&mut current, &mut words);
                }
                ']' | ')' if depth > 0 => depth -= 1,
                _ if depth > 0 => {}
                _ if ch.is_whitespace() => flush(&mut current, &mut words),
                _ => {
                    let word =
                        current.get_or_insert_with(|| (String::new(), piece.start, piece.end));
                    word.0.push(ch);
                    word.2 = piece.end;
                }
            }
        }
    }
    flush(&mut current, &mut words);
    let mut last_end = 0.0_f64;
    for word in &mut words {
        word.start = word.start.clamp(last_end, duration.max(last_end));
        word.end = word.end.clamp(word.start, duration.max(word.start));
        last_end = word.start;
    }
    words
}

/// End the word being built, if it has any letters or digits left once its
/// surrounding punctuation is trimmed.
fn flush(current: &mut Option<(String, f64, f64)>, words: &mut Vec<Word>) {
    let Some((text, start, end)) = current.take() else {
        return;
    };
    let trimmed = text.trim_matches(|ch: char| !ch.is_alphanumeric());
    if !trimmed.is_empty() {
        words.push(Word {
            word: trimmed.to_string(),
            start,
            end,
        });
    }
}

/// Number words for the numerals Whisper writes as digits.
const NUMBER_WORDS: [&str; 21] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
];

/// Text normalised for comparing transcripts: lower case, punctuation out
/// (apostrophes kept inside words), single spaces, numerals 0–20 spelled
/// out (Whisper writes "platform 2" for "platform two"). `"Hello, World!"`
/// → `"hello world"`.
pub fn normalise(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|ch| {
            if ch.is_alphanumeric() || ch == '\'' {
                ch.to_ascii_lowercase()
            } else {
                ' '
            }
        })
        .collect();
    cleaned
        .split_whitespace()
        .map(|word| word.trim_matches('\''))
        .filter(|word| !word.is_empty())
        .map(|word| {
            word.parse::<usize>()
                .ok()
                .and_then(|n| NUMBER_WORDS.get(n).copied())
                .unwrap_or(word)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Word error rate of `hypothesis` against `reference`, both normalised:
/// (substitutions + deletions + insertions) / reference words, by edit
/// distance over words. An empty reference gives 0 for an empty hypothesis
/// and 1 otherwise.
pub fn word_error_rate(reference: &str, hypothesis: &str) -> f64 {
    let reference = normalise(reference);
    let hypothesis = normalise(hypothesis);
    let r: Vec<&str> = reference.split_whitespace().collect();
    let h: Vec<&str> = hypothesis.split_whitespace().collect();
    if r.is_empty() {
        return if h.is_empty() { 0.0 } else { 1.0 };
    }
    word_edits(&r, &h) as f64 / r.len() as f64
}

/// The word-level edit distance between `r` and `h`.
pub fn word_edits(r: &[&str], h: &[&str]) -> usize {
    let mut previous: Vec<usize> = (0..=h.len()).collect();
    let mut row = vec![0; h.len() + 1];
    for (i, rw) in r.iter().enumerate() {
        row[0] = i + 1;
        for (j, hw) in h.iter().enumerate() {
            let substitution = previous[j] + usize::from(rw != hw);
            row[j + 1] = substitution.min(previous[j + 1] + 1).min(row[j] + 1);
        }
        std::mem::swap(&mut previous, &mut row);
    }
    previous[h.len()]
}

/// Words per second of audio beyond which a live answer is taken for a
/// repetition (fast speech is 4–5).
const LIVE_WORDS_PER_SECOND_MAX: f64 = 7.0;

/// Whether a transcript looks like the repetition a too-small context can
/// cause: more words than anyone speaks in that time, or the same three
/// words over and over.
pub fn ran_away(transcript: &Transcript, duration: f64) -> bool {
    let words = &transcript.words;
    if words.len() as f64 > LIVE_WORDS_PER_SECOND_MAX * duration + 3.0 {
        return true;
    }
    let lower: Vec<String> = words.iter().map(|word| word.word.to_lowercase()).collect();
    let mut seen = std::collections::HashMap::new();
    lower.windows(3).any(|trigram| {
        let count = seen.entry(trigram).or_insert(0);
        *count += 1;
        *count >= 3
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(text: &str, start: f64, end: f64) -> Piece<'_> {
        Piece { text, start, end }
    }

    #[test]
    fn tags_are_stripped_and_space_collapsed() {
        assert_eq!(strip_tags("[BLANK_AUDIO]"), "");
        assert_eq!(
            strip_tags(" Hello world, this is a test."),
            "Hello world, this is a test."
        );
        assert_eq!(
            strip_tags("[Music] Hello (upbeat music) there"),
            "Hello there"
        );
        assert_eq!(strip_tags("one[tag]two"), "one two");
        assert_eq!(strip_tags("kept ] stray"), "kept ] stray");
        assert_eq!(strip_tags("before [never closed"), "before");
        assert_eq!(strip_tags("  a \n\t b  "), "a b");
    }

    #[test]
    fn pieces_join_into_words_with_their_times() {
        let pieces = [
            piece(" Hello", 0.0, 0.4),
            piece(" wor", 0.5, 0.7),
            piece("ld,", 0.7, 0.9),
            piece(" don", 1.0, 1.1),
            piece("'t", 1.1, 1.2),
            piece(".", 1.2, 1.25),
        ];
        let words = words_from_pieces(&pieces, 2.0);
        let texts: Vec<&str> = words.iter().map(|w| w.word.as_str()).collect();
        assert_eq!(texts, ["Hello", "world", "don't"]);
        assert_eq!((words[1].start, words[1].end), (0.5, 0.9));
        assert_eq!((words[2].start, words[2].end), (1.0, 1.25));
    }

    #[test]
    fn characters_split_across_tokens_are_joined() {
        let e_acute = "é".as_bytes();
        let kanji = "語".as_bytes();
        let tokens = vec![
            (b" caf".to_vec(), 0.0, 0.2),
            (e_acute[..1].to_vec(), 0.2, 0.3),
            (e_acute[1..].to_vec(), 0.3, 0.4),
            (kanji[..2].to_vec(), 0.5, 0.6),
            (kanji[2..].to_vec(), 0.6, 0.7),
            (vec![0xff], 0.8, 0.9),
        ];
        let pieces = pieces_from_token_bytes(tokens);
        assert_eq!(
            pieces,
            [
                (" caf".to_string(), 0.0, 0.2),
                ("é".to_string(), 0.2, 0.4),
                ("語".to_string(), 0.5, 0.7),
                ("\u{fffd}".to_string(), 0.8, 0.9),
            ]
        );
        // A character left unfinished at the end is replaced, not dropped.
        let cut = pieces_from_token_bytes(vec![(e_acute[..1].to_vec(), 1.0, 1.1)]);
        assert_eq!(cut, [("\u{fffd}".to_string(), 1.0, 1.0)]);
    }

    #[test]
    fn tags_inside_pieces_never_become_words() {
        let pieces = [
            piece(" [", 0.0, 0.1),
            piece("BL", 0.1, 0.2),
            piece("ANK_AUDIO", 0.2, 0.3),
            piece("]", 0.3, 0.4),
            piece(" yes", 0.5, 0.8),
            piece(" (music)", 0.8, 1.0),
            piece(" -", 1.0, 1.1),
        ];
        let words = words_from_pieces(&pieces, 1.2);
        assert_eq!(words.len(), 1);
        assert_eq!(words[0].word, "yes");
    }

    #[test]
    fn times_are_clamped_inside_the_audio_and_ordered() {
        let pieces = [piece(" late", 1.5, 3.0), piece(" early", 0.2, 0.4)];
        let words = words_from_pieces(&pieces, 2.0);
        assert_eq!((words[0].start, words[0].end), (1.5, 2.0));
        assert!(words[1].start >= words[0].start, "{words:?}");
        assert!(words.iter().all(|w| w.start <= w.end && w.end <= 2.0));
    }

    #[test]
    fn normalising_ignores_case_and_punctuation() {
        assert_eq!(
            normalise("Hello world, this is a test."),
            "hello world this is a test"
        );
        assert_eq!(normalise("It's 'quoted' -- OK?"), "it's quoted ok");
        assert_eq!(normalise(""), "");
        assert_eq!(normalise("Platform 2 at 9:30"), "platform two at nine 30");
    }

    #[test]
    fn word_error_rate_counts_edits_per_reference_word() {
        assert_eq!(word_error_rate("a b c d", "a b c d"), 0.0);
        assert_eq!(word_error_rate("a b c d", "a x c d"), 0.25);
        assert_eq!(word_error_rate("a b c d", "a c d"), 0.25);
        assert_eq!(word_error_rate("a b c d", "a b y c d"), 0.25);
        assert_eq!(word_error_rate("a b", ""), 1.0);
        assert_eq!(word_error_rate("", ""), 0.0);
        assert_eq!(word_error_rate("", "noise"), 1.0);
        assert_eq!(word_error_rate("Hello, world!", "hello world"), 0.0);
    }
}
