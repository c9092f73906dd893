//! The shipped mini reader (`models/occ-mini-s`, or any reader folder named by `$OCC_MINI`) reading
//! pages on CPU, f32: one page, and a batch of 8, each a page of English prose rendered at 5× and at
//! 10× in the reader's mode. Each page is decoded for exactly as many tokens as its text has (the
//! tokenizer's count, EOS suppressed), so the figure is the architecture's speed on that page
//! whatever the weights have learnt (a reader that stops early or runs on would time something
//! else). Throughput is pages per second (criterion reports elements/s).
//!
//! `cargo bench -p occ-model --bench mini` (`OCC_MINI=DIR cargo bench …` for another reader)

use std::path::PathBuf;

use candle_core::{DType, Device};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use occ_core::{Mode, Prompt, TextTokenizer};
use occ_model::generate::GenerationConfig;
use occ_model::pipeline::DeepseekOcr;

const TEXT: &str = include_str!("../../../datasets/samples/moby-dick-ch1.txt");

fn reader() -> DeepseekOcr {
    let dir = std::env::var_os("OCC_MINI")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/occ-mini-s"));
    match DeepseekOcr::from_mini_dir(&dir, DType::F32, &Device::Cpu) {
        Ok(r) => r,
        Err(e) => panic!("the shipped reader {}: {e}", dir.display()),
    }
}

/// The page and its text's token count.
fn page(mode: Mode, ratio: f64) -> (image::RgbImage, usize) {
    let tok = TextTokenizer::deepseek_ocr().unwrap_or_else(|e| panic!("tokenizer: {e}"));
    let spec = occ_render::RenderSpec::for_mode(mode, occ_render::Lang::En);
    match occ_render::fit_to_ratio(TEXT, &tok, mode, ratio, &spec) {
        Ok(p) => (p.page.image, p.text_tokens),
        Err(e) => panic!("rendering: {e}"),
    }
}

fn mini_reader(c: &mut Criterion) {
    let engine = reader();
    let mode = engine.native_mode().unwrap_or_else(|| panic!("not a mini reader"));
    let mut group = c.benchmark_group("mini_reader");
    group.sample_size(10);
    for ratio in [5.0, 10.0] {
        let (img, tokens) = page(mode, ratio);
        let gen = GenerationConfig { max_new_tokens: tokens + 1, ignore_eos: true, ..GenerationConfig::hf_infer() };
        for batch in [1usize, 8] {
            let pages: Vec<(&image::RgbImage, Mode)> = (0..batch).map(|_| (&img, mode)).collect();
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_function(format!("cpu_f32_{ratio}x_batch{batch}"), |b| {
                b.iter(|| match engine.ocr(&pages, &Prompt::FreeOcr, &gen) {
                    Ok(o) => o,
                    Err(e) => panic!("reading: {e}"),
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, mini_reader);
criterion_main!(benches);
