//! The engines of every subcommand, in one place: the engine names (`occ_eval::EngineKind`, one enum
//! for every subcommand, each offering the ones it can run), the model flags ([`ModelArgs`]), the
//! mapping from generation flags to `GenerationConfig` ([`Generation`]), where weights are found,
//! and building an engine ([`load_model`], [`build_engines`]).
//!
//! To add an engine: a variant of `occ_eval::EngineKind`, its help line in [`help`], the lists of the
//! subcommands that offer it ([`READERS`], [`MODELS`], [`BENCH_MODELS`], [`SWEEP_ENGINES`]) and its construction in
//! [`build_engines`] (and [`load_model`] if it is an occ-model reader).
//!
//! Weights are looked for, in order: `--weights DIR`, `$OCC_WEIGHTS`, the HuggingFace cache
//! (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`, folder
//! `models--deepseek-ai--DeepSeek-OCR/snapshots/<rev>/`), then a download with hf-hub into that cache
//! (skipped with `--offline` or `HF_HUB_OFFLINE=1`). `--synthetic-weights` runs the engine on the
//! seeded recipe weights instead (outputs are marked synthetic and are meaningless text);
//! `--synthetic-recipe 2` picks the recipe of the bf16 parity check (`occ_model::synth`).
//!
//! DeepSeek-OCR-2 (`deepseek-ocr-2`, `occ_model::pipeline_v2`) is looked for in the same order with
//! its own names: `--weights DIR`, `$OCC_WEIGHTS_V2`, the cache folder
//! `models--deepseek-ai--DeepSeek-OCR-2`, a download of deepseek-ai/DeepSeek-OCR-2 ([`WeightsRepo`]).
//! Its synthetic sizes are `full` and `reduced` (the CPU goldens' tower and the 3-layer decoder);
//! it has no `tiny`. It reads the v2 modes only (`EngineKind::refuses_mode`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use candle_core::{DType, Device};
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use occ_core::fakes::FakeOcr;
use occ_core::OcrEngine;
use occ_eval::runner::Engines;
use occ_eval::tesseract::Tesseract;
use occ_eval::Lang;
use occ_model::generate::{GenerationConfig, Sampling};
use occ_model::load::WeightsDir;
use occ_model::ngram::NgramBlocker;
use occ_model::pipeline::{DeepseekOcr, SyntheticSize};
use occ_model::pipeline_v2::{DeepseekOcr2, Ocr2SyntheticSize};
use occ_model::preprocess::ResizeOrder;
use occ_model::synth::Recipe;

pub use occ_eval::EngineKind;
pub use openai::OpenAiArgs;

mod openai;

use crate::output::Output;

/// The HF model repo of the weights.
pub const HF_REPO: &str = "deepseek-ai/DeepSeek-OCR";

/// Where a model's released weights are looked for (module docs): its HF repo, the environment
/// variable naming a folder, and the words of messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightsRepo {
    /// The HF model repo.
    pub hf: &'static str,
    /// The environment variable naming a snapshot folder.
    pub env: &'static str,
    /// The model's name in messages.
    pub model: &'static str,
    /// The download's size, for the message before it.
    pub size: &'static str,
}

/// DeepSeek-OCR's weights.
pub const DEEPSEEK_OCR: WeightsRepo =
    WeightsRepo { hf: HF_REPO, env: "OCC_WEIGHTS", model: "DeepSeek-OCR", size: "6.7 GB" };
/// DeepSeek-OCR-2's weights.
pub const DEEPSEEK_OCR_2: WeightsRepo =
    WeightsRepo { hf: "deepseek-ai/DeepSeek-OCR-2", env: "OCC_WEIGHTS_V2", model: "DeepSeek-OCR-2", size: "6.8 GB" };

/// The shipped reader's folder, relative to the repository root.
pub const SHIPPED_MINI: &str = "models/occ-mini-s";

