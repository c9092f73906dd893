//! A compression sweep from its spec to its files, in three steps:
//!
//! 1. [`prepare`]: the spec (a new run's, or the manifest's for `--resume`), the corpora (the
//!    generated `probes` corpus included), the tokenizer and renderer, the sample list and its shard.
//!    Every bad input fails here, before an engine is loaded or a folder is created.
//! 2. [`Prepared::open`]: with the engines' identities, the run directory and its `manifest.json`
//!    (a fresh directory, or the resumed one); then [`Run::execute`] renders, reads, scores and
//!    journals every sample the journal does not hold yet ([`crate::runner`]) and records the session.
//! 3. [`finish`]: `samples.parquet`, `predictions.parquet` and `summary.csv` from the journal, and the
//!    manifest's counts and status (also used by `merge`). The report is occ-report's.
//!
//! Building the engines is the caller's: DeepSeek-OCR lives in occ-model, which this crate does not
//! link ([`Prepared::langs`] says which Tesseract languages are needed).

use std::path::{Path, PathBuf};
use std::time::Instant;

use occ_core::{EngineInfo, Prompt, TextTokenizer, TokenizerError};

use crate::corpus::{Corpus, CorpusError};
use crate::lock::{LockError, RunLock};
use crate::normalize::Lang;
use crate::plan::{build_plan, PlannedSample, Shard};
use crate::probes;
use crate::render::{OccRenderer, PageRenderer};
use crate::results::{self, Manifest, ResultsError, Session, Written};
use crate::runner::{self, Engines, Observer, RunContext, RunCounts, RunError};
use crate::schema::SummaryRow;
use crate::spec::ExperimentSpec;
use crate::status::RunStatus;

/// Name of the generated corpus (made from `en`, [`crate::probes`]).
pub const PROBES_CORPUS: &str = "probes";

/// Errors of preparing, running and finishing a sweep.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Corpus(#[from] CorpusError),
    #[error("the probes corpus is generated from the en corpus: {0}")]
    Probes(CorpusError),
    #[error("loading the DeepSeek-OCR tokenizer: {0}")]
    Tokenizer(#[from] TokenizerError),
    #[error("--resume {dir}: not a run directory: {source}")]
    NotARun { dir: String, source: ResultsError },
    #[error("run {0} is already complete; start a new run instead")]
    Complete(String),
    #[error(transparent)]
    Results(#[from] ResultsError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Lock(#[from] LockError),
    /// A resumed run read by other engines than it began with (other weights, settings, version or
    /// dtype would mix two readers' outputs in one table).
    #[error(
        "--resume {dir}: the run was read by {recorded} and would now be read by {now}; resume with the same engine \
         settings, or start a new run"
    )]
    EngineChanged { dir: String, recorded: String, now: String },
}

/// What must stay the same for a resumed run to be one reader's: the engine, its version (which
/// carries its output-changing settings: Tesseract's language and page segmentation, the model
/// readers' resize order), its weights and its dtype. The device may change.
fn reader_identity(engines: &[EngineInfo]) -> String {
    let one = |e: &EngineInfo| {
        format!("{} {} (weights {}, {})", e.name, e.version, e.weights.as_deref().unwrap_or("none"), e.dtype)
    };
    engines.iter().map(one).collect::<Vec<_>>().join(" + ")
}

/// What to run: a new run of a resolved spec (optionally one shard of it), or the rest of an
/// interrupted run (its own spec and shard, from its manifest).
#[derive(Debug, Clone)]
pub enum Start {
    New {
        spec: Box<ExperimentSpec>,
        shard: Option<Shard>,
    },
    /// `command`: the command line, recorded in the run folder's lock. `datasets_dir`: where the
    /// run's corpora are now (`None`: the folder it was started with; the manifest keeps that one).
    Resume {
        dir: PathBuf,
        command: String,
        datasets_dir: Option<String>,
    },
}

