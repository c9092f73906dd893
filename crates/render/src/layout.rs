//! Line breaking: greedy first-fit over normalised text, in logical order, left to right.
//!
//! - **Latin and every non-CJK script**: a line may break only at a run of spaces (U+0020); the run
//!   goes into the gap between the two lines and is not drawn. Other whitespace (no-break space …)
//!   does not break.
//! - **CJK** (Han, kana, Hangul, CJK punctuation and full-width forms): a line may break before and
//!   after every such character. No kinsoku rules (a line may start with `，`).
//! - A word wider than the line is broken between two characters.
//! - `\n` ends a line (an empty paragraph gives an empty line).
//! - Leading spaces of a paragraph (indentation) are kept and take room; if a word does not fit after
//!   them, they go into the gap instead.
//! - x advances by each glyph's advance width plus pair kerning (`kern` table) with the previous glyph of
//!   the same face on the same line. No shaping, ligatures or bidi: Arabic is drawn with isolated forms
//!   in logical order.
//!
//! A line fits when its advance width (trailing spaces excluded) is at most the content width. A single
//! character wider than the content width ends the page there (the rest overflows).

use std::collections::HashMap;

use ab_glyph::GlyphId;

use crate::font::{FontSet, GlyphRef};

/// Tolerance of the width comparison, in pixels.
const WIDTH_EPS: f32 = 1e-3;

/// Break class of a character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Newline,
    Space,
    Cjk,
    Other,
}

/// Whether `c` is in a CJK block where a line may break anywhere.
pub fn is_cjk(c: char) -> bool {
    matches!(
        u32::from(c),
        0x1100..=0x11FF
            | 0x2E80..=0x2FFF
            | 0x3000..=0x303F
            | 0x3040..=0x30FF
            | 0x3100..=0x31FF
            | 0x3200..=0x33FF
            | 0x3400..=0x4DBF
            | 0x4E00..=0x9FFF
            | 0xA960..=0xA97F
            | 0xAC00..=0xD7AF
            | 0xF900..=0xFAFF
            | 0xFE30..=0xFE4F
            | 0xFF00..=0xFFEF
            | 0x20000..=0x2FA1F
            | 0x30000..=0x3134F
    )
}

/// One character of normalised text with its glyph and metrics (em units).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shaped {
    /// Byte offset in the normalised text.
    pub byte: usize,
    pub ch: char,
    pub class: Class,
    pub glyph: GlyphRef,
    pub advance_em: f32,
    /// Kerning with the previous character of the text when both come from the same face.
    pub kern_prev_em: f32,
}

/// Lazily shapes characters as layout asks for them, so that a page never shapes more of a long text
/// than it can hold.
pub(crate) struct Shaper<'a> {
    text: &'a str,
    fonts: &'a FontSet,
    pos: usize,
    pub items: Vec<Shaped>,
    ascii: [Option<(GlyphRef, f32)>; 128],
    other: HashMap<char, (GlyphRef, f32)>,
}

impl<'a> Shaper<'a> {
    pub fn new(text: &'a str, fonts: &'a FontSet) -> Shaper<'a> {
        Shaper { text, fonts, pos: 0, items: Vec::new(), ascii: [None; 128], other: HashMap::new() }
    }

    pub fn text(&self) -> &'a str {
        self.text
    }

    /// Byte offset of character `k` (the text length past the end).
    pub fn byte(&mut self, k: usize) -> usize {
        if self.ensure(k) {
            self.items[k].byte
        } else {
            self.text.len()
        }
    }

    /// Shapes up to character `k`; false when the text has fewer than `k + 1` characters.
    pub fn ensure(&mut self, k: usize) -> bool {
        while self.items.len() <= k {
            let Some(ch) = self.text[self.pos..].chars().next() else {
                return false;
            };
            let byte = self.pos;
            self.pos += ch.len_utf8();
            self.push(byte, ch);
        }
        true
    }

    fn glyph(&mut self, ch: char) -> (GlyphRef, f32) {
        let fonts = self.fonts;
        let compute = || {
            let g = fonts.lookup(ch);
            (g, fonts.faces()[usize::from(g.face)].advance_em(g.glyph))
        };
        if ch.is_ascii() {
            let slot = &mut self.ascii[ch as usize];
            *slot.get_or_insert_with(compute)
        } else {
            *self.other.entry(ch).or_insert_with(compute)
        }
    }

    fn push(&mut self, byte: usize, ch: char) {
        let class = match ch {
            '\n' => Class::Newline,
            ' ' => Class::Space,
            c if is_cjk(c) => Class::Cjk,
            _ => Class::Other,
        };
        let (glyph, advance_em) = if class == Class::Newline {
            (GlyphRef { face: 0, glyph: GlyphId(0), found: true }, 0.0)
        } else {
            self.glyph(ch)
        };
        let kern_prev_em = match self.items.last() {
            Some(prev)
                if prev.class != Class::Newline && prev.glyph.face == glyph.face && glyph.found && prev.glyph.found =>
            {
                self.fonts.faces()[usize::from(glyph.face)].kern_em(prev.glyph.glyph, glyph.glyph)
            }
            _ => 0.0,
        };
        self.items.push(Shaped { byte, ch, class, glyph, advance_em, kern_prev_em });
    }
}

