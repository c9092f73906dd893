//! The trainable reader: its variables, their initialisation, and the teacher-forced loss.
//!
//! The model is rebuilt from its variables at every step with the inference constructors
//! ([`DeepEncoder::new`], [`DecoderModel::new`]): one model code for training and inference.
//! Building is part of the autograd graph (expert weights are stacked, q|k|v concatenated), so the
//! gradients reach the variables, and no tensor derived from the weights goes stale when the
//! optimiser updates them. Tracked tensors make every fused op take its differentiable form
//! (`occ_model::ops::tracks_grad`).

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use image::RgbImage;
use occ_core::{Prompt, TextTokenizer};
use occ_eval::rng::SplitMix64;
use occ_model::decoder::DecoderModel;
use occ_model::encoder::DeepEncoder;
use occ_model::layout::lay_out_batch;
use occ_model::mini::{MiniConfig, OutputVocab};
use occ_model::preprocess::images_tensor;
use occ_model::prompt::{build_prompt, PromptTokens};

use crate::error::{TrainError, TrainResult};

/// The reader's variables by checkpoint name, in name order.
#[derive(Debug, Clone)]
pub struct Params {
    pub vars: BTreeMap<String, Var>,
    pub device: Device,
}

/// How a tensor is initialised, from its name and shape.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Init {
    Zeros,
    Ones,
    Normal(f64),
}

/// The initialisation rule: norm weights 1, biases 0, matrices and convolutions
/// `N(0, 1/fan_in)` (outputs of residual branches further × `1/√(2·blocks)`), embeddings and learned
/// vectors `N(0, 0.02²)`.
fn init_for(name: &str, shape: &[usize], cfg: &MiniConfig) -> Init {
    let last = name.rsplit('.').next().unwrap_or("");
    let is_norm = name.contains("norm") || name.contains("neck.1.") || name.contains("neck.3.");
    if shape.len() == 1 {
        return if is_norm && last == "weight" {
            Init::Ones
        } else if last == "bias" {
            Init::Zeros
        } else {
            Init::Normal(0.02)
        };
    }
    if name.contains("embed_tokens")
        || name.contains("pos_embed")
        || name.contains("position_embedding")
        || name.contains("rel_pos")
    {
        return Init::Normal(0.02);
    }
    let fan_in: usize = shape[1..].iter().product();
    let mut std = (fan_in.max(1) as f64).powf(-0.5);
    let residual_out = ["o_proj", "down_proj", "attn.proj", "lin2", "out_proj", "fc2"];
    if residual_out.iter().any(|r| name.contains(r)) {
        let blocks = if name.starts_with("model.layers") {
            cfg.decoder.layers
        } else if name.contains("sam_model") {
            cfg.sam.depth
        } else {
            cfg.clip.layers
        };
        std /= (2.0 * blocks.max(1) as f64).sqrt();
    }
    Init::Normal(std)
}

/// Standard normal draws (Box–Muller) from a seeded generator.
fn normals(rng: &mut SplitMix64, n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n + 1);
    let unit = |rng: &mut SplitMix64| ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    while out.len() < n {
        let (u1, u2) = (unit(rng), unit(rng));
        let r = (-2.0 * u1.ln()).sqrt();
        let t = 2.0 * std::f64::consts::PI * u2;
        out.push((r * t.cos()) as f32);
        out.push((r * t.sin()) as f32);
    }
    out.truncate(n);
    out
}

/// Every tensor the reader's modules read, with its shape: the encoder's as its constructor
/// requests them, the decoder's from the checkpoint table.
pub fn tensor_shapes(cfg: &MiniConfig) -> TrainResult<BTreeMap<String, Vec<usize>>> {
    let mut shapes: BTreeMap<String, Vec<usize>> =
        occ_model::encoder::expected_tensors(&cfg.vision())?.into_iter().collect();
    let vision_prefixes =
        ["model.sam_model.", "model.vision_model.", "model.projector.", "model.image_newline", "model.view_seperator"];
    for (name, shape) in occ_model::load::expected_tensors(&cfg.vision(), &cfg.decoder_config()) {
        if !vision_prefixes.iter().any(|p| name.starts_with(p)) {
            shapes.insert(name, shape);
        }
    }
    Ok(shapes)
}

