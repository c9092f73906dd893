//! Image preprocessing, bit-identical to the reference (docs/MODEL.md §3).
//!
//! - [`load_image`]: decode, apply the EXIF orientation (`ImageOps.exif_transpose`), convert to RGB.
//! - [`resize_bicubic_with`]: Pillow's `Image.resize(..., BICUBIC)` for 8-bit RGB, reproduced exactly
//!   (separable passes in the [`ResizeOrder`] of a Pillow version; cubic kernel a = −0.5, support
//!   scaled by the downscale factor, coefficients normalised in f64 then quantised to 22 fractional
//!   bits, each pass rounded and clamped to u8). [`resize_bicubic`] uses the default order
//!   ([`ResizeOrder::Pillow12`], the one the released weights were trained with).
//! - [`pad_to_square_with`]: `ImageOps.pad(image, (s, s), color=(127, 127, 127))` (`contain` with
//!   Python's half-to-even `round`, then centred paste).
//! - [`prepare_with_options`]: the views of one image for a [`Mode`]: the global view and, in crop
//!   modes, the Gundam tiles (`dynamic_preprocess`), with the grid from
//!   [`occ_core::mode::gundam_grid`]; [`prepare`] and [`prepare_with_tiles`] are shorthands.
//! - [`normalize_chw`]: `ToTensor` + `Normalize(0.5, 0.5)` → f32 CHW in [−1, 1].
//!
//! # Pass order: which Pillow is reproduced
//!
//! A BICUBIC resize is two 1-D passes, and each pass rounds to u8, so the order of the passes
//! changes pixels (600×848 → 512×512: 8 % of the u8 values differ, three quarters of them by 1, up to
//! 24 at sharp edges). Pillow changed the order in 13.0 (python-pillow/Pillow#9549), so
//! "bit-identical to the reference" depends on the Pillow the reference runs with. Every resize of this module (direct Tiny/Small stretch, `ImageOps.pad`'s
//! `contain` in Base/Large and the Gundam global view, the Gundam tile canvas) follows one
//! [`ResizeOrder`]:
//!
//! - [`ResizeOrder::Pillow12`] (the default): horizontal pass first, always — Pillow ≤ 12.x (checked
//!   bit for bit against Pillow 12.0.0 and 11.3.0). DeepSeek-OCR predates Pillow 13, so the released
//!   weights were trained on pages resized in this order; it is the default so that inference sees
//!   the pixels training saw.
//! - [`ResizeOrder::Pillow13`]: vertical pass first when it removes more than twice as many rows as
//!   the horizontal pass removes columns (`max(0, h − h') > 2·max(0, w − w')`), horizontal first
//!   otherwise — Pillow ≥ 13 (checked against 13.0.0). Choose it to match a reference run under
//!   Pillow 13 bit for bit.
//!
//! The orders agree unless both passes run and the Pillow 13 rule picks vertical first: of the
//! committed page × mode cases only the portrait page stretched to 512² / 640² (Tiny / Small)
//! differs; the padded and tiled views of the test pages do not. Pick the order from the reference's
//! `PIL.__version__` with [`ResizeOrder::for_pillow_version`]. The whole pipeline takes the order from
//! [`DeepseekOcr::resize_order`](crate::pipeline::DeepseekOcr::resize_order).

use std::path::Path;

use crate::nn::interpolate::cubic_kernel;
use candle_core::{DType, Device, Result, Tensor};
use image::{ImageDecoder, ImageReader, Rgb, RgbImage};
use occ_core::mode::{gundam_grid, GUNDAM_MAX_TILES, GUNDAM_MIN_TILES};
use occ_core::{GundamGrid, Mode, VisionTokens};

/// Pad colour of `ImageOps.pad` in the reference: `int(0.5 · 255)` per channel.
pub const PAD_GREY: u8 = 127;

/// Fractional bits of Pillow's fixed-point resampling coefficients (`PRECISION_BITS`).
const PRECISION_BITS: u32 = 32 - 8 - 2;

