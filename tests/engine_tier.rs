//! The engine tier end to end: a real `redis-server` on a free port, real
//! `transcription-server engine` processes (the engine nodes) and a real
//! front end with `--engine remote`, on loopback. Short timings (heartbeat
//! 100 ms, TTL 1 s, claim after 500 ms idle) keep the faults quick; every
//! "eventually" is bounded polling, never a speed threshold. The tests fail,
//! loudly, if `redis-server` is missing.
//!
//! - `killing_an_engine_node_mid_job_loses_no_final_and_doubles_none`: one
//!   front end, three engine nodes, 50 streams; kill -9 a node holding jobs.
//! - `without_engine_nodes_work_is_refused_as_documented_then_recovers`
//! - `a_redis_restart_mid_stream_resubmits_the_lost_jobs`
//! - `batch_through_a_remote_engine_gives_the_local_text`
//! - `an_interim_superseded_while_it_waits_is_withdrawn_not_computed`
//! - `interims_are_shed_cluster_wide_while_finals_wait_in_the_streams`

#[path = "integration/support.rs"]
mod support;

#[path = "cluster_support/mod.rs"]
#[allow(dead_code)]
mod cluster_support;

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use cluster_support::RedisServer;
#[cfg(feature = "fault-injection")]
use support::Hold;
use support::{eventually, fixture, fixture_pcm, get, metric, post, Server, Ws};

/// How long a test waits for something that should happen "soon".
const PATIENCE: Duration = Duration::from_secs(20);

/// 20 ms of 16 kHz PCM16.
const FRAME_BYTES: usize = 640;

/// An engine node process, killed (SIGKILL) when dropped.
struct EngineNode {
    child: Option<Child>,
}

impl EngineNode {
    /// Start `transcription-server engine` on `redis` and wait until its
    /// workers have joined the group.
    fn start(redis: &RedisServer, node_id: &str, extra: &[&str]) -> EngineNode {
        EngineNode::start_with_env(redis, node_id, extra, &[])
    }

    fn start_with_env(
        redis: &RedisServer,
        node_id: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> EngineNode {
        let mut command = Command::new(env!("CARGO_BIN_EXE_transcription-server"));
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command
            .arg("engine")
            .args(["--redis-url", &redis.url(), "--node-id", node_id])
            .args(["--log-level", "warn"])
            .args(["--cluster-heartbeat-ms", "100", "--cluster-ttl-ms", "1000"])
            .args(["--engine-claim-idle-ms", "500"])
            .args(extra)
            .args(if extra.contains(&"--model-workers") {
                &[][..]
            } else {
                &["--model-workers", "2"][..]
            })
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn transcription-server engine");
        let stdout = child.stdout.take().expect("stdout");
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("engine ready") {
                    let _ = ready_tx.send(());
                }
            }
        });
        if ready_rx.recv_timeout(PATIENCE).is_err() {
            let _ = child.kill();
            panic!("engine node {node_id} did not become ready");
        }
        EngineNode { child: Some(child) }
    }

    /// SIGKILL, as a crash would.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and wait for the clean exit.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

