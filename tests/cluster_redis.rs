//! The cluster layer against a real `redis-server` (started per test on a
//! free port, killed on drop), with two or three agents in one process
//! standing for nodes. The tests fail, loudly, if `redis-server` is not
//! installed.
//!
//! Index:
//! - registry: `registry_lists_every_nodes_sessions_and_nodes`,
//!   `cluster_metrics_sum_the_nodes`
//! - remote deletes: `delete_reaches_the_owner_wherever_it_lives`,
//!   `delete_times_out_when_the_owner_does_not_answer`
//! - admission: `concurrent_admission_never_exceeds_and_exactly_reaches_the_limit`,
//!   `returned_leases_are_reusable`, `unbounded_cluster_admits_without_leases`,
//!   `a_refusal_at_the_limit_takes_back_other_nodes_idle_pooled_leases`
//! - dead nodes: `dead_node_vanishes_with_its_sessions_and_its_leases`
//! - Redis faults: `redis_restart_rebuilds_the_registry_and_resumes_admission`,
//!   `agent_started_before_redis_connects_when_it_arrives`
//! - measurement: `admission_latency_local_pool_vs_redis_round_trip`

mod cluster_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use cluster_support::{
    block_on, record, settings, start_agent, wait_until, FakeServer, RedisServer, HEARTBEAT,
    PATIENCE, REMOTE_TIMEOUT,
};
use serde_json::json;
use transcription_service::cluster::{
    Admit, ClusterAgent, ClusterError, DeleteOutcome, FailMode, LeaseGuard,
};

fn ids(sessions: &[transcription_service::cluster::SessionRecord]) -> Vec<(String, String)> {
    let mut ids: Vec<_> = sessions
        .iter()
        .map(|record| (record.session_id.clone(), record.node.clone()))
        .collect();
    ids.sort();
    ids
}

fn pair(session: &str, node: &str) -> (String, String) {
    (session.to_string(), node.to_string())
}

