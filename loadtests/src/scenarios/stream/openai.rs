//! The OpenAI Realtime dialect of `stream` (`--dialect openai`): the same
//! sessions, schedule and checks, spoken as an OpenAI Realtime
//! transcription client on `/v1/realtime?intent=transcription`.
//!
//! * The audio is the WAV resampled to 24 kHz (OpenAI's rate; the server
//!   resamples it back to 16 kHz), each chunk a text frame
//!   `{"type":"input_audio_buffer.append","audio":"<base64>"}`.
//! * The end is `input_audio_buffer.commit`, then a second commit with an
//!   event id ([`END_PROBE`]) that the server refuses as empty: once that
//!   refusal is in, everything sent before has been handled, and the session
//!   is over when every committed item has its `completed` (or `failed`).
//!   The client then closes (1000): OpenAI's server never ends a session
//!   itself.
//! * [`OpenAiEvents`] turns the server's events into the native
//!   [`ServerMsg`]s the session core checks: `session.created` →
//!   `session_start`, `speech_started` → `speech_start` (items numbered in
//!   order), `completed` → a final whose `end` is the item's
//!   `audio_end_ms` (so final lags are measured alike), the end above →
//!   `session_end`. Deltas carry no audio time: they are counted, not
//!   timed.

use std::collections::HashMap;

use serde_json::Value;

use crate::streaming::ServerMsg;
use crate::wav::Pcm16;

/// The path and fixed query of the dialect.
pub const PATH: &str = "/v1/realtime?intent=transcription";

/// The rate OpenAI's Realtime API takes.
pub const RATE_HZ: u32 = 24_000;

/// The end of audio: commit what is left.
pub const END_MESSAGE: &str = r#"{"type":"input_audio_buffer.commit"}"#;

/// Sent right after [`END_MESSAGE`]: a second commit, which always finds the
/// buffer empty, so its `input_audio_buffer_commit_empty` error (carrying
/// this event id) says the server has handled everything sent before.
pub const END_PROBE: &str = r#"{"type":"input_audio_buffer.commit","event_id":"loadgen_end"}"#;

/// The event id of [`END_PROBE`].
const END_PROBE_ID: &str = "loadgen_end";

/// `audio` at the dialect's 24 kHz (linear interpolation, done once at
/// start).
pub fn at_realtime_rate(audio: Pcm16) -> Pcm16 {
    if audio.sample_rate == RATE_HZ {
        return audio;
    }
    let samples: Vec<f64> = audio
        .data
        .chunks_exact(2)
        .map(|pair| f64::from(i16::from_le_bytes([pair[0], pair[1]])))
        .collect();
    if samples.is_empty() {
        return Pcm16 {
            sample_rate: RATE_HZ,
            data: Vec::new(),
        };
    }
    let count = (samples.len() as u64 * u64::from(RATE_HZ) / u64::from(audio.sample_rate)) as usize;
    let step = f64::from(audio.sample_rate) / f64::from(RATE_HZ);
    let last = samples.len() - 1;
    let mut data = Vec::with_capacity(count * 2);
    for index in 0..count {
        let position = index as f64 * step;
        let left = (position.floor() as usize).min(last);
        let right = (left + 1).min(last);
        let fraction = position - left as f64;
        let value = samples[left] * (1.0 - fraction) + samples[right] * fraction;
        data.extend_from_slice(&(value.round() as i16).to_le_bytes());
    }
    Pcm16 {
        sample_rate: RATE_HZ,
        data,
    }
}

/// The `append` event carrying `pcm`, written into `out` (cleared first).
pub fn append_event(pcm: &[u8], out: &mut Vec<u8>) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    out.clear();
    out.extend_from_slice(br#"{"type":"input_audio_buffer.append","audio":""#);
    for chunk in pcm.chunks(3) {
        let word = u32::from(chunk[0]) << 16
            | u32::from(*chunk.get(1).unwrap_or(&0)) << 8
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for index in 0..4 {
            out.push(if index <= chunk.len() {
                ALPHABET[(word >> (18 - 6 * index) & 63) as usize]
            } else {
                b'='
            });
        }
    }
    out.extend_from_slice(b"\"}");
}

/// The server's events of one session, turned into native messages.
#[derive(Debug, Clone, Default)]
pub struct OpenAiEvents {
    /// Item id → (segment number, end of its speech in seconds).
    items: HashMap<String, (u64, f64)>,
    next_segment: u64,
    committed: u64,
    answered: u64,
    commit_answered: bool,
    ended: bool,
    /// Deltas received (interims).
    pub deltas: u64,
}

