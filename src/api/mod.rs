//! The handlers, and the router that picks one for a request head.
//!
//! [`route`] maps a method and path to a [`Route`] (or a 404/405 answer),
//! [`authorize`] checks the key the route needs, and [`handle`] runs the
//! handler. Handlers return `Result<Response, ApiError>`; the error becomes
//! API.md's JSON error body here, in one place.

pub mod batch;
pub mod cluster;
pub mod deepgram;
pub mod health;
pub mod metrics;
pub mod openai;
pub mod openai_error;
pub mod openai_models;
pub mod openai_sse;
pub mod sessions;
pub mod transcribe;
pub mod web;

use std::rc::Rc;
use std::time::Duration;

use subtle::ConstantTimeEq;

use crate::config::HttpSettings;
use crate::core::CoreContext;
use crate::error::{ApiError, ErrorKind};
use crate::http::{Method, Request, RequestHead, Response, Service};
use crate::rt::Latch;
use crate::ws::codec::NewCodec;
use crate::ws::deepgram::DeepgramLive;
use crate::ws::native::NativeJson;
use crate::ws::openai_realtime::OpenAiRealtime;

/// The server's HTTP service: the routes and handlers below, on one core.
/// The connection loop (`http::conn`) runs it for every request.
pub struct Api<'c> {
    core: &'c Rc<CoreContext>,
}

impl<'c> Api<'c> {
    pub fn new(core: &'c Rc<CoreContext>) -> Self {
        Api { core }
    }
}

impl Service for Api<'_> {
    type Route = Route;

    fn settings(&self) -> &HttpSettings {
        &self.core.shared.settings.http
    }

    fn drain(&self) -> &Latch {
        &self.core.drain
    }

    fn core_id(&self) -> usize {
        self.core.core_id
    }

    fn preflight(&self, head: &RequestHead) -> Option<Response> {
        preflight(self.core, head)
    }

    fn route(&self, head: &RequestHead) -> Result<Route, Response> {
        route(head)
    }

    fn authorize(&self, head: &RequestHead, route: Route) -> Result<(), ApiError> {
        authorize(self.core, head, route)
    }

    fn label(route: Route) -> &'static str {
        route.label()
    }

    fn is_upgrade(route: Route) -> bool {
        stream_codec(route).is_some()
    }

    fn accept_upgrade(
        &self,
        head: &RequestHead,
        route: Route,
    ) -> Result<Option<&'static str>, Response> {
        match route {
            Route::DeepgramLive => deepgram::accept_upgrade(head),
            Route::OpenAiRealtime => Ok(crate::ws::openai_realtime::accept_subprotocol(head)),
            _ => Ok(None),
        }
    }

    fn error_response(&self, head: Option<&RequestHead>, error: &ApiError) -> Response {
        match head {
            Some(head) if head.path == deepgram::LISTEN_PATH => deepgram::error_response(error),
            _ => Response::error(error),
        }
    }

    async fn handle(&self, route: Route, request: &mut Request) -> Response {
        let _in_flight = InFlight::new(self.core);
        handle(self.core, route, request).await
    }

    fn on_response(&self, route: &'static str, status: u16, latency: Duration) {
        self.core.metrics.on_http_response(route, status, latency);
    }

    fn on_panic(&self) {
        self.core.metrics.count(|c| c.task_panics += 1);
    }

    fn on_write_timeout(&self) {
        self.core.metrics.count(|c| c.write_timeouts += 1);
    }
}

/// Counts a request in [`CoreContext::requests_in_flight`] while its
/// handler runs (the drain waits for them before it stops accepting).
struct InFlight<'c>(&'c CoreContext);

impl<'c> InFlight<'c> {
    fn new(core: &'c CoreContext) -> Self {
        core.requests_in_flight
            .set(core.requests_in_flight.get() + 1);
        InFlight(core)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let count = self.0.requests_in_flight.get();
        debug_assert!(count > 0);
        self.0.requests_in_flight.set(count.saturating_sub(1));
    }
}

