//! The vocabulary section. CTranslate2's `vocabulary.txt` holds one token per
//! line written in GPT-2's byte-to-unicode alphabet (every byte shown as a
//! printable character: `Ġ` is a space, `Ċ` a newline); whisper.cpp wants the
//! raw bytes. This module owns that alphabet and hands on the decoded tokens.
//!
//! Which tokens: 50,257 in both kinds of model, as in the ggml files
//! whisper.cpp publishes — for English-only models every token up to and
//! including `<|endoftext|>` (index 50,256), for multilingual ones every
//! token before it (it is index 50,257 there). whisper.cpp names the
//! remaining special tokens itself, from `n_vocab`. (With 50,256 tokens the
//! tiny.en file would be 17 bytes short of the published 77,704,715.)

use crate::error::Error;
use crate::limits;

/// The special token that ends the ordinary vocabulary.
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// GPT-2's printable bytes: `!`..=`~`, `¡`..=`¬`, `®`..=`ÿ` stand for
/// themselves; the other 68 bytes are shifted to U+0100 onwards in order.
fn is_printable(byte: u8) -> bool {
    matches!(byte, b'!'..=b'~' | 0xa1..=0xac | 0xae..=0xff)
}

/// The character GPT-2's alphabet shows for `byte`.
pub fn byte_to_char(byte: u8) -> char {
    if is_printable(byte) {
        return char::from(byte);
    }
    let shifted = (0..byte).filter(|earlier| !is_printable(*earlier)).count() as u32;
    // 256 + at most 67 is a valid scalar value.
    char::from_u32(256 + shifted).unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// The byte `character` stands for, or `None` outside the alphabet.
pub fn char_to_byte(character: char) -> Option<u8> {
    let code = u32::from(character);
    if let Ok(byte) = u8::try_from(code) {
        return is_printable(byte).then_some(byte);
    }
    let shifted = code.checked_sub(256)? as usize;
    (0..=u8::MAX)
        .filter(|byte| !is_printable(*byte))
        .nth(shifted)
}

/// A lookup table for [`char_to_byte`] over U+0000..U+0144, the whole
/// alphabet; built once per conversion.
struct Alphabet {
    bytes: [Option<u8>; 0x144],
}

impl Alphabet {
    fn new() -> Alphabet {
        let mut bytes = [None; 0x144];
        for byte in 0..=u8::MAX {
            bytes[u32::from(byte_to_char(byte)) as usize] = Some(byte);
        }
        Alphabet { bytes }
    }

    fn decode(&self, token: &str) -> Option<Vec<u8>> {
        token
            .chars()
            .map(|character| *self.bytes.get(u32::from(character) as usize)?)
            .collect()
    }
}

/// The tokens to write, decoded to raw bytes: every line of `vocabulary` up
/// to `<|endoftext|>`, including it unless the model is `multilingual`.
///
/// # Errors
/// [`Error::Invalid`] when the line count is not `n_vocab`, there is no
/// `<|endoftext|>`, or a token has a character outside the alphabet.
pub fn tokens_for_ggml(
    vocabulary: &str,
    n_vocab: i32,
    multilingual: bool,
) -> Result<Vec<Vec<u8>>, Error> {
    let lines: Vec<&str> = vocabulary
        .strip_suffix('\n')
        .unwrap_or(vocabulary)
        .split('\n')
        .collect();
    if lines.len() > limits::TOKENS_MAX || usize::try_from(n_vocab).ok() != Some(lines.len()) {
        return Err(Error::Invalid(format!(
            "vocabulary.txt has {} tokens, the model's embeddings {n_vocab}",
            lines.len()
        )));
    }
    let end_of_text = lines
        .iter()
        .position(|line| *line == END_OF_TEXT)
        .ok_or_else(|| Error::Invalid(format!("vocabulary.txt has no {END_OF_TEXT}")))?;
    let end = if multilingual {
        end_of_text
    } else {
        end_of_text + 1
    };
    let alphabet = Alphabet::new();
    lines[..end]
        .iter()
        .enumerate()
        .map(|(index, line)| {
            alphabet.decode(line).ok_or_else(|| {
                Error::Invalid(format!(
                    "vocabulary.txt token {index} ({line:?}) has a character outside GPT-2's byte alphabet"
                ))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alphabet_round_trips_every_byte() {
        let mut seen = std::collections::HashSet::new();
        for byte in 0..=u8::MAX {
            let character = byte_to_char(byte);
            assert!(seen.insert(character), "{character:?} twice");
            assert_eq!(char_to_byte(character), Some(byte));
            assert_eq!(
                Alphabet::new().decode(&character.to_string()),
                Some(vec![byte])
            );
        }
        assert_eq!(seen.len(), 256);
    }

    #[test]
    fn known_mappings() {
        assert_eq!(char_to_byte('Ġ'), Some(b' '));
        assert_eq!(char_to_byte('Ċ'), Some(b'\n'));
        assert_eq!(char_to_byte('ĉ'), Some(b'\t'));
        assert_eq!(char_to_byte('Ā'), Some(0));
        assert_eq!(char_to_byte('!'), Some(b'!'));
        assert_eq!(char_to_byte('ÿ'), Some(0xff));
        assert_eq!(char_to_byte('Ń'), Some(0xad)); // the soft hyphen, the last shifted byte
        assert_eq!(byte_to_char(0x7f), 'ġ');
        // Characters outside the alphabet.
        assert_eq!(char_to_byte(' '), None);
        assert_eq!(char_to_byte('ń'), None);
        assert_eq!(char_to_byte('€'), None);
    }

    #[test]
    fn tokens_end_at_end_of_text() {
        let vocabulary = "a\nĠworld\nÃ©\n<|endoftext|>\n<|notimestamps|>\n";
        let mut tokens = vec![b"a".to_vec(), b" world".to_vec(), "é".as_bytes().to_vec()];
        assert_eq!(
            tokens_for_ggml(vocabulary, 5, true).expect("valid vocabulary"),
            tokens
        );
        tokens.push(b"<|endoftext|>".to_vec());
        assert_eq!(
            tokens_for_ggml(vocabulary, 5, false).expect("valid vocabulary"),
            tokens
        );
    }

    #[test]
    fn bad_vocabularies_are_errors() {
        assert!(tokens_for_ggml("a\n<|endoftext|>\n", 3, false).is_err()); // count
        assert!(tokens_for_ggml("a\nb\n", 2, false).is_err()); // no end of text
        assert!(tokens_for_ggml("a b\n<|endoftext|>\n", 2, false).is_err()); // raw space
        assert!(tokens_for_ggml("€\n<|endoftext|>\n", 2, false).is_err());
    }
}
