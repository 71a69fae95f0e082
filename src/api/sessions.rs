//! The operator endpoints: `GET /v1/sessions`, `GET` and `DELETE
//! /v1/sessions/{id}`, `GET /v1/sessions/metrics`.
//!
//! Sessions live on the core that accepted them. The core that receives an
//! operator request answers for its own shard directly and asks every other
//! core through its inbox ([`crate::core::cross_core`]), then merges the
//! answers.
//!
//! In cluster mode (`redis_url` set) `?scope=cluster` lists every node's
//! sessions and merges every node's metrics from the registry, and a
//! session id that no core of this node has is looked up (or deleted)
//! through the cluster agent. Without cluster mode those answers are
//! `503 cluster_unavailable`.

use serde::Serialize;

use crate::cluster::DeleteOutcome;
use crate::core::cross_core::{all_sessions, metrics_value, terminate_on_any_core};
use crate::core::{ClusterShared, CoreContext, SessionInfo};
use crate::error::{ApiError, ErrorKind};
use crate::http::query::parse_query;
use crate::http::{Request, Response};
use crate::session::SessionState;

#[derive(Serialize)]
struct SessionList {
    count: usize,
    sessions: Vec<SessionInfo>,
}

/// Which sessions a request covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// This node (the default).
    Node,
    /// Every node of the cluster.
    Cluster,
}

fn parse_scope(value: &str) -> Result<Scope, ApiError> {
    match value {
        "local" | "node" => Ok(Scope::Node),
        "cluster" => Ok(Scope::Cluster),
        _ => Err(ApiError::bad_request(format!(
            "scope must be local or cluster, got {value:?}"
        ))),
    }
}

/// The cluster agent's handles, or `503 cluster_unavailable` on a single node.
///
/// # Errors
/// `503 cluster_unavailable` when cluster mode is off.
pub fn cluster_of(core: &CoreContext) -> Result<&ClusterShared, ApiError> {
    core.shared.cluster.as_ref().ok_or_else(|| {
        ApiError::new(
            ErrorKind::ClusterUnavailable,
            "cluster mode is off on this node (no redis_url)",
        )
    })
}

/// This node's sessions and every other node's, from the registry. This
/// node's own come from its cores (fresher than the registry).
async fn cluster_sessions(core: &CoreContext) -> Result<Vec<SessionInfo>, ApiError> {
    let cluster = cluster_of(core)?;
    let records = cluster.handle.list_sessions().await?;
    let mut sessions = all_sessions(core).await;
    let now = std::time::SystemTime::now();
    let node_id = cluster.handle.node_id();
    sessions.extend(
        records
            .into_iter()
            .filter(|record| record.node != node_id)
            .map(|record| SessionInfo::from_record(record, now)),
    );
    sessions.sort_by(|a, b| {
        a.created_at
            .cmp(&b.created_at)
            .then_with(|| a.session_id.cmp(&b.session_id))
    });
    Ok(sessions)
}

/// `GET /v1/sessions[?state=S][&limit=N][&scope=cluster]`.
///
/// # Errors
/// `400` for an unknown state, scope or a bad limit; `503
/// cluster_unavailable` / `504 cluster_timeout` for `scope=cluster`.
pub async fn list(core: &CoreContext, request: &Request) -> Result<Response, ApiError> {
    let mut state = None;
    let mut limit = usize::MAX;
    let mut scope = Scope::Node;
    let pairs = parse_query(request.head.query.as_deref())
        .map_err(|pair| ApiError::bad_request(format!("malformed query parameter {pair:?}")))?;
    for (name, value) in pairs {
        match name.as_str() {
            "state" => {
                state = Some(SessionState::parse(&value).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "state must be created, active, closing or closed, got {value:?}"
                    ))
                })?)
            }
            "scope" => scope = parse_scope(&value)?,
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|limit| *limit >= 1)
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "limit must be a positive integer, got {value:?}"
                        ))
                    })?
            }
            _ => {}
        }
    }
    let sessions = match scope {
        Scope::Node => all_sessions(core).await,
        Scope::Cluster => cluster_sessions(core).await?,
    };
    let sessions: Vec<SessionInfo> = sessions
        .into_iter()
        .filter(|info| state.is_none_or(|state| info.state == state.name()))
        .take(limit)
        .collect();
    Ok(Response::json(
        200,
        &SessionList {
            count: sessions.len(),
            sessions,
        },
    ))
}

fn session_id(request: &Request) -> &str {
    request
        .head
        .path
        .strip_prefix("/v1/sessions/")
        .unwrap_or_default()
}

