//! `compress-bench`: the only binary of the toolkit (ripgrep-style thin CLI).
//!
//! Every subcommand lives in its own module under `cmd/`, parses its flags with clap derive and calls
//! into the library crates; subcommands do not import each other. What several share is beside them:
//! - [`engine`]: the engine names, the model flags, generation flags → `GenerationConfig`, building
//!   engines;
//! - [`messages`]: every `--json` message as a typed struct; [`output`]: stdout/stderr conventions;
//! - [`runs`]: provenance (git commit, host), announcing a written run (sweep, merge) and the
//!   command that resumes one; [`interrupt`]: SIGINT/SIGTERM for the long commands.
//!
//! This crate is the only one that reads environment variables, formats user-facing output, draws
//! progress bars or writes the `--json` stream (docs/cli-json.md).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod engine;
mod interrupt;
mod messages;
mod output;
mod runs;

use output::Output;

/// Render long text into images, read it back with an OCR model, and measure how much survives.
#[derive(Debug, Parser)]
#[command(name = "compress-bench", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    output: output::OutputArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Render text to a page image at a target compression ratio, with its metadata JSON.
    Render(cmd::render::Args),
    /// Read page images with DeepSeek-OCR.
    Ocr(cmd::ocr::Args),
    /// Compression sweep: render corpora at many ratios and modes, read back, score, report.
    Sweep(cmd::sweep::Args),
    /// Plots, tables and the HTML report of a sweep run.
    Report(cmd::report::Args),
    /// Join the outputs of `--shard K/N` runs into one run.
    Merge(cmd::merge::Args),
    /// One report over several runs: curves on shared charts, paired differences on the pages they share.
    Compare(cmd::compare::Args),
    /// Score predictions made elsewhere (JSON Lines of id, truth, prediction) into a sweep's files and report.
    Score(cmd::score::Args),
    /// Optical-memory decay sweep over a synthetic conversation.
    Decay(cmd::decay::Args),
    /// Speed benchmark of the DeepSeek-OCR engine (tok/s, pages/s, stage times, peak memory).
    Bench(cmd::bench::Args),
    /// Config, checkpoint tensor list and vision tokens per mode for an image size.
    Inspect(cmd::inspect::Args),
    /// Serve a model over HTTP in OpenAI's chat-completions format (docs/SERVING.md).
    Serve(cmd::serve::Args),
    Train(cmd::train::Args),
}

/// A command line clap refuses: under `--json` an `error` message on stdout too (its first line),
/// then clap's own text on stderr and its exit status (2; 0 for `--help` and `--version`).
fn usage_error(e: clap::Error) -> ! {
    if e.use_stderr() && std::env::args().any(|a| a == "--json") {
        let text = e.to_string();
        let first = text.lines().next().unwrap_or_default();
        let message = first.strip_prefix("error: ").unwrap_or(first).to_string();
        let out = Output { json: true, quiet: true, progress_interval: None };
        let _ = out.send(&messages::Error { causes: vec![message.clone()], message });
    }
    e.exit()
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => usage_error(e),
    };
    let out = Output::new(&cli.output);
    out.init_tracing();
    let result = match cli.command {
        Command::Render(args) => cmd::render::run(args, &out),
        Command::Ocr(args) => cmd::ocr::run(args, &out),
        Command::Sweep(args) => cmd::sweep::run(args, &out),
        Command::Report(args) => cmd::report::run(args, &out),
        Command::Merge(args) => cmd::merge::run(args, &out),
        Command::Score(args) => cmd::score::run(args, &out),
        Command::Compare(args) => cmd::compare::run(args, &out),
        Command::Decay(args) => cmd::decay::run(args, &out),
        Command::Bench(args) => cmd::bench::run(args, &out),
        Command::Inspect(args) => cmd::inspect::run(args, &out),
        Command::Serve(args) => cmd::serve::run(args, &out),
        Command::Train(args) => cmd::train::run(args, &out),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            out.error(&err);
            if err.downcast_ref::<interrupt::Interrupted>().is_some() {
                ExitCode::from(interrupt::EXIT_INTERRUPTED)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
