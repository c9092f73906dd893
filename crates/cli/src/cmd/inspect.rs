//! `compress-bench inspect`: config, tensor list and vision tokens per mode for an image size.
//!
//! ```text
//! compress-bench inspect --image-size 1240x1754
//! compress-bench inspect --image page.png --tensors --checkpoint model-00001-of-000001.safetensors
//! compress-bench inspect --config config.json --json
//! ```
//!
//! With `--tensors` the encoder's expected tensors (`occ_model::encoder::expected_tensors`, from the
//! loader's one table) are compared with a checkpoint through the loader's own header reader and check
//! (`occ_model::load`: `read_safetensors_header` or `WeightsDir::tensors`, `compare_tensors`,
//! `read_index`), so `inspect` accepts and refuses exactly what loading the weights would.
//!
//! `--engine deepseek-ocr-2` tabulates the v2 modes and, with `--tensors`, DeepSeek-OCR-2's vision
//! tower (`occ_model::encoder_v2::expected_tensors` of the released preset) the same way.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use occ_core::Mode;
use occ_model::config::{HfConfig, VisionConfig};
use occ_model::load::{compare_tensors, read_index, read_safetensors_header, TensorInfo, WeightsDir};
use serde_json::Value;

use crate::engine::{self, EngineKind};
use crate::messages::{
    ClipSummary, DecoderSummary, InspectConfig, InspectTensors, InspectVisionTokens, ModeTokens, ProjectorSummary,
    SamSummary, TensorRow,
};
use crate::output::Output;

/// Engines of `inspect`.
const INSPECTED: &[EngineKind] = &[EngineKind::DeepseekOcr, EngineKind::DeepseekOcr2];

/// Config, checkpoint tensor list and vision tokens per mode for an image size.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// `config.json` of the checkpoint (default: the embedded deepseek-ai/DeepSeek-OCR one).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Image size for the vision-token table, `WxH` (default 1024x1024).
    #[arg(long, value_name = "WxH", conflicts_with = "image", value_parser = parse_size)]
    pub image_size: Option<(u32, u32)>,
    /// Image whose (EXIF-oriented) size is used for the vision-token table.
    #[arg(long, value_name = "FILE")]
    pub image: Option<PathBuf>,
    /// Modes to tabulate (default: the five official ones).
    #[arg(long, value_delimiter = ',')]
    pub modes: Vec<Mode>,
    /// List the encoder's checkpoint tensors with their expected shapes.
    #[arg(long)]
    pub tensors: bool,
    /// With --tensors: a `.safetensors` file, or a weights folder (every file of it), whose headers are
    /// checked against the expected shapes.
    #[arg(long, value_name = "FILE|DIR", requires = "tensors")]
    pub checkpoint: Option<PathBuf>,
    /// With --tensors: a `model.safetensors.index.json` whose names are checked for the encoder's.
    #[arg(long, value_name = "FILE", requires = "tensors")]
    pub index: Option<PathBuf>,
    /// The model whose modes and vision tensors are shown.
    #[arg(long, default_value = "deepseek-ocr", value_parser = engine::engine_parser(INSPECTED))]
    pub engine: EngineKind,
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(|| format!("expected WxH, got {s:?}"))?;
    let w: u32 = w.trim().parse().map_err(|_| format!("bad width in {s:?}"))?;
    let h: u32 = h.trim().parse().map_err(|_| format!("bad height in {s:?}"))?;
    if w == 0 || h == 0 {
        return Err(format!("image size {s:?} has an empty side"));
    }
    Ok((w, h))
}

/// Every tensor of a checkpoint (its headers only: nothing is loaded): one `.safetensors` file, or the
/// files of a weights folder.
fn checkpoint_tensors(path: &Path) -> anyhow::Result<BTreeMap<String, TensorInfo>> {
    let tensors = if path.is_dir() { WeightsDir::open(path)?.tensors()? } else { read_safetensors_header(path)? };
    Ok(tensors)
}

