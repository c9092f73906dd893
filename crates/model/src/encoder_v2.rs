//! The DeepSeek-OCR-2 vision tower: SAM-base with the 512 → 896 downsampling neck → Qwen2-style
//! encoder over `[SAM rows, query rows]` → the query rows → linear projector, then the layout of one
//! image (docs/MODEL.md §14).
//!
//! ```no_run
//! # use occ_model::{config_v2::Ocr2VisionConfig, encoder_v2::Ocr2Encoder, preprocess, preprocess_v2};
//! # fn main() -> candle_core::Result<()> {
//! let device = candle_core::Device::Cpu;
//! let vb = occ_model::synth::synth_var_builder(0, candle_core::DType::F32, &device);
//! let encoder = Ocr2Encoder::new(&Ocr2VisionConfig::deepseek_ocr2(), vb)?; // original checkpoint names
//! let page = preprocess::load_image(std::path::Path::new("page.png"))?;
//! let prepared = preprocess_v2::prepare_v2(&page, occ_core::Mode::V2, preprocess::ResizeOrder::Pillow12)?;
//! let rows = encoder.encode(&prepared)?; // (256 + 144·tiles + 1, 1280)
//! # Ok(()) }
//! ```
//!
//! Checkpoint names are the original release's (deepseek-ai/DeepSeek-OCR-2); [`expected_tensors`] is
//! the table derived from the typed config, [`Ocr2Naming`] tells the original naming from
//! transformers' converted one (deepseek-community/DeepSeek-OCR-2) and [`converted_name`] maps one
//! to the other.

use std::collections::BTreeMap;

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use crate::config::ProjectorConfig;
use crate::config_v2::{Ocr2VisionConfig, QUERIES_1024, QUERIES_768};
use crate::encoder::DEFAULT_MAX_BATCH;
use crate::nn::{no_probe, Probe};
use crate::preprocess::PreparedImage;
use crate::preprocess_v2::views_tensor_v2;
use crate::projector::Projector;
use crate::qwen2_encoder::Qwen2Encoder;
use crate::sam::Sam;

/// Prefix of the Qwen2 encoder's layers and norm in the original checkpoint.
pub const ENCODER_PREFIX: &str = "model.qwen2_model.model.model";

