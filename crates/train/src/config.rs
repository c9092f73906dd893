//! The training config (`experiments/train/<name>.toml`): the reader's architecture ([`MiniConfig`])
//! and how it is trained. Unknown fields are refused by name; [`TrainConfig::validate`] checks every
//! constraint before anything runs.

use std::path::{Path, PathBuf};

use occ_model::mini::MiniConfig;
use serde::{Deserialize, Serialize};

use crate::error::{TrainError, TrainResult};

/// A whole training config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// A short name (`mini-s`), used in run folders and reports.
    pub name: String,
    pub model: MiniConfig,
    pub data: DataConfig,
    pub optim: OptimConfig,
    #[serde(default)]
    pub eval: EvalConfig,
    #[serde(default)]
    pub run: RunConfig,
}

/// Where pages come from and how they are drawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Training passages: JSON Lines (optionally `.gz`) with `id` and `text`, relative to the
    /// repository root (or absolute).
    pub train: Vec<PathBuf>,
    /// Validation passages (same format); evaluation pages are drawn from these only.
    pub validation: PathBuf,
    /// Target compression ratios are drawn uniformly from `[lo, hi]`.
    pub ratios: [f64; 2],
    /// Share of pages whose text is a generated probe (shuffled words, random strings) rather than
    /// prose, so the encoder has to read instead of guess.
    #[serde(default = "default_probe_share")]
    pub probe_share: f64,
    /// Share of the decoder's teacher-forced input tokens replaced by the image placeholder (the
    /// labels stay the page's text). A decoder that can guess the next token from the previous
    /// ones learns the language first and ignores the image; hiding part of its input makes the
    /// page the only reliable source (word dropout against posterior collapse). 0 = off.
    #[serde(default)]
    pub input_dropout: f64,
    /// Line height (multiple of the font size), drawn uniformly from `[lo, hi]`.
    #[serde(default = "default_line_height")]
    pub line_height: [f32; 2],
    /// Margins as a share of the page side, drawn uniformly from `[lo, hi]`.
    #[serde(default = "default_margin")]
    pub margin: [f32; 2],
    /// Passages counted to choose the output vocabulary (its commonest ids).
    #[serde(default = "default_vocab_passages")]
    pub vocab_passages: usize,
    /// A curriculum (`[[data.stages]]`, in step order): while fewer than `until` steps are done,
    /// ratios are drawn from the stage's range (and micro-batches hold its `batch` pages, when
    /// given); after the last stage, `ratios` and `optim.batch` apply. Low ratios first let a
    /// reader learn glyphs on short pages before it has to compress.
    #[serde(default)]
    pub stages: Vec<Stage>,
}

/// One stage of the curriculum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// The stage applies to steps `s < until` (after the previous stage's `until`).
    pub until: usize,
    pub ratios: [f64; 2],
    /// Pages per micro-batch in this stage (short pages fit larger batches); default `optim.batch`.
    #[serde(default)]
    pub batch: Option<usize>,
    /// Share of probe pages in this stage; default `data.probe_share`. A first stage of probes
    /// only (shuffled words, random strings, which no language model can guess) makes the page
    /// the decoder's only source before it meets prose.
    #[serde(default)]
    pub probe_share: Option<f64>,
}

impl DataConfig {
    /// The stage step `step` (0-based, the step being computed) is in, if any.
    pub fn stage_at(&self, step: usize) -> Option<&Stage> {
        self.stages.iter().find(|s| step < s.until)
    }

    /// The ratio range of step `step`.
    pub fn ratios_at(&self, step: usize) -> [f64; 2] {
        self.stage_at(step).map_or(self.ratios, |s| s.ratios)
    }

    /// Pages per micro-batch of step `step`, given the default `batch`.
    pub fn batch_at(&self, step: usize, batch: usize) -> usize {
        self.stage_at(step).and_then(|s| s.batch).unwrap_or(batch)
    }

    /// The share of probe pages of step `step`.
    pub fn probe_share_at(&self, step: usize) -> f64 {
        self.stage_at(step).and_then(|s| s.probe_share).unwrap_or(self.probe_share)
    }
}

