//! `compress-bench sweep`: compression sweeps over ratios, modes and corpora.
//!
//! This file keeps the flags, the progress bar and the messages; the work is `occ_eval::sweep`:
//! prepare (spec from TOML + flags or the resumed manifest, corpora, sample list, shard — every bad
//! input fails here, before any engine is loaded), the engines (`crate::engine`), open (run
//! directory and manifest), execute (render, read, score, journal), finish (Parquet/CSV files and
//! manifest), then the report (docs/SWEEPS.md, docs/cli-json.md).

use std::path::PathBuf;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use occ_eval::journal::JournalError;
use occ_eval::plan::Shard;
use occ_eval::runner::{Observer, RunError};
use occ_eval::schema::SampleRow;
use occ_eval::spec::{ExperimentSpec, SpecFile, SpecOverrides};
use occ_eval::sweep::{self, Start};

use crate::engine::{self, EngineKind, ModelArgs, TesseractSettings};
use crate::interrupt::{Interrupt, Interrupted};
use crate::messages::{Sample, SweepStart};
use crate::output::{Output, JSON_SCHEMA_VERSION};
use crate::runs;

/// Compression sweep: render corpora at many ratios and modes, read back, score, report.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Experiment spec (experiments/*.toml); flags below override its fields.
    pub spec: Option<PathBuf>,
    /// Ratios: "5..25" (step 1), "5..25:0.5" or "10,12,20".
    #[arg(long, allow_hyphen_values = true)]
    pub ratios: Option<String>,
    /// Modes, comma separated (tiny, small, base, large, gundam).
    #[arg(long, value_delimiter = ',')]
    pub modes: Option<Vec<String>>,
    /// Corpora, comma separated (en, zh, probes).
    #[arg(long, value_delimiter = ',')]
    pub corpora: Option<Vec<String>>,
    /// Pages per cell (corpus × mode × ratio).
    #[arg(long)]
    pub pages: Option<usize>,
    /// Seed of the passage choice, probes and bootstrap.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Reader [default: the spec's, else tesseract].
    #[arg(long, value_parser = engine::engine_parser(engine::SWEEP_ENGINES))]
    pub engine: Option<EngineKind>,
    /// Upper bound of generated tokens per page.
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// Experiment name (results/<name>/…); default: the spec's name, or "adhoc".
    #[arg(long)]
    pub name: Option<String>,
    /// Folder of the corpora (en.jsonl, zh.jsonl).
    #[arg(long)]
    pub datasets: Option<String>,
    /// Results root.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Continue an interrupted run (its spec is used; spec flags are refused).
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "spec")]
    pub resume: Option<PathBuf>,
    /// Run only shard K of N (samples with index % N == K-1); join with `compress-bench merge`.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,
    /// Parallel Tesseract processes (default: available CPU threads).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Do not write the report at the end.
    #[arg(long)]
    pub no_report: bool,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Test hook: abort the process (like `kill -9`) after this many samples are journaled.
    #[arg(long, hide = true)]
    pub crash_after: Option<usize>,
    /// Test hook: send this process SIGINT after this many samples are journaled.
    #[arg(long, hide = true)]
    pub interrupt_after: Option<usize>,
}

/// Progress bar and `run_start` / `sample` / `warning` messages.
struct CliObserver<'a> {
    out: &'a Output,
    bar: Option<ProgressBar>,
    run_start: Option<SweepStart<'a>>,
    seen: usize,
    crash_after: Option<usize>,
    interrupt_after: Option<usize>,
    interrupt: Interrupt,
}

impl Observer for CliObserver<'_> {
    fn started(&mut self, total: usize, already_done: usize) {
        if let Some(mut start) = self.run_start.take() {
            start.n_samples = total;
            start.n_resumed = already_done;
            if let Err(e) = self.out.send(&start) {
                tracing::warn!("writing run_start: {e}");
            }
        }
        if self.out.progress_enabled() {
            let bar = ProgressBar::new(total as u64);
            if let Ok(style) =
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} ETA {eta} {msg}")
            {
                bar.set_style(style);
            }
            bar.set_position(already_done as u64);
            bar.reset_eta();
            self.bar = Some(bar);
        }
    }

    fn sample(&mut self, r: &SampleRow) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
            bar.set_message(format!("{} r{} {:.2}", r.mode, r.target_ratio, r.char_precision));
        }
        if let Err(e) = self.out.send(&Sample::new(r)) {
            tracing::warn!("writing sample message: {e}");
        }
        self.seen += 1;
        if self.crash_after.is_some_and(|n| self.seen >= n) {
            std::process::abort();
        }
        if self.interrupt_after == Some(self.seen) {
            Interrupt::raise();
        }
    }

    fn should_stop(&mut self) -> bool {
        self.interrupt.requested()
    }

    fn warning(&mut self, message: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| self.out.warn(message)),
            None => self.out.warn(message),
        }
    }
}

