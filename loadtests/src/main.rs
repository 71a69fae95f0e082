//! `loadgen`: the command line of the load generator.
//!
//! Parses arguments, enforces the loopback-only rule on `--url`, builds the
//! chosen scenario, runs it once or at each `--sweep` level, and prints for
//! every run a human summary followed by exactly one JSON line on stdout.
//! `health` and `transcribe` go through the generic runner; the WebSocket
//! scenarios `stream` and `idle` have their own drivers and reports, and `soak`
//! combines streams, batch clients and operator polling.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use loadtests::dialect::Dialect;
use loadtests::runner::{self, RunConfig, Scenario};
use loadtests::scenarios::idle::IdleOptions;
use loadtests::scenarios::soak::SoakOptions;
use loadtests::scenarios::stream::{Driver, StreamOptions, StreamReport};
use loadtests::scenarios::{self, transcribe::TranscribeOptions, HttpOptions};
use loadtests::stats::Report;
use loadtests::target::Target;
use loadtests::wav;

/// Load generator for transcription-server. Targets only this machine
/// (127.0.0.0/8, localhost, `[::1]`).
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, about, max_term_width = 100)]
struct Cli {
    /// Base URL of the server; the host must be a loopback address.
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:8000",
        env = "LOADGEN_URL"
    )]
    url: String,

    /// API key sent as `Authorization: Bearer <key>` (when auth is on).
    #[arg(
        long,
        global = true,
        env = "TRANSCRIBE_API_KEY",
        hide_env_values = true
    )]
    api_key: Option<String>,

    /// Print only the JSON line(s), no human summary.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    scenario: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// GET /v1/health in a loop.
    Health {
        #[command(flatten)]
        run: RunArgs,
    },
    /// POST /v1/transcribe with an audio file in a loop.
    Transcribe {
        /// Audio file sent as the request body.
        #[arg(long, short = 'f')]
        file: PathBuf,
        /// Content-Type of the body.
        #[arg(long, default_value = "audio/wav")]
        content_type: String,
        /// Query string for the request, e.g. `vad_mode=3&words=true`.
        #[arg(long)]
        query: Option<String>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// WebSocket streaming sessions (/v1/transcribe/stream) sending a WAV in
    /// real time; measures transcript lag and checks message ordering.
    Stream(StreamArgs),
    /// Many idle WebSocket sessions: server RSS per session and its
    /// active_sessions count.
    Idle(IdleArgs),
    /// A long mixed load: continuous streaming sessions (some dropped
    /// abruptly, some deleted by the operator), batch transcriptions and
    /// operator polling; watches lost finals, server RSS and active_sessions.
    Soak(SoakArgs),
}

/// Options of the `soak` scenario.
#[derive(Debug, Args)]
struct SoakArgs {
    /// How long to keep the load on, e.g. `30m`.
    #[arg(long, short = 'd', default_value = "30m", value_parser = parse_duration)]
    duration: Duration,

    /// Streaming sessions kept going at all times.
    #[arg(long, short = 's', default_value_t = 200)]
    streams: usize,

    /// Keep-alive clients POSTing the file to /v1/transcribe in a closed loop.
    #[arg(long, default_value_t = 4)]
    batch_connections: usize,

    /// WAV file (PCM 16-bit mono) streamed and POSTed.
    #[arg(long, short = 'f', default_value = "tests/fixtures/two_utterances.wav")]
    file: PathBuf,

    /// The server's process id: its VmRSS is sampled every 10 s.
    #[arg(long)]
    server_pid: Option<u32>,

    /// Fraction of sessions that drop the TCP connection mid-stream without
    /// a close frame.
    #[arg(long, default_value_t = 0.05)]
    disconnect_rate: f64,

    /// Fraction of the other sessions that the operator deletes
    /// (`DELETE /v1/sessions/{id}`) at a random 20-80% of their length; each
    /// must get session_end `terminated` and close 1000. 0 turns it off.
    #[arg(long, default_value_t = 0.03)]
    delete_fraction: f64,

