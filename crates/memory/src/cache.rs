//! The render cache: a round is rendered once per representation.
//!
//! Key: (SHA-256 of the round's text, realisation, SHA-256 of the [`RenderSpec`] JSON — page size,
//! margins, font chain names *and font hashes* — plus the page ratio). Keying by text rather than by
//! round id lets identical rounds share pages. A realisation is either "rendered for mode M" or
//! "the pages rendered for M, resampled for N"; `Image { mode: M }` and a `Downscale` under
//! re-rendering therefore share entries, and a downsampled level reuses the cached pages of its
//! source mode (that lookup counts as a hit or a miss like any other).

use std::collections::HashMap;
use std::sync::Arc;

use image::RgbImage;
use occ_core::{Mode, TextTokenizer, VisionTokens};
use occ_render::degrade::{self, Degradation, Filter};
use occ_render::{paginate, Lang, RenderSpec};
use sha2::{Digest, Sha256};

use crate::error::MemoryError;
use crate::schedule::Representation;

/// The pages of a round in one representation, shared with the cache.
pub type Pages = Arc<[Page]>;

/// One page of an imaged round.
#[derive(Debug, Clone)]
pub struct Page {
    /// The pixels handed to the VLM (shared with the cache).
    pub image: Arc<RgbImage>,
    /// The mode the page is read in.
    pub mode: Mode,
    /// The ground truth on this page (the pages of a round concatenate to its normalised text).
    pub text: String,
    /// Vision tokens of the page in `mode` ([`Mode::vision_tokens`] on its pixel size).
    pub vision: VisionTokens,
    /// Font size the page was laid out at (before any downsampling).
    pub font_px: f32,
}

/// Hit and miss counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    /// Distinct (text, realisation, spec) entries held.
    pub entries: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Realization {
    Rendered(Mode),
    Resampled { from: Mode, to: Mode },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    text: [u8; 32],
    realization: Realization,
    spec: [u8; 32],
}

/// What rendering needs besides the text.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RenderSettings<'a> {
    pub tokenizer: &'a TextTokenizer,
    pub page_ratio: f64,
    pub lang: Lang,
}

/// Pages by (text, realisation, spec).
#[derive(Debug, Default)]
pub struct RenderCache {
    map: HashMap<Key, Arc<[Page]>>,
    specs: HashMap<Mode, [u8; 32]>,
    stats: CacheStats,
}

/// SHA-256 of a text.
pub(crate) fn text_hash(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

impl RenderCache {
    /// Counters so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats { entries: self.map.len(), ..self.stats }
    }

    /// Empties the cache (counters are kept).
    pub fn clear(&mut self) {
        self.map.clear();
    }

    fn spec_hash(&mut self, mode: Mode, s: &RenderSettings<'_>) -> [u8; 32] {
        *self.specs.entry(mode).or_insert_with(|| {
            let spec = RenderSpec::for_mode(mode, s.lang);
            let json = serde_json::to_string(&spec).unwrap_or_default();
            let mut h = Sha256::new();
            h.update(json.as_bytes());
            h.update(s.page_ratio.to_le_bytes());
            h.finalize().into()
        })
    }

    /// The pages of `text` in an image representation (`None` for text and dropped).
    pub(crate) fn pages(
        &mut self,
        id: &str,
        text: &str,
        text_sha: [u8; 32],
        repr: Representation,
        s: &RenderSettings<'_>,
    ) -> Result<Option<Arc<[Page]>>, MemoryError> {
        let realization = match repr {
            Representation::Image { mode } => Realization::Rendered(mode),
            Representation::Downscale { from, to } => Realization::Resampled { from, to },
            Representation::Text | Representation::Dropped => return Ok(None),
        };
        let source_mode = match realization {
            Realization::Rendered(m) | Realization::Resampled { from: m, .. } => m,
        };
        let key = Key { text: text_sha, realization, spec: self.spec_hash(source_mode, s) };
        if let Some(p) = self.map.get(&key) {
            self.stats.hits += 1;
            return Ok(Some(p.clone()));
        }
        self.stats.misses += 1;
        let pages: Arc<[Page]> = match realization {
            Realization::Rendered(mode) => render(id, text, mode, repr, s)?.into(),
            Realization::Resampled { from, to } => {
                let source =
                    self.pages(id, text, text_sha, Representation::Image { mode: from }, s)?.unwrap_or_default();
                source.iter().map(|p| resample(id, p, to, repr)).collect::<Result<Vec<_>, _>>()?.into()
            }
        };
        self.map.insert(key, pages.clone());
        Ok(Some(pages))
    }
}

fn render(
    id: &str,
    text: &str,
    mode: Mode,
    repr: Representation,
    s: &RenderSettings<'_>,
) -> Result<Vec<Page>, MemoryError> {
    let spec = RenderSpec::for_mode(mode, s.lang);
    let render_err =
        |source| MemoryError::Render { id: id.into(), representation: repr.to_string(), source: Box::new(source) };
    let fitted = paginate(text, s.tokenizer, mode, s.page_ratio, &spec, None).map_err(render_err)?;
    Ok(fitted
        .into_iter()
        .map(|f| Page { image: Arc::new(f.page.image), mode, text: f.page.text, vision: f.vision, font_px: f.font_px })
        .collect())
}

/// `(w, h)` scaled to fit inside `to`'s canvas with the aspect ratio kept (never enlarged).
pub fn fit_inside(w: u32, h: u32, to: Mode) -> (u32, u32) {
    let (cw, ch) = to.default_canvas();
    let scale = (f64::from(cw) / f64::from(w.max(1))).min(f64::from(ch) / f64::from(h.max(1)));
    if scale >= 1.0 {
        return (w, h);
    }
    let sw = (f64::from(w) * scale).round().max(1.0) as u32;
    let sh = (f64::from(h) * scale).round().max(1.0) as u32;
    (sw.min(cw), sh.min(ch))
}

fn resample(id: &str, page: &Page, to: Mode, repr: Representation) -> Result<Page, MemoryError> {
    let (w, h) = page.image.dimensions();
    let (nw, nh) = fit_inside(w, h, to);
    let image = if (nw, nh) == (w, h) {
        page.image.clone()
    } else {
        let d = Degradation::Downscale { width: nw, height: nh, filter: Filter::default(), restore: false };
        Arc::new(degrade::apply(&page.image, &d).map_err(|source| MemoryError::Render {
            id: id.into(),
            representation: repr.to_string(),
            source: Box::new(source),
        })?)
    };
    let vision = to.vision_tokens(nw, nh).map_err(|e| MemoryError::Mode {
        mode: to.to_string(),
        width: nw,
        height: nh,
        message: e.to_string(),
    })?;
    Ok(Page { image, mode: to, text: page.text.clone(), vision, font_px: page.font_px })
}
