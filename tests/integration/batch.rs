//! `POST /v1/transcribe`: every accepted audio form, segmentation,
//! determinism, and overload.

use std::sync::{Arc, Barrier};

use serde_json::Value;

use crate::support::{fixture, get, multipart, post, Raw, Server};

fn transcribe(server: &Server, query: &str, content_type: &str, body: &[u8]) -> Value {
    let reply = post(
        server,
        &format!("/v1/transcribe{query}"),
        content_type,
        body,
        &[],
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/json")));
    reply.json()
}

/// The checks every successful answer must pass: the contract's shape, and
/// segments ordered, non-overlapping and inside the audio.
fn assert_contract_shape(answer: &Value) {
    let duration = answer["duration"].as_f64().expect("duration");
    assert!(duration > 0.0);
    assert_eq!(answer["model"], "mock");
    assert!(answer["processing_ms"].as_f64().expect("processing_ms") >= 0.0);
    let segments = answer["segments"].as_array().expect("segments");
    let mut previous_end = 0.0;
    let mut texts = Vec::new();
    for (index, segment) in segments.iter().enumerate() {
        assert_eq!(segment["id"].as_u64(), Some(index as u64));
        let (start, end) = (
            segment["start"].as_f64().expect("start"),
            segment["end"].as_f64().expect("end"),
        );
        assert!(
            previous_end <= start && start < end && end <= duration + 0.001,
            "{segment}"
        );
        previous_end = end;
        let text = segment["text"].as_str().expect("text");
        assert!(!text.is_empty());
        texts.push(text.to_string());
    }
    assert_eq!(answer["text"].as_str().expect("text"), texts.join(" "));
}

#[test]
fn a_spoken_sentence_gives_one_segment_of_mock_words() {
    let server = Server::start(&[]);
    let answer = transcribe(&server, "", "audio/wav", &fixture("hello.wav"));
    assert_contract_shape(&answer);
    assert_eq!(
        answer["segments"].as_array().map(Vec::len),
        Some(1),
        "{answer}"
    );
    let text = answer["text"].as_str().expect("text");
    assert!(!text.is_empty());
    for word in text.split(' ') {
        assert!(
            transcription_service::model::mock::VOCABULARY.contains(&word),
            "{word} is not a mock word"
        );
    }
    // No word timings unless asked for.
    assert!(answer["segments"][0].get("words").is_none());
}

#[test]
fn two_utterances_separated_by_a_pause_give_two_segments() {
    let server = Server::start(&[]);
    let answer = transcribe(&server, "", "audio/wav", &fixture("two_utterances.wav"));
    assert_contract_shape(&answer);
    let segments = answer["segments"].as_array().expect("segments");
    assert_eq!(segments.len(), 2, "{answer}");
    let gap =
        segments[1]["start"].as_f64().unwrap_or(0.0) - segments[0]["end"].as_f64().unwrap_or(0.0);
    assert!(gap > 0.5, "the pause between the utterances is kept: {gap}");
}

#[test]
fn silence_and_quiet_noise_give_empty_text_not_an_error() {
    let server = Server::start(&[]);
    for name in ["silence.wav", "noise_low.wav"] {
        let answer = transcribe(&server, "", "audio/wav", &fixture(name));
        assert_eq!(answer["text"], "", "{name}: {answer}");
        assert_eq!(answer["segments"], Value::Array(vec![]), "{name}");
        assert!(answer["duration"].as_f64().expect("duration") > 1.0);
    }
}

#[test]
fn the_same_audio_always_gives_the_same_text() {
    let server = Server::start(&["--cores", "2"]);
    let wav = fixture("two_utterances.wav");
    let first = transcribe(&server, "", "audio/wav", &wav);
    for _ in 0..5 {
        let again = transcribe(&server, "", "audio/wav", &wav);
        assert_eq!(again["text"], first["text"]);
        assert_eq!(again["segments"], first["segments"]);
    }
    // A different server process agrees too.
    let other = Server::start(&["--cores", "1"]);
    assert_eq!(
        transcribe(&other, "", "audio/wav", &wav)["segments"],
        first["segments"]
    );
}

#[test]
fn word_timings_when_asked_lie_inside_their_segment() {
    let server = Server::start(&[]);
    let answer = transcribe(
        &server,
        "?words=true",
        "audio/wav",
        &fixture("two_utterances.wav"),
    );
    assert_contract_shape(&answer);
    for segment in answer["segments"].as_array().expect("segments") {
        let (start, end) = (
            segment["start"].as_f64().unwrap_or(-1.0),
            segment["end"].as_f64().unwrap_or(-1.0),
        );
        let words = segment["words"].as_array().expect("words");
        assert_eq!(
            words.len(),
            segment["text"].as_str().unwrap_or("").split(' ').count()
        );
        for word in words {
            let (word_start, word_end) = (
                word["start"].as_f64().unwrap_or(-1.0),
                word["end"].as_f64().unwrap_or(-1.0),
            );
            assert!(
                start <= word_start && word_start <= word_end && word_end <= end + 0.001,
                "{word} in {segment}"
            );
        }
    }
}

#[test]
fn every_accepted_audio_form_is_transcribed() {
    let server = Server::start(&[]);
    let wav = transcribe(&server, "", "audio/wav", &fixture("hello.wav"));
    // Raw PCM of the very same samples gives the very same answer.
    let raw = fixture("hello.raw");
    for (content_type, query) in [
        ("audio/pcm", ""),
        ("audio/L16; rate=16000", ""),
        ("audio/pcm", "?sample_rate=16000"),
    ] {
        let answer = transcribe(&server, query, content_type, &raw);
        assert_eq!(answer["segments"], wav["segments"], "{content_type}{query}");
    }
    for alias in ["audio/x-wav", "audio/wave"] {
        assert_eq!(
            transcribe(&server, "", alias, &fixture("hello.wav"))["segments"],
            wav["segments"]
        );
    }
    // Multipart with a file part, as browsers and SDKs send it.
    let (content_type, body) = multipart(
        &[("unused", "x")],
        Some(("hello.wav", "audio/wav", &fixture("hello.wav"))),
    );
    assert_eq!(
        transcribe(&server, "", &content_type, &body)["segments"],
        wav["segments"]
    );
    // Other layouts: stereo at 44.1 kHz, 32-bit float, 8 kHz, FLAC.
    for (name, content_type) in [
        ("hello_stereo_44k.wav", "audio/wav"),
        ("hello_f32.wav", "audio/wav"),
        ("hello_8k.wav", "audio/wav"),
        ("hello.flac", "audio/flac"),
        ("hello.flac", "application/octet-stream"),
    ] {
        let answer = transcribe(&server, "", content_type, &fixture(name));
        assert_contract_shape(&answer);
        assert_eq!(
            answer["segments"].as_array().map(Vec::len),
            Some(1),
            "{name}: {answer}"
        );
    }
}

#[test]
fn a_chunked_upload_is_the_same_as_a_sized_one() {
    let server = Server::start(&[]);
    let wav = fixture("hello.wav");
    let expected = transcribe(&server, "", "audio/wav", &wav);
    let mut raw = Raw::connect(&server);
    raw.send(b"POST /v1/transcribe HTTP/1.1\r\nContent-Type: audio/wav\r\nTransfer-Encoding: chunked\r\n\r\n");
    for piece in wav.chunks(3000) {
        raw.send(format!("{:x}\r\n", piece.len()).as_bytes());
        raw.send(piece);
        raw.send(b"\r\n");
    }
    raw.send(b"0\r\n\r\n");
    let reply = raw.read_response().expect("a response");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["segments"], expected["segments"]);
}

