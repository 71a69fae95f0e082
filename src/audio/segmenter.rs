//! The speech segmenter: turns one speech/non-speech decision per fixed-length frame
//! into numbered segments of the audio stream.
//!
//! It owns only counters and the state of the open segment. It receives frame
//! decisions (from [`crate::audio::vad::VadSegmenter`], or from tests) and hands on
//! [`SegmentEvent`]s, whose sample positions the caller uses to cut the audio it
//! buffered. It is pure and synchronous: no I/O, no VAD, no allocation per frame
//! (events go into a `Vec` the caller owns and reuses).
//!
//! The rules, in frame units (all converted once in [`Segmenter::new`]):
//! - a segment opens after `start_ms` of consecutive speech frames (smoothing, so a
//!   click or a cough does not open one); its start goes back `pre_roll_ms` to keep the
//!   soft onset of the first word, but never before the end of the previous segment;
//! - it closes after `hangover_ms` of consecutive silence; its end is the end of the
//!   last speech frame plus one frame of tail (trailing consonants are quiet and often
//!   judged silence), never the end of the hangover;
//! - it is cut when it reaches `max_segment_ms`; if the frame that reached the limit
//!   was speech and the next frame is speech too, the next segment opens at once,
//!   without the start smoothing, so a long monologue becomes back-to-back segments.

use crate::audio::VAD_RATES_HZ;

/// Frame lengths WebRTC VAD accepts.
pub const FRAME_MS_ALLOWED: [u32; 3] = [10, 20, 30];
/// Default frame length: the longest the VAD accepts, the fewest VAD calls.
pub const FRAME_MS_DEFAULT: u32 = 30;
/// Default run of speech needed to open a segment (three 30 ms frames).
pub const START_MS_DEFAULT: u32 = 90;
/// Default audio kept before the detected start of speech.
pub const PRE_ROLL_MS_DEFAULT: u32 = 90;
/// Default run of silence that closes a segment (server setting `vad_hangover_ms`).
pub const HANGOVER_MS_DEFAULT: u32 = 500;
/// Default forced cut (server setting `max_segment_seconds` × 1000).
pub const MAX_SEGMENT_MS_DEFAULT: u32 = 15_000;

/// How the segmenter turns frame decisions into segments. All durations are
/// converted to whole frames (rounded up, at least one frame; `pre_roll_ms` rounded
/// down, may be zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmenterConfig {
    /// Stream sample rate; one of [`VAD_RATES_HZ`].
    pub sample_rate: u32,
    /// Frame length: 10, 20 or 30 ms.
    pub frame_ms: u32,
    /// Consecutive speech needed to open a segment.
    pub start_ms: u32,
    /// Consecutive silence that closes a segment.
    pub hangover_ms: u32,
    /// Longest segment; a segment reaching it is cut there.
    pub max_segment_ms: u32,
    /// Audio kept before the detected start of speech.
    pub pre_roll_ms: u32,
}

impl SegmenterConfig {
    /// A configuration with the server's two settings and defaults for the rest.
    pub fn new(sample_rate: u32, hangover_ms: u32, max_segment_ms: u32) -> Self {
        Self {
            sample_rate,
            frame_ms: FRAME_MS_DEFAULT,
            start_ms: START_MS_DEFAULT,
            hangover_ms,
            max_segment_ms,
            pre_roll_ms: PRE_ROLL_MS_DEFAULT,
        }
    }

    /// The same configuration with another hangover.
    pub fn with_hangover(self, hangover_ms: u32) -> Self {
        Self {
            hangover_ms,
            ..self
        }
    }

    /// Samples per frame (480 for 30 ms at 16 kHz).
    pub fn frame_samples(&self) -> usize {
        (self.sample_rate as usize) * (self.frame_ms as usize) / 1000
    }

    /// Whether the rate and frame length are ones the VAD accepts.
    pub fn is_valid(&self) -> bool {
        VAD_RATES_HZ.contains(&self.sample_rate) && FRAME_MS_ALLOWED.contains(&self.frame_ms)
    }
}

