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
        (
            &["--model", "ct2", "--model-path", "/nonexistent/ct2-dir"],
            &[],
            "--model",
        ),
        (
            &["--model-compute-type", "int4"],
            &[],
            "--model-compute-type",
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
        "--drain-delay-seconds",
        "--redis-url",
        "--node-id",
        "--advertise-url",
        "--cluster-max-sessions",
        "--cluster-fail-mode",
        "--model",
        "--model-path",
        "--model-threads",
        "--model-compute-type",
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

/// Every `*_seconds` setting takes a decimal number, as a flag and as an
/// environment variable (before, `0.2` was refused by the parser with
/// "invalid digit found in string"), and is still checked against its range
/// with the flag named.
#[test]
fn every_seconds_setting_takes_decimals_as_a_flag_and_a_variable() {
    use crate::support::Ws;
    let server = Server::start_with_env(
        &[
            "--session-cleanup-interval-seconds",
            "0.2",
            "--keepalive-timeout-seconds",
            "0.5",
            "--max-session-seconds",
            "3600.5",
        ],
        &[
            ("TRANSCRIBE_SESSION_IDLE_TIMEOUT_SECONDS", "1.5"),
            ("TRANSCRIBE_SHUTDOWN_GRACE_SECONDS", "2.5"),
            ("TRANSCRIBE_DRAIN_DELAY_SECONDS", "0.25"),
        ],
    );
    // The idle sweep runs every 0.2 s and closes a silent session.
    let mut ws = Ws::connect(&server, "");
    let (messages, close) = ws.read_to_close();
    let end = messages.last().expect("messages");
    assert_eq!(end["reason"], "idle_timeout", "{messages:?}");
    assert_eq!(close, Some(1000));
    // An idle keep-alive connection closes after half a second.
    let mut raw = Raw::connect(&server);
    raw.send(b"GET /v1/health HTTP/1.1\r\n\r\n");
    assert_eq!(raw.read_response().expect("a response").status, 200);
    assert!(raw.is_closed_within(Duration::from_secs(20)));

    let cases: &[Refusal] = &[
        (
            &["--session-idle-timeout-seconds", "0.05"],
            &[],
            "--session-idle-timeout-seconds",
        ),
        (
            &["--keepalive-timeout-seconds", "NaN"],
            &[],
            "--keepalive-timeout-seconds",
        ),
        (
            &[],
            &[("TRANSCRIBE_SHUTDOWN_GRACE_SECONDS", "inf")],
            "--shutdown-grace-seconds",
        ),
        (
            &[],
            &[("TRANSCRIBE_DRAIN_DELAY_SECONDS", "-0.5")],
            "--drain-delay-seconds",
        ),
        (
            &[],
            &[("TRANSCRIBE_SESSION_CLEANUP_INTERVAL_SECONDS", "0.2s")],
            "--session-cleanup-interval-seconds",
        ),
    ];
    for (args, env, flag) in cases {
        let (status, _, stderr) = run_to_exit(args, env);
        assert_eq!(status.code(), Some(2), "{args:?} {env:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?} {env:?}: {stderr}");
    }
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
fn a_full_model_queue_is_not_ready_until_it_drains() {
    // One worker and a queue of one, with a slow model: the first upload's
    // job runs, the second's fills the queue.
    let server = std::sync::Arc::new(Server::start(&[
        "--model-workers",
        "1",
        "--model-queue-capacity",
        "1",
        "--mock-latency-ms",
        "3000",
    ]));
    assert_eq!(get(&server, "/v1/ready").status, 200);
    let upload = |server: &std::sync::Arc<Server>| {
        let server = std::sync::Arc::clone(server);
        std::thread::spawn(move || {
            crate::support::post(
                &server,
                "/v1/transcribe",
                "audio/wav",
                &fixture("hello.wav"),
                &[],
            )
        })
    };
    let gauge = |name: &str| crate::support::metric(&server, name, &[]).unwrap_or(0.0);
    // The first job is running before the second is sent, so the second is
    // queued (not refused as it would be if both raced for the queue).
    let first = upload(&server);
    assert!(crate::support::eventually(
        Duration::from_secs(10),
        || gauge("transcribe_model_jobs_in_flight") == 1.0
    ));
    let second = upload(&server);
    let uploads = [first, second];
    let full = serde_json::json!({"ready": false, "reason": "model queue full"});
    let mut last = serde_json::Value::Null;
    assert!(
        crate::support::eventually(Duration::from_secs(10), || {
            let ready = get(&server, "/v1/ready");
            last = ready.json();
            ready.status == 503 && last == full
        }),
        "never reported the full queue; last answer {last}"
    );
    for upload in uploads {
        let reply = upload.join().expect("upload");
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    // Both jobs are done: the queue is empty and the server is ready again.
    assert!(crate::support::eventually(Duration::from_secs(10), || get(
        &server,
        "/v1/ready"
    )
    .status
        == 200));
}

/// Whether this kernel builds a ring with these setup flags (the same
/// builder calls the server makes for one core).
fn kernel_accepts_ring(entries: u32, coop_taskrun: bool, sqpoll_idle_ms: Option<u32>) -> bool {
    let mut ring = io_uring::IoUring::<io_uring::squeue::Entry, io_uring::cqueue::Entry>::builder();
    if coop_taskrun {
        ring.setup_coop_taskrun();
    }
    if let Some(idle_ms) = sqpoll_idle_ms {
        ring.setup_sqpoll(idle_ms);
    }
    ring.build(entries).is_ok()
}

/// The submission queue sizes (`SqMask + 1`) of the process's io_uring
/// instances, from `/proc/<pid>/fdinfo`.
fn uring_sq_entries(pid: u32) -> Vec<u32> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("the server's fds");
    let mut entries = Vec::new();
    for fd in fds.map_while(Result::ok) {
        let is_ring = std::fs::read_link(fd.path())
            .is_ok_and(|target| target.to_string_lossy().contains("io_uring"));
        if !is_ring {
            continue;
        }
        let info = std::fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            fd.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        let mask = info.lines().find_map(|line| {
            let hex = line.strip_prefix("SqMask:")?.trim().strip_prefix("0x")?;
            u32::from_str_radix(hex, 16).ok()
        });
        if let Some(mask) = mask {
            entries.push(mask + 1);
        }
    }
    entries
}

/// How many of the process's threads are io_uring submission-polling
/// kernel threads (`iou-sqp-<pid>`).
fn sqpoll_threads(pid: u32) -> usize {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the server's threads");
    tasks
        .map_while(Result::ok)
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|comm| comm.starts_with("iou-sqp"))
        })
        .count()
}

