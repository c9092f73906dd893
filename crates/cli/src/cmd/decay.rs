//! `compress-bench decay`: the optical-memory decay sweep (docs/MEMORY.md).
//!
//! Builds a synthetic conversation from a corpus with planted needles, holds it under each schedule
//! (`occ_memory`), reads every round back through the engine and writes
//! `results/decay/<run_id>/{decay.parquet, needles.parquet, manifest.json, report.md, report.html,
//! plots/*.svg}`. The work is `occ_eval::decay` (configuration, conversation, read-backs, tables and
//! manifest) and `occ_report::decay` (charts, report, the run's files in order); this file parses
//! flags, builds the engine (`crate::engine`), draws progress and prints the summary.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use occ_core::{EngineError, EngineInfo, OcrEngine, OcrOptions, OcrOutput, OcrPage, Prompt, TextTokenizer};
use occ_eval::corpus::Corpus;
use occ_eval::decay::output::{self, DecayState, RunMeta};
use occ_eval::decay::{self, DecayConfig, DecayFile, DecayJournal, DecayOverrides, Outcome};
use occ_eval::lock::RunLock;
use occ_eval::RunStatus;
use occ_memory::ScheduleSpec;

use crate::engine::{self, EngineKind, ModelArgs, TesseractSettings};
use crate::interrupt::{Interrupt, Interrupted};
use crate::messages::{DecayStart, DecaySummary, DryRun, Estimate};
use crate::output::{duration_text, Output, JSON_SCHEMA_VERSION};
use crate::runs;

/// Optical-memory decay sweep over a synthetic conversation.
///
/// Every flag of the run's definition overrides the experiment file's value; its default is the
/// file's, else the one shown.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Experiment file with a [decay] table and [[schedule]] tables (experiments/decay/*.toml).
    #[arg(long, help_heading = CONVERSATION)]
    pub spec: Option<PathBuf>,
    /// Schedule to sweep (repeatable; replaces the file's) [default: the file's, else paper].
    /// Grammar: `paper`, `paper:ages=1/2/4/8/16/32`, `paper-time`, `step:width=4`,
    /// `exp:first=2,factor=2`, `hybrid:k=4,width=4`, `ladder:levels=text@0/base@4/dropped@20`,
    /// `budget:tokens=4000`, `text`; ladder kinds also take `modes=a/b/..`,
    /// `policy=rerender|downsample`, `drop=AGE|never` (docs/MEMORY.md).
    #[arg(long = "schedule", value_name = "SPEC", help_heading = CONVERSATION)]
    pub schedules: Vec<String>,
    /// Rounds in the conversation [default: the file's, else 50].
    #[arg(long, value_name = "N", help_heading = CONVERSATION)]
    pub rounds: Option<usize>,
    /// Tokens per round (corpus passages cut to this length) [default: the file's, else 600].
    #[arg(long, value_name = "N", help_heading = CONVERSATION)]
    pub round_tokens: Option<usize>,
    /// Corpus name: <datasets>/<corpus>.jsonl [default: the file's, else en].
    #[arg(long, help_heading = CONVERSATION)]
    pub corpus: Option<String>,
    /// Folder of the corpora [default: datasets]; with --resume, where the run's corpus is now
    /// [default: the folder it was started with].
    #[arg(long, value_name = "DIR", help_heading = CONVERSATION)]
    pub datasets: Option<PathBuf>,
    /// Seed of the run's random choices: passage order, needle codes (not the weights:
    /// --weights-seed) [default: the file's, else 7].
    #[arg(long, help_heading = CONVERSATION)]
    pub seed: Option<u64>,
    /// Needles planted at evenly spaced ages [default: the file's, else 10].
    #[arg(long, value_name = "N", help_heading = CONVERSATION)]
    pub needles: Option<usize>,
    /// Text tokens per nominal vision token of a full page [default: the file's, else 10].
    #[arg(long, value_name = "RATIO", help_heading = CONVERSATION)]
    pub page_ratio: Option<f64>,
    /// Engine that reads the rounds back.
    #[arg(long, default_value = "tesseract", value_parser = engine::engine_parser(engine::SWEEP_ENGINES), help_heading = READING)]
    pub engine: EngineKind,
    /// Upper bound of generated tokens per page read back [default: 4096].
    #[arg(long, value_name = "N", help_heading = READING)]
    pub max_new_tokens: Option<usize>,
    /// tesseract: pages read in parallel, one process each [default: available CPU threads].
    #[arg(long, value_name = "N", help_heading = READING)]
    pub threads: Option<usize>,
    /// tesseract: page segmentation mode.
    #[arg(long, default_value_t = 6, help_heading = READING)]
    pub psm: u32,
    /// Results root: the run goes to <out>/decay/<run_id>.
    #[arg(long, default_value = "results", help_heading = RUN_FOLDER)]
    pub out: PathBuf,
    /// Run id [default: UTC time, e.g. 20250131T120000Z].
    #[arg(long, help_heading = RUN_FOLDER)]
    pub run_id: Option<String>,
    /// Continue an interrupted or killed run (its configuration and reader flags are read from its
    /// manifest; configuration flags are refused, and so are reader flags with other values).
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["spec", "run_id"], help_heading = RUN_FOLDER)]
    pub resume: Option<PathBuf>,
    /// Print the read-backs and pages the run would make and an estimate of its time: the
    /// conversation is built and rendered in full, the first pages are read by the engine and
    /// timed; nothing is written. Then stop.
    #[arg(long, help_heading = RUN_FOLDER)]
    pub dry_run: bool,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Test hook: abort the process (like `kill -9`) after this many read-backs are journaled.
    #[arg(long, hide = true)]
    pub crash_after: Option<usize>,
    /// Test hook: send this process SIGINT after this many read-backs are journaled.
    #[arg(long, hide = true)]
    pub interrupt_after: Option<usize>,
}

