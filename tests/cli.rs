//! Integration tests of the `transcribe` client: each test starts the real
//! `transcription-server` (mock model) on 127.0.0.1 port 0 and runs the built
//! `transcribe` binary against it, as a user would, with stdout and stderr
//! piped (so the client is in its non-terminal mode).
//!
//! - batch: every `--format` against what the server answers for the same
//!   file (json verbatim, text = the json text, srt/vtt = the
//!   OpenAI-compatible endpoint's cues, byte for byte), other containers;
//! - stream: exactly the finals the server produced (the same text and
//!   starts as a batch request, per `tests/integration/streaming.rs`), no
//!   escape sequences off a terminal, `--json`, `--interims`, refusals;
//! - sessions: the table lists a live session, `--json`, `--watch`,
//!   `--delete`;
//! - errors: server down, missing file, not audio, keys, usage, each with its
//!   exit code (docs/CLI.md) and one line on stderr.

#[path = "integration/support.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::{eventually, fixture, multipart, post, Server, Ws};

/// Exit codes of docs/CLI.md.
const EXIT_SERVER: i32 = 1;
const EXIT_USAGE: i32 = 2;
const EXIT_CONNECT: i32 = 3;
const EXIT_AUTH: i32 = 4;
const EXIT_AUDIO: i32 = 5;

/// What a run of the client left behind.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn assert_ok(&self) -> &Run {
        assert_eq!(self.code, 0, "{self:#?}");
        assert!(self.stderr.is_empty(), "{self:#?}");
        self
    }

    /// A failure: the exit code, one line on stderr containing `text`, and
    /// nothing on stdout.
    fn assert_fails(&self, code: i32, text: &str) -> &Run {
        assert_eq!(self.code, code, "{self:#?}");
        assert!(self.stdout.is_empty(), "{self:#?}");
        assert_eq!(self.stderr.lines().count(), 1, "{self:#?}");
        assert!(self.stderr.starts_with("transcribe: "), "{self:#?}");
        assert!(self.stderr.contains(text), "want {text:?}: {self:#?}");
        self
    }
}

/// The client with a clean environment (no key or URL from the caller's).
fn client_command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_transcribe"));
    command
        .args(args)
        .env_remove("TRANSCRIBE_URL")
        .env_remove("TRANSCRIBE_API_KEY")
        .env_remove("TRANSCRIBE_ADMIN_KEY")
        .stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

fn run_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let output = client_command(args, env)
        .output()
        .expect("run the transcribe binary");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Run against `server` (`--url` first, then `args`).
fn run(server: &Server, args: &[&str]) -> Run {
    let url = server.url("");
    let mut all = vec!["--url", url.as_str()];
    all.extend_from_slice(args);
    run_env(&all, &[])
}