/// The vision tower's tensors in the original checkpoint, with shapes, from the typed config (the
/// decoder's are v1's table, `load::expected_decoder_tensors`).
pub fn expected_tensors(cfg: &Ocr2VisionConfig) -> BTreeMap<String, Vec<usize>> {
    let mut t = BTreeMap::new();
    let mut put = |name: String, shape: Vec<usize>| {
        t.insert(name, shape);
    };
    let s = &cfg.sam;
    let sp = "model.sam_model";
    let g = s.pos_grid();
    put(format!("{sp}.patch_embed.proj.weight"), vec![s.width, s.in_chans, s.patch_size, s.patch_size]);
    put(format!("{sp}.patch_embed.proj.bias"), vec![s.width]);
    put(format!("{sp}.pos_embed"), vec![1, g, g, s.width]);
    for i in 0..s.depth {
        let b = format!("{sp}.blocks.{i}");
        let rel = if s.global_attn_indexes.contains(&i) { 2 * g - 1 } else { 2 * s.window_size - 1 };
        for n in ["norm1", "norm2"] {
            put(format!("{b}.{n}.weight"), vec![s.width]);
            put(format!("{b}.{n}.bias"), vec![s.width]);
        }
        put(format!("{b}.attn.qkv.weight"), vec![3 * s.width, s.width]);
        put(format!("{b}.attn.qkv.bias"), vec![3 * s.width]);
        put(format!("{b}.attn.proj.weight"), vec![s.width, s.width]);
        put(format!("{b}.attn.proj.bias"), vec![s.width]);
        put(format!("{b}.attn.rel_pos_h"), vec![rel, s.head_dim()]);
        put(format!("{b}.attn.rel_pos_w"), vec![rel, s.head_dim()]);
        put(format!("{b}.mlp.lin1.weight"), vec![s.mlp_dim, s.width]);
        put(format!("{b}.mlp.lin1.bias"), vec![s.mlp_dim]);
        put(format!("{b}.mlp.lin2.weight"), vec![s.width, s.mlp_dim]);
        put(format!("{b}.mlp.lin2.bias"), vec![s.width]);
    }
    put(format!("{sp}.neck.0.weight"), vec![s.out_chans, s.width, 1, 1]);
    put(format!("{sp}.neck.2.weight"), vec![s.out_chans, s.out_chans, 3, 3]);
    for n in [1, 3] {
        put(format!("{sp}.neck.{n}.weight"), vec![s.out_chans]);
        put(format!("{sp}.neck.{n}.bias"), vec![s.out_chans]);
    }
    let [c2, c3] = s.downsample_channels;
    put(format!("{sp}.net_2.weight"), vec![c2, s.out_chans, 3, 3]);
    put(format!("{sp}.net_3.weight"), vec![c3, c2, 3, 3]);
    let e = &cfg.encoder;
    let (h, hd) = (e.hidden, e.head_dim());
    for i in 0..e.layers {
        let l = format!("{ENCODER_PREFIX}.layers.{i}");
        put(format!("{l}.input_layernorm.weight"), vec![h]);
        put(format!("{l}.post_attention_layernorm.weight"), vec![h]);
        put(format!("{l}.self_attn.q_proj.weight"), vec![e.heads * hd, h]);
        put(format!("{l}.self_attn.q_proj.bias"), vec![e.heads * hd]);
        for kv in ["k_proj", "v_proj"] {
            put(format!("{l}.self_attn.{kv}.weight"), vec![e.kv_heads * hd, h]);
            put(format!("{l}.self_attn.{kv}.bias"), vec![e.kv_heads * hd]);
        }
        put(format!("{l}.self_attn.o_proj.weight"), vec![h, e.heads * hd]);
        put(format!("{l}.mlp.gate_proj.weight"), vec![e.intermediate, h]);
        put(format!("{l}.mlp.up_proj.weight"), vec![e.intermediate, h]);
        put(format!("{l}.mlp.down_proj.weight"), vec![h, e.intermediate]);
    }
    put(format!("{ENCODER_PREFIX}.norm.weight"), vec![h]);
    put("model.qwen2_model.query_768.weight".into(), vec![QUERIES_768, h]);
    put("model.qwen2_model.query_1024.weight".into(), vec![QUERIES_1024, h]);
    put("model.projector.layers.weight".into(), vec![cfg.n_embed, h]);
    put("model.projector.layers.bias".into(), vec![cfg.n_embed]);
    put("model.view_seperator".into(), vec![cfg.n_embed]);
    t
}

/// Which naming a DeepSeek-OCR checkpoint uses, told from its tensor names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ocr2Naming {
    /// deepseek-ai/DeepSeek-OCR-2 as released (remote-code names: `model.qwen2_model.*`).
    Original,
    /// transformers' converted checkpoint (deepseek-community/DeepSeek-OCR-2: `model.vision_tower.*`,
    /// fused MoE experts).
    Converted,
}

/// What a set of tensor names is: a v2 checkpoint in one of its namings, or an error naming the
/// mismatch (a DeepSeek-OCR v1 checkpoint, or something else).
pub fn identify<'a>(names: impl IntoIterator<Item = &'a str>) -> std::result::Result<Ocr2Naming, String> {
    let (mut original, mut converted, mut v1) = (false, false, false);
    for n in names {
        original |= n.starts_with("model.qwen2_model.");
        converted |= n.starts_with("model.vision_tower.") || n.starts_with("vision_tower.");
        v1 |= n.starts_with("model.vision_model.") || n == "model.image_newline";
    }
    match (original, converted, v1) {
        (true, false, false) => Ok(Ocr2Naming::Original),
        (false, true, false) => Ok(Ocr2Naming::Converted),
        (false, false, true) => Err("this is a DeepSeek-OCR (v1) checkpoint: it has CLIP-L (`model.vision_model.*`) \
             and `model.image_newline`, and no Qwen2 encoder (`model.qwen2_model.*`); use the deepseek-ocr engine"
            .into()),
        _ => Err(format!(
            "not a DeepSeek-OCR-2 checkpoint: Qwen2 encoder (`model.qwen2_model.*`) {}, transformers' \
             `model.vision_tower.*` {}, v1's CLIP `model.vision_model.*` {}",
            found(original),
            found(converted),
            found(v1)
        )),
    }
}

fn found(b: bool) -> &'static str {
    if b {
        "present"
    } else {
        "absent"
    }
}