/// `--help` headings of decay's own flags (the model flags have theirs).
const CONVERSATION: &str = "Conversation and schedules";
const READING: &str = "Reading back";
const RUN_FOLDER: &str = "Run folder";

fn config(args: &Args) -> anyhow::Result<DecayConfig> {
    let file = match &args.spec {
        Some(p) => DecayFile::load(p)?,
        None => DecayFile::default(),
    };
    let path = args.spec.as_deref().map(|p| p.display().to_string()).unwrap_or_default();
    let flags = DecayOverrides {
        schedules: args.schedules.clone(),
        rounds: args.rounds,
        round_tokens: args.round_tokens,
        max_new_tokens: args.max_new_tokens,
        corpus: args.corpus.clone(),
        datasets: args.datasets.clone(),
        seed: args.seed,
        needles: args.needles,
        page_ratio: args.page_ratio,
    };
    Ok(DecayConfig::resolve(&file, &path, flags)?)
}

/// The engine reading the rounds back; a schedule holding pages in a mode the engine cannot read
/// (DeepSeek-OCR-2 reads the v2 modes only) is refused before it is loaded.
fn engine(args: &Args, cfg: &DecayConfig, out: &Output) -> anyhow::Result<Box<dyn OcrEngine>> {
    for spec in &cfg.schedules {
        let schedules = match spec {
            ScheduleSpec::Fixed(s) => std::slice::from_ref(s),
            ScheduleSpec::Budget { candidates, .. } => candidates.as_slice(),
        };
        let modes = schedules.iter().flat_map(|s| s.levels()).filter_map(|l| l.repr.reading_mode());
        if let Some(why) = modes.into_iter().find_map(|m| args.engine.refuses_mode(m)) {
            anyhow::bail!(
                "schedule {}: {why} (give DeepSeek-OCR-2 a ladder of v2 modes, e.g. \
                 --schedule ladder:levels=text@0/v2@4/v2-single@8/dropped@16)",
                spec.name()
            );
        }
    }
    let lang = Corpus::load(&cfg.corpus, &cfg.datasets)?.lang;
    let tesseract = TesseractSettings { psm: args.psm, threads: args.threads };
    let engines = engine::build_engines(args.engine, &[lang], tesseract, &args.model, out)?;
    Ok(engines.into_one(lang)?)
}

