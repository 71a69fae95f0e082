//! The wire dialects `stream` can speak (`--dialect`): the server's native
//! protocol, Deepgram's live dialect (`/v1/listen`), or OpenAI's Realtime
//! transcription (`/v1/realtime`). A dialect decides the upgrade's path and
//! query, how the key is sent, the end-of-audio message, and how server
//! messages read: Deepgram's ([`DeepgramReader`]) and OpenAI's
//! ([`OpenAiEvents`]) are translated into the native vocabulary of
//! [`ServerMsg`](crate::streaming::ServerMsg), so the scenario's checks and
//! lag measures apply unchanged. OpenAI's also carries its audio in base64
//! text events at 24 kHz (`scenarios::stream::openai`).

use crate::scenarios::stream::openai::{self, OpenAiEvents};
use crate::streaming::ServerMsg;
use crate::wav::Pcm16;

/// A streaming dialect.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Dialect {
    /// `GET /v1/transcribe/stream`, the server's own JSON protocol.
    #[default]
    Native,
    /// `GET /v1/listen`, Deepgram's live dialect.
    Deepgram,
    /// `GET /v1/realtime?intent=transcription`, OpenAI's Realtime
    /// transcription (mux driver only).
    Openai,
}

impl Dialect {
    /// The name used on the command line and in the JSON line.
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Native => "native",
            Dialect::Deepgram => "deepgram",
            Dialect::Openai => "openai",
        }
    }

    /// The upgrade's path and the query that sets the stream up (without
    /// the caller's extra parameters). Deepgram's asks for `SpeechStarted`,
    /// which the checks need to number segments.
    pub fn path_and_query(self, sample_rate: u32, interim: bool) -> String {
        match self {
            Dialect::Native => {
                format!("/v1/transcribe/stream?sample_rate={sample_rate}&interim_results={interim}")
            }
            Dialect::Deepgram => format!(
                "/v1/listen?encoding=linear16&sample_rate={sample_rate}&channels=1&interim_results={interim}&vad_events=true"
            ),
            Dialect::Openai => openai::PATH.to_string(),
        }
    }

    /// `audio` as the dialect sends it: 24 kHz for OpenAI, as it is for
    /// the others.
    pub fn audio(self, audio: Pcm16) -> Pcm16 {
        match self {
            Dialect::Openai => openai::at_realtime_rate(audio),
            Dialect::Native | Dialect::Deepgram => audio,
        }
    }

    /// The text message that ends the audio (OpenAI's is followed by
    /// [`openai::END_PROBE`]).
    pub fn end_message(self) -> &'static str {
        match self {
            Dialect::Native => r#"{"type":"end"}"#,
            Dialect::Deepgram => r#"{"type":"CloseStream"}"#,
            Dialect::Openai => openai::END_MESSAGE,
        }
    }

    /// The `Authorization` value carrying `key`.
    pub fn authorization(self, key: &str) -> String {
        match self {
            Dialect::Native | Dialect::Openai => format!("Bearer {key}"),
            Dialect::Deepgram => format!("Token {key}"),
        }
    }

    /// A reader for one session's messages.
    pub fn reader(self) -> Reader {
        match self {
            Dialect::Native => Reader::Native,
            Dialect::Deepgram => Reader::Deepgram(DeepgramReader::default()),
            Dialect::Openai => Reader::Openai(OpenAiEvents::default()),
        }
    }
}

/// Reads one session's text messages as native [`ServerMsg`]s.
#[derive(Debug, Clone)]
pub enum Reader {
    Native,
    Deepgram(DeepgramReader),
    Openai(OpenAiEvents),
}

impl Reader {
    /// The native messages one text frame says, appended to `out` (none,
    /// one, or — for Deepgram's first message — a synthesised
    /// `session_start` and the message; for OpenAI's, the event's own and
    /// `session_end` when it completes the session).
    ///
    /// # Errors
    /// What is wrong with a malformed frame.
    pub fn read(&mut self, text: &str, out: &mut Vec<ServerMsg>) -> Result<(), String> {
        match self {
            Reader::Native => out.push(ServerMsg::parse(text)?),
            Reader::Deepgram(reader) => reader.read(text, out)?,
            Reader::Openai(events) => events.translate(text, out)?,
        }
        Ok(())
    }
}

/// Deepgram's messages in native terms. Deepgram numbers nothing: segments
/// are counted here, `SpeechStarted` opening the next and each final
/// `Results` closing the oldest open one (the server sends finals in
/// order, one per segment). Deepgram has no start message: one is
/// synthesised before the first message (with the `request_id` when that
/// message carries one). `Metadata` is the orderly end (`client_end`);
/// `Error` its `variant` as the code.
#[derive(Debug, Clone, Default)]
pub struct DeepgramReader {
    started: bool,
    speech_started: u64,
    finals: u64,
}