impl Default for SegmenterConfig {
    fn default() -> Self {
        Self::new(16_000, HANGOVER_MS_DEFAULT, MAX_SEGMENT_MS_DEFAULT)
    }
}

/// What the segmenter tells its caller. Positions are in stream samples, counted
/// from the first sample ever pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentEvent {
    /// Speech began; start_sample is in stream samples (includes pre-roll).
    SpeechStart { segment_id: u64, start_sample: u64 },
    /// The segment is complete: [start_sample, end_sample) in stream samples. end is
    /// the end of the last speech frame (plus at most one frame of tail), NOT the end
    /// of the hangover.
    SegmentEnd {
        segment_id: u64,
        start_sample: u64,
        end_sample: u64,
    },
}

impl SegmentEvent {
    /// A finished segment's `[start_sample, end_sample)`; `None` for a start.
    pub fn finished_range(&self) -> Option<(u64, u64)> {
        match *self {
            SegmentEvent::SegmentEnd {
                start_sample,
                end_sample,
                ..
            } => Some((start_sample, end_sample)),
            SegmentEvent::SpeechStart { .. } => None,
        }
    }
}

/// The segment currently open.
#[derive(Debug, Clone, Copy)]
struct OpenSegment {
    id: u64,
    start_sample: u64,
    /// End of the last frame judged speech; the segment end is derived from it.
    speech_end_sample: u64,
    /// Consecutive silent frames since the last speech frame.
    silence_frames: u64,
}

/// The frame-decision state machine. See the module docs for the rules.
#[derive(Debug, Clone)]
pub struct Segmenter {
    config: SegmenterConfig,
    frame_samples: u64,
    start_frames: u64,
    hangover_frames: u64,
    max_segment_samples: u64,
    pre_roll_samples: u64,
    /// Frames pushed so far; frame `n` covers samples `[n, n + 1) * frame_samples`.
    frames_seen: u64,
    /// Consecutive speech frames while no segment is open.
    speech_run_frames: u64,
    /// Set when a segment was cut at the maximum length on a speech frame: the next
    /// speech frame opens a segment at once.
    continuation: bool,
    /// End of the last closed segment: the next start never goes before it.
    last_end_sample: u64,
    next_segment_id: u64,
    open: Option<OpenSegment>,
}

/// Whole frames covering `duration_ms`, rounded up, at least one.
fn frames_ceil(duration_ms: u32, frame_ms: u32) -> u64 {
    u64::from(duration_ms.div_ceil(frame_ms).max(1))
}

impl Segmenter {
    /// A segmenter at stream position zero.
    ///
    /// # Panics
    /// If `config.sample_rate` is not one of [`VAD_RATES_HZ`] or `config.frame_ms` is
    /// not 10, 20 or 30: the caller validates client parameters before this point, so
    /// a bad value here is a bug.
    pub fn new(config: SegmenterConfig) -> Self {
        assert!(config.is_valid(), "invalid segmenter config {config:?}");
        let frame_samples = config.frame_samples() as u64;
        let max_segment_frames = frames_ceil(config.max_segment_ms, config.frame_ms);
        let pre_roll_frames = u64::from(config.pre_roll_ms / config.frame_ms);
        Self {
            config,
            frame_samples,
            start_frames: frames_ceil(config.start_ms, config.frame_ms),
            hangover_frames: frames_ceil(config.hangover_ms, config.frame_ms),
            max_segment_samples: max_segment_frames * frame_samples,
            pre_roll_samples: pre_roll_frames * frame_samples,
            frames_seen: 0,
            speech_run_frames: 0,
            continuation: false,
            last_end_sample: 0,
            next_segment_id: 0,
            open: None,
        }
    }

    /// The configuration this segmenter was built with.
    pub fn config(&self) -> &SegmenterConfig {
        &self.config
    }