impl Params {
    /// Every tensor the reader reads, freshly initialised (float32), from `seed`. The same seed
    /// gives the same values on any device.
    pub fn init(cfg: &MiniConfig, seed: u64, device: &Device) -> TrainResult<Params> {
        let mut vars = BTreeMap::new();
        for (name, shape) in tensor_shapes(cfg)? {
            let n: usize = shape.iter().product();
            let data = match init_for(&name, &shape, cfg) {
                Init::Zeros => vec![0f32; n],
                Init::Ones => vec![1f32; n],
                Init::Normal(std) => {
                    let mut rng = SplitMix64::stream(seed, &name);
                    normals(&mut rng, n).into_iter().map(|v| v * std as f32).collect()
                }
            };
            let t = Tensor::from_vec(data, shape.as_slice(), device)?;
            vars.insert(name, Var::from_tensor(&t)?);
        }
        Ok(Params { vars, device: device.clone() })
    }

    /// Parameters of the reader (training-only tensors not counted).
    pub fn count(&self) -> usize {
        self.vars.iter().filter(|(k, _)| !is_training_only(k)).map(|(_, v)| v.elem_count()).sum()
    }

    /// Adds the cell head ([`CELL_HEAD`], `N(0, 1/hidden)`) when it is not there yet, returning
    /// whether it was added.
    pub fn add_cell_head(&mut self, cfg: &MiniConfig, seed: u64) -> TrainResult<bool> {
        if self.vars.contains_key(CELL_HEAD) {
            return Ok(false);
        }
        let (v, h) = (cfg.vocab_size, cfg.decoder.hidden_size);
        let mut rng = SplitMix64::stream(seed, CELL_HEAD);
        let std = (h as f64).powf(-0.5) as f32;
        let data: Vec<f32> = normals(&mut rng, v * h).into_iter().map(|x| x * std).collect();
        let t = Tensor::from_vec(data, (v, h), &self.device)?;
        self.vars.insert(CELL_HEAD.into(), Var::from_tensor(&t)?);
        Ok(true)
    }

    /// A builder over the variables themselves (training: results are tracked).
    pub fn var_builder(&self) -> VarBuilder<'static> {
        let map = self.vars.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect();
        VarBuilder::from_tensors(map, DType::F32, &self.device)
    }

    /// A builder over detached copies (inference during training: the fused fast paths).
    pub fn detached_var_builder(&self) -> VarBuilder<'static> {
        let map = self.vars.iter().map(|(k, v)| (k.clone(), v.as_tensor().detach())).collect();
        VarBuilder::from_tensors(map, DType::F32, &self.device)
    }

    /// The current values (detached), by name.
    pub fn tensors(&self) -> BTreeMap<String, Tensor> {
        self.vars.iter().map(|(k, v)| (k.clone(), v.as_tensor().detach())).collect()
    }
}

/// The reader's prompt (`<image>\nFree OCR.` with the image slots of one page), in reader ids.
pub fn reader_prompt(cfg: &MiniConfig, tok: &TextTokenizer, vocab: &OutputVocab) -> TrainResult<PromptTokens> {
    let mode = cfg.mode().map_err(|e| TrainError::Other(e.to_string()))?;
    let c = cfg.canvas as u32;
    let vt = mode.vision_tokens(c, c).map_err(|e| TrainError::Other(e.to_string()))?;
    let p = build_prompt(tok, &Prompt::FreeOcr, &[vt.slots as usize]).map_err(|e| TrainError::Other(e.to_string()))?;
    vocab.spell_prompt(tok, &p).map_err(|e| TrainError::Other(e.to_string()))
}

/// The prompt's tokenizer ids that the output vocabulary must hold whole.
pub fn prompt_ids(cfg: &MiniConfig, tok: &TextTokenizer) -> TrainResult<Vec<u32>> {
    let mode = cfg.mode().map_err(|e| TrainError::Other(e.to_string()))?;
    let c = cfg.canvas as u32;
    let vt = mode.vision_tokens(c, c).map_err(|e| TrainError::Other(e.to_string()))?;
    Ok(build_prompt(tok, &Prompt::FreeOcr, &[vt.slots as usize]).map_err(|e| TrainError::Other(e.to_string()))?.ids)
}

