//! `idle`: many open, silent WebSocket sessions — what an idle session costs
//! the server (RSS per session) and whether its session count is right.
//!
//! A few threads (default 4; not one per session) open `N` sessions spread
//! evenly over `ramp`, read and discard each `session_start`, and keep the
//! sockets in `Vec`s. While holding, every session gets
//! `{"type":"keepalive"}` every `keepalive` (20 s) so the server's idle timer
//! never fires; nothing else is read or sent. Once all are open the driver
//! reads the server's `VmRSS` (with `--server-pid`) and `GET /v1/health`
//! (`active_sessions`), holds for `hold`, reads both again, then every
//! thread sends a close frame on each socket and waits (bounded) for the
//! server's close and the end of the TCP connection.
//!
//! The process raises its own `RLIMIT_NOFILE` soft limit to the hard limit
//! first, since it needs one descriptor per session.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use tungstenite::Message;

use crate::http::{build_request, HttpClient};
use crate::stats::round;
use crate::sys;
use crate::target::Target;
use crate::ws::{self, Socket, WsFailure};

/// The path exercised.
pub const PATH: &str = "/v1/transcribe/stream";

/// Largest number of idle sessions.
pub const MAX_SESSIONS: usize = 100_000;

/// File descriptors kept free for everything else (stdio, health checks, …).
const SPARE_FDS: u64 = 32;

/// What to run.
#[derive(Debug, Clone)]
pub struct IdleOptions {
    /// Where (already checked to be loopback).
    pub target: Target,
    /// Extra upgrade/health request headers (e.g. `Authorization`).
    pub headers: Vec<(String, String)>,
    /// Bound on each connect, handshake, read and write.
    pub timeout: Duration,
    /// Sessions to open.
    pub sessions: usize,
    /// Opening is spread evenly over this time.
    pub ramp: Duration,
    /// How long to hold them all open.
    pub hold: Duration,
    /// The server's process id, for `VmRSS`.
    pub server_pid: Option<u32>,
    /// Interval between keepalives on each session.
    pub keepalive: Duration,
    /// Threads that open and hold the sockets.
    pub threads: usize,
    /// Extra query parameters for the upgrade (URL-encoded, without `?`).
    pub query: Option<String>,
}

impl IdleOptions {
    /// Checks the settings are within sane bounds.
    pub fn validate(&self) -> Result<()> {
        if self.sessions == 0 || self.sessions > MAX_SESSIONS {
            bail!("--sessions must be between 1 and {MAX_SESSIONS}");
        }
        if self.ramp > Duration::from_secs(3600) || self.hold > Duration::from_secs(24 * 3600) {
            bail!("--ramp must be at most 1h and --hold at most 24h");
        }
        if self.keepalive < Duration::from_millis(100) {
            bail!("--keepalive must be at least 100ms");
        }
        if self.threads == 0 || self.threads > 64 {
            bail!("--threads must be between 1 and 64");
        }
        if self.timeout.is_zero() {
            bail!("--timeout must be more than 0");
        }
        if let Some(q) = &self.query {
            if q.contains([' ', '\r', '\n', '#']) {
                bail!("--query must be a URL-encoded query string");
            }
        }
        Ok(())
    }

    fn path_and_query(&self) -> String {
        match self
            .query
            .as_deref()
            .map(|q| q.trim_start_matches(['?', '&']))
        {
            Some(q) if !q.is_empty() => format!("{PATH}?{q}"),
            _ => PATH.to_string(),
        }
    }
}

/// What one holding thread saw.
#[derive(Debug, Default)]
struct ThreadStats {
    opened: u64,
    failed: u64,
    /// Sessions lost while holding (a keepalive could not be sent).
    lost: u64,
    keepalives: u64,
    /// Sessions that ended with the server's close frame and a clean EOF.
    closed_clean: u64,
    errors: BTreeMap<String, u64>,
    first_failure: Option<String>,
}

impl ThreadStats {
    fn error(&mut self, f: &WsFailure) {
        *self.errors.entry(f.key.clone()).or_insert(0) += 1;
        if self.first_failure.is_none() {
            self.first_failure = Some(format!("{}: {}", f.key, f.detail));
        }
    }
}

