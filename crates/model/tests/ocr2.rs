//! DeepSeek-OCR-2 against transformers' implementation, on CPU (goldens of scripts/gen_v2_goldens.py in
//! tests/golden/encoder_v2; docs/PARITY.md, "DeepSeek-OCR-2").
//!
//! - preprocessing: every view of six pages bit-identical to `DeepseekOcr2ImageProcessorPil` (u8 and
//!   normalised f32), in the pass order of the Pillow that made the goldens;
//! - token accounting: `Mode::V2::vision_tokens` equals the processor's tile count and `<image>` count
//!   for sizes covering every tile count 0–6;
//! - encoder: every stage of the reduced tower (SAM, Qwen2 encoder with queries and its mask,
//!   projector) on the global view and the six tiles of the portrait page, and the laid-out rows,
//!   within 1e-4 (max |Δ| ÷ RMS), f32, synthetic weights (recipe 1, seed 0) built on both sides from
//!   the original checkpoint names.

#[allow(dead_code)]
#[path = "it/golden.rs"]
mod golden;

use std::collections::BTreeMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use golden::{assert_reports, sha256_hex, Golden, Report};
use occ_core::Mode;
use occ_model::config_v2::Ocr2VisionConfig;
use occ_model::encoder_v2::{self, Ocr2Encoder, Ocr2Naming};
use occ_model::preprocess::{load_image, PreparedImage, ResizeOrder};
use occ_model::preprocess_v2::{normalize_chw_v2, prepare_v2, views_tensor_v2};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden/encoder_v2")
}

