//! `transcribe`: the command-line client of the transcription server
//! (docs/CLI.md).
//!
//! Layout, in the order a run goes through it:
//! - `main` (this file): the flags, and the one place where a failure becomes
//!   a line on stderr and an exit code;
//! - `client`: the server's URL, the keys, HTTP requests and the mapping of
//!   every HTTP failure to a [`error::CliError`];
//! - `audio_file`: reading the file, telling its container, decoding it for
//!   streaming;
//! - `batch`: `transcribe FILE` (json, text, srt, vtt);
//! - `stream` and `view`: `transcribe stream FILE` over the WebSocket, and how
//!   its transcripts are shown on a terminal or a pipe;
//! - `sessions`: the operators' table, `--watch`, `--delete`;
//! - `error`: the failure kinds and their exit codes.

mod audio_file;
mod batch;
mod client;
mod error;
mod sessions;
mod stream;
mod view;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::audio_file::RawInput;
use crate::client::{Client, Endpoint};
use crate::error::{CliError, BROKEN_PIPE};

/// Transcribe audio files with a transcription server, stream them over its
/// WebSocket, and watch its sessions.
#[derive(Parser)]
#[command(
    name = "transcribe",
    version,
    subcommand_negates_reqs = true,
    after_help = "Exit codes: 0 success, 1 the server answered with an error or ended the \
                  stream abnormally, 2 bad usage, 3 cannot connect, 4 key rejected (401), \
                  5 bad audio file. See docs/CLI.md."
)]
struct Cli {
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    batch: BatchArgs,
}

#[derive(Args)]
struct ConnectionArgs {
    /// The server: http://host[:port][/prefix].
    #[arg(
        long,
        global = true,
        env = "TRANSCRIBE_URL",
        default_value = "http://127.0.0.1:8000"
    )]
    url: String,
    /// The API key, sent as `Authorization: Bearer KEY` (also on the
    /// WebSocket upgrade).
    #[arg(
        long,
        global = true,
        env = "TRANSCRIBE_API_KEY",
        hide_env_values = true
    )]
    api_key: Option<String>,
    /// The admin key for the session endpoints; without it they get the API
    /// key.
    #[arg(
        long,
        global = true,
        env = "TRANSCRIBE_ADMIN_KEY",
        hide_env_values = true
    )]
    admin_key: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Transcribe a file in one request (what `transcribe FILE` does; use it
    /// for a file named like a subcommand).
    Batch(BatchArgs),
    /// Stream a file over the WebSocket and print transcripts as they arrive.
    Stream(StreamArgs),
    /// List the server's sessions and metrics (admin key).
    Sessions(SessionsArgs),
}

/// Flags for raw PCM16 input, shared by batch and stream.
#[derive(Args, Clone, Copy)]
struct RawArgs {
    /// Treat the file as raw little-endian PCM16 mono (also implied by a
    /// .raw, .pcm, .s16le or .l16 file name).
    #[arg(long)]
    raw: bool,
    /// The sample rate of raw PCM16 input [default: 16000].
    #[arg(long, value_name = "HZ", value_parser = clap::value_parser!(u32).range(8000..=192000))]
    sample_rate: Option<u32>,
}

impl RawArgs {
    fn input(self) -> RawInput {
        RawInput {
            forced: self.raw,
            sample_rate: self.sample_rate,
        }
    }
}

#[derive(Args)]
struct BatchArgs {
    /// The audio file: WAV, FLAC, MP3, Ogg Vorbis, or raw PCM16.
    #[arg(required = true, value_name = "FILE")]
    file: Option<PathBuf>,
    /// The output format.
    #[arg(long, short = 'f', value_enum, default_value = "text")]
    format: batch::Format,
    /// The language, passed to the model (e.g. en).
    #[arg(long)]
    language: Option<String>,
    /// VAD aggressiveness, 0 (least) to 3 (most) [server default: 2].
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=3))]
    vad_mode: Option<u8>,
    /// Ask for word timings (shown in the json format).
    #[arg(long)]
    words: bool,
    /// Write the transcript to this file instead of stdout.
    #[arg(long, short = 'o', value_name = "PATH")]
    output: Option<PathBuf>,
    #[command(flatten)]
    raw: RawArgs,
}

