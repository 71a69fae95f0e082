//! [`Config::validate`]: every flag checked against its bounds (one
//! [`in_range`] check each), the machine-dependent defaults resolved, and the
//! result grouped into [`Settings`]' sections.

use std::fmt::Display;
use std::net::SocketAddr;
use std::ops::{Bound, RangeBounds};
use std::time::Duration;

use super::settings::{
    CorsOrigins, HttpSettings, ModelSettings, SessionSettings, Settings, UringSettings,
};
use super::{
    Config, ModelChoice, ModelKind, DEFAULT_WHISPER_BATCH_WINDOW_SECONDS,
    DEFAULT_WHISPER_MODEL_PATH,
};
use crate::cluster::ClusterSettings;
use crate::engine::settings::{EngineMode, EngineTierSettings};
use crate::model::capacity::AdmissionSettings;

impl Config {
    /// Check every value and resolve the defaults that depend on the machine.
    /// `cpus_available` is the number of CPUs this process may run on.
    ///
    /// # Errors
    /// A message naming the flag and the bad value.
    pub fn validate(&self, cpus_available: usize) -> Result<Settings, String> {
        let cores = self.cores.unwrap_or(cpus_available.max(1));
        in_range("--cores", cores, 1..=1024)?;
        // A remote engine's workers only wait on replies: the default bounds
        // the jobs outstanding from this front end, not its CPU use.
        let model_workers = self.model_workers.unwrap_or(match self.engine_mode {
            EngineMode::Local => cores,
            EngineMode::Remote => crate::engine::settings::REMOTE_WORKERS_DEFAULT,
        });
        in_range("--model-workers", model_workers, 1..=1024)?;
        in_range(
            "--model-queue-capacity",
            self.model_queue_capacity,
            1..=1_000_000,
        )?;
        let http = self.validate_http()?;
        let session = self.validate_session()?;
        let model = self.model_choice(cpus_available, model_workers)?;
        let batch_window_seconds = self.batch_window_seconds.unwrap_or(match model {
            ModelChoice::Mock => 0.0,
            ModelChoice::Whisper { .. } | ModelChoice::Ct2 { .. } => {
                DEFAULT_WHISPER_BATCH_WINDOW_SECONDS
            }
        });
        if batch_window_seconds != 0.0 {
            in_range(
                "--batch-window-seconds (0 is off)",
                batch_window_seconds,
                1.0..=crate::limits::BATCH_WINDOW_SECONDS_MAX,
            )?;
        }
        in_range(
            "--engine-max-utilisation (0 is off)",
            self.engine_max_utilisation,
            0.0..=1.0,
        )?;
        in_range(
            "--engine-max-backlog-seconds",
            self.engine_max_backlog_seconds,
            0.0..=86_400.0,
        )?;
        let admission = AdmissionSettings {
            max_utilisation: self.engine_max_utilisation,
            max_backlog: Duration::from_secs_f64(self.engine_max_backlog_seconds),
        };
        in_range("--mock-load-ms", self.mock_load_ms, ..=600_000)?;
        in_range("--mock-latency-ms", self.mock_latency_ms, ..=600_000)?;
        in_range("--mock-rtf", self.mock_rtf, 0.0..=100.0)?;
        check(
            self.uring_entries.is_power_of_two(),
            format!(
                "--uring-entries must be a power of two, got {}",
                self.uring_entries
            ),
        )?;
        in_range("--uring-entries", self.uring_entries, 64..=32_768)?;
        if let Some(idle_ms) = self.uring_sqpoll_idle_ms {
            in_range("--uring-sqpoll-idle-ms", idle_ms, ..=60_000)?;
        }
        let shutdown_grace = seconds(
            "--shutdown-grace-seconds",
            self.shutdown_grace_seconds,
            0.0..=3600.0,
        )?;
        let drain_delay = seconds(
            "--drain-delay-seconds",
            self.drain_delay_seconds,
            0.0..=3600.0,
        )?;
        let cluster = self.validate_cluster()?;
        let engine_tier = self.validate_engine_tier()?;
        Ok(Settings {
            listen_addr: SocketAddr::new(self.host, self.port),
            cores,
            http,
            session,
            model: ModelSettings {
                model,
                workers: model_workers,
                queue_capacity: self.model_queue_capacity,
                batch_window_seconds,
                admission,
                mock_load: Duration::from_millis(self.mock_load_ms),
                mock_latency: Duration::from_millis(self.mock_latency_ms),
                mock_rtf: self.mock_rtf,
            },
            log_format: self.log_format,
            log_level: self.log_level.clone(),
            shutdown_grace,
            drain_delay,
            uring: UringSettings {
                entries: self.uring_entries,
                // The kernel refuses COOP_TASKRUN next to SQPOLL (EINVAL:
                // with a polling thread there are no task-run interrupts to
                // save), so asking for SQPOLL drops it.
                coop_taskrun: self.uring_coop_taskrun && self.uring_sqpoll_idle_ms.is_none(),
                sqpoll_idle_ms: self.uring_sqpoll_idle_ms,
            },
            cluster,
            engine_tier,
        })
    }