fn err(msg: impl std::fmt::Display) -> candle_core::Error {
    candle_core::Error::Msg(msg.to_string())
}

/// Reads an image file, applies its EXIF orientation and converts it to 8-bit RGB
/// (`load_image` + `convert("RGB")` of the reference).
pub fn load_image(path: &Path) -> Result<RgbImage> {
    let context = |e: image::ImageError| err(format!("reading image {}: {e}", path.display()));
    let reader = ImageReader::open(path)
        .map_err(|e| err(format!("opening image {}: {e}", path.display())))?
        .with_guessed_format()
        .map_err(|e| err(format!("reading image {}: {e}", path.display())))?;
    let mut decoder = reader.into_decoder().map_err(context)?;
    let orientation = decoder.orientation().map_err(context)?;
    let mut img = image::DynamicImage::from_decoder(decoder).map_err(context)?;
    img.apply_orientation(orientation);
    Ok(img.to_rgb8())
}

/// Order of the two separable passes of a BICUBIC resize, as in a given Pillow version (see the
/// module docs). Parses from and displays as `pillow12` / `pillow13` (also in serde). The default is
/// [`Pillow12`](Self::Pillow12), the order the released DeepSeek-OCR weights were trained with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResizeOrder {
    /// Horizontal pass first, always (Pillow ≤ 12.x; the released weights' training order).
    #[default]
    Pillow12,
    /// Vertical pass first when it removes more than twice as many rows as the horizontal pass
    /// removes columns, horizontal first otherwise (Pillow ≥ 13).
    Pillow13,
}

impl ResizeOrder {
    /// Every order, oldest Pillow first.
    pub const ALL: [ResizeOrder; 2] = [ResizeOrder::Pillow12, ResizeOrder::Pillow13];

    /// The name used by [`Display`](std::fmt::Display), [`FromStr`](std::str::FromStr) and serde.
    pub fn name(self) -> &'static str {
        match self {
            ResizeOrder::Pillow12 => "pillow12",
            ResizeOrder::Pillow13 => "pillow13",
        }
    }

    /// The order of the Pillow whose `PIL.__version__` is `version` (e.g. `"12.1.0"`,
    /// `"11.3.0.post1"`, `"13.0.0"`): major ≤ 12 → [`Pillow12`](Self::Pillow12), ≥ 13 →
    /// [`Pillow13`](Self::Pillow13). Errors when the major version is not a number.
    pub fn for_pillow_version(version: &str) -> Result<ResizeOrder> {
        let major = version.trim().split('.').next().unwrap_or_default();
        let major: u32 = major.parse().map_err(|_| {
            err(format!("Pillow version {version:?}: expected MAJOR.MINOR.PATCH with a numeric major, e.g. \"12.1.0\""))
        })?;
        Ok(if major <= 12 { ResizeOrder::Pillow12 } else { ResizeOrder::Pillow13 })
    }

    /// Whether a `w × h → ow × oh` resize runs the vertical pass first in this order.
    pub fn vertical_first(self, (w, h): (u32, u32), (ow, oh): (u32, u32)) -> bool {
        match self {
            ResizeOrder::Pillow12 => false,
            // Pillow 13 (found empirically against 13.0.0: 650 random and boundary cases, plus the
            // boundary resizes of the committed goldens).
            ResizeOrder::Pillow13 => u64::from(h.saturating_sub(oh)) > 2 * u64::from(w.saturating_sub(ow)),
        }
    }
}

impl std::fmt::Display for ResizeOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ResizeOrder {
    type Err = candle_core::Error;

    /// `pillow12` or `pillow13` (case-insensitive, surrounding spaces ignored).
    fn from_str(s: &str) -> Result<ResizeOrder> {
        let lower = s.trim().to_ascii_lowercase();
        ResizeOrder::ALL.into_iter().find(|o| o.name() == lower).ok_or_else(|| {
            let names: Vec<&str> = ResizeOrder::ALL.iter().map(|o| o.name()).collect();
            err(format!("unknown resize order {s:?}: expected one of {}", names.join(", ")))
        })
    }
}