impl DeepgramReader {
    fn read(&mut self, text: &str, out: &mut Vec<ServerMsg>) -> Result<(), String> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not JSON ({e})"))?;
        let kind = value
            .get("type")
            .and_then(|t| t.as_str())
            .ok_or("no string `type`")?;
        if !self.started {
            self.started = true;
            let session_id = value
                .pointer("/metadata/request_id")
                .or_else(|| value.get("request_id"))
                .and_then(|id| id.as_str())
                .unwrap_or_default()
                .to_string();
            out.push(ServerMsg::SessionStart { session_id });
        }
        let number = |key: &str| {
            value
                .get(key)
                .and_then(|n| n.as_f64())
                .ok_or(format!("{kind} without a numeric {key}"))
        };
        out.push(match kind {
            "SpeechStarted" => {
                self.speech_started += 1;
                ServerMsg::SpeechStart {
                    segment_id: self.speech_started - 1,
                }
            }
            "Results" => {
                let is_final = value
                    .get("is_final")
                    .and_then(|f| f.as_bool())
                    .ok_or("Results without a boolean is_final")?;
                let end = number("start")? + number("duration")?;
                let segment_id = self.finals;
                if is_final {
                    self.finals += 1;
                }
                ServerMsg::Transcript {
                    segment_id,
                    is_final,
                    end,
                }
            }
            "Metadata" => ServerMsg::SessionEnd {
                reason: "client_end".to_string(),
            },
            "Error" => ServerMsg::Error {
                code: value
                    .get("variant")
                    .and_then(|v| v.as_str())
                    .unwrap_or("unknown")
                    .to_string(),
            },
            other => ServerMsg::Other(other.to_string()),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(reader: &mut Reader, texts: &[&str]) -> Vec<ServerMsg> {
        let mut out = Vec::new();
        for text in texts {
            reader.read(text, &mut out).expect("well formed");
        }
        out
    }

    #[test]
    fn deepgram_messages_read_as_native_ones() {
        let mut reader = Dialect::Deepgram.reader();
        let messages = read_all(
            &mut reader,
            &[
                r#"{"type":"SpeechStarted","channel":[0],"timestamp":0.21}"#,
                r#"{"type":"Results","is_final":false,"start":0.21,"duration":0.5,"metadata":{"request_id":"r"}}"#,
                r#"{"type":"SpeechStarted","channel":[0],"timestamp":3.0}"#,
                r#"{"type":"Results","is_final":true,"start":0.21,"duration":1.38}"#,
                r#"{"type":"Results","is_final":true,"start":3.03,"duration":1.71}"#,
                r#"{"type":"UtteranceEnd","channel":[0,1],"last_word_end":4.7}"#,
                r#"{"type":"Metadata","request_id":"r"}"#,
            ],
        );
        assert_eq!(
            messages[0],
            ServerMsg::SessionStart {
                session_id: String::new()
            }
        );
        assert_eq!(messages[1], ServerMsg::SpeechStart { segment_id: 0 });
        assert_eq!(
            messages[4],
            ServerMsg::Transcript {
                segment_id: 0,
                is_final: true,
                end: 0.21 + 1.38
            }
        );
        assert!(matches!(
            messages[5],
            ServerMsg::Transcript {
                segment_id: 1,
                is_final: true,
                ..
            }
        ));
        assert_eq!(
            messages[7],
            ServerMsg::SessionEnd {
                reason: "client_end".into()
            }
        );
        let mut checker = crate::streaming::OrderChecker::new();
        for message in &messages {
            checker.on_message(message);
        }
        checker.finish(true);
        assert_eq!(checker.violations(), 0, "{:?}", checker.examples());
        let mut out = Vec::new();
        assert!(reader.read("{", &mut out).is_err());
    }

    #[test]
    fn dialects_set_up_their_streams() {
        assert_eq!(
            Dialect::Deepgram.path_and_query(16000, true),
            "/v1/listen?encoding=linear16&sample_rate=16000&channels=1&interim_results=true&vad_events=true"
        );
        assert_eq!(Dialect::Deepgram.end_message(), r#"{"type":"CloseStream"}"#);
        assert_eq!(Dialect::Deepgram.authorization("k"), "Token k");
        assert_eq!(Dialect::Native.end_message(), r#"{"type":"end"}"#);
    }
}
