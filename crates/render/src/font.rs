//! Fonts: the embedded faces and the per-glyph fallback chain.
//!
//! The faces are embedded so that every test and binary renders without system fonts:
//! - **DejaVu Sans** 2.37 from the `dejavu` crate (Latin, Greek, Cyrillic, Arabic, Hebrew, symbols);
//! - **Droid Sans Fallback** (`DroidSansFallbackFull.ttf` from Debian `fonts-droid-fallback`, Apache-2.0,
//!   see `assets/fonts/PROVENANCE.md`) for CJK;
//! - **DejaVu Serif** and **DejaVu Sans Mono** 2.37 (the `dejavu` crate), the other typefaces a sweep
//!   can set its pages in ([`FontFamily`]).
//!
//! Known gaps of the default chain: Korean Hangul syllables, Syriac and most emoji (DejaVu has a few,
//! e.g. U+1F600) are in neither face and are reported as missing glyphs. Right-to-left scripts are
//! shaped where they need it (`crate::shape`): DejaVu Sans has the OpenType joining features for
//! Arabic and N'Ko.
//!
//! A character is drawn with the first face of the chain that has a glyph for it. A character no face
//! has is drawn as the **primary face's `.notdef` box**, kept in the ground truth and counted in
//! [`crate::MissingGlyphs`].

use std::fmt;
use std::sync::{Arc, OnceLock};

use ab_glyph::{Font, FontArc, GlyphId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{RenderError, Result};
use crate::shape::{joining_support, ShapedScript};

/// `DroidSansFallbackFull.ttf`, Debian `fonts-droid-fallback` 1:6.0.1r16-1.1.
const DROID_SANS_FALLBACK: &[u8] = include_bytes!("../assets/fonts/DroidSansFallbackFull.ttf");

/// The faces compiled into the crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum BuiltinFont {
    /// DejaVu Sans 2.37 (the `dejavu` crate).
    DejaVuSans,
    /// Droid Sans Fallback (CJK), vendored from Debian.
    DroidSansFallback,
    /// DejaVu Serif 2.37 (the `dejavu` crate).
    DejaVuSerif,
    /// DejaVu Sans Mono 2.37 (the `dejavu` crate).
    DejaVuSansMono,
}

impl BuiltinFont {
    /// Every built-in face.
    pub const ALL: [BuiltinFont; 4] = [
        BuiltinFont::DejaVuSans,
        BuiltinFont::DroidSansFallback,
        BuiltinFont::DejaVuSerif,
        BuiltinFont::DejaVuSansMono,
    ];

    /// Display name, as written into page metadata.
    pub fn name(self) -> &'static str {
        match self {
            BuiltinFont::DejaVuSans => "DejaVu Sans",
            BuiltinFont::DroidSansFallback => "Droid Sans Fallback",
            BuiltinFont::DejaVuSerif => "DejaVu Serif",
            BuiltinFont::DejaVuSansMono => "DejaVu Sans Mono",
        }
    }

    /// The font file.
    pub fn bytes(self) -> &'static [u8] {
        match self {
            BuiltinFont::DejaVuSans => dejavu::sans::regular(),
            BuiltinFont::DroidSansFallback => DROID_SANS_FALLBACK,
            BuiltinFont::DejaVuSerif => dejavu::serif::regular(),
            BuiltinFont::DejaVuSansMono => dejavu::sans_mono::regular(),
        }
    }

    fn from_name(name: &str) -> Option<BuiltinFont> {
        BuiltinFont::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// The typeface a page is set in: its primary face, with DejaVu Sans (where the family is another) and
/// Droid Sans Fallback behind it, so that every family covers what the default chain covers.
/// Written in experiment specs and results by its [`FontFamily::name`] (`dejavu-sans`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FontFamily {
    /// DejaVu Sans (the default chain, [`FontSet::default_chain`]).
    #[default]
    DejavuSans,
    /// DejaVu Serif.
    DejavuSerif,
    /// DejaVu Sans Mono.
    DejavuSansMono,
    /// Droid Sans Fallback for every script (its Latin is a humanist sans).
    DroidSansFallback,
}

/// A name that is not a [`FontFamily`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown font family {0:?}: expected dejavu-sans, dejavu-serif, dejavu-sans-mono or droid-sans-fallback")]
pub struct UnknownFontFamily(pub String);

