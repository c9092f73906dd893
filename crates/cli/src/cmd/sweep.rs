//! `compress-bench sweep`: compression sweeps over ratios, modes and corpora.
//!
//! Order of work: resolve the spec (TOML + flags), load the corpora and build the sample list,
//! build the engines, create the run directory — every bad input fails here, before any page is
//! rendered. Then the runner renders, reads, scores and journals; at the end the Parquet/CSV files,
//! the manifest and the report are written (docs/SWEEPS.md, docs/cli-json.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use occ_core::{EngineInfo, Prompt, TextTokenizer};
use occ_eval::corpus::Corpus;
use occ_eval::plan::{build_plan, Shard};
use occ_eval::results::{self, Manifest, Session};
use occ_eval::runner::{self, Engines, Observer, RunContext};
use occ_eval::schema::{SampleRow, SummaryRow};
use occ_eval::spec::{ExperimentSpec, SpecFile, SpecOverrides};
use occ_eval::tesseract::Tesseract;
use occ_eval::{probes, Lang};
use serde::Serialize;

use crate::cmd::ocr;
use crate::output::{Output, JSON_SCHEMA_VERSION};

/// Engines the sweep can build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineKind {
    /// DeepSeek-OCR (candle; --weights, --device, --dtype, --synthetic-weights).
    DeepseekOcr,
    /// A reader trained by `compress-bench train` (default: the shipped models/occ-mini-s; --weights DIR).
    Mini,
    /// Debian's Tesseract on the same pixels.
    Tesseract,
    /// Answers with the ground truth (tests of the machinery).
    FakePerfect,
}

impl EngineKind {
    fn name(self) -> &'static str {
        match self {
            EngineKind::DeepseekOcr => "deepseek-ocr",
            EngineKind::Mini => "mini",
            EngineKind::Tesseract => "tesseract",
            EngineKind::FakePerfect => "fake-perfect",
        }
    }
}

/// Model flags of the `deepseek-ocr` and `mini` engines (the `ocr` subcommand's, with the synthetic-weights
/// seed renamed so it does not clash with the sweep's `--seed`).
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Model (deepseek-ocr and mini engines)")]
pub struct ModelArgs {
    /// deepseek-ocr: HF snapshot folder (default: $OCC_WEIGHTS, then the HF cache); mini: a reader
    /// folder (default: $OCC_MINI, then the shipped models/occ-mini-s).
    #[arg(long, value_name = "DIR")]
    pub weights: Option<PathBuf>,
    /// Never download weights.
    #[arg(long)]
    pub offline: bool,
    /// Device to run the model on.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: ocr::DeviceArg,
    /// Compute dtype [default: f32 on cpu, bf16 on cuda].
    #[arg(long, value_enum)]
    pub dtype: Option<ocr::DtypeArg>,
    /// Seeded synthetic weights of this size (plumbing tests; scores are meaningless).
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "full", value_name = "SIZE")]
    pub synthetic_weights: Option<ocr::SyntheticArg>,
    /// Version of the synthetic-weights recipe: 1 (default) or 2 (docs/PARITY.md).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=2), value_name = "N")]
    pub synthetic_recipe: u32,
    /// Seed of the synthetic weights.
    #[arg(long, default_value_t = 0)]
    pub weights_seed: u64,
}

impl ModelArgs {
    pub(crate) fn to_ocr(&self, engine: ocr::ReaderArg) -> ocr::ModelArgs {
        ocr::ModelArgs {
            engine,
            weights: self.weights.clone(),
            offline: self.offline,
            device: self.device,
            dtype: self.dtype,
            synthetic_weights: self.synthetic_weights,
            synthetic_recipe: self.synthetic_recipe,
            seed: self.weights_seed,
            tiny: false,
        }
    }
}

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
    /// Reader.
    #[arg(long, value_enum)]
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
}

/// `git rev-parse HEAD` of the working directory, or `unknown`.
pub fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// A one-line description of this machine.
pub fn host() -> String {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    format!("{} {}, {threads} CPU threads", std::env::consts::OS, std::env::consts::ARCH)
}

fn load_corpora(spec: &ExperimentSpec) -> anyhow::Result<Vec<Corpus>> {
    let dir = Path::new(&spec.datasets_dir);
    let mut out = Vec::new();
    for name in &spec.corpora {
        let corpus = if name == "probes" {
            let en = Corpus::load("en", dir).context("the probes corpus is generated from the en corpus")?;
            probes::probes(&en, spec.seed)
        } else {
            Corpus::load(name, dir)?
        };
        out.push(corpus);
    }
    Ok(out)
}

