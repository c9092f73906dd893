//! Line breaking: greedy first-fit over normalised text, in logical order; each line is reordered for
//! display afterwards (`crate::bidi`).
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
//!   the same face on the same line. Right-to-left scripts that join or carry marks (Arabic, Hebrew …)
//!   are shaped word by word with rustybuzz (`crate::shape`): their advances are those of the shaped
//!   clusters and they take no `kern` pairs. Bidi formatting characters (U+200E, U+200F, U+061C,
//!   U+202A–U+202E, U+2066–U+2069) and joiners outside a shaped word (U+200C, U+200D) take no room.
//!
//! A line fits when its advance width (trailing spaces excluded) is at most the content width. A single
//! character wider than the content width ends the page there (the rest overflows).

use std::collections::HashMap;

use ab_glyph::{Font, GlyphId};

use crate::bidi::is_bidi_control;
use crate::font::{FontSet, GlyphRef};
use crate::shape::{run_end, shape_run, ClusterGlyph, ShapedScript};

/// Tolerance of the width comparison, in pixels.
const WIDTH_EPS: f32 = 1e-3;

/// Break class of a character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Newline,
    Space,
    Cjk,
    Other,
    /// Invisible formatting characters: no room, no ink, never missing.
    Format,
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
    /// The glyph on the one-glyph path; for shaped characters, the face of their run (and `found`).
    pub glyph: GlyphRef,
    pub advance_em: f32,
    /// Kerning with the previous character of the text when both come from the same face.
    pub kern_prev_em: f32,
    /// Whether the character belongs to a shaped run: it is drawn with its cluster's glyphs (the first
    /// character of a cluster) or not at all (the others).
    pub shaped: bool,
    /// The cluster's glyphs: `Shaper::glyphs[start..start + len]` as `(start, len)`.
    pub cluster: (u32, u32),
    /// Set when the character needs joining forms that the face drawing it lacks (it is then
    /// measured on the one-glyph path, and drawing the page is refused).
    pub unshapable: Option<ShapedScript>,
}

impl Shaped {
    fn new(byte: usize, ch: char, class: Class, glyph: GlyphRef, advance_em: f32) -> Shaped {
        Shaped {
            byte,
            ch,
            class,
            glyph,
            advance_em,
            kern_prev_em: 0.0,
            shaped: false,
            cluster: (0, 0),
            unshapable: None,
        }
    }

    /// Whether `kern` pairs apply to the character.
    fn kernable(&self) -> bool {
        !self.shaped && self.glyph.found && matches!(self.class, Class::Space | Class::Cjk | Class::Other)
    }
}

/// Lazily shapes characters as layout asks for them, so that a page never shapes more of a long text
/// than it can hold.
pub(crate) struct Shaper<'a> {
    text: &'a str,
    fonts: &'a FontSet,
    pos: usize,
    pub items: Vec<Shaped>,
    /// Glyphs of shaped clusters (see [`Shaped::cluster`]).
    pub glyphs: Vec<ClusterGlyph>,
    ascii: [Option<(GlyphRef, f32)>; 128],
    other: HashMap<char, (GlyphRef, f32)>,
    /// rustybuzz's view of each face, parsed on first use (`None` inside: the face does not parse).
    shapers: Vec<Option<Option<rustybuzz::Face<'a>>>>,
}

