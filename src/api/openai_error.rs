//! OpenAI's error shape, shared by the REST routes (`openai.rs`) and the
//! streamed transcriptions (`openai_sse.rs`): `{"error": {"message",
//! "type", "param", "code"}}`, with the status and headers of
//! [`Response::error`].

use serde::Serialize;

use crate::error::{ApiError, ErrorKind};
use crate::http::Response;

/// OpenAI's error body: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Serialize)]
struct OpenAiErrorBody<'a> {
    error: OpenAiError<'a>,
}

/// OpenAI's error object, also the `error` of a Realtime `error` event.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct OpenAiError<'a> {
    pub message: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub param: Option<&'a str>,
    pub code: &'static str,
}

impl<'a> OpenAiError<'a> {
    /// The error object for `error`.
    pub fn of(error: &'a ApiError) -> OpenAiError<'a> {
        OpenAiError {
            message: &error.message,
            kind: error_type(error.kind),
            param: None,
            code: error.kind.code(),
        }
    }
}

/// OpenAI's error `type` for a kind.
pub fn error_type(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Unauthorized => "authentication_error",
        ErrorKind::Internal => "server_error",
        ErrorKind::Overloaded | ErrorKind::ShuttingDown | ErrorKind::ClusterUnavailable => {
            "server_error"
        }
        ErrorKind::ClusterTimeout => "server_error",
        _ => "invalid_request_error",
    }
}

/// The answer of an OpenAI-dialect handler: its response, or its error in
/// OpenAI's shape (with the status and headers of [`Response::error`]).
pub fn respond(result: Result<Response, ApiError>) -> Response {
    match result {
        Ok(response) => response,
        Err(error) => {
            let mut response = Response::error(&error);
            response.body = serde_json::to_vec(&OpenAiErrorBody {
                error: OpenAiError::of(&error),
            })
            .unwrap_or_else(|_| error.to_json());
            response
        }
    }
}