impl FontFamily {
    /// Every family, the default first.
    pub const ALL: [FontFamily; 4] =
        [FontFamily::DejavuSans, FontFamily::DejavuSerif, FontFamily::DejavuSansMono, FontFamily::DroidSansFallback];

    /// The name used in specs and results.
    pub fn name(self) -> &'static str {
        match self {
            FontFamily::DejavuSans => "dejavu-sans",
            FontFamily::DejavuSerif => "dejavu-serif",
            FontFamily::DejavuSansMono => "dejavu-sans-mono",
            FontFamily::DroidSansFallback => "droid-sans-fallback",
        }
    }

    /// The fallback chain of the family.
    pub fn chain(self) -> FontSet {
        match self {
            FontFamily::DejavuSans => FontSet::default_chain(),
            FontFamily::DejavuSerif => {
                FontSet::builtin(&[BuiltinFont::DejaVuSerif, BuiltinFont::DejaVuSans, BuiltinFont::DroidSansFallback])
                    .expect("invariant: the embedded fonts parse (tested by every_family_parses)")
            }
            FontFamily::DejavuSansMono => FontSet::builtin(&[
                BuiltinFont::DejaVuSansMono,
                BuiltinFont::DejaVuSans,
                BuiltinFont::DroidSansFallback,
            ])
            .expect("invariant: the embedded fonts parse (tested by every_family_parses)"),
            FontFamily::DroidSansFallback => {
                FontSet::builtin(&[BuiltinFont::DroidSansFallback, BuiltinFont::DejaVuSans])
                    .expect("invariant: the embedded fonts parse (tested by every_family_parses)")
            }
        }
    }
}

impl fmt::Display for FontFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for FontFamily {
    type Err = UnknownFontFamily;

    fn from_str(s: &str) -> std::result::Result<FontFamily, UnknownFontFamily> {
        FontFamily::ALL.into_iter().find(|f| f.name() == s.trim()).ok_or_else(|| UnknownFontFamily(s.to_string()))
    }
}

/// The bytes of a font file: embedded, or owned and shared.
#[derive(Clone)]
enum FontData {
    Static(&'static [u8]),
    Shared(Arc<[u8]>),
}

impl FontData {
    fn bytes(&self) -> &[u8] {
        match self {
            FontData::Static(b) => b,
            FontData::Shared(b) => b,
        }
    }
}

/// One parsed face with the metrics layout needs, in em units (1.0 = the font size).
#[derive(Clone)]
pub struct Face {
    name: String,
    sha256: String,
    font: FontArc,
    /// The file, for the shaper (rustybuzz parses it itself).
    data: FontData,
    /// Joining scripts whose OpenType features the face has.
    joining: Vec<ShapedScript>,
    units_per_em: f32,
    /// Ascent above the baseline, em.
    ascent_em: f32,
    /// Descent below the baseline as a positive number, em.
    descent_em: f32,
}

impl Face {
    /// Parses a font file.
    pub fn from_bytes(name: impl Into<String>, bytes: Vec<u8>) -> Result<Face> {
        let name = name.into();
        let sha256 = hex_sha256(&bytes);
        let data = FontData::Shared(Arc::from(bytes.as_slice()));
        let font = FontArc::try_from_vec(bytes)
            .map_err(|e| RenderError::InvalidFont { name: name.clone(), message: e.to_string() })?;
        Self::from_font(name, sha256, font, data)
    }

    fn from_static(name: &str, bytes: &'static [u8]) -> Result<Face> {
        let font = FontArc::try_from_slice(bytes)
            .map_err(|e| RenderError::InvalidFont { name: name.to_string(), message: e.to_string() })?;
        Self::from_font(name.to_string(), hex_sha256(bytes), font, FontData::Static(bytes))
    }

    fn from_font(name: String, sha256: String, font: FontArc, data: FontData) -> Result<Face> {
        let units_per_em = font.units_per_em().filter(|u| *u > 0.0).ok_or_else(|| RenderError::InvalidFont {
            name: name.clone(),
            message: "no units-per-em in the head table".into(),
        })?;
        let ascent_em = font.ascent_unscaled() / units_per_em;
        let descent_em = -font.descent_unscaled() / units_per_em;
        if !(ascent_em.is_finite() && descent_em.is_finite() && ascent_em + descent_em > 0.0) {
            return Err(RenderError::InvalidFont {
                name,
                message: format!("degenerate vertical metrics ascent {ascent_em} em, descent {descent_em} em"),
            });
        }
        let joining = joining_support(data.bytes());
        Ok(Face { name, sha256, font, data, joining, units_per_em, ascent_em, descent_em })
    }

