//! `loadgen`: the command line of the load generator.
//!
//! Parses arguments, enforces the loopback-only rule on `--url`, builds the
//! chosen scenario, runs it once or at each `--sweep` level, and prints for
//! every run a human summary followed by exactly one JSON line on stdout.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use loadtests::runner::{self, RunConfig, Scenario};
use loadtests::scenarios::{self, transcribe::TranscribeOptions, HttpOptions};
use loadtests::stats::Report;
use loadtests::target::Target;

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
    let target = Target::parse(&cli.url)?;
    let (scenario, args): (Box<dyn Scenario>, &RunArgs) = match &cli.scenario {
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
}