/// One laid-out line, in character indices of the normalised text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct LaidLine {
    /// First character (indentation spaces included).
    pub start: usize,
    /// One past the last visible character (trailing spaces excluded).
    pub end: usize,
    /// Advance width of `start..end` in pixels.
    pub width: f32,
    /// Whether the line ends at a soft (wrap) break rather than `\n` or the end of the text.
    pub soft: bool,
}

/// Lines of one page.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Layout {
    pub lines: Vec<LaidLine>,
    /// Characters on the page: the ground truth is the first `consumed` characters.
    pub consumed: usize,
    /// Whether the whole text is on the page.
    pub complete: bool,
}

enum Outcome {
    /// `\n` at this index.
    Hard(usize),
    /// Break before `next`; the visible text ends at `end` with width `width`.
    Soft {
        end: usize,
        next: usize,
        width: f32,
    },
    End,
    /// A single character wider than the line.
    TooWide,
}

/// Lays out lines of `px`-em text, `width` pixels wide, at most `max_lines` of them.
pub(crate) fn layout(sh: &mut Shaper<'_>, px: f32, width: f32, max_lines: usize) -> Layout {
    let mut lines = Vec::new();
    let mut i = 0usize;
    let mut need_empty_line = false;
    loop {
        let more = sh.ensure(i);
        if !more && !need_empty_line {
            return Layout { lines, consumed: i, complete: true };
        }
        if lines.len() >= max_lines {
            return Layout { lines, consumed: i, complete: !more };
        }
        need_empty_line = false;
        let mut start = i;
        let mut j = i;
        let mut x = 0.0f32;
        let mut vis_end = i;
        let mut vis_width = 0.0f32;
        let mut has_vis = false;
        let mut prev_cjk = false;
        let mut after_space = false;
        let mut opp: Option<(usize, usize, f32)> = None;
        let outcome = loop {
            if !sh.ensure(j) {
                break Outcome::End;
            }
            let s = sh.items[j];
            match s.class {
                Class::Newline => break Outcome::Hard(j),
                Class::Space => {
                    if j > start {
                        x += s.kern_prev_em * px;
                    }
                    x += s.advance_em * px;
                    after_space = true;
                    j += 1;
                }
                Class::Cjk | Class::Other => {
                    let cjk = s.class == Class::Cjk;
                    if has_vis && (after_space || cjk || prev_cjk) {
                        opp = Some((vis_end, j, vis_width));
                    }
                    let mut nx = x;
                    if j > start {
                        nx += s.kern_prev_em * px;
                    }
                    nx += s.advance_em * px;
                    if nx <= width + WIDTH_EPS {
                        x = nx;
                        has_vis = true;
                        vis_end = j + 1;
                        vis_width = x;
                        prev_cjk = cjk;
                        after_space = false;
                        j += 1;
                    } else if let Some((end, next, w)) = opp {
                        break Outcome::Soft { end, next, width: w };
                    } else if has_vis {
                        break Outcome::Soft { end: vis_end, next: j, width: vis_width };
                    } else if j > start {
                        // Indentation pushed the first word out: drop the indentation into the gap.
                        start = j;
                        vis_end = j;
                        x = 0.0;
                        after_space = false;
                    } else {
                        break Outcome::TooWide;
                    }
                }
            }
        };
        let (end, w) = if has_vis { (vis_end, vis_width) } else { (start, 0.0) };
        match outcome {
            Outcome::Hard(nl) => {
                lines.push(LaidLine { start, end, width: w, soft: false });
                i = nl + 1;
                need_empty_line = !sh.ensure(i);
            }
            Outcome::Soft { end, next, width } => {
                lines.push(LaidLine { start, end, width, soft: true });
                i = next;
            }
            Outcome::End => {
                lines.push(LaidLine { start, end, width: w, soft: false });
                i = j;
            }
            Outcome::TooWide => return Layout { lines, consumed: i, complete: false },
        }
    }
}
