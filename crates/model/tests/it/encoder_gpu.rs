//! GPU parity of the full DeepEncoder against `tests/reference/gpu_encoder_parity.py` outputs:
//! every mode, both pages, f32 (max-abs ÷ RMS ≤ 1e-4) and bf16 (cosine ≥ 0.999 per row).
//!
//! `OCC_GPU_PARITY_DIR=OUT cargo test --release -p occ-model --features cuda --test it gpu_ -- --ignored --nocapture`

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use occ_core::Mode;
use occ_model::config::VisionConfig;
use occ_model::encoder::DeepEncoder;
use occ_model::preprocess::{load_image, prepare_with_options, PrepareOptions};
use occ_model::synth::synth_var_builder;

use crate::golden::golden_dir;

fn rows_of(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_dtype(DType::F32).unwrap().to_device(&Device::Cpu).unwrap().to_vec2().unwrap()
}

#[test]
#[ignore = "needs CUDA and the output folder of tests/reference/gpu_encoder_parity.py in OCC_GPU_PARITY_DIR"]
fn gpu_encoder_matches_reference_all_modes_f32_bf16() {
    let dir =
        PathBuf::from(std::env::var("OCC_GPU_PARITY_DIR").expect("set OCC_GPU_PARITY_DIR to the reference outputs"));
    let device = occ_model::ops::cuda_device(0).expect("a CUDA device");
    let order = crate::pipeline_gpu::reference_resize_order(&dir.join("summary.json"));
    let mut failures = Vec::new();
    let mut lines = Vec::new();
    for (dtype, tag) in [(DType::F32, "f32"), (DType::BF16, "bf16")] {
        let enc = DeepEncoder::new(&VisionConfig::deepseek_ocr(), synth_var_builder(0, dtype, &device)).unwrap();
        for page in ["page_portrait", "page_landscape"] {
            let img = load_image(&golden_dir().join(format!("inputs/{page}.png"))).unwrap();
            for mode in Mode::OFFICIAL {
                let prepared =
                    prepare_with_options(&img, mode, PrepareOptions { order, ..Default::default() }).unwrap();
                let _ = enc.encode(std::slice::from_ref(&prepared), &device).unwrap(); // warm-up
                device.synchronize().unwrap();
                let t0 = Instant::now();
                let ours = enc.encode(std::slice::from_ref(&prepared), &device).unwrap();
                device.synchronize().unwrap();
                let secs = t0.elapsed().as_secs_f64();
                let file = dir.join(format!("{page}.{mode}.{tag}.safetensors"));
                let reference = candle_core::safetensors::load(&file, &Device::Cpu)
                    .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                let want = rows_of(&reference["rows"]);
                let got = rows_of(&ours[0]);
                assert_eq!(got.len(), want.len(), "{page} {mode} {tag}: row count");
                let (mut max_abs, mut sq, mut n, mut min_cos) = (0f64, 0f64, 0usize, f64::INFINITY);
                for (a, b) in got.iter().zip(&want) {
                    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
                    for (&x, &y) in a.iter().zip(b) {
                        let (x, y) = (f64::from(x), f64::from(y));
                        max_abs = max_abs.max((x - y).abs());
                        sq += y * y;
                        n += 1;
                        dot += x * y;
                        na += x * x;
                        nb += y * y;
                    }
                    min_cos = min_cos.min(dot / (na.sqrt() * nb.sqrt()).max(1e-30));
                }
                let rel = max_abs / (sq / n as f64).sqrt();
                let ok = if dtype == DType::F32 { rel <= 1e-4 } else { min_cos >= 0.999 };
                let line = format!(
                    "{page:<15} {mode:<7} {tag:<4} rows={:<4} rel={rel:.3e} min_cos={min_cos:.6} ours={:.1}ms {}",
                    got.len(),
                    secs * 1e3,
                    if ok { "ok" } else { "FAIL" }
                );
                if !ok {
                    failures.push(line.clone());
                }
                lines.push(line);
            }
        }
    }
    eprintln!("{}", lines.join("\n"));
    assert!(failures.is_empty(), "{failures:#?}");
}
