//! The load scenarios, one module each, and the shared HTTP request worker.
//!
//! A scenario is anything implementing [`Scenario`]:
//! a name plus a factory for per-connection [`Worker`]s.
//! The request/response scenarios ([`health`], [`transcribe`]) are both a
//! fixed, prebuilt request sent over and over on a keep-alive connection, so
//! they share [`HttpScenario`]/[`HttpWorker`] and only differ in how they
//! build the request.
//!
//! The WebSocket scenarios ([`stream`], [`idle`]) hold long-lived sessions
//! rather than repeating requests, so they have their own small drivers
//! (`stream::run`, `idle::run`) instead of the [`runner`](crate::runner), and
//! their own reports. [`soak`] mixes them: continuous `stream` sessions on
//! the mux driver, batch clients on the runner, and an operator poller.

pub mod health;
pub mod idle;
pub mod soak;
pub mod stream;
pub mod transcribe;

use std::sync::Arc;
use std::time::Duration;

use crate::http::HttpClient;
use crate::runner::{Outcome, Scenario, Worker};
use crate::target::Target;

/// Settings every HTTP scenario shares.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Where to send (already checked to be loopback).
    pub target: Target,
    /// Bound on connect and on each socket read/write.
    pub timeout: Duration,
    /// Extra request headers (e.g. `Authorization`).
    pub headers: Vec<(String, String)>,
}

impl HttpOptions {
    /// Options with an `Authorization: Bearer` header when `api_key` is set.
    pub fn new(target: Target, timeout: Duration, api_key: Option<&str>) -> Self {
        let headers = api_key
            .map(|key| vec![("Authorization".to_string(), format!("Bearer {key}"))])
            .unwrap_or_default();
        HttpOptions {
            target,
            timeout,
            headers,
        }
    }
}

/// A scenario that sends one prebuilt request over and over.
#[derive(Debug)]
pub struct HttpScenario {
    name: String,
    target: Target,
    timeout: Duration,
    request: Arc<Vec<u8>>,
}

impl HttpScenario {
    /// A scenario named `name` sending `request` (complete HTTP bytes).
    pub fn new(name: &str, opts: &HttpOptions, request: Vec<u8>) -> Self {
        HttpScenario {
            name: name.to_string(),
            target: opts.target.clone(),
            timeout: opts.timeout,
            request: Arc::new(request),
        }
    }

    /// The request bytes sent each time.
    pub fn request(&self) -> &[u8] {
        &self.request
    }
}

impl Scenario for HttpScenario {
    fn name(&self) -> &str {
        &self.name
    }

    fn new_worker(&self, _index: usize) -> Box<dyn Worker> {
        Box::new(HttpWorker {
            client: HttpClient::new(self.target.clone(), self.timeout),
            request: Arc::clone(&self.request),
        })
    }
}

/// One keep-alive connection sending the scenario's request.
#[derive(Debug)]
pub struct HttpWorker {
    client: HttpClient,
    request: Arc<Vec<u8>>,
}

impl Worker for HttpWorker {
    fn run_once(&mut self) -> Outcome {
        match self.client.send(&self.request, false) {
            Ok(info) => Outcome::Response(info.status),
            Err(e) => Outcome::Failed(e.kind, e.detail),
        }
    }

    fn connects(&self) -> u64 {
        self.client.connects()
    }
}
