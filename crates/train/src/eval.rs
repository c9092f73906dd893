//! Validation during training: validation-split pages at fixed ratios, read greedily by the reader
//! through the inference engine (the same `DeepseekOcr` path `--engine mini` uses), scored with the
//! sweep's normalisation and character precision (1 − normalised edit distance).

use occ_core::{Prompt, TextTokenizer};
use occ_eval::metrics::char_precision;
use occ_eval::{Lang, Normalization};
use occ_model::generate::GenerationConfig;
use occ_model::mini::{MiniConfig, OutputVocab};
use occ_model::pipeline::{DeepseekOcr, WeightsIdentity};
use serde::Serialize;

use crate::data::Page;
use crate::error::TrainResult;
use crate::model::Params;

/// Precision at one ratio.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RatioScore {
    pub ratio: f64,
    pub pages: usize,
    /// Mean character precision.
    pub char_precision: f64,
    /// Share of pages whose output stopped at EOS (not at the token budget).
    pub stopped: f64,
}

/// Reads `pages` with the current weights and scores them.
pub fn evaluate(
    cfg: &MiniConfig,
    params: &Params,
    tok: &TextTokenizer,
    vocab: &OutputVocab,
    ratio: f64,
    pages: &[Page],
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
    Ok((RatioScore { ratio, pages: pages.len(), char_precision: total / n, stopped: stopped as f64 / n }, texts))
}
