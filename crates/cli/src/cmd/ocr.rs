//! `compress-bench ocr`: read page images with DeepSeek-OCR.
//!
//! Weights are looked for, in order: `--weights DIR`, `$OCC_WEIGHTS`, the HuggingFace cache
//! (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`, folder
//! `models--deepseek-ai--DeepSeek-OCR/snapshots/<rev>/`), then a download with hf-hub into that cache
//! (skipped with `--offline` or `HF_HUB_OFFLINE=1`). `--synthetic-weights` runs the engine on the
//! seeded recipe weights instead (outputs are marked synthetic and are meaningless text);
//! `--synthetic-recipe 2` picks the recipe of the bf16 parity check (`occ_model::synth`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use candle_core::{DType, Device};
use occ_core::{Mode, Prompt};
use occ_model::generate::{GenerationConfig, Sampling};
use occ_model::load::WeightsDir;
use occ_model::ngram::NgramBlocker;
use occ_model::pipeline::{device_name, dtype_name, DeepseekOcr, SyntheticSize};
use occ_model::synth::Recipe;
use serde_json::json;

use crate::output::Output;

/// The HF model repo of the weights.
pub const HF_REPO: &str = "deepseek-ai/DeepSeek-OCR";

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

/// Task prompts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PromptArg {
    /// `<image>\nFree OCR.` (plain text; the paper's compression study).
    FreeOcr,
    /// `<image>\n<|grounding|>Convert the document to markdown.`
    Markdown,
    /// `<image>\n<|grounding|>OCR this image.` (text with boxes).
    Grounding,
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

/// The readers a model-running subcommand can load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReaderArg {
    /// DeepSeek-OCR (an HF snapshot: --weights DIR, $OCC_WEIGHTS, the HF cache or a download).
    DeepseekOcr,
    /// A reader trained by `compress-bench train` (default: the shipped models/occ-mini-s; --weights DIR
    /// for any run's checkpoint or export).
    Mini,
}

/// Model flags shared by every subcommand that runs DeepSeek-OCR or a mini reader.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Model")]
pub struct ModelArgs {
    /// The reader.
    #[arg(long, value_enum, default_value = "deepseek-ocr")]
    pub engine: ReaderArg,
    /// deepseek-ocr: HF snapshot folder of deepseek-ai/DeepSeek-OCR (config.json, tokenizer.json,
    /// model-*.safetensors); mini: a reader folder (mini.json, vocab.json, model.safetensors).
    #[arg(long, value_name = "DIR")]
    pub weights: Option<PathBuf>,
    /// Never download weights.
    #[arg(long)]
    pub offline: bool,
    /// Device to run on.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
    /// Compute dtype [default: f32 on cpu, bf16 on cuda].
    #[arg(long, value_enum)]
    pub dtype: Option<DtypeArg>,
    /// Run on seeded synthetic weights of this size instead of real weights (meaningless text).
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "full", value_name = "SIZE")]
    pub synthetic_weights: Option<SyntheticArg>,
    /// Version of the synthetic-weights recipe: 1 (default) or 2 (bf16 parity: successor head,
    /// residual-scaled decoder; docs/PARITY.md).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=2), value_name = "N")]
    pub synthetic_recipe: u32,
    /// Seed of the synthetic weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Shorthand for `--synthetic-weights tiny`.
    #[arg(long)]
    pub tiny: bool,
}

/// Read page images with DeepSeek-OCR.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Page image(s); several are read as one batch.
    #[arg(long, required = true, value_name = "FILE")]
    pub image: Vec<PathBuf>,
    /// Resolution mode: tiny, small, base, large, gundam or custom:<base>x<image>[:crop].
    #[arg(long, default_value = "small")]
    pub mode: Mode,
    /// Task prompt.
    #[arg(long, value_enum, default_value = "free-ocr")]
    pub prompt: PromptArg,
    /// A custom prompt text instead (must contain `<image>` once).
    #[arg(long, conflicts_with = "prompt", value_name = "TEXT")]
    pub prompt_text: Option<String>,
    /// Upper bound of generated tokens per page.
    #[arg(long, default_value_t = 8192)]
    pub max_new_tokens: usize,
    /// Generate exactly --max-new-tokens tokens (benchmarks).
    #[arg(long)]
    pub ignore_eos: bool,
    /// Repetition blocker.
    #[arg(long, value_enum, default_value = "deepseek")]
    pub ngram: NgramArg,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Nucleus mass when sampling.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    /// Sampler seed.
    #[arg(long, default_value_t = 0)]
    pub sample_seed: u64,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// Device and dtype of the model flags.