/// Facts about the invocation that only the caller knows (recorded in the manifest).
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    /// `git rev-parse HEAD` of the working directory, or `unknown`.
    pub git_commit: String,
    /// A one-line description of the machine.
    pub host: String,
    /// The command line.
    pub command: Vec<String>,
    /// Name and version of the tool writing the run.
    pub tool: String,
    pub tool_version: String,
    /// The flags that loaded the reader, as given (recorded in a new run's manifest, restored by
    /// `--resume`).
    pub reader_flags: Option<Vec<String>>,
    /// The prompt the reader is given (recorded in a new run's manifest; `None` for readers
    /// without a prompt).
    pub prompt: Option<String>,
}

/// A sweep ready to run: every input loaded and checked.
#[derive(Debug)]
pub struct Prepared {
    pub spec: ExperimentSpec,
    pub shard: Option<Shard>,
    /// The samples of this run (of its shard), in sample order.
    pub plan: Vec<PlannedSample>,
    /// Languages of the corpora, sorted and unique (one Tesseract per language).
    pub langs: Vec<Lang>,
    pub tokenizer: TextTokenizer,
    pub renderer: OccRenderer,
    resumed: Option<(PathBuf, Manifest, RunLock)>,
    started: Instant,
}

/// Loads the corpora of a spec in its order; `probes` is generated from `en` with the spec's seed.
pub fn load_corpora(spec: &ExperimentSpec) -> Result<Vec<Corpus>, SweepError> {
    let dir = Path::new(&spec.datasets_dir);
    spec.corpora
        .iter()
        .map(|name| {
            if name == PROBES_CORPUS {
                let en = Corpus::load("en", dir).map_err(SweepError::Probes)?;
                Ok(probes::probes(&en, spec.seed))
            } else {
                Ok(Corpus::load(name, dir)?)
            }
        })
        .collect()
}

/// Step 1: resolves what to run and loads everything it needs. A resumed run's folder is locked
/// here ([`crate::lock`]): a second process on it is refused before it loads anything.
pub fn prepare(start: Start) -> Result<Prepared, SweepError> {
    let started = Instant::now();
    let (spec, shard, resumed) = match start {
        Start::New { spec, shard } => (*spec, shard, None),
        Start::Resume { dir, command, datasets_dir } => {
            let m = Manifest::load(&dir)
                .map_err(|source| SweepError::NotARun { dir: dir.display().to_string(), source })?;
            if m.status == RunStatus::Complete {
                return Err(SweepError::Complete(dir.display().to_string()));
            }
            let lock = RunLock::acquire(&dir, &command)?;
            // Read again under the lock: the run may have moved on since.
            let m = Manifest::load(&dir)
                .map_err(|source| SweepError::NotARun { dir: dir.display().to_string(), source })?;
            if m.status == RunStatus::Complete {
                return Err(SweepError::Complete(dir.display().to_string()));
            }
            let mut spec = m.spec.clone();
            if let Some(d) = datasets_dir {
                spec.datasets_dir = d;
            }
            (spec, m.shard, Some((dir, m, lock)))
        }
    };
    let corpora = load_corpora(&spec)?;
    let tokenizer = TextTokenizer::deepseek_ocr()?;
    let renderer = OccRenderer::new(tokenizer.clone());
    let plan = build_plan(&spec, &corpora, &renderer)?;
    let plan: Vec<PlannedSample> = plan.into_iter().filter(|s| shard.is_none_or(|k| k.contains(s.index))).collect();
    let mut langs: Vec<Lang> = corpora.iter().map(|c| c.lang).collect();
    langs.sort_by_key(|l| l.as_str());
    langs.dedup();
    Ok(Prepared { spec, shard, plan, langs, tokenizer, renderer, resumed, started })
}

impl Prepared {
    /// The run directory of a resumed run (`None` for a new run).
    pub fn resumed_dir(&self) -> Option<&Path> {
        self.resumed.as_ref().map(|(d, _, _)| d.as_path())
    }

    /// The manifest of a resumed run, as read under its lock (`None` for a new run).
    pub fn resumed_manifest(&self) -> Option<&Manifest> {
        self.resumed.as_ref().map(|(_, m, _)| m)
    }

