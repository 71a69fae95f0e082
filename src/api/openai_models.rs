//! `GET /v1/models` and `GET /v1/models/{id}`: the OpenAI dialect's model
//! list. Many clients call it first to fill a model picker or to check a
//! key. It names the loaded engine under its own id ([`engine_model_id`])
//! and `whisper-1`, the id OpenAI clients send by default, as an alias of
//! it; every id listed transcribes with the one loaded engine.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::config::ModelChoice;
use crate::core::CoreContext;
use crate::error::{ApiError, ErrorKind};
use crate::http::{Request, Response};

/// The id OpenAI clients send by default; an alias of the loaded engine.
pub const WHISPER_1: &str = "whisper-1";

/// Who the models belong to, in `owned_by`.
const OWNED_BY: &str = "transcription-service";

#[derive(Serialize)]
struct ModelObject {
    id: String,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}

#[derive(Serialize)]
struct ModelList {
    object: &'static str,
    data: Vec<ModelObject>,
}

/// The loaded engine's id: `mock`, or `whisper-` and the weights' file
/// name without `ggml-` and the extension (`whisper-tiny.en`).
pub fn engine_model_id(model: &ModelChoice) -> String {
    match model {
        ModelChoice::Mock => "mock".to_string(),
        ModelChoice::Whisper { path, .. } => {
            let stem = path
                .file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
                .unwrap_or_default();
            let name = stem.strip_prefix("ggml-").unwrap_or(&stem);
            if name.is_empty() {
                "whisper".to_string()
            } else {
                format!("whisper-{name}")
            }
        }
        ModelChoice::Ct2 { dir, .. } => {
            let name = dir
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            let name = name.strip_prefix("ct2-").unwrap_or(&name);
            if name.is_empty() {
                "whisper".to_string()
            } else {
                format!("whisper-{name}")
            }
        }
    }
}

/// Every id the server answers to, the engine's own first.
fn model_ids(core: &CoreContext) -> [String; 2] {
    [
        engine_model_id(&core.shared.settings.model.model),
        WHISPER_1.to_string(),
    ]
}

/// `created`: when this server started, in Unix seconds.
fn created(core: &CoreContext) -> u64 {
    SystemTime::now()
        .checked_sub(core.shared.started_at.elapsed())
        .and_then(|started| started.duration_since(UNIX_EPOCH).ok())
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

fn object(core: &CoreContext, id: String) -> ModelObject {
    ModelObject {
        id,
        object: "model",
        created: created(core),
        owned_by: OWNED_BY,
    }
}

/// `GET /v1/models`.
pub fn list(core: &CoreContext) -> Response {
    Response::json(
        200,
        &ModelList {
            object: "list",
            data: model_ids(core)
                .into_iter()
                .map(|id| object(core, id))
                .collect(),
        },
    )
}

/// `GET /v1/models/{id}`.
///
/// # Errors
/// `404 model_not_found` for an id the server does not answer to.
pub fn get(core: &CoreContext, request: &Request) -> Result<Response, ApiError> {
    let id = request
        .head
        .path
        .strip_prefix("/v1/models/")
        .unwrap_or_default();
    match model_ids(core).into_iter().find(|known| known == id) {
        Some(id) => Ok(Response::json(200, &object(core, id))),
        None => Err(ApiError::new(
            ErrorKind::ModelNotFound,
            format!("The model '{}' does not exist", super::truncate(id, 128)),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_ids_name_the_weights() {
        assert_eq!(engine_model_id(&ModelChoice::Mock), "mock");
        let whisper = |path: &str| ModelChoice::Whisper {
            path: path.into(),
            threads: 1,
            live_min_audio_ctx: 384,
        };
        assert_eq!(
            engine_model_id(&whisper("models/ggml-tiny.en.bin")),
            "whisper-tiny.en"
        );
        assert_eq!(engine_model_id(&whisper("/m/base.bin")), "whisper-base");
        let ct2 = |dir: &str| ModelChoice::Ct2 {
            dir: dir.into(),
            threads: 1,
            compute: crate::config::ComputeType::Int8,
            live_min_audio_ctx: 384,
        };
        assert_eq!(
            engine_model_id(&ct2("models/ct2-tiny.en")),
            "whisper-tiny.en"
        );
        assert_eq!(engine_model_id(&ct2("/m/base/")), "whisper-base");
    }
}
