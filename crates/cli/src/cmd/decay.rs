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
use occ_eval::decay::output::{self, RunMeta};
use occ_eval::decay::{self, DecayConfig, DecayFile, DecayOverrides};
use occ_eval::oracle::TruthTap;
use occ_memory::ScheduleSpec;

use crate::engine::{self, EngineKind, ModelArgs, TesseractSettings};
use crate::messages::{DecayStart, DecaySummary};
use crate::output::{Output, JSON_SCHEMA_VERSION};

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
    /// Folder of the corpora.
    #[arg(long, default_value = "datasets")]
    pub datasets: PathBuf,
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
        datasets: Some(args.datasets.clone()),
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

pub fn run(args: Args, out: &Output) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let cfg = config(&args)?;
    let (mut engine, tap) = engine(&args, &cfg, out)?;
    let info = engine.info();
    let tokenizer = TextTokenizer::deepseek_ocr().context("loading the embedded tokenizer")?;
    let (created, compact) = occ_eval::results::utc_now();
    let dir = output::fresh_run_dir(&args.out, args.run_id.as_deref().unwrap_or(&compact))?;
    let run_id = dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or(compact);
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
    out.info(&format!("decay run {run_id}: {} rounds × {} schedules with {info}", cfg.rounds, names.len()));
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
    let results = decay::run(&cfg, &run_id, &tokenizer, engine.as_mut(), tap.as_ref(), &mut |schedule, _, _| {
        if let Some(b) = &bar {
            b.set_message(schedule.to_string());
            b.inc(1);
        }
    })?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let meta = RunMeta {
        run_id: run_id.clone(),
        created_utc: created,
        command,
        engine: info,
        tokenizer: tokenizer.source().to_string(),
        wall_s: t0.elapsed().as_secs_f64(),
    };
    // The directory is created only now, so a run that fails leaves nothing behind.
    std::fs::create_dir_all(&dir).with_context(|| format!("creating run directory {}", dir.display()))?;
    occ_report::decay::write_run(&dir, &cfg, &results, &meta)
        .with_context(|| format!("writing the decay run {}", dir.display()))?;
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
