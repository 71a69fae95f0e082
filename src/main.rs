//! `transcription-server`: parse the settings, start the server, wait for
//! SIGTERM or SIGINT, drain, exit 0. A second signal exits at once.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tracing_subscriber::EnvFilter;

use transcription_service::config::{Config, LogFormat, Settings};
use transcription_service::server::Server;

fn main() -> ExitCode {
    // `transcription-server engine …`: an engine node of the engine tier
    // (src/engine/node.rs), with the same flags as the server.
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let engine_node = args.get(1).is_some_and(|arg| arg == "engine");
    if engine_node {
        args.remove(1);
    }
    let mut config = Config::parse_from(args);
    if engine_node && config.node_id.is_none() {
        // Many engine nodes share a host: the default id must not be
        // hostname:port.
        config.node_id = Some(format!(
            "engine-{}-{}",
            transcription_service::cluster::default_node_id(0).trim_end_matches(":0"),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
    }
    let config = config;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let settings = match config.validate(cpus) {
        Ok(settings) => settings,
        Err(message) => {
            eprintln!("transcription-server: {message}");
            return ExitCode::from(2);
        }
    };
    if let Err(message) = init_logging(&settings) {
        eprintln!("transcription-server: {message}");
        return ExitCode::from(2);
    }
    if engine_node {
        return match run_engine(&settings) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!("{error:#}");
                eprintln!("transcription-server engine: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    match run(settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("transcription-server: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(settings: Settings) -> anyhow::Result<()> {
    // Every session and connection is a descriptor: allow as many as the
    // hard limit does (the soft default, often 1024, is far too few).
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(error) => tracing::warn!(%error, "could not raise the open-file limit"),
    }
    // Register the handlers before any thread starts, so a signal that arrives
    // during start-up is not lost.
    let mut signals = Signals::new([SIGTERM, SIGINT])?;
    let server = Server::start(settings)?;
    let shared = server.shared();
    tracing::info!(
        addr = %server.local_addr(),
        cores = shared.settings.cores,
        model_workers = shared.settings.model.workers,
        io_driver = shared.io_driver.get().copied().unwrap_or("unknown"),
        model = shared.model_name,
        "listening"
    );
    // One machine-readable line on stdout, for scripts and tests that start
    // the server on port 0.
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "listening on {}", server.local_addr());
    let _ = stdout.flush();

    let signal = signals.forever().next();
    tracing::info!(?signal, "signal received: draining");
    // A second signal while draining ends the process at once.
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            eprintln!("transcription-server: second signal {signal}: exiting now");
            std::process::exit(130);
        }
    });
    server.shutdown();
    tracing::info!("stopped");
    Ok(())
}

/// An engine node until SIGTERM/SIGINT: it then finishes the jobs it
/// holds and leaves the registry. A second signal exits at once.
fn run_engine(settings: &Settings) -> anyhow::Result<()> {
    let mut signals = Signals::new([SIGTERM, SIGINT])?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopping = std::sync::Arc::clone(&stop);
    std::thread::spawn(move || {
        let mut received = signals.forever();
        if received.next().is_some() {
            stopping.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(signal) = received.next() {
            eprintln!("transcription-server engine: second signal {signal}: exiting now");
            std::process::exit(130);
        }
    });
    transcription_service::engine::node::run(settings, stop)
}

fn init_logging(settings: &Settings) -> Result<(), String> {
    let mut filter = EnvFilter::try_new(&settings.log_level)
        .map_err(|error| format!("--log-level {:?}: {error}", settings.log_level))?;
    // whisper.cpp reports every step of loading at its info level; unless
    // asked for by name, only its warnings and errors are shown.
    if !settings.log_level.contains("whisper_rs") {
        if let Ok(directive) = "whisper_rs=warn".parse() {
            filter = filter.add_directive(directive);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_thread_names(true)
        .with_ansi(std::io::stderr().is_terminal());
    let result = match settings.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|error| format!("cannot start logging: {error}"))
}
