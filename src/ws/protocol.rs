//! The native streaming protocol's messages (API.md, "Streaming
//! transcription"): what clients send in text frames, what the server sends,
//! and how the query string and `config` messages set the stream's
//! parameters. `native.rs` maps them to and from the session's events.

use serde::{Deserialize, Serialize};

pub use crate::session::{SessionFigures, StreamParams};

use crate::audio::VAD_RATES_HZ;
use crate::http::query::parse_query;

/// The audio encodings a stream may declare.
pub const ENCODING_PCM_S16LE: &str = "pcm_s16le";

/// The native protocol's ways of setting a stream's parameters: the query
/// string of the upgrade, then a `config` message.
impl StreamParams {
    /// Apply the parameters of a query string. Unknown names are ignored
    /// (`access_token` among them).
    ///
    /// # Errors
    /// A message for the `unsupported_format` error.
    pub fn apply_query(&mut self, query: Option<&str>) -> Result<(), String> {
        let pairs =
            parse_query(query).map_err(|pair| format!("malformed query parameter {pair:?}"))?;
        for (name, value) in pairs {
            match name.as_str() {
                "sample_rate" => self.set_sample_rate(&value)?,
                "encoding" => check_encoding(&value)?,
                "vad_mode" => self.set_vad_mode(&value)?,
                "interim_results" => {
                    self.interim_results = match value.as_str() {
                        "true" | "1" | "" => true,
                        "false" | "0" => false,
                        _ => {
                            return Err(format!(
                                "interim_results must be true or false, got {value:?}"
                            ))
                        }
                    }
                }
                "language" => self.language = Some(check_language(&value)?),
                _ => {}
            }
        }
        Ok(())
    }

    /// Apply a `config` message.
    ///
    /// # Errors
    /// A message for the `unsupported_format` error.
    pub fn apply_config(&mut self, config: &ConfigMessage) -> Result<(), String> {
        if let Some(rate) = &config.sample_rate {
            self.set_sample_rate(&json_scalar(rate))?;
        }
        if let Some(encoding) = &config.encoding {
            check_encoding(encoding)?;
        }
        if let Some(mode) = &config.vad_mode {
            self.set_vad_mode(&json_scalar(mode))?;
        }
        if let Some(interim) = config.interim_results {
            self.interim_results = interim;
        }
        if let Some(language) = &config.language {
            self.language = Some(check_language(language)?);
        }
        Ok(())
    }

    fn set_sample_rate(&mut self, value: &str) -> Result<(), String> {
        match value.parse::<u32>() {
            Ok(rate) if VAD_RATES_HZ.contains(&rate) => {
                self.sample_rate = rate;
                Ok(())
            }
            _ => Err(format!(
                "sample_rate must be 8000, 16000, 32000 or 48000, got {value}"
            )),
        }
    }

    fn set_vad_mode(&mut self, value: &str) -> Result<(), String> {
        match value.parse::<u8>() {
            Ok(mode) if mode <= 3 => {
                self.vad_mode = mode;
                Ok(())
            }
            _ => Err(format!("vad_mode must be 0, 1, 2 or 3, got {value}")),
        }
    }
}

fn check_encoding(value: &str) -> Result<(), String> {
    if value == ENCODING_PCM_S16LE {
        Ok(())
    } else {
        Err(format!(
            "encoding must be {ENCODING_PCM_S16LE}, got {value:?}"
        ))
    }
}

fn check_language(value: &str) -> Result<String, String> {
    if crate::model::is_language_tag(value) {
        Ok(value.to_string())
    } else {
        Err(format!("invalid language {value:?}"))
    }
}

/// A JSON number or string as text, so `16000` and `"16000"` both work.
fn json_scalar(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// The keys of a `config` message (the query parameters' names).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigMessage {
    #[serde(default)]
    pub sample_rate: Option<serde_json::Value>,
    #[serde(default)]
    pub encoding: Option<String>,
    #[serde(default)]
    pub vad_mode: Option<serde_json::Value>,
    #[serde(default)]
    pub interim_results: Option<bool>,
    #[serde(default)]
    pub language: Option<String>,
}

/// A client's text message.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    End,
    Finalize,
    Keepalive,
    Config(ConfigMessage),
}

impl ClientMessage {
    /// Parse a text frame.
    ///
    /// # Errors
    /// A message for the `invalid_message` error (bad JSON, unknown type,
    /// unknown `config` key).
    pub fn parse(text: &str) -> Result<ClientMessage, String> {
        serde_json::from_str(text).map_err(|error| format!("invalid message: {error}"))
    }
}

/// A word of a final transcript, in stream time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WordOut {
    pub word: String,
    pub start: f64,
    pub end: f64,
}

