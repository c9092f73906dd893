//! Deterministic degradations of a rendered page, for robustness and memory-decay experiments.
//!
//! Each is a pure function of the image and its parameters: the same input gives the same bytes on the
//! same build (the noise uses the toolkit's seeded SplitMix64, [`occ_core::rng`], not a library RNG
//! whose stream may change between versions). JPEG decoding may take SIMD paths chosen at run time, so
//! bytes can differ between CPU families, never between runs.

use image::imageops::FilterType;
use image::{ImageEncoder, RgbImage};
use occ_core::rng::SplitMix64;
use occ_core::Mode;
use serde::{Deserialize, Serialize};

use crate::error::{RenderError, Result};

/// Resampling filter of [`Degradation::Downscale`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    Nearest,
    /// Bilinear.
    Triangle,
    CatmullRom,
    /// Lanczos with a window of 3 (the reference preprocessing resizes with bicubic/Lanczos).
    #[default]
    Lanczos3,
}

impl Filter {
    fn to_image(self) -> FilterType {
        match self {
            Filter::Nearest => FilterType::Nearest,
            Filter::Triangle => FilterType::Triangle,
            Filter::CatmullRom => FilterType::CatmullRom,
            Filter::Lanczos3 => FilterType::Lanczos3,
        }
    }
}

/// One degradation step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Degradation {
    /// Gaussian blur with standard deviation `sigma` pixels (0 < sigma ≤ 1000).
    GaussianBlur { sigma: f32 },
    /// Encode as baseline JPEG at `quality` (1–100) and decode again.
    Jpeg { quality: u8 },
    /// Add `N(0, sigma²)` to every channel (values 0–255), clamped; `seed` fixes the noise.
    Noise { sigma: f32, seed: u64 },
    /// Resize to `width × height`; with `restore`, resize back to the original size afterwards (the
    /// information lost stays lost).
    Downscale { width: u32, height: u32, filter: Filter, restore: bool },
}

impl Degradation {
    /// Downscale to `mode`'s canvas ([`Mode::default_canvas`]), e.g. a Base page seen at Tiny resolution.
    pub fn downscale_to_mode(mode: Mode, restore: bool) -> Degradation {
        let (width, height) = mode.default_canvas();
        Degradation::Downscale { width, height, filter: Filter::default(), restore }
    }
}

/// Applies `d` to `img`.
pub fn apply(img: &RgbImage, d: &Degradation) -> Result<RgbImage> {
    match *d {
        Degradation::GaussianBlur { sigma } => {
            // The kernel has 6·sigma taps: a sigma past 1000 px blurs any page flat and, near f32::MAX,
            // overflows the kernel's allocation.
            if !(sigma.is_finite() && sigma > 0.0 && sigma <= 1000.0) {
                return Err(invalid("gaussian_blur", format!("sigma {sigma} must be a finite number in (0, 1000]")));
            }
            Ok(imageproc::filter::gaussian_blur_f32(img, sigma))
        }
        Degradation::Jpeg { quality } => {
            if !(1..=100).contains(&quality) {
                return Err(invalid("jpeg", format!("quality {quality} must be 1..=100")));
            }
            let mut bytes = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality)
                .write_image(img.as_raw(), img.width(), img.height(), image::ExtendedColorType::Rgb8)
                .map_err(|source| RenderError::Image { what: "jpeg encode", source })?;
            let decoded = image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg)
                .map_err(|source| RenderError::Image { what: "jpeg decode", source })?;
            Ok(decoded.to_rgb8())
        }
        Degradation::Noise { sigma, seed } => {
            if !(sigma.is_finite() && sigma >= 0.0) {
                return Err(invalid("noise", format!("sigma {sigma} must be a finite number >= 0")));
            }
            let mut rng = SplitMix64::new(seed);
            let mut out = img.clone();
            for p in out.pixels_mut() {
                for c in p.0.iter_mut() {
                    let v = f64::from(*c) + f64::from(sigma) * rng.normal();
                    *c = v.round().clamp(0.0, 255.0) as u8;
                }
            }
            Ok(out)
        }
        Degradation::Downscale { width, height, filter, restore } => {
            if width == 0 || height == 0 {
                return Err(invalid("downscale", format!("target size {width}x{height} is empty")));
            }
            if u64::from(width) * u64::from(height) > crate::spec::MAX_PAGE_PIXELS {
                let max = crate::spec::MAX_PAGE_PIXELS;
                return Err(invalid("downscale", format!("target size {width}x{height} is over {max} pixels")));
            }
            let small = image::imageops::resize(img, width, height, filter.to_image());
            Ok(if restore {
                image::imageops::resize(&small, img.width(), img.height(), filter.to_image())
            } else {
                small
            })
        }
    }
}

/// Applies several degradations in order.
pub fn apply_all(img: &RgbImage, steps: &[Degradation]) -> Result<RgbImage> {
    let mut cur = img.clone();
    for d in steps {
        cur = apply(&cur, d)?;
    }
    Ok(cur)
}

fn invalid(what: &'static str, message: String) -> RenderError {
    RenderError::InvalidDegradation { what, message }
}

/// Mean absolute difference per channel between two images of the same size (`None` if sizes differ).
pub fn mean_abs_diff(a: &RgbImage, b: &RgbImage) -> Option<f64> {
    if a.dimensions() != b.dimensions() {
        return None;
    }
    let total: u64 = a.as_raw().iter().zip(b.as_raw()).map(|(x, y)| u64::from(x.abs_diff(*y))).sum();
    Some(total as f64 / a.as_raw().len().max(1) as f64)
}
