//! Resampling of learned position tables, as PyTorch's `F.interpolate` does it (docs/MODEL.md §4–5).
//!
//! Both resamplings are linear maps along one axis, so they are built once as `(out, in)` weight
//! matrices on the host (in f64, rounded to f32) and applied with matmuls on the tables' device:
//!
//! - [`bicubic_aa_matrix`]: `mode='bicubic', antialias=True, align_corners=False` (PyTorch's
//!   `_upsample_bicubic2d_aa`): Pillow-style cubic kernel a = −0.5, support `2·max(1, in/out)`,
//!   centre `(i + 0.5)·in/out`, taps `[⌊centre − support + 0.5⌋, ⌊centre + support + 0.5⌋)` clamped,
//!   weights normalised per output.
//! - [`linear_matrix`]: `mode='linear', align_corners=False`, no antialias: source
//!   `max((i + 0.5)·in/out − 0.5, 0)`, two taps.

use candle_core::{DType, Device, Result, Tensor};

/// Keys' cubic convolution kernel with a = −0.5, support 2: the kernel of both Pillow's BICUBIC
/// (`bicubic_filter`) and PyTorch's antialiased bicubic interpolation.
pub(crate) fn cubic_kernel(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Row-major `(out, in)` weights of antialiased bicubic resampling of one axis.
pub fn bicubic_aa_matrix(input: usize, output: usize) -> Vec<f32> {
    let scale = input as f64 / output as f64;
    let support = if scale >= 1.0 { 2.0 * scale } else { 2.0 };
    let invscale = if scale >= 1.0 { 1.0 / scale } else { 1.0 };
    let mut m = vec![0f32; output * input];
    let mut w = Vec::new();
    for i in 0..output {
        let center = scale * (i as f64 + 0.5);
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(input as i64).max(xmin as i64) as usize;
        w.clear();
        w.extend((xmin..xmax).map(|j| cubic_kernel((j as f64 - center + 0.5) * invscale)));
        let total: f64 = w.iter().sum();
        for (j, wj) in (xmin..xmax).zip(&w) {
            m[i * input + j] = if total != 0.0 { (wj / total) as f32 } else { *wj as f32 };
        }
    }
    m
}

/// Row-major `(out, in)` weights of linear resampling (`align_corners=False`) of one axis, computed
/// in f32 like PyTorch's CPU kernel (scale, source index and lambda are f32 there).
pub fn linear_matrix(input: usize, output: usize) -> Vec<f32> {
    let scale = input as f32 / output as f32;
    let mut m = vec![0f32; output * input];
    for i in 0..output {
        let src = (scale * (i as f32 + 0.5) - 0.5).max(0.0);
        let i0 = (src.floor() as usize).min(input - 1);
        let i1 = if i0 < input - 1 { i0 + 1 } else { i0 };
        let l1 = (src - i0 as f32).clamp(0.0, 1.0);
        m[i * input + i0] += 1.0 - l1;
        m[i * input + i1] += l1;
    }
    m
}

fn matrix(values: Vec<f32>, output: usize, input: usize, device: &Device) -> Result<Tensor> {
    Tensor::from_vec(values, (output, input), &Device::Cpu)?.to_device(device)
}

/// Resizes a channels-last grid table with antialiased bicubic, computed in f32 and cast back to
/// the table's dtype (the reference's `get_abs_pos_sam` / `get_abs_pos`). Width axis first.
///
/// # Shapes
/// `table`: (h, w, c) → (out_h, out_w, c).
pub fn resize_grid_bicubic_aa(table: &Tensor, out_h: usize, out_w: usize) -> Result<Tensor> {
    let (h, w, c) = table.dims3()?;
    if (h, w) == (out_h, out_w) {
        return Ok(table.clone());
    }
    let dtype = table.dtype();
    let dev = table.device();
    let t = table.to_dtype(DType::F32)?;
    let mw = matrix(bicubic_aa_matrix(w, out_w), out_w, w, dev)?; // (out_w, w)
    let mh = matrix(bicubic_aa_matrix(h, out_h), out_h, h, dev)?; // (out_h, h)
                                                                  // Width: (h, c, w) · (w, out_w) → (h, c, out_w).
    let t = t.permute((0, 2, 1))?.contiguous()?.broadcast_matmul(&mw.t()?)?;
    // Height: (out_h, h) · (h, c·out_w) → (out_h, c·out_w).
    let t = mh.matmul(&t.reshape((h, c * out_w))?)?;
    t.reshape((out_h, c, out_w))?.permute((0, 2, 1))?.contiguous()?.to_dtype(dtype)
}

/// Resizes the rows of a table with linear interpolation in f32, cast back to its dtype
/// (`get_rel_pos`'s `F.interpolate(mode="linear")`).
///
/// # Shapes
/// `table`: (rows, c) → (out_rows, c).
pub fn resize_rows_linear(table: &Tensor, out_rows: usize) -> Result<Tensor> {
    let (rows, _c) = table.dims2()?;
    if rows == out_rows {
        return Ok(table.clone());
    }
    let dtype = table.dtype();
    let m = matrix(linear_matrix(rows, out_rows), out_rows, rows, table.device())?;
    m.matmul(&table.to_dtype(DType::F32)?)?.to_dtype(dtype)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_sum_to_one() {
        for (i, o) in [(64, 32), (64, 40), (64, 80), (16, 8), (16, 10), (16, 20), (4, 2), (4, 7)] {
            let m = bicubic_aa_matrix(i, o);
            for r in 0..o {
                let s: f32 = m[r * i..(r + 1) * i].iter().sum();
                assert!((s - 1.0).abs() < 1e-6, "bicubic {i}->{o} row {r}: {s}");
            }
        }
        for (i, o) in [(127, 63), (127, 79), (127, 159), (27, 27), (5, 3)] {
            let m = linear_matrix(i, o);
            for r in 0..o {
                let s: f32 = m[r * i..(r + 1) * i].iter().sum();
                assert!((s - 1.0).abs() < 1e-6, "linear {i}->{o} row {r}: {s}");
            }
        }
    }

    #[test]
    fn halving_is_a_symmetric_eight_tap_filter() {
        // 16 → 8, output 3: centre 7, support 4, taps j = 3..=10 at (j − 7 + 0.5) / 2 = ±0.25 … ±1.75.
        let m = bicubic_aa_matrix(16, 8);
        let k = [cubic_kernel(1.75), cubic_kernel(1.25), cubic_kernel(0.75), cubic_kernel(0.25)];
        let total = 2.0 * k.iter().sum::<f64>();
        let taps = [k[0], k[1], k[2], k[3], k[3], k[2], k[1], k[0]];
        let mut want = [0f32; 16];
        for (j, t) in taps.iter().enumerate() {
            want[3 + j] = (t / total) as f32;
        }
        assert_eq!(&m[3 * 16..4 * 16], &want[..]);
    }

    #[test]
    fn linear_downscale_by_two_averages_pairs() {
        // 4 → 2: sources 0.5 and 2.5.
        assert_eq!(linear_matrix(4, 2), [0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 0.5, 0.5]);
    }
}
