//! SwiGLU MLP (`DeepseekV2MLP`): the dense layers, every routed expert and the shared experts.

use candle_core::{Module, Result, Tensor};
use candle_nn::{linear_no_bias, Linear, VarBuilder};

/// `down(silu(gate(x)) ⊙ up(x))`, no biases.
#[derive(Debug, Clone)]
pub struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    pub fn new(hidden: usize, intermediate: usize, vb: VarBuilder<'_>) -> Result<Mlp> {
        Ok(Mlp {
            gate_proj: linear_no_bias(hidden, intermediate, vb.pp("gate_proj"))?,
            up_proj: linear_no_bias(hidden, intermediate, vb.pp("up_proj"))?,
            down_proj: linear_no_bias(intermediate, hidden, vb.pp("down_proj"))?,
        })
    }
}

impl Module for Mlp {
    /// # Shapes
    /// `(…, hidden)` → `(…, hidden)`.
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let gate = candle_nn::ops::silu(&self.gate_proj.forward(xs)?)?;
        self.down_proj.forward(&(gate * self.up_proj.forward(xs)?)?)
    }
}
