//! `health`: `GET /v1/health` in a loop — the cost of the HTTP path alone
//! (accept, parse, route, small JSON answer) with no model work.

use super::{HttpOptions, HttpScenario};
use crate::http::build_request;

/// The path exercised.
pub const PATH: &str = "/v1/health";

/// Builds the scenario.
pub fn scenario(opts: &HttpOptions) -> HttpScenario {
    let request = build_request("GET", &opts.target, PATH, &opts.headers, None);
    HttpScenario::new("health", opts, request)
}