/// Fixed-point resampling coefficients of one axis (Pillow `precompute_coeffs` +
/// `normalize_coeffs_8bpc`): for each output index, the first input index and its weights.
struct Coeffs {
    ksize: usize,
    /// (xmin, count) per output index.
    bounds: Vec<(usize, usize)>,
    /// `ksize` fixed-point weights per output index.
    weights: Vec<i32>,
}

fn precompute_coeffs(in_size: usize, out_size: usize) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // Pillow truncates `center ± support + 0.5` toward zero (C int cast), then clamps.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let count = xmax.saturating_sub(xmin).min(ksize);
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(count) {
            let w = cubic_kernel((x as f64 + xmin as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        for (x, kx) in k.iter().enumerate().take(count) {
            let v = if ww != 0.0 { kx / ww } else { *kx };
            let fixed = v * f64::from(1u32 << PRECISION_BITS);
            weights[xx * ksize + x] = if v < 0.0 { (-0.5 + fixed) as i32 } else { (0.5 + fixed) as i32 };
        }
        bounds.push((xmin, count));
    }
    Coeffs { ksize, bounds, weights }
}

#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// One horizontal pass over all rows of `src` (w × h, RGB interleaved) to `out_w`.
fn resample_horizontal(src: &[u8], w: usize, h: usize, out_w: usize) -> Vec<u8> {
    let c = precompute_coeffs(w, out_w);
    let mut out = vec![0u8; out_w * h * 3];
    for y in 0..h {
        let row = &src[y * w * 3..(y + 1) * w * 3];
        for (xx, &(xmin, count)) in c.bounds.iter().enumerate() {
            let k = &c.weights[xx * c.ksize..xx * c.ksize + count];
            for ch in 0..3 {
                let mut acc: i32 = 1 << (PRECISION_BITS - 1);
                for (x, &kx) in k.iter().enumerate() {
                    acc = acc.wrapping_add(i32::from(row[(xmin + x) * 3 + ch]).wrapping_mul(kx));
                }
                out[(y * out_w + xx) * 3 + ch] = clip8(acc);
            }
        }
    }
    out
}

/// One vertical pass over all columns of `src` (w × h) to `out_h`.
fn resample_vertical(src: &[u8], w: usize, h: usize, out_h: usize) -> Vec<u8> {
    let c = precompute_coeffs(h, out_h);
    let mut out = vec![0u8; w * out_h * 3];
    for (yy, &(ymin, count)) in c.bounds.iter().enumerate() {
        let k = &c.weights[yy * c.ksize..yy * c.ksize + count];
        for x in 0..w * 3 {
            let mut acc: i32 = 1 << (PRECISION_BITS - 1);
            for (y, &ky) in k.iter().enumerate() {
                acc = acc.wrapping_add(i32::from(src[(ymin + y) * w * 3 + x]).wrapping_mul(ky));
            }
            out[yy * w * 3 + x] = clip8(acc);
        }
    }
    out
}

/// [`resize_bicubic_with`] in the default order ([`ResizeOrder::Pillow12`]).
pub fn resize_bicubic(img: &RgbImage, width: u32, height: u32) -> Result<RgbImage> {
    resize_bicubic_with(img, width, height, ResizeOrder::default())
}

/// Pillow `Image.resize((width, height), Resampling.BICUBIC)` of an RGB image, bit for bit, with
/// the pass order of the Pillow version `order` stands for.
pub fn resize_bicubic_with(img: &RgbImage, width: u32, height: u32, order: ResizeOrder) -> Result<RgbImage> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (ow, oh) = (width as usize, height as usize);
    if w == 0 || h == 0 || ow == 0 || oh == 0 {
        return Err(err(format!("cannot resize an image of {w}x{h} to {ow}x{oh}: empty side")));
    }
    let mut data = img.as_raw().clone();
    // Each pass rounds to u8, so the order changes pixels (module docs).
    if order.vertical_first(img.dimensions(), (width, height)) {
        if oh != h {
            data = resample_vertical(&data, w, h, oh);
        }
        if ow != w {
            data = resample_horizontal(&data, w, oh, ow);
        }
    } else {
        if ow != w {
            data = resample_horizontal(&data, w, h, ow);
        }
        if oh != h {
            data = resample_vertical(&data, ow, h, oh);
        }
    }
    RgbImage::from_raw(width, height, data).ok_or_else(|| err(format!("resize to {width}x{height}: buffer size")))
}