/// State shared by the holding threads and the driver.
struct Shared {
    done_opening: AtomicUsize,
    stop: AtomicBool,
}

/// One finished `idle` run.
#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    pub scenario: &'static str,
    pub sessions: usize,
    pub opened: u64,
    pub failed: u64,
    pub rss_before_kb: Option<u64>,
    pub rss_after_kb: Option<u64>,
    pub rss_per_session_kb: Option<f64>,
    pub active_sessions_seen: Option<u64>,
    pub rss_after_hold_kb: Option<u64>,
    pub active_sessions_end_of_hold: Option<u64>,
    pub active_sessions_after_close: Option<u64>,
    pub closed_clean: u64,
    pub lost: u64,
    pub keepalives: u64,
    pub open_s: f64,
    pub hold_s: f64,
    pub errors: BTreeMap<String, u64>,
    pub first_failure: Option<String>,
    pub nofile_limit: Option<u64>,
}

/// RSS growth per session in kB (one decimal), when it can be computed.
pub fn rss_per_session(before: Option<u64>, after: Option<u64>, opened: u64) -> Option<f64> {
    match (before, after) {
        (Some(b), Some(a)) if opened > 0 => Some(round((a as f64 - b as f64) / opened as f64, 1)),
        _ => None,
    }
}

/// `GET /v1/health` and its `active_sessions`.
fn active_sessions(opts: &IdleOptions) -> Result<u64, String> {
    let mut client = HttpClient::new(opts.target.clone(), opts.timeout);
    let req = build_request("GET", &opts.target, "/v1/health", &opts.headers, None);
    let info = client.send(&req, false).map_err(|e| e.to_string())?;
    if info.status != 200 {
        return Err(format!("/v1/health answered {}", info.status));
    }
    let v: serde_json::Value =
        serde_json::from_slice(client.body()).map_err(|e| format!("health body: {e}"))?;
    v.get("active_sessions")
        .and_then(|n| n.as_u64())
        .ok_or_else(|| "no active_sessions in /v1/health".to_string())
}