fn build_engines(
    kind: &str,
    langs: &[Lang],
    spec: &ExperimentSpec,
    threads: Option<usize>,
    model: &ModelArgs,
    out: &Output,
) -> anyhow::Result<(Engines, Option<occ_eval::oracle::TruthTap>)> {
    match kind {
        "tesseract" => {
            let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
            let mut m: BTreeMap<Lang, Box<dyn occ_core::OcrEngine>> = BTreeMap::new();
            for &lang in langs {
                m.insert(lang, Box::new(Tesseract::new("tesseract", lang, spec.tesseract_psm, threads)?));
            }
            Ok((Engines::PerLang(m), None))
        }
        "fake-perfect" => {
            let (oracle, tap) = occ_eval::oracle::Oracle::perfect();
            Ok((Engines::Shared(Box::new(oracle)), Some(tap)))
        }
        "deepseek-ocr" => {
            let engine = ocr::load_engine(&model.to_ocr(ocr::ReaderArg::DeepseekOcr), out)?;
            Ok((Engines::Shared(Box::new(engine)), None))
        }
        "mini" => {
            let engine = ocr::load_engine(&model.to_ocr(ocr::ReaderArg::Mini), out)?;
            Ok((Engines::Shared(Box::new(engine)), None))
        }
        other => bail!("unknown engine {other:?}: expected deepseek-ocr, mini, tesseract or fake-perfect"),
    }
}

#[derive(Serialize)]
struct RunStart<'a> {
    schema_version: u32,
    experiment: &'a str,
    run_id: &'a str,
    run_dir: String,
    git_commit: &'a str,
    spec_fingerprint: &'a str,
    engines: &'a [EngineInfo],
    host: &'a str,
    shard: Option<Shard>,
    n_samples: usize,
    n_resumed: usize,
}

#[derive(Serialize)]
struct SampleMessage<'a> {
    sample_index: u64,
    sample_id: &'a str,
    status: &'a str,
    error: Option<&'a str>,
    corpus: &'a str,
    mode: &'a str,
    target_ratio: f64,
    ratio_nominal: f64,
    n_text_tokens: u32,
    n_vision_tokens_nominal: u32,
    char_precision: f64,
    word_f1: f64,
    fox_precision_gt_words: f64,
    fox_precision_out_words: f64,
    runaway: bool,
    ocr_ms: f64,
}

/// Progress bar and `sample` / `warning` messages.
struct CliObserver<'a> {
    out: &'a Output,
    bar: Option<ProgressBar>,
    run_start: Option<RunStart<'a>>,
    seen: usize,
    crash_after: Option<usize>,
}

impl Observer for CliObserver<'_> {
    fn started(&mut self, total: usize, already_done: usize) {
        if let Some(mut start) = self.run_start.take() {
            start.n_samples = total;
            start.n_resumed = already_done;
            if let Err(e) = self.out.json_message("run_start", &start) {
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
        let msg = SampleMessage {
            sample_index: r.sample_index,
            sample_id: &r.sample_id,
            status: &r.status,
            error: r.error.as_deref(),
            corpus: &r.corpus,
            mode: &r.mode,
            target_ratio: r.target_ratio,
            ratio_nominal: r.ratio_nominal,
            n_text_tokens: r.n_text_tokens,
            n_vision_tokens_nominal: r.n_vision_tokens_nominal,
            char_precision: r.char_precision,
            word_f1: r.word_f1,
            fox_precision_gt_words: r.fox_precision_gt_words,
            fox_precision_out_words: r.fox_precision_out_words,
            runaway: r.runaway,
            ocr_ms: r.ocr_ms,
        };
        if let Err(e) = self.out.json_message("sample", &msg) {
            tracing::warn!("writing sample message: {e}");
        }
        self.seen += 1;
        if self.crash_after.is_some_and(|n| self.seen >= n) {
            std::process::abort();
        }
    }

    fn warning(&mut self, message: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| self.out.warn(message)),
            None => self.out.warn(message),
        }
    }
}