    /// Display name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Hex sha256 of the font file (part of every page's cache key).
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The parsed font.
    pub fn font(&self) -> &FontArc {
        &self.font
    }

    /// The font file.
    pub fn data(&self) -> &[u8] {
        self.data.bytes()
    }

    /// Whether the face has the OpenType joining features of `script` (Arabic, Syriac, N'Ko), so that
    /// its letters are drawn in their contextual forms. Scripts that do not join always return true.
    pub fn shapes(&self, script: ShapedScript) -> bool {
        !script.joins() || self.joining.contains(&script)
    }

    /// Ascent above the baseline in em.
    pub fn ascent_em(&self) -> f32 {
        self.ascent_em
    }

    /// Descent below the baseline in em (positive).
    pub fn descent_em(&self) -> f32 {
        self.descent_em
    }

    /// Horizontal advance of `glyph` in em.
    pub(crate) fn advance_em(&self, glyph: GlyphId) -> f32 {
        self.font.h_advance_unscaled(glyph) / self.units_per_em
    }

    /// Pair kerning (`kern` table) in em.
    pub(crate) fn kern_em(&self, a: GlyphId, b: GlyphId) -> f32 {
        self.font.kern_unscaled(a, b) / self.units_per_em
    }

    /// The ab_glyph scale (which is relative to ascent − descent) for an em size of `px`.
    pub(crate) fn px_scale(&self, px: f32) -> ab_glyph::PxScale {
        ab_glyph::PxScale::from(px * self.font.height_unscaled() / self.units_per_em)
    }
}

impl fmt::Debug for Face {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Face").field("name", &self.name).field("sha256", &self.sha256).finish_non_exhaustive()
    }
}

/// Name and file hash of a face, as serialised in page metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaceInfo {
    pub name: String,
    pub sha256: String,
}

/// An ordered fallback chain of faces; the first face is the primary one.
///
/// Cheap to clone (the faces are shared). Serialises as the list of `{name, sha256}`; deserialising
/// accepts only the built-in faces (checked by name and, when given, hash).
#[derive(Clone)]
pub struct FontSet {
    faces: Arc<[Face]>,
}

/// Where a character's glyph comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GlyphRef {
    /// Index of the face in the chain.
    pub face: u16,
    pub glyph: GlyphId,
    /// False when no face has the character (the primary face's `.notdef` is drawn).
    pub found: bool,
}

impl FontSet {
    /// A chain of the given faces, in fallback order.
    pub fn new(faces: Vec<Face>) -> Result<FontSet> {
        if faces.is_empty() {
            return Err(RenderError::NoFonts);
        }
        if faces.len() > usize::from(u16::MAX) {
            return Err(RenderError::InvalidFont { name: "chain".into(), message: "too many faces".into() });
        }
        Ok(FontSet { faces: faces.into() })
    }

    /// A chain of built-in faces (parsed once per process and shared).
    pub fn builtin(chain: &[BuiltinFont]) -> Result<FontSet> {
        let faces = chain.iter().map(|f| builtin_face(*f)).collect::<Result<Vec<_>>>()?;
        FontSet::new(faces)
    }

    /// DejaVu Sans, then Droid Sans Fallback: covers Latin, Greek, Cyrillic, Arabic, Hebrew and CJK.
    pub fn default_chain() -> FontSet {
        static CHAIN: OnceLock<FontSet> = OnceLock::new();
        CHAIN
            .get_or_init(|| {
                FontSet::builtin(&[BuiltinFont::DejaVuSans, BuiltinFont::DroidSansFallback])
                    .expect("invariant: the embedded fonts parse (tested by fonts_embedded_parse)")
            })
            .clone()
    }

    /// The faces in fallback order.
    pub fn faces(&self) -> &[Face] {
        &self.faces
    }

    /// The first face: its `.notdef` glyph stands in for missing characters.
    pub fn primary(&self) -> &Face {
        &self.faces[0]
    }

