//! `loadplot`: SVG plots of `loadgen --json … --sweep …` results.
//!
//! For each input file (JSON lines) and each scenario in it, writes one SVG
//! with two panels: throughput against load, and p99 latency (or lag)
//! against load. The parsing, series and drawing live in
//! [`loadtests::plot`]; this file is the command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;

use loadtests::plot::{self, PlotOptions};
use loadtests::wav;

/// Plots `loadgen --json` sweep results (JSON lines) as SVG: throughput and
/// p99 latency against connections / sessions.
#[derive(Debug, Parser)]
#[command(name = "loadplot", version, about, max_term_width = 100)]
struct Cli {
    /// Directory for the SVGs (default: next to each input file). Each
    /// `NAME.jsonl` gives `NAME.svg` (`NAME-SCENARIO.svg` when a file holds
    /// several scenarios).
    #[arg(long, short = 'o')]
    out: Option<PathBuf>,

    /// Seconds of audio in each `transcribe` request: the throughput panel
    /// then shows audio seconds per wall second (req/s × this).
    #[arg(long, conflicts_with = "audio_file")]
    audio_seconds: Option<f64>,

    /// The WAV file the `transcribe` runs sent; its duration is used as
    /// --audio-seconds.
    #[arg(long)]
    audio_file: Option<PathBuf>,

    /// Interim-lag target (ms), drawn as a line on `stream` lag panels.
    #[arg(long, default_value_t = 50.0)]
    lag_target_ms: f64,

    /// Image width and height in pixels.
    #[arg(long, default_value = "960x1040", value_parser = parse_size)]
    size: (u32, u32),

    /// JSONL files written by `loadgen --json … --sweep …`.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

fn parse_size(text: &str) -> Result<(u32, u32), String> {
    let (w, h) = text
        .split_once('x')
        .ok_or_else(|| format!("`{text}`: expected WIDTHxHEIGHT, e.g. 960x1040"))?;
    let parse = |s: &str| {
        s.trim()
            .parse::<u32>()
            .ok()
            .filter(|&n| (200..=10_000).contains(&n))
            .ok_or_else(|| format!("`{text}`: sizes must be 200 to 10000 pixels"))
    };
    Ok((parse(w)?, parse(h)?))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadplot: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn audio_seconds(cli: &Cli) -> Result<Option<f64>> {
    if let Some(s) = cli.audio_seconds {
        if !(s.is_finite() && s > 0.0) {
            bail!("--audio-seconds must be a positive number");
        }
        return Ok(Some(s));
    }
    let Some(path) = &cli.audio_file else {
        return Ok(None);
    };
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let pcm = wav::parse_pcm16_mono(&bytes).with_context(|| format!("{}", path.display()))?;
    Ok(Some((pcm.seconds() * 1000.0).round() / 1000.0))
}

fn run(cli: &Cli) -> Result<()> {
    let opts = PlotOptions {
        audio_seconds: audio_seconds(cli)?,
        lag_target_ms: cli.lag_target_ms,
    };
    if let Some(dir) = &cli.out {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut written = 0;
    for file in &cli.files {
        written += plot_file(file, cli.out.as_deref(), &opts, cli.size)?;
    }
    if written == 0 {
        bail!("nothing to plot");
    }
    Ok(())
}

/// Plots one input file; returns the number of SVGs written.
fn plot_file(
    file: &Path,
    out: Option<&Path>,
    opts: &PlotOptions,
    size: (u32, u32),
) -> Result<usize> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let rows = plot::parse_jsonl(&text).with_context(|| format!("{}", file.display()))?;
    let groups = plot::group_by_scenario(rows).with_context(|| format!("{}", file.display()))?;
    if groups.is_empty() {
        eprintln!("loadplot: {}: no JSON lines, skipped", file.display());
        return Ok(0);
    }
    let stem = file
        .file_stem()
        .map_or_else(|| "plot".into(), |s| s.to_string_lossy().into_owned());
    let dir = match out {
        Some(d) => d.to_path_buf(),
        None => file.parent().map_or_else(PathBuf::new, Path::to_path_buf),
    };
    let several = groups.len() > 1;
    let mut written = 0;
    for (scenario, rows) in &groups {
        let fig = match plot::figure(scenario, rows, opts) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("loadplot: {}: {e:#}; skipped", file.display());
                continue;
            }
        };
        let name = if several {
            format!("{stem}-{scenario}.svg")
        } else {
            format!("{stem}.svg")
        };
        let path = dir.join(name);
        plot::render_svg(&fig, &path, size)?;
        println!("{}", path.display());
        written += 1;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["loadplot", "--out", "d", "a.jsonl", "b.jsonl"]).unwrap();
        assert_eq!(cli.files.len(), 2);
        assert_eq!(cli.size, (960, 1040));
        assert!(Cli::try_parse_from(["loadplot"]).is_err());
        assert_eq!(parse_size("800x600"), Ok((800, 600)));
        assert!(parse_size("800").is_err());
        assert!(parse_size("5x600").is_err());
    }
}
