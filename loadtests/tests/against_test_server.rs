//! End-to-end tests of the `loadgen` binary against a tiny std-only HTTP/1.1
//! server bound to 127.0.0.1 inside the test: keep-alive, `Connection: close`,
//! silently dropped idle connections, 503s, and the loopback-only refusal.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

/// How the test server behaves.
#[derive(Clone, Copy)]
struct Behaviour {
    /// After this many requests on one connection, close it (0 = never).
    close_every: u64,
    /// Close without announcing `Connection: close` (like an idle timeout).
    silent: bool,
    /// Answer every n-th transcribe request (server-wide) with 503 (0 = never).
    overload_every: u64,
}

struct TestServer {
    port: u16,
    requests: Arc<AtomicU64>,
}

fn start_server(b: Behaviour) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind test server");
    let port = listener.local_addr().expect("local addr").port();
    let requests = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&requests);
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let counter = Arc::clone(&counter);
            thread::spawn(move || serve(conn, b, &counter));
        }
    });
    TestServer { port, requests }
}

/// Serves one connection until the client closes it or the behaviour says so.
fn serve(mut conn: TcpStream, b: Behaviour, counter: &AtomicU64) {
    let _ = conn.set_nodelay(true);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut served = 0u64;
    loop {
        // Read until a full request (head + Content-Length body) is buffered.
        let (head_len, body_len, method, path) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            if let Ok(httparse::Status::Complete(n)) = req.parse(&buf) {
                let len = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
                    .unwrap_or(0usize);
                if buf.len() >= n + len {
                    break (
                        n,
                        len,
                        req.method.unwrap_or("").to_string(),
                        req.path.unwrap_or("").to_string(),
                    );
                }
            }
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        buf.drain(..head_len + body_len);
        served += 1;
        let total = counter.fetch_add(1, Ordering::Relaxed) + 1;
        let closing = b.close_every > 0 && served % b.close_every == 0;
        let (status, body, extra) = match (method.as_str(), path.as_str()) {
            ("GET", "/v1/health") => ("200 OK", r#"{"status":"ok"}"#.to_string(), ""),
            ("POST", p) if p.starts_with("/v1/transcribe") => {
                if b.overload_every > 0 && total % b.overload_every == 0 {
                    (
                        "503 Service Unavailable",
                        r#"{"error":{"code":"overloaded","message":"busy"}}"#.to_string(),
                        "Retry-After: 1\r\n",
                    )
                } else {
                    ("200 OK", format!(r#"{{"text":"","bytes":{body_len}}}"#), "")
                }
            }
            _ => (
                "404 Not Found",
                r#"{"error":{"code":"not_found"}}"#.to_string(),
                "",
            ),
        };
        let conn_header = if closing && !b.silent {
            "Connection: close\r\n"
        } else {
            ""
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}{conn_header}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        // Split the write to exercise the client's buffering across reads.
        let bytes = response.as_bytes();
        let mid = bytes.len() / 2;
        if conn.write_all(&bytes[..mid]).is_err() || conn.flush().is_err() {
            return;
        }
        if conn.write_all(&bytes[mid..]).is_err() {
            return;
        }
        if closing {
            return;
        }
    }
}

/// Runs loadgen and returns (exit success, stdout, stderr).
fn loadgen(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .env_remove("LOADGEN_URL")
        .env_remove("TRANSCRIBE_API_KEY")
        .output()
        .expect("run loadgen");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("valid JSON line"))
        .collect()
}

const KEEP_ALIVE: Behaviour = Behaviour {
    close_every: 0,
    silent: false,
    overload_every: 0,
};

#[test]
fn health_keep_alive() {
    let server = start_server(KEEP_ALIVE);
    let url = format!("http://127.0.0.1:{}", server.port);
    let (ok, stdout, stderr) = loadgen(&[
        "--url",
        &url,
        "health",
        "--connections",
        "4",
        "--duration",
        "500ms",
        "--warmup",
        "100ms",
    ]);
    assert!(ok, "{stderr}");
    let lines = json_lines(&stdout);
    assert_eq!(lines.len(), 1, "{stdout}");
    let v = &lines[0];
    assert!(stdout.trim_end().ends_with('}'), "JSON line comes last");
    assert_eq!(v["scenario"], "health");
    assert_eq!(v["connections"], 4);
    assert_eq!(v["errors"], 0, "{v}");
    // How many requests fit in 500 ms is a matter of speed; that they were
    // all answered 200 and counted by both ends is the behaviour.
    let n = v["requests"].as_u64().unwrap();
    assert!(n >= 1, "{v}");
    assert_eq!(v["status"]["200"].as_u64(), Some(n));
    // Keep-alive: one connection per worker, opened during the warm-up.
    assert!(v["connects"].as_u64().unwrap() <= 4, "{v}");
    assert!(v["rps"].as_f64().unwrap() > 0.0);
    for p in ["p50", "p90", "p99", "p999", "max"] {
        assert!(v["latency_ms"][p].as_f64().is_some(), "{p} in {v}");
    }
    assert!(server.requests.load(Ordering::Relaxed) >= n);
}

#[test]
fn transcribe_with_closes_overload_and_request_budget() {
    let server = start_server(Behaviour {
        close_every: 3,
        silent: false,
        overload_every: 4,
    });
    let dir = std::env::temp_dir().join(format!("loadgen-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wav = dir.join("tone.wav");
    std::fs::write(&wav, tiny_wav(1600)).unwrap();
    let url = format!("http://localhost:{}", server.port);
    let (ok, stdout, stderr) = loadgen(&[
        "--url",
        &url,
        "--json",
        "transcribe",
        "--file",
        wav.to_str().unwrap(),
        "--connections",
        "3",
        "--duration",
        "20s",
        "--requests",
        "60",
    ]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ok, "{stderr}");
    assert_eq!(
        stdout.lines().count(),
        1,
        "--json prints only the JSON line"
    );
    let v = &json_lines(&stdout)[0];
    assert_eq!(v["requests"], 60, "{v}");
    assert_eq!(v["errors"], 0, "{v}");
    assert!(v["status"]["503"].as_u64().unwrap() >= 10, "{v}");
    // Every third response said `Connection: close`, so the client reconnected.
    // The budget, not the 20 s duration, ended the run: exactly 60 requests
    // (checked above), however long they took.
    assert!(v["connects"].as_u64().unwrap() >= 15, "{v}");
}

#[test]
fn silently_closed_keep_alive_is_retried() {
    let server = start_server(Behaviour {
        close_every: 2,
        silent: true,
        overload_every: 0,
    });
    let url = format!("http://127.0.0.1:{}", server.port);
    let (ok, stdout, stderr) =
        loadgen(&["--url", &url, "health", "-c", "2", "-d", "5s", "-n", "40"]);
    assert!(ok, "{stderr}");
    let v = &json_lines(&stdout)[0];
    assert_eq!(v["requests"], 40, "{v}");
    assert_eq!(v["errors"], 0, "{v}");
}

#[test]
fn open_loop_sweep_prints_one_line_per_level() {
    let server = start_server(KEEP_ALIVE);
    let url = format!("http://127.0.0.1:{}", server.port);
    let (ok, stdout, stderr) = loadgen(&[
        "--url",
        &url,
        "health",
        "--sweep",
        "1,2",
        "--duration",
        "400ms",
        "--rate",
        "100",
    ]);
    assert!(ok, "{stderr}");
    let lines = json_lines(&stdout);
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(lines[0]["connections"], 1);
    assert_eq!(lines[1]["connections"], 2);
    for v in &lines {
        assert_eq!(v["mode"], "open");
        let n = v["requests"].as_u64().unwrap();
        // 100 req/s for 0.4 s schedules exactly 40 sends; a request never
        // starts before its slot, so 40 is a bound that load can only lower
        // (how close the run gets to it is speed, not asserted).
        assert!((1..=40).contains(&n), "{v}");
    }
    assert!(stdout.contains("sweep summary"));
}

#[test]
fn refuses_non_loopback_targets() {
    for url in [
        "http://10.1.2.3:8000",
        "http://example.com",
        "http://[2001:db8::1]:80",
    ] {
        let (ok, stdout, stderr) = loadgen(&["--url", url, "health", "-d", "1s"]);
        assert!(!ok, "{url} must be refused");
        assert!(stdout.is_empty());
        assert!(stderr.contains("only target this machine"), "{stderr}");
    }
}

#[test]
fn connection_refused_is_counted_not_fatal() {
    // Bind then drop to get a port with (almost certainly) no listener.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let (ok, stdout, stderr) = loadgen(&["--url", &url, "health", "-c", "2", "-d", "300ms"]);
    assert!(ok, "{stderr}");
    let v = &json_lines(&stdout)[0];
    assert_eq!(v["requests"], 0);
    assert!(v["error_kinds"]["connect"].as_u64().unwrap() > 0, "{v}");
}

/// A mono 16 kHz PCM16 WAV of `samples` zero samples.
fn tiny_wav(samples: u32) -> Vec<u8> {
    let data_len = samples * 2;
    let mut w = Vec::new();
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data_len).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes()); // PCM
    w.extend_from_slice(&1u16.to_le_bytes()); // mono
    w.extend_from_slice(&16000u32.to_le_bytes());
    w.extend_from_slice(&32000u32.to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data_len.to_le_bytes());
    w.resize(w.len() + data_len as usize, 0);
    w
}