#[test]
fn every_io_uring_setup_serves() {
    const REFUSED: &str = "io_uring setup flags refused";
    let uring_works = kernel_accepts_ring(1024, false, None);
    // (arguments, entries, coop_taskrun, sqpoll_idle_ms): what is asked.
    let setups: [(&[&str], u32, bool, Option<u32>); 3] = [
        (&["--uring-coop-taskrun", "false"], 1024, false, None),
        (
            &[
                "--uring-coop-taskrun",
                "false",
                "--uring-sqpoll-idle-ms",
                "50",
                "--uring-entries",
                "256",
            ],
            256,
            false,
            Some(50),
        ),
        // SQPOLL next to the default COOP_TASKRUN: the kernel refuses the
        // pair, so asking for SQPOLL must turn COOP_TASKRUN off and get the
        // polling thread, not a silent fallback to a plain ring.
        (
            &["--uring-sqpoll-idle-ms", "50", "--uring-entries", "256"],
            256,
            false,
            Some(50),
        ),
    ];
    for (args, entries, coop_taskrun, sqpoll_idle_ms) in setups {
        let args = [&["--cores", "1"], args].concat();
        let server = Server::start(&args);
        let health = get(&server, "/v1/health").json();
        assert_eq!(health["status"], "ok", "{args:?}: {health}");
        if uring_works {
            assert_eq!(health["io_driver"], "io_uring", "{args:?}");
        }
        let reply = crate::support::post(
            &server,
            "/v1/transcribe",
            "audio/wav",
            &fixture("hello.wav"),
            &[],
        );
        assert_eq!(reply.status, 200, "{args:?}");
        if !uring_works {
            continue;
        }
        // The server logs a refusal before its core serves, but the line
        // reaches this process through a pipe and a reader thread: wait for
        // it rather than read whatever has arrived so far.
        let refused_reported = || server.stderr_lines().iter().any(|l| l.contains(REFUSED));
        if kernel_accepts_ring(entries, coop_taskrun, sqpoll_idle_ms) {
            // The flags took effect: no refusal, the ring has the size asked
            // for, and a polling thread exists exactly when one was asked.
            assert!(!refused_reported(), "{args:?}: {:?}", server.stderr_lines());
            let rings = uring_sq_entries(server.pid());
            assert!(!rings.is_empty(), "{args:?}: no io_uring fd");
            assert!(rings.contains(&entries), "{args:?}: rings {rings:?}");
            assert_eq!(
                sqpoll_threads(server.pid()) > 0,
                sqpoll_idle_ms.is_some(),
                "{args:?}"
            );
        } else {
            // The kernel refuses them: the server runs a plain ring and says so.
            assert!(
                crate::support::eventually(Duration::from_secs(10), refused_reported),
                "{args:?}: {:?}",
                server.stderr_lines()
            );
            assert_eq!(sqpoll_threads(server.pid()), 0, "{args:?}");
        }
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

/// The drain as a load balancer and a client see it: from the signal on,
/// while a session's final and an upload are still being computed (the
/// engine holds both), a NEW connection is accepted and answered: readiness
/// 503 `draining`, health 200 `draining`, a new upload 503 `shutting_down`,
/// a new stream `shutting_down` and close 1013. Then the held work finishes:
/// the session gets its final and `session_end` `server_shutdown` (1001),
/// the upload its transcript, a probe pipelined behind it `draining`; the
/// server exits 0 and only then stops listening.
#[cfg(feature = "fault-injection")]
#[test]
fn sigterm_finishes_in_flight_requests_then_exits_zero() {
    use crate::support::{model_jobs_pending, post, Hold, Ws};
    let hold = Hold::new("sigterm");
    let mut server = Server::start_with_env(
        &[
            "--cores",
            "2",
            "--model-workers",
            "2",
            "--shutdown-grace-seconds",
            "120",
        ],
        &[hold.env()],
    );
    // A stream whose final the engine holds.
    let mut stream = Ws::connect(&server, "language=xx-hold&interim_results=false");
    assert_eq!(
        stream.next_json().expect("session_start")["type"],
        "session_start"
    );
    stream.stream_audio(&crate::support::fixture_pcm("hello.wav"), 3_200);
    // A second of silence ends the segment: its final goes to the engine.
    stream.stream_audio(&[0; 32_000], 3_200);
    // An upload whose job the engine holds, with a readiness probe pipelined
    // behind it (a request already received when the drain starts). A
    // quarter second of speech as raw PCM, so both arrive in one read.
    let mut raw = Raw::connect(&server);
    let wav = fixture("hello_8k.wav");
    let speech = &wav[44 + 8_000..44 + 12_000];
    let mut request = format!(
        "POST /v1/transcribe?language=xx-hold HTTP/1.1\r\nContent-Type: audio/pcm; rate=8000\r\nContent-Length: {}\r\n\r\n",
        speech.len()
    )
    .into_bytes();
    request.extend_from_slice(speech);
    request.extend_from_slice(b"GET /v1/ready HTTP/1.1\r\n\r\n");
    raw.send(&request);
    assert!(
        crate::support::eventually(Duration::from_secs(20), || model_jobs_pending(&server)
            >= 2.0),
        "the final and the upload never reached the model"
    );
    server.signal("TERM");

    // While the session is still finishing, new connections are answered.
    let draining = serde_json::json!({"ready": false, "reason": "draining"});
    let mut last = serde_json::Value::Null;
    assert!(
        crate::support::eventually(Duration::from_secs(10), || {
            let ready = get(&server, "/v1/ready");
            last = ready.json();
            ready.status == 503 && last == draining
        }),
        "readiness never said draining on a new connection; last {last}"
    );
    let health = get(&server, "/v1/health");
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "draining");
    let refused = post(
        &server,
        "/v1/transcribe",
        "audio/wav",
        &fixture("hello.wav"),
        &[],
    );
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.error_code(), "shutting_down");
    let mut late = Ws::connect(&server, "");
    let (messages, close) = late.read_to_close();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["type"], "error");
    assert_eq!(messages[0]["code"], "shutting_down");
    assert_eq!(close, Some(1013));
    // Still answering after all that: nothing finished yet.
    assert_eq!(get(&server, "/v1/ready").status, 503);

    hold.release();
    let (messages, close) = stream.read_to_close();
    let finals = messages
        .iter()
        .filter(|m| m["type"] == "transcript" && m["is_final"] == true)
        .count();
    assert!(finals >= 1, "no final: {messages:?}");
    let end = messages.last().expect("messages");
    assert_eq!(end["type"], "session_end", "{messages:?}");
    assert_eq!(end["reason"], "server_shutdown");
    assert_eq!(close, Some(1001));
    let first = raw
        .read_response()
        .expect("the in-flight request is answered");
    assert_eq!(first.status, 200, "{}", first.text());
    assert!(!first.json()["text"].as_str().unwrap_or("").is_empty());
    let second = raw
        .read_response()
        .expect("the pipelined probe is answered");
    assert_eq!(second.status, 503);
    assert_eq!(second.json(), draining);
    assert!(raw.is_closed_within(Duration::from_secs(10)));

    let status = server
        .wait_exit(Duration::from_secs(30))
        .expect("the server exits");
    assert_eq!(status.code(), Some(0));
    assert!(std::net::TcpStream::connect(server.addr).is_err());
}