/// The endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Health,
    Ready,
    Transcribe,
    OpenAiTranscriptions,
    /// `GET /v1/transcribe/stream`: the WebSocket upgrade, done by the connection.
    Stream,
    Sessions,
    /// `/v1/sessions/{id}`: the id is read from the path by the handler.
    Session,
    SessionsMetrics,
    /// `GET /metrics`: Prometheus text.
    Metrics,
    /// `GET /v1/cluster/nodes` (cluster mode).
    ClusterNodes,
    /// `GET /`: the live-transcription page ([`web`]).
    Page,
    /// `GET /dashboard`: the operators' page; it checks the admin key itself
    /// so that it can answer a browser with an HTML form ([`web`]).
    Dashboard,
    /// `GET /assets/{name}`: a static asset compiled into the binary; the
    /// name is read from the path by the handler.
    Asset,
    /// `POST /v1/listen`: Deepgram's pre-recorded transcription ([`deepgram`]).
    DeepgramListen,
    /// `GET /v1/listen`: Deepgram's live transcription, a WebSocket upgrade.
    DeepgramLive,
    /// `POST /v1/audio/translations` (OpenAI dialect).
    OpenAiTranslations,
    /// `GET /v1/models` (OpenAI dialect).
    OpenAiModels,
    /// `GET /v1/models/{id}`: the id is read from the path by the handler.
    OpenAiModel,
    /// `GET /v1/realtime`: OpenAI's Realtime transcription, a WebSocket
    /// upgrade done by the connection.
    OpenAiRealtime,
}

/// Which key a route needs when keys are configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Always open (health, readiness).
    Open,
    /// The API key.
    Api,
    /// The admin key when one is configured, else the API key.
    Admin,
}

impl Route {
    /// The label used in metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Route::Health => "health",
            Route::Ready => "ready",
            Route::Transcribe => "transcribe",
            Route::OpenAiTranscriptions => "openai_transcriptions",
            Route::Stream => "stream",
            Route::Sessions => "sessions",
            Route::Session => "session",
            Route::SessionsMetrics => "sessions_metrics",
            Route::Metrics => "metrics",
            Route::ClusterNodes => "cluster_nodes",
            Route::Page => "page",
            Route::Dashboard => "dashboard",
            Route::Asset => "asset",
            Route::DeepgramListen => "deepgram_listen",
            Route::DeepgramLive => "deepgram_live",
            Route::OpenAiTranslations => "openai_translations",
            Route::OpenAiModels => "openai_models",
            Route::OpenAiModel => "openai_model",
            Route::OpenAiRealtime => "openai_realtime",
        }
    }

    /// The route of a path that routes by method (`/v1/listen`).
    fn for_method(self, method: Method) -> Route {
        match (self, method) {
            (Route::DeepgramListen, Method::Get) => Route::DeepgramLive,
            _ => self,
        }
    }

    pub fn access(self) -> Access {
        match self {
            // The dashboard is `Open` here only because its handler checks
            // the admin key itself (`web::dashboard`).
            Route::Health | Route::Ready | Route::Page | Route::Dashboard | Route::Asset => {
                Access::Open
            }
            Route::Transcribe
            | Route::OpenAiTranscriptions
            | Route::Stream
            | Route::DeepgramListen
            | Route::DeepgramLive
            | Route::OpenAiTranslations
            | Route::OpenAiModels
            | Route::OpenAiModel
            | Route::OpenAiRealtime => Access::Api,
            Route::Sessions
            | Route::Session
            | Route::SessionsMetrics
            | Route::Metrics
            | Route::ClusterNodes => Access::Admin,
        }
    }
}

/// The wire protocol a streaming route speaks, or `None` for a route that
/// does not upgrade. A new streaming protocol is a codec and a line here.
pub fn stream_codec(route: Route) -> Option<NewCodec> {
    match route {
        Route::Stream => Some(NativeJson::new_codec),
        Route::DeepgramLive => Some(DeepgramLive::new_codec),
        Route::OpenAiRealtime => Some(OpenAiRealtime::new_codec),
        _ => None,
    }
}

/// Paths, the methods each accepts, and the route.
const ROUTES: &[(&str, &[Method], &str, Route)] = &[
    (
        "/v1/health",
        &[Method::Get, Method::Head],
        "GET, HEAD",
        Route::Health,
    ),
    (
        "/v1/ready",
        &[Method::Get, Method::Head],
        "GET, HEAD",
        Route::Ready,
    ),
    ("/v1/transcribe", &[Method::Post], "POST", Route::Transcribe),
    (
        "/v1/audio/transcriptions",
        &[Method::Post],
        "POST",
        Route::OpenAiTranscriptions,
    ),
    (
        "/v1/transcribe/stream",
        &[Method::Get],
        "GET",
        Route::Stream,
    ),
    ("/v1/sessions", &[Method::Get], "GET", Route::Sessions),
    (
        "/v1/sessions/metrics",
        &[Method::Get],
        "GET",
        Route::SessionsMetrics,
    ),
    (
        "/metrics",
        &[Method::Get, Method::Head],
        "GET, HEAD",
        Route::Metrics,
    ),
    (
        "/v1/cluster/nodes",
        &[Method::Get],
        "GET",
        Route::ClusterNodes,
    ),
    ("/", &[Method::Get, Method::Head], "GET, HEAD", Route::Page),
    (
        "/dashboard",
        &[Method::Get, Method::Head],
        "GET, HEAD",
        Route::Dashboard,
    ),
    // GET upgrades to the live stream (`Route::for_method`).
    (
        deepgram::LISTEN_PATH,
        &[Method::Get, Method::Post],
        "GET, POST",
        Route::DeepgramListen,
    ),
    (
        "/v1/audio/translations",
        &[Method::Post],
        "POST",
        Route::OpenAiTranslations,
    ),
    ("/v1/models", &[Method::Get], "GET", Route::OpenAiModels),
    ("/v1/realtime", &[Method::Get], "GET", Route::OpenAiRealtime),
];