/// What the run continues from: nothing (a new run), or a resumed run's manifest.
fn resumed(args: &Args) -> anyhow::Result<Option<DecayState>> {
    let Some(dir) = &args.resume else { return Ok(None) };
    let flags = [
        ("--schedule", !args.schedules.is_empty()),
        ("--rounds", args.rounds.is_some()),
        ("--round-tokens", args.round_tokens.is_some()),
        ("--max-new-tokens", args.max_new_tokens.is_some()),
        ("--corpus", args.corpus.is_some()),
        ("--seed", args.seed.is_some()),
        ("--needles", args.needles.is_some()),
        ("--page-ratio", args.page_ratio.is_some()),
    ];
    let given: Vec<&str> = flags.iter().filter(|f| f.1).map(|f| f.0).collect();
    if !given.is_empty() {
        anyhow::bail!("--resume continues a run with its own configuration; drop {}", given.join(", "));
    }
    let state = DecayState::load(dir)?;
    if state.status() == RunStatus::Complete {
        anyhow::bail!("decay run {} is already complete; start a new run instead", dir.display());
    }
    Ok(Some(state))
}

/// The flags that load a decay run's reader: the engine, the model flags and Tesseract's.
fn reader_flag_names() -> (Vec<&'static str>, Vec<&'static str>) {
    ([&runs::MODEL_VALUE_FLAGS[..], &["--engine", "--threads", "--psm"]].concat(), runs::MODEL_SWITCHES.to_vec())
}

/// A resumed run's arguments: the reader flags its manifest recorded, under this command's
/// ([`runs::resumed_reader`]).
fn restored(args: Args, state: Option<&DecayState>, out: &Output) -> anyhow::Result<Args> {
    let (values, switches) = reader_flag_names();
    let recorded = state.and_then(|s| s.meta.reader_flags.clone());
    let dir = args.resume.clone().unwrap_or_default();
    Ok(runs::resumed_reader("decay", &dir, recorded, &values, &switches, out)?.unwrap_or(args))
}

/// The command that continues the decay run in `dir` (engine flags kept).
fn resume_command(dir: &std::path::Path) -> String {
    let argv: Vec<String> = std::env::args().collect();
    let values = [&runs::MODEL_VALUE_FLAGS[..], &["--engine", "--threads", "--psm", "--datasets"]].concat();
    runs::resume_command(&argv, dir, &values, &runs::MODEL_SWITCHES)
}

/// Reads the first call's pages with the engine it wraps (timed) and answers every later call
/// with empty text, counting the pages: the measurement of `--dry-run`.
struct Measuring<'a> {
    inner: &'a mut dyn OcrEngine,
    pages: usize,
    /// Pages of the first call and the seconds they took.
    measured: Option<(usize, f64)>,
}

impl OcrEngine for Measuring<'_> {
    fn info(&self) -> EngineInfo {
        self.inner.info()
    }

    fn preferred_batch(&self) -> usize {
        self.inner.preferred_batch()
    }

    fn ground_truth(&mut self, page_id: &str, text: &str) {
        self.inner.ground_truth(page_id, text);
    }

    fn ocr(&mut self, pages: &[OcrPage], prompt: &Prompt, options: &OcrOptions) -> Result<Vec<OcrOutput>, EngineError> {
        self.pages += pages.len();
        if self.measured.is_none() {
            let t = Instant::now();
            let outputs = self.inner.ocr(pages, prompt, options)?;
            self.measured = Some((pages.len(), t.elapsed().as_secs_f64()));
            return Ok(outputs);
        }
        Ok(pages.iter().map(|p| OcrOutput { id: p.id.clone(), ..OcrOutput::default() }).collect())
    }
}

