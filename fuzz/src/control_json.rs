//! Target `control_json`: the client's JSON control messages and the stream
//! query parameters, from arbitrary text: parsed or refused with a reason,
//! and whatever is accepted is within the protocol's ranges.

use std::time::Instant;

use transcription_service::audio::{SegmenterConfig, VAD_RATES_HZ};
use transcription_service::model::is_language_tag;
use transcription_service::ws::protocol::{ClientMessage, ServerMessage, StreamParams};
use transcription_service::ws::session::{Output, Session, SessionConfig, SessionState};

use super::input::Input;

/// `[selector][text...]`: selector % 3 = 0 a client message (then `config`
/// applied), 1 a query string, 2 a query line then a message; also given to
/// a fresh session's `on_text`. The default VAD mode is selector / 3 % 4.
pub fn control_json(data: &[u8]) {
    let mut input = Input::new(data);
    let selector = input.u8();
    let text = String::from_utf8_lossy(input.rest());
    let mut params = StreamParams::new(selector / 3 % 4);
    let (query, message) = match selector % 3 {
        0 => (None, Some(text.as_ref())),
        1 => (Some(text.as_ref()), None),
        _ => match text.split_once('\n') {
            Some((query, message)) => (Some(query), Some(message)),
            None => (Some(text.as_ref()), None),
        },
    };
    if let Some(query) = query {
        match params.apply_query(Some(query)) {
            Ok(()) => check_params(&params),
            Err(message) => {
                assert!(!message.is_empty());
                return;
            }
        }
    }
    let Some(message) = message else { return };
    let parsed = ClientMessage::parse(message);
    if let Ok(ClientMessage::Config(config)) = &parsed {
        let mut applied = params.clone();
        match applied.apply_config(config) {
            Ok(()) => check_params(&applied),
            Err(error) => assert!(!error.is_empty()),
        }
    }
    // The same text through a session that has seen no audio.
    let config = SessionConfig {
        vad_hangover_ms: 500,
        max_segment_ms: 15_000,
        interim_interval_ms: 300,
        finals_waiting_max: 8,
        finals_in_flight_max: 4,
    };
    let mut session = Session::new("fuzz".into(), params, config, Instant::now());
    session.on_text(message, Instant::now());
    let outputs: Vec<Output> = session.take_outputs().collect();
    match parsed {
        Err(_) => assert!(matches!(
            outputs.as_slice(),
            [Output::Message(ServerMessage::Error {
                code: "invalid_message",
                ..
            })]
        )),
        Ok(ClientMessage::Keepalive | ClientMessage::Finalize) => assert!(outputs.is_empty()),
        Ok(ClientMessage::End) => {
            assert!(matches!(
                outputs.as_slice(),
                [
                    Output::Message(ServerMessage::SessionEnd { .. }),
                    Output::Close(1000)
                ]
            ));
            assert_eq!(session.state(), SessionState::Closed);
        }
        Ok(ClientMessage::Config(_)) => {
            if outputs.is_empty() {
                check_params(session.params());
                // The stream can start with these parameters.
                session.on_audio(&[0; 64], Instant::now());
            } else {
                assert_eq!(session.state(), SessionState::Closed);
            }
        }
    }
}

fn check_params(params: &StreamParams) {
    assert!(VAD_RATES_HZ.contains(&params.sample_rate));
    assert!(params.vad_mode <= 3);
    if let Some(language) = &params.language {
        assert!(is_language_tag(language), "{language:?}");
    }
    assert!(SegmenterConfig::new(params.sample_rate, 500, 15_000).is_valid());
}
