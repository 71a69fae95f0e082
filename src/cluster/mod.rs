//! Cluster mode: several nodes sharing one Redis (API.md, "Cluster mode").
//!
//! The layer is tested against a real `redis-server` on its own
//! (`tests/cluster_redis.rs`) and inside real servers
//! (`tests/integration/cluster.rs`). The server wires it in `src/server`
//! (start, shutdown, the `cluster-remote` thread that passes remote deletes
//! to a core), `src/ws/conn.rs` (admission, opens and closes), `src/core`
//! (periodic updates and metrics) and `src/api/sessions.rs`,
//! `src/api/cluster.rs` (the `?scope=cluster` endpoints and
//! `/v1/cluster/nodes`).
//!
//! Off unless `redis_url` is set; then the server starts one
//! [`ClusterAgent`] and nothing else changes on the single-node path. The
//! cores never touch Redis: they talk to the agent through channels and
//! never wait on it.
//!
//! # Threads and what crosses them
//!
//! ```text
//! core ──ClusterHandle──► urgent queue (bounded) ──┐
//! core ──ClusterHandle──► lossy queue (bounded) ───┼─► agent thread ◄──► Redis (connection 1)
//! core ──ClusterAdmission: one CAS on the pool ────┘        │   ▲
//!                                                           │   └── listener thread ◄── Redis pub/sub (connection 2)
//! server ◄── RemoteCommand (bounded) ◄──────────────────────┘
//! ```
//!
//! - **[`ClusterHandle`]** (`Clone + Send + Sync`): registry updates
//!   (`session_opened`, `session_updated`, `session_closed`,
//!   `publish_metrics`, `set_healthy`) and operator queries
//!   (`list_sessions`, `get_session`, `delete_session`, `nodes`,
//!   `cluster_metrics`), each answered through a [`ClusterReply`] future
//!   (a oneshot underneath, so a monoio core can await it). Updates are
//!   lossy (dropped and counted when their queue is full); opens, closes,
//!   queries and admission go through the urgent queue, and a query that
//!   finds it full resolves to `Unavailable` at once.
//! - **[`ClusterAdmission`]**: `try_admit`/`admit` against a local pool of
//!   leases pre-reserved in Redis. The common path is one compare-and-swap
//!   on an `AtomicU64`; only an empty pool costs a round trip through the
//!   agent (batched with every other waiting request into one script call).
//! - **[`RemoteCommand`]**: deletes for this node's sessions, from another
//!   node or from an operator on this node; the server closes the session
//!   on its core and calls [`RemoteReply::confirm`].
//!
//! # Redis keys (prefix `ts:` by default)
//!
//! | key | type | holds | TTL |
//! |---|---|---|---|
//! | `ts:nodes` | sorted set | node ids, scored by last heartbeat (Unix ms) | none; readers drop ids whose node hash expired, heartbeats trim ids older than 6 TTLs |
//! | `ts:node:{node}` | hash | `node_id`, `url`, `healthy` (0/1), `active_sessions`, `started_ms`, `heartbeat_ms`, `metrics` (JSON) | `ttl` |
//! | `ts:node-sessions:{node}` | set | the node's session ids | `ttl` |
//! | `ts:session:{session}` | hash | `node`, `state`, `updated_ms`, `record` (the [`SessionRecord`] as JSON) | `ttl` |
//! | `ts:leases` | sorted set | admission leases, member `{node}:{incarnation}:{seq}`, score = expiry in Unix ms of the Redis clock | per member (score) |
//! | `ts:node-inbox:{node}` | pub/sub channel | [`InboxMessage`] JSON: `delete` requests and `delete_reply` answers | — |
//!
//! Each kind of key has its own word after the prefix, so no id can make
//! two kinds collide. All writes of one flush or heartbeat are one
//! `MULTI`/`EXEC` pipeline: node hash, nodes set, session hashes, and the
//! session index (rebuilt whole on every heartbeat).
//!
//! # Timings (defaults in [`settings`])
//!
//! - Heartbeat every 2 s: the node hash, every session hash and the index
//!   are written again with their TTL (one transaction, about 0.3 KB per
//!   session), and the node's leases are renewed (one script call per
//!   1,024 leases).
//! - TTL 10 s: a node killed with SIGKILL disappears with its sessions and
//!   its leases at most TTL + one heartbeat = 12 s after its last write
//!   (≤ 15 s). Its lease slots become free for every other node then.
//! - Session changes are written within 50 ms (batched), and before any
//!   query made on the same node.
//! - A remote delete waits up to 2 s for the owner, then `Timeout` (504).
//!   An owner that is registered but not subscribed answers `Timeout` at once.
//! - Every Redis call has a 1 s connect/read/write timeout; reconnects back
//!   off from 50 ms, doubling, up to 2 s.
//!
//! # Admission
//!
//! Two Lua scripts (in `leases.rs`) change `ts:leases` atomically. Both
//! first delete expired leases, then grant only while the live count is
//! below `cluster_max_sessions`, so the sum over nodes never exceeds it
//! however the nodes interleave. A node keeps about `lease_block` free
//! leases in its pool (refilled when fewer than half remain, excess above
//! twice the block given back), renews all of its leases every heartbeat,
//! and gives all back on a clean shutdown. A lease is named after the
//! node and a random incarnation, so a restarted node never confuses its
//! leases with its previous life's.
//!
//! Because free leases sit in pools, a node can be refused while up to
//! `2 × lease_block` slots per other node are idle in their pools; keep
//! `lease_block` small next to `cluster_max_sessions`.
//!
//! # When Redis fails
//!
//! Any failed call drops the connection: [`ClusterHandle::is_available`]
//! turns false, cluster queries answer `Unavailable` (503
//! `cluster_unavailable`; `get_session`/`delete_session` of this node's own
//! sessions still work from the agent's memory), and admission follows
//! `cluster_fail_mode`: `open` grants (the node's own `max_sessions`
//! still applies), `closed` answers `Unavailable` (the server answers
//! `overloaded`). Sessions on the node carry on untouched. The agent
//! reconnects with backoff; on success it writes every session again,
//! renews (or retakes, if Redis lost them) its leases, acquires leases for
//! sessions admitted while Redis was down as room allows, and only then
//! reports itself available. Nothing in this module panics on a Redis
//! answer or waits on a core.

pub mod settings;

mod keys;
mod record;

mod admission;
mod handle;

mod leases;
mod registry;

mod agent;
mod link;
mod listener;

pub use admission::{AdmissionSnapshot, Admit, AdmitFuture, ClusterAdmission, LeaseGuard};
pub use agent::{ClusterAgent, StartError};
pub use handle::{ClusterHandle, ClusterReply, ClusterStats, RemoteCommand, RemoteReply};
pub use keys::Keys;
pub use record::{
    merge_metrics, ClusterError, ClusterMetrics, DeleteOutcome, EngineNodeFigures, InboxMessage,
    NodeMetrics, NodeRecord, SessionRecord,
};
pub use settings::{
    default_advertise_url, default_node_id, ClusterSettings, FailMode, SettingsError,
};
