//! Full-size parity with the reference on the GPU machine (never in CI).
//!
//! Reads the outputs of `tests/reference/gpu_decoder_parity.py` from `OCC_PARITY_DIR` and checks,
//! for every case (Tiny, Small, Base, Large, Gundam 3 × 2):
//! - f32: greedy tokens (no repetition blocker) identical to the reference for all recorded steps;
//! - f32 again through the optimised path (continuous batching: slot cache, fused decode attention,
//!   CUDA-graph replay): identical tokens;
//! - bf16: with the reference's f32 greedy sequence teacher-forced, logits cosine ≥ 0.999 at every
//!   position and the same argmax at ≥ 99 % of positions; also reported: agreement with the
//!   reference's own bf16 logits and the reference's bf16-vs-f32 agreement (the yardstick).
//!
//! The engines use the synthetic recipe the reference outputs were made with (`recipe_version` of
//! meta.json, 1 when absent: `gpu_decoder_parity.py --recipe`). A report is written to
//! `$OCC_PARITY_DIR/rust_report.json`. Commands: docs/PARITY.md.

use std::path::PathBuf;

use candle_core::{DType, Device, IndexOp, Tensor};
use occ_core::{Mode, Prompt};
use occ_model::batcher::{generate_queue, BatcherConfig};
use occ_model::generate::{generate, GenerationConfig, PromptInput};
use occ_model::pipeline::{DeepseekOcr, SyntheticSize};
use occ_model::preprocess::{load_image, prepare_with_options, PrepareOptions, ResizeOrder};
use occ_model::prompt::build_prompt;
use occ_model::synth::Recipe;

struct Case {
    name: String,
    mode: Mode,
    image: image::RgbImage,
    ids: Vec<u32>,
    greedy: Vec<u32>,
    logits: Tensor,
    /// The reference's own bf16 teacher-forced logits, when the script wrote them.
    logits_bf16: Option<Tensor>,
}

fn cases(dir: &std::path::Path, pages: &std::path::Path) -> Vec<Case> {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).expect("meta.json")).unwrap();
    meta["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let name = c["name"].as_str().unwrap().to_string();
            let t = candle_core::safetensors::load(dir.join(format!("{name}.safetensors")), &Device::Cpu).unwrap();
            let ids = |k: &str| t[k].to_vec1::<i64>().unwrap().into_iter().map(|v| v as u32).collect::<Vec<_>>();
            Case {
                mode: c["mode"].as_str().unwrap().parse().unwrap(),
                image: load_image(&pages.join(c["image"].as_str().unwrap())).unwrap(),
                ids: ids("ids"),
                greedy: ids("greedy"),
                logits: t["logits"].clone(),
                logits_bf16: candle_core::safetensors::load(dir.join(format!("{name}_bf16.safetensors")), &Device::Cpu)
                    .ok()
                    .map(|t| t["logits_bf16"].clone()),
                name,
            }
        })
        .collect()
}

fn prompt_input(e: &DeepseekOcr, c: &Case, device: &Device, order: ResizeOrder) -> PromptInput {
    let prepared = prepare_with_options(&c.image, c.mode, PrepareOptions { order, ..Default::default() }).unwrap();
    let slots = c.mode.vision_tokens(c.image.width(), c.image.height()).unwrap().slots as usize;
    let toks = build_prompt(e.tokenizer(), &Prompt::FreeOcr, &[slots]).unwrap();
    assert_eq!(toks.ids, c.ids, "{}: prompt ids", c.name);
    let rows = e.encoder().encode(&[prepared], device).unwrap().remove(0);
    PromptInput { embeds: e.splice(&toks, &rows).unwrap(), ids: toks.ids }
}