pub fn device_and_dtype(m: &ModelArgs) -> anyhow::Result<(Device, DType)> {
    let device = match m.device {
        DeviceArg::Cpu => Device::Cpu,
        DeviceArg::Cuda => occ_model::ops::cuda_device(0)
            .context("opening CUDA device 0 (is this binary built with `--features cuda` and is a GPU visible?)")?,
    };
    let dtype = match (m.dtype, m.device) {
        (Some(DtypeArg::F32), _) | (None, DeviceArg::Cpu) => DType::F32,
        (Some(DtypeArg::Bf16), _) | (None, DeviceArg::Cuda) => DType::BF16,
        (Some(DtypeArg::F16), _) => DType::F16,
    };
    Ok((device, dtype))
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
fn cached_snapshot(hub: &Path) -> Option<PathBuf> {
    let repo = hub.join(format!("models--{}", HF_REPO.replace('/', "--")));
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

fn download(hub: &Path, progress: bool) -> anyhow::Result<PathBuf> {
    let api = hf_hub::api::sync::ApiBuilder::new()
        .with_cache_dir(hub.to_path_buf())
        .with_progress(progress)
        .build()
        .context("starting the HuggingFace client")?;
    let repo = api.model(HF_REPO.to_string());
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

/// Finds the weights folder in the documented order, downloading when allowed.
pub fn resolve_weights(m: &ModelArgs, out: &Output) -> anyhow::Result<PathBuf> {
    let mut looked = Vec::new();
    match &m.weights {
        Some(p) => return Ok(p.clone()),
        None => looked.push("--weights: not given".to_string()),
    }
    match std::env::var_os("OCC_WEIGHTS") {
        Some(p) if !p.is_empty() => return Ok(PathBuf::from(p)),
        _ => looked.push("$OCC_WEIGHTS: not set".to_string()),
    }
    let hub = hf_hub_cache();
    if let Some(p) = cached_snapshot(&hub) {
        return Ok(p);
    }
    looked.push(format!(
        "HuggingFace cache: no snapshot with config.json under {}",
        hub.join(format!("models--{}", HF_REPO.replace('/', "--"))).display()
    ));
    let offline = m.offline || std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| !v.is_empty() && v != "0");
    if offline {
        looked.push("download: skipped (offline)".to_string());
    } else {
        out.info(&format!("downloading {HF_REPO} (6.7 GB) into {}", hub.display()));
        match download(&hub, out.progress_enabled()) {
            Ok(p) => return Ok(p),
            Err(e) => looked.push(format!("download from huggingface.co: failed ({e:#})")),
        }
    }
    bail!(
        "no DeepSeek-OCR weights found; looked at:\n  - {}\nprovide them with --weights DIR (an HF snapshot folder holding \
         config.json, tokenizer.json and model-*.safetensors), or set OCC_WEIGHTS=DIR, or run once online to download \
         {HF_REPO} into the HuggingFace cache; --synthetic-weights runs the engine on meaningless synthetic weights",
        looked.join("\n  - ")
    )
}

/// The shipped reader's folder, relative to the repository root.
pub const SHIPPED_MINI: &str = "models/occ-mini-s";

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
        "no mini reader found; looked at --weights (not given), $OCC_MINI (not set), {} and {}; train one with          `compress-bench train --config experiments/train/mini-s.toml --export DIR` and pass --weights DIR",
        here.display(),
        built.display()
    )
}

/// Builds the engine the model flags ask for.
pub fn load_engine(m: &ModelArgs, out: &Output) -> anyhow::Result<DeepseekOcr> {
    let (device, dtype) = device_and_dtype(m)?;
    if m.engine == ReaderArg::Mini {
        if m.synthetic_weights.is_some() || m.tiny {
            bail!("--synthetic-weights is for the deepseek-ocr engine; the mini engine reads a trained reader (--weights DIR)");
        }
        let dir = resolve_mini(m)?;
        return DeepseekOcr::from_mini_dir(&dir, dtype, &device)
            .with_context(|| format!("loading the mini reader from {}", dir.display()));
    }
    let synthetic = if m.tiny { Some(SyntheticArg::Tiny) } else { m.synthetic_weights };
    if let Some(size) = synthetic {
        let size = match size {
            SyntheticArg::Full => SyntheticSize::Full,
            SyntheticArg::Reduced => SyntheticSize::Reduced,
            SyntheticArg::Tiny => SyntheticSize::Tiny,
        };
        let recipe = Recipe::from_version(m.synthetic_recipe)
            .with_context(|| format!("unknown synthetic recipe {} (known: 1, 2)", m.synthetic_recipe))?;
        out.warn("synthetic weights: the engine's output is meaningless text (plumbing, speed and parity runs only)");
        return DeepseekOcr::synthetic_with_recipe(size, recipe, m.seed, dtype, &device)
            .context("building the synthetic engine");
    }
    let dir = resolve_weights(m, out)?;
    let wd = WeightsDir::open(&dir).with_context(|| format!("opening DeepSeek-OCR weights in {}", dir.display()))?;
    DeepseekOcr::from_weights_dir(&wd, dtype, &device)
        .with_context(|| format!("loading DeepSeek-OCR weights from {}", dir.display()))
}

