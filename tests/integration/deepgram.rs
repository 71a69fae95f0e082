//! `/v1/listen`: Deepgram's dialect with a real WebSocket client and a real
//! HTTP client against the server binary: the live session's messages and
//! close, keys as Deepgram clients present them, refusals before the
//! upgrade in Deepgram's error shape, bad control messages, and pre-recorded
//! requests. (The official SDK's own run is scripts/test-sdk-deepgram.sh.)

use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;
use tungstenite::client::IntoClientRequest;
use tungstenite::Message;

use crate::support::{eventually, fixture, fixture_pcm, post, request_with, Server};

const KEY: &str = "dg-key";
const LIVE: &str = "encoding=linear16&sample_rate=16000";

fn server(extra: &[&str]) -> Server {
    let mut args = vec!["--api-key", KEY, "--interim-interval-ms", "200"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

type Socket = tungstenite::WebSocket<TcpStream>;

/// An upgrade the server refused: its status, headers and body.
#[derive(Debug)]
struct Refused {
    status: u16,
    dg_error: Option<String>,
    body: Value,
}

/// Connect to `/v1/listen?{query}` with extra headers.
fn connect(server: &Server, query: &str, headers: &[(&str, &str)]) -> Result<Socket, Refused> {
    let stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let url = format!("ws://{}/v1/listen?{query}", server.addr);
    let mut request = url.into_client_request().expect("request");
    for (name, value) in headers {
        request.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
            value.parse().expect("value"),
        );
    }
    match tungstenite::client::client(request, stream) {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            Err(Refused {
                status: response.status().as_u16(),
                dg_error: response
                    .headers()
                    .get("dg-error")
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_string),
                body: response
                    .body()
                    .as_ref()
                    .map(|body| serde_json::from_slice(body).expect("a JSON error body"))
                    .unwrap_or_default(),
            })
        }
        Err(error) => panic!("handshake failed: {error}"),
    }
}

fn connect_ok(server: &Server, query: &str) -> Socket {
    let auth = format!("Token {KEY}");
    connect(server, query, &[("Authorization", &auth)])
        .unwrap_or_else(|refused| panic!("refused: {refused:?}"))
}

fn send_audio(socket: &mut Socket, pcm: &[u8]) {
    for frame in pcm.chunks(3200) {
        socket
            .send(Message::binary(frame.to_vec()))
            .expect("send audio");
    }
}

fn send_text(socket: &mut Socket, text: &str) {
    socket.send(Message::text(text)).expect("send text");
}

/// The next JSON message; `None` once the server closed.
fn next(socket: &mut Socket) -> Option<Value> {
    loop {
        match socket.read() {
            Ok(Message::Text(text)) => return Some(serde_json::from_str(&text).expect("JSON")),
            Ok(Message::Close(_)) => return None,
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                return None
            }
            Err(error) => panic!("read failed: {error}"),
        }
    }
}

/// Messages up to and including the first that `done` accepts.
fn until(socket: &mut Socket, done: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut seen = Vec::new();
    while let Some(message) = next(socket) {
        let stop = done(&message);
        seen.push(message);
        if stop {
            return seen;
        }
    }
    panic!("closed before the awaited message; got {seen:#?}");
}

/// Every message until the server's close, and the close frame's code and
/// reason.
fn to_close(socket: &mut Socket) -> (Vec<Value>, Option<(u16, String)>) {
    let mut messages = Vec::new();
    loop {
        match socket.read() {
            Ok(Message::Text(text)) => messages.push(serde_json::from_str(&text).expect("JSON")),
            Ok(Message::Close(frame)) => {
                let close = frame.map(|frame| (u16::from(frame.code), frame.reason.to_string()));
                while socket.read().is_ok() {}
                return (messages, close);
            }
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                return (messages, None)
            }
            Err(error) => panic!("read failed: {error}; got {messages:#?}"),
        }
    }
}

fn is_final(message: &Value) -> bool {
    message["type"] == "Results" && message["is_final"] == true
}