#[test]
fn registry_lists_every_nodes_sessions_and_nodes() {
    let redis = RedisServer::start();
    let a = start_agent(settings(&redis, "node-a"));
    let b = start_agent(settings(&redis, "node-b"));
    let (handle_a, handle_b) = (a.handle(), b.handle());
    handle_a.session_opened(record("s1", 0));
    handle_a.session_opened(record("s2", 1));
    handle_b.session_opened(record("s3", 0));

    // B sees A's sessions once A has flushed (within 50 ms).
    let mut listed = Vec::new();
    assert!(wait_until(PATIENCE, || {
        listed = block_on(handle_b.list_sessions()).expect("list");
        listed.len() == 3
    }));
    assert_eq!(
        ids(&listed),
        [
            pair("s1", "node-a"),
            pair("s2", "node-a"),
            pair("s3", "node-b")
        ]
    );
    let s2 = block_on(handle_b.get_session("s2"))
        .expect("get")
        .expect("s2 exists");
    assert_eq!((s2.node.as_str(), s2.core), ("node-a", 1));
    assert_eq!(block_on(handle_b.get_session("nope")), Ok(None));
    assert_eq!(block_on(handle_b.get_session("bad id\n")), Ok(None));

    // Updates replace the record; a closed session leaves the registry.
    let mut updated = record("s1", 0);
    updated.state = "closing".into();
    updated.chunks = 42;
    handle_a.session_updated(updated);
    handle_a.session_closed("s2");
    assert!(wait_until(PATIENCE, || {
        let listed = block_on(handle_b.list_sessions()).expect("list");
        listed.len() == 2
            && listed
                .iter()
                .any(|r| r.session_id == "s1" && r.chunks == 42)
    }));
    let s1 = block_on(handle_b.get_session("s1"))
        .expect("get")
        .expect("s1");
    assert_eq!(s1.state, "closing");
    // An update for a closed session does not bring it back. The agent
    // takes updates in order from one queue, so once a later update of s1
    // is visible from node B, the one for s2 has been handled and written.
    handle_a.session_updated(record("s2", 1));
    let mut later = record("s1", 0);
    later.chunks = 43;
    handle_a.session_updated(later);
    assert!(wait_until(PATIENCE, || {
        block_on(handle_b.get_session("s1")).is_ok_and(|s1| s1.is_some_and(|s1| s1.chunks == 43))
    }));
    assert_eq!(block_on(handle_a.get_session("s2")), Ok(None));
    assert_eq!(block_on(handle_b.get_session("s2")), Ok(None));

    let nodes = block_on(handle_a.nodes()).expect("nodes");
    let summary: Vec<_> = nodes
        .iter()
        .map(|n| {
            (
                n.node_id.as_str(),
                n.url.as_str(),
                n.healthy,
                n.active_sessions,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("node-a", "http://node-a", true, 1),
            ("node-b", "http://node-b", true, 1)
        ]
    );
    assert!(nodes[0].last_heartbeat_at.ends_with('Z'));

    // Draining shows as unhealthy; a clean shutdown removes the node at once.
    handle_b.set_healthy(false);
    assert!(wait_until(PATIENCE, || {
        let nodes = block_on(handle_a.nodes()).expect("nodes");
        nodes.iter().any(|n| n.node_id == "node-b" && !n.healthy)
    }));
    b.shutdown();
    let nodes = block_on(handle_a.nodes()).expect("nodes");
    assert_eq!(nodes.len(), 1);
    let listed = block_on(handle_a.list_sessions()).expect("list");
    assert_eq!(ids(&listed), [pair("s1", "node-a")]);
    drop(a);
}

#[test]
fn cluster_metrics_sum_the_nodes() {
    let redis = RedisServer::start();
    let a = start_agent(settings(&redis, "node-a"));
    let b = start_agent(settings(&redis, "node-b"));
    a.handle()
        .publish_metrics(json!({"active_sessions": 2, "total_created": 10,
        "latency_ms": {"final": {"p99": 4.0}}}));
    b.handle()
        .publish_metrics(json!({"active_sessions": 3, "total_created": 5,
        "latency_ms": {"final": {"p99": 7.5}}}));
    let expected = json!({"active_sessions": 5, "total_created": 15,
        "latency_ms": {"final": {"p99": 7.5}}});
    let mut last = None;
    assert!(
        wait_until(PATIENCE, || {
            let metrics = block_on(a.handle().cluster_metrics()).expect("metrics");
            let done = metrics.total == expected && metrics.nodes.len() == 2;
            last = Some(metrics);
            done
        }),
        "{last:?}"
    );
}

#[test]
fn delete_reaches_the_owner_wherever_it_lives() {
    let redis = RedisServer::start();
    let mut a = start_agent(settings(&redis, "node-a"));
    let mut b = start_agent(settings(&redis, "node-b"));
    let server_a = FakeServer::start(&mut a, true);
    let _server_b = FakeServer::start(&mut b, true);
    let (handle_a, handle_b) = (a.handle(), b.handle());
    server_a.open(&handle_a, "s1");
    server_a.open(&handle_a, "s2");
    assert!(wait_until(PATIENCE, || {
        block_on(handle_b.list_sessions()).is_ok_and(|listed| listed.len() == 2)
    }));

    // From another node: delivered to the owner, closed, confirmed.
    assert_eq!(
        block_on(handle_b.delete_session("s1")),
        Ok(DeleteOutcome::Deleted)
    );
    assert!(!server_a.sessions.lock().expect("lock").contains("s1"));
    let listed = block_on(handle_b.list_sessions()).expect("list");
    assert_eq!(ids(&listed), [pair("s2", "node-a")]);
    // Again: nobody has it any more.
    assert_eq!(
        block_on(handle_b.delete_session("s1")),
        Ok(DeleteOutcome::NotFound)
    );
    assert_eq!(
        block_on(handle_b.delete_session("never")),
        Ok(DeleteOutcome::NotFound)
    );
    assert_eq!(
        block_on(handle_b.delete_session("")),
        Ok(DeleteOutcome::NotFound)
    );
    // From the owner itself: no Redis round trip needed, same answer.
    assert_eq!(
        block_on(handle_a.delete_session("s2")),
        Ok(DeleteOutcome::Deleted)
    );
    assert!(wait_until(PATIENCE, || {
        block_on(handle_b.list_sessions()).is_ok_and(|listed| listed.is_empty())
    }));

    // A session the registry holds but the owner's server does not know:
    // the owner answers not found and the registry forgets it.
    handle_a.session_opened(record("ghost", 0));
    assert!(wait_until(PATIENCE, || {
        block_on(handle_b.get_session("ghost")).is_ok_and(|found| found.is_some())
    }));
    assert_eq!(
        block_on(handle_b.delete_session("ghost")),
        Ok(DeleteOutcome::NotFound)
    );
    assert!(wait_until(PATIENCE, || {
        block_on(handle_b.get_session("ghost")) == Ok(None)
    }));
    drop((a, b));
}

#[test]
fn delete_times_out_when_the_owner_does_not_answer() {
    let redis = RedisServer::start();
    let mut a = start_agent(settings(&redis, "node-a"));
    let b = start_agent(settings(&redis, "node-b"));
    let _silent = FakeServer::start(&mut a, false);
    a.handle().session_opened(record("s1", 0));
    assert!(wait_until(PATIENCE, || {
        block_on(b.handle().get_session("s1")).is_ok_and(|found| found.is_some())
    }));
    let started = Instant::now();
    assert_eq!(
        block_on(b.handle().delete_session("s1")),
        Err(ClusterError::Timeout)
    );
    // It waited for the owner the whole timeout (a lower bound: load can
    // only make the wait longer; how much longer is not the behaviour).
    let waited = started.elapsed();
    assert!(waited >= REMOTE_TIMEOUT, "answered after {waited:?}");
    assert_eq!(b.handle().stats().remote_timeouts, 1);

    // An owner that is registered but not listening (killed: its keys live
    // until the TTL) cannot answer: timeout at once. Asked from a node whose
    // remote timeout is six times block_on's patience, the answer arrives
    // within that patience only if the agent did not wait for the owner.
    a.abandon();
    let mut patient = settings(&redis, "node-c");
    patient.remote_timeout = PATIENCE * 6;
    let c = start_agent(patient);
    assert_eq!(
        block_on(c.handle().delete_session("s1")),
        Err(ClusterError::Timeout)
    );
    assert_eq!(c.handle().stats().remote_timeouts, 1);
}

/// Admits on `agent` from `threads` threads until each is refused once;
/// returns the guards. `live` counts guards across all nodes (incremented
/// after a grant, so it never overstates) and `peak` keeps its maximum.
fn admit_until_refused(
    agent: &ClusterAgent,
    threads: usize,
    start: Arc<Barrier>,
    live: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
) -> Vec<thread::JoinHandle<Vec<LeaseGuard>>> {
    (0..threads)
        .map(|_| {
            let admission = agent.admission();
            let (start, live, peak) = (Arc::clone(&start), Arc::clone(&live), Arc::clone(&peak));
            thread::spawn(move || {
                start.wait();
                let mut guards = Vec::new();
                loop {
                    match block_on(admission.admit()) {
                        Admit::Granted(guard) => {
                            guards.push(guard);
                            let now = live.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(now, Ordering::SeqCst);
                        }
                        Admit::Refused => return guards,
                        Admit::Unavailable => {
                            panic!("Redis is up: admission cannot be unavailable")
                        }
                    }
                }
            })
        })
        .collect()
}

#[test]
fn concurrent_admission_never_exceeds_and_exactly_reaches_the_limit() {
    const LIMIT: usize = 25;
    let redis = RedisServer::start();
    let agents: Vec<ClusterAgent> = ["node-a", "node-b", "node-c"]
        .iter()
        .map(|id| {
            let mut settings = settings(&redis, id);
            settings.cluster_max_sessions = Some(LIMIT);
            settings.lease_block = 4;
            start_agent(settings)
        })
        .collect();
    let live = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));

    // Phase 1: 3 nodes × 3 threads race to the limit.
    let start = Arc::new(Barrier::new(9));
    let workers: Vec<_> = agents
        .iter()
        .flat_map(|agent| {
            admit_until_refused(
                agent,
                3,
                Arc::clone(&start),
                Arc::clone(&live),
                Arc::clone(&peak),
            )
        })
        .collect();
    let mut guards: Vec<LeaseGuard> = workers
        .into_iter()
        .flat_map(|worker| worker.join().expect("admission thread"))
        .collect();
    assert_eq!(
        guards.len(),
        LIMIT,
        "the cluster must admit exactly its limit"
    );
    assert_eq!(peak.load(Ordering::SeqCst), LIMIT);
    assert_eq!(redis.live_leases("ts:"), LIMIT);
    let in_use: u32 = agents
        .iter()
        .map(|agent| agent.admission().snapshot().in_use)
        .sum();
    let held: u32 = agents
        .iter()
        .map(|agent| agent.admission().snapshot().held)
        .sum();
    assert_eq!((in_use as usize, held as usize), (LIMIT, LIMIT));
    for agent in &agents {
        assert!(matches!(
            block_on(agent.admission().admit()),
            Admit::Refused
        ));
    }

    // Phase 2: churn. Threads drop and re-admit for a second; the live
    // count and the leases in Redis never pass the limit.
    guards.truncate(10);
    live.store(10, Ordering::SeqCst);
    peak.store(0, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(1);
    let churners: Vec<_> = agents
        .iter()
        .flat_map(|agent| {
            (0..2).map(|_| {
                let admission = agent.admission();
                let (live, peak) = (Arc::clone(&live), Arc::clone(&peak));
                thread::spawn(move || {
                    let mut kept: Vec<LeaseGuard> = Vec::new();
                    let mut granted = 0_usize;
                    while Instant::now() < deadline {
                        if let Admit::Granted(guard) = block_on(admission.admit()) {
                            let now = live.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(now, Ordering::SeqCst);
                            kept.push(guard);
                            granted += 1;
                        }
                        if kept.len() > 3 || (granted % 2 == 0 && !kept.is_empty()) {
                            live.fetch_sub(1, Ordering::SeqCst);
                            kept.pop();
                        }
                    }
                    live.fetch_sub(kept.len(), Ordering::SeqCst);
                    granted
                })
            })
        })
        .collect();
    let mut leases_max = 0;
    while Instant::now() < deadline {
        leases_max = leases_max.max(redis.live_leases("ts:"));
        thread::sleep(Duration::from_millis(5));
    }
    let granted: usize = churners
        .into_iter()
        .map(|c| c.join().expect("churner"))
        .sum();
    // Churn happened (how much of it fits in a second is speed, not asserted).
    assert!(granted > 0, "churn granted nothing");
    assert!(
        peak.load(Ordering::SeqCst) <= LIMIT,
        "peak {}",
        peak.load(Ordering::SeqCst)
    );
    assert!(leases_max <= LIMIT, "{leases_max} live leases");
    drop(guards);
}

