//! Training pages, drawn on the fly: a passage (or a generated probe), a target ratio, typography
//! and margins, rendered by occ-render to the exact ratio in the reader's mode; the ground truth is
//! the text placed on the page, spelt in the reader's vocabulary.
//!
//! # Determinism
//! Page `i` of micro-batch `m` of step `s` depends only on `(seed, s, m, i)`: its own generator is
//! seeded from them. So the data order is the same however many threads render, and a resumed run
//! sees exactly the pages an uninterrupted run would.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use image::RgbImage;
use occ_core::tokenizer::IMAGE_ID;
use occ_core::{Mode, TextTokenizer};
use occ_eval::rng::SplitMix64;
use occ_model::mini::OutputVocab;
use occ_render::{fit_to_ratio, Lang, Margins, RenderSpec, RenderedPage};
use rayon::prelude::*;
use serde::Deserialize;

use crate::config::DataConfig;
use crate::error::{TrainError, TrainResult};
use crate::model::Placed;

/// One passage of a corpus file.
#[derive(Debug, Clone, Deserialize)]
pub struct Passage {
    pub id: String,
    pub text: String,
}

/// Reads JSON Lines passages (`.gz` is decompressed); a bad line is an error naming it.
pub fn read_passages(path: &Path) -> TrainResult<Vec<Passage>> {
    let file = std::fs::File::open(path).map_err(|e| TrainError::io(path, e))?;
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut out = Vec::new();
    for (n, line) in BufReader::new(reader).lines().enumerate() {
        let line = line.map_err(|e| TrainError::Passages { path: path.into(), line: n + 1, problem: e.to_string() })?;
        if line.trim().is_empty() {
            continue;
        }
        let p: Passage = serde_json::from_str(&line).map_err(|e| TrainError::Passages {
            path: path.into(),
            line: n + 1,
            problem: e.to_string(),
        })?;
        if p.text.trim().is_empty() {
            return Err(TrainError::Passages { path: path.into(), line: n + 1, problem: "empty text".into() });
        }
        out.push(p);
    }
    if out.is_empty() {
        return Err(TrainError::Passages { path: path.into(), line: 0, problem: "no passages".into() });
    }
    Ok(out)
}

/// What a page's text is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    Prose,
    /// The words of a prose passage in random order.
    ShuffledWords,
    /// Random "words" of letters, digits and punctuation.
    RandomString,
}

/// One rendered training page.
#[derive(Debug, Clone)]
pub struct Page {
    /// The page as the encoder sees it (the mode's global view).
    pub image: RgbImage,
    /// The text on the page.
    pub text: String,
    /// `text` in reader ids (no BOS or EOS).
    pub target: Vec<u32>,
    /// The decoder's teacher-forced input: `target` with a share `data.input_dropout` of its ids
    /// replaced by the image placeholder (equal to `target` when that share is 0).
    pub input: Vec<u32>,
    /// Achieved ratio (text tokens / nominal vision tokens).
    pub ratio: f64,
    pub font_px: f32,
    pub kind: TextKind,
    /// Where each reader token of `text` is drawn (the cell loss's targets): one entry per reader
    /// id of every token that lies on a line (whitespace between lines is on none); empty unless
    /// [`PageSource::place`].
    pub placed: Vec<Placed>,
}

/// Where each token of a rendered page is drawn: the token's byte range is found on its line, and
/// its centre is put at the same share of the line's width as the share of the line's characters
/// before it (proportional placement: exact enough for cells many glyphs wide). Lines drawn in
/// another order than their text (right-to-left runs) are placed as if left to right.
pub fn place_tokens(page: &RenderedPage, tok: &TextTokenizer, vocab: &OutputVocab) -> TrainResult<Vec<Placed>> {
    let (ids, offsets) = tok.encode_with_offsets(&page.text).map_err(|e| TrainError::Render(e.to_string()))?;
    let (w, h) = (page.width.max(1) as f32, page.height.max(1) as f32);
    let mut out = Vec::with_capacity(ids.len() + ids.len() / 4);
    let mut line = 0usize;
    for (&id, &(start, end)) in ids.iter().zip(&offsets) {
        // the token's visible part: leading whitespace belongs to the gap before it
        let piece = page.text.get(start..end).unwrap_or("");
        let lead = piece.len() - piece.trim_start().len();
        let s = start + lead;
        if s >= end {
            continue;
        }
        while line < page.lines.len() && page.lines[line].end <= s {
            line += 1;
        }
        let Some(l) = page.lines.get(line) else { break };
        if s < l.start {
            continue;
        }
        let e = end.min(l.end);
        let chars_before = page.text.get(l.start..s).map_or(0, |t| t.chars().count()) as f32;
        let chars_in = page.text.get(s..e).map_or(1, |t| t.chars().count()) as f32;
        let line_chars = l.text.chars().count().max(1) as f32;
        let x = l.x + l.width * (chars_before + chars_in / 2.0) / line_chars;
        let y = l.y + l.height / 2.0;
        for rid in vocab.spell(tok, &[id]).map_err(|e| TrainError::Render(e.to_string()))? {
            out.push(Placed { id: rid, x: x / w, y: y / h });
        }
    }
    Ok(out)
}