fn default_probe_share() -> f64 {
    0.15
}
fn default_line_height() -> [f32; 2] {
    [1.0, 1.5]
}
fn default_margin() -> [f32; 2] {
    [0.0, 0.08]
}
fn default_vocab_passages() -> usize {
    20_000
}

/// AdamW with linear warm-up and cosine decay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    /// Optimiser steps of the whole schedule.
    pub steps: usize,
    /// Pages per micro-batch.
    pub batch: usize,
    /// Micro-batches whose gradients are summed into one step.
    #[serde(default = "one")]
    pub accumulate: usize,
    pub lr: f64,
    /// The learning rate the cosine decays to.
    #[serde(default)]
    pub min_lr: f64,
    pub warmup_steps: usize,
    #[serde(default = "default_wd")]
    pub weight_decay: f64,
    #[serde(default = "default_betas")]
    pub betas: [f64; 2],
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// Global gradient-norm clip (0: none).
    #[serde(default = "one_f")]
    pub clip_norm: f64,
    /// A loss above this (or not finite) stops training at that step; the last good checkpoint
    /// stays.
    #[serde(default = "default_max_loss")]
    pub max_loss: f64,
    /// Weight of the auxiliary cell loss (0: off). Each vision token of a page is asked, through a
    /// linear head used only in training, which reader tokens are drawn in its cell of the page
    /// (the renderer knows where every line is): a loss that reaches the encoder directly instead
    /// of through a decoder that can guess prose without looking (docs/TRAINING.md, "Cell loss").
    #[serde(default)]
    pub cell_loss: f64,
}

fn one() -> usize {
    1
}
fn one_f() -> f64 {
    1.0
}
fn default_wd() -> f64 {
    0.01
}
fn default_betas() -> [f64; 2] {
    [0.9, 0.98]
}
fn default_eps() -> f64 {
    1e-8
}
fn default_max_loss() -> f64 {
    30.0
}

/// Validation during training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Evaluate every this many steps (0: only at the end).
    pub every: usize,
    /// Fixed ratios of the validation pages.
    pub ratios: Vec<f64>,
    /// Validation pages per ratio.
    pub pages: usize,
}

impl Default for EvalConfig {
    fn default() -> EvalConfig {
        EvalConfig { every: 500, ratios: vec![2.0, 5.0, 10.0], pages: 16 }
    }
}

/// Seeds, checkpoints and logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub seed: u64,
    /// Write a checkpoint every this many steps (and always at the end).
    pub checkpoint_every: usize,
    /// Log a line every this many steps.
    pub log_every: usize,
}

impl Default for RunConfig {
    fn default() -> RunConfig {
        RunConfig { seed: 1, checkpoint_every: 500, log_every: 10 }
    }
}

