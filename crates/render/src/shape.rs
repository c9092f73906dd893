//! Complex-script shaping: the right-to-left scripts whose letters join or carry positioned marks go
//! through rustybuzz (HarfBuzz's OpenType shaping, ported to Rust); every other script keeps the
//! renderer's one-glyph-per-character path.
//!
//! - Shaped scripts: **Arabic** (with its supplements and presentation forms), **Syriac**, **N'Ko**
//!   (letters join: initial, medial, final and isolated forms, lam-alef ligatures) and **Hebrew**,
//!   **Thaana** (no joining, but marks such as niqqud are positioned on their base letter).
//! - A *run* is a maximal stretch of characters of one shaped script, together with the zero-width
//!   joiners (U+200C, U+200D) and non-spacing marks inside it, capped at [`MAX_RUN_CHARS`] characters
//!   (a longer stretch without a space is shaped in pieces). Runs end at spaces, so joining never
//!   crosses a word boundary, as in the scripts themselves.
//! - A run is shaped right to left with its script set explicitly. rustybuzz groups glyphs into
//!   clusters (one per base character with its marks, one per ligature); each cluster's glyphs and
//!   advance are given to the cluster's first character and the other characters of the cluster
//!   get no glyph and no advance. The visual order of the clusters is decided by the bidi algorithm
//!   (`crate::bidi`), not by the shaper, so digits and left-to-right text inside a run are placed by
//!   the same rules as everywhere else.
//! - Joining scripts need the face's OpenType `GSUB` table to list the script with the `init`, `medi`
//!   and `fina` features. A face that has the letters but not those features would draw every letter
//!   isolated (wrong), so such text is refused ([`crate::RenderError::UnsupportedScript`]) rather than
//!   drawn. The embedded DejaVu Sans shapes Arabic and N'Ko; no embedded face has Syriac letters (they
//!   are missing glyphs).

use ab_glyph::GlyphId;
use rustybuzz::ttf_parser::Tag;
use rustybuzz::{Direction, UnicodeBuffer};
use unicode_bidi::BidiClass;

/// The longest run shaped at once (characters). Longer runs without a space are split there.
pub const MAX_RUN_CHARS: usize = 1024;

/// A script the renderer shapes with rustybuzz.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShapedScript {
    Hebrew,
    Arabic,
    Syriac,
    Thaana,
    Nko,
}

impl ShapedScript {
    /// Every shaped script.
    pub const ALL: [ShapedScript; 5] =
        [ShapedScript::Hebrew, ShapedScript::Arabic, ShapedScript::Syriac, ShapedScript::Thaana, ShapedScript::Nko];

    /// The shaped script `c` belongs to, by Unicode block.
    pub fn of(c: char) -> Option<ShapedScript> {
        Some(match u32::from(c) {
            0x0591..=0x05FF | 0xFB1D..=0xFB4F => ShapedScript::Hebrew,
            0x0600..=0x06FF | 0x0750..=0x077F | 0x0870..=0x08FF | 0xFB50..=0xFDFF | 0xFE70..=0xFEFF => {
                ShapedScript::Arabic
            }
            0x0700..=0x074F | 0x0860..=0x086F => ShapedScript::Syriac,
            0x0780..=0x07BF => ShapedScript::Thaana,
            0x07C0..=0x07FF => ShapedScript::Nko,
            _ => return None,
        })
    }

    /// English name, as used in messages.
    pub fn name(self) -> &'static str {
        match self {
            ShapedScript::Hebrew => "Hebrew",
            ShapedScript::Arabic => "Arabic",
            ShapedScript::Syriac => "Syriac",
            ShapedScript::Thaana => "Thaana",
            ShapedScript::Nko => "N'Ko",
        }
    }

    /// Whether letters take contextual joining forms (so a face must have the script's joining
    /// features to draw them correctly).
    pub fn joins(self) -> bool {
        matches!(self, ShapedScript::Arabic | ShapedScript::Syriac | ShapedScript::Nko)
    }

    /// The OpenType script tag of the face's `GSUB` table.
    pub fn opentype_tag(self) -> [u8; 4] {
        match self {
            ShapedScript::Hebrew => *b"hebr",
            ShapedScript::Arabic => *b"arab",
            ShapedScript::Syriac => *b"syrc",
            ShapedScript::Thaana => *b"thaa",
            ShapedScript::Nko => *b"nko ",
        }
    }

    fn rustybuzz(self) -> rustybuzz::Script {
        match self {
            ShapedScript::Hebrew => rustybuzz::script::HEBREW,
            ShapedScript::Arabic => rustybuzz::script::ARABIC,
            ShapedScript::Syriac => rustybuzz::script::SYRIAC,
            ShapedScript::Thaana => rustybuzz::script::THAANA,
            ShapedScript::Nko => rustybuzz::script::NKO,
        }
    }

    /// Whether `c` needs the script's joining features: a joining letter, not a presentation form
    /// (those are already shaped), a digit or punctuation.
    pub fn needs_joining(self, c: char) -> bool {
        self.joins()
            && matches!(
                u32::from(c),
                0x0620..=0x064A
                    | 0x066E..=0x066F
                    | 0x0671..=0x06D3
                    | 0x06D5
                    | 0x06EE..=0x06EF
                    | 0x06FA..=0x06FF
                    | 0x0710..=0x072F
                    | 0x074D..=0x077F
                    | 0x0860..=0x086A
                    | 0x0870..=0x0887
                    | 0x08A0..=0x08C9
                    | 0x07CA..=0x07EA
            )
    }
}

