//! SRT and WebVTT cues from timed segments: the OpenAI-compatible endpoint's
//! `srt` / `vtt` formats and the `transcribe` client's, one implementation.

use std::fmt::Write as _;

/// The two subtitle dialects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cues {
    Srt,
    Vtt,
}

/// SRT (numbered cues, `,` before the milliseconds) or WebVTT (a `WEBVTT`
/// header, `.` before the milliseconds): a cue per `(start, end, text)`, a
/// blank line after each.
pub fn subtitles<'a>(
    segments: impl IntoIterator<Item = (f64, f64, &'a str)>,
    cues: Cues,
) -> String {
    let mut out = String::new();
    if cues == Cues::Vtt {
        out.push_str("WEBVTT\n\n");
    }
    for (index, (start, end, text)) in segments.into_iter().enumerate() {
        if cues == Cues::Srt {
            let _ = writeln!(out, "{}", index + 1);
        }
        let _ = writeln!(
            out,
            "{} --> {}",
            cue_timestamp(start, cues),
            cue_timestamp(end, cues)
        );
        let _ = writeln!(out, "{text}\n");
    }
    out
}

/// `HH:MM:SS,mmm` (SRT) or `HH:MM:SS.mmm` (WebVTT); negative times are 0.
pub fn cue_timestamp(seconds: f64, cues: Cues) -> String {
    let total_ms = (seconds.max(0.0) * 1000.0).round() as u64;
    let (hours, rest) = (total_ms / 3_600_000, total_ms % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    let (secs, millis) = (rest / 1000, rest % 1000);
    let separator = match cues {
        Cues::Srt => ',',
        Cues::Vtt => '.',
    };
    format!("{hours:02}:{minutes:02}:{secs:02}{separator}{millis:03}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEGMENTS: [(f64, f64, &str); 2] =
        [(0.42, 2.1, "alpha bravo"), (3661.5, 3662.0, "charlie")];

    #[test]
    fn timestamps_round_to_the_millisecond() {
        assert_eq!(cue_timestamp(0.0, Cues::Srt), "00:00:00,000");
        assert_eq!(cue_timestamp(1.2345, Cues::Vtt), "00:00:01.235");
        assert_eq!(cue_timestamp(59.9996, Cues::Srt), "00:01:00,000");
        assert_eq!(cue_timestamp(3661.5, Cues::Vtt), "01:01:01.500");
        assert_eq!(cue_timestamp(-1.0, Cues::Srt), "00:00:00,000");
    }

    #[test]
    fn srt_numbers_its_cues() {
        assert_eq!(
            subtitles(SEGMENTS, Cues::Srt),
            "1\n00:00:00,420 --> 00:00:02,100\nalpha bravo\n\n2\n01:01:01,500 --> 01:01:02,000\ncharlie\n\n"
        );
    }

    #[test]
    fn vtt_has_a_header_and_no_numbers() {
        assert_eq!(
            subtitles(SEGMENTS, Cues::Vtt),
            "WEBVTT\n\n00:00:00.420 --> 00:00:02.100\nalpha bravo\n\n01:01:01.500 --> 01:01:02.000\ncharlie\n\n"
        );
        assert_eq!(subtitles([], Cues::Vtt), "WEBVTT\n\n");
        assert_eq!(subtitles([], Cues::Srt), "");
    }
}
