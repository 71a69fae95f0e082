//! `POST /v1/audio/transcriptions`, the OpenAI-compatible endpoint.

use crate::support::{fixture, multipart, post, Server};

fn call(server: &Server, fields: &[(&str, &str)]) -> crate::support::Reply {
    let wav = fixture("two_utterances.wav");
    let (content_type, body) = multipart(fields, Some(("speech.wav", "audio/wav", &wav)));
    post(
        server,
        "/v1/audio/transcriptions",
        &content_type,
        &body,
        &[],
    )
}

#[test]
fn every_response_format_carries_the_same_text() {
    let server = Server::start(&[]);
    let native = post(
        &server,
        "/v1/transcribe",
        "audio/wav",
        &fixture("two_utterances.wav"),
        &[],
    )
    .json();
    let text = native["text"].as_str().expect("text").to_string();
    let segments = native["segments"].as_array().expect("segments").clone();
    assert_eq!(segments.len(), 2);

    let json = call(&server, &[("model", "whisper-1")]);
    assert_eq!(json.status, 200, "{}", json.text());
    assert_eq!(json.json(), serde_json::json!({"text": text}));

    let plain = call(
        &server,
        &[("model", "whisper-1"), ("response_format", "text")],
    );
    assert!(plain
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/plain")));
    assert_eq!(plain.text().trim_end(), text);

    let srt = call(&server, &[("response_format", "srt")]).text();
    let cues: Vec<&str> = srt.trim_end().split("\n\n").collect();
    assert_eq!(cues.len(), 2, "{srt}");
    assert!(cues[0].starts_with("1\n00:00:"));
    assert!(cues[0].contains(" --> "));
    assert!(cues[1].starts_with("2\n"));
    assert!(cues[1].ends_with(segments[1]["text"].as_str().expect("text")));

    let vtt = call(&server, &[("response_format", "vtt")]);
    assert!(vtt
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/vtt")));
    let vtt = vtt.text();
    assert!(vtt.starts_with("WEBVTT\n\n00:00:"), "{vtt}");
    assert_eq!(vtt.matches(" --> ").count(), 2);

    let verbose = call(
        &server,
        &[("response_format", "verbose_json"), ("language", "en")],
    )
    .json();
    assert_eq!(verbose["task"], "transcribe");
    assert_eq!(verbose["language"], "en");
    assert_eq!(verbose["text"], text.as_str());
    assert_eq!(verbose["duration"], native["duration"]);
    assert_eq!(verbose["segments"].as_array().map(Vec::len), Some(2));
    assert_eq!(verbose["segments"][1]["start"], segments[1]["start"]);
    assert!(verbose.get("words").is_none());
}

#[test]
fn verbose_json_has_word_times_when_asked() {
    let server = Server::start(&[]);
    let reply = call(
        &server,
        &[
            ("response_format", "verbose_json"),
            ("timestamp_granularities[]", "word"),
            ("timestamp_granularities[]", "segment"),
        ],
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let verbose = reply.json();
    let words = verbose["words"].as_array().expect("words");
    let text = verbose["text"].as_str().expect("text");
    assert_eq!(words.len(), text.split(' ').count());
    let mut previous = 0.0;
    for word in words {
        let start = word["start"].as_f64().expect("start");
        assert!(start >= previous);
        previous = word["end"].as_f64().expect("end");
    }
}

#[test]
fn bad_requests_are_refused_with_the_documented_codes() {
    let server = Server::start(&[]);
    let reply = call(&server, &[("response_format", "docx")]);
    assert_eq!(reply.status, 400);
    assert_eq!(reply.error_code(), "bad_request");

    let reply = call(&server, &[("timestamp_granularities[]", "syllable")]);
    assert_eq!(reply.status, 400);

    let (content_type, body) = multipart(&[("model", "whisper-1")], None);
    let reply = post(
        &server,
        "/v1/audio/transcriptions",
        &content_type,
        &body,
        &[],
    );
    assert_eq!(reply.status, 400);
    assert!(reply.text().contains("file"));

    let reply = post(
        &server,
        "/v1/audio/transcriptions",
        "audio/wav",
        &fixture("hello.wav"),
        &[],
    );
    assert_eq!(reply.status, 415);
    assert_eq!(reply.error_code(), "unsupported_media_type");
}
