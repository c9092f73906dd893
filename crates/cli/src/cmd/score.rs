//! `compress-bench score`: score predictions made elsewhere (a vLLM run, another toolkit) into the
//! files and report of a sweep run.
//!
//! Order of work: check the flags and that the output folder takes files, read the predictions
//! (bad rows by line number), open the run folder (locked, `running` manifest) or reopen it with
//! `--resume`, score the rows in `occ_eval::score` (the sweep's normalisation, metrics and
//! statistics), journaling each chunk of scored rows, then write the tables and the report. A
//! signal ends scoring after the chunk in flight, marks the run `interrupted` and prints the
//! command that resumes it. The input format, the bins and both readings of
//! Fox precision are in docs/SWEEPS.md ("Scoring predictions made elsewhere"); the `--json`
//! messages in docs/cli-json.md.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use occ_core::{Mode, TextTokenizer};
use occ_eval::results;
use occ_eval::score::{self, BadRow, RunMeta, ScoreError, ScoreOptions, ScoreProgress, ScoreRun, TokenBins};
use occ_eval::stats::{CellStats, NO_CI};
use occ_eval::Lang;

use crate::interrupt::{Interrupt, Interrupted};
use crate::messages::{BadRowMessage, ScoreBin, ScoreHeadline, ScoreStart, ScoreSummary};
use crate::output::{Output, Progress, JSON_SCHEMA_VERSION};
use crate::runs::{self, git_commit, host};

/// Bad rows printed on stderr (all of them are in score.json and, under `--json`, on stdout).
const BAD_ROWS_PRINTED: usize = 20;

/// Score predictions made elsewhere: JSON Lines of id, truth, prediction → the files and report of a sweep.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Predictions: JSON Lines with `id`, `truth`, `prediction` and optional `mode`, `vision_tokens`,
    /// `text_tokens`, `group` (docs/SWEEPS.md).
    pub predictions: PathBuf,
    /// Results root: the run goes to <out>/<name>/<run_id>.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Experiment name (letters, digits, '-', '_').
    #[arg(long, default_value = "score")]
    pub name: String,
    /// Who made the predictions (recorded as the engine, shown in the report).
    #[arg(long, default_value = "external")]
    pub engine: String,
    /// Language of the texts: en or zh (word splitting and the Chinese whitespace rule).
    #[arg(long, default_value = "en")]
    pub lang: Lang,
    /// Mode of rows without a `mode` field (tiny, small, base, large, gundam, custom:…).
    #[arg(long, value_parser = parse_mode)]
    pub mode: Option<Mode>,
    /// Bin width in ground-truth tokens; the paper's Fox protocol is
    /// `--bin-tokens 100 --min-tokens 600 --max-tokens 1300`.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub bin_tokens: Option<u32>,
    /// Leave out rows with fewer ground-truth tokens (bins start here).
    #[arg(long)]
    pub min_tokens: Option<u32>,
    /// Leave out rows with this many ground-truth tokens or more.
    #[arg(long)]
    pub max_tokens: Option<u32>,
    /// Seed of the run's random choices: the bootstrap of the confidence intervals.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Refuse the whole input if any row is bad (default: leave bad rows out and list them).
    #[arg(long)]
    pub strict: bool,
    /// Do not write the report.
    #[arg(long)]
    pub no_report: bool,
    /// Continue the interrupted, failed or killed score run in this folder (give the same input; its
    /// scoring flags are restored, and refused with other values): rows already journaled are
    /// kept, the others scored.
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// Test hook: send this process SIGINT once this many rows are scored.
    #[arg(long, hide = true)]
    pub interrupt_after: Option<usize>,
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    s.parse::<Mode>().map_err(|e| e.to_string())
}

/// Progress over the rows, and the stop request of a signal.
struct Bar {
    progress: Progress,
    interrupt: Interrupt,
    interrupt_after: Option<usize>,
}

impl ScoreProgress for Bar {
    fn started(&mut self, rows: usize) {
        self.progress.set_length(rows as u64);
    }

    fn advanced(&mut self, done: usize) {
        self.progress.set_position(done as u64);
        if self.interrupt_after.is_some_and(|n| done >= n) {
            self.interrupt_after = None;
            Interrupt::raise();
        }
    }

