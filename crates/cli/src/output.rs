//! Output conventions shared by every subcommand: results on stdout, progress and logs on stderr,
//! `--json` as JSON Lines with a `{"type": …, "data": …}` envelope (docs/cli-json.md).
//!
//! Progress ([`Progress`]) is a bar on a terminal and, on any other stderr (a log file, a batch
//! job's output) or under `--json`, a plain line every `--progress-interval` seconds. Errors
//! ([`Output::error`]) state each cause once: a cause whose text the message above it already
//! holds is left out.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

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
    /// Where stderr is not a terminal (a log file, a batch job) or under --json: a progress line
    /// this often instead of a bar (0: none).
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 30.0, value_parser = parse_interval)]
    pub progress_interval: f64,
}

/// `--progress-interval`: a finite number of seconds, at least 0.
fn parse_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds (0 or more)")),
    }
}

/// Where and how a subcommand reports.
#[derive(Debug, Clone)]
pub struct Output {
    pub json: bool,
    pub quiet: bool,
    /// Seconds between progress lines where no bar is drawn; `None`: no lines.
    pub progress_interval: Option<Duration>,
}

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    data: &'a T,
}

impl Output {
    pub fn new(args: &OutputArgs) -> Output {
        let interval = (args.progress_interval > 0.0).then(|| Duration::from_secs_f64(args.progress_interval));
        Output { json: args.json, quiet: args.quiet, progress_interval: interval }
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
    fn json_message<T: Serialize>(&self, kind: &str, data: &T) -> anyhow::Result<()> {
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

    /// The final error of a failed command: on stderr, and as an `error` message under `--json`,
    /// both with the whole cause chain, each cause once ([`causes`]).
    pub fn error(&self, err: &anyhow::Error) {
        let causes = causes(err);
        let message = causes.join(": ");
        if self.json {
            let _ = self.send(&messages::Error { message: message.clone(), causes });
        }
        eprintln!("error: {message}");
    }

    /// Progress over `total` items of `unit` (e.g. "samples"): a bar with `template` (indicatif)
    /// where bars are drawn, else a line every `--progress-interval` seconds (none under `--quiet`).
    pub fn progress(&self, label: &str, unit: &str, total: u64, template: &str) -> Progress {
        if self.progress_enabled() {
            let bar = ProgressBar::new(total);
            bar.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()));
            return Progress { bar: Some(bar), lines: None };
        }
        let lines = match self.progress_interval {
            Some(every) if !self.quiet => {
                let now = Instant::now();
                Some(Lines {
                    label: label.to_string(),
                    unit: unit.to_string(),
                    total,
                    pos: 0,
                    start_pos: 0,
                    message: String::new(),
                    started: now,
                    last: now,
                    every,
                })
            }
            _ => None,
        };
        Progress { bar: None, lines }
    }
}

/// The texts of an error and its causes, outermost first, each stated once: a cause whose text
/// the kept message above it already holds (a library error that prints its source, a context
/// that repeats it) is left out.
pub fn causes(err: &anyhow::Error) -> Vec<String> {
    let mut kept: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if text.is_empty() || kept.last().is_some_and(|above| above.contains(&text)) {
            continue;
        }
        kept.push(text);
    }
    kept
}

/// The progress of a long command ([`Output::progress`]): a bar, periodic lines, or nothing.
pub struct Progress {
    bar: Option<ProgressBar>,
    lines: Option<Lines>,
}

/// Plain progress lines, printed at most once per `every`.
struct Lines {
    label: String,
    unit: String,
    total: u64,
    pos: u64,
    /// The position this process started at (a resumed run's done items are not its speed).
    start_pos: u64,
    message: String,
    started: Instant,
    last: Instant,
    every: Duration,
}