fn count(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// The image size of the vision-token table.
fn image_size(args: &Args) -> anyhow::Result<(u32, u32)> {
    Ok(match (&args.image, args.image_size) {
        (Some(path), _) => {
            let img = occ_model::preprocess::load_image(path).with_context(|| format!("reading {}", path.display()))?;
            img.dimensions()
        }
        (None, Some(size)) => size,
        (None, None) => (1024, 1024),
    })
}

/// The vision-token table of `modes` (message and text).
fn token_table(modes: &[Mode], (width, height): (u32, u32), out: &Output) -> anyhow::Result<()> {
    let rows: Vec<ModeTokens> = modes
        .iter()
        .map(|&m| {
            Ok(ModeTokens {
                mode: m.to_string(),
                base_size: m.base_size(),
                image_size: m.image_size(),
                crop: m.crop(),
                tokens: m.vision_tokens(width, height)?,
            })
        })
        .collect::<Result<_, occ_core::ModeError>>()?;
    let rows = InspectVisionTokens { width, height, modes: rows };
    out.send(&rows)?;
    out.result(&format!("\nvision tokens for a {width}x{height} image:"));
    out.result(&format!(
        "{:<22} {:>8} {:>6} {:>11} {:>6} {:>5}",
        "mode", "nominal", "valid", "valid_floor", "slots", "grid"
    ));
    for r in &rows.modes {
        out.result(&format!(
            "{:<22} {:>8} {:>6} {:>11} {:>6} {:>5}",
            r.mode,
            r.tokens.nominal,
            r.tokens.valid,
            r.tokens.valid_floor,
            r.tokens.slots,
            format!("{}x{}", r.tokens.grid.across, r.tokens.grid.down)
        ));
    }
    Ok(())
}

/// `inspect --engine deepseek-ocr-2`: the released preset's vision tower, the v2 modes' tokens, and
/// with `--tensors` the tower's tensors against a checkpoint and an index.
fn run_v2(args: &Args, out: &Output) -> anyhow::Result<()> {
    if let Some(path) = &args.config {
        anyhow::bail!(
            "--config {} reads DeepSeek-OCR (v1)'s config.json; deepseek-ocr-2's shapes are the released preset \
             (occ_model::config_v2)",
            path.display()
        );
    }
    let modes = if args.modes.is_empty() { Mode::V2_MODES.to_vec() } else { args.modes.clone() };
    if let Some((m, why)) = modes.iter().find_map(|&m| args.engine.refuses_mode(m).map(|w| (m, w))) {
        anyhow::bail!("--modes {m}: {why}");
    }
    let vision = occ_model::config_v2::Ocr2VisionConfig::deepseek_ocr2();
    let expected: Vec<(String, Vec<usize>)> = occ_model::encoder_v2::expected_tensors(&vision).into_iter().collect();
    out.result(&format!(
        "config: DeepSeek-OCR-2 vision tower (released preset): {} tensors, {} parameters",
        expected.len(),
        expected.iter().map(|(_, s)| count(s)).sum::<usize>()
    ));
    token_table(&modes, image_size(args)?, out)?;
    if args.tensors {
        tensor_table(args, &expected, out)?;
    }
    Ok(())
}

pub fn run(args: Args, out: &Output) -> anyhow::Result<()> {
    if args.engine == EngineKind::DeepseekOcr2 {
        return run_v2(&args, out);
    }
    let hf = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            HfConfig::from_json(&text).with_context(|| format!("parsing {}", path.display()))?
        }
        None => HfConfig::deepseek_ocr()?,
    };
    let vision = VisionConfig::try_from(&hf).context("validating the vision config")?;
    let (width, height) = match (&args.image, args.image_size) {
        (Some(path), _) => {
            let img = occ_model::preprocess::load_image(path).with_context(|| format!("reading {}", path.display()))?;
            img.dimensions()
        }
        (None, Some(size)) => size,
        (None, None) => (1024, 1024),
    };
    let modes = if args.modes.is_empty() { Mode::OFFICIAL.to_vec() } else { args.modes.clone() };

    let expected = occ_model::encoder::expected_tensors(&vision)?;
    let params =
        |prefix: &str| expected.iter().filter(|(n, _)| n.starts_with(prefix)).map(|(_, s)| count(s)).sum::<usize>();
    let text_key = |k: &str| hf.text.get(k).cloned().unwrap_or(Value::Null);
    let summary = InspectConfig {
        model_type: &hf.model_type,
        sam: SamSummary {
            width: vision.sam.width,
            depth: vision.sam.depth,
            heads: vision.sam.heads,
            window: vision.sam.window_size,
            global_blocks: vision.sam.global_attn_indexes.clone(),
            compressor_channels: vision.sam.downsample_channels,
            parameters: params("model.sam_model."),
        },
        clip: ClipSummary {
            width: vision.clip.width,
            layers: vision.clip.layers,
            heads: vision.clip.heads,
            position_grid: vision.clip.pos_grid(),
            parameters_loaded: params("model.vision_model."),
        },
        projector: ProjectorSummary {
            input_dim: vision.projector.input_dim,
            n_embed: vision.projector.n_embed,
            parameters: params("model.projector."),
        },
        decoder: DecoderSummary {
            hidden_size: text_key("hidden_size"),
            num_hidden_layers: text_key("num_hidden_layers"),
            n_routed_experts: text_key("n_routed_experts"),
            num_experts_per_tok: text_key("num_experts_per_tok"),
            vocab_size: text_key("vocab_size"),
            use_mla: text_key("use_mla"),
        },
    };
    let rows: Vec<ModeTokens> = modes
        .iter()
        .map(|&m| {
            Ok(ModeTokens {
                mode: m.to_string(),
                base_size: m.base_size(),
                image_size: m.image_size(),
                crop: m.crop(),
                tokens: m.vision_tokens(width, height)?,
            })
        })
        .collect::<Result<_, occ_core::ModeError>>()?;

    out.send(&summary)?;
    let rows = InspectVisionTokens { width, height, modes: rows };
    out.send(&rows)?;
    let rows = rows.modes;
    out.result(&format!(
        "config: {}  SAM {}x{} ({} heads, window {}, global {:?})  CLIP {}x{} ({} heads)  projector {}->{}",
        hf.model_type,
        vision.sam.width,
        vision.sam.depth,
        vision.sam.heads,
        vision.sam.window_size,
        vision.sam.global_attn_indexes,
        vision.clip.width,
        vision.clip.layers,
        vision.clip.heads,
        vision.projector.input_dim,
        vision.projector.n_embed
    ));
    out.result(&format!(
        "decoder: hidden {}  layers {}  experts {} (top {})  vocab {}",
        text_key("hidden_size"),
        text_key("num_hidden_layers"),
        text_key("n_routed_experts"),
        text_key("num_experts_per_tok"),
        text_key("vocab_size")
    ));
    out.result(&format!("\nvision tokens for a {width}x{height} image:"));
    out.result(&format!(
        "{:<22} {:>8} {:>6} {:>11} {:>6} {:>5}",
        "mode", "nominal", "valid", "valid_floor", "slots", "grid"
    ));
    for r in &rows {
        out.result(&format!(
            "{:<22} {:>8} {:>6} {:>11} {:>6} {:>5}",
            r.mode,
            r.tokens.nominal,
            r.tokens.valid,
            r.tokens.valid_floor,
            r.tokens.slots,
            format!("{}x{}", r.tokens.grid.across, r.tokens.grid.down)
        ));
    }

    if args.tensors {
        tensor_table(&args, &expected, out)?;
    }
    Ok(())
}

