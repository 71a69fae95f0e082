//! The real engine end to end: the `transcription-server` binary built with
//! the `whisper` feature, started with `--model whisper` on the tiny.en
//! weights that `scripts/fetch-model.sh` converts, transcribing flite speech
//! (tests/fixtures/whisper/, made by scripts/make-whisper-fixtures.sh).
//!
//! Run with `scripts/test-whisper.sh` (it fetches the model first). Without
//! the model file these tests fail and say how to get it: they never skip.
//!
//! Built with the `ct2` feature alone (`scripts/test-whisper.sh` runs both
//! builds), the same tests run `--model ct2` on the CTranslate2 directory
//! `scripts/fetch-ct2.sh` extracts; the tests of ggml files are whisper.cpp's
//! only, and a damaged CTranslate2 directory has its own.

#![cfg(any(feature = "whisper", feature = "ct2"))]

#[path = "integration/support.rs"]
mod support;

use std::path::PathBuf;

use serde_json::Value;
use support::{get, multipart, post, Server, Ws};
use transcription_service::model::text::{normalise, word_edits};

/// The size of a correct tiny.en conversion (../shared/REAL_ENGINE.md).
#[cfg(feature = "whisper")]
const TINY_EN_BYTES: u64 = 77_704_715;

/// 20 ms of 16 kHz PCM16.
const FRAME_BYTES: usize = 640;

/// The engine under test (`--model`), its weights and the script that
/// fetches them.
#[cfg(feature = "whisper")]
const ENGINE: (&str, &str, &str) = ("whisper", "models/ggml-tiny.en.bin", "fetch-model.sh");
#[cfg(not(feature = "whisper"))]
const ENGINE: (&str, &str, &str) = ("ct2", "models/ct2-tiny.en", "fetch-ct2.sh");