/// Engines of `ocr`.
pub const READERS: &[EngineKind] =
    &[EngineKind::DeepseekOcr, EngineKind::DeepseekOcr2, EngineKind::Mini, EngineKind::Tesseract, EngineKind::OpenAi];
/// The occ-model engines `serve` serves.
pub const MODELS: &[EngineKind] = &[EngineKind::DeepseekOcr, EngineKind::DeepseekOcr2, EngineKind::Mini];
/// Engines of `bench`.
pub const BENCH_MODELS: &[EngineKind] = &[EngineKind::DeepseekOcr, EngineKind::DeepseekOcr2, EngineKind::Mini];
/// Engines of `sweep` and `decay`.
pub const SWEEP_ENGINES: &[EngineKind] = &[
    EngineKind::DeepseekOcr,
    EngineKind::DeepseekOcr2,
    EngineKind::Mini,
    EngineKind::Tesseract,
    EngineKind::OpenAi,
    EngineKind::FakePerfect,
];

/// The `--help` line of an engine.
pub fn help(kind: EngineKind) -> &'static str {
    match kind {
        EngineKind::DeepseekOcr => {
            "DeepSeek-OCR (candle; an HF snapshot: --weights DIR, $OCC_WEIGHTS, the HF cache or a download; \
             or --synthetic-weights)"
        }
        EngineKind::DeepseekOcr2 => {
            "DeepSeek-OCR-2 (candle; modes v2 and v2-single; an HF snapshot: --weights DIR, $OCC_WEIGHTS_V2, the HF \
             cache or a download; or --synthetic-weights full|reduced)"
        }
        EngineKind::Mini => {
            "A reader trained by `compress-bench train` (default: the shipped models/occ-mini-s; --weights DIR for \
             any run's checkpoint or export)"
        }
        EngineKind::Tesseract => "Debian's Tesseract on the same pixels",
        EngineKind::OpenAi => {
            "Any OpenAI-compatible server (compress-bench serve, vLLM, SGLang, a hosted API): --endpoint URL --model NAME"
        }
        EngineKind::FakePerfect => "Answers with each page's ground truth (tests of the machinery)",
        EngineKind::External => "Predictions made elsewhere (score only)",
    }
}

/// A clap value parser for `--engine` offering `allowed` (the names of `occ_eval::EngineKind`).
pub fn engine_parser(allowed: &'static [EngineKind]) -> impl TypedValueParser<Value = EngineKind> {
    PossibleValuesParser::new(allowed.iter().map(|&e| PossibleValue::new(e.name()).help(help(e))))
        .try_map(|name| name.parse::<EngineKind>())
}

/// Devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceArg {
    Cpu,
    Cuda,
}

/// Compute dtypes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DtypeArg {
    F32,
    Bf16,
    F16,
}

/// Repetition blockers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NgramArg {
    /// DeepSeek n-gram blocker 30 / window 90 / `<td>` `</td>` whitelist (official vLLM runner).
    Deepseek,
    /// transformers `no_repeat_ngram_size = 20` over prompt and output (HF `infer`).
    Hf,
    /// No blocker.
    None,
}

/// Sizes of synthetic engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SyntheticArg {
    /// The real architecture (3.3 B parameters, ~13 GB in f32).
    Full,
    /// Full encoder + the 3-layer decoder of the CI goldens.
    Reduced,
    /// Toy encoder and decoder (seconds on a CPU).
    Tiny,
}

