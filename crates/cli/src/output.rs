//! Output conventions shared by every subcommand: results on stdout, progress and logs on stderr,
//! `--json` as JSON Lines with a `{"type": …, "data": …}` envelope (docs/cli-json.md).

use std::io::{IsTerminal, Write};

use serde::Serialize;

use crate::messages::{self, Message};

/// Version of the `--json` envelope; bumped on any incompatible change of a message type.
pub const JSON_SCHEMA_VERSION: u32 = 1;

/// Flags every subcommand shares.
#[derive(Debug, Clone, clap::Args)]
pub struct OutputArgs {
    /// Print results as JSON Lines on stdout (`{"type": …, "data": …}`), no progress bars.
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bars and no informational messages on stderr.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
}

/// Where and how a subcommand reports.
#[derive(Debug, Clone)]
pub struct Output {
    pub json: bool,
    pub quiet: bool,
}

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    data: &'a T,
}

impl Output {
    pub fn new(args: &OutputArgs) -> Output {
        Output { json: args.json, quiet: args.quiet }
    }

    /// Logs go to stderr, filtered by `RUST_LOG` (default: warnings).
    pub fn init_tracing(&self) {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    }

    /// Whether progress bars should be drawn (not under `--json`, `--quiet` or a non-TTY stderr).
    pub fn progress_enabled(&self) -> bool {
        !self.json && !self.quiet && std::io::stderr().is_terminal()
    }

    /// One typed message on stdout (only under `--json`; the types are in [`crate::messages`]).
    pub fn send<M: Message>(&self, message: &M) -> anyhow::Result<()> {
        self.json_message(M::TYPE, message)
    }

    /// One JSON Lines message of type `kind` on stdout (only under `--json`).
    pub fn json_message<T: Serialize>(&self, kind: &str, data: &T) -> anyhow::Result<()> {
        if self.json {
            let line = serde_json::to_string(&Envelope { kind, data })?;
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{line}")?;
        }
        Ok(())
    }

    /// A human-readable result line on stdout (suppressed under `--json`).
    pub fn result(&self, text: &str) {
        if !self.json {
            println!("{text}");
        }
    }

    /// An informational message on stderr (suppressed under `--quiet` and `--json`).
    pub fn info(&self, text: &str) {
        if !self.quiet && !self.json {
            eprintln!("{text}");
        }
    }

    /// A warning: stderr, and a `warning` message under `--json`.
    pub fn warn(&self, text: &str) {
        if self.json {
            let _ = self.send(&messages::Warning { message: text });
        } else {
            eprintln!("warning: {text}");
        }
    }

    /// The final error of a failed command, with its cause chain.
    pub fn error(&self, err: &anyhow::Error) {
        if self.json {
            let causes: Vec<String> = err.chain().map(|c| c.to_string()).collect();
            let _ = self.send(&messages::Error { message: err.to_string(), causes });
        }
        eprintln!("error: {err:#}");
    }
}