impl Drop for EngineNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A front end on `redis` with the remote engine and the test timings.
fn front_end(redis: &RedisServer, extra: &[&str]) -> Server {
    let url = redis.url();
    let mut args = vec![
        "--cores",
        "2",
        "--redis-url",
        &url,
        "--node-id",
        "front-end",
        "--engine",
        "remote",
        "--model-workers",
        "32",
        "--cluster-heartbeat-ms",
        "100",
        "--cluster-ttl-ms",
        "1000",
        "--engine-resubmit-ms",
        "300",
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// One stream of `pcm`, ended by the client: its finals, segment id → text,
/// and every message.
fn stream(addr: SocketAddr, pcm: &[u8]) -> (Vec<(u64, String)>, Vec<Value>) {
    let mut ws = Ws::connect_addr(addr, "interim_results=false");
    let start = ws.next_json().expect("session_start");
    assert_eq!(start["type"], "session_start");
    ws.stream_audio(pcm, FRAME_BYTES);
    ws.send_text(r#"{"type":"end"}"#);
    let (messages, _) = ws.read_to_close();
    let finals = messages
        .iter()
        .filter(|m| m["type"] == "transcript" && m["is_final"] == true)
        .map(|m| {
            (
                m["segment_id"].as_u64().expect("segment_id"),
                m["text"].as_str().expect("text").to_string(),
            )
        })
        .collect();
    (finals, messages)
}

/// The finals a local engine gives for `pcm`: what every remote stream must
/// give too.
fn local_finals(pcm: &[u8]) -> Vec<(u64, String)> {
    let local = Server::start(&["--cores", "1"]);
    let (finals, _) = stream(local.addr, pcm);
    assert!(
        finals.len() >= 2,
        "the fixture has two utterances: {finals:?}"
    );
    finals
}

fn engines_live(server: &Server) -> f64 {
    metric(server, "transcribe_engine_remote_engines_live", &[]).unwrap_or(-1.0)
}

/// `GET /v1/cluster/nodes`' entry for `node_id`.
fn node(server: &Server, node_id: &str) -> Option<Value> {
    let nodes = get(server, "/v1/cluster/nodes").json();
    nodes["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["node_id"] == node_id)
        .cloned()
}

/// Entries the group holds as pending for the consumers of `node_id`.
fn pending_of(redis: &RedisServer, node_id: &str) -> usize {
    let mut connection = redis.connection();
    let mut total = 0;
    for kind in ["final", "batch", "interim"] {
        let consumers: redis::RedisResult<Vec<Vec<redis::Value>>> = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(format!("ts:engine:jobs:{kind}"))
            .arg("engines")
            .query(&mut connection);
        for consumer in consumers.unwrap_or_default() {
            let fields: BTreeMap<String, redis::Value> = consumer
                .chunks_exact(2)
                .filter_map(|pair| match &pair[0] {
                    redis::Value::BulkString(name) => {
                        Some((String::from_utf8_lossy(name).into_owned(), pair[1].clone()))
                    }
                    _ => None,
                })
                .collect();
            let name = match fields.get("name") {
                Some(redis::Value::BulkString(name)) => String::from_utf8_lossy(name).into_owned(),
                _ => continue,
            };
            if name.starts_with(&format!("{node_id}/")) {
                if let Some(redis::Value::Int(pending)) = fields.get("pending") {
                    total += *pending as usize;
                }
            }
        }
    }
    total
}

#[test]
fn killing_an_engine_node_mid_job_loses_no_final_and_doubles_none() {
    let pcm = fixture_pcm("two_utterances.wav");
    let expected = local_finals(&pcm);
    let redis = RedisServer::start();
    let server = front_end(&redis, &[]);
    // 400 ms a job: 100 finals on 6 workers keep every node busy for seconds.
    let slow = ["--mock-latency-ms", "400"];
    let mut doomed = EngineNode::start(&redis, "engine-a", &slow);
    let _b = EngineNode::start(&redis, "engine-b", &slow);
    let _c = EngineNode::start(&redis, "engine-c", &slow);
    assert!(eventually(PATIENCE, || engines_live(&server) == 3.0));

    let streams: Vec<_> = (0..50)
        .map(|_| {
            let (addr, pcm) = (server.addr, pcm.clone());
            std::thread::spawn(move || stream(addr, &pcm))
        })
        .collect();
    // Kill engine-a while the group holds jobs it took and has not answered.
    assert!(
        eventually(PATIENCE, || pending_of(&redis, "engine-a") > 0),
        "engine-a never held a job"
    );
    doomed.kill();
    let orphaned = pending_of(&redis, "engine-a");

    let mut finals_total = 0;
    for handle in streams {
        let (finals, messages) = handle.join().expect("stream thread");
        let ids: Vec<u64> = finals.iter().map(|(id, _)| *id).collect();
        let unique: HashSet<u64> = ids.iter().copied().collect();
        assert_eq!(unique.len(), ids.len(), "a final twice: {messages:#?}");
        assert_eq!(finals, expected, "every final, in order: {messages:#?}");
        finals_total += finals.len();
    }
    assert_eq!(finals_total, 50 * expected.len());
    // The jobs engine-a held were claimed by the others, not lost.
    assert!(orphaned > 0, "engine-a held no job when it died");
    let claimed: u64 = ["engine-b", "engine-c"]
        .iter()
        .filter_map(|id| node(&server, id))
        .map(|n| n["engine"]["jobs_claimed"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        eventually(PATIENCE, || {
            let claimed: u64 = ["engine-b", "engine-c"]
                .iter()
                .filter_map(|id| node(&server, id))
                .map(|n| n["engine"]["jobs_claimed"].as_u64().unwrap_or(0))
                .sum();
            claimed >= orphaned as u64
        }),
        "claimed {claimed} of {orphaned} orphaned jobs"
    );
    // engine-a leaves the registry within its TTL; the others are listed
    // as engines beside the front end.
    assert!(eventually(PATIENCE, || node(&server, "engine-a").is_none()));
    let front = node(&server, "front-end").expect("front end listed");
    assert_eq!(front["role"], "frontend");
    let b = node(&server, "engine-b").expect("engine-b listed");
    assert_eq!(b["role"], "engine");
    assert_eq!(b["engine"]["model"], "mock");
    assert_eq!(b["engine"]["workers"], 2);
}

#[test]
fn without_engine_nodes_work_is_refused_as_documented_then_recovers() {
    let pcm = fixture_pcm("two_utterances.wav");
    let wav = fixture("two_utterances.wav");
    let expected = local_finals(&pcm);
    let redis = RedisServer::start();
    let server = front_end(&redis, &["--engine-final-wait-ms", "1500"]);
    let mut engine = EngineNode::start(&redis, "engine-a", &[]);
    assert!(eventually(PATIENCE, || engines_live(&server) == 1.0));
    assert_eq!(stream(server.addr, &pcm).0, expected);

    // The only engine stops: its registry entry goes at once.
    engine.stop();
    assert!(eventually(PATIENCE, || engines_live(&server) == 0.0));
    let refused = post(&server, "/v1/transcribe", "audio/wav", &wav, &[]);
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.error_code(), "overloaded");
    assert!(refused.header("retry-after").is_some(), "a Retry-After");
    // A stream keeps its audio; each final waits the bound, then is
    // answered with an overloaded error in its place.
    let (finals, messages) = stream(server.addr, &pcm);
    assert!(finals.is_empty(), "no engine, no final: {messages:#?}");
    let overloaded: Vec<&Value> = messages
        .iter()
        .filter(|m| m["type"] == "error" && m["code"] == "overloaded")
        .collect();
    assert_eq!(overloaded.len(), expected.len(), "{messages:#?}");
    assert!(
        metric(
            &server,
            "transcribe_engine_remote_final_timeouts_total",
            &[]
        ) >= Some(2.0)
    );
    assert!(
        metric(
            &server,
            "transcribe_engine_remote_refused_no_engine_total",
            &[]
        ) >= Some(1.0)
    );

    // An engine comes back: everything works again.
    let _back = EngineNode::start(&redis, "engine-b", &[]);
    assert!(eventually(PATIENCE, || engines_live(&server) == 1.0));
    assert_eq!(stream(server.addr, &pcm).0, expected);
    let ok = post(&server, "/v1/transcribe", "audio/wav", &wav, &[]);
    assert_eq!(ok.status, 200, "{}", ok.text());
}

#[test]
fn a_redis_restart_mid_stream_resubmits_the_lost_jobs() {
    let pcm = fixture_pcm("two_utterances.wav");
    let expected = local_finals(&pcm);
    let mut redis = RedisServer::start();
    let server = front_end(&redis, &[]);
    // A second a job: the restart lands while jobs are out.
    let _engine = EngineNode::start(&redis, "engine-a", &["--mock-latency-ms", "1000"]);
    assert!(eventually(PATIENCE, || engines_live(&server) == 1.0));
    let streams: Vec<_> = (0..4)
        .map(|_| {
            let (addr, pcm) = (server.addr, pcm.clone());
            std::thread::spawn(move || stream(addr, &pcm))
        })
        .collect();
    assert!(eventually(PATIENCE, || metric(
        &server,
        "transcribe_engine_remote_outstanding",
        &[]
    ) >= Some(1.0)));
    redis.restart();
    for handle in streams {
        let (finals, messages) = handle.join().expect("stream thread");
        assert_eq!(
            finals, expected,
            "every final once, in order: {messages:#?}"
        );
    }
    assert!(
        metric(&server, "transcribe_engine_remote_resubmits_total", &[]) >= Some(1.0),
        "the jobs Redis lost were submitted again"
    );
}

#[test]
fn batch_through_a_remote_engine_gives_the_local_text() {
    let wav = fixture("two_utterances.wav");
    let local = Server::start(&["--cores", "1"]);
    let expected = post(&local, "/v1/transcribe", "audio/wav", &wav, &[]).json();
    let redis = RedisServer::start();
    let server = front_end(&redis, &[]);
    let _engine = EngineNode::start(&redis, "engine-a", &[]);
    assert!(eventually(PATIENCE, || engines_live(&server) == 1.0));
    let reply = post(&server, "/v1/transcribe", "audio/wav", &wav, &[]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let remote = reply.json();
    assert_eq!(remote["text"], expected["text"]);
    assert_eq!(remote["segments"], expected["segments"]);
    assert!(metric(&server, "transcribe_engine_remote_replies_total", &[]) >= Some(1.0));
}

/// Audio of `seconds` of the 16 kHz PCM16 fixture.
#[cfg(feature = "fault-injection")]
fn first_seconds(pcm: &[u8], seconds: f64) -> &[u8] {
    let bytes = ((seconds * 16_000.0) as usize * 2).min(pcm.len());
    &pcm[..bytes]
}

#[cfg(feature = "fault-injection")]
fn outstanding(server: &Server) -> f64 {
    metric(server, "transcribe_engine_remote_outstanding", &[]).unwrap_or(0.0)
}

/// Needs the `fault-injection` build: the mock holds jobs in `xx-hold`.
#[cfg(feature = "fault-injection")]
#[test]
fn an_interim_superseded_while_it_waits_is_withdrawn_not_computed() {
    let pcm = fixture_pcm("two_utterances.wav");
    let expected = local_finals(&pcm);
    let redis = RedisServer::start();
    let server = front_end(&redis, &[]);
    let hold = Hold::new("engine-tier");
    let _engine =
        EngineNode::start_with_env(&redis, "engine-a", &["--model-workers", "1"], &[hold.env()]);
    assert!(eventually(PATIENCE, || engines_live(&server) == 1.0));
    // Stream A's first final holds the only engine worker.
    let mut a = Ws::connect(&server, "language=xx-hold&interim_results=false");
    assert_eq!(
        a.next_json().expect("session_start")["type"],
        "session_start"
    );
    a.stream_audio(first_seconds(&pcm, 2.5), FRAME_BYTES);
    assert!(eventually(PATIENCE, || pending_of(&redis, "engine-a") == 1));
    // Stream B's first interim waits in its stream behind it...
    let mut b = Ws::connect(&server, "interim_results=true");
    assert_eq!(
        b.next_json().expect("session_start")["type"],
        "session_start"
    );
    let head = first_seconds(&pcm, 1.0);
    b.stream_audio(head, FRAME_BYTES);
    assert!(eventually(PATIENCE, || outstanding(&server) >= 2.0));
    // ...until B's final of that segment supersedes it: withdrawn.
    b.stream_audio(&pcm[head.len()..], FRAME_BYTES);
    b.send_text(r#"{"type":"end"}"#);
    assert!(
        eventually(PATIENCE, || metric(
            &server,
            "transcribe_engine_remote_cancelled_total",
            &[]
        ) >= Some(1.0)),
        "the superseded interim was not withdrawn"
    );
    hold.release();
    a.send_text(r#"{"type":"end"}"#);
    let (a_messages, _) = a.read_to_close();
    let a_finals = a_messages
        .iter()
        .filter(|m| m["type"] == "transcript" && m["is_final"] == true)
        .count();
    assert_eq!(a_finals, 1, "{a_messages:#?}");
    let (b_messages, _) = b.read_to_close();
    let b_finals: Vec<(u64, String)> = b_messages
        .iter()
        .filter(|m| m["type"] == "transcript" && m["is_final"] == true)
        .map(|m| {
            (
                m["segment_id"].as_u64().expect("segment_id"),
                m["text"].as_str().expect("text").to_string(),
            )
        })
        .collect();
    assert_eq!(b_finals, expected, "{b_messages:#?}");
}

/// Needs the `fault-injection` build: the mock holds jobs in `xx-hold`.
#[cfg(feature = "fault-injection")]
#[test]
fn interims_are_shed_cluster_wide_while_finals_wait_in_the_streams() {
    let pcm = fixture_pcm("two_utterances.wav");
    let expected = local_finals(&pcm);
    let redis = RedisServer::start();
    let server = front_end(&redis, &[]);
    let hold = Hold::new("engine-tier-shed");
    let _engine =
        EngineNode::start_with_env(&redis, "engine-a", &["--model-workers", "1"], &[hold.env()]);
    assert!(eventually(PATIENCE, || engines_live(&server) == 1.0));
    // Stream A's first final holds the only worker; its second (flushed by
    // `end`) waits undelivered in the finals stream.
    let mut a = Ws::connect(&server, "language=xx-hold&interim_results=false");
    assert_eq!(
        a.next_json().expect("session_start")["type"],
        "session_start"
    );
    a.stream_audio(&pcm, FRAME_BYTES);
    a.send_text(r#"{"type":"end"}"#);
    assert!(eventually(PATIENCE, || metric(
        &server,
        "transcribe_engine_remote_backlog",
        &[]
    ) >= Some(1.0)));
    // Stream B's interims are shed at the front end, never submitted.
    let mut b = Ws::connect(&server, "interim_results=true");
    assert_eq!(
        b.next_json().expect("session_start")["type"],
        "session_start"
    );
    b.stream_audio(first_seconds(&pcm, 1.0), FRAME_BYTES);
    assert!(
        eventually(PATIENCE, || metric(
            &server,
            "transcribe_engine_remote_interims_shed_total",
            &[]
        ) >= Some(1.0)),
        "no interim was shed"
    );
    let mut connection = redis.connection();
    let interims_queued: usize = redis::cmd("XLEN")
        .arg("ts:engine:jobs:interim")
        .query(&mut connection)
        .expect("XLEN");
    assert_eq!(interims_queued, 0, "a shed interim reached its stream");
    // Released, both streams get every final.
    hold.release();
    b.stream_audio(&pcm[first_seconds(&pcm, 1.0).len()..], FRAME_BYTES);
    b.send_text(r#"{"type":"end"}"#);
    let (a_messages, _) = a.read_to_close();
    let a_finals = a_messages
        .iter()
        .filter(|m| m["type"] == "transcript" && m["is_final"] == true)
        .count();
    assert_eq!(a_finals, expected.len(), "{a_messages:#?}");
    let (b_messages, _) = b.read_to_close();
    let b_finals: Vec<(u64, String)> = b_messages
        .iter()
        .filter(|m| m["type"] == "transcript" && m["is_final"] == true)
        .map(|m| {
            (
                m["segment_id"].as_u64().expect("segment_id"),
                m["text"].as_str().expect("text").to_string(),
            )
        })
        .collect();
    assert_eq!(b_finals, expected, "{b_messages:#?}");
}