/// Python's `round(x)` for the non-negative values used here (half to even).
fn round_half_even(x: f64) -> u32 {
    x.round_ties_even().max(0.0) as u32
}

/// [`pad_to_square_with`] in the default order ([`ResizeOrder::Pillow12`]).
pub fn pad_to_square(img: &RgbImage, size: u32) -> Result<RgbImage> {
    pad_to_square_with(img, size, ResizeOrder::default())
}

/// `ImageOps.pad(img, (size, size), BICUBIC, color=(127,)*3)`: fit the long side to `size`
/// (`contain`), always resampling (in `order`), then paste centred on a grey canvas.
pub fn pad_to_square_with(img: &RgbImage, size: u32, order: ResizeOrder) -> Result<RgbImage> {
    let (w, h) = (img.width(), img.height());
    if w == 0 || h == 0 || size == 0 {
        return Err(err(format!("cannot pad an image of {w}x{h} to {size}x{size}")));
    }
    let im_ratio = f64::from(w) / f64::from(h);
    let (mut nw, mut nh) = (size, size);
    if im_ratio != 1.0 {
        if im_ratio > 1.0 {
            nh = round_half_even(f64::from(h) / f64::from(w) * f64::from(size));
        } else {
            nw = round_half_even(f64::from(w) / f64::from(h) * f64::from(size));
        }
    }
    if nw == 0 || nh == 0 {
        // `contain` returns an empty image; `pad` then gives the bare canvas.
        return Ok(RgbImage::from_pixel(size, size, Rgb([PAD_GREY; 3])));
    }
    let resized = resize_bicubic_with(img, nw, nh, order)?;
    if (nw, nh) == (size, size) {
        return Ok(resized);
    }
    let mut out = RgbImage::from_pixel(size, size, Rgb([PAD_GREY; 3]));
    let (x0, y0) = if nw != size {
        (round_half_even(f64::from(size - nw) * 0.5), 0)
    } else {
        (0, round_half_even(f64::from(size - nh) * 0.5))
    };
    image::imageops::replace(&mut out, &resized, i64::from(x0), i64::from(y0));
    Ok(out)
}

/// The views of one image for one mode, as 8-bit RGB (docs/MODEL.md §3.2–3.3).
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedImage {
    pub mode: Mode,
    /// Size of the (EXIF-oriented) input image.
    pub original_size: (u32, u32),
    /// The global view, `mode.global_view_size()` square.
    pub global: RgbImage,
    /// Local tiles in row-major tile order (`image_size` square); empty when the grid has no tiles.
    pub tiles: Vec<RgbImage>,
    /// The tile grid (`1 × 1` = no tiles).
    pub grid: GundamGrid,
}

/// Allowed tile counts of the Gundam grid (`dynamic_preprocess`'s `min_num` / `max_num`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileRange {
    /// Fewest tiles of a grid.
    pub min: u32,
    /// Most tiles of a grid.
    pub max: u32,
}

impl Default for TileRange {
    /// The reference's `dynamic_preprocess` defaults: 2..=9 tiles.
    fn default() -> Self {
        TileRange { min: GUNDAM_MIN_TILES, max: GUNDAM_MAX_TILES }
    }
}

/// Preprocessing options beyond the mode: the Gundam tile range and the resize pass order.
/// `PrepareOptions::default()` is what [`prepare`] uses (2..=9 tiles, [`ResizeOrder::Pillow12`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrepareOptions {
    /// Allowed tile counts of the Gundam grid.
    pub tiles: TileRange,
    /// Pass order of every resize (match the reference's Pillow version).
    pub order: ResizeOrder,
}