#[derive(Serialize)]
struct CellMessage<'a> {
    corpus: &'a str,
    mode: &'a str,
    target_ratio: f64,
    n: u32,
    n_failed: u32,
    char_precision: f64,
    /// `null` when the cell has too few samples for a CI (see `ci_method`).
    char_precision_ci: Option<[f64; 2]>,
    /// How the CI was made, or "n too small".
    ci_method: &'a str,
    /// Fox precision, unique output words found in the GT ÷ unique output words (mean).
    fox_precision_out_words: f64,
    /// Fox precision, unique GT words found in the output ÷ unique GT words (mean).
    fox_precision_gt_words: f64,
    truncation_char_precision: f64,
}

#[derive(Serialize)]
struct SummaryMessage<'a> {
    run_dir: String,
    run_id: &'a str,
    status: &'a str,
    n_samples: usize,
    n_failed: usize,
    wall_time_s: f64,
    files: BTreeMap<&'a str, String>,
    cells: Vec<CellMessage<'a>>,
}

fn cells(summary: &[SummaryRow]) -> Vec<CellMessage<'_>> {
    let get = |c: &SummaryRow, metric: &str| {
        summary.iter().find(|r| {
            r.corpus == c.corpus && r.mode == c.mode && r.target_ratio == c.target_ratio && r.metric == metric
        })
    };
    summary
        .iter()
        .filter(|r| r.metric == "char_precision")
        .map(|c| CellMessage {
            corpus: &c.corpus,
            mode: &c.mode,
            target_ratio: c.target_ratio,
            n: c.n,
            n_failed: c.n_failed,
            char_precision: c.mean,
            char_precision_ci: (c.ci_low.is_finite() && c.ci_high.is_finite()).then_some([c.ci_low, c.ci_high]),
            ci_method: &c.ci_method,
            fox_precision_out_words: get(c, "fox_precision_out_words").map_or(f64::NAN, |r| r.mean),
            fox_precision_gt_words: get(c, "fox_precision_gt_words").map_or(f64::NAN, |r| r.mean),
            truncation_char_precision: get(c, "truncation_char_precision").map_or(f64::NAN, |r| r.mean),
        })
        .collect()
}

/// Writes the outputs of a finished run, its manifest and (optionally) the report, and announces
/// them. Returns the number of failed samples.
pub fn finish_run(dir: &Path, manifest: &mut Manifest, report: bool, out: &Output) -> anyhow::Result<usize> {
    let (written, summary) = results::write_outputs(dir, manifest.spec.seed)
        .with_context(|| format!("writing the results of {}", dir.display()))?;
    manifest.n_samples_done = written.samples;
    manifest.n_failed = written.failed;
    manifest.status = if written.samples == manifest.n_samples_planned { "complete" } else { "incomplete" }.into();
    manifest.save(dir)?;
    let mut files = BTreeMap::new();
    for f in [results::SAMPLES_FILE, results::PREDICTIONS_FILE, results::SUMMARY_FILE, results::MANIFEST_FILE] {
        files.insert(f, dir.join(f).display().to_string());
    }
    if report {
        let r = occ_report::write_report(dir).with_context(|| format!("writing the report of {}", dir.display()))?;
        files.insert("report.md", r.markdown.display().to_string());
        files.insert("report.html", r.html.display().to_string());
    }
    out.json_message(
        "summary",
        &SummaryMessage {
            run_dir: dir.display().to_string(),
            run_id: &manifest.run_id,
            status: &manifest.status,
            n_samples: written.samples,
            n_failed: written.failed,
            wall_time_s: manifest.wall_time_s,
            files: files.clone(),
            cells: cells(&summary),
        },
    )?;
    out.result(&format!(
        "{} samples ({} failed) in {:.1} s -> {}",
        written.samples,
        written.failed,
        manifest.wall_time_s,
        dir.display()
    ));
    for (k, v) in &files {
        out.info(&format!("  {k}: {v}"));
    }
    Ok(written.failed)
}

