//! Key/value cache of a batch of left-padded sequences.
//!
//! # Batching design
//! Sequences of different prompt lengths are **left-padded** to a common length: column `j` of row
//! `b` is a pad when `j < left_pad[b]`. Every row then appends its next token at the same column,
//! so one decode step is one `(batch, 1)` forward. The pads are invisible:
//! - rotary positions count from each row's first real token (`position = column − left_pad`), so a
//!   padded row sees exactly the positions it would see alone;
//! - attention masks every pad key; a pad *query* attends only to itself, so its (ignored) output
//!   stays finite and no NaN can reach real rows through `0 · NaN` in the value product.
//!
//! Rows that finish (EOS or their own token budget) are dropped with [`KvCache::retain`].

use candle_core::{DType, Device, Result, Tensor};

/// Per-layer keys and values, preallocated and grown by doubling.
#[derive(Debug, Clone)]
struct LayerKv {
    /// `(batch, kv_heads, capacity, head_dim)`
    k: Tensor,
    v: Tensor,
}

/// The cache of all layers plus the batch's padding layout.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<Option<LayerKv>>,
    /// Columns held (pads included), equal for every row.
    len: usize,
    left_pad: Vec<usize>,
}

impl KvCache {
    /// An empty cache for `num_layers` layers and rows with the given left padding.
    pub fn new(num_layers: usize, left_pad: Vec<usize>) -> KvCache {
        KvCache { layers: vec![None; num_layers], len: 0, left_pad }
    }

    /// An empty cache for `batch` unpadded rows.
    pub fn unpadded(num_layers: usize, batch: usize) -> KvCache {
        KvCache::new(num_layers, vec![0; batch])
    }