/// `?flush=true|false` on a DELETE (false when absent).
///
/// # Errors
/// `400 bad_request` for another value or an unknown parameter.
fn delete_flush(request: &Request) -> Result<bool, ApiError> {
    let pairs = parse_query(request.head.query.as_deref())
        .map_err(|pair| ApiError::bad_request(format!("malformed query parameter {pair:?}")))?;
    let mut flush = false;
    for (name, value) in pairs {
        match (name.as_str(), value.as_str()) {
            ("flush", "true") => flush = true,
            ("flush", "false") => flush = false,
            ("flush", other) => {
                return Err(ApiError::bad_request(format!(
                    "flush must be true or false, got {other:?}"
                )))
            }
            _ => {}
        }
    }
    Ok(flush)
}

fn not_found(id: &str) -> ApiError {
    let shown: String = id.chars().take(64).collect();
    ApiError::new(ErrorKind::SessionNotFound, format!("no session {shown}"))
}

/// `GET /v1/sessions/{id}`; in cluster mode a session of another node is
/// found through the registry.
///
/// # Errors
/// `404 session_not_found`; in cluster mode `503 cluster_unavailable` when
/// the id is not on this node and Redis cannot be reached.
pub async fn get(core: &CoreContext, request: &Request) -> Result<Response, ApiError> {
    let id = session_id(request);
    let local = core.sessions.borrow().get(id).map(|ctx| ctx.info());
    if let Some(info) = local {
        return Ok(Response::json(200, &info));
    }
    if let Some(info) = all_sessions(core)
        .await
        .into_iter()
        .find(|info| info.session_id == id)
    {
        return Ok(Response::json(200, &info));
    }
    let Some(cluster) = &core.shared.cluster else {
        return Err(not_found(id));
    };
    match cluster.handle.get_session(id).await? {
        Some(record) => Ok(Response::json(
            200,
            &SessionInfo::from_record(record, std::time::SystemTime::now()),
        )),
        None => Err(not_found(id)),
    }
}

#[derive(Serialize)]
struct Deleted<'a> {
    session_id: &'a str,
    state: &'static str,
}

/// `DELETE /v1/sessions/{id}`: the client gets `session_end` `terminated`
/// and its socket is closed. In cluster mode the session may be on any node.
///
/// # Errors
/// `404 session_not_found`; in cluster mode `503 cluster_unavailable` or
/// `504 cluster_timeout` when the id is not on this node and the cluster
/// cannot answer.
pub async fn delete(core: &CoreContext, request: &Request) -> Result<Response, ApiError> {
    let id = session_id(request);
    let flush = delete_flush(request)?;
    let mut found = terminate_on_any_core(core, id, flush).await;
    if !found {
        if let Some(cluster) = &core.shared.cluster {
            // The owner closes it and confirms, through Redis.
            found = cluster.handle.delete_session_with(id, flush).await? == DeleteOutcome::Deleted;
        }
    }
    if !found {
        return Err(not_found(id));
    }
    Ok(Response::json(
        200,
        &Deleted {
            session_id: id,
            state: if flush {
                SessionState::Closing.name()
            } else {
                SessionState::Closed.name()
            },
        },
    ))
}

/// `GET /v1/sessions/metrics[?scope=cluster]`.
///
/// # Errors
/// `400` for an unknown scope; `503 cluster_unavailable` for
/// `scope=cluster` without cluster mode or without Redis.
pub async fn metrics(core: &CoreContext, request: &Request) -> Result<Response, ApiError> {
    let pairs = parse_query(request.head.query.as_deref())
        .map_err(|pair| ApiError::bad_request(format!("malformed query parameter {pair:?}")))?;
    let mut scope = Scope::Node;
    for (name, value) in pairs {
        if name == "scope" {
            scope = parse_scope(&value)?;
        }
    }
    if scope == Scope::Node {
        return Ok(Response::json(200, &metrics_value(core)));
    }
    let cluster = cluster_of(core)?;
    let merged = cluster.handle.cluster_metrics().await?;
    // The node view's fields summed over the nodes (latency quantiles take
    // the maximum), and each node's own figures.
    let mut body = match merged.total {
        serde_json::Value::Object(total) => total,
        _ => serde_json::Map::new(),
    };
    body.insert(
        "nodes".to_string(),
        serde_json::to_value(&merged.nodes).unwrap_or_default(),
    );
    Ok(Response::json(200, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_is_local_or_cluster() {
        assert_eq!(parse_scope("local").ok(), Some(Scope::Node));
        assert_eq!(parse_scope("cluster").ok(), Some(Scope::Cluster));
        let error = parse_scope("everywhere").expect_err("unknown scope");
        assert_eq!(error.kind, ErrorKind::BadRequest);
    }
}