/// `--dry-run`: builds the conversation and goes through every read-back the run (or the rest of a
/// resumed run) would make, reading only the first call's pages with the engine; the estimate is
/// this pass's own time (building, rendering) plus every page at the measured speed.
fn dry_run(
    cfg: &DecayConfig,
    tokenizer: &TextTokenizer,
    engine: &mut dyn OcrEngine,
    mut journal: DecayJournal,
    load_s: f64,
    out: &Output,
) -> anyhow::Result<()> {
    let info = engine.info();
    let n_done = journal.len();
    let mut measuring = Measuring { inner: engine, pages: 0, measured: None };
    let mut n_pending = 0usize;
    let mut bar = out.progress(
        "decay --dry-run",
        "rounds",
        (cfg.rounds * cfg.schedules.len()) as u64,
        "{msg:>32} [{bar:40}] {pos}/{len} {elapsed} ETA {eta}",
    );
    let t = Instant::now();
    decay::run_journaled(
        cfg,
        "dry-run",
        tokenizer,
        &mut measuring,
        &mut journal,
        &mut |schedule, _, _| {
            bar.set_message(schedule.to_string());
            bar.inc(1);
        },
        &mut || {
            n_pending += 1;
            false
        },
    )?;
    bar.finish();
    let pass_s = t.elapsed().as_secs_f64();
    let (measured_pages, measured_s) = measuring.measured.unwrap_or((0, 0.0));
    let per_page = if measured_pages > 0 { measured_s / measured_pages as f64 } else { 0.0 };
    let fixed_s = (pass_s - measured_s).max(0.0);
    let estimate = (n_pending > 0).then(|| Estimate {
        method: "measured",
        measured: format!(
            "the engine's first call ({measured_pages} page{})",
            if measured_pages == 1 { "" } else { "s" }
        ),
        measured_items: measured_pages,
        measured_s,
        fixed_s,
        seconds_per_item: per_page,
        estimated_s: fixed_s + per_page * measuring.pages as f64,
    });
    let infos = [info];
    out.send(&DryRun {
        command: "decay",
        engine: &infos,
        unit: "read-backs",
        n_total: n_done + n_pending,
        n_done,
        n_pending,
        n_pages: measuring.pages,
        engine_load_s: load_s,
        estimate: estimate.clone(),
        baseline: None,
    })?;
    out.result(&format!(
        "decay: {} rounds × {} schedules: {} read-backs ({n_done} already journaled, {n_pending} to make, \
         {} pages for the engine)",
        cfg.rounds,
        cfg.schedules.len(),
        n_done + n_pending,
        measuring.pages
    ));
    out.result(&format!("engine: {} (loaded in {})", infos[0], duration_text(load_s)));
    match estimate {
        Some(e) => out.result(&e.describe("pages")),
        None => out.result("nothing to run"),
    }
    Ok(())
}