pub fn run(args: Args, out: &Output) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let argv: Vec<String> = std::env::args().collect();
    // 1. The spec.
    let (spec, shard, resume_dir, mut manifest) = match &args.resume {
        Some(dir) => {
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
            let m = Manifest::load(dir).with_context(|| format!("--resume {}: not a run directory", dir.display()))?;
            if m.status == "complete" {
                bail!("run {} is already complete; start a new run instead", dir.display());
            }
            (m.spec.clone(), m.shard, Some(dir.clone()), Some(m))
        }
        None => {
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
                engine: args.engine.map(|e| e.name().to_string()),
                max_new_tokens: args.max_new_tokens,
                datasets_dir: args.datasets.clone(),
            };
            let spec = ExperimentSpec::resolve(file, overrides)?;
            let shard = args.shard.as_deref().map(Shard::parse).transpose().map_err(anyhow::Error::msg)?;
            (spec, shard, None, None)
        }
    };
    // 2. Corpora and the sample list.
    let corpora = load_corpora(&spec)?;
    let tokenizer = TextTokenizer::deepseek_ocr().context("loading the DeepSeek-OCR tokenizer")?;
    let renderer = occ_eval::render::OccRenderer::new(tokenizer.clone());
    let plan = build_plan(&spec, &corpora, &renderer)?;
    let plan: Vec<_> = plan.into_iter().filter(|s| shard.is_none_or(|k| k.contains(s.index))).collect();
    // 3. Engines.
    let mut langs: Vec<Lang> = corpora.iter().map(|c| c.lang).collect();
    langs.sort_by_key(|l| l.as_str());
    langs.dedup();
    let (mut engines, truth_tap) = build_engines(&spec.engine, &langs, &spec, args.threads, &args.model, out)?;
    let infos = engines.infos();
    // 4. The run directory.
    let git = git_commit();
    let host = host();
    let dir = match resume_dir {
        Some(d) => d,
        None => {
            let (dir, run_id) = results::create_run_dir(&args.out, &spec, shard)?;
            let (created, _) = results::utc_now();
            let m = Manifest {
                manifest_version: results::MANIFEST_VERSION,
                tool: "compress-bench".into(),
                tool_version: env!("CARGO_PKG_VERSION").into(),
                git_commit: git.clone(),
                experiment: spec.name.clone(),
                run_id,
                created_utc: created,
                status: "running".into(),
                spec_fingerprint: spec.fingerprint(),
                spec: spec.clone(),
                shard,
                merged_from: Vec::new(),
                synthetic_weights: infos.iter().any(|i| i.synthetic_weights),
                engines: infos.clone(),
                renderer: occ_eval::render::PageRenderer::describe(&renderer),
                tokenizer: tokenizer.source().to_string(),
                host: host.clone(),
                n_samples_planned: plan.len(),
                n_samples_done: 0,
                n_failed: 0,
                sessions: Vec::new(),
                wall_time_s: 0.0,
            };
            m.save(&dir)?;
            manifest = Some(m);
            dir
        }
    };
    let mut manifest = manifest.context("internal: no manifest")?;
    let (started, _) = results::utc_now();
    out.info(&format!("sweep {}: {} samples -> {}", spec.name, plan.len(), dir.display()));
    // 5. Work.
    let ctx = RunContext {
        spec: &spec,
        run_id: manifest.run_id.clone(),
        run_dir: dir.clone(),
        git_commit: manifest.git_commit.clone(),
        renderer: &renderer,
        tokenizer: &tokenizer,
        truth_tap,
        prompt: Prompt::FreeOcr,
    };
    let run_id = manifest.run_id.clone();
    let fingerprint = manifest.spec_fingerprint.clone();
    let mut observer = CliObserver {
        out,
        bar: None,
        run_start: Some(RunStart {
            schema_version: JSON_SCHEMA_VERSION,
            experiment: &spec.name,
            run_id: &run_id,
            run_dir: dir.display().to_string(),
            git_commit: &git,
            spec_fingerprint: &fingerprint,
            engines: &infos,
            host: &host,
            shard,
            n_samples: 0,
            n_resumed: 0,
        }),
        seen: 0,
        crash_after: args.crash_after,
    };
    let counts = runner::execute(&ctx, &plan, &mut engines, &mut observer);
    if let Some(bar) = observer.bar.take() {
        bar.finish_and_clear();
    }
    let counts = counts.with_context(|| format!("sweep stopped; continue it with --resume {}", dir.display()))?;
    manifest.sessions.push(Session {
        started_utc: started,
        wall_time_s: t0.elapsed().as_secs_f64(),
        samples: counts.done,
        command: argv,
    });
    manifest.wall_time_s = manifest.sessions.iter().map(|s| s.wall_time_s).sum();
    let failed = finish_run(&dir, &mut manifest, !args.no_report, out)?;
    if failed > 0 {
        bail!("{failed} samples failed (status render_error or engine_error in samples.parquet); the other results are written");
    }
    Ok(())
}
