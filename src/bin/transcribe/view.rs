//! How `transcribe stream` shows transcripts: the server's `transcript`
//! messages in, text on stdout out.
//!
//! On a terminal an interim rewrites the current line in place (dimmed, cut to
//! the terminal width so that `\r` can rewrite it) and a final replaces it
//! with a full line. Anywhere else (a pipe, a file) every line is final:
//! finals only, or interims as well, each on its own line marked `interim`,
//! with `--interims`. `--json` prints every server message as it came, one
//! per line. No mode but the terminal one writes an escape sequence.

use std::io::{self, Write};

use serde_json::Value;

/// Clear the current terminal line and return to its start.
const CLEAR_LINE: &str = "\r\x1b[2K";
/// Dim text on, attributes off.
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";
/// The terminal width when `COLUMNS` does not say.
pub const TERMINAL_WIDTH_DEFAULT: usize = 80;

/// Where the transcript goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewMode {
    /// An interactive terminal `width` columns wide.
    Terminal { width: usize },
    /// A pipe or a file: lines only.
    Plain { interims: bool },
    /// Every server message as one line of JSON.
    Json,
}

/// The transcript as shown so far.
pub struct TranscriptView<W: Write> {
    out: W,
    mode: ViewMode,
    /// Whether the terminal's current line holds an interim (terminal mode).
    interim_open: bool,
    /// Finals shown (with text).
    pub finals: usize,
}

impl<W: Write> TranscriptView<W> {
    pub fn new(out: W, mode: ViewMode) -> TranscriptView<W> {
        TranscriptView {
            out,
            mode,
            interim_open: false,
            finals: 0,
        }
    }

    /// Whether interims are shown at all (so the stream can ask the server
    /// not to send them).
    pub fn wants_interims(&self) -> bool {
        match self.mode {
            ViewMode::Terminal { .. } | ViewMode::Json => true,
            ViewMode::Plain { interims } => interims,
        }
    }

    /// Show one server message (`raw` is its text, `message` the parsed form).
    ///
    /// # Errors
    /// A failure to write stdout.
    pub fn on_message(&mut self, raw: &str, message: &Value) -> io::Result<()> {
        if self.mode == ViewMode::Json {
            writeln!(self.out, "{raw}")?;
            return self.out.flush();
        }
        if message["type"] != "transcript" {
            return Ok(());
        }
        let text = message["text"].as_str().unwrap_or_default().trim();
        let start = message["start"].as_f64().unwrap_or(0.0);
        let end = message["end"].as_f64().unwrap_or(start);
        if message["is_final"] == true {
            self.on_final(text, start, end)
        } else {
            self.on_interim(text, start, end)
        }
    }

    fn on_final(&mut self, text: &str, start: f64, end: f64) -> io::Result<()> {
        self.clear_interim()?;
        // A segment in which the model heard no words has no line.
        if text.is_empty() {
            return self.out.flush();
        }
        self.finals += 1;
        writeln!(self.out, "{} {text}", time_range(start, end))?;
        self.out.flush()
    }

    fn on_interim(&mut self, text: &str, start: f64, end: f64) -> io::Result<()> {
        if text.is_empty() {
            return Ok(());
        }
        match self.mode {
            ViewMode::Terminal { width } => {
                let line = format!("{} {text}", time_range(start, end));
                write!(
                    self.out,
                    "{CLEAR_LINE}{DIM}{}{RESET}",
                    fit_width(&line, width.saturating_sub(1))
                )?;
                self.interim_open = true;
            }
            ViewMode::Plain { interims: true } => {
                writeln!(self.out, "interim {} {text}", time_range(start, end))?;
            }
            ViewMode::Plain { interims: false } | ViewMode::Json => return Ok(()),
        }
        self.out.flush()
    }

    /// Clear an interim from the terminal line (before a final, an error
    /// message on stderr, or the end).
    ///
    /// # Errors
    /// A failure to write stdout.
    pub fn clear_interim(&mut self) -> io::Result<()> {
        if self.interim_open {
            write!(self.out, "{CLEAR_LINE}")?;
            self.interim_open = false;
            self.out.flush()?;
        }
        Ok(())
    }
}