pub fn run(args: Args, out: &Output) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let interrupt = Interrupt::install()?;
    let state = resumed(&args)?;
    let args = restored(args, state.as_ref(), out)?;
    let cfg = match &state {
        Some(s) => {
            DecayConfig { datasets: args.datasets.clone().unwrap_or_else(|| s.config.datasets.clone()), ..s.config() }
        }
        None => config(&args)?,
    };
    let loading = Instant::now();
    let mut engine = engine(&args, &cfg, out)?;
    let load_s = loading.elapsed().as_secs_f64();
    let info = engine.info();
    let tokenizer = TextTokenizer::deepseek_ocr().context("loading the embedded tokenizer")?;
    if args.dry_run {
        let journal = match &args.resume {
            Some(dir) => DecayJournal::read(dir)?,
            None => DecayJournal::in_memory(),
        };
        return dry_run(&cfg, &tokenizer, engine.as_mut(), journal, load_s, out);
    }
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    // The run folder is made, locked and given a `running` manifest before any page is read, so an
    // unwritable folder fails here and a killed run can be resumed.
    let (dir, mut meta, lock) = match (&args.resume, state) {
        (Some(dir), Some(state)) => {
            let lock = RunLock::acquire(dir, &command)?;
            if state.meta.engine.name != info.name {
                anyhow::bail!(
                    "{} was read with engine {}; resume it with --engine {}",
                    dir.display(),
                    state.meta.engine.name,
                    state.meta.engine.name
                );
            }
            let meta = RunMeta { command: command.clone(), engine: info.clone(), ..state.meta };
            (dir.clone(), meta, lock)
        }
        _ => {
            let (created, compact) = occ_eval::results::utc_now();
            let parent = args.out.join("decay");
            std::fs::create_dir_all(&parent)
                .with_context(|| format!("output folder {} is not writable", parent.display()))?;
            // Created exclusively: two runs started at once with one run id get two folders.
            let dir = loop {
                let dir = output::fresh_run_dir(&args.out, args.run_id.as_deref().unwrap_or(&compact))?;
                match std::fs::create_dir(&dir) {
                    Ok(()) => break dir,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                    Err(e) => {
                        return Err(
                            anyhow::Error::new(e).context(format!("output folder {} is not writable", dir.display()))
                        )
                    }
                }
            };
            let lock = RunLock::acquire(&dir, &command)?;
            let run_id = dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or(compact);
            let meta = RunMeta {
                run_id,
                created_utc: created,
                command: command.clone(),
                engine: info.clone(),
                tokenizer: tokenizer.source().to_string(),
                wall_s: 0.0,
                reader_flags: Some({
                    let (values, switches) = reader_flag_names();
                    runs::reader_flags(&std::env::args().collect::<Vec<_>>(), &values, &switches)
                }),
                prompt: runs::prompt_of(args.engine, &args.model),
            };
            (dir, meta, lock)
        }
    };
    if let Some(old) = lock.took_over() {
        out.warn(&format!(
            "took over the stale lock of process {} (started {}), which is gone",
            old.pid, old.started_utc
        ));
    }
    let previous_wall = meta.wall_s;
    let mut journal = DecayJournal::open(&dir)?;
    output::write_state(&dir, &cfg, &meta, RunStatus::Running, journal.len())?;
    let run_id = meta.run_id.clone();
    let names: Vec<String> = cfg.schedules.iter().map(ScheduleSpec::name).collect();
    out.send(&DecayStart {
        schema_version: JSON_SCHEMA_VERSION,
        command: "decay",
        run_id: &run_id,
        dir: &dir,
        engine: &info,
        schedules: &names,
        rounds: cfg.rounds,
        round_tokens: cfg.round_tokens,
    })?;
    let resumed = if journal.is_empty() { String::new() } else { format!(" ({} read-backs journaled)", journal.len()) };
    out.info(&format!(
        "decay run {run_id}: {} rounds × {} schedules with {info}{resumed} -> {}",
        cfg.rounds,
        names.len(),
        dir.display()
    ));
    let mut bar = out.progress(
        "decay",
        "rounds",
        (cfg.rounds * cfg.schedules.len()) as u64,
        "{msg:>32} [{bar:40}] {pos}/{len} {elapsed} ETA {eta}",
    );
    let mut fresh = 0usize;
    let requested = interrupt.clone();
    let mut stop = || {
        // Asked before each new read-back: `fresh` read-backs are journaled by now.
        if args.crash_after == Some(fresh) {
            std::process::abort();
        }
        if args.interrupt_after == Some(fresh) {
            Interrupt::raise();
        }
        fresh += 1;
        requested.requested()
    };
    let outcome = decay::run_journaled(
        &cfg,
        &run_id,
        &tokenizer,
        engine.as_mut(),
        &mut journal,
        &mut |schedule, _, _| {
            bar.set_message(schedule.to_string());
            bar.inc(1);
        },
        &mut stop,
    );
    bar.finish();
    meta.wall_s = previous_wall + t0.elapsed().as_secs_f64();
    let stopped = match &outcome {
        Ok(Outcome::Complete(_)) => false,
        Ok(Outcome::Interrupted) => true,
        // An engine stopped by the same signal (its processes got it too) is an interrupt as well.
        Err(_) => interrupt.requested(),
    };
    if stopped {
        output::write_state(&dir, &cfg, &meta, RunStatus::Interrupted, journal.len())?;
        return Err(Interrupted {
            state: format!("{} is marked interrupted", dir.display()),
            done: format!("{} read-backs", journal.len()),
            resume: resume_command(&dir),
        }
        .into());
    }
    let results = match outcome {
        Ok(Outcome::Complete(results)) => results,
        Ok(Outcome::Interrupted) => anyhow::bail!("the decay run stopped without a stop request"),
        Err(e) => {
            let _ = output::write_state(&dir, &cfg, &meta, RunStatus::Failed, journal.len());
            return Err(
                anyhow::Error::new(e).context(format!("decay run stopped; continue it with: {}", resume_command(&dir)))
            );
        }
    };
    occ_report::decay::write_run(&dir, &cfg, &results, &meta)
        .with_context(|| format!("writing the decay run {}", dir.display()))?;
    drop(lock);
    for s in &results.summaries {
        out.send(&DecaySummary(s))?;
    }
    if !out.json {
        out.result(&format!(
            "{:<44} {:>8} {:>8} {:>7} {:>9} {:>9} {:>8}",
            "schedule", "tokens", "as text", "saving", "char prec", "baseline", "needles"
        ));
        for s in &results.summaries {
            out.result(&format!(
                "{:<44} {:>8} {:>8} {:>6.2}× {:>9.3} {:>9.3} {:>5}/{:<2}",
                s.schedule,
                s.context_tokens,
                s.all_text_tokens,
                s.saving,
                s.mean_char_precision,
                s.baseline_mean_char_precision,
                s.needles_retrieved,
                s.needles
            ));
        }
        out.result(&format!("wrote {} ({:.1} s)", dir.display(), t0.elapsed().as_secs_f64()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_in_help(id: &str) -> String {
        super::super::default_in_help::<Args>(id)
    }

    #[test]
    fn the_defaults_in_the_help_are_those_of_a_run_without_the_flag() {
        let d = DecayConfig::default();
        assert_eq!(default_in_help("rounds"), d.rounds.to_string());
        assert_eq!(default_in_help("round_tokens"), d.round_tokens.to_string());
        assert_eq!(default_in_help("corpus"), d.corpus);
        assert_eq!(default_in_help("datasets"), d.datasets.display().to_string());
        assert_eq!(default_in_help("seed"), d.seed.to_string());
        assert_eq!(default_in_help("needles"), d.needles.to_string());
        assert_eq!(default_in_help("page_ratio").parse::<f64>().unwrap(), d.page_ratio);
        assert_eq!(default_in_help("max_new_tokens"), d.max_new_tokens.to_string());
        let names: Vec<String> = d.schedules.iter().map(ScheduleSpec::name).collect();
        assert_eq!(default_in_help("schedules"), names.join(","));
        // And a run without flags is that configuration.
        assert_eq!(config(&test_args()).unwrap(), d);
    }

    fn test_args() -> Args {
        use clap::FromArgMatches;
        let cmd = <Args as clap::Args>::augment_args(clap::Command::new("decay"));
        Args::from_arg_matches(&cmd.get_matches_from(["decay"])).unwrap()
    }
}