/// Name of the cell head, the one training-only tensor (`optim.cell_loss`): it is saved in
/// checkpoints, so a resumed run continues it exactly, and left out of exported readers.
pub const CELL_HEAD: &str = "train.cell_head.weight";

/// True for tensors that exist only for training (left out of an exported reader).
pub fn is_training_only(name: &str) -> bool {
    name.starts_with("train.")
}

/// Where one reader token is drawn on its page: the centre of its text on its line, as shares of
/// the page's width and height (0 = left/top edge, 1 = right/bottom edge).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placed {
    pub id: u32,
    pub x: f32,
    pub y: f32,
}

/// The cell-loss inputs of a micro-batch: the head and each page's placed tokens.
#[derive(Debug, Clone, Copy)]
pub struct CellTargets<'a> {
    /// `(vocab_size, hidden_size)`: a vision token's logits over reader ids.
    pub head: &'a Tensor,
    pub placed: &'a [&'a [Placed]],
}

/// The summed loss of a micro-batch and how many tokens it covers.
#[derive(Debug)]
pub struct BatchLoss {
    /// Sum over target tokens of the cross-entropy (nats), a scalar tracked tensor.
    pub sum: Tensor,
    pub tokens: usize,
    /// The cell loss (nats per cell that holds text, averaged over those cells), a scalar tracked
    /// tensor, when cell targets were given.
    pub cell: Option<Tensor>,
}

/// Teacher-forced next-token loss of a micro-batch: each page's prompt, then its input tokens;
/// the model predicts every target token and the closing EOS from what precedes it. `inputs[i]`
/// is `targets[i]` or, with input dropout, the same length with some ids hidden
/// ([`crate::data::Page::input`]).
pub fn batch_loss(
    cfg: &MiniConfig,
    vb: VarBuilder<'_>,
    prompt: &PromptTokens,
    images: &[&RgbImage],
    inputs: &[&[u32]],
    targets: &[&[u32]],
) -> TrainResult<BatchLoss> {
    batch_losses(cfg, vb, prompt, images, inputs, targets, None)
}