/// Everything page generation needs, shared by the rendering threads.
#[derive(Debug)]
pub struct PageSource {
    pub passages: Vec<Passage>,
    pub cfg: DataConfig,
    pub mode: Mode,
    pub tok: Arc<TextTokenizer>,
    pub vocab: Arc<OutputVocab>,
    /// Longest target (reader ids) a page may have: the decoder's positions minus the prompt and
    /// EOS. A longer draw (random strings spelt in bytes at a high ratio) is redrawn.
    pub max_target: usize,
    /// Whether pages carry [`Page::placed`] (the cell loss's targets; a second tokenization of
    /// every page, so only when `optim.cell_loss` is on). Empty otherwise.
    pub place: bool,
}

/// Uniform draw in `[lo, hi]`.
fn uniform(rng: &mut SplitMix64, lo: f64, hi: f64) -> f64 {
    let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    lo + (hi - lo) * u
}

/// The generator of one page: a pure function of its coordinates.
pub fn page_rng(seed: u64, step: u64, micro: u64, index: u64) -> SplitMix64 {
    let mut g = SplitMix64::new(seed ^ 0x6f63_632d_7472_6169); // "occ-trai"
    let mut mix = |v: u64| {
        let x = g.next_u64() ^ v;
        g = SplitMix64::new(x);
    };
    mix(step);
    mix(micro);
    mix(index);
    g
}

const RANDOM_ALPHABET: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"()-/&%$#@+=*";

impl PageSource {
    /// About `chars` characters of text of the given kind.
    fn text(&self, kind: TextKind, chars: usize, rng: &mut SplitMix64) -> String {
        let mut text = String::new();
        if kind == TextKind::RandomString {
            let alphabet: Vec<char> = RANDOM_ALPHABET.chars().collect();
            while text.len() < chars {
                let len = 1 + rng.below(9);
                for _ in 0..len {
                    text.push(alphabet[rng.below(alphabet.len())]);
                }
                text.push(if rng.below(12) == 0 { '\n' } else { ' ' });
            }
            return text;
        }
        // consecutive passages from a random one, starting at a random word of the first
        let mut p = rng.below(self.passages.len());
        let first = &self.passages[p].text;
        let starts: Vec<usize> =
            first.char_indices().filter(|&(i, c)| i == 0 || c == ' ' || c == '\n').map(|(i, _)| i).collect();
        let start = starts[rng.below(starts.len().div_ceil(2).max(1)).min(starts.len() - 1)];
        text.push_str(first[start..].trim_start());
        while text.len() < chars {
            p = (p + 1) % self.passages.len();
            text.push_str("\n\n");
            text.push_str(&self.passages[p].text);
        }
        if kind == TextKind::ShuffledWords {
            let mut words: Vec<&str> = text.split_whitespace().collect();
            rng.shuffle(&mut words);
            return words.join(" ");
        }
        text
    }

    /// A fitted page as the encoder sees it (the mode's global view), with its target in reader ids.
    fn finish(&self, fitted: occ_render::FittedPage, kind: TextKind) -> TrainResult<Page> {
        let image = occ_model::preprocess::prepare(&fitted.page.image, self.mode)
            .map_err(|e| TrainError::Render(e.to_string()))?
            .global;
        let target = self.vocab.encode(&self.tok, &fitted.page.text).map_err(|e| TrainError::Render(e.to_string()))?;
        let placed = if self.place { place_tokens(&fitted.page, &self.tok, &self.vocab)? } else { Vec::new() };
        Ok(Page {
            placed,
            image,
            ratio: fitted.ratio.nominal,
            font_px: fitted.font_px,
            text: fitted.page.text,
            input: target.clone(),
            target,
            kind,
        })
    }