/// `/assets/{name}` accepts these, for the names [`web::asset`] knows.
const ASSET_METHODS: (&[Method], &str) = (&[Method::Get, Method::Head], "GET, HEAD");

/// `/v1/sessions/{id}` accepts these.
const SESSION_METHODS: (&[Method], &str) = (&[Method::Get, Method::Delete], "GET, DELETE");

/// Pick the route for a head.
///
/// # Errors
/// The finished answer: `404 not_found` for an unknown path, `405
/// method_not_allowed` with `Allow` for a known path and another method.
pub fn route(head: &RequestHead) -> Result<Route, Response> {
    let Some((methods, allow, route)) = lookup(&head.path) else {
        return Err(Response::error(&ApiError::new(
            ErrorKind::NotFound,
            format!("no endpoint at {}", truncate(&head.path, 128)),
        )));
    };
    if methods.contains(&head.method) {
        Ok(route.for_method(head.method))
    } else {
        Err(Response::error(&ApiError::new(
            ErrorKind::MethodNotAllowed,
            format!("{} accepts {allow}", head.path),
        ))
        .header("Allow", allow))
    }
}

/// The methods a path accepts (and their `Allow` list) and its route.
fn lookup(path: &str) -> Option<(&'static [Method], &'static str, Route)> {
    ROUTES
        .iter()
        .find(|(known, ..)| *known == path)
        .map(|(_, methods, allow, route)| (*methods, *allow, *route))
        .or_else(|| {
            let id = path.strip_prefix("/v1/sessions/")?;
            (!id.is_empty() && !id.contains('/')).then_some((
                SESSION_METHODS.0,
                SESSION_METHODS.1,
                Route::Session,
            ))
        })
        .or_else(|| {
            let id = path.strip_prefix("/v1/models/")?;
            (!id.is_empty()).then_some((&[Method::Get][..], "GET", Route::OpenAiModel))
        })
        .or_else(|| {
            let name = path.strip_prefix("/assets/")?;
            web::asset(name).map(|_| (ASSET_METHODS.0, ASSET_METHODS.1, Route::Asset))
        })
}

/// The answer to a CORS preflight for a known path, or `None` when `head`
/// is not a preflight (CORS off, or not the preflight form) or the path is
/// unknown (then the router's 404 answers it).
pub fn preflight(core: &CoreContext, head: &RequestHead) -> Option<Response> {
    let cors = &core.shared.settings.http.cors;
    if !crate::http::cors::is_preflight(cors, head) {
        return None;
    }
    let (_, allow, _) = lookup(&head.path)?;
    Some(crate::http::cors::preflight(cors, head, allow))
}

/// Check the key a route needs. Keys are compared in constant time and never
/// appear in an answer or a log.
///
/// # Errors
/// `401 unauthorized` when a key is configured and the request's is missing
/// or wrong.
pub fn authorize(core: &CoreContext, head: &RequestHead, route: Route) -> Result<(), ApiError> {
    if matches!(route, Route::DeepgramListen | Route::DeepgramLive) {
        let presented = deepgram::presented_key(head);
        let missing = presented.is_none();
        return authorize_key(core, route.access(), presented).map_err(|error| {
            if missing {
                ApiError::new(
                    ErrorKind::Unauthorized,
                    "missing key: send Authorization: Token <key>",
                )
            } else {
                error
            }
        });
    }
    // Browsers cannot set headers on a WebSocket: they pass the key in the
    // query, or (OpenAI's browser clients) in a subprotocol.
    if route == Route::OpenAiRealtime && head.header("authorization").is_none() {
        if let Some(key) = crate::ws::openai_realtime::subprotocol_key(head) {
            return authorize_key(core, route.access(), Some(key.to_owned()));
        }
    }
    authorize_access(
        core,
        head,
        route.access(),
        matches!(route, Route::Stream | Route::OpenAiRealtime),
    )
}