/// `[00:00.210 --> 00:01.890]`: a segment's place in the stream.
pub fn time_range(start: f64, end: f64) -> String {
    format!("[{} --> {}]", stream_time(start), stream_time(end))
}

/// `MM:SS.mmm`, or `H:MM:SS.mmm` from an hour on.
pub fn stream_time(seconds: f64) -> String {
    let total_ms = (seconds.max(0.0) * 1000.0).round() as u64;
    let (hours, rest) = (total_ms / 3_600_000, total_ms % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    let (secs, millis) = (rest / 1000, rest % 1000);
    if hours > 0 {
        format!("{hours}:{minutes:02}:{secs:02}.{millis:03}")
    } else {
        format!("{minutes:02}:{secs:02}.{millis:03}")
    }
}

/// `line` cut to `width` characters, keeping its end (the newest words) behind
/// a leading `…`.
pub fn fit_width(line: &str, width: usize) -> String {
    let count = line.chars().count();
    if count <= width {
        return line.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let tail: String = line.chars().skip(count - (width - 1)).collect();
    format!("…{tail}")
}

/// The terminal width from `COLUMNS`, or the default.
pub fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|columns| columns.trim().parse::<usize>().ok())
        .filter(|&columns| columns >= 20)
        .unwrap_or(TERMINAL_WIDTH_DEFAULT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transcript(is_final: bool, text: &str) -> Value {
        serde_json::json!({"type": "transcript", "segment_id": 0, "is_final": is_final,
                           "text": text, "start": 0.21, "end": 1.89})
    }

    fn show(mode: ViewMode, messages: &[Value]) -> String {
        let mut out = Vec::new();
        let mut view = TranscriptView::new(&mut out, mode);
        for message in messages {
            let raw = message.to_string();
            view.on_message(&raw, message).expect("write");
        }
        view.clear_interim().expect("write");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn times_read_as_minutes_or_hours() {
        assert_eq!(stream_time(1.89), "00:01.890");
        assert_eq!(stream_time(61.0), "01:01.000");
        assert_eq!(stream_time(3725.5), "1:02:05.500");
        assert_eq!(time_range(0.21, 1.89), "[00:00.210 --> 00:01.890]");
    }

    #[test]
    fn long_interims_keep_their_end() {
        assert_eq!(fit_width("hello", 10), "hello");
        assert_eq!(fit_width("hello world", 6), "…world");
        assert_eq!(fit_width("hello", 0), "");
    }

    #[test]
    fn plain_output_has_finals_only_and_no_escapes() {
        let messages = [
            serde_json::json!({"type": "session_start", "session_id": "x"}),
            transcript(false, "hello"),
            transcript(true, "hello world"),
            transcript(true, ""),
        ];
        let out = show(ViewMode::Plain { interims: false }, &messages);
        assert_eq!(out, "[00:00.210 --> 00:01.890] hello world\n");
        let with_interims = show(ViewMode::Plain { interims: true }, &messages);
        assert_eq!(
            with_interims,
            "interim [00:00.210 --> 00:01.890] hello\n[00:00.210 --> 00:01.890] hello world\n"
        );
        assert!(!with_interims.contains('\x1b'));
    }

    #[test]
    fn terminal_interims_are_rewritten_by_the_final() {
        let out = show(
            ViewMode::Terminal { width: 80 },
            &[transcript(false, "hello"), transcript(true, "hello world")],
        );
        assert_eq!(
            out,
            "\r\x1b[2K\x1b[2m[00:00.210 --> 00:01.890] hello\x1b[0m\r\x1b[2K[00:00.210 --> 00:01.890] hello world\n"
        );
    }

    #[test]
    fn json_mode_echoes_every_message() {
        let start = serde_json::json!({"type": "session_start"});
        let out = show(ViewMode::Json, &[start.clone(), transcript(false, "a")]);
        assert_eq!(out.lines().count(), 2);
        assert_eq!(out.lines().next(), Some(start.to_string().as_str()));
    }
}