    /// Renders the page with generator `rng`. A draw that cannot be rendered (a ratio too high for
    /// the smallest font) is redrawn, up to 8 times.
    pub fn page(&self, rng: &mut SplitMix64, ratios: [f64; 2], probe_share: f64) -> TrainResult<Page> {
        let c = &self.cfg;
        let mut last_err = String::new();
        for _ in 0..8 {
            let kind = if uniform(rng, 0.0, 1.0) < probe_share {
                if rng.below(2) == 0 {
                    TextKind::ShuffledWords
                } else {
                    TextKind::RandomString
                }
            } else {
                TextKind::Prose
            };
            let ratio = uniform(rng, ratios[0], ratios[1]);
            let mut spec = RenderSpec::for_mode(self.mode, Lang::En);
            spec.line_height = uniform(rng, f64::from(c.line_height[0]), f64::from(c.line_height[1])) as f32;
            let side = spec.width as f32;
            let m = |rng: &mut SplitMix64| {
                (uniform(rng, f64::from(c.margin[0]), f64::from(c.margin[1])) as f32 * side).round() as u32
            };
            spec.margins = Margins { left: m(rng), right: m(rng), top: m(rng), bottom: m(rng) };
            let vt = self.mode.vision_tokens(spec.width, spec.height).map_err(|e| TrainError::Render(e.to_string()))?;
            let want_tokens = (ratio * f64::from(vt.nominal)).ceil() as usize;
            let text = self.text(kind, want_tokens * 8 + 64, rng);
            let fitted = match fit_to_ratio(&text, &self.tok, self.mode, ratio, &spec) {
                Ok(f) => f,
                Err(e) => {
                    last_err = e.to_string();
                    continue;
                }
            };
            let mut page = self.finish(fitted, kind)?;
            if page.target.len() > self.max_target {
                last_err =
                    format!("{} reader tokens, more than the {} the decoder takes", page.target.len(), self.max_target);
                continue;
            }
            if c.input_dropout > 0.0 {
                let hidden = self.vocab.reader_id(IMAGE_ID).ok_or_else(|| {
                    TrainError::Render("the output vocabulary has no image placeholder for input_dropout".into())
                })?;
                for id in &mut page.input {
                    if uniform(rng, 0.0, 1.0) < c.input_dropout {
                        *id = hidden;
                    }
                }
            }
            return Ok(page);
        }
        Err(TrainError::Render(format!("no renderable page in 8 draws (last: {last_err})")))
    }

    /// The pages of micro-batch `micro` of step `step`, rendered in parallel, in order, at the
    /// ratios and probe share of the step's curriculum stage.
    pub fn batch(&self, seed: u64, step: usize, micro: usize, size: usize) -> TrainResult<Vec<Page>> {
        let (ratios, probes) = (self.cfg.ratios_at(step), self.cfg.probe_share_at(step));
        (0..size)
            .into_par_iter()
            .map(|i| self.page(&mut page_rng(seed, step as u64, micro as u64, i as u64), ratios, probes))
            .collect()
    }

    /// Validation probes at a fixed `ratio`: random strings (even `i`) and shuffled words (odd `i`)
    /// drawn from this source's passages by a generator fixed per page index, default typography of
    /// the mode. No language model can guess them, so the loss on them with the page's own image
    /// against another page's says whether the reader reads (prose can be guessed).
    pub fn fixed_ratio_probes(&self, ratio: f64, n: usize) -> TrainResult<Vec<Page>> {
        (0..n)
            .into_par_iter()
            .map(|i| {
                let kind = if i % 2 == 0 { TextKind::RandomString } else { TextKind::ShuffledWords };
                // as long as a training page of this ratio draws (the probes journaled so far used it)
                let (w, h) = self.mode.default_canvas();
                let vt = self.mode.vision_tokens(w, h).map_err(|e| TrainError::Render(e.to_string()))?;
                let chars = (ratio * f64::from(vt.nominal)).ceil() as usize * 8 + 64;
                let mut rng = page_rng(0x7072_6f62, u64::MAX, 0, i as u64); // "prob": not a training step
                let text = self.text(kind, chars, &mut rng);
                self.fixed_page(&text, kind, ratio, &format!("validation probe {i}"))
            })
            .collect()
    }

    /// Validation pages at a fixed `ratio`: page `i` starts at the start of passage `i` (cycling),
    /// default typography of the mode.
    pub fn fixed_ratio_pages(&self, ratio: f64, n: usize) -> TrainResult<Vec<Page>> {
        (0..n)
            .into_par_iter()
            .map(|i| {
                let mut text = String::new();
                let mut p = i % self.passages.len();
                while text.len() < 16 * 1024 {
                    text.push_str(&self.passages[p].text);
                    text.push_str("\n\n");
                    p = (p + 1) % self.passages.len();
                }
                self.fixed_page(&text, TextKind::Prose, ratio, &format!("validation page {i}"))
            })
            .collect()
    }

    /// A validation page: a prefix of `text` fitted to `ratio` in the mode's default typography,
    /// its target (and input) cut to what the decoder takes.
    fn fixed_page(&self, text: &str, kind: TextKind, ratio: f64, name: &str) -> TrainResult<Page> {
        let spec = RenderSpec::for_mode(self.mode, Lang::En);
        let fitted = fit_to_ratio(text, &self.tok, self.mode, ratio, &spec)
            .map_err(|e| TrainError::Render(format!("{name} at {ratio}x: {e}")))?;
        let mut page = self.finish(fitted, kind)?;
        page.target.truncate(self.max_target);
        page.input.truncate(self.max_target);
        Ok(page)
    }
}
