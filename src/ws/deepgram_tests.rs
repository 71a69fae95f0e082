//! The Deepgram codec without a socket: query parameters, control messages
//! and the shapes of the messages it writes.

use super::*;
use crate::session::{Control, EventWord};

fn live() -> Box<dyn Codec> {
    DeepgramLive::new_codec("mock", 300)
}

fn json(frames: &[Frame]) -> Vec<serde_json::Value> {
    frames
        .iter()
        .filter_map(|frame| match frame {
            Frame::Text { text, .. } => Some(serde_json::from_str(text).expect("JSON")),
            _ => None,
        })
        .collect()
}

/// The stream parameters a supported `query` sets.
fn supported(codec: &dyn Codec, query: &str) -> StreamParams {
    let mut params = StreamParams::new(2);
    codec
        .apply_query(&mut params, Some(query))
        .expect("supported");
    params
}

fn encode(codec: &dyn Codec, event: SessionEvent) -> Vec<Frame> {
    let mut out = Vec::new();
    codec.encode(event, &mut out);
    out
}

#[test]
fn live_parameters_map_to_the_stream_and_unsupported_ones_are_refused() {
    let codec = live();
    let params = supported(codec.as_ref(), "model=nova-3&encoding=linear16&sample_rate=8000&channels=1&interim_results=True&endpointing=300&utterance_end_ms=1000&vad_events=true&smart_format=true&tag=x");
    assert_eq!(params.sample_rate, 8000);
    assert!(params.interim_results);
    assert_eq!(params.vad_hangover_ms, Some(300));
    assert_eq!(params.utterance_end_ms, Some(1000));

    let params = supported(
        codec.as_ref(),
        "encoding=linear16&sample_rate=16000&endpointing=false",
    );
    assert!(!params.interim_results, "Deepgram's default is no interims");
    assert_eq!(params.vad_hangover_ms, None);

    for refused in [
        "encoding=linear16&sample_rate=16000&diarize=true",
        "encoding=linear16&sample_rate=16000&multichannel=true",
        "encoding=linear16&sample_rate=16000&channels=2",
        "encoding=mulaw&sample_rate=8000",
        "encoding=linear16&sample_rate=44100",
        "encoding=linear16",
        "sample_rate=16000",
        "encoding=linear16&sample_rate=16000&keywords=fox:2",
        "encoding=linear16&sample_rate=16000&endpointing=soon",
        "encoding=linear16&sample_rate=16000&utterance_end_ms=10",
        "encoding=linear16&sample_rate=16000&interim_results=maybe",
    ] {
        let mut params = StreamParams::new(2);
        assert!(
            codec.apply_query(&mut params, Some(refused)).is_err(),
            "{refused}"
        );
    }
    // Disabled features are fine.
    let query = "encoding=linear16&sample_rate=16000&diarize=false&multichannel=false";
    assert!(ListenParams::parse(Some(query), ListenMode::Live).is_ok());
    // Pre-recorded audio may carry its own format.
    let params = ListenParams::parse(
        Some("utterances=true&punctuate=true"),
        ListenMode::Prerecorded,
    )
    .expect("supported");
    assert!(params.utterances && params.punctuate && !params.linear16);
}

