//! Unit tests of the `stream` scenario: options, the report's JSON line, and
//! how [`SessionCore`] classifies sessions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::scenarios::soak::deletes::{DeleteAnswer, DeleteBook};
use crate::stats::record_us;
use crate::target::Target;
use crate::wav::Pcm16;

fn opts() -> StreamOptions {
    StreamOptions {
        target: Target::parse("http://127.0.0.1:8000").unwrap(),
        headers: Vec::new(),
        timeout: Duration::from_secs(5),
        audio: Arc::new(Pcm16 {
            sample_rate: 16000,
            data: vec![0; 32000],
        }),
        sessions: 2,
        ramp: Duration::ZERO,
        duration: Duration::from_secs(1),
        chunk_ms: 20,
        pace: true,
        interim: true,
        query: None,
        driver: Driver::Mux,
        threads: 2,
        server_pid: None,
        deletes: None,
        dialect: super::openai::Dialect::Native,
    }
}

#[test]
fn builds_the_path_and_validates() {
    let mut o = opts();
    assert_eq!(
        o.path_and_query(),
        "/v1/transcribe/stream?sample_rate=16000&interim_results=true"
    );
    o.query = Some("?vad_mode=3".into());
    o.interim = false;
    assert_eq!(
        o.path_and_query(),
        "/v1/transcribe/stream?sample_rate=16000&interim_results=false&vad_mode=3"
    );
    assert!(o.validate().is_ok());
    o.query = Some("a b".into());
    assert!(o.validate().is_err());
    let mut o = opts();
    o.sessions = 0;
    assert!(o.validate().is_err());
    let mut o = opts();
    o.chunk_ms = 0;
    assert!(o.validate().is_err());
}