/// What the server sends, one JSON text frame each.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    SessionStart {
        session_id: String,
        sample_rate: u32,
        encoding: &'static str,
        vad_mode: u8,
        interim_results: bool,
        /// The token that resumes the session (only when resumption is on).
        #[serde(skip_serializing_if = "Option::is_none")]
        resume_token: Option<String>,
    },
    /// A dropped session continues on this connection (`ws/resume.rs`):
    /// where the server's audio ends, how much of the client's will be
    /// skipped, and how many finals follow from before the reconnect.
    SessionResumed {
        session_id: String,
        /// Stream samples the server has (the client's audio continues
        /// from here).
        audio_samples: u64,
        /// The same in milliseconds of stream time.
        audio_ms: f64,
        /// Samples of the client's resent audio the server will skip.
        skip_samples: u64,
        /// Finals from before this connection that follow, first.
        replayed_finals: usize,
    },
    SpeechStart {
        segment_id: u64,
        start: f64,
    },
    Transcript {
        segment_id: u64,
        is_final: bool,
        text: String,
        start: f64,
        end: f64,
        #[serde(skip_serializing_if = "Option::is_none")]
        words: Option<Vec<WordOut>>,
    },
    SessionEnd {
        session_id: String,
        reason: &'static str,
        metrics: SessionFigures,
    },
    Error {
        code: &'static str,
        message: String,
        /// Seconds to wait before trying again (an `overloaded` refusal at
        /// the engine's capacity).
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after_s: Option<u32>,
    },
}

impl ServerMessage {
    /// The JSON text of the message.
    pub fn to_json(&self) -> String {
        // Our message types always serialize.
        serde_json::to_string(self).unwrap_or_else(|error| {
            format!(
                r#"{{"type":"error","code":"internal","message":"serialization failed: {error}"}}"#
            )
        })
    }

    /// Whether this is a final transcript (never shed under load).
    pub fn is_final(&self) -> bool {
        matches!(self, ServerMessage::Transcript { is_final: true, .. })
    }

    /// Whether this message may be dropped when the client reads too slowly.
    pub fn is_sheddable(&self) -> bool {
        matches!(
            self,
            ServerMessage::Transcript {
                is_final: false,
                ..
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_parse() {
        assert_eq!(
            ClientMessage::parse(r#"{"type":"end"}"#),
            Ok(ClientMessage::End)
        );
        assert_eq!(
            ClientMessage::parse(r#"{"type":"finalize"}"#),
            Ok(ClientMessage::Finalize)
        );
        assert_eq!(
            ClientMessage::parse(r#"{"type":"keepalive"}"#),
            Ok(ClientMessage::Keepalive)
        );
        let config = ClientMessage::parse(
            r#"{"type":"config","sample_rate":8000,"vad_mode":"3","interim_results":false}"#,
        )
        .expect("valid");
        let ClientMessage::Config(config) = config else {
            panic!("config expected")
        };
        let mut params = StreamParams::new(2);
        params.apply_config(&config).expect("valid");
        assert_eq!(
            (params.sample_rate, params.vad_mode, params.interim_results),
            (8000, 3, false)
        );
        for bad in [
            "",
            "{",
            "[]",
            r#"{"type":"dance"}"#,
            r#"{"no":"type"}"#,
            r#"{"type":"config","colour":"red"}"#,
        ] {
            assert!(ClientMessage::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn query_parameters_are_validated() {
        let mut params = StreamParams::new(2);
        params
            .apply_query(Some("sample_rate=48000&encoding=pcm_s16le&vad_mode=0&interim_results=false&language=en&access_token=x"))
            .expect("valid");
        assert_eq!(params.sample_rate, 48000);
        assert_eq!(params.vad_mode, 0);
        assert!(!params.interim_results);
        assert_eq!(params.language.as_deref(), Some("en"));
        for bad in [
            "sample_rate=44100",
            "encoding=opus",
            "vad_mode=4",
            "interim_results=maybe",
            "language=%20",
        ] {
            assert!(
                StreamParams::new(2).apply_query(Some(bad)).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn server_messages_have_the_contract_shape() {
        let message = ServerMessage::Transcript {
            segment_id: 0,
            is_final: false,
            text: "alpha".into(),
            start: 0.42,
            end: 1.2,
            words: None,
        };
        let value: serde_json::Value = serde_json::from_str(&message.to_json()).expect("json");
        assert_eq!(
            value,
            serde_json::json!({"type": "transcript", "segment_id": 0, "is_final": false, "text": "alpha", "start": 0.42, "end": 1.2})
        );
        let end = ServerMessage::SessionEnd {
            session_id: "s".into(),
            reason: "client_end",
            metrics: SessionFigures::default(),
        };
        let value: serde_json::Value = serde_json::from_str(&end.to_json()).expect("json");
        assert_eq!(value["metrics"]["audio_bytes"], 0);
        assert_eq!(value["type"], "session_end");
    }
}