fn model_path() -> PathBuf {
    let path = std::env::var_os("TRANSCRIBE_TEST_MODEL_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(ENGINE.1));
    assert!(
        path.exists(),
        "{} is missing: run scripts/{} first",
        path.display(),
        ENGINE.2
    );
    path
}

fn whisper_fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/whisper")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// A server on the real engine, ready to transcribe.
fn whisper_server(extra: &[&str]) -> Server {
    whisper_server_on(&model_path(), extra)
}

/// A server on the real engine with the weights at `path`, ready.
fn whisper_server_on(path: &std::path::Path, extra: &[&str]) -> Server {
    let path = path.to_str().expect("UTF-8 path");
    let mut args = vec!["--model", ENGINE.0, "--model-path", path];
    args.extend_from_slice(extra);
    let server = Server::start(&args);
    assert!(
        support::eventually(std::time::Duration::from_secs(60), || get(
            &server,
            "/v1/ready"
        )
        .status
            == 200),
        "the model never became ready: {:?}",
        server.stderr_lines()
    );
    server
}

fn batch(server: &Server, wav: &[u8], query: &str) -> Value {
    let reply = post(
        server,
        &format!("/v1/transcribe{query}"),
        "audio/wav",
        wav,
        &[],
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

/// The finals of streaming `wav` (a 44-byte-header PCM16 WAV), as fast as the
/// server reads.
fn stream_finals(server: &Server, wav: &[u8]) -> Vec<Value> {
    let mut ws = Ws::connect(server, "");
    ws.stream_audio(&wav[44..], FRAME_BYTES);
    ws.send_text(r#"{"type": "end"}"#);
    let (messages, code) = ws.read_to_close();
    assert_eq!(code, Some(1000), "{messages:#?}");
    assert!(
        messages.iter().all(|m| m["type"] != "error"),
        "{messages:#?}"
    );
    messages
        .into_iter()
        .filter(|m| m["type"] == "transcript" && m["is_final"] == true)
        .collect()
}

#[cfg(feature = "whisper")]
#[test]
fn the_converted_model_has_the_known_size_and_loads() {
    let path = model_path();
    let size = std::fs::metadata(&path).expect("model file").len();
    assert_eq!(size, TINY_EN_BYTES, "{}", path.display());
    let server = whisper_server(&[]);
    let health = get(&server, "/v1/health").json();
    assert_eq!(health["model"], "whisper");
    assert_eq!(health["model_state"], "ready");
    let warnings: Vec<String> = server
        .stderr_lines()
        .into_iter()
        .filter(|line| line.contains("WARN") || line.contains("ERROR"))
        .collect();
    assert!(warnings.is_empty(), "loading warned: {warnings:#?}");
}

#[cfg(feature = "whisper")]
#[test]
fn the_q8_0_copy_passes_the_check_loads_and_hears_hello_world() {
    // scripts/fetch-model.sh writes it beside the f16 model.
    let path = model_path().with_file_name("ggml-tiny.en-q8_0.bin");
    let summary = ct2ggml::check::check_file(&path).expect("a well-formed q8_0 model");
    assert_eq!(summary.hparams.ftype, ct2ggml::quantize::FTYPE_Q8_0);
    let server = whisper_server_on(&path, &[]);
    let body = batch(&server, &whisper_fixture("hello_world.wav"), "");
    assert_eq!(
        normalise(body["text"].as_str().expect("text")),
        "hello world this is a test"
    );
}

#[test]
fn flite_hello_world_comes_back_word_for_word() {
    let server = whisper_server(&[]);
    let body = batch(&server, &whisper_fixture("hello_world.wav"), "?words=true");
    assert_eq!(body["model"], ENGINE.0);
    assert_eq!(
        normalise(body["text"].as_str().expect("text")),
        "hello world this is a test"
    );
    let segments = body["segments"].as_array().expect("segments");
    assert_eq!(segments.len(), 1, "{body:#}");
    let words: Vec<String> = segments[0]["words"]
        .as_array()
        .expect("words")
        .iter()
        .map(|w| normalise(w["word"].as_str().expect("word")))
        .collect();
    assert_eq!(words, ["hello", "world", "this", "is", "a", "test"]);
    let (start, end) = (segments[0]["start"].as_f64(), segments[0]["end"].as_f64());
    let (start, end) = (start.expect("start"), end.expect("end"));
    let mut previous = start;
    for word in segments[0]["words"].as_array().expect("words") {
        let (ws, we) = (
            word["start"].as_f64().expect("s"),
            word["end"].as_f64().expect("e"),
        );
        assert!(
            ws >= previous - 1e-9 && ws <= we && we <= end + 1e-9,
            "{body:#}"
        );
        previous = ws;
    }
}

#[test]
fn two_utterances_give_two_segments_at_their_times() {
    let server = whisper_server(&[]);
    let body = batch(&server, &whisper_fixture("two_utterances.wav"), "");
    let segments = body["segments"].as_array().expect("segments");
    assert_eq!(segments.len(), 2, "{body:#}");
    assert_eq!(
        normalise(segments[0]["text"].as_str().expect("text")),
        "the weather is nice today"
    );
    assert_eq!(
        normalise(segments[1]["text"].as_str().expect("text")),
        "please send me the report tomorrow"
    );
    // The fixture: 0.3 s of silence, the first sentence, 1.5 s of silence,
    // the second, 0.3 s; the segments must sit around that gap.
    let times = |s: &Value| {
        (
            s["start"].as_f64().expect("start"),
            s["end"].as_f64().expect("end"),
        )
    };
    let ((s0, e0), (s1, e1)) = (times(&segments[0]), times(&segments[1]));
    let duration = body["duration"].as_f64().expect("duration");
    assert!(s0 < 0.5 && s0 < e0, "{body:#}");
    assert!(
        s1 - e0 > 0.4,
        "the 1.5 s gap between the segments: {body:#}"
    );
    assert!(s1 < e1 && e1 <= duration + 1e-9, "{body:#}");
}

#[test]
fn streaming_gives_the_same_finals_as_batch() {
    let server = whisper_server(&[]);
    for name in ["hello_world.wav", "two_utterances.wav"] {
        let wav = whisper_fixture(name);
        let body = batch(&server, &wav, "");
        let finals = stream_finals(&server, &wav);
        let streamed: Vec<String> = finals
            .iter()
            .map(|f| normalise(f["text"].as_str().expect("text")))
            .collect();
        let batched: Vec<String> = body["segments"]
            .as_array()
            .expect("segments")
            .iter()
            .map(|s| normalise(s["text"].as_str().expect("text")))
            .collect();
        assert_eq!(streamed, batched, "{name}");
    }
}

#[test]
fn the_cli_streams_a_file_and_prints_whispers_finals() {
    let server = whisper_server(&[]);
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/whisper/two_utterances.wav");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_transcribe"))
        .args(["--url", &server.url(""), "stream"])
        .arg(&path)
        .env_remove("TRANSCRIBE_API_KEY")
        .output()
        .expect("run transcribe");
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8_lossy(&output.stdout);
    let heard: Vec<String> = printed
        .lines()
        .map(|line| normalise(line.split_once("] ").map_or(line, |(_, text)| text)))
        .collect();
    assert_eq!(
        heard,
        [
            "the weather is nice today",
            "please send me the report tomorrow"
        ],
        "{printed}"
    );
}

#[test]
fn silence_gives_no_text() {
    let server = whisper_server(&[]);
    let silence = support::fixture("silence.wav");
    let body = batch(&server, &silence, "");
    assert_eq!(body["text"], "");
    assert_eq!(body["segments"], serde_json::json!([]));
    assert!(stream_finals(&server, &silence).is_empty());
}

#[test]
fn word_error_rate_on_the_flite_set_is_under_ten_percent() {
    let server = whisper_server(&[]);
    let list = String::from_utf8(whisper_fixture("wer.txt")).expect("UTF-8");
    let (mut edits, mut words) = (0, 0);
    let mut report = Vec::new();
    for line in list.lines().filter(|l| !l.trim().is_empty()) {
        let (name, reference) = line.split_once('\t').expect("NAME<TAB>TEXT");
        let body = batch(&server, &whisper_fixture(name), "");
        let heard = normalise(body["text"].as_str().expect("text"));
        let reference = normalise(reference);
        let r: Vec<&str> = reference.split_whitespace().collect();
        let h: Vec<&str> = heard.split_whitespace().collect();
        edits += word_edits(&r, &h);
        words += r.len();
        report.push(format!("{name}: {heard:?} (reference {reference:?})"));
    }
    assert!(words >= 40, "the set has {words} words");
    let wer = edits as f64 / words as f64;
    eprintln!("WER {:.1} % ({edits} edits / {words} words)", wer * 100.0);
    assert!(
        wer < 0.10,
        "WER {:.1} %:\n{}",
        wer * 100.0,
        report.join("\n")
    );
}

/// The WER set's sentences joined into one recording, `gap_s` of silence
/// apart (a meeting), and their references in order.
fn wer_set_as_one_recording(gap_s: f64) -> (Vec<u8>, Vec<String>) {
    let list = String::from_utf8(whisper_fixture("wer.txt")).expect("UTF-8");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut samples: Vec<i16> = Vec::new();
    let mut references = Vec::new();
    for line in list.lines().filter(|l| !l.trim().is_empty()) {
        let (name, reference) = line.split_once('\t').expect("NAME<TAB>TEXT");
        let reader = hound::WavReader::new(std::io::Cursor::new(whisper_fixture(name)))
            .expect("a WAV fixture");
        assert_eq!(reader.spec(), spec, "{name}");
        samples.extend(reader.into_samples::<i16>().map(|s| s.expect("sample")));
        samples.extend(std::iter::repeat_n(0, (gap_s * 16_000.0) as usize));
        references.push(normalise(reference));
    }
    let mut wav = std::io::Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut wav, spec).expect("writer");
    for sample in samples {
        writer.write_sample(sample).expect("write");
    }
    writer.finalize().expect("finalize");
    (wav.into_inner(), references)
}

fn wer_of(reference: &str, heard: &str) -> f64 {
    let r: Vec<&str> = reference.split_whitespace().collect();
    let h: Vec<&str> = heard.split_whitespace().collect();
    word_edits(&r, &h) as f64 / r.len().max(1) as f64
}

#[test]
fn a_recording_packed_into_windows_keeps_each_sentence_in_its_segment() {
    // About 33 s of eight sentences: more than one 28 s window, so the
    // default server packs them into two windows; the reference server
    // runs one job per segment.
    let (wav, references) = wer_set_as_one_recording(1.2);
    let packed = whisper_server(&[]);
    let alone = whisper_server(&["--batch-window-seconds", "0"]);
    let by_window = batch(&packed, &wav, "?words=true");
    let by_segment = batch(&alone, &wav, "?words=true");
    let segments = by_window["segments"].as_array().expect("segments");
    let reference_segments = by_segment["segments"].as_array().expect("segments");
    assert_eq!(segments.len(), references.len(), "{by_window:#}");
    assert_eq!(reference_segments.len(), references.len(), "{by_segment:#}");
    for ((segment, alone), reference) in segments.iter().zip(reference_segments).zip(&references) {
        // The same VAD segments, each with its own sentence: a sentence
        // given to the wrong segment would make two of them wrong.
        assert_eq!(segment["start"], alone["start"]);
        assert_eq!(segment["end"], alone["end"]);
        let heard = normalise(segment["text"].as_str().expect("text"));
        assert!(
            wer_of(reference, &heard) <= 0.34,
            "{heard:?} for {reference:?}: {by_window:#}"
        );
        let (start, end) = (
            segment["start"].as_f64().expect("start"),
            segment["end"].as_f64().expect("end"),
        );
        let mut previous = start;
        for word in segment["words"].as_array().expect("words") {
            let (word_start, word_end) = (
                word["start"].as_f64().expect("start"),
                word["end"].as_f64().expect("end"),
            );
            assert!(
                previous <= word_start + 1e-9 && word_start <= word_end && word_end <= end + 1e-3,
                "{word} in {segment}"
            );
            previous = word_start;
        }
    }
    // And the whole text is as good as the sentences heard one by one.
    let all_reference = references.join(" ");
    let packed_wer = wer_of(
        &all_reference,
        &normalise(by_window["text"].as_str().expect("text")),
    );
    eprintln!("packed WER {:.1} %", packed_wer * 100.0);
    assert!(
        packed_wer < 0.10,
        "WER {:.1} %: {by_window:#}",
        packed_wer * 100.0
    );
}

#[test]
fn the_openai_endpoint_returns_real_text_in_every_format() {
    let server = whisper_server(&[]);
    let wav = whisper_fixture("hello_world.wav");
    for format in ["json", "text", "srt", "vtt", "verbose_json"] {
        let (content_type, body) = multipart(
            &[("model", "whisper-1"), ("response_format", format)],
            Some(("hello_world.wav", "audio/wav", &wav)),
        );
        let reply = post(
            &server,
            "/v1/audio/transcriptions",
            &content_type,
            &body,
            &[],
        );
        assert_eq!(reply.status, 200, "{format}: {}", reply.text());
        let text = reply.text();
        let heard = match format {
            "json" | "verbose_json" => reply.json()["text"].as_str().expect("text").to_string(),
            _ => text.clone(),
        };
        assert!(
            normalise(&heard).contains("hello world this is a test"),
            "{format}: {text}"
        );
        if format == "srt" {
            assert!(text.starts_with("1\n00:00:0"), "{text}");
        }
        if format == "vtt" {
            assert!(text.starts_with("WEBVTT"), "{text}");
        }
    }
}

#[cfg(feature = "whisper")]
#[test]
fn a_damaged_model_file_is_refused_at_start_up() {
    let dir = scratch_dir("damaged");
    let path = dir.join("cut.bin");
    let model = std::fs::read(model_path()).expect("model");
    // Cut inside the last tensor: whisper.cpp would abort the process on
    // some damaged files, so the server checks the structure first.
    std::fs::write(&path, &model[..model.len() - 1000]).expect("write");
    let (status, _, stderr) = support::run_to_exit(
        &[
            "--model",
            "whisper",
            "--model-path",
            path.to_str().expect("UTF-8"),
        ],
        &[],
    );
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cut short"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(feature = "whisper")]
#[test]
fn a_model_whisper_cpp_rejects_fails_readiness_and_jobs_clearly() {
    // Well-formed, but with a tensor whisper.cpp does not know: it passes the
    // start-up check, then loading fails in the background.
    let dir = scratch_dir("unknown-tensor");
    let path = dir.join("renamed.bin");
    let mut model = std::fs::read(model_path()).expect("model");
    let name = b"encoder.conv1.weight";
    let at = model
        .windows(name.len())
        .position(|window| window == name)
        .expect("tensor name in the model");
    model[at..at + name.len()].copy_from_slice(b"encoder.convX.weight");
    std::fs::write(&path, &model).expect("write");
    let server = Server::start(&[
        "--model",
        "whisper",
        "--model-path",
        path.to_str().expect("UTF-8"),
    ]);
    assert!(support::eventually(
        std::time::Duration::from_secs(30),
        || { get(&server, "/v1/health").json()["model_state"] == "failed" }
    ));
    let ready = get(&server, "/v1/ready");
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["reason"], "model_failed");
    let reply = post(
        &server,
        "/v1/transcribe",
        "audio/wav",
        &whisper_fixture("hello_world.wav"),
        &[],
    );
    assert_eq!(reply.status, 500, "{}", reply.text());
    assert_eq!(reply.error_code(), "internal");
    assert!(reply.text().contains("failed to load"), "{}", reply.text());
    let _ = std::fs::remove_dir_all(&dir);
}

/// CTranslate2: a directory without `model.bin`, or with another model's
/// header, stops the server at start with exit code 2; a `model.bin` cut
/// short passes that check and fails the load clearly (readiness 503, jobs
/// 500), never the process.
#[cfg(not(feature = "whisper"))]
#[test]
fn a_damaged_ct2_model_directory_is_refused_or_fails_clearly() {
    let dir = scratch_dir("ct2-damaged");
    let source = model_path();
    for name in ["config.json", "vocabulary.txt"] {
        std::fs::copy(source.join(name), dir.join(name)).expect("copy");
    }
    let start = |dir: &std::path::Path| {
        support::run_to_exit(
            &[
                "--model",
                "ct2",
                "--model-path",
                dir.to_str().expect("UTF-8"),
            ],
            &[],
        )
    };
    let (status, _, stderr) = start(&dir);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("model.bin is missing"), "{stderr}");

    let mut other = 6u32.to_le_bytes().to_vec();
    other.extend_from_slice(&16u16.to_le_bytes());
    other.extend_from_slice(b"TransformerSpec\0");
    std::fs::write(dir.join("model.bin"), &other).expect("write");
    let (status, _, stderr) = start(&dir);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not Whisper"), "{stderr}");

    let model = std::fs::read(source.join("model.bin")).expect("model");
    std::fs::write(dir.join("model.bin"), &model[..model.len() / 2]).expect("write");
    let server = Server::start(&[
        "--model",
        "ct2",
        "--model-path",
        dir.to_str().expect("UTF-8"),
    ]);
    assert!(support::eventually(
        std::time::Duration::from_secs(30),
        || { get(&server, "/v1/health").json()["model_state"] == "failed" }
    ));
    let ready = get(&server, "/v1/ready");
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["reason"], "model_failed");
    let reply = post(
        &server,
        "/v1/transcribe",
        "audio/wav",
        &whisper_fixture("hello_world.wav"),
        &[],
    );
    assert_eq!(reply.status, 500, "{}", reply.text());
    assert!(reply.text().contains("failed to load"), "{}", reply.text());
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("whisper-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[test]
fn past_the_engines_capacity_streams_are_refused_instead_of_failing_everyone() {
    // Admission by capacity on the real engine: the start-up warm-up gives
    // the live capacity, and four more streams than it admits arrive at
    // once, each speaking in real time.
    let server = whisper_server(&[]);
    let capacity = get(&server, "/v1/sessions/metrics").json()["engine"]["live_capacity"]
        .as_f64()
        .expect("the capacity is measured at start-up");
    let admitted = ((0.85 * capacity).floor() as usize).max(1);
    let offered = admitted + 4;
    let wav = whisper_fixture("two_utterances.wav");
    let pcm = &wav[44..];
    let addr = server.addr;
    let outcomes: Vec<(bool, Vec<Value>, Option<u16>)> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..offered)
            .map(|_| {
                scope.spawn(move || {
                    let mut ws = Ws::connect_addr(addr, "interim_results=false");
                    let first = ws.next_json().expect("a first message");
                    if first["type"] == "error" {
                        let (_, code) = ws.read_to_close();
                        return (false, vec![first], code);
                    }
                    // 100 ms of audio every 100 ms.
                    for frame in pcm.chunks(FRAME_BYTES * 5) {
                        ws.send_audio(frame);
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                    ws.send_text(r#"{"type": "end"}"#);
                    let (messages, code) = ws.read_to_close();
                    (true, messages, code)
                })
            })
            .collect();
        clients
            .into_iter()
            .map(|client| client.join().expect("client thread"))
            .collect()
    });
    let served = outcomes.iter().filter(|(started, ..)| *started).count();
    assert!(
        served >= 1 && served < offered,
        "capacity {capacity}: {served} of {offered} admitted"
    );
    for (started, messages, code) in &outcomes {
        if *started {
            // Every admitted stream completes with every final, in order.
            assert_eq!(*code, Some(1000), "{messages:#?}");
            assert!(
                messages.iter().all(|m| m["type"] != "error"),
                "{messages:#?}"
            );
            let end = messages
                .iter()
                .find(|m| m["type"] == "session_end")
                .expect("session_end");
            let segments = end["metrics"]["segments"].as_u64().expect("segments");
            let finals: Vec<u64> = messages
                .iter()
                .filter(|m| m["type"] == "transcript" && m["is_final"] == true)
                .filter_map(|m| m["segment_id"].as_u64())
                .collect();
            assert!(segments >= 1, "{messages:#?}");
            assert_eq!(finals, (0..segments).collect::<Vec<_>>(), "{messages:#?}");
        } else {
            assert_eq!(messages[0]["code"], "overloaded", "{messages:#?}");
            assert!(messages[0]["retry_after_s"].as_u64().is_some());
            assert_eq!(*code, Some(1013));
        }
    }
}