#[test]
fn control_messages_and_what_invalid_ones_are_answered_with() {
    let codec = live();
    let params = StreamParams::new(2);
    assert_eq!(
        codec.decode_text(r#"{"type":"KeepAlive"}"#, &params),
        Control::Keepalive
    );
    assert_eq!(
        codec.decode_text(r#"{"type":"Finalize"}"#, &params),
        Control::Finalize
    );
    assert_eq!(
        codec.decode_text(r#"{"type":"CloseStream"}"#, &params),
        Control::End
    );
    for text in [
        "{not json",
        r#"{"type":"Dance"}"#,
        r#"{"kind":"KeepAlive"}"#,
    ] {
        let Control::Invalid(message) = codec.decode_text(text, &params) else {
            panic!("{text} is invalid");
        };
        let out = json(&encode(
            codec.as_ref(),
            SessionEvent::Error {
                kind: WsErrorKind::InvalidMessage,
                message,
                retry_after_s: None,
            },
        ));
        assert_eq!(out[0]["type"], "Error", "{out:?}");
        assert_eq!(out[0]["variant"], "SchemaError");
        assert_eq!(out[0]["message"], text, "the message is quoted back");
    }
    let Control::Invalid(message) =
        codec.decode_text(r#"{"type":"Configure","keyterms":["fox"]}"#, &params)
    else {
        panic!("Configure is not supported");
    };
    let out = json(&encode(
        codec.as_ref(),
        SessionEvent::Error {
            kind: WsErrorKind::InvalidMessage,
            message,
            retry_after_s: None,
        },
    ));
    assert_eq!(out[0]["type"], "ConfigureFailure");
    assert_eq!(out[0]["code"], "CONFIGURE_KEYTERMS_NOT_SUPPORTED");
}

#[test]
fn results_have_deepgrams_shape() {
    let codec = live();
    supported(
        codec.as_ref(),
        "encoding=linear16&sample_rate=16000&interim_results=true&vad_events=true",
    );
    let started = SessionEvent::Started {
        session_id: "req-1".into(),
        sample_rate: 16000,
        vad_mode: 2,
        interim_results: true,
    };
    assert!(
        encode(codec.as_ref(), started).is_empty(),
        "Deepgram says nothing at the start"
    );
    let speech = json(&encode(
        codec.as_ref(),
        SessionEvent::SpeechStarted {
            segment_id: 0,
            start_s: 0.2104,
        },
    ));
    assert_eq!(
        speech[0],
        serde_json::json!({"type": "SpeechStarted", "channel": [0], "timestamp": 0.21})
    );
    let interim = encode(
        codec.as_ref(),
        SessionEvent::Interim {
            segment_id: 0,
            text: "Hello".into(),
            start_s: 0.21,
            end_s: 0.81,
        },
    );
    assert!(matches!(
        interim[0],
        Frame::Text {
            sheddable: true,
            ..
        }
    ));
    let final_ = json(&encode(
        codec.as_ref(),
        SessionEvent::Final {
            segment_id: 0,
            text: " Hello, World.".into(),
            start_s: 0.21,
            end_s: 1.89,
            words: vec![
                EventWord {
                    word: " Hello,".into(),
                    start_s: 0.3,
                    end_s: 0.7,
                },
                EventWord {
                    word: " World.".into(),
                    start_s: 0.8,
                    end_s: 1.2,
                },
                EventWord {
                    word: " --".into(),
                    start_s: 1.2,
                    end_s: 1.3,
                },
            ],
            end: FinalEnd {
                endpoint: true,
                answers_finalize: false,
            },
        },
    ));
    let message = &final_[0];
    assert_eq!(message["type"], "Results");
    assert_eq!(message["channel_index"], serde_json::json!([0, 1]));
    assert_eq!(
        (message["start"].as_f64(), message["duration"].as_f64()),
        (Some(0.21), Some(1.68))
    );
    assert_eq!(
        (&message["is_final"], &message["speech_final"]),
        (&true.into(), &true.into())
    );
    assert_eq!(message["from_finalize"], false);
    assert_eq!(message["metadata"]["request_id"], "req-1");
    assert_eq!(message["metadata"]["model_info"]["name"], "mock");
    let alternative = &message["channel"]["alternatives"][0];
    // Without punctuate/smart_format: Deepgram's plain lower-case words.
    assert_eq!(alternative["transcript"], "hello world");
    assert_eq!(
        alternative["words"],
        serde_json::json!([
            {"word": "hello", "start": 0.3, "end": 0.7, "confidence": 1.0},
            {"word": "world", "start": 0.8, "end": 1.2, "confidence": 1.0}
        ])
    );
    let empty = json(&encode(
        codec.as_ref(),
        SessionEvent::Finalized { at_s: 2.0 },
    ));
    assert_eq!(empty[0]["from_finalize"], true);
    assert_eq!(empty[0]["is_final"], true);
    assert_eq!(empty[0]["channel"]["alternatives"][0]["transcript"], "");
}

#[test]
fn punctuated_words_and_the_ends_of_a_session() {
    let codec = live();
    supported(
        codec.as_ref(),
        "encoding=linear16&sample_rate=16000&punctuate=true&endpointing=false",
    );
    let final_ = json(&encode(
        codec.as_ref(),
        SessionEvent::Final {
            segment_id: 0,
            text: " Don't stop.".into(),
            start_s: 0.0,
            end_s: 1.0,
            words: vec![EventWord {
                word: " Don't".into(),
                start_s: 0.1,
                end_s: 0.4,
            }],
            end: FinalEnd {
                endpoint: true,
                answers_finalize: false,
            },
        },
    ));
    assert_eq!(final_[0]["speech_final"], false, "endpointing=false");
    let alternative = &final_[0]["channel"]["alternatives"][0];
    assert_eq!(alternative["transcript"], "Don't stop.");
    assert_eq!(alternative["words"][0]["word"], "don't");
    assert_eq!(alternative["words"][0]["punctuated_word"], "Don't");

    let figures = SessionFigures {
        audio_seconds: 4.9921,
        ..SessionFigures::default()
    };
    let ended = SessionEvent::Ended {
        session_id: String::new(),
        reason: EndReason::ClientEnd,
        figures,
    };
    let out = encode(codec.as_ref(), ended);
    let metadata = json(&out);
    assert_eq!(metadata[0]["type"], "Metadata");
    assert_eq!(metadata[0]["duration"], 4.992);
    assert_eq!(metadata[0]["channels"], 1);
    assert_eq!(
        encode(codec.as_ref(), SessionEvent::Close(1000)),
        [Frame::Close(1000)]
    );

    let idle = live();
    let ended = SessionEvent::Ended {
        session_id: String::new(),
        reason: EndReason::IdleTimeout,
        figures,
    };
    assert_eq!(
        encode(idle.as_ref(), ended),
        [Frame::CloseWithReason(1011, "NET-0001")]
    );
    assert!(encode(idle.as_ref(), SessionEvent::Close(1000)).is_empty());
}
