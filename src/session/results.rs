//! The session's model work: the next job to submit (finals first, in
//! order, then an interim when one is due), a job the pool refused, and a
//! result coming back (interims dropped once their final is decided, finals
//! released in segment order).

use std::time::Instant;

use super::{EventWord, JobRequest, OpenSegment, Session, SessionEvent, SessionState};
use crate::error::WsErrorKind;
use crate::model::pool::JobKind;
use crate::model::{EngineError, Transcript};

impl Session {
    /// The next model job to submit: waiting finals first (in order), then an
    /// interim when one is due. The job counts as in flight until
    /// [`Session::job_refused`] or [`Session::on_result`].
    pub fn next_job(&mut self) -> Option<JobRequest> {
        if self.state == SessionState::Closed {
            return None;
        }
        if !self.finals_waiting.is_empty() {
            // Finals first: at the session's bound, nothing else goes either.
            if self.finals_in_flight >= self.config.finals_in_flight_max {
                return None;
            }
            let job = self.finals_waiting.pop_front()?;
            self.finals_in_flight += 1;
            return Some(job);
        }
        self.next_interim()
    }

    fn next_interim(&mut self) -> Option<JobRequest> {
        if !self.params.interim_results || self.interim_in_flight || self.ending.is_some() {
            return None;
        }
        let open = self.open?;
        let interval =
            u64::from(self.config.interim_interval_ms) * u64::from(self.params.sample_rate) / 1000;
        // The interim ends where the segment would end now (its last voiced
        // frame plus the tail), not at the audio received: hangover silence
        // is no part of it, so its span lies inside its final's.
        let end_sample = self
            .vad
            .as_ref()?
            .segmenter()
            .open_segment_end()?
            .max(open.start_sample);
        if end_sample < open.interim_end_sample + interval {
            return None;
        }
        let samples = self.buffered(open.start_sample, end_sample).to_vec();
        self.interim_in_flight = true;
        self.open = Some(OpenSegment {
            interim_end_sample: end_sample,
            ..open
        });
        Some(JobRequest {
            kind: JobKind::Interim,
            segment_id: open.id,
            start_sample: open.start_sample,
            end_sample,
            samples,
        })
    }

    /// The pool refused a job (queue full). A final goes back to the front of
    /// the line; an interim is shed.
    pub fn job_refused(&mut self, job: JobRequest) {
        match job.kind {
            JobKind::Final => {
                self.finals_in_flight -= 1;
                if self.state != SessionState::Closed {
                    self.finals_waiting.push_front(job);
                    if !self.overload_warned {
                        self.overload_warned = true;
                        self.send_error(
                            WsErrorKind::Overloaded,
                            "the model queue is full: finals are delayed, interims skipped"
                                .to_string(),
                        );
                    }
                }
            }
            _ => {
                // Shed: the next interim is due after another interval of speech.
                self.interim_in_flight = false;
                self.tally.interims_shed += 1;
            }
        }
    }

    /// The interim in flight was given up because its segment's final went
    /// to the engine: its result could only arrive after the final, to be
    /// dropped, so the engine is spared computing it.
    pub fn interim_superseded(&mut self) {
        self.interim_in_flight = false;
        self.tally.interims_superseded += 1;
    }

    /// A model result for a job from [`Session::next_job`].
    pub fn on_result(
        &mut self,
        kind: JobKind,
        segment_id: u64,
        start_sample: u64,
        end_sample: u64,
        result: Result<Transcript, EngineError>,
        now: Instant,
    ) {
        match kind {
            JobKind::Final => self.on_final(segment_id, start_sample, end_sample, result, now),
            _ => self.on_interim(segment_id, start_sample, end_sample, result),
        }
    }

    fn on_interim(
        &mut self,
        segment_id: u64,
        start_sample: u64,
        end_sample: u64,
        result: Result<Transcript, EngineError>,
    ) {
        self.interim_in_flight = false;
        if self.state == SessionState::Closed
            || segment_id < self.next_final
            || self.finals_ready.contains_key(&segment_id)
        {
            // Its final is out (or decided): an interim now would go backwards.
            return;
        }
        let Ok(transcript) = result else {
            return;
        };
        if transcript.text.is_empty() {
            return;
        }
        let rate = f64::from(self.params.sample_rate);
        self.figures.transcripts += 1;
        self.tally.interims_sent += 1;
        self.pending.push_back(SessionEvent::Interim {
            segment_id,
            text: transcript.text,
            start_s: start_sample as f64 / rate,
            end_s: end_sample as f64 / rate,
        });
    }

    fn on_final(
        &mut self,
        segment_id: u64,
        start_sample: u64,
        end_sample: u64,
        result: Result<Transcript, EngineError>,
        now: Instant,
    ) {
        if self.state == SessionState::Closed {
            return;
        }
        self.finals_in_flight -= 1;
        let rate = f64::from(self.params.sample_rate);
        let start = start_sample as f64 / rate;
        let end = self
            .segment_closed_at
            .get(&segment_id)
            .map(|(_, end)| *end)
            .unwrap_or_default();
        let event = match result {
            Ok(transcript) => SessionEvent::Final {
                segment_id,
                text: transcript.text,
                start_s: start,
                end_s: end_sample as f64 / rate,
                words: transcript
                    .words
                    .into_iter()
                    .map(|word| EventWord {
                        word: word.word,
                        start_s: start + word.start,
                        end_s: start + word.end,
                    })
                    .collect(),
                end,
            },
            Err(EngineError::Unavailable(message)) => SessionEvent::Error {
                kind: WsErrorKind::Overloaded,
                message: format!(
                    "segment {segment_id} could not be transcribed: no engine available: {message}"
                ),
                retry_after_s: Some(crate::engine::remote::RETRY_AFTER_S),
            },
            Err(error) => SessionEvent::Error {
                kind: WsErrorKind::Internal,
                message: format!("segment {segment_id} could not be transcribed: {error}"),
                retry_after_s: None,
            },
        };
        self.finals_ready.insert(segment_id, event);
        while let Some(event) = self.finals_ready.remove(&self.next_final) {
            if let Some((closed_at, _)) = self.segment_closed_at.remove(&self.next_final) {
                self.tally
                    .final_latencies
                    .push(now.saturating_duration_since(closed_at));
            }
            if matches!(event, SessionEvent::Final { .. }) {
                self.figures.transcripts += 1;
                self.tally.finals_sent += 1;
            }
            self.pending.push_back(event);
            self.next_final += 1;
            // An utterance end waiting for this final follows it.
            self.flush_utterance_ends();
        }
        if self.finals_waiting.is_empty() {
            self.overload_warned = false;
        }
        self.close_if_done();
    }
}