    fn should_stop(&mut self) -> bool {
        self.interrupt.requested()
    }
}

/// Value flags of `score`, all kept in the command that runs it again.
const VALUE_FLAGS: [&str; 9] =
    ["--out", "--name", "--engine", "--lang", "--mode", "--bin-tokens", "--min-tokens", "--max-tokens", "--seed"];

/// The command that continues the run in `dir`: this command (every flag but the test hooks and
/// `--resume`), then `--resume DIR`.
fn resume_command(args: &Args, dir: &std::path::Path) -> String {
    let argv: Vec<String> = std::env::args().collect();
    runs::rerun_command(
        &argv,
        &VALUE_FLAGS,
        &[&SWITCHES[..], &["--no-report"]].concat(),
        &[args.predictions.display().to_string(), "--resume".into(), dir.display().to_string()],
    )
}

/// Every bad row: `bad_row` messages under `--json`, the first few as warnings otherwise.
fn announce_bad_rows(bad: &[BadRow], out: &Output) -> anyhow::Result<()> {
    for b in bad {
        let msg =
            BadRowMessage { line: b.line, id: b.id.as_deref(), kind: b.problem.kind(), message: b.problem.to_string() };
        out.send(&msg)?;
    }
    if !out.json {
        for b in bad.iter().take(BAD_ROWS_PRINTED) {
            out.warn(&b.to_string());
        }
        if bad.len() > BAD_ROWS_PRINTED {
            out.warn(&format!("… and {} more bad rows", bad.len() - BAD_ROWS_PRINTED));
        }
    }
    Ok(())
}

/// Switches of `score` that define the scoring, kept in the command that runs it again and
/// restored by `--resume`.
const SWITCHES: [&str; 1] = ["--strict"];

/// A resumed run's arguments: the scoring flags its `score-state.json` recorded, under this
/// command's (one given again with another value is refused, naming it and both values).
fn restored(args: Args) -> anyhow::Result<Args> {
    let Some(dir) = &args.resume else { return Ok(args) };
    let Ok(state) = score::ScoreState::load(dir) else {
        return Ok(args); // not a journaled score run: resume_run says so
    };
    let mut recorded = vec!["--engine".to_string(), state.engine.clone(), "--lang".into(), state.lang.as_str().into()];
    if let Some(mode) = state.default_mode {
        recorded.extend(["--mode".to_string(), mode.to_string()]);
    }
    let bins = [
        ("--bin-tokens", state.bins.width),
        ("--min-tokens", state.bins.min_tokens),
        ("--max-tokens", state.bins.max_tokens),
    ];
    for (flag, value) in bins {
        if let Some(v) = value {
            recorded.extend([flag.to_string(), v.to_string()]);
        }
    }
    recorded.extend(["--seed".to_string(), state.seed.to_string()]);
    if state.strict {
        recorded.push("--strict".into());
    }
    let scoring: Vec<&str> = VALUE_FLAGS.iter().copied().filter(|f| !matches!(*f, "--out" | "--name")).collect();
    let argv: Vec<String> = std::env::args().collect();
    let (restored, _): (Args, _) = runs::restore_reader_flags("score", &argv, &recorded, &scoring, &SWITCHES)
        .with_context(|| format!("--resume {}", dir.display()))?;
    Ok(restored)
}

