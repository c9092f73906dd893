//! Layers shared by the vision modules: attention, 2-D layer norm, position-table resampling,
//! window partitioning, activations and the stage probe used by parity tests.
//!
//! Exactly one implementation of each lives here (style guide §4.1); `sam.rs` and `clip.rs` compose
//! them.

pub mod attention;
pub mod interpolate;
pub mod linear;
pub mod norm;
pub mod window;

use candle_core::{Result, Tensor};

/// A stage probe: called with a stage name (`"sam.blocks.3"`, `"clip.layers.23"`, …) and the
/// tensor that stage produced, in the reference's layout. Parity tests record or compare; the
/// plain `forward` paths pass [`no_probe`].
pub type Probe<'a> = &'a mut dyn FnMut(&str, &Tensor) -> Result<()>;

/// A probe that ignores every stage.
pub fn no_probe(_: &str, _: &Tensor) -> Result<()> {
    Ok(())
}

/// `x · sigmoid(1.702 x)` (CLIP's `quick_gelu`).
pub fn quick_gelu(x: &Tensor) -> Result<Tensor> {
    x.mul(&candle_nn::ops::sigmoid(&(x * 1.702)?)?)
}