/// `--drain-delay-seconds`: after the signal, readiness answers 503
/// `draining` at once while everything else is served as before (a new
/// upload, a new stream to its end, the streams already open), so a load
/// balancer can stop sending work before any is refused. (The delay is
/// longer than the test; the server is killed at the end.)
#[test]
fn a_drain_delay_serves_everything_while_readiness_says_draining() {
    use crate::support::{fixture_pcm, post, Ws};
    let server = Server::start(&["--drain-delay-seconds", "90.5", "--cores", "2"]);
    let mut open = Ws::connect(&server, "interim_results=false");
    assert_eq!(
        open.next_json().expect("session_start")["type"],
        "session_start"
    );
    server.signal("TERM");
    let draining = serde_json::json!({"ready": false, "reason": "draining"});
    assert!(crate::support::eventually(Duration::from_secs(10), || {
        let ready = get(&server, "/v1/ready");
        ready.status == 503 && ready.json() == draining
    }));
    assert_eq!(get(&server, "/v1/health").json()["status"], "draining");
    let upload = post(
        &server,
        "/v1/transcribe",
        "audio/wav",
        &fixture("hello.wav"),
        &[],
    );
    assert_eq!(upload.status, 200, "{}", upload.text());
    assert!(!upload.json()["segments"]
        .as_array()
        .expect("segments")
        .is_empty());
    let pcm = fixture_pcm("hello.wav");
    for ws in [
        &mut Ws::connect(&server, "interim_results=false"),
        &mut open,
    ] {
        ws.stream_audio(&pcm, 3_200);
        ws.send_text(r#"{"type":"end"}"#);
        let (messages, close) = ws.read_to_close();
        assert!(
            messages.iter().any(|m| m["is_final"] == true),
            "{messages:?}"
        );
        let end = messages.last().expect("messages");
        assert_eq!(end["reason"], "client_end", "{messages:?}");
        assert_eq!(close, Some(1000));
    }
    // Still in the delay: still not ready.
    assert_eq!(get(&server, "/v1/ready").status, 503);
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