#[test]
fn report_json_has_the_documented_fields() {
    let mut st = StreamStats::new();
    st.completed = 2;
    st.audio_seconds = 20.0;
    for ms in 1..=100 {
        record_us(&mut st.interim_lag, Duration::from_millis(ms));
    }
    record_us(&mut st.final_lag, Duration::from_millis(40));
    st.count_error("http_503");
    let r = StreamReport {
        sessions: 2,
        pace: true,
        chunk_ms: 20,
        duration: Duration::from_secs(10),
        ramp: Duration::ZERO,
        interim: true,
        driver: Driver::Mux,
        dialect: super::openai::Dialect::Native,
        threads: 2,
        wall: Duration::from_secs(10),
        loadgen_cpu: Some(1.23456),
        server_cpu: None,
        stats: st,
    };
    let line = r.json_line();
    assert!(line.starts_with(r#"{"scenario":"stream","sessions":2,"completed":2,"failed":0,"violations":0,"audio_seconds":20.0,"audio_x_realtime":2.0,"interim_lag_ms":{"#));
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["interim_lag_ms"]["count"], 100);
    assert_eq!(v["final_lag_ms"]["count"], 1);
    assert_eq!(v["end_to_session_end_ms"]["count"], 0);
    assert_eq!(v["errors"]["http_503"], 1);
    assert_eq!(v["driver"], "mux");
    assert_eq!(v["threads"], 2);
    assert_eq!(v["loadgen_cpu_s"], 1.235);
    assert!(v["server_cpu_s"].is_null());
    let p99 = v["interim_lag_ms"]["p99"].as_f64().unwrap();
    assert!((98.9..=99.1).contains(&p99), "{p99}");
    let mut human = Vec::new();
    r.write_human(&mut human).unwrap();
    let human = String::from_utf8(human).unwrap();
    assert!(human.lines().all(|l| !l.starts_with('{')));
    assert!(human.contains("http_503: 1"));
}

/// Feeds one session the server messages `msgs` (and a close with
/// `close`), with a DELETE sent first when `delete` (the DELETE is
/// planned at the start, so it is due at once), and finishes it.
fn deleted_session(
    o: &StreamOptions,
    id: &str,
    delete: bool,
    msgs: &[&str],
    close: Option<u16>,
) -> StreamStats {
    let book = o.deletes.as_ref().unwrap();
    let t0 = Instant::now();
    let mut core = SessionCore::new(o, o.chunk_map());
    core.started(t0, t0);
    core.set_length(Duration::from_secs(10));
    if delete {
        core.set_delete_at(t0);
    }
    core.on_text(
        &format!(r#"{{"type":"session_start","session_id":"{id}"}}"#),
        t0,
    );
    if delete {
        assert_eq!(book.take_due(Instant::now()).as_deref(), Some(id));
        book.answered(id, DeleteAnswer::Status(200), Instant::now());
    }
    for m in msgs {
        core.on_text(m, Instant::now());
    }
    if let Some(code) = close {
        core.on_close(code, Instant::now());
    }
    let mut st = StreamStats::new();
    core.finish(&mut st);
    st
}

#[test]
fn deleted_sessions_are_terminated_not_lost_nor_failed() {
    let sp = |id: u64| format!(r#"{{"type":"speech_start","segment_id":{id},"start":0.1}}"#);
    let fin = |id: u64| {
        format!(
            r#"{{"type":"transcript","segment_id":{id},"is_final":true,"text":"a","start":0.1,"end":0.2}}"#
        )
    };
    let end = |reason: &str| format!(r#"{{"type":"session_end","reason":"{reason}"}}"#);
    let book = Arc::new(DeleteBook::new());
    let mut o = opts();
    o.deletes = Some(Arc::clone(&book));
    // Deleted: finals of the earlier segments, the open one cut.
    let msgs = [sp(0), fin(0), sp(1), end("terminated")];
    let msgs: Vec<&str> = msgs.iter().map(String::as_str).collect();
    let st = deleted_session(&o, "a", true, &msgs, Some(1000));
    assert_eq!(
        (st.terminated, st.completed, st.failed, st.violations),
        (1, 0, 0, 0),
        "{:?}",
        st.violation_examples
    );
    assert_eq!((st.terminated_finals, st.terminated_cut_segments), (1, 1));
    assert_eq!(st.lost_finals(), 0);
    // Deleted, but a segment over before the DELETE lacks its final.
    let msgs = [sp(0), sp(1), end("terminated")];
    let msgs: Vec<&str> = msgs.iter().map(String::as_str).collect();
    let st = deleted_session(&o, "b", true, &msgs, Some(1000));
    assert_eq!((st.terminated, st.terminated_with_violations), (1, 1));
    assert_eq!(st.lost_finals(), 1);
    // Deleted, closed without session_end: failed, not lost.
    let msgs = [sp(0), fin(0)];
    let msgs: Vec<&str> = msgs.iter().map(String::as_str).collect();
    let st = deleted_session(&o, "c", true, &msgs, Some(1000));
    assert_eq!((st.failed, st.terminated, st.lost_finals()), (1, 0, 0));
    assert_eq!(st.errors.get("no_session_end_after_delete"), Some(&1));
    // Terminated without a DELETE: failed.
    let msgs = [sp(0), fin(0), end("terminated")];
    let msgs: Vec<&str> = msgs.iter().map(String::as_str).collect();
    let st = deleted_session(&o, "d", false, &msgs, Some(1000));
    assert_eq!((st.failed, st.terminated), (1, 0));
    assert_eq!(st.errors.get("unexpected_terminated"), Some(&1));
    // The DELETE raced nothing: a plain completed session is unaffected.
    let msgs = [sp(0), fin(0), end("client_end")];
    let msgs: Vec<&str> = msgs.iter().map(String::as_str).collect();
    let st = deleted_session(&o, "e", false, &msgs, Some(1000));
    assert_eq!((st.completed, st.failed, st.violations), (1, 0, 0));
    // The book matched each 200 with what the client saw.
    let sum = book.summary();
    assert_eq!((sum.sent, sum.ok), (3, 3));
    assert_eq!((sum.observed, sum.unobserved), (2, 1));
    assert!(
        sum.first_failure
            .as_deref()
            .is_some_and(|f| f.starts_with("DELETE c answered 200")),
        "{sum:?}"
    );
}

#[test]
fn refused_connections_are_failed_sessions() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for driver in [Driver::Threads, Driver::Mux] {
        let mut o = opts();
        o.driver = driver;
        o.target = Target::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let r = run(&o).unwrap();
        assert_eq!(r.stats.failed, 2, "{driver:?}");
        assert_eq!(r.stats.completed, 0);
        assert_eq!(r.stats.errors.get("connect"), Some(&2));
        assert_eq!(r.stats.violations, 0);
        assert!(r.loadgen_cpu.is_some());
    }
}
