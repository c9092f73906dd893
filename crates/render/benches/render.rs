//! Renderer throughput: pages/s at a known font size and with the ratio fitting, Tiny and Base at
//! ratio 10 on fixed English prose (datasets/en.jsonl). See docs/PERFORMANCE.md "## Renderer".
//!
//! `cargo bench -p occ-render --bench render`

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use occ_core::{Mode, TextTokenizer};
use occ_render::fit::{fit_font_px, fit_to_ratio, FitOptions};
use occ_render::{render_page, Lang, RenderSpec};

/// About 60 kB of running English prose: the passages of datasets/en.jsonl from Moby-Dick's chapter 1
/// on, joined by blank lines (`benches/render_pillow.py --make-text` writes the same text).
fn text() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../datasets/en.jsonl");
    let body = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let passages: Vec<String> = body
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("corpus line is JSON");
            v["text"].as_str().expect("corpus line has text").to_string()
        })
        .collect();
    let start = passages.iter().position(|p| p.starts_with("CHAPTER 1")).expect("chapter 1 in the corpus");
    let mut out = String::new();
    for p in &passages[start..] {
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        out.push_str(p);
        if out.len() > 60_000 {
            break;
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let tok = TextTokenizer::deepseek_ocr().expect("embedded tokenizer");
    let text = text();
    let mut group = c.benchmark_group("render");
    group.throughput(Throughput::Elements(1));
    for mode in [Mode::Tiny, Mode::Base] {
        let spec = RenderSpec::for_mode(mode, Lang::En);
        let fitted = fit_to_ratio(&text, &tok, mode, 10.0, &spec).expect("fits");
        let page_spec = spec.with_font_px(fitted.font_px);
        let page_text = fitted.page.text.clone();
        eprintln!(
            "{mode}: ratio 10 -> {} tokens, {} chars, {} lines at {} px",
            fitted.text_tokens,
            fitted.page.chars,
            fitted.page.lines.len(),
            fitted.font_px
        );
        group.bench_function(format!("known_px/{mode}"), |b| {
            b.iter(|| render_page(black_box(&page_text), black_box(&page_spec)).expect("renders"))
        });
        group.bench_function(format!("fit_font_only/{mode}"), |b| {
            b.iter(|| fit_font_px(black_box(&page_text), black_box(&spec), &FitOptions::default()).expect("fits"))
        });
        group.bench_function(format!("fit_to_ratio/{mode}"), |b| {
            b.iter(|| fit_to_ratio(black_box(&text), &tok, mode, 10.0, black_box(&spec)).expect("fits"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