    /// One frame decision. Appends 0..=2 events to `out` (a start and, when the
    /// maximum length is shorter than start smoothing plus pre-roll, its forced end).
    pub fn push_frame(&mut self, is_speech: bool, out: &mut Vec<SegmentEvent>) {
        let frame_index = self.frames_seen;
        self.frames_seen += 1;
        let frame_end_sample = self.frames_seen * self.frame_samples;
        match self.open.as_mut() {
            Some(open) => {
                if is_speech {
                    open.speech_end_sample = frame_end_sample;
                    open.silence_frames = 0;
                } else {
                    open.silence_frames += 1;
                    if open.silence_frames >= self.hangover_frames {
                        self.close(out);
                        return;
                    }
                }
            }
            None => {
                if !is_speech {
                    self.speech_run_frames = 0;
                    self.continuation = false;
                    return;
                }
                self.speech_run_frames += 1;
                if self.continuation {
                    // Speech runs on past a forced cut: no smoothing, no pre-roll.
                    self.open_at(frame_index * self.frame_samples, frame_end_sample, out);
                } else if self.speech_run_frames >= self.start_frames {
                    let speech_start_frame = frame_index + 1 - self.speech_run_frames;
                    let start_sample = (speech_start_frame * self.frame_samples)
                        .saturating_sub(self.pre_roll_samples);
                    self.open_at(start_sample, frame_end_sample, out);
                } else {
                    return;
                }
            }
        }
        self.push_frame_check_max(is_speech, frame_end_sample, out);
    }

    /// Cuts the open segment if it reached the maximum length with this frame.
    fn push_frame_check_max(
        &mut self,
        is_speech: bool,
        frame_end_sample: u64,
        out: &mut Vec<SegmentEvent>,
    ) {
        let Some(open) = self.open else { return };
        if frame_end_sample - open.start_sample >= self.max_segment_samples {
            self.close(out);
            self.continuation = is_speech;
        }
    }

    /// Opens a segment whose first speech frame ends at `speech_end_sample`.
    fn open_at(&mut self, start_sample: u64, speech_end_sample: u64, out: &mut Vec<SegmentEvent>) {
        // Pre-roll never reaches into the previous segment, nor makes a segment
        // longer than the maximum (only possible with a tiny max_segment_ms).
        let start_sample = start_sample
            .max(self.last_end_sample)
            .max(speech_end_sample.saturating_sub(self.max_segment_samples));
        debug_assert!(start_sample < speech_end_sample);
        let id = self.next_segment_id;
        self.next_segment_id += 1;
        self.speech_run_frames = 0;
        self.continuation = false;
        self.open = Some(OpenSegment {
            id,
            start_sample,
            speech_end_sample,
            silence_frames: 0,
        });
        out.push(SegmentEvent::SpeechStart {
            segment_id: id,
            start_sample,
        });
    }

    /// Closes the open segment, if any, at its last speech frame plus one frame of
    /// tail (but not past the audio seen).
    fn close(&mut self, out: &mut Vec<SegmentEvent>) {
        let Some(open) = self.open.take() else { return };
        let audio_end_sample = self.frames_seen * self.frame_samples;
        let end_sample = (open.speech_end_sample + self.frame_samples).min(audio_end_sample);
        debug_assert!(open.start_sample < end_sample);
        self.last_end_sample = end_sample;
        self.speech_run_frames = 0;
        self.continuation = false;
        out.push(SegmentEvent::SegmentEnd {
            segment_id: open.id,
            start_sample: open.start_sample,
            end_sample,
        });
    }

    /// Closes the open segment now (the client's "finalize"); emits `SegmentEnd` if a
    /// segment is open. Speech still below `start_ms` is not a segment yet and is left
    /// counting, so if it goes on it opens the next segment (id + 1) as usual.
    pub fn cut(&mut self, out: &mut Vec<SegmentEvent>) {
        if self.open.is_some() {
            self.close(out);
        }
        // A forced cut's continuation does not survive an explicit cut.
        self.continuation = false;
    }

    /// End of stream: closes the open segment like [`Segmenter::cut`]; speech shorter
    /// than `start_ms` that has not opened a segment is dropped.
    pub fn finish(&mut self, out: &mut Vec<SegmentEvent>) {
        self.cut(out);
        self.speech_run_frames = 0;
    }

    /// Frame decisions pushed so far.
    pub fn frames_seen(&self) -> u64 {
        self.frames_seen
    }

