//! Packing speech segments into engine windows, and mapping the engine's
//! answer back onto the segments.
//!
//! Whisper pays for a whole encoder window whatever the audio in it: one
//! encode of 25 s of speech costs about what three encodes of 2 s segments
//! cost (docs/MODELS.md has the figures). So the batch path packs
//! consecutive VAD segments of one request into windows of up to
//! `window_samples_max`, with a short silence between them, runs one job per
//! window, and hands each segment back the text and words whose times fall
//! in its span. Only segments of the same request share a window, so no
//! client's words can reach another client.
//!
//! Everything here is pure: the batch handler plans and packs on its core,
//! the worker runs the window like any other job, and the handler unpacks.

use std::ops::Range;

use super::text::{strip_tags, words_from_pieces, Piece};
use super::{TimedText, Transcript, Word};

/// One segment's place inside a packed window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// The segment's index in the request's list of segments.
    pub segment: usize,
    /// Where its samples start in the window.
    pub offset: usize,
    /// How many samples it has.
    pub len: usize,
}

impl Span {
    fn end(&self) -> usize {
        self.offset + self.len
    }

    /// Samples between `position` and this span (0 inside it).
    fn distance(&self, position: f64) -> f64 {
        if position < self.offset as f64 {
            self.offset as f64 - position
        } else if position >= self.end() as f64 {
            position - self.end() as f64
        } else {
            0.0
        }
    }
}

/// The audio of one window and where each of its segments lies in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub samples: Vec<i16>,
    pub spans: Vec<Span>,
}

/// Groups consecutive segments of `lengths` samples into windows of at most
/// `window_max` samples (gaps of `gap` samples included), as evenly as the
/// segment boundaries allow, so a request's windows take about the same time
/// on parallel workers. A segment longer than `window_max` gets a window of
/// its own (the engine then splits it its own way).
///
/// With `workers` > 1 the number of windows is rounded up to a multiple of
/// it when every window still holds at least `window_min` samples: three
/// windows on two workers take two rounds, four shorter ones take two
/// shorter rounds (an encoder window costs about its length, down to
/// Whisper's context floor, which `window_min` should match).
pub fn plan(
    lengths: &[usize],
    window_max: usize,
    window_min: usize,
    gap: usize,
    workers: usize,
) -> Vec<Range<usize>> {
    assert!(window_max > gap, "a window must hold more than its gap");
    if lengths.is_empty() {
        return Vec::new();
    }
    let packed: usize = lengths.iter().sum::<usize>() + gap * (lengths.len() - 1);
    // The fewest windows that could hold everything, rounded up to fill the
    // workers when they stay long enough; then the even share of each. A
    // window closes once it reaches its share (or would overflow).
    let mut windows = packed.div_ceil(window_max).max(1);
    let rounded = windows.div_ceil(workers.max(1)) * workers.max(1);
    if rounded > windows && packed / rounded >= window_min {
        windows = rounded;
    }
    // Cut before a segment that would overflow the window, or whose middle
    // lies past the next even share of the packed length.
    let share = packed as f64 / windows as f64;
    let mut next_boundary = share;
    let mut groups = Vec::with_capacity(windows + 1);
    let (mut start, mut window_start, mut end) = (0, 0, 0);
    for (index, &len) in lengths.iter().enumerate() {
        let segment_start = if index == 0 { 0 } else { end + gap };
        let segment_end = segment_start + len;
        let middle = (segment_start + segment_end) as f64 / 2.0;
        if index > start && (segment_end - window_start > window_max || middle >= next_boundary) {
            groups.push(start..index);
            start = index;
            window_start = segment_start;
            while next_boundary <= middle {
                next_boundary += share;
            }
        }
        end = segment_end;
    }
    groups.push(start..lengths.len());
    groups
}

/// The window holding `segments` (ranges of `samples`, `[start, end)` in
/// samples, clamped to the buffer) `group`, `gap` samples of silence apart.
pub fn pack(samples: &[i16], segments: &[(u64, u64)], group: Range<usize>, gap: usize) -> Window {
    let clamp = |value: u64| {
        usize::try_from(value)
            .unwrap_or(usize::MAX)
            .min(samples.len())
    };
    let mut window = Window {
        samples: Vec::new(),
        spans: Vec::with_capacity(group.len()),
    };
    for index in group {
        let (start, end) = segments[index];
        let end = clamp(end);
        let start = clamp(start).min(end);
        if !window.spans.is_empty() {
            window.samples.resize(window.samples.len() + gap, 0);
        }
        window.spans.push(Span {
            segment: index,
            offset: window.samples.len(),
            len: end - start,
        });
        window.samples.extend_from_slice(&samples[start..end]);
    }
    window
}

