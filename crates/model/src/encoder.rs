//! The DeepEncoder: SAM → CLIP → concat(CLIP without class token, SAM) → projector, batched over
//! views, then the token layout of each image (docs/MODEL.md §1, §6).
//!
//! ```no_run
//! # use occ_model::{config::VisionConfig, encoder::DeepEncoder, preprocess, synth};
//! # fn main() -> candle_core::Result<()> {
//! let device = candle_core::Device::Cpu;
//! let vb = synth::synth_var_builder(0, candle_core::DType::F32, &device); // or safetensors
//! let encoder = DeepEncoder::new(&VisionConfig::deepseek_ocr(), vb)?;
//! let page = preprocess::load_image(std::path::Path::new("page.png"))?;
//! let prepared = preprocess::prepare(&page, occ_core::Mode::Tiny)?;
//! let rows = encoder.encode(&[prepared], &device)?; // one (73, 1280) tensor
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;

use crate::clip::Clip;
use crate::config::VisionConfig;
use crate::layout::lay_out;
use crate::nn::{no_probe, Probe};
use crate::preprocess::{images_tensor, PreparedImage};
use crate::projector::Projector;
use crate::sam::Sam;

/// The tensors [`DeepEncoder::new`] reads for `cfg` with their shapes, in name order: the
/// encoder's part of the checkpoint table ([`crate::load::expected_vision_tensors`]) less the
/// stored tensors no module reads ([`crate::load::UNREAD_TENSORS`]); tests tie this to what the
/// constructor requests. Never fails; the `Result` is kept for callers.
pub fn expected_tensors(cfg: &VisionConfig) -> Result<Vec<(String, Vec<usize>)>> {
    let mut table = crate::load::expected_vision_tensors(cfg);
    for name in crate::load::UNREAD_TENSORS {
        table.remove(name);
    }
    Ok(table.into_iter().collect())
}

/// Views encoded together by [`DeepEncoder::encode`] by default.
pub const DEFAULT_MAX_BATCH: usize = 8;

/// Batches of views whose pixels [`DeepEncoder::encode`] uploads at once.
const UPLOAD_BATCHES: usize = 4;

/// SAM-base + CLIP-L + projector + the learned layout vectors.
#[derive(Debug, Clone)]
pub struct DeepEncoder {
    sam: Sam,
    clip: Clip,
    projector: Projector,
    image_newline: Tensor,
    view_seperator: Tensor,
    cfg: VisionConfig,
    dtype: DType,
    max_batch: usize,
}

impl DeepEncoder {
    /// Builds the encoder from `vb` at the checkpoint root: tensors are read from
    /// `model.sam_model.*`, `model.vision_model.*`, `model.projector.*`, `model.image_newline`
    /// and `model.view_seperator`. Computation runs in `vb`'s dtype and device.
    pub fn new(cfg: &VisionConfig, vb: VarBuilder<'_>) -> Result<Self> {
        cfg.validate().map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let m = vb.pp("model");
        let n = cfg.projector.n_embed;
        Ok(DeepEncoder {
            sam: Sam::new(&cfg.sam, m.pp("sam_model"))?,
            clip: Clip::new(&cfg.clip, m.pp("vision_model"))?,
            projector: Projector::new(&cfg.projector, m.pp("projector"))?,
            image_newline: m.get(n, "image_newline")?,
            view_seperator: m.get(n, "view_seperator")?,
            cfg: cfg.clone(),
            dtype: vb.dtype(),
            max_batch: DEFAULT_MAX_BATCH,
        })
    }

