//! Glyph rasterisation (ab_glyph) and deterministic alpha blending into the RGB canvas.
//!
//! Glyph origins are quantised to a quarter pixel horizontally and a whole pixel vertically (the
//! baseline), so each `(face, glyph, quarter)` is rasterised once per page and blitted from a cache.
//! Coverage is rounded to `u8` and blended with integer arithmetic:
//! `out = (cur · (255 − a) + fg · a + 127) / 255`, so the pixels depend only on the text, the spec and
//! the font bytes.

use std::collections::HashMap;

use ab_glyph::{point, Font, GlyphId};
use image::RgbImage;

use crate::font::FontSet;

/// Sub-pixel positions per pixel (horizontal).
const SUBPIXELS: i32 = 4;

/// A rasterised glyph: coverage bitmap and its offset from the (quantised) origin.
struct Raster {
    left: i32,
    top: i32,
    width: u32,
    height: u32,
    coverage: Vec<u8>,
}

/// The clip rectangle (the text area inside the margins), half-open.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clip {
    pub x0: i32,
    pub y0: i32,
    pub x1: i32,
    pub y1: i32,
}

/// Draws glyphs of one font size onto one canvas.
pub(crate) struct Painter<'a> {
    fonts: &'a FontSet,
    px: f32,
    fg: [u8; 3],
    clip: Clip,
    cache: HashMap<(u16, u16, u8), Option<Raster>>,
}

impl<'a> Painter<'a> {
    pub fn new(fonts: &'a FontSet, px: f32, fg: [u8; 3], clip: Clip) -> Painter<'a> {
        Painter { fonts, px, fg, clip, cache: HashMap::new() }
    }

    /// Draws `glyph` of face `face` with its origin at `(x, baseline)`.
    pub fn draw(&mut self, img: &mut RgbImage, face: u16, glyph: GlyphId, x: f32, baseline: i32) {
        let q = (x * SUBPIXELS as f32).round() as i32;
        let base_x = q.div_euclid(SUBPIXELS);
        let sub = q.rem_euclid(SUBPIXELS) as u8;
        let (fonts, px) = (self.fonts, self.px);
        let raster = self.cache.entry((face, glyph.0, sub)).or_insert_with(|| rasterise(fonts, face, glyph, px, sub));
        let Some(r) = raster else {
            return;
        };
        let ox = base_x + r.left;
        let oy = baseline + r.top;
        let clip = self.clip;
        let fg = self.fg;
        for gy in 0..r.height as i32 {
            let y = oy + gy;
            if y < clip.y0 || y >= clip.y1 {
                continue;
            }
            let row = &r.coverage[(gy as usize) * r.width as usize..][..r.width as usize];
            for (gx, &a) in row.iter().enumerate() {
                let x = ox + gx as i32;
                if a == 0 || x < clip.x0 || x >= clip.x1 {
                    continue;
                }
                let p = img.get_pixel_mut(x as u32, y as u32);
                let a = u32::from(a);
                for (c, f) in p.0.iter_mut().zip(fg) {
                    *c = ((u32::from(*c) * (255 - a) + u32::from(f) * a + 127) / 255) as u8;
                }
            }
        }
    }
}

fn rasterise(fonts: &FontSet, face: u16, glyph: GlyphId, px: f32, sub: u8) -> Option<Raster> {
    let face = &fonts.faces()[usize::from(face)];
    let g = glyph.with_scale_and_position(face.px_scale(px), point(f32::from(sub) / SUBPIXELS as f32, 0.0));
    let outlined = face.font().outline_glyph(g)?;
    let b = outlined.px_bounds();
    let (width, height) = (b.width() as u32, b.height() as u32);
    if width == 0 || height == 0 {
        return None;
    }
    let mut coverage = vec![0u8; (width * height) as usize];
    outlined.draw(|x, y, c| {
        if x < width && y < height {
            coverage[(y * width + x) as usize] = (c.clamp(0.0, 1.0) * 255.0).round() as u8;
        }
    });
    Some(Raster { left: b.min.x as i32, top: b.min.y as i32, width, height, coverage })
}
