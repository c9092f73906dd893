//! SAM's window partitioning: zero-pad bottom/right to a multiple of the window, cut into windows,
//! and the inverse. The padded positions are *not* masked in attention, as in the reference
//! (docs/MODEL.md §4).

use candle_core::{Result, Tensor};

/// Padded grid sides of a window partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Padded {
    pub hp: usize,
    pub wp: usize,
}

/// # Shapes
/// `x`: (b, h, w, c) → (b · hp/ws · wp/ws, ws, ws, c), windows in row-major order per image.
pub fn window_partition(x: &Tensor, ws: usize) -> Result<(Tensor, Padded)> {
    let (b, h, w, c) = x.dims4()?;
    let pad_h = (ws - h % ws) % ws;
    let pad_w = (ws - w % ws) % ws;
    let x = if pad_h > 0 { x.pad_with_zeros(1, 0, pad_h)? } else { x.clone() };
    let x = if pad_w > 0 { x.pad_with_zeros(2, 0, pad_w)? } else { x };
    let (hp, wp) = (h + pad_h, w + pad_w);
    let windows = x.reshape((b, hp / ws, ws, wp / ws, ws, c))?.permute((0, 1, 3, 2, 4, 5))?.contiguous()?.reshape((
        b * (hp / ws) * (wp / ws),
        ws,
        ws,
        c,
    ))?;
    Ok((windows, Padded { hp, wp }))
}

/// Inverse of [`window_partition`], cropping the padding.
///
/// # Shapes
/// `windows`: (b · nw, ws, ws, c) → (b, h, w, c).
pub fn window_unpartition(windows: &Tensor, ws: usize, padded: Padded, h: usize, w: usize) -> Result<Tensor> {
    let Padded { hp, wp } = padded;
    let (n, _, _, c) = windows.dims4()?;
    let per_image = (hp / ws) * (wp / ws);
    if per_image == 0 || n % per_image != 0 {
        candle_core::bail!("window_unpartition: {n} windows do not split into images of {per_image} windows");
    }
    let b = n / per_image;
    let x = windows
        .reshape((b, hp / ws, wp / ws, ws, ws, c))?
        .permute((0, 1, 3, 2, 4, 5))?
        .contiguous()?
        .reshape((b, hp, wp, c))?;
    if hp > h || wp > w {
        x.narrow(1, 0, h)?.narrow(2, 0, w)?.contiguous()
    } else {
        Ok(x)
    }
}
