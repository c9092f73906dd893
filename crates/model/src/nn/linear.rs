//! `nn.Linear` of the vision encoder, with its bias, activation and residual add fused into one
//! pass after the matrix product ([`crate::ops::bias_act`]).

use candle_core::{Result, Tensor, D};
use candle_nn::VarBuilder;

use crate::ops::{bias_act, Act};

/// `weight` `(out, in)` and `bias` `(out)`, as the checkpoint stores them.
#[derive(Debug, Clone)]
pub struct Dense {
    weight: Tensor,
    bias: Tensor,
}

/// Loads `weight` and `bias` of a linear layer `in_dim → out_dim` from `vb`.
pub fn dense(in_dim: usize, out_dim: usize, vb: VarBuilder<'_>) -> Result<Dense> {
    Ok(Dense { weight: vb.get((out_dim, in_dim), "weight")?, bias: vb.get(out_dim, "bias")? })
}

impl Dense {
    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    /// `x · weightᵀ` without the bias, as one 2-D product over all leading dimensions.
    ///
    /// # Shapes
    /// `x`: `(…, in)` → `(…, out)`.
    fn matmul(&self, x: &Tensor) -> Result<Tensor> {
        let in_dim = x.dim(D::Minus1)?;
        let mut dims = x.dims().to_vec();
        let rows = x.elem_count() / in_dim.max(1);
        let y = x.contiguous()?.reshape((rows, in_dim))?.matmul(&self.weight.t()?)?;
        if let Some(last) = dims.last_mut() {
            *last = self.weight.dim(0)?;
        }
        y.reshape(dims)
    }

    /// `round(x · weightᵀ + bias)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_with(x, Act::None, None)
    }

    /// `residual + act(x · weightᵀ + bias)`, each step rounded to the dtype as the reference's separate ops.
    pub fn forward_with(&self, x: &Tensor, act: Act, residual: Option<&Tensor>) -> Result<Tensor> {
        bias_act(&self.matmul(x)?, &self.bias, act, residual)
    }
}