/// The converted (transformers) name of an original vision-tower tensor name, or `None` for names
/// this map does not cover (the decoder, whose experts the conversion also fuses).
pub fn converted_name(original: &str) -> Option<String> {
    let sam = "model.sam_model.";
    if let Some(rest) = original.strip_prefix(sam) {
        let t = "model.vision_tower.sam_encoder.";
        if let Some(r) = rest.strip_prefix("blocks.") {
            let (idx, tail) = r.split_once('.')?;
            let tail = match tail.strip_prefix("norm") {
                Some(n) => format!("layer_norm{n}"),
                None => tail.to_string(),
            };
            return Some(format!("{t}layers.{idx}.{tail}"));
        }
        let mapped = [
            ("patch_embed.proj.", "patch_embed.projection."),
            ("pos_embed", "pos_embed"),
            ("neck.0.", "neck.conv1."),
            ("neck.1.", "neck.layer_norm1."),
            ("neck.2.", "neck.conv2."),
            ("neck.3.", "neck.layer_norm2."),
            ("net_2.", "proj.conv1."),
            ("net_3.", "proj.conv2."),
        ];
        return mapped.iter().find_map(|(from, to)| rest.strip_prefix(from).map(|r| format!("{t}{to}{r}")));
    }
    let mapped = [
        ("model.qwen2_model.model.model.", "model.vision_tower.vision_encoder."),
        ("model.qwen2_model.query_768.", "model.vision_tower.query_768_resolution."),
        ("model.qwen2_model.query_1024.", "model.vision_tower.query_1024_resolution."),
        ("model.projector.layers.", "model.multi_modal_projector."),
        ("model.view_seperator", "model.view_separator"),
    ];
    mapped.iter().find_map(|(from, to)| original.strip_prefix(from).map(|r| format!("{to}{r}")))
}

/// SAM + Qwen2 encoder + queries + projector + the view separator.
#[derive(Debug, Clone)]
pub struct Ocr2Encoder {
    sam: Sam,
    encoder: Qwen2Encoder,
    query_768: Tensor,
    query_1024: Tensor,
    projector: Projector,
    view_seperator: Tensor,
    cfg: Ocr2VisionConfig,
    /// Views run through the tower together at most ([`Ocr2Encoder::encode_batch`]; default v1's
    /// [`DEFAULT_MAX_BATCH`]).
    pub max_batch: usize,
}

/// Batches of views whose pixels [`Ocr2Encoder::encode_batch`] uploads at once.
const UPLOAD_BATCHES: usize = 4;

impl Ocr2Encoder {
    /// Builds the tower from `vb` at the checkpoint root, in the original naming.
    pub fn new(cfg: &Ocr2VisionConfig, vb: VarBuilder<'_>) -> Result<Self> {
        cfg.validate().map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let m = vb.pp("model");
        let h = cfg.encoder.hidden;
        let q = m.pp("qwen2_model");
        Ok(Ocr2Encoder {
            sam: Sam::new(&cfg.sam, m.pp("sam_model"))?,
            encoder: Qwen2Encoder::new(&cfg.encoder, q.pp("model").pp("model"))?,
            query_768: q.pp("query_768").get((QUERIES_768, h), "weight")?,
            query_1024: q.pp("query_1024").get((QUERIES_1024, h), "weight")?,
            projector: Projector::new(&ProjectorConfig { input_dim: h, n_embed: cfg.n_embed }, m.pp("projector"))?,
            view_seperator: m.get(cfg.n_embed, "view_seperator")?,
            cfg: cfg.clone(),
            max_batch: DEFAULT_MAX_BATCH,
        })
    }

    pub fn config(&self) -> &Ocr2VisionConfig {
        &self.cfg
    }

