//! `GET /v1/cluster/nodes`: every live node of the cluster as the registry
//! sees it (cluster mode only; `503 cluster_unavailable` otherwise).

use serde::Serialize;

use crate::cluster::NodeRecord;
use crate::core::CoreContext;
use crate::error::ApiError;
use crate::http::Response;

#[derive(Serialize)]
struct Nodes {
    nodes: Vec<NodeRecord>,
}

/// `GET /v1/cluster/nodes` → `{"nodes": [{"node_id", "url", "healthy",
/// "active_sessions", "last_heartbeat_at"}]}`.
///
/// # Errors
/// `503 cluster_unavailable` without cluster mode or when Redis cannot be
/// reached.
pub async fn nodes(core: &CoreContext) -> Result<Response, ApiError> {
    let cluster = super::sessions::cluster_of(core)?;
    let nodes = cluster.handle.nodes().await?;
    Ok(Response::json(200, &Nodes { nodes }))
}