    /// Sets how many views [`DeepEncoder::encode`] runs in one batch (at least 1).
    pub fn with_max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch.max(1);
        self
    }

    pub fn config(&self) -> &VisionConfig {
        &self.cfg
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn sam(&self) -> &Sam {
        &self.sam
    }

    pub fn clip(&self) -> &Clip {
        &self.clip
    }

    pub fn projector(&self) -> &Projector {
        &self.projector
    }

    /// `model.image_newline`, (n_embed).
    pub fn image_newline(&self) -> &Tensor {
        &self.image_newline
    }

    /// `model.view_seperator`, (n_embed).
    pub fn view_separator(&self) -> &Tensor {
        &self.view_seperator
    }

    /// Projected features of a batch of square views.
    ///
    /// # Shapes
    /// `x`: (b, 3, s, s), normalised → (b, (s/64)², n_embed).
    pub fn encode_views(&self, x: &Tensor) -> Result<Tensor> {
        self.encode_views_probed(x, &mut no_probe)
    }

    /// [`DeepEncoder::encode_views`], reporting every SAM and CLIP stage, then `concat`
    /// (b, n, 2048) and `projector` (b, n, n_embed).
    pub fn encode_views_probed(&self, x: &Tensor, probe: Probe<'_>) -> Result<Tensor> {
        let x = x.to_dtype(self.dtype)?;
        let f_sam = self.sam.forward_probed(&x, probe)?; // (b, 1024, h, w)
        let f_clip = self.clip.forward_probed(&f_sam, probe)?; // (b, 1 + h·w, 1024)
        let t = f_clip.dim(1)?;
        let clip_part = f_clip.narrow(1, 1, t - 1)?;
        let sam_part = f_sam.flatten_from(2)?.transpose(1, 2)?; // (b, h·w, 1024)
        let feats = Tensor::cat(&[&clip_part, &sam_part], 2)?.contiguous()?; // CLIP first
        probe("concat", &feats)?;
        let out = self.projector.forward(&feats)?;
        probe("projector", &out)?;
        Ok(out)
    }

    /// The vision rows of each image, in the decoder's dtype: one `(slots, n_embed)` tensor per
    /// image. Views of equal size (global views, tiles) from all images are batched together,
    /// at most `max_batch` at a time.
    pub fn encode(&self, images: &[PreparedImage], device: &Device) -> Result<Vec<Tensor>> {
        // (image index, view index; 0 = global, k + 1 = tile k) grouped by view side.
        let mut groups: BTreeMap<u32, Vec<(usize, usize)>> = BTreeMap::new();
        for (i, img) in images.iter().enumerate() {
            groups.entry(img.global.width()).or_default().push((i, 0));
            for (k, tile) in img.tiles.iter().enumerate() {
                groups.entry(tile.width()).or_default().push((i, k + 1));
            }
        }
        let mut features: BTreeMap<(usize, usize), Tensor> = BTreeMap::new();
        for views in groups.values() {
            // one upload for several batches: an upload waits for the device to finish its queue
            for block in views.chunks(self.max_batch * UPLOAD_BATCHES) {
                let pixels: Vec<&image::RgbImage> = block
                    .iter()
                    .map(|&(i, v)| if v == 0 { &images[i].global } else { &images[i].tiles[v - 1] })
                    .collect();
                let pixels = images_tensor(&pixels, self.dtype, device)?;
                for (c, chunk) in block.chunks(self.max_batch).enumerate() {
                    let out = self.encode_views(&pixels.narrow(0, c * self.max_batch, chunk.len())?)?;
                    for (j, &key) in chunk.iter().enumerate() {
                        features.insert(key, out.get(j)?);
                    }
                }
            }
        }
        let missing =
            |i: usize, v: usize| candle_core::Error::Msg(format!("encode: no features for image {i} view {v}"));
        images
            .iter()
            .enumerate()
            .map(|(i, img)| {
                let global = features.get(&(i, 0)).ok_or_else(|| missing(i, 0))?;
                let tiles = if img.tiles.is_empty() {
                    None
                } else {
                    let t = (1..=img.tiles.len())
                        .map(|v| features.get(&(i, v)).cloned().ok_or_else(|| missing(i, v)))
                        .collect::<Result<Vec<_>>>()?;
                    Some(Tensor::stack(&t, 0)?)
                };
                lay_out(global, tiles.as_ref().map(|t| (t, img.grid)), &self.image_newline, &self.view_seperator)
            })
            .collect()
    }
}
