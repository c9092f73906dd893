//! The decode step's bookkeeping on the device: [`apply_ban`] (repetition blockers), [`argmax_rows`]
//! (the greedy choice), [`advance`] (`pos += 1` for every slot) and [`write_u32`] (host values into a
//! persistent buffer, the inputs of a captured CUDA graph).

use candle_core::{CpuStorage, Layout, Result, Shape, Tensor};

#[cfg(feature = "cuda")]
use super::cuda;
use super::elem::{contiguous, contiguous_mut, u32s};

/// Entries of a ban row that mean "nothing" (any id ≥ the vocabulary is ignored).
pub const NO_BAN: u32 = u32::MAX;

struct ApplyBan;

impl candle_core::InplaceOp2 for ApplyBan {
    fn name(&self) -> &'static str {
        "occ-apply-ban"
    }

    fn cpu_fwd(&self, dst: &mut CpuStorage, dst_l: &Layout, ban: &CpuStorage, ban_l: &Layout) -> Result<()> {
        let (rows, vocab) = dst_l.shape().dims2()?;
        let ban = u32s(ban, ban_l, "apply_ban ids")?;
        let CpuStorage::F32(logits) = dst else { candle_core::bail!("apply_ban: logits must be f32") };
        let logits = contiguous_mut(logits, dst_l, "apply_ban logits")?;
        let per = ban.len().checked_div(rows).unwrap_or(0);
        for (i, &id) in ban.iter().enumerate() {
            if (id as usize) < vocab && per > 0 {
                logits[(i / per) * vocab + id as usize] = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        dst: &mut candle_core::CudaStorage,
        dst_l: &Layout,
        ban: &candle_core::CudaStorage,
        ban_l: &Layout,
    ) -> Result<()> {
        cuda::apply_ban(dst, dst_l, ban, ban_l)
    }
}

/// Sets `logits[r, ban[r, i]] = −∞` for every entry below the vocabulary size ([`NO_BAN`] pads).
///
/// # Shapes
/// `logits`: `(rows, vocab)` f32, in place; `ban`: `(rows, max_ban)` u32.
pub fn apply_ban(logits: &Tensor, ban: &Tensor) -> Result<()> {
    let (rows, _) = logits.dims2()?;
    if ban.dims().first() != Some(&rows) || ban.rank() != 2 {
        candle_core::bail!("apply_ban: ban ids {:?} for {rows} rows of logits", ban.dims())
    }
    logits.inplace_op2(ban, &ApplyBan)
}

struct ArgmaxRows;

impl candle_core::CustomOp1 for ArgmaxRows {
    fn name(&self) -> &'static str {
        "occ-argmax-rows"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (rows, n) = l.shape().dims2()?;
        let CpuStorage::F32(v) = s else { candle_core::bail!("argmax_rows: expected f32") };
        let v = contiguous(v, l, "argmax_rows input")?;
        let out: Vec<u32> = (0..rows)
            .map(|r| {
                let row = &v[r * n..(r + 1) * n];
                let mut best: Option<(usize, f32)> = None;
                for (i, &x) in row.iter().enumerate() {
                    if x.is_nan() {
                        continue;
                    }
                    if best.is_none_or(|(_, b)| x > b) {
                        best = Some((i, x));
                    }
                }
                best.map_or(0, |b| b.0 as u32)
            })
            .collect();
        Ok((CpuStorage::U32(out), Shape::from(rows)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &candle_core::CudaStorage, l: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        let (rows, _) = l.shape().dims2()?;
        Ok((cuda::argmax(s, l)?, Shape::from(rows)))
    }
}

/// Index of the first maximum of every row (NaN never wins; an all-NaN row gives 0).
///
/// # Shapes
/// `(rows, n)` float32 → `(rows,)` u32.
pub fn argmax_rows(xs: &Tensor) -> Result<Tensor> {
    xs.contiguous()?.apply_op1_no_bwd(&ArgmaxRows)
}

struct Advance;

impl candle_core::InplaceOp1 for Advance {
    fn name(&self) -> &'static str {
        "occ-advance"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> Result<()> {
        let CpuStorage::U32(v) = s else { candle_core::bail!("advance: positions must be u32") };
        contiguous_mut(v, l, "advance positions")?.iter_mut().for_each(|p| *p += 1);
        Ok(())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &mut candle_core::CudaStorage, l: &Layout) -> Result<()> {
        cuda::advance(s, l)
    }
}

/// `pos += 1` on the device (u32, contiguous).
pub fn advance(pos: &Tensor) -> Result<()> {
    pos.inplace_op1(&Advance)
}

struct WriteU32<'a>(&'a [u32]);

impl candle_core::InplaceOp1 for WriteU32<'_> {
    fn name(&self) -> &'static str {
        "occ-write-u32"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> Result<()> {
        let CpuStorage::U32(v) = s else { candle_core::bail!("write_u32: the buffer must be u32") };
        let v = contiguous_mut(v, l, "write_u32 buffer")?;
        if v.len() != self.0.len() {
            candle_core::bail!("write_u32: {} values for a buffer of {}", self.0.len(), v.len())
        }
        v.copy_from_slice(self.0);
        Ok(())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &mut candle_core::CudaStorage, l: &Layout) -> Result<()> {
        cuda::write_u32(s, l, self.0)
    }
}

/// Copies host values into an existing u32 buffer (its device address does not change, so a
/// captured CUDA graph reading it sees the new values).
pub fn write_u32(buf: &Tensor, values: &[u32]) -> Result<()> {
    buf.inplace_op1(&WriteU32(values))
}
