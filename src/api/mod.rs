//! The handlers, and the router that picks one for a request head.
//!
//! [`route`] maps a method and path to a [`Route`] (or a 404/405 answer),
//! [`authorize`] checks the key the route needs, and [`handle`] runs the
//! handler. Handlers return `Result<Response, ApiError>`; the error becomes
//! API.md's JSON error body here, in one place.

pub mod batch;
pub mod health;
pub mod openai;
pub mod transcribe;

use subtle::ConstantTimeEq;

use crate::core::CoreContext;
use crate::error::{ApiError, ErrorKind};
use crate::http::{Method, Request, RequestHead, Response};

/// The endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Health,
    Ready,
    Transcribe,
    OpenAiTranscriptions,
}

/// Which key a route needs when keys are configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Always open (health, readiness).
    Open,
    /// The API key.
    Api,
}

impl Route {
    /// The label used in metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Route::Health => "health",
            Route::Ready => "ready",
            Route::Transcribe => "transcribe",
            Route::OpenAiTranscriptions => "openai_transcriptions",
        }
    }

    pub fn access(self) -> Access {
        match self {
            Route::Health | Route::Ready => Access::Open,
            Route::Transcribe | Route::OpenAiTranscriptions => Access::Api,
        }
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
];

/// Pick the route for a head.
///
/// # Errors
/// The finished answer: `404 not_found` for an unknown path, `405
/// method_not_allowed` with `Allow` for a known path and another method.
pub fn route(head: &RequestHead) -> Result<Route, Response> {
    let Some((_, methods, allow, route)) = ROUTES.iter().find(|(path, ..)| *path == head.path)
    else {
        return Err(Response::error(&ApiError::new(
            ErrorKind::NotFound,
            format!("no endpoint at {}", truncate(&head.path, 128)),
        )));
    };
    if methods.contains(&head.method) {
        Ok(*route)
    } else {
        Err(Response::error(&ApiError::new(
            ErrorKind::MethodNotAllowed,
            format!("{} accepts {allow}", head.path),
        ))
        .header("Allow", *allow))
    }
}

/// Check the key a route needs. Keys are compared in constant time and never
/// appear in an answer or a log.
///
/// # Errors
/// `401 unauthorized` when a key is configured and the request's is missing
/// or wrong.
pub fn authorize(core: &CoreContext, head: &RequestHead, route: Route) -> Result<(), ApiError> {
    let required = match route.access() {
        Access::Open => return Ok(()),
        Access::Api => core.shared.settings.api_key.as_deref(),
    };
    let Some(required) = required else {
        return Ok(());
    };
    let presented = head
        .header("authorization")
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
        .map(str::trim);
    match presented {
        Some(key) if bool::from(key.as_bytes().ct_eq(required.as_bytes())) => Ok(()),
        Some(_) => Err(ApiError::new(ErrorKind::Unauthorized, "invalid API key")),
        None => Err(ApiError::new(
            ErrorKind::Unauthorized,
            "missing API key: send Authorization: Bearer <key>",
        )),
    }
}

/// Run the handler of a route.
/// Handlers may take the body out of the request.
pub async fn handle(core: &CoreContext, route: Route, request: &mut Request) -> Response {
    let result = match route {
        Route::Health => Ok(health::health(core)),
        Route::Ready => Ok(health::ready(core)),
        Route::Transcribe => transcribe::transcribe(core, request).await,
        Route::OpenAiTranscriptions => openai::transcriptions(core, request).await,
    };
    result.unwrap_or_else(|error| Response::error(&error))
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
