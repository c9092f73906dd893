//! Key/value cache of the continuous-batching decoder: a fixed number of **slots**, each holding
//! one sequence at its own length.
//!
//! # Design
//! Every layer owns one preallocated `(2, slots, kv_heads, capacity, head_dim)` tensor (keys, then
//! values). A slot's sequence occupies columns `0..len`; its next token is written at column
//! `pos = len` by [`ops::kv_rope_write`](crate::ops::kv_rope_write) and attends to `0..=pos`. Slots are
//! independent: a finished sequence's slot is refilled by copying a newly prefilled prompt into
//! columns `0..prompt_len` ([`ops::kv_insert`](crate::ops::kv_insert)) while the other slots keep
//! their state. Nothing is shifted, and the cache is reallocated only when a sequence reaches its end
//! ([`SlotCache::grown`], doubling): between two growths every decode step has the same shapes and device
//! addresses (the precondition for capturing it in a CUDA graph; the batcher recaptures after a growth).

use candle_core::{DType, Device, Result, Tensor};

use super::cache::KvCache;

/// Per-layer slot caches.
#[derive(Debug)]
pub struct SlotCache {
    layers: Vec<Tensor>,
    slots: usize,
    capacity: usize,
}

impl SlotCache {
    /// Zeroed caches for `slots` sequences of at most `capacity` columns (prompt + generated).
    pub fn new(
        num_layers: usize,
        slots: usize,
        kv_heads: usize,
        capacity: usize,
        head_dim: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<SlotCache> {
        let layers = (0..num_layers)
            .map(|_| Tensor::zeros((2, slots, kv_heads, capacity, head_dim), dtype, device))
            .collect::<Result<Vec<_>>>()?;
        Ok(SlotCache { layers, slots, capacity })
    }

    pub fn slots(&self) -> usize {
        self.slots
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The cache tensor of `layer`.
    pub fn layer(&self, layer: usize) -> Result<&Tensor> {
        self.layers
            .get(layer)
            .ok_or_else(|| candle_core::Error::Msg(format!("slot cache: layer {layer} of {}", self.layers.len())))
    }

    /// Bytes held by all layers.
    pub fn bytes(&self) -> usize {
        self.layers.iter().map(|t| t.elem_count() * t.dtype().size_in_bytes()).sum()
    }

    /// The same slots with room for `capacity` columns: columns `0..self.capacity()` are copied, the
    /// rest is zero. (A grown cache has new device addresses: a captured decode step must be captured
    /// again.)
    pub fn grown(&self, capacity: usize) -> Result<SlotCache> {
        if capacity < self.capacity {
            candle_core::bail!("slot cache: cannot shrink from {} to {capacity} columns", self.capacity)
        }
        let layers = self
            .layers
            .iter()
            .map(|old| {
                let (two, slots, heads, _, d) = old.dims5()?;
                let new = Tensor::zeros((two, slots, heads, capacity, d), old.dtype(), old.device())?;
                new.slice_set(old, 3, 0)?;
                Ok(new)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(SlotCache { layers, slots: self.slots, capacity })
    }

    /// Copies row `row` of a prefilled (left-padded) [`KvCache`] into `slot`, columns `0..len`
    /// where `len` is the row's real length. Returns `len`.
    pub fn insert_from(&self, prefilled: &KvCache, row: usize, slot: usize) -> Result<usize> {
        let mut len = 0;
        for (layer, cache) in self.layers.iter().enumerate() {
            let (k, v) = prefilled.row_kv(layer, row)?; // (kv, len, d) each
            len = k.dim(1)?;
            if len > self.capacity {
                candle_core::bail!("slot cache: a prompt of {len} tokens exceeds the capacity of {}", self.capacity)
            }
            crate::ops::kv_insert(cache, &Tensor::stack(&[k, v], 0)?, slot)?;
        }
        Ok(len)
    }
}
