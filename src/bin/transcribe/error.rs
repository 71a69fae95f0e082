//! The client's failures: each one is a single line for stderr and a kind that
//! decides the process exit code (docs/CLI.md lists them).
//!
//! Every module of the client returns [`CliError`]; only `main` turns it into
//! output and an exit code, so the mapping lives in one place.

use std::fmt;

/// What went wrong, as far as the exit code is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The server answered with an error, or a stream ended abnormally.
    Server,
    /// A flag combination that clap cannot check (an unusable `--url`, ...).
    Usage,
    /// The server could not be reached.
    Connect,
    /// The server rejected the key (401).
    Auth,
    /// The audio file is missing, unreadable, or not audio the server takes.
    Audio,
}

impl FailureKind {
    /// The process exit code for this kind (clap uses 2 for its own usage
    /// errors, so `Usage` matches it).
    pub fn exit_code(self) -> i32 {
        match self {
            FailureKind::Server => 1,
            FailureKind::Usage => 2,
            FailureKind::Connect => 3,
            FailureKind::Auth => 4,
            FailureKind::Audio => 5,
        }
    }
}

/// One failure: its kind and a message that reads well after `transcribe: `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    pub kind: FailureKind,
    pub message: String,
}

impl CliError {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> CliError {
        CliError {
            kind,
            message: message.into(),
        }
    }

    pub fn server(message: impl Into<String>) -> CliError {
        CliError::new(FailureKind::Server, message)
    }

    pub fn usage(message: impl Into<String>) -> CliError {
        CliError::new(FailureKind::Usage, message)
    }

    pub fn audio(message: impl Into<String>) -> CliError {
        CliError::new(FailureKind::Audio, message)
    }

    /// Name the file an audio failure is about (other kinds are unchanged).
    pub fn in_file(self, file: &std::path::Path) -> CliError {
        if self.kind != FailureKind::Audio {
            return self;
        }
        CliError::audio(format!("{}: {}", file.display(), self.message))
    }

    /// The exit code `main` ends the process with.
    pub fn exit_code(&self) -> i32 {
        self.kind.exit_code()
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// A failure to write our own output. A closed pipe (`transcribe x | head`)
/// is not an error worth a message; `main` exits quietly on it.
pub fn output_error(error: std::io::Error) -> CliError {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        return CliError::new(FailureKind::Server, BROKEN_PIPE);
    }
    CliError::server(format!("cannot write the output: {error}"))
}

/// The message of an [`output_error`] for a closed pipe, which `main` does
/// not print.
pub const BROKEN_PIPE: &str = "broken pipe";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_distinct_and_documented() {
        let kinds = [
            FailureKind::Server,
            FailureKind::Usage,
            FailureKind::Connect,
            FailureKind::Auth,
            FailureKind::Audio,
        ];
        let codes: Vec<i32> = kinds.iter().map(|kind| kind.exit_code()).collect();
        assert_eq!(codes, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn only_audio_failures_name_the_file() {
        let path = std::path::Path::new("a.wav");
        assert_eq!(
            CliError::audio("not audio").in_file(path).message,
            "a.wav: not audio"
        );
        assert_eq!(CliError::server("boom").in_file(path).message, "boom");
    }
}