#[test]
fn bad_audio_gets_415_or_422_and_bad_parameters_400() {
    let server = Server::start(&[]);
    let cases: &[(&str, &str, &[u8], u16, &str)] = &[
        (
            "",
            "text/plain",
            b"hello there",
            415,
            "unsupported_media_type",
        ),
        (
            "",
            "audio/wav",
            b"this is not a wav file at all, not even close",
            415,
            "unsupported_media_type",
        ),
        (
            "",
            "application/octet-stream",
            &[0u8; 512],
            415,
            "unsupported_media_type",
        ),
        ("", "audio/wav", b"", 422, "invalid_audio"),
        ("?vad_mode=9", "audio/wav", b"RIFF", 400, "bad_request"),
        ("?words=perhaps", "audio/wav", b"RIFF", 400, "bad_request"),
        ("?sample_rate=5", "audio/pcm", b"\0\0", 400, "bad_request"),
        ("", "multipart/form-data", b"--x--", 400, "bad_request"),
    ];
    for (query, content_type, body, status, code) in cases {
        let reply = post(
            &server,
            &format!("/v1/transcribe{query}"),
            content_type,
            body,
            &[],
        );
        assert_eq!(
            reply.status,
            *status,
            "{query} {content_type}: {}",
            reply.text()
        );
        assert_eq!(reply.error_code(), *code);
    }
    // A WAV header that declares no samples is decodable but unusable.
    let mut empty = fixture("hello.wav");
    empty.truncate(44);
    set_wav_data_len(&mut empty, 0);
    let reply = post(&server, "/v1/transcribe", "audio/wav", &empty, &[]);
    assert_eq!(reply.status, 422, "{}", reply.text());
    assert_eq!(reply.error_code(), "invalid_audio");
    // A form without a file part.
    let (content_type, body) = multipart(&[("model", "whisper-1")], None);
    let reply = post(&server, "/v1/transcribe", &content_type, &body, &[]);
    assert_eq!(reply.status, 400);
}