pub fn run(args: Args, out: &Output) -> anyhow::Result<()> {
    let args = restored(args)?;
    let t0 = Instant::now();
    let interrupt = Interrupt::install()?;
    let (started_utc, _) = results::utc_now();
    let options = ScoreOptions {
        engine: args.engine.clone(),
        lang: args.lang,
        default_mode: args.mode,
        bins: TokenBins { width: args.bin_tokens, min_tokens: args.min_tokens, max_tokens: args.max_tokens },
        seed: args.seed,
        strict: args.strict,
        ..ScoreOptions::new(&args.name)
    };
    options.validate()?;
    score::check_writable(args.resume.as_deref().unwrap_or(&args.out.join(&options.name)))?;
    let bytes = std::fs::read(&args.predictions)
        .with_context(|| format!("reading predictions {}", args.predictions.display()))?;
    let input_sha256 = score::sha256_hex(&bytes);
    let input = score::parse_input(&bytes);
    drop(bytes);
    out.send(&ScoreStart {
        schema_version: JSON_SCHEMA_VERSION,
        input: args.predictions.display().to_string(),
        input_sha256: &input_sha256,
        n_lines: input.n_lines,
        n_rows: input.rows.len(),
        n_bad: input.bad.len(),
    })?;
    let tokenizer = TextTokenizer::deepseek_ocr().context("loading the DeepSeek-OCR tokenizer")?;
    let progress = Bar {
        progress: out.progress(
            "score",
            "rows",
            input.rows.len() as u64,
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} rows ETA {eta}",
        ),
        interrupt: interrupt.clone(),
        interrupt_after: args.interrupt_after,
    };
    let mut meta = RunMeta {
        input: args.predictions.clone(),
        input_sha256,
        out_root: args.out.clone(),
        git_commit: git_commit(),
        host: host(),
        tokenizer: tokenizer.source().to_string(),
        command: std::env::args().collect(),
        started_utc,
        wall_time_s: 0.0,
    };
    let planned = input.rows.len();
    let open = match &args.resume {
        Some(dir) => score::resume_run(dir, &options, &meta, planned),
        None => score::open_run(&options, &meta, planned),
    }
    .context("opening the score run")?;
    if let Some(old) = open.lock.took_over() {
        out.warn(&format!(
            "took over the stale lock of process {} (started {}), which is gone",
            old.pid, old.started_utc
        ));
    }
    let (dir, done_before) = (open.dir.clone(), open.done.len());
    let result = score_and_write(&args, open, &input, &options, &tokenizer, progress, &mut meta, &interrupt, out, t0);
    if let Err(e) = &result {
        // A run stopped by anything but a signal (interrupted) or a refusal that removed its fresh
        // folder is `failed`, with the error recorded, unless its files were all written.
        if e.downcast_ref::<Interrupted>().is_none() && dir.exists() {
            meta.wall_time_s = t0.elapsed().as_secs_f64();
            match score::mark_failed(&dir, &meta, done_before, crate::output::causes(e)) {
                Ok(true) => out.info(&format!(
                    "{} is marked failed; continue it with: {}",
                    dir.display(),
                    resume_command(&args, &dir)
                )),
                Ok(false) => {}
                Err(m) => out.warn(&format!("marking {} failed: {m}", dir.display())),
            }
        }
    }
    result
}

/// Scores the rows of `input` the journal of `open` lacks, journaling them, then writes the run's
/// tables and report.
#[allow(clippy::too_many_arguments)]
fn score_and_write(
    args: &Args,
    mut open: score::OpenRun,
    input: &score::ParsedInput,
    options: &ScoreOptions,
    tokenizer: &TextTokenizer,
    mut progress: Bar,
    meta: &mut RunMeta,
    interrupt: &Interrupt,
    out: &Output,
    t0: Instant,
) -> anyhow::Result<()> {
    let planned = input.rows.len();
    let done = std::mem::take(&mut open.done);
    let scored =
        score::score_rows_journaled(input, options, tokenizer, &mut progress, &done, &mut |rows| open.append(rows));
    progress.progress.finish();
    meta.wall_time_s = t0.elapsed().as_secs_f64();
    let scored = match scored {
        Err(ScoreError::Interrupted { done, total }) => {
            open.mark_interrupted(options, meta, planned).context("marking the score run interrupted")?;
            let dir = open.dir.clone();
            drop(open);
            return Err(Interrupted {
                state: format!("{} is marked interrupted, its scored rows journaled", dir.display()),
                done: format!("{done} of {total} rows"),
                resume: resume_command(args, &dir),
            }
            .into());
        }
        Err(e @ (ScoreError::Strict { .. } | ScoreError::Empty { .. })) => {
            // Nothing was journaled that a run of this input could use: a fresh folder goes.
            if args.resume.is_none() {
                let dir = open.dir.clone();
                drop(open);
                std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
            }
            if let ScoreError::Strict { bad } | ScoreError::Empty { bad, .. } = &e {
                announce_bad_rows(bad, out)?;
            }
            return Err(anyhow::Error::new(e).context(format!("scoring {}", args.predictions.display())));
        }
        other => other.with_context(|| format!("scoring {}", args.predictions.display()))?,
    };
    announce_bad_rows(&scored.bad, out)?;
    // The tables are written whole even if a signal comes meanwhile (a few seconds); the report is
    // skipped after one, and `report` writes it later.
    let (run, lock) = score::finish_run(open, scored, options, meta).context("writing the score run")?;
    let mut files = BTreeMap::new();
    for f in [
        results::SAMPLES_FILE,
        results::PREDICTIONS_FILE,
        results::SUMMARY_FILE,
        score::BINS_FILE,
        score::SCORE_FILE,
        results::MANIFEST_FILE,
    ] {
        files.insert(f, run.dir.join(f).display().to_string());
    }
    if !args.no_report && interrupt.requested() {
        drop(lock);
        return Err(Interrupted {
            state: format!("{} holds every table; its report is not written", run.dir.display()),
            done: format!("{} of {} rows", run.record.n_scored, run.record.n_scored),
            resume: runs::rerun_command(
                &std::env::args().take(1).collect::<Vec<_>>(),
                &[],
                &[],
                &["report".into(), run.dir.display().to_string()],
            ),
        }
        .into());
    }
    if !args.no_report {
        let r = occ_report::write_report(&run.dir)
            .with_context(|| format!("writing the report of {}", run.dir.display()))?;
        files.insert("report.md", r.markdown.display().to_string());
        files.insert("report.html", r.html.display().to_string());
    }
    drop(lock);
    announce(&run, files, out)
}

