//! Resuming a session on a new connection: the audio offset the two sides
//! agree on. The server has taken [`Session::samples_received`] samples; a
//! resuming client says where its audio starts (`from_sample`). Audio it
//! sends again (before the server's offset) is skipped, sample for sample,
//! so nothing is doubled; audio it would leave out (a start after the
//! server's offset) is a gap, refused ([`ResumeGap`]) because the timeline
//! would silently shift.

use super::Session;

/// A resuming client's audio would start after what the server has: the
/// samples in between are lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumeGap {
    /// Where the server's audio ends (the sample the client must resume from
    /// at the latest).
    pub server_samples: u64,
}

impl Session {
    /// Stream samples taken so far (after any skipped overlap).
    pub fn samples_received(&self) -> u64 {
        self.samples_received
    }

    /// The session continues on a new connection whose audio starts at
    /// stream sample `from_sample` (`None`: exactly where the server's ends).
    /// A half sample left over from the old connection is dropped: the
    /// client sends that sample again. The resume counts as activity (the
    /// idle timer starts again). Returns how many samples of the client's
    /// audio will be skipped.
    ///
    /// # Errors
    /// [`ResumeGap`] when `from_sample` is past the server's audio.
    pub fn resume_from(
        &mut self,
        from_sample: Option<u64>,
        now: std::time::Instant,
    ) -> Result<u64, ResumeGap> {
        let server_samples = self.samples_received;
        let from = from_sample.unwrap_or(server_samples);
        if from > server_samples {
            return Err(ResumeGap { server_samples });
        }
        self.odd_byte = None;
        self.last_activity = now;
        self.skip_samples = server_samples - from;
        Ok(self.skip_samples)
    }

    /// How many of the next `available` samples are skipped (resumed
    /// overlap), counting them off.
    pub(super) fn take_skipped(&mut self, available: usize) -> usize {
        let skipped = usize::try_from(self.skip_samples)
            .unwrap_or(usize::MAX)
            .min(available);
        self.skip_samples -= skipped as u64;
        skipped
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use crate::session::{Session, SessionConfig, StreamParams};

    fn session() -> Session {
        let config = SessionConfig {
            vad_hangover_ms: 300,
            max_segment_ms: 30_000,
            interim_interval_ms: 500,
            finals_waiting_max: 8,
            finals_in_flight_max: usize::MAX,
        };
        Session::new("s".into(), StreamParams::new(2), config, Instant::now())
    }

    fn pcm(samples: std::ops::Range<i16>) -> Vec<u8> {
        samples.flat_map(i16::to_le_bytes).collect()
    }

    #[test]
    fn overlap_sent_again_is_skipped_sample_for_sample() {
        let mut session = session();
        let now = Instant::now();
        session.on_audio(&pcm(0..100), now);
        // Half a sample was on its way when the connection dropped.
        session.on_audio(&[7], now);
        assert_eq!(session.samples_received(), 100);
        assert_eq!(session.resume_from(Some(60), now), Ok(40));
        // The client resends from sample 60, in odd pieces.
        let again = pcm(60..130);
        session.on_audio(&again[..41], now);
        session.on_audio(&again[41..], now);
        assert_eq!(session.samples_received(), 130);
        assert_eq!(session.resume_from(None, now), Ok(0));
        assert_eq!(session.resume_from(Some(130), now), Ok(0));
    }

    #[test]
    fn a_resume_past_the_servers_audio_is_a_gap() {
        let mut session = session();
        session.on_audio(&pcm(0..50), Instant::now());
        assert_eq!(
            session.resume_from(Some(51), Instant::now()),
            Err(super::ResumeGap { server_samples: 50 })
        );
        // Nothing changed: a later resume from the right place works.
        assert_eq!(session.resume_from(Some(50), Instant::now()), Ok(0));
    }
}
