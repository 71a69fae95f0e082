//! End-to-end runs of `loadgen stream`, `idle` and `soak` against the real
//! `transcription-server`, started by the test on `127.0.0.1` with a free
//! port. The server binary is taken from `TRANSCRIPTION_SERVER_BIN`, which
//! `scripts/test.sh` sets to the binary it builds; when the variable is unset
//! the tests fail and say how to set it, so a run that did not reach the
//! server is never counted as a pass.
//!
//! ```sh
//! cargo build --bin transcription-server
//! TRANSCRIPTION_SERVER_BIN=target/debug/transcription-server cargo test -p loadtests
//! ```

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// The running server; killed (by its own handle) when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the server named by `TRANSCRIPTION_SERVER_BIN`.
///
/// # Panics
/// If the variable is unset, or the server does not start.
fn start_server(test: &str) -> Server {
    let Some(bin) = std::env::var_os("TRANSCRIPTION_SERVER_BIN") else {
        panic!(
            "{test} needs the server: set TRANSCRIPTION_SERVER_BIN to the transcription-server \
             binary (scripts/test.sh builds it and sets the variable)"
        );
    };
    let mut child = Command::new(bin)
        .args(["--host", "127.0.0.1", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start transcription-server");
    let stdout = child.stdout.take().expect("server stdout");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(addr) = line.trim().strip_prefix("listening on ") {
                let port = addr.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
                let _ = tx.send(port);
            }
        }
    });
    let port = match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Some(port)) => port,
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server did not print `listening on 127.0.0.1:PORT`");
        }
    };
    Server { child, port }
}

