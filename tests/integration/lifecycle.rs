//! Start-up refusals, health and readiness, the I/O driver, and graceful
//! shutdown.

use std::time::Duration;

use crate::support::{fixture, get, run_to_exit, Raw, Server};

/// Arguments, environment, and the flag the refusal must name.
type Refusal<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn bad_settings_are_refused_at_start_with_the_flag_named() {
    let cases: &[Refusal] = &[
        (&["--cores", "0"], &[], "--cores"),
        (&["--vad-mode", "7"], &[], "--vad-mode"),
        (&["--model-workers", "0"], &[], "--model-workers"),
        (
            &["--max-segment-seconds", "0"],
            &[],
            "--max-segment-seconds",
        ),
        (&["--port", "99999"], &[], "--port"),
        (&["--log-format", "xml"], &[], "--log-format"),
        (&["--uring-entries", "100"], &[], "--uring-entries"),
        (
            &["--uring-coop-taskrun", "maybe"],
            &[],
            "--uring-coop-taskrun",
        ),
        (&[], &[("TRANSCRIBE_VAD_MODE", "7")], "--vad-mode"),
        (&[], &[("TRANSCRIBE_CORES", "many")], "--cores"),
        (&["--redis-url", "http://not-redis"], &[], "--redis-url"),
        (
            &["--cluster-fail-mode", "sometimes"],
            &[],
            "--cluster-fail-mode",
        ),
        (
            &[],
            &[("TRANSCRIBE_CLUSTER_MAX_SESSIONS", "3")],
            "--cluster-max-sessions",
        ),
        (&["--model", "parrot"], &[], "--model"),
        (&["--model-path", "/tmp/x.bin"], &[], "--model-path"),
        (
            &[
                "--model",
                "whisper",
                "--model-path",
                "/nonexistent/model.bin",
            ],
            &[],
            "--model",
        ),
        (
            &["--model", "whisper", "--model-threads", "0"],
            &[],
            "--model",
        ),
    ];
    for (args, env, flag) in cases {
        let (status, _, stderr) = run_to_exit(args, env);
        assert_eq!(status.code(), Some(2), "{args:?} {env:?}: {stderr}");
        assert!(
            stderr.contains(flag),
            "{args:?} {env:?} should name {flag}: {stderr}"
        );
    }
}

#[test]
fn flags_win_over_environment_variables() {
    let server = Server::start_with_env(
        &["--cores", "1"],
        &[("TRANSCRIBE_CORES", "2"), ("TRANSCRIBE_MAX_SESSIONS", "77")],
    );
    let health = get(&server, "/v1/health").json();
    assert_eq!(health["cores"], 1);
    assert_eq!(health["max_sessions"], 77);
}

#[test]
fn help_documents_every_setting_with_its_default() {
    let (status, stdout, _) = run_to_exit(&["--help"], &[]);
    assert!(status.success());
    for flag in [
        "--port",
        "--host",
        "--cores",
        "--model-workers",
        "--max-sessions",
        "--session-idle-timeout-seconds",
        "--session-cleanup-interval-seconds",
        "--max-body-bytes",
        "--max-ws-message-bytes",
        "--vad-mode",
        "--vad-hangover-ms",
        "--max-segment-seconds",
        "--interim-interval-ms",
        "--mock-latency-ms",
        "--mock-rtf",
        "--api-key",
        "--admin-key",
        "--log-format",
        "--shutdown-grace-seconds",
        "--redis-url",
        "--node-id",
        "--advertise-url",
        "--cluster-max-sessions",
        "--cluster-fail-mode",
        "--model",
        "--model-path",
        "--model-threads",
    ] {
        assert!(stdout.contains(flag), "--help lacks {flag}");
    }
    assert!(stdout.contains("[default: 8000]"));
    assert!(stdout.contains("TRANSCRIBE_MAX_SESSIONS"));
}

#[test]
fn a_port_already_in_use_is_refused() {
    let first = Server::start(&[]);
    let port = first.port().to_string();
    let (status, _, stderr) = run_to_exit(&["--host", "127.0.0.1", "--port", &port], &[]);
    assert!(!status.success());
    assert!(stderr.contains("already in use"), "{stderr}");
    // The first server still answers every request (nothing was shared).
    for _ in 0..20 {
        assert_eq!(get(&first, "/v1/health").status, 200);
    }

    // A port held by some other program is refused the same way.
    let other = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = other.local_addr().expect("addr").port().to_string();
    let (status, _, stderr) = run_to_exit(&["--host", "127.0.0.1", "--port", &port], &[]);
    assert!(!status.success());
    assert!(stderr.contains("already in use"), "{stderr}");
}

