//! [`Service`]: what the connection loop needs from the layer above it. The
//! loop parses, reads, times out and writes; the service routes a head,
//! checks its key, runs its handler, and hears what to count. `api::Api`
//! is the server's service; tests and fuzz targets bring small ones of their
//! own, so the real loop runs without a server around it.

use std::future::Future;
use std::time::Duration;

use super::{Request, RequestHead, Response};
use crate::config::HttpSettings;
use crate::error::ApiError;
use crate::rt::Latch;

/// The routes, the handlers and the counters a connection serves.
pub trait Service {
    /// What [`Service::route`] picks for a head.
    type Route: Copy;

    /// The HTTP limits and timeouts, and the CORS origins.
    fn settings(&self) -> &HttpSettings;
    /// Fires when the core drains: an idle keep-alive connection closes at once.
    fn drain(&self) -> &Latch;
    /// The core the connection runs on, for the logs.
    fn core_id(&self) -> usize;

    /// The answer to a CORS preflight, or `None` when `head` is not one.
    fn preflight(&self, head: &RequestHead) -> Option<Response>;
    /// The route for a head.
    ///
    /// # Errors
    /// The finished answer (`404`, `405`) when no route takes it.
    fn route(&self, head: &RequestHead) -> Result<Self::Route, Response>;
    /// Check the key a route needs.
    ///
    /// # Errors
    /// `401 unauthorized`.
    fn authorize(&self, head: &RequestHead, route: Self::Route) -> Result<(), ApiError>;
    /// The route's label in metrics and logs.
    fn label(route: Self::Route) -> &'static str;
    /// Whether the route is a WebSocket upgrade (answered `101` and handed
    /// back to the caller instead of running a handler).
    fn is_upgrade(route: Self::Route) -> bool;
    /// Accept or refuse a WebSocket upgrade to `route` once its handshake is
    /// valid, before the `101`: `Ok` with the subprotocol to answer with
    /// (`Sec-WebSocket-Protocol`), or the finished refusal (a protocol's
    /// `400` for parameters it does not support).
    ///
    /// # Errors
    /// The refusal to send instead of the `101`.
    fn accept_upgrade(
        &self,
        _head: &RequestHead,
        _route: Self::Route,
    ) -> Result<Option<&'static str>, Response> {
        Ok(None)
    }
    /// The answer to an error the connection itself found (a missing key, a
    /// body over the limit, …): API.md's error body unless the path speaks
    /// another dialect.
    fn error_response(&self, _head: Option<&RequestHead>, error: &ApiError) -> Response {
        Response::error(error)
    }
    /// Run the route's handler. It may take the body out of the request.
    fn handle(&self, route: Self::Route, request: &mut Request) -> impl Future<Output = Response>;

    /// A response was written (or the `101` of an upgrade).
    fn on_response(&self, route: &'static str, status: u16, latency: Duration);
    /// A handler panicked (it was answered `500`).
    fn on_panic(&self);
    /// A client did not take a response within the write timeout.
    fn on_write_timeout(&self);
}