/// Patch the RIFF and data chunk sizes of a canonical 44-byte WAV header.
fn set_wav_data_len(wav: &mut [u8], data_len: u32) {
    assert_eq!(&wav[36..40], b"data", "canonical header");
    wav[4..8].copy_from_slice(&(36 + data_len).to_le_bytes());
    wav[40..44].copy_from_slice(&data_len.to_le_bytes());
}

#[test]
fn a_full_model_queue_answers_503_with_retry_after() {
    // One worker, a queue of one, and a slow model: concurrent uploads
    // cannot all be queued.
    let server = Server::start(&[
        "--model-workers",
        "1",
        "--model-queue-capacity",
        "1",
        "--mock-latency-ms",
        "400",
    ]);
    let server = Arc::new(server);
    let clients = 6;
    let barrier = Arc::new(Barrier::new(clients));
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let server = Arc::clone(&server);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let wav = fixture("hello.wav");
                barrier.wait();
                post(&server, "/v1/transcribe", "audio/wav", &wav, &[])
            })
        })
        .collect();
    let replies: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("client"))
        .collect();
    let overloaded: Vec<_> = replies.iter().filter(|r| r.status == 503).collect();
    let ok = replies.iter().filter(|r| r.status == 200).count();
    assert!(!overloaded.is_empty(), "some uploads must be refused");
    assert!(ok >= 1, "the queued uploads complete");
    assert_eq!(ok + overloaded.len(), clients);
    for reply in overloaded {
        assert_eq!(reply.error_code(), "overloaded");
        assert_eq!(reply.header("retry-after"), Some("1"));
    }
}

/// The model jobs the server has accepted, once its counters are published
/// and have reached at least `at_least`.
fn model_jobs(server: &Server, at_least: f64) -> f64 {
    let mut jobs = 0.0;
    crate::support::eventually(std::time::Duration::from_secs(10), || {
        jobs = crate::support::metric(server, "transcribe_model_jobs_total", &[]).unwrap_or(0.0);
        jobs >= at_least
    });
    jobs
}