    /// Columns held so far (the `seqlen_offset` of the next forward).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn batch(&self) -> usize {
        self.left_pad.len()
    }

    pub fn left_pad(&self) -> &[usize] {
        &self.left_pad
    }

    /// Rotary position of every new column `len..len + q_len` of every row, row-major.
    pub fn positions(&self, q_len: usize) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.batch() * q_len);
        for &pad in &self.left_pad {
            for col in self.len..self.len + q_len {
                out.push(col.saturating_sub(pad) as u32);
            }
        }
        out
    }

    /// The additive float32 attention mask of the next `q_len` columns: `(batch, 1, q_len, len +
    /// q_len)` with 0 where a query may look and −∞ elsewhere, or `None` when nothing is masked (one
    /// query per unpadded row).
    pub fn mask(&self, q_len: usize, device: &Device) -> Result<Option<Tensor>> {
        let padded = self.left_pad.iter().any(|&p| p > 0);
        if q_len == 1 && !padded {
            return Ok(None);
        }
        let k_len = self.len + q_len;
        let rows = if padded { self.batch() } else { 1 };
        let mut data = vec![0f32; rows * q_len * k_len];
        for (r, &pad) in self.left_pad.iter().take(rows).enumerate() {
            let pad = if padded { pad } else { 0 };
            for i in 0..q_len {
                let qcol = self.len + i;
                let row = &mut data[(r * q_len + i) * k_len..(r * q_len + i + 1) * k_len];
                for (j, m) in row.iter_mut().enumerate() {
                    let visible = j <= qcol && (j >= pad || j == qcol);
                    if !visible {
                        *m = f32::NEG_INFINITY;
                    }
                }
            }
        }
        Ok(Some(Tensor::from_vec(data, (rows, 1, q_len, k_len), device)?))
    }

    /// Appends the new keys and values of `layer` and returns the full ones.
    ///
    /// # Shapes
    /// `k`, `v`: `(batch, kv_heads, q_len, head_dim)` → `(batch, kv_heads, len + q_len, head_dim)`.
    pub fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, h, q_len, d) = k.dims4()?;
        if b != self.batch() {
            candle_core::bail!("kv cache: batch of the new keys is {b}, the cache holds {} rows", self.batch())
        }
        let n_layers = self.layers.len();
        let len = self.len;
        let slot = self
            .layers
            .get_mut(layer)
            .ok_or_else(|| candle_core::Error::Msg(format!("kv cache: layer {layer} of {n_layers}")))?;
        let needed = len + q_len;
        let grow = |old: Option<&Tensor>, dtype: DType, device: &Device, cap: usize| -> Result<Tensor> {
            let fresh = Tensor::zeros((b, h, cap, d), dtype, device)?;
            match old {
                Some(old) if len > 0 => {
                    fresh.slice_assign(&[0..b, 0..h, 0..len, 0..d], &old.narrow(2, 0, len)?.contiguous()?)
                }
                _ => Ok(fresh),
            }
        };
        let current_cap = slot.as_ref().map_or(0, |kv| kv.k.dim(2).unwrap_or(0));
        if current_cap < needed {
            let cap = needed.max(2 * current_cap).max(64);
            let nk = grow(slot.as_ref().map(|kv| &kv.k), k.dtype(), k.device(), cap)?;
            let nv = grow(slot.as_ref().map(|kv| &kv.v), v.dtype(), v.device(), cap)?;
            *slot = Some(LayerKv { k: nk, v: nv });
        }
        let kv = slot.as_mut().ok_or_else(|| candle_core::Error::Msg("kv cache: layer not allocated".into()))?;
        kv.k.slice_set(&k.contiguous()?, 2, len)?;
        kv.v.slice_set(&v.contiguous()?, 2, len)?;
        if len == 0 && crate::ops::tracks_grad(&[k, v]) {
            // training: the in-place write above is invisible to autograd; the new keys and values
            // are the whole cache, so they are returned themselves
            return Ok((k.clone(), v.clone()));
        }
        Ok((kv.k.narrow(2, 0, needed)?, kv.v.narrow(2, 0, needed)?))
    }

    /// Marks `q_len` columns as appended by every layer (called once per forward, after the layers).
    pub fn advance(&mut self, q_len: usize) {
        self.len += q_len;
    }

    /// The real (unpadded) keys and values of `row` in `layer`: `(kv_heads, len, head_dim)` each.
    pub fn row_kv(&self, layer: usize, row: usize) -> Result<(Tensor, Tensor)> {
        let pad = *self
            .left_pad
            .get(row)
            .ok_or_else(|| candle_core::Error::Msg(format!("kv cache: row {row} of {}", self.batch())))?;
        let kv = self
            .layers
            .get(layer)
            .and_then(|l| l.as_ref())
            .ok_or_else(|| candle_core::Error::Msg(format!("kv cache: layer {layer} holds nothing")))?;
        let take = |t: &Tensor| t.get(row)?.narrow(1, pad, self.len - pad);
        Ok((take(&kv.k)?, take(&kv.v)?))
    }

    /// Keeps only the rows `keep` (in that order), e.g. to drop finished sequences.
    pub fn retain(&mut self, keep: &[usize]) -> Result<()> {
        if let Some(&bad) = keep.iter().find(|&&r| r >= self.batch()) {
            candle_core::bail!("kv cache: row {bad} to keep is out of the batch of {}", self.batch())
        }
        let Some(device) = self.layers.iter().flatten().next().map(|kv| kv.k.device().clone()) else {
            self.left_pad = keep.iter().map(|&r| self.left_pad[r]).collect();
            return Ok(());
        };
        let idx = Tensor::from_vec(keep.iter().map(|&r| r as u32).collect::<Vec<_>>(), keep.len(), &device)?;
        for kv in self.layers.iter_mut().flatten() {
            kv.k = kv.k.index_select(&idx, 0)?;
            kv.v = kv.v.index_select(&idx, 0)?;
        }
        self.left_pad = keep.iter().map(|&r| self.left_pad[r]).collect();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask_rows(c: &KvCache, q_len: usize) -> Vec<Vec<Vec<bool>>> {
        let m = c.mask(q_len, &Device::Cpu).unwrap().unwrap();
        let m = m.squeeze(1).unwrap().to_vec3::<f32>().unwrap();
        m.into_iter().map(|r| r.into_iter().map(|q| q.into_iter().map(|x| x == 0.0).collect()).collect()).collect()
    }

    #[test]
    fn padded_prefill_mask_and_positions() {
        let c = KvCache::new(1, vec![2, 0]);
        assert_eq!(c.positions(4), [0, 0, 0, 1, 0, 1, 2, 3]);
        let m = mask_rows(&c, 4);
        let t = true;
        let f = false;
        // row 0: columns 0, 1 are pads; pad queries see only themselves
        assert_eq!(m[0], [[t, f, f, f], [f, t, f, f], [f, f, t, f], [f, f, t, t]]);
        assert_eq!(m[1], [[t, f, f, f], [t, t, f, f], [t, t, t, f], [t, t, t, t]]);
    }

    #[test]
    fn decode_mask_hides_pads_only() {
        let mut c = KvCache::new(1, vec![1, 0]);
        c.advance(3);
        assert_eq!(c.positions(1), [2, 3]);
        let m = mask_rows(&c, 1);
        assert_eq!(m[0], [[false, true, true, true]]);
        assert_eq!(m[1], [[true, true, true, true]]);
        let c = KvCache::unpadded(1, 2);
        assert!(c.mask(1, &Device::Cpu).unwrap().is_none());
    }

    #[test]
    fn append_grows_and_retain_selects_rows() -> Result<()> {
        let dev = Device::Cpu;
        let mut c = KvCache::unpadded(1, 2);
        let k = Tensor::arange(0f32, 2. * 3. * 2., &dev)?.reshape((2, 1, 3, 2))?;
        let (ka, _) = c.append(0, &k, &k)?;
        c.advance(3);
        assert_eq!(ka.squeeze(1)?.to_vec3::<f32>()?, k.squeeze(1)?.to_vec3::<f32>()?);
        for step in 0..70 {
            let k1 = Tensor::full(step as f32, (2, 1, 1, 2), &dev)?;
            let (ka, _) = c.append(0, &k1, &k1)?;
            c.advance(1);
            assert_eq!(ka.dim(2)?, 4 + step);
        }
        c.retain(&[1])?;
        let (ka, _) = c.append(
            0,
            &Tensor::zeros((1, 1, 1, 2), DType::F32, &dev)?,
            &Tensor::zeros((1, 1, 1, 2), DType::F32, &dev)?,
        )?;
        let first = ka.get(0)?.get(0)?.get(0)?.to_vec1::<f32>()?;
        assert_eq!(first, [6.0, 7.0], "row 1 kept");
        Ok(())
    }
}
