//! Bidirectional text: the visual order of each line by the Unicode Bidirectional Algorithm (UAX #9,
//! the unicode-bidi crate).
//!
//! - Lines are broken in logical order by `crate::layout`; each line is then reordered for display
//!   with rules L1–L2 (`BidiInfo::visual_runs`): levels are resolved over the whole paragraph, runs of
//!   odd (right-to-left) level are drawn reversed, and characters of a right-to-left run that have a
//!   mirrored form (brackets, `<`, `«` …) are drawn with the mirrored glyph (rule L4).
//! - The analysis runs on the page's own text (its ground truth), paragraph by paragraph (`\n` ends a
//!   paragraph). A paragraph's direction is that of its first strong character (rules P2–P3): a line
//!   that starts with Hebrew reads right to left, one that starts with Latin left to right; a
//!   paragraph with no strong character is left to right. Explicit embeddings, overrides and isolates
//!   (U+202A–U+202E, U+2066–U+2069) and marks (U+200E, U+200F, U+061C) are honoured; they take no
//!   room and draw nothing.
//! - Alignment stays physical: [`crate::Align::Left`] puts a right-to-left line at the left margin
//!   too (use `Align::Right` for right-to-left documents).
//! - A page without right-to-left characters skips the analysis, so its pixels do not depend on it.

use std::ops::Range;

use unicode_bidi::{BidiClass, BidiInfo};

/// Whether `text` can produce a right-to-left level: it has a strong right-to-left character or a
/// right-to-left embedding, override or isolate. Without one, visual order is logical order.
pub(crate) fn has_rtl(text: &str) -> bool {
    // Every right-to-left class starts at U+0590 (Hebrew): the rest of the text needs no lookup.
    text.chars().any(|c| {
        c >= '\u{0590}'
            && matches!(
                unicode_bidi::bidi_class(c),
                BidiClass::R | BidiClass::AL | BidiClass::RLE | BidiClass::RLO | BidiClass::RLI | BidiClass::FSI
            )
    })
}

/// Whether `c` is an invisible bidi formatting character (embedding, override, isolate or mark).
pub(crate) fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// The mirrored form of `c` drawn in a right-to-left run, if it has one.
pub(crate) fn mirrored(c: char) -> Option<char> {
    unicode_bidi_mirroring::get_mirrored(c)
}

/// The bidi analysis of one page's text.
pub(crate) struct PageBidi<'t> {
    info: Option<BidiInfo<'t>>,
}

impl<'t> PageBidi<'t> {
    /// Analyses `text` (the page's ground truth); cheap when it has no right-to-left characters.
    pub fn new(text: &'t str) -> PageBidi<'t> {
        PageBidi { info: has_rtl(text).then(|| BidiInfo::new(text, None)) }
    }

    /// The runs of the line with byte range `line`, left to right on the page: each a byte range of
    /// the text in logical order and whether it is drawn right to left. `None` means the whole line is
    /// left to right (visual order is logical order).
    pub fn visual_runs(&self, line: Range<usize>) -> Option<Vec<(Range<usize>, bool)>> {
        let info = self.info.as_ref()?;
        if line.is_empty() || line.end > info.text.len() {
            return None;
        }
        let para = info.paragraphs.iter().find(|p| p.range.start <= line.start && line.end <= p.range.end)?;
        if !info.levels[line.clone()].iter().any(|l| l.is_rtl()) {
            return None;
        }
        let (levels, runs) = info.visual_runs(para, line);
        Some(runs.into_iter().map(|r| (r.start..r.end, levels[r.start].is_rtl())).collect())
    }
}