#[test]
fn packed_windows_keep_every_segment_with_its_own_words() {
    // The same audio, one job per segment and packed into one window.
    let wav = fixture("two_utterances.wav");
    let alone = Server::start(&[]);
    let packed = Server::start(&["--batch-window-seconds", "28"]);
    let by_segment = transcribe(&alone, "?words=true", "audio/wav", &wav);
    let by_window = transcribe(&packed, "?words=true", "audio/wav", &wav);
    assert_contract_shape(&by_window);
    // Two segments, two jobs; then one window, one job.
    assert_eq!(model_jobs(&alone, 2.0), 2.0);
    assert_eq!(model_jobs(&packed, 1.0), 1.0);
    let segments = by_window["segments"].as_array().expect("segments");
    let reference = by_segment["segments"].as_array().expect("segments");
    assert_eq!(segments.len(), 2, "{by_window}");
    let mut words_total = 0;
    for (segment, alone) in segments.iter().zip(reference) {
        // The segments are the VAD's, whatever the packing.
        assert_eq!(segment["start"], alone["start"]);
        assert_eq!(segment["end"], alone["end"]);
        let (start, end) = (
            segment["start"].as_f64().expect("start"),
            segment["end"].as_f64().expect("end"),
        );
        let words = segment["words"].as_array().expect("words");
        let text: Vec<&str> = segment["text"].as_str().expect("text").split(' ').collect();
        assert_eq!(words.len(), text.len(), "{segment}");
        for (word, spoken) in words.iter().zip(&text) {
            assert_eq!(word["word"].as_str(), Some(*spoken));
            assert!(transcription_service::model::mock::VOCABULARY.contains(spoken));
            let (word_start, word_end) = (
                word["start"].as_f64().expect("start"),
                word["end"].as_f64().expect("end"),
            );
            assert!(
                start <= word_start && word_start <= word_end && word_end <= end + 0.001,
                "{word} in {segment}"
            );
        }
        words_total += words.len();
    }
    // The mock says 2.5 words a second of what it hears: both segments and
    // the 0.3 s between them, all of it given back to the segments.
    let heard: f64 = segments
        .iter()
        .map(|s| s["end"].as_f64().unwrap_or(0.0) - s["start"].as_f64().unwrap_or(0.0))
        .sum::<f64>()
        + 0.3;
    // (Segment times are rounded to milliseconds: one word either way.)
    let expected = (heard * 2.5).round() as usize;
    assert!(
        words_total.abs_diff(expected) <= 1,
        "{words_total} words, {expected} expected: {by_window}"
    );
}

#[test]
fn a_batch_window_outside_its_range_is_refused_at_start() {
    for value in ["0.5", "31", "NaN"] {
        let (status, _, stderr) =
            crate::support::run_to_exit(&["--batch-window-seconds", value], &[]);
        assert_eq!(status.code(), Some(2), "{value}: {stderr}");
        assert!(
            stderr.contains("--batch-window-seconds"),
            "{value}: {stderr}"
        );
    }
}

/// An Ogg Vorbis upload whose comment header claims 4 GB (the fuzz
/// reproducer `audio_decode-ogg-vorbis-comment-alloc`), sent to a server
/// limited to 2 GB of address space (as on a host with strict overcommit):
/// the comment is emptied before the decoder sizes anything from it, so the
/// upload is transcribed and the server goes on. (Before, the decoder asked
/// for 4294967280 bytes and the process aborted: "memory allocation of
/// 4294967280 bytes failed".)
#[test]
fn an_ogg_comment_claiming_gigabytes_costs_nothing() {
    let server = Server::start_wrapped(
        &["prlimit", "--as=2000000000", "--"],
        &["--cores", "2"],
        &[],
    );
    let reproducer = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fuzz/regressions/audio_decode-ogg-vorbis-comment-alloc"
    ))
    .expect("the reproducer");
    // The harness's selector byte, then the file.
    let body = &reproducer[1..];
    let reply = post(&server, "/v1/transcribe", "audio/ogg", body, &[]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.json()["duration"].as_f64().is_some_and(|d| d > 0.0));
    assert_eq!(get(&server, "/v1/health").status, 200);
}
