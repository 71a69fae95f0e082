//! Cluster admission cost: a lease from the node's local pool against a round
//! trip through the cluster agent and Redis. This comparison used to be a
//! test (`admission_latency_local_pool_vs_redis_round_trip` in
//! `tests/cluster_redis.rs`) asserting that the local path is faster; speed
//! is measured here instead, where a loaded machine cannot fail the suite.
//!
//! - `cluster_admission/local_pool`: `try_admit()` granted from the pool of
//!   leases the agent keeps on the node, and the guard dropped (given back).
//! - `cluster_admission/agent_query`: one `get_session` for an absent id:
//!   channel to the agent, one `HGET`, and the oneshot back.
//! - `cluster_admission/redis_ping`: a bare `PING` on a direct connection,
//!   the floor under any Redis round trip.
//!
//! Needs `redis-server` on PATH (started on a free port, killed at the end),
//! like the cluster tests. Run with `cargo bench --bench cluster_admission`.

use criterion::{criterion_group, criterion_main, Criterion};

#[path = "../tests/cluster_support/mod.rs"]
#[allow(dead_code)]
mod cluster_support;

use cluster_support::{block_on, settings, start_agent, wait_until, RedisServer, PATIENCE};

fn bench_cluster_admission(c: &mut Criterion) {
    let redis = RedisServer::start();
    let mut settings = settings(&redis, "bench");
    settings.cluster_max_sessions = Some(1_000_000);
    let agent = start_agent(settings);
    let (admission, handle) = (agent.admission(), agent.handle());
    assert!(
        wait_until(PATIENCE, || admission.snapshot().held >= 1),
        "the agent never pooled a lease"
    );
    let mut connection = redis.connection();

    let mut group = c.benchmark_group("cluster_admission");
    group.bench_function("local_pool", |b| {
        b.iter(|| {
            let admit = admission.try_admit();
            assert!(admit.is_granted());
            drop(admit);
        });
    });
    group.bench_function("agent_query", |b| {
        b.iter(|| {
            let found = block_on(handle.get_session("absent"));
            assert_eq!(found, Ok(None));
        });
    });
    group.bench_function("redis_ping", |b| {
        b.iter(|| {
            let pong: String = redis::cmd("PING").query(&mut connection).expect("PING");
            pong
        });
    });
    group.finish();
    drop(agent);
}

criterion_group!(benches, bench_cluster_admission);
criterion_main!(benches);