    /// The stale lock a resumed run took over (its holder was killed), if any.
    pub fn took_over(&self) -> Option<&crate::lock::LockHolder> {
        self.resumed.as_ref().and_then(|(_, _, l)| l.took_over())
    }

    /// Step 2: the run directory with its manifest: a fresh `<out_root>/<experiment>/<run_id>` for a
    /// new run (never reusing one), the resumed run's own otherwise.
    pub fn open(
        &mut self,
        out_root: &Path,
        engines: &[EngineInfo],
        invocation: &Invocation,
    ) -> Result<Run, SweepError> {
        let (dir, manifest, lock) = match self.resumed.take() {
            Some(resumed) => {
                let (recorded, now) = (reader_identity(&resumed.1.engines), reader_identity(engines));
                if recorded != now {
                    return Err(SweepError::EngineChanged { dir: resumed.0.display().to_string(), recorded, now });
                }
                resumed
            }
            None => {
                let (dir, run_id) = results::create_run_dir(out_root, &self.spec, self.shard)?;
                self.new_manifest(dir, run_id, engines, invocation)?
            }
        };
        let (started_utc, _) = results::utc_now();
        Ok(Run { dir, manifest, started_utc, command: invocation.command.clone(), _lock: lock })
    }
}

impl Prepared {
    /// Step 2 for a new run in a folder the caller names (`dir`, created if missing; it must hold
    /// no run yet), with run id `run_id`: a baseline run inside its main run ([`baseline_dir`]).
    pub fn open_in(
        &mut self,
        dir: &Path,
        run_id: String,
        engines: &[EngineInfo],
        invocation: &Invocation,
    ) -> Result<Run, SweepError> {
        if self.resumed.is_some() {
            return self.open(dir, engines, invocation);
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| ResultsError::Unwritable { path: dir.display().to_string(), source: e })?;
        let (dir, manifest, lock) = self.new_manifest(dir.to_path_buf(), run_id, engines, invocation)?;
        let (started_utc, _) = results::utc_now();
        Ok(Run { dir, manifest, started_utc, command: invocation.command.clone(), _lock: lock })
    }

    /// Locks the fresh folder `dir` and writes the manifest of a new run in it.
    fn new_manifest(
        &self,
        dir: PathBuf,
        run_id: String,
        engines: &[EngineInfo],
        invocation: &Invocation,
    ) -> Result<(PathBuf, Manifest, RunLock), SweepError> {
        let lock = RunLock::acquire(&dir, &invocation.command.join(" "))?;
        let (created, _) = results::utc_now();
        let manifest = Manifest {
            manifest_version: results::MANIFEST_VERSION,
            tool: invocation.tool.clone(),
            tool_version: invocation.tool_version.clone(),
            git_commit: invocation.git_commit.clone(),
            experiment: self.spec.name.clone(),
            run_id,
            created_utc: created,
            status: RunStatus::Running,
            spec_fingerprint: self.spec.fingerprint(),
            spec: self.spec.clone(),
            shard: self.shard,
            merged_from: Vec::new(),
            synthetic_weights: engines.iter().any(|i| i.synthetic_weights),
            engines: engines.to_vec(),
            renderer: self.renderer.describe(),
            tokenizer: self.tokenizer.source().to_string(),
            host: invocation.host.clone(),
            n_samples_planned: self.plan.len(),
            n_samples_done: 0,
            n_failed: 0,
            sessions: Vec::new(),
            wall_time_s: 0.0,
            reader_flags: invocation.reader_flags.clone(),
            prompt: invocation.prompt.clone(),
            error_chain: Vec::new(),
        };
        manifest.save(&dir)?;
        Ok((dir, manifest, lock))
    }
}

/// The folder, inside a main run's folder `run_dir`, of the run its baseline engine `engine` made
/// of the same pages (`<run_dir>/baseline-<engine>`; a complete run folder of its own).
pub fn baseline_dir(run_dir: &Path, engine: crate::spec::EngineKind) -> PathBuf {
    run_dir.join(format!("baseline-{}", engine.name()))
}