/// Runs the scenario once.
pub fn run(opts: &IdleOptions) -> Result<IdleReport> {
    opts.validate()?;
    let _progress = crate::runner::TimeProgress::start(
        &format!("{} idle sessions", opts.sessions),
        opts.ramp + opts.hold,
    );
    let nofile = match sys::raise_nofile_limit() {
        Ok(n) => Some(n),
        Err(e) => {
            eprintln!("warning: {e:#}");
            None
        }
    };
    if let Some(n) = nofile {
        if opts.sessions as u64 + SPARE_FDS > n {
            bail!(
                "{} sessions need more file descriptors than RLIMIT_NOFILE allows ({n})",
                opts.sessions
            );
        }
    }
    let rss = |pid: Option<u32>| -> Result<Option<u64>> { pid.map(sys::vm_rss_kb).transpose() };
    let rss_before = rss(opts.server_pid).context("--server-pid")?;
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut first_failure = None;
    let health = |errors: &mut BTreeMap<String, u64>| match active_sessions(opts) {
        Ok(n) => Some(n),
        Err(e) => {
            *errors.entry("health".into()).or_insert(0) += 1;
            eprintln!("warning: health check: {e}");
            None
        }
    };

    let shared = Shared {
        done_opening: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
    };
    let threads = opts.threads.min(opts.sessions);
    let path = opts.path_and_query();
    let t0 = Instant::now();
    let mut open_s = 0.0;
    let mut hold_s = 0.0;
    let (mut rss_after, mut rss_after_hold) = (None, None);
    let (mut seen, mut end_of_hold) = (None, None);
    let mut totals = ThreadStats::default();
    thread::scope(|s| -> Result<()> {
        let mut handles = Vec::new();
        for t in 0..threads {
            let (shared, path) = (&shared, path.as_str());
            let spawned = thread::Builder::new()
                .name(format!("idle-{t}"))
                .stack_size(256 * 1024)
                .spawn_scoped(s, move || hold_thread(opts, path, t, threads, t0, shared));
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    shared.stop.store(true, Ordering::Relaxed);
                    bail!("cannot start thread {t}: {e}");
                }
            }
        }
        while shared.done_opening.load(Ordering::Relaxed) < handles.len() {
            if handles.iter().any(|h| h.is_finished()) {
                break; // a thread ended early (it cannot, short of a panic)
            }
            thread::sleep(Duration::from_millis(20));
        }
        open_s = t0.elapsed().as_secs_f64();
        let after = rss(opts.server_pid);
        seen = health(&mut errors);
        let hold_start = Instant::now();
        while hold_start.elapsed() < opts.hold {
            thread::sleep((opts.hold - hold_start.elapsed()).min(Duration::from_millis(100)));
        }
        hold_s = hold_start.elapsed().as_secs_f64();
        let after_hold = rss(opts.server_pid);
        end_of_hold = health(&mut errors);
        shared.stop.store(true, Ordering::Relaxed);
        for h in handles {
            match h.join() {
                Ok(ts) => {
                    totals.opened += ts.opened;
                    totals.failed += ts.failed;
                    totals.lost += ts.lost;
                    totals.keepalives += ts.keepalives;
                    totals.closed_clean += ts.closed_clean;
                    for (k, v) in ts.errors {
                        *errors.entry(k).or_insert(0) += v;
                    }
                    if first_failure.is_none() {
                        first_failure = ts.first_failure;
                    }
                }
                Err(_) => bail!("an idle thread panicked"),
            }
        }
        // The server may have gone away while holding: report what was seen.
        rss_after = after.ok().flatten();
        rss_after_hold = after_hold.ok().flatten();
        Ok(())
    })?;
    // Closing is asynchronous on the server: give it a moment to count down.
    let mut after_close = health(&mut errors);
    let deadline = Instant::now() + Duration::from_secs(5);
    while after_close.is_some_and(|n| n > 0) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
        after_close = health(&mut errors);
    }
    Ok(IdleReport {
        scenario: "idle",
        sessions: opts.sessions,
        opened: totals.opened,
        failed: totals.failed,
        rss_before_kb: rss_before,
        rss_after_kb: rss_after,
        rss_per_session_kb: rss_per_session(rss_before, rss_after, totals.opened),
        active_sessions_seen: seen,
        rss_after_hold_kb: rss_after_hold,
        active_sessions_end_of_hold: end_of_hold,
        active_sessions_after_close: after_close,
        closed_clean: totals.closed_clean,
        lost: totals.lost,
        keepalives: totals.keepalives,
        open_s: round(open_s, 3),
        hold_s: round(hold_s, 3),
        errors,
        first_failure,
        nofile_limit: nofile,
    })
}

/// Opens one session and reads its `session_start`.
fn open_one(opts: &IdleOptions, path: &str) -> Result<Socket, WsFailure> {
    let mut socket = ws::connect(
        &opts.target,
        path,
        &opts.headers,
        opts.timeout,
        Some(ws::small_config()),
    )?;
    loop {
        match socket.read() {
            Ok(Message::Text(t)) => {
                let v: serde_json::Value = serde_json::from_str(t.as_str())
                    .map_err(|e| WsFailure::new("bad_message", format!("not JSON: {e}")))?;
                return match v.get("type").and_then(|t| t.as_str()) {
                    Some("session_start") => Ok(socket),
                    Some("error") => {
                        let code = v.get("code").and_then(|c| c.as_str()).unwrap_or("");
                        Err(WsFailure::new(
                            format!("error_{code}"),
                            format!("server refused the session: {t}"),
                        ))
                    }
                    _ => Err(WsFailure::new(
                        "bad_message",
                        format!("expected session_start, got {t}"),
                    )),
                };
            }
            Ok(Message::Close(frame)) => {
                let code = frame.map_or(1005, |f| u16::from(f.code));
                return Err(WsFailure::new(
                    format!("close_{code}"),
                    "closed before session_start",
                ));
            }
            Ok(_) => continue, // ping/pong/binary: not expected, harmless
            Err(e) => {
                let mut f = ws::classify(&e);
                f.detail = format!("waiting for session_start: {}", f.detail);
                return Err(f);
            }
        }
    }
}

