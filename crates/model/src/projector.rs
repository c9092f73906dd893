//! The linear projector (`model.projector.layers`, docs/MODEL.md §6): concatenated CLIP + SAM features
//! (2048) → decoder width (1280).

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use crate::config::ProjectorConfig;
use crate::nn::linear::{dense, Dense};

/// `MlpProjector` with `projector_type = "linear"`: one `Linear(input_dim → n_embed, bias)`.
#[derive(Debug, Clone)]
pub struct Projector {
    layers: Dense,
}

impl Projector {
    /// `vb` points at `model.projector`.
    pub fn new(cfg: &ProjectorConfig, vb: VarBuilder<'_>) -> Result<Self> {
        Ok(Projector { layers: dense(cfg.input_dim, cfg.n_embed, vb.pp("layers"))? })
    }

    /// # Shapes
    /// `x`: (b, n, input_dim) → (b, n, n_embed).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.layers.forward(x)
    }
}