/// The span a piece of output centred at `seconds` into the window belongs
/// to: the one that holds it, else the nearest (output in a gap, or after
/// the last span, belongs to its neighbour).
fn span_at(spans: &[Span], seconds: f64, sample_rate: u32) -> usize {
    let position = seconds * f64::from(sample_rate);
    let mut best = 0;
    for (index, span) in spans.iter().enumerate() {
        if span.distance(position) < spans[best].distance(position) {
            best = index;
        }
    }
    best
}

/// Splits the engine's answer for a window into one transcript per span, in
/// span order, with times in seconds from the start of each span's segment.
///
/// Engines that report sub-word pieces ([`Transcript::pieces`]) keep their
/// punctuation and casing in each segment's text; otherwise a segment's text
/// is its words joined by spaces.
pub fn unpack(transcript: Transcript, spans: &[Span], sample_rate: u32) -> Vec<Transcript> {
    let mut out = vec![Transcript::default(); spans.len()];
    if spans.is_empty() {
        return out;
    }
    let rate = f64::from(sample_rate.max(1));
    if transcript.pieces.is_empty() {
        for word in transcript.words {
            let index = span_at(spans, (word.start + word.end) / 2.0, sample_rate);
            let offset = spans[index].offset as f64 / rate;
            let duration = spans[index].len as f64 / rate;
            out[index].words.push(Word {
                word: word.word,
                start: (word.start - offset).clamp(0.0, duration),
                end: (word.end - offset).clamp(0.0, duration),
            });
        }
        for segment in &mut out {
            segment.text = segment
                .words
                .iter()
                .map(|word| word.word.as_str())
                .collect::<Vec<_>>()
                .join(" ");
        }
        return out;
    }
    let mut assigned: Vec<Vec<TimedText>> = vec![Vec::new(); spans.len()];
    let mut index = 0;
    for (position, piece) in transcript.pieces.into_iter().enumerate() {
        // Only a piece that starts a word can move to another span: the rest
        // of a word, and punctuation (which Whisper often times late, into
        // the gap), stay with the piece before them.
        if position == 0 || piece.text.starts_with(char::is_whitespace) {
            index = span_at(spans, (piece.start + piece.end) / 2.0, sample_rate);
        }
        let offset = spans[index].offset as f64 / rate;
        assigned[index].push(TimedText {
            text: piece.text,
            start: (piece.start - offset).max(0.0),
            end: (piece.end - offset).max(0.0),
        });
    }
    for ((segment, pieces), span) in out.iter_mut().zip(&assigned).zip(spans) {
        let joined: String = pieces.iter().map(|piece| piece.text.as_str()).collect();
        segment.text = strip_tags(&joined);
        let borrowed: Vec<Piece<'_>> = pieces
            .iter()
            .map(|piece| Piece {
                text: &piece.text,
                start: piece.start,
                end: piece.end,
            })
            .collect();
        segment.words = words_from_pieces(&borrowed, span.len as f64 / rate);
    }
    for (segment, pieces) in out.iter_mut().zip(assigned) {
        segment.pieces = pieces;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_cover_every_segment_once_in_order_within_the_window() {
        let cases: [(&[usize], usize, usize); 5] = [
            (&[10, 10, 10, 10], 25, 2),
            (&[5; 20], 28, 1),
            (&[40, 3, 3], 30, 1),
            (&[3, 40, 3], 30, 1),
            (&[1], 10, 1),
        ];
        for (lengths, window_max, gap) in cases {
            let groups = plan(lengths, window_max, 0, gap, 1);
            let flat: Vec<usize> = groups.iter().flat_map(Clone::clone).collect();
            assert_eq!(flat, (0..lengths.len()).collect::<Vec<_>>(), "{lengths:?}");
            for group in &groups {
                assert!(!group.is_empty());
                let packed: usize =
                    lengths[group.clone()].iter().sum::<usize>() + gap * (group.len() - 1);
                assert!(
                    packed <= window_max || group.len() == 1,
                    "{lengths:?}: {group:?} holds {packed}"
                );
            }
        }
        assert!(plan(&[], 10, 0, 1, 2).is_empty());
    }

    #[test]
    fn plans_split_evenly_rather_than_leave_a_small_last_window() {
        // 20 segments of 5 with gaps of 1 pack to 119: five windows would be
        // the fewest at 28; the even share keeps them at 23–24 each.
        let groups = plan(&[5; 20], 28, 0, 1, 1);
        assert_eq!(groups.len(), 5, "{groups:?}");
        assert!(groups.iter().all(|group| group.len() == 4), "{groups:?}");
    }

    #[test]
    fn plans_fill_the_workers_while_windows_stay_long_enough() {
        // 119 packed: five windows alone; six (three rounds of two workers)
        // when a window may be as short as 19, five when it must hold 20.
        assert_eq!(plan(&[5; 20], 28, 19, 1, 2).len(), 6);
        assert_eq!(plan(&[5; 20], 28, 20, 1, 2).len(), 5);
        // 3 windows' worth on 4 workers: 4 windows of 15 each.
        let groups = plan(&[5; 10], 28, 10, 1, 4);
        assert_eq!(groups.len(), 4, "{groups:?}");
    }

    #[test]
    fn packing_puts_each_segment_at_its_span_with_silence_between() {
        let samples: Vec<i16> = (1..=10).collect();
        let segments = [(0, 3), (5, 7), (8, 20)];
        let window = pack(&samples, &segments, 0..3, 2);
        assert_eq!(window.samples, [1, 2, 3, 0, 0, 6, 7, 0, 0, 9, 10]);
        assert_eq!(
            window.spans,
            [
                Span {
                    segment: 0,
                    offset: 0,
                    len: 3
                },
                Span {
                    segment: 1,
                    offset: 5,
                    len: 2
                },
                Span {
                    segment: 2,
                    offset: 9,
                    len: 2
                },
            ]
        );
    }

    fn piece(text: &str, start: f64, end: f64) -> TimedText {
        TimedText {
            text: text.to_string(),
            start,
            end,
        }
    }

    #[test]
    fn pieces_go_back_to_their_segment_with_its_own_times() {
        // Two segments of 1 s at 10 samples per second, 0.5 s apart.
        let spans = [
            Span {
                segment: 0,
                offset: 0,
                len: 10,
            },
            Span {
                segment: 1,
                offset: 15,
                len: 10,
            },
        ];
        let transcript = Transcript {
            text: "Hello world. Bye now.".into(),
            words: Vec::new(),
            pieces: vec![
                piece(" Hello", 0.1, 0.4),
                piece(" world", 0.5, 0.8),
                // Punctuation timed into the gap stays with its word.
                piece(".", 1.1, 1.4),
                // Centred in the gap, nearer the second segment.
                piece(" Bye", 1.3, 1.7),
                piece(" now.", 2.0, 2.6),
            ],
        };
        let out = unpack(transcript, &spans, 10);
        assert_eq!(out[0].text, "Hello world.");
        assert_eq!(out[1].text, "Bye now.");
        let words: Vec<(&str, f64, f64)> = out[1]
            .words
            .iter()
            .map(|word| (word.word.as_str(), word.start, word.end))
            .collect();
        // Times shift by the span's offset (1.5 s) and stay inside its 1 s.
        assert_eq!(words.len(), 2);
        assert_eq!(words[0].0, "Bye");
        assert!(words[0].1 >= 0.0 && words[0].2 <= 1.0, "{words:?}");
        assert_eq!(words[1].0, "now");
        assert!(
            (words[1].1 - 0.5).abs() < 1e-9 && words[1].2 <= 1.0,
            "{words:?}"
        );
    }

    #[test]
    fn words_alone_are_split_too_when_the_engine_has_no_pieces() {
        let spans = [
            Span {
                segment: 3,
                offset: 0,
                len: 100,
            },
            Span {
                segment: 4,
                offset: 150,
                len: 100,
            },
        ];
        let word = |text: &str, start: f64, end: f64| Word {
            word: text.to_string(),
            start,
            end,
        };
        let transcript = Transcript {
            text: "alpha bravo charlie".into(),
            words: vec![
                word("alpha", 0.1, 0.5),
                word("bravo", 1.6, 2.0),
                word("charlie", 2.2, 2.6),
            ],
            pieces: Vec::new(),
        };
        let out = unpack(transcript, &spans, 100);
        assert_eq!(out[0].text, "alpha");
        assert_eq!(out[1].text, "bravo charlie");
        assert!((out[1].words[0].start - 0.1).abs() < 1e-9);
        assert!(
            (out[1].words[1].end - 1.0).abs() < 1e-9,
            "clamped to the span"
        );
    }

    #[test]
    fn an_empty_answer_gives_empty_segments() {
        let spans = [Span {
            segment: 0,
            offset: 0,
            len: 10,
        }];
        assert_eq!(
            unpack(Transcript::default(), &spans, 10),
            vec![Transcript::default()]
        );
    }
}