/// [`prepare_with_options`] with the default options (2..=9 tiles, [`ResizeOrder::Pillow12`]).
pub fn prepare(image: &RgbImage, mode: Mode) -> Result<PreparedImage> {
    prepare_with_options(image, mode, PrepareOptions::default())
}

/// [`prepare_with_options`] with the tile range `tiles` and the default [`ResizeOrder`].
pub fn prepare_with_tiles(image: &RgbImage, mode: Mode, tiles: TileRange) -> Result<PreparedImage> {
    prepare_with_options(image, mode, PrepareOptions { tiles, ..PrepareOptions::default() })
}

/// The views the reference's `infer` builds for `image` in `mode`; every resize runs in
/// `options.order`.
///
/// - Non-crop modes of at most 640 px (Tiny, Small): `resize((s, s))`, aspect ratio destroyed.
/// - Other non-crop modes (Base, Large): `ImageOps.pad` to `image_size`.
/// - Crop modes: global view `ImageOps.pad` to `base_size`; if either side exceeds `image_size`,
///   the whole image is resized to `(image_size·across, image_size·down)` and cut into tiles
///   (grid within `options.tiles`).
pub fn prepare_with_options(image: &RgbImage, mode: Mode, options: PrepareOptions) -> Result<PreparedImage> {
    let PrepareOptions { tiles, order } = options;
    if mode.is_v2() {
        return Err(err(format!(
            "mode {mode} is DeepSeek-OCR-2's (preprocess_v2::prepare_v2); DeepSeek-OCR (v1) reads tiny, small, base, \
             large, gundam or custom modes"
        )));
    }
    let (w, h) = image.dimensions();
    if w == 0 || h == 0 {
        return Err(err(format!("cannot preprocess an empty image of {w}x{h}")));
    }
    let s = mode.global_view_size();
    let global =
        if mode.stretches() { resize_bicubic_with(image, s, s, order)? } else { pad_to_square_with(image, s, order)? };
    let mut views = Vec::new();
    let grid = if mode.crop() {
        let t = mode.image_size();
        let grid = gundam_grid(w, h, t, tiles.min, tiles.max).map_err(|e| err(format!("gundam tiling: {e}")))?;
        if grid.has_tiles() {
            let big = resize_bicubic_with(image, t * grid.across, t * grid.down, order)?;
            for k in 0..grid.across * grid.down {
                let (col, row) = (k % grid.across, k / grid.across);
                views.push(image::imageops::crop_imm(&big, col * t, row * t, t, t).to_image());
            }
        }
        grid
    } else {
        GundamGrid::NONE
    };
    Ok(PreparedImage { mode, original_size: (w, h), global, tiles: views, grid })
}

impl PreparedImage {
    /// The vision-token counts of this image (the one implementation in `occ-core`).
    pub fn vision_tokens(&self, tiles: TileRange) -> Result<VisionTokens> {
        let (w, h) = self.original_size;
        self.mode.vision_tokens_with_tiles(w, h, tiles.min, tiles.max).map_err(|e| err(format!("vision tokens: {e}")))
    }

    /// The global view as a normalised f32 tensor `(3, s, s)`.
    pub fn global_tensor(&self, device: &Device) -> Result<Tensor> {
        image_tensor(&self.global, device)
    }

    /// The tiles as a normalised f32 tensor `(n, 3, t, t)`, or `None` without tiles.
    pub fn tiles_tensor(&self, device: &Device) -> Result<Option<Tensor>> {
        if self.tiles.is_empty() {
            return Ok(None);
        }
        let views = self.tiles.iter().map(|t| image_tensor(t, device)).collect::<Result<Vec<_>>>()?;
        Ok(Some(Tensor::stack(&views, 0)?))
    }
}