/// Model flags of every subcommand that can run DeepSeek-OCR or a mini reader.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Model (deepseek-ocr and mini engines)")]
pub struct ModelArgs {
    /// deepseek-ocr: HF snapshot folder of deepseek-ai/DeepSeek-OCR (config.json, tokenizer.json,
    /// model-*.safetensors; default: $OCC_WEIGHTS, then the HF cache); deepseek-ocr-2: the same of
    /// deepseek-ai/DeepSeek-OCR-2 (default: $OCC_WEIGHTS_V2, then the HF cache); mini: a reader folder
    /// (mini.json, vocab.json, model.safetensors; default: $OCC_MINI, then the shipped models/occ-mini-s).
    #[arg(long, value_name = "DIR")]
    pub weights: Option<PathBuf>,
    /// Never download weights.
    #[arg(long)]
    pub offline: bool,
    /// Device to run the model on.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
    /// Compute dtype [default: f32 on cpu, bf16 on cuda].
    #[arg(long, value_enum)]
    pub dtype: Option<DtypeArg>,
    /// Run on seeded synthetic weights of this size instead of real weights (meaningless text;
    /// plumbing, speed and parity runs).
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "full", value_name = "SIZE")]
    pub synthetic_weights: Option<SyntheticArg>,
    /// Version of the synthetic-weights recipe: 1 (default) or 2 (bf16 parity: successor head,
    /// residual-scaled decoder; docs/PARITY.md).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=2), value_name = "N")]
    pub synthetic_recipe: u32,
    /// Seed of the synthetic weights.
    #[arg(long, default_value_t = 0)]
    pub weights_seed: u64,
    /// Shorthand for `--synthetic-weights tiny`, kept for scripts but not listed in `--help`, where
    /// it read like `--mode tiny`.
    #[arg(long, hide = true)]
    pub tiny: bool,
    /// Pass order of the image resizes of preprocessing: pillow12 (the order the released
    /// DeepSeek-OCR weights were trained with) or pillow13 (to match a reference run under
    /// Pillow >= 13) [default: pillow12].
    #[arg(long, value_name = "ORDER", value_parser = resize_order_parser())]
    pub resize_order: Option<ResizeOrder>,
    #[command(flatten)]
    pub openai: OpenAiArgs,
}

/// A clap value parser for `--resize-order` (the names of `occ_model::preprocess::ResizeOrder`).
fn resize_order_parser() -> impl TypedValueParser<Value = ResizeOrder> {
    PossibleValuesParser::new(ResizeOrder::ALL.map(ResizeOrder::name)).try_map(|name| name.parse::<ResizeOrder>())
}

impl ModelArgs {
    /// The synthetic size asked for (`--tiny` or `--synthetic-weights`).
    pub fn synthetic(&self) -> Option<SyntheticArg> {
        if self.tiny {
            Some(SyntheticArg::Tiny)
        } else {
            self.synthetic_weights
        }
    }

    /// Device and dtype of the flags.
    pub fn device_and_dtype(&self) -> anyhow::Result<(Device, DType)> {
        let device = match self.device {
            DeviceArg::Cpu => Device::Cpu,
            DeviceArg::Cuda => occ_model::ops::cuda_device(0)
                .context("opening CUDA device 0 (is this binary built with `--features cuda` and is a GPU visible?)")?,
        };
        let dtype = match (self.dtype, self.device) {
            (Some(DtypeArg::F32), _) | (None, DeviceArg::Cpu) => DType::F32,
            (Some(DtypeArg::Bf16), _) | (None, DeviceArg::Cuda) => DType::BF16,
            (Some(DtypeArg::F16), _) => DType::F16,
        };
        Ok((device, dtype))
    }
}

/// Generation settings of the commands that drive the decoder themselves (`ocr`, `bench`); the
/// one mapping from their flags to `GenerationConfig`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Generation {
    pub max_new_tokens: usize,
    pub ignore_eos: bool,
    pub ngram: NgramArg,
    /// 0 = greedy.
    pub temperature: f64,
    pub top_p: f64,
    pub sample_seed: u64,
}

impl Generation {
    /// Greedy decoding of `max_new_tokens` tokens with the blocker `ngram`.
    pub fn greedy(max_new_tokens: usize, ngram: NgramArg) -> Generation {
        Generation { max_new_tokens, ignore_eos: false, ngram, temperature: 0.0, top_p: 1.0, sample_seed: 0 }
    }