    /// The HTTP section: body and head limits, timeouts, origins and keys.
    fn validate_http(&self) -> Result<HttpSettings, String> {
        in_range("--max-body-bytes", self.max_body_bytes, 1024..)?;
        in_range("--max-head-bytes", self.max_head_bytes, 1024..=1024 * 1024)?;
        in_range("--read-timeout-ms", self.read_timeout_ms, 10..)?;
        in_range("--write-timeout-ms", self.write_timeout_ms, 10..)?;
        let keepalive_timeout = seconds(
            "--keepalive-timeout-seconds",
            self.keepalive_timeout_seconds,
            0.1..=86_400.0,
        )?;
        let cors = cors_origins(&self.cors_allow_origins)?;
        let trusted_proxies = self
            .trusted_proxies
            .iter()
            .map(|entry| entry.trim())
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                crate::http::proxy::Cidr::parse(entry)
                    .map_err(|error| format!("--trusted-proxies: {error}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        for (flag, key) in [
            ("--api-key", &self.api_key),
            ("--admin-key", &self.admin_key),
        ] {
            if let Some(key) = key {
                check(
                    !key.is_empty() && key.bytes().all(|b| b.is_ascii_graphic()),
                    format!("{flag} must be non-empty printable ASCII without spaces"),
                )?;
            }
        }
        Ok(HttpSettings {
            body_bytes_max: self.max_body_bytes,
            head_bytes_max: self.max_head_bytes,
            read_timeout: Duration::from_millis(self.read_timeout_ms),
            write_timeout: Duration::from_millis(self.write_timeout_ms),
            keepalive_timeout,
            cors,
            trusted_proxies: crate::http::proxy::TrustedProxies::new(trusted_proxies),
            api_key: self.api_key.clone(),
            admin_key: self.admin_key.clone(),
        })
    }

    /// The session section: admission limits, WebSocket bounds, timeouts,
    /// VAD and interims.
    fn validate_session(&self) -> Result<SessionSettings, String> {
        in_range("--max-sessions", self.max_sessions, 1..=10_000_000)?;
        // A week.
        let max_session = seconds(
            "--max-session-seconds",
            self.max_session_seconds,
            0.0..=604_800.0,
        )?;
        let idle_timeout = seconds(
            "--session-idle-timeout-seconds",
            self.session_idle_timeout_seconds,
            0.1..=604_800.0,
        )?;
        let cleanup_interval = seconds(
            "--session-cleanup-interval-seconds",
            self.session_cleanup_interval_seconds,
            0.01..=86_400.0,
        )?;
        in_range("--max-ws-message-bytes", self.max_ws_message_bytes, 1024..)?;
        in_range(
            "--ws-outbound-messages-max",
            self.ws_outbound_messages_max,
            8..=1_000_000,
        )?;
        in_range(
            "--slow-consumer-timeout-ms",
            self.slow_consumer_timeout_ms,
            10..,
        )?;
        in_range("--vad-mode", self.vad_mode, 0..=3)?;
        in_range("--vad-hangover-ms", self.vad_hangover_ms, 30..=10_000)?;
        in_range(
            "--max-segment-seconds",
            self.max_segment_seconds,
            1.0..=120.0,
        )?;
        in_range(
            "--interim-interval-ms",
            self.interim_interval_ms,
            50..=60_000,
        )?;
        // A day: a session kept longer holds its slot for nobody.
        let resume_window = seconds(
            "--resume-window-seconds",
            self.resume_window_seconds,
            0.0..=86_400.0,
        )?;
        Ok(SessionSettings {
            max_sessions: self.max_sessions,
            max_sessions_per_peer: (self.max_sessions_per_peer > 0)
                .then_some(self.max_sessions_per_peer),
            max_session_duration: (!max_session.is_zero()).then_some(max_session),
            idle_timeout,
            cleanup_interval,
            ws_message_bytes_max: self.max_ws_message_bytes,
            ws_outbound_messages_max: self.ws_outbound_messages_max,
            slow_consumer_timeout: Duration::from_millis(self.slow_consumer_timeout_ms),
            vad_mode: self.vad_mode,
            vad_hangover_ms: self.vad_hangover_ms,
            // Bounded to 1..=120 s above, so the product fits a u32 exactly.
            max_segment_ms: (self.max_segment_seconds * 1000.0).round() as u32,
            interim_interval_ms: self.interim_interval_ms,
            resume_window: (!resume_window.is_zero()).then_some(resume_window),
        })
    }

    /// The engine: the mock, or Whisper with weights that exist and look like
    /// a ggml model, in a build that has it.
    fn model_choice(&self, cpus: usize, workers: usize) -> Result<ModelChoice, String> {
        if self.model == ModelKind::Mock {
            check(
                self.model_path.is_none(),
                "--model-path is for --model whisper or ct2",
            )?;
            return Ok(ModelChoice::Mock);
        }
        if self.model == ModelKind::Ct2 {
            return self.ct2_choice(cpus, workers);
        }
        check(
            cfg!(feature = "whisper"),
            "--model whisper needs a build with the whisper engine: cargo build --release --features whisper",
        )?;
        let threads = self
            .model_threads
            .unwrap_or_else(|| (cpus / workers.max(1)).max(1));
        in_range("--model-threads", threads, 1..=256)?;
        let path = self
            .model_path
            .clone()
            .unwrap_or_else(|| DEFAULT_WHISPER_MODEL_PATH.into());
        check_ggml_file(&path)?;
        in_range(
            "--whisper-live-context",
            self.whisper_live_context,
            64..=1500,
        )?;
        Ok(ModelChoice::Whisper {
            path,
            threads,
            live_min_audio_ctx: self.whisper_live_context,
        })
    }

    /// The engine tier: where the engine runs and the job streams' timings.
    fn validate_engine_tier(&self) -> Result<EngineTierSettings, String> {
        check(
            self.engine_mode == EngineMode::Local || self.redis_url.is_some(),
            "--engine remote needs --redis-url (the job streams live in Redis)",
        )?;
        let millis = |flag: &str, value: u64, range: std::ops::RangeInclusive<u64>| {
            in_range(flag, value, range).map(|()| Duration::from_millis(value))
        };
        in_range(
            "--engine-stream-maxlen",
            self.engine_stream_maxlen,
            1_000..=100_000_000,
        )?;
        Ok(EngineTierSettings {
            mode: self.engine_mode,
            claim_idle: millis(
                "--engine-claim-idle-ms",
                self.engine_claim_idle_ms,
                50..=3_600_000,
            )?,
            final_wait: millis(
                "--engine-final-wait-ms",
                self.engine_final_wait_ms,
                10..=3_600_000,
            )?,
            resubmit_after: millis(
                "--engine-resubmit-ms",
                self.engine_resubmit_ms,
                10..=3_600_000,
            )?,
            interim_deadline: millis(
                "--engine-interim-deadline-ms",
                self.engine_interim_deadline_ms,
                1..=600_000,
            )?,
            stream_maxlen: self.engine_stream_maxlen,
        })
    }

    /// Whisper through CTranslate2: a model directory that looks like one,
    /// in a build that has the engine.
    fn ct2_choice(&self, cpus: usize, workers: usize) -> Result<ModelChoice, String> {
        check(
            cfg!(feature = "ct2"),
            "--model ct2 needs a build with the CTranslate2 engine: scripts/fetch-ct2.sh, then cargo build --release --features ct2",
        )?;
        let threads = self
            .model_threads
            .unwrap_or_else(|| (cpus / workers.max(1)).max(1));
        in_range("--model-threads", threads, 1..=256)?;
        let dir = self
            .model_path
            .clone()
            .unwrap_or_else(|| super::DEFAULT_CT2_MODEL_PATH.into());
        #[cfg(feature = "ct2")]
        crate::model::ct2::check_model_dir(&dir)
            .map_err(|error| format!("--model-path {}: {error}", dir.display()))?;
        in_range(
            "--whisper-live-context",
            self.whisper_live_context,
            64..=1500,
        )?;
        Ok(ModelChoice::Ct2 {
            dir,
            threads,
            compute: self.model_compute_type,
            live_min_audio_ctx: self.whisper_live_context,
        })
    }

    /// The cluster settings when `--redis-url` is given. The cluster-only
    /// flags without it are refused rather than silently ignored.
    fn validate_cluster(&self) -> Result<Option<ClusterSettings>, String> {
        let Some(redis_url) = self.redis_url.as_deref() else {
            check(
                self.cluster_max_sessions.is_none(),
                "--cluster-max-sessions needs --redis-url (cluster mode)",
            )?;
            return Ok(None);
        };
        // The default id names the port; with port 0 every node would be
        // `hostname:0`, and two nodes with one id corrupt each other's entries.
        check(
            self.port != 0 || self.node_id.is_some(),
            "--node-id is required with --port 0 in cluster mode (the default hostname:port would not be unique)",
        )?;
        let node_id = self
            .node_id
            .clone()
            .unwrap_or_else(|| crate::cluster::default_node_id(self.port));
        let advertise_url = self
            .advertise_url
            .clone()
            .unwrap_or_else(|| crate::cluster::default_advertise_url(self.port));
        let mut cluster = ClusterSettings::new(redis_url, &node_id, &advertise_url);
        cluster.cluster_max_sessions = self.cluster_max_sessions;
        cluster.fail_mode = self.cluster_fail_mode;
        cluster.heartbeat_interval = Duration::from_millis(self.cluster_heartbeat_ms);
        cluster.ttl = Duration::from_millis(self.cluster_ttl_ms);
        cluster.lease_block = self.cluster_lease_block;
        // The settings' own messages name the setting (`node_id`, ...); say
        // which flag it is.
        cluster.validate().map_err(|error| {
            let message = error.to_string();
            let flag = [
                ("redis_url", "--redis-url"),
                ("node_id", "--node-id"),
                ("advertise_url", "--advertise-url"),
                ("cluster_max_sessions", "--cluster-max-sessions"),
                ("TTL", "--cluster-ttl-ms"),
                ("heartbeat", "--cluster-heartbeat-ms"),
                ("lease block", "--cluster-lease-block"),
            ]
            .iter()
            .find(|(name, _)| message.contains(name))
            .map_or("--redis-url", |(_, flag)| flag);
            format!("{flag}: {message}")
        })?;
        Ok(Some(cluster))
    }
}

/// Parse `--cors-allow-origins`: empty is off, `*` alone is any origin,
/// otherwise each entry must be an origin (`scheme://host[:port]`, no path).
fn cors_origins(given: &[String]) -> Result<CorsOrigins, String> {
    let origins: Vec<&str> = given
        .iter()
        .map(|o| o.trim())
        .filter(|o| !o.is_empty())
        .collect();
    if origins.is_empty() {
        return Ok(CorsOrigins::Off);
    }
    if origins.contains(&"*") {
        check(
            origins.len() == 1,
            "--cors-allow-origins: `*` cannot be combined with other origins",
        )?;
        return Ok(CorsOrigins::Any);
    }
    for origin in &origins {
        let rest = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"));
        let valid = rest.is_some_and(|host| {
            !host.is_empty()
                && !host.contains('/')
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        });
        check(
            valid,
            format!(
                "--cors-allow-origins: {origin:?} is not an origin like https://app.example.com"
            ),
        )?;
    }
    Ok(CorsOrigins::List(
        origins.into_iter().map(str::to_string).collect(),
    ))
}

/// Whether `path` is a well-formed ggml model, so a wrong or damaged file
/// fails at start-up with a clear message rather than inside whisper.cpp.
fn check_ggml_file(path: &std::path::Path) -> Result<(), String> {
    if !path.is_file() {
        return Err(format!(
            "--model-path {}: no such file (scripts/fetch-model.sh downloads and converts the Whisper weights)",
            path.display()
        ));
    }
    ct2ggml::check::check_file(path)
        .map(|_| ())
        .map_err(|error| format!("--model-path {}: {error}", path.display()))
}

/// Check that `value` of `flag` lies in `range` (inclusive bounds).
///
/// # Errors
/// A message naming the flag, the bounds and the value given.
fn in_range<T, R>(flag: &str, value: T, range: R) -> Result<(), String>
where
    T: PartialOrd + Display,
    R: RangeBounds<T>,
{
    if range.contains(&value) {
        return Ok(());
    }
    let bound = |bound: Bound<&T>| match bound {
        Bound::Included(limit) | Bound::Excluded(limit) => Some(limit.to_string()),
        Bound::Unbounded => None,
    };
    Err(
        match (bound(range.start_bound()), bound(range.end_bound())) {
            (Some(low), Some(high)) => {
                format!("{flag} must be between {low} and {high}, got {value}")
            }
            (Some(low), None) => format!("{flag} must be at least {low}, got {value}"),
            (None, Some(high)) => format!("{flag} must be at most {high}, got {value}"),
            (None, None) => format!("{flag} is out of range, got {value}"),
        },
    )
}

/// A `*_seconds` flag as a [`Duration`]: any decimal number of seconds
/// within `range` (which also refuses NaN and infinities, so the conversion
/// cannot panic).
///
/// # Errors
/// [`in_range`]'s message naming the flag.
fn seconds(
    flag: &str,
    value: f64,
    range: std::ops::RangeInclusive<f64>,
) -> Result<Duration, String> {
    debug_assert!(range.start().is_finite() && range.end().is_finite());
    in_range(flag, value, range)?;
    Ok(Duration::from_secs_f64(value))
}

fn check(ok: bool, message: impl Into<String>) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(message.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::FailMode;
    use clap::Parser;

    fn parse(args: &[&str]) -> Config {
        let mut all = vec!["transcription-server"];
        all.extend_from_slice(args);
        Config::try_parse_from(all).expect("flags parse")
    }

    #[test]
    fn defaults_resolve_from_the_machine() {
        let settings = parse(&[]).validate(6).expect("defaults are valid");
        assert_eq!(settings.cores, 6);
        assert_eq!(settings.model.workers, 6);
        assert_eq!(settings.listen_addr.port(), 8000);
        assert_eq!(settings.session.max_sessions, 1000);
        assert_eq!(settings.session.vad_mode, 2);
        assert_eq!(settings.session.max_segment_ms, 15_000);
    }

    #[test]
    fn bad_values_name_the_flag() {
        let cases: &[(&[&str], &str)] = &[
            (&["--cores", "0"], "--cores"),
            (&["--vad-mode", "7"], "--vad-mode"),
            (&["--model-workers", "0"], "--model-workers"),
            (&["--mock-rtf=-1"], "--mock-rtf"),
            (&["--max-segment-seconds", "0.5"], "--max-segment-seconds"),
            (&["--api-key", "has space"], "--api-key"),
            (
                &["--cors-allow-origins", "*,https://a.example"],
                "--cors-allow-origins",
            ),
            (
                &["--cors-allow-origins", "https://a.example/path"],
                "--cors-allow-origins",
            ),
            (
                &["--cors-allow-origins", "a.example"],
                "--cors-allow-origins",
            ),
            (&["--write-timeout-ms", "0"], "--write-timeout-ms"),
            (
                &["--max-session-seconds", "999999999"],
                "--max-session-seconds",
            ),
        ];
        for (args, flag) in cases {
            let err = parse(args).validate(2).expect_err("must be refused");
            assert!(err.contains(flag), "{err:?} should name {flag}");
        }
    }

    #[test]
    fn limits_that_are_off_by_default_turn_on_with_a_value() {
        let settings = parse(&[]).validate(2).expect("defaults are valid");
        assert_eq!(settings.session.max_sessions_per_peer, None);
        assert_eq!(settings.session.max_session_duration, None);
        assert_eq!(settings.http.cors, CorsOrigins::Off);
        let settings = parse(&[
            "--max-sessions-per-peer",
            "3",
            "--max-session-seconds",
            "60",
            "--cors-allow-origins",
            "https://a.example, http://localhost:3000",
        ])
        .validate(2)
        .expect("valid");
        assert_eq!(settings.session.max_sessions_per_peer, Some(3));
        assert_eq!(
            settings.session.max_session_duration,
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            settings.http.cors,
            CorsOrigins::List(vec![
                "https://a.example".to_string(),
                "http://localhost:3000".to_string()
            ])
        );
        assert_eq!(
            settings.http.cors.allow("https://a.example"),
            Some("https://a.example")
        );
        assert_eq!(settings.http.cors.allow("https://evil.example"), None);
        let any = parse(&["--cors-allow-origins", "*"])
            .validate(2)
            .expect("valid");
        assert_eq!(any.http.cors.allow("https://whoever.example"), Some("*"));
    }

    #[test]
    fn a_remote_engine_needs_redis_and_defaults_to_64_waiting_workers() {
        let local = parse(&[]).validate(2).expect("defaults are valid");
        assert!(!local.engine_tier.is_remote());
        assert_eq!(local.model.workers, 2);
        let error = parse(&["--engine", "remote"]).validate(2).unwrap_err();
        assert!(
            error.contains("--engine remote needs --redis-url"),
            "{error}"
        );
        let remote = parse(&[
            "--engine",
            "remote",
            "--redis-url",
            "redis://127.0.0.1:6379/0",
        ])
        .validate(2)
        .expect("valid");
        assert!(remote.engine_tier.is_remote());
        assert_eq!(remote.model.workers, 64);
        let error = parse(&["--engine-claim-idle-ms", "10"])
            .validate(2)
            .unwrap_err();
        assert!(error.contains("--engine-claim-idle-ms"), "{error}");
    }

    #[test]
    fn cluster_mode_is_off_by_default_and_on_with_a_redis_url() {
        let settings = parse(&[]).validate(2).expect("defaults are valid");
        assert_eq!(settings.cluster, None);
        let settings = parse(&["--port", "8100", "--redis-url", "redis://127.0.0.1:6379/0"])
            .validate(2)
            .expect("valid");
        let cluster = settings.cluster.expect("cluster mode");
        assert_eq!(cluster.node_id, crate::cluster::default_node_id(8100));
        assert_eq!(
            cluster.advertise_url,
            crate::cluster::default_advertise_url(8100)
        );
        assert_eq!(cluster.cluster_max_sessions, None);
        assert_eq!(cluster.fail_mode, FailMode::Open);
        let cluster = parse(&[
            "--redis-url",
            "redis://127.0.0.1:6379/0",
            "--node-id",
            "a",
            "--advertise-url",
            "http://a:8000",
            "--cluster-max-sessions",
            "5",
            "--cluster-fail-mode",
            "closed",
        ])
        .validate(2)
        .expect("valid")
        .cluster
        .expect("cluster mode");
        assert_eq!(
            (cluster.node_id.as_str(), cluster.advertise_url.as_str()),
            ("a", "http://a:8000")
        );
        assert_eq!(cluster.cluster_max_sessions, Some(5));
        assert_eq!(cluster.fail_mode, FailMode::Closed);
    }

    #[test]
    fn bad_cluster_values_name_the_flag() {
        let url = "redis://127.0.0.1:6379/0";
        let cases: &[(&[&str], &str)] = &[
            (&["--redis-url", "http://nope"], "--redis-url"),
            (&["--redis-url", url, "--node-id", "has space"], "--node-id"),
            (
                &["--redis-url", url, "--cluster-max-sessions", "0"],
                "--cluster-max-sessions",
            ),
            (&["--cluster-max-sessions", "3"], "--cluster-max-sessions"),
            (&["--redis-url", url, "--port", "0"], "--node-id"),
            (
                &["--redis-url", url, "--cluster-ttl-ms", "100"],
                "--cluster-ttl-ms",
            ),
        ];
        for (args, flag) in cases {
            let err = parse(args).validate(2).expect_err("must be refused");
            assert!(err.contains(flag), "{err:?} should name {flag}");
        }
        let err = Config::try_parse_from(["transcription-server", "--cluster-fail-mode", "maybe"])
            .expect_err("not a fail mode");
        assert!(err.to_string().contains("--cluster-fail-mode"));
    }

    #[test]
    fn every_seconds_setting_takes_fractions_as_a_flag_and_a_variable() {
        let settings = parse(&[
            "--session-cleanup-interval-seconds",
            "0.2",
            "--session-idle-timeout-seconds",
            "1.5",
            "--keepalive-timeout-seconds",
            "2.25",
            "--max-session-seconds",
            "0.75",
            "--shutdown-grace-seconds",
            "0.5",
            "--drain-delay-seconds",
            "0.25",
        ])
        .validate(2)
        .expect("fractions are valid");
        assert_eq!(
            settings.session.cleanup_interval,
            Duration::from_millis(200)
        );
        assert_eq!(settings.session.idle_timeout, Duration::from_millis(1500));
        assert_eq!(settings.http.keepalive_timeout, Duration::from_millis(2250));
        assert_eq!(
            settings.session.max_session_duration,
            Some(Duration::from_millis(750))
        );
        assert_eq!(settings.shutdown_grace, Duration::from_millis(500));
        assert_eq!(settings.drain_delay, Duration::from_millis(250));
        for (flag, value) in [
            ("--session-idle-timeout-seconds", "0"),
            ("--session-cleanup-interval-seconds", "0.001"),
            ("--keepalive-timeout-seconds", "NaN"),
            ("--shutdown-grace-seconds", "inf"),
            ("--drain-delay-seconds", "-0.5"),
            ("--max-session-seconds", "604800.5"),
        ] {
            let err = parse(&[&format!("{flag}={value}")])
                .validate(2)
                .expect_err(value);
            assert!(err.contains(flag), "{err:?} should name {flag}");
        }
    }

    #[test]
    fn non_numbers_are_refused_by_the_parser() {
        let err = Config::try_parse_from(["transcription-server", "--port", "eighty"])
            .expect_err("not a port");
        assert!(err.to_string().contains("--port"));
    }

    #[test]
    fn the_resume_window_is_off_by_default_fractional_and_bounded() {
        let settings = parse(&[]).validate(2).expect("defaults are valid");
        assert_eq!(settings.session.resume_window, None);
        let settings = parse(&["--resume-window-seconds", "2.5"])
            .validate(2)
            .expect("valid");
        assert_eq!(
            settings.session.resume_window,
            Some(Duration::from_millis(2500))
        );
        for value in ["-1", "NaN", "86400.5"] {
            let err = parse(&[&format!("--resume-window-seconds={value}")])
                .validate(2)
                .expect_err(value);
            assert!(err.contains("--resume-window-seconds"), "{err:?}");
        }
    }
}
