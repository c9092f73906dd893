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
use occ_core::{OcrEngine, TextTokenizer};
use occ_eval::corpus::Corpus;
use occ_eval::decay::output::{self, DecayState, RunMeta};
use occ_eval::decay::{self, DecayConfig, DecayFile, DecayJournal, DecayOverrides, Outcome};
use occ_eval::lock::RunLock;
use occ_eval::oracle::TruthTap;
use occ_memory::ScheduleSpec;

use crate::engine::{self, EngineKind, ModelArgs, TesseractSettings};
use crate::interrupt::{Interrupt, Interrupted};
use crate::messages::{DecayStart, DecaySummary};
use crate::output::{Output, JSON_SCHEMA_VERSION};
use crate::runs;

/// Optical-memory decay sweep over a synthetic conversation.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Experiment file with a [decay] table and [[schedule]] tables (experiments/decay/*.toml).
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// Schedule to sweep (repeatable; replaces the file's). Grammar: `paper`, `paper:ages=1/2/4/8/16/32`,
    /// `paper-time`, `step:width=4`, `exp:first=2,factor=2`, `hybrid:k=4,width=4`,
    /// `ladder:levels=text@0/base@4/dropped@20`, `budget:tokens=4000`, `text`; ladder kinds also take
    /// `modes=a/b/..`, `policy=rerender|downsample`, `drop=AGE|never` (docs/MEMORY.md).
    #[arg(long = "schedule", value_name = "SPEC")]
    pub schedules: Vec<String>,
    /// Rounds in the conversation [default: 50].
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Tokens per round (corpus passages cut to this length) [default: 600].
    #[arg(long)]
    pub round_tokens: Option<usize>,
    /// Upper bound of generated tokens per page read back [default: 4096].
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// Corpus name: <datasets>/<corpus>.jsonl [default: en].
    #[arg(long)]
    pub corpus: Option<String>,
    /// Folder of the corpora [default: datasets]; with `--resume`, where the run's corpus is now
    /// [default: the folder it was started with].
    #[arg(long, value_name = "DIR")]
    pub datasets: Option<PathBuf>,
    /// Seed of passage order and needle codes [default: 7].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Needles planted at evenly spaced ages [default: 10].
    #[arg(long)]
    pub needles: Option<usize>,
    /// Text tokens per nominal vision token of a full page [default: 10].
    #[arg(long)]
    pub page_ratio: Option<f64>,
    /// Engine that reads the rounds back.
    #[arg(long, default_value = "tesseract", value_parser = engine::engine_parser(engine::SWEEP_ENGINES))]
    pub engine: EngineKind,
    /// Tesseract: pages read in parallel [default: available cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Tesseract page segmentation mode.
    #[arg(long, default_value_t = 6)]
    pub psm: u32,
    /// Results root; the run goes to <out>/decay/<run_id>/.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Run id [default: UTC time, e.g. 20250131T120000Z].
    #[arg(long)]
    pub run_id: Option<String>,
    /// Continue an interrupted or killed run (its configuration is read from its manifest;
    /// configuration flags are refused; give the same engine flags).
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["spec", "run_id"])]
    pub resume: Option<PathBuf>,
    /// Test hook: abort the process (like `kill -9`) after this many read-backs are journaled.
    #[arg(long, hide = true)]
    pub crash_after: Option<usize>,
    /// Test hook: send this process SIGINT after this many read-backs are journaled.
    #[arg(long, hide = true)]
    pub interrupt_after: Option<usize>,
}

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

/// The engine reading the rounds back, and the truth tap of the fake engine.
fn engine(args: &Args, cfg: &DecayConfig, out: &Output) -> anyhow::Result<(Box<dyn OcrEngine>, Option<TruthTap>)> {
    let lang = Corpus::load(&cfg.corpus, &cfg.datasets)?.lang;
    let tesseract = TesseractSettings { psm: args.psm, threads: args.threads };
    let (engines, tap) = engine::build_engines(args.engine, &[lang], tesseract, &args.model, out)?;
    Ok((engines.into_one(lang)?, tap))
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
    if state.status() == "complete" {
        anyhow::bail!("decay run {} is already complete; start a new run instead", dir.display());
    }
    Ok(Some(state))
}

/// The command that continues the decay run in `dir` (engine flags kept).
fn resume_command(dir: &std::path::Path) -> String {
    let argv: Vec<String> = std::env::args().collect();
    let values = [&runs::MODEL_VALUE_FLAGS[..], &["--engine", "--threads", "--psm", "--datasets"]].concat();
    runs::resume_command(&argv, dir, &values, &runs::MODEL_SWITCHES)
}

pub fn run(args: Args, out: &Output) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let interrupt = Interrupt::install()?;
    let state = resumed(&args)?;
    let cfg = match &state {
        Some(s) => {
            DecayConfig { datasets: args.datasets.clone().unwrap_or_else(|| s.config.datasets.clone()), ..s.config() }
        }
        None => config(&args)?,
    };
    let (mut engine, tap) = engine(&args, &cfg, out)?;
    let info = engine.info();
    let tokenizer = TextTokenizer::deepseek_ocr().context("loading the embedded tokenizer")?;
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
    output::write_state(&dir, &cfg, &meta, "running", journal.len())?;
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
    let bar = if out.progress_enabled() {
        let b = indicatif::ProgressBar::new((cfg.rounds * cfg.schedules.len()) as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{msg:>32} [{bar:40}] {pos}/{len} {elapsed}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(b)
    } else {
        None
    };
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
        tap.as_ref(),
        &mut journal,
        &mut |schedule, _, _| {
            if let Some(b) = &bar {
                b.set_message(schedule.to_string());
                b.inc(1);
            }
        },
        &mut stop,
    );
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    meta.wall_s = previous_wall + t0.elapsed().as_secs_f64();
    let stopped = match &outcome {
        Ok(Outcome::Complete(_)) => false,
        Ok(Outcome::Interrupted) => true,
        // An engine stopped by the same signal (its processes got it too) is an interrupt as well.
        Err(_) => interrupt.requested(),
    };
    if stopped {
        output::write_state(&dir, &cfg, &meta, "interrupted", journal.len())?;
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
            let _ = output::write_state(&dir, &cfg, &meta, "failed", journal.len());
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