/// The folder, inside a main run's folder, of the comparison of its baseline run (first) with it.
pub const BASELINE_COMPARE_DIR: &str = "compare";

/// The spec of the baseline run of `spec`: the same pages (corpora, modes, ratios, pages, seed,
/// settings) read by `baseline` (`None` when the spec names no baseline).
pub fn baseline_spec(spec: &ExperimentSpec) -> Option<ExperimentSpec> {
    spec.baseline.map(|b| ExperimentSpec { engine: b, baseline: None, ..spec.clone() })
}

/// An open run directory, locked ([`crate::lock`]) until the `Run` is dropped.
#[derive(Debug)]
pub struct Run {
    pub dir: PathBuf,
    pub manifest: Manifest,
    started_utc: String,
    command: Vec<String>,
    _lock: RunLock,
}

impl Run {
    /// Runs every sample of the plan the journal does not hold yet, then records this session
    /// (its wall time counted from [`prepare`]) in the manifest (not saved until [`finish`]).
    pub fn execute(
        &mut self,
        prepared: &Prepared,
        engines: &mut Engines,
        observer: &mut dyn Observer,
    ) -> Result<RunCounts, SweepError> {
        let ctx = RunContext {
            spec: &prepared.spec,
            run_id: self.manifest.run_id.clone(),
            run_dir: self.dir.clone(),
            git_commit: self.manifest.git_commit.clone(),
            renderer: &prepared.renderer,
            tokenizer: &prepared.tokenizer,
            prompt: Prompt::FreeOcr,
        };
        let counts = runner::execute(&ctx, &prepared.plan, engines, observer)?;
        self.manifest.sessions.push(Session {
            started_utc: self.started_utc.clone(),
            wall_time_s: prepared.started.elapsed().as_secs_f64(),
            samples: counts.done,
            command: self.command.clone(),
        });
        self.manifest.wall_time_s = self.manifest.sessions.iter().map(|s| s.wall_time_s).sum();
        Ok(counts)
    }

    /// Step 3 of this run ([`finish`]).
    pub fn finish(&mut self) -> Result<(Written, Vec<SummaryRow>), ResultsError> {
        finish(&self.dir, &mut self.manifest)
    }

    /// Ends a run stopped on request (a signal): writes the tables of what the journal holds, so
    /// that `report` shows it, and saves the manifest with status `interrupted` (a later
    /// `--resume` continues it).
    pub fn interrupt(&mut self) -> Result<Written, ResultsError> {
        let (written, _) = finish(&self.dir, &mut self.manifest)?;
        self.manifest.status = RunStatus::Interrupted;
        self.manifest.save(&self.dir)?;
        Ok(written)
    }
}

/// Step 3: writes the tables of the run in `dir` from its journal, and saves its manifest with the
/// counts and the status (`complete` when every planned sample is written, else `incomplete`).
pub fn finish(dir: &Path, manifest: &mut Manifest) -> Result<(Written, Vec<SummaryRow>), ResultsError> {
    let (written, summary) = results::write_outputs(dir, manifest.spec.seed)?;
    manifest.n_samples_done = written.samples;
    manifest.n_failed = written.failed;
    manifest.error_chain.clear();
    manifest.status =
        if written.samples == manifest.n_samples_planned { RunStatus::Complete } else { RunStatus::Incomplete };
    manifest.save(dir)?;
    Ok((written, summary))
}

/// Marks the run in `dir` `failed`, with `error_chain` (the error and its causes, outermost first),
/// when its manifest is still `running`: a run stopped by an error that is not a signal (its
/// journal or tables could not be written). A later `--resume` continues it like an interrupted
/// run. Returns whether the manifest was changed (one already `complete` or `incomplete`, whose
/// tables are written, is left as it is when only its report fails).
pub fn mark_failed(dir: &Path, manifest: &mut Manifest, error_chain: Vec<String>) -> Result<bool, ResultsError> {
    if manifest.status != RunStatus::Running {
        return Ok(false);
    }
    manifest.status = RunStatus::Failed;
    manifest.error_chain = error_chain;
    manifest.save(dir)?;
    Ok(true)
}