    /// Whether a segment is open (its `SpeechStart` sent, its `SegmentEnd` not yet).
    pub fn in_segment(&self) -> bool {
        self.open.is_some()
    }

    /// Start sample of the open segment, if any (the streaming session uses it to
    /// know which buffered audio belongs to the segment).
    pub fn open_segment_start(&self) -> Option<u64> {
        self.open.map(|open| open.start_sample)
    }

    /// Where the open segment would end if it closed now: its last speech frame
    /// plus the frame of tail, within the audio seen, exactly as [`Self::close`]
    /// would place it. An interim transcript covers `[start, this)`: the
    /// hangover silence after the last speech is never part of it, and since
    /// this only grows until the segment closes, no interim ends after its
    /// final. `None` while no segment is open.
    pub fn open_segment_end(&self) -> Option<u64> {
        let open = self.open?;
        let audio_end_sample = self.frames_seen * self.frame_samples;
        Some((open.speech_end_sample + self.frame_samples).min(audio_end_sample))
    }

    /// The earliest sample any current or future segment can start at: a streaming
    /// caller may drop buffered audio before it. While no segment is open this trails
    /// the stream by at most start smoothing plus pre-roll.
    pub fn earliest_start_sample(&self) -> u64 {
        if let Some(open) = self.open {
            return open.start_sample;
        }
        let frames_back = if self.continuation {
            0
        } else {
            self.speech_run_frames
        };
        let speech_start_sample = (self.frames_seen - frames_back) * self.frame_samples;
        speech_start_sample
            .saturating_sub(self.pre_roll_samples)
            .max(self.last_end_sample)
    }
}