/// An agent of a cluster limited to 10 sessions, pre-reserving 2 at a time.
fn small_limit_agent(redis: &RedisServer, id: &str) -> ClusterAgent {
    let mut settings = settings(redis, id);
    settings.cluster_max_sessions = Some(10);
    settings.lease_block = 2;
    start_agent(settings)
}

#[test]
fn returned_leases_are_reusable() {
    let redis = RedisServer::start();
    let (a, b) = (
        small_limit_agent(&redis, "node-a"),
        small_limit_agent(&redis, "node-b"),
    );
    // Both pools pre-reserve 2; A takes everything it can get.
    assert!(wait_until(PATIENCE, || {
        a.admission().snapshot().held == 2 && b.admission().snapshot().held == 2
    }));
    let mut taken_by_a = Vec::new();
    while let Admit::Granted(guard) = block_on(a.admission().admit()) {
        taken_by_a.push(guard);
    }
    let b_pool = b.admission().snapshot().held as usize;
    assert_eq!(taken_by_a.len() + b_pool, 10);
    let mut taken_by_b: Vec<LeaseGuard> = (0..b_pool)
        .filter_map(|_| match b.admission().try_admit() {
            Admit::Granted(guard) => Some(guard),
            _ => None,
        })
        .collect();
    assert_eq!(taken_by_b.len(), b_pool);
    assert!(matches!(block_on(b.admission().admit()), Admit::Refused));

    // A's sessions end: A keeps its block (2) and gives the rest back.
    let a_count = taken_by_a.len();
    taken_by_a.clear();
    assert!(wait_until(PATIENCE, || a.admission().snapshot().held == 2));
    assert_eq!(redis.live_leases("ts:"), b_pool + 2);
    // B admits until the cluster is full: at the limit it asks A for its
    // two idle pooled leases too, so B gets every slot.
    while let Admit::Granted(guard) = block_on(b.admission().admit()) {
        taken_by_b.push(guard);
    }
    assert_eq!(taken_by_b.len(), b_pool + a_count);
    assert_eq!(a.admission().snapshot().held, 0);
    assert!(matches!(block_on(a.admission().admit()), Admit::Refused));

    // B's sessions end; a clean shutdown gives everything back at once.
    taken_by_b.clear();
    b.shutdown();
    assert_eq!(
        redis.live_leases("ts:"),
        a.admission().snapshot().held as usize
    );
    assert!(block_on(a.admission().admit()).is_granted());
}

