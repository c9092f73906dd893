//! `compress-bench sweep`: compression sweeps over ratios, modes and corpora.
//!
//! This file keeps the flags, the progress bar and the messages; the work is `occ_eval::sweep`:
//! prepare (spec from TOML + flags or the resumed manifest, corpora, sample list, shard — every bad
//! input fails here, before any engine is loaded), the engines (`crate::engine`), open (run
//! directory and manifest), execute (render, read, score, journal), finish (Parquet/CSV files and
//! manifest), then the report (docs/SWEEPS.md, docs/cli-json.md).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use occ_core::Prompt;
use occ_eval::journal::{self, JournalError};
use occ_eval::plan::{PlannedSample, Shard};
use occ_eval::runner::{self, Engines, Observer, RunContext, RunError, Silent};
use occ_eval::schema::SampleRow;
use occ_eval::spec::{ExperimentSpec, SpecFile, SpecOverrides};
use occ_eval::sweep::{self, Prepared, Start};

use crate::engine::{self, EngineKind, ModelArgs, TesseractSettings};
use crate::interrupt::{Interrupt, Interrupted};
use crate::messages::{DryRun, Estimate, Sample, SweepStart};
use crate::output::{duration_text, Output, Progress, JSON_SCHEMA_VERSION};
use crate::runs;

/// Compression sweep: render corpora at many ratios and modes, read back, score, report.
///
/// Every flag of the run's definition overrides the spec's field; its default is the spec's, else
/// the one shown.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Experiment spec (experiments/*.toml); flags below override its fields.
    pub spec: Option<PathBuf>,
    /// Ratios: "5..25" (step 1), "5..25:0.5" or "10,12,20" [default: the spec's, else 5..25:5].
    #[arg(long, allow_hyphen_values = true)]
    pub ratios: Option<String>,
    /// Modes, comma separated (tiny, small, base, large, gundam) [default: the spec's, else tiny,small].
    #[arg(long, value_delimiter = ',')]
    pub modes: Option<Vec<String>>,
    /// Corpora, comma separated (en, zh, probes) [default: the spec's, else en].
    #[arg(long, value_delimiter = ',')]
    pub corpora: Option<Vec<String>>,
    /// Pages per cell (corpus × mode × ratio) [default: the spec's, else 3].
    #[arg(long)]
    pub pages: Option<usize>,
    /// Seed of the run's random choices: passages, probes, bootstrap (not the weights:
    /// --weights-seed) [default: the spec's, else 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Reader [default: the spec's, else tesseract].
    #[arg(long, value_parser = engine::engine_parser(engine::SWEEP_ENGINES))]
    pub engine: Option<EngineKind>,
    /// Upper bound of generated tokens per page [default: the spec's, else 4096].
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// Experiment name (results/<name>/…) [default: the spec's, else adhoc].
    #[arg(long)]
    pub name: Option<String>,
    /// Folder of the corpora (en.jsonl, zh.jsonl) [default: the spec's datasets_dir, else datasets];
    /// with --resume, where the run's corpora are now [default: the folder it was started with].
    #[arg(long, value_name = "DIR")]
    pub datasets: Option<String>,
    /// Results root: the run goes to <out>/<name>/<run_id>.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Continue an interrupted run (its spec and reader flags are used; spec flags are refused, and
    /// so are reader flags with other values).
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "spec")]
    pub resume: Option<PathBuf>,
    /// Run only shard K of N (samples with index % N == K-1); join with `compress-bench merge`.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,
    /// tesseract: pages read in parallel, one process each [default: available CPU threads].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Do not write the report at the end.
    #[arg(long)]
    pub no_report: bool,
    /// Print the samples the run would make and an estimate of its time, measured by reading a
    /// few of them (the engine is loaded; nothing is written), then stop.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Test hook: abort the process (like `kill -9`) after this many samples are journaled.
    #[arg(long, hide = true)]
    pub crash_after: Option<usize>,
    /// Test hook: send this process SIGINT after this many samples are journaled.
    #[arg(long, hide = true)]
    pub interrupt_after: Option<usize>,
    #[command(flatten)]
    pub scale: super::scale::ScaleArgs,
}

