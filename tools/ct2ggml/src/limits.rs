//! Every limit on a length read from input, in one place. Each is far above
//! what a real Whisper model needs and far below what would exhaust memory;
//! the parser checks a length against these and against the bytes actually
//! left before it allocates anything.

/// `model.bin` size. The largest Whisper (large-v3) in f32 is about 6.2 GB.
pub const MODEL_BYTES_MAX: u64 = 8 << 30;

/// `vocabulary.txt` size. Whisper's is about 420 kB.
pub const VOCABULARY_BYTES_MAX: u64 = 16 << 20;

/// `config.json` size. Whisper's is about 2 kB.
pub const CONFIG_BYTES_MAX: u64 = 1 << 20;

/// Variables in `model.bin`. tiny.en has 148, large-v3 about 1,000.
pub const VARIABLES_MAX: u32 = 100_000;

/// Aliases in `model.bin`. Whisper has one (the tied output projection).
pub const ALIASES_MAX: u32 = 100_000;

/// Rank of one variable. Whisper's highest is 3 (the convolutions).
pub const RANK_MAX: u8 = 8;

/// Encoder or decoder layers. large-v3 has 32.
pub const LAYERS_MAX: usize = 256;

/// Tokens in the vocabulary. Whisper's is 51,864 or 51,865 (51,866 for v3).
pub const TOKENS_MAX: usize = 1 << 20;

/// CTranslate2 format versions this parser reads. Version 5 introduced the
/// layout described in `ct2`; 6 is current.
pub const VERSION_MIN: u32 = 5;
pub const VERSION_MAX: u32 = 6;