#[test]
fn health_reports_the_contract_fields() {
    let server = Server::start(&["--cores", "2", "--max-sessions", "12"]);
    let health = get(&server, "/v1/health").json();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert!(health["uptime_s"].as_f64().is_some_and(|u| u >= 0.0));
    assert_eq!(health["active_sessions"], 0);
    assert_eq!(health["max_sessions"], 12);
    assert_eq!(health["cores"], 2);
    assert_eq!(health["model"], "mock");
    assert_eq!(health["model_state"], "ready");
    let driver = health["io_driver"].as_str().expect("io_driver");
    assert!(driver == "io_uring" || driver == "epoll", "{driver}");

    let ready = get(&server, "/v1/ready");
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json(), serde_json::json!({"ready": true}));
}

#[test]
fn a_loading_model_is_not_ready_and_its_jobs_wait_for_it() {
    let mut server = Server::start(&["--mock-load-ms", "3000"]);
    let ready = get(&server, "/v1/ready");
    assert_eq!(ready.status, 503);
    assert_eq!(
        ready.json(),
        serde_json::json!({"ready": false, "reason": "model_loading"})
    );
    assert_eq!(get(&server, "/v1/health").json()["model_state"], "loading");
    assert_eq!(
        crate::support::metric(&server, "transcribe_model_ready", &[]),
        Some(0.0)
    );
    // A request sent while loading waits for the model and is answered.
    let reply = crate::support::post(
        &server,
        "/v1/transcribe",
        "audio/wav",
        &fixture("hello.wav"),
        &[],
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["segments"].as_array().map(Vec::len), Some(1));
    assert_eq!(get(&server, "/v1/ready").status, 200);
    assert_eq!(get(&server, "/v1/health").json()["model_state"], "ready");
    assert_eq!(
        crate::support::metric(&server, "transcribe_model_ready", &[]),
        Some(1.0)
    );
    server.signal("TERM");
    assert!(server.wait_exit(Duration::from_secs(20)).is_some());
}

#[test]
fn every_io_uring_setup_serves() {
    for args in [
        &["--uring-coop-taskrun", "false"][..],
        &["--uring-sqpoll-idle-ms", "50", "--uring-entries", "256"][..],
    ] {
        let server = Server::start(args);
        assert_eq!(get(&server, "/v1/health").status, 200, "{args:?}");
        let reply = crate::support::post(
            &server,
            "/v1/transcribe",
            "audio/wav",
            &fixture("hello.wav"),
            &[],
        );
        assert_eq!(reply.status, 200, "{args:?}");
    }
}

#[test]
fn the_epoll_fallback_is_reported() {
    let server = Server::start_with_env(&[], &[("MONOIO_FORCE_LEGACY_DRIVER", "1")]);
    let health = get(&server, "/v1/health").json();
    assert_eq!(health["io_driver"], "epoll");
    // And it serves real work.
    let reply = crate::support::post(
        &server,
        "/v1/transcribe",
        "audio/wav",
        &fixture("hello.wav"),
        &[],
    );
    assert_eq!(reply.status, 200);
}

#[test]
fn sigterm_finishes_in_flight_requests_then_exits_zero() {
    let mut server = Server::start(&["--mock-latency-ms", "1500", "--cores", "1"]);
    let mut raw = Raw::connect(&server);
    // A quarter second of speech as raw PCM: small enough that the upload and
    // the readiness probe pipelined behind it arrive in one read, so the probe
    // is a request already received when the drain starts.
    let wav = fixture("hello_8k.wav");
    let speech = &wav[44 + 8_000..44 + 12_000];
    let mut request = format!(
        "POST /v1/transcribe HTTP/1.1\r\nContent-Type: audio/pcm; rate=8000\r\nContent-Length: {}\r\n\r\n",
        speech.len()
    )
    .into_bytes();
    request.extend_from_slice(speech);
    request.extend_from_slice(b"GET /v1/ready HTTP/1.1\r\n\r\n");
    raw.send(&request);
    std::thread::sleep(Duration::from_millis(400));
    server.signal("TERM");

    let first = raw
        .read_response()
        .expect("the in-flight request is answered");
    assert_eq!(first.status, 200, "{}", first.text());
    assert!(!first.json()["text"].as_str().unwrap_or("").is_empty());
    let second = raw
        .read_response()
        .expect("the pipelined probe is answered");
    assert_eq!(second.status, 503);
    assert_eq!(
        second.json(),
        serde_json::json!({"ready": false, "reason": "draining"})
    );
    assert_eq!(second.header("connection"), Some("close"));
    assert!(raw.is_closed_within(Duration::from_secs(5)));

    let status = server
        .wait_exit(Duration::from_secs(30))
        .expect("the server exits");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn sigint_on_an_idle_server_exits_zero_and_closes_keep_alive_connections() {
    let mut server = Server::start(&[]);
    let mut raw = Raw::connect(&server);
    raw.send(b"GET /v1/health HTTP/1.1\r\n\r\n");
    assert_eq!(raw.read_response().expect("a response").status, 200);
    server.signal("INT");
    assert!(raw.is_closed_within(Duration::from_secs(10)));
    let status = server
        .wait_exit(Duration::from_secs(30))
        .expect("the server exits");
    assert_eq!(status.code(), Some(0));
    // Nobody listens any more.
    assert!(std::net::TcpStream::connect(server.addr).is_err());
}