    /// Admin key for the operator requests (session endpoints, /metrics,
    /// DELETEs), sent as `Authorization: Bearer <key>`; default: --api-key.
    #[arg(long, env = "TRANSCRIBE_ADMIN_KEY", hide_env_values = true)]
    admin_key: Option<String>,

    /// Shortest audio a session streams before `end`.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    min_length: Duration,

    /// Longest audio a session streams before `end`.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    max_length: Duration,

    /// Start the first --streams sessions evenly over this time.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    ramp: Duration,

    /// Worker threads of the mux driver.
    #[arg(long, default_value_t = 2)]
    threads: usize,

    /// Seed for session lengths and disconnects (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,

    /// Bound on connects, handshakes, each read and write, and the wait for
    /// session_end after `end`.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
}

/// Options of the `stream` scenario.
#[derive(Debug, Args)]
struct StreamArgs {
    /// WAV file (PCM 16-bit mono) whose audio each session streams, looped.
    #[arg(long, short = 'f')]
    file: PathBuf,

    /// Concurrent sessions.
    #[arg(long, short = 's', default_value_t = 10)]
    sessions: usize,

    /// How sessions are driven: `mux` = --threads workers multiplexing
    /// non-blocking sockets; `threads` = one OS thread per session.
    #[arg(long, value_enum, default_value_t = Driver::Mux)]
    driver: Driver,

    /// Worker threads of the mux driver (each owns about sessions/threads).
    #[arg(long, default_value_t = 2)]
    threads: usize,

    /// The server's process id: its CPU time over each run is reported
    /// (`server_cpu_s`).
    #[arg(long)]
    server_pid: Option<u32>,

    /// Start the sessions evenly over this time.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    ramp: Duration,

    /// Audio each session streams (wall time with --no-pace), rounded up to
    /// whole loops of the file.
    #[arg(long, short = 'd', default_value = "30s", value_parser = parse_duration)]
    duration: Duration,

    /// Milliseconds of audio per binary frame.
    #[arg(long, default_value_t = 20)]
    chunk_ms: u32,

    /// Send as fast as possible instead of in real time (reports audio
    /// seconds processed per wall second).
    #[arg(long)]
    no_pace: bool,

    /// Ask for interim transcripts (`interim_results`).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "true|false")]
    interim: bool,

    /// Extra query parameters for the upgrade, e.g. `vad_mode=3`.
    #[arg(long)]
    query: Option<String>,

    /// The wire dialect: `native` (`/v1/transcribe/stream`), `deepgram`
    /// (`/v1/listen`, the key as `Authorization: Token`) or `openai` (OpenAI
    /// Realtime transcription on `/v1/realtime`; the WAV is sent resampled
    /// to 24 kHz as base64 `append` events; mux driver only).
    #[arg(long, value_enum, default_value_t = Dialect::Native)]
    dialect: Dialect,

    /// Run once per session count in this list, e.g. `10,50,100,200`
    /// (replaces --sessions); one JSON line per level.
    #[arg(long, value_delimiter = ',', conflicts_with = "sessions")]
    sweep: Option<Vec<usize>>,

    /// Interim-lag p99 target (ms) for the sweep summary.
    #[arg(long, default_value_t = 50.0)]
    lag_target_ms: f64,

    /// Bound on connecting, the handshake, each write, and the wait for
    /// session_end and the close after `end`.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
}

/// Options of the `idle` scenario.
#[derive(Debug, Args)]
struct IdleArgs {
    /// Sessions to open and hold.
    #[arg(long, short = 's', default_value_t = 100)]
    sessions: usize,

    /// Open the sessions evenly over this time.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    ramp: Duration,

    /// How long to hold them all open.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    hold: Duration,

    /// The server's process id: its VmRSS is read before and after opening.
    #[arg(long)]
    server_pid: Option<u32>,

    /// Interval between `{"type":"keepalive"}` messages on each session.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    keepalive: Duration,