fn fixture_path(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// A scratch file for one test, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str, contents: &[u8]) -> Scratch {
        let path =
            std::env::temp_dir().join(format!("transcribe-cli-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).expect("write a scratch file");
        Scratch(path)
    }

    fn path(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The server's own batch answer for a fixture.
fn batch_answer(server: &Server, name: &str) -> Value {
    let reply = post(server, "/v1/transcribe", "audio/wav", &fixture(name), &[]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

/// The OpenAI-compatible endpoint's answer in a response format.
fn openai_answer(server: &Server, name: &str, format: &str) -> String {
    let (content_type, body) = multipart(
        &[("response_format", format)],
        Some((name, "audio/wav", &fixture(name))),
    );
    let reply = post(
        server,
        "/v1/audio/transcriptions",
        &content_type,
        &body,
        &[],
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.text()
}

/// `MM:SS.mmm` as the stream view prints times.
fn stream_time(seconds: f64) -> String {
    let ms = (seconds * 1000.0).round() as u64;
    format!("{:02}:{:02}.{:03}", ms / 60_000, ms / 1000 % 60, ms % 1000)
}

/// `HH:MM:SS,mmm` as SRT cues give times.
fn srt_time(seconds: f64) -> String {
    let ms = (seconds * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02},{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// A port with nothing listening on it (bound, then released).
fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    port
}

// ---------------------------------------------------------------- batch --

#[test]
fn batch_json_is_the_servers_answer() {
    let server = Server::start(&[]);
    for name in ["hello.wav", "two_utterances.wav", "silence.wav"] {
        let out = run(&server, &["--format", "json", &fixture_path(name)]);
        out.assert_ok();
        assert!(out.stdout.ends_with("}\n"), "{out:#?}");
        let mut printed: Value = serde_json::from_str(&out.stdout).expect("json");
        let mut direct = batch_answer(&server, name);
        // The one figure that differs between two requests.
        for answer in [&mut printed, &mut direct] {
            answer
                .as_object_mut()
                .expect("object")
                .remove("processing_ms")
                .expect("processing_ms");
        }
        assert_eq!(printed, direct, "{name}");
    }
}

#[test]
fn batch_text_is_the_json_text_and_the_default() {
    let server = Server::start(&[]);
    for name in ["hello.wav", "two_utterances.wav", "silence.wav"] {
        let text = batch_answer(&server, name)["text"]
            .as_str()
            .expect("text")
            .to_string();
        let explicit = run(&server, &["--format", "text", &fixture_path(name)]);
        explicit.assert_ok();
        assert_eq!(explicit.stdout, format!("{text}\n"), "{name}");
        let default = run(&server, &[&fixture_path(name)]);
        assert_eq!(default.stdout, explicit.stdout, "{name}");
    }
}

#[test]
fn batch_subtitles_have_a_cue_per_segment() {
    let server = Server::start(&[]);
    for name in ["hello.wav", "two_utterances.wav"] {
        let segments = batch_answer(&server, name)["segments"]
            .as_array()
            .expect("segments")
            .clone();
        assert!(!segments.is_empty(), "{name}");
        let srt = run(&server, &["-f", "srt", &fixture_path(name)]);
        srt.assert_ok();
        let vtt = run(&server, &["-f", "vtt", &fixture_path(name)]);
        vtt.assert_ok();
        // Exactly what the OpenAI-compatible endpoint renders.
        assert_eq!(srt.stdout, openai_answer(&server, name, "srt"), "{name}");
        assert_eq!(vtt.stdout, openai_answer(&server, name, "vtt"), "{name}");
        // And well formed, from the segments.
        let cues: Vec<&str> = srt.stdout.split("\n\n").filter(|c| !c.is_empty()).collect();
        assert_eq!(cues.len(), segments.len(), "{name}");
        for (index, (cue, segment)) in cues.iter().zip(&segments).enumerate() {
            let lines: Vec<&str> = cue.lines().collect();
            assert_eq!(lines[0], (index + 1).to_string());
            assert_eq!(
                lines[1],
                format!(
                    "{} --> {}",
                    srt_time(segment["start"].as_f64().expect("start")),
                    srt_time(segment["end"].as_f64().expect("end"))
                )
            );
            assert_eq!(lines[2], segment["text"].as_str().expect("text"));
        }
        assert!(vtt.stdout.starts_with("WEBVTT\n\n"), "{name}");
        assert_eq!(
            vtt.stdout.matches(" --> ").count(),
            segments.len(),
            "{name}"
        );
        assert_eq!(
            vtt.stdout["WEBVTT\n\n".len()..],
            srt.stdout
                .split("\n\n")
                .filter(|c| !c.is_empty())
                .map(|cue| format!(
                    "{}\n\n",
                    cue.split_once('\n').expect("number").1.replace(',', ".")
                ))
                .collect::<String>(),
            "{name}: the same cues, dots and no numbers"
        );
    }
}

#[test]
fn batch_takes_flac_and_raw_pcm() {
    let server = Server::start(&[]);
    let reference = run(&server, &[&fixture_path("hello.wav")]);
    reference.assert_ok();
    for name in ["hello.flac", "hello.raw"] {
        let out = run(&server, &[&fixture_path(name)]);
        out.assert_ok();
        assert_eq!(out.stdout, reference.stdout, "{name}");
    }
    // A raw file of any name with --raw.
    let raw = Scratch::new("hello.bin", &fixture("hello.raw"));
    let out = run(&server, &["--raw", "--sample-rate", "16000", &raw.path()]);
    out.assert_ok();
    assert_eq!(out.stdout, reference.stdout);
}

#[test]
fn batch_writes_to_an_output_file() {
    let server = Server::start(&[]);
    let target = Scratch::new("out.srt", b"");
    let out = run(
        &server,
        &[
            "-f",
            "srt",
            "-o",
            &target.path(),
            &fixture_path("hello.wav"),
        ],
    );
    out.assert_ok();
    assert!(out.stdout.is_empty());
    let written = std::fs::read_to_string(&target.0).expect("output file");
    assert_eq!(written, openai_answer(&server, "hello.wav", "srt"));
}

#[test]
fn url_and_key_come_from_the_environment() {
    let server = Server::start(&["--api-key", "env-key"]);
    let url = server.url("");
    let out = run_env(
        &[&fixture_path("hello.wav")],
        &[("TRANSCRIBE_URL", &url), ("TRANSCRIBE_API_KEY", "env-key")],
    );
    out.assert_ok();
    assert!(!out.stdout.trim().is_empty());
}

// --------------------------------------------------------------- stream --

/// The lines a non-terminal stream run prints for a batch answer's segments.
fn final_lines(answer: &Value) -> Vec<String> {
    answer["segments"]
        .as_array()
        .expect("segments")
        .iter()
        .map(|segment| {
            format!(
                "[{} --> {}] {}",
                stream_time(segment["start"].as_f64().expect("start")),
                stream_time(segment["end"].as_f64().expect("end")),
                segment["text"].as_str().expect("text")
            )
        })
        .collect()
}

#[test]
fn stream_prints_exactly_the_finals() {
    let server = Server::start(&[]);
    for name in ["hello.wav", "two_utterances.wav", "hello.flac"] {
        let out = run(&server, &["stream", &fixture_path(name)]);
        out.assert_ok();
        assert!(
            !out.stdout.contains('\x1b'),
            "no escapes off a terminal: {out:#?}"
        );
        let reference = name.replace(".flac", ".wav");
        let expected = final_lines(&batch_answer(&server, &reference));
        let printed: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(printed, expected, "{name}");
    }
}

/// What a person sees: the client on a real terminal (a pseudo-terminal from
/// util-linux `script`), streaming in real time so interims arrive.
#[test]
fn on_a_terminal_interims_rewrite_the_line_and_finals_stay() {
    let server = Server::start(&[]);
    let url = server.url("");
    let command = format!(
        "{} --url {url} stream --realtime {}",
        env!("CARGO_BIN_EXE_transcribe"),
        fixture_path("two_utterances.wav")
    );
    let output = Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .env_remove("TRANSCRIBE_URL")
        .env_remove("TRANSCRIBE_API_KEY")
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output()
        .expect("run script (util-linux)");
    assert!(output.status.success(), "{output:?}");
    let screen = String::from_utf8_lossy(&output.stdout);
    // Dimmed interims, each drawn over the current line.
    assert!(
        screen.contains("\r\x1b[2K\x1b[2m"),
        "no interim drawn: {screen:?}"
    );
    // On a terminal the client also says what it streams and how the session
    // ended (on stderr, the same screen).
    assert!(
        screen.contains("ended (client_end): 2 segments"),
        "{screen:?}"
    );
    // Every final ends up on a line of its own, whatever was drawn before it
    // on that line (an interim, then the erase).
    let lines: Vec<String> = screen
        .split("\r\n")
        .map(|line| line.rsplit("\x1b[2K").next().unwrap_or(line).to_string())
        .filter(|line| !line.is_empty() && !line.starts_with("transcribe: "))
        .collect();
    assert_eq!(
        lines,
        final_lines(&batch_answer(&server, "two_utterances.wav")),
        "{screen:?}"
    );
}

#[test]
fn stream_of_silence_prints_nothing_and_succeeds() {
    let server = Server::start(&[]);
    let out = run(&server, &["stream", &fixture_path("silence.wav")]);
    out.assert_ok();
    assert!(out.stdout.is_empty(), "{out:#?}");
}

#[test]
fn stream_json_echoes_the_protocol() {
    let server = Server::start(&[]);
    let out = run(
        &server,
        &["stream", "--json", &fixture_path("two_utterances.wav")],
    );
    out.assert_ok();
    let messages: Vec<Value> = out
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(
        messages.first().map(|m| &m["type"]),
        Some(&"session_start".into())
    );
    let end = messages.last().expect("messages");
    assert_eq!(end["type"], "session_end");
    assert_eq!(end["reason"], "client_end");
    let pcm_bytes = fixture("two_utterances.wav").len() - 44;
    assert_eq!(end["metrics"]["audio_bytes"], pcm_bytes as u64);
    let finals: Vec<&str> = messages
        .iter()
        .filter(|m| m["type"] == "transcript" && m["is_final"] == true)
        .filter_map(|m| m["text"].as_str())
        .filter(|text| !text.is_empty())
        .collect();
    let batch = batch_answer(&server, "two_utterances.wav");
    assert_eq!(finals.join(" "), batch["text"].as_str().expect("text"));
}

#[test]
fn stream_interims_are_marked_lines_off_a_terminal() {
    let server = Server::start(&["--interim-interval-ms", "100"]);
    let plain = run(&server, &["stream", &fixture_path("two_utterances.wav")]);
    plain.assert_ok();
    let out = run(
        &server,
        &[
            "stream",
            "--interims",
            "--realtime",
            "--chunk-ms",
            "10",
            &fixture_path("two_utterances.wav"),
        ],
    );
    out.assert_ok();
    assert!(!out.stdout.contains('\x1b'));
    // Interims are best effort, but at real time each of the two utterances
    // (over a second of speech each) is due one every 100 ms: some arrive.
    // Whichever arrived are marked, and the finals are the same lines as
    // without them.
    let interims = out
        .stdout
        .lines()
        .filter(|line| line.starts_with("interim ["))
        .count();
    assert!(interims >= 1, "no interim line:\n{}", out.stdout);
    assert!(out
        .stdout
        .lines()
        .all(|line| line.starts_with("interim [") || line.starts_with('[')));
    let finals: Vec<&str> = out.stdout.lines().filter(|l| l.starts_with('[')).collect();
    assert_eq!(finals, plain.stdout.lines().collect::<Vec<_>>());
}

#[test]
fn stream_refused_by_the_session_limit_says_why() {
    let server = Server::start(&["--max-sessions", "1"]);
    let mut holder = Ws::connect(&server, "");
    assert_eq!(
        holder.next_json().expect("session_start")["type"],
        "session_start"
    );
    let out = run(&server, &["stream", &fixture_path("hello.wav")]);
    out.assert_fails(EXIT_SERVER, "session_limit_exceeded");
    assert!(out.stderr.contains("close 1013"), "{out:#?}");
}

#[test]
fn stream_ended_by_an_operator_fails() {
    let server = Server::start(&[]);
    let url = server.url("");
    // Half a minute of audio at real time: the session is certainly still
    // running when the operator ends it.
    let long = Scratch::new(
        "long.raw",
        &support::fixture_pcm("two_utterances.wav").repeat(6),
    );
    let child = client_command(&["--url", &url, "stream", "--realtime", &long.path()], &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn transcribe");
    let mut id = String::new();
    assert!(eventually(Duration::from_secs(10), || {
        let list = run(&server, &["sessions", "--json"]);
        match serde_json::from_str::<Value>(&list.stdout) {
            Ok(both) => match both["sessions"]["sessions"][0]["session_id"].as_str() {
                Some(found) => {
                    id = found.to_string();
                    true
                }
                None => false,
            },
            Err(_) => false,
        }
    }));
    let deleted = run(&server, &["sessions", "--delete", &id]);
    deleted.assert_ok();
    assert_eq!(deleted.stdout, format!("session {id}: closed\n"));
    let output = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(EXIT_SERVER), "{stderr}");
    assert_eq!(
        stderr,
        "transcribe: the server ended the session early: terminated (an operator ended it)\n"
    );
}

// ------------------------------------------------------------- sessions --

#[test]
fn sessions_table_lists_a_live_session() {
    let server = Server::start(&[]);
    let mut ws = Ws::connect(&server, "");
    let start = ws.next_json().expect("session_start");
    let id = start["session_id"].as_str().expect("id").to_string();
    ws.send_audio(&support::fixture_pcm("hello.wav")[..3200]);
    let mut table = String::new();
    assert!(
        eventually(Duration::from_secs(10), || {
            let out = run(&server, &["sessions"]);
            table = out.stdout;
            out.code == 0 && table.contains("sessions: 1 live") && table.contains(" active ")
        }),
        "{table}"
    );
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("SESSION"), "{table}");
    for heading in [
        "STATE",
        "CORE",
        "IDLE_S",
        "AUDIO_S",
        "CHUNKS",
        "SEGMENTS",
        "TRANSCRIPTS",
        "PEER",
    ] {
        assert!(lines[0].contains(heading), "{heading}: {table}");
    }
    let row = lines[1];
    assert!(row.starts_with(&id), "{table}");
    assert!(row.contains("127.0.0.1:"), "{table}");
    assert!(!table.contains('\x1b'));

    let json = run(&server, &["sessions", "--json"]);
    json.assert_ok();
    let both: Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(both["sessions"]["sessions"][0]["session_id"], id.as_str());
    assert!(both["metrics"]["max_sessions"].is_u64());

    let filtered = run(&server, &["sessions", "--state", "closing"]);
    filtered.assert_ok();
    assert!(filtered.stdout.contains("(no sessions)"), "{filtered:#?}");

    run(&server, &["sessions", "--delete", &id]).assert_ok();
    let (messages, code) = ws.read_to_close();
    let end = messages.last().expect("session_end");
    assert_eq!(end["reason"], "terminated");
    assert_eq!(code, Some(1000));
    run(&server, &["sessions", "--delete", &id]).assert_fails(EXIT_SERVER, "404 session_not_found");
}

#[test]
fn sessions_watch_redraws_until_stopped() {
    let server = Server::start(&[]);
    let url = server.url("");
    let mut child = client_command(
        &["--url", &url, "sessions", "--watch", "--interval", "0.2"],
        &[],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("spawn transcribe");
    let stdout = child.stdout.take().expect("stdout");
    let mut frames = 0;
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        assert!(
            !line.contains('\x1b'),
            "no escapes off a terminal: {line:?}"
        );
        if line.contains(" sessions at ") {
            frames += 1;
            if frames == 3 {
                break;
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(frames, 3);
}

#[test]
fn admin_endpoints_need_the_admin_key() {
    let server = Server::start(&["--api-key", "user", "--admin-key", "boss"]);
    run(&server, &["--api-key", "user", "sessions"]).assert_fails(
        EXIT_AUTH,
        "the server rejected the API key for the session endpoints (401 unauthorized)",
    );
    run(&server, &["--admin-key", "nope", "sessions"]).assert_fails(
        EXIT_AUTH,
        "the server rejected the admin key (401 unauthorized)",
    );
    run(
        &server,
        &["--api-key", "user", "--admin-key", "boss", "sessions"],
    )
    .assert_ok();
}

// --------------------------------------------------------------- errors --

#[test]
fn a_server_that_is_down_is_exit_3() {
    let url = format!("http://127.0.0.1:{}", dead_port());
    let expected = format!("cannot connect to {url}: connection refused (is the server running?)");
    let wav = fixture_path("hello.wav");
    for args in [vec![wav.as_str()], vec!["stream", &wav], vec!["sessions"]] {
        let mut all = vec!["--url", url.as_str()];
        all.extend(args);
        run_env(&all, &[]).assert_fails(EXIT_CONNECT, &expected);
    }
}

#[test]
fn a_missing_file_is_exit_5() {
    let server = Server::start(&[]);
    for args in [vec!["no-such.wav"], vec!["stream", "no-such.wav"]] {
        run(&server, &args).assert_fails(EXIT_AUDIO, "cannot read no-such.wav: no such file");
    }
}

#[test]
fn a_file_that_is_not_audio_is_exit_5_with_the_servers_reason() {
    let server = Server::start(&[]);
    let text = Scratch::new(
        "notes.txt",
        b"these are not the samples you are looking for\n",
    );
    run(&server, &[&text.path()]).assert_fails(
        EXIT_AUDIO,
        "the server cannot use this audio: unrecognised audio format; send WAV, FLAC, MP3, Ogg Vorbis or raw PCM16 (415 unsupported_media_type)",
    );
    run(&server, &["stream", &text.path()]).assert_fails(
        EXIT_AUDIO,
        "cannot decode the audio: unrecognised audio format",
    );
    let empty = Scratch::new("empty.wav", b"");
    run(&server, &[&empty.path()]).assert_fails(EXIT_AUDIO, "(422 invalid_audio)");
}

#[test]
fn a_rejected_key_is_exit_4() {
    let server = Server::start(&["--api-key", "right"]);
    let wav = fixture_path("hello.wav");
    run(&server, &[&wav]).assert_fails(
        EXIT_AUTH,
        "the server requires an API key (401 unauthorized)",
    );
    for args in [
        vec!["--api-key", "wrong", wav.as_str()],
        vec!["--api-key", "wrong", "stream", &wav],
    ] {
        run(&server, &args).assert_fails(
            EXIT_AUTH,
            "the server rejected the API key (401 unauthorized)",
        );
    }
    run(&server, &["--api-key", "right", &wav]).assert_ok();
    // The WebSocket carries the key in its Authorization header.
    let out = run(&server, &["--api-key", "right", "stream", &wav]);
    out.assert_ok();
    assert_eq!(out.stdout.lines().count(), 1, "{out:#?}");
}

#[test]
fn usage_errors_are_exit_2() {
    let wav = fixture_path("hello.wav");
    let out = run_env(&["--url", "https://example.com", &wav], &[]);
    out.assert_fails(EXIT_USAGE, "this client speaks plain HTTP");
    let out = run_env(&["--sample-rate", "8000", &wav], &[]);
    out.assert_fails(EXIT_USAGE, "--sample-rate applies to raw PCM16 input");
    // clap's own refusals use the same code.
    assert_eq!(run_env(&[], &[]).code, EXIT_USAGE);
    assert_eq!(run_env(&["--format", "xml", &wav], &[]).code, EXIT_USAGE);
    assert_eq!(
        run_env(&["stream", "--vad-mode", "7", &wav], &[]).code,
        EXIT_USAGE
    );
}
