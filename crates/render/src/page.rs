//! [`render_page`]: normalise, lay out, draw; and the [`RenderedPage`] it returns.

use std::collections::BTreeMap;

use ab_glyph::Font;
use image::{Rgb, RgbImage};
use serde::{Deserialize, Serialize};

use crate::bidi::{mirrored, PageBidi};
use crate::error::{RenderError, Result};
use crate::layout::{layout, Class, Layout, Shaper};
use crate::normalize::normalize;
use crate::raster::{Clip, Painter};
use crate::spec::{Align, RenderSpec};

/// One line of a page. Coordinates are pixels from the page's top-left corner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineBox {
    /// Left edge of the line's advance box (after alignment).
    pub x: f32,
    /// Top of the line box; lines are stacked at a pitch of `height`.
    pub y: f32,
    /// Advance width of the visible text (trailing spaces excluded; justified lines: the content width).
    pub width: f32,
    /// The line pitch (`line_height · font_px`).
    pub height: f32,
    /// Baseline (whole pixel) on which the glyphs sit.
    pub baseline: f32,
    /// Byte range of the line's text in [`RenderedPage::text`].
    pub start: usize,
    pub end: usize,
    /// The line's text (`text[start..end]`) in logical (reading) order: indentation included, trailing
    /// spaces excluded.
    pub text: String,
    /// The line as drawn, left to right, when that differs from `text`: right-to-left runs reversed
    /// and their mirrored characters (brackets …) swapped, by the Unicode Bidirectional Algorithm.
    /// Absent for lines drawn in logical order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visual: Option<String>,
    /// True when the line was wrapped, false when it ends at `\n` or at the end of the text.
    pub wrapped: bool,
}

/// A character no face of the chain has, with how often it is on the page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingGlyph {
    pub ch: char,
    /// `U+XXXX`.
    pub codepoint: String,
    pub count: usize,
}

/// Characters drawn as `.notdef` boxes. They stay in the ground truth.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingGlyphs {
    /// Occurrences on the page.
    pub count: usize,
    /// Distinct characters, by code point.
    pub chars: Vec<MissingGlyph>,
}

impl MissingGlyphs {
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// A rendered page: the image and exactly what is on it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RenderedPage {
    #[serde(skip)]
    pub image: RgbImage,
    pub width: u32,
    pub height: u32,
    /// The ground truth: the normalised text placed on the page, in reading order. It is a prefix of
    /// the normalised input; the spaces or `\n` at each line break are kept, so
    /// `text + overflow == normalize(input)`.
    pub text: String,
    /// Normalised text that did not fit (empty when everything is on the page).
    pub overflow: String,
    pub lines: Vec<LineBox>,
    pub missing_glyphs: MissingGlyphs,
    /// The em size used.
    pub font_px: f32,
    /// Characters in `text`.
    pub chars: usize,
}

impl RenderedPage {
    /// Whether all of the text is on the page.
    pub fn is_complete(&self) -> bool {
        self.overflow.is_empty()
    }

    /// The text as it looks, left to right: one line per line box (its `visual` form where it has
    /// one), joined by `\n`.
    pub fn visual_text(&self) -> String {
        self.lines.iter().map(|l| l.visual.as_deref().unwrap_or(&l.text)).collect::<Vec<_>>().join("\n")
    }
}

/// Renders `text` onto one page. Text that does not fit is returned in [`RenderedPage::overflow`].
///
/// Errors: an invalid spec (zero or non-finite font size, margins that leave no room, …), and text on
/// the page in a joining script (Arabic …) that the face drawing it cannot shape
/// ([`RenderError::UnsupportedScript`]).
pub fn render_page(text: &str, spec: &RenderSpec) -> Result<RenderedPage> {
    spec.validate()?;
    let norm = normalize(text, spec.newline, spec.tab_width);
    render_normalized(&norm, spec)
}

/// How many lines all of `text` takes at the spec's width and font size, ignoring the page height
/// (a character wider than the line stops the count there).
pub fn lines_needed(text: &str, spec: &RenderSpec) -> Result<usize> {
    spec.validate()?;
    let norm = normalize(text, spec.newline, spec.tab_width);
    let mut sh = Shaper::new(&norm, &spec.fonts);
    Ok(layout_normalized(&mut sh, spec, usize::MAX).lines.len())
}

/// Lays out already normalised text at the spec's font size without drawing; returns the layout.
pub(crate) fn layout_normalized(sh: &mut Shaper<'_>, spec: &RenderSpec, max_lines: usize) -> Layout {
    layout(sh, spec.font_px, spec.content_width() as f32, max_lines)
}

/// [`render_page`] for text that is already normalised, with a validated spec.
pub(crate) fn render_normalized(norm: &str, spec: &RenderSpec) -> Result<RenderedPage> {
    let mut sh = Shaper::new(norm, &spec.fonts);
    let lay = layout_normalized(&mut sh, spec, spec.max_lines());
    draw(&mut sh, &lay, spec)
}