    /// Threads that open and hold the sockets.
    #[arg(long, default_value_t = 4)]
    threads: usize,

    /// Extra query parameters for the upgrade.
    #[arg(long)]
    query: Option<String>,

    /// Bound on each connect, handshake, read and write.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
}

/// Options shared by every scenario.
#[derive(Debug, Args)]
struct RunArgs {
    /// Concurrent keep-alive connections (one thread each).
    #[arg(long, short = 'c', default_value_t = 8)]
    connections: usize,

    /// Measured time per run, e.g. `10s`, `500ms`, `2m` (a bare number is seconds).
    #[arg(long, short = 'd', default_value = "10s", value_parser = parse_duration)]
    duration: Duration,

    /// Time before the measurement whose results are discarded.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    warmup: Duration,

    /// Also stop after this many measured requests (in total).
    #[arg(long, short = 'n')]
    requests: Option<u64>,

    /// Open loop at this total rate (requests/s), latency measured from each
    /// request's intended send time; default is closed loop.
    #[arg(long, short = 'r')]
    rate: Option<f64>,

    /// Run once per connection count in this list, e.g. `1,2,4,8,16,32`
    /// (replaces --connections); one JSON line per level.
    #[arg(long, value_delimiter = ',', conflicts_with = "connections")]
    sweep: Option<Vec<usize>>,

    /// Timeout for connecting and for each socket read or write.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
}

/// Parses `250ms`, `10s`, `1.5s`, `2m`, `1h` or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (try 10s, 500ms, 2m)"))?;
    let secs = match unit.trim() {
        "" | "s" | "sec" | "secs" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit `{other}` (use ms, s, m or h)"
            ))
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("`{text}`: {e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: &Cli) -> Result<()> {
    // The loopback-only check comes first, for every scenario.
    let target = Target::parse(&cli.url)?;
    let (scenario, args): (Box<dyn Scenario>, &RunArgs) = match &cli.scenario {
        Command::Stream(args) => return run_stream(cli, target, args),
        Command::Idle(args) => return run_idle(cli, target, args),
        Command::Soak(args) => return run_soak(cli, target, args),
        Command::Health { run } => {
            let opts = HttpOptions::new(target, run.timeout, cli.api_key.as_deref());
            (Box::new(scenarios::health::scenario(&opts)), run)
        }
        Command::Transcribe {
            file,
            content_type,
            query,
            run,
        } => {
            let opts = HttpOptions::new(target, run.timeout, cli.api_key.as_deref());
            let t = TranscribeOptions {
                file,
                content_type,
                query: query.as_deref(),
            };
            (Box::new(scenarios::transcribe::scenario(&opts, &t)?), run)
        }
    };
    if args.timeout.is_zero() {
        bail!("--timeout must be more than 0");
    }
    let levels = match &args.sweep {
        Some(levels) if levels.is_empty() => bail!("--sweep needs at least one level"),
        Some(levels) => levels.clone(),
        None => vec![args.connections],
    };
    let base = RunConfig {
        connections: args.connections,
        duration: args.duration,
        warmup: args.warmup,
        requests: args.requests,
        rate: args.rate,
        progress: true,
    };
    // Check every level before running any, so a typo fails fast.
    for &connections in &levels {
        RunConfig {
            connections,
            ..base.clone()
        }
        .validate()?;
    }

    let mut reports = Vec::new();
    for &connections in &levels {
        let cfg = RunConfig {
            connections,
            ..base.clone()
        };
        let report = runner::run(scenario.as_ref(), &cfg)?;
        let mut out = io::stdout().lock();
        if !cli.json {
            report.write_human(&mut out).context("writing to stdout")?;
        }
        writeln!(out, "{}", report.json_line()).context("writing to stdout")?;
        out.flush().context("writing to stdout")?;
        reports.push(report);
    }
    if levels.len() > 1 && !cli.json {
        write_sweep_table(&mut io::stdout().lock(), &reports).context("writing to stdout")?;
    }
    Ok(())
}