/// `ToTensor()` then `Normalize(mean=0.5, std=0.5)`: `(u8 / 255 − 0.5) / 0.5` in f32, CHW order.
pub fn normalize_chw(img: &RgbImage) -> Vec<f32> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let raw = img.as_raw();
    let mut out = vec![0f32; 3 * w * h];
    for (i, px) in raw.chunks_exact(3).enumerate() {
        for (c, &v) in px.iter().enumerate() {
            out[c * w * h + i] = (f32::from(v) / 255.0 - 0.5) / 0.5;
        }
    }
    out
}

/// An RGB image as a normalised f32 tensor `(3, h, w)` on `device`.
pub fn image_tensor(img: &RgbImage, device: &Device) -> Result<Tensor> {
    images_tensor(&[img], DType::F32, device)?.squeeze(0)
}

/// Equal-sized RGB images as one normalised tensor `(n, 3, h, w)` in `dtype` on `device`: the bytes are
/// uploaded as they are and mapped on the device through the 256 values of [`normalize_chw`]'s formula
/// (bit-identical to it in f32; other dtypes round those values once).
pub fn images_tensor(images: &[&RgbImage], dtype: DType, device: &Device) -> Result<Tensor> {
    let Some(first) = images.first() else { candle_core::bail!("images_tensor: no images") };
    let (w, h) = (first.width() as usize, first.height() as usize);
    // each image straight from its buffer (no host-side concatenation), joined on the device
    let parts = images
        .iter()
        .map(|img| {
            if (img.width() as usize, img.height() as usize) != (w, h) {
                candle_core::bail!("images_tensor: a {}×{} image among {w}×{h} ones", img.width(), img.height())
            }
            Tensor::from_slice(img.as_raw().as_slice(), h * w * 3, device)
        })
        .collect::<Result<Vec<_>>>()?;
    let table: Vec<f32> = (0..=255u8).map(|v| (f32::from(v) / 255.0 - 0.5) / 0.5).collect();
    let table = Tensor::from_vec(table, 256, device)?.to_dtype(dtype)?;
    // u32 indices: candle's index_select reads an id equal to its type's maximum (255 for u8) as padding
    let bytes = Tensor::cat(&parts, 0)?.to_dtype(DType::U32)?;
    table.index_select(&bytes, 0)?.reshape((images.len(), h, w, 3))?.permute((0, 3, 1, 2))?.contiguous()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bicubic_kernel_values() {
        assert_eq!(cubic_kernel(0.0), 1.0);
        assert_eq!(cubic_kernel(1.0), 0.0);
        assert_eq!(cubic_kernel(2.0), 0.0);
        // a = −0.5: k(0.5) = 0.5625, k(1.5) = −0.0625.
        assert!((cubic_kernel(0.5) - 0.5625).abs() < 1e-15);
        assert!((cubic_kernel(-1.5) + 0.0625).abs() < 1e-15);
    }

    #[test]
    fn coefficients_sum_to_one_in_fixed_point() {
        for (i, o) in [(10, 3), (3, 10), (1000, 512), (600, 1280), (7, 7)] {
            let c = precompute_coeffs(i, o);
            for xx in 0..o {
                let sum: i64 = c.weights[xx * c.ksize..(xx + 1) * c.ksize].iter().map(|&v| i64::from(v)).sum();
                assert!((sum - (1 << PRECISION_BITS)).abs() <= 4, "{i}->{o} at {xx}: {sum}");
            }
        }
    }

    #[test]
    fn constant_image_stays_constant() {
        let img = RgbImage::from_pixel(37, 23, Rgb([200, 3, 127]));
        for (w, h) in [(512, 512), (5, 9), (37, 100)] {
            let out = resize_bicubic(&img, w, h).unwrap();
            assert!(out.pixels().all(|p| p.0 == [200, 3, 127]), "{w}x{h}");
        }
    }

    #[test]
    fn pad_offsets_round_half_to_even() {
        // 3:2 landscape into 8: contain gives 8 × round(5.333) = 8 × 5, offset round(1.5) = 2.
        let img = RgbImage::from_pixel(300, 200, Rgb([0, 0, 0]));
        let out = pad_to_square(&img, 8).unwrap();
        let rows: Vec<u8> = (0..8).map(|y| out.get_pixel(0, y).0[0]).collect();
        assert_eq!(rows, [127, 127, 0, 0, 0, 0, 0, 127]);
        // 1:3 portrait into 64: width round(21.33) = 21, offset round(21.5) = 22.
        let img = RgbImage::from_pixel(100, 300, Rgb([0, 0, 0]));
        let out = pad_to_square(&img, 64).unwrap();
        let first = (0..64).find(|&x| out.get_pixel(x, 0).0[0] == 0).unwrap();
        let count = (0..64).filter(|&x| out.get_pixel(x, 0).0[0] == 0).count();
        assert_eq!((first, count), (22, 21));
    }

    #[test]
    fn resize_order_for_pillow_version() {
        for (version, want) in [
            ("12.1.0", ResizeOrder::Pillow12),
            ("12.0.0", ResizeOrder::Pillow12),
            ("11.3.0.post1", ResizeOrder::Pillow12),
            ("9.5.0", ResizeOrder::Pillow12),
            ("12", ResizeOrder::Pillow12),
            ("13.0.0", ResizeOrder::Pillow13),
            (" 13.1.0.dev0 ", ResizeOrder::Pillow13),
            ("14.0.0", ResizeOrder::Pillow13),
        ] {
            assert_eq!(ResizeOrder::for_pillow_version(version).unwrap(), want, "{version:?}");
        }
        for bad in ["", "abc", "v12.0.0", "12a.0", ".12", "-1.0"] {
            let e = ResizeOrder::for_pillow_version(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{bad:?}: {e}");
        }
    }

    #[test]
    fn resize_order_names_parse_display_and_serde() {
        assert_eq!(ResizeOrder::default(), ResizeOrder::Pillow12, "the released weights' training order");
        for order in ResizeOrder::ALL {
            assert_eq!(order.to_string().parse::<ResizeOrder>().unwrap(), order);
            let json = serde_json::to_string(&order).unwrap();
            assert_eq!(json, format!("\"{order}\""));
            assert_eq!(serde_json::from_str::<ResizeOrder>(&json).unwrap(), order);
        }
        assert_eq!(" Pillow12 ".parse::<ResizeOrder>().unwrap(), ResizeOrder::Pillow12);
        let e = "pillow11".parse::<ResizeOrder>().unwrap_err().to_string();
        assert!(e.contains("\"pillow11\"") && e.contains("pillow12, pillow13"), "{e}");
        assert!(serde_json::from_str::<ResizeOrder>("\"12\"").is_err());
    }

    #[test]
    fn pass_order_rule_at_the_boundary() {
        let v = |w, h, ow, oh| ResizeOrder::Pillow13.vertical_first((w, h), (ow, oh));
        // 37×23 → 28×5 removes 9 columns and 18 rows (exactly twice): horizontal first.
        assert!(!v(37, 23, 28, 5));
        // 37×23 → 29×5 removes 8 columns and 18 rows: vertical first.
        assert!(v(37, 23, 29, 5));
        // Upscaling the width removes no columns: any removed row puts the vertical pass first.
        assert!(v(37, 23, 60, 22));
        assert!(!v(37, 23, 60, 23));
        assert!(v(600, 848, 512, 512) && v(600, 848, 640, 640));
        for (w, h, ow, oh) in [(37, 23, 29, 5), (600, 848, 512, 512), (1, 1000, 1, 1)] {
            assert!(!ResizeOrder::Pillow12.vertical_first((w, h), (ow, oh)));
        }
    }

    #[test]
    fn normalisation_maps_to_minus_one_one() {
        let img = RgbImage::from_fn(3, 1, |x, _| Rgb([[0, 127, 255][x as usize]; 3]));
        let v = normalize_chw(&img);
        assert_eq!(&v[..3], &[-1.0, (127.0f32 / 255.0 - 0.5) / 0.5, 1.0]);
    }
}