/// Draws the laid-out lines: each line in visual order (see [`crate::bidi`]), shaped clusters with
/// their glyphs, every other character with its one glyph.
pub(crate) fn draw(sh: &mut Shaper<'_>, lay: &Layout, spec: &RenderSpec) -> Result<RenderedPage> {
    let consumed = sh.byte(lay.consumed);
    if let Some(s) = sh.items[..lay.consumed].iter().find(|s| s.unshapable.is_some()) {
        let script = s.unshapable.map_or("", |sc| sc.name());
        return Err(RenderError::UnsupportedScript {
            script,
            font: spec.fonts.faces()[usize::from(s.glyph.face)].name().to_string(),
            ch: s.ch,
        });
    }
    let px = spec.font_px;
    let content_w = spec.content_width() as f32;
    let pitch = spec.line_pitch();
    let (asc, desc) = spec.fonts.vertical_metrics_em();
    let half_leading = (pitch - (asc + desc) * px) / 2.0;
    let m = spec.margins;
    let clip = Clip {
        x0: m.left as i32,
        y0: m.top as i32,
        x1: (m.left + spec.content_width()) as i32,
        y1: (m.top + spec.content_height()) as i32,
    };
    let mut image = RgbImage::from_pixel(spec.width, spec.height, Rgb(spec.bg));
    let mut painter = Painter::new(&spec.fonts, px, spec.fg, clip);
    let norm = sh.text();
    let bidi = PageBidi::new(&norm[..consumed]);
    let mut boxes = Vec::with_capacity(lay.lines.len());
    let mut order = Vec::new();
    for (n, line) in lay.lines.iter().enumerate() {
        let top = m.top as f32 + n as f32 * pitch;
        let baseline = (top + half_leading + asc * px).round();
        // Spaces after the first visible character stretch under justification.
        let first_vis = (line.start..line.end).find(|&k| sh.items[k].class != Class::Space).unwrap_or(line.end);
        let inner_spaces = (first_vis..line.end).filter(|&k| sh.items[k].class == Class::Space).count();
        let justify = spec.align == Align::Justify && line.soft && inner_spaces > 0;
        let extra = if justify { (content_w - line.width).max(0.0) / inner_spaces as f32 } else { 0.0 };
        let offset = match spec.align {
            Align::Left | Align::Justify => 0.0,
            Align::Center => ((content_w - line.width) / 2.0).max(0.0),
            Align::Right => (content_w - line.width).max(0.0),
        };
        let start = sh.byte(line.start);
        let end = sh.byte(line.end);
        let runs = bidi.visual_runs(start..end);
        let reordered = runs.is_some();
        visual_order(sh, line.start..line.end, runs, &mut order);
        let x0 = m.left as f32 + offset;
        let mut x = x0;
        let mut visual = String::new();
        for &(k, rtl) in &order {
            let s = sh.items[k];
            if k > line.start {
                x += s.kern_prev_em * px;
            }
            let mut shown = s.ch;
            match s.class {
                Class::Space => {
                    x += s.advance_em * px;
                    if k > first_vis {
                        x += extra;
                    }
                }
                Class::Newline | Class::Format => {}
                Class::Cjk | Class::Other => {
                    if s.shaped {
                        for g in sh.cluster_glyphs(k) {
                            let y = baseline as i32 - (g.y_em * px).round() as i32;
                            painter.draw(&mut image, s.glyph.face, g.glyph, x + g.x_em * px, y);
                        }
                    } else {
                        let mut glyph = s.glyph.glyph;
                        if let Some(m) = mirrored(s.ch).filter(|_| rtl) {
                            let g = spec.fonts.faces()[usize::from(s.glyph.face)].font().glyph_id(m);
                            if g.0 != 0 {
                                glyph = g;
                                shown = m;
                            }
                        }
                        painter.draw(&mut image, s.glyph.face, glyph, x, baseline as i32);
                    }
                    x += s.advance_em * px;
                }
            }
            if reordered {
                visual.push(shown);
            }
        }
        let text = norm[start..end].to_string();
        boxes.push(LineBox {
            x: x0,
            y: top,
            width: if justify { content_w } else { line.width },
            height: pitch,
            baseline,
            start,
            end,
            visual: (reordered && visual != text).then_some(visual),
            text,
            wrapped: line.soft,
        });
    }
    let mut missing: BTreeMap<char, usize> = BTreeMap::new();
    for s in &sh.items[..lay.consumed] {
        if !s.glyph.found && matches!(s.class, Class::Cjk | Class::Other) {
            *missing.entry(s.ch).or_default() += 1;
        }
    }
    let missing_glyphs = MissingGlyphs {
        count: missing.values().sum(),
        chars: missing
            .into_iter()
            .map(|(ch, count)| MissingGlyph { ch, codepoint: format!("U+{:04X}", u32::from(ch)), count })
            .collect(),
    };
    Ok(RenderedPage {
        image,
        width: spec.width,
        height: spec.height,
        text: norm[..consumed].to_string(),
        overflow: norm[consumed..].to_string(),
        lines: boxes,
        missing_glyphs,
        font_px: px,
        chars: lay.consumed,
    })
}

/// The items of `line` (character indices) in the order they are drawn, left to right, each with
/// whether it lies in a right-to-left run, into `out`. `runs` are the line's visual runs as byte
/// ranges (`None`: the line is drawn in logical order).
fn visual_order(
    sh: &Shaper<'_>,
    line: std::ops::Range<usize>,
    runs: Option<Vec<(std::ops::Range<usize>, bool)>>,
    out: &mut Vec<(usize, bool)>,
) {
    out.clear();
    let Some(runs) = runs else {
        out.extend(line.map(|k| (k, false)));
        return;
    };
    let items = &sh.items[line.clone()];
    let index = |byte: usize| line.start + items.partition_point(|s| s.byte < byte);
    for (bytes, rtl) in runs {
        let (a, b) = (index(bytes.start), index(bytes.end));
        if rtl {
            out.extend((a..b).rev().map(|k| (k, true)));
        } else {
            out.extend((a..b).map(|k| (k, false)));
        }
    }
}