    /// The projected query rows of a batch of equal-sized views.
    ///
    /// # Shapes
    /// `pixels`: (b, 3, s, s) normalised, `s` = 768 or 1024 → (b, 144 or 256, n_embed).
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        self.forward_probed(pixels, &mut no_probe)
    }

    /// [`Ocr2Encoder::forward`], reporting the SAM stages, `qwen2.layers.N`, `qwen2.norm`, `queries`
    /// (the encoder's query rows) and `projector` to `probe`.
    pub fn forward_probed(&self, pixels: &Tensor, probe: Probe<'_>) -> Result<Tensor> {
        let feats = self.sam.forward_probed(pixels, probe)?; // (b, c, h, w)
        let (b, c, gh, gw) = feats.dims4()?;
        let patches = gh * gw;
        let queries = match Ocr2VisionConfig::queries_for(patches) {
            QUERIES_768 => &self.query_768,
            _ => &self.query_1024,
        };
        let nq = queries.dim(0)?;
        if nq != patches {
            candle_core::bail!(
                "DeepSeek-OCR-2 views are 768² (144 SAM tokens) or 1024² (256); got a {gh}×{gw} SAM grid \
                 ({patches} tokens) for {nq} queries"
            )
        }
        let feats = feats.flatten_from(2)?.transpose(1, 2)?; // (b, hw, c)
        let queries = queries.to_dtype(feats.dtype())?.unsqueeze(0)?.broadcast_as((b, nq, c))?;
        let combined = Tensor::cat(&[&feats, &queries], 1)?.contiguous()?;
        let out = self.encoder.forward_probed(&combined, patches, probe)?;
        let query_rows = out.narrow(1, patches, nq)?.contiguous()?;
        probe("queries", &query_rows)?;
        let rows = self.projector.forward(&query_rows)?;
        probe("projector", &rows)?;
        Ok(rows)
    }

    /// The decoder rows of one prepared image: local tiles (row-major, 144 rows each), the global
    /// view (256 or 144 rows), then the view separator — `Mode::vision_tokens(w, h).slots` rows.
    pub fn encode(&self, image: &PreparedImage) -> Result<Tensor> {
        self.encode_batch(std::slice::from_ref(image))?
            .pop()
            .ok_or_else(|| candle_core::Error::Msg("encode: no rows for the image".into()))
    }

    /// [`Ocr2Encoder::encode`] of several images: views of one side from all images (768: tiles and
    /// `v2-single` views; 1024: `v2` global views) go through the tower together, at most
    /// [`Ocr2Encoder::max_batch`] at a time, their pixels uploaded before the first forward of
    /// their block. One `(slots, n_embed)` tensor per image, in order.
    pub fn encode_batch(&self, images: &[PreparedImage]) -> Result<Vec<Tensor>> {
        let device = self.view_seperator.device();
        let dtype = self.view_seperator.dtype();
        // (image index, view index; 0 = global, k + 1 = tile k) grouped by view side
        let mut groups: BTreeMap<u32, Vec<(usize, usize)>> = BTreeMap::new();
        for (i, img) in images.iter().enumerate() {
            groups.entry(img.global.width()).or_default().push((i, 0));
            for (k, tile) in img.tiles.iter().enumerate() {
                groups.entry(tile.width()).or_default().push((i, k + 1));
            }
        }
        let mut rows: BTreeMap<(usize, usize), Tensor> = BTreeMap::new();
        let batch = self.max_batch.max(1);
        for views in groups.values() {
            // one upload for several batches: an upload waits for the device to finish its queue
            for block in views.chunks(batch * UPLOAD_BATCHES) {
                let pixels: Vec<&image::RgbImage> = block
                    .iter()
                    .map(|&(i, v)| if v == 0 { &images[i].global } else { &images[i].tiles[v - 1] })
                    .collect();
                let pixels = views_tensor_v2(&pixels, dtype, device)?;
                for (c, chunk) in block.chunks(batch).enumerate() {
                    let out = self.forward(&pixels.narrow(0, c * batch, chunk.len())?)?;
                    for (j, &key) in chunk.iter().enumerate() {
                        rows.insert(key, out.get(j)?);
                    }
                }
            }
        }
        let missing = |i: usize, v: usize| candle_core::Error::Msg(format!("encode: no rows for image {i} view {v}"));
        images
            .iter()
            .enumerate()
            .map(|(i, img)| {
                // local tiles first, then the global view, then the separator (docs/MODEL.md §14.4)
                let mut parts = (1..=img.tiles.len())
                    .map(|v| rows.get(&(i, v)).cloned().ok_or_else(|| missing(i, v)))
                    .collect::<Result<Vec<_>>>()?;
                parts.push(rows.get(&(i, 0)).cloned().ok_or_else(|| missing(i, 0))?);
                parts.push(self.view_seperator.unsqueeze(0)?);
                Tensor::cat(&parts, 0)
            })
            .collect()
    }
}