/// [`batch_loss`], and with `cells` also the cell loss: every vision token of the global view
/// (a `g × g` grid over the page) is read by the cell head, and its log-softmax over reader ids is
/// scored against the ids drawn in its cell (each id weighted by its share of the cell's ids);
/// cells without text are not scored.
pub fn batch_losses(
    cfg: &MiniConfig,
    vb: VarBuilder<'_>,
    prompt: &PromptTokens,
    images: &[&RgbImage],
    inputs: &[&[u32]],
    targets: &[&[u32]],
    cells: Option<CellTargets<'_>>,
) -> TrainResult<BatchLoss> {
    if inputs.len() != targets.len() || inputs.iter().zip(targets).any(|(i, t)| i.len() != t.len()) {
        return Err(TrainError::Other("each page's input must be as long as its target".into()));
    }
    let device = vb.device().clone();
    let encoder = DeepEncoder::new(&cfg.vision(), vb.clone())?;
    let decoder = DecoderModel::new(&cfg.decoder_config(), vb)?;
    let pixels = images_tensor(images, DType::F32, &device)?;
    let feats = encoder.encode_views(&pixels)?; // (b, n, hidden)
    let b = images.len();
    let hidden = cfg.decoder.hidden_size;
    let p = prompt.ids.len();
    let lens: Vec<usize> = targets.iter().map(|t| p + t.len()).collect();
    let max_len = lens.iter().copied().max().unwrap_or(p);
    if max_len > cfg.decoder.max_positions {
        return Err(TrainError::Other(format!(
            "a page of {} tokens exceeds decoder.max_positions = {}",
            max_len, cfg.decoder.max_positions
        )));
    }
    // Every page has the same prompt, so its image slots are one run at the same positions: the
    // batch is embedded in one lookup and the laid-out vision rows replace the slots' embeddings
    // (what `splice` does page by page). Padding after a page's end is causally invisible to it.
    let slots = prompt.slots();
    let at = prompt.image_mask.iter().position(|&m| m).unwrap_or(0);
    if prompt.image_mask.iter().skip(at).take(slots).any(|&m| !m) {
        return Err(TrainError::Other("the reader prompt's image slots are not one run".into()));
    }
    let mut ids = Vec::with_capacity(b * max_len);
    let mut select = Vec::new();
    let mut labels = Vec::new();
    for (i, (input, target)) in inputs.iter().zip(targets).enumerate() {
        ids.extend(prompt.ids.iter().zip(&prompt.image_mask).map(|(&id, &m)| if m { 0 } else { id }));
        ids.extend_from_slice(input);
        ids.resize((i + 1) * max_len, 0);
        // position p-1+j predicts target[j]; position p-1+len predicts EOS
        for j in 0..=target.len() {
            select.push((i * max_len + p - 1 + j) as u32);
            labels.push(if j < target.len() { target[j] } else { occ_core::tokenizer::EOS_ID });
        }
    }
    let text = decoder.embed(&Tensor::from_vec(ids, (b, max_len), &device)?)?; // (b, L, hidden)
    let vision = lay_out_batch(&feats, encoder.image_newline(), encoder.view_separator())?;
    if vision.dim(1)? != slots {
        return Err(TrainError::Other(format!(
            "the prompt has {slots} image slots but the encoder gave {} rows",
            vision.dim(1)?
        )));
    }
    let after = max_len - at - slots;
    let embeds = Tensor::cat(
        &[&text.narrow(1, 0, at)?, &vision.to_dtype(text.dtype())?, &text.narrow(1, at + slots, after)?],
        1,
    )?; // (b, L, hidden)
    let mut cache = decoder.new_cache(vec![0; b]);
    let h = decoder.forward_hidden(&embeds, 0, &mut cache)?; // (b, L, hidden)
    let n = select.len();
    let sel = h.reshape((b * max_len, hidden))?.index_select(&Tensor::from_vec(select, n, &device)?, 0)?;
    let logits = decoder.logits(&sel)?; // (n, V) f32
    let labels = Tensor::from_vec(labels, n, &device)?;
    let mean = candle_nn::loss::cross_entropy(&logits, &labels)?;
    let cell = match cells {
        Some(c) => Some(cell_loss(&feats, c)?),
        None => None,
    };
    Ok(BatchLoss { sum: (mean * n as f64)?, tokens: n, cell })
}

/// The cell loss of encoder features `feats` `(b, g·g, hidden)` (see [`batch_losses`]).
fn cell_loss(feats: &Tensor, c: CellTargets<'_>) -> TrainResult<Tensor> {
    let (b, n, hidden) = feats.dims3()?;
    let g = (n as f64).sqrt().round() as usize;
    if g * g != n {
        return Err(TrainError::Other(format!("the cell loss needs a square grid of vision tokens, got {n}")));
    }
    if c.placed.len() != b {
        return Err(TrainError::Other(format!("{} pages of cell targets for {b} images", c.placed.len())));
    }
    let v = c.head.dim(0)?;
    let mut target = vec![0f32; b * n * v];
    for (i, placed) in c.placed.iter().enumerate() {
        for p in placed.iter() {
            if (p.id as usize) >= v {
                return Err(TrainError::Other(format!("reader id {} outside the cell head's {v} ids", p.id)));
            }
            let cell = |f: f32| ((f.clamp(0.0, 1.0) * g as f32) as usize).min(g - 1);
            let row = i * n + cell(p.y) * g + cell(p.x);
            target[row * v + p.id as usize] += 1.0;
        }
    }
    let mut cells_with_text = 0usize;
    for row in target.chunks_mut(v) {
        let total: f32 = row.iter().sum();
        if total > 0.0 {
            cells_with_text += 1;
            row.iter_mut().for_each(|x| *x /= total);
        }
    }
    let device = feats.device();
    let target = Tensor::from_vec(target, (b * n, v), device)?;
    let logits = feats.reshape((b * n, hidden))?.to_dtype(DType::F32)?.matmul(&c.head.t()?)?; // (b·n, V)
    let logp = candle_nn::ops::log_softmax(&logits, candle_core::D::Minus1)?;
    let total = (target * logp)?.sum_all()?.neg()?;
    Ok((total / cells_with_text.max(1) as f64)?)
}