/// The `text` of an OpenAI-style multipart POST of `wav` to `path`, as
/// normalised words.
fn openai_words(server: &Server, path: &str, fields: &[(&str, &str)], wav: &[u8]) -> Vec<String> {
    let (content_type, body) = multipart(fields, Some(("speech.wav", "audio/wav", wav)));
    let reply = post(server, path, &content_type, &body, &[]);
    assert_eq!(reply.status, 200, "{path} {fields:?}: {}", reply.text());
    let text = reply.json()["text"].as_str().expect("text").to_string();
    normalise(&text)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// A request's prompt reaches the decoder (OpenAI's `prompt`, Whisper's
/// previous text): naming a word the speech holds makes the engine hear it.
/// Without it, tiny.en on CTranslate2 hears "a loaf of red" in wer_02.
#[test]
fn a_prompt_that_names_a_word_makes_the_engine_hear_it() {
    let server = whisper_server(&[]);
    let wav = whisper_fixture("wer_02.wav");
    let prompted = openai_words(
        &server,
        "/v1/audio/transcriptions",
        &[
            ("model", "whisper-1"),
            ("prompt", "Groceries: apples, bread."),
        ],
        &wav,
    );
    assert!(prompted.iter().any(|word| word == "bread"), "{prompted:?}");
    assert!(prompted.iter().any(|word| word == "apples"), "{prompted:?}");
}

/// Translation on the multilingual base model: whisper.cpp's ggml weights
/// (`scripts/fetch-model.sh --base`); the CTranslate2 build has no base
/// directory fetched yet.
#[cfg(feature = "whisper")]
mod base_model {
    use super::*;

    /// The multilingual base model (`scripts/fetch-model.sh --base`).
    fn base_model_path() -> PathBuf {
        let path = std::env::var_os("TRANSCRIBE_TEST_BASE_MODEL_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/ggml-base.bin")
            });
        assert!(
            path.is_file(),
            "{} is missing: run scripts/fetch-model.sh --base first",
            path.display()
        );
        path
    }

    /// How many of `expected` are among `words`.
    fn found(words: &[String], expected: &[&str]) -> usize {
        expected
            .iter()
            .filter(|word| words.iter().any(|heard| heard == *word))
            .count()
    }

    #[test]
    fn the_base_model_translates_german_into_english_and_transcribes_it_in_german() {
        // espeak-ng: "Guten Morgen. Das Wetter ist heute sehr schön, und die
        // Sonne scheint." Robust to the synthetic voice: a few of the content
        // words, not the sentence.
        let server = whisper_server_on(&base_model_path(), &[]);
        let wav = whisper_fixture("german.wav");
        let english = openai_words(
            &server,
            "/v1/audio/translations",
            &[("model", "whisper-1")],
            &wav,
        );
        assert!(
            found(
                &english,
                &["good", "morning", "weather", "today", "sun", "shining", "very"]
            ) >= 3,
            "translation: {english:?}"
        );
        assert_eq!(
            found(&english, &["wetter", "heute", "sonne"]),
            0,
            "{english:?}"
        );
        let german = openai_words(
            &server,
            "/v1/audio/transcriptions",
            &[("model", "whisper-1"), ("language", "de")],
            &wav,
        );
        assert!(
            found(
                &german,
                &["guten", "morgen", "wetter", "heute", "sonne", "scheint"]
            ) >= 3,
            "transcription in German: {german:?}"
        );
        assert_eq!(
            found(&german, &["weather", "today", "sun"]),
            0,
            "{german:?}"
        );
    }
}