    pub fn config(&self) -> GenerationConfig {
        let sampling = if self.temperature > 0.0 {
            Sampling::TopP { temperature: self.temperature, top_p: self.top_p, seed: self.sample_seed }
        } else {
            Sampling::Greedy
        };
        let (ngram, no_repeat) = match self.ngram {
            NgramArg::Deepseek => (Some(NgramBlocker::deepseek_default()), None),
            NgramArg::Hf => (None, Some(20)),
            NgramArg::None => (None, None),
        };
        GenerationConfig {
            max_new_tokens: self.max_new_tokens,
            ignore_eos: self.ignore_eos,
            sampling,
            ngram,
            no_repeat_ngram_size: no_repeat,
            ..GenerationConfig::default()
        }
    }
}

fn hf_hub_cache() -> PathBuf {
    if let Some(p) = std::env::var_os("HF_HUB_CACHE") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("HF_HOME") {
        return PathBuf::from(p).join("hub");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("huggingface").join("hub")
}

/// The snapshot folder of the HF cache holding config.json: the revision `refs/main` points at, else
/// the most recently modified snapshot.
fn cached_snapshot(hub: &Path, hf_repo: &str) -> Option<PathBuf> {
    let repo = hub.join(format!("models--{}", hf_repo.replace('/', "--")));
    let snaps = repo.join("snapshots");
    if let Ok(rev) = std::fs::read_to_string(repo.join("refs").join("main")) {
        let p = snaps.join(rev.trim());
        if p.join("config.json").is_file() {
            return Some(p);
        }
    }
    let mut all: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&snaps)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("config.json").is_file())
        .map(|p| (p.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH), p))
        .collect();
    all.sort();
    all.pop().map(|(_, p)| p)
}

fn download(hub: &Path, hf_repo: &str, progress: bool) -> anyhow::Result<PathBuf> {
    let api = hf_hub::api::sync::ApiBuilder::new()
        .with_cache_dir(hub.to_path_buf())
        .with_progress(progress)
        .build()
        .context("starting the HuggingFace client")?;
    let repo = api.model(hf_repo.to_string());
    let config = repo.get("config.json").context("downloading config.json")?;
    repo.get("tokenizer.json").context("downloading tokenizer.json")?;
    let index = repo.get("model.safetensors.index.json").context("downloading model.safetensors.index.json")?;
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&index)?)?;
    let mut files: Vec<&str> =
        doc["weight_map"].as_object().map(|m| m.values().filter_map(|v| v.as_str()).collect()).unwrap_or_default();
    files.sort_unstable();
    files.dedup();
    for f in files {
        repo.get(f).with_context(|| format!("downloading {f}"))?;
    }
    config.parent().map(Path::to_path_buf).context("snapshot folder of the download")
}

/// Finds the DeepSeek-OCR weights folder in the documented order, downloading when allowed.
pub fn resolve_weights(m: &ModelArgs, out: &Output) -> anyhow::Result<PathBuf> {
    resolve_weights_of(&DEEPSEEK_OCR, m, out)
}

/// Finds the weights folder of `repo` in the documented order, downloading when allowed.
pub fn resolve_weights_of(repo: &WeightsRepo, m: &ModelArgs, out: &Output) -> anyhow::Result<PathBuf> {
    let WeightsRepo { hf, env, model, size } = *repo;
    let mut looked = Vec::new();
    match &m.weights {
        Some(p) => return Ok(p.clone()),
        None => looked.push("--weights: not given".to_string()),
    }
    match std::env::var_os(env) {
        Some(p) if !p.is_empty() => return Ok(PathBuf::from(p)),
        _ => looked.push(format!("${env}: not set")),
    }
    let hub = hf_hub_cache();
    if let Some(p) = cached_snapshot(&hub, hf) {
        return Ok(p);
    }
    looked.push(format!(
        "HuggingFace cache: no snapshot with config.json under {}",
        hub.join(format!("models--{}", hf.replace('/', "--"))).display()
    ));
    let offline = m.offline || std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| !v.is_empty() && v != "0");
    if offline {
        looked.push("download: skipped (offline)".to_string());
    } else {
        out.info(&format!("downloading {hf} ({size}) into {}", hub.display()));
        match download(&hub, hf, out.progress_enabled()) {
            Ok(p) => return Ok(p),
            Err(e) => looked.push(format!("download from huggingface.co: failed ({e:#})")),
        }
    }
    bail!(
        "no {model} weights found; looked at:\n  - {}\nprovide them with --weights DIR (an HF snapshot folder holding \
         config.json, tokenizer.json and model-*.safetensors), or set {env}=DIR, or run once online to download \
         {hf} into the HuggingFace cache; --synthetic-weights runs the engine on meaningless synthetic weights",
        looked.join("\n  - ")
    )
}