/// Scripts among [`ShapedScript::ALL`] whose joining a face supports: its `GSUB` lists the script and
/// the `init`, `medi` and `fina` features exist. A face that does not parse supports none.
pub(crate) fn joining_support(font_data: &[u8]) -> Vec<ShapedScript> {
    let Ok(face) = rustybuzz::ttf_parser::Face::parse(font_data, 0) else {
        return Vec::new();
    };
    let Some(gsub) = face.tables().gsub else {
        return Vec::new();
    };
    let has_feature = |tag: &[u8; 4]| gsub.features.into_iter().any(|f| f.tag == Tag::from_bytes(tag));
    if !(has_feature(b"init") && has_feature(b"medi") && has_feature(b"fina")) {
        return Vec::new();
    }
    ShapedScript::ALL
        .into_iter()
        .filter(|s| s.joins())
        .filter(|s| gsub.scripts.into_iter().any(|r| r.tag == Tag::from_bytes(&s.opentype_tag())))
        .collect()
}

/// Whether `c` continues a shaped run of another character's script: joiners and non-spacing marks.
fn continues_run(c: char) -> bool {
    matches!(c, '\u{200C}' | '\u{200D}') || unicode_bidi::bidi_class(c) == BidiClass::NSM
}

/// The byte end of the run of `script` that starts at byte `start` of `text` (see the module docs).
pub(crate) fn run_end(text: &str, start: usize, script: ShapedScript) -> usize {
    let mut end = start;
    for (n, (i, c)) in text[start..].char_indices().enumerate() {
        if n >= MAX_RUN_CHARS || !(ShapedScript::of(c) == Some(script) || (n > 0 && continues_run(c))) {
            return start + i;
        }
        end = start + i + c.len_utf8();
    }
    end
}

/// One glyph of a cluster, relative to the cluster's left edge on the baseline (em units; y up).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ClusterGlyph {
    pub glyph: GlyphId,
    pub x_em: f32,
    pub y_em: f32,
}

/// A shaped cluster: byte offset of its first character in the run, its advance and its glyphs in
/// visual (left-to-right) order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cluster {
    pub byte: usize,
    pub advance_em: f32,
    pub glyphs: Vec<ClusterGlyph>,
}

/// Shapes `run` (one script, see [`run_end`]) right to left with `face`; clusters come out in
/// logical order.
pub(crate) fn shape_run(face: &rustybuzz::Face<'_>, run: &str, script: ShapedScript) -> Vec<Cluster> {
    let upem = face.units_per_em().max(1) as f32;
    let mut buffer = UnicodeBuffer::new();
    buffer.push_str(run);
    buffer.set_direction(Direction::RightToLeft);
    buffer.set_script(script.rustybuzz());
    let out = rustybuzz::shape(face, &[], buffer);
    // Right-to-left output is in visual order, clusters descending: group it, then reverse the list of
    // clusters (not the glyphs inside each one) to get logical order.
    let mut clusters: Vec<Cluster> = Vec::new();
    for (info, pos) in out.glyph_infos().iter().zip(out.glyph_positions()) {
        let byte = info.cluster as usize;
        if clusters.last().is_none_or(|c| c.byte != byte) {
            clusters.push(Cluster { byte, advance_em: 0.0, glyphs: Vec::new() });
        }
        if let Some(c) = clusters.last_mut() {
            c.glyphs.push(ClusterGlyph {
                glyph: GlyphId(u16::try_from(info.glyph_id).unwrap_or(0)),
                x_em: c.advance_em + pos.x_offset as f32 / upem,
                y_em: pos.y_offset as f32 / upem,
            });
            c.advance_em += pos.x_advance as f32 / upem;
        }
    }
    clusters.reverse();
    clusters
}