/// Sends the keepalives that are due; drops sessions that cannot be written.
fn keepalives(socks: &mut Vec<(Socket, Instant)>, every: Duration, st: &mut ThreadStats) {
    let now = Instant::now();
    socks.retain_mut(|(socket, due)| {
        if *due > now {
            return true;
        }
        *due += every;
        match socket.send(Message::text(r#"{"type":"keepalive"}"#)) {
            Ok(()) => {
                st.keepalives += 1;
                true
            }
            Err(e) => {
                let mut f = ws::classify(&e);
                f.key = format!("keepalive_{}", f.key);
                st.error(&f);
                st.lost += 1;
                false
            }
        }
    });
}

/// Sleeps until `when` (or a stop), sending keepalives meanwhile.
fn wait_until(
    when: Instant,
    socks: &mut Vec<(Socket, Instant)>,
    every: Duration,
    st: &mut ThreadStats,
    shared: &Shared,
) {
    loop {
        keepalives(socks, every, st);
        let now = Instant::now();
        if now >= when || shared.stop.load(Ordering::Relaxed) {
            return;
        }
        thread::sleep((when - now).min(Duration::from_millis(100)));
    }
}

/// One holding thread: opens sessions `t, t+threads, …`, keeps them alive
/// until told to stop, then closes them.
fn hold_thread(
    opts: &IdleOptions,
    path: &str,
    t: usize,
    threads: usize,
    t0: Instant,
    shared: &Shared,
) -> ThreadStats {
    let mut st = ThreadStats::default();
    let mut socks: Vec<(Socket, Instant)> = Vec::new();
    let n = opts.sessions as u32;
    for i in (t..opts.sessions).step_by(threads) {
        let at = t0 + opts.ramp * i as u32 / n;
        wait_until(at, &mut socks, opts.keepalive, &mut st, shared);
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        match open_one(opts, path) {
            Ok(s) => {
                st.opened += 1;
                socks.push((s, Instant::now() + opts.keepalive));
            }
            Err(f) => {
                st.failed += 1;
                st.error(&f);
            }
        }
    }
    shared.done_opening.fetch_add(1, Ordering::Relaxed);
    while !shared.stop.load(Ordering::Relaxed) {
        keepalives(&mut socks, opts.keepalive, &mut st);
        thread::sleep(Duration::from_millis(100));
    }
    close_all(socks, opts.timeout.min(Duration::from_secs(10)), &mut st);
    st
}

/// Sends a close frame on every socket, then waits (within `limit` in total)
/// for each server close and end of connection.
fn close_all(socks: Vec<(Socket, Instant)>, limit: Duration, st: &mut ThreadStats) {
    let deadline = Instant::now() + limit;
    let mut closing = Vec::with_capacity(socks.len());
    for (mut socket, _) in socks {
        match socket.close(None).and_then(|()| socket.flush()) {
            Ok(()) => closing.push(socket),
            Err(e) => {
                let mut f = ws::classify(&e);
                f.key = format!("close_{}", f.key);
                st.error(&f);
            }
        }
    }
    for mut socket in closing {
        let mut got_close = false;
        let clean = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                st.error(&WsFailure::new(
                    "close_timeout",
                    "no close from the server in time",
                ));
                break false;
            }
            if socket
                .get_mut()
                .set_read_timeout(Some(left.min(Duration::from_secs(1))))
                .is_err()
            {
                break false;
            }
            match socket.read() {
                Ok(Message::Close(_)) => got_close = true,
                Ok(_) => {} // e.g. a session_end: discarded
                Err(tungstenite::Error::ConnectionClosed) => break got_close,
                Err(e) if ws::is_would_block(&e) => {}
                Err(e) => {
                    let mut f = ws::classify(&e);
                    f.key = format!("close_{}", f.key);
                    st.error(&f);
                    break false;
                }
            }
        };
        if clean {
            st.closed_clean += 1;
        }
    }
}

impl IdleReport {
    /// The report as one line of JSON (no trailing newline).
    pub fn json_line(&self) -> String {
        // Plain numbers, strings and string-keyed maps: cannot fail.
        serde_json::to_string(self).expect("report serializes")
    }