/// The `--tensors` table: `expected` against `--checkpoint` and `--index`; an error when any is
/// missing or misshaped.
fn tensor_table(args: &Args, expected: &[(String, Vec<usize>)], out: &Output) -> anyhow::Result<()> {
    {
        let found = args.checkpoint.as_deref().map(checkpoint_tensors).transpose()?;
        let index = args.index.as_deref().map(read_index).transpose()?;
        // Only the encoder's names count: the checkpoint may hold the decoder's too.
        let table: BTreeMap<String, Vec<usize>> = expected.iter().cloned().collect();
        let (missing, mismatches) =
            found.as_ref().map(|f| compare_tensors(&table, f)).map_or((0, 0), |m| (m.missing.len(), m.misshaped.len()));
        let tensors: Vec<TensorRow> = expected
            .iter()
            .map(|(name, shape)| {
                let entry = found.as_ref().and_then(|f| f.get(name));
                TensorRow {
                    name: name.clone(),
                    expected_shape: shape.clone(),
                    // Absent for a tensor the checkpoint does not hold.
                    checkpoint_shape: entry.map(|e| e.shape.clone()),
                    checkpoint_dtype: entry.map(|e| e.dtype.clone()),
                    in_index: index.as_ref().map(|i| i.contains_key(name)),
                }
            })
            .collect();
        let missing_from_index = tensors.iter().filter(|t| t.in_index == Some(false)).count();
        let message = InspectTensors { tensors, shape_mismatches: mismatches, missing_from_index };
        out.send(&message)?;
        let tensors = message.tensors;
        out.result(&format!(
            "\nencoder tensors ({}, {} parameters):",
            tensors.len(),
            expected.iter().map(|(_, s)| count(s)).sum::<usize>()
        ));
        for t in &tensors {
            let extra = match (&t.checkpoint_shape, t.in_index) {
                (None, _) if found.is_some() => "  MISSING from checkpoint".to_string(),
                (Some(s), _) if s != &t.expected_shape => format!("  MISMATCH: checkpoint {s:?}"),
                (_, Some(false)) => "  MISSING from index".to_string(),
                _ => String::new(),
            };
            out.result(&format!("{:<70} {:?}{extra}", t.name, t.expected_shape));
        }
        let problems: Vec<String> =
            [(missing, "are missing from the checkpoint"), (mismatches, "have a different shape in the checkpoint")]
                .iter()
                .filter(|(n, _)| *n > 0)
                .map(|(n, what)| format!("{n} encoder tensors {what}"))
                .collect();
        anyhow::ensure!(problems.is_empty(), "{}", problems.join(", "));
        anyhow::ensure!(missing_from_index == 0, "{missing_from_index} encoder tensors are missing from the index");
    }
    Ok(())
}