/// A small cluster limit does not starve a node: limit 4, three nodes, the
/// first holding all four leases in its idle pool. Four sessions placed on
/// a node with no pooled lease are all admitted: the refusal at the limit
/// asks the other nodes to give their free pooled leases back, and they
/// refill their pools only on demand afterwards. (Before, every one of the
/// four was refused while four slots sat unused in the first node's pool.)
#[test]
fn a_refusal_at_the_limit_takes_back_other_nodes_idle_pooled_leases() {
    let redis = RedisServer::start();
    let limited = |id: &str| {
        let mut settings = settings(&redis, id);
        settings.cluster_max_sessions = Some(4);
        start_agent(settings)
    };
    let a = limited("node-a");
    assert!(wait_until(PATIENCE, || a.admission().snapshot().held == 4));
    let (b, c) = (limited("node-b"), limited("node-c"));
    assert_eq!(b.admission().snapshot().held, 0);
    assert_eq!(c.admission().snapshot().held, 0);
    let guards: Vec<Admit> = (0..4).map(|_| block_on(b.admission().admit())).collect();
    assert!(guards.iter().all(Admit::is_granted), "{guards:?}");
    assert_eq!(redis.live_leases("ts:"), 4);
    // The limit still holds everywhere.
    for node in [&a, &b, &c] {
        assert!(matches!(block_on(node.admission().admit()), Admit::Refused));
    }
    assert!(redis.live_leases("ts:") <= 4);
    drop(guards);
}

