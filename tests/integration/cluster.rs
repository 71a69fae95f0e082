//! Cluster mode end to end: a real `redis-server` on a free port and two or
//! three real `transcription-server` processes sharing it (`--redis-url`),
//! with short cluster timings (heartbeat 100 ms, TTL 1 s) so dead nodes
//! vanish quickly. The tests fail, loudly, if `redis-server` is missing.
//!
//! - `cluster_endpoints_answer_503_without_redis`: the single-node answers.
//! - `cluster_limit_holds_under_concurrent_connects_across_nodes`
//! - `sessions_are_listed_read_and_deleted_from_any_node`
//! - `a_killed_node_leaves_the_cluster_list_within_the_ttl`
//! - `redis_restart_keeps_streams_and_rebuilds_the_registry`
//! - `a_delete_the_owning_node_does_not_confirm_is_504_cluster_timeout`
//! - `without_redis_admission_follows_the_fail_mode`
//! - `nginx_balances_streams_over_two_nodes`: nginx (HTTP + WebSocket
//!   upgrade, `least_conn`) in front of two nodes.

use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::support::{delete, eventually, fixture_pcm, get, metric, Server, Ws};

#[path = "../cluster_support/mod.rs"]
#[allow(dead_code)]
mod cluster_support;

use cluster_support::RedisServer;

/// How long a test waits for the registry to catch up (flushes are every
/// 50 ms, heartbeats every 100 ms, the TTL is 1 s).
const PATIENCE: Duration = Duration::from_secs(10);

/// Start a node of the cluster on `redis` named `node_id`, with the short
/// test timings and `extra` flags.
fn start_node(redis: &RedisServer, node_id: &str, extra: &[&str]) -> Server {
    start_node_with_env(redis, node_id, extra, &[])
}