/// Runs `loadgen --json` with `args` and returns its single JSON line.
fn loadgen(port: u16, args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--json", "--url", &format!("http://127.0.0.1:{port}")])
        .args(args)
        .output()
        .expect("run loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "loadgen failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .expect("a JSON line");
    serde_json::from_str(line).expect("valid JSON")
}

fn fixture(name: &str) -> String {
    format!("{}/../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs 3 sessions of one loop (~5 s) with `driver` and checks the result.
fn stream_with_driver(driver: &str) {
    stream_with(driver, "native");
}

/// Three paced sessions of one loop each with `driver`, in `dialect`,
/// against a fresh server: the run's JSON line.
fn paced_run(driver: &str, dialect: &str) -> serde_json::Value {
    let test = format!("stream_sessions_complete_in_order ({driver}, {dialect})");
    let server = start_server(&test);
    let wav = fixture("two_utterances.wav");
    let pid = server.child.id().to_string();
    loadgen(
        server.port,
        &[
            "stream",
            "--file",
            &wav,
            "--sessions",
            "3",
            "--duration",
            "3s",
            "--ramp",
            "0s",
            "--timeout",
            "10s",
            "--driver",
            driver,
            "--dialect",
            dialect,
            "--server-pid",
            &pid,
        ],
    )
}

/// Three paced sessions of one loop each, in `dialect`, all checked.
fn stream_with(driver: &str, dialect: &str) {
    let v = paced_run(driver, dialect);
    assert_eq!(v["scenario"], "stream");
    assert_eq!(v["driver"], driver);
    assert_eq!(v["dialect"], dialect);
    assert_eq!(v["sessions"], 3);
    assert_eq!(v["completed"], 3, "{v}");
    assert_eq!(v["failed"], 0, "{v}");
    assert_eq!(v["violations"], 0, "{v}");
    assert_eq!(v["end_beyond_sent"], 0, "{v}");
    assert!(v["final_lag_ms"]["count"].as_u64().unwrap() >= 3, "{v}");
    assert!(v["interim_lag_ms"]["count"].as_u64().unwrap() >= 1, "{v}");
    assert_eq!(v["end_to_session_end_ms"]["count"], 3, "{v}");
    let audio = v["audio_seconds"].as_f64().unwrap();
    assert!(
        audio > 3.0 * 4.9 && audio < 3.0 * 5.1,
        "one loop of ~5 s each: {v}"
    );
    // Paced: one loop of ~5 s of audio cannot be sent in less wall time
    // (a lower bound only: a loaded machine makes the run longer, never
    // shorter, so this cannot fail for want of CPU).
    let wall = v["wall_s"].as_f64().unwrap();
    assert!(wall > 4.8, "{v}");
    assert!(v["loadgen_cpu_s"].as_f64().is_some(), "{v}");
    assert!(v["server_cpu_s"].as_f64().is_some(), "{v}");
}

#[test]
fn stream_sessions_complete_in_order() {
    stream_with_driver("mux");
}

#[test]
fn stream_sessions_complete_in_order_threads_driver() {
    stream_with_driver("threads");
}

#[test]
fn deepgram_stream_sessions_complete_in_order() {
    stream_with("mux", "deepgram");
    stream_with("threads", "deepgram");
}

/// OpenAI Realtime sessions (mux only): base64 `append` events at 24 kHz,
/// each VAD segment an item whose `completed` is the checked final, the end
/// a commit and its probe.
#[test]
fn openai_stream_sessions_complete_in_order() {
    let v = paced_run("mux", "openai");
    assert_eq!(v["dialect"], "openai", "{v}");
    assert_eq!(v["completed"], 3, "{v}");
    assert_eq!(v["failed"], 0, "{v}");
    assert_eq!(v["violations"], 0, "{v}");
    assert_eq!(v["end_beyond_sent"], 0, "{v}");
    assert!(v["final_lag_ms"]["count"].as_u64().unwrap() >= 3, "{v}");
    assert_eq!(v["end_to_session_end_ms"]["count"], 3, "{v}");
}

#[test]
fn stream_no_pace_with_the_mux_driver() {
    let server = start_server("stream_no_pace_with_the_mux_driver");
    let wav = fixture("two_utterances.wav");
    let v = loadgen(
        server.port,
        &[
            "stream",
            "--file",
            &wav,
            "--sessions",
            "4",
            "--threads",
            "3",
            "--duration",
            "1s",
            "--ramp",
            "0s",
            "--no-pace",
            "--timeout",
            "20s",
        ],
    );
    assert_eq!(v["driver"], "mux");
    assert_eq!(v["mode"], "no_pace");
    assert_eq!(v["threads"], 3);
    assert_eq!(v["completed"], 4, "{v}");
    assert_eq!(v["failed"], 0, "{v}");
    assert_eq!(v["violations"], 0, "{v}");
    assert_eq!(v["end_to_session_end_ms"]["count"], 4, "{v}");
    // At least one whole loop (~5 s of audio) per session.
    assert!(v["audio_seconds"].as_f64().unwrap() > 4.0 * 4.9, "{v}");
}

#[test]
fn idle_sessions_are_counted_by_the_server() {
    let server = start_server("idle_sessions_are_counted_by_the_server");
    let pid = server.child.id().to_string();
    let v = loadgen(
        server.port,
        &[
            "idle",
            "--sessions",
            "20",
            "--ramp",
            "0s",
            "--hold",
            "1s",
            "--server-pid",
            &pid,
            "--timeout",
            "10s",
        ],
    );
    assert_eq!(v["scenario"], "idle");
    assert_eq!(v["opened"], 20, "{v}");
    assert_eq!(v["failed"], 0, "{v}");
    assert_eq!(v["active_sessions_seen"], 20, "{v}");
    assert_eq!(v["closed_clean"], 20, "{v}");
    assert_eq!(v["active_sessions_after_close"], 0, "{v}");
    assert!(v["rss_after_kb"].as_u64().unwrap() > 0, "{v}");
}

#[test]
fn soak_keeps_streams_going_and_drains() {
    let server = start_server("soak_keeps_streams_going_and_drains");
    let pid = server.child.id().to_string();
    let wav = fixture("two_utterances.wav");
    let v = loadgen(
        server.port,
        &[
            "soak",
            "--file",
            &wav,
            "--duration",
            "6s",
            "--streams",
            "6",
            "--min-length",
            "1s",
            "--max-length",
            "2s",
            "--ramp",
            "1s",
            "--disconnect-rate",
            "0.5",
            "--batch-connections",
            "1",
            "--server-pid",
            &pid,
            "--seed",
            "3",
            "--timeout",
            "10s",
        ],
    );
    assert_eq!(v["scenario"], "soak");
    let started = v["streams_started"].as_u64().unwrap();
    let completed = v["streams_completed"].as_u64().unwrap();
    let aborted = v["abrupt_disconnects"].as_u64().unwrap();
    let terminated = v["streams_terminated"].as_u64().unwrap();
    // Streams of at most 2 s of paced audio in a 6 s run: at least one of the
    // 6 slots was refilled (more is a matter of speed, not asserted here).
    assert!(started > 6, "{v}");
    assert_eq!(v["streams_failed"], 0, "{v}");
    assert_eq!(completed + aborted + terminated, started, "{v}");
    assert_eq!(v["deletes_failures"], 0, "{v}");
    assert!(aborted > 0 && completed > 0, "{v}");
    assert_eq!(v["lost_finals"], 0, "{v}");
    assert!(v["batch_requests"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["batch_errors"], 0, "{v}");
    assert_eq!(v["operator_failures"], 0, "{v}");
    assert_eq!(v["active_sessions_end"], 0, "{v}");
    assert_eq!(v["server_totals_balanced"], true, "{v}");
    assert!(v["rss_kb"]["max_kb"].as_u64().unwrap() > 0, "{v}");
}