/// Check a finished run's events against the segmenter's promises: segments
/// numbered from 0 in order, each started before it ends, non-overlapping,
/// non-empty, inside the audio (`audio_end_sample`), no longer than
/// `config`'s maximum (rounded up to whole frames), and none left open. For
/// tests and fuzzers of this module and of what feeds it.
///
/// # Errors
/// The first broken promise, with the events.
pub fn check_events(
    config: &SegmenterConfig,
    events: &[SegmentEvent],
    audio_end_sample: u64,
) -> Result<(), String> {
    let max_samples = u64::from(config.max_segment_ms.div_ceil(config.frame_ms).max(1))
        * config.frame_samples() as u64;
    let mut open: Option<(u64, u64)> = None;
    let mut next_id = 0;
    let mut last_end = 0;
    let broken = |what: &str| Err(format!("{what}: {events:?}"));
    for event in events {
        match *event {
            SegmentEvent::SpeechStart {
                segment_id,
                start_sample,
            } => {
                if open.is_some() {
                    return broken("a start while a segment is open");
                }
                if segment_id != next_id {
                    return broken("segment ids out of order");
                }
                if start_sample < last_end {
                    return broken("segments overlap");
                }
                open = Some((segment_id, start_sample));
            }
            SegmentEvent::SegmentEnd {
                segment_id,
                start_sample,
                end_sample,
            } => {
                if open != Some((segment_id, start_sample)) {
                    return broken("an end that does not match the open segment");
                }
                if start_sample >= end_sample {
                    return broken("an empty segment");
                }
                if end_sample > audio_end_sample {
                    return broken("a segment past the audio");
                }
                if end_sample - start_sample > max_samples {
                    return broken("a segment longer than the maximum");
                }
                open = None;
                next_id += 1;
                last_end = end_sample;
            }
        }
    }
    if open.is_some() {
        return broken("a segment left open after finish");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 16 kHz, 30 ms frames (480 samples), start 3 frames, pre-roll 3 frames,
    /// hangover 300 ms = 10 frames, max 3 s = 100 frames.
    fn config() -> SegmenterConfig {
        SegmenterConfig::new(16_000, 300, 3_000)
    }

    const FRAME: u64 = 480;

    /// Pushes `pattern` (`#` speech, `.` silence, `|` cut) and returns all events.
    fn run(config: SegmenterConfig, pattern: &str, finish: bool) -> Vec<SegmentEvent> {
        let mut segmenter = Segmenter::new(config);
        let mut events = Vec::new();
        for decision in pattern.chars() {
            match decision {
                '#' => segmenter.push_frame(true, &mut events),
                '.' => segmenter.push_frame(false, &mut events),
                '|' => segmenter.cut(&mut events),
                _ => {}
            }
        }
        if finish {
            segmenter.finish(&mut events);
        }
        events
    }

    fn ends(events: &[SegmentEvent]) -> Vec<(u64, u64, u64)> {
        events
            .iter()
            .filter_map(|event| match *event {
                SegmentEvent::SegmentEnd {
                    segment_id,
                    start_sample,
                    end_sample,
                } => Some((segment_id, start_sample, end_sample)),
                SegmentEvent::SpeechStart { .. } => None,
            })
            .collect()
    }

    fn repeat(unit: &str, count: usize) -> String {
        unit.repeat(count)
    }

    #[test]
    fn config_defaults_and_frame_samples() {
        let config = SegmenterConfig::new(16_000, 500, 15_000);
        assert_eq!(config.frame_ms, 30);
        assert_eq!(config.start_ms, 90);
        assert_eq!(config.pre_roll_ms, 90);
        assert_eq!(config.frame_samples(), 480);
        assert_eq!(
            SegmenterConfig::new(8_000, 500, 15_000).frame_samples(),
            240
        );
        assert_eq!(
            SegmenterConfig::new(48_000, 500, 15_000).frame_samples(),
            1440
        );
        assert!(!SegmenterConfig::new(44_100, 500, 15_000).is_valid());
    }

    #[test]
    fn silence_gives_no_events() {
        assert!(run(config(), &repeat(".", 1000), true).is_empty());
    }

    #[test]
    fn one_burst_is_one_segment_with_pre_roll_and_tail() {
        // Speech in frames 20..40, then silence.
        let pattern = format!("{}{}{}", repeat(".", 20), repeat("#", 20), repeat(".", 30));
        let events = run(config(), &pattern, true);
        assert_eq!(
            events,
            vec![
                SegmentEvent::SpeechStart {
                    segment_id: 0,
                    start_sample: 17 * FRAME
                },
                SegmentEvent::SegmentEnd {
                    segment_id: 0,
                    start_sample: 17 * FRAME,
                    end_sample: 41 * FRAME
                },
            ]
        );
    }

    #[test]
    fn speech_start_is_reported_after_start_smoothing() {
        let mut segmenter = Segmenter::new(config());
        let mut events = Vec::new();
        for _ in 0..10 {
            segmenter.push_frame(false, &mut events);
        }
        segmenter.push_frame(true, &mut events);
        segmenter.push_frame(true, &mut events);
        assert!(events.is_empty() && !segmenter.in_segment());
        assert_eq!(segmenter.earliest_start_sample(), 7 * FRAME);
        segmenter.push_frame(true, &mut events);
        assert_eq!(events.len(), 1);
        assert!(segmenter.in_segment());
        assert_eq!(segmenter.open_segment_start(), Some(7 * FRAME));
        assert_eq!(segmenter.frames_seen(), 13);
    }

    #[test]
    fn pre_roll_is_clamped_at_stream_start() {
        let events = run(config(), &format!("#{}", repeat("#", 5)), true);
        assert_eq!(ends(&events), vec![(0, 0, 6 * FRAME)]);
    }

    #[test]
    fn bursts_apart_by_more_than_hangover_are_two_segments() {
        let pattern = format!(
            "{}{}{}{}",
            repeat("#", 10),
            repeat(".", 15),
            repeat("#", 10),
            repeat(".", 15)
        );
        let events = run(config(), &pattern, true);
        assert_eq!(
            ends(&events),
            vec![(0, 0, 11 * FRAME), (1, 22 * FRAME, 36 * FRAME)]
        );
    }

    #[test]
    fn bursts_apart_by_less_than_hangover_are_one_segment() {
        let pattern = format!(
            "{}{}{}{}",
            repeat("#", 10),
            repeat(".", 9),
            repeat("#", 10),
            repeat(".", 15)
        );
        assert_eq!(
            ends(&run(config(), &pattern, true)),
            vec![(0, 0, 30 * FRAME)]
        );
    }

    #[test]
    fn long_speech_is_cut_at_max_and_continues_without_smoothing() {
        // 250 frames of speech with a 100-frame maximum: 100, 100, 50.
        let events = run(config(), &repeat("#", 250), true);
        assert_eq!(
            ends(&events),
            vec![
                (0, 0, 100 * FRAME),
                (1, 100 * FRAME, 200 * FRAME),
                (2, 200 * FRAME, 250 * FRAME)
            ]
        );
        // The continuation opens on the very next frame.
        let mut segmenter = Segmenter::new(config());
        let mut events = Vec::new();
        for _ in 0..100 {
            segmenter.push_frame(true, &mut events);
        }
        assert!(!segmenter.in_segment());
        segmenter.push_frame(true, &mut events);
        assert_eq!(segmenter.open_segment_start(), Some(100 * FRAME));
    }

    #[test]
    fn cut_at_max_during_silence_needs_smoothing_again() {
        // Speech 0..95, silence 95..105 (max reached at frame 100 inside the
        // hangover), then speech again.
        let pattern = format!("{}{}{}", repeat("#", 95), repeat(".", 6), repeat("#", 10));
        let events = run(config(), &pattern, true);
        assert_eq!(
            ends(&events),
            vec![(0, 0, 96 * FRAME), (1, 98 * FRAME, 111 * FRAME)]
        );
    }

    #[test]
    fn max_shorter_than_smoothing_gives_start_and_end_together() {
        let config = SegmenterConfig {
            max_segment_ms: 30,
            ..config()
        };
        let mut segmenter = Segmenter::new(config);
        let mut events = Vec::new();
        for _ in 0..3 {
            segmenter.push_frame(true, &mut events);
        }
        // The start is pulled forward so the segment is no longer than the maximum.
        assert_eq!(events.len(), 2);
        assert_eq!(ends(&events), vec![(0, 2 * FRAME, 3 * FRAME)]);
    }

    #[test]
    fn cut_mid_speech_ends_now_and_later_speech_opens_next_id() {
        let pattern = format!("{}|{}", repeat("#", 10), repeat("#", 10));
        let events = run(config(), &pattern, true);
        assert_eq!(
            ends(&events),
            vec![(0, 0, 10 * FRAME), (1, 10 * FRAME, 20 * FRAME)]
        );
    }

    #[test]
    fn finish_mid_speech_closes_the_segment() {
        let pattern = format!("{}{}", repeat(".", 5), repeat("#", 10));
        let events = run(config(), &pattern, true);
        assert_eq!(ends(&events), vec![(0, 2 * FRAME, 15 * FRAME)]);
        assert!(ends(&run(config(), &pattern, false)).is_empty());
    }

    #[test]
    fn cut_and_finish_when_idle_do_nothing() {
        assert!(run(config(), "..|..|", true).is_empty());
        // Pending speech shorter than start_ms is dropped at the end of stream...
        assert!(run(config(), "....##", true).is_empty());
        // ...but survives a cut and opens a segment if it goes on.
        assert_eq!(
            ends(&run(config(), "....##|#...", true)),
            vec![(0, FRAME, 8 * FRAME)]
        );
    }

    #[test]
    fn short_blips_under_start_ms_are_ignored() {
        let pattern = repeat("##...#.", 50);
        assert!(run(config(), &pattern, true).is_empty());
    }

    #[test]
    fn pre_roll_never_reaches_into_the_previous_segment() {
        // Hangover of one frame so segments can sit close together.
        let config = SegmenterConfig {
            hangover_ms: 30,
            ..config()
        };
        let events = run(config, "#####.####", true);
        assert_eq!(
            ends(&events),
            vec![(0, 0, 6 * FRAME), (1, 6 * FRAME, 10 * FRAME)]
        );
    }

    /// Checks every rule the streaming session relies on.
    #[derive(Debug, Clone, Copy)]
    enum Step {
        Frame(bool),
        Cut,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            10 => any::<bool>().prop_map(Step::Frame),
            // Runs make segments and hangovers likelier than coin flips would.
            1 => Just(Step::Cut),
        ]
    }

    fn config_strategy() -> impl Strategy<Value = SegmenterConfig> {
        (
            prop::sample::select(vec![8_000u32, 16_000, 32_000, 48_000]),
            prop::sample::select(vec![10u32, 20, 30]),
            0u32..200,
            0u32..800,
            0u32..3_000,
            0u32..300,
        )
            .prop_map(
                |(rate, frame_ms, start, hangover, max, pre_roll)| SegmenterConfig {
                    sample_rate: rate,
                    frame_ms,
                    start_ms: start,
                    hangover_ms: hangover,
                    max_segment_ms: max,
                    pre_roll_ms: pre_roll,
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// What an interim would report at any moment lies inside the span
        /// its segment's final reports (the open end never passes the end
        /// `close` gives, and never goes backwards). The oracle is the
        /// events' own `SegmentEnd`, placed by `close`.
        #[test]
        fn an_open_segment_never_ends_after_its_final(
            config in config_strategy(),
            runs in prop::collection::vec((step(), 1usize..40), 0..60),
        ) {
            let mut segmenter = Segmenter::new(config);
            let mut events = Vec::new();
            // (segment id, start, the largest open end seen)
            let mut seen: Vec<(u64, u64, u64)> = Vec::new();
            let mut observe = |segmenter: &Segmenter, events: &[SegmentEvent]| {
                let Some(end) = segmenter.open_segment_end() else { return };
                let start = segmenter.open_segment_start().unwrap_or(0);
                let starts = events
                    .iter()
                    .filter(|e| matches!(e, SegmentEvent::SpeechStart { .. }))
                    .count() as u64;
                let id = starts - 1;
                match seen.last_mut() {
                    Some(last) if last.0 == id => {
                        assert!(end >= last.2, "the open end went backwards");
                        last.2 = end;
                    }
                    _ => seen.push((id, start, end)),
                }
            };
            for (step, count) in runs {
                match step {
                    Step::Frame(is_speech) => {
                        for _ in 0..count {
                            segmenter.push_frame(is_speech, &mut events);
                            observe(&segmenter, &events);
                        }
                    }
                    Step::Cut => segmenter.cut(&mut events),
                }
            }
            segmenter.finish(&mut events);
            for (id, start, open_end) in seen {
                let (final_start, final_end) = events
                    .iter()
                    .find_map(|e| match *e {
                        SegmentEvent::SegmentEnd { segment_id, start_sample, end_sample }
                            if segment_id == id => Some((start_sample, end_sample)),
                        _ => None,
                    })
                    .expect("every segment ends");
                prop_assert_eq!(start, final_start);
                prop_assert!(
                    open_end <= final_end && open_end > start,
                    "segment {}: open end {} outside [{}, {}]", id, open_end, final_start, final_end
                );
            }
        }

        #[test]
        fn segments_are_well_formed(
            config in config_strategy(),
            runs in prop::collection::vec((step(), 1usize..40), 0..60),
        ) {
            let mut segmenter = Segmenter::new(config);
            let mut events = Vec::new();
            for (step, count) in runs {
                let before = events.len();
                match step {
                    Step::Frame(is_speech) => {
                        for _ in 0..count {
                            let before_frame = events.len();
                            segmenter.push_frame(is_speech, &mut events);
                            prop_assert!(events.len() - before_frame <= 2);
                        }
                    }
                    Step::Cut => segmenter.cut(&mut events),
                }
                prop_assert!(events.len() >= before);
                if let Some(start) = segmenter.open_segment_start() {
                    prop_assert!(segmenter.in_segment());
                    prop_assert_eq!(segmenter.earliest_start_sample(), start);
                }
            }
            segmenter.finish(&mut events);
            let audio_end = segmenter.frames_seen() * config.frame_samples() as u64;
            if let Err(broken) = check_events(&config, &events, audio_end) {
                prop_assert!(false, "{}", broken);
            }
        }
    }
}