#[test]
fn a_live_session_streams_results_and_ends_with_metadata_on_close_stream() {
    let server = server(&[]);
    let query = format!("{LIVE}&model=nova-3&channels=1&interim_results=true&vad_events=true&endpointing=500&utterance_end_ms=1000&punctuate=true");
    let mut socket = connect_ok(&server, &query);

    // The operators see it, in its dialect.
    let auth = format!("Bearer {KEY}");
    assert!(eventually(Duration::from_secs(10), || {
        let sessions = request_with(&server, "GET", "/v1/sessions", &[("Authorization", &auth)]);
        sessions.json()["sessions"][0]["protocol"] == "deepgram"
    }));

    // Into the first utterance (speech from 0.3 s), and wait for an interim:
    // audio sent faster than real time could otherwise end the segment
    // before any interim was due.
    let pcm = fixture_pcm("two_utterances.wav");
    let (head, tail) = pcm.split_at(16_000 * 2);
    send_audio(&mut socket, head);
    let mut messages = until(&mut socket, |m| m["type"] == "Results");
    send_audio(&mut socket, tail);
    send_text(&mut socket, r#"{"type": "CloseStream"}"#);
    let (rest, close) = to_close(&mut socket);
    messages.extend(rest);
    assert_eq!(close.map(|(code, _)| code), Some(1000), "{messages:#?}");

    let kinds: Vec<&str> = messages
        .iter()
        .map(|m| m["type"].as_str().expect("type"))
        .collect();
    assert_eq!(kinds.last(), Some(&"Metadata"), "{kinds:?}");
    assert_eq!(
        kinds.iter().filter(|k| **k == "SpeechStarted").count(),
        2,
        "{kinds:?}"
    );
    let finals: Vec<&Value> = messages.iter().filter(|m| is_final(m)).collect();
    assert_eq!(finals.len(), 2, "{messages:#?}");
    // The first utterance ended in silence; the second at CloseStream.
    assert_eq!(finals[0]["speech_final"], true);
    let utterance_end = kinds.iter().position(|k| *k == "UtteranceEnd");
    let first_final = messages.iter().position(is_final);
    assert!(utterance_end > first_final, "{kinds:?}");
    assert!(
        messages
            .iter()
            .any(|m| m["type"] == "Results" && m["is_final"] == false),
        "interim Results: {kinds:?}"
    );

    let request_id = &finals[0]["metadata"]["request_id"];
    assert!(request_id.as_str().is_some_and(|id| !id.is_empty()));
    for (index, result) in finals.iter().enumerate() {
        assert_eq!(result["channel_index"], serde_json::json!([0, 1]));
        assert_eq!(&result["metadata"]["request_id"], request_id);
        let (start, duration) = (
            result["start"].as_f64().expect("start"),
            result["duration"].as_f64().expect("duration"),
        );
        let alternative = &result["channel"]["alternatives"][0];
        assert!(!alternative["transcript"].as_str().expect("text").is_empty());
        let words = alternative["words"].as_array().expect("words");
        assert!(!words.is_empty(), "final {index} has words");
        for word in words {
            let (word_start, word_end) = (word["start"].as_f64(), word["end"].as_f64());
            assert!(
                word_start >= Some(start - 0.001) && word_end <= Some(start + duration + 0.001)
            );
            assert!(word["punctuated_word"].is_string() && word["confidence"].is_number());
        }
    }
    let metadata = messages.last().expect("metadata");
    assert_eq!(&metadata["request_id"], request_id);
    assert_eq!(metadata["channels"], 1);
    assert_eq!(metadata["duration"].as_f64(), Some(4.992));
}

#[test]
fn finalize_is_answered_with_from_finalize_and_bad_control_messages_with_errors() {
    let server = server(&[]);
    let mut socket = connect_ok(&server, &format!("{LIVE}&vad_events=true"));
    let pcm = fixture_pcm("hello.wav");
    // Into the speech, then Finalize: its final says it answers it.
    send_audio(&mut socket, &pcm[..pcm.len() * 2 / 3]);
    until(&mut socket, |m| m["type"] == "SpeechStarted");
    send_text(&mut socket, r#"{"type":"Finalize"}"#);
    let result = until(&mut socket, is_final).pop().expect("final");
    assert_eq!(
        (&result["from_finalize"], &result["speech_final"]),
        (&true.into(), &false.into())
    );
    assert!(!result["channel"]["alternatives"][0]["transcript"]
        .as_str()
        .expect("text")
        .is_empty());

    // Bad JSON, an unknown type, no type at all: each an Error naming the
    // message, and the session goes on.
    for bad in ["{\"type\": ", r#"{"type":"Rewind"}"#, r#"[1, 2]"#] {
        send_text(&mut socket, bad);
        let error = next(&mut socket).expect("an error");
        assert_eq!(
            (&error["type"], &error["variant"]),
            (&"Error".into(), &"SchemaError".into()),
            "{error}"
        );
        assert_eq!(error["message"], bad);
        assert!(error["description"].is_string());
    }
    send_text(
        &mut socket,
        r#"{"type":"Configure","features":{"numerals":true}}"#,
    );
    assert_eq!(
        next(&mut socket).expect("a reply")["type"],
        "ConfigureFailure"
    );
    send_text(&mut socket, r#"{"type":"KeepAlive"}"#);

    // Nothing left to finish: an empty final Results answers the Finalize.
    send_text(&mut socket, r#"{"type":"Finalize"}"#);
    let empty = until(&mut socket, |m| m["from_finalize"] == true)
        .pop()
        .expect("answer");
    assert_eq!(empty["channel"]["alternatives"][0]["transcript"], "");
    assert_eq!(empty["is_final"], true);

    send_text(&mut socket, r#"{"type":"CloseStream"}"#);
    let (messages, close) = to_close(&mut socket);
    assert_eq!(
        messages.last().map(|m| &m["type"]),
        Some(&"Metadata".into())
    );
    assert_eq!(close.map(|(code, _)| code), Some(1000));
}

#[test]
fn keepalive_holds_an_idle_session_open_and_silence_closes_it_1011() {
    let server = server(&[
        "--session-idle-timeout-seconds",
        "1",
        "--session-cleanup-interval-seconds",
        "1",
    ]);
    let mut kept = connect_ok(&server, LIVE);
    let mut idle = connect_ok(&server, LIVE);
    send_audio(&mut kept, &fixture_pcm("silence.wav")[..3200]);
    send_audio(&mut idle, &fixture_pcm("silence.wav")[..3200]);
    let idle = std::thread::spawn(move || to_close(&mut idle));
    // Three idle timeouts of KeepAlive later, this one is still there.
    for _ in 0..12 {
        send_text(&mut kept, r#"{"type":"KeepAlive"}"#);
        std::thread::sleep(Duration::from_millis(250));
    }
    // The idle one was closed as Deepgram closes it: no Metadata, 1011 NET-0001.
    let (messages, close) = idle.join().expect("the idle reader");
    assert!(messages.is_empty(), "{messages:#?}");
    assert_eq!(close, Some((1011, "NET-0001".to_string())));
    send_text(&mut kept, r#"{"type":"CloseStream"}"#);
    let (messages, close) = to_close(&mut kept);
    assert_eq!(
        messages.last().map(|m| &m["type"]),
        Some(&"Metadata".into()),
        "{messages:#?}"
    );
    assert_eq!(close.map(|(code, _)| code), Some(1000));
}

#[test]
fn keys_come_as_deepgram_clients_send_them() {
    let server = server(&[]);
    // Bearer, as the SDK sends temporary tokens.
    let bearer = format!("Bearer {KEY}");
    connect(&server, LIVE, &[("Authorization", &bearer)]).expect("Bearer works");
    // A browser's subprotocol pair: the server must choose `token`, or the
    // client fails the connection (tungstenite checks it too).
    let protocols = format!("token, {KEY}");
    connect(&server, LIVE, &[("Sec-WebSocket-Protocol", &protocols)]).expect("subprotocol works");
    // Missing and wrong keys: 401 before the upgrade, Deepgram's shape.
    for headers in [vec![], vec![("Authorization", "Token nope")]] {
        let refused = connect(&server, LIVE, &headers).expect_err("refused");
        assert_eq!(refused.status, 401);
        assert_eq!(refused.body["err_code"], "INVALID_AUTH", "{refused:?}");
        assert!(refused.body["request_id"].is_string());
    }
}

#[test]
fn unsupported_parameters_are_refused_before_the_upgrade_in_deepgrams_shape() {
    let server = server(&[]);
    for query in [
        "encoding=linear16&sample_rate=16000&diarize=true",
        "encoding=linear16&sample_rate=16000&multichannel=true",
        "encoding=linear16&sample_rate=16000&channels=2",
        "encoding=opus&sample_rate=48000",
        "encoding=linear16&sample_rate=22050",
        "encoding=linear16&sample_rate=16000&redact=pci",
        "encoding=linear16&sample_rate=16000&endpointing=-5",
        "sample_rate=16000",
    ] {
        let auth = format!("Token {KEY}");
        let refused = connect(&server, query, &[("Authorization", &auth)]).expect_err(query);
        assert_eq!(refused.status, 400, "{query}");
        assert_eq!(
            refused.body["err_code"], "Bad Request",
            "{query}: {refused:?}"
        );
        let message = refused.body["err_msg"].as_str().expect("err_msg");
        assert!(!message.is_empty());
        assert_eq!(refused.dg_error.as_deref(), Some(message), "{query}");
    }
    // Nothing was admitted.
    let auth = format!("Bearer {KEY}");
    let metrics = request_with(
        &server,
        "GET",
        "/v1/sessions/metrics",
        &[("Authorization", &auth)],
    );
    assert_eq!(metrics.json()["total_created"], 0);
}

#[test]
fn prerecorded_audio_gets_deepgrams_response() {
    let server = server(&[]);
    let auth = format!("Token {KEY}");
    let headers = [("Authorization", auth.as_str())];
    let reply = post(
        &server,
        "/v1/listen?model=nova-3&smart_format=true&utterances=true",
        "audio/wav",
        &fixture("two_utterances.wav"),
        &headers,
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["metadata"]["duration"].as_f64(), Some(4.992));
    assert_eq!(body["metadata"]["channels"], 1);
    let model = body["metadata"]["models"][0].as_str().expect("model id");
    assert_eq!(body["metadata"]["model_info"][model]["name"], "mock");
    assert!(body["metadata"]["request_id"].is_string());
    let alternative = &body["results"]["channels"][0]["alternatives"][0];
    let words = alternative["words"].as_array().expect("words");
    assert!(!words.is_empty());
    for word in words {
        for field in ["word", "punctuated_word"] {
            assert!(word[field].is_string(), "{word}");
        }
        assert!(word["start"].as_f64() <= word["end"].as_f64());
    }
    let utterances = body["results"]["utterances"]
        .as_array()
        .expect("utterances");
    assert_eq!(utterances.len(), 2);
    let joined: Vec<&str> = utterances
        .iter()
        .map(|u| u["transcript"].as_str().expect("text"))
        .collect();
    assert_eq!(joined.join(" "), alternative["transcript"]);

    // Raw samples: encoding and rate from the query; the same speech as the
    // WAV, so the same transcript. And without utterances=true, none.
    let raw = post(
        &server,
        "/v1/listen?encoding=linear16&sample_rate=16000&smart_format=true",
        "application/octet-stream",
        &fixture_pcm("two_utterances.wav"),
        &headers,
    );
    assert_eq!(raw.status, 200, "{}", raw.text());
    let raw = raw.json();
    assert_eq!(
        raw["results"]["channels"][0]["alternatives"][0]["transcript"],
        alternative["transcript"]
    );
    assert!(raw["results"].get("utterances").is_none());
}

#[test]
fn prerecorded_refusals_are_deepgram_shaped() {
    let server = server(&["--max-body-bytes", "65536"]);
    let auth = format!("Token {KEY}");
    let headers = [("Authorization", auth.as_str())];
    let cases: [(&str, &str, &[u8], u16); 5] = [
        (
            "/v1/listen",
            "application/json",
            br#"{"url": "https://example.com/a.wav"}"#,
            400,
        ),
        ("/v1/listen", "application/json", b"{}", 400),
        ("/v1/listen", "text/plain", b"hello", 415),
        ("/v1/listen?diarize=true", "audio/wav", b"RIFF", 400),
        (
            "/v1/listen?encoding=linear16",
            "audio/l16",
            b"\0\0\0\0",
            400,
        ),
    ];
    for (path, content_type, body, status) in cases {
        let reply = post(&server, path, content_type, body, &headers);
        assert_eq!(
            reply.status,
            status,
            "{path} {content_type}: {}",
            reply.text()
        );
        let error = reply.json();
        assert!(
            error["err_code"].is_string() && error["err_msg"].is_string(),
            "{error}"
        );
        assert!(reply.header("dg-request-id").is_some());
    }
    let url = post(
        &server,
        "/v1/listen",
        "application/json",
        br#"{"url": "http://x"}"#,
        &headers,
    );
    assert!(url.json()["err_msg"]
        .as_str()
        .is_some_and(|m| m.contains("URL")));
    // Errors the connection itself finds are in the dialect too.
    let unauthorized = post(&server, "/v1/listen", "audio/wav", b"RIFF", &[]);
    assert_eq!(unauthorized.status, 401);
    assert_eq!(unauthorized.json()["err_code"], "INVALID_AUTH");
    let too_large = post(
        &server,
        "/v1/listen",
        "audio/wav",
        &vec![0u8; 70_000],
        &headers,
    );
    assert_eq!(too_large.status, 413);
    assert!(too_large.json()["err_msg"].is_string());
}