#[test]
fn unbounded_cluster_admits_without_leases() {
    let redis = RedisServer::start();
    let a = start_agent(settings(&redis, "node-a"));
    let guards: Vec<Admit> = (0..100).map(|_| a.admission().try_admit()).collect();
    assert!(guards.iter().all(Admit::is_granted));
    assert_eq!(a.admission().snapshot().in_use, 100);
    assert_eq!(redis.live_leases("ts:"), 0);
}

#[test]
fn dead_node_vanishes_with_its_sessions_and_its_leases() {
    let redis = RedisServer::start();
    let (a, b) = (
        small_limit_agent(&redis, "node-a"),
        small_limit_agent(&redis, "node-b"),
    );
    let mut kept = Vec::new();
    for index in 0..6 {
        match block_on(a.admission().admit()) {
            Admit::Granted(guard) => kept.push(guard),
            other => panic!("admission {index}: {other:?}"),
        }
        a.handle().session_opened(record(&format!("a{index}"), 0));
    }
    assert!(wait_until(PATIENCE, || {
        block_on(b.handle().list_sessions()).is_ok_and(|listed| listed.len() == 6)
    }));
    let mut b_guards = Vec::new();
    while let Admit::Granted(guard) = block_on(b.admission().admit()) {
        b_guards.push(guard);
    }
    let a_held = a.admission().snapshot().held as usize;
    assert_eq!(b_guards.len() + a_held, 10);

    // A dies without a word: its leases, node and sessions stay until the TTL.
    a.abandon();
    assert_eq!(redis.live_leases("ts:"), 10);
    assert!(wait_until(PATIENCE, || {
        block_on(b.handle().nodes()).is_ok_and(|nodes| nodes.len() == 1)
            && block_on(b.handle().list_sessions()).is_ok_and(|listed| listed.is_empty())
    }));
    // Its slots are free again for the living (its leases were renewed
    // just after its node hash: allow them that moment more).
    assert!(wait_until(PATIENCE, || {
        while let Admit::Granted(guard) = block_on(b.admission().admit()) {
            b_guards.push(guard);
        }
        b_guards.len() == 10
    }));
    assert_eq!(redis.live_leases("ts:"), 10);
    drop(kept);
}