#[derive(Args)]
struct StreamArgs {
    /// The audio file: WAV, FLAC, MP3, Ogg Vorbis, or raw PCM16.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Send the audio at real time, as a microphone would (otherwise as fast
    /// as the server takes it).
    #[arg(long)]
    realtime: bool,
    /// Print interim transcripts too when stdout is not a terminal (on a
    /// terminal they always rewrite the current line).
    #[arg(long)]
    interims: bool,
    /// Print every server message as one line of JSON.
    #[arg(long)]
    json: bool,
    /// The language, passed to the model (e.g. en).
    #[arg(long)]
    language: Option<String>,
    /// VAD aggressiveness, 0 (least) to 3 (most) [server default: 2].
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=3))]
    vad_mode: Option<u8>,
    /// Milliseconds of audio per WebSocket message.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    chunk_ms: u32,
    #[command(flatten)]
    raw: RawArgs,
}

#[derive(Args)]
struct SessionsArgs {
    /// Redraw every second until Ctrl-C.
    #[arg(long, short = 'w', conflicts_with = "delete")]
    watch: bool,
    /// Seconds between redraws with --watch.
    #[arg(
        long,
        default_value_t = 1.0,
        value_name = "SECONDS",
        requires = "watch"
    )]
    interval: f64,
    /// Print the server's two answers as one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Only sessions in this state.
    #[arg(long, value_parser = ["created", "active", "closing", "closed"])]
    state: Option<String>,
    /// Every node's sessions and summed metrics (cluster mode).
    #[arg(long)]
    cluster: bool,
    /// End this session (the client gets session_end with reason terminated).
    #[arg(long, value_name = "ID")]
    delete: Option<String>,
}

fn main() {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => {}
        Err(error) if error.message == BROKEN_PIPE => {}
        Err(error) => {
            eprintln!("transcribe: {error}");
            std::process::exit(error.exit_code());
        }
    }
}

fn run(cli: Cli) -> Result<(), CliError> {
    let endpoint = Endpoint::parse(&cli.connection.url)?;
    let client = Client::new(endpoint, cli.connection.api_key, cli.connection.admin_key);
    match cli.command {
        None => run_batch(&client, cli.batch),
        Some(Command::Batch(args)) => run_batch(&client, args),
        Some(Command::Stream(args)) => stream::run(
            &client,
            &stream::StreamRequest {
                file: args.file,
                raw: args.raw.input(),
                language: args.language,
                vad_mode: args.vad_mode,
                realtime: args.realtime,
                interims: args.interims,
                json: args.json,
                chunk_ms: args.chunk_ms,
            },
        ),
        Some(Command::Sessions(args)) => {
            if !(args.interval.is_finite() && (0.1..=3600.0).contains(&args.interval)) {
                return Err(CliError::usage(
                    "--interval must be between 0.1 and 3600 seconds",
                ));
            }
            sessions::run(
                &client,
                &sessions::SessionsRequest {
                    watch: args.watch,
                    interval: Duration::from_secs_f64(args.interval),
                    json: args.json,
                    state: args.state,
                    cluster: args.cluster,
                    delete: args.delete,
                },
            )
        }
    }
}

fn run_batch(client: &Client, args: BatchArgs) -> Result<(), CliError> {
    let Some(file) = args.file else {
        return Err(CliError::usage("no audio file given (transcribe FILE)"));
    };
    batch::run(
        client,
        &batch::BatchRequest {
            file,
            format: args.format,
            language: args.language,
            vad_mode: args.vad_mode,
            words: args.words,
            raw: args.raw.input(),
            output: args.output,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_flags_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_file_alone_is_a_batch_run_and_keys_go_anywhere() {
        let cli = Cli::try_parse_from(["transcribe", "a.wav", "--format", "srt"]).expect("parses");
        assert!(cli.command.is_none());
        assert_eq!(cli.batch.file, Some(PathBuf::from("a.wav")));
        let cli = Cli::try_parse_from(["transcribe", "stream", "a.wav", "--api-key", "k"])
            .expect("parses");
        assert_eq!(cli.connection.api_key.as_deref(), Some("k"));
        assert!(matches!(cli.command, Some(Command::Stream(_))));
        assert!(Cli::try_parse_from(["transcribe"]).is_err());
    }
}
