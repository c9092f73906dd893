//! Validation during training: validation-split pages at fixed ratios, read greedily by the reader
//! through the inference engine (the same `DeepseekOcr` path `--engine mini` uses), scored with the
//! sweep's normalisation and character precision (1 − normalised edit distance), and the
//! teacher-forced loss with each page's own image and with another page's image: their difference
//! (`image_gain`) says how much the reader takes from the page. A reader in the language-model phase
//! writes fluent text whatever the page (gain ≈ 0); one that reads has a gain of nats per token.

use occ_core::{Prompt, TextTokenizer};
use occ_eval::metrics::char_precision;
use occ_eval::{Lang, Normalization};
use occ_model::generate::GenerationConfig;
use occ_model::mini::{MiniConfig, OutputVocab};
use occ_model::pipeline::{DeepseekOcr, WeightsIdentity};
use serde::Serialize;

use crate::data::Page;
use crate::error::TrainResult;
use crate::model::{batch_loss, reader_prompt, Params};

/// Precision at one ratio.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RatioScore {
    pub ratio: f64,
    pub pages: usize,
    /// Mean character precision.
    pub char_precision: f64,
    /// Share of pages whose output stopped at EOS (not at the token budget).
    pub stopped: f64,
    /// Teacher-forced loss (nats per token, EOS included) of the pages' text given their own image.
    pub loss: f64,
    /// The same text given the next page's image (page i's text with page i + 1's image, cyclic):
    /// minus `loss`, the information the reader takes from the page. NaN for fewer than 2 pages.
    pub loss_other_image: f64,
    /// The same two losses on validation probes (random strings and shuffled words) at this ratio:
    /// text no language model can guess, so their gap measures reading alone. NaN without probes.
    pub probe_loss: f64,
    pub probe_loss_other_image: f64,
}

impl RatioScore {
    /// Nats per token the reader takes from the page: `loss_other_image − loss`.
    pub fn image_gain(&self) -> f64 {
        self.loss_other_image - self.loss
    }

    /// Nats per token the reader takes from probe pages: `probe_loss_other_image − probe_loss`.
    pub fn probe_gain(&self) -> f64 {
        self.probe_loss_other_image - self.probe_loss
    }
}

/// Mean teacher-forced loss per token of `pages`' texts, page i read with image `images[i]`.
fn mean_loss(
    cfg: &MiniConfig,
    params: &Params,
    prompt: &occ_model::prompt::PromptTokens,
    pages: &[Page],
    shift: usize,
) -> TrainResult<f64> {
    let n = pages.len();
    let (mut sum, mut tokens) = (0.0, 0usize);
    for start in (0..n).step_by(16) {
        let chunk = start..(start + 16).min(n);
        let images: Vec<&image::RgbImage> = chunk.clone().map(|i| &pages[(i + shift) % n].image).collect();
        let targets: Vec<&[u32]> = chunk.map(|i| pages[i].target.as_slice()).collect();
        let bl = batch_loss(cfg, params.detached_var_builder(), prompt, &images, &targets, &targets)?;
        sum += f64::from(bl.sum.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?);
        tokens += bl.tokens;
    }
    Ok(sum / tokens.max(1) as f64)
}

/// Reads `pages` with the current weights and scores them; `probes` (validation probes at the same
/// ratio, may be empty) are only scored by their teacher-forced losses.
pub fn evaluate(
    cfg: &MiniConfig,
    params: &Params,
    tok: &TextTokenizer,
    vocab: &OutputVocab,
    ratio: f64,
    pages: &[Page],
    probes: &[Page],
) -> TrainResult<(RatioScore, Vec<String>)> {
    let id = WeightsIdentity { id: "training".into(), synthetic: false };
    let mut engine = DeepseekOcr::mini(cfg, params.detached_var_builder(), tok.clone(), vocab.clone(), id)?;
    engine.max_batch = pages.len().max(1);
    let mode = cfg.mode().map_err(|e| crate::error::TrainError::Other(e.to_string()))?;
    let longest = pages.iter().map(|p| p.target.len()).max().unwrap_or(0);
    let gen = GenerationConfig {
        max_new_tokens: (longest * 3 / 2 + 16).min(cfg.decoder.max_positions.saturating_sub(32)),
        ..GenerationConfig::hf_infer()
    };
    let batch: Vec<(&image::RgbImage, occ_core::Mode)> = pages.iter().map(|p| (&p.image, mode)).collect();
    let outs = engine.ocr(&batch, &Prompt::FreeOcr, &gen)?;
    let norm = Normalization::default();
    let mut total = 0.0;
    let mut stopped = 0usize;
    let mut texts = Vec::with_capacity(outs.len());
    for (p, o) in pages.iter().zip(&outs) {
        total += char_precision(&norm.apply(&p.text, Lang::En), &norm.apply(&o.text, Lang::En));
        stopped += usize::from(o.stopped_at_eos);
        texts.push(o.text.clone());
    }
    let n = pages.len().max(1) as f64;
    let prompt = reader_prompt(cfg, tok, vocab)?;
    let loss = mean_loss(cfg, params, &prompt, pages, 0)?;
    let loss_other_image = if pages.len() < 2 { f64::NAN } else { mean_loss(cfg, params, &prompt, pages, 1)? };
    let (probe_loss, probe_loss_other_image) = if probes.len() < 2 {
        (f64::NAN, f64::NAN)
    } else {
        (mean_loss(cfg, params, &prompt, probes, 0)?, mean_loss(cfg, params, &prompt, probes, 1)?)
    };
    let score = RatioScore {
        ratio,
        pages: pages.len(),
        char_precision: total / n,
        stopped: stopped as f64 / n,
        loss,
        loss_other_image,
        probe_loss,
        probe_loss_other_image,
    };
    Ok((score, texts))
}
