//! `compress-bench sweep`: compression sweeps over ratios, modes and corpora.
//!
//! This file keeps the flags, the progress bar and the messages; the work is `occ_eval::sweep`:
//! prepare (spec from TOML + flags or the resumed manifest, corpora, sample list, shard — every bad
//! input fails here, before any engine is loaded), the engines (`crate::engine`), open (run
//! directory and manifest), execute (render, read, score, journal), finish (Parquet/CSV files and
//! manifest), then the report (docs/SWEEPS.md, docs/cli-json.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use occ_core::Prompt;
use occ_eval::compare::RunTables;
use occ_eval::journal::{self, JournalError};
use occ_eval::plan::{PlannedSample, Shard};
use occ_eval::results::{self, Manifest};
use occ_eval::runner::{self, Engines, Observer, RunContext, RunError, Silent};
use occ_eval::schema::SampleRow;
use occ_eval::spec::{ExperimentSpec, SpecFile, SpecOverrides};
use occ_eval::sweep::{self, Prepared, Start};
use occ_eval::RunStatus;

use crate::engine::{self, EngineKind, ModelArgs, TesseractSettings};
use crate::interrupt::{Interrupt, Interrupted};
use crate::messages::{
    compare_files, CompareHeadline, DryRun, DryRunBaseline, Estimate, Sample, SweepBaseline, SweepStart,
};
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
    /// A second engine that reads exactly the same pages after the main one, into a run of its own
    /// (<run>/baseline-<engine>/), compared with the main run in <run>/compare/ and summarised in
    /// its report (e.g. tesseract) [default: the spec's `baseline`, else none].
    #[arg(long, value_name = "ENGINE", value_parser = engine::engine_parser(engine::SWEEP_ENGINES))]
    pub baseline: Option<EngineKind>,
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
    /// Whether each sample is a `sample` message (not for a baseline run: its samples would mix with
    /// the main run's).
    samples: bool,
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
        if self.samples {
            if let Err(e) = self.out.send(&Sample::new(r)) {
                tracing::warn!("writing sample message: {e}");
            }
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
            ("--baseline", args.baseline.is_some()),
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
    if let Some(b) = spec.baseline {
        if shard.is_some() {
            bail!(
                "--baseline {b} (or the spec's baseline) cannot be used with --shard: a baseline run reads the whole                  plan after the main run; sweep without --shard, or run the baseline as a sweep of its own and                  `compress-bench compare` the two"
            );
        }
        if spec.engine.is_model() && b.is_model() {
            bail!(
                "--baseline {b} with --engine {}: two model readers would share the model flags (--weights, …); run                  them as two sweeps of the same spec and `compress-bench compare` them",
                spec.engine
            );
        }
    }
    Ok(Start::New { spec: Box::new(spec), shard })
}