impl<'a> Shaper<'a> {
    pub fn new(text: &'a str, fonts: &'a FontSet) -> Shaper<'a> {
        Shaper {
            text,
            fonts,
            pos: 0,
            items: Vec::new(),
            glyphs: Vec::new(),
            ascii: [None; 128],
            other: HashMap::new(),
            shapers: Vec::new(),
        }
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
            match ShapedScript::of(ch) {
                Some(script) => {
                    let end = run_end(self.text, byte, script).max(byte + ch.len_utf8());
                    self.push_run(byte, end, script);
                    self.pos = end;
                }
                None => {
                    self.pos += ch.len_utf8();
                    self.push(byte, ch);
                }
            }
        }
        true
    }

    /// The cluster glyphs of item `k`.
    pub fn cluster_glyphs(&self, k: usize) -> &[ClusterGlyph] {
        let (start, len) = self.items[k].cluster;
        self.glyphs.get(start as usize..(start + len) as usize).unwrap_or(&[])
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

    /// One character on the one-glyph path.
    fn push(&mut self, byte: usize, ch: char) {
        let class = match ch {
            '\n' => Class::Newline,
            ' ' => Class::Space,
            '\u{200C}' | '\u{200D}' => Class::Format,
            c if is_bidi_control(c) => Class::Format,
            c if is_cjk(c) => Class::Cjk,
            _ => Class::Other,
        };
        let mut item = if matches!(class, Class::Newline | Class::Format) {
            Shaped::new(byte, ch, class, GlyphRef { face: 0, glyph: GlyphId(0), found: true }, 0.0)
        } else {
            let (glyph, advance_em) = self.glyph(ch);
            Shaped::new(byte, ch, class, glyph, advance_em)
        };
        if let Some(prev) = self.items.last() {
            if prev.kernable() && item.kernable() && prev.glyph.face == item.glyph.face {
                item.kern_prev_em =
                    self.fonts.faces()[usize::from(item.glyph.face)].kern_em(prev.glyph.glyph, item.glyph.glyph);
            }
        }
        self.items.push(item);
    }

    /// The face a run of `script` is drawn with: the first face that has every character of the
    /// script in it, else the first that has its first character, else the primary face.
    fn run_face(&self, run: &str, script: ShapedScript) -> usize {
        let faces = self.fonts.faces();
        let has = |f: usize, c: char| faces[f].font().glyph_id(c).0 != 0;
        let letters = || run.chars().filter(|c| ShapedScript::of(*c) == Some(script));
        (0..faces.len())
            .find(|&f| letters().all(|c| has(f, c)))
            .or_else(|| letters().next().and_then(|first| (0..faces.len()).find(|&f| has(f, first))))
            .unwrap_or(0)
    }

    fn shaper(&mut self, face: usize) -> Option<&rustybuzz::Face<'a>> {
        if self.shapers.len() <= face {
            self.shapers.resize_with(face + 1, || None);
        }
        let fonts = self.fonts;
        self.shapers[face].get_or_insert_with(|| rustybuzz::Face::from_slice(fonts.faces()[face].data(), 0)).as_ref()
    }

    /// The characters of `text[start..end]`, one run of `script`, shaped together.
    fn push_run(&mut self, start: usize, end: usize, script: ShapedScript) {
        let (text, fonts) = (self.text, self.fonts);
        let run = &text[start..end];
        let fi = self.run_face(run, script);
        let face = &fonts.faces()[fi];
        let joins_missing = || run.chars().any(|c| script.needs_joining(c) && face.font().glyph_id(c).0 != 0);
        let clusters = if face.shapes(script) { self.shaper(fi).map(|rb| shape_run(rb, run, script)) } else { None };
        let Some(clusters) = clusters else {
            // No shaping possible: measure on the one-glyph path and flag the characters that needed it.
            let unshapable = (script.joins() && joins_missing()).then_some(script);
            for (i, c) in run.char_indices() {
                self.push(start + i, c);
                if let Some(item) = self.items.last_mut() {
                    item.unshapable = unshapable;
                }
            }
            return;
        };
        let face_id = u16::try_from(fi).unwrap_or(0);
        let mut next = clusters.iter().peekable();
        let mut chars = run.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            let char_end = chars.peek().map_or(run.len(), |(j, _)| *j);
            // Every cluster that starts inside this character belongs to it (normally exactly the one
            // starting at its first byte, or none for the later characters of a cluster).
            let first = self.glyphs.len();
            let mut advance = 0.0f32;
            while let Some(cl) = next.next_if(|cl| cl.byte < char_end) {
                for g in &cl.glyphs {
                    self.glyphs.push(ClusterGlyph { x_em: g.x_em + advance, ..*g });
                }
                advance += cl.advance_em;
            }
            let len = self.glyphs.len() - first;
            let joiner = matches!(c, '\u{200C}' | '\u{200D}');
            let found = joiner || face.font().glyph_id(c).0 != 0;
            let lead = self.glyphs.get(first).map_or(GlyphId(0), |g| g.glyph);
            let mut item =
                Shaped::new(start + i, c, Class::Other, GlyphRef { face: face_id, glyph: lead, found }, advance);
            item.shaped = true;
            item.cluster = (first as u32, len as u32);
            self.items.push(item);
        }
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
                Class::Cjk | Class::Other | Class::Format => {
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