#[test]
fn redis_restart_rebuilds_the_registry_and_resumes_admission() {
    let mut redis = RedisServer::start();
    let node = |id: &str, fail_mode: FailMode| {
        let mut settings = settings(&redis, id);
        settings.cluster_max_sessions = Some(10);
        settings.lease_block = 2;
        settings.fail_mode = fail_mode;
        start_agent(settings)
    };
    let (mut a, mut b) = (
        node("node-open", FailMode::Open),
        node("node-closed", FailMode::Closed),
    );
    let (server_a, server_b) = (
        FakeServer::start(&mut a, true),
        FakeServer::start(&mut b, true),
    );
    let (handle_a, handle_b) = (a.handle(), b.handle());
    let mut guards = Vec::new();
    for (index, (agent, server)) in [(&a, &server_a), (&a, &server_a), (&b, &server_b)]
        .into_iter()
        .enumerate()
    {
        guards.push(block_on(agent.admission().admit()));
        server.open(&agent.handle(), &format!("s{index}"));
    }
    assert!(guards.iter().all(Admit::is_granted));
    assert!(wait_until(PATIENCE, || {
        block_on(handle_b.list_sessions()).is_ok_and(|listed| listed.len() == 3)
    }));

    redis.kill();
    assert!(wait_until(PATIENCE, || !handle_a.is_available()
        && !handle_b.is_available()));
    // Cluster views are unavailable; local sessions are still known.
    assert_eq!(
        block_on(handle_a.list_sessions()),
        Err(ClusterError::Unavailable)
    );
    assert_eq!(block_on(handle_b.nodes()), Err(ClusterError::Unavailable));
    assert_eq!(
        block_on(handle_b.delete_session("s0")),
        Err(ClusterError::Unavailable)
    );
    assert!(block_on(handle_a.get_session("s0")).is_ok_and(|found| found.is_some()));
    // Fail open admits (beyond its pool), fail closed refuses.
    for _ in 0..3 {
        guards.push(a.admission().try_admit());
    }
    assert!(guards.iter().all(Admit::is_granted));
    assert!(matches!(b.admission().try_admit(), Admit::Unavailable));
    assert!(matches!(
        block_on(b.admission().admit()),
        Admit::Unavailable
    ));
    // Sessions opened meanwhile are registered when Redis is back.
    handle_a.session_opened(record("during-outage", 0));
    thread::sleep(HEARTBEAT * 3);

    redis.restart();
    assert!(wait_until(PATIENCE, || handle_a.is_available()
        && handle_b.is_available()));
    let mut listed = Vec::new();
    assert!(wait_until(PATIENCE, || {
        listed = block_on(handle_b.list_sessions()).unwrap_or_default();
        listed.len() == 4
    }));
    assert_eq!(
        ids(&listed),
        [
            pair("during-outage", "node-open"),
            pair("s0", "node-open"),
            pair("s1", "node-open"),
            pair("s2", "node-closed")
        ]
    );
    assert_eq!(block_on(handle_a.nodes()).map(|nodes| nodes.len()), Ok(2));
    // Leases are back in Redis, including cover for the 3 sessions A
    // admitted while Redis was down.
    assert!(wait_until(PATIENCE, || {
        let (sa, sb) = (a.admission().snapshot(), b.admission().snapshot());
        sa.in_use <= sa.held
            && sb.in_use <= sb.held
            && redis.live_leases("ts:") == (sa.held + sb.held) as usize
    }));
    assert!(a.handle().stats().reconnects >= 2);
    // The listeners subscribed again: a delete crosses nodes as before.
    assert!(wait_until(PATIENCE, || a.is_listening() && b.is_listening()));
    assert_eq!(
        block_on(handle_a.delete_session("s2")),
        Ok(DeleteOutcome::Deleted)
    );
    assert_eq!(
        block_on(handle_b.delete_session("s0")),
        Ok(DeleteOutcome::Deleted)
    );
    // Admission resumes (on the closed node too) and the bound holds.
    while let Admit::Granted(guard) = block_on(b.admission().admit()) {
        guards.push(Admit::Granted(guard));
    }
    while let Admit::Granted(guard) = block_on(a.admission().admit()) {
        guards.push(Admit::Granted(guard));
    }
    assert_eq!(guards.len(), 10);
    assert_eq!(redis.live_leases("ts:"), 10);
}

#[test]
fn agent_started_before_redis_connects_when_it_arrives() {
    let mut redis = RedisServer::start();
    redis.kill();
    let mut settings = settings(&redis, "early");
    settings.cluster_max_sessions = Some(5);
    settings.fail_mode = FailMode::Closed;
    let agent = ClusterAgent::start(settings).expect("starts without Redis");
    let handle = agent.handle();
    thread::sleep(Duration::from_millis(200));
    assert!(!handle.is_available());
    assert!(matches!(agent.admission().try_admit(), Admit::Unavailable));
    assert_eq!(block_on(handle.nodes()), Err(ClusterError::Unavailable));
    handle.session_opened(record("early-1", 0));

    redis.restart();
    // The backoff is capped at 2 s.
    assert!(wait_until(Duration::from_secs(5), || handle.is_available()));
    assert!(block_on(agent.admission().admit()).is_granted());
    let listed = block_on(handle.list_sessions()).expect("list");
    assert_eq!(ids(&listed), [pair("early-1", "early")]);
}