/// Progress and `run_start` / `sample` / `warning` messages.
struct CliObserver<'a> {
    out: &'a Output,
    bar: Option<Progress>,
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
        let mut bar = self.out.progress(
            "sweep",
            "samples",
            total as u64,
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} ETA {eta} {msg}",
        );
        bar.start_at(already_done as u64);
        self.bar = Some(bar);
    }

    fn sample(&mut self, r: &SampleRow) {
        if let Some(bar) = &mut self.bar {
            bar.set_message(format!("{} r{} {:.2}", r.mode, r.target_ratio, r.char_precision));
            bar.inc(1);
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
        return Ok(Start::Resume {
            dir: dir.clone(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            datasets_dir: args.datasets.clone(),
        });
    }
    let spec = resolve_spec(args)?;
    let shard = args.shard.as_deref().map(Shard::parse).transpose().map_err(anyhow::Error::msg)?;
    Ok(Start::New { spec: Box::new(spec), shard })
}

/// The command that continues the run in `dir` (engine and output flags kept).
fn resume_command(dir: &std::path::Path) -> String {
    let argv: Vec<String> = std::env::args().collect();
    let values = [&runs::MODEL_VALUE_FLAGS[..], &["--threads", "--datasets"]].concat();
    let switches = [&runs::MODEL_SWITCHES[..], &["--no-report"]].concat();
    runs::resume_command(&argv, dir, &values, &switches)
}

/// The flags that load a sweep's reader: the model flags and Tesseract's `--threads` (the rest of
/// the engine's definition is the spec's, which the manifest keeps).
fn reader_flag_names() -> (Vec<&'static str>, Vec<&'static str>) {
    ([&runs::MODEL_VALUE_FLAGS[..], &["--threads"]].concat(), runs::MODEL_SWITCHES.to_vec())
}

/// `error`, after marking the run in `dir` `failed` with its chain when its manifest still says
/// `running` (a run whose tables are written stays `complete` when only its report fails).
fn failed_run(
    dir: &std::path::Path,
    manifest: &mut occ_eval::results::Manifest,
    error: anyhow::Error,
    out: &Output,
) -> anyhow::Error {
    match sweep::mark_failed(dir, manifest, crate::output::causes(&error)) {
        Ok(true) => out.info(&format!("{} is marked failed; continue it with: {}", dir.display(), resume_command(dir))),
        Ok(false) => {}
        Err(m) => out.warn(&format!("marking {} failed: {m}", dir.display())),
    }
    error
}

/// A resumed run's arguments: the reader flags its manifest recorded, under this command's
/// ([`runs::resumed_reader`]).
fn restored(args: Args, prepared: &Prepared, out: &Output) -> anyhow::Result<Args> {
    let (values, switches) = reader_flag_names();
    let recorded = prepared.resumed_manifest().and_then(|m| m.reader_flags.clone());
    let dir = args.resume.clone().unwrap_or_default();
    Ok(runs::resumed_reader("sweep", &dir, recorded, &values, &switches, out)?.unwrap_or(args))
}

/// `--dry-run`: the samples of the run (those a resumed run's journal lacks), and its time
/// estimated from reading a few of them, spread over the plan, through the sweep's own loop in a
/// scratch folder (removed after).
fn dry_run(prepared: &Prepared, mut engines: Engines, load_s: f64, out: &Output) -> anyhow::Result<()> {
    let done = match prepared.resumed_dir() {
        Some(dir) => journal::read(&dir.join(journal::JOURNAL_FILE))?.0,
        None => Default::default(),
    };
    let pending: Vec<&PlannedSample> = prepared.plan.iter().filter(|s| !done.contains_key(&s.index)).collect();
    let batch = match &engines {
        Engines::Shared(e) => e.preferred_batch(),
        Engines::PerLang(m) => m.values().map(|e| e.preferred_batch()).max().unwrap_or(1),
    }
    .max(1);
    // One engine batch of samples, spread evenly over the pending plan (modes and ratios differ in cost).
    let n_measured = batch.min(pending.len());
    let measured: Vec<PlannedSample> =
        (0..n_measured).map(|i| pending[i * pending.len() / n_measured].clone()).collect();
    let infos = engines.infos();
    let estimate = if measured.is_empty() {
        None
    } else {
        let scratch = std::env::temp_dir().join(format!("compress-bench-dry-run-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&scratch); // a folder left by a killed process of the same pid
        std::fs::create_dir_all(&scratch)
            .with_context(|| format!("creating the scratch folder {}", scratch.display()))?;
        let ctx = RunContext {
            spec: &prepared.spec,
            run_id: "dry-run".into(),
            run_dir: scratch.clone(),
            git_commit: String::new(),
            renderer: &prepared.renderer,
            tokenizer: &prepared.tokenizer,
            prompt: Prompt::FreeOcr,
        };
        let t = Instant::now();
        let counts = runner::execute(&ctx, &measured, &mut engines, &mut Silent);
        let seconds = t.elapsed().as_secs_f64();
        let _ = std::fs::remove_dir_all(&scratch);
        counts.context("reading the measured samples")?;
        Some(Estimate::measured(measured.len(), seconds, pending.len()))
    };
    let cells = prepared.plan.len() / prepared.spec.pages.max(1);
    let engine = infos.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    out.send(&DryRun {
        command: "sweep",
        engine: &infos,
        unit: "samples",
        n_total: prepared.plan.len(),
        n_done: prepared.plan.len() - pending.len(),
        n_pending: pending.len(),
        n_pages: pending.len(),
        engine_load_s: load_s,
        estimate: estimate.clone(),
    })?;
    out.result(&format!(
        "sweep {}: {} samples ({cells} cells of {} pages{}); {} already journaled, {} to run",
        prepared.spec.name,
        prepared.plan.len(),
        prepared.spec.pages,
        prepared.shard.map(|s| format!(", shard {}/{}", s.index, s.count)).unwrap_or_default(),
        prepared.plan.len() - pending.len(),
        pending.len()
    ));
    out.result(&format!("engine: {engine} (loaded in {})", duration_text(load_s)));
    match estimate {
        Some(e) => out.result(&e.describe("samples")),
        None => out.result("nothing to run"),
    }
    Ok(())
}

pub fn run(args: Args, out: &Output) -> anyhow::Result<()> {
    if args.scale.active() {
        return super::scale::run(&args, out); // --workers, --gpus, --emit-slurm, --shard-dir, --merge-shards
    }
    let interrupt = Interrupt::install()?;
    let mut prepared = sweep::prepare(start(&args)?)?;
    if let Some(old) = prepared.took_over() {
        out.warn(&format!(
            "took over the stale lock of process {} (started {}), which is gone",
            old.pid, old.started_utc
        ));
    }
    let args = restored(args, &prepared, out)?;
    let spec = &prepared.spec;
    let tesseract = TesseractSettings { psm: spec.tesseract_psm, threads: args.threads };
    let loading = Instant::now();
    let mut engines = engine::build_engines(spec.engine, &prepared.langs, tesseract, &args.model, out)?;
    if args.dry_run {
        return dry_run(&prepared, engines, loading.elapsed().as_secs_f64(), out);
    }
    let infos = engines.infos();
    let (values, switches) = reader_flag_names();
    let invocation = sweep::Invocation {
        reader_flags: Some(runs::reader_flags(&std::env::args().collect::<Vec<_>>(), &values, &switches)),
        prompt: runs::prompt_of(prepared.spec.engine, &args.model),
        ..runs::invocation()
    };
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
    let counts = run.execute(&prepared, &mut engines, &mut observer);
    if let Some(mut bar) = observer.bar.take() {
        bar.finish();
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
        Err(e) => {
            let e = anyhow::Error::new(e).context(format!("sweep stopped; continue it with: {}", resume_command(&dir)));
            return Err(failed_run(&dir, &mut run.manifest, e, out));
        }
        Ok(_) => {}
    }
    let failed = match runs::finish_run(&dir, &mut run.manifest, !args.no_report, out) {
        Ok(failed) => failed,
        Err(e) => return Err(failed_run(&dir, &mut run.manifest, e, out)),
    };
    if failed > 0 {
        bail!("{failed} samples failed (status render_error or engine_error in samples.parquet); the other results are written");
    }
    Ok(())
}

/// The spec a new run of this command has: the spec file (or the defaults) with the flags over it.
pub(super) fn resolve_spec(args: &Args) -> anyhow::Result<ExperimentSpec> {
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
    Ok(ExperimentSpec::resolve(file, overrides)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_in_help(id: &str) -> String {
        super::super::default_in_help::<Args>(id)
    }

    #[test]
    fn the_defaults_in_the_help_are_those_a_spec_without_the_field_gets() {
        let spec = ExperimentSpec::resolve(SpecFile::default(), SpecOverrides::default()).unwrap();
        let ratios = SpecOverrides { ratios: Some(default_in_help("ratios")), ..SpecOverrides::default() };
        assert_eq!(ExperimentSpec::resolve(SpecFile::default(), ratios).unwrap().ratios, spec.ratios);
        let modes: Vec<String> = spec.modes.iter().map(ToString::to_string).collect();
        assert_eq!(default_in_help("modes"), modes.join(","));
        assert_eq!(default_in_help("corpora"), spec.corpora.join(","));
        assert_eq!(default_in_help("pages"), spec.pages.to_string());
        assert_eq!(default_in_help("seed"), spec.seed.to_string());
        assert_eq!(default_in_help("engine"), spec.engine.name());
        assert_eq!(default_in_help("max_new_tokens"), spec.max_new_tokens.to_string());
        assert_eq!(default_in_help("name"), spec.name);
        assert_eq!(default_in_help("datasets"), spec.datasets_dir);
    }
}