/// The command that continues the run in `dir` (engine and output flags kept).
/// Runs `run` with `observer` and finishes its bar. A stop request (or an engine stopped by the same
/// signal: its processes got it too) marks the run interrupted and is returned as the [`Interrupted`]
/// error naming `resume_dir`'s resume command; otherwise the run's own outcome is returned. `what`
/// prefixes the run in messages (`""` for the main run, `"baseline "`).
fn execute(
    run: &mut sweep::Run,
    prepared: &Prepared,
    engines: &mut Engines,
    observer: &mut CliObserver<'_>,
    interrupt: &Interrupt,
    what: &str,
    resume_dir: &Path,
) -> anyhow::Result<Result<runner::RunCounts, sweep::SweepError>> {
    let counts = run.execute(prepared, engines, observer);
    if let Some(mut bar) = observer.bar.take() {
        bar.finish();
    }
    let stopped = match &counts {
        Ok(c) => c.interrupted,
        Err(_) => interrupt.requested(),
    };
    if stopped {
        let dir = run.dir.clone();
        let written = run.interrupt().with_context(|| format!("marking {} interrupted", dir.display()))?;
        let state = if what.is_empty() {
            format!("{} is marked interrupted", dir.display())
        } else {
            format!("the {what}run {} is marked interrupted", dir.display())
        };
        return Err(Interrupted {
            state,
            done: format!("{} of {} {what}samples", written.samples, run.manifest.n_samples_planned),
            resume: resume_command(resume_dir),
        }
        .into());
    }
    Ok(counts)
}

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
fn failed_run(dir: &std::path::Path, manifest: &mut Manifest, error: anyhow::Error, out: &Output) -> anyhow::Error {
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
fn dry_run(
    prepared: &Prepared,
    engines: Engines,
    load_s: f64,
    baseline: Option<DryRunBaseline>,
    out: &Output,
) -> anyhow::Result<()> {
    let done = match prepared.resumed_dir() {
        Some(dir) => journal::read(&dir.join(journal::JOURNAL_FILE))?.0,
        None => Default::default(),
    };
    let infos = engines.infos();
    let (n_pending, estimate) = measure(prepared, engines, &done)?;
    let cells = prepared.plan.len() / prepared.spec.pages.max(1);
    let engine = infos.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    out.send(&DryRun {
        command: "sweep",
        engine: &infos,
        unit: "samples",
        n_total: prepared.plan.len(),
        n_done: prepared.plan.len() - n_pending,
        n_pending,
        n_pages: n_pending,
        engine_load_s: load_s,
        estimate: estimate.clone(),
        baseline: baseline.clone(),
    })?;
    out.result(&format!(
        "sweep {}: {} samples ({cells} cells of {} pages{}); {} already journaled, {} to run",
        prepared.spec.name,
        prepared.plan.len(),
        prepared.spec.pages,
        prepared.shard.map(|s| format!(", shard {}/{}", s.index, s.count)).unwrap_or_default(),
        prepared.plan.len() - n_pending,
        n_pending
    ));
    out.result(&format!("engine: {engine} (loaded in {})", duration_text(load_s)));
    match estimate {
        Some(e) => out.result(&e.describe("samples")),
        None => out.result("nothing to run"),
    }
    if let Some(b) = baseline {
        let engine = b.engine.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        out.result(&format!(
            "baseline {engine} (loaded in {}): the same {} samples; {} already journaled, {} to run",
            duration_text(b.engine_load_s),
            b.n_total,
            b.n_done,
            b.n_pending
        ));
        match b.estimate {
            Some(e) => out.result(&format!("baseline: {}", e.describe("samples"))),
            None => out.result("baseline: nothing to run"),
        }
    }
    Ok(())
}

/// The dry run of the baseline of `spec` whose main run is (or will be) in `main_dir`: its
/// samples (those its journal lacks) and its time, measured like the main run's.
fn dry_run_baseline(
    spec: &ExperimentSpec,
    main_dir: Option<&std::path::Path>,
    args: &Args,
    out: &Output,
) -> anyhow::Result<Option<DryRunBaseline>> {
    let Some(bspec) = sweep::baseline_spec(spec) else { return Ok(None) };
    let prepared = sweep::prepare(Start::New { spec: Box::new(bspec), shard: None })?;
    let done = match main_dir.map(|d| sweep::baseline_dir(d, prepared.spec.engine).join(journal::JOURNAL_FILE)) {
        Some(j) if j.is_file() => journal::read(&j)?.0,
        _ => Default::default(),
    };
    let tesseract = TesseractSettings { psm: prepared.spec.tesseract_psm, threads: args.threads };
    let loading = Instant::now();
    let engines = engine::build_engines(prepared.spec.engine, &prepared.langs, tesseract, &args.model, out)?;
    let load_s = loading.elapsed().as_secs_f64();
    let infos = engines.infos();
    let (n_pending, estimate) = measure(&prepared, engines, &done)?;
    Ok(Some(DryRunBaseline {
        engine: infos,
        n_total: prepared.plan.len(),
        n_done: prepared.plan.len() - n_pending,
        n_pending,
        engine_load_s: load_s,
        estimate,
    }))
}

/// The samples of `prepared` that `done` lacks, and their time estimated by reading one engine
/// batch of them spread over the plan (in a scratch folder, removed after).
fn measure<V>(
    prepared: &Prepared,
    mut engines: Engines,
    done: &std::collections::BTreeMap<u64, V>,
) -> anyhow::Result<(usize, Option<Estimate>)> {
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
    Ok((pending.len(), estimate))
}

pub fn run(args: Args, out: &Output) -> anyhow::Result<()> {
    if args.scale.active() {
        refuse_baseline_at_scale(&args)?;
        return super::scale::run(&args, out); // --workers, --gpus, --emit-slurm, --shard-dir, --merge-shards
    }
    let interrupt = Interrupt::install()?;
    let start = start(&args)?;
    if let Start::Resume { dir, .. } = &start {
        // A finished main run whose baseline (or comparison) is not: only the baseline is left.
        if let Ok(m) = Manifest::load(dir) {
            if m.status == RunStatus::Complete && m.spec.baseline.is_some() && !baseline_finished(dir, &m.spec) {
                return resume_baseline(args, dir.clone(), m, out, &interrupt);
            }
        }
    }
    let mut prepared = sweep::prepare(start)?;
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
        let load_s = loading.elapsed().as_secs_f64();
        let baseline = dry_run_baseline(&prepared.spec, prepared.resumed_dir(), &args, out)?;
        return dry_run(&prepared, engines, load_s, baseline, out);
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
        samples: true,
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
    let counts = execute(&mut run, &prepared, &mut engines, &mut observer, &interrupt, "", &dir)?;
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
    let mut extra = Vec::new();
    if prepared.spec.baseline.is_some() {
        drop(engines); // the main reader's memory, before the baseline's is loaded
                       // The main run's tables first: the comparison reads them.
        if let Err(e) = sweep::finish(&dir, &mut run.manifest) {
            let e = anyhow::Error::new(e).context(format!("writing the results of {}", dir.display()));
            return Err(failed_run(&dir, &mut run.manifest, e, out));
        }
        let main_seen = observer.seen;
        let run_id = run.manifest.run_id.clone();
        match run_baseline(&dir, &run_id, &prepared.spec, &args, main_seen, out, &interrupt) {
            Ok(files) => extra = files,
            Err(e) => {
                if !args.no_report {
                    if let Err(r) = occ_report::write_report(&dir) {
                        out.warn(&format!("writing the report of {}: {r:#}", dir.display()));
                    }
                }
                return Err(e);
            }
        }
    }
    let failed = match runs::finish_run_with(&dir, &mut run.manifest, !args.no_report, &extra, out) {
        Ok(failed) => failed,
        Err(e) => return Err(failed_run(&dir, &mut run.manifest, e, out)),
    };
    if failed > 0 {
        bail!("{failed} samples failed (status render_error or engine_error in samples.parquet); the other results are written");
    }
    Ok(())
}

/// `--workers`, `--gpus` and `--emit-slurm` run shards, and a baseline reads a whole plan: refused
/// together (docs/SWEEPS.md, "Baseline engine").
fn refuse_baseline_at_scale(args: &Args) -> anyhow::Result<()> {
    let in_spec = match &args.spec {
        Some(p) => SpecFile::load(p)?.baseline,
        None => None,
    };
    if let Some(b) = args.baseline.or(in_spec) {
        bail!(
            "--baseline {b} (or the spec's baseline) cannot be used with --workers, --gpus or --emit-slurm: they split              the run into shards; sweep without them, or sweep the baseline engine on its own and `compress-bench              compare` the two runs"
        );
    }
    Ok(())
}

/// Whether the baseline of the main run in `dir` (spec `spec`) is complete and compared.
fn baseline_finished(dir: &Path, spec: &ExperimentSpec) -> bool {
    let Some(b) = spec.baseline else { return true };
    let done = Manifest::load(&sweep::baseline_dir(dir, b)).is_ok_and(|m| m.status == RunStatus::Complete);
    done && dir.join(sweep::BASELINE_COMPARE_DIR).join(occ_report::compare::JSON_FILE).is_file()
}

/// `--resume` of a complete main run whose baseline is not finished: the baseline run (started,
/// or continued from its journal), its comparison, then the main run's summary and report.
fn resume_baseline(
    args: Args,
    dir: PathBuf,
    mut manifest: Manifest,
    out: &Output,
    interrupt: &Interrupt,
) -> anyhow::Result<()> {
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let _lock = occ_eval::lock::RunLock::acquire(&dir, &command)?;
    let (values, switches) = reader_flag_names();
    let args =
        runs::resumed_reader("sweep", &dir, manifest.reader_flags.clone(), &values, &switches, out)?.unwrap_or(args);
    let mut spec = manifest.spec.clone();
    if let Some(d) = &args.datasets {
        spec.datasets_dir = d.clone();
    }
    if args.dry_run {
        let baseline = dry_run_baseline(&spec, Some(&dir), &args, out)?;
        let n = manifest.n_samples_planned;
        out.send(&DryRun {
            command: "sweep",
            engine: &manifest.engines,
            unit: "samples",
            n_total: n,
            n_done: n,
            n_pending: 0,
            n_pages: 0,
            engine_load_s: 0.0,
            estimate: None,
            baseline: baseline.clone(),
        })?;
        out.result(&format!("sweep {}: {n} samples, all journaled; only the baseline is left", spec.name));
        if let Some(b) = baseline {
            out.result(&format!(
                "baseline: {} samples; {} already journaled, {} to run{}",
                b.n_total,
                b.n_done,
                b.n_pending,
                b.estimate.map(|e| format!("; {}", e.describe("samples"))).unwrap_or_default()
            ));
        }
        return Ok(());
    }
    out.info(&format!("{} is complete; finishing its baseline", dir.display()));
    let run_id = manifest.run_id.clone();
    let extra = match run_baseline(&dir, &run_id, &spec, &args, 0, out, interrupt) {
        Ok(files) => files,
        Err(e) => {
            if !args.no_report {
                if let Err(r) = occ_report::write_report(&dir) {
                    out.warn(&format!("writing the report of {}: {r:#}", dir.display()));
                }
            }
            return Err(e);
        }
    };
    let failed = runs::finish_run_with(&dir, &mut manifest, !args.no_report, &extra, out)?;
    if failed > 0 {
        bail!("{failed} samples failed (status render_error or engine_error in samples.parquet); the other results are written");
    }
    Ok(())
}

/// The baseline of the main run in `main_dir` (spec `spec`, run id `main_run_id`): its run of the
/// same pages in `<main_dir>/baseline-<engine>` (new, continued, or left as it is when complete),
/// its report, the comparison (baseline first) in `<main_dir>/compare`, and the `baseline` message.
/// Returns the entries it adds to the main run's `summary` files. `main_seen`: samples the main run
/// journaled in this process (the test hooks count on from there).
#[allow(clippy::too_many_arguments)]
fn run_baseline(
    main_dir: &Path,
    main_run_id: &str,
    spec: &ExperimentSpec,
    args: &Args,
    main_seen: usize,
    out: &Output,
    interrupt: &Interrupt,
) -> anyhow::Result<Vec<(&'static str, String)>> {
    let Some(bspec) = sweep::baseline_spec(spec) else { return Ok(Vec::new()) };
    let b = bspec.engine;
    let bdir = sweep::baseline_dir(main_dir, b);
    let recorded = if bdir.join(occ_eval::results::MANIFEST_FILE).is_file() {
        Some(Manifest::load(&bdir).with_context(|| format!("reading the baseline run {}", bdir.display()))?)
    } else {
        None
    };
    let manifest = match recorded {
        Some(m) if m.status == RunStatus::Complete => {
            out.info(&format!("baseline {b}: {} is complete", bdir.display()));
            m
        }
        recorded => {
            let start = match recorded {
                Some(_) => Start::Resume {
                    dir: bdir.clone(),
                    command: std::env::args().collect::<Vec<_>>().join(" "),
                    datasets_dir: Some(spec.datasets_dir.clone()),
                },
                None => Start::New { spec: Box::new(bspec), shard: None },
            };
            let mut prepared = sweep::prepare(start)?;
            if let Some(old) = prepared.took_over() {
                out.warn(&format!(
                    "took over the stale lock of process {} (started {}), which is gone",
                    old.pid, old.started_utc
                ));
            }
            let tesseract = TesseractSettings { psm: prepared.spec.tesseract_psm, threads: args.threads };
            let mut engines = engine::build_engines(b, &prepared.langs, tesseract, &args.model, out)
                .with_context(|| format!("loading the baseline engine {b} (--baseline)"))?;
            let infos = engines.infos();
            let (values, switches) = reader_flag_names();
            let invocation = sweep::Invocation {
                reader_flags: Some(runs::reader_flags(&std::env::args().collect::<Vec<_>>(), &values, &switches)),
                prompt: runs::prompt_of(b, &args.model),
                ..runs::invocation()
            };
            let run_id = format!("{main_run_id}-baseline-{b}");
            let mut run = prepared.open_in(&bdir, run_id, &infos, &invocation)?;
            out.info(&format!("baseline {b}: {} samples -> {}", prepared.plan.len(), bdir.display()));
            let mut observer = CliObserver {
                out,
                samples: false,
                bar: None,
                run_start: None,
                seen: main_seen,
                crash_after: args.crash_after,
                interrupt_after: args.interrupt_after,
                interrupt: interrupt.clone(),
            };
            let counts = execute(&mut run, &prepared, &mut engines, &mut observer, interrupt, "baseline ", main_dir)?;
            if let Err(e) = counts {
                let e = anyhow::Error::new(e).context(format!(
                    "the baseline sweep ({b}) stopped; continue it with: {}",
                    resume_command(main_dir)
                ));
                if let Err(m) = sweep::mark_failed(&bdir, &mut run.manifest, crate::output::causes(&e)) {
                    out.warn(&format!("marking {} failed: {m}", bdir.display()));
                }
                return Err(e);
            }
            sweep::finish(&bdir, &mut run.manifest)
                .with_context(|| format!("writing the results of the baseline run {}", bdir.display()))?;
            run.manifest.clone()
        }
    };
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    for f in [results::SAMPLES_FILE, results::PREDICTIONS_FILE, results::SUMMARY_FILE, results::MANIFEST_FILE] {
        files.insert(format!("baseline/{f}"), bdir.join(f).display().to_string());
    }
    if !args.no_report {
        let r = occ_report::write_report(&bdir)
            .with_context(|| format!("writing the report of the baseline run {}", bdir.display()))?;
        files.insert("baseline/report.md".into(), r.markdown.display().to_string());
        files.insert("baseline/report.html".into(), r.html.display().to_string());
    }
    let tables = [RunTables::load(&bdir, b.name())?, RunTables::load(main_dir, spec.engine.name())?];
    let cdir = main_dir.join(sweep::BASELINE_COMPARE_DIR);
    let (cfiles, comparison) = occ_report::compare::write_compare_into(&tables, &cdir, spec.seed)
        .with_context(|| format!("comparing the baseline run {} with {}", bdir.display(), main_dir.display()))?;
    for (name, path) in compare_files(&cfiles) {
        files.insert(format!("compare/{name}"), path);
    }
    let n_pairs = comparison.pairings.iter().map(|p| p.n_paired).sum();
    let headline = CompareHeadline::of(&comparison);
    out.send(&SweepBaseline {
        engine: b.name(),
        main_engine: spec.engine.name(),
        run_dir: bdir.display().to_string(),
        run_id: &manifest.run_id,
        status: manifest.status,
        n_samples: manifest.n_samples_done,
        n_failed: manifest.n_failed,
        compare_dir: cfiles.dir.display().to_string(),
        files,
        n_pairs,
        headline,
    })?;
    for p in &comparison.pairings {
        out.info(&format!(
            "baseline {b}: {} samples ({} failed) -> {}; {} pages paired with {} -> {}",
            manifest.n_samples_done,
            manifest.n_failed,
            bdir.display(),
            p.n_paired,
            spec.engine,
            cfiles.html.display()
        ));
    }
    Ok(vec![("baseline_run", bdir.display().to_string()), ("compare", cfiles.dir.display().to_string())])
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
        baseline: args.baseline,
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
