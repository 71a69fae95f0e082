//! Target `vad_segmenter`: voice activity detection and segmentation, from
//! raw samples, synthetic speech or bare frame decisions: the segments do not
//! depend on how the audio is split, are well formed, and the batch path
//! finds exactly the segments the stream path does.

use transcription_service::audio::{
    segment_all, Pcm, SegmentEvent, Segmenter, SegmenterConfig, VadSegmenter, VAD_RATES_HZ,
};

use super::input::Input;
use super::synth::synth_audio;

/// `[mode][rate][frame][start u16][hangover u16][max u16][pre-roll u16][vad][cuts x3 u16][...]`.
/// Mode % 3: 0 = the rest is PCM16 samples; 1 = the rest is runs of synthetic
/// audio (kind, 10 ms blocks, seed); 2 = the rest is frame decisions for the
/// pure `Segmenter` (a bit each; byte 0xFF is a cut). Samples are pushed in
/// pieces split at the cuts, with `cut()` at the second, and again in other
/// pieces: the events must agree and be well-formed.
pub fn vad_segmenter(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.u8() % 3;
    let config = SegmenterConfig {
        sample_rate: VAD_RATES_HZ[usize::from(input.u8()) % VAD_RATES_HZ.len()],
        frame_ms: [10, 20, 30][usize::from(input.u8()) % 3],
        start_ms: u32::from(input.u16()) % 1_000,
        hangover_ms: u32::from(input.u16()) % 10_001,
        max_segment_ms: u32::from(input.u16()) % 30_001,
        pre_roll_ms: u32::from(input.u16()) % 1_000,
    };
    let vad_mode = input.u8() % 4;
    let cuts = [input.u16(), input.u16(), input.u16()];
    if mode == 2 {
        run_segmenter(config, input.rest());
        return;
    }
    let samples: Vec<i16> = if mode == 0 {
        input
            .rest()
            .chunks_exact(2)
            .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
            .collect()
    } else {
        let mut samples = Vec::new();
        while !input.is_empty() && samples.len() < 3 * config.sample_rate as usize {
            let kind = input.u8();
            let blocks = 1 + usize::from(input.u8());
            let seed = u32::from(input.u8());
            samples.extend(synth_audio(kind, blocks, config.sample_rate, seed));
        }
        samples
    };
    let mut cuts: Vec<usize> = cuts
        .iter()
        .map(|&cut| usize::from(cut) % (samples.len() + 1))
        .collect();
    cuts.sort_unstable();
    let cut_at = cuts[1];

    // As given, cut at the middle point.
    let first = run_vad(config, vad_mode, &samples, &cuts, Some(cut_at));
    // In 10 ms-ish pieces of another size, cut at the same point.
    let step = 1 + (config.sample_rate as usize / 100 + usize::from(cuts[0] as u8)) / 3;
    let mut other_cuts: Vec<usize> = (step..samples.len()).step_by(step).collect();
    other_cuts.push(cut_at);
    other_cuts.sort_unstable();
    let second = run_vad(config, vad_mode, &samples, &other_cuts, Some(cut_at));
    assert_eq!(
        first, second,
        "the same samples in other pieces segment otherwise"
    );
    // Without the cut, as the batch path does it: the batch path must find
    // the segments the stream's events announce.
    let uncut = run_vad(config, vad_mode, &samples, &cuts, None);
    let pairs = segment_ranges(&uncut);
    let pcm = Pcm {
        samples,
        sample_rate: config.sample_rate,
    };
    assert_eq!(segment_all(&pcm, config, vad_mode), pairs);
}

/// The oracle for the batch path, independent of the code under test (not
/// `SegmentEvent::finished_range`, which the batch path itself uses): each
/// segment runs from the `start_sample` its `SpeechStart` announced to the
/// `end_sample` of the `SegmentEnd` with the same id.
fn segment_ranges(events: &[SegmentEvent]) -> Vec<(u64, u64)> {
    let mut open: Option<(u64, u64)> = None;
    let mut ranges = Vec::new();
    for event in events {
        match *event {
            SegmentEvent::SpeechStart {
                segment_id,
                start_sample,
            } => {
                assert_eq!(open, None, "a segment starts inside segment {open:?}");
                open = Some((segment_id, start_sample));
            }
            SegmentEvent::SegmentEnd {
                segment_id,
                start_sample,
                end_sample,
            } => {
                let started = open.take();
                assert_eq!(
                    started,
                    Some((segment_id, start_sample)),
                    "segment {segment_id} ends without the start it announced"
                );
                ranges.push((start_sample, end_sample));
            }
        }
    }
    assert_eq!(open, None, "a segment was never closed");
    ranges
}

fn run_vad(
    config: SegmenterConfig,
    vad_mode: u8,
    samples: &[i16],
    cuts: &[usize],
    cut_at: Option<usize>,
) -> Vec<SegmentEvent> {
    let mut vad = VadSegmenter::new(config, vad_mode);
    let mut events = Vec::new();
    let mut from = 0;
    let mut cut_done = false;
    for &cut in cuts.iter().chain([&samples.len()]) {
        vad.push(&samples[from..cut], &mut events);
        from = cut;
        assert_eq!(vad.samples_seen(), cut as u64);
        if cut_at == Some(cut) && !cut_done {
            cut_done = true;
            vad.cut(&mut events);
        }
        let segmenter = vad.segmenter();
        assert!(segmenter.frames_seen() * config.frame_samples() as u64 <= cut as u64);
        if let Some(start) = segmenter.open_segment_start() {
            assert_eq!(segmenter.earliest_start_sample(), start);
        }
    }
    vad.finish(&mut events);
    let audio_end = vad.segmenter().frames_seen() * config.frame_samples() as u64;
    assert!(audio_end <= samples.len() as u64);
    check_segment_events(&config, &events, audio_end);
    events
}

fn run_segmenter(config: SegmenterConfig, decisions: &[u8]) {
    let mut segmenter = Segmenter::new(config);
    let mut events = Vec::new();
    for &byte in decisions {
        if byte == 0xFF {
            segmenter.cut(&mut events);
            continue;
        }
        for bit in 0..8 {
            let before = events.len();
            let earliest = segmenter.earliest_start_sample();
            segmenter.push_frame(byte >> bit & 1 == 1, &mut events);
            assert!(events.len() - before <= 2);
            // Nothing before the earliest start may be needed later.
            for event in &events[before..] {
                if let SegmentEvent::SpeechStart { start_sample, .. } = event {
                    assert!(
                        *start_sample >= earliest,
                        "a segment starts before the earliest start promised"
                    );
                }
            }
            assert!(
                segmenter.earliest_start_sample() >= earliest,
                "earliest start went backwards"
            );
        }
    }
    segmenter.finish(&mut events);
    let audio_end = segmenter.frames_seen() * config.frame_samples() as u64;
    check_segment_events(&config, &events, audio_end);
}

/// Segments in order, numbered from 0, non-overlapping, non-empty, inside the
/// audio, no longer than the maximum, and all closed: the segmenter's own
/// contract check.
fn check_segment_events(config: &SegmenterConfig, events: &[SegmentEvent], audio_end: u64) {
    if let Err(broken) =
        transcription_service::audio::segmenter::check_events(config, events, audio_end)
    {
        panic!("{broken}");
    }
}
