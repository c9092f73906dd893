//! DeepSeek-OCR-2 preprocessing, bit-identical to transformers' `DeepseekOcr2ImageProcessorPil`
//! (docs/MODEL.md §14.5).
//!
//! - Global view: `scale = S / max(w, h)` (f64), the image resized (Pillow BICUBIC, always, also when
//!   upscaling) to `(round(w·scale), round(h·scale))` with Python's half-to-even `round`, then pasted on
//!   an `S × S` canvas of grey 127 at offset `floor((S − new) / 2)` on the short axis. `S` = 1024 in
//!   [`Mode::V2`], 768 in [`Mode::V2Single`]. (v1's `ImageOps.pad` rounds the offset instead, so v1's
//!   [`crate::preprocess::pad_to_square_with`] is not reused.)
//! - Local tiles ([`Mode::V2`] only, when `max(w, h) > 768`): the grid of
//!   [`occ_core::mode::v2_grid`], the whole image resized to `(768·across, 768·down)` and cut into
//!   768² tiles in row-major order.
//! - Normalisation ([`normalize_chw_v2`]): `rescale` then `normalize` as the PIL backend does them:
//!   `f32(f64(u8) · (1/255))`, then `(x − 0.5) / 0.5` in f32.
//!
//! Resizes are [`crate::preprocess::resize_bicubic_with`] in a [`ResizeOrder`] (the Pillow version of
//! the reference run). transformers' default torchvision backend (`DeepseekOcr2ImageProcessor`)
//! resizes with torchvision instead and differs from Pillow by a few u8 steps on a small share of
//! pixels (docs/PARITY.md, "DeepSeek-OCR-2"); it is not reproduced.

use candle_core::{DType, Device, Result, Tensor};
use image::{Rgb, RgbImage};
use occ_core::mode::{v2_grid, V2_MAX_TILES, V2_MIN_TILES};
use occ_core::{GundamGrid, Mode};

use crate::preprocess::{resize_bicubic_with, PreparedImage, ResizeOrder, PAD_GREY};

fn err(msg: impl std::fmt::Display) -> candle_core::Error {
    candle_core::Error::Msg(msg.to_string())
}

/// The global view: fit the long side to `size`, paste on grey at the floored centre offset.
pub fn global_view(img: &RgbImage, size: u32, order: ResizeOrder) -> Result<RgbImage> {
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 || size == 0 {
        return Err(err(format!("cannot make a {size}² global view of a {w}x{h} image")));
    }
    let scale = f64::from(size) / f64::from(w.max(h));
    let nw = (f64::from(w) * scale).round_ties_even() as u32;
    let nh = (f64::from(h) * scale).round_ties_even() as u32;
    if nw == 0 || nh == 0 {
        return Err(err(format!("global view of a {w}x{h} image: a side rounds to 0 at scale {scale}")));
    }
    let resized = resize_bicubic_with(img, nw, nh, order)?;
    if nw == nh {
        return Ok(resized);
    }
    let side = nw.max(nh);
    let mut out = RgbImage::from_pixel(side, side, Rgb([PAD_GREY; 3]));
    let (x0, y0) = ((side - nw) / 2, (side - nh) / 2);
    image::imageops::replace(&mut out, &resized, i64::from(x0), i64::from(y0));
    Ok(out)
}

/// The views of `image` in a DeepSeek-OCR-2 mode (module docs), every resize in `order`.
pub fn prepare_v2(image: &RgbImage, mode: Mode, order: ResizeOrder) -> Result<PreparedImage> {
    if !mode.is_v2() {
        return Err(err(format!("prepare_v2: mode {mode} is a DeepSeek-OCR (v1) mode; use preprocess::prepare")));
    }
    let (w, h) = image.dimensions();
    if w == 0 || h == 0 {
        return Err(err(format!("cannot preprocess an empty image of {w}x{h}")));
    }
    let global = global_view(image, mode.global_view_size(), order)?;
    let mut tiles = Vec::new();
    let grid = if mode.crop() {
        let t = mode.image_size();
        let grid = v2_grid(w, h, t, V2_MIN_TILES, V2_MAX_TILES).map_err(|e| err(format!("v2 tiling: {e}")))?;
        if grid.has_tiles() {
            let big = resize_bicubic_with(image, t * grid.across, t * grid.down, order)?;
            for k in 0..grid.across * grid.down {
                let (col, row) = (k % grid.across, k / grid.across);
                tiles.push(image::imageops::crop_imm(&big, col * t, row * t, t, t).to_image());
            }
        }
        grid
    } else {
        GundamGrid::NONE
    };
    Ok(PreparedImage { mode, original_size: (w, h), global, tiles, grid })
}

/// The normalised value of one u8 channel value, as the PIL backend computes it (module docs).
pub fn normalize_value_v2(v: u8) -> f32 {
    let x = (f64::from(v) * (1.0 / 255.0)) as f32;
    (x - 0.5) / 0.5
}

/// An RGB image as normalised f32 CHW values ([`normalize_value_v2`] per channel value).
pub fn normalize_chw_v2(img: &RgbImage) -> Vec<f32> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut out = vec![0f32; 3 * w * h];
    for (i, px) in img.as_raw().chunks_exact(3).enumerate() {
        for (c, &v) in px.iter().enumerate() {
            out[c * w * h + i] = normalize_value_v2(v);
        }
    }
    out
}

/// Equal-sized views as one normalised tensor `(n, 3, s, s)` in `dtype` on `device`.
pub fn views_tensor_v2(views: &[&RgbImage], dtype: DType, device: &Device) -> Result<Tensor> {
    let Some(first) = views.first() else { candle_core::bail!("views_tensor_v2: no views") };
    let (w, h) = first.dimensions();
    let mut data = Vec::with_capacity(views.len() * 3 * (w * h) as usize);
    for v in views {
        if v.dimensions() != (w, h) {
            candle_core::bail!("views_tensor_v2: a {}×{} view among {w}×{h} ones", v.width(), v.height())
        }
        data.extend(normalize_chw_v2(v));
    }
    Tensor::from_vec(data, (views.len(), 3, h as usize, w as usize), device)?.to_dtype(dtype)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_view_offsets_are_floored() {
        // 600×848 → scale 1024/848: 724.53 → 725 wide, offset floor(299 / 2) = 149 (v1 pads at 150).
        let img = RgbImage::from_pixel(600, 848, Rgb([0, 0, 0]));
        let g = global_view(&img, 1024, ResizeOrder::Pillow13).unwrap();
        assert_eq!(g.dimensions(), (1024, 1024));
        assert_eq!(g.get_pixel(148, 500)[0], PAD_GREY);
        assert_eq!(g.get_pixel(149, 500)[0], 0);
        assert_eq!(g.get_pixel(149 + 724, 500)[0], 0);
        assert_eq!(g.get_pixel(149 + 725, 500)[0], PAD_GREY);
    }

    #[test]
    fn v1_modes_are_refused() {
        let img = RgbImage::new(10, 10);
        assert!(prepare_v2(&img, Mode::Base, ResizeOrder::Pillow12).is_err());
        let p = prepare_v2(&img, Mode::V2, ResizeOrder::Pillow12).unwrap();
        assert_eq!((p.global.dimensions(), p.tiles.len()), ((1024, 1024), 0));
        let p = prepare_v2(&img, Mode::V2Single, ResizeOrder::Pillow12).unwrap();
        assert_eq!(p.global.dimensions(), (768, 768));
    }
}