/// Finds a mini reader's folder: `--weights`, `$OCC_MINI`, then the shipped reader in the current
/// folder or in the repository this binary was built from.
pub fn resolve_mini(m: &ModelArgs) -> anyhow::Result<PathBuf> {
    if let Some(p) = &m.weights {
        return Ok(p.clone());
    }
    if let Some(p) = std::env::var_os("OCC_MINI").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let here = PathBuf::from(SHIPPED_MINI);
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(SHIPPED_MINI);
    for candidate in [&here, &built] {
        if candidate.join(occ_model::mini::CONFIG_FILE).exists() {
            return Ok(candidate.clone());
        }
    }
    bail!(
        "no mini reader found; looked at --weights (not given), $OCC_MINI (not set), {} and {}; train one with \
         `compress-bench train --config experiments/train/mini-s.toml --export DIR` and pass --weights DIR",
        here.display(),
        built.display()
    )
}

/// Loads the model reader `kind` (deepseek-ocr or mini) as the model flags ask.
pub fn load_model(kind: EngineKind, m: &ModelArgs, out: &Output) -> anyhow::Result<DeepseekOcr> {
    let mut engine = load_weights(kind, m, out)?;
    if let Some(order) = m.resize_order {
        engine.resize_order = order;
    }
    Ok(engine)
}

fn load_weights(kind: EngineKind, m: &ModelArgs, out: &Output) -> anyhow::Result<DeepseekOcr> {
    if !kind.is_model() {
        bail!("the {kind} engine is not a model; the model engines are deepseek-ocr, deepseek-ocr-2 and mini");
    }
    if kind == EngineKind::DeepseekOcr2 {
        bail!("deepseek-ocr-2 is loaded by its own loader (load_model_v2), not DeepSeek-OCR (v1)'s");
    }
    let (device, dtype) = m.device_and_dtype()?;
    if kind == EngineKind::Mini {
        if m.synthetic().is_some() {
            bail!("--synthetic-weights is for the deepseek-ocr engine; the mini engine reads a trained reader (--weights DIR)");
        }
        let dir = resolve_mini(m)?;
        return DeepseekOcr::from_mini_dir(&dir, dtype, &device)
            .with_context(|| format!("loading the mini reader from {}", dir.display()));
    }
    if let Some(size) = m.synthetic() {
        let size = match size {
            SyntheticArg::Full => SyntheticSize::Full,
            SyntheticArg::Reduced => SyntheticSize::Reduced,
            SyntheticArg::Tiny => SyntheticSize::Tiny,
        };
        let recipe = Recipe::from_version(m.synthetic_recipe)
            .with_context(|| format!("unknown synthetic recipe {} (known: 1, 2)", m.synthetic_recipe))?;
        out.warn("synthetic weights: the engine's output is meaningless text (plumbing, speed and parity runs only)");
        return DeepseekOcr::synthetic_with_recipe(size, recipe, m.weights_seed, dtype, &device)
            .context("building the synthetic engine");
    }
    let dir = resolve_weights(m, out)?;
    let wd = WeightsDir::open(&dir).with_context(|| format!("opening DeepSeek-OCR weights in {}", dir.display()))?;
    DeepseekOcr::from_weights_dir(&wd, dtype, &device)
        .with_context(|| format!("loading DeepSeek-OCR weights from {}", dir.display()))
}