    /// Names and hashes, in chain order.
    pub fn info(&self) -> Vec<FaceInfo> {
        self.faces.iter().map(|f| FaceInfo { name: f.name.clone(), sha256: f.sha256.clone() }).collect()
    }

    /// The largest ascent and descent (em) over the chain: line boxes use these so that a glyph from any
    /// face fits vertically.
    pub fn vertical_metrics_em(&self) -> (f32, f32) {
        self.faces.iter().fold((0.0f32, 0.0f32), |(a, d), f| (a.max(f.ascent_em), d.max(f.descent_em)))
    }

    /// Whether some face of the chain has a glyph for `c`.
    pub fn has_glyph(&self, c: char) -> bool {
        self.lookup(c).found
    }

    /// Advance width in pixels of `text` set on one line at an em size of `px`, as layout measures it:
    /// kerning between neighbours of the same face, shaped words of right-to-left scripts at the
    /// advance of their clusters, formatting characters at zero.
    pub fn measure(&self, text: &str, px: f32) -> f32 {
        let mut sh = crate::layout::Shaper::new(text, self);
        let mut x = 0.0f32;
        let mut k = 0;
        while sh.ensure(k) {
            let s = &sh.items[k];
            x += (s.kern_prev_em + s.advance_em) * px;
            k += 1;
        }
        x
    }

    /// The first face with a glyph for `c`, or the primary face's `.notdef`.
    pub(crate) fn lookup(&self, c: char) -> GlyphRef {
        for (i, face) in self.faces.iter().enumerate() {
            let g = face.font.glyph_id(c);
            if g.0 != 0 {
                return GlyphRef { face: i as u16, glyph: g, found: true };
            }
        }
        GlyphRef { face: 0, glyph: GlyphId(0), found: false }
    }
}

fn builtin_face(font: BuiltinFont) -> Result<Face> {
    static DEJAVU: OnceLock<std::result::Result<Face, String>> = OnceLock::new();
    static DROID: OnceLock<std::result::Result<Face, String>> = OnceLock::new();
    static SERIF: OnceLock<std::result::Result<Face, String>> = OnceLock::new();
    static MONO: OnceLock<std::result::Result<Face, String>> = OnceLock::new();
    let cell = match font {
        BuiltinFont::DejaVuSans => &DEJAVU,
        BuiltinFont::DroidSansFallback => &DROID,
        BuiltinFont::DejaVuSerif => &SERIF,
        BuiltinFont::DejaVuSansMono => &MONO,
    };
    cell.get_or_init(|| Face::from_static(font.name(), font.bytes()).map_err(|e| e.to_string()))
        .clone()
        .map_err(|message| RenderError::InvalidFont { name: font.name().into(), message })
}

impl fmt::Debug for FontSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.faces.iter().map(|face| &face.name)).finish()
    }
}

impl PartialEq for FontSet {
    fn eq(&self, other: &FontSet) -> bool {
        self.faces.len() == other.faces.len()
            && self.faces.iter().zip(other.faces.iter()).all(|(a, b)| a.sha256 == b.sha256)
    }
}

impl Serialize for FontSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.info().serialize(s)
    }
}

impl<'de> Deserialize<'de> for FontSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<FontSet, D::Error> {
        #[derive(Deserialize)]
        struct Entry {
            name: String,
            sha256: Option<String>,
        }
        let entries = Vec::<Entry>::deserialize(d)?;
        let mut chain = Vec::with_capacity(entries.len());
        for e in entries {
            let font = BuiltinFont::from_name(&e.name).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "font {:?} is not built in (expected \"DejaVu Sans\", \"Droid Sans Fallback\", \"DejaVu Serif\" \
                     or \"DejaVu Sans Mono\")",
                    e.name
                ))
            })?;
            chain.push((font, e.sha256));
        }
        let set =
            FontSet::builtin(&chain.iter().map(|(f, _)| *f).collect::<Vec<_>>()).map_err(serde::de::Error::custom)?;
        for ((font, want), face) in chain.iter().zip(set.faces.iter()) {
            if let Some(want) = want {
                if *want != face.sha256 {
                    return Err(serde::de::Error::custom(format!(
                        "font {}: sha256 {want} does not match the built-in file {}",
                        font.name(),
                        face.sha256
                    )));
                }
            }
        }
        Ok(set)
    }
}

/// Lower-case hex sha256.
pub(crate) fn hex_sha256(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}
