//! SwiGLU MLP (`DeepseekV2MLP`): the dense layers and the shared experts.

use candle_core::{Module, Result, Tensor};
use candle_nn::{linear_no_bias, Linear, VarBuilder};

use crate::ops::swiglu;

/// `down(silu(gate(x)) ⊙ up(x))`, no biases. `gate_proj` and `up_proj` are concatenated at load
/// into one `(2 · intermediate, hidden)` projection, so the forward is two matmuls and one fused
/// [`swiglu`].
#[derive(Debug, Clone)]
pub struct Mlp {
    gate_up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    pub fn new(hidden: usize, intermediate: usize, vb: VarBuilder<'_>) -> Result<Mlp> {
        let gate = linear_no_bias(hidden, intermediate, vb.pp("gate_proj"))?;
        let up = linear_no_bias(hidden, intermediate, vb.pp("up_proj"))?;
        let gate_up = Tensor::cat(&[gate.weight(), up.weight()], 0)?;
        Ok(Mlp {
            gate_up_proj: Linear::new(gate_up, None),
            down_proj: linear_no_bias(intermediate, hidden, vb.pp("down_proj"))?,
        })
    }

    /// An MLP from already fused weights: `gate_up` `(2 · intermediate, hidden)`, `down` `(hidden,
    /// intermediate)` (views of the stacked expert tensors).
    pub fn from_fused(gate_up: Tensor, down: Tensor) -> Mlp {
        Mlp { gate_up_proj: Linear::new(gate_up, None), down_proj: Linear::new(down, None) }
    }
}

impl Module for Mlp {
    /// # Shapes
    /// `(…, hidden)` → `(…, hidden)`.
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.down_proj.forward(&swiglu(&self.gate_up_proj.forward(xs)?)?)
    }
}