/// Check a request's key against the one `access` needs. `query_token`:
/// whether `?access_token=` is accepted besides the header (for requests a
/// browser makes without script: a WebSocket upgrade, a page navigation).
///
/// # Errors
/// `401 unauthorized` when a key is configured and the request's is missing
/// or wrong.
pub fn authorize_access(
    core: &CoreContext,
    head: &RequestHead,
    access: Access,
    query_token: bool,
) -> Result<(), ApiError> {
    let from_header = head
        .header("authorization")
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
        .map(|key| key.trim().to_owned());
    let presented = from_header.or_else(|| {
        query_token
            .then(|| access_token(head.query.as_deref()))
            .flatten()
    });
    authorize_key(core, access, presented)
}

/// Check the key a client presented against the one `access` needs.
///
/// # Errors
/// `401 unauthorized` when a key is configured and `presented` is missing
/// or wrong.
pub fn authorize_key(
    core: &CoreContext,
    access: Access,
    presented: Option<String>,
) -> Result<(), ApiError> {
    let settings = &core.shared.settings.http;
    let required = match access {
        Access::Open => return Ok(()),
        Access::Api => settings.api_key.as_deref(),
        Access::Admin => settings
            .admin_key
            .as_deref()
            .or(settings.api_key.as_deref()),
    };
    let Some(required) = required else {
        return Ok(());
    };
    match presented {
        Some(key) if bool::from(key.as_bytes().ct_eq(required.as_bytes())) => Ok(()),
        Some(_) => Err(ApiError::new(ErrorKind::Unauthorized, "invalid key")),
        None => Err(ApiError::new(
            ErrorKind::Unauthorized,
            "missing key: send Authorization: Bearer <key>",
        )),
    }
}

/// In builds with the `fault-injection` feature (tests only), a request with
/// this header set to `panic` makes its handler panic.
#[cfg(feature = "fault-injection")]
pub const FAULT_INJECTION_HEADER: &str = "x-fault-inject";

fn access_token(query: Option<&str>) -> Option<String> {
    crate::http::query::parse_query(query)
        .ok()?
        .into_iter()
        .find(|(name, _)| name == "access_token")
        .map(|(_, value)| value)
}

/// Run the handler of a route. Every answer names the core that served it
/// (`X-Served-By-Core`), which helps operators follow sharded sessions.
/// Handlers may take the body out of the request.
pub async fn handle(core: &Rc<CoreContext>, route: Route, request: &mut Request) -> Response {
    #[cfg(feature = "fault-injection")]
    if request.head.header(FAULT_INJECTION_HEADER) == Some("panic") {
        panic!("injected fault (test build)");
    }
    // Once the drain refuses new work, every route that spends the API
    // key's time (batch transcription in any dialect) is refused before it
    // reads audio; health, operators and pages are still answered.
    if route.access() == Access::Api && core.shared.is_refusing_work() {
        return Response::error(&ApiError::new(
            ErrorKind::ShuttingDown,
            "the server is shutting down; retry on another node",
        ))
        .header("X-Served-By-Core", core.core_id.to_string());
    }
    let result = match route {
        Route::Health => Ok(health::health(core)),
        Route::Ready => Ok(health::ready(core)),
        Route::Transcribe => transcribe::transcribe(core, request).await,
        Route::OpenAiTranscriptions => Ok(openai_error::respond(
            openai::transcriptions(core, request).await,
        )),
        Route::OpenAiTranslations => Ok(openai_error::respond(
            openai::translations(core, request).await,
        )),
        Route::OpenAiModels => Ok(openai_models::list(core)),
        Route::OpenAiModel => Ok(openai_error::respond(openai_models::get(core, request))),
        Route::Sessions => sessions::list(core, request).await,
        Route::Session if request.head.method == Method::Delete => {
            sessions::delete(core, request).await
        }
        Route::Session => sessions::get(core, request).await,
        Route::SessionsMetrics => sessions::metrics(core, request).await,
        Route::ClusterNodes => cluster::nodes(core).await,
        Route::Metrics => Ok(metrics::prometheus(core)),
        Route::Page => Ok(web::page(&request.head)),
        Route::Dashboard => Ok(web::dashboard(core, &request.head)),
        Route::Asset => Ok(web::asset_response(&request.head)),
        Route::DeepgramListen => Ok(deepgram::listen(core, request).await),
        // The connection upgrades these routes before any handler runs.
        Route::Stream | Route::DeepgramLive | Route::OpenAiRealtime => Err(ApiError::bad_request(
            "this endpoint needs a WebSocket upgrade",
        )),
    };
    result
        .unwrap_or_else(|error| Response::error(&error))
        .header("X-Served-By-Core", core.core_id.to_string())
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((index, _)) => &text[..index],
        None => text,
    }
}

/// Round seconds to milliseconds, the precision of times on the wire.
pub fn round_ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}
