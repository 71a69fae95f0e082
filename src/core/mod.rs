//! The core layer: the state one pinned core owns, and the operations that
//! span cores. It sits under the handlers and the streaming connections
//! (both use it) and over the engines, the metrics and the cluster client;
//! it imports no handler and no connection type. The thread that runs a
//! core (runtime, accept loop, background tasks) is wiring and lives in
//! `server/`.
//!
//! - [`context`]: [`CoreContext`] (the shard of sessions, the drain latch,
//!   the local metrics), the [`CoreCommand`] inbox, [`IoDriver`].
//! - [`shared`]: [`ServerShared`], what every thread of the node reads.
//! - [`permit`]: the node's session limits and the permit a session holds.
//! - [`session_info`]: [`SessionInfo`], the operator's view of a session.
//! - [`cross_core`]: list, terminate and sum up sessions across every core.
//! - [`task`]: the boundary of a core's tasks (stalls and panics counted).

pub mod context;
pub mod cross_core;
pub mod permit;
pub mod session_info;
pub mod shared;
pub mod task;

pub use context::{CoreCommand, CoreContext, CoreInbox, IoDriver, ResumeLookup, ShardSession};
pub use session_info::SessionInfo;
pub use shared::{ClusterShared, ServerShared};
