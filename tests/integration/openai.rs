//! The OpenAI dialect's REST side: `POST /v1/audio/transcriptions` in
//! every response format and streamed, `/v1/audio/translations`,
//! `/v1/models`.

use std::time::Duration;

use crate::support::{
    eventually, fixture, fixture_pcm, get, metric, multipart, post, request_with, Raw, Server,
};

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

/// A form with `fields` and the fixture as `file`, posted to `path`.
fn call_at(server: &Server, path: &str, fields: &[(&str, &str)]) -> crate::support::Reply {
    let wav = fixture("two_utterances.wav");
    let (content_type, body) = multipart(fields, Some(("speech.wav", "audio/wav", &wav)));
    post(server, path, &content_type, &body, &[])
}

/// OpenAI's error body: `{"error": {"message", "type", "param", "code"}}`.
fn assert_openai_error(reply: &crate::support::Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.text());
    let error = &reply.json()["error"];
    assert_eq!(error["code"], code, "{}", reply.text());
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(error["type"].is_string(), "{}", reply.text());
    assert!(error.get("param").is_some(), "{}", reply.text());
}

#[test]
fn models_list_the_engine_and_whisper_1() {
    let server = Server::start(&[]);
    let reply = get(&server, "/v1/models");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let list = reply.json();
    assert_eq!(list["object"], "list");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|model| {
            assert_eq!(model["object"], "model");
            assert!(model["created"].as_u64().is_some_and(|t| t > 1_600_000_000));
            assert!(model["owned_by"].is_string());
            model["id"].as_str().expect("id")
        })
        .collect();
    assert_eq!(ids, ["mock", "whisper-1"]);

    for id in ids {
        let one = get(&server, &format!("/v1/models/{id}"));
        assert_eq!(one.status, 200, "{}", one.text());
        assert_eq!(one.json()["id"], id);
        assert_eq!(one.json()["object"], "model");
    }
    assert_openai_error(
        &get(&server, "/v1/models/gpt-5-turbo"),
        404,
        "model_not_found",
    );
    let wrong = post(&server, "/v1/models", "application/json", b"{}", &[]);
    assert_eq!(wrong.status, 405);
}

#[test]
fn models_need_the_key_when_one_is_set() {
    let server = Server::start(&["--api-key", "sk-test"]);
    assert_eq!(get(&server, "/v1/models").status, 401);
    let reply = request_with(
        &server,
        "GET",
        "/v1/models",
        &[("Authorization", "Bearer sk-test")],
    );
    assert_eq!(reply.status, 200);
}

#[test]
fn translations_are_refused_clearly_by_an_english_only_model() {
    let server = Server::start(&[]);
    let reply = call_at(&server, "/v1/audio/translations", &[("model", "whisper-1")]);
    assert_openai_error(&reply, 400, "unsupported_model");
    assert!(reply.text().contains("English-only"), "{}", reply.text());
    // Bad forms are still told apart from the model's limits.
    let (content_type, body) = multipart(&[("model", "whisper-1")], None);
    let reply = post(&server, "/v1/audio/translations", &content_type, &body, &[]);
    assert_openai_error(&reply, 400, "bad_request");
}

#[test]
fn prompt_language_and_temperature_reach_the_engine() {
    let server = Server::start(&[]);
    let text = |fields: &[(&str, &str)]| {
        let reply = call(&server, fields);
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.json()["text"].as_str().expect("text").to_string()
    };
    let plain = text(&[]);
    assert_eq!(text(&[("language", "en"), ("temperature", "0")]), plain);
    // The mock picks other words for a prompt, a temperature or a language
    // other than English: each reached it.
    assert_ne!(text(&[("prompt", "Zyxel and Qualcomm")]), plain);
    assert_ne!(text(&[("temperature", "0.7")]), plain);
    assert_ne!(text(&[("language", "fr")]), plain);

    for (field, value) in [
        ("language", "klingon"),
        ("language", "xx"),
        ("temperature", "1.5"),
        ("temperature", "warm"),
    ] {
        assert_openai_error(&call(&server, &[(field, value)]), 400, "bad_request");
    }
    let long = "a".repeat(5000);
    assert_openai_error(&call(&server, &[("prompt", &long)]), 400, "bad_request");
}