impl TrainConfig {
    /// Reads and validates a TOML config; paths in `data` are resolved against `root`.
    pub fn load(path: &Path, root: &Path) -> TrainResult<TrainConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        let mut cfg: TrainConfig =
            toml::from_str(&text).map_err(|e| TrainError::Config { path: path.into(), problem: e.to_string() })?;
        cfg.validate().map_err(|e| TrainError::Config { path: path.into(), problem: e.to_string() })?;
        let abs = |p: &PathBuf| if p.is_absolute() { p.clone() } else { root.join(p) };
        cfg.data.train = cfg.data.train.iter().map(abs).collect();
        cfg.data.validation = abs(&cfg.data.validation);
        Ok(cfg)
    }

    /// Checks every constraint, naming the field.
    pub fn validate(&self) -> TrainResult<()> {
        let bad = |field: &str, value: String, expected: &str| {
            Err(TrainError::Field { field: field.into(), value, expected: expected.into() })
        };
        self.model.validate().map_err(|e| TrainError::Field {
            field: "model".into(),
            value: String::new(),
            expected: e.to_string(),
        })?;
        let d = &self.data;
        if d.train.is_empty() {
            return bad("data.train", "[]".into(), "at least one passage file");
        }
        if !(d.ratios[0] > 0.0 && d.ratios[0] <= d.ratios[1] && d.ratios[1].is_finite()) {
            return bad("data.ratios", format!("{:?}", d.ratios), "[lo, hi] with 0 < lo <= hi");
        }
        let mut prev = 0;
        for (i, st) in d.stages.iter().enumerate() {
            let field = |f: &str| format!("data.stages[{i}].{f}");
            if st.until <= prev {
                return bad(&field("until"), st.until.to_string(), "steps increasing from stage to stage, above 0");
            }
            prev = st.until;
            if !(st.ratios[0] > 0.0 && st.ratios[0] <= st.ratios[1] && st.ratios[1].is_finite()) {
                return bad(&field("ratios"), format!("{:?}", st.ratios), "[lo, hi] with 0 < lo <= hi");
            }
            if st.batch == Some(0) {
                return bad(&field("batch"), "0".into(), "a positive page count");
            }
            if let Some(p) = st.probe_share.filter(|p| !(0.0..=1.0).contains(p)) {
                return bad(&field("probe_share"), p.to_string(), "a share in [0, 1]");
            }
        }
        if !(0.0..=1.0).contains(&d.probe_share) {
            return bad("data.probe_share", d.probe_share.to_string(), "a share in [0, 1]");
        }
        if !(0.0..0.95).contains(&d.input_dropout) {
            return bad("data.input_dropout", d.input_dropout.to_string(), "a share in [0, 0.95)");
        }
        if !(d.line_height[0] >= 0.8 && d.line_height[0] <= d.line_height[1] && d.line_height[1] <= 3.0) {
            return bad("data.line_height", format!("{:?}", d.line_height), "[lo, hi] within [0.8, 3]");
        }
        if !(d.margin[0] >= 0.0 && d.margin[0] <= d.margin[1] && d.margin[1] < 0.3) {
            return bad("data.margin", format!("{:?}", d.margin), "[lo, hi] within [0, 0.3)");
        }
        let o = &self.optim;
        if o.steps == 0 || o.batch == 0 || o.accumulate == 0 {
            return bad(
                "optim.steps/batch/accumulate",
                format!("{}/{}/{}", o.steps, o.batch, o.accumulate),
                "positive",
            );
        }
        if !(o.lr > 0.0 && o.lr.is_finite() && o.min_lr >= 0.0 && o.min_lr <= o.lr) {
            return bad("optim.lr", format!("{} (min_lr {})", o.lr, o.min_lr), "0 < min_lr <= lr");
        }
        if !(0.0..1.0).contains(&o.betas[0]) || !(0.0..1.0).contains(&o.betas[1]) {
            return bad("optim.betas", format!("{:?}", o.betas), "each in [0, 1)");
        }
        let nonneg = |v: f64| v.is_finite() && v >= 0.0;
        for (field, v, ok, expected) in [
            ("optim.eps", o.eps, o.eps.is_finite() && o.eps > 0.0, "a finite number > 0"),
            ("optim.weight_decay", o.weight_decay, nonneg(o.weight_decay), "a finite number >= 0"),
            ("optim.clip_norm", o.clip_norm, nonneg(o.clip_norm), "a finite number >= 0 (0: no clipping)"),
            ("optim.max_loss", o.max_loss, o.max_loss > 0.0, "a number > 0 (inf: never stop on the loss)"),
            ("optim.cell_loss", o.cell_loss, nonneg(o.cell_loss), "a finite number >= 0 (0: off)"),
        ] {
            if !ok {
                return bad(field, v.to_string(), expected);
            }
        }
        if self.eval.ratios.iter().any(|r| !(r.is_finite() && *r > 0.0)) {
            return bad("eval.ratios", format!("{:?}", self.eval.ratios), "positive ratios");
        }
        if self.run.checkpoint_every == 0 || self.run.log_every == 0 {
            return bad("run.checkpoint_every/log_every", "0".into(), "positive");
        }
        Ok(())
    }

    /// A stable fingerprint of the architecture (a checkpoint of another architecture is refused).
    pub fn model_fingerprint(&self) -> String {
        use sha2::Digest;
        let json = serde_json::to_string(&self.model).unwrap_or_default();
        let digest = sha2::Sha256::digest(json.as_bytes());
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}