/// Peak resident memory of this process (Linux `VmHWM`), in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

pub fn run(args: Args, out: &Output) -> anyhow::Result<()> {
    let prompt = match (&args.prompt_text, args.prompt) {
        (Some(t), _) => Prompt::Custom(t.clone()),
        (None, PromptArg::FreeOcr) => Prompt::FreeOcr,
        (None, PromptArg::Markdown) => Prompt::Markdown,
        (None, PromptArg::Grounding) => Prompt::Grounding,
    };
    let images = args
        .image
        .iter()
        .map(|p| occ_model::preprocess::load_image(p).with_context(|| format!("reading image {}", p.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let t_load = Instant::now();
    let engine = load_engine(&args.model, out)?;
    let load_s = t_load.elapsed().as_secs_f64();
    let info = occ_core::OcrEngine::info(&engine);
    out.json_message("engine", &json!({ "info": info, "load_seconds": load_s }))?;
    let sampling = if args.temperature > 0.0 {
        Sampling::TopP { temperature: args.temperature, top_p: args.top_p, seed: args.sample_seed }
    } else {
        Sampling::Greedy
    };
    let (ngram, no_repeat) = match args.ngram {
        NgramArg::Deepseek => (Some(NgramBlocker::deepseek_default()), None),
        NgramArg::Hf => (None, Some(20)),
        NgramArg::None => (None, None),
    };
    let cfg = GenerationConfig {
        max_new_tokens: args.max_new_tokens,
        ignore_eos: args.ignore_eos,
        sampling,
        ngram,
        no_repeat_ngram_size: no_repeat,
        ..GenerationConfig::default()
    };
    let pages: Vec<(&image::RgbImage, Mode)> = images.iter().map(|i| (i, args.mode)).collect();
    let results = engine.ocr(&pages, &prompt, &cfg).context("running DeepSeek-OCR")?;
    let peak = peak_rss_bytes();
    for (path, r) in args.image.iter().zip(&results) {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        let decode_tok_s = if r.timings.decode.as_secs_f64() > 0.0 && r.token_ids.len() > 1 {
            (r.token_ids.len() - 1) as f64 / r.timings.decode.as_secs_f64()
        } else {
            0.0
        };
        out.json_message(
            "ocr",
            &json!({
                "image": path.display().to_string(),
                "mode": args.mode,
                "text": r.text,
                "blocks": r.blocks,
                "token_ids": r.token_ids,
                "n_prompt_tokens": r.n_prompt_tokens,
                "n_generated_tokens": r.token_ids.len(),
                "stopped_at_eos": r.stopped_at_eos,
                "vision_tokens": r.vision_tokens,
                "timings_ms": {
                    "preprocess": ms(r.timings.preprocess), "vision": ms(r.timings.vision),
                    "prefill": ms(r.timings.prefill), "decode": ms(r.timings.decode),
                },
                "decode_tok_per_s": decode_tok_s,
                "synthetic_weights": info.synthetic_weights,
                "device": device_name(engine.decoder().device()),
                "dtype": dtype_name(engine.decoder().dtype()),
                "peak_rss_bytes": peak,
            }),
        )?;
        if args.image.len() > 1 {
            out.result(&format!("==> {} <==", path.display()));
        }
        out.result(&r.text);
        out.info(&format!(
            "{}: {} prompt + {} generated tokens ({}), vision {:.0} ms, prefill {:.0} ms, decode {:.0} ms ({:.1} tok/s){}",
            path.display(),
            r.n_prompt_tokens,
            r.token_ids.len(),
            if r.stopped_at_eos { "EOS" } else { "max tokens" },
            ms(r.timings.vision),
            ms(r.timings.prefill),
            ms(r.timings.decode),
            decode_tok_s,
            if info.synthetic_weights { ", SYNTHETIC WEIGHTS" } else { "" }
        ));
    }
    if let Some(p) = peak {
        out.info(&format!("peak resident memory {:.2} GB", p as f64 / 1e9));
    }
    Ok(())
}
