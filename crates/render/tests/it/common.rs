//! Shared helpers: corpora, the tokenizer, and the page invariants every test checks.

use std::path::PathBuf;
use std::sync::OnceLock;

use occ_core::TextTokenizer;
use occ_render::{normalize, RenderSpec, RenderedPage};

/// The real DeepSeek-OCR tokenizer, loaded once per test binary.
pub fn tokenizer() -> &'static TextTokenizer {
    static TOK: OnceLock<TextTokenizer> = OnceLock::new();
    TOK.get_or_init(|| TextTokenizer::deepseek_ocr().expect("embedded tokenizer loads"))
}

fn corpus(name: &str) -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../datasets").join(name);
    let body = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading corpus {}: {e}", path.display()));
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            v["text"].as_str().unwrap_or_else(|| panic!("{}: line without \"text\"", path.display())).to_string()
        })
        .collect()
}

/// English prose passages (datasets/en.jsonl).
pub fn en_passages() -> &'static [String] {
    static C: OnceLock<Vec<String>> = OnceLock::new();
    C.get_or_init(|| corpus("en.jsonl"))
}

/// Chinese prose passages (datasets/zh.jsonl, 三国演义 first).
pub fn zh_passages() -> &'static [String] {
    static C: OnceLock<Vec<String>> = OnceLock::new();
    C.get_or_init(|| corpus("zh.jsonl"))
}

/// At least `min_bytes` of English prose: consecutive passages joined by a blank line.
pub fn en_text(min_bytes: usize) -> String {
    join_until(en_passages(), min_bytes)
}

/// At least `min_bytes` of English running prose: the corpus from Moby-Dick's chapter 1 on, without
/// the "Extracts" (short quotations and verse, one or two lines each, which fill a page with line
/// breaks rather than text).
pub fn en_prose(min_bytes: usize) -> String {
    let start = en_passages().iter().position(|p| p.starts_with("CHAPTER 1")).unwrap_or(5);
    join_until(&en_passages()[start..], min_bytes)
}

/// At least `min_bytes` of Chinese prose.
pub fn zh_text(min_bytes: usize) -> String {
    join_until(zh_passages(), min_bytes)
}

fn join_until(passages: &[String], min_bytes: usize) -> String {
    let mut s = String::new();
    for p in passages.iter().cycle().take(passages.len() * 4) {
        if s.len() >= min_bytes {
            break;
        }
        if !s.is_empty() {
            s.push_str("\n\n");
        }
        s.push_str(p);
    }
    s
}

/// Checks the structural invariants of a page rendered from `input` with `spec`; returns a list of
/// violations (empty when the page is consistent).
pub fn violations(page: &RenderedPage, spec: &RenderSpec, input: &str) -> Vec<String> {
    let mut v = Vec::new();
    let norm = normalize(input, spec.newline, spec.tab_width);
    if page.image.dimensions() != (spec.width, spec.height) {
        v.push(format!("canvas {:?} != {}x{}", page.image.dimensions(), spec.width, spec.height));
    }
    if format!("{}{}", page.text, page.overflow) != norm {
        v.push("text + overflow != normalised input".into());
    }
    let (l, r) = (spec.margins.left as f32, (spec.width - spec.margins.right) as f32);
    let (t, b) = (spec.margins.top as f32, (spec.height - spec.margins.bottom) as f32);
    let eps = 1e-3;
    let mut pos = 0usize;
    for (i, line) in page.lines.iter().enumerate() {
        if line.x < l - eps || line.x + line.width > r + eps || line.y < t - eps || line.y + line.height > b + eps {
            v.push(format!(
                "line {i} box ({}, {}, {}, {}) outside the margins",
                line.x, line.y, line.width, line.height
            ));
        }
        if i > 0 {
            let prev = &page.lines[i - 1];
            if line.y < prev.y + prev.height - eps {
                v.push(format!("line {i} overlaps line {}", i - 1));
            }
        }
        if page.text.get(line.start..line.end) != Some(line.text.as_str()) {
            v.push(format!("line {i} text {:?} is not text[{}..{}]", line.text, line.start, line.end));
        }
        match page.text.get(pos..line.start) {
            Some(gap) if gap.chars().all(|c| c == ' ' || c == '\n') => {}
            other => v.push(format!("gap before line {i} is not whitespace: {other:?}")),
        }
        if let Some(visual) = &line.visual {
            if visual.chars().count() != line.text.chars().count() {
                v.push(format!("line {i} visual {visual:?} is not a reordering of {:?}", line.text));
            }
        }
        if line.text.ends_with(' ') {
            v.push(format!("line {i} text {:?} ends with a space", line.text));
        }
        pos = line.end;
    }
    match page.text.get(pos..) {
        Some(tail) if tail.chars().all(|c| c == ' ' || c == '\n') => {}
        other => v.push(format!("text after the last line is not whitespace: {other:?}")),
    }
    // No ink in the margins.
    let bg = image::Rgb(spec.bg);
    for (x, y, p) in page.image.enumerate_pixels() {
        let inside = x >= spec.margins.left
            && x < spec.width - spec.margins.right
            && y >= spec.margins.top
            && y < spec.height - spec.margins.bottom;
        if !inside && *p != bg {
            v.push(format!("ink in the margin at ({x}, {y})"));
            break;
        }
    }
    v
}

/// Asserts [`violations`] is empty.
pub fn assert_consistent(page: &RenderedPage, spec: &RenderSpec, input: &str) {
    let v = violations(page, spec, input);
    assert!(v.is_empty(), "page invariants violated:\n{}", v.join("\n"));
}

/// Pixels that differ from the background inside `(x0, y0)..(x1, y1)`.
pub fn ink_in(page: &RenderedPage, bg: [u8; 3], x0: f32, y0: f32, x1: f32, y1: f32) -> usize {
    let (w, h) = page.image.dimensions();
    let (x0, y0) = (x0.max(0.0) as u32, y0.max(0.0) as u32);
    let (x1, y1) = ((x1.ceil() as u32).min(w), (y1.ceil() as u32).min(h));
    let mut n = 0;
    for y in y0..y1 {
        for x in x0..x1 {
            if page.image.get_pixel(x, y).0 != bg {
                n += 1;
            }
        }
    }
    n
}
