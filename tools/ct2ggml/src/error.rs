//! The one error type of the converter. Every error is an operating error
//! (bad input or a failed write); programmer errors are assertions.

use std::fmt;
use std::io;
use std::path::PathBuf;

#[derive(Debug)]
pub enum Error {
    /// A file could not be read or written.
    Io { path: PathBuf, source: io::Error },
    /// `model.bin` does not follow the CTranslate2 layout: `offset` is where
    /// the parser stopped, `what` what it expected there.
    Malformed { offset: usize, what: String },
    /// The model is well formed but not something this converter handles
    /// (a quantized variable, an unknown spec).
    Unsupported(String),
    /// The model or vocabulary is inconsistent (a missing variable, a shape
    /// that disagrees with the others, a token outside the GPT-2 alphabet).
    Invalid(String),
    /// Writing the output failed.
    Write(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Malformed { offset, what } => {
                write!(f, "model.bin is malformed at byte {offset}: {what}")
            }
            Error::Unsupported(message) => write!(f, "unsupported model: {message}"),
            Error::Invalid(message) => write!(f, "invalid model: {message}"),
            Error::Write(source) => write!(f, "writing the output: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } | Error::Write(source) => Some(source),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(source: io::Error) -> Self {
        Error::Write(source)
    }
}
