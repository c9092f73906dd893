//! DeepEncoder forward on CPU for one Tiny page (512², full size, synthetic weights, f32).
//!
//! `cargo bench -p occ-model --bench encoder`

use candle_core::{DType, Device, Tensor};
use criterion::{criterion_group, criterion_main, Criterion};
use occ_model::config::VisionConfig;
use occ_model::encoder::DeepEncoder;
use occ_model::preprocess::{image_tensor, prepare};
use occ_model::synth::synth_var_builder;

fn page() -> image::RgbImage {
    image::RgbImage::from_fn(600, 848, |x, y| {
        let ink = (y / 12) % 2 == 0 && (x * 7 + y) % 5 < 3 && x > 40 && x < 560;
        image::Rgb(if ink { [20, 20, 20] } else { [250, 250, 250] })
    })
}

fn encoder_tiny_page(c: &mut Criterion) {
    let device = Device::Cpu;
    let encoder = match DeepEncoder::new(&VisionConfig::deepseek_ocr(), synth_var_builder(0, DType::F32, &device)) {
        Ok(e) => e,
        Err(e) => panic!("building the encoder: {e}"),
    };
    let prepared = match prepare(&page(), occ_core::Mode::Tiny) {
        Ok(p) => p,
        Err(e) => panic!("preprocessing: {e}"),
    };
    let x = match image_tensor(&prepared.global, &device).and_then(|t| t.unsqueeze(0)) {
        Ok(x) => x,
        Err(e) => panic!("input tensor: {e}"),
    };
    let mut group = c.benchmark_group("encoder");
    group.sample_size(10);
    group.bench_function("tiny_512_cpu_f32", |b| {
        b.iter(|| -> Tensor {
            match encoder.encode_views(&x) {
                Ok(t) => t,
                Err(e) => panic!("encoder forward: {e}"),
            }
        })
    });
    group.finish();
}

criterion_group!(benches, encoder_tiny_page);
criterion_main!(benches);