/// What to run: the resumed run, or a new one from the spec file and the flags.
fn start(args: &Args) -> anyhow::Result<Start> {
    if let Some(dir) = &args.resume {
        let flags = [
            ("--ratios", args.ratios.is_some()),
            ("--modes", args.modes.is_some()),
            ("--corpora", args.corpora.is_some()),
            ("--pages", args.pages.is_some()),
            ("--seed", args.seed.is_some()),
            ("--engine", args.engine.is_some()),
            ("--max-new-tokens", args.max_new_tokens.is_some()),
            ("--name", args.name.is_some()),
            ("--shard", args.shard.is_some()),
        ];
        let given: Vec<&str> = flags.iter().filter(|f| f.1).map(|f| f.0).collect();
        if !given.is_empty() {
            bail!("--resume continues a run with its own spec; drop {}", given.join(", "));
        }
        return Ok(Start::Resume { dir: dir.clone(), command: std::env::args().collect::<Vec<_>>().join(" ") });
    }
    let file = match &args.spec {
        Some(p) => SpecFile::load(p)?,
        None => SpecFile::default(),
    };
    let overrides = SpecOverrides {
        name: args.name.clone(),
        corpora: args.corpora.clone(),
        modes: args.modes.clone(),
        ratios: args.ratios.clone(),
        pages: args.pages,
        seed: args.seed,
        engine: args.engine,
        max_new_tokens: args.max_new_tokens,
        datasets_dir: args.datasets.clone(),
    };
    let spec = ExperimentSpec::resolve(file, overrides)?;
    let shard = args.shard.as_deref().map(Shard::parse).transpose().map_err(anyhow::Error::msg)?;
    Ok(Start::New { spec: Box::new(spec), shard })
}

/// The command that continues the run in `dir` (engine and output flags kept).
fn resume_command(dir: &std::path::Path) -> String {
    let argv: Vec<String> = std::env::args().collect();
    let values = [&runs::MODEL_VALUE_FLAGS[..], &["--threads"]].concat();
    let switches = [&runs::MODEL_SWITCHES[..], &["--no-report"]].concat();
    runs::resume_command(&argv, dir, &values, &switches)
}

pub fn run(args: Args, out: &Output) -> anyhow::Result<()> {
    let interrupt = Interrupt::install()?;
    let mut prepared = sweep::prepare(start(&args)?)?;
    if let Some(old) = prepared.took_over() {
        out.warn(&format!(
            "took over the stale lock of process {} (started {}), which is gone",
            old.pid, old.started_utc
        ));
    }
    let spec = &prepared.spec;
    let tesseract = TesseractSettings { psm: spec.tesseract_psm, threads: args.threads };
    let (mut engines, truth_tap) = engine::build_engines(spec.engine, &prepared.langs, tesseract, &args.model, out)?;
    let infos = engines.infos();
    let invocation = runs::invocation();
    let mut run = prepared.open(&args.out, &infos, &invocation)?;
    let dir = run.dir.clone();
    out.info(&format!("sweep {}: {} samples -> {}", prepared.spec.name, prepared.plan.len(), dir.display()));
    let run_id = run.manifest.run_id.clone();
    let fingerprint = run.manifest.spec_fingerprint.clone();
    let mut observer = CliObserver {
        out,
        bar: None,
        run_start: Some(SweepStart {
            schema_version: JSON_SCHEMA_VERSION,
            experiment: &prepared.spec.name,
            run_id: &run_id,
            run_dir: dir.display().to_string(),
            git_commit: &invocation.git_commit,
            spec_fingerprint: &fingerprint,
            engines: &infos,
            host: &invocation.host,
            shard: prepared.shard,
            n_samples: 0,
            n_resumed: 0,
        }),
        seen: 0,
        crash_after: args.crash_after,
        interrupt_after: args.interrupt_after,
        interrupt: interrupt.clone(),
    };
    let counts = run.execute(&prepared, &mut engines, truth_tap, &mut observer);
    if let Some(bar) = observer.bar.take() {
        bar.finish_and_clear();
    }
    let stopped = match &counts {
        Ok(c) => c.interrupted,
        // An engine stopped by the same signal (its processes got it too) is an interrupt as well.
        Err(_) => interrupt.requested(),
    };
    if stopped {
        let written = run.interrupt().with_context(|| format!("marking {} interrupted", dir.display()))?;
        return Err(Interrupted {
            state: format!("{} is marked interrupted", dir.display()),
            done: format!("{} of {} samples", written.samples, run.manifest.n_samples_planned),
            resume: resume_command(&dir),
        }
        .into());
    }
    match counts {
        // Resuming cannot get past a damaged journal: say what to repair instead.
        Err(e @ sweep::SweepError::Run(RunError::Journal(JournalError::Corrupt { .. }))) => {
            return Err(anyhow::Error::new(e).context(format!(
                "the journal of {} is damaged; fix or delete the line named below (its sample is then run \
                 again), then continue with: {}",
                dir.display(),
                resume_command(&dir)
            )))
        }
        other => {
            other.with_context(|| format!("sweep stopped; continue it with: {}", resume_command(&dir)))?;
        }
    }
    let failed = runs::finish_run(&dir, &mut run.manifest, !args.no_report, out)?;
    if failed > 0 {
        bail!("{failed} samples failed (status render_error or engine_error in samples.parquet); the other results are written");
    }
    Ok(())
}
