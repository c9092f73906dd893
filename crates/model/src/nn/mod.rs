//! Layers shared by the vision modules: attention, 2-D layer norm, position-table resampling,
//! window partitioning, activations and the stage probe used by parity tests.
//!
//! Exactly one implementation of each layer lives here, never a copy elsewhere; `sam.rs` and `clip.rs`
//! compose them.

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

/// Tensors derived from a module's weights for one input size (resized position tables, gathered
/// relative tables), computed once per key and kept: recomputing them uploads index and weight
/// matrices, and every upload waits for the device to drain its queue.
#[derive(Debug, Clone)]
pub struct Derived<K>(std::sync::Arc<std::sync::Mutex<std::collections::HashMap<K, Tensor>>>);

impl<K> Default for Derived<K> {
    fn default() -> Self {
        Derived(Default::default())
    }
}

impl<K: std::hash::Hash + Eq> Derived<K> {
    /// The tensor for `key`, made by `make` the first time.
    pub fn get_or(&self, key: K, make: impl FnOnce() -> Result<Tensor>) -> Result<Tensor> {
        let poisoned = |_| candle_core::Error::Msg("derived-tensor cache: a thread panicked while holding it".into());
        if let Some(t) = self.0.lock().map_err(poisoned)?.get(&key) {
            return Ok(t.clone());
        }
        let t = make()?;
        self.0.lock().map_err(poisoned)?.insert(key, t.clone());
        Ok(t)
    }
}