/// [`start_node`] with environment variables.
fn start_node_with_env(
    redis: &RedisServer,
    node_id: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Server {
    let url = redis.url();
    let advertise = format!("http://{node_id}.test");
    let mut args = vec![
        "--cores",
        "2",
        "--redis-url",
        &url,
        "--node-id",
        node_id,
        "--advertise-url",
        &advertise,
        "--cluster-heartbeat-ms",
        "100",
        "--cluster-ttl-ms",
        "1000",
    ];
    args.extend_from_slice(extra);
    let server = Server::start_with_env(&args, env);
    let registered = eventually(PATIENCE, || {
        let reply = get(&server, "/v1/cluster/nodes");
        reply.status == 200
            && reply.json()["nodes"]
                .as_array()
                .is_some_and(|nodes| nodes.iter().any(|node| node["node_id"] == node_id))
    });
    assert!(registered, "{node_id} never registered in the cluster");
    server
}

/// The ids in a session list, with their node.
fn listed(server: &Server, path: &str) -> Vec<(String, String)> {
    let reply = get(server, path);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let mut ids: Vec<(String, String)> = reply.json()["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .map(|session| {
            (
                session["session_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                session["node"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    ids.sort();
    ids
}

/// Open a session and return it with its id.
fn open_session(server: &Server) -> (Ws, String) {
    let mut ws = Ws::connect(server, "");
    let started = ws.next_json().expect("session_start");
    assert_eq!(started["type"], "session_start", "{started}");
    let id = started["session_id"].as_str().expect("id").to_string();
    (ws, id)
}

#[test]
fn cluster_endpoints_answer_503_without_redis() {
    let server = Server::start(&[]);
    for path in [
        "/v1/cluster/nodes",
        "/v1/sessions?scope=cluster",
        "/v1/sessions/metrics?scope=cluster",
    ] {
        let reply = get(&server, path);
        assert_eq!(reply.status, 503, "{path}: {}", reply.text());
        assert_eq!(reply.error_code(), "cluster_unavailable", "{path}");
    }
    // The single-node answers are unchanged: no `node` field.
    let (_ws, id) = open_session(&server);
    let session = get(&server, &format!("/v1/sessions/{id}")).json();
    assert!(session.get("node").is_none(), "{session}");
    assert_eq!(get(&server, "/v1/sessions?scope=local").status, 200);
    assert_eq!(get(&server, "/v1/sessions?scope=everywhere").status, 400);
    assert_eq!(
        get(&server, "/v1/sessions/not-a-session").error_code(),
        "session_not_found"
    );
}

#[test]
fn cluster_limit_holds_under_concurrent_connects_across_nodes() {
    const LIMIT: usize = 4;
    const CLIENTS: usize = 15;
    let redis = RedisServer::start();
    let limit = LIMIT.to_string();
    let flags = [
        "--cluster-max-sessions",
        &limit,
        "--cluster-lease-block",
        "1",
    ];
    let nodes = [
        start_node(&redis, "node-a", &flags),
        start_node(&redis, "node-b", &flags),
        start_node(&redis, "node-c", &flags),
    ];
    let addrs: Vec<_> = nodes.iter().map(|node| node.addr).collect();

    // Every client connects at once, to the nodes in turn; the admitted keep
    // their sessions open until every client has its answer.
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let admitted = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (barrier, admitted, addr) = (
                Arc::clone(&barrier),
                Arc::clone(&admitted),
                addrs[client % addrs.len()],
            );
            std::thread::spawn(move || {
                barrier.wait();
                let mut ws = Ws::connect_addr(addr, "");
                let first = ws.next_json().expect("a first message");
                if first["type"] == "session_start" {
                    admitted.lock().expect("lock").push(ws);
                    return true;
                }
                assert_eq!(first["type"], "error", "{first}");
                assert_eq!(first["code"], "session_limit_exceeded", "{first}");
                let (_, close) = ws.read_to_close();
                assert_eq!(close, Some(1013));
                false
            })
        })
        .collect();
    let granted = threads
        .into_iter()
        .map(|thread| thread.join().expect("client thread"))
        .filter(|granted| *granted)
        .count();
    assert!(
        (1..=LIMIT).contains(&granted),
        "{granted} sessions admitted for a cluster limit of {LIMIT}"
    );

    // Free leases may sit in another node's pool for a moment; asking the
    // nodes in turn reaches the limit exactly, and never passes it.
    let mut sessions = std::mem::take(&mut *admitted.lock().expect("lock"));
    let mut turn = 0;
    let reached = eventually(PATIENCE, || {
        turn += 1;
        let mut ws = Ws::connect_addr(addrs[turn % addrs.len()], "");
        if ws.next_json().expect("a first message")["type"] == "session_start" {
            sessions.push(ws);
        }
        assert!(
            sessions.len() <= LIMIT,
            "more than {LIMIT} sessions admitted"
        );
        sessions.len() == LIMIT
    });
    assert!(reached, "the cluster never admitted {LIMIT} sessions");
    for addr in &addrs {
        let mut ws = Ws::connect_addr(*addr, "");
        let first = ws.next_json().expect("a first message");
        assert_eq!(first["code"], "session_limit_exceeded", "{first}");
    }
    // Each node's leases in use are its sessions; the exposition still parses.
    let in_use: f64 = nodes
        .iter()
        .map(|node| metric(node, "transcribe_cluster_leases_in_use", &[]).unwrap_or(0.0))
        .sum();
    assert_eq!(in_use, LIMIT as f64);
    for node in &nodes {
        assert_eq!(metric(node, "transcribe_cluster_available", &[]), Some(1.0));
    }
    let total: u64 = nodes
        .iter()
        .map(|node| {
            get(node, "/v1/health").json()["active_sessions"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(total, LIMIT as u64);

    // A closed session's slot is free again for any node.
    drop(sessions.pop());
    let freed = eventually(PATIENCE, || {
        turn += 1;
        let mut ws = Ws::connect_addr(addrs[turn % addrs.len()], "");
        if ws.next_json().expect("a first message")["type"] == "session_start" {
            sessions.push(ws);
        }
        sessions.len() == LIMIT
    });
    assert!(freed, "a freed slot was never admitted again");
}

#[test]
fn sessions_are_listed_read_and_deleted_from_any_node() {
    let redis = RedisServer::start();
    let a = start_node(&redis, "node-a", &[]);
    let b = start_node(&redis, "node-b", &[]);
    let (_ws_a, id_a) = open_session(&a);
    let (mut ws_b, id_b) = open_session(&b);
    let mut expected = vec![
        (id_a.clone(), "node-a".to_string()),
        (id_b.clone(), "node-b".to_string()),
    ];
    expected.sort();

    // Either node lists both, each with its node; the plain list is local.
    for node in [&a, &b] {
        assert!(
            eventually(PATIENCE, || listed(node, "/v1/sessions?scope=cluster")
                == expected),
            "{:?}",
            listed(node, "/v1/sessions?scope=cluster")
        );
    }
    assert_eq!(
        listed(&a, "/v1/sessions"),
        vec![(id_a.clone(), "node-a".to_string())]
    );

    // A reads B's session through the registry.
    let session = get(&a, &format!("/v1/sessions/{id_b}"));
    assert_eq!(session.status, 200, "{}", session.text());
    let session = session.json();
    assert_eq!(session["node"], "node-b");
    assert_eq!(session["session_id"], id_b.as_str());
    assert!(session["idle_s"].as_f64().is_some(), "{session}");

    // Nodes and merged metrics.
    let nodes = get(&a, "/v1/cluster/nodes").json();
    let nodes = nodes["nodes"].as_array().expect("nodes").clone();
    assert_eq!(nodes.len(), 2, "{nodes:?}");
    for node in &nodes {
        for field in [
            "node_id",
            "url",
            "healthy",
            "active_sessions",
            "last_heartbeat_at",
        ] {
            assert!(node.get(field).is_some(), "{node} lacks {field}");
        }
        assert_eq!(node["healthy"], true);
    }
    assert!(eventually(PATIENCE, || {
        let metrics: Value = get(&b, "/v1/sessions/metrics?scope=cluster").json();
        metrics["active_sessions"] == 2 && metrics["nodes"].as_array().is_some_and(|n| n.len() == 2)
    }));

    // A deletes B's session: B's client gets `session_end` `terminated`.
    let deleted = delete(&a, &format!("/v1/sessions/{id_b}"));
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    assert_eq!(deleted.json()["state"], "closed");
    let (messages, _) = ws_b.read_to_close();
    let end = messages
        .iter()
        .find(|message| message["type"] == "session_end")
        .unwrap_or_else(|| panic!("no session_end in {messages:#?}"));
    assert_eq!(end["reason"], "terminated");
    assert!(
        eventually(PATIENCE, || listed(&a, "/v1/sessions?scope=cluster")
            == vec![(id_a.clone(), "node-a".to_string())]),
        "the deleted session stayed in the cluster list"
    );

    // Unknown ids are 404 from any node, with or without the cluster.
    let unknown = "00000000-0000-4000-8000-000000000000";
    for node in [&a, &b] {
        assert_eq!(get(node, &format!("/v1/sessions/{unknown}")).status, 404);
        let reply = delete(node, &format!("/v1/sessions/{unknown}"));
        assert_eq!(reply.error_code(), "session_not_found", "{}", reply.text());
    }
}

/// `DELETE ?flush=true` sent to another node: the owner ends the session
/// after its finals (here one the engine holds until the test releases
/// it), then `terminated`. The flag travels in the inbox message.
#[cfg(feature = "fault-injection")]
#[test]
fn a_flushing_delete_from_another_node_delivers_the_finals_first() {
    use crate::support::{model_jobs_pending, Hold};
    let redis = RedisServer::start();
    let hold = Hold::new("cluster-flush");
    let a = start_node(&redis, "node-a", &[]);
    let b = start_node_with_env(&redis, "node-b", &[], &[hold.env()]);
    let mut ws = Ws::connect(&b, "language=xx-hold&interim_results=false");
    let id = ws.next_json().expect("session_start")["session_id"]
        .as_str()
        .expect("id")
        .to_string();
    ws.stream_audio(&fixture_pcm("hello.wav"), 640);
    ws.stream_audio(&vec![0u8; 32_000], 640);
    assert!(eventually(PATIENCE, || model_jobs_pending(&b) >= 1.0));
    assert!(eventually(PATIENCE, || listed(
        &a,
        "/v1/sessions?scope=cluster"
    )
    .iter()
    .any(|(listed_id, _)| *listed_id == id)));
    let reply = delete(&a, &format!("/v1/sessions/{id}?flush=true"));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["state"], "closing");
    hold.release();
    let (messages, close) = ws.read_to_close();
    let finals = messages
        .iter()
        .filter(|m| m["type"] == "transcript" && m["is_final"] == true)
        .count();
    assert_eq!(finals, 1, "{messages:#?}");
    assert_eq!(messages.last().expect("end")["reason"], "terminated");
    assert_eq!(close, Some(1000));
}

#[test]
fn a_killed_node_leaves_the_cluster_list_within_the_ttl() {
    let redis = RedisServer::start();
    let a = start_node(&redis, "node-a", &[]);
    let mut b = start_node(&redis, "node-b", &[]);
    let (_ws_a, id_a) = open_session(&a);
    let (_ws_b, id_b) = open_session(&b);
    assert!(eventually(PATIENCE, || listed(
        &a,
        "/v1/sessions?scope=cluster"
    )
    .len()
        == 2));

    b.signal("KILL");
    assert!(b.wait_exit(PATIENCE).is_some(), "node-b did not die");
    // Only its keys' TTL (1 s) can remove a node killed without a word; how
    // soon after the TTL the survivor notices is speed, so the wait is the
    // tests' usual patience.
    assert!(
        eventually(PATIENCE, || listed(&a, "/v1/sessions?scope=cluster")
            == vec![(id_a.clone(), "node-a".to_string())]),
        "{:?}",
        listed(&a, "/v1/sessions?scope=cluster")
    );
    assert!(eventually(PATIENCE, || {
        let nodes = get(&a, "/v1/cluster/nodes").json();
        nodes["nodes"]
            .as_array()
            .is_some_and(|nodes| nodes.len() == 1 && nodes[0]["node_id"] == "node-a")
    }));
    assert_eq!(
        get(&a, &format!("/v1/sessions/{id_b}")).error_code(),
        "session_not_found"
    );
}

#[test]
fn redis_restart_keeps_streams_and_rebuilds_the_registry() {
    let mut redis = RedisServer::start();
    let a = start_node(&redis, "node-a", &[]);
    let b = start_node(&redis, "node-b", &[]);
    let (mut ws, id) = open_session(&a);
    let pcm = fixture_pcm("hello.wav");
    let (first, second) = pcm.split_at(pcm.len() / 2);
    ws.stream_audio(first, 3_200);
    assert!(eventually(PATIENCE, || listed(
        &b,
        "/v1/sessions?scope=cluster"
    )
    .iter()
    .any(|(listed, _)| *listed == id)));

    redis.kill();
    // Cluster queries fail; the node's own sessions still answer.
    assert!(eventually(PATIENCE, || {
        get(&b, "/v1/sessions?scope=cluster").error_code() == "cluster_unavailable"
    }));
    assert_eq!(get(&a, &format!("/v1/sessions/{id}")).status, 200);
    ws.stream_audio(second, 3_200);

    redis.restart();
    // The node writes its sessions again once it reconnects.
    assert!(
        eventually(PATIENCE, || {
            let reply = get(&b, "/v1/sessions?scope=cluster");
            reply.status == 200
                && reply.json()["sessions"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|s| s["session_id"] == id.as_str()))
        }),
        "the registry was not rebuilt after Redis came back"
    );
    // The stream carried on throughout: its transcript arrives.
    ws.send_text(r#"{"type":"end"}"#);
    let (messages, close) = ws.read_to_close();
    assert!(
        messages
            .iter()
            .any(|message| message["type"] == "transcript" && message["is_final"] == true),
        "{messages:#?}"
    );
    let end = messages
        .iter()
        .find(|message| message["type"] == "session_end")
        .expect("session_end");
    assert_eq!(end["reason"], "client_end", "{end}");
    assert_eq!(
        end["metrics"]["audio_bytes"],
        pcm.len() as u64,
        "no audio was lost"
    );
    assert_eq!(close, Some(1000));
}

#[test]
fn a_delete_the_owning_node_does_not_confirm_is_504_cluster_timeout() {
    let redis = RedisServer::start();
    let a = start_node(&redis, "node-a", &[]);
    // A TTL far beyond the test, so the stopped node's registration (and its
    // session's) outlives its silence: the delete reaches a node that is
    // subscribed but does not answer.
    let url = redis.url();
    let b = Server::start(&[
        "--cores",
        "1",
        "--redis-url",
        &url,
        "--node-id",
        "node-b",
        "--advertise-url",
        "http://node-b.test",
        "--cluster-heartbeat-ms",
        "100",
        "--cluster-ttl-ms",
        "60000",
    ]);
    let (_ws_b, id_b) = open_session(&b);
    assert!(eventually(PATIENCE, || listed(
        &a,
        "/v1/sessions?scope=cluster"
    )
    .contains(&(id_b.clone(), "node-b".to_string()))));

    b.signal("STOP");
    let reply = delete(&a, &format!("/v1/sessions/{id_b}"));
    b.signal("CONT");
    assert_eq!(reply.status, 504, "{}", reply.text());
    assert_eq!(reply.error_code(), "cluster_timeout", "{}", reply.text());
    assert!(eventually(PATIENCE, || metric(
        &a,
        "transcribe_cluster_remote_timeouts_total",
        &[]
    ) == Some(1.0)));
}

#[test]
fn without_redis_admission_follows_the_fail_mode() {
    let mut redis = RedisServer::start();
    let bound = ["--cluster-max-sessions", "10"];
    let closed = start_node(
        &redis,
        "node-closed",
        &[bound[0], bound[1], "--cluster-fail-mode", "closed"],
    );
    let open = start_node(&redis, "node-open", &bound);
    let (mut live, _) = open_session(&closed);

    redis.kill();
    // `closed`: new streams get `overloaded` and close 1013 once the node
    // knows Redis is gone.
    let refused = eventually(PATIENCE, || {
        let mut ws = Ws::connect(&closed, "");
        let first = ws.next_json().expect("a first message");
        if first["type"] == "session_start" {
            return false;
        }
        assert_eq!(first["code"], "overloaded", "{first}");
        let (_, close) = ws.read_to_close();
        assert_eq!(close, Some(1013));
        true
    });
    assert!(refused, "fail mode closed kept admitting without Redis");
    // `open`: admitted anyway (the node's own limit still applies).
    for _ in 0..3 {
        let (_ws, _) = open_session(&open);
    }
    // The stream admitted before carries on.
    live.send_text(r#"{"type":"end"}"#);
    let (messages, close) = live.read_to_close();
    assert_eq!(
        messages.last().map(|message| &message["reason"]),
        Some(&Value::from("client_end"))
    );
    assert_eq!(close, Some(1000));
}

/// An `nginx` on a free loopback port in front of `upstreams`, killed on
/// drop: the HTTP load balancer of docs/DEPLOY.md (WebSocket upgrades
/// passed through, `least_conn`).
struct Nginx {
    child: std::process::Child,
    pub addr: std::net::SocketAddr,
    dir: std::path::PathBuf,
}

impl Nginx {
    /// # Panics
    /// If nginx is not installed (`scripts/setup.sh` installs it).
    fn start(upstreams: &[std::net::SocketAddr]) -> Nginx {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir().join(format!("cluster-nginx-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("nginx dir");
        let servers: String = upstreams
            .iter()
            .map(|addr| format!("    server {addr} max_fails=1 fail_timeout=2s;\n"))
            .collect();
        let config = format!(
            include_str!("nginx.conf.in"),
            dir = dir.display(),
            listen = format!("127.0.0.1:{port}"),
            servers = servers,
        );
        let config_path = dir.join("nginx.conf");
        std::fs::write(&config_path, config).expect("write nginx.conf");
        let binary = ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "nginx"]
            .into_iter()
            .find(|path| !path.starts_with('/') || std::path::Path::new(path).exists())
            .expect("a path");
        let child = std::process::Command::new(binary)
            .arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&config_path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot start nginx ({error}): run scripts/setup.sh (apt-get install nginx-light)")
            });
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
        let mut nginx = Nginx { child, addr, dir };
        if !eventually(PATIENCE, || std::net::TcpStream::connect(addr).is_ok()) {
            let log = std::fs::read_to_string(nginx.dir.join("error.log")).unwrap_or_default();
            let _ = nginx.child.kill();
            panic!("nginx did not listen on {addr}: {log}");
        }
        nginx
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn nginx_balances_streams_over_two_nodes() {
    const STREAMS: usize = 6;
    let redis = RedisServer::start();
    let a = start_node(&redis, "node-a", &[]);
    let b = start_node(&redis, "node-b", &[]);
    let nginx = Nginx::start(&[a.addr, b.addr]);
    let pcm = fixture_pcm("hello.wav");

    // Streams opened through the balancer land on both nodes.
    let mut streams: Vec<(Ws, String)> = (0..STREAMS)
        .map(|_| {
            let mut ws = Ws::connect_addr(nginx.addr, "");
            let started = ws.next_json().expect("session_start");
            assert_eq!(started["type"], "session_start", "{started}");
            let id = started["session_id"].as_str().expect("id").to_string();
            (ws, id)
        })
        .collect();
    let mut nodes_used = Vec::new();
    assert!(eventually(PATIENCE, || {
        let list = get(&a, "/v1/sessions?scope=cluster").json();
        let sessions = list["sessions"].as_array().cloned().unwrap_or_default();
        nodes_used = sessions
            .iter()
            .map(|session| session["node"].as_str().unwrap_or_default().to_string())
            .collect();
        sessions.len() == STREAMS
    }));
    for node in ["node-a", "node-b"] {
        assert!(nodes_used.iter().any(|used| used == node), "{nodes_used:?}");
    }

    // An operator delete through the balancer reaches the owner, whichever
    // node nginx picks for the request.
    let (mut doomed, doomed_id) = streams.pop().expect("a stream");
    let reply = ureq::delete(&format!("http://{}/v1/sessions/{doomed_id}", nginx.addr)).call();
    assert!(reply.is_ok_and(|reply| reply.status() == 200));
    let (messages, _) = doomed.read_to_close();
    assert!(messages
        .iter()
        .any(|message| message["type"] == "session_end" && message["reason"] == "terminated"));

    // Every other stream transcribes through the proxy to the end.
    for (ws, _) in &mut streams {
        ws.stream_audio(&pcm, 3_200);
        ws.send_text(r#"{"type":"end"}"#);
    }
    for (ws, id) in &mut streams {
        let (messages, close) = ws.read_to_close();
        assert_eq!(close, Some(1000), "{id}: {messages:#?}");
        let end = messages.last().expect("session_end");
        assert_eq!(end["reason"], "client_end", "{end}");
        assert_eq!(end["metrics"]["audio_bytes"], pcm.len() as u64);
    }
}

/// Nodes do not proxy streams: a resume that reaches a node not owning the
/// session is refused with `session_on_other_node`, naming the owner and
/// its URL; the owner resumes it.
#[test]
fn a_resume_on_another_node_names_the_owner() {
    let redis = RedisServer::start();
    let a = start_node(&redis, "node-a", &["--resume-window-seconds", "60"]);
    let b = start_node(&redis, "node-b", &["--resume-window-seconds", "60"]);
    let mut ws = Ws::connect(&a, "");
    let started = ws.next_json().expect("session_start");
    let id = started["session_id"].as_str().expect("id").to_string();
    let token = started["resume_token"].as_str().expect("token").to_string();
    assert!(eventually(PATIENCE, || get(
        &b,
        &format!("/v1/sessions/{id}")
    )
    .status
        == 200));
    socket2::SockRef::from(ws.socket.get_ref())
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
    drop(ws);
    assert!(eventually(PATIENCE, || get(
        &a,
        &format!("/v1/sessions/{id}")
    )
    .json()["detached"]
        == true));
    let query = format!("resume={id}&token={token}");
    let (messages, close) = Ws::connect(&b, &query).read_to_close();
    assert_eq!(close, Some(1008), "{messages:#?}");
    assert_eq!(messages[0]["code"], "session_on_other_node");
    let message = messages[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("node-a") && message.contains("http://node-a.test"),
        "{message}"
    );
    let mut ws = Ws::connect(&a, &query);
    let resumed = ws.next_json().expect("session_resumed");
    assert_eq!(resumed["type"], "session_resumed", "{resumed}");
    assert_eq!(resumed["session_id"], id.as_str());
}