    /// Writes the human summary (several lines, none starting with `{`).
    pub fn write_human<W: Write>(&self, out: &mut W) -> io::Result<()> {
        let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
        writeln!(
            out,
            "scenario    idle  ({} sessions opened in {:.2}s, held {:.2}s)",
            self.sessions, self.open_s, self.hold_s
        )?;
        writeln!(
            out,
            "sessions    {} opened, {} failed, {} lost while holding, {} closed cleanly, {} keepalives",
            self.opened, self.failed, self.lost, self.closed_clean, self.keepalives
        )?;
        writeln!(
            out,
            "server      active_sessions {} when open, {} at end of hold, {} after close",
            opt(self.active_sessions_seen),
            opt(self.active_sessions_end_of_hold),
            opt(self.active_sessions_after_close)
        )?;
        if self.rss_before_kb.is_some() {
            writeln!(
                out,
                "server rss  {} kB before, {} kB all open, {} kB after hold: {} kB per session",
                opt(self.rss_before_kb),
                opt(self.rss_after_kb),
                opt(self.rss_after_hold_kb),
                self.rss_per_session_kb
                    .map_or("-".to_string(), |v| format!("{v:.1}"))
            )?;
        }
        if !self.errors.is_empty() {
            let e: Vec<String> = self
                .errors
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            writeln!(out, "errors      {}", e.join(", "))?;
        }
        if let Some(f) = &self.first_failure {
            writeln!(out, "first fail  {f}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_per_session_math() {
        assert_eq!(
            rss_per_session(Some(10_000), Some(30_000), 1000),
            Some(20.0)
        );
        assert_eq!(rss_per_session(Some(10_000), Some(10_050), 3), Some(16.7));
        assert_eq!(rss_per_session(Some(10_000), Some(9_000), 100), Some(-10.0));
        assert_eq!(rss_per_session(None, Some(1), 1), None);
        assert_eq!(rss_per_session(Some(1), Some(2), 0), None);
    }

    #[test]
    fn json_starts_with_the_documented_fields() {
        let r = IdleReport {
            scenario: "idle",
            sessions: 2,
            opened: 2,
            failed: 0,
            rss_before_kb: Some(100),
            rss_after_kb: Some(140),
            rss_per_session_kb: Some(20.0),
            active_sessions_seen: Some(2),
            rss_after_hold_kb: Some(140),
            active_sessions_end_of_hold: Some(2),
            active_sessions_after_close: Some(0),
            closed_clean: 2,
            lost: 0,
            keepalives: 0,
            open_s: 0.1,
            hold_s: 1.0,
            errors: BTreeMap::new(),
            first_failure: None,
            nofile_limit: Some(20000),
        };
        assert!(r.json_line().starts_with(
            r#"{"scenario":"idle","sessions":2,"opened":2,"failed":0,"rss_before_kb":100,"rss_after_kb":140,"rss_per_session_kb":20.0,"active_sessions_seen":2,"#
        ));
        let mut human = Vec::new();
        r.write_human(&mut human).unwrap();
        assert!(String::from_utf8(human)
            .unwrap()
            .contains("20.0 kB per session"));
    }

    #[test]
    fn validates() {
        let o = IdleOptions {
            target: Target::parse("http://127.0.0.1:8000").unwrap(),
            headers: Vec::new(),
            timeout: Duration::from_secs(1),
            sessions: 10,
            ramp: Duration::ZERO,
            hold: Duration::ZERO,
            server_pid: None,
            keepalive: Duration::from_secs(20),
            threads: 4,
            query: None,
        };
        assert!(o.validate().is_ok());
        assert_eq!(o.path_and_query(), PATH);
        assert!(IdleOptions {
            sessions: 0,
            ..o.clone()
        }
        .validate()
        .is_err());
        assert!(IdleOptions {
            threads: 0,
            ..o.clone()
        }
        .validate()
        .is_err());
        assert!(IdleOptions {
            keepalive: Duration::ZERO,
            ..o
        }
        .validate()
        .is_err());
    }
}