impl Lines {
    /// `progress: sweep 12/30 samples (40%), 1m05s elapsed, about 1m38s left; tiny r8`
    fn line(&self) -> String {
        let elapsed = self.started.elapsed();
        let mut text = format!("progress: {} {}/{} {}", self.label, self.pos, self.total, self.unit);
        if self.total > 0 {
            text.push_str(&format!(" ({:.0}%)", 100.0 * self.pos as f64 / self.total as f64));
        }
        text.push_str(&format!(", {} elapsed", duration_text(elapsed.as_secs_f64())));
        let done_here = self.pos.saturating_sub(self.start_pos);
        if done_here > 0 && self.pos < self.total {
            let left = elapsed.as_secs_f64() / done_here as f64 * (self.total - self.pos) as f64;
            text.push_str(&format!(", about {} left", duration_text(left)));
        }
        if !self.message.is_empty() {
            text.push_str(&format!("; {}", self.message));
        }
        text
    }

    fn tick(&mut self) {
        if self.last.elapsed() >= self.every {
            self.last = Instant::now();
            eprintln!("{}", self.line());
        }
    }
}

impl Progress {
    /// Where the run starts (a resumed run's items already done).
    pub fn start_at(&mut self, pos: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(pos);
            bar.reset_eta();
        }
        if let Some(l) = &mut self.lines {
            l.pos = pos;
            l.start_pos = pos;
        }
    }

    pub fn set_length(&mut self, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
        }
        if let Some(l) = &mut self.lines {
            l.total = total;
        }
    }

    pub fn set_position(&mut self, pos: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(pos);
        }
        if let Some(l) = &mut self.lines {
            l.pos = pos;
            l.tick();
        }
    }

    pub fn inc(&mut self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
        if let Some(l) = &mut self.lines {
            l.pos += n;
            l.tick();
        }
    }

    /// What the item just done was (shown on the bar and the next line).
    pub fn set_message(&mut self, message: String) {
        if let Some(l) = &mut self.lines {
            l.message.clone_from(&message);
        }
        if let Some(bar) = &self.bar {
            bar.set_message(message);
        }
    }

    /// Runs `f` (which writes to stderr) with the bar hidden.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    /// Removes the bar.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// Seconds as `45s`, `3m05s` or `2h07m`.
pub fn duration_text(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A library error that prints its source and also returns it (as `thiserror`'s
    /// `#[error("reading {path}: {source}")]` does).
    #[derive(Debug)]
    struct Repeats {
        path: String,
        source: std::io::Error,
    }

    impl std::fmt::Display for Repeats {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "reading {}: {}", self.path, self.source)
        }
    }

    impl std::error::Error for Repeats {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn each_cause_is_stated_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory (os error 2)");
        let err = anyhow::Error::new(Repeats { path: "x.toml".into(), source: io }).context("loading the spec");
        assert_eq!(causes(&err), ["loading the spec", "reading x.toml: No such file or directory (os error 2)"]);
        let plain = anyhow::anyhow!("disk full").context("writing a.parquet").context("finishing the run");
        assert_eq!(causes(&plain), ["finishing the run", "writing a.parquet", "disk full"]);
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration_text(4.4), "4s");
        assert_eq!(duration_text(65.0), "1m05s");
        assert_eq!(duration_text(7620.0), "2h07m");
    }

    #[test]
    fn a_progress_line_names_position_share_time_and_what_is_left() {
        let now = Instant::now();
        let mut l = Lines {
            label: "sweep".into(),
            unit: "samples".into(),
            total: 30,
            pos: 12,
            start_pos: 2,
            message: "tiny r8".into(),
            started: now,
            last: now,
            every: Duration::from_secs(30),
        };
        let text = l.line();
        assert!(text.starts_with("progress: sweep 12/30 samples (40%), 0s elapsed, about "), "{text}");
        assert!(text.ends_with("; tiny r8"), "{text}");
        l.pos = 30;
        assert!(!l.line().contains("left"), "nothing is left at the end: {}", l.line());
    }
}