#[test]
fn timestamp_granularities_need_verbose_json() {
    let server = Server::start(&[]);
    for format in ["json", "text", "srt"] {
        let reply = call(
            &server,
            &[
                ("response_format", format),
                ("timestamp_granularities[]", "word"),
            ],
        );
        assert_openai_error(&reply, 400, "bad_request");
        assert!(reply.text().contains("verbose_json"), "{}", reply.text());
    }
}

/// The `data:` payloads of a Server-Sent Events body.
fn sse_events(body: &str) -> Vec<serde_json::Value> {
    body.split("\n\n")
        .filter(|event| !event.trim().is_empty())
        .map(|event| {
            let data = event
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data event: {event:?}"));
            serde_json::from_str(data).expect("JSON data")
        })
        .collect()
}

#[test]
fn stream_true_answers_deltas_then_done() {
    let server = Server::start(&[]);
    let whole = call(&server, &[]).json()["text"]
        .as_str()
        .expect("text")
        .to_string();
    let reply = call(&server, &[("stream", "true"), ("model", "whisper-1")]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/event-stream")));
    assert_eq!(reply.header("transfer-encoding"), Some("chunked"));
    let events = sse_events(&reply.text());
    let (done, deltas) = events.split_last().expect("events");
    assert_eq!(deltas.len(), 2, "one delta per segment: {events:?}");
    let mut joined = String::new();
    for delta in deltas {
        assert_eq!(delta["type"], "transcript.text.delta");
        joined.push_str(delta["delta"].as_str().expect("delta"));
    }
    assert_eq!(done["type"], "transcript.text.done");
    assert_eq!(done["text"], whole.as_str());
    assert_eq!(joined, whole);
    // usage: the audio's duration (16 kHz PCM16 fixture), to the ms.
    let seconds = fixture_pcm("two_utterances.wav").len() as f64 / 32_000.0;
    assert_eq!(done["usage"]["type"], "duration", "{done}");
    let reported = done["usage"]["seconds"].as_f64().expect("seconds");
    assert!(
        (reported - seconds).abs() < 0.002,
        "{reported} for {seconds} s"
    );
    assert!(done.get("logprobs").is_none(), "{done}");

    // Bad input before the stream starts is a plain error answer.
    let reply = call(&server, &[("stream", "true"), ("response_format", "srt")]);
    assert_openai_error(&reply, 400, "bad_request");
    let reply = call(&server, &[("stream", "maybe")]);
    assert_openai_error(&reply, 400, "bad_request");
}

/// A WAV of the two-utterance fixture `copies` times over.
fn long_wav(copies: usize) -> Vec<u8> {
    let wav = fixture("two_utterances.wav");
    let pcm = fixture_pcm("two_utterances.wav");
    let data: Vec<u8> = pcm
        .iter()
        .copied()
        .cycle()
        .take(pcm.len() * copies)
        .collect();
    let mut out = wav[..44].to_vec();
    out[4..8].copy_from_slice(&(36 + data.len() as u32).to_le_bytes());
    out[40..44].copy_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&data);
    out
}

#[test]
fn a_client_that_leaves_a_stream_cancels_the_remaining_work() {
    let server = Server::start(&["--model-workers", "1", "--mock-latency-ms", "150"]);
    let copies = 12;
    let (content_type, body) = multipart(
        &[("stream", "true")],
        Some(("long.wav", "audio/wav", &long_wav(copies))),
    );
    let mut raw = Raw::connect(&server);
    raw.send(
        format!(
            "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    raw.send(&body);
    // Wait for the first event: the stream has started.
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&received).contains("transcript.text.delta") {
        let n = std::io::Read::read(&mut raw.stream, &mut chunk).expect("read");
        assert!(
            n > 0,
            "closed early: {}",
            String::from_utf8_lossy(&received)
        );
        received.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&received).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("Transfer-Encoding: chunked"), "{head}");
    drop(raw);
    // The jobs queued behind the one running are dropped unrun.
    assert!(
        eventually(Duration::from_secs(20), || {
            metric(&server, "transcribe_model_jobs_dropped_total", &[]).unwrap_or(0.0) >= 1.0
        }),
        "no job was dropped"
    );
    let run = metric(&server, "transcribe_model_jobs_total", &[]).unwrap_or(0.0);
    assert!(run < (2 * copies) as f64, "every segment ran: {run}");
}