/// Loads DeepSeek-OCR-2 as the model flags ask: synthetic weights (`full` or `reduced`), else the
/// released weights found as [`DEEPSEEK_OCR_2`] says (a v1 or converted checkpoint is refused by the
/// loader, naming the mismatch).
pub fn load_model_v2(m: &ModelArgs, out: &Output) -> anyhow::Result<DeepseekOcr2> {
    let (device, dtype) = m.device_and_dtype()?;
    let mut engine = if let Some(size) = m.synthetic() {
        let size = match size {
            SyntheticArg::Full => Ocr2SyntheticSize::Full,
            SyntheticArg::Reduced => Ocr2SyntheticSize::Reduced,
            SyntheticArg::Tiny => bail!(
                "deepseek-ocr-2 has no tiny synthetic size (--tiny / --synthetic-weights tiny); use --synthetic-weights \
                 reduced (the CPU goldens' vision tower and 3-layer decoder, seconds on a CPU) or full"
            ),
        };
        let recipe = Recipe::from_version(m.synthetic_recipe)
            .with_context(|| format!("unknown synthetic recipe {} (known: 1, 2)", m.synthetic_recipe))?;
        out.warn("synthetic weights: the engine's output is meaningless text (plumbing, speed and parity runs only)");
        DeepseekOcr2::synthetic(size, recipe, m.weights_seed, dtype, &device)
            .context("building the synthetic DeepSeek-OCR-2 engine")?
    } else {
        let dir = resolve_weights_of(&DEEPSEEK_OCR_2, m, out)?;
        let wd =
            WeightsDir::open(&dir).with_context(|| format!("opening DeepSeek-OCR-2 weights in {}", dir.display()))?;
        DeepseekOcr2::from_weights_dir(&wd, dtype, &device)
            .with_context(|| format!("loading DeepSeek-OCR-2 weights from {}", dir.display()))?
    };
    if let Some(order) = m.resize_order {
        engine.resize_order = order;
    }
    Ok(engine)
}

/// Tesseract settings of the commands that can read with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TesseractSettings {
    /// Page segmentation mode (`--psm`).
    pub psm: u32,
    /// Parallel processes; `None`: the available CPU threads.
    pub threads: Option<usize>,
}

impl TesseractSettings {
    /// One Tesseract reading pages of `lang`.
    pub fn build(&self, lang: Lang) -> anyhow::Result<Tesseract> {
        let threads =
            self.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
        Ok(Tesseract::new("tesseract", lang, self.psm, threads)?)
    }
}

/// The engines of a run reading pages of `langs` (Tesseract: one per language; the others: one for
/// all). The fake engine answers with the text the runner hands it ([`OcrEngine::ground_truth`]).
pub fn build_engines(
    kind: EngineKind,
    langs: &[Lang],
    tesseract: TesseractSettings,
    model: &ModelArgs,
    out: &Output,
) -> anyhow::Result<Engines> {
    match kind {
        EngineKind::Tesseract => {
            let mut m: BTreeMap<Lang, Box<dyn OcrEngine>> = BTreeMap::new();
            for &lang in langs {
                m.insert(lang, Box::new(tesseract.build(lang)?));
            }
            Ok(Engines::PerLang(m))
        }
        EngineKind::OpenAi => Ok(Engines::Shared(Box::new(model.openai.build()?))),
        EngineKind::FakePerfect => {
            Ok(Engines::Shared(Box::new(FakeOcr::perfect(Default::default()).named(kind.name()))))
        }
        EngineKind::DeepseekOcr | EngineKind::Mini => Ok(Engines::Shared(Box::new(load_model(kind, model, out)?))),
        EngineKind::DeepseekOcr2 => Ok(Engines::Shared(Box::new(load_model_v2(model, out)?))),
        EngineKind::External => {
            bail!("the external engine reads no pages: it names predictions made elsewhere (compress-bench score)")
        }
    }
}