impl OpenAiEvents {
    /// The native messages one server event stands for, appended to `out`
    /// (at most two: the event's own, then `session_end` when it completes
    /// the session).
    ///
    /// # Errors
    /// What is wrong with a malformed event.
    pub fn translate(&mut self, text: &str, out: &mut Vec<ServerMsg>) -> Result<(), String> {
        let event: Value = serde_json::from_str(text).map_err(|e| format!("not JSON ({e})"))?;
        let kind = event
            .get("type")
            .and_then(Value::as_str)
            .ok_or("no string `type`")?;
        if event.get("event_id").and_then(Value::as_str).is_none() {
            return Err(format!("{kind} without an event_id"));
        }
        let item_id = || {
            event
                .get("item_id")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or(format!("{kind} without an item_id"))
        };
        match kind {
            "session.created" => out.push(ServerMsg::SessionStart {
                session_id: event["session"]["id"].as_str().unwrap_or("").to_string(),
            }),
            "input_audio_buffer.speech_started" => {
                let segment_id = self.next_segment;
                self.next_segment += 1;
                self.items.insert(item_id()?, (segment_id, 0.0));
                out.push(ServerMsg::SpeechStart { segment_id });
            }
            "input_audio_buffer.speech_stopped" => {
                let end_ms = event["audio_end_ms"].as_f64().ok_or("no audio_end_ms")?;
                if let Some(item) = self.items.get_mut(&item_id()?) {
                    item.1 = end_ms / 1000.0;
                }
                out.push(ServerMsg::Other(kind.into()));
            }
            "input_audio_buffer.committed" => {
                self.committed += 1;
                out.push(ServerMsg::Other(kind.into()));
            }
            "conversation.item.input_audio_transcription.delta" => {
                self.deltas += 1;
                out.push(ServerMsg::Other(kind.into()));
            }
            "conversation.item.input_audio_transcription.completed"
            | "conversation.item.input_audio_transcription.failed" => {
                self.answered += 1;
                let id = item_id()?;
                match self.items.remove(&id) {
                    Some((segment_id, end)) if kind.ends_with("completed") => {
                        out.push(ServerMsg::Transcript {
                            segment_id,
                            is_final: true,
                            end,
                        });
                    }
                    Some(_) => out.push(ServerMsg::Error {
                        code: "transcription_failed".into(),
                    }),
                    // An item without speech (silence committed): no segment.
                    None => out.push(ServerMsg::Other(kind.into())),
                }
            }
            "error" => {
                let code = event["error"]["code"].as_str().unwrap_or("").to_string();
                let probe = event["error"]["event_id"].as_str() == Some(END_PROBE_ID);
                if code == "input_audio_buffer_commit_empty" {
                    // Our first commit may find nothing left; the probe's
                    // refusal is the end.
                    self.commit_answered |= probe;
                    out.push(ServerMsg::Other(kind.into()));
                } else {
                    out.push(ServerMsg::Error { code });
                }
            }
            other => out.push(ServerMsg::Other(other.into())),
        }
        if !self.ended && self.commit_answered && self.answered >= self.committed {
            self.ended = true;
            out.push(ServerMsg::SessionEnd {
                reason: "client_end".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(events: &mut OpenAiEvents, text: &str) -> Vec<ServerMsg> {
        let mut out = Vec::new();
        events.translate(text, &mut out).unwrap();
        out
    }

    #[test]
    fn append_events_carry_base64() {
        let mut out = Vec::new();
        append_event(b"foob", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"type":"input_audio_buffer.append","audio":"Zm9vYg=="}"#
        );
    }

    #[test]
    fn audio_is_resampled_to_24k() {
        let audio = Pcm16 {
            sample_rate: 16_000,
            data: vec![0; 3200],
        };
        let out = at_realtime_rate(audio);
        assert_eq!(out.sample_rate, 24_000);
        assert_eq!(out.data.len(), 4800);
    }

    #[test]
    fn a_session_ends_when_the_last_commit_is_answered() {
        let mut events = OpenAiEvents::default();
        let mut run = |text: &str| translate(&mut events, text);
        assert!(matches!(
            run(r#"{"type":"session.created","event_id":"e1","session":{"id":"s"}}"#)[0],
            ServerMsg::SessionStart { .. }
        ));
        run(
            r#"{"type":"input_audio_buffer.speech_started","event_id":"e2","item_id":"i1","audio_start_ms":100}"#,
        );
        run(
            r#"{"type":"input_audio_buffer.speech_stopped","event_id":"e3","item_id":"i1","audio_end_ms":1500}"#,
        );
        run(r#"{"type":"input_audio_buffer.committed","event_id":"e4","item_id":"i1"}"#);
        // A refusal of another commit is not the end.
        let out = translate(
            &mut events,
            r#"{"type":"error","event_id":"e4b","error":{"code":"input_audio_buffer_commit_empty","event_id":null}}"#,
        );
        assert_eq!(out.len(), 1);
        let out = translate(
            &mut events,
            r#"{"type":"error","event_id":"e5","error":{"code":"input_audio_buffer_commit_empty","event_id":"loadgen_end"}}"#,
        );
        assert_eq!(out.len(), 1, "the item is not complete yet");
        let out = translate(
            &mut events,
            r#"{"type":"conversation.item.input_audio_transcription.completed","event_id":"e6","item_id":"i1","transcript":"a"}"#,
        );
        assert!(matches!(
            out[0],
            ServerMsg::Transcript { segment_id: 0, is_final: true, end } if (end - 1.5).abs() < 1e-9
        ));
        assert!(matches!(out[1], ServerMsg::SessionEnd { .. }));
    }
}