#[test]
#[ignore = "needs a CUDA build (--features cuda), a GPU and reference outputs: set OCC_PARITY_DIR"]
fn full_size_synthetic_parity_with_reference_on_gpu() {
    let dir = PathBuf::from(std::env::var_os("OCC_PARITY_DIR").expect("OCC_PARITY_DIR (gpu_decoder_parity.py --out)"));
    let pages = std::env::var_os("OCC_PARITY_PAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden/encoder/inputs"));
    let device = occ_model::ops::cuda_device(0).expect("a CUDA device (build with --features cuda)");
    let order = reference_resize_order(&dir.join("meta.json"));
    let recipe = reference_recipe(&dir.join("meta.json"));
    let cases = cases(&dir, &pages);
    let mut report = serde_json::Map::new();
    let mut failures = Vec::new();

    let e = DeepseekOcr::synthetic_with_recipe(SyntheticSize::Full, recipe, 0, DType::F32, &device).unwrap();
    for c in &cases {
        let p = prompt_input(&e, c, &device, order);
        let steps = c.greedy.len();
        let cfg = GenerationConfig { ignore_eos: true, ..GenerationConfig::plain_greedy(steps) };
        let out = generate(e.decoder(), std::slice::from_ref(&p), &cfg).unwrap();
        let got = &out.rows[0].tokens;
        let same = got.iter().zip(&c.greedy).take_while(|(a, b)| a == b).count();
        let q = generate_queue(
            e.decoder(),
            &[p],
            &cfg,
            &BatcherConfig { slots: 1, prefill_batch: 1, ..Default::default() },
        )
        .unwrap();
        let same_q = q.rows[0].tokens.iter().zip(&c.greedy).take_while(|(a, b)| a == b).count();
        report.insert(
            format!("{}.f32", c.name),
            serde_json::json!({"identical_prefix": same, "steps": steps,
                "prefill_s": out.prefill.as_secs_f64(), "decode_tok_s": (steps - 1) as f64 / out.decode.as_secs_f64(),
                "optimised_identical_prefix": same_q, "optimised_cuda_graph": q.graph,
                "optimised_decode_tok_s": (steps - 1) as f64 / q.decode.as_secs_f64()}),
        );
        if same != steps {
            failures.push(format!("{} f32: greedy tokens part at step {same} of {steps}", c.name));
        }
        if same_q != steps {
            failures.push(format!("{} f32 optimised path: greedy tokens part at step {same_q} of {steps}", c.name));
        }
    }
    drop(e);

    let e = DeepseekOcr::synthetic_with_recipe(SyntheticSize::Full, recipe, 0, DType::BF16, &device).unwrap();
    for c in &cases {
        let p = prompt_input(&e, c, &device, order);
        let n = c.greedy.len();
        let len = p.ids.len();
        let forced = Tensor::new(&c.greedy[..n - 1], &device).unwrap().unsqueeze(0).unwrap();
        let all = Tensor::cat(&[p.embeds.unsqueeze(0).unwrap(), e.decoder().embed(&forced).unwrap()], 1).unwrap();
        let mut cache = e.decoder().new_cache(vec![0]);
        let h = e.decoder().forward_hidden(&all, 0, &mut cache).unwrap();
        let logits =
            e.decoder().logits(&h.i((0, len - 1..len - 1 + n)).unwrap()).unwrap().to_device(&Device::Cpu).unwrap();
        let r = &c.logits;
        let dot = (&logits * r).unwrap().sum(1).unwrap();
        let norms = (logits.sqr().unwrap().sum(1).unwrap().sqrt().unwrap()
            * r.sqr().unwrap().sum(1).unwrap().sqrt().unwrap())
        .unwrap();
        let cos = (dot / norms).unwrap().to_vec1::<f32>().unwrap();
        let a = logits.argmax(1).unwrap().to_vec1::<u32>().unwrap();
        let b = r.argmax(1).unwrap().to_vec1::<u32>().unwrap();
        let agree = a.iter().zip(&b).filter(|(x, y)| x == y).count() as f64 / n as f64;
        let min_cos = cos.iter().copied().fold(f32::INFINITY, f32::min);
        let vs_ref_bf16 = c.logits_bf16.as_ref().map(|rb| {
            let d = rb.argmax(1).unwrap().to_vec1::<u32>().unwrap();
            let ours_vs = a.iter().zip(&d).filter(|(x, y)| x == y).count() as f64 / n as f64;
            let yardstick = d.iter().zip(&b).filter(|(x, y)| x == y).count() as f64 / n as f64;
            (ours_vs, yardstick)
        });
        report.insert(
            format!("{}.bf16", c.name),
            serde_json::json!({"min_cosine": min_cos, "argmax_agreement": agree,
                "argmax_agreement_with_reference_bf16": vs_ref_bf16.map(|v| v.0),
                "reference_bf16_vs_f32_argmax_agreement": vs_ref_bf16.map(|v| v.1)}),
        );
        if min_cos < 0.999 || agree < 0.99 {
            failures.push(format!("{} bf16: min cosine {min_cos}, argmax agreement {agree}", c.name));
        }
    }
    let text = serde_json::to_string_pretty(&serde_json::Value::Object(report)).unwrap();
    std::fs::write(dir.join("rust_report.json"), &text).unwrap();
    eprintln!("{text}");
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The resize order of the Pillow that made the reference outputs (`"pil"` in their JSON; Pillow 13's
/// order when the file does not say).
pub fn reference_resize_order(meta: &std::path::Path) -> ResizeOrder {
    let text = std::fs::read_to_string(meta).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    match v["pil"].as_str() {
        Some(version) => {
            let order = ResizeOrder::for_pillow_version(version).expect("a Pillow version");
            eprintln!("reference Pillow {version}: resize order {order}");
            order
        }
        None => ResizeOrder::Pillow13,
    }
}

/// The synthetic recipe of the reference outputs (`recipe_version` in their meta.json; 1 when absent).
pub fn reference_recipe(meta: &std::path::Path) -> Recipe {
    let text = std::fs::read_to_string(meta).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    let version = v["recipe_version"].as_u64().unwrap_or(1);
    let recipe = u32::try_from(version).ok().and_then(Recipe::from_version).expect("recipe_version 1 or 2");
    eprintln!("reference outputs on synthetic recipe v{}", recipe.version());
    recipe
}