fn announce(run: &ScoreRun, files: BTreeMap<&'static str, String>, out: &Output) -> anyhow::Result<()> {
    let r = &run.record;
    out.send(&ScoreSummary {
        run_dir: run.dir.display().to_string(),
        run_id: &run.manifest.run_id,
        n_lines: r.n_lines,
        n_scored: r.n_scored,
        n_bad: r.n_bad,
        n_out_of_range: r.n_out_of_range,
        wall_time_s: run.manifest.wall_time_s,
        files: files.clone(),
        headline: run
            .headline
            .iter()
            .map(|h| ScoreHeadline {
                group: &h.group,
                mode: &h.mode,
                n_pages: h.n_pages,
                fox_precision_out_words: h.fox_precision_out_words.mean,
                fox_precision_out_words_ci: [h.fox_precision_out_words.ci_low, h.fox_precision_out_words.ci_high],
                fox_precision_gt_words: h.fox_precision_gt_words.mean,
                char_precision: h.char_precision.mean,
            })
            .collect(),
        bins: run
            .bins
            .iter()
            .map(|b| ScoreBin {
                group: &b.group,
                mode: &b.mode,
                tokens_lo: b.tokens_lo,
                tokens_hi: b.tokens_hi,
                n_pages: b.n_pages,
                compression: b.compression,
                fox_precision_out_words: b.fox_precision_out_words,
                fox_precision_out_words_ci: [b.fox_precision_out_words_ci_low, b.fox_precision_out_words_ci_high],
                fox_precision_gt_words: b.fox_precision_gt_words,
                char_precision: b.char_precision,
            })
            .collect(),
    })?;
    out.result(&format!(
        "{} predictions scored ({} bad rows left out, {} outside the token range) in {:.1} s -> {}",
        r.n_scored,
        r.n_bad,
        r.n_out_of_range,
        run.manifest.wall_time_s,
        run.dir.display()
    ));
    for h in &run.headline {
        let s = &h.fox_precision_out_words;
        out.info(&format!(
            "  {}/{}: Fox precision (output words in GT) {:.1}% {}, GT words found {:.1}%, \
             character precision {:.1}%, {} pages",
            h.group,
            h.mode,
            100.0 * s.mean,
            ci_text(s),
            100.0 * h.fox_precision_gt_words.mean,
            100.0 * h.char_precision.mean,
            h.n_pages
        ));
    }
    for (k, v) in &files {
        out.info(&format!("  {k}: {v}"));
    }
    Ok(())
}

/// `[low, high]` in percent, or `[n too small]` for a cell without a CI (as in the reports).
fn ci_text(s: &CellStats) -> String {
    if s.has_ci() {
        format!("[{:.1}, {:.1}]", 100.0 * s.ci_low, 100.0 * s.ci_high)
    } else {
        format!("[{NO_CI}]")
    }
}