/// Largest audio file `stream` loads into memory.
const MAX_WAV_BYTES: u64 = 512 * 1024 * 1024;

fn read_wav(path: &Path) -> Result<wav::Pcm16> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read audio file {}", path.display()))?;
    if meta.len() > MAX_WAV_BYTES {
        bail!("{} is larger than {MAX_WAV_BYTES} bytes", path.display());
    }
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read audio file {}", path.display()))?;
    wav::parse_pcm16_mono(&bytes).with_context(|| format!("{}", path.display()))
}

/// Prints a report: the human summary (unless `--json`), then its JSON line.
fn print_report(
    json_only: bool,
    human: impl FnOnce(&mut io::StdoutLock<'static>) -> io::Result<()>,
    json: &str,
) -> Result<()> {
    let mut out = io::stdout().lock();
    if !json_only {
        human(&mut out).context("writing to stdout")?;
    }
    writeln!(out, "{json}").context("writing to stdout")?;
    out.flush().context("writing to stdout")
}

fn run_stream(cli: &Cli, target: Target, args: &StreamArgs) -> Result<()> {
    let mut headers =
        HttpOptions::new(target.clone(), args.timeout, cli.api_key.as_deref()).headers;
    if let Some(key) = cli.api_key.as_deref() {
        headers.retain(|(name, _)| !name.eq_ignore_ascii_case("authorization"));
        headers.push(("Authorization".into(), args.dialect.authorization(key)));
    }
    let audio = Arc::new(args.dialect.audio(read_wav(&args.file)?));
    let levels = match &args.sweep {
        Some(levels) if levels.is_empty() => bail!("--sweep needs at least one level"),
        Some(levels) => levels.clone(),
        None => vec![args.sessions],
    };
    let base = StreamOptions {
        target,
        headers,
        timeout: args.timeout,
        audio,
        sessions: args.sessions,
        ramp: args.ramp,
        duration: args.duration,
        chunk_ms: args.chunk_ms,
        pace: !args.no_pace,
        interim: args.interim,
        query: args.query.clone(),
        dialect: args.dialect,
        driver: args.driver,
        threads: args.threads,
        server_pid: args.server_pid,
        deletes: None,
    };
    // Check every level before running any, so a typo fails fast.
    for &sessions in &levels {
        StreamOptions {
            sessions,
            ..base.clone()
        }
        .validate()?;
    }
    let mut reports = Vec::new();
    for &sessions in &levels {
        let report = scenarios::stream::run(&StreamOptions {
            sessions,
            ..base.clone()
        })?;
        print_report(cli.json, |out| report.write_human(out), &report.json_line())?;
        reports.push(report);
    }
    if levels.len() > 1 && !cli.json {
        write_stream_sweep_table(&mut io::stdout().lock(), &reports, args.lag_target_ms)
            .context("writing to stdout")?;
    }
    Ok(())
}

/// A compact table of a `stream` sweep, and the largest level that met the
/// interim-lag target with no failed session.
fn write_stream_sweep_table<W: Write>(
    out: &mut W,
    reports: &[StreamReport],
    target_ms: f64,
) -> io::Result<()> {
    writeln!(out, "sweep summary")?;
    writeln!(
        out,
        "{:>8} {:>9} {:>6} {:>10} {:>11} {:>11} {:>11} {:>10} {:>9} {:>11}",
        "sessions",
        "completed",
        "failed",
        "violations",
        "interim p99",
        "final p99",
        "final max",
        "x realtime",
        "send late",
        "loadgen cpu"
    )?;
    let mut best = None;
    for r in reports {
        let (i, f) = (r.interim_lag(), r.final_lag());
        writeln!(
            out,
            "{:>8} {:>9} {:>6} {:>10} {:>11.3} {:>11.3} {:>11.3} {:>10.2} {:>9.3} {:>11.2}",
            r.sessions,
            r.stats.completed,
            r.stats.failed,
            r.stats.violations,
            i.p99,
            f.p99,
            f.max,
            r.audio_x_realtime(),
            r.send_late().p99,
            r.loadgen_cpu.unwrap_or(f64::NAN)
        )?;
        if r.stats.failed == 0 && i.count > 0 && i.p99 < target_ms {
            best = best.max(Some(r.sessions));
        }
    }
    match best {
        Some(n) => writeln!(
            out,
            "largest level with interim-lag p99 < {target_ms} ms and no failed session: {n}"
        ),
        None => writeln!(
            out,
            "no level had interim-lag p99 < {target_ms} ms without failed sessions"
        ),
    }
}

fn run_idle(cli: &Cli, target: Target, args: &IdleArgs) -> Result<()> {
    let headers = HttpOptions::new(target.clone(), args.timeout, cli.api_key.as_deref()).headers;
    let opts = IdleOptions {
        target,
        headers,
        timeout: args.timeout,
        sessions: args.sessions,
        ramp: args.ramp,
        hold: args.hold,
        server_pid: args.server_pid,
        keepalive: args.keepalive,
        threads: args.threads,
        query: args.query.clone(),
    };
    let report = scenarios::idle::run(&opts)?;
    print_report(cli.json, |out| report.write_human(out), &report.json_line())
}

fn run_soak(cli: &Cli, target: Target, args: &SoakArgs) -> Result<()> {
    let http = HttpOptions::new(target.clone(), args.timeout, cli.api_key.as_deref());
    let audio = Arc::new(read_wav(&args.file)?);
    let batch = scenarios::transcribe::scenario(
        &http,
        &TranscribeOptions {
            file: &args.file,
            content_type: "audio/wav",
            query: None,
        },
    )?;
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let operator_headers = match &args.admin_key {
        Some(key) => HttpOptions::new(target.clone(), args.timeout, Some(key)).headers,
        None => http.headers.clone(),
    };
    let opts = SoakOptions {
        target,
        headers: http.headers.clone(),
        operator_headers,
        timeout: args.timeout,
        audio,
        batch,
        duration: args.duration,
        streams: args.streams,
        batch_connections: args.batch_connections,
        server_pid: args.server_pid,
        disconnect_rate: args.disconnect_rate,
        delete_fraction: args.delete_fraction,
        min_length: args.min_length,
        max_length: args.max_length,
        ramp: args.ramp,
        threads: args.threads,
        seed,
        progress: !cli.json,
    };
    let report = scenarios::soak::run(&opts)?;
    print_report(cli.json, |out| report.write_human(out), &report.json_line())
}

/// A compact table of a sweep: throughput and tail latency per level.
fn write_sweep_table<W: Write>(out: &mut W, reports: &[Report]) -> io::Result<()> {
    writeln!(out, "sweep summary")?;
    writeln!(
        out,
        "{:>11} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9}",
        "connections", "requests", "req/s", "errors", "p50 ms", "p99 ms", "max ms"
    )?;
    for r in reports {
        let l = r.latency();
        writeln!(
            out,
            "{:>11} {:>10} {:>10.1} {:>9} {:>9.3} {:>9.3} {:>9.3}",
            r.connections,
            r.stats.responses(),
            r.rps(),
            r.stats.error_count(),
            l.p50,
            l.p99,
            l.max
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn parses_the_documented_command_lines() {
        let cli = Cli::try_parse_from([
            "loadgen",
            "--url",
            "http://127.0.0.1:8000",
            "health",
            "--connections",
            "32",
            "--duration",
            "10s",
            "--warmup",
            "2s",
        ])
        .unwrap();
        assert!(matches!(cli.scenario, Command::Health { .. }));
        let cli = Cli::try_parse_from([
            "loadgen",
            "transcribe",
            "--file",
            "a.wav",
            "--sweep",
            "1,2,4",
            "--rate",
            "50",
        ])
        .unwrap();
        match cli.scenario {
            Command::Transcribe { run, .. } => {
                assert_eq!(run.sweep, Some(vec![1, 2, 4]));
                assert_eq!(run.rate, Some(50.0));
            }
            _ => panic!("expected transcribe"),
        }
    }

    #[test]
    fn parses_the_websocket_scenarios() {
        let cli = Cli::try_parse_from([
            "loadgen",
            "stream",
            "--file",
            "a.wav",
            "--sessions",
            "20",
            "--duration",
            "10s",
            "--no-pace",
            "--interim",
            "false",
            "--chunk-ms",
            "40",
            "--ramp",
            "0s",
        ])
        .unwrap();
        match cli.scenario {
            Command::Stream(a) => {
                assert_eq!(a.sessions, 20);
                assert!(a.no_pace);
                assert!(!a.interim);
                assert_eq!(a.chunk_ms, 40);
                assert_eq!(a.duration, Duration::from_secs(10));
                assert_eq!(a.ramp, Duration::ZERO);
            }
            _ => panic!("expected stream"),
        }
        let cli =
            Cli::try_parse_from(["loadgen", "stream", "-f", "a.wav", "--sweep", "10,50"]).unwrap();
        match cli.scenario {
            Command::Stream(a) => {
                assert_eq!(a.sweep, Some(vec![10, 50]));
                assert!(a.interim);
                assert_eq!(a.ramp, Duration::from_secs(5));
                assert_eq!(a.driver, Driver::Mux);
                assert_eq!(a.threads, 2);
                assert_eq!(a.server_pid, None);
            }
            _ => panic!("expected stream"),
        }
        let cli = Cli::try_parse_from([
            "loadgen",
            "idle",
            "--sessions",
            "1000",
            "--server-pid",
            "42",
            "--hold",
            "5s",
        ])
        .unwrap();
        match cli.scenario {
            Command::Idle(a) => {
                assert_eq!(a.sessions, 1000);
                assert_eq!(a.server_pid, Some(42));
                assert_eq!(a.keepalive, Duration::from_secs(20));
                assert_eq!(a.threads, 4);
            }
            _ => panic!("expected idle"),
        }
        let cli = Cli::try_parse_from([
            "loadgen",
            "stream",
            "-f",
            "a.wav",
            "--driver",
            "threads",
            "--threads",
            "4",
            "--server-pid",
            "7",
        ])
        .unwrap();
        match cli.scenario {
            Command::Stream(a) => {
                assert_eq!(a.driver, Driver::Threads);
                assert_eq!(a.threads, 4);
                assert_eq!(a.server_pid, Some(7));
            }
            _ => panic!("expected stream"),
        }
        assert!(
            Cli::try_parse_from(["loadgen", "stream", "-f", "a.wav", "--driver", "x"]).is_err()
        );
        assert!(Cli::try_parse_from(["loadgen", "stream", "--sessions", "3"]).is_err());
        let cli = Cli::try_parse_from([
            "loadgen",
            "soak",
            "--duration",
            "60s",
            "--streams",
            "50",
            "--server-pid",
            "9",
        ])
        .unwrap();
        match cli.scenario {
            Command::Soak(a) => {
                assert_eq!(a.duration, Duration::from_secs(60));
                assert_eq!(a.streams, 50);
                assert_eq!(a.batch_connections, 4);
                assert_eq!(a.disconnect_rate, 0.05);
                assert_eq!(a.delete_fraction, 0.03);
                assert_eq!(a.min_length, Duration::from_secs(5));
                assert_eq!(a.max_length, Duration::from_secs(30));
                assert_eq!(a.server_pid, Some(9));
            }
            _ => panic!("expected soak"),
        }
        let cli = Cli::try_parse_from([
            "loadgen",
            "--api-key",
            "k",
            "soak",
            "--delete-fraction",
            "0.2",
            "--admin-key",
            "adm",
        ])
        .unwrap();
        assert_eq!(cli.api_key.as_deref(), Some("k"));
        match cli.scenario {
            Command::Soak(a) => {
                assert_eq!(a.delete_fraction, 0.2);
                assert_eq!(a.admin_key.as_deref(), Some("adm"));
            }
            _ => panic!("expected soak"),
        }
    }
}