fn json(name: &str) -> serde_json::Value {
    let path = dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn meta_order() -> ResizeOrder {
    ResizeOrder::for_pillow_version(json("meta.json")["pillow"].as_str().expect("meta.json records pillow"))
        .expect("a Pillow version")
}

fn page_path(name: &str) -> PathBuf {
    let v2 = dir().join("inputs").join(name);
    if v2.exists() {
        v2
    } else {
        dir().join("../encoder/inputs").join(name)
    }
}

/// u8 CHW bytes of a view (the processor's layout with rescale/normalise off).
fn chw_u8(img: &image::RgbImage) -> Vec<u8> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut out = vec![0u8; 3 * w * h];
    for (i, px) in img.as_raw().chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * w * h + i] = px[c];
        }
    }
    out
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn v2_preprocessing_is_bit_identical_to_the_transformers_pil_processor() {
    let golden = json("preprocess.json");
    let order = meta_order();
    let pages = golden.as_object().expect("preprocess.json is an object");
    assert!(pages.len() >= 6, "expected at least 6 pages, found {}", pages.len());
    let mut failures = Vec::new();
    let mut tile_counts = std::collections::BTreeSet::new();
    for (name, rec) in pages {
        let img = load_image(&page_path(name)).unwrap();
        let p = prepare_v2(&img, Mode::V2, order).unwrap();
        let want = &rec["pil"];
        let tiles = want["tiles"].as_u64().unwrap() as usize;
        tile_counts.insert(tiles);
        if p.tiles.len() != tiles {
            failures.push(format!("{name}: {} tiles, processor {tiles}", p.tiles.len()));
            continue;
        }
        let check = |what: String, got: String, want: &serde_json::Value, failures: &mut Vec<String>| {
            if Some(got.as_str()) != want.as_str() {
                failures.push(format!("{name} {what}: sha differs"));
            }
        };
        check("global u8".into(), sha256_hex(&chw_u8(&p.global)), &want["global_u8"], &mut failures);
        check(
            "global f32".into(),
            sha256_hex(&f32_bytes(&normalize_chw_v2(&p.global))),
            &want["global_f32"],
            &mut failures,
        );
        for (k, t) in p.tiles.iter().enumerate() {
            check(format!("tile {k} u8"), sha256_hex(&chw_u8(t)), &want["tiles_u8"][k], &mut failures);
            check(
                format!("tile {k} f32"),
                sha256_hex(&f32_bytes(&normalize_chw_v2(t))),
                &want["tiles_f32"][k],
                &mut failures,
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // portrait and landscape (6 tiles), no tiles, 2, 3 and 4 tiles
    assert_eq!(tile_counts.into_iter().collect::<Vec<_>>(), vec![0, 2, 3, 4, 6]);
}

#[test]
fn v2_token_counts_equal_the_processor_for_every_tile_count() {
    let golden = json("tokens.json");
    let rows = golden["rows"].as_array().unwrap();
    let mut covered = std::collections::BTreeSet::new();
    for r in rows {
        let (w, h) = (r["width"].as_u64().unwrap() as u32, r["height"].as_u64().unwrap() as u32);
        let t = Mode::V2.vision_tokens(w, h).unwrap();
        let tiles = r["tiles"].as_u64().unwrap() as u32;
        assert_eq!(t.grid.tiles(), tiles, "{w}x{h}: tiles");
        if tiles > 0 {
            let grid = (r["across"].as_u64().unwrap() as u32, r["down"].as_u64().unwrap() as u32);
            assert_eq!((t.grid.across, t.grid.down), grid, "{w}x{h}: grid");
        }
        assert_eq!(u64::from(t.slots), r["image_tokens"].as_u64().unwrap(), "{w}x{h}: <image> tokens");
        assert_eq!(t.nominal + 1, t.slots, "{w}x{h}");
        covered.insert(tiles);
    }
    // 1 tile is impossible (min_patches = 2); every other count 0..=6 is covered.
    assert_eq!(covered.into_iter().collect::<Vec<_>>(), vec![0, 2, 3, 4, 5, 6]);
}

/// Records every stage of a forward, under `prefix.stage`.
fn run_probed(encoder: &Ocr2Encoder, pixels: &Tensor, prefix: &str) -> BTreeMap<String, Tensor> {
    let mut seen = BTreeMap::new();
    let mut probe = |stage: &str, t: &Tensor| -> candle_core::Result<()> {
        seen.insert(format!("{prefix}.{stage}"), t.clone());
        Ok(())
    };
    encoder.forward_probed(pixels, &mut probe).unwrap();
    seen
}

#[test]
fn v2_reduced_encoder_matches_transformers_at_every_stage() {
    let golden = Golden::load("../encoder_v2/encoder.safetensors");
    let meta = json("meta.json");
    assert_eq!(meta["recipe_version"], 1);
    let device = Device::Cpu;
    let vb = occ_model::synth::synth_var_builder(0, DType::F32, &device);
    let encoder = Ocr2Encoder::new(&Ocr2VisionConfig::reduced(), vb).unwrap();
    let img = load_image(&page_path("page_portrait.png")).unwrap();
    let p: PreparedImage = prepare_v2(&img, Mode::V2, meta_order()).unwrap();
    assert_eq!(p.tiles.len(), 6);
    let global = views_tensor_v2(&[&p.global], DType::F32, &device).unwrap();
    let tiles: Vec<_> = p.tiles.iter().collect();
    let local = views_tensor_v2(&tiles, DType::F32, &device).unwrap();
    let mut stages = run_probed(&encoder, &global, "global");
    stages.extend(run_probed(&encoder, &local, "local"));
    stages.insert("rows".into(), encoder.encode(&p).unwrap());
    let want = golden.stages();
    assert!(want.len() >= 20, "golden has {} stages", want.len());
    let reports: Vec<Report> = want
        .iter()
        .map(|s| match stages.get(s) {
            Some(t) => golden.compare(s, t),
            None => golden.compare(s, &Tensor::zeros(1, DType::F32, &device).unwrap()),
        })
        .collect();
    assert_reports("DeepSeek-OCR-2 reduced encoder vs transformers (CPU f32)", &reports);
    let slots = Mode::V2.vision_tokens(600, 848).unwrap().slots as usize;
    assert_eq!(stages["rows"].dims(), &[slots, 64]);
}

#[test]
fn v2_checkpoint_table_has_the_released_shapes_and_maps_to_transformers_names() {
    let table = encoder_v2::expected_tensors(&Ocr2VisionConfig::deepseek_ocr2());
    assert_eq!(table["model.sam_model.net_3.weight"], vec![896, 512, 3, 3]);
    assert_eq!(table["model.qwen2_model.model.model.layers.23.self_attn.k_proj.weight"], vec![128, 896]);
    assert_eq!(table["model.qwen2_model.model.model.layers.0.self_attn.q_proj.bias"], vec![896]);
    assert_eq!(table["model.qwen2_model.model.model.layers.0.mlp.gate_proj.weight"], vec![4864, 896]);
    assert_eq!(table["model.qwen2_model.query_768.weight"], vec![144, 896]);
    assert_eq!(table["model.qwen2_model.query_1024.weight"], vec![256, 896]);
    assert_eq!(table["model.projector.layers.weight"], vec![1280, 896]);
    // SAM 95.6 M as in v1 less net_3's 1024 → 896 outputs; Qwen2 encoder 24 layers.
    let params: usize = table.values().map(|s| s.iter().product::<usize>()).sum();
    assert_eq!(params, 95_569_152 - 128 * 512 * 9 + 24 * 14_912_384 + 896 + 400 * 896 + 1280 * 897 + 1280);
    // Every original name maps to a distinct transformers name, and the two namings are told apart.
    let converted: std::collections::BTreeSet<String> =
        table.keys().map(|n| encoder_v2::converted_name(n).unwrap_or_else(|| panic!("no map for {n}"))).collect();
    assert_eq!(converted.len(), table.len());
    assert!(converted.contains("model.vision_tower.sam_encoder.layers.0.layer_norm1.weight"));
    assert!(converted.contains("model.vision_tower.sam_encoder.proj.conv2.weight"));
    assert!(converted.contains("model.vision_tower.vision_encoder.layers.0.self_attn.q_proj.weight"));
    assert_eq!(encoder_v2::identify(table.keys().map(String::as_str)), Ok(Ocr2Naming::Original));
    assert_eq!(encoder_v2::identify(converted.iter().map(String::as_str)), Ok(Ocr2Naming::Converted));
    let v1 = occ_model::load::expected_vision_tensors(&occ_model::config::VisionConfig::deepseek_ocr());
    let err = encoder_v2::identify(v1.keys().map(String::as_str)).unwrap_err();
    assert!(err.contains("DeepSeek-OCR (v1) checkpoint") && err.contains("model.vision_model"), "{err}");
}

#[test]
fn v2_constructor_reads_exactly_the_table() {
    // The names and shapes the constructor requests equal the table (no weights read).
    let cfg = Ocr2VisionConfig::reduced();
    let requested = occ_model::load::requested_tensors(|vb| Ocr2Encoder::new(&cfg, vb).map(|_| ())).unwrap();
    let table = encoder_v2::expected_tensors(&cfg);
    let requested: BTreeMap<String, Vec<usize>> = requested.into_iter().collect();
    assert_eq!(requested, table);
}

#[test]
fn v2_reduced_pipeline_greedy_tokens_match_transformers_generate() {
    use occ_model::generate::GenerationConfig;
    use occ_model::pipeline_v2::{DeepseekOcr2, Ocr2SyntheticSize};
    let golden = json("greedy.json");
    let mut model =
        DeepseekOcr2::synthetic(Ocr2SyntheticSize::Reduced, occ_model::synth::Recipe::V1, 0, DType::F32, &Device::Cpu)
            .unwrap();
    model.resize_order = meta_order();
    let img = load_image(&page_path(golden["page"].as_str().unwrap())).unwrap();
    let input = model.prompt_input(&img, Mode::V2, &occ_core::Prompt::FreeOcr).unwrap();
    let want_ids: Vec<u32> = serde_json::from_value(golden["prompt_ids"].clone()).unwrap();
    assert_eq!(input.ids, want_ids, "prompt ids");
    let steps = golden["steps"].as_u64().unwrap() as usize;
    let cfg = GenerationConfig { ignore_eos: true, ..GenerationConfig::plain_greedy(steps) };
    let out = occ_model::generate::generate(model.decoder(), &[input], &cfg).unwrap();
    let want: Vec<u32> = serde_json::from_value(golden["tokens"].clone()).unwrap();
    assert_eq!(out.rows[0].tokens, want, "greedy tokens vs transformers generate");
    // The comparison is not fragile: the reference's smallest top-1/top-2 gap is far above f32 noise.
    assert!(golden["min_gap"].as_f64().unwrap() > 1e-3);
}

#[test]
fn v2_engine_refuses_v1_and_converted_checkpoints_naming_the_mismatch() {
    use occ_model::load::WeightsDir;
    use occ_model::pipeline_v2::DeepseekOcr2;
    let cases = [
        (vec!["model.image_newline", "model.vision_model.pre_layrnorm.weight"], "DeepSeek-OCR (v1) checkpoint"),
        (vec!["model.vision_tower.query_1024_resolution.weight"], "converted DeepSeek-OCR-2"),
        (vec!["model.something.else"], "not a DeepSeek-OCR-2 checkpoint"),
    ];
    for (k, (names, needle)) in cases.iter().enumerate() {
        let dir = std::env::temp_dir().join(format!("occ-v2-refusal-{}-{k}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), "{}").unwrap();
        std::fs::write(dir.join("tokenizer.json"), "{}").unwrap();
        let tensors: std::collections::HashMap<String, Tensor> =
            names.iter().map(|n| (n.to_string(), Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap())).collect();
        candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
        let wd = WeightsDir::open(&dir).unwrap();
        let err = DeepseekOcr2::from_weights_dir(&wd, DType::F32, &Device::Cpu).unwrap_err().to_string();
        assert!(err.contains(needle), "{names:?}: {err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// Full-size parity on the GPU against scripts/gpu_v2_parity.py's outputs (folder in
/// `OCC_V2_PARITY_DIR`; `OCC_V2_PARITY_DEVICE=cpu` runs a `--reduced` folder on the CPU): per page, the
/// f32 rows within 1e-4 (max |Δ| ÷ RMS) and the f32 greedy tokens identical to transformers'
/// `generate`; bf16 teacher-forced argmax agreement and min cosine against transformers' f32 logits,
/// reported beside transformers' own bf16 (the yardstick); bf16 speed (prefill, batch-1 decode,
/// batched pages/s). Writes `rust_report.json` into the folder. Commands: scripts/gpu-v2-parity.sh.
#[test]
#[ignore = "needs scripts/gpu_v2_parity.py outputs in OCC_V2_PARITY_DIR and (full size) a CUDA device"]
fn v2_full_size_gpu_parity() {
    use occ_model::generate::{generate, GenerationConfig, PromptInput};
    use occ_model::pipeline_v2::{DeepseekOcr2, Ocr2SyntheticSize};
    use occ_model::synth::Recipe;
    let dir = PathBuf::from(std::env::var("OCC_V2_PARITY_DIR").expect("OCC_V2_PARITY_DIR: the gpu_v2_parity.py --out"));
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    let device = match std::env::var("OCC_V2_PARITY_DEVICE").as_deref() {
        Ok("cpu") => Device::Cpu,
        _ => Device::new_cuda(0).expect("a CUDA device (build with --features cuda)"),
    };
    let size = if meta["size"] == "reduced" { Ocr2SyntheticSize::Reduced } else { Ocr2SyntheticSize::Full };
    if meta["vision_only"] == true {
        return vision_only_parity(&dir, &meta, size, &device);
    }
    let recipe = Recipe::from_version(meta["recipe_version"].as_u64().unwrap() as u32).expect("a known recipe");
    let order = ResizeOrder::for_pillow_version(meta["pillow"].as_str().unwrap()).unwrap();
    let steps = meta["steps"].as_u64().unwrap() as usize;
    let mut f32m = DeepseekOcr2::synthetic(size, recipe, 0, DType::F32, &device).unwrap();
    f32m.resize_order = order;
    // candle has no bf16 matmul on the CPU: the CPU smoke run measures its "bf16" columns in f32.
    let low = if device.is_cpu() { DType::F32 } else { DType::BF16 };
    let mut bf16m = DeepseekOcr2::synthetic(size, recipe, 0, low, &device).unwrap();
    bf16m.resize_order = order;
    let mut report = serde_json::Map::new();
    let mut failures = Vec::new();
    let pages = meta["pages"].as_object().unwrap();
    for (page, info) in pages {
        let want =
            candle_core::safetensors::load(dir.join(page.replace(".png", ".safetensors")), &Device::Cpu).unwrap();
        let img = load_image(&page_path(page)).unwrap();
        // rows, f32
        let prepared = f32m.prepare(&img, Mode::V2).unwrap();
        let rows = f32m.encoder().encode(&prepared).unwrap().to_device(&Device::Cpu).unwrap();
        let ref_rows = &want["rows"];
        let rms = ref_rows.sqr().unwrap().mean_all().unwrap().to_scalar::<f32>().unwrap().sqrt();
        let max_abs = (&rows - ref_rows).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let rel = f64::from(max_abs / rms);
        // greedy, f32
        let input = f32m.prompt_input(&img, Mode::V2, &occ_core::Prompt::FreeOcr).unwrap();
        let ref_ids: Vec<i64> = want["ids"].to_vec1().unwrap();
        let ids_equal = input.ids.iter().map(|&i| i64::from(i)).eq(ref_ids.iter().copied());
        let cfg = GenerationConfig { ignore_eos: true, ..GenerationConfig::plain_greedy(steps) };
        let out = generate(f32m.decoder(), &[input], &cfg).unwrap();
        let ref_greedy: Vec<u32> = want["greedy"].to_vec1::<i64>().unwrap().into_iter().map(|v| v as u32).collect();
        let same = out.rows[0].tokens.iter().zip(&ref_greedy).take_while(|(a, b)| a == b).count();
        // bf16 teacher-forced on the reference's f32 sequence
        let p = bf16m.prompt_input(&img, Mode::V2, &occ_core::Prompt::FreeOcr).unwrap();
        let plen = p.ids.len();
        let forced = Tensor::from_vec(ref_greedy[..steps - 1].to_vec(), (1, steps - 1), &device).unwrap();
        let tail = bf16m.decoder().embed(&forced).unwrap().squeeze(0).unwrap();
        let embeds = Tensor::cat(&[&p.embeds, &tail], 0).unwrap().unsqueeze(0).unwrap();
        let mut cache = bf16m.decoder().new_cache(vec![0]);
        let logits = bf16m.decoder().forward_embeds(&embeds, 0, &mut cache).unwrap().squeeze(0).unwrap();
        let logits = logits.narrow(0, plen - 1, steps).unwrap().to_device(&Device::Cpu).unwrap();
        let ref_logits = &want["logits"];
        let dot = (&logits * ref_logits).unwrap().sum(1).unwrap();
        let norms = (logits.sqr().unwrap().sum(1).unwrap().sqrt().unwrap()
            * ref_logits.sqr().unwrap().sum(1).unwrap().sqrt().unwrap())
        .unwrap();
        let cos: Vec<f32> = (dot / norms).unwrap().to_vec1().unwrap();
        let argmax: Vec<u32> = logits.argmax(1).unwrap().to_vec1().unwrap();
        let agree = argmax.iter().zip(&ref_greedy).filter(|(a, b)| a == b).count() as f64 / steps as f64;
        let ref_bf16: Vec<i64> = want["logits_bf16_argmax"].to_vec1().unwrap();
        let agree_ref_bf16 =
            argmax.iter().zip(&ref_bf16).filter(|(a, b)| i64::from(**a) == **b).count() as f64 / steps as f64;
        let min_cos = cos.iter().copied().fold(f32::INFINITY, f32::min);
        // bf16 speed: prefill and decode of `generate`, batch 1
        let t = bf16m.prompt_input(&img, Mode::V2, &occ_core::Prompt::FreeOcr).unwrap();
        let _ = generate(
            bf16m.decoder(),
            std::slice::from_ref(&t),
            &GenerationConfig { ignore_eos: true, ..GenerationConfig::plain_greedy(4) },
        );
        let timed = generate(bf16m.decoder(), &[t], &cfg).unwrap();
        let tok_s = timed.decode_steps as f64 / timed.decode.as_secs_f64().max(1e-9);
        let r = serde_json::json!({
            "rows_rel": rel, "prompt_ids_equal": ids_equal, "greedy_identical_prefix": same, "steps": steps,
            "bf16_vs_ref_f32": {"argmax_agreement": agree, "min_cosine": min_cos},
            "bf16_argmax_vs_ref_bf16": agree_ref_bf16,
            "reference_bf16_vs_f32": info["reference_bf16_vs_f32"],
            "bf16_prefill_ms": timed.prefill.as_secs_f64() * 1e3, "bf16_decode_tok_per_s_batch1": tok_s,
        });
        eprintln!("{page}: {r}");
        if rel > 1e-4 || !ids_equal || same < steps {
            failures
                .push(format!("{page}: rows rel {rel:.2e}, ids equal {ids_equal}, greedy identical {same}/{steps}"));
        }
        report.insert(page.clone(), r);
    }
    // batched pages/s, bf16: `batch` copies of the portrait page, encoder + prefill + steps tokens
    let batch = meta["transformers_bf16_speed"]["batch"].as_u64().unwrap_or(8) as usize;
    let img = load_image(&page_path("page_portrait.png")).unwrap();
    let pages_in: Vec<(&image::RgbImage, Mode)> = (0..batch).map(|_| (&img, Mode::V2)).collect();
    let cfg = GenerationConfig { ignore_eos: true, ..GenerationConfig::plain_greedy(steps) };
    let t = std::time::Instant::now();
    let inputs: Vec<PromptInput> =
        pages_in.iter().map(|(i, m)| bf16m.prompt_input(i, *m, &occ_core::Prompt::FreeOcr).unwrap()).collect();
    generate(bf16m.decoder(), &inputs, &cfg).unwrap();
    report.insert("pages_per_s_batched_bf16".into(), serde_json::json!(batch as f64 / t.elapsed().as_secs_f64()));
    report.insert("transformers_bf16_speed".into(), meta["transformers_bf16_speed"].clone());
    report.insert("low_dtype".into(), serde_json::json!(format!("{low:?}")));
    std::fs::write(dir.join("rust_report.json"), serde_json::to_string_pretty(&report).unwrap()).unwrap();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn v2_engine_reads_pages_through_the_engine_trait_and_refuses_v1_modes() {
    use occ_core::{OcrEngine, OcrOptions, OcrPage, Prompt};
    use occ_model::pipeline_v2::{DeepseekOcr2, Ocr2SyntheticSize};
    let mut engine =
        DeepseekOcr2::synthetic(Ocr2SyntheticSize::Reduced, occ_model::synth::Recipe::V1, 0, DType::F32, &Device::Cpu)
            .unwrap();
    assert_eq!(engine.info().name, "deepseek-ocr-2");
    let img = load_image(&page_path("page_square640.png")).unwrap();
    let options = OcrOptions { max_new_tokens: 5, ignore_eos: true, ..OcrOptions::default() };
    let pages = [
        OcrPage { id: "a".into(), image: img.clone(), mode: Mode::V2 },
        OcrPage { id: "b".into(), image: img.clone(), mode: Mode::V2Single },
    ];
    let out = OcrEngine::ocr(&mut engine, &pages, &Prompt::FreeOcr, &options).unwrap();
    assert_eq!(out.len(), 2);
    // 640² page: 257 slots in v2, 145 in v2-single, plus BOS and the 5 ids of "\nFree OCR.".
    let prompt_lens: Vec<_> = out.iter().map(|o| o.n_prompt_tokens.unwrap()).collect();
    let tail = prompt_lens[0] - 257;
    assert_eq!(prompt_lens, vec![257 + tail, 145 + tail]);
    assert!(out.iter().all(|o| o.n_generated_tokens == Some(5) && o.hit_max_tokens));
    let v1_page = [OcrPage { id: "c".into(), image: img.clone(), mode: Mode::Base }];
    let err = OcrEngine::ocr(&mut engine, &v1_page, &Prompt::FreeOcr, &options).unwrap_err().to_string();
    assert!(err.contains("not DeepSeek-OCR (v1)'s base"), "{err}");
    // and the v1 preprocessing refuses v2 modes
    let err = occ_model::preprocess::prepare(&img, Mode::V2).unwrap_err().to_string();
    assert!(err.contains("DeepSeek-OCR-2"), "{err}");
}

#[test]
fn renderer_targets_exact_ratios_in_v2_modes_and_the_tower_fills_the_slots() {
    use occ_render::fit::fit_to_ratio;
    use occ_render::{Lang, RenderSpec};
    let tok = occ_core::TextTokenizer::deepseek_ocr().unwrap();
    let text = "Optical context compression renders long text into page images so that a vision encoder \
                carries it in fewer tokens than the text itself. "
        .repeat(400);
    let device = Device::Cpu;
    let encoder =
        Ocr2Encoder::new(&Ocr2VisionConfig::reduced(), occ_model::synth::synth_var_builder(0, DType::F32, &device))
            .unwrap();
    // v2: the default canvas is a 2×3 tile page (1536×2304): 256 + 6·144 = 1120 nominal, 1121 slots.
    // v2-single: one 768² view, 144 nominal, 145 slots.
    for (mode, ratio, nominal, slots) in [(Mode::V2, 4.0, 1120, 1121), (Mode::V2Single, 8.0, 144, 145)] {
        let spec = RenderSpec::for_mode(mode, Lang::En);
        let f = fit_to_ratio(&text, &tok, mode, ratio, &spec).unwrap();
        assert_eq!((f.vision.nominal, f.vision.slots), (nominal, slots), "{mode}");
        assert_eq!(f.target_tokens, (ratio * f64::from(nominal)).round() as usize, "{mode}");
        assert_eq!(f.ratio.nominal, f.text_tokens as f64 / f64::from(nominal), "{mode}");
        assert_eq!(f.ratio.slots, f.text_tokens as f64 / f64::from(slots), "{mode}");
        let prepared = prepare_v2(&f.page.image, mode, ResizeOrder::Pillow12).unwrap();
        assert_eq!(prepared.tiles.len() as u32, f.vision.grid.tiles(), "{mode}");
        let rows = encoder.encode(&prepared).unwrap();
        assert_eq!(rows.dim(0).unwrap(), slots as usize, "{mode}: rows = slots");
    }
}

#[test]
#[ignore = "full-size tower on synthetic weights: about a minute and 2 GB on a 2-core CPU"]
fn v2_full_size_tower_builds_and_encodes_on_cpu() {
    let device = Device::Cpu;
    let t = std::time::Instant::now();
    let encoder = Ocr2Encoder::new(
        &Ocr2VisionConfig::deepseek_ocr2(),
        occ_model::synth::synth_var_builder(0, DType::F32, &device),
    )
    .unwrap();
    let built = t.elapsed();
    let img = load_image(&page_path("page_square640.png")).unwrap();
    let p = prepare_v2(&img, Mode::V2, ResizeOrder::Pillow12).unwrap();
    let t = std::time::Instant::now();
    let rows = encoder.encode(&p).unwrap();
    eprintln!("full-size v2 tower: built in {built:?}, one 1024² view encoded in {:?}", t.elapsed());
    assert_eq!(rows.dims(), &[257, 1280]);
    let s = rows.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(s.is_finite() && s > 0.0);
}

/// The `--vision-only` folder of gpu_v2_parity.py: the laid-out rows of every page in f32 within 1e-4
/// (max |Δ| ÷ RMS), the tower alone (no decoder is built); prints our encode time beside transformers'.
fn vision_only_parity(
    dir: &std::path::Path,
    meta: &serde_json::Value,
    size: occ_model::pipeline_v2::Ocr2SyntheticSize,
    device: &Device,
) {
    let (vision, _) = size.configs();
    let encoder = Ocr2Encoder::new(&vision, occ_model::synth::synth_var_builder(0, DType::F32, device)).unwrap();
    let order = ResizeOrder::for_pillow_version(meta["pillow"].as_str().unwrap()).unwrap();
    let mut failures = Vec::new();
    let mut report = serde_json::Map::new();
    for (page, info) in meta["pages"].as_object().unwrap() {
        let want =
            candle_core::safetensors::load(dir.join(page.replace(".png", ".safetensors")), &Device::Cpu).unwrap();
        let img = load_image(&page_path(page)).unwrap();
        let p = prepare_v2(&img, Mode::V2, order).unwrap();
        let t = std::time::Instant::now();
        let rows = encoder.encode(&p).unwrap().to_device(&Device::Cpu).unwrap();
        let seconds = t.elapsed().as_secs_f64();
        let ref_rows = &want["rows"];
        let rms = ref_rows.sqr().unwrap().mean_all().unwrap().to_scalar::<f32>().unwrap().sqrt();
        let max_abs = (&rows - ref_rows).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let rel = f64::from(max_abs / rms);
        let r = serde_json::json!({"rows": rows.dims(), "rows_rel": rel, "encode_seconds_f32": seconds,
            "transformers_vision_seconds_f32": info["vision_seconds_f32"]});
        eprintln!("{page}: {r}");
        if rel > 1e-4 {
            failures.push(format!("{page}: rows rel {rel:.2e}"));
        }
        report.insert(page.clone(), r);
    }
    std::fs::write(dir.join("rust_report.json"), serde_json::to_string_pretty(&report).unwrap()).unwrap();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A synthetic page whose pixels depend on `seed`.
fn pattern(w: u32, h: u32, seed: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([((x * 7 + seed * 31) % 251) as u8, ((y * 3 + seed * 17) % 241) as u8, ((x + y + seed) % 256) as u8])
    })
}

#[test]
fn v2_pages_through_the_batched_tower_and_the_batcher_equal_per_page_generate() {
    use occ_core::{OcrEngine, OcrOptions, OcrPage, Prompt};
    use occ_model::generate::GenerationConfig;
    use occ_model::pipeline_v2::{DeepseekOcr2, Ocr2SyntheticSize};
    let mut engine =
        DeepseekOcr2::synthetic(Ocr2SyntheticSize::Reduced, occ_model::synth::Recipe::V1, 0, DType::F32, &Device::Cpu)
            .unwrap();
    // A mixed batch: a tiled v2 page (2×1 tiles: 545 slots), an untiled v2 page (257), two
    // v2-single pages (145) of other sizes. The tower runs the two 1024² global views together and
    // the two tiles with the two v2-single views (all 768²) together; prompts differ in length.
    let pages = [
        (pattern(800, 400, 1), Mode::V2),
        (pattern(500, 640, 2), Mode::V2Single),
        (pattern(600, 700, 3), Mode::V2),
        (pattern(900, 300, 4), Mode::V2Single),
    ];
    let batch: Vec<(&image::RgbImage, Mode)> = pages.iter().map(|(img, m)| (img, *m)).collect();
    // the engine's default settings (the DeepSeek blocker) and a run that ignores EOS
    for cfg in [
        GenerationConfig { max_new_tokens: 12, ..GenerationConfig::default() },
        GenerationConfig { ignore_eos: true, ..GenerationConfig::plain_greedy(9) },
    ] {
        let fast = engine.ocr(&batch, &Prompt::FreeOcr, &cfg).unwrap();
        assert_eq!(fast.len(), pages.len());
        let slots: Vec<u32> = fast.iter().map(|o| o.vision_tokens.slots).collect();
        assert_eq!(slots, vec![545, 145, 257, 145]);
        for (i, (img, mode)) in pages.iter().enumerate() {
            // the plain path: this page alone through the tower, static-batch generate
            let alone = engine.generate_pages(&[(img, *mode)], &Prompt::FreeOcr, &cfg).unwrap();
            assert_eq!(fast[i].token_ids, alone.rows[0].tokens, "page {i} ({mode}), {cfg:?}");
            assert_eq!(fast[i].stopped_at_eos, alone.rows[0].stopped_at_eos, "page {i}");
            let input = engine.prompt_input(img, *mode, &Prompt::FreeOcr).unwrap();
            assert_eq!(fast[i].n_prompt_tokens, input.ids.len(), "page {i}");
        }
    }
    // the batched tower's rows equal each page's alone
    let prepared: Vec<PreparedImage> = pages.iter().map(|(img, m)| engine.prepare(img, *m).unwrap()).collect();
    let together = engine.encoder().encode_batch(&prepared).unwrap();
    for (i, p) in prepared.iter().enumerate() {
        let alone = engine.encoder().encode(p).unwrap();
        let diff = (&together[i] - &alone).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff <= 1e-5, "page {i}: batched rows differ by {diff}");
    }
    // the engine trait reads them the same way, `max_batch` pages per call
    engine.max_batch = 3;
    let options = OcrOptions { max_new_tokens: 9, ignore_eos: true, ..OcrOptions::default() };
    engine.generation = GenerationConfig::plain_greedy(1);
    let ocr_pages: Vec<OcrPage> = pages
        .iter()
        .enumerate()
        .map(|(i, (img, mode))| OcrPage { id: i.to_string(), image: img.clone(), mode: *mode })
        .collect();
    let out = OcrEngine::ocr(&mut engine, &ocr_pages, &Prompt::FreeOcr, &options).unwrap();
    let cfg = GenerationConfig { ignore_eos: true, ..GenerationConfig::plain_greedy(9) };
    for (i, (img, mode)) in pages.iter().enumerate() {
        let alone = engine.generate_pages(&[(img, *mode)], &Prompt::FreeOcr, &cfg).unwrap();
        assert_eq!(out[i].token_ids.as_ref(), Some(&alone.rows[0].tokens), "engine trait, page {i}");
    }
}
